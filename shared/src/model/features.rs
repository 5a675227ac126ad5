//! Cached backbone activations at the layer-group boundaries.
//!
//! A prefix-k component has no adapters below group k, so up to the lowest block of group k it computes exactly
//! what the plain backbone computes. Caching those activations once per data set makes training group k and
//! evaluating any prefix-k node cost only the blocks of groups k..1.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::ModelConfig;
use super::input;
use super::vit::{Backbone, Component, block_adapters, unpaced};
use crate::Error;
use crate::dataset::{DataError, Dataset};

/// Evaluation batch size (memory bound, not a hyper-parameter).
pub const EVAL_BATCH: usize = 500;

pub struct Features {
    /// `boundary[g-1]`: the activations entering the lowest block of group g, for every sample, [n, tokens, d].
    /// Filled bottom-up: groups `g..=L` are present from some g on (see [`Features::extend_paced`]).
    boundary: Vec<Option<Tensor<3>>>,
    /// Texts: which tokens of each sample are real, [n, tokens] of 1 and 0 (images: `None`, every token is).
    mask: Option<Tensor<2>>,
    len: usize,
    batch: usize,
}

impl Features {
    /// The activations entering every group.
    pub fn new(config: &ModelConfig, backbone: &Backbone, data: &Dataset, device: &Device) -> Self {
        let pause = async || {};
        unpaced(async {
            let mut features = Self::embedded_paced(config, backbone, data, device, EVAL_BATCH, &pause).await;
            features.extend_paced(config, backbone, 1, &pause).await;
            features
        })
    }

    /// Only the activations entering the bottom group L (see [`Features::embedded_paced`]).
    pub fn embedded(config: &ModelConfig, backbone: &Backbone, data: &Dataset, device: &Device) -> Self {
        unpaced(Self::embedded_paced(config, backbone, data, device, EVAL_BATCH, &async || {}))
    }

    /// Only the activations entering the bottom group L (the embedded patches, or a text's output of the frozen
    /// layers below every group): all that a full-length component or a SISA checkpoint reads. The browser starts with these, so its first accuracy waits for nothing else.
    pub async fn embedded_paced(
        config: &ModelConfig,
        backbone: &Backbone,
        data: &Dataset,
        device: &Device,
        batch: usize,
        pause: &impl AsyncFn(),
    ) -> Self {
        let batch = batch.max(1);
        let all: Vec<usize> = (0..data.len()).collect();
        let mut parts = Vec::new();
        let mut masks = Vec::new();
        // Layers below every group are frozen: what group L reads is their output, computed once here.
        let base = config.frozen_base();
        for chunk in all.chunks(batch) {
            let (x, mask) = input::embed(backbone, data, chunk, device);
            let x =
                if base > 0 { backbone.blocks_forward_paced(x, mask.as_ref(), 0, base, &[], pause).await } else { x };
            parts.push(x);
            masks.extend(mask);
            pause().await;
        }
        let mut boundary = vec![None; config.groups];
        boundary[config.groups - 1] = Some(Tensor::cat(parts, 0));
        let mask = (!masks.is_empty()).then(|| Tensor::cat(masks, 0));
        Self { boundary, mask, len: data.len(), batch }
    }

    /// The activations entering the bottom group L at the real tokens of `data`'s texts (the samples these features
    /// were computed from), row-major [Σ lengths, d] in sample order: what a text bundle's export for the page ships
    /// instead of the encoder below that boundary ([`Features::from_real_tokens`]).
    pub fn real_tokens(&self, config: &ModelConfig, data: &Dataset) -> crate::Result<Vec<f32>> {
        let lengths = text_lengths(data, self.len)?;
        let (tokens, d) = (data.cols as usize, config.vit.d_model);
        let all = to_host(self.all(config.groups));
        let mut rows = Vec::with_capacity(lengths.iter().sum::<usize>() * d);
        for (i, &real) in lengths.iter().enumerate() {
            rows.extend_from_slice(&all[i * tokens * d..(i * tokens + real) * d]);
        }
        Ok(rows)
    }

    /// Features entering the bottom group L from the rows [`Features::real_tokens`] wrote, with zeros at the
    /// padding, evaluated `batch` texts at a time (the page keeps each operation short with small batches). Every
    /// later computation reads a text's real tokens only (packing gathers them; attention gives padded keys a weight
    /// of exactly 0; pooling weighs padding by 0), so these serve bit for bit as the features computed from the
    /// whole encoder do.
    pub fn from_real_tokens(
        config: &ModelConfig,
        data: &Dataset,
        rows: &[f32],
        batch: usize,
        device: &Device,
    ) -> crate::Result<Self> {
        let n = data.len();
        let lengths = text_lengths(data, n)?;
        let (tokens, d) = (data.cols as usize, config.vit.d_model);
        let real: usize = lengths.iter().sum();
        if rows.len() != real * d {
            return Err(Error::mismatch(format!(
                "{} values of activations, but {n} texts of {real} real tokens in all need {} ({d} each)",
                rows.len(),
                real * d
            )));
        }
        let mut values = vec![0.0f32; n * tokens * d];
        let mut at = 0;
        for (i, &len) in lengths.iter().enumerate() {
            values[i * tokens * d..(i * tokens + len) * d].copy_from_slice(&rows[at..at + len * d]);
            at += len * d;
        }
        let mut boundary = vec![None; config.groups];
        boundary[config.groups - 1] = Some(Tensor::from_data(TensorData::new(values, [n, tokens, d]), device));
        let all: Vec<usize> = (0..n).collect();
        let mask = Some(input::mask(data, &all, device));
        Ok(Self { boundary, mask, len: n, batch: batch.max(1) })
    }

    /// Computes the missing activations entering groups L−1 down to `group`, each from the one below it, in the
    /// same batches as the embedding (so every sample goes through exactly the computation [`Features::new`] does).
    pub async fn extend_paced(
        &mut self,
        config: &ModelConfig,
        backbone: &Backbone,
        group: usize,
        pause: &impl AsyncFn(),
    ) {
        for g in (group.max(1)..config.groups).rev() {
            if self.boundary[g - 1].is_some() {
                continue;
            }
            let below = self.all(g + 1);
            let (from, to) = (config.first_block_of_group(g + 1), config.first_block_of_group(g));
            let mut parts = Vec::new();
            for start in (0..self.len).step_by(self.batch) {
                let rows = start..(start + self.batch).min(self.len);
                let x = below.clone().slice(rows.clone());
                let mask = self.mask.as_ref().map(|m| m.clone().slice(rows));
                parts.push(backbone.blocks_forward_paced(x, mask.as_ref(), from, to, &[], pause).await);
            }
            self.boundary[g - 1] = Some(Tensor::cat(parts, 0));
        }
    }

    fn present(&self, group: usize) -> &Tensor<3> {
        self.boundary[group - 1].as_ref().expect("activations are computed before use (Features::extend_paced)")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Samples per batch when these features are extended or evaluated. A sample's numbers do not depend on it.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The real-token mask of the given samples ([n, tokens]; `None` for images).
    pub fn mask_at(&self, indices: &[usize]) -> Option<Tensor<2>> {
        let mask = self.mask.as_ref()?;
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let len = idx.len();
        Some(mask.clone().select(0, Tensor::<1, Int>::from_data(TensorData::new(idx, [len]), &mask.device())))
    }

    /// The real-token mask of every sample (`None` for images).
    pub fn mask_all(&self) -> Option<Tensor<2>> {
        self.mask.clone()
    }

    /// The mask of a contiguous batch (see [`Features::batch`]).
    fn mask_batch(&self, chunk: &[usize]) -> Option<Tensor<2>> {
        let mask = self.mask.as_ref()?;
        match (chunk.first(), chunk.last()) {
            (Some(&first), Some(&last)) if last + 1 - first == chunk.len() => Some(mask.clone().slice(first..last + 1)),
            _ => self.mask_at(chunk),
        }
    }

    /// Activations entering group `group` for the given samples.
    pub fn at(&self, group: usize, indices: &[usize]) -> Tensor<3> {
        let t = self.present(group);
        let device = t.device();
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let len = idx.len();
        t.clone().select(0, Tensor::<1, Int>::from_data(TensorData::new(idx, [len]), &device))
    }

    /// A contiguous batch `chunk` (consecutive indices) of the activations entering `group`: a slice, not a gather.
    fn batch(&self, group: usize, chunk: &[usize]) -> Tensor<3> {
        match (chunk.first(), chunk.last()) {
            (Some(&first), Some(&last)) if last + 1 - first == chunk.len() => {
                if first == 0 && last + 1 == self.len {
                    return self.all(group);
                }
                self.present(group).clone().slice(first..last + 1)
            }
            _ => self.at(group, chunk),
        }
    }

    /// All activations entering group `group`.
    pub fn all(&self, group: usize) -> Tensor<3> {
        self.present(group).clone()
    }
}

/// Each text's real tokens, checked against the tokens per text (`n` texts expected).
fn text_lengths(data: &Dataset, n: usize) -> crate::Result<Vec<usize>> {
    let text = data
        .text
        .as_ref()
        .ok_or_else(|| DataError::Invalid("real tokens are a text's; these samples are images".into()))?;
    if text.lengths.len() != n {
        return Err(Error::mismatch(format!("{} texts, but {n} samples of activations", text.lengths.len())));
    }
    let tokens = data.cols as usize;
    text.lengths
        .iter()
        .map(|&l| {
            let l = l as usize;
            if l > tokens {
                Err(DataError::Invalid(format!("a text of {l} real tokens, more than the {tokens} per text")).into())
            } else {
                Ok(l)
            }
        })
        .collect()
}

/// Logits of a component from cached activations (and, for texts, their mask): runs only the blocks from its lowest
/// active group up.
pub fn component_logits(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    x: Tensor<3>,
    mask: Option<Tensor<2>>,
) -> Tensor<2> {
    unpaced(component_logits_paced(config, backbone, component, x, mask, &async || {}))
}

/// [`component_logits`], awaiting `pause` between operations.
pub async fn component_logits_paced(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    x: Tensor<3>,
    mask: Option<Tensor<2>>,
    pause: &impl AsyncFn(),
) -> Tensor<2> {
    let k = component.groups.len().max(1);
    let adapters = block_adapters(config, component.groups);
    let from = config.first_block_of_group(k);
    let x = backbone.blocks_forward_paced(x, mask.as_ref(), from, backbone.depth(), &adapters, pause).await;
    let pooled = backbone.pool(x, mask.as_ref());
    pause().await;
    component.head.forward(pooled)
}

/// Row-major logits [n, classes] of a component over every cached sample, evaluated in the features' batches.
pub fn logits_all(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    features: &Features,
) -> Vec<f32> {
    if features.is_empty() {
        return Vec::new();
    }
    to_host(logits_all_tensor(config, backbone, component, features))
}

/// [`logits_all`] left on the device, [n, classes] (`features` must not be empty).
pub fn logits_all_tensor(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    features: &Features,
) -> Tensor<2> {
    let k = component.groups.len().max(1);
    let all: Vec<usize> = (0..features.len()).collect();
    let parts = all
        .chunks(features.batch)
        .map(|chunk| {
            component_logits(config, backbone, component, features.batch(k, chunk), features.mask_batch(chunk))
        })
        .collect();
    Tensor::cat(parts, 0)
}

/// Copies a float tensor to the host as f32 (works on every backend and dtype).
pub fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("a float tensor converts to f32")
}

/// [`to_host`] for backends that can only read back asynchronously (WebGPU in the browser).
pub async fn to_host_async<const D: usize>(t: Tensor<D>) -> crate::Result<Vec<f32>> {
    let data = t.into_data_async().await.map_err(|e| Error::model(format!("reading a tensor back: {e:?}")))?;
    data.try_into_vec_as::<f32>().map_err(|e| Error::model(format!("reading a tensor back: {e:?}")))
}

/// [`logits_all`] with asynchronous read-back, `batch` samples at a time, awaiting `pause` after each batch so a
/// caller can yield to the page.
pub async fn logits_all_async(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    features: &Features,
    batch: usize,
    pause: &impl AsyncFn(),
) -> crate::Result<Vec<f32>> {
    let k = component.groups.len().max(1);
    let mut out = Vec::with_capacity(features.len() * config.vit.classes);
    let all: Vec<usize> = (0..features.len()).collect();
    for chunk in all.chunks(batch.max(1)) {
        let (x, mask) = (features.batch(k, chunk), features.mask_batch(chunk));
        let logits = component_logits_paced(config, backbone, component, x, mask, pause).await;
        out.extend(to_host_async(logits).await?);
        pause().await;
    }
    Ok(out)
}
