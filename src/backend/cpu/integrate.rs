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
    /// their ten exponentials in three passes over the block). Where the CPU has AVX2 and
    /// the network at most two receptors (or none), none with the Mg²⁺ block, the whole chunks of
    /// 64 neurons of a LIF population's run of blocks instead go through
    /// `lif_chunk_avx2`, which runs those statements on eight registers without the
    /// block's arrays in between (`integrate` on `brette_coba` about 11 -> 7 µs per
    /// step). Each neuron sees the same operations on the same values as in [`integrate`]
    /// and the WGSL twin, so the bits are the same; only independent neurons' statements
    /// are interleaved, which lets the CPU overlap their exponentials' latency.
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
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2")
        && params.n_receptors <= 2
        && receptors
            .iter()
            .take(params.n_receptors as usize)
            .all(|rc| rc.mg_block != 1);
    let mut n = 0;
    while n < nn {
        let pop = net.neuron_pop[base + n];
        let p = &pops[pop as usize];
        if p.model == neuron::LIF || p.model == neuron::HH {
            // The block: the next neurons of this population, at most BLOCK. Populations
            // are contiguous, so the test without an early exit (which runs several lanes
            // at a time) usually settles it.
            let block_end = |from: usize| {
                let window = &net.neuron_pop[base + from..base + nn.min(from + BLOCK)];
                let mixed = window.iter().fold(false, |acc, &q| acc | (q != pop));
                from + if mixed {
                    window
                        .iter()
                        .position(|&q| q != pop)
                        .unwrap_or(window.len())
                } else {
                    window.len()
                }
            };
            let end = block_end(n);
            // LIF neurons with at most two receptors (or none), none blocked by Mg²⁺, go
            // 64 at a time through the fused AVX2 chunks, over the population's whole run of
            // blocks; what is left (fewer than 64) as below.
            #[cfg(target_arch = "x86_64")]
            let end = if p.model == neuron::LIF && avx2 && end - n >= CHUNK {
                let (mut run_end, mut whole) = (end, end - n == BLOCK);
                while whole && run_end < nn {
                    let next = block_end(run_end);
                    whole = next - run_end == BLOCK;
                    run_end = next;
                }
                n = lif_chunks(n..run_end, p, params, receptors, net, st, out);
                run_end
            } else {
                end
            };
            let len = end - n;
            if len == 0 {
                continue;
            }
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

/// What the blocks read of the first `NR` receptors: the exp receptors' mid-step factor
/// e^{-dt/(2τ)} (1 for the others: p·1 = p, the same bits), the reversal potentials and
/// which have the Mg²⁺ block.
#[inline(always)]
fn receptor_consts<const NR: usize>(
    receptors: &[GpuReceptor],
) -> ([f32; NR], [f32; NR], [bool; NR]) {
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
    (half, e_rev, blocked)
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
    let (half, e_rev, blocked) = receptor_consts::<NR>(receptors);
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

/// The whole chunks of `CHUNK` neurons of the LIF block `range` through [`lif_chunk_avx2`]
/// (with their DC inputs switched first, as [`block_synaptic_drive`] does): their spikes to
/// `out`, the first non-finite V found as [`check_finite`] finds it. Returns the first
/// neuron left (the block's remainder of fewer than [`CHUNK`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lif_chunks(
    range: std::ops::Range<usize>,
    p: &GpuPopulation,
    params: &StepParams,
    receptors: &[GpuReceptor],
    net: &Network,
    st: &mut Neurons<'_>,
    out: &mut Fired,
) -> usize {
    let nr = params.n_receptors as usize;
    let none = LifChunk::<0>::new(p, receptors, params, st);
    let one = LifChunk::<1>::new(p, receptors, params, st);
    let two = LifChunk::<2>::new(p, receptors, params, st);
    let mut n = range.start;
    while n + CHUNK <= range.end {
        if net.input_offsets[st.base + n] != net.input_offsets[st.base + n + CHUNK] {
            for i in n..n + CHUNK {
                switch_inputs(i, params.step, net, st);
            }
        }
        // SAFETY: the caller found AVX2 (`avx2` in `integrate_all_body`), and
        // n + CHUNK ≤ range.end ≤ the length of the view's arrays.
        let (mut bits, finite) = unsafe {
            match nr {
                0 => lif_chunk_avx2(n, &none, st),
                1 => lif_chunk_avx2(n, &one, st),
                _ => lif_chunk_avx2(n, &two, st),
            }
        };
        while bits != 0 {
            out.spikes
                .push((st.base + n) as u32 + bits.trailing_zeros());
            bits &= bits - 1;
        }
        if !finite && out.non_finite.is_none() {
            for i in n..n + CHUNK {
                check_finite(i, st, out);
            }
        }
        n += CHUNK;
    }
    n
}

/// Neurons per call of [`lif_chunk_avx2`]: `CHUNK / 8` AVX2 registers (at most 64, the
/// bits of its spike mask; eight registers were 8 % faster than four on `brette_coba`).
#[cfg(target_arch = "x86_64")]
const CHUNK: usize = 64;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(CHUNK.is_multiple_of(8) && CHUNK <= 64);

/// The constants of [`lif_chunk_avx2`] for one population: what [`receptor_sums`] and
/// [`lif_block_drive`] read per block, read once.
#[cfg(target_arch = "x86_64")]
struct LifChunk<'a, const NR: usize> {
    p: &'a GpuPopulation,
    /// Exp receptors' e^{-dt/(2τ)}, 1 for the others (p·1 = p, the same bits).
    half: [f32; NR],
    e_rev: [f32; NR],
    dt_ms: f32,
    /// The active sums are read (else +0 is added, [`Neurons::active_zero`]).
    read_active: bool,
    /// Relative refractoriness, adaptation or threshold elevation may be non-zero.
    adapt: bool,
}

#[cfg(target_arch = "x86_64")]
impl<'a, const NR: usize> LifChunk<'a, NR> {
    /// The constants for population `p` of the view `st`.
    fn new(
        p: &'a GpuPopulation,
        receptors: &[GpuReceptor],
        params: &StepParams,
        st: &Neurons<'_>,
    ) -> Self {
        let (half, e_rev, _) = receptor_consts::<NR>(receptors);
        LifChunk {
            p,
            half,
            e_rev,
            dt_ms: params.dt_ms,
            read_active: !st.active_zero,
            adapt: !(p.q_rr_ns == 0.0 && p.q_sfa_ns == 0.0 && p.delta_theta_mv == 0.0),
        }
    }
}

/// The LIF neurons `n..n + CHUNK` of one population with receptors of no Mg²⁺ block,
/// advanced in `CHUNK / 8` AVX2 registers at once: the statements of [`block_synaptic_drive`],
/// [`lif_block_drive`], [`exp_sw_slice`] and [`lif_block_update`] on each register, one
/// after the other, without the block's arrays in between. The same operations on the same
/// values for every neuron (`NR` = 2 reads the pool's interleaved pairs and separates
/// them), so the same bits as [`integrate`]; `tests/blocks.rs` compares them. Returns the
/// spike bits of the `CHUNK` neurons (bit k: neuron n + k) and whether every V is finite.
///
/// # Safety
/// The CPU must have AVX2; `n + CHUNK` is at most the length of `st`'s arrays.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lif_chunk_avx2<const NR: usize>(
    n: usize,
    c: &LifChunk<'_, NR>,
    st: &mut Neurons<'_>,
) -> (u64, bool) {
    use std::arch::x86_64::*;
    const U: usize = CHUNK / 8;
    let p = c.p;
    let s = _mm256_set1_ps;
    debug_assert!(n + 8 * U <= st.v_mv.len());
    // SAFETY (every load and store below): lanes n..n + CHUNK of arrays of at least n + CHUNK
    // elements (the pools and active sums of NR entries per neuron), as the caller
    // promises; unaligned loads and stores.
    let ld = |x: &[f32], i: usize| unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
    let pool = |x: &[f32], i: usize, ri: usize| unsafe {
        match NR {
            1 => _mm256_loadu_ps(x.as_ptr().add(i)),
            _ => {
                // Eight (r0, r1) pairs in two registers: the even lanes are receptor 0,
                // the odd ones receptor 1; vshufps takes one of them from each 128-bit
                // half, vpermpd puts the four pairs of neurons back in order.
                let a = _mm256_loadu_ps(x.as_ptr().add(2 * i));
                let b = _mm256_loadu_ps(x.as_ptr().add(2 * i + 8));
                let one = if ri == 0 {
                    _mm256_shuffle_ps::<0x88>(a, b)
                } else {
                    _mm256_shuffle_ps::<0xdd>(a, b)
                };
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0xd8>(_mm256_castps_pd(one)))
            }
        }
    };
    // [`block_synaptic_drive`]: leak, injected and bias currents.
    let mut g: [__m256; U] = [s(p.g_l_ns); U];
    let mut x: [__m256; U] = std::array::from_fn(|u| {
        let i_ext = ld(st.i_ext_pa, n + 8 * u);
        _mm256_add_ps(_mm256_add_ps(s(p.g_l_ns * p.e_l_mv), i_ext), s(p.i_bias_pa))
    });
    // [`receptor_sums`]: active + pool·half of each receptor, in receptor order.
    for ri in 0..NR {
        for u in 0..U {
            let i = n + 8 * u;
            let a = if c.read_active {
                pool(st.g_active_ns, i, ri)
            } else {
                _mm256_setzero_ps()
            };
            let gk = _mm256_add_ps(a, _mm256_mul_ps(pool(st.g_pool_ns, i, ri), s(c.half[ri])));
            g[u] = _mm256_add_ps(g[u], gk);
            x[u] = _mm256_add_ps(x[u], _mm256_mul_ps(gk, s(c.e_rev[ri])));
        }
    }
    // [`lif_block_drive`]: relative refractoriness and adaptation, V_inf and the exponent.
    let sign = s(-0.0);
    let mut v_inf = [_mm256_setzero_ps(); U];
    let mut arg = [_mm256_setzero_ps(); U];
    for u in 0..U {
        let i = n + 8 * u;
        let (g_rr, g_sfa) = (ld(st.g_rr_ns, i), ld(st.g_sfa_ns, i));
        g[u] = _mm256_add_ps(_mm256_add_ps(g[u], g_rr), g_sfa);
        x[u] = _mm256_add_ps(x[u], _mm256_mul_ps(g_rr, s(p.e_rr_mv)));
        x[u] = _mm256_add_ps(x[u], _mm256_mul_ps(g_sfa, s(p.e_sfa_mv)));
        v_inf[u] = _mm256_div_ps(x[u], g[u]);
        let neg = _mm256_xor_ps(g[u], sign);
        arg[u] = _mm256_div_ps(_mm256_mul_ps(neg, s(c.dt_ms)), s(p.c_m_pf));
    }
    // SAFETY: the CPU has AVX2 (this function's feature).
    let decay = unsafe { crate::math::exp_sw_avx2(arg) };
    // [`lif_block_update`]: refractoriness, threshold, reset.
    let mut bits = 0u64;
    let mut finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    let mut spike = [_mm256_setzero_ps(); U];
    for u in 0..U {
        let i = n + 8 * u;
        let v = ld(st.v_mv, i);
        let v_new = _mm256_add_ps(
            v_inf[u],
            _mm256_mul_ps(_mm256_sub_ps(v, v_inf[u]), decay[u]),
        );
        // SAFETY: as above, lanes i..i + 8 of `refr`.
        let r = unsafe { _mm256_loadu_si256(st.refr.as_ptr().add(i).cast()) };
        let zero = _mm256_castsi256_ps(_mm256_cmpeq_epi32(r, _mm256_setzero_si256()));
        let threshold = _mm256_add_ps(s(p.v_th_mv), ld(st.theta_mv, i));
        let crossed = _mm256_cmp_ps::<_CMP_GE_OQ>(v_new, threshold);
        spike[u] = _mm256_and_ps(zero, crossed);
        // in_ref | spike = !zero | spike.
        let hold = _mm256_or_ps(
            _mm256_xor_ps(zero, _mm256_castsi256_ps(_mm256_set1_epi32(-1))),
            spike[u],
        );
        let v_out = _mm256_blendv_ps(v_new, s(p.v_reset_mv), hold);
        let r_next = _mm256_blendv_ps(
            _mm256_castsi256_ps(r),
            _mm256_castsi256_ps(_mm256_set1_epi32(p.n_ref as i32)),
            spike[u],
        );
        let r_dec = _mm256_castsi256_ps(_mm256_sub_epi32(r, _mm256_set1_epi32(1)));
        let r_out = _mm256_blendv_ps(r_dec, r_next, zero);
        // SAFETY: as above.
        unsafe {
            _mm256_storeu_ps(st.v_mv.as_mut_ptr().add(i), v_out);
            _mm256_storeu_si256(
                st.refr.as_mut_ptr().add(i).cast(),
                _mm256_castps_si256(r_out),
            );
        }
        finite = _mm256_and_ps(
            finite,
            _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_andnot_ps(sign, v_out), s(f32::INFINITY)),
        );
        bits |= (_mm256_movemask_ps(spike[u]) as u64) << (8 * u);
    }
    // The decays and spike-triggered increments; skipped, as in [`lif_block_update`],
    // where every q is 0 and the three variables are +0.
    let adapt = c.adapt || {
        let mut any = _mm256_setzero_ps();
        for u in 0..U {
            let i = n + 8 * u;
            any = _mm256_or_ps(any, _mm256_or_ps(ld(st.g_rr_ns, i), ld(st.g_sfa_ns, i)));
            any = _mm256_or_ps(any, ld(st.theta_mv, i));
        }
        let any = _mm256_castps_si256(any);
        _mm256_testz_si256(any, any) == 0
    };
    if adapt {
        let flush = |y: __m256| {
            let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_andnot_ps(sign, y), s(f32::MIN_POSITIVE));
            _mm256_blendv_ps(y, _mm256_setzero_ps(), tiny)
        };
        for (u, &spiked) in spike.iter().enumerate() {
            let i = n + 8 * u;
            let rr = flush(_mm256_mul_ps(ld(st.g_rr_ns, i), s(p.decay_rr)));
            let sfa = flush(_mm256_mul_ps(ld(st.g_sfa_ns, i), s(p.decay_sfa)));
            let th = flush(_mm256_mul_ps(ld(st.theta_mv, i), s(p.decay_theta)));
            let rr = _mm256_blendv_ps(rr, _mm256_add_ps(rr, s(p.q_rr_ns)), spiked);
            let sfa = _mm256_blendv_ps(sfa, _mm256_add_ps(sfa, s(p.q_sfa_ns)), spiked);
            let th = _mm256_blendv_ps(th, _mm256_add_ps(th, s(p.delta_theta_mv)), spiked);
            // SAFETY: as above.
            unsafe {
                _mm256_storeu_ps(st.g_rr_ns.as_mut_ptr().add(i), rr);
                _mm256_storeu_ps(st.g_sfa_ns.as_mut_ptr().add(i), sfa);
                _mm256_storeu_ps(st.theta_mv.as_mut_ptr().add(i), th);
            }
        }
    }
    (bits, _mm256_movemask_ps(finite) == 0xff)
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
