//! `trainer retrain`: rebuilds the nodes of one shard that saw deleted samples, then records the retrain.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use s3t::bundle::manifest::lineage;
use s3t::bundle::store::write_manifest;
use s3t::ledger::Ledger;
use s3t::model::build::{BuildContext, build_shard};
use s3t::model::features::Features;
use s3t::{Action, SampleId};

use crate::bundle_dir::{Bundle, load_pretrained};
use crate::device::{RunOptions, choose};
use crate::output;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The shard to retrain.
    #[arg(long)]
    pub shard: u16,
    /// Data the bundle was built from.
    #[arg(long, default_value = "default")]
    pub data: String,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(args: &Args) -> Result<()> {
    let quiet = args.run.quiet();
    let bundle = Bundle::open(&args.bundle)?;
    let m = bundle.manifest.partition.shards;
    if args.shard >= m {
        bail!("--shard {}: the bundle has {m} shards (0..{})", args.shard, m - 1);
    }
    let splits = crate::cli::checked_data(&bundle, &args.data)?;
    let selected = choose(args.run.device, quiet)?;
    let (mut ledger, _) = Ledger::open_or_create(bundle.ledger_path())?;
    let state = bundle.state(ledger.records())?;
    let deleted: HashSet<SampleId> = state.deleted().cloned().collect();
    let is_deleted = |id: &SampleId| deleted.contains(id);
    let manifest = &bundle.manifest;
    let shard = args.shard;
    let assignment = bundle.router.assignment();
    // A node is reused exactly when the data it saw is still the data without the deleted samples.
    let entries = &manifest.nodes[usize::from(shard)];
    let reuse: Vec<_> = entries
        .iter()
        .map(|e| (lineage(assignment, shard, &e.prefix, &is_deleted) == e.lineage).then(|| e.clone()))
        .collect();
    let stale = reuse.iter().filter(|r| r.is_none()).count();
    let generation = entries.iter().map(|e| e.generation).max().unwrap_or(0) + 1;
    let started = Instant::now();
    let (_, pretrained) = load_pretrained(&args.bundle, &selected.device)?;
    if pretrained_sha(&args.bundle)? != manifest.backbone.weights.sha256 {
        bail!("{}: pretrain.json names another backbone than the manifest", args.bundle.display());
    }
    let config = manifest.model.clone();
    let plan = manifest.plan().map_err(|e| anyhow!("{e}"))?;
    let features = Features::new(&config, &pretrained.backbone, &splits.deletable, &selected.device);
    let validation = Features::new(&config, &pretrained.backbone, &splits.validation, &selected.device);
    let ctx = BuildContext {
        bundle: &args.bundle,
        config: &config,
        train: &manifest.train,
        seed: manifest.seed,
        data: &splits,
        pretrained: &pretrained,
        assignment,
        plan: &plan,
        device: &selected.device,
        features: &features,
        validation: &validation,
    };
    let mut progress = Progress::new(entries.len() as u64, "retrain", quiet);
    let sisa_reuse: Vec<_> =
        manifest.sisa.get(usize::from(shard)).map(|s| s.iter().cloned().map(Some).collect()).unwrap_or_default();
    let part =
        build_shard(&ctx, shard, &reuse, &sisa_reuse, !manifest.sisa.is_empty(), generation, &is_deleted, &mut |e| {
            progress.event(e)
        })
        .map_err(|e| anyhow!(e))?;
    progress.finish();
    let mut updated = manifest.clone();
    updated.nodes[usize::from(shard)] = part.nodes;
    // New weights first, then the manifest that names them, then the ledger record: a crash in between leaves a
    // bundle that still serves exactly (the old routing state is more conservative) and a retrain that can rerun.
    write_manifest(&args.bundle, &updated).map_err(|e| anyhow!(e))?;
    let action = Action::Retrained { shard };
    let (next, _) = bundle.router.apply(&state, &action)?;
    ledger.append(&action)?;
    let seconds = started.elapsed().as_secs_f64();
    if args.run.json {
        let json = serde_json::json!({
            "shard": shard, "nodes_retrained": stale, "nodes_reused": entries.len() - stale,
            "generation": generation, "seconds": seconds, "served": next.served(shard),
        });
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    output::print(&format!(
        "shard {shard}: retrained {stale} nodes, reused {} (generation {generation}) in {seconds:.1} s; it serves full sequences again\n",
        entries.len() - stale
    ))
}

fn pretrained_sha(dir: &std::path::Path) -> Result<String> {
    let path = dir.join(s3t::bundle::manifest::PRETRAIN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    let record: s3t::bundle::PretrainRecord =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(record.backbone.weights.sha256)
}
