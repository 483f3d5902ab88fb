//! CPU-GPU parity of the synapse kernels on the adapter wgpu picks (lavapipe in CI):
//! whole runs of the example networks give the same spikes step by step and the same
//! state at the end, bit for bit, and one step from the same state gives the same
//! buffers. Fail without an adapter (`QUANTAL_REQUIRE_GPU=1` in CI).

use crate::common::backend_with;
use quantal::backend::cpu::CpuBackend;
use quantal::backend::gpu::GpuBackend;
use quantal::backend::Backend;
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

/// Runs both backends `steps` steps; panics at the first step whose spikes differ, then
/// compares the whole state.
fn same_run(name: &str, overrides: &[&str], steps: u32, batch: u32, min_spikes: usize) {
    let mut cpu = example(name, overrides);
    let mut gpu = gpu_of(&cpu, batch);
    eprintln!(
        "{name}: {} neurons, {} synapses on {}",
        cpu.network().n_neurons(),
        cpu.network().n_synapses(),
        gpu.device()
    );
    let a = cpu.advance(steps, &[], 1).unwrap();
    let b = gpu.advance(steps, &[], 1).unwrap();
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
