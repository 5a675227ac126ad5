//! The main screen: the session reducer, persistence, the asynchronous evaluation, and the panels.

use std::rc::Rc;

use s3t::model::serve::Evaluation;
use s3t::simulate::expected_deletions_left;
use yew::prelude::*;

use crate::chart::Chart;
use crate::load::{Loaded, Pacer};
use crate::persist;
use crate::probe::Probe;
use crate::retrain::{self, RetrainAction, Retraining};
use crate::sentence::Sentence;
use crate::state::{Fixed, Session, SessionAction};
use crate::theory::Theory;
use crate::tour::Tour;
use crate::views::{Capacity, Explanation, Grid, Inspector, ShardPanel};

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
                    crate::load::timing(&format!("node shard {shard} prefix {}", served.prefix), t);
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
    let bundle_tag: String = loaded.original.manifest.backbone.weights.sha256.chars().take(12).collect();

    let retraining = use_reducer(Retraining::default);
    // Restore from the URL, else from local storage (once). Retrains kept with this very state are served again
    // (checked like a fresh retrain); those a link only names are retrained here.
    {
        let session = session.clone();
        let retraining = retraining.clone();
        let loaded = loaded.clone();
        let tag = bundle_tag.clone();
        use_effect_with((), move |_| {
            let url = persist::url_state();
            let (text, source) = if url.trim_start_matches('#').is_empty() {
                (persist::stored_state().unwrap_or_default(), "local storage")
            } else {
                (url, "link")
            };
            match s3t::link::decode_saved(&text, &tag) {
                Ok(Some(saved)) => {
                    let stored = persist::stored_retrains(&text);
                    let named: Vec<(usize, u16)> = saved.retrained.iter().map(|r| (r.after, r.shard)).collect();
                    let kept: Vec<(usize, u16)> = stored.iter().map(|r| (r.after, r.shard)).collect();
                    let retrains = if !named.is_empty() && named == kept && serve_stored(&loaded, &stored).is_ok() {
                        stored
                    } else {
                        Vec::new()
                    };
                    // Without their weights, the link's retrains are done again here, each at its place.
                    let replay = if retrains.is_empty() { named } else { Vec::new() };
                    session.dispatch(SessionAction::Restore { ids: saved.deleted, retrains, source });
                    for (after, shard) in replay {
                        retraining.dispatch(RetrainAction::EnqueueAt { shard, after });
                    }
                }
                Ok(None) => {}
                Err(why) => session.dispatch(SessionAction::Ignore { why, source }),
            }
        });
    }
    // Save the visitor's changes (only theirs: see `Session::revision`), the retrains' weights with them.
    {
        let tag = bundle_tag.clone();
        let current = session.clone();
        use_effect_with(session.revision, move |&revision| {
            if revision > 0 {
                let saved = s3t::link::Saved {
                    deleted: current.deleted.clone(),
                    retrained: current
                        .retrains
                        .iter()
                        .map(|r| s3t::link::Retrain { after: r.after, shard: r.shard })
                        .collect(),
                };
                let link = s3t::link::encode_saved(&tag, &saved);
                persist::save(&link);
                persist::save_retrains(&link, &current.retrains);
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
        use_effect_with(session.changes, move |_| {
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
    let worker = use_mut_ref(|| None::<web_sys::Worker>);
    // The session as last rendered, for the worker's messages (their handler outlives a render).
    let latest = use_mut_ref(|| Rc::new((*session).clone()));
    *latest.borrow_mut() = Rc::new((*session).clone());
    // A cancelled job: its worker is stopped (a new one starts with the next job).
    {
        let worker = worker.clone();
        use_effect_with(retraining.stops, move |&stops| {
            if stops > 0
                && let Some(w) = worker.borrow_mut().take()
            {
                w.terminate();
            }
        });
    }
    // A job that waits: start the worker (its code loads now, not with the page), then send the request.
    {
        let worker = worker.clone();
        let retraining_handle = retraining.clone();
        let session = session.clone();
        let loaded = loaded.clone();
        let latest = latest.clone();
        let key = (retraining.current.as_ref().map(|j| (j.shard, j.sent)), retraining.ready);
        use_effect_with(key, move |&(job, ready)| {
            let Some((shard, false)) = job else { return };
            if worker.borrow().is_none() {
                match retrain::start_worker(loaded.clone(), session.clone(), retraining_handle.clone(), latest) {
                    Ok(w) => *worker.borrow_mut() = Some(w),
                    Err(e) => retraining_handle.dispatch(RetrainAction::WorkerError(e)),
                }
                return;
            }
            if ready && let Some(w) = worker.borrow().as_ref() {
                let request = s3t::bundle::retrain::Request {
                    bundle: crate::source::Source::current().dir().to_owned(),
                    shard,
                    deleted: retrain::deleted_at(
                        &loaded,
                        &session,
                        retraining_handle.current.as_ref().and_then(|j| j.after),
                    ),
                    purged: loaded.base.deleted_indices().into_iter().map(|i| i as u64).collect(),
                    batch_nodes: retrain::BATCH_NODES,
                    after: retraining_handle.current.as_ref().and_then(|j| j.after),
                    roots: None,
                    backend: retrain::backend(),
                };
                if let Ok(text) = serde_json::to_string(&request) {
                    let _ = w.post_message(&text.into());
                    retraining_handle.dispatch(RetrainAction::Sent);
                }
            }
        });
    }
    let on_retrain = {
        let retraining = retraining.clone();
        let loaded = loaded.clone();
        Callback::from(move |shard: u16| {
            retraining.dispatch(if retrain::asks_first(&loaded) {
                RetrainAction::Ask(shard)
            } else {
                RetrainAction::Enqueue(shard)
            })
        })
    };
    let on_start = {
        let retraining = retraining.clone();
        Callback::from(move |shard: u16| retraining.dispatch(RetrainAction::Enqueue(shard)))
    };
    let on_dismiss = {
        let retraining = retraining.clone();
        Callback::from(move |_: MouseEvent| retraining.dispatch(RetrainAction::Dismiss))
    };
    let on_cancel = {
        let retraining = retraining.clone();
        Callback::from(move |shard: u16| retraining.dispatch(RetrainAction::Cancel(shard)))
    };
    let on_reset = {
        let session = session.clone();
        let retraining = retraining.clone();
        Callback::from(move |_| {
            // The jobs were for deletions Reset undoes.
            retraining.dispatch(RetrainAction::CancelAll);
            session.dispatch(SessionAction::Reset)
        })
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
                if let Some(n) = &loaded.notice {
                    <span class="notice" data-testid="backend-notice">
                        { if loaded.is_gpu { "Running on a software WebGPU adapter: slower than a GPU, with the same results. " }
                          else { "This browser offers no usable WebGPU adapter, so the model runs on the CPU: slower, with the same results. " } }
                        <details class="backend-details"><summary>{ "details" }</summary><span data-testid="backend-detail">{ n.clone() }</span></details>
                    </span>
                }
                <button onclick={on_reset} data-testid="reset">{ "Reset" }</button>
            </header>
            <Tour deleted={session.deleted.len()} retrains={session.retrains.len()} />
            if let Some(note) = &session.note { <p class="note" role="status" data-testid="note">{ note.clone() }</p> }
            if let Some(note) = &loaded.base.note { <p class="note" role="status" data-testid="ledger-note">{ note.clone() }</p> }
            if let Some(error) = &*failure { <p class="note" role="alert" data-testid="eval-error">{ error.clone() }</p> }
            if let Some(error) = &retraining.error { <p class="note" role="status" data-testid="retrain-error">{ error.clone() }</p> }
            <section class="scores" aria-live="polite">
                <div class="score">
                    <span class="label">{ "S3T ensemble accuracy" }</span>
                    <span class={classes!("value", stale.then_some("stale"))} data-testid="accuracy"
                        data-value={scores.as_ref().and_then(|s| s.s3t.accuracy).map(|a| a.to_string()).unwrap_or_default()}
                        data-deleted={scores.as_ref().map(|s| s.deleted.to_string()).unwrap_or_default()}
                        data-changes={scores.as_ref().map(|s| s.changes.to_string()).unwrap_or_default()}
                        data-millis={scores.as_ref().map(|s| format!("{:.1}", s.millis)).unwrap_or_default()}>
                        { scores.as_ref().map_or("computing…".to_owned(), |s| pct(s.s3t.accuracy)) }
                    </span>
                </div>
                if loaded.original.has_sisa() {
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
                    <span class="value" data-testid="live-shards" data-changes={session.changes.to_string()}>{ format!("{} / {}", state.live_shards(), state.shards()) }</span>
                </div>
                <Capacity expected={capacity} />
            </section>
            <Chart history={(*history).clone()} sisa={loaded.original.has_sisa()} retrains={session.retrains.iter().map(|r| (r.after, r.shard)).collect::<Vec<_>>()} />
            <section class="shards">
                { for (0..state.shards()).map(|shard| html! {
                    <ShardPanel shard={shard} sequences={loaded.plan.shards.get(usize::from(shard)).map(|p| p.sequences.clone()).unwrap_or_default()}
                        active={state.active(shard).to_vec()} served={state.served(shard)}
                        accuracy={scores.as_ref().and_then(|s| s.s3t.per_shard.get(usize::from(shard)).copied().flatten())}>
                        { retrain_controls(&loaded, &session, &retraining, shard, &Actions { retrain: &on_retrain, start: &on_start, dismiss: &on_dismiss, cancel: &on_cancel }) }
                    </ShardPanel>
                }) }
            </section>
            <Probe loaded={loaded.clone()} state={session.state.clone()} id={session.deleted.last().cloned()} changes={session.changes}
                scored={scores.as_ref().is_some_and(|s| s.changes == session.changes)} />
            if loaded.is_text() {
                <Sentence loaded={loaded.clone()} state={session.state.clone()} changes={session.changes} />
            }
            <Inspector loaded={loaded.clone()} state={session.state.clone()} version={scores.as_ref().map_or(0, |s| 2 * s.deleted + 1 + usize::from(s.sisa.is_some()))} />
            <Grid loaded={loaded.clone()} deleted={session.deleted.clone()} on_delete={on_delete} />
            <Explanation />
            <Theory sequences={loaded.plan.shards.iter().map(|p| p.sequences.clone()).collect::<Vec<_>>()} slices={loaded.plan.slices} />
        </main>
    }
}

/// A shard's retraining: the button (offline, or serving a shortened prefix), the queue, the progress of a running
/// retrain with its cancel button, what the last retrain took, and what SISA would retrain for the same deletions.
fn retrain_controls(loaded: &Loaded, session: &Session, retraining: &Retraining, shard: u16, on: &Actions) -> Html {
    let slices = loaded.plan.slices;
    let state = &session.state;
    let assignment = loaded.routers.s3t.assignment();
    // The visitor's deletions since this shard was last retrained in the page (all of them if never).
    let since = session.retrains.iter().rev().find(|r| r.shard == shard).map_or(0, |r| r.after);
    let recent = session.deleted.get(since..).unwrap_or_default();
    let deleted_here = recent.iter().filter(|id| assignment.cell(id).is_some_and(|c| c.shard == shard)).count();
    let sisa_stale = slices - session.sisa.served(shard).map_or(0, |s| s.prefix);
    let retrain = on.retrain.reform(move |_: MouseEvent| shard);
    let start = on.start.reform(move |_: MouseEvent| shard);
    let cancel = on.cancel.reform(move |_: MouseEvent| shard);
    let job = retraining.current.as_ref().filter(|j| j.shard == shard);
    let finished = retraining.finished.iter().find(|f| f.shard == shard);
    let digests = if finished.is_some() { served_digests(loaded, shard) } else { Default::default() };
    html! {
        <div class="retrain" data-testid={format!("retrain-{shard}")}>
            if let Some(job) = job {
                <div class="progress" data-testid={format!("retrain-progress-{shard}")} data-nodes-done={job.nodes_done.to_string()}
                    data-nodes={job.nodes.to_string()} data-backend={job.backend.clone()}>
                    <progress max={job.samples.max(1).to_string()} value={job.trained.to_string()}
                        aria-label={format!("retraining shard {shard}")} />
                    <span>{ match (job.started, job.rate(), job.eta()) {
                        (None, _, _) => "retraining: loading the worker, data and weights…".to_owned(),
                        (Some(_), Some(rate), Some(eta)) => format!(
                            "nodes {} / {} · {:.0} samples/s · {:.0} s left · {}",
                            job.nodes_done, job.nodes, rate, eta, job.backend
                        ),
                        (Some(_), _, _) => format!("nodes {} / {} · starting · {}", job.nodes_done, job.nodes, job.backend),
                    } }</span>
                    <button onclick={cancel} data-testid={format!("retrain-cancel-{shard}")}>{ "Cancel" }</button>
                </div>
            } else if retraining.is_queued(shard) {
                <span>{ "queued for retraining " }</span>
                <button onclick={cancel} data-testid={format!("retrain-cancel-{shard}")}>{ "Cancel" }</button>
            } else if retraining.asked == Some(shard) && retrain::needs_retrain(state, shard, slices) {
                { ask(loaded, session, shard, sisa_stale, start, on.dismiss.clone()) }
            } else if retrain::needs_retrain(state, shard, slices) {
                <button class={classes!(state.is_offline(shard).then_some("primary"))} onclick={retrain}
                    data-testid={format!("retrain-button-{shard}")}>
                    { if state.is_offline(shard) { format!("Retrain shard {shard}") } else { "Retrain to full depth".to_owned() } }
                </button>
            }
            if let Some(f) = finished {
                <p class="retrained" data-testid={format!("retrained-{shard}")} data-seconds={format!("{:.2}", f.seconds)}
                    data-weights={digests.0.clone()} data-lineage={digests.1.clone()}>
                    { format!("retrained {} nodes in the background in {:.1} s; the other shards kept serving", f.nodes, f.seconds) }
                </p>
            }
            if deleted_here > 0 {
                <p class="cost" data-testid={format!("cost-{shard}")}>
                    { format!(
                        "S3T has served {} of your deletions without retraining ({deleted_here} in this shard{}). For the same deletions SISA would retrain {sisa_stale} of this shard's {slices} checkpoints.",
                        recent.len(),
                        if state.is_offline(shard) { ", the last of which took it offline".to_owned() }
                        else { format!("; it serves {} of {slices} groups", state.served(shard).map_or(0, |s| s.prefix)) }
                    ) }
                </p>
            }
        </div>
    }
}

/// The callbacks of the retrain controls.
struct Actions<'a> {
    /// Retrain (or first ask, [`retrain::asks_first`]).
    retrain: &'a Callback<u16>,
    /// Retrain, as confirmed.
    start: &'a Callback<u16>,
    dismiss: &'a Callback<MouseEvent>,
    cancel: &'a Callback<u16>,
}

/// What retraining a shard will take, before it starts, and what SISA would retrain: the visitor starts it or not.
fn ask(
    loaded: &Loaded,
    session: &Session,
    shard: u16,
    sisa_stale: u16,
    start: Callback<MouseEvent>,
    dismiss: Callback<MouseEvent>,
) -> Html {
    let slices = loaded.plan.slices;
    let Some((estimate, seconds)) = retrain::estimate(loaded, session, shard) else { return html! {} };
    let total = loaded.plan.shards.get(usize::from(shard)).map_or(0, |p| p.nodes.len());
    let what = if loaded.is_text() { "reviews" } else { "samples" };
    let time = match seconds {
        Some(s) => format!(
            "about {} on this device ({}), at the speed this page measured ({:.1} ms per sample per layer){}",
            retrain::duration(s),
            loaded.backend,
            loaded.layer_ms.get().unwrap_or_default(),
            if s > retrain::LONG_SECONDS { ": a long time for a browser tab, which must stay open" } else { "" }
        ),
        None => "a time this page has not measured yet (the first accuracy measures it)".to_owned(),
    };
    html! {
        <div class="ask" data-testid={format!("retrain-ask-{shard}")} data-nodes={estimate.nodes.to_string()}
            data-samples={estimate.samples.to_string()} data-seconds={seconds.map(|s| format!("{s:.1}")).unwrap_or_default()}>
            <p>{ format!(
                "Retraining shard {shard} here trains {} of its {total} nodes on {} {what} in all (each remaining {} \
                 once per pass): {time}. It runs in the background; the other shards keep serving, and Cancel stops it. \
                 For the same deletions SISA would retrain {sisa_stale} of this shard's {slices} checkpoints.",
                estimate.nodes, estimate.samples, &what[..what.len() - 1]
            ) }</p>
            <button class="primary" onclick={start} data-testid={format!("retrain-start-{shard}")}>{ "Start retraining" }</button>
            <button onclick={dismiss} data-testid={format!("retrain-dismiss-{shard}")}>{ "Not now" }</button>
        </div>
    }
}

/// The sha256 of each node's weights and of its lineage in the model served now (comma-separated, by node id): a
/// browser test compares them with `trainer retrain`'s manifest.
fn served_digests(loaded: &Loaded, shard: u16) -> (String, String) {
    let model = loaded.model.borrow();
    let nodes = model.manifest.nodes.get(usize::from(shard)).map(Vec::as_slice).unwrap_or_default();
    let weights = nodes.iter().map(|e| e.weights.sha256.clone()).collect::<Vec<_>>().join(",");
    let lineage = nodes
        .iter()
        .map(|e| e.lineage.iter().map(|l| l.sha256.clone()).collect::<Vec<_>>().join("+"))
        .collect::<Vec<_>>()
        .join(",");
    (weights, lineage)
}

/// Serves stored retrains at startup (before the first evaluation): each shard's nodes of its last retrain, their
/// bytes checked against their entries. Their lineage is checked by the session's restore, at their place among
/// the deletions; a refused one leaves the bundle's own nodes in place.
fn serve_stored(loaded: &Loaded, stored: &[crate::state::Retrain]) -> Result<(), String> {
    let Some(mut evaluator) = loaded.evaluator.borrow_mut().take() else {
        return Err("the evaluator is busy".into());
    };
    let result = (|| {
        let mut model = (*loaded.original).clone();
        for r in stored {
            for (id, bytes) in r.weights.iter() {
                let entry = r.nodes.get(*id).ok_or_else(|| format!("shard {}: no node {id}", r.shard))?;
                s3t::bundle::manifest::verify_bytes(&entry.weights, bytes)?;
            }
            model.replace_shard(&loaded.original, r.shard, (*r.nodes).clone(), (*r.weights).clone())?;
        }
        for shard in 0..loaded.plan.shards.len() as u16 {
            evaluator.forget_shard(shard);
        }
        *loaded.model.borrow_mut() = Rc::new(model);
        Ok(())
    })();
    *loaded.evaluator.borrow_mut() = Some(evaluator);
    result
}
