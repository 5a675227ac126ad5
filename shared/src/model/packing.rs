//! Packed tokens: a batch of texts is padded to `max_tokens`, but a transformer's token-wise layers (projections,
//! feed-forward, layer norms, residuals) compute each token from that token alone, so they need only the real
//! tokens. Packing gathers those into one [real tokens, d] matrix; only attention, which mixes the tokens of one
//! text, sees the padded [texts · tokens, d] layout again, with zeros at the padding. On Rotten Tomatoes at 32 tokens
//! about a quarter of the positions are padding, at 64 about half.
//!
//! The forward pass computes the same values bit for bit: a row of a matrix product does not depend on the other
//! rows, padded keys weigh exactly 0 in the softmax whatever they hold ([`super::kernel::MASKED_SCORE`]), and
//! pooling weighs padding by 0. Backward, the gradient of a projection's weight sums over rows, and without the
//! padding rows (whose terms are exact zeros) the matrix product groups the remaining terms differently: trained
//! weights differ in their last bits from the padded arithmetic. A bundle therefore records which arithmetic it
//! was trained with ([`super::config::TextConfig::packed`]) and every run on it uses that one.
//!
//! Only the CPU backend packs: the GPU kernels are shaped by batch and tokens, and reading the mask back to the host
//! each step would stall a GPU queue (and cannot be done synchronously in a browser).

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

/// Where the real tokens of a padded batch are.
pub struct Packing {
    /// The flat position (text · tokens + token) of every real token, in order: [real].
    real: Tensor<1, Int>,
    /// For every position of the padded batch, its row among the packed tokens, or `real` (one past the last row, a
    /// row of zeros) for padding: [texts · tokens].
    slots: Tensor<1, Int>,
    count: usize,
}

impl Packing {
    /// The packing of a batch's mask ([texts, tokens] of 1 for a real token, 0 for padding). `None` where packing
    /// does not apply: off the CPU backend, or a batch without padding (packing it would change nothing).
    pub fn of_mask(mask: &Tensor<2>) -> Option<Self> {
        if mask.device() != Device::flex() || mask.dtype() != DType::F32 {
            return None;
        }
        let values = mask.to_data().try_to_vec::<f32>().ok()?;
        if values.iter().all(|&m| m != 0.0) {
            return None;
        }
        let mut real = Vec::with_capacity(values.len());
        let mut slots = Vec::with_capacity(values.len());
        for (position, &m) in values.iter().enumerate() {
            if m != 0.0 {
                slots.push(real.len() as i64);
                real.push(position as i64);
            } else {
                slots.push(-1);
            }
        }
        let count = real.len();
        for slot in &mut slots {
            if *slot < 0 {
                *slot = count as i64;
            }
        }
        let device = mask.device();
        let index = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [n]), &device)
        };
        Some(Self { real: index(real), slots: index(slots), count })
    }

    /// Real tokens in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// [texts · tokens, d] → [real, d]: the real tokens' rows, in order.
    pub fn pack(&self, x: Tensor<2>) -> Tensor<2> {
        x.select(0, self.real.clone())
    }

    /// [real, d] → [texts · tokens, d]: every real token back at its position, zeros at the padding.
    pub fn unpack(&self, x: Tensor<2>) -> Tensor<2> {
        let zero = Tensor::<2>::zeros([1, x.dims()[1]], &x.device());
        Tensor::cat(vec![x, zero], 0).select(0, self.slots.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_keeps_real_tokens_and_unpack_restores_them_with_zero_padding() {
        let device = Device::flex();
        let mask = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0, 0.0, 0.0], [2, 3]), &device);
        let packing = Packing::of_mask(&mask).expect("a padded batch on the CPU packs");
        assert_eq!(packing.len(), 3);
        let x = Tensor::<2>::from_data(TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [6, 2]), &device);
        let packed = packing.pack(x);
        assert_eq!(packed.to_data().try_to_vec::<f32>().ok(), Some(vec![0.0, 1.0, 2.0, 3.0, 6.0, 7.0]));
        let back = packing.unpack(packed);
        let expected = vec![0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 6.0, 7.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(back.to_data().try_to_vec::<f32>().ok(), Some(expected));
    }

    #[test]
    fn a_batch_without_padding_is_not_packed() {
        let mask = Tensor::<2>::ones([2, 3], &Device::flex());
        assert!(Packing::of_mask(&mask).is_none());
    }
}
