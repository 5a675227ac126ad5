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
