//! `trainer retrain`: rebuilds the nodes of one shard that saw deleted samples, then records the retrain.
//!
//! The bundle's lock is taken before the manifest is read, so two retrains (or a retrain and a delete) never act on
//! each other's stale view. A node is reused exactly when the guard allows it (its lineage is its slices without
//! the deleted samples); the superseded weight files are removed once the new manifest and the ledger record are
//! durable.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use s3t::bundle::Backend;
use s3t::bundle::store::{remove_durably, safe_join, write_manifest};
use s3t::ledger::Ledger;
use s3t::model::build::{BuildContext, BundleDir, ShardJob, build_shard};
use s3t::model::features::Features;
use s3t::{Action, SampleId};

use crate::bundle_dir::{Bundle, load_pretrained};
use crate::device::{BatchingOptions, RunOptions, choose};
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
    /// Retrain on another backend than the bundle was built on (the new nodes will not be the bit-for-bit
    /// reproduction of a build without the deleted samples on the original backend).
    #[arg(long)]
    pub allow_backend_change: bool,
    #[command(flatten)]
    pub batching: BatchingOptions,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(args: &Args) -> Result<()> {
    let quiet = args.run.quiet();
    // The shard's lock before the bundle's (the order every command takes them): no build of it may be writing.
    let _shard_lock = s3t::bundle::store::ShardLock::acquire(&args.bundle, args.shard)?;
    let (_lock, bundle) = Bundle::open_locked(&args.bundle)?;
    let m = bundle.manifest.partition.shards;
    if args.shard >= m {
        bail!("--shard {}: the bundle has {m} shards (0..{})", args.shard, m - 1);
    }
    let splits = crate::cli::checked_data(&bundle, &args.data)?;
    let selected = choose(args.run.device, quiet)?;
    let backend = Backend::new(selected.is_gpu, &selected.name);
    if backend.kind != bundle.manifest.backend.kind {
        if !args.allow_backend_change {
            bail!(
                "{} was built on {} ({}) but this retrain would run on {} ({}): its arithmetic differs, so the \
                 retrained nodes would not be the bit-for-bit model of a build without the deleted samples; use \
                 --device to pick the same backend, or --allow-backend-change to accept that",
                args.bundle.display(),
                bundle.manifest.backend.kind,
                bundle.manifest.backend.device,
                backend.kind,
                backend.device
            );
        }
        output::note(&format!(
            "notice: retraining on {} a bundle built on {} (--allow-backend-change)",
            backend.kind, bundle.manifest.backend.kind
        ));
    }
    let (mut ledger, _) = Ledger::open_or_create(bundle.ledger_path())?;
    let state = bundle.state(ledger.records())?;
    let guard = bundle.guard(&state);
    let is_deleted = |id: &SampleId| guard.is_deleted(id);
    let manifest = &bundle.manifest;
    let shard = args.shard;
    let assignment = bundle.router.assignment();
    // A node is reused exactly when the data it saw is still the data without the deleted samples.
    let entries = &manifest.nodes[usize::from(shard)];
    let reuse = guard.reusable(entries);
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
        bundle: &BundleDir(&args.bundle),
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
        batching: args.batching.resolve(&selected)?,
        rows: None,
    };
    let mut progress = Progress::new(entries.len() as u64, "retrain", quiet);
    // SISA is the baseline without retraining: its checkpoints are kept as they are (the stale ones are not
    // served, and their files are gone).
    let sisa_keep: Vec<_> =
        manifest.sisa.get(usize::from(shard)).map(|s| s.iter().cloned().map(Some).collect()).unwrap_or_default();
    let job = ShardJob { shard, reuse, reuse_sisa: sisa_keep, generation, only: None };
    let part = build_shard(&ctx, job, false, &is_deleted, &mut |e| progress.event(e))?;
    progress.finish();
    let mut updated = manifest.clone();
    updated.nodes[usize::from(shard)] = part.nodes;
    updated.backend = backend;
    // New weights first, then the manifest that names them, then the ledger record: a crash in between leaves a
    // bundle that still serves exactly (the old routing state is more conservative) and a retrain that can rerun.
    write_manifest(&args.bundle, &updated)?;
    let action = Action::Retrained { shard };
    let (next, _) = bundle.router.apply(&state, &action)?;
    ledger.append(&action)?;
    // The superseded generation: named by the old manifest, not by the new one.
    let kept: HashSet<&str> = updated.weight_files().map(|w| w.path.as_str()).collect();
    let mut removed = 0;
    for file in entries.iter().map(|e| &e.weights).filter(|w| !kept.contains(w.path.as_str())) {
        let path = safe_join(&args.bundle, &file.path)?;
        removed += usize::from(remove_durably(&path)?);
    }
    let seconds = started.elapsed().as_secs_f64();
    if args.run.json {
        let json = serde_json::json!({
            "shard": shard, "nodes_retrained": stale, "nodes_reused": entries.len() - stale,
            "generation": generation, "seconds": seconds, "served": next.served(shard),
            "superseded_files_removed": removed,
        });
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    output::print(&format!(
        "shard {shard}: retrained {stale} nodes, reused {} (generation {generation}) in {seconds:.1} s; it serves full \
         sequences again; {removed} superseded weight files removed\n",
        entries.len() - stale
    ))
}

fn pretrained_sha(dir: &std::path::Path) -> Result<String> {
    let path = dir.join(s3t::bundle::manifest::PRETRAIN_FILE);
    Ok(crate::bundle_dir::read_pretrain_record(&path)?.backbone.weights.sha256)
}
