//! `--device auto|gpu|cpu`.

use anyhow::{Result, anyhow};
use clap::ValueEnum;
use s3t::model::device::{DeviceChoice, Selected, select};

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
