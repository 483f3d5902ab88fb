//! The synapse part of the GPU device image (`layout::SynOffsets` describes its sections).
//!
//! On the CPU the active synapses are a compact pool sorted by synapse id, and the delay
//! rings are lists. Here every synapse has its slot of each variable the network uses (a
//! dense image, so no kernel ever moves state; [`SynFeatures`] says which variables),
//! the lists (arrivals, asynchronous fusions, the to-do list of synapses with events, the
//! active list) are appended to with atomics and never need an order: each entry is processed independently, and the only sums into
//! shared values, the per-neuron conductances, are formed by `gather` in ascending
//! synapse id, the CPU's order.
//!
//! The image of a chunk holds the incoming synapses of the chunk's neurons (a contiguous
//! id range, post-major order), indexed locally from `SynOffsets::syn_base`; random
//! streams, logs and reports use global ids. [`SynHost::pack`] and [`SynHost::unpack`]
//! convert between a chunk's image and the CPU's [`State`] (delay-ring rows as sets:
//! see [`State::canonical`]).

use super::cpu::spontaneous::SpontParams;
use crate::error::Error;
use crate::gpu::GpuContext;
use crate::layout::{neuron, queue, release, syn_f32, syn_u32, GpuPopulation, SynOffsets, ABSENT};
use crate::model::{Model, SynapseArrays};
use crate::network::Network;
use crate::state::{Slot, State, ACTIVE};
use std::ops::Range;

/// The optional sections of the synapse image a model needs (`layout::SynOffsets`): the
/// image is sized to the network's features, as the CPU state is ([`SynapseArrays`]).
#[derive(Debug, Clone, Copy)]
pub struct SynFeatures {
    /// The CPU's optional arrays (asynchronous release, reserve pool, hand-off state,
    /// active synapses).
    pub arrays: SynapseArrays,
    /// Some type has a terminal to advance (release other than static): t_last, sites,
    /// X_F, X_D.
    pub terminal: bool,
    /// Some type that makes synapses active has a pulse cleft.
    pub pulse: bool,
    /// Some type has miniature release.
    pub minis: bool,
    /// Most receptors of any type (the take-back and contribution stride).
    pub rec_stride: usize,
    /// Each synapse's quanta released since the last sample (`RingShape::released_sums`).
    pub released_sums: bool,
    /// Receptor state floats per active synapse (`Model::receptor_state_stride`).
    pub slot_stride: usize,
}

impl SynFeatures {
    /// The sections `model` needs in an image of `shape` (which says whether it keeps
    /// the `released` sums).
    pub fn of(model: &Model, shape: &RingShape) -> SynFeatures {
        let arrays = SynapseArrays::of(model);
        let types = &model.syn_types;
        SynFeatures {
            arrays,
            terminal: types.iter().any(|t| t.gpu.release != release::STATIC),
            pulse: types
                .iter()
                .any(|t| t.gpu.cleft_dependent != 0 && t.gpu.cleft_pulse == 1),
            minis: SpontParams::new(model).rate_max > 0.0,
            rec_stride: types
                .iter()
                .map(|t| t.gpu.n_receptors as usize)
                .max()
                .unwrap_or(0),
            slot_stride: if arrays.any_cleft {
                model.receptor_state_stride()
            } else {
                0
            },
            released_sums: shape.released_sums,
        }
    }

    /// True when section `s` of [`syn_u32`] is allocated.
    pub fn has_u(&self, s: u32) -> bool {
        use syn_u32::*;
        match s {
            T_LAST | SITES => self.terminal,
            COMMITTED => self.arrays.any_async,
            RESERVE | ENDO => self.arrays.any_reserve,
            HANDOFF_STEP => self.arrays.any_cleft,
            PULSE_LEFT => self.pulse,
            MINIS => self.minis,
            _ => false,
        }
    }

    /// True when scalar section `s` of [`syn_f32`] is allocated.
    pub fn has_f(&self, s: u32) -> bool {
        use syn_f32::*;
        match s {
            WEIGHT => true,
            RELEASED_ACC => self.released_sums,
            X_F | X_D => self.terminal,
            CLEFT_MM | RELEASED => self.arrays.any_cleft,
            PULSE_QUANTA => self.pulse,
            _ => false,
        }
    }

    /// Words per synapse of `syn_u32`.
    fn u_words(&self) -> u64 {
        (0..syn_u32::COUNT).filter(|&s| self.has_u(s)).count() as u64
    }

    /// Words per synapse of `syn_f32`: the scalars, the receptor and hand-off state, the
    /// take-backs (with kinetic receptors: the hand-off stride is then the receptors'
    /// stride) and the contributions.
    fn f_words(&self) -> u64 {
        let scalars = (0..syn_f32::COUNT).filter(|&s| self.has_f(s)).count();
        (scalars + self.slot_stride + 2 * self.arrays.handoff_stride + self.rec_stride) as u64
    }
}

/// The GPU's delay rings: the arrival pool has a block per step of the longest delay
/// (`layout::SynOffsets`: it holds at most the arrivals the sources' refractory periods
/// allow in flight, so it never overflows); the asynchronous ring a row per step of the
/// longest latency, with room for four times the mean number of fusions per row were
/// every asynchronous site in flight (at least 64, at most every asynchronous site: at
/// most 32 bytes per site). A row that fills up is detected after the batch; nothing is
/// dropped silently.
#[derive(Debug, Clone, Copy)]
pub struct RingShape {
    /// Blocks of the arrival pool (longest delay + 1).
    pub ring_len: u32,
    /// Asynchronous ring rows (longest latency + 1).
    pub async_len: u32,
    /// Entries per asynchronous row; None: from the sites of the chunk.
    pub async_cap: Option<u32>,
    /// The image keeps each synapse's quanta released since the last sample (a
    /// `released` probe is watched, `Backend::watch`).
    pub released_sums: bool,
}

impl RingShape {
    /// The rings of `net`.
    pub fn of(model: &Model, net: &Network) -> RingShape {
        let max_async = model
            .syn_types
            .iter()
            .map(|t| t.max_async_steps)
            .max()
            .unwrap_or(0);
        RingShape {
            ring_len: net.max_delay + 1,
            async_len: max_async + 1,
            async_cap: None,
            released_sums: false,
        }
    }

    /// Entries per asynchronous row for the synapses `syns`.
    pub fn async_cap(&self, model: &Model, net: &Network, syns: Range<usize>) -> u32 {
        self.cap_for(async_sites(model, net, syns))
    }

    /// Entries per asynchronous row for `sites` asynchronous sites: the set capacity, or
    /// four times the mean were every site in flight, at least 64, at most every site.
    pub fn cap_for(&self, sites: u64) -> u32 {
        if let Some(c) = self.async_cap {
            return c.max(1);
        }
        let per_row = (4 * sites).div_ceil(self.async_len as u64).max(64);
        per_row.min(sites).clamp(1, 1 << 24) as u32
    }
}

/// Σ N over the asynchronous synapses among `syns`: every committed site is in the
/// asynchronous ring once, so this bounds the entries in flight.
pub fn async_sites(model: &Model, net: &Network, syns: Range<usize>) -> u64 {
    syns.map(|s| {
        let g = &model.syn_types[net.syn_type(s)].gpu;
        if g.async_rho > 0.0 {
            g.n_sites as u64
        } else {
            0
        }
    })
    .sum()
}

/// The most spikes a neuron of population `pop` can fire in `window` consecutive steps:
/// its absolute refractory period (LIF, §6.1) or lock-out (HH) puts at least n_ref steps
/// between the steps of two spikes; Poisson and spike-time sources can fire in every step.
pub fn spikes_in(pop: &GpuPopulation, window: u64) -> u64 {
    match pop.model {
        neuron::LIF | neuron::HH => window.div_ceil(pop.n_ref as u64 + 1),
        _ => window,
    }
}

/// The pool's window: the steps whose blocks are in flight at once (the longest delay).
fn pool_window(net: &Network) -> u64 {
    net.max_delay as u64
}

/// Per neuron of the network, the arrivals at its incoming synapses that can be in the
/// arrival pool at once: for each incoming synapse, the spikes its source can fire in
/// the pool's window ([`spikes_in`]). A chunk's pool holds the sum over its neurons.
pub fn pool_per_neuron(model: &Model, net: &Network) -> Vec<u64> {
    let window = pool_window(net);
    let mut per = vec![0u64; net.n_neurons() as usize];
    for n in 0..net.n_neurons() as usize {
        let k = spikes_in(&model.pops[net.neuron_pop[n] as usize].gpu, window);
        for o in net.out_offsets[n]..net.out_offsets[n + 1] {
            per[net.syn_post[net.out_syn[o as usize] as usize] as usize] += k;
        }
    }
    per
}

/// The delay classes of synapses `syns`: their distinct delays, ascending.
pub fn delay_classes(net: &Network, syns: Range<usize>) -> Vec<u16> {
    let mut seen = vec![false; 1 << 16];
    for &d in &net.syn_delay[syns] {
        seen[d as usize] = true;
    }
    (0..1usize << 16)
        .filter(|&d| seen[d])
        .map(|d| d as u16)
        .collect()
}

/// Device bytes of the synapse image of `net` (with its queues and arrival pool), as one
/// chunk; `released_sums`: with the sums of a watched `released` probe.
pub fn device_bytes(model: &Model, net: &Network, released_sums: bool) -> u64 {
    if net.n_synapses() == 0 {
        // No synapse image is made.
        return 0;
    }
    let r = RingShape {
        released_sums,
        ..RingShape::of(model, net)
    };
    let ns = net.n_synapses() as u64;
    let nn = net.n_neurons() as u64;
    let cap = r.async_cap(model, net, 0..ns as usize) as u64;
    let classes = delay_classes(net, 0..ns as usize).len() as u64;
    let pool: u64 = pool_per_neuron(model, net).iter().sum();
    let feat = SynFeatures::of(model, &r);
    chunk_bytes(ns, nn, nn, &r, &feat, cap, classes, pool)
        .iter()
        .sum()
}

/// Bytes of each buffer of a chunk image with `ns` synapses, `classes` delay classes and
/// an arrival pool of `pool` entries, and `nn_all` neurons in the network: (static, u32
/// state, f32 state, flags, queues), for the chunk sizing. Each is at least one word (a
/// binding is never empty).
#[allow(clippy::too_many_arguments)]
pub fn chunk_bytes(
    ns: u64,
    nn_all: u64,
    neurons: u64,
    shape: &RingShape,
    feat: &SynFeatures,
    async_cap: u64,
    classes: u64,
    pool: u64,
) -> [u64; 5] {
    let nb = shape.ring_len as u64;
    let la = shape.async_len as u64;
    let active_lists = if feat.arrays.any_cleft { 2 * ns } else { 0 };
    let fuse = if feat.arrays.any_async { ns } else { 0 };
    let bit_sections = if feat.arrays.any_cleft { 6 } else { 4 };
    // seg_count, seg_start, block_size, cursor, prefix, class_delay, pool_head.
    let tables = 2 * nb * classes + nb + classes + classes + 1 + classes + 2;
    [
        4 * (ns + ns.div_ceil(2) + ns + nn_all + 1 + neurons + 1),
        4 * (feat.u_words() * ns).max(1),
        4 * (feat.f_words() * ns).max(1),
        4 * (fuse + bit_sections * ns.div_ceil(32) + 1),
        4 * (queue::ROW_COUNTS as u64
            + la
            + tables
            + pool.max(1)
            + 2 * la * async_cap
            + ns
            + active_lists),
    ]
}

/// Host copies of the synapse buffers of one chunk (the layout of the device image).
pub struct SynHost {
    /// Section offsets and queue sizes.
    pub off: SynOffsets,
    /// Static u32 sections.
    pub stat: Vec<u32>,
    /// Dynamic u32 sections.
    pub u: Vec<u32>,
    /// f32 sections.
    pub f: Vec<f32>,
    /// Claim stamps, fusion masks, spike flags, touched bits.
    pub flags: Vec<u32>,
    /// Queue header, rings and lists.
    pub queues: Vec<u32>,
}

/// The synapse buffers of one chunk on the device.
pub struct SynImage {
    /// Section offsets and queue sizes.
    pub off: SynOffsets,
    /// Global ids of the chunk's synapses.
    pub syns: Range<usize>,
    pub(crate) off_buf: wgpu::Buffer,
    pub(crate) stat_buf: wgpu::Buffer,
    pub(crate) u_buf: wgpu::Buffer,
    pub(crate) f_buf: wgpu::Buffer,
    pub(crate) flags_buf: wgpu::Buffer,
    pub(crate) queues_buf: wgpu::Buffer,
    pub(crate) dispatch_buf: wgpu::Buffer,
    sizes: [u64; 5],
}

/// The distinct keys of the projections, in projection order (index = counter slot).
pub fn projection_keys(net: &Network) -> Vec<(u16, u16, u16)> {
    let mut keys = Vec::new();
    for p in &net.projections {
        let k = (p.source as u16, p.target as u16, p.syn_type as u16);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// The incoming synapses of neurons `neurons` (global ids).
pub fn synapses_of(net: &Network, neurons: &Range<usize>) -> Range<usize> {
    net.in_offsets[neurons.start] as usize..net.in_offsets[neurons.end] as usize
}

/// Offsets and static section of the image of the incoming synapses of `neurons`.
fn offsets(
    model: &Model,
    net: &Network,
    st: &State,
    shape: &RingShape,
    neurons: &Range<usize>,
) -> (SynOffsets, Vec<u32>, Vec<u16>) {
    let syns = synapses_of(net, neurons);
    let (s0, ns) = (syns.start, syns.len());
    let nn = net.n_neurons() as usize;
    // Per synapse its type (low half) and the index of its projection key (high half;
    // no more keys than projections, which are numbered in 16 bits), then the delay
    // classes, two per word.
    let keys = projection_keys(net);
    let key_of_proj: Vec<u32> = (0..net.projections.len())
        .map(|p| {
            let pr = &net.projections[p];
            let k = (pr.source as u16, pr.target as u16, pr.syn_type as u16);
            keys.iter().position(|&x| x == k).unwrap_or(0) as u32
        })
        .collect();
    let mut stat: Vec<u32> = syns
        .clone()
        .map(|s| net.syn_type(s) as u32 | key_of_proj[net.syn_proj[s] as usize] << 16)
        .collect();
    let mut off = SynOffsets {
        syn_base: s0 as u32,
        syn_class: stat.len() as u32,
        ..SynOffsets::default()
    };
    let classes = delay_classes(net, syns.clone());
    let mut class_of = vec![0u32; 1 << 16];
    for (c, &d) in classes.iter().enumerate() {
        class_of[d as usize] = c as u32;
    }
    let mut packed = vec![0u32; ns.div_ceil(2)];
    for (i, &d) in net.syn_delay[syns.clone()].iter().enumerate() {
        packed[i / 2] |= class_of[d as usize] << (16 * (i % 2));
    }
    stat.extend_from_slice(&packed);
    // The outgoing synapses of every neuron of the network that land in this chunk, each
    // neuron's sorted by delay class (then id): `propagate` reserves the places of a
    // class's run with one atomic.
    off.out_offsets = stat.len() as u32;
    let mut out_syn = Vec::with_capacity(ns);
    stat.push(0);
    for n in 0..nn {
        let start = out_syn.len();
        for o in net.out_offsets[n]..net.out_offsets[n + 1] {
            let s = net.out_syn[o as usize] as usize;
            if syns.contains(&s) {
                out_syn.push((s - s0) as u32);
            }
        }
        if classes.len() > 1 {
            out_syn[start..]
                .sort_unstable_by_key(|&l| (class_of[net.syn_delay[s0 + l as usize] as usize], l));
        }
        stat.push(out_syn.len() as u32);
    }
    // The arrivals the chunk's synapses can have in flight at once; a state that did not
    // come from this network's dynamics may hold more than the refractory periods allow:
    // then the pool holds those (and `propagate` stops the run if it would overwrite one).
    let mut pool: u64 = pool_per_neuron(model, net)[neurons.clone()].iter().sum();
    let live = st
        .ring
        .iter()
        .flatten()
        .filter(|&&s| syns.contains(&(s as usize)))
        .count() as u64;
    pool = pool.max(live);
    off.out_syn = stat.len() as u32;
    stat.extend_from_slice(&out_syn);
    off.in_offsets = stat.len() as u32;
    stat.extend(
        net.in_offsets[neurons.start..=neurons.end]
            .iter()
            .map(|&o| o - s0 as u32),
    );
    let sp = SpontParams::new(model);
    off.sites_max = sp.sites_max;
    off.rate_max = sp.rate_max;
    off.ring_len = shape.ring_len;
    off.async_len = shape.async_len;
    off.async_cap = shape.async_cap(model, net, syns);
    off.handoff_stride = st.handoff_stride as u32;
    let feat = SynFeatures::of(model, shape);
    let n = ns as u32;
    let mut at = 0u32;
    for s in 0..syn_u32::COUNT {
        off.u_at[s as usize / 4][s as usize % 4] = if feat.has_u(s) {
            at += n;
            at - n
        } else {
            ABSENT
        };
    }
    let mut at = 0u32;
    for s in 0..8 {
        off.f_at[s as usize / 4][s as usize % 4] = if s < syn_f32::COUNT && feat.has_f(s) {
            at += n;
            at - n
        } else {
            ABSENT
        };
    }
    off.slot_stride = feat.slot_stride as u32;
    off.rec_stride = feat.rec_stride as u32;
    off.r = at;
    off.handoff_r = off.r + off.slot_stride * n;
    off.take = if feat.arrays.handoff_stride > 0 {
        off.handoff_r + off.handoff_stride * n
    } else {
        ABSENT
    };
    off.contrib = off.handoff_r + 2 * off.handoff_stride * n;
    off.fuse = if feat.arrays.any_async { 0 } else { ABSENT };
    off.claim = if feat.arrays.any_async { n } else { 0 };
    off.spike = off.claim + n.div_ceil(32);
    off.touched = off.spike + n.div_ceil(32);
    off.watch = off.touched + n.div_ceil(32);
    off.cflags = if feat.arrays.any_cleft {
        off.watch + n.div_ceil(32)
    } else {
        ABSENT
    };
    let (nb, nc) = (off.ring_len, classes.len() as u32);
    off.classes = nc;
    off.pool_cap = pool.clamp(1, u32::MAX as u64 / 2) as u32;
    off.seg_count = queue::ROW_COUNTS + off.async_len;
    off.seg_start = off.seg_count + nb * nc;
    off.block_size = off.seg_start + nb * nc;
    off.cursor = off.block_size + nb;
    off.prefix = off.cursor + nc;
    off.class_delay = off.prefix + nc + 1;
    off.pool_head = off.class_delay + nc;
    off.pool = off.pool_head + 2;
    off.async_ring = off.pool + off.pool_cap;
    off.todo = off.async_ring + off.async_len * off.async_cap * 2;
    off.active_list = if feat.arrays.any_cleft {
        off.todo + n
    } else {
        ABSENT
    };
    (off, stat, classes)
}

/// Starts of the terminal's sections (t_last and sites in `syn_u32`, X_F and X_D in
/// `syn_f32`), when the image has them (some type's release is not static).
fn terminal_at(off: &SynOffsets) -> Option<[usize; 4]> {
    Some([
        off.u_sec(syn_u32::T_LAST)?,
        off.u_sec(syn_u32::SITES)?,
        off.f_sec(syn_f32::X_F)?,
        off.f_sec(syn_f32::X_D)?,
    ])
}

impl SynHost {
    /// Bytes of each buffer: (static, u32 state, f32 state, flags, queues).
    pub fn sizes(&self) -> [u64; 5] {
        [
            self.stat.len() as u64 * 4,
            self.u.len() as u64 * 4,
            self.f.len() as u64 * 4,
            self.flags.len() as u64 * 4,
            self.queues.len() as u64 * 4,
        ]
    }

    /// The image of the incoming synapses of `neurons` in state `st`, with rings of
    /// `shape`.
    pub fn pack(
        model: &Model,
        net: &Network,
        st: &State,
        shape: &RingShape,
        neurons: &Range<usize>,
    ) -> SynHost {
        let (off, stat, classes) = offsets(model, net, st, shape, neurons);
        let syns = synapses_of(net, neurons);
        let (s0, ns) = (syns.start, syns.len());
        let local = |s: u32| (s as usize).checked_sub(s0).filter(|&i| i < ns);
        let feat = SynFeatures::of(model, shape);
        let mut u = vec![0u32; (feat.u_words() as usize * ns).max(1)];
        let mut f = vec![0f32; (feat.f_words() as usize * ns).max(1)];
        let usec = |s: u32| off.u_sec(s).map(|a| a..a + ns);
        let fsec = |s: u32| off.f_sec(s).map(|a| a..a + ns);
        if let Some([tl, si, xf, xd]) = terminal_at(&off) {
            for (i, t) in st.term[syns.clone()].iter().enumerate() {
                u[tl + i] = t.t_last;
                u[si + i] = t.sites;
                f[xf + i] = t.x_f;
                f[xd + i] = t.x_d;
            }
        }
        if let Some(r) = usec(syn_u32::COMMITTED) {
            u[r].copy_from_slice(&st.committed[syns.clone()]);
        }
        if let (Some(r), Some(e)) = (usec(syn_u32::RESERVE), usec(syn_u32::ENDO)) {
            u[r].copy_from_slice(&st.reserve[syns.clone()]);
            u[e].copy_from_slice(&st.endo[syns.clone()]);
        }
        if let Some(r) = usec(syn_u32::HANDOFF_STEP) {
            u[r].copy_from_slice(&st.handoff_step[syns.clone()]);
        }
        let w = fsec(syn_f32::WEIGHT).expect("weights are always in the image");
        f[w].copy_from_slice(&net.syn_weight[syns.clone()]);
        let mut active = Vec::new();
        let rs = st.active.stride;
        for (k, a) in st.active.slots.iter().enumerate() {
            let Some(i) = local(a.syn) else { continue };
            active.push(i as u32);
            let mut put_u = |s: u32, x: u32| {
                if let Some(r) = usec(s) {
                    u[r.start + i] = x;
                }
            };
            put_u(syn_u32::PULSE_LEFT, a.pulse_left);
            // Between steps every active synapse has had its take-back (a slot's
            // `fresh` is ACTIVE): the GPU takes back at activation, in `release`.
            debug_assert_eq!(a.fresh, ACTIVE, "a freshly activated synapse between steps");
            let mut put_f = |s: u32, x: f32| {
                if let Some(r) = fsec(s) {
                    f[r.start + i] = x;
                }
            };
            put_f(syn_f32::CLEFT_MM, a.cleft_mm);
            put_f(syn_f32::RELEASED, a.released);
            put_f(syn_f32::PULSE_QUANTA, a.pulse_quanta);
            let r0 = off.r as usize + i * off.slot_stride as usize;
            f[r0..r0 + rs].copy_from_slice(st.active.r_of(k));
        }
        let (h0, hs) = (off.handoff_r as usize, st.handoff_stride);
        f[h0..h0 + hs * ns].copy_from_slice(&st.handoff_r[s0 * hs..(s0 + ns) * hs]);
        let bit_sections = if off.cflags == ABSENT { 1 } else { 3 };
        let mut flags = vec![0u32; off.watch as usize + bit_sections * ns.div_ceil(32) + 1];
        let queue_words = if off.active_list == ABSENT {
            off.todo as usize + ns
        } else {
            off.active_list as usize + 2 * ns
        };
        let mut queues = vec![0u32; queue_words];
        // A CPU row holds the events due at the step s ≡ row (mod its length) of the
        // next ring length steps; the GPU's asynchronous rows are s mod their own length.
        let due =
            |row: usize, len: usize| st.step as usize + (row + len - st.step as usize % len) % len;
        // The arrivals in flight as blocks of the arrival pool: an arrival due at step s
        // at a synapse of delay d came from a spike at step s - d, one of the last nb - 1
        // steps; each block's arrivals by class, the oldest block first from position 0.
        let (nb, nc) = (off.ring_len as usize, classes.len());
        let t = st.step as i64;
        let mut segs: Vec<Vec<Vec<u32>>> = vec![vec![Vec::new(); nc]; nb];
        for (row, ids) in st.ring.iter().enumerate() {
            let at = due(row, st.ring.len()) as i64;
            let back = |d: u16| t - (at - d as i64);
            let fits = |d: u16| (1..nb as i64).contains(&back(d));
            for &s in ids {
                let Some(i) = local(s) else { continue };
                // The synapse's own class; for a state set from elsewhere whose arrival
                // does not fit its delay, a class that puts its spike in the window.
                let d = net.syn_delay[s as usize];
                let c = classes
                    .binary_search(&d)
                    .ok()
                    .filter(|_| fits(d))
                    .or_else(|| classes.iter().position(|&d| fits(d)))
                    .expect("an arrival due within the longest delay");
                segs[back(classes[c]) as usize][c].push(i as u32);
            }
        }
        let mut head = 0usize;
        for k in (1..nb).rev() {
            let b = (st.step as usize + nb - k) % nb;
            let mut size = 0;
            for (c, e) in segs[k].iter().enumerate() {
                queues[off.seg_count as usize + b * nc + c] = e.len() as u32;
                queues[off.seg_start as usize + b * nc + c] = head as u32;
                let at = off.pool as usize + head;
                queues[at..at + e.len()].copy_from_slice(e);
                head += e.len();
                size += e.len();
            }
            queues[off.block_size as usize + b] = size as u32;
        }
        queues[off.pool_head as usize] = (head % off.pool_cap as usize) as u32;
        queues[off.pool_head as usize + 1] = head as u32;
        for (c, &d) in classes.iter().enumerate() {
            queues[off.class_delay as usize + c] = d as u32;
        }
        for (row, pairs) in st.ring_async.iter().enumerate() {
            let mine: Vec<(u32, u32)> = pairs
                .iter()
                .filter_map(|&(s, site)| local(s).map(|i| (i as u32, site)))
                .take(off.async_cap as usize)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let g = due(row, st.ring_async.len()) % off.async_len as usize;
            queues[queue::ROW_COUNTS as usize + g] = mine.len() as u32;
            for (e, &(s, site)) in mine.iter().enumerate() {
                let at = off.async_ring as usize + (g * off.async_cap as usize + e) * 2;
                queues[at] = s;
                queues[at + 1] = site;
            }
        }
        let parity = (st.step & 1) as usize;
        // Last step's minis: counted per synapse and already listed for this step.
        let mut todo = 0;
        for &(s, q) in &st.pending_minis {
            let Some(i) = local(s) else { continue };
            let r = usec(syn_u32::MINIS).expect("minis pending in a model without minis");
            u[r.start + i] = q as u32;
            flags[off.claim as usize + i / 32] |= 1 << (i % 32);
            queues[off.todo as usize + todo] = i as u32;
            todo += 1;
        }
        queues[queue::TODO_COUNT as usize] = todo as u32;
        if off.active_list != ABSENT {
            let at = off.active_list as usize + parity * ns;
            queues[at..at + active.len()].copy_from_slice(&active);
            queues[queue::ACTIVE_COUNT as usize + parity] = active.len() as u32;
        } else {
            assert!(
                active.is_empty(),
                "active synapses in a model without a cleft"
            );
        }
        SynHost {
            off,
            stat,
            u,
            f,
            flags,
            queues,
        }
    }

    /// Writes the state of this chunk's synapses `syns` into `st`, appending its active
    /// synapses, ring entries and minis (call in ascending chunk order on a state whose
    /// pool, rings and minis were cleared; rows are sorted by the caller).
    pub fn unpack(&self, syns: &Range<usize>, st: &mut State) {
        let (s0, ns) = (syns.start, syns.len());
        let off = &self.off;
        let u = &self.u;
        let f = &self.f;
        let usec = |s: u32| off.u_sec(s).map(|a| a..a + ns);
        let fsec = |s: u32| off.f_sec(s).map(|a| a..a + ns);
        // An absent section holds a constant: the state keeps its value.
        if let Some([tl, si, xf, xd]) = terminal_at(off) {
            for (i, t) in st.term[syns.clone()].iter_mut().enumerate() {
                (t.t_last, t.sites) = (u[tl + i], u[si + i]);
                (t.x_f, t.x_d) = (f[xf + i], f[xd + i]);
            }
        }
        if let Some(r) = usec(syn_u32::COMMITTED) {
            st.committed[syns.clone()].copy_from_slice(&u[r]);
        }
        if let (Some(r), Some(e)) = (usec(syn_u32::RESERVE), usec(syn_u32::ENDO)) {
            st.reserve[syns.clone()].copy_from_slice(&u[r]);
            st.endo[syns.clone()].copy_from_slice(&u[e]);
        }
        let (h0, hs) = (off.handoff_r as usize, st.handoff_stride);
        st.handoff_r[s0 * hs..(s0 + ns) * hs].copy_from_slice(&f[h0..h0 + hs * ns]);
        if let Some(hr) = usec(syn_u32::HANDOFF_STEP) {
            st.handoff_step[syns.clone()].copy_from_slice(&u[hr.clone()]);
            let get_u = |s: u32, i: usize| usec(s).map_or(0, |r| u[r.start + i]);
            let get_f = |s: u32, i: usize| fsec(s).map_or(0.0, |r| f[r.start + i]);
            for i in 0..ns {
                if u[hr.start + i] != ACTIVE {
                    continue;
                }
                let r0 = off.r as usize + i * off.slot_stride as usize;
                let rs = st.active.stride;
                st.active.r.extend_from_slice(&f[r0..r0 + rs]);
                st.active.slots.push(Slot {
                    syn: (s0 + i) as u32,
                    fresh: ACTIVE,
                    cleft_mm: get_f(syn_f32::CLEFT_MM, i),
                    released: get_f(syn_f32::RELEASED, i),
                    pulse_left: get_u(syn_u32::PULSE_LEFT, i),
                    pulse_quanta: get_f(syn_f32::PULSE_QUANTA, i),
                });
            }
        }
        let la = off.async_len as usize;
        let q = &self.queues;
        let step = st.step as usize;
        let due = |row: usize, len: usize| step + (row + len - step % len) % len;
        let (lc, lac) = (st.ring.len(), st.ring_async.len());
        // The arrival pool's blocks of the last nb - 1 steps: each class's segment of the
        // block of step - k is due at step - k + d, still to come when d ≥ k.
        let (nb, nc, cap) = (
            off.ring_len as usize,
            off.classes as usize,
            off.pool_cap as usize,
        );
        for k in 1..nb.min(step + 1) {
            let b = (step + nb - k) % nb;
            for c in 0..nc {
                let d = q[off.class_delay as usize + c] as usize;
                let n = q[off.seg_count as usize + b * nc + c] as usize;
                if d < k || n == 0 {
                    continue;
                }
                let first = q[off.seg_start as usize + b * nc + c] as usize;
                st.ring[(step - k + d) % lc]
                    .extend((0..n).map(|e| q[off.pool as usize + (first + e) % cap] + s0 as u32));
            }
        }
        for row in 0..la {
            let n = (q[queue::ROW_COUNTS as usize + row] as usize).min(off.async_cap as usize);
            let c = due(row, la) % lac;
            st.ring_async[c].extend((0..n).map(|e| {
                let at = off.async_ring as usize + (row * off.async_cap as usize + e) * 2;
                (q[at] + s0 as u32, q[at + 1])
            }));
        }
        if let Some(m) = usec(syn_u32::MINIS) {
            st.pending_minis.extend(
                (0..ns)
                    .filter(|&i| u[m.start + i] > 0)
                    .map(|i| ((s0 + i) as u32, u[m.start + i] as f32)),
            );
        }
    }
}

impl SynImage {
    /// Uploads `host` (the image of synapses `syns`), refusing buffers larger than
    /// `limit` bytes (one storage binding).
    pub fn new(
        ctx: &GpuContext,
        host: &SynHost,
        syns: Range<usize>,
        limit: u64,
    ) -> Result<SynImage, Error> {
        let sizes = host.sizes();
        let names = [
            "static synapse arrays",
            "u32 synapse state",
            "f32 synapse state",
            "synapse flags",
            "event queues",
        ];
        for (b, name) in sizes.iter().zip(names) {
            if *b > limit {
                return Err(Error::Device(format!(
                    "the {name} of synapses {}..{} need {b} bytes, more than one storage binding of this adapter holds ({limit} bytes); \
                     a chunk of neurons with fewer incoming synapses would fit, but one neuron's alone do not: use --backend cpu",
                    syns.start, syns.end
                )));
            }
        }
        use wgpu::util::DeviceExt;
        let off_buf = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("syn_offsets"),
                contents: bytemuck::bytes_of(&host.off),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        let dispatch_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dispatch"),
            size: 9 * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::INDIRECT,
            mapped_at_creation: false,
        });
        Ok(SynImage {
            off: host.off,
            syns,
            off_buf,
            stat_buf: ctx.storage("syn_static", &host.stat),
            u_buf: ctx.storage("syn_u32", &host.u),
            f_buf: ctx.storage("syn_f32", &host.f),
            flags_buf: ctx.storage("syn_flags", &host.flags),
            queues_buf: ctx.storage("queues", &host.queues),
            dispatch_buf,
            sizes,
        })
    }

    /// Replaces the dynamic buffers by `host`'s, which must have their sizes (an error
    /// otherwise: a state with more arrivals in flight than this image's pool holds).
    pub fn load(&self, ctx: &GpuContext, host: &SynHost) -> Result<(), Error> {
        if host.sizes() != self.sizes {
            return Err(Error::Device(format!(
                "the state has more spike arrivals in flight at synapses {}..{} than the arrival pool holds ({} entries, the most the refractory periods allow): \
                 it did not come from this network's dynamics",
                self.syns.start, self.syns.end, self.off.pool_cap
            )));
        }
        let q = &ctx.queue;
        q.write_buffer(&self.u_buf, 0, bytemuck::cast_slice(&host.u));
        q.write_buffer(&self.f_buf, 0, bytemuck::cast_slice(&host.f));
        q.write_buffer(&self.flags_buf, 0, bytemuck::cast_slice(&host.flags));
        q.write_buffer(&self.queues_buf, 0, bytemuck::cast_slice(&host.queues));
        Ok(())
    }

    /// Bytes of the image's buffers as allocated: static, state, flags, queues and rings
    /// (what [`chunk_bytes`] predicts; the offsets uniform and the dispatch arguments,
    /// 300 bytes, apart).
    pub fn bytes(&self) -> u64 {
        [
            &self.stat_buf,
            &self.u_buf,
            &self.f_buf,
            &self.flags_buf,
            &self.queues_buf,
        ]
        .iter()
        .map(|b| b.size())
        .sum()
    }

    /// Reads the buffers back.
    pub fn read(&self, ctx: &GpuContext) -> Result<SynHost, Error> {
        let bufs = [
            &self.stat_buf,
            &self.u_buf,
            &self.f_buf,
            &self.flags_buf,
            &self.queues_buf,
        ];
        let stagings: Vec<wgpu::Buffer> = self
            .sizes
            .iter()
            .map(|&b| ctx.staging("synapse staging", b))
            .collect();
        let copies: Vec<(&wgpu::Buffer, &wgpu::Buffer, u64)> = bufs
            .iter()
            .zip(&stagings)
            .zip(self.sizes)
            .map(|((b, s), n)| (*b, s, n))
            .collect();
        let enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        let out = ctx.submit_and_read(enc, &copies)?;
        let words = |k: usize| bytemuck::cast_slice::<u8, u32>(&out[k]).to_vec();
        Ok(SynHost {
            off: self.off,
            stat: words(0),
            u: words(1),
            f: bytemuck::cast_slice::<u8, f32>(&out[2]).to_vec(),
            flags: words(3),
            queues: words(4),
        })
    }
}
