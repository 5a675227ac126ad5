//! Route throughput: one deletion through the reducer with 1,000,000 ids, m = 16, L = 8, B = 8 (cyclic).
//! Shards that go offline are retrained at once, as a serving system would, so deletions keep hitting live shards.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use s3t::partition::{Partition, PartitionMode};
use s3t::{Action, Event, Plan, Router, SampleId, Strategy};

const IDS: u64 = 1_000_000;

fn route(c: &mut Criterion) {
    let partition = Partition::new(16, 8, PartitionMode::Balanced).expect("valid partition");
    let assignment = partition.assign((0..IDS).map(SampleId::Int)).expect("unique ids");
    let plan = Plan::new(16, 8, 8, &Strategy::Cyclic).expect("valid plan");
    let router = Router::new(assignment, &plan).expect("matching plan");
    let mut stream: Vec<Action> = (0..IDS).map(|i| Action::Delete(SampleId::Int(i))).collect();
    stream.shuffle(&mut ChaCha8Rng::seed_from_u64(1));

    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(1));
    group.bench_function("delete_1m_ids_m16_l8_b8", |b| {
        let mut state = router.initial();
        let mut next = 0usize;
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if next == stream.len() {
                    // Every id is gone: start a fresh model (outside the timed region).
                    state = router.initial();
                    next = 0;
                }
                let start = Instant::now();
                let events = router.apply_in_place(&mut state, &stream[next]).expect("known id");
                for event in &events {
                    if let Event::ShardOffline { shard } = event {
                        router.apply_in_place(&mut state, &Action::Retrained { shard: *shard }).expect("known shard");
                    }
                }
                elapsed += start.elapsed();
                black_box(events);
                next += 1;
            }
            elapsed
        });
    });
    group.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
