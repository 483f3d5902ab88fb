// terminal.wgsl: the presynaptic terminal, shared by the synapse kernels that include it
// (release, cleft, spontaneous, sample_synapse). `syn` is a synapse's id within its chunk,
// `soff.syn_base + syn` its global id (random streams). Twins: src/backend/cpu/terminal.rs (advance_terminal),
// src/backend/cpu/release.rs (ca_release_probability), model::pow_decay and
// philox::Lanes. Each including kernel declares `params`, `soff`, `syn_types`,
// `pow_tables`, `syn_static`, `syn_u32` and `syn_f32`.

// The uniforms of one (domain, entity, step, purpose) with the current block of four
// cached (philox::Lanes): lanes_at(l, i) equals uniform_at(.., i).
struct Lanes {
    domain: u32,
    entity: u32,
    step: u32,
    purpose: u32,
    block: u32,
    vals: vec4<f32>,
};

fn lanes_new(domain: u32, entity: u32, step: u32, purpose: u32) -> Lanes {
    return Lanes(domain, entity, step, purpose, 0xFFFFFFFFu, vec4<f32>(0.0f));
}

fn lanes_at(l: ptr<function, Lanes>, i: u32) -> f32 {
    let b = i / 4u;
    if (b != (*l).block) {
        (*l).vals = uniform4(params.seed_lo, params.seed_hi, (*l).domain, (*l).entity, (*l).step, (*l).purpose, b);
        (*l).block = b;
    }
    return (*l).vals[i % 4u];
}

// exp(-Δ·dt/τ) from pow table `tab`: the product of the entries of Δ's set bits,
// ascending (model::pow_decay).
fn pow_decay(tab: u32, delta_steps: u32) -> f32 {
    var out = 1.0f;
    var d = delta_steps;
    var b = 0u;
    while (d != 0u) {
        // A select, not a branch, as the CPU twin (·1 is exact).
        out = out * select(1.0f, pow_tables[tab].f[b], (d & 1u) == 1u);
        d = d >> 1u;
        b = b + 1u;
    }
    return out;
}

// Rust's f32::round for x ≥ 0: halves away from zero (WGSL's round() takes halves to even).
fn round_half_away(x: f32) -> f32 {
    let f = floor(x);
    if (x - f >= 0.5f) {
        return f + 1.0f;
    }
    return f;
}

// Synapse type of synapse `syn` (the low half of its word; the high half is its
// projection key).
fn syn_type_of(syn: u32) -> u32 {
    return syn_static[syn] & 0xFFFFu;
}

// The variables of a synapse: section `section` of syn_u32 or syn_f32 starts at its
// entry of `soff.u_at` or `soff.f_at`. A section the network does not need is absent
// (layout::SynOffsets): it reads as its constant (NO_HANDOFF for the hand-off step, 0
// otherwise), and a write to it, which only code for another kind of synapse would make,
// is dropped.
fn su(section: u32, syn: u32) -> u32 {
    let at = soff.u_at[section / 4u][section % 4u];
    if (at == ABSENT) {
        return select(0u, NO_HANDOFF, section == S_HANDOFF_STEP);
    }
    return syn_u32[at + syn];
}

fn su_set(section: u32, syn: u32, x: u32) {
    let at = soff.u_at[section / 4u][section % 4u];
    if (at != ABSENT) {
        syn_u32[at + syn] = x;
    }
}

fn sf(section: u32, syn: u32) -> f32 {
    let at = soff.f_at[section / 4u][section % 4u];
    if (at == ABSENT) {
        return 0.0f;
    }
    return syn_f32[at + syn];
}

fn sf_set(section: u32, syn: u32, x: f32) {
    let at = soff.f_at[section / 4u][section % 4u];
    if (at != ABSENT) {
        syn_f32[at + syn] = x;
    }
}

// Advances synapse `syn` of type `ty` to step `t` (§3.2 steps 1, 2, 7; §3.3).
// Twin of backend::cpu::terminal::advance_terminal.
fn advance_terminal(ty: SynType, syn: u32, t: u32) {
    let delta = t - su(S_T_LAST, syn);
    // A static terminal has no state to advance (its one site is always docked).
    if (delta == 0u || ty.release == RELEASE_STATIC) {
        return;
    }
    let tracked = ty.reserve_size > 0u;
    // (7) recycling: each vesicle in endocytosis has returned with prob 1 - e^{-Δ/τ_endo}.
    var endo = su(S_ENDO, syn);
    var reserve = su(S_RESERVE, syn);
    if (tracked && endo > 0u) {
        let p_ret = 1.0f - pow_decay(ty.tab_endo, delta);
        var back = 0u;
        var u = lanes_new(DOMAIN_SYNAPSE, soff.syn_base + syn, t, PURPOSE_RECYCLE);
        for (var v = 0u; v < endo; v = v + 1u) {
            if (lanes_at(&u, v) < p_ret) {
                back = back + 1u;
            }
        }
        endo = endo - back;
        reserve = reserve + back;
    }
    let committed = su(S_COMMITTED, syn);
    // (1) refilling of empty sites since the last event.
    let decay_d = pow_decay(ty.tab_rec, delta);
    var p_fill: f32;
    if (ty.release == RELEASE_CA) {
        // η = ((K_D + X_D⁺)/(K_D + X_D⁺·e^{-Δ/τ_D}))^{-(kmax-k0)τ_D} (DKR 2000).
        let x_d = sf(SF_X_D, syn);
        let eta = pow_sw((ty.k_d + x_d) / (ty.k_d + x_d * decay_d), -ty.eta_exponent);
        p_fill = 1.0f - pow_decay(ty.tab_k0, delta) * eta;
    } else {
        // TM: Ca-independent recovery, P_fill = 1 - e^{-Δ/τ_rec} (§3.3).
        p_fill = 1.0f - decay_d;
    }
    var sites = su(S_SITES, syn);
    if (ty.release != RELEASE_TM_MEAN) {
        var u = lanes_new(DOMAIN_SYNAPSE, soff.syn_base + syn, t, PURPOSE_REFILL);
        for (var j = 0u; j < ty.n_sites; j = j + 1u) {
            let bit = 1u << j;
            if (((sites | committed) & bit) == 0u && lanes_at(&u, j) < p_fill && (!tracked || reserve > 0u)) {
                sites = sites | bit;
                if (tracked) {
                    reserve = reserve - 1u;
                }
            }
        }
    }
    su_set(S_SITES, syn, sites);
    su_set(S_ENDO, syn, endo);
    su_set(S_RESERVE, syn, reserve);
    // (2) decay of the residual-Ca sites (CA) or of the TM variables.
    sf_set(SF_X_F, syn, flush_subnormal(sf(SF_X_F, syn) * pow_decay(ty.tab_fac, delta)));
    if (ty.release == RELEASE_TM_MEAN) {
        // x ← 1 + (x - 1)·e^{-Δ/τ_rec} (§2.2).
        sf_set(SF_X_D, syn, relax(1.0f, sf(SF_X_D, syn), decay_d));
    } else {
        sf_set(SF_X_D, syn, flush_subnormal(sf(SF_X_D, syn) * decay_d));
    }
    su_set(S_T_LAST, syn, t);
}
