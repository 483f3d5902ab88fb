//! Transcendentals written once, operation for operation, in Rust and in WGSL
//! (`shaders/math.wgsl`), so that the CPU reference and the GPU compute the same bits.
//!
//! WGSL's built-in `exp`, `log` and `pow` differ from Rust's libm by up to tens of ULP on
//! lavapipe (measured, `gpu-lavapipe-facts.md`), while `+ - * /`, `floor`, comparisons,
//! casts and bit casts round identically. These functions use only those operations,
//! never `mul_add` (lavapipe does not fuse, so the reference must not either), and
//! constants that are exact in f32. Every kernel calls these instead of `f32::exp`,
//! `f32::ln` and `f32::powf`; host-side derived constants stay in f64 (`crate::model`).
//!
//! Accuracy (tested against f64 below): `exp_sw` within 2 ULP on [-87, 88], `ln_sw`
//! within 2 ULP (or 2e-7 absolute near 1) for normal positive arguments.

/// ln 2 split for Cody-Waite reduction: `LN2_HI` has 16 trailing zero bits, so
/// `k·LN2_HI` is exact for |k| < 2^8.
const LN2_HI: f32 = 0.693_145_75;
/// ln 2 - LN2_HI.
const LN2_LO: f32 = 1.428_606_8e-6;

/// Exponential relaxation towards `x_inf` over one step: `x_inf + (x - x_inf)·decay`, the
/// exact update of dx/dt = (x_inf - x)/τ with decay = e^{-dt/τ} (§6.4). Every kernel
/// writes this update through this function: its WGSL twin hides the expression from the
/// shader compiler, which would otherwise fuse it as a lerp.
#[inline]
pub fn relax(x_inf: f32, x: f32, decay: f32) -> f32 {
    x_inf + (x - x_inf) * decay
}

/// e^x. Returns 0 below -87 (the result would be subnormal: flushed, as DESIGN.md asks)
/// and +inf above 88; NaN stays NaN.
#[inline]
pub fn exp_sw(x: f32) -> f32 {
    if x < -87.0 {
        return 0.0;
    }
    if x > 88.0 {
        return f32::INFINITY;
    }
    // x = k·ln2 + r, |r| ≤ ln2/2; e^r by its degree-7 Taylor polynomial (Horner).
    // k = floor(x·log2 e + 0.5), by truncation and a correction (no libm call; |k| ≤ 128).
    let kf = x * std::f32::consts::LOG2_E + 0.5;
    let mut k = (kf as i32) as f32;
    if k > kf {
        k -= 1.0;
    }
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668
                        + r * (0.008_333_334 + r * (0.001_388_888_9 + r * 0.000_198_412_7))))));
    // 2^k built from its exponent bits (k ∈ [-126, 127] here).
    let scale = f32::from_bits(((k as i32 + 127) as u32) << 23);
    p * scale
}

/// [`exp_sw`] of every element of `x`, in place, with the same bits: the same operations
/// on the in-range arguments and selects instead of branches for the rest, so the
/// compiler can run several lanes at a time (the CPU's blocks of `integrate`).
#[inline(always)]
pub fn exp_sw_slice(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let x = if x.len() >= 32 && std::arch::is_x86_feature_detected!("avx2") {
        let whole = x.len() / 32 * 32;
        let (head, tail) = x.split_at_mut(whole);
        // SAFETY: the CPU has AVX2, tested just above.
        unsafe { exp_sw_slice_avx2(head) };
        tail
    } else {
        x
    };
    for v in x.iter_mut() {
        *v = exp_sw_lane(*v);
    }
}

/// [`exp_sw`] of `a` with selects instead of branches, the same bits: the lane of
/// [`exp_sw_slice`].
#[inline(always)]
fn exp_sw_lane(a: f32) -> f32 {
    // In [-87, 88] xc == a; outside, the lane's result is replaced below.
    let xc = if a < -87.0 {
        -87.0
    } else if a > 88.0 {
        88.0
    } else if a.is_nan() {
        0.0
    } else {
        a
    };
    let kf = xc * std::f32::consts::LOG2_E + 0.5;
    // SAFETY: |kf| ≤ 128 (xc is clamped to [-87, 88] and never NaN), where the
    // unchecked conversion truncates exactly like `as` (and vectorises).
    let k0 = unsafe { kf.to_int_unchecked::<i32>() } as f32;
    let k = if k0 > kf { k0 - 1.0 } else { k0 };
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668
                        + r * (0.008_333_334 + r * (0.001_388_888_9 + r * 0.000_198_412_7))))));
    // SAFETY: k is an integer in [-126, 127] here.
    let scale = f32::from_bits(((unsafe { k.to_int_unchecked::<i32>() } + 127) as u32) << 23);
    let e = p * scale;
    if a < -87.0 {
        0.0
    } else if a > 88.0 {
        f32::INFINITY
    } else if a.is_nan() {
        a
    } else {
        e
    }
}

/// [`exp_sw_slice`] of a slice whose length is a multiple of 32, 32 lanes at a time in
/// four AVX2 registers ([`exp_sw_avx2`]): the polynomial's chains of dependent
/// operations of four registers overlap, which the compiler's vectorisation of the lane
/// loop (one register at a time) does not do; about 20 % faster, the same bits.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exp_sw_slice_avx2(x: &mut [f32]) {
    use std::arch::x86_64::*;
    for c in x.chunks_exact_mut(32) {
        // SAFETY: the chunk holds 32 floats, four 8-lane registers.
        unsafe {
            let a: [__m256; 4] = std::array::from_fn(|u| _mm256_loadu_ps(c.as_ptr().add(8 * u)));
            let e = exp_sw_avx2(a);
            for (u, e) in e.iter().enumerate() {
                _mm256_storeu_ps(c.as_mut_ptr().add(8 * u), *e);
            }
        }
    }
}

/// [`exp_sw`] of `U` registers of eight lanes each, the same values on every lane, so
/// the same bits (tested against `exp_sw` below). The in-range lanes see the operations
/// of `exp_sw` in its order (`exp_sw_avx2_core`); when some lane is below -87, above 88
/// or NaN, the lanes are computed on a clamped argument (`min`/`max`, which leave the
/// in-range lanes as they are) and those lanes replaced at the end by exp_sw's 0, +inf or
/// the NaN itself. Each operation runs over all `U` registers before the next, so the
/// registers' chains of dependent operations overlap.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub unsafe fn exp_sw_avx2<const U: usize>(
    a: [std::arch::x86_64::__m256; U],
) -> [std::arch::x86_64::__m256; U] {
    use std::arch::x86_64::*;
    let c = _mm256_set1_ps;
    // Usually every lane is in range (one test for all of them): then no clamp and no
    // replacement.
    let inside = a
        .iter()
        .fold(_mm256_castsi256_ps(_mm256_set1_epi32(-1)), |acc, &a| {
            let lo = _mm256_cmp_ps::<_CMP_GE_OQ>(a, c(-87.0));
            let hi = _mm256_cmp_ps::<_CMP_LE_OQ>(a, c(88.0));
            _mm256_and_ps(acc, _mm256_and_ps(lo, hi))
        });
    if _mm256_movemask_ps(inside) == 0xff {
        // SAFETY: the CPU has AVX2 (this function's feature).
        return unsafe { exp_sw_avx2_core(a) };
    }
    // vminps returns its second operand when the first is NaN: NaN lanes become 88.
    let xc = a.map(|a| _mm256_max_ps(_mm256_min_ps(a, c(88.0)), c(-87.0)));
    // SAFETY: as above.
    let e = unsafe { exp_sw_avx2_core(xc) };
    std::array::from_fn(|u| {
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(a[u], a[u]);
        let above = _mm256_cmp_ps::<_CMP_GT_OQ>(a[u], c(88.0));
        let below = _mm256_cmp_ps::<_CMP_LT_OQ>(a[u], c(-87.0));
        let e = _mm256_blendv_ps(e[u], a[u], nan);
        let e = _mm256_blendv_ps(e, c(f32::INFINITY), above);
        _mm256_blendv_ps(e, _mm256_setzero_ps(), below)
    })
}

/// The operations of [`exp_sw`] for arguments in [-87, 88] (no NaN), on `U` registers:
/// k = floor(x·log2 e + 0.5) (`floor` gives exp_sw's truncation and correction for |k| ≤
/// 128), the reduced argument, the degree-7 polynomial and the scale 2^k.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn exp_sw_avx2_core<const U: usize>(
    xc: [std::arch::x86_64::__m256; U],
) -> [std::arch::x86_64::__m256; U] {
    use std::arch::x86_64::*;
    let c = _mm256_set1_ps;
    let kf = xc.map(|x| _mm256_add_ps(_mm256_mul_ps(x, c(std::f32::consts::LOG2_E)), c(0.5)));
    let k = kf.map(|kf| _mm256_floor_ps(kf));
    let r: [__m256; U] = std::array::from_fn(|u| {
        let hi = _mm256_sub_ps(xc[u], _mm256_mul_ps(k[u], c(LN2_HI)));
        _mm256_sub_ps(hi, _mm256_mul_ps(k[u], c(LN2_LO)))
    });
    let mut p = r.map(|r| _mm256_add_ps(c(0.001_388_888_9), _mm256_mul_ps(r, c(0.000_198_412_7))));
    for coef in [0.008_333_334, 0.041_666_668, 0.166_666_67, 0.5, 1.0, 1.0] {
        for u in 0..U {
            p[u] = _mm256_add_ps(c(coef), _mm256_mul_ps(r[u], p[u]));
        }
    }
    std::array::from_fn(|u| {
        let bits = _mm256_add_epi32(_mm256_cvttps_epi32(k[u]), _mm256_set1_epi32(127));
        _mm256_mul_ps(p[u], _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits)))
    })
}

/// ln x for positive normal x (the only arguments the kernels pass: probabilities and
/// ratios ≥ 2^-24). 0 and subnormals give -inf, negative x NaN, +inf +inf.
#[inline]
pub fn ln_sw(x: f32) -> f32 {
    if x < f32::MIN_POSITIVE {
        return if x < 0.0 { f32::NAN } else { f32::NEG_INFINITY };
    }
    if x > f32::MAX {
        return x;
    }
    // x = m·2^e with m ∈ [√2/2, √2); ln m = 2·atanh(s), s = f/(2 + f), f = m - 1.
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 127) as f32;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1.0;
    }
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    // 2·atanh(s) = 2s + 2s³/3 + 2s⁵/5 + ... = f - s·(f - t) with t = z·(2/3 + z·(2/5 + ...)).
    let t =
        z * (0.666_666_7 + z * (0.4 + z * (0.285_714_3 + z * (0.222_222_22 + z * 0.181_818_18))));
    e * LN2_HI + ((f - s * (f - t)) + e * LN2_LO)
}

/// [`ln_sw`] of every element of `x`, in place, with the same bits: the same operations
/// on every lane and selects instead of the branches, so the compiler can run several
/// lanes at a time (the CPU's batched `release`).
#[inline(always)]
pub fn ln_sw_slice(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v;
        let bits = a.to_bits();
        let e0 = ((bits >> 23) as i32 - 127) as f32;
        let m0 = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
        let big = m0 > std::f32::consts::SQRT_2;
        let m = if big { m0 * 0.5 } else { m0 };
        let e = if big { e0 + 1.0 } else { e0 };
        let f = m - 1.0;
        let s = f / (2.0 + f);
        let z = s * s;
        let t = z
            * (0.666_666_7 + z * (0.4 + z * (0.285_714_3 + z * (0.222_222_22 + z * 0.181_818_18))));
        let l = e * LN2_HI + ((f - s * (f - t)) + e * LN2_LO);
        *v = if a < f32::MIN_POSITIVE {
            if a < 0.0 {
                f32::NAN
            } else {
                f32::NEG_INFINITY
            }
        } else if a > f32::MAX {
            a
        } else {
            l
        };
    }
}

/// x^y for x > 0 (and 0^y = 0 for y > 0): small non-negative integer powers by
/// multiplication in a fixed order (Hill coefficients: c⁴ = (c·c)·(c·c)), otherwise
/// e^{y·ln x}.
#[inline]
pub fn pow_sw(x: f32, y: f32) -> f32 {
    if y == 1.0 {
        return x;
    }
    if y == 2.0 {
        return x * x;
    }
    if y == 3.0 {
        return (x * x) * x;
    }
    if y == 4.0 {
        let x2 = x * x;
        return x2 * x2;
    }
    if x == 0.0 {
        return if y > 0.0 { 0.0 } else { f32::INFINITY };
    }
    debug_assert!(pow_sw_by_exp(x, y));
    exp_sw(y * ln_sw(x))
}

/// Whether [`pow_sw`] computes x^y as `exp_sw(y * ln_sw(x))` (y is not 1, 2, 3 or 4 and x
/// is not 0): lanes that compute that expression themselves (the CPU's batched `release`)
/// ask this and call [`pow_sw`] for the other cases.
#[inline]
pub fn pow_sw_by_exp(x: f32, y: f32) -> bool {
    !(y == 1.0 || y == 2.0 || y == 3.0 || y == 4.0 || x == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp_sw_slice` (32 lanes at a time in AVX2 registers, where the CPU has it) leaves
    /// the bits of `exp_sw` on every lane, on slices of every length from 0 to 100 over a
    /// sweep of [-100, 100], the clamps' edges, ±0, ±inf and NaN.
    #[test]
    fn exp_sw_slice_has_the_bits_of_exp_sw_in_any_length() {
        let mut xs: Vec<f32> = vec![0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        for e in [-87.0f32, 88.0, -87.5, 88.5, -86.9, 87.9, -103.0, 89.0] {
            xs.extend([
                e,
                f32::from_bits(e.to_bits() + 1),
                f32::from_bits(e.to_bits() - 1),
            ]);
        }
        xs.extend((0..20_000).map(|i| -100.0 + i as f32 * 0.01));
        let mut start = 0;
        for len in (0..=100).cycle() {
            if start + len > xs.len() {
                break;
            }
            let mut got = xs[start..start + len].to_vec();
            exp_sw_slice(&mut got);
            for (x, y) in xs[start..start + len].iter().zip(&got) {
                assert_eq!(
                    exp_sw(*x).to_bits(),
                    y.to_bits(),
                    "exp of {x:e} in a slice of {len}"
                );
            }
            start += len;
        }
    }

    fn ulp_diff(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        let ulp = (f32::from_bits(b32.abs().to_bits() + 1) - b32.abs()) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn exp_sw_is_accurate() {
        let mut worst = 0.0f64;
        let n = 200_000;
        for i in 0..=n {
            let x = -87.0 + 175.0 * i as f32 / n as f32;
            let d = ulp_diff(exp_sw(x), (x as f64).exp());
            worst = worst.max(d);
        }
        assert!(worst <= 2.0, "exp_sw: {worst} ULP");
        assert_eq!(exp_sw(0.0), 1.0);
        assert_eq!(exp_sw(-100.0), 0.0);
        assert_eq!(exp_sw(100.0), f32::INFINITY);
        assert!(exp_sw(f32::NAN).is_nan());
    }

    #[test]
    fn exp_sw_slice_has_the_bits_of_exp_sw() {
        let mut xs: Vec<f32> = (0..400_000)
            .map(|i| -100.0 + 200.0 * i as f32 / 400_000.0)
            .collect();
        xs.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -87.0,
            88.0,
            -0.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            1e-30,
            -86.999_99,
            87.999_99,
        ]);
        let mut ys = xs.clone();
        exp_sw_slice(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(y.to_bits(), exp_sw(*x).to_bits(), "x = {x}");
        }
    }

    #[test]
    fn ln_sw_slice_has_the_bits_of_ln_sw() {
        let mut xs: Vec<f32> = (0..400_000)
            .map(|i| f32::from_bits(0x0000_1000u32.wrapping_add(i * 10_700)))
            .collect();
        xs.extend([
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            -1.0,
            1.0,
            std::f32::consts::SQRT_2,
            f32::MIN_POSITIVE,
            f32::MIN_POSITIVE * 0.5,
            f32::MAX,
            f32::MIN,
            1.000_000_1,
            0.999_999_94,
        ]);
        let mut ys = xs.clone();
        ln_sw_slice(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            let want = ln_sw(*x);
            assert!(
                y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                "x = {x:e}: {y} against {want}"
            );
        }
    }

    #[test]
    fn ln_sw_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = f32::MIN_POSITIVE;
        while x < 1e30 {
            for k in 0..64 {
                let y = x * (1.0 + k as f32 / 64.0);
                let want = (y as f64).ln();
                let got = ln_sw(y) as f64;
                let err = if want.abs() < 1.0 {
                    (got - want).abs() / 1.2e-7
                } else {
                    ulp_diff(ln_sw(y), want)
                };
                worst = worst.max(err);
            }
            x *= 1.7;
        }
        assert!(worst <= 2.0, "ln_sw: {worst}");
        assert_eq!(ln_sw(1.0), 0.0);
        assert_eq!(ln_sw(0.0), f32::NEG_INFINITY);
        assert!(ln_sw(-1.0).is_nan());
    }

    #[test]
    fn pow_sw_integer_and_general() {
        assert_eq!(pow_sw(1.5, 4.0), (1.5f32 * 1.5) * (1.5 * 1.5));
        assert_eq!(pow_sw(0.0, 4.0), 0.0);
        assert_eq!(pow_sw(0.0, 2.5), 0.0);
        let got = pow_sw(1.3, 2.5) as f64;
        assert!((got - 1.3f64.powf(2.5)).abs() < 4e-7 * got, "{got}");
    }
}
