//! `trainer build`: trains every node of the S3T plan (and the SISA baseline) into a bundle.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use s3t::Action;
use s3t::bundle::guard::Guard;
use s3t::bundle::manifest::{BUILD_FILE, FORMAT, LEDGER_FILE, MANIFEST_FILE, PRETRAIN_FILE, VERSION};
use s3t::bundle::store::{
    BundleLock, ShardLock, read_weights, remove_durably, safe_join, write_atomic, write_manifest,
};
use s3t::bundle::{Backend, BuildSpec, Manifest, NodeEntry, ShardPart, SisaEntry};
use s3t::ledger::Ledger;
use s3t::model::build::{BuildContext, BundleDir, ShardJob, build_shards, part_path};
use s3t::model::features::Features;
use s3t::model::{LoraConfig, TrainConfig};
use s3t::partition::{Partition, PartitionMode, SampleId};
use s3t::{Plan, Prior};

use crate::args::StrategyArg;
use crate::bundle_dir::{Bundle, load_pretrained};
use crate::cli::pretrain::{PretrainOptions, run_pretrain};
use crate::data::Source;
use crate::device::{BatchingOptions, RunOptions, choose};
use crate::output;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data: `default` (embedded Fashion-MNIST subset), `idx:DIR` or `csv:FILE` (images); `text:FILE` (`.csv`,
    /// `.tsv`, `.jsonl`) or `mr` (Rotten Tomatoes reviews) with a text backbone (`--backbone hf:DIR`).
    #[arg(long, default_value = "default")]
    pub data: String,
    /// Bundle directory (holds the backbone from `trainer pretrain`; pretrains first when it has none).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Shards m [default: 4 on the ViT; 2 on a text encoder, see `TEXT_DEFAULTS`].
    #[arg(long)]
    pub shards: Option<u16>,
    /// Slices L per shard (= layer groups) [default: 4 on the ViT; 2 on a text encoder].
    #[arg(long)]
    pub slices: Option<u16>,
    /// Sequences B per shard (default L).
    #[arg(long)]
    pub budget: Option<usize>,
    /// How sequences are chosen.
    #[arg(long, value_enum, default_value_t = StrategyArg::Cyclic)]
    pub strategy: StrategyArg,
    /// Deletion prior for `--strategy bms`: JSON array of L probabilities summing to 1.
    #[arg(long, value_name = "FILE")]
    pub prior: Option<PathBuf>,
    /// Seed of the node seeds (derived from shard and prefix) and of the random strategy.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Passes over a whole shard's worth of data per training run: a run on k of L slices makes ⌈epochs·L/k⌉
    /// passes over its k slices, so every node step and SISA checkpoint takes about the same number of steps
    /// [default: 3 on the ViT; 1 on a text encoder].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per optimiser step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate of adapters and head [default: 1e-3 on the ViT; 3e-3 on a text encoder].
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// LoRA rank r of every adapter [default: 4 on the ViT; 8 on a text encoder, as the paper's RoBERTa runs].
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// Layers per group, counted from the top: only the top slices × N layers carry adapters, and the layers below
    /// stay frozen (computed once per sample and cached) [default: a text encoder as many as fit evenly, depth ÷
    /// slices (3 for MiniLM-L6 at 2 slices: every layer); the ViT: every block, split into the groups as evenly as
    /// possible].
    #[arg(long, value_name = "N")]
    pub layers_per_group: Option<usize>,
    /// LoRA scale numerator: updates are multiplied by alpha / r.
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// How sample ids are dealt to shards and slices: `hash` (default) makes a sample's cell a pure function of its
    /// id, so the unlearned model is the model this build makes from the data without the deleted samples;
    /// `balanced` deals ids round-robin so sizes differ by at most one, but every cell then depends on the whole id
    /// set (a build without a deleted sample would deal the others differently).
    #[arg(long, value_enum, default_value_t = PartitionArg::Hash)]
    pub partition: PartitionArg,
    /// Plant N mislabeled canaries in the deletable split (chosen and mislabeled from --seed, recorded in the
    /// manifest with N never-trained twins from the test split), so `trainer forget-check --canaries` can measure
    /// memorisation and its removal. Off (0) by default: canaries cost a little accuracy.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub canaries: usize,
    /// Skip the SISA baseline (one sequence per shard, all adapters trainable, checkpoint per slice).
    #[arg(long)]
    pub no_sisa: bool,
    /// Continue an interrupted build: finished nodes are verified and reused, not retrained.
    #[arg(long)]
    pub resume: bool,
    /// Build only these shards (comma-separated), writing a partial artifact for `trainer assemble`.
    #[arg(long, value_name = "I[,J…]", value_delimiter = ',')]
    pub shard: Vec<u16>,
    /// Pretrain when the bundle has no backbone yet and record the build's settings, then stop: the first job of a
    /// cluster build, so that its shard tasks share one backbone and one specification (`trainer slurm`).
    #[arg(long, conflicts_with_all = ["shard", "resume"])]
    pub prepare: bool,
    #[command(flatten)]
    pub batching: BatchingOptions,
    #[command(flatten)]
    pub pretrain: PretrainOptions,
    #[command(flatten)]
    pub run: RunOptions,
}

/// `--partition`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionArg {
    Hash,
    Balanced,
}

/// The shape of a build when its flags leave it open: shards, slices, passes and learning rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub shards: u16,
    pub slices: u16,
    pub epochs: usize,
    pub learning_rate: f64,
}

/// The ViT's defaults (the default bundle): 4 shards of 4 slices, 3 passes per training run, learning rate 1e-3.
pub const IMAGE_DEFAULTS: Shape = Shape { shards: 4, slices: 4, epochs: 3, learning_rate: 1e-3 };

/// A text encoder's default layers per group: as many whole layers as fit in `slices` equal groups, so every layer
/// carries an adapter when the slices divide the depth. Measured on MiniLM-L6 and MR (`docs/text.md`): adapters on
/// all six layers (3 per group) raised the nodes' mean validation accuracy from 76.5 % (one layer per group) to
/// 78.5 %, for a build of 11 minutes instead of 4.5 on 2 cores, more than three passes or twice the tokens bought.
pub fn text_layers_per_group(depth: usize, slices: u16) -> usize {
    (depth / usize::from(slices).max(1)).max(1)
}

/// A text encoder's defaults, chosen by measured accuracy per minute on 2 CPU cores (`docs/text.md`): every node of
/// a real encoder back-propagates through whole transformer layers, so 2 shards of 2 slices and one pass keep the
/// default MiniLM build on MR near 11 minutes with every layer adapted; 4 × 4 with 3 passes would take hours. One
/// pass makes few optimiser steps (a one-slice node about 70), and at 1e-3 the components trained on the least data
/// trailed most: 3e-3 measured better for S3T, SISA and the fine-tune alike.
pub const TEXT_DEFAULTS: Shape = Shape { shards: 2, slices: 2, epochs: 1, learning_rate: 3e-3 };

impl Args {
    /// Shards, slices, passes and learning rate: the flags', or the defaults of the data's kind (texts need a text encoder).
    pub fn shape(&self, text: bool) -> Shape {
        let d = if text { TEXT_DEFAULTS } else { IMAGE_DEFAULTS };
        Shape {
            shards: self.shards.unwrap_or(d.shards),
            slices: self.slices.unwrap_or(d.slices),
            epochs: self.epochs.unwrap_or(d.epochs),
            learning_rate: self.learning_rate.unwrap_or(d.learning_rate),
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    let quiet = args.run.quiet();
    let source = Source::parse(&args.data)?;
    let Shape { shards: m, slices, epochs, learning_rate } = args.shape(source.is_text());
    if m == 0 || slices == 0 {
        bail!("--shards and --slices must be at least 1");
    }
    if epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if !(learning_rate.is_finite() && learning_rate > 0.0) {
        bail!("--learning-rate {learning_rate}: a positive number");
    }
    if !args.out.join(PRETRAIN_FILE).exists() {
        // A backbone that cannot read the data is refused before anything is written.
        let text_backbone = args.pretrain.backbone.starts_with("hf:") || args.pretrain.backbone == "minilm";
        if source.is_text() && !text_backbone {
            bail!("--data {}: texts need a text backbone (--backbone hf:DIR or minilm)", source.describe());
        }
        if !source.is_text() && text_backbone {
            bail!("--backbone {}: a text encoder needs text data (--data text:FILE or mr)", args.pretrain.backbone);
        }
    }
    let budget = args.budget.unwrap_or(usize::from(slices));
    let prior = match &args.prior {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
            Prior::from_json(&text, slices).with_context(|| format!("prior file {}", path.display()))?
        }
        None => Prior::uniform(slices),
    };
    let strategy = args.strategy.build(&prior, args.seed);
    let plan = Plan::new(m, slices, budget, &strategy)?;
    let shards: BTreeSet<u16> =
        if args.shard.is_empty() { (0..m).collect() } else { args.shard.iter().copied().collect() };
    if let Some(bad) = shards.iter().find(|&&s| s >= m) {
        bail!("--shard {bad}: there are {} shards (0..{})", m, m - 1);
    }
    if args.out.join(MANIFEST_FILE).exists() && !args.resume {
        bail!("{} already holds a built bundle; use another --out, or --resume", args.out.display());
    }
    // The data first: a build that cannot read it writes nothing (texts are read with the backbone's tokenizer,
    // below).
    let images = if source.is_text() { None } else { Some(source.load()?) };
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    // The locks of the shards built here for the whole run (another build of one of them would write the same
    // files), then the bundle's lock for the shared records only: shard tasks of a cluster build train at once, and
    // a `delete` is recorded while they train (the training loop below honours it).
    let _shard_locks =
        if args.prepare { Vec::new() } else { ShardLock::acquire_all(&args.out, shards.iter().copied())? };
    let lock = BundleLock::acquire(&args.out)?;
    if args.out.join(MANIFEST_FILE).exists() && !args.resume {
        bail!("{} already holds a built bundle; use another --out, or --resume", args.out.display());
    }
    let selected = choose(args.run.device, quiet)?;
    if !args.out.join(PRETRAIN_FILE).exists() {
        if !quiet {
            output::note(&format!("notice: {} has no backbone yet: pretraining first", args.out.display()));
        }
        run_pretrain(&source, &args.out, &args.pretrain, args.batching.threads, args.run.device, quiet)?;
    }
    let (record, pretrained) = load_pretrained(&args.out, &selected.device)?;
    if args.pretrain.frozen_f16 && !record.model.text.as_ref().is_some_and(|t| t.frozen_half()) {
        bail!(
            "{}: --frozen-f16, but its backbone was pretrained holding the encoder at f32 (the option is chosen when \
             pretraining: build into an empty directory)",
            args.out.display()
        );
    }
    let (mut splits, info) = match images {
        Some(splits) => {
            let info = source.info(&splits);
            (splits, info)
        }
        None => crate::cli::load_as_recorded(&source, &record.model, &record.data, &record.backbone, quiet)?,
    };
    if !record.data.same_data(&info) {
        bail!(
            "{}: the backbone was pretrained with data {:?} ({} deletable samples) but --data is {:?}",
            args.out.display(),
            record.data.source,
            record.data.deletable,
            info.source
        );
    }
    if record.model.vit.depth < usize::from(slices) {
        bail!(
            "--slices {} needs at least {} transformer blocks but the backbone has {}",
            slices,
            slices,
            record.model.vit.depth
        );
    }
    let batching = args.batching.resolve(&selected)?;
    let lora_rank = args.lora_rank.unwrap_or(if record.model.text.is_some() { 8 } else { 4 });
    let layers_per_group = match (&record.model.text, args.layers_per_group) {
        (Some(_), per) => Some(per.unwrap_or_else(|| text_layers_per_group(record.model.vit.depth, slices))),
        (None, per) => per,
    };
    let config = record
        .model
        .clone()
        .with_groups(usize::from(slices))
        .with_layers_per_group(layers_per_group)
        .with_lora(LoraConfig::new().with_rank(lora_rank).with_alpha(args.lora_alpha));
    config.validate().map_err(|e| anyhow!("model configuration: {e}"))?;
    let spec = BuildSpec {
        format: FORMAT.to_owned(),
        version: VERSION,
        train: TrainConfig::new()
            .with_epochs(epochs)
            .with_batch_size(args.batch_size)
            .with_learning_rate(learning_rate),
        lora: config.lora.clone(),
        layers_per_group,
        seed: args.seed,
        partition: Partition::new(
            m,
            slices,
            match args.partition {
                PartitionArg::Hash => PartitionMode::Hash,
                PartitionArg::Balanced => PartitionMode::Balanced,
            },
        )?,
        strategy,
        budget,
        sisa: !args.no_sisa,
        backbone_sha256: record.backbone.weights.sha256.clone(),
        backend: Backend::new(selected.is_gpu, &selected.name),
        canaries: crate::canary::choose(args.seed, args.canaries, &splits.deletable, &splits.test)?,
    };
    fix_spec(&args.out, &spec)?;
    if args.prepare {
        return output::print(&format!(
            "prepared {}: backbone and build settings recorded; build the shards with `trainer build --shard I`\n",
            args.out.display()
        ));
    }
    // Everything below trains on the canary labels, as `retrain` will (`cli::checked_data`).
    let what = args.out.join(BUILD_FILE).display().to_string();
    crate::canary::plant(&spec.canaries, &mut splits.deletable, &what)?;
    let assignment = spec.partition.assign((0..splits.deletable.len() as u64).map(SampleId::Int))?;
    // The shared records are read; computing the features and training need only the shard locks.
    drop(lock);
    let features = Features::new(&config, &pretrained.backbone, &splits.deletable, &selected.device);
    let validation = Features::new(&config, &pretrained.backbone, &splits.validation, &selected.device);
    let ctx = BuildContext {
        bundle: &BundleDir(&args.out),
        config: &config,
        train: &spec.train,
        seed: spec.seed,
        data: &splits,
        pretrained: &pretrained,
        assignment: &assignment,
        plan: &plan,
        device: &selected.device,
        features: &features,
        validation: &validation,
        batching,
        rows: None,
    };
    let steps: usize = shards
        .iter()
        .map(|&s| plan.shards[usize::from(s)].nodes.len() + if spec.sisa { usize::from(slices) } else { 0 })
        .sum();
    let mut progress = Progress::new(steps as u64, "build", quiet);
    let started = Instant::now();
    // A build respects the ledger exactly as `retrain` does: nodes are trained without the deleted samples, and a
    // finished node is reused only when its lineage excludes them. Deletions recorded while the shards train (the
    // bundle's lock is released meanwhile) are seen when they finish: the nodes that saw a deleted sample are then
    // trained again, and their files removed, before the shard's record says it is complete.
    let mut lock = Some(BundleLock::acquire(&args.out)?);
    let mut deleted = ledger_deletions(&args.out)?;
    let mut resume = args.resume;
    let mut rounds = 0;
    loop {
        let guard = Guard::new(&assignment, deleted.clone());
        let mut jobs = Vec::with_capacity(shards.len());
        for &shard in &shards {
            let (reuse, reuse_sisa, generation) =
                if resume { resumable(&args.out, shard, &guard)? } else { (Vec::new(), Vec::new(), 0) };
            jobs.push(ShardJob { shard, reuse, reuse_sisa, generation, only: None });
        }
        drop(lock.take());
        let is_deleted = |id: &SampleId| guard.is_deleted(id);
        build_shards(&ctx, &jobs, spec.sisa, &is_deleted, &mut |e| progress.event(e))?;
        lock = Some(BundleLock::acquire(&args.out)?);
        let now = ledger_deletions(&args.out)?;
        if now.len() == deleted.len() {
            break;
        }
        rounds += 1;
        // Said even with --quiet: a cluster task's log should show why it trained more than planned.
        output::note(&format!(
            "notice: {} more deleted samples in the ledger since this build started: training again the nodes that saw \
             them",
            now.len() - deleted.len()
        ));
        deleted = now;
        resume = true;
    }
    let (samples, per_second) = progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let assembled = if args.shard.is_empty() { Some(assemble(&args.out)?) } else { None };
    let summary = serde_json::json!({
        "out": args.out.display().to_string(),
        "device": selected.name,
        "shards_built": shards.iter().collect::<Vec<_>>(),
        "nodes_per_shard": plan.shards.iter().map(|s| s.nodes.len()).collect::<Vec<_>>(),
        "samples_trained": samples,
        "train_samples_per_s": per_second,
        "seconds": seconds,
        "assembled": assembled.is_some(),
        "rounds_for_deletions_during_the_build": rounds,
        "backbone_validation_accuracy": record.backbone.validation_accuracy,
        "mean_node_validation_accuracy": assembled.as_ref().map(mean_node_accuracy),
    });
    if args.run.json {
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&summary)?));
    }
    let mut text =
        format!("trained {samples} samples in {seconds:.1} s ({per_second:.0} samples/s) on {}\n", selected.name);
    match &assembled {
        Some(m) => text.push_str(&format!(
            "bundle {}: {} shards, {} nodes, SISA {}; mean node validation accuracy {:.2}%\n",
            args.out.display(),
            m.nodes.len(),
            m.nodes.iter().map(Vec::len).sum::<usize>(),
            if m.sisa.is_empty() { "no" } else { "yes" },
            mean_node_accuracy(m) * 100.0
        )),
        None => text.push_str(&format!(
            "partial build of shards {:?} in {}; run `trainer assemble {}` once every shard is built\n",
            shards,
            args.out.display(),
            args.out.display()
        )),
    }
    output::print(&text)
}

fn mean_node_accuracy(m: &Manifest) -> f64 {
    let all: Vec<f64> = m.nodes.iter().flatten().map(|n| n.validation_accuracy).collect();
    all.iter().sum::<f64>() / all.len().max(1) as f64
}

/// Records the build specification on the first run; later runs (other shards, resumes) must match it.
fn fix_spec(out: &Path, spec: &BuildSpec) -> Result<()> {
    let path = out.join(BUILD_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut existing: BuildSpec =
            serde_json::from_str(&text).with_context(|| format!("{}: not a build specification", path.display()))?;
        if existing.backend.kind != spec.backend.kind {
            bail!(
                "{} was started on the {} backend but this run uses {}: the nodes would not reproduce bit for bit; \
                 pick the same --device or another --out",
                path.display(),
                existing.backend.kind,
                spec.backend.kind
            );
        }
        // Machines of one kind may name their device differently (a cluster's nodes): the kind is what matters.
        existing.backend.device.clone_from(&spec.backend.device);
        if &existing != spec {
            bail!(
                "{} was started with other settings ({}); use the same flags or another --out",
                path.display(),
                spec_differences(&existing, spec)
            );
        }
        return Ok(());
    }
    let json = serde_json::to_string_pretty(spec)?;
    Ok(write_atomic(&path, json.as_bytes())?)
}

/// The settings in which two build specifications differ, as "field: recorded, now" (a default that changed
/// between trainer versions shows here too, e.g. a text encoder's layers per group).
fn spec_differences(recorded: &BuildSpec, now: &BuildSpec) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(recorded), serde_json::to_value(now))
    else {
        return "unreadable".to_owned();
    };
    let differing: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} recorded, {} now", b.get(k).unwrap_or(&serde_json::Value::Null)))
        .collect();
    differing.join("; ")
}

/// The ids deleted in the bundle's ledger (none when it has no ledger yet). Deletions are permanent: a retrain
/// record does not bring a sample back.
fn ledger_deletions(out: &Path) -> Result<Vec<SampleId>> {
    let path = out.join(LEDGER_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let (actions, _) = Ledger::read(&path)?;
    Ok(deleted_ids(&actions).collect())
}

/// The ids a ledger's actions delete, in order; retrain records are not deletions.
pub fn deleted_ids(actions: &[Action]) -> impl Iterator<Item = SampleId> + '_ {
    actions.iter().filter_map(|a| match a {
        Action::Delete(id) => Some(id.clone()),
        Action::Retrained { .. } => None,
    })
}

/// Entries that may be reused, indexed by node id and by SISA checkpoint − 1, and the generation of the nodes
/// trained now.
type Reusable = (Vec<Option<NodeEntry>>, Vec<Option<SisaEntry>>, u32);

/// The verified entries of an interrupted or damaged shard build: a weight file that does not match is retrained
/// rather than trusted, and so is an entry whose lineage meets the ledger.
fn resumable(out: &Path, shard: u16, guard: &Guard) -> Result<Reusable> {
    let path = out.join(part_path(shard));
    if !path.exists() {
        return Ok((Vec::new(), Vec::new(), 0));
    }
    let part = read_part(&path)?;
    // Nodes retrained after a deletion get a new generation, as `retrain` gives them.
    let generation =
        part.nodes.iter().map(|e| e.generation).max().unwrap_or(0) + u32::from(!guard.deleted().is_empty());
    // What saw a deleted sample is never reused, and its file goes now (it may have been written after the
    // `delete` that would have removed it).
    forget_part(out, &part, guard)?;
    let mut nodes = Vec::new();
    for entry in part.nodes {
        let ok = guard.check_node(&entry).is_ok() && read_weights(out, &entry.weights).is_ok();
        let id = entry.id;
        if id >= 1 << 20 {
            bail!("{}: node id {id} is out of range", path.display());
        }
        if nodes.len() <= id {
            nodes.resize(id + 1, None);
        }
        if ok {
            nodes[id] = Some(entry);
        }
    }
    let sisa = part
        .sisa
        .into_iter()
        .map(|e| (guard.check_sisa(&e).is_ok() && read_weights(out, &e.weights).is_ok()).then_some(e))
        .collect();
    Ok((nodes, sisa, generation))
}

/// The build specification a bundle records (`build.json`).
pub fn read_spec(out: &Path) -> Result<BuildSpec> {
    let path = out.join(BUILD_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a build specification", path.display()))
}

/// The number of shards a bundle's build records.
pub fn recorded_shards(out: &Path) -> Result<u16> {
    Ok(read_spec(out)?.partition.shards)
}

/// Removes the weight files of a shard record's entries whose lineage meets the deletions of `guard`; returns them
/// (relative to the bundle). The caller holds the bundle's lock.
pub fn forget_part(out: &Path, part: &ShardPart, guard: &Guard) -> Result<Vec<String>> {
    let nodes = part.nodes.iter().filter(|e| guard.check_node(e).is_err()).map(|e| &e.weights);
    let sisa = part.sisa.iter().filter(|e| guard.check_sisa(e).is_err()).map(|e| &e.weights);
    let mut removed = Vec::new();
    for file in nodes.chain(sisa) {
        let path = safe_join(out, &file.path)?;
        if remove_durably(&path)? {
            removed.push(file.path.clone());
        }
    }
    Ok(removed)
}

/// A shard's progress record.
pub fn read_part(path: &Path) -> Result<ShardPart> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(ShardPart::from_json(&path.display().to_string(), &text)?)
}

/// Merges `pretrain.json`, `build.json` and every shard's part into `manifest.json`. The caller holds every shard's
/// lock and then the bundle's. The assembled bundle must pass the serving guard against the ledger (nothing served
/// saw a deleted sample) and every file it may serve must match its checksum. The files of components whose lineage
/// meets the ledger (deleted while a shard trained) are removed, and so is every weight file no record names (a
/// task killed between writing a node's weights and its record, before a deletion gave the retrained node a new
/// generation): nothing vouches that such a file saw no deleted sample.
pub fn assemble(out: &Path) -> Result<Manifest> {
    let record = crate::bundle_dir::read_pretrain_record(&out.join(PRETRAIN_FILE))?;
    let spec = read_spec(out)?;
    let mut parts = Vec::new();
    for shard in 0..spec.partition.shards {
        let path = out.join(part_path(shard));
        if !path.exists() {
            bail!("shard {shard} has not been built: run `trainer build --shard {shard} --out {}`", out.display());
        }
        parts.push(read_part(&path)?);
    }
    let manifest = Manifest::assemble(record, spec, parts).map_err(|e| anyhow!("{}: {e}", out.display()))?;
    let bundle = Bundle::from_manifest(out, manifest)?;
    let serving = bundle.serving()?;
    crate::cli::delete::forget_files(&bundle, &serving.state)?;
    remove_unnamed_weights(out, &bundle.manifest)?;
    bundle.verify_servable(&serving.guard)?;
    write_manifest(out, &bundle.manifest)?;
    Ok(bundle.manifest)
}

/// Removes the files under `weights/` that `manifest` does not name.
fn remove_unnamed_weights(out: &Path, manifest: &Manifest) -> Result<()> {
    let named: BTreeSet<PathBuf> = manifest.weight_files().map(|f| out.join(&f.path)).collect();
    let mut stack = vec![out.join("weights")];
    while let Some(dir) = stack.pop() {
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))? {
            let path = entry.with_context(|| format!("{}: cannot list", dir.display()))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if !named.contains(&path) {
                remove_durably(&path)?;
            }
        }
    }
    Ok(())
}
