//! Philox4x32-10 counter-based random numbers (Salmon, Moraes, Dror & Shaw 2011).
//!
//! The determinism contract of DESIGN.md: every random number is a pure function of
//! (seed, entity id, step, purpose), so results do not depend on scheduling, and the
//! GPU (a later `shaders/philox.wgsl`, which must mirror this file statement for
//! statement, with `mulhi32` built from 16-bit limbs because WGSL has no 64-bit
//! integers) draws exactly the same numbers as the CPU. Spec §9 "Random numbers".
//!
//! Key = (entity id, low 32 bits of the seed); counter = (step, purpose | block << 8,
//! high 32 bits of the seed, domain). `block` selects the 4-word block when more than
//! four numbers are needed for the same (step, purpose), e.g. one per release site.

/// Philox multiplier for lane 0.
const M0: u32 = 0xD251_1F53;
/// Philox multiplier for lane 2.
const M1: u32 = 0xCD9E_8D57;
/// Weyl key increment for key word 0 (golden ratio).
const W0: u32 = 0x9E37_79B9;
/// Weyl key increment for key word 1 (sqrt(3) - 1).
const W1: u32 = 0xBB67_AE85;

/// Which kind of entity a stream belongs to (counter word 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Domain {
    /// Per-synapse streams (release, refilling, recycling, asynchronous release).
    Synapse = 0,
    /// Per-neuron streams (Poisson sources, miniature release thinning).
    Neuron = 1,
    /// Network construction (connectivity, weights, delays, initial values).
    Build = 2,
}

/// What a draw is used for (low byte of counter word 1). Distinct purposes never
/// share numbers within one (entity, step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Purpose {
    /// Refilling of empty release sites (§3.2 step 1).
    Refill = 1,
    /// Synchronous release per occupied site (§3.2 step 4).
    Release = 2,
    /// Asynchronous release decision per site (§3.4).
    AsyncRelease = 3,
    /// Asynchronous release latency per site (§3.4).
    AsyncDelay = 4,
    /// Return of endocytosed vesicles to the reserve pool (§3.2 step 7).
    Recycle = 5,
    /// Miniature (spontaneous) release thinning per neuron (§3.4).
    Spontaneous = 6,
    /// Poisson spike sources.
    Poisson = 7,
    /// Network construction streams.
    Build = 8,
}

/// One Philox round on the 4-word counter with the 2-word key.
#[inline]
fn round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let p0 = (M0 as u64) * (c[0] as u64);
    let p1 = (M1 as u64) * (c[2] as u64);
    let hi0 = (p0 >> 32) as u32;
    let lo0 = p0 as u32;
    let hi1 = (p1 >> 32) as u32;
    let lo1 = p1 as u32;
    [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
}

/// Philox4x32 with 10 rounds: four independent 32-bit words per (counter, key).
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for i in 0..10 {
        if i > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        c = round(c, k);
    }
    c
}

/// Uniform number in the open interval (0, 1) from one 32-bit word:
/// `((x >> 9) + 0.5) * 2^-23`, exact in f32 (at most 24 significant bits), between 2^-24 and
/// 1 - 2^-24. Never exactly 0 or 1, so `u < p` is false for p = 0 and true for p = 1, and a
/// tiny p is not accepted once in 2^24 draws (DESIGN.md, determinism contract). A
/// probability below 2^-24 is therefore treated as 0 by the step kernels.
#[inline]
pub fn u01(x: u32) -> f32 {
    ((x >> 9) as f32 + 0.5) * (1.0 / 8_388_608.0)
}

/// Uniform number in the open interval (0, 1) with 52 random bits from two words:
/// `((hi << 20 | lo >> 12) + 0.5) * 2^-52`, exact in f64. Used by network construction,
/// where probabilities can be astronomically small (distance profiles) and are compared
/// in f64.
#[inline]
pub fn u01_f64(hi: u32, lo: u32) -> f64 {
    let bits = ((hi as u64) << 20) | (lo as u64 >> 12);
    (bits as f64 + 0.5) * (1.0 / 4_503_599_627_370_496.0)
}

/// Four uniforms in (0, 1) for (seed, domain, entity, step, purpose, block).
#[inline]
pub fn uniform4(
    seed: u64,
    domain: Domain,
    entity: u32,
    step: u32,
    purpose: Purpose,
    block: u32,
) -> [f32; 4] {
    let w = philox4x32_10(
        [
            step,
            purpose as u32 | (block << 8),
            (seed >> 32) as u32,
            domain as u32,
        ],
        [entity, seed as u32],
    );
    [u01(w[0]), u01(w[1]), u01(w[2]), u01(w[3])]
}

/// How many entities [`uniform4_lanes`] draws for at once.
pub const LANES: usize = 8;

/// [`uniform4`] for [`LANES`] entities at once (the same seed, domain, step, purpose and
/// block): `out[w][l]` is word `w` of entity `entity[l]`, with the bits of [`uniform4`]
/// (the CPU's batched `release`; the GPU draws each entity's block in its own
/// invocation). With AVX2 the eight lanes' rounds run in vector registers
/// (`philox_lanes_avx2`), otherwise over arrays (`philox_lanes`).
#[inline(always)]
pub fn uniform4_lanes(
    seed: u64,
    domain: Domain,
    entity: &[u32; LANES],
    step: u32,
    purpose: Purpose,
    block: u32,
) -> [[f32; LANES]; 4] {
    let c = [
        [step; LANES],
        [purpose as u32 | (block << 8); LANES],
        [(seed >> 32) as u32; LANES],
        [domain as u32; LANES],
    ];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, tested just above.
        let w = unsafe { philox_lanes_avx2(c, entity, seed as u32) };
        return w.map(|w| w.map(u01));
    }
    philox_lanes(c, entity, seed as u32).map(|w| w.map(u01))
}

/// [`philox4x32_10`] of counters `c[.][l]` and keys (`entity[l]`, `k1`) for each lane: one
/// `round` per lane and round, over arrays.
#[inline(always)]
fn philox_lanes(mut c: [[u32; LANES]; 4], entity: &[u32; LANES], k1: u32) -> [[u32; LANES]; 4] {
    let mut k0 = *entity;
    let mut k1 = k1;
    for i in 0..10 {
        if i > 0 {
            for k in k0.iter_mut() {
                *k = k.wrapping_add(W0);
            }
            k1 = k1.wrapping_add(W1);
        }
        let mut n = [[0u32; LANES]; 4];
        for l in 0..LANES {
            let p0 = (M0 as u64) * (c[0][l] as u64);
            let p1 = (M1 as u64) * (c[2][l] as u64);
            n[0][l] = ((p1 >> 32) as u32) ^ c[1][l] ^ k0[l];
            n[1][l] = p1 as u32;
            n[2][l] = ((p0 >> 32) as u32) ^ c[3][l] ^ k1;
            n[3][l] = p0 as u32;
        }
        c = n;
    }
    c
}

/// [`philox_lanes`] in AVX2 registers, a word of the eight lanes per register: the 32×32→64
/// products of the even and the odd lanes (`vpmuludq` multiplies the low halves of 64-bit
/// elements), and their high and low halves put back in lane order by blends.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn philox_lanes_avx2(
    c: [[u32; LANES]; 4],
    entity: &[u32; LANES],
    k1: u32,
) -> [[u32; LANES]; 4] {
    use std::arch::x86_64::*;
    const _: () = assert!(LANES == 8);
    // SAFETY (loads and stores): each array is eight 4-byte lanes, one 32-byte register.
    let load = |a: &[u32; LANES]| unsafe { _mm256_loadu_si256(a.as_ptr().cast()) };
    let [mut c0, mut c1, mut c2, mut c3] = [load(&c[0]), load(&c[1]), load(&c[2]), load(&c[3])];
    let mut k0 = load(entity);
    let mut k1 = _mm256_set1_epi32(k1 as i32);
    let (m0, m1) = (_mm256_set1_epi64x(M0 as i64), _mm256_set1_epi64x(M1 as i64));
    let (w0, w1) = (_mm256_set1_epi32(W0 as i32), _mm256_set1_epi32(W1 as i32));
    // (high, low) halves of x·m for the eight lanes of x.
    let mul = |x: __m256i, m: __m256i| {
        let even = _mm256_mul_epu32(x, m);
        let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(x), m);
        (
            _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd),
            _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd)),
        )
    };
    for i in 0..10 {
        if i > 0 {
            k0 = _mm256_add_epi32(k0, w0);
            k1 = _mm256_add_epi32(k1, w1);
        }
        let (hi0, lo0) = mul(c0, m0);
        let (hi1, lo1) = mul(c2, m1);
        c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), k0);
        c1 = lo1;
        c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), k1);
        c3 = lo0;
    }
    [c0, c1, c2, c3].map(|v| {
        let mut a = [0u32; LANES];
        unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast(), v) };
        a
    })
}

/// The `i`-th uniform of (seed, domain, entity, step, purpose): lane `i % 4` of block `i / 4`.
#[inline]
pub fn uniform_at(
    seed: u64,
    domain: Domain,
    entity: u32,
    step: u32,
    purpose: Purpose,
    i: u32,
) -> f32 {
    uniform4(seed, domain, entity, step, purpose, i / 4)[(i % 4) as usize]
}

/// The uniforms of one (seed, domain, entity, step, purpose), read by index with the
/// current 4-word block cached: `at(i)` equals [`uniform_at`] but runs Philox once per
/// four consecutive indices.
#[derive(Clone, Copy, Debug)]
pub struct Lanes {
    seed: u64,
    domain: Domain,
    entity: u32,
    step: u32,
    purpose: Purpose,
    block: u32,
    vals: [f32; 4],
}

impl Lanes {
    /// Draws of `purpose` for `entity` at `step`.
    #[inline]
    pub fn new(seed: u64, domain: Domain, entity: u32, step: u32, purpose: Purpose) -> Self {
        Self {
            seed,
            domain,
            entity,
            step,
            purpose,
            block: u32::MAX,
            vals: [0.0; 4],
        }
    }

    /// The `i`-th uniform.
    #[inline]
    pub fn at(&mut self, i: u32) -> f32 {
        let b = i / 4;
        if b != self.block {
            self.vals = uniform4(
                self.seed,
                self.domain,
                self.entity,
                self.step,
                self.purpose,
                b,
            );
            self.block = b;
        }
        self.vals[(i % 4) as usize]
    }
}

/// A sequential stream of uniforms for host-side work (network construction, initial
/// values). Not used inside the step kernels, whose draws are addressed explicitly.
#[derive(Clone, Debug)]
pub struct Stream {
    seed: u64,
    entity: u32,
    tag: u32,
    next: u32,
    buf: [u32; 4],
    used: usize,
}

impl Stream {
    /// A stream for one construction task (`tag`) and entity (e.g. a target neuron).
    pub fn new(seed: u64, tag: u32, entity: u32) -> Self {
        Self {
            seed,
            entity,
            tag,
            next: 0,
            buf: [0; 4],
            used: 4,
        }
    }

    /// Next raw 32-bit word.
    fn word(&mut self) -> u32 {
        if self.used == 4 {
            let w = philox4x32_10(
                [
                    self.tag,
                    Purpose::Build as u32,
                    (self.seed >> 32) as u32,
                    Domain::Build as u32,
                ],
                [
                    self.entity,
                    self.seed as u32 ^ self.next.wrapping_mul(0x85EB_CA6B),
                ],
            );
            // The block counter lives in the key so that a stream never repeats for
            // 2^32 blocks; the counter words stay free for (tag, purpose, seed, domain).
            self.next = self.next.wrapping_add(1);
            self.buf = w;
            self.used = 0;
        }
        let x = self.buf[self.used];
        self.used += 1;
        x
    }

    /// Next uniform in (0, 1), f32 resolution (2^-23).
    pub fn uniform(&mut self) -> f32 {
        let w = self.word();
        u01(w)
    }

    /// Next uniform in (0, 1) with 52 random bits: for comparisons with probabilities that
    /// can be far below 2^-24, and for logarithms.
    pub fn uniform_f64(&mut self) -> f64 {
        let hi = self.word();
        let lo = self.word();
        u01_f64(hi, lo)
    }

    /// Next uniform in (0, 1), safe for logarithms, in f64.
    pub fn uniform_open(&mut self) -> f64 {
        self.uniform_f64()
    }

    /// Standard normal deviate (Box-Muller, one of the pair).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform_open();
        let u2 = self.uniform() as f64;
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in `0..n` (n > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        // 24-bit uniform times n, plus a second word for n above 2^16 to keep bias < 2^-24.
        let hi = (self.uniform() as f64) * n as f64;
        let lo = self.uniform() as f64 / 16_777_216.0 * n as f64;
        ((hi + lo) as u32).min(n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    /// Regression (correctness issue, item 1): the all-zero and all-one words must not map
    /// to 0 or 1, or `u < p` accepts any p > 0 once in 2^24 draws.
    #[test]
    fn uniforms_are_in_the_open_interval() {
        assert!(u01(0) > 0.0 && u01(0) == 2f32.powi(-24));
        assert!(u01(u32::MAX) < 1.0 && u01(u32::MAX) == 1.0 - 2f32.powi(-24));
        assert!(u01_f64(0, 0) > 0.0 && u01_f64(0, 0) < 1e-15);
        assert!(u01_f64(u32::MAX, u32::MAX) < 1.0);
        // The word 0 compared with a tiny probability is rejected, p = 1 always accepted.
        assert!(u01(0) >= 1e-30f32);
        assert!(u01(u32::MAX) < 1.0f32);
        // Distinct words stay distinct where their top 23 bits differ (no rounding).
        assert_ne!(u01(0x7FFF_FE00), u01(0x7FFF_FC00));
        let mut s = Stream::new(3, 1, 2);
        for _ in 0..1000 {
            let u = s.uniform_f64();
            assert!(u > 0.0 && u < 1.0);
        }
    }

    #[test]
    fn uniform_range_and_mean() {
        let n = 40_000u32;
        let mut sum = 0.0f64;
        for i in 0..n {
            let u = uniform_at(7, Domain::Synapse, 3, i, Purpose::Release, 0);
            assert!(u > 0.0 && u < 1.0);
            sum += u as f64;
        }
        let mean = sum / n as f64;
        // SE of the mean of U(0,1) is 1/sqrt(12 n) = 0.00144; accept 4 SE.
        assert!(
            (mean - 0.5).abs() < 4.0 * (1.0 / (12.0 * n as f64)).sqrt(),
            "mean {mean}"
        );
    }

    #[test]
    fn lanes_equal_uniform_at() {
        let mut l = Lanes::new(9, Domain::Synapse, 4, 77, Purpose::Refill);
        for i in [0u32, 1, 2, 3, 4, 9, 8, 31, 0] {
            assert_eq!(
                l.at(i),
                uniform_at(9, Domain::Synapse, 4, 77, Purpose::Refill, i)
            );
        }
    }

    #[test]
    fn uniform4_lanes_equal_uniform4() {
        let entity = [0, 1, 7, 4095, 65_536, 1 << 31, u32::MAX, 12_345];
        for (seed, step, block) in [
            (1u64, 0u32, 0u32),
            (1 << 40 | 9, 77, 1),
            (u64::MAX, u32::MAX, 3),
        ] {
            let got = uniform4_lanes(seed, Domain::Synapse, &entity, step, Purpose::Refill, block);
            for (l, &e) in entity.iter().enumerate() {
                let want = uniform4(seed, Domain::Synapse, e, step, Purpose::Refill, block);
                for w in 0..4 {
                    assert_eq!(got[w][l].to_bits(), want[w].to_bits(), "lane {l} word {w}");
                }
            }
        }
    }

    /// The array version of the lanes (the path without AVX2) has the bits of `uniform4`
    /// too.
    #[test]
    fn philox_lanes_equal_philox4x32_10() {
        let entity = [0, 1, 7, 4095, 65_536, 1 << 31, u32::MAX, 12_345];
        let c = [[5; LANES], [2 | (1 << 8); LANES], [9; LANES], [0; LANES]];
        let got = philox_lanes(c, &entity, 0xdead_beef);
        for (l, &e) in entity.iter().enumerate() {
            let want = philox4x32_10([5, 2 | (1 << 8), 9, 0], [e, 0xdead_beef]);
            for w in 0..4 {
                assert_eq!(got[w][l], want[w], "lane {l} word {w}");
            }
        }
    }

    #[test]
    fn streams_differ_by_purpose_entity_and_seed() {
        let a = uniform4(1, Domain::Synapse, 0, 5, Purpose::Release, 0);
        assert_ne!(a, uniform4(1, Domain::Synapse, 0, 5, Purpose::Refill, 0));
        assert_ne!(a, uniform4(1, Domain::Synapse, 1, 5, Purpose::Release, 0));
        assert_ne!(a, uniform4(2, Domain::Synapse, 0, 5, Purpose::Release, 0));
        assert_ne!(
            a,
            uniform4(1 << 40, Domain::Synapse, 0, 5, Purpose::Release, 0)
        );
        assert_eq!(a, uniform4(1, Domain::Synapse, 0, 5, Purpose::Release, 0));
    }
}
