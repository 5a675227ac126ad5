//! The clock and yielding, on the page and in workers.

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
extern "C" {
    /// `performance.now()` of the global scope (a window's or a worker's).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// Milliseconds since the page or worker started.
pub fn now() -> f64 {
    performance_now()
}

/// Logs how long a phase of the page took, as `s3t timing: {what} {ms} ms` (the browser tests print these).
pub fn timing(what: &str, since: f64) {
    log("timing", what, since);
}

/// [`timing`] for a worker: `s3t worker timing: …`.
pub fn worker_timing(what: &str, since: f64) {
    log("worker timing", what, since);
}

fn log(label: &str, what: &str, since: f64) {
    web_sys::console::log_1(&format!("s3t {label}: {what} {:.0} ms", now() - since).into());
}

/// Gives the thread a chance to render and handle input (or, in a worker, messages).
pub async fn yield_now() {
    gloo_timers::future::TimeoutFuture::new(0).await;
}
