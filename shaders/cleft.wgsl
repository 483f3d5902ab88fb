// cleft: one invocation per synapse of this step's active list (DESIGN.md kernel 3;
// §4, §5), dispatched indirectly (`plan_cleft`).
// CPU twin: src/backend/cpu/cleft.rs (same statements, same names, per slot).
//
// Clears transmitter (exact exponential or the DMS pulse), advances the receptor gates
// with T frozen at its mid-step value (§5.1), runs the GABA_B cascade (§5.2) and hands
// the linear decay of a cleared synapse to the neuron pool (§5.4). Nothing here adds
// into a neuron: the synapse's contributions (take-back amounts, conductances) and flags
// are stored with the synapse and its `touched` bit is set; `gather` then adds them per
// neuron in ascending synapse id, the CPU's order. Surviving synapses go to the next
// step's active list (order-free: every synapse is advanced independently).

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read> syn_types: array<SynType>;
@group(0) @binding(3) var<storage, read> receptors: array<Receptor>;
@group(0) @binding(4) var<storage, read> syn_static: array<u32>;
@group(0) @binding(5) var<storage, read_write> syn_u32: array<u32>;
@group(0) @binding(6) var<storage, read_write> syn_f32: array<f32>;
@group(0) @binding(7) var<storage, read_write> syn_flags: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> queues: array<atomic<u32>>;
// Declared for terminal.wgsl's functions, which this kernel does not call (the take-back,
// the one use of the tables here on the CPU, runs at activation in release.wgsl): not
// in the kernel's bind group.
@group(0) @binding(9) var<storage, read> pow_tables: array<PowTable>;

// backend::cpu::cleft::GABA_B_NEGLIGIBLE.
const GABA_B_NEGLIGIBLE: f32 = 1e-9f;

// True for NaN and ±inf.
fn not_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7F800000u) == 0x7F800000u;
}

@compute @workgroup_size(64)
fn cleft(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let k = invocation_index(gid);
    let parity = params.step & 1u;
    if (k >= atomicLoad(&queues[Q_ACTIVE_COUNT + parity])) {
        return;
    }
    let ns = params.n_synapses;
    let syn = atomicLoad(&queues[soff.active_list + parity * ns + k]);
    let dt = params.dt_ms;
    let t = params.step;
    let ty = syn_types[syn_type_of(syn)];
    let w = sf(SF_WEIGHT, syn);
    let first = ty.receptor_first;
    let nrec = ty.n_receptors;
    let base = soff.r + syn * soff.slot_stride;
    // This step's conductances.
    let cbase = soff.contrib + syn * soff.rec_stride;
    // A synapse re-activated in this step had its share taken back out of the neuron
    // pool at activation (`take_back` in release.wgsl: the CPU does it here, on the
    // slot's `fresh` step), which set its C_TAKE bit for `gather`.
    var cflags = 0u;
    // Transmitter seen by the receptors during this step (§5.1).
    var t_mm: f32;
    var cleared: bool;
    if (ty.cleft_pulse == 1u) {
        var left = su(S_PULSE_LEFT, syn);
        t_mm = 0.0f;
        if (left > 0u) {
            t_mm = sf(SF_PULSE_QUANTA, syn) * ty.pulse_mm;
        }
        if (left > 0u) {
            left = left - 1u;
        }
        su_set(S_PULSE_LEFT, syn, left);
        cleared = left == 0u;
        if (cleared) {
            sf_set(SF_CLEFT_MM, syn, 0.0f);
        } else {
            sf_set(SF_CLEFT_MM, syn, t_mm);
        }
    } else {
        let t_now = sf(SF_CLEFT_MM, syn);
        t_mm = t_now * ty.clear_half;
        let t_next = t_now * ty.clear_full;
        cleared = t_next < ty.clear_threshold_mm;
        if (cleared) {
            sf_set(SF_CLEFT_MM, syn, 0.0f);
        } else {
            sf_set(SF_CLEFT_MM, syn, t_next);
        }
    }
    let released = sf(SF_RELEASED, syn);
    var done = cleared || (ty.cleft_dependent == 0u && released == 0.0f);
    var g = array<f32, 3>(0.0f, 0.0f, 0.0f);
    for (var j = 0u; j < nrec; j = j + 1u) {
        let rc = receptors[first + j];
        if (rc.kind == RECEPTOR_KINETIC) {
            // r ← r_inf + (r - r_inf)·exp(-(αT + β)dt) (§5.1)
            let a = rc.alpha * t_mm;
            let kk = a + rc.beta;
            let r_inf = a / kk;
            let r = relax(r_inf, syn_f32[base + 2u * j], exp_sw(-kk * dt));
            syn_f32[base + 2u * j] = r;
            g[j] = rc.g_max_ns * w * r;
        } else if (rc.kind == RECEPTOR_GABA_B) {
            // R: frozen-T form with K1, K2; G ← G_inf + (G - G_inf)e^{-K4 dt} (§5.2).
            let r_old = syn_f32[base + 2u * j];
            let a = rc.alpha * t_mm;
            let kk = a + rc.beta;
            let r_inf = a / kk;
            let r_new = relax(r_inf, r_old, exp_sw(-kk * dt));
            let g_inf = rc.k3 * r_old / rc.k4;
            let gp = relax(g_inf, syn_f32[base + 2u * j + 1u], rc.decay_k4);
            syn_f32[base + 2u * j] = r_new;
            syn_f32[base + 2u * j + 1u] = gp;
            let gn = pow_sw(gp, rc.n_hill);
            let frac = gn / (gn + rc.k_d);
            g[j] = rc.g_max_ns * w * frac;
            done = done && r_new < 1e-6f && frac < GABA_B_NEGLIGIBLE;
        } else {
            // Exponential conductance: each quantum adds g_max·w to the pool (§6.4a).
            g[j] = rc.g_max_ns * w * released;
        }
    }
    if (not_finite(g[0]) || not_finite(g[1]) || not_finite(g[2])) {
        atomicMax(&queues[Q_NON_FINITE], 0xFFFFFFFFu - t);
        atomicMax(&queues[Q_NON_FINITE + 1u], 0xFFFFFFFFu - (soff.syn_base + syn));
    }
    for (var j = 0u; j < nrec; j = j + 1u) {
        let rc = receptors[first + j];
        syn_f32[cbase + j] = g[j];
        if (rc.kind == RECEPTOR_KINETIC && done) {
            // Hand-off: from now on dr/dt = -βr is linear and lives in the pool (§5.4).
            syn_f32[soff.handoff_r + syn * soff.handoff_stride + j] = syn_f32[base + 2u * j];
        }
    }
    if (done) {
        cflags = cflags | C_DONE;
        if (soff.handoff_stride > 0u) {
            su_set(S_HANDOFF_STEP, syn, t);
        } else {
            su_set(S_HANDOFF_STEP, syn, NO_HANDOFF);
        }
    } else {
        // The `released` report sums the quanta of the steps the synapse ends active.
        sf_set(SF_RELEASED_ACC, syn, sf(SF_RELEASED_ACC, syn) + released);
        let at = atomicAdd(&queues[Q_ACTIVE_COUNT + (parity ^ 1u)], 1u);
        atomicStore(&queues[soff.active_list + (parity ^ 1u) * ns + at], syn);
    }
    // The contribution flags for `gather` (present: this synapse is active), which
    // clears them with the touched bit.
    let words = (params.n_synapses + 31u) / 32u;
    if ((cflags & C_TAKE) != 0u) {
        atomicOr(&syn_flags[soff.cflags + (syn >> 5u)], 1u << (syn & 31u));
    }
    if ((cflags & C_DONE) != 0u) {
        atomicOr(&syn_flags[soff.cflags + words + (syn >> 5u)], 1u << (syn & 31u));
    }
    atomicOr(&syn_flags[soff.touched + (syn >> 5u)], 1u << (syn & 31u));
}
