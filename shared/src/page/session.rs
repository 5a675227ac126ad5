//! The session reducer: the route state machine as the page drives it. The bundle's ledger is the base state; the
//! visitor's deletions go on top of it, in order (for the shareable link), with the page's retrains in their places.
//! It holds no logic of its own beyond that and the last events.

use std::rc::Rc;

use super::Reducer;
use super::base::Base;
use crate::bundle::NodeEntry;
use crate::bundle::guard::Guard;
use crate::{Action, Event, Router, SampleId, State};

#[derive(Clone, PartialEq)]
pub struct Session {
    pub fixed: Rc<Fixed>,
    pub state: State,
    /// SISA without retraining, driven by the same deletions.
    pub sisa: State,
    /// The visitor's deleted ids in the order they were deleted (the ledger's are not among them).
    pub deleted: Vec<SampleId>,
    pub events: Vec<Event>,
    pub note: Option<String>,
    /// The shards the page retrained, in order, each after `after` of the visitor's deletions (the chart marks
    /// them; local storage keeps their weights, a link names them).
    pub retrains: Vec<Retrain>,
    /// Counts every change of the routing state (what is evaluated); a retrain changes it but not `deleted`.
    pub changes: u64,
    /// Counts the changes to `deleted` that are to be saved (a deletion, a reset, a restored link). It stays 0 until
    /// one happens, so a page that ignored a stale or invalid link never overwrites the saved state.
    pub revision: u64,
}

/// A retrain the page served: its place among the visitor's deletions, the shard's new nodes and the weights of
/// those that were retrained (by node id).
#[derive(Clone, Debug, PartialEq)]
pub struct Retrain {
    pub after: usize,
    pub shard: u16,
    pub nodes: Rc<Vec<NodeEntry>>,
    pub weights: Rc<Vec<(usize, Vec<u8>)>>,
}

/// What a session never changes: both routers and the ledger's base state; compared by identity.
pub struct Fixed {
    pub s3t: Rc<Router>,
    pub sisa: Rc<Router>,
    pub base: Rc<Base>,
}

impl PartialEq for Fixed {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.s3t, &other.s3t) && Rc::ptr_eq(&self.base, &other.base)
    }
}

#[derive(Debug)]
pub enum SessionAction {
    Delete(SampleId),
    /// Back to the ledger's base state.
    Reset,
    /// The page retrained a shard without every deleted sample, and serves its new nodes (the route reducer's
    /// retrain event, the one `trainer retrain` writes to the ledger).
    Retrained {
        shard: u16,
        nodes: Rc<Vec<NodeEntry>>,
        weights: Rc<Vec<(usize, Vec<u8>)>>,
    },
    /// A link's retrain, done again here, in its place among the deletions (the whole state is replayed, and the
    /// retrain checked there against the deletions before it).
    Replayed(Retrain),
    /// Replays a stored list of deletions (from the URL or local storage); an invalid list is ignored with a note.
    Restore {
        ids: Vec<SampleId>,
        /// The page's retrains among them, with their weights (from local storage; the model serves them already).
        retrains: Vec<Retrain>,
        source: &'static str,
    },
    /// A stored state that could not even be read: shown as a note, the state is unchanged.
    Ignore {
        why: String,
        source: &'static str,
    },
}

impl Session {
    pub fn new(fixed: Rc<Fixed>) -> Self {
        Self {
            state: fixed.base.state.clone(),
            sisa: fixed.base.sisa.clone(),
            fixed,
            deleted: Vec::new(),
            events: Vec::new(),
            note: None,
            retrains: Vec::new(),
            changes: 0,
            revision: 0,
        }
    }
}

impl Session {
    /// The deleted ids a retrain is for: the bundle's ledger and the visitor's deletions, all of them or (a link's
    /// retrain, replayed at its place) the first `after`.
    pub fn deleted_at(&self, after: Option<usize>) -> Vec<SampleId> {
        match after {
            None => self.state.deleted().cloned().collect(),
            Some(n) => self.fixed.base.deleted.iter().chain(self.deleted.iter().take(n)).cloned().collect(),
        }
    }

    fn retrained(
        self: Rc<Self>,
        shard: u16,
        nodes: Rc<Vec<NodeEntry>>,
        weights: Rc<Vec<(usize, Vec<u8>)>>,
    ) -> Rc<Self> {
        match self.fixed.s3t.apply(&self.state, &Action::Retrained { shard }) {
            Ok((state, events)) => {
                let mut retrains = self.retrains.clone();
                retrains.push(Retrain { after: self.deleted.len(), shard, nodes, weights });
                let (changes, revision) = (self.changes + 1, self.revision + 1);
                Rc::new(Session { state, events, retrains, changes, revision, ..(*self).clone() })
            }
            Err(e) => Rc::new(Session { note: Some(e.to_string()), events: Vec::new(), ..(*self).clone() }),
        }
    }
}

impl Reducer for Session {
    type Action = SessionAction;

    fn reduce(self: Rc<Self>, action: SessionAction) -> Rc<Self> {
        let fixed = &self.fixed;
        match action {
            SessionAction::Delete(id) => {
                let delete = Action::Delete(id.clone());
                match (fixed.s3t.apply(&self.state, &delete), fixed.sisa.apply(&self.sisa, &delete)) {
                    (Ok((_, events)), _) if matches!(events.as_slice(), [Event::AlreadyDeleted { .. }]) => self,
                    (Ok((state, events)), Ok((sisa, _))) => {
                        let mut deleted = self.deleted.clone();
                        deleted.push(id);
                        let revision = self.revision + 1;
                        let changes = self.changes + 1;
                        let retrains = self.retrains.clone();
                        Rc::new(Session {
                            state,
                            sisa,
                            deleted,
                            events,
                            note: None,
                            retrains,
                            changes,
                            revision,
                            fixed: fixed.clone(),
                        })
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        Rc::new(Session { note: Some(e.to_string()), events: Vec::new(), ..(*self).clone() })
                    }
                }
            }
            SessionAction::Reset => {
                let mut fresh = Session::new(fixed.clone());
                // Resetting nothing changes nothing: no save (it could overwrite a state a rejected link left alone).
                let changed = !self.deleted.is_empty() || !self.retrains.is_empty();
                fresh.revision = self.revision + u64::from(changed);
                fresh.changes = self.changes + u64::from(changed);
                Rc::new(fresh)
            }
            SessionAction::Retrained { shard, nodes, weights } => {
                // The last word on exactness: the new nodes must have been trained without every sample this
                // state has deleted (one deleted while the worker ran makes them stale; they are then not served).
                let guard = Guard::new(fixed.s3t.assignment(), self.state.deleted().cloned());
                if let Some(stale) = nodes.iter().find_map(|e| guard.check_node(e).err()) {
                    let note = format!("the retrained shard {shard} was not served: {stale}");
                    return Rc::new(Session { note: Some(note), events: Vec::new(), ..(*self).clone() });
                }
                self.retrained(shard, nodes, weights)
            }
            SessionAction::Replayed(retrain) => {
                let mut retrains = self.retrains.clone();
                retrains.push(retrain);
                // Stable: two retrains at the same place keep their order.
                retrains.sort_by_key(|r| r.after);
                match fixed.base.with(&fixed.s3t, &fixed.sisa, &self.deleted, &retrains) {
                    Ok((state, sisa)) => Rc::new(Session {
                        state,
                        sisa,
                        retrains,
                        events: Vec::new(),
                        changes: self.changes + 1,
                        revision: self.revision + 1,
                        ..(*self).clone()
                    }),
                    Err(e) => Rc::new(Session {
                        note: Some(format!("the link's retrain was not served: {e}")),
                        ..(*self).clone()
                    }),
                }
            }
            SessionAction::Ignore { why, source } => Rc::new(Session {
                note: Some(format!("the saved state in the {source} was ignored: {why}")),
                ..(*self).clone()
            }),
            SessionAction::Restore { ids, retrains, source } => {
                // The ledger's ids in a link are simply deleted already (a retrain keeps its place among the rest).
                let fresh = |id: &SampleId| !fixed.base.deleted.contains(id);
                let mut retrains = retrains;
                for r in &mut retrains {
                    r.after = ids.iter().take(r.after).filter(|id| fresh(id)).count();
                }
                let ids: Vec<SampleId> = ids.into_iter().filter(|id| fresh(id)).collect();
                match fixed.base.with(&fixed.s3t, &fixed.sisa, &ids, &retrains) {
                    Ok((state, sisa)) => Rc::new(Session {
                        state,
                        sisa,
                        deleted: ids,
                        events: Vec::new(),
                        note: None,
                        retrains,
                        changes: self.changes + 1,
                        revision: self.revision + 1,
                        fixed: fixed.clone(),
                    }),
                    Err(e) => Rc::new(Session {
                        note: Some(format!("the saved state in the {source} was ignored: {e}")),
                        ..(*self).clone()
                    }),
                }
            }
        }
    }
}
