//! Serving a bundle: load its weights, assemble each shard's served component, memoise per-node outputs, and
//! compute ensemble accuracy for a routing state. Used by the trainer (eval, curve, audit) and the browser.

use std::collections::HashMap;

use burn::tensor::Device;

use super::adapter::GroupAdapter;
use super::config::ModelConfig;
use super::ensemble::{accuracy, mean_probabilities, softmax_rows};
use super::features::{EVAL_BATCH, Features, logits_all, logits_all_async};
use super::parts::{NodeParams, Pretrained, SisaParams};
use super::vit::{Backbone, Component, Head, unpaced};
use super::weights::load_safetensors;
use crate::Error;
use crate::bundle::guard::Component as GuardComponent;
use crate::bundle::{Manifest, WeightFile};
use crate::dataset::Dataset;
use crate::plan::Plan;
use crate::route::{Served, State};

/// A bundle's weights, loaded onto a device: the backbone and the components the guard allowed (the others, those
/// whose lineage meets the ledger, are never read, so their files may be gone).
#[derive(Clone)]
pub struct Model {
    pub manifest: Manifest,
    pub plan: Plan,
    pub sisa_plan: Plan,
    pub pretrained: Pretrained,
    /// `nodes[shard][node id]`; `None` for a node that may not be served.
    pub nodes: Vec<Vec<Option<NodeParams>>>,
    /// `sisa[shard][checkpoint - 1]`; empty without SISA; `None` for a checkpoint that may not be served.
    pub sisa: Vec<Vec<Option<SisaParams>>>,
    pub device: Device,
}

impl Model {
    /// Loads the backbone and every component `servable` allows through `read` (a native file reader that checks
    /// sha256, or the browser's fetch). Pass [`crate::bundle::guard::Guard::servable`] so that nothing trained on a
    /// deleted sample is even read.
    pub fn load(
        manifest: Manifest,
        device: &Device,
        servable: impl Fn(&Manifest, GuardComponent) -> bool,
        read: impl FnMut(&WeightFile) -> crate::Result<Vec<u8>>,
    ) -> crate::Result<Self> {
        Self::load_with(manifest, None, device, servable, read)
    }

    /// [`Model::load`] with the frozen encoder of a text bundle (read from its recorded Hugging Face directory,
    /// [`super::hf::HfDir::open_recorded`]); the bundle's backbone file holds its head alone.
    pub fn load_with(
        manifest: Manifest,
        encoder: Option<Backbone>,
        device: &Device,
        servable: impl Fn(&Manifest, GuardComponent) -> bool,
        mut read: impl FnMut(&WeightFile) -> crate::Result<Vec<u8>>,
    ) -> crate::Result<Self> {
        let config = manifest.model.clone();
        let plan = manifest.plan()?;
        let sisa_plan = manifest.sisa_plan()?;
        let file = &manifest.backbone.weights;
        let pretrained = match (config.text.is_some(), encoder) {
            (false, _) => {
                let skeleton =
                    Pretrained { backbone: Backbone::new(&config.vit, device), head: Head::new(&config.vit, device) };
                load_safetensors(skeleton, read(file)?, &file.path)?
            }
            (true, Some(backbone)) => {
                let head = load_safetensors(Head::new(&config.vit, device), read(file)?, &file.path)?;
                Pretrained { backbone, head }
            }
            (true, None) => {
                return Err(Error::config(
                    "encoder",
                    "a text bundle's encoder is read from its Hugging Face directory, which was not given",
                ));
            }
        };
        let mut nodes = Vec::with_capacity(manifest.nodes.len());
        for shard in &manifest.nodes {
            let mut loaded = Vec::with_capacity(shard.len());
            for entry in shard {
                if !servable(&manifest, GuardComponent::Node { shard: entry.shard, id: entry.id }) {
                    loaded.push(None);
                    continue;
                }
                let skeleton = node_skeleton(&config, entry.prefix.len(), device);
                loaded.push(Some(load_safetensors(skeleton, read(&entry.weights)?, &entry.weights.path)?));
            }
            nodes.push(loaded);
        }
        let mut sisa = Vec::with_capacity(manifest.sisa.len());
        for shard in &manifest.sisa {
            let mut loaded = Vec::with_capacity(shard.len());
            for entry in shard {
                if !servable(&manifest, GuardComponent::Sisa { shard: entry.shard, checkpoint: entry.checkpoint }) {
                    loaded.push(None);
                    continue;
                }
                let skeleton = sisa_skeleton(&config, device);
                loaded.push(Some(load_safetensors(skeleton, read(&entry.weights)?, &entry.weights.path)?));
            }
            sisa.push(loaded);
        }
        Ok(Self { manifest, plan, sisa_plan, pretrained, nodes, sisa, device: device.clone() })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.manifest.model
    }

    /// Serves a retrained shard: its new node entries and the weights of the retrained ones (`weights` by node id);
    /// the others are `bundle`'s (the model the retrain started from) and must be its entries unchanged. The caller
    /// has checked the entries against the deletions ([`crate::bundle::retrain::accept`]).
    pub fn replace_shard(
        &mut self,
        bundle: &Model,
        shard: u16,
        entries: Vec<crate::bundle::NodeEntry>,
        weights: Vec<(usize, Vec<u8>)>,
    ) -> crate::Result<()> {
        let s = usize::from(shard);
        let (Some(nodes), Some(old)) = (bundle.nodes.get(s), bundle.manifest.nodes.get(s)) else {
            return Err(Error::mismatch(format!("the bundle has no shard {shard}")));
        };
        let mut loaded = nodes.clone();
        if entries.len() != loaded.len() || entries.len() != old.len() || s >= self.nodes.len() {
            return Err(Error::mismatch(format!(
                "shard {shard}: {} nodes, the plan has {}",
                entries.len(),
                loaded.len()
            )));
        }
        let mut fresh = vec![false; entries.len()];
        for (id, bytes) in weights {
            let entry = entries.get(id).ok_or_else(|| Error::mismatch(format!("shard {shard}: no node {id}")))?;
            let skeleton = node_skeleton(self.config(), entry.prefix.len(), &self.device);
            loaded[id] = Some(load_safetensors(skeleton, bytes, &entry.weights.path)?);
            fresh[id] = true;
        }
        // A node without new weights must be the one served before, unchanged.
        if let Some(id) = (0..entries.len()).find(|&id| !fresh[id] && entries[id].weights != old[id].weights) {
            return Err(Error::mismatch(format!("shard {shard} node {id}: a new entry arrived without its weights")));
        }
        self.nodes[s] = loaded;
        self.manifest.nodes[s] = entries;
        Ok(())
    }

    /// Whether the bundle has a SISA baseline.
    pub fn has_sisa(&self) -> bool {
        !self.sisa.is_empty()
    }

    /// The adapter groups 1..k of a served component and its head snapshot (rule E3: the head of node k); an error
    /// when a node of its chain was not loaded (the guard refused it).
    pub fn component(&self, shard: u16, served: Served) -> crate::Result<(Vec<&GroupAdapter>, &Head)> {
        let s = usize::from(shard);
        let chain = self
            .plan
            .shards
            .get(s)
            .and_then(|p| p.chains.get(served.sequence))
            .and_then(|c| c.get(..usize::from(served.prefix)))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Error::mismatch(format!("shard {shard}: no sequence {} prefix {}", served.sequence, served.prefix))
            })?;
        let mut groups = Vec::with_capacity(chain.len());
        let mut head = None;
        for &id in chain {
            let node = self.nodes.get(s).and_then(|n| n.get(id)).and_then(Option::as_ref).ok_or_else(|| {
                Error::mismatch(format!(
                    "shard {shard} node {id} is not loaded: its lineage meets the ledger, so it is never served"
                ))
            })?;
            groups.push(&node.adapter);
            head = Some(&node.head);
        }
        Ok((groups, head.ok_or_else(|| Error::mismatch(format!("shard {shard}: empty prefix")))?))
    }

    /// Class probabilities [n, classes] of a shard's served component on `data`, with asynchronous read-back and
    /// `pause` between operations (the page asks it for one sample: a deleted one, under the model that serves now).
    pub async fn probabilities_async(
        &self,
        shard: u16,
        served: Served,
        data: &Dataset,
        pause: impl AsyncFn(),
    ) -> crate::Result<Vec<f32>> {
        let config = self.config();
        let backbone = &self.pretrained.backbone;
        let mut features = Features::embedded_paced(config, backbone, data, &self.device, EVAL_BATCH, &pause).await;
        features.extend_paced(config, backbone, usize::from(served.prefix), &pause).await;
        let (groups, head) = self.component(shard, served)?;
        let logits =
            logits_all_async(config, backbone, Component { groups: &groups, head }, &features, EVAL_BATCH, &pause)
                .await?;
        Ok(softmax_rows(&logits, config.vit.classes))
    }

    /// SISA checkpoint k (1-based) of a shard, when loaded.
    pub fn sisa_checkpoint(&self, shard: u16, checkpoint: u16) -> crate::Result<&SisaParams> {
        self.sisa
            .get(usize::from(shard))
            .and_then(|s| s.get(usize::from(checkpoint).wrapping_sub(1)))
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::mismatch(format!("shard {shard} SISA checkpoint {checkpoint} is not loaded")))
    }
}

/// An untrained node module of the right shape, for loading weights into.
pub fn node_skeleton(config: &ModelConfig, group: usize, device: &Device) -> NodeParams {
    NodeParams { adapter: GroupAdapter::init(config, group, 0, device), head: Head::new(&config.vit, device) }
}

pub fn sisa_skeleton(config: &ModelConfig, device: &Device) -> SisaParams {
    SisaParams {
        adapters: (1..=config.groups).map(|g| GroupAdapter::init(config, g, 0, device)).collect(),
        head: Head::new(&config.vit, device),
    }
}

/// Ensemble accuracy and the accuracy of each shard's served component (`None` when offline).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// `None` when every shard is offline: nothing is served.
    pub accuracy: Option<f64>,
    pub per_shard: Vec<Option<f64>>,
    pub live_shards: usize,
}

/// Evaluates components on one data set, memoising each node's class probabilities.
pub struct Evaluator {
    features: Features,
    labels: Vec<u8>,
    classes: usize,
    memo: HashMap<(u16, usize), Vec<f32>>,
    sisa_memo: HashMap<(u16, u16), Vec<f32>>,
}

impl Evaluator {
    pub fn new(model: &Model, data: &Dataset) -> Self {
        Self {
            features: Features::new(model.config(), &model.pretrained.backbone, data, &model.device),
            labels: data.labels.clone(),
            classes: model.config().vit.classes,
            memo: HashMap::new(),
            sisa_memo: HashMap::new(),
        }
    }

    /// An evaluator over precomputed features (e.g. only the embedding, [`Features::embedded_paced`]).
    pub fn from_features(model: &Model, features: Features, labels: Vec<u8>) -> Self {
        Self { features, labels, classes: model.config().vit.classes, memo: HashMap::new(), sisa_memo: HashMap::new() }
    }

    /// Memoised class probabilities of a served component, if computed.
    pub fn memoised(&self, model: &Model, shard: u16, served: Served) -> Option<&[f32]> {
        let node = model.plan.shards[usize::from(shard)].chains[served.sequence][usize::from(served.prefix) - 1];
        self.memo.get(&(shard, node)).map(Vec::as_slice)
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Drops what was memoised for a shard's nodes (its nodes were retrained: the same ids, other weights).
    pub fn forget_shard(&mut self, shard: u16) {
        self.memo.retain(|&(s, _), _| s != shard);
    }

    /// Class probabilities [n, classes] of a shard's served S3T component (memoised per node).
    pub fn served_probabilities(&mut self, model: &Model, shard: u16, served: Served) -> crate::Result<&[f32]> {
        let node = model.plan.shards[usize::from(shard)].chains[served.sequence][usize::from(served.prefix) - 1];
        let (groups, head) = model.component(shard, served)?;
        let backbone = &model.pretrained.backbone;
        unpaced(self.features.extend_paced(model.config(), backbone, usize::from(served.prefix), &async || {}));
        let features = &self.features;
        let classes = self.classes;
        Ok(self.memo.entry((shard, node)).or_insert_with(|| {
            let logits =
                logits_all(model.config(), &model.pretrained.backbone, Component { groups: &groups, head }, features);
            softmax_rows(&logits, classes)
        }))
    }

    /// Whether the probabilities of a served component are memoised already.
    pub fn is_memoised(&self, model: &Model, shard: u16, served: Served) -> bool {
        let node = model.plan.shards[usize::from(shard)].chains[served.sequence][usize::from(served.prefix) - 1];
        self.memo.contains_key(&(shard, node))
    }

    /// Computes and memoises a served component's probabilities with asynchronous read-back (the browser's
    /// WebGPU backend cannot read synchronously), awaiting `pause` between operations and batches; afterwards
    /// [`Evaluator::evaluate`] finds it in the memo.
    pub async fn prepare_async(
        &mut self,
        model: &Model,
        shard: u16,
        served: Served,
        pause: impl AsyncFn(),
    ) -> crate::Result<()> {
        let node = model.plan.shards[usize::from(shard)].chains[served.sequence][usize::from(served.prefix) - 1];
        if self.memo.contains_key(&(shard, node)) {
            return Ok(());
        }
        let backbone = &model.pretrained.backbone;
        self.features.extend_paced(model.config(), backbone, usize::from(served.prefix), &pause).await;
        let (groups, head) = model.component(shard, served)?;
        let probabilities = self.probabilities_async(model, Component { groups: &groups, head }, &pause).await?;
        self.memo.insert((shard, node), probabilities);
        Ok(())
    }

    /// Computes the cached activations at every group boundary, which components of shorter prefixes start from
    /// (an evaluator built on [`Features::embedded_paced`] has only the bottom one).
    pub async fn complete_features_async(&mut self, model: &Model, pause: impl AsyncFn()) {
        self.features.extend_paced(model.config(), &model.pretrained.backbone, 1, &pause).await;
    }

    /// The SISA counterpart of [`Evaluator::prepare_async`].
    pub async fn prepare_sisa_async(
        &mut self,
        model: &Model,
        shard: u16,
        checkpoint: u16,
        pause: impl AsyncFn(),
    ) -> crate::Result<()> {
        if self.sisa_memo.contains_key(&(shard, checkpoint)) {
            return Ok(());
        }
        let params = model.sisa_checkpoint(shard, checkpoint)?;
        let groups: Vec<&GroupAdapter> = params.adapters.iter().collect();
        let component = Component { groups: &groups, head: &params.head };
        let probabilities = self.probabilities_async(model, component, &pause).await?;
        self.sisa_memo.insert((shard, checkpoint), probabilities);
        Ok(())
    }

    /// Class probabilities of a component on every sample, in the features' batches ([`Features::batch_size`]),
    /// pausing between operations.
    async fn probabilities_async(
        &self,
        model: &Model,
        component: Component<'_>,
        pause: &impl AsyncFn(),
    ) -> crate::Result<Vec<f32>> {
        let backbone = &model.pretrained.backbone;
        let batch = self.features.batch_size();
        let logits = logits_all_async(model.config(), backbone, component, &self.features, batch, pause).await?;
        Ok(softmax_rows(&logits, self.classes))
    }

    /// Class probabilities of SISA checkpoint k (1-based) of a shard (memoised).
    pub fn sisa_probabilities(&mut self, model: &Model, shard: u16, checkpoint: u16) -> crate::Result<&[f32]> {
        let params = model.sisa_checkpoint(shard, checkpoint)?;
        let features = &self.features;
        let classes = self.classes;
        Ok(self.sisa_memo.entry((shard, checkpoint)).or_insert_with(|| {
            let groups: Vec<&GroupAdapter> = params.adapters.iter().collect();
            let component = Component { groups: &groups, head: &params.head };
            let logits = logits_all(model.config(), &model.pretrained.backbone, component, features);
            softmax_rows(&logits, classes)
        }))
    }

    /// Ensemble (mean of softmax over live shards) and per-shard accuracy of an S3T routing state; an error when a
    /// served component was not loaded (the guard refused it).
    pub fn evaluate(&mut self, model: &Model, state: &State) -> crate::Result<Evaluation> {
        self.evaluate_with(state, |this, shard, served| {
            this.served_probabilities(model, shard, served).map(<[f32]>::to_vec)
        })
    }

    /// The same for SISA without retraining: `state` routes over the SISA plan (one identity sequence per
    /// shard), so the served prefix k is checkpoint k.
    pub fn evaluate_sisa(&mut self, model: &Model, state: &State) -> crate::Result<Evaluation> {
        self.evaluate_with(state, |this, shard, served| {
            this.sisa_probabilities(model, shard, served.prefix).map(<[f32]>::to_vec)
        })
    }

    fn evaluate_with(
        &mut self,
        state: &State,
        mut probs: impl FnMut(&mut Self, u16, Served) -> crate::Result<Vec<f32>>,
    ) -> crate::Result<Evaluation> {
        let mut tables = Vec::new();
        let mut per_shard = Vec::new();
        for shard in 0..state.shards() {
            match state.served(shard) {
                Some(served) => {
                    let p = probs(self, shard, served)?;
                    per_shard.push(Some(accuracy(&p, self.classes, &self.labels)));
                    tables.push(p);
                }
                None => per_shard.push(None),
            }
        }
        let refs: Vec<&[f32]> = tables.iter().map(Vec::as_slice).collect();
        let accuracy = mean_probabilities(&refs).map(|p| accuracy(&p, self.classes, &self.labels));
        Ok(Evaluation { accuracy, per_shard, live_shards: tables.len() })
    }
}
