//! The page's side of the tokenizer worker (`web/tokenizer`): started at the first sentence, then kept; one
//! request at a time.

use std::cell::{Cell, RefCell};

use s3t::dataset::Dataset;
use s3t::sentence::{TokenizeReply, TokenizeRequest};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::JsFuture;

use s3t_host::frames::FrameError;
use s3t_host::time::yield_now;

use crate::load::Loaded;

/// The worker's loader script (trunk names it after the crate, without a content hash).
const WORKER_URL: &str = "./s3t-tokenizer_loader.js";

thread_local! {
    static WORKER: RefCell<Option<web_sys::Worker>> = const { RefCell::new(None) };
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// The worker's next message, parsed (its `onmessage` is this call's until then).
async fn next_reply(worker: &web_sys::Worker, send: Option<&str>) -> Result<TokenizeReply, String> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        let on_message = Closure::once_into_js(move |event: web_sys::MessageEvent| {
            let _ = resolve.call1(&wasm_bindgen::JsValue::NULL, &event.data());
        });
        let on_error = Closure::once_into_js(move |event: web_sys::ErrorEvent| {
            let _ = reject.call1(&wasm_bindgen::JsValue::NULL, &event.message().into());
        });
        worker.set_onmessage(Some(on_message.unchecked_ref()));
        worker.set_onerror(Some(on_error.unchecked_ref()));
    });
    if let Some(text) = send {
        worker.post_message(&text.into()).map_err(|e| format!("the tokenizer worker: {e:?}"))?;
    }
    let data = JsFuture::from(promise).await.map_err(|e| format!("the tokenizer worker failed: {e:?}"))?;
    match s3t_host::frames::decode(data) {
        Ok((reply, _)) => Ok(reply),
        Err(FrameError::NotAFrame) => Err("the tokenizer worker sent something else than text".into()),
        Err(FrameError::Message(e)) => Err(format!("the tokenizer worker's answer: {e}")),
    }
}

/// Tokenizes `texts` with the bundle's own tokenizer (label 0 each), as `trainer predict` does.
pub async fn tokenize(loaded: &Loaded, texts: Vec<String>) -> Result<Dataset, String> {
    let index = loaded.text_index.as_ref().ok_or("an image bundle has no tokenizer")?;
    let text = loaded.original.config().text.as_ref().ok_or("an image bundle has no tokenizer")?;
    let url = format!("{}/{}", crate::source::Source::current().dir(), index.tokenizer.path);
    let request = TokenizeRequest {
        // Relative to the worker's script, which lies beside the page.
        url,
        sha256: index.tokenizer.sha256.clone(),
        bytes: index.tokenizer.bytes,
        vocab_size: text.vocab_size,
        pad_id: text.pad_token_id,
        max_tokens: text.max_tokens,
        classes: loaded.original.manifest.data.classes,
        texts,
    };
    let request = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    while BUSY.get() {
        yield_now().await;
    }
    BUSY.set(true);
    let result = ask(&request).await;
    BUSY.set(false);
    result
}

async fn ask(request: &str) -> Result<Dataset, String> {
    let worker = match WORKER.with(|w| w.borrow().clone()) {
        Some(worker) => worker,
        None => {
            let worker =
                web_sys::Worker::new(WORKER_URL).map_err(|e| format!("the tokenizer worker did not start: {e:?}"))?;
            match next_reply(&worker, None).await? {
                TokenizeReply::Ready => {}
                other => return Err(format!("the tokenizer worker began with {other:?}")),
            }
            WORKER.with(|w| *w.borrow_mut() = Some(worker.clone()));
            worker
        }
    };
    match next_reply(&worker, Some(request)).await? {
        TokenizeReply::Done(data) => Ok(data),
        TokenizeReply::Failed(e) => Err(e),
        TokenizeReply::Ready => Err("the tokenizer worker restarted".into()),
    }
}
