//! Audit (exactness rule E8): recompute the lineage digests of every served component against the deletions and
//! report each component that saw a deleted sample.

use std::collections::HashSet;

use serde::Serialize;

use super::manifest::{Manifest, lineage};
use crate::partition::{Assignment, SampleId};
use crate::plan::Plan;
use crate::route::State;

/// What the audit checked and what it found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditReport {
    pub served_components: usize,
    pub nodes_checked: usize,
    pub deleted: usize,
    pub violations: Vec<String>,
}

impl AuditReport {
    pub fn holds(&self) -> bool {
        self.violations.is_empty()
    }
}

/// For every shard's served component (from `state`), every node of its chain must record, for each slice of its
/// prefix, the digest of that slice's ids minus every deleted id. A node that saw a deleted id records a digest that
/// includes it, so it cannot match.
pub fn audit(
    manifest: &Manifest,
    plan: &Plan,
    assignment: &Assignment,
    state: &State,
    deleted: &HashSet<SampleId>,
) -> AuditReport {
    let mut report =
        AuditReport { served_components: 0, nodes_checked: 0, deleted: deleted.len(), violations: Vec::new() };
    let is_deleted = |id: &SampleId| deleted.contains(id);
    for shard in 0..state.shards() {
        let Some(served) = state.served(shard) else { continue };
        report.served_components += 1;
        let s = usize::from(shard);
        for &node in &plan.shards[s].chains[served.sequence][..usize::from(served.prefix)] {
            let entry = &manifest.nodes[s][node];
            report.nodes_checked += 1;
            let recorded: Vec<u16> = entry.lineage.iter().map(|l| l.slice).collect();
            if recorded != entry.prefix {
                report.violations.push(format!(
                    "shard {shard} node {node}: lineage lists slices {recorded:?} but the node trained on prefix {:?}",
                    entry.prefix
                ));
                continue;
            }
            let expected = lineage(assignment, shard, &entry.prefix, &is_deleted);
            for (have, want) in entry.lineage.iter().zip(&expected) {
                if have.sha256 != want.sha256 {
                    report.violations.push(format!(
                        "shard {shard} node {node} (served, sequence {} prefix {}): slice {} was trained on {} samples \
                         with digest {} but without the deleted samples it holds {} with digest {}",
                        served.sequence,
                        served.prefix,
                        have.slice,
                        have.samples,
                        have.sha256,
                        want.samples,
                        want.sha256
                    ));
                }
            }
        }
    }
    report
}
