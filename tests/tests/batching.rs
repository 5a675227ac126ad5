//! Level batching (DESIGN.md "Level batching"): on the CPU backend a training run's weights are bit-identical
//! whether it trains alone, stacked with any other runs (in any order and any batch size), or on one of several
//! threads next to other runs.
//!
//! The model is the default width (64) with the default batch (64 samples of 16 tokens), so the products cross
//! burn-flex's thresholds where a lone product is split across threads and a batch of products runs one per thread:
//! the arithmetic of a run must not depend on which of those paths its products take. The same holds for a text
//! backbone (the test-sized BERT, post-norm, with frozen layers below the groups) on texts of different lengths:
//! padding and the attention mask must not let a sample's batch-mates reach its weights.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use s3t::dataset::Dataset;
use s3t::model::device::{Selected, cpu};
use s3t::model::features::{Features, logits_all, to_host};
use s3t::model::hf::HfDir;
use s3t::model::parallel::Batching;
use s3t::model::train::{NodeRun, SisaRun, TrainInputs, train_nodes, train_sisas};
use s3t::model::{
    Backbone, Component, GroupAdapter, Head, LoraConfig, ModelConfig, NodeParams, SisaParams, TrainConfig,
};
use s3t_tests::{synthetic_texts, tiny_bert_dir};

fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = (0..n * 28 * 28).map(|_| rng.random::<u8>()).collect();
    let labels = (0..n).map(|_| rng.random_range(0..10u8)).collect();
    Dataset { rows: 28, cols: 28, classes: 10, pixels, labels, text: None }
}

fn bits(groups: &[&GroupAdapter], head: &Head) -> Vec<u32> {
    let mut out = Vec::new();
    for g in groups {
        for b in &g.blocks {
            for t in [&b.query_a, &b.query_b, &b.value_a, &b.value_b] {
                out.extend(to_host(t.val()).iter().map(|x| x.to_bits()));
            }
        }
    }
    out.extend(to_host(head.linear.weight.val()).iter().map(|x| x.to_bits()));
    if let Some(bias) = &head.linear.bias {
        out.extend(to_host(bias.val()).iter().map(|x| x.to_bits()));
    }
    out
}

fn node_bits(p: &NodeParams) -> Vec<u32> {
    bits(&[&p.adapter], &p.head)
}

fn sisa_bits(p: &SisaParams) -> Vec<u32> {
    bits(&p.adapters.iter().collect::<Vec<_>>(), &p.head)
}

struct Setup {
    config: ModelConfig,
    cpu: Selected,
    backbone: Backbone,
    head: Head,
    data: Dataset,
    validation: Dataset,
    features: Features,
    validation_features: Features,
}

impl Setup {
    /// The test-sized BERT of `tests/fixtures/hf` (4 layers) in two groups of `per` layers: one layer each on top of
    /// two frozen layers, or two each, every layer adapted (the text default); packed tokens (the default) or the
    /// padded arithmetic of older bundles.
    fn text(per: usize, packed: bool) -> Self {
        let dir = tiny_bert_dir();
        let hf = HfDir::open(&dir).expect("the test-sized BERT");
        let mut config = hf.config.model_config(2, 2, per, 16, LoraConfig::new()).expect("a text configuration");
        if let Some(text) = config.text.as_mut() {
            text.packed = Some(packed);
        }
        let cpu = cpu();
        let device = &cpu.device;
        device.seed(3);
        let backbone = hf.backbone(&config, device).expect("its weights");
        let head = Head::new(&config.vit, device);
        let tokenizer = hf.tokenizer(16).expect("its tokenizer");
        let data = synthetic_texts(&tokenizer, 400, 24, 1);
        let validation = synthetic_texts(&tokenizer, 80, 24, 2);
        let features = Features::new(&config, &backbone, &data, device);
        let validation_features = Features::new(&config, &backbone, &validation, device);
        Self { config, cpu, backbone, head, data, validation, features, validation_features }
    }

    fn new() -> Self {
        let config = ModelConfig::new();
        let cpu = cpu();
        let device = &cpu.device;
        device.seed(3);
        // Any backbone serves: the question is only whether runs interact.
        let backbone = Backbone::new(&config.vit, device);
        let head = Head::new(&config.vit, device);
        let data = synthetic(400, 1);
        let validation = synthetic(80, 2);
        let features = Features::new(&config, &backbone, &data, device);
        let validation_features = Features::new(&config, &backbone, &validation, device);
        Self { config, cpu, backbone, head, data, validation, features, validation_features }
    }

    /// The setup's model and samples, training from `features`.
    fn inputs<'a>(&'a self, features: &'a Features, validation: Option<(&'a Features, &'a [u8])>) -> TrainInputs<'a> {
        let (config, backbone, data, device) = (&self.config, &self.backbone, &self.data, &self.cpu.device);
        TrainInputs { config, backbone, features, data, validation, device }
    }

    fn nodes(&self, runs: &[NodeRun<'_>], batching: Batching) -> Vec<Vec<u32>> {
        self.fitted(runs, batching).into_iter().map(|(bits, _)| bits).collect()
    }

    /// Each run's weight bits and selected validation score.
    fn fitted(&self, runs: &[NodeRun<'_>], batching: Batching) -> Vec<(Vec<u32>, Option<f64>)> {
        let validation = Some((&self.validation_features, self.validation.labels.as_slice()));
        let inputs = self.inputs(&self.features, validation);
        train_nodes(&inputs, runs, batching, &mut |_| {})
            .into_iter()
            .map(|u| u.read())
            .map(|f| (node_bits(&f.params), f.validation_accuracy))
            .collect()
    }
}

/// Runs of different sizes (so they end at different steps, and their last batches are short) and seeds.
fn sample_sets() -> Vec<Vec<usize>> {
    vec![
        (0..150).collect(),
        (150..280).collect(),
        (280..370).collect(),
        (0..400).step_by(3).collect(),
        (5..25).collect(),
    ]
}

fn train() -> TrainConfig {
    TrainConfig::new().with_epochs(2)
}

/// Every ordering, batch size and thread count of `runs` gives each run the weights (and the validation score) it
/// has alone.
fn check_nodes(setup: &Setup, runs: &[NodeRun<'_>]) {
    let one = Batching::stacked(1);
    let alone: Vec<(Vec<u32>, Option<f64>)> =
        runs.iter().flat_map(|r| setup.fitted(std::slice::from_ref(r), one)).collect();
    assert!(alone.iter().all(|(w, score)| !w.is_empty() && score.is_some()));
    for batching in [
        Batching::stacked(2),
        Batching::stacked(runs.len()),
        Batching::threaded(2),
        Batching::threaded(3),
        Batching { nodes: 2, threads: 2 },
    ] {
        assert_eq!(setup.fitted(runs, batching), alone, "{batching:?} changed a node's weights");
    }
    let alone: Vec<Vec<u32>> = alone.into_iter().map(|(w, _)| w).collect();
    let reversed: Vec<NodeRun<'_>> = runs
        .iter()
        .rev()
        .map(|r| NodeRun {
            frozen: r.frozen.clone(),
            parent_head: r.parent_head,
            samples: r.samples.clone(),
            seed: r.seed,
            run: r.run.clone(),
        })
        .collect();
    let mut back = setup.nodes(&reversed, Batching::stacked(runs.len()));
    back.reverse();
    assert_eq!(back, alone, "another order in the batch changed a node's weights");
}

#[test]
fn a_node_trains_the_same_alone_or_in_any_batch() {
    nodes_train_the_same(&Setup::new());
}

#[test]
fn a_text_node_trains_the_same_alone_or_in_any_batch() {
    nodes_train_the_same(&Setup::text(1, true));
}

#[test]
fn a_text_node_with_every_layer_adapted_trains_the_same_alone_or_in_any_batch() {
    nodes_train_the_same(&Setup::text(2, true));
}

#[test]
fn a_text_node_in_the_padded_arithmetic_trains_the_same_alone_or_in_any_batch() {
    nodes_train_the_same(&Setup::text(2, false));
}

fn nodes_train_the_same(setup: &Setup) {
    // Top-group nodes (depth 1): every one from the pretrained head.
    let depth1: Vec<NodeRun<'_>> = sample_sets()
        .into_iter()
        .enumerate()
        .map(|(i, samples)| NodeRun {
            frozen: Vec::new(),
            parent_head: &setup.head,
            samples,
            seed: 11 + i as u64,
            run: train(),
        })
        .collect();
    check_nodes(setup, &depth1);

    // Depth 2: each node below a different parent (its frozen group and head are its own).
    let parents: Vec<_> =
        train_nodes(&setup.inputs(&setup.features, None), &depth1[..3], Batching::stacked(3), &mut |_| {})
            .into_iter()
            .map(|u| u.read())
            .collect();
    let depth2: Vec<NodeRun<'_>> = parents
        .iter()
        .map(|f| &f.params)
        .enumerate()
        .map(|(i, p)| NodeRun {
            frozen: vec![&p.adapter],
            parent_head: &p.head,
            samples: sample_sets()[(i + 1) % 5].clone(),
            seed: 21 + i as u64,
            run: train(),
        })
        .collect();
    check_nodes(setup, &depth2);
}

#[test]
fn a_sisa_checkpoint_trains_the_same_alone_or_in_a_batch() {
    sisa_trains_the_same(&Setup::new());
}

#[test]
fn a_text_sisa_checkpoint_trains_the_same_alone_or_in_a_batch() {
    sisa_trains_the_same(&Setup::text(1, true));
}

#[test]
fn a_text_sisa_checkpoint_with_every_layer_adapted_trains_the_same_alone_or_in_a_batch() {
    sisa_trains_the_same(&Setup::text(2, true));
}

#[test]
fn a_text_sisa_checkpoint_in_the_padded_arithmetic_trains_the_same_alone_or_in_a_batch() {
    sisa_trains_the_same(&Setup::text(2, false));
}

fn sisa_trains_the_same(setup: &Setup) {
    let validation = Some((&setup.validation_features, setup.validation.labels.as_slice()));
    let inputs = setup.inputs(&setup.features, validation);
    let first: Vec<SisaRun<'_>> = sample_sets()[..3]
        .iter()
        .enumerate()
        .map(|(i, s)| SisaRun { previous: None, samples: s.clone(), seed: 31 + i as u64, run: train() })
        .collect();
    let sisa = |runs: &[SisaRun<'_>], batching: Batching| -> Vec<SisaParams> {
        train_sisas(&inputs, &setup.head, runs, batching, &mut |_| {}).into_iter().map(|u| u.read().params).collect()
    };
    let one = Batching::stacked(1);
    let alone: Vec<SisaParams> = first.iter().flat_map(|r| sisa(std::slice::from_ref(r), one)).collect();
    let alone_bits: Vec<Vec<u32>> = alone.iter().map(sisa_bits).collect();
    for batching in [Batching::stacked(3), Batching::threaded(2)] {
        let together = sisa(&first, batching);
        assert_eq!(together.iter().map(sisa_bits).collect::<Vec<_>>(), alone_bits, "{batching:?}");
    }
    // Continuing from different previous checkpoints.
    let second: Vec<SisaRun<'_>> = alone
        .iter()
        .enumerate()
        .map(|(i, p)| SisaRun { previous: Some(p), samples: sample_sets()[i + 2].clone(), seed: 41, run: train() })
        .collect();
    let alone: Vec<Vec<u32>> =
        second.iter().flat_map(|r| sisa(std::slice::from_ref(r), one)).map(|p| sisa_bits(&p)).collect();
    assert_eq!(sisa(&second, Batching::stacked(2)).iter().map(sisa_bits).collect::<Vec<_>>(), alone);
}

/// Negative control: the comparison sees a change of one run's seed (so equal weights above are not vacuous).
#[test]
fn control_another_seed_changes_the_weights() {
    for setup in [Setup::new(), Setup::text(1, true)] {
        another_seed_changes_the_weights(&setup);
    }
}

fn another_seed_changes_the_weights(setup: &Setup) {
    let run = |seed| NodeRun {
        frozen: Vec::new(),
        parent_head: &setup.head,
        samples: sample_sets()[0].clone(),
        seed,
        run: train(),
    };
    let one = Batching::stacked(1);
    assert_ne!(setup.nodes(&[run(1)], one), setup.nodes(&[run(2)], one));
}

/// Packed tokens (`TextConfig::packed`, `s3t::model::packing`) change no bit of the forward pass: the cached
/// activations at every group boundary (at the real tokens) and a trained component's logits are the padded
/// layout's. Training on packed tokens never reads the padding (whatever the cache holds there, the weights are the
/// same), and it is another arithmetic: only the grouping of the weight gradients' sums differs, but that changes
/// the trained bits (the control), which is why a bundle records which arithmetic it was trained with.
#[test]
fn packed_tokens_change_no_bit_of_the_forward_pass_but_train_other_bits() {
    let (packed, padded) = (Setup::text(1, true), Setup::text(1, false));
    let lengths = &padded.data.text.as_ref().expect("texts").lengths;
    let real: Vec<bool> = lengths.iter().flat_map(|&l| (0..16).map(move |t| t < l)).collect();
    assert!(real.iter().any(|r| !r), "the texts have padding");
    for group in 1..=2 {
        let width = padded.config.vit.d_model;
        let at_real = |f: &Features| -> Vec<u32> {
            let values = to_host(f.all(group));
            let rows = values.chunks(width).zip(&real).filter(|(_, r)| **r);
            rows.flat_map(|(row, _)| row.iter().map(|v| v.to_bits())).collect()
        };
        assert_eq!(at_real(&packed.features), at_real(&padded.features), "activations entering group {group}");
    }
    // A SISA checkpoint trains every group from the bottom one's cached activations.
    let train = |setup: &Setup, features: &Features| -> SisaParams {
        let run = SisaRun { previous: None, samples: sample_sets()[0].clone(), seed: 5, run: train() };
        let mut out =
            train_sisas(&setup.inputs(features, None), &setup.head, &[run], Batching::stacked(1), &mut |_| {});
        out.remove(0).read().params
    };
    let on_padded = train(&padded, &padded.features);
    let logits = |setup: &Setup, features: &Features| -> Vec<u32> {
        let groups: Vec<&GroupAdapter> = on_padded.adapters.iter().collect();
        let component = Component { groups: &groups, head: &on_padded.head };
        logits_all(&setup.config, &setup.backbone, component, features).iter().map(|v| v.to_bits()).collect()
    };
    assert_eq!(logits(&packed, &packed.validation_features), logits(&padded, &padded.validation_features));
    // The padded layout's cache holds the padding's activations, the packed one's zeros there.
    let packed_bits = sisa_bits(&train(&packed, &packed.features));
    assert_eq!(sisa_bits(&train(&packed, &padded.features)), packed_bits, "packed training never reads padding");
    assert_ne!(packed_bits, sisa_bits(&on_padded), "control: packed training is another arithmetic");
}
