//! A retrain split among helper workers, one per core: the prefix trie's top-level subtrees are independent given
//! the frozen backbone, so each helper retrains whole subtrees ([`s3t::bundle::retrain::split`]) with the same build
//! code, seeds and model selection as one worker would. The worker the page talks to coordinates: it relays the
//! helpers' progress as one job's and merges their nodes into the shard's list. A node's weights do not depend on
//! which helper trained it; the page checks the merged result as it checks any ([`s3t::bundle::retrain::accept`]).
//!
//! Stopping the coordinator (the page's Cancel) stops its helpers with it: a worker's own workers end with it.

use std::cell::RefCell;
use std::rc::Rc;

use s3t::bundle::NodeEntry;
use s3t::bundle::retrain::{Backend, MOST_HELPERS, Report, Request, merge, paired, split};
use s3t::plan::ShardPlan;
use s3t_host::frames::{self, post};
use s3t_host::time::now;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{ErrorEvent, MessageEvent, Worker};

use crate::job::{Setup, Target, train};

/// Retrains the requested shard: here on WebGPU, or on the CPU here when at most one subtree has work (or the
/// machine has one core), else on the CPU split among helpers, with `Done` or `Failed` posted when they finish.
/// With `Auto`, a WebGPU retrain that fails (a lost device, a limit the adapter lacks) is done again on the CPU.
pub async fn coordinate(request: &Request) -> Result<(), String> {
    let began = now();
    let setup = Setup::load(request).await?;
    let target = Target::select(request.backend).await?;
    if !target.is_gpu {
        return on_cpu(request, setup, began, target).await;
    }
    // One device queue: the shard's nodes of one depth train as one stacked computation there.
    match train(request, setup, began, target).await {
        Err(e) if request.backend == Backend::Auto => {
            web_sys::console::warn_1(
                &format!("s3t worker: WebGPU training failed ({e}); retraining on the CPU").into(),
            );
            let setup = Setup::load(request).await?;
            let target = Target { note: Some("WebGPU training failed".into()), ..Target::cpu() };
            on_cpu(request, setup, began, target).await
        }
        result => result,
    }
}

/// The CPU part of [`coordinate`].
async fn on_cpu(request: &Request, setup: Setup, began: f64, target: Target) -> Result<(), String> {
    let cores = frames::worker_scope().navigator().hardware_concurrency() as usize;
    let shares = split(setup.shard_plan(request.shard), |n| setup.work(n), cores.clamp(1, MOST_HELPERS));
    if shares.len() <= 1 {
        return train(request, setup, began, target).await;
    }
    let helpers = target.describe(shares.len());
    let url = frames::worker_scope().location().href();
    let team = Rc::new(RefCell::new(Team {
        request: request.clone(),
        began,
        started: setup.started(request.shard, None, &helpers),
        announced: false,
        plan: setup.shard_plan(request.shard).clone(),
        reuse: setup.reuse.clone(),
        helpers: Vec::with_capacity(shares.len()),
        progress: vec![(0, 0); shares.len()],
        parts: shares.iter().map(|_| None).collect(),
        shares,
        over: false,
    }));
    let count = team.borrow().shares.len();
    for i in 0..count {
        let helper = match Worker::new(&url) {
            Ok(helper) => helper,
            Err(e) => {
                // The helpers already started would wait for nothing.
                team.borrow_mut().stop();
                return Err(format!("a retraining helper did not start: {e:?}"));
            }
        };
        let on_message = {
            let team = team.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| team.borrow_mut().report(i, &event))
        };
        let on_error = {
            let team = team.clone();
            Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
                team.borrow_mut().fail(format!("retraining helper {i} failed: {}", event.message()));
            })
        };
        helper.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        helper.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        // The handlers live as long as the helper.
        on_message.forget();
        on_error.forget();
        team.borrow_mut().helpers.push(helper);
    }
    Ok(())
}

/// A finished helper's nodes and retrained weights (node id, bytes).
type Part = (Vec<NodeEntry>, Vec<(usize, Vec<u8>)>);

/// The helpers of one split retrain and what they reported.
struct Team {
    request: Request,
    /// Page time of the request, for `Done`'s seconds.
    began: f64,
    /// The whole job's `Started`, sent when the first helper starts training.
    started: Report,
    announced: bool,
    plan: ShardPlan,
    reuse: Vec<Option<NodeEntry>>,
    shares: Vec<Vec<usize>>,
    helpers: Vec<Worker>,
    /// Each helper's samples trained and nodes finished.
    progress: Vec<(usize, usize)>,
    /// Each finished helper's part.
    parts: Vec<Option<Part>>,
    /// Done or failed: later messages are ignored.
    over: bool,
}

impl Team {
    fn report(&mut self, i: usize, event: &MessageEvent) {
        if self.over {
            return;
        }
        let Ok((report, payloads)) = frames::decode::<Report>(event.data()) else { return };
        let shard = self.request.shard;
        match report {
            Report::Ready => {
                let share =
                    Request { roots: Some(self.shares[i].clone()), backend: Backend::Cpu, ..self.request.clone() };
                match serde_json::to_string(&share) {
                    Ok(text) => {
                        let _ = self.helpers[i].post_message(&text.into());
                    }
                    Err(e) => self.fail(format!("a helper's request: {e}")),
                }
            }
            Report::Started { .. } => {
                if !self.announced {
                    self.announced = true;
                    post(&self.started, &[]);
                }
            }
            Report::Progress { samples, nodes_done, .. } => {
                self.progress[i] = (samples, nodes_done);
                let (samples, nodes_done) = self.progress.iter().fold((0, 0), |(s, n), p| (s + p.0, n + p.1));
                post(&Report::Progress { shard, samples, nodes_done }, &[]);
            }
            Report::Done { nodes, retrained, .. } => {
                let weights = match paired(&retrained, payloads) {
                    Ok(weights) => weights,
                    Err(e) => return self.fail(format!("helper {i}: {e}")),
                };
                self.parts[i] = Some((nodes, weights));
                if self.parts.iter().all(Option::is_some)
                    && let Err(e) = self.finish()
                {
                    self.fail(e);
                }
            }
            Report::Failed { error, .. } => self.fail(error),
        }
    }

    /// Every helper is done: one `Done` with the shard's merged nodes and the retrained weights in node order.
    fn finish(&mut self) -> Result<(), String> {
        let (mut nodes, mut weights) = (Vec::new(), Vec::new());
        for (part, retrained) in self.parts.drain(..).flatten() {
            nodes.push(part);
            weights.extend(retrained);
        }
        weights.sort_by_key(|(id, _)| *id);
        let nodes = merge(self.request.shard, &self.plan, &self.reuse, nodes).map_err(|e| e.to_string())?;
        let (retrained, bytes): (Vec<usize>, Vec<Vec<u8>>) = weights.into_iter().unzip();
        let seconds = (now() - self.began) / 1000.0;
        let (shard, after) = (self.request.shard, self.request.after);
        post(&Report::Done { shard, after, nodes, retrained, seconds }, &bytes);
        self.stop();
        Ok(())
    }

    fn fail(&mut self, error: String) {
        if !self.over {
            post(&Report::Failed { shard: self.request.shard, error }, &[]);
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.over = true;
        for helper in &self.helpers {
            helper.terminate();
        }
    }
}
