//! Opening a bundle directory: manifest, weights (checksummed), ledger and routing state.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::tensor::Device;
use s3t::bundle::Manifest;
use s3t::bundle::manifest::LEDGER_FILE;
use s3t::bundle::store::{read_manifest, read_weights};
use s3t::ledger::Ledger;
use s3t::model::serve::Model;
use s3t::{Action, Router, State};

/// A bundle's manifest and its routers (S3T and SISA), without weights.
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub router: Router,
    pub sisa_router: Router,
}

impl Bundle {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = read_manifest(dir).map_err(|e| anyhow!(e))?;
        let assignment = manifest.assignment().map_err(|e| anyhow!("{}: partition: {e}", dir.display()))?;
        let plan = manifest.plan().map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        let sisa_plan = manifest.sisa_plan().map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        let router = manifest.router(assignment.clone(), &plan).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        let sisa_router = Router::new(assignment, &sisa_plan).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        Ok(Self { dir: dir.to_owned(), manifest, router, sisa_router })
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.dir.join(LEDGER_FILE)
    }

    /// The recorded actions (empty when no ledger exists yet); a torn tail is reported, not repaired.
    pub fn actions(&self) -> Result<Vec<Action>> {
        let path = self.ledger_path();
        if !path.exists() {
            return Ok(Vec::new());
        }
        let (actions, recovery) = Ledger::read(&path)?;
        if recovery.repaired() {
            crate::output::note(&format!(
                "notice: {}: {recovery} (the next `trainer delete` repairs it)",
                path.display()
            ));
        }
        Ok(actions)
    }

    /// The S3T serving state after the ledger.
    pub fn state(&self, actions: &[Action]) -> Result<State> {
        self.router.replay(actions).with_context(|| format!("replaying {}", self.ledger_path().display()))
    }

    /// The SISA-without-retraining state after the same deletions (retrains do not apply to the baseline).
    pub fn sisa_state(&self, actions: &[Action]) -> Result<State> {
        let deletes: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::Delete(_))).collect();
        self.sisa_router.replay(deletes).with_context(|| format!("replaying {}", self.ledger_path().display()))
    }

    /// Loads every weight file, verifying sha256.
    pub fn load_model(&self, device: &Device) -> Result<Model> {
        let dir = self.dir.clone();
        Model::load(self.manifest.clone(), device, |file| read_weights(&dir, file)).map_err(|e| anyhow!(e))
    }
}

/// Reads `pretrain.json` and the backbone weights (checksummed) of a bundle directory.
pub fn load_pretrained(dir: &Path, device: &Device) -> Result<(s3t::bundle::PretrainRecord, s3t::model::Pretrained)> {
    use s3t::bundle::manifest::PRETRAIN_FILE;
    use s3t::model::{Backbone, Head, Pretrained};
    let path = dir.join(PRETRAIN_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let record: s3t::bundle::PretrainRecord =
        serde_json::from_str(&text).with_context(|| format!("{}: not a pretraining record", path.display()))?;
    if record.format != s3t::bundle::manifest::FORMAT || record.version != s3t::bundle::manifest::VERSION {
        anyhow::bail!("{}: format {} version {} is not supported", path.display(), record.format, record.version);
    }
    let vit = &record.model.vit;
    let skeleton = Pretrained { backbone: Backbone::new(vit, device), head: Head::new(vit, device) };
    let bytes = read_weights(dir, &record.backbone.weights).map_err(|e| anyhow!(e))?;
    let pretrained = s3t::model::weights::load_safetensors(skeleton, bytes, &record.backbone.weights.path)
        .map_err(|e| anyhow!(e))?;
    Ok((record, pretrained))
}
