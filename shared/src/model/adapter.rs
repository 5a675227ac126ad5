//! LoRA adapters: per block a low-rank update of the query and value projections, grouped into layer groups.
//!
//! Adapters are separate modules rather than a reparameterisation of the backbone's weights, so a component is
//! assembled from exactly the groups it may use and a frozen group is simply not part of what the optimiser sees
//! (exactness rule E2 holds by construction, and is tested bit for bit).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::ModelConfig;
use super::kernel::matmul;

/// The LoRA update of one block: `W_q + s·A_q B_q` and `W_v + s·A_v B_v` with `s = alpha / rank`.
#[derive(Module, Debug)]
pub struct BlockAdapter {
    /// [d_model, rank]
    pub query_a: Param<Tensor<2>>,
    /// [rank, d_model]
    pub query_b: Param<Tensor<2>>,
    /// [d_model, rank]
    pub value_a: Param<Tensor<2>>,
    /// [rank, d_model]
    pub value_b: Param<Tensor<2>>,
    pub scale: f64,
}

impl BlockAdapter {
    /// The query weight with the update folded in. Folding (`x (W + s A B)`) is the same function as adding
    /// `s (x A) B` but one [d, d] product per block instead of two extra matmuls per token, which matters on
    /// WebGPU; gradients still reach A and B.
    pub fn query_weight(&self, weight: Tensor<2>) -> Tensor<2> {
        weight + matmul(self.query_a.val(), self.query_b.val()).mul_scalar(self.scale)
    }

    /// The value weight with the update folded in (see [`BlockAdapter::query_weight`]).
    pub fn value_weight(&self, weight: Tensor<2>) -> Tensor<2> {
        weight + matmul(self.value_a.val(), self.value_b.val()).mul_scalar(self.scale)
    }
}

/// The adapters of one layer group (its blocks, bottom to top).
#[derive(Module, Debug)]
pub struct GroupAdapter {
    pub group: usize,
    pub blocks: Vec<BlockAdapter>,
}

impl GroupAdapter {
    /// A fresh adapter: A ~ N(0, 1/r) from a ChaCha8 stream seeded by `seed` (the node's seed, rule E6), B = 0,
    /// so a fresh group starts as the identity update.
    pub fn init(config: &ModelConfig, group: usize, seed: u64, device: &Device) -> Self {
        let d = config.vit.d_model;
        let r = config.lora.rank;
        let std = 1.0 / r as f64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = |n: usize| -> Vec<f32> { (0..n).map(|_| (std * standard_normal(&mut rng)) as f32).collect() };
        let blocks = config
            .blocks_of_group(group)
            .iter()
            .map(|_| {
                let query_a = normal(d * r);
                let value_a = normal(d * r);
                BlockAdapter {
                    query_a: Param::from_data(TensorData::new(query_a, [d, r]), device),
                    query_b: Param::from_data(TensorData::new(vec![0.0f32; r * d], [r, d]), device),
                    value_a: Param::from_data(TensorData::new(value_a, [d, r]), device),
                    value_b: Param::from_data(TensorData::new(vec![0.0f32; r * d], [r, d]), device),
                    scale: config.lora.alpha / r as f64,
                }
            })
            .collect();
        Self { group, blocks }
    }
}

/// A standard normal draw (Box–Muller), so initialisation does not depend on a distribution crate's algorithm.
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    use rand::Rng;
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
