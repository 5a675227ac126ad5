//! Exactness rules E1–E4 and E6 (DESIGN.md §2) on the real burn model, on the CPU, with a tiny ViT and synthetic
//! data so the tests run in seconds. Every rule check has a negative control showing the comparison can fail. This
//! file holds the shared fixture; the tests are in `rules` (E1–E6), `retrain` (the page's retrain) and `forgetting`
//! (what a deleted sample can still reach).
//!
//! Weights are compared tensor by tensor (name, dtype, shape, raw bytes) rather than as whole safetensors files:
//! the file header's `__metadata__` map is written in a random order (see
//! `weight_files_are_byte_reproducible`), which would make whole-file comparisons flaky for reasons unrelated to
//! the rule under test.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use s3t::bundle::guard::Guard;
use s3t::bundle::manifest::{BackboneEntry, Backend, DataInfo, FORMAT, Manifest, NodeEntry, VERSION, WeightFile};
use s3t::bundle::retrain::accept;
use s3t::bundle::store::{read_weights, write_weights};
use s3t::dataset::{Dataset, Splits};
use s3t::model::build::{BuildContext, BundleDir, MemoryStore, PartStore, ShardJob, ShardPart, build_shard};
use s3t::model::device::{Selected, cpu};
use s3t::model::features::{Features, logits_all, to_host};
use s3t::model::hf::HfDir;
use s3t::model::parallel::Batching;
use s3t::model::serve::Model;
use s3t::model::train::{NodeRun, Pieces, SisaRun, TrainInputs, pretrain, train_head, train_node, train_sisa};
use s3t::model::vit::{Component, forward_embedded};
use s3t::model::weights::{load_safetensors, to_safetensors, to_safetensors_async};
use s3t::model::{
    Backbone, GroupAdapter, Head, LoraConfig, ModelConfig, NodeParams, Pretrained, SisaParams, TrainConfig, VitConfig,
    input,
};
use s3t::partition::Assignment;
use s3t::plan::node_seed;
use s3t::{Cell, Partition, PartitionMode, Plan, SampleId, Served, Strategy};
use s3t_tests::{synthetic_texts, tiny_bert_dir};
use serde_json::Value;

const SEED: u64 = 7;
const GROUPS: usize = 3;

/// burn's flex RNG is one process-wide generator (`device.seed` inside `pretrain` resets it, and lazily
/// initialised parameters draw from it), and the test harness runs tests on several threads: every test that
/// touches the model holds this lock so pretraining is deterministic.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    // A failed test must not turn every later one into a poison error.
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A module's tensors by name: (dtype, shape, raw data).
type Tensors = BTreeMap<String, (String, Vec<u64>, Vec<u8>)>;

fn header(bytes: &[u8]) -> (usize, serde_json::Map<String, Value>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte header length")) as usize;
    (8 + n, serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header is JSON"))
}

fn offsets(info: &Value) -> (usize, usize) {
    let range = info["data_offsets"].as_array().expect("data_offsets");
    let at = |i: usize| range[i].as_u64().expect("offset") as usize;
    (at(0), at(1))
}

/// The tensors of safetensors bytes, ignoring the `__metadata__` header entry.
fn tensors(bytes: &[u8]) -> Tensors {
    let (start, map) = header(bytes);
    map.into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, info)| {
            let dtype = info["dtype"].as_str().expect("dtype").to_owned();
            let shape = info["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim")).collect();
            let (a, b) = offsets(&info);
            (name, (dtype, shape, bytes[start + a..start + b].to_vec()))
        })
        .collect()
}

/// The tensors of a module (a macro because the `Module` bound lives in burn, which this crate does not name).
macro_rules! weights {
    ($module:expr) => {
        tensors(&to_safetensors($module).expect("serialise weights"))
    };
}

/// Tensors under `prefix.` with the prefix removed (e.g. the head inside a node file).
fn under(all: &Tensors, prefix: &str) -> Tensors {
    let prefix = format!("{prefix}.");
    all.iter().filter_map(|(name, t)| name.strip_prefix(&prefix).map(|rest| (rest.to_owned(), t.clone()))).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit tables differ in size");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn model_config() -> ModelConfig {
    ModelConfig::new()
        .with_vit(VitConfig::new().with_d_model(16).with_heads(2).with_depth(3).with_mlp_ratio(1))
        .with_groups(GROUPS)
        .with_lora(LoraConfig::new().with_rank(2))
}

fn train_config() -> TrainConfig {
    TrainConfig::new().with_epochs(1).with_batch_size(16)
}

/// Seeded random 28×28 images with random labels: enough for every step to move its parameters.
fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = (0..n * 28 * 28).map(|_| rng.random::<u8>()).collect();
    let labels = (0..n).map(|_| rng.random_range(0..10u8)).collect();
    Dataset { rows: 28, cols: 28, classes: 10, pixels, labels, text: None }
}

/// The same public, validation and test splits for every `deletable_seed`; only the deletable split varies.
fn splits(deletable_seed: u64) -> Splits {
    Splits::new(synthetic(64, 1), synthetic(96, deletable_seed), synthetic(24, 3), synthetic(8, 4)).expect("splits")
}

/// Both fixtures: the ViT pretrained here and the test-sized Hugging Face BERT (tokenized texts, post-norm blocks,
/// a frozen layer below the three groups). The exactness rules must hold on each.
fn fixtures() -> [Fixture; 2] {
    [Fixture::new(), Fixture::text()]
}

/// A pretrained tiny model with one shard, three slices and the single cyclic sequence [a, b, c].
struct Fixture {
    config: ModelConfig,
    train: TrainConfig,
    cpu: Selected,
    splits: Splits,
    pretrained: Pretrained,
    features: Features,
    validation: Features,
    partition: Partition,
    assignment: Assignment,
    plan: Plan,
}

impl Fixture {
    fn new() -> Self {
        let config = model_config();
        let train = train_config();
        let cpu = cpu();
        let splits = splits(2);
        let pretrained = pretrain(&config, &train, &splits.public, SEED, &cpu.device, Pieces::cpu(2), &mut |_| {});
        Self::around(config, train, cpu, splits, pretrained)
    }

    /// The test-sized BERT of `tests/fixtures/hf` (4 layers: one frozen below three groups of one), its head
    /// trained on the public texts, with the same shard, slices and sequence.
    fn text() -> Self {
        let dir = tiny_bert_dir();
        let hf = HfDir::open(&dir).expect("the test-sized BERT");
        let lora = LoraConfig::new().with_rank(2);
        let config = hf.config.model_config(2, GROUPS, 1, 16, lora).expect("a text configuration");
        let train = train_config();
        let cpu = cpu();
        let tokenizer = hf.tokenizer(16).expect("its tokenizer");
        let texts = |n, seed| synthetic_texts(&tokenizer, n, 20, seed);
        let splits = Splits::new(texts(64, 1), texts(96, 2), texts(24, 3), texts(8, 4)).expect("splits");
        let backbone = hf.backbone(&config, &cpu.device).expect("its weights");
        let head = train_head(&config, &train, &backbone, &splits.public, SEED, &cpu.device, &mut |_| {});
        let pretrained = Pretrained { backbone, head };
        Self::around(config, train, cpu, splits, pretrained)
    }

    /// A fixture of a pretrained model: its cached activations, one shard of three slices, the cyclic sequence.
    fn around(config: ModelConfig, train: TrainConfig, cpu: Selected, splits: Splits, pretrained: Pretrained) -> Self {
        let features = Features::new(&config, &pretrained.backbone, &splits.deletable, &cpu.device);
        let validation = Features::new(&config, &pretrained.backbone, &splits.validation, &cpu.device);
        let partition = Partition::new(1, GROUPS as u16, PartitionMode::default()).expect("partition");
        let ids = (0..splits.deletable.len() as u64).map(SampleId::Int);
        let assignment = partition.assign(ids).expect("assignment");
        let plan = Plan::new(1, GROUPS as u16, 1, &Strategy::Cyclic).expect("plan");
        Self { config, train, cpu, splits, pretrained, features, validation, partition, assignment, plan }
    }

    /// The same fixture (same backbone, partition and plan) over another deletable split: the cached activations
    /// are recomputed from it.
    fn with_deletable(&self, deletable: Dataset) -> Self {
        let mut splits = self.splits.clone();
        splits.deletable = deletable;
        let features = Features::new(&self.config, &self.pretrained.backbone, &splits.deletable, &self.cpu.device);
        let validation = Features::new(&self.config, &self.pretrained.backbone, &splits.validation, &self.cpu.device);
        Self {
            config: self.config.clone(),
            train: self.train.clone(),
            cpu: self.cpu.clone(),
            splits,
            pretrained: self.pretrained.clone(),
            features,
            validation,
            partition: self.partition.clone(),
            assignment: self.assignment.clone(),
            plan: self.plan.clone(),
        }
    }

    /// The first sample of a slice.
    fn member(&self, slice: u16) -> u64 {
        match self.assignment.members(Cell { shard: 0, slice })[0] {
            SampleId::Int(i) => i,
            ref other => panic!("unexpected id {other}"),
        }
    }

    /// The deletable split with sample `i`'s pixels inverted (a text's words replaced) and its label moved to
    /// another class.
    fn perturbed(&self, i: u64) -> Dataset {
        let mut data = self.splits.deletable.clone();
        let i = i as usize;
        let cols = data.cols as usize;
        match &mut data.text {
            None => {
                let n = data.pixels_per_image();
                for p in &mut data.pixels[i * n..(i + 1) * n] {
                    *p = 255 - *p;
                }
            }
            Some(text) => {
                // The words between [CLS] and [SEP] become other words of the vocabulary.
                let real = text.lengths[i] as usize;
                for id in &mut text.ids[i * cols + 1..i * cols + real.saturating_sub(1).max(1)] {
                    *id = if *id == 50 { 51 } else { 50 };
                }
                text.texts[i] = format!("changed {}", text.texts[i]);
            }
        }
        data.labels[i] = (data.labels[i] + 1) % data.classes;
        data
    }

    /// Prefixes of the chain of sequence 0: [a], [a, b], [a, b, c].
    fn prefixes(&self) -> Vec<Vec<u16>> {
        let shard = &self.plan.shards[0];
        shard.chains[0].iter().map(|&id| shard.nodes[id].prefix.clone()).collect()
    }

    /// Deletable indices of a prefix's slices without `deleted`, in the order `build_shard` uses.
    fn samples(&self, prefix: &[u16], deleted: &[u64]) -> Vec<usize> {
        let mut out = Vec::new();
        for &slice in prefix {
            for id in self.assignment.members(Cell { shard: 0, slice }) {
                match id {
                    SampleId::Int(i) if !deleted.contains(i) => out.push(*i as usize),
                    SampleId::Int(_) => {}
                    other => panic!("unexpected id {other}"),
                }
            }
        }
        out
    }

    /// One node step on top of `ancestors` (groups 1..k−1, their last head as the parent head).
    fn node(&self, prefix: &[u16], ancestors: &[&NodeParams], seed: u64, deleted: &[u64]) -> NodeParams {
        let frozen: Vec<&GroupAdapter> = ancestors.iter().map(|n| &n.adapter).collect();
        let parent_head = ancestors.last().map_or(&self.pretrained.head, |n| &n.head);
        let samples = self.samples(prefix, deleted);
        // The run settings `build_shard` uses for a prefix of this length.
        let inputs = TrainInputs {
            config: &self.config,
            backbone: &self.pretrained.backbone,
            features: &self.features,
            data: &self.splits.deletable,
            // Model selection on the validation split, as `build_shard` does.
            validation: Some((&self.validation, &self.splits.validation.labels)),
            device: &self.cpu.device,
        };
        let run = NodeRun { frozen, parent_head, samples, seed, run: self.train.for_slices(prefix.len(), GROUPS) };
        train_node(&inputs, run, &mut |_| {})
    }

    /// The chain trained step by step outside any bundle code, with the seeds `build_shard` derives.
    fn chain(&self) -> Vec<NodeParams> {
        let mut nodes: Vec<NodeParams> = Vec::new();
        for prefix in self.prefixes() {
            let ancestors: Vec<&NodeParams> = nodes.iter().collect();
            let node = self.node(&prefix, &ancestors, node_seed(SEED, 0, &prefix), &[]);
            nodes.push(node);
        }
        nodes
    }

    fn build(&self, dir: &Path, reuse: &[Option<NodeEntry>], deleted: &[u64]) -> ShardPart {
        self.build_in(&BundleDir(dir), reuse, deleted)
    }

    fn build_in(&self, store: &dyn PartStore, reuse: &[Option<NodeEntry>], deleted: &[u64]) -> ShardPart {
        self.build_with(store, reuse, deleted, &self.splits, &self.features, None)
    }

    /// The worker's way: the deletable split held in another row order (its own copy of the shard's samples), the
    /// cached activations computed from that copy, and a map from sample id to row.
    fn build_relocated(&self, store: &dyn PartStore, reuse: &[Option<NodeEntry>], deleted: &[u64]) -> ShardPart {
        let n = self.splits.deletable.len();
        let order: Vec<usize> = (0..n).rev().collect();
        let mut splits = self.splits.clone();
        splits.deletable = self.splits.deletable.select(&order);
        let rows: HashMap<u64, usize> = order.iter().enumerate().map(|(row, &i)| (i as u64, row)).collect();
        let features = Features::new(&self.config, &self.pretrained.backbone, &splits.deletable, &self.cpu.device);
        self.build_with(store, reuse, deleted, &splits, &features, Some(&rows))
    }

    fn build_with(
        &self,
        store: &dyn PartStore,
        reuse: &[Option<NodeEntry>],
        deleted: &[u64],
        data: &Splits,
        features: &Features,
        rows: Option<&HashMap<u64, usize>>,
    ) -> ShardPart {
        let ctx = BuildContext {
            bundle: store,
            config: &self.config,
            train: &self.train,
            seed: SEED,
            data,
            pretrained: &self.pretrained,
            assignment: &self.assignment,
            plan: &self.plan,
            device: &self.cpu.device,
            features,
            validation: &self.validation,
            batching: Batching::stacked(1),
            rows,
        };
        let gone = |id: &SampleId| matches!(id, SampleId::Int(i) if deleted.contains(i));
        let job = ShardJob { shard: 0, reuse: reuse.to_vec(), reuse_sisa: Vec::new(), generation: 0, only: None };
        build_shard(&ctx, job, false, &gone, &mut |_| {}).expect("build_shard")
    }

    /// A manifest for a built shard (the backbone file is written here), checked by a JSON round trip.
    fn manifest(&self, dir: &Path, part: ShardPart) -> Manifest {
        // A text bundle's backbone file is its head alone (the encoder is read from its Hugging Face directory).
        let bytes = match self.config.text {
            Some(_) => to_safetensors(&self.pretrained.head),
            None => to_safetensors(&self.pretrained),
        }
        .expect("serialise backbone");
        let backbone = write_weights(dir, "weights/backbone.safetensors", &bytes).expect("write backbone");
        let s = &self.splits;
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            version: VERSION,
            model: self.config.clone(),
            pretrain: self.train.clone(),
            train: self.train.clone(),
            seed: SEED,
            backend: Backend::new(false, "cpu (flex)"),
            canaries: Default::default(),
            data: DataInfo {
                source: "synthetic".into(),
                rows: s.deletable.rows,
                cols: s.deletable.cols,
                classes: s.deletable.classes,
                public: s.public.len(),
                deletable: s.deletable.len(),
                validation: s.validation.len(),
                test: s.test.len(),
                deletable_sha256: String::new(),
                deletable_digests_sha256: String::new(),
                labels: match self.config.text {
                    Some(_) => (0..s.deletable.classes).map(|c| c.to_string()).collect(),
                    None => Vec::new(),
                },
                fields: None,
            },
            partition: self.partition.clone(),
            strategy: Strategy::Cyclic,
            budget: 1,
            sequences: self.plan.sequences(),
            backbone: BackboneEntry {
                seed: SEED,
                validation_accuracy: 0.0,
                test_accuracy: 0.0,
                weights: backbone,
                source: None,
            },
            nodes: vec![part.nodes],
            sisa: Vec::new(),
        };
        Manifest::from_json("manifest.json", &manifest.to_json()).expect("manifest round trip")
    }

    /// Loads a bundle of this fixture from `dir` (a text bundle with the fixture's encoder).
    fn load(&self, dir: &Path, manifest: Manifest) -> Model {
        let encoder = self.config.text.as_ref().map(|_| self.pretrained.backbone.clone());
        Model::load_with(manifest, encoder, &self.cpu.device, |_, _| true, |w| read_weights(dir, w))
            .expect("load bundle")
    }

    /// `adapter` with its B matrices set to zero: present in the model but contributing exactly nothing.
    fn switched_off(&self, adapter: &GroupAdapter) -> GroupAdapter {
        let mut bytes = to_safetensors(adapter).expect("serialise adapter");
        let (start, map) = header(&bytes);
        let mut zeroed = 0;
        for (name, info) in &map {
            if name.ends_with("query_b") || name.ends_with("value_b") {
                let (a, b) = offsets(info);
                bytes[start + a..start + b].fill(0);
                zeroed += 1;
            }
        }
        assert_eq!(zeroed, 2 * adapter.blocks.len(), "every block has a query and a value B");
        let skeleton = GroupAdapter::init(&self.config, adapter.group, 0, &self.cpu.device);
        load_safetensors(skeleton, bytes, "switched-off adapter").expect("load switched-off adapter")
    }

    /// Row-major logits of a component on the whole validation split, from raw images (or token ids).
    fn logits(&self, groups: &[&GroupAdapter], head: &Head) -> Vec<f32> {
        let all: Vec<usize> = (0..self.splits.validation.len()).collect();
        let (x, mask) = input::embed(&self.pretrained.backbone, &self.splits.validation, &all, &self.cpu.device);
        let component = Component { groups, head };
        to_host(forward_embedded(&self.config, &self.pretrained.backbone, component, x, mask.as_ref()))
    }
}

// The tests, after the fixture and the `weights!` macro they use.
mod forgetting;
mod retrain;
mod rules;
