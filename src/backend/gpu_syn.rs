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
use crate::layout::{queue, release, syn_f32, syn_u32, SynOffsets, ABSENT};
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
    /// Receptor state floats per active synapse (`Model::receptor_state_stride`).
    pub slot_stride: usize,
}

impl SynFeatures {
    /// The sections `model` needs.
    pub fn of(model: &Model) -> SynFeatures {
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
        }
    }

    /// True when section `s` of [`syn_u32`] is allocated.
    pub fn has_u(&self, s: u32) -> bool {
        use syn_u32::*;
        match s {
            T_LAST | SITES => self.terminal,
            COMMITTED => self.arrays.any_async,
            RESERVE | ENDO => self.arrays.any_reserve,
            HANDOFF_STEP | FRESH | CFLAGS => self.arrays.any_cleft,
            PULSE_LEFT => self.pulse,
            MINIS => self.minis,
            _ => false,
        }
    }

    /// True when scalar section `s` of [`syn_f32`] is allocated.
    pub fn has_f(&self, s: u32) -> bool {
        use syn_f32::*;
        match s {
            WEIGHT | RELEASED_ACC => true,
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

    /// Device bytes per synapse apart from the static arrays' per-neuron parts and the
    /// asynchronous ring, with an arrival ring of `ring_len` rows.
    pub fn bytes_per_synapse(&self, ring_len: u32) -> f64 {
        // Type and projection key 4, delay 2, outgoing list entry 4.
        let stat = 10.0;
        let lists = 1 + if self.arrays.any_cleft { 2 } else { 0 } + ring_len as u64;
        let flags = if self.arrays.any_async { 1.0 } else { 0.0 } + 4.0 / 32.0;
        stat + 4.0 * ((self.u_words() + self.f_words() + lists) as f64 + flags)
    }
}

/// The GPU's delay rings: the arrival ring has a row per step of the longest delay (each
/// row holds at most one arrival per synapse, so n_synapses entries never overflow); the
/// asynchronous ring a row per step of the longest latency, with room for four times the
/// mean number of fusions per row were every asynchronous site in flight (at least 64,
/// at most every asynchronous site: at most 32 bytes per site). A row that fills up is
/// detected after the batch; nothing is dropped silently.
#[derive(Debug, Clone, Copy)]
pub struct RingShape {
    /// Arrival ring rows (longest delay + 1).
    pub ring_len: u32,
    /// Asynchronous ring rows (longest latency + 1).
    pub async_len: u32,
    /// Entries per asynchronous row; None: from the sites of the chunk.
    pub async_cap: Option<u32>,
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

/// Device bytes of the synapse image of `net` (with its rings), as one chunk.
pub fn device_bytes(model: &Model, net: &Network) -> u64 {
    let r = RingShape::of(model, net);
    let ns = net.n_synapses() as u64;
    let nn = net.n_neurons() as u64;
    let cap = r.async_cap(model, net, 0..ns as usize) as u64;
    chunk_bytes(ns, nn, nn, &r, &SynFeatures::of(model), cap)
        .iter()
        .sum()
}

/// Bytes of each buffer of a chunk image with `ns` synapses and `nn_all` neurons in
/// the network: (static, u32 state, f32 state, flags, queues), for the chunk sizing.
/// Each is at least one word (a binding is never empty).
pub fn chunk_bytes(
    ns: u64,
    nn_all: u64,
    neurons: u64,
    shape: &RingShape,
    feat: &SynFeatures,
    async_cap: u64,
) -> [u64; 5] {
    let l = shape.ring_len as u64;
    let la = shape.async_len as u64;
    let active_lists = if feat.arrays.any_cleft { 2 * ns } else { 0 };
    let fuse = if feat.arrays.any_async { ns } else { 0 };
    [
        4 * (ns + ns.div_ceil(2) + ns + nn_all + 1 + neurons + 1),
        4 * (feat.u_words() * ns).max(1),
        4 * (feat.f_words() * ns).max(1),
        4 * (fuse + 4 * ns.div_ceil(32) + 1),
        4 * (queue::ROW_COUNTS as u64 + l + la + l * ns + 2 * la * async_cap + ns + active_lists),
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
) -> (SynOffsets, Vec<u32>) {
    let syns = synapses_of(net, neurons);
    let (s0, ns) = (syns.start, syns.len());
    let nn = net.n_neurons() as usize;
    // Per synapse its type (low half) and the index of its projection key (high half;
    // no more keys than projections, which are numbered in 16 bits), then the delays,
    // two per word (at most u16::MAX steps, `MAX_DELAY_STEPS`).
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
        delay: stat.len() as u32,
        ..SynOffsets::default()
    };
    let mut delays = vec![0u32; ns.div_ceil(2)];
    for (i, &d) in net.syn_delay[syns.clone()].iter().enumerate() {
        delays[i / 2] |= (d as u32) << (16 * (i % 2));
    }
    stat.extend_from_slice(&delays);
    // The outgoing synapses of every neuron of the network that land in this chunk.
    off.out_offsets = stat.len() as u32;
    let mut out_syn = Vec::with_capacity(ns);
    stat.push(0);
    for n in 0..nn {
        for o in net.out_offsets[n]..net.out_offsets[n + 1] {
            let s = net.out_syn[o as usize] as usize;
            if syns.contains(&s) {
                out_syn.push((s - s0) as u32);
            }
        }
        stat.push(out_syn.len() as u32);
    }
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
    let feat = SynFeatures::of(model);
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
    off.u_at[2][2] = ABSENT;
    off.u_at[2][3] = ABSENT;
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
    let (l, la) = (off.ring_len, off.async_len);
    off.arrivals = queue::ROW_COUNTS + l + la;
    off.async_ring = off.arrivals + l * n;
    off.todo = off.async_ring + la * off.async_cap * 2;
    off.active_list = if feat.arrays.any_cleft {
        off.todo + n
    } else {
        ABSENT
    };
    (off, stat)
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
    /// The image of the incoming synapses of `neurons` in state `st`, with rings of
    /// `shape`.
    pub fn pack(
        model: &Model,
        net: &Network,
        st: &State,
        shape: &RingShape,
        neurons: &Range<usize>,
    ) -> SynHost {
        let (off, stat) = offsets(model, net, st, shape, neurons);
        let syns = synapses_of(net, neurons);
        let (s0, ns) = (syns.start, syns.len());
        let local = |s: u32| (s as usize).checked_sub(s0).filter(|&i| i < ns);
        let feat = SynFeatures::of(model);
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
        if let Some(r) = usec(syn_u32::FRESH) {
            u[r].fill(ACTIVE);
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
            put_u(syn_u32::FRESH, a.fresh);
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
        let mut flags = vec![0u32; off.watch as usize + ns.div_ceil(32) + 1];
        let queue_words = if off.active_list == ABSENT {
            off.todo as usize + ns
        } else {
            off.active_list as usize + 2 * ns
        };
        let mut queues = vec![0u32; queue_words];
        let l = off.ring_len as usize;
        // A CPU row holds the events due at the step s ≡ row (mod its length) of the
        // next ring length steps; the GPU rows are s mod their own lengths.
        let due =
            |row: usize, len: usize| st.step as usize + (row + len - st.step as usize % len) % len;
        for (row, ids) in st.ring.iter().enumerate() {
            let mine: Vec<u32> = ids
                .iter()
                .filter_map(|&s| local(s))
                .map(|i| i as u32)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let g = due(row, st.ring.len()) % l;
            queues[queue::ROW_COUNTS as usize + g] = mine.len() as u32;
            let at = off.arrivals as usize + g * ns;
            queues[at..at + mine.len()].copy_from_slice(&mine);
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
            queues[queue::ROW_COUNTS as usize + l + g] = mine.len() as u32;
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
                    fresh: get_u(syn_u32::FRESH, i),
                    cleft_mm: get_f(syn_f32::CLEFT_MM, i),
                    released: get_f(syn_f32::RELEASED, i),
                    pulse_left: get_u(syn_u32::PULSE_LEFT, i),
                    pulse_quanta: get_f(syn_f32::PULSE_QUANTA, i),
                });
            }
        }
        let l = off.ring_len as usize;
        let la = off.async_len as usize;
        let q = &self.queues;
        let step = st.step as usize;
        let due = |row: usize, len: usize| step + (row + len - step % len) % len;
        let (lc, lac) = (st.ring.len(), st.ring_async.len());
        for row in 0..l {
            let n = q[queue::ROW_COUNTS as usize + row] as usize;
            let at = off.arrivals as usize + row * ns;
            let c = due(row, l) % lc;
            st.ring[c].extend(q[at..at + n].iter().map(|&i| i + s0 as u32));
        }
        for row in 0..la {
            let n = (q[queue::ROW_COUNTS as usize + l + row] as usize).min(off.async_cap as usize);
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
        let sizes = [
            host.stat.len() as u64 * 4,
            host.u.len() as u64 * 4,
            host.f.len() as u64 * 4,
            host.flags.len() as u64 * 4,
            host.queues.len() as u64 * 4,
        ];
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

    /// Replaces the dynamic buffers by `host`'s.
    pub fn load(&self, ctx: &GpuContext, host: &SynHost) {
        let q = &ctx.queue;
        q.write_buffer(&self.u_buf, 0, bytemuck::cast_slice(&host.u));
        q.write_buffer(&self.f_buf, 0, bytemuck::cast_slice(&host.f));
        q.write_buffer(&self.flags_buf, 0, bytemuck::cast_slice(&host.flags));
        q.write_buffer(&self.queues_buf, 0, bytemuck::cast_slice(&host.queues));
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
