//! Plain-old-data parameter tables shared by the CPU kernels and (later) the WGSL
//! shaders. Every struct here must stay byte-identical to its twin in
//! `shaders/common.wgsl` once the GPU backend lands; sizes are asserted at compile time.
//! All values are f32 or u32, computed on the host in f64 by `crate::model`.

use bytemuck::{Pod, Zeroable};

/// Release model codes (`GpuSynType::release`).
pub mod release {
    /// Event-driven calcium model (§2.1, §3.2).
    pub const CA: u32 = 0;
    /// Stochastic per-site Tsodyks-Markram (§3.3).
    pub const TM_STOCHASTIC: u32 = 1;
    /// Mean Tsodyks-Markram (§2.2).
    pub const TM_MEAN: u32 = 2;
    /// One quantum per presynaptic spike, no terminal state.
    pub const STATIC: u32 = 3;
}

/// Receptor kind codes (`GpuReceptor::kind`).
pub mod receptor {
    /// Two-state kinetic receptor (AMPA, GABA_A, glycine, nACh; NMDA with `mg_block`).
    pub const KINETIC: u32 = 0;
    /// GABA_B cascade (§5.2).
    pub const GABA_B: u32 = 1;
    /// Exponential conductance per quantum (§6.4a).
    pub const EXP: u32 = 2;
}

/// Neuron model codes (`GpuPopulation::model`).
pub mod neuron {
    /// LIF (§6.1).
    pub const LIF: u32 = 0;
    /// Traub-Miles HH (§6.2).
    pub const HH: u32 = 1;
    /// Poisson source.
    pub const POISSON: u32 = 2;
    /// Explicit spike times.
    pub const SPIKE_TIMES: u32 = 3;
}

/// Number of entries of each lazy-decay table: `exp(-2^b · dt / τ)` for b = 0..32.
pub const POW_BITS: usize = 32;

/// A lazy-decay table: entry b is `exp(-2^b · dt / τ)` (f64 on the host, stored f32).
/// `decay(Δ steps) = Π_{b: bit b of Δ set} table[b]`, ascending b (see `model::pow_decay`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct PowTable {
    /// The factors.
    pub f: [f32; POW_BITS],
}
const _: () = assert!(std::mem::size_of::<PowTable>() == 128);

/// Per synapse type constants (§1-§4). Must stay byte-identical to `SynType` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GpuSynType {
    /// `release::*`.
    pub release: u32,
    /// Release sites N (≤ 32).
    pub n_sites: u32,
    /// 0 = facilitated drive, 1 = DKR law (§2.1).
    pub law: u32,
    /// Reserve pool size at rest; 0 = untracked (infinite).
    pub reserve_size: u32,
    /// Relative Ca drive per AP, c = W(\[Ca\]o,\[Mg\]o) / W(2,1) (§1.1).
    pub c_drive: f32,
    /// p_max (§2.1).
    pub p_max: f32,
    /// K_p^n (§2.1).
    pub k_p_pow_n: f32,
    /// Hill coefficient n.
    pub hill_n: f32,
    /// φ_F (§2.1).
    pub phi_f: f32,
    /// K_F (§2.1).
    pub k_f: f32,
    /// K_D of the refilling site (§3.2).
    pub k_d: f32,
    /// (kmax - k0)·τ_D, the exponent of η (§3.2).
    pub eta_exponent: f32,
    /// Tsodyks-Markram U (§2.2).
    pub tm_u: f32,
    /// ρ_a, asynchronous release strength (§3.4); 0 = off.
    pub async_rho: f32,
    /// τ_a in steps (§3.4).
    pub tau_async_steps: f32,
    /// λ_s·N·dt: miniature release probability rate per docked site per step (§3.4).
    pub spont_per_site_step: f32,
    /// Cleft concentration per vesicle, mM (§4.1).
    pub delta_t_mm: f32,
    /// exp(-dt/(2 τ_clear)) (§5.1 mid-step T).
    pub clear_half: f32,
    /// exp(-dt/τ_clear) (§4.2).
    pub clear_full: f32,
    /// Transmitter below this is cleared (§5.4 ε_T), mM.
    pub clear_threshold_mm: f32,
    /// 0 = exponential cleft, 1 = pulse.
    pub cleft_pulse: u32,
    /// Pulse length in steps.
    pub pulse_steps: u32,
    /// Pulse concentration per vesicle, mM.
    pub pulse_mm: f32,
    /// First global receptor index of this type.
    pub receptor_first: u32,
    /// Number of receptors.
    pub n_receptors: u32,
    /// Pow table of τ_F (facilitation site) or τ_fac (TM).
    pub tab_fac: u32,
    /// Pow table of τ_D (recovery site) or τ_rec (TM).
    pub tab_rec: u32,
    /// Pow table of the basal refilling rate k0 (CA).
    pub tab_k0: u32,
    /// Pow table of τ_endo.
    pub tab_endo: u32,
    /// Resting Ca, µM (display, §1.1).
    pub ca_rest_um: f32,
    /// Ca per unit of X_F, µM (display, §1.1).
    pub delta_ca_um: f32,
    /// 1 when a receptor depends on the cleft transmitter (kinetic or GABA_B), 0 when all
    /// receptors are exp (the synapse then needs one step of activity per release).
    pub cleft_dependent: u32,
    /// Longest asynchronous-release latency, steps (the ring horizon of §3.4; 0 = off).
    pub max_async_steps: u32,
    #[doc(hidden)]
    pub _pad0: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<GpuSynType>() == 144);

/// One receptor of one synapse type (§5). Must stay byte-identical to `Receptor` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GpuReceptor {
    /// `receptor::*`.
    pub kind: u32,
    /// 1 = NMDA Mg2+ block B(V) applies (§5.1).
    pub mg_block: u32,
    /// Pow table of exp(-β dt) for the lazy hand-off (§5.4).
    pub tab_beta: u32,
    /// Index of the synapse type owning this receptor.
    pub syn_type: u32,
    /// α, 1/(mM·ms) (or K1 for GABA_B).
    pub alpha: f32,
    /// β, 1/ms (or K2 for GABA_B).
    pub beta: f32,
    /// Peak conductance per synapse, nS.
    pub g_max_ns: f32,
    /// Reversal potential, mV.
    pub e_rev_mv: f32,
    /// exp(-β dt) (kinetic) or exp(-dt/τ) (exp receptor).
    pub decay: f32,
    /// exp(-dt/(2τ)) (exp receptor, §6.4a mid-step rule).
    pub half_decay: f32,
    /// GABA_B K3, 1/ms.
    pub k3: f32,
    /// GABA_B K4, 1/ms.
    pub k4: f32,
    /// GABA_B exp(-K4 dt).
    pub decay_k4: f32,
    /// GABA_B K_D.
    pub k_d: f32,
    /// GABA_B Hill n.
    pub n_hill: f32,
    #[doc(hidden)]
    pub _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<GpuReceptor>() == 64);

/// Per population neuron constants (§6). Must stay byte-identical to `Population` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GpuPopulation {
    /// `neuron::*`.
    pub model: u32,
    /// Absolute refractory steps n_ref = round(t_ref/dt) (LIF) or lock-out steps (HH).
    pub n_ref: u32,
    /// Poisson: first step of firing.
    pub start_step: u32,
    /// Poisson: first step without firing.
    pub stop_step: u32,
    /// Membrane capacitance, pF.
    pub c_m_pf: f32,
    /// Leak conductance, nS.
    pub g_l_ns: f32,
    /// Leak reversal, mV.
    pub e_l_mv: f32,
    /// LIF threshold θ_0, mV.
    pub v_th_mv: f32,
    /// LIF reset, mV.
    pub v_reset_mv: f32,
    /// Relative refractory conductance increment, nS.
    pub q_rr_ns: f32,
    /// exp(-dt/τ_rr).
    pub decay_rr: f32,
    /// Relative refractory reversal, mV.
    pub e_rr_mv: f32,
    /// Adaptation increment, nS.
    pub q_sfa_ns: f32,
    /// exp(-dt/τ_sfa).
    pub decay_sfa: f32,
    /// Adaptation reversal, mV.
    pub e_sfa_mv: f32,
    /// Threshold jump, mV.
    pub delta_theta_mv: f32,
    /// exp(-dt/τ_θ).
    pub decay_theta: f32,
    /// Constant bias current, pA.
    pub i_bias_pa: f32,
    /// HH ḡ_Na, nS.
    pub g_na_ns: f32,
    /// HH ḡ_K, nS.
    pub g_k_ns: f32,
    /// HH E_Na, mV.
    pub e_na_mv: f32,
    /// HH E_K, mV.
    pub e_k_mv: f32,
    /// HH V_T, mV.
    pub v_t_mv: f32,
    /// HH spike detection level, mV.
    pub v_spike_mv: f32,
    /// Poisson: probability of a spike per step, 1 - exp(-rate·dt).
    pub p_spike: f32,
    #[doc(hidden)]
    pub _pad: [u32; 7],
}
const _: () = assert!(std::mem::size_of::<GpuPopulation>() == 128);

/// Per-step constants, one per step of a batch (bound with a dynamic offset of
/// `k · STEP_PARAMS_STRIDE` for step k). Must stay byte-identical to `StepParams` in
/// shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct StepParams {
    /// Number of neurons.
    pub n_neurons: u32,
    /// Number of synapses (on the GPU: of the chunk the dispatch covers).
    pub n_synapses: u32,
    /// Index of the step being computed.
    pub step: u32,
    /// Number of global receptor entries.
    pub n_receptors: u32,
    /// Step in ms.
    pub dt_ms: f32,
    /// \[Mg\]o in mM (NMDA block).
    pub mg_o_mm: f32,
    /// Low 32 bits of the seed.
    pub seed_lo: u32,
    /// High 32 bits of the seed.
    pub seed_hi: u32,
    /// Row of this step in the batch's spike ring (0-based step within the batch).
    pub batch_row: u32,
    /// Row of this step's sample in the batch's sample ring (when sampled).
    pub sample_row: u32,
    /// Number of probes sampled.
    pub n_probes: u32,
    /// Words per spike-ring row: ceil(n_neurons / 32).
    pub spike_words: u32,
    /// Always 0: the shaders' `opaque_zero` (shaders/math.wgsl), a value the shader
    /// compiler cannot see, so it cannot rewrite the arithmetic of exp_sw and ln_sw.
    pub zero: u32,
    /// Global id of the first neuron of the chunk a dispatch covers (arrays larger than
    /// one storage binding are split into chunks of neurons; 0 on the CPU).
    pub neuron_base: u32,
    /// Values per sample row (all probes of all chunks).
    pub probe_stride: u32,
    /// Neurons of the whole network (all chunks): `propagate` runs over every neuron's
    /// spike, and the spike rows have a bit per neuron of the network.
    pub n_neurons_all: u32,
}
const _: () = assert!(std::mem::size_of::<StepParams>() == 64);

/// Bytes between the `StepParams` of consecutive steps in the batch's uniform buffer
/// (wgpu's `min_uniform_buffer_offset_alignment` is at most 256).
pub const STEP_PARAMS_STRIDE: u64 = 256;

impl StepParams {
    /// The 64-bit seed.
    pub fn seed(&self) -> u64 {
        (self.seed_hi as u64) << 32 | self.seed_lo as u64
    }
}

/// One DC current input. Must stay byte-identical to `Input` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GpuInput {
    /// First step with the current on.
    pub start_step: u32,
    /// First step with the current off.
    pub stop_step: u32,
    /// Amplitude, pA.
    pub amplitude_pa: f32,
    #[doc(hidden)]
    pub _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<GpuInput>() == 16);

/// Where the sections of the neuron part of the device image start (in elements of
/// their buffer). Must stay byte-identical to `ImageOffsets` in shaders/common.wgsl.
///
/// - `neuron_static` (u32): population index per neuron packed two per word (low half
///   even ids), then `input_offsets` (n + 1), `input_ids`, `spike_offsets` (n + 1) and
///   `spike_steps`.
/// - `neuron_f32`: one section of n per variable, in the order of [`neuron_f32`].
/// - `neuron_u32`: one section of n per variable, in the order of [`neuron_u32`].
/// - `g_ns` (f32): `g_active_ns` (n · n_receptors), then `g_pool_ns` (same).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ImageOffsets {
    /// Start of `input_offsets` in `neuron_static`.
    pub input_offsets: u32,
    /// Start of `input_ids` in `neuron_static`.
    pub input_ids: u32,
    /// Start of `spike_offsets` in `neuron_static`.
    pub spike_offsets: u32,
    /// Start of `spike_steps` in `neuron_static`.
    pub spike_steps: u32,
    /// Start of `g_pool_ns` in `g_ns` (= n · n_receptors).
    pub g_pool: u32,
    #[doc(hidden)]
    pub _pad0: u32,
    #[doc(hidden)]
    pub _pad1: u32,
    #[doc(hidden)]
    pub _pad2: u32,
}
const _: () = assert!(std::mem::size_of::<ImageOffsets>() == 32);

/// Section index of each f32 neuron variable in `neuron_f32` (times n_neurons).
pub mod neuron_f32 {
    /// Membrane potential, mV.
    pub const V_MV: u32 = 0;
    /// Relative refractory conductance, nS.
    pub const G_RR_NS: u32 = 1;
    /// Adaptation conductance, nS.
    pub const G_SFA_NS: u32 = 2;
    /// Threshold elevation, mV.
    pub const THETA_MV: u32 = 3;
    /// HH gate m.
    pub const HH_M: u32 = 4;
    /// HH gate h.
    pub const HH_H: u32 = 5;
    /// HH gate n.
    pub const HH_N: u32 = 6;
    /// Injected current, pA.
    pub const I_EXT_PA: u32 = 7;
    /// Number of sections.
    pub const COUNT: u32 = 8;
}

/// Section index of each u32 neuron variable in `neuron_u32` (times n_neurons).
pub mod neuron_u32 {
    /// Remaining refractory (LIF) or lock-out (HH) steps.
    pub const REFR: u32 = 0;
    /// Next spike of a spike-time source (index into spike_steps).
    pub const SPIKE_PTR: u32 = 1;
    /// Number of sections.
    pub const COUNT: u32 = 2;
}

/// Probe codes of the `sample` kernel (neuron variables; `RECEPTOR + r` for receptor r).
pub mod probe {
    /// Membrane potential.
    pub const V: u32 = 0;
    /// g_rr.
    pub const G_RR: u32 = 1;
    /// g_sfa.
    pub const G_SFA: u32 = 2;
    /// θ.
    pub const THETA: u32 = 3;
    /// 1 while refractory.
    pub const REFRACTORY: u32 = 4;
    /// Injected current.
    pub const I_EXT: u32 = 5;
    /// Sum of the synaptic conductances.
    pub const G_SYN_TOTAL: u32 = 6;
    /// HH m.
    pub const M: u32 = 7;
    /// HH h.
    pub const H: u32 = 8;
    /// HH n.
    pub const N: u32 = 9;
    /// Receptor r's conductance is `RECEPTOR + r`.
    pub const RECEPTOR: u32 = 16;
    /// Synapse probes (the `sample_synapse` kernel): residual Ca.
    pub const CA_RES: u32 = 1024;
    /// X_F now.
    pub const X_F: u32 = 1025;
    /// X_D now.
    pub const X_D: u32 = 1026;
    /// Docked vesicles.
    pub const DOCKED: u32 = 1027;
    /// Reserve pool.
    pub const RESERVE: u32 = 1028;
    /// Vesicles in endocytosis.
    pub const ENDOSOME: u32 = 1029;
    /// Quanta released since the previous sample.
    pub const RELEASED: u32 = 1030;
    /// Cleft transmitter.
    pub const CLEFT: u32 = 1031;
    /// TM utilisation.
    pub const TM_U: u32 = 1032;
    /// TM resources.
    pub const TM_X: u32 = 1033;
    /// Open fraction of local receptor j is `SYN_R + j`.
    pub const SYN_R: u32 = 1040;
    /// G-protein of local receptor j is `SYN_G + j`.
    pub const SYN_G: u32 = 1048;
}

/// Where the sections of the synapse part of the device image start, and the sizes of
/// its queues. Must stay byte-identical to `SynOffsets` in shaders/common.wgsl.
///
/// The image is sized to the network's features: a section that no synapse type of the
/// model can use (the reserve pool without a tracked reserve, the cleft and receptor
/// state without a kinetic or GABA_B receptor, ...) is not allocated and its start is
/// [`ABSENT`]; the shaders read such a variable as its constant value (0, or NO_HANDOFF
/// for the hand-off step) and never write it.
///
/// - `syn_static` (u32): per synapse its type (low 16 bits) and projection key (high 16
///   bits: the index of its (source population, target population, synapse type) in the
///   `evoked` counters), the delay classes (two per word), then `out_offsets` (n_neurons of the
///   network + 1: each neuron's outgoing synapses in this chunk), `out_syn` (local ids)
///   and `in_offsets` (the chunk's neurons + 1, local ids).
/// - `syn_u32`: one section of n_synapses per present variable of [`syn_u32`]
///   (`u_at`).
/// - `syn_f32`: one section of n_synapses per present scalar of [`syn_f32`] (`f_at`),
///   then the receptor state (`slot_stride` per synapse, only with kinetic or GABA_B
///   receptors), the hand-off state (`handoff_stride` per synapse), the take-back
///   amounts (`rec_stride` per synapse, only with kinetic receptors) and the per-step
///   conductance contributions (`rec_stride` per synapse).
/// - `syn_flags` (atomic u32): the fusion mask of each synapse (only with asynchronous
///   release), then the `claim`, `spike`, `touched` and `watch` bit words (one bit per
///   synapse each) and, with kinetic or GABA_B receptors, the two `cflags` bit words.
/// - `queues` (atomic u32): the header words of [`queue`] with the asynchronous row
///   counts, the arrival pool's tables (`seg_count`, `seg_start`, `block_size`,
///   `cursor`, `prefix`, `class_delay`, `pool_head`), the arrival pool, the asynchronous
///   ring (`async_len` rows of `async_cap` (synapse, site) pairs), the to-do list and
///   (only with kinetic or GABA_B receptors) two active lists of n_synapses ids each.
///
/// The arrival pool: `propagate` of step s writes the arrivals of its spikes as one
/// block (`s % ring_len`), grouped by delay class (a count pass, a scan, a write pass),
/// at the pool's head; `deliver` of step t reads, for each class of delay d, that
/// class's segment of the block of step t - d. A block is dead once its longest delay
/// has passed, so the pool holds the blocks of the last `ring_len - 1` steps: at most
/// each source neuron's outgoing synapses times the spikes its refractory period allows
/// in that window (`gpu_syn::pool_bound`), far fewer than a row of every synapse per
/// step of the longest delay.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SynOffsets {
    /// Blocks of the arrival pool (longest delay + 1): the block of step s is
    /// `s % ring_len`.
    pub ring_len: u32,
    /// Entries per row of the asynchronous ring.
    pub async_cap: u32,
    /// Hand-off values per synapse (`State::handoff_stride`).
    pub handoff_stride: u32,
    /// Spontaneous thinning: the largest site count N_max (`SpontParams::sites_max`).
    pub sites_max: u32,
    /// Spontaneous thinning: the largest per-site rate per step (`SpontParams::rate_max`).
    pub rate_max: f32,
    /// Global id of the chunk's first synapse (its local id 0): the random streams,
    /// logs and reports use global ids.
    pub syn_base: u32,
    /// Start of the delay class of each synapse in `syn_static` (two per word).
    pub syn_class: u32,
    /// Start of `out_offsets` in `syn_static`.
    pub out_offsets: u32,
    /// Start of `out_syn` in `syn_static`.
    pub out_syn: u32,
    /// Start of `in_offsets` in `syn_static`.
    pub in_offsets: u32,
    /// Start of the receptor state in `syn_f32`.
    pub r: u32,
    /// Start of the hand-off state in `syn_f32`.
    pub handoff_r: u32,
    /// Start of the contributions in `syn_f32`.
    pub contrib: u32,
    /// Start of the `touched` bit words in `syn_flags`.
    pub touched: u32,
    /// Start of the arrival pool in `queues` (`pool_cap` synapse ids, used circularly).
    pub pool: u32,
    /// Start of the asynchronous ring in `queues`.
    pub async_ring: u32,
    /// Start of the to-do list in `queues`.
    pub todo: u32,
    /// Start of the two active lists in `queues`.
    pub active_list: u32,
    /// Delay classes of the chunk (its distinct delays).
    pub classes: u32,
    /// Entries of the release log (4 words each, after a 4-word header).
    pub log_cap: u32,
    /// Rows of the asynchronous ring (longest asynchronous latency + 1; `ring_len` is
    /// the arrival pool's blocks, longest delay + 1).
    pub async_len: u32,
    /// Start of the take-back amounts in `syn_f32` (`rec_stride` per synapse), or ABSENT.
    pub take: u32,
    /// Receptors per synapse in the take-back and contribution sections (the most of
    /// any synapse type).
    pub rec_stride: u32,
    /// Receptor state floats per synapse (`Model::receptor_state_stride`).
    pub slot_stride: u32,
    /// Start of the spike bit words in `syn_flags` (a synapse's bit is set when a spike
    /// arrives in this step).
    pub spike: u32,
    /// Start of the fusion masks in `syn_flags`, or ABSENT.
    pub fuse: u32,
    /// Start of the `watch` bit words in `syn_flags` (the releases of a synapse whose
    /// bit is set are logged one by one, `Backend::watch_releases`).
    pub watch: u32,
    /// Start of the `claim` bit words in `syn_flags`: a synapse's bit is set while it is
    /// in the to-do list (so it is listed once), and cleared by `release`.
    pub claim: u32,
    /// Entries of the arrival pool: at least the arrivals that can be in flight at once.
    pub pool_cap: u32,
    /// Start in `queues` of the arrivals of each (block, class): `ring_len` × `classes`.
    pub seg_count: u32,
    /// Start in `queues` of the pool position of each (block, class)'s first arrival.
    pub seg_start: u32,
    /// Start in `queues` of the arrivals of each block (`ring_len`).
    pub block_size: u32,
    /// Start in `queues` of the write cursor of each class (this step's block).
    pub cursor: u32,
    /// Start in `queues` of the arrivals due this step before each class (`classes` + 1;
    /// the last is their number).
    pub prefix: u32,
    /// Start in `queues` of the delay (steps) of each class, ascending.
    pub class_delay: u32,
    /// Start in `queues` of the pool's next free position and the arrivals in flight.
    pub pool_head: u32,
    /// Start in `syn_flags` of this step's contribution flags for `gather`, two sections
    /// of bit words (take back, hand-off done: `cleft` sets them, `gather` clears them),
    /// or ABSENT without kinetic or GABA_B receptors.
    pub cflags: u32,
    #[doc(hidden)]
    pub _pad0: u32,
    #[doc(hidden)]
    pub _pad1: u32,
    #[doc(hidden)]
    pub _pad2: u32,
    /// Start of each section of [`syn_u32`] in `syn_u32` (section s at `u_at[s / 4][s % 4]`),
    /// or ABSENT.
    pub u_at: [[u32; 4]; 2],
    /// Start of each scalar section of [`syn_f32`] in `syn_f32`, or ABSENT.
    pub f_at: [[u32; 4]; 2],
}
const _: () = assert!(std::mem::size_of::<SynOffsets>() == 224);

/// Start of a section of the synapse image that the network does not need (not allocated).
pub const ABSENT: u32 = u32::MAX;

impl SynOffsets {
    /// Start of section `s` of `syn_u32`, or None when absent.
    pub fn u_sec(&self, s: u32) -> Option<usize> {
        let at = self.u_at[s as usize / 4][s as usize % 4];
        (at != ABSENT).then_some(at as usize)
    }
    /// Start of scalar section `s` of `syn_f32`, or None when absent.
    pub fn f_sec(&self, s: u32) -> Option<usize> {
        let at = self.f_at[s as usize / 4][s as usize % 4];
        (at != ABSENT).then_some(at as usize)
    }
}

/// Section index of each u32 synapse variable in `syn_u32` (times n_synapses).
pub mod syn_u32 {
    /// Step the terminal was last advanced to.
    pub const T_LAST: u32 = 0;
    /// Docked sites, bitmask.
    pub const SITES: u32 = 1;
    /// Sites committed to an asynchronous fusion.
    pub const COMMITTED: u32 = 2;
    /// Reserve pool.
    pub const RESERVE: u32 = 3;
    /// Vesicles in endocytosis.
    pub const ENDO: u32 = 4;
    /// Hand-off step, or ACTIVE / NO_HANDOFF (`State::handoff_step`).
    pub const HANDOFF_STEP: u32 = 5;
    /// Pulse cleft: steps left.
    pub const PULSE_LEFT: u32 = 6;
    /// Miniature fusions drawn in the last step, released in this one.
    pub const MINIS: u32 = 7;
    /// Number of sections.
    pub const COUNT: u32 = 8;
}

/// Section index of each f32 synapse scalar in `syn_f32` (times n_synapses).
pub mod syn_f32 {
    /// Weight (static).
    pub const WEIGHT: u32 = 0;
    /// X_F or the TM facilitation.
    pub const X_F: u32 = 1;
    /// X_D or the TM resources.
    pub const X_D: u32 = 2;
    /// Cleft transmitter, mM.
    pub const CLEFT_MM: u32 = 3;
    /// Quanta released in the current step.
    pub const RELEASED: u32 = 4;
    /// Quanta released since the last sample (the `released` report).
    pub const RELEASED_ACC: u32 = 5;
    /// Pulse cleft: quanta of the current pulse.
    pub const PULSE_QUANTA: u32 = 6;
    /// Number of scalar sections.
    pub const COUNT: u32 = 7;
}

/// Header words of the `queues` buffer (per-row counts follow the fixed words).
pub mod queue {
    /// Asynchronous fusions that did not fit their ring row (0 unless overflowed).
    pub const ASYNC_OVERFLOW: u32 = 0;
    /// Arrivals that did not fit the arrival pool (0 unless its bound was wrong: the
    /// step's arrivals are then not written and the run stops).
    pub const ARRIVAL_OVERFLOW: u32 = 11;
    /// First step with an overflow + 1 (0: none).
    pub const OVERFLOW_STEP: u32 = 1;
    /// The to-do list's count (the word after it is unused).
    pub const TODO_COUNT: u32 = 2;
    /// The two active list counts (by step parity).
    pub const ACTIVE_COUNT: u32 = 4;
    /// The lowest synapse with a non-finite conductance + 1 (0: none), and its step + 1.
    pub const NON_FINITE: u32 = 6;
    /// Presynaptic events (arrivals and asynchronous fusions) since the counters were read.
    pub const EVENTS: u32 = 8;
    /// Quanta released since the counters were read, in units of 2^-16 quantum, as a
    /// 64-bit count (low word, then high word); whole quanta are exact.
    pub const QUANTA: u32 = 9;
    /// Asynchronous counts, one per row of the asynchronous ring.
    pub const ROW_COUNTS: u32 = 12;
}
