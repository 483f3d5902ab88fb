//! integrate: one invocation per neuron (DESIGN.md kernel 4; §5.4, §6).
//! CPU twin of `shaders/integrate.wgsl`: the same statements in the same order, with the
//! same names; the GPU reads the arrays of [`State`] and [`Network`] from the sections of
//! its device image (`layout::ImageOffsets`).
//!
//! Switches the neuron's DC inputs on or off, fires spike sources (Poisson, listed
//! times), sums receptor conductances (spatial summation at the single compartment; NMDA
//! with its Mg2+ block at the start-of-step V), integrates the membrane over one step with
//! the exact exponential update for frozen conductances (§6.1), or the Traub-Miles HH
//! scheme (Rush-Larsen gates then exponential-Euler V with the new gates, §6.2), applies
//! absolute refractoriness (step counting of §6.1) and the relative refractory
//! conductance, and tests the threshold.

use crate::layout::{neuron, receptor, GpuPopulation, GpuReceptor, StepParams};
use crate::math::{exp_sw, relax};
use crate::model::{flush_subnormal, hh_rates, nmda_block};
use crate::network::Network;
use crate::philox::{uniform_at, Domain, Purpose};
use crate::state::State;

/// Conductance of one receptor on one neuron as the membrane sees it in this step, nS:
/// active synapses plus the pool (exp receptors at mid-step g⁺·e^{-dt/(2τ)}, §6.4a),
/// NMDA times its Mg2+ block B(V) (§5.1). Twin of `receptor_conductance` in
/// shaders/common.wgsl.
#[inline]
pub fn receptor_conductance(
    rc: &GpuReceptor,
    g_active_ns: f32,
    g_pool_ns: f32,
    v_mv: f32,
    mg_o_mm: f32,
) -> f32 {
    let mut pool = g_pool_ns;
    if rc.kind == receptor::EXP {
        pool = g_pool_ns * rc.half_decay;
    }
    let mut g = g_active_ns + pool;
    if rc.mg_block == 1 {
        g *= nmda_block(v_mv, mg_o_mm);
    }
    g
}

/// Advances neuron `n` by one step; returns true when it spikes.
#[expect(
    clippy::needless_range_loop,
    reason = "ri indexes the receptor table and the (neuron, receptor) arrays, as in the WGSL twin"
)]
pub fn integrate(
    n: usize,
    params: &StepParams,
    pops: &[GpuPopulation],
    receptors: &[GpuReceptor],
    net: &Network,
    st: &mut State,
) -> bool {
    let t = params.step;
    let dt = params.dt_ms;
    let mg = params.mg_o_mm;
    let nr = params.n_receptors as usize;
    let p = &pops[net.neuron_pop[n] as usize];
    // DC inputs switching on or off in this step, in input order.
    let in_end = net.input_offsets[n + 1];
    for k in net.input_offsets[n]..in_end {
        let inp = &net.inputs[net.input_ids[k as usize] as usize];
        if inp.start_step < inp.stop_step {
            if t == inp.start_step {
                st.i_ext_pa[n] += inp.amplitude_pa;
            }
            if t == inp.stop_step {
                st.i_ext_pa[n] -= inp.amplitude_pa;
            }
        }
    }
    if p.model == neuron::POISSON {
        let u = uniform_at(
            params.seed(),
            Domain::Neuron,
            params.neuron_base + n as u32,
            t,
            Purpose::Poisson,
            0,
        );
        return t >= p.start_step && t < p.stop_step && u < p.p_spike;
    }
    if p.model == neuron::SPIKE_TIMES {
        let end = net.spike_offsets[n + 1];
        let mut k = st.spike_ptr[n];
        while k < end && net.spike_steps[k as usize] < t {
            k += 1;
        }
        let mut fired = false;
        if k < end && net.spike_steps[k as usize] == t {
            fired = true;
            k += 1;
        }
        st.spike_ptr[n] = k;
        return fired;
    }
    let v = st.v_mv[n];
    // Synaptic conductances, fixed receptor order (§6.4: kinetic r after its step-n
    // update; exp conductances at mid-step g⁺·e^{-dt/(2τ)}).
    let mut g_tot = p.g_l_ns;
    let mut num = p.g_l_ns * p.e_l_mv + st.i_ext_pa[n] + p.i_bias_pa;
    for ri in 0..nr {
        let rc = &receptors[ri];
        let idx = n * nr + ri;
        let g = receptor_conductance(rc, st.g_active_ns[idx], st.g_pool_ns[idx], v, mg);
        g_tot += g;
        num += g * rc.e_rev_mv;
    }
    let mut spiked = false;
    if p.model == neuron::LIF {
        let g_rr = st.g_rr_ns[n];
        let g_sfa = st.g_sfa_ns[n];
        g_tot += g_rr;
        g_tot += g_sfa;
        num += g_rr * p.e_rr_mv;
        num += g_sfa * p.e_sfa_mv;
        if st.refr[n] > 0 {
            // Absolute refractory: V held at V_reset for n_ref steps after the spike step.
            st.refr[n] -= 1;
            st.v_mv[n] = p.v_reset_mv;
        } else {
            // V ← V_inf + (V - V_inf)·exp(-g_tot·dt/C) (§6.1)
            let v_inf = num / g_tot;
            let v_new = relax(v_inf, v, exp_sw(-g_tot * dt / p.c_m_pf));
            if v_new >= p.v_th_mv + st.theta_mv[n] {
                spiked = true;
                st.v_mv[n] = p.v_reset_mv;
                st.refr[n] = p.n_ref;
            } else {
                st.v_mv[n] = v_new;
            }
        }
        // Decay over the step, then the spike-triggered increments (§6.1, as NEST's
        // iaf_cond_exp_sfa_rr): a spike at the end of step s leaves g_rr = q_rr at
        // (s+1)·dt, and q_rr·e^{-k·dt/τ_rr} k steps later.
        st.g_rr_ns[n] = flush_subnormal(g_rr * p.decay_rr);
        st.g_sfa_ns[n] = flush_subnormal(g_sfa * p.decay_sfa);
        st.theta_mv[n] = flush_subnormal(st.theta_mv[n] * p.decay_theta);
        if spiked {
            st.g_rr_ns[n] += p.q_rr_ns;
            st.g_sfa_ns[n] += p.q_sfa_ns;
            st.theta_mv[n] += p.delta_theta_mv;
        }
    } else {
        // (1) rates at V_n; (2) Rush-Larsen gates; (3) V with the new gates (§6.2).
        let [am, bm, ah, bh, an, bn] = hh_rates(v, p.v_t_mv);
        let m_inf = am / (am + bm);
        let h_inf = ah / (ah + bh);
        let n_inf = an / (an + bn);
        let m = relax(m_inf, st.hh_m[n], exp_sw(-dt * (am + bm)));
        let h = relax(h_inf, st.hh_h[n], exp_sw(-dt * (ah + bh)));
        let nk = relax(n_inf, st.hh_n[n], exp_sw(-dt * (an + bn)));
        st.hh_m[n] = m;
        st.hh_h[n] = h;
        st.hh_n[n] = nk;
        let g_na = p.g_na_ns * m * m * m * h;
        let g_k = p.g_k_ns * nk * nk * nk * nk;
        g_tot += g_na;
        g_tot += g_k;
        num += g_na * p.e_na_mv;
        num += g_k * p.e_k_mv;
        let v_inf = num / g_tot;
        let v_new = relax(v_inf, v, exp_sw(-g_tot * dt / p.c_m_pf));
        st.v_mv[n] = v_new;
        // Spike = upward crossing of v_spike_mv outside the lock-out (§8h COBAHH).
        if st.refr[n] > 0 {
            st.refr[n] -= 1;
        } else if v < p.v_spike_mv && v_new >= p.v_spike_mv {
            spiked = true;
            st.refr[n] = p.n_ref;
        }
    }
    spiked
}

/// The dispatcher: every neuron in ascending order; the spiking ones are appended to
/// `st.spikes` (ascending, as the GPU's spike bit rows decode).
pub fn integrate_all(
    params: &StepParams,
    pops: &[GpuPopulation],
    receptors: &[GpuReceptor],
    net: &Network,
    st: &mut State,
) {
    st.spikes.clear();
    for n in 0..params.n_neurons as usize {
        if integrate(n, params, pops, receptors, net, st) {
            st.spikes.push(n as u32);
        }
        // NaN or inf in V (or an HH gate) stops the run (the GPU twin flags it likewise).
        if st.non_finite.is_none() {
            for (x, var) in [
                (st.v_mv[n], "v_mv"),
                (st.hh_m[n], "m"),
                (st.hh_h[n], "h"),
                (st.hh_n[n], "n"),
            ] {
                if !x.is_finite() {
                    st.non_finite = Some((n as u32, var, false));
                    break;
                }
            }
        }
    }
}
