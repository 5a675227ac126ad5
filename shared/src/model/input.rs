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
