//! Background retraining in the page: a queue of shards and one Web Worker, loaded at the first retrain, that
//! retrains them one at a time with the trainer's build code while this thread keeps serving the live shards.
//!
//! The queue is the shared crate's reducer ([`s3t::page::retraining`]); the worker and its messages are the side
//! effects here. What the worker sends is checked against the deletions known when it arrives
//! ([`s3t::bundle::retrain::accept`]) and only then served, by swapping the shard's nodes while the evaluator is
//! held and dispatching the route reducer's retrain event.

use std::rc::Rc;

use s3t::bundle::guard::Guard;
use s3t::bundle::retrain::{Backend, Estimate, MOST_HELPERS, Report, accept, paired};
pub use s3t::page::retraining::{LONG_SECONDS, duration, needs_retrain};

use s3t_host::frames;
use s3t_host::time::now;

use crate::load::Loaded;
use crate::state::{Reduced, Retrain, RetrainAction, Retraining, Session, SessionAction};

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
    let guard = Guard::new(assignment, session.deleted_at(None));
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
        let guard = Guard::new(loaded.routers.s3t.assignment(), now.deleted_at(after));
        let plan = loaded.plan.shards.get(usize::from(shard)).ok_or((format!("no shard {shard}"), false))?;
        // A link's retrain is replayed once; a retrain of now is tried again while the shard needs it.
        let again = after.is_none() && needs_retrain(&now.state, shard, loaded.plan.slices);
        let (ids, bytes): (Vec<usize>, Vec<Vec<u8>>) = weights.iter().cloned().unzip();
        accept(&guard, shard, plan, nodes, &ids, &bytes).map_err(|e| (e.to_string(), again))?;
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
        model
            .replace_shard(&loaded.original, shard, nodes.to_vec(), weights.to_vec())
            .map_err(|e| (e.to_string(), false))?;
        evaluator.forget_shard(shard);
        *loaded.model.borrow_mut() = Rc::new(model);
        Ok(())
    })();
    *loaded.evaluator.borrow_mut() = Some(evaluator);
    result
}

/// Starts the worker and routes its reports: progress to the queue, a finished shard through [`apply`] to the
/// session (its retrain event) and back to the queue.
pub fn start_worker(
    loaded: Rc<Loaded>,
    session: yew::UseReducerHandle<Reduced<Session>>,
    retraining: yew::UseReducerHandle<Reduced<Retraining>>,
    latest: Rc<std::cell::RefCell<Rc<Session>>>,
) -> Result<web_sys::Worker, String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    let worker = web_sys::Worker::new(WORKER_URL).map_err(|e| format!("the retraining worker did not start: {e:?}"))?;
    let on_message = {
        let retraining = retraining.clone();
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let Ok((report, payloads)) = frames::decode::<Report>(event.data()) else { return };
            match report {
                Report::Ready => retraining.dispatch(RetrainAction::WorkerReady),
                Report::Done { shard, after, nodes, retrained, seconds } => {
                    let weights = match paired(&retrained, payloads) {
                        Ok(weights) => weights,
                        Err(e) => {
                            let failed = Report::Failed { shard, error: e.to_string() };
                            retraining.dispatch(RetrainAction::Report(failed, now()));
                            return;
                        }
                    };
                    let (loaded, session, retraining, latest) =
                        (loaded.clone(), session.clone(), retraining.clone(), latest.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        let served = apply(&loaded, || latest.borrow().clone(), shard, after, &nodes, &weights).await;
                        let (result, again) = match served {
                            Ok(()) => {
                                let (nodes, weights) = (Rc::new(nodes), Rc::new(weights));
                                session.dispatch(match after {
                                    None => SessionAction::Retrained { shard, nodes, weights },
                                    Some(after) => SessionAction::Replayed(Retrain { after, shard, nodes, weights }),
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
