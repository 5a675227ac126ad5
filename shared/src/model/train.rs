//! Training (feature `train`): backbone pretraining on the public split, S3T node steps, SISA checkpoints.
//!
//! Exactness by construction:
//! - E1: [`pretrain`] takes the public and validation splits only; it has no access to deletable data.
//! - E2: a node step hands the optimiser a module holding only group k's adapters and the head; the backbone
//!   and groups 1..k−1 are constants of the computation (no gradient, no update, no weight decay).
//! - E3: the head trained in step k is returned with the node and saved as its snapshot.
//! - E6: all randomness of a node (adapter init, batch order) comes from its seed, derived from (shard, prefix).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::adapter::GroupAdapter;
use super::config::{ModelConfig, TrainConfig};
use super::features::{Features, component_logits, to_host};
use super::input;
use super::parts::{NodeParams, Pretrained, SisaParams};
use super::vit::{Backbone, Component, Head, block_adapters, forward_backbone};
use crate::dataset::Dataset;

/// Called after every optimiser step with the number of samples in the batch.
pub type Progress<'a> = &'a mut dyn FnMut(usize);

/// Scores a module on the non-deletable validation split after each epoch (model selection, rule E5).
type Select<'a, M> = Option<&'a dyn Fn(&M) -> f64>;

/// Generic minibatch loop: `logits(module, batch)` builds the forward pass; the optimiser updates `module`. With
/// `select`, the module of the epoch with the best validation score is returned (the earliest on ties).
#[allow(clippy::too_many_arguments)]
fn fit<M: Module>(
    mut module: M,
    samples: &[usize],
    labels: &Dataset,
    config: &TrainConfig,
    seed: u64,
    device: &Device,
    progress: Progress<'_>,
    logits: impl Fn(&M, &[usize]) -> Tensor<2>,
    select: Select<'_, M>,
) -> M {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut optimizer = AdamConfig::new().init();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5348_5546_464c_4500);
    let mut order = samples.to_vec();
    let mut best: Option<(f64, M)> = None;
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(config.batch_size.max(1)) {
            let out = logits(&module, batch);
            let loss = loss_fn.forward(out, input::labels(labels, batch, device));
            let grads = GradientsParams::from_grads(loss.backward(), &module);
            module = optimizer.step(config.learning_rate, module, grads);
            progress(batch.len());
        }
        if let Some(score) = select.map(|f| f(&module))
            && best.as_ref().is_none_or(|(b, _)| score > *b)
        {
            best = Some((score, module.clone()));
        }
    }
    best.map_or(module, |(_, m)| m)
}

/// Accuracy of row-major logits against labels.
fn logits_accuracy(logits: Tensor<2>, labels: &[u8], classes: usize) -> f64 {
    let host = to_host(logits);
    super::ensemble::accuracy(&super::ensemble::softmax_rows(&host, classes), classes, labels)
}

/// Trains the backbone and a head on the public split only (rule E1). Parameter initialisation uses burn's
/// generator seeded with `seed`.
pub fn pretrain(
    config: &ModelConfig,
    train: &TrainConfig,
    public: &Dataset,
    seed: u64,
    device: &Device,
    progress: Progress<'_>,
) -> Pretrained {
    let ad = device.clone().autodiff();
    ad.seed(seed);
    let model = Pretrained { backbone: Backbone::new(&config.vit, &ad), head: Head::new(&config.vit, &ad) };
    let samples: Vec<usize> = (0..public.len()).collect();
    let trained = fit(
        model,
        &samples,
        public,
        train,
        seed,
        &ad,
        progress,
        |m, batch| forward_backbone(&m.backbone, &m.head, input::images(public, batch, &ad)),
        None,
    );
    trained.valid()
}

/// One S3T node step: trains group `frozen.len() + 1` and the head on `samples` (the union of the prefix's
/// slices, without deleted samples), starting from the parent's head; `frozen` are groups 1..k−1.
#[allow(clippy::too_many_arguments)]
pub fn train_node(
    config: &ModelConfig,
    train: &TrainConfig,
    backbone: &Backbone,
    frozen: &[&GroupAdapter],
    parent_head: &Head,
    features: &Features,
    data: &Dataset,
    samples: &[usize],
    seed: u64,
    validation: Option<(&Features, &[u8])>,
    device: &Device,
    progress: Progress<'_>,
) -> NodeParams {
    let group = frozen.len() + 1;
    let ad = device.clone().autodiff();
    // Constants of the computation: no parameter of these is handed to the optimiser.
    let backbone_ad = backbone.clone().no_grad().train();
    let frozen_ad: Vec<GroupAdapter> = frozen.iter().map(|g| (*g).clone().no_grad().train()).collect();
    let params =
        NodeParams { adapter: GroupAdapter::init(config, group, seed, &ad), head: parent_head.clone().train() };
    let select = validation.map(|(features, labels)| {
        move |p: &NodeParams| {
            let p = p.valid();
            let mut groups: Vec<&GroupAdapter> = frozen.to_vec();
            groups.push(&p.adapter);
            let logits =
                component_logits(config, backbone, Component { groups: &groups, head: &p.head }, features.all(group));
            logits_accuracy(logits, labels, config.vit.classes)
        }
    });
    let trained = fit(
        params,
        samples,
        data,
        train,
        seed,
        &ad,
        progress,
        |p, batch| {
            let mut groups: Vec<&GroupAdapter> = frozen_ad.iter().collect();
            groups.push(&p.adapter);
            let x = features.at(group, batch).autodiff();
            component_logits(config, &backbone_ad, Component { groups: &groups, head: &p.head }, x)
        },
        select.as_ref().map(|f| f as &dyn Fn(&NodeParams) -> f64),
    );
    trained.valid()
}

/// One SISA checkpoint: every adapter group and the head trainable, on `samples` (slices 1..k), continuing from
/// the previous checkpoint (`previous`), or from fresh adapters seeded by `seed` and the pretrained head.
#[allow(clippy::too_many_arguments)]
pub fn train_sisa(
    config: &ModelConfig,
    train: &TrainConfig,
    backbone: &Backbone,
    previous: Option<&SisaParams>,
    pretrained_head: &Head,
    data: &Dataset,
    samples: &[usize],
    seed: u64,
    validation: Option<&Dataset>,
    device: &Device,
    progress: Progress<'_>,
) -> SisaParams {
    let ad = device.clone().autodiff();
    let backbone_ad = backbone.clone().no_grad().train();
    let params = match previous {
        Some(p) => p.clone().train(),
        None => SisaParams {
            adapters: (1..=config.groups)
                .map(|g| GroupAdapter::init(config, g, seed.wrapping_add(g as u64), &ad))
                .collect(),
            head: pretrained_head.clone().train(),
        },
    };
    let select = validation.map(|val| {
        move |p: &SisaParams| {
            let p = p.valid();
            let groups: Vec<&GroupAdapter> = p.adapters.iter().collect();
            let all: Vec<usize> = (0..val.len()).collect();
            let mut correct = 0.0;
            for chunk in all.chunks(super::features::EVAL_BATCH) {
                let logits = super::vit::forward(
                    config,
                    backbone,
                    Component { groups: &groups, head: &p.head },
                    input::images(val, chunk, device),
                );
                correct += logits_accuracy(logits, &val.select(chunk).labels, config.vit.classes) * chunk.len() as f64;
            }
            correct / val.len().max(1) as f64
        }
    });
    let trained = fit(
        params,
        samples,
        data,
        train,
        seed,
        &ad,
        progress,
        |p, batch| {
            let groups: Vec<&GroupAdapter> = p.adapters.iter().collect();
            let adapters = block_adapters(config, &groups);
            let x = backbone_ad.embed(input::images(data, batch, &ad));
            let x = backbone_ad.blocks_forward(x, 0, backbone_ad.depth(), &adapters);
            p.head.forward(backbone_ad.pool(x))
        },
        select.as_ref().map(|f| f as &dyn Fn(&SisaParams) -> f64),
    );
    trained.valid()
}

/// Accuracy of the backbone-only model on a data set.
pub fn backbone_accuracy(pretrained: &Pretrained, data: &Dataset, device: &Device) -> f64 {
    let all: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0usize;
    for chunk in all.chunks(super::features::EVAL_BATCH) {
        let logits = forward_backbone(&pretrained.backbone, &pretrained.head, input::images(data, chunk, device));
        let probs = to_host(logits);
        let preds = super::ensemble::predictions(&probs, data.classes as usize);
        correct += preds.iter().zip(chunk).filter(|(p, i)| **p == usize::from(data.labels[**i])).count();
    }
    correct as f64 / data.len().max(1) as f64
}
