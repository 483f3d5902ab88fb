//! cleft: one invocation per active synapse (DESIGN.md kernel 3; §4, §5).
//! CPU twin of the future `shaders/cleft.wgsl`.
//!
//! Clears transmitter (diffusion + uptake + enzyme, exact exponential, §4.2, or the DMS
//! pulse), advances the receptor gates with T frozen at its mid-step value (§5.1), runs
//! the GABA_B cascade (§5.2), adds exp-receptor quanta to the neuron pool (§6.4a), and
//! hands the linear decay of a synapse whose transmitter is gone to the per-neuron pool
//! (§5.4, exact). Slots are visited in ascending synapse id, which is post-major order,
//! so every neuron's sum is gathered in a fixed order. Ranges of postsynaptic neurons,
//! with their incoming synapses' slots, run on different threads ([`CleftPart`]).
//!
//! The pool is not copied apart from this pass: the kernel merges the slots that were
//! active with those this step activated (both ascending) as it visits them, and writes
//! each one that stays active, as one record, to the next step's pool, so bringing new
//! synapses in and dropping cleared ones costs no pass of its own. The one-receptor
//! kinetic form ([`cleft_one`]) does the same over the pool kept one array per field
//! ([`OnePool`]) instead of records.

use super::prefetch;
use crate::layout::{receptor, GpuSynType, PowTable};
use crate::math::{exp_sw_slice, pow_sw, relax};
use crate::model::{pow_decay, Model};
use crate::network::Network;
use crate::state::{ActivePool, CleftPart, Slot, ACTIVE, NO_HANDOFF};

/// GABA_B contributions below this fraction of g_max are dropped when the synapse
/// deactivates (G⁴/(G⁴+K_D) < 1e-9, i.e. G < 0.018 with K_D = 100).
pub const GABA_B_NEGLIGIBLE: f32 = 1e-9;

/// Slots per block of [`cleft`].
const BLOCK: usize = 64;
/// The gather of [`cleft_one`]'s activated slots asks for the synapse arrays'
/// lines of the slot this many ahead.
const FRESH_AHEAD: usize = 8;
/// Receptors per synapse type.
const MR: usize = crate::netfile::validate::MAX_RECEPTORS;

/// Transmitter seen by the receptors of slot `slot` during this step (§5.1: mid-step for
/// the exponential cleft; the pulse value for the DMS pulse), after which the cleft is
/// advanced to the end of the step; and whether it is cleared.
#[inline]
fn transmitter(ty: &GpuSynType, slot: &mut Slot) -> (f32, bool) {
    let t_mm;
    let cleared;
    if ty.cleft_pulse == 1 {
        t_mm = if slot.pulse_left > 0 {
            slot.pulse_quanta * ty.pulse_mm
        } else {
            0.0
        };
        if slot.pulse_left > 0 {
            slot.pulse_left -= 1;
        }
        cleared = slot.pulse_left == 0;
        slot.cleft_mm = if cleared { 0.0 } else { t_mm };
    } else {
        let t_now = slot.cleft_mm;
        t_mm = t_now * ty.clear_half;
        let t_next = t_now * ty.clear_full;
        cleared = t_next < ty.clear_threshold_mm;
        slot.cleft_mm = if cleared { 0.0 } else { t_next };
    }
    (t_mm, cleared)
}

avx2_or_baseline! {
    /// Advances the active synapses of one range (`part`: the postsynaptic neurons of the
    /// range, their incoming synapses and those synapses' slots, old and new) by one step of
    /// `t`, writes those that stay active to `part.out` in ascending synapse id and returns
    /// their number. The first non-finite conductance goes to `non_finite`. Ranges own
    /// disjoint state, so they run on different threads; within a range, slots are visited
    /// in ascending synapse id as before.
    pub fn cleft(
        model: &Model,
        net: &Network,
        t: u32,
        handoff_stride: usize,
        st: &mut CleftPart<'_>,
        non_finite: &mut crate::state::NonFinite,
    ) -> usize => cleft_body
}

/// The body of [`cleft`], inlined into each build of it.
#[inline(always)]
fn cleft_body(
    model: &Model,
    net: &Network,
    t: u32,
    handoff_stride: usize,
    st: &mut CleftPart<'_>,
    non_finite: &mut crate::state::NonFinite,
) -> usize {
    debug_assert!(
        st.hits.is_empty(),
        "activate leaves no release to this form"
    );
    let dt = model.dt_ms as f32;
    let nr = model.receptors.len();
    let tables: &[PowTable] = &model.pow_tables;
    // Slots go in blocks: first the transmitter of every slot of the block and the
    // binding term αT of its kinetic and GABA_B receptors (a lane each, in slot and
    // receptor order); then, over all lanes at once (several at a time), k = αT + β, the
    // exponent -k·dt and r_inf = αT/k, and the exponentials ([`exp_sw_slice`], the bits
    // of `exp_sw`); then each slot's receptors and sums in slot order, taking the lanes
    // in the same order. Only slot-local statements move ahead of other slots', so every
    // sum is formed as before. (Moving r's relaxation and ḡ·w·r into the lanes as well
    // was 8 % slower: the gathers and scatters cost more than the lanes save.)
    let mut cleared_blk = [false; BLOCK];
    let mut ty_blk = [0usize; BLOCK];
    let mut a_lane = [0f32; BLOCK * MR];
    let mut beta_lane = [0f32; BLOCK * MR];
    let mut r_inf_lane = [0f32; BLOCK * MR];
    let mut decay = [0f32; BLOCK * MR];
    let mut done_blk = [false; BLOCK];
    let (old, new, old_r, rs) = (st.old, st.new, st.old_r, st.stride);
    let (mut i, mut i_new) = (0, 0);
    // Slots out[..kept] stay active.
    let mut kept = 0;
    while i < old.len() || i_new < new.len() {
        // The next BLOCK synapses in ascending id, from the old slots and the new ones,
        // go to the next step's pool after those kept so far, and are advanced there.
        let mut nb = 0;
        while nb < BLOCK && (i < old.len() || i_new < new.len()) {
            let to = (kept + nb) * rs;
            if i_new == new.len() || (i < old.len() && old[i].syn < new[i_new].syn) {
                st.out[kept + nb] = old[i];
                st.out_r[to..to + rs].copy_from_slice(&old_r[i * rs..(i + 1) * rs]);
                i += 1;
            } else {
                st.out[kept + nb] = new[i_new];
                st.out_r[to..to + rs].fill(0.0);
                i_new += 1;
            }
            nb += 1;
        }
        let mut m = 0;
        for (k, slot) in st.out[kept..kept + nb].iter_mut().enumerate() {
            ty_blk[k] = net.syn_type(slot.syn as usize);
            let ty = &model.syn_types[ty_blk[k]].gpu;
            let (t_mm, cleared) = transmitter(ty, slot);
            cleared_blk[k] = cleared;
            for j in 0..ty.n_receptors as usize {
                let rc = &model.gpu_receptors[ty.receptor_first as usize + j];
                if rc.kind == receptor::KINETIC || rc.kind == receptor::GABA_B {
                    a_lane[m] = rc.alpha * t_mm;
                    beta_lane[m] = rc.beta;
                    m += 1;
                }
            }
        }
        for (((a, beta), d), r_inf) in a_lane[..m]
            .iter()
            .zip(&beta_lane[..m])
            .zip(&mut decay[..m])
            .zip(&mut r_inf_lane[..m])
        {
            let kk = a + beta;
            *d = -kk * dt;
            *r_inf = a / kk;
        }
        exp_sw_slice(&mut decay[..m]);
        let mut m = 0;
        for kb in 0..nb {
            let slot = &mut st.out[kept + kb];
            let r_slot = &mut st.out_r[(kept + kb) * rs..(kept + kb + 1) * rs];
            let syn = slot.syn as usize;
            let ty = &model.syn_types[ty_blk[kb]].gpu;
            let post = net.syn_post[syn] as usize - st.base;
            let hs = (syn - st.syn_base) * handoff_stride;
            let w = net.syn_weight[syn];
            let first = ty.receptor_first as usize;
            let nrec = ty.n_receptors as usize;
            // Re-activation: take this synapse's share back out of the neuron pool (§5.4).
            // (The GPU computes the same take-back at activation: `take_back` in
            // shaders/release.wgsl, applied by `gather` in this order.)
            let prev = slot.fresh;
            if prev != ACTIVE {
                if prev != NO_HANDOFF {
                    let held = t - prev;
                    for j in 0..nrec {
                        let rc = &model.gpu_receptors[first + j];
                        if rc.kind != receptor::KINETIC {
                            continue;
                        }
                        let r_h = st.handoff_r[hs + j];
                        let tab = &tables[rc.tab_beta as usize];
                        // The pool holds r_h·e^{-β(t - t_h)} for this step; own r at the end of
                        // the previous step is r_h·e^{-β(t - 1 - t_h)}.
                        let pool = &mut st.g_pool_ns[post * nr + first + j];
                        *pool = (*pool - rc.g_max_ns * w * r_h * pow_decay(tab, held)).max(0.0);
                        r_slot[2 * j] = r_h * pow_decay(tab, held - 1);
                    }
                }
                slot.fresh = ACTIVE;
            }
            let cleared = cleared_blk[kb];
            // A synapse with exp receptors only has no cleft-dependent state: it leaves the
            // pool in the step after its release (so its `released` count can be sampled).
            let mut done = cleared || (ty.cleft_dependent == 0 && slot.released == 0.0);
            let mut g = [0f32; MR];
            for j in 0..nrec {
                let rc = &model.gpu_receptors[first + j];
                match rc.kind {
                    receptor::KINETIC => {
                        // r ← r_inf + (r - r_inf)·exp(-(αT + β)dt), r_inf = αT/(αT + β) (§5.1)
                        let r = relax(r_inf_lane[m], r_slot[2 * j], decay[m]);
                        m += 1;
                        r_slot[2 * j] = r;
                        g[j] = rc.g_max_ns * w * r;
                    }
                    receptor::GABA_B => {
                        // R: frozen-T form with K1, K2; G ← G_inf + (G - G_inf)e^{-K4 dt},
                        // G_inf = K3·R/K4 with R from the start of the step (§5.2).
                        let r_old = r_slot[2 * j];
                        let r_new = relax(r_inf_lane[m], r_old, decay[m]);
                        m += 1;
                        let g_inf = rc.k3 * r_old / rc.k4;
                        let gp = relax(g_inf, r_slot[2 * j + 1], rc.decay_k4);
                        r_slot[2 * j] = r_new;
                        r_slot[2 * j + 1] = gp;
                        let gn = pow_sw(gp, rc.n_hill);
                        let frac = gn / (gn + rc.k_d);
                        g[j] = rc.g_max_ns * w * frac;
                        done = done && r_new < 1e-6 && frac < GABA_B_NEGLIGIBLE;
                    }
                    _ => {
                        // Exponential conductance: each quantum adds g_max·w to the pool (§6.4a).
                        st.g_pool_ns[post * nr + first + j] += rc.g_max_ns * w * slot.released;
                    }
                }
            }
            if non_finite.is_none() && g.iter().any(|x| !x.is_finite()) {
                *non_finite = Some((syn as u32, "receptor conductance g_ns", true));
            }
            for j in 0..nrec {
                let rc = &model.gpu_receptors[first + j];
                let idx = post * nr + first + j;
                match rc.kind {
                    receptor::KINETIC if done => {
                        // Hand-off: from now on dr/dt = -βr is linear and lives in the pool (§5.4).
                        st.g_pool_ns[idx] += g[j];
                        st.handoff_r[hs + j] = r_slot[2 * j];
                    }
                    receptor::KINETIC | receptor::GABA_B => st.g_active_ns[idx] += g[j],
                    _ => {}
                }
            }
            if done {
                st.handoff_step[syn - st.syn_base] =
                    if handoff_stride > 0 { t } else { NO_HANDOFF };
            }
            done_blk[kb] = done;
        }
        kept = drop_done(st, kept, &done_blk[..nb], rs);
    }
    kept
}

/// Drops the block's slots `out[kept..kept + done.len()]` whose `done` is set: those
/// after them move down, with their `rs` floats of receptor state (most blocks have none
/// to drop, and then nothing moves). Returns the number of slots kept so far.
#[inline(always)]
fn drop_done(st: &mut CleftPart<'_>, kept: usize, done: &[bool], rs: usize) -> usize {
    let mut w = kept;
    for (kb, &d) in done.iter().enumerate() {
        if !d {
            if w != kept + kb {
                st.out[w] = st.out[kept + kb];
                st.out_r
                    .copy_within((kept + kb) * rs..(kept + kb + 1) * rs, w * rs);
            }
            w += 1;
        }
    }
    w
}

/// The active conductance of one (neuron, receptor) entry being summed by the kinetic
/// forms of [`cleft`] (slots of one neuron and receptor come one after the other): its
/// entry and value, stored when the entry changes; the same additions in the same order
/// as adding into the array each time.
struct ActiveSum {
    entry: usize,
    g_ns: f32,
}

impl Default for ActiveSum {
    fn default() -> Self {
        ActiveSum {
            entry: usize::MAX,
            g_ns: 0.0,
        }
    }
}

impl ActiveSum {
    /// Adds `g_ns` to `entry` of `g_active_ns`.
    #[inline(always)]
    fn add(&mut self, g_active_ns: &mut [f32], entry: usize, g_ns: f32) {
        if entry != self.entry {
            self.store(g_active_ns);
            self.entry = entry;
            self.g_ns = g_active_ns[entry];
        }
        self.g_ns += g_ns;
    }

    /// [`ActiveSum::add`] of each of `g` to its entry of `entry`, in order, with the sum
    /// in a local, in a function of its own: inlined into the kernel's loop, the sum was
    /// kept in memory (one store and one load per addition, on the chain of additions;
    /// measured: a third of the kernel's time).
    #[inline(never)]
    fn add_all(&mut self, g_active_ns: &mut [f32], entry: &[u32], g: &[f32]) {
        let (mut at, mut sum) = (self.entry, self.g_ns);
        for (&e, &gk) in entry.iter().zip(g) {
            let e = e as usize;
            if e != at {
                if at != usize::MAX {
                    g_active_ns[at] = sum;
                }
                at = e;
                sum = g_active_ns[e];
            }
            sum += gk;
        }
        (self.entry, self.g_ns) = (at, sum);
    }

    /// Stores the sum of the current entry.
    #[inline(always)]
    fn store(&self, g_active_ns: &mut [f32]) {
        if self.entry != usize::MAX {
            g_active_ns[self.entry] = self.g_ns;
        }
    }
}

/// An old slot's releases of this step, the part of
/// [`activate`](super::release::activate) it left to the kinetic forms of [`cleft`]:
/// the slot's count restarts from 0, then each of its releases in `hits[*h..]` (ascending
/// by synapse) adds its quanta and its transmitter (`delta_t_mm` per quantum, §4.1).
#[inline(always)]
fn add_hits(slot: &mut Slot, hits: &[(u32, f32)], h: &mut usize, delta_t_mm: f32) {
    slot.released = 0.0;
    while *h < hits.len() && hits[*h].0 == slot.syn {
        let q = hits[*h].1;
        slot.released += q;
        slot.cleft_mm += q * delta_t_mm;
        *h += 1;
    }
}

/// Copies the first `n` (at most [`BLOCK`]) elements of `src` to `dst`: a whole
/// [`BLOCK`] where both have room for one (a copy of fixed size, inline, where one of `n`
/// elements calls the copy routine), which leaves elements `n..BLOCK` of `dst` changed:
/// the caller's later writes cover them. For the pool's arrays of 4-byte elements
/// (measured: the same copy of the 24-byte slots was slower, twice the bytes).
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T], n: usize) {
    debug_assert!(n <= BLOCK);
    if dst.len() >= BLOCK && src.len() >= BLOCK {
        dst[..BLOCK].copy_from_slice(&src[..BLOCK]);
    } else {
        dst[..n].copy_from_slice(&src[..n]);
    }
}

/// [`copy_run`] for 4-byte elements, a whole [`BLOCK`] in eight AVX2 loads and stores
/// when `avx2` (the compiler calls the copy routine for the 256 bytes otherwise).
#[inline(always)]
fn copy_run4<T: Copy>(avx2: bool, dst: &mut [T], src: &[T], n: usize) {
    const { assert!(std::mem::size_of::<T>() == 4) };
    debug_assert!(n <= BLOCK);
    #[cfg(target_arch = "x86_64")]
    if avx2 && dst.len() >= BLOCK && src.len() >= BLOCK {
        // SAFETY: the CPU has AVX2 (`avx2`); both hold BLOCK 4-byte elements.
        unsafe { copy_block_avx2(dst.as_mut_ptr().cast(), src.as_ptr().cast()) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx2;
    copy_run(dst, src, n);
}

/// Copies [`BLOCK`] 4-byte elements from `src` to `dst`, eight at a time.
///
/// # Safety
/// The CPU must have AVX2; both must hold [`BLOCK`] elements and not overlap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn copy_block_avx2(dst: *mut u32, src: *const u32) {
    use std::arch::x86_64::*;
    const _: () = assert!(BLOCK == 64);
    // SAFETY: 64 elements in each (the caller's promise), eight per load and store.
    unsafe {
        let v0 = _mm256_loadu_si256(src.cast());
        let v1 = _mm256_loadu_si256(src.add(8).cast());
        let v2 = _mm256_loadu_si256(src.add(16).cast());
        let v3 = _mm256_loadu_si256(src.add(24).cast());
        let v4 = _mm256_loadu_si256(src.add(32).cast());
        let v5 = _mm256_loadu_si256(src.add(40).cast());
        let v6 = _mm256_loadu_si256(src.add(48).cast());
        let v7 = _mm256_loadu_si256(src.add(56).cast());
        _mm256_storeu_si256(dst.cast(), v0);
        _mm256_storeu_si256(dst.add(8).cast(), v1);
        _mm256_storeu_si256(dst.add(16).cast(), v2);
        _mm256_storeu_si256(dst.add(24).cast(), v3);
        _mm256_storeu_si256(dst.add(32).cast(), v4);
        _mm256_storeu_si256(dst.add(40).cast(), v5);
        _mm256_storeu_si256(dst.add(48).cast(), v6);
        _mm256_storeu_si256(dst.add(56).cast(), v7);
    }
}

/// The next at most [`BLOCK`] slots in ascending synapse id for the kinetic forms of
/// [`cleft`], from `st.old[*i..]` and `st.new[*i_new..]`, into `st.out` after the `kept`
/// slots kept so far, with their `rs` floats of receptor state (a new slot's start at 0):
/// a new slot, or the old ones below the next new one copied as one run. Returns how
/// many.
#[inline(always)]
fn next_block(
    st: &mut CleftPart<'_>,
    i: &mut usize,
    i_new: &mut usize,
    kept: usize,
    rs: usize,
) -> usize {
    let (old, new, old_r) = (st.old, st.new, st.old_r);
    let mut nb = 0;
    while nb < BLOCK && (*i < old.len() || *i_new < new.len()) {
        if *i_new < new.len() && (*i == old.len() || new[*i_new].syn < old[*i].syn) {
            st.out[kept + nb] = new[*i_new];
            st.out_r[(kept + nb) * rs..(kept + nb + 1) * rs].fill(0.0);
            *i_new += 1;
            nb += 1;
        } else {
            let room = (BLOCK - nb).min(old.len() - *i);
            let run = match new.get(*i_new) {
                Some(next) if old[*i + room - 1].syn > next.syn => old[*i..*i + room]
                    .iter()
                    .take_while(|o| o.syn < next.syn)
                    .count(),
                _ => room,
            };
            st.out[kept + nb..kept + nb + run].copy_from_slice(&old[*i..*i + run]);
            if rs == 1 {
                copy_run(&mut st.out_r[kept + nb..], &old_r[*i..], run);
            } else {
                st.out_r[(kept + nb) * rs..(kept + nb + run) * rs]
                    .copy_from_slice(&old_r[*i * rs..(*i + run) * rs]);
            }
            *i += run;
            nb += run;
        }
    }
    nb
}

avx2_or_baseline! {
    /// [`cleft`] for a network whose synapse types all have an exponential cleft and only
    /// kinetic receptors ([`Model::kinetic_only`]): the same statements on the same values
    /// with the same sums in the same order, so the same bits, but without the branches
    /// on the cleft and receptor kinds, and with each receptor's relaxation and ḡ·w·r in
    /// lanes over the block (the compiler runs them several at a time).
    pub fn cleft_kinetic(
        model: &Model,
        net: &Network,
        t: u32,
        handoff_stride: usize,
        st: &mut CleftPart<'_>,
        non_finite: &mut crate::state::NonFinite,
    ) -> usize => cleft_kinetic_body
}

/// Whether the CPU backend takes the one-receptor form of the kinetic cleft
/// ([`cleft_one`]) for `model`, over the pool kept one array per field with each slot's
/// constants ([`one_constants`], `CleftPart::old_key`): kinetic receptors and exponential clefts
/// only ([`Model::kinetic_only`]), one receptor per type, at most 16 types, and every
/// (neuron, receptor) entry times 16 within a `u32`.
pub fn one_form(model: &Model) -> bool {
    let entries = model.n_neurons() as u64 * model.receptors.len() as u64;
    model.kinetic_only()
        && model.syn_types.iter().all(|s| s.gpu.n_receptors == 1)
        && model.syn_types.len() <= ONE_TYPES
        && entries * ONE_TYPES as u64 <= u32::MAX as u64
}

/// The active pool as the CPU backend keeps it for the one-receptor form ([`cleft_one`]):
/// one array per field, in slot order (ascending synapse id), where the state's
/// [`ActivePool`] has one record per slot. The backend writes the records from it when
/// the state is read ([`OnePool::store`]) and makes it again from them when the state was
/// set from elsewhere ([`OnePool::load`]).
#[derive(Debug, Clone, Default)]
pub struct OnePool {
    /// Synapse ids.
    pub syn: Vec<u32>,
    /// Transmitter in the cleft, mM (`Slot::cleft_mm`).
    pub t_mm: Vec<f32>,
    /// (synapse, quanta) of the slots that released in the last step (`Slot::released`;
    /// 0 for every other), ascending: the slots that step activated and those with
    /// releases left to the kinetic cleft (`CleftPart::hits`).
    pub released: Vec<(u32, f32)>,
    /// Receptor open fraction (`ActivePool::r`, one per slot).
    pub r: Vec<f32>,
    /// Constants: (neuron, receptor) entry times 16 plus the table row ([`one_constants`]).
    pub key: Vec<u32>,
    /// ḡ·w, nS ([`one_constants`]).
    pub gw_ns: Vec<f32>,
    /// When not empty, the slots are these runs (start, length) of the arrays, in order:
    /// the ranges of the last step's `cleft`, each written after the room of those before
    /// it and left where it is (the next step's ranges are the same and read them there;
    /// [`OnePool::compact`] closes the gaps when they are not).
    pub segs: Vec<(usize, usize)>,
}

impl OnePool {
    /// Active slots.
    pub fn len(&self) -> usize {
        if self.segs.is_empty() {
            self.syn.len()
        } else {
            self.segs.iter().map(|s| s.1).sum()
        }
    }

    /// Whether no slot is active.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The runs of the arrays that hold the slots, in order.
    pub fn runs(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let whole = self.segs.is_empty().then_some(0..self.syn.len());
        whole
            .into_iter()
            .chain(self.segs.iter().map(|&(a, n)| a..a + n))
    }

    /// Closes the gaps between the runs: the slots in `0..len()`.
    pub fn compact(&mut self) {
        let mut n = 0;
        for (from, len) in std::mem::take(&mut self.segs) {
            if from != n {
                self.move_slots(from, len, n);
            }
            n += len;
        }
        self.resize(n);
    }

    /// The pool of `pool`'s records (between steps: every slot active), with each slot's
    /// constants, for a [`one_form`] model (one float of receptor state per slot).
    pub fn load(&mut self, model: &Model, net: &Network, pool: &ActivePool) {
        assert_eq!(pool.stride, 1, "one receptor per type");
        self.segs.clear();
        self.syn.clear();
        self.syn.extend(pool.slots.iter().map(|s| s.syn));
        self.t_mm.clear();
        self.t_mm.extend(pool.slots.iter().map(|s| s.cleft_mm));
        self.released.clear();
        self.released.extend(
            pool.slots
                .iter()
                .filter(|s| s.released.to_bits() != 0)
                .map(|s| (s.syn, s.released)),
        );
        self.r.clear();
        self.r.extend_from_slice(&pool.r);
        one_constants(model, net, &pool.slots, &mut self.key, &mut self.gw_ns);
    }

    /// Writes the pool into `pool`'s records (a pulse cleft's fields 0: the one-receptor
    /// form has exponential clefts only).
    pub fn store(&self, pool: &mut ActivePool) {
        let mut released = self.released.iter().peekable();
        pool.slots.clear();
        pool.r.clear();
        for run in self.runs() {
            pool.slots.extend(
                self.syn[run.clone()]
                    .iter()
                    .zip(&self.t_mm[run.clone()])
                    .map(|(&syn, &cleft_mm)| {
                        while released.next_if(|w| w.0 < syn).is_some() {}
                        Slot {
                            syn,
                            fresh: ACTIVE,
                            cleft_mm,
                            released: released.next_if(|w| w.0 == syn).map_or(0.0, |w| w.1),
                            pulse_left: 0,
                            pulse_quanta: 0.0,
                        }
                    }),
            );
            pool.r.extend_from_slice(&self.r[run]);
        }
    }

    /// The released list of a step whose activated slots are `new` and whose releases at
    /// old slots are `hits` (both ascending): each slot's count from 0, as `cleft` forms
    /// it (`activate` formed the new slots' counts).
    pub fn set_released(&mut self, new: &[Slot], hits: &[(u32, f32)]) {
        self.released.clear();
        let (mut n, mut h) = (0, 0);
        while n < new.len() || h < hits.len() {
            if h == hits.len() || (n < new.len() && new[n].syn < hits[h].0) {
                self.released.push((new[n].syn, new[n].released));
                n += 1;
            } else {
                let syn = hits[h].0;
                let mut q = 0.0;
                while h < hits.len() && hits[h].0 == syn {
                    q += hits[h].1;
                    h += 1;
                }
                self.released.push((syn, q));
            }
        }
    }

    /// Sets the number of slots to `n`, one run (new ones zero).
    pub fn resize(&mut self, n: usize) {
        self.segs.clear();
        self.syn.resize(n, 0);
        self.t_mm.resize(n, 0.0);
        self.r.resize(n, 0.0);
        self.key.resize(n, 0);
        self.gw_ns.resize(n, 0.0);
    }

    /// Moves slots `from..from + n` to `to..to + n`.
    pub fn move_slots(&mut self, from: usize, n: usize, to: usize) {
        self.syn.copy_within(from..from + n, to);
        self.t_mm.copy_within(from..from + n, to);
        self.r.copy_within(from..from + n, to);
        self.key.copy_within(from..from + n, to);
        self.gw_ns.copy_within(from..from + n, to);
    }

    /// The quanta synapse `syn` released in the last step, if it is active.
    pub fn released_of(&self, syn: u32) -> Option<f32> {
        let active = self
            .runs()
            .any(|run| self.syn[run].binary_search(&syn).is_ok());
        active.then(|| match self.released.binary_search_by_key(&syn, |w| w.0) {
            Ok(k) => self.released[k].1,
            Err(_) => 0.0,
        })
    }
}

/// The constants the one-receptor form ([`cleft_one`]) keeps beside the pool for
/// each of `slots` (a [`one_form`] model): `key` gets the synapse's (neuron, receptor)
/// entry times 16 plus its row of the constant tables (its projection, or its type with
/// more than 16 projections), `gw_ns` its ḡ·w. Both are cleared first.
pub fn one_constants(
    model: &Model,
    net: &Network,
    slots: &[Slot],
    key: &mut Vec<u32>,
    gw_ns: &mut Vec<f32>,
) {
    let tb = OneTables::of(model, net);
    let nr = model.receptors.len() as u32;
    key.clear();
    gw_ns.clear();
    for s in slots {
        let (k, g) = tb.constants(net, nr, s.syn as usize);
        key.push(k);
        gw_ns.push(g);
    }
}

/// What [`cleft_kinetic`] reads of a synapse type.
#[derive(Clone, Copy)]
struct KineticType {
    clear_half: f32,
    clear_full: f32,
    clear_threshold_mm: f32,
    delta_t_mm: f32,
    receptor_first: usize,
    n_receptors: usize,
}

/// The body of [`cleft_kinetic`] for any number of receptors per type, inlined into each
/// build of it.
#[inline(always)]
fn cleft_kinetic_body(
    model: &Model,
    net: &Network,
    t: u32,
    handoff_stride: usize,
    st: &mut CleftPart<'_>,
    non_finite: &mut crate::state::NonFinite,
) -> usize {
    debug_assert!(model.kinetic_only());
    let dt = model.dt_ms as f32;
    let nr = model.receptors.len();
    let tables: &[PowTable] = &model.pow_tables;
    let recs = &model.gpu_receptors;
    let types: Vec<KineticType> = model
        .syn_types
        .iter()
        .map(|s| KineticType {
            clear_half: s.gpu.clear_half,
            clear_full: s.gpu.clear_full,
            clear_threshold_mm: s.gpu.clear_threshold_mm,
            delta_t_mm: s.gpu.delta_t_mm,
            receptor_first: s.gpu.receptor_first as usize,
            n_receptors: s.gpu.n_receptors as usize,
        })
        .collect();
    // Per slot of the block: cleared, its first (neuron, receptor) entry and its first
    // lane. Per lane (a receptor of a slot, in slot and receptor order): αT, then r_inf;
    // β, then the decay; r, before and after; ḡ·w, then g.
    let mut cleared_blk = [false; BLOCK];
    let mut entry_blk = [0usize; BLOCK];
    let mut lane0 = [0usize; BLOCK + 1];
    let mut a_lane = [0f32; BLOCK * MR];
    let mut beta_lane = [0f32; BLOCK * MR];
    let mut r_lane = [0f32; BLOCK * MR];
    let mut gw_lane = [0f32; BLOCK * MR];
    // The active conductance being summed ([`ActiveSum`]).
    let mut acc = ActiveSum::default();
    let (old, new, hits) = (st.old, st.new, st.hits);
    let rs = st.stride;
    let (mut i, mut i_new, mut h) = (0, 0, 0);
    let mut kept = 0;
    while i < old.len() || i_new < new.len() {
        // The next BLOCK synapses in ascending id: a new slot, or the old ones below the
        // next new one, copied as one run.
        let nb = next_block(st, &mut i, &mut i_new, kept, rs);
        // The slot-local statements: an old slot's releases of this step (the part of
        // [`activate`](super::release::activate) it left here: the count restarts from
        // 0, then each release adds its quanta and its transmitter, §4.1), the cleft
        // ([`transmitter`], exponential branch), a re-activated synapse's own r taken
        // back from its hand-off value (§5.4; the pool's part follows in slot order
        // below), and each receptor's lane.
        let mut m = 0;
        for (k, (slot, r_slot)) in st.out[kept..kept + nb]
            .iter_mut()
            .zip(st.out_r[kept * rs..(kept + nb) * rs].chunks_exact_mut(rs.max(1)))
            .enumerate()
        {
            lane0[k] = m;
            let syn = slot.syn as usize;
            let ty = &types[net.syn_type(syn)];
            if slot.fresh == ACTIVE {
                add_hits(slot, hits, &mut h, ty.delta_t_mm);
            }
            let t_now = slot.cleft_mm;
            let t_mm = t_now * ty.clear_half;
            let t_next = t_now * ty.clear_full;
            let cleared = t_next < ty.clear_threshold_mm;
            slot.cleft_mm = if cleared { 0.0 } else { t_next };
            cleared_blk[k] = cleared;
            entry_blk[k] = (net.syn_post[syn] as usize - st.base) * nr + ty.receptor_first;
            let w = net.syn_weight[syn];
            let prev = slot.fresh;
            let taken_back = prev != ACTIVE && prev != NO_HANDOFF;
            let hs = (syn - st.syn_base) * handoff_stride;
            for (j, rc) in recs[ty.receptor_first..ty.receptor_first + ty.n_receptors]
                .iter()
                .enumerate()
            {
                if taken_back {
                    let tab = &tables[rc.tab_beta as usize];
                    r_slot[2 * j] = st.handoff_r[hs + j] * pow_decay(tab, t - prev - 1);
                }
                a_lane[m] = rc.alpha * t_mm;
                beta_lane[m] = rc.beta;
                r_lane[m] = r_slot[2 * j];
                gw_lane[m] = rc.g_max_ns * w;
                m += 1;
            }
        }
        lane0[nb] = m;
        // Over all lanes: k = αT + β, r_inf = αT/k, e^{-k·dt}, then
        // r ← r_inf + (r - r_inf)·e^{-k·dt} (§5.1) and g = ḡ·w·r.
        for (a, beta) in a_lane[..m].iter_mut().zip(&mut beta_lane[..m]) {
            let kk = *a + *beta;
            *beta = -kk * dt;
            *a /= kk;
        }
        exp_sw_slice(&mut beta_lane[..m]);
        let mut bad = false;
        for (((r, gw), r_inf), d) in r_lane[..m]
            .iter_mut()
            .zip(&mut gw_lane[..m])
            .zip(&a_lane[..m])
            .zip(&beta_lane[..m])
        {
            *r = relax(*r_inf, *r, *d);
            *gw *= *r;
            bad |= !gw.is_finite();
        }
        // Each slot's sums, in slot order: the take-back from the pool, then the active
        // conductance or the hand-off; then the slot stays or leaves.
        for kb in 0..nb {
            let slot = &mut st.out[kept + kb];
            let syn = slot.syn as usize;
            let entry = entry_blk[kb];
            let hs = (syn - st.syn_base) * handoff_stride;
            let lanes = lane0[kb]..lane0[kb + 1];
            let prev = slot.fresh;
            if prev != ACTIVE {
                if prev != NO_HANDOFF {
                    let first = types[net.syn_type(syn)].receptor_first;
                    let w = net.syn_weight[syn];
                    let held = t - prev;
                    for j in 0..lanes.len() {
                        let rc = &recs[first + j];
                        let r_h = st.handoff_r[hs + j];
                        let tab = &tables[rc.tab_beta as usize];
                        let pool = &mut st.g_pool_ns[entry + j];
                        *pool = (*pool - rc.g_max_ns * w * r_h * pow_decay(tab, held)).max(0.0);
                    }
                }
                slot.fresh = ACTIVE;
            }
            let g = &gw_lane[lanes.clone()];
            if bad && non_finite.is_none() && g.iter().any(|x| !x.is_finite()) {
                *non_finite = Some((syn as u32, "receptor conductance g_ns", true));
            }
            let done = cleared_blk[kb];
            let r_slot = &mut st.out_r[(kept + kb) * rs..(kept + kb + 1) * rs];
            for (j, (&gj, &r)) in g.iter().zip(&r_lane[lanes]).enumerate() {
                r_slot[2 * j] = r;
                if done {
                    // Hand-off: from now on dr/dt = -βr is linear and lives in the pool (§5.4).
                    st.g_pool_ns[entry + j] += gj;
                    st.handoff_r[hs + j] = r;
                } else {
                    acc.add(st.g_active_ns, entry + j, gj);
                }
            }
            if done {
                st.handoff_step[syn - st.syn_base] =
                    if handoff_stride > 0 { t } else { NO_HANDOFF };
            }
        }
        kept = drop_done(st, kept, &cleared_blk[..nb], rs);
    }
    acc.store(st.g_active_ns);
    assert_eq!(
        h,
        hits.len(),
        "every release at an active synapse has its slot"
    );
    kept
}

/// Synapse types [`cleft_one`] takes: its per-type tables are this long, so a
/// lane's type indexes them without a bounds check.
const ONE_TYPES: usize = 16;
const _: () = assert!(
    BLOCK <= 64,
    "one_lanes returns a block's cleared lanes as the bits of a u64"
);

/// The constants of the synapse types for [`cleft_one`], one table per constant
/// (one kinetic receptor per type: its α, β, ḡ and β's power table), with one row per
/// projection (a synapse's row is its projection, one load) when there are at most
/// [`ONE_TYPES`] projections, else one per type (a synapse's row is its projection's type).
#[derive(Default)]
struct OneTables {
    /// Rows are projections (else types).
    by_projection: bool,
    /// Rows in use.
    rows: usize,
    clear_half: [f32; ONE_TYPES],
    clear_full: [f32; ONE_TYPES],
    clear_threshold_mm: [f32; ONE_TYPES],
    delta_t_mm: [f32; ONE_TYPES],
    alpha: [f32; ONE_TYPES],
    beta: [f32; ONE_TYPES],
    g_max_ns: [f32; ONE_TYPES],
    receptor_first: [u32; ONE_TYPES],
    tab_beta: [usize; ONE_TYPES],
}

impl OneTables {
    /// The tables of `model` and `net`, whose types each have one kinetic receptor and
    /// number at most [`ONE_TYPES`].
    fn of(model: &Model, net: &Network) -> OneTables {
        let by_projection = net.projections.len() <= ONE_TYPES;
        let rows = if by_projection {
            net.projections.len()
        } else {
            model.syn_types.len()
        };
        let mut tb = OneTables {
            by_projection,
            rows,
            ..OneTables::default()
        };
        for k in 0..rows {
            let ty = if by_projection {
                net.projections[k].syn_type
            } else {
                k
            };
            let s = &model.syn_types[ty];
            let rc = &model.gpu_receptors[s.gpu.receptor_first as usize];
            tb.clear_half[k] = s.gpu.clear_half;
            tb.clear_full[k] = s.gpu.clear_full;
            tb.clear_threshold_mm[k] = s.gpu.clear_threshold_mm;
            tb.delta_t_mm[k] = s.gpu.delta_t_mm;
            tb.alpha[k] = rc.alpha;
            tb.beta[k] = rc.beta;
            tb.g_max_ns[k] = rc.g_max_ns;
            tb.receptor_first[k] = s.gpu.receptor_first;
            tb.tab_beta[k] = rc.tab_beta as usize;
        }
        tb
    }

    /// The row of synapse `syn`.
    #[inline(always)]
    fn row(&self, net: &Network, syn: usize) -> usize {
        if self.by_projection {
            net.syn_proj[syn] as usize
        } else {
            net.syn_type(syn)
        }
    }

    /// Synapse `syn`'s constants beside the pool ([`one_constants`]): its (neuron,
    /// receptor) entry times 16 plus its row, and ḡ·w (nS; the product
    /// [`cleft_one`] formed from the synapse arrays each step before, the same
    /// bits). `nr` is the number of receptors.
    #[inline(always)]
    fn constants(&self, net: &Network, nr: u32, syn: usize) -> (u32, f32) {
        let row = self.row(net, syn) % ONE_TYPES;
        let entry = net.syn_post[syn] * nr + self.receptor_first[row];
        (
            entry * ONE_TYPES as u32 + row as u32,
            net.syn_weight[syn] * self.g_max_ns[row],
        )
    }
}

/// The lanes of a block of [`cleft_one`] that [`one_lanes`] reads and writes.
struct OneLanes<'a> {
    /// The synapse's (neuron, receptor) entry times [`ONE_TYPES`] plus its row of
    /// [`OneTables`] (its projection or type), as kept beside the pool.
    key: &'a [u32; BLOCK],
    /// Transmitter, mM: before the step, then after it.
    t_mm: &'a mut [f32; BLOCK],
    /// The (neuron, receptor) entry in the range.
    entry: &'a mut [u32; BLOCK],
    /// αT, then r_inf.
    a: &'a mut [f32; BLOCK],
    /// The exponent -(αT + β)·dt.
    d: &'a mut [f32; BLOCK],
}

/// The slot-local statements of [`cleft_one`] over lanes `0..nb` of `l`: the
/// cleft ([`transmitter`], exponential branch), then αT, k = αT + β, the exponent -k·dt,
/// r_inf = αT/k and the entry in the range (whose first entry is `base`), each row's
/// constants from `tb`. Returns the lanes whose cleft cleared, bit k for lane k.
#[inline(always)]
fn one_lanes(tb: &OneTables, dt: f32, base: u32, nb: usize, l: &mut OneLanes<'_>) -> u64 {
    let mut done = 0u64;
    for k in 0..nb {
        let ty = l.key[k] as usize % ONE_TYPES;
        let t_now = l.t_mm[k];
        let t_mm = t_now * tb.clear_half[ty];
        let t_next = t_now * tb.clear_full[ty];
        let cleared = t_next < tb.clear_threshold_mm[ty];
        l.t_mm[k] = if cleared { 0.0 } else { t_next };
        done |= (cleared as u64) << k;
        let a = tb.alpha[ty] * t_mm;
        let kk = a + tb.beta[ty];
        l.d[k] = -kk * dt;
        l.a[k] = a / kk;
        l.entry[k] = l.key[k] / ONE_TYPES as u32 - base;
    }
    done
}

/// [`one_lanes`] eight lanes at a time, for at most eight rows: each constant's rows are
/// one register, from which `vpermps` gives every lane its own row's. The same
/// operations in the same order, so the same bits (tested); lanes from `nb` up to the
/// next multiple of eight are computed too (from stale values) and ignored.
///
/// # Safety
/// The CPU must have AVX2, and every lane's row must be below eight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn one_lanes_avx2(
    tb: &OneTables,
    dt: f32,
    base: u32,
    nb: usize,
    l: &mut OneLanes<'_>,
) -> u64 {
    use std::arch::x86_64::*;
    const _: () = assert!(BLOCK.is_multiple_of(8) && BLOCK <= 64 && ONE_TYPES == 16);
    // SAFETY (loads and stores): every table holds at least eight 4-byte entries, and every
    // lane array BLOCK, a multiple of eight, so lanes o..o + 8 lie inside.
    let (half, full, thr, alpha, beta) = unsafe {
        (
            _mm256_loadu_ps(tb.clear_half.as_ptr()),
            _mm256_loadu_ps(tb.clear_full.as_ptr()),
            _mm256_loadu_ps(tb.clear_threshold_mm.as_ptr()),
            _mm256_loadu_ps(tb.alpha.as_ptr()),
            _mm256_loadu_ps(tb.beta.as_ptr()),
        )
    };
    let (v_dt, sign) = (_mm256_set1_ps(dt), _mm256_set1_ps(-0.0));
    let (v_base, low) = (_mm256_set1_epi32(base as i32), _mm256_set1_epi32(15));
    let mut done = 0u64;
    for o in (0..nb).step_by(8) {
        let (key, t_now) = unsafe {
            (
                _mm256_loadu_si256(l.key.as_ptr().add(o).cast()),
                _mm256_loadu_ps(l.t_mm.as_ptr().add(o)),
            )
        };
        // The row is the key's low four bits (ONE_TYPES = 16), the entry the rest.
        let ty = _mm256_and_si256(key, low);
        let t_mm = _mm256_mul_ps(t_now, _mm256_permutevar8x32_ps(half, ty));
        let t_next = _mm256_mul_ps(t_now, _mm256_permutevar8x32_ps(full, ty));
        let cleared = _mm256_cmp_ps::<_CMP_LT_OQ>(t_next, _mm256_permutevar8x32_ps(thr, ty));
        done |= (_mm256_movemask_ps(cleared) as u64) << o;
        let a = _mm256_mul_ps(_mm256_permutevar8x32_ps(alpha, ty), t_mm);
        let kk = _mm256_add_ps(a, _mm256_permutevar8x32_ps(beta, ty));
        let d = _mm256_mul_ps(_mm256_xor_ps(kk, sign), v_dt);
        let entry = _mm256_sub_epi32(_mm256_srli_epi32::<4>(key), v_base);
        unsafe {
            _mm256_storeu_ps(
                l.t_mm.as_mut_ptr().add(o),
                _mm256_andnot_ps(cleared, t_next),
            );
            _mm256_storeu_ps(l.d.as_mut_ptr().add(o), d);
            _mm256_storeu_ps(l.a.as_mut_ptr().add(o), _mm256_div_ps(a, kk));
            _mm256_storeu_si256(l.entry.as_mut_ptr().add(o).cast(), entry);
        }
    }
    if nb < 64 {
        done &= (1u64 << nb) - 1;
    }
    done
}

/// What [`cleft_one`] needs of a slot this step activated: its constants beside
/// the pool ([`OneTables::constants`]) and, for a synapse re-activated after a hand-off
/// (§5.4), its own r taken back from the hand-off value and the amount the take-back
/// removes from the pool.
struct FreshSlot {
    key: u32,
    gw_ns: f32,
    take: bool,
    r: f32,
    sub_ns: f32,
}

impl FreshSlot {
    /// The constants and take-back of `slot`, a slot of `st.new`, at step `t`.
    #[expect(clippy::too_many_arguments, reason = "the kernel's context, unpacked")]
    #[inline(always)]
    fn of(
        tb: &OneTables,
        net: &Network,
        nr: u32,
        tables: &[PowTable],
        t: u32,
        handoff_stride: usize,
        st: &CleftPart<'_>,
        slot: &Slot,
    ) -> FreshSlot {
        let (key, gw_ns) = tb.constants(net, nr, slot.syn as usize);
        let prev = slot.fresh;
        if prev == NO_HANDOFF {
            return FreshSlot {
                key,
                gw_ns,
                take: false,
                r: 0.0,
                sub_ns: 0.0,
            };
        }
        let tab = &tables[tb.tab_beta[key as usize % ONE_TYPES]];
        let r_h = st.handoff_r[(slot.syn as usize - st.syn_base) * handoff_stride];
        FreshSlot {
            key,
            gw_ns,
            take: true,
            r: r_h * pow_decay(tab, t - prev - 1),
            // ḡ·w·r_h·e^{-β(t - t_h)}, ḡ·w the kept product.
            sub_ns: gw_ns * r_h * pow_decay(tab, t - prev),
        }
    }
}

avx2_or_baseline! {
    /// [`cleft_kinetic`] for a [`one_form`] model (the like-for-like network), over the
    /// pool as the CPU backend keeps it for that form: one array per field
    /// (`CleftPart::old_syn`, `old_t_mm`, `old_r`, `old_key`, `old_gw_ns`, and the same
    /// for `out`) instead of slot records, so that each block moves
    /// and computes in lanes. The same statements on the same values with the same sums
    /// in the same order as [`cleft_kinetic`], so the same bits (tested).
    pub fn cleft_one(
        model: &Model,
        net: &Network,
        t: u32,
        handoff_stride: usize,
        st: &mut CleftPart<'_>,
        non_finite: &mut crate::state::NonFinite,
    ) -> usize => cleft_one_body
}

/// Lanes of a block of [`cleft_one`]: room for a whole [`BLOCK`] copied in after the
/// block's last slot (a copy of fixed size; the lanes past the block are then ignored).
const LANES: usize = 2 * BLOCK;

/// The bits of `v`'s floats (the same memory, as `u32`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bits_of(v: &[f32; LANES]) -> &[u32; LANES] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is a
    // valid u32.
    unsafe { &*(v as *const [f32; LANES]).cast::<[u32; LANES]>() }
}

/// The bits of `v`'s floats, writable (every u32 written is a valid f32).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bits_of_mut(v: &mut [f32]) -> &mut [u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is
    // valid for both.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u32>(), v.len()) }
}

/// For each eight-bit mask, the lanes whose bit is set, in order (then lane 0): the
/// `vpermd` indices that pack them to the front.
#[cfg(target_arch = "x86_64")]
const PACK: [[u32; 8]; 256] = {
    let mut t = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut n, mut k) = (0, 0);
        while k < 8 {
            if m >> k & 1 == 1 {
                t[m][n] = k as u32;
                n += 1;
            }
            k += 1;
        }
        m += 1;
    }
    t
};

/// Writes lanes `0..nb` of each of `lanes` whose bit is set in `keep` to the front of the
/// matching `outs`, in order, eight lanes at a time (a permute by [`PACK`] and one store
/// of eight; the elements after the packed ones are changed: the caller's later writes
/// cover them). Returns how many.
///
/// # Safety
/// The CPU must have AVX2, and every out must hold at least `BLOCK + 8` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn pack_lanes_avx2(
    keep: u64,
    nb: usize,
    lanes: [&[u32; LANES]; 5],
    mut outs: [&mut [u32]; 5],
) -> usize {
    use std::arch::x86_64::*;
    debug_assert!(nb <= BLOCK && outs.iter().all(|o| o.len() >= BLOCK + 8));
    let mut at = 0;
    for o in (0..nb).step_by(8) {
        let m = (keep >> o & 0xff) as usize;
        // SAFETY: PACK's rows are eight u32; lanes o..o + 8 lie inside LANES.
        let idx = unsafe { _mm256_loadu_si256(PACK[m].as_ptr().cast()) };
        for (lane, out) in lanes.iter().zip(outs.iter_mut()) {
            // SAFETY: o + 8 <= BLOCK + 8 <= LANES; at + 8 <= BLOCK + 8 <= out.len().
            unsafe {
                let v = _mm256_loadu_si256(lane.as_ptr().add(o).cast());
                let packed = _mm256_permutevar8x32_epi32(v, idx);
                _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), packed);
            }
        }
        at += m.count_ones() as usize;
    }
    at
}

/// The first [`BLOCK`] elements of `v`, as an array.
#[inline(always)]
fn block_of<T>(v: &[T; LANES]) -> &[T; BLOCK] {
    v[..BLOCK].try_into().expect("LANES holds a BLOCK")
}

/// The first [`BLOCK`] elements of `v`, as an array.
#[inline(always)]
fn block_of_mut<T>(v: &mut [T; LANES]) -> &mut [T; BLOCK] {
    (&mut v[..BLOCK]).try_into().expect("LANES holds a BLOCK")
}

/// The body of [`cleft_one`]. Each block of at most [`BLOCK`] slots in ascending synapse
/// id is gathered into lanes: runs of old slots copied from the pool's arrays, the slots
/// this step activated (`st.new`) between them, with their constants and take-backs
/// gathered before the blocks ([`FreshSlot`]). Then an old slot's releases of this step
/// (rare), the cleft, the binding, the relaxation and ḡ·w·r over all lanes at once, each
/// row's constants from small tables; the pool's take-backs and hand-offs (rare) in slot
/// order by their lanes; the active conductances summed in slot order; the cleared slots
/// dropped from the lanes, and the rest copied out after the slots kept so far.
#[inline(always)]
fn cleft_one_body(
    model: &Model,
    net: &Network,
    t: u32,
    handoff_stride: usize,
    st: &mut CleftPart<'_>,
    non_finite: &mut crate::state::NonFinite,
) -> usize {
    debug_assert!(one_form(model));
    let n_old = st.old_syn.len();
    let room = st.out_syn.len();
    assert!(
        [
            st.old_t_mm.len(),
            st.old_r.len(),
            st.old_key.len(),
            st.old_gw_ns.len()
        ]
        .iter()
        .all(|&n| n == n_old)
            && [
                st.out_t_mm.len(),
                st.out_r.len(),
                st.out_key.len(),
                st.out_gw_ns.len(),
            ]
            .iter()
            .all(|&n| n == room)
            && room >= n_old + st.new.len(),
        "the one-receptor form's pool arrays have one element per slot"
    );
    let dt = model.dt_ms as f32;
    let nr = model.receptors.len() as u32;
    let tables: &[PowTable] = &model.pow_tables;
    let tb = OneTables::of(model, net);
    // The range's first (neuron, receptor) entry (entries fit a u32: `one_form`).
    let base = st.base as u32 * nr;
    #[cfg(target_arch = "x86_64")]
    let avx2 = tb.rows <= 8 && std::arch::is_x86_feature_detected!("avx2");
    // Block copies in AVX2 registers.
    #[cfg(target_arch = "x86_64")]
    let fast = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let fast = false;
    // Per lane (a slot of the block): synapse id, transmitter (then after the step), r,
    // constants' key ([`one_constants`]), ḡ·w; entry in the
    // range, g, αT (then r_inf), the exponent (then the decay); a take-back's amount.
    let mut syn_lane = [0u32; LANES];
    let mut t_lane = [0f32; LANES];
    let mut r_lane = [0f32; LANES];
    let mut key_lane = [0u32; LANES];
    let mut gw_lane = [0f32; LANES];
    let mut entry_lane = [0u32; BLOCK];
    let mut g_lane = [0f32; BLOCK];
    let mut a_lane = [0f32; BLOCK];
    let mut d_lane = [0f32; BLOCK];
    let mut sub_lane = [0f32; BLOCK];
    // The lanes of the block's slots that this step activated, and their index in `new`.
    let mut fresh_at = [(0u8, 0u32); BLOCK];
    // The active conductance being summed ([`ActiveSum`]).
    let mut acc = ActiveSum::default();
    let (new, hits) = (st.new, st.hits);
    // The slots this step activated: their constants and take-backs, gathered first in
    // one pass of independent reads (each is a few scattered loads from the synapse
    // arrays, which overlap here instead of stalling the block that meets the slot).
    let mut fresh = Vec::with_capacity(new.len());
    for (j, slot) in new.iter().enumerate() {
        if let Some(ahead) = new.get(j + FRESH_AHEAD) {
            let s = ahead.syn as usize;
            prefetch(&net.syn_proj[s]);
            prefetch(&net.syn_post[s]);
            prefetch(&net.syn_weight[s]);
            if let Some(r_h) = st.handoff_r.get((s - st.syn_base) * handoff_stride) {
                prefetch(r_h);
            }
        }
        fresh.push(FreshSlot::of(
            &tb,
            net,
            nr,
            tables,
            t,
            handoff_stride,
            st,
            slot,
        ));
    }
    let (mut i, mut i_new, mut h) = (0, 0, 0);
    let mut next_hit = hits.first().map_or(u32::MAX, |x| x.0);
    let mut kept = 0;
    while i < n_old || i_new < new.len() {
        // The next BLOCK synapses in ascending id: a new slot, or the old ones below the
        // next new one copied as one run into each field's lanes.
        let mut nb = 0;
        let mut n_fresh = 0;
        // The lines of the old slots two blocks on.
        let ahead = i + 2 * BLOCK;
        if ahead + BLOCK <= n_old {
            for l in (0..BLOCK).step_by(16) {
                prefetch(&st.old_syn[ahead + l]);
                prefetch(&st.old_t_mm[ahead + l]);
                prefetch(&st.old_r[ahead + l]);
                prefetch(&st.old_key[ahead + l]);
                prefetch(&st.old_gw_ns[ahead + l]);
            }
        }
        while nb < BLOCK && (i < n_old || i_new < new.len()) {
            if i_new < new.len() && (i == n_old || new[i_new].syn < st.old_syn[i]) {
                let slot = &new[i_new];
                syn_lane[nb] = slot.syn;
                t_lane[nb] = slot.cleft_mm;
                fresh_at[n_fresh] = (nb as u8, i_new as u32);
                n_fresh += 1;
                i_new += 1;
                nb += 1;
            } else {
                let room = (BLOCK - nb).min(n_old - i);
                let run = match new.get(i_new) {
                    Some(next) if st.old_syn[i + room - 1] > next.syn => {
                        st.old_syn[i..i + room].partition_point(|&s| s < next.syn)
                    }
                    _ => room,
                };
                copy_run4(fast, &mut syn_lane[nb..], &st.old_syn[i..], run);
                copy_run4(fast, &mut t_lane[nb..], &st.old_t_mm[i..], run);
                copy_run4(fast, &mut r_lane[nb..], &st.old_r[i..], run);
                copy_run4(fast, &mut key_lane[nb..], &st.old_key[i..], run);
                copy_run4(fast, &mut gw_lane[nb..], &st.old_gw_ns[i..], run);
                i += run;
                nb += run;
            }
        }
        // An old slot's releases of this step (rare): each adds its transmitter (§4.1, as
        // [`add_hits`]; the counts are formed apart, [`OnePool::set_released`]).
        let last = syn_lane[nb - 1];
        while next_hit <= last {
            let k = syn_lane[..nb].partition_point(|&s| s < next_hit);
            assert_eq!(
                syn_lane[k], next_hit,
                "every release at an active synapse has its slot"
            );
            let delta_t_mm = tb.delta_t_mm[key_lane[k] as usize % ONE_TYPES];
            while h < hits.len() && hits[h].0 == next_hit {
                let q = hits[h].1;
                t_lane[k] += q * delta_t_mm;
                h += 1;
            }
            next_hit = hits.get(h).map_or(u32::MAX, |x| x.0);
        }
        // A slot this step activated: its constants, its r
        // from 0 or, re-activated, taken back from its hand-off value, and the amount its
        // take-back removes from the pool (§5.4; removed in slot order below).
        let mut take = 0u64;
        for &(k, j) in &fresh_at[..n_fresh] {
            let (k, j) = (k as usize, j as usize);
            let c = &fresh[j];
            key_lane[k] = c.key;
            gw_lane[k] = c.gw_ns;
            r_lane[k] = 0.0;
            if c.take {
                r_lane[k] = c.r;
                sub_lane[k] = c.sub_ns;
                take |= 1 << k;
            }
        }
        // Over all lanes: the cleft ([`transmitter`], exponential branch), k = αT + β,
        // r_inf = αT/k, the exponent -k·dt and the entry in the range ([`one_lanes`],
        // eight lanes at a time in AVX2 registers with at most eight rows), then
        // e^{-k·dt}, r ← r_inf + (r - r_inf)·e^{-k·dt} (§5.1) and g = ḡ·w·r.
        let mut lanes = OneLanes {
            key: block_of(&key_lane),
            t_mm: block_of_mut(&mut t_lane),
            entry: &mut entry_lane,
            a: &mut a_lane,
            d: &mut d_lane,
        };
        #[cfg(target_arch = "x86_64")]
        let done = if avx2 {
            // SAFETY: the CPU has AVX2 and the rows are below eight (`avx2`).
            unsafe { one_lanes_avx2(&tb, dt, base, nb, &mut lanes) }
        } else {
            one_lanes(&tb, dt, base, nb, &mut lanes)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = one_lanes(&tb, dt, base, nb, &mut lanes);
        exp_sw_slice(&mut d_lane[..nb]);
        let mut bad = false;
        for k in 0..nb {
            let r = relax(a_lane[k], r_lane[k], d_lane[k]);
            r_lane[k] = r;
            g_lane[k] = gw_lane[k] * r;
            bad |= !g_lane[k].is_finite();
        }
        if bad && non_finite.is_none() {
            if let Some(k) = g_lane[..nb].iter().position(|g| !g.is_finite()) {
                *non_finite = Some((syn_lane[k], "receptor conductance g_ns", true));
            }
        }
        // The pool's sums, in slot order: a re-activated slot's take-back, a cleared
        // slot's hand-off (both rare, so only their lanes are visited).
        let mut pool_lanes = take | done;
        while pool_lanes != 0 {
            let k = pool_lanes.trailing_zeros() as usize;
            pool_lanes &= pool_lanes - 1;
            let entry = entry_lane[k] as usize;
            if take >> k & 1 != 0 {
                let pool = &mut st.g_pool_ns[entry];
                *pool = (*pool - sub_lane[k]).max(0.0);
            }
            if done >> k & 1 != 0 {
                // Hand-off: from now on dr/dt = -βr is linear and lives in the pool (§5.4).
                let local = syn_lane[k] as usize - st.syn_base;
                st.g_pool_ns[entry] += g_lane[k];
                st.handoff_r[local * handoff_stride] = r_lane[k];
                st.handoff_step[local] = if handoff_stride > 0 { t } else { NO_HANDOFF };
                // Its active conductance is nothing: -0, which leaves every sum's bits
                // (x + -0 = x for every x, +0 and -0 included).
                g_lane[k] = -0.0;
            }
        }
        // The active conductances, in slot order (the sums are separate from the pool's).
        acc.add_all(st.g_active_ns, &entry_lane[..nb], &g_lane[..nb]);
        // The cleared slots leave: the rest go out after the slots kept so far, packed
        // eight lanes at a time by AVX2 permutes where the room allows; else those
        // after the first cleared one move down in the lanes (whether kept or not: one
        // branch-free loop) before they go out.
        #[cfg(target_arch = "x86_64")]
        if done != 0 && avx2 && st.out_syn.len() - kept >= BLOCK + 8 {
            let keep = !done & (u64::MAX >> (64 - nb));
            let lanes: [&[u32; LANES]; 5] = [
                &syn_lane,
                bits_of(&t_lane),
                bits_of(&r_lane),
                &key_lane,
                bits_of(&gw_lane),
            ];
            let outs: [&mut [u32]; 5] = [
                &mut st.out_syn[kept..],
                bits_of_mut(&mut st.out_t_mm[kept..]),
                bits_of_mut(&mut st.out_r[kept..]),
                &mut st.out_key[kept..],
                bits_of_mut(&mut st.out_gw_ns[kept..]),
            ];
            // SAFETY: the CPU has AVX2 (`avx2`); every out has room for BLOCK + 8.
            kept += unsafe { pack_lanes_avx2(keep, nb, lanes, outs) };
            continue;
        }
        let mut w = nb;
        if done != 0 {
            w = done.trailing_zeros() as usize;
            for k in w + 1..nb {
                syn_lane[w] = syn_lane[k];
                t_lane[w] = t_lane[k];
                r_lane[w] = r_lane[k];
                key_lane[w] = key_lane[k];
                gw_lane[w] = gw_lane[k];
                w += (done >> k & 1 == 0) as usize;
            }
        }
        copy_run4(fast, &mut st.out_syn[kept..], &syn_lane, w);
        copy_run4(fast, &mut st.out_t_mm[kept..], &t_lane, w);
        copy_run4(fast, &mut st.out_r[kept..], &r_lane, w);
        copy_run4(fast, &mut st.out_key[kept..], &key_lane, w);
        copy_run4(fast, &mut st.out_gw_ns[kept..], &gw_lane, w);
        kept += w;
    }
    acc.store(st.g_active_ns);
    assert_eq!(
        h,
        hits.len(),
        "every release at an active synapse has its slot"
    );
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool kept as runs with gaps between them ([`OnePool::segs`]) has the slots,
    /// records and releases of the same pool in one run, and [`OnePool::compact`] makes
    /// it that pool.
    #[test]
    fn a_pool_in_runs_is_the_pool_in_one_run() {
        let one_run = OnePool {
            syn: vec![3, 5, 8, 13, 21],
            t_mm: vec![0.5, 0.25, 1.0, 2.0, 0.125],
            released: vec![(5, 2.0), (21, 1.0)],
            r: vec![0.1, 0.2, 0.3, 0.4, 0.5],
            key: vec![16, 17, 32, 33, 48],
            gw_ns: vec![1.0, 2.0, 3.0, 4.0, 5.0],
            segs: Vec::new(),
        };
        // Runs 0..2 and 4..7 (slots 2 and 3 of the arrays are left over from before).
        let runs = OnePool {
            syn: vec![3, 5, 99, 98, 8, 13, 21],
            t_mm: vec![0.5, 0.25, 9.0, 9.0, 1.0, 2.0, 0.125],
            released: one_run.released.clone(),
            r: vec![0.1, 0.2, 9.0, 9.0, 0.3, 0.4, 0.5],
            key: vec![16, 17, 0, 0, 32, 33, 48],
            gw_ns: vec![1.0, 2.0, 9.0, 9.0, 3.0, 4.0, 5.0],
            segs: vec![(0, 2), (4, 3)],
        };
        assert_eq!(runs.len(), 5);
        let records = |p: &OnePool| {
            let mut a = ActivePool {
                stride: 1,
                ..ActivePool::default()
            };
            p.store(&mut a);
            a
        };
        assert_eq!(records(&runs), records(&one_run));
        for syn in [3, 5, 8, 13, 21, 98, 99, 4] {
            assert_eq!(
                runs.released_of(syn),
                one_run.released_of(syn),
                "synapse {syn}"
            );
        }
        let mut closed = runs.clone();
        closed.compact();
        assert!(closed.segs.is_empty());
        for (a, b) in [(&closed.syn, &one_run.syn), (&closed.key, &one_run.key)] {
            assert_eq!(a, b);
        }
        for (a, b) in [
            (&closed.t_mm, &one_run.t_mm),
            (&closed.r, &one_run.r),
            (&closed.gw_ns, &one_run.gw_ns),
        ] {
            assert_eq!(a, b);
        }
    }

    /// The AVX2 form of [`one_lanes`] leaves the bits of the scalar loop, for eight types
    /// of made-up constants and lanes from empty clefts through the clearing threshold (and
    /// on it) to several mM, in full and partial blocks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_lanes_leave_the_bits_of_one_lanes() {
        assert!(
            std::arch::is_x86_feature_detected!("avx2"),
            "this test needs a CPU with AVX2 (x86-64-v3), which cleft_kinetic then uses"
        );
        // xorshift32: made-up values, the same every run.
        let mut x = 0x9e37_79b9u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as f32 / u32::MAX as f32
        };
        let mut tb = OneTables::default();
        for k in 0..8 {
            tb.clear_half[k] = 0.80 + 0.19 * next();
            tb.clear_full[k] = tb.clear_half[k] * tb.clear_half[k];
            tb.clear_threshold_mm[k] = 1e-4 + 1e-3 * next();
            tb.alpha[k] = 0.07 + 5.0 * next();
            tb.beta[k] = 0.001 + 0.7 * next();
            tb.g_max_ns[k] = 0.1 + 3.0 * next();
            tb.receptor_first[k] = k as u32;
        }
        // Type 7 clears at exactly 0.5 mM·e^{-k·dt}: lanes of 0.5 mM sit on the threshold.
        tb.clear_threshold_mm[7] = 0.5 * tb.clear_full[7];
        let (base, dt) = (8000u32, 0.1f32);
        for round in 0..200 {
            let nb = if round % 2 == 0 {
                BLOCK
            } else {
                1 + round % BLOCK
            };
            let (mut key, mut t) = ([0u32; BLOCK], [0f32; BLOCK]);
            for k in 0..BLOCK {
                let ty = (next() * 8.0) as u32 % 8;
                let th = tb.clear_threshold_mm[ty as usize] / tb.clear_full[ty as usize];
                t[k] = match k % 4 {
                    0 => 0.0,
                    1 if ty == 7 => 0.5,
                    1 => th * (0.999 + 0.002 * next()),
                    2 => 3.0 * next(),
                    _ => th * 100.0 * next(),
                };
                // An entry at or after the range's first, times 16, plus the row.
                key[k] = (base + (next() * 40000.0) as u32) * ONE_TYPES as u32 + ty;
            }
            let run = |avx: bool| {
                let mut t = t;
                let (mut entry, mut a, mut d) = ([0u32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
                let mut l = OneLanes {
                    key: &key,
                    t_mm: &mut t,
                    entry: &mut entry,
                    a: &mut a,
                    d: &mut d,
                };
                let done = if avx {
                    // SAFETY: AVX2 is present (asserted above); rows are below eight.
                    unsafe { one_lanes_avx2(&tb, dt, base, nb, &mut l) }
                } else {
                    one_lanes(&tb, dt, base, nb, &mut l)
                };
                let bits =
                    |v: &[f32; BLOCK]| v[..nb].iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                (done, bits(&t), entry[..nb].to_vec(), bits(&a), bits(&d))
            };
            let (scalar, avx) = (run(false), run(true));
            assert_eq!(scalar, avx, "round {round}, {nb} lanes");
            assert!(round > 0 || scalar.0 != 0, "some lanes clear");
        }
    }
}
