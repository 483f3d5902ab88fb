//! Recorders receive spikes and sampled reports in batches while the run goes on.
//! [`hdf5::Hdf5Recorder`] writes the SONATA layout of DESIGN.md; [`MemoryRecorder`] keeps
//! everything in memory (tests, small tools).

pub mod hdf5;
pub mod sonata_net;

use crate::error::Error;

/// One report: a variable sampled on a set of elements (SONATA report group).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportDesc {
    /// Population or projection name (`/report/<group>`).
    pub group: String,
    /// Variable name (`/report/<group>/<variable>`).
    pub variable: String,
    /// Units of the data.
    pub units: String,
    /// SONATA mapping/node_ids: population-local neuron ids (targets for synapse reports).
    pub node_ids: Vec<u64>,
    /// SONATA mapping/element_ids: 0 for neurons, projection-local synapse ids for synapses.
    pub element_ids: Vec<u64>,
    /// SONATA mapping/index_pointer (len = node_ids.len() + 1).
    pub index_pointer: Vec<u64>,
    /// Sampling: start, stop, interval in ms (SONATA mapping/time).
    pub time_ms: [f64; 3],
}

impl ReportDesc {
    /// Number of columns.
    pub fn n_elements(&self) -> usize {
        self.element_ids.len()
    }
}

/// What the output file says about how it was made (root attributes).
#[derive(Debug, Clone, PartialEq)]
pub struct RunMeta {
    /// Program version.
    pub version: String,
    /// Seed.
    pub seed: u64,
    /// Backend name.
    pub backend: String,
    /// Device or adapter.
    pub adapter: String,
    /// Step, ms.
    pub dt_ms: f64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Path of the network file.
    pub network_path: String,
    /// Network file text as written.
    pub network_text: String,
    /// Network text after `--set` overrides (what was run).
    pub effective_text: String,
    /// `--set` overrides, as given.
    pub overrides: Vec<String>,
    /// Located warnings of the network file (one per line in the output).
    pub warnings: Vec<String>,
}

/// What the run did (written at the end).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Steps computed.
    pub steps: u64,
    /// Simulated time, ms.
    pub simulated_ms: f64,
    /// Wall-clock time of the stepping, s.
    pub wall_s: f64,
    /// Spikes per population (name, count, size).
    pub spikes: Vec<(String, u64, u64)>,
    /// Quanta released in the whole run.
    pub quanta: f64,
    /// True when the run reached its end (false when interrupted).
    pub complete: bool,
    /// Per population (same order as `spikes`): the mean over neurons with at least three
    /// spikes of the coefficient of variation of their inter-spike intervals (None when
    /// no neuron has three), and the number of neurons that never fired.
    pub irregularity: Vec<(Option<f64>, u64)>,
    /// Per projection: (name, evoked events, their quanta, failures); empty where the
    /// backend does not count them (the GPU backend has no synapses yet).
    pub evoked: Vec<(String, u64, f64, u64)>,
}

impl Summary {
    /// Simulated time per wall time (> 1 is faster than real time).
    pub fn realtime_factor(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.simulated_ms / 1000.0 / self.wall_s
        } else {
            f64::INFINITY
        }
    }
}

/// Receives the output of a run.
pub trait Recorder {
    /// Called once before the first step.
    fn begin(
        &mut self,
        meta: &RunMeta,
        spike_pops: &[String],
        reports: &[ReportDesc],
    ) -> Result<(), Error>;
    /// Appends spikes of population `pop` (index into `spike_pops`), sorted by time.
    fn write_spikes(&mut self, pop: usize, times_ms: &[f64], node_ids: &[u64])
        -> Result<(), Error>;
    /// Appends `data.len() / n_elements` rows to report `report`.
    fn write_rows(&mut self, report: usize, data: &[f32]) -> Result<(), Error>;
    /// Makes everything written so far durable.
    fn flush(&mut self) -> Result<(), Error>;
    /// Prepares the per-event release record of these projections (names).
    fn begin_releases(&mut self, _projections: &[String]) -> Result<(), Error> {
        Ok(())
    }
    /// Appends release events of projection `proj` (index into `begin_releases`): time
    /// (ms), projection-local synapse id, quanta (0 for a failure), kind
    /// (`backend::ReleaseKind` as u8).
    fn write_releases(
        &mut self,
        _proj: usize,
        _times_ms: &[f64],
        _synapse_ids: &[u64],
        _quanta: &[f32],
        _kinds: &[u8],
    ) -> Result<(), Error> {
        Ok(())
    }
    /// Whether about `bytes` more can be written and the file still finished; a recorder
    /// on a filesystem that is nearly full says no before a write fails half-way (which
    /// would leave a file no reader opens). Memory recorders always can.
    fn room_for(&self, _bytes: u64) -> Result<(), Error> {
        Ok(())
    }
    /// Called once at the end (also after an interruption, with `complete = false`).
    fn finish(&mut self, summary: &Summary) -> Result<(), Error>;
}

/// Keeps the output in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryRecorder {
    /// Metadata from `begin`.
    pub meta: Option<RunMeta>,
    /// Spike populations.
    pub spike_pops: Vec<String>,
    /// Spike times per population, ms.
    pub spike_times: Vec<Vec<f64>>,
    /// Spike node ids per population (population-local).
    pub spike_ids: Vec<Vec<u64>>,
    /// Reports.
    pub reports: Vec<ReportDesc>,
    /// Report data, row-major (time × element).
    pub data: Vec<Vec<f32>>,
    /// Summary from `finish`.
    pub summary: Option<Summary>,
    /// Number of flushes.
    pub flushes: usize,
    /// Release record per projection: (name, times ms, local synapse ids, quanta, kinds).
    pub releases: Vec<ReleaseRecord>,
}

/// The per-event release record of one projection, as `MemoryRecorder` keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReleaseRecord {
    /// Projection name.
    pub projection: String,
    /// Event times, ms.
    pub times_ms: Vec<f64>,
    /// Projection-local synapse ids.
    pub synapse_ids: Vec<u64>,
    /// Quanta released (0 for a failure).
    pub quanta: Vec<f32>,
    /// `backend::ReleaseKind` as u8.
    pub kinds: Vec<u8>,
}

impl MemoryRecorder {
    /// Column `col` of report `r` as a time series.
    pub fn series(&self, r: usize, col: usize) -> Vec<f32> {
        let n = self.reports[r].n_elements();
        self.data[r].iter().skip(col).step_by(n).copied().collect()
    }

    /// Index of the report of `group`/`variable`.
    pub fn report(&self, group: &str, variable: &str) -> Option<usize> {
        self.reports
            .iter()
            .position(|r| r.group == group && r.variable == variable)
    }
}

impl Recorder for MemoryRecorder {
    fn begin(
        &mut self,
        meta: &RunMeta,
        spike_pops: &[String],
        reports: &[ReportDesc],
    ) -> Result<(), Error> {
        self.meta = Some(meta.clone());
        self.spike_pops = spike_pops.to_vec();
        self.spike_times = vec![Vec::new(); spike_pops.len()];
        self.spike_ids = vec![Vec::new(); spike_pops.len()];
        self.reports = reports.to_vec();
        self.data = vec![Vec::new(); reports.len()];
        Ok(())
    }
    fn write_spikes(
        &mut self,
        pop: usize,
        times_ms: &[f64],
        node_ids: &[u64],
    ) -> Result<(), Error> {
        self.spike_times[pop].extend_from_slice(times_ms);
        self.spike_ids[pop].extend_from_slice(node_ids);
        Ok(())
    }
    fn write_rows(&mut self, report: usize, data: &[f32]) -> Result<(), Error> {
        self.data[report].extend_from_slice(data);
        Ok(())
    }
    fn begin_releases(&mut self, projections: &[String]) -> Result<(), Error> {
        self.releases = projections
            .iter()
            .map(|p| ReleaseRecord {
                projection: p.clone(),
                ..ReleaseRecord::default()
            })
            .collect();
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
        let r = &mut self.releases[proj];
        r.times_ms.extend_from_slice(times_ms);
        r.synapse_ids.extend_from_slice(synapse_ids);
        r.quanta.extend_from_slice(quanta);
        r.kinds.extend_from_slice(kinds);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.flushes += 1;
        Ok(())
    }
    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        self.summary = Some(summary.clone());
        Ok(())
    }
}
