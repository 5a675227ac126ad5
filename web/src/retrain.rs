//! Background retraining in the page: a queue of shards and one Web Worker, loaded at the first retrain, that
//! retrains them one at a time with the trainer's build code while this thread keeps serving the live shards.
//!
//! The queue is a reducer (what is waiting, what runs, its progress); the worker and its messages are the side
//! effects. What the worker sends is checked against the deletions known when it arrives
//! ([`s3t::bundle::retrain::accept`]) and only then served, by swapping the shard's nodes while the evaluator is
//! held and dispatching the route reducer's retrain event.

use std::rc::Rc;

use s3t::bundle::guard::Guard;
use s3t::bundle::retrain::{Backend, Estimate, MOST_HELPERS, Report, accept};
use s3t::{SampleId, State};
use yew::Reducible;

use crate::load::Loaded;
use crate::state::Session;

/// The worker's loader script (trunk names it after the worker crate, without a content hash).
pub const WORKER_URL: &str = "./s3t-worker_loader.js";
/// Nodes of one depth the worker trains as one batched computation: one, so the first node arrives as soon as
/// it can (on the CPU batching saves nothing, and a node's weights do not depend on it).
pub const BATCH_NODES: usize = 1;

/// Where the worker trains: the page's `?train=` query (`cpu`, `gpu`), else WebGPU on a hardware adapter and the
/// CPU otherwise.
pub fn backend() -> Backend {
    let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    let value = search.trim_start_matches('?').split('&').find_map(|pair| pair.strip_prefix("train="));
    value.map_or(Backend::Auto, Backend::from_query)
}

/// A retrain under way.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub shard: u16,
    /// A link's retrain, replayed at its place: after the first `after` of the visitor's deletions (`None`: now,
    /// after all of them).
    pub after: Option<usize>,
    /// The request went to the worker.
    pub sent: bool,
    /// From the worker's `Started`: nodes to train, nodes of the shard, samples to train in all.
    pub nodes: usize,
    pub total: usize,
    pub samples: usize,
    pub trained: usize,
    pub nodes_done: usize,
    /// Page time (ms) of `Started`, and of the first finished node.
    pub started: Option<f64>,
    pub first_node: Option<f64>,
    pub now: f64,
    /// From `Started`: where the worker trains, in words.
    pub backend: String,
}

impl Job {
    fn new(shard: u16, after: Option<usize>) -> Self {
        Self {
            shard,
            after,
            sent: false,
            nodes: 0,
            total: 0,
            samples: 0,
            trained: 0,
            nodes_done: 0,
            started: None,
            first_node: None,
            now: 0.0,
            backend: String::new(),
        }
    }

    /// Samples per second since training started.
    pub fn rate(&self) -> Option<f64> {
        let seconds = (self.now - self.started?) / 1000.0;
        (seconds > 0.5 && self.trained > 0).then(|| self.trained as f64 / seconds)
    }

    /// Seconds left at the current rate.
    pub fn eta(&self) -> Option<f64> {
        self.rate().map(|r| self.samples.saturating_sub(self.trained) as f64 / r)
    }
}

/// A finished retrain, for the shard's panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub shard: u16,
    pub nodes: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retraining {
    /// Waiting: (shard, place among the deletions for a link's retrain).
    pub queue: Vec<(u16, Option<usize>)>,
    pub current: Option<Job>,
    /// The worker is loaded and waits for a request.
    pub ready: bool,
    /// Counts the times the worker must be stopped (a cancelled job): the effect that owns it terminates it.
    pub stops: u64,
    pub finished: Vec<Finished>,
    pub error: Option<String>,
    /// A shard whose retrain the visitor asked for and must confirm, having seen its estimate (a long one, or
    /// any retrain of a text bundle's language model).
    pub asked: Option<u16>,
}

pub enum RetrainAction {
    /// Show what retraining a shard will take, before it starts.
    Ask(u16),
    /// Close that without retraining.
    Dismiss,
    /// Retrain a shard (queued behind the others).
    Enqueue(u16),
    /// Replay a link's retrain of a shard after the first `after` of the visitor's deletions.
    EnqueueAt {
        shard: u16,
        after: usize,
    },
    /// Drop a queued shard, or stop the running job.
    Cancel(u16),
    /// Stop everything (Reset: the deletions the jobs were for are undone).
    CancelAll,
    WorkerReady,
    /// The worker itself failed (its code did not load, or it crashed): it is stopped, the job dropped.
    WorkerError(String),
    Sent,
    Report(Report, f64),
    /// The result was served (`Ok(seconds)`), or refused; `again`: a deletion arrived meanwhile, so the shard is
    /// queued again.
    Applied {
        shard: u16,
        result: Result<f64, String>,
        again: bool,
    },
}

impl Retraining {
    fn next(mut self) -> Self {
        if self.current.is_none() && !self.queue.is_empty() {
            let (shard, after) = self.queue.remove(0);
            self.current = Some(Job::new(shard, after));
        }
        self
    }

    pub fn is_busy(&self, shard: u16) -> bool {
        self.is_queued(shard) || self.current.as_ref().is_some_and(|j| j.shard == shard)
    }

    pub fn is_queued(&self, shard: u16) -> bool {
        self.queue.iter().any(|&(s, _)| s == shard)
    }
}

impl Reducible for Retraining {
    type Action = RetrainAction;

    fn reduce(self: Rc<Self>, action: RetrainAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            RetrainAction::Ask(shard) => {
                if next.is_busy(shard) {
                    return self;
                }
                next.asked = Some(shard);
            }
            RetrainAction::Dismiss => next.asked = None,
            RetrainAction::Enqueue(shard) => {
                if next.asked == Some(shard) {
                    next.asked = None;
                }
                if next.is_busy(shard) {
                    return Rc::new(next);
                }
                next.queue.push((shard, None));
                next.error = None;
            }
            // A link may name a shard more than once: each retrain is replayed at its place, in order.
            RetrainAction::EnqueueAt { shard, after } => next.queue.push((shard, Some(after))),
            RetrainAction::Cancel(shard) => {
                next.queue.retain(|&(s, _)| s != shard);
                if next.current.as_ref().is_some_and(|j| j.shard == shard) {
                    next.current = None;
                    next.ready = false;
                    next.stops += 1;
                }
            }
            RetrainAction::CancelAll => {
                next.queue.clear();
                if next.current.take().is_some() {
                    next.ready = false;
                    next.stops += 1;
                }
            }
            RetrainAction::WorkerReady => next.ready = true,
            RetrainAction::WorkerError(error) => {
                let shard = next.current.take().map_or_else(String::new, |j| format!(" (shard {})", j.shard));
                next.error = Some(format!("the retraining worker failed{shard}: {error}"));
                next.ready = false;
                next.stops += 1;
            }
            RetrainAction::Sent => {
                if let Some(job) = next.current.as_mut() {
                    job.sent = true;
                }
                next.ready = false;
            }
            RetrainAction::Report(report, now) => {
                let Some(job) = next.current.as_mut() else { return self };
                match report {
                    Report::Ready => next.ready = true,
                    Report::Started { shard, nodes, total, samples, backend } if shard == job.shard => {
                        (job.nodes, job.total, job.samples, job.started, job.now, job.backend) =
                            (nodes, total, samples, Some(now), now, backend);
                    }
                    Report::Progress { shard, samples, nodes_done } if shard == job.shard => {
                        if nodes_done > 0 && job.first_node.is_none() {
                            job.first_node = Some(now);
                        }
                        (job.trained, job.nodes_done, job.now) = (samples, nodes_done, now);
                    }
                    Report::Failed { shard, error } if shard == job.shard => {
                        next.error = Some(format!("retraining shard {shard} failed: {error}"));
                        next.current = None;
                        next.ready = true;
                    }
                    // `Done` is applied by the effect, which then reports `Applied`.
                    _ => return self,
                }
            }
            RetrainAction::Applied { shard, result, again } => {
                if next.current.as_ref().is_some_and(|j| j.shard == shard) {
                    next.current = None;
                    next.ready = true;
                }
                match result {
                    Ok(seconds) => {
                        next.finished.retain(|f| f.shard != shard);
                        let nodes = self.current.as_ref().map_or(0, |j| j.nodes);
                        next.finished.push(Finished { shard, nodes, seconds });
                    }
                    Err(e) if again => {
                        next.error = Some(format!("shard {shard}: {e}; retraining it again"));
                        if !next.is_queued(shard) {
                            next.queue.insert(0, (shard, None));
                        }
                    }
                    Err(e) => next.error = Some(format!("shard {shard}: the retrained nodes were refused: {e}")),
                }
            }
        }
        Rc::new(next.next())
    }
}

/// The deleted ids a retrain is for: the bundle's ledger and the visitor's deletions, all of them or (a link's
/// retrain, replayed at its place) the first `after`.
pub fn deleted_at(loaded: &Loaded, session: &Session, after: Option<usize>) -> Vec<SampleId> {
    match after {
        None => session.state.deleted().cloned().collect(),
        Some(n) => loaded.base.deleted.iter().chain(session.deleted.iter().take(n)).cloned().collect(),
    }
}

/// An estimate above this many seconds is called long to the visitor.
pub const LONG_SECONDS: f64 = 60.0;

/// The worker's forward pass per sample and layer against the page's measured one on the CPU: the worker is built
/// for speed (`opt-level = 3`) and runs large batches, the page's evaluation is paced in batches of 8. Measured on
/// the MiniLM demo (2 cores): 3.9 ms in the worker, 14.9 ms on the page. A page on WebGPU trains on WebGPU, whose
/// ratio is not measured: 1 there.
const WORKER_SPEED_ON_CPU: f64 = 0.26;

/// What retraining `shard` after the deletions so far will take ([`s3t::bundle::retrain::Estimate`]), and its time
/// at the page's measured speed, if measured yet.
pub fn estimate(loaded: &Loaded, session: &Session, shard: u16) -> Option<(Estimate, Option<f64>)> {
    let model = loaded.model.borrow();
    let manifest = &model.manifest;
    let plan = loaded.plan.shards.get(usize::from(shard))?;
    let assignment = loaded.routers.s3t.assignment();
    let guard = Guard::new(assignment, deleted_at(loaded, session, None));
    let reuse = guard.reusable(manifest.nodes.get(usize::from(shard))?);
    let cores = web_sys::window().map_or(1, |w| w.navigator().hardware_concurrency() as usize);
    let helpers = if loaded.is_gpu { 1 } else { cores.clamp(1, MOST_HELPERS) };
    let estimate = Estimate::new(manifest, plan, assignment, &guard, &reuse, helpers);
    let ratio = if loaded.is_gpu { 1.0 } else { WORKER_SPEED_ON_CPU };
    let seconds = loaded.layer_ms.get().map(|ms| estimate.seconds(ms * ratio));
    Some((estimate, seconds))
}

/// Whether a retrain is confirmed before it starts: a text bundle's, a language model trained in a browser tab,
/// which takes minutes on a CPU. (An image shard retrains in seconds; its estimate would also be made on the page's
/// device, which on a software WebGPU adapter is not the CPU the worker then trains on.)
pub fn asks_first(loaded: &Loaded) -> bool {
    loaded.is_text()
}

/// A duration in words: "40 s", "3 min", "1 h 20 min".
pub fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 90.0 => format!("{:.0} s", s.max(1.0)),
        s if s < 5400.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.0} h {:.0} min", (s / 3600.0).floor(), (s % 3600.0) / 60.0),
    }
}

/// Whether a shard serves less than its full model (offline, or a shortened prefix): what a retrain mends.
pub fn needs_retrain(state: &State, shard: u16, slices: u16) -> bool {
    state.served(shard).is_none_or(|s| s.prefix < slices)
}

/// Serves a finished retrain, if it is still exact: checks the nodes against every deletion known now, swaps
/// them in while the evaluator is held (nothing memoised from the old nodes survives), then the caller dispatches
/// the route reducer's retrain event. `Err((why, again))`: refused; `again` when the shard still needs retraining.
pub async fn apply(
    loaded: &Loaded,
    session: impl Fn() -> Rc<Session>,
    shard: u16,
    after: Option<usize>,
    nodes: &[s3t::bundle::NodeEntry],
    weights: &[(usize, Vec<u8>)],
) -> Result<(), (String, bool)> {
    let mut evaluator = loaded.take_evaluator().await;
    // From here to the dispatch nothing awaits: the session read now is the one the nodes are served in.
    let now = session();
    let result = (|| {
        let guard = Guard::new(loaded.routers.s3t.assignment(), deleted_at(loaded, &now, after));
        let plan = loaded.plan.shards.get(usize::from(shard)).ok_or((format!("no shard {shard}"), false))?;
        // A link's retrain is replayed once; a retrain of now is tried again while the shard needs it.
        let again = after.is_none() && needs_retrain(&now.state, shard, loaded.plan.slices);
        let (ids, bytes): (Vec<usize>, Vec<Vec<u8>>) = weights.iter().cloned().unzip();
        accept(&guard, shard, plan, nodes, &ids, &bytes).map_err(|e| (e, again))?;
        // A session without retrains serves the bundle's nodes: start from those.
        let base = if now.retrains.is_empty() {
            for s in 0..now.state.shards() {
                evaluator.forget_shard(s);
            }
            loaded.original.clone()
        } else {
            loaded.model.borrow().clone()
        };
        let mut model = (*base).clone();
        model.replace_shard(&loaded.original, shard, nodes.to_vec(), weights.to_vec()).map_err(|e| (e, false))?;
        evaluator.forget_shard(shard);
        *loaded.model.borrow_mut() = Rc::new(model);
        Ok(())
    })();
    *loaded.evaluator.borrow_mut() = Some(evaluator);
    result
}

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

/// Starts the worker and routes its reports: progress to the queue, a finished shard through [`apply`] to the
/// session (its retrain event) and back to the queue.
pub fn start_worker(
    loaded: Rc<Loaded>,
    session: yew::UseReducerHandle<Session>,
    retraining: yew::UseReducerHandle<Retraining>,
    latest: Rc<std::cell::RefCell<Rc<Session>>>,
) -> Result<web_sys::Worker, String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    let worker = web_sys::Worker::new(WORKER_URL).map_err(|e| format!("the retraining worker did not start: {e:?}"))?;
    let on_message = {
        let retraining = retraining.clone();
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let parts: js_sys::Array = event.data().unchecked_into();
            let Some(report) = parts.get(0).as_string().and_then(|t| serde_json::from_str::<Report>(&t).ok()) else {
                return;
            };
            match report {
                Report::Ready => retraining.dispatch(RetrainAction::WorkerReady),
                Report::Done { shard, after, nodes, retrained, seconds } => {
                    let weights: Vec<(usize, Vec<u8>)> = retrained
                        .iter()
                        .zip(1..parts.length())
                        .map(|(&id, i)| (id, js_sys::Uint8Array::new(&parts.get(i)).to_vec()))
                        .collect();
                    if weights.len() != retrained.len() {
                        let error = format!("{} weight files for {} retrained nodes", weights.len(), retrained.len());
                        retraining.dispatch(RetrainAction::Report(Report::Failed { shard, error }, now()));
                        return;
                    }
                    let (loaded, session, retraining, latest) =
                        (loaded.clone(), session.clone(), retraining.clone(), latest.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        let served = apply(&loaded, || latest.borrow().clone(), shard, after, &nodes, &weights).await;
                        let (result, again) = match served {
                            Ok(()) => {
                                let (nodes, weights) = (Rc::new(nodes), Rc::new(weights));
                                session.dispatch(match after {
                                    None => crate::state::SessionAction::Retrained { shard, nodes, weights },
                                    Some(after) => crate::state::SessionAction::Replayed(crate::state::Retrain {
                                        after,
                                        shard,
                                        nodes,
                                        weights,
                                    }),
                                });
                                (Ok(seconds), false)
                            }
                            Err((why, again)) => (Err(why), again),
                        };
                        retraining.dispatch(RetrainAction::Applied { shard, result, again });
                    });
                }
                other => retraining.dispatch(RetrainAction::Report(other, now())),
            }
        })
    };
    let on_error = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
        retraining.dispatch(RetrainAction::WorkerError(event.message()));
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    // The handlers live as long as the worker (one per retrain queue run; a cancelled worker takes its own along).
    on_message.forget();
    on_error.forget();
    Ok(worker)
}
