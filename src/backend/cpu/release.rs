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
use crate::math::{exp_sw, exp_sw_slice, ln_sw, ln_sw_slice, pow_sw, pow_sw_by_exp};
use crate::model::{flush_subnormal, pow_decay3, Model, SynTypeModel};
use crate::network::Network;
use crate::philox::{uniform4_lanes, Domain, Lanes, Purpose, LANES};
use crate::state::{Slot, State, Terminal, Terminals, ACTIVE};

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

/// Release with probability `p` of a spike arrival at synapse `syn` (CA or stochastic TM):
/// the binomial release of the docked sites, the asynchronous commitments (§3.4), and the
/// released vesicles into endocytosis when the reserve pool is tracked; returns the
/// quanta released. Twin of `release_vesicles` in shaders/release.wgsl.
#[inline]
#[expect(clippy::too_many_arguments, reason = "the scalars of one event")]
fn release_vesicles(
    seed: u64,
    tm: &SynTypeModel,
    syn: u32,
    t: u32,
    p: f32,
    st: &mut Terminals<'_>,
    ring_len: usize,
    fusions: &mut Vec<(u32, u32, u32)>,
) -> u32 {
    let ty = &tm.gpu;
    let k = release_sites(seed, ty, syn, t, p, st);
    if ty.async_rho > 0.0 {
        let max = tm.max_async_steps;
        schedule_async(seed, ty, max, syn, t, p, st, ring_len, fusions);
    }
    if ty.reserve_size > 0 {
        st.endo[syn as usize - st.base] += k;
    }
    k
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

/// The network half of [`prefetch_event`]: synapse `syn`'s projection, target and weight.
#[inline(always)]
fn prefetch_synapse(net: &Network, syn: u32) {
    let i = syn as usize;
    prefetch(&net.syn_proj[i]);
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

avx2_or_baseline! {
    /// Processes events of step `t` (sorted, from `deliver`; every event's synapse is in
    /// the range of `st`) into `out`. `ring_len` is the number of asynchronous ring rows.
    /// Events of different synapses are independent, so ranges of the events run on
    /// different threads and their outputs, concatenated in order, are those of one pass.
    pub fn release(
        model: &Model,
        net: &Network,
        t: u32,
        events: &[(u32, u32)],
        st: &mut Terminals<'_>,
        ring_len: usize,
        out: &mut Released,
    ) => release_body
}

/// The body of [`release`], inlined into each build of it.
#[inline(always)]
fn release_body(
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
    release_events(
        model,
        net,
        t,
        events,
        st,
        ring_len,
        fusions,
        |syn, kind, q| {
            per_event.push(q);
            if kind == SPIKE {
                count_evoked(net, np, nt, syn, q, evoked);
            }
            match releases.last_mut() {
                Some((s, sq)) if *s == syn => *sq += q,
                _ => releases.push((syn, q)),
            }
        },
    );
    releases.retain(|&(_, q)| q > 0.0);
}

/// The events of [`release`], in order: runs of [`LANES`] spike arrivals at synapses of
/// [`lane_type`]s through [`release_ca_lanes`] (the same bits, several events at a time),
/// every other event, one at a time, through [`release_one`]; each event's synapse, kind
/// and quanta go to `sink`, in event order.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the arrays of one dispatch")]
fn release_events(
    model: &Model,
    net: &Network,
    t: u32,
    events: &[(u32, u32)],
    st: &mut Terminals<'_>,
    ring_len: usize,
    fusions: &mut Vec<(u32, u32, u32)>,
    mut sink: impl FnMut(u32, u32, f32),
) {
    // A network whose synapse types are all static has no terminal state to load.
    let terminals = !model.all_static_release();
    let lanes = model.syn_types.iter().any(|s| lane_type(&s.gpu));
    let mut e = 0;
    while e < events.len() {
        if lanes && e + LANES <= events.len() {
            let run = &events[e..e + LANES];
            let fits = run.iter().all(|&(syn, kind)| {
                kind == SPIKE && lane_type(&model.syn_types[net.syn_type(syn as usize)].gpu)
            });
            if fits {
                for &(ahead, _) in events.iter().skip(e + LANES).take(LANES) {
                    prefetch_event(net, ahead, st, terminals);
                }
                let syns: [u32; LANES] = std::array::from_fn(|l| run[l].0);
                let quanta = release_ca_lanes(model, net, t, &syns, st);
                for (&syn, q) in syns.iter().zip(quanta) {
                    sink(syn, SPIKE, q);
                }
                e += LANES;
                continue;
            }
        }
        if let Some(&(ahead, _)) = events.get(e + PREFETCH_EVENTS) {
            prefetch_event(net, ahead, st, terminals);
        }
        let (syn, kind) = events[e];
        let q = release_one(model, net, t, syn, kind, st, ring_len, fusions);
        sink(syn, kind, q);
        e += 1;
    }
}

/// One event (a spike arrival, or the asynchronous fusion of site `kind`) at synapse
/// `syn`: advances its terminal and returns the quanta released.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the scalars of one event")]
fn release_one(
    model: &Model,
    net: &Network,
    t: u32,
    syn: u32,
    kind: u32,
    st: &mut Terminals<'_>,
    ring_len: usize,
    fusions: &mut Vec<(u32, u32, u32)>,
) -> f32 {
    let seed = model.seed;
    let tm = &model.syn_types[net.syn_type(syn as usize)];
    let i = syn as usize - st.base;
    let ty = &tm.gpu;
    advance_terminal(seed, ty, &model.pow_tables, syn, t, st);
    if kind != SPIKE {
        // Asynchronous fusion of a committed site (§3.4).
        let bit = 1u32 << kind;
        return if st.committed[i] & bit != 0 {
            st.committed[i] &= !bit;
            st.term[i].sites &= !bit;
            if ty.reserve_size > 0 {
                st.endo[i] += 1;
            }
            1.0
        } else {
            0.0
        };
    }
    match ty.release {
        rel::CA => {
            // (3) p from X_F just before this AP; (4) binomial release; (5) async;
            // (6) Ca increments after p (§3.2).
            let p = ca_release_probability(ty, st.term[i].x_f);
            let k = release_vesicles(seed, tm, syn, t, p, st, ring_len, fusions);
            st.term[i].x_f += ty.c_drive;
            st.term[i].x_d += ty.c_drive;
            k as f32
        }
        rel::TM_STOCHASTIC => {
            // u_n = U + u_{n-1}(1-U)e^{-Δ/τ_fac}: x_f holds u_{n-1}(1-U), decayed (§2.2).
            let u = ty.tm_u + st.term[i].x_f;
            let k = release_vesicles(seed, tm, syn, t, u, st, ring_len, fusions);
            st.term[i].x_f = u * (1.0 - ty.tm_u);
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
}

/// Whether spike arrivals at a synapse of type `ty` can go through [`release_ca_lanes`]:
/// Ca-law release (§2.1) with at most eight sites, no reserve pool and no asynchronous
/// release, whose terminal step is refilling, decay and binomial release only.
#[inline(always)]
fn lane_type(ty: &GpuSynType) -> bool {
    ty.release == rel::CA && ty.reserve_size == 0 && ty.async_rho == 0.0 && ty.n_sites <= 8
}

/// [`crate::model::pow_decay`] for each lane's Δ of the tables `ids[l]` (three indices into
/// `tables` per lane): `out[k][l]`, the product of table `ids[l][k]`'s entries of Δ's set
/// bits in ascending order, times 1 for the clear bits (exact, also past a lane's highest
/// bit), so the bits of `pow_decay`. When the lanes have at most two sets of tables (a
/// run of eight events has one or two synapse types) and the CPU has AVX2, the eight
/// lanes multiply in one register per table ([`pow_decay_two_avx2`]).
#[inline(always)]
fn pow_decay_lanes(
    tables: &[PowTable],
    ids: &[[u32; 3]; LANES],
    delta: &[u32; LANES],
) -> [[f32; LANES]; 3] {
    #[cfg(target_arch = "x86_64")]
    {
        let tab = |i: &[u32; 3]| i.map(|k| &tables[k as usize].f);
        let ia = ids[0];
        let ib = *ids.iter().find(|i| **i != ia).unwrap_or(&ia);
        if ids.iter().all(|i| *i == ia || *i == ib) && std::arch::is_x86_feature_detected!("avx2") {
            let bits = 32 - delta.iter().fold(0, |a, &d| a | d).leading_zeros() as usize;
            let of_b: [u32; LANES] =
                std::array::from_fn(|l| if ids[l] == ib { u32::MAX } else { 0 });
            // SAFETY: the CPU has AVX2, tested just above.
            return unsafe { pow_decay_two_avx2(tab(&ia), tab(&ib), &of_b, delta, bits) };
        }
    }
    let mut out = [[1.0f32; LANES]; 3];
    for l in 0..LANES {
        let [d, k0, f] = pow_decay3(ids[l].map(|k| &tables[k as usize]), delta[l]);
        [out[0][l], out[1][l], out[2][l]] = [d, k0, f];
    }
    out
}

/// [`pow_decay_lanes`] for lanes with tables `ta`, or `tb` where `of_b` is all ones, over
/// bits `0..bits` of the Δs: per bit, each table's two entries are broadcast, each lane
/// takes its own (1 where its bit is clear), and the eight products advance in one
/// multiplication.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn pow_decay_two_avx2(
    ta: [&[f32; 32]; 3],
    tb: [&[f32; 32]; 3],
    of_b: &[u32; LANES],
    delta: &[u32; LANES],
    bits: usize,
) -> [[f32; LANES]; 3] {
    use std::arch::x86_64::*;
    const _: () = assert!(LANES == 8);
    // SAFETY (loads and stores): each array is eight 4-byte lanes, one 32-byte register.
    let d = unsafe { _mm256_loadu_si256(delta.as_ptr().cast()) };
    let kind_b = _mm256_castsi256_ps(unsafe { _mm256_loadu_si256(of_b.as_ptr().cast()) });
    let one = _mm256_set1_ps(1.0);
    let lsb = _mm256_set1_epi32(1);
    let mut out = [one; 3];
    for b in 0..bits.min(32) {
        let bit = _mm256_and_si256(_mm256_srl_epi32(d, _mm_cvtsi32_si128(b as i32)), lsb);
        let set = _mm256_castsi256_ps(_mm256_cmpeq_epi32(bit, lsb));
        for k in 0..3 {
            let f = _mm256_blendv_ps(_mm256_set1_ps(ta[k][b]), _mm256_set1_ps(tb[k][b]), kind_b);
            out[k] = _mm256_mul_ps(out[k], _mm256_blendv_ps(one, f, set));
        }
    }
    out.map(|o| {
        let mut a = [0f32; LANES];
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), o) };
        a
    })
}

/// The spike arrivals at [`LANES`] different synapses `syns` of [`lane_type`]s: for each,
/// the statements of [`advance_terminal`] and of the CA branch of [`release_one`], with the
/// same operations in the same order, so the same bits (tested against one at a time).
/// The lanes' decays, their η = e^{-a·ln r} of refilling and their Philox blocks are
/// computed side by side, in vector registers, instead of one event after the other,
/// and the lanes' loads overlap; returns the quanta of each.
#[inline(always)]
fn release_ca_lanes(
    model: &Model,
    net: &Network,
    t: u32,
    syns: &[u32; LANES],
    st: &mut Terminals<'_>,
) -> [f32; LANES] {
    let seed = model.seed;
    let tables = &model.pow_tables;
    let ty: [&GpuSynType; LANES] =
        std::array::from_fn(|l| &model.syn_types[net.syn_type(syns[l] as usize)].gpu);
    let idx: [usize; LANES] = std::array::from_fn(|l| syns[l] as usize - st.base);
    let mut term: [Terminal; LANES] = std::array::from_fn(|l| st.term[idx[l]]);
    let committed: [u32; LANES] = std::array::from_fn(|l| {
        if st.committed.is_empty() {
            0
        } else {
            st.committed[idx[l]]
        }
    });
    let delta: [u32; LANES] = std::array::from_fn(|l| t - term[l].t_last);
    // `pow_decay3` per lane.
    let ids: [[u32; 3]; LANES] =
        std::array::from_fn(|l| [ty[l].tab_rec, ty[l].tab_k0, ty[l].tab_fac]);
    let [dec_d, dec_k0, dec_f] = pow_decay_lanes(tables, &ids, &delta);
    // η = r^{-a}, r = (K_D + X_D⁺)/(K_D + X_D⁺·e^{-Δ/τ_D}), as `pow_sw` computes it.
    let ratio: [f32; LANES] = std::array::from_fn(|l| {
        let x_d = term[l].x_d;
        (ty[l].k_d + x_d) / (ty[l].k_d + x_d * dec_d[l])
    });
    let mut eta = ratio;
    ln_sw_slice(&mut eta);
    for l in 0..LANES {
        eta[l] *= -ty[l].eta_exponent;
    }
    exp_sw_slice(&mut eta);
    for l in 0..LANES {
        if !pow_sw_by_exp(ratio[l], -ty[l].eta_exponent) {
            eta[l] = pow_sw(ratio[l], -ty[l].eta_exponent);
        }
    }
    // The refill and release draws of sites 0-3 (and 4-7 when a lane has more sites).
    let more = ty.iter().any(|y| y.n_sites > 4);
    let draws = |purpose, block| uniform4_lanes(seed, Domain::Synapse, syns, t, purpose, block);
    let fill = [
        draws(Purpose::Refill, 0),
        if more {
            draws(Purpose::Refill, 1)
        } else {
            [[1.0; LANES]; 4]
        },
    ];
    let fuse = [
        draws(Purpose::Release, 0),
        if more {
            draws(Purpose::Release, 1)
        } else {
            [[1.0; LANES]; 4]
        },
    ];
    // The sites each lane's draws would fill and release: bit j when the draw of site j is
    // below the probability (the loops' `u < p`, as bit masks without branches).
    let adv: [bool; LANES] = std::array::from_fn(|l| delta[l] != 0);
    let p_fill: [f32; LANES] = std::array::from_fn(|l| 1.0 - dec_k0[l] * eta[l]);
    let sites_of: [u32; LANES] = std::array::from_fn(|l| (1u32 << ty[l].n_sites) - 1);
    let below = |u: &[[[f32; LANES]; 4]; 2], p: &[f32; LANES]| -> [u32; LANES] {
        std::array::from_fn(|l| {
            (0..8).fold(0u32, |m, j| m | (((u[j / 4][j % 4][l] < p[l]) as u32) << j)) & sites_of[l]
        })
    };
    let fills = below(&fill, &p_fill);
    // (1) refilling of the empty sites; (2) decay of the residual-Ca sites (not at Δ = 0).
    for l in 0..LANES {
        let s = &mut term[l];
        if adv[l] {
            s.sites |= !(s.sites | committed[l]) & fills[l];
            s.x_f = flush_subnormal(s.x_f * dec_f[l]);
            s.x_d = flush_subnormal(s.x_d * dec_d[l]);
            s.t_last = t;
        }
    }
    // (3) p; (4) binomial release; (6) Ca increments after p.
    let p: [f32; LANES] = std::array::from_fn(|l| ca_release_probability(ty[l], term[l].x_f));
    let fused = below(&fuse, &p);
    let mut quanta = [0.0f32; LANES];
    for l in 0..LANES {
        let s = &mut term[l];
        let gone = s.sites & !committed[l] & fused[l];
        s.sites &= !gone;
        s.x_f += ty[l].c_drive;
        s.x_d += ty[l].c_drive;
        st.term[idx[l]] = *s;
        quanta[l] = gone.count_ones() as f32;
    }
    quanta
}

/// Adds released transmitter to the clefts (§4.1) and activates synapses. `releases` is
/// ascending by synapse and holds all of this step's releases (events and last step's
/// minis), so the per-step `released` counters restart from 0 first. A synapse that was
/// not active gets a slot in `new` (ascending, cleared first), which `cleft` merges into
/// the pool as it advances it.
///
/// With `hits` (for [`cleft_kinetic`](super::cleft::cleft_kinetic), which visits every
/// slot anyway), the releases at synapses that are active are left to it: they go to
/// `hits` (ascending, cleared first), and `cleft_kinetic` restarts each old slot's count
/// and adds them, with the same operations in the same order.
pub fn activate(
    model: &Model,
    net: &Network,
    releases: &[(u32, f32)],
    st: &mut State,
    new: &mut Vec<Slot>,
    mut hits: Option<&mut Vec<(u32, f32)>>,
) {
    match hits.as_deref_mut() {
        Some(h) => h.clear(),
        None => {
            for s in st.active.slots.iter_mut() {
                s.released = 0.0;
            }
        }
    }
    new.clear();
    // Releases and slots are both ascending: each slot is found after the previous one.
    let mut lo = 0;
    for &(syn, q) in releases {
        let ty = &model.syn_types[net.syn_type(syn as usize)].gpu;
        let s = syn as usize;
        let slot = if st.handoff_step[s] != ACTIVE {
            // The slot remembers the hand-off step so `cleft` can take the state back (§5.4).
            new.push(Slot::new(syn, st.handoff_step[s]));
            st.handoff_step[s] = ACTIVE;
            new.last_mut().expect("just pushed")
        } else if new.last().is_some_and(|n| n.syn == syn) {
            new.last_mut().expect("not empty")
        } else if let Some(h) = hits.as_deref_mut() {
            st.quanta_step += q as f64;
            h.push((syn, q));
            continue;
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

/// What [`release_static_exp`] reads of one synapse of a network of static release onto
/// one exp receptor per type, in one 8-byte record (one cache line per arrival instead
/// of the four of type, source, target and weight).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct StaticSynapse {
    /// The target's entry in the per-(neuron, receptor) pools, shifted left by the bits
    /// of the keys, and the projection key (source population, target population,
    /// synapse type) of the evoked counts in those bits.
    pub entry_key: u32,
    /// ḡ·w, nS: what one quantum adds (§6.4a), the product add_direct forms.
    pub g_ns: f32,
}

impl StaticSynapse {
    /// The records of every synapse and the bits of the key, when the network is of that
    /// kind ([`Model::static_record_key_bits`]); else none. With `out_order`, record `o`
    /// is that of synapse `net.out_syn[o]` (the order of the outgoing lists, in which a
    /// step's arrivals visit them when they come in spike order); else record `i` is
    /// synapse `i`'s.
    pub fn of(model: &Model, net: &Network, out_order: bool) -> (Vec<StaticSynapse>, u32) {
        let Some(key_bits) = model.static_record_key_bits() else {
            return (Vec::new(), 0);
        };
        let (np, nt, nr) = (
            model.pops.len(),
            model.syn_types.len(),
            model.receptors.len(),
        );
        let record = |i: usize| {
            let ty = &model.syn_types[net.syn_type(i)].gpu;
            let rc = &model.gpu_receptors[ty.receptor_first as usize];
            let post = net.syn_post[i] as usize;
            let entry = post * nr + ty.receptor_first as usize;
            let key = net.evoked_key(i, np, nt);
            StaticSynapse {
                entry_key: ((entry << key_bits) | key) as u32,
                g_ns: rc.g_max_ns * net.syn_weight[i],
            }
        };
        let records = if out_order {
            net.out_syn.iter().map(|&s| record(s as usize)).collect()
        } else {
            (0..net.n_synapses() as usize).map(record).collect()
        };
        (records, key_bits)
    }
}

/// Where [`release_static_exp`] finds each arrival's record.
#[derive(Debug, Clone, Copy)]
pub enum StaticRecords<'a> {
    /// None: every arrival reads the synapse arrays.
    None,
    /// Record `i` is synapse `i`'s ([`StaticSynapse::of`] without `out_order`).
    BySynapse(&'a [StaticSynapse], u32),
}

/// True when `arrivals` (synapse ids) are the outgoing lists of `sources`, one after the
/// other: then [`release_static_by_source`] can take them from the records in outgoing
/// order.
pub fn arrivals_of(net: &Network, sources: &[u32], arrivals: &[u32]) -> bool {
    let mut e = 0;
    for &n in sources {
        let out = &net.out_syn
            [net.out_offsets[n as usize] as usize..net.out_offsets[n as usize + 1] as usize];
        match arrivals.get(e..e + out.len()) {
            Some(run) if run == out => e += out.len(),
            _ => return false,
        }
    }
    e == arrivals.len()
}

/// [`release_static_exp`] for a step whose arrivals are the outgoing lists of `sources`,
/// one after the other ([`arrivals_of`]), with `records` in the order of the outgoing
/// lists ([`StaticSynapse::of`] with `out_order`, `key_bits` its key bits): the same
/// arrivals in the same order, their records read one after the other (one cache line for
/// eight arrivals, and the next source's first lines asked for ahead).
pub fn release_static_by_source(
    net: &Network,
    records: &[StaticSynapse],
    key_bits: u32,
    sources: &[u32],
    st: &mut State,
    evoked: &mut [[u64; 3]],
) {
    let mut arrivals = vec![0u64; evoked.len()];
    let q = 1.0;
    let mut n_events = 0;
    for (k, &n) in sources.iter().enumerate() {
        let (o0, o1) = (
            net.out_offsets[n as usize] as usize,
            net.out_offsets[n as usize + 1] as usize,
        );
        // The next source's first records, while this one's are added.
        if let Some(&m) = sources.get(k + 1) {
            let (p0, p1) = (
                net.out_offsets[m as usize] as usize,
                net.out_offsets[m as usize + 1] as usize,
            );
            for o in (p0..p1).step_by(8).take(4) {
                prefetch(&records[o]);
            }
        }
        for r in &records[o0..o1] {
            arrivals[(r.entry_key & ((1 << key_bits) - 1)) as usize] += 1;
            st.g_pool_ns[(r.entry_key >> key_bits) as usize] += r.g_ns * q;
        }
        n_events += o1 - o0;
    }
    count_static(evoked, &arrivals, n_events, st);
}

/// A step's spike arrivals in a network of static release onto exp receptors only
/// ([`Model::static_exp_only`]): each is exactly one quantum, which adds ḡ·w to the target's
/// pooled conductance (§6.4a). The statements of [`release`] for a static type, of the
/// direct split and of [`release_direct`], fused into one pass over the events (ascending
/// synapse id, the order of `release_direct`, one event per synapse), after the pools
/// decayed: the same sums in the same order, the same evoked counts and quanta.
///
/// With `records` ([`StaticRecords`]), each arrival reads its synapse's one record
/// instead of four arrays.
pub fn release_static_exp(
    model: &Model,
    net: &Network,
    records: StaticRecords<'_>,
    events: &[(u32, u32)],
    st: &mut State,
    evoked: &mut [[u64; 3]],
) {
    let (np, nt) = (model.pops.len(), model.syn_types.len());
    let nr = model.receptors.len();
    // Every arrival is one evoked quantum, never a failure: count the arrivals per
    // projection key here and add the integers once (the same counts and units as
    // [`count_evoked`]); the quanta of the step, whole numbers in an f64, likewise.
    let mut arrivals = vec![0u64; evoked.len()];
    let q = 1.0;
    debug_assert!(
        events.iter().all(|e| e.1 == SPIKE),
        "static release has no asynchronous fusions"
    );
    if let StaticRecords::BySynapse(records, key_bits) = records {
        for (e, &(syn, _)) in events.iter().enumerate() {
            if let Some(&(ahead, _)) = events.get(e + PREFETCH_EVENTS) {
                prefetch(&records[ahead as usize]);
            }
            let r = &records[syn as usize];
            arrivals[(r.entry_key & ((1 << key_bits) - 1)) as usize] += 1;
            st.g_pool_ns[(r.entry_key >> key_bits) as usize] += r.g_ns * q;
        }
    } else {
        for (e, &(syn, _)) in events.iter().enumerate() {
            if let Some(&(ahead, _)) = events.get(e + PREFETCH_EVENTS) {
                prefetch_synapse(net, ahead);
            }
            // The statements of add_direct (without its count of quanta).
            let i = syn as usize;
            let ty = &model.syn_types[net.syn_type(i)].gpu;
            let post = net.syn_post[i] as usize;
            arrivals[net.evoked_key(i, np, nt)] += 1;
            let w = net.syn_weight[i];
            for j in 0..ty.n_receptors as usize {
                let rc = &model.gpu_receptors[ty.receptor_first as usize + j];
                st.g_pool_ns[post * nr + ty.receptor_first as usize + j] += rc.g_max_ns * w * q;
            }
        }
    }
    count_static(evoked, &arrivals, events.len(), st);
}

/// The evoked counts and quanta of a step of [`release_static_exp`]: `arrivals` per
/// projection key, `n_events` in all, each one quantum.
fn count_static(evoked: &mut [[u64; 3]], arrivals: &[u64], n_events: usize, st: &mut State) {
    let q = 1.0;
    for (c, &n) in evoked.iter_mut().zip(arrivals) {
        c[0] += n;
        c[2] += n * quanta_units(q);
    }
    st.quanta_step += n_events as f64;
}

avx2_or_baseline! {
    /// A step's spike arrivals (one range, after the pools decayed) in a network whose
    /// receptors are all exp, with no asynchronous or miniature release
    /// ([`Model::exp_only`]): the statements of [`release`], of the direct split and of
    /// [`release_direct`] fused into one pass over the events. Every release goes
    /// straight to its target's pool, in ascending synapse id (one event per synapse) as
    /// `release_direct` adds them: the same sums in the same order, the same evoked
    /// counts and quanta.
    pub fn release_exp_direct(
        model: &Model,
        net: &Network,
        t: u32,
        events: &[(u32, u32)],
        st: &mut State,
        evoked: &mut [[u64; 3]],
    ) => release_exp_direct_body
}

/// The body of [`release_exp_direct`], inlined into each build of it.
#[inline(always)]
fn release_exp_direct_body(
    model: &Model,
    net: &Network,
    t: u32,
    events: &[(u32, u32)],
    st: &mut State,
    evoked: &mut [[u64; 3]],
) {
    let (np, nt) = (model.pops.len(), model.syn_types.len());
    let nr = model.receptors.len();
    let State {
        term,
        committed,
        reserve,
        endo,
        g_pool_ns,
        quanta_step,
        ring_async,
        ..
    } = st;
    let mut tm = Terminals {
        base: 0,
        term,
        committed,
        reserve,
        endo,
    };
    // Stays empty: no type releases asynchronously.
    let mut fusions = Vec::new();
    release_events(
        model,
        net,
        t,
        events,
        &mut tm,
        ring_async.len(),
        &mut fusions,
        |syn, kind, q| {
            if kind == SPIKE {
                count_evoked(net, np, nt, syn, q, evoked);
            }
            if q > 0.0 {
                add_direct(model, net, nr, syn, q, g_pool_ns, quanta_step);
            }
        },
    );
    debug_assert!(fusions.is_empty(), "no asynchronous release");
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
    let key = net.evoked_key(g, np, nt);
    let c = &mut evoked[key];
    c[0] += 1;
    c[1] += (quanta == 0.0) as u64;
    c[2] += quanta_units(quanta);
}

/// Quanta `q` ≥ 0 in 2^-16 units, rounded half away from zero (the GPU's `add_quanta`):
/// floor(q·2^16 + 1/2) in f64, where both steps are exact for q < 2^36, is the integer
/// `(q * 65536.0).round()` gives, without `f32::round`'s library call.
#[inline(always)]
fn quanta_units(q: f32) -> u64 {
    (q as f64 * 65536.0 + 0.5) as u64
}

/// Adds `q` quanta of exp-receptor synapse `syn` straight into its target's pool
/// (`g_pool_ns`, `nr` receptors per neuron): g_max·w per quantum and receptor (§6.4a),
/// and counts them in `quanta_step`.
#[inline(always)]
fn add_direct(
    model: &Model,
    net: &Network,
    nr: usize,
    syn: u32,
    q: f32,
    g_pool_ns: &mut [f32],
    quanta_step: &mut f64,
) {
    let i = syn as usize;
    let ty = &model.syn_types[net.syn_type(i)].gpu;
    let post = net.syn_post[i] as usize;
    let w = net.syn_weight[i];
    *quanta_step += q as f64;
    for j in 0..ty.n_receptors as usize {
        let rc = &model.gpu_receptors[ty.receptor_first as usize + j];
        g_pool_ns[post * nr + ty.receptor_first as usize + j] += rc.g_max_ns * w * q;
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
        let ty = &model.syn_types[net.syn_type(syn as usize)].gpu;
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
    let nr = model.receptors.len();
    for &(syn, q) in direct {
        add_direct(
            model,
            net,
            nr,
            syn,
            q,
            &mut st.g_pool_ns,
            &mut st.quanta_step,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::philox::Stream;
    use std::path::Path;

    /// [`pow_decay_lanes`] has the bits of `pow_decay` for lanes with one, two (the AVX2
    /// path) and several sets of tables, for Δ from 0 to 2^32 - 1.
    #[test]
    fn pow_decay_lanes_has_the_bits_of_pow_decay() {
        let tables: Vec<PowTable> = [0.5, 3.0, 17.0, 250.0, 1000.0, 1e5]
            .iter()
            .map(|&tau| crate::model::pow_table(0.1, tau))
            .collect();
        let mut rng = Stream::new(5, 1, 1);
        for sets in [1u32, 2, 3, 6] {
            for _ in 0..200 {
                let ids: [[u32; 3]; LANES] = std::array::from_fn(|_| {
                    let s = rng.below(sets);
                    [s, (s + 1) % 6, (s + 2) % 6]
                });
                let delta: [u32; LANES] = std::array::from_fn(|l| match l {
                    0 => 0,
                    1 => u32::MAX,
                    _ => {
                        let top = 1 + rng.below(31);
                        rng.below(1 << top)
                    }
                });
                let got = pow_decay_lanes(&tables, &ids, &delta);
                for l in 0..LANES {
                    for k in 0..3 {
                        let want = crate::model::pow_decay(&tables[ids[l][k] as usize], delta[l]);
                        assert_eq!(
                            got[k][l].to_bits(),
                            want.to_bits(),
                            "Δ {} table {}",
                            delta[l],
                            ids[l][k]
                        );
                    }
                }
            }
        }
    }

    /// The evoked quanta in 2^-16 units are `f32::round` of q·2^16 (half away from zero, as
    /// the GPU's `add_quanta`) for any quanta a release gives: whole, fractional (mean
    /// TM), exactly half a unit, and the largest f32 below a half.
    #[test]
    fn quanta_units_round_half_away_from_zero() {
        let mut qs: Vec<f32> = (0..200_000).map(|i| i as f32 / 131_072.0).collect();
        qs.extend((0..100_000).map(|i| f32::from_bits(0x3000_0000 + i * 2_749)));
        let half = 0.5f32 / 65536.0;
        qs.extend([
            0.0,
            -0.0,
            1.0,
            5.0,
            64.0,
            half,
            f32::from_bits(half.to_bits() - 1),
        ]);
        for q in qs {
            assert_eq!(quanta_units(q), (q * 65536.0).round() as u64, "q = {q:e}");
        }
    }

    /// The lanes of [`release_ca_lanes`] give the bits of one event at a time
    /// ([`release_one`]): quanta, evoked counts and every terminal, from random terminal
    /// states (Δ of 0, 1 and up to 2^20 steps, X_D of 0 and tiny, any docked sites), with
    /// 3, 5 and 8 sites, and next to a type that cannot go in lanes (asynchronous release).
    #[test]
    fn lanes_have_the_bits_of_one_event_at_a_time() {
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/networks/coba.toml"));
        let small = [
            "populations.exc.size=160",
            "populations.inh.size=40",
            "projections.ee.p=0.1",
            "projections.ei.p=0.1",
            "projections.ie.p=0.1",
            "projections.ii.p=0.1",
        ];
        for extra in [
            vec![],
            vec![
                "synapse_types.ampa_q.ca.n_sites=8",
                "synapse_types.gaba_q.ca.n_sites=3",
            ],
            vec!["synapse_types.gaba_q.vesicles.async_rho=2.0"],
        ] {
            let sets: Vec<String> = small.iter().chain(&extra).map(|s| s.to_string()).collect();
            let loaded = crate::netfile::load(file, &sets).expect("coba.toml loads");
            let model = Model::from_spec(&loaded.file);
            let net = crate::network::build(&loaded, &model).expect("builds");
            let ns = net.n_synapses() as usize;
            let t = 1_500_000u32;
            let mut rng = Stream::new(11, 3, extra.len() as u32);
            let mut st = State::new(&model, &net);
            for (i, term) in st.term.iter_mut().enumerate() {
                let back = match i % 5 {
                    0 => 0,
                    1 => 1,
                    _ => rng.below(1 << 20),
                };
                term.t_last = t - back;
                term.sites = rng.below(256);
                term.x_f = if i % 7 == 0 { 0.0 } else { 2.0 * rng.uniform() };
                term.x_d = match i % 11 {
                    0 => 0.0,
                    1 => 1e-30,
                    _ => 2.0 * rng.uniform(),
                };
            }
            let mut events: Vec<(u32, u32)> = (0..ns as u32)
                .filter(|_| rng.uniform() < 0.6)
                .map(|s| (s, SPIKE))
                .collect();
            // A tail of single events too.
            events.truncate(events.len() / LANES * LANES + 3);
            let mut one = State::new(&model, &net);
            one.term.clone_from(&st.term);

            let mut lanes = Released::default();
            let mut tm = st.terminals(&[0, ns]);
            release(&model, &net, t, &events, &mut tm[0], 64, &mut lanes);

            let mut single = Released::default();
            let (np, nt) = (model.pops.len(), model.syn_types.len());
            single.evoked.resize(np * np * nt, [0; 3]);
            let mut tm1 = one.terminals(&[0, ns]);
            for &(syn, kind) in &events {
                let q = release_one(
                    &model,
                    &net,
                    t,
                    syn,
                    kind,
                    &mut tm1[0],
                    64,
                    &mut single.fusions,
                );
                single.per_event.push(q);
                count_evoked(&net, np, nt, syn, q, &mut single.evoked);
                single.releases.push((syn, q));
            }
            single.releases.retain(|&(_, q)| q > 0.0);
            drop((tm, tm1));

            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&lanes.per_event), bits(&single.per_event), "{extra:?}");
            assert_eq!(lanes.releases, single.releases, "{extra:?}");
            assert_eq!(lanes.evoked, single.evoked, "{extra:?}");
            assert_eq!(lanes.fusions, single.fusions, "{extra:?}");
            for (i, (a, b)) in st.term.iter().zip(&one.term).enumerate() {
                assert_eq!(
                    (a.t_last, a.sites, a.x_f.to_bits(), a.x_d.to_bits()),
                    (b.t_last, b.sites, b.x_f.to_bits(), b.x_d.to_bits()),
                    "synapse {i}, {extra:?}"
                );
            }
            assert_eq!(st.committed, one.committed);
            let released: f32 = lanes.per_event.iter().sum();
            assert!(released > 100.0, "the events release: {released}");
        }
    }
}
