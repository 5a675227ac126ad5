//! A visitor's own sentence on the page: the messages between the page and its tokenizer worker, a wasm module of
//! its own loaded at the first sentence, so the `tokenizers` crate is not part of the page's first load and the
//! encoder's `tokenizer.json` is parsed off the main thread. Burn-free: the worker holds no model.

use crate::dataset::Dataset;
use serde::{Deserialize, Serialize};

/// Tokenize these texts with this tokenizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenizeRequest {
    /// The tokenizer's URL, relative to the worker.
    pub url: String,
    /// Its sha256 and size, from the export's index: the file is checked before use.
    pub sha256: String,
    pub bytes: u64,
    /// The model's vocabulary rows, padding id and tokens per text, as the trainer loads the tokenizer.
    pub vocab_size: usize,
    pub pad_id: u32,
    pub max_tokens: usize,
    pub classes: u8,
    pub texts: Vec<String>,
}

impl TokenizeRequest {
    /// Checks the tokenizer file's bytes against the request's sha256 and size.
    pub fn check(&self, bytes: &[u8]) -> crate::Result<()> {
        crate::digest::check(&self.url, "the index", &self.sha256, self.bytes, bytes, None)
    }
}

/// The tokenizer worker's answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TokenizeReply {
    /// Loaded, waiting for a request.
    Ready,
    /// The texts as a data set (label 0 each), as `trainer predict` tokenizes them.
    Done(Dataset),
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn a_changed_tokenizer_file_is_refused() {
        let bytes = b"{\"model\": {}}";
        let request = TokenizeRequest {
            url: "reviews/data/tokenizer.json".into(),
            sha256: crate::partition::hex(&Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
            vocab_size: 10,
            pad_id: 0,
            max_tokens: 8,
            classes: 2,
            texts: vec!["a film".into()],
        };
        assert!(request.check(bytes).is_ok());
        let err = request.check(b"{\"model\": []}").unwrap_err();
        assert!(matches!(err, crate::Error::Checksum { .. }), "{err}");
        let err = err.to_string();
        assert!(err.starts_with("reviews/data/tokenizer.json: checksum mismatch"), "{err}");
        let data = Dataset { rows: 1, cols: 2, classes: 2, pixels: Vec::new(), labels: vec![0], text: None };
        let text = serde_json::to_string(&TokenizeReply::Done(data.clone())).unwrap();
        assert_eq!(serde_json::from_str::<TokenizeReply>(&text).unwrap(), TokenizeReply::Done(data));
    }
}
