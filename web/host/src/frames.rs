//! Replies and reports from a worker to whoever started it: a JSON message, then byte arrays (weight files) in
//! the same transfer, as one JavaScript array. Requests the other way are a JSON string alone. The message types
//! live in the core crate.

use js_sys::{Array, Uint8Array};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::DedicatedWorkerGlobalScope;

/// Why a message is not a frame of the expected type.
#[derive(Debug)]
pub enum FrameError {
    /// Not an array whose first element is text (another sender's message, or a worker's failure to encode).
    NotAFrame,
    /// Text that is not the expected message.
    Message(serde_json::Error),
}

/// The frame of `message` followed by `payloads`.
pub fn encode<T: Serialize>(message: &T, payloads: &[Vec<u8>]) -> Result<Array, serde_json::Error> {
    let frame = Array::new();
    frame.push(&serde_json::to_string(message)?.into());
    for bytes in payloads {
        frame.push(&Uint8Array::from(bytes.as_slice()));
    }
    Ok(frame)
}

/// A frame's message and payloads.
pub fn decode<T: DeserializeOwned>(data: JsValue) -> Result<(T, Vec<Vec<u8>>), FrameError> {
    let frame: Array = data.dyn_into().map_err(|_| FrameError::NotAFrame)?;
    let text = frame.get(0).as_string().ok_or(FrameError::NotAFrame)?;
    let message = serde_json::from_str(&text).map_err(FrameError::Message)?;
    let payloads = (1..frame.length()).map(|i| Uint8Array::new(&frame.get(i)).to_vec()).collect();
    Ok((message, payloads))
}

/// The global scope of the worker this code runs in.
pub fn worker_scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Posts `message` and `payloads` from a worker to whoever started it (the page, or a coordinating worker).
pub fn post<T: Serialize>(message: &T, payloads: &[Vec<u8>]) {
    let sent = match encode(message, payloads) {
        Ok(frame) => worker_scope().post_message(&frame),
        // Something the receiver can tell from a frame: it stops waiting and reports the worker as failed.
        Err(e) => worker_scope().post_message(&format!("a message could not be encoded: {e}").into()),
    };
    // A failed post has no one to report to: the receiver notices the missing answer as a failed worker.
    let _ = sent;
}
