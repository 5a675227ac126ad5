//! The main screen: the session's panels. Its state is the shared crate's reducers ([`crate::state`]), its
//! effects are hooks ([`crate::hooks`], [`crate::evaluation`]); here it only renders and dispatches.

use std::rc::Rc;

use s3t::simulate::expected_deletions_left;
use yew::prelude::*;

use crate::chart::Chart;
use crate::evaluation::{Evaluated, use_evaluation};
use crate::hooks::{use_restore, use_retrain_worker, use_save, use_session};
use crate::load::Loaded;
use crate::probe::Probe;
use crate::retrain;
use crate::sentence::Sentence;
use crate::state::{Reduced, RetrainAction, Retraining, Session, SessionAction};
use crate::theory::Theory;
use crate::tour::Tour;
use crate::views::{Capacity, Explanation, Grid, Inspector, ShardPanel};

#[derive(Properties, Clone)]
pub struct Props {
    pub loaded: Rc<Loaded>,
}

impl PartialEq for Props {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.loaded, &other.loaded)
    }
}

#[function_component(SessionView)]
pub fn session_view(props: &Props) -> Html {
    let loaded = props.loaded.clone();
    let session = use_session(&loaded);
    let retraining = use_reducer(|| Reduced::new(Retraining::default()));
    // The bundle's identity in links and local storage.
    let bundle_tag: String = loaded.original.manifest.backbone.weights.sha256.chars().take(12).collect();
    use_restore(&loaded, &session, &retraining, &bundle_tag);
    use_save(&session, &bundle_tag);
    let Evaluated { scores, history, failure } = use_evaluation(&loaded, &session);
    use_retrain_worker(&loaded, &session, &retraining);
    let on_delete = {
        let session = session.clone();
        Callback::from(move |id: s3t::SampleId| session.dispatch(SessionAction::Delete(id)))
    };
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
