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

/// The dispatcher: every entry of the neurons of `st`, the statements of [`decay_pools`]
/// with the receptor of each entry known from the loop (no division).
pub fn decay_pools_all(params: &StepParams, receptors: &[GpuReceptor], st: &mut Neurons<'_>) {
    let nr = params.n_receptors as usize;
    let count = st.v_mv.len() * nr;
    if nr == 0 {
        return;
    }
    for (pool, active) in st.g_pool_ns[..count]
        .chunks_exact_mut(nr)
        .zip(st.g_active_ns[..count].chunks_exact_mut(nr))
    {
        for ((g, a), rc) in pool.iter_mut().zip(active.iter_mut()).zip(receptors) {
            *g = flush_subnormal(*g * rc.decay);
            *a = 0.0;
        }
    }
}
