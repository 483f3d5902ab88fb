//! The GPU backend: the step's kernels as WGSL compute shaders through wgpu, over the
//! device image of the neuron state (`layout::ImageOffsets` describes its sections).
//!
//! A batch of up to [`GpuBackend::batch_capacity`] steps is encoded in one compute pass
//! and one submission: per step, `sample` (on sampled steps), `decay_pools` and
//! `integrate`, each bound to that step's `StepParams` (a uniform array with one entry
//! per step, 256 bytes apart). Spikes go to a ring of bit rows (one row of
//! ceil(n/32) words per step, set with atomicOr, which is exact and order-free) and
//! samples to a ring of rows; both are read back once per batch. On lavapipe the results
//! are bit-identical to the CPU reference (tests/parity.rs).
//!
//! Scope of this version: the neuron kernels (LIF with both refractory mechanisms and
//! adaptation, Traub-Miles HH, DC inputs, Poisson and spike-time sources, pooled
//! conductances). Networks with synapses are refused with a clear error rather than run
//! partly on the CPU: the synapse kernels (deliver, release, cleft, propagate,
//! spontaneous) are the next stage of the GPU issue.

use super::cpu::sample::probe_code;
use super::cpu::step_params;
use super::{Backend, Batch, Probe};
use crate::error::Error;
use crate::gpu::GpuContext;
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

/// The GPU backend.
pub struct GpuBackend {
    ctx: GpuContext,
    model: Arc<Model>,
    net: Arc<Network>,
    step: u32,
    batch_cap: u32,
    spike_words: u32,
    n_receptors: u32,
    offsets_buf: wgpu::Buffer,
    params_buf: wgpu::Buffer,
    receptors_buf: wgpu::Buffer,
    g_buf: wgpu::Buffer,
    f32_buf: wgpu::Buffer,
    u32_buf: wgpu::Buffer,
    spike_buf: wgpu::Buffer,
    spike_staging: wgpu::Buffer,
    decay_pools: wgpu::ComputePipeline,
    integrate: wgpu::ComputePipeline,
    sample: wgpu::ComputePipeline,
    decay_groups: Vec<wgpu::BindGroup>,
    integrate_groups: Vec<wgpu::BindGroup>,
    probes: Vec<[u32; 2]>,
    sampling: Option<Sampling>,
    last_spikes: Vec<u32>,
    st: State,
    submissions: u64,
    readbacks: u64,
}

/// Buffers and bind groups for one probe list.
struct Sampling {
    rows_cap: u32,
    samples_buf: wgpu::Buffer,
    staging: wgpu::Buffer,
    groups: Vec<wgpu::BindGroup>,
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
        if net.n_synapses() > 0 {
            return Err(Error::Device(format!(
                "the GPU backend of this version runs the neuron kernels only (LIF, HH, DC inputs, \
                 Poisson and spike-time sources); this network has {} synapses, whose kernels \
                 (deliver, release, cleft, propagate, spontaneous) run on the CPU backend only: \
                 use --backend cpu",
                net.n_synapses()
            )));
        }
        let batch_cap = batch_cap.max(1);
        let st = State::new(&model, &net);
        let nn = net.n_neurons();
        let nr = model.receptors.len() as u32;
        // The image's static u32 sections.
        let mut stat: Vec<u32> = vec![0; (nn as usize).div_ceil(2)];
        for (n, &p) in net.neuron_pop.iter().enumerate() {
            stat[n / 2] |= (p as u32) << (16 * (n % 2));
        }
        let mut off = ImageOffsets {
            input_offsets: stat.len() as u32,
            ..ImageOffsets::default()
        };
        stat.extend_from_slice(&net.input_offsets);
        off.input_ids = stat.len() as u32;
        stat.extend_from_slice(&net.input_ids);
        off.spike_offsets = stat.len() as u32;
        stat.extend_from_slice(&net.spike_offsets);
        off.spike_steps = stat.len() as u32;
        stat.extend_from_slice(&net.spike_steps);
        off.g_pool = nn * nr;
        let needed = [
            stat.len() as u64 * 4,
            2 * (nn as u64 * nr as u64) * 4,
            neuron_f32::COUNT as u64 * nn as u64 * 4,
        ];
        let limit = ctx.limits.max_storage_buffer_binding_size;
        if let Some(b) = needed.iter().find(|&&b| b > limit) {
            return Err(Error::Device(format!(
                "a neuron array of {b} bytes exceeds the adapter's largest storage binding ({limit} bytes); \
                 windowed bindings are not in this version: use --backend cpu"
            )));
        }
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
        let pops_buf = ctx.storage("pops", &model.gpu_pops);
        let receptors_buf = ctx.storage("receptors", &model.gpu_receptors);
        let inputs_buf = ctx.storage("inputs", &inputs);
        let static_buf = ctx.storage("neuron_static", &stat);
        let mut g = st.g_active_ns.clone();
        g.extend_from_slice(&st.g_pool_ns);
        let g_buf = ctx.storage("g_ns", &g);
        let f32_buf = ctx.storage("neuron_f32", &Self::pack_f32(&st));
        let u32_buf = ctx.storage("neuron_u32", &Self::pack_u32(&st));
        let spike_words = nn.div_ceil(32);
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
        let decay_pools = ctx.pipeline("decay_pools", "decay_pools")?;
        let integrate = ctx.pipeline("integrate", "integrate")?;
        let sample = ctx.pipeline("sample", "sample")?;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let decay_groups = (0..batch_cap)
            .map(|k| {
                ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("decay_pools"),
                    layout: &decay_pools.get_bind_group_layout(0),
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
                    layout: &integrate.get_bind_group_layout(0),
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
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Device(format!("binding the device image: {e}")));
        }
        Ok(GpuBackend {
            ctx,
            model,
            net,
            step: 0,
            batch_cap,
            spike_words,
            n_receptors: nr,
            offsets_buf,
            params_buf,
            receptors_buf,
            g_buf,
            f32_buf,
            u32_buf,
            spike_buf,
            spike_staging,
            decay_pools,
            integrate,
            sample,
            decay_groups,
            integrate_groups,
            probes: Vec::new(),
            sampling: None,
            last_spikes: Vec::new(),
            st,
            submissions: 0,
            readbacks: 0,
        })
    }

    /// Steps per submission.
    pub fn batch_capacity(&self) -> u32 {
        self.batch_cap
    }

    fn pack_f32(st: &State) -> Vec<f32> {
        let mut v = Vec::with_capacity(st.v_mv.len() * neuron_f32::COUNT as usize);
        // Section order of layout::neuron_f32.
        for a in [
            &st.v_mv,
            &st.g_rr_ns,
            &st.g_sfa_ns,
            &st.theta_mv,
            &st.hh_m,
            &st.hh_h,
            &st.hh_n,
            &st.i_ext_pa,
        ] {
            v.extend_from_slice(a);
        }
        v
    }

    fn pack_u32(st: &State) -> Vec<u32> {
        let mut v = Vec::with_capacity(st.refr.len() * neuron_u32::COUNT as usize);
        // Section order of layout::neuron_u32.
        v.extend_from_slice(&st.refr);
        v.extend_from_slice(&st.spike_ptr);
        v
    }

    /// Replaces the device state by `st` (the neuron arrays, the pooled and active
    /// conductances and the step counter), e.g. to run one kernel from a CPU state.
    pub fn load_state(&mut self, st: &State) -> Result<(), Error> {
        let q = &self.ctx.queue;
        q.write_buffer(&self.f32_buf, 0, bytemuck::cast_slice(&Self::pack_f32(st)));
        q.write_buffer(&self.u32_buf, 0, bytemuck::cast_slice(&Self::pack_u32(st)));
        let mut g = st.g_active_ns.clone();
        g.extend_from_slice(&st.g_pool_ns);
        if !g.is_empty() {
            q.write_buffer(&self.g_buf, 0, bytemuck::cast_slice(&g));
        }
        self.step = st.step;
        self.st.step = st.step;
        Ok(())
    }

    /// Reads the device state back into the backend's `State` copy.
    fn download(&mut self) -> Result<(), Error> {
        let nn = self.net.n_neurons() as usize;
        let nr = self.n_receptors as usize;
        let fb = (neuron_f32::COUNT as usize * nn * 4) as u64;
        let ub = (neuron_u32::COUNT as usize * nn * 4) as u64;
        let gb = (2 * nn * nr * 4) as u64;
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
                (&self.f32_buf, &sf, fb),
                (&self.u32_buf, &su, ub),
                (&self.g_buf, &sg, gb),
            ],
        )?;
        self.submissions += 1;
        self.readbacks += 1;
        let f: &[f32] = bytemuck::cast_slice(&out[0]);
        let u: &[u32] = bytemuck::cast_slice(&out[1]);
        let st = &mut self.st;
        for (k, a) in [
            &mut st.v_mv,
            &mut st.g_rr_ns,
            &mut st.g_sfa_ns,
            &mut st.theta_mv,
            &mut st.hh_m,
            &mut st.hh_h,
            &mut st.hh_n,
            &mut st.i_ext_pa,
        ]
        .into_iter()
        .enumerate()
        {
            a.copy_from_slice(&f[k * nn..(k + 1) * nn]);
        }
        st.refr.copy_from_slice(&u[..nn]);
        st.spike_ptr.copy_from_slice(&u[nn..2 * nn]);
        if nr > 0 {
            let g: &[f32] = bytemuck::cast_slice(&out[2]);
            st.g_active_ns.copy_from_slice(&g[..nn * nr]);
            st.g_pool_ns.copy_from_slice(&g[nn * nr..]);
        }
        st.step = self.step;
        st.spikes = self.last_spikes.clone();
        Ok(())
    }

    /// Prepares the sample ring and bind groups for `probes` (kept while they stay the same).
    fn prepare_sampling(&mut self, probes: &[Probe]) -> Result<(), Error> {
        let mut codes = Vec::with_capacity(probes.len());
        for p in probes {
            match *p {
                Probe::Neuron(var, n) => codes.push([probe_code(var), n]),
                Probe::Synapse(..) => {
                    return Err(Error::Device(
                        "synapse variables are sampled by the synapse kernels, which the GPU backend of this version does not have".into(),
                    ))
                }
            }
        }
        if codes == self.probes && self.sampling.is_some() {
            return Ok(());
        }
        let rows_cap = self.batch_cap;
        let bytes = rows_cap as u64 * codes.len() as u64 * 4;
        let ctx = &self.ctx;
        let probes_buf = ctx.storage("probes", &codes);
        let samples_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("samples"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = ctx.staging("samples staging", bytes);
        let groups = (0..self.batch_cap)
            .map(|k| {
                ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("sample"),
                    layout: &self.sample.get_bind_group_layout(0),
                    entries: &[
                        params_entry(&self.params_buf, k),
                        entry(1, &self.offsets_buf),
                        entry(2, &self.receptors_buf),
                        entry(3, &self.g_buf),
                        entry(4, &self.f32_buf),
                        entry(5, &self.u32_buf),
                        entry(6, &probes_buf),
                        entry(7, &samples_buf),
                    ],
                })
            })
            .collect();
        self.probes = codes;
        self.sampling = Some(Sampling {
            rows_cap,
            samples_buf,
            staging,
            groups,
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
        let nn = self.net.n_neurons();
        let max_dim = self.ctx.limits.max_compute_workgroups_per_dimension;
        let mut params = vec![0u8; (n as u64 * STEP_PARAMS_STRIDE) as usize];
        let mut rows = 0u32;
        let mut sample_at = Vec::with_capacity(n as usize);
        for k in 0..n {
            let mut p = step_params(&self.model, &self.net, self.step + k);
            p.batch_row = k;
            p.n_probes = self.probes.len() as u32;
            let due = sampled && (self.step + k).is_multiple_of(sample_every);
            if due {
                p.sample_row = rows;
                rows += 1;
            }
            sample_at.push(due);
            let at = (k as u64 * STEP_PARAMS_STRIDE) as usize;
            params[at..at + std::mem::size_of::<StepParams>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
        }
        self.ctx.queue.write_buffer(&self.params_buf, 0, &params);
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        enc.clear_buffer(&self.spike_buf, 0, None);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            let (ng_x, ng_y) = groups(nn, max_dim);
            let (pg_x, pg_y) = groups(nn * self.n_receptors, max_dim);
            let (sg_x, sg_y) = groups(self.probes.len() as u32, max_dim);
            for (k, &due) in sample_at.iter().enumerate() {
                if due {
                    let s = self.sampling.as_ref().expect("prepared");
                    pass.set_pipeline(&self.sample);
                    pass.set_bind_group(0, &s.groups[k], &[]);
                    pass.dispatch_workgroups(sg_x, sg_y, 1);
                }
                if self.n_receptors > 0 {
                    pass.set_pipeline(&self.decay_pools);
                    pass.set_bind_group(0, &self.decay_groups[k], &[]);
                    pass.dispatch_workgroups(pg_x, pg_y, 1);
                }
                pass.set_pipeline(&self.integrate);
                pass.set_bind_group(0, &self.integrate_groups[k], &[]);
                pass.dispatch_workgroups(ng_x, ng_y, 1);
            }
        }
        let spike_bytes = (3 + n as u64 * self.spike_words as u64) * 4;
        let sample_bytes = rows as u64 * self.probes.len() as u64 * 4;
        let data = match self.sampling.as_ref().filter(|_| rows > 0) {
            Some(s) => self.ctx.submit_and_read(
                enc,
                &[
                    (&self.spike_buf, &self.spike_staging, spike_bytes),
                    (&s.samples_buf, &s.staging, sample_bytes),
                ],
            )?,
            None => self
                .ctx
                .submit_and_read(enc, &[(&self.spike_buf, &self.spike_staging, spike_bytes)])?,
        };
        self.submissions += 1;
        self.readbacks += 1;
        // Decode the bit rows: ascending neuron ids per step.
        let bits: &[u32] = bytemuck::cast_slice(&data[0]);
        let w = self.spike_words as usize;
        let (bad, bits) = bits.split_at(3);
        if bad[0] != 0 {
            // Stop; the state read back is the batch's end, where the value stays non-finite.
            let step = u32::MAX - bad[0];
            let neuron = u32::MAX - bad[1];
            let var = ["v_mv", "v_mv", "m", "h", "n"][bad[2].min(4) as usize];
            self.download()?;
            self.st.step = step + 1;
            return Err(super::cpu::non_finite_error(
                &self.model,
                &self.net,
                &self.st,
                (neuron, var, false),
            ));
        }
        for k in 0..n as usize {
            for (j, &word) in bits[k * w..(k + 1) * w].iter().enumerate() {
                let mut x = word;
                while x != 0 {
                    let b = x.trailing_zeros();
                    out.spike_ids.push((j as u32) * 32 + b);
                    x &= x - 1;
                }
            }
            out.spike_offsets.push(out.spike_ids.len() as u32);
        }
        if rows > 0 {
            out.samples
                .extend_from_slice(bytemuck::cast_slice::<u8, f32>(&data[1]));
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
