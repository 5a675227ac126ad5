//! Serving a text bundle from its export for the page ([`crate::bundle::web`]): the encoder's layers from the
//! frozen base up, and the test reviews' activations at that boundary. The page and the tests open an export
//! through this one function, so what the tests compare with `trainer eval` is what the page computes.

use burn::tensor::Device;

use super::config::ModelConfig;
use super::features::Features;
use super::hf::{load_encoder_layers, load_whole_encoder_paced};
use super::vit::Backbone;
use crate::Error;
use crate::bundle::manifest::{verify_bytes, verify_bytes_paced};
use crate::bundle::web::{TextExport, parse_split};
use crate::dataset::Dataset;

/// A text export, opened.
pub struct ExportedText {
    /// Layers `from_layer..` of the encoder (no embedding: it serves from the test activations alone).
    pub encoder: Backbone,
    /// The test reviews (texts and labels for the page; token ids for their lengths).
    pub test: Dataset,
    /// Their activations entering the bottom group.
    pub features: Features,
}

/// The bytes of an export's files, as the index names them.
pub struct ExportFiles {
    pub encoder: Vec<u8>,
    pub activations: Vec<u8>,
    pub test: Vec<u8>,
}

/// Test reviews per evaluation batch. A batch's operations are the page's longest main-thread tasks on the CPU
/// backend (a feed-forward product of the two top MiniLM layers over 200 reviews took a second in wasm); the
/// numbers do not depend on the batch (`trainer/tests/text.rs` compares them with `trainer eval`'s).
pub const EVAL_BATCH: usize = 8;

/// Checks every file against the index and the index against the model (its boundary must be the model's frozen
/// base, or the activations would enter the wrong layer), then opens them on `device`.
pub fn open(
    config: &ModelConfig,
    classes: u8,
    index: &TextExport,
    files: ExportFiles,
    device: &Device,
) -> crate::Result<ExportedText> {
    let text = config.text.as_ref().ok_or_else(not_text)?;
    check_boundary(config, index)?;
    verify_bytes(&index.encoder, &files.encoder)?;
    let encoder = load_encoder_layers(&index.encoder.path, &files.encoder, config, index.from_layer, device)?;
    let test = index.test_of(files.test, text.max_tokens, classes)?;
    let rows = index.activations_of(&files.activations)?;
    let features = Features::from_real_tokens(config, &test, &rows, EVAL_BATCH, device)
        .map_err(|e| Error::format(&index.activations.path, e.to_string()))?;
    Ok(ExportedText { encoder, test, features })
}

/// A text export met a bundle whose model reads images.
fn not_text() -> Error {
    Error::mismatch("a text export, but the bundle's model reads images")
}

/// Checks the configuration against the index as [`open`] does.
fn check_boundary(config: &ModelConfig, index: &TextExport) -> crate::Result<()> {
    if index.from_layer != config.frozen_base() || index.d_model != config.vit.d_model {
        return Err(Error::mismatch(format!(
            "the export starts at layer {} of width {}, but the model's frozen base is layer {} of width {} (export \
             the bundle again)",
            index.from_layer,
            index.d_model,
            config.frozen_base(),
            config.vit.d_model
        )));
    }
    Ok(())
}

/// The whole encoder from an export's two parts (`below`: [`TextExport::below`]'s bytes, `above`:
/// [`TextExport::encoder`]'s), each checked against the index: what classifying a new sentence, or retraining a
/// shard from its reviews' token ids, needs.
pub fn whole_encoder(
    config: &ModelConfig,
    index: &TextExport,
    below: &[u8],
    above: &[u8],
    device: &Device,
) -> crate::Result<Backbone> {
    super::vit::unpaced(whole_encoder_paced(config, index, below, above, device, &async || {}))
}

/// [`whole_encoder`], awaiting `pause` between layers (the page loads it on its main thread).
pub async fn whole_encoder_paced(
    config: &ModelConfig,
    index: &TextExport,
    below: &[u8],
    above: &[u8],
    device: &Device,
    pause: &impl AsyncFn(),
) -> crate::Result<Backbone> {
    check_boundary(config, index)?;
    verify_bytes_paced(&index.below, below, pause).await?;
    verify_bytes_paced(&index.encoder, above, pause).await?;
    let parts = ((index.below.path.as_str(), below), (index.encoder.path.as_str(), above));
    load_whole_encoder_paced(parts.0, parts.1, config, index.from_layer, device, pause).await
}

/// The validation split of an export, checked against the index and the model (`classes` classes).
pub fn validation(config: &ModelConfig, classes: u8, index: &TextExport, bytes: Vec<u8>) -> crate::Result<Dataset> {
    let text = config.text.as_ref().ok_or_else(not_text)?;
    verify_bytes(&index.validation_texts, &bytes)?;
    parse_split(&index.validation_texts.path, bytes, text.max_tokens, classes)
}

/// The export's `tokenizer.json`, checked against the index and the model's vocabulary.
#[cfg(feature = "tokenizer")]
pub fn tokenizer(
    config: &ModelConfig,
    index: &TextExport,
    bytes: &[u8],
) -> crate::Result<crate::tokenizer::TextTokenizer> {
    let text = config.text.as_ref().ok_or_else(not_text)?;
    verify_bytes(&index.tokenizer, bytes)?;
    crate::tokenizer::TextTokenizer::from_bytes(
        &index.tokenizer.path,
        bytes,
        text.vocab_size,
        text.pad_token_id,
        text.max_tokens,
    )
}

/// The bytes a text shard's retrain reads from a bundle and its export (what the page's worker fetches).
pub struct RetrainFiles {
    /// The bundle's backbone file (a text bundle's holds the pretrained head).
    pub head: Vec<u8>,
    /// [`TextExport::below`] and [`TextExport::encoder`].
    pub below: Vec<u8>,
    pub above: Vec<u8>,
    /// The page's copy of the deletable split (deleted reviews purged) and the validation split.
    pub deletable: Vec<u8>,
    pub validation: Vec<u8>,
}

/// What `trainer retrain` reads, from a text bundle's export instead of its Hugging Face directory and corpus: the
/// pretrained model (the whole encoder, joined from its two parts, and the head) and the deletable and validation
/// splits, every file checked against the manifest or the index. The deletable copy is checked against the bundle's
/// commitments by the caller ([`crate::bundle::samples::verify`]), which knows what was purged.
pub fn retrain_inputs(
    manifest: &crate::bundle::Manifest,
    index: &TextExport,
    files: RetrainFiles,
    device: &Device,
) -> crate::Result<(super::Pretrained, Dataset, Dataset)> {
    let config = &manifest.model;
    let text = config.text.as_ref().ok_or_else(not_text)?;
    let file = &manifest.backbone.weights;
    verify_bytes(file, &files.head)?;
    let head = super::weights::load_safetensors(super::Head::new(&config.vit, device), files.head, &file.path)?;
    let encoder = whole_encoder(config, index, &files.below, &files.above, device)?;
    let classes = manifest.data.classes;
    let deletable_file = crate::bundle::web::split_file("deletable");
    let deletable = parse_split(&deletable_file, files.deletable, text.max_tokens, classes)?;
    let validation = validation(config, classes, index, files.validation)?;
    Ok((super::Pretrained { backbone: encoder, head }, deletable, validation))
}
