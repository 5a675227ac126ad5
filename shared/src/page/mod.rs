//! The web page's state: pure reducers over the route state machine, compiled and tested on the host without the
//! model. The page holds them behind yew's `use_reducer` (through [`Reducer`]); its components only render them and
//! dispatch actions, and its effects (the evaluation, the retraining worker, persistence) react to their counters.
//!
//! - [`base`]: the bundle's own ledger, replayed into the state every session starts from.
//! - [`session`]: the visitor's deletions and the page's retrains on top of it.
//! - [`retraining`]: the queue of shards the page retrains in its worker.

pub mod base;
pub mod retraining;
pub mod session;

use std::rc::Rc;

/// A pure reducer: the next state after an action. It returns `self` itself when nothing changed, so a view that
/// compares states by identity does not render again.
pub trait Reducer {
    type Action;
    fn reduce(self: Rc<Self>, action: Self::Action) -> Rc<Self>;
}

#[cfg(test)]
mod tests;
