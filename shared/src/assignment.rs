//! Exact maximum-weight perfect assignment (Hungarian algorithm with potentials, O(n³)) and the best assignment
//! that avoids a set of already-taken ones (Murty's partitioning). Bipartite matching selection builds on it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

/// Square weight matrix with forbidden edges. Row = slice, column = position.
#[derive(Clone, Debug)]
pub struct Weights {
    n: usize,
    weight: Vec<f64>,
    allowed: Vec<bool>,
}

impl Weights {
    /// All edges allowed; `weight(row, col)` gives each edge's weight.
    pub fn new(n: usize, weight: impl Fn(usize, usize) -> f64) -> Self {
        let mut w = Vec::with_capacity(n * n);
        for r in 0..n {
            for c in 0..n {
                w.push(weight(r, c));
            }
        }
        Self { n, weight: w, allowed: vec![true; n * n] }
    }

    pub fn size(&self) -> usize {
        self.n
    }

    pub fn weight(&self, row: usize, col: usize) -> f64 {
        self.weight[row * self.n + col]
    }

    pub fn is_allowed(&self, row: usize, col: usize) -> bool {
        self.allowed[row * self.n + col]
    }

    pub fn forbid(&mut self, row: usize, col: usize) {
        self.allowed[row * self.n + col] = false;
    }

    pub fn allow_all(&mut self) {
        self.allowed.fill(true);
    }

    /// Keeps only edge (row, col) for that row and that column.
    fn force(&mut self, row: usize, col: usize) {
        for c in 0..self.n {
            if c != col {
                self.forbid(row, c);
            }
        }
        for r in 0..self.n {
            if r != row {
                self.forbid(r, col);
            }
        }
    }

    /// Total weight of an assignment (`cols[row]`).
    pub fn total(&self, cols: &[usize]) -> f64 {
        cols.iter().enumerate().map(|(r, &c)| self.weight(r, c)).sum()
    }

    /// A maximum-weight perfect assignment using allowed edges only: `result[row] = column`. `None` when no perfect
    /// assignment over the allowed edges exists.
    pub fn max_assignment(&self) -> Option<Vec<usize>> {
        // Minimise cost = -weight; 1-based arrays as in the classic potentials formulation.
        let n = self.n;
        if n == 0 {
            return Some(Vec::new());
        }
        let cost = |r: usize, c: usize| -self.weight(r, c);
        let mut u = vec![0.0f64; n + 1];
        let mut v = vec![0.0f64; n + 1];
        let mut p = vec![0usize; n + 1]; // p[col] = row matched to col (1-based), 0 = none
        let mut way = vec![0usize; n + 1];
        for i in 1..=n {
            p[0] = i;
            let mut j0 = 0usize;
            let mut minv = vec![f64::INFINITY; n + 1];
            let mut used = vec![false; n + 1];
            loop {
                used[j0] = true;
                let i0 = p[j0];
                let mut delta = f64::INFINITY;
                let mut j1 = 0usize;
                for j in 1..=n {
                    if used[j] {
                        continue;
                    }
                    if self.is_allowed(i0 - 1, j - 1) {
                        let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                        if cur < minv[j] {
                            minv[j] = cur;
                            way[j] = j0;
                        }
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
                if !delta.is_finite() {
                    return None;
                }
                for j in 0..=n {
                    if used[j] {
                        u[p[j]] += delta;
                        v[j] -= delta;
                    } else {
                        minv[j] -= delta;
                    }
                }
                j0 = j1;
                if p[j0] == 0 {
                    break;
                }
            }
            loop {
                let j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
                if j0 == 0 {
                    break;
                }
            }
        }
        let mut result = vec![0usize; n];
        for j in 1..=n {
            result[p[j] - 1] = j - 1;
        }
        Some(result)
    }

    /// The maximum-weight assignment over allowed edges that is not in `exclude`, by Murty's partitioning of the
    /// solution space (exact: solutions are visited in non-increasing weight).
    pub fn best_excluding(&self, exclude: &HashSet<Vec<usize>>) -> Option<Vec<usize>> {
        let first = self.max_assignment()?;
        let mut heap = BinaryHeap::new();
        heap.push(Candidate { score: self.total(&first), cols: first, space: self.clone(), fixed: 0 });
        while let Some(Candidate { cols, space, fixed, .. }) = heap.pop() {
            if !exclude.contains(&cols) {
                return Some(cols);
            }
            // Split the remaining space: child i keeps rows < i as in `cols` and forbids (i, cols[i]).
            let mut prefix = space;
            for (row, &col) in cols.iter().enumerate().skip(fixed) {
                let mut child = prefix.clone();
                child.forbid(row, col);
                if let Some(sol) = child.max_assignment() {
                    heap.push(Candidate { score: self.total(&sol), cols: sol, space: child, fixed: row });
                }
                prefix.force(row, col);
            }
        }
        None
    }
}

struct Candidate {
    score: f64,
    cols: Vec<usize>,
    space: Weights,
    fixed: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap on score; ties broken towards the lexicographically smaller assignment for determinism.
        self.score.total_cmp(&other.score).then_with(|| other.cols.cmp(&self.cols))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_force(w: &Weights) -> Option<f64> {
        fn rec(w: &Weights, row: usize, used: &mut Vec<bool>, acc: f64, best: &mut Option<f64>) {
            if row == w.size() {
                *best = Some(best.map_or(acc, |b: f64| b.max(acc)));
                return;
            }
            for c in 0..w.size() {
                if !used[c] && w.is_allowed(row, c) {
                    used[c] = true;
                    rec(w, row + 1, used, acc + w.weight(row, c), best);
                    used[c] = false;
                }
            }
        }
        let mut best = None;
        rec(w, 0, &mut vec![false; w.size()], 0.0, &mut best);
        best
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn hungarian_matches_brute_force(n in 1usize..6, values in prop::collection::vec(-50.0f64..50.0, 36), holes in prop::collection::vec(0usize..36, 0..8)) {
            let mut w = Weights::new(n, |r, c| values[r * 6 + c]);
            for h in holes {
                w.forbid((h / 6) % n, h % n);
            }
            let expected = brute_force(&w);
            let got = w.max_assignment();
            match (expected, got) {
                (None, None) => {}
                (Some(e), Some(cols)) => {
                    let mut seen = cols.clone();
                    seen.sort_unstable();
                    prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
                    for (r, &c) in cols.iter().enumerate() { prop_assert!(w.is_allowed(r, c)); }
                    prop_assert!((w.total(&cols) - e).abs() < 1e-9, "{} vs {}", w.total(&cols), e);
                }
                (e, g) => prop_assert!(false, "feasibility differs: {:?} vs {:?}", e, g),
            }
        }
    }

    #[test]
    fn best_excluding_walks_down_the_ranking() {
        let w = Weights::new(3, |r, c| (r * 3 + c) as f64 * if c == r { 10.0 } else { 1.0 });
        let mut taken = HashSet::new();
        let mut last = f64::INFINITY;
        for _ in 0..6 {
            let cols = w.best_excluding(&taken).expect("3! assignments exist");
            let score = w.total(&cols);
            assert!(score <= last + 1e-12);
            last = score;
            assert!(taken.insert(cols));
        }
        assert_eq!(w.best_excluding(&taken), None);
    }
}
