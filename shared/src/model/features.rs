//! Cached backbone activations at the layer-group boundaries.
//!
//! A prefix-k component has no adapters below group k, so up to the lowest block of group k it computes exactly
//! what the plain backbone computes. Caching those activations once per data set makes training group k and
//! evaluating any prefix-k node cost only the blocks of groups k..1.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::ModelConfig;
use super::input;
use super::vit::{Backbone, Component, block_adapters, unpaced};
use crate::dataset::Dataset;

/// Evaluation batch size (memory bound, not a hyper-parameter).
pub const EVAL_BATCH: usize = 500;

/// `boundary[g-1]` = activations entering the lowest block of group g, for every sample: [n, tokens, d].
pub struct Features {
    boundary: Vec<Tensor<3>>,
    len: usize,
}

impl Features {
    pub fn new(config: &ModelConfig, backbone: &Backbone, data: &Dataset, device: &Device) -> Self {
        unpaced(Self::new_paced(config, backbone, data, device, EVAL_BATCH, &async || {}))
    }

    /// [`Features::new`] in batches of `batch` samples, awaiting `pause` between operations (a browser yields there).
    pub async fn new_paced(
        config: &ModelConfig,
        backbone: &Backbone,
        data: &Dataset,
        device: &Device,
        batch: usize,
        pause: &impl AsyncFn(),
    ) -> Self {
        let mut per_group: Vec<Vec<Tensor<3>>> = vec![Vec::new(); config.groups];
        let starts: Vec<usize> = (1..=config.groups).map(|g| config.first_block_of_group(g)).collect();
        let all: Vec<usize> = (0..data.len()).collect();
        for chunk in all.chunks(batch.max(1)) {
            let mut x = backbone.embed(input::images(data, chunk, device));
            pause().await;
            let mut at = 0;
            // Groups are ordered top (1) to bottom (L): walk boundaries bottom-up.
            for g in (1..=config.groups).rev() {
                x = backbone.blocks_forward_paced(x, at, starts[g - 1], &[], pause).await;
                at = starts[g - 1];
                per_group[g - 1].push(x.clone());
            }
        }
        let boundary = per_group.into_iter().map(|parts| Tensor::cat(parts, 0)).collect();
        Self { boundary, len: data.len() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Activations entering group `group` for the given samples.
    pub fn at(&self, group: usize, indices: &[usize]) -> Tensor<3> {
        let t = &self.boundary[group - 1];
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
                self.boundary[group - 1].clone().slice(first..last + 1)
            }
            _ => self.at(group, chunk),
        }
    }

    /// All activations entering group `group`.
    pub fn all(&self, group: usize) -> Tensor<3> {
        self.boundary[group - 1].clone()
    }
}

/// Logits of a component from cached activations: runs only the blocks from its lowest active group up.
pub fn component_logits(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    x: Tensor<3>,
) -> Tensor<2> {
    unpaced(component_logits_paced(config, backbone, component, x, &async || {}))
}

/// [`component_logits`], awaiting `pause` between operations.
pub async fn component_logits_paced(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    x: Tensor<3>,
    pause: &impl AsyncFn(),
) -> Tensor<2> {
    let k = component.groups.len().max(1);
    let adapters = block_adapters(config, component.groups);
    let x = backbone.blocks_forward_paced(x, config.first_block_of_group(k), backbone.depth(), &adapters, pause).await;
    let pooled = backbone.pool(x);
    pause().await;
    component.head.forward(pooled)
}

/// Row-major logits [n, classes] of a component over every cached sample, evaluated in batches.
pub fn logits_all(
    config: &ModelConfig,
    backbone: &Backbone,
    component: Component<'_>,
    features: &Features,
) -> Vec<f32> {
    let k = component.groups.len().max(1);
    let mut out = Vec::with_capacity(features.len() * config.vit.classes);
    let all: Vec<usize> = (0..features.len()).collect();
    for chunk in all.chunks(EVAL_BATCH) {
        let logits = component_logits(config, backbone, component, features.batch(k, chunk));
        out.extend(to_host(logits));
    }
    out
}

/// Copies a float tensor to the host as f32 (works on every backend and dtype).
pub fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("a float tensor converts to f32")
}

/// [`to_host`] for backends that can only read back asynchronously (WebGPU in the browser).
pub async fn to_host_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    let data = t.into_data_async().await.map_err(|e| format!("reading a tensor back: {e:?}"))?;
    data.try_into_vec_as::<f32>().map_err(|e| format!("reading a tensor back: {e:?}"))
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
) -> Result<Vec<f32>, String> {
    let k = component.groups.len().max(1);
    let mut out = Vec::with_capacity(features.len() * config.vit.classes);
    let all: Vec<usize> = (0..features.len()).collect();
    for chunk in all.chunks(batch.max(1)) {
        let logits = component_logits_paced(config, backbone, component, features.batch(k, chunk), pause).await;
        out.extend(to_host_async(logits).await?);
        pause().await;
    }
    Ok(out)
}
