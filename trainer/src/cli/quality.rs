//! `trainer quality`: the figures the README reports for a bundle, from one command.
//!
//! Backbone-only accuracy; S3T and SISA without deletions; a single LoRA fine-tune of the same backbone on all
//! deletable data (trained here, same settings); and the deletion curve, checking S3T ≥ SISA without retraining at
//! every point until half the shards are offline.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use s3t::model::ensemble::{accuracy, softmax_rows};
use s3t::model::features::{Features, logits_all};
use s3t::model::serve::Evaluator;
use s3t::model::train::train_sisa;
use s3t::model::vit::Component;

use crate::bundle_dir::Bundle;
use crate::cli::EvalOptions;
use crate::cli::curve::{compute, parse_deletions};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory (built with SISA).
    pub bundle: PathBuf,
    /// Deletion counts of the curve: `0,100,200` or `FROM..TO:STEP`.
    #[arg(long, default_value = "0..120:4")]
    pub deletions: String,
    /// Seeds of the deletion streams (comma-separated); the curve check must hold for each.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0u64, 1, 2])]
    pub seeds: Vec<u64>,
    #[command(flatten)]
    pub eval: EvalOptions,
}

pub fn run(args: &Args) -> Result<()> {
    let bundle = Bundle::open(&args.bundle)?;
    if bundle.manifest.sisa.is_empty() {
        bail!("{} was built with --no-sisa: there is no SISA baseline to compare with", args.bundle.display());
    }
    let (splits, device) = args.eval.prepare(&bundle)?;
    // Figures after the ledger's deletions (none for a fresh bundle); the guard refuses a stale served component.
    let serving = bundle.serving()?;
    let model = bundle.load_model(&device.device, &serving.guard)?;
    let mut evaluator = Evaluator::new(&model, &splits.test);
    let s3t = evaluator.evaluate(&model, &serving.state).map_err(|e| anyhow!(e))?.accuracy.unwrap_or(0.0);
    let sisa = evaluator.evaluate_sisa(&model, &serving.sisa_state).map_err(|e| anyhow!(e))?.accuracy.unwrap_or(0.0);

    // The reference: one LoRA fine-tune (every group and the head) of the same backbone on all deletable data that
    // is not deleted.
    let config = model.config();
    let all: Vec<usize> =
        (0..splits.deletable.len()).filter(|&i| !serving.guard.is_deleted(&s3t::SampleId::Int(i as u64))).collect();
    let backbone = &model.pretrained.backbone;
    let embedded = Features::embedded(config, backbone, &splits.deletable, &device.device);
    let validation = Features::embedded(config, backbone, &splits.validation, &device.device);
    let finetune = train_sisa(
        config,
        &bundle.manifest.train,
        backbone,
        None,
        &model.pretrained.head,
        &embedded,
        &splits.deletable,
        &all,
        s3t::plan::sisa_seed(bundle.manifest.seed, u16::MAX, 0),
        Some((&validation, &splits.validation.labels)),
        &device.device,
        &mut |_| {},
    );
    let features = Features::new(config, &model.pretrained.backbone, &splits.test, &device.device);
    let groups: Vec<_> = finetune.adapters.iter().collect();
    let logits =
        logits_all(config, &model.pretrained.backbone, Component { groups: &groups, head: &finetune.head }, &features);
    let classes = config.vit.classes;
    let finetune_accuracy = accuracy(&softmax_rows(&logits, classes), classes, &splits.test.labels);

    let points_at = parse_deletions(&args.deletions)?;
    let mut curves = Vec::new();
    let mut holds = true;
    for &seed in &args.seeds {
        let points = compute(&bundle, &serving, &model, &mut evaluator, &points_at, seed)?;
        // Until half the shards are offline: S3T must do at least as well as SISA without retraining.
        let m = usize::from(bundle.manifest.partition.shards);
        let checked: Vec<_> = points.iter().take_while(|p| p.s3t_live_shards * 2 > m).collect();
        let ok = checked.iter().all(|p| p.s3t_accuracy.unwrap_or(0.0) >= p.sisa_accuracy.unwrap_or(0.0));
        holds &= ok;
        curves
            .push(serde_json::json!({ "seed": seed, "holds": ok, "points_checked": checked.len(), "points": points }));
    }
    let report = serde_json::json!({
        "backbone_accuracy": bundle.manifest.backbone.test_accuracy,
        "s3t_accuracy": s3t,
        "sisa_accuracy": sisa,
        "finetune_accuracy": finetune_accuracy,
        "s3t_minus_finetune_points": (s3t - finetune_accuracy) * 100.0,
        "curve_s3t_at_least_sisa_until_half_offline": holds,
        "curves": curves,
    });
    if args.eval.json {
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    }
    let pct = |a: f64| format!("{:.2}%", a * 100.0);
    let mut text = String::new();
    text.push_str(&format!("backbone only (public data):           {}\n", pct(bundle.manifest.backbone.test_accuracy)));
    text.push_str(&format!("single LoRA fine-tune, all deletable:  {}\n", pct(finetune_accuracy)));
    text.push_str(&format!(
        "S3T, no deletions:                     {} ({:+.2} points vs fine-tune)\n",
        pct(s3t),
        (s3t - finetune_accuracy) * 100.0
    ));
    text.push_str(&format!("SISA, no deletions:                    {}\n", pct(sisa)));
    for curve in &curves {
        text.push_str(&format!(
            "deletion stream seed {}: S3T ≥ SISA at all {} points until half the shards are offline: {}\n",
            curve["seed"],
            curve["points_checked"],
            if curve["holds"].as_bool().unwrap_or(false) { "yes" } else { "NO" }
        ));
    }
    output::print(&text)
}
