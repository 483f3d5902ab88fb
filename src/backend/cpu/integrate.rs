//! integrate: one invocation per neuron (DESIGN.md kernel 4; §5.4, §6).
//! CPU twin of `shaders/integrate.wgsl`: the same statements in the same order, with the
//! same names; the GPU reads the arrays of [`crate::state::State`] and [`Network`] from the
//! sections of its device image (`layout::ImageOffsets`). Neurons are addressed within the
//! range a [`Neurons`] view covers (local `n`, global `base + n`), as the shader addresses
//! them within its chunk, so ranges run on different threads.
//!
//! Switches the neuron's DC inputs on or off, fires spike sources (Poisson, listed
//! times), sums receptor conductances (spatial summation at the single compartment; NMDA
//! with its Mg2+ block at the start-of-step V), integrates the membrane over one step with
//! the exact exponential update for frozen conductances (§6.1), or the Traub-Miles HH
//! scheme (Rush-Larsen gates then exponential-Euler V with the new gates, §6.2), applies
//! absolute refractoriness (step counting of §6.1) and the relative refractory
//! conductance, and tests the threshold.

use crate::layout::{neuron, receptor, GpuPopulation, GpuReceptor, StepParams};
use crate::math::{exp_sw, exp_sw_slice, relax};
use crate::model::{flush_subnormal, hh_rates, nmda_block};
use crate::network::Network;
use crate::philox::{uniform_at, Domain, Purpose};
use crate::state::Neurons;

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

/// DC inputs of neuron `n` switching on or off in step `t`, in input order.
#[inline(always)]
fn switch_inputs(n: usize, t: u32, net: &Network, st: &mut Neurons<'_>) {
    let g = st.base + n;
    let in_end = net.input_offsets[g + 1];
    for k in net.input_offsets[g]..in_end {
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
}

/// Leak, injected currents and synaptic conductances of neuron `n` at V = `v`, in the
/// fixed receptor order (§6.4: kinetic r after its step-n update; exp conductances at
/// mid-step g⁺·e^{-dt/(2τ)}): (Σ g, Σ g·E + I).
#[inline(always)]
fn synaptic_drive(
    n: usize,
    v: f32,
    p: &GpuPopulation,
    params: &StepParams,
    receptors: &[GpuReceptor],
    st: &Neurons<'_>,
) -> (f32, f32) {
    let nr = params.n_receptors as usize;
    let mut g_tot = p.g_l_ns;
    let mut num = p.g_l_ns * p.e_l_mv + st.i_ext_pa[n] + p.i_bias_pa;
    for (ri, rc) in receptors.iter().enumerate().take(nr) {
        let idx = n * nr + ri;
        let g = receptor_conductance(
            rc,
            st.g_active_ns[idx],
            st.g_pool_ns[idx],
            v,
            params.mg_o_mm,
        );
        g_tot += g;
        num += g * rc.e_rev_mv;
    }
    (g_tot, num)
}

/// The LIF's relative refractory and adaptation conductances added to the drive.
#[inline(always)]
fn lif_drive(n: usize, p: &GpuPopulation, st: &Neurons<'_>, g_tot: f32, num: f32) -> (f32, f32) {
    let (mut g_tot, mut num) = (g_tot, num);
    let g_rr = st.g_rr_ns[n];
    let g_sfa = st.g_sfa_ns[n];
    g_tot += g_rr;
    g_tot += g_sfa;
    num += g_rr * p.e_rr_mv;
    num += g_sfa * p.e_sfa_mv;
    (g_tot, num)
}

/// One LIF step from V = `v` towards `v_inf` with `decay` = exp(-g_tot·dt/C): absolute
/// refractoriness, threshold, reset, then the decays and spike-triggered increments of
/// the refractory and adaptation variables. Returns true when the neuron spikes.
#[inline(always)]
fn lif_update(
    n: usize,
    p: &GpuPopulation,
    v: f32,
    v_inf: f32,
    decay: f32,
    st: &mut Neurons<'_>,
) -> bool {
    let mut spiked = false;
    let g_rr = st.g_rr_ns[n];
    let g_sfa = st.g_sfa_ns[n];
    if st.refr[n] > 0 {
        // Absolute refractory: V held at V_reset for n_ref steps after the spike step.
        st.refr[n] -= 1;
        st.v_mv[n] = p.v_reset_mv;
    } else {
        let v_new = relax(v_inf, v, decay);
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
    spiked
}

/// Advances neuron `n` by one step; returns true when it spikes.
pub fn integrate(
    n: usize,
    params: &StepParams,
    pops: &[GpuPopulation],
    receptors: &[GpuReceptor],
    net: &Network,
    st: &mut Neurons<'_>,
) -> bool {
    let t = params.step;
    let dt = params.dt_ms;
    let p = &pops[net.neuron_pop[st.base + n] as usize];
    switch_inputs(n, t, net, st);
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
        let end = net.spike_offsets[st.base + n + 1];
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
    let (mut g_tot, mut num) = synaptic_drive(n, v, p, params, receptors, st);
    let mut spiked = false;
    if p.model == neuron::LIF {
        (g_tot, num) = lif_drive(n, p, st, g_tot, num);
        // V ← V_inf + (V - V_inf)·exp(-g_tot·dt/C) (§6.1), used outside the refractory period.
        let v_inf = num / g_tot;
        let decay = exp_sw(-g_tot * dt / p.c_m_pf);
        spiked = lif_update(n, p, v, v_inf, decay, st);
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

/// Neurons per block of the LIF path of [`integrate_all`].
const BLOCK: usize = 64;

/// What one range of [`integrate_all`] found: its spikes (global ids, ascending) and the
/// first non-finite value (global id, variable).
#[derive(Debug, Default, Clone)]
pub struct Fired {
    /// Neurons that spiked.
    pub spikes: Vec<u32>,
    /// The first NaN or infinite value: (neuron, variable, false).
    pub non_finite: crate::state::NonFinite,
}

avx2_or_baseline! {
    /// The dispatcher for the neurons of `st`: every neuron in ascending order; the spiking
    /// ones go to `out.spikes` (ascending, as the GPU's spike bit rows decode).
    /// `params.neuron_base` is `st.base`.
    ///
    /// LIF neurons go in blocks of up to `BLOCK` (64) of one population, with the statements of
    /// [`integrate`] split into three loops: the drive of every neuron, the exponentials of
    /// the block (one loop the compiler runs several lanes at a time, [`exp_sw_slice`]), then
    /// the updates; HH neurons likewise (`hh_block`: the rates, gates and membrane with
    /// their ten exponentials in three passes over the block). Each neuron sees the same
    /// operations on the same values as in [`integrate`] and the WGSL twin, so the bits are
    /// the same; only independent neurons' statements are interleaved, which lets the CPU
    /// overlap their exponentials' latency.
    pub fn integrate_all(
        params: &StepParams,
        pops: &[GpuPopulation],
        receptors: &[GpuReceptor],
        net: &Network,
        st: &mut Neurons<'_>,
        out: &mut Fired,
    ) => integrate_all_body
}

/// The body of [`integrate_all`], inlined into each build of it.
#[inline(always)]
fn integrate_all_body(
    params: &StepParams,
    pops: &[GpuPopulation],
    receptors: &[GpuReceptor],
    net: &Network,
    st: &mut Neurons<'_>,
    out: &mut Fired,
) {
    debug_assert_eq!(params.neuron_base as usize, st.base);
    out.spikes.clear();
    out.non_finite = None;
    let nn = st.v_mv.len();
    let base = st.base;
    let mut v_inf = [0f32; BLOCK];
    let mut decay = [0f32; BLOCK];
    let mut n = 0;
    while n < nn {
        let pop = net.neuron_pop[base + n];
        let p = &pops[pop as usize];
        if p.model == neuron::LIF || p.model == neuron::HH {
            // The block: the next neurons of this population, at most BLOCK. Populations
            // are contiguous, so the test without an early exit (which runs several lanes
            // at a time) usually settles it.
            let window = &net.neuron_pop[base + n..base + nn.min(n + BLOCK)];
            let mixed = window.iter().fold(false, |acc, &q| acc | (q != pop));
            let len = if mixed {
                window
                    .iter()
                    .position(|&q| q != pop)
                    .unwrap_or(window.len())
            } else {
                window.len()
            };
            let end = n + len;
            let mut spiked = [0u32; BLOCK];
            if p.model == neuron::LIF {
                lif_block_drive(
                    n..end,
                    p,
                    params,
                    receptors,
                    net,
                    st,
                    &mut v_inf,
                    &mut decay,
                );
                exp_sw_slice(&mut decay[..len]);
                lif_block_update(n..end, p, &v_inf, &decay, st, &mut spiked);
            } else {
                hh_block(n..end, p, params, receptors, net, st, &mut spiked);
            }
            // Most blocks have no spike: one test over the block (several lanes at a
            // time) instead of a branch per neuron.
            if spiked[..len].iter().fold(0, |acc, &s| acc | s) != 0 {
                for (k, _) in spiked[..len].iter().enumerate().filter(|s| *s.1 != 0) {
                    out.spikes.push((base + n + k) as u32);
                }
            }
            if out.non_finite.is_none() && !block_finite(n..end, st, p.model == neuron::HH) {
                for i in n..end {
                    check_finite(i, st, out);
                }
            }
            n = end;
        } else {
            if integrate(n, params, pops, receptors, net, st) {
                out.spikes.push((base + n) as u32);
            }
            check_finite(n, st, out);
            n += 1;
        }
    }
}

/// The drive of the LIF neurons `range` (one population, at most [`BLOCK`]): the
/// statements of [`switch_inputs`], [`synaptic_drive`] and [`lif_drive`] and the two
/// quotients of [`integrate`], one statement at a time over the block, so each loop runs
/// several lanes at a time. Every neuron's sums are formed in the same order as there.
/// Leaves V_inf in `v_inf` and -g_tot·dt/C (the exponent) in `arg`.
#[expect(clippy::too_many_arguments, reason = "the arrays of one dispatch")]
#[inline(always)]
fn lif_block_drive(
    range: std::ops::Range<usize>,
    p: &GpuPopulation,
    params: &StepParams,
    receptors: &[GpuReceptor],
    net: &Network,
    st: &mut Neurons<'_>,
    v_inf: &mut [f32; BLOCK],
    arg: &mut [f32; BLOCK],
) {
    let (n, end) = (range.start, range.end);
    let len = end - n;
    let mut g_tot = [0f32; BLOCK];
    let mut num = [0f32; BLOCK];
    block_synaptic_drive(range, p, params, receptors, net, st, &mut g_tot, &mut num);
    let (g_tot, num) = (&mut g_tot[..len], &mut num[..len]);
    // The statements of [`lif_drive`], one at a time over the block.
    for (((g, x), g_rr), g_sfa) in g_tot
        .iter_mut()
        .zip(num.iter_mut())
        .zip(&st.g_rr_ns[n..end])
        .zip(&st.g_sfa_ns[n..end])
    {
        *g += g_rr;
        *g += g_sfa;
        *x += g_rr * p.e_rr_mv;
        *x += g_sfa * p.e_sfa_mv;
    }
    for k in 0..len {
        v_inf[k] = num[k] / g_tot[k];
        arg[k] = -g_tot[k] * params.dt_ms / p.c_m_pf;
    }
}

/// The statements of [`switch_inputs`] and [`synaptic_drive`] for the neurons `range` (one
/// population, at most [`BLOCK`]), one at a time over the block: Σ g and Σ g·E + I of
/// each neuron in `g_tot` and `num`, its sums formed in the same order.
#[expect(clippy::too_many_arguments, reason = "the arrays of one dispatch")]
#[inline(always)]
fn block_synaptic_drive(
    range: std::ops::Range<usize>,
    p: &GpuPopulation,
    params: &StepParams,
    receptors: &[GpuReceptor],
    net: &Network,
    st: &mut Neurons<'_>,
    g_tot: &mut [f32; BLOCK],
    num: &mut [f32; BLOCK],
) {
    let (n, end) = (range.start, range.end);
    let len = end - n;
    if net.input_offsets[st.base + n] != net.input_offsets[st.base + end] {
        for i in range.clone() {
            switch_inputs(i, params.step, net, st);
        }
    }
    let nr = params.n_receptors as usize;
    let v = &st.v_mv[n..end];
    let (g_tot, num) = (&mut g_tot[..len], &mut num[..len]);
    for ((g, x), i_ext) in g_tot
        .iter_mut()
        .zip(num.iter_mut())
        .zip(&st.i_ext_pa[n..end])
    {
        *g = p.g_l_ns;
        *x = p.g_l_ns * p.e_l_mv + i_ext + p.i_bias_pa;
    }
    let active = &st.g_active_ns[n * nr..end * nr];
    let pool = &st.g_pool_ns[n * nr..end * nr];
    let mg = params.mg_o_mm;
    let read = (!st.active_zero).then_some(active);
    match nr {
        1 => receptor_sums::<1>(receptors, read, pool, v, mg, g_tot, num),
        2 => receptor_sums::<2>(receptors, read, pool, v, mg, g_tot, num),
        3 => receptor_sums::<3>(receptors, read, pool, v, mg, g_tot, num),
        4 => receptor_sums::<4>(receptors, read, pool, v, mg, g_tot, num),
        _ => receptor_sums_any(receptors, active, pool, v, mg, g_tot, num),
    }
}

/// The HH neurons `range` (one population, at most [`BLOCK`]): the statements of the HH
/// branch of [`integrate`] one at a time over the block, the ten exponentials of each
/// neuron (six in the rates of [`hh_rates`], three gate decays, the membrane's) in three
/// passes of [`exp_sw_slice`] and the branches of [`exprel`] and of the lock-out as
/// selects: the same operations on the same values, so the same bits. `spiked[k]` is 1
/// for the neurons that spike, else 0.
#[inline(always)]
fn hh_block(
    range: std::ops::Range<usize>,
    p: &GpuPopulation,
    params: &StepParams,
    receptors: &[GpuReceptor],
    net: &Network,
    st: &mut Neurons<'_>,
    spiked: &mut [u32; BLOCK],
) {
    let (n, end) = (range.start, range.end);
    let len = end - n;
    let dt = params.dt_ms;
    let mut g_tot = [0f32; BLOCK];
    let mut num = [0f32; BLOCK];
    block_synaptic_drive(range, p, params, receptors, net, st, &mut g_tot, &mut num);
    // (1) The rates' exponents at V_n: exprel's for α_m, β_m, α_n and exp's for α_h, β_h,
    // β_n, six lanes a neuron.
    let mut x = [[0f32; BLOCK]; 6];
    for (k, &v) in st.v_mv[n..end].iter().enumerate() {
        let u = v - p.v_t_mv;
        x[0][k] = (13.0 - u) / 4.0;
        x[1][k] = (u - 40.0) / 5.0;
        x[2][k] = (17.0 - u) / 18.0;
        x[3][k] = (40.0 - u) / 5.0;
        x[4][k] = (15.0 - u) / 5.0;
        x[5][k] = (10.0 - u) / 40.0;
    }
    let mut e = x;
    for row in e.iter_mut() {
        exp_sw_slice(&mut row[..len]);
    }
    // exprel(x) = 1 - x/2 for |x| < 1e-4, else x/(e^x - 1) (model::exprel).
    let exprel = |x: f32, ex: f32| {
        if x.abs() < 1e-4 {
            1.0 - 0.5 * x
        } else {
            x / (ex - 1.0)
        }
    };
    let mut rate = [[0f32; BLOCK]; 6];
    for k in 0..len {
        rate[0][k] = 1.28 * exprel(x[0][k], e[0][k]);
        rate[1][k] = 1.4 * exprel(x[1][k], e[1][k]);
        rate[2][k] = 0.128 * e[2][k];
        rate[3][k] = 4.0 / (1.0 + e[3][k]);
        rate[4][k] = 0.16 * exprel(x[4][k], e[4][k]);
        rate[5][k] = 0.5 * e[5][k];
    }
    // (2) Rush-Larsen gates: x_inf = α/(α + β), decay e^{-dt(α + β)}.
    let mut decay = [[0f32; BLOCK]; 3];
    for (g, d) in decay.iter_mut().enumerate() {
        for k in 0..len {
            d[k] = -dt * (rate[2 * g][k] + rate[2 * g + 1][k]);
        }
        exp_sw_slice(&mut d[..len]);
    }
    let mut arg = [0f32; BLOCK];
    let mut v_inf = [0f32; BLOCK];
    for k in 0..len {
        let i = n + k;
        let [am, bm, ah, bh, an, bn] = std::array::from_fn(|r| rate[r][k]);
        let m_inf = am / (am + bm);
        let h_inf = ah / (ah + bh);
        let n_inf = an / (an + bn);
        let m = relax(m_inf, st.hh_m[i], decay[0][k]);
        let h = relax(h_inf, st.hh_h[i], decay[1][k]);
        let nk = relax(n_inf, st.hh_n[i], decay[2][k]);
        st.hh_m[i] = m;
        st.hh_h[i] = h;
        st.hh_n[i] = nk;
        // (3) V with the new gates.
        let g_na = p.g_na_ns * m * m * m * h;
        let g_k = p.g_k_ns * nk * nk * nk * nk;
        let mut g = g_tot[k];
        let mut x = num[k];
        g += g_na;
        g += g_k;
        x += g_na * p.e_na_mv;
        x += g_k * p.e_k_mv;
        v_inf[k] = x / g;
        arg[k] = -g * dt / p.c_m_pf;
    }
    exp_sw_slice(&mut arg[..len]);
    let lanes = st.v_mv[n..end]
        .iter_mut()
        .zip(&mut st.refr[n..end])
        .zip(v_inf.iter().zip(&arg))
        .zip(spiked.iter_mut());
    for (((v, refr), (vi, d)), s) in lanes {
        let v_old = *v;
        let v_new = relax(*vi, v_old, *d);
        *v = v_new;
        // Spike = upward crossing of v_spike_mv outside the lock-out (§8h COBAHH).
        let r = *refr;
        let locked = r > 0;
        let spike = !locked & (v_old < p.v_spike_mv) & (v_new >= p.v_spike_mv);
        *refr = if locked {
            r - 1
        } else if spike {
            p.n_ref
        } else {
            r
        };
        *s = spike as u32;
    }
}

/// The receptor terms of [`synaptic_drive`] for a block of neurons (`v`, `g_tot`, `num`
/// per neuron; `active`, `pool` per (neuron, receptor) entry), any number of receptors:
/// the statements of [`receptor_conductance`], receptor by receptor.
#[inline(always)]
fn receptor_sums_any(
    receptors: &[GpuReceptor],
    active: &[f32],
    pool: &[f32],
    v: &[f32],
    mg_o_mm: f32,
    g_tot: &mut [f32],
    num: &mut [f32],
) {
    let nr = receptors.len();
    for (ri, rc) in receptors.iter().enumerate().take(nr) {
        let lanes = active[ri..]
            .iter()
            .step_by(nr)
            .zip(pool[ri..].iter().step_by(nr))
            .zip(g_tot.iter_mut().zip(num.iter_mut()));
        // The pool times e^{-dt/(2τ)} for exp receptors, times 1 (exact) for the others.
        let half = if rc.kind == receptor::EXP {
            rc.half_decay
        } else {
            1.0
        };
        for (k, ((a, gp), (gt, x))) in lanes.enumerate() {
            let mut g = a + gp * half;
            if rc.mg_block == 1 {
                g *= nmda_block(v[k], mg_o_mm);
            }
            *gt += g;
            *x += g * rc.e_rev_mv;
        }
    }
}

/// [`receptor_sums_any`] for `NR` receptors, a constant, so that the compiler runs the
/// neurons' interleaved entries several lanes at a time: every entry's conductance
/// first (the pool times e^{-dt/(2τ)} for exp receptors and times 1, which is exact, for
/// the others; then NMDA entries times the block B(V) of [`nmda_block`], its exponentials
/// for the whole block at once), then each neuron's sums in receptor order. The same
/// operations on the same values as [`synaptic_drive`]. `active` is None when every
/// active sum is +0 ([`Neurons::active_zero`]): then +0 is added instead of reading them,
/// which gives the same bits.
#[inline(always)]
fn receptor_sums<const NR: usize>(
    receptors: &[GpuReceptor],
    active: Option<&[f32]>,
    pool: &[f32],
    v: &[f32],
    mg_o_mm: f32,
    g_tot: &mut [f32],
    num: &mut [f32],
) {
    let len = g_tot.len();
    let mut half = [1f32; NR];
    let mut e_rev = [0f32; NR];
    let mut blocked = [false; NR];
    for (ri, rc) in receptors.iter().enumerate().take(NR) {
        if rc.kind == receptor::EXP {
            half[ri] = rc.half_decay;
        }
        e_rev[ri] = rc.e_rev_mv;
        blocked[ri] = rc.mg_block == 1;
    }
    let mut g = [[0f32; NR]; BLOCK];
    let g = &mut g[..len];
    match active {
        Some(active) => {
            for ((gk, a), p) in g
                .iter_mut()
                .zip(active.chunks_exact(NR))
                .zip(pool.chunks_exact(NR))
            {
                for ri in 0..NR {
                    gk[ri] = a[ri] + p[ri] * half[ri];
                }
            }
        }
        None => {
            for (gk, p) in g.iter_mut().zip(pool.chunks_exact(NR)) {
                for ri in 0..NR {
                    gk[ri] = 0.0 + p[ri] * half[ri];
                }
            }
        }
    }
    if blocked.iter().any(|&b| b) {
        // B(V) = 1/(1 + e^{-0.062 V}·[Mg]o/3.57), the statements of nmda_block.
        let mut b = [0f32; BLOCK];
        for (x, vk) in b.iter_mut().zip(v) {
            *x = -0.062 * vk;
        }
        exp_sw_slice(&mut b[..len]);
        for x in &mut b[..len] {
            *x = 1.0 / (1.0 + *x * mg_o_mm / 3.57);
        }
        for (gk, bk) in g.iter_mut().zip(&b) {
            for ri in 0..NR {
                if blocked[ri] {
                    gk[ri] *= bk;
                }
            }
        }
    }
    for ((gk, gt), x) in g.iter().zip(g_tot.iter_mut()).zip(num.iter_mut()) {
        for ri in 0..NR {
            *gt += gk[ri];
            *x += gk[ri] * e_rev[ri];
        }
    }
}

/// The statements of [`lif_update`] for the LIF neurons `range` (one population, at most
/// [`BLOCK`]), one at a time over the block, with selects for its branches so that each
/// loop runs several lanes at a time: the same operations on the same values for each
/// neuron (V_new is computed in the refractory steps too, and not used). `spiked[k]` is
/// 1 for the neurons that spike, else 0.
#[inline(always)]
fn lif_block_update(
    range: std::ops::Range<usize>,
    p: &GpuPopulation,
    v_inf: &[f32; BLOCK],
    decay: &[f32; BLOCK],
    st: &mut Neurons<'_>,
    spiked: &mut [u32; BLOCK],
) {
    let (n, end) = (range.start, range.end);
    let lanes = st.v_mv[n..end]
        .iter_mut()
        .zip(&mut st.refr[n..end])
        .zip(&st.theta_mv[n..end])
        .zip(v_inf.iter().zip(decay))
        .zip(spiked.iter_mut());
    for ((((v, refr), theta), (vi, d)), s) in lanes {
        let v_new = relax(*vi, *v, *d);
        let r = *refr;
        let in_ref = r != 0;
        let spike = !in_ref & (v_new >= p.v_th_mv + theta);
        *v = if in_ref | spike { p.v_reset_mv } else { v_new };
        let r_next = if spike { p.n_ref } else { r };
        *refr = if in_ref { r.wrapping_sub(1) } else { r_next };
        *s = spike as u32;
    }
    // Without relative refractoriness, adaptation and threshold elevation (every q is 0)
    // and with all three at +0 (their initial value), the decays below leave them at +0:
    // then the pass is skipped (a read-only test instead of a read-modify-write).
    if p.q_rr_ns == 0.0 && p.q_sfa_ns == 0.0 && p.delta_theta_mv == 0.0 {
        let bits = st.g_rr_ns[n..end]
            .iter()
            .zip(&st.g_sfa_ns[n..end])
            .zip(&st.theta_mv[n..end])
            .fold(0u32, |acc, ((a, b), c)| {
                acc | a.to_bits() | b.to_bits() | c.to_bits()
            });
        if bits == 0 {
            return;
        }
    }
    let decays = st.g_rr_ns[n..end]
        .iter_mut()
        .zip(&mut st.g_sfa_ns[n..end])
        .zip(&mut st.theta_mv[n..end])
        .zip(spiked.iter());
    for (((g_rr, g_sfa), theta), &flag) in decays {
        let s = flag != 0;
        let rr = flush_subnormal(*g_rr * p.decay_rr);
        let sfa = flush_subnormal(*g_sfa * p.decay_sfa);
        let th = flush_subnormal(*theta * p.decay_theta);
        *g_rr = if s { rr + p.q_rr_ns } else { rr };
        *g_sfa = if s { sfa + p.q_sfa_ns } else { sfa };
        *theta = if s { th + p.delta_theta_mv } else { th };
    }
}

/// True when V and (for HH neurons, `hh`) the HH gates of the neurons `range` are all
/// finite (one pass the compiler runs several lanes at a time; [`check_finite`] then
/// finds the culprit). A LIF neuron's gates are never written: they keep their initial 0.
#[inline(always)]
fn block_finite(range: std::ops::Range<usize>, st: &Neurons<'_>, hh: bool) -> bool {
    let r = range;
    let mut ok = true;
    if !hh {
        for v in &st.v_mv[r] {
            ok &= v.is_finite();
        }
        return ok;
    }
    for (((v, m), h), nk) in st.v_mv[r.clone()]
        .iter()
        .zip(&st.hh_m[r.clone()])
        .zip(&st.hh_h[r.clone()])
        .zip(&st.hh_n[r])
    {
        ok &= v.is_finite() & m.is_finite() & h.is_finite() & nk.is_finite();
    }
    ok
}

/// NaN or inf in V (or an HH gate) of neuron `n` stops the run (the GPU twin flags it
/// likewise); the first one found is kept.
#[inline]
fn check_finite(n: usize, st: &Neurons<'_>, out: &mut Fired) {
    if out.non_finite.is_none() {
        for (x, var) in [
            (st.v_mv[n], "v_mv"),
            (st.hh_m[n], "m"),
            (st.hh_h[n], "h"),
            (st.hh_n[n], "n"),
        ] {
            if !x.is_finite() {
                out.non_finite = Some(((st.base + n) as u32, var, false));
                break;
            }
        }
    }
}
