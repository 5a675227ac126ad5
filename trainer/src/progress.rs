//! Progress bars (indicatif) for long training runs; silent with `--quiet` or `--json`.

use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use s3t::model::build::BuildEvent;

/// One bar for the overall run (nodes done of all) and one for the current batch of runs (a level's nodes trained
/// together: samples, samples/s, time left).
pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    step: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    samples: u64,
}

impl Progress {
    pub fn new(total_steps: u64, what: &str, quiet: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let overall = multi.add(ProgressBar::new(total_steps));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        overall.set_prefix(what.to_owned());
        Self { multi, overall, step: None, quiet, started: Instant::now(), samples: 0 }
    }

    pub fn event(&mut self, event: BuildEvent) {
        match event {
            BuildEvent::Start { label, nodes, samples } => {
                let bar = self.multi.add(ProgressBar::new(samples as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>10} {msg:36} [{bar:30}] {human_pos}/{human_len} samples {per_sec} ETA {eta}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(if nodes == 1 { "1 run".to_owned() } else { format!("{nodes} runs") });
                bar.set_message(label);
                if let Some(old) = self.step.replace(bar) {
                    old.finish_and_clear();
                }
            }
            BuildEvent::Progress { samples } => {
                self.samples += samples as u64;
                if let Some(bar) = &self.step {
                    bar.inc(samples as u64);
                }
            }
            BuildEvent::Done { shard, label, validation_accuracy, reused } => {
                if let Some(bar) = self.step.take() {
                    bar.finish_and_clear();
                }
                self.overall.inc(1);
                let how = if reused { "reused" } else { "trained" };
                self.overall.set_message(format!(
                    "shard {shard} {label} {how}, validation accuracy {:.1}%",
                    validation_accuracy * 100.0
                ));
            }
        }
    }

    /// Samples trained so far and the throughput over the run.
    pub fn finish(self) -> (u64, f64) {
        self.overall.finish_and_clear();
        let secs = self.started.elapsed().as_secs_f64();
        let _ = self.quiet;
        (self.samples, if secs > 0.0 { self.samples as f64 / secs } else { 0.0 })
    }
}
