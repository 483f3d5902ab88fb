//! Driving a run: building the network and backend, sampling reports, batching spikes
//! and samples to a [`Recorder`] with periodic flushes, and the end-of-run summary.
//!
//! Time conventions: step s advances the state from s·dt to (s+1)·dt. A neuron's spike
//! emitted in step s is stamped (s+1)·dt (NEST's convention: the end of the step in which
//! threshold was crossed); a source's spike (Poisson or listed time) fired in step s is
//! stamped s·dt, the time it happens. Either reaches a synapse with delay d steps in step
//! s+d. Reports sample the state at the start of steps 0, k, 2k, ...
//! (times 0, k·dt, ...), SONATA `mapping/time = [0, duration, k·dt]`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::backend::{Backend, NeuronVar, Probe, SynVar};
use crate::error::Error;
use crate::gpu::GpuContext;
use crate::layout::neuron;
use crate::model::Model;
use crate::netfile::{validate::spec_error, LoadedNetwork, ReceptorKind, SpecPath};
use crate::network::{self, Network};
use crate::record::{Recorder, ReportDesc, RunMeta, Summary};

/// Which backend runs the simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    /// The CPU reference.
    Cpu,
    /// The GPU backend on the best adapter, or the first whose name contains `adapter`.
    Gpu {
        /// Part of the adapter's name.
        adapter: Option<String>,
    },
    /// The GPU backend when an adapter exists and it runs every feature of the network,
    /// the CPU backend otherwise; [`Simulation::backend_note`] says which and why.
    Auto {
        /// Part of the adapter's name.
        adapter: Option<String>,
    },
}

/// What `--backend auto` says when it keeps to the CPU because the only GPU adapter,
/// `adapter` ("name (backend)"), is a software renderer.
pub fn software_renderer_note(adapter: &str) -> String {
    format!(
        "auto: CPU, because the only GPU adapter, {adapter}, is a software renderer \
         (--backend gpu runs on it)"
    )
}

/// Largest number of steps the driver hands to a backend at once.
pub const MAX_BATCH_STEPS: u32 = 1024;
/// Recorded data held in memory between flushes: a flush happens at the flush interval
/// or when this much is buffered, whichever comes first.
pub const MAX_BUFFERED_BYTES: usize = 64 << 20;

/// A ready-to-run simulation.
pub struct Simulation {
    /// The loaded network file.
    pub loaded: LoadedNetwork,
    /// The resolved model.
    pub model: Arc<Model>,
    /// The built network.
    pub net: Arc<Network>,
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// Reports to write.
    pub reports: Vec<ReportDesc>,
    /// Why `--backend auto` chose the backend it did (empty for an explicit choice).
    pub backend_note: String,
    probes: Vec<Probe>,
    spike_pops: Vec<usize>,
    sample_every: u32,
    flush_every: u32,
    /// Projections with a per-event release record, and each watched synapse's
    /// (record slot, projection-local id).
    release_projections: Vec<String>,
    release_of: std::collections::HashMap<u32, (u32, u32)>,
}

/// Release events buffered between flushes, per recorded projection.
#[derive(Default)]
struct ReleaseBuf {
    times_ms: Vec<f64>,
    ids: Vec<u64>,
    quanta: Vec<f32>,
    kinds: Vec<u8>,
}

fn units(var: &str) -> &'static str {
    match var {
        "v_mv" | "theta_mv" => "mV",
        "i_ext_pa" => "pA",
        "ca_res_um" => "uM",
        "cleft_mm" => "mM",
        "docked" | "reserve" | "endosome" | "released" => "vesicles",
        v if v.ends_with("_ns") => "nS",
        _ => "1",
    }
}

/// A recorder error (a full disk, a removed directory) with how far the run got.
fn writing_failed(e: Error, done: u32, n_steps: u32) -> Error {
    match e {
        Error::Hdf5 { message, path } => Error::Hdf5 {
            message: format!(
                "{message}; writing stopped after {done} of {n_steps} steps, and the file holds everything up to the last good flush"
            ),
            path,
        },
        other => other,
    }
}

impl Simulation {
    /// Resolves, builds and prepares `loaded` on the chosen backend (the CPU backend on
    /// all cores).
    pub fn new(loaded: LoadedNetwork, backend: BackendKind) -> Result<Simulation, Error> {
        Self::with_threads(loaded, backend, None)
    }

    /// As [`Simulation::new`], with the CPU backend on `threads` threads (None: one per
    /// core); the results are the same bits for any number.
    pub fn with_threads(
        loaded: LoadedNetwork,
        backend: BackendKind,
        threads: Option<usize>,
    ) -> Result<Simulation, Error> {
        let model = Arc::new(Model::from_spec(&loaded.file));
        let net = Arc::new(network::build(&loaded, &model)?);
        let f = &loaded.file;
        let dt = model.dt_ms;
        let sample_every = (f.record.sample_interval_ms.unwrap_or(dt) / dt)
            .round()
            .max(1.0) as u32;
        let flush_every = (f.record.flush_interval_ms.unwrap_or(100.0) / dt)
            .round()
            .max(1.0) as u32;
        let time_ms = [0.0, model.n_steps as f64 * dt, sample_every as f64 * dt];
        let mut reports = Vec::new();
        let mut probes = Vec::new();
        let rec_root = SpecPath::root().key("record");
        for (ri, r) in f.record.neurons.iter().enumerate() {
            let pi = model
                .pops
                .iter()
                .position(|p| p.name == r.population)
                .expect("validated");
            let pop = &model.pops[pi];
            let ids: Vec<u64> = r
                .ids
                .clone()
                .unwrap_or_else(|| (0..pop.size as u64).collect());
            for v in &r.variables {
                let var = match v.as_str() {
                    "v_mv" => NeuronVar::V,
                    "g_rr_ns" => NeuronVar::GRr,
                    "g_sfa_ns" => NeuronVar::GSfa,
                    "theta_mv" => NeuronVar::Theta,
                    "refractory" => NeuronVar::Refractory,
                    "i_ext_pa" => NeuronVar::IExt,
                    "g_syn_total_ns" => NeuronVar::GSynTotal,
                    "m" => NeuronVar::M,
                    "h" => NeuronVar::H,
                    "n" => NeuronVar::N,
                    other => {
                        let ri_global = model
                            .receptors
                            .iter()
                            .position(|rc| format!("g_{}_ns", rc.name) == other)
                            .ok_or_else(|| {
                                spec_error(
                                    &loaded.text,
                                    &loaded.path,
                                    &rec_root.key("neurons").index(ri).key("variables"),
                                    format!("unknown variable `{other}`"),
                                )
                            })?;
                        NeuronVar::Receptor(ri_global as u32)
                    }
                };
                reports.push(ReportDesc {
                    group: pop.name.clone(),
                    variable: v.clone(),
                    units: units(v).to_string(),
                    node_ids: ids.clone(),
                    element_ids: vec![0; ids.len()],
                    index_pointer: (0..=ids.len() as u64).collect(),
                    time_ms,
                });
                probes.extend(
                    ids.iter()
                        .map(|&i| Probe::Neuron(var, pop.first + i as u32)),
                );
            }
        }
        for (ri, r) in f.record.synapses.iter().enumerate() {
            let pi = net
                .projections
                .iter()
                .position(|p| p.name == r.projection)
                .expect("validated");
            let proj = &net.projections[pi];
            let synapse_ids = net.projection_synapses(pi);
            let n_syn = proj.n_synapses;
            let mut local: Vec<u64> = r.ids.clone().unwrap_or_else(|| (0..n_syn).collect());
            for (j, &l) in local.iter().enumerate() {
                if l >= n_syn {
                    return Err(spec_error(
                        &loaded.text,
                        &loaded.path,
                        &rec_root.key("synapses").index(ri).key("ids").index(j),
                        format!("synapse id {l} is out of range; projection `{}` has {n_syn} synapses, accepted: [0, {n_syn})", proj.name),
                    ));
                }
            }
            // Columns grouped by target neuron: global ids are post-major and ascend with
            // the local id (Network::projection_synapses), so local order is that order.
            local.sort_unstable();
            let target_first = model.pops[proj.target].first;
            let mut node_ids: Vec<u64> = Vec::new();
            let mut index_pointer: Vec<u64> = Vec::new();
            for (c, &l) in local.iter().enumerate() {
                let post = (net.syn_post[synapse_ids[l as usize] as usize] - target_first) as u64;
                if node_ids.last() != Some(&post) {
                    node_ids.push(post);
                    index_pointer.push(c as u64);
                }
            }
            index_pointer.push(local.len() as u64);
            let st = &f.synapse_types[proj.syn_type];
            for v in &r.variables {
                let var = match v.as_str() {
                    "ca_res_um" => SynVar::CaRes,
                    "x_f" => SynVar::XF,
                    "x_d" => SynVar::XD,
                    "docked" => SynVar::Docked,
                    "reserve" => SynVar::Reserve,
                    "endosome" => SynVar::Endosome,
                    "released" => SynVar::Released,
                    "cleft_mm" => SynVar::Cleft,
                    "tm_u" => SynVar::TmU,
                    "tm_x" => SynVar::TmX,
                    "gprot_gaba_b" => SynVar::GProt(
                        st.receptors
                            .iter()
                            .position(|r| r.kind == ReceptorKind::GabaB)
                            .expect("validated") as u32,
                    ),
                    other => {
                        let j = st
                            .receptors
                            .iter()
                            .position(|rc| format!("r_{}", rc.kind.name()) == other)
                            .expect("validated");
                        SynVar::R(j as u32)
                    }
                };
                reports.push(ReportDesc {
                    group: proj.name.clone(),
                    variable: v.clone(),
                    units: units(v).to_string(),
                    node_ids: node_ids.clone(),
                    element_ids: local.clone(),
                    index_pointer: index_pointer.clone(),
                    time_ms,
                });
                probes.extend(
                    local
                        .iter()
                        .map(|&l| Probe::Synapse(var, synapse_ids[l as usize])),
                );
            }
        }
        let spike_pops: Vec<usize> = match &f.record.spikes {
            Some(names) => names
                .iter()
                .map(|n| {
                    model
                        .pops
                        .iter()
                        .position(|p| &p.name == n)
                        .expect("validated")
                })
                .collect(),
            None => (0..model.pops.len()).collect(),
        };
        let cpu = || -> Box<dyn Backend> {
            Box::new(CpuBackend::with_threads(
                Arc::clone(&model),
                Arc::clone(&net),
                threads,
            ))
        };
        let mut backend_note = String::new();
        let backend: Box<dyn Backend> = match backend {
            BackendKind::Cpu => cpu(),
            BackendKind::Gpu { adapter } => {
                let ctx = GpuContext::new(adapter.as_deref())?;
                Box::new(GpuBackend::new(ctx, Arc::clone(&model), Arc::clone(&net))?)
            }
            BackendKind::Auto { adapter } => match GpuContext::new(adapter.as_deref()) {
                // A software rasterizer (lavapipe, SwiftShader, WARP) runs the kernels
                // correctly but several times slower than the CPU backend: auto takes it
                // only when it was named with --adapter.
                Ok(ctx) if ctx.info.device_type == wgpu::DeviceType::Cpu && adapter.is_none() => {
                    backend_note = software_renderer_note(&ctx.adapter_name());
                    cpu()
                }
                Ok(ctx) => match GpuBackend::new(ctx, Arc::clone(&model), Arc::clone(&net)) {
                    Ok(g) => {
                        backend_note = format!("auto: GPU adapter found, {}", g.device());
                        Box::new(g)
                    }
                    Err(e) => {
                        backend_note = format!("auto: CPU, because the GPU backend failed: {e}");
                        cpu()
                    }
                },
                Err(e) => {
                    backend_note = format!("auto: CPU, because {e}");
                    cpu()
                }
            },
        };
        let mut backend = backend;
        backend.watch(&probes)?;
        let mut release_projections = Vec::new();
        let mut release_of = std::collections::HashMap::new();
        for name in f.record.releases.iter().flatten() {
            let pi = net
                .projections
                .iter()
                .position(|p| &p.name == name)
                .expect("validated");
            let slot = release_projections.len() as u32;
            for (local, syn) in net.projection_synapses(pi).into_iter().enumerate() {
                release_of.insert(syn, (slot, local as u32));
            }
            release_projections.push(name.clone());
        }
        let watched: Vec<u32> = release_of.keys().copied().collect();
        backend.watch_releases(&watched);
        Ok(Simulation {
            loaded,
            model,
            net,
            backend,
            reports,
            backend_note,
            probes,
            spike_pops,
            sample_every,
            flush_every,
            release_projections,
            release_of,
        })
    }

    /// Names of the populations whose spikes are written.
    pub fn spike_population_names(&self) -> Vec<String> {
        self.spike_pops
            .iter()
            .map(|&p| self.model.pops[p].name.clone())
            .collect()
    }

    /// Metadata for the output.
    pub fn meta(&self) -> RunMeta {
        RunMeta {
            version: crate::VERSION.to_string(),
            seed: self.model.seed,
            backend: self.backend.name().to_string(),
            adapter: self.backend.device(),
            dt_ms: self.model.dt_ms,
            duration_ms: self.model.n_steps as f64 * self.model.dt_ms,
            network_path: self.loaded.path.display().to_string(),
            network_text: self.loaded.original_text.clone(),
            effective_text: self.loaded.text.clone(),
            overrides: self.loaded.overrides.clone(),
            warnings: self.loaded.warnings.clone(),
        }
    }

    /// Runs all steps, writing to `rec`. `progress(done, total)` is called about every
    /// 1 % of the run; when `stop` becomes true the run ends after the current step, the
    /// output is flushed and finished with `complete = false`, and `Error::Interrupted`
    /// is returned.
    pub fn run(
        &mut self,
        rec: &mut dyn Recorder,
        progress: &mut dyn FnMut(u32, u32),
        stop: &AtomicBool,
    ) -> Result<Summary, Error> {
        let n_steps = self.model.n_steps;
        let dt = self.model.dt_ms;
        let names = self.spike_population_names();
        rec.begin(&self.meta(), &names, &self.reports)?;
        rec.begin_releases(&self.release_projections)?;
        let mut rel: Vec<ReleaseBuf> = (0..self.release_projections.len())
            .map(|_| ReleaseBuf::default())
            .collect();
        let n_pops = self.model.pops.len();
        let mut pop_slot = vec![usize::MAX; n_pops];
        for (k, &p) in self.spike_pops.iter().enumerate() {
            pop_slot[p] = k;
        }
        let mut spike_t: Vec<Vec<f64>> = vec![Vec::new(); self.spike_pops.len()];
        let mut spike_n: Vec<Vec<u64>> = vec![Vec::new(); self.spike_pops.len()];
        let mut rows: Vec<Vec<f32>> = vec![Vec::new(); self.reports.len()];
        let mut counts = vec![0u64; n_pops];
        // Per neuron: last spike step, and count, sum and sum of squares of its ISIs (steps).
        let nn = self.net.n_neurons() as usize;
        let mut last_spike = vec![u32::MAX; nn];
        let mut isi = vec![(0u32, 0f64, 0f64); nn];
        let is_source: Vec<bool> = self
            .model
            .pops
            .iter()
            .map(|p| matches!(p.gpu.model, neuron::POISSON | neuron::SPIKE_TIMES))
            .collect();
        let mut quanta = 0.0f64;
        let report_every = (n_steps / 100).max(1);
        let start = Instant::now();
        let mut interrupted = false;
        let mut done = 0u32;
        let write_batch = |rec: &mut dyn Recorder,
                           spike_t: &mut Vec<Vec<f64>>,
                           spike_n: &mut Vec<Vec<u64>>,
                           rows: &mut Vec<Vec<f32>>,
                           rel: &mut Vec<ReleaseBuf>|
         -> Result<(), Error> {
            for (k, r) in rel.iter_mut().enumerate() {
                rec.write_releases(k, &r.times_ms, &r.ids, &r.quanta, &r.kinds)?;
                *r = ReleaseBuf::default();
            }
            for k in 0..spike_t.len() {
                rec.write_spikes(k, &spike_t[k], &spike_n[k])?;
                spike_t[k].clear();
                spike_n[k].clear();
            }
            for (r, data) in rows.iter_mut().enumerate() {
                rec.write_rows(r, data)?;
                data.clear();
            }
            rec.flush()
        };
        let mut result: Result<(), Error> = Ok(());
        let mut last_flushed = 0u32;
        // Batches end at flush and progress points, so those happen where they did with
        // single steps; a stop request is honoured between batches.
        while done < n_steps {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            let next_flush = (done / self.flush_every + 1) * self.flush_every;
            let next_report = (done / report_every + 1) * report_every;
            let end = next_flush.min(next_report).min(n_steps);
            let n = (end - done).min(MAX_BATCH_STEPS);
            let batch = match self.backend.advance(n, &self.probes, self.sample_every) {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            quanta += batch.quanta;
            for ev in &batch.releases {
                if let Some(&(slot, local)) = self.release_of.get(&ev.synapse) {
                    let r = &mut rel[slot as usize];
                    r.times_ms.push(ev.step as f64 * dt);
                    r.ids.push(local as u64);
                    r.quanta.push(ev.quanta);
                    r.kinds.push(ev.kind as u8);
                }
            }
            let mut off = 0;
            let row_len = self.probes.len();
            for k in 0..batch.n_steps {
                let s = batch.first_step + k;
                if row_len > 0 && s.is_multiple_of(self.sample_every) {
                    let row = &batch.samples[off..off + row_len];
                    let mut at = 0;
                    for (r, desc) in self.reports.iter().enumerate() {
                        let m = desc.n_elements();
                        rows[r].extend_from_slice(&row[at..at + m]);
                        at += m;
                    }
                    off += row_len;
                }
                // Neurons: end of the step (NEST); sources: the time they fire (s·dt).
                let t_neuron_ms = (s as f64 + 1.0) * dt;
                let t_source_ms = s as f64 * dt;
                for &n in batch.spikes(k) {
                    let p = self.net.neuron_pop[n as usize] as usize;
                    counts[p] += 1;
                    let i = n as usize;
                    if last_spike[i] != u32::MAX {
                        let d = (s - last_spike[i]) as f64;
                        isi[i].0 += 1;
                        isi[i].1 += d;
                        isi[i].2 += d * d;
                    }
                    last_spike[i] = s;
                    let slot = pop_slot[p];
                    if slot != usize::MAX {
                        spike_t[slot].push(if is_source[p] {
                            t_source_ms
                        } else {
                            t_neuron_ms
                        });
                        spike_n[slot].push((n - self.model.pops[p].first) as u64);
                    }
                }
            }
            done += batch.n_steps;
            let buffered = rows.iter().map(|r| r.len() * 4).sum::<usize>()
                + spike_t.iter().map(|t| t.len() * 16).sum::<usize>()
                + rel.iter().map(|r| r.times_ms.len() * 21).sum::<usize>();
            if done.is_multiple_of(self.flush_every) || buffered > MAX_BUFFERED_BYTES {
                // Stop before a write fails half-way on a full disk: the file then stays
                // readable up to this point.
                if let Err(e) = rec.room_for(buffered as u64) {
                    // What is buffered is dropped, and the file ends at the last flush.
                    rows.iter_mut().for_each(|v| v.clear());
                    spike_t.iter_mut().for_each(|v| v.clear());
                    spike_n.iter_mut().for_each(|v| v.clear());
                    rel.iter_mut().for_each(|r| *r = ReleaseBuf::default());
                    done = last_flushed;
                    result = Err(writing_failed(e, done, n_steps));
                    break;
                }
                if let Err(e) = write_batch(rec, &mut spike_t, &mut spike_n, &mut rows, &mut rel) {
                    result = Err(writing_failed(e, done, n_steps));
                    break;
                }
                last_flushed = done;
            }
            if done.is_multiple_of(report_every) {
                progress(done, n_steps);
            }
        }
        let wall_s = start.elapsed().as_secs_f64();
        // Always write what was computed, even after an error or an interruption.
        let flushed = write_batch(rec, &mut spike_t, &mut spike_n, &mut rows, &mut rel);
        let summary = Summary {
            steps: done as u64,
            simulated_ms: done as f64 * dt,
            wall_s,
            spikes: self
                .model
                .pops
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), counts[i], p.size as u64))
                .collect(),
            quanta,
            complete: !interrupted && result.is_ok() && done == n_steps,
            evoked: self.backend.evoked_per_projection(),
            irregularity: self
                .model
                .pops
                .iter()
                .map(|p| {
                    let range = p.first as usize..(p.first + p.size) as usize;
                    let cvs: Vec<f64> = isi[range.clone()]
                        .iter()
                        .filter(|x| x.0 >= 2)
                        .map(|&(k, sum, sum2)| {
                            let k = k as f64;
                            let mean = sum / k;
                            let var = ((sum2 - sum * mean) / (k - 1.0)).max(0.0);
                            var.sqrt() / mean
                        })
                        .collect();
                    let silent = last_spike[range].iter().filter(|&&t| t == u32::MAX).count();
                    let cv = (!cvs.is_empty()).then(|| cvs.iter().sum::<f64>() / cvs.len() as f64);
                    (cv, silent as u64)
                })
                .collect(),
        };
        let finished = rec.finish(&summary);
        result?;
        flushed.map_err(|e| writing_failed(e, done, n_steps))?;
        finished.map_err(|e| writing_failed(e, done, n_steps))?;
        if interrupted {
            return Err(Error::Interrupted { step: done as u64 });
        }
        Ok(summary)
    }
}
