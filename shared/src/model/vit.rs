//! The tiny vision transformer: patch embedding, pre-norm blocks, mean pooling, linear classifier head.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::adapter::{BlockAdapter, GroupAdapter};
use super::config::{ModelConfig, VitConfig};
use super::kernel::{attention, gelu, layer_norm, linear, token_linear};

/// One pre-norm transformer block. The query and value projections take an optional LoRA update.
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
        }
    }

    pub fn forward(&self, x: Tensor<3>, adapter: Option<&BlockAdapter>) -> Tensor<3> {
        unpaced(self.forward_paced(x, adapter, &async || {}))
    }

    /// [`Block::forward`], awaiting `pause` after each operation. A GPU compiles each kernel at its first launch,
    /// on the calling thread: in a browser that is the page's main thread, and a block's first pass compiles about
    /// 0.3 s of kernels. Pausing between operations lets the page yield there (see the web app's pacer).
    pub async fn forward_paced(
        &self,
        x: Tensor<3>,
        adapter: Option<&BlockAdapter>,
        pause: &impl AsyncFn(),
    ) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.heads;
        // Token-wise layers run on [b·n, d]: one plain matmul per projection instead of a batched one, which the
        // WebGPU kernels (a software adapter most of all) run several times faster; the arithmetic is the same.
        let x = x.reshape([b * n, d]);
        // The order of the operations is the training graph's: autodiff sums gradients in that order, so a reordering
        // would change every trained weight in its last bits (bundles are reproducible bit for bit).
        let xn = layer_norm(&self.norm1, x.clone());
        pause().await;
        let (wq, wv) = match adapter {
            Some(a) => {
                let wq = a.query_weight(self.query.weight.val());
                pause().await;
                (wq, a.value_weight(self.value.weight.val()))
            }
            None => (self.query.weight.val(), self.value.weight.val()),
        };
        pause().await;
        let q = token_linear(xn.clone(), n, wq, bias(&self.query));
        pause().await;
        let k = per_token(&self.key, xn.clone(), n);
        pause().await;
        let v = token_linear(xn, n, wv, bias(&self.value));
        pause().await;
        let context = attention(q, k, v, n, h);
        pause().await;
        let x = x + per_token(&self.output, context, n);
        pause().await;
        let xn = layer_norm(&self.norm2, x.clone());
        let hidden = gelu(per_token(&self.fc1, xn, n));
        pause().await;
        let y = (x + per_token(&self.fc2, hidden, n)).reshape([b, n, d]);
        pause().await;
        y
    }
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

/// The frozen backbone: trained once on the public split (rule E1), never on deletable data.
#[derive(Module, Debug)]
pub struct Backbone {
    pub patch: Linear,
    /// [1, tokens, d_model]
    pub position: Param<Tensor<3>>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    pub patch_size: usize,
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
            patch: LinearConfig::new(config.patch_dim(), config.d_model).init(device),
            position: Initializer::Normal { mean: 0.0, std: 0.02 }.init([1, config.tokens(), config.d_model], device),
            blocks: (0..config.depth).map(|_| Block::new(config, device)).collect(),
            norm: LayerNormConfig::new(config.d_model).init(device),
            patch_size: config.patch_size,
        }
    }

    /// [batch, rows, cols] images → [batch, tokens, d_model] embedded patches.
    pub fn embed(&self, images: Tensor<3>) -> Tensor<3> {
        let [b, rows, cols] = images.dims();
        let p = self.patch_size;
        let patches =
            images.reshape([b, rows / p, p, cols / p, p]).swap_dims(2, 3).reshape([b, (rows / p) * (cols / p), p * p]);
        project(&self.patch, patches) + self.position.val()
    }

    /// Runs blocks `from..to` with the given per-block adapters (`adapters[block]`).
    pub fn blocks_forward(
        &self,
        x: Tensor<3>,
        from: usize,
        to: usize,
        adapters: &[Option<&BlockAdapter>],
    ) -> Tensor<3> {
        unpaced(self.blocks_forward_paced(x, from, to, adapters, &async || {}))
    }

    /// [`Backbone::blocks_forward`], awaiting `pause` between operations (see [`Block::forward_paced`]).
    pub async fn blocks_forward_paced(
        &self,
        mut x: Tensor<3>,
        from: usize,
        to: usize,
        adapters: &[Option<&BlockAdapter>],
        pause: &impl AsyncFn(),
    ) -> Tensor<3> {
        for (i, block) in self.blocks.iter().enumerate().take(to).skip(from) {
            x = block.forward_paced(x, adapters.get(i).copied().flatten(), pause).await;
        }
        x
    }

    /// Final norm and mean pooling over tokens.
    pub fn pool(&self, x: Tensor<3>) -> Tensor<2> {
        layer_norm(&self.norm, x).mean_dim(1).squeeze_dim(1)
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
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
    let adapters = block_adapters(config, component.groups);
    let x = backbone.embed(images);
    let x = backbone.blocks_forward(x, 0, backbone.depth(), &adapters);
    component.head.forward(backbone.pool(x))
}

/// Logits of the backbone alone with a head (no adapters): the backbone-only baseline.
pub fn forward_backbone(backbone: &Backbone, head: &Head, images: Tensor<3>) -> Tensor<2> {
    let x = backbone.embed(images);
    let x = backbone.blocks_forward(x, 0, backbone.depth(), &[]);
    head.forward(backbone.pool(x))
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
