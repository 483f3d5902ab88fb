// propagate: one invocation per neuron of the network, for the synapses of one chunk,
// after `integrate` of every chunk (DESIGN.md kernel 5; §7).
// CPU twin: src/backend/cpu/propagate.rs, which appends each arrival to the ring row of
// step + delay_steps. Here the arrivals of the step's spikes form one block of the arrival
// pool (layout::SynOffsets), grouped by delay class, in three entry points:
// `propagate_count` counts them per class, `propagate_scan` places the block at the
// pool's head, and `propagate` writes each arrival into its class's segment (atomic
// cursors: `deliver` needs no order). A spike's outgoing entries of one class are one
// run, so a spike costs one atomic per class, not one per synapse. The pool holds at most
// the arrivals in flight that the refractory periods allow (gpu_syn::pool_per_neuron); a
// block that would overwrite live arrivals is not written and the overflow word stops
// the run.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read> syn_static: array<u32>;
@group(0) @binding(3) var<storage, read> spike_bits: array<u32>;
@group(0) @binding(4) var<storage, read_write> queues: array<atomic<u32>>;

// spike_bits: three words of the non-finite record, then the rows (integrate.wgsl).
const SPIKE_RECORD: u32 = 3u;

// True when neuron n spiked in this step.
fn spiked(n: u32) -> bool {
    let word = spike_bits[SPIKE_RECORD + params.batch_row * params.spike_words + (n >> 5u)];
    return (word & (1u << (n & 31u))) != 0u;
}

// Delay class of synapse `syn` (16 bits, two per word).
fn class_of(syn: u32) -> u32 {
    return (syn_static[soff.syn_class + (syn >> 1u)] >> ((syn & 1u) * 16u)) & 0xFFFFu;
}

// The end of the run of outgoing entries from `o` (before `hi`) in delay class `c`: a
// neuron's outgoing list in a chunk is sorted by class (gpu_syn::offsets), so each of its
// classes is one run, counted and reserved with one atomic.
fn run_end(o: u32, hi: u32, c: u32) -> u32 {
    var e = o + 1u;
    while (e < hi && class_of(syn_static[soff.out_syn + e]) == c) {
        e = e + 1u;
    }
    return e;
}

@compute @workgroup_size(64)
fn propagate_count(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let n = invocation_index(gid);
    if (n >= params.n_neurons_all || !spiked(n)) {
        return;
    }
    let row = (params.step % soff.ring_len) * soff.classes;
    let hi = syn_static[soff.out_offsets + n + 1u];
    var o = syn_static[soff.out_offsets + n];
    while (o < hi) {
        let c = class_of(syn_static[soff.out_syn + o]);
        let e = run_end(o, hi, c);
        atomicAdd(&queues[soff.seg_count + row + c], e - o);
        o = e;
    }
}

@compute @workgroup_size(1)
fn propagate_scan() {
    // Every entry point binds the same five resources (one bind group layout per row).
    _ = syn_static[0];
    _ = spike_bits[0];
    let t = params.step;
    let nb = soff.ring_len;
    let nc = soff.classes;
    let b = t % nb;
    let head = atomicLoad(&queues[soff.pool_head]);
    var total = 0u;
    for (var c = 0u; c < nc; c = c + 1u) {
        atomicStore(&queues[soff.seg_start + b * nc + c], (head + total) % soff.pool_cap);
        atomicStore(&queues[soff.cursor + c], 0u);
        total = total + atomicLoad(&queues[soff.seg_count + b * nc + c]);
    }
    // In flight after this step: the blocks of steps t - nb + 2 to t (the block of step
    // t - nb + 1 had its last arrivals in this step; delay_steps ≥ 1 makes nb ≥ 2).
    let dead = (t + 1u) % nb;
    let kept = atomicLoad(&queues[soff.pool_head + 1u]) - atomicLoad(&queues[soff.block_size + dead]);
    if (kept + total > soff.pool_cap) {
        atomicAdd(&queues[Q_ARRIVAL_OVERFLOW], kept + total - soff.pool_cap);
        atomicMax(&queues[Q_OVERFLOW_STEP], 0xFFFFFFFFu - t);
        // Not written: the segments stay empty and the run stops after the batch.
        for (var c = 0u; c < nc; c = c + 1u) {
            atomicStore(&queues[soff.seg_count + b * nc + c], 0u);
        }
        total = 0u;
    }
    atomicStore(&queues[soff.block_size + b], total);
    atomicStore(&queues[soff.pool_head + 1u], kept + total);
    atomicStore(&queues[soff.pool_head], (head + total) % soff.pool_cap);
}

@compute @workgroup_size(64)
fn propagate(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let n = invocation_index(gid);
    if (n >= params.n_neurons_all || !spiked(n)) {
        return;
    }
    let row = (params.step % soff.ring_len) * soff.classes;
    let hi = syn_static[soff.out_offsets + n + 1u];
    var o = syn_static[soff.out_offsets + n];
    while (o < hi) {
        let c = class_of(syn_static[soff.out_syn + o]);
        let e = run_end(o, hi, c);
        if (atomicLoad(&queues[soff.seg_count + row + c]) == 0u) {
            // The block was not placed (pool overflow): nothing is written.
            return;
        }
        // The run's places in its class's segment, then its arrivals.
        let at = atomicAdd(&queues[soff.cursor + c], e - o);
        let first = atomicLoad(&queues[soff.seg_start + row + c]) + at;
        for (var k = o; k < e; k = k + 1u) {
            let syn = syn_static[soff.out_syn + k];
            atomicStore(&queues[soff.pool + (first + (k - o)) % soff.pool_cap], syn);
        }
        o = e;
    }
}
