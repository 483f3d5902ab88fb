//! SONATA as its reference reader sees it: libsonata (Python package, installed with pip
//! into a venv under target/ the first time) reads the spikes and every report of example
//! runs as is, and gives back exactly what quantal wrote. The test fails, never skips, when the venv or
//! the package cannot be made (CI has the package registries).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's python with libsonata and h5py, created on first use.
fn python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("pyenv");
    let py = venv.join("bin/python");
    let ready = venv.join(".libsonata-ready");
    if !ready.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv", venv.to_str().unwrap()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "python3 -m venv failed: install python3-venv (scripts/install-deps does)"
        );
        let o = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "libsonata", "h5py"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pip install libsonata h5py failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::write(&ready, b"").unwrap();
    }
    py
}

/// libsonata's SpikeReader reads every population's spikes of three example runs, with
/// SONATA's sorting, and returns the node ids and times quantal wrote.
#[test]
fn libsonata_reads_the_spikes() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    for (net, extra) in [
        ("single_synapse", vec![]),
        ("coba", vec!["--duration-ms", "100"]),
        ("cells_fi", vec!["--duration-ms", "50"]),
    ] {
        let out = dir.path().join(format!("{net}.h5"));
        let mut args = vec![
            "run",
            &format!("networks/{net}.toml")[..],
            "-q",
            "--backend",
            "cpu",
            "-o",
            out.to_str().unwrap(),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = Command::new(env!("CARGO_BIN_EXE_quantal"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let script = r#"
import sys, libsonata
r = libsonata.SpikeReader(sys.argv[1])
for name in sorted(r.get_population_names()):
    p = r[name]
    assert p.sorting == "by_time", p.sorting
    for node, t in p.get():
        print(name, node, repr(float(t)))
"#;
        let o = Command::new(&py)
            .args(["-c", script, out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "libsonata: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let read: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect();
        // What quantal wrote, read with the HDF5 library directly.
        let f = hdf5::File::open(&out).unwrap();
        let mut want = Vec::new();
        let mut pops = f.group("spikes").unwrap().member_names().unwrap();
        pops.sort();
        for pop in pops {
            let g = f.group(&format!("spikes/{pop}")).unwrap();
            let t = g.dataset("timestamps").unwrap().read_raw::<f64>().unwrap();
            let n = g.dataset("node_ids").unwrap().read_raw::<u64>().unwrap();
            for (node, time) in n.iter().zip(&t) {
                want.push(format!("{pop} {node} {}", py_repr(*time)));
            }
        }
        assert!(want.len() > 5, "{net}: the run must spike");
        assert_eq!(read.len(), want.len(), "{net}: spike counts");
        let (mut r, mut w) = (read.clone(), want.clone());
        r.sort();
        w.sort();
        assert_eq!(r, w, "{net}: libsonata's spikes equal the written ones");
    }
}

/// Python's repr of a float (shortest round-trip), as Rust's `{:?}` prints it, with
/// Python's spelling of integral values (`10.0`).
fn py_repr(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains('e') {
        // Python writes 1e-05 where Rust writes 1e-5.
        let (m, e) = s.split_once('e').unwrap();
        let (sign, digits) = e.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("+", e));
        format!("{m}e{sign}{digits:0>2}")
    } else {
        s
    }
}

/// libsonata's ElementReportReader reads every report file of every example network
/// (one file per variable, `/report/<population>/...`), and its times, ids and data
/// equal what quantal wrote; h5py reads the same data through the main file's links.
#[test]
fn libsonata_reads_every_report() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let (mut checked, mut data_checked) = (0, 0);
    for net in [
        "single_synapse",
        "summation",
        "nmj_ach",
        "coba",
        "cobahh",
        "cells_fi",
    ] {
        let out = dir.path().join(format!("{net}.h5"));
        let o = Command::new(env!("CARGO_BIN_EXE_quantal"))
            .args([
                "run",
                &format!("networks/{net}.toml"),
                "-q",
                "--backend",
                "cpu",
                "--duration-ms",
                "20",
                "-o",
                out.to_str().unwrap(),
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let f = hdf5::File::open(&out).unwrap();
        let Ok(rep) = f.group("report") else { continue };
        for group in rep.member_names().unwrap() {
            for var in rep.group(&group).unwrap().member_names().unwrap() {
                let file = out.with_file_name(format!("{net}.{var}.h5"));
                let script = r#"
import sys, numpy, h5py, libsonata
r = libsonata.ElementReportReader(sys.argv[1])
p = r[sys.argv[2]]
d = p.get()
data = numpy.asarray(d.data, dtype=numpy.float32)
t0, t1, dt = p.times
print(len(d.times), data.shape[1], repr(float(t0)), repr(float(t1)), repr(float(dt)))
print(" ".join(f"{n}:{e}" for n, e in d.ids))
print(data.tobytes().hex())
main = h5py.File(sys.argv[3], "r")
linked = main[f"report/{sys.argv[2]}/{sys.argv[4]}/data"][...]
print(linked.astype(numpy.float32).tobytes().hex())
"#;
                let o = Command::new(&py)
                    .args([
                        "-c",
                        script,
                        file.to_str().unwrap(),
                        &group,
                        out.to_str().unwrap(),
                        &var,
                    ])
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "{net} {group}/{var}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                let d = rep.group(&group).unwrap().group(&var).unwrap();
                let data = d.dataset("data").unwrap();
                let shape = data.shape();
                let m = d.group("mapping").unwrap();
                let time = m.dataset("time").unwrap().read_raw::<f64>().unwrap();
                let head: Vec<&str> = lines[0].split(' ').collect();
                assert_eq!(
                    head[0].parse::<usize>().unwrap(),
                    shape[0],
                    "{net} {group}/{var}: frames"
                );
                assert_eq!(
                    head[1].parse::<usize>().unwrap(),
                    shape[1],
                    "{net} {group}/{var}: elements"
                );
                let times: Vec<f64> = head[2..].iter().map(|x| x.parse().unwrap()).collect();
                assert_eq!(times, time, "{net} {group}/{var}: times");
                let nodes = m.dataset("node_ids").unwrap().read_raw::<u64>().unwrap();
                let elems = m.dataset("element_ids").unwrap().read_raw::<u32>().unwrap();
                let ptr = m
                    .dataset("index_pointers")
                    .unwrap()
                    .read_raw::<u64>()
                    .unwrap();
                let mut ids = Vec::new();
                for (k, n) in nodes.iter().enumerate() {
                    for e in &elems[ptr[k] as usize..ptr[k + 1] as usize] {
                        ids.push(format!("{n}:{e}"));
                    }
                }
                let mut got: Vec<&str> = lines[1].split(' ').filter(|x| !x.is_empty()).collect();
                got.sort();
                ids.sort();
                assert_eq!(got, ids, "{net} {group}/{var}: ids");
                let values = data.read_raw::<f32>().unwrap();
                let hex: String = values
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(
                    lines[3], hex,
                    "{net} {group}/{var}: h5py through the main file"
                );
                if nodes.len() == elems.len() && nodes.len() == shape[1] {
                    // libsonata orders columns by node id; with one element per node and
                    // ascending nodes the columns are quantal's.
                    if nodes.windows(2).all(|w| w[0] < w[1]) {
                        assert_eq!(lines[2], hex, "{net} {group}/{var}: libsonata's data");
                        data_checked += 1;
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 15 && data_checked >= 10,
        "{checked} reports checked, {data_checked} value by value"
    );
}
