//! integrate: one invocation per neuron (DESIGN.md kernel 4; §5.4, §6).
//! CPU twin of the future `shaders/integrate.wgsl`.
//!
//! Sums receptor conductances (spatial summation at the single compartment; NMDA with
//! its Mg2+ block at the start-of-step V), integrates the membrane over one step with
//! the exact exponential update for frozen conductances (§6.1), or the Traub-Miles HH
//! scheme (Rush-Larsen gates then exponential-Euler V with the new gates, §6.2), applies
//! absolute refractoriness (step counting of §6.1) and the relative refractory
//! conductance, tests the threshold, and fires spike sources (Poisson, listed times).

use crate::layout::{neuron, receptor, GpuReceptor};
use crate::math::exp_sw;
use crate::model::{flush_subnormal, hh_rates, nmda_block, Model};
use crate::network::Network;
use crate::philox::{uniform_at, Domain, Purpose};
use crate::state::State;

/// Conductance of one receptor on one neuron as the membrane sees it in this step, nS:
/// active synapses plus the pool (exp receptors at mid-step g⁺·e^{-dt/(2τ)}, §6.4a),
/// NMDA times its Mg2+ block B(V) (§5.1).
#[inline]
pub fn receptor_conductance(
    rc: &GpuReceptor,
    g_active_ns: f32,
    g_pool_ns: f32,
    v_mv: f32,
    mg_o_mm: f32,
) -> f32 {
    let mut g = g_active_ns
        + if rc.kind == receptor::EXP {
            g_pool_ns * rc.half_decay
        } else {
            g_pool_ns
        };
    if rc.mg_block == 1 {
        g *= nmda_block(v_mv, mg_o_mm);
    }
    g
}

/// Advances every neuron by one step; appends the spiking neurons to `st.spikes` in
/// ascending order.
pub fn integrate(model: &Model, net: &Network, st: &mut State) {
    let dt = model.dt_ms as f32;
    let mg = model.mg_o_mm as f32;
    let nr = model.receptors.len();
    let t = st.step;
    st.spikes.clear();
    for n in 0..net.n_neurons() as usize {
        let p = &model.pops[net.neuron_pop[n] as usize].gpu;
        match p.model {
            neuron::POISSON => {
                if t >= p.start_step
                    && t < p.stop_step
                    && uniform_at(model.seed, Domain::Neuron, n as u32, t, Purpose::Poisson, 0)
                        < p.p_spike
                {
                    st.spikes.push(n as u32);
                }
                continue;
            }
            neuron::SPIKE_TIMES => {
                let end = net.spike_offsets[n + 1];
                let mut k = st.spike_ptr[n];
                while k < end && net.spike_steps[k as usize] < t {
                    k += 1;
                }
                if k < end && net.spike_steps[k as usize] == t {
                    st.spikes.push(n as u32);
                    k += 1;
                }
                st.spike_ptr[n] = k;
                continue;
            }
            _ => {}
        }
        let v = st.v_mv[n];
        // Synaptic conductances, fixed receptor order (§6.4: kinetic r after its step-n
        // update; exp conductances at mid-step g⁺·e^{-dt/(2τ)}).
        let mut g_tot = p.g_l_ns;
        let mut num = p.g_l_ns * p.e_l_mv + st.i_ext_pa[n] + p.i_bias_pa;
        for ri in 0..nr {
            let rc = &model.gpu_receptors[ri];
            let idx = n * nr + ri;
            let g = receptor_conductance(rc, st.g_active_ns[idx], st.g_pool_ns[idx], v, mg);
            g_tot += g;
            num += g * rc.e_rev_mv;
        }
        let mut spiked = false;
        if p.model == neuron::LIF {
            g_tot += st.g_rr_ns[n] + st.g_sfa_ns[n];
            num += st.g_rr_ns[n] * p.e_rr_mv + st.g_sfa_ns[n] * p.e_sfa_mv;
            if st.refr[n] > 0 {
                // Absolute refractory: V held at V_reset for n_ref steps after the spike step.
                st.refr[n] -= 1;
                st.v_mv[n] = p.v_reset_mv;
            } else {
                // V ← V_inf + (V - V_inf)·exp(-g_tot·dt/C) (§6.1)
                let v_inf = num / g_tot;
                let v_new = v_inf + (v - v_inf) * exp_sw(-g_tot * dt / p.c_m_pf);
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
            st.g_rr_ns[n] = flush_subnormal(st.g_rr_ns[n] * p.decay_rr);
            st.g_sfa_ns[n] = flush_subnormal(st.g_sfa_ns[n] * p.decay_sfa);
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
            let m = m_inf + (st.hh_m[n] - m_inf) * exp_sw(-dt * (am + bm));
            let h = h_inf + (st.hh_h[n] - h_inf) * exp_sw(-dt * (ah + bh));
            let nk = n_inf + (st.hh_n[n] - n_inf) * exp_sw(-dt * (an + bn));
            st.hh_m[n] = m;
            st.hh_h[n] = h;
            st.hh_n[n] = nk;
            let g_na = p.g_na_ns * m * m * m * h;
            let g_k = p.g_k_ns * nk * nk * nk * nk;
            g_tot += g_na + g_k;
            num += g_na * p.e_na_mv + g_k * p.e_k_mv;
            let v_inf = num / g_tot;
            let v_new = v_inf + (v - v_inf) * exp_sw(-g_tot * dt / p.c_m_pf);
            st.v_mv[n] = v_new;
            // Spike = upward crossing of v_spike_mv outside the lock-out (§8h COBAHH).
            if st.refr[n] > 0 {
                st.refr[n] -= 1;
            } else if v < p.v_spike_mv && v_new >= p.v_spike_mv {
                spiked = true;
                st.refr[n] = p.n_ref;
            }
        }
        if spiked {
            st.spikes.push(n as u32);
        }
    }
}
