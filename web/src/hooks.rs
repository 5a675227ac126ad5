//! The main screen's effects, one hook each: restoring a saved state, saving the visitor's changes, and the
//! retraining worker. Each reacts to a counter of the reducers ([`s3t::page`]); the screen only renders and
//! dispatches.

use std::rc::Rc;

use yew::prelude::*;

use crate::load::Loaded;
use crate::persist;
use crate::retrain;
use crate::state::{Fixed, Reduced, Retrain, RetrainAction, Retraining, Session, SessionAction};

/// The session reducer of a loaded bundle, starting from the bundle's ledger.
#[hook]
pub fn use_session(loaded: &Rc<Loaded>) -> UseReducerHandle<Reduced<Session>> {
    let loaded = loaded.clone();
    use_reducer(move || {
        let routers = &loaded.routers;
        let fixed = Fixed { s3t: routers.s3t.clone(), sisa: routers.sisa.clone(), base: loaded.base.clone() };
        Reduced::new(Session::new(Rc::new(fixed)))
    })
}

/// Restores the state from the URL, else from local storage, once. Retrains kept with this very state are served
/// again (checked like a fresh retrain); those a link only names are retrained here. `tag` names the bundle.
#[hook]
pub fn use_restore(
    loaded: &Rc<Loaded>,
    session: &UseReducerHandle<Reduced<Session>>,
    retraining: &UseReducerHandle<Reduced<Retraining>>,
    tag: &str,
) {
    let session = session.clone();
    let retraining = retraining.clone();
    let loaded = loaded.clone();
    let tag = tag.to_owned();
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
            Err(why) => session.dispatch(SessionAction::Ignore { why: why.to_string(), source }),
        }
    });
}

/// Saves the visitor's changes (only theirs: see `Session::revision`), the retrains' weights with them.
#[hook]
pub fn use_save(session: &UseReducerHandle<Reduced<Session>>, tag: &str) {
    let tag = tag.to_owned();
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

/// The retraining worker: started when a job waits (its code loads then, not with the page), sent the job's
/// request once it is ready, and stopped when a job is cancelled (a new one starts with the next job).
#[hook]
pub fn use_retrain_worker(
    loaded: &Rc<Loaded>,
    session: &UseReducerHandle<Reduced<Session>>,
    retraining: &UseReducerHandle<Reduced<Retraining>>,
) {
    let worker = use_mut_ref(|| None::<web_sys::Worker>);
    // The session as last rendered, for the worker's messages (their handler outlives a render).
    let latest = use_mut_ref(|| session.rc());
    *latest.borrow_mut() = session.rc();
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
                    deleted: session.deleted_at(retraining_handle.current.as_ref().and_then(|j| j.after)),
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
}

/// Serves stored retrains at startup (before the first evaluation): each shard's nodes of its last retrain, their
/// bytes checked against their entries. Their lineage is checked by the session's restore, at their place among
/// the deletions; a refused one leaves the bundle's own nodes in place.
fn serve_stored(loaded: &Loaded, stored: &[Retrain]) -> Result<(), String> {
    let Some(mut evaluator) = loaded.evaluator.borrow_mut().take() else {
        return Err("the evaluator is busy".into());
    };
    let result = (|| {
        let mut model = (*loaded.original).clone();
        for r in stored {
            for (id, bytes) in r.weights.iter() {
                let entry = r.nodes.get(*id).ok_or_else(|| format!("shard {}: no node {id}", r.shard))?;
                s3t::bundle::manifest::verify_bytes(&entry.weights, bytes).map_err(|e| e.to_string())?;
            }
            model
                .replace_shard(&loaded.original, r.shard, (*r.nodes).clone(), (*r.weights).clone())
                .map_err(|e| e.to_string())?;
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
