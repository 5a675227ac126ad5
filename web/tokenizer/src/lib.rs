//! The page's tokenizer worker: tokenizes a visitor's sentences with the encoder's `tokenizer.json`, exactly as
//! `trainer predict` does ([`s3t::tokenizer::TextTokenizer`]), off the page's main thread and outside the page's
//! first load. It answers each [`TokenizeRequest`] with a [`TokenizeReply`]. Only built for wasm32.

#[cfg(target_arch = "wasm32")]
mod worker {
    use std::cell::RefCell;

    use s3t::dataset::Dataset;
    use s3t::sentence::{TokenizeReply, TokenizeRequest};
    use s3t::tokenizer::TextTokenizer;
    use s3t_host::fetch;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;
    use web_sys::MessageEvent;

    thread_local! {
        /// The tokenizer last loaded, by its sha256 (a page asks for one bundle's).
        static LOADED: RefCell<Option<(String, std::rc::Rc<TextTokenizer>)>> = const { RefCell::new(None) };
    }

    fn post(reply: &TokenizeReply) {
        s3t_host::frames::post(reply, &[]);
    }

    async fn tokenizer(request: &TokenizeRequest) -> Result<std::rc::Rc<TextTokenizer>, String> {
        let sha = &request.sha256;
        if let Some(known) = LOADED.with(|l| l.borrow().as_ref().filter(|(s, _)| s == sha).map(|(_, t)| t.clone())) {
            return Ok(known);
        }
        let bytes = fetch::bytes(&request.url).await?;
        request.check(&bytes).map_err(|e| e.to_string())?;
        let (vocab, pad, tokens) = (request.vocab_size, request.pad_id, request.max_tokens);
        let loaded = std::rc::Rc::new(
            TextTokenizer::from_bytes(&request.url, &bytes, vocab, pad, tokens).map_err(|e| e.to_string())?,
        );
        LOADED.with(|l| *l.borrow_mut() = Some((sha.clone(), loaded.clone())));
        Ok(loaded)
    }

    async fn answer(request: TokenizeRequest) -> Result<Dataset, String> {
        let tokenizer = tokenizer(&request).await?;
        let labels = vec![0; request.texts.len()];
        tokenizer.dataset(request.texts, labels, request.classes).map_err(|e| e.to_string())
    }

    pub fn listen() {
        let handler = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
            let Some(text) = event.data().as_string() else { return };
            wasm_bindgen_futures::spawn_local(async move {
                let reply = match serde_json::from_str::<TokenizeRequest>(&text) {
                    Ok(request) => answer(request).await.map_or_else(TokenizeReply::Failed, TokenizeReply::Done),
                    Err(e) => TokenizeReply::Failed(format!("the tokenize request is not valid: {e}")),
                };
                post(&reply);
            });
        });
        s3t_host::frames::worker_scope().set_onmessage(Some(handler.as_ref().unchecked_ref()));
        // The handler lives as long as the worker.
        handler.forget();
        post(&TokenizeReply::Ready);
    }
}

/// The entry point: installs the message handler and says it is ready (a request sent before would be lost).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    s3t_host::start();
    worker::listen();
}
