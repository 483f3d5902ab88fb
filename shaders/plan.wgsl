// plan: one invocation that turns this step's GPU counters into the workgroup counts of
// the next indirect dispatch and empties the queues already consumed. Three entry
// points, one before each activity-dependent kernel of the step. The CPU dispatcher
// needs no twin: its loops run over the same lists' lengths.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read_write> queues: array<atomic<u32>>;
// Three (x, y, z) workgroup counts: deliver, release, cleft.
@group(0) @binding(3) var<storage, read_write> dispatch: array<u32>;

// Workgroup counts for n invocations: 1-D up to 65535 groups, 2-D beyond (invocation_index).
fn set_groups(at: u32, n: u32) {
    let g = max((n + WORKGROUP - 1u) / WORKGROUP, 1u);
    if (g <= GROUPS_X) {
        dispatch[at] = g;
        dispatch[at + 1u] = 1u;
    } else {
        dispatch[at] = GROUPS_X;
        dispatch[at + 1u] = (g + GROUPS_X - 1u) / GROUPS_X;
    }
    dispatch[at + 2u] = 1u;
}

@compute @workgroup_size(1)
fn plan_deliver() {
    let t = params.step;
    let parity = t & 1u;
    let arow = t % soff.async_len;
    let nb = soff.ring_len;
    let nc = soff.classes;
    // This step's arrivals: of each delay class (delay d), its segment of the block that
    // `propagate` wrote at step t - d; `deliver` finds an arrival's class in `prefix`.
    var total = 0u;
    for (var c = 0u; c < nc; c = c + 1u) {
        atomicStore(&queues[soff.prefix + c], total);
        let d = atomicLoad(&queues[soff.class_delay + c]);
        let b = (t + nb - d) % nb;
        total = total + atomicLoad(&queues[soff.seg_count + b * nc + c]);
    }
    atomicStore(&queues[soff.prefix + nc], total);
    // The block of step t - nb is dead (its longest delay, nb - 1, was due at t - 1):
    // this step's propagate counts its arrivals there from 0 (no delay reads it now).
    let now = t % nb;
    for (var c = 0u; c < nc; c = c + 1u) {
        atomicStore(&queues[soff.seg_count + now * nc + c], 0u);
    }
    let n = atomicLoad(&queues[Q_ACTIVE_COUNT + parity])
        + total
        + min(atomicLoad(&queues[Q_ROW_COUNTS + arow]), soff.async_cap);
    set_groups(0u, n);
}

@compute @workgroup_size(1)
fn plan_release() {
    let arow = params.step % soff.async_len;
    // deliver has consumed this step's asynchronous row.
    atomicStore(&queues[Q_ROW_COUNTS + arow], 0u);
    set_groups(3u, atomicLoad(&queues[Q_TODO_COUNT]));
}

@compute @workgroup_size(1)
fn plan_cleft() {
    // Every entry point binds the same four resources (one bind group layout per row).
    _ = soff.async_len;
    let parity = params.step & 1u;
    // release has consumed this step's to-do list, which now receives the minis that
    // `spontaneous` draws for the next step, then the next step's events; the other
    // active list (last step's) was consumed by last step's cleft and now receives this
    // step's survivors.
    atomicStore(&queues[Q_TODO_COUNT], 0u);
    atomicStore(&queues[Q_ACTIVE_COUNT + (parity ^ 1u)], 0u);
    set_groups(6u, atomicLoad(&queues[Q_ACTIVE_COUNT + parity]));
}
