//! Criterion benchmarks: each CPU kernel that runs per neuron, the whole CPU step on the
//! example networks at two sizes, on all cores and on one thread (throughput in
//! neuron-steps and synaptic events), and the
//! GPU backend's batched steps (neurons only, and the COBA network with its synapses)
//! when an adapter exists. Inputs come from `networks/`.
//!
//! `cargo bench --bench step` (add `-- --quick` for a short run). The GPU group is left
//! out with a note when wgpu finds no adapter: a benchmark measures, it does not test.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use quantal::backend::cpu::{decay_pools, integrate, CpuBackend};
use quantal::backend::gpu::GpuBackend;
use quantal::backend::Backend;
use quantal::gpu::GpuContext;
use quantal::model::Model;
use quantal::netfile;
use quantal::network::{self, Network};
use std::path::Path;
use std::sync::Arc;

fn build(file: &str, set: &[&str]) -> (Arc<Model>, Arc<Network>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("networks")
        .join(file);
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let l = netfile::load(&path, &set).expect("example network");
    let m = Model::from_spec(&l.file);
    let n = network::build(&l, &m).expect("builds");
    (Arc::new(m), Arc::new(n))
}

/// A CPU backend (on all cores) advanced past the start-up transient.
fn warmed(m: &Arc<Model>, n: &Arc<Network>, steps: u32) -> CpuBackend {
    warmed_on(m, n, steps, None)
}

/// A CPU backend on `threads` threads (None: all cores) advanced by `steps`.
fn warmed_on(m: &Arc<Model>, n: &Arc<Network>, steps: u32, threads: Option<usize>) -> CpuBackend {
    let mut b = CpuBackend::with_threads(Arc::clone(m), Arc::clone(n), threads);
    b.advance(steps, &[], 1).expect("runs");
    b
}

fn kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu kernels");
    for (name, file, set) in [
        ("cells_fi 20k", "cells_fi.toml", vec![]),
        ("coba 4k", "coba.toml", vec![]),
        ("cobahh 4k", "cobahh.toml", vec![]),
    ] {
        let (m, n) = build(file, &set);
        let b = warmed(&m, &n, 200);
        let params = b.step_params();
        let nn = n.n_neurons() as u64;
        g.throughput(Throughput::Elements(nn));
        g.bench_function(format!("integrate {name} (neurons)"), |bench| {
            bench.iter_batched_ref(
                || b.state_ref().clone(),
                |st| {
                    let nn = n.n_neurons() as usize;
                    let mut all = st.neurons(&[0, nn], m.receptors.len());
                    let mut fired = integrate::Fired::default();
                    integrate::integrate_all(
                        &params,
                        &m.gpu_pops,
                        &m.gpu_receptors,
                        &n,
                        &mut all[0],
                        &mut fired,
                    );
                    fired
                },
                BatchSize::LargeInput,
            )
        });
        if m.receptors.is_empty() {
            continue;
        }
        g.throughput(Throughput::Elements(nn * m.receptors.len() as u64));
        g.bench_function(format!("decay_pools {name} (neuron-receptors)"), |bench| {
            bench.iter_batched_ref(
                || b.state_ref().clone(),
                |st| {
                    let nn = n.n_neurons() as usize;
                    let mut all = st.neurons(&[0, nn], m.receptors.len());
                    decay_pools::decay_pools_all(&params, &m.gpu_receptors, &mut all[0], true)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn steps(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu step");
    g.sample_size(10);
    for (name, file, set, threads) in [
        ("coba 4k", "coba.toml", vec![], None),
        ("coba 4k, 1 thread", "coba.toml", vec![], Some(1)),
        (
            "coba 1k",
            "coba.toml",
            vec!["populations.exc.size=800", "populations.inh.size=200"],
            None,
        ),
        ("brette_coba 4k", "brette_coba.toml", vec![], None),
        (
            "brette_coba 4k, 1 thread",
            "brette_coba.toml",
            vec![],
            Some(1),
        ),
        ("coba_kinetic 4k", "coba_kinetic.toml", vec![], None),
        ("cobahh 4k", "cobahh.toml", vec![], None),
        ("cells_fi 20k", "cells_fi.toml", vec![], None),
    ] {
        let (m, n) = build(file, &set);
        // Throughput in synaptic events (measured once over the same 100 steps), or in
        // neuron-steps for a network without synapses.
        let mut probe = warmed_on(&m, &n, 0, threads);
        let r = probe.advance(100, &[], 1).expect("runs");
        let (elements, unit) = if r.events > 0 {
            (r.events, "events")
        } else {
            (n.n_neurons() as u64 * 100, "neuron-steps")
        };
        g.throughput(Throughput::Elements(elements));
        g.bench_function(format!("{name}: 100 steps ({unit})"), |bench| {
            bench.iter_batched_ref(
                || warmed_on(&m, &n, 0, threads),
                |b| b.advance(100, &[], 1).expect("runs"),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn gpu(c: &mut Criterion) {
    let Ok(ctx) = GpuContext::new(None) else {
        eprintln!("gpu benchmarks left out: wgpu finds no adapter");
        return;
    };
    let adapter = ctx.adapter_name();
    drop(ctx);
    let mut g = c.benchmark_group(format!("gpu step on {adapter}"));
    g.sample_size(10);
    for (name, set) in [
        (
            "cells_fi 2k",
            vec![
                "populations.lif_150pa.size=200",
                "populations.lif_210pa.size=200",
                "populations.lif_300pa.size=200",
                "populations.lif_400pa.size=200",
                "populations.lif_600pa.size=200",
                "populations.hh_100pa.size=200",
                "populations.hh_200pa.size=200",
                "populations.hh_300pa.size=200",
                "populations.hh_500pa.size=200",
                "populations.hh_800pa.size=200",
            ],
        ),
        ("cells_fi 20k", vec![]),
    ] {
        let (m, n) = build("cells_fi.toml", &set);
        let mut b = GpuBackend::new(
            GpuContext::new(None).expect("adapter"),
            Arc::clone(&m),
            Arc::clone(&n),
        )
        .expect("gpu backend");
        g.throughput(Throughput::Elements(n.n_neurons() as u64 * 256));
        g.bench_function(
            format!("{name}: 256 steps, one submission (neuron-steps)"),
            |bench| bench.iter(|| b.advance(256, &[], 1).expect("runs")),
        );
    }
    // Synapses on the GPU: the COBA network at a quarter and at full size, warmed into
    // its self-sustained activity; throughput in synaptic events.
    for (name, set) in [
        (
            "coba 1k",
            vec![
                "populations.exc.size=800",
                "populations.inh.size=200",
                "projections.ee.p=0.08",
                "projections.ei.p=0.08",
                "projections.ie.p=0.08",
                "projections.ii.p=0.08",
            ],
        ),
        ("coba 4k", vec![]),
    ] {
        let (m, n) = build("coba.toml", &set);
        let mut b = GpuBackend::new(
            GpuContext::new(None).expect("adapter"),
            Arc::clone(&m),
            Arc::clone(&n),
        )
        .expect("gpu backend");
        b.advance(500, &[], 1).expect("warm-up");
        let events = b.advance(256, &[], 1).expect("runs").events.max(1);
        g.throughput(Throughput::Elements(events));
        g.bench_function(
            format!("{name}: 256 steps, one submission (synaptic events)"),
            |bench| bench.iter(|| b.advance(256, &[], 1).expect("runs")),
        );
    }
    g.finish();
}

criterion_group!(benches, kernels, steps, gpu);
criterion_main!(benches);
