//! The session reducer: the shared crate's route state machine behind yew's `use_reducer`. It holds no logic of
//! its own beyond remembering the order of deletions (for the shareable URL) and the last events.

use std::rc::Rc;

use s3t::{Action, Event, Router, SampleId, State};
use yew::Reducible;

#[derive(Clone, PartialEq)]
pub struct Session {
    pub router: Rc<RouterRef>,
    pub state: State,
    /// SISA without retraining, driven by the same deletions.
    pub sisa: State,
    /// Deleted ids in the order they were deleted.
    pub deleted: Vec<SampleId>,
    pub events: Vec<Event>,
    pub note: Option<String>,
}

/// Both routers; compared by identity (they never change during a session).
pub struct RouterRef {
    pub s3t: Rc<Router>,
    pub sisa: Rc<Router>,
}

impl PartialEq for RouterRef {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.s3t, &other.s3t)
    }
}

pub enum SessionAction {
    Delete(SampleId),
    Reset,
    /// Replays a stored list of deletions (from the URL or local storage); an invalid list is ignored with a note.
    Restore {
        ids: Vec<SampleId>,
        source: &'static str,
    },
    /// A stored state that could not even be read: shown as a note, the state is unchanged.
    Ignore {
        why: String,
        source: &'static str,
    },
}

impl Session {
    pub fn new(s3t: Rc<Router>, sisa: Rc<Router>) -> Self {
        Self {
            state: s3t.initial(),
            sisa: sisa.initial(),
            router: Rc::new(RouterRef { s3t, sisa }),
            deleted: Vec::new(),
            events: Vec::new(),
            note: None,
        }
    }
}

impl Reducible for Session {
    type Action = SessionAction;

    fn reduce(self: Rc<Self>, action: SessionAction) -> Rc<Self> {
        let routers = &self.router;
        match action {
            SessionAction::Delete(id) => {
                let delete = Action::Delete(id.clone());
                match (routers.s3t.apply(&self.state, &delete), routers.sisa.apply(&self.sisa, &delete)) {
                    (Ok((state, events)), Ok((sisa, _))) => {
                        let mut deleted = self.deleted.clone();
                        if !matches!(events.as_slice(), [Event::AlreadyDeleted { .. }]) {
                            deleted.push(id);
                        }
                        Rc::new(Session { state, sisa, deleted, events, note: None, router: routers.clone() })
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        Rc::new(Session { note: Some(e.to_string()), events: Vec::new(), ..(*self).clone() })
                    }
                }
            }
            SessionAction::Reset => {
                let mut fresh = Session::new(routers.s3t.clone(), routers.sisa.clone());
                fresh.router = routers.clone();
                Rc::new(fresh)
            }
            SessionAction::Ignore { why, source } => Rc::new(Session {
                note: Some(format!("the saved state in the {source} was ignored: {why}")),
                ..(*self).clone()
            }),
            SessionAction::Restore { ids, source } => {
                let actions: Vec<Action> = ids.iter().cloned().map(Action::Delete).collect();
                match (routers.s3t.replay(&actions), routers.sisa.replay(&actions)) {
                    (Ok(state), Ok(sisa)) => Rc::new(Session {
                        state,
                        sisa,
                        deleted: ids,
                        events: Vec::new(),
                        note: None,
                        router: routers.clone(),
                    }),
                    (Err(e), _) | (_, Err(e)) => Rc::new(Session {
                        note: Some(format!("the saved state in the {source} was ignored: {e}")),
                        ..(*self).clone()
                    }),
                }
            }
        }
    }
}
