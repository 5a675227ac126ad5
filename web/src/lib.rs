//! The S3T web app: a yew front end over the shared crate's route reducer and the same burn model the trainer
//! builds, on WebGPU when the browser offers an adapter and on the CPU otherwise. Only built for wasm32.

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod chart;
#[cfg(target_arch = "wasm32")]
mod evaluation;
#[cfg(target_arch = "wasm32")]
mod hooks;
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

/// The entry point, run once when the module is instantiated.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    s3t_host::start();
    yew::Renderer::<app::App>::new().render();
}
