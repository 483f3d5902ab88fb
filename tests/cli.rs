//! The command line: runs, checks, info, and errors that never panic.

use crate::common::quantal;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[track_caller]
fn fails_well(o: &Output, needles: &[&str]) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(2), "stdout {out}\nstderr {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    // Located warnings may come first; the error is the first other line.
    let first = err
        .lines()
        .find(|l| !l.starts_with("warning: "))
        .unwrap_or("");
    assert!(first.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    (d, p)
}

#[test]
fn run_writes_a_file_and_a_summary() {
    let (_d, out) = tmp("ss.h5");
    let o = quantal(&[
        "run",
        "networks/single_synapse.toml",
        "-o",
        out.to_str().unwrap(),
        "--duration-ms",
        "300",
        "--set",
        "environment.ca_o_mm=1.0",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stdout.contains("wrote") && stdout.contains("real time") && stdout.contains("backend cpu"),
        "{stdout}"
    );
    // Per population: spikes, rate, CV of the ISIs, fraction silent. The source fires
    // at 10, 60, ..., 260 ms (regular: CV 0); the cell stays below threshold.
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {stdout}"))
            .to_string()
    };
    let pre = line("pre ");
    assert!(
        pre.contains(" 6 ")
            && pre.contains("20.000 Hz")
            && pre.contains("0.000")
            && pre.contains("0.0 % of 1"),
        "{pre}"
    );
    assert!(line("post ").contains("100.0 % of 1"), "{stdout}");
    // Per projection: spike arrivals (6 spikes before 300 ms), quanta per arrival, failures.
    let proj = line("pre_to_post ");
    assert!(
        proj.split_whitespace().nth(1) == Some("6") && proj.ends_with('%'),
        "{proj}"
    );
    let (_d2, out2) = tmp("quiet.h5");
    let q = quantal(&[
        "run",
        "networks/single_synapse.toml",
        "-q",
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert!(
        q.status.success() && q.stdout.is_empty(),
        "-q prints nothing on success"
    );
    assert!(
        stderr.contains("backend cpu"),
        "the run says which backend: {stderr}"
    );
    let f = hdf5::File::open(&out).unwrap();
    let ov = f
        .attr("overrides")
        .unwrap()
        .read_scalar::<hdf5::types::VarLenUnicode>()
        .unwrap()
        .to_string();
    assert!(
        ov.contains("environment.ca_o_mm=1.0") && ov.contains("simulation.duration_ms=300.0"),
        "{ov}"
    );
}

#[test]
fn same_seed_same_file_contents() {
    let read = |p: &Path| {
        let f = hdf5::File::open(p).unwrap();
        (
            f.dataset("spikes/pre/timestamps")
                .unwrap()
                .read_raw::<f64>()
                .unwrap(),
            f.dataset("report/post/v_mv/data")
                .unwrap()
                .read_raw::<f32>()
                .unwrap(),
            f.dataset("report/pre_to_post/released/data")
                .unwrap()
                .read_raw::<f32>()
                .unwrap(),
        )
    };
    let (_d, a) = tmp("a.h5");
    let (_e, b) = tmp("b.h5");
    let (_g, c) = tmp("c.h5");
    for (p, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
        assert!(quantal(&[
            "run",
            "networks/single_synapse.toml",
            "-q",
            "-o",
            p.to_str().unwrap(),
            "--seed",
            seed
        ])
        .status
        .success());
    }
    let (ra, rb, rc) = (read(&a), read(&b), read(&c));
    assert!(
        ra.1.iter()
            .zip(&rb.1)
            .all(|(x, y)| x.to_bits() == y.to_bits())
            && ra == rb,
        "same seed, different output"
    );
    assert_ne!(ra.2, rc.2, "different seeds, same release sequence");
}

#[test]
fn bad_file_missing_file_and_bad_overrides() {
    fails_well(
        &quantal(&["run", "tests/fixtures/bad/negative_tau.toml"]),
        &["negative_tau.toml:12:1", "tau_rr_ms", "-1", "accepted"],
    );
    fails_well(
        &quantal(&["run", "tests/fixtures/bad/syntax_error.toml"]),
        &["syntax_error.toml:7:15"],
    );
    fails_well(
        &quantal(&["check", "tests/fixtures/bad/too_large.toml"]),
        &["GiB", "too_large.toml"],
    );
    fails_well(
        &quantal(&["run", "networks/no_such_file.toml"]),
        &["no_such_file.toml", "No such file"],
    );
    // The file is named once.
    let (_, err) = text(&quantal(&["run", "networks/no_such_file.toml"]));
    assert_eq!(err.matches("no_such_file.toml").count(), 1, "{err}");
    fails_well(
        &quantal(&[
            "run",
            "networks/single_synapse.toml",
            "--set",
            "populations.nobody.size=3",
        ]),
        &["no entry named `nobody`"],
    );
    fails_well(
        &quantal(&[
            "run",
            "networks/single_synapse.toml",
            "--set",
            "environment.ca_o_mm",
        ]),
        &["expected KEY=VALUE"],
    );
    fails_well(
        &quantal(&[
            "run",
            "networks/single_synapse.toml",
            "--set",
            "environment.ca_o_mm=-3",
        ]),
        &[
            "bad override `environment.ca_o_mm=-3`",
            "accepted: [0, 100] mM",
            "(network file networks/single_synapse.toml)",
        ],
    );
    fails_well(
        &quantal(&[
            "run",
            "networks/single_synapse.toml",
            "--set",
            "environment.calcium=3",
        ]),
        &["unknown field `calcium`"],
    );
    fails_well(
        &quantal(&["run", "networks/single_synapse.toml", "--threads", "0"]),
        &["is not a number of threads (1 or more)"],
    );
    let o = quantal(&["run", "networks/single_synapse.toml", "--backend", "cuda"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).1.contains("possible values: auto, cpu"),
        "{}",
        text(&o).1
    );
}

#[test]
fn check_prints_sizes_and_memory() {
    let o = quantal(&["check", "networks/coba.toml"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for n in [
        "valid",
        "neurons: 4000",
        "exc",
        "inh",
        "synapses:",
        "ee",
        "memory: cpu backend",
        "steps: 10000",
    ] {
        assert!(out.contains(n), "check output lacks `{n}`:\n{out}");
    }
}

#[test]
fn info_and_help() {
    let o = quantal(&["info"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains(&format!("quantal {}", env!("CARGO_PKG_VERSION"))));
    if std::env::var("QUANTAL_REQUIRE_GPU").as_deref() == Ok("1") {
        assert!(
            out.contains("GPU adapters seen by wgpu:"),
            "QUANTAL_REQUIRE_GPU=1 but no adapter:\n{out}"
        );
    } else {
        assert!(out.contains("GPU adapters"), "{out}");
    }
    for sub in ["run", "check", "bench", "info"] {
        let o = quantal(&[sub, "--help"]);
        assert!(o.status.success());
        assert!(
            text(&o).0.contains("Example"),
            "{sub} --help lacks an example"
        );
    }
}

/// Ctrl-C (SIGINT) ends the run cleanly: exit 130 and a finished, readable file.
/// Real signals on a child process: SIGINT, SIGTERM and SIGHUP finish the file (exit 130,
/// readable, complete = 0, rows up to the stop, renamed from its temporary name); SIGKILL
/// leaves the temporary file and never touches an existing output of the same name.
#[test]
fn signals_leave_readable_files() {
    for sig in ["INT", "TERM", "HUP", "KILL"] {
        let (_d, out) = tmp("coba.h5");
        if sig == "KILL" {
            std::fs::write(&out, b"an earlier result").unwrap();
        }
        let mut args = vec![
            "run",
            "networks/coba.toml",
            "-q",
            "--duration-ms",
            "100000",
            "--set",
            "record.flush_interval_ms=5.0",
            "-o",
            out.to_str().unwrap(),
        ];
        if sig == "KILL" {
            args.push("--force");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_quantal"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .spawn()
            .unwrap();
        // The run writes under a temporary name in the same directory until it ends.
        let partial = out.with_file_name(format!(".coba.h5.partial-{}", child.id()));
        let t0 = std::time::Instant::now();
        while !partial.exists() && t0.elapsed().as_secs() < 120 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(
            partial.exists(),
            "SIG{sig}: the partial file exists during the run"
        );
        assert_eq!(
            out.exists(),
            sig == "KILL",
            "SIG{sig}: the final name is not written early"
        );
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let status = child.wait().unwrap();
        if sig == "KILL" {
            assert_eq!(
                std::fs::read(&out).unwrap(),
                b"an earlier result",
                "untouched"
            );
            assert!(
                partial.exists(),
                "the killed run's data stays under its temporary name"
            );
            continue;
        }
        assert_eq!(status.code(), Some(130), "SIG{sig}");
        assert!(!partial.exists(), "SIG{sig}: renamed when the run ended");
        let f = hdf5::File::open(&out).unwrap();
        assert_eq!(f.attr("complete").unwrap().read_scalar::<u64>().unwrap(), 0);
        let steps = f.attr("steps").unwrap().read_scalar::<u64>().unwrap();
        assert!(steps > 0 && steps < 1_000_000);
        let rows = f.dataset("report/exc/v_mv/data").unwrap().shape()[0] as u64;
        assert_eq!(
            rows,
            steps.div_ceil(10),
            "SIG{sig}: one row per ms up to the stop"
        );
    }
}

#[test]
fn bench_reports_kernels() {
    let (_d, json) = tmp("bench.json");
    let o = quantal(&[
        "bench",
        "networks/coba.toml",
        "--steps",
        "30",
        "--warmup",
        "10",
        "--json",
        json.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for k in [
        "steps/s",
        "synaptic events/s",
        "deliver",
        "release",
        "cleft",
        "integrate",
        "propagate",
        "spontaneous",
    ] {
        assert!(out.contains(k), "bench output lacks `{k}`:\n{out}");
    }
    // The JSON figures: every field present, numbers where numbers belong.
    let j = std::fs::read_to_string(&json).unwrap();
    for field in [
        "\"steps\": 30",
        "\"neurons\": 4000",
        "\"backend\": \"cpu\"",
        "\"steps_per_s\": ",
        "\"ns_per_neuron_step\": ",
        "\"peak_rss_bytes\": ",
        "\"release\": ",
    ] {
        assert!(j.contains(field), "{field} missing in {j}");
    }
    assert!(j.trim_start().starts_with('{') && j.trim_end().ends_with('}'));
}

/// The output is never lost: an existing file is kept unless --force (and then replaced
/// only when the new run ends), -o may not name the network file, a missing or
/// unwritable directory or a directory as output fails before the network is built.
#[test]
fn output_rules() {
    let (d, out) = tmp("o.h5");
    let o = out.to_str().unwrap();
    let args = |extra: &[&str]| {
        let mut v = vec![
            "run",
            "networks/single_synapse.toml",
            "-q",
            "--duration-ms",
            "20",
        ];
        v.extend_from_slice(extra);
        v.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let run = |a: Vec<String>| quantal(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(run(args(&["-o", o])).status.success());
    let first = std::fs::metadata(&out).unwrap().modified().unwrap();
    fails_well(&run(args(&["-o", o])), &["o.h5 exists; pass --force"]);
    assert_eq!(
        std::fs::metadata(&out).unwrap().modified().unwrap(),
        first,
        "kept"
    );
    assert!(run(args(&["-o", o, "--force"])).status.success());
    fails_well(
        &run(args(&["-o", "networks/single_synapse.toml", "--force"])),
        &["is the network file itself"],
    );
    fails_well(
        &run(args(&["-o", d.path().to_str().unwrap()])),
        &["is a directory"],
    );
    let missing = d.path().join("no/such/dir/x.h5");
    fails_well(
        &run(args(&["-o", missing.to_str().unwrap()])),
        &["does not exist"],
    );
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"o.h5".to_string())
            && names.contains(&"o.v_mv.h5".to_string())
            && names
                .iter()
                .all(|n| n.starts_with("o.") && n.ends_with(".h5")),
        "the run's files and no partial file left behind: {names:?}"
    );
}

/// Regression (correctness issue, input): any u64 seed works from the command line, and
/// the file says which seed and which overrides were applied.
#[test]
fn any_u64_seed() {
    let (_d, out) = tmp("seed.h5");
    let o = quantal(&[
        "run",
        "networks/single_synapse.toml",
        "-q",
        "--seed",
        "18446744073709551615",
        "--set",
        "environment.ca_o_mm=1.5",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = hdf5::File::open(&out).unwrap();
    assert_eq!(
        f.attr("seed").unwrap().read_scalar::<u64>().unwrap(),
        u64::MAX
    );
    let ov = f
        .attr("overrides")
        .unwrap()
        .read_scalar::<hdf5::types::VarLenUnicode>()
        .unwrap()
        .to_string();
    assert!(
        ov.contains("environment.ca_o_mm=1.5") && ov.contains("18446744073709551615"),
        "{ov}"
    );
    let eff = f
        .attr("effective_network_toml")
        .unwrap()
        .read_scalar::<hdf5::types::VarLenUnicode>()
        .unwrap()
        .to_string();
    assert!(eff.contains("ca_o_mm = 1.5"), "{eff}");
}

/// Regression (correctness issue, output): closed stdout and stderr (`2>&1 | head -1`)
/// never panic; the run finishes its file.
#[test]
fn closed_stdout_and_stderr_do_not_stop_the_run() {
    let (_d, out) = tmp("closed.h5");
    let mut child = Command::new(env!("CARGO_BIN_EXE_quantal"))
        .args([
            "run",
            "networks/single_synapse.toml",
            "--duration-ms",
            "200",
            "-o",
            out.to_str().unwrap(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let f = hdf5::File::open(&out).unwrap();
    assert_eq!(f.attr("complete").unwrap().read_scalar::<u64>().unwrap(), 1);
}

/// A full disk (an 8 MiB tmpfs) stops the run before a write fails half-way, with one
/// line naming how far it got; the file keeps its name and opens, with everything up to
/// the last flush (correctness issue, "output is never lost").
#[test]
#[cfg_attr(not_root, ignore = "mounts a tmpfs: needs root (CI runs as root)")]
fn full_disk_stops_the_run_and_keeps_the_file() {
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=8m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(mounted.success(), "mount -t tmpfs failed");
    // 2000 membrane potentials every step: 8 kB per step, 80 MB in all.
    let net = d.path().join("many.toml");
    std::fs::write(
        &net,
        "version = 1\n[simulation]\nduration_ms = 1000.0\n[[populations]]\nname = \"exc\"\nsize = 2000\nmodel = \"lif\"\n[record]\nflush_interval_ms = 5.0\n[[record.neurons]]\npopulation = \"exc\"\nvariables = [\"v_mv\"]\n",
    )
    .unwrap();
    let out = mnt.join("full.h5");
    let o = quantal(&[
        "run",
        net.to_str().unwrap(),
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    let opened = hdf5::File::open(&out).map(|f| {
        let rows = f.dataset("report/exc/v_mv/data").unwrap().shape()[0] as u64;
        let steps = f.attr("steps").unwrap().read_scalar::<u64>().unwrap();
        let complete = f.attr("complete").unwrap().read_scalar::<u64>().unwrap();
        (rows, steps, complete)
    });
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("the disk is nearly full")
            && err.contains("writing stopped after ")
            && err.contains(" of 10000 steps"),
        "{err}"
    );
    let (rows, steps, complete) = opened.expect("the file keeps its name and opens");
    assert!(
        rows > 0 && rows == steps && complete == 0,
        "{rows} rows, {steps} steps"
    );
}

/// `quantal sweep`: every grid point and seed runs (in parallel), each writes its result,
/// and the index table has one row per run with its values and summary; [Ca]o raises
/// release (Dodge-Rahamimoff); a bad point is named before anything runs.
#[test]
fn sweep_runs_every_point() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("dr");
    let o = quantal(&[
        "sweep",
        "networks/single_synapse.toml",
        "--set-grid",
        "environment.ca_o_mm=0.5,2",
        "--seeds",
        "1..3",
        "--duration-ms",
        "500",
        "-o",
        dir.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("wrote 6 runs"), "{out}");
    let csv = std::fs::read_to_string(dir.join("index.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 6, "{csv}");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (ca, q, seed) = (col("environment.ca_o_mm"), col("quanta"), col("seed"));
    let mean = |v: &str| {
        let x: Vec<f64> = rows
            .iter()
            .filter(|r| r[ca] == v)
            .map(|r| r[q].parse::<f64>().unwrap())
            .collect();
        assert_eq!(x.len(), 3);
        x.iter().sum::<f64>() / 3.0
    };
    assert!(
        mean("2") > 3.0 * mean("0.5"),
        "[Ca]o 2 mM releases more: {csv}"
    );
    let seeds: Vec<&str> = rows.iter().map(|r| r[seed]).collect();
    assert_eq!(seeds, ["1", "2", "3", "1", "2", "3"]);
    for r in &rows {
        assert!(hdf5::File::open(dir.join(r[1])).is_ok(), "{}", r[1]);
    }
    // Again without --force: refused; a bad value: named with its point.
    fails_well(
        &quantal(&[
            "sweep",
            "networks/single_synapse.toml",
            "-o",
            dir.to_str().unwrap(),
        ]),
        &["holds a sweep; pass --force"],
    );
    fails_well(
        &quantal(&[
            "sweep",
            "networks/single_synapse.toml",
            "--set-grid",
            "environment.ca_o_mm=1,-3",
            "-o",
            d.path().join("bad").to_str().unwrap(),
        ]),
        &["sweep point 1", "environment.ca_o_mm=-3"],
    );
}

/// `quantal plot` writes SVG and PNG figures of a run (the PNG with its labels drawn:
/// dark pixels in the title row) and refuses other formats with the reason.
#[test]
fn plot_command_writes_svg_and_png() {
    let (d, out) = tmp("p.h5");
    assert!(quantal(&[
        "run",
        "networks/single_synapse.toml",
        "-q",
        "-o",
        out.to_str().unwrap()
    ])
    .status
    .success());
    let fig = d.path().join("raster.svg");
    let o = quantal(&[
        "plot",
        out.to_str().unwrap(),
        "--what",
        "raster",
        "-o",
        fig.to_str().unwrap(),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(stdout.contains("(11 marks)"), "{stdout}");
    assert!(std::fs::read_to_string(&fig).unwrap().starts_with("<svg"));
    let png = d.path().join("epsp.png");
    let o = quantal(&[
        "plot",
        out.to_str().unwrap(),
        "--what",
        "traces",
        "--variable",
        "v_mv",
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let img = resvg::tiny_skia::Pixmap::decode_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (1350, 750));
    let dark = |y0: u32, y1: u32| {
        (y0..y1)
            .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let p = img.pixel(x, y).unwrap();
                (p.red() as u32 + p.green() as u32 + p.blue() as u32) < 300
            })
            .count()
    };
    assert!(dark(0, 40) > 200, "the title was not drawn");
    assert!(dark(150, 700) > 500, "the trace and axes were not drawn");
    fails_well(
        &quantal(&[
            "plot",
            out.to_str().unwrap(),
            "-o",
            d.path().join("f.pdf").to_str().unwrap(),
        ]),
        &["name the figure .svg or .png"],
    );
    fails_well(
        &quantal(&[
            "plot",
            d.path().to_str().unwrap(),
            "--what",
            "sweep",
            "-o",
            fig.to_str().unwrap(),
        ]),
        &["--what sweep needs --x COLUMN and --y COLUMN"],
    );
}

/// The index of a sweep, in CSV and HDF5 alike, holds per projection the spikes that
/// arrived, the mean quanta of the first spikes and the paired-pulse ratio, equal to what
/// the runs' release records give; `quantal plot --what sweep` draws the mean over seeds.
#[test]
fn sweep_index_summarises_each_run() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("pp");
    let o = quantal(&[
        "sweep",
        "networks/paired_pulse.toml",
        "--set-grid",
        "environment.ca_o_mm=1,2",
        "--seeds",
        "1..2",
        "--duration-ms",
        "40",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let t = quantal::plot::read_sweep(&dir).unwrap();
    assert_eq!(t.rows.len(), 4);
    let col = |name: &str| t.columns.iter().position(|h| h == name).unwrap();
    let h5 = hdf5::File::open(dir.join("index.h5")).unwrap();
    let h5col = |name: &str| {
        h5.dataset(&format!("index/{name}"))
            .unwrap()
            .read_raw::<f64>()
            .unwrap()
    };
    let mut ppr_by_ca: Vec<(f64, f64)> = Vec::new();
    for (r, row) in t.rows.iter().enumerate() {
        let num = |c: &str| row[col(c)].parse::<f64>().unwrap();
        assert_eq!(num("pp_events"), 4000.0, "2000 synapses, 2 spikes each");
        assert_eq!(num("post_silent_fraction"), 1.0);
        // From the run's release record: per synapse, its first and second spike.
        let f = hdf5::File::open(dir.join(&row[col("file")])).unwrap();
        let ids = f
            .dataset("releases/pp/synapse_ids")
            .unwrap()
            .read_raw::<u64>()
            .unwrap();
        let q = f
            .dataset("releases/pp/quanta")
            .unwrap()
            .read_raw::<f32>()
            .unwrap();
        let kind = f
            .dataset("releases/pp/kind")
            .unwrap()
            .read_raw::<u8>()
            .unwrap();
        let mut per = vec![Vec::new(); 2000];
        for ((&s, &x), &k) in ids.iter().zip(&q).zip(&kind) {
            if k == 0 {
                per[s as usize].push(x as f64);
            }
        }
        assert!(per.iter().all(|v| v.len() == 2));
        let first: f64 = per.iter().map(|v| v[0]).sum();
        let second: f64 = per.iter().map(|v| v[1]).sum();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(close(num("pp_first_mean_quanta"), first / 2000.0));
        assert!(close(num("pp_ppr"), second / first));
        assert!(close(num("pp_mean_quanta"), (first + second) / 4000.0));
        for c in [
            "pp_ppr",
            "pp_first_mean_quanta",
            "environment.ca_o_mm",
            "seed",
        ] {
            assert!(close(h5col(c)[r], num(c)), "index.h5 {c}");
        }
        ppr_by_ca.push((num("environment.ca_o_mm"), num("pp_ppr")));
    }
    let svg = d.path().join("ppr.svg");
    let o = quantal(&[
        "plot",
        dir.to_str().unwrap(),
        "--what",
        "sweep",
        "--x",
        "environment.ca_o_mm",
        "--y",
        "pp_ppr",
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).0.contains("(2 marks)"));
    let fig = std::fs::read_to_string(&svg).unwrap();
    for ca in [1.0, 2.0] {
        let ys: Vec<f64> = ppr_by_ca
            .iter()
            .filter(|p| p.0 == ca)
            .map(|p| p.1)
            .collect();
        let mean = ys.iter().sum::<f64>() / ys.len() as f64;
        let mark = format!("data-x=\"{ca}\" data-mean=\"{mean}\"");
        assert!(fig.contains(&mark), "{mark} not in {fig}");
    }
    fails_well(
        &quantal(&[
            "plot",
            dir.to_str().unwrap(),
            "--what",
            "sweep",
            "--x",
            "environment.ca_o_mm",
            "--y",
            "no_such_column",
            "-o",
            svg.to_str().unwrap(),
        ]),
        &["the sweep has no column `no_such_column`", "pp_ppr"],
    );
}
