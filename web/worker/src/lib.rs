//! The page's retraining worker: a Web Worker that retrains one shard of the bundle on the samples that remain,
//! with the trainer's own build code (`s3t::model::build`), on the CPU backend, off the page's main thread.
//!
//! It answers each `Request` with `Report`s: started, progress, then the shard's new node list and the
//! retrained nodes' weights (or a failure). Nothing it sends is served before the page has checked it
//! (`s3t::bundle::retrain::accept`). A whole shard is coordinated here (`team`), which may split it among helper
//! workers (this same module, each given its share of the plan); each share trains with `job`. Only built for
//! wasm32.

#[cfg(target_arch = "wasm32")]
mod job;
#[cfg(target_arch = "wasm32")]
mod team;

/// The entry point: installs the message handler and says it is ready (a request sent before would be lost).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    s3t_host::start();
    listen();
}

/// Installs the message handler (one request at a time: the page, or the coordinating worker, sends the next after
/// `Done` or `Failed`), then reports `Ready`.
#[cfg(target_arch = "wasm32")]
fn listen() {
    use s3t::bundle::retrain::{Report, Request};
    use s3t_host::frames::post;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;
    use web_sys::MessageEvent;

    let handler = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let Some(text) = event.data().as_string() else { return };
        wasm_bindgen_futures::spawn_local(async move {
            match serde_json::from_str::<Request>(&text) {
                Ok(request) => {
                    // A helper's share is trained here; a whole shard may be split among helpers.
                    let result = if request.roots.is_some() {
                        job::helper(&request).await
                    } else {
                        team::coordinate(&request).await
                    };
                    if let Err(error) = result {
                        post(&Report::Failed { shard: request.shard, error }, &[]);
                    }
                }
                Err(e) => {
                    post(&Report::Failed { shard: 0, error: format!("the retrain request is not valid: {e}") }, &[])
                }
            }
        });
    });
    s3t_host::frames::worker_scope().set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    handler.forget();
    post(&Report::Ready, &[]);
}
