//! A pretrained Hugging Face encoder as the frozen backbone: a BERT-family model directory in the standard layout
//! (`config.json`, `model.safetensors`, `tokenizer.json`), read into the same [`Backbone`] the image track uses
//! (post-norm blocks, word embeddings), so routing, training, serving and the bundle do not care which it is.
//!
//! Every tensor is checked against `config.json` by name and shape; a file that does not match is an error naming
//! the file and the field or tensor, never a panic.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData, f16};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::Error;

use super::config::{LoraConfig, ModelConfig, TextConfig, VitConfig};
use super::vit::{Backbone, Block, TextEmbedding};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The files a backbone is made of, in the order the manifest records them.
pub const FILES: [&str; 3] = [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE];

/// The fields of a Hugging Face `config.json` that decide the computation. Unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HfConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "default_positions")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_types() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

fn default_positions() -> String {
    "absolute".into()
}

impl HfConfig {
    /// Parses and checks `config.json` (`file` names it in errors).
    pub fn from_json(file: &str, text: &str) -> crate::Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::format(file, format!("not a JSON document: {e}")))?;
        let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if model_type != "bert" {
            return Err(Error::format(
                file,
                format!(
                    "model_type {model_type:?} is not supported (supported: \"bert\", the BERT family such as \
                 all-MiniLM-L6-v2)"
                ),
            ));
        }
        let config: Self = serde_json::from_value(value).map_err(|e| Error::format(file, e.to_string()))?;
        let field = |name: &str, why: String| Err(Error::config(name, format!("{file}: {name}: {why}")));
        if config.hidden_act != "gelu" {
            return field("hidden_act", format!("{:?} is not supported (supported: \"gelu\")", config.hidden_act));
        }
        if config.position_embedding_type != "absolute" {
            return field(
                "position_embedding_type",
                format!("{:?} is not supported (supported: \"absolute\")", config.position_embedding_type),
            );
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return field(
                "num_attention_heads",
                format!("{} must divide hidden_size {}", config.num_attention_heads, config.hidden_size),
            );
        }
        if config.hidden_size == 0 || !config.intermediate_size.is_multiple_of(config.hidden_size) {
            return field(
                "intermediate_size",
                format!("{} must be a multiple of hidden_size {}", config.intermediate_size, config.hidden_size),
            );
        }
        Ok(config)
    }

    /// The model configuration of a text bundle on this encoder: `classes` outputs, `groups` layer groups (the top
    /// `groups × layers_per_group` layers carry adapters), texts cut to `max_tokens`.
    pub fn model_config(
        &self,
        classes: usize,
        groups: usize,
        layers_per_group: usize,
        max_tokens: usize,
        lora: LoraConfig,
    ) -> crate::Result<ModelConfig> {
        let vit = VitConfig::new()
            .with_image_size(1)
            .with_patch_size(1)
            .with_d_model(self.hidden_size)
            .with_heads(self.num_attention_heads)
            .with_depth(self.num_hidden_layers)
            .with_mlp_ratio(self.intermediate_size / self.hidden_size.max(1))
            .with_classes(classes);
        let text = TextConfig::new(
            self.model_type.clone(),
            self.vocab_size,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.layer_norm_eps,
            self.pad_token_id,
        )
        .with_max_tokens(max_tokens)
        .with_packed(Some(true));
        let config = ModelConfig::new()
            .with_vit(vit)
            .with_lora(lora)
            .with_groups(groups)
            .with_layers_per_group(Some(layers_per_group))
            .with_text(Some(text));
        config.validate()?;
        Ok(config)
    }
}

/// A file of a backbone directory as a bundle records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// Where a text bundle's backbone comes from: the directory it was read from and its files, which every load checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackboneSource {
    /// The directory as given to `--backbone hf:DIR`.
    pub dir: String,
    pub files: Vec<SourceFile>,
}

impl BackboneSource {
    /// Checks that `name`'s bytes are the recorded ones.
    pub fn check(&self, name: &str, bytes: &[u8]) -> crate::Result<()> {
        let file = self
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| Error::mismatch(format!("{name}: not recorded")))?;
        let sha = crate::partition::hex(&crate::bundle::manifest::sha256(bytes));
        if file.bytes != bytes.len() as u64 || file.sha256 != sha {
            let message = format!(
                "{}/{name}: sha256 {sha} ({} bytes) differs from the recorded {} ({} bytes): not the backbone this \
                 bundle was built on",
                self.dir,
                bytes.len(),
                file.sha256,
                file.bytes
            );
            return Err(Error::Checksum {
                file: format!("{}/{name}", self.dir),
                expected: file.sha256.clone(),
                actual: sha,
                message,
            });
        }
        Ok(())
    }
}

/// The tensor names of a BERT checkpoint, optionally under a `bert.` prefix (a `BertFor…` checkpoint).
struct Tensors<'a> {
    file: &'a str,
    /// The checkpoint, or (an export's two parts) the files that together hold it.
    parts: Vec<SafeTensors<'a>>,
    prefix: &'static str,
    device: &'a Device,
    /// Round every value to f16 ([`super::config::TextConfig::frozen_f16`]).
    half: bool,
}

impl Tensors<'_> {
    fn names(&self) -> Vec<&str> {
        self.parts.iter().flat_map(SafeTensors::names).collect()
    }

    fn get<const D: usize>(&self, name: &str, shape: [usize; D]) -> crate::Result<Tensor<D>> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .parts
            .iter()
            .find_map(|st| st.tensor(&full).ok())
            .ok_or_else(|| Error::format(self.file, format!("tensor {full} is missing")))?;
        if view.shape() != shape {
            return Err(Error::mismatch(format!(
                "{}: tensor {full} has shape {:?}, but config.json makes it {shape:?}",
                self.file,
                view.shape()
            )));
        }
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 if self.half => view
                .data()
                .chunks_exact(4)
                .map(|b| f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_f32())
                .collect(),
            Dtype::F32 => view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            // What an export of a model held at f16 ships ([`encoder_layers`]): already those values.
            Dtype::F16 if self.half => {
                view.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            other => {
                return Err(Error::format(
                    self.file,
                    format!("tensor {full} is {other:?}; only F32 checkpoints are supported"),
                ));
            }
        };
        Ok(Tensor::from_data(TensorData::new(values, shape), self.device))
    }

    /// A Hugging Face `nn.Linear` (`weight` [out, in]) as burn's (`weight` [in, out]).
    fn linear(&self, name: &str, d_in: usize, d_out: usize) -> crate::Result<Linear> {
        let weight = self.get(&format!("{name}.weight"), [d_out, d_in])?.transpose();
        let bias = self.get(&format!("{name}.bias"), [d_out])?;
        Ok(Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) })
    }

    fn norm(&self, name: &str, d: usize, epsilon: f64) -> crate::Result<LayerNorm> {
        let mut norm = LayerNormConfig::new(d).with_epsilon(epsilon).init(self.device);
        norm.gamma = Param::from_tensor(self.get(&format!("{name}.weight"), [d])?);
        norm.beta = Some(Param::from_tensor(self.get(&format!("{name}.bias"), [d])?));
        Ok(norm)
    }
}

/// Reads a BERT checkpoint (`model.safetensors`'s bytes; `file` names it in errors) into a frozen backbone of
/// `config` (a text configuration, [`HfConfig::model_config`]).
pub fn load_backbone(file: &str, bytes: &[u8], config: &ModelConfig, device: &Device) -> crate::Result<Backbone> {
    load_encoder_layers(file, bytes, config, 0, device)
}

/// [`load_backbone`] from block `from` up: `from` 0 reads the whole encoder, embedding included; a boundary above 0
/// reads a file holding exactly layers `from..depth` ([`encoder_layers`]) into an encoder without an embedding,
/// which serves from activations cached at that boundary (the page's text bundles).
pub fn load_encoder_layers(
    file: &str,
    bytes: &[u8],
    config: &ModelConfig,
    from: usize,
    device: &Device,
) -> crate::Result<Backbone> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| Error::format(file, format!("not a safetensors file: {e}")))?;
    super::vit::unpaced(load_parts_paced(file, vec![st], config, from, device, &async || {}))
}

/// [`load_encoder_layers`] from the files that together hold the tensors (checked by the caller), awaiting `pause`
/// after the embedding and each layer: the page loads a whole encoder on its main thread.
async fn load_parts_paced(
    file: &str,
    parts: Vec<SafeTensors<'_>>,
    config: &ModelConfig,
    from: usize,
    device: &Device,
    pause: &impl AsyncFn(),
) -> crate::Result<Backbone> {
    let text = config.text.as_ref().ok_or_else(|| Error::config("text", "not a text model configuration"))?;
    if from > config.vit.depth {
        return Err(Error::mismatch(format!(
            "{file}: layers from {from} asked of an encoder of {} layers",
            config.vit.depth
        )));
    }
    let prefix = if parts.iter().flat_map(SafeTensors::names).any(|n| n.starts_with("bert.")) { "bert." } else { "" };
    let t = Tensors { file, parts, prefix, device, half: text.frozen_half() };
    let (d, eps) = (config.vit.d_model, text.layer_norm_eps);
    let hidden = d * config.vit.mlp_ratio;
    let embedding = if from == 0 {
        Some(TextEmbedding {
            word: Param::from_tensor(t.get("embeddings.word_embeddings.weight", [text.vocab_size, d])?),
            position: Param::from_tensor(t.get("embeddings.position_embeddings.weight", [text.max_positions, d])?),
            token_type: Param::from_tensor(
                t.get("embeddings.token_type_embeddings.weight", [text.type_vocab_size, d])?,
            ),
            norm: t.norm("embeddings.LayerNorm", d, eps)?,
            epsilon: eps,
        })
    } else {
        // A partial file holds the layers it names and nothing else (what `encoder_layers` writes).
        let layer = |n: &str| layer_of(n.strip_prefix(prefix).unwrap_or(n));
        if let Some(name) = t.names().into_iter().find(|n| layer(n).is_none_or(|i| i < from)) {
            return Err(Error::format(
                file,
                format!("tensor {name} is not one of the encoder's layers from {from} up"),
            ));
        }
        None
    };
    pause().await;
    let mut blocks = Vec::with_capacity(config.vit.depth - from);
    for i in from..config.vit.depth {
        let layer = format!("encoder.layer.{i}");
        blocks.push(Block {
            query: t.linear(&format!("{layer}.attention.self.query"), d, d)?,
            key: t.linear(&format!("{layer}.attention.self.key"), d, d)?,
            value: t.linear(&format!("{layer}.attention.self.value"), d, d)?,
            output: t.linear(&format!("{layer}.attention.output.dense"), d, d)?,
            norm1: t.norm(&format!("{layer}.attention.output.LayerNorm"), d, eps)?,
            fc1: t.linear(&format!("{layer}.intermediate.dense"), d, hidden)?,
            fc2: t.linear(&format!("{layer}.output.dense"), hidden, d)?,
            norm2: t.norm(&format!("{layer}.output.LayerNorm"), d, eps)?,
            heads: config.vit.heads,
            post_norm: true,
            epsilon: eps,
        });
        pause().await;
    }
    let extra = format!("{prefix}encoder.layer.{}.", config.vit.depth);
    if t.names().iter().any(|n| n.starts_with(&extra)) {
        return Err(Error::mismatch(format!(
            "{file}: holds more encoder layers than num_hidden_layers {} in config.json",
            config.vit.depth
        )));
    }
    Ok(Backbone {
        patch: None,
        position: None,
        text: embedding,
        blocks,
        first_block: from,
        norm: None,
        patch_size: 1,
        packed: text.packs(),
    })
}

/// The layer a tensor name (without a `bert.` prefix) belongs to: `encoder.layer.N.…` → N.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("encoder.layer.")?.split('.').next()?.parse().ok()
}

/// The tensors of encoder layers `from..` of a BERT checkpoint, as a safetensors file of their own, names unchanged
/// and everything below left out: their bytes unchanged, or (`half`, a model held at f16) rounded to F16 tensors.
/// [`load_encoder_layers`] reads back the very values the model computes with.
pub fn encoder_layers(file: &str, bytes: &[u8], from: usize, half: bool) -> crate::Result<Vec<u8>> {
    let above = |name: &str| layer_of(name).is_some_and(|i| i >= from);
    encoder_part(file, bytes, above, &format!("encoder layer from {from} up"), half)
}

/// The rest of the encoder below layer `from`: the embedding and layers `..from` ([`encoder_layers`]'s complement
/// among the tensors the model reads), written the same way. [`load_whole_encoder_paced`] joins the two.
pub fn encoder_below(file: &str, bytes: &[u8], from: usize, half: bool) -> crate::Result<Vec<u8>> {
    let below = |name: &str| is_embedding(name) || layer_of(name).is_some_and(|i| i < from);
    encoder_part(file, bytes, below, &format!("embedding or layer below {from}"), half)
}

/// Whether a tensor (its name without a `bert.` prefix) is one of the embedding's that the model reads (a
/// checkpoint may hold buffers besides, such as the integer `embeddings.position_ids`).
fn is_embedding(name: &str) -> bool {
    ["word_embeddings.", "position_embeddings.", "token_type_embeddings.", "LayerNorm."]
        .iter()
        .any(|part| name.strip_prefix("embeddings.").is_some_and(|rest| rest.starts_with(part)))
}

/// The tensors of a checkpoint whose names (without a `bert.` prefix) `keep` selects, as a file of their own.
fn encoder_part(
    file: &str,
    bytes: &[u8],
    keep: impl Fn(&str) -> bool,
    what: &str,
    half: bool,
) -> crate::Result<Vec<u8>> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| Error::format(file, format!("not a safetensors file: {e}")))?;
    let mut kept: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        st.tensors().into_iter().filter(|(name, _)| keep(name.strip_prefix("bert.").unwrap_or(name))).collect();
    if kept.is_empty() {
        return Err(Error::format(file, format!("holds no {what}")));
    }
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let write = |e: safetensors::SafeTensorError| Error::format(file, format!("cannot write its {what}: {e}"));
    if !half {
        return safetensors::serialize(kept, None).map_err(write);
    }
    let mut halved: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(kept.len());
    for (name, view) in &kept {
        if view.dtype() != Dtype::F32 {
            return Err(Error::format(
                file,
                format!("tensor {name} is {:?}; only F32 checkpoints are supported", view.dtype()),
            ));
        }
        let data: Vec<u8> = view
            .data()
            .chunks_exact(4)
            .flat_map(|b| f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes())
            .collect();
        halved.push((name.clone(), view.shape().to_vec(), data));
    }
    let views = halved
        .iter()
        .map(|(name, shape, data)| {
            Ok((name.clone(), safetensors::tensor::TensorView::new(Dtype::F16, shape.clone(), data)?))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(write)?;
    safetensors::serialize(views, None).map_err(write)
}

/// The whole encoder (embedding included, `first_block` 0) from the two parts an export ships: `below`, what
/// [`encoder_below`] wrote, and `above`, what [`encoder_layers`] wrote, both for boundary `from` (each a file name
/// and its bytes). A tensor in the wrong part is refused, so neither file can stand in for the other's.
/// Awaits `pause` between its layers.
pub async fn load_whole_encoder_paced(
    below: (&str, &[u8]),
    above: (&str, &[u8]),
    config: &ModelConfig,
    from: usize,
    device: &Device,
    pause: &impl AsyncFn(),
) -> crate::Result<Backbone> {
    let (low, high) = (SafeTensors::deserialize(below.1), SafeTensors::deserialize(above.1));
    let low = low.map_err(|e| Error::format(below.0, format!("not a safetensors file: {e}")))?;
    let high = high.map_err(|e| Error::format(above.0, format!("not a safetensors file: {e}")))?;
    for ((file, st), lower) in [(below.0, &low), (above.0, &high)].into_iter().zip([true, false]) {
        for name in st.names() {
            let bare = name.strip_prefix("bert.").unwrap_or(name);
            let is_lower = is_embedding(bare) || layer_of(bare).is_some_and(|i| i < from);
            let is_upper = layer_of(bare).is_some_and(|i| i >= from);
            if (lower && !is_lower) || (!lower && !is_upper) {
                return Err(Error::format(
                    file,
                    format!("tensor {name} does not belong to this part of the encoder (boundary {from})"),
                ));
            }
        }
    }
    let file = format!("{} + {}", below.0, above.0);
    load_parts_paced(&file, vec![low, high], config, 0, device, pause).await
}

/// A Hugging Face model directory, read (natively): its three files and what they say.
#[cfg(not(target_family = "wasm"))]
pub struct HfDir {
    pub config: HfConfig,
    pub weights: Vec<u8>,
    pub tokenizer: Vec<u8>,
    /// The directory and its files' checksums, as a bundle records them.
    pub source: BackboneSource,
}

#[cfg(not(target_family = "wasm"))]
impl HfDir {
    /// Reads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`; a missing file is named.
    pub fn open(dir: &std::path::Path) -> crate::Result<Self> {
        if !dir.is_dir() {
            return Err(Error::config(
                "backbone",
                format!("{}: not a directory (expected a Hugging Face model directory)", dir.display()),
            ));
        }
        let mut files = Vec::new();
        let mut read = |name: &str| -> crate::Result<Vec<u8>> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(Error::io(&path, "read"))?;
            let sha256 = crate::partition::hex(&crate::bundle::manifest::sha256(&bytes));
            files.push(SourceFile { name: name.to_owned(), sha256, bytes: bytes.len() as u64 });
            Ok(bytes)
        };
        let config_bytes = read(CONFIG_FILE)?;
        let weights = read(WEIGHTS_FILE)?;
        let tokenizer = read(TOKENIZER_FILE)?;
        let config_path = dir.join(CONFIG_FILE).display().to_string();
        let text = std::str::from_utf8(&config_bytes).map_err(|_| Error::format(&config_path, "not UTF-8"))?;
        let config = HfConfig::from_json(&config_path, text)?;
        let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let source = BackboneSource { dir: absolute.display().to_string(), files };
        Ok(Self { config, weights, tokenizer, source })
    }

    /// Reads the directory a bundle recorded and checks that every file is the one it was built on.
    pub fn open_recorded(recorded: &BackboneSource) -> crate::Result<Self> {
        let dir = Self::open(std::path::Path::new(&recorded.dir))?;
        for file in &recorded.files {
            let bytes = match file.name.as_str() {
                CONFIG_FILE => None,
                WEIGHTS_FILE => Some(&dir.weights),
                TOKENIZER_FILE => Some(&dir.tokenizer),
                other => {
                    return Err(Error::mismatch(format!(
                        "{}: the bundle records an unknown backbone file {other:?}",
                        recorded.dir
                    )));
                }
            };
            match bytes {
                Some(bytes) => recorded.check(&file.name, bytes)?,
                None => {
                    let now = dir.source.files.iter().find(|f| f.name == CONFIG_FILE);
                    if now.map(|f| (&f.sha256, f.bytes)) != Some((&file.sha256, file.bytes)) {
                        let message = format!(
                            "{}/{CONFIG_FILE}: differs from the recorded sha256 {}: not the backbone this bundle was \
                             built on",
                            recorded.dir, file.sha256
                        );
                        return Err(Error::Checksum {
                            file: format!("{}/{CONFIG_FILE}", recorded.dir),
                            expected: file.sha256.clone(),
                            actual: now.map(|f| f.sha256.clone()).unwrap_or_default(),
                            message,
                        });
                    }
                }
            }
        }
        if recorded.files.len() != FILES.len() {
            return Err(Error::mismatch(format!(
                "{}: the bundle records {} backbone files, not {}",
                recorded.dir,
                recorded.files.len(),
                FILES.len()
            )));
        }
        Ok(dir)
    }

    /// The frozen backbone of `config` from `model.safetensors`.
    pub fn backbone(&self, config: &ModelConfig, device: &Device) -> crate::Result<Backbone> {
        load_backbone(&format!("{}/{WEIGHTS_FILE}", self.source.dir), &self.weights, config, device)
    }

    /// The directory's `tokenizer.json`, checked against `config` (feature `text`).
    #[cfg(feature = "text")]
    pub fn tokenizer(&self, max_tokens: usize) -> crate::Result<crate::tokenizer::TextTokenizer> {
        crate::tokenizer::TextTokenizer::from_bytes(
            &format!("{}/{TOKENIZER_FILE}", self.source.dir),
            &self.tokenizer,
            self.config.vocab_size,
            self.config.pad_token_id,
            max_tokens,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint as Hugging Face writes MiniLM's: an integer buffer among the embedding's tensors.
    fn checkpoint() -> Vec<u8> {
        let f32s = |n: usize| (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect::<Vec<u8>>();
        let (word, layer0, layer1) = (f32s(4), f32s(2), f32s(2));
        let ids: Vec<u8> = (0..2i64).flat_map(|i| i.to_le_bytes()).collect();
        let views = vec![
            ("bert.embeddings.word_embeddings.weight", Dtype::F32, vec![2, 2], &word),
            ("bert.embeddings.position_ids", Dtype::I64, vec![1, 2], &ids),
            ("bert.encoder.layer.0.output.dense.bias", Dtype::F32, vec![2], &layer0),
            ("bert.encoder.layer.1.output.dense.bias", Dtype::F32, vec![2], &layer1),
            ("bert.pooler.dense.bias", Dtype::F32, vec![2], &layer1),
        ];
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = views
            .into_iter()
            .map(|(name, dtype, shape, data)| {
                (name.to_owned(), safetensors::tensor::TensorView::new(dtype, shape, data).expect("a view"))
            })
            .collect();
        safetensors::serialize(views, None).expect("serialised")
    }

    #[test]
    fn the_two_parts_of_an_encoder_hold_exactly_what_the_model_reads_on_their_side() {
        let bytes = checkpoint();
        let names = |part: &[u8]| {
            let mut names: Vec<String> =
                SafeTensors::deserialize(part).expect("st").names().into_iter().map(str::to_owned).collect();
            names.sort();
            names
        };
        for half in [false, true] {
            let below = encoder_below("m", &bytes, 1, half).expect("the part below");
            let above = encoder_layers("m", &bytes, 1, half).expect("the part above");
            assert_eq!(
                names(&below),
                ["bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.output.dense.bias"],
                "neither the integer buffer nor the pooler is shipped"
            );
            assert_eq!(names(&above), ["bert.encoder.layer.1.output.dense.bias"]);
        }
        assert!(encoder_below("m", &bytes, 0, false).expect("the embedding alone").len() < bytes.len());
    }
}
