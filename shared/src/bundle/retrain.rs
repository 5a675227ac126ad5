//! The page's background retraining: what the main thread asks its worker and what the worker answers (JSON over
//! `postMessage`), and the check the main thread makes before it serves what arrives.
//!
//! The worker retrains one shard exactly as `trainer retrain` does (the same build code, the nodes the guard does
//! not allow retrained, the others reused). What it sends back is untrusted until [`accept`] has checked it against
//! the deletions known when it arrives: a sample deleted while the worker ran may lie in a slice the new nodes saw.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::entry::{NodeEntry, verify_bytes};
use super::guard::Guard;
use crate::Error;
use crate::partition::SampleId;
use crate::plan::{Node, ShardPlan};

/// A retrain job: main thread → worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The bundle's URL, relative to the page.
    pub bundle: String,
    pub shard: u16,
    /// Every deleted sample (the bundle's ledger and the visitor's).
    pub deleted: Vec<SampleId>,
    /// The deletable split's indices the bundle's own ledger purged from the page's copy of the data.
    pub purged: Vec<u64>,
    /// Nodes of one depth trained as one batched computation.
    pub batch_nodes: usize,
    /// A link's retrain replayed at its place: after the first `after` of the visitor's deletions (`deleted` holds
    /// those and the ledger's); echoed in `Done`.
    #[serde(default)]
    pub after: Option<usize>,
    /// A helper's share of the job (see [`split`]): only the subtrees under these top-level nodes. `None`: the
    /// whole shard (the worker may split it among helpers of its own).
    #[serde(default)]
    pub roots: Option<Vec<usize>>,
    /// Where the worker trains.
    #[serde(default)]
    pub backend: Backend,
}

/// Where the page's worker trains. The weights it sends back are checked the same way whichever it is; the CPU
/// backend gives the trainer's bits, WebGPU the same lineage with its own floating-point rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// WebGPU on a hardware adapter; otherwise the CPU backend (a software adapter is slower than the CPU's SIMD).
    #[default]
    Auto,
    /// The CPU backend, split among helper workers, one per core.
    Cpu,
    /// WebGPU on whatever adapter the worker gets, software ones included (or a failure).
    Gpu,
}

impl Backend {
    /// The page's choice from a URL query value (`?train=cpu`, `?train=gpu`); anything else is `Auto`.
    pub fn from_query(value: &str) -> Self {
        match value {
            "cpu" => Self::Cpu,
            "gpu" | "webgpu" => Self::Gpu,
            _ => Self::Auto,
        }
    }
}

/// What the worker reports: worker → main thread. The weights of `Done` follow the JSON in the same message, one
/// byte array per retrained node, in the order of `retrained`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// The worker's code is running and takes requests.
    Ready,
    /// Data and weights are loaded; `nodes` of the shard's `total` will be trained, `samples` samples in all
    /// (samples per pass × passes, summed).
    Started {
        shard: u16,
        nodes: usize,
        total: usize,
        samples: usize,
        /// Where it trains, in words (and why, when the CPU was chosen over an adapter).
        #[serde(default)]
        backend: String,
    },
    /// Progress: samples trained so far and nodes finished (trained or reused).
    Progress {
        shard: u16,
        samples: usize,
        nodes_done: usize,
    },
    /// The shard's new node list; `retrained` names the entries (by node id) whose weights follow. `after` is the
    /// request's.
    Done {
        shard: u16,
        #[serde(default)]
        after: Option<usize>,
        nodes: Vec<NodeEntry>,
        retrained: Vec<usize>,
        seconds: f64,
    },
    Failed {
        shard: u16,
        error: String,
    },
}

/// The weights of a `Done` report: its `retrained` node ids paired with the byte arrays sent after it, exactly one
/// per node.
pub fn paired(retrained: &[usize], weights: Vec<Vec<u8>>) -> crate::Result<Vec<(usize, Vec<u8>)>> {
    if weights.len() != retrained.len() {
        return Err(Error::mismatch(format!("{} weight files for {} retrained nodes", weights.len(), retrained.len())));
    }
    Ok(retrained.iter().copied().zip(weights).collect())
}

/// Checks a finished retrain before it is served: every node of the shard must be one the guard (the deletions
/// known now) allows, a retrained node's bytes must match its entry, and the nodes must be the shard's plan.
/// `Err` names the first problem; a stale result (a deletion arrived meanwhile) is retrained again by the caller.
pub fn accept(
    guard: &Guard,
    shard: u16,
    plan: &ShardPlan,
    nodes: &[NodeEntry],
    retrained: &[usize],
    weights: &[Vec<u8>],
) -> crate::Result<()> {
    if nodes.len() != plan.nodes.len() {
        return Err(Error::mismatch(format!(
            "shard {shard}: {} nodes arrived, the plan has {}",
            nodes.len(),
            plan.nodes.len()
        )));
    }
    if retrained.len() != weights.len() {
        return Err(Error::mismatch(format!(
            "shard {shard}: {} weight files for {} retrained nodes",
            weights.len(),
            retrained.len()
        )));
    }
    for (id, entry) in nodes.iter().enumerate() {
        if entry.shard != shard || entry.id != id {
            return Err(Error::mismatch(format!(
                "shard {shard}: node {id} arrived as shard {} node {}",
                entry.shard, entry.id
            )));
        }
        let planned = &plan.nodes[id];
        if entry.prefix != planned.prefix || entry.parent != planned.parent {
            return Err(Error::mismatch(format!(
                "shard {shard}: node {id} arrived with prefix {:?}, the plan's is {:?}",
                entry.prefix, planned.prefix
            )));
        }
        guard.check_node(entry)?;
    }
    for (&id, bytes) in retrained.iter().zip(weights) {
        let entry = nodes.get(id).ok_or_else(|| Error::mismatch(format!("shard {shard}: no node {id}")))?;
        verify_bytes(&entry.weights, bytes)?;
    }
    Ok(())
}

/// The top-level node of `node`'s subtree (its first slice's node).
fn root(plan: &ShardPlan, node: &Node) -> usize {
    let mut id = node.id;
    while let Some(parent) = plan.nodes[id].parent {
        id = parent;
    }
    id
}

/// Splits a shard's retrain among up to `workers` helpers. The prefix trie's top-level subtrees are independent
/// given the frozen backbone, so each goes whole to one helper: those with work (`work(node)` of their nodes that
/// must be retrained) in decreasing order of work, each to the helper with the least so far. Returns each busy
/// helper's subtree roots (subtrees without work are reused as they are and go to none).
pub fn split(plan: &ShardPlan, work: impl Fn(&Node) -> usize, workers: usize) -> Vec<Vec<usize>> {
    let mut subtrees: Vec<(usize, usize)> = Vec::new();
    for node in &plan.nodes {
        let r = root(plan, node);
        match subtrees.iter_mut().find(|(id, _)| *id == r) {
            Some((_, w)) => *w += work(node),
            None => subtrees.push((r, work(node))),
        }
    }
    subtrees.retain(|&(_, w)| w > 0);
    // Largest first; ties by root id, so the split is the same every time.
    subtrees.sort_by_key(|&(id, w)| (std::cmp::Reverse(w), id));
    let mut helpers: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); workers.max(1).min(subtrees.len().max(1))];
    for (id, w) in subtrees {
        let least = helpers.iter_mut().min_by_key(|(load, _)| *load).expect("at least one helper");
        least.0 += w;
        least.1.push(id);
    }
    helpers
        .into_iter()
        .map(|(_, mut roots)| {
            roots.sort_unstable();
            roots
        })
        .filter(|roots| !roots.is_empty())
        .collect()
}

/// The nodes of the subtrees under `roots`.
pub fn subtrees(plan: &ShardPlan, roots: &[usize]) -> BTreeSet<usize> {
    plan.nodes.iter().filter(|n| roots.contains(&root(plan, n))).map(|n| n.id).collect()
}

/// Merges the helpers' parts of a split retrain into the shard's node list: each node from the helper that built
/// it, every other one reused as it was (`reuse`). `Err` names a node nobody has.
pub fn merge(
    shard: u16,
    plan: &ShardPlan,
    reuse: &[Option<NodeEntry>],
    parts: Vec<Vec<NodeEntry>>,
) -> crate::Result<Vec<NodeEntry>> {
    let mut nodes: Vec<Option<NodeEntry>> = plan.nodes.iter().map(|n| reuse.get(n.id).cloned().flatten()).collect();
    for entry in parts.into_iter().flatten() {
        let slot = nodes
            .get_mut(entry.id)
            .ok_or_else(|| Error::mismatch(format!("shard {shard}: a helper built node {}", entry.id)))?;
        *slot = Some(entry);
    }
    nodes
        .into_iter()
        .enumerate()
        .map(|(id, n)| {
            n.ok_or_else(|| Error::mismatch(format!("shard {shard}: node {id} was neither retrained nor reused")))
        })
        .collect()
}

/// A node's training in a retrain: its clean samples (the deleted ones left out) × the passes its run makes.
/// The worker's progress counts these, so the page's estimate and its progress bar speak of the same samples.
#[cfg(feature = "model")]
pub fn node_samples(
    manifest: &super::Manifest,
    assignment: &crate::partition::Assignment,
    guard: &Guard,
    node: &Node,
    slices: u16,
) -> usize {
    let run = manifest.train.for_slices(node.prefix.len(), usize::from(slices));
    let clean = node
        .prefix
        .iter()
        .map(|&slice| {
            let cell = crate::Cell { shard: node.shard, slice };
            assignment.members(cell).iter().filter(|id| !guard.is_deleted(id)).count()
        })
        .sum::<usize>();
    clean * run.epochs
}

/// Most helper workers a page's retrain starts, whatever the machine reports: each holds the shard's data and
/// backbone activations.
pub const MOST_HELPERS: usize = 4;

/// A training sample's cost through one trainable layer (forward and the adapters' backward), in forward passes of
/// one sample through one layer. Measured in the page's CPU worker on the MiniLM demo (2 cores): 7.1 ms a sample
/// and layer in training, 3.9 ms forward; LoRA's backward needs no gradient of the frozen weights.
pub const TRAIN_PASSES: f64 = 1.8;
/// A validation sample scored after a pass, per layer, in forward passes (the same measurement: 5.5 ms).
pub const VALIDATION_PASSES: f64 = 1.4;

/// What retraining a shard will take, before it starts: the nodes the guard does not allow reused, their training
/// samples, and the work in forward passes of one sample through one encoder layer.
#[cfg(feature = "model")]
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub nodes: usize,
    pub samples: usize,
    /// The frozen layers below the top group, once per sample of the shard and of the validation split (each helper
    /// computes them for itself, at the same time).
    pub features: f64,
    /// The training, as it runs in `helpers` workers: the subtrees under the shard's top-level nodes are independent,
    /// so the longest helper's share when each has one, else the whole spread evenly.
    pub training: f64,
}

#[cfg(feature = "model")]
impl Estimate {
    /// The work of retraining `shard` with `reuse` (the guard's [`Guard::reusable`]) among `helpers` workers.
    pub fn new(
        manifest: &super::Manifest,
        plan: &ShardPlan,
        assignment: &crate::partition::Assignment,
        guard: &Guard,
        reuse: &[Option<NodeEntry>],
        helpers: usize,
    ) -> Self {
        let config = &manifest.model;
        let slices = manifest.partition.slices;
        let depth = config.vit.depth as f64;
        let validation = manifest.data.validation as f64;
        let members: usize =
            (0..slices).map(|slice| assignment.members(crate::Cell { shard: plan.shard, slice }).len()).sum();
        let features = (members as f64 + validation) * config.first_block_of_group(1) as f64;
        let (mut nodes, mut samples) = (0, 0);
        let mut by_root = std::collections::BTreeMap::<u16, f64>::new();
        for node in plan.nodes.iter().filter(|n| reuse.get(n.id).is_none_or(Option::is_none)) {
            let trained = node_samples(manifest, assignment, guard, node, slices);
            let run = manifest.train.for_slices(node.prefix.len(), usize::from(slices));
            let layers = depth - config.first_block_of_group(node.prefix.len()) as f64;
            let work = layers * (TRAIN_PASSES * trained as f64 + VALIDATION_PASSES * validation * run.epochs as f64);
            *by_root.entry(node.prefix.first().copied().unwrap_or(0)).or_default() += work;
            nodes += 1;
            samples += trained;
        }
        let total: f64 = by_root.values().sum();
        let longest = by_root.values().copied().fold(0.0, f64::max);
        let training = if helpers >= by_root.len() { longest } else { total / helpers.max(1) as f64 };
        Self { nodes, samples, features, training }
    }

    /// Seconds at `layer_ms` per sample per encoder layer (forward, in the worker).
    pub fn seconds(&self, layer_ms: f64) -> f64 {
        (self.features + self.training) * layer_ms / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::WeightFile;
    use crate::plan::Plan;
    use crate::sequence::Strategy;

    fn shard() -> ShardPlan {
        Plan::new(1, 4, 4, &Strategy::Cyclic).expect("plan").shards.remove(0)
    }

    fn entry(node: &Node, generation: u32) -> NodeEntry {
        NodeEntry {
            shard: 0,
            id: node.id,
            prefix: node.prefix.clone(),
            parent: node.parent,
            seed: 0,
            lineage: Vec::new(),
            samples: 0,
            validation_accuracy: 0.0,
            generation,
            weights: WeightFile { path: format!("node-{}", node.id), sha256: String::new(), bytes: 0 },
        }
    }

    #[test]
    fn a_split_gives_each_subtree_to_one_helper_and_balances_the_work() {
        let plan = shard();
        let halves = split(&plan, |n| n.prefix.len(), 2);
        assert_eq!(halves.len(), 2);
        let (a, b) = (subtrees(&plan, &halves[0]), subtrees(&plan, &halves[1]));
        assert!(a.is_disjoint(&b));
        assert_eq!(a.len() + b.len(), plan.nodes.len());
        // Every node's parent is built by the same helper.
        for part in [&a, &b] {
            for &id in part {
                assert!(plan.nodes[id].parent.is_none_or(|p| part.contains(&p)));
            }
        }
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn subtrees_without_work_go_to_no_helper() {
        let plan = shard();
        let root = plan.chains[2][0];
        let only = subtrees(&plan, &[root]);
        let parts = split(&plan, |n| usize::from(only.contains(&n.id)), 4);
        assert_eq!(parts, vec![vec![root]]);
        assert!(split(&plan, |_| 0, 2).is_empty());
    }

    #[test]
    fn a_merge_takes_the_helpers_nodes_and_the_reused_ones_and_names_a_missing_node() {
        let plan = shard();
        let root = plan.chains[1][0];
        let built = subtrees(&plan, &[root]);
        let reuse: Vec<Option<NodeEntry>> =
            plan.nodes.iter().map(|n| (!built.contains(&n.id)).then(|| entry(n, 0))).collect();
        let part: Vec<NodeEntry> = built.iter().map(|&id| entry(&plan.nodes[id], 1)).collect();
        let merged = merge(0, &plan, &reuse, vec![part]).expect("merge");
        assert!(merged.iter().enumerate().all(|(id, e)| e.id == id && (e.generation == 1) == built.contains(&id)));
        let error = merge(0, &plan, &reuse, Vec::new()).expect_err("a subtree is missing");
        assert!(matches!(error, Error::Mismatch { .. }), "{error}");
        assert!(error.to_string().contains(&format!("node {root} was neither")), "{error}");
    }
}
