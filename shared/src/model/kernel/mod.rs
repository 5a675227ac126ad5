//! The GPU kernels behind the model's forward pass, written for small widths on any WebGPU adapter.
//!
//! Without autotuning (which compiles and times a dozen candidates per shape, seconds in a browser), burn's GPU
//! matmul stages tiles through workgroup memory with barriers. A software WebGPU adapter (SwiftShader: the browser
//! tests, and visitors without a usable GPU) emulates barriers, and there a token-wise layer ([8000, 32] by
//! [32, 32]) takes about 50 ms. burn also composes attention, layer norm and GELU from five to nine kernels each, a
//! pass over memory apiece. On GPU devices this module runs:
//! - linear layers through a register-tiled kernel (an 8×8 output tile per invocation, loaded and stored as vectors
//!   of four), or, where the shape does not fit it (the classifier head), as 1-wide convolutions (cubecl's direct
//!   kernel);
//! - attention as one kernel per (image, head, four queries), reading vectors of four: scores, softmax and weighted
//!   sum in registers, over the projections' own layout, so no head is split or merged by a copy;
//! - layer norm as one kernel per row and GELU as one kernel per vector of four elements;
//! - other products (the LoRA fold) through cubecl's naive matmul kernel.
//!
//! A software adapter's cost is mostly per load and per invocation, not per multiply-add, so the kernels load each
//! value once into registers and use it for as many outputs as they can. On SwiftShader a node of the default demo
//! bundle (width 64, 500 test images) takes about 0.55 s, against 3 s with burn's kernels. Each kernel loops over
//! the inner dimension per output element, which also suits hardware GPUs at this model's widths.
//!
//! Tensors that are not plain GPU tensors (the CPU, or autodiff while training) take burn's own operations, in the
//! training graph's order, so the CPU path, and with it every trained bundle, is unchanged bit for bit (a test
//! bundle built before and after this module has the same manifest, every weight file's sha256 included).
//! `trainer/tests/gpu_kernels.rs` compares every kernel and whole components with the CPU on a software Vulkan
//! adapter, and the browser tests check that the page's accuracy on WebGPU equals `trainer eval`'s on the CPU.

use burn::nn::LayerNorm;
use burn::tensor::Tensor;
#[cfg(feature = "gpu")]
use burn::tensor::ops::ConvOptions;

/// `lhs · rhs`, batched over leading dimensions of equal size.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "gpu")]
    if let Some(out) = cube::matmul(&lhs, &rhs) {
        return out;
    }
    lhs.matmul(rhs)
}

/// `x · weight + bias` over the last dimension: burn's `linear` (what `Linear::forward` calls) off the GPU.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<D> {
    #[cfg(feature = "gpu")]
    if cube::is_plain(&x) {
        let dims = x.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        if let Some(y) = cube::linear(&x.clone().reshape([rows, dims[D - 1]]), &weight, bias.as_ref()) {
            let mut out = dims;
            out[D - 1] = weight.dims()[1];
            return y.reshape(out);
        }
        // Leading dimensions as the convolution's batch, the one before the features as its length.
        let (batch, length) = match D {
            1 => (1, 1),
            _ => (dims[..D - 2].iter().product::<usize>(), dims[D - 2]),
        };
        let y = convolve(x.reshape([batch, length, dims[D - 1]]), weight, bias);
        let mut out = dims;
        out[D - 1] = y.dims()[2];
        return y.reshape(out);
    }
    burn::tensor::module::linear(x, weight, bias)
}

/// [`linear`] for the token-wise layers of a block: `x` is [images·tokens, d_in]. On the GPU the images are the
/// convolution's batch (about 15 % faster than one long row of all tokens); off it, burn's `linear` on `x` as is.
pub fn token_linear(x: Tensor<2>, tokens: usize, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    #[cfg(feature = "gpu")]
    if cube::is_plain(&x) {
        let [rows, d_in] = x.dims();
        let y = linear(x.reshape([rows / tokens, tokens, d_in]), weight, bias);
        let d_out = y.dims()[2];
        return y.reshape([rows, d_out]);
    }
    let _ = tokens;
    burn::tensor::module::linear(x, weight, bias)
}

/// GELU, burn's (`x · (erf(x / √2) + 1) / 2`): on GPU devices one pass of one kernel instead of five; on the
/// native CPU backend eight lanes at a time with burn's own bits ([`lanes`]).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "gpu")]
    if let Some(y) = cube::gelu(&x) {
        return y;
    }
    #[cfg(not(target_family = "wasm"))]
    if let Some(y) = lanes::gelu(&x) {
        return y;
    }
    burn::tensor::activation::gelu(x)
}

#[cfg(not(target_family = "wasm"))]
mod lanes;

/// A linear layer as a 1-wide convolution over [batch, length, d_in]: the kernel reads the channels-last layout,
/// which is `x`'s own, so the transposes are views.
#[cfg(feature = "gpu")]
fn convolve(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let kernel = weight.transpose().unsqueeze_dim::<3>(2);
    burn::tensor::module::conv1d(x.swap_dims(1, 2), kernel, bias, ConvOptions::new([1], [0], [1], 1)).swap_dims(1, 2)
}

/// The epsilon of every layer norm of the model: burn's `LayerNormConfig` default, which the GPU kernel repeats.
pub const LAYER_NORM_EPSILON: f32 = 1e-5;

/// A layer norm over the last dimension. On GPU devices one kernel per row (mean, variance, scale and shift),
/// instead of nine kernels; elsewhere `LayerNorm::forward` itself.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    layer_norm_eps(norm, f64::from(LAYER_NORM_EPSILON), x)
}

/// [`layer_norm`] of a norm whose epsilon is `epsilon` (BERT's is 1e-12): the GPU kernel repeats only the
/// default epsilon, so other norms take `LayerNorm::forward` everywhere.
pub fn layer_norm_eps<const D: usize>(norm: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "gpu")]
    if epsilon == f64::from(LAYER_NORM_EPSILON) && cube::is_plain(&x) {
        let dims = x.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        if let Some(y) = cube::layer_norm(&x.clone().reshape([rows, dims[D - 1]]), norm) {
            return y.reshape(dims);
        }
    }
    let _ = epsilon;
    norm.forward(x)
}

/// The additive attention bias of a padding mask ([images, tokens] of 1 for a real token, 0 for padding): 0 for a
/// real key, a large negative number for padding, so that `exp` of a padded key's score is exactly 0 and a real
/// token's output does not depend on how much padding follows it.
pub const MASKED_SCORE: f32 = -1.0e30;

/// [`attention`] over samples whose keys may be padding (`mask`, [images, tokens] of 1 and 0). Without a mask it
/// is [`attention`]; with one, burn's operations with the mask's bias added to the scores before the softmax (as
/// Hugging Face's BERT does).
pub fn attention_masked(
    q: Tensor<2>,
    k: Tensor<2>,
    v: Tensor<2>,
    tokens: usize,
    heads: usize,
    mask: Option<&Tensor<2>>,
) -> Tensor<2> {
    let Some(mask) = mask else { return attention(q, k, v, tokens, heads) };
    let [rows, d] = q.dims();
    let (images, head_dim) = (rows / tokens, d / heads);
    let split = |t: Tensor<2>| t.reshape([images, tokens, heads, head_dim]).swap_dims(1, 2);
    let (q, k, v) = (split(q), split(k), split(v));
    let root = (head_dim as f64).sqrt();
    let bias = mask.clone().sub_scalar(1.0).mul_scalar(-MASKED_SCORE).reshape([images, 1, 1, tokens]);
    let scores = matmul(q, k.transpose()).div_scalar(root) + bias;
    let p = burn::tensor::activation::softmax(scores, 3);
    matmul(p, v).swap_dims(1, 2).reshape([rows, d])
}

/// Scaled dot-product attention over token-major projections: `q`, `k`, `v` are [images·tokens, heads·head_dim]
/// (the linear layers' own output) and so is the result, so no head is split or merged by a copy. On GPU devices one
/// kernel computes each (image, head, query)'s scores, softmax and weighted sum in registers, which replaces eight
/// kernels and four copies; elsewhere burn's operations on the split heads.
pub fn attention(q: Tensor<2>, k: Tensor<2>, v: Tensor<2>, tokens: usize, heads: usize) -> Tensor<2> {
    #[cfg(feature = "gpu")]
    if let Some(out) = cube::attention(&q, &k, &v, tokens, heads) {
        return out;
    }
    let [rows, d] = q.dims();
    let (images, head_dim) = (rows / tokens, d / heads);
    // The operations in the training graph's order (autodiff sums gradients in that order).
    let split = |t: Tensor<2>| t.reshape([images, tokens, heads, head_dim]).swap_dims(1, 2);
    let (q, k, v) = (split(q), split(k), split(v));
    let root = (head_dim as f64).sqrt();
    let scores = matmul(q, k.transpose()).div_scalar(root);
    let p = burn::tensor::activation::softmax(scores, 3);
    matmul(p, v).swap_dims(1, 2).reshape([rows, d])
}

#[cfg(feature = "gpu")]
mod cube;

#[cfg(feature = "gpu")]
mod fused;
