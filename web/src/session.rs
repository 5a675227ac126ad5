//! The main screen: the session reducer, persistence, the asynchronous evaluation, and the panels.

use std::rc::Rc;

use s3t::model::serve::Evaluation;
use s3t::simulate::expected_deletions_left;
use yew::prelude::*;

use crate::load::{Loaded, Pacer, yield_now};
use crate::persist;
use crate::state::{Fixed, Session, SessionAction};
use crate::views::{Capacity, Chart, Explanation, Grid, Inspector, ShardPanel};

/// One evaluation result, for the display and the accuracy chart.
#[derive(Clone, PartialEq)]
pub struct Scores {
    pub deleted: usize,
    pub s3t: Evaluation,
    /// `None` until the SISA checkpoints are evaluated (after S3T, which is what the page is about).
    pub sisa: Option<Evaluation>,
    /// Milliseconds from the state change to the S3T result.
    pub millis: f64,
}

#[derive(Properties, Clone)]
pub struct Props {
    pub loaded: Rc<Loaded>,
}

impl PartialEq for Props {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.loaded, &other.loaded)
    }
}

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
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
) -> Result<(), String> {
    // One evaluation at a time: the evaluator is taken out and put back.
    let mut evaluator = loop {
        if let Some(e) = loaded.evaluator.borrow_mut().take() {
            break e;
        }
        yield_now().await;
    };
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
                let fresh = !evaluator.is_memoised(&loaded.model, shard, served);
                evaluator.prepare_async(&loaded.model, shard, served, pause).await?;
                if fresh {
                    crate::load::timing(&format!("node shard {shard} prefix {}", served.prefix), t);
                }
                pause().await;
            }
        }
        let mut scores = Scores {
            deleted: session.deleted.len(),
            s3t: evaluator.evaluate(&loaded.model, &session.state)?,
            sisa: None,
            millis: now() - started,
        };
        publish(scores.clone());
        if !loaded.model.has_sisa() {
            // A bundle built without the SISA baseline (`--no-sisa`): nothing to compare with.
            return Ok(());
        }
        // The activations shorter prefixes start from: ready before the visitor's first deletion needs them.
        evaluator.complete_features_async(&loaded.model, pause).await;
        for shard in 0..session.sisa.shards() {
            if superseded() {
                return Ok(());
            }
            if let Some(served) = session.sisa.served(shard) {
                evaluator.prepare_sisa_async(&loaded.model, shard, served.prefix, pause).await?;
                pause().await;
            }
        }
        scores.sisa = Some(evaluator.evaluate_sisa(&loaded.model, &session.sisa)?);
        publish(scores);
        Ok::<_, String>(())
    }
    .await;
    *loaded.evaluator.borrow_mut() = Some(evaluator);
    result
}

#[function_component(SessionView)]
pub fn session_view(props: &Props) -> Html {
    let loaded = props.loaded.clone();
    let session = {
        let loaded = loaded.clone();
        use_reducer(move || {
            let routers = &loaded.routers;
            Session::new(Rc::new(Fixed {
                s3t: routers.s3t.clone(),
                sisa: routers.sisa.clone(),
                base: loaded.base.clone(),
            }))
        })
    };
    let scores = use_state(|| None::<Scores>);
    let history = use_state(Vec::<Scores>::new);
    let failure = use_state(|| None::<String>);
    let bundle_tag: String = loaded.model.manifest.backbone.weights.sha256.chars().take(12).collect();

    // Restore from the URL, else from local storage (once).
    {
        let session = session.clone();
        let tag = bundle_tag.clone();
        use_effect_with((), move |_| {
            let url = persist::url_state();
            let (text, source) = if url.trim_start_matches('#').is_empty() {
                (persist::stored_state().unwrap_or_default(), "local storage")
            } else {
                (url, "link")
            };
            match s3t::link::decode(&text, &tag) {
                Ok(Some(ids)) => session.dispatch(SessionAction::Restore { ids, source }),
                Ok(None) => {}
                Err(why) => session.dispatch(SessionAction::Ignore { why, source }),
            }
        });
    }
    // Save the visitor's changes (only theirs: see `Session::revision`).
    {
        let tag = bundle_tag.clone();
        let deleted = session.deleted.clone();
        use_effect_with(session.revision, move |&revision| {
            if revision > 0 {
                persist::save(&s3t::link::encode(&tag, &deleted));
            }
        });
    }
    // Re-evaluate after every change.
    {
        let loaded = loaded.clone();
        let scores = scores.clone();
        let history = history.clone();
        let failure = failure.clone();
        let current = session.clone();
        use_effect_with(session.deleted.clone(), move |_| {
            let started = now();
            let generation = loaded.generation.get() + 1;
            loaded.generation.set(generation);
            let snapshot: Rc<Session> = Rc::new((*current).clone());
            wasm_bindgen_futures::spawn_local(async move {
                let publish = move |result: Scores| {
                    let mut h: Vec<Scores> =
                        (*history).iter().filter(|s| s.deleted < result.deleted).cloned().collect();
                    h.push(result.clone());
                    history.set(h);
                    scores.set(Some(result));
                };
                if let Err(e) = evaluate(loaded, snapshot, generation, started, publish).await {
                    failure.set(Some(e));
                }
            });
        });
    }

    let on_delete = {
        let session = session.clone();
        Callback::from(move |id: s3t::SampleId| session.dispatch(SessionAction::Delete(id)))
    };
    let on_reset = {
        let session = session.clone();
        Callback::from(move |_| session.dispatch(SessionAction::Reset))
    };
    let pct = |a: Option<f64>| a.map_or("offline".to_owned(), |a| format!("{:.2}%", a * 100.0));
    let state = &session.state;
    let capacity = expected_deletions_left(&loaded.plan, state);
    let stale = scores.as_ref().is_none_or(|s| s.deleted != session.deleted.len());

    html! {
        <main class="session">
            <header>
                <h1>{ "S3T: exact unlearning you can watch" }</h1>
                <span class={classes!("badge", if loaded.is_gpu { "gpu" } else { "cpu" })} id="backend" data-testid="backend">{ loaded.backend.clone() }</span>
                if let Some(n) = &loaded.notice { <span class="notice" data-testid="backend-notice">{ n.clone() }</span> }
                <button onclick={on_reset} data-testid="reset">{ "Reset" }</button>
            </header>
            if let Some(note) = &session.note { <p class="note" role="status" data-testid="note">{ note.clone() }</p> }
            if let Some(note) = &loaded.base.note { <p class="note" role="status" data-testid="ledger-note">{ note.clone() }</p> }
            if let Some(error) = &*failure { <p class="note" role="alert" data-testid="eval-error">{ error.clone() }</p> }
            <section class="scores" aria-live="polite">
                <div class="score">
                    <span class="label">{ "S3T ensemble accuracy" }</span>
                    <span class={classes!("value", stale.then_some("stale"))} data-testid="accuracy"
                        data-value={scores.as_ref().and_then(|s| s.s3t.accuracy).map(|a| a.to_string()).unwrap_or_default()}
                        data-deleted={scores.as_ref().map(|s| s.deleted.to_string()).unwrap_or_default()}
                        data-millis={scores.as_ref().map(|s| format!("{:.1}", s.millis)).unwrap_or_default()}>
                        { scores.as_ref().map_or("computing…".to_owned(), |s| pct(s.s3t.accuracy)) }
                    </span>
                </div>
                if loaded.model.has_sisa() {
                    <div class="score">
                        <span class="label">{ "SISA without retraining" }</span>
                        <span class="value" data-testid="sisa-accuracy"
                            data-deleted={scores.as_ref().filter(|s| s.sisa.is_some()).map(|s| s.deleted.to_string()).unwrap_or_default()}>{ scores.as_ref().and_then(|s| s.sisa.as_ref()).map_or("computing…".to_owned(), |s| pct(s.accuracy)) }</span>
                    </div>
                }
                <div class="score">
                    <span class="label">{ "deleted by you" }</span>
                    <span class="value" data-testid="deleted-count">{ session.deleted.len() }</span>
                </div>
                if !loaded.base.deleted.is_empty() {
                    <div class="score" title="deleted before the bundle was published; Reset keeps them deleted">
                        <span class="label">{ "deleted in the bundle's ledger" }</span>
                        <span class="value" data-testid="ledger-count">{ loaded.base.deleted.len() }</span>
                    </div>
                }
                <div class="score">
                    <span class="label">{ "live shards" }</span>
                    <span class="value" data-testid="live-shards">{ format!("{} / {}", state.live_shards(), state.shards()) }</span>
                </div>
                <Capacity expected={capacity} />
            </section>
            <Chart history={(*history).clone()} sisa={loaded.model.has_sisa()} />
            <section class="shards">
                { for (0..state.shards()).map(|shard| html! {
                    <ShardPanel shard={shard} sequences={loaded.plan.shards.get(usize::from(shard)).map(|p| p.sequences.clone()).unwrap_or_default()}
                        active={state.active(shard).to_vec()} served={state.served(shard)}
                        accuracy={scores.as_ref().and_then(|s| s.s3t.per_shard.get(usize::from(shard)).copied().flatten())} />
                }) }
            </section>
            <Inspector loaded={loaded.clone()} state={session.state.clone()} version={scores.as_ref().map_or(0, |s| 2 * s.deleted + 1 + usize::from(s.sisa.is_some()))} />
            <Grid loaded={loaded.clone()} deleted={session.deleted.clone()} on_delete={on_delete} />
            <Explanation />
        </main>
    }
}
