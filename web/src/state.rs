//! The page's reducers behind yew's `use_reducer`: the shared crate's pure ones ([`s3t::page`]), each in a
//! [`Reduced`] (yew's `Reducible` belongs to yew and the reducers to the core crate, so one of them is wrapped).

use std::ops::Deref;
use std::rc::Rc;

use s3t::page::Reducer;
pub use s3t::page::retraining::{RetrainAction, Retraining};
pub use s3t::page::session::{Fixed, Retrain, Session, SessionAction};
use yew::Reducible;

/// A pure reducer's state as yew holds it; it reads as the state itself.
#[derive(PartialEq)]
pub struct Reduced<T>(Rc<T>);

impl<T> Reduced<T> {
    pub fn new(state: T) -> Self {
        Self(Rc::new(state))
    }

    /// The state as it is now, shared (effects and handlers keep it beyond a render).
    pub fn rc(&self) -> Rc<T> {
        self.0.clone()
    }
}

impl<T> Deref for Reduced<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Reducer> Reducible for Reduced<T> {
    type Action = T::Action;

    fn reduce(self: Rc<Self>, action: T::Action) -> Rc<Self> {
        let next = self.0.clone().reduce(action);
        // Unchanged: the same state, so yew does not render again.
        if Rc::ptr_eq(&next, &self.0) { self } else { Rc::new(Self(next)) }
    }
}
