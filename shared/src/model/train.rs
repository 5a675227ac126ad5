//! Training (feature `train`): backbone pretraining on the public split, S3T node steps, SISA checkpoints.
//!
//! Exactness by construction:
//! - E1: [`pretrain`] takes the public and validation splits only; it has no access to deletable data.
//! - E2: a node step hands the optimiser a module holding only group k's adapters and the head; the backbone
//!   and groups 1..k−1 are constants of the computation (no gradient, no update, no weight decay).
//! - E3: the head trained in step k is returned with the node and saved as its snapshot.
//! - E6: all randomness of a node (adapter init, batch order) comes from its seed, derived from (shard, prefix).

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::adapter::GroupAdapter;
use super::config::{ModelConfig, TrainConfig};
use super::features::{Features, component_logits, logits_all_tensor, to_host};
use super::input;
use super::level::{Level, Member, Pending, Select, Trained, train_level};
use super::parallel::{self, Batching};
use super::parts::{NodeParams, Pretrained, SisaParams};
use super::vit::{Backbone, Component, Head, forward_backbone, unpaced};
use crate::dataset::Dataset;

/// Called after every optimiser step with the number of samples in the batch.
pub type Progress<'a> = &'a mut dyn FnMut(usize);

/// How pretraining computes a batch: in `parts` consecutive pieces (the first ones one sample longer when the batch
/// does not divide evenly) whose gradients are summed in order, up to `threads` pieces at a time. Each piece is one
/// computation of its own, so the weights depend on `parts` and never on `threads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pieces {
    pub parts: usize,
    pub threads: usize,
}

impl Pieces {
    /// The CPU's split: two halves, so a 2-core machine trains both at once (one run of this model keeps one core
    /// busy). Fixed rather than the core count, so that the backbone is the same on every CPU.
    pub fn cpu(threads: usize) -> Self {
        Self { parts: 2, threads: threads.max(1) }
    }

    /// The whole batch as one computation (GPUs, where a batch of 64 already waits on kernel launches).
    pub fn whole() -> Self {
        Self { parts: 1, threads: 1 }
    }
}

/// Trains the backbone and a head on the public split only (rule E1). Parameter initialisation uses burn's
/// generator seeded with `seed`, the batch order a generator of its own seeded with `seed`.
pub fn pretrain(
    config: &ModelConfig,
    train: &TrainConfig,
    public: &Dataset,
    seed: u64,
    device: &Device,
    pieces: Pieces,
    progress: Progress<'_>,
) -> Pretrained {
    let ad = device.clone().autodiff();
    ad.seed(seed);
    let mut model = Pretrained { backbone: Backbone::new(&config.vit, &ad), head: Head::new(&config.vit, &ad) };
    // burn draws a parameter's initial values when it is first read. One forward pass on the calling thread draws
    // them all, in the order the forward pass reads them (before the pieces, which read copies, run anywhere).
    let first: Vec<usize> = (0..public.len().min(1)).collect();
    let _ =
        forward_backbone(&model.backbone, &model.head, model.backbone.embed(input::images(public, &first, &ad)), None);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut optimizer = AdamConfig::new().init();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5348_5546_464c_4500);
    let mut order: Vec<usize> = (0..public.len()).collect();
    for _ in 0..train.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(train.batch_size.max(1)) {
            let parts: Vec<&[usize]> = batch.chunks(batch.len().div_ceil(pieces.parts.max(1))).collect();
            let piece = |part: &&[usize], _: &dyn Fn(usize)| {
                // A copy of the parameters per piece (the same parameter ids, an autodiff graph of its own), so
                // that pieces on different threads share no graph.
                let copy = model.clone().valid().train();
                let x = copy.backbone.embed(input::images(public, part, &ad));
                let logits = forward_backbone(&copy.backbone, &copy.head, x, None);
                // The batch's mean loss is the sum of the pieces' means, each weighted by its share of the batch.
                let share = part.len() as f64 / batch.len() as f64;
                let loss = loss_fn.forward(logits, input::labels(public, part, &ad)).mul_scalar(share);
                GradientsParams::from_grads(loss.backward(), &copy)
            };
            let grads = sum(&model, parallel::map(&parts, pieces.threads, piece, &mut |_| {}));
            model = optimizer.step(train.learning_rate, model, grads);
            progress(batch.len());
        }
    }
    model.valid()
}

/// The pieces' gradients of every parameter of `module`, added in the pieces' order.
fn sum<M: Module>(module: &M, pieces: Vec<GradientsParams>) -> GradientsParams {
    struct Sum {
        pieces: Vec<GradientsParams>,
        total: GradientsParams,
    }
    impl ModuleVisitor for Sum {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let mut total: Option<Tensor<D>> = None;
            for piece in &mut self.pieces {
                if let Some(g) = piece.remove::<D>(param.id) {
                    total = Some(match total.take() {
                        Some(t) => t + g,
                        None => g,
                    });
                }
            }
            if let Some(t) = total {
                self.total.register(param.id, t);
            }
        }
    }
    let mut visitor = Sum { pieces, total: GradientsParams::new() };
    module.visit(&mut visitor);
    visitor.total
}

/// One S3T node run of a level batch: the groups above it, the head it starts from, its samples and seed.
pub struct NodeRun<'a> {
    /// Groups 1..k−1 (frozen, top group first).
    pub frozen: Vec<&'a GroupAdapter>,
    pub parent_head: &'a Head,
    /// The union of the prefix's slices, without deleted samples.
    pub samples: Vec<usize>,
    pub seed: u64,
    /// Its run settings ([`TrainConfig::for_slices`]); batch size and learning rate are the level's.
    pub run: TrainConfig,
}

/// What the runs of one training call share: the model, the cached activations they train from, the labels, model
/// selection's split and the device.
#[derive(Clone, Copy)]
pub struct TrainInputs<'a> {
    pub config: &'a ModelConfig,
    pub backbone: &'a Backbone,
    /// The activations the runs start from: entering group k for a node of depth k, entering group L for SISA.
    pub features: &'a Features,
    /// The samples (`NodeRun::samples` and `SisaRun::samples` index it) and their labels.
    pub data: &'a Dataset,
    /// Model selection: the validation split's cached activations and its labels. `None` keeps the last epoch.
    pub validation: Option<(&'a Features, &'a [u8])>,
    pub device: &'a Device,
}

/// S3T node steps of one level, grouped by `batching` (see [`super::level`] and [`super::parallel`]): each trains
/// group k (its `frozen.len() + 1`) and the head on its samples, starting from its parent's head. Each run's model
/// selection is left to be read back ([`Unread::select`], or [`Unread::read`] with blocking reads).
pub fn train_nodes<'r, 'a>(
    inputs: &TrainInputs<'a>,
    runs: &'r [NodeRun<'_>],
    batching: Batching,
    progress: Progress<'_>,
) -> Vec<Unread<'a, NodeParams>> {
    let TrainInputs { config, backbone, features: _, data: _, validation, device } = *inputs;
    // The node's component (its frozen groups, its own group, its head) on the activations entering group k.
    let score = validation.map(|(features, labels)| {
        let logits = move |r: &NodeRun<'_>, t: &Trained| {
            let mut groups: Vec<&GroupAdapter> = r.frozen.clone();
            groups.push(&t.groups[0]);
            let k = groups.len();
            let component = Component { groups: &groups, head: &t.head };
            component_logits(config, backbone, component, features.all(k), features.mask_all())
        };
        (logits, labels)
    });
    let score = score.as_ref().map(|(f, labels)| (f as Score<'_, NodeRun<'_>>, *labels));
    let member = |r: &'r NodeRun<'_>| Member {
        trainable: vec![GroupAdapter::init(config, r.frozen.len() + 1, r.seed, device)],
        frozen: r.frozen.clone(),
        head: r.parent_head.clone(),
        samples: r.samples.clone(),
        seed: r.seed,
        epochs: r.run.epochs,
    };
    let node = |mut t: Trained| NodeParams { adapter: t.groups.remove(0), head: t.head };
    train_batches(inputs, batching, runs, |r| &r.run, member, score, progress)
        .into_iter()
        .map(|pending| Unread { pending, params: node })
        .collect()
}

/// Model selection of a run: its validation logits after an epoch.
type Score<'a, R> = &'a (dyn Fn(&R, &Trained) -> Tensor<2> + Sync);

/// A trained run: its parameters and, with model selection, the selected epoch's validation accuracy.
pub struct Fitted<P> {
    pub params: P,
    pub validation_accuracy: Option<f64>,
}

/// A trained run whose model selection is still to be read back (see [`super::level::Select`]).
pub struct Unread<'v, P> {
    pending: Pending<'v>,
    params: fn(Trained) -> P,
}

impl<P> Unread<'_, P> {
    /// The selected epoch, its logits read back with `read`.
    pub async fn select(self, read: &impl AsyncFn(Tensor<2>) -> crate::Result<Vec<f32>>) -> crate::Result<Fitted<P>> {
        let trained = self.pending.select(read).await?;
        let validation_accuracy = trained.score;
        Ok(Fitted { params: (self.params)(trained), validation_accuracy })
    }

    /// [`Unread::select`] with blocking reads (every backend natively, the CPU backend anywhere).
    pub fn read(self) -> Fitted<P> {
        unpaced(self.select(&async |t| Ok(to_host(t)))).expect("a blocking read-back of logits of a scored epoch")
    }
}

/// Trains `runs` in level batches of `batching.nodes` (with the batch size and learning rate of a batch's first
/// run), `batching.threads` batches at a time, with model selection by `score` (against its labels) when given.
fn train_batches<'r, 'v, R: Sync>(
    inputs: &TrainInputs<'_>,
    batching: Batching,
    runs: &'r [R],
    settings: impl Fn(&R) -> &TrainConfig + Sync,
    member: impl Fn(&'r R) -> Member<'r> + Sync,
    score: Option<(Score<'_, R>, &'v [u8])>,
    progress: Progress<'_>,
) -> Vec<Pending<'v>> {
    let chunks: Vec<&'r [R]> = runs.chunks(batching.nodes.max(1)).collect();
    let train_chunk = |chunk: &&'r [R], report: &dyn Fn(usize)| {
        let chunk: &'r [R] = chunk;
        let members: Vec<Member<'_>> = chunk.iter().map(&member).collect();
        let logits = score.map(|(f, _)| move |i: usize, t: &Trained| f(&chunk[i], t));
        let select = match (&logits, score) {
            (Some(logits), Some((_, labels))) => Some(Select { logits, labels }),
            _ => None,
        };
        let run = settings(&chunk[0]);
        let level = Level {
            config: inputs.config,
            backbone: inputs.backbone,
            features: inputs.features,
            labels: inputs.data,
            batch_size: run.batch_size,
            learning_rate: run.learning_rate,
            device: inputs.device,
        };
        train_level(&level, &members, select.as_ref(), &mut |n| report(n))
    };
    parallel::map(&chunks, batching.threads, train_chunk, progress).into_iter().flatten().collect()
}

/// One S3T node step alone: a level batch of one ([`train_nodes`] gives every node the same weights).
pub fn train_node(inputs: &TrainInputs<'_>, run: NodeRun<'_>, progress: Progress<'_>) -> NodeParams {
    let mut out = train_nodes(inputs, &[run], Batching::stacked(1), progress);
    out.remove(0).read().params
}

/// One SISA checkpoint run: every adapter group and the head trainable, continuing from the previous checkpoint,
/// or from fresh adapters seeded by `seed` and the pretrained head.
pub struct SisaRun<'a> {
    pub previous: Option<&'a SisaParams>,
    pub samples: Vec<usize>,
    pub seed: u64,
    pub run: TrainConfig,
}

/// SISA checkpoints (of different shards) grouped by `batching`, from the cached embedded patches
/// (`inputs.features` at group L); a first checkpoint starts from `pretrained_head`. Each run's model selection is
/// left to be read back ([`Unread::select`], or [`Unread::read`] with blocking reads).
pub fn train_sisas<'r, 'a>(
    inputs: &TrainInputs<'a>,
    pretrained_head: &Head,
    runs: &'r [SisaRun<'_>],
    batching: Batching,
    progress: Progress<'_>,
) -> Vec<Unread<'a, SisaParams>> {
    let TrainInputs { config, backbone, features: _, data: _, validation, device } = *inputs;
    let member = |r: &'r SisaRun<'_>| {
        let (trainable, head) = match r.previous {
            Some(p) => (p.adapters.clone(), p.head.clone()),
            None => (
                (1..=config.groups)
                    .map(|g| GroupAdapter::init(config, g, r.seed.wrapping_add(g as u64), device))
                    .collect(),
                pretrained_head.clone(),
            ),
        };
        Member { trainable, frozen: Vec::new(), head, samples: r.samples.clone(), seed: r.seed, epochs: r.run.epochs }
    };
    let score = validation.map(|(features, labels)| {
        let logits = move |_: &SisaRun<'_>, t: &Trained| {
            let groups: Vec<&GroupAdapter> = t.groups.iter().collect();
            logits_all_tensor(config, backbone, Component { groups: &groups, head: &t.head }, features)
        };
        (logits, labels)
    });
    let score = score.as_ref().map(|(f, labels)| (f as Score<'_, SisaRun<'_>>, *labels));
    let sisa = |t: Trained| SisaParams { adapters: t.groups, head: t.head };
    train_batches(inputs, batching, runs, |r| &r.run, member, score, progress)
        .into_iter()
        .map(|pending| Unread { pending, params: sisa })
        .collect()
}

/// One SISA checkpoint alone (a level batch of one).
pub fn train_sisa(
    inputs: &TrainInputs<'_>,
    pretrained_head: &Head,
    run: SisaRun<'_>,
    progress: Progress<'_>,
) -> SisaParams {
    let mut out = train_sisas(inputs, pretrained_head, &[run], Batching::stacked(1), progress);
    out.remove(0).read().params
}

/// Accuracy of the backbone-only model on a data set.
pub fn backbone_accuracy(pretrained: &Pretrained, data: &Dataset, device: &Device) -> f64 {
    let all: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0usize;
    for chunk in all.chunks(super::features::EVAL_BATCH) {
        let (x, mask) = input::embed(&pretrained.backbone, data, chunk, device);
        let logits = forward_backbone(&pretrained.backbone, &pretrained.head, x, mask.as_ref());
        let probs = to_host(logits);
        let preds = super::ensemble::predictions(&probs, data.classes as usize);
        correct += preds.iter().zip(chunk).filter(|(p, i)| **p == usize::from(data.labels[**i])).count();
    }
    correct as f64 / data.len().max(1) as f64
}

/// The pooled outputs of a frozen backbone (no adapters) over every sample of `data`, [n, d_model].
pub fn pooled(backbone: &Backbone, data: &Dataset, device: &Device) -> Tensor<2> {
    let all: Vec<usize> = (0..data.len()).collect();
    let parts = all
        .chunks(super::features::EVAL_BATCH)
        .map(|chunk| {
            let (x, mask) = input::embed(backbone, data, chunk, device);
            let x = backbone.blocks_forward(x, mask.as_ref(), 0, backbone.depth(), &[]);
            backbone.pool(x, mask.as_ref())
        })
        .collect();
    Tensor::cat(parts, 0)
}

/// Trains a classifier head alone on a frozen pretrained encoder's pooled outputs of the public split (text
/// bundles: the encoder was pretrained elsewhere and is never trained here, rule E1). The head's initial values come
/// from burn's generator seeded with `seed`, the batch order from a generator of its own seeded with `seed`. It is
/// the backbone-only baseline and the head every first node and SISA checkpoint starts from.
pub fn train_head(
    config: &ModelConfig,
    train: &TrainConfig,
    backbone: &Backbone,
    public: &Dataset,
    seed: u64,
    device: &Device,
    progress: Progress<'_>,
) -> Head {
    let features = pooled(backbone, public, device);
    let ad = device.clone().autodiff();
    ad.seed(seed);
    let mut head = Head::new(&config.vit, &ad);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut optimizer = AdamConfig::new().init();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5348_5546_464c_4500);
    let mut order: Vec<usize> = (0..public.len()).collect();
    for _ in 0..train.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(train.batch_size.max(1)) {
            let idx: Vec<i64> = batch.iter().map(|&i| i as i64).collect();
            let idx =
                Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(idx, [batch.len()]), device);
            let x = features.clone().select(0, idx).autodiff();
            let loss = loss_fn.forward(head.forward(x), input::labels(public, batch, &ad));
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optimizer.step(train.learning_rate, head, grads);
            progress(batch.len());
        }
    }
    head.valid()
}
