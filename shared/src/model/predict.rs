//! A text bundle's answer on new sentences: each live shard's served component, and the ensemble of their
//! probabilities, after the deletions a routing state records. `trainer predict` and the page's "try your own
//! sentence" both call this, so the page shows what the trainer prints.

use burn::tensor::Device;

use super::ensemble::{mean_probabilities, softmax_rows};
use super::features::{Features, logits_all_async};
use super::serve::Model;
use super::vit::{Backbone, Component};
use crate::Error;
use crate::dataset::Dataset;
use crate::{Served, State};

/// One live shard's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Vote {
    pub shard: u16,
    /// The sequence and prefix it serves.
    pub served: Served,
    /// Row-major logits [texts, classes].
    pub logits: Vec<f32>,
}

/// Every live shard's answer and the ensemble's.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub classes: usize,
    pub votes: Vec<Vote>,
    /// The mean of the live shards' softmax, row-major [texts, classes]; `None` when every shard is offline.
    pub probabilities: Option<Vec<f32>>,
}

/// Classifies `data`'s texts with the components `state` serves, through `encoder`, the whole encoder (embedding
/// included: the texts are new, so no cached activations exist), awaiting `pause` between operations.
pub async fn predict(
    model: &Model,
    encoder: &Backbone,
    state: &State,
    data: &Dataset,
    device: &Device,
    pause: &impl AsyncFn(),
) -> crate::Result<Prediction> {
    let config = model.config();
    let classes = config.vit.classes;
    if encoder.first_block != 0 {
        return Err(Error::mismatch(format!(
            "the encoder starts at layer {}: new texts need the whole encoder",
            encoder.first_block
        )));
    }
    let batch = super::features::EVAL_BATCH;
    let mut features = Features::embedded_paced(config, encoder, data, device, batch, pause).await;
    features.extend_paced(config, encoder, 1, pause).await;
    let mut votes = Vec::new();
    for shard in 0..state.shards() {
        let Some(served) = state.served(shard) else { continue };
        let (groups, head) = model.component(shard, served)?;
        let component = Component { groups: &groups, head };
        let logits = logits_all_async(config, encoder, component, &features, batch, pause).await?;
        votes.push(Vote { shard, served, logits });
    }
    let tables: Vec<Vec<f32>> = votes.iter().map(|v| softmax_rows(&v.logits, classes)).collect();
    let refs: Vec<&[f32]> = tables.iter().map(Vec::as_slice).collect();
    Ok(Prediction { classes, probabilities: mean_probabilities(&refs), votes })
}
