//! `quantal plot`: figures of a run drawn from its files, as SVG written directly (no
//! plotting library, no fonts needed): a spike raster with population colours, population
//! rates in time bins, traces of a recorded variable, the amplitude histograms of evoked
//! release per recorded projection (quanta per presynaptic spike, failures at 0), and a
//! column of a sweep's index table against a swept parameter (mean ± SE over seeds).
//! [`to_png`] rasterises a figure with the system's fonts (resvg).

use std::fmt::Write as _;
use std::path::Path;

use crate::error::Error;

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// One mark per spike: time against neuron, populations stacked, one colour each.
    Raster,
    /// Mean rate per population in bins of `bin_ms`.
    Rates,
    /// A recorded variable against time for chosen elements.
    Traces,
    /// Histogram of the quanta released per presynaptic spike (0 = failure) for each
    /// projection in the run's per-event release record (`record.releases`).
    Release,
}

/// A drawn figure: the SVG text and what it holds (for tests and the summary line).
#[derive(Debug, Clone)]
pub struct Figure {
    /// The SVG document.
    pub svg: String,
    /// Marks drawn (spikes, bins or trace points).
    pub marks: usize,
}

const W: f64 = 900.0;
const H: f64 = 500.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 50.0;
const B: f64 = 50.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> Error + '_ {
    move |e| Error::Hdf5 {
        message: e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        path: path.to_path_buf(),
    }
}

/// Axes with `n` ticks on each, labels and a title.
fn frame(svg: &mut String, title: &str, x: (f64, f64), y: (f64, f64), xl: &str, yl: &str) {
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="14">{}</text>
<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="black"/>
"#,
        W / 2.0,
        esc(title),
        H - B,
        W - R,
        H - B,
        H - B
    );
    for k in 0..=5 {
        let f = k as f64 / 5.0;
        let (vx, vy) = (x.0 + f * (x.1 - x.0), y.0 + f * (y.1 - y.0));
        let (px, py) = (L + f * (W - L - R), H - B - f * (H - T - B));
        let _ = writeln!(
            svg,
            r#"<line x1="{px}" y1="{}" x2="{px}" y2="{}" stroke="black"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"#,
            H - B,
            H - B + 5.0,
            H - B + 18.0,
            num(vx)
        );
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{py}" x2="{L}" y2="{py}" stroke="black"/><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            L - 5.0,
            L - 8.0,
            py + 4.0,
            num(vy)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        L + (W - L - R) / 2.0,
        H - 12.0,
        esc(xl),
        T + (H - T - B) / 2.0,
        T + (H - T - B) / 2.0,
        esc(yl)
    );
}

/// Legend entry k, in a row between the title and the plot area.
fn legend(svg: &mut String, k: usize, name: &str, colour: &str) {
    let _ = writeln!(
        svg,
        r#"<text class="legend" x="{}" y="{}" fill="{colour}">{}</text>"#,
        L + 10.0 + 120.0 * k as f64,
        T - 10.0,
        esc(name)
    );
}

fn num(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.round() {
        format!("{}", v.round())
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The file name of a run, for titles.
fn short(run: &Path) -> String {
    run.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.display().to_string())
}

fn px(v: f64, lo: f64, hi: f64) -> f64 {
    L + (v - lo) / (hi - lo).max(1e-12) * (W - L - R)
}

fn py(v: f64, lo: f64, hi: f64) -> f64 {
    H - B - (v - lo) / (hi - lo).max(1e-12) * (H - T - B)
}

/// The spikes of one population: (name, size, times ms, node ids).
type PopSpikes = (String, u64, Vec<f64>, Vec<u64>);

/// Spikes of every population of `run`, and the simulated time.
fn spikes(run: &Path) -> Result<(Vec<PopSpikes>, f64), Error> {
    let e = h5err(run);
    let f = hdf5::File::open(run).map_err(&e)?;
    let duration = f
        .attr("simulated_ms")
        .and_then(|a| a.read_scalar::<f64>())
        .or_else(|_| f.attr("duration_ms").and_then(|a| a.read_scalar::<f64>()))
        .map_err(&e)?;
    // Population sizes from the network the run used (its nodes file), else the ids seen.
    let nodes = crate::record::hdf5::report_path(run, "nodes");
    let sizes: Vec<(String, u64)> = hdf5::File::open(&nodes)
        .ok()
        .and_then(|n| {
            let g = n.group("nodes").ok()?;
            let mut v = Vec::new();
            for name in g.member_names().ok()? {
                let size = g.dataset(&format!("{name}/node_type_id")).ok()?.size() as u64;
                v.push((name, size));
            }
            Some(v)
        })
        .unwrap_or_default();
    let g = f.group("spikes").map_err(&e)?;
    let mut out = Vec::new();
    for name in g.member_names().map_err(&e)? {
        let t = g
            .dataset(&format!("{name}/timestamps"))
            .and_then(|d| d.read_raw::<f64>())
            .map_err(&e)?;
        let n = g
            .dataset(&format!("{name}/node_ids"))
            .and_then(|d| d.read_raw::<u64>())
            .map_err(&e)?;
        let size = sizes
            .iter()
            .find(|s| s.0 == name)
            .map(|s| s.1)
            .unwrap_or_else(|| n.iter().max().map(|m| m + 1).unwrap_or(1));
        out.push((name, size, t, n));
    }
    Ok((out, duration))
}

/// Draws `what` from the run `run` (its `RUN.h5`; traces read `RUN.<variable>.h5`).
pub fn plot(
    run: &Path,
    what: What,
    variable: Option<&str>,
    ids: &[u64],
    bin_ms: f64,
) -> Result<Figure, Error> {
    let mut svg = String::new();
    let mut marks = 0;
    match what {
        What::Raster => {
            let (pops, duration) = spikes(run)?;
            let total: u64 = pops.iter().map(|p| p.1).sum::<u64>().max(1);
            frame(
                &mut svg,
                &format!("Spikes ({})", short(run)),
                (0.0, duration),
                (0.0, total as f64),
                "time (ms)",
                "neuron",
            );
            let mut base = 0u64;
            for (k, (name, size, t, n)) in pops.iter().enumerate() {
                let c = COLOURS[k % COLOURS.len()];
                let _ = writeln!(
                    svg,
                    r#"<g fill="{c}" class="population" data-name="{}">"#,
                    esc(name)
                );
                for (&ti, &ni) in t.iter().zip(n) {
                    let _ = writeln!(
                        svg,
                        r#"<rect class="spike" x="{:.2}" y="{:.2}" width="1.5" height="1.5"/>"#,
                        px(ti, 0.0, duration),
                        py((base + ni) as f64 + 0.5, 0.0, total as f64)
                    );
                    marks += 1;
                }
                svg.push_str("</g>\n");
                legend(&mut svg, k, name, c);
                base += size;
            }
        }
        What::Rates => {
            let (pops, duration) = spikes(run)?;
            let bins = ((duration / bin_ms).ceil() as usize).max(1);
            let mut rates = Vec::new();
            let mut top: f64 = 1.0;
            for (_, size, t, _) in &pops {
                let mut h = vec![0.0f64; bins];
                for &ti in t {
                    h[((ti / bin_ms) as usize).min(bins - 1)] += 1.0;
                }
                for x in h.iter_mut() {
                    *x /= *size as f64 * bin_ms / 1000.0;
                    top = top.max(*x);
                }
                rates.push(h);
            }
            frame(
                &mut svg,
                &format!("Population rates, {bin_ms} ms bins"),
                (0.0, duration),
                (0.0, top),
                "time (ms)",
                "rate (Hz)",
            );
            for (k, ((name, ..), h)) in pops.iter().zip(&rates).enumerate() {
                let c = COLOURS[k % COLOURS.len()];
                let pts: Vec<String> = h
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| {
                        format!(
                            "{:.2},{:.2}",
                            px((i as f64 + 0.5) * bin_ms, 0.0, duration),
                            py(r, 0.0, top)
                        )
                    })
                    .collect();
                marks += h.len();
                let _ = writeln!(
                    svg,
                    r#"<polyline class="rate" data-name="{}" fill="none" stroke="{c}" points="{}"/>"#,
                    esc(name),
                    pts.join(" ")
                );
                legend(&mut svg, k, name, c);
            }
        }
        What::Traces => {
            let var =
                variable.ok_or_else(|| Error::Plot("--what traces needs --variable".into()))?;
            let file = crate::record::hdf5::report_path(run, var);
            let e = h5err(&file);
            let f = hdf5::File::open(&file).map_err(&e)?;
            let rep = f.group("report").map_err(&e)?;
            let mut series = Vec::new();
            let (mut lo, mut hi, mut t_end) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
            for group in rep.member_names().map_err(&e)? {
                let d = rep.dataset(&format!("{group}/data")).map_err(&e)?;
                let shape = d.shape();
                let data = d.read_raw::<f32>().map_err(&e)?;
                let time = rep
                    .dataset(&format!("{group}/mapping/time"))
                    .and_then(|t| t.read_raw::<f64>())
                    .map_err(&e)?;
                t_end = t_end.max(time[1]);
                let cols: Vec<usize> = if ids.is_empty() {
                    (0..shape[1].min(5)).collect()
                } else {
                    ids.iter()
                        .map(|&i| i as usize)
                        .filter(|&i| i < shape[1])
                        .collect()
                };
                for c in cols {
                    let v: Vec<f64> = (0..shape[0])
                        .map(|r| data[r * shape[1] + c] as f64)
                        .collect();
                    for x in &v {
                        lo = lo.min(*x);
                        hi = hi.max(*x);
                    }
                    series.push((format!("{group}[{c}]"), time[0], time[2], v));
                }
            }
            if series.is_empty() {
                return Err(Error::Plot(format!(
                    "{} holds no column to draw",
                    file.display()
                )));
            }
            if hi <= lo {
                hi = lo + 1.0;
            }
            frame(
                &mut svg,
                &format!("{var} ({})", short(run)),
                (0.0, t_end),
                (lo, hi),
                "time (ms)",
                var,
            );
            for (k, (name, t0, dt, v)) in series.iter().enumerate() {
                let c = COLOURS[k % COLOURS.len()];
                let pts: Vec<String> = v
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        format!(
                            "{:.2},{:.2}",
                            px(t0 + i as f64 * dt, 0.0, t_end),
                            py(x, lo, hi)
                        )
                    })
                    .collect();
                marks += v.len();
                let _ = writeln!(
                    svg,
                    r#"<polyline class="trace" data-name="{}" fill="none" stroke="{c}" points="{}"/>"#,
                    esc(name),
                    pts.join(" ")
                );
                legend(&mut svg, k, name, c);
            }
        }
        What::Release => {
            let e = h5err(run);
            let f = hdf5::File::open(run).map_err(&e)?;
            let rel = f.group("releases").map_err(|_| {
                Error::Plot(format!(
                    "{} holds no release record: list projections in record.releases",
                    run.display()
                ))
            })?;
            // Per projection: the evoked events' counts per quanta value.
            let mut hists: Vec<(String, Vec<u64>, u64)> = Vec::new();
            for name in rel.member_names().map_err(&e)? {
                let q = rel
                    .dataset(&format!("{name}/quanta"))
                    .and_then(|d| d.read_raw::<f32>())
                    .map_err(&e)?;
                let kind = rel
                    .dataset(&format!("{name}/kind"))
                    .and_then(|d| d.read_raw::<u8>())
                    .map_err(&e)?;
                let mut h: Vec<u64> = Vec::new();
                let mut n = 0;
                for (&x, &k) in q.iter().zip(&kind) {
                    if k != 0 {
                        continue;
                    }
                    // Mean TM releases fractions of a quantum: binned to the nearest.
                    let b = x.round().max(0.0) as usize;
                    if h.len() <= b {
                        h.resize(b + 1, 0);
                    }
                    h[b] += 1;
                    n += 1;
                }
                hists.push((name, h, n));
            }
            let kmax = hists.iter().map(|h| h.1.len()).max().unwrap_or(1).max(1);
            let top = hists
                .iter()
                .flat_map(|h| h.1.iter().copied())
                .max()
                .unwrap_or(1)
                .max(1) as f64;
            frame(
                &mut svg,
                &format!("Evoked release per presynaptic spike ({})", short(run)),
                (-0.5, kmax as f64 - 0.5),
                (0.0, top),
                "quanta released (0 = failure)",
                "presynaptic spikes",
            );
            let np = hists.len().max(1) as f64;
            for (p, (name, h, n)) in hists.iter().enumerate() {
                let c = COLOURS[p % COLOURS.len()];
                let width = (W - L - R) / kmax as f64 / np * 0.8;
                for (k, &count) in h.iter().enumerate() {
                    let x0 = px(k as f64 - 0.4, -0.5, kmax as f64 - 0.5) + p as f64 * width;
                    let y = py(count as f64, 0.0, top);
                    let _ = writeln!(
                        svg,
                        r#"<rect class="bar" data-name="{}" data-quanta="{k}" data-count="{count}" x="{x0:.2}" y="{y:.2}" width="{width:.2}" height="{:.2}" fill="{c}"/>"#,
                        esc(name),
                        H - B - y
                    );
                    marks += 1;
                }
                let failures = h.first().copied().unwrap_or(0);
                let mean = h
                    .iter()
                    .enumerate()
                    .map(|(k, &c)| k as f64 * c as f64)
                    .sum::<f64>()
                    / (*n).max(1) as f64;
                legend(
                    &mut svg,
                    p,
                    &format!(
                        "{name}: {n} spikes, {:.1} % failures, mean {mean:.2} quanta",
                        100.0 * failures as f64 / (*n).max(1) as f64
                    ),
                    c,
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    Ok(Figure { svg, marks })
}

/// The figure as PNG: the SVG rasterised at 1.5× (1350 × 750 pixels) with the system's
/// fonts. Without any TrueType font the labels could not be drawn: that is an error
/// naming the package to install, not a figure without text.
pub fn to_png(svg: &str) -> Result<Vec<u8>, Error> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    if opt.fontdb.is_empty() {
        return Err(Error::Plot(
            "PNG figures need a TrueType font on this system and none was found \
             (Debian/Ubuntu: apt-get install fonts-dejavu-core); or name the output .svg"
                .into(),
        ));
    }
    // The figures ask for the generic "sans-serif", which fontdb maps to Arial by
    // default: map it to a sans face this system has (DejaVu Sans on Debian), else to
    // any face, so the labels are always drawn.
    let family = {
        let names: Vec<String> = opt
            .fontdb
            .faces()
            .flat_map(|f| f.families.iter().map(|(n, _)| n.clone()))
            .collect();
        let pick = |want: &dyn Fn(&str) -> bool| names.iter().find(|n| want(n)).cloned();
        [
            "DejaVu Sans",
            "Liberation Sans",
            "Noto Sans",
            "Arial",
            "Helvetica",
        ]
        .iter()
        .find_map(|w| pick(&|n: &str| n == *w))
        .or_else(|| pick(&|n: &str| n.contains("Sans") && !n.contains("Mono")))
        .or_else(|| names.first().cloned())
    };
    if let Some(f) = family {
        opt.fontdb_mut().set_sans_serif_family(f);
    }
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| Error::Plot(format!("the figure's SVG did not parse: {e}")))?;
    let scale = 1.5f32;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w.max(1), h.max(1))
        .ok_or_else(|| Error::Plot(format!("no {w} x {h} pixel image")))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| Error::Plot(format!("PNG encoding failed: {e}")))
}

/// A sweep's index table (`DIR/index.csv` of `quantal sweep`): column names and the
/// fields of each row, as text.
#[derive(Debug, Clone)]
pub struct SweepTable {
    /// Column names.
    pub columns: Vec<String>,
    /// One entry per run.
    pub rows: Vec<Vec<String>>,
}

/// Splits one CSV line into fields ("..." quotes a field with commas).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            _ => out.last_mut().expect("one field at least").push(c),
        }
    }
    out
}

/// Reads a sweep's index table from its directory or from the CSV file itself.
pub fn read_sweep(path: &Path) -> Result<SweepTable, Error> {
    let file = if path.is_dir() {
        path.join("index.csv")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Error::Plot(format!(
            "{}: {e} (expected the index.csv of `quantal sweep`)",
            file.display()
        ))
    })?;
    let mut lines = text.lines();
    let columns = lines.next().map(csv_fields).unwrap_or_default();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(csv_fields)
        .collect();
    Ok(SweepTable { columns, rows })
}

/// One point of a sweep figure: x, the mean of y over the runs at x, its standard error
/// (0 for a single run) and the number of runs.
pub type SweepPoint = (f64, f64, f64, usize);

/// The points of column `y` against column `x` of a sweep table: runs with the same x
/// (the seeds of a point) are averaged; runs without a value of y (failed) are left out.
pub fn sweep_points(t: &SweepTable, x: &str, y: &str) -> Result<Vec<SweepPoint>, Error> {
    let col = |name: &str| {
        t.columns.iter().position(|c| c == name).ok_or_else(|| {
            Error::Plot(format!(
                "the sweep has no column `{name}`; its columns: {}",
                t.columns.join(", ")
            ))
        })
    };
    let (cx, cy) = (col(x)?, col(y)?);
    let mut groups: Vec<(f64, Vec<f64>)> = Vec::new();
    for (r, row) in t.rows.iter().enumerate() {
        let field = |c: usize| row.get(c).map(|s| s.trim()).unwrap_or("");
        let xv: f64 = field(cx).parse().map_err(|_| {
            Error::Plot(format!(
                "row {} of the sweep: `{x}` = `{}` is not a number",
                r + 1,
                field(cx)
            ))
        })?;
        let Ok(yv) = field(cy).parse::<f64>() else {
            continue;
        };
        if !yv.is_finite() {
            continue;
        }
        match groups.iter_mut().find(|g| g.0 == xv) {
            Some(g) => g.1.push(yv),
            None => groups.push((xv, vec![yv])),
        }
    }
    groups.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(groups
        .into_iter()
        .map(|(xv, ys)| {
            let n = ys.len();
            let mean = ys.iter().sum::<f64>() / n as f64;
            let se = if n > 1 {
                (ys.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>()
                    / (n - 1) as f64
                    / n as f64)
                    .sqrt()
            } else {
                0.0
            };
            (xv, mean, se, n)
        })
        .collect())
}

/// Least-squares slope of log10 y against log10 x (the exponent of a power law).
pub fn log_slope(points: &[SweepPoint]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0 > 0.0 && p.1 > 0.0)
        .map(|p| (p.0.log10(), p.1.log10()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Column `y` of a sweep (its directory or index.csv) against the swept column `x`: one
/// point per value of x with the mean over its seeds and ± 1 SE bars. With `log` both
/// axes are log10 and the legend gives the least-squares slope (a power law's exponent,
/// as of the Dodge-Rahamimoff curve).
pub fn plot_sweep(path: &Path, x: &str, y: &str, log: bool) -> Result<Figure, Error> {
    let t = read_sweep(path)?;
    let points = sweep_points(&t, x, y)?;
    if points.is_empty() {
        return Err(Error::Plot(format!(
            "the sweep has no run with a value of `{y}`"
        )));
    }
    if log && points.iter().any(|p| p.0 <= 0.0 || p.1 <= 0.0) {
        return Err(Error::Plot(format!(
            "--log needs positive `{x}` and `{y}`; the sweep has zeros or negatives"
        )));
    }
    let f = |v: f64| if log { v.log10() } else { v };
    let (mut x0, mut x1) = (f(points[0].0), f(points[points.len() - 1].0));
    let mut y0 = f64::INFINITY;
    let mut y1 = f64::NEG_INFINITY;
    for p in &points {
        let lo = if log {
            (p.1 - p.2).max(p.1 * 0.5)
        } else {
            p.1 - p.2
        };
        y0 = y0.min(f(lo));
        y1 = y1.max(f(p.1 + p.2));
    }
    if !log {
        y0 = y0.min(0.0);
    }
    let pad = |a: &mut f64, b: &mut f64| {
        let d = (*b - *a).abs().max(1e-9) * 0.05;
        *a -= d;
        *b += d;
    };
    pad(&mut x0, &mut x1);
    pad(&mut y0, &mut y1);
    let (xl, yl) = if log {
        (format!("log10 {x}"), format!("log10 {y}"))
    } else {
        (x.to_string(), y.to_string())
    };
    let mut svg = String::new();
    let runs: usize = points.iter().map(|p| p.3).sum();
    frame(
        &mut svg,
        &format!("{y} against {x} ({runs} runs, mean ± SE)"),
        (x0, x1),
        (y0, y1),
        &xl,
        &yl,
    );
    let c = COLOURS[0];
    let pts: Vec<String> = points
        .iter()
        .map(|p| format!("{:.2},{:.2}", px(f(p.0), x0, x1), py(f(p.1), y0, y1)))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{c}" points="{}"/>"#,
        pts.join(" ")
    );
    for p in &points {
        let (cx, cy) = (px(f(p.0), x0, x1), py(f(p.1), y0, y1));
        if p.2 > 0.0 {
            let lo = if log {
                (p.1 - p.2).max(p.1 * 0.5)
            } else {
                p.1 - p.2
            };
            let _ = writeln!(
                svg,
                r#"<line class="se" x1="{cx:.2}" y1="{:.2}" x2="{cx:.2}" y2="{:.2}" stroke="{c}"/>"#,
                py(f(lo), y0, y1),
                py(f(p.1 + p.2), y0, y1)
            );
        }
        let _ = writeln!(
            svg,
            r#"<circle class="point" data-x="{}" data-mean="{}" data-se="{}" data-n="{}" cx="{cx:.2}" cy="{cy:.2}" r="4" fill="{c}"/>"#,
            p.0, p.1, p.2, p.3
        );
    }
    let label = match (log, log_slope(&points)) {
        (true, Some(s)) => format!("{y}: log-log slope {s:.2}"),
        _ => y.to_string(),
    };
    legend(&mut svg, 0, &label, c);
    svg.push_str("</svg>\n");
    Ok(Figure {
        svg,
        marks: points.len(),
    })
}
