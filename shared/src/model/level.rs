//! Level-batched training (feature `train`): the independent runs of one plan level, stacked on a leading axis.
//!
//! Every node at the same depth of every shard's prefix trie trains the same layer group from the same cached
//! activations, on its own samples, from its own parents. Trained one at a time they are small computations that
//! leave a CPU's cores or a GPU mostly waiting on per-operation overhead. Here the trainable parameters of `N` such
//! runs (a *member* each) are stacked along a leading axis and trained as one computation: every product is a
//! batched matrix product whose batch entry `i` is member `i`'s product alone, the loss is the sum of the members'
//! mean losses (so each member's gradient is its own loss's gradient), and Adam works element by element (so each
//! member's update is its own). SISA checkpoints batch across shards the same way.
//!
//! Exactness: no operation mixes members. Each member keeps its own samples, batch order (from its seed), step count
//! and model selection; a member whose last step is done is read out and no longer depends on the computation. A
//! batch is always `batch_size` rows: a short one (the end of an epoch, or a member that finished) is padded with
//! rows of weight zero, so a member's arithmetic is the same whatever batch of members it runs in; on the CPU
//! backend its weights are bit-identical trained alone or with any other members (tested).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::adapter::{BlockAdapter, GroupAdapter};
use super::config::ModelConfig;
use super::ensemble::{accuracy, softmax_rows};
use super::features::Features;
use super::kernel::{attention_masked, gelu, layer_norm_eps};
use super::packing::Packing;
use super::train::Progress;
use super::vit::{Backbone, Block, Head, Weights, unpaced};
use crate::dataset::Dataset;

/// One run of a level batch: its starting parameters, the groups above it (frozen), its samples and seed.
pub struct Member<'a> {
    /// The groups this run trains, in group order (one for an S3T node, all L for a SISA checkpoint), as they start.
    pub trainable: Vec<GroupAdapter>,
    /// Frozen groups that the run's forward pass goes through (groups 1..k−1 of a node): constants.
    pub frozen: Vec<&'a GroupAdapter>,
    /// The head it starts from (the parent's snapshot, or the pretrained head).
    pub head: Head,
    /// Indices into the cached activations and the labels.
    pub samples: Vec<usize>,
    /// Seed of the batch order (rule E6).
    pub seed: u64,
    /// Passes over `samples`.
    pub epochs: usize,
}

/// What a run produces: its trained groups (in the order given) and head.
pub struct Trained {
    pub groups: Vec<GroupAdapter>,
    pub head: Head,
    /// The selected epoch's validation score (with model selection).
    pub score: Option<f64>,
}

/// Shared settings of a level batch.
pub struct Level<'a> {
    pub config: &'a ModelConfig,
    pub backbone: &'a Backbone,
    /// Activations at the group boundaries; the level starts at its lowest group's boundary.
    pub features: &'a Features,
    /// Labels of the samples `features` holds.
    pub labels: &'a Dataset,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub device: &'a Device,
}

/// Model selection on non-deletable validation data (rule E5): member `i`'s validation logits `[n, classes]` after
/// each of its scored epochs ([`scored_epochs`]), scored by accuracy against `labels`; the best scored epoch's
/// parameters are kept (the earliest on ties). The logits stay where they were computed until [`Pending::select`]
/// reads them back, after the level: a GPU's queue never waits on a read mid-training, and WebGPU, which reads back
/// only asynchronously, can train.
pub struct Select<'f, 'l> {
    pub logits: &'f dyn Fn(usize, &Trained) -> Tensor<2>,
    pub labels: &'l [u8],
}

/// A member's result before its model selection is read back: each epoch's parameters and validation logits, in
/// epoch order, or (without selection) the last step's parameters alone.
pub struct Pending<'a> {
    epochs: Vec<(Trained, Option<Tensor<2>>)>,
    labels: &'a [u8],
}

impl Pending<'_> {
    /// The selected parameters, reading each epoch's logits back with `read`; their score is the selected epoch's
    /// validation accuracy.
    pub async fn select(self, read: &impl AsyncFn(Tensor<2>) -> crate::Result<Vec<f32>>) -> crate::Result<Trained> {
        let mut best: Option<(f64, Trained)> = None;
        for (params, logits) in self.epochs {
            let Some(logits) = logits else { return Ok(params) };
            let classes = logits.dims()[1];
            let host = read(logits).await?;
            let score = accuracy(&softmax_rows(&host, classes), classes, self.labels);
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, params));
            }
        }
        let (score, params) = best.ok_or_else(|| crate::Error::model("model selection scored no epoch"))?;
        Ok(Trained { score: Some(score), ..params })
    }
}

/// The stacked trainable parameters of one block: `[N, d, r]` and `[N, r, d]`.
#[derive(Module, Debug)]
struct StackedBlock {
    query_a: Param<Tensor<3>>,
    query_b: Param<Tensor<3>>,
    value_a: Param<Tensor<3>>,
    value_b: Param<Tensor<3>>,
}

#[derive(Module, Debug)]
struct StackedGroup {
    group: usize,
    blocks: Vec<StackedBlock>,
}

/// Every member's trainable groups and head, stacked on a leading member axis.
#[derive(Module, Debug)]
struct Stacked {
    groups: Vec<StackedGroup>,
    /// [N, d, classes]
    head_weight: Param<Tensor<3>>,
    /// [N, 1, classes]
    head_bias: Param<Tensor<3>>,
}

fn stack<const D: usize, const D2: usize>(tensors: Vec<Tensor<D>>) -> Param<Tensor<D2>> {
    Param::from_tensor(Tensor::stack(tensors, 0))
}

impl Stacked {
    fn new(members: &[Member<'_>]) -> Self {
        let first = &members[0];
        let groups = first
            .trainable
            .iter()
            .enumerate()
            .map(|(g, group)| StackedGroup {
                group: group.group,
                blocks: (0..group.blocks.len())
                    .map(|b| {
                        let each = |f: &dyn Fn(&BlockAdapter) -> Tensor<2>| {
                            stack(members.iter().map(|m| f(&m.trainable[g].blocks[b])).collect())
                        };
                        StackedBlock {
                            query_a: each(&|a| a.query_a.val()),
                            query_b: each(&|a| a.query_b.val()),
                            value_a: each(&|a| a.value_a.val()),
                            value_b: each(&|a| a.value_b.val()),
                        }
                    })
                    .collect(),
            })
            .collect();
        let head_weight = stack(members.iter().map(|m| m.head.linear.weight.val()).collect());
        let head_bias = stack(members.iter().map(|m| head_bias(&m.head).unsqueeze_dim::<2>(0)).collect());
        Self { groups, head_weight, head_bias }
    }

    /// Member `i`'s parameters, unstacked (on the inner backend).
    fn member(&self, i: usize, scale: f64) -> Trained {
        fn one<const D: usize, const D1: usize>(p: &Param<Tensor<D>>, i: usize) -> Param<Tensor<D1>> {
            Param::from_tensor(p.val().narrow(0, i, 1).squeeze_dim::<D1>(0))
        }
        let groups = self
            .groups
            .iter()
            .map(|g| GroupAdapter {
                group: g.group,
                blocks: g
                    .blocks
                    .iter()
                    .map(|b| BlockAdapter {
                        query_a: one(&b.query_a, i),
                        query_b: one(&b.query_b, i),
                        value_a: one(&b.value_a, i),
                        value_b: one(&b.value_b, i),
                        scale,
                    })
                    .collect(),
            })
            .collect();
        let weight = one(&self.head_weight, i);
        let bias: Param<Tensor<2>> = one(&self.head_bias, i);
        let bias = Param::from_tensor(bias.val().squeeze_dim::<1>(0));
        Trained { groups, head: Head { linear: Linear { weight, bias: Some(bias) } }, score: None }
    }
}

fn head_bias(head: &Head) -> Tensor<1> {
    let classes = head.linear.weight.dims()[1];
    match &head.linear.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([classes], &head.linear.weight.device()),
    }
}

/// Per block: the members' query and value weights where they differ from the backbone's (`[N, d, d]`).
type BlockWeights = Vec<Option<(Tensor<3>, Tensor<3>)>>;

/// The folded weights of the frozen groups, member by member (each the same arithmetic as the serving model's).
fn frozen_weights(config: &ModelConfig, backbone: &Backbone, members: &[Member<'_>]) -> BlockWeights {
    let mut out: BlockWeights = vec![None; config.vit.depth];
    for (g, group) in members[0].frozen.iter().enumerate() {
        for (b, block) in config.blocks_of_group(group.group).into_iter().enumerate() {
            let layer = backbone.block(block);
            let mut q = Vec::with_capacity(members.len());
            let mut v = Vec::with_capacity(members.len());
            for m in members {
                let a = &m.frozen[g].blocks[b];
                q.push(a.query_weight(layer.query.weight.val()));
                v.push(a.value_weight(layer.value.weight.val()));
            }
            out[block] = Some((Tensor::stack(q, 0), Tensor::stack(v, 0)));
        }
    }
    out
}

/// The trainable groups' folded weights: `W + s·A·B` per member, as one batched product.
fn trainable_weights(config: &ModelConfig, backbone: &Backbone, stacked: &Stacked, scale: f64, out: &mut BlockWeights) {
    for group in &stacked.groups {
        for (b, block) in config.blocks_of_group(group.group).into_iter().enumerate() {
            let layer = backbone.block(block);
            let a = &group.blocks[b];
            let fold = |w: Tensor<2>, lo: &Param<Tensor<3>>, hi: &Param<Tensor<3>>| {
                w.unsqueeze_dim::<3>(0) + lo.val().matmul(hi.val()).mul_scalar(scale)
            };
            out[block] = Some((
                fold(layer.query.weight.val(), &a.query_a, &a.query_b),
                fold(layer.value.weight.val(), &a.value_a, &a.value_b),
            ));
        }
    }
}

/// `x · w + bias` for `x` [N, rows, in] and `w` [N or 1, in, out]: one batched product, entry by entry.
fn project(x: Tensor<3>, weight: Tensor<3>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let y = x.matmul(weight);
    match bias {
        Some(b) => y + b.unsqueeze_dims::<3>(&[0, 1]),
        None => y,
    }
}

fn shared(layer: &Linear) -> (Tensor<3>, Option<Tensor<1>>) {
    (layer.weight.val().unsqueeze_dim::<3>(0), layer.bias.as_ref().map(|b| b.val()))
}

/// One block (pre- or post-norm, as the backbone's) over `x` [N, images·tokens, d], with per-member query and value
/// weights where given; `mask` ([N·images, tokens]) marks a text's real tokens.
fn block_forward(
    block: &Block,
    x: Tensor<3>,
    tokens: usize,
    mask: Option<&Tensor<2>>,
    weights: Option<(Tensor<3>, Tensor<3>)>,
) -> Tensor<3> {
    let [n, rows, d] = x.dims();
    let norm = |layer: &burn::nn::LayerNorm, t: Tensor<3>| layer_norm_eps(layer, block.epsilon, t);
    let xn = if block.post_norm { x.clone() } else { norm(&block.norm1, x.clone()) };
    let (wq, wv) = weights.unwrap_or_else(|| (shared(&block.query).0, shared(&block.value).0));
    let bias = |l: &Linear| l.bias.as_ref().map(|b| b.val());
    let q = project(xn.clone(), wq, bias(&block.query));
    let (wk, bk) = shared(&block.key);
    let k = project(xn.clone(), wk, bk);
    let v = project(xn, wv, bias(&block.value));
    let flat = |t: Tensor<3>| t.reshape([n * rows, d]);
    let context = attention_masked(flat(q), flat(k), flat(v), tokens, block.heads, mask).reshape([n, rows, d]);
    let (wo, bo) = shared(&block.output);
    let x = x + project(context, wo, bo);
    let x = if block.post_norm { norm(&block.norm1, x) } else { x };
    let xn = if block.post_norm { x.clone() } else { norm(&block.norm2, x.clone()) };
    let (w1, b1) = shared(&block.fc1);
    let (w2, b2) = shared(&block.fc2);
    let x = x + project(gelu(project(xn, w1, b1)), w2, b2);
    if block.post_norm { norm(&block.norm2, x) } else { x }
}

/// The pooled outputs ([N, batch, d]) of the blocks from `start` on, each member's batch on its own packed real
/// tokens ([`Packing`]) with its own query and value weights (`weights[block]`, [N, d, d]). A member's arithmetic
/// depends only on its own rows, so it is the same trained alone or next to any other members.
fn packed_pooled(
    backbone: &Backbone,
    x: Tensor<3>,
    mask: &Tensor<2>,
    n: usize,
    start: usize,
    weights: &BlockWeights,
) -> Tensor<3> {
    let [rows, tokens, d] = x.dims();
    let batch = rows / n.max(1);
    let pooled = (0..n)
        .map(|i| {
            let x = x.clone().narrow(0, i * batch, batch).reshape([batch * tokens, d]);
            let mask = mask.clone().narrow(0, i * batch, batch);
            let packing = Packing::of_mask(&mask);
            let rows = match &packing {
                Some(p) => p.pack(x),
                None => x,
            };
            let member = |t: &Tensor<3>| t.clone().narrow(0, i, 1).reshape([d, d]);
            let weights = |b: usize| match &weights[b] {
                Some((q, v)) => Weights::Folded(Box::new((member(q), member(v)))),
                None => Weights::Adapter(None),
            };
            let blocks = start..backbone.depth();
            let rows =
                unpaced(backbone.packed_blocks_paced(rows, packing.as_ref(), &mask, blocks, weights, &async || {}));
            let x = match &packing {
                Some(p) => p.unpack(rows),
                None => rows,
            };
            backbone.pool(x.reshape([batch, tokens, d]), Some(&mask))
        })
        .collect();
    Tensor::stack(pooled, 0)
}

/// Model selection scores a run after at most this many of its epochs, evenly spaced and always the last
/// ([`scored_epochs`]). A run on k of a shard's L slices makes ⌈E·L/k⌉ passes over its smaller data
/// ([`super::config::TrainConfig::for_slices`]) while every score is a pass over the whole validation split, so
/// scoring each pass cost the default image build more validation than training at its one-slice nodes (12 scores of
/// 1,000 validation images against 12 passes over 375 training images). At the image defaults (E = 3) every run is
/// now scored once per shard's worth of data; no run of the text defaults makes more than three passes.
pub const SCORED_EPOCHS: usize = 3;

/// The epochs (numbered from 1) after which a run of `epochs` passes is scored: `min(epochs, SCORED_EPOCHS)` of
/// them, evenly spaced, the last among them.
pub fn scored_epochs(epochs: usize) -> Vec<usize> {
    let scores = epochs.min(SCORED_EPOCHS);
    (1..=epochs).filter(|&e| e * scores / epochs > (e - 1) * scores / epochs).collect()
}

/// A member's batches over all its epochs (its own shuffles, as [`super::train`]'s loop draws them), and the index
/// of the last step of each scored epoch ([`scored_epochs`]).
fn schedule(member: &Member<'_>, batch: usize) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(member.seed ^ 0x5348_5546_464c_4500);
    let mut order = member.samples.clone();
    let mut steps = Vec::new();
    let mut epoch_ends = Vec::new();
    for _ in 0..member.epochs {
        order.shuffle(&mut rng);
        steps.extend(order.chunks(batch).map(<[usize]>::to_vec));
        epoch_ends.push(steps.len());
    }
    let scored = scored_epochs(member.epochs).into_iter().map(|e| epoch_ends[e - 1]).collect();
    (steps, scored)
}

/// Trains every member (all at the same level: the same trainable and frozen groups) as one stacked computation,
/// and returns each member's parameters, pending model selection ([`Pending::select`]): every scored epoch's under
/// `select`, else the last step's.
pub fn train_level<'l>(
    level: &Level<'_>,
    members: &[Member<'_>],
    select: Option<&Select<'_, 'l>>,
    progress: Progress<'_>,
) -> Vec<Pending<'l>> {
    let Some(first) = members.first() else { return Vec::new() };
    let config = level.config;
    let trainable: Vec<usize> = first.trainable.iter().map(|g| g.group).collect();
    let frozen: Vec<usize> = first.frozen.iter().map(|g| g.group).collect();
    for m in members {
        assert!(
            m.trainable.iter().map(|g| g.group).eq(trainable.iter().copied())
                && m.frozen.iter().map(|g| g.group).eq(frozen.iter().copied()),
            "the members of a level batch train the same groups below the same frozen groups"
        );
    }
    // The lowest group the forward pass goes through; its boundary's cached activations are the input.
    let low = trainable.iter().chain(&frozen).copied().max().unwrap_or(1);
    let start_block = config.first_block_of_group(low);
    let scale = config.lora.alpha / config.lora.rank as f64;
    let batch = level.batch_size.max(1);
    let (n, tokens) = (members.len(), config.tokens());
    let ad = level.device.clone().autodiff();
    // Packed tokens (`TextConfig::packed`) on the CPU backend: each member's real tokens alone, member by member.
    let packs = config.text.as_ref().is_some_and(|t| t.packs()) && *level.device == Device::flex();
    let backbone = level.backbone.clone().no_grad().train();
    let frozen_w = frozen_weights(config, level.backbone, members);
    let frozen_w: BlockWeights = frozen_w.into_iter().map(|w| w.map(|(q, v)| (q.autodiff(), v.autodiff()))).collect();

    let schedules: Vec<(Vec<Vec<usize>>, Vec<usize>)> = members.iter().map(|m| schedule(m, batch)).collect();
    let total = schedules.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let mut stacked = Stacked::new(members).train();
    let mut optimizer = AdamConfig::new().init();

    let mut out = Readout {
        select,
        scale,
        epochs: (0..n).map(|_| Vec::new()).collect(),
        results: (0..n).map(|_| None).collect(),
    };
    // Members without a step: their parameters as they start (each epoch would score the same).
    for (i, (steps, _)) in schedules.iter().enumerate() {
        if steps.is_empty() {
            out.epoch_end(i, &stacked, true);
        }
    }

    for t in 0..total {
        let mut indices = Vec::with_capacity(n * batch);
        let mut labels = Vec::with_capacity(n * batch);
        let mut mask = Vec::with_capacity(n * batch);
        let mut counts = Vec::with_capacity(n);
        let mut trained = 0;
        for (steps, _) in &schedules {
            let rows: &[usize] = steps.get(t).map_or(&[], Vec::as_slice);
            // Padding rows repeat a real sample (or sample 0 for a member that is done) and weigh nothing.
            let pad = rows.first().copied().unwrap_or(0);
            for r in 0..batch {
                let i = rows.get(r).copied().unwrap_or(pad);
                indices.push(i);
                labels.push(i64::from(level.labels.labels[i]));
                mask.push(if r < rows.len() { 1.0f32 } else { 0.0 });
            }
            counts.push(rows.len().max(1) as f32);
            trained += rows.len();
        }
        let x = level.features.at(low, &indices).autodiff();
        let tokens_real = level.features.mask_at(&indices).map(Tensor::autodiff);
        let d = x.dims()[2];
        let mut weights = frozen_w.clone();
        trainable_weights(config, &backbone, &stacked, scale, &mut weights);
        let pooled = match tokens_real.as_ref().filter(|_| packs) {
            Some(mask) => packed_pooled(&backbone, x, mask, n, start_block, &weights),
            None => {
                let mut x = x.reshape([n, batch * tokens, d]);
                for (b, block) in backbone.layers(start_block..backbone.depth()) {
                    x = block_forward(block, x, tokens, tokens_real.as_ref(), weights[b].take());
                }
                backbone.pool(x.reshape([n * batch, tokens, d]), tokens_real.as_ref()).reshape([n, batch, d])
            }
        };
        let logits = project(pooled, stacked.head_weight.val(), None) + stacked.head_bias.val();
        let labels = Tensor::<3, Int>::from_data(TensorData::new(labels, [n, batch, 1]), &ad);
        let mask = Tensor::<3>::from_data(TensorData::new(mask, [n, batch, 1]), &ad);
        let counts = Tensor::<3>::from_data(TensorData::new(counts, [n, 1, 1]), &ad);
        let picked = log_softmax(logits, 2).gather(2, labels);
        // Each member's mean loss over its real rows; their sum keeps every member's gradient its own.
        let loss = (picked * mask).sum_dim(1).div(counts).sum().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &stacked);
        stacked = optimizer.step(level.learning_rate, stacked, grads);
        progress(trained);
        for (i, (steps, ends)) in schedules.iter().enumerate() {
            if out.results[i].is_none() && ends.contains(&(t + 1)) {
                out.epoch_end(i, &stacked, t + 1 == steps.len());
            }
        }
    }
    out.results.into_iter().map(|r| r.expect("every member is read out at its last step")).collect()
}

/// Model selection and read-out of the members as their epochs end.
struct Readout<'a, 'f, 'l> {
    select: Option<&'a Select<'f, 'l>>,
    scale: f64,
    epochs: Vec<Vec<(Trained, Option<Tensor<2>>)>>,
    results: Vec<Option<Pending<'l>>>,
}

impl<'l> Readout<'_, '_, 'l> {
    fn epoch_end(&mut self, i: usize, stacked: &Stacked, last: bool) {
        let valid = stacked.valid();
        if let Some(select) = self.select {
            let current = valid.member(i, self.scale);
            let logits = (select.logits)(i, &current);
            self.epochs[i].push((current, Some(logits)));
        }
        if last {
            let mut epochs = std::mem::take(&mut self.epochs[i]);
            if epochs.is_empty() {
                epochs.push((valid.member(i, self.scale), None));
            }
            let labels = self.select.map_or(&[][..], |s| s.labels);
            self.results[i] = Some(Pending { epochs, labels });
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::model::features::to_host;

    /// Logits of three samples whose predicted classes are `classes` (two classes).
    fn logits(classes: [usize; 3]) -> Tensor<2> {
        let rows: Vec<f32> = classes.iter().flat_map(|&c| if c == 0 { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
        Tensor::from_data(TensorData::new(rows, [3, 2]), &Device::flex())
    }

    /// Parameters told apart by their head bias.
    fn params(tag: f32) -> Trained {
        let device = Device::flex();
        let weight = Param::from_data(TensorData::new(vec![0.0f32; 2], [1, 2]), &device);
        let bias = Param::from_data(TensorData::new(vec![tag; 2], [2]), &device);
        Trained { groups: Vec::new(), head: Head { linear: Linear { weight, bias: Some(bias) } }, score: None }
    }

    fn tag(t: &Trained) -> f32 {
        let bias = t.head.linear.bias.as_ref().expect("a bias");
        to_host(bias.val())[0]
    }

    fn select(pending: Pending<'_>) -> Trained {
        let read = async |t: Tensor<2>| Ok(to_host(t));
        crate::model::vit::unpaced(pending.select(&read)).expect("select")
    }

    /// At most three scored epochs, evenly spaced, the last always; runs of up to three passes score every one.
    #[test]
    fn model_selection_scores_at_most_three_evenly_spaced_epochs_ending_with_the_last() {
        assert_eq!(scored_epochs(0), Vec::<usize>::new());
        assert_eq!(scored_epochs(1), vec![1]);
        assert_eq!(scored_epochs(2), vec![1, 2]);
        assert_eq!(scored_epochs(3), vec![1, 2, 3]);
        assert_eq!(scored_epochs(4), vec![2, 3, 4]);
        assert_eq!(scored_epochs(6), vec![2, 4, 6]);
        assert_eq!(scored_epochs(12), vec![4, 8, 12]);
        for epochs in 1..50 {
            let scored = scored_epochs(epochs);
            assert_eq!(scored.len(), epochs.min(SCORED_EPOCHS));
            assert_eq!(scored.last(), Some(&epochs));
            assert!(scored.windows(2).all(|w| w[0] < w[1]));
        }
    }

    /// Model selection read back after the level keeps the best epoch, the earliest on ties, with its accuracy.
    #[test]
    fn deferred_selection_keeps_the_earliest_best_epoch() {
        let labels = [0u8, 1, 1];
        let epochs = vec![
            (params(1.0), Some(logits([1, 1, 0]))),
            (params(2.0), Some(logits([0, 1, 0]))),
            (params(3.0), Some(logits([0, 0, 1]))),
            (params(4.0), Some(logits([1, 1, 1]))),
        ];
        let chosen = select(Pending { epochs, labels: &labels });
        assert_eq!(tag(&chosen), 2.0, "epochs 2, 3 and 4 score 2/3; the earliest is kept");
        assert_eq!(chosen.score, Some(2.0 / 3.0));
        // Without selection: the last step's parameters, unscored.
        let last = select(Pending { epochs: vec![(params(5.0), None)], labels: &[] });
        assert_eq!((tag(&last), last.score), (5.0, None));
    }
}
