//! Route: the pure deletion and serving state machine.
//!
//! A [`Router`] holds what is fixed when a model is trained (which cell each sample lives in and each shard's
//! sequences); a [`State`] holds what deletions change. [`Router::apply`] maps a state and an [`Action`] to a new
//! state and the [`Event`]s that explain the change. The same reducer runs in the trainer, the tests and the
//! browser, and the serving state is a pure function of the trained plan and the ledger's action stream.
//!
//! Deleting a sample of slice j in shard s sets, for every sequence σ of shard s,
//! `active_len(σ) = min(active_len(σ), position of j in σ)`: the groups trained on j and after are deactivated.
//! Shard s serves the sequence with the longest active prefix; with no active prefix left the shard is offline and
//! must be retrained, and it is never served. Ties between equally long prefixes go to the better prefix node when
//! the router was given a score per node ([`Router::with_tie_break`], a bundle uses the nodes' validation accuracy),
//! then to the lowest sequence index. Every candidate is exact, so the tie-break only chooses among clean models.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::partition::{Assignment, Cell, SampleId};
use crate::plan::Plan;

/// What can happen to the serving state; the ledger journals exactly these.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forget a sample.
    Delete(SampleId),
    /// The shard's dirty nodes were rebuilt without the deleted samples: every sequence is whole again.
    Retrained { shard: u16 },
}

/// The component a shard serves: sequence `sequence` with groups `1..=prefix` active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub sequence: usize,
    pub prefix: u16,
}

/// An explanation of one change, for logs and the user interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The sample was forgotten; it lived in `cell`.
    Deleted { id: SampleId, cell: Cell },
    /// The sample had already been deleted: nothing changed.
    AlreadyDeleted { id: SampleId },
    /// Groups `from+1..=to` (1-based) of a sequence were deactivated; `from` groups remain active.
    Deactivated { shard: u16, sequence: usize, from: u16, to: u16 },
    /// The component a shard serves changed (`None` = offline).
    ServedChanged { shard: u16, before: Option<Served>, after: Option<Served> },
    /// The shard has no active prefix left: it is excluded from the ensemble and needs retraining.
    ShardOffline { shard: u16 },
    /// Every shard is offline: nothing can be served until one is retrained.
    AllOffline,
    /// The shard was retrained and serves full sequences again.
    Retrained { shard: u16 },
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    #[error("sample id {0} is not in the deletable training data")]
    UnknownId(SampleId),
    #[error("shard {shard} does not exist (there are {shards} shards)")]
    UnknownShard { shard: u16, shards: u16 },
    #[error("the plan has {plan} shards and {plan_slices} slices but the partition has {shards} and {slices}")]
    Mismatch { plan: usize, plan_slices: u16, shards: u16, slices: u16 },
}

/// The fixed part of routing: sample cells and each shard's sequences.
#[derive(Clone, Debug)]
pub struct Router {
    assignment: Assignment,
    slices: u16,
    /// `positions[shard][sequence][slice]` = position of the slice in that sequence.
    positions: Vec<Vec<Vec<u16>>>,
    /// `preference[shard][k-1]` = the shard's sequences, best prefix-k node first; empty = lowest index first.
    preference: Arc<Preference>,
}

/// Per shard and prefix length, the sequences in order of preference (see [`Router::with_tie_break`]).
type Preference = Vec<Vec<Vec<usize>>>;

/// The mutable part of routing: active prefix lengths, dirty slices and deleted ids.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct State {
    /// `active[shard][sequence]` = number of leading groups still active.
    active: Vec<Vec<u16>>,
    /// `dirty[shard][slice]`: the slice lost samples since the shard was last trained.
    dirty: Vec<Vec<bool>>,
    deleted: HashSet<SampleId>,
    /// Number of retrains per shard.
    retrains: Vec<u32>,
    /// The router's tie-break order (shared, never changed by actions).
    preference: Arc<Preference>,
}

impl Router {
    pub fn new(assignment: Assignment, plan: &Plan) -> Result<Self, RouteError> {
        if plan.shards.len() != usize::from(assignment.shards()) || plan.slices != assignment.slices() {
            return Err(RouteError::Mismatch {
                plan: plan.shards.len(),
                plan_slices: plan.slices,
                shards: assignment.shards(),
                slices: assignment.slices(),
            });
        }
        let positions = plan.shards.iter().map(|s| s.sequences.iter().map(|q| q.positions()).collect()).collect();
        Ok(Self { assignment, slices: plan.slices, positions, preference: Arc::default() })
    }

    /// Breaks ties between equally long active prefixes by `score(shard, sequence, k)` of the sequence's prefix-k
    /// node (higher first; equal scores keep the lower sequence index). The score must come from data no deletion
    /// can touch, such as the validation split, so that serving stays a pure function of the plan and the ledger.
    pub fn with_tie_break(mut self, score: impl Fn(u16, usize, u16) -> f64) -> Self {
        let preference = self
            .positions
            .iter()
            .enumerate()
            .map(|(shard, seqs)| {
                (1..=self.slices)
                    .map(|k| {
                        let scores: Vec<f64> = (0..seqs.len()).map(|b| score(shard as u16, b, k)).collect();
                        let mut order: Vec<usize> = (0..seqs.len()).collect();
                        // A stable sort keeps the lower index first among equal scores.
                        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
                        order
                    })
                    .collect()
            })
            .collect();
        self.preference = Arc::new(preference);
        self
    }

    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    pub fn shards(&self) -> u16 {
        self.assignment.shards()
    }

    pub fn slices(&self) -> u16 {
        self.slices
    }

    /// The state of a freshly trained model: every sequence whole, nothing deleted.
    pub fn initial(&self) -> State {
        State {
            active: self.positions.iter().map(|seqs| vec![self.slices; seqs.len()]).collect(),
            dirty: vec![vec![false; usize::from(self.slices)]; self.positions.len()],
            deleted: HashSet::new(),
            retrains: vec![0; self.positions.len()],
            preference: self.preference.clone(),
        }
    }

    /// Pure reducer: the new state and the events, or an error with `state` untouched.
    pub fn apply(&self, state: &State, action: &Action) -> Result<(State, Vec<Event>), RouteError> {
        let mut next = state.clone();
        let events = self.apply_in_place(&mut next, action)?;
        Ok((next, events))
    }

    /// The same transition applied in place (no copy of the deleted set). Validates before it mutates, so an error
    /// leaves `state` unchanged.
    pub fn apply_in_place(&self, state: &mut State, action: &Action) -> Result<Vec<Event>, RouteError> {
        match action {
            Action::Delete(id) => self.delete(state, id),
            Action::Retrained { shard } => self.retrained(state, *shard),
        }
    }

    /// Rebuilds the state from a ledger's action stream.
    pub fn replay<'a>(&self, actions: impl IntoIterator<Item = &'a Action>) -> Result<State, RouteError> {
        let mut state = self.initial();
        for action in actions {
            self.apply_in_place(&mut state, action)?;
        }
        Ok(state)
    }

    fn delete(&self, state: &mut State, id: &SampleId) -> Result<Vec<Event>, RouteError> {
        let cell = self.assignment.cell(id).ok_or_else(|| RouteError::UnknownId(id.clone()))?;
        if state.deleted.contains(id) {
            return Ok(vec![Event::AlreadyDeleted { id: id.clone() }]);
        }
        let shard = usize::from(cell.shard);
        let before = state.served(cell.shard);
        let mut events = vec![Event::Deleted { id: id.clone(), cell }];
        for (sequence, (active, positions)) in state.active[shard].iter_mut().zip(&self.positions[shard]).enumerate() {
            let cut = positions[usize::from(cell.slice)];
            if cut < *active {
                events.push(Event::Deactivated { shard: cell.shard, sequence, from: cut, to: *active });
                *active = cut;
            }
        }
        state.dirty[shard][usize::from(cell.slice)] = true;
        state.deleted.insert(id.clone());
        let after = state.served(cell.shard);
        if before != after {
            events.push(Event::ServedChanged { shard: cell.shard, before, after });
            if after.is_none() {
                events.push(Event::ShardOffline { shard: cell.shard });
                if state.live_shards() == 0 {
                    events.push(Event::AllOffline);
                }
            }
        }
        Ok(events)
    }

    fn retrained(&self, state: &mut State, shard: u16) -> Result<Vec<Event>, RouteError> {
        if shard >= self.shards() {
            return Err(RouteError::UnknownShard { shard, shards: self.shards() });
        }
        let s = usize::from(shard);
        let before = state.served(shard);
        state.active[s].fill(self.slices);
        state.dirty[s].fill(false);
        state.retrains[s] += 1;
        let after = state.served(shard);
        let mut events = vec![Event::Retrained { shard }];
        if before != after {
            events.push(Event::ServedChanged { shard, before, after });
        }
        Ok(events)
    }
}

impl State {
    /// Active prefix length of every sequence of a shard.
    pub fn active(&self, shard: u16) -> &[u16] {
        &self.active[usize::from(shard)]
    }

    /// The served component of a shard: the longest active prefix, ties broken by the router's preference (else the
    /// lowest sequence index); `None` when the shard is offline.
    pub fn served(&self, shard: u16) -> Option<Served> {
        let active = &self.active[usize::from(shard)];
        let prefix = active.iter().copied().max().filter(|&p| p > 0)?;
        let sequence = match self.preference.get(usize::from(shard)) {
            Some(order) => order[usize::from(prefix) - 1].iter().copied().find(|&b| active[b] == prefix),
            None => active.iter().position(|&p| p == prefix),
        }?;
        Some(Served { sequence, prefix })
    }

    pub fn is_offline(&self, shard: u16) -> bool {
        self.served(shard).is_none()
    }

    pub fn shards(&self) -> u16 {
        self.active.len() as u16
    }

    pub fn live_shards(&self) -> usize {
        (0..self.shards()).filter(|&s| !self.is_offline(s)).count()
    }

    /// Shards that have no active prefix and need retraining.
    pub fn offline_shards(&self) -> Vec<u16> {
        (0..self.shards()).filter(|&s| self.is_offline(s)).collect()
    }

    /// Slices of a shard that lost samples since it was last trained (retraining rebuilds the nodes that saw them).
    pub fn dirty_slices(&self, shard: u16) -> Vec<u16> {
        self.dirty[usize::from(shard)].iter().enumerate().filter(|(_, d)| **d).map(|(j, _)| j as u16).collect()
    }

    pub fn is_deleted(&self, id: &SampleId) -> bool {
        self.deleted.contains(id)
    }

    pub fn deleted_count(&self) -> usize {
        self.deleted.len()
    }

    pub fn deleted(&self) -> impl Iterator<Item = &SampleId> {
        self.deleted.iter()
    }

    pub fn retrains(&self, shard: u16) -> u32 {
        self.retrains[usize::from(shard)]
    }
}

#[cfg(test)]
mod tests;
