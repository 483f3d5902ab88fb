// release: one invocation per synapse of this step's to-do list (DESIGN.md kernel 2;
// §1-§3), which holds every synapse with an event (spike arrival or asynchronous fusion,
// marked by `deliver`) or with miniature fusions drawn in the last step (`spontaneous`).
// CPU twins: src/backend/cpu/release.rs (`release`, then `activate`) and terminal.rs.
//
// The CPU processes the events of a synapse in (synapse, kind) order: its asynchronous
// fusions by ascending site, then its spike. Here one invocation owns the synapse and
// walks the fusion mask by ascending bit, then the spike flag: the same order, with no
// sorting. The quanta of the events, then the minis, go to the cleft (`activate`); a
// synapse that was not active takes a slot in this step's active list (atomic append:
// the list's order is never used, every slot is advanced independently by `cleft`).

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> soff: SynOffsets;
@group(0) @binding(2) var<storage, read> syn_types: array<SynType>;
@group(0) @binding(3) var<storage, read> pow_tables: array<PowTable>;
@group(0) @binding(4) var<storage, read> syn_static: array<u32>;
@group(0) @binding(5) var<storage, read_write> syn_u32: array<u32>;
@group(0) @binding(6) var<storage, read_write> syn_f32: array<f32>;
@group(0) @binding(7) var<storage, read_write> syn_flags: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> queues: array<atomic<u32>>;
// Per projection key: evoked events, failures, quanta (2^-16 units, 64-bit).
@group(0) @binding(9) var<storage, read_write> evoked: array<atomic<u32>>;
// Release log: [count, overflow, 0, 0], then (step, synapse, code, quanta bits) entries.
@group(0) @binding(10) var<storage, read_write> release_log: array<atomic<u32>>;
@group(0) @binding(11) var<storage, read> receptors: array<Receptor>;

// Log codes besides the site of an asynchronous fusion.
const LOG_SPIKE: u32 = 0xFFFFFFFFu;

// Adds q (quanta, ≥ 0) in 2^-16 units to the 64-bit counter at word `at` of `evoked`.
fn add_quanta(at: u32, q: f32) {
    let q16 = u32(round_half_away(q * 65536.0f));
    let lo = atomicAdd(&evoked[at], q16);
    if (lo + q16 < lo) {
        atomicAdd(&evoked[at + 1u], 1u);
    }
}

// Release probability per docked vesicle of a CA synapse (§2.1). Twin of
// backend::cpu::release::ca_release_probability.
fn ca_release_probability(ty: SynType, x_f: f32) -> f32 {
    if (ty.law == 0u) {
        let c_eff = ty.c_drive * (1.0f + ty.phi_f * x_f / (x_f + ty.k_f));
        let cn = pow_sw(c_eff, ty.hill_n);
        return ty.p_max * cn / (cn + ty.k_p_pow_n);
    }
    let cn = pow_sw(ty.c_drive, ty.hill_n);
    let f1 = ty.p_max * cn / (cn + ty.k_p_pow_n);
    return f1 + (1.0f - f1) * x_f / (x_f + ty.k_f);
}

// Synchronous release: one Bernoulli(p) per docked, uncommitted site; returns k.
fn release_sites(ty: SynType, syn: u32, t: u32, p: f32) -> u32 {
    let committed = su(S_COMMITTED, syn);
    var sites = su(S_SITES, syn);
    var k = 0u;
    var u = lanes_new(DOMAIN_SYNAPSE, soff.syn_base + syn, t, PURPOSE_RELEASE);
    for (var j = 0u; j < ty.n_sites; j = j + 1u) {
        let bit = 1u << j;
        if ((sites & ~committed & bit) != 0u && lanes_at(&u, j) < p) {
            sites = sites & ~bit;
            k = k + 1u;
        }
    }
    su_set(S_SITES, syn, sites);
    return k;
}

// Asynchronous release (§3.4): each still-docked site commits with P_a = 1 - e^{-ρ_a p}
// and fuses after an Exp(τ_a) latency (≥ 1 step, truncated at the ring horizon). The
// fusion goes to the ring row of its step; a full row counts an overflow (reported by
// the backend, never dropped silently).
fn schedule_async(ty: SynType, syn: u32, t: u32, p: f32) {
    let p_a = 1.0f - exp_sw(-ty.async_rho * p);
    var committed = su(S_COMMITTED, syn);
    let sites = su(S_SITES, syn);
    var ua = lanes_new(DOMAIN_SYNAPSE, soff.syn_base + syn, t, PURPOSE_ASYNC_RELEASE);
    var ud = lanes_new(DOMAIN_SYNAPSE, soff.syn_base + syn, t, PURPOSE_ASYNC_DELAY);
    for (var j = 0u; j < ty.n_sites; j = j + 1u) {
        let bit = 1u << j;
        if ((sites & ~committed & bit) != 0u && lanes_at(&ua, j) < p_a) {
            committed = committed | bit;
            let u = lanes_at(&ud, j);
            let lat = -ty.tau_async_steps * ln_sw(1.0f - u);
            let steps = clamp(u32(min(round_half_away(lat), 4.0e9f)), 1u, ty.max_async_steps);
            let row = (t + steps) % soff.async_len;
            let at = atomicAdd(&queues[Q_ROW_COUNTS + row], 1u);
            if (at < soff.async_cap) {
                let w = soff.async_ring + (row * soff.async_cap + at) * 2u;
                atomicStore(&queues[w], syn);
                atomicStore(&queues[w + 1u], j);
            } else {
                atomicAdd(&queues[Q_ASYNC_OVERFLOW], 1u);
                atomicMax(&queues[Q_OVERFLOW_STEP], 0xFFFFFFFFu - t);
            }
        }
    }
    su_set(S_COMMITTED, syn, committed);
}

// Release with probability p of a spike arrival (CA or stochastic TM): the binomial
// release of the docked sites, the asynchronous commitments, and the released vesicles
// into endocytosis when the reserve pool is tracked; returns the quanta released.
fn release_vesicles(ty: SynType, syn: u32, t: u32, p: f32) -> u32 {
    let n = release_sites(ty, syn, t, p);
    if (ty.async_rho > 0.0f) {
        schedule_async(ty, syn, t, p);
    }
    if (ty.reserve_size > 0u) {
        su_set(S_ENDO, syn, su(S_ENDO, syn) + n);
    }
    return n;
}

// Re-activation of a synapse that handed its receptors to the neuron pool at step `prev`
// (§5.4): its share comes back out of the pool in this step's `gather` (the take-back
// amounts and the C_TAKE bit), and its open fraction resumes from the hand-off value.
// CPU twin: the take-back on a slot's `fresh` step at the start of backend::cpu::cleft,
// the same statements; here they run at activation, so no synapse keeps its previous
// hand-off step until `cleft`.
fn take_back(ty: SynType, syn: u32, t: u32, prev: u32) {
    let held = t - prev;
    let w = sf(SF_WEIGHT, syn);
    for (var j = 0u; j < ty.n_receptors; j = j + 1u) {
        let rc = receptors[ty.receptor_first + j];
        if (rc.kind != RECEPTOR_KINETIC) {
            continue;
        }
        let r_h = syn_f32[soff.handoff_r + syn * soff.handoff_stride + j];
        // The pool holds r_h·e^{-β(t - t_h)} for this step; own r at the end of the
        // previous step is r_h·e^{-β(t - 1 - t_h)}.
        syn_f32[soff.take + syn * soff.rec_stride + j] = rc.g_max_ns * w * r_h * pow_decay(rc.tab_beta, held);
        syn_f32[soff.r + syn * soff.slot_stride + 2u * j] = r_h * pow_decay(rc.tab_beta, held - 1u);
    }
    atomicOr(&syn_flags[soff.cflags + (syn >> 5u)], 1u << (syn & 31u));
}

@compute @workgroup_size(64)
fn release(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let k = invocation_index(gid);
    let parity = params.step & 1u;
    if (k >= atomicLoad(&queues[Q_TODO_COUNT])) {
        return;
    }
    let ns = params.n_synapses;
    let syn = atomicLoad(&queues[soff.todo + k]);
    // Off the to-do list: the next event (this step's minis drawn by `spontaneous`, the
    // next step's arrivals) lists it again.
    atomicAnd(&syn_flags[soff.claim + (syn >> 5u)], ~(1u << (syn & 31u)));
    let t = params.step;
    let ty = syn_types[syn_type_of(syn)];
    var fuse = 0u;
    if (soff.fuse != ABSENT) {
        fuse = atomicExchange(&syn_flags[soff.fuse + syn], 0u);
    }
    let spike_bit = 1u << (syn & 31u);
    let spike_word = atomicAnd(&syn_flags[soff.spike + (syn >> 5u)], ~spike_bit);
    let spike = select(0u, 1u, (spike_word & spike_bit) != 0u);
    var quanta = 0.0f;
    if (fuse != 0u || spike != 0u) {
        advance_terminal(ty, syn, t);
    }
    // Asynchronous fusions of committed sites, ascending site (§3.4).
    var mask = fuse;
    while (mask != 0u) {
        let bit = 1u << firstTrailingBit(mask);
        mask = mask & ~bit;
        var q = 0.0f;
        let committed = su(S_COMMITTED, syn);
        if ((committed & bit) != 0u) {
            su_set(S_COMMITTED, syn, committed & ~bit);
            su_set(S_SITES, syn, su(S_SITES, syn) & ~bit);
            if (ty.reserve_size > 0u) {
                su_set(S_ENDO, syn, su(S_ENDO, syn) + 1u);
            }
            q = 1.0f;
        }
        if (watched(syn)) {
            log_release(t, syn, firstTrailingBit(bit), q);
        }
        quanta = quanta + q;
    }
    if (spike != 0u) {
        var q = 0.0f;
        if (ty.release == RELEASE_CA) {
            // (3) p from X_F just before this AP; (4) binomial release; (5) async;
            // (6) Ca increments after p (§3.2).
            let p = ca_release_probability(ty, sf(SF_X_F, syn));
            let n = release_vesicles(ty, syn, t, p);
            sf_set(SF_X_F, syn, sf(SF_X_F, syn) + ty.c_drive);
            sf_set(SF_X_D, syn, sf(SF_X_D, syn) + ty.c_drive);
            q = f32(n);
        } else if (ty.release == RELEASE_TM_STOCHASTIC) {
            // u_n = U + u_{n-1}(1-U)e^{-Δ/τ_fac} (§2.2).
            let u = ty.tm_u + sf(SF_X_F, syn);
            let n = release_vesicles(ty, syn, t, u);
            sf_set(SF_X_F, syn, u * (1.0f - ty.tm_u));
            q = f32(n);
        } else if (ty.release == RELEASE_STATIC) {
            q = 1.0f;
        } else {
            // Mean TM: amplitude N·u_n·x_n, then x ← x - u·x (§2.2).
            let u = ty.tm_u + sf(SF_X_F, syn);
            let x = sf(SF_X_D, syn);
            q = f32(ty.n_sites) * u * x;
            sf_set(SF_X_D, syn, x - u * x);
            sf_set(SF_X_F, syn, u * (1.0f - ty.tm_u));
        }
        // Evoked release per projection key (the run summary) and the log.
        let key = (syn_static[syn] >> 16u) * 4u;
        atomicAdd(&evoked[key], 1u);
        if (q == 0.0f) {
            atomicAdd(&evoked[key + 1u], 1u);
        }
        add_quanta(key + 2u, q);
        if (watched(syn)) {
            log_release(t, syn, LOG_SPIKE, q);
        }
        quanta = quanta + q;
    }
    // activate (§4.1): the events' quanta plus last step's minis enter the cleft.
    let minis = su(S_MINIS, syn);
    su_set(S_MINIS, syn, 0u);
    let total = quanta + f32(minis);
    // Run counters: events, and quanta in units of 2^-16 with a 64-bit carry.
    atomicAdd(&queues[Q_EVENTS], countOneBits(fuse) + min(spike, 1u));
    let q16 = u32(round_half_away(total * 65536.0f));
    let lo = atomicAdd(&queues[Q_QUANTA], q16);
    if (lo + q16 < lo) {
        atomicAdd(&queues[Q_QUANTA + 1u], 1u);
    }
    if (total > 0.0f && ty.cleft_dependent == 0u && su(S_HANDOFF_STEP, syn) != ACTIVE) {
        // Exp receptors only (§6.4a): no cleft or receptor state; each quantum adds
        // g_max·w to the neuron pool, which `gather` does, after the pools decayed, in
        // ascending synapse id (twin: backend::cpu::release::release_direct).
        let w = sf(SF_WEIGHT, syn);
        let cbase = soff.contrib + syn * soff.rec_stride;
        for (var j = 0u; j < ty.n_receptors; j = j + 1u) {
            let rc = receptors[ty.receptor_first + j];
            syn_f32[cbase + j] = rc.g_max_ns * w * total;
        }
        sf_set(SF_RELEASED_ACC, syn, sf(SF_RELEASED_ACC, syn) + total);
        atomicOr(&syn_flags[soff.touched + (syn >> 5u)], 1u << (syn & 31u));
    } else if (total > 0.0f) {
        let prev = su(S_HANDOFF_STEP, syn);
        if (prev != ACTIVE) {
            su_set(S_HANDOFF_STEP, syn, ACTIVE);
            sf_set(SF_CLEFT_MM, syn, 0.0f);
            su_set(S_PULSE_LEFT, syn, 0u);
            sf_set(SF_PULSE_QUANTA, syn, 0.0f);
            for (var j = 0u; j < soff.slot_stride; j = j + 1u) {
                syn_f32[soff.r + syn * soff.slot_stride + j] = 0.0f;
            }
            if (prev != NO_HANDOFF) {
                take_back(ty, syn, t, prev);
            }
            let at = atomicAdd(&queues[Q_ACTIVE_COUNT + parity], 1u);
            atomicStore(&queues[soff.active_list + parity * ns + at], syn);
        }
        sf_set(SF_RELEASED, syn, total);
        // Multivesicular release adds concentration in the shared cleft (§5.3).
        sf_set(SF_CLEFT_MM, syn, sf(SF_CLEFT_MM, syn) + total * ty.delta_t_mm);
        if (ty.cleft_pulse == 1u) {
            var still = 0.0f;
            if (su(S_PULSE_LEFT, syn) > 0u) {
                still = sf(SF_PULSE_QUANTA, syn);
            }
            sf_set(SF_PULSE_QUANTA, syn, still + total);
            su_set(S_PULSE_LEFT, syn, ty.pulse_steps);
        }
    }
}
