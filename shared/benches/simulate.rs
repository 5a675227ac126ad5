//! Monte Carlo throughput in simulated deletions per second (one core).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use s3t::simulate::MonteCarlo;
use s3t::{Prior, sequence};

fn simulate(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulate");
    let skewed = Prior::new(vec![0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03]).expect("valid prior");
    for (name, prior) in [("uniform", Prior::uniform(8)), ("skewed", skewed)] {
        let mc = MonteCarlo {
            sequences: vec![sequence::cyclic(8, 8).expect("valid budget"); 16],
            prior,
            runs: 200,
            seed: 7,
            checkpoints: vec![],
        };
        let deletions = mc.run().expect("valid config").deletions_simulated;
        group.throughput(Throughput::Elements(deletions));
        group.bench_function(format!("deletions_m16_l8_b8_{name}"), |b| b.iter(|| mc.run().expect("valid config")));
    }
    group.finish();
}

criterion_group!(benches, simulate);
criterion_main!(benches);
