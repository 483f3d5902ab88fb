// sample: one invocation per probe of a neuron variable, at the start of a sampled step
// (DESIGN.md "Reports sample the state at the start of a step").
// CPU twin: src/backend/cpu/sample.rs (same statements, same names).
//
// Writes row `sample_row` of the batch's sample ring: one f32 per probe, at the probe's
// column (probe_stride values per row, the probes of every chunk).

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> offsets: ImageOffsets;
@group(0) @binding(2) var<storage, read> receptors: array<Receptor>;
@group(0) @binding(3) var<storage, read> g_ns: array<f32>;
@group(0) @binding(4) var<storage, read> neuron_f32: array<f32>;
@group(0) @binding(5) var<storage, read> neuron_u32: array<u32>;
// Per probe of this chunk: (code, neuron within the chunk, column in the sample row, 0).
@group(0) @binding(6) var<storage, read> probes: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read_write> samples: array<f32>;

// Conductance of receptor ri on neuron n (receptor_conductance at the current V).
fn receptor_g(n: u32, ri: u32) -> f32 {
    let idx = n * params.n_receptors + ri;
    let v = neuron_f32[F_V_MV * params.n_neurons + n];
    return receptor_conductance(receptors[ri], g_ns[idx], g_ns[offsets.g_pool + idx], v, params.mg_o_mm);
}

@compute @workgroup_size(64)
fn sample(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let k = invocation_index(gid);
    if (k >= params.n_probes) {
        return;
    }
    let code = probes[k].x;
    let n = probes[k].y;
    let nn = params.n_neurons;
    var x = 0.0f;
    if (code == PROBE_V) {
        x = neuron_f32[F_V_MV * nn + n];
    } else if (code == PROBE_G_RR) {
        x = neuron_f32[F_G_RR_NS * nn + n];
    } else if (code == PROBE_G_SFA) {
        x = neuron_f32[F_G_SFA_NS * nn + n];
    } else if (code == PROBE_THETA) {
        x = neuron_f32[F_THETA_MV * nn + n];
    } else if (code == PROBE_REFRACTORY) {
        x = select(0.0f, 1.0f, neuron_u32[U_REFR * nn + n] > 0u);
    } else if (code == PROBE_I_EXT) {
        x = neuron_f32[F_I_EXT_PA * nn + n];
    } else if (code == PROBE_G_SYN_TOTAL) {
        for (var ri = 0u; ri < params.n_receptors; ri = ri + 1u) {
            x += receptor_g(n, ri);
        }
    } else if (code == PROBE_M) {
        x = neuron_f32[F_HH_M * nn + n];
    } else if (code == PROBE_H) {
        x = neuron_f32[F_HH_H * nn + n];
    } else if (code == PROBE_N) {
        x = neuron_f32[F_HH_N * nn + n];
    } else if (code >= PROBE_RECEPTOR) {
        x = receptor_g(n, code - PROBE_RECEPTOR);
    }
    samples[params.sample_row * params.probe_stride + probes[k].z] = x;
}
