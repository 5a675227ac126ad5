//! Opening a bundle directory: manifest, weights (checksummed), ledger, routing state, and the serving guard.
//!
//! Every command that serves goes through [`Bundle::serving`]: it replays the ledger, builds the guard from the
//! deleted ids and refuses a served component whose lineage meets them, before any weight is read. Commands that
//! change the bundle open it with [`Bundle::open_locked`], which takes the bundle's lock before the manifest is read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::tensor::Device;
use s3t::bundle::Manifest;
use s3t::bundle::guard::Guard;
use s3t::bundle::manifest::LEDGER_FILE;
use s3t::bundle::store::{BundleLock, read_manifest, read_weights};
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

/// What a bundle may serve after its ledger: the routing states and the guard they were checked with.
pub struct Serving {
    pub actions: Vec<Action>,
    pub state: State,
    pub sisa_state: State,
    pub guard: Guard,
}

impl Bundle {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = read_manifest(dir)?;
        Self::from_manifest(dir, manifest)
    }

    /// Takes the bundle's lock (waiting for another writer to finish), then opens it.
    pub fn open_locked(dir: &Path) -> Result<(BundleLock, Self)> {
        let lock = BundleLock::acquire(dir)?;
        Ok((lock, Self::open(dir)?))
    }

    pub fn from_manifest(dir: &Path, manifest: Manifest) -> Result<Self> {
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

    /// The guard of a routing state: the clean lineage of every slice without its deleted ids.
    pub fn guard(&self, state: &State) -> Guard {
        Guard::new(self.router.assignment(), state.deleted().cloned())
    }

    /// The states after `actions`, checked: every served component's lineage must exclude every deleted id.
    pub fn serving_after(&self, actions: Vec<Action>) -> Result<Serving> {
        let state = self.state(&actions)?;
        let sisa_state = self.sisa_state(&actions)?;
        let guard = self.guard(&state);
        let plan = self.manifest.plan().map_err(|e| anyhow!("{e}"))?;
        guard
            .check_served(&self.manifest, &plan, &state, Some(&sisa_state))
            .map_err(|e| anyhow!("{}: {e}", self.dir.display()))?;
        Ok(Serving { actions, state, sisa_state, guard })
    }

    /// [`Bundle::serving_after`] the bundle's own ledger.
    pub fn serving(&self) -> Result<Serving> {
        self.serving_after(self.actions()?)
    }

    /// Verifies the checksum of every file the bundle may serve under `guard` (the backbone and every component
    /// the guard allows); the files of the others are gone once their deletion is durable.
    pub fn verify_servable(&self, guard: &Guard) -> Result<()> {
        let m = &self.manifest;
        let nodes = m.nodes.iter().flatten().filter(|e| guard.check_node(e).is_ok()).map(|e| &e.weights);
        let sisa = m.sisa.iter().flatten().filter(|e| guard.check_sisa(e).is_ok()).map(|e| &e.weights);
        for file in std::iter::once(&m.backbone.weights).chain(nodes).chain(sisa) {
            read_weights(&self.dir, file)?;
        }
        // A text bundle's encoder lives in the Hugging Face directory it records: its files must be those.
        if let Some(source) = &m.backbone.source {
            s3t::model::hf::HfDir::open_recorded(source)?;
        }
        Ok(())
    }

    /// Loads the backbone and the components the guard allows (verifying sha256); nothing else is read.
    pub fn load_model(&self, device: &Device, guard: &Guard) -> Result<Model> {
        let dir = self.dir.clone();
        let encoder = text_encoder(&self.manifest.model, &self.manifest.backbone, device)?;
        let servable = |m: &Manifest, c| guard.servable(m, c);
        Ok(Model::load_with(self.manifest.clone(), encoder, device, servable, |file| read_weights(&dir, file))?)
    }
}

/// Reads `pretrain.json` and the backbone weights (checksummed) of a bundle directory.
pub fn load_pretrained(dir: &Path, device: &Device) -> Result<(s3t::bundle::PretrainRecord, s3t::model::Pretrained)> {
    use s3t::bundle::manifest::PRETRAIN_FILE;
    use s3t::model::{Backbone, Head, Pretrained};
    let path = dir.join(PRETRAIN_FILE);
    let record = read_pretrain_record(&path)?;
    let vit = &record.model.vit;
    let bytes = read_weights(dir, &record.backbone.weights)?;
    let what = &record.backbone.weights.path;
    use s3t::model::weights::load_safetensors;
    let pretrained = match text_encoder(&record.model, &record.backbone, device)? {
        Some(backbone) => {
            let head = load_safetensors(Head::new(vit, device), bytes, what)?;
            Pretrained { backbone, head }
        }
        None => {
            let skeleton = Pretrained { backbone: Backbone::new(vit, device), head: Head::new(vit, device) };
            load_safetensors(skeleton, bytes, what)?
        }
    };
    Ok((record, pretrained))
}

/// A text bundle's frozen encoder, read from the Hugging Face directory it records (every file checked against its
/// sha256); `None` for an image bundle, whose backbone is in its own weights.
pub fn text_encoder(
    model: &s3t::model::ModelConfig,
    backbone: &s3t::bundle::BackboneEntry,
    device: &Device,
) -> Result<Option<s3t::model::Backbone>> {
    if model.text.is_none() {
        return Ok(None);
    }
    let source = backbone.source.as_ref().context("a text bundle that does not name its encoder's files")?;
    let hf = s3t::model::hf::HfDir::open_recorded(source)?;
    Ok(Some(hf.backbone(model, device)?))
}

/// Parses and checks `pretrain.json` (format, version, a valid model configuration) without loading weights.
pub fn read_pretrain_record(path: &Path) -> Result<s3t::bundle::PretrainRecord> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(s3t::bundle::manifest::PretrainRecord::from_json(&path.display().to_string(), &text)?)
}
