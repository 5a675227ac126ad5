//! One module per subcommand: its clap arguments and its `run`.

pub mod assemble;
pub mod build;
pub mod delete;
pub mod eval;
pub mod forget_check;
pub mod plan;
pub mod predict;
pub mod pretrain;
pub mod simulate;
pub mod slurm;

use anyhow::{Context, Result, bail};
use s3t::dataset::Splits;
use s3t::model::device::Selected;

use crate::bundle_dir::Bundle;
use crate::data::Source;
use crate::device::{DeviceArg, choose};

/// Where a bundle is evaluated and how the result is printed (shared by `eval`, `curve` and `quality`).
#[derive(Debug, Clone, clap::Args)]
pub struct EvalOptions {
    /// Data the bundle was built from (its test split is evaluated).
    #[arg(long, default_value = "default")]
    pub data: String,
    /// Where to run: the GPU when one exists (auto), the GPU, or the CPU (`quality` also trains its fine-tune there).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl EvalOptions {
    /// The bundle's data (refused when it is not what the bundle was built from) and the device.
    pub fn prepare(&self, bundle: &Bundle) -> Result<(Splits, Selected)> {
        let splits = checked_data(bundle, &self.data)?;
        Ok((splits, choose(self.device, self.json)?))
    }
}

/// The deleted ids that are indices of the deletable split (ids of this project's data are indices).
pub fn deleted_indices(deleted: &std::collections::HashSet<s3t::SampleId>) -> std::collections::HashSet<usize> {
    deleted
        .iter()
        .filter_map(|id| match id {
            s3t::SampleId::Int(i) => usize::try_from(*i).ok(),
            s3t::SampleId::Str(_) => None,
        })
        .collect()
}

/// Loads `--data` as the bundle was trained on it: [`source_data`] with the bundle's canaries planted (their wrong
/// labels), so that evaluating and retraining see what `build` trained on.
pub fn checked_data(bundle: &Bundle, data: &str) -> Result<Splits> {
    let mut splits = source_data(bundle, data)?;
    let what = bundle.dir.join(s3t::bundle::manifest::MANIFEST_FILE).display().to_string();
    crate::canary::plant(&bundle.manifest.canaries, &mut splits.deletable, &what)?;
    Ok(splits)
}

/// Loads `--data` with its own labels, refusing data other than the data the bundle was built from (evaluating or
/// retraining against other samples would be meaningless). The per-sample commitments are of these labels.
pub fn source_data(bundle: &Bundle, data: &str) -> Result<Splits> {
    let m = &bundle.manifest;
    // A text bundle reads the data it was built from unless told otherwise (`--data` defaults to the images').
    let data = if m.model.text.is_some() && data == "default" { m.data.source.as_str() } else { data };
    let source = Source::parse(data)?;
    let (splits, info) = load_as_recorded(&source, &m.model, &m.data, &m.backbone, true)?;
    if !info.same_data(&bundle.manifest.data) {
        bail!(
            "{} was built from data {:?} but --data is {:?} (different samples)",
            bundle.dir.display(),
            bundle.manifest.data.source,
            info.source
        );
    }
    Ok(splits)
}
pub mod audit;
pub mod bench;
pub mod curve;
pub mod export;
pub mod quality;
pub mod retrain;

/// The splits of `source` as a bundle (or its pretraining record: `model`, `data`, `backbone`) reads them, with
/// what the bundle would record about them: images as they are; texts with the recorded fields, tokenized by the
/// recorded encoder's tokenizer (its files checked against their sha256).
pub fn load_as_recorded(
    source: &Source,
    model: &s3t::model::ModelConfig,
    data: &s3t::bundle::DataInfo,
    backbone: &s3t::bundle::BackboneEntry,
    quiet: bool,
) -> Result<(Splits, s3t::bundle::DataInfo)> {
    let Some(text) = &model.text else {
        if source.is_text() {
            bail!("--data {}: this bundle's backbone reads images, not texts", source.describe());
        }
        let splits = source.load()?;
        let info = source.info(&splits);
        return Ok((splits, info));
    };
    if !source.is_text() {
        bail!("--data {}: this bundle's backbone reads texts (--data text:FILE or mr)", source.describe());
    }
    let recorded = backbone.source.as_ref().context("a text bundle without its backbone's files")?;
    let fields = data.fields.clone().context("a text bundle without its data's fields")?;
    let hf = s3t::model::hf::HfDir::open_recorded(recorded)?;
    let tokenizer = hf.tokenizer(text.max_tokens)?;
    let (splits, labels) = source.load_text(&fields, &tokenizer, quiet)?;
    let info = source.text_info(&splits, &labels, &fields);
    Ok((splits, info))
}
