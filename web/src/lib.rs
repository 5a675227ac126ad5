//! The S3T web app: a yew front end over the shared crate's route reducer and the same burn model the trainer
//! builds, on WebGPU when the browser offers an adapter and on the CPU otherwise. Only built for wasm32.

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod base;
#[cfg(target_arch = "wasm32")]
mod chart;
#[cfg(target_arch = "wasm32")]
mod load;
#[cfg(target_arch = "wasm32")]
mod persist;
#[cfg(target_arch = "wasm32")]
mod probe;
#[cfg(target_arch = "wasm32")]
mod retrain;
#[cfg(target_arch = "wasm32")]
mod sentence;
#[cfg(target_arch = "wasm32")]
mod session;
#[cfg(target_arch = "wasm32")]
mod source;
#[cfg(target_arch = "wasm32")]
mod state;
#[cfg(target_arch = "wasm32")]
mod theory;
#[cfg(target_arch = "wasm32")]
mod tokenize;
#[cfg(target_arch = "wasm32")]
mod tour;
#[cfg(target_arch = "wasm32")]
mod views;

// The static constructors (link-time registries of dependencies). Unless the module calls them itself, the
// linker wraps every export (each call from JavaScript, including each object a WebGPU call hands back) so that it
// re-runs all of them first: that cost a quarter of the page's main-thread time. Calling them once, here, stops it.
#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// The entry point, run once when the module is instantiated.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    // SAFETY: called once, first, before any code that reads what the constructors register.
    unsafe { __wasm_call_ctors() };
    yew::Renderer::<app::App>::new().render();
}
