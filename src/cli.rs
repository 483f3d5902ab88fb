//! Command-line interface (clap). The binary is a thin layer over the library.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Spiking networks with step-by-step chemical synapses.
#[derive(Debug, Parser)]
#[command(name = "quantal", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Backends offered on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// The GPU when a hardware adapter exists (a software renderer such as lavapipe only
    /// when named with --adapter), else the CPU; says which and why.
    Auto,
    /// The CPU reference backend.
    Cpu,
    /// The GPU backend (wgpu: Vulkan, Metal, DX12 or GL), software renderers included;
    /// fails when there is no adapter or the network does not fit its bindings.
    Gpu,
}

impl BackendArg {
    /// The library's backend choice, with `--adapter`.
    pub fn kind(self, adapter: Option<String>) -> quantal::sim::BackendKind {
        use quantal::sim::BackendKind;
        match self {
            BackendArg::Auto => BackendKind::Auto { adapter },
            BackendArg::Cpu => BackendKind::Cpu,
            BackendArg::Gpu => BackendKind::Gpu { adapter },
        }
    }
}

/// `--threads N`: a whole number of at least 1.
fn threads_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a number of threads (1 or more)")),
    }
}

/// Figures `quantal plot` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlotArg {
    /// Spike raster, one colour per population.
    Raster,
    /// Population rates in time bins.
    Rates,
    /// Traces of a recorded variable.
    Traces,
    /// Histograms of quanta per presynaptic spike, per projection of `record.releases`.
    Release,
    /// A column of a sweep's index table against a swept parameter (mean ± SE over seeds).
    Sweep,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a network file and write spikes and reports to HDF5 (SONATA layout).
    #[command(
        after_help = "Examples:\n  quantal run networks/single_synapse.toml -o single_synapse.h5\n  quantal run networks/coba.toml --duration-ms 200 --seed 3\n  quantal run networks/single_synapse.toml --set environment.ca_o_mm=1.0 -o low_ca.h5"
    )]
    Run {
        /// Network file (TOML).
        network: PathBuf,
        /// Output HDF5 file (default: <network name>.h5 in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Replace the output file if it exists (it is replaced only when the new run ends).
        #[arg(long)]
        force: bool,
        /// Backend.
        #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
        backend: BackendArg,
        /// GPU adapter: part of its name as `quantal info` lists it (default: the best).
        #[arg(long)]
        adapter: Option<String>,
        /// CPU threads (default: one per core; the results are the same bits for any
        /// number).
        #[arg(long, value_parser = threads_arg)]
        threads: Option<usize>,
        /// Seed (overrides simulation.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Duration in ms (overrides simulation.duration_ms).
        #[arg(long = "duration-ms")]
        duration_ms: Option<f64>,
        /// Override any parameter by its path, e.g. synapse_types.glu.ca.p_ref=0.3 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Validate a network file and print its size and memory needs.
    #[command(after_help = "Example:\n  quantal check networks/coba.toml")]
    Check {
        /// Network file (TOML).
        network: PathBuf,
        /// Override parameters as in `run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Time a network: build time, steps per second, events per second, time per kernel.
    #[command(
        after_help = "Examples:\n  quantal bench networks/coba.toml --steps 2000\n  quantal bench networks/large.toml --steps 200 --warmup 50\n  quantal bench networks/lif_fi.toml --backend gpu --steps 10000"
    )]
    Bench {
        /// Network file (TOML).
        network: PathBuf,
        /// Timed steps.
        #[arg(long, default_value_t = 1000)]
        steps: u32,
        /// Untimed steps before (to get past start-up transients).
        #[arg(long, default_value_t = 100)]
        warmup: u32,
        /// Backend.
        #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
        backend: BackendArg,
        /// GPU adapter: part of its name as `quantal info` lists it (default: the best).
        #[arg(long)]
        adapter: Option<String>,
        /// CPU threads (default: one per core; the results are the same bits for any
        /// number).
        #[arg(long, value_parser = threads_arg)]
        threads: Option<usize>,
        /// Override parameters as in `run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run the CPU and GPU backends side by side and report where they differ.
    #[command(
        after_help = "Compares, per buffer, one step from identical state (every N steps), then whole\nruns: the first step whose spikes differ, the final state, and rate and CV per\npopulation. Exit status 1 on any difference beyond the tolerance.\n\nExamples:\n  quantal validate networks/cells_fi.toml --duration-ms 200\n  quantal validate networks/cells_fi.toml --tolerance-ulp 4 --statistics"
    )]
    Validate {
        /// Network file (TOML).
        network: PathBuf,
        /// Simulated time to compare, ms (default: the file's duration).
        #[arg(long = "duration-ms")]
        duration_ms: Option<f64>,
        /// Steps between the one-step kernel checks.
        #[arg(long = "steps-per-kernel-check", default_value_t = 100)]
        steps_per_kernel_check: u32,
        /// Largest float difference accepted, in ULP (0: bit-identical, as on lavapipe).
        #[arg(long = "tolerance-ulp", default_value_t = 0)]
        tolerance_ulp: u64,
        /// Judge the whole run by rates and CVs (within 5 %) instead of identical spikes:
        /// for hardware GPUs that fuse multiply-adds.
        #[arg(long)]
        statistics: bool,
        /// GPU adapter: part of its name as `quantal info` lists it.
        #[arg(long)]
        adapter: Option<String>,
        /// Override parameters as in `run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Run a network at every point of a parameter grid and every seed, in parallel, and
    /// write one result per point plus an index table.
    #[command(
        after_help = "Writes DIR/<point>.h5 (with its report, nodes and edges files) per run and the index\ntable DIR/index.csv and DIR/index.h5: point, file, seed, each swept value, steps, quanta\nreleased; per population spikes, mean rate, CV of ISI and silent fraction; per projection\nevents, mean quanta and failure rate, and with record.releases the first spikes' mean\nquanta and the paired-pulse ratio. Draw a column with quantal plot DIR --what sweep.\n\nExamples:\n  quantal sweep networks/paired_pulse.toml --set-grid environment.ca_o_mm=0.5,1,2,4 --seeds 1..5 -o pp\n  quantal sweep networks/coba.toml --set-grid projections.ee.p=0.01,0.02 --duration-ms 500 -o coba_p"
    )]
    Sweep {
        /// Network file (TOML).
        network: PathBuf,
        /// A swept parameter and its values, KEY=V1,V2,... (repeatable: the grid is the
        /// product of all).
        #[arg(long = "set-grid", value_name = "KEY=V1,V2,...")]
        set_grid: Vec<String>,
        /// Seeds: A..B (inclusive) or a comma list (default: the file's seed).
        #[arg(long)]
        seeds: Option<String>,
        /// Fixed overrides as in `run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Duration in ms (overrides simulation.duration_ms).
        #[arg(long = "duration-ms")]
        duration_ms: Option<f64>,
        /// CPU threads per run (default: the cores divided among the runs going at once).
        #[arg(long, value_parser = threads_arg)]
        threads: Option<usize>,
        /// Runs at a time (default: the cores available).
        #[arg(long)]
        jobs: Option<usize>,
        /// Output directory (created; existing results are replaced only with --force).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace existing results.
        #[arg(long)]
        force: bool,
    },
    /// Draw a figure of a run's results (SVG or PNG): raster, population rates, traces,
    /// release histograms, or a sweep's summary against a swept parameter.
    #[command(
        after_help = "Examples:\n  quantal plot coba.h5 --what raster -o raster.png\n  quantal plot coba.h5 --what rates --bin-ms 5 -o rates.svg\n  quantal plot single_synapse.h5 --what traces --variable v_mv -o epsp.svg\n  quantal plot single_synapse.h5 --what release -o release.svg\n  quantal plot dr/ --what sweep --x environment.ca_o_mm --y syn_mean_quanta --log -o dr.png"
    )]
    Plot {
        /// The run's main output file (RUN.h5); for --what sweep, the sweep's directory
        /// or its index.csv.
        result: PathBuf,
        /// What to draw.
        #[arg(long, value_enum, default_value_t = PlotArg::Raster)]
        what: PlotArg,
        /// Recorded variable for traces (its report file RUN.<variable>.h5).
        #[arg(long)]
        variable: Option<String>,
        /// Element columns to draw for traces (default: the first five).
        #[arg(long, value_delimiter = ',')]
        ids: Vec<u64>,
        /// Bin width for rates, ms.
        #[arg(long = "bin-ms", default_value_t = 5.0)]
        bin_ms: f64,
        /// Sweep: the index column on the x axis (a swept key).
        #[arg(long)]
        x: Option<String>,
        /// Sweep: the index column on the y axis (e.g. <projection>_mean_quanta,
        /// <projection>_ppr, <population>_rate_hz).
        #[arg(long)]
        y: Option<String>,
        /// Sweep: log10 on both axes, with the least-squares slope in the legend.
        #[arg(long)]
        log: bool,
        /// Output figure: .svg, or .png (rasterised with the system's fonts).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print the version and the GPU adapters wgpu can see (or why none).
    #[command(after_help = "Example:\n  quantal info")]
    Info,
    /// Print the adapter `--backend auto` would take, as one line: `hardware` or
    /// `software`, a tab and its name, or `none`, a tab and why. `run` and `bench` ask
    /// this of a child process, so that a run that ends on the CPU does not load the
    /// GPU drivers (tens of MiB of resident memory).
    #[command(hide = true)]
    ProbeAdapter,
}
