//! Images → tensors. Normalisation uses fixed constants, never statistics of deletable data (rule E5).

use burn::tensor::{Device, Tensor, TensorData};

use crate::dataset::Dataset;

/// Pixels are mapped from 0..=255 to [−1, 1]: fixed constants, identical for every data set.
pub const PIXEL_SCALE: f32 = 2.0 / 255.0;
pub const PIXEL_SHIFT: f32 = -1.0;

/// The images at `indices` as a [batch, rows, cols] tensor.
pub fn images(data: &Dataset, indices: &[usize], device: &Device) -> Tensor<3> {
    let per = data.pixels_per_image();
    let mut values = Vec::with_capacity(indices.len() * per);
    for &i in indices {
        values.extend(data.image(i).iter().map(|&p| f32::from(p) * PIXEL_SCALE + PIXEL_SHIFT));
    }
    Tensor::from_data(TensorData::new(values, [indices.len(), data.rows as usize, data.cols as usize]), device)
}

/// The labels at `indices`.
pub fn labels(data: &Dataset, indices: &[usize], device: &Device) -> Tensor<1, burn::tensor::Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i64::from(data.labels[i])).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// The token ids at `indices` as a [batch, tokens] tensor, and the mask of their real tokens ([batch, tokens] of 1
/// and 0). Token ids are fixed by the tokenizer, which comes with the pretrained encoder (rule E5).
pub fn tokens(data: &Dataset, indices: &[usize], device: &Device) -> (Tensor<2, burn::tensor::Int>, Tensor<2>) {
    let n = data.cols as usize;
    let mut ids = Vec::with_capacity(indices.len() * n);
    for &i in indices {
        ids.extend(data.token_ids(i).iter().map(|&id| i64::from(id)));
    }
    (Tensor::from_data(TensorData::new(ids, [indices.len(), n]), device), mask(data, indices, device))
}

/// The real tokens of the texts at `indices`: [batch, tokens] of 1 (the first `length` positions) and 0.
pub fn mask(data: &Dataset, indices: &[usize], device: &Device) -> Tensor<2> {
    let n = data.cols as usize;
    let lengths = data.text.as_ref().map_or(&[][..], |t| &t.lengths[..]);
    let mut mask = Vec::with_capacity(indices.len() * n);
    for &i in indices {
        let real = lengths.get(i).map_or(0, |&l| l as usize);
        mask.extend((0..n).map(|t| if t < real { 1.0f32 } else { 0.0 }));
    }
    Tensor::from_data(TensorData::new(mask, [indices.len(), n]), device)
}

/// Embeds the samples at `indices` with `backbone`: images through its patch projection, texts through its word
/// embeddings (with their mask).
pub fn embed(
    backbone: &super::vit::Backbone,
    data: &Dataset,
    indices: &[usize],
    device: &Device,
) -> (Tensor<3>, Option<Tensor<2>>) {
    if data.text.is_some() {
        let (ids, mask) = tokens(data, indices, device);
        (backbone.embed_text(ids), Some(mask))
    } else {
        (backbone.embed(images(data, indices, device)), None)
    }
}
