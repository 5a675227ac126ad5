//! The page's retraining worker: a Web Worker that retrains one shard of the bundle on the samples that remain,
//! with the trainer's own build code (`s3t::model::build`), on the CPU backend, off the page's main thread.
//!
//! It answers each [`Request`] with [`Report`]s: started, progress, then the shard's new node list and the
//! retrained nodes' weights (or a failure). Nothing it sends is served before the page has checked it
//! ([`s3t::bundle::retrain::accept`]). Only built for wasm32.

#[cfg(target_arch = "wasm32")]
mod job;
#[cfg(target_arch = "wasm32")]
mod team;

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// The entry point: installs the message handler and says it is ready (a request sent before would be lost).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    // SAFETY: called once, first, before any code that reads what the constructors register (see the page's lib).
    unsafe { __wasm_call_ctors() };
    job::listen();
}
