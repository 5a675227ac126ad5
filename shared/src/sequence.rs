//! Slice sequences: the orders in which a shard's slices feed its layer groups.
//!
//! A sequence σ is a permutation of the slices `0..L`. Group k (1 = top) of sequence σ is trained on σ₁..σₖ, so a
//! deletion in slice s invalidates the groups from s's position onwards. A shard trains a budget of B sequences:
//! - [`cyclic`]: the paper's cyclic rotation (uniform deletion prior),
//! - [`bms`]: bipartite matching selection (non-uniform prior),
//! - [`random`]: B distinct random permutations (a baseline),
//! - [`full`]: all L! permutations (small L only).

use std::collections::HashSet;
use std::fmt;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::assignment::Weights;
use crate::prior::Prior;

/// Largest L for which [`full`] enumerates all L! permutations (8! = 40,320).
pub const MAX_FULL_SLICES: u16 = 8;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SequenceError {
    #[error("the number of slices L must be at least 1")]
    ZeroSlices,
    #[error("the budget B must be at least 1")]
    ZeroBudget,
    #[error("budget B = {budget} exceeds L! = {max} distinct sequences of L = {slices} slices")]
    BudgetTooLarge { budget: usize, slices: u16, max: String },
    #[error("the full strategy enumerates L! sequences and supports L ≤ {MAX_FULL_SLICES}, got L = {0}")]
    FullTooLarge(u16),
    #[error("{0:?} is not a permutation of 0..{1}")]
    NotAPermutation(Vec<u16>, usize),
    #[error("the prior has {found} entries but there are {expected} slices")]
    PriorLength { expected: usize, found: usize },
    #[error("the full strategy trains all L! = {total} sequences, so B must be {total}, got {budget}")]
    FullBudget { budget: usize, total: usize },
    #[error("budget B = {0} is more sequences than this tool trains or simulates (at most {MAX_BUDGET})")]
    BudgetTooMany(usize),
}

/// Largest budget accepted: far beyond any useful configuration, small enough to allocate.
pub const MAX_BUDGET: usize = 1_000_000;

/// A permutation of the slices `0..L`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Vec<u16>", into = "Vec<u16>")]
pub struct Sequence(Vec<u16>);

impl Sequence {
    pub fn new(slices: Vec<u16>) -> Result<Self, SequenceError> {
        let n = slices.len();
        let mut seen = vec![false; n];
        for &s in &slices {
            let s = usize::from(s);
            if s >= n || seen[s] {
                return Err(SequenceError::NotAPermutation(slices, n));
            }
            seen[s] = true;
        }
        Ok(Self(slices))
    }

    /// The identity order `0, 1, …, L−1`.
    pub fn identity(slices: u16) -> Self {
        Self((0..slices).collect())
    }

    pub fn slices(&self) -> &[u16] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first k slices: the lineage of group k.
    pub fn prefix(&self, k: usize) -> &[u16] {
        &self.0[..k]
    }

    /// Position (0-based) of a slice in the sequence: the number of groups that survive a deletion in it.
    pub fn position_of(&self, slice: u16) -> usize {
        self.0.iter().position(|&s| s == slice).expect("a sequence is a permutation of all slices")
    }

    /// `positions()[slice]` = position of that slice.
    pub fn positions(&self) -> Vec<u16> {
        let mut pos = vec![0u16; self.0.len()];
        for (i, &s) in self.0.iter().enumerate() {
            pos[usize::from(s)] = i as u16;
        }
        pos
    }
}

impl TryFrom<Vec<u16>> for Sequence {
    type Error = SequenceError;
    fn try_from(v: Vec<u16>) -> Result<Self, SequenceError> {
        Sequence::new(v)
    }
}

impl From<Sequence> for Vec<u16> {
    fn from(s: Sequence) -> Vec<u16> {
        s.0
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u16::to_string).collect();
        write!(f, "({})", parts.join(" "))
    }
}

/// How a shard's B sequences are chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Strategy {
    /// Cyclic rotation (uniform prior).
    Cyclic,
    /// Bipartite matching selection for a per-slice deletion prior.
    Bms { prior: Prior },
    /// B distinct random permutations; each shard derives its own seed from this one.
    Random { seed: u64 },
    /// All L! permutations (B must equal L!).
    Full,
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Cyclic => "cyclic",
            Strategy::Bms { .. } => "bms",
            Strategy::Random { .. } => "random",
            Strategy::Full => "full",
        }
    }

    /// The sequences of one shard. Only `Random` differs between shards (seed mixed with the shard index).
    pub fn sequences(&self, slices: u16, budget: usize, shard: u16) -> Result<Vec<Sequence>, SequenceError> {
        match self {
            Strategy::Cyclic => cyclic(slices, budget),
            Strategy::Bms { prior } => {
                if prior.len() != usize::from(slices) {
                    return Err(SequenceError::PriorLength { expected: usize::from(slices), found: prior.len() });
                }
                bms(prior, budget)
            }
            Strategy::Random { seed } => random(slices, budget, shard_seed(*seed, shard)),
            Strategy::Full => {
                let all = full(slices)?;
                if budget != all.len() {
                    return Err(SequenceError::FullBudget { budget, total: all.len() });
                }
                Ok(all)
            }
        }
    }
}

/// Per-shard seed for the random strategy (SplitMix64 finaliser of seed and shard, so shards are independent).
pub fn shard_seed(seed: u64, shard: u16) -> u64 {
    let mut z = seed ^ (u64::from(shard).wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// L! if it fits in u128 (L ≤ 34), else `None` (larger than any budget we can store).
pub fn factorial(slices: u16) -> Option<u128> {
    (1..=u128::from(slices)).try_fold(1u128, |acc, k| acc.checked_mul(k))
}

/// Checks 1 ≤ L and 1 ≤ B ≤ L!.
pub fn check_budget(slices: u16, budget: usize) -> Result<(), SequenceError> {
    if slices == 0 {
        return Err(SequenceError::ZeroSlices);
    }
    if budget == 0 {
        return Err(SequenceError::ZeroBudget);
    }
    if budget > MAX_BUDGET {
        return Err(SequenceError::BudgetTooMany(budget));
    }
    if let Some(max) = factorial(slices)
        && (budget as u128) > max
    {
        return Err(SequenceError::BudgetTooLarge { budget, slices, max: max.to_string() });
    }
    Ok(())
}

/// The paper's cyclic rotation.
///
/// B ≤ L: the first B left-rotations of `0..L`, so every sequence starts with a different slice (and B = L gives a
/// Latin square). B > L: level by level, the suffix after position d (d = 1, 2, …) of every sequence of the previous
/// level is rotated by 1, 2, …; rotations are taken rotation-major so that consecutive additions spread over
/// different prefixes. Level d holds all L!/(L−d)! sequences with distinct d-prefixes, so any B ≤ L! is reached.
pub fn cyclic(slices: u16, budget: usize) -> Result<Vec<Sequence>, SequenceError> {
    check_budget(slices, budget)?;
    let l = usize::from(slices);
    let identity: Vec<u16> = (0..slices).collect();
    let mut level: Vec<Vec<u16>> = (0..l)
        .map(|r| {
            let mut s = identity.clone();
            s.rotate_left(r);
            s
        })
        .collect();
    let mut out: Vec<Vec<u16>> = level.iter().take(budget).cloned().collect();
    let mut depth = 1;
    while out.len() < budget && depth + 1 < l {
        let suffix_len = l - depth;
        let mut next = level.clone();
        'rotations: for r in 1..suffix_len {
            for base in &level {
                let mut s = base.clone();
                s[depth..].rotate_left(r);
                out.push(s.clone());
                next.push(s);
                if out.len() == budget {
                    break 'rotations;
                }
            }
        }
        level = next;
        depth += 1;
    }
    Ok(out.into_iter().map(Sequence).collect())
}

/// All L! permutations in lexicographic order (L ≤ 8).
pub fn full(slices: u16) -> Result<Vec<Sequence>, SequenceError> {
    if slices == 0 {
        return Err(SequenceError::ZeroSlices);
    }
    if slices > MAX_FULL_SLICES {
        return Err(SequenceError::FullTooLarge(slices));
    }
    let mut current: Vec<u16> = (0..slices).collect();
    let mut out = vec![Sequence(current.clone())];
    while next_permutation(&mut current) {
        out.push(Sequence(current.clone()));
    }
    Ok(out)
}

fn next_permutation(v: &mut [u16]) -> bool {
    let Some(i) = (1..v.len()).rev().find(|&i| v[i - 1] < v[i]) else {
        return false;
    };
    let j = (i..v.len()).rev().find(|&j| v[j] > v[i - 1]).expect("v[i] > v[i-1] exists");
    v.swap(i - 1, j);
    v[i..].reverse();
    true
}

/// B distinct uniformly random permutations from a seeded ChaCha8 stream (the same on every platform).
pub fn random(slices: u16, budget: usize, seed: u64) -> Result<Vec<Sequence>, SequenceError> {
    check_budget(slices, budget)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Near-exhaustive budgets: shuffle the full list instead of rejection sampling.
    if let Some(total) = factorial(slices)
        && slices <= MAX_FULL_SLICES
        && (budget as u128) * 2 > total
    {
        let mut all = full(slices)?;
        all.shuffle(&mut rng);
        all.truncate(budget);
        return Ok(all);
    }
    let mut seen = HashSet::with_capacity(budget);
    let mut out = Vec::with_capacity(budget);
    let mut s: Vec<u16> = (0..slices).collect();
    while out.len() < budget {
        s.shuffle(&mut rng);
        if seen.insert(s.clone()) {
            out.push(Sequence(s.clone()));
        }
    }
    Ok(out)
}

/// Log-probability floor for a slice that is certain to be hit (p = 1), so weights stay finite.
const LN_FLOOR: f64 = -1.0e4;

/// Bipartite matching selection for a non-uniform deletion prior.
///
/// Slices and positions form a complete bipartite graph. Placing slice j at position k (0-based) adds
/// `(L − k) · ln(1 − p_j)` to a sequence's score: that is the slice's share of `Σₖ ln P(prefix k survives a
/// deletion)`, the log-survival of every prefix, summed in log space so that it never underflows (the reference
/// implementation multiplied probabilities and reached ~1e-23 at t = 100; a horizon t only scales every weight and
/// so does not change the argmax). Each sequence is an exact maximum-weight assignment (Hungarian) over the edges
/// not used yet in the current round; a round of L sequences uses every (slice, position) edge once, so the first
/// L sequences form a Latin square whatever the prior. Later rounds start from the full graph again and skip
/// sequences already chosen (Murty's next-best assignment), so any B ≤ L! gives distinct sequences.
pub fn bms(prior: &Prior, budget: usize) -> Result<Vec<Sequence>, SequenceError> {
    let l = prior.len();
    let slices =
        u16::try_from(l).map_err(|_| SequenceError::PriorLength { expected: usize::from(u16::MAX), found: l })?;
    check_budget(slices, budget)?;
    let weights = Weights::new(l, |slice, position| {
        let survive = (-prior.values()[slice]).ln_1p().max(LN_FLOOR);
        (l - position) as f64 * survive
    });
    let mut round = weights.clone();
    let mut used_in_round = 0usize;
    let mut chosen: HashSet<Vec<usize>> = HashSet::with_capacity(budget);
    let mut out = Vec::with_capacity(budget);
    while out.len() < budget {
        if used_in_round == l {
            round.allow_all();
            used_in_round = 0;
        }
        // A (L − t)-regular bipartite graph always has a perfect matching (König), but all of them may be taken
        // already in later rounds; then the whole graph is searched.
        let cols = match round.best_excluding(&chosen) {
            Some(cols) => cols,
            None => weights.best_excluding(&chosen).expect("B ≤ L! leaves an unused permutation"),
        };
        for (slice, &position) in cols.iter().enumerate() {
            round.forbid(slice, position);
        }
        used_in_round += 1;
        let mut seq = vec![0u16; l];
        for (slice, &position) in cols.iter().enumerate() {
            seq[position] = slice as u16;
        }
        chosen.insert(cols);
        out.push(Sequence(seq));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_distinct(seqs: &[Sequence]) {
        let set: HashSet<&Sequence> = seqs.iter().collect();
        assert_eq!(set.len(), seqs.len(), "sequences repeat: {seqs:?}");
    }

    fn assert_latin_square(seqs: &[Sequence]) {
        let l = seqs.len();
        for position in 0..l {
            let column: HashSet<u16> = seqs.iter().map(|s| s.slices()[position]).collect();
            assert_eq!(column.len(), l, "position {position} repeats a slice in {seqs:?}");
        }
    }

    #[test]
    fn cyclic_small_budget_starts_with_distinct_slices() {
        for l in 1..=9u16 {
            for b in 1..=usize::from(l) {
                let seqs = cyclic(l, b).unwrap();
                assert_eq!(seqs.len(), b);
                let firsts: HashSet<u16> = seqs.iter().map(|s| s.slices()[0]).collect();
                assert_eq!(firsts.len(), b, "L={l} B={b}");
            }
            assert_latin_square(&cyclic(l, usize::from(l)).unwrap());
        }
    }

    #[test]
    fn cyclic_reaches_every_budget_up_to_l_factorial() {
        for l in 1..=6u16 {
            let max = factorial(l).unwrap() as usize;
            for b in 1..=max {
                let seqs = cyclic(l, b).unwrap();
                assert_eq!(seqs.len(), b, "L={l} B={b}");
                assert_distinct(&seqs);
                for s in &seqs {
                    Sequence::new(s.slices().to_vec()).unwrap();
                }
                // Every slice leads some sequence once B ≥ L.
                let firsts: HashSet<u16> = seqs.iter().map(|s| s.slices()[0]).collect();
                assert_eq!(firsts.len(), b.min(usize::from(l)));
            }
            let all: HashSet<Sequence> = cyclic(l, max).unwrap().into_iter().collect();
            let expected: HashSet<Sequence> = full(l).unwrap().into_iter().collect();
            assert_eq!(all, expected);
            assert!(matches!(cyclic(l, max + 1), Err(SequenceError::BudgetTooLarge { .. })));
        }
    }

    #[test]
    fn cyclic_level_two_follows_the_paper() {
        // L = 3, B = 6: rotations, then the 2-suffix of each rotation rotated once.
        let seqs: Vec<Vec<u16>> = cyclic(3, 6).unwrap().into_iter().map(Vec::from).collect();
        assert_eq!(
            seqs,
            vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1], vec![0, 2, 1], vec![1, 0, 2], vec![2, 1, 0]]
        );
    }

    #[test]
    fn invalid_budgets_are_errors() {
        assert_eq!(cyclic(0, 1), Err(SequenceError::ZeroSlices));
        assert_eq!(cyclic(3, 0), Err(SequenceError::ZeroBudget));
        assert!(matches!(random(3, 7, 1), Err(SequenceError::BudgetTooLarge { .. })));
        assert_eq!(full(9), Err(SequenceError::FullTooLarge(9)));
        assert_eq!(Strategy::Full.sequences(3, 5, 0), Err(SequenceError::FullBudget { budget: 5, total: 6 }));
        assert_eq!(cyclic(20, MAX_BUDGET + 1), Err(SequenceError::BudgetTooMany(MAX_BUDGET + 1)));
        let prior = Strategy::Bms { prior: Prior::uniform(3) };
        assert_eq!(prior.sequences(4, 2, 0), Err(SequenceError::PriorLength { expected: 4, found: 3 }));
        // Large L: L! overflows u128, any budget is fine.
        assert_eq!(cyclic(40, 3).unwrap().len(), 3);
    }

    #[test]
    fn full_enumerates_l_factorial() {
        for l in 1..=MAX_FULL_SLICES {
            let seqs = full(l).unwrap();
            assert_eq!(seqs.len() as u128, factorial(l).unwrap());
            assert_distinct(&seqs);
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "lexicographic order");
        }
    }

    #[test]
    fn random_is_distinct_and_seeded() {
        for (l, b) in [(3u16, 6usize), (4, 5), (6, 40), (12, 100)] {
            let a = random(l, b, 7).unwrap();
            assert_distinct(&a);
            assert_eq!(a.len(), b);
            assert_eq!(a, random(l, b, 7).unwrap());
        }
        assert_ne!(random(8, 10, 1).unwrap(), random(8, 10, 2).unwrap());
    }

    #[test]
    fn bms_uniform_prior_gives_a_latin_square() {
        for l in 1..=10u16 {
            let seqs = bms(&Prior::uniform(l), usize::from(l)).unwrap();
            assert_distinct(&seqs);
            assert_latin_square(&seqs);
        }
    }

    #[test]
    fn bms_is_distinct_for_budgets_beyond_l() {
        for l in 2..=5u16 {
            let max = factorial(l).unwrap() as usize;
            for prior in [Prior::uniform(l), skewed(l)] {
                let seqs = bms(&prior, max).unwrap();
                assert_eq!(seqs.len(), max);
                assert_distinct(&seqs);
            }
        }
    }

    #[test]
    fn bms_puts_unlikely_slices_first() {
        let prior = Prior::new(vec![0.5, 0.05, 0.3, 0.15]).unwrap();
        let seqs = bms(&prior, 1).unwrap();
        assert_eq!(seqs[0].slices(), &[1, 3, 2, 0]);
    }

    #[test]
    fn bms_weights_do_not_underflow() {
        // A prior with a near-certain slice and a large L: log-space weights stay finite and ordered.
        let l = 64u16;
        let mut values = vec![1e-9; usize::from(l)];
        values[0] = 1.0 - 1e-9 * f64::from(l - 1);
        let prior = Prior::new(values).unwrap();
        let seqs = bms(&prior, 3).unwrap();
        assert_eq!(seqs[0].slices()[63], 0, "the near-certain slice goes last");
        assert_distinct(&seqs);
    }

    pub(crate) fn skewed(l: u16) -> Prior {
        let raw: Vec<f64> = (0..l).map(|j| 0.5f64.powi(i32::from(j))).collect();
        let sum: f64 = raw.iter().sum();
        Prior::new(raw.into_iter().map(|v| v / sum).collect()).unwrap()
    }

    #[test]
    fn sequence_validation_and_serde() {
        assert!(Sequence::new(vec![1, 0, 2]).is_ok());
        assert!(Sequence::new(vec![1, 1, 2]).is_err());
        assert!(Sequence::new(vec![0, 3]).is_err());
        let s: Sequence = serde_json::from_str("[2,0,1]").unwrap();
        assert_eq!(s.positions(), vec![1, 2, 0]);
        assert!(serde_json::from_str::<Sequence>("[2,2,1]").is_err());
    }
}
