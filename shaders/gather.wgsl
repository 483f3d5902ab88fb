// gather: one invocation per neuron, after `cleft` (DESIGN.md kernel 3b; §5.4, §6.4a).
// CPU twin: the per-neuron additions inside src/backend/cpu/cleft.rs, which visits the
// active synapses in ascending id.
//
// A neuron's incoming synapses are one contiguous id range (post-major order). This
// kernel walks the range's `touched` bits (set by `cleft`) in ascending id and applies
// each synapse's contributions to the neuron's conductances in the CPU's order: the
// take-back (pool minus the handed-off share, floored at 0), then the exp-receptor
// quanta or the hand-off into the pool, or the active conductance. Every sum is thus
// formed in the same order on both backends, with no float atomics. It clears the bits.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<uniform> offsets: ImageOffsets;
@group(0) @binding(3) var<storage, read> syn_types: array<SynType>;
@group(0) @binding(4) var<storage, read> receptors: array<Receptor>;
@group(0) @binding(5) var<storage, read> syn_static: array<u32>;
@group(0) @binding(6) var<storage, read> syn_f32: array<f32>;
@group(0) @binding(7) var<storage, read_write> syn_flags: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> g_ns: array<f32>;

fn syn_type_of(syn: u32) -> u32 {
    return syn_static[syn] & 0xFFFFu;
}

// Adds synapse `syn`'s contributions to neuron `n` (`cflags`: C_TAKE, C_DONE).
fn apply(n: u32, syn: u32, cflags: u32) {
    let ty = syn_types[syn_type_of(syn)];
    let tbase = soff.take + syn * soff.rec_stride;
    let cbase = soff.contrib + syn * soff.rec_stride;
    for (var j = 0u; j < ty.n_receptors; j = j + 1u) {
        let rc = receptors[ty.receptor_first + j];
        let idx = n * params.n_receptors + ty.receptor_first + j;
        let pool = offsets.g_pool + idx;
        let g = syn_f32[cbase + j];
        if (rc.kind == RECEPTOR_KINETIC) {
            if ((cflags & C_TAKE) != 0u) {
                g_ns[pool] = max(g_ns[pool] - syn_f32[tbase + j], 0.0f);
            }
            if ((cflags & C_DONE) != 0u) {
                g_ns[pool] = g_ns[pool] + g;
            } else {
                g_ns[idx] = g_ns[idx] + g;
            }
        } else if (rc.kind == RECEPTOR_GABA_B) {
            g_ns[idx] = g_ns[idx] + g;
        } else {
            g_ns[pool] = g_ns[pool] + g;
        }
    }
}

@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let n = invocation_index(gid);
    if (n >= params.n_neurons) {
        return;
    }
    let lo = syn_static[soff.in_offsets + n];
    let hi = syn_static[soff.in_offsets + n + 1u];
    if (lo == hi) {
        return;
    }
    for (var w = lo >> 5u; w * 32u < hi; w = w + 1u) {
        let base = w * 32u;
        var mine = 0xFFFFFFFFu;
        if (base < lo) {
            mine = mine & ~((1u << (lo - base)) - 1u);
        }
        if (hi - base < 32u) {
            mine = mine & ((1u << (hi - base)) - 1u);
        }
        let bits = atomicLoad(&syn_flags[soff.touched + w]) & mine;
        // The contribution flags (absent, so 0, when no synapse can be active).
        var take = 0u;
        var done = 0u;
        let words = (params.n_synapses + 31u) / 32u;
        if (soff.cflags != ABSENT && bits != 0u) {
            take = atomicLoad(&syn_flags[soff.cflags + w]) & mine;
            done = atomicLoad(&syn_flags[soff.cflags + words + w]) & mine;
        }
        var left = bits;
        while (left != 0u) {
            let b = firstTrailingBit(left);
            let bit = 1u << b;
            let cflags = select(0u, C_TAKE, (take & bit) != 0u) | select(0u, C_DONE, (done & bit) != 0u);
            apply(n, base + b, cflags);
            left = left & (left - 1u);
        }
        if (bits != 0u) {
            atomicAnd(&syn_flags[soff.touched + w], ~bits);
        }
        if (take != 0u) {
            atomicAnd(&syn_flags[soff.cflags + w], ~take);
        }
        if (done != 0u) {
            atomicAnd(&syn_flags[soff.cflags + words + w], ~done);
        }
    }
}
