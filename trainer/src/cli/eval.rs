//! `trainer eval`: test accuracy of the ensemble and of each shard for the current ledger.

use std::path::PathBuf;

use anyhow::Result;
use s3t::model::serve::Evaluator;

use crate::bundle_dir::Bundle;
use crate::cli::EvalOptions;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Evaluate on the first N test samples only (the web app's test subset).
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,
    #[command(flatten)]
    pub eval: EvalOptions,
}

pub fn run(args: &Args) -> Result<()> {
    let bundle = Bundle::open(&args.bundle)?;
    let (mut splits, device) = args.eval.prepare(&bundle)?;
    if let Some(n) = args.test_limit {
        splits.test = splits.test.head(n);
    }
    // The guard refuses, before any weight is read, a served component whose lineage meets the ledger.
    let serving = bundle.serving()?;
    let state = &serving.state;
    let model = bundle.load_model(&device.device, &serving.guard)?;
    let mut evaluator = Evaluator::new(&model, &splits.test);
    let s3t = evaluator.evaluate(&model, state)?;
    let sisa = if model.has_sisa() { Some(evaluator.evaluate_sisa(&model, &serving.sisa_state)?) } else { None };
    if args.eval.json {
        let json = serde_json::json!({
            "accuracy": s3t.accuracy,
            "per_shard": s3t.per_shard,
            "live_shards": s3t.live_shards,
            "deleted": state.deleted_count(),
            "ledger_records": serving.actions.len(),
            "served": (0..state.shards()).map(|s| state.served(s)).collect::<Vec<_>>(),
            "sisa_accuracy": sisa.as_ref().and_then(|e| e.accuracy),
            "sisa_live_shards": sisa.as_ref().map(|e| e.live_shards),
            "backbone_accuracy": model.manifest.backbone.test_accuracy,
            "test_samples": splits.test.len(),
            "device": device.name,
        });
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    let pct = |a: Option<f64>| a.map_or("offline".to_owned(), |a| format!("{:.2}%", a * 100.0));
    let mut text = format!(
        "S3T ensemble accuracy: {} ({} of {} shards live, {} samples deleted, {} test samples)\n",
        pct(s3t.accuracy),
        s3t.live_shards,
        state.shards(),
        state.deleted_count(),
        splits.test.len()
    );
    for (shard, acc) in s3t.per_shard.iter().enumerate() {
        let served = state
            .served(shard as u16)
            .map_or(String::new(), |s| format!(" (sequence {}, {} groups)", s.sequence, s.prefix));
        text.push_str(&format!("  shard {shard}: {}{served}\n", pct(*acc)));
    }
    if let Some(sisa) = sisa {
        text.push_str(&format!("SISA without retraining: {} ({} shards live)\n", pct(sisa.accuracy), sisa.live_shards));
    }
    text.push_str(&format!("backbone only: {:.2}%\n", model.manifest.backbone.test_accuracy * 100.0));
    output::print(&text)
}
