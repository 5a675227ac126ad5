//! The serving guard: the forgetting invariant enforced where bytes become a served model.
//!
//! The route reducer decides which prefix a shard serves; the guard checks, before anything is served, loaded,
//! resumed or exported, that each component's *recorded lineage* (the digest of every slice it saw, rule E8) is the
//! lineage of those slices without the deleted samples. A node that saw a deleted sample records a digest that
//! includes it, so it cannot pass, whatever the routing state claims (a resumed build, a hand-edited ledger, a
//! file restored from a backup).

use std::collections::HashSet;
use std::fmt;

use super::entry::{NodeEntry, SisaEntry, SliceLineage, lineage};
#[cfg(feature = "model")]
use super::manifest::Manifest;
#[cfg(feature = "model")]
use crate::Error;
use crate::partition::{Assignment, SampleId};
#[cfg(feature = "model")]
use crate::plan::Plan;
#[cfg(feature = "model")]
use crate::route::State;

/// A component the bundle names, as the guard reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// S3T node `id` of a shard.
    Node { shard: u16, id: usize },
    /// SISA checkpoint `k` (1-based) of a shard.
    Sisa { shard: u16, checkpoint: u16 },
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Node { shard, id } => write!(f, "shard {shard} node {id}"),
            Component::Sisa { shard, checkpoint } => write!(f, "shard {shard} SISA checkpoint {checkpoint}"),
        }
    }
}

/// Why a component may not be served: the first slice of its lineage that meets the deletions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    pub component: Component,
    pub slice: u16,
    pub recorded_samples: usize,
    pub clean_samples: usize,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: slice {} was trained on {} samples, but without the deleted samples it holds {} (its lineage meets \
             the ledger)",
            self.component, self.slice, self.recorded_samples, self.clean_samples
        )
    }
}

/// The clean lineage of every (shard, slice) for a set of deletions: what a component may have seen.
#[derive(Clone, Debug)]
pub struct Guard {
    /// `clean[shard][slice]`
    clean: Vec<Vec<SliceLineage>>,
    deleted: HashSet<SampleId>,
}

impl Guard {
    /// The guard for `deleted` over a bundle's partition.
    pub fn new(assignment: &Assignment, deleted: impl IntoIterator<Item = SampleId>) -> Self {
        let deleted: HashSet<SampleId> = deleted.into_iter().collect();
        let is_deleted = |id: &SampleId| deleted.contains(id);
        let slices: Vec<u16> = (0..assignment.slices()).collect();
        let clean = (0..assignment.shards()).map(|shard| lineage(assignment, shard, &slices, &is_deleted)).collect();
        Self { clean, deleted }
    }

    pub fn deleted(&self) -> &HashSet<SampleId> {
        &self.deleted
    }

    pub fn is_deleted(&self, id: &SampleId) -> bool {
        self.deleted.contains(id)
    }

    /// `Ok` when every slice a component saw is its slice without the deleted samples.
    pub fn check(&self, component: Component, shard: u16, recorded: &[SliceLineage]) -> Result<(), Stale> {
        for have in recorded {
            let want = self.clean.get(usize::from(shard)).and_then(|s| s.get(usize::from(have.slice)));
            match want {
                Some(want) if want.sha256 == have.sha256 => {}
                Some(want) => {
                    return Err(Stale {
                        component,
                        slice: have.slice,
                        recorded_samples: have.samples,
                        clean_samples: want.samples,
                    });
                }
                // A slice the partition does not have: nothing vouches for what it saw.
                None => {
                    return Err(Stale {
                        component,
                        slice: have.slice,
                        recorded_samples: have.samples,
                        clean_samples: 0,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn check_node(&self, entry: &NodeEntry) -> Result<(), Stale> {
        let recorded: Vec<u16> = entry.lineage.iter().map(|l| l.slice).collect();
        let component = Component::Node { shard: entry.shard, id: entry.id };
        if recorded != entry.prefix {
            // A lineage that does not cover the prefix proves nothing about the slices it leaves out.
            let slice = entry.prefix.iter().copied().find(|s| !recorded.contains(s)).unwrap_or(0);
            return Err(Stale { component, slice, recorded_samples: 0, clean_samples: 0 });
        }
        self.check(component, entry.shard, &entry.lineage)
    }

    pub fn check_sisa(&self, entry: &SisaEntry) -> Result<(), Stale> {
        let component = Component::Sisa { shard: entry.shard, checkpoint: entry.checkpoint };
        let expected: Vec<u16> = (0..entry.checkpoint).collect();
        let recorded: Vec<u16> = entry.lineage.iter().map(|l| l.slice).collect();
        if recorded != expected {
            let slice = expected.iter().copied().find(|s| !recorded.contains(s)).unwrap_or(0);
            return Err(Stale { component, slice, recorded_samples: 0, clean_samples: 0 });
        }
        self.check(component, entry.shard, &entry.lineage)
    }

    /// The entries of a shard that a retrain (or a resumed build) may reuse: exactly those the guard allows; the
    /// others (`None`) are trained again without the deleted samples.
    pub fn reusable(&self, entries: &[NodeEntry]) -> Vec<Option<NodeEntry>> {
        entries.iter().map(|e| self.check_node(e).is_ok().then(|| e.clone())).collect()
    }

    /// Whether a component of the manifest may be loaded and served.
    #[cfg(feature = "model")]
    pub fn servable(&self, manifest: &Manifest, component: Component) -> bool {
        match component {
            Component::Node { shard, id } => manifest
                .nodes
                .get(usize::from(shard))
                .and_then(|n| n.get(id))
                .is_some_and(|e| self.check_node(e).is_ok()),
            Component::Sisa { shard, checkpoint } => manifest
                .sisa
                .get(usize::from(shard))
                .and_then(|s| s.get(usize::from(checkpoint).wrapping_sub(1)))
                .is_some_and(|e| self.check_sisa(e).is_ok()),
        }
    }

    /// Every component of the manifest whose lineage meets the deletions (its weights must not be kept).
    #[cfg(feature = "model")]
    pub fn stale(&self, manifest: &Manifest) -> Vec<Stale> {
        let nodes = manifest.nodes.iter().flatten().filter_map(|e| self.check_node(e).err());
        let sisa = manifest.sisa.iter().flatten().filter_map(|e| self.check_sisa(e).err());
        nodes.chain(sisa).collect()
    }

    /// Checks each shard's served S3T component (every node of its chain) and, when given, each shard's served
    /// SISA checkpoint. The error names the shard, node and slice, and says what to do.
    #[cfg(feature = "model")]
    pub fn check_served(
        &self,
        manifest: &Manifest,
        plan: &Plan,
        state: &State,
        sisa_state: Option<&State>,
    ) -> crate::Result<()> {
        for shard in 0..state.shards() {
            let Some(served) = state.served(shard) else { continue };
            let s = usize::from(shard);
            let chain = plan
                .shards
                .get(s)
                .and_then(|p| p.chains.get(served.sequence))
                .and_then(|c| c.get(..usize::from(served.prefix)))
                .ok_or_else(|| {
                    Error::mismatch(format!(
                        "shard {shard}: the plan has no sequence {} prefix {}",
                        served.sequence, served.prefix
                    ))
                })?;
            for &node in chain {
                let entry = manifest.nodes.get(s).and_then(|n| n.get(node)).ok_or_else(|| {
                    Error::mismatch(format!("shard {shard} node {node}: the manifest does not list it"))
                })?;
                self.check_node(entry).map_err(|stale| Error::Stale { stale, served: Some(served) })?;
            }
        }
        if let Some(sisa_state) = sisa_state.filter(|_| !manifest.sisa.is_empty()) {
            for shard in 0..sisa_state.shards() {
                let Some(served) = sisa_state.served(shard) else { continue };
                for k in 1..=served.prefix {
                    let entry = manifest
                        .sisa
                        .get(usize::from(shard))
                        .and_then(|s| s.get(usize::from(k) - 1))
                        .ok_or_else(|| {
                            Error::mismatch(format!("shard {shard} SISA checkpoint {k}: the manifest does not list it"))
                        })?;
                    if k == served.prefix {
                        self.check_sisa(entry).map_err(|stale| Error::Stale { stale, served: Some(served) })?;
                    }
                }
            }
        }
        Ok(())
    }
}
