//! spontaneous: one invocation per neuron (DESIGN.md kernel 6; §3.4).
//! CPU twin of the future `shaders/spontaneous.wgsl`.
//!
//! Miniature release by exact thinning per postsynaptic neuron: draw
//! K ~ Poisson(λ_max·N_max·n_in·dt) candidate events over the neuron's incoming synapses
//! (a contiguous id range, post-major order); each picks a synapse uniformly and a site
//! uniformly among N_max, and is accepted with probability λ_s(type)/λ_max if the site
//! exists and is docked (acceptance = occupancy), which yields exactly λ_s per docked
//! vesicle. The terminal is advanced to now first. Minis drawn in step s enter the cleft
//! in step s+1 (through `State::pending_minis`).

use super::terminal::advance_terminal;
use crate::math::exp_sw;
use crate::model::Model;
use crate::network::Network;
use crate::philox::{Domain, Lanes, Purpose};
use crate::state::Terminals;

/// Largest Poisson mean drawn by inversion from one uniform; larger means are split.
const MAX_INVERSION_MEAN: f32 = 10.0;

/// Global thinning constants: the largest per-site per-step rate and site count.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpontParams {
    /// max over types of λ_s·dt (per docked site per step).
    pub rate_max: f32,
    /// max over types with λ_s > 0 of N.
    pub sites_max: u32,
}

impl SpontParams {
    /// From the model.
    pub fn new(model: &Model) -> Self {
        let mut s = SpontParams::default();
        for t in &model.syn_types {
            if t.gpu.spont_per_site_step > 0.0 {
                s.rate_max = s.rate_max.max(t.gpu.spont_per_site_step);
                s.sites_max = s.sites_max.max(t.gpu.n_sites);
            }
        }
        s
    }
}

/// Poisson deviate by inversion from one uniform `u` (mean ≤ MAX_INVERSION_MEAN).
#[inline]
pub fn poisson_inverse(u: f32, mean: f32) -> u32 {
    let mut k = 0u32;
    let mut p = exp_sw(-mean);
    let mut cdf = p;
    while u > cdf && k < 1000 {
        k += 1;
        p *= mean / k as f32;
        cdf += p;
        if p == 0.0 {
            break;
        }
    }
    k
}

/// Draws miniature releases of step `t` into `pending` (ascending synapse); `st` holds
/// every synapse's terminal.
pub fn spontaneous(
    model: &Model,
    net: &Network,
    sp: &SpontParams,
    t: u32,
    st: &mut Terminals<'_>,
    pending: &mut Vec<(u32, f32)>,
) {
    if sp.rate_max <= 0.0 {
        return;
    }
    let seed = model.seed;
    for n in 0..net.n_neurons() {
        let lo = net.in_offsets[n as usize];
        let n_in = net.in_offsets[n as usize + 1] - lo;
        if n_in == 0 {
            continue;
        }
        let mean_total = sp.rate_max * sp.sites_max as f32 * n_in as f32;
        let chunks = (mean_total / MAX_INVERSION_MEAN).ceil().max(1.0) as u32;
        let mean = mean_total / chunks as f32;
        let mut draw = 0u32;
        let mut k_total = 0u32;
        let mut u = Lanes::new(seed, Domain::Neuron, n, t, Purpose::Spontaneous);
        for _ in 0..chunks {
            k_total += poisson_inverse(u.at(draw), mean);
            draw += 1;
        }
        let first_new = pending.len();
        for _ in 0..k_total {
            let us = u.at(draw);
            let uj = u.at(draw + 1);
            let ua = u.at(draw + 2);
            draw += 3;
            let syn = lo + ((us * n_in as f32) as u32).min(n_in - 1);
            let site = ((uj * sp.sites_max as f32) as u32).min(sp.sites_max - 1);
            let ty = &model.syn_types[net.syn_type(syn as usize)].gpu;
            let i = syn as usize - st.base;
            if site >= ty.n_sites || ua * sp.rate_max >= ty.spont_per_site_step {
                continue;
            }
            advance_terminal(seed, ty, &model.pow_tables, syn, t, st);
            let bit = 1u32 << site;
            let committed = if st.committed.is_empty() {
                0
            } else {
                st.committed[i]
            };
            if st.term[i].sites & !committed & bit != 0 {
                st.term[i].sites &= !bit;
                if ty.reserve_size > 0 {
                    st.endo[i] += 1;
                }
                pending.push((syn, 1.0));
            }
        }
        // Keep the neuron's minis ascending and merged per synapse.
        pending[first_new..].sort_unstable_by_key(|x| x.0);
        let mut w = first_new;
        for r in first_new..pending.len() {
            if w > first_new && pending[w - 1].0 == pending[r].0 {
                pending[w - 1].1 += pending[r].1;
            } else {
                pending[w] = pending[r];
                w += 1;
            }
        }
        pending.truncate(w);
    }
}
