//! The GPU kernels behind the model's products, chosen for thin matrices on any WebGPU adapter.
//!
//! Without autotuning (which compiles and times a dozen candidates per shape, seconds in a browser), burn's GPU
//! matmul stages tiles through workgroup memory with barriers. A software WebGPU adapter (SwiftShader: the browser
//! tests, and visitors without a usable GPU) emulates barriers, and there the token-wise layers ([8000, 32] by
//! [32, 32]) take about 58 ms each. As a 1-wide convolution (cubecl's direct kernel) the same layer takes about
//! 18 ms, and the batched attention products ([2000, 16, 8] by [2000, 8, 16]) through the naive matmul kernel take
//! about 30 ms instead of 90 ms as broadcast products. Both kernels loop over the inner dimension per output
//! element, which also suits hardware GPUs at this model's widths.
//!
//! Tensors that are not plain GPU tensors (the CPU, or autodiff while training) take burn's own operations, so the
//! CPU path, and with it every trained bundle, is unchanged bit for bit (a test bundle built before and after this
//! module has the same manifest, every weight file's sha256 included).

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

/// A linear layer as a 1-wide convolution over [batch, length, d_in]: the kernel reads the channels-last layout,
/// which is `x`'s own, so the transposes are views.
#[cfg(feature = "gpu")]
fn convolve(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let kernel = weight.transpose().unsqueeze_dim::<3>(2);
    burn::tensor::module::conv1d(x.swap_dims(1, 2), kernel, bias, ConvOptions::new([1], [0], [1], 1)).swap_dims(1, 2)
}

#[cfg(feature = "gpu")]
mod cube {
    use burn::tensor::Tensor;
    use burn_backend::cubecl::dtype_to_storage_type;
    use burn_cubecl::kernel::into_contiguous;
    use burn_cubecl::kernel::matmul::init_matmul_output;
    use burn_cubecl::tensor::CubeTensor;
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
