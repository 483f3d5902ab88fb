//! Model parameters with their defaults (f64, from `model-spec.md`) and the derived
//! constants uploaded to the kernels as f32 (`crate::layout`).
//!
//! The NEST `P_`/`V_` split: [`Model::from_spec`] resolves every parameter the user left
//! out to its documented default, then computes decay factors such as `exp(-dt/τ)` once,
//! in f64. No kernel evaluates `exp(-dt/τ)` for a constant τ; lazy presynaptic updates
//! over Δ steps use [`pow_decay`] on tables of `exp(-2^b dt/τ)`.

use crate::layout::{self, GpuPopulation, GpuReceptor, GpuSynType, PowTable, POW_BITS};
use crate::math::exp_sw;
use crate::netfile::{
    CleftModel, FacilitationLaw, NetworkFile, NeuronModel, ReceptorKind, ReceptorSpec,
    ReleaseModel, SynapseTypeSpec, Transmitter,
};

/// Reference saline of §1.1: \[Ca\]o = 2 mM, \[Mg\]o = 1 mM.
pub const CA_REF_MM: f64 = 2.0;
/// Reference \[Mg\]o, mM.
pub const MG_REF_MM: f64 = 1.0;
/// Unmyelinated conduction constant k in v = k·√d, m/s per √µm (§7, 1-2 \[verify\]).
pub const UNMYELINATED_K: f64 = 1.5;
/// Myelinated conduction: v = 6 m/s per µm of diameter (§7; Hursh 1939).
pub const MYELINATED_M_PER_S_PER_UM: f64 = 6.0;
/// Asynchronous release latencies are truncated at this many τ_a (probability e^-20).
pub const ASYNC_TRUNCATION_TAUS: f64 = 20.0;
/// Default bound on the open fraction a synapse's receptors miss by handing off (§5.4):
/// the transmitter left in an exponential cleft at hand-off, T_c, can still bind at most
/// α·T_c·τ_clear of open fraction (α·(1 - r)·∫T dt with ∫T dt = T_c·τ_clear), so a
/// synapse type hands off once α·T·τ_clear < 5·10⁻⁴ for every one of its kinetic and
/// GABA_B receptors: the clear threshold ε_T = 5·10⁻⁴/(α_max·τ_clear) comes from the
/// receptors' binding rate instead of one fixed 10⁻⁴ mM, under which the bound ranged from
/// 8.6·10⁻⁶ (NMDA, α = 0.072) to 1.5·10⁻⁴ (GABA_A, α = 5, τ_clear = 0.3 ms). 5·10⁻⁴ is
/// 0.09 % of one quantum's AMPA peak (0.567, §5.3). Defaults: AMPA 3.8·10⁻⁴ mM and NMDA
/// 5.8·10⁻³ mM (τ_clear = 1.2 ms), GABA_A 3.3·10⁻⁴ mM (0.3 ms): an AMPA synapse stays
/// active 9.6 instead of 11.2 ms, an NMDA one 6.1 instead of 11.2 ms.
/// `clear_threshold_mm` in the network file overrides it.
pub const HANDOFF_MISSED_OPEN_FRACTION: f64 = 5e-4;

pub use crate::netfile::cleft_defaults;

/// W(\[Ca\]o, \[Mg\]o) of Dodge & Rahamimoff (1967), §1.1.
pub fn dr_w(ca_mm: f64, mg_mm: f64, k_ca_mm: f64, k_mg_mm: f64) -> f64 {
    ca_mm / (1.0 + ca_mm / k_ca_mm + mg_mm / k_mg_mm)
}

/// Relative Ca drive c = W(\[Ca\]o,\[Mg\]o)/W(2,1) (§1.1).
pub fn ca_drive(ca_mm: f64, mg_mm: f64, k_ca_mm: f64, k_mg_mm: f64) -> f64 {
    dr_w(ca_mm, mg_mm, k_ca_mm, k_mg_mm) / dr_w(CA_REF_MM, MG_REF_MM, k_ca_mm, k_mg_mm)
}

/// Bytes of the static arrays per synapse (post, weight, outgoing CSR entry: 4 B each;
/// projection, delay: 2 B each).
pub const STATIC_BYTES_PER_SYNAPSE: u64 = 16;

/// NMDA Mg2+ block B(V) = 1/(1 + exp(-0.062 V)·\[Mg\]o/3.57) (Jahr & Stevens 1990; §5.1), f32
/// as in the kernels. Never inlined: the compiler would otherwise hoist this pure function
/// out of the receptor loop of `integrate` and compute its exponential and divisions for
/// every neuron, NMDA receptor or not (measured: a third of `integrate` on COBA).
#[inline(never)]
pub fn nmda_block(v_mv: f32, mg_o_mm: f32) -> f32 {
    1.0 / (1.0 + exp_sw(-0.062 * v_mv) * mg_o_mm / 3.57)
}

/// x/(eˣ - 1), with its limit 1 - x/2 near 0 (§6.2: avoids 0/0 in α_m, β_m, α_n).
#[inline]
pub fn exprel(x: f32) -> f32 {
    if x.abs() < 1e-4 {
        1.0 - 0.5 * x
    } else {
        x / (exp_sw(x) - 1.0)
    }
}

/// Traub-Miles rates (α_m, β_m, α_h, β_h, α_n, β_n) in 1/ms at V (mV), §6.2.
#[inline]
pub fn hh_rates(v: f32, v_t: f32) -> [f32; 6] {
    let u = v - v_t;
    let am = 1.28 * exprel((13.0 - u) / 4.0);
    let bm = 1.4 * exprel((u - 40.0) / 5.0);
    let ah = 0.128 * exp_sw((17.0 - u) / 18.0);
    let bh = 4.0 / (1.0 + exp_sw((40.0 - u) / 5.0));
    let an = 0.16 * exprel((15.0 - u) / 5.0);
    let bn = 0.5 * exp_sw((10.0 - u) / 40.0);
    [am, bm, ah, bh, an, bn]
}

/// Steady-state gates (m, h, n) at V: the HH initial state (§6.2).
pub fn hh_steady_state(v: f32, v_t: f32) -> (f32, f32, f32) {
    let [am, bm, ah, bh, an, bn] = hh_rates(v, v_t);
    (am / (am + bm), ah / (ah + bh), an / (an + bn))
}

/// Table of exp(-2^b · dt/τ), b = 0..32 (computed in f64). τ = ∞ gives ones, τ = 0 zeros.
pub fn pow_table(dt_ms: f64, tau_ms: f64) -> PowTable {
    let mut f = [0f32; POW_BITS];
    for (b, x) in f.iter_mut().enumerate() {
        *x = if tau_ms.is_infinite() {
            1.0
        } else if tau_ms <= 0.0 {
            0.0
        } else {
            flush_subnormal((-(2f64.powi(b as i32)) * dt_ms / tau_ms).exp() as f32)
        };
    }
    PowTable { f }
}

/// `x`, or 0 when `x` is subnormal (|x| < 2^-126). Decaying state is flushed so that it
/// reaches exactly 0 after a long silence, like a GPU that flushes denormals, and costs
/// no slow subnormal arithmetic on the CPU.
#[inline]
pub fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

/// exp(-Δ·dt/τ) from a pow table: the product of the entries of Δ's set bits, ascending.
/// Kernels and their WGSL twins multiply in the same order, so the result is bit-identical.
#[inline]
pub fn pow_decay(t: &PowTable, delta_steps: u32) -> f32 {
    let mut out = 1.0f32;
    let mut d = delta_steps;
    let mut b = 0usize;
    while d != 0 {
        // A select, not a branch: the bits of Δ are unpredictable, and ·1 is exact.
        let f = if d & 1 == 1 { t.f[b & 31] } else { 1.0 };
        out *= f;
        d >>= 1;
        b += 1;
    }
    out
}

/// [`pow_decay`] of three tables for the same Δ in one loop (a terminal's recovery,
/// basal refilling and facilitation decays): each product is formed in the same order
/// as by [`pow_decay`], so the bits are the same, with one loop's branches instead of three.
#[inline]
pub fn pow_decay3(t: [&PowTable; 3], delta_steps: u32) -> [f32; 3] {
    let mut out = [1.0f32; 3];
    let mut d = delta_steps;
    let mut b = 0usize;
    while d != 0 {
        let set = d & 1 == 1;
        for (o, tab) in out.iter_mut().zip(t) {
            *o *= if set { tab.f[b & 31] } else { 1.0 };
        }
        d >>= 1;
        b += 1;
    }
    out
}

/// Resolved parameters of one receptor (f64) with its name.
#[derive(Debug, Clone)]
pub struct ReceptorModel {
    /// Kind.
    pub kind: ReceptorKind,
    /// Owning synapse type index.
    pub syn_type: usize,
    /// `"<synapse type>_<kind>"`, used in output names.
    pub name: String,
    /// α (kinetic) or K1 (GABA_B), 1/(mM ms).
    pub alpha: f64,
    /// β (kinetic) or K2 (GABA_B), 1/ms; 1/τ for exp.
    pub beta: f64,
    /// g_max, nS.
    pub g_max_ns: f64,
    /// Reversal, mV.
    pub e_rev_mv: f64,
    /// GABA_B K3, K4, K_D, n.
    pub gaba_b: [f64; 4],
}

/// Resolved synapse type.
#[derive(Debug, Clone)]
pub struct SynTypeModel {
    /// Name.
    pub name: String,
    /// Transmitter.
    pub transmitter: Transmitter,
    /// Release model.
    pub release: ReleaseModel,
    /// Constants for the kernels.
    pub gpu: GpuSynType,
    /// Longest asynchronous release latency in steps (ring sizing).
    pub max_async_steps: u32,
    /// λ_s in 1/s.
    pub spont_rate_per_s: f64,
}

/// Resolved population.
#[derive(Debug, Clone)]
pub struct PopModel {
    /// Name.
    pub name: String,
    /// Model.
    pub model: NeuronModel,
    /// Size.
    pub size: u32,
    /// First global neuron id.
    pub first: u32,
    /// Constants for the kernels.
    pub gpu: GpuPopulation,
}

/// The whole resolved model.
#[derive(Debug, Clone)]
pub struct Model {
    /// Step, ms.
    pub dt_ms: f64,
    /// Number of steps of the run.
    pub n_steps: u32,
    /// Seed.
    pub seed: u64,
    /// \[Ca\]o, mM.
    pub ca_o_mm: f64,
    /// \[Mg\]o, mM.
    pub mg_o_mm: f64,
    /// Populations in file order.
    pub pops: Vec<PopModel>,
    /// Synapse types in file order.
    pub syn_types: Vec<SynTypeModel>,
    /// Receptors of all types (global receptor index), in type order.
    pub receptors: Vec<ReceptorModel>,
    /// Receptor constants for the kernels.
    pub gpu_receptors: Vec<GpuReceptor>,
    /// The population table as uploaded (`pops[i].gpu`).
    pub gpu_pops: Vec<GpuPopulation>,
    /// Lazy-decay tables.
    pub pow_tables: Vec<PowTable>,
}

impl Model {
    /// Resolves defaults and derives the constants. The file must have been validated.
    pub fn from_spec(f: &NetworkFile) -> Model {
        let dt = f.simulation.dt_ms;
        let mut tables: Vec<PowTable> = Vec::new();
        let mut table = |tau: f64| -> u32 {
            tables.push(pow_table(dt, tau));
            (tables.len() - 1) as u32
        };
        let mut pops = Vec::new();
        let mut first = 0u32;
        for p in &f.populations {
            let mut g = GpuPopulation::default();
            match p.model {
                NeuronModel::Lif => {
                    let l = p.lif.clone().unwrap_or_default();
                    g.model = layout::neuron::LIF;
                    g.c_m_pf = l.c_m_pf.unwrap_or(200.0) as f32;
                    let gl = l.g_l_ns.unwrap_or(10.0);
                    g.g_l_ns = gl as f32;
                    g.e_l_mv = l.e_l_mv.unwrap_or(-70.0) as f32;
                    g.v_th_mv = l.v_th_mv.unwrap_or(-50.0) as f32;
                    g.v_reset_mv = l.v_reset_mv.unwrap_or(-60.0) as f32;
                    g.n_ref = (l.t_ref_ms.unwrap_or(2.0) / dt).round() as u32;
                    g.q_rr_ns = l.q_rr_ns.unwrap_or(111.0 * gl) as f32;
                    g.decay_rr = (-dt / l.tau_rr_ms.unwrap_or(1.97)).exp() as f32;
                    g.e_rr_mv = l.e_rr_mv.unwrap_or(-70.0) as f32;
                    g.q_sfa_ns = l.q_sfa_ns.unwrap_or(0.5 * gl) as f32;
                    g.decay_sfa = (-dt / l.tau_sfa_ms.unwrap_or(110.0)).exp() as f32;
                    g.e_sfa_mv = l.e_sfa_mv.unwrap_or(-70.0) as f32;
                    g.delta_theta_mv = l.delta_theta_mv.unwrap_or(0.0) as f32;
                    g.decay_theta = (-dt / l.tau_theta_ms.unwrap_or(5.0)).exp() as f32;
                    g.i_bias_pa = l.i_bias_pa.unwrap_or(0.0) as f32;
                }
                NeuronModel::Hh => {
                    let h = p.hh.clone().unwrap_or_default();
                    g.model = layout::neuron::HH;
                    g.c_m_pf = h.c_m_pf.unwrap_or(200.0) as f32;
                    g.g_l_ns = h.g_l_ns.unwrap_or(10.0) as f32;
                    g.e_l_mv = h.e_l_mv.unwrap_or(-60.0) as f32;
                    g.g_na_ns = h.g_na_ns.unwrap_or(20_000.0) as f32;
                    g.g_k_ns = h.g_k_ns.unwrap_or(6_000.0) as f32;
                    g.e_na_mv = h.e_na_mv.unwrap_or(50.0) as f32;
                    g.e_k_mv = h.e_k_mv.unwrap_or(-90.0) as f32;
                    g.v_t_mv = h.v_t_mv.unwrap_or(-63.0) as f32;
                    g.v_spike_mv = h.v_spike_mv.unwrap_or(-20.0) as f32;
                    g.n_ref = (h.lockout_ms.unwrap_or(3.0) / dt).round() as u32;
                    g.i_bias_pa = h.i_bias_pa.unwrap_or(0.0) as f32;
                }
                NeuronModel::Poisson => {
                    let ps = p
                        .poisson
                        .as_ref()
                        .expect("validated: poisson table present");
                    g.model = layout::neuron::POISSON;
                    g.p_spike = (1.0 - (-ps.rate_hz * 1e-3 * dt).exp()) as f32;
                    g.start_step = (ps.start_ms / dt).round() as u32;
                    g.stop_step = ps
                        .stop_ms
                        .map(|s| (s / dt).round().min(u32::MAX as f64) as u32)
                        .unwrap_or(u32::MAX);
                }
                NeuronModel::SpikeTimes => {
                    g.model = layout::neuron::SPIKE_TIMES;
                }
            }
            pops.push(PopModel {
                name: p.name.clone(),
                model: p.model,
                size: p.size as u32,
                first,
                gpu: g,
            });
            first += p.size as u32;
        }

        let mut syn_types = Vec::new();
        let mut receptors = Vec::new();
        let mut gpu_receptors = Vec::new();
        for (ti, s) in f.synapse_types.iter().enumerate() {
            let mut g = GpuSynType::default();
            let ves = s.vesicles.clone().unwrap_or_default();
            let is_ca = s.release == ReleaseModel::Ca;
            match s.release {
                ReleaseModel::Ca => {
                    let ca = s.ca.clone().unwrap_or_default();
                    g.release = layout::release::CA;
                    g.n_sites = ca.n_sites.unwrap_or(5);
                    let law = ca.law.unwrap_or_default();
                    g.law = (law == FacilitationLaw::Dkr) as u32;
                    let p_max = ca.p_max.unwrap_or(1.0);
                    let p_ref = ca.p_ref.unwrap_or(0.24);
                    g.p_max = p_max as f32;
                    g.k_p_pow_n = ((p_max - p_ref) / p_ref) as f32;
                    g.hill_n = ca.hill_n.unwrap_or(4.0) as f32;
                    g.phi_f = ca.phi_f.unwrap_or(0.916) as f32;
                    g.k_f = ca.k_f.unwrap_or(if law == FacilitationLaw::Dkr {
                        0.6713
                    } else {
                        0.5
                    }) as f32;
                    g.c_drive = ca_drive(
                        f.environment.ca_o_mm,
                        f.environment.mg_o_mm,
                        ca.k_ca_mm.unwrap_or(2.0),
                        ca.k_mg_mm.unwrap_or(3.0),
                    ) as f32;
                    let tau_d = ca.tau_d_ms.unwrap_or(50.0);
                    let k0 = ca.k0_per_s.unwrap_or(2.0) * 1e-3;
                    let kmax = ca.kmax_per_s.unwrap_or(30.0) * 1e-3;
                    g.k_d = ca.k_d.unwrap_or(2.0) as f32;
                    g.eta_exponent = ((kmax - k0) * tau_d) as f32;
                    g.tab_fac = table(ca.tau_f_ms.unwrap_or(100.0));
                    g.tab_rec = table(tau_d);
                    g.tab_k0 = table(if k0 > 0.0 { 1.0 / k0 } else { f64::INFINITY });
                    g.ca_rest_um = ca.ca_rest_um.unwrap_or(0.05) as f32;
                    g.delta_ca_um = ca.delta_ca_um.unwrap_or(0.2) as f32;
                }
                ReleaseModel::TmStochastic | ReleaseModel::TmMean => {
                    let tm = s.tm.clone().unwrap_or_default();
                    g.release = if s.release == ReleaseModel::TmMean {
                        layout::release::TM_MEAN
                    } else {
                        layout::release::TM_STOCHASTIC
                    };
                    g.n_sites = tm.n_sites.unwrap_or(5);
                    g.tm_u = tm.u.unwrap_or(0.5) as f32;
                    g.tab_fac = table(tm.tau_fac_ms.unwrap_or(0.0));
                    g.tab_rec = table(tm.tau_rec_ms.unwrap_or(800.0));
                    g.tab_k0 = g.tab_rec;
                    g.p_max = 1.0;
                }
                ReleaseModel::Static => {
                    // One site that is always docked: the terminal never changes.
                    g.release = layout::release::STATIC;
                    g.n_sites = 1;
                    g.tab_fac = table(0.0);
                    g.tab_rec = g.tab_fac;
                    g.tab_k0 = g.tab_fac;
                    g.p_max = 1.0;
                }
            }
            g.reserve_size = ves.reserve_size.unwrap_or(0);
            g.tab_endo = table(ves.tau_endo_ms.unwrap_or(1000.0));
            g.async_rho = ves.async_rho.unwrap_or(if is_ca { 0.05 } else { 0.0 }) as f32;
            let tau_a = ves.tau_async_ms.unwrap_or(30.0);
            g.tau_async_steps = (tau_a / dt) as f32;
            let max_async_steps = if g.async_rho > 0.0 {
                (ASYNC_TRUNCATION_TAUS * tau_a / dt).ceil() as u32
            } else {
                0
            };
            g.max_async_steps = max_async_steps;
            let spont = ves
                .spont_rate_per_s
                .unwrap_or(if is_ca { 2e-4 } else { 0.0 });
            g.spont_per_site_step = (spont * 1e-3 * dt) as f32;

            let cl = s.cleft.clone().unwrap_or_default();
            let (dt_mm, kd, ku, ke) = cleft_defaults(s.transmitter);
            g.delta_t_mm = cl.delta_t_mm.unwrap_or(dt_mm) as f32;
            let k_clear = cl.k_diffusion_per_ms.unwrap_or(kd)
                + cl.k_uptake_per_ms.unwrap_or(ku)
                + cl.k_enzyme_per_ms.unwrap_or(ke);
            g.clear_half = (-dt * k_clear / 2.0).exp() as f32;
            g.clear_full = (-dt * k_clear).exp() as f32;
            g.clear_threshold_mm =
                cl.clear_threshold_mm
                    .unwrap_or_else(|| clear_threshold_mm(s, k_clear)) as f32;
            g.cleft_pulse = (cl.model == Some(CleftModel::Pulse)) as u32;
            g.pulse_mm = cl.pulse_mm.unwrap_or(1.0) as f32;
            g.pulse_steps = (cl.pulse_ms.unwrap_or(1.0) / dt).round().max(1.0) as u32;
            g.receptor_first = receptors.len() as u32;
            g.cleft_dependent = s.receptors.iter().any(|r| r.kind != ReceptorKind::Exp) as u32;
            g.n_receptors = s.receptors.len() as u32;
            for r in &s.receptors {
                let (_, b, gm, e) = receptor_defaults(r.kind);
                let alpha = binding_rate(r);
                let beta = match r.kind {
                    ReceptorKind::Exp => 1.0 / r.tau_ms.unwrap_or(5.0),
                    ReceptorKind::GabaB => r.k2_per_ms.unwrap_or(b),
                    _ => r.beta_per_ms.unwrap_or(b),
                };
                let gaba_b = [
                    r.k3_per_ms.unwrap_or(0.098),
                    r.k4_per_ms.unwrap_or(0.033),
                    r.k_d.unwrap_or(100.0),
                    r.n_hill.unwrap_or(4.0),
                ];
                let m = ReceptorModel {
                    kind: r.kind,
                    syn_type: ti,
                    name: format!("{}_{}", s.name, r.kind.name()),
                    alpha,
                    beta,
                    g_max_ns: r.g_max_ns.unwrap_or(gm),
                    e_rev_mv: r.e_rev_mv.unwrap_or(e),
                    gaba_b,
                };
                let mut gr = GpuReceptor {
                    kind: match r.kind {
                        ReceptorKind::GabaB => layout::receptor::GABA_B,
                        ReceptorKind::Exp => layout::receptor::EXP,
                        _ => layout::receptor::KINETIC,
                    },
                    mg_block: (r.kind == ReceptorKind::Nmda) as u32,
                    syn_type: ti as u32,
                    alpha: m.alpha as f32,
                    beta: m.beta as f32,
                    g_max_ns: m.g_max_ns as f32,
                    e_rev_mv: m.e_rev_mv as f32,
                    decay: (-m.beta * dt).exp() as f32,
                    half_decay: (-m.beta * dt / 2.0).exp() as f32,
                    ..Default::default()
                };
                if r.kind == ReceptorKind::GabaB {
                    gr.k3 = gaba_b[0] as f32;
                    gr.k4 = gaba_b[1] as f32;
                    gr.decay_k4 = (-gaba_b[1] * dt).exp() as f32;
                    gr.k_d = gaba_b[2] as f32;
                    gr.n_hill = gaba_b[3] as f32;
                }
                gr.tab_beta = table(1.0 / m.beta);
                receptors.push(m);
                gpu_receptors.push(gr);
            }
            syn_types.push(SynTypeModel {
                name: s.name.clone(),
                transmitter: s.transmitter,
                release: s.release,
                gpu: g,
                max_async_steps,
                spont_rate_per_s: spont,
            });
        }
        let n_steps = (f.simulation.duration_ms / dt).round() as u32;
        let gpu_pops = pops.iter().map(|p| p.gpu).collect();
        Model {
            dt_ms: dt,
            n_steps,
            seed: f.simulation.seed,
            ca_o_mm: f.environment.ca_o_mm,
            mg_o_mm: f.environment.mg_o_mm,
            pops,
            syn_types,
            receptors,
            gpu_receptors,
            gpu_pops,
            pow_tables: tables,
        }
    }

    /// True when every synapse type has `static` release (no terminal state to advance).
    pub fn all_static_release(&self) -> bool {
        self.syn_types
            .iter()
            .all(|t| t.gpu.release == layout::release::STATIC)
    }

    /// True when every synapse type has static release onto exp receptors only, without
    /// asynchronous or spontaneous release: each spike arrival is one quantum that goes
    /// straight to the target's pooled conductance (the Brette 2007 kind of network).
    pub fn static_exp_only(&self) -> bool {
        self.all_static_release() && self.exp_only()
    }

    /// True when every receptor is exp and no synapse type releases asynchronously or
    /// spontaneously: every release goes straight into its target's pool (§6.4a), one
    /// event per synapse and step.
    pub fn exp_only(&self) -> bool {
        self.gpu_receptors
            .iter()
            .all(|r| r.kind == layout::receptor::EXP)
            && self
                .syn_types
                .iter()
                .all(|t| t.gpu.async_rho == 0.0 && t.spont_rate_per_s == 0.0)
    }

    /// True when there are synapse types and each has an exponential cleft (not the DMS
    /// pulse) and only kinetic receptors (§5.1), at least one: `cleft` then advances its
    /// slots with straight-line statements over lanes of receptors (the coba_kinetic kind
    /// of network).
    pub fn kinetic_only(&self) -> bool {
        !self.syn_types.is_empty()
            && self.syn_types.iter().all(|t| {
                let g = &t.gpu;
                g.cleft_pulse == 0
                    && g.n_receptors >= 1
                    && self.gpu_receptors
                        [g.receptor_first as usize..(g.receptor_first + g.n_receptors) as usize]
                        .iter()
                        .all(|r| r.kind == layout::receptor::KINETIC)
            })
    }

    /// When the CPU keeps one 8-byte record per synapse for static release onto exp
    /// receptors (`release::StaticSynapse`): every synapse type static onto one exp
    /// receptor ([`Model::static_exp_only`]), and each target's pool entry with the
    /// projection key fits 32 bits. Returns the key's bits.
    pub fn static_record_key_bits(&self) -> Option<u32> {
        let (np, nt, nr) = (self.pops.len(), self.syn_types.len(), self.receptors.len());
        let key_bits = (np * np * nt).next_power_of_two().trailing_zeros();
        let fits = ((self.n_neurons() as u64 * nr as u64) << key_bits) <= u32::MAX as u64;
        (self.static_exp_only() && fits && self.syn_types.iter().all(|t| t.gpu.n_receptors == 1))
            .then_some(key_bits)
    }

    /// Floats of receptor state an active synapse keeps (`ActivePool::r`): r of receptor
    /// j at `2j`, R and G at `2j` and `2j + 1` for GABA_B, up to the highest any synapse
    /// type uses (1 for one kinetic receptor per type; 0 without kinetic or GABA_B ones).
    pub fn receptor_state_stride(&self) -> usize {
        self.syn_types
            .iter()
            .flat_map(|t| {
                let first = t.gpu.receptor_first as usize;
                self.gpu_receptors[first..first + t.gpu.n_receptors as usize]
                    .iter()
                    .enumerate()
                    .map(|(j, r)| match r.kind {
                        layout::receptor::KINETIC => 2 * j + 1,
                        layout::receptor::GABA_B => 2 * j + 2,
                        _ => 0,
                    })
            })
            .max()
            .unwrap_or(0)
    }

    /// Total number of neurons (sources included).
    pub fn n_neurons(&self) -> u32 {
        self.pops.iter().map(|p| p.size).sum()
    }
}

/// The transmitter below which a synapse of type `s` hands off (§5.4), for a cleft
/// cleared at `k_clear_per_ms`: [`HANDOFF_MISSED_OPEN_FRACTION`]`·k_clear/α_max`, α_max the
/// largest binding rate (mM⁻¹ms⁻¹) of the type's kinetic and GABA_B receptors; 10⁻⁴ mM for
/// a type with exponential receptors only (it leaves the active pool after one step
/// whatever its transmitter).
pub fn clear_threshold_mm(s: &SynapseTypeSpec, k_clear_per_ms: f64) -> f64 {
    let alpha_max = s
        .receptors
        .iter()
        .filter(|r| r.kind != ReceptorKind::Exp)
        .map(binding_rate)
        .fold(0.0, f64::max);
    if alpha_max > 0.0 {
        HANDOFF_MISSED_OPEN_FRACTION * k_clear_per_ms / alpha_max
    } else {
        1e-4
    }
}

/// Default (α or K1 in mM⁻¹ms⁻¹, β or K2 in ms⁻¹, ḡ in nS, E_rev in mV) of a receptor
/// kind (§5.1-§5.3; exp: τ = 5 ms).
fn receptor_defaults(kind: ReceptorKind) -> (f64, f64, f64, f64) {
    match kind {
        ReceptorKind::Ampa => (1.1, 0.19, 0.5, 0.0),
        ReceptorKind::Nmda => (0.072, 0.0066, 2.0, 0.0),
        ReceptorKind::GabaA => (5.0, 0.18, 0.5, -80.0),
        ReceptorKind::Glycine => (5.0, 0.15, 0.5, -75.0),
        ReceptorKind::Nach => (3.0, 0.7, 0.5, 0.0),
        ReceptorKind::GabaB => (0.52, 0.0013, 1.0, -95.0),
        ReceptorKind::Exp => (0.0, 1.0 / 5.0, 1.0, 0.0),
    }
}

/// A receptor's binding rate α (K1 for GABA_B), mM⁻¹ms⁻¹: the file's value or the default.
fn binding_rate(r: &ReceptorSpec) -> f64 {
    r.alpha_per_mm_ms
        .or(r.k1_per_mm_ms)
        .unwrap_or(receptor_defaults(r.kind).0)
}

/// Which optional per-synapse arrays a model needs; shared by [`State::new`](crate::state::State::new) and the
/// memory estimate of `network::estimate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynapseArrays {
    /// The CPU's 8-byte record per synapse of static release onto exp receptors
    /// ([`Model::static_record_key_bits`]).
    pub static_record: bool,
    /// Some type has asynchronous release (`committed` bitmask per synapse).
    pub any_async: bool,
    /// Some type tracks its reserve pool (`reserve` and `endo` per synapse).
    pub any_reserve: bool,
    /// Hand-off open fractions per synapse (most receptors of a type; 0 without kinetic receptors).
    pub handoff_stride: usize,
    /// Some type has receptors that need the cleft (kinetic, GABA_B), so synapses enter
    /// the active pool (`handoff_step` per synapse). Without one, every release goes
    /// straight to the neuron pool and no synapse is ever active.
    pub any_cleft: bool,
}

impl SynapseArrays {
    /// The arrays `model` needs.
    pub fn of(model: &Model) -> Self {
        let any_kinetic = model
            .gpu_receptors
            .iter()
            .any(|r| r.kind == layout::receptor::KINETIC);
        let most = model
            .syn_types
            .iter()
            .map(|t| t.gpu.n_receptors as usize)
            .max()
            .unwrap_or(0);
        SynapseArrays {
            static_record: model.static_record_key_bits().is_some(),
            any_async: model.syn_types.iter().any(|t| t.gpu.async_rho > 0.0),
            any_reserve: model.syn_types.iter().any(|t| t.gpu.reserve_size > 0),
            handoff_stride: if any_kinetic { most } else { 0 },
            any_cleft: model.syn_types.iter().any(|t| t.gpu.cleft_dependent != 0),
        }
    }

    /// CPU bytes per synapse: static post, weight and outgoing CSR entry (4 B each),
    /// projection and delay (2 B each); dynamic t_last, X_F, X_D, sites (4 B each); plus
    /// the optional arrays (the hand-off step only when synapses can be active, the
    /// static-release record only in networks of that kind).
    pub fn bytes_per_synapse(&self) -> u64 {
        STATIC_BYTES_PER_SYNAPSE
            + 16
            + if self.static_record { 8 } else { 0 }
            + if self.any_cleft { 4 } else { 0 }
            + 4 * self.handoff_stride as u64
            + if self.any_async { 4 } else { 0 }
            + if self.any_reserve { 8 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow_decay_matches_exp() {
        let t = pow_table(0.1, 100.0);
        for d in [0u32, 1, 2, 3, 7, 100, 12345, 1 << 20] {
            let exact = (-(d as f64) * 0.1 / 100.0).exp();
            let got = pow_decay(&t, d) as f64;
            // Each factor carries ≤ 0.5 ulp; at most 32 factors.
            assert!(
                (got - exact).abs() <= 32.0 * f32::EPSILON as f64 * exact.max(1e-30) + 1e-38,
                "d={d}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn pow_decay3_has_the_bits_of_pow_decay() {
        let t = [
            pow_table(0.1, 7.0),
            pow_table(0.1, 100.0),
            pow_table(0.1, 1e4),
        ];
        for d in (0u32..5000).chain([65_535, 1 << 20, u32::MAX]) {
            let three = pow_decay3([&t[0], &t[1], &t[2]], d);
            for (k, x) in three.iter().enumerate() {
                assert_eq!(
                    x.to_bits(),
                    pow_decay(&t[k], d).to_bits(),
                    "table {k}, Δ {d}"
                );
            }
        }
    }

    #[test]
    fn ca_drive_is_one_in_reference_saline() {
        assert!((ca_drive(2.0, 1.0, 2.0, 3.0) - 1.0).abs() < 1e-15);
        assert!(ca_drive(1.0, 1.0, 2.0, 3.0) < 1.0);
    }

    /// §8i: NMDA block values of §5.1 (exact formula), \[Mg\]o = 0, 1, 2 mM.
    #[test]
    fn nmda_block_table() {
        let cases = [
            (-100.0, 1.0, 0.0072),
            (-80.0, 1.0, 0.0244),
            (-70.0, 1.0, 0.0445),
            (-60.0, 1.0, 0.0796),
            (-50.0, 1.0, 0.1385),
            (-40.0, 1.0, 0.2302),
            (-20.0, 1.0, 0.5081),
            (0.0, 1.0, 0.7812),
            (20.0, 1.0, 0.9250),
            (40.0, 1.0, 0.9771),
            (-70.0, 2.0, 0.0227),
            (0.0, 2.0, 0.6409),
            (-70.0, 0.0, 1.0),
        ];
        for (v, mg, want) in cases {
            let got = nmda_block(v, mg);
            // Half a unit in the last printed digit (§8 rule), 4 decimals.
            assert!(
                (got - want).abs() <= 0.5e-4 + 1e-6,
                "B({v}, {mg}) = {got}, spec {want}"
            );
        }
    }
}
