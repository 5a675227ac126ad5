//! Launching the kernels of [`super::fused`] (and cubek's matmul) on plain GPU tensors: `None` for any other tensor,
//! which then takes burn's own operations.

use burn::tensor::Tensor;
use burn_backend::Shape;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::kernel::matmul::init_matmul_output;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::{CubeCount, CubeDim, ElemType};

use super::fused::{COLUMNS, LANES, QUERIES, ROWS, attention_kernel, gelu_kernel, layer_norm_kernel, linear_kernel};
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
