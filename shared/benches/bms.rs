//! Bipartite matching selection for L = 64 under a skewed prior.

use criterion::{Criterion, criterion_group, criterion_main};
use s3t::{Prior, sequence};

fn bms(c: &mut Criterion) {
    let l = 64u16;
    let raw: Vec<f64> = (0..l).map(|j| 1.0 / f64::from(j + 1)).collect();
    let sum: f64 = raw.iter().sum();
    let prior = Prior::new(raw.iter().map(|v| v / sum).collect()).expect("valid prior");
    let mut group = c.benchmark_group("bms");
    group.sample_size(10);
    for budget in [8usize, 64] {
        group.bench_function(format!("l64_b{budget}"), |b| b.iter(|| sequence::bms(&prior, budget).expect("valid")));
    }
    group.finish();
}

criterion_group!(benches, bms);
criterion_main!(benches);
