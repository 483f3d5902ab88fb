//! CPU-GPU parity of the synapse kernels on the adapter wgpu picks (lavapipe in CI):
//! whole runs of the example networks give the same spikes step by step and the same
//! state at the end, bit for bit, and one step from the same state gives the same
//! buffers. Fail without an adapter (`QUANTAL_REQUIRE_GPU=1` in CI).

use crate::common::backend_with;
use quantal::backend::cpu::CpuBackend;
use quantal::backend::gpu::GpuBackend;
use quantal::backend::{Backend, NeuronVar, Probe, SynVar};
use quantal::gpu::GpuContext;
use quantal::state::State;
use std::sync::Arc;

fn example(name: &str, overrides: &[&str]) -> CpuBackend {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("networks/{name}.toml"));
    backend_with(&std::fs::read_to_string(path).unwrap(), overrides)
}

fn gpu_of(cpu: &CpuBackend, batch: u32) -> GpuBackend {
    let ctx = GpuContext::new(None).unwrap_or_else(|e| panic!("{e}"));
    GpuBackend::with_batch(
        ctx,
        Arc::new(cpu.model().clone()),
        Arc::new(cpu.network().clone()),
        batch,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The first field of two states that differs, with the element and both values.
pub fn first_difference(a: &State, b: &State) -> Option<String> {
    let (a, b) = (a.canonical(), b.canonical());
    macro_rules! cmp {
        ($($f:ident).+) => {
            let (x, y) = (&a.$($f).+, &b.$($f).+);
            if x.len() != y.len() {
                return Some(format!("{}: lengths {} and {}", stringify!($($f).+), x.len(), y.len()));
            }
            for (i, (p, q)) in x.iter().zip(y.iter()).enumerate() {
                if format!("{p:?}") != format!("{q:?}") {
                    return Some(format!("{}[{i}]: CPU {p:?}, GPU {q:?}", stringify!($($f).+)));
                }
            }
        };
    }
    cmp!(v_mv);
    cmp!(g_rr_ns);
    cmp!(g_sfa_ns);
    cmp!(theta_mv);
    cmp!(refr);
    cmp!(hh_m);
    cmp!(hh_h);
    cmp!(hh_n);
    cmp!(g_active_ns);
    cmp!(g_pool_ns);
    cmp!(t_last);
    cmp!(x_f);
    cmp!(x_d);
    cmp!(sites);
    cmp!(committed);
    cmp!(reserve);
    cmp!(endo);
    cmp!(handoff_step);
    cmp!(handoff_r);
    cmp!(active.syn);
    cmp!(active.cleft_mm);
    cmp!(active.released);
    cmp!(active.pulse_left);
    cmp!(active.pulse_quanta);
    cmp!(active.fresh);
    cmp!(active.r);
    cmp!(ring);
    cmp!(ring_async);
    cmp!(pending_minis);
    None
}

/// Probes of every variable of up to 40 neurons and 120 synapses spread over the network.
fn probes(cpu: &CpuBackend) -> Vec<Probe> {
    let (model, net) = (cpu.model(), cpu.network());
    let mut out = Vec::new();
    let nn = net.n_neurons();
    for n in (0..nn).step_by((nn as usize).div_ceil(40).max(1)) {
        for var in [NeuronVar::V, NeuronVar::GSynTotal, NeuronVar::Refractory] {
            out.push(Probe::Neuron(var, n));
        }
        for r in 0..model.receptors.len() as u32 {
            out.push(Probe::Neuron(NeuronVar::Receptor(r), n));
        }
    }
    let ns = net.n_synapses();
    for s in (0..ns).step_by((ns as usize).div_ceil(120).max(1)) {
        for var in [
            SynVar::CaRes,
            SynVar::XF,
            SynVar::XD,
            SynVar::Docked,
            SynVar::Reserve,
            SynVar::Endosome,
            SynVar::Released,
            SynVar::Cleft,
            SynVar::TmU,
            SynVar::TmX,
        ] {
            out.push(Probe::Synapse(var, s));
        }
        let ty = &model.syn_types[net.syn_type[s as usize] as usize].gpu;
        for j in 0..ty.n_receptors {
            out.push(Probe::Synapse(SynVar::R(j), s));
            out.push(Probe::Synapse(SynVar::GProt(j), s));
        }
    }
    out
}

/// Runs both backends `steps` steps, sampling every variable of a spread of neurons and
/// synapses every third step; panics at the first step whose spikes differ and at the
/// first sample that differs, then compares the whole state.
fn same_run(name: &str, overrides: &[&str], steps: u32, batch: u32, min_spikes: usize) {
    let mut cpu = example(name, overrides);
    let mut gpu = gpu_of(&cpu, batch);
    eprintln!(
        "{name}: {} neurons, {} synapses on {}",
        cpu.network().n_neurons(),
        cpu.network().n_synapses(),
        gpu.device()
    );
    let pr = probes(&cpu);
    cpu.watch(&pr);
    gpu.watch(&pr);
    let every = 3;
    let a = cpu.advance(steps, &pr, every).unwrap();
    let b = gpu.advance(steps, &pr, every).unwrap();
    assert_eq!(a.samples.len(), b.samples.len());
    for (i, (x, y)) in a.samples.iter().zip(&b.samples).enumerate() {
        let (row, p) = (i / pr.len(), pr[i % pr.len()]);
        assert!(
            x.to_bits() == y.to_bits(),
            "{name}: step {} {p:?}: CPU {x:e}, GPU {y:e}",
            row as u32 * every
        );
    }
    for k in 0..steps {
        assert_eq!(b.spikes(k), a.spikes(k), "{name}: spikes of step {k}");
    }
    assert!(
        a.spike_ids.len() >= min_spikes,
        "{name}: {} spikes",
        a.spike_ids.len()
    );
    let (c, g) = (cpu.state_ref().clone(), gpu.state().unwrap().clone());
    if let Some(d) = first_difference(&c, &g) {
        panic!("{name}: state after {steps} steps differs: {d}");
    }
    assert_eq!(a.events, b.events, "{name}: events");
    eprintln!(
        "{name}: {} spikes, {} events, quanta CPU {} GPU {}",
        a.spike_ids.len(),
        a.events,
        a.quanta,
        b.quanta
    );
}

#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn coba_short_is_bit_identical() {
    same_run(
        "coba",
        &[
            "populations.exc.size=800",
            "populations.inh.size=200",
            "projections.ee.p=0.08",
            "projections.ei.p=0.08",
            "projections.ie.p=0.08",
            "projections.ii.p=0.08",
        ],
        1000,
        128,
        500,
    );
}

#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn examples_are_bit_identical() {
    same_run("single_synapse", &[], 10000, 256, 0);
    same_run("summation", &[], 2000, 256, 0);
    same_run("nmj_ach", &[], 2000, 256, 0);
    same_run("cobahh", &[], 500, 256, 100);
}
