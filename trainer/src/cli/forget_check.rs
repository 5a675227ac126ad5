//! `trainer forget-check`: evidence of forgetting that a user can run.
//!
//! For the given samples (or the bundle's canaries) it measures the served model (the S3T ensemble: the mean of
//! softmax over live shards, as `trainer eval` computes it) before their deletion and after it (deleted, and every
//! shard that went offline retrained): the loss and the confidence on their labels, the same for never-trained
//! samples (the canaries' twins, or the test split), and a loss-threshold membership-inference AUC between the two
//! groups, each with a seeded 95 % bootstrap interval.
//!
//! The deletion and the retrains are the real ones: `trainer delete` and `trainer retrain` (this very binary) run on
//! a copy of the bundle in a temporary directory. The bundle itself is only read, under its lock while it is copied.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Device;
use clap::ValueEnum;
use s3t::SampleId;
use s3t::bundle::store::{BundleLock, LOCK_FILE};
use s3t::dataset::Dataset;
use s3t::model::ensemble::mean_probabilities;
use s3t::model::serve::Evaluator;
use serde::Serialize;

use crate::bundle_dir::{Bundle, Serving};
use crate::canary;
use crate::cli::{EvalOptions, checked_data};
use crate::device::choose;
use crate::membership::{Bootstrap, Estimate, LEVEL};
use crate::output;
use crate::table::{Align, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory (only read: the deletion and the retrains happen in a temporary copy).
    pub bundle: PathBuf,
    /// Samples to check (comma-separated ids, indices of the deletable split); never-trained samples: the test split.
    #[arg(long, value_delimiter = ',', value_name = "ID[,ID…]")]
    pub ids: Vec<String>,
    /// A file with one id per line (blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    pub ids_file: Option<PathBuf>,
    /// Check the bundle's canaries (`trainer build --canaries N`) against their never-trained twins.
    #[arg(long)]
    pub canaries: bool,
    /// Bootstrap resamples of every interval.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No notes while the copy is retrained.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub eval: EvalOptions,
}

/// The figures of one group of samples under one model.
#[derive(Debug, Serialize)]
struct Group {
    samples: usize,
    /// Mean cross-entropy of the ensemble's probability of each sample's label.
    mean_loss: Estimate,
    /// Mean ensemble probability of each sample's label.
    mean_confidence: Estimate,
}

/// One state of the bundle: before or after the deletion.
#[derive(Debug, Serialize)]
struct Measured {
    live_shards: usize,
    shards: u16,
    deleted: usize,
    members: Group,
    non_members: Group,
    /// AUC of −loss separating members (1) from non-members (0); 0.5: indistinguishable.
    mia_auc: Estimate,
}

pub fn run(args: &Args) -> Result<()> {
    let quiet = args.quiet || args.eval.json;
    if args.resamples == 0 {
        bail!("--resamples 0: the bootstrap needs at least one resample (1000 or more for a 95 % interval)");
    }
    let bundle = Bundle::open(&args.bundle)?;
    let (ids, members, non_members, non_member_source) = samples(args, &bundle)?;
    let selected = choose(args.eval.device, quiet)?;
    let boot = Bootstrap { resamples: args.resamples, seed: args.seed };

    let work = tempfile::Builder::new()
        .prefix("s3t-forget-check-")
        .tempdir()
        .context("cannot create a temporary directory for the bundle's copy")?;
    let copy = work.path().join("bundle");
    // BEFORE is measured on the copy too: the same bytes, and the bundle is read only once.
    snapshot(&args.bundle, &copy)?;
    let before_copy = Bundle::open(&copy)?;
    let serving = before_copy.serving()?;
    let sample_ids: Vec<SampleId> = ids.iter().map(|&i| SampleId::Int(i as u64)).collect();
    let already = sample_ids.iter().filter(|id| serving.state.is_deleted(id)).count();
    let (before, before_unavailable) = if already > 0 {
        let why = format!(
            "{already} of the {} samples are already deleted in {}: the files of the components that saw them are \
             gone by design",
            ids.len(),
            args.bundle.display()
        );
        (None, Some(why))
    } else {
        match measure(&before_copy, &serving, &selected.device, &members, &non_members, boot)? {
            Some(m) => (Some(m), None),
            None => (None, Some(format!("every shard of {} is offline: nothing is served", args.bundle.display()))),
        }
    };
    drop(before_copy);

    let pending: Vec<&SampleId> = sample_ids.iter().filter(|id| !serving.state.is_deleted(id)).collect();
    let offline = forget(args, work.path(), &copy, &pending, quiet)?;
    let after_copy = Bundle::open(&copy)?;
    let serving = after_copy.serving()?;
    let after = measure(&after_copy, &serving, &selected.device, &members, &non_members, boot)?
        .ok_or_else(|| anyhow!("{}: no shard is live after the retrains", args.bundle.display()))?;

    let report = serde_json::json!({
        "bundle": args.bundle.display().to_string(),
        "members": if args.canaries { "canaries" } else { "ids" },
        "non_members": non_member_source,
        "level": LEVEL,
        "resamples": args.resamples,
        "seed": args.seed,
        "device": selected.name,
        "before": before,
        "before_unavailable": before_unavailable,
        "after": after,
        "retrained_shards": offline,
    });
    if args.eval.json {
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    }
    output::print(&text(args, non_member_source, before.as_ref(), before_unavailable.as_deref(), &after, &offline))
}

/// The checked samples (ids and data, with the labels they were trained with), the never-trained ones and what
/// those are.
fn samples(args: &Args, bundle: &Bundle) -> Result<(Vec<usize>, Dataset, Dataset, &'static str)> {
    let splits = checked_data(bundle, &args.eval.data)?;
    let canaries = &bundle.manifest.canaries;
    if !args.canaries {
        let ids = read_ids(args, bundle)?;
        return Ok((ids.clone(), splits.deletable.select(&ids), splits.test, "test split"));
    }
    if !args.ids.is_empty() || args.ids_file.is_some() {
        bail!("--canaries takes the bundle's canaries as the samples: give it without --ids or --ids-file");
    }
    if canaries.planted.is_empty() {
        bail!("{} has no canaries: build it with `trainer build --canaries N`, or give --ids", args.bundle.display());
    }
    let what = bundle.dir.join(s3t::bundle::manifest::MANIFEST_FILE).display().to_string();
    let twins = canary::twins(canaries, &splits.test, &what)?;
    let ids: Vec<usize> = canaries.planted.iter().map(|c| c.index).collect();
    Ok((ids.clone(), splits.deletable.select(&ids), twins, "canary twins"))
}

/// The real deletion of `pending` in the copy, then the real retrain of every shard that is offline afterwards;
/// returns those shards.
fn forget(args: &Args, work: &Path, copy: &Path, pending: &[&SampleId], quiet: bool) -> Result<Vec<u16>> {
    if !pending.is_empty() {
        let list = work.join("ids.txt");
        let text: Vec<String> = pending.iter().map(ToString::to_string).collect();
        fs::write(&list, text.join("\n")).with_context(|| format!("{}: cannot write", list.display()))?;
        trainer(&[os("delete"), copy.into(), os("--ids-file"), list.into(), os("--json")])?;
    }
    let offline = Bundle::open(copy)?.serving()?.state.offline_shards();
    let device = args.eval.device.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
    for &shard in &offline {
        if !quiet {
            output::note(&format!(
                "forget-check: retraining shard {shard} in the copy (`trainer retrain --shard {shard}`)"
            ));
        }
        let shard = shard.to_string();
        let data = &args.eval.data;
        trainer(&[
            os("retrain"),
            copy.into(),
            os("--shard"),
            os(&shard),
            os("--data"),
            os(data),
            os("--device"),
            os(&device),
            os("--json"),
        ])?;
    }
    Ok(offline)
}

/// The ids of `--ids` and `--ids-file`, as indices of the deletable split.
fn read_ids(args: &Args, bundle: &Bundle) -> Result<Vec<usize>> {
    let mut texts: Vec<(String, String)> = args.ids.iter().map(|t| (format!("--ids {t:?}"), t.clone())).collect();
    if let Some(file) = &args.ids_file {
        let text = fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                texts.push((format!("{}: line {}", file.display(), n + 1), line.to_owned()));
            }
        }
    }
    if texts.is_empty() {
        bail!("nothing to check: give --ids, --ids-file or --canaries");
    }
    let n = bundle.manifest.data.deletable;
    let mut ids = Vec::new();
    for (whence, text) in texts {
        let id = SampleId::parse(&text).with_context(|| whence.clone())?;
        // Ids of this project's data are indices of the deletable split.
        let index = match id {
            SampleId::Int(i) => usize::try_from(i).ok().filter(|&i| i < n),
            SampleId::Str(_) => None,
        };
        let Some(index) = index else {
            bail!(
                "{whence}: sample id {id} is not in the deletable training data of {} (ids are 0..{n})",
                args.bundle.display()
            );
        };
        if !ids.contains(&index) {
            ids.push(index);
        }
    }
    Ok(ids)
}

/// Copies the bundle into `to`, under the bundle's lock when it has one (a bundle without a lock file has never been
/// written by a command that takes it, and creating one would change the user's bundle).
fn snapshot(from: &Path, to: &Path) -> Result<()> {
    let _lock = if from.join(LOCK_FILE).exists() { Some(BundleLock::acquire(from)?) } else { None };
    copy_dir(from, to)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("{}: cannot create", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("{}: cannot read", from.display()))? {
        let entry = entry.with_context(|| format!("{}: cannot read", from.display()))?;
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().with_context(|| format!("{}: cannot read", path.display()))?;
        if kind.is_dir() {
            copy_dir(&path, &target)?;
        } else if kind.is_file() && entry.file_name() != LOCK_FILE {
            fs::copy(&path, &target)
                .with_context(|| format!("{}: cannot copy to {}", path.display(), target.display()))?;
        }
    }
    Ok(())
}

fn os(text: &str) -> OsString {
    text.into()
}

/// Runs this binary (`trainer delete`, `trainer retrain`) and returns its JSON result; its error line on failure.
fn trainer(args: &[OsString]) -> Result<serde_json::Value> {
    // The running image itself where the system names it (Linux): a rebuild may have replaced the file meanwhile.
    let exe = match Path::new("/proc/self/exe") {
        running if running.exists() => running.to_owned(),
        _ => std::env::current_exe().context("cannot locate the trainer binary to run delete and retrain")?,
    };
    let name = args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let out = Command::new(&exe).args(args).output().with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no error message");
        bail!("`trainer {name}` on the copy failed: {}", line.trim_start_matches("error: "));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("`trainer {name}` printed no JSON"))
}

/// The served ensemble's figures on members and non-members; `None` when no shard is live.
fn measure(
    bundle: &Bundle,
    serving: &Serving,
    device: &Device,
    members: &Dataset,
    non_members: &Dataset,
    boot: Bootstrap,
) -> Result<Option<Measured>> {
    let (state, model) = (&serving.state, bundle.load_model(device, &serving.guard)?);
    let score = |data: &Dataset| -> Result<Option<(Vec<f64>, Vec<f64>)>> {
        let mut evaluator = Evaluator::new(&model, data);
        let mut tables = Vec::new();
        for shard in 0..state.shards() {
            if let Some(served) = state.served(shard) {
                tables.push(evaluator.served_probabilities(&model, shard, served)?.to_vec());
            }
        }
        let refs: Vec<&[f32]> = tables.iter().map(Vec::as_slice).collect();
        let Some(probabilities) = mean_probabilities(&refs) else { return Ok(None) };
        let classes = model.config().vit.classes;
        let confidence: Vec<f64> = probabilities
            .chunks(classes)
            .zip(&data.labels)
            .map(|(row, &label)| f64::from(row[usize::from(label)]))
            .collect();
        // A probability that underflowed to zero would make the loss infinite; the smallest normal f32 caps it.
        let loss = confidence.iter().map(|&p| -p.max(f64::from(f32::MIN_POSITIVE)).ln()).collect();
        Ok(Some((loss, confidence)))
    };
    let (Some((m_loss, m_conf)), Some((n_loss, n_conf))) = (score(members)?, score(non_members)?) else {
        return Ok(None);
    };
    let group = |loss: &[f64], conf: &[f64]| -> Result<Group> {
        let none = || anyhow!("no samples to measure");
        Ok(Group {
            samples: loss.len(),
            mean_loss: boot.mean(loss).ok_or_else(none)?,
            mean_confidence: boot.mean(conf).ok_or_else(none)?,
        })
    };
    Ok(Some(Measured {
        live_shards: state.live_shards(),
        shards: state.shards(),
        deleted: state.deleted_count(),
        members: group(&m_loss, &m_conf)?,
        non_members: group(&n_loss, &n_conf)?,
        mia_auc: boot.auc(&m_loss, &n_loss).ok_or_else(|| anyhow!("no samples to compare"))?,
    }))
}

/// One figure of a state, as the text table shows it.
type Figure = fn(&Measured) -> String;

/// `value [low, high]`.
fn estimate(e: &Estimate) -> String {
    format!("{:.3} [{:.3}, {:.3}]", e.value, e.low, e.high)
}

fn text(
    args: &Args,
    non_member_source: &str,
    before: Option<&Measured>,
    unavailable: Option<&str>,
    after: &Measured,
    retrained: &[u16],
) -> String {
    let members = if args.canaries { "canaries" } else { "samples" };
    let retrained = if retrained.is_empty() {
        "none retrained".to_owned()
    } else {
        format!("shards {} retrained", retrained.iter().map(u16::to_string).collect::<Vec<_>>().join(", "))
    };
    let after_head = format!("after deletion ({retrained})");
    let mut table = Table::new(&[("", Align::Left), ("before deletion", Align::Right), (&after_head, Align::Right)]);
    let rows: [(String, Figure); 6] = [
        ("live shards".into(), |m| format!("{} of {}", m.live_shards, m.shards)),
        (format!("{members}: mean loss"), |m| estimate(&m.members.mean_loss)),
        (format!("{non_member_source}: mean loss"), |m| estimate(&m.non_members.mean_loss)),
        (format!("{members}: mean confidence"), |m| estimate(&m.members.mean_confidence)),
        (format!("{non_member_source}: mean confidence"), |m| estimate(&m.non_members.mean_confidence)),
        ("membership-inference AUC".into(), |m| estimate(&m.mia_auc)),
    ];
    for (name, figure) in rows {
        table.row(vec![name, before.map_or("–".to_owned(), figure), figure(after)]);
    }
    let mut text = format!(
        "forget-check {}: {} {members} against {} never-trained samples ({non_member_source}); the served S3T \
         ensemble; {:.0} % bootstrap intervals ({} resamples, seed {})\n\n{table}",
        args.bundle.display(),
        after.members.samples,
        after.non_members.samples,
        LEVEL * 100.0,
        args.resamples,
        args.seed
    );
    if let Some(why) = unavailable {
        text.push_str(&format!("before deletion: unavailable: {why}\n"));
    }
    text.push_str(
        "AUC: the probability that a checked sample has a lower loss than a never-trained one (ties half); 0.5 means \
         the model cannot tell them apart. The deletion and the retrains ran on a temporary copy; the bundle is \
         unchanged.\n",
    );
    text
}
