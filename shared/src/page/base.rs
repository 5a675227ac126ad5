//! The bundle's own deletions: its ledger, replayed into the page's base state. The visitor's deletions go on top
//! of it; Reset and links return to it, never before it, because what the ledger forgot is gone from the bundle
//! (its data purged, the weights that saw it unservable).

use std::collections::HashSet;

use super::session::Retrain;
use crate::bundle::guard::Guard;
use crate::ledger::Recovery;
use crate::{Action, Error, Ledger, Router, SampleId, State};

/// The routing states after the bundle's ledger.
pub struct Base {
    /// The ledger's actions (deletions and retrains) in order.
    pub actions: Vec<Action>,
    /// S3T after every action.
    pub state: State,
    /// SISA without retraining after the ledger's deletions: retrains rebuild S3T nodes, not the baseline's
    /// checkpoints (as `trainer eval` replays it).
    pub sisa: State,
    /// The ids the ledger deleted.
    pub deleted: HashSet<SampleId>,
    /// Said to the visitor when the ledger needed a repair (its torn tail was left out, as the trainer does).
    pub note: Option<String>,
}

impl Base {
    /// The base of a bundle without a ledger: nothing deleted.
    pub fn empty(s3t: &Router, sisa: &Router) -> Self {
        Self { actions: Vec::new(), state: s3t.initial(), sisa: sisa.initial(), deleted: HashSet::new(), note: None }
    }

    /// Verifies ledger bytes and replays them; `name` names the ledger in errors.
    pub fn from_ledger(name: &str, bytes: &[u8], s3t: &Router, sisa: &Router) -> crate::Result<Self> {
        let (actions, recovery) = Ledger::parse(name, bytes)?;
        let note = match recovery {
            Recovery::Clean | Recovery::Created => None,
            repaired => Some(format!("the bundle's deletion ledger {name}: {repaired}")),
        };
        // A ledger that does not fit the bundle's partition or plan.
        let state = s3t.replay(&actions).map_err(|e| Error::mismatch(format!("{name}: {e}")))?;
        let sisa = sisa.replay(deletions(&actions)).map_err(|e| Error::mismatch(format!("{name}: {e}")))?;
        let deleted = state.deleted().cloned().collect();
        Ok(Self { actions, state, sisa, deleted, note })
    }

    /// The S3T and SISA states after the base and then the visitor's `ids` (each a deletion), with the page's
    /// `retrains` in their places. Each retrain's nodes must have been trained without every sample deleted at
    /// that point (the guard), or the state is refused.
    pub fn with(
        &self,
        s3t: &Router,
        sisa: &Router,
        ids: &[SampleId],
        retrains: &[Retrain],
    ) -> crate::Result<(State, State)> {
        let mut state = self.state.clone();
        let mut pending = retrains.iter().peekable();
        for n in 0..=ids.len() {
            while let Some(r) = pending.next_if(|r| r.after == n) {
                let guard = Guard::new(s3t.assignment(), state.deleted().cloned());
                if let Some(stale) = r.nodes.iter().find_map(|e| guard.check_node(e).err()) {
                    return Err(Error::mismatch(format!(
                        "the retrain of shard {} after {n} deletions: {stale}",
                        r.shard
                    )));
                }
                s3t.apply_in_place(&mut state, &Action::Retrained { shard: r.shard })?;
            }
            if let Some(id) = ids.get(n) {
                s3t.apply_in_place(&mut state, &Action::Delete(id.clone()))?;
            }
        }
        if let Some(r) = pending.next() {
            return Err(Error::mismatch(format!("a retrain after {} deletions, but there are {}", r.after, ids.len())));
        }
        let visitor: Vec<Action> = ids.iter().cloned().map(Action::Delete).collect();
        let sisa = sisa.replay(deletions(&self.actions).chain(&visitor))?;
        Ok((state, sisa))
    }

    /// The deleted ids as indices of the deletable split (the page's ids are those indices).
    pub fn deleted_indices(&self) -> HashSet<usize> {
        self.deleted
            .iter()
            .filter_map(|id| match id {
                SampleId::Int(v) => usize::try_from(*v).ok(),
                SampleId::Str(_) => None,
            })
            .collect()
    }
}

fn deletions(actions: &[Action]) -> impl Iterator<Item = &Action> {
    actions.iter().filter(|a| matches!(a, Action::Delete(_)))
}
