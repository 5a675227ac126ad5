//! Tie-breaking between equally long prefixes: by the router's node scores, never over a longer prefix.

use proptest::prelude::*;

use super::*;
use crate::partition::{Partition, PartitionMode};
use crate::sequence::Strategy;

fn router(shards: u16, slices: u16, budget: usize) -> Router {
    let partition = Partition::new(shards, slices, PartitionMode::Balanced).expect("partition");
    let assignment = partition.assign((0..200u64).map(SampleId::Int)).expect("assignment");
    let plan = Plan::new(shards, slices, budget, &Strategy::Cyclic).expect("plan");
    Router::new(assignment, &plan).expect("router")
}

/// A sample of the given shard and slice.
fn sample_in(router: &Router, shard: u16, slice: u16) -> SampleId {
    (0..200u64)
        .map(SampleId::Int)
        .find(|id| router.assignment().cell(id) == Some(Cell { shard, slice }))
        .expect("every cell holds a sample")
}

#[test]
fn without_scores_the_lowest_index_wins() {
    let router = router(1, 3, 3);
    assert_eq!(router.initial().served(0), Some(Served { sequence: 0, prefix: 3 }));
}

#[test]
fn the_best_scored_node_wins_a_tie_and_equal_scores_keep_the_lowest_index() {
    let best_last = router(1, 3, 3).with_tie_break(|_, b, _| b as f64);
    assert_eq!(best_last.initial().served(0), Some(Served { sequence: 2, prefix: 3 }));
    let equal = router(1, 3, 3).with_tie_break(|_, _, _| 0.5);
    assert_eq!(equal.initial().served(0), Some(Served { sequence: 0, prefix: 3 }));
}

#[test]
fn a_score_never_beats_a_longer_prefix() {
    // Sequence 0 (slices 0,1,2) scores best at every length; a deletion in slice 0 cuts it to nothing.
    let router = router(1, 3, 3).with_tie_break(|_, b, _| if b == 0 { 1.0 } else { 0.0 });
    let (state, _) = router.apply(&router.initial(), &Action::Delete(sample_in(&router, 0, 0))).expect("delete");
    // Cyclic sequences: 1 = (1,2,0) keeps 2 groups, 2 = (2,0,1) keeps 1.
    assert_eq!(state.served(0), Some(Served { sequence: 1, prefix: 2 }));
}

proptest! {
    /// For any scores and deletions: the served prefix is the longest active one, and among those the best scored
    /// (lowest index on equal scores).
    #[test]
    fn served_is_the_best_scored_longest_prefix(
        scores in proptest::collection::vec(0u8..4, 2 * 4 * 4),
        deletions in proptest::collection::vec(0u64..200, 0..6),
    ) {
        let score = |shard: u16, b: usize, k: u16| f64::from(scores[usize::from(shard) * 16 + b * 4 + usize::from(k) - 1]);
        let router = router(2, 4, 4).with_tie_break(score);
        let mut state = router.initial();
        for id in deletions {
            router.apply_in_place(&mut state, &Action::Delete(SampleId::Int(id))).expect("known id");
        }
        for shard in 0..2 {
            let active = state.active(shard);
            let longest = active.iter().copied().max().unwrap_or(0);
            let expected = (longest > 0).then(|| {
                let best = (0..active.len())
                    .filter(|&b| active[b] == longest)
                    .max_by(|&a, &b| score(shard, a, longest).total_cmp(&score(shard, b, longest)).then(b.cmp(&a)))
                    .expect("a longest sequence");
                Served { sequence: best, prefix: longest }
            });
            prop_assert_eq!(state.served(shard), expected);
        }
    }
}
