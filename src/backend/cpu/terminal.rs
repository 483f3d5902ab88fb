//! Lazy advance of a presynaptic terminal from its last event to now (§3.2 steps 1, 2, 7;
//! §3.3 for TM). Called by `release` (spike arrivals and asynchronous fusions) and by
//! `spontaneous` (miniature release), always before the terminal is read.
//!
//! Splitting an interval at an extra event is exact: refilling and recycling are Markov
//! (P(not refilled by t) = P(not by t_f)·P(not in [t_f, t])) and the residual-Ca decays
//! compose, so advancing at asynchronous or spontaneous fusions changes no distribution.
//! Will be mirrored by a `terminal` function in `shaders/common.wgsl`.

use crate::layout::{release, GpuSynType, PowTable};
use crate::math::{pow_sw, relax};
use crate::model::{flush_subnormal, pow_decay, pow_decay3};
use crate::philox::{Domain, Lanes, Purpose};
use crate::state::Terminals;

/// Advances synapse `syn` (global id, in the range of `st`) of type `ty` to step `t`.
pub fn advance_terminal(
    seed: u64,
    ty: &GpuSynType,
    tables: &[PowTable],
    syn: u32,
    t: u32,
    st: &mut Terminals<'_>,
) {
    // A static terminal has no state to advance (its one site is always docked).
    if ty.release == release::STATIC {
        return;
    }
    let i = syn as usize - st.base;
    let delta = t - st.term[i].t_last;
    if delta == 0 {
        return;
    }
    let tracked = ty.reserve_size > 0;
    // (7) recycling: each vesicle in endocytosis has returned with prob 1 - e^{-Δ/τ_endo}.
    if tracked && st.endo[i] > 0 {
        let p_ret = 1.0 - pow_decay(&tables[ty.tab_endo as usize], delta);
        let mut back = 0u32;
        let mut u = Lanes::new(seed, Domain::Synapse, syn, t, Purpose::Recycle);
        for v in 0..st.endo[i] {
            if u.at(v) < p_ret {
                back += 1;
            }
        }
        st.endo[i] -= back;
        st.reserve[i] += back;
    }
    let committed = if st.committed.is_empty() {
        0
    } else {
        st.committed[i]
    };
    // The decays over Δ: recovery site, basal refilling, facilitation site.
    let [decay_d, decay_k0, decay_f] = pow_decay3(
        [
            &tables[ty.tab_rec as usize],
            &tables[ty.tab_k0 as usize],
            &tables[ty.tab_fac as usize],
        ],
        delta,
    );
    // (1) refilling of empty sites since the last event.
    let p_fill = if ty.release == release::CA {
        // η = ((K_D + X_D⁺)/(K_D + X_D⁺·e^{-Δ/τ_D}))^{-(kmax-k0)τ_D} (DKR 2000), the form
        // of ((K_D/X + 1)/(K_D/X + e^{-Δ/τ_D}))^{-a} multiplied through by X: it has no
        // K_D/X, which overflows to inf (and η to NaN) once X_D has decayed to a subnormal
        // during a long silence. η = 1 at X_D⁺ = 0 follows without a branch.
        let x_d = st.term[i].x_d;
        let eta = pow_sw((ty.k_d + x_d) / (ty.k_d + x_d * decay_d), -ty.eta_exponent);
        1.0 - decay_k0 * eta
    } else {
        // TM: Ca-independent recovery, P_fill = 1 - e^{-Δ/τ_rec} (§3.3).
        1.0 - decay_d
    };
    if ty.release != release::TM_MEAN {
        let mut u = Lanes::new(seed, Domain::Synapse, syn, t, Purpose::Refill);
        for j in 0..ty.n_sites {
            let bit = 1u32 << j;
            if (st.term[i].sites | committed) & bit == 0
                && u.at(j) < p_fill
                && (!tracked || st.reserve[i] > 0)
            {
                st.term[i].sites |= bit;
                if tracked {
                    st.reserve[i] -= 1;
                }
            }
        }
    }
    // (2) decay of the residual-Ca sites (CA) or of the TM variables.
    // Subnormals are flushed to zero (DESIGN.md: they slow the CPU and a GPU may flush them).
    st.term[i].x_f = flush_subnormal(st.term[i].x_f * decay_f);
    if ty.release == release::TM_MEAN {
        // x ← 1 + (x - 1)·e^{-Δ/τ_rec} (Maass & Markram 2002 recursion, §2.2).
        st.term[i].x_d = relax(1.0, st.term[i].x_d, decay_d);
    } else {
        st.term[i].x_d = flush_subnormal(st.term[i].x_d * decay_d);
    }
    st.term[i].t_last = t;
}
