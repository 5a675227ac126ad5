//! Building a bundle's shards (feature `train`): every node of the plan in training order, optionally the SISA
//! checkpoints, with atomic per-node weight files and a progress record so an interrupted build resumes where it
//! stopped. Retraining after deletions is the same procedure with the clean nodes reused.

use std::path::Path;

use burn::tensor::Device;

use super::adapter::GroupAdapter;
use super::config::{ModelConfig, TrainConfig};
use super::ensemble::{accuracy, softmax_rows};
use super::features::{Features, logits_all};
use super::parts::{NodeParams, Pretrained, SisaParams};
use super::serve::{node_skeleton, sisa_skeleton};
use super::train::{train_node, train_sisa};
use super::vit::Component;
use super::weights::{load_safetensors, to_safetensors};
pub use crate::bundle::ShardPart;
use crate::bundle::manifest::lineage;
use crate::bundle::store::{read_weights, write_atomic, write_weights};
use crate::bundle::{NodeEntry, SisaEntry};
use crate::dataset::Splits;
use crate::partition::{Assignment, Cell, SampleId};
use crate::plan::{Plan, node_seed, sisa_seed};

/// Where a shard's progress record lives inside the bundle.
pub fn part_path(shard: u16) -> String {
    format!("parts/shard-{shard}.json")
}

/// What a build reports as it goes (for progress bars and logs).
#[derive(Clone, Debug)]
pub enum BuildEvent {
    /// A training step starts: `samples` = samples per epoch × epochs.
    Start { shard: u16, label: String, samples: usize },
    /// An optimiser step finished `samples` samples.
    Progress { samples: usize },
    /// A step finished (or was reused from disk).
    Done { shard: u16, label: String, validation_accuracy: f64, reused: bool },
}

/// Everything a shard build needs.
pub struct BuildContext<'a> {
    pub bundle: &'a Path,
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
}

impl BuildContext<'_> {
    /// The training settings of a run on `k` slices (every run takes about the same number of steps).
    fn run_config(&self, k: usize) -> TrainConfig {
        self.train.for_slices(k, usize::from(self.plan.slices))
    }

    fn samples(&self, shard: u16, slices: &[u16], deleted: &dyn Fn(&SampleId) -> bool) -> Vec<usize> {
        let mut out = Vec::new();
        for &slice in slices {
            for id in self.assignment.members(Cell { shard, slice }) {
                if !deleted(id)
                    && let SampleId::Int(i) = id
                {
                    out.push(*i as usize);
                }
            }
        }
        out
    }

    fn validation_accuracy(&self, groups: &[&GroupAdapter], params_head: &super::vit::Head) -> f64 {
        let component = Component { groups, head: params_head };
        let logits = logits_all(self.config, &self.pretrained.backbone, component, self.validation);
        let classes = self.config.vit.classes;
        accuracy(&softmax_rows(&logits, classes), classes, &self.data.validation.labels)
    }

    fn load_node(&self, entry: &NodeEntry) -> Result<NodeParams, String> {
        let bytes = read_weights(self.bundle, &entry.weights)?;
        load_safetensors(node_skeleton(self.config, entry.prefix.len(), self.device), bytes, &entry.weights.path)
    }

    fn load_sisa(&self, entry: &SisaEntry) -> Result<SisaParams, String> {
        let bytes = read_weights(self.bundle, &entry.weights)?;
        load_safetensors(sisa_skeleton(self.config, self.device), bytes, &entry.weights.path)
    }
}

/// Trains (or reuses) every node of one shard, then its SISA checkpoints when `sisa` is set.
///
/// `reuse[node]` holds entries that are still valid (completed before an interruption, or clean after deletions);
/// they are loaded and verified instead of trained. Nodes trained now get `generation`. `deleted` says which
/// samples are gone (empty for a first build). The progress record is rewritten after every node.
#[allow(clippy::too_many_arguments)]
pub fn build_shard(
    ctx: &BuildContext<'_>,
    shard: u16,
    reuse: &[Option<NodeEntry>],
    reuse_sisa: &[Option<SisaEntry>],
    sisa: bool,
    generation: u32,
    deleted: &dyn Fn(&SampleId) -> bool,
    events: &mut dyn FnMut(BuildEvent),
) -> Result<ShardPart, String> {
    let plan = &ctx.plan.shards[usize::from(shard)];
    let mut part = ShardPart { shard, complete: false, nodes: Vec::new(), sisa: Vec::new() };
    let mut trained: Vec<NodeParams> = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        let label = format!("node {} prefix {:?}", node.id, node.prefix);
        if let Some(entry) = reuse.get(node.id).cloned().flatten() {
            trained.push(ctx.load_node(&entry)?);
            events(BuildEvent::Done { shard, label, validation_accuracy: entry.validation_accuracy, reused: true });
            part.nodes.push(entry);
            continue;
        }
        let samples = ctx.samples(shard, &node.prefix, deleted);
        let seed = node_seed(ctx.seed, shard, &node.prefix);
        let run = ctx.run_config(node.prefix.len());
        events(BuildEvent::Start { shard, label: label.clone(), samples: samples.len() * run.epochs });
        let (frozen, parent_head) = match node.parent {
            Some(p) => {
                let chain = ancestors(ctx.plan, shard, p);
                (chain.iter().map(|&a| &trained[a].adapter).collect::<Vec<_>>(), &trained[p].head)
            }
            None => (Vec::new(), &ctx.pretrained.head),
        };
        let params = train_node(
            ctx.config,
            &run,
            &ctx.pretrained.backbone,
            &frozen,
            parent_head,
            ctx.features,
            &ctx.data.deletable,
            &samples,
            seed,
            Some((ctx.validation, &ctx.data.validation.labels)),
            ctx.device,
            &mut |n| events(BuildEvent::Progress { samples: n }),
        );
        let mut groups = frozen.clone();
        groups.push(&params.adapter);
        let validation_accuracy = ctx.validation_accuracy(&groups, &params.head);
        let bytes = to_safetensors(&params)?;
        let path = format!("weights/shard-{shard}/node-{}.g{generation}.safetensors", node.id);
        let weights = write_weights(ctx.bundle, &path, &bytes)?;
        events(BuildEvent::Done { shard, label, validation_accuracy, reused: false });
        part.nodes.push(NodeEntry {
            shard,
            id: node.id,
            prefix: node.prefix.clone(),
            parent: node.parent,
            seed,
            lineage: lineage(ctx.assignment, shard, &node.prefix, deleted),
            samples: samples.len(),
            validation_accuracy,
            generation,
            weights,
        });
        trained.push(params);
        save_part(ctx.bundle, &part)?;
    }
    if sisa {
        build_sisa(ctx, shard, reuse_sisa, deleted, &mut part, events)?;
    } else {
        // A retrain keeps the SISA baseline as it is (SISA "without retraining"); a `--no-sisa` build has none.
        part.sisa = reuse_sisa.iter().flatten().cloned().collect();
    }
    part.complete = true;
    save_part(ctx.bundle, &part)?;
    Ok(part)
}

/// SISA baseline: checkpoint k trains every group and the head on slices 0..k, continuing from checkpoint k−1.
fn build_sisa(
    ctx: &BuildContext<'_>,
    shard: u16,
    reuse: &[Option<SisaEntry>],
    deleted: &dyn Fn(&SampleId) -> bool,
    part: &mut ShardPart,
    events: &mut dyn FnMut(BuildEvent),
) -> Result<(), String> {
    let mut previous: Option<SisaParams> = None;
    for k in 1..=ctx.config.groups as u16 {
        let label = format!("SISA checkpoint {k}");
        if let Some(entry) = reuse.get(usize::from(k) - 1).cloned().flatten() {
            previous = Some(ctx.load_sisa(&entry)?);
            events(BuildEvent::Done { shard, label, validation_accuracy: entry.validation_accuracy, reused: true });
            part.sisa.push(entry);
            continue;
        }
        let slices: Vec<u16> = (0..k).collect();
        // Deleted samples are skipped here too: a checkpoint trained after a deletion (a resumed build) must not
        // see them.
        let samples = ctx.samples(shard, &slices, deleted);
        let seed = sisa_seed(ctx.seed, shard, k);
        let run = ctx.run_config(usize::from(k));
        events(BuildEvent::Start { shard, label: label.clone(), samples: samples.len() * run.epochs });
        let params = train_sisa(
            ctx.config,
            &run,
            &ctx.pretrained.backbone,
            previous.as_ref(),
            &ctx.pretrained.head,
            &ctx.data.deletable,
            &samples,
            seed,
            Some(&ctx.data.validation),
            ctx.device,
            &mut |n| events(BuildEvent::Progress { samples: n }),
        );
        let groups: Vec<&GroupAdapter> = params.adapters.iter().collect();
        let validation_accuracy = ctx.validation_accuracy(&groups, &params.head);
        let bytes = to_safetensors(&params)?;
        let weights = write_weights(ctx.bundle, &format!("weights/shard-{shard}/sisa-{k}.safetensors"), &bytes)?;
        events(BuildEvent::Done { shard, label, validation_accuracy, reused: false });
        part.sisa.push(SisaEntry {
            shard,
            checkpoint: k,
            seed,
            lineage: lineage(ctx.assignment, shard, &slices, deleted),
            samples: samples.len(),
            validation_accuracy,
            weights,
        });
        previous = Some(params);
        save_part(ctx.bundle, part)?;
    }
    Ok(())
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
pub fn save_part(bundle: &Path, part: &ShardPart) -> Result<(), String> {
    let json = serde_json::to_string_pretty(part).map_err(|e| e.to_string())?;
    write_atomic(&bundle.join(part_path(part.shard)), json.as_bytes())
}
