//! The frozen backbone: the tiny vision transformer this project pretrains (patch embedding, pre-norm blocks, final
//! norm), or a pretrained BERT-family text encoder ([`super::hf`]: word, position and token-type embeddings,
//! post-norm blocks); mean pooling over the real tokens and a linear classifier head on both.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

use super::adapter::{BlockAdapter, GroupAdapter};
use super::config::{ModelConfig, VitConfig};
use super::kernel::{attention_masked, gelu, layer_norm_eps, linear, token_linear};
use super::packing::Packing;

/// One transformer block: pre-norm (the ViT: `x + f(norm(x))`) or post-norm (BERT: `norm(x + f(x))`). The query
/// and value projections take an optional LoRA update.
#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub heads: usize,
    /// Post-norm (BERT) rather than pre-norm.
    pub post_norm: bool,
    /// Epsilon of both layer norms.
    pub epsilon: f64,
}

impl Block {
    fn new(config: &VitConfig, device: &Device) -> Self {
        let d = config.d_model;
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        Self {
            norm1: LayerNormConfig::new(d).init(device),
            query: linear(d, d),
            key: linear(d, d),
            value: linear(d, d),
            output: linear(d, d),
            norm2: LayerNormConfig::new(d).init(device),
            fc1: linear(d, d * config.mlp_ratio),
            fc2: linear(d * config.mlp_ratio, d),
            heads: config.heads,
            post_norm: false,
            epsilon: f64::from(super::kernel::LAYER_NORM_EPSILON),
        }
    }

    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<2>>, adapter: Option<&BlockAdapter>) -> Tensor<3> {
        unpaced(self.forward_paced(x, mask, adapter, &async || {}))
    }

    /// [`Block::forward`], awaiting `pause` after each operation. A GPU compiles each kernel at its first launch,
    /// on the calling thread: in a browser that is the page's main thread, and a block's first pass compiles about
    /// 0.3 s of kernels. Pausing between operations lets the page yield there (see the web app's pacer). `mask`
    /// ([b, n] of 1 and 0) marks a text's real tokens; images have none.
    pub async fn forward_paced(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<2>>,
        adapter: Option<&BlockAdapter>,
        pause: &impl AsyncFn(),
    ) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.heads;
        // Token-wise layers run on [b·n, d]: one plain matmul per projection instead of a batched one, which the
        // WebGPU kernels (a software adapter most of all) run several times faster; the arithmetic is the same.
        let attend = |q, k, v| attention_masked(q, k, v, n, h, mask);
        let weights = Weights::Adapter(adapter);
        self.rows_forward_paced(x.reshape([b * n, d]), n, &attend, weights, pause).await.reshape([b, n, d])
    }

    /// The block on token rows ([rows, d]): every position of a batch (`tokens` per sample), or a text batch's
    /// real tokens packed together ([`Packing`], `tokens` 1). `attend` computes attention from the rows' query, key
    /// and value projections, in whatever layout the rows need for it.
    pub(crate) async fn rows_forward_paced(
        &self,
        x: Tensor<2>,
        tokens: usize,
        attend: &impl Fn(Tensor<2>, Tensor<2>, Tensor<2>) -> Tensor<2>,
        weights: Weights<'_>,
        pause: &impl AsyncFn(),
    ) -> Tensor<2> {
        let n = tokens;
        let norm = |layer: &LayerNorm, t: Tensor<2>| layer_norm_eps(layer, self.epsilon, t);
        // The order of the operations is the training graph's: autodiff sums gradients in that order, so a reordering
        // would change every trained weight in its last bits (bundles are reproducible bit for bit).
        let xn = if self.post_norm { x.clone() } else { norm(&self.norm1, x.clone()) };
        pause().await;
        let (wq, wv) = match weights {
            Weights::Adapter(Some(a)) => {
                let wq = a.query_weight(self.query.weight.val());
                pause().await;
                (wq, a.value_weight(self.value.weight.val()))
            }
            Weights::Adapter(None) => (self.query.weight.val(), self.value.weight.val()),
            Weights::Folded(w) => *w,
        };
        pause().await;
        let q = token_linear(xn.clone(), n, wq, bias(&self.query));
        pause().await;
        let k = per_token(&self.key, xn.clone(), n);
        pause().await;
        let v = token_linear(xn, n, wv, bias(&self.value));
        pause().await;
        let context = attend(q, k, v);
        pause().await;
        let x = x + per_token(&self.output, context, n);
        let x = if self.post_norm { norm(&self.norm1, x) } else { x };
        pause().await;
        let xn = if self.post_norm { x.clone() } else { norm(&self.norm2, x.clone()) };
        let hidden = gelu(per_token(&self.fc1, xn, n));
        pause().await;
        let x = x + per_token(&self.fc2, hidden, n);
        let x = if self.post_norm { norm(&self.norm2, x) } else { x };
        pause().await;
        x
    }
}

/// The query and value weights a block runs with: the backbone's with an adapter's update folded in (or none), or
/// weights folded by the caller (a level batch folds every member's at once).
pub(crate) enum Weights<'a> {
    Adapter(Option<&'a BlockAdapter>),
    // Only training (`learn`) folds; a build that only serves, such as the page's, never makes one.
    #[cfg_attr(not(feature = "learn"), allow(dead_code))]
    Folded(Box<(Tensor<2>, Tensor<2>)>),
}

/// Runs a paced computation whose pause never waits (`&async || {}`): the plain, synchronous form that training
/// and the trainer use. Such a future completes in its first poll.
pub(crate) fn unpaced<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("a paced computation whose pause never waits completes in its first poll"),
    }
}

fn bias(layer: &Linear) -> Option<Tensor<1>> {
    layer.bias.as_ref().map(|b| b.val())
}

/// A linear layer's forward pass through [`kernel::linear`]: `Linear::forward` itself on the CPU.
fn project<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    linear(x, layer.weight.val(), bias(layer))
}

/// A token-wise layer on [images·tokens, d] through [`kernel::token_linear`]: `Linear::forward` on the CPU.
fn per_token(layer: &Linear, x: Tensor<2>, tokens: usize) -> Tensor<2> {
    token_linear(x, tokens, layer.weight.val(), bias(layer))
}

/// The frozen backbone: trained once on the public split (rule E1), or a pretrained encoder trained elsewhere on
/// public data; never on deletable data. An image backbone has `patch`, `position` and `norm`; a text encoder has
/// `text` (`Option` fields keep the image backbone's weight names those of the module it was before text).
#[derive(Module, Debug)]
pub struct Backbone {
    pub patch: Option<Linear>,
    /// [1, tokens, d_model]
    pub position: Option<Param<Tensor<3>>>,
    pub text: Option<TextEmbedding>,
    /// Blocks `first_block..depth()`: all of them, or (a text encoder loaded for serving from cached activations,
    /// [`super::hf::load_encoder_layers`]) only those from a group boundary up.
    pub blocks: Vec<Block>,
    /// The index of `blocks[0]`: 0, or the boundary a partial encoder starts at (it has no embedding either).
    pub first_block: usize,
    /// The pre-norm ViT's final norm (a post-norm encoder ends normalised).
    pub norm: Option<LayerNorm>,
    pub patch_size: usize,
    /// Texts: the token-wise layers run on the real tokens only ([`Packing`]; `TextConfig::packed`).
    pub packed: bool,
}

/// BERT's input: word, absolute position and token-type embeddings, summed, then a layer norm.
#[derive(Module, Debug)]
pub struct TextEmbedding {
    /// [vocab, d_model]
    pub word: Param<Tensor<2>>,
    /// [max_positions, d_model]
    pub position: Param<Tensor<2>>,
    /// [token types, d_model]; single sentences are all type 0.
    pub token_type: Param<Tensor<2>>,
    pub norm: LayerNorm,
    pub epsilon: f64,
}

impl TextEmbedding {
    /// [batch, tokens] ids → [batch, tokens, d_model], in Hugging Face's order: (word + type) + position.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, n] = ids.dims();
        let d = self.word.dims()[1];
        let words = self.word.val().select(0, ids.reshape([b * n])).reshape([b, n, d]);
        let types = self.token_type.val().narrow(0, 0, 1).unsqueeze_dim::<3>(0);
        let positions = self.position.val().narrow(0, 0, n).unsqueeze_dim::<3>(0);
        layer_norm_eps(&self.norm, self.epsilon, words + types + positions)
    }
}

/// The classifier head on mean-pooled tokens. Each training step saves a snapshot (rule E3).
#[derive(Module, Debug)]
pub struct Head {
    pub linear: Linear,
}

impl Head {
    pub fn new(config: &VitConfig, device: &Device) -> Self {
        Self { linear: LinearConfig::new(config.d_model, config.classes).init(device) }
    }

    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        project(&self.linear, pooled)
    }
}

impl Backbone {
    pub fn new(config: &VitConfig, device: &Device) -> Self {
        Self {
            patch: Some(LinearConfig::new(config.patch_dim(), config.d_model).init(device)),
            position: Some(
                Initializer::Normal { mean: 0.0, std: 0.02 }.init([1, config.tokens(), config.d_model], device),
            ),
            text: None,
            blocks: (0..config.depth).map(|_| Block::new(config, device)).collect(),
            norm: Some(LayerNormConfig::new(config.d_model).init(device)),
            first_block: 0,
            patch_size: config.patch_size,
            packed: false,
        }
    }

    /// [batch, rows, cols] images → [batch, tokens, d_model] embedded patches (an image backbone).
    pub fn embed(&self, images: Tensor<3>) -> Tensor<3> {
        let (Some(patch), Some(position)) = (&self.patch, &self.position) else {
            panic!("a text encoder embeds token ids (Backbone::embed_text), not images")
        };
        let [b, rows, cols] = images.dims();
        let p = self.patch_size;
        let patches =
            images.reshape([b, rows / p, p, cols / p, p]).swap_dims(2, 3).reshape([b, (rows / p) * (cols / p), p * p]);
        project(patch, patches) + position.val()
    }

    /// [batch, tokens] ids → [batch, tokens, d_model] (a text encoder).
    pub fn embed_text(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.text.as_ref().expect("an image backbone embeds images (Backbone::embed), not token ids").forward(ids)
    }

    /// Runs blocks `from..to` with the given per-block adapters (`adapters[block]`); `mask` marks a text's real
    /// tokens.
    pub fn blocks_forward(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<2>>,
        from: usize,
        to: usize,
        adapters: &[Option<&BlockAdapter>],
    ) -> Tensor<3> {
        unpaced(self.blocks_forward_paced(x, mask, from, to, adapters, &async || {}))
    }

    /// [`Backbone::blocks_forward`], awaiting `pause` between operations (see [`Block::forward_paced`]).
    pub async fn blocks_forward_paced(
        &self,
        mut x: Tensor<3>,
        mask: Option<&Tensor<2>>,
        from: usize,
        to: usize,
        adapters: &[Option<&BlockAdapter>],
        pause: &impl AsyncFn(),
    ) -> Tensor<3> {
        let packing = if self.packed && from < to { mask.and_then(Packing::of_mask) } else { None };
        if let (Some(packing), Some(mask)) = (packing, mask) {
            let [b, n, d] = x.dims();
            let adapter = |i: usize| Weights::Adapter(adapters.get(i).copied().flatten());
            let rows = packing.pack(x.reshape([b * n, d]));
            let rows = self.packed_blocks_paced(rows, Some(&packing), mask, from..to, adapter, pause).await;
            return packing.unpack(rows).reshape([b, n, d]);
        }
        for (i, block) in self.layers(from..to) {
            x = block.forward_paced(x, mask, adapters.get(i).copied().flatten(), pause).await;
        }
        x
    }

    /// Blocks `blocks` on the packed real tokens of a text batch ([real, d]; `mask` is the batch's, [texts,
    /// tokens]), block `i` with `weights(i)`; without a packing (a batch without padding) on all its [texts ·
    /// tokens, d] rows. Attention alone needs each text's tokens in place: it unpacks the projections and packs its
    /// output.
    pub(crate) async fn packed_blocks_paced<'w>(
        &self,
        mut rows: Tensor<2>,
        packing: Option<&Packing>,
        mask: &Tensor<2>,
        blocks: std::ops::Range<usize>,
        weights: impl Fn(usize) -> Weights<'w>,
        pause: &impl AsyncFn(),
    ) -> Tensor<2> {
        let tokens = mask.dims()[1];
        for (i, block) in self.layers(blocks) {
            let h = block.heads;
            let attend = |q, k, v| match packing {
                Some(p) => p.pack(attention_masked(p.unpack(q), p.unpack(k), p.unpack(v), tokens, h, Some(mask))),
                None => attention_masked(q, k, v, tokens, h, Some(mask)),
            };
            let per = if packing.is_some() { 1 } else { tokens };
            rows = block.rows_forward_paced(rows, per, &attend, weights(i), pause).await;
        }
        rows
    }

    /// The final norm (image backbones) and mean pooling over the tokens, or over a text's real tokens only
    /// (`mask`, [b, n] of 1 and 0: sentence-transformers' mean pooling).
    pub fn pool(&self, x: Tensor<3>, mask: Option<&Tensor<2>>) -> Tensor<2> {
        let x = match &self.norm {
            Some(norm) => layer_norm_eps(norm, f64::from(super::kernel::LAYER_NORM_EPSILON), x),
            None => x,
        };
        match mask {
            None => x.mean_dim(1).squeeze_dim(1),
            Some(mask) => {
                let weights = mask.clone().unsqueeze_dim::<3>(2);
                let count = mask.clone().sum_dim(1).clamp_min(1e-9);
                (x * weights).sum_dim(1).squeeze_dim::<2>(1).div(count)
            }
        }
    }

    /// Blocks in the encoder, the absent ones below `first_block` included.
    pub fn depth(&self) -> usize {
        self.first_block + self.blocks.len()
    }

    /// Block `i` of the encoder. Panics below `first_block`: a partial encoder serves only from its boundary up,
    /// and its loaders check that the bundle's frozen base is that boundary.
    pub fn block(&self, i: usize) -> &Block {
        i.checked_sub(self.first_block).and_then(|j| self.blocks.get(j)).unwrap_or_else(|| {
            panic!("block {i} is not loaded (this encoder holds {}..{})", self.first_block, self.depth())
        })
    }

    /// Blocks `range` with their indices in the encoder (see [`Backbone::block`]).
    pub fn layers(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = (usize, &Block)> {
        range.filter(|&i| i < self.depth()).map(|i| (i, self.block(i)))
    }
}

/// A servable component: adapter groups 1..k (in order) and the head snapshot of step k.
#[derive(Debug, Clone, Copy)]
pub struct Component<'a> {
    pub groups: &'a [&'a GroupAdapter],
    pub head: &'a Head,
}

/// Per-block adapter references for groups 1..k of a component (`None` where a block has no active adapter).
pub fn block_adapters<'a>(config: &ModelConfig, groups: &[&'a GroupAdapter]) -> Vec<Option<&'a BlockAdapter>> {
    let mut out = vec![None; config.vit.depth];
    for group in groups {
        for (adapter, block) in group.blocks.iter().zip(config.blocks_of_group(group.group)) {
            out[block] = Some(adapter);
        }
    }
    out
}

/// Logits of a component on a batch of images.
pub fn forward(config: &ModelConfig, backbone: &Backbone, component: Component<'_>, images: Tensor<3>) -> Tensor<2> {
    forward_embedded(config, backbone, component, backbone.embed(images), None)
}

/// Logits of a component on embedded samples (images' patches, or a text's tokens with their `mask`), through every
/// block from the bottom.
pub fn forward_embedded(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    x: Tensor<3>,
    mask: Option<&Tensor<2>>,
) -> Tensor<2> {
    let adapters = block_adapters(config, component.groups);
    let x = backbone.blocks_forward(x, mask, 0, backbone.depth(), &adapters);
    component.head.forward(backbone.pool(x, mask))
}

/// Logits of the backbone alone with a head (no adapters) on embedded samples: the backbone-only baseline.
pub fn forward_backbone(backbone: &Backbone, head: &Head, x: Tensor<3>, mask: Option<&Tensor<2>>) -> Tensor<2> {
    let x = backbone.blocks_forward(x, mask, 0, backbone.depth(), &[]);
    head.forward(backbone.pool(x, mask))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    /// On the CPU the model's projections are burn's `Linear::forward`, bit for bit: the GPU kernel choice
    /// (`kernel`) leaves the trainer's arithmetic, and so every bundle's weights, unchanged.
    #[test]
    fn projections_are_linear_forward_on_the_cpu() {
        let device = Device::flex();
        let layer = LinearConfig::new(16, 12).init(&device);
        let x3 = Tensor::<3>::random([5, 7, 16], Distribution::Normal(0.0, 1.0), &device);
        let x2 = x3.clone().reshape([35, 16]);
        use crate::model::features::to_host;
        assert_eq!(to_host(project(&layer, x3.clone())), to_host(layer.forward(x3)));
        assert_eq!(to_host(project(&layer, x2.clone())), to_host(layer.forward(x2.clone())));
        assert_eq!(to_host(per_token(&layer, x2.clone(), 7)), to_host(layer.forward(x2)));
    }
}
