//! Every one of the 2³² single-precision inputs: the vector `erf` against `libm::erff`, and the vector GELU and
//! backward factor against burn-flex's scalar formulas. About a minute on two cores; run with `--ignored`.

use std::sync::atomic::{AtomicU64, Ordering};

const BLOCK: u64 = 1 << 16;

#[test]
#[ignore = "exhaustive: 2^32 inputs, run with --ignored"]
fn every_input_gives_the_scalar_bits() {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let next = AtomicU64::new(0);
    let mismatches = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let (mut x, mut erf, mut y, mut dy) = (
                    vec![0.0f32; BLOCK as usize],
                    vec![0.0; BLOCK as usize],
                    vec![0.0; BLOCK as usize],
                    vec![0.0; BLOCK as usize],
                );
                loop {
                    let start = next.fetch_add(BLOCK, Ordering::Relaxed);
                    if start > u64::from(u32::MAX) {
                        break;
                    }
                    for (i, v) in x.iter_mut().enumerate() {
                        *v = f32::from_bits((start + i as u64) as u32);
                    }
                    s3t_gelu::erf(&x, &mut erf);
                    s3t_gelu::gelu_with_derivative(&x, &mut y, &mut dy);
                    for i in 0..x.len() {
                        let ok = erf[i].to_bits() == libm::erff(x[i]).to_bits()
                            && y[i].to_bits() == s3t_gelu::gelu_scalar(x[i]).to_bits()
                            && dy[i].to_bits() == s3t_gelu::derivative_scalar(x[i]).to_bits();
                        if !ok && mismatches.fetch_add(1, Ordering::Relaxed) < 8 {
                            eprintln!("input bits {:#010x} ({:e}) differs", x[i].to_bits(), x[i]);
                        }
                    }
                }
            });
        }
    });
    assert_eq!(mismatches.into_inner(), 0, "inputs whose vector result differs from the scalar one");
}
