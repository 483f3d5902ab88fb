// propagate: one invocation per neuron of the network, for the synapses of one chunk,
// after `integrate` of every chunk (DESIGN.md kernel 5; §7).
// CPU twin: src/backend/cpu/propagate.rs.
//
// A neuron that spiked in this step (its bit in this step's spike row) schedules each of
// its outgoing synapses in the arrival row of step + delay_steps (atomic append; a row
// holds at most one arrival per synapse, so n_synapses entries never overflow, and
// `deliver` needs no order).

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read> syn_static: array<u32>;
@group(0) @binding(3) var<storage, read> spike_bits: array<u32>;
@group(0) @binding(4) var<storage, read_write> queues: array<atomic<u32>>;

// spike_bits: three words of the non-finite record, then the rows (integrate.wgsl).
const SPIKE_RECORD: u32 = 3u;

@compute @workgroup_size(64)
fn propagate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    opaque_zero = params.zero;
    let n = invocation_index(gid, nwg);
    if (n >= params.n_neurons_all) {
        return;
    }
    let word = spike_bits[SPIKE_RECORD + params.batch_row * params.spike_words + (n >> 5u)];
    if ((word & (1u << (n & 31u))) == 0u) {
        return;
    }
    let ns = params.n_synapses;
    let hi = syn_static[soff.out_offsets + n + 1u];
    for (var o = syn_static[soff.out_offsets + n]; o < hi; o = o + 1u) {
        let syn = syn_static[soff.out_syn + o];
        // delay_steps ≥ 1 (§7), so nothing lands in the row being processed.
        let delay = (syn_static[soff.delay + (syn >> 1u)] >> ((syn & 1u) * 16u)) & 0xFFFFu;
        let row = (params.step + delay) % soff.ring_len;
        let at = atomicAdd(&queues[Q_ROW_COUNTS + row], 1u);
        atomicStore(&queues[soff.arrivals + row * ns + at], syn);
    }
}
