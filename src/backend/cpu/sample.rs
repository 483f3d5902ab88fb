//! sample: one invocation per probe of a neuron variable, at the start of a sampled step.
//! CPU twin of `shaders/sample.wgsl` (same statements, same names); and
//! [`sample_synapse`], the twin of `shaders/sample_synapse.wgsl`, for synapse variables.

use super::integrate::receptor_conductance;
use crate::backend::{NeuronVar, SynVar};
use crate::layout::{
    probe, receptor, release as rel, GpuReceptor, GpuSynType, PowTable, StepParams,
};
use crate::math::relax;
use crate::model::pow_decay;
use crate::state::{State, ACTIVE, NO_HANDOFF};

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

/// The kernel's probe code of a synapse variable (`layout::probe`).
pub fn syn_probe_code(var: SynVar) -> u32 {
    match var {
        SynVar::CaRes => probe::CA_RES,
        SynVar::XF => probe::X_F,
        SynVar::XD => probe::X_D,
        SynVar::Docked => probe::DOCKED,
        SynVar::Reserve => probe::RESERVE,
        SynVar::Endosome => probe::ENDOSOME,
        SynVar::Released => probe::RELEASED,
        SynVar::Cleft => probe::CLEFT,
        SynVar::TmU => probe::TM_U,
        SynVar::TmX => probe::TM_X,
        SynVar::R(j) => probe::SYN_R + j,
        SynVar::GProt(j) => probe::SYN_G + j,
    }
}

/// The value of synapse probe `[code, syn]` of type `ty` at the start of step
/// `params.step`: the lazy presynaptic variables decayed to now (§9), the pools, and the
/// cleft and receptor state of an active synapse (a handed-off receptor decays in the
/// neuron pool, §5.4). `released` is the quanta of the synapse's last step (the backend
/// reports the sum over the sampling interval instead).
pub fn sample_synapse(
    probe_k: [u32; 2],
    params: &StepParams,
    ty: &GpuSynType,
    receptors: &[GpuReceptor],
    tables: &[PowTable],
    st: &State,
) -> f32 {
    let code = probe_k[0];
    let i = probe_k[1] as usize;
    let since = params.step - st.term[i].t_last;
    let slot = if st.handoff_of(i) == ACTIVE {
        st.active.slot_of(probe_k[1])
    } else {
        None
    };
    let mut x = 0.0f32;
    if code == probe::CA_RES {
        x = ty.ca_rest_um
            + ty.delta_ca_um * st.term[i].x_f * pow_decay(&tables[ty.tab_fac as usize], since);
    } else if code == probe::X_F {
        x = st.term[i].x_f * pow_decay(&tables[ty.tab_fac as usize], since);
    } else if code == probe::X_D {
        if ty.release == rel::CA {
            x = st.term[i].x_d * pow_decay(&tables[ty.tab_rec as usize], since);
        }
    } else if code == probe::DOCKED {
        // A static terminal's sites are always docked (the GPU image of a network of
        // static synapses keeps no sites).
        if ty.release == rel::STATIC {
            x = ty.n_sites as f32;
        } else {
            x = st.term[i].sites.count_ones() as f32;
        }
    } else if code == probe::RESERVE {
        x = st.reserve.get(i).copied().unwrap_or(0) as f32;
    } else if code == probe::ENDOSOME {
        x = st.endo.get(i).copied().unwrap_or(0) as f32;
    } else if code == probe::RELEASED {
        if let Some(k) = slot {
            x = st.active.slots[k].released;
        }
    } else if code == probe::CLEFT {
        if let Some(k) = slot {
            x = st.active.slots[k].cleft_mm;
        }
    } else if code == probe::TM_U {
        if ty.release != rel::CA {
            x = ty.tm_u + st.term[i].x_f * pow_decay(&tables[ty.tab_fac as usize], since);
        }
    } else if code == probe::TM_X {
        if ty.release == rel::TM_MEAN {
            x = relax(
                1.0,
                st.term[i].x_d,
                pow_decay(&tables[ty.tab_rec as usize], since),
            );
        }
    } else if code >= probe::SYN_R {
        let g_prot = code >= probe::SYN_G;
        let j = if g_prot {
            code - probe::SYN_G
        } else {
            code - probe::SYN_R
        } as usize;
        if let Some(k) = slot {
            // Entries past the model's stride are never written (an exp receptor's r): 0.
            x = st
                .active
                .r_of(k)
                .get(2 * j + g_prot as usize)
                .copied()
                .unwrap_or(0.0);
        } else if !g_prot && st.handoff_of(i) != NO_HANDOFF && st.handoff_stride > 0 {
            let rc = &receptors[ty.receptor_first as usize + j];
            if rc.kind == receptor::KINETIC {
                let held = params.step - 1 - st.handoff_step[i];
                x = st.handoff_r[i * st.handoff_stride + j]
                    * pow_decay(&tables[rc.tab_beta as usize], held);
            }
        }
    }
    x
}
