//! Range and reference checks of a parsed network file. Every error names the file,
//! line, column, field, the value and the accepted range.

use std::collections::HashSet;
use std::path::Path;

use super::*;
use crate::error::{Error, SpecError};

/// Largest number of neurons or synapses (ids are u32; u32::MAX is reserved).
pub const MAX_IDS: u64 = u32::MAX as u64 - 1;
/// Largest number of release sites per synapse (bitmask in a u32, §3.1).
pub const MAX_SITES: u32 = 32;
/// Largest number of receptors per synapse type.
pub const MAX_RECEPTORS: usize = 3;
/// Largest number of populations, of synapse types and of projections (indices stored
/// as u16).
pub const MAX_TYPES: usize = 1 << 16;
/// Largest delay in steps (stored as u16).
pub const MAX_DELAY_STEPS: u64 = u16::MAX as u64;

/// Neuron variables that can be recorded for each model (receptor conductances
/// `g_<synapse type>_<receptor kind>_ns` come in addition for lif and hh).
pub fn neuron_variables(model: NeuronModel) -> &'static [&'static str] {
    match model {
        NeuronModel::Lif => &[
            "v_mv",
            "g_rr_ns",
            "g_sfa_ns",
            "theta_mv",
            "refractory",
            "i_ext_pa",
            "g_syn_total_ns",
        ],
        NeuronModel::Hh => &["v_mv", "m", "h", "n", "i_ext_pa", "g_syn_total_ns"],
        NeuronModel::Poisson | NeuronModel::SpikeTimes => &[],
    }
}

/// Synapse variables that can be recorded (open fractions `r_<receptor kind>` and, for
/// GABA_B, `gprot_gaba_b` come in addition).
pub const SYNAPSE_VARIABLES: &[&str] = &[
    "ca_res_um",
    "x_f",
    "x_d",
    "docked",
    "reserve",
    "endosome",
    "released",
    "cleft_mm",
    "tm_u",
    "tm_x",
];

/// Builds a located spec error.
pub fn spec_error(text: &str, file: &Path, at: &SpecPath, message: String) -> Error {
    let (line, column) = at
        .offset_in(text)
        .map(|o| line_col(text, o))
        .unwrap_or((0, 0));
    Error::Spec(Box::new(SpecError {
        path: file.to_path_buf(),
        line,
        column,
        field: at.to_string(),
        message,
    }))
}

/// Largest step for Traub-Miles HH with the Rush-Larsen scheme (§6.2 validates 0.1 ms).
pub const HH_MAX_DT_MS: f64 = 0.1;

/// Located warnings for a valid file: values the model will change rather than use as
/// written. Each reads `file:line:column: field `...`: ...`.
pub fn warnings(f: &NetworkFile, text: &str, file: &Path) -> Vec<String> {
    let root = SpecPath::root();
    let dt = f.simulation.dt_ms;
    let mut out = Vec::new();
    let mut warn =
        |at: &SpecPath, msg: String| out.push(spec_error(text, file, at, msg).to_string());
    let end_ms = f.simulation.duration_ms;
    for (i, p) in f.populations.iter().enumerate() {
        let at = root.key("populations").index(i);
        if p.model == NeuronModel::Hh && dt > HH_MAX_DT_MS + 1e-12 {
            warn(
                &root.key("simulation").key("dt_ms"),
                format!("dt_ms = {dt} is coarser than the {HH_MAX_DT_MS} ms at which the HH scheme is validated (§6.2; the m gate's time constant falls below 0.1 ms at the spike peak), so the rates of population `{}` may be off; use 0.1 or less", p.name),
            );
        }
        if let Some(st) = &p.spike_times {
            let lists: Vec<&Vec<f64>> = match (&st.times_ms, &st.per_neuron_ms) {
                (Some(t), _) => vec![t],
                (None, Some(l)) => l.iter().collect(),
                _ => Vec::new(),
            };
            let late = lists
                .iter()
                .flat_map(|l| l.iter())
                .filter(|&&t| t >= end_ms)
                .count();
            if late > 0 {
                warn(
                    &at.key("spike_times"),
                    format!("{late} spike time(s) at or after the end of the run ({end_ms} ms) never fire"),
                );
            }
            let merged: usize = lists
                .iter()
                .map(|l| {
                    let mut steps: Vec<i64> = l.iter().map(|t| (t / dt).round() as i64).collect();
                    steps.sort_unstable();
                    let n = steps.len();
                    steps.dedup();
                    n - steps.len()
                })
                .sum();
            if merged > 0 {
                warn(
                    &at.key("spike_times"),
                    format!("{merged} spike time(s) fall on a step that already fires (times are rounded to dt = {dt} ms) and are dropped"),
                );
            }
        }
    }
    for (i, p) in f.projections.iter().enumerate() {
        if let Some(d) = &p.delay_ms {
            if p.conduction.is_none() && d.lower_bound() < 0.5 * dt {
                warn(
                    &root.key("projections").index(i).key("delay_ms"),
                    format!("delays below half a step ({} ms) are rounded up to one step (dt = {dt} ms): a spike needs at least one step to arrive (§7)", 0.5 * dt),
                );
            }
        }
    }
    if let Some(si) = f.record.sample_interval_ms {
        let k = (si / dt).round().max(1.0);
        if (k * dt - si).abs() > 1e-9 * si.max(dt) {
            warn(
                &root.key("record").key("sample_interval_ms"),
                format!("{si} ms is not a multiple of dt = {dt} ms; samples are taken every {k} steps ({} ms)", (k * dt * 1e9).round() / 1e9),
            );
        }
    }
    out
}

struct Check<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Check<'_> {
    fn err(&self, at: &SpecPath, message: String) -> Error {
        spec_error(self.text, self.file, at, message)
    }

    /// value must be finite and within [lo, hi] (open ends where `lo_open`/`hi_open`).
    #[expect(
        clippy::too_many_arguments,
        reason = "an interval with open/closed ends reads best inline at the ~100 call sites"
    )]
    fn range(
        &self,
        at: &SpecPath,
        v: f64,
        lo: f64,
        hi: f64,
        lo_open: bool,
        hi_open: bool,
        unit: &str,
    ) -> Result<(), Error> {
        self.range_as(at, v, (lo, hi), (lo_open, hi_open), unit, true)
    }

    /// As `range` for a value used only on the host in f64 (connection probabilities,
    /// distance scales): not judged in f32.
    #[expect(clippy::too_many_arguments, reason = "as `range`")]
    fn range_host(
        &self,
        at: &SpecPath,
        v: f64,
        lo: f64,
        hi: f64,
        lo_open: bool,
        hi_open: bool,
        unit: &str,
    ) -> Result<(), Error> {
        self.range_as(at, v, (lo, hi), (lo_open, hi_open), unit, false)
    }

    fn range_as(
        &self,
        at: &SpecPath,
        v: f64,
        (lo, hi): (f64, f64),
        (lo_open, hi_open): (bool, bool),
        unit: &str,
        kernel_f32: bool,
    ) -> Result<(), Error> {
        let ok = v.is_finite()
            && (if lo_open { v > lo } else { v >= lo })
            && (if hi_open { v < hi } else { v <= hi });
        // Judged as the kernels see it (f32): infinite, subnormal, or zero where zero is
        // excluded, is out of range even when the f64 value is inside.
        let f = v as f32;
        let f32_ok = f.is_finite()
            && (v == 0.0 || f.abs() >= f32::MIN_POSITIVE)
            && !(lo_open && lo == 0.0 && f == 0.0);
        if ok && kernel_f32 && !f32_ok {
            return Err(self.err(
                at,
                format!(
                    "value {} is {} in f32, the precision of the kernels; accepted: {}{lo}, {hi}{} {unit}",
                    short(v),
                    if f.is_infinite() { "infinite" } else if f == 0.0 { "zero" } else { "subnormal" },
                    if lo_open { "(" } else { "[" },
                    if hi_open { ")" } else { "]" }
                )
                .trim_end()
                .to_string(),
            ));
        }
        if ok {
            return Ok(());
        }
        let l = if lo_open { "(" } else { "[" };
        let h = if hi_open { ")" } else { "]" };
        let hi_s = if hi.is_infinite() {
            "inf".to_string()
        } else {
            format!("{hi}")
        };
        Err(self.err(
            at,
            format!(
                "value {} is out of range; accepted: {l}{lo}, {hi_s}{h} {unit}",
                short(v)
            )
            .trim_end()
            .to_string(),
        ))
    }

    #[expect(clippy::too_many_arguments, reason = "as `range`")]
    fn opt(
        &self,
        base: &SpecPath,
        key: &str,
        v: Option<f64>,
        lo: f64,
        hi: f64,
        lo_open: bool,
        unit: &str,
    ) -> Result<(), Error> {
        match v {
            Some(x) => self.range(&base.key(key), x, lo, hi, lo_open, false, unit),
            None => Ok(()),
        }
    }

    fn dist(&self, at: &SpecPath, d: &Dist, lo: f64, hi: f64, unit: &str) -> Result<(), Error> {
        // Every parameter is a finite number, finite in f32 too.
        let params: Vec<(&str, f64)> = match *d {
            Dist::Const(v) => vec![("", v)],
            Dist::Uniform { low, high } => vec![("low", low), ("high", high)],
            Dist::Normal { mean, sd, min, max } => {
                let mut v = vec![("mean", mean), ("sd", sd)];
                v.extend(min.map(|x| ("min", x)));
                v.extend(max.map(|x| ("max", x)));
                v
            }
        };
        for (key, v) in params {
            // NaN is reported below with the distribution's bounds.
            let f = v as f32;
            let finite_f32 = v.is_finite() && f.is_finite();
            if !v.is_nan() && finite_f32 && v != 0.0 && f.abs() < f32::MIN_POSITIVE {
                let p = if key.is_empty() {
                    at.clone()
                } else {
                    at.key(key)
                };
                return Err(self.err(
                    &p,
                    format!("value {} is subnormal in f32, the precision of the kernels; accepted: 0 or at least {:e}", short(v), f32::MIN_POSITIVE),
                ));
            }
            if !v.is_nan() && !finite_f32 {
                let p = if key.is_empty() {
                    at.clone()
                } else {
                    at.key(key)
                };
                return Err(self.err(
                    &p,
                    format!("value {} is not finite in f32, the precision of the kernels; accepted: [{lo}, {hi}] {unit}", short(v))
                        .trim_end()
                        .to_string(),
                ));
            }
        }
        if let Dist::Normal { sd, .. } = d {
            self.range(&at.key("sd"), *sd, 0.0, f64::INFINITY, false, false, unit)?;
        }
        if let Dist::Uniform { low, high } = d {
            if high < low {
                return Err(self.err(at, format!("uniform high {high} is below low {low}")));
            }
        }
        let (a, b) = (d.lower_bound(), d.upper_bound());
        if a.is_nan() || b.is_nan() {
            return Err(self.err(
                at,
                format!("value NaN is not a number; accepted: [{lo}, {hi}] {unit}")
                    .trim_end()
                    .to_string(),
            ));
        }
        if !(a >= lo && b <= hi) {
            let what = if a == b {
                format!("value {a} is out of range")
            } else {
                format!("values reach [{a}, {b}]")
            };
            let hint = if matches!(d, Dist::Normal { .. }) {
                " (clip a normal with min/max)"
            } else {
                ""
            };
            return Err(self.err(
                at,
                format!("{what}; accepted: [{lo}, {hi}] {unit}{hint}")
                    .trim_end()
                    .to_string(),
            ));
        }
        Ok(())
    }
}

/// A number as a message quotes it: plain when short, else in scientific notation.
fn short(v: f64) -> String {
    let plain = format!("{v}");
    if plain.len() <= 12 {
        plain
    } else {
        format!("{v:e}")
    }
}

fn unique<'a>(
    c: &Check,
    names: impl Iterator<Item = (SpecPath, &'a str)>,
    seen: &mut HashSet<String>,
) -> Result<(), Error> {
    for (at, n) in names {
        if n.is_empty()
            || !n
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err(c.err(
                &at,
                format!("name `{n}` must be non-empty and use only letters, digits, `_` and `-`"),
            ));
        }
        if !seen.insert(n.to_string()) {
            return Err(c.err(&at, format!("name `{n}` is used twice (population, synapse type and projection names must be unique)")));
        }
    }
    Ok(())
}

/// Checks ranges and references; the first problem is returned.
pub fn validate(f: &NetworkFile, text: &str, file: &Path) -> Result<(), Error> {
    let c = Check { text, file };
    let root = SpecPath::root();
    if f.version != 1 {
        return Err(c.err(
            &root.key("version"),
            format!("value {} is not supported; accepted: 1", f.version),
        ));
    }
    let sim = root.key("simulation");
    c.range(
        &sim.key("dt_ms"),
        f.simulation.dt_ms,
        0.0,
        10.0,
        true,
        false,
        "ms",
    )?;
    c.range(
        &sim.key("duration_ms"),
        f.simulation.duration_ms,
        0.0,
        1e9,
        false,
        false,
        "ms",
    )?;
    let dt = f.simulation.dt_ms;
    if f.simulation.duration_ms / dt > u32::MAX as f64 - 1.0 {
        return Err(c.err(
            &sim.key("duration_ms"),
            format!(
                "{} steps exceed the 2^32 - 1 step counter",
                f.simulation.duration_ms / dt
            ),
        ));
    }
    c.opt(
        &sim,
        "max_memory_gib",
        f.simulation.max_memory_gib,
        0.0,
        1e6,
        true,
        "GiB",
    )?;
    let env = root.key("environment");
    c.range(
        &env.key("ca_o_mm"),
        f.environment.ca_o_mm,
        0.0,
        100.0,
        false,
        false,
        "mM",
    )?;
    c.range(
        &env.key("mg_o_mm"),
        f.environment.mg_o_mm,
        0.0,
        100.0,
        false,
        false,
        "mM",
    )?;

    let mut names = HashSet::new();
    unique(
        &c,
        f.populations.iter().enumerate().map(|(i, p)| {
            (
                root.key("populations").index(i).key("name"),
                p.name.as_str(),
            )
        }),
        &mut names,
    )?;
    unique(
        &c,
        f.synapse_types.iter().enumerate().map(|(i, p)| {
            (
                root.key("synapse_types").index(i).key("name"),
                p.name.as_str(),
            )
        }),
        &mut names,
    )?;
    let proj_names: Vec<String> = f.projections.iter().map(|p| p.display_name()).collect();
    unique(
        &c,
        proj_names
            .iter()
            .enumerate()
            .map(|(i, n)| (root.key("projections").index(i).key("name"), n.as_str())),
        &mut names,
    )?;

    // Population and projection indices are u16 per neuron and synapse (and synapse
    // types u16 per projection): refuse more than fit, naming the first one that does
    // not (correctness issue, item 5).
    for (key, n) in [
        ("populations", f.populations.len()),
        ("synapse_types", f.synapse_types.len()),
        ("projections", f.projections.len()),
    ] {
        if n > MAX_TYPES {
            return Err(c.err(
                &root.key(key).index(MAX_TYPES),
                format!("{n} {key} given; accepted: at most {MAX_TYPES}"),
            ));
        }
    }
    let mut total: u64 = 0;
    for (i, p) in f.populations.iter().enumerate() {
        let at = root.key("populations").index(i);
        if p.size == 0 || p.size > MAX_IDS {
            return Err(c.err(
                &at.key("size"),
                format!("value {} is out of range; accepted: [1, {MAX_IDS}]", p.size),
            ));
        }
        total += p.size;
        if total > MAX_IDS {
            return Err(c.err(
                &at.key("size"),
                format!("the populations hold {total} neurons in all; accepted: at most {MAX_IDS}"),
            ));
        }
        let given = [
            ("lif", p.lif.is_some(), NeuronModel::Lif),
            ("hh", p.hh.is_some(), NeuronModel::Hh),
            ("poisson", p.poisson.is_some(), NeuronModel::Poisson),
            (
                "spike_times",
                p.spike_times.is_some(),
                NeuronModel::SpikeTimes,
            ),
        ];
        for (key, present, model) in given {
            if present && model != p.model {
                return Err(c.err(&at.key(key), format!("a `{key}` table is given but the model is `{:?}`; use the table named after the model", p.model).to_lowercase()));
            }
        }
        if let Some(l) = &p.lif {
            let b = at.key("lif");
            c.opt(&b, "c_m_pf", l.c_m_pf, 0.0, 1e6, true, "pF")?;
            c.opt(&b, "g_l_ns", l.g_l_ns, 0.0, 1e6, true, "nS")?;
            for (k, v) in [
                ("e_l_mv", l.e_l_mv),
                ("v_th_mv", l.v_th_mv),
                ("v_reset_mv", l.v_reset_mv),
                ("e_rr_mv", l.e_rr_mv),
                ("e_sfa_mv", l.e_sfa_mv),
            ] {
                c.opt(&b, k, v, -200.0, 200.0, false, "mV")?;
            }
            c.opt(&b, "t_ref_ms", l.t_ref_ms, 0.0, 1000.0, false, "ms")?;
            c.opt(&b, "q_rr_ns", l.q_rr_ns, 0.0, 1e6, false, "nS")?;
            c.opt(&b, "q_sfa_ns", l.q_sfa_ns, 0.0, 1e6, false, "nS")?;
            for (k, v) in [
                ("tau_rr_ms", l.tau_rr_ms),
                ("tau_sfa_ms", l.tau_sfa_ms),
                ("tau_theta_ms", l.tau_theta_ms),
            ] {
                c.opt(&b, k, v, 0.0, 1e6, true, "ms")?;
            }
            c.opt(
                &b,
                "delta_theta_mv",
                l.delta_theta_mv,
                0.0,
                200.0,
                false,
                "mV",
            )?;
            c.opt(&b, "i_bias_pa", l.i_bias_pa, -1e6, 1e6, false, "pA")?;
            let th = l.v_th_mv.unwrap_or(-50.0);
            let vr = l.v_reset_mv.unwrap_or(-60.0);
            if vr >= th {
                return Err(c.err(
                    &b.key("v_reset_mv"),
                    format!("value {vr} must be below the threshold v_th_mv = {th} mV"),
                ));
            }
        }
        if let Some(h) = &p.hh {
            let b = at.key("hh");
            c.opt(&b, "c_m_pf", h.c_m_pf, 0.0, 1e6, true, "pF")?;
            c.opt(&b, "g_l_ns", h.g_l_ns, 0.0, 1e6, true, "nS")?;
            c.opt(&b, "g_na_ns", h.g_na_ns, 0.0, 1e7, false, "nS")?;
            c.opt(&b, "g_k_ns", h.g_k_ns, 0.0, 1e7, false, "nS")?;
            for (k, v) in [
                ("e_l_mv", h.e_l_mv),
                ("e_na_mv", h.e_na_mv),
                ("e_k_mv", h.e_k_mv),
                ("v_t_mv", h.v_t_mv),
                ("v_spike_mv", h.v_spike_mv),
            ] {
                c.opt(&b, k, v, -200.0, 200.0, false, "mV")?;
            }
            c.opt(&b, "lockout_ms", h.lockout_ms, 0.0, 1000.0, false, "ms")?;
            c.opt(&b, "i_bias_pa", h.i_bias_pa, -1e6, 1e6, false, "pA")?;
        }
        match p.model {
            NeuronModel::Poisson => {
                let ps = p.poisson.as_ref().ok_or_else(|| {
                    c.err(
                        &at.key("model"),
                        "model `poisson` needs a [populations.poisson] table with rate_hz".into(),
                    )
                })?;
                let b = at.key("poisson");
                c.range(&b.key("rate_hz"), ps.rate_hz, 0.0, 1e5, false, false, "Hz")?;
                c.range(
                    &b.key("start_ms"),
                    ps.start_ms,
                    0.0,
                    1e9,
                    false,
                    false,
                    "ms",
                )?;
                if let Some(s) = ps.stop_ms {
                    c.range(
                        &b.key("stop_ms"),
                        s,
                        ps.start_ms,
                        1e9,
                        false,
                        false,
                        "ms (not before start_ms)",
                    )?;
                }
            }
            NeuronModel::SpikeTimes => {
                let st = p.spike_times.as_ref().ok_or_else(|| c.err(&at.key("model"), "model `spike_times` needs a [populations.spike_times] table with times_ms or per_neuron_ms".into()))?;
                let b = at.key("spike_times");
                match (&st.times_ms, &st.per_neuron_ms) {
                    (Some(t), None) => {
                        for (j, x) in t.iter().enumerate() {
                            c.range(
                                &b.key("times_ms").index(j),
                                *x,
                                0.0,
                                1e9,
                                false,
                                false,
                                "ms",
                            )?;
                        }
                    }
                    (None, Some(lists)) => {
                        if lists.len() as u64 != p.size {
                            return Err(c.err(&b.key("per_neuron_ms"), format!("{} lists given for a population of size {}; accepted: one list per neuron", lists.len(), p.size)));
                        }
                        for (n, l) in lists.iter().enumerate() {
                            for (j, x) in l.iter().enumerate() {
                                c.range(
                                    &b.key("per_neuron_ms").index(n).index(j),
                                    *x,
                                    0.0,
                                    1e9,
                                    false,
                                    false,
                                    "ms",
                                )?;
                            }
                        }
                    }
                    _ => {
                        return Err(
                            c.err(&b, "give exactly one of times_ms and per_neuron_ms".into())
                        )
                    }
                }
            }
            _ => {}
        }
        if let Some(pos) = &p.positions {
            let b = at.key("positions");
            for (j, o) in pos.origin_um.iter().enumerate() {
                c.range(
                    &b.key("origin_um").index(j),
                    *o,
                    -1e9,
                    1e9,
                    false,
                    false,
                    "µm",
                )?;
            }
            match pos.layout {
                Layout::Grid => {
                    let shape = pos.shape.ok_or_else(|| {
                        c.err(
                            &b.key("layout"),
                            "layout `grid` needs shape = [nx, ny, nz] and spacing_um".into(),
                        )
                    })?;
                    let sp = pos.spacing_um.ok_or_else(|| {
                        c.err(&b.key("layout"), "layout `grid` needs spacing_um".into())
                    })?;
                    c.range(&b.key("spacing_um"), sp, 0.0, 1e9, true, false, "µm")?;
                    let n = shape
                        .iter()
                        .try_fold(1u64, |a, &x| a.checked_mul(x))
                        .unwrap_or(u64::MAX);
                    if n != p.size {
                        return Err(c.err(&b.key("shape"), format!("{shape:?} holds {n} points but the population has {}; accepted: a shape whose product is the size", p.size)));
                    }
                }
                Layout::Box => {
                    let s = pos.size_um.ok_or_else(|| {
                        c.err(
                            &b.key("layout"),
                            "layout `box` needs size_um = [x, y, z]".into(),
                        )
                    })?;
                    for (j, x) in s.iter().enumerate() {
                        c.range(&b.key("size_um").index(j), *x, 0.0, 1e9, false, false, "µm")?;
                    }
                }
                Layout::Sphere => {
                    let r = pos.radius_um.ok_or_else(|| {
                        c.err(&b.key("layout"), "layout `sphere` needs radius_um".into())
                    })?;
                    c.range(&b.key("radius_um"), r, 0.0, 1e9, false, false, "µm")?;
                }
                Layout::List => {
                    let pts = pos.points_um.as_ref().ok_or_else(|| {
                        c.err(&b.key("layout"), "layout `list` needs points_um".into())
                    })?;
                    if pts.len() as u64 != p.size {
                        return Err(c.err(&b.key("points_um"), format!("{} points for a population of size {}; accepted: one point per neuron", pts.len(), p.size)));
                    }
                    for (j, pt) in pts.iter().enumerate() {
                        if pt.iter().any(|x| !x.is_finite() || x.abs() > 1e9) {
                            return Err(c.err(
                                &b.key("points_um").index(j),
                                format!("point {pt:?} must be finite within ±1e9 µm"),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(init) = &p.init {
            let b = at.key("init");
            if let Some(v) = &init.v_mv {
                c.dist(&b.key("v_mv"), v, -200.0, 200.0, "mV")?;
            }
            for (key, d) in &init.g_ns {
                let kat = b.key("g_ns").key(key);
                let ok = key.split_once('.').and_then(|(t, k)| {
                    f.synapse_types
                        .iter()
                        .find(|s| s.name == t)
                        .and_then(|s| s.receptors.iter().find(|r| r.kind.name() == k))
                });
                if ok.is_none() {
                    return Err(c.err(&kat, format!("key `{key}` must be \"<synapse type>.<receptor kind>\" of a defined synapse type and one of its receptors")));
                }
                c.dist(&kat, d, 0.0, f64::INFINITY, "nS")?;
            }
        }
    }

    for (i, s) in f.synapse_types.iter().enumerate() {
        let at = root.key("synapse_types").index(i);
        if s.ca.is_some() && s.release != ReleaseModel::Ca {
            return Err(c.err(
                &at.key("ca"),
                format!(
                    "a `ca` table is given but release = {:?}; it applies to release = \"ca\" only",
                    s.release
                ),
            ));
        }
        if s.tm.is_some() && matches!(s.release, ReleaseModel::Ca | ReleaseModel::Static) {
            return Err(c.err(
                &at.key("tm"),
                format!(
                    "a `tm` table is given but release = \"{}\"; it applies to tm_stochastic and tm_mean",
                    if s.release == ReleaseModel::Ca { "ca" } else { "static" }
                ),
            ));
        }
        if let Some(ca) = &s.ca {
            let b = at.key("ca");
            if let Some(n) = ca.n_sites {
                if n == 0 || n > MAX_SITES {
                    return Err(c.err(
                        &b.key("n_sites"),
                        format!("value {n} is out of range; accepted: [1, {MAX_SITES}]"),
                    ));
                }
            }
            let p_max = ca.p_max.unwrap_or(1.0);
            c.opt(&b, "p_max", ca.p_max, 0.0, 1.0, true, "")?;
            if let Some(p) = ca.p_ref {
                c.range(&b.key("p_ref"), p, 0.0, p_max, true, true, "(below p_max)")?;
            }
            c.opt(&b, "hill_n", ca.hill_n, 0.0, 10.0, true, "")?;
            c.opt(&b, "phi_f", ca.phi_f, 0.0, 1e3, false, "")?;
            c.opt(&b, "k_f", ca.k_f, 0.0, 1e6, true, "")?;
            c.opt(&b, "tau_f_ms", ca.tau_f_ms, 0.0, 1e7, true, "ms")?;
            c.opt(&b, "tau_d_ms", ca.tau_d_ms, 0.0, 1e7, true, "ms")?;
            c.opt(&b, "k0_per_s", ca.k0_per_s, 0.0, 1e5, false, "1/s")?;
            let k0 = ca.k0_per_s.unwrap_or(2.0);
            if let Some(km) = ca.kmax_per_s {
                c.range(
                    &b.key("kmax_per_s"),
                    km,
                    k0,
                    1e5,
                    false,
                    false,
                    "1/s (not below k0_per_s)",
                )?;
            }
            c.opt(&b, "k_d", ca.k_d, 0.0, 1e6, true, "")?;
            c.opt(&b, "k_ca_mm", ca.k_ca_mm, 0.0, 1e3, true, "mM")?;
            c.opt(&b, "k_mg_mm", ca.k_mg_mm, 0.0, 1e3, true, "mM")?;
            c.opt(&b, "ca_rest_um", ca.ca_rest_um, 0.0, 1e3, false, "µM")?;
            c.opt(&b, "delta_ca_um", ca.delta_ca_um, 0.0, 1e3, false, "µM")?;
        }
        if let Some(tm) = &s.tm {
            let b = at.key("tm");
            if let Some(n) = tm.n_sites {
                if n == 0 || n > MAX_SITES {
                    return Err(c.err(
                        &b.key("n_sites"),
                        format!("value {n} is out of range; accepted: [1, {MAX_SITES}]"),
                    ));
                }
            }
            c.opt(&b, "u", tm.u, 0.0, 1.0, true, "")?;
            c.opt(&b, "tau_rec_ms", tm.tau_rec_ms, 0.0, 1e7, true, "ms")?;
            c.opt(&b, "tau_fac_ms", tm.tau_fac_ms, 0.0, 1e7, false, "ms")?;
        }
        if let Some(v) = &s.vesicles {
            let b = at.key("vesicles");
            if let Some(r) = v.reserve_size {
                if r > 1_000_000 {
                    return Err(c.err(
                        &b.key("reserve_size"),
                        format!(
                            "value {r} is out of range; accepted: [0, 1000000] (0 = untracked)"
                        ),
                    ));
                }
            }
            c.opt(&b, "tau_endo_ms", v.tau_endo_ms, 0.0, 1e8, true, "ms")?;
            c.opt(&b, "async_rho", v.async_rho, 0.0, 1e3, false, "")?;
            c.opt(&b, "tau_async_ms", v.tau_async_ms, 0.0, 1e4, true, "ms")?;
            c.opt(
                &b,
                "spont_rate_per_s",
                v.spont_rate_per_s,
                0.0,
                1e4,
                false,
                "1/s",
            )?;
            if matches!(s.release, ReleaseModel::TmMean | ReleaseModel::Static) {
                let name = if s.release == ReleaseModel::Static {
                    "static"
                } else {
                    "tm_mean"
                };
                let sites = v.async_rho.unwrap_or(0.0) > 0.0
                    || v.spont_rate_per_s.unwrap_or(0.0) > 0.0
                    || v.reserve_size.unwrap_or(0) > 0;
                if sites {
                    return Err(c.err(&b, format!("release = \"{name}\" has no release sites: asynchronous, spontaneous release and a reserve pool need ca or tm_stochastic")));
                }
            }
        }
        if let Some(cl) = &s.cleft {
            let b = at.key("cleft");
            c.opt(&b, "delta_t_mm", cl.delta_t_mm, 0.0, 1e3, true, "mM")?;
            c.opt(
                &b,
                "k_diffusion_per_ms",
                cl.k_diffusion_per_ms,
                0.0,
                1e4,
                false,
                "1/ms",
            )?;
            c.opt(
                &b,
                "k_uptake_per_ms",
                cl.k_uptake_per_ms,
                0.0,
                1e4,
                false,
                "1/ms",
            )?;
            c.opt(
                &b,
                "k_enzyme_per_ms",
                cl.k_enzyme_per_ms,
                0.0,
                1e4,
                false,
                "1/ms",
            )?;
            c.opt(&b, "pulse_mm", cl.pulse_mm, 0.0, 1e3, true, "mM")?;
            c.opt(
                &b,
                "pulse_ms",
                cl.pulse_ms,
                dt,
                1e4,
                false,
                "ms (at least one step)",
            )?;
            c.opt(
                &b,
                "clear_threshold_mm",
                cl.clear_threshold_mm,
                0.0,
                1.0,
                true,
                "mM",
            )?;
            let any = cl.k_diffusion_per_ms.is_some()
                || cl.k_uptake_per_ms.is_some()
                || cl.k_enzyme_per_ms.is_some();
            if any {
                let d = super::cleft_defaults(s.transmitter);
                let total = cl.k_diffusion_per_ms.unwrap_or(d.1)
                    + cl.k_uptake_per_ms.unwrap_or(d.2)
                    + cl.k_enzyme_per_ms.unwrap_or(d.3);
                if total <= 0.0 && cl.model != Some(CleftModel::Pulse) {
                    return Err(c.err(&b, "diffusion + uptake + enzyme rates sum to 0: transmitter would never clear; accepted: a positive sum".into()));
                }
            }
        }
        let rat = at.key("receptors");
        if s.receptors.is_empty() || s.receptors.len() > MAX_RECEPTORS {
            return Err(c.err(
                &rat,
                format!(
                    "{} receptors given; accepted: 1 to {MAX_RECEPTORS}",
                    s.receptors.len()
                ),
            ));
        }
        let mut kinds = HashSet::new();
        for (j, r) in s.receptors.iter().enumerate() {
            let b = rat.index(j);
            if !kinds.insert(r.kind) {
                return Err(c.err(
                    &b.key("kind"),
                    format!(
                        "receptor `{}` appears twice in this synapse type",
                        r.kind.name()
                    ),
                ));
            }
            let allowed: &[ReceptorKind] = match s.transmitter {
                Transmitter::Glutamate => {
                    &[ReceptorKind::Ampa, ReceptorKind::Nmda, ReceptorKind::Exp]
                }
                Transmitter::Gaba => &[ReceptorKind::GabaA, ReceptorKind::GabaB, ReceptorKind::Exp],
                Transmitter::Glycine => &[ReceptorKind::Glycine, ReceptorKind::Exp],
                Transmitter::Acetylcholine => &[ReceptorKind::Nach, ReceptorKind::Exp],
            };
            if !allowed.contains(&r.kind) {
                let names: Vec<&str> = allowed.iter().map(|k| k.name()).collect();
                return Err(c.err(
                    &b.key("kind"),
                    format!(
                        "`{}` does not bind {:?}; accepted: {}",
                        r.kind.name(),
                        s.transmitter,
                        names.join(", ")
                    )
                    .to_lowercase(),
                ));
            }
            c.opt(&b, "g_max_ns", r.g_max_ns, 0.0, 1e6, false, "nS")?;
            c.opt(
                &b,
                "alpha_per_mm_ms",
                r.alpha_per_mm_ms,
                0.0,
                1e4,
                false,
                "1/(mM·ms)",
            )?;
            c.opt(&b, "beta_per_ms", r.beta_per_ms, 0.0, 1e4, true, "1/ms")?;
            c.opt(&b, "e_rev_mv", r.e_rev_mv, -200.0, 200.0, false, "mV")?;
            c.opt(&b, "tau_ms", r.tau_ms, 0.0, 1e6, true, "ms")?;
            for (k, v) in [
                ("k1_per_mm_ms", r.k1_per_mm_ms),
                ("k2_per_ms", r.k2_per_ms),
                ("k3_per_ms", r.k3_per_ms),
                ("k4_per_ms", r.k4_per_ms),
            ] {
                c.opt(&b, k, v, 0.0, 1e4, true, "")?;
            }
            c.opt(&b, "k_d", r.k_d, 0.0, 1e9, true, "")?;
            c.opt(&b, "n_hill", r.n_hill, 0.0, 10.0, true, "")?;
        }
    }

    for (i, p) in f.projections.iter().enumerate() {
        let at = root.key("projections").index(i);
        let find = |key: &str, name: &str| -> Result<&PopulationSpec, Error> {
            f.populations
                .iter()
                .find(|q| q.name == name)
                .ok_or_else(|| {
                    let all: Vec<&str> = f.populations.iter().map(|q| q.name.as_str()).collect();
                    c.err(
                        &at.key(key),
                        format!(
                            "population `{name}` is not defined; defined: {}",
                            all.join(", ")
                        ),
                    )
                })
        };
        let src = find("source", &p.source)?;
        let tgt = find("target", &p.target)?;
        if !matches!(tgt.model, NeuronModel::Lif | NeuronModel::Hh) {
            return Err(c.err(
                &at.key("target"),
                format!(
                    "population `{}` is a spike source; accepted targets: lif or hh populations",
                    tgt.name
                ),
            ));
        }
        if !f.synapse_types.iter().any(|s| s.name == p.synapse) {
            let all: Vec<&str> = f.synapse_types.iter().map(|s| s.name.as_str()).collect();
            return Err(c.err(
                &at.key("synapse"),
                format!(
                    "synapse type `{}` is not defined; defined: {}",
                    p.synapse,
                    all.join(", ")
                ),
            ));
        }
        match p.rule {
            Rule::FixedProbability => match (&p.p, &p.distance) {
                (Some(x), None) => c.range_host(&at.key("p"), *x, 0.0, 1.0, false, false, "")?,
                (None, Some(_)) => {}
                (Some(_), Some(_)) => {
                    return Err(c.err(&at.key("p"), "give either p or distance, not both".into()))
                }
                (None, None) => {
                    return Err(c.err(
                        &at.key("rule"),
                        "rule `fixed_probability` needs p or a [projections.distance] table".into(),
                    ))
                }
            },
            Rule::FixedIndegree => {
                let k = p.indegree.ok_or_else(|| {
                    c.err(
                        &at.key("rule"),
                        "rule `fixed_indegree` needs indegree".into(),
                    )
                })?;
                if k > 1_000_000 {
                    return Err(c.err(
                        &at.key("indegree"),
                        format!("value {k} is out of range; accepted: [0, 1000000]"),
                    ));
                }
            }
            Rule::Pairs => {
                let pairs = p.pairs.as_ref().ok_or_else(|| {
                    c.err(
                        &at.key("rule"),
                        "rule `pairs` needs pairs = [[source, target], ...]".into(),
                    )
                })?;
                for (j, [a, b]) in pairs.iter().enumerate() {
                    if *a >= src.size || *b >= tgt.size {
                        return Err(c.err(&at.key("pairs").index(j), format!("pair [{a}, {b}] is out of range; accepted: source id < {}, target id < {}", src.size, tgt.size)));
                    }
                }
            }
            Rule::OneToOne => {
                if src.size != tgt.size {
                    return Err(c.err(
                        &at.key("rule"),
                        format!(
                            "one_to_one needs equal sizes; source has {}, target {}",
                            src.size, tgt.size
                        ),
                    ));
                }
            }
            Rule::AllToAll => {}
            Rule::Sonata => {
                let sp = p.sonata.as_ref().ok_or_else(|| {
                    c.err(
                        &at.key("rule"),
                        "rule `sonata` needs a [projections.sonata] table with edges = \"FILE.h5\""
                            .into(),
                    )
                })?;
                let file = p
                    .sonata_path
                    .clone()
                    .unwrap_or_else(|| sp.edges.clone().into());
                if !file.is_file() {
                    return Err(c.err(
                        &at.key("sonata").key("edges"),
                        format!("no such edges file: {}", file.display()),
                    ));
                }
            }
        }
        if p.rule != Rule::Sonata && p.sonata.is_some() {
            return Err(c.err(
                &at.key("sonata"),
                "[projections.sonata] applies to rule sonata only".into(),
            ));
        }
        if p.rule != Rule::FixedProbability && p.p.is_some() {
            return Err(c.err(
                &at.key("p"),
                format!(
                    "p applies to rule fixed_probability only (rule is {:?})",
                    p.rule
                )
                .to_lowercase(),
            ));
        }
        if let Some(d) = &p.distance {
            if p.rule != Rule::FixedProbability {
                return Err(c.err(
                    &at.key("distance"),
                    "distance applies to rule fixed_probability only".into(),
                ));
            }
            c.range_host(
                &at.key("distance").key("p_max"),
                d.p_max,
                0.0,
                1.0,
                false,
                false,
                "",
            )?;
            c.range_host(
                &at.key("distance").key("scale_um"),
                d.scale_um,
                0.0,
                1e9,
                true,
                false,
                "µm",
            )?;
        }
        if p.distance.is_some() || p.conduction.is_some() {
            for (key, q) in [("source", src), ("target", tgt)] {
                if q.positions.is_none() {
                    return Err(c.err(&at.key(if p.distance.is_some() { "distance" } else { "conduction" }), format!("needs positions; the {key} population `{}` has no [populations.positions]", q.name)));
                }
            }
        }
        if let Some(w) = &p.weight {
            c.dist(
                &at.key("weight"),
                w,
                0.0,
                f64::INFINITY,
                "(dimensionless, scales g_max)",
            )?;
        }
        let max_delay = MAX_DELAY_STEPS as f64 * dt;
        if let Some(d) = &p.delay_ms {
            if p.conduction.is_some() {
                return Err(c.err(
                    &at.key("delay_ms"),
                    "give either delay_ms or conduction, not both".into(),
                ));
            }
            c.dist(&at.key("delay_ms"), d, 0.0, max_delay, "ms")?;
        }
        if let Some(cd) = &p.conduction {
            let b = at.key("conduction");
            c.opt(&b, "diameter_um", cd.diameter_um, 0.0, 100.0, true, "µm")?;
            c.opt(
                &b,
                "velocity_m_per_s",
                cd.velocity_m_per_s,
                0.0,
                1000.0,
                true,
                "m/s",
            )?;
            c.opt(
                &b,
                "synaptic_delay_ms",
                cd.synaptic_delay_ms,
                0.0,
                max_delay,
                false,
                "ms",
            )?;
            if cd.diameter_um.is_none() && cd.velocity_m_per_s.is_none() {
                return Err(c.err(&b, "give diameter_um or velocity_m_per_s".into()));
            }
        }
    }

    for (i, inp) in f.inputs.iter().enumerate() {
        let at = root.key("inputs").index(i);
        let tgt = f
            .populations
            .iter()
            .find(|q| q.name == inp.target)
            .ok_or_else(|| {
                c.err(
                    &at.key("target"),
                    format!("population `{}` is not defined", inp.target),
                )
            })?;
        if !matches!(tgt.model, NeuronModel::Lif | NeuronModel::Hh) {
            return Err(c.err(
                &at.key("target"),
                format!(
                    "population `{}` is a spike source; currents go to lif or hh populations",
                    tgt.name
                ),
            ));
        }
        c.range(
            &at.key("amplitude_pa"),
            inp.amplitude_pa,
            -1e6,
            1e6,
            false,
            false,
            "pA",
        )?;
        c.range(
            &at.key("start_ms"),
            inp.start_ms,
            0.0,
            1e9,
            false,
            false,
            "ms",
        )?;
        if let Some(s) = inp.stop_ms {
            c.range(
                &at.key("stop_ms"),
                s,
                inp.start_ms,
                1e9,
                false,
                false,
                "ms (not before start_ms)",
            )?;
        }
        if let Some(ids) = &inp.ids {
            for (j, id) in ids.iter().enumerate() {
                if *id >= tgt.size {
                    return Err(c.err(
                        &at.key("ids").index(j),
                        format!("id {id} is out of range; accepted: [0, {})", tgt.size),
                    ));
                }
            }
        }
    }

    let rec = root.key("record");
    if let Some(sp) = &f.record.spikes {
        for (j, n) in sp.iter().enumerate() {
            if !f.populations.iter().any(|q| &q.name == n) {
                return Err(c.err(
                    &rec.key("spikes").index(j),
                    format!("population `{n}` is not defined"),
                ));
            }
        }
    }
    if let Some(si) = f.record.sample_interval_ms {
        c.range(
            &rec.key("sample_interval_ms"),
            si,
            dt,
            1e9,
            false,
            false,
            "ms (at least dt)",
        )?;
    }
    if let Some(fi) = f.record.flush_interval_ms {
        c.range(
            &rec.key("flush_interval_ms"),
            fi,
            dt,
            1e9,
            false,
            false,
            "ms (at least dt)",
        )?;
    }
    if let Some(list) = &f.record.releases {
        let names: Vec<String> = f.projections.iter().map(|p| p.display_name()).collect();
        for (i, n) in list.iter().enumerate() {
            if !names.contains(n) {
                return Err(c.err(
                    &rec.key("releases").index(i),
                    format!(
                        "projection `{n}` is not defined; accepted: {}",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    // Each (population or projection, variable) is one report: recording it twice is refused.
    let mut reported: HashSet<(String, String)> = HashSet::new();
    for (i, r) in f.record.neurons.iter().enumerate() {
        let at = rec.key("neurons").index(i);
        for (j, v) in r.variables.iter().enumerate() {
            if !reported.insert((r.population.clone(), v.clone())) {
                return Err(c.err(
                    &at.key("variables").index(j),
                    format!("`{v}` of population `{}` is recorded twice; give each variable once (with all the ids it needs)", r.population),
                ));
            }
        }
        let pop = f
            .populations
            .iter()
            .find(|q| q.name == r.population)
            .ok_or_else(|| {
                c.err(
                    &at.key("population"),
                    format!("population `{}` is not defined", r.population),
                )
            })?;
        let receptor_vars: Vec<String> = f
            .synapse_types
            .iter()
            .flat_map(|s| {
                s.receptors
                    .iter()
                    .map(move |rc| format!("g_{}_{}_ns", s.name, rc.kind.name()))
            })
            .collect();
        for (j, v) in r.variables.iter().enumerate() {
            let ok = neuron_variables(pop.model).contains(&v.as_str())
                || (matches!(pop.model, NeuronModel::Lif | NeuronModel::Hh)
                    && receptor_vars.contains(v));
            if !ok {
                let mut all: Vec<String> = neuron_variables(pop.model)
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                if matches!(pop.model, NeuronModel::Lif | NeuronModel::Hh) {
                    all.extend(receptor_vars.iter().cloned());
                }
                // Names are case-sensitive (units in names: `v_mv`); point at a near miss.
                if let Some(near) = all.iter().find(|a| a.eq_ignore_ascii_case(v)) {
                    return Err(c.err(
                        &at.key("variables").index(j),
                        format!(
                            "unknown variable `{v}`; did you mean `{near}`? (names are lower case)"
                        ),
                    ));
                }
                return Err(c.err(
                    &at.key("variables").index(j),
                    format!(
                        "`{v}` cannot be recorded for a {} population; accepted: {}",
                        format!("{:?}", pop.model).to_lowercase(),
                        if all.is_empty() {
                            "none (spike sources have spikes only)".to_string()
                        } else {
                            all.join(", ")
                        }
                    ),
                ));
            }
        }
        if let Some(ids) = &r.ids {
            for (j, id) in ids.iter().enumerate() {
                if *id >= pop.size {
                    return Err(c.err(
                        &at.key("ids").index(j),
                        format!("id {id} is out of range; accepted: [0, {})", pop.size),
                    ));
                }
            }
        }
    }
    for (i, r) in f.record.synapses.iter().enumerate() {
        let at = rec.key("synapses").index(i);
        for (j, v) in r.variables.iter().enumerate() {
            if !reported.insert((format!("projection {}", r.projection), v.clone())) {
                return Err(c.err(
                    &at.key("variables").index(j),
                    format!("`{v}` of projection `{}` is recorded twice; give each variable once (with all the ids it needs)", r.projection),
                ));
            }
        }
        let proj = f
            .projections
            .iter()
            .find(|p| p.display_name() == r.projection)
            .ok_or_else(|| {
                c.err(
                    &at.key("projection"),
                    format!("projection `{}` is not defined", r.projection),
                )
            })?;
        let st = f
            .synapse_types
            .iter()
            .find(|s| s.name == proj.synapse)
            .expect("checked above");
        for (j, v) in r.variables.iter().enumerate() {
            let recs: Vec<String> = st
                .receptors
                .iter()
                .filter(|rc| rc.kind != ReceptorKind::Exp)
                .map(|rc| format!("r_{}", rc.kind.name()))
                .chain(
                    st.receptors
                        .iter()
                        .filter(|rc| rc.kind == ReceptorKind::GabaB)
                        .map(|_| "gprot_gaba_b".to_string()),
                )
                .collect();
            if !SYNAPSE_VARIABLES.contains(&v.as_str()) && !recs.contains(v) {
                let mut all: Vec<String> =
                    SYNAPSE_VARIABLES.iter().map(|s| s.to_string()).collect();
                all.extend(recs);
                return Err(c.err(
                    &at.key("variables").index(j),
                    format!(
                        "`{v}` is not a synapse variable; accepted: {}",
                        all.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}
