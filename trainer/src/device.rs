//! `--device auto|gpu|cpu`.

use anyhow::{Result, anyhow};
use clap::ValueEnum;
use s3t::model::device::{DeviceChoice, Selected, select};
use s3t::model::parallel::Batching;

use crate::output;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The GPU (burn-wgpu) when an adapter exists, otherwise the CPU with a notice.
    Auto,
    /// The GPU, or an error.
    Gpu,
    /// The CPU (burn's flex backend).
    Cpu,
}

/// Where a training command runs and how it reports (shared by `pretrain`, `build` and `retrain`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// Where to train: the GPU when one exists (auto), the GPU, or the CPU.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

impl RunOptions {
    /// Progress bars and notices are off for `--quiet` and for `--json` (stdout is for the JSON).
    pub fn quiet(&self) -> bool {
        self.quiet || self.json
    }
}

/// Selects the device; prints the fallback notice unless `quiet`.
pub fn choose(arg: DeviceArg, quiet: bool) -> Result<Selected> {
    let choice = match arg {
        DeviceArg::Auto => DeviceChoice::Auto,
        DeviceArg::Gpu => DeviceChoice::Gpu,
        DeviceArg::Cpu => DeviceChoice::Cpu,
    };
    let selected = select(choice).map_err(|e| anyhow!("--device gpu: {e}"))?;
    if let Some(notice) = &selected.notice
        && !quiet
    {
        output::note(&format!("notice: {notice}"));
    }
    Ok(selected)
}

/// How the independent training runs of one depth share the device (shared by `build`, `retrain` and `bench`).
/// A run's weights do not depend on it (on the CPU, bit for bit).
#[derive(Debug, Clone, clap::Args)]
pub struct BatchingOptions {
    /// Most training runs (nodes of one depth across shards and sequences, or SISA checkpoints of one step across
    /// shards) stacked into one batched computation; memory grows with it [default: 16 on a GPU, where a lone run
    /// waits on kernel launches; 1 on the CPU, where a run keeps a core busy].
    #[arg(long, value_name = "N")]
    pub batch_nodes: Option<usize>,
    /// Such computations trained at the same time, one per CPU thread [default: the CPU's cores; 1 on a GPU].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl BatchingOptions {
    pub fn resolve(&self, selected: &Selected) -> Result<Batching> {
        if self.batch_nodes == Some(0) {
            return Err(anyhow!("--batch-nodes 0: at least one run per batch"));
        }
        if self.threads == Some(0) {
            return Err(anyhow!("--threads 0: at least one thread"));
        }
        let (nodes, threads) = if selected.is_gpu { (16, 1) } else { (1, cpu_threads()) };
        Ok(Batching { nodes: self.batch_nodes.unwrap_or(nodes), threads: self.threads.unwrap_or(threads) })
    }
}

/// The CPU's cores (the threads this process may run at once).
pub fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
