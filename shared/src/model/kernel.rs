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

/// GELU on the CPU backend through [`s3t_gelu`], which computes burn-flex's scalar GELU and its backward factor
/// eight floats at a time with the same bits (checked on all 2³² inputs): burn-flex calls libm's scalar `erff` per
/// element, forward and backward, about a quarter of a transformer's training step.
#[cfg(not(target_family = "wasm"))]
mod lanes {
    use burn::tensor::{DType, Device, Tensor, TensorData};

    pub fn gelu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
        if x.dtype() != DType::F32 || x.device() != Device::flex() {
            return None;
        }
        #[cfg(feature = "learn")]
        if x.is_tracked() {
            return tracked(x);
        }
        let y = with_values(x, |v| {
            let mut y = v.to_vec();
            s3t_gelu::gelu(&mut y);
            y
        })?;
        let y = Tensor::from_data(TensorData::new(y, x.shape()), &Device::flex());
        #[cfg(feature = "learn")]
        let y = if x.is_autodiff() { y.autodiff() } else { y };
        Some(y)
    }

    /// `f` of `x`'s values, read in place: a cast of the bytes, not a per-element conversion (which this crate's
    /// unoptimised dev build would run slowly).
    fn with_values<const D: usize, T>(x: &Tensor<D>, f: impl FnOnce(&[f32]) -> T) -> Option<T> {
        #[cfg(feature = "learn")]
        let x = x.clone().inner();
        #[cfg(not(feature = "learn"))]
        let x = x.clone();
        let data = x.into_data();
        Some(f(bytemuck::try_cast_slice(data.as_bytes()).ok()?))
    }

    /// In a training graph: `y + (x − x̄)·y′`, where `y` and `y′` are GELU and its derivative at `x` (constants) and
    /// `x̄` is `x` detached. Forward, `(x − x̄)·y′` is a zero and the sum is `y`; backward, `x` receives `grad · y′`,
    /// the very product burn's GELU backward forms. The one difference is the sign of a zero: where `y` is −0 and
    /// `y′` is +0 (x = −0, or x below about −14.2, where exp underflows) the sum is +0. A GELU output only enters
    /// the next linear layer's products, where a zero's sign cannot change a sum that has any other term.
    #[cfg(feature = "learn")]
    fn tracked<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
        let (y, dy) = with_values(x, |v| {
            let (mut y, mut dy) = (vec![0.0; v.len()], vec![0.0; v.len()]);
            s3t_gelu::gelu_with_derivative(v, &mut y, &mut dy);
            (y, dy)
        })?;
        let constant = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, x.shape()), &Device::flex()).autodiff();
        let (y, dy) = (constant(y), constant(dy));
        Some(y + (x.clone() - x.clone().detach()) * dy)
    }
}

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
mod cube {
    use burn::tensor::Tensor;
    use burn_backend::Shape;
    use burn_backend::cubecl::dtype_to_storage_type;
    use burn_cubecl::kernel::into_contiguous;
    use burn_cubecl::kernel::matmul::init_matmul_output;
    use burn_cubecl::ops::numeric::empty_device_dtype;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::calculate_cube_count_elemwise;
    use cubecl::prelude::{CubeCount, CubeDim, ElemType};

    use super::fused::{
        COLUMNS, LANES, QUERIES, ROWS, attention_kernel, gelu_kernel, layer_norm_kernel, linear_kernel,
    };
    use burn::nn::LayerNorm;
    use burn_dispatch::backends::Cube;
    use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
    use cubek::matmul::multi_level;
    use cubek::matmul::strategy::Strategy;
    use cubek::std::InputBinding;

    /// The cubecl tensor behind a plain (not autodiff, not quantized) GPU float tensor.
    fn cube<const D: usize>(t: &Tensor<D>) -> Option<CubeTensor> {
        t.clone().try_into_primitive::<Cube>().ok().filter(|c| c.qparams.is_none())
    }

    pub fn is_plain<const D: usize>(t: &Tensor<D>) -> bool {
        cube(t).is_some()
    }

    /// A kernel's output buffer (shaped `shape`, on `like`'s device and dtype) and its launch grid for
    /// `invocations` independent invocations.
    fn launch_setup(like: &CubeTensor, shape: Shape, invocations: usize) -> (CubeTensor, CubeCount, CubeDim, ElemType) {
        let out = empty_device_dtype(like.client.clone(), like.device.clone(), shape, like.dtype);
        let cube_dim = CubeDim::new(&like.client, invocations);
        let cube_count = calculate_cube_count_elemwise(&like.client, invocations, cube_dim);
        (out, cube_count, cube_dim, dtype_to_storage_type(like.dtype))
    }

    /// `x · weight + bias` for [rows, d_in] by [d_in, d_out], an 8×8 output tile per invocation; `None` where rows
    /// or d_out is not a multiple of 8, d_in not one of 4, or there is no bias (the caller convolves instead: the
    /// classifier head).
    pub fn linear(x: &Tensor<2>, weight: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<2>> {
        let (x, w, b) = (into_contiguous(cube(x)?), into_contiguous(cube(weight)?), into_contiguous(cube(bias?)?));
        let (rows, d_in) = (x.meta.shape()[0], x.meta.shape()[1]);
        let d_out = w.meta.shape()[1];
        if rows % ROWS != 0 || d_out % COLUMNS != 0 || d_in % LANES != 0 || w.meta.shape()[0] != d_in {
            return None;
        }
        let (out, cube_count, cube_dim, dtype) =
            launch_setup(&x, vec![rows, d_out].into(), (rows / ROWS) * (d_out / COLUMNS));
        // SAFETY: every index the kernel reads or writes is in bounds for invocations below the guard.
        unsafe {
            linear_kernel::launch_unchecked(
                &out.client,
                cube_count,
                cube_dim,
                LANES,
                x.into_tensor_arg(),
                w.into_tensor_arg(),
                b.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                dtype,
            )
        };
        Some(Tensor::from_primitive::<Cube>(out))
    }

    pub fn gelu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
        let x = into_contiguous(cube(x)?);
        let shape = x.meta.shape().clone();
        let count = shape.num_elements();
        // Four elements per invocation where the length allows: a software adapter's cost is per invocation.
        let vector_size = if count.is_multiple_of(4) { 4 } else { 1 };
        let (out, cube_count, cube_dim, dtype) = launch_setup(&x, shape, count / vector_size);
        gelu_kernel::launch(
            &out.client,
            cube_count,
            cube_dim,
            vector_size,
            x.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            dtype,
        );
        Some(Tensor::from_primitive::<Cube>(out))
    }

    pub fn layer_norm(x: &Tensor<2>, norm: &LayerNorm) -> Option<Tensor<2>> {
        let beta = norm.beta.as_ref()?.val();
        let (x, gamma, beta) =
            (into_contiguous(cube(x)?), into_contiguous(cube(&norm.gamma.val())?), into_contiguous(cube(&beta)?));
        let shape = x.meta.shape().clone();
        let (rows, width) = (shape[0], shape[1]);
        let (out, cube_count, cube_dim, dtype) = launch_setup(&x, shape, rows);
        layer_norm_kernel::launch(
            &out.client,
            cube_count,
            cube_dim,
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            width,
            dtype,
        );
        Some(Tensor::from_primitive::<Cube>(out))
    }

    pub fn attention(q: &Tensor<2>, k: &Tensor<2>, v: &Tensor<2>, tokens: usize, heads: usize) -> Option<Tensor<2>> {
        let (q, k, v) = (into_contiguous(cube(q)?), into_contiguous(cube(k)?), into_contiguous(cube(v)?));
        let shape = q.meta.shape().clone();
        let (rows, width) = (shape[0], shape[1]);
        if tokens == 0
            || !tokens.is_multiple_of(QUERIES)
            || heads == 0
            || rows % tokens != 0
            || width % heads != 0
            || !(width / heads).is_multiple_of(LANES)
        {
            return None;
        }
        let (out, cube_count, cube_dim, dtype) = launch_setup(&q, shape, rows / QUERIES * heads);
        attention_kernel::launch(
            &out.client,
            cube_count,
            cube_dim,
            LANES,
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            tokens,
            heads,
            width / heads,
            dtype,
        );
        Some(Tensor::from_primitive::<Cube>(out))
    }

    /// `None` when an operand is not a plain GPU tensor, the batch dimensions differ (no broadcasting here), or
    /// the kernel refuses the problem; the caller then uses burn's matmul.
    pub fn matmul<const D: usize>(lhs: &Tensor<D>, rhs: &Tensor<D>) -> Option<Tensor<D>> {
        let (l, r) = (cube(lhs)?, cube(rhs)?);
        let (ls, rs) = (lhs.dims(), rhs.dims());
        if ls[..D - 2] != rs[..D - 2] || l.dtype != r.dtype {
            return None;
        }
        // Views (transposes, head splits) are copied to row-major first: a no-op for contiguous tensors.
        let (l, r) = (into_contiguous(l), into_contiguous(r));
        let out = init_matmul_output(&l, &r, l.dtype);
        let storage = dtype_to_storage_type(l.dtype);
        let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems { lhs: storage, rhs: storage, out: storage });
        let client = out.client.clone();
        cubek::matmul::launch::launch_ref(
            &Strategy::MultiLevel(multi_level::Strategy::Naive),
            &client,
            InputBinding::new(l.binding(), storage),
            InputBinding::new(r.binding(), storage),
            out.clone().binding(),
            &mut dtypes,
        )
        .ok()?;
        Some(Tensor::from_primitive::<Cube>(out))
    }
}

#[cfg(feature = "gpu")]
mod fused {
    use cubecl::prelude::*;

    use super::LAYER_NORM_EPSILON;

    /// One invocation per vector of elements, in the order of burn's GELU.
    #[cube(launch)]
    pub(super) fn gelu_kernel<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        out: &mut Tensor<Vector<F, N>>,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= x.len() {
            terminate!();
        }
        let y = x[i];
        let root = Vector::new(F::new(core::f32::consts::SQRT_2));
        out[i] = y * (Vector::erf(y / root) + Vector::new(F::new(1.0))) / Vector::new(F::new(2.0));
    }

    /// One invocation per row: mean, variance, then `(x − mean) / sqrt(variance + ε) · γ + β`, in the order of
    /// burn's layer norm.
    #[cube(launch)]
    pub(super) fn layer_norm_kernel<F: Float>(
        x: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        out: &mut Tensor<F>,
        #[comptime] width: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let row = ABSOLUTE_POS;
        if row >= x.shape(0) {
            terminate!();
        }
        let base = row * width;
        let count = F::cast_from(width as u32);
        let mut sum = F::new(0.0);
        for c in 0..width {
            sum += x[base + c];
        }
        let mean = sum / count;
        let mut squares = F::new(0.0);
        for c in 0..width {
            let centred = x[base + c] - mean;
            squares += centred * centred;
        }
        let denominator = F::sqrt(squares / count + F::new(LAYER_NORM_EPSILON));
        for c in 0..width {
            out[base + c] = (x[base + c] - mean) / denominator * gamma[c] + beta[c];
        }
    }

    /// Rows and columns of the output tile one invocation of [`linear_kernel`] computes.
    pub(super) const ROWS: usize = 8;
    pub(super) const COLUMNS: usize = 8;
    /// Elements per vector [`linear_kernel`] loads and stores.
    pub(super) const LANES: usize = 4;

    /// One invocation per 8×8 tile of the output, read and written as vectors of four: each step of four along the
    /// inner dimension loads eight input vectors and eight weight vectors for 256 multiply-adds into registers. A
    /// software adapter's cost is mostly per load, and a vector load costs far less than four scalar ones: on
    /// SwiftShader this takes three quarters of the time of the same tile loaded element by element. There 8×8
    /// beat 4×4 by a quarter; 16×8 ran a little faster warm but took longer to compile.
    #[cube(launch_unchecked)]
    pub(super) fn linear_kernel<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        w: &Tensor<Vector<F, N>>,
        b: &Tensor<Vector<F, N>>,
        out: &mut Tensor<Vector<F, N>>,
        #[define(F)] _dtype: ElemType,
    ) {
        // The widths are read at run time: one compiled kernel serves every layer (a software adapter spends
        // about a tenth of a second compiling each).
        // N is LANES (the launcher's vector size).
        let per_tile = comptime!(COLUMNS / LANES);
        let in_vectors = x.shape(1) / LANES;
        let out_vectors = w.shape(1) / LANES;
        let tiles = w.shape(1) / COLUMNS;
        let pos = ABSOLUTE_POS;
        if pos >= (x.shape(0) / ROWS) * tiles {
            terminate!();
        }
        let row = (pos / tiles) * ROWS;
        let column = (pos % tiles) * per_tile;
        let mut acc = Array::<Vector<F, N>>::new(ROWS * per_tile);
        #[unroll]
        for i in 0..ROWS * per_tile {
            acc[i] = Vector::new(F::new(0.0));
        }
        for kv in 0..in_vectors {
            let mut inputs = Array::<Vector<F, N>>::new(ROWS);
            #[unroll]
            for i in 0..ROWS {
                inputs[i] = x[(row + i) * in_vectors + kv];
            }
            #[unroll]
            for e in 0..LANES {
                let k = kv * LANES + e;
                let mut weights = Array::<Vector<F, N>>::new(per_tile);
                #[unroll]
                for j in 0..per_tile {
                    weights[j] = w[k * out_vectors + column + j];
                }
                #[unroll]
                for i in 0..ROWS {
                    let input = Vector::new(inputs[i].extract(e));
                    #[unroll]
                    for j in 0..per_tile {
                        acc[i * per_tile + j] += input * weights[j];
                    }
                }
            }
        }
        #[unroll]
        for i in 0..ROWS {
            #[unroll]
            for j in 0..per_tile {
                out[(row + i) * out_vectors + column + j] = acc[i * per_tile + j] + b[column + j];
            }
        }
    }

    /// Query tokens one invocation of [`attention_kernel`] attends for.
    pub(super) const QUERIES: usize = 4;

    /// One invocation per (image, head, four query tokens): scores against the image's `tokens` keys, a softmax, and
    /// the weighted sum of the values, written where the queries' rows and head are. Each key and value is loaded
    /// once for the four queries, as vectors of four, and the queries and sums stay in registers: loads, not
    /// arithmetic, bound a software adapter (this took a quarter of the time of one scalar query per invocation).
    /// Vectors also keep the unrolled body small, and with it the compilation on the page's main thread.
    #[cube(launch)]
    pub(super) fn attention_kernel<F: Float, N: Size>(
        q: &Tensor<Vector<F, N>>,
        k: &Tensor<Vector<F, N>>,
        v: &Tensor<Vector<F, N>>,
        out: &mut Tensor<Vector<F, N>>,
        #[comptime] tokens: usize,
        #[comptime] heads: usize,
        #[comptime] head_dim: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        // N is LANES (the launcher's vector size); widths below count vectors.
        let per_head = comptime!(head_dim / LANES);
        let width = heads * per_head;
        let groups = tokens / QUERIES;
        let pos = ABSOLUTE_POS;
        if pos >= q.shape(0) / QUERIES * heads {
            terminate!();
        }
        let token = (pos % groups) * QUERIES;
        let head = (pos / groups) % heads;
        let first = (pos / (groups * heads)) * tokens;
        let column = head * per_head;
        let root = F::sqrt(F::cast_from(head_dim as u32));
        let mut queries = Array::<Vector<F, N>>::new(QUERIES * per_head);
        #[unroll]
        for i in 0..QUERIES {
            #[unroll]
            for c in 0..per_head {
                queries[i * per_head + c] = q[(first + token + i) * width + column + c];
            }
        }
        // Scores, then the softmax's weights, of query i against key j at [j · QUERIES + i].
        let mut scores = Array::<F>::new(tokens * QUERIES);
        let mut max = Array::<F>::new(QUERIES);
        for j in 0..tokens {
            let key = (first + j) * width + column;
            let mut partial = Array::<Vector<F, N>>::new(QUERIES);
            #[unroll]
            for i in 0..QUERIES {
                partial[i] = Vector::new(F::new(0.0));
            }
            #[unroll]
            for c in 0..per_head {
                let kc = k[key + c];
                #[unroll]
                for i in 0..QUERIES {
                    partial[i] += queries[i * per_head + c] * kc;
                }
            }
            #[unroll]
            for i in 0..QUERIES {
                let mut dot = F::new(0.0);
                #[unroll]
                for l in 0..LANES {
                    dot += partial[i].extract(l);
                }
                let score = dot / root;
                scores[j * QUERIES + i] = score;
                if j == 0 || score > max[i] {
                    max[i] = score;
                }
            }
        }
        let mut sum = Array::<F>::new(QUERIES);
        #[unroll]
        for i in 0..QUERIES {
            sum[i] = F::new(0.0);
        }
        for j in 0..tokens {
            #[unroll]
            for i in 0..QUERIES {
                let e = F::exp(scores[j * QUERIES + i] - max[i]);
                scores[j * QUERIES + i] = e;
                sum[i] += e;
            }
        }
        let mut acc = Array::<Vector<F, N>>::new(QUERIES * per_head);
        #[unroll]
        for i in 0..QUERIES * per_head {
            acc[i] = Vector::new(F::new(0.0));
        }
        for j in 0..tokens {
            let value = (first + j) * width + column;
            let mut weights = Array::<Vector<F, N>>::new(QUERIES);
            #[unroll]
            for i in 0..QUERIES {
                weights[i] = Vector::new(scores[j * QUERIES + i] / sum[i]);
            }
            #[unroll]
            for c in 0..per_head {
                let vc = v[value + c];
                #[unroll]
                for i in 0..QUERIES {
                    acc[i * per_head + c] += weights[i] * vc;
                }
            }
        }
        #[unroll]
        for i in 0..QUERIES {
            #[unroll]
            for c in 0..per_head {
                out[(first + token + i) * width + column + c] = acc[i * per_head + c];
            }
        }
    }
}

#[cfg(all(test, feature = "learn", not(target_family = "wasm")))]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    /// Inputs over GELU's whole useful range, the branch points of `erff` and special values.
    fn inputs() -> Vec<f32> {
        let mut x: Vec<f32> = (-3000..3000).map(|i| i as f32 * 0.0047).collect();
        x.extend([0.0, 1e-30, -1e-30, 0.84375, -0.84375, 1.25, -1.25, 2.857_143, 6.0, -6.0, 9.0, -9.0, -13.0]);
        x.extend([f32::MIN_POSITIVE, 3.0e38, 88.0]);
        x
    }

    fn tensor(values: &[f32], device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
    }

    fn bits(t: Tensor<1>) -> Vec<u32> {
        t.into_data().try_into_vec::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect()
    }

    /// Output and input gradient of `f` at `x`, under autodiff, for a loss with uneven weights.
    fn forward_backward(f: fn(Tensor<1>) -> Tensor<1>, x: &[f32]) -> (Vec<u32>, Vec<u32>) {
        let device = Device::flex().autodiff();
        let input = tensor(x, &device).require_grad();
        let weights: Vec<f32> = (0..x.len()).map(|i| 0.25 + (i % 7) as f32 * 0.375).collect();
        let y = f(input.clone());
        let grads = (y.clone() * tensor(&weights, &device)).sum().backward();
        let gradient = input.grad(&grads).expect("the input's gradient");
        (bits(y.inner()), bits(gradient))
    }

    #[test]
    fn gelu_on_the_cpu_gives_burns_bits_without_autodiff() {
        let mut x = inputs();
        x.extend([-0.0, -20.0, f32::INFINITY, f32::NEG_INFINITY]);
        let ours = bits(super::gelu(tensor(&x, &Device::flex())));
        let burns = bits(burn::tensor::activation::gelu(tensor(&x, &Device::flex())));
        assert_eq!(ours, burns);
    }

    #[test]
    fn gelu_in_a_training_graph_gives_burns_output_and_gradient_bits() {
        let x = inputs();
        let (y, gradient) = forward_backward(super::gelu, &x);
        let (burn_y, burn_gradient) = forward_backward(burn::tensor::activation::gelu, &x);
        for (what, ours, burns) in [("forward", &y, &burn_y), ("backward", &gradient, &burn_gradient)] {
            let first = (0..x.len()).find(|&i| ours[i] != burns[i]);
            assert!(
                first.is_none(),
                "{what} at x = {:e}: {:e} against burn's {:e}",
                x[first.unwrap_or(0)],
                f32::from_bits(ours[first.unwrap_or(0)]),
                f32::from_bits(burns[first.unwrap_or(0)])
            );
        }
    }

    #[test]
    fn gelu_in_a_training_graph_differs_only_in_the_sign_of_a_zero_output() {
        // Where GELU is −0 and its derivative +0 (x = −0, or x below about −14.2) the sum gives +0 (see `lanes`).
        let x = [-0.0, -14.0, -14.5, -20.0, -88.0, -3.0e38];
        let (y, gradient) = forward_backward(super::gelu, &x);
        let (burn_y, burn_gradient) = forward_backward(burn::tensor::activation::gelu, &x);
        assert_eq!(gradient, burn_gradient, "backward");
        for ((&ours, &burns), x) in y.iter().zip(&burn_y).zip(x) {
            let (ours, burns) = (f32::from_bits(ours), f32::from_bits(burns));
            assert!(ours == burns, "gelu({x}) = {ours}, burn's {burns}");
        }
    }
}
