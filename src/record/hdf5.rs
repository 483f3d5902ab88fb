//! HDF5 output in SONATA's formats (DESIGN.md "Output").
//!
//! ```text
//! RUN.h5
//! /                      attrs: magic (0x0A7A), version ([0, 1]: SONATA's), program,
//!                               quantal_version, seed, backend, adapter, dt_ms, duration_ms,
//!                               network_path, network_toml, effective_network_toml,
//!                               overrides, warnings, complete (0 until the run ends),
//!                               summary attributes
//! /spikes/<population>   attr sorting = by_time (SONATA's enum: none 0, by_id 1, by_time 2)
//!     timestamps (f64, ms, attr units = "ms"), node_ids (u64)
//! /report/<group>/<variable>   external link to RUN.<variable>.h5:/report/<group>
//!
//! RUN.<variable>.h5      a SONATA report (one variable per file, as SONATA defines it)
//! /                      attrs: magic, version, variable, run (the main file's name)
//! /report/<population or projection>
//!     data (f32, time × element, attr units)
//!     mapping/node_ids (u64), mapping/element_ids (u32), mapping/index_pointers (u64;
//!     also linked as index_pointer, the name bmtk reads), mapping/time (f64 [start,
//!     stop, step], attr units = "ms")
//! ```
//! Datasets are chunked and unlimited along time; they grow at each batch and the files
//! are flushed after each batch, so an interrupted run leaves readable files with
//! everything up to the last flush.
//!
//! Every file is written under a temporary name in the target directory
//! (`.<name>.partial-<pid>`) and renamed when the run ends, completed or interrupted
//! (`complete` says which): an existing file is never truncated by a run in progress, a
//! reader holding the old file keeps it, and a killed process leaves its partial files
//! under their temporary names. After an interruption each report's `mapping/time` is
//! cut to the rows written, as SONATA readers require.

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, Group};
use ndarray::{s, ArrayView2};
use std::path::{Path, PathBuf};

use super::{Recorder, ReportDesc, RunMeta, Summary};
use crate::error::Error;

/// Chunk length of the spike datasets.
const SPIKE_CHUNK: usize = 16_384;
/// Target bytes per report chunk.
const REPORT_CHUNK_BYTES: usize = 256 * 1024;

/// SONATA's spike sorting, an HDF5 enum on `/spikes/<population>` (`sorting`).
#[derive(hdf5::H5Type, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(non_camel_case_types, dead_code)]
pub enum Sorting {
    /// Unsorted.
    none = 0,
    /// By node id.
    by_id = 1,
    /// By time (what quantal writes).
    by_time = 2,
}

/// SONATA's file signature (root attribute `magic`) and format version (`version`).
pub const SONATA_MAGIC: u32 = 0x0A7A;
/// SONATA format version written at the root.
pub const SONATA_VERSION: [u32; 2] = [0, 1];

/// Space kept free for finishing a file (attributes, metadata flush, close).
const RESERVE_BYTES: u64 = 4 << 20;

/// Bytes available to an unprivileged writer in the filesystem of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Writes a run to an HDF5 file.
pub struct Hdf5Recorder {
    path: PathBuf,
    partial: PathBuf,
    file: Option<File>,
    spikes: Vec<(Dataset, Dataset, usize)>,
    reports: Vec<(Dataset, usize, usize)>,
    times: Vec<(Dataset, [f64; 3])>,
    /// One SONATA report file per recorded variable: (file, temporary name, name).
    report_files: Vec<(File, PathBuf, PathBuf)>,
    /// Per-event release records: (timestamps, synapse_ids, quanta, kind, rows).
    releases: Vec<(Dataset, Dataset, Dataset, Dataset, usize)>,
}

/// The SONATA report file of `variable` beside the main output `path`:
/// `<stem>.<variable>.h5`.
pub fn report_path(path: &Path, variable: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "quantal".into());
    path.with_file_name(format!("{stem}.{variable}.h5"))
}

/// Writes a table (a sweep's index) as HDF5: one dataset per column under `/index`, f64
/// where every filled field is a number (NaN where empty), UTF-8 strings otherwise; the
/// root attribute `columns` lists the column order and `network` the source file.
pub fn write_table(
    path: &Path,
    header: &[String],
    rows: &[Vec<String>],
    network: &str,
) -> Result<(), Error> {
    let e = |err: hdf5::Error| Error::Hdf5 {
        message: err.to_string(),
        path: path.to_path_buf(),
    };
    let f = File::create(path).map_err(e)?;
    let g = f.create_group("index").map_err(e)?;
    for (c, name) in header.iter().enumerate() {
        let fields: Vec<&str> = rows
            .iter()
            .map(|r| r.get(c).map(|x| x.as_str()).unwrap_or(""))
            .collect();
        let numbers: Option<Vec<f64>> = fields
            .iter()
            .map(|x| {
                if x.is_empty() {
                    Some(f64::NAN)
                } else {
                    x.parse().ok()
                }
            })
            .collect();
        let any = fields.iter().any(|x| !x.is_empty());
        match numbers {
            Some(v) if any => {
                g.new_dataset_builder()
                    .with_data(&v)
                    .create(name.as_str())
                    .map_err(e)?;
            }
            _ => {
                let v: Vec<VarLenUnicode> = fields.iter().map(|x| vstr(x)).collect();
                g.new_dataset_builder()
                    .with_data(&v)
                    .create(name.as_str())
                    .map_err(e)?;
            }
        }
    }
    let cols: Vec<VarLenUnicode> = header.iter().map(|h| vstr(h)).collect();
    f.new_attr_builder()
        .with_data(&cols)
        .create("columns")
        .map_err(e)?;
    f.new_attr::<VarLenUnicode>()
        .create("network")
        .and_then(|a| a.write_scalar(&vstr(network)))
        .map_err(e)?;
    Ok(())
}

/// The temporary name a run writes `path` under.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "quantal.h5".into());
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn vstr(s: &str) -> VarLenUnicode {
    // Interior NULs cannot be stored in an HDF5 string; replace them.
    s.replace('\0', "\u{FFFD}")
        .parse()
        .expect("a string without NUL is a valid VarLenUnicode")
}

impl Hdf5Recorder {
    /// A recorder for `path`: it creates the temporary file at `begin` and renames it
    /// to `path` at `finish`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            partial: partial_path(path),
            file: None,
            spikes: Vec::new(),
            reports: Vec::new(),
            times: Vec::new(),
            report_files: Vec::new(),
            releases: Vec::new(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Hdf5 {
            // The HDF5 library's messages span lines; an error is one line.
            message: e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            path: self.path.clone(),
        }
    }

    fn attr_str(&self, g: &Group, name: &str, v: &str) -> Result<(), Error> {
        g.new_attr::<VarLenUnicode>()
            .create(name)
            .and_then(|a| a.write_scalar(&vstr(v)))
            .map_err(|e| self.err(e))
    }

    fn attr_f64(&self, g: &Group, name: &str, v: f64) -> Result<(), Error> {
        let a = match g.attr(name) {
            Ok(a) => a,
            Err(_) => g.new_attr::<f64>().create(name).map_err(|e| self.err(e))?,
        };
        a.write_scalar(&v).map_err(|e| self.err(e))
    }

    fn attr_u32(&self, g: &Group, name: &str, v: u32) -> Result<(), Error> {
        g.new_attr::<u32>()
            .create(name)
            .and_then(|a| a.write_scalar(&v))
            .map_err(|e| self.err(e))
    }

    fn attr_u64(&self, g: &Group, name: &str, v: u64) -> Result<(), Error> {
        let a = match g.attr(name) {
            Ok(a) => a,
            Err(_) => g.new_attr::<u64>().create(name).map_err(|e| self.err(e))?,
        };
        a.write_scalar(&v).map_err(|e| self.err(e))
    }

    /// A 1-D dataset of `T` that grows along the run (chunked, unlimited).
    fn growable<T: hdf5::H5Type>(&self, g: &Group, name: &str) -> Result<Dataset, Error> {
        g.new_dataset::<T>()
            .chunk(SPIKE_CHUNK)
            .shape(0..)
            .create(name)
            .map_err(|e| self.err(e))
    }

    /// A growable f64 time stamp dataset in ms (`units` = "ms").
    fn timestamps(&self, g: &Group) -> Result<Dataset, Error> {
        let ts = self.growable::<f64>(g, "timestamps")?;
        ts.new_attr::<VarLenUnicode>()
            .create("units")
            .and_then(|a| a.write_scalar(&vstr("ms")))
            .map_err(|e| self.err(e))?;
        Ok(ts)
    }

    fn group(&self, parent: &Group, name: &str) -> Result<Group, Error> {
        match parent.group(name) {
            Ok(g) => Ok(g),
            Err(_) => parent.create_group(name).map_err(|e| self.err(e)),
        }
    }
}

impl Recorder for Hdf5Recorder {
    fn begin(
        &mut self,
        meta: &RunMeta,
        spike_pops: &[String],
        reports: &[ReportDesc],
    ) -> Result<(), Error> {
        let file = File::create(&self.partial).map_err(|e| self.err(e))?;
        let root: &Group = &file;
        self.attr_str(root, "program", "quantal")?;
        // SONATA's signature and version; the program's version has its own attribute.
        self.attr_u32(root, "magic", SONATA_MAGIC)?;
        root.new_attr_builder()
            .with_data(&SONATA_VERSION[..])
            .create("version")
            .map_err(|e| self.err(e))?;
        self.attr_str(root, "quantal_version", &meta.version)?;
        self.attr_u64(root, "seed", meta.seed)?;
        self.attr_str(root, "backend", &meta.backend)?;
        self.attr_str(root, "adapter", &meta.adapter)?;
        self.attr_f64(root, "dt_ms", meta.dt_ms)?;
        self.attr_f64(root, "duration_ms", meta.duration_ms)?;
        self.attr_str(root, "network_path", &meta.network_path)?;
        self.attr_str(root, "network_toml", &meta.network_text)?;
        self.attr_str(root, "effective_network_toml", &meta.effective_text)?;
        self.attr_str(root, "overrides", &meta.overrides.join("\n"))?;
        self.attr_str(root, "warnings", &meta.warnings.join("\n"))?;
        self.attr_u64(root, "complete", 0)?;
        let sp = self.group(root, "spikes")?;
        for name in spike_pops {
            let g = self.group(&sp, name)?;
            g.new_attr::<Sorting>()
                .create("sorting")
                .and_then(|a| a.write_scalar(&Sorting::by_time))
                .map_err(|e| self.err(e))?;
            let ts = self.timestamps(&g)?;
            let ids = self.growable::<u64>(&g, "node_ids")?;
            self.spikes.push((ts, ids, 0));
        }
        // Reports: one SONATA report file per variable (SONATA defines one variable per
        // report), /report/<population>/{data, mapping/...}; the main file links each
        // as /report/<population>/<variable> (an HDF5 external link that h5py follows).
        let rep = self.group(root, "report")?;
        let mut by_var: Vec<&str> = Vec::new();
        for r in reports {
            if !by_var.contains(&r.variable.as_str()) {
                by_var.push(&r.variable);
            }
        }
        for var in &by_var {
            let name = report_path(&self.path, var);
            let partial = partial_path(&name);
            let vf = File::create(&partial).map_err(|e| self.err(e))?;
            let vroot: &Group = &vf;
            self.attr_u32(vroot, "magic", SONATA_MAGIC)?;
            vroot
                .new_attr_builder()
                .with_data(&SONATA_VERSION[..])
                .create("version")
                .map_err(|e| self.err(e))?;
            self.attr_str(vroot, "variable", var)?;
            self.attr_str(
                vroot,
                "run",
                &self
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )?;
            self.report_files.push((vf, partial, name));
        }
        for r in reports {
            let k = by_var
                .iter()
                .position(|v| *v == r.variable)
                .expect("listed");
            let vroot: Group = (*self.report_files[k].0).clone();
            let vrep = self.group(&vroot, "report")?;
            let v = self.group(&vrep, &r.group)?;
            let n = r.n_elements().max(1);
            let rows = (REPORT_CHUNK_BYTES / (4 * n)).clamp(1, 4096);
            let d = v
                .new_dataset::<f32>()
                .chunk((rows, n))
                .shape((0.., r.n_elements()))
                .create("data")
                .map_err(|e| self.err(e))?;
            d.new_attr::<VarLenUnicode>()
                .create("units")
                .and_then(|a| a.write_scalar(&vstr(&r.units)))
                .map_err(|e| self.err(e))?;
            let m = self.group(&v, "mapping")?;
            m.new_dataset_builder()
                .with_data(&r.node_ids)
                .create("node_ids")
                .map_err(|e| self.err(e))?;
            let element_ids: Vec<u32> = r.element_ids.iter().map(|&e| e as u32).collect();
            m.new_dataset_builder()
                .with_data(&element_ids)
                .create("element_ids")
                .map_err(|e| self.err(e))?;
            m.new_dataset_builder()
                .with_data(&r.index_pointer)
                .create("index_pointers")
                .map_err(|e| self.err(e))?;
            // bmtk's report reader opens the singular name: the same dataset, linked.
            m.link_hard("index_pointers", "index_pointer")
                .map_err(|e| self.err(e))?;
            let t = m
                .new_dataset_builder()
                .with_data(&r.time_ms)
                .create("time")
                .map_err(|e| self.err(e))?;
            t.new_attr::<VarLenUnicode>()
                .create("units")
                .and_then(|a| a.write_scalar(&vstr("ms")))
                .map_err(|e| self.err(e))?;
            self.reports.push((d, r.n_elements(), 0));
            self.times.push((t, r.time_ms));
            let g = self.group(&rep, &r.group)?;
            let target = report_path(&self.path, &r.variable);
            let target = target.file_name().expect("a file name").to_string_lossy();
            g.link_external(&target, &format!("/report/{}", r.group), &r.variable)
                .map_err(|e| self.err(e))?;
        }
        file.flush().map_err(|e| self.err(e))?;
        self.file = Some(file);
        Ok(())
    }

    fn write_spikes(
        &mut self,
        pop: usize,
        times_ms: &[f64],
        node_ids: &[u64],
    ) -> Result<(), Error> {
        if times_ms.is_empty() {
            return Ok(());
        }
        let (ts, ids, n) = &mut self.spikes[pop];
        let m = *n + times_ms.len();
        let r = ts
            .resize(m)
            .and_then(|_| ts.write_slice(times_ms, *n..m))
            .and_then(|_| ids.resize(m))
            .and_then(|_| ids.write_slice(node_ids, *n..m));
        *n = m;
        r.map_err(|e| Error::Hdf5 {
            message: e.to_string(),
            path: self.path.clone(),
        })
    }

    fn write_rows(&mut self, report: usize, data: &[f32]) -> Result<(), Error> {
        let (d, cols, n) = &mut self.reports[report];
        if *cols == 0 || data.is_empty() {
            return Ok(());
        }
        let rows = data.len() / *cols;
        let view = ArrayView2::from_shape((rows, *cols), data).map_err(|e| Error::Hdf5 {
            message: e.to_string(),
            path: self.path.clone(),
        })?;
        let m = *n + rows;
        let r = d
            .resize((m, *cols))
            .and_then(|_| d.write_slice(view, s![*n..m, ..]));
        *n = m;
        r.map_err(|e| Error::Hdf5 {
            message: e.to_string(),
            path: self.path.clone(),
        })
    }

    fn begin_releases(&mut self, projections: &[String]) -> Result<(), Error> {
        if projections.is_empty() {
            return Ok(());
        }
        let file = self.file.as_ref().expect("begin first");
        let root: &Group = file;
        let rel = self.group(root, "releases")?;
        for name in projections {
            let g = self.group(&rel, name)?;
            self.attr_str(
                &g,
                "kind_values",
                "0 evoked (a presynaptic spike; 0 quanta is a failure), 1 asynchronous, 2 spontaneous",
            )?;
            let t = self.timestamps(&g)?;
            let ids = self.growable::<u64>(&g, "synapse_ids")?;
            let q = self.growable::<f32>(&g, "quanta")?;
            let k = self.growable::<u8>(&g, "kind")?;
            self.releases.push((t, ids, q, k, 0));
        }
        Ok(())
    }

    fn write_releases(
        &mut self,
        proj: usize,
        times_ms: &[f64],
        synapse_ids: &[u64],
        quanta: &[f32],
        kinds: &[u8],
    ) -> Result<(), Error> {
        if times_ms.is_empty() {
            return Ok(());
        }
        let (t, ids, q, k, n) = &mut self.releases[proj];
        let m = *n + times_ms.len();
        let r = t
            .resize(m)
            .and_then(|_| t.write_slice(times_ms, *n..m))
            .and_then(|_| ids.resize(m))
            .and_then(|_| ids.write_slice(synapse_ids, *n..m))
            .and_then(|_| q.resize(m))
            .and_then(|_| q.write_slice(quanta, *n..m))
            .and_then(|_| k.resize(m))
            .and_then(|_| k.write_slice(kinds, *n..m));
        *n = m;
        r.map_err(|e| Error::Hdf5 {
            message: e.to_string(),
            path: self.path.clone(),
        })
    }

    fn room_for(&self, bytes: u64) -> Result<(), Error> {
        let dir = match self.partial.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(free) = free_bytes(&dir) else {
            return Ok(());
        };
        // Room for the data, HDF5's chunk and metadata overhead, and finishing the file.
        let needed = bytes + bytes / 4 + RESERVE_BYTES;
        if free < needed {
            return Err(Error::Hdf5 {
                message: format!(
                    "the disk is nearly full: {free} bytes free in {}, about {needed} needed for the next flush and closing the file",
                    dir.display()
                ),
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        for (f, _, _) in &self.report_files {
            f.flush().map_err(|e| self.err(e))?;
        }
        match &self.file {
            Some(f) => f.flush().map_err(|e| self.err(e)),
            None => Ok(()),
        }
    }

    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // Whatever fails (a full disk), the file is closed and given its name, and the
        // first error is returned.
        let written = self.write_summary(&file, summary);
        self.reports.clear();
        self.times.clear();
        self.releases.clear();
        // The report files first, so that the main file's links resolve once it has its name.
        let mut reports_done = Ok(());
        for (vf, partial, name) in self.report_files.drain(..) {
            let r = vf
                .flush()
                .and_then(|_| vf.close())
                .map_err(|e| Error::Hdf5 {
                    message: e.to_string(),
                    path: name.clone(),
                })
                .and_then(|_| {
                    std::fs::rename(&partial, &name).map_err(|e| Error::Io {
                        cause: e,
                        path: name.clone(),
                    })
                });
            reports_done = reports_done.and(r);
        }
        let flushed = file.flush().map_err(|e| self.err(e));
        let closed = file.close().map_err(|e| self.err(e));
        let renamed = std::fs::rename(&self.partial, &self.path).map_err(|e| Error::Io {
            cause: e,
            path: self.path.clone(),
        });
        written
            .and(reports_done)
            .and(flushed)
            .and(closed)
            .and(renamed)
    }
}

impl Hdf5Recorder {
    fn write_summary(&self, file: &File, summary: &Summary) -> Result<(), Error> {
        let root: &Group = file;
        // mapping/time = [start, stop, step] must cover exactly the rows written.
        for ((_, cols, rows), (t, time)) in self.reports.iter().zip(&self.times) {
            if *cols > 0 {
                let stop = time[0] + *rows as f64 * time[2];
                if stop != time[1] {
                    t.write(&[time[0], stop, time[2]])
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        self.attr_u64(root, "complete", summary.complete as u64)?;
        self.attr_u64(root, "steps", summary.steps)?;
        self.attr_f64(root, "simulated_ms", summary.simulated_ms)?;
        self.attr_f64(root, "wall_s", summary.wall_s)?;
        self.attr_f64(root, "quanta_released", summary.quanta)
    }
}

impl Drop for Hdf5Recorder {
    /// A recorder dropped between `begin` and `finish` still closes its file and gives it
    /// its name: what was flushed stays readable, with `complete` = 0.
    fn drop(&mut self) {
        self.reports.clear();
        self.times.clear();
        self.releases.clear();
        for (vf, partial, name) in self.report_files.drain(..) {
            let _ = vf.close();
            let _ = std::fs::rename(&partial, &name);
        }
        if let Some(f) = self.file.take() {
            let _ = f.close();
            let _ = std::fs::rename(&self.partial, &self.path);
        }
    }
}
