//! Backends advance the same state with the same kernels: the CPU reference
//! ([`cpu::CpuBackend`]) and, in a later stage, the GPU (wgpu) backend that mirrors it
//! kernel by kernel. `--backend auto` picks the GPU when an adapter exists.

pub mod cpu;

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
    /// Quanta released in the previous step.
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
    /// Starts (and zeroes) or stops per-kernel timing.
    fn set_profiling(&mut self, on: bool);
    /// Wall time per kernel in seconds since profiling started, in pipeline order.
    fn profile(&self) -> Vec<(&'static str, f64)>;
}
