//! release: one invocation per arriving event (DESIGN.md kernel 2; §1-§3).
//! CPU twin of the future `shaders/release.wgsl`.
//!
//! For a presynaptic spike: advance the terminal lazily (residual Ca, refilling,
//! recycling), compute the release probability (§2.1 CA law or §2.2 TM), draw one
//! Bernoulli per docked site (binomial quantal release, §3.2), draw asynchronous
//! releases (§3.4) into the delay ring, then add the Ca increments. For an
//! asynchronous fusion: advance, then fuse the committed site. The quanta released
//! go to [`activate`], which adds transmitter to the cleft and marks the synapse active.

use super::deliver::SPIKE;
use super::prefetch;
use super::terminal::advance_terminal;
use crate::layout::{release as rel, GpuSynType, PowTable};
use crate::math::{exp_sw, ln_sw, pow_sw};
use crate::model::Model;
use crate::network::Network;
use crate::philox::{Domain, Lanes, Purpose};
use crate::state::{Slot, State, Terminals, ACTIVE};

/// Release probability per docked vesicle of a CA synapse with facilitation site `x_f`
/// just before this AP (§2.1). f32, the same operations as the shader.
#[inline]
pub fn ca_release_probability(ty: &GpuSynType, x_f: f32) -> f32 {
    if ty.law == 0 {
        // c_eff = c·(1 + φ_F·X_F/(X_F + K_F)); p = p_max·c_effⁿ/(c_effⁿ + K_pⁿ)
        let c_eff = ty.c_drive * (1.0 + ty.phi_f * x_f / (x_f + ty.k_f));
        let cn = pow_sw(c_eff, ty.hill_n);
        ty.p_max * cn / (cn + ty.k_p_pow_n)
    } else {
        // DKR 2000: p = F1 + (1 - F1)·X_F/(X_F + K_F), F1 = p_max·cⁿ/(cⁿ + K_pⁿ)
        let cn = pow_sw(ty.c_drive, ty.hill_n);
        let f1 = ty.p_max * cn / (cn + ty.k_p_pow_n);
        f1 + (1.0 - f1) * x_f / (x_f + ty.k_f)
    }
}

/// Synchronous release: one Bernoulli(p) per docked, uncommitted site; returns k.
#[inline]
fn release_sites(
    seed: u64,
    ty: &GpuSynType,
    syn: u32,
    t: u32,
    p: f32,
    st: &mut Terminals<'_>,
) -> u32 {
    let i = syn as usize - st.base;
    let committed = if st.committed.is_empty() {
        0
    } else {
        st.committed[i]
    };
    let mut k = 0u32;
    let mut u = Lanes::new(seed, Domain::Synapse, syn, t, Purpose::Release);
    for j in 0..ty.n_sites {
        let bit = 1u32 << j;
        if st.term[i].sites & !committed & bit != 0 && u.at(j) < p {
            st.term[i].sites &= !bit;
            k += 1;
        }
    }
    k
}

/// Asynchronous release (§3.4): each still-docked site commits with P_a = 1 - e^{-ρ_a p}
/// and fuses after an Exp(τ_a) latency (≥ 1 step, truncated at the ring horizon); the
/// fusion is appended to `fusions` as (ring row, synapse, site).
#[inline]
#[expect(clippy::too_many_arguments, reason = "the scalars of one event")]
fn schedule_async(
    seed: u64,
    ty: &GpuSynType,
    max_steps: u32,
    syn: u32,
    t: u32,
    p: f32,
    st: &mut Terminals<'_>,
    ring_len: usize,
    fusions: &mut Vec<(u32, u32, u32)>,
) {
    let i = syn as usize - st.base;
    let p_a = 1.0 - exp_sw(-ty.async_rho * p);
    let mut ua = Lanes::new(seed, Domain::Synapse, syn, t, Purpose::AsyncRelease);
    let mut ud = Lanes::new(seed, Domain::Synapse, syn, t, Purpose::AsyncDelay);
    for j in 0..ty.n_sites {
        let bit = 1u32 << j;
        if st.term[i].sites & !st.committed[i] & bit != 0 && ua.at(j) < p_a {
            st.committed[i] |= bit;
            let u = ud.at(j);
            let lat = -ty.tau_async_steps * ln_sw(1.0 - u);
            let steps = (lat.round() as u32).clamp(1, max_steps);
            let slot = ((t as u64 + steps as u64) % ring_len as u64) as u32;
            fusions.push((slot, syn, j));
        }
    }
}

/// How many events ahead [`release`] asks for the state of the next events (measured on
/// coba.toml: 3 to 8 are best, 24 is slower).
const PREFETCH_EVENTS: usize = 8;

/// Asks the CPU to bring the cache lines of synapse `syn`'s network arrays, and of its
/// terminal record when `terminal`, into the cache, so that an event's five separate
/// lines arrive together, while earlier events are processed, instead of one after the
/// other (measured on coba.toml: release 20 % faster than loading every event's lines
/// in a loop before the events). No value is read or changed.
#[inline(always)]
fn prefetch_event(net: &Network, syn: u32, st: &Terminals<'_>, terminal: bool) {
    prefetch_synapse(net, syn);
    if terminal {
        prefetch(&st.term[syn as usize - st.base]);
    }
}

/// The network half of [`prefetch_event`]: synapse `syn`'s type, source, target and weight.
#[inline(always)]
fn prefetch_synapse(net: &Network, syn: u32) {
    let i = syn as usize;
    prefetch(&net.syn_type[i]);
    prefetch(&net.syn_pre[i]);
    prefetch(&net.syn_post[i]);
    prefetch(&net.syn_weight[i]);
}

/// What [`release`] produced for a range of events.
#[derive(Debug, Default, Clone)]
pub struct Released {
    /// (synapse, quanta) per synapse with a release, ascending.
    pub releases: Vec<(u32, f32)>,
    /// Quanta of each event (0 for a failure), in event order.
    pub per_event: Vec<f32>,
    /// Asynchronous fusions scheduled: (ring row, synapse, site), in event order.
    pub fusions: Vec<(u32, u32, u32)>,
    /// Per projection key (source population, target population, synapse type): evoked
    /// events, failures, and quanta in 2^-16 units (rounded half away from zero, as the
    /// GPU's `add_quanta`), so that ranges add up exactly in any order.
    pub evoked: Vec<[u64; 3]>,
}

/// Processes events of step `t` (sorted, from `deliver`; every event's synapse is in the
/// range of `st`) into `out`. `ring_len` is the number of asynchronous ring rows. Events
/// of different synapses are independent, so ranges of the events run on different
/// threads and their outputs, concatenated in order, are those of one pass.
pub fn release(
    model: &Model,
    net: &Network,
    t: u32,
    events: &[(u32, u32)],
    st: &mut Terminals<'_>,
    ring_len: usize,
    out: &mut Released,
) {
    let Released {
        releases,
        per_event,
        fusions,
        evoked,
    } = out;
    releases.clear();
    per_event.clear();
    fusions.clear();
    let (np, nt) = (model.pops.len(), model.syn_types.len());
    evoked.clear();
    evoked.resize(np * np * nt, [0; 3]);
    let seed = model.seed;
    let tables: &[PowTable] = &model.pow_tables;
    // A network whose synapse types are all static has no terminal state to load.
    let terminals = !model.all_static_release();
    for (e, &(syn, kind)) in events.iter().enumerate() {
        if let Some(&(ahead, _)) = events.get(e + PREFETCH_EVENTS) {
            prefetch_event(net, ahead, st, terminals);
        }
        let tm = &model.syn_types[net.syn_type[syn as usize] as usize];
        let i = syn as usize - st.base;
        let ty = &tm.gpu;
        advance_terminal(seed, ty, tables, syn, t, st);
        let quanta: f32 = if kind != SPIKE {
            // Asynchronous fusion of a committed site (§3.4).
            let bit = 1u32 << kind;
            if st.committed[i] & bit != 0 {
                st.committed[i] &= !bit;
                st.term[i].sites &= !bit;
                if ty.reserve_size > 0 {
                    st.endo[i] += 1;
                }
                1.0
            } else {
                0.0
            }
        } else {
            match ty.release {
                rel::CA => {
                    // (3) p from X_F just before this AP; (4) binomial release; (5) async;
                    // (6) Ca increments after p (§3.2).
                    let p = ca_release_probability(ty, st.term[i].x_f);
                    let k = release_sites(seed, ty, syn, t, p, st);
                    if ty.async_rho > 0.0 {
                        schedule_async(
                            seed,
                            ty,
                            tm.max_async_steps,
                            syn,
                            t,
                            p,
                            st,
                            ring_len,
                            fusions,
                        );
                    }
                    st.term[i].x_f += ty.c_drive;
                    st.term[i].x_d += ty.c_drive;
                    if ty.reserve_size > 0 {
                        st.endo[i] += k;
                    }
                    k as f32
                }
                rel::TM_STOCHASTIC => {
                    // u_n = U + u_{n-1}(1-U)e^{-Δ/τ_fac}: x_f holds u_{n-1}(1-U), decayed (§2.2).
                    let u = ty.tm_u + st.term[i].x_f;
                    let k = release_sites(seed, ty, syn, t, u, st);
                    if ty.async_rho > 0.0 {
                        schedule_async(
                            seed,
                            ty,
                            tm.max_async_steps,
                            syn,
                            t,
                            u,
                            st,
                            ring_len,
                            fusions,
                        );
                    }
                    st.term[i].x_f = u * (1.0 - ty.tm_u);
                    if ty.reserve_size > 0 {
                        st.endo[i] += k;
                    }
                    k as f32
                }
                rel::STATIC => 1.0,
                _ => {
                    // Mean TM: amplitude N·u_n·x_n, then x ← x - u·x (§2.2).
                    let u = ty.tm_u + st.term[i].x_f;
                    let x = st.term[i].x_d;
                    let q = ty.n_sites as f32 * u * x;
                    st.term[i].x_d = x - u * x;
                    st.term[i].x_f = u * (1.0 - ty.tm_u);
                    q
                }
            }
        };
        per_event.push(quanta);
        if kind == SPIKE {
            count_evoked(net, np, nt, syn, quanta, evoked);
        }
        match releases.last_mut() {
            Some((s, q)) if *s == syn => *q += quanta,
            _ => releases.push((syn, quanta)),
        }
    }
    releases.retain(|&(_, q)| q > 0.0);
}

/// Adds released transmitter to the clefts (§4.1) and activates synapses. `releases` is
/// ascending by synapse and holds all of this step's releases (events and last step's
/// minis), so the per-step `released` counters restart from 0 first. A synapse that was
/// not active gets a slot in `new` (ascending, cleared first), which `cleft` merges into
/// the pool as it advances it.
pub fn activate(
    model: &Model,
    net: &Network,
    releases: &[(u32, f32)],
    st: &mut State,
    new: &mut Vec<Slot>,
) {
    for s in st.active.slots.iter_mut() {
        s.released = 0.0;
    }
    new.clear();
    // Releases and slots are both ascending: each slot is found after the previous one.
    let mut lo = 0;
    for &(syn, q) in releases {
        let ty = &model.syn_types[net.syn_type[syn as usize] as usize].gpu;
        let s = syn as usize;
        let slot = if st.handoff_step[s] != ACTIVE {
            // The slot remembers the hand-off step so `cleft` can take the state back (§5.4).
            new.push(Slot::new(syn, st.handoff_step[s]));
            st.handoff_step[s] = ACTIVE;
            new.last_mut().expect("just pushed")
        } else if new.last().is_some_and(|n| n.syn == syn) {
            new.last_mut().expect("not empty")
        } else {
            // Galloping from the previous slot: the next release is usually near it, so
            // the search touches a few nearby records instead of halving the whole rest.
            let rest = &st.active.slots[lo..];
            let mut hi = 1;
            while hi < rest.len() && rest[hi - 1].syn < syn {
                hi *= 2;
            }
            let from = hi / 2;
            let to = hi.min(rest.len());
            let k = lo + from + rest[from..to].partition_point(|x| x.syn < syn);
            assert_eq!(
                st.active.slots.get(k).map(|x| x.syn),
                Some(syn),
                "every active synapse has a slot"
            );
            lo = k;
            &mut st.active.slots[k]
        };
        slot.released += q;
        st.quanta_step += q as f64;
        // Multivesicular release adds concentration in the shared cleft (§5.3).
        slot.cleft_mm += q * ty.delta_t_mm;
        if ty.cleft_pulse == 1 {
            let still = if slot.pulse_left > 0 {
                slot.pulse_quanta
            } else {
                0.0
            };
            slot.pulse_quanta = still + q;
            slot.pulse_left = ty.pulse_steps;
        }
    }
}

/// A step's spike arrivals in a network of static release onto exp receptors only
/// ([`Model::static_exp_only`]): each is exactly one quantum, which adds ḡ·w to the target's
/// pooled conductance (§6.4a). The statements of [`release`] for a static type, of the
/// direct split and of [`release_direct`], fused into one pass over the events (ascending
/// synapse id, the order of `release_direct`, one event per synapse), after the pools
/// decayed: the same sums in the same order, the same evoked counts and quanta.
pub fn release_static_exp(
    model: &Model,
    net: &Network,
    events: &[(u32, u32)],
    st: &mut State,
    evoked: &mut [[u64; 3]],
) {
    let (np, nt) = (model.pops.len(), model.syn_types.len());
    for (e, &(syn, kind)) in events.iter().enumerate() {
        debug_assert_eq!(kind, SPIKE, "static release has no asynchronous fusions");
        if let Some(&(ahead, _)) = events.get(e + PREFETCH_EVENTS) {
            prefetch_synapse(net, ahead);
        }
        count_evoked(net, np, nt, syn, 1.0, evoked);
        add_direct(model, net, syn, 1.0, st);
    }
}

/// Counts an evoked release of `quanta` at synapse `syn` under its projection key (source
/// population, target population, synapse type; `np` populations, `nt` types): the
/// event, a failure if no quantum, and the quanta in 2^-16 units (rounded half away from
/// zero, as the GPU's `add_quanta`).
#[inline(always)]
fn count_evoked(
    net: &Network,
    np: usize,
    nt: usize,
    syn: u32,
    quanta: f32,
    evoked: &mut [[u64; 3]],
) {
    let g = syn as usize;
    let key = (net.neuron_pop[net.syn_pre[g] as usize] as usize * np
        + net.neuron_pop[net.syn_post[g] as usize] as usize)
        * nt
        + net.syn_type[g] as usize;
    let c = &mut evoked[key];
    c[0] += 1;
    c[1] += (quanta == 0.0) as u64;
    c[2] += (quanta * 65536.0).round() as u64;
}

/// Adds `q` quanta of exp-receptor synapse `syn` straight into its target's pool: g_max·w
/// per quantum and receptor (§6.4a), and counts them.
#[inline(always)]
fn add_direct(model: &Model, net: &Network, syn: u32, q: f32, st: &mut State) {
    let nr = model.receptors.len();
    let i = syn as usize;
    let ty = &model.syn_types[net.syn_type[i] as usize].gpu;
    let post = net.syn_post[i] as usize;
    let w = net.syn_weight[i];
    st.quanta_step += q as f64;
    for j in 0..ty.n_receptors as usize {
        let rc = &model.gpu_receptors[ty.receptor_first as usize + j];
        st.g_pool_ns[post * nr + ty.receptor_first as usize + j] += rc.g_max_ns * w * q;
    }
}

/// Splits this step's releases (ascending synapse) into those that go through the cleft
/// and those of synapses whose receptors are all exp and that are not active: the
/// latter need no cleft or receptor state and go straight to the neuron pool
/// ([`release_direct`]), each keeping its quanta; both lists stay ascending.
pub fn split_direct(
    model: &Model,
    net: &Network,
    releases: &[(u32, f32)],
    st: &State,
    slow: &mut Vec<(u32, f32)>,
    direct: &mut Vec<(u32, f32)>,
) {
    slow.clear();
    direct.clear();
    for &(syn, q) in releases {
        let ty = &model.syn_types[net.syn_type[syn as usize] as usize].gpu;
        if ty.cleft_dependent == 0 && st.handoff_of(syn as usize) != ACTIVE {
            direct.push((syn, q));
        } else {
            slow.push((syn, q));
        }
    }
}

/// Exp receptors without the cleft (§6.4a): each quantum adds g_max·w to the neuron
/// pool, after the pools decayed, in ascending synapse id. The same sums, in the same
/// order, as when the synapse is advanced by `cleft` for its step of activity (only
/// synapses of one type add into one (neuron, receptor) entry). Twin of the direct
/// branch of shaders/release.wgsl, whose contributions `gather` adds.
pub fn release_direct(model: &Model, net: &Network, direct: &[(u32, f32)], st: &mut State) {
    for &(syn, q) in direct {
        add_direct(model, net, syn, q, st);
    }
}
