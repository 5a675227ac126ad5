//! Plan: the per-shard prefix trie of training nodes.
//!
//! Node (shard, prefix) trains layer group |prefix| on the union of the prefix's slices, starting from its parent
//! (shard, prefix minus its last slice). A node depends only on its prefix, so sequences sharing a prefix share the
//! node and each distinct prefix is trained once: with the full budget and L = 4 that is 4 + 12 + 24 + 24 = 64 nodes
//! instead of 4! · 4 = 96 naive training steps.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sequence::{Sequence, SequenceError, Strategy};

/// Index of a node within its shard's plan (also its position in the training order).
pub type NodeId = usize;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the number of shards m must be at least 1")]
    ZeroShards,
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error("shard {shard} sequence {sequence} has {found} slices, expected {expected}")]
    WrongLength { shard: usize, sequence: usize, expected: usize, found: usize },
    #[error("shard {shard} lists sequence {sequence} twice")]
    DuplicateSequence { shard: usize, sequence: usize },
    #[error("shard {shard} has no sequences")]
    NoSequences { shard: usize },
}

/// One training step: layer group `prefix.len()` of `shard`, trained on the slices of `prefix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub shard: u16,
    /// The lineage: the slices this node (and, through its parent, the groups above it) saw, in order.
    pub prefix: Vec<u16>,
    pub parent: Option<NodeId>,
}

impl Node {
    /// The layer group this node trains (1 = top).
    pub fn group(&self) -> usize {
        self.prefix.len()
    }
}

/// One shard's sequences and the nodes they need, in training order (parents first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    pub shard: u16,
    pub sequences: Vec<Sequence>,
    pub nodes: Vec<Node>,
    /// `chains[b][k-1]` = the node serving group k of sequence b.
    pub chains: Vec<Vec<NodeId>>,
}

impl ShardPlan {
    pub fn new(shard: u16, slices: u16, sequences: Vec<Sequence>) -> Result<Self, PlanError> {
        let l = usize::from(slices);
        let s = usize::from(shard);
        if sequences.is_empty() {
            return Err(PlanError::NoSequences { shard: s });
        }
        for (b, seq) in sequences.iter().enumerate() {
            if seq.len() != l {
                return Err(PlanError::WrongLength { shard: s, sequence: b, expected: l, found: seq.len() });
            }
            if sequences[..b].contains(seq) {
                return Err(PlanError::DuplicateSequence { shard: s, sequence: b });
            }
        }
        // Breadth-first by depth: every parent has a smaller id than its children.
        let mut nodes: Vec<Node> = Vec::new();
        let mut index: HashMap<&[u16], NodeId> = HashMap::new();
        for depth in 1..=l {
            for seq in &sequences {
                let prefix = seq.prefix(depth);
                if index.contains_key(prefix) {
                    continue;
                }
                let parent = (depth > 1).then(|| index[seq.prefix(depth - 1)]);
                let id = nodes.len();
                nodes.push(Node { id, shard, prefix: prefix.to_vec(), parent });
                index.insert(prefix, id);
            }
        }
        let chains = sequences.iter().map(|seq| (1..=l).map(|k| index[seq.prefix(k)]).collect()).collect();
        Ok(Self { shard, sequences, nodes, chains })
    }

    /// The node serving groups 1..k of sequence b (k ≥ 1).
    pub fn node_for(&self, sequence: usize, k: usize) -> &Node {
        &self.nodes[self.chains[sequence][k - 1]]
    }
}

/// The whole training plan: m shard plans over L slices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub slices: u16,
    pub shards: Vec<ShardPlan>,
}

impl Plan {
    /// Builds the plan of `shards` shards, each training `budget` sequences chosen by `strategy`.
    pub fn new(shards: u16, slices: u16, budget: usize, strategy: &Strategy) -> Result<Self, PlanError> {
        if shards == 0 {
            return Err(PlanError::ZeroShards);
        }
        let plans = (0..shards)
            .map(|shard| ShardPlan::new(shard, slices, strategy.sequences(slices, budget, shard)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { slices, shards: plans })
    }

    /// Builds a plan from explicit per-shard sequence lists (e.g. read back from a bundle).
    pub fn from_sequences(slices: u16, sequences: Vec<Vec<Sequence>>) -> Result<Self, PlanError> {
        if sequences.is_empty() {
            return Err(PlanError::ZeroShards);
        }
        let plans = sequences
            .into_iter()
            .enumerate()
            .map(|(shard, seqs)| ShardPlan::new(shard as u16, slices, seqs))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { slices, shards: plans })
    }

    pub fn total_nodes(&self) -> usize {
        self.shards.iter().map(|s| s.nodes.len()).sum()
    }

    /// The per-shard sequence lists.
    pub fn sequences(&self) -> Vec<Vec<Sequence>> {
        self.shards.iter().map(|s| s.sequences.clone()).collect()
    }
}

/// The seed of a node: SHA-256 over a domain tag, the base seed, the shard and the prefix. It depends on nothing
/// else, so retraining a node after a deletion reproduces what training without the deleted samples would have
/// produced (exactness rule E6), and a node trained on another machine is the same node.
pub fn node_seed(seed: u64, shard: u16, prefix: &[u16]) -> u64 {
    seed_from_parts(b"s3t-node", seed, shard, prefix)
}

/// The seed of SISA checkpoint `checkpoint` (1-based) of a shard, separate from every S3T node seed.
pub fn sisa_seed(seed: u64, shard: u16, checkpoint: u16) -> u64 {
    seed_from_parts(b"s3t-sisa", seed, shard, &[checkpoint])
}

fn seed_from_parts(domain: &[u8], seed: u64, shard: u16, parts: &[u16]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(domain);
    hasher.update(seed.to_le_bytes());
    hasher.update(shard.to_le_bytes());
    hasher.update((parts.len() as u32).to_le_bytes());
    for p in parts {
        hasher.update(p.to_le_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::{cyclic, full};

    #[test]
    fn full_budget_l4_has_64_nodes() {
        let plan = ShardPlan::new(0, 4, full(4).unwrap()).unwrap();
        assert_eq!(plan.nodes.len(), 64);
        let per_depth: Vec<usize> = (1..=4).map(|d| plan.nodes.iter().filter(|n| n.group() == d).count()).collect();
        assert_eq!(per_depth, vec![4, 12, 24, 24]);
    }

    #[test]
    fn parents_come_first_and_lineages_are_prefixes() {
        for (l, b) in [(4u16, 24usize), (5, 7), (6, 3), (3, 1)] {
            let plan = ShardPlan::new(2, l, cyclic(l, b).unwrap()).unwrap();
            for node in &plan.nodes {
                assert_eq!(node.shard, 2);
                match node.parent {
                    None => assert_eq!(node.group(), 1),
                    Some(p) => {
                        assert!(p < node.id, "parent {p} trained after child {}", node.id);
                        let parent = &plan.nodes[p];
                        assert_eq!(parent.prefix[..], node.prefix[..node.prefix.len() - 1]);
                    }
                }
            }
            for (b, seq) in plan.sequences.iter().enumerate() {
                for k in 1..=usize::from(l) {
                    assert_eq!(plan.node_for(b, k).prefix, seq.prefix(k));
                }
            }
            // Distinct prefixes only.
            let mut prefixes: Vec<&Vec<u16>> = plan.nodes.iter().map(|n| &n.prefix).collect();
            prefixes.sort();
            prefixes.dedup();
            assert_eq!(prefixes.len(), plan.nodes.len());
        }
    }

    #[test]
    fn cyclic_b_le_l_shares_nothing() {
        // Rotations start with distinct slices, so no prefix is shared: B·L nodes.
        let plan = Plan::new(3, 5, 5, &Strategy::Cyclic).unwrap();
        assert_eq!(plan.total_nodes(), 3 * 25);
    }

    #[test]
    fn node_seeds_depend_on_shard_and_prefix_only() {
        assert_eq!(node_seed(1, 2, &[0, 3]), node_seed(1, 2, &[0, 3]));
        assert_ne!(node_seed(1, 2, &[0, 3]), node_seed(1, 2, &[3, 0]));
        assert_ne!(node_seed(1, 2, &[0, 3]), node_seed(1, 3, &[0, 3]));
        assert_ne!(node_seed(1, 2, &[0]), sisa_seed(1, 2, 0));
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert_eq!(Plan::new(0, 3, 1, &Strategy::Cyclic), Err(PlanError::ZeroShards));
        assert!(matches!(Plan::new(1, 3, 0, &Strategy::Cyclic), Err(PlanError::Sequence(SequenceError::ZeroBudget))));
        let seq = Sequence::identity(3);
        assert_eq!(
            Plan::from_sequences(3, vec![vec![seq.clone(), seq]]),
            Err(PlanError::DuplicateSequence { shard: 0, sequence: 1 })
        );
    }
}
