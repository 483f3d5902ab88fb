//! The WGSL sources: every kernel parses and validates with naga (the compiler wgpu
//! uses), and every struct of shaders/common.wgsl has the size and field offsets of its
//! `#[repr(C)]` twin in src/layout.rs. Runs without a GPU.

use quantal::gpu::shaders;
use quantal::layout::{
    GpuInput, GpuPopulation, GpuReceptor, GpuSynType, ImageOffsets, PowTable, StepParams,
    SynOffsets,
};
use std::mem::{offset_of, size_of};

fn module(name: &str) -> naga::Module {
    let src = shaders::source(name).unwrap();
    let m = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&m)
    .unwrap_or_else(|e| panic!("{name}.wgsl does not validate: {e:?}"));
    m
}

/// (size, [(member name, offset)]) of the WGSL struct `name`.
fn wgsl_struct(m: &naga::Module, name: &str) -> (u32, Vec<(String, u32)>) {
    for (_, ty) in m.types.iter() {
        if ty.name.as_deref() == Some(name) {
            if let naga::TypeInner::Struct { members, span } = &ty.inner {
                return (
                    *span,
                    members
                        .iter()
                        .map(|mb| (mb.name.clone().unwrap_or_default(), mb.offset))
                        .collect(),
                );
            }
        }
    }
    panic!("struct {name} not found in common.wgsl");
}

macro_rules! same_layout {
    ($m:expr, $rust:ty, $wgsl:literal, [$($field:ident),* $(,)?]) => {{
        let (size, members) = wgsl_struct($m, $wgsl);
        assert_eq!(size as usize, size_of::<$rust>(), "size of {} vs {}", $wgsl, stringify!($rust));
        let rust: Vec<(String, u32)> = vec![$((stringify!($field).to_string(), offset_of!($rust, $field) as u32)),*];
        assert_eq!(members, rust, "fields of {} vs {}", $wgsl, stringify!($rust));
    }};
}

#[test]
fn shaders_validate_and_match_the_rust_layout() {
    for (name, _) in shaders::KERNELS {
        module(name);
    }
    let m = module("integrate");
    same_layout!(
        &m,
        StepParams,
        "StepParams",
        [
            n_neurons,
            n_synapses,
            step,
            n_receptors,
            dt_ms,
            mg_o_mm,
            seed_lo,
            seed_hi,
            batch_row,
            sample_row,
            n_probes,
            spike_words,
            zero,
            neuron_base,
            probe_stride,
            n_neurons_all
        ]
    );
    same_layout!(
        &m,
        GpuSynType,
        "SynType",
        [
            release,
            n_sites,
            law,
            reserve_size,
            c_drive,
            p_max,
            k_p_pow_n,
            hill_n,
            phi_f,
            k_f,
            k_d,
            eta_exponent,
            tm_u,
            async_rho,
            tau_async_steps,
            spont_per_site_step,
            delta_t_mm,
            clear_half,
            clear_full,
            clear_threshold_mm,
            cleft_pulse,
            pulse_steps,
            pulse_mm,
            receptor_first,
            n_receptors,
            tab_fac,
            tab_rec,
            tab_k0,
            tab_endo,
            ca_rest_um,
            delta_ca_um,
            cleft_dependent,
            max_async_steps,
            _pad0
        ]
    );
    same_layout!(
        &m,
        GpuReceptor,
        "Receptor",
        [
            kind, mg_block, tab_beta, syn_type, alpha, beta, g_max_ns, e_rev_mv, decay, half_decay,
            k3, k4, decay_k4, k_d, n_hill, _pad0
        ]
    );
    same_layout!(
        &m,
        GpuPopulation,
        "Population",
        [
            model,
            n_ref,
            start_step,
            stop_step,
            c_m_pf,
            g_l_ns,
            e_l_mv,
            v_th_mv,
            v_reset_mv,
            q_rr_ns,
            decay_rr,
            e_rr_mv,
            q_sfa_ns,
            decay_sfa,
            e_sfa_mv,
            delta_theta_mv,
            decay_theta,
            i_bias_pa,
            g_na_ns,
            g_k_ns,
            e_na_mv,
            e_k_mv,
            v_t_mv,
            v_spike_mv,
            p_spike,
            _pad
        ]
    );
    same_layout!(&m, PowTable, "PowTable", [f]);
    same_layout!(
        &m,
        GpuInput,
        "Input",
        [start_step, stop_step, amplitude_pa, _pad0]
    );
    same_layout!(
        &m,
        ImageOffsets,
        "ImageOffsets",
        [
            input_offsets,
            input_ids,
            spike_offsets,
            spike_steps,
            g_pool,
            _pad0,
            _pad1,
            _pad2
        ]
    );
    same_layout!(
        &m,
        SynOffsets,
        "SynOffsets",
        [
            ring_len,
            async_cap,
            handoff_stride,
            sites_max,
            rate_max,
            syn_base,
            syn_class,
            out_offsets,
            out_syn,
            in_offsets,
            r,
            handoff_r,
            contrib,
            touched,
            pool,
            async_ring,
            todo,
            active_list,
            classes,
            log_cap,
            async_len,
            take,
            rec_stride,
            slot_stride,
            spike,
            fuse,
            watch,
            claim,
            pool_cap,
            seg_count,
            seg_start,
            block_size,
            cursor,
            prefix,
            class_delay,
            pool_head,
            cflags,
            _pad0,
            _pad1,
            _pad2,
            u_at,
            f_at
        ]
    );
}

/// The WGSL constants that mirror Rust codes have the Rust values.
#[test]
fn shader_codes_match_the_rust_codes() {
    use quantal::layout::{neuron, neuron_f32, neuron_u32, probe, receptor, release};
    let src = shaders::source("integrate").unwrap();
    let want: [(&str, u32); 26] = [
        ("RELEASE_CA", release::CA),
        ("RELEASE_TM_STOCHASTIC", release::TM_STOCHASTIC),
        ("RELEASE_TM_MEAN", release::TM_MEAN),
        ("RELEASE_STATIC", release::STATIC),
        ("RECEPTOR_KINETIC", receptor::KINETIC),
        ("RECEPTOR_GABA_B", receptor::GABA_B),
        ("RECEPTOR_EXP", receptor::EXP),
        ("NEURON_LIF", neuron::LIF),
        ("NEURON_HH", neuron::HH),
        ("NEURON_POISSON", neuron::POISSON),
        ("NEURON_SPIKE_TIMES", neuron::SPIKE_TIMES),
        ("F_V_MV", neuron_f32::V_MV),
        ("F_G_RR_NS", neuron_f32::G_RR_NS),
        ("F_G_SFA_NS", neuron_f32::G_SFA_NS),
        ("F_THETA_MV", neuron_f32::THETA_MV),
        ("F_HH_M", neuron_f32::HH_M),
        ("F_HH_H", neuron_f32::HH_H),
        ("F_HH_N", neuron_f32::HH_N),
        ("F_I_EXT_PA", neuron_f32::I_EXT_PA),
        ("U_REFR", neuron_u32::REFR),
        ("U_SPIKE_PTR", neuron_u32::SPIKE_PTR),
        ("PROBE_V", probe::V),
        ("PROBE_G_SYN_TOTAL", probe::G_SYN_TOTAL),
        ("PROBE_RECEPTOR", probe::RECEPTOR),
        ("DOMAIN_NEURON", quantal::philox::Domain::Neuron as u32),
        ("PURPOSE_POISSON", quantal::philox::Purpose::Poisson as u32),
    ];
    for (name, value) in want {
        let line = src
            .lines()
            .find(|l| l.starts_with(&format!("const {name}: u32 = ")))
            .unwrap_or_else(|| panic!("const {name} missing"));
        assert_eq!(line, format!("const {name}: u32 = {value}u;"), "{name}");
    }
}

/// The synapse image's WGSL section, queue, state and probe constants have the Rust values.
#[test]
fn synapse_shader_codes_match_the_rust_codes() {
    use quantal::layout::{probe, queue, syn_f32, syn_u32};
    use quantal::state::{ACTIVE, NO_HANDOFF};
    let src = format!(
        "{}\n{}",
        shaders::source("sample_synapse").unwrap(),
        shaders::source("release").unwrap()
    );
    let want: Vec<(&str, u32)> = vec![
        ("S_T_LAST", syn_u32::T_LAST),
        ("S_SITES", syn_u32::SITES),
        ("S_COMMITTED", syn_u32::COMMITTED),
        ("S_RESERVE", syn_u32::RESERVE),
        ("S_ENDO", syn_u32::ENDO),
        ("S_HANDOFF_STEP", syn_u32::HANDOFF_STEP),
        ("S_PULSE_LEFT", syn_u32::PULSE_LEFT),
        ("S_MINIS", syn_u32::MINIS),
        ("SF_WEIGHT", syn_f32::WEIGHT),
        ("SF_X_F", syn_f32::X_F),
        ("SF_X_D", syn_f32::X_D),
        ("SF_CLEFT_MM", syn_f32::CLEFT_MM),
        ("SF_RELEASED", syn_f32::RELEASED),
        ("SF_RELEASED_ACC", syn_f32::RELEASED_ACC),
        ("SF_PULSE_QUANTA", syn_f32::PULSE_QUANTA),
        ("Q_ASYNC_OVERFLOW", queue::ASYNC_OVERFLOW),
        ("Q_ARRIVAL_OVERFLOW", queue::ARRIVAL_OVERFLOW),
        ("Q_OVERFLOW_STEP", queue::OVERFLOW_STEP),
        ("Q_TODO_COUNT", queue::TODO_COUNT),
        ("Q_ACTIVE_COUNT", queue::ACTIVE_COUNT),
        ("Q_NON_FINITE", queue::NON_FINITE),
        ("Q_EVENTS", queue::EVENTS),
        ("Q_QUANTA", queue::QUANTA),
        ("Q_ROW_COUNTS", queue::ROW_COUNTS),
        ("ACTIVE", ACTIVE),
        ("NO_HANDOFF", NO_HANDOFF),
        ("ABSENT", quantal::layout::ABSENT),
        (
            "MAX_RECEPTORS",
            quantal::netfile::validate::MAX_RECEPTORS as u32,
        ),
        ("P_CA_RES", probe::CA_RES),
        ("P_X_F", probe::X_F),
        ("P_X_D", probe::X_D),
        ("P_DOCKED", probe::DOCKED),
        ("P_RESERVE", probe::RESERVE),
        ("P_ENDOSOME", probe::ENDOSOME),
        ("P_RELEASED", probe::RELEASED),
        ("P_CLEFT", probe::CLEFT),
        ("P_TM_U", probe::TM_U),
        ("P_TM_X", probe::TM_X),
        ("P_SYN_R", probe::SYN_R),
        ("P_SYN_G", probe::SYN_G),
    ];
    for (name, value) in want {
        let line = src
            .lines()
            .find(|l| l.starts_with(&format!("const {name}: u32 = ")))
            .unwrap_or_else(|| panic!("const {name} missing"));
        let v = line
            .trim_start_matches(&format!("const {name}: u32 = "))
            .trim_end_matches("u;");
        let v = if let Some(h) = v.strip_prefix("0x") {
            u32::from_str_radix(h, 16).unwrap()
        } else {
            v.parse::<u32>().unwrap()
        };
        assert_eq!(v, value, "{name}");
    }
}
