//! Files over HTTP, from the page or a worker (the global `fetch` exists in both).

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen_futures::JsFuture;
use web_sys::Response;

#[wasm_bindgen]
extern "C" {
    /// The global scope's `fetch` (a window's or a worker's).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(input: &str) -> Promise;
}

async fn response(url: &str) -> Result<Response, String> {
    let response = JsFuture::from(global_fetch(url)).await.map_err(|e| format!("{url}: {e:?}"))?;
    response.dyn_into().map_err(|_| format!("{url}: not a response"))
}

/// A file's bytes; an HTTP error names the file and the status.
pub async fn bytes(url: &str) -> Result<Vec<u8>, String> {
    body(url, response(url).await?).await
}

/// Like [`bytes`], but `Ok(None)` when the server says the file does not exist (HTTP 404).
pub async fn optional(url: &str) -> Result<Option<Vec<u8>>, String> {
    let response = response(url).await?;
    if response.status() == 404 {
        return Ok(None);
    }
    body(url, response).await.map(Some)
}

async fn body(url: &str, response: Response) -> Result<Vec<u8>, String> {
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| format!("{url}: {e:?}"))?)
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}
