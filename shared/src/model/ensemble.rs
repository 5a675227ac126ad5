//! The ensemble over live shards: the mean of the shards' softmax outputs.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// Mean of softmax over the given per-shard logits ([batch, classes] each); `None` when no shard is live.
pub fn mean_softmax(logits: Vec<Tensor<2>>) -> Option<Tensor<2>> {
    let n = logits.len();
    logits.into_iter().map(|l| softmax(l, 1)).reduce(|a, b| a + b).map(|sum| sum.div_scalar(n as f64))
}

/// Softmax probabilities on the host, row-major [rows, classes] (for memoised per-node outputs).
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        out.extend(exp.iter().map(|e| e / sum));
    }
    out
}

/// Mean of per-shard probability tables (each [rows, classes]); `None` when empty.
pub fn mean_probabilities(tables: &[&[f32]]) -> Option<Vec<f32>> {
    let first = tables.first()?;
    let mut sum = vec![0.0f32; first.len()];
    for table in tables {
        for (s, p) in sum.iter_mut().zip(table.iter()) {
            *s += p;
        }
    }
    let n = tables.len() as f32;
    Some(sum.into_iter().map(|s| s / n).collect())
}

/// Arg-max class of each row.
pub fn predictions(probabilities: &[f32], classes: usize) -> Vec<usize> {
    probabilities
        .chunks(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &p)| if p > best.1 { (i, p) } else { best })
                .0
        })
        .collect()
}

/// Fraction of rows whose arg-max equals the label.
pub fn accuracy(probabilities: &[f32], classes: usize, labels: &[u8]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let hits = predictions(probabilities, classes).iter().zip(labels).filter(|(p, l)| **p == usize::from(**l)).count();
    hits as f64 / labels.len() as f64
}
