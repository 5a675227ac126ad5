//! Loss-threshold membership inference: how well a sample's loss separates training members from never-trained
//! samples, as an AUC with a seeded percentile-bootstrap interval.
//!
//! The AUC is OpenUnlearning's `mia_auc` (its loss attack): the area under the ROC curve of the score −loss, members
//! labelled 1 and non-members 0, i.e. the probability that a random member has a lower loss than a random
//! non-member, ties counted half. 0.5 means the losses say nothing about membership.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Coverage of every interval.
pub const LEVEL: f64 = 0.95;

/// A point estimate and its percentile-bootstrap interval at [`LEVEL`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// AUC of −loss separating members from non-members (Mann–Whitney U with mid-ranks for ties); `None` when either
/// group is empty.
pub fn mia_auc(members: &[f64], non_members: &[f64]) -> Option<f64> {
    if members.is_empty() || non_members.is_empty() {
        return None;
    }
    // (score, is member), sorted by score; a member ranks above a non-member when its loss is lower.
    let mut all: Vec<(f64, bool)> =
        members.iter().map(|&l| (-l, true)).chain(non_members.iter().map(|&l| (-l, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut member_rank_sum = 0.0;
    let mut start = 0;
    while start < all.len() {
        let end = start + all[start..].iter().take_while(|(s, _)| s.total_cmp(&all[start].0).is_eq()).count();
        // Ranks start..end (1-based start+1..=end) share their mean: a tie counts half either way.
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        member_rank_sum += mid_rank * all[start..end].iter().filter(|(_, m)| *m).count() as f64;
        start = end;
    }
    let (m, n) = (members.len() as f64, non_members.len() as f64);
    Some((member_rank_sum - m * (m + 1.0) / 2.0) / (m * n))
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// A seeded bootstrap: `resamples` draws with replacement, the same draws for the same seed.
#[derive(Clone, Copy, Debug)]
pub struct Bootstrap {
    pub resamples: usize,
    pub seed: u64,
}

impl Bootstrap {
    /// The AUC and its interval, resampling members and non-members separately (each group keeps its size).
    pub fn auc(&self, members: &[f64], non_members: &[f64]) -> Option<Estimate> {
        let value = mia_auc(members, non_members)?;
        let mut rng = self.rng();
        let mut stats = Vec::with_capacity(self.resamples);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..self.resamples {
            resample(&mut rng, members, &mut a);
            resample(&mut rng, non_members, &mut b);
            stats.push(mia_auc(&a, &b)?);
        }
        Some(interval(value, stats))
    }

    /// The mean and its interval; `None` for no values.
    pub fn mean(&self, values: &[f64]) -> Option<Estimate> {
        if values.is_empty() {
            return None;
        }
        let mut rng = self.rng();
        let mut draw = Vec::new();
        let stats = (0..self.resamples)
            .map(|_| {
                resample(&mut rng, values, &mut draw);
                mean(&draw)
            })
            .collect();
        Some(interval(mean(values), stats))
    }

    fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed)
    }
}

fn resample(rng: &mut ChaCha8Rng, from: &[f64], into: &mut Vec<f64>) {
    into.clear();
    into.extend((0..from.len()).map(|_| from[rng.random_range(0..from.len())]));
}

/// The percentile interval of the bootstrap statistics (quantiles interpolated linearly between order statistics).
fn interval(value: f64, mut stats: Vec<f64>) -> Estimate {
    if stats.is_empty() {
        return Estimate { value, low: value, high: value };
    }
    stats.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let pos = q * (stats.len() - 1) as f64;
        let (i, frac) = (pos.floor() as usize, pos.fract());
        let next = stats[(i + 1).min(stats.len() - 1)];
        stats[i] + frac * (next - stats[i])
    };
    let tail = (1.0 - LEVEL) / 2.0;
    Estimate { value, low: quantile(tail), high: quantile(1.0 - tail) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(e: &Estimate) -> bool {
        e.low <= e.value && e.value <= e.high
    }

    #[test]
    fn auc_of_separated_mixed_and_tied_losses() {
        assert_eq!(mia_auc(&[0.1, 0.2], &[0.5, 0.9]), Some(1.0), "members all lower: perfectly separated");
        assert_eq!(mia_auc(&[0.5, 0.9], &[0.1, 0.2]), Some(0.0));
        assert_eq!(mia_auc(&[0.3, 0.3], &[0.3]), Some(0.5), "ties count half");
        // Pairs: (0.1 < 0.2) 1, (0.1 < 0.4) 1, (0.3 > 0.2) 0, (0.3 < 0.4) 1, (0.2 = 0.2) ½, (0.2 < 0.4) 1 → 4.5/6.
        assert_eq!(mia_auc(&[0.1, 0.3, 0.2], &[0.2, 0.4]), Some(0.75));
        assert_eq!(mia_auc(&[], &[1.0]), None);
    }

    #[test]
    fn the_auc_matches_counting_pairs() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Coarse values, so ties happen.
        let mut draw = |n| (0..n).map(|_| f64::from(rng.random_range(0..20u8)) / 4.0).collect::<Vec<_>>();
        let (m, n) = (draw(37), draw(23));
        let mut pairs = 0.0;
        for a in &m {
            for b in &n {
                pairs += if a < b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let expected = pairs / (m.len() * n.len()) as f64;
        assert!((mia_auc(&m, &n).unwrap() - expected).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_intervals_are_seeded_and_cover_the_estimate() {
        let members: Vec<f64> = (0..60).map(|i| f64::from(i) / 30.0).collect();
        let non_members: Vec<f64> = (0..50).map(|i| 0.5 + f64::from(i) / 25.0).collect();
        let boot = Bootstrap { resamples: 1000, seed: 1 };
        let auc = boot.auc(&members, &non_members).unwrap();
        assert_eq!(auc, boot.auc(&members, &non_members).unwrap(), "same seed, same interval");
        assert!(covers(&auc) && auc.low < auc.high && auc.low >= 0.0 && auc.high <= 1.0, "{auc:?}");
        assert!(auc.value > 0.5 && auc.low > 0.5, "members have clearly lower losses: {auc:?}");
        let m = boot.mean(&members).unwrap();
        assert!(covers(&m) && (m.value - mean(&members)).abs() < 1e-12, "{m:?}");
        assert_eq!(
            Bootstrap { resamples: 0, seed: 0 }.mean(&[2.0]).unwrap(),
            Estimate { value: 2.0, low: 2.0, high: 2.0 }
        );
    }
}
