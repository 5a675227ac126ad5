//! The page's background retraining: what the main thread asks its worker and what the worker answers (JSON over
//! `postMessage`), and the check the main thread makes before it serves what arrives.
//!
//! The worker retrains one shard exactly as `trainer retrain` does (the same build code, the nodes the guard does
//! not allow retrained, the others reused). What it sends back is untrusted until [`accept`] has checked it against
//! the deletions known when it arrives: a sample deleted while the worker ran may lie in a slice the new nodes saw.

use serde::{Deserialize, Serialize};

use super::guard::Guard;
use super::manifest::{NodeEntry, verify_bytes};
use crate::partition::SampleId;
use crate::plan::ShardPlan;

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
) -> Result<(), String> {
    if nodes.len() != plan.nodes.len() {
        return Err(format!("shard {shard}: {} nodes arrived, the plan has {}", nodes.len(), plan.nodes.len()));
    }
    if retrained.len() != weights.len() {
        return Err(format!("shard {shard}: {} weight files for {} retrained nodes", weights.len(), retrained.len()));
    }
    for (id, entry) in nodes.iter().enumerate() {
        if entry.shard != shard || entry.id != id {
            return Err(format!("shard {shard}: node {id} arrived as shard {} node {}", entry.shard, entry.id));
        }
        let planned = &plan.nodes[id];
        if entry.prefix != planned.prefix || entry.parent != planned.parent {
            return Err(format!(
                "shard {shard}: node {id} arrived with prefix {:?}, the plan's is {:?}",
                entry.prefix, planned.prefix
            ));
        }
        guard.check_node(entry).map_err(|e| e.to_string())?;
    }
    for (&id, bytes) in retrained.iter().zip(weights) {
        let entry = nodes.get(id).ok_or_else(|| format!("shard {shard}: no node {id}"))?;
        verify_bytes(&entry.weights, bytes)?;
    }
    Ok(())
}
