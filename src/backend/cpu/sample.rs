//! sample: one invocation per probe of a neuron variable, at the start of a sampled step.
//! CPU twin of `shaders/sample.wgsl` (same statements, same names).

use super::integrate::receptor_conductance;
use crate::backend::NeuronVar;
use crate::layout::{probe, GpuReceptor, StepParams};
use crate::state::State;

/// The kernel's probe code of a neuron variable (`layout::probe`).
pub fn probe_code(var: NeuronVar) -> u32 {
    match var {
        NeuronVar::V => probe::V,
        NeuronVar::GRr => probe::G_RR,
        NeuronVar::GSfa => probe::G_SFA,
        NeuronVar::Theta => probe::THETA,
        NeuronVar::Refractory => probe::REFRACTORY,
        NeuronVar::IExt => probe::I_EXT,
        NeuronVar::GSynTotal => probe::G_SYN_TOTAL,
        NeuronVar::M => probe::M,
        NeuronVar::H => probe::H,
        NeuronVar::N => probe::N,
        NeuronVar::Receptor(r) => probe::RECEPTOR + r,
    }
}

/// Conductance of receptor `ri` on neuron `n` (receptor_conductance at the current V).
fn receptor_g(
    n: usize,
    ri: usize,
    params: &StepParams,
    receptors: &[GpuReceptor],
    st: &State,
) -> f32 {
    let idx = n * params.n_receptors as usize + ri;
    let v = st.v_mv[n];
    receptor_conductance(
        &receptors[ri],
        st.g_active_ns[idx],
        st.g_pool_ns[idx],
        v,
        params.mg_o_mm,
    )
}

/// The value of probe `[code, n]`.
pub fn sample(
    probe_k: [u32; 2],
    params: &StepParams,
    receptors: &[GpuReceptor],
    st: &State,
) -> f32 {
    let code = probe_k[0];
    let n = probe_k[1] as usize;
    let mut x = 0.0f32;
    if code == probe::V {
        x = st.v_mv[n];
    } else if code == probe::G_RR {
        x = st.g_rr_ns[n];
    } else if code == probe::G_SFA {
        x = st.g_sfa_ns[n];
    } else if code == probe::THETA {
        x = st.theta_mv[n];
    } else if code == probe::REFRACTORY {
        x = if st.refr[n] > 0 { 1.0 } else { 0.0 };
    } else if code == probe::I_EXT {
        x = st.i_ext_pa[n];
    } else if code == probe::G_SYN_TOTAL {
        for ri in 0..params.n_receptors as usize {
            x += receptor_g(n, ri, params, receptors, st);
        }
    } else if code == probe::M {
        x = st.hh_m[n];
    } else if code == probe::H {
        x = st.hh_h[n];
    } else if code == probe::N {
        x = st.hh_n[n];
    } else if code >= probe::RECEPTOR {
        x = receptor_g(n, (code - probe::RECEPTOR) as usize, params, receptors, st);
    }
    x
}
