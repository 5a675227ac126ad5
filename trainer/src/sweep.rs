//! A budget sweep: for each budget, the shards' sequences, the closed form and the Monte Carlo estimate.

use anyhow::{Context, Result, ensure};
use s3t::simulate::{MonteCarlo, Report, closed_form_for};
use s3t::{Prior, Sequence, Strategy};

/// Points on the served-prefix curve, r = 0 included.
pub const CURVE_POINTS: usize = 41;
/// The curve runs to this multiple of the expected number of deletions until every shard is offline.
const CURVE_SPAN: f64 = 1.2;
/// Most deletions (expected, over all runs) a simulation may need: about an hour of Monte Carlo.
const MAX_DELETIONS: f64 = 1e11;
/// Runs of the pilot Monte Carlo that sizes the curve when no closed form applies.
const PILOT_RUNS: u32 = 500;

/// `design[shard]` = the sequences that shard trains.
pub type Design = Vec<Vec<Sequence>>;

/// One configuration, evaluated at several budgets.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub shards: u16,
    pub slices: u16,
    pub strategy: Strategy,
    /// The deletion prior the Monte Carlo draws slices from.
    pub prior: Prior,
    pub runs: u32,
    pub seed: u64,
}

impl Sweep {
    /// Every shard's sequences at budget B.
    pub fn design(&self, budget: usize) -> Result<Design> {
        (0..self.shards)
            .map(|shard| {
                self.strategy
                    .sequences(self.slices, budget, shard)
                    .with_context(|| format!("choosing the sequences of shard {shard} for B = {budget}"))
            })
            .collect()
    }

    /// SISA, the baseline S3T improves on: one model per shard, trained in the identity order.
    pub fn sisa(&self) -> Design {
        vec![vec![Sequence::identity(self.slices)]; usize::from(self.shards)]
    }

    /// Checks that the Monte Carlo, which deletes until every shard is offline, ends in reasonable time. A shard
    /// goes offline only once each slice leading one of its sequences is hit, which takes m/p deletions on average
    /// for a slice of probability p: p = 0 never ends, and a tiny p runs for hours.
    pub fn check_terminates(&self, design: &Design) -> Result<()> {
        let mut rarest: Option<(f64, u16)> = None;
        for (shard, sequences) in design.iter().enumerate() {
            for (b, sequence) in sequences.iter().enumerate() {
                let Some(&first) = sequence.slices().first() else { continue };
                let p = self.prior.values().get(usize::from(first)).copied().unwrap_or(0.0);
                ensure!(
                    p > 0.0,
                    "slice {first} has deletion probability 0, yet it leads sequence {b} of shard {shard}: that \
                     shard would never go offline, so the simulation would not end"
                );
                if rarest.is_none_or(|(q, _)| p < q) {
                    rarest = Some((p, first));
                }
            }
        }
        if let Some((p, slice)) = rarest {
            let per_run = f64::from(self.shards) / p;
            ensure!(
                per_run * f64::from(self.runs) <= MAX_DELETIONS,
                "slice {slice} has deletion probability {p:e} and leads a sequence, so one run needs about \
                 {per_run:.1e} deletions and {} runs would not finish (limit {MAX_DELETIONS:.0e} deletions in all): \
                 lower --runs or check the prior",
                self.runs
            );
        }
        Ok(())
    }

    /// Expected deletions until every shard is offline: the closed form where one applies, else a short pilot run.
    pub fn horizon(&self, design: &Design) -> Result<f64> {
        if let Some(exact) = closed_form_for(design, &self.prior) {
            return Ok(exact);
        }
        let pilot = Sweep { runs: self.runs.min(PILOT_RUNS), ..self.clone() };
        Ok(pilot.simulate(design, &[])?.mean_deletions_until_all_offline)
    }

    pub fn closed_form(&self, design: &Design) -> Option<f64> {
        closed_form_for(design, &self.prior)
    }

    pub fn simulate(&self, design: &Design, checkpoints: &[u64]) -> Result<Report> {
        let mc = MonteCarlo {
            sequences: design.clone(),
            prior: self.prior.clone(),
            runs: self.runs,
            seed: self.seed,
            checkpoints: checkpoints.to_vec(),
        };
        Ok(mc.run()?)
    }
}

/// Deletion counts at which to sample the served-prefix curve: evenly spaced from 0 to `CURVE_SPAN × horizon`.
pub fn checkpoint_grid(horizon: f64) -> Vec<u64> {
    let end = (horizon * CURVE_SPAN).ceil().max(1.0);
    let steps = (CURVE_POINTS - 1) as f64;
    let mut grid: Vec<u64> = (0..CURVE_POINTS).map(|k| (end * k as f64 / steps).round() as u64).collect();
    grid.dedup();
    grid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_spans_past_the_horizon() {
        let grid = checkpoint_grid(100.0);
        assert_eq!(grid.len(), CURVE_POINTS);
        assert_eq!((grid[0], grid[CURVE_POINTS - 1]), (0, 120));
        // Short horizons give fewer, distinct points.
        assert_eq!(checkpoint_grid(0.5), vec![0, 1]);
    }

    #[test]
    fn zero_probability_leaders_are_rejected() {
        let sweep = Sweep {
            shards: 2,
            slices: 3,
            strategy: Strategy::Cyclic,
            prior: Prior::new(vec![0.0, 0.5, 0.5]).unwrap(),
            runs: 10,
            seed: 0,
        };
        assert!(sweep.check_terminates(&sweep.design(1).unwrap()).is_err());
        let later = vec![vec![Sequence::new(vec![1, 0, 2]).unwrap()]; 2];
        assert!(sweep.check_terminates(&later).is_ok());
        let rare = Sweep { prior: Prior::new(vec![1e-12, 0.5, 0.5 - 1e-12]).unwrap(), ..sweep };
        assert!(rare.check_terminates(&rare.design(1).unwrap()).is_err());
    }
}
