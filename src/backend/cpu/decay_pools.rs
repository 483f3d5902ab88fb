//! decay_pools: one invocation per (neuron, receptor) entry, before `cleft` (§5.4, §6.4a).
//! CPU twin of `shaders/decay_pools.wgsl`.
//!
//! The active sums restart from 0 (`cleft` gathers them again) and the pooled
//! conductances decay by one step: kinetic hand-offs by e^{-β dt}, exp receptors by
//! e^{-dt/τ}, so the pool holds g⁺ of §6.4a once this step's quanta are added. GABA_B is
//! never pooled. Subnormal pools are flushed to zero, so a silent network reaches exact
//! zeros and never slows down on subnormal arithmetic.

use crate::layout::{GpuReceptor, StepParams};
use crate::model::flush_subnormal;
use crate::state::Neurons;

/// Entry `idx = neuron · n_receptors + receptor`.
#[inline]
pub fn decay_pools(
    idx: usize,
    params: &StepParams,
    receptors: &[GpuReceptor],
    st: &mut Neurons<'_>,
) {
    let rc = &receptors[idx % params.n_receptors as usize];
    st.g_pool_ns[idx] = flush_subnormal(st.g_pool_ns[idx] * rc.decay);
    st.g_active_ns[idx] = 0.0;
}

avx2_or_baseline! {
    /// The dispatcher: every entry of the neurons of `st`, the statements of [`decay_pools`]
    /// with the receptor of each entry known from its position (no division): the active
    /// sums cleared in one pass, the pools multiplied by a row of decay factors that repeats
    /// every receptor's factor for 16 neurons, so whole vectors go at a time. Without
    /// `clear_active` the active sums are left as they are: for networks whose synapses are
    /// never active (exp receptors only, [`crate::model::Model::exp_only`]), where they stay
    /// 0 and clearing them would only write 0 over 0 (2 % of `brette_coba`'s step).
    ///
    /// Built for AVX2 too (eight lanes) where the CPU has it.
    pub fn decay_pools_all(
        params: &StepParams,
        receptors: &[GpuReceptor],
        st: &mut Neurons<'_>,
        clear_active: bool,
    ) => decay_pools_all_body
}

/// The body of [`decay_pools_all`], inlined into each build of it.
#[inline(always)]
fn decay_pools_all_body(
    params: &StepParams,
    receptors: &[GpuReceptor],
    st: &mut Neurons<'_>,
    clear_active: bool,
) {
    let nr = params.n_receptors as usize;
    let count = st.v_mv.len() * nr;
    if nr == 0 {
        return;
    }
    if clear_active {
        st.g_active_ns[..count].fill(0.0);
    } else {
        debug_assert!(st.g_active_ns[..count].iter().all(|&g| g == 0.0));
    }
    // The decay factors of LANES neurons side by side, so that the loop over a run of
    // them multiplies whole vectors (the same products as one entry at a time).
    const LANES: usize = 16;
    let mut row = [0f32; 8 * LANES];
    let width = nr * LANES;
    if width <= row.len() {
        for (k, d) in row[..width].iter_mut().enumerate() {
            *d = receptors[k % nr].decay;
        }
    }
    let (pool, rest) = if width <= row.len() {
        let runs = count / width * width;
        st.g_pool_ns[..count].split_at_mut(runs)
    } else {
        st.g_pool_ns[..count].split_at_mut(0)
    };
    for run in pool.chunks_exact_mut(width) {
        for (g, d) in run.iter_mut().zip(&row[..width]) {
            *g = flush_subnormal(*g * d);
        }
    }
    for entry in rest.chunks_exact_mut(nr) {
        for (g, rc) in entry.iter_mut().zip(receptors) {
            *g = flush_subnormal(*g * rc.decay);
        }
    }
}
