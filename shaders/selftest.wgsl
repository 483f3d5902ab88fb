// selftest: evaluates the shared device functions (philox.wgsl, math.wgsl) on inputs
// given by the host, so that tests and `quantal validate` can compare them value by
// value with their Rust twins (src/philox.rs, src/math.rs) on the adapter in use.

@group(0) @binding(0) var<storage, read> words_in: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> words_out: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> x_out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> zero_in: array<u32>;

// Per invocation k: words_in[2k] is a counter, words_in[2k+1].xy a key; words_out[k] =
// Philox4x32-10(counter, key); words_out[k + n] = (hi, lo) of the products of the first
// two words of the counter, then u01 of its first word as bits.
@compute @workgroup_size(64)
fn selftest_philox(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = invocation_index(gid);
    let n = arrayLength(&words_in) / 2u;
    if (k >= n) {
        return;
    }
    let c = words_in[2u * k];
    let key = words_in[2u * k + 1u];
    words_out[k] = philox4x32_10(c, key.xy);
    let m = mulhilo(c.x, c.y);
    words_out[k + n] = vec4<u32>(m.x, m.y, bitcast<u32>(u01(c.x)), 0u);
}

// Per invocation k: x_out[k] = (exp_sw(x), ln_sw(x), pow_sw(x, 4), pow_sw(x, 2.5)).
@compute @workgroup_size(64)
fn selftest_math(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = zero_in[0];
    let k = invocation_index(gid);
    if (k >= arrayLength(&x_in)) {
        return;
    }
    let x = x_in[k];
    x_out[k] = vec4<f32>(exp_sw(x), ln_sw(x), pow_sw(x, 4.0f), pow_sw(x, 2.5f));
}
