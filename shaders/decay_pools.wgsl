// decay_pools: one invocation per (neuron, receptor) entry, before `cleft` (§5.4, §6.4a).
// CPU twin: src/backend/cpu/decay_pools.rs (same statements, same names).
//
// The active sums restart from 0 and the pooled conductances decay by one step (kinetic
// hand-offs by e^{-β dt}, exp receptors by e^{-dt/τ}); subnormal pools are flushed.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> offsets: ImageOffsets;
@group(0) @binding(2) var<storage, read> receptors: array<Receptor>;
@group(0) @binding(3) var<storage, read_write> g_ns: array<f32>;

@compute @workgroup_size(64)
fn decay_pools(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let idx = invocation_index(gid);
    if (idx >= params.n_neurons * params.n_receptors) {
        return;
    }
    let rc = receptors[idx % params.n_receptors];
    g_ns[offsets.g_pool + idx] = flush_subnormal(g_ns[offsets.g_pool + idx] * rc.decay);
    g_ns[idx] = 0.0f;
}
