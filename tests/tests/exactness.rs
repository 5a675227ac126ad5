//! Exactness rules E1–E4 and E6 (DESIGN.md §2) on the real burn model, on the CPU, with a tiny ViT and synthetic
//! data so the file runs in seconds. Every rule check has a negative control showing the comparison can fail.
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
use s3t::model::build::{BuildContext, BundleDir, MemoryStore, PartStore, ShardPart, build_shard};
use s3t::model::device::{Selected, cpu};
use s3t::model::features::{Features, logits_all, to_host};
use s3t::model::parallel::Batching;
use s3t::model::serve::Model;
use s3t::model::train::{pretrain, train_node, train_sisa};
use s3t::model::vit::{Component, forward};
use s3t::model::weights::{load_safetensors, to_safetensors};
use s3t::model::{
    GroupAdapter, Head, LoraConfig, ModelConfig, NodeParams, Pretrained, SisaParams, TrainConfig, VitConfig, input,
};
use s3t::partition::Assignment;
use s3t::plan::node_seed;
use s3t::{Cell, Partition, PartitionMode, Plan, SampleId, Served, Strategy};
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
    Dataset { rows: 28, cols: 28, classes: 10, pixels, labels }
}

/// The same public, validation and test splits for every `deletable_seed`; only the deletable split varies.
fn splits(deletable_seed: u64) -> Splits {
    Splits::new(synthetic(64, 1), synthetic(96, deletable_seed), synthetic(24, 3), synthetic(8, 4)).expect("splits")
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
        let pretrained = pretrain(&config, &train, &splits.public, SEED, &cpu.device, &mut |_| {});
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

    /// The deletable split with sample `i`'s pixels inverted and its label moved to another class.
    fn perturbed(&self, i: u64) -> Dataset {
        let mut data = self.splits.deletable.clone();
        let n = data.pixels_per_image();
        let i = i as usize;
        for p in &mut data.pixels[i * n..(i + 1) * n] {
            *p = 255 - *p;
        }
        data.labels[i] = (data.labels[i] + 1) % 10;
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
        train_node(
            &self.config,
            &self.train.for_slices(prefix.len(), GROUPS),
            &self.pretrained.backbone,
            &frozen,
            parent_head,
            &self.features,
            &self.splits.deletable,
            &samples,
            seed,
            // Model selection on the validation split, as `build_shard` does.
            Some((&self.validation, &self.splits.validation.labels)),
            &self.cpu.device,
            &mut |_| {},
        )
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
        build_shard(&ctx, 0, reuse, &[], false, 0, &gone, &mut |_| {}).expect("build_shard")
    }

    /// A manifest for a built shard (the backbone file is written here), checked by a JSON round trip.
    fn manifest(&self, dir: &Path, part: ShardPart) -> Manifest {
        let bytes = to_safetensors(&self.pretrained).expect("serialise backbone");
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
                rows: 28,
                cols: 28,
                classes: 10,
                public: s.public.len(),
                deletable: s.deletable.len(),
                validation: s.validation.len(),
                test: s.test.len(),
                deletable_sha256: String::new(),
                deletable_digests_sha256: String::new(),
            },
            partition: self.partition.clone(),
            strategy: Strategy::Cyclic,
            budget: 1,
            sequences: self.plan.sequences(),
            backbone: BackboneEntry { seed: SEED, validation_accuracy: 0.0, test_accuracy: 0.0, weights: backbone },
            nodes: vec![part.nodes],
            sisa: Vec::new(),
        };
        Manifest::from_json("manifest.json", &manifest.to_json()).expect("manifest round trip")
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

    /// Row-major logits of a component on the whole validation split, from raw images.
    fn logits(&self, groups: &[&GroupAdapter], head: &Head) -> Vec<f32> {
        let all: Vec<usize> = (0..self.splits.validation.len()).collect();
        let images = input::images(&self.splits.validation, &all, &self.cpu.device);
        to_host(forward(&self.config, &self.pretrained.backbone, Component { groups, head }, images))
    }
}

/// Root cause behind the byte-level checks below: the same module serialised twice must give the same bytes,
/// or a node's `weights.sha256` cannot be reproduced by a resume, a retrain or another machine (E6, E8).
#[test]
fn weight_files_are_byte_reproducible() {
    let _guard = lock();
    let head = Head::new(&model_config().vit, &cpu().device);
    let first = to_safetensors(&head).expect("serialise");
    for _ in 0..20 {
        let again = to_safetensors(&head).expect("serialise");
        assert_eq!(weights!(&head), tensors(&first), "the tensors themselves are stable");
        assert!(
            again == first,
            "to_safetensors gave different bytes for the same module: the header's __metadata__ map (a HashMap) \
             is written in random key order\nfirst: {}\nagain: {}",
            String::from_utf8_lossy(&first[..header(&first).0]),
            String::from_utf8_lossy(&again[..header(&again).0]),
        );
    }
}

/// E1: pretraining takes the public split only, so the backbone is the same whatever the deletable split holds,
/// it sees exactly |public| × epochs samples, and it is deterministic given the seed.
#[test]
fn e1_backbone_does_not_depend_on_the_deletable_split() {
    let _guard = lock();
    let config = model_config();
    let train = train_config();
    let device = cpu().device;
    let a = splits(2);
    let b = splits(99);
    assert_eq!(a.public, b.public);
    assert_ne!(a.deletable, b.deletable, "the two source splits must differ in their deletable part");

    let mut seen = 0;
    let with_a = pretrain(&config, &train, &a.public, SEED, &device, &mut |n| seen += n);
    assert_eq!(seen, a.public.len() * train.epochs, "pretraining steps cover the public split only");
    let with_b = pretrain(&config, &train, &b.public, SEED, &device, &mut |_| {});
    assert_eq!(weights!(&with_a), weights!(&with_b), "backbone and head differ with another deletable split");

    // Negative control: one public image changed changes the backbone, so the comparison above can fail.
    let mut public = a.public.clone();
    let pixels = public.pixels_per_image();
    for p in &mut public.pixels[..pixels] {
        *p = 255 - *p;
    }
    let changed = pretrain(&config, &train, &public, SEED, &device, &mut |_| {});
    assert_ne!(weights!(&with_a.backbone), weights!(&changed.backbone), "pretraining ignored its public data");
}

/// E2: training group k leaves the backbone and groups 1..k−1 bit for bit as they were; the trainable module is
/// exactly group k's adapters and the head; group k itself did train.
#[test]
fn e2_node_step_leaves_backbone_and_frozen_groups_unchanged() {
    let _guard = lock();
    let fx = Fixture::new();
    let backbone = weights!(&fx.pretrained.backbone);
    let mut nodes: Vec<NodeParams> = Vec::new();
    for prefix in fx.prefixes() {
        let k = prefix.len();
        let before: Vec<Tensors> = nodes.iter().map(|n| weights!(n)).collect();
        let seed = node_seed(SEED, 0, &prefix);
        let ancestors: Vec<&NodeParams> = nodes.iter().collect();
        let node = fx.node(&prefix, &ancestors, seed, &[]);

        assert_eq!(weights!(&fx.pretrained.backbone), backbone, "step {k} changed the backbone");
        for (g, (frozen, before)) in nodes.iter().zip(&before).enumerate() {
            assert_eq!(&weights!(frozen), before, "step {k} changed group {} or its head snapshot", g + 1);
        }
        assert_eq!(node.adapter.group, k, "step {k} returned the adapters of another group");
        let trainable = weights!(&node);
        let blocks = fx.config.blocks_of_group(k).len();
        assert_eq!(under(&trainable, "adapter").len(), 4 * blocks, "group {k} holds A and B for q and v per block");
        assert_eq!(under(&trainable, "head").len(), 2, "the head is weight and bias");
        assert_eq!(trainable.len(), 4 * blocks + 2, "the node holds something besides group {k} and the head");

        // Negative control: group k and the head moved away from where they started.
        let init = GroupAdapter::init(&fx.config, k, seed, &fx.cpu.device);
        assert_ne!(weights!(&node.adapter), weights!(&init), "group {k} did not train");
        let parent_head = nodes.last().map_or(&fx.pretrained.head, |n| &n.head);
        assert_ne!(weights!(&node.head), weights!(parent_head), "the head did not train in step {k}");
        nodes.push(node);
    }
}

/// Negative control for E2: SISA trains every group, so continuing from a checkpoint changes group 1, and the
/// byte comparison used above sees it (while the backbone still stays frozen).
#[test]
fn e2_control_sisa_changes_group_one() {
    let _guard = lock();
    let fx = Fixture::new();
    let backbone = weights!(&fx.pretrained.backbone);
    let prefixes = fx.prefixes();
    let sisa = |previous: Option<&SisaParams>, prefix: &[u16], seed: u64| {
        let samples = fx.samples(prefix, &[]);
        let (config, data) = (&fx.config, &fx.splits.deletable);
        let (pretrained, device) = (&fx.pretrained, &fx.cpu.device);
        train_sisa(
            config,
            &fx.train,
            &pretrained.backbone,
            previous,
            &pretrained.head,
            &fx.features,
            data,
            &samples,
            seed,
            None,
            device,
            &mut |_| {},
        )
    };
    let first = sisa(None, &prefixes[0], 1);
    let second = sisa(Some(&first), &prefixes[1], 2);
    assert_eq!(first.adapters[0].group, 1);
    assert_ne!(weights!(&first.adapters[0]), weights!(&second.adapters[0]), "SISA left group 1 unchanged");
    assert_eq!(weights!(&fx.pretrained.backbone), backbone, "SISA changed the backbone");
}

/// E3: a served prefix k uses groups 1..k and the head snapshot of step k, as built into a bundle and loaded back;
/// each step's head differs from its parent's and the next one's, so using another head would be detected.
#[test]
fn e3_served_prefix_uses_the_head_of_its_step() {
    let _guard = lock();
    let fx = Fixture::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let part = fx.build(dir.path(), &[], &[]);
    let manifest = fx.manifest(dir.path(), part.clone());
    let model =
        Model::load(manifest, &fx.cpu.device, |_, _| true, |w| read_weights(dir.path(), w)).expect("load bundle");
    // The same steps trained outside the bundle code: the snapshot at the end of each step.
    let steps = fx.chain();
    let chain = &fx.plan.shards[0].chains[0];

    for k in 1..=GROUPS {
        let (groups, head) = model.component(0, Served { sequence: 0, prefix: k as u16 }).expect("component");
        assert_eq!(groups.len(), k, "prefix {k} serves {} groups", groups.len());
        for (i, group) in groups.iter().enumerate() {
            assert_eq!(group.group, i + 1);
            assert_eq!(
                weights!(*group),
                weights!(&steps[i].adapter),
                "prefix {k}: group {} is not step {}'s",
                i + 1,
                i + 1
            );
        }
        let served = weights!(head);
        let file = tensors(&read_weights(dir.path(), &part.nodes[chain[k - 1]].weights).expect("node file"));
        assert_eq!(served, under(&file, "head"), "prefix {k}: the head is not the one in node {k}'s file");
        assert_eq!(served, weights!(&steps[k - 1].head), "prefix {k}: the head is not the snapshot of step {k}");
        let parent = if k == 1 { &fx.pretrained.head } else { &steps[k - 2].head };
        assert_ne!(served, weights!(parent), "step {k} left the head as its parent's");
        if k < GROUPS {
            // A later head is a different head with different outputs: serving it would be detectable.
            assert_ne!(served, weights!(&steps[k].head));
            let own = fx.logits(&groups, head);
            let later = fx.logits(&groups, &steps[k].head);
            let diff = max_abs_diff(&own, &later);
            assert!(diff > 1e-4, "prefix {k}: head {} gives the same logits as head {k} ({diff})", k + 1);
        }
    }
}

/// E4: the prefix-k model computed from raw images, from the cached activations at group k's boundary, and as the
/// full model with groups k+1..L present but switched off all agree within 1e-6; switching group k+1 on does not.
#[test]
fn e4_switching_off_lower_groups_gives_the_prefix_model() {
    let _guard = lock();
    let fx = Fixture::new();
    let steps = fx.chain();
    let trained: Vec<&GroupAdapter> = steps.iter().map(|n| &n.adapter).collect();
    let off: Vec<GroupAdapter> = steps.iter().map(|n| fx.switched_off(&n.adapter)).collect();
    for k in 1..=GROUPS {
        let head = &steps[k - 1].head;
        let prefix = fx.logits(&trained[..k], head);
        let component = Component { groups: &trained[..k], head };
        let cached = logits_all(&fx.config, &fx.pretrained.backbone, component, &fx.validation);
        let mut full: Vec<&GroupAdapter> = trained[..k].to_vec();
        full.extend(off[k..].iter());
        assert_eq!(full.len(), GROUPS);
        let switched = fx.logits(&full, head);
        let d_cached = max_abs_diff(&prefix, &cached);
        let d_switched = max_abs_diff(&prefix, &switched);
        assert!(d_cached <= 1e-6, "prefix {k}: cached-activation logits differ by {d_cached}");
        assert!(d_switched <= 1e-6, "prefix {k}: full model with groups > {k} off differs by {d_switched}");
        if k < GROUPS {
            // Negative control: group k+1 switched on (trained B ≠ 0) changes the logits.
            let on = fx.logits(&trained[..=k], head);
            let d_on = max_abs_diff(&prefix, &on);
            assert!(d_on > 1e-4, "prefix {k}: switching group {} on changed nothing ({d_on})", k + 1);
        }
    }
}

/// E6: a node is a function of its seed and samples: retraining it is bit-identical, another prefix's seed or
/// another sample set gives another node.
#[test]
fn e6_node_retrain_is_bit_identical_and_seeded_by_prefix() {
    let _guard = lock();
    let fx = Fixture::new();
    let prefixes = fx.prefixes();
    let first = &prefixes[0];
    let seed = node_seed(SEED, 0, first);
    let once = weights!(&fx.node(first, &[], seed, &[]));
    let twice = weights!(&fx.node(first, &[], seed, &[]));
    assert_eq!(once, twice, "the same node trained twice differs");

    let other = node_seed(SEED, 0, &[first[0] + 1]);
    assert_ne!(seed, other);
    assert_ne!(once, weights!(&fx.node(first, &[], other, &[])), "the seed does not reach the node");
    let deleted = fx.samples(first, &[])[0] as u64;
    assert_ne!(once, weights!(&fx.node(first, &[], seed, &[deleted])), "the samples do not reach the node");
}

/// E6: an interrupted build resumed from its completed nodes records the same entries, weights sha256 included,
/// as the uninterrupted build.
#[test]
fn e6_resumed_build_matches_fresh_build() {
    let _guard = lock();
    let fx = Fixture::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = fx.build(dir.path(), &[], &[]);
    let files: Vec<Vec<u8>> =
        fresh.nodes.iter().map(|n| read_weights(dir.path(), &n.weights).expect("node file")).collect();
    // Interrupted after the first node: it is reused from disk, the rest retrained on top of it.
    let reuse = vec![Some(fresh.nodes[0].clone()), None, None];
    let resumed = fx.build(dir.path(), &reuse, &[]);
    assert_eq!(resumed.nodes.len(), fresh.nodes.len());
    assert_eq!(resumed.complete, fresh.complete);
    // Everything but the checksum first, so a checksum-only failure is visibly one.
    let without_checksum =
        |e: &NodeEntry| NodeEntry { weights: WeightFile { sha256: String::new(), ..e.weights.clone() }, ..e.clone() };
    for (i, ((got, want), before)) in resumed.nodes.iter().zip(&fresh.nodes).zip(&files).enumerate() {
        let after = read_weights(dir.path(), &got.weights).expect("node file");
        assert_eq!(tensors(&after), tensors(before), "node {i}: resumed weights differ from the fresh build");
        assert_eq!(
            without_checksum(got),
            without_checksum(want),
            "node {i}: resumed entry differs from the fresh build"
        );
        assert_eq!(
            got.weights.sha256, want.weights.sha256,
            "node {i}: same tensors but another weights sha256: the file bytes are not reproducible \
             (see weight_files_are_byte_reproducible)"
        );
    }
}

/// E5: inputs are normalised with fixed constants (an image's tensor does not depend on the data set around it),
/// and building never reads the test split (replacing it changes no weight and no recorded validation score).
#[test]
fn e5_fixed_normalisation_and_no_test_split_in_building() {
    let _guard = lock();
    let device = cpu().device;
    let a = synthetic(4, 10);
    let mut b = synthetic(4, 11);
    let per = 28 * 28;
    b.pixels[2 * per..3 * per].copy_from_slice(&a.pixels[..per]);
    let in_a = to_host(input::images(&a, &[0, 1], &device));
    let in_b = to_host(input::images(&b, &[2], &device));
    assert_eq!(in_a[..per], in_b[..], "the same image normalised differently in another data set");
    for (x, &p) in in_a.iter().zip(&a.pixels) {
        assert_eq!(*x, f32::from(p) * (2.0 / 255.0) - 1.0, "normalisation is not the fixed map 0..=255 → [−1, 1]");
    }

    let fx = Fixture::new();
    let mut other = Fixture::new();
    other.splits.test = synthetic(8, 99);
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (x, y) = (fx.build(one.path(), &[], &[]), other.build(two.path(), &[], &[]));
    assert_eq!(x.nodes, y.nodes, "a build with another test split differs: the test split reached training");
    assert_eq!(x.sisa, y.sisa, "SISA checkpoints differ with another test split");
}

/// E6: after deleting a sample, reusing the clean nodes and retraining the rest gives exactly the nodes a build
/// that never had the sample produces.
#[test]
fn e6_retrain_after_deletion_equals_training_without_the_sample() {
    let _guard = lock();
    let fx = Fixture::new();
    let prefixes = fx.prefixes();
    // A sample of the second slice of the chain: node [a] stays clean, [a, b] and [a, b, c] must retrain.
    let slice = prefixes[1][1];
    let gone = match fx.assignment.members(Cell { shard: 0, slice })[0] {
        SampleId::Int(i) => i,
        ref other => panic!("unexpected id {other}"),
    };

    let never = tempfile::tempdir().expect("tempdir");
    let reference = fx.build(never.path(), &[], &[gone]);

    let dir = tempfile::tempdir().expect("tempdir");
    let original = fx.build(dir.path(), &[], &[]);
    let read = |entry: &NodeEntry| tensors(&read_weights(dir.path(), &entry.weights).expect("node file"));
    let original_files: Vec<Tensors> = original.nodes.iter().map(read).collect();
    // The reuse decision `trainer retrain` and `build --resume` make: the guard's, from the recorded lineage.
    let reuse = Guard::new(&fx.assignment, [SampleId::Int(gone)]).reusable(&original.nodes);
    assert_eq!(reuse.iter().filter(|r| r.is_some()).count(), 1, "only the first node is clean");
    assert!(reuse[0].is_some(), "the node of the first slice never saw the deleted sample");
    let retrained = fx.build(dir.path(), &reuse, &[gone]);

    for (i, (got, want)) in retrained.nodes.iter().zip(&reference.nodes).enumerate() {
        let expected = tensors(&read_weights(never.path(), &want.weights).expect("node file"));
        assert_eq!(read(got), expected, "node {i}: retrained weights differ from training without the sample");
        assert_eq!((got.seed, got.samples, &got.lineage), (want.seed, want.samples, &want.lineage), "node {i}");
    }
    // Negative control: the deletion changed exactly the dirty nodes.
    for (i, (entry, before)) in retrained.nodes.iter().zip(&original_files).enumerate() {
        let clean = reuse[i].is_some();
        assert_eq!(read(entry) == *before, clean, "node {i} (clean: {clean}) changed iff it saw the deleted sample");
    }
}

/// The page's retrain (the worker's in-memory store, the reused nodes' bytes put in beforehand, its own copy of the
/// samples in another row order) is `trainer retrain` bit for bit, and what it sends back is accepted exactly when it is still exact: a sample deleted while
/// it ran, or bytes changed on the way, make the page refuse it.
#[test]
fn page_retrain_in_memory_equals_trainer_retrain_and_is_checked_on_arrival() {
    let _guard = lock();
    let fx = Fixture::new();
    let prefixes = fx.prefixes();
    let slice = prefixes[1][1];
    let ids: Vec<u64> = fx
        .assignment
        .members(Cell { shard: 0, slice })
        .iter()
        .map(|id| match id {
            SampleId::Int(i) => *i,
            other => panic!("unexpected id {other}"),
        })
        .collect();
    let gone = ids[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let original = fx.build(dir.path(), &[], &[]);
    let guard = Guard::new(&fx.assignment, [SampleId::Int(gone)]);
    let reuse = guard.reusable(&original.nodes);

    let trainer = fx.build(dir.path(), &reuse, &[gone]);
    let memory = MemoryStore::default();
    for entry in reuse.iter().flatten() {
        memory.insert(&entry.weights.path, read_weights(dir.path(), &entry.weights).expect("node file"));
    }
    let page = fx.build_relocated(&memory, &reuse, &[gone]);
    assert_eq!(page.nodes, trainer.nodes, "entries (lineage, seeds, weight checksums) differ from trainer retrain");
    let retrained: Vec<usize> = page.nodes.iter().filter(|e| reuse[e.id].is_none()).map(|e| e.id).collect();
    let weights: Vec<Vec<u8>> =
        retrained.iter().map(|&id| memory.take(&page.nodes[id].weights.path).expect("trained weights")).collect();
    for (&id, bytes) in retrained.iter().zip(&weights) {
        assert_eq!(bytes, &read_weights(dir.path(), &trainer.nodes[id].weights).expect("node file"), "node {id}");
    }

    let plan = &fx.plan.shards[0];
    accept(&guard, 0, plan, &page.nodes, &retrained, &weights).expect("an exact retrain is accepted");
    // Another sample of the same slice deleted while the worker ran: the retrained nodes saw it.
    let later = Guard::new(&fx.assignment, [SampleId::Int(gone), SampleId::Int(ids[1])]);
    let stale = accept(&later, 0, plan, &page.nodes, &retrained, &weights).expect_err("a stale retrain is served");
    assert!(stale.contains(&format!("slice {slice}")), "{stale}");
    // A flipped byte on the way.
    let mut tampered = weights.clone();
    tampered[0][40] ^= 1;
    let bad = accept(&guard, 0, plan, &page.nodes, &retrained, &tampered).expect_err("changed bytes are served");
    assert!(bad.contains("checksum mismatch"), "{bad}");
    // Weights missing, or a node of another prefix.
    assert!(accept(&guard, 0, plan, &page.nodes, &retrained, &weights[1..]).is_err());
    let mut moved = page.nodes.clone();
    moved[1].prefix = moved[2].prefix.clone();
    assert!(accept(&guard, 0, plan, &moved, &retrained, &weights).is_err());
}

/// The tensors of every node of a built shard.
fn node_tensors(dir: &Path, part: &ShardPart) -> Vec<Tensors> {
    part.nodes.iter().map(|n| tensors(&read_weights(dir, &n.weights).expect("node file"))).collect()
}

/// Forgetting reaches every node: once a sample is deleted, its pixels and label change nothing a build trains
/// (every node bit-identical); the same change to a sample that is not deleted changes the nodes that saw it.
#[test]
fn a_deleted_samples_pixels_and_label_reach_no_node() {
    let _guard = lock();
    let fx = Fixture::new();
    let prefixes = fx.prefixes();
    let x = fx.member(prefixes[1][1]);
    let other = fx.with_deletable(fx.perturbed(x));
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = fx.build(one.path(), &[], &[x]);
    let b = other.build(two.path(), &[], &[x]);
    assert_eq!(node_tensors(one.path(), &a), node_tensors(two.path(), &b), "a deleted sample reached a node");
    assert_eq!(
        a.nodes.iter().map(|n| &n.lineage).collect::<Vec<_>>(),
        b.nodes.iter().map(|n| &n.lineage).collect::<Vec<_>>()
    );

    // Negative control: not deleted, the same change reaches exactly the nodes whose prefix holds its slice.
    let (three, four) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let c = fx.build(three.path(), &[], &[]);
    let d = other.build(four.path(), &[], &[]);
    for (i, (p, q)) in node_tensors(three.path(), &c).iter().zip(node_tensors(four.path(), &d)).enumerate() {
        let saw = c.nodes[i].prefix.contains(&prefixes[1][1]);
        assert_eq!(*p != q, saw, "node {i} (prefix {:?}) changed iff its prefix holds the sample", c.nodes[i].prefix);
    }
}

/// A node is a function of its prefix's samples only: changing a sample of a slice outside the prefix leaves it
/// bit-identical (and changes the node whose prefix holds it).
#[test]
fn a_sample_outside_a_nodes_prefix_does_not_reach_it() {
    let _guard = lock();
    let fx = Fixture::new();
    let prefixes = fx.prefixes();
    let last = prefixes[2][2];
    let y = fx.member(last);
    let other = fx.with_deletable(fx.perturbed(y));
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = node_tensors(one.path(), &fx.build(one.path(), &[], &[]));
    let b = node_tensors(two.path(), &other.build(two.path(), &[], &[]));
    assert_eq!(a[..2], b[..2], "a sample of slice {last} reached the nodes of prefixes without it");
    assert_ne!(a[2], b[2], "negative control: the node whose prefix holds the sample must change");
}
