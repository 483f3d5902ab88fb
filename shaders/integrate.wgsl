// integrate: one invocation per neuron (DESIGN.md kernel 4; §5.4, §6).
// CPU twin: src/backend/cpu/integrate.rs (same statements in the same order, same names).
//
// Neurons are addressed within the chunk this dispatch covers (n < params.n_neurons);
// params.neuron_base + n is the global id (random streams, reports).
// Switches the neuron's DC inputs on or off, fires spike sources (Poisson, listed
// times), sums receptor conductances, integrates the membrane over one step (LIF §6.1,
// Traub-Miles HH §6.2), applies refractoriness and tests the threshold. A spike sets the
// neuron's bit in this step's row of the spike ring (atomicOr: exact, order-free).

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<uniform> offsets: ImageOffsets;
@group(0) @binding(2) var<storage, read> pops: array<Population>;
@group(0) @binding(3) var<storage, read> receptors: array<Receptor>;
@group(0) @binding(4) var<storage, read> inputs: array<Input>;
@group(0) @binding(5) var<storage, read> neuron_static: array<u32>;
@group(0) @binding(6) var<storage, read> g_ns: array<f32>;
@group(0) @binding(7) var<storage, read_write> neuron_f32: array<f32>;
@group(0) @binding(8) var<storage, read_write> neuron_u32: array<u32>;
@group(0) @binding(9) var<storage, read_write> spike_bits: array<atomic<u32>>;

// x/(eˣ - 1), with its limit 1 - x/2 near 0 (§6.2). Twin of model::exprel.
fn exprel(x: f32) -> f32 {
    if (abs(x) < 1e-4f) {
        return 1.0f - 0.5f * x;
    }
    return x / (exp_sw(x) - 1.0f);
}

// Traub-Miles rates (α_m, β_m, α_h, β_h, α_n, β_n) in 1/ms at V (mV), §6.2. Twin of model::hh_rates.
fn hh_rates(v: f32, v_t: f32) -> array<f32, 6> {
    let u = v - v_t;
    let am = 1.28f * exprel((13.0f - u) / 4.0f);
    let bm = 1.4f * exprel((u - 40.0f) / 5.0f);
    let ah = 0.128f * exp_sw((17.0f - u) / 18.0f);
    let bh = 4.0f / (1.0f + exp_sw((40.0f - u) / 5.0f));
    let an = 0.16f * exprel((15.0f - u) / 5.0f);
    let bn = 0.5f * exp_sw((10.0f - u) / 40.0f);
    return array<f32, 6>(am, bm, ah, bh, an, bn);
}

// spike_bits: three words of the non-finite record, then one row of spike_words per step.
const SPIKE_RECORD: u32 = 3u;

// Sets the bit of chunk neuron n (global id neuron_base + n) in this step's row; the rows
// have a bit per neuron of the network, shared by the chunks.
fn set_spike(n: u32) {
    let g = params.neuron_base + n;
    atomicOr(&spike_bits[SPIKE_RECORD + params.batch_row * params.spike_words + (g >> 5u)], 1u << (g & 31u));
}

// True for NaN and ±inf (WGSL has no isnan/isinf: all exponent bits set).
fn non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7F800000u) == 0x7F800000u;
}

// Records a non-finite state in the first words of spike_bits: the first step (as
// u32::MAX - step, so that atomicMax keeps the smallest and 0 means none) and the lowest
// global neuron id of that kind. Twin of the check in integrate_all (src/backend/cpu/integrate.rs).
fn flag_non_finite(n: u32, var_code: u32) {
    atomicMax(&spike_bits[0], 0xFFFFFFFFu - params.step);
    atomicMax(&spike_bits[1], 0xFFFFFFFFu - (params.neuron_base + n));
    atomicMax(&spike_bits[2], var_code);
}

// Σ g and Σ g·E + I of a neuron's drive.
struct Drive {
    g_tot: f32,
    num: f32,
}

// DC inputs of chunk neuron n switching on or off in step t, in input order.
fn switch_inputs(n: u32, t: u32) {
    let nn = params.n_neurons;
    let in_end = neuron_static[offsets.input_offsets + n + 1u];
    for (var k = neuron_static[offsets.input_offsets + n]; k < in_end; k = k + 1u) {
        let inp = inputs[neuron_static[offsets.input_ids + k]];
        if (inp.start_step < inp.stop_step) {
            if (t == inp.start_step) {
                neuron_f32[F_I_EXT_PA * nn + n] += inp.amplitude_pa;
            }
            if (t == inp.stop_step) {
                neuron_f32[F_I_EXT_PA * nn + n] -= inp.amplitude_pa;
            }
        }
    }
}

// Leak, injected currents and synaptic conductances at V = v, fixed receptor order (§6.4).
fn synaptic_drive(n: u32, v: f32, p: Population) -> Drive {
    let nn = params.n_neurons;
    let nr = params.n_receptors;
    var d: Drive;
    d.g_tot = p.g_l_ns;
    d.num = p.g_l_ns * p.e_l_mv + neuron_f32[F_I_EXT_PA * nn + n] + p.i_bias_pa;
    for (var ri = 0u; ri < nr; ri = ri + 1u) {
        let rc = receptors[ri];
        let idx = n * nr + ri;
        let g = receptor_conductance(rc, g_ns[idx], g_ns[offsets.g_pool + idx], v, params.mg_o_mm);
        d.g_tot += g;
        d.num += g * rc.e_rev_mv;
    }
    return d;
}

// The LIF's relative refractory and adaptation conductances added to the drive.
fn lif_drive(n: u32, p: Population, d_in: Drive) -> Drive {
    let nn = params.n_neurons;
    var d = d_in;
    let g_rr = neuron_f32[F_G_RR_NS * nn + n];
    let g_sfa = neuron_f32[F_G_SFA_NS * nn + n];
    d.g_tot += g_rr;
    d.g_tot += g_sfa;
    d.num += g_rr * p.e_rr_mv;
    d.num += g_sfa * p.e_sfa_mv;
    return d;
}

// One LIF step from V = v towards v_inf with decay = exp(-g_tot·dt/C): absolute
// refractoriness, threshold, reset, then the decays and spike-triggered increments.
fn lif_update(n: u32, p: Population, v: f32, v_inf: f32, decay: f32) -> bool {
    let nn = params.n_neurons;
    var spiked = false;
    let g_rr = neuron_f32[F_G_RR_NS * nn + n];
    let g_sfa = neuron_f32[F_G_SFA_NS * nn + n];
    let refr = neuron_u32[U_REFR * nn + n];
    if (refr > 0u) {
        // Absolute refractory: V held at V_reset for n_ref steps after the spike step.
        neuron_u32[U_REFR * nn + n] = refr - 1u;
        neuron_f32[F_V_MV * nn + n] = p.v_reset_mv;
    } else {
        let v_new = relax(v_inf, v, decay);
        if (v_new >= p.v_th_mv + neuron_f32[F_THETA_MV * nn + n]) {
            spiked = true;
            neuron_f32[F_V_MV * nn + n] = p.v_reset_mv;
            neuron_u32[U_REFR * nn + n] = p.n_ref;
        } else {
            neuron_f32[F_V_MV * nn + n] = v_new;
        }
    }
    // Decay over the step, then the spike-triggered increments (§6.1).
    var g_rr_new = flush_subnormal(g_rr * p.decay_rr);
    var g_sfa_new = flush_subnormal(g_sfa * p.decay_sfa);
    var theta_new = flush_subnormal(neuron_f32[F_THETA_MV * nn + n] * p.decay_theta);
    if (spiked) {
        g_rr_new += p.q_rr_ns;
        g_sfa_new += p.q_sfa_ns;
        theta_new += p.delta_theta_mv;
    }
    neuron_f32[F_G_RR_NS * nn + n] = g_rr_new;
    neuron_f32[F_G_SFA_NS * nn + n] = g_sfa_new;
    neuron_f32[F_THETA_MV * nn + n] = theta_new;
    return spiked;
}

@compute @workgroup_size(64)
fn integrate(@builtin(global_invocation_id) gid: vec3<u32>) {
    opaque_zero = params.zero;
    let n = invocation_index(gid);
    if (n >= params.n_neurons) {
        return;
    }
    let nn = params.n_neurons;
    let t = params.step;
    let dt = params.dt_ms;
    let p = pops[(neuron_static[n >> 1u] >> ((n & 1u) * 16u)) & 0xFFFFu];
    switch_inputs(n, t);
    if (p.model == NEURON_POISSON) {
        let u = uniform_at(params.seed_lo, params.seed_hi, DOMAIN_NEURON, params.neuron_base + n, t, PURPOSE_POISSON, 0u);
        if (t >= p.start_step && t < p.stop_step && u < p.p_spike) {
            set_spike(n);
        }
        return;
    }
    if (p.model == NEURON_SPIKE_TIMES) {
        let end = neuron_static[offsets.spike_offsets + n + 1u];
        var k = neuron_u32[U_SPIKE_PTR * nn + n];
        while (k < end && neuron_static[offsets.spike_steps + k] < t) {
            k = k + 1u;
        }
        if (k < end && neuron_static[offsets.spike_steps + k] == t) {
            set_spike(n);
            k = k + 1u;
        }
        neuron_u32[U_SPIKE_PTR * nn + n] = k;
        return;
    }
    let v = neuron_f32[F_V_MV * nn + n];
    var d = synaptic_drive(n, v, p);
    var g_tot = d.g_tot;
    var num = d.num;
    var spiked = false;
    if (p.model == NEURON_LIF) {
        d = lif_drive(n, p, d);
        // V ← V_inf + (V - V_inf)·exp(-g_tot·dt/C) (§6.1), used outside the refractory period.
        let v_inf = d.num / d.g_tot;
        let decay = exp_sw(-d.g_tot * dt / p.c_m_pf);
        spiked = lif_update(n, p, v, v_inf, decay);
    } else {
        // (1) rates at V_n; (2) Rush-Larsen gates; (3) V with the new gates (§6.2).
        let rates = hh_rates(v, p.v_t_mv);
        let am = rates[0];
        let bm = rates[1];
        let ah = rates[2];
        let bh = rates[3];
        let an = rates[4];
        let bn = rates[5];
        let m_inf = am / (am + bm);
        let h_inf = ah / (ah + bh);
        let n_inf = an / (an + bn);
        let m = relax(m_inf, neuron_f32[F_HH_M * nn + n], exp_sw(-dt * (am + bm)));
        let h = relax(h_inf, neuron_f32[F_HH_H * nn + n], exp_sw(-dt * (ah + bh)));
        let nk = relax(n_inf, neuron_f32[F_HH_N * nn + n], exp_sw(-dt * (an + bn)));
        neuron_f32[F_HH_M * nn + n] = m;
        neuron_f32[F_HH_H * nn + n] = h;
        neuron_f32[F_HH_N * nn + n] = nk;
        let g_na = p.g_na_ns * m * m * m * h;
        let g_k = p.g_k_ns * nk * nk * nk * nk;
        g_tot += g_na;
        g_tot += g_k;
        num += g_na * p.e_na_mv;
        num += g_k * p.e_k_mv;
        let v_inf = num / g_tot;
        let v_new = relax(v_inf, v, exp_sw(-g_tot * dt / p.c_m_pf));
        neuron_f32[F_V_MV * nn + n] = v_new;
        // Spike = upward crossing of v_spike_mv outside the lock-out (§8h COBAHH).
        let refr = neuron_u32[U_REFR * nn + n];
        if (refr > 0u) {
            neuron_u32[U_REFR * nn + n] = refr - 1u;
        } else if (v < p.v_spike_mv && v_new >= p.v_spike_mv) {
            spiked = true;
            neuron_u32[U_REFR * nn + n] = p.n_ref;
        }
    }
    if (spiked) {
        set_spike(n);
    }
    // NaN or inf in V or an HH gate stops the run (codes: 1 v_mv, 2 m, 3 h, 4 n).
    if (non_finite(neuron_f32[F_V_MV * nn + n])) {
        flag_non_finite(n, 1u);
    } else if (non_finite(neuron_f32[F_HH_M * nn + n])) {
        flag_non_finite(n, 2u);
    } else if (non_finite(neuron_f32[F_HH_H * nn + n])) {
        flag_non_finite(n, 3u);
    } else if (non_finite(neuron_f32[F_HH_N * nn + n])) {
        flag_non_finite(n, 4u);
    }
}
