//! CPU-GPU parity of the synapse kernels on the adapter wgpu picks (lavapipe in CI):
//! whole runs of the example networks give the same spikes step by step and the same
//! state at the end, bit for bit, and one step from the same state gives the same
//! buffers. Fail without an adapter (`QUANTAL_REQUIRE_GPU=1` in CI).

use crate::common::backend_with;
use quantal::backend::cpu::CpuBackend;
use quantal::backend::gpu::GpuBackend;
use quantal::backend::{Backend, NeuronVar, Probe, ReleaseKind, SynVar};
use quantal::gpu::GpuContext;
use quantal::state::State;
use std::sync::Arc;

/// `coba` at 1000 neurons (800 + 200) with the connection probability scaled up to keep
/// the in-degree.
const COBA_1K: [&str; 6] = [
    "populations.exc.size=800",
    "populations.inh.size=200",
    "projections.ee.p=0.08",
    "projections.ei.p=0.08",
    "projections.ie.p=0.08",
    "projections.ii.p=0.08",
];

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
    cmp!(term);
    cmp!(committed);
    cmp!(reserve);
    cmp!(endo);
    cmp!(handoff_step);
    cmp!(handoff_r);
    cmp!(active.slots);
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
        let ty = &model.syn_types[net.syn_type(s as usize)].gpu;
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
    same_backends(example(name, overrides), name, steps, batch, min_spikes);
}

/// As [`same_run`], for network text.
fn same_text(
    text: &str,
    name: &str,
    steps: u32,
    batch: u32,
    min_spikes: usize,
) -> (quantal::backend::Batch, Vec<Probe>) {
    same_backends(backend_with(text, &[]), name, steps, batch, min_spikes)
}

fn same_backends(
    cpu: CpuBackend,
    name: &str,
    steps: u32,
    batch: u32,
    min_spikes: usize,
) -> (quantal::backend::Batch, Vec<Probe>) {
    let mut gpu = gpu_of(&cpu, batch);
    same_on(cpu, &mut gpu, name, steps, min_spikes)
}

fn same_on(
    mut cpu: CpuBackend,
    gpu: &mut GpuBackend,
    name: &str,
    steps: u32,
    min_spikes: usize,
) -> (quantal::backend::Batch, Vec<Probe>) {
    eprintln!(
        "{name}: {} neurons, {} synapses on {}",
        cpu.network().n_neurons(),
        cpu.network().n_synapses(),
        gpu.device()
    );
    let pr = probes(&cpu);
    cpu.watch(&pr).unwrap();
    gpu.watch(&pr).unwrap();
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
    assert!(
        (a.quanta - b.quanta).abs() <= 1e-4 * a.quanta.max(1.0),
        "{name}: quanta CPU {} GPU {}",
        a.quanta,
        b.quanta
    );
    (b, pr)
}

#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn coba_short_is_bit_identical() {
    same_run("coba", &COBA_1K, 1000, 128, 500);
}

/// Delays drawn from 0.1-4 ms (about 40 delay classes, a pool window of 40 steps): the
/// GPU's arrival pool (blocks per spike step, a segment per delay class) delivers every
/// arrival at the CPU's step, and, with the 5 ms refractory period allowing one spike per
/// neuron in the window, holds one entry per synapse instead of a row per delay step.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn distributed_delays_are_bit_identical() {
    use quantal::backend::gpu_syn::{RingShape, SynHost};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba.toml");
    let text = std::fs::read_to_string(path).unwrap().replace(
        "delay_ms = 0.1",
        r#"delay_ms = { dist = "uniform", low = 0.1, high = 4.0 }"#,
    );
    let mut cpu = backend_with(&text, &COBA_1K);
    let st = cpu.state().unwrap().clone();
    let (m, n) = (cpu.model(), cpu.network());
    let shape = RingShape::of(m, n);
    assert!(shape.ring_len >= 40, "{} blocks", shape.ring_len);
    let nn = n.n_neurons() as usize;
    let host = SynHost::pack(m, n, &st, &shape, &(0..nn));
    assert!(host.off.classes >= 30, "{} delay classes", host.off.classes);
    assert_eq!(host.off.pool_cap, n.n_synapses(), "one entry per synapse");
    same_backends(
        backend_with(&text, &COBA_1K),
        "coba, delays 0.1-4 ms",
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
    // cobahh over 200 ms.
    same_run("cobahh", &[], 2000, 256, 1000);
    // The benchmark's static release onto exp receptors, 200 ms.
    same_run("brette_coba", &[], 2000, 256, 1000);
    same_run("paired_pulse", &[], 2000, 256, 0);
    // Kinetic receptors on the cleft (the CPU's straight-line cleft_kinetic), 30 ms.
    same_run("coba_kinetic", &[], 300, 100, 1000);
}

/// The COBA network (4000 cells, 320 961 synapses) over 1 s of self-sustained activity:
/// every spike, every sample and the final state identical.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn coba_one_second_is_bit_identical() {
    let cpu = example("coba", &[]);
    let mut gpu = gpu_of(&cpu, 256);
    same_on(cpu, &mut gpu, "coba", 10000, 10000);
    // No asynchronous release, so no rerun: each batch was submitted before the previous
    // one was read back (40 batches of 256 steps).
    assert_eq!(gpu.overlapped_batches(), 39);
}

/// Overlapped batches (each submitted before the previous one is read back, its counters
/// zeroed by its own commands) lose and double-count nothing: the release log, the
/// evoked counts per projection and the events of coba with watched synapses equal the
/// CPU's, over many short batches.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn overlapped_batches_keep_every_count() {
    let mut cpu = example("coba", &["simulation.duration_ms=150"]);
    let mut gpu = gpu_of(&cpu, 16);
    let watched: Vec<u32> = (0..cpu.network().n_synapses()).step_by(7).collect();
    cpu.watch_releases(&watched);
    gpu.watch_releases(&watched);
    let a = cpu.advance(1500, &[], 1).unwrap();
    let b = gpu.advance(1500, &[], 1).unwrap();
    assert!(
        gpu.overlapped_batches() >= 90,
        "{} overlapped",
        gpu.overlapped_batches()
    );
    assert!(
        a.releases.len() > 1000,
        "{} logged releases",
        a.releases.len()
    );
    assert_eq!(a.releases.len(), b.releases.len(), "log lengths");
    for (k, (x, y)) in a.releases.iter().zip(&b.releases).enumerate() {
        assert_eq!(x, y, "log entry {k}");
    }
    assert_eq!(a.events, b.events, "events");
    assert!(a.spike_ids == b.spike_ids, "spikes differ");
    assert_eq!(cpu.evoked_per_projection(), gpu.evoked_per_projection());
}

/// Every synapse feature at once: CA release with both laws, asynchronous and miniature
/// release and reserve pools, stochastic and mean TM, the pulse cleft, AMPA, NMDA,
/// GABA_A, GABA_B, glycine, nACh and exp receptors, onto LIF and HH cells.
pub(crate) const ZOO: &str = r#"
version = 1
[simulation]
dt_ms = 0.1
duration_ms = 400.0
seed = 11
[[populations]]
name = "poisson"
size = 30
model = "poisson"
[populations.poisson]
rate_hz = 40.0
[[populations]]
name = "lif"
size = 12
model = "lif"
[populations.lif]
q_rr_ns = 100.0
q_sfa_ns = 5.0
[populations.init]
v_mv = { dist = "uniform", low = -70.0, high = -55.0 }
[[populations]]
name = "hh"
size = 4
model = "hh"
[[synapse_types]]
name = "glu_ca"
transmitter = "glutamate"
release = "ca"
[synapse_types.ca]
n_sites = 8
[synapse_types.vesicles]
reserve_size = 20
tau_endo_ms = 200.0
async_rho = 0.8
tau_async_ms = 5.0
spont_rate_per_s = 30.0
[[synapse_types.receptors]]
kind = "ampa"
g_max_ns = 2.0
[[synapse_types.receptors]]
kind = "nmda"
g_max_ns = 1.0
[[synapse_types]]
name = "glu_dkr"
transmitter = "glutamate"
release = "ca"
[synapse_types.ca]
law = "dkr"
n_sites = 4
[synapse_types.cleft]
model = "pulse"
pulse_ms = 1.0
[[synapse_types.receptors]]
kind = "ampa"
g_max_ns = 3.0
[[synapse_types]]
name = "gaba_tm"
transmitter = "gaba"
release = "tm_stochastic"
[synapse_types.tm]
n_sites = 6
u = 0.3
tau_fac_ms = 50.0
tau_rec_ms = 200.0
[synapse_types.vesicles]
reserve_size = 10
async_rho = 0.3
spont_rate_per_s = 10.0
[[synapse_types.receptors]]
kind = "gaba_a"
g_max_ns = 1.0
[[synapse_types.receptors]]
kind = "gaba_b"
g_max_ns = 2.0
[[synapse_types]]
name = "gly_mean"
transmitter = "glycine"
release = "tm_mean"
[[synapse_types.receptors]]
kind = "glycine"
g_max_ns = 2.0
[[synapse_types]]
name = "ach_mixed"
transmitter = "acetylcholine"
release = "ca"
[[synapse_types.receptors]]
kind = "nach"
g_max_ns = 1.0
[[synapse_types.receptors]]
kind = "exp"
g_max_ns = 0.5
tau_ms = 3.0
e_rev_mv = 0.0
[[projections]]
name = "p_lif"
source = "poisson"
target = "lif"
synapse = "glu_ca"
rule = "fixed_probability"
p = 0.4
delay_ms = 1.0
[[projections]]
name = "p_hh"
source = "poisson"
target = "hh"
synapse = "glu_dkr"
rule = "fixed_probability"
p = 0.5
delay_ms = 0.5
[[projections]]
name = "lif_lif"
source = "lif"
target = "lif"
synapse = "gaba_tm"
rule = "fixed_probability"
p = 0.5
delay_ms = 2.0
[[projections]]
name = "lif_hh"
source = "lif"
target = "hh"
synapse = "gly_mean"
rule = "fixed_probability"
p = 0.5
delay_ms = 1.5
[[projections]]
name = "hh_lif"
source = "hh"
target = "lif"
synapse = "ach_mixed"
rule = "all_to_all"
delay_ms = 0.3
[[inputs]]
target = "hh"
amplitude_pa = 200.0
"#;

#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn every_synapse_feature_is_bit_identical() {
    let cpu = backend_with(ZOO, &[]);
    let feats = cpu
        .model()
        .syn_types
        .iter()
        .map(|t| t.gpu)
        .collect::<Vec<_>>();
    assert!(feats
        .iter()
        .any(|t| t.async_rho > 0.0 && t.spont_per_site_step > 0.0 && t.reserve_size > 0));
    let (b, pr) = same_text(ZOO, "zoo", 4000, 100, 50);
    // The features were exercised: the largest sample of each synapse variable.
    let mut most = std::collections::HashMap::new();
    for (i, &x) in b.samples.iter().enumerate() {
        if let Probe::Synapse(var, _) = pr[i % pr.len()] {
            let m = most.entry(format!("{var:?}")).or_insert(0f32);
            *m = m.max(x);
        }
    }
    eprintln!("zoo maxima: {most:?}");
    for var in ["Released", "Cleft", "GProt(1)", "R(1)", "TmX", "Endosome"] {
        assert!(
            most.get(var).copied().unwrap_or(0.0) > 0.0,
            "{var} never above 0: {most:?}"
        );
    }
}

/// Each step's kernels from the same state: the CPU's state after s steps is loaded into
/// the GPU image, both compute one step, and every buffer (neurons, terminals, pools,
/// active slots, rings, minis) is identical.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn one_step_from_the_same_state_is_identical() {
    let mut cpu = backend_with(ZOO, &[]);
    let mut gpu = gpu_of(&cpu, 16);
    let mut checked_active = 0;
    for start in [0u32, 13, 150, 151, 600, 1333, 2500] {
        let ahead = start - cpu.step_index();
        crate::common::run(&mut cpu, ahead);
        let st = cpu.state_ref().clone();
        gpu.load_state(&st).unwrap();
        cpu.step().unwrap();
        gpu.step().unwrap();
        let (c, g) = (cpu.state_ref().clone(), gpu.state().unwrap().clone());
        if let Some(d) = first_difference(&c, &g) {
            panic!("one step from step {start}: {d}");
        }
        assert_eq!(c.spikes, g.spikes, "step {start}: spikes");
        checked_active += c.active.len();
    }
    assert!(
        checked_active > 20,
        "the steps checked had active synapses ({checked_active})"
    );
}

/// The per-event release log of watched synapses and the evoked-release counts per
/// projection are the same on both backends.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn release_logs_and_counts_match() {
    let mut cpu = backend_with(ZOO, &[]);
    let mut gpu = gpu_of(&cpu, 128);
    let watched: Vec<u32> = (0..cpu.network().n_synapses()).step_by(3).collect();
    cpu.watch_releases(&watched);
    gpu.watch_releases(&watched);
    let a = cpu.advance(3000, &[], 1).unwrap();
    let b = gpu.advance(3000, &[], 1).unwrap();
    assert!(
        a.releases.len() > 100,
        "{} logged releases",
        a.releases.len()
    );
    for kind in [
        ReleaseKind::Evoked,
        ReleaseKind::Asynchronous,
        ReleaseKind::Spontaneous,
    ] {
        assert!(
            a.releases.iter().any(|e| e.kind == kind),
            "no {kind:?} release logged"
        );
    }
    assert_eq!(a.releases.len(), b.releases.len(), "log lengths");
    for (k, (x, y)) in a.releases.iter().zip(&b.releases).enumerate() {
        assert_eq!(x, y, "log entry {k}");
    }
    let (ea, eb) = (cpu.evoked_per_projection(), gpu.evoked_per_projection());
    assert_eq!(ea.len(), eb.len());
    // Both count quanta in 2^-16 units: identical, mean TM fractions included.
    assert_eq!(ea, eb, "evoked events, quanta and failures per projection");
    assert!(
        ea.iter().any(|x| x.2 != x.2.round()),
        "no fractional quanta: {ea:?}"
    );
    // A log too small for a batch's worst case: the batches are cut to the steps it
    // holds (here 5), and the log is still the CPU's, nothing lost.
    let mut cpu = backend_with(ZOO, &[]);
    let per_step: u64 = watched
        .iter()
        .map(|&s| {
            2 * cpu.model().syn_types[cpu.network().syn_type(s as usize)]
                .gpu
                .n_sites as u64
                + 1
        })
        .sum();
    let mut gpu = gpu_of(&cpu, 128).with_log_capacity(5 * per_step + 3);
    cpu.watch_releases(&watched);
    gpu.watch_releases(&watched);
    let a = cpu.advance(600, &[], 1).unwrap();
    let (s0, _) = gpu.traffic().unwrap();
    let b = gpu.advance(600, &[], 1).unwrap();
    let (s1, _) = gpu.traffic().unwrap();
    assert_eq!(s1 - s0, 120, "submissions of 5 steps");
    assert!(!a.releases.is_empty());
    assert_eq!(a.releases, b.releases);
}

/// §8a on the GPU: binomial release of 10^5 independent synapses (N = 5, p = 0.3): mean,
/// variance and failure rate within 4 SE of N·p, N·p·(1-p) and (1-p)^N; and the
/// stochastic TM synapse's mean release follows the deterministic TM recursion (§3.3).
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn gpu_quantal_statistics() {
    use crate::release::{ca, check_binomial, released_in, tm_reference, trials};
    let (n, p) = (5u32, 0.3f64);
    let cpu = backend_with(
        &trials(
            100,
            1000,
            "[0.0]",
            &ca(&format!("n_sites = {n}\np_ref = {p}")),
        ),
        &[],
    );
    let ns = cpu.network().n_synapses();
    let mut gpu = gpu_of(&cpu, 16);
    gpu.advance(2, &[], 1).unwrap();
    let k = released_in(gpu.state().unwrap(), ns);
    assert_eq!(k.len(), 100_000);
    check_binomial(&k, n, p);

    let (u, d, f, isi) = (0.1, 100.0, 500.0, 20.0);
    let times: Vec<String> = (0..5).map(|k| format!("{:?}", k as f64 * isi)).collect();
    let syn = format!("release = \"tm_stochastic\"\n[synapse_types.tm]\nn_sites = 10\nu = {u}\ntau_rec_ms = {d}\ntau_fac_ms = {f}\n");
    let cpu = backend_with(
        &trials(20, 1000, &format!("[{}]", times.join(", ")), &syn),
        &[],
    );
    let ns = cpu.network().n_synapses();
    let mut gpu = gpu_of(&cpu, 64);
    gpu.advance(1, &[], 1).unwrap();
    for (pulse, w) in tm_reference(u, d, f, isi, 5).iter().enumerate() {
        gpu.advance(1, &[], 1).unwrap();
        let k: Vec<f64> = released_in(gpu.state().unwrap(), ns)
            .iter()
            .map(|x| x / 10.0)
            .collect();
        let (m, se) = crate::common::mean_se(&k);
        assert!(
            (m - w).abs() < 4.0 * se,
            "TM pulse {}: {m} ± {se} vs {w}",
            pulse + 1
        );
        gpu.advance((isi / 0.1) as u32 - 1, &[], 1).unwrap();
    }
}

/// An asynchronous-release ring row that fills up is detected after the batch, which
/// runs again from its start with the chunk's rows doubled, until they suffice: the run
/// is the CPU's, bit for bit, with one entry per row to begin with.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn asynchronous_ring_overflow_grows_the_rows() {
    let cpu = backend_with(ZOO, &[]);
    let ctx = GpuContext::new(None).unwrap_or_else(|e| panic!("{e}"));
    let mut gpu = GpuBackend::with_async_capacity(
        ctx,
        Arc::new(cpu.model().clone()),
        Arc::new(cpu.network().clone()),
        64,
        1,
    )
    .unwrap();
    same_on(
        cpu,
        &mut gpu,
        "zoo, one asynchronous entry per row",
        3000,
        50,
    );
    assert!(gpu.reruns() >= 2, "{} batches run again", gpu.reruns());
    eprintln!("{} batches run again", gpu.reruns());
}

/// Synapse buffers larger than one storage binding: with the binding limit lowered, the
/// network is split into chunks of neurons and their incoming synapses, each its own
/// image; runs and single steps stay bit-identical to the CPU.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn synapse_arrays_larger_than_one_binding_are_split() {
    // Without asynchronous release, whose ring rows would set the smallest chunk; the
    // f32 synapse state then splits the 326 synapses into chunks of 8 KiB bindings.
    let no_async = [
        "synapse_types.glu_ca.vesicles.async_rho=0.0",
        "synapse_types.glu_dkr.vesicles.async_rho=0.0",
        "synapse_types.gaba_tm.vesicles.async_rho=0.0",
        "synapse_types.ach_mixed.vesicles.async_rho=0.0",
    ];
    let cpu = backend_with(ZOO, &no_async);
    let limit = 8 << 10;
    let build = |cpu: &CpuBackend| {
        let ctx = GpuContext::new(None).unwrap_or_else(|e| panic!("{e}"));
        GpuBackend::with_limits(
            ctx,
            Arc::new(cpu.model().clone()),
            Arc::new(cpu.network().clone()),
            100,
            limit,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let gpu = build(&cpu);
    let single = gpu_of(&cpu, 100);
    assert_eq!(single.chunks(), 1);
    assert!(gpu.chunks() >= 3, "{} chunks", gpu.chunks());
    eprintln!(
        "zoo in {} chunks of at most {limit} bytes per binding",
        gpu.chunks()
    );
    let mut gpu = gpu;
    same_on(cpu, &mut gpu, "zoo, chunked", 3000, 50);
    // One step from the same state, chunked.
    let mut cpu = backend_with(ZOO, &no_async);
    let mut gpu = build(&cpu);
    for start in [0u32, 151, 1333] {
        let ahead = start - cpu.step_index();
        crate::common::run(&mut cpu, ahead);
        gpu.load_state(cpu.state_ref()).unwrap();
        cpu.step().unwrap();
        gpu.step().unwrap();
        let (c, g) = (cpu.state_ref().clone(), gpu.state().unwrap().clone());
        if let Some(d) = first_difference(&c, &g) {
            panic!("chunked, one step from step {start}: {d}");
        }
    }
}

/// The same network and seed twice on the GPU: the same bits (spikes, every sample, the
/// state); another seed gives other releases.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn gpu_synapse_runs_are_deterministic() {
    let run = |seed: &str| {
        let cpu = backend_with(ZOO, &[&format!("simulation.seed={seed}")]);
        let pr = probes(&cpu);
        let mut gpu = gpu_of(&cpu, 128);
        gpu.watch(&pr).unwrap();
        let b = gpu.advance(1500, &pr, 5).unwrap();
        (b, gpu.state().unwrap().canonical())
    };
    let (a, b, c) = (run("11"), run("11"), run("12"));
    assert_eq!(a.0.spike_ids, b.0.spike_ids);
    assert_eq!(
        a.0.samples.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        b.0.samples.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    assert!(first_difference(&a.1, &b.1).is_none());
    assert_ne!(a.0.samples, c.0.samples);
}

/// The GPU image of a network keeps the sections its synapse types (and watched probes)
/// use, no others: each present section is n_synapses long, the sections tile their buffers without gaps or
/// overlaps, and the buffers have the sizes `chunk_bytes` (the chunk sizing and `quantal
/// check`) predicts.
#[test]
fn the_synapse_image_keeps_the_sections_its_types_use() {
    use quantal::backend::gpu_syn::{
        chunk_bytes, delay_classes, pool_per_neuron, RingShape, SynFeatures, SynHost,
    };
    use quantal::layout::{syn_f32, syn_u32, ABSENT};
    let zoo = backend_with(ZOO, &[]);
    let all_u: Vec<u32> = (0..syn_u32::COUNT).collect();
    let cases: [(&str, CpuBackend, Vec<u32>, Vec<u32>); 4] = [
        (
            "coba",
            example("coba", &[]),
            vec![syn_u32::T_LAST, syn_u32::SITES],
            vec![syn_f32::WEIGHT, syn_f32::X_F, syn_f32::X_D],
        ),
        (
            "brette_coba",
            example("brette_coba", &[]),
            vec![],
            vec![syn_f32::WEIGHT],
        ),
        (
            "coba_kinetic",
            example("coba_kinetic", &[]),
            vec![syn_u32::T_LAST, syn_u32::SITES, syn_u32::HANDOFF_STEP],
            vec![
                syn_f32::WEIGHT,
                syn_f32::X_F,
                syn_f32::X_D,
                syn_f32::CLEFT_MM,
                syn_f32::RELEASED,
            ],
        ),
        ("zoo", zoo, all_u, (0..syn_f32::COUNT).collect()),
    ];
    for (name, mut cpu, want_u, want_f) in cases {
        let st = cpu.state().unwrap().clone();
        let (m, n) = (cpu.model(), cpu.network());
        // The zoo with the sums of a watched `released` probe.
        let shape = RingShape {
            released_sums: name == "zoo",
            ..RingShape::of(m, n)
        };
        let nn = n.n_neurons() as usize;
        let ns = n.n_synapses() as usize;
        let host = SynHost::pack(m, n, &st, &shape, &(0..nn));
        let off = host.off;
        let got_u: Vec<u32> = (0..syn_u32::COUNT)
            .filter(|&s| off.u_sec(s).is_some())
            .collect();
        let got_f: Vec<u32> = (0..syn_f32::COUNT)
            .filter(|&s| off.f_sec(s).is_some())
            .collect();
        assert_eq!(got_u, want_u, "{name}: u32 sections");
        assert_eq!(got_f, want_f, "{name}: f32 sections");
        // The u32 sections tile syn_u32; the f32 scalars, receptor and hand-off state,
        // take-backs and contributions tile syn_f32.
        let mut starts: Vec<usize> = got_u.iter().map(|&s| off.u_sec(s).unwrap()).collect();
        starts.sort_unstable();
        for (k, &a) in starts.iter().enumerate() {
            assert_eq!(a, k * ns, "{name}: u32 section {k}");
        }
        assert_eq!(host.u.len(), (starts.len() * ns).max(1), "{name}: syn_u32");
        let mut starts: Vec<usize> = got_f.iter().map(|&s| off.f_sec(s).unwrap()).collect();
        starts.sort_unstable();
        for (k, &a) in starts.iter().enumerate() {
            assert_eq!(a, k * ns, "{name}: f32 section {k}");
        }
        let scalars = starts.len() * ns;
        let hs = off.handoff_stride as usize;
        assert_eq!(off.r as usize, scalars, "{name}: r");
        assert_eq!(
            off.handoff_r as usize,
            scalars + off.slot_stride as usize * ns,
            "{name}: handoff_r"
        );
        let take = (hs > 0).then_some(off.handoff_r as usize + hs * ns);
        assert_eq!(
            (off.take != ABSENT).then_some(off.take as usize),
            take,
            "{name}: take"
        );
        assert_eq!(
            off.contrib as usize,
            off.handoff_r as usize + 2 * hs * ns,
            "{name}: contrib"
        );
        assert_eq!(
            host.f.len(),
            (off.contrib as usize + off.rec_stride as usize * ns).max(1),
            "{name}: syn_f32"
        );
        let feat = SynFeatures::of(m, &shape);
        let cap = shape.async_cap(m, n, 0..ns) as u64;
        let classes = delay_classes(n, 0..ns).len() as u64;
        let pool: u64 = pool_per_neuron(m, n).iter().sum();
        assert_eq!(off.pool_cap as u64, pool.max(1), "{name}: arrival pool");
        assert!(
            pool < ns as u64 * (shape.ring_len as u64 - 1).max(1) || shape.ring_len == 2,
            "{name}: the pool ({pool}) is smaller than a row per synapse and delay step"
        );
        let want = chunk_bytes(
            ns as u64, nn as u64, nn as u64, &shape, &feat, cap, classes, pool,
        );
        assert_eq!(host.sizes(), want, "{name}: buffer bytes");
    }
}

/// A `released` probe that was not announced by `watch` samples the quanta of the step at
/// an active synapse on both backends (the GPU image then keeps no sums); announced, it
/// samples the sums since the last sample (the other tests).
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn unwatched_released_probes_sample_the_step() {
    let mut cpu = backend_with(ZOO, &[]);
    let pr: Vec<Probe> = probes(&cpu)
        .into_iter()
        .filter(|p| matches!(p, Probe::Synapse(SynVar::Released, _)))
        .collect();
    assert!(!pr.is_empty());
    let mut gpu = gpu_of(&cpu, 100);
    let a = cpu.advance(600, &pr, 1).unwrap();
    let b = gpu.advance(600, &pr, 1).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.samples), bits(&b.samples));
    assert!(a.samples.iter().any(|&x| x > 0.0), "no quanta sampled");
}
