//! Independent training runs side by side (feature `learn`): how the runs of one call share the machine.
//!
//! A plan level's runs are independent given their parents. On a GPU they are stacked into one computation (a
//! level batch, [`super::level`]); on a CPU a run of this model's size keeps one core busy with its own products,
//! so the runs go one per thread instead (native `train` builds; the page's worker has one thread and runs them one
//! after another). A run's arithmetic is the same on any thread, so its weights do not depend on either choice.

use std::cell::RefCell;

use super::train::Progress;

/// How a call's independent runs are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Runs stacked into one computation (a level batch); 1 trains each alone.
    pub nodes: usize,
    /// Computations trained at the same time, one per CPU thread (native `train` builds; 1 elsewhere).
    pub threads: usize,
}

impl Batching {
    /// `nodes` runs stacked, one computation at a time.
    pub fn stacked(nodes: usize) -> Self {
        Self { nodes: nodes.max(1), threads: 1 }
    }

    /// One run per computation, `threads` at a time.
    pub fn threaded(threads: usize) -> Self {
        Self { nodes: 1, threads: threads.max(1) }
    }

    /// Runs in flight at once.
    pub fn width(&self) -> usize {
        self.nodes.max(1) * self.threads.max(1)
    }
}

/// `f` over `items`, results in order, on up to `threads` threads. `f` reports trained samples through its second
/// argument; they reach `progress` on the calling thread.
pub fn map<T: Sync, U: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T, &dyn Fn(usize)) -> U + Sync,
    progress: Progress<'_>,
) -> Vec<U> {
    #[cfg(feature = "train")]
    if threads > 1
        && items.len() > 1
        // Without threads to be had, the same results come one after another.
        && let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(threads.min(items.len())).build()
    {
        return threaded(&pool, items, &f, progress);
    }
    let _ = threads;
    let progress = RefCell::new(progress);
    items.iter().map(|item| f(item, &|n| (*progress.borrow_mut())(n))).collect()
}

#[cfg(feature = "train")]
fn threaded<T: Sync, U: Send>(
    pool: &rayon::ThreadPool,
    items: &[T],
    f: &(impl Fn(&T, &dyn Fn(usize)) -> U + Sync),
    progress: Progress<'_>,
) -> Vec<U> {
    use rayon::prelude::*;

    let (sender, reports) = std::sync::mpsc::channel::<usize>();
    std::thread::scope(|scope| {
        // The runs go to the pool (products inside a run stay on its thread while every thread is busy); this
        // thread forwards their progress as it comes, and the channel closes when the last run is done.
        let worker = scope.spawn(move || {
            pool.install(|| {
                items
                    .par_iter()
                    .map(|item| {
                        f(item, &|n| {
                            // The receiver outlives every sender; a failed send has no one to tell.
                            let _ = sender.send(n);
                        })
                    })
                    .collect::<Vec<U>>()
            })
        });
        for n in reports {
            progress(n);
        }
        match worker.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
