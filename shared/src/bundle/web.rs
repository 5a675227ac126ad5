//! What `trainer export --format web` writes next to a text bundle for the page, and how the page reads it back.
//!
//! A text bundle's frozen encoder is tens of MB, and every node reads the same frozen layers below the lowest
//! adapter group. So the export ships, instead of the encoder and the test reviews' token ids:
//!
//! ```text
//! OUT/data/text.json                       this index: boundary, shapes, sha256 of every file below
//! OUT/data/encoder-layers.safetensors      the encoder's layers from the boundary up (Hugging Face names)
//! OUT/data/test-activations.f32            the test reviews' activations at the boundary, real tokens only
//! OUT/data/{deletable,test}-texts.json.gz  the splits' texts, token ids and labels (deleted reviews purged)
//! OUT/data/validation-texts.json.gz        the validation split (model selection when the page retrains a shard)
//! OUT/data/encoder-below.safetensors       the embedding and the layers below the boundary
//! OUT/data/tokenizer.json                  the encoder's tokenizer
//! ```
//!
//! The first four are the page's first load; the last three only load when a visitor classifies a sentence of
//! their own or retrains a shard (both need the whole encoder).
//!
//! The deletable split is checked sample by sample against the bundle's salted commitments, as images are
//! ([`super::samples`]); the other files against the index.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::entry::{WeightFile, verify_bytes};
use crate::Error;
use crate::dataset::{DataError, Dataset, MAX_DECOMPRESSED_BYTES};

/// The index of a text export, relative to the bundle.
pub const TEXT_INDEX_FILE: &str = "data/text.json";
/// The encoder's layers from the boundary up, relative to the bundle.
pub const ENCODER_FILE: &str = "data/encoder-layers.safetensors";
/// The test reviews' activations at the boundary, relative to the bundle.
pub const ACTIVATIONS_FILE: &str = "data/test-activations.f32";
/// The embedding and the encoder's layers below the boundary, relative to the bundle.
pub const BELOW_FILE: &str = "data/encoder-below.safetensors";
/// The encoder's `tokenizer.json`, relative to the bundle.
pub const TOKENIZER_FILE: &str = "data/tokenizer.json";
/// Format of the index; bumped whenever a reader of an older one would misread a newer one.
pub const TEXT_FORMAT: u32 = 2;

/// The split files of a text export, relative to the bundle.
pub fn split_file(name: &str) -> String {
    format!("data/{name}-texts.json.gz")
}

/// The index of a text export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextExport {
    pub format: u32,
    /// The first encoder layer shipped: the bundle's frozen base (every layer below it is frozen in every node).
    pub from_layer: usize,
    /// Model width (values per token).
    pub d_model: usize,
    /// Test reviews shipped (the first N of the test split).
    pub test: usize,
    /// Their real tokens in all (rows of `activations`).
    pub test_tokens: usize,
    /// Layers `from_layer..` of the encoder.
    pub encoder: WeightFile,
    /// The activations entering layer `from_layer` at each test review's real tokens, little-endian f32, row-major
    /// [test_tokens, d_model] in review order.
    pub activations: WeightFile,
    /// The test reviews (texts, token ids, labels).
    pub test_texts: WeightFile,
    /// The validation split (texts, token ids, labels).
    pub validation_texts: WeightFile,
    /// The embedding and layers `..from_layer` of the encoder.
    pub below: WeightFile,
    /// The encoder's `tokenizer.json`.
    pub tokenizer: WeightFile,
}

impl TextExport {
    /// Parses and checks an index (`file` names it in errors).
    pub fn from_json(file: &str, text: &str) -> crate::Result<Self> {
        let index: Self = serde_json::from_str(text).map_err(|e| Error::format(file, e.to_string()))?;
        if index.format != TEXT_FORMAT {
            return Err(Error::format(
                file,
                format!(
                    "format {} of a text export; this version reads {TEXT_FORMAT} (export the bundle again)",
                    index.format
                ),
            ));
        }
        let expected = [
            ENCODER_FILE.to_owned(),
            ACTIVATIONS_FILE.to_owned(),
            split_file("test"),
            split_file("validation"),
            BELOW_FILE.to_owned(),
            TOKENIZER_FILE.to_owned(),
        ];
        if let Some((found, want)) = index.files().into_iter().zip(&expected).find(|(f, want)| &f.path != *want) {
            return Err(Error::format(
                file,
                format!("names the file {:?} where an export writes {want:?}", found.path),
            ));
        }
        if index.test == 0 {
            return Err(Error::format(file, "no test reviews (export with a --test-limit above 0)"));
        }
        let expected = index.test_tokens.checked_mul(index.d_model).and_then(|v| v.checked_mul(4));
        if expected != Some(index.activations.bytes as usize) {
            return Err(Error::format(
                file,
                format!(
                    "activations of {} bytes do not hold {} tokens of {} values",
                    index.activations.bytes, index.test_tokens, index.d_model
                ),
            ));
        }
        Ok(index)
    }

    /// Every file the index names, in the order an export writes them.
    pub fn files(&self) -> [&WeightFile; 6] {
        [&self.encoder, &self.activations, &self.test_texts, &self.validation_texts, &self.below, &self.tokenizer]
    }

    /// The activations file's values, after its checksum.
    pub fn activations_of(&self, bytes: &[u8]) -> crate::Result<Vec<f32>> {
        verify_bytes(&self.activations, bytes)?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// The test reviews, after their checksum: as many as the index says, of the model's tokens and classes.
    pub fn test_of(&self, bytes: Vec<u8>, tokens: usize, classes: u8) -> crate::Result<Dataset> {
        verify_bytes(&self.test_texts, &bytes)?;
        let test = parse_split(&self.test_texts.path, bytes, tokens, classes)?;
        let real: usize = test.text.as_ref().map_or(0, |t| t.lengths.iter().map(|&l| l as usize).sum());
        if test.len() != self.test || real != self.test_tokens {
            return Err(Error::format(
                &self.test_texts.path,
                format!(
                    "{} reviews of {real} real tokens, but the index says {} of {}",
                    test.len(),
                    self.test,
                    self.test_tokens
                ),
            ));
        }
        Ok(test)
    }
}

/// A text split as the page reads it: gzip-compressed JSON of the [`Dataset`].
pub fn split_bytes(data: &Dataset) -> crate::Result<Vec<u8>> {
    let json = serde_json::to_vec(data).map_err(|e| Error::model(format!("cannot write a text split: {e}")))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&json)
        .and_then(|()| gz.finish())
        .map_err(|e| Error::model(format!("cannot compress a text split: {e}")))
}

/// Reads a split [`split_bytes`] wrote (`file` names it in errors) and checks it against the model: texts of
/// `tokens` token ids each, real lengths within them, labels below `classes`.
pub fn parse_split(file: &str, bytes: Vec<u8>, tokens: usize, classes: u8) -> crate::Result<Dataset> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| DataError::Gzip { file: file.to_owned(), reason: e.to_string() })?;
    if json.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(Error::format(file, format!("decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")));
    }
    let data: Dataset = serde_json::from_slice(&json).map_err(|e| Error::format(file, e.to_string()))?;
    let text = data.text.as_ref().ok_or_else(|| Error::Data(DataError::Invalid(format!("{file}: holds no texts"))))?;
    let n = data.labels.len();
    if data.rows != 1 || data.cols as usize != tokens || !data.pixels.is_empty() {
        return Err(Error::Data(DataError::Invalid(format!(
            "{file}: texts of 1×{} tokens expected, found {}×{}",
            tokens, data.rows, data.cols
        ))));
    }
    if data.classes != classes {
        return Err(Error::mismatch(format!("{file}: {} classes, but the model has {classes}", data.classes)));
    }
    if text.texts.len() != n || text.lengths.len() != n || Some(text.ids.len()) != n.checked_mul(tokens) {
        return Err(Error::Data(DataError::Invalid(format!(
            "{file}: {n} labels, {} texts, {} lengths and {} token ids ({tokens} per text) do not agree",
            text.texts.len(),
            text.lengths.len(),
            text.ids.len()
        ))));
    }
    if let Some(i) = text.lengths.iter().position(|&l| l as usize > tokens) {
        return Err(Error::Data(DataError::Invalid(format!(
            "{file}: text {i} has {} real tokens, more than {tokens}",
            text.lengths[i]
        ))));
    }
    if let Some(i) = data.labels.iter().position(|&l| l >= classes) {
        return Err(Error::Data(DataError::Invalid(format!(
            "{file}: text {i} has label {}, outside 0..{classes}",
            data.labels[i]
        ))));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::TextSamples;

    fn texts() -> Dataset {
        Dataset {
            rows: 1,
            cols: 4,
            classes: 2,
            pixels: Vec::new(),
            labels: vec![1, 0],
            text: Some(TextSamples {
                ids: vec![101, 7, 102, 0, 101, 102, 0, 0],
                lengths: vec![3, 2],
                texts: vec!["good".into(), String::new()],
            }),
        }
    }

    #[test]
    fn a_split_reads_back_as_written_and_bad_ones_are_named() {
        let bytes = split_bytes(&texts()).unwrap();
        assert_eq!(parse_split("d", bytes.clone(), 4, 2).unwrap(), texts());
        assert!(parse_split("d", bytes.clone(), 5, 2).unwrap_err().to_string().contains("1×5"));
        assert!(parse_split("d", bytes, 4, 3).unwrap_err().to_string().contains("classes"));
        let mut long = texts();
        long.text.as_mut().unwrap().lengths[1] = 9;
        assert!(parse_split("d", split_bytes(&long).unwrap(), 4, 2).unwrap_err().to_string().contains("text 1 has 9"));
        let mut short = texts();
        short.text.as_mut().unwrap().ids.pop();
        assert!(parse_split("d", split_bytes(&short).unwrap(), 4, 2).unwrap_err().to_string().contains("do not agree"));
        assert!(parse_split("d", b"not gzip".to_vec(), 4, 2).unwrap_err().to_string().starts_with("d: not a gzip"));
    }

    #[test]
    fn an_index_is_checked_against_its_files() {
        let values = [1.5f32, -2.0, 0.25, 8.0, 0.0, 3.0, 1.0, 2.0, 4.0, -1.0];
        let activations: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let test = split_bytes(&texts()).unwrap();
        let index = TextExport {
            format: TEXT_FORMAT,
            from_layer: 1,
            d_model: 2,
            test: 2,
            test_tokens: 5,
            encoder: WeightFile::of(ENCODER_FILE, b"x"),
            activations: WeightFile::of(ACTIVATIONS_FILE, &activations),
            test_texts: WeightFile::of(&split_file("test"), &test),
            validation_texts: WeightFile::of(&split_file("validation"), &test),
            below: WeightFile::of(BELOW_FILE, b"y"),
            tokenizer: WeightFile::of(TOKENIZER_FILE, b"{}"),
        };
        let json = serde_json::to_string(&index).unwrap();
        let index = TextExport::from_json("i", &json).unwrap();
        assert_eq!(index.activations_of(&activations).unwrap(), values);
        assert!(index.activations_of(&activations[4..]).unwrap_err().to_string().contains("checksum"));
        assert!(index.test_of(test.clone(), 4, 2).is_ok());
        let wrong = TextExport { test_tokens: 4, ..index.clone() };
        assert!(
            TextExport::from_json("i", &serde_json::to_string(&wrong).unwrap())
                .unwrap_err()
                .to_string()
                .contains("4 tokens")
        );
        let newer = TextExport { format: TEXT_FORMAT + 1, ..index };
        assert!(
            TextExport::from_json("i", &serde_json::to_string(&newer).unwrap())
                .unwrap_err()
                .to_string()
                .contains("format")
        );
    }
}
