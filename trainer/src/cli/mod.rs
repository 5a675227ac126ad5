//! One module per subcommand: its clap arguments and its `run`.

pub mod assemble;
pub mod build;
pub mod delete;
pub mod eval;
pub mod plan;
pub mod pretrain;
pub mod simulate;

use anyhow::{Result, bail};
use s3t::dataset::Splits;

use crate::bundle_dir::Bundle;
use crate::data::Source;

/// Refuses to evaluate or retrain a bundle against data other than the data it was built from.
pub fn check_data(bundle: &Bundle, source: &Source, splits: &Splits) -> Result<()> {
    let info = source.info(splits);
    if info != bundle.manifest.data {
        bail!(
            "{} was built from data {:?} but --data is {:?} (different samples)",
            bundle.dir.display(),
            bundle.manifest.data.source,
            info.source
        );
    }
    Ok(())
}
pub mod audit;
pub mod bench;
pub mod curve;
pub mod export;
pub mod quality;
pub mod retrain;
