//! Backends advance the same state with the same kernels: the CPU reference
//! ([`cpu::CpuBackend`]) and the GPU (wgpu) backend ([`gpu::GpuBackend`]) that mirrors it
//! kernel by kernel. The driver asks for batches of steps ([`Backend::advance`]), so the
//! GPU runs many steps per submission and reads back once per batch.

pub mod cpu;
pub mod gpu;
pub mod gpu_syn;
pub mod team;

use crate::error::Error;
use crate::state::State;

/// A neuron variable that can be sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeuronVar {
    /// Membrane potential, mV.
    V,
    /// Relative refractory conductance, nS.
    GRr,
    /// Adaptation conductance, nS.
    GSfa,
    /// Threshold elevation, mV (θ = v_th_mv + this).
    Theta,
    /// 1 while absolutely refractory (or in HH lock-out), else 0.
    Refractory,
    /// Injected current, pA.
    IExt,
    /// Sum of all synaptic conductances, nS.
    GSynTotal,
    /// HH gate m.
    M,
    /// HH gate h.
    H,
    /// HH gate n.
    N,
    /// Conductance of one global receptor, nS (NMDA includes the block at the current V).
    Receptor(u32),
}

/// A synapse variable that can be sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynVar {
    /// Residual Ca, µM: Ca_rest + ΔCa_AP·X_F(t) (§1.1).
    CaRes,
    /// Facilitation site X_F(t).
    XF,
    /// Recovery site X_D(t).
    XD,
    /// Docked vesicles (occupied release sites) as of the last event (lazy state).
    Docked,
    /// Reserve pool as of the last event.
    Reserve,
    /// Vesicles in endocytosis as of the last event.
    Endosome,
    /// Quanta released since the previous sample (a sum over the sampling interval, once
    /// the probes are announced with [`Backend::watch`]; else in the previous step).
    Released,
    /// Cleft transmitter, mM.
    Cleft,
    /// TM utilisation u a spike would see now.
    TmU,
    /// TM resources x now (mean TM).
    TmX,
    /// Open fraction of local receptor j (R for GABA_B).
    R(u32),
    /// Activated G-protein of local receptor j (GABA_B).
    GProt(u32),
}

/// What to sample: a variable of one neuron or synapse (global ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Neuron variable.
    Neuron(NeuronVar, u32),
    /// Synapse variable.
    Synapse(SynVar, u32),
}

/// How a release event came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReleaseKind {
    /// A presynaptic spike arrived (synchronous release; 0 quanta is a failure).
    Evoked = 0,
    /// A delayed asynchronous fusion (§3.4).
    Asynchronous = 1,
    /// Miniature (spontaneous) release (§3.4).
    Spontaneous = 2,
}

/// One presynaptic release event of a watched synapse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReleaseEvent {
    /// The step it happened in.
    pub step: u32,
    /// Global synapse id.
    pub synapse: u32,
    /// Evoked, asynchronous or spontaneous.
    pub kind: ReleaseKind,
    /// Quanta released (0 for a failure).
    pub quanta: f32,
}

/// What a batch of steps produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The first step of the batch.
    pub first_step: u32,
    /// Steps computed.
    pub n_steps: u32,
    /// Spikes of step `first_step + k` are `spike_ids[spike_offsets[k]..spike_offsets[k + 1]]`
    /// (ascending neuron ids).
    pub spike_offsets: Vec<u32>,
    /// Spiking neurons, step after step.
    pub spike_ids: Vec<u32>,
    /// One row of `probes.len()` values for every step s of the batch with
    /// s % sample_every == 0, sampled at the start of that step.
    pub samples: Vec<f32>,
    /// Quanta released in the batch.
    pub quanta: f64,
    /// Presynaptic events (arrivals and asynchronous fusions) in the batch.
    pub events: u64,
    /// Release events of the synapses given to [`Backend::watch_releases`].
    pub releases: Vec<ReleaseEvent>,
}

impl Batch {
    /// The spikes of step `first_step + k`.
    pub fn spikes(&self, k: u32) -> &[u32] {
        let k = k as usize;
        &self.spike_ids[self.spike_offsets[k] as usize..self.spike_offsets[k + 1] as usize]
    }
}

/// A simulation backend.
pub trait Backend {
    /// `"cpu"` or `"gpu"`.
    fn name(&self) -> &'static str;
    /// The device the backend runs on, e.g. the CPU model or the GPU adapter name.
    fn device(&self) -> String;
    /// Computes one step.
    fn step(&mut self) -> Result<(), Error>;
    /// The next step to compute.
    fn step_index(&self) -> u32;
    /// Spikes of the last computed step, ascending neuron ids.
    fn spikes(&self) -> &[u32];
    /// Quanta released in the last computed step.
    fn quanta_last_step(&self) -> f64;
    /// Samples the probes at the current time (start of the next step) into `out`.
    fn sample(&mut self, probes: &[Probe], out: &mut Vec<f32>) -> Result<(), Error>;
    /// The full state (for parity tests and checkpoints).
    fn state(&mut self) -> Result<&State, Error>;
    /// Presynaptic events (spike arrivals and asynchronous fusions) of the last step.
    fn events_last_step(&self) -> u64;
    /// Active synapse-steps (synapses whose cleft or receptors were advanced, summed over
    /// steps) since the start, where the backend counts them.
    fn active_synapse_steps(&self) -> Option<u64> {
        None
    }
    /// Starts (and zeroes) or stops per-kernel timing.
    fn set_profiling(&mut self, on: bool);
    /// Wall time per kernel in seconds since profiling started, in pipeline order.
    fn profile(&self) -> Vec<(&'static str, f64)>;

    /// Announces the probes a run will sample, so that a backend can accumulate what a
    /// sample sums over its interval (`released`, from zero).
    fn watch(&mut self, _probes: &[Probe]) -> Result<(), Error> {
        Ok(())
    }

    /// Per projection since the start: (name, evoked events, their quanta, failures).
    /// Projections with the same source, target and synapse type share their counts.
    fn evoked_per_projection(&self) -> Vec<(String, u64, f64, u64)> {
        Vec::new()
    }

    /// Logs every release event of these synapses (global ids), for the per-event record.
    fn watch_releases(&mut self, _synapses: &[u32]) {}

    /// Moves the release events logged since the last call into `out`.
    fn take_releases(&mut self, _out: &mut Vec<ReleaseEvent>) {}

    /// Submissions to a device and readbacks from it so far (GPU); None for the CPU.
    fn traffic(&self) -> Option<(u64, u64)> {
        None
    }

    /// Bytes of the device image as allocated (GPU; None for the CPU): the neuron part
    /// (state, static image, spike rows and their staging) and the synapse images with
    /// their queues and rings, as `backend::gpu::image_bytes` predicts them.
    fn device_image_bytes(&self) -> Option<(u64, u64)> {
        None
    }

    /// Advances `n_steps` steps, sampling `probes` at the start of every step s with
    /// s % sample_every == 0. The GPU backend encodes the whole batch in one submission
    /// and reads it back once; this default runs [`Backend::step`] n times.
    fn advance(
        &mut self,
        n_steps: u32,
        probes: &[Probe],
        sample_every: u32,
    ) -> Result<Batch, Error> {
        advance_by(self, n_steps, probes, sample_every, |b| b.step())
    }
}

/// [`Backend::advance`]'s loop over `n_steps` steps, each computed by `step`: the
/// default's, and the CPU backend's with its inner step.
pub(crate) fn advance_by<B: Backend + ?Sized>(
    backend: &mut B,
    n_steps: u32,
    probes: &[Probe],
    sample_every: u32,
    mut step: impl FnMut(&mut B) -> Result<(), Error>,
) -> Result<Batch, Error> {
    let mut b = Batch {
        first_step: backend.step_index(),
        n_steps: 0,
        spike_offsets: vec![0],
        ..Batch::default()
    };
    let mut row = Vec::new();
    for _ in 0..n_steps {
        let s = backend.step_index();
        if !probes.is_empty() && s.is_multiple_of(sample_every) {
            backend.sample(probes, &mut row)?;
            b.samples.extend_from_slice(&row);
        }
        step(backend)?;
        b.spike_ids.extend_from_slice(backend.spikes());
        b.spike_offsets.push(b.spike_ids.len() as u32);
        b.quanta += backend.quanta_last_step();
        b.events += backend.events_last_step();
        backend.take_releases(&mut b.releases);
        b.n_steps += 1;
    }
    Ok(b)
}
