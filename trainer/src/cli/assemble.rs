//! `trainer assemble`: merges the shards built separately (`trainer build --shard i`) into one bundle.

use std::path::PathBuf;

use anyhow::Result;
use s3t::bundle::store::{BundleLock, ShardLock};

use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory the partial builds wrote into.
    pub bundle: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    // Every shard's lock first (no build of any shard may still be writing), then the bundle's.
    let shards = crate::cli::build::recorded_shards(&args.bundle)?;
    let _shard_locks = ShardLock::acquire_all(&args.bundle, 0..shards)?;
    let _lock = BundleLock::acquire(&args.bundle)?;
    let manifest = crate::cli::build::assemble(&args.bundle)?;
    output::print(&format!(
        "assembled {}: {} shards, {} nodes\n",
        args.bundle.display(),
        manifest.nodes.len(),
        manifest.nodes.iter().map(Vec::len).sum::<usize>()
    ))
}
