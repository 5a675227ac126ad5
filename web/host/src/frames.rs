//! Messages between the page and its workers: a JSON message, then byte arrays (weight files) in the same
//! transfer, as one JavaScript array. The message types live in the core crate.

use js_sys::{Array, Uint8Array};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::DedicatedWorkerGlobalScope;

/// The frame of `message` followed by `payloads`.
pub fn encode<T: Serialize>(message: &T, payloads: &[Vec<u8>]) -> Result<Array, String> {
    let frame = Array::new();
    frame.push(&serde_json::to_string(message).map_err(|e| e.to_string())?.into());
    for bytes in payloads {
        frame.push(&Uint8Array::from(bytes.as_slice()));
    }
    Ok(frame)
}

/// A frame's message and payloads; `None` when it is not a frame of a `T` (another sender's message).
pub fn decode<T: DeserializeOwned>(data: JsValue) -> Option<(T, Vec<Vec<u8>>)> {
    let frame: Array = data.dyn_into().ok()?;
    let message = serde_json::from_str(&frame.get(0).as_string()?).ok()?;
    let payloads = (1..frame.length()).map(|i| Uint8Array::new(&frame.get(i)).to_vec()).collect();
    Some((message, payloads))
}

/// Posts `message` and `payloads` from a worker to whoever started it (the page, or a coordinating worker).
pub fn post<T: Serialize>(message: &T, payloads: &[Vec<u8>]) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    // A failed post has no one to report to: the receiver notices the missing answer as a failed worker.
    if let Ok(frame) = encode(message, payloads) {
        let _ = scope.post_message(&frame);
    }
}
