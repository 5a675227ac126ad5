//! The GPU kernels themselves (cubecl), each in the order of the burn operations it replaces.

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
