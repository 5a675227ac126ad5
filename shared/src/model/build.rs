//! Building a bundle's shards (feature `learn`): every node of the plan in training order, optionally the SISA
//! checkpoints, with atomic per-node weight files and a progress record so an interrupted build resumes where it
//! stopped. Retraining after deletions is the same procedure with the clean nodes reused.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
#[cfg(not(target_family = "wasm"))]
use std::path::Path;

use burn::tensor::{Device, Tensor};

use super::config::{ModelConfig, TrainConfig};
use super::features::Features;
use super::parallel::Batching;
use super::parts::{NodeParams, Pretrained, SisaParams};
use super::serve::{node_skeleton, sisa_skeleton};
use super::train::{NodeRun, SisaRun, TrainInputs, Unread, train_nodes, train_sisas};
use super::weights::load_safetensors;
use crate::Error;
pub use crate::bundle::ShardPart;
use crate::bundle::manifest::{lineage, verify_bytes};
#[cfg(not(target_family = "wasm"))]
use crate::bundle::store::{read_weights, write_atomic, write_weights};
use crate::bundle::{NodeEntry, SisaEntry, WeightFile};
use crate::dataset::{DataError, Splits};
use crate::partition::{Assignment, Cell, SampleId};
use crate::plan::{Plan, node_seed, sisa_seed};

/// Where a shard's progress record lives inside the bundle.
pub fn part_path(shard: u16) -> String {
    format!("parts/shard-{shard}.json")
}

/// Where a build reads the weights it reuses and writes the weights it trains and its progress records: a bundle
/// directory ([`BundleDir`]) natively, memory ([`MemoryStore`]) in the page's retraining worker. The build's
/// arithmetic does not depend on it.
pub trait PartStore {
    /// The bytes of a weight file, checked against its size and sha256.
    fn read_weights(&self, file: &WeightFile) -> crate::Result<Vec<u8>>;
    /// Stores a weight file at `path` (relative to the bundle) and returns its manifest entry.
    fn write_weights(&self, path: &str, bytes: &[u8]) -> crate::Result<WeightFile>;
    /// Records a shard's progress (so an interrupted build resumes there).
    fn save_part(&self, part: &ShardPart) -> crate::Result<()>;
}

/// A bundle directory: atomic, durable writes.
#[cfg(not(target_family = "wasm"))]
pub struct BundleDir<'a>(pub &'a Path);

#[cfg(not(target_family = "wasm"))]
impl PartStore for BundleDir<'_> {
    fn read_weights(&self, file: &WeightFile) -> crate::Result<Vec<u8>> {
        read_weights(self.0, file)
    }

    fn write_weights(&self, path: &str, bytes: &[u8]) -> crate::Result<WeightFile> {
        write_weights(self.0, path, bytes)
    }

    fn save_part(&self, part: &ShardPart) -> crate::Result<()> {
        save_part(self.0, part)
    }
}

/// Weight files in memory (the browser's worker has no file system): the reused ones put in beforehand, the
/// trained ones collected for the caller. Progress records are not kept: a page retrain that stops starts again.
#[derive(Default)]
pub struct MemoryStore {
    files: RefCell<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// Adds a file the build may read (a reused node's weights).
    pub fn insert(&self, path: &str, bytes: Vec<u8>) {
        self.files.borrow_mut().insert(path.to_owned(), bytes);
    }

    /// Takes a file out (a trained node's weights).
    pub fn take(&self, path: &str) -> Option<Vec<u8>> {
        self.files.borrow_mut().remove(path)
    }
}

impl PartStore for MemoryStore {
    fn read_weights(&self, file: &WeightFile) -> crate::Result<Vec<u8>> {
        let files = self.files.borrow();
        let bytes = files.get(&file.path).ok_or_else(|| Error::mismatch(format!("{}: not loaded", file.path)))?;
        verify_bytes(file, bytes)?;
        Ok(bytes.clone())
    }

    fn write_weights(&self, path: &str, bytes: &[u8]) -> crate::Result<WeightFile> {
        self.insert(path, bytes.to_vec());
        Ok(WeightFile::of(path, bytes))
    }

    fn save_part(&self, _part: &ShardPart) -> crate::Result<()> {
        Ok(())
    }
}

/// What a build reports as it goes (for progress bars and logs).
#[derive(Clone, Debug)]
pub enum BuildEvent {
    /// A batch of `nodes` training runs starts: `samples` = their samples per epoch × epochs, summed.
    Start { label: String, nodes: usize, samples: usize },
    /// An optimiser step finished `samples` samples.
    Progress { samples: usize },
    /// A step finished (or was reused from disk).
    Done { shard: u16, label: String, validation_accuracy: f64, reused: bool },
}

/// One shard's samples of a split of `len` samples, in slice order: the rows to keep (`order`, for
/// [`crate::dataset::Dataset::select`]) and each id's row among them ([`BuildContext::rows`]). The page's worker
/// retrains on this copy: a quarter of the split's work at m = 4, the weights of the whole split's build.
pub fn shard_rows(assignment: &Assignment, slices: u16, shard: u16, len: usize) -> (Vec<usize>, HashMap<u64, usize>) {
    let ids: Vec<u64> = (0..slices)
        .flat_map(|slice| assignment.members(Cell { shard, slice }).iter())
        .filter_map(|id| if let SampleId::Int(i) = id { Some(*i) } else { None })
        .filter(|&i| (i as usize) < len)
        .collect();
    let order = ids.iter().map(|&i| i as usize).collect();
    (order, ids.iter().enumerate().map(|(row, &i)| (i, row)).collect())
}

/// Everything a shard build needs.
pub struct BuildContext<'a> {
    /// Where reused weights are read and new ones written.
    pub bundle: &'a dyn PartStore,
    pub config: &'a ModelConfig,
    pub train: &'a TrainConfig,
    pub seed: u64,
    pub data: &'a Splits,
    pub pretrained: &'a Pretrained,
    pub assignment: &'a Assignment,
    pub plan: &'a Plan,
    pub device: &'a Device,
    /// Cached backbone activations of the deletable and validation splits.
    pub features: &'a Features,
    pub validation: &'a Features,
    /// How the independent runs of one depth (or SISA step) share the machine: stacked into one computation, one
    /// per thread, or one after another. A node's weights do not depend on it.
    pub batching: Batching,
    /// The row of each sample in `data.deletable` and `features`, when they hold only some of the samples (the
    /// page's worker keeps the shard it retrains); `None`: sample i is row i.
    pub rows: Option<&'a HashMap<u64, usize>>,
}

impl<'a> BuildContext<'a> {
    /// What every node run trains from (the deletable split's activations) and is selected against (the
    /// validation split's).
    fn train_inputs(&self) -> TrainInputs<'a> {
        TrainInputs {
            config: self.config,
            backbone: &self.pretrained.backbone,
            features: self.features,
            data: &self.data.deletable,
            validation: Some((self.validation, &self.data.validation.labels)),
            device: self.device,
        }
    }

    /// The training settings of a run on `k` slices (every run takes about the same number of steps).
    fn run_config(&self, k: usize) -> TrainConfig {
        self.train.for_slices(k, usize::from(self.plan.slices))
    }

    fn samples(&self, shard: u16, slices: &[u16], deleted: &dyn Fn(&SampleId) -> bool) -> crate::Result<Vec<usize>> {
        let mut out = Vec::new();
        for &slice in slices {
            for id in self.assignment.members(Cell { shard, slice }) {
                if !deleted(id)
                    && let SampleId::Int(i) = id
                {
                    let row = match self.rows {
                        Some(rows) => rows
                            .get(i)
                            .copied()
                            .ok_or_else(|| DataError::Invalid(format!("sample {i} is not loaded")))?,
                        None => *i as usize,
                    };
                    out.push(row);
                }
            }
        }
        Ok(out)
    }

    fn load_node(&self, entry: &NodeEntry) -> crate::Result<NodeParams> {
        let bytes = self.bundle.read_weights(&entry.weights)?;
        load_safetensors(node_skeleton(self.config, entry.prefix.len(), self.device), bytes, &entry.weights.path)
    }

    fn load_sisa(&self, entry: &SisaEntry) -> crate::Result<SisaParams> {
        let bytes = self.bundle.read_weights(&entry.weights)?;
        load_safetensors(sisa_skeleton(self.config, self.device), bytes, &entry.weights.path)
    }
}

/// One shard of a build: what may be reused and the generation of what is trained now.
pub struct ShardJob {
    pub shard: u16,
    /// `reuse[node]`: entries still valid (completed before an interruption, or clean after deletions); they are
    /// loaded and verified instead of trained.
    pub reuse: Vec<Option<NodeEntry>>,
    pub reuse_sisa: Vec<Option<SisaEntry>>,
    /// The generation of the nodes trained now.
    pub generation: u32,
    /// The nodes built here when other workers build the rest (the page's retraining helpers, see
    /// [`crate::bundle::retrain::split`]): whole subtrees of the prefix trie, so a parent is always built or reused
    /// here. `None`: every node.
    pub only: Option<BTreeSet<usize>>,
}

/// Trains (or reuses) every node of one shard, then its SISA checkpoints when `sisa` is set: [`build_shards`] with
/// one shard.
#[cfg(not(target_family = "wasm"))]
pub fn build_shard(
    ctx: &BuildContext<'_>,
    job: ShardJob,
    sisa: bool,
    deleted: &dyn Fn(&SampleId) -> bool,
    events: &mut dyn FnMut(BuildEvent),
) -> crate::Result<ShardPart> {
    let mut parts = build_shards(ctx, &[job], sisa, deleted, events)?;
    Ok(parts.remove(0))
}

/// Trains (or reuses) every node of the given shards level by level: the nodes of one depth, across shards and
/// sequences, train together as `ctx.batching` says (a parent always before its children), then the SISA
/// checkpoints when `sisa` is set, checkpoint k of every shard together. `deleted` says which samples are gone
/// (empty for a first build). A shard's progress record is rewritten after every batch that trained one of its
/// nodes, so an interrupted build resumes there. Natively; the browser, where WebGPU reads back only
/// asynchronously, awaits [`build_shards_async`].
#[cfg(not(target_family = "wasm"))]
pub fn build_shards(
    ctx: &BuildContext<'_>,
    jobs: &[ShardJob],
    sisa: bool,
    deleted: &dyn Fn(&SampleId) -> bool,
    events: &mut dyn FnMut(BuildEvent),
) -> crate::Result<Vec<ShardPart>> {
    // Every read-back blocks natively, so nothing here waits and the build completes in one poll.
    super::vit::unpaced(build_shards_async(ctx, jobs, sisa, deleted, events))
}

/// [`build_shards`]: the same arithmetic, with model selection's logits and the trained weights read back
/// asynchronously in the browser (blocking reads natively).
pub async fn build_shards_async(
    ctx: &BuildContext<'_>,
    jobs: &[ShardJob],
    sisa: bool,
    deleted: &dyn Fn(&SampleId) -> bool,
    events: &mut dyn FnMut(BuildEvent),
) -> crate::Result<Vec<ShardPart>> {
    let mut parts: Vec<ShardPart> = jobs
        .iter()
        .map(|j| ShardPart { shard: j.shard, complete: false, nodes: Vec::new(), sisa: Vec::new() })
        .collect();
    let mut trained: Vec<Vec<Option<NodeParams>>> =
        jobs.iter().map(|j| vec![None; ctx.plan.shards[usize::from(j.shard)].nodes.len()]).collect();
    for depth in 1..=usize::from(ctx.plan.slices) {
        // (job, node id) of the nodes of this depth to train.
        let mut pending: Vec<(usize, usize)> = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            let here = |id: usize| job.only.as_ref().is_none_or(|only| only.contains(&id));
            for node in
                ctx.plan.shards[usize::from(job.shard)].nodes.iter().filter(|n| n.prefix.len() == depth && here(n.id))
            {
                match job.reuse.get(node.id).cloned().flatten() {
                    Some(entry) => {
                        trained[j][node.id] = Some(ctx.load_node(&entry)?);
                        events(BuildEvent::Done {
                            shard: job.shard,
                            label: node_label(node.id, &node.prefix),
                            validation_accuracy: entry.validation_accuracy,
                            reused: true,
                        });
                        parts[j].nodes.push(entry);
                    }
                    None => pending.push((j, node.id)),
                }
            }
        }
        let call = Call { ctx, jobs, deleted };
        for batch in pending.chunks(ctx.batching.width()) {
            call.train_node_batch(batch, depth, &mut trained, &mut parts, events).await?;
        }
    }
    if sisa {
        build_sisa(ctx, jobs, deleted, &mut parts, events).await?;
    }
    for (part, job) in parts.iter_mut().zip(jobs) {
        if !sisa {
            // A retrain keeps the SISA baseline as it is (SISA "without retraining"); a `--no-sisa` build has none.
            part.sisa = job.reuse_sisa.iter().flatten().cloned().collect();
        }
        part.complete = true;
        ctx.bundle.save_part(part)?;
    }
    Ok(parts)
}

fn node_label(id: usize, prefix: &[u16]) -> String {
    format!("node {id} prefix {prefix:?}")
}

/// What one build call works on: its context, its shards' jobs, and which samples are deleted.
struct Call<'c, 'a> {
    ctx: &'c BuildContext<'a>,
    jobs: &'c [ShardJob],
    deleted: &'c dyn Fn(&SampleId) -> bool,
}

impl Call<'_, '_> {
    /// Trains one batch of nodes of the same depth (`(job, node id)` pairs), writes their weights and the progress
    /// records of their shards; `trained[job][node]` holds the nodes trained so far, their parents among them.
    async fn train_node_batch(
        &self,
        batch: &[(usize, usize)],
        depth: usize,
        trained: &mut [Vec<Option<NodeParams>>],
        parts: &mut [ShardPart],
        events: &mut dyn FnMut(BuildEvent),
    ) -> crate::Result<()> {
        let Call { ctx, jobs, deleted } = *self;
        let run = ctx.run_config(depth);
        let node = |j: usize, id: usize| &ctx.plan.shards[usize::from(jobs[j].shard)].nodes[id];
        let samples: Vec<Vec<usize>> = batch
            .iter()
            .map(|&(j, id)| ctx.samples(jobs[j].shard, &node(j, id).prefix, deleted))
            .collect::<Result<_, _>>()?;
        let shards: BTreeSet<u16> = batch.iter().map(|&(j, _)| jobs[j].shard).collect();
        events(BuildEvent::Start {
            label: format!("depth {depth}: {} nodes of shards {}", batch.len(), list(&shards)),
            nodes: batch.len(),
            samples: samples.iter().map(|s| s.len() * run.epochs).sum(),
        });
        let params = {
            let mut runs = Vec::with_capacity(batch.len());
            for (&(j, id), samples) in batch.iter().zip(&samples) {
                let n = node(j, id);
                let (frozen, parent_head) = match n.parent {
                    Some(p) => {
                        let chain = ancestors(ctx.plan, jobs[j].shard, p);
                        let mut groups = Vec::with_capacity(chain.len());
                        for a in chain {
                            groups.push(&trained_node(trained, j, a)?.adapter);
                        }
                        (groups, &trained_node(trained, j, p)?.head)
                    }
                    None => (Vec::new(), &ctx.pretrained.head),
                };
                runs.push(NodeRun {
                    frozen,
                    parent_head,
                    samples: samples.clone(),
                    seed: node_seed(ctx.seed, jobs[j].shard, &n.prefix),
                    run: run.clone(),
                });
            }
            let unread = train_nodes(&ctx.train_inputs(), &runs, ctx.batching, &mut |n| {
                events(BuildEvent::Progress { samples: n })
            });
            // Model selection's score of the kept epoch is recorded.
            let mut params = Vec::with_capacity(runs.len());
            for u in unread {
                params.push(selected(u).await?);
            }
            params
        };
        for ((&(j, id), samples), (p, validation_accuracy)) in batch.iter().zip(samples).zip(params) {
            let job = &jobs[j];
            let n = node(j, id);
            let bytes = serialise(&p).await?;
            let path = format!("weights/shard-{}/node-{id}.g{}.safetensors", job.shard, job.generation);
            let weights = ctx.bundle.write_weights(&path, &bytes)?;
            events(BuildEvent::Done {
                shard: job.shard,
                label: node_label(id, &n.prefix),
                validation_accuracy,
                reused: false,
            });
            parts[j].nodes.push(NodeEntry {
                shard: job.shard,
                id,
                prefix: n.prefix.clone(),
                parent: n.parent,
                seed: node_seed(ctx.seed, job.shard, &n.prefix),
                lineage: lineage(ctx.assignment, job.shard, &n.prefix, deleted),
                samples: samples.len(),
                validation_accuracy,
                generation: job.generation,
                weights,
            });
            trained[j][id] = Some(p);
        }
        for j in batch.iter().map(|&(j, _)| j).collect::<BTreeSet<_>>() {
            parts[j].nodes.sort_by_key(|e| e.id);
            ctx.bundle.save_part(&parts[j])?;
        }
        Ok(())
    }
}

fn trained_node(trained: &[Vec<Option<NodeParams>>], job: usize, id: usize) -> crate::Result<&NodeParams> {
    trained[job][id].as_ref().ok_or_else(|| Error::model(format!("node {id} is trained before its children")))
}

fn list(shards: &BTreeSet<u16>) -> String {
    shards.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// SISA baseline: checkpoint k trains every group and the head on slices 0..k, continuing from checkpoint k−1;
/// checkpoint k of every shard trains together (as `ctx.batching` says).
async fn build_sisa(
    ctx: &BuildContext<'_>,
    jobs: &[ShardJob],
    deleted: &dyn Fn(&SampleId) -> bool,
    parts: &mut [ShardPart],
    events: &mut dyn FnMut(BuildEvent),
) -> crate::Result<()> {
    let mut previous: Vec<Option<SisaParams>> = jobs.iter().map(|_| None).collect();
    for k in 1..=ctx.config.groups as u16 {
        let label = format!("SISA checkpoint {k}");
        let slices: Vec<u16> = (0..k).collect();
        let mut pending = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            if let Some(entry) = job.reuse_sisa.get(usize::from(k) - 1).cloned().flatten() {
                previous[j] = Some(ctx.load_sisa(&entry)?);
                events(BuildEvent::Done {
                    shard: job.shard,
                    label: label.clone(),
                    validation_accuracy: entry.validation_accuracy,
                    reused: true,
                });
                parts[j].sisa.push(entry);
            } else {
                pending.push(j);
            }
        }
        let run = ctx.run_config(usize::from(k));
        for batch in pending.chunks(ctx.batching.width()) {
            // Deleted samples are skipped here too: a checkpoint trained after a deletion (a resumed build) must
            // not see them.
            let samples: Vec<Vec<usize>> =
                batch.iter().map(|&j| ctx.samples(jobs[j].shard, &slices, deleted)).collect::<Result<_, _>>()?;
            let shards: BTreeSet<u16> = batch.iter().map(|&j| jobs[j].shard).collect();
            events(BuildEvent::Start {
                label: format!("{label}: shards {}", list(&shards)),
                nodes: batch.len(),
                samples: samples.iter().map(|s| s.len() * run.epochs).sum(),
            });
            let params = {
                let runs: Vec<SisaRun<'_>> = batch
                    .iter()
                    .zip(&samples)
                    .map(|(&j, s)| SisaRun {
                        previous: previous[j].as_ref(),
                        samples: s.clone(),
                        seed: sisa_seed(ctx.seed, jobs[j].shard, k),
                        run: run.clone(),
                    })
                    .collect();
                train_sisas(&ctx.train_inputs(), &ctx.pretrained.head, &runs, ctx.batching, &mut |n| {
                    events(BuildEvent::Progress { samples: n })
                })
            };
            for ((&j, samples), unread) in batch.iter().zip(samples).zip(params) {
                let shard = jobs[j].shard;
                let (params, validation_accuracy) = selected(unread).await?;
                let bytes = serialise(&params).await?;
                let weights =
                    ctx.bundle.write_weights(&format!("weights/shard-{shard}/sisa-{k}.safetensors"), &bytes)?;
                events(BuildEvent::Done { shard, label: label.clone(), validation_accuracy, reused: false });
                parts[j].sisa.push(SisaEntry {
                    shard,
                    checkpoint: k,
                    seed: sisa_seed(ctx.seed, shard, k),
                    lineage: lineage(ctx.assignment, shard, &slices, deleted),
                    samples: samples.len(),
                    validation_accuracy,
                    weights,
                });
                previous[j] = Some(params);
                ctx.bundle.save_part(&parts[j])?;
            }
        }
    }
    Ok(())
}

/// A run's selected parameters and their validation accuracy (a build always selects on the validation split).
async fn selected<P>(unread: Unread<'_, P>) -> crate::Result<(P, f64)> {
    let fitted = unread.select(&read_back).await?;
    let accuracy = fitted.validation_accuracy.ok_or_else(|| Error::model("model selection scored no epoch"))?;
    Ok((fitted.params, accuracy))
}

/// Reads logits back: blocking natively (every native backend allows it), asynchronously in the browser (all that
/// WebGPU allows).
async fn read_back(logits: Tensor<2>) -> crate::Result<Vec<f32>> {
    #[cfg(target_family = "wasm")]
    return super::features::to_host_async(logits).await;
    #[cfg(not(target_family = "wasm"))]
    Ok(super::features::to_host(logits))
}

/// A trained module's weight file, read back as [`read_back`] does.
async fn serialise<M: burn::module::Module>(module: &M) -> crate::Result<Vec<u8>> {
    #[cfg(target_family = "wasm")]
    return super::weights::to_safetensors_async(module).await;
    #[cfg(not(target_family = "wasm"))]
    super::weights::to_safetensors(module)
}

/// Node ids of `node` and its ancestors, top group first.
fn ancestors(plan: &Plan, shard: u16, node: usize) -> Vec<usize> {
    let nodes = &plan.shards[usize::from(shard)].nodes;
    let mut chain = vec![node];
    while let Some(p) = nodes[*chain.last().expect("non-empty")].parent {
        chain.push(p);
    }
    chain.reverse();
    chain
}

/// Writes a shard's progress record atomically.
#[cfg(not(target_family = "wasm"))]
pub fn save_part(bundle: &Path, part: &ShardPart) -> crate::Result<()> {
    let json = serde_json::to_string_pretty(part).map_err(|e| Error::model(e.to_string()))?;
    write_atomic(&bundle.join(part_path(part.shard)), json.as_bytes())
}
