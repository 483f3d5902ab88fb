// common.wgsl: the structs and codes shared by every kernel, and the small functions
// more than one kernel calls. Prepended to each kernel (with philox.wgsl and math.wgsl)
// by src/gpu/shaders.rs.
//
// Every struct must stay byte-identical to its #[repr(C)] twin in src/layout.rs; the
// test `shaders_validate_and_match_the_rust_layout` compares every size and field offset.

// Release model codes (layout::release).
const RELEASE_CA: u32 = 0u;
const RELEASE_TM_STOCHASTIC: u32 = 1u;
const RELEASE_TM_MEAN: u32 = 2u;
const RELEASE_STATIC: u32 = 3u;

// Receptor kind codes (layout::receptor).
const RECEPTOR_KINETIC: u32 = 0u;
const RECEPTOR_GABA_B: u32 = 1u;
const RECEPTOR_EXP: u32 = 2u;

// Neuron model codes (layout::neuron).
const NEURON_LIF: u32 = 0u;
const NEURON_HH: u32 = 1u;
const NEURON_POISSON: u32 = 2u;
const NEURON_SPIKE_TIMES: u32 = 3u;

// Sections of neuron_f32 and neuron_u32 (layout::neuron_f32, layout::neuron_u32).
const F_V_MV: u32 = 0u;
const F_G_RR_NS: u32 = 1u;
const F_G_SFA_NS: u32 = 2u;
const F_THETA_MV: u32 = 3u;
const F_HH_M: u32 = 4u;
const F_HH_H: u32 = 5u;
const F_HH_N: u32 = 6u;
const F_I_EXT_PA: u32 = 7u;
const U_REFR: u32 = 0u;
const U_SPIKE_PTR: u32 = 1u;

// Probe codes of the sample kernel (layout::probe).
const PROBE_V: u32 = 0u;
const PROBE_G_RR: u32 = 1u;
const PROBE_G_SFA: u32 = 2u;
const PROBE_THETA: u32 = 3u;
const PROBE_REFRACTORY: u32 = 4u;
const PROBE_I_EXT: u32 = 5u;
const PROBE_G_SYN_TOTAL: u32 = 6u;
const PROBE_M: u32 = 7u;
const PROBE_H: u32 = 8u;
const PROBE_N: u32 = 9u;
const PROBE_RECEPTOR: u32 = 16u;

// Threads per workgroup of every kernel; dispatches are 2-D beyond 65535 workgroups.
const WORKGROUP: u32 = 64u;

// Per-step constants. Must stay byte-identical to `StepParams` in src/layout.rs.
struct StepParams {
    n_neurons: u32,
    n_synapses: u32,
    step: u32,
    n_receptors: u32,
    dt_ms: f32,
    mg_o_mm: f32,
    seed_lo: u32,
    seed_hi: u32,
    batch_row: u32,
    sample_row: u32,
    n_probes: u32,
    spike_words: u32,
    zero: u32,
    neuron_base: u32,
    probe_stride: u32,
    n_neurons_all: u32,
};

// Per synapse type constants (§1-§4). Must stay byte-identical to `GpuSynType` in src/layout.rs.
struct SynType {
    release: u32,
    n_sites: u32,
    law: u32,
    reserve_size: u32,
    c_drive: f32,
    p_max: f32,
    k_p_pow_n: f32,
    hill_n: f32,
    phi_f: f32,
    k_f: f32,
    k_d: f32,
    eta_exponent: f32,
    tm_u: f32,
    async_rho: f32,
    tau_async_steps: f32,
    spont_per_site_step: f32,
    delta_t_mm: f32,
    clear_half: f32,
    clear_full: f32,
    clear_threshold_mm: f32,
    cleft_pulse: u32,
    pulse_steps: u32,
    pulse_mm: f32,
    receptor_first: u32,
    n_receptors: u32,
    tab_fac: u32,
    tab_rec: u32,
    tab_k0: u32,
    tab_endo: u32,
    ca_rest_um: f32,
    delta_ca_um: f32,
    cleft_dependent: u32,
    max_async_steps: u32,
    _pad0: array<u32, 3>,
};

// One receptor of one synapse type (§5). Must stay byte-identical to `GpuReceptor` in src/layout.rs.
struct Receptor {
    kind: u32,
    mg_block: u32,
    tab_beta: u32,
    syn_type: u32,
    alpha: f32,
    beta: f32,
    g_max_ns: f32,
    e_rev_mv: f32,
    decay: f32,
    half_decay: f32,
    k3: f32,
    k4: f32,
    decay_k4: f32,
    k_d: f32,
    n_hill: f32,
    _pad0: u32,
};

// Per population neuron constants (§6). Must stay byte-identical to `GpuPopulation` in src/layout.rs.
struct Population {
    model: u32,
    n_ref: u32,
    start_step: u32,
    stop_step: u32,
    c_m_pf: f32,
    g_l_ns: f32,
    e_l_mv: f32,
    v_th_mv: f32,
    v_reset_mv: f32,
    q_rr_ns: f32,
    decay_rr: f32,
    e_rr_mv: f32,
    q_sfa_ns: f32,
    decay_sfa: f32,
    e_sfa_mv: f32,
    delta_theta_mv: f32,
    decay_theta: f32,
    i_bias_pa: f32,
    g_na_ns: f32,
    g_k_ns: f32,
    e_na_mv: f32,
    e_k_mv: f32,
    v_t_mv: f32,
    v_spike_mv: f32,
    p_spike: f32,
    _pad: array<u32, 7>,
};

// A lazy-decay table exp(-2^b dt/τ), b = 0..31. Must stay byte-identical to `PowTable` in src/layout.rs.
struct PowTable {
    f: array<f32, 32>,
};

// One DC current input. Must stay byte-identical to `GpuInput` in src/layout.rs.
struct Input {
    start_step: u32,
    stop_step: u32,
    amplitude_pa: f32,
    _pad0: u32,
};

// Section starts of the neuron image. Must stay byte-identical to `ImageOffsets` in src/layout.rs.
struct ImageOffsets {
    input_offsets: u32,
    input_ids: u32,
    spike_offsets: u32,
    spike_steps: u32,
    g_pool: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
};

// Sections of the synapse image and the sizes of its queues (layout::SynOffsets).
struct SynOffsets {
    ring_len: u32,
    async_cap: u32,
    handoff_stride: u32,
    sites_max: u32,
    rate_max: f32,
    syn_base: u32,
    syn_class: u32,
    out_offsets: u32,
    out_syn: u32,
    in_offsets: u32,
    r: u32,
    handoff_r: u32,
    contrib: u32,
    touched: u32,
    pool: u32,
    async_ring: u32,
    todo: u32,
    active_list: u32,
    classes: u32,
    log_cap: u32,
    async_len: u32,
    take: u32,
    rec_stride: u32,
    slot_stride: u32,
    spike: u32,
    fuse: u32,
    watch: u32,
    claim: u32,
    pool_cap: u32,
    seg_count: u32,
    seg_start: u32,
    block_size: u32,
    cursor: u32,
    prefix: u32,
    class_delay: u32,
    pool_head: u32,
    cflags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    u_at: array<vec4<u32>, 2>,
    f_at: array<vec4<u32>, 2>,
};

// Sections of syn_u32 and syn_f32 (layout::syn_u32, layout::syn_f32), times n_synapses.
const S_T_LAST: u32 = 0u;
const S_SITES: u32 = 1u;
const S_COMMITTED: u32 = 2u;
const S_RESERVE: u32 = 3u;
const S_ENDO: u32 = 4u;
const S_HANDOFF_STEP: u32 = 5u;
const S_PULSE_LEFT: u32 = 6u;
const S_MINIS: u32 = 7u;
const SF_WEIGHT: u32 = 0u;
const SF_X_F: u32 = 1u;
const SF_X_D: u32 = 2u;
const SF_CLEFT_MM: u32 = 3u;
const SF_RELEASED: u32 = 4u;
const SF_RELEASED_ACC: u32 = 5u;
const SF_PULSE_QUANTA: u32 = 6u;
// Start of a section the network does not need (layout::ABSENT): never allocated.
const ABSENT: u32 = 0xFFFFFFFFu;
// Header words of queues (layout::queue).
const Q_ASYNC_OVERFLOW: u32 = 0u;
const Q_ARRIVAL_OVERFLOW: u32 = 11u;
const Q_OVERFLOW_STEP: u32 = 1u;
const Q_TODO_COUNT: u32 = 2u;
const Q_ACTIVE_COUNT: u32 = 4u;
const Q_NON_FINITE: u32 = 6u;
const Q_EVENTS: u32 = 8u;
const Q_QUANTA: u32 = 9u;
const Q_ROW_COUNTS: u32 = 12u;
// handoff_step values (state::ACTIVE, state::NO_HANDOFF).
const ACTIVE: u32 = 0xFFFFFFFFu;
const NO_HANDOFF: u32 = 0xFFFFFFFEu;
// Receptors per type at most (MAX_RECEPTORS).
const MAX_RECEPTORS: u32 = 3u;
// Contribution flags (the bits of layout::SynOffsets::cflags).
const C_TAKE: u32 = 1u;
const C_DONE: u32 = 2u;


// Workgroups per row of a 2-D dispatch (the least max_compute_workgroups_per_dimension
// WebGPU allows): a dispatch of more groups is GROUPS_X wide (backend::gpu::groups,
// plan.wgsl's set_groups). Kernels do not read @builtin(num_workgroups), which D3D12
// reports as 0 when wgpu's indirect-call validation is off (gpu::GpuContext).
const GROUPS_X: u32 = 65535u;

// The invocation index of a 2-D dispatch of WORKGROUP-wide groups, GROUPS_X per row.
fn invocation_index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * (GROUPS_X * WORKGROUP);
}

// x, or 0 when x is subnormal. Twin of model::flush_subnormal.
fn flush_subnormal(x: f32) -> f32 {
    if (abs(x) < 1.17549435e-38f) {
        return 0.0f;
    }
    return x;
}

// NMDA Mg2+ block B(V) = 1/(1 + exp(-0.062 V)·[Mg]o/3.57) (§5.1). Twin of model::nmda_block.
fn nmda_block(v_mv: f32, mg_o_mm: f32) -> f32 {
    return 1.0f / (1.0f + exp_sw(-0.062f * v_mv) * mg_o_mm / 3.57f);
}

// Conductance of one receptor on one neuron as the membrane sees it in this step, nS:
// active synapses plus the pool (exp receptors at mid-step g⁺·e^{-dt/(2τ)}, §6.4a),
// NMDA times its Mg2+ block B(V) (§5.1). Twin of backend::cpu::integrate::receptor_conductance.
fn receptor_conductance(rc: Receptor, g_active_ns: f32, g_pool_ns: f32, v_mv: f32, mg_o_mm: f32) -> f32 {
    var pool = g_pool_ns;
    if (rc.kind == RECEPTOR_EXP) {
        pool = g_pool_ns * rc.half_decay;
    }
    var g = g_active_ns + pool;
    if (rc.mg_block == 1u) {
        g = g * nmda_block(v_mv, mg_o_mm);
    }
    return g;
}
