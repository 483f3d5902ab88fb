//! The GPU backend: the step's kernels as WGSL compute shaders through wgpu, over the
//! device image (`layout::ImageOffsets` for the neurons, `layout::SynOffsets` for the
//! synapses, see [`super::gpu_syn`]).
//!
//! A batch of up to [`GpuBackend::batch_capacity`] steps is encoded in one compute pass
//! and one submission. Per step, in the CPU's pipeline order: `sample` and
//! `sample_synapse` (on sampled steps), `plan_deliver`, `deliver`, `plan_release`,
//! `release`, `decay_pools`, `plan_cleft`, `cleft`, `gather`, `integrate`, `propagate`
//! and `spontaneous`, each bound to that step's `StepParams` (a uniform array with one
//! entry per step, 256 bytes apart). The activity-dependent kernels (deliver, release,
//! cleft) are dispatched indirectly with workgroup counts the `plan` kernels compute from
//! GPU counters, so nothing returns to the host inside a batch. Spikes go to a ring of
//! bit rows (atomicOr, exact and order-free), samples to a ring of rows, and the batch's
//! counters (events, quanta, evoked releases per projection, the release log, overflow
//! and non-finite records) are read back once per batch. On lavapipe the results are
//! bit-identical to the CPU reference (tests/parity.rs, tests/synparity.rs).
//!
//! Arrays larger than the adapter's largest storage binding (128 MiB on lavapipe and many
//! GPUs) are split for networks without synapses: the neurons are cut into chunks whose
//! every array fits one binding, each chunk a complete image of its neurons. A network
//! with synapses needs its neurons in one chunk and each synapse buffer within one
//! binding; otherwise it is refused with the figures before anything runs.

use super::cpu::sample::{probe_code, syn_probe_code};
use super::cpu::step_params;
use super::gpu_syn::{projection_keys, RingShape, SynHost, SynImage};
use super::{Backend, Batch, Probe, ReleaseEvent, ReleaseKind};
use crate::error::Error;
use crate::gpu::GpuContext;
use crate::layout::{self, probe, queue};
use crate::layout::{
    neuron_f32, neuron_u32, GpuInput, ImageOffsets, StepParams, STEP_PARAMS_STRIDE,
};
use crate::model::Model;
use crate::network::Network;
use crate::state::State;
use std::sync::Arc;

/// Steps per submission unless told otherwise.
pub const DEFAULT_BATCH: u32 = 256;
/// Threads per workgroup (WORKGROUP in common.wgsl).
const WORKGROUP: u32 = 64;

/// Workgroup counts for `n` invocations: 1-D up to the per-dimension limit, 2-D beyond.
fn groups(n: u32, max_per_dim: u32) -> (u32, u32) {
    let g = n.div_ceil(WORKGROUP).max(1);
    if g <= max_per_dim {
        (g, 1)
    } else {
        (max_per_dim, g.div_ceil(max_per_dim))
    }
}

/// The image of one chunk of neurons: its buffers and the bind groups of each batch row.
struct Chunk {
    first: u32,
    size: u32,
    spike_words: u32,
    params_buf: wgpu::Buffer,
    offsets_buf: wgpu::Buffer,
    g_buf: wgpu::Buffer,
    f32_buf: wgpu::Buffer,
    u32_buf: wgpu::Buffer,
    spike_buf: wgpu::Buffer,
    spike_staging: wgpu::Buffer,
    decay_groups: Vec<wgpu::BindGroup>,
    integrate_groups: Vec<wgpu::BindGroup>,
    /// Probes of this chunk: (code, neuron in the chunk, column, 0), and their bind groups.
    probes: Vec<[u32; 4]>,
    sample_groups: Vec<wgpu::BindGroup>,
}

/// The GPU backend.
pub struct GpuBackend {
    ctx: GpuContext,
    model: Arc<Model>,
    net: Arc<Network>,
    step: u32,
    batch_cap: u32,
    n_receptors: u32,
    receptors_buf: wgpu::Buffer,
    decay_pools: wgpu::ComputePipeline,
    integrate: wgpu::ComputePipeline,
    sample: wgpu::ComputePipeline,
    chunks: Vec<Chunk>,
    syn: Option<SynKernels>,
    probes: Vec<[u32; 2]>,
    sampling: Option<Sampling>,
    last_spikes: Vec<u32>,
    st: State,
    submissions: u64,
    readbacks: u64,
}

/// The synapse image and the synapse kernels' pipelines and per-row bind groups.
struct SynKernels {
    image: SynImage,
    /// Pipelines in the order of [`SYN_KERNELS`], and their bind group of each batch row.
    pipelines: Vec<wgpu::ComputePipeline>,
    groups: Vec<Vec<wgpu::BindGroup>>,
    /// Projection keys, their counts so far (events, quanta, failures), and the staging
    /// buffer of the per-batch counters.
    n_keys: usize,
    evoked: Vec<[f64; 3]>,
    evoked_staging: wgpu::Buffer,
    /// The release log's staging buffer while synapses are watched, and the entries read.
    log_staging: Option<wgpu::Buffer>,
    log: Vec<ReleaseEvent>,
    header_staging: wgpu::Buffer,
    spontaneous: bool,
    /// The synapse sampler, its probes (code, synapse, column, 1) and bind groups.
    sample: wgpu::ComputePipeline,
    probes: Vec<[u32; 4]>,
    sample_groups: Vec<wgpu::BindGroup>,
}

/// How a synapse kernel is dispatched.
enum Size {
    /// One workgroup (the `plan` kernels).
    One,
    /// Indirectly, from entry k (of three) of the dispatch buffer.
    Indirect(u64),
    /// These workgroup counts (one invocation per neuron).
    Groups(u32, u32),
}

impl SynKernels {
    /// Records kernel `kernel` of batch row `row` into `pass`.
    fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>, kernel: usize, row: usize, size: Size) {
        pass.set_pipeline(&self.pipelines[kernel]);
        pass.set_bind_group(0, &self.groups[kernel][row], &[]);
        match size {
            Size::One => pass.dispatch_workgroups(1, 1, 1),
            Size::Indirect(k) => {
                pass.dispatch_workgroups_indirect(&self.image.dispatch_buf, k * 12)
            }
            Size::Groups(x, y) => pass.dispatch_workgroups(x, y, 1),
        }
    }

    /// (Re)creates the bind groups of every kernel and batch row over the current buffers.
    fn bind(&mut self, ctx: &GpuContext, c: &Chunk, receptors_buf: &wgpu::Buffer, batch_cap: u32) {
        let im = &self.image;
        self.groups = SYN_KERNELS
            .iter()
            .zip(&self.pipelines)
            .map(|((file, ep), pipe)| {
                let layout = pipe.get_bind_group_layout(0);
                let rest: Vec<&wgpu::Buffer> = match *file {
                    "plan" => vec![&im.queues_buf, &im.dispatch_buf],
                    "deliver" => vec![&im.f_buf, &im.flags_buf, &im.queues_buf],
                    "release" => vec![
                        &im.types_buf,
                        &im.tables_buf,
                        &im.stat_buf,
                        &im.u_buf,
                        &im.f_buf,
                        &im.flags_buf,
                        &im.queues_buf,
                        &im.evoked_buf,
                        &im.log_buf,
                    ],
                    "cleft" => vec![
                        &im.types_buf,
                        receptors_buf,
                        &im.tables_buf,
                        &im.stat_buf,
                        &im.u_buf,
                        &im.f_buf,
                        &im.flags_buf,
                        &im.queues_buf,
                    ],
                    "gather" => vec![
                        &c.offsets_buf,
                        &im.types_buf,
                        receptors_buf,
                        &im.stat_buf,
                        &im.u_buf,
                        &im.f_buf,
                        &im.flags_buf,
                        &c.g_buf,
                    ],
                    "propagate" => vec![&im.stat_buf, &c.spike_buf, &im.queues_buf],
                    _ => vec![
                        &im.types_buf,
                        &im.tables_buf,
                        &im.stat_buf,
                        &im.u_buf,
                        &im.f_buf,
                        &im.flags_buf,
                        &im.queues_buf,
                        &im.log_buf,
                    ],
                };
                (0..batch_cap)
                    .map(|k| {
                        let mut e = vec![params_entry(&c.params_buf, k), entry(1, &im.off_buf)];
                        for (b, buf) in rest.iter().enumerate() {
                            e.push(entry(2 + b as u32, buf));
                        }
                        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some(ep),
                            layout: &layout,
                            entries: &e,
                        })
                    })
                    .collect()
            })
            .collect();
    }
}

/// Release log codes (release.wgsl, spontaneous.wgsl) besides an asynchronous site.
const LOG_SPIKE: u32 = u32::MAX;
const LOG_MINI: u32 = u32::MAX - 1;

/// The synapse kernels: (shader file, entry point).
const SYN_KERNELS: [(&str, &str); 9] = [
    ("plan", "plan_deliver"),
    ("deliver", "deliver"),
    ("plan", "plan_release"),
    ("release", "release"),
    ("plan", "plan_cleft"),
    ("cleft", "cleft"),
    ("gather", "gather"),
    ("propagate", "propagate"),
    ("spontaneous", "spontaneous"),
];
const K_PLAN_DELIVER: usize = 0;
const K_DELIVER: usize = 1;
const K_PLAN_RELEASE: usize = 2;
const K_RELEASE: usize = 3;
const K_PLAN_CLEFT: usize = 4;
const K_CLEFT: usize = 5;
const K_GATHER: usize = 6;
const K_PROPAGATE: usize = 7;
const K_SPONTANEOUS: usize = 8;

/// The sample ring shared by the chunks (each writes its probes' columns).
struct Sampling {
    rows_cap: u32,
    samples_buf: wgpu::Buffer,
    staging: wgpu::Buffer,
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

fn params_entry(buffer: &wgpu::Buffer, k: u32) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: k as u64 * STEP_PARAMS_STRIDE,
            size: wgpu::BufferSize::new(std::mem::size_of::<StepParams>() as u64),
        }),
    }
}

/// The static u32 sections of neurons `first..first + size` (population index packed two
/// per word, then input and spike-time CSRs re-based to the chunk) and their offsets.
fn static_image(net: &Network, first: usize, size: usize) -> (Vec<u32>, ImageOffsets) {
    let mut stat: Vec<u32> = vec![0; size.div_ceil(2)];
    for i in 0..size {
        stat[i / 2] |= (net.neuron_pop[first + i] as u32) << (16 * (i % 2));
    }
    let mut off = ImageOffsets {
        input_offsets: stat.len() as u32,
        ..ImageOffsets::default()
    };
    let (i0, i1) = (net.input_offsets[first], net.input_offsets[first + size]);
    stat.extend(
        net.input_offsets[first..=first + size]
            .iter()
            .map(|&o| o - i0),
    );
    off.input_ids = stat.len() as u32;
    stat.extend_from_slice(&net.input_ids[i0 as usize..i1 as usize]);
    off.spike_offsets = stat.len() as u32;
    let (s0, s1) = (net.spike_offsets[first], net.spike_offsets[first + size]);
    stat.extend(
        net.spike_offsets[first..=first + size]
            .iter()
            .map(|&o| o - s0),
    );
    off.spike_steps = stat.len() as u32;
    stat.extend_from_slice(&net.spike_steps[s0 as usize..s1 as usize]);
    (stat, off)
}

impl GpuBackend {
    /// Uploads the initial state of `net` to the adapter of `ctx`.
    pub fn new(ctx: GpuContext, model: Arc<Model>, net: Arc<Network>) -> Result<Self, Error> {
        Self::with_batch(ctx, model, net, DEFAULT_BATCH)
    }

    /// As [`GpuBackend::new`], with at most `batch_cap` steps per submission.
    pub fn with_batch(
        ctx: GpuContext,
        model: Arc<Model>,
        net: Arc<Network>,
        batch_cap: u32,
    ) -> Result<Self, Error> {
        let limit = ctx.limits.max_storage_buffer_binding_size;
        Self::with_limits(ctx, model, net, batch_cap, limit)
    }

    /// As [`GpuBackend::with_batch`], binding at most `max_binding_bytes` per storage
    /// buffer (the adapter's limit, or less to exercise the chunking in tests).
    pub fn with_limits(
        ctx: GpuContext,
        model: Arc<Model>,
        net: Arc<Network>,
        batch_cap: u32,
        max_binding_bytes: u64,
    ) -> Result<Self, Error> {
        let shape = RingShape::of(&model, &net);
        Self::build(ctx, model, net, batch_cap, max_binding_bytes, shape)
    }

    /// As [`GpuBackend::with_batch`], with `async_cap` entries per row of the
    /// asynchronous-release ring (fewer than the default to exercise the overflow check).
    pub fn with_async_capacity(
        ctx: GpuContext,
        model: Arc<Model>,
        net: Arc<Network>,
        batch_cap: u32,
        async_cap: u32,
    ) -> Result<Self, Error> {
        let shape = RingShape {
            async_cap: async_cap.max(1),
            ..RingShape::of(&model, &net)
        };
        let limit = ctx.limits.max_storage_buffer_binding_size;
        Self::build(ctx, model, net, batch_cap, limit, shape)
    }

    fn build(
        ctx: GpuContext,
        model: Arc<Model>,
        net: Arc<Network>,
        batch_cap: u32,
        max_binding_bytes: u64,
        shape: RingShape,
    ) -> Result<Self, Error> {
        let batch_cap = batch_cap.max(1);
        let st = State::new(&model, &net);
        let nn = net.n_neurons() as u64;
        let nr = model.receptors.len() as u64;
        let limit = max_binding_bytes.min(ctx.limits.max_storage_buffer_binding_size);
        // Neurons per chunk: every per-neuron array of a chunk fits one binding.
        let per_neuron = [
            neuron_f32::COUNT as u64 * 4,
            neuron_u32::COUNT as u64 * 4,
            2 * nr.max(1) * 4,
            // packed population, input and spike offsets
            2 * 4 + 2,
        ];
        let mut chunk = nn.max(1);
        for b in per_neuron {
            chunk = chunk.min((limit.saturating_sub(64) / b).max(1));
        }
        // Spike rows: batch_cap rows of ceil(chunk/32) words, plus the record.
        let words = limit.saturating_sub(64) / 4 / batch_cap as u64;
        if words == 0 {
            return Err(Error::Device(format!(
                "storage bindings of {limit} bytes cannot hold {batch_cap} spike rows; use fewer steps per submission"
            )));
        }
        chunk = chunk.min(words * 32);
        let pipelines = (
            ctx.pipeline("decay_pools", "decay_pools")?,
            ctx.pipeline("integrate", "integrate")?,
            ctx.pipeline("sample", "sample")?,
        );
        let receptors_buf = ctx.storage("receptors", &model.gpu_receptors);
        let pops_buf = ctx.storage("pops", &model.gpu_pops);
        let inputs: Vec<GpuInput> = net
            .inputs
            .iter()
            .map(|i| GpuInput {
                start_step: i.start_step,
                stop_step: i.stop_step,
                amplitude_pa: i.amplitude_pa,
                _pad0: 0,
            })
            .collect();
        let inputs_buf = ctx.storage("inputs", &inputs);
        for (name, b) in [
            (
                "receptor table",
                std::mem::size_of_val(&model.gpu_receptors[..]) as u64,
            ),
            (
                "population table",
                std::mem::size_of_val(&model.gpu_pops[..]) as u64,
            ),
            ("input table", std::mem::size_of_val(&inputs[..]) as u64),
        ] {
            if b > limit {
                return Err(Error::Device(format!(
                    "the {name} needs {b} bytes, more than one storage binding holds ({limit} bytes)"
                )));
            }
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut chunks = Vec::new();
        let mut first = 0u64;
        while first < nn.max(1) {
            let size = chunk.min(nn - first).max(if nn == 0 { 0 } else { 1 });
            let (f0, sz) = (first as usize, size as usize);
            let (stat, off_base) = static_image(&net, f0, sz);
            if stat.len() as u64 * 4 > limit {
                return Err(Error::Device(format!(
                    "the spike times and inputs of neurons {f0}..{} need {} bytes, more than one storage binding holds ({limit} bytes)",
                    f0 + sz,
                    stat.len() * 4
                )));
            }
            let off = ImageOffsets {
                g_pool: (size * nr) as u32,
                ..off_base
            };
            let offsets_buf = {
                use wgpu::util::DeviceExt;
                ctx.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("offsets"),
                        contents: bytemuck::bytes_of(&off),
                        usage: wgpu::BufferUsages::UNIFORM,
                    })
            };
            let params_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: batch_cap as u64 * STEP_PARAMS_STRIDE,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let static_buf = ctx.storage("neuron_static", &stat);
            let g_buf = ctx.storage("g_ns", &Self::pack_g(&st, f0, sz, nr as usize));
            let f32_buf = ctx.storage("neuron_f32", &Self::pack_f32(&st, f0, sz));
            let u32_buf = ctx.storage("neuron_u32", &Self::pack_u32(&st, f0, sz));
            let spike_words = (size as u32).div_ceil(32);
            // Three words of the non-finite record, then the spike bit rows (integrate.wgsl).
            let spike_bytes = (batch_cap as u64 * spike_words as u64 + 3) * 4;
            let spike_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("spike_bits"),
                size: spike_bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let spike_staging = ctx.staging("spike_bits staging", spike_bytes);
            let decay_groups = (0..batch_cap)
                .map(|k| {
                    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("decay_pools"),
                        layout: &pipelines.0.get_bind_group_layout(0),
                        entries: &[
                            params_entry(&params_buf, k),
                            entry(1, &offsets_buf),
                            entry(2, &receptors_buf),
                            entry(3, &g_buf),
                        ],
                    })
                })
                .collect();
            let integrate_groups = (0..batch_cap)
                .map(|k| {
                    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("integrate"),
                        layout: &pipelines.1.get_bind_group_layout(0),
                        entries: &[
                            params_entry(&params_buf, k),
                            entry(1, &offsets_buf),
                            entry(2, &pops_buf),
                            entry(3, &receptors_buf),
                            entry(4, &inputs_buf),
                            entry(5, &static_buf),
                            entry(6, &g_buf),
                            entry(7, &f32_buf),
                            entry(8, &u32_buf),
                            entry(9, &spike_buf),
                        ],
                    })
                })
                .collect();
            chunks.push(Chunk {
                first: first as u32,
                size: size as u32,
                spike_words,
                params_buf,
                offsets_buf,
                g_buf,
                f32_buf,
                u32_buf,
                spike_buf,
                spike_staging,
                decay_groups,
                integrate_groups,
                probes: Vec::new(),
                sample_groups: Vec::new(),
            });
            first += size.max(1);
        }
        let syn = if net.n_synapses() > 0 {
            if chunks.len() > 1 {
                return Err(Error::Device(format!(
                    "the neuron arrays of this network are split into {} chunks to fit storage bindings of {limit} bytes; \
                     the synapse kernels of this version need one chunk: use --backend cpu",
                    chunks.len()
                )));
            }
            let mut sk = Self::syn_kernels(&ctx, &model, &net, &st, limit, shape)?;
            sk.bind(&ctx, &chunks[0], &receptors_buf, batch_cap);
            Some(sk)
        } else {
            None
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Device(format!("binding the device image: {e}")));
        }
        let (decay_pools, integrate, sample) = pipelines;
        Ok(GpuBackend {
            ctx,
            model,
            net,
            step: 0,
            batch_cap,
            n_receptors: nr as u32,
            receptors_buf,
            decay_pools,
            integrate,
            sample,
            chunks,
            syn,
            probes: Vec::new(),
            sampling: None,
            last_spikes: Vec::new(),
            st,
            submissions: 0,
            readbacks: 0,
        })
    }

    /// The synapse image of `st` and the pipelines of the synapse kernels.
    fn syn_kernels(
        ctx: &GpuContext,
        model: &Model,
        net: &Network,
        st: &State,
        limit: u64,
        shape: RingShape,
    ) -> Result<SynKernels, Error> {
        let host = SynHost::pack(model, net, st, shape);
        let n_keys = projection_keys(model, net).len().max(1);
        let image = SynImage::new(ctx, model, &host, limit, n_keys)?;
        let mut pipelines = Vec::new();
        for (file, ep) in SYN_KERNELS {
            pipelines.push(ctx.pipeline(file, ep)?);
        }
        let spontaneous = image.off.rate_max > 0.0;
        Ok(SynKernels {
            image,
            pipelines,
            groups: Vec::new(),
            header_staging: ctx.staging("queue header staging", queue::ROW_COUNTS as u64 * 4),
            spontaneous,
            sample: ctx.pipeline("sample_synapse", "sample_synapse")?,
            probes: Vec::new(),
            sample_groups: Vec::new(),
            n_keys,
            evoked: vec![[0.0; 3]; n_keys],
            evoked_staging: ctx.staging("evoked staging", n_keys as u64 * 16),
            log_staging: None,
            log: Vec::new(),
        })
    }

    /// Adds the batch's evoked-release counters to the run's and takes the release log
    /// (entries sorted as the CPU logs them: by step, events before minis, synapse,
    /// asynchronous sites before the spike; a synapse's minis of one step merged); zeroes
    /// both for the next batch.
    fn read_release_counters(&mut self, ev: &[u32], log: Option<&[u32]>) -> Result<(), Error> {
        let sk = self.syn.as_mut().expect("synapse kernels");
        for (k, c) in sk.evoked.iter_mut().enumerate() {
            let w = &ev[4 * k..4 * k + 4];
            c[0] += w[0] as f64;
            c[1] += ((w[3] as u64) << 32 | w[2] as u64) as f64 / 65536.0;
            c[2] += w[1] as f64;
        }
        let q = &self.ctx.queue;
        q.write_buffer(
            &sk.image.evoked_buf,
            0,
            bytemuck::cast_slice(&vec![0u32; 4 * sk.n_keys]),
        );
        if let Some(l) = log {
            let (n, lost) = (l[0] as usize, l[1]);
            if lost > 0 {
                return Err(Error::Device(format!(
                    "the release log of this batch overflowed by {lost} entries (capacity {}); \
                     the run stops rather than drop them: record fewer projections' releases or use --backend cpu",
                    sk.image.off.log_cap
                )));
            }
            let n = n.min(sk.image.off.log_cap as usize);
            let mut e: Vec<(u32, u32, u32, u32, f32)> = (0..n)
                .map(|k| {
                    let w = &l[4 + 4 * k..8 + 4 * k];
                    let phase = (w[2] == LOG_MINI) as u32;
                    (w[0], phase, w[1], w[2], f32::from_bits(w[3]))
                })
                .collect();
            e.sort_by_key(|a| (a.0, a.1, a.2, a.3));
            for (step, _, syn, code, quanta) in e {
                let kind = match code {
                    LOG_SPIKE => ReleaseKind::Evoked,
                    LOG_MINI => ReleaseKind::Spontaneous,
                    _ => ReleaseKind::Asynchronous,
                };
                match sk.log.last_mut() {
                    Some(last)
                        if kind == ReleaseKind::Spontaneous
                            && last.kind == kind
                            && last.step == step
                            && last.synapse == syn =>
                    {
                        last.quanta += quanta
                    }
                    _ => sk.log.push(ReleaseEvent {
                        step,
                        synapse: syn,
                        kind,
                        quanta,
                    }),
                }
            }
            q.write_buffer(&sk.image.log_buf, 0, bytemuck::cast_slice(&[0u32; 2]));
        }
        Ok(())
    }

    /// Reads the counters of the queue header after a batch (events, quanta, overflow,
    /// non-finite conductance) and zeroes them for the next.
    fn check_synapse_header(&mut self, h: &[u32], out: &mut Batch) -> Result<(), Error> {
        out.events += h[queue::EVENTS as usize] as u64;
        let q = (h[queue::QUANTA as usize + 1] as u64) << 32 | h[queue::QUANTA as usize] as u64;
        out.quanta += q as f64 / 65536.0;
        let sk = self.syn.as_ref().expect("synapse kernels");
        let zeros = [0u32; queue::ROW_COUNTS as usize];
        let q = &self.ctx.queue;
        q.write_buffer(&sk.image.queues_buf, 0, bytemuck::cast_slice(&zeros[..2]));
        q.write_buffer(
            &sk.image.queues_buf,
            queue::NON_FINITE as u64 * 4,
            bytemuck::cast_slice(&zeros[queue::NON_FINITE as usize..]),
        );
        if h[queue::ASYNC_OVERFLOW as usize] > 0 {
            return Err(Error::Device(format!(
                "{} asynchronous fusions from step {} did not fit their row of the asynchronous release ring ({} entries per row); \
                 the run stops rather than drop them: use --backend cpu",
                h[queue::ASYNC_OVERFLOW as usize],
                u32::MAX - h[queue::OVERFLOW_STEP as usize],
                sk.image.off.async_cap
            )));
        }
        if h[queue::NON_FINITE as usize] != 0 {
            let step = u32::MAX - h[queue::NON_FINITE as usize];
            let syn = u32::MAX - h[queue::NON_FINITE as usize + 1];
            self.download()?;
            self.st.step = step + 1;
            return Err(super::cpu::non_finite_error(
                &self.model,
                &self.net,
                &self.st,
                (syn, "receptor conductance g_ns", true),
            ));
        }
        Ok(())
    }

    /// Steps per submission.
    pub fn batch_capacity(&self) -> u32 {
        self.batch_cap
    }

    /// Chunks the neurons are split into (1 unless an array exceeds one binding).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    fn pack_f32(st: &State, first: usize, size: usize) -> Vec<f32> {
        let r = first..first + size;
        let mut v = Vec::with_capacity(size * neuron_f32::COUNT as usize);
        for a in st.neuron_f32() {
            v.extend_from_slice(&a[r.clone()]);
        }
        v
    }

    fn pack_u32(st: &State, first: usize, size: usize) -> Vec<u32> {
        let r = first..first + size;
        let mut v = Vec::with_capacity(size * neuron_u32::COUNT as usize);
        // Section order of layout::neuron_u32.
        v.extend_from_slice(&st.refr[r.clone()]);
        v.extend_from_slice(&st.spike_ptr[r]);
        v
    }

    fn pack_g(st: &State, first: usize, size: usize, nr: usize) -> Vec<f32> {
        let r = first * nr..(first + size) * nr;
        let mut g = st.g_active_ns[r.clone()].to_vec();
        g.extend_from_slice(&st.g_pool_ns[r]);
        g
    }

    /// Replaces the device state by `st` (the neuron arrays, the pooled and active
    /// conductances and the step counter), e.g. to run one kernel from a CPU state.
    pub fn load_state(&mut self, st: &State) -> Result<(), Error> {
        let q = &self.ctx.queue;
        let nr = self.n_receptors as usize;
        for c in &self.chunks {
            let (f0, sz) = (c.first as usize, c.size as usize);
            if sz == 0 {
                continue;
            }
            q.write_buffer(
                &c.f32_buf,
                0,
                bytemuck::cast_slice(&Self::pack_f32(st, f0, sz)),
            );
            q.write_buffer(
                &c.u32_buf,
                0,
                bytemuck::cast_slice(&Self::pack_u32(st, f0, sz)),
            );
            if nr > 0 {
                q.write_buffer(
                    &c.g_buf,
                    0,
                    bytemuck::cast_slice(&Self::pack_g(st, f0, sz, nr)),
                );
            }
        }
        if let Some(sk) = &self.syn {
            sk.image.load(
                &self.ctx,
                &SynHost::pack(&self.model, &self.net, st, sk.image.shape()),
            );
        }
        self.step = st.step;
        self.st.step = st.step;
        Ok(())
    }

    /// Reads the device state back into the backend's `State` copy.
    fn download(&mut self) -> Result<(), Error> {
        let nr = self.n_receptors as usize;
        for c in &self.chunks {
            let (f0, sz) = (c.first as usize, c.size as usize);
            if sz == 0 {
                continue;
            }
            let fb = (neuron_f32::COUNT as usize * sz * 4) as u64;
            let ub = (neuron_u32::COUNT as usize * sz * 4) as u64;
            let gb = (2 * sz * nr * 4) as u64;
            let sf = self.ctx.staging("neuron_f32 staging", fb);
            let su = self.ctx.staging("neuron_u32 staging", ub);
            let sg = self.ctx.staging("g_ns staging", gb);
            let enc = self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            let out = self.ctx.submit_and_read(
                enc,
                &[
                    (&c.f32_buf, &sf, fb),
                    (&c.u32_buf, &su, ub),
                    (&c.g_buf, &sg, gb),
                ],
            )?;
            self.submissions += 1;
            self.readbacks += 1;
            let f: &[f32] = bytemuck::cast_slice(&out[0]);
            let u: &[u32] = bytemuck::cast_slice(&out[1]);
            let st = &mut self.st;
            let r = f0..f0 + sz;
            for (k, a) in st.neuron_f32_mut().into_iter().enumerate() {
                a[r.clone()].copy_from_slice(&f[k * sz..(k + 1) * sz]);
            }
            st.refr[r.clone()].copy_from_slice(&u[..sz]);
            st.spike_ptr[r].copy_from_slice(&u[sz..2 * sz]);
            if nr > 0 {
                let g: &[f32] = bytemuck::cast_slice(&out[2]);
                st.g_active_ns[f0 * nr..(f0 + sz) * nr].copy_from_slice(&g[..sz * nr]);
                st.g_pool_ns[f0 * nr..(f0 + sz) * nr].copy_from_slice(&g[sz * nr..]);
            }
        }
        self.st.step = self.step;
        if let Some(sk) = &self.syn {
            let host = sk.image.read(&self.ctx)?;
            self.submissions += 1;
            self.readbacks += 1;
            host.unpack(&self.net, &mut self.st);
        }
        self.st.spikes = self.last_spikes.clone();
        Ok(())
    }

    /// Prepares the sample ring and each chunk's probes and bind groups for `probes`
    /// (kept while they stay the same).
    fn prepare_sampling(&mut self, probes: &[Probe]) -> Result<(), Error> {
        let mut codes = Vec::with_capacity(probes.len());
        for p in probes {
            match *p {
                Probe::Neuron(var, n) => codes.push([probe_code(var), n]),
                Probe::Synapse(var, s) => codes.push([syn_probe_code(var), s]),
            }
        }
        if codes == self.probes && self.sampling.is_some() {
            return Ok(());
        }
        let rows_cap = self.batch_cap;
        let bytes = rows_cap as u64 * codes.len() as u64 * 4;
        let samples_buf = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("samples"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.ctx.staging("samples staging", bytes);
        for c in self.chunks.iter_mut() {
            c.probes = codes
                .iter()
                .enumerate()
                .filter(|(_, p)| p[0] < probe::CA_RES && p[1] >= c.first && p[1] < c.first + c.size)
                .map(|(col, p)| [p[0], p[1] - c.first, col as u32, 0])
                .collect();
            let probes_buf = self.ctx.storage("probes", &c.probes);
            c.sample_groups = (0..self.batch_cap)
                .map(|k| {
                    self.ctx
                        .device
                        .create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("sample"),
                            layout: &self.sample.get_bind_group_layout(0),
                            entries: &[
                                params_entry(&c.params_buf, k),
                                entry(1, &c.offsets_buf),
                                entry(2, &self.receptors_buf),
                                entry(3, &c.g_buf),
                                entry(4, &c.f32_buf),
                                entry(5, &c.u32_buf),
                                entry(6, &probes_buf),
                                entry(7, &samples_buf),
                            ],
                        })
                })
                .collect();
        }
        if let Some(sk) = self.syn.as_mut() {
            sk.probes = codes
                .iter()
                .enumerate()
                .filter(|(_, p)| p[0] >= probe::CA_RES)
                .map(|(col, p)| [p[0], p[1], col as u32, 1])
                .collect();
            let probes_buf = self.ctx.storage("synapse probes", &sk.probes);
            let im = &sk.image;
            let c = &self.chunks[0];
            let layout = sk.sample.get_bind_group_layout(0);
            sk.sample_groups = (0..self.batch_cap)
                .map(|k| {
                    self.ctx
                        .device
                        .create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("sample_synapse"),
                            layout: &layout,
                            entries: &[
                                params_entry(&c.params_buf, k),
                                entry(1, &im.off_buf),
                                entry(2, &im.types_buf),
                                entry(3, &im.tables_buf),
                                entry(4, &im.stat_buf),
                                entry(5, &im.u_buf),
                                entry(6, &im.f_buf),
                                entry(7, &self.receptors_buf),
                                entry(8, &probes_buf),
                                entry(9, &samples_buf),
                            ],
                        })
                })
                .collect();
        }
        self.probes = codes;
        self.sampling = Some(Sampling {
            rows_cap,
            samples_buf,
            staging,
        });
        Ok(())
    }

    /// One submission of `n ≤ batch_cap` steps; appends to `out`.
    fn run_batch(
        &mut self,
        n: u32,
        sample_every: u32,
        sampled: bool,
        out: &mut Batch,
    ) -> Result<(), Error> {
        let max_dim = self.ctx.limits.max_compute_workgroups_per_dimension;
        let mut rows = 0u32;
        let mut sample_at = Vec::with_capacity(n as usize);
        for k in 0..n {
            let due = sampled && (self.step + k).is_multiple_of(sample_every);
            sample_at.push(due.then_some(rows));
            rows += due as u32;
        }
        for c in &self.chunks {
            let mut params = vec![0u8; (n as u64 * STEP_PARAMS_STRIDE) as usize];
            for (k, row) in sample_at.iter().enumerate() {
                let mut p = step_params(&self.model, &self.net, self.step + k as u32);
                p.n_neurons = c.size;
                p.neuron_base = c.first;
                p.spike_words = c.spike_words;
                p.batch_row = k as u32;
                p.n_probes = c.probes.len() as u32;
                p.probe_stride = self.probes.len() as u32;
                p.sample_row = row.unwrap_or(0);
                let at = k * STEP_PARAMS_STRIDE as usize;
                params[at..at + std::mem::size_of::<StepParams>()]
                    .copy_from_slice(bytemuck::bytes_of(&p));
            }
            self.ctx.queue.write_buffer(&c.params_buf, 0, &params);
        }
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        for c in &self.chunks {
            enc.clear_buffer(&c.spike_buf, 0, None);
        }
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for (k, row) in sample_at.iter().enumerate() {
                for c in &self.chunks {
                    if row.is_some() && !c.probes.is_empty() {
                        let (x, y) = groups(c.probes.len() as u32, max_dim);
                        pass.set_pipeline(&self.sample);
                        pass.set_bind_group(0, &c.sample_groups[k], &[]);
                        pass.dispatch_workgroups(x, y, 1);
                    }
                    // 1 deliver and 2 release (+ last step's minis), sized on the GPU.
                    if let Some(sk) = &self.syn {
                        if row.is_some() && !sk.probes.is_empty() {
                            let (x, y) = groups(sk.probes.len() as u32, max_dim);
                            pass.set_pipeline(&sk.sample);
                            pass.set_bind_group(0, &sk.sample_groups[k], &[]);
                            pass.dispatch_workgroups(x, y, 1);
                        }
                        sk.dispatch(&mut pass, K_PLAN_DELIVER, k, Size::One);
                        sk.dispatch(&mut pass, K_DELIVER, k, Size::Indirect(0));
                        sk.dispatch(&mut pass, K_PLAN_RELEASE, k, Size::One);
                        sk.dispatch(&mut pass, K_RELEASE, k, Size::Indirect(1));
                    }
                    if self.n_receptors > 0 {
                        let (x, y) = groups(c.size * self.n_receptors, max_dim);
                        pass.set_pipeline(&self.decay_pools);
                        pass.set_bind_group(0, &c.decay_groups[k], &[]);
                        pass.dispatch_workgroups(x, y, 1);
                    }
                    // 3 cleft, then the per-neuron gather of its contributions.
                    let (x, y) = groups(c.size, max_dim);
                    if let Some(sk) = &self.syn {
                        sk.dispatch(&mut pass, K_PLAN_CLEFT, k, Size::One);
                        sk.dispatch(&mut pass, K_CLEFT, k, Size::Indirect(2));
                        sk.dispatch(&mut pass, K_GATHER, k, Size::Groups(x, y));
                    }
                    // 4 integrate.
                    pass.set_pipeline(&self.integrate);
                    pass.set_bind_group(0, &c.integrate_groups[k], &[]);
                    pass.dispatch_workgroups(x, y, 1);
                    // 5 propagate and 6 spontaneous.
                    if let Some(sk) = &self.syn {
                        sk.dispatch(&mut pass, K_PROPAGATE, k, Size::Groups(x, y));
                        if sk.spontaneous {
                            sk.dispatch(&mut pass, K_SPONTANEOUS, k, Size::Groups(x, y));
                        }
                    }
                }
            }
        }
        let mut copies: Vec<(&wgpu::Buffer, &wgpu::Buffer, u64)> = self
            .chunks
            .iter()
            .map(|c| {
                (
                    &c.spike_buf,
                    &c.spike_staging,
                    (3 + n as u64 * c.spike_words as u64) * 4,
                )
            })
            .collect();
        if let Some(s) = self.sampling.as_ref().filter(|_| rows > 0) {
            copies.push((
                &s.samples_buf,
                &s.staging,
                rows as u64 * self.probes.len() as u64 * 4,
            ));
        }
        let n_data = copies.len();
        if let Some(sk) = &self.syn {
            copies.push((
                &sk.image.queues_buf,
                &sk.header_staging,
                queue::ROW_COUNTS as u64 * 4,
            ));
            copies.push((
                &sk.image.evoked_buf,
                &sk.evoked_staging,
                sk.n_keys as u64 * 16,
            ));
            if let Some(ls) = &sk.log_staging {
                copies.push((&sk.image.log_buf, ls, ls.size()));
            }
        }
        let data = self.ctx.submit_and_read(enc, &copies)?;
        self.submissions += 1;
        self.readbacks += 1;
        if self.syn.is_some() {
            let h: &[u32] = bytemuck::cast_slice(&data[n_data]);
            self.check_synapse_header(h, out)?;
            let ev: &[u32] = bytemuck::cast_slice(&data[n_data + 1]);
            let log: Option<&[u32]> = data.get(n_data + 2).map(|d| bytemuck::cast_slice(d));
            self.read_release_counters(ev, log)?;
            if let Some(sk) = self.syn.as_mut() {
                out.releases.append(&mut sk.log);
            }
        }
        // The first non-finite record over the chunks (smallest step, then neuron).
        let mut bad: Option<(u32, u32, u32)> = None;
        for d in data.iter().take(self.chunks.len()) {
            let w: &[u32] = bytemuck::cast_slice(d);
            if w[0] != 0 {
                let rec = (u32::MAX - w[0], u32::MAX - w[1], w[2]);
                if bad.is_none_or(|b| (rec.0, rec.1) < (b.0, b.1)) {
                    bad = Some(rec);
                }
            }
        }
        if let Some((step, neuron, code)) = bad {
            // Stop; the state read back is the batch's end, where the value stays non-finite.
            let var = ["v_mv", "v_mv", "m", "h", "n"][code.min(4) as usize];
            self.download()?;
            self.st.step = step + 1;
            return Err(super::cpu::non_finite_error(
                &self.model,
                &self.net,
                &self.st,
                (neuron, var, false),
            ));
        }
        // Decode the bit rows: ascending neuron ids per step (chunks in order).
        for k in 0..n as usize {
            for (c, d) in self.chunks.iter().zip(&data) {
                let bits: &[u32] = bytemuck::cast_slice(d);
                let w = c.spike_words as usize;
                for (j, &word) in bits[3 + k * w..3 + (k + 1) * w].iter().enumerate() {
                    let mut x = word;
                    while x != 0 {
                        let b = x.trailing_zeros();
                        out.spike_ids.push(c.first + (j as u32) * 32 + b);
                        x &= x - 1;
                    }
                }
            }
            out.spike_offsets.push(out.spike_ids.len() as u32);
        }
        if rows > 0 {
            out.samples
                .extend_from_slice(bytemuck::cast_slice::<u8, f32>(&data[self.chunks.len()]));
        }
        let last = out.spike_offsets.len() - 2;
        self.last_spikes = out.spike_ids[out.spike_offsets[last] as usize..].to_vec();
        self.step += n;
        out.n_steps += n;
        Ok(())
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn device(&self) -> String {
        self.ctx.adapter_name()
    }

    fn step(&mut self) -> Result<(), Error> {
        self.advance(1, &[], 1).map(|_| ())
    }

    fn step_index(&self) -> u32 {
        self.step
    }

    fn spikes(&self) -> &[u32] {
        &self.last_spikes
    }

    fn quanta_last_step(&self) -> f64 {
        0.0
    }

    fn sample(&mut self, probes: &[Probe], out: &mut Vec<f32>) -> Result<(), Error> {
        self.download()?;
        out.clear();
        out.extend(
            probes
                .iter()
                .map(|p| super::cpu::sample_one(&self.model, &self.net, &self.st, *p)),
        );
        Ok(())
    }

    fn state(&mut self) -> Result<&State, Error> {
        self.download()?;
        Ok(&self.st)
    }

    fn events_last_step(&self) -> u64 {
        0
    }

    fn set_profiling(&mut self, _on: bool) {}

    fn traffic(&self) -> Option<(u64, u64)> {
        Some((self.submissions, self.readbacks))
    }

    fn profile(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    fn evoked_per_projection(&self) -> Vec<(String, u64, f64, u64)> {
        let Some(sk) = &self.syn else {
            return Vec::new();
        };
        let keys = projection_keys(&self.model, &self.net);
        self.net
            .projections
            .iter()
            .map(|p| {
                let k = (p.source as u16, p.target as u16, p.syn_type as u16);
                let c = keys
                    .iter()
                    .position(|&x| x == k)
                    .map_or([0.0; 3], |i| sk.evoked[i]);
                (p.name.clone(), c[0] as u64, c[1], c[2] as u64)
            })
            .collect()
    }

    fn watch_releases(&mut self, synapses: &[u32]) {
        let Some(sk) = self.syn.as_mut() else {
            return;
        };
        let ns = self.net.n_synapses() as usize;
        let mut watch = vec![0u32; ns];
        // Entries per step of a watched synapse: its asynchronous fusions, its spike and
        // its minis (at most N each).
        let mut per_step = 0u64;
        for &s in synapses {
            if (s as usize) < ns && watch[s as usize] == 0 {
                watch[s as usize] = 1;
                let ty = &self.model.syn_types[self.net.syn_type[s as usize] as usize].gpu;
                per_step += 2 * ty.n_sites as u64 + 1;
            }
        }
        let cap = (per_step * self.batch_cap as u64).clamp(1, 1 << 22);
        let q = &self.ctx.queue;
        q.write_buffer(
            &sk.image.u_buf,
            (layout::syn_u32::WATCH as usize * ns * 4) as u64,
            bytemuck::cast_slice(&watch),
        );
        sk.image.off.log_cap = cap as u32;
        q.write_buffer(&sk.image.off_buf, 0, bytemuck::bytes_of(&sk.image.off));
        let words = 4 + 4 * cap as usize;
        sk.image.log_buf = self.ctx.storage("release_log", &vec![0u32; words]);
        sk.log_staging =
            (per_step > 0).then(|| self.ctx.staging("release log staging", words as u64 * 4));
        sk.bind(
            &self.ctx,
            &self.chunks[0],
            &self.receptors_buf,
            self.batch_cap,
        );
    }

    fn take_releases(&mut self, out: &mut Vec<ReleaseEvent>) {
        if let Some(sk) = self.syn.as_mut() {
            out.append(&mut sk.log);
        }
    }

    fn advance(
        &mut self,
        n_steps: u32,
        probes: &[Probe],
        sample_every: u32,
    ) -> Result<Batch, Error> {
        let sampled = !probes.is_empty();
        if sampled {
            self.prepare_sampling(probes)?;
        }
        let mut out = Batch {
            first_step: self.step,
            spike_offsets: vec![0],
            ..Batch::default()
        };
        let mut left = n_steps;
        while left > 0 {
            let mut n = left.min(self.batch_cap);
            if let Some(s) = &self.sampling {
                n = n.min(s.rows_cap);
            }
            self.run_batch(n, sample_every.max(1), sampled, &mut out)?;
            left -= n;
        }
        Ok(out)
    }
}
