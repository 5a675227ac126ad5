//! The AVX2 lanes. Each function is `libm`'s scalar code (FreeBSD's `erff` and `expf`) written once per vector
//! operation, in the scalar code's order: every branch that some lane takes is computed on all eight lanes, and each
//! lane keeps its own. No fused multiply-add is used: the scalar code rounds each product and each sum.

/// Proof that the CPU has AVX2; only [`available`] makes one.
#[derive(Clone, Copy)]
pub struct Avx2(Private);

#[derive(Clone, Copy)]
#[allow(dead_code)] // never built off x86_64
enum Private {
    Token,
}

/// The vector path, when this CPU has it (the answer is cached by the standard library).
pub fn available() -> Option<Avx2> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        return Some(Avx2(Private::Token));
    }
    None
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    pub fn erf(self, x: &[f32], out: &mut [f32]) {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2.
        unsafe { imp::erf(x, out) }
    }

    pub fn gelu(self, values: &mut [f32]) {
        // SAFETY: as above.
        unsafe { imp::gelu(values) }
    }

    pub fn gelu_with_derivative(self, x: &[f32], y: &mut [f32], dy: &mut [f32]) {
        // SAFETY: as above.
        unsafe { imp::gelu_with_derivative(x, y, dy) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl Avx2 {
    pub fn erf(self, _: &[f32], _: &mut [f32]) {
        unreachable!("no AVX2 off x86_64")
    }

    pub fn gelu(self, _: &mut [f32]) {
        unreachable!("no AVX2 off x86_64")
    }

    pub fn gelu_with_derivative(self, _: &[f32], _: &mut [f32], _: &mut [f32]) {
        unreachable!("no AVX2 off x86_64")
    }
}

#[cfg(target_arch = "x86_64")]
// The constants are written digit for digit as in libm's source, which rounds them to the same floats.
#[allow(clippy::excessive_precision)]
mod imp {
    use std::arch::x86_64::*;
    use std::f32::consts::SQRT_2;

    use crate::{derivative_scalar, gelu_scalar, inv_sqrt_2pi};

    const LANES: usize = 8;

    // erff's constants (libm 0.2.16, src/math/erff.rs).
    const ERX: f32 = 8.4506291151e-01;
    const EFX8: f32 = 1.0270333290e+00;
    const PP: [f32; 5] = [1.2837916613e-01, -3.2504209876e-01, -2.8481749818e-02, -5.7702702470e-03, -2.3763017452e-05];
    const QQ: [f32; 5] = [3.9791721106e-01, 6.5022252500e-02, 5.0813062117e-03, 1.3249473704e-04, -3.9602282413e-06];
    const PA: [f32; 7] = [
        -2.3621185683e-03,
        4.1485610604e-01,
        -3.7220788002e-01,
        3.1834661961e-01,
        -1.1089469492e-01,
        3.5478305072e-02,
        -2.1663755178e-03,
    ];
    const QA: [f32; 6] =
        [1.0642088205e-01, 5.4039794207e-01, 7.1828655899e-02, 1.2617121637e-01, 1.3637083583e-02, 1.1984500103e-02];
    const RA: [f32; 8] = [
        -9.8649440333e-03,
        -6.9385856390e-01,
        -1.0558626175e+01,
        -6.2375331879e+01,
        -1.6239666748e+02,
        -1.8460508728e+02,
        -8.1287437439e+01,
        -9.8143291473e+00,
    ];
    const SA: [f32; 8] = [
        1.9651271820e+01,
        1.3765776062e+02,
        4.3456588745e+02,
        6.4538726807e+02,
        4.2900814819e+02,
        1.0863500214e+02,
        6.5702495575e+00,
        -6.0424413532e-02,
    ];
    const RB: [f32; 7] = [
        -9.8649431020e-03,
        -7.9928326607e-01,
        -1.7757955551e+01,
        -1.6063638306e+02,
        -6.3756646729e+02,
        -1.0250950928e+03,
        -4.8351919556e+02,
    ];
    const SB: [f32; 7] = [
        3.0338060379e+01,
        3.2579251099e+02,
        1.5367296143e+03,
        3.1998581543e+03,
        2.5530502930e+03,
        4.7452853394e+02,
        -2.2440952301e+01,
    ];
    // expf's constants (src/math/expf.rs).
    const LN2_HI: f32 = 6.9314575195e-01;
    const LN2_LO: f32 = 1.4286067653e-06;
    const INV_LN2: f32 = 1.4426950216e+00;
    const P1: f32 = 1.6666625440e-1;
    const P2: f32 = -2.7667332906e-3;

    #[target_feature(enable = "avx2")]
    #[inline]
    fn splat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }

    /// `c[0] + s·(c[1] + s·(… + s·c[n−1]))`, innermost first, as the scalar Horner forms are written.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn horner(s: __m256, c: &[f32]) -> __m256 {
        let (last, rest) = c.split_last().expect("a polynomial has a coefficient");
        let mut acc = splat(*last);
        for &k in rest.iter().rev() {
            acc = _mm256_add_ps(splat(k), _mm256_mul_ps(s, acc));
        }
        acc
    }

    /// `1 + s·(c[0] + s·(c[1] + …))`: the denominators, whose constant term is 1.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn one_plus(s: __m256, c: &[f32]) -> __m256 {
        _mm256_add_ps(splat(1.0), _mm256_mul_ps(s, horner(s, c)))
    }

    /// `ix < c` per lane, for `ix` a magnitude's bits (non-negative as i32).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn below(ix: __m256i, c: u32) -> __m256 {
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(c as i32), ix))
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn magnitude_bits(x: __m256) -> __m256i {
        _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7fff_ffff))
    }

    /// `expf` on the arguments `erff` gives it (|a| < 37): the overflow, underflow and NaN cases are not needed.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn expf(a: __m256) -> __m256 {
        let hx = magnitude_bits(a);
        let sign = _mm256_srli_epi32::<31>(_mm256_castps_si256(a));
        let negative = _mm256_castsi256_ps(_mm256_cmpeq_epi32(sign, _mm256_set1_epi32(1)));
        // |a| > 1.5 ln 2: k = (INV_LN2·a ± 0.5) truncated; otherwise k = 1 − 2·sign.
        let half = _mm256_blendv_ps(splat(0.5), splat(-0.5), negative);
        let k_far = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(splat(INV_LN2), a), half));
        let k_near = _mm256_sub_epi32(_mm256_sub_epi32(_mm256_set1_epi32(1), sign), sign);
        let far = _mm256_castps_si256(_mm256_castsi256_ps(_mm256_cmpgt_epi32(hx, _mm256_set1_epi32(0x3f85_1592))));
        let k = _mm256_blendv_epi8(k_near, k_far, far);
        let kf = _mm256_cvtepi32_ps(k);
        let hi = _mm256_sub_ps(a, _mm256_mul_ps(kf, splat(LN2_HI)));
        let lo = _mm256_mul_ps(kf, splat(LN2_LO));
        let reduced = _mm256_sub_ps(hi, lo);
        // |a| ≤ 0.5 ln 2: no reduction (k = 0, hi = a, lo = 0).
        let reduce = _mm256_castsi256_ps(_mm256_cmpgt_epi32(hx, _mm256_set1_epi32(0x3eb1_7218)));
        let k = _mm256_and_si256(k, _mm256_castps_si256(reduce));
        let hi = _mm256_blendv_ps(a, hi, reduce);
        let lo = _mm256_and_ps(lo, reduce);
        let x = _mm256_blendv_ps(a, reduced, reduce);
        let xx = _mm256_mul_ps(x, x);
        let c = _mm256_sub_ps(x, _mm256_mul_ps(xx, _mm256_add_ps(splat(P1), _mm256_mul_ps(xx, splat(P2)))));
        let ratio = _mm256_div_ps(_mm256_mul_ps(x, c), _mm256_sub_ps(splat(2.0), c));
        let y = _mm256_add_ps(splat(1.0), _mm256_add_ps(_mm256_sub_ps(ratio, lo), hi));
        // scalbnf(y, k) for −126 ≤ k ≤ 127 is one product with 2^k (and 2^0 = 1 leaves y as is).
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k, _mm256_set1_epi32(0x7f))));
        let y = _mm256_mul_ps(y, scale);
        // |a| ≤ 2^-14: 1 + a.
        let tiny = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x3900_0001), hx));
        _mm256_blendv_ps(y, _mm256_add_ps(splat(1.0), a), tiny)
    }

    /// `erff`, every lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn erf8(x: __m256) -> __m256 {
        let bits = _mm256_castps_si256(x);
        let ix = magnitude_bits(x);
        let sign_bit = _mm256_and_si256(bits, _mm256_set1_epi32(i32::MIN));
        let one = splat(1.0);
        let with_sign = |y: __m256| _mm256_xor_ps(y, _mm256_castsi256_ps(sign_bit));
        // The ranges `erff` branches on, per lane. A branch no lane takes is skipped: its value would be discarded.
        let (finite, medium_or_less) = (below(ix, 0x7f80_0000), below(ix, 0x40c0_0000));
        let (small_or_less, tiny) = (below(ix, 0x3f58_0000), below(ix, 0x3180_0000));
        let near = below(ix, 0x3fa0_0000);
        let any = |lanes: __m256| _mm256_movemask_ps(lanes) != 0;

        // |x| ≥ 6: 1 − 2^-120 with the sign of x.
        let mut out = with_sign(_mm256_sub_ps(one, splat(f32::from_bits(0x0380_0000))));
        // 0.84375 ≤ |x| < 6: 1 − erfc(|x|) with the sign of x.
        let medium = _mm256_andnot_ps(small_or_less, medium_or_less);
        if any(medium) {
            let ax = _mm256_castsi256_ps(ix);
            // |x| < 1.25: erfc = 1 − ERX − p/q over s = |x| − 1.
            let s = _mm256_sub_ps(ax, one);
            let erfc_near = _mm256_sub_ps(splat(1.0 - ERX), _mm256_div_ps(horner(s, &PA), one_plus(s, &QA)));
            let erfc = if any(_mm256_andnot_ps(near, medium)) {
                // erfc = expf(−z·z − 0.5625)·expf((z − |x|)(z + |x|) + R/S)/|x|, z = |x| with its low 13 bits cut.
                let s = _mm256_div_ps(one, _mm256_mul_ps(ax, ax));
                let mid = below(ix, 0x4036_db6d);
                let r = _mm256_blendv_ps(horner(s, &RB), horner(s, &RA), mid);
                let big_s = _mm256_blendv_ps(one_plus(s, &SB), one_plus(s, &SA), mid);
                let zc = _mm256_castsi256_ps(_mm256_and_si256(ix, _mm256_set1_epi32(0xffff_e000_u32 as i32)));
                let neg_zc = _mm256_xor_ps(zc, splat(-0.0));
                let e1 = expf(_mm256_sub_ps(_mm256_mul_ps(neg_zc, zc), splat(0.5625)));
                let e2 = expf(_mm256_add_ps(
                    _mm256_mul_ps(_mm256_sub_ps(zc, ax), _mm256_add_ps(zc, ax)),
                    _mm256_div_ps(r, big_s),
                ));
                let erfc_far = _mm256_div_ps(_mm256_mul_ps(e1, e2), ax);
                _mm256_blendv_ps(erfc_far, erfc_near, near)
            } else {
                erfc_near
            };
            out = _mm256_blendv_ps(out, with_sign(_mm256_sub_ps(one, erfc)), medium_or_less);
        }
        // |x| < 0.84375: x + x·(r/s).
        if any(small_or_less) {
            let z = _mm256_mul_ps(x, x);
            let small = _mm256_add_ps(x, _mm256_mul_ps(x, _mm256_div_ps(horner(z, &PP), one_plus(z, &QQ))));
            out = _mm256_blendv_ps(out, small, small_or_less);
        }
        // |x| < 2^-28: 0.125·(8x + EFX8·x).
        if any(tiny) {
            let eighth = _mm256_add_ps(_mm256_mul_ps(splat(8.0), x), _mm256_mul_ps(splat(EFX8), x));
            out = _mm256_blendv_ps(out, _mm256_mul_ps(splat(0.125), eighth), tiny);
        }
        // NaN and ±∞: 1 − 2·sign + 1/x.
        if _mm256_movemask_ps(finite) != 0xff {
            let signf = _mm256_cvtepi32_ps(_mm256_srli_epi32::<31>(bits));
            let nonfinite = _mm256_add_ps(_mm256_sub_ps(one, _mm256_mul_ps(splat(2.0), signf)), _mm256_div_ps(one, x));
            out = _mm256_blendv_ps(nonfinite, out, finite);
        }
        out
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn gelu8(x: __m256, erf: __m256) -> __m256 {
        _mm256_mul_ps(_mm256_mul_ps(splat(0.5), x), _mm256_add_ps(splat(1.0), erf))
    }

    #[target_feature(enable = "avx2")]
    pub fn erf(x: &[f32], out: &mut [f32]) {
        let split = x.len() / LANES * LANES;
        for (xs, os) in x[..split].chunks_exact(LANES).zip(out[..split].chunks_exact_mut(LANES)) {
            // SAFETY: eight floats are read from and written to chunks of eight.
            unsafe { _mm256_storeu_ps(os.as_mut_ptr(), erf8(_mm256_loadu_ps(xs.as_ptr()))) };
        }
        for (o, &v) in out[split..].iter_mut().zip(&x[split..]) {
            *o = libm::erff(v);
        }
    }

    #[target_feature(enable = "avx2")]
    pub fn gelu(values: &mut [f32]) {
        let split = values.len() / LANES * LANES;
        let (body, tail) = values.split_at_mut(split);
        for chunk in body.chunks_exact_mut(LANES) {
            // SAFETY: eight floats are read from and written to a chunk of eight.
            let x = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
            let y = gelu8(x, erf8(_mm256_div_ps(x, splat(SQRT_2))));
            unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), y) };
        }
        for v in tail {
            *v = gelu_scalar(*v);
        }
    }

    #[target_feature(enable = "avx2")]
    pub fn gelu_with_derivative(x: &[f32], y: &mut [f32], dy: &mut [f32]) {
        let split = x.len() / LANES * LANES;
        let inv = splat(inv_sqrt_2pi());
        let mut e = [0.0f32; LANES];
        for ((xs, ys), ds) in x[..split]
            .chunks_exact(LANES)
            .zip(y[..split].chunks_exact_mut(LANES))
            .zip(dy[..split].chunks_exact_mut(LANES))
        {
            // SAFETY: every pointer below is to a chunk (or array) of eight floats.
            let v = unsafe { _mm256_loadu_ps(xs.as_ptr()) };
            let erf = erf8(_mm256_div_ps(v, splat(SQRT_2)));
            unsafe { _mm256_storeu_ps(ys.as_mut_ptr(), gelu8(v, erf)) };
            // The standard library's `exp` (the platform's expf), lane by lane, as burn-flex calls it.
            for (e, &xv) in e.iter_mut().zip(xs) {
                *e = (-0.5 * xv * xv).exp();
            }
            let pdf = _mm256_mul_ps(inv, unsafe { _mm256_loadu_ps(e.as_ptr()) });
            let cdf = _mm256_mul_ps(splat(0.5), _mm256_add_ps(splat(1.0), erf));
            unsafe { _mm256_storeu_ps(ds.as_mut_ptr(), _mm256_add_ps(cdf, _mm256_mul_ps(v, pdf))) };
        }
        for i in split..x.len() {
            y[i] = gelu_scalar(x[i]);
            dy[i] = derivative_scalar(x[i]);
        }
    }
}
