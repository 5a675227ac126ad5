//! `trainer export`: the adapters of each shard's served component as PEFT-style safetensors.
//!
//! Per live shard, `OUT/shard-I/adapter_model.safetensors` holds `base_model.model.blocks.N.{query,value}.
//! lora_{A,B}.weight` (a text bundle: PEFT's names on the Hugging Face encoder,
//! `base_model.model.encoder.layer.N.attention.self.{query,value}.lora_{A,B}.weight`) in PyTorch layout (A: [r, in], B: [out, r]; the update is `alpha / r · B·A`), the head as
//! `base_model.model.head.linear.{weight,bias}` ([out, in]), and `adapter_config.json` the LoRA settings plus the
//! served sequence and prefix. The backbone is `weights/backbone.safetensors` of the bundle (burn layout, Linear
//! weights [in, out]).
//!
//! `--format web` writes what the web app shows next to a bundle: `OUT/data/{deletable,test,validation}-{images-idx3,
//! labels-idx1}-ubyte.gz`, the deletable split (checked against the bundle, every deleted sample purged) with its
//! per-sample digests (`data/deletable-digests.bin`), the first `--test-limit` test images, and the validation split
//! (model selection when the page retrains a shard). A text bundle's are described in [`s3t::bundle::web`].
//!
//! `--format safetensors` writes into a fresh directory next to `OUT` and then replaces `OUT` with it, so a reader
//! sees the old export or the new one, never adapters of shards that are offline now.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use burn::module::Param;
use burn::tensor::Tensor;
use clap::ValueEnum;
use s3t::bundle::samples;
use s3t::bundle::store::{write_atomic, write_weights};
use s3t::dataset::{Dataset, to_idx_gz};
use s3t::model::features::to_host;
use safetensors::tensor::{Dtype, TensorView};

use crate::bundle_dir::Bundle;
use crate::output;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// safetensors with PEFT-style tensor names and an adapter_config.json.
    Safetensors,
    /// The data files the web app loads (deletable split, test subset) as gzip-compressed IDX.
    Web,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Export format.
    #[arg(long, value_enum, default_value_t = Format::Safetensors)]
    pub format: Format,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// `--format web`: the data the bundle was built from.
    #[arg(long, default_value = "default")]
    pub data: String,
    /// `--format web`: how many test images the web app evaluates (the first N of the test split).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub test_limit: usize,
}

/// A host tensor: row-major f32 values and shape.
struct HostTensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Transposes a burn [in, out] matrix into PyTorch's [out, in].
fn transposed(param: &Param<Tensor<2>>) -> HostTensor {
    let t = param.val().transpose();
    let shape = t.dims().to_vec();
    HostTensor { shape, bytes: to_host(t).iter().flat_map(|v| v.to_le_bytes()).collect() }
}

fn vector(param: &Param<Tensor<1>>) -> HostTensor {
    let t = param.val();
    let shape = t.dims().to_vec();
    HostTensor { shape, bytes: to_host(t).iter().flat_map(|v| v.to_le_bytes()).collect() }
}

pub fn run(args: &Args) -> Result<()> {
    match args.format {
        Format::Safetensors => safetensors(args),
        Format::Web => web(args),
    }
}

fn web(args: &Args) -> Result<()> {
    // The bundle's lock for the whole export: a `delete` meanwhile would purge the page's copy, and this export,
    // purged against the ledger as it read it, would then write the deleted sample back.
    let (_lock, bundle) = Bundle::open_locked(&args.bundle)?;
    let splits = crate::cli::checked_data(&bundle, &args.data)?;
    let serving = bundle.serving()?;
    let dir = args.out.join(samples::DATA_DIR);
    let deleted = crate::cli::deleted_indices(serving.guard.deleted());
    // The bundle's commitments (salted by `pretrain`), the deleted samples' salts already gone.
    let digests_path = args.bundle.join(samples::DIGESTS_FILE);
    let mut digests =
        std::fs::read(&digests_path).map_err(|e| anyhow!("{}: cannot read: {e}", digests_path.display()))?;
    samples::purge_salts(&mut digests, &deleted);
    let digests_file = digests_path.display().to_string();
    samples::verify_digests(&digests_file, &digests, &bundle.manifest.data.deletable_digests_sha256, &HashSet::new())?;
    let mut purged = splits.deletable;
    samples::purge(&mut purged, &deleted);
    samples::verify(&digests_file, &purged, &digests, &bundle.manifest.data.deletable_digests_sha256, &deleted)?;
    write_atomic(&args.out.join(samples::DIGESTS_FILE), &digests)?;
    let test = splits.test.head(args.test_limit);
    if bundle.manifest.model.text.is_some() {
        write_text(&bundle, &args.out, &purged, &test, &splits.validation)?;
        return output::print(&format!("wrote the web app's data for a text bundle to {}\n", dir.display()));
    }
    write_split(&dir, "deletable", &purged)?;
    write_split(&dir, "test", &test)?;
    // The page's retraining worker selects models on the validation split, as `trainer retrain` does.
    write_split(&dir, "validation", &splits.validation)?;
    output::print(&format!("wrote the web app's data to {}\n", dir.display()))
}

/// A text bundle's data for the page ([`s3t::bundle::web`]): the texts, and instead of the frozen encoder below the
/// lowest adapter group, the test reviews' activations at that boundary and the layers above it alone; the rest of
/// the encoder and its tokenizer in files of their own, which the page reads only when a visitor classifies a
/// sentence or retrains a shard.
fn write_text(bundle: &Bundle, out: &Path, deletable: &Dataset, test: &Dataset, validation: &Dataset) -> Result<()> {
    use s3t::bundle::web::{self, TextExport};
    let m = &bundle.manifest;
    let config = &m.model;
    let source = m.backbone.source.as_ref().ok_or_else(|| anyhow!("a text bundle that does not name its encoder"))?;
    let hf = s3t::model::hf::HfDir::open_recorded(source)?;
    let device = burn::tensor::Device::flex();
    let encoder = hf.backbone(config, &device)?;
    let from = config.frozen_base();
    let weights_file = format!("{}/{}", source.dir, s3t::model::hf::WEIGHTS_FILE);
    let half = config.text.as_ref().is_some_and(|t| t.frozen_half());
    let layers = s3t::model::hf::encoder_layers(&weights_file, &hf.weights, from, half)?;
    let below = s3t::model::hf::encoder_below(&weights_file, &hf.weights, from, half)?;
    let features = s3t::model::features::Features::embedded(config, &encoder, test, &device);
    let rows = features.real_tokens(config, test)?;
    let activations: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let test_bytes = web::split_bytes(test)?;
    let write = |path: &str, bytes: &[u8]| write_weights(out, path, bytes);
    let index = TextExport {
        format: web::TEXT_FORMAT,
        from_layer: from,
        d_model: config.vit.d_model,
        test: test.len(),
        test_tokens: rows.len() / config.vit.d_model.max(1),
        encoder: write(web::ENCODER_FILE, &layers)?,
        activations: write(web::ACTIVATIONS_FILE, &activations)?,
        test_texts: write(&web::split_file("test"), &test_bytes)?,
        validation_texts: write(&web::split_file("validation"), &web::split_bytes(validation)?)?,
        below: write(web::BELOW_FILE, &below)?,
        tokenizer: write(web::TOKENIZER_FILE, &hf.tokenizer)?,
    };
    write(&web::split_file("deletable"), &web::split_bytes(deletable)?)?;
    // The index last: a reader that finds it finds the files it names.
    let json = serde_json::to_string_pretty(&index)?;
    Ok(write_atomic(&out.join(web::TEXT_INDEX_FILE), json.as_bytes())?)
}

/// Writes one split as gzip-compressed IDX files into `dir`.
fn write_split(dir: &Path, name: &str, data: &Dataset) -> Result<()> {
    let (images, labels) = to_idx_gz(data);
    for (kind, bytes) in [("images-idx3", images), ("labels-idx1", labels)] {
        write_atomic(&dir.join(format!("{name}-{kind}-ubyte.gz")), &bytes)?;
    }
    Ok(())
}

/// Writes the page's copy of the deletable split into `out/data` with every deleted sample purged.
pub fn write_deletable(out: &Path, mut deletable: Dataset, deleted: &HashSet<usize>) -> Result<()> {
    samples::purge(&mut deletable, deleted);
    if deletable.text.is_some() {
        let bytes = s3t::bundle::web::split_bytes(&deletable)?;
        return Ok(write_atomic(&out.join(s3t::bundle::web::split_file("deletable")), &bytes)?);
    }
    write_split(&out.join(samples::DATA_DIR), "deletable", &deletable)
}

/// Zeroes the salts of the deleted samples in `out`'s digest file, when it has one.
pub fn purge_digests(out: &Path, deleted: &HashSet<usize>) -> Result<()> {
    let path = out.join(samples::DIGESTS_FILE);
    if !path.exists() {
        return Ok(());
    }
    let mut digests = std::fs::read(&path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    let before = digests.clone();
    samples::purge_salts(&mut digests, deleted);
    if digests != before {
        write_atomic(&path, &digests)?;
    }
    Ok(())
}

/// Reads the page's copy of the deletable split in `dir` (the bundle's, written by `--format web`): gzip IDX images
/// and labels, or a text bundle's texts. Errors name the file relative to the bundle.
pub fn read_deletable(dir: &Path, manifest: &s3t::bundle::Manifest) -> Result<Dataset> {
    let read = |rel: &str| std::fs::read(dir.join(rel)).map_err(|e| anyhow!("{rel}: cannot read: {e}"));
    let classes = manifest.data.classes;
    if let Some(text) = &manifest.model.text {
        let rel = s3t::bundle::web::split_file("deletable");
        return Ok(s3t::bundle::web::parse_split(&rel, read(&rel)?, text.max_tokens, classes)?);
    }
    let (images, labels) = ("data/deletable-images-idx3-ubyte.gz", "data/deletable-labels-idx1-ubyte.gz");
    Ok(s3t::dataset::from_idx(images, read(images)?, labels, read(labels)?, classes)?)
}

/// Checks a text export's index (`data/text.json` in `dir`) against the files it names.
pub fn check_text_index(dir: &Path) -> Result<()> {
    let rel = s3t::bundle::web::TEXT_INDEX_FILE;
    let read = |rel: &str| std::fs::read(dir.join(rel)).map_err(|e| anyhow!("{rel}: cannot read: {e}"));
    let text = String::from_utf8(read(rel)?).map_err(|e| anyhow!("{rel}: {e}"))?;
    let index = s3t::bundle::web::TextExport::from_json(rel, &text)?;
    for file in index.files() {
        s3t::bundle::manifest::verify_bytes(file, &read(&file.path)?)?;
    }
    Ok(())
}

/// Whether `out` holds the page's copy of the deletable split (written by `--format web`).
pub fn has_deletable(out: &Path) -> bool {
    out.join(samples::DATA_DIR).join("deletable-images-idx3-ubyte.gz").exists()
        || out.join(s3t::bundle::web::split_file("deletable")).exists()
}

fn safetensors(args: &Args) -> Result<()> {
    let bundle = Bundle::open(&args.bundle)?;
    let serving = bundle.serving()?;
    let state = &serving.state;
    let device = burn::tensor::Device::flex();
    let model = bundle.load_model(&device, &serving.guard)?;
    let config = model.config().clone();
    let fresh = FreshDir::new(&args.out)?;
    let mut written = 0;
    for shard in 0..state.shards() {
        let Some(served) = state.served(shard) else {
            output::note(&format!("shard {shard} is offline: nothing to export"));
            continue;
        };
        let (groups, head) = model.component(shard, served)?;
        let mut tensors: Vec<(String, HostTensor)> = Vec::new();
        for group in &groups {
            for (adapter, block) in group.blocks.iter().zip(config.blocks_of_group(group.group)) {
                // PEFT's own names on the model it wraps: a Hugging Face BERT's attention projections, or our ViT's.
                let base = if config.text.is_some() {
                    format!("base_model.model.encoder.layer.{block}.attention.self")
                } else {
                    format!("base_model.model.blocks.{block}")
                };
                // burn: x·A·B with A [in, r], B [r, out]; PyTorch/PEFT: B·A·x with A [r, in], B [out, r].
                tensors.push((format!("{base}.query.lora_A.weight"), transposed(&adapter.query_a)));
                tensors.push((format!("{base}.query.lora_B.weight"), transposed(&adapter.query_b)));
                tensors.push((format!("{base}.value.lora_A.weight"), transposed(&adapter.value_a)));
                tensors.push((format!("{base}.value.lora_B.weight"), transposed(&adapter.value_b)));
            }
        }
        tensors.push(("base_model.model.head.linear.weight".into(), transposed(&head.linear.weight)));
        if let Some(bias) = &head.linear.bias {
            tensors.push(("base_model.model.head.linear.bias".into(), vector(bias)));
        }
        let views = tensors
            .iter()
            .map(|(name, t)| Ok((name.clone(), TensorView::new(Dtype::F32, t.shape.clone(), &t.bytes)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| anyhow!("shard {shard}: {e}"))?;
        let mut metadata = HashMap::new();
        metadata.insert("format".to_owned(), "pt".to_owned());
        let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| anyhow!("shard {shard}: {e}"))?;
        let dir = fresh.path.join(format!("shard-{shard}"));
        std::fs::create_dir_all(&dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        s3t::bundle::store::write_atomic(&dir.join("adapter_model.safetensors"), &bytes)?;
        // What the audit of a bundle holding this export checks: the lineage of every node of the component.
        let chain = &model.plan.shards[usize::from(shard)].chains[served.sequence][..usize::from(served.prefix)];
        let lineage: Vec<_> = chain
            .iter()
            .map(|&id| {
                let entry = &model.manifest.nodes[usize::from(shard)][id];
                serde_json::json!({ "node": id, "lineage": entry.lineage, "weights_sha256": entry.weights.sha256 })
            })
            .collect();
        let adapter_config = serde_json::json!({
            "peft_type": "LORA",
            "r": config.lora.rank,
            "lora_alpha": config.lora.alpha,
            "lora_dropout": 0.0,
            "target_modules": ["query", "value"],
            "modules_to_save": ["head"],
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "base_model_name_or_path": model.manifest.backbone.source.as_ref()
                .map_or_else(|| "weights/backbone.safetensors".to_owned(), |s| s.dir.clone()),
            "layers_to_transform": groups.iter().flat_map(|g| config.blocks_of_group(g.group)).collect::<Vec<_>>(),
            "s3t": { "shard": shard, "sequence": served.sequence, "prefix": served.prefix,
                     "slices": model.plan.shards[usize::from(shard)].sequences[served.sequence].prefix(usize::from(served.prefix)),
                     "nodes": lineage },
        });
        s3t::bundle::store::write_atomic(
            &dir.join("adapter_config.json"),
            serde_json::to_string_pretty(&adapter_config)?.as_bytes(),
        )?;
        written += 1;
    }
    fresh.replace()?;
    output::print(&format!("exported {written} served components to {}\n", args.out.display()))
}

/// A new directory beside `out`; [`FreshDir::replace`] swaps it in for `out`. Dropped without `replace` (an error
/// on the way), it is removed and `out` is untouched.
struct FreshDir {
    out: PathBuf,
    path: PathBuf,
    done: bool,
}

impl FreshDir {
    fn new(out: &Path) -> Result<Self> {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export".into());
        std::fs::create_dir_all(parent).map_err(|e| anyhow!("{}: cannot create: {e}", parent.display()))?;
        let path = parent.join(format!(".{name}.new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(|e| anyhow!("{}: cannot create: {e}", path.display()))?;
        Ok(Self { out: out.to_owned(), path, done: false })
    }

    /// Moves the old directory aside, the new one into place, then removes the old one: `out` names a complete
    /// export at every moment but between the two renames.
    fn replace(mut self) -> Result<()> {
        let parent = self.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let old = parent.join(format!(
            ".{}.old-{}",
            self.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            std::process::id()
        ));
        let had_old = self.out.exists();
        if had_old {
            std::fs::rename(&self.out, &old).map_err(|e| anyhow!("{}: cannot move aside: {e}", self.out.display()))?;
        }
        std::fs::rename(&self.path, &self.out).map_err(|e| anyhow!("{}: cannot replace: {e}", self.out.display()))?;
        self.done = true;
        #[cfg(unix)]
        std::fs::File::open(&parent).and_then(|d| d.sync_all()).map_err(|e| anyhow!("{}: {e}", parent.display()))?;
        if had_old {
            std::fs::remove_dir_all(&old).map_err(|e| anyhow!("{}: cannot remove: {e}", old.display()))?;
        }
        Ok(())
    }
}

impl Drop for FreshDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// An export inside the bundle: every node of the exported component must still be clean.
pub fn check_export(
    path: &Path,
    rel: &str,
    m: &s3t::bundle::Manifest,
    guard: &s3t::bundle::guard::Guard,
) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{rel}: cannot read: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("{rel}: not JSON: {e}"))?;
    let s3t = value.get("s3t").ok_or_else(|| anyhow!("{rel}: no s3t lineage record"))?;
    let shard = s3t.get("shard").and_then(serde_json::Value::as_u64).ok_or_else(|| anyhow!("{rel}: no shard"))?;
    let nodes = s3t.get("nodes").and_then(serde_json::Value::as_array).ok_or_else(|| anyhow!("{rel}: no nodes"))?;
    let shard = u16::try_from(shard).map_err(|_| anyhow!("{rel}: shard {shard} is out of range"))?;
    for node in nodes {
        let id =
            node.get("node").and_then(serde_json::Value::as_u64).ok_or_else(|| anyhow!("{rel}: a node has no id"))?;
        let lineage: Vec<s3t::bundle::SliceLineage> = node
            .get("lineage")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| anyhow!("{rel}: node {id}: {e}"))?
            .ok_or_else(|| anyhow!("{rel}: node {id} has no lineage"))?;
        let component = s3t::bundle::guard::Component::Node { shard, id: id as usize };
        guard.check(component, shard, &lineage).map_err(|stale| anyhow!("{rel}: exported {stale}"))?;
        if m.nodes.get(usize::from(shard)).and_then(|n| n.get(id as usize)).is_none() {
            return Err(anyhow!("{rel}: shard {shard} node {id} is not in the manifest"));
        }
    }
    Ok(())
}

/// The folders of exports inside `bundle` (each `adapter_config.json` and its adapters) whose component saw a
/// deleted sample: `delete` removes them with the weights they came from.
pub fn stale_exports(bundle: &Path, m: &s3t::bundle::Manifest, guard: &s3t::bundle::guard::Guard) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n == "adapter_config.json") {
                out.push(path);
            }
        }
    }
    let mut configs = Vec::new();
    walk(bundle, &mut configs);
    configs
        .into_iter()
        .filter(|config| {
            let rel = config.strip_prefix(bundle).unwrap_or(config).display().to_string();
            check_export(config, &rel, m, guard).is_err()
        })
        .filter_map(|config| config.parent().map(Path::to_path_buf))
        .collect()
}
