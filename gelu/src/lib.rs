//! GELU and its derivative over slices, eight floats at a time, with the very bits of burn-flex's scalar GELU.
//!
//! burn's CPU backend computes GELU as `0.5 · x · (1 + erf(x / √2))` with libm's scalar `erff`, one element at a
//! time, and its backward pass the same `erff` again plus `exp`. On a transformer's MLP that is a quarter of a
//! training step. `erff` (FreeBSD's, as the `libm` crate ports it) is a sequence of single-precision additions,
//! multiplications and divisions, which IEEE 754 rounds the same way in a vector lane as in a scalar register, so
//! [`erf`] repeats that sequence operation by operation on eight lanes (each branch a lane takes, then a select)
//! and gives the same bits for every one of the 2³² inputs (`tests/exhaustive.rs`). Bundles trained before and after
//! are identical; nothing here is an approximation.
//!
//! The vector code needs AVX2 and is chosen at run time; elsewhere (other CPUs, wasm) every function is the scalar
//! loop burn-flex runs.

mod avx2;

use std::f32::consts::{PI, SQRT_2};

/// `erf(x)` per element: `libm::erff`, bit for bit.
pub fn erf(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "erf: input and output lengths differ");
    if let Some(simd) = avx2::available() {
        simd.erf(x, out);
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = libm::erff(v);
        }
    }
}

/// GELU per element, in place: burn-flex's `0.5 * x * (1.0 + erff(x / SQRT_2))`, bit for bit.
pub fn gelu(values: &mut [f32]) {
    if let Some(simd) = avx2::available() {
        simd.gelu(values);
    } else {
        for v in values {
            *v = gelu_scalar(*v);
        }
    }
}

/// GELU and its derivative per element: `y` as [`gelu`] and `dy` the factor burn-flex's backward pass multiplies
/// the incoming gradient by, `cdf + x · pdf` with `cdf = 0.5 · (1 + erff(x / √2))` and
/// `pdf = (1 / √(2π)) · exp(−0.5 · x · x)` (the standard library's `exp`, as burn-flex calls it).
pub fn gelu_with_derivative(x: &[f32], y: &mut [f32], dy: &mut [f32]) {
    assert!(x.len() == y.len() && x.len() == dy.len(), "gelu_with_derivative: lengths differ");
    if let Some(simd) = avx2::available() {
        simd.gelu_with_derivative(x, y, dy);
    } else {
        for ((&v, y), dy) in x.iter().zip(y.iter_mut()).zip(dy.iter_mut()) {
            *y = gelu_scalar(v);
            *dy = derivative_scalar(v);
        }
    }
}

/// burn-flex's forward GELU on one element (the reference the vector code equals).
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x / SQRT_2))
}

/// burn-flex's backward factor on one element (the reference the vector code equals).
pub fn derivative_scalar(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + libm::erff(x / SQRT_2));
    let pdf = inv_sqrt_2pi() * (-0.5 * x * x).exp();
    cdf + x * pdf
}

/// `1 / √(2π)` computed as burn-flex computes it, in single precision at run time.
fn inv_sqrt_2pi() -> f32 {
    1.0 / (2.0 * PI).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs around every threshold `erff` and `expf` branch on, special values, and a sweep.
    fn probes() -> Vec<f32> {
        let thresholds: [u32; 10] = [
            0x3180_0000,
            0x3f58_0000,
            0x3fa0_0000,
            0x4036_db6d,
            0x40c0_0000,
            0x7f80_0000,
            0x3eb1_7218,
            0x3f85_1592,
            0x3900_0000,
            0x0000_0001,
        ];
        let mut out = Vec::new();
        for t in thresholds {
            for delta in 0..64u32 {
                for bits in [t.wrapping_add(delta), t.wrapping_sub(delta)] {
                    out.push(f32::from_bits(bits));
                    out.push(-f32::from_bits(bits));
                }
            }
        }
        out.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN, f32::MAX, f32::EPSILON]);
        out.extend((-40_000..40_000).map(|i| i as f32 * 7.3e-4));
        // A length that is not a multiple of the vector width exercises the tail.
        out.push(0.3);
        out
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits()
    }

    #[test]
    fn erf_equals_libm_on_thresholds_and_a_sweep() {
        let x = probes();
        let mut out = vec![0.0; x.len()];
        erf(&x, &mut out);
        for (&v, &o) in x.iter().zip(&out) {
            assert!(same(o, libm::erff(v)), "erf({v:e}) = {o:e}, libm {:e}", libm::erff(v));
        }
    }

    #[test]
    fn gelu_and_derivative_equal_the_scalar_formulas() {
        let x = probes();
        let mut y = x.clone();
        gelu(&mut y);
        let (mut y2, mut dy) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        gelu_with_derivative(&x, &mut y2, &mut dy);
        for i in 0..x.len() {
            assert!(same(y[i], gelu_scalar(x[i])), "gelu({:e})", x[i]);
            assert!(same(y2[i], gelu_scalar(x[i])), "gelu_with_derivative({:e}).0", x[i]);
            assert!(same(dy[i], derivative_scalar(x[i])), "gelu_with_derivative({:e}).1", x[i]);
        }
    }

    #[test]
    fn a_strided_sample_of_every_bit_pattern_matches() {
        // Every 9973rd pattern (about 430,000 inputs of every sign and exponent); the exhaustive run is ignored.
        let x: Vec<f32> = (0..=u32::MAX).step_by(9973).map(f32::from_bits).collect();
        let mut out = vec![0.0; x.len()];
        erf(&x, &mut out);
        assert!(x.iter().zip(&out).all(|(&v, &o)| same(o, libm::erff(v))));
    }
}
