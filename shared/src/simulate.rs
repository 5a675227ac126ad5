//! Simulate: how many deletions a configuration survives before it must retrain.
//!
//! Deletion model: each request falls into a shard chosen uniformly and a slice drawn from the per-slice prior,
//! independently (slices are large, so repeated hits on one slice are possible and harmless). A shard goes offline
//! when every one of its sequences has lost its first slice.
//!
//! Closed form (uniform prior): a shard is offline once all of its distinct first slices are hit, so the time until
//! every shard is offline is a coupon-collector time over `n = Σ_shards f_s` of the `mL` equally likely cells, with
//! expectation `mL · H(n)`. For cyclic rotation `f_s = min(B, L)`, which gives the paper's `mL · H(m · min(B, L))`.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::prior::Prior;
use crate::sequence::{Sequence, shard_seed};

/// Largest L the Monte Carlo supports (hit sets are 64-bit masks).
pub const MAX_SLICES: usize = 64;

#[derive(Debug, Error, PartialEq)]
pub enum SimulateError {
    #[error("the simulation needs at least one shard")]
    NoShards,
    #[error("shard {0} has no sequences")]
    NoSequences(usize),
    #[error("the Monte Carlo supports at most {MAX_SLICES} slices, got {0}")]
    TooManySlices(usize),
    #[error("shard {shard} has a sequence of {found} slices, expected {expected}")]
    WrongLength { shard: usize, expected: usize, found: usize },
    #[error("the prior has {found} entries but there are {expected} slices")]
    PriorLength { expected: usize, found: usize },
    #[error("the number of runs must be at least 1")]
    ZeroRuns,
    #[error(
        "shard {shard} never goes offline: slice {slice} leads one of its sequences but has deletion probability 0"
    )]
    NeverOffline { shard: usize, slice: u16 },
}

/// The n-th harmonic number H(n) = 1 + 1/2 + … + 1/n (H(0) = 0).
pub fn harmonic(n: u64) -> f64 {
    (1..=n).rev().map(|k| 1.0 / k as f64).sum()
}

/// The paper's closed form for cyclic rotation under a uniform prior: `m · L · H(m · min(B, L))`.
pub fn closed_form(shards: u16, slices: u16, budget: usize) -> f64 {
    let m = f64::from(shards);
    let l = f64::from(slices);
    let covered = u64::from(shards) * (budget.min(usize::from(slices)) as u64);
    m * l * harmonic(covered)
}

/// The closed form for any sequence sets under a uniform prior (`None` for a non-uniform prior).
pub fn closed_form_for(sequences: &[Vec<Sequence>], prior: &Prior) -> Option<f64> {
    if !prior.is_uniform() || sequences.is_empty() {
        return None;
    }
    let l = prior.len() as f64;
    let covered: usize =
        sequences.iter().map(|seqs| seqs.iter().filter_map(|s| s.slices().first()).collect::<HashSet<_>>().len()).sum();
    Some(sequences.len() as f64 * l * harmonic(covered as u64))
}

/// Expected further deletions until every shard is offline, from a serving state, under a uniform prior: each
/// shard still has some leading slices untouched since it was trained (its "coupons"); deletions hit one of the
/// m·L cells uniformly, so the expectation is `m · L · H(n)` with n the coupons left (0 when all are offline).
pub fn expected_deletions_left(plan: &crate::plan::Plan, state: &crate::route::State) -> f64 {
    let m = plan.shards.len() as f64;
    let l = f64::from(plan.slices);
    let left: usize = plan
        .shards
        .iter()
        .enumerate()
        .map(|(s, shard)| {
            let dirty = state.dirty_slices(s as u16);
            let firsts: HashSet<u16> = shard.sequences.iter().filter_map(|q| q.slices().first().copied()).collect();
            firsts.iter().filter(|f| !dirty.contains(f)).count()
        })
        .sum();
    m * l * harmonic(left as u64)
}

/// A Monte Carlo experiment.
#[derive(Clone, Debug)]
pub struct MonteCarlo {
    /// `sequences[shard]` = the sequences that shard trained.
    pub sequences: Vec<Vec<Sequence>>,
    pub prior: Prior,
    pub runs: u32,
    pub seed: u64,
    /// Deletion counts r at which to record the mean served prefix length.
    pub checkpoints: Vec<u64>,
}

/// Mean served prefix length (offline shards count as 0) after `deletions` deletions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrefixPoint {
    pub deletions: u64,
    pub mean_served_prefix: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub runs: u32,
    pub mean_deletions_until_all_offline: f64,
    pub std_deletions_until_all_offline: f64,
    pub mean_deletions_until_first_offline: f64,
    pub std_deletions_until_first_offline: f64,
    pub served_prefix: Vec<PrefixPoint>,
    /// Total deletions drawn over all runs (for throughput figures).
    pub deletions_simulated: u64,
}

/// Running mean and variance (Welford), numerically stable for many runs.
#[derive(Default)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    fn std(&self) -> f64 {
        if self.n > 1.0 { (self.m2 / (self.n - 1.0)).sqrt() } else { 0.0 }
    }
}

/// Precomputed per-shard prefix masks: `masks[b][k]` = set of the first k slices of sequence b.
struct ShardMasks {
    masks: Vec<Vec<u64>>,
}

impl ShardMasks {
    fn new(seqs: &[Sequence]) -> Self {
        let masks = seqs
            .iter()
            .map(|s| {
                let mut acc = 0u64;
                let mut out = vec![0u64];
                for &slice in s.slices() {
                    acc |= 1u64 << slice;
                    out.push(acc);
                }
                out
            })
            .collect();
        Self { masks }
    }

    /// Longest prefix, over all sequences, that contains no hit slice.
    fn served(&self, hit: u64) -> u16 {
        self.masks
            .iter()
            .map(|m| m.iter().rposition(|&prefix| prefix & hit == 0).unwrap_or(0) as u16)
            .max()
            .unwrap_or(0)
    }
}

impl MonteCarlo {
    fn validate(&self) -> Result<usize, SimulateError> {
        if self.sequences.is_empty() {
            return Err(SimulateError::NoShards);
        }
        if self.runs == 0 {
            return Err(SimulateError::ZeroRuns);
        }
        let l = self.prior.len();
        if l > MAX_SLICES {
            return Err(SimulateError::TooManySlices(l));
        }
        for (shard, seqs) in self.sequences.iter().enumerate() {
            if seqs.is_empty() {
                return Err(SimulateError::NoSequences(shard));
            }
            if let Some(s) = seqs.iter().find(|s| s.len() != l) {
                return Err(SimulateError::WrongLength { shard, expected: l, found: s.len() });
            }
            // A run ends only when every shard is offline, which needs every leading slice to be hit.
            if let Some(&slice) =
                seqs.iter().filter_map(|s| s.slices().first()).find(|&&j| self.prior.values()[usize::from(j)] == 0.0)
            {
                return Err(SimulateError::NeverOffline { shard, slice });
            }
        }
        Ok(l)
    }

    pub fn run(&self) -> Result<Report, SimulateError> {
        let l = self.validate()?;
        let m = self.sequences.len();
        let shards: Vec<ShardMasks> = self.sequences.iter().map(|s| ShardMasks::new(s)).collect();
        let full: Vec<u16> = shards.iter().map(|s| s.served(0)).collect();
        let uniform = self.prior.is_uniform();
        let cdf: Vec<f64> = self
            .prior
            .values()
            .iter()
            .scan(0.0, |acc, p| {
                *acc += p;
                Some(*acc)
            })
            .collect();
        let mut checkpoints = self.checkpoints.clone();
        checkpoints.sort_unstable();
        checkpoints.dedup();
        let mut prefix_sums = vec![0.0f64; checkpoints.len()];
        let (mut all, mut first) = (Moments::default(), Moments::default());
        let mut total = 0u64;
        let mut hit = vec![0u64; m];
        let mut served = full.clone();

        for run in 0..self.runs {
            let mut rng = ChaCha8Rng::seed_from_u64(
                shard_seed(self.seed, 0) ^ u64::from(run).wrapping_mul(0xA24B_AED4_963E_E407),
            );
            hit.fill(0);
            served.copy_from_slice(&full);
            let mut live = served.iter().filter(|&&s| s > 0).count();
            let mut served_sum: u64 = served.iter().map(|&s| u64::from(s)).sum();
            let mut first_offline: Option<u64> = (live < m).then_some(0);
            let mut next_cp = 0;
            let mut r = 0u64;
            while next_cp < checkpoints.len() && checkpoints[next_cp] == 0 {
                prefix_sums[next_cp] += served_sum as f64 / m as f64;
                next_cp += 1;
            }
            while live > 0 {
                r += 1;
                let shard = rng.random_range(0..m);
                let slice = if uniform {
                    rng.random_range(0..l)
                } else {
                    let u: f64 = rng.random();
                    cdf.partition_point(|&c| c <= u).min(l - 1)
                };
                let bit = 1u64 << slice;
                if hit[shard] & bit == 0 {
                    hit[shard] |= bit;
                    if served[shard] > 0 {
                        let now = shards[shard].served(hit[shard]);
                        served_sum -= u64::from(served[shard] - now);
                        served[shard] = now;
                        if now == 0 {
                            live -= 1;
                            first_offline.get_or_insert(r);
                        }
                    }
                }
                while next_cp < checkpoints.len() && checkpoints[next_cp] == r {
                    prefix_sums[next_cp] += served_sum as f64 / m as f64;
                    next_cp += 1;
                }
            }
            // Checkpoints past the end see every shard offline (prefix 0): nothing to add.
            total += r;
            all.push(r as f64);
            first.push(first_offline.unwrap_or(r) as f64);
        }
        let runs = f64::from(self.runs);
        Ok(Report {
            runs: self.runs,
            mean_deletions_until_all_offline: all.mean,
            std_deletions_until_all_offline: all.std(),
            mean_deletions_until_first_offline: first.mean,
            std_deletions_until_first_offline: first.std(),
            served_prefix: checkpoints
                .iter()
                .zip(prefix_sums)
                .map(|(&deletions, sum)| PrefixPoint { deletions, mean_served_prefix: sum / runs })
                .collect(),
            deletions_simulated: total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::{bms, cyclic};

    fn uniform_cyclic(m: u16, l: u16, b: usize, runs: u32, seed: u64) -> MonteCarlo {
        let seqs = cyclic(l, b).unwrap();
        MonteCarlo { sequences: vec![seqs; usize::from(m)], prior: Prior::uniform(l), runs, seed, checkpoints: vec![] }
    }

    #[test]
    fn closed_form_matches_the_paper_table() {
        let expected = [68.5, 87.9, 99.5, 107.9, 114.5, 119.8];
        for (b, want) in (1..=6).zip(expected) {
            let got = closed_form(5, 6, b);
            assert!((got - want).abs() < 0.05, "B={b}: {got} vs {want}");
        }
    }

    #[test]
    fn monte_carlo_agrees_with_the_closed_form_within_two_percent() {
        for b in 1..=6 {
            let mc = uniform_cyclic(5, 6, b, 10_000, 42);
            let report = mc.run().unwrap();
            let exact = closed_form(5, 6, b);
            let generic = closed_form_for(&mc.sequences, &mc.prior).unwrap();
            assert!((generic - exact).abs() < 1e-9);
            let rel = (report.mean_deletions_until_all_offline - exact).abs() / exact;
            assert!(rel < 0.02, "B={b}: MC {} vs closed form {exact}", report.mean_deletions_until_all_offline);
            assert!(report.mean_deletions_until_first_offline <= report.mean_deletions_until_all_offline);
        }
    }

    #[test]
    fn capacity_left_starts_at_the_closed_form_and_reaches_zero() {
        use crate::partition::{Partition, PartitionMode};
        use crate::{Action, Plan, Router, SampleId, Strategy};
        let plan = Plan::new(2, 3, 3, &Strategy::Cyclic).unwrap();
        let assignment =
            Partition::new(2, 3, PartitionMode::Balanced).unwrap().assign((0..60).map(SampleId::Int)).unwrap();
        let router = Router::new(assignment, &plan).unwrap();
        let mut state = router.initial();
        assert!((expected_deletions_left(&plan, &state) - closed_form(2, 3, 3)).abs() < 1e-9);
        for id in 0..60 {
            router.apply_in_place(&mut state, &Action::Delete(SampleId::Int(id))).unwrap();
        }
        assert_eq!(expected_deletions_left(&plan, &state), 0.0);
    }

    #[test]
    fn seeded_runs_repeat_exactly() {
        let a = uniform_cyclic(3, 4, 2, 200, 9).run().unwrap();
        let b = uniform_cyclic(3, 4, 2, 200, 9).run().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, uniform_cyclic(3, 4, 2, 200, 10).run().unwrap());
    }

    #[test]
    fn served_prefix_curve_starts_full_and_decays_to_zero() {
        let mut mc = uniform_cyclic(4, 5, 3, 500, 1);
        mc.checkpoints = vec![0, 1, 5, 20, 100, 100_000];
        let report = mc.run().unwrap();
        let curve: Vec<f64> = report.served_prefix.iter().map(|p| p.mean_served_prefix).collect();
        assert_eq!(curve[0], 5.0);
        assert!(curve.windows(2).all(|w| w[0] >= w[1]), "{curve:?}");
        assert_eq!(*curve.last().unwrap(), 0.0);
    }

    #[test]
    fn bms_survives_longer_than_cyclic_under_a_skewed_prior() {
        let prior = Prior::new(vec![0.4, 0.25, 0.15, 0.1, 0.06, 0.04]).unwrap();
        for b in [2, 3, 6] {
            let run = |seqs: Vec<Sequence>| {
                MonteCarlo {
                    sequences: vec![seqs; 4],
                    prior: prior.clone(),
                    runs: 4000,
                    seed: 3,
                    checkpoints: vec![2, 5, 10, 20, 40],
                }
                .run()
                .unwrap()
            };
            let c = run(cyclic(6, b).unwrap());
            let s = run(bms(&prior, b).unwrap());
            for (pc, ps) in c.served_prefix.iter().zip(&s.served_prefix) {
                assert!(
                    ps.mean_served_prefix >= pc.mean_served_prefix - 0.02,
                    "B={b} r={}: bms {} < cyclic {}",
                    pc.deletions,
                    ps.mean_served_prefix,
                    pc.mean_served_prefix
                );
            }
        }
    }

    #[test]
    fn invalid_configs_are_errors() {
        let mut mc = uniform_cyclic(2, 3, 1, 0, 0);
        assert_eq!(mc.run(), Err(SimulateError::ZeroRuns));
        mc.runs = 1;
        mc.prior = Prior::uniform(4);
        assert!(matches!(mc.run(), Err(SimulateError::WrongLength { .. })));
        assert!(closed_form_for(&mc.sequences, &Prior::new(vec![0.5, 0.25, 0.25]).unwrap()).is_none());
        mc.prior = Prior::new(vec![0.0, 0.5, 0.5]).unwrap();
        assert_eq!(mc.run(), Err(SimulateError::NeverOffline { shard: 0, slice: 0 }));
    }
}
