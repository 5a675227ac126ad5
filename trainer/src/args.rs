//! Arguments shared by several subcommands, and their validation.
//!
//! Everything here is checked before any work starts, so a bad value gives one `error:` line naming the flag
//! instead of a panic or an error from deep inside the core crate.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::ValueEnum;
use s3t::sequence::{self, MAX_FULL_SLICES, factorial};
use s3t::{Prior, Strategy};

/// Most budgets one `--budgets` list may expand to: a typo such as `1..1000000000` should fail, not allocate.
pub const MAX_BUDGETS: usize = 10_000;

/// How each shard chooses its B sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Cyclic rotation, the paper's choice for a uniform deletion prior.
    Cyclic,
    /// Bipartite matching selection: the best sequences for the deletion prior given by --prior.
    Bms,
    /// B distinct random permutations per shard (a baseline), seeded by --seed.
    Random,
    /// All L! permutations (L ≤ 8, and the budget must be L!).
    Full,
}

impl StrategyArg {
    pub fn name(self) -> &'static str {
        match self {
            StrategyArg::Cyclic => "cyclic",
            StrategyArg::Bms => "bms",
            StrategyArg::Random => "random",
            StrategyArg::Full => "full",
        }
    }

    pub fn build(self, prior: &Prior, seed: u64) -> Strategy {
        match self {
            StrategyArg::Cyclic => Strategy::Cyclic,
            StrategyArg::Bms => Strategy::Bms { prior: prior.clone() },
            StrategyArg::Random => Strategy::Random { seed },
            StrategyArg::Full => Strategy::Full,
        }
    }
}

/// The shape of an S3T deployment: shards, slices, how sequences are chosen, and the deletion prior.
#[derive(Debug, clap::Args)]
pub struct Layout {
    /// Number of shards m: disjoint parts of the training data, each with its own model.
    #[arg(long, value_name = "M", default_value_t = 5)]
    pub shards: u16,

    /// Number of slices L per shard; a shard's model has one layer group per slice.
    #[arg(long, value_name = "L", default_value_t = 6)]
    pub slices: u16,

    /// How each shard chooses its sequences (slice orders).
    #[arg(long, value_enum, default_value_t = StrategyArg::Cyclic)]
    pub strategy: StrategyArg,

    /// Deletion prior: a JSON file holding an array of L non-negative numbers summing to 1, the probability that a
    /// deletion falls into each slice. It drives `--strategy bms`; `simulate` also draws its deletions from it.
    /// Default: uniform.
    #[arg(long, value_name = "FILE")]
    pub prior: Option<PathBuf>,
}

impl Layout {
    /// Checks m ≥ 1 and L ≥ 1.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.shards >= 1, "--shards must be at least 1, got {}", self.shards);
        ensure!(self.slices >= 1, "--slices must be at least 1, got {}", self.slices);
        Ok(())
    }

    /// Reads `--prior`, if given, and checks it has one probability per slice and sums to 1.
    pub fn load_prior(&self) -> Result<Option<Prior>> {
        let Some(path) = &self.prior else { return Ok(None) };
        let text = fs::read_to_string(path).with_context(|| format!("reading prior file {}", path.display()))?;
        let prior = Prior::from_json(&text, self.slices).with_context(|| format!("prior file {}", path.display()))?;
        Ok(Some(prior))
    }

    /// The budget used when none is given: one sequence per slice (L! for the full strategy; past its L ≤ 8 limit
    /// there is none, and `check_budget` says why).
    pub fn default_budget(&self) -> usize {
        match self.strategy {
            StrategyArg::Full => full_budget(self.slices).unwrap_or(usize::MAX),
            _ => usize::from(self.slices),
        }
    }

    /// Checks 1 ≤ B ≤ L!, and B = L! for the full strategy.
    pub fn check_budget(&self, budget: usize) -> Result<()> {
        if self.strategy == StrategyArg::Full {
            let Some(all) = full_budget(self.slices) else {
                bail!(
                    "--strategy full enumerates all L! sequences and supports L ≤ {MAX_FULL_SLICES}, got --slices {}",
                    self.slices
                );
            };
            ensure!(budget == all, "--strategy full trains all L! = {all} sequences, so B must be {all}, got {budget}");
        }
        Ok(sequence::check_budget(self.slices, budget)?)
    }
}

/// L! when the full strategy supports L.
fn full_budget(slices: u16) -> Option<usize> {
    if slices > MAX_FULL_SLICES {
        return None;
    }
    factorial(slices).and_then(|n| usize::try_from(n).ok())
}

/// Parses a budget list: comma-separated numbers and inclusive ranges (`1,2,4`, `1..6`, `1..3,8`; `a..=b` also
/// works). The result is sorted and free of duplicates; values are checked against L by the caller.
pub fn parse_budget_list(text: &str) -> Result<Vec<usize>> {
    let mut budgets = Vec::new();
    for item in text.split(',').map(str::trim) {
        ensure!(!item.is_empty(), "empty entry (use numbers and ranges such as 1..3 separated by commas)");
        let (lo, hi) = match item.split_once("..") {
            Some((lo, hi)) => (parse_number(lo)?, parse_number(hi.strip_prefix('=').unwrap_or(hi))?),
            None => {
                let b = parse_number(item)?;
                (b, b)
            }
        };
        ensure!(lo <= hi, "range {item} is empty: ranges are LO..HI with LO ≤ HI, both included");
        let count = hi - lo + 1;
        ensure!(
            count <= MAX_BUDGETS && budgets.len() + count <= MAX_BUDGETS,
            "the list expands to more than {MAX_BUDGETS} budgets"
        );
        budgets.extend(lo..=hi);
    }
    budgets.sort_unstable();
    budgets.dedup();
    Ok(budgets)
}

fn parse_number(text: &str) -> Result<usize> {
    let text = text.trim();
    text.parse().with_context(|| format!("{text:?} is not a non-negative whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_lists() {
        assert_eq!(parse_budget_list("1,2,4").unwrap(), vec![1, 2, 4]);
        assert_eq!(parse_budget_list("1..6").unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(parse_budget_list("8, 1..3").unwrap(), vec![1, 2, 3, 8]);
        assert_eq!(parse_budget_list("2..=3,3").unwrap(), vec![2, 3]);
        assert_eq!(parse_budget_list("0").unwrap(), vec![0]);
        for bad in ["", "1,,2", "a", "3..1", "1..", "..4", "1..2..3", "-1", "1..100000", "1.5"] {
            assert!(parse_budget_list(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
