//! The GPU backend: the step's kernels as WGSL compute shaders through wgpu, over the
//! device image (`layout::ImageOffsets` for the neurons, `layout::SynOffsets` for the
//! synapses, see [`super::gpu_syn`]).
//!
//! A batch of up to [`GpuBackend::batch_capacity`] steps is encoded in one compute pass
//! and one submission. Per step, in the CPU's pipeline order: `sample` and
//! `sample_synapse` (on sampled steps), `plan_deliver`, `deliver`, `plan_release`,
//! `release`, `decay_pools`, `plan_cleft`, `cleft`, `gather`, `integrate`, then
//! `propagate_count`, `propagate_scan`, `propagate` and `spontaneous`, each bound to that
//! step's `StepParams` (a uniform array with one entry per step, 256 bytes apart). The
//! activity-dependent kernels (deliver, release, cleft) are dispatched indirectly with
//! workgroup counts the `plan` kernels compute from GPU counters, so nothing returns to
//! the host inside a batch. Spikes go to
//! a ring of bit rows (a bit per neuron of the network; atomicOr, exact and order-free),
//! samples to a ring of rows, and the batch's counters (events, quanta, evoked releases
//! per projection, the release log, overflow and non-finite records) are read back once
//! per batch. On lavapipe the results are bit-identical to the CPU reference
//! (tests/parity.rs, tests/synparity.rs).
//!
//! Arrays larger than the adapter's largest storage binding (128 MiB on lavapipe and many
//! GPUs) are split: the neurons are cut into chunks such that every neuron array of a
//! chunk, and every synapse buffer of the chunk's incoming synapses (a contiguous id
//! range), fits one binding. Each chunk is a complete image with its own buffers and
//! bind groups; per step the kernels run chunk by chunk (`StepParams::neuron_base` and
//! `SynOffsets::syn_base` give the chunk's first global ids), and `propagate` of every
//! chunk runs after `integrate` of all, over the network's spike row, placing the
//! arrivals of its own synapses in its arrival pool.

use super::cpu::sample::{probe_code, syn_probe_code};
use super::cpu::step_params;
use super::gpu_syn::{
    async_sites, chunk_bytes, delay_classes, pool_per_neuron, projection_keys, synapses_of,
    RingShape, SynFeatures, SynHost, SynImage,
};
use super::{Backend, Batch, Probe, ReleaseEvent, ReleaseKind, SynVar};
use crate::error::Error;
use crate::gpu::GpuContext;
use crate::layout::{self, probe, queue};
use crate::layout::{
    neuron_f32, neuron_u32, GpuInput, ImageOffsets, StepParams, STEP_PARAMS_STRIDE,
};
use crate::model::Model;
use crate::network::Network;
use crate::state::{ActivePool, State};
use std::ops::Range;
use std::sync::Arc;

/// Steps per submission unless told otherwise.
pub const DEFAULT_BATCH: u32 = 256;
/// Threads per workgroup (WORKGROUP in common.wgsl).
const WORKGROUP: u32 = 64;

/// Workgroups per row of a 2-D dispatch (GROUPS_X in common.wgsl): the least
/// `max_compute_workgroups_per_dimension` WebGPU allows, fixed so that the shaders know
/// it without reading `@builtin(num_workgroups)`.
const GROUPS_X: u32 = 65_535;

/// Workgroup counts for `n` invocations: 1-D up to [`GROUPS_X`] groups, rows of
/// [`GROUPS_X`] beyond (`invocation_index` in common.wgsl).
fn groups(n: u32) -> (u32, u32) {
    let g = n.div_ceil(WORKGROUP).max(1);
    if g <= GROUPS_X {
        (g, 1)
    } else {
        (GROUPS_X, g.div_ceil(GROUPS_X))
    }
}

/// The image of one chunk of neurons (and their incoming synapses): its buffers and the
/// bind groups of each batch row.
struct Chunk {
    first: u32,
    size: u32,
    params_buf: wgpu::Buffer,
    offsets_buf: wgpu::Buffer,
    g_buf: wgpu::Buffer,
    f32_buf: wgpu::Buffer,
    u32_buf: wgpu::Buffer,
    /// Bytes of the chunk's static neuron image (populations, inputs, spike times).
    static_bytes: u64,
    decay_groups: Vec<wgpu::BindGroup>,
    integrate_groups: Vec<wgpu::BindGroup>,
    /// Probes of this chunk: (code, neuron in the chunk, column, 0), and their bind groups.
    probes: Vec<[u32; 4]>,
    sample_groups: Vec<wgpu::BindGroup>,
    /// The chunk's synapse image, when it has incoming synapses.
    syn: Option<SynChunk>,
}

impl Chunk {
    fn neurons(&self) -> Range<usize> {
        self.first as usize..(self.first + self.size) as usize
    }
}

/// The synapse image of a chunk, its bind groups, probes and header staging buffer.
struct SynChunk {
    image: SynImage,
    /// Bind group of each batch row, per kernel of [`SYN_KERNELS`].
    groups: Vec<Vec<wgpu::BindGroup>>,
    /// Two staging buffers for the headers, one per batch in flight.
    header_staging: [wgpu::Buffer; 2],
    /// Σ N over the chunk's asynchronous synapses (rows shorter than this can overflow).
    async_sites: u64,
    /// Synapse probes of this chunk (code, local synapse, column, 1) and bind groups.
    probes: Vec<[u32; 4]>,
    sample_groups: Vec<wgpu::BindGroup>,
}

/// What the chunks' synapse kernels share: pipelines, type tables, the evoked-release
/// counters and the release log.
struct SynShared {
    pipelines: Vec<wgpu::ComputePipeline>,
    sample: wgpu::ComputePipeline,
    types_buf: wgpu::Buffer,
    tables_buf: wgpu::Buffer,
    spontaneous: bool,
    /// Projection keys, their counts so far (events, quanta, failures), the per-batch
    /// counters and their staging buffer.
    n_keys: usize,
    evoked: Vec<[f64; 3]>,
    evoked_buf: wgpu::Buffer,
    evoked_staging: [wgpu::Buffer; 2],
    /// The release log (shared by the chunks), its staging buffer while synapses are
    /// watched, and the entries read.
    log_buf: wgpu::Buffer,
    log_staging: Option<[wgpu::Buffer; 2]>,
    log_cap: u32,
    /// Steps per batch the log holds even if every watched synapse logged the most it
    /// can in each (u32::MAX while none is watched): `batch_len` keeps batches this short.
    log_steps: u32,
    /// Most entries the log may take ([`LOG_MAX_ENTRIES`], or fewer to test).
    log_max: u64,
    log: Vec<ReleaseEvent>,
}

/// Most entries of the release log (16 B each: 64 MiB). A batch is cut to the steps the
/// log holds at worst for the watched synapses (`watch_releases`), so it cannot overflow
/// unless a single step's worst case exceeds this.
pub const LOG_MAX_ENTRIES: u64 = 1 << 22;

/// How a synapse kernel is dispatched.
enum Size {
    /// One workgroup (the `plan` kernels).
    One,
    /// Indirectly, from entry k (of three) of the dispatch buffer.
    Indirect(u64),
    /// These workgroup counts.
    Groups(u32, u32),
}

/// Release log codes (release.wgsl, spontaneous.wgsl) besides an asynchronous site.
const LOG_SPIKE: u32 = u32::MAX;
const LOG_MINI: u32 = u32::MAX - 1;

/// The synapse kernels: (shader file, entry point).
const SYN_KERNELS: [(&str, &str); 11] = [
    ("plan", "plan_deliver"),
    ("deliver", "deliver"),
    ("plan", "plan_release"),
    ("release", "release"),
    ("plan", "plan_cleft"),
    ("cleft", "cleft"),
    ("gather", "gather"),
    ("propagate", "propagate_count"),
    ("propagate", "propagate_scan"),
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
const K_PROPAGATE_COUNT: usize = 7;
const K_PROPAGATE_SCAN: usize = 8;
const K_PROPAGATE: usize = 9;
const K_SPONTANEOUS: usize = 10;

impl SynChunk {
    /// Records kernel `kernel` of batch row `row` into `pass`.
    fn dispatch(
        &self,
        shared: &SynShared,
        pass: &mut wgpu::ComputePass<'_>,
        kernel: usize,
        row: usize,
        size: Size,
    ) {
        pass.set_pipeline(&shared.pipelines[kernel]);
        pass.set_bind_group(0, &self.groups[kernel][row], &[]);
        match size {
            Size::One => pass.dispatch_workgroups(1, 1, 1),
            Size::Indirect(k) => {
                pass.dispatch_workgroups_indirect(&self.image.dispatch_buf, k * 12)
            }
            Size::Groups(x, y) => pass.dispatch_workgroups(x, y, 1),
        }
    }
}

/// The buffers of a chunk's neuron image that its synapse kernels bind.
struct NeuronBufs<'a> {
    params: &'a wgpu::Buffer,
    offsets: &'a wgpu::Buffer,
    g: &'a wgpu::Buffer,
    spikes: &'a wgpu::Buffer,
    receptors: &'a wgpu::Buffer,
}

/// The bind groups of every synapse kernel and batch row of a chunk.
fn bind_synapses(
    ctx: &GpuContext,
    nb: &NeuronBufs<'_>,
    im: &SynImage,
    sh: &SynShared,
    batch_cap: u32,
) -> Vec<Vec<wgpu::BindGroup>> {
    SYN_KERNELS
        .iter()
        .zip(&sh.pipelines)
        .map(|((file, ep), pipe)| {
            let layout = pipe.get_bind_group_layout(0);
            let rest: Vec<&wgpu::Buffer> = match *file {
                "plan" => vec![&im.off_buf, &im.queues_buf, &im.dispatch_buf],
                "deliver" => vec![&im.off_buf, &im.f_buf, &im.flags_buf, &im.queues_buf],
                "release" => vec![
                    &im.off_buf,
                    &sh.types_buf,
                    &sh.tables_buf,
                    &im.stat_buf,
                    &im.u_buf,
                    &im.f_buf,
                    &im.flags_buf,
                    &im.queues_buf,
                    &sh.evoked_buf,
                    &sh.log_buf,
                    nb.receptors,
                ],
                "cleft" => vec![
                    &im.off_buf,
                    &sh.types_buf,
                    nb.receptors,
                    &im.stat_buf,
                    &im.u_buf,
                    &im.f_buf,
                    &im.flags_buf,
                    &im.queues_buf,
                ],
                "gather" => vec![
                    &im.off_buf,
                    nb.offsets,
                    &sh.types_buf,
                    nb.receptors,
                    &im.stat_buf,
                    &im.f_buf,
                    &im.flags_buf,
                    nb.g,
                ],
                "propagate" => vec![&im.off_buf, &im.stat_buf, nb.spikes, &im.queues_buf],
                _ => vec![
                    &im.off_buf,
                    &sh.types_buf,
                    &sh.tables_buf,
                    &im.stat_buf,
                    &im.u_buf,
                    &im.f_buf,
                    &im.flags_buf,
                    &im.queues_buf,
                    &sh.log_buf,
                ],
            };
            row_groups(ctx, &layout, ep, nb.params, batch_cap, &rest)
        })
        .collect()
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
    shape: RingShape,
    syn: Option<SynShared>,
    /// Spike rows: three words of the non-finite record, then `batch_cap` rows of
    /// `spike_words` words (a bit per neuron of the network).
    spike_words: u32,
    spike_buf: wgpu::Buffer,
    /// Staging buffers come in pairs: while one batch's results are read, the next batch,
    /// already submitted, copies its own into the other.
    spike_staging: [wgpu::Buffer; 2],
    /// The staging set of the next batch (0 or 1).
    parity: usize,
    /// Batches submitted while the previous one was still being read back.
    overlapped: u64,
    probes: Vec<[u32; 2]>,
    sampling: Option<Sampling>,
    last_spikes: Vec<u32>,
    st: State,
    submissions: u64,
    readbacks: u64,
    /// Copies of every buffer a batch changes, taken at the start of each batch while an
    /// asynchronous ring row can overflow, so the batch can run again with longer rows.
    shadows: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    /// Batches run again after an asynchronous ring row overflowed.
    reruns: u32,
}

/// A batch's outcome when an asynchronous ring row overflowed: (chunk, fusions lost).
struct Overflow(Vec<usize>);

/// The sample ring shared by the chunks (each writes its probes' columns).
struct Sampling {
    rows_cap: u32,
    samples_buf: wgpu::Buffer,
    staging: [wgpu::Buffer; 2],
}

/// A submitted batch whose results have not been read: what [`GpuBackend::finish_batch`]
/// needs to decode them.
struct InFlight {
    pending: crate::gpu::PendingReads,
    first: u32,
    n: u32,
    /// Positions of the copies: samples (if any), the chunks' headers, the counters.
    at_samples: Option<usize>,
    at_headers: usize,
    at_counters: usize,
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// One bind group per batch row for `layout`: binding 0 is row k's `StepParams` in
/// `params`, then `rest` from binding 1 on.
fn row_groups(
    ctx: &GpuContext,
    layout: &wgpu::BindGroupLayout,
    label: &str,
    params: &wgpu::Buffer,
    batch_cap: u32,
    rest: &[&wgpu::Buffer],
) -> Vec<wgpu::BindGroup> {
    (0..batch_cap)
        .map(|k| {
            let mut e = vec![params_entry(params, k)];
            for (b, buf) in rest.iter().enumerate() {
                e.push(entry(1 + b as u32, buf));
            }
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout,
                entries: &e,
            })
        })
        .collect()
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

/// The neuron ranges of the chunks: each chunk's neuron arrays, and each buffer of its
/// incoming synapses' image, fit `limit` bytes (`max_neurons` neurons at most).
fn chunk_ranges(
    model: &Model,
    net: &Network,
    shape: &RingShape,
    limit: u64,
    max_neurons: u64,
) -> Result<Vec<Range<usize>>, Error> {
    let nn = net.n_neurons() as usize;
    if nn == 0 {
        return Ok(std::iter::once(0..0).collect());
    }
    let feat = SynFeatures::of(model, shape);
    // The network's delay classes bound each chunk's; the arrival pool of a chunk holds
    // its neurons' shares.
    let classes = delay_classes(net, 0..net.n_synapses() as usize).len() as u64;
    let pool = pool_per_neuron(model, net);
    let fits = |r: &Range<usize>, async_sites: u64, p: u64| {
        let ns = synapses_of(net, r).len() as u64;
        let cap = shape.cap_for(async_sites) as u64;
        chunk_bytes(ns, nn as u64, r.len() as u64, shape, &feat, cap, classes, p)
            .iter()
            .all(|&b| b <= limit)
    };
    let sites_of = |n: usize| async_sites(model, net, synapses_of(net, &(n..n + 1)));
    let mut out = Vec::new();
    let mut a = 0;
    while a < nn {
        let mut sites = sites_of(a);
        let mut p = pool[a];
        if net.n_synapses() > 0 && !fits(&(a..a + 1), sites, p) {
            return Err(Error::Device(format!(
                "the {} incoming synapses of neuron {a} alone need more than one storage binding of this adapter holds ({limit} bytes): use --backend cpu",
                synapses_of(net, &(a..a + 1)).len()
            )));
        }
        let mut b = a + 1;
        while b < nn && ((b + 1 - a) as u64) <= max_neurons {
            let s = sites_of(b);
            if net.n_synapses() > 0 && !fits(&(a..b + 1), sites + s, p + pool[b]) {
                break;
            }
            sites += s;
            p += pool[b];
            b += 1;
        }
        out.push(a..b);
        a = b;
    }
    Ok(out)
}

/// Refuses, before anything is allocated, an image of `net` (with the `released` sums
/// when `released_sums`) that the adapter says its memory cannot hold: more than 90 % of
/// its largest device-local heap (the driver and other programs hold the rest).
fn fits_memory(
    ctx: &GpuContext,
    model: &Model,
    net: &Network,
    released_sums: bool,
) -> Result<(), Error> {
    let need = image_bytes(model, net, released_sums);
    if let Some(mem) = ctx.memory_bytes {
        if need > 0.9 * mem as f64 {
            return Err(Error::Device(format!(
                "the network's device image needs about {} ({} neurons, {} synapses with their rings{}), more than 90 % of the {} of device memory of {}; run it with --backend cpu or make it smaller",
                crate::network::bytes_text(need),
                net.n_neurons(),
                net.n_synapses(),
                if released_sums {
                    " and the sums of the `released` report"
                } else {
                    ""
                },
                crate::network::bytes_text(mem as f64),
                ctx.adapter_name()
            )));
        }
    }
    Ok(())
}

/// Device bytes of the neuron part of the image of `net` as one chunk: the state arrays
/// (`layout::neuron_f32`, `neuron_u32`, two conductances per receptor), the static image
/// (populations, inputs, spike times) and the spike rows of a batch of [`DEFAULT_BATCH`]
/// steps with their two staging copies.
pub fn neuron_bytes(model: &Model, net: &Network) -> u64 {
    let nn = net.n_neurons() as u64;
    let nr = model.receptors.len() as u64;
    // A buffer is never empty (`GpuContext::storage`).
    let buf = |b: u64| if b == 0 { 16 } else { b };
    let state = buf(nn * neuron_f32::COUNT as u64 * 4)
        + buf(nn * neuron_u32::COUNT as u64 * 4)
        + buf(nn * 2 * nr * 4);
    let stat = buf(static_image(net, 0, nn as usize).0.len() as u64 * 4);
    state + stat + 3 * spike_rows_bytes(spike_words(nn), DEFAULT_BATCH)
}

/// Words of one spike row: a bit per neuron of the network.
fn spike_words(nn: u64) -> u32 {
    (nn as u32).div_ceil(32).max(1)
}

/// Bytes of the spike buffer (and of each of its staging copies): `rows` rows of
/// `words` words after the three words of the non-finite record.
fn spike_rows_bytes(words: u32, rows: u32) -> u64 {
    (rows as u64 * words as u64 + 3) * 4
}

/// Device bytes of the image of `net`: the neuron part ([`neuron_bytes`]) and the
/// synapse image with its rings (`gpu_syn::device_bytes`, with the sums of a watched
/// `released` probe when `released_sums`); `quantal check` prints it,
/// [`Backend::device_image_bytes`] reports what a backend allocated.
pub fn image_bytes(model: &Model, net: &Network, released_sums: bool) -> f64 {
    neuron_bytes(model, net) as f64 + super::gpu_syn::device_bytes(model, net, released_sums) as f64
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
            async_cap: Some(async_cap.max(1)),
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
        // Without the `released` sums, which `watch` adds when a probe asks for them.
        fits_memory(&ctx, &model, &net, false)?;
        let need = image_bytes(&model, &net, false);
        let st = State::new(&model, &net);
        let nn = net.n_neurons() as u64;
        let nr = model.receptors.len() as u64;
        let limit = max_binding_bytes.min(ctx.limits.max_storage_buffer_binding_size);
        // Spike rows: a bit per neuron of the network, batch_cap rows plus the record;
        // fewer steps per submission when the rows would not fit one binding.
        if ctx.limits.max_compute_workgroups_per_dimension < GROUPS_X {
            return Err(Error::Device(format!(
                "{} dispatches at most {} workgroups per dimension; the kernels need {GROUPS_X} (WebGPU's minimum)",
                ctx.adapter_name(),
                ctx.limits.max_compute_workgroups_per_dimension
            )));
        }
        let spike_words = spike_words(nn);
        let rows = (limit / 4).saturating_sub(3) / spike_words as u64;
        if rows == 0 {
            return Err(Error::Device(format!(
                "storage bindings of {limit} bytes cannot hold one spike row of {nn} neurons"
            )));
        }
        let batch_cap = batch_cap.max(1).min(rows.min(u32::MAX as u64) as u32);
        // Neurons per chunk: every per-neuron array of a chunk fits one binding.
        let per_neuron = [
            neuron_f32::COUNT as u64 * 4,
            neuron_u32::COUNT as u64 * 4,
            2 * nr.max(1) * 4,
            // packed population, input and spike offsets
            2 * 4 + 2,
        ];
        let mut max_neurons = nn.max(1);
        for b in per_neuron {
            max_neurons = max_neurons.min((limit.saturating_sub(64) / b).max(1));
        }
        let ranges = chunk_ranges(&model, &net, &shape, limit, max_neurons)?;
        let pipelines = (
            ctx.pipeline("decay_pools", "decay_pools")?,
            ctx.pipeline("integrate", "integrate")?,
            ctx.pipeline("sample", "sample")?,
        );
        // Allocation beyond the adapter's memory budget fails as an error of this scope
        // (GpuContext asks wgpu to refuse resources past 95 % of the budget where the
        // driver reports one): the network is refused with its size, not lost mid-run.
        let oom = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
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
        let spike_bytes = spike_rows_bytes(spike_words, batch_cap);
        let spike_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("spike_bits"),
            size: spike_bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let spike_staging = [0, 1].map(|_| ctx.staging("spike_bits staging", spike_bytes));
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let syn = if net.n_synapses() > 0 {
            Some(Self::syn_shared(&ctx, &model, &net)?)
        } else {
            None
        };
        let mut chunks = Vec::new();
        for r in ranges {
            let (f0, sz) = (r.start, r.len());
            let (stat, off_base) = static_image(&net, f0, sz);
            if stat.len() as u64 * 4 > limit {
                return Err(Error::Device(format!(
                    "the spike times and inputs of neurons {f0}..{} need {} bytes, more than one storage binding holds ({limit} bytes)",
                    f0 + sz,
                    stat.len() * 4
                )));
            }
            let off = ImageOffsets {
                g_pool: (sz as u64 * nr) as u32,
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
            let decay_groups = row_groups(
                &ctx,
                &pipelines.0.get_bind_group_layout(0),
                "decay_pools",
                &params_buf,
                batch_cap,
                &[&offsets_buf, &receptors_buf, &g_buf],
            );
            let integrate_groups = row_groups(
                &ctx,
                &pipelines.1.get_bind_group_layout(0),
                "integrate",
                &params_buf,
                batch_cap,
                &[
                    &offsets_buf,
                    &pops_buf,
                    &receptors_buf,
                    &inputs_buf,
                    &static_buf,
                    &g_buf,
                    &f32_buf,
                    &u32_buf,
                    &spike_buf,
                ],
            );
            let syns = synapses_of(&net, &r);
            let syn_chunk = match &syn {
                Some(sh) if !syns.is_empty() => {
                    let host = SynHost::pack(&model, &net, &st, &shape, &r);
                    let image = SynImage::new(&ctx, &host, syns, limit)?;
                    let nb = NeuronBufs {
                        params: &params_buf,
                        offsets: &offsets_buf,
                        g: &g_buf,
                        spikes: &spike_buf,
                        receptors: &receptors_buf,
                    };
                    let groups = bind_synapses(&ctx, &nb, &image, sh, batch_cap);
                    Some(SynChunk {
                        async_sites: async_sites(&model, &net, image.syns.clone()),
                        image,
                        groups,
                        header_staging: [0, 1].map(|_| {
                            ctx.staging("queue header staging", queue::ROW_COUNTS as u64 * 4)
                        }),
                        probes: Vec::new(),
                        sample_groups: Vec::new(),
                    })
                }
                _ => None,
            };
            chunks.push(Chunk {
                first: f0 as u32,
                size: sz as u32,
                params_buf,
                offsets_buf,
                g_buf,
                f32_buf,
                u32_buf,
                static_bytes: static_buf.size(),
                decay_groups,
                integrate_groups,
                probes: Vec::new(),
                sample_groups: Vec::new(),
                syn: syn_chunk,
            });
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Device(format!("binding the device image: {e}")));
        }
        if let Some(e) = pollster::block_on(oom.pop()) {
            return Err(Error::Device(format!(
                "the network's device image, about {} ({} neurons, {} synapses with their rings), does not fit the memory of {}: {e}; run it with --backend cpu or make it smaller",
                crate::network::bytes_text(need),
                net.n_neurons(),
                net.n_synapses(),
                ctx.adapter_name()
            )));
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
            shape,
            syn,
            spike_words,
            spike_buf,
            spike_staging,
            parity: 0,
            overlapped: 0,
            probes: Vec::new(),
            sampling: None,
            last_spikes: Vec::new(),
            st,
            submissions: 0,
            readbacks: 0,
            shadows: Vec::new(),
            reruns: 0,
        })
    }

    /// Batches run again so far because an asynchronous ring row overflowed (each time
    /// the overflowing chunk's rows were doubled).
    pub fn reruns(&self) -> u32 {
        self.reruns
    }

    /// True while some chunk's asynchronous rows hold fewer entries than its
    /// asynchronous sites (then a row can overflow, and batches keep a copy to rerun).
    fn can_overflow(&self) -> bool {
        self.chunks.iter().any(|c| {
            c.syn
                .as_ref()
                .is_some_and(|sc| (sc.image.off.async_cap as u64) < sc.async_sites)
        })
    }

    /// Every buffer a batch changes: the neuron arrays and synapse images of each chunk.
    fn mutable_buffers(&self) -> Vec<&wgpu::Buffer> {
        let mut v = Vec::new();
        for c in &self.chunks {
            v.extend([&c.f32_buf, &c.u32_buf, &c.g_buf]);
            if let Some(sc) = &c.syn {
                v.extend([
                    &sc.image.u_buf,
                    &sc.image.f_buf,
                    &sc.image.flags_buf,
                    &sc.image.queues_buf,
                ]);
            }
        }
        v
    }

    /// Restores the state of the batch start and doubles the asynchronous rows of the
    /// chunks that overflowed (their images are rebuilt from the restored state).
    fn grow_and_restore(&mut self, overflowed: &[usize]) -> Result<(), Error> {
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        for (src, shadow) in &self.shadows {
            enc.copy_buffer_to_buffer(shadow, 0, src, 0, src.size());
        }
        self.ctx.submit_and_read(enc, &[])?;
        self.submissions += 1;
        if let Some(sh) = &self.syn {
            let q = &self.ctx.queue;
            q.write_buffer(
                &sh.evoked_buf,
                0,
                bytemuck::cast_slice(&vec![0u32; 4 * sh.n_keys]),
            );
            q.write_buffer(&sh.log_buf, 0, bytemuck::cast_slice(&[0u32; 2]));
        }
        self.download()?;
        self.rebuild_images(overflowed, true)?;
        self.reruns += 1;
        Ok(())
    }

    /// Builds the synapse images of chunks `which` again from the backend's state (which
    /// the caller downloaded), with the current `shape` and, when `grow_async`, their
    /// asynchronous rows doubled; keeps what the CPU state does not hold (the watch bits,
    /// the `released` sums where both images have them).
    fn rebuild_images(&mut self, which: &[usize], grow_async: bool) -> Result<(), Error> {
        let limit = self.ctx.limits.max_storage_buffer_binding_size;
        for &k in which {
            let neurons = self.chunks[k].neurons();
            let Some(sc) = self.chunks[k].syn.as_ref() else {
                continue;
            };
            let cap = sc.image.off.async_cap;
            let shape = RingShape {
                async_cap: Some(if grow_async {
                    cap.saturating_mul(2)
                } else {
                    cap
                }),
                ..self.shape
            };
            let mut host = SynHost::pack(&self.model, &self.net, &self.st, &shape, &neurons);
            host.off.log_cap = self.syn.as_ref().map_or(0, |s| s.log_cap);
            let old = sc.image.read(&self.ctx)?;
            self.readbacks += 1;
            let ns = sc.image.syns.len();
            let acc = layout::syn_f32::RELEASED_ACC;
            if let (Some(a), Some(b)) = (host.off.f_sec(acc), old.off.f_sec(acc)) {
                host.f[a..a + ns].copy_from_slice(&old.f[b..b + ns]);
            }
            let words = ns.div_ceil(32);
            let (a, b) = (host.off.watch as usize, old.off.watch as usize);
            host.flags[a..a + words].copy_from_slice(&old.flags[b..b + words]);
            let image = SynImage::new(&self.ctx, &host, sc.image.syns.clone(), limit)?;
            self.chunks[k].syn.as_mut().expect("synapse chunk").image = image;
        }
        self.rebind_synapses();
        self.shadows.clear();
        // Synapse probes are bound to the images: prepared again by the caller.
        self.sampling = None;
        Ok(())
    }

    /// The pipelines, tables and counters the chunks' synapse kernels share.
    fn syn_shared(ctx: &GpuContext, model: &Model, net: &Network) -> Result<SynShared, Error> {
        let mut pipelines = Vec::new();
        for (file, ep) in SYN_KERNELS {
            pipelines.push(ctx.pipeline(file, ep)?);
        }
        let n_keys = projection_keys(net).len().max(1);
        let gpu_types: Vec<_> = model.syn_types.iter().map(|t| t.gpu).collect();
        Ok(SynShared {
            pipelines,
            sample: ctx.pipeline("sample_synapse", "sample_synapse")?,
            types_buf: ctx.storage("syn_types", &gpu_types),
            tables_buf: ctx.storage("pow_tables", &model.pow_tables),
            spontaneous: model
                .syn_types
                .iter()
                .any(|t| t.gpu.spont_per_site_step > 0.0),
            n_keys,
            evoked: vec![[0.0; 3]; n_keys],
            evoked_buf: ctx.storage("evoked", &vec![0u32; 4 * n_keys]),
            evoked_staging: [0, 1].map(|_| ctx.staging("evoked staging", n_keys as u64 * 16)),
            log_buf: ctx.storage("release_log", &[0u32; 8]),
            log_staging: None,
            log_cap: 0,
            log_steps: u32::MAX,
            log_max: LOG_MAX_ENTRIES,
            log: Vec::new(),
        })
    }

    /// Rebinds every chunk's synapse kernels (after a shared buffer was replaced).
    fn rebind_synapses(&mut self) {
        let Some(sh) = &self.syn else { return };
        for c in self.chunks.iter_mut() {
            if let Some(sc) = c.syn.as_mut() {
                let nb = NeuronBufs {
                    params: &c.params_buf,
                    offsets: &c.offsets_buf,
                    g: &c.g_buf,
                    spikes: &self.spike_buf,
                    receptors: &self.receptors_buf,
                };
                sc.groups = bind_synapses(&self.ctx, &nb, &sc.image, sh, self.batch_cap);
            }
        }
    }

    /// Adds the batch's evoked-release counters to the run's and takes the release log
    /// (entries sorted as the CPU logs them: by step, events before minis, synapse,
    /// asynchronous sites before the spike; a synapse's minis of one step merged). The
    /// batch's own commands zeroed both for the next batch.
    fn read_release_counters(&mut self, ev: &[u32], log: Option<&[u32]>) -> Result<(), Error> {
        let sh = self.syn.as_mut().expect("synapse kernels");
        for (k, c) in sh.evoked.iter_mut().enumerate() {
            let w = &ev[4 * k..4 * k + 4];
            c[0] += w[0] as f64;
            c[1] += ((w[3] as u64) << 32 | w[2] as u64) as f64 / 65536.0;
            c[2] += w[1] as f64;
        }
        if let Some(l) = log {
            let (n, lost) = (l[0] as usize, l[1]);
            if lost > 0 {
                return Err(Error::Device(format!(
                    "the release log of this batch overflowed by {lost} entries (capacity {}); \
                     the run stops rather than drop them: record fewer projections' releases or use --backend cpu",
                    sh.log_cap
                )));
            }
            let n = n.min(sh.log_cap as usize);
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
                match sh.log.last_mut() {
                    Some(last)
                        if kind == ReleaseKind::Spontaneous
                            && last.kind == kind
                            && last.step == step
                            && last.synapse == syn =>
                    {
                        last.quanta += quanta
                    }
                    _ => sh.log.push(ReleaseEvent {
                        step,
                        synapse: syn,
                        kind,
                        quanta,
                    }),
                }
            }
        }
        Ok(())
    }

    /// Reads the queue headers of the chunks after a batch (events, quanta, overflow,
    /// non-finite conductance); the batch's own commands zeroed the counters for the next.
    fn check_synapse_headers(
        &mut self,
        headers: &[&[u32]],
        out: &mut Batch,
    ) -> Result<Option<Overflow>, Error> {
        // A row that overflowed: the batch runs again from its start with longer rows
        // (when a copy of its start was kept), or the run stops.
        let mut full = Vec::new();
        {
            let mut hs = headers.iter();
            for (k, c) in self.chunks.iter().enumerate() {
                if c.syn.is_none() {
                    continue;
                }
                let h = hs.next().expect("a header per synapse chunk");
                if h[queue::ASYNC_OVERFLOW as usize] > 0 {
                    full.push(k);
                }
            }
        }
        if !full.is_empty() && !self.shadows.is_empty() {
            return Ok(Some(Overflow(full)));
        }
        let mut overflow: Option<(u32, u32, u32)> = None;
        let mut bad: Option<(u32, u32)> = None;
        let mut hs = headers.iter();
        for c in &self.chunks {
            let Some(sc) = &c.syn else { continue };
            let h = hs.next().expect("a header per synapse chunk");
            if h[queue::ARRIVAL_OVERFLOW as usize] > 0 {
                return Err(Error::Device(format!(
                    "{} spike arrivals from step {} did not fit the arrival pool of synapses {}..{} ({} entries, the most its sources' refractory periods allow in flight); \
                     the run stops rather than drop them (please report it): use --backend cpu",
                    h[queue::ARRIVAL_OVERFLOW as usize],
                    u32::MAX - h[queue::OVERFLOW_STEP as usize],
                    sc.image.syns.start,
                    sc.image.syns.end,
                    sc.image.off.pool_cap
                )));
            }
            out.events += h[queue::EVENTS as usize] as u64;
            let q = (h[queue::QUANTA as usize + 1] as u64) << 32 | h[queue::QUANTA as usize] as u64;
            out.quanta += q as f64 / 65536.0;
            if h[queue::ASYNC_OVERFLOW as usize] > 0 && overflow.is_none() {
                overflow = Some((
                    h[queue::ASYNC_OVERFLOW as usize],
                    u32::MAX - h[queue::OVERFLOW_STEP as usize],
                    sc.image.off.async_cap,
                ));
            }
            if h[queue::NON_FINITE as usize] != 0 {
                let rec = (
                    u32::MAX - h[queue::NON_FINITE as usize],
                    u32::MAX - h[queue::NON_FINITE as usize + 1],
                );
                if bad.is_none_or(|b| rec < b) {
                    bad = Some(rec);
                }
            }
        }
        if let Some((n, step, cap)) = overflow {
            return Err(Error::Device(format!(
                "{n} asynchronous fusions from step {step} did not fit their row of the asynchronous release ring ({cap} entries per row); \
                 the run stops rather than drop them: use --backend cpu"
            )));
        }
        if let Some((step, syn)) = bad {
            self.download()?;
            self.st.step = step + 1;
            return Err(super::cpu::non_finite_error(
                &self.model,
                &self.net,
                &self.st,
                (syn, "receptor conductance g_ns", true),
            ));
        }
        Ok(None)
    }

    /// Steps of the next batch when `left` remain.
    fn batch_len(&self, left: u32) -> u32 {
        let mut n = left.min(self.batch_cap);
        if let Some(s) = &self.sampling {
            n = n.min(s.rows_cap);
        }
        if let Some(sh) = &self.syn {
            n = n.min(sh.log_steps);
        }
        n
    }

    /// Batches submitted while the previous one was still being read back.
    pub fn overlapped_batches(&self) -> u64 {
        self.overlapped
    }

    /// At most `entries` entries in the release log instead of [`LOG_MAX_ENTRIES`] (to
    /// test the batches it cuts); takes effect at the next `watch_releases`.
    pub fn with_log_capacity(mut self, entries: u64) -> Self {
        if let Some(sh) = self.syn.as_mut() {
            sh.log_max = entries.max(1);
        }
        self
    }

    /// Steps per submission.
    pub fn batch_capacity(&self) -> u32 {
        self.batch_cap
    }

    /// Chunks the network is split into (1 unless an array exceeds one binding).
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

    /// Replaces the device state by `st` (every neuron and synapse buffer and the step
    /// counter), e.g. to run one step from a CPU state.
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
            if let Some(sc) = &c.syn {
                // The layout of the image as it is (its asynchronous rows may have grown).
                let shape = RingShape {
                    async_cap: Some(sc.image.off.async_cap),
                    ..self.shape
                };
                let host = SynHost::pack(&self.model, &self.net, st, &shape, &c.neurons());
                sc.image.load(&self.ctx, &host)?;
            }
        }
        self.step = st.step;
        self.st.step = st.step;
        Ok(())
    }

    /// Reads the device state back into the backend's `State` copy.
    fn download(&mut self) -> Result<(), Error> {
        let nr = self.n_receptors as usize;
        self.st.step = self.step;
        self.st.active = ActivePool {
            stride: self.st.active.stride,
            ..ActivePool::default()
        };
        self.st.ring.iter_mut().for_each(|r| r.clear());
        self.st.ring_async.iter_mut().for_each(|r| r.clear());
        self.st.pending_minis.clear();
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
            if let Some(sc) = &c.syn {
                let host = sc.image.read(&self.ctx)?;
                self.submissions += 1;
                self.readbacks += 1;
                host.unpack(&sc.image.syns, &mut self.st);
            }
        }
        for row in self.st.ring.iter_mut() {
            row.sort_unstable();
        }
        for row in self.st.ring_async.iter_mut() {
            row.sort_unstable();
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
        let staging = [0, 1].map(|_| self.ctx.staging("samples staging", bytes));
        for c in self.chunks.iter_mut() {
            c.probes = codes
                .iter()
                .enumerate()
                .filter(|(_, p)| p[0] < probe::CA_RES && p[1] >= c.first && p[1] < c.first + c.size)
                .map(|(col, p)| [p[0], p[1] - c.first, col as u32, 0])
                .collect();
            let probes_buf = self.ctx.storage("probes", &c.probes);
            c.sample_groups = row_groups(
                &self.ctx,
                &self.sample.get_bind_group_layout(0),
                "sample",
                &c.params_buf,
                self.batch_cap,
                &[
                    &c.offsets_buf,
                    &self.receptors_buf,
                    &c.g_buf,
                    &c.f32_buf,
                    &c.u32_buf,
                    &probes_buf,
                    &samples_buf,
                ],
            );
            let (Some(sc), Some(sh)) = (c.syn.as_mut(), self.syn.as_ref()) else {
                continue;
            };
            let im = &sc.image;
            sc.probes = codes
                .iter()
                .enumerate()
                .filter(|(_, p)| p[0] >= probe::CA_RES && im.syns.contains(&(p[1] as usize)))
                .map(|(col, p)| [p[0], p[1] - im.syns.start as u32, col as u32, 1])
                .collect();
            let probes_buf = self.ctx.storage("synapse probes", &sc.probes);
            sc.sample_groups = row_groups(
                &self.ctx,
                &sh.sample.get_bind_group_layout(0),
                "sample_synapse",
                &c.params_buf,
                self.batch_cap,
                &[
                    &im.off_buf,
                    &sh.types_buf,
                    &sh.tables_buf,
                    &im.stat_buf,
                    &im.u_buf,
                    &im.f_buf,
                    &self.receptors_buf,
                    &probes_buf,
                    &samples_buf,
                ],
            );
        }
        self.probes = codes;
        self.sampling = Some(Sampling {
            rows_cap,
            samples_buf,
            staging,
        });
        Ok(())
    }

    /// Submits one batch of `n ≤ batch_cap` steps from step `first` (all its kernels, the
    /// copies of its results to this batch's staging set, and the zeroing of its
    /// counters for the next batch) without waiting for it.
    fn submit_batch(
        &mut self,
        first: u32,
        n: u32,
        sample_every: u32,
        sampled: bool,
    ) -> Result<InFlight, Error> {
        let nn = self.net.n_neurons();
        let mut rows = 0u32;
        let mut sample_at = Vec::with_capacity(n as usize);
        for k in 0..n {
            let due = sampled && (first + k).is_multiple_of(sample_every);
            sample_at.push(due.then_some(rows));
            rows += due as u32;
        }
        for c in &self.chunks {
            let mut params = vec![0u8; (n as u64 * STEP_PARAMS_STRIDE) as usize];
            for (k, row) in sample_at.iter().enumerate() {
                let mut p = step_params(&self.model, &self.net, first + k as u32);
                p.n_neurons = c.size;
                p.neuron_base = c.first;
                // The chunk's synapses (local ids; SynOffsets::syn_base is the first's id).
                p.n_synapses = c.syn.as_ref().map_or(0, |s| s.image.syns.len() as u32);
                p.spike_words = self.spike_words;
                p.n_neurons_all = nn;
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
        enc.clear_buffer(&self.spike_buf, 0, None);
        if self.can_overflow() {
            if self.shadows.is_empty() {
                let shadows: Vec<(wgpu::Buffer, wgpu::Buffer)> = self
                    .mutable_buffers()
                    .into_iter()
                    .map(|b| {
                        let s = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("batch start copy"),
                            size: b.size(),
                            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                            mapped_at_creation: false,
                        });
                        (b.clone(), s)
                    })
                    .collect();
                self.shadows = shadows;
            }
            for (src, shadow) in &self.shadows {
                enc.copy_buffer_to_buffer(src, 0, shadow, 0, src.size());
            }
        }
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            let sh = self.syn.as_ref();
            for (k, row) in sample_at.iter().enumerate() {
                for c in &self.chunks {
                    let (x, y) = groups(c.size);
                    let syn = c.syn.as_ref().zip(sh);
                    if row.is_some() && !c.probes.is_empty() {
                        let (px, py) = groups(c.probes.len() as u32);
                        pass.set_pipeline(&self.sample);
                        pass.set_bind_group(0, &c.sample_groups[k], &[]);
                        pass.dispatch_workgroups(px, py, 1);
                    }
                    // 1 deliver and 2 release (+ last step's minis), sized on the GPU.
                    if let Some((sc, sh)) = syn {
                        if row.is_some() && !sc.probes.is_empty() {
                            let (px, py) = groups(sc.probes.len() as u32);
                            pass.set_pipeline(&sh.sample);
                            pass.set_bind_group(0, &sc.sample_groups[k], &[]);
                            pass.dispatch_workgroups(px, py, 1);
                        }
                        sc.dispatch(sh, &mut pass, K_PLAN_DELIVER, k, Size::One);
                        sc.dispatch(sh, &mut pass, K_DELIVER, k, Size::Indirect(0));
                        sc.dispatch(sh, &mut pass, K_PLAN_RELEASE, k, Size::One);
                        sc.dispatch(sh, &mut pass, K_RELEASE, k, Size::Indirect(1));
                    }
                    if self.n_receptors > 0 {
                        let (dx, dy) = groups(c.size * self.n_receptors);
                        pass.set_pipeline(&self.decay_pools);
                        pass.set_bind_group(0, &c.decay_groups[k], &[]);
                        pass.dispatch_workgroups(dx, dy, 1);
                    }
                    // 3 cleft, then the per-neuron gather of its contributions.
                    if let Some((sc, sh)) = syn {
                        sc.dispatch(sh, &mut pass, K_PLAN_CLEFT, k, Size::One);
                        sc.dispatch(sh, &mut pass, K_CLEFT, k, Size::Indirect(2));
                        sc.dispatch(sh, &mut pass, K_GATHER, k, Size::Groups(x, y));
                    }
                    // 4 integrate.
                    pass.set_pipeline(&self.integrate);
                    pass.set_bind_group(0, &c.integrate_groups[k], &[]);
                    pass.dispatch_workgroups(x, y, 1);
                }
                // 5 propagate (every chunk's synapses, once all spikes of the step are
                // known) and 6 spontaneous.
                for c in &self.chunks {
                    if let Some((sc, sh)) = c.syn.as_ref().zip(sh) {
                        let (ax, ay) = groups(nn);
                        // The step's arrivals: counted per delay class, placed at the
                        // arrival pool's head, written.
                        sc.dispatch(sh, &mut pass, K_PROPAGATE_COUNT, k, Size::Groups(ax, ay));
                        sc.dispatch(sh, &mut pass, K_PROPAGATE_SCAN, k, Size::One);
                        sc.dispatch(sh, &mut pass, K_PROPAGATE, k, Size::Groups(ax, ay));
                        if sh.spontaneous {
                            let (x, y) = groups(c.size);
                            sc.dispatch(sh, &mut pass, K_SPONTANEOUS, k, Size::Groups(x, y));
                        }
                    }
                }
            }
        }
        let set = self.parity;
        self.parity ^= 1;
        let mut copies: Vec<(&wgpu::Buffer, &wgpu::Buffer, u64)> = vec![(
            &self.spike_buf,
            &self.spike_staging[set],
            (3 + n as u64 * self.spike_words as u64) * 4,
        )];
        let mut at_samples = None;
        if let Some(s) = self.sampling.as_ref().filter(|_| rows > 0) {
            at_samples = Some(copies.len());
            copies.push((
                &s.samples_buf,
                &s.staging[set],
                rows as u64 * self.probes.len() as u64 * 4,
            ));
        }
        // Counters the next batch starts from zero: the overflow words and the
        // non-finite record, events and quanta of each chunk's queue header, the evoked
        // counters and the release log's count and loss words.
        let mut clears: Vec<(&wgpu::Buffer, u64, u64)> = Vec::new();
        let at_headers = copies.len();
        for c in &self.chunks {
            if let Some(sc) = &c.syn {
                copies.push((
                    &sc.image.queues_buf,
                    &sc.header_staging[set],
                    queue::ROW_COUNTS as u64 * 4,
                ));
                clears.push((&sc.image.queues_buf, 0, queue::TODO_COUNT as u64 * 4));
                clears.push((
                    &sc.image.queues_buf,
                    queue::NON_FINITE as u64 * 4,
                    (queue::ROW_COUNTS - queue::NON_FINITE) as u64 * 4,
                ));
            }
        }
        let at_counters = copies.len();
        if let Some(sh) = &self.syn {
            copies.push((
                &sh.evoked_buf,
                &sh.evoked_staging[set],
                sh.n_keys as u64 * 16,
            ));
            clears.push((&sh.evoked_buf, 0, sh.n_keys as u64 * 16));
            if let Some(ls) = &sh.log_staging {
                copies.push((&sh.log_buf, &ls[set], ls[set].size()));
                clears.push((&sh.log_buf, 0, 8));
            }
        }
        let pending = self.ctx.submit_reads(enc, &copies, &clears)?;
        self.submissions += 1;
        self.readbacks += 1;
        Ok(InFlight {
            pending,
            first,
            n,
            at_samples,
            at_headers,
            at_counters,
        })
    }

    /// Waits for batch `f` and decodes its results into `out`, or returns the chunks
    /// whose asynchronous rows overflowed (nothing appended; the caller restores).
    fn finish_batch(&mut self, f: InFlight, out: &mut Batch) -> Result<Option<Overflow>, Error> {
        debug_assert_eq!(f.first, self.step, "batches are read in order");
        let (n, at_samples, at_headers, at_counters) =
            (f.n, f.at_samples, f.at_headers, f.at_counters);
        let data = self.ctx.finish_reads(f.pending)?;
        // The non-finite record of the neurons (smallest step, then neuron).
        let w: &[u32] = bytemuck::cast_slice(&data[0]);
        if w[0] != 0 {
            let (step, neuron, code) = (u32::MAX - w[0], u32::MAX - w[1], w[2]);
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
        if self.syn.is_some() {
            let headers: Vec<&[u32]> = data[at_headers..at_counters]
                .iter()
                .map(|d| bytemuck::cast_slice(d))
                .collect();
            if let Some(o) = self.check_synapse_headers(&headers, out)? {
                return Ok(Some(o));
            }
            let ev: &[u32] = bytemuck::cast_slice(&data[at_counters]);
            let log: Option<&[u32]> = data.get(at_counters + 1).map(|d| bytemuck::cast_slice(d));
            self.read_release_counters(ev, log)?;
            if let Some(sh) = self.syn.as_mut() {
                out.releases.append(&mut sh.log);
            }
        }
        // Decode the bit rows: ascending neuron ids per step.
        let bits: &[u32] = bytemuck::cast_slice(&data[0]);
        let words = self.spike_words as usize;
        for k in 0..n as usize {
            for (j, &word) in bits[3 + k * words..3 + (k + 1) * words].iter().enumerate() {
                let mut x = word;
                while x != 0 {
                    let b = x.trailing_zeros();
                    out.spike_ids.push(j as u32 * 32 + b);
                    x &= x - 1;
                }
            }
            out.spike_offsets.push(out.spike_ids.len() as u32);
        }
        if let Some(i) = at_samples {
            out.samples
                .extend_from_slice(bytemuck::cast_slice::<u8, f32>(&data[i]));
        }
        let last = out.spike_offsets.len() - 2;
        self.last_spikes = out.spike_ids[out.spike_offsets[last] as usize..].to_vec();
        self.step += n;
        out.n_steps += n;
        Ok(None)
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

    fn device_image_bytes(&self) -> Option<(u64, u64)> {
        let mut neurons =
            self.spike_buf.size() + self.spike_staging.iter().map(|b| b.size()).sum::<u64>();
        let mut synapses = 0;
        for c in &self.chunks {
            neurons += c.f32_buf.size() + c.u32_buf.size() + c.g_buf.size() + c.static_bytes;
            if let Some(sc) = &c.syn {
                synapses += sc.image.bytes();
            }
        }
        Some((neurons, synapses))
    }

    fn profile(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    fn evoked_per_projection(&self) -> Vec<(String, u64, f64, u64)> {
        let Some(sh) = &self.syn else {
            return Vec::new();
        };
        let keys = projection_keys(&self.net);
        self.net
            .projections
            .iter()
            .map(|p| {
                let k = (p.source as u16, p.target as u16, p.syn_type as u16);
                let c = keys
                    .iter()
                    .position(|&x| x == k)
                    .map_or([0.0; 3], |i| sh.evoked[i]);
                (p.name.clone(), c[0] as u64, c[1], c[2] as u64)
            })
            .collect()
    }

    fn watch(&mut self, probes: &[Probe]) -> Result<(), Error> {
        // Each synapse's quanta since the last sample, only while a `released` probe is
        // watched (4 bytes per synapse); from zero, as the CPU's sums.
        let sums = probes
            .iter()
            .any(|p| matches!(p, Probe::Synapse(SynVar::Released, _)));
        if sums != self.shape.released_sums {
            fits_memory(&self.ctx, &self.model, &self.net, sums)?;
            self.download()?;
            self.shape.released_sums = sums;
            let all: Vec<usize> = (0..self.chunks.len()).collect();
            if let Err(e) = self.rebuild_images(&all, false) {
                self.shape.released_sums = !sums;
                return Err(e);
            }
        }
        for c in &self.chunks {
            let Some(sc) = &c.syn else { continue };
            if let Some(a) = sc.image.off.f_sec(layout::syn_f32::RELEASED_ACC) {
                let zeros = vec![0f32; sc.image.syns.len()];
                self.ctx.queue.write_buffer(
                    &sc.image.f_buf,
                    a as u64 * 4,
                    bytemuck::cast_slice(&zeros),
                );
            }
        }
        Ok(())
    }

    fn watch_releases(&mut self, synapses: &[u32]) {
        let Some(sh) = self.syn.as_mut() else {
            return;
        };
        let ns = self.net.n_synapses() as usize;
        let mut watch = vec![false; ns];
        // Entries per step of a watched synapse: its asynchronous fusions, its spike and
        // its minis (at most N each).
        let mut per_step = 0u64;
        for &s in synapses {
            if (s as usize) < ns && !watch[s as usize] {
                watch[s as usize] = true;
                let ty = &self.model.syn_types[self.net.syn_type(s as usize)].gpu;
                per_step += 2 * ty.n_sites as u64 + 1;
            }
        }
        // Room for the worst case of a whole batch, or of as many steps as the log's
        // largest size holds (at least one step: beyond one step's worst case an
        // overflow stops the run); batches are cut to those steps.
        let limit = self.ctx.limits.max_storage_buffer_binding_size / 16 - 1;
        let most = sh.log_max.min(limit).max(1);
        let cap = (per_step * self.batch_cap as u64).min(most).max(1);
        sh.log_steps = cap
            .checked_div(per_step)
            .map_or(u32::MAX, |k| k.clamp(1, u32::MAX as u64) as u32);
        let cap = cap as u32;
        let words = 4 + 4 * cap as usize;
        sh.log_cap = cap;
        sh.log_buf = self.ctx.storage("release_log", &vec![0u32; words]);
        sh.log_staging = (per_step > 0)
            .then(|| [0, 1].map(|_| self.ctx.staging("release log staging", words as u64 * 4)));
        let q = &self.ctx.queue;
        for c in self.chunks.iter_mut() {
            let Some(sc) = c.syn.as_mut() else { continue };
            let syns = sc.image.syns.clone();
            // The chunk's watch bits, one per synapse from its local id 0.
            let mut bits = vec![0u32; syns.len().div_ceil(32)];
            for (i, _) in watch[syns.clone()].iter().enumerate().filter(|(_, &w)| w) {
                bits[i / 32] |= 1 << (i % 32);
            }
            if !bits.is_empty() {
                q.write_buffer(
                    &sc.image.flags_buf,
                    sc.image.off.watch as u64 * 4,
                    bytemuck::cast_slice(&bits),
                );
            }
            sc.image.off.log_cap = cap;
            q.write_buffer(&sc.image.off_buf, 0, bytemuck::bytes_of(&sc.image.off));
        }
        self.rebind_synapses();
    }

    fn take_releases(&mut self, out: &mut Vec<ReleaseEvent>) {
        if let Some(sh) = self.syn.as_mut() {
            out.append(&mut sh.log);
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
        // Batches overlap: the next one is submitted before the previous one's results
        // are read, so the GPU computes while the host waits for, copies and decodes a
        // readback. Not while an asynchronous ring row can overflow: a rerun restores
        // the state of its batch's start, which the next batch would already have
        // replaced (keeping two copies of every buffer would double the memory).
        let overlap = !self.can_overflow();
        let every = sample_every.max(1);
        let mut left = n_steps;
        let mut next_first = self.step;
        let mut inflight: Option<InFlight> = None;
        loop {
            if inflight.is_none() {
                if left == 0 {
                    break;
                }
                let n = self.batch_len(left);
                inflight = Some(self.submit_batch(next_first, n, every, sampled)?);
                next_first += n;
                left -= n;
            }
            let mut next = None;
            if overlap && left > 0 {
                let n = self.batch_len(left);
                next = Some(self.submit_batch(next_first, n, every, sampled)?);
                self.overlapped += 1;
                next_first += n;
                left -= n;
            }
            let f = inflight.take().expect("a batch in flight");
            let (first, n) = (f.first, f.n);
            match self.finish_batch(f, &mut out) {
                Ok(None) => {}
                Ok(Some(Overflow(chunks))) => {
                    // Run the batch again from its start with the overflowing rows
                    // doubled (nothing was submitted after it: no overlap here).
                    debug_assert!(next.is_none());
                    left += n;
                    next_first = first;
                    self.grow_and_restore(&chunks)?;
                    if sampled {
                        self.prepare_sampling(probes)?;
                    }
                }
                Err(e) => {
                    // The run stops; the batch after it is finished and dropped.
                    if let Some(f) = next {
                        let _ = self.ctx.finish_reads(f.pending);
                    }
                    return Err(e);
                }
            }
            inflight = next;
        }
        Ok(out)
    }
}
