//! The synapse part of the GPU device image (`layout::SynOffsets` describes its sections)
//! and the synapse kernels of a step: deliver, release, cleft, gather, propagate and
//! spontaneous, with the `plan` kernels that size their indirect dispatches.
//!
//! On the CPU the active synapses are a compact pool sorted by synapse id, and the delay
//! rings are lists. Here every synapse has its slot of cleft and receptor state (a dense
//! image, so no kernel ever moves state), the lists (arrivals, asynchronous fusions, the
//! to-do list of synapses with events, the active list) are appended to with atomics and
//! never need an order: each entry is processed independently, and the only sums into
//! shared values, the per-neuron conductances, are formed by `gather` in ascending
//! synapse id, the CPU's order. [`SynImage::pack`] and [`SynImage::unpack`] convert
//! between this image and the CPU's [`State`] (with its rows sorted: see
//! [`State::canonical`]).

use super::cpu::spontaneous::SpontParams;
use crate::error::Error;
use crate::gpu::GpuContext;
use crate::layout::{queue, syn_f32, syn_u32, SynOffsets};
use crate::model::Model;
use crate::network::Network;
use crate::state::{ActivePool, State, ACTIVE, SLOT_STRIDE};

/// Receptors per synapse type (`MAX_RECEPTORS` in common.wgsl).
const MAX_R: usize = crate::netfile::validate::MAX_RECEPTORS;

/// Device bytes per synapse apart from the delay rings: static arrays (18), u32 state
/// (44), f32 state with receptor, hand-off and contribution slots (at most 88), flags
/// (12.1), to-do and active lists (16).
pub const DEVICE_BYTES_PER_SYNAPSE: u64 = 179;

/// The GPU's delay rings: the arrival ring has a row per step of the longest delay (each
/// row holds at most one arrival per synapse, so n_synapses entries never overflow); the
/// asynchronous ring a row per step of the longest latency, with room for four times the
/// mean number of fusions per row (at least 4096, at most every asynchronous site).
/// A row that fills up stops the run with an error; nothing is dropped silently.
#[derive(Debug, Clone, Copy)]
pub struct RingShape {
    /// Arrival ring rows (longest delay + 1).
    pub ring_len: u32,
    /// Asynchronous ring rows (longest latency + 1).
    pub async_len: u32,
    /// Entries per asynchronous row.
    pub async_cap: u32,
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
        // Σ N over asynchronous synapses: every committed site is in the ring once.
        let async_sites: u64 = net
            .syn_type
            .iter()
            .map(|&t| {
                let g = &model.syn_types[t as usize].gpu;
                if g.async_rho > 0.0 {
                    g.n_sites as u64
                } else {
                    0
                }
            })
            .sum();
        let async_len = max_async + 1;
        let per_row = (4 * async_sites).div_ceil(async_len as u64).max(4096);
        RingShape {
            ring_len: net.max_delay + 1,
            async_len,
            async_cap: per_row.min(async_sites).clamp(1, 1 << 24) as u32,
        }
    }
}

/// Device bytes of the synapse image of `net` (with its rings).
pub fn device_bytes(model: &Model, net: &Network) -> u64 {
    let r = RingShape::of(model, net);
    let ns = net.n_synapses() as u64;
    ns * (DEVICE_BYTES_PER_SYNAPSE + 4 * r.ring_len as u64)
        + r.async_len as u64 * r.async_cap as u64 * 8
}

/// Host copies of the synapse buffers (the layout of the device image).
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

/// The synapse buffers on the device.
pub struct SynImage {
    /// Section offsets and queue sizes.
    pub off: SynOffsets,
    pub(crate) off_buf: wgpu::Buffer,
    pub(crate) types_buf: wgpu::Buffer,
    pub(crate) tables_buf: wgpu::Buffer,
    pub(crate) stat_buf: wgpu::Buffer,
    pub(crate) u_buf: wgpu::Buffer,
    pub(crate) f_buf: wgpu::Buffer,
    pub(crate) flags_buf: wgpu::Buffer,
    pub(crate) queues_buf: wgpu::Buffer,
    pub(crate) dispatch_buf: wgpu::Buffer,
    /// Evoked events, failures and quanta per projection key (4 words each).
    pub(crate) evoked_buf: wgpu::Buffer,
    /// The release log of watched synapses (release.wgsl).
    pub(crate) log_buf: wgpu::Buffer,
    sizes: [u64; 5],
}

/// Offsets of the image of `net` (and the static section), with `async_cap` entries per
/// asynchronous ring row.
fn offsets(model: &Model, net: &Network, st: &State, shape: RingShape) -> (SynOffsets, Vec<u32>) {
    let ns = net.n_synapses() as usize;
    let nn = net.n_neurons() as usize;
    let mut stat: Vec<u32> = vec![0; ns.div_ceil(2)];
    for (i, &ty) in net.syn_type.iter().enumerate() {
        stat[i / 2] |= (ty as u32) << (16 * (i % 2));
    }
    let mut off = SynOffsets {
        post: stat.len() as u32,
        ..SynOffsets::default()
    };
    stat.extend_from_slice(&net.syn_post);
    off.delay = stat.len() as u32;
    stat.extend(net.syn_delay.iter().map(|&d| d as u32));
    off.out_offsets = stat.len() as u32;
    stat.extend_from_slice(&net.out_offsets[..=nn]);
    off.out_syn = stat.len() as u32;
    stat.extend_from_slice(&net.out_syn);
    off.in_offsets = stat.len() as u32;
    stat.extend_from_slice(&net.in_offsets[..=nn]);
    off.proj_key = stat.len() as u32;
    let keys = projection_keys(model, net);
    stat.extend((0..ns).map(|i| {
        let k = key_of(model, net, i);
        keys.iter().position(|&x| x == k).unwrap_or(0) as u32
    }));
    let sp = SpontParams::new(model);
    off.sites_max = sp.sites_max;
    off.rate_max = sp.rate_max;
    off.ring_len = shape.ring_len;
    off.async_len = shape.async_len;
    off.async_cap = shape.async_cap;
    off.handoff_stride = st.handoff_stride as u32;
    off.r = syn_f32::COUNT * ns as u32;
    off.handoff_r = off.r + (SLOT_STRIDE * ns) as u32;
    off.contrib = off.handoff_r + (st.handoff_stride * ns) as u32;
    off.touched = 3 * ns as u32;
    let (l, la) = (off.ring_len, off.async_len);
    off.arrivals = queue::ROW_COUNTS + l + la;
    off.async_ring = off.arrivals + l * ns as u32;
    off.todo = off.async_ring + la * off.async_cap * 2;
    off.active_list = off.todo + 2 * ns as u32;
    (off, stat)
}

/// The (source population, target population, synapse type) of synapse `i`: the key of
/// the evoked-release counters (`Backend::evoked_per_projection`).
fn key_of(_model: &Model, net: &Network, i: usize) -> (u16, u16, u16) {
    (
        net.neuron_pop[net.syn_pre[i] as usize],
        net.neuron_pop[net.syn_post[i] as usize],
        net.syn_type[i],
    )
}

/// The distinct keys of the projections, in projection order (index = counter slot).
pub fn projection_keys(_model: &Model, net: &Network) -> Vec<(u16, u16, u16)> {
    let mut keys = Vec::new();
    for p in &net.projections {
        let k = (p.source as u16, p.target as u16, p.syn_type as u16);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

impl SynHost {
    /// The image of state `st` of `net`, with rings of `shape`.
    pub fn pack(model: &Model, net: &Network, st: &State, shape: RingShape) -> SynHost {
        let (off, stat) = offsets(model, net, st, shape);
        let ns = net.n_synapses() as usize;
        let mut u = vec![0u32; syn_u32::COUNT as usize * ns];
        let sec = |s: u32| s as usize * ns..(s as usize + 1) * ns;
        u[sec(syn_u32::T_LAST)].copy_from_slice(&st.t_last);
        u[sec(syn_u32::SITES)].copy_from_slice(&st.sites);
        if !st.committed.is_empty() {
            u[sec(syn_u32::COMMITTED)].copy_from_slice(&st.committed);
        }
        if !st.reserve.is_empty() {
            u[sec(syn_u32::RESERVE)].copy_from_slice(&st.reserve);
            u[sec(syn_u32::ENDO)].copy_from_slice(&st.endo);
        }
        u[sec(syn_u32::HANDOFF_STEP)].copy_from_slice(&st.handoff_step);
        u[sec(syn_u32::FRESH)].fill(ACTIVE);
        let mut f = vec![0f32; off.contrib as usize + 2 * MAX_R * ns];
        let fsec = |s: u32| s as usize * ns..(s as usize + 1) * ns;
        f[fsec(syn_f32::WEIGHT)].copy_from_slice(&net.syn_weight);
        f[fsec(syn_f32::X_F)].copy_from_slice(&st.x_f);
        f[fsec(syn_f32::X_D)].copy_from_slice(&st.x_d);
        let a = &st.active;
        for (k, &s) in a.syn.iter().enumerate() {
            let s = s as usize;
            u[syn_u32::PULSE_LEFT as usize * ns + s] = a.pulse_left[k];
            u[syn_u32::FRESH as usize * ns + s] = a.fresh[k];
            f[syn_f32::CLEFT_MM as usize * ns + s] = a.cleft_mm[k];
            f[syn_f32::RELEASED as usize * ns + s] = a.released[k];
            f[syn_f32::PULSE_QUANTA as usize * ns + s] = a.pulse_quanta[k];
            let r0 = off.r as usize + s * SLOT_STRIDE;
            f[r0..r0 + SLOT_STRIDE].copy_from_slice(&a.r[k * SLOT_STRIDE..(k + 1) * SLOT_STRIDE]);
        }
        let h0 = off.handoff_r as usize;
        f[h0..h0 + st.handoff_r.len()].copy_from_slice(&st.handoff_r);
        let mut flags = vec![0u32; 3 * ns + ns.div_ceil(32) + 1];
        let mut queues = vec![0u32; off.active_list as usize + 2 * ns];
        let l = off.ring_len as usize;
        // A CPU row holds the events due at the step s ≡ row (mod its length) of the
        // next ring length steps; the GPU rows are s mod their own lengths.
        let due =
            |row: usize, len: usize| st.step as usize + (row + len - st.step as usize % len) % len;
        for (row, ids) in st.ring.iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let g = due(row, st.ring.len()) % l;
            queues[queue::ROW_COUNTS as usize + g] = ids.len() as u32;
            let at = off.arrivals as usize + g * ns;
            queues[at..at + ids.len()].copy_from_slice(ids);
        }
        for (row, pairs) in st.ring_async.iter().enumerate() {
            if pairs.is_empty() {
                continue;
            }
            let g = due(row, st.ring_async.len()) % off.async_len as usize;
            let n = pairs.len().min(off.async_cap as usize);
            queues[queue::ROW_COUNTS as usize + l + g] = n as u32;
            for (e, &(s, site)) in pairs.iter().take(n).enumerate() {
                let at = off.async_ring as usize + (g * off.async_cap as usize + e) * 2;
                queues[at] = s;
                queues[at + 1] = site;
            }
        }
        let parity = (st.step & 1) as usize;
        // Last step's minis: counted per synapse and already listed for this step.
        for (e, &(s, q)) in st.pending_minis.iter().enumerate() {
            u[syn_u32::MINIS as usize * ns + s as usize] = q as u32;
            flags[s as usize] = st.step + 1;
            queues[off.todo as usize + parity * ns + e] = s;
        }
        queues[(queue::TODO_COUNT as usize) + parity] = st.pending_minis.len() as u32;
        for (k, &s) in a.syn.iter().enumerate() {
            queues[off.active_list as usize + parity * ns + k] = s;
        }
        queues[queue::ACTIVE_COUNT as usize + parity] = a.syn.len() as u32;
        SynHost {
            off,
            stat,
            u,
            f,
            flags,
            queues,
        }
    }

    /// Writes the synapse state of this image into `st` (rows and lists sorted).
    pub fn unpack(&self, net: &Network, st: &mut State) {
        let ns = net.n_synapses() as usize;
        let off = &self.off;
        let u = &self.u;
        let f = &self.f;
        let sec = |s: u32| s as usize * ns..(s as usize + 1) * ns;
        st.t_last.copy_from_slice(&u[sec(syn_u32::T_LAST)]);
        st.sites.copy_from_slice(&u[sec(syn_u32::SITES)]);
        if !st.committed.is_empty() {
            st.committed.copy_from_slice(&u[sec(syn_u32::COMMITTED)]);
        }
        if !st.reserve.is_empty() {
            st.reserve.copy_from_slice(&u[sec(syn_u32::RESERVE)]);
            st.endo.copy_from_slice(&u[sec(syn_u32::ENDO)]);
        }
        st.handoff_step
            .copy_from_slice(&u[sec(syn_u32::HANDOFF_STEP)]);
        st.x_f.copy_from_slice(&f[sec(syn_f32::X_F)]);
        st.x_d.copy_from_slice(&f[sec(syn_f32::X_D)]);
        let h0 = off.handoff_r as usize;
        let hl = st.handoff_r.len();
        st.handoff_r.copy_from_slice(&f[h0..h0 + hl]);
        let mut a = ActivePool::default();
        for s in 0..ns {
            if st.handoff_step[s] != ACTIVE {
                continue;
            }
            a.syn.push(s as u32);
            a.cleft_mm.push(f[syn_f32::CLEFT_MM as usize * ns + s]);
            a.released.push(f[syn_f32::RELEASED as usize * ns + s]);
            a.pulse_left.push(u[syn_u32::PULSE_LEFT as usize * ns + s]);
            a.pulse_quanta
                .push(f[syn_f32::PULSE_QUANTA as usize * ns + s]);
            a.fresh.push(u[syn_u32::FRESH as usize * ns + s]);
            let r0 = off.r as usize + s * SLOT_STRIDE;
            a.r.extend_from_slice(&f[r0..r0 + SLOT_STRIDE]);
        }
        st.active = a;
        let l = off.ring_len as usize;
        let la = off.async_len as usize;
        let q = &self.queues;
        let step = st.step as usize;
        let due = |row: usize, len: usize| step + (row + len - step % len) % len;
        st.ring.iter_mut().for_each(|r| r.clear());
        st.ring_async.iter_mut().for_each(|r| r.clear());
        let (lc, lac) = (st.ring.len(), st.ring_async.len());
        for row in 0..l {
            let n = q[queue::ROW_COUNTS as usize + row] as usize;
            let at = off.arrivals as usize + row * ns;
            let c = due(row, l) % lc;
            st.ring[c].extend_from_slice(&q[at..at + n]);
            st.ring[c].sort_unstable();
        }
        for row in 0..la {
            let n = (q[queue::ROW_COUNTS as usize + l + row] as usize).min(off.async_cap as usize);
            let c = due(row, la) % lac;
            st.ring_async[c].extend((0..n).map(|e| {
                let at = off.async_ring as usize + (row * off.async_cap as usize + e) * 2;
                (q[at], q[at + 1])
            }));
            st.ring_async[c].sort_unstable();
        }
        st.pending_minis = (0..ns)
            .filter(|&s| u[syn_u32::MINIS as usize * ns + s] > 0)
            .map(|s| (s as u32, u[syn_u32::MINIS as usize * ns + s] as f32))
            .collect();
    }
}

impl SynImage {
    /// Uploads `host`, refusing buffers larger than `limit` bytes (one storage binding),
    /// with evoked-release counters for `n_keys` projection keys.
    pub fn new(
        ctx: &GpuContext,
        model: &Model,
        host: &SynHost,
        limit: u64,
        n_keys: usize,
    ) -> Result<SynImage, Error> {
        let n_keys = n_keys.max(1);
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
                    "the {name} of this network need {b} bytes, more than one storage binding of this adapter holds ({limit} bytes); \
                     the GPU backend of this version does not split synapse arrays: use --backend cpu or a smaller network"
                )));
            }
        }
        let total: u64 = sizes.iter().sum();
        if total > ctx.limits.max_buffer_size.saturating_mul(8) {
            return Err(Error::Device(format!(
                "the synapse image needs {total} bytes, more than this adapter can allocate"
            )));
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
        let gpu_types: Vec<_> = model.syn_types.iter().map(|t| t.gpu).collect();
        Ok(SynImage {
            off: host.off,
            off_buf,
            types_buf: ctx.storage("syn_types", &gpu_types),
            tables_buf: ctx.storage("pow_tables", &model.pow_tables),
            stat_buf: ctx.storage("syn_static", &host.stat),
            u_buf: ctx.storage("syn_u32", &host.u),
            f_buf: ctx.storage("syn_f32", &host.f),
            flags_buf: ctx.storage("syn_flags", &host.flags),
            queues_buf: ctx.storage("queues", &host.queues),
            dispatch_buf,
            evoked_buf: ctx.storage("evoked", &vec![0u32; 4 * n_keys]),
            log_buf: ctx.storage("release_log", &[0u32; 8]),
            sizes,
        })
    }

    /// The ring shape of this image.
    pub fn shape(&self) -> RingShape {
        RingShape {
            ring_len: self.off.ring_len,
            async_len: self.off.async_len,
            async_cap: self.off.async_cap,
        }
    }

    /// Replaces the dynamic buffers by `host`'s.
    pub fn load(&self, ctx: &GpuContext, host: &SynHost) {
        let q = &ctx.queue;
        q.write_buffer(&self.u_buf, 0, bytemuck::cast_slice(&host.u));
        q.write_buffer(&self.f_buf, 0, bytemuck::cast_slice(&host.f));
        q.write_buffer(&self.flags_buf, 0, bytemuck::cast_slice(&host.flags));
        q.write_buffer(&self.queues_buf, 0, bytemuck::cast_slice(&host.queues));
    }

    /// Reads the dynamic buffers back.
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

    /// The asynchronous fusions dropped by a full ring row and the first step of one.
    pub fn overflow(host: &SynHost) -> Option<(u32, u32)> {
        let n = host.queues[queue::ASYNC_OVERFLOW as usize];
        (n > 0).then(|| (n, u32::MAX - host.queues[queue::OVERFLOW_STEP as usize]))
    }
}
