//! The `quantal` command line: `run`, `check`, `info`.

mod cli;

use anyhow::{Context, Result};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cli::{Cli, Command};
use quantal::netfile;
use quantal::network;
use quantal::record::hdf5::Hdf5Recorder;
use quantal::sim::{BackendKind, Simulation};

/// println! that ignores a closed stdout (e.g. `quantal check x | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// eprintln! that ignores a closed stderr (`quantal run ... 2>&1 | head -1`): the run goes
/// on and finishes its file instead of panicking.
macro_rules! note {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

fn main() -> ExitCode {
    // Mesa's device-select layer prints XDG_RUNTIME_DIR noise on every Vulkan instance
    // without a display; it selects nothing a compute program needs.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: set before any thread is started.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            note!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            network,
            output,
            force,
            backend,
            adapter,
            threads,
            seed,
            duration_ms,
            set,
            quiet,
        } => run(
            network,
            RunOpts {
                output,
                force,
                kind: backend.kind(adapter),
                threads,
                seed,
                duration_ms,
                set,
                quiet,
            },
        ),
        Command::Check { network, set } => check(network, set),
        Command::Bench {
            network,
            steps,
            warmup,
            backend,
            adapter,
            threads,
            set,
            json,
        } => bench(
            network,
            steps,
            warmup,
            backend.kind(adapter),
            threads,
            set,
            json,
        ),
        Command::Validate {
            network,
            duration_ms,
            steps_per_kernel_check,
            tolerance_ulp,
            statistics,
            adapter,
            set,
        } => validate(
            network,
            duration_ms,
            steps_per_kernel_check,
            tolerance_ulp,
            statistics,
            adapter,
            set,
        ),
        Command::Sweep {
            network,
            set_grid,
            seeds,
            set,
            duration_ms,
            threads,
            jobs,
            output,
            force,
        } => sweep(
            network,
            set_grid,
            seeds,
            set,
            duration_ms,
            threads,
            jobs,
            output,
            force,
        ),
        Command::Plot {
            result,
            what,
            variable,
            ids,
            bin_ms,
            x,
            y,
            log,
            output,
        } => {
            let png = match output.extension().and_then(|e| e.to_str()) {
                Some("svg") => false,
                Some("png") => true,
                _ => anyhow::bail!("{}: name the figure .svg or .png", output.display()),
            };
            anyhow::ensure!(bin_ms > 0.0, "--bin-ms must be positive");
            let draw = |w| quantal::plot::plot(&result, w, variable.as_deref(), &ids, bin_ms);
            let fig = match what {
                cli::PlotArg::Raster => draw(quantal::plot::What::Raster),
                cli::PlotArg::Rates => draw(quantal::plot::What::Rates),
                cli::PlotArg::Traces => draw(quantal::plot::What::Traces),
                cli::PlotArg::Release => draw(quantal::plot::What::Release),
                cli::PlotArg::Sweep => {
                    let (Some(x), Some(y)) = (&x, &y) else {
                        anyhow::bail!("--what sweep needs --x COLUMN and --y COLUMN (the columns of the sweep's index.csv)");
                    };
                    quantal::plot::plot_sweep(&result, x, y, log)
                }
            }
            .with_context(|| format!("plotting {}", result.display()))?;
            if png {
                let bytes = quantal::plot::to_png(&fig.svg)?;
                std::fs::write(&output, bytes)
            } else {
                std::fs::write(&output, &fig.svg)
            }
            .with_context(|| format!("writing {}", output.display()))?;
            say!("wrote {} ({} marks)", output.display(), fig.marks);
            Ok(ExitCode::SUCCESS)
        }
        Command::Info => info(),
        Command::ProbeAdapter => probe_adapter(),
    }
}

/// "1 synapse", "2 synapses".
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The real-time factor as simulators print it: simulated time over wall time, three
/// significant digits ("0.0632 × real time", "189 × real time").
fn realtime(f: f64) -> String {
    if !f.is_finite() {
        return "faster than the clock can measure".into();
    }
    let digits = (2 - f.abs().max(1e-12).log10().floor() as i32).max(0) as usize;
    format!("{f:.digits$} × real time")
}

/// Loads a network file with its overrides and prints its located warnings.
fn load(path: &std::path::Path, set: &[String]) -> Result<netfile::LoadedNetwork> {
    // The library's errors name the file (and line, column and field) already.
    let loaded = netfile::load(path, set)?;
    for w in &loaded.warnings {
        note!("warning: {w}");
    }
    Ok(loaded)
}

fn gib(b: f64) -> String {
    network::bytes_text(b)
}

/// The options of `quantal run`.
struct RunOpts {
    output: Option<std::path::PathBuf>,
    force: bool,
    kind: BackendKind,
    threads: Option<usize>,
    seed: Option<u64>,
    duration_ms: Option<f64>,
    set: Vec<String>,
    quiet: bool,
}

fn run(path: std::path::PathBuf, opts: RunOpts) -> Result<ExitCode> {
    let RunOpts {
        output,
        force,
        kind,
        threads,
        seed,
        duration_ms,
        mut set,
        quiet,
    } = opts;
    if let Some(s) = seed {
        // Quoted: TOML integers stop at 2^63 - 1, the seed is any u64.
        set.push(format!("simulation.seed=\"{s}\""));
    }
    if let Some(d) = duration_ms {
        set.push(format!("simulation.duration_ms={d:?}"));
    }
    let loaded = load(&path, &set)?;
    let out = output.unwrap_or_else(|| {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "quantal".into());
        std::path::PathBuf::from(format!("{stem}.h5"))
    });
    let variables: Vec<&str> = loaded
        .file
        .record
        .neurons
        .iter()
        .flat_map(|r| r.variables.iter())
        .chain(
            loaded
                .file
                .record
                .synapses
                .iter()
                .flat_map(|r| r.variables.iter()),
        )
        .map(|v| v.as_str())
        .collect();
    check_output(&path, &out, &variables, force)?;
    let network_choice = loaded.file.record.network;
    let (kind, auto_note) = resolve_auto(kind);
    let mut sim = Simulation::with_threads(loaded, kind, threads)
        .with_context(|| format!("building network {}", path.display()))?;
    if let Some(n) = auto_note {
        sim.backend_note = n;
    }
    // Written by default up to 2 million synapses (about 60 bytes each on disk).
    let write_net = network_choice.unwrap_or(sim.net.n_synapses() <= 2_000_000);
    if write_net {
        // The network is part of the result: SONATA nodes and edges beside it.
        let (nodes, edges) = (
            quantal::record::hdf5::report_path(&out, "nodes"),
            quantal::record::hdf5::report_path(&out, "edges"),
        );
        quantal::record::sonata_net::write_network(&sim.model, &sim.net, &nodes, &edges)
            .with_context(|| format!("writing the network beside {}", out.display()))?;
    }
    let n_syn = sim.net.n_synapses();
    let steps = sim.model.n_steps;
    if !quiet {
        let why = if sim.backend_note.is_empty() {
            String::new()
        } else {
            format!(" ({})", sim.backend_note)
        };
        note!(
            "quantal {}: {}, {}, {} steps of {} ms; backend {}{} on {}",
            quantal::VERSION,
            count(sim.net.n_neurons() as u64, "neuron"),
            count(n_syn as u64, "synapse"),
            steps,
            sim.model.dt_ms,
            sim.backend.name(),
            why,
            sim.backend.device()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // Ctrl-C, SIGTERM and SIGHUP (batch-system kills) end the run cleanly after the
        // current step; the output is flushed and finished.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed));
    }
    let mut rec = Hdf5Recorder::new(&out);
    let terminal = std::io::stderr().is_terminal();
    let bar = if !quiet && terminal {
        let b = indicatif::ProgressBar::new(steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} steps  {elapsed_precise} elapsed, {eta} left",
            )
            .expect("static template"),
        );
        Some(b)
    } else {
        None
    };
    let mut last_line = 0u32;
    let mut progress = |done: u32, total: u32| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        } else if !quiet && (done as u64 * 10 / total.max(1) as u64) > last_line as u64 {
            last_line = (done as u64 * 10 / total.max(1) as u64) as u32;
            note!(
                "progress: {done}/{total} steps ({}%)",
                done as u64 * 100 / total.max(1) as u64
            );
        }
    };
    let result = sim.run(&mut rec, &mut progress, &stop);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = match result {
        Ok(s) => s,
        Err(quantal::Error::Interrupted { step }) => {
            note!(
                "interrupted at step {step}; {} holds everything up to the last flush",
                out.display()
            );
            return Ok(ExitCode::from(130));
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("running {} (output {})", path.display(), out.display()))
        }
    };
    let secs = summary.simulated_ms / 1000.0;
    if quiet {
        // -q: nothing on success.
        return Ok(ExitCode::SUCCESS);
    }
    say!("wrote {}", out.display());
    say!(
        "simulated {:.1} ms in {:.2} s wall ({}), backend {}",
        summary.simulated_ms,
        summary.wall_s,
        realtime(summary.realtime_factor()),
        sim.backend.name()
    );
    say!("quanta released: {:.0}", summary.quanta);
    say!("  population               spikes   mean rate   CV of ISI   silent");
    for ((name, count, size), (cv, silent)) in summary.spikes.iter().zip(&summary.irregularity) {
        let rate = if secs > 0.0 {
            *count as f64 / *size as f64 / secs
        } else {
            0.0
        };
        let cv = cv.map(|c| format!("{c:.3}")).unwrap_or_else(|| "-".into());
        say!(
            "  {name:<20} {count:>10} {rate:>9.3} Hz {cv:>11} {:>7.1} % of {size}",
            100.0 * *silent as f64 / *size as f64
        );
    }
    if !summary.evoked.is_empty() {
        say!("  projection          spike arrivals   quanta per arrival   failures");
        for (name, events, quanta, failures) in &summary.evoked {
            if *events == 0 {
                say!("  {name:<20} {events:>12}                    -          -");
            } else {
                say!(
                    "  {name:<20} {events:>12} {:>20.3} {:>8.1} %",
                    quanta / *events as f64,
                    100.0 * *failures as f64 / *events as f64
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(path: std::path::PathBuf, set: Vec<String>) -> Result<ExitCode> {
    // This process's own resident memory (code, libraries, allocator) before a network
    // is held: what a run of the same binary starts from.
    let program = current_rss_bytes().unwrap_or(0) as f64;
    let loaded = load(&path, &set)?;
    let est = network::estimate(&loaded.file);
    let model = quantal::model::Model::from_spec(&loaded.file);
    let net = network::build(&loaded, &model)
        .with_context(|| format!("building network {}", path.display()))?;
    say!("{}: valid", path.display());
    if let Some(d) = &loaded.file.description {
        say!("  {}", d.lines().next().unwrap_or(""));
    }
    say!(
        "steps: {} of {} ms ({} ms)",
        model.n_steps,
        model.dt_ms,
        model.n_steps as f64 * model.dt_ms
    );
    say!("neurons: {}", net.n_neurons());
    for p in &model.pops {
        say!("  {:<20} {:>9} {:?}", p.name, p.size, p.model);
    }
    say!("synapses: {}", net.n_synapses());
    for p in &net.projections {
        say!(
            "  {:<20} {:>9} ({} -> {}, {})",
            p.name,
            p.n_synapses,
            model.pops[p.source].name,
            model.pops[p.target].name,
            model.syn_types[p.syn_type].name
        );
    }
    say!("longest delay: {} steps", net.max_delay);
    let exact = net.n_neurons() as f64
        * (network::BYTES_PER_NEURON
            + network::BYTES_PER_NEURON_RECEPTOR * model.receptors.len() as u64) as f64
        + net.n_synapses() as f64 * est.bytes_per_synapse as f64;
    say!(
        "memory: cpu backend {} of state ({} B per synapse) and {} of recording buffers; expected peak resident memory of a run {} (with {} of program and {} of run-time lists and code; {} while building; estimated from the file before building: {})",
        gib(exact),
        est.bytes_per_synapse,
        gib(est.record_bytes),
        gib(program
            + exact.max(est.build_bytes)
            + est.record_bytes
            + network::RUN_BUFFER_BYTES as f64),
        gib(program),
        gib(network::RUN_BUFFER_BYTES as f64),
        gib(est.build_bytes),
        gib(est.peak_bytes)
    );
    if quantal::model::SynapseArrays::of(&model).any_cleft {
        // The one-receptor kinetic form keeps its pool one array per field (syn, cleft,
        // r, entry, ḡ·w: 20 B, twice; the counts of quanta apart, for the slots that
        // released) beside the state's records (written once per batch); the other forms
        // keep the records twice.
        let record =
            std::mem::size_of::<quantal::state::Slot>() + 4 * model.receptor_state_stride();
        let per_active = if quantal::backend::cpu::cleft::one_form(&model) {
            2 * 20 + record
        } else {
            2 * record
        };
        say!(
            "        plus {} B per synapse active at once (its cleft and receptor record in the active pool and in the pool cleft writes the next step to), which depends on the activity and is not in the estimate above",
            per_active
        );
    }
    // A `released` report keeps each synapse's sum since the last sample on the device.
    let released_sums = loaded
        .file
        .record
        .synapses
        .iter()
        .any(|r| r.variables.iter().any(|v| v == "released"));
    let gpu_bytes = quantal::backend::gpu::image_bytes(&model, &net, released_sums);
    let syn_bytes = quantal::backend::gpu_syn::device_bytes(&model, &net, released_sums);
    // Per synapse (the state its type uses, its queues and its share of the arrival pool
    // for the spikes in flight over the longest delay), where the synapses dominate.
    let per_synapse = if net.n_synapses() >= 10_000 {
        format!(
            ", {:.1} B per synapse",
            syn_bytes as f64 / net.n_synapses() as f64
        )
    } else {
        String::new()
    };
    say!(
        "        gpu backend: about {} on the device{per_synapse} (--backend gpu)",
        gib(gpu_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn bench(
    path: std::path::PathBuf,
    steps: u32,
    warmup: u32,
    kind: BackendKind,
    threads: Option<usize>,
    set: Vec<String>,
    json: Option<std::path::PathBuf>,
) -> Result<ExitCode> {
    let loaded = load(&path, &set)?;
    let (kind, auto_note) = resolve_auto(kind);
    let t0 = std::time::Instant::now();
    let mut sim = Simulation::with_threads(loaded, kind, threads)
        .with_context(|| format!("building network {}", path.display()))?;
    if let Some(n) = auto_note {
        sim.backend_note = n;
    }
    let build_s = t0.elapsed().as_secs_f64();
    let dt = sim.model.dt_ms;
    let b = &mut sim.backend;
    // Batches as `run` hands them out (the GPU backend submits each in one go).
    let batch = quantal::sim::MAX_BATCH_STEPS;
    let mut left = warmup;
    while left > 0 {
        left -= b.advance(left.min(batch), &[], 1)?.n_steps;
    }
    b.set_profiling(true);
    let (mut events, mut quanta, mut spikes) = (0u64, 0f64, 0u64);
    let traffic0 = b.traffic();
    let active0 = b.active_synapse_steps();
    let t1 = std::time::Instant::now();
    let mut left = steps;
    while left > 0 {
        let r = b.advance(left.min(batch), &[], 1)?;
        events += r.events;
        quanta += r.quanta;
        spikes += r.spike_ids.len() as u64;
        left -= r.n_steps;
    }
    let wall = t1.elapsed().as_secs_f64().max(1e-12);
    say!(
        "{} on backend {} ({})",
        path.display(),
        b.name(),
        b.device()
    );
    say!(
        "  {}, {}; build {:.3} s",
        count(sim.net.n_neurons() as u64, "neuron"),
        count(sim.net.n_synapses() as u64, "synapse"),
        build_s
    );
    say!(
        "  {steps} steps after {warmup} warm-up: {:.3} s wall, {:.1} steps/s, {}",
        wall,
        steps as f64 / wall,
        realtime(steps as f64 * dt / 1000.0 / wall)
    );
    say!(
        "  {:.3e} synaptic events/s, {:.3e} quanta/s, {:.3e} spikes/s (mean rate {:.2} Hz)",
        events as f64 / wall,
        quanta / wall,
        spikes as f64 / wall,
        spikes as f64 / sim.net.n_neurons().max(1) as f64 / (steps as f64 * dt / 1000.0).max(1e-12)
    );
    let active = match (active0, b.active_synapse_steps()) {
        (Some(a0), Some(a1)) => Some(a1 - a0),
        _ => None,
    };
    let est = network::estimate(&sim.loaded.file);
    // The static-release record is network data (static), not state.
    let static_b = quantal::model::STATIC_BYTES_PER_SYNAPSE
        + if quantal::model::SynapseArrays::of(&sim.model).static_record {
            8
        } else {
            0
        };
    let dynamic_b = est.bytes_per_synapse - static_b;
    // The GPU advances its own image (DESIGN.md deviation: README "Backends").
    let image = b.device_image_bytes();
    let per_synapse = match image {
        Some((neurons, _)) if sim.net.n_synapses() == 0 => {
            format!("device image {} (neurons only)", gib(neurons as f64))
        }
        Some((neurons, synapses)) => format!(
            "device image {} ({} neurons, {} synapses: {:.1} B per synapse)",
            gib((neurons + synapses) as f64),
            gib(neurons as f64),
            gib(synapses as f64),
            synapses as f64 / sim.net.n_synapses().max(1) as f64
        ),
        None => format!(
            "{} B per synapse ({static_b} static, {dynamic_b} dynamic)",
            est.bytes_per_synapse
        ),
    };
    say!(
        "  {} ns per event, {:.1} ns per neuron-step{}; {per_synapse}",
        if events > 0 {
            format!("{:.0}", wall * 1e9 / events as f64)
        } else {
            "-".into()
        },
        wall * 1e9 / (sim.net.n_neurons() as f64 * steps as f64).max(1.0),
        active
            .map(|a| format!(", {:.3e} active synapse-steps/s", a as f64 / wall))
            .unwrap_or_default(),
    );
    if let (Some((s0, r0)), Some((s1, r1))) = (traffic0, b.traffic()) {
        let sim_s = (steps as f64 * dt / 1000.0).max(1e-12);
        say!(
            "  device traffic: {} submissions and {} readbacks in the timed steps ({:.1} and {:.1} per simulated second)",
            s1 - s0,
            r1 - r0,
            (s1 - s0) as f64 / sim_s,
            (r1 - r0) as f64 / sim_s
        );
    }
    let prof = b.profile();
    let total: f64 = prof.iter().map(|p| p.1).sum::<f64>().max(1e-12);
    for (k, t) in &prof {
        say!(
            "  {k:<12} {:>10.3} ms  {:>5.1} %  {:>9.2} µs/step",
            t * 1e3,
            100.0 * t / total,
            t * 1e6 / steps.max(1) as f64
        );
    }
    let peak_rss = peak_rss_bytes();
    if let Some(p) = peak_rss {
        say!("  peak memory (RSS) {}", gib(p as f64));
    }
    if let Some(out) = json {
        let neuron_steps = sim.net.n_neurons() as f64 * steps as f64;
        let (subs, reads) = match (traffic0, b.traffic()) {
            (Some((s0, r0)), Some((s1, r1))) => ((s1 - s0).to_string(), (r1 - r0).to_string()),
            _ => ("null".into(), "null".into()),
        };
        let kernels: Vec<String> = prof
            .iter()
            .map(|(k, t)| format!("\"{k}\": {t:e}"))
            .collect();
        let text = format!(
            "{{\n  \"network\": {:?},\n  \"backend\": {:?},\n  \"device\": {:?},\n  \"neurons\": {},\n  \"synapses\": {},\n  \"build_s\": {build_s:e},\n  \"steps\": {steps},\n  \"warmup\": {warmup},\n  \"dt_ms\": {dt},\n  \"wall_s\": {wall:e},\n  \"steps_per_s\": {:e},\n  \"realtime_factor\": {:e},\n  \"events\": {events},\n  \"ns_per_event\": {},\n  \"ns_per_neuron_step\": {:e},\n  \"quanta\": {quanta:e},\n  \"spikes\": {spikes},\n  \"submissions\": {subs},\n  \"readbacks\": {reads},\n  \"peak_rss_bytes\": {},\n  \"active_synapse_steps\": {},\n  \"bytes_per_synapse_static\": {static_b},\n  \"bytes_per_synapse_dynamic\": {dynamic_b},\n  \"device_image_bytes\": {},\n  \"kernel_s\": {{{}}}\n}}\n",
            path.display().to_string(),
            b.name(),
            b.device(),
            sim.net.n_neurons(),
            sim.net.n_synapses(),
            steps as f64 / wall,
            steps as f64 * dt / 1000.0 / wall,
            if events > 0 { format!("{:e}", wall * 1e9 / events as f64) } else { "null".into() },
            wall * 1e9 / neuron_steps.max(1.0),
            peak_rss.map(|p| p.to_string()).unwrap_or_else(|| "null".into()),
            active.map(|a| a.to_string()).unwrap_or_else(|| "null".into()),
            image
                .map(|(n, s)| format!("{{\"neurons\": {n}, \"synapses\": {s}}}"))
                .unwrap_or_else(|| "null".into()),
            kernels.join(", ")
        );
        std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
        say!("  figures written to {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A memory field of this process's /proc/self/status (e.g. "VmRSS:"), bytes (Linux).
fn status_bytes(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resident memory of this process now (Linux VmRSS), bytes.
fn current_rss_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// Peak resident memory of this process (Linux VmHWM), bytes.
fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// Refuses an output that would destroy the input or an existing file (without
/// `--force`), or that cannot be written, before the network is built.
fn check_output(
    input: &std::path::Path,
    out: &std::path::Path,
    variables: &[&str],
    force: bool,
) -> Result<()> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(out)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        anyhow::bail!(
            "output {} is the network file itself; choose another -o",
            out.display()
        );
    }
    if out.is_dir() {
        anyhow::bail!("output {} is a directory; give a file name", out.display());
    }
    // The run's files: the main one and one SONATA report per recorded variable.
    let files = [out.to_path_buf()]
        .into_iter()
        .chain(["nodes", "edges"].map(|k| quantal::record::hdf5::report_path(out, k)))
        .chain(
            variables
                .iter()
                .map(|v| quantal::record::hdf5::report_path(out, v)),
        );
    for f in files {
        if f.exists() && !force {
            anyhow::bail!(
                "output {} exists; pass --force to replace it (it is replaced only when the new run ends)",
                f.display()
            );
        }
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "output directory {} does not exist (output {})",
            dir.display(),
            out.display()
        );
    }
    let probe = quantal::record::hdf5::partial_path(out);
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "output directory {} is not writable (output {})",
                dir.display(),
                out.display()
            )
        })?;
    Ok(())
}

fn validate(
    path: std::path::PathBuf,
    duration_ms: Option<f64>,
    check_every: u32,
    tolerance_ulp: u64,
    statistics: bool,
    adapter: Option<String>,
    mut set: Vec<String>,
) -> Result<ExitCode> {
    if let Some(d) = duration_ms {
        set.push(format!("simulation.duration_ms={d:?}"));
    }
    let loaded = load(&path, &set)?;
    let model = Arc::new(quantal::model::Model::from_spec(&loaded.file));
    let net = Arc::new(
        network::build(&loaded, &model)
            .with_context(|| format!("building network {}", path.display()))?,
    );
    let ctx = quantal::gpu::GpuContext::new(adapter.as_deref())?;
    let steps = model.n_steps;
    let r = quantal::validate::validate(ctx, Arc::clone(&model), net, steps, check_every)?;
    say!(
        "{}: CPU reference vs GPU {} over {} steps",
        path.display(),
        r.adapter,
        r.steps
    );
    say!(
        "one step from identical state, at {} (every {check_every}):",
        count(r.kernel_checks.len() as u64, "step")
    );
    let show = |b: &quantal::validate::BufferDiff| {
        let unit = if b.buffer.starts_with("u32 ") {
            ""
        } else {
            " ULP"
        };
        match &b.worst {
            None if b.values == 0 => {
                say!("  {:<12} {:<30} empty on both backends", b.kernel, b.buffer)
            }
            None => say!(
                "  {:<12} {:<30} identical ({})",
                b.kernel,
                b.buffer,
                count(b.values as u64, "value")
            ),
            Some((i, c, g)) => say!(
                "  {:<12} {:<30} max {}{unit} at element {i} (CPU {c}, GPU {g})",
                b.kernel,
                b.buffer,
                b.max_diff
            ),
        }
    };
    r.buffers.iter().for_each(show);
    match r.first_spike_difference {
        None => say!("whole run: identical spike trains over {} steps", r.steps),
        Some(k) => say!(
            "whole run: spikes first differ at step {k} ({:.1} ms)",
            k as f64 * model.dt_ms
        ),
    }
    say!("state at the end of the run:");
    r.final_buffers.iter().for_each(show);
    say!("population               rate CPU    rate GPU    CV CPU   CV GPU");
    let mut stats_ok = true;
    for (name, rc, rg, cc, cg) in &r.stats {
        say!("  {name:<20} {rc:>9.3} Hz {rg:>9.3} Hz {cc:>8.4} {cg:>8.4}");
        let close = |a: f64, b: f64| {
            (a.is_nan() && b.is_nan()) || (a - b).abs() <= 0.05 * a.abs().max(b.abs()) + 1e-9
        };
        stats_ok &= close(*rc, *rg) && close(*cc, *cg);
    }
    let ok = if statistics {
        stats_ok
            && r.buffers.iter().all(|b| {
                b.max_diff
                    <= if b.buffer.starts_with("u32 ") {
                        0
                    } else {
                        tolerance_ulp
                    }
            })
    } else {
        r.passes(tolerance_ulp)
    };
    say!(
        "{}",
        if ok {
            "PASS: the GPU agrees with the CPU reference"
        } else {
            "FAIL: the GPU differs from the CPU reference (see above)"
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The seeds of `--seeds`: "A..B" (inclusive) or "a,b,c".
fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    if let Some((a, b)) = s.split_once("..") {
        let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
        anyhow::ensure!(
            a <= b && b - a < 100_000,
            "--seeds {s}: give A..B with A <= B"
        );
        return Ok((a..=b).collect());
    }
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<u64>()
                .with_context(|| format!("--seeds {s}: `{x}` is not a seed"))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn sweep(
    path: std::path::PathBuf,
    set_grid: Vec<String>,
    seeds: Option<String>,
    set: Vec<String>,
    duration_ms: Option<f64>,
    threads: Option<usize>,
    jobs: Option<usize>,
    out_dir: std::path::PathBuf,
    force: bool,
) -> Result<ExitCode> {
    // The grid: the product of every --set-grid list.
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    for g in &set_grid {
        let (k, vs) = g
            .split_once('=')
            .with_context(|| format!("--set-grid {g}: expected KEY=V1,V2,..."))?;
        let vs: Vec<String> = vs.split(',').map(|v| v.trim().to_string()).collect();
        anyhow::ensure!(
            vs.iter().all(|v| !v.is_empty()),
            "--set-grid {g}: an empty value"
        );
        axes.push((k.trim().to_string(), vs));
    }
    let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, vs) in &axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                vs.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((k.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    let seeds: Vec<Option<u64>> = match &seeds {
        Some(s) => parse_seeds(s)?.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let mut runs = Vec::new();
    for p in &points {
        for s in &seeds {
            runs.push((p.clone(), *s));
        }
    }
    // Every point must load before anything runs: errors name the point.
    let mut loaded = Vec::new();
    for (k, (p, seed)) in runs.iter().enumerate() {
        let mut ov = set.clone();
        ov.extend(p.iter().map(|(key, v)| format!("{key}={v}")));
        if let Some(d) = duration_ms {
            ov.push(format!("simulation.duration_ms={d:?}"));
        }
        if let Some(s) = seed {
            ov.push(format!("simulation.seed=\"{s}\""));
        }
        let l = netfile::load(&path, &ov)
            .with_context(|| format!("sweep point {k} ({})", ov.join(" ")))?;
        loaded.push(l);
    }
    if out_dir.exists() && !out_dir.is_dir() {
        anyhow::bail!("{} exists and is not a directory", out_dir.display());
    }
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let index = out_dir.join("index.csv");
    if index.exists() && !force {
        anyhow::bail!(
            "{} holds a sweep; pass --force to replace it",
            out_dir.display()
        );
    }
    let jobs = jobs.unwrap_or_else(quantal::backend::cpu::cores).max(1);
    note!(
        "sweep: {} points x {} seeds = {} runs, {jobs} at a time, into {}",
        points.len(),
        seeds.len(),
        runs.len(),
        out_dir.display()
    );
    // Threads per run: the cores left to each of the runs going at once.
    let cores = quantal::backend::cpu::cores();
    let per_run = threads.unwrap_or_else(|| (cores / jobs.min(runs.len()).max(1)).max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<Result<quantal::record::Summary, String>>>> =
        std::sync::Mutex::new(vec![None; runs.len()]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(runs.len()) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= runs.len() {
                    break;
                }
                let out = out_dir.join(format!("point_{k:04}.h5"));
                let r = (|| -> Result<quantal::record::Summary, quantal::Error> {
                    let mut sim = Simulation::with_threads(
                        loaded[k].clone(),
                        BackendKind::Cpu,
                        Some(per_run),
                    )?;
                    let mut rec = Hdf5Recorder::new(&out);
                    sim.run(&mut rec, &mut |_, _| {}, &stop)
                })();
                results.lock().expect("no panics")[k] = Some(r.map_err(|e| e.to_string()));
            });
        }
    });
    let results = results.into_inner().expect("no panics");
    // The index table: one row per run, written as CSV and as HDF5 (one dataset per
    // column), the same fields in both.
    let first = results.iter().flatten().find_map(|r| r.as_ref().ok());
    let pops: Vec<String> = first
        .map(|s| s.spikes.iter().map(|p| p.0.clone()).collect())
        .unwrap_or_default();
    let projs: Vec<String> = first
        .map(|s| s.evoked.iter().map(|p| p.0.clone()).collect())
        .unwrap_or_default();
    let recorded: Vec<String> = loaded
        .first()
        .and_then(|l| l.file.record.releases.clone())
        .unwrap_or_default();
    let mut header: Vec<String> = ["point", "file", "seed"].map(String::from).to_vec();
    header.extend(axes.iter().map(|(k, _)| k.clone()));
    header.extend(["steps", "quanta"].map(String::from));
    for p in &pops {
        for c in ["spikes", "rate_hz", "cv_isi", "silent_fraction"] {
            header.push(format!("{p}_{c}"));
        }
    }
    for p in &projs {
        for c in ["events", "mean_quanta", "failure_rate"] {
            header.push(format!("{p}_{c}"));
        }
        if recorded.contains(p) {
            header.push(format!("{p}_first_mean_quanta"));
            header.push(format!("{p}_ppr"));
        }
    }
    header.push("error".into());
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut failed = 0;
    for (k, ((p, _), r)) in runs.iter().zip(&results).enumerate() {
        let file = format!("point_{k:04}.h5");
        let mut row = vec![
            k.to_string(),
            file.clone(),
            loaded[k].file.simulation.seed.to_string(),
        ];
        row.extend(p.iter().map(|(_, v)| v.clone()));
        match r {
            Some(Ok(s)) => {
                let secs = (s.simulated_ms / 1000.0).max(1e-12);
                row.push(s.steps.to_string());
                row.push(s.quanta.to_string());
                for (i, (_, n, size)) in s.spikes.iter().enumerate() {
                    let (cv, silent) = s.irregularity.get(i).copied().unwrap_or((None, 0));
                    row.push(n.to_string());
                    row.push((*n as f64 / *size as f64 / secs).to_string());
                    row.push(cv.map(|c| c.to_string()).unwrap_or_default());
                    row.push((silent as f64 / (*size).max(1) as f64).to_string());
                }
                for (name, events, quanta, failures) in &s.evoked {
                    let per = |x: f64| {
                        if *events > 0 {
                            (x / *events as f64).to_string()
                        } else {
                            String::new()
                        }
                    };
                    row.push(events.to_string());
                    row.push(per(*quanta));
                    row.push(per(*failures as f64));
                    if recorded.contains(name) {
                        let (first, ppr) = paired_pulse(&out_dir.join(&file), name);
                        let text = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
                        row.push(text(first));
                        row.push(text(ppr));
                    }
                }
                row.push(String::new());
            }
            other => {
                failed += 1;
                let e = match other {
                    Some(Err(e)) => e.clone(),
                    _ => "not run".to_string(),
                };
                row.resize(header.len() - 1, String::new());
                row.push(e);
            }
        }
        rows.push(row);
    }
    let mut csv = header.join(",");
    csv.push('\n');
    for row in &rows {
        let fields: Vec<String> = row
            .iter()
            .map(|f| {
                if f.contains(',') || f.contains('"') {
                    format!("\"{}\"", f.replace('"', "'"))
                } else {
                    f.clone()
                }
            })
            .collect();
        csv.push_str(&fields.join(","));
        csv.push('\n');
    }
    std::fs::write(&index, csv).with_context(|| format!("writing {}", index.display()))?;
    let index_h5 = out_dir.join("index.h5");
    quantal::record::hdf5::write_table(&index_h5, &header, &rows, &path.display().to_string())?;
    say!(
        "wrote {} runs, {} and {}",
        runs.len() - failed,
        index.display(),
        index_h5.display()
    );
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} runs failed; see the error column of {}",
            runs.len(),
            index.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// From the per-event release record of projection `proj` in the run `file`: the mean
/// quanta of each synapse's first evoked event (over the synapses with one), and the
/// paired-pulse ratio, the quanta of the second evoked events over those of the first,
/// summed over the synapses with at least two (None where not defined).
fn paired_pulse(file: &std::path::Path, proj: &str) -> (Option<f64>, Option<f64>) {
    let read = || -> Option<(Vec<u64>, Vec<f32>, Vec<u8>)> {
        let f = hdf5::File::open(file).ok()?;
        let g = f.group(&format!("releases/{proj}")).ok()?;
        Some((
            g.dataset("synapse_ids").ok()?.read_raw::<u64>().ok()?,
            g.dataset("quanta").ok()?.read_raw::<f32>().ok()?,
            g.dataset("kind").ok()?.read_raw::<u8>().ok()?,
        ))
    };
    let Some((ids, q, kind)) = read() else {
        return (None, None);
    };
    // Per synapse: evoked events seen so far, quanta of the first and of the second.
    let mut seen: std::collections::HashMap<u64, (u32, f64, f64)> = Default::default();
    for ((&s, &x), &k) in ids.iter().zip(&q).zip(&kind) {
        if k != 0 {
            continue;
        }
        let e = seen.entry(s).or_insert((0, 0.0, 0.0));
        match e.0 {
            0 => e.1 = x as f64,
            1 => e.2 = x as f64,
            _ => {}
        }
        e.0 += 1;
    }
    let first_mean =
        (!seen.is_empty()).then(|| seen.values().map(|e| e.1).sum::<f64>() / seen.len() as f64);
    let (mut first, mut second) = (0.0, 0.0);
    for (n, a, b) in seen.values() {
        if *n >= 2 {
            first += a;
            second += b;
        }
    }
    (first_mean, (first > 0.0).then(|| second / first))
}

/// `quantal probe-adapter`: the adapter `--backend auto` would take ([`resolve_auto`]).
fn probe_adapter() -> Result<ExitCode> {
    match quantal::gpu::best_adapter() {
        Ok((name, true)) => println!("software\t{name}"),
        Ok((name, false)) => println!("hardware\t{name}"),
        Err(e) => println!("none\t{}", e.to_string().replace(['\n', '\t'], " ")),
    }
    Ok(ExitCode::SUCCESS)
}

/// `--backend auto` without `--adapter`, so that a run that ends on the CPU never loads
/// the GPU drivers (wgpu's enumeration of lavapipe alone adds about 80 MiB of resident
/// memory, which `quantal check` does not predict): on Linux without a GPU device node
/// ([`gpu_device_nodes`]) the CPU backend (unless `QUANTAL_PROBE_ADAPTERS=1`); else a
/// child process (`quantal probe-adapter`) says which adapter the GPU backend would take. A hardware adapter
/// leaves the choice to the library (which opens it here); a software renderer, no
/// adapter, or a probe that fails gives the CPU backend, with the note that says why.
fn resolve_auto(kind: BackendKind) -> (BackendKind, Option<String>) {
    if !matches!(kind, BackendKind::Auto { adapter: None }) {
        return (kind, None);
    }
    let cpu = |why: String| (BackendKind::Cpu, Some(format!("auto: CPU, because {why}")));
    // QUANTAL_PROBE_ADAPTERS=1 asks the probe even so (a GPU reached without a device
    // node; the tests of the probe on machines without a GPU).
    let always = std::env::var_os("QUANTAL_PROBE_ADAPTERS").is_some_and(|v| v == "1");
    if !always && !gpu_device_nodes() {
        return cpu(
            "this machine has no GPU device (/dev/dri/renderD*, /dev/nvidia*, /dev/dxg); \
             --backend gpu runs on a software renderer such as lavapipe"
                .into(),
        );
    }
    match probe_child(PROBE_TIMEOUT) {
        Ok(Some(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            match text.trim_end().split_once('\t') {
                Some(("hardware", _)) => (kind, None),
                Some(("software", name)) => (
                    BackendKind::Cpu,
                    Some(quantal::sim::software_renderer_note(name)),
                ),
                Some(("none", why)) => cpu(why.to_string()),
                _ => cpu(format!("the adapter probe answered `{}`", text.trim())),
            }
        }
        Ok(Some(out)) => cpu(format!(
            "the adapter probe (a child process) ended with {}",
            out.status
        )),
        Ok(None) => cpu(format!(
            "the adapter probe (a child process) had not answered after {} s (a GPU driver \
             that hangs?)",
            PROBE_TIMEOUT.as_secs()
        )),
        Err(e) => cpu(format!(
            "the adapter probe (a child process) could not run: {e}"
        )),
    }
}

/// How long `--backend auto` waits for its adapter probe (loading the drivers takes a
/// fraction of a second).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `quantal probe-adapter` in a child process and returns its output, or `None`
/// (the child killed) when it has not ended within `timeout`.
fn probe_child(timeout: std::time::Duration) -> std::io::Result<Option<std::process::Output>> {
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("probe-adapter")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let t0 = std::time::Instant::now();
    // The answer is one short line: the pipe never fills, so waiting cannot block it.
    while child.try_wait()?.is_none() {
        if t0.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.wait_with_output().map(Some)
}

/// Whether the machine may have a GPU that Vulkan, GL or D3D12 drivers drive: on Linux,
/// a DRM render node (`/dev/dri/renderD*`: AMD, Intel, Mesa's drivers), an NVIDIA device
/// (`/dev/nvidia*`) or WSL's `/dev/dxg`; elsewhere always (the probe decides).
fn gpu_device_nodes() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let any_in = |dir: &str, prefix: &str| {
        std::fs::read_dir(dir).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
    };
    any_in("/dev/dri", "renderD") || any_in("/dev", "nvidia") || any_in("/dev", "dxg")
}

fn info() -> Result<ExitCode> {
    say!("quantal {}", quantal::VERSION);
    say!("backends: cpu (reference); gpu (every kernel, bit-identical to the cpu on lavapipe; auto takes a hardware GPU)");
    match quantal::gpu::list_adapters() {
        Ok(list) => {
            say!("GPU adapters seen by wgpu:");
            for a in list {
                say!(
                    "  {} [{} {}] driver: {}",
                    a.name,
                    a.backend,
                    a.device_type,
                    a.driver
                );
                say!(
                    "    max storage binding {}, max buffer {}, storage buffers/stage {}, workgroups/dim {}, invocations/workgroup {}, f32 atomics {}",
                    gib(a.max_storage_buffer_binding_size as f64),
                    gib(a.max_buffer_size as f64),
                    a.max_storage_buffers_per_shader_stage,
                    a.max_compute_workgroups_per_dimension,
                    a.max_compute_invocations_per_workgroup,
                    a.float_atomics
                );
                if let Some(m) = a.memory_bytes {
                    say!("    device-local memory {} (largest heap)", gib(m as f64));
                }
            }
        }
        Err(e) => say!("GPU adapters: none ({e})"),
    }
    Ok(ExitCode::SUCCESS)
}
