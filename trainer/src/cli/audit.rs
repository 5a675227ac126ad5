//! `trainer audit`: proves that no served component saw a deleted sample (exit status 0 only when it holds).

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use s3t::bundle::audit::audit;
use s3t::bundle::store::verify;

use crate::bundle_dir::Bundle;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let bundle = Bundle::open(&args.bundle)?;
    // Tampered weights fail here: every file must match the sha256 the manifest recorded.
    verify(&args.bundle, &bundle.manifest).map_err(|e| anyhow!("audit failed: {e}"))?;
    let actions = bundle.actions()?;
    let state = bundle.state(&actions)?;
    let deleted: HashSet<_> = state.deleted().cloned().collect();
    let plan = bundle.manifest.plan().map_err(|e| anyhow!("{e}"))?;
    let report = audit(&bundle.manifest, &plan, bundle.router.assignment(), &state, &deleted);
    if args.json {
        output::print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        output::print(&format!(
            "checked {} served components ({} nodes) against {} deleted samples and {} weight files\n",
            report.served_components,
            report.nodes_checked,
            report.deleted,
            bundle.manifest.weight_files().count()
        ))?;
    }
    if !report.holds() {
        for v in &report.violations {
            output::note(&format!("violation: {v}"));
        }
        bail!("audit failed: {} served nodes saw deleted samples", report.violations.len());
    }
    if !args.json {
        output::print("audit holds: no served component saw a deleted sample\n")?;
    }
    Ok(())
}
