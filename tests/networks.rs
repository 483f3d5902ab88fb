//! Every example network loads, builds and runs a short stretch; every bad fixture fails
//! with its annotated message at its annotated line; mutated files never panic.

use crate::common::backend_with;
use quantal::backend::Backend;
use quantal::model::Model;
use quantal::netfile;
use quantal::network;
use quantal::philox::Stream;
use quantal::record::MemoryRecorder;
use quantal::sim::{BackendKind, Simulation};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Every `networks/*.toml` loads, builds, is documented in networks/README.md, and runs
/// 20 steps with its recording set-up; the examples that must show activity do.
#[test]
fn every_example_network_loads_and_runs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/README.md"))
            .unwrap();
    let all = files("networks");
    for required in [
        "single_synapse",
        "summation",
        "nmj_ach",
        "coba",
        "cobahh",
        "large",
    ] {
        assert!(
            all.iter().any(|p| p.file_stem().unwrap() == required),
            "networks/{required}.toml is missing"
        );
    }
    for path in all {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            readme.contains(&name),
            "networks/README.md does not describe {name}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# "),
            "{name} must be documented at its top"
        );
        let loaded = netfile::load(&path, &["simulation.duration_ms=2.0".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut sim =
            Simulation::new(loaded, BackendKind::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "large.toml" {
            assert!(
                sim.net.n_neurons() >= 100_000 && sim.net.n_synapses() >= 10_000_000,
                "large.toml is too small"
            );
        }
        let mut rec = MemoryRecorder::default();
        let s = sim
            .run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.steps, 20, "{name}");
        assert!(s.complete);
        for (r, d) in rec.reports.iter().zip(&rec.data) {
            let every = (r.time_ms[2] / sim.model.dt_ms).round() as usize;
            assert_eq!(
                d.len(),
                20usize.div_ceil(every) * r.n_elements(),
                "{name}: report {}/{}",
                r.group,
                r.variable
            );
            assert!(
                d.iter().all(|x| x.is_finite()),
                "{name}: non-finite values in {}/{}",
                r.group,
                r.variable
            );
        }
    }
}

/// The textbook example does what its header says: 11 presynaptic spikes, quanta
/// released, a subthreshold EPSP train, and docked vesicles that deplete and recover.
#[test]
fn single_synapse_example_behaves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/single_synapse.toml");
    let mut sim = Simulation::new(netfile::load(&path, &[]).unwrap(), BackendKind::Cpu).unwrap();
    let mut rec = MemoryRecorder::default();
    let s = sim
        .run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    assert_eq!(s.spikes[0].1, 11);
    assert_eq!(
        s.spikes[1].1, 0,
        "the postsynaptic cell is held below threshold"
    );
    assert!(s.quanta > 5.0);
    let v = rec.series(rec.report("post", "v_mv").unwrap(), 0);
    let vmax = v.iter().cloned().fold(f32::MIN, f32::max);
    assert!(
        vmax > -69.0 && vmax < -50.0,
        "EPSPs should sum below threshold, max V {vmax}"
    );
    let docked = rec.series(rec.report("pre_to_post", "docked").unwrap(), 0);
    let min_docked = docked.iter().cloned().fold(f32::MAX, f32::min);
    assert!(min_docked < 10.0, "the train should deplete the sites");
    let ca = rec.series(rec.report("pre_to_post", "ca_res_um").unwrap(), 0);
    assert!(
        ca.iter().cloned().fold(f32::MIN, f32::max) > 0.2,
        "residual Ca2+ builds up during the train"
    );
}

/// The summation example: test_1 (five synapses together) and test_3 (a fast train)
/// reach threshold; test_0, test_2 (with inhibition) and test_4 (slow train) do not.
#[test]
fn summation_example_behaves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/summation.toml");
    let mut sim = Simulation::new(netfile::load(&path, &[]).unwrap(), BackendKind::Cpu).unwrap();
    let mut rec = MemoryRecorder::default();
    sim.run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    let k = rec.spike_pops.iter().position(|p| p == "test").unwrap();
    let mut fired: Vec<u64> = rec.spike_ids[k].clone();
    fired.sort_unstable();
    fired.dedup();
    assert_eq!(fired, vec![1, 3]);
}

/// Bad fixtures: each file says `# expect: <text>` and `# line: <n>` (0 = not a located
/// error); loading and building must fail with that text, naming the file and line.
#[test]
fn every_bad_fixture_fails_well() {
    let all = files("tests/fixtures/bad");
    assert!(
        all.len() >= 40,
        "the bad-file corpus covers every class ({})",
        all.len()
    );
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .expect("fixture needs # expect:")
            .to_string();
        let line: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("# line: "))
            .expect("fixture needs # line:")
            .trim()
            .parse()
            .unwrap();
        let result = netfile::load(&path, &[]).and_then(|l| {
            let m = Model::from_spec(&l.file);
            network::build(&l, &m).map(|_| ())
        });
        let err = match result {
            Ok(()) => panic!("{} should fail", path.display()),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            msg.contains(&expect),
            "{}: message `{msg}` lacks `{expect}`",
            path.display()
        );
        assert!(
            msg.contains(&*path.to_string_lossy()),
            "{}: message `{msg}` does not name the file",
            path.display()
        );
        if line > 0 {
            let e = err
                .as_spec()
                .unwrap_or_else(|| panic!("{}: not a located error: {msg}", path.display()));
            assert_eq!(e.line, line, "{}: {msg}", path.display());
            assert!(e.column > 0 && !e.field.is_empty());
        }
    }
}

/// Random mutations of the example files (numbers made negative, huge, NaN or zero,
/// lines dropped or duplicated, strings replaced) never panic: they load or fail with an error.
#[test]
fn mutated_files_never_panic() {
    // Bounded fuzzing: deterministic mutations (input k is reproducible from k) of every
    // example network, for QUANTAL_FUZZ_SECONDS (default 15 s) and at least 400 inputs.
    let seconds: u64 = std::env::var("QUANTAL_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let base: Vec<String> = files("networks")
        .iter()
        .filter(|p| p.file_stem().unwrap() != "large")
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let replacements = [
        "-1.0",
        "0",
        "0.0",
        "1e300",
        "nan",
        "inf",
        "-inf",
        "4294967296",
        "18446744073709551616",
        "\"x\"",
        "\"\"",
        "[]",
        "[[]]",
        "{}",
        "true",
        "1e-300",
        "5e-324",
        "-0.0",
        "1e39",
        "\"\\u0007\"",
    ];
    let start = std::time::Instant::now();
    let mut executions = 0u32;
    let mut ran = 0u32;
    while executions < 400 || start.elapsed().as_secs() < seconds {
        let mut rng = Stream::new(99, 1, executions);
        let text = &base[executions as usize % base.len()];
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        for _ in 0..1 + rng.below(4) {
            if lines.is_empty() {
                break;
            }
            let i = rng.below(lines.len() as u32) as usize;
            match rng.below(7) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
                2 => {
                    // Swap two lines (moves keys between tables).
                    let j = rng.below(lines.len() as u32) as usize;
                    lines.swap(i, j);
                }
                3 => {
                    // Cut a line short (broken syntax, unterminated strings).
                    let l = &lines[i];
                    let cut = rng.below(l.len() as u32 + 1) as usize;
                    lines[i] = l.chars().take(cut).collect();
                }
                _ => {
                    if let Some((k, _)) = lines[i].split_once(" = ") {
                        let r = replacements[rng.below(replacements.len() as u32) as usize];
                        lines[i] = format!("{k} = {r}");
                    }
                }
            }
        }
        let mutated = lines.join("\n");
        let outcome = std::panic::catch_unwind(|| {
            let mut stepped = false;
            if let Ok(l) = netfile::load_str(
                &mutated,
                Path::new("mutated.toml"),
                &["simulation.duration_ms=1.0".into()],
            ) {
                let m = Model::from_spec(&l.file);
                if network::estimate(&l.file).build_bytes < 1e8 {
                    if let Ok(net) = network::build(&l, &m) {
                        let mut b = quantal::backend::cpu::CpuBackend::new(
                            std::sync::Arc::new(m),
                            std::sync::Arc::new(net),
                        );
                        // A non-finite state is an error, not a panic.
                        let _ = b.advance(10, &[], 1);
                        stepped = true;
                    }
                }
            }
            stepped
        });
        match outcome {
            Ok(s) => ran += s as u32,
            Err(_) => panic!("panic on mutated input {executions}:\n{mutated}"),
        }
        executions += 1;
    }
    eprintln!(
        "fuzz: {executions} mutated files in {:.1} s, {ran} built and ran 10 steps",
        start.elapsed().as_secs_f64()
    );
    assert!(
        ran > 20,
        "the mutations must also produce runnable networks ({ran})"
    );
}

/// `--set` overrides reach the model and keep the file's line numbers for errors.
#[test]
fn overrides_apply_and_keep_locations() {
    let text = "version = 1\n[simulation]\nduration_ms = 10.0\n[[populations]]\nname = \"a\"\nsize = 3\nmodel = \"lif\"\n";
    let b = backend_with(text, &["populations.a.size=7", "environment.ca_o_mm=1.5"]);
    assert_eq!(b.network().n_neurons(), 7);
    assert_eq!(b.model().ca_o_mm, 1.5);
    // Regression (correctness issue, input): an error caused by an override names the
    // override and the field, not a line that the file does not have.
    for (given, field) in [
        ("populations.a.size=-2", "populations[0].size"),
        ("environment.mg_o_mm=500", "environment.mg_o_mm"),
    ] {
        let err = netfile::load_str(text, Path::new("o.toml"), &[given.into()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, quantal::Error::Override { .. })
                && msg.contains(&format!("bad override `{given}`"))
                && msg.contains(&format!("field `{field}`")),
            "{msg}"
        );
    }
    // An error of the file itself stays located in the file, overrides or not.
    let broken = text.replace("size = 3", "size = 0");
    let err = netfile::load_str(
        &broken,
        Path::new("o.toml"),
        &["environment.ca_o_mm=1.5".into()],
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("o.toml:6:"), "{err}");
    // Receptors are addressed by kind as well as by position.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/single_synapse.toml");
    let l = netfile::load(
        &path,
        &[
            "synapse_types.glu.receptors.nmda.g_max_ns=0.25".into(),
            "synapse_types.glu.receptors.0.g_max_ns=0.5".into(),
        ],
    )
    .unwrap();
    let m = quantal::model::Model::from_spec(&l.file);
    assert_eq!(
        (m.receptors[0].g_max_ns, m.receptors[1].g_max_ns),
        (0.5, 0.25)
    );
    // Any u64 seed: a quoted seed in the file, and --set with a seed beyond 2^63.
    let big = netfile::load_str(
        &text.replace(
            "duration_ms = 10.0",
            "duration_ms = 10.0\nseed = \"18446744073709551615\"",
        ),
        Path::new("o.toml"),
        &["environment.ca_o_mm=1.5".into()],
    )
    .unwrap();
    assert_eq!(
        (big.file.simulation.seed, big.file.environment.ca_o_mm),
        (u64::MAX, 1.5)
    );
    let set = netfile::load_str(
        text,
        Path::new("o.toml"),
        &["simulation.seed=9223372036854775808".into()],
    )
    .unwrap();
    assert_eq!(set.file.simulation.seed, 1 << 63);
    for bad in [
        "populations.nobody.size=1",
        "populations.a=1",
        "noequals",
        "simulation..dt_ms=1",
    ] {
        let e = netfile::load_str(text, Path::new("o.toml"), &[bad.into()]).unwrap_err();
        assert!(matches!(e, quantal::Error::Override { .. }), "{bad}: {e}");
    }
}

/// Population rate (Hz) over the whole run and in the last 100 ms, and the median CV(ISI)
/// of neurons with ≥ 3 spikes, from a memory recording of `spikes` populations.
fn activity(rec: &MemoryRecorder, duration_ms: f64, n_neurons: f64) -> (f64, f64, f64) {
    let mut total = 0.0;
    let mut last = 0.0;
    let mut cvs = Vec::new();
    for (t, ids) in rec.spike_times.iter().zip(&rec.spike_ids) {
        total += t.len() as f64;
        last += t.iter().filter(|&&x| x > duration_ms - 100.0).count() as f64;
        let mut per: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
        for (&x, &i) in t.iter().zip(ids) {
            per.entry(i).or_default().push(x);
        }
        for v in per.values().filter(|v| v.len() >= 3) {
            let isi: Vec<f64> = v.windows(2).map(|w| w[1] - w[0]).collect();
            let m = isi.iter().sum::<f64>() / isi.len() as f64;
            let sd = (isi.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / isi.len() as f64).sqrt();
            cvs.push(sd / m);
        }
    }
    cvs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rate = total / n_neurons / (duration_ms / 1000.0);
    let rate_last = last / n_neurons / 0.1;
    (
        rate,
        rate_last,
        cvs.get(cvs.len() / 2).copied().unwrap_or(0.0),
    )
}

/// §8h COBA with the benchmark's own synapses (networks/brette_coba.toml: one 6 nS / 67 nS
/// exponential conductance per spike, `static` release): self-sustained asynchronous
/// irregular activity, population rate 15-25 Hz and median CV(ISI) > 0.5 (seed 1, 1 s).
/// `static` is exactly one quantum per spike: the same spikes, to the bit, as tm_mean
/// with N = 1, U = 1 and instant recovery. And the quantal version, networks/coba.toml,
/// sustains activity too.
#[test]
fn coba_sustains_asynchronous_irregular_activity() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks");
    let bench = std::fs::read_to_string(dir.join("brette_coba.toml")).unwrap();
    let quantal = std::fs::read_to_string(dir.join("coba.toml")).unwrap();
    let tm_mean = bench.replace(
        "release = \"static\"\n",
        "release = \"tm_mean\"\n[synapse_types.tm]\nn_sites = 1\nu = 1.0\ntau_rec_ms = 0.001\n",
    );
    assert_eq!(tm_mean.matches("release = \"tm_mean\"").count(), 2);
    let mut spikes = Vec::new();
    for (name, t, band) in [
        ("brette_coba.toml", bench.as_str(), (15.0, 25.0)),
        ("the same with tm_mean", tm_mean.as_str(), (15.0, 25.0)),
        ("coba.toml", quantal.as_str(), (15.0, 30.0)),
    ] {
        let path = dir.join(name);
        let loaded = netfile::load_str(t, &path, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut sim = Simulation::new(loaded, BackendKind::Cpu).unwrap();
        let mut rec = MemoryRecorder::default();
        sim.run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
            .unwrap();
        let (rate, last, cv) = activity(&rec, 1000.0, 4000.0);
        assert!(last > 1.0, "{name}: activity died (last 100 ms: {last} Hz)");
        assert!(
            rate > band.0 && rate < band.1,
            "{name}: rate {rate} Hz outside {band:?}"
        );
        assert!(cv > 0.5, "{name}: median CV {cv}");
        spikes.push((rec.spike_times.clone(), rec.spike_ids.clone()));
    }
    assert!(!spikes[0].0.iter().all(|p| p.is_empty()));
    assert_eq!(
        spikes[0], spikes[1],
        "static and its tm_mean equivalent differ"
    );
}

/// What the model changes rather than uses as written is a located warning, not a silent
/// change: a step too coarse for HH, a delay below half a step, a sampling interval that
/// is not a multiple of dt, spike times after the run or on a step that already fires.
#[test]
fn silent_changes_are_warnings() {
    let text = r#"version = 1
[simulation]
dt_ms = 0.2
duration_ms = 50.0
[[populations]]
name = "src"
size = 1
model = "spike_times"
[populations.spike_times]
times_ms = [1.0, 1.05, 60.0]
[[populations]]
name = "hh"
size = 1
model = "hh"
[[synapse_types]]
name = "glu"
transmitter = "glutamate"
[[synapse_types.receptors]]
kind = "ampa"
[[projections]]
source = "src"
target = "hh"
synapse = "glu"
rule = "all_to_all"
delay_ms = 0.05
[record]
sample_interval_ms = 0.5
"#;
    let l = netfile::load_str(text, Path::new("w.toml"), &[]).unwrap();
    let w = l.warnings.join("\n");
    assert_eq!(l.warnings.len(), 5, "{w}");
    for (needle, line) in [
        (
            "is coarser than the 0.1 ms at which the HH scheme is validated",
            3,
        ),
        (
            "1 spike time(s) at or after the end of the run (50 ms) never fire",
            9,
        ),
        ("1 spike time(s) fall on a step that already fires", 9),
        (
            "delays below half a step (0.1 ms) are rounded up to one step",
            25,
        ),
        (
            "0.5 ms is not a multiple of dt = 0.2 ms; samples are taken every 3 steps",
            27,
        ),
    ] {
        let hit = l
            .warnings
            .iter()
            .find(|x| x.contains(needle))
            .unwrap_or_else(|| panic!("missing `{needle}` in {w}"));
        assert!(hit.starts_with(&format!("w.toml:{line}:")), "{hit}");
    }
    let clean = netfile::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba.toml"),
        &[],
    )
    .unwrap();
    assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
}

/// Hostile files get one located line: non-UTF-8 bytes, control characters, and files
/// beyond 64 MiB (refused before reading).
#[test]
fn hostile_files_get_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = "version = 1\n[simulation]\nduration_ms = 10.0\n";
    let cases: [(&str, Vec<u8>, &str); 2] = [
        (
            "latin1.toml",
            [good.as_bytes(), b"# caf\xe9\n"].concat(),
            "latin1.toml:4:6: field `(file)`: byte 49 is not UTF-8",
        ),
        (
            "ctrl.toml",
            [good.as_bytes(), b"[[populations]]\nname = \"a\x07b\"\n"].concat(),
            "ctrl.toml:5:10: field `(file)`: control character U+0007",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let msg = netfile::load(&p, &[]).unwrap_err().to_string();
        assert!(msg.contains(want) && !msg.contains('\n'), "{msg}");
    }
    let p = dir.path().join("huge.toml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(netfile::MAX_FILE_BYTES + 1).unwrap();
    let msg = netfile::load(&p, &[]).unwrap_err().to_string();
    assert!(
        msg.contains("the file has 67108865 bytes; accepted: at most 67108864"),
        "{msg}"
    );
}

/// A 100 000-character name is quoted as a short excerpt, on one line.
#[test]
fn messages_quote_short_excerpts() {
    let long = "x".repeat(100_000);
    let text = format!("version = 1\n[simulation]\nduration_ms = 1.0\n[[populations]]\nname = \"a\"\nsize = 1\nmodel = \"lif\"\n[[inputs]]\ntarget = \"{long}\"\namplitude_pa = 1.0\n");
    let msg = netfile::load_str(&text, Path::new("long.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.len() < 700 && msg.contains('…') && !msg.contains('\n'),
        "{} chars",
        msg.len()
    );
}
