//! A Hugging Face `tokenizer.json` read through the `tokenizers` crate (feature `tokenizer`), the one tokenization
//! of every text path: the trainer's corpora, `trainer predict`, and the page's "try your own sentence" (the crate
//! compiles to wasm32 with its pure-Rust regex engine).

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::Error;
use crate::dataset::{DataError, Dataset, TextSamples};

/// A `tokenizer.json`, checked against the encoder's vocabulary, that cuts texts to `max_tokens` tokens.
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    pad_id: u32,
    max_tokens: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`'s bytes (`file` names it in errors) for an encoder of `vocab_size` rows whose padding
    /// id is `pad_id`. Longer texts are truncated to `max_tokens` as Hugging Face truncates (the special tokens
    /// are kept); padding is ours ([`TextTokenizer::dataset`]).
    pub fn from_bytes(
        file: &str,
        bytes: &[u8],
        vocab_size: usize,
        pad_id: u32,
        max_tokens: usize,
    ) -> crate::Result<Self> {
        let mut tokenizer = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::format(file, format!("not a tokenizer this build reads: {e}")))?;
        let size = tokenizer.get_vocab_size(true);
        if size > vocab_size {
            return Err(Error::mismatch(format!(
                "{file}: model.vocab holds {size} tokens but config.json's vocab_size is {vocab_size}: the tokenizer \
                 does not belong to this model"
            )));
        }
        if let Some(id) = tokenizer.get_padding().map(|p| p.pad_id)
            && id != pad_id
        {
            return Err(Error::mismatch(format!(
                "{file}: padding.pad_id {id} differs from config.json's pad_token_id {pad_id}"
            )));
        }
        tokenizer.with_padding(None);
        let params = TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        tokenizer
            .with_truncation(Some(params))
            .map_err(|e| Error::config("max_tokens", format!("{file}: truncation to {max_tokens} tokens: {e}")))?;
        Ok(Self { tokenizer, pad_id, max_tokens })
    }

    /// Token ids of `text`, special tokens included, at most `max_tokens`.
    pub fn encode(&self, text: &str) -> crate::Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| DataError::Invalid(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Tokenizes `texts` (padded with the pad id to `max_tokens`) with their labels into a data set.
    pub fn dataset(&self, texts: Vec<String>, labels: Vec<u8>, classes: u8) -> crate::Result<Dataset> {
        let n = self.max_tokens;
        let mut ids = Vec::with_capacity(texts.len() * n);
        let mut lengths = Vec::with_capacity(texts.len());
        for text in &texts {
            let row = self.encode(text)?;
            lengths.push(row.len() as u32);
            ids.extend(row.iter().copied().take(n));
            ids.extend(std::iter::repeat_n(self.pad_id, n.saturating_sub(row.len())));
        }
        Ok(Dataset {
            rows: 1,
            cols: n as u32,
            classes,
            pixels: Vec::new(),
            labels,
            text: Some(TextSamples { ids, lengths, texts }),
        })
    }
}
