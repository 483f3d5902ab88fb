// philox.wgsl: Philox4x32-10 (Salmon et al. 2011) and the uniforms drawn from it.
// Twin of src/philox.rs: the same counter and key layout, the same words, the same
// uniforms. WGSL has no 64-bit integers without an extension, so the 32x32 -> 64-bit
// products are built from 16-bit limbs; the test `philox_on_the_gpu_matches_rust`
// compares every word with the Rust u64 product.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// Domains and purposes (philox::Domain, philox::Purpose).
const DOMAIN_SYNAPSE: u32 = 0u;
const DOMAIN_NEURON: u32 = 1u;
const PURPOSE_REFILL: u32 = 1u;
const PURPOSE_RELEASE: u32 = 2u;
const PURPOSE_ASYNC_RELEASE: u32 = 3u;
const PURPOSE_ASYNC_DELAY: u32 = 4u;
const PURPOSE_RECYCLE: u32 = 5u;
const PURPOSE_SPONTANEOUS: u32 = 6u;
const PURPOSE_POISSON: u32 = 7u;

// (high, low) words of the 64-bit product a·b.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    // Carry out of the low word: the high half of ll plus the low halves of the cross terms.
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

// Ten rounds on the counter c with the key k (philox::philox4x32_10).
fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var i = 0u; i < 10u; i = i + 1u) {
        if (i > 0u) {
            k = vec2<u32>(k.x + PHILOX_W0, k.y + PHILOX_W1);
        }
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// Uniform on the open interval (0, 1): ((x >> 9) + 0.5)·2^-23, exact (philox::u01).
fn u01(x: u32) -> f32 {
    return (f32(x >> 9u) + 0.5f) * (1.0f / 8388608.0f);
}

// Four uniforms of (seed, domain, entity, step, purpose, block) (philox::uniform4).
fn uniform4(seed_lo: u32, seed_hi: u32, domain: u32, entity: u32, step: u32, purpose: u32, block: u32) -> vec4<f32> {
    let w = philox4x32_10(vec4<u32>(step, purpose | (block << 8u), seed_hi, domain), vec2<u32>(entity, seed_lo));
    return vec4<f32>(u01(w.x), u01(w.y), u01(w.z), u01(w.w));
}

// The i-th uniform: lane i % 4 of block i / 4 (philox::uniform_at).
fn uniform_at(seed_lo: u32, seed_hi: u32, domain: u32, entity: u32, step: u32, purpose: u32, i: u32) -> f32 {
    let v = uniform4(seed_lo, seed_hi, domain, entity, step, purpose, i / 4u);
    return v[i % 4u];
}
