//! The bundle manifest: everything needed to serve, audit and retrain, in one versioned JSON document.

use serde::{Deserialize, Serialize};

pub use super::entry::{
    NodeEntry, SisaEntry, SliceLineage, WeightFile, lineage, sha256, verify_bytes, verify_bytes_paced,
};
use crate::Error;
use crate::model::{LoraConfig, ModelConfig, TrainConfig};
use crate::partition::{Assignment, Partition, SampleId};
use crate::plan::Plan;
use crate::route::{RouteError, Router};
use crate::sequence::{Sequence, Strategy};

pub const FORMAT: &str = "s3t-bundle";
/// Bumped on any incompatible change of the manifest, the weight layout or the training recipe (2: every training
/// run takes about the same number of steps, [`crate::model::TrainConfig::for_slices`]; 3: the default partition
/// is a pure function of the id, per-sample digests of the deletable split, the training backend is recorded).
pub const VERSION: u32 = 3;
/// Largest manifest accepted (bytes): the default bundle's is about 100 KB; more is damage, not data.
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;
/// Largest configuration a manifest may describe (shards, slices, sequences per shard): beyond these a manifest
/// would make a reader allocate without bound before any weight file is checked.
pub const MAX_SHARDS: u16 = 4096;
pub const MAX_SLICES: u16 = 64;
pub const MAX_BUDGET: usize = 4096;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const PRETRAIN_FILE: &str = "pretrain.json";
pub const BUILD_FILE: &str = "build.json";
pub const LEDGER_FILE: &str = "deletions.ledger";

/// The pretrained backbone and its head: both in `weights` for an image backbone; for a text encoder, `weights`
/// holds the head alone and `source` names the Hugging Face files the encoder is read from (checked at every load).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackboneEntry {
    pub seed: u64,
    pub validation_accuracy: f64,
    pub test_accuracy: f64,
    pub weights: WeightFile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::model::hf::BackboneSource>,
}

/// Where the data came from and its split sizes. Sample ids are indices into the deletable split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInfo {
    pub source: String,
    pub rows: u32,
    pub cols: u32,
    pub classes: u8,
    pub public: usize,
    pub deletable: usize,
    pub validation: usize,
    pub test: usize,
    /// sha256 of the deletable split's pixels and labels, so a bundle is never served against other data.
    pub deletable_sha256: String,
    /// sha256 of the per-sample salted commitments of the deletable split ([`crate::bundle::samples`]): a copy of
    /// the split whose deleted samples were purged is still verifiable sample by sample.
    pub deletable_digests_sha256: String,
    /// Text data: the label of each class (class `i` is `labels[i]`, the sorted distinct labels of the source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Text data: the fields its rows were read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<crate::dataset::TextFields>,
}

impl DataInfo {
    /// Whether two records describe the same data: everything but the commitments, which are salted at random when
    /// a backbone is pretrained (the same data pretrained twice gets other salts).
    pub fn same_data(&self, other: &DataInfo) -> bool {
        let strip = |d: &DataInfo| DataInfo { deletable_digests_sha256: String::new(), ..d.clone() };
        strip(self) == strip(other)
    }

    /// Whether a model of this configuration reads this data: square images of its size, its number of classes.
    /// A record that pairs them otherwise is refused before any tensor is shaped from it.
    pub fn fits(&self, model: &ModelConfig) -> crate::Result<()> {
        if let Some(text) = &model.text {
            if self.rows != 1 || self.cols as usize != text.max_tokens {
                return Err(Error::mismatch(format!(
                    "data is {}×{} tokens but the text model reads 1×{} (max_tokens)",
                    self.rows, self.cols, text.max_tokens
                )));
            }
            if usize::from(self.classes) != model.vit.classes || self.labels.len() != model.vit.classes {
                return Err(Error::mismatch(format!(
                    "data has {} classes ({} labels) but model.vit.classes is {}",
                    self.classes,
                    self.labels.len(),
                    model.vit.classes
                )));
            }
            return Ok(());
        }
        let side = model.vit.image_size;
        if self.rows as usize != side || self.cols as usize != side {
            return Err(Error::mismatch(format!(
                "data is {}×{} images but model.vit.image_size is {side}",
                self.rows, self.cols
            )));
        }
        if usize::from(self.classes) != model.vit.classes {
            return Err(Error::mismatch(format!(
                "data has {} classes but model.vit.classes is {}",
                self.classes, model.vit.classes
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub model: ModelConfig,
    pub pretrain: TrainConfig,
    pub train: TrainConfig,
    pub seed: u64,
    /// The backend the nodes were trained on ([`Backend`]): a retrain elsewhere does not reproduce them bit for bit.
    pub backend: Backend,
    /// Mislabeled canaries planted in the deletable split (`trainer build --canaries N`); none by default.
    #[serde(default, skip_serializing_if = "Canaries::is_empty")]
    pub canaries: Canaries,
    pub data: DataInfo,
    pub partition: Partition,
    pub strategy: Strategy,
    pub budget: usize,
    pub sequences: Vec<Vec<Sequence>>,
    pub backbone: BackboneEntry,
    /// `nodes[shard]` in training order (parents first).
    pub nodes: Vec<Vec<NodeEntry>>,
    /// `sisa[shard][k-1]`; empty when built with `--no-sisa`.
    pub sisa: Vec<Vec<SisaEntry>>,
}

/// A shard's trained entries; `complete` once every node (and SISA checkpoint) is done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardPart {
    pub shard: u16,
    pub complete: bool,
    pub nodes: Vec<NodeEntry>,
    pub sisa: Vec<SisaEntry>,
}

/// What `trainer pretrain` records: the backbone, its configuration and the data it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainRecord {
    pub format: String,
    pub version: u32,
    pub model: ModelConfig,
    pub pretrain: TrainConfig,
    pub data: DataInfo,
    pub backbone: BackboneEntry,
}

impl PretrainRecord {
    /// A record of this format and version.
    pub fn new(model: ModelConfig, pretrain: TrainConfig, data: DataInfo, backbone: BackboneEntry) -> Self {
        Self { format: FORMAT.to_owned(), version: VERSION, model, pretrain, data, backbone }
    }

    /// Parses and checks a pretraining record (`file` names it in errors).
    pub fn from_json(file: &str, text: &str) -> crate::Result<Self> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(Error::format(
                file,
                format!("{} bytes is larger than a pretraining record can be", text.len()),
            ));
        }
        let record: Self =
            serde_json::from_str(text).map_err(|e| Error::format(file, format!("not a pretraining record: {e}")))?;
        if record.format != FORMAT || record.version != VERSION {
            return Err(Error::format(
                file,
                format!(
                    "format {:?} version {} is not supported (this build reads {FORMAT:?} version {VERSION}; \
                 pretrain again)",
                    record.format, record.version
                ),
            ));
        }
        record.model.validate().map_err(|e| Error::format(file, format!("model: {e}")))?;
        record.data.fits(&record.model).map_err(|e| Error::format(file, e.to_string()))?;
        Ok(record)
    }
}

impl ShardPart {
    /// Parses a shard's progress record (`file` names it in errors).
    pub fn from_json(file: &str, text: &str) -> crate::Result<Self> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(Error::format(file, format!("{} bytes is larger than a shard part can be", text.len())));
        }
        let part: Self =
            serde_json::from_str(text).map_err(|e| Error::format(file, format!("not a shard part: {e}")))?;
        if part.shard >= MAX_SHARDS {
            return Err(Error::format(file, format!("shard {} is out of range", part.shard)));
        }
        if let Some(e) = part.nodes.iter().find(|e| e.shard != part.shard) {
            return Err(Error::format(
                file,
                format!("node {} names shard {} in a part of shard {}", e.id, e.shard, part.shard),
            ));
        }
        if let Some(e) = part.sisa.iter().find(|e| e.shard != part.shard) {
            return Err(Error::format(file, format!("SISA checkpoint {} names shard {}", e.checkpoint, e.shard)));
        }
        Ok(part)
    }
}

/// The S3T configuration of a build, fixed by its first run so that partial builds on several machines agree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildSpec {
    pub format: String,
    pub version: u32,
    pub train: TrainConfig,
    pub lora: LoraConfig,
    /// Layers per group (`ModelConfig::layers_per_group`); `None`: every layer, split evenly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers_per_group: Option<usize>,
    pub seed: u64,
    pub partition: Partition,
    pub strategy: Strategy,
    pub budget: usize,
    pub sisa: bool,
    /// The pretraining record's backbone checksum: every part must build on the same backbone.
    pub backbone_sha256: String,
    pub backend: Backend,
    /// Mislabeled canaries planted in the deletable split (`trainer build --canaries N`); none by default.
    #[serde(default, skip_serializing_if = "Canaries::is_empty")]
    pub canaries: Canaries,
}

/// Canaries: samples of the deletable split trained with a wrong label, so that a model's memorisation of them (and
/// its absence after their deletion) can be measured against never-trained twins (`trainer forget-check`). The
/// labels of the data itself, and the per-sample commitments made of them, stay the source's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canaries {
    /// The planted canaries: `index` is the sample id (its index in the deletable split), `label` the wrong label it
    /// is trained with.
    pub planted: Vec<Mislabel>,
    /// Their never-trained twins: `index` into the test split, `label` a wrong label drawn the same way.
    pub twins: Vec<Mislabel>,
}

impl Canaries {
    pub fn is_empty(&self) -> bool {
        self.planted.is_empty() && self.twins.is_empty()
    }
}

/// A sample given a label other than its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mislabel {
    pub index: usize,
    pub label: u8,
}

/// The arithmetic a bundle was trained with. Weights are bit-for-bit reproducible only on the same backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// `cpu-flex` or `wgpu`.
    pub kind: String,
    /// The device as it was selected (informative: "cpu (flex)", "gpu (wgpu: …)").
    pub device: String,
}

impl Backend {
    pub fn new(is_gpu: bool, device: &str) -> Self {
        Self { kind: if is_gpu { "wgpu" } else { "cpu-flex" }.to_owned(), device: device.to_owned() }
    }
}

impl Manifest {
    /// Merges the pretraining record, the build specification and every shard's part into a manifest.
    pub fn assemble(pretrain: PretrainRecord, spec: BuildSpec, parts: Vec<ShardPart>) -> crate::Result<Self> {
        let plan = Plan::new(spec.partition.shards, spec.partition.slices, spec.budget, &spec.strategy)?;
        let m = usize::from(spec.partition.shards);
        let mut nodes = vec![None; m];
        let mut sisa = vec![Vec::new(); m];
        for part in parts {
            let s = usize::from(part.shard);
            if s >= m {
                return Err(Error::mismatch(format!("part of shard {} but the build has {m} shards", part.shard)));
            }
            if !part.complete {
                return Err(Error::mismatch(format!(
                    "shard {} is not complete: run `trainer build --resume --shard {}`",
                    part.shard, part.shard
                )));
            }
            if nodes[s].is_some() {
                return Err(Error::mismatch(format!("shard {} appears twice", part.shard)));
            }
            nodes[s] = Some(part.nodes);
            sisa[s] = part.sisa;
        }
        let nodes: Vec<Vec<NodeEntry>> = nodes
            .into_iter()
            .enumerate()
            .map(|(s, n)| {
                n.ok_or_else(|| {
                    Error::mismatch(format!("shard {s} has not been built: run `trainer build --shard {s}`"))
                })
            })
            .collect::<Result<_, _>>()?;
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            version: VERSION,
            model: pretrain
                .model
                .with_groups(usize::from(spec.partition.slices))
                .with_layers_per_group(spec.layers_per_group)
                .with_lora(spec.lora),
            pretrain: pretrain.pretrain,
            train: spec.train,
            seed: spec.seed,
            backend: spec.backend,
            canaries: spec.canaries,
            data: pretrain.data,
            partition: spec.partition,
            strategy: spec.strategy,
            budget: spec.budget,
            sequences: plan.sequences(),
            backbone: pretrain.backbone,
            nodes,
            sisa: if spec.sisa { sisa } else { Vec::new() },
        };
        manifest.check("assembled manifest")?;
        Ok(manifest)
    }

    /// Parses and checks the format, version and internal consistency (`file` names the source in errors).
    pub fn from_json(file: &str, text: &str) -> crate::Result<Self> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(Error::format(
                file,
                format!("{} bytes is larger than a manifest can be ({MAX_MANIFEST_BYTES})", text.len()),
            ));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::format(file, format!("not valid JSON: {e}")))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            other => return Err(Error::format(file, format!("format is {other:?}, expected \"{FORMAT}\""))),
        }
        match value.get("version") {
            Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
            Some(v) => {
                return Err(Error::format(
                    file,
                    format!(
                        "version {v} is not supported (this build reads {VERSION}; rebuild the bundle with \
                     `trainer build`)"
                    ),
                ));
            }
            None => return Err(Error::format(file, "no \"version\" field")),
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| Error::format(file, e.to_string()))?;
        manifest.check(file)?;
        Ok(manifest)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest always serialises")
    }

    fn check(&self, file: &str) -> crate::Result<()> {
        self.model.validate().map_err(|e| Error::format(file, format!("model: {e}")))?;
        self.data.fits(&self.model).map_err(|e| Error::format(file, e.to_string()))?;
        if self.partition.shards == 0 || self.partition.shards > MAX_SHARDS {
            return Err(Error::format(
                file,
                format!("partition.shards = {} (1..={MAX_SHARDS})", self.partition.shards),
            ));
        }
        if self.partition.slices == 0 || self.partition.slices > MAX_SLICES {
            return Err(Error::format(
                file,
                format!("partition.slices = {} (1..={MAX_SLICES})", self.partition.slices),
            ));
        }
        if self.budget == 0 || self.budget > MAX_BUDGET || self.sequences.iter().any(|s| s.len() > MAX_BUDGET) {
            return Err(Error::format(
                file,
                format!("budget = {} (1..={MAX_BUDGET} sequences per shard)", self.budget),
            ));
        }
        if self.data.deletable > u32::MAX as usize {
            return Err(Error::format(file, format!("data.deletable = {} is too large", self.data.deletable)));
        }
        let m = usize::from(self.partition.shards);
        let l = usize::from(self.partition.slices);
        if self.model.groups != l {
            return Err(Error::format(
                file,
                format!("model.groups = {} but partition.slices = {l}", self.model.groups),
            ));
        }
        if self.sequences.len() != m || self.nodes.len() != m {
            return Err(Error::format(
                file,
                format!("{m} shards but {} sequence lists and {} node lists", self.sequences.len(), self.nodes.len()),
            ));
        }
        let plan = self.plan().map_err(|e| Error::format(file, format!("sequences: {e}")))?;
        for (shard, (plan, nodes)) in plan.shards.iter().zip(&self.nodes).enumerate() {
            if plan.nodes.len() != nodes.len() {
                return Err(Error::format(
                    file,
                    format!("shard {shard} needs {} nodes but lists {}", plan.nodes.len(), nodes.len()),
                ));
            }
            for (node, entry) in plan.nodes.iter().zip(nodes) {
                if entry.shard as usize != shard
                    || entry.id != node.id
                    || entry.prefix != node.prefix
                    || entry.parent != node.parent
                {
                    return Err(Error::mismatch(format!(
                        "{file}: shard {shard} node {} does not match the plan",
                        entry.id
                    )));
                }
            }
        }
        if !self.sisa.is_empty() && (self.sisa.len() != m || self.sisa.iter().any(|s| s.len() != l)) {
            return Err(Error::format(file, format!("SISA needs {l} checkpoints for each of {m} shards")));
        }
        for (shard, checkpoints) in self.sisa.iter().enumerate() {
            for (k, entry) in checkpoints.iter().enumerate() {
                if entry.shard as usize != shard || usize::from(entry.checkpoint) != k + 1 {
                    return Err(Error::format(
                        file,
                        format!("SISA entry {k} of shard {shard} is not checkpoint {}", k + 1),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The training plan of the bundle's sequences.
    pub fn plan(&self) -> Result<Plan, crate::plan::PlanError> {
        Plan::from_sequences(self.partition.slices, self.sequences.clone())
    }

    /// The partition of the deletable split (ids 0..n).
    pub fn assignment(&self) -> Result<Assignment, crate::partition::PartitionError> {
        self.partition.assign((0..self.data.deletable as u64).map(SampleId::Int))
    }

    /// The S3T router of the bundle: ties between equally long active prefixes go to the node with the higher
    /// validation accuracy (the validation split is never deletable, rule E5).
    pub fn router(&self, assignment: Assignment, plan: &Plan) -> Result<Router, RouteError> {
        Ok(Router::new(assignment, plan)?.with_tie_break(|shard, b, k| self.prefix_validation(shard, b, k)))
    }

    /// Validation accuracy of the prefix-k node of sequence b of a shard (−∞ if the manifest lacks it).
    fn prefix_validation(&self, shard: u16, b: usize, k: u16) -> f64 {
        let nodes = self.nodes.get(usize::from(shard));
        let prefix = self
            .sequences
            .get(usize::from(shard))
            .and_then(|seqs| seqs.get(b))
            .and_then(|q| q.slices().get(..usize::from(k)));
        nodes
            .zip(prefix)
            .and_then(|(nodes, prefix)| nodes.iter().find(|n| n.prefix == prefix))
            .map_or(f64::NEG_INFINITY, |n| n.validation_accuracy)
    }

    /// The SISA plan: one sequence per shard, the identity order.
    pub fn sisa_plan(&self) -> Result<Plan, crate::plan::PlanError> {
        let identity = Sequence::identity(self.partition.slices);
        Plan::from_sequences(self.partition.slices, vec![vec![identity]; usize::from(self.partition.shards)])
    }

    /// Every weight file of the bundle.
    pub fn weight_files(&self) -> impl Iterator<Item = &WeightFile> {
        std::iter::once(&self.backbone.weights)
            .chain(self.nodes.iter().flatten().map(|n| &n.weights))
            .chain(self.sisa.iter().flatten().map(|s| &s.weights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PretrainRecord {
        let data = DataInfo {
            source: "default".into(),
            rows: 28,
            cols: 28,
            classes: 10,
            public: 1,
            deletable: 1,
            validation: 1,
            test: 1,
            deletable_sha256: String::new(),
            deletable_digests_sha256: String::new(),
            labels: Vec::new(),
            fields: None,
        };
        let weights = WeightFile { path: "weights/backbone.safetensors".into(), sha256: String::new(), bytes: 0 };
        PretrainRecord {
            format: FORMAT.into(),
            version: VERSION,
            model: ModelConfig::new(),
            pretrain: TrainConfig::new(),
            data,
            backbone: BackboneEntry { seed: 0, validation_accuracy: 0.0, test_accuracy: 0.0, weights, source: None },
        }
    }

    /// A record whose model does not read its data (image size, classes) is refused with the field named.
    #[test]
    fn a_record_whose_model_does_not_fit_its_data_is_refused() {
        let parse = |r: &PretrainRecord| {
            PretrainRecord::from_json("pretrain.json", &serde_json::to_string(r).expect("serialise"))
        };
        assert!(parse(&record()).is_ok());
        let mut wide = record();
        wide.data.cols = 32;
        let err = parse(&wide).expect_err("28×32 images for a 28-pixel model");
        assert!(matches!(err, Error::Format { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("pretrain.json") && err.contains("image_size"), "{err}");
        let mut classes = record();
        classes.model.vit.classes = 3;
        let err = parse(&classes).expect_err("10 classes of data for a 3-class head").to_string();
        assert!(err.contains("classes"), "{err}");
    }
}
