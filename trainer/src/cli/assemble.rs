//! `trainer assemble`: merges the shards built separately (`trainer build --shard i`) into one bundle.

use std::path::PathBuf;

use anyhow::Result;

use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory the partial builds wrote into.
    pub bundle: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let _lock = s3t::bundle::store::BundleLock::acquire(&args.bundle).map_err(|e| anyhow::anyhow!(e))?;
    let manifest = crate::cli::build::assemble(&args.bundle)?;
    output::print(&format!(
        "assembled {}: {} shards, {} nodes\n",
        args.bundle.display(),
        manifest.nodes.len(),
        manifest.nodes.iter().map(Vec::len).sum::<usize>()
    ))
}
