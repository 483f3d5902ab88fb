// spontaneous: one invocation per neuron (DESIGN.md kernel 6; §3.4).
// CPU twin: src/backend/cpu/spontaneous.rs (same statements, same names).
//
// Miniature release by exact thinning over the neuron's incoming synapses; an accepted
// fusion adds one to the synapse's mini count, released into the cleft in the next step
// by `release` (the CPU's pending_minis), and lists the synapse in the next step's
// to-do list. A neuron's incoming synapses belong to it alone, so no two invocations
// touch one synapse.

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read> syn_types: array<SynType>;
@group(0) @binding(3) var<storage, read> pow_tables: array<PowTable>;
@group(0) @binding(4) var<storage, read> syn_static: array<u32>;
@group(0) @binding(5) var<storage, read_write> syn_u32: array<u32>;
@group(0) @binding(6) var<storage, read_write> syn_f32: array<f32>;
@group(0) @binding(7) var<storage, read_write> syn_flags: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> queues: array<atomic<u32>>;
// Release log (release.wgsl): one entry of one quantum per mini of a watched synapse,
// merged per (step, synapse) by the host as the CPU merges pending minis.
@group(0) @binding(9) var<storage, read_write> release_log: array<atomic<u32>>;

const LOG_MINI: u32 = 0xFFFFFFFEu;

// Largest Poisson mean drawn by inversion from one uniform (spontaneous::MAX_INVERSION_MEAN).
const MAX_INVERSION_MEAN: f32 = 10.0f;

// Poisson deviate by inversion from one uniform (spontaneous::poisson_inverse).
fn poisson_inverse(u: f32, mean: f32) -> u32 {
    var k = 0u;
    var p = exp_sw(-mean);
    var cdf = p;
    while (u > cdf && k < 1000u) {
        k = k + 1u;
        p = p * (mean / f32(k));
        cdf = cdf + p;
        if (p == 0.0f) {
            break;
        }
    }
    return k;
}

@compute @workgroup_size(64)
fn spontaneous(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let n = invocation_index(gid);
    if (n >= params.n_neurons || soff.rate_max <= 0.0f) {
        return;
    }
    let t = params.step;
    let lo = syn_static[soff.in_offsets + n];
    let n_in = syn_static[soff.in_offsets + n + 1u] - lo;
    if (n_in == 0u) {
        return;
    }
    let mean_total = soff.rate_max * f32(soff.sites_max) * f32(n_in);
    let chunks = u32(max(ceil(mean_total / MAX_INVERSION_MEAN), 1.0f));
    let mean = mean_total / f32(chunks);
    var draw = 0u;
    var k_total = 0u;
    var u = lanes_new(DOMAIN_NEURON, params.neuron_base + n, t, PURPOSE_SPONTANEOUS);
    for (var c = 0u; c < chunks; c = c + 1u) {
        k_total = k_total + poisson_inverse(lanes_at(&u, draw), mean);
        draw = draw + 1u;
    }
    for (var e = 0u; e < k_total; e = e + 1u) {
        let us = lanes_at(&u, draw);
        let uj = lanes_at(&u, draw + 1u);
        let ua = lanes_at(&u, draw + 2u);
        draw = draw + 3u;
        let syn = lo + min(u32(us * f32(n_in)), n_in - 1u);
        let site = min(u32(uj * f32(soff.sites_max)), soff.sites_max - 1u);
        let ty = syn_types[syn_type_of(syn)];
        if (site >= ty.n_sites || ua * soff.rate_max >= ty.spont_per_site_step) {
            continue;
        }
        advance_terminal(ty, syn, t);
        let bit = 1u << site;
        let sites = su(S_SITES, syn);
        if ((sites & ~su(S_COMMITTED, syn) & bit) != 0u) {
            su_set(S_SITES, syn, sites & ~bit);
            if (ty.reserve_size > 0u) {
                su_set(S_ENDO, syn, su(S_ENDO, syn) + 1u);
            }
            su_set(S_MINIS, syn, su(S_MINIS, syn) + 1u);
            if (watched(syn)) {
                log_release(t, syn, LOG_MINI, 1.0f);
            }
            // List the synapse for the next step: this step's release has cleared the
            // claim bits of the synapses it took, and the list is now the next step's.
            claim(syn);
        }
    }
}
