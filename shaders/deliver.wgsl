// deliver: pops the arrivals and asynchronous fusions due in this step (DESIGN.md
// kernel 1; §7).
// CPU twin: src/backend/cpu/deliver.rs (which pops the CPU's ring row and sorts it; here
// no order is needed, and the arrivals come from the arrival pool's segments).
//
// One invocation per entry of three ranges, dispatched indirectly (`plan_deliver`):
// the synapses active at the start of the step (their `released` count restarts from 0,
// as `activate` does on the CPU), this step's spike arrivals (the spike bit; for each
// delay class d, its segment of the block `propagate` wrote at step t - d) and its
// asynchronous fusions (a bit of the fusion mask, atomicOr). The first to mark a synapse
// (atomicOr on its claim bit finds it clear) appends it to this step's to-do list, so
// every synapse is listed once, whatever the order of the entries.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read_write> syn_f32: array<f32>;
@group(0) @binding(3) var<storage, read_write> syn_flags: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> queues: array<atomic<u32>>;

// Declared for events.wgsl's release log, which this kernel does not write: not in its
// bind group.
@group(0) @binding(5) var<storage, read_write> release_log: array<atomic<u32>>;

@compute @workgroup_size(64)
fn deliver(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let k = invocation_index(gid);
    let ns = params.n_synapses;
    let t = params.step;
    let parity = t & 1u;
    let arow = t % soff.async_len;
    let nc = soff.classes;
    let n_active = atomicLoad(&queues[Q_ACTIVE_COUNT + parity]);
    let n_arrivals = atomicLoad(&queues[soff.prefix + nc]);
    let n_async = min(atomicLoad(&queues[Q_ROW_COUNTS + arow]), soff.async_cap);
    if (k < n_active) {
        let syn = atomicLoad(&queues[soff.active_list + parity * ns + k]);
        // Only active synapses are listed here, so the section is present.
        syn_f32[soff.f_at[SF_RELEASED / 4u][SF_RELEASED % 4u] + syn] = 0.0f;
        return;
    }
    let a = k - n_active;
    if (a < n_arrivals) {
        // The class whose segment holds arrival a: the last c with prefix[c] ≤ a
        // (prefix[0] = 0 ≤ a < prefix[nc], so the segment is not empty).
        var lo = 0u;
        var hi = nc;
        while (hi - lo > 1u) {
            let mid = (lo + hi) / 2u;
            if (atomicLoad(&queues[soff.prefix + mid]) <= a) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let d = atomicLoad(&queues[soff.class_delay + lo]);
        let b = (t + soff.ring_len - d) % soff.ring_len;
        let first = atomicLoad(&queues[soff.seg_start + b * nc + lo]);
        let at = (first + (a - atomicLoad(&queues[soff.prefix + lo]))) % soff.pool_cap;
        let syn = atomicLoad(&queues[soff.pool + at]);
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
