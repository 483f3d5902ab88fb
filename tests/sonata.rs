//! SONATA as its reference reader sees it: libsonata (Python package, installed with pip
//! into a venv under target/ the first time) reads the spikes and every report of example
//! runs as is, and gives back exactly what quantal wrote; so does bmtk's SONATA reader. The test fails, never skips, when the venv or
//! the package cannot be made (CI has the package registries).

use crate::common::quantal;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's python with libsonata, h5py and bmtk, created on first use. The tests of this
/// file run in parallel threads of one binary, so creation happens once, under a lock: two
/// `python3 -m venv` on one directory at the same time fail with "File exists".
fn python() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(make_venv).clone()
}

fn make_venv() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("pyenv");
    let py = venv.join("bin/python");
    let ready = venv.join(".readers-ready");
    if !ready.exists() {
        // A venv left half made by an interrupted earlier run is made again from scratch.
        let _ = std::fs::remove_dir_all(&venv);
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
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "libsonata",
                "h5py",
                "bmtk",
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pip install libsonata h5py bmtk failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::write(&ready, b"").unwrap();
    }
    py
}

/// Runs example `net` on the CPU for `duration_ms` into `dir/<net>.h5` and returns that
/// path (the test fails with quantal's message if the run does).
fn run_example(dir: &Path, net: &str, duration_ms: &str) -> PathBuf {
    let out = dir.join(format!("{net}.h5"));
    let o = quantal(&[
        "run",
        &format!("networks/{net}.toml"),
        "-q",
        "--backend",
        "cpu",
        "--duration-ms",
        duration_ms,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
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
        let o = quantal(&args.iter().map(String::as_str).collect::<Vec<_>>());
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
        "brette_coba",
        "coba_kinetic",
        "paired_pulse",
        "cobahh",
        "cells_fi",
    ] {
        let out = run_example(dir.path(), net, "20");
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

/// The built network as SONATA nodes and edges: libsonata reads back the populations,
/// positions, model types, every edge's source, target, weight and delay, and answers
/// afferent queries through the indices, all equal to the network quantal built.
#[test]
fn libsonata_reads_the_network() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let text = r#"version = 1
[simulation]
duration_ms = 2.0
seed = 5
[[populations]]
name = "sheet"
size = 60
model = "lif"
[populations.positions]
layout = "grid"
shape = [6, 5, 2]
spacing_um = 20.0
[[populations]]
name = "drive"
size = 7
model = "poisson"
[populations.poisson]
rate_hz = 10.0
[[synapse_types]]
name = "glu"
transmitter = "glutamate"
[[synapse_types.receptors]]
kind = "ampa"
[[projections]]
name = "local"
source = "sheet"
target = "sheet"
synapse = "glu"
rule = "fixed_probability"
weight = { dist = "uniform", low = 0.5, high = 1.5 }
[projections.distance]
profile = "gaussian"
p_max = 0.6
scale_um = 30.0
[projections.conduction]
fibre = "unmyelinated"
velocity_m_per_s = 0.1
[[projections]]
name = "in"
source = "drive"
target = "sheet"
synapse = "glu"
rule = "fixed_indegree"
indegree = 3
delay_ms = 1.0
"#;
    let file = dir.path().join("sheet.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("sheet.h5");
    let o = quantal(&[
        "run",
        file.to_str().unwrap(),
        "-q",
        "--backend",
        "cpu",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = r#"
import sys, numpy, libsonata
n = libsonata.NodeStorage(sys.argv[1])
for name in sorted(n.population_names):
    p = n.open_population(name)
    xs = [float(v) for v in p.get_attribute("x", p.select_all())] if "x" in p.attribute_names else []
    ys = [float(v) for v in p.get_attribute("y", p.select_all())] if "y" in p.attribute_names else []
    zs = [float(v) for v in p.get_attribute("z", p.select_all())] if "z" in p.attribute_names else []
    print("node", name, p.size, p.get_attribute("model_type", 0), " ".join(f"{x!r},{y!r},{z!r}" for x, y, z in zip(xs, ys, zs)))
e = libsonata.EdgeStorage(sys.argv[2])
for name in sorted(e.population_names):
    p = e.open_population(name)
    sel = p.select_all()
    src, tgt = p.source_nodes(sel), p.target_nodes(sel)
    w, d = p.get_attribute("syn_weight", sel), p.get_attribute("delay", sel)
    hx = lambda v: numpy.float32(v).tobytes().hex()
    print("edge", name, p.source, p.target, p.size, " ".join(f"{s}>{t}:{hx(a)}:{hx(b)}" for s, t, a, b in zip(src, tgt, w, d)))
    aff = p.afferent_edges([3]).flatten()
    print("afferent", name, " ".join(str(int(k)) for k in aff))
"#;
    let nodes = out.with_file_name("sheet.nodes.h5");
    let edges = out.with_file_name("sheet.edges.h5");
    let o = Command::new(&py)
        .args([
            "-c",
            script,
            nodes.to_str().unwrap(),
            edges.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "libsonata: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = String::from_utf8_lossy(&o.stdout).into_owned();
    // The same network, built by the library.
    let l = quantal::netfile::load(&file, &[]).unwrap();
    let m = quantal::model::Model::from_spec(&l.file);
    let net = quantal::network::build(&l, &m).unwrap();
    let mut want = Vec::new();
    let mut pops: Vec<usize> = (0..m.pops.len()).collect();
    pops.sort_by_key(|&i| m.pops[i].name.clone());
    for i in pops {
        let p = &m.pops[i];
        let xyz = net.positions[i]
            .as_ref()
            .map(|v| {
                v.iter()
                    .map(|q| {
                        format!(
                            "{:?},{:?},{:?}",
                            q.x as f32 as f64, q.y as f32 as f64, q.z as f32 as f64
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        want.push(format!(
            "node {} {} {} {xyz}",
            p.name,
            p.size,
            format!("{:?}", p.model).to_lowercase()
        ));
    }
    let sources = net.sources();
    let mut projs: Vec<usize> = (0..net.projections.len()).collect();
    projs.sort_by_key(|&p| net.projections[p].name.clone());
    for pi in projs {
        let pr = &net.projections[pi];
        let ids = net.projection_synapses(pi);
        let (sp, tp) = (&m.pops[pr.source], &m.pops[pr.target]);
        let e: Vec<String> = ids
            .iter()
            .map(|&i| {
                let i = i as usize;
                let hx = |x: f32| {
                    x.to_le_bytes()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                };
                format!(
                    "{}>{}:{}:{}",
                    sources[i] - sp.first,
                    net.syn_post[i] - tp.first,
                    hx(net.syn_weight[i]),
                    hx((net.syn_delay[i] as f64 * m.dt_ms) as f32)
                )
            })
            .collect();
        want.push(format!(
            "edge {} {} {} {} {}",
            pr.name,
            sp.name,
            tp.name,
            e.len(),
            e.join(" ")
        ));
        let aff: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(_, &i)| net.syn_post[i as usize] - tp.first == 3)
            .map(|(k, _)| k.to_string())
            .collect();
        want.push(format!("afferent {} {}", pr.name, aff.join(" ")));
    }
    let got: Vec<&str> = got.lines().map(|l| l.trim_end()).collect();
    let want: Vec<String> = want.iter().map(|l| l.trim_end().to_string()).collect();
    assert!(
        want.iter()
            .any(|l| l.starts_with("edge local") && l.len() > 200),
        "the sheet connects"
    );
    assert_eq!(got.len(), want.len(), "lines");
    for (g, w) in got.iter().zip(&want) {
        if *g != w.as_str() {
            let at = g
                .chars()
                .zip(w.chars())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let cut = |s: &str| {
                s.chars()
                    .skip(at.saturating_sub(60))
                    .take(160)
                    .collect::<String>()
            };
            panic!("libsonata: …{}…\nquantal:   …{}…", cut(g), cut(w));
        }
    }
}

/// Nodes and edges round-trip: a network whose projections are read back from the
/// edges file an earlier run wrote (rule `sonata`) has the same synapses, ids, weights and
/// delays, and gives the same spikes, bit for bit.
#[test]
fn edges_round_trip_through_rule_sonata() {
    let dir = tempfile::tempdir().unwrap();
    let coba =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba.toml"))
            .unwrap();
    let first = dir.path().join("coba.toml");
    std::fs::write(&first, &coba).unwrap();
    let run = |file: &Path, out: &Path| {
        let o = quantal(&[
            "run",
            file.to_str().unwrap(),
            "-q",
            "--backend",
            "cpu",
            "--duration-ms",
            "60",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let a = dir.path().join("a.h5");
    run(&first, &a);
    // The same network with every projection read from a.edges.h5 (relative path).
    let replayed = coba.replace(
        "rule = \"fixed_probability\"\np = 0.02\ndelay_ms = 0.1\n",
        "rule = \"sonata\"\n[projections.sonata]\nedges = \"a.edges.h5\"\n",
    );
    assert_eq!(
        replayed.matches("rule = \"sonata\"").count(),
        4,
        "coba.toml changed its projections"
    );
    let second = dir.path().join("replay.toml");
    std::fs::write(&second, &replayed).unwrap();
    let b = dir.path().join("b.h5");
    run(&second, &b);
    let built = |file: &Path| {
        let l = quantal::netfile::load(file, &[]).unwrap();
        let m = quantal::model::Model::from_spec(&l.file);
        quantal::network::build(&l, &m).unwrap()
    };
    let (na, nb) = (built(&first), built(&second));
    assert!(na.n_synapses() > 300_000);
    assert_eq!(na.sources(), nb.sources());
    assert_eq!(na.out_syn, nb.out_syn);
    assert_eq!(na.syn_proj, nb.syn_proj);
    assert_eq!(na.syn_post, nb.syn_post);
    assert_eq!(na.syn_delay, nb.syn_delay);
    assert_eq!(na.syn_weight, nb.syn_weight);
    let spikes = |p: &Path| {
        let f = hdf5::File::open(p).unwrap();
        ["exc", "inh"].map(|pop| {
            f.dataset(&format!("spikes/{pop}/timestamps"))
                .unwrap()
                .read_raw::<f64>()
                .unwrap()
        })
    };
    let (sa, sb) = (spikes(&a), spikes(&b));
    assert!(sa[0].len() > 100);
    assert_eq!(sa, sb, "the replayed network spikes the same");
}

/// bmtk's SONATA readers (`SpikeTrains`, `CompartmentReport`) read the spikes and every
/// report of example runs as they are, and give back what quantal wrote (compared with
/// h5py's reading of the same datasets).
#[test]
fn bmtk_reads_spikes_and_reports() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (net, duration) in [("single_synapse", "1100"), ("coba", "50")] {
        let out = run_example(dir.path(), net, duration);
        let script = r#"
import sys, glob, numpy, h5py
from bmtk.utils.reports.spike_trains import SpikeTrains
from bmtk.utils.reports.compartment import CompartmentReport
main = sys.argv[1]
f = h5py.File(main, "r")
st = SpikeTrains.load(main)
n = 0
for pop in f["spikes"]:
    want_t = f["spikes"][pop]["timestamps"][:]
    want_n = f["spikes"][pop]["node_ids"][:]
    df = st.to_dataframe(populations=pop)
    got = sorted(zip(df["timestamps"].to_numpy(), df["node_ids"].to_numpy()))
    assert got == sorted(zip(want_t, want_n)), pop
    n += 1
for path in sorted(glob.glob(main[:-3] + ".*.h5")):
    if path.endswith((".nodes.h5", ".edges.h5")):
        continue
    g = h5py.File(path, "r")
    r = CompartmentReport(path, mode="r")
    for pop in g["report"]:
        m = g["report"][pop]["mapping"]
        t = m["time"][:]
        assert abs(r.tstart(population=pop) - t[0]) < 1e-9, (path, pop)
        assert abs(r.tstop(population=pop) - t[1]) < 1e-9, (path, pop)
        assert abs(r.dt(population=pop) - t[2]) < 1e-9, (path, pop)
        assert list(r.node_ids(population=pop)) == list(m["node_ids"][:]), (path, pop)
        data = numpy.asarray(r.data(population=pop))
        assert numpy.array_equal(data, g["report"][pop]["data"][:]), (path, pop)
        n += 1
print("OK", n)
"#;
        let o = Command::new(&py)
            .args(["-c", script, out.to_str().unwrap()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{net}: bmtk: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let n: usize = stdout
            .trim()
            .strip_prefix("OK ")
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        assert!(
            n >= 3,
            "{net}: bmtk checked only {n} populations and reports"
        );
        checked += n;
    }
    assert!(checked >= 10, "{checked}");
}
