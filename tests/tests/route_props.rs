//! Property tests of the route reducer against a brute-force reference model, over random configurations,
//! strategies and deletion/retrain streams (4 properties × 2,500 cases = 10,000 cases), plus
//! a replay through a real ledger file.

use proptest::prelude::*;
use s3t::Ledger;
use s3t::partition::{Partition, PartitionMode};
use s3t::route::RouteError;
use s3t::{Action, Event, Plan, Prior, Router, SampleId, State, Strategy as SequenceStrategy};

#[derive(Clone, Debug)]
struct Config {
    shards: u16,
    slices: u16,
    budget: usize,
    strategy: SequenceStrategy,
    samples: u64,
    mode: PartitionMode,
}

fn factorial(n: u16) -> usize {
    (1..=usize::from(n)).product()
}

fn config() -> impl Strategy<Value = Config> {
    (1u16..=5, 1u16..=7, 0u8..4, any::<u64>(), 0u64..80, any::<bool>(), 1usize..=12).prop_flat_map(
        |(shards, slices, kind, seed, samples, balanced, budget_hint)| {
            let max_budget = factorial(slices).min(12);
            let budget = budget_hint.min(max_budget);
            let mode = if balanced { PartitionMode::Balanced } else { PartitionMode::Hash };
            prop::collection::vec(0.01f64..1.0, usize::from(slices)).prop_map(move |weights| {
                let sum: f64 = weights.iter().sum();
                let prior = Prior::new(weights.iter().map(|w| w / sum).collect()).expect("normalised prior");
                let (strategy, budget) = match kind {
                    0 => (SequenceStrategy::Cyclic, budget),
                    1 => (SequenceStrategy::Random { seed }, budget),
                    2 => (SequenceStrategy::Bms { prior }, budget),
                    _ if slices <= 4 => (SequenceStrategy::Full, factorial(slices)),
                    _ => (SequenceStrategy::Cyclic, budget),
                };
                Config { shards, slices, budget, strategy, samples, mode }
            })
        },
    )
}

#[derive(Clone, Debug)]
enum Op {
    Delete(u64),
    DeleteString(u8),
    Retrain(u16),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            8 => (0u64..90).prop_map(Op::Delete),
            1 => (0u8..6).prop_map(Op::DeleteString),
            1 => (0u16..6).prop_map(Op::Retrain),
        ],
        0..60,
    )
}

fn ids(config: &Config) -> Vec<SampleId> {
    // Integer ids plus a few string ids, so both kinds route.
    let mut ids: Vec<SampleId> = (0..config.samples).map(SampleId::Int).collect();
    ids.extend((0..3).map(|i| SampleId::Str(format!("doc-{i}"))));
    ids
}

fn setup(config: &Config) -> (Router, Plan) {
    let partition = Partition::new(config.shards, config.slices, config.mode).expect("valid partition");
    let assignment = partition.assign(ids(config)).expect("unique ids");
    let plan = Plan::new(config.shards, config.slices, config.budget, &config.strategy).expect("valid plan");
    (Router::new(assignment, &plan).expect("matching plan"), plan)
}

fn action(op: &Op) -> Action {
    match op {
        Op::Delete(i) => Action::Delete(SampleId::Int(*i)),
        Op::DeleteString(i) => Action::Delete(SampleId::Str(format!("doc-{i}"))),
        Op::Retrain(s) => Action::Retrained { shard: *s },
    }
}

/// Reference model: the slices of each shard that lost a sample since its last retrain.
struct Reference {
    dirty: Vec<Vec<bool>>,
}

impl Reference {
    /// Longest prefix of each sequence that contains no dirty slice.
    fn active(&self, plan: &Plan, shard: u16) -> Vec<u16> {
        let dirty = &self.dirty[usize::from(shard)];
        plan.shards[usize::from(shard)]
            .sequences
            .iter()
            .map(|seq| seq.slices().iter().take_while(|&&s| !dirty[usize::from(s)]).count() as u16)
            .collect()
    }
}

fn check_against_reference(plan: &Plan, state: &State, reference: &Reference) -> Result<(), TestCaseError> {
    for shard in 0..state.shards() {
        let expected = reference.active(plan, shard);
        prop_assert_eq!(state.active(shard), &expected[..], "shard {}", shard);
        let best = expected.iter().copied().max().unwrap_or(0);
        match state.served(shard) {
            None => prop_assert_eq!(best, 0, "shard {} offline with an active prefix", shard),
            Some(served) => {
                prop_assert_eq!(served.prefix, best);
                // Lowest index among the longest: deterministic tie-break.
                prop_assert_eq!(Some(served.sequence), expected.iter().position(|&a| a == best));
                // Exactness: no slice of the served lineage holds a sample deleted since the last retrain.
                let seq = &plan.shards[usize::from(shard)].sequences[served.sequence];
                for &slice in seq.prefix(usize::from(served.prefix)) {
                    prop_assert!(!reference.dirty[usize::from(shard)][usize::from(slice)]);
                }
            }
        }
        prop_assert_eq!(
            state.dirty_slices(shard).len(),
            reference.dirty[usize::from(shard)].iter().filter(|d| **d).count()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_500))]

    /// Served components never contain a deleted sample's slice, and the reducer matches the reference exactly.
    #[test]
    fn served_lineages_never_contain_deleted_samples((config, ops) in (config(), ops())) {
        let (router, plan) = setup(&config);
        let mut state = router.initial();
        let mut reference = Reference { dirty: vec![vec![false; usize::from(config.slices)]; usize::from(config.shards)] };
        for op in &ops {
            let action = action(op);
            let result = router.apply(&state, &action);
            match (&action, result) {
                (Action::Delete(id), Ok((next, _))) => {
                    let cell = router.assignment().cell(id).expect("a known id");
                    reference.dirty[usize::from(cell.shard)][usize::from(cell.slice)] |= !state.is_deleted(id);
                    state = next;
                }
                (Action::Retrained { shard }, Ok((next, _))) => {
                    reference.dirty[usize::from(*shard)].fill(false);
                    state = next;
                }
                (_, Err(_)) => {}
            }
            check_against_reference(&plan, &state, &reference)?;
        }
    }

    /// Between retrains, a sequence's active prefix never grows, and the events describe every change.
    #[test]
    fn active_prefixes_never_grow_between_retrains((config, ops) in (config(), ops())) {
        let (router, _) = setup(&config);
        let mut state = router.initial();
        for op in &ops {
            let action = action(op);
            let Ok((next, events)) = router.apply(&state, &action) else { continue };
            for shard in 0..state.shards() {
                let retrained = action == Action::Retrained { shard };
                for (b, (&old, &new)) in state.active(shard).iter().zip(next.active(shard)).enumerate() {
                    if retrained {
                        prop_assert_eq!(new, config.slices);
                    } else {
                        prop_assert!(new <= old, "shard {} sequence {} grew {} -> {}", shard, b, old, new);
                        let reported = events.iter().any(|e| matches!(e,
                            Event::Deactivated { shard: s, sequence, from, to } if *s == shard && *sequence == b && *from == new && *to == old));
                        prop_assert_eq!(reported, new < old);
                    }
                }
                let offline_event = events.contains(&Event::ShardOffline { shard });
                prop_assert_eq!(offline_event, !state.is_offline(shard) && next.is_offline(shard));
            }
            prop_assert_eq!(events.contains(&Event::AllOffline), state.live_shards() > 0 && next.live_shards() == 0);
            state = next;
        }
    }

    /// The state after a stream equals the state rebuilt by replaying the accepted actions (what the ledger holds).
    #[test]
    fn state_equals_replay_of_the_journal((config, ops) in (config(), ops())) {
        let (router, _) = setup(&config);
        let mut state = router.initial();
        let mut journal = Vec::new();
        for op in &ops {
            let action = action(op);
            if router.apply_in_place(&mut state, &action).is_ok() {
                journal.push(action);
            }
        }
        prop_assert_eq!(router.replay(&journal).expect("journal replays"), state);
    }
}

proptest! {
    // Real files with an fsync per record: fewer cases, on top of the 10,000 above.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same through the durable ledger: append every accepted action, reopen the file, replay.
    #[test]
    fn state_equals_replay_of_the_ledger_file((config, ops) in (config(), ops())) {
        let (router, _) = setup(&config);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deletions.ledger");
        let mut ledger = Ledger::create(&path).expect("new ledger");
        let mut state = router.initial();
        for op in &ops {
            let action = action(op);
            if router.apply_in_place(&mut state, &action).is_ok() {
                ledger.append(&action).expect("append");
            }
        }
        drop(ledger);
        let (reopened, recovery) = Ledger::open(&path).expect("reopen");
        prop_assert!(!recovery.repaired());
        prop_assert_eq!(router.replay(reopened.records()).expect("journal replays"), state);
    }

    /// Unknown ids and shards are errors that leave the state unchanged; deleting twice is a no-op.
    #[test]
    fn errors_and_repeats_leave_the_state_unchanged((config, ops) in (config(), ops())) {
        let (router, _) = setup(&config);
        let mut state = router.initial();
        for op in &ops {
            let action = action(op);
            let before = state.clone();
            match router.apply_in_place(&mut state, &action) {
                Err(RouteError::UnknownId(id)) => {
                    prop_assert!(router.assignment().cell(&id).is_none());
                    prop_assert_eq!(&state, &before);
                }
                Err(RouteError::UnknownShard { shard, .. }) => {
                    prop_assert!(shard >= config.shards);
                    prop_assert_eq!(&state, &before);
                }
                Err(e) => prop_assert!(false, "unexpected error {}", e),
                Ok(_) => {
                    if let Action::Delete(id) = &action {
                        let again = router.apply_in_place(&mut state.clone(), &action).expect("known id");
                        prop_assert_eq!(again, vec![Event::AlreadyDeleted { id: id.clone() }]);
                        let (after, _) = router.apply(&state, &action).expect("known id");
                        prop_assert_eq!(after, state.clone());
                    }
                }
            }
        }
    }
}
