//! The queue of shards the page retrains, one at a time, in its worker: what waits, what runs, its progress, and
//! what finished. The worker and its messages are the page's side effects; this reducer only records them, and
//! counts the times the worker must be stopped ([`Retraining::stops`]).

use std::rc::Rc;

use super::Reducer;
use crate::State;
use crate::bundle::retrain::Report;

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

#[derive(Debug)]
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

impl Reducer for Retraining {
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

/// An estimate above this many seconds is called long to the visitor.
pub const LONG_SECONDS: f64 = 60.0;

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
