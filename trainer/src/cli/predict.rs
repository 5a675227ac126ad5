//! `trainer predict`: a text bundle's answer on sentences of the user's: each live shard's served component's
//! logits and vote, and the ensemble's probabilities and label, after the deletions in the ledger.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use s3t::model::ensemble::predictions;
use s3t::model::hf::HfDir;
use s3t::model::predict::predict;

use crate::bundle_dir::Bundle;
use crate::device::{DeviceArg, choose};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory (a text bundle).
    pub bundle: PathBuf,
    /// A sentence to classify (repeatable).
    #[arg(long = "text", value_name = "TEXT")]
    pub texts: Vec<String>,
    /// A file with one sentence per line.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let bundle = Bundle::open(&args.bundle)?;
    let m = &bundle.manifest;
    let Some(text) = &m.model.text else {
        bail!("{}: an image bundle; `predict` classifies sentences with a text bundle", args.bundle.display());
    };
    let mut texts = args.texts.clone();
    if let Some(file) = &args.file {
        let content = std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
        texts.extend(content.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned));
    }
    if texts.is_empty() {
        bail!("nothing to classify: give --text TEXT or --file FILE");
    }
    let source = m.backbone.source.as_ref().context("a text bundle that does not name its encoder's files")?;
    let tokenizer = HfDir::open_recorded(source).and_then(|hf| hf.tokenizer(text.max_tokens))?;
    let classes = m.model.vit.classes;
    let data = tokenizer.dataset(texts.clone(), vec![0; texts.len()], classes as u8)?;
    let serving = bundle.serving()?;
    let device = choose(args.device, args.json)?;
    let model = bundle.load_model(&device.device, &serving.guard)?;
    let encoder = &model.pretrained.backbone;
    let pause = async || {};
    let prediction = pollster::block_on(predict(&model, encoder, &serving.state, &data, &device.device, &pause))?;
    let Some(ensemble) = prediction.probabilities else {
        bail!("{}: every shard is offline (retrain one with `trainer retrain`)", args.bundle.display());
    };
    let label = |class: usize| m.data.labels.get(class).cloned().unwrap_or_else(|| class.to_string());
    let answers = predictions(&ensemble, classes);
    let rows: Vec<serde_json::Value> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let votes: Vec<serde_json::Value> = prediction
                .votes
                .iter()
                .map(|vote| {
                    let row = &vote.logits[i * classes..(i + 1) * classes];
                    serde_json::json!({
                        "shard": vote.shard,
                        "sequence": vote.served.sequence,
                        "prefix": vote.served.prefix,
                        "logits": row,
                        "label": label(predictions(row, classes)[0]),
                    })
                })
                .collect();
            serde_json::json!({
                "text": text,
                "label": label(answers[i]),
                "probabilities": &ensemble[i * classes..(i + 1) * classes],
                "shards": votes,
            })
        })
        .collect();
    if args.json {
        return output::print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "labels": m.data.labels,
                "live_shards": prediction.votes.len(),
                "predictions": rows,
            }))?
        ));
    }
    let mut out = String::new();
    for row in &rows {
        let votes: Vec<String> = row["shards"]
            .as_array()
            .map(|v| v.iter().map(|s| format!("{}:{}", s["shard"], s["label"].as_str().unwrap_or("?"))).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{}  {}  (shards {})\n",
            row["label"].as_str().unwrap_or("?"),
            row["text"].as_str().unwrap_or(""),
            votes.join(" ")
        ));
    }
    output::print(&out)
}
