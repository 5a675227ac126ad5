//! The browser host as the page, its retraining worker and its tokenizer worker use it, in one place: fetching
//! files, the clock, messages between threads, and the module's start-up. Pure logic stays in the core crate
//! (`s3t`); this is the thin layer over the browser's APIs. Only built for wasm32.

#[cfg(all(target_arch = "wasm32", feature = "bundle"))]
pub mod bundle;
#[cfg(target_arch = "wasm32")]
pub mod fetch;
#[cfg(target_arch = "wasm32")]
pub mod frames;
#[cfg(target_arch = "wasm32")]
pub mod time;

// The static constructors (link-time registries of dependencies). Unless the module calls them itself, the
// linker wraps every export (each call from JavaScript, including each object a WebGPU call hands back) so that it
// re-runs all of them first: that cost a quarter of the page's main-thread time. Calling them once stops it.
#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// Runs the module's static constructors: the first thing each entry point (`#[wasm_bindgen(start)]`) does.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    // SAFETY: the entry point calls it once, first, before any code that reads what the constructors register.
    unsafe { __wasm_call_ctors() };
}
