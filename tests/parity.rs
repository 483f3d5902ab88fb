//! CPU-GPU parity on the adapter wgpu picks (Mesa's lavapipe in CI): the shared device
//! functions value by value, each GPU kernel for one step from the same state, and whole
//! runs, all bit for bit. They fail without an adapter; `QUANTAL_SKIP_GPU_TESTS=1` at build
//! time marks them ignored, and CI's `QUANTAL_REQUIRE_GPU=1` forbids that.

use crate::common::backend;
use quantal::backend::gpu::GpuBackend;
use quantal::backend::{Backend, NeuronVar, Probe};
use quantal::gpu::GpuContext;
use quantal::math::{exp_sw, ln_sw, pow_sw};
use quantal::philox::{philox4x32_10, u01, Stream};
use std::sync::Arc;

fn context() -> GpuContext {
    let ctx = GpuContext::new(None).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("GPU parity on {}", ctx.adapter_name());
    ctx
}

fn gpu_backend(text: &str, batch: u32) -> GpuBackend {
    let cpu = backend(text);
    let model = Arc::new(cpu.model().clone());
    let net = Arc::new(cpu.network().clone());
    GpuBackend::with_batch(context(), model, net, batch).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `entry` of selftest.wgsl over the given input buffers and returns the output.
fn selftest(
    ctx: &GpuContext,
    entry: &str,
    words: &[[u32; 4]],
    xs: &[f32],
    out_bytes: u64,
) -> Vec<u8> {
    let pipeline = ctx.pipeline("selftest", entry).unwrap();
    let words_in = ctx.storage("words_in", words);
    let words_out = ctx.storage("words_out", &vec![0u32; words.len() * 4]);
    let x_in = ctx.storage("x_in", xs);
    let x_out = ctx.storage("x_out", &vec![0f32; xs.len() * 4]);
    let zero_in = ctx.storage("zero_in", &[0u32]);
    let (entries, out_buf): (Vec<wgpu::BindGroupEntry>, &wgpu::Buffer) =
        if entry == "selftest_philox" {
            (
                vec![
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: words_in.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: words_out.as_entire_binding(),
                    },
                ],
                &words_out,
            )
        } else {
            (
                vec![
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: x_in.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: x_out.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: zero_in.as_entire_binding(),
                    },
                ],
                &x_out,
            )
        };
    let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let n = (words.len() / 2).max(xs.len()) as u32;
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(n.div_ceil(64), 1, 1);
    }
    let staging = ctx.staging("out", out_bytes);
    ctx.submit_and_read(enc, &[(out_buf, &staging, out_bytes)])
        .unwrap()
        .remove(0)
}

/// philox.wgsl gives the Random123 known answers and the same words as src/philox.rs for
/// 20 000 random counters and keys; its 16-bit-limb mulhilo equals the u64 product, and
/// u01 the Rust uniform, bit for bit.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn philox_on_the_gpu_matches_rust() {
    let ctx = context();
    let mut cases: Vec<([u32; 4], [u32; 2])> = vec![
        ([0; 4], [0; 2]),
        ([u32::MAX; 4], [u32::MAX; 2]),
        (
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0],
        ),
        (
            [0xFFFF, 0x10000, 0xFFFF_0000, 1],
            [0x8000_0000, 0x7FFF_FFFF],
        ),
    ];
    let mut s = Stream::new(99, 1, 2);
    let mut word = || (s.uniform_f64() * 4_294_967_296.0) as u32;
    for _ in 0..20_000 {
        cases.push(([word(), word(), word(), word()], [word(), word()]));
    }
    let mut words = Vec::new();
    for (c, k) in &cases {
        words.push(*c);
        words.push([k[0], k[1], 0, 0]);
    }
    let n = cases.len();
    let out = selftest(&ctx, "selftest_philox", &words, &[0.0], (2 * n * 16) as u64);
    let got: &[[u32; 4]] = bytemuck::cast_slice(&out);
    assert_eq!(
        got[0],
        [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
        "KAT (0, 0)"
    );
    assert_eq!(
        got[1],
        [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
        "KAT (max, max)"
    );
    assert_eq!(
        got[2],
        [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
        "KAT (pi)"
    );
    for (i, (c, k)) in cases.iter().enumerate() {
        assert_eq!(
            got[i],
            philox4x32_10(*c, *k),
            "philox of case {i}: {c:x?} {k:x?}"
        );
        let p = c[0] as u64 * c[1] as u64;
        assert_eq!(
            [got[n + i][0], got[n + i][1]],
            [(p >> 32) as u32, p as u32],
            "mulhilo {:x} {:x}",
            c[0],
            c[1]
        );
        assert_eq!(got[n + i][2], u01(c[0]).to_bits(), "u01({:x})", c[0]);
    }
}

/// math.wgsl's exp_sw, ln_sw and pow_sw equal src/math.rs bit for bit over the ranges
/// the kernels use, the limits and the special values.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn math_on_the_gpu_matches_rust() {
    let ctx = context();
    let mut xs: Vec<f32> = (0..100_000)
        .map(|i| -95.0 + 190.0 * i as f32 / 100_000.0)
        .collect();
    let mut s = Stream::new(5, 5, 5);
    xs.extend((0..200_000).map(|_| -87.0 + 175.0 * s.uniform_f64() as f32));
    xs.extend((0..20_000).map(|i| (i as f32 + 0.5) * 2f32.powi(-24)));
    xs.extend((0..20_000).map(|i| 1.0 - i as f32 * 1e-7));
    xs.extend([
        0.0,
        -0.0,
        1.0,
        -87.0,
        88.0,
        88.1,
        -87.1,
        f32::MIN_POSITIVE,
        1e-40,
        f32::MAX,
        f32::INFINITY,
        -1.0,
        2.5e-8,
    ]);
    let out = selftest(
        &ctx,
        "selftest_math",
        &[[0; 4]; 2],
        &xs,
        (xs.len() * 16) as u64,
    );
    let got: &[[f32; 4]] = bytemuck::cast_slice(&out);
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    for (i, &x) in xs.iter().enumerate() {
        let want = [exp_sw(x), ln_sw(x), pow_sw(x, 4.0), pow_sw(x, 2.5)];
        for (j, name) in ["exp_sw", "ln_sw", "pow_sw(x, 4)", "pow_sw(x, 2.5)"]
            .iter()
            .enumerate()
        {
            assert!(
                same(got[i][j], want[j]),
                "{name}({x:e}): GPU {:e} ({:08x}), CPU {:e} ({:08x})",
                got[i][j],
                got[i][j].to_bits(),
                want[j],
                want[j].to_bits()
            );
        }
    }
}

/// A neuron-only network that exercises every neuron kernel path: LIF cells at nine DC
/// levels with relative refractoriness, adaptation and a threshold jump; a current step
/// switched on and off; Traub-Miles HH cells; pooled AMPA and NMDA conductances decaying
/// from their initial values (decay_pools, NMDA block); Poisson and spike-time sources.
fn neurons_only(seed: u64) -> String {
    format!(
        r#"
version = 1
[simulation]
dt_ms = 0.1
duration_ms = 300.0
seed = {seed}
[[populations]]
name = "lif"
size = 9
model = "lif"
[populations.lif]
q_rr_ns = 300.0
q_sfa_ns = 10.0
delta_theta_mv = 2.0
tau_theta_ms = 30.0
[populations.init]
v_mv = {{ dist = "uniform", low = -70.0, high = -55.0 }}
g_ns = {{ "glu.ampa" = 4.0, "glu.nmda" = {{ dist = "uniform", low = 0.0, high = 3.0 }} }}
[[populations]]
name = "hh"
size = 3
model = "hh"
[[populations]]
name = "poisson"
size = 40
model = "poisson"
[populations.poisson]
rate_hz = 80.0
start_ms = 20.0
stop_ms = 250.0
[[populations]]
name = "times"
size = 2
model = "spike_times"
[populations.spike_times]
per_neuron_ms = [[1.0, 5.0, 5.04, 299.9], [0.0, 100.0]]
[[synapse_types]]
name = "glu"
transmitter = "glutamate"
[[synapse_types.receptors]]
kind = "ampa"
[[synapse_types.receptors]]
kind = "nmda"
[[inputs]]
target = "lif"
amplitude_pa = 250.0
[[inputs]]
target = "lif"
amplitude_pa = 150.0
ids = [0, 2, 4, 6, 8]
start_ms = 50.0
stop_ms = 200.0
[[inputs]]
target = "hh"
amplitude_pa = 300.0
ids = [1, 2]
start_ms = 10.0
[[inputs]]
target = "hh"
amplitude_pa = 500.0
ids = [2]
start_ms = 100.0
stop_ms = 150.0
"#
    )
}

fn probes(n_neurons: u32) -> Vec<Probe> {
    let mut p = Vec::new();
    for n in 0..n_neurons {
        for v in [
            NeuronVar::V,
            NeuronVar::GRr,
            NeuronVar::GSfa,
            NeuronVar::Theta,
            NeuronVar::Refractory,
            NeuronVar::IExt,
            NeuronVar::GSynTotal,
            NeuronVar::M,
            NeuronVar::Receptor(1),
        ] {
            p.push(Probe::Neuron(v, n));
        }
    }
    p
}

/// A kernel over more than 65 535 workgroups is dispatched as rows of 65 535 groups
/// (`groups`, `invocation_index`): 4 194 368 LIF neurons (65 537 groups of 64) give the
/// CPU's bits in every neuron, the two past the first row included.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn dispatches_of_more_than_one_row_of_groups_reach_every_invocation() {
    let n = 65_537 * 64;
    let text = format!(
        r#"
version = 1
[simulation]
dt_ms = 0.1
duration_ms = 1.0
seed = 3
[[populations]]
name = "lif"
size = {n}
model = "lif"
[populations.init]
v_mv = {{ dist = "uniform", low = -70.0, high = -45.0 }}
[[inputs]]
target = "lif"
amplitude_pa = 400.0
"#
    );
    let mut cpu = backend(&text);
    let mut gpu = gpu_backend(&text, 8);
    let a = cpu.advance(3, &[], 1).unwrap();
    let b = gpu.advance(3, &[], 1).unwrap();
    // Some neurons start above threshold, some of them in the second row of groups.
    assert!(
        a.spike_ids.iter().any(|&i| i as usize >= 65_535 * 64),
        "{} spikes, none past the first row",
        a.spike_ids.len()
    );
    assert_eq!(a.spike_ids, b.spike_ids);
    assert_eq!(a.spike_offsets, b.spike_offsets);
    let (vc, vg) = (
        cpu.state().unwrap().v_mv.clone(),
        gpu.state().unwrap().v_mv.clone(),
    );
    assert_eq!(vc.len(), n);
    let differ = (0..n).find(|&i| vc[i].to_bits() != vg[i].to_bits());
    assert_eq!(differ, None, "first neuron whose v_mv differs");
    // The last neurons are past the first row of groups and moved from their start.
    let init = backend(&text).state().unwrap().v_mv[n - 1];
    assert_ne!(vg[n - 1].to_bits(), init.to_bits());
}

/// Whole runs: identical spike trains and identical sampled traces (every variable of
/// every neuron, every step) on the GPU and the CPU, across batch boundaries.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn neuron_runs_are_bit_identical() {
    let text = neurons_only(5);
    let mut cpu = backend(&text);
    let mut gpu = gpu_backend(&text, 97);
    let nn = cpu.network().n_neurons();
    let pr = probes(nn);
    let a = cpu.advance(3000, &pr, 1).unwrap();
    let b = gpu.advance(3000, &pr, 1).unwrap();
    let spikes = a.spike_ids.len();
    assert!(spikes > 200, "the test network must spike ({spikes})");
    for k in 0..3000 {
        assert_eq!(b.spikes(k), a.spikes(k), "spikes of step {k}");
    }
    assert_eq!(a.samples.len(), b.samples.len());
    for (i, (x, y)) in a.samples.iter().zip(&b.samples).enumerate() {
        let (step, p) = (i / pr.len(), pr[i % pr.len()]);
        assert!(
            x.to_bits() == y.to_bits(),
            "step {step} {p:?}: CPU {x:e}, GPU {y:e}"
        );
    }
    let (subs, reads) = gpu.traffic().unwrap();
    assert_eq!(
        (subs, reads),
        (31, 31),
        "3000 steps in batches of 97: 31 submissions and readbacks"
    );
}

/// Each GPU kernel computes one step from the same state as the CPU: every buffer is
/// identical (a difference names the buffer, the element and both values).
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn one_step_from_the_same_state_is_identical() {
    let text = neurons_only(8);
    let mut cpu = backend(&text);
    let mut gpu = gpu_backend(&text, 16);
    for start in [0u32, 37, 101, 102, 517, 1999] {
        let ahead = start - cpu.step_index();
        crate::common::run(&mut cpu, ahead);
        let st = cpu.state_ref().clone();
        gpu.load_state(&st).unwrap();
        cpu.step().unwrap();
        gpu.step().unwrap();
        let (c, g) = (cpu.state_ref().clone(), gpu.state().unwrap().clone());
        let f32s: [(&str, &Vec<f32>, &Vec<f32>); 10] = [
            ("v_mv", &c.v_mv, &g.v_mv),
            ("g_rr_ns", &c.g_rr_ns, &g.g_rr_ns),
            ("g_sfa_ns", &c.g_sfa_ns, &g.g_sfa_ns),
            ("theta_mv", &c.theta_mv, &g.theta_mv),
            ("hh_m", &c.hh_m, &g.hh_m),
            ("hh_h", &c.hh_h, &g.hh_h),
            ("hh_n", &c.hh_n, &g.hh_n),
            ("i_ext_pa", &c.i_ext_pa, &g.i_ext_pa),
            ("g_active_ns", &c.g_active_ns, &g.g_active_ns),
            ("g_pool_ns", &c.g_pool_ns, &g.g_pool_ns),
        ];
        for (name, x, y) in f32s {
            for (i, (a, b)) in x.iter().zip(y.iter()).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "step {start}: {name}[{i}] CPU {a:e} GPU {b:e}"
                );
            }
        }
        assert_eq!(c.refr, g.refr, "step {start}: refr");
        assert_eq!(c.spike_ptr, g.spike_ptr, "step {start}: spike_ptr");
        assert_eq!(c.spikes, g.spikes, "step {start}: spikes");
    }
}

/// The same seed twice gives identical GPU output; another seed other Poisson trains.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn gpu_runs_are_deterministic() {
    let run = |seed| {
        gpu_backend(&neurons_only(seed), 256)
            .advance(1000, &[], 1)
            .unwrap()
    };
    let (a, b, c) = (run(3), run(3), run(4));
    assert_eq!(a, b);
    assert_ne!(a.spike_ids, c.spike_ids);
}

/// `quantal run --backend gpu` writes the same spikes and traces as `--backend cpu`
/// (the HDF5 datasets compared value by value), `auto` says what it chose and why, and a
/// missing adapter name or a network with synapses fails with the reason.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn cli_gpu_backend_matches_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = |b: &str| dir.path().join(format!("{b}.h5"));
    let run = crate::common::quantal;
    let common = [
        "run",
        "networks/cells_fi.toml",
        "--duration-ms",
        "30",
        "--set",
        "populations.lif_300pa.size=50",
    ];
    for b in ["cpu", "gpu", "auto"] {
        let o = run(&[
            &common[..],
            &["--backend", b, "-o", out(b).to_str().unwrap()],
        ]
        .concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{b}: {err}");
        if b == "auto" {
            // lavapipe is a software renderer: auto keeps to the CPU and says so (without
            // asking the drivers where the machine has no GPU device at all).
            assert!(
                err.contains("backend cpu (auto: CPU, because the only GPU adapter, llvmpipe")
                    && err.contains("is a software renderer (--backend gpu runs on it)")
                    || err
                        .contains("backend cpu (auto: CPU, because this machine has no GPU device"),
                "{err}"
            );
        }
    }
    // Where there is a GPU device (here forced by QUANTAL_PROBE_ADAPTERS=1), auto asks a
    // child process which adapter there is: lavapipe, a software renderer, keeps it on the
    // CPU (the run's spikes are compared with the others' below).
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_quantal"))
        .args(common)
        .args(["--backend", "auto", "-o", out("probe").to_str().unwrap()])
        .env("QUANTAL_PROBE_ADAPTERS", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "auto with the probe: {err}");
    assert!(
        err.contains("backend cpu (auto: CPU, because the only GPU adapter, ")
            && err.contains("is a software renderer (--backend gpu runs on it)")
            || err.contains("auto: GPU adapter found"),
        "{err}"
    );
    // What the probe answers: the adapter the GPU backend takes, and whether it is a
    // software renderer.
    let o = run(&["probe-adapter"]);
    let text = String::from_utf8_lossy(&o.stdout);
    let (kind, name) = text
        .trim_end()
        .split_once('\t')
        .unwrap_or_else(|| panic!("probe-adapter: `{text}`"));
    assert!(
        o.status.success() && ["software", "hardware"].contains(&kind) && !name.is_empty(),
        "probe-adapter: `{text}`"
    );
    assert!(
        !name.contains("llvmpipe") || kind == "software",
        "probe-adapter: `{text}`"
    );
    let read = |b: &str| {
        let f = hdf5::File::open(out(b)).unwrap();
        let mut v = Vec::new();
        for pop in ["lif_150pa", "lif_600pa", "hh_300pa", "hh_800pa"] {
            v.push(
                f.dataset(&format!("spikes/{pop}/timestamps"))
                    .unwrap()
                    .read_raw::<f64>()
                    .unwrap(),
            );
        }
        let traces: Vec<f32> = [
            "report/hh_300pa/v_mv/data",
            "report/hh_300pa/m/data",
            "report/lif_300pa/v_mv/data",
        ]
        .iter()
        .flat_map(|d| f.dataset(d).unwrap().read_raw::<f32>().unwrap())
        .collect();
        let backend: String = f
            .attr("backend")
            .unwrap()
            .read_scalar::<hdf5::types::VarLenUnicode>()
            .unwrap()
            .to_string();
        (v, traces, backend)
    };
    let (c, g, a) = (read("cpu"), read("gpu"), read("auto"));
    assert!(c.0.iter().map(|s| s.len()).sum::<usize>() > 100);
    assert_eq!(c.0, g.0, "spikes");
    assert_eq!(c.0, read("probe").0, "spikes of auto with the probe");
    assert_eq!(
        c.1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        g.1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        "traces"
    );
    assert_eq!(
        (c.2.as_str(), g.2.as_str(), a.2.as_str()),
        ("cpu", "gpu", "cpu")
    );
    let o = run(&[
        &common[..],
        &[
            "--backend",
            "gpu",
            "--adapter",
            "no-such-adapter",
            "-o",
            out("x").to_str().unwrap(),
        ],
    ]
    .concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no adapter name contains `no-such-adapter`; the adapters are"),
        "{err}"
    );
    // A network with synapses: the same HDF5 datasets from both backends (spikes, every
    // report, the per-event release record).
    for b in ["cpu", "gpu"] {
        let o = run(&[
            "run",
            "networks/single_synapse.toml",
            "--backend",
            b,
            "--set",
            "record.releases=[\"pre_to_post\"]",
            "-o",
            out(&format!("syn_{b}")).to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{b}: {err}");
    }
    let datasets = |b: &str| {
        let f = hdf5::File::open(out(&format!("syn_{b}"))).unwrap();
        let mut v: Vec<(String, Vec<u8>)> = Vec::new();
        for name in [
            "spikes/pre/timestamps",
            "spikes/post/timestamps",
            "report/post/v_mv/data",
            "report/post/g_glu_nmda_ns/data",
            "report/pre_to_post/docked/data",
            "report/pre_to_post/reserve/data",
            "report/pre_to_post/released/data",
            "report/pre_to_post/r_nmda/data",
            "report/pre_to_post/ca_res_um/data",
            "releases/pre_to_post/quanta",
            "releases/pre_to_post/timestamps",
            "releases/pre_to_post/synapse_ids",
            "releases/pre_to_post/kind",
        ] {
            let d = f
                .dataset(name)
                .unwrap_or_else(|e| panic!("{b}: {name}: {e}"));
            v.push((name.to_string(), d.read_raw::<u8>().unwrap_or_default()));
        }
        v
    };
    let (c, g) = (datasets("cpu"), datasets("gpu"));
    for ((name, x), (_, y)) in c.iter().zip(&g) {
        assert!(x == y, "{name} differs between the backends");
    }
}

/// `quantal validate` reports every buffer identical, identical spike trains and equal
/// statistics on lavapipe, and exits 0; a network it cannot run fails with the reason.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn validate_command_passes_on_lavapipe() {
    let mut args = vec![
        "validate",
        "networks/cells_fi.toml",
        "--duration-ms",
        "40",
        "--steps-per-kernel-check",
        "50",
    ];
    for p in [
        "lif_150pa",
        "lif_210pa",
        "lif_300pa",
        "lif_400pa",
        "lif_600pa",
        "hh_100pa",
        "hh_200pa",
        "hh_300pa",
        "hh_500pa",
        "hh_800pa",
    ] {
        args.push("--set");
        args.push(Box::leak(
            format!("populations.{p}.size=40").into_boxed_str(),
        ));
    }
    let out = validate_passes(&args);
    assert!(
        out.contains("one step from identical state, at 8 steps (every 50)"),
        "{out}"
    );
    assert!(
        out.contains("whole run: identical spike trains over 400 steps"),
        "{out}"
    );
    // Synapses: every synapse buffer identical after one step and over the run.
    validate_passes(&[
        "validate",
        "networks/single_synapse.toml",
        "--duration-ms",
        "300",
        "--steps-per-kernel-check",
        "97",
    ]);
}

/// Runs `quantal` with `args` (a `validate` command) and checks what a passing run
/// prints: exit 0, all 62 buffer lines identical or empty on both backends (after one
/// step and at the end), some of them with values, PASS. Returns the output.
fn validate_passes(args: &[&str]) -> String {
    let o = crate::common::quantal(args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let identical = out.matches(" identical (").count();
    let empty = out.matches(" empty on both backends\n").count();
    assert_eq!(identical + empty, 62, "{out}");
    assert!(identical > 0, "{out}");
    assert!(out.contains("PASS"), "{out}");
    out
}

/// The large example network (100 000 neurons, 10 million synapses, a device image of
/// about 414 MiB) validates on lavapipe over 10 steps: every buffer identical after one
/// step and at the end, and the same spikes (about 40 Hz from the start: thousands).
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn large_network_validates_on_lavapipe() {
    let out = validate_passes(&["validate", "networks/large.toml", "--duration-ms", "1"]);
    assert!(
        out.contains("whole run: identical spike trains over 10 steps"),
        "{out}"
    );
}

/// The GPU stops on a non-finite state like the CPU: same population, element,
/// variable and step.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn gpu_stops_on_non_finite_state_like_the_cpu() {
    let text = crate::output::HH_BLOWS_UP;
    let err = gpu_backend(text, 64).advance(1000, &[], 1).unwrap_err();
    let cpu = backend(text).advance(1000, &[], 1).unwrap_err();
    assert_eq!(err.to_string(), cpu.to_string());
    assert!(
        err.to_string()
            .contains("population `cells` element 0: v_mv became NaN in step 17"),
        "{err}"
    );
}

/// Arrays larger than one storage binding: with the binding limit lowered to 1 KiB the
/// 54 neurons are split into chunks (each a complete image with its own bindings), and
/// the run is still bit-identical to the CPU, spikes, samples and state.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn arrays_larger_than_one_binding_are_split() {
    let text = neurons_only(11);
    let mut cpu = backend(&text);
    let model = Arc::new(cpu.model().clone());
    let net = Arc::new(cpu.network().clone());
    let mut gpu = GpuBackend::with_limits(context(), model, net, 16, 1024).unwrap();
    // 32 bytes of f32 state per neuron: 30 neurons per 1 KiB binding, 54 neurons.
    assert_eq!(gpu.chunks(), 2);
    let pr = probes(cpu.network().n_neurons());
    let a = cpu.advance(1500, &pr, 3).unwrap();
    let b = gpu.advance(1500, &pr, 3).unwrap();
    assert!(a.spike_ids.len() > 100);
    assert_eq!(a.spike_offsets, b.spike_offsets);
    assert_eq!(a.spike_ids, b.spike_ids);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.samples), bits(&b.samples));
    let (c, g) = (cpu.state_ref().clone(), gpu.state().unwrap().clone());
    assert_eq!(bits(&c.v_mv), bits(&g.v_mv));
    assert_eq!(bits(&c.g_pool_ns), bits(&g.g_pool_ns));
    assert_eq!((c.refr, c.spike_ptr), (g.refr, g.spike_ptr));
}

/// The CPU backend gives the same bits on any number of threads: neurons are split into
/// ranges and each step's events are cut between synapses, every range owning its state,
/// and the ranges' outputs are concatenated in order. On the zoo network (every synapse
/// feature: asynchronous fusions scheduled from several ranges, minis, reserve pools,
/// HH, Poisson) and on COBA, with ranges small enough that every run is split.
#[test]
fn any_number_of_threads_gives_the_same_bits() {
    use quantal::backend::cpu::CpuBackend;
    let read = |f: &str| {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f)).unwrap()
    };
    let (coba, brette, kinetic) = (
        read("networks/coba.toml"),
        read("networks/brette_coba.toml"),
        read("networks/coba_kinetic.toml"),
    );
    // Brette's one thread takes the fused static path (release_static_exp, through its
    // 8-byte records), coba's the fused quantal one (release_exp_direct); their split
    // runs take the general one in most steps: the same bits.
    for (name, text, steps) in [
        ("zoo", crate::synparity::ZOO, 3000),
        ("coba", coba.as_str(), 1500),
        ("brette", brette.as_str(), 600),
        // cleft_kinetic, with this step's releases at active synapses left to it.
        ("kinetic", kinetic.as_str(), 300),
    ] {
        let base = crate::common::backend_with(text, &[]);
        let (model, net) = (
            std::sync::Arc::new(base.model().clone()),
            std::sync::Arc::new(base.network().clone()),
        );
        let mut runs = Vec::new();
        for threads in [1, 2, 3, 8] {
            let mut b = CpuBackend::with_threads(model.clone(), net.clone(), Some(threads));
            if threads > 1 {
                b = b.with_ranges(5, 3);
            }
            let mut spikes = Vec::new();
            let mut events = 0u64;
            for _ in 0..steps {
                b.step().unwrap();
                spikes.push(b.spikes().to_vec());
                events += b.events_last_step();
            }
            if name == "coba" || name == "brette" {
                // One thread takes the fused path in every step; the split runs (ranges of
                // at least 3 events) take the general one in every step with 6 arrivals or more.
                let fused = b.fused_steps();
                assert_eq!(
                    b.static_record_bytes() > 0,
                    name == "brette",
                    "{name}: the static records are kept for brette only"
                );
                if threads == 1 {
                    assert_eq!(fused, steps as u64, "{name}: every step fused");
                    // Brette's arrivals come in spike order: its records are read in the
                    // order of the outgoing lists in every step.
                    let by_source = b.by_source_steps();
                    assert_eq!(by_source, fused * u64::from(name == "brette"), "{name}");
                } else {
                    assert!(
                        fused < steps as u64 / 2,
                        "{name}: {fused} of {steps} steps fused"
                    );
                }
            }
            let (neuron_ranges, event_ranges) = b.ranges();
            if threads > 1 {
                assert!(
                    neuron_ranges > 1 && event_ranges > 1,
                    "{name}, {threads} threads: not split ({neuron_ranges}, {event_ranges})"
                );
            }
            let evoked = b.evoked_per_projection();
            runs.push((threads, spikes, events, b.state_ref().canonical(), evoked));
        }
        let (_, s1, e1, st1, ev1) = &runs[0];
        assert!(
            s1.iter().map(|s| s.len()).sum::<usize>() > 50,
            "{name}: too quiet"
        );
        assert!(ev1.iter().any(|e| e.1 > 0), "{name}: no evoked release");
        for (threads, s, e, st, ev) in &runs[1..] {
            assert_eq!(s, s1, "{name}: spikes differ on {threads} threads");
            assert_eq!(e, e1, "{name}: events differ on {threads} threads");
            assert!(st == st1, "{name}: state differs on {threads} threads");
            assert_eq!(ev, ev1, "{name}: evoked counts differ on {threads} threads");
        }
    }
}

/// The one-receptor kinetic pool on two threads keeps each range's slots where `cleft`
/// wrote them from one step to the next, and closes the gaps when a step runs as one
/// range (here when the activity dies down, weak excitation: below 4096 active synapses,
/// about step 190) and when the state is read after each batch: the same spikes and
/// state as one thread.
#[test]
fn kinetic_pool_in_ranges_gives_the_bits_of_one_thread() {
    use quantal::backend::cpu::CpuBackend;
    use quantal::backend::Backend;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba_kinetic.toml"),
    )
    .unwrap();
    let base = crate::common::backend_with(
        &text,
        &["projections.ee.weight=0.3", "projections.ei.weight=0.3"],
    );
    let (model, net) = (
        std::sync::Arc::new(base.model().clone()),
        std::sync::Arc::new(base.network().clone()),
    );
    let mut runs = Vec::new();
    for threads in [1, 2] {
        let mut b = CpuBackend::with_threads(model.clone(), net.clone(), Some(threads));
        let mut batches = Vec::new();
        for _ in 0..10 {
            let batch = b.advance(30, &[], 0).unwrap();
            let spikes: Vec<Vec<u32>> = (0..batch.n_steps)
                .map(|k| batch.spikes(k).to_vec())
                .collect();
            batches.push((spikes, b.state().unwrap().canonical()));
        }
        runs.push(batches);
    }
    let spikes: usize = runs[0].iter().flat_map(|b| &b.0).map(|s| s.len()).sum();
    assert!(spikes > 50, "too quiet: {spikes} spikes");
    for (k, (one, two)) in runs[0].iter().zip(&runs[1]).enumerate() {
        assert_eq!(one.0, two.0, "batch {k}: spikes differ on two threads");
        assert!(one.1 == two.1, "batch {k}: state differs on two threads");
    }
}

/// A CPU backend whose state is set from another run's (as `validate` and tests do) has
/// no sources for the arrivals already in its ring: Brette's static release then reads
/// the synapse arrays for them instead of its records in outgoing order, and goes back
/// to the records once its own spikes fill the ring; the same bits as the run it came
/// from throughout.
#[test]
fn static_release_after_a_state_set_from_elsewhere() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/brette_coba.toml"),
    )
    .unwrap();
    let a = crate::common::backend(&text);
    let (model, net) = (
        std::sync::Arc::new(a.model().clone()),
        std::sync::Arc::new(a.network().clone()),
    );
    use quantal::backend::cpu::CpuBackend;
    let mut a = CpuBackend::with_threads(model.clone(), net.clone(), Some(1));
    for _ in 0..100 {
        a.step().unwrap();
    }
    assert!(
        !a.state_ref().ring.iter().all(|r| r.is_empty()),
        "arrivals pending"
    );
    let mut b = CpuBackend::with_threads(model, net, Some(1));
    *b.state_mut() = a.state_ref().clone();
    let steps = 200;
    for k in 0..steps {
        a.step().unwrap();
        b.step().unwrap();
        assert_eq!(a.spikes(), b.spikes(), "step {k}: spikes");
    }
    assert!(a.state_ref() == b.state_ref(), "the same state");
    assert_eq!(a.by_source_steps(), 100 + steps as u64);
    let fell_back = steps as u64 - b.by_source_steps();
    assert!(
        (1..=2).contains(&fell_back),
        "{fell_back} steps read the synapse arrays"
    );
}
