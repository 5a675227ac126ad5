//! `trainer audit`: proves that no served component saw a deleted sample (exit status 0 only when it holds).
//!
//! `--strict` proves more: no file the bundle keeps was computed from a deleted sample. It walks every file under
//! the bundle directory and vouches for each one by its lineage (from the manifest and the shard parts) or its
//! kind; a weight file no lineage names (a superseded generation left behind, a stray copy) fails, because nothing
//! says what it was trained on.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use s3t::bundle::audit::audit;
use s3t::bundle::guard::Guard;
use s3t::bundle::manifest::{BUILD_FILE, LEDGER_FILE, MANIFEST_FILE, PRETRAIN_FILE};
use s3t::bundle::samples;
use s3t::bundle::store::LOCK_FILE;
use s3t::bundle::{NodeEntry, ShardPart, SisaEntry};

use crate::bundle_dir::Bundle;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Walk every file in the bundle (weights, parts, the page's data, exports inside it) and fail if any was
    /// computed from a deleted sample or cannot be vouched for.
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let bundle = Bundle::open(&args.bundle)?;
    let actions = bundle.actions()?;
    let state = bundle.state(&actions)?;
    let guard = bundle.guard(&state);
    let plan = bundle.manifest.plan().map_err(|e| anyhow!("{e}"))?;
    let mut report = audit(&bundle.manifest, &plan, bundle.router.assignment(), &state, guard.deleted());
    let served_violations = report.violations.len();
    if report.holds() {
        // Tampered weights fail here: every file the bundle may serve must match the sha256 the manifest recorded.
        // (When a served node's lineage already fails, its files are beside the point: the violations say more.)
        bundle.verify_servable(&guard).map_err(|e| anyhow!("audit failed: {e}"))?;
    }
    let files = if args.strict {
        let walk = strict(&bundle, &guard)?;
        report.violations.extend(walk.violations);
        Some(walk.files)
    } else {
        None
    };
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        json["strict"] = serde_json::json!(args.strict);
        json["files_checked"] = serde_json::json!(files);
        output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?))?;
    } else {
        output::print(&format!(
            "checked {} served components ({} nodes) against {} deleted samples{}\n",
            report.served_components,
            report.nodes_checked,
            report.deleted,
            files.map_or(String::new(), |n| format!(", and every file of the bundle ({n})"))
        ))?;
    }
    if !report.holds() {
        for v in &report.violations {
            output::note(&format!("violation: {v}"));
        }
        let kept = report.violations.len() - served_violations;
        bail!(
            "audit failed: {served_violations} served nodes saw deleted samples{}",
            if args.strict {
                format!(", {kept} files kept that were computed from deleted samples or are unvouched")
            } else {
                String::new()
            }
        );
    }
    if !args.json {
        output::print(if args.strict {
            "audit holds: no file of the bundle was computed from a deleted sample, and none is served\n"
        } else {
            "audit holds: no served component saw a deleted sample\n"
        })?;
    }
    Ok(())
}

struct Walk {
    files: usize,
    violations: Vec<String>,
}

/// What vouches for a weight file: the lineage of the component it holds.
enum Owner<'a> {
    Backbone,
    Node(&'a NodeEntry),
    Sisa(&'a SisaEntry),
}

fn strict(bundle: &Bundle, guard: &Guard) -> Result<Walk> {
    let dir = &bundle.dir;
    let mut parts = Vec::new();
    let parts_dir = dir.join("parts");
    if parts_dir.is_dir() {
        for entry in std::fs::read_dir(&parts_dir).with_context(|| format!("{}: cannot list", parts_dir.display()))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue; // a shard build's lock file
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            parts.push(ShardPart::from_json(&path.display().to_string(), &text)?);
        }
    }
    let m = &bundle.manifest;
    let mut owners: HashMap<String, Vec<Owner>> = HashMap::new();
    owners.entry(m.backbone.weights.path.clone()).or_default().push(Owner::Backbone);
    for e in m.nodes.iter().flatten().chain(parts.iter().flat_map(|p| &p.nodes)) {
        owners.entry(e.weights.path.clone()).or_default().push(Owner::Node(e));
    }
    for e in m.sisa.iter().flatten().chain(parts.iter().flat_map(|p| &p.sisa)) {
        owners.entry(e.weights.path.clone()).or_default().push(Owner::Sisa(e));
    }
    let mut walk = Walk { files: 0, violations: Vec::new() };
    let mut files = Vec::new();
    list(dir, dir, &mut files)?;
    let deleted = crate::cli::deleted_indices(guard.deleted());
    let mut data_checked = false;
    for rel in files {
        walk.files += 1;
        let path = dir.join(&rel);
        match rel.as_str() {
            MANIFEST_FILE | PRETRAIN_FILE | BUILD_FILE | LEDGER_FILE | LOCK_FILE => continue,
            samples::DIGESTS_FILE => {
                let expected = &bundle.manifest.data.deletable_digests_sha256;
                let checked = std::fs::read(&path).map_err(|e| format!("{rel}: cannot read: {e}")).and_then(|bytes| {
                    samples::verify_digests(&rel, &bytes, expected, &deleted).map_err(|e| e.to_string())
                });
                if let Err(e) = checked {
                    walk.violations.push(e);
                }
                continue;
            }
            _ => {}
        }
        if rel.starts_with("parts/") && (rel.ends_with(".json") || rel.ends_with(".lock")) {
            continue; // lineage records: ids' digests, checked through the files they name
        }
        if let Some(owner) = owners.get(&rel) {
            for o in owner {
                let stale = match o {
                    Owner::Backbone => Ok(()),
                    Owner::Node(e) => guard.check_node(e),
                    Owner::Sisa(e) => guard.check_sisa(e),
                };
                if let Err(stale) = stale {
                    walk.violations.push(format!("{rel}: {stale}"));
                }
            }
            continue;
        }
        if rel.starts_with("data/deletable-") && rel.ends_with(".gz") {
            if !data_checked {
                data_checked = true;
                if let Err(e) = check_data(bundle, &deleted) {
                    walk.violations.push(e.to_string());
                }
            }
            continue;
        }
        if rel.starts_with("data/test-") || rel.starts_with("data/validation-") {
            continue; // the test and validation splits are never deletable
        }
        // A text export's index and the frozen encoder's files it names: public, checked against each other.
        if rel == s3t::bundle::web::TEXT_INDEX_FILE {
            if let Err(e) = crate::cli::export::check_text_index(dir) {
                walk.violations.push(e.to_string());
            }
            continue;
        }
        if [s3t::bundle::web::ENCODER_FILE, s3t::bundle::web::BELOW_FILE, s3t::bundle::web::TOKENIZER_FILE]
            .contains(&rel.as_str())
        {
            continue; // the public encoder and its tokenizer, vouched for by data/text.json
        }
        if rel.ends_with("adapter_config.json") {
            if let Err(e) = crate::cli::export::check_export(&path, &rel, m, guard) {
                walk.violations.push(e.to_string());
            }
            continue;
        }
        if rel.ends_with("adapter_model.safetensors") {
            let config = Path::new(&rel).with_file_name("adapter_config.json");
            if !dir.join(&config).exists() {
                walk.violations.push(format!("{rel}: an export without its adapter_config.json (no lineage)"));
            }
            continue; // vouched for by its adapter_config.json
        }
        walk.violations.push(format!(
            "{rel}: no lineage names this file (a superseded generation or a stray copy?): nothing vouches that it \
             saw no deleted sample"
        ));
    }
    Ok(walk)
}

/// Every file under `dir`, relative to `root`, with `/` separators.
fn list(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).map_err(|e| anyhow!("{e}"))?;
            out.push(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
        }
    }
    Ok(())
}

/// The page's copy of the deletable split: every deleted sample purged, every other one the trained sample.
fn check_data(bundle: &Bundle, deleted: &HashSet<usize>) -> Result<()> {
    let data = crate::cli::export::read_deletable(&bundle.dir, &bundle.manifest)?;
    let digests = std::fs::read(bundle.dir.join(samples::DIGESTS_FILE))
        .map_err(|e| anyhow!("{}: cannot read ({e}): the data cannot be verified", samples::DIGESTS_FILE))?;
    Ok(samples::verify("data/deletable", &data, &digests, &bundle.manifest.data.deletable_digests_sha256, deleted)?)
}
