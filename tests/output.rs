//! The HDF5 output: every part of the SONATA layout written and read back, the layout
//! as SONATA readers expect it (paths, dtypes, attributes), and an interrupted run that
//! leaves a readable file with everything up to the last flush.

use hdf5::types::{TypeDescriptor, VarLenUnicode};
use hdf5::File;
use quantal::netfile;
use quantal::record::hdf5::Hdf5Recorder;
use quantal::record::MemoryRecorder;
use quantal::sim::{BackendKind, Simulation};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

fn sim(overrides: &[&str]) -> Simulation {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/single_synapse.toml");
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Simulation::new(netfile::load(&path, &ov).unwrap(), BackendKind::Cpu).unwrap()
}

fn attr_str(f: &hdf5::Location, name: &str) -> String {
    f.attr(name)
        .unwrap()
        .read_scalar::<VarLenUnicode>()
        .unwrap()
        .to_string()
}

/// Writes single_synapse.toml to HDF5 and reads every part back, comparing with an
/// in-memory run of the same file and seed (same bits).
#[test]
fn hdf5_layout_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ss.h5");
    let ov = [
        "simulation.duration_ms=600.0",
        "environment.ca_o_mm=2.5",
        "record.flush_interval_ms=50.0",
    ];
    let mut s = sim(&ov);
    let mut rec = Hdf5Recorder::new(&out);
    let summary = s
        .run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    let mut mem = MemoryRecorder::default();
    sim(&ov)
        .run(&mut mem, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();

    let f = File::open(&out).unwrap();
    // Root attributes: how the file was made.
    assert_eq!(attr_str(&f, "program"), "quantal");
    assert_eq!(attr_str(&f, "quantal_version"), quantal::VERSION);
    assert_eq!(
        f.attr("magic").unwrap().read_scalar::<u32>().unwrap(),
        0x0A7A
    );
    assert_eq!(
        f.attr("version").unwrap().read_raw::<u32>().unwrap(),
        vec![0, 1]
    );
    assert_eq!(attr_str(&f, "backend"), "cpu");
    assert!(!attr_str(&f, "adapter").is_empty());
    assert_eq!(f.attr("seed").unwrap().read_scalar::<u64>().unwrap(), 1);
    assert_eq!(f.attr("dt_ms").unwrap().read_scalar::<f64>().unwrap(), 0.1);
    assert_eq!(f.attr("complete").unwrap().read_scalar::<u64>().unwrap(), 1);
    assert_eq!(f.attr("steps").unwrap().read_scalar::<u64>().unwrap(), 6000);
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/single_synapse.toml"),
    )
    .unwrap();
    assert_eq!(attr_str(&f, "network_toml"), text);
    assert!(attr_str(&f, "effective_network_toml").contains("ca_o_mm = 2.5"));
    assert_eq!(attr_str(&f, "overrides"), ov.join("\n"));

    // Spikes: /spikes/<population>/{timestamps f64, node_ids u64}, sorting, units.
    for (k, pop) in mem.spike_pops.iter().enumerate() {
        let g = f.group(&format!("spikes/{pop}")).unwrap();
        assert_eq!(
            g.attr("sorting")
                .unwrap()
                .read_scalar::<quantal::record::hdf5::Sorting>()
                .unwrap(),
            quantal::record::hdf5::Sorting::by_time
        );
        let ts = g.dataset("timestamps").unwrap();
        assert_eq!(
            ts.dtype().unwrap().to_descriptor().unwrap(),
            TypeDescriptor::Float(hdf5::types::FloatSize::U8)
        );
        assert_eq!(attr_str(&ts, "units"), "ms");
        let ids = g.dataset("node_ids").unwrap();
        assert_eq!(
            ids.dtype().unwrap().to_descriptor().unwrap(),
            TypeDescriptor::Unsigned(hdf5::types::IntSize::U8)
        );
        let t = ts.read_raw::<f64>().unwrap();
        assert_eq!(t, mem.spike_times[k]);
        assert_eq!(ids.read_raw::<u64>().unwrap(), mem.spike_ids[k]);
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
    }
    let pre = f
        .dataset("spikes/pre/timestamps")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    // Regression (correctness issue, item 6): a source fires at its listed time and is
    // stamped at it (10.0 ms, not the end of step 100, 10.1 ms).
    let listed = [
        10.0, 60.0, 110.0, 160.0, 210.0, 260.0, 310.0, 360.0, 410.0, 460.0, 960.0,
    ];
    assert_eq!(
        pre,
        listed[..pre.len()],
        "source spikes at their listed times"
    );
    assert_eq!(summary.spikes[0].1 as usize, pre.len());

    // Reports: /report/<group>/<variable>/{data f32 (time × element), mapping/...}.
    for (r, desc) in mem.reports.iter().enumerate() {
        let g = f
            .group(&format!("report/{}/{}", desc.group, desc.variable))
            .unwrap();
        let d = g.dataset("data").unwrap();
        assert_eq!(
            d.dtype().unwrap().to_descriptor().unwrap(),
            TypeDescriptor::Float(hdf5::types::FloatSize::U4)
        );
        assert_eq!(d.shape(), vec![6000, desc.n_elements()]);
        assert_eq!(attr_str(&d, "units"), desc.units);
        assert!(d.chunk().is_some(), "report data must be chunked");
        assert_eq!(
            d.read_raw::<f32>().unwrap(),
            mem.data[r],
            "{}/{}",
            desc.group,
            desc.variable
        );
        let m = g.group("mapping").unwrap();
        assert_eq!(
            m.dataset("node_ids").unwrap().read_raw::<u64>().unwrap(),
            desc.node_ids
        );
        // SONATA: element_ids are u32, and the file of each variable is its own report.
        assert_eq!(
            m.dataset("element_ids")
                .unwrap()
                .dtype()
                .unwrap()
                .to_descriptor()
                .unwrap(),
            TypeDescriptor::Unsigned(hdf5::types::IntSize::U4)
        );
        assert_eq!(
            m.dataset("element_ids").unwrap().read_raw::<u64>().unwrap(),
            desc.element_ids
        );
        assert_eq!(
            m.dataset("index_pointers")
                .unwrap()
                .read_raw::<u64>()
                .unwrap(),
            desc.index_pointer
        );
        let time = m.dataset("time").unwrap();
        assert_eq!(time.read_raw::<f64>().unwrap(), vec![0.0, 600.0, 0.1]);
        assert_eq!(attr_str(&time, "units"), "ms");
    }
    for (group, var, units) in [
        ("post", "v_mv", "mV"),
        ("post", "g_glu_nmda_ns", "nS"),
        ("pre_to_post", "ca_res_um", "uM"),
        ("pre_to_post", "docked", "vesicles"),
        ("pre_to_post", "cleft_mm", "mM"),
        ("pre_to_post", "r_ampa", "1"),
    ] {
        let d = f.dataset(&format!("report/{group}/{var}/data")).unwrap();
        assert_eq!(attr_str(&d, "units"), units, "{group}/{var}");
    }
    // Synapse report mapping: the target node and the projection-local synapse id.
    let m = f.group("report/pre_to_post/released/mapping").unwrap();
    assert_eq!(
        m.dataset("node_ids").unwrap().read_raw::<u64>().unwrap(),
        vec![0]
    );
    assert_eq!(
        m.dataset("element_ids").unwrap().read_raw::<u64>().unwrap(),
        vec![0]
    );
    let released: f32 = f
        .dataset("report/pre_to_post/released/data")
        .unwrap()
        .read_raw::<f32>()
        .unwrap()
        .iter()
        .sum();
    assert_eq!(released as f64, summary.quanta);
}

/// Stopping part-way (the Ctrl-C path) finishes the file: readable, `complete = 0`,
/// spikes and report rows up to the stop, and the error says where it stopped.
#[test]
fn interrupted_run_leaves_a_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cut.h5");
    let mut s = sim(&["record.flush_interval_ms=20.0"]);
    let stop = AtomicBool::new(false);
    let mut rec = Hdf5Recorder::new(&out);
    let err = s
        .run(
            &mut rec,
            &mut |done, _| {
                if done >= 3000 {
                    stop.store(true, Ordering::Relaxed);
                }
            },
            &stop,
        )
        .unwrap_err();
    let step = match err {
        quantal::Error::Interrupted { step } => step,
        e => panic!("unexpected {e}"),
    };
    assert!((3000..3200).contains(&step));
    let f = File::open(&out).unwrap();
    assert_eq!(f.attr("complete").unwrap().read_scalar::<u64>().unwrap(), 0);
    assert_eq!(f.attr("steps").unwrap().read_scalar::<u64>().unwrap(), step);
    let rows = f.dataset("report/post/v_mv/data").unwrap().shape()[0];
    assert_eq!(rows as u64, step);
    // Regression (correctness issue, output): mapping/time covers the rows written, not
    // the planned stop, so SONATA readers accept the file.
    let time = f
        .dataset("report/post/v_mv/mapping/time")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    assert_eq!(((time[1] - time[0]) / time[2]).round() as usize, rows);
    let pre = f
        .dataset("spikes/pre/timestamps")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    assert_eq!(
        pre.len(),
        6,
        "spikes at 10..260 ms happened before step {step}"
    );
}

/// A flush happens every flush interval: the recorder sees the file grow during the run.
#[test]
fn flushes_during_the_run() {
    let mut s = sim(&[
        "simulation.duration_ms=100.0",
        "record.flush_interval_ms=10.0",
    ]);
    let mut mem = MemoryRecorder::default();
    s.run(&mut mem, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    assert_eq!(mem.flushes, 11, "10 periodic flushes and the final one");
}

/// The `released` report counts every quantum, also for synapses whose receptors are all
/// exponential (which leave the active pool right after their release).
#[test]
fn released_report_counts_every_quantum() {
    let text = r#"
version = 1
[simulation]
duration_ms = 300.0
[[populations]]
name = "src"
size = 4
model = "poisson"
[populations.poisson]
rate_hz = 50.0
[[populations]]
name = "cell"
size = 2
model = "lif"
[[synapse_types]]
name = "q"
transmitter = "glutamate"
[synapse_types.vesicles]
async_rho = 0.2
spont_rate_per_s = 20.0
[[synapse_types.receptors]]
kind = "exp"
g_max_ns = 1.0
[[projections]]
name = "p"
source = "src"
target = "cell"
synapse = "q"
rule = "all_to_all"
[record]
[[record.synapses]]
projection = "p"
variables = ["released"]
"#;
    let loaded = netfile::load_str(text, Path::new("released.toml"), &[]).unwrap();
    let mut s = Simulation::new(loaded, BackendKind::Cpu).unwrap();
    let mut mem = MemoryRecorder::default();
    let summary = s
        .run(&mut mem, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    let recorded: f32 = mem.data[0].iter().sum();
    assert!(summary.quanta > 20.0);
    // The last step's release is sampled only at the next step, which is not in the run.
    let last = s.backend.quanta_last_step();
    assert_eq!(recorded as f64 + last, summary.quanta);
}

/// A generic SONATA reader's view of a file: it walks `/spikes/*` and
/// `/report/*/*` without knowing the network, and every group it finds is consistent.
#[test]
fn file_reads_as_sonata() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nmj.h5");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/nmj_ach.toml");
    let mut s = Simulation::new(
        netfile::load(
            &path,
            &[
                "simulation.duration_ms=120.0".into(),
                "record.sample_interval_ms=0.5".into(),
            ],
        )
        .unwrap(),
        BackendKind::Cpu,
    )
    .unwrap();
    s.run(
        &mut Hdf5Recorder::new(&out),
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let f = File::open(&out).unwrap();
    let spikes = f.group("spikes").unwrap();
    let pops = spikes.member_names().unwrap();
    assert_eq!(pops, vec!["endplate".to_string(), "motor_axon".to_string()]);
    for p in &pops {
        let g = spikes.group(p).unwrap();
        let t = g.dataset("timestamps").unwrap().read_raw::<f64>().unwrap();
        let n = g.dataset("node_ids").unwrap().read_raw::<u64>().unwrap();
        assert_eq!(t.len(), n.len());
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }
    let reports = f.group("report").unwrap();
    let mut n_reports = 0;
    for group in reports.member_names().unwrap() {
        let g = reports.group(&group).unwrap();
        for var in g.member_names().unwrap() {
            let r = g.group(&var).unwrap();
            let data = r.dataset("data").unwrap();
            let m = r.group("mapping").unwrap();
            let nodes = m.dataset("node_ids").unwrap().read_raw::<u64>().unwrap();
            let elems = m.dataset("element_ids").unwrap().read_raw::<u64>().unwrap();
            let ptr = m
                .dataset("index_pointers")
                .unwrap()
                .read_raw::<u64>()
                .unwrap();
            let time = m.dataset("time").unwrap().read_raw::<f64>().unwrap();
            assert_eq!(ptr.len(), nodes.len() + 1, "{group}/{var}");
            assert!(
                ptr.windows(2).all(|w| w[0] < w[1]) && ptr[0] == 0,
                "{group}/{var}"
            );
            assert_eq!(*ptr.last().unwrap() as usize, elems.len());
            let shape = data.shape();
            assert_eq!(shape[1], elems.len());
            // Rows follow mapping/time = [start, stop, dt].
            assert_eq!(
                shape[0],
                ((time[1] - time[0]) / time[2]).round() as usize,
                "{group}/{var}"
            );
            assert!(!attr_str(&data, "units").is_empty());
            n_reports += 1;
        }
    }
    assert_eq!(n_reports, 11);
}

/// A network whose state becomes NaN (an HH cell under -2e5 pA, inside the documented
/// range) stops with the population, element, variable and step, and leaves a readable
/// file with complete = 0 (correctness issue, "numbers that must not become garbage").
pub const HH_BLOWS_UP: &str = r#"
version = 1
[simulation]
dt_ms = 0.1
duration_ms = 100.0
[[populations]]
name = "cells"
size = 4
model = "hh"
[populations.hh]
i_bias_pa = -200000.0
[record]
flush_interval_ms = 0.5
[[record.neurons]]
population = "cells"
variables = ["v_mv"]
"#;

#[test]
fn non_finite_state_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nan.h5");
    let loaded = quantal::netfile::load_str(HH_BLOWS_UP, Path::new("hh.toml"), &[]).unwrap();
    let mut s = Simulation::new(loaded, BackendKind::Cpu).unwrap();
    let mut rec = Hdf5Recorder::new(&out);
    let err = s
        .run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap_err();
    match &err {
        quantal::Error::NonFinite {
            owner,
            id,
            variable,
            step,
            ..
        } => {
            assert_eq!(
                (owner.as_str(), *id, variable.as_str(), *step),
                ("population `cells`", 0, "v_mv", 17),
                "{err}"
            );
        }
        e => panic!("unexpected {e}"),
    }
    let f = File::open(&out).unwrap();
    assert_eq!(f.attr("complete").unwrap().read_scalar::<u64>().unwrap(), 0);
    let v = f
        .dataset("report/cells/v_mv/data")
        .unwrap()
        .read_raw::<f32>()
        .unwrap();
    assert!(
        !v.is_empty() && v.iter().all(|x| x.is_finite()),
        "rows up to the last flush before the NaN"
    );
}

/// A recorder that fails like a full disk on its third flush.
struct FullDisk {
    inner: MemoryRecorder,
    flushes: u32,
    finished: Option<quantal::record::Summary>,
}

impl quantal::record::Recorder for FullDisk {
    fn begin(
        &mut self,
        meta: &quantal::record::RunMeta,
        spike_pops: &[String],
        reports: &[quantal::record::ReportDesc],
    ) -> Result<(), quantal::Error> {
        self.inner.begin(meta, spike_pops, reports)
    }
    fn write_spikes(&mut self, pop: usize, t: &[f64], ids: &[u64]) -> Result<(), quantal::Error> {
        self.inner.write_spikes(pop, t, ids)
    }
    fn write_rows(&mut self, report: usize, data: &[f32]) -> Result<(), quantal::Error> {
        self.inner.write_rows(report, data)
    }
    fn flush(&mut self) -> Result<(), quantal::Error> {
        self.flushes += 1;
        if self.flushes >= 3 {
            return Err(quantal::Error::Hdf5 {
                message: "No space left on device".into(),
                path: "full.h5".into(),
            });
        }
        Ok(())
    }
    fn finish(&mut self, s: &quantal::record::Summary) -> Result<(), quantal::Error> {
        self.finished = Some(s.clone());
        Ok(())
    }
}

/// A write failure (a full disk) stops the run with how far it got; the recorder is
/// still finished, marked incomplete.
#[test]
fn full_disk_says_how_far_the_run_got() {
    let mut s = sim(&["record.flush_interval_ms=100.0"]);
    let mut rec = FullDisk {
        inner: MemoryRecorder::default(),
        flushes: 0,
        finished: None,
    };
    let err = s
        .run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("No space left on device; writing stopped after 3000 of 11000 steps, and the file holds everything up to the last good flush"),
        "{msg}"
    );
    let fin = rec.finished.clone().expect("finished");
    assert!(!fin.complete && fin.steps == 3000);
}

/// Flushing is bounded by memory as well as by time: with a flush interval longer than
/// the run, the rows buffered between flushes stay near `MAX_BUFFERED_BYTES`.
#[test]
fn flushes_are_bounded_by_memory() {
    struct Counting {
        inner: MemoryRecorder,
        flushed_rows: Vec<usize>,
    }
    impl quantal::record::Recorder for Counting {
        fn begin(
            &mut self,
            meta: &quantal::record::RunMeta,
            sp: &[String],
            r: &[quantal::record::ReportDesc],
        ) -> Result<(), quantal::Error> {
            self.inner.begin(meta, sp, r)
        }
        fn write_spikes(&mut self, p: usize, t: &[f64], i: &[u64]) -> Result<(), quantal::Error> {
            self.inner.write_spikes(p, t, i)
        }
        fn write_rows(&mut self, r: usize, d: &[f32]) -> Result<(), quantal::Error> {
            self.inner.write_rows(r, d)
        }
        fn flush(&mut self) -> Result<(), quantal::Error> {
            self.flushed_rows.push(self.inner.data[0].len() / 1000);
            Ok(())
        }
        fn finish(&mut self, s: &quantal::record::Summary) -> Result<(), quantal::Error> {
            self.inner.finish(s)
        }
    }
    let text = "version = 1\n[simulation]\nduration_ms = 600.0\n[[populations]]\nname = \"a\"\nsize = 1000\nmodel = \"lif\"\n[record]\nflush_interval_ms = 1000000.0\n[[record.neurons]]\npopulation = \"a\"\nvariables = [\"v_mv\", \"g_rr_ns\", \"g_sfa_ns\", \"theta_mv\"]\n";
    let mut s = Simulation::new(
        netfile::load_str(text, Path::new("m.toml"), &[]).unwrap(),
        BackendKind::Cpu,
    )
    .unwrap();
    let mut rec = Counting {
        inner: MemoryRecorder::default(),
        flushed_rows: Vec::new(),
    };
    s.run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    // 4000 values of 4 B per row: 64 MiB hold 4194 rows; the first flush comes right after.
    let limit = quantal::sim::MAX_BUFFERED_BYTES / (4000 * 4);
    assert!(rec.flushed_rows.len() >= 2, "{:?}", rec.flushed_rows);
    assert!(
        rec.flushed_rows[0] > limit && rec.flushed_rows[0] <= limit + 1024,
        "{:?}",
        rec.flushed_rows
    );
}

/// `released` is a sum over the sampling interval: sampled every 1 ms (10 steps), its
/// column sums to every quantum of the run (correctness issue 9: subsampled records
/// missed every evoked release).
#[test]
fn released_sums_over_the_sampling_interval() {
    let mut s = sim(&["record.sample_interval_ms=1.0"]);
    let mut rec = MemoryRecorder::default();
    let summary = s
        .run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    let r = rec
        .reports
        .iter()
        .position(|d| d.variable == "released")
        .unwrap();
    let total: f64 = rec.data[r].iter().map(|&x| x as f64).sum();
    assert!(summary.quanta > 10.0);
    assert_eq!(
        total, summary.quanta,
        "every quantum is in some interval's sum"
    );
}

/// The per-event release record, the synaptic twin of the spike record: one row per
/// presynaptic event of a recorded projection, with its time, synapse, quanta (0 for a
/// failure) and kind; its quanta add up to the run's, and the evoked rows are the spike
/// arrivals (correctness issue 9).
#[test]
fn release_events_are_recorded_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rel.h5");
    let mut s = sim(&["record.releases=[\"pre_to_post\"]"]);
    let mut mem = MemoryRecorder::default();
    let summary = s
        .run(&mut mem, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    let r = &mem.releases[0];
    assert_eq!(r.projection, "pre_to_post");
    let total: f64 = r.quanta.iter().map(|&q| q as f64).sum();
    assert_eq!(total, summary.quanta, "every quantum is in the record");
    let evoked: Vec<f64> = r
        .times_ms
        .iter()
        .zip(&r.kinds)
        .filter(|(_, &k)| k == 0)
        .map(|(&t, _)| t)
        .collect();
    // Spikes at 10, 60, ..., 460 and 960 ms reach the synapse one delay later.
    let delay = s.net.syn_delay[0] as f64 * s.model.dt_ms;
    let want: Vec<f64> = [
        10.0, 60.0, 110.0, 160.0, 210.0, 260.0, 310.0, 360.0, 410.0, 460.0, 960.0,
    ]
    .iter()
    .map(|t| ((t + delay) / 0.1f64).round() * 0.1)
    .collect();
    assert_eq!(evoked.len(), want.len());
    for (a, b) in evoked.iter().zip(&want) {
        assert!((a - b).abs() < 1e-9, "{evoked:?} vs {want:?}");
    }
    assert!(r.synapse_ids.iter().all(|&i| i == 0));
    // The run summary per projection counts the same evoked events, quanta and failures.
    let (name, events, quanta, failures) = summary.evoked[0].clone();
    let evoked_q: f64 = r
        .quanta
        .iter()
        .zip(&r.kinds)
        .filter(|(_, &k)| k == 0)
        .map(|(&q, _)| q as f64)
        .sum();
    let evoked_f = r
        .quanta
        .iter()
        .zip(&r.kinds)
        .filter(|(&q, &k)| k == 0 && q == 0.0)
        .count() as u64;
    assert_eq!(
        (name.as_str(), events, quanta, failures),
        ("pre_to_post", 11, evoked_q, evoked_f)
    );
    // The same record in the HDF5 file.
    let mut s = sim(&["record.releases=[\"pre_to_post\"]"]);
    let mut rec = Hdf5Recorder::new(&out);
    s.run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    let f = File::open(&out).unwrap();
    let g = f.group("releases/pre_to_post").unwrap();
    assert_eq!(
        g.dataset("timestamps").unwrap().read_raw::<f64>().unwrap(),
        r.times_ms
    );
    assert_eq!(
        g.dataset("quanta").unwrap().read_raw::<f32>().unwrap(),
        r.quanta
    );
    assert_eq!(
        g.dataset("kind").unwrap().read_raw::<u8>().unwrap(),
        r.kinds
    );
    assert_eq!(
        g.dataset("synapse_ids").unwrap().read_raw::<u64>().unwrap(),
        r.synapse_ids
    );
}

/// `quantal plot` draws the data it reads: one raster mark per spike at its time, rate
/// bins that count every spike, one trace point per sample at its value.
#[test]
fn plots_draw_the_data() {
    use quantal::plot::{plot, What};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ss.h5");
    let mut s = sim(&[]);
    let mut rec = Hdf5Recorder::new(&out);
    s.run(&mut rec, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    drop(rec);
    let f = File::open(&out).unwrap();
    let pre = f
        .dataset("spikes/pre/timestamps")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    let duration = 1100.0;
    // Raster: 11 marks, x = 70 + t / 1100 · 810.
    let fig = plot(&out, What::Raster, None, &[], 5.0).unwrap();
    let xs: Vec<f64> = fig
        .svg
        .lines()
        .filter(|l| l.contains("class=\"spike\""))
        .map(|l| {
            l.split("x=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!((fig.marks, xs.len()), (pre.len(), pre.len()));
    for (x, t) in xs.iter().zip(&pre) {
        assert!(
            (x - (70.0 + t / duration * 810.0)).abs() < 0.01,
            "{x} for {t} ms"
        );
    }
    // Rates: 220 bins of 5 ms per population; pre's bins hold its 11 spikes.
    let fig = plot(&out, What::Rates, None, &[], 5.0).unwrap();
    let line = fig
        .svg
        .lines()
        .find(|l| l.contains("class=\"rate\" data-name=\"pre\""))
        .unwrap();
    let pts: Vec<&str> = line
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(pts.len(), 220);
    let top: f64 = fig
        .svg
        .lines()
        .rfind(|l| l.contains("text-anchor=\"end\""))
        .unwrap()
        .split('>')
        .nth(2)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let spikes: f64 = pts
        .iter()
        .map(|p| {
            let y: f64 = p.split(',').nth(1).unwrap().parse().unwrap();
            (450.0 - y) / 400.0 * top * 5.0 / 1000.0
        })
        .sum();
    assert!(
        (spikes - pre.len() as f64).abs() < 0.05,
        "{spikes} spikes in the bins"
    );
    // Traces: v_mv of the cell, one point per sample (11000), first at its value.
    let fig = plot(&out, What::Traces, Some("v_mv"), &[0], 5.0).unwrap();
    assert_eq!(fig.marks, 11_000);
    let v = File::open(out.with_file_name("ss.v_mv.h5"))
        .unwrap()
        .dataset("report/post/data")
        .unwrap()
        .read_raw::<f32>()
        .unwrap();
    assert_eq!(v.len(), 11_000);
    assert!(fig.svg.contains("data-name=\"post[0]\""));
    assert!(
        plot(&out, What::Traces, None, &[], 5.0).is_err(),
        "traces need a variable"
    );
}

/// `quantal plot --what release`: one bar per (projection, quanta value) whose count and
/// height are the evoked events of that size in the run's release record.
#[test]
fn release_histogram_draws_the_record() {
    use quantal::plot::{plot, What};
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("trials.toml");
    let text = crate::release::trials(
        50,
        10,
        "[0.0, 20.0, 40.0]",
        &crate::release::ca("n_sites = 5\np_ref = 0.3"),
    ) + "[record]\nreleases = [\"p\"]\n";
    std::fs::write(&net, text).unwrap();
    let out = dir.path().join("trials.h5");
    let o = crate::common::quantal(&[
        "run",
        net.to_str().unwrap(),
        "--duration-ms",
        "60",
        "-q",
        "--backend",
        "cpu",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = File::open(&out).unwrap();
    let q = f
        .dataset("releases/p/quanta")
        .unwrap()
        .read_raw::<f32>()
        .unwrap();
    let kind = f
        .dataset("releases/p/kind")
        .unwrap()
        .read_raw::<u8>()
        .unwrap();
    let mut want = vec![0u64; 6];
    for (&x, &k) in q.iter().zip(&kind) {
        if k == 0 {
            want[x as usize] += 1;
        }
    }
    assert_eq!(
        want.iter().sum::<u64>(),
        50 * 10 * 3,
        "every spike is an evoked event"
    );
    assert!(want[0] > 0 && want[3] > 0, "{want:?}");
    let fig = plot(&out, What::Release, None, &[], 1.0).unwrap();
    let attr = |l: &str, a: &str| -> f64 {
        l.split(&format!("{a}=\""))
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let bars: Vec<&str> = fig
        .svg
        .lines()
        .filter(|l| l.contains("class=\"bar\""))
        .collect();
    assert_eq!(bars.len(), fig.marks);
    let top = *want.iter().max().unwrap() as f64;
    let mut got = [0u64; 6];
    for l in &bars {
        let (k, count) = (attr(l, "data-quanta") as usize, attr(l, "data-count"));
        got[k] = count as u64;
        // The plot area is 400 px high and its top is the largest count.
        assert!(
            (attr(l, "height") - count / top * 400.0).abs() < 0.01,
            "{l}"
        );
    }
    let trailing = want.iter().rposition(|&c| c > 0).unwrap() + 1;
    assert_eq!(&got[..trailing], &want[..trailing]);
    let failures = 100.0 * want[0] as f64 / 1500.0;
    assert!(
        fig.svg
            .contains(&format!("p: 1500 spikes, {failures:.1} % failures")),
        "{}",
        fig.svg
    );
}
