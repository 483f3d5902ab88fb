// deliver: pops the delay-ring rows of this step (DESIGN.md kernel 1; §7).
// CPU twin: src/backend/cpu/deliver.rs (which also sorts; here no order is needed).
//
// One invocation per entry of three ranges, dispatched indirectly (`plan_deliver`):
// the synapses active at the start of the step (their `released` count restarts from 0,
// as `activate` does on the CPU), this step's spike arrivals (the spike bit) and its
// asynchronous fusions (a bit of the fusion mask, atomicOr). The first to mark a synapse
// (atomicMax on its claim stamp returns an older stamp) appends it to this step's to-do
// list, so every synapse is listed once, whatever the order of the entries.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read_write> syn_f32: array<f32>;
@group(0) @binding(3) var<storage, read_write> syn_flags: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> queues: array<atomic<u32>>;

// Lists synapse `syn` in the to-do list unless already listed (its claim bit; `release`
// clears it).
fn claim(syn: u32) {
    let bit = 1u << (syn & 31u);
    let old = atomicOr(&syn_flags[soff.claim + (syn >> 5u)], bit);
    if ((old & bit) == 0u) {
        let at = atomicAdd(&queues[Q_TODO_COUNT], 1u);
        atomicStore(&queues[soff.todo + at], syn);
    }
}

@compute @workgroup_size(64)
fn deliver(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    opaque_zero = params.zero;
    let k = invocation_index(gid, nwg);
    let ns = params.n_synapses;
    let t = params.step;
    let parity = t & 1u;
    let row = t % soff.ring_len;
    let arow = t % soff.async_len;
    let n_active = atomicLoad(&queues[Q_ACTIVE_COUNT + parity]);
    let n_arrivals = atomicLoad(&queues[Q_ROW_COUNTS + row]);
    let n_async = min(atomicLoad(&queues[Q_ROW_COUNTS + soff.ring_len + arow]), soff.async_cap);
    if (k < n_active) {
        let syn = atomicLoad(&queues[soff.active_list + parity * ns + k]);
        // Only active synapses are listed here, so the section is present.
        syn_f32[soff.f_at[SF_RELEASED / 4u][SF_RELEASED % 4u] + syn] = 0.0f;
        return;
    }
    let a = k - n_active;
    if (a < n_arrivals) {
        let syn = atomicLoad(&queues[soff.arrivals + row * ns + a]);
        atomicOr(&syn_flags[soff.spike + (syn >> 5u)], 1u << (syn & 31u));
        claim(syn);
        return;
    }
    let f = a - n_arrivals;
    if (f < n_async) {
        let w = soff.async_ring + (arow * soff.async_cap + f) * 2u;
        let syn = atomicLoad(&queues[w]);
        let site = atomicLoad(&queues[w + 1u]);
        // Asynchronous fusions exist only with the fusion masks present.
        atomicOr(&syn_flags[soff.fuse + syn], 1u << site);
        claim(syn);
    }
}
