//! `trainer delete`: forget samples. Each deletion is on disk in the bundle's ledger before it is reported; then
//! every file the bundle keeps that was computed from a deleted sample is removed (the weights of every node and
//! SISA checkpoint whose lineage now meets the ledger) and the page's copy of the deletable split is purged.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use s3t::bundle::guard::Guard;
use s3t::bundle::manifest::{BUILD_FILE, LEDGER_FILE, MANIFEST_FILE, PRETRAIN_FILE};
use s3t::bundle::store::{BundleLock, remove_durably, safe_join};
use s3t::ledger::Ledger;
use s3t::{Action, Event, SampleId};

use crate::bundle_dir::Bundle;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Sample ids to delete (comma-separated; an id is the sample's index in the deletable split).
    #[arg(long, value_delimiter = ',', value_name = "ID[,ID…]")]
    pub ids: Vec<String>,
    /// A file with one id per line (blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    pub ids_file: Option<PathBuf>,
    /// Print the events and the new serving state as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let mut ids = Vec::new();
    for text in &args.ids {
        ids.push(SampleId::parse(text).with_context(|| format!("--ids {text:?}"))?);
    }
    if let Some(file) = &args.ids_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            ids.push(SampleId::parse(line).with_context(|| format!("{}: line {}", file.display(), n + 1))?);
        }
    }
    if ids.is_empty() {
        bail!("nothing to delete: give --ids or --ids-file");
    }
    // The bundle's lock first: a concurrent retrain must not write back a manifest that names files removed here.
    let _lock = BundleLock::acquire(&args.bundle)?;
    if !args.bundle.join(MANIFEST_FILE).exists() && args.bundle.join(BUILD_FILE).exists() {
        return delete_during_build(args, &ids);
    }
    let bundle = Bundle::open(&args.bundle)?;
    // Validate every id before the first append, so a typo cannot leave half a batch recorded.
    if let Some(unknown) = ids.iter().find(|id| bundle.router.assignment().cell(id).is_none()) {
        bail!(
            "sample id {unknown} is not in the deletable training data of {} (ids are 0..{}); nothing was deleted",
            args.bundle.display(),
            bundle.manifest.data.deletable
        );
    }
    let (mut ledger, recovery) = Ledger::open_or_create(bundle.ledger_path())?;
    if recovery.repaired() {
        output::note(&format!("notice: {}: {recovery}", bundle.ledger_path().display()));
    }
    let mut state = bundle.state(ledger.records())?;
    let mut events = Vec::new();
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id.clone()) {
            continue;
        }
        let action = Action::Delete(id);
        let (next, happened) = bundle.router.apply(&state, &action)?;
        if !matches!(happened.as_slice(), [Event::AlreadyDeleted { .. }]) {
            // Acknowledged only once the record is on disk (rule E7).
            ledger.append(&action)?;
        }
        state = next;
        events.extend(happened);
    }
    // The records are durable: nothing routes to a component whose lineage meets them again (prefixes never grow
    // between retrains, and a retrain trains new files), so their weights go now.
    let removed = forget_files(&bundle, &state)?;
    let served: Vec<_> = (0..state.shards()).map(|s| state.served(s)).collect();
    if args.json {
        let json = serde_json::json!({
            "events": events,
            "served": served,
            "live_shards": state.live_shards(),
            "offline_shards": state.offline_shards(),
            "deleted": state.deleted_count(),
            "removed_files": removed,
        });
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    let mut text = String::new();
    for event in &events {
        text.push_str(&describe(event));
        text.push('\n');
    }
    text.push_str("serving:\n");
    for (shard, s) in served.iter().enumerate() {
        match s {
            Some(s) => text.push_str(&format!(
                "  shard {shard}: sequence {} with {} of {} groups\n",
                s.sequence, s.prefix, bundle.manifest.partition.slices
            )),
            None => text
                .push_str(&format!("  shard {shard}: offline, needs retraining (`trainer retrain --shard {shard}`)\n")),
        }
    }
    text.push_str(&format!(
        "{} samples deleted in total; {} of {} shards live; {} files computed from deleted samples removed\n",
        state.deleted_count(),
        state.live_shards(),
        state.shards(),
        removed.len()
    ));
    output::print(&text)
}

/// Deletion from a bundle whose shards are still being built (a cluster build: `build.json`, no manifest yet). The
/// deletions are recorded in the ledger like any other, the files already trained on them are removed, and each
/// shard build trains the affected nodes again before it records its shard as complete; `assemble` then refuses
/// to serve anything whose lineage meets the ledger.
fn delete_during_build(args: &Args, ids: &[SampleId]) -> Result<()> {
    let dir = &args.bundle;
    let record = crate::bundle_dir::read_pretrain_record(&dir.join(PRETRAIN_FILE))?;
    let spec = crate::cli::build::read_spec(dir)?;
    let assignment = spec.partition.assign((0..record.data.deletable as u64).map(SampleId::Int))?;
    if let Some(unknown) = ids.iter().find(|id| assignment.cell(id).is_none()) {
        bail!(
            "sample id {unknown} is not in the deletable training data of {} (ids are 0..{}); nothing was deleted",
            dir.display(),
            record.data.deletable
        );
    }
    let (mut ledger, recovery) = Ledger::open_or_create(dir.join(LEDGER_FILE))?;
    if recovery.repaired() {
        output::note(&format!("notice: {}: {recovery}", dir.join(LEDGER_FILE).display()));
    }
    let mut deleted: HashSet<SampleId> = crate::cli::build::deleted_ids(ledger.records()).collect();
    let mut new = Vec::new();
    for id in ids {
        if deleted.insert(id.clone()) {
            // Acknowledged only once the record is on disk (rule E7).
            ledger.append(&Action::Delete(id.clone()))?;
            new.push(id.clone());
        }
    }
    let guard = Guard::new(&assignment, deleted.iter().cloned());
    let mut removed = Vec::new();
    for shard in 0..spec.partition.shards {
        let path = dir.join(s3t::model::build::part_path(shard));
        if !path.exists() {
            continue;
        }
        // The deletions are durable already; a damaged record is its build's to refuse, and it names no file
        // this command could trust.
        match crate::cli::build::read_part(&path) {
            Ok(part) => removed.extend(crate::cli::build::forget_part(dir, &part, &guard)?),
            Err(e) => output::note(&format!("notice: {e:#}: its files are left to its build and to assemble")),
        }
    }
    if args.json {
        let json = serde_json::json!({
            "building": true,
            "newly_deleted": new.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "deleted": deleted.len(),
            "removed_files": removed,
        });
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    output::print(&format!(
        "{} samples deleted ({} new) from {}, which is still being built: {} files computed from them removed; the \
         shard builds train the nodes that saw them again before they finish\n",
        deleted.len(),
        new.len(),
        dir.display(),
        removed.len()
    ))
}

/// Removes the weight files of every component whose lineage meets the deletions of `state`, and purges the
/// page's copy of the deletable split. Returns the removed files (relative to the bundle).
pub(crate) fn forget_files(bundle: &Bundle, state: &s3t::State) -> Result<Vec<String>> {
    let guard = bundle.guard(state);
    let mut removed = Vec::new();
    let nodes = bundle.manifest.nodes.iter().flatten().filter(|e| guard.check_node(e).is_err()).map(|e| &e.weights);
    let sisa = bundle.manifest.sisa.iter().flatten().filter(|e| guard.check_sisa(e).is_err()).map(|e| &e.weights);
    for file in nodes.chain(sisa) {
        let path = safe_join(&bundle.dir, &file.path)?;
        if remove_durably(&path)? {
            removed.push(file.path.clone());
        }
    }
    // Exports kept inside the bundle (`export --out BUNDLE/…`) of components that saw a deleted sample.
    for dir in crate::cli::export::stale_exports(&bundle.dir, &bundle.manifest, &guard) {
        std::fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
        removed.push(dir.strip_prefix(&bundle.dir).unwrap_or(&dir).display().to_string());
    }
    purge_data(bundle, &guard)?;
    Ok(removed)
}

/// Rewrites the page's copy of the deletable split (when the bundle holds one) without the deleted samples.
fn purge_data(bundle: &Bundle, guard: &s3t::bundle::guard::Guard) -> Result<()> {
    let deleted = crate::cli::deleted_indices(guard.deleted());
    // The salts first: without its salt, a deleted sample's commitment no longer opens.
    crate::cli::export::purge_digests(&bundle.dir, &deleted)?;
    if !crate::cli::export::has_deletable(&bundle.dir) {
        return Ok(());
    }
    // The copy is purged from itself, so no `--data` source is needed; samples deleted before stay purged.
    let data = crate::cli::export::read_deletable(&bundle.dir, &bundle.manifest)
        .map_err(|e| anyhow!("{}: {e}", bundle.dir.display()))?;
    crate::cli::export::write_deletable(&bundle.dir, data, &deleted)
}

fn describe(event: &Event) -> String {
    match event {
        Event::Deleted { id, cell } => format!("deleted {id} (shard {}, slice {})", cell.shard, cell.slice),
        Event::AlreadyDeleted { id } => format!("{id} was already deleted: nothing changed"),
        Event::Deactivated { shard, sequence, from, to } => {
            format!("  shard {shard} sequence {sequence}: groups {}..={to} deactivated, {from} remain", from + 1)
        }
        Event::ServedChanged { shard, before, after } => format!(
            "  shard {shard} now serves {} (was {})",
            after.map_or("nothing".into(), |s| format!("sequence {} prefix {}", s.sequence, s.prefix)),
            before.map_or("nothing".into(), |s| format!("sequence {} prefix {}", s.sequence, s.prefix))
        ),
        Event::ShardOffline { shard } => format!("  shard {shard} is offline: it needs retraining"),
        Event::AllOffline => "  every shard is offline: nothing can be served until one is retrained".into(),
        Event::Retrained { shard } => format!("  shard {shard} retrained"),
    }
}
