//! The page's evaluation of the session: S3T first, then SISA, after every change of the routing state, published
//! for the scores and the accuracy chart.

use std::rc::Rc;

use s3t::model::serve::Evaluation;
use yew::prelude::*;

use s3t_host::time::{now, timing};

use crate::load::{Loaded, Pacer};
use crate::state::{Reduced, Session};

/// One evaluation result, for the display and the accuracy chart.
#[derive(Clone, PartialEq)]
pub struct Scores {
    pub deleted: usize,
    /// The session's `changes` these scores are for (a retrain changes the state, not the deletions).
    pub changes: u64,
    pub s3t: Evaluation,
    /// `None` until the SISA checkpoints are evaluated (after S3T, which is what the page is about).
    pub sisa: Option<Evaluation>,
    /// Milliseconds from the state change to the S3T result.
    pub millis: f64,
}

/// Evaluates S3T, publishes it, then SISA, and publishes again: every needed node is computed once (memoised),
/// yielding to the page between operations; an ensemble is then a cheap average. An evaluation whose state has been
/// superseded (`generation`: a newer deletion or reset) stops after the node at hand, so the newer state's S3T
/// accuracy never waits for an older state's SISA.
async fn evaluate(
    loaded: Rc<Loaded>,
    session: Rc<Session>,
    generation: u64,
    started: f64,
    publish: impl Fn(Scores),
) -> s3t::Result<()> {
    // One evaluation at a time: the evaluator is taken out and put back.
    let mut evaluator = loaded.take_evaluator().await;
    // A session without the page's retrains serves the bundle's own nodes again (after Reset or a restored link).
    if session.retrains.is_empty() && !Rc::ptr_eq(&loaded.model.borrow(), &loaded.original) {
        for shard in 0..session.state.shards() {
            evaluator.forget_shard(shard);
        }
        *loaded.model.borrow_mut() = loaded.original.clone();
    }
    let model = loaded.model.borrow().clone();
    let model = &*model;
    let pacer = Pacer::new();
    let pause = async || pacer.pause().await;
    let superseded = || loaded.generation.get() != generation;
    let result = async {
        for shard in 0..session.state.shards() {
            if superseded() {
                return Ok(());
            }
            if let Some(served) = session.state.served(shard) {
                let t = now();
                let fresh = !evaluator.is_memoised(model, shard, served);
                evaluator.prepare_async(model, shard, served, pause).await?;
                if fresh {
                    timing(&format!("node shard {shard} prefix {}", served.prefix), t);
                    // A full-depth component reads the cached features as they are: a clean measure of the speed.
                    let config = model.config();
                    if served.prefix == loaded.plan.slices {
                        let layers = config.vit.depth - config.first_block_of_group(usize::from(served.prefix));
                        loaded.measured(now() - t, loaded.test.len(), layers);
                    }
                }
                pause().await;
            }
        }
        let mut scores = Scores {
            deleted: session.deleted.len(),
            changes: session.changes,
            s3t: evaluator.evaluate(model, &session.state)?,
            sisa: None,
            millis: now() - started,
        };
        publish(scores.clone());
        if !model.has_sisa() {
            // A bundle built without the SISA baseline (`--no-sisa`): nothing to compare with.
            return Ok(());
        }
        // The activations shorter prefixes start from: ready before the visitor's first deletion needs them.
        evaluator.complete_features_async(model, pause).await;
        for shard in 0..session.sisa.shards() {
            if superseded() {
                return Ok(());
            }
            if let Some(served) = session.sisa.served(shard) {
                evaluator.prepare_sisa_async(model, shard, served.prefix, pause).await?;
                pause().await;
            }
        }
        scores.sisa = Some(evaluator.evaluate_sisa(model, &session.sisa)?);
        publish(scores);
        Ok::<_, s3t::Error>(())
    }
    .await;
    *loaded.evaluator.borrow_mut() = Some(evaluator);
    result
}

/// What the evaluation has published: the latest scores, one per deletion count for the chart, and a failure.
#[derive(Clone)]
pub struct Evaluated {
    pub scores: UseStateHandle<Option<Scores>>,
    pub history: UseStateHandle<Vec<Scores>>,
    pub failure: UseStateHandle<Option<String>>,
}

/// Evaluates the session again after every change of its routing state (`Session::changes`); an evaluation under
/// way for an older state stops early ([`evaluate`]).
#[hook]
pub fn use_evaluation(loaded: &Rc<Loaded>, session: &UseReducerHandle<Reduced<Session>>) -> Evaluated {
    let evaluated = Evaluated {
        scores: use_state(|| None::<Scores>),
        history: use_state(Vec::<Scores>::new),
        failure: use_state(|| None::<String>),
    };
    {
        let loaded = loaded.clone();
        let Evaluated { scores, history, failure } = evaluated.clone();
        let current = session.clone();
        use_effect_with(session.changes, move |_| {
            let started = now();
            let generation = loaded.generation.get() + 1;
            loaded.generation.set(generation);
            let snapshot: Rc<Session> = current.rc();
            wasm_bindgen_futures::spawn_local(async move {
                let publish = move |result: Scores| {
                    let mut h: Vec<Scores> =
                        (*history).iter().filter(|s| s.deleted < result.deleted).cloned().collect();
                    h.push(result.clone());
                    history.set(h);
                    scores.set(Some(result));
                };
                if let Err(e) = evaluate(loaded, snapshot, generation, started, publish).await {
                    failure.set(Some(e.to_string()));
                }
            });
        });
    }
    evaluated
}
