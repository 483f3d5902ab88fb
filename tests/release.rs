//! Presynaptic validation targets: binomial quantal statistics (§8a), the
//! Dodge-Rahamimoff law (§8b), paired-pulse ratios (§8c), Tsodyks-Markram (§8d, §3.3),
//! vesicle conservation, spontaneous release, exact delays, AChE knock-out (§8i), and the
//! determinism contract.

use crate::common::{backend, backend_with, mean_se, run, Tolerance};
use quantal::backend::cpu::release::ca_release_probability;
use quantal::backend::cpu::CpuBackend;
use quantal::backend::{Backend, Probe, SynVar};
use quantal::model::Model;
use std::path::Path;

/// `n_pre` spike sources firing at `spikes_ms`, all-to-all onto `n_post` silent cells
/// (receptor g_max 0), so every synapse is an independent trial with its own stream.
pub fn trials(n_pre: u32, n_post: u32, spikes_ms: &str, synapse: &str) -> String {
    format!(
        r#"
version = 1
[simulation]
dt_ms = 0.1
duration_ms = 2000.0
seed = 11
[[populations]]
name = "pre"
size = {n_pre}
model = "spike_times"
[populations.spike_times]
times_ms = {spikes_ms}
[[populations]]
name = "post"
size = {n_post}
model = "lif"
[[synapse_types]]
name = "s"
transmitter = "glutamate"
{synapse}
[[synapse_types.receptors]]
kind = "ampa"
g_max_ns = 0.0
[[projections]]
name = "p"
source = "pre"
target = "post"
synapse = "s"
rule = "all_to_all"
delay_ms = 0.1
"#
    )
}

/// CA release with the §8b/§8c conditions: no asynchronous or spontaneous release,
/// reserve untracked, kmax 30/s (defaults otherwise).
pub fn ca(extra: &str) -> String {
    format!("release = \"ca\"\n[synapse_types.ca]\n{extra}\n[synapse_types.vesicles]\nasync_rho = 0.0\nspont_rate_per_s = 0.0\n")
}

/// Quanta released per synapse in the step just computed.
fn released_now(b: &CpuBackend) -> Vec<f64> {
    released_in(b.state_ref(), b.network().n_synapses())
}

/// Quanta released per synapse in the last step of state `st` (either backend's).
pub fn released_in(st: &quantal::state::State, n_synapses: u32) -> Vec<f64> {
    let mut k = vec![0.0; n_synapses as usize];
    for slot in &st.active.slots {
        k[slot.syn as usize] = slot.released as f64;
    }
    k
}

/// §8a: the mean, variance and failure rate of binomial(N = n, p) release counts `k`,
/// each within 4 SE; returns (mean, variance, failure count).
pub fn check_binomial(k: &[f64], n: u32, p: f64) -> (f64, f64, f64) {
    let m = k.len() as f64;
    let (mean, se) = mean_se(k);
    let nf = n as f64;
    assert!(
        (mean - nf * p).abs() < 4.0 * se,
        "N={n} p={p}: mean {mean} vs {} (SE {se})",
        nf * p
    );
    let var = k.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1.0);
    let mu4 = k.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / m;
    let se_var = ((mu4 - var * var) / m).sqrt();
    let var_want = nf * p * (1.0 - p);
    assert!(
        (var - var_want).abs() < 4.0 * se_var,
        "variance {var} vs {var_want} (SE {se_var})"
    );
    let n0 = k.iter().filter(|&&x| x == 0.0).count() as f64;
    let p0 = (1.0 - p).powi(n as i32);
    let se0 = (p0 * (1.0 - p0) / m).sqrt();
    assert!(
        (n0 / m - p0).abs() < 4.0 * se0,
        "failure rate {} vs {p0}",
        n0 / m
    );
    (mean, var, n0)
}

/// §8a: binomial statistics of k for (N = 5, p = 0.3) and (N = 10, p = 0.5), M = 10^5
/// trials, each within 4 SE: mean, variance, failure rate, method of failures, and a
/// χ² goodness of fit of P(k).
#[test]
fn binomial_quantal_statistics() {
    for (n, p, m_hat_want) in [(5u32, 0.3f64, 1.783f64), (10, 0.5, 6.93)] {
        let mut b = backend(&trials(
            100,
            1000,
            "[0.0]",
            &ca(&format!("n_sites = {n}\np_ref = {p}")),
        ));
        run(&mut b, 2);
        let k = released_now(&b);
        let m = k.len() as f64;
        assert_eq!(m, 1e5);
        let nf = n as f64;
        let (mean, var, n0) = check_binomial(&k, n, p);
        let cv = var.sqrt() / mean;
        Tolerance::rel(0.02).check("CV", cv, ((1.0 - p) / (nf * p)).sqrt());
        let p0 = (1.0 - p).powi(n as i32);
        let m_hat = (m / n0).ln();
        let se_m = ((1.0 - p0) / (m * p0)).sqrt();
        assert!(
            (m_hat - m_hat_want).abs() < 4.0 * se_m + 0.005,
            "method of failures {m_hat} vs {m_hat_want}"
        );
        // χ², 5 bins (k = 0..3 and ≥ 4 for N = 5; centred bins for N = 10), df = 4: < 18.47 (p = 0.001).
        let binom = |j: u32| {
            let c = (0..j).fold(1.0, |a, i| a * (nf - i as f64) / (i as f64 + 1.0));
            c * p.powi(j as i32) * (1.0 - p).powi((n - j) as i32)
        };
        let edges: Vec<(u32, u32)> = if n == 5 {
            vec![(0, 0), (1, 1), (2, 2), (3, 3), (4, 5)]
        } else {
            vec![(0, 3), (4, 4), (5, 5), (6, 6), (7, 10)]
        };
        let chi2: f64 = edges
            .iter()
            .map(|&(a, z)| {
                let obs = k
                    .iter()
                    .filter(|&&x| x as u32 >= a && x as u32 <= z)
                    .count() as f64;
                let exp = m * (a..=z).map(binom).sum::<f64>();
                (obs - exp).powi(2) / exp
            })
            .sum();
        assert!(chi2 < 18.47, "chi2 {chi2} for N={n} p={p}");
    }
}

/// §8a variance-mean parabola: sweeping [Ca]o moves p; σ² = q·μ - μ²/N holds (q = 1).
#[test]
fn variance_mean_parabola() {
    for ca_mm in ["1.0", "2.0", "4.0"] {
        let set = format!("environment.ca_o_mm={ca_mm}");
        let mut b = backend_with(&trials(100, 500, "[0.0]", &ca("n_sites = 8")), &[&set]);
        run(&mut b, 2);
        let k = released_now(&b);
        let m = k.len() as f64;
        let (mu, _) = mean_se(&k);
        let var = k.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (m - 1.0);
        let mu4 = k.iter().map(|x| (x - mu).powi(4)).sum::<f64>() / m;
        let se = ((mu4 - var * var) / m).sqrt();
        let want = mu - mu * mu / 8.0;
        assert!(
            (var - want).abs() < 4.0 * se + 0.01,
            "[Ca]o {ca_mm}: var {var} vs parabola {want}"
        );
    }
}

/// §8b: first-AP p_v versus [Ca]o through the whole parameter path (file, override,
/// model, kernel function), within 1e-4 relative of the table; the local log-log slope
/// within ±0.05 of the analytic value.
#[test]
fn dodge_rahamimoff_fourth_power() {
    let table = [
        (0.1, 1.59761e-5, 3.8554),
        (0.2, 2.21728e-4, 3.7201),
        (0.25, 5.05008e-4, 3.6553),
        (0.5, 5.78437e-3, 3.3489),
        (1.0, 0.0492370, 2.7659),
        (1.5, 0.135862, 2.2122),
        (2.0, 0.240000, 1.7371),
        (3.0, 0.423739, 1.0847),
        (4.0, 0.548153, 0.7230),
        (8.0, 0.747587, 0.2524),
    ];
    let text = trials(1, 1, "[0.0]", &ca(""));
    let p_at = |ca_mm: f64| {
        let set = vec![format!("environment.ca_o_mm={ca_mm:?}")];
        let loaded = quantal::netfile::load_str(&text, Path::new("dr.toml"), &set).unwrap();
        let model = Model::from_spec(&loaded.file);
        ca_release_probability(&model.syn_types[0].gpu, 0.0) as f64
    };
    for (ca_mm, p_want, slope_want) in table {
        Tolerance::rel(1e-4).check(&format!("p_v at {ca_mm} mM"), p_at(ca_mm), p_want);
        let h = 0.01;
        let slope = (p_at(ca_mm * (1.0 + h)).ln() - p_at(ca_mm * (1.0 - h)).ln())
            / ((1.0 + h) / (1.0 - h)).ln();
        Tolerance::abs(0.05).check(&format!("log-log slope at {ca_mm} mM"), slope, slope_want);
    }
    // Mg2+ lowers release without changing the low-[Ca]o slope much (Dodge & Rahamimoff 1967).
    let loaded = quantal::netfile::load_str(
        &text,
        Path::new("dr.toml"),
        &[
            "environment.ca_o_mm=0.2".into(),
            "environment.mg_o_mm=4.0".into(),
        ],
    )
    .unwrap();
    let p_mg = ca_release_probability(&Model::from_spec(&loaded.file).syn_types[0].gpu, 0.0) as f64;
    assert!(p_mg < p_at(0.2));
}

/// §8c: stochastic paired-pulse ratio of the CA default model against the reference
/// per-site Monte Carlo (PPR(20) = 2.1978 ± 0.0031, PPR(100) = 1.9764 ± 0.0029), 4 SE.
#[test]
fn paired_pulse_ratio_ca_default() {
    for (interval, want, want_se) in [(20.0, 2.1978, 0.0031), (100.0, 1.9764, 0.0029)] {
        let mut b = backend(&trials(100, 1000, &format!("[0.0, {interval:?}]"), &ca("")));
        run(&mut b, 2);
        let k1 = released_now(&b);
        run(&mut b, (interval / 0.1) as u32);
        let k2 = released_now(&b);
        let m = k1.len() as f64;
        let (m1, _) = mean_se(&k1);
        let (m2, _) = mean_se(&k2);
        let v1 = k1.iter().map(|x| (x - m1).powi(2)).sum::<f64>() / m;
        let v2 = k2.iter().map(|x| (x - m2).powi(2)).sum::<f64>() / m;
        let c12 = k1
            .iter()
            .zip(&k2)
            .map(|(a, b)| (a - m1) * (b - m2))
            .sum::<f64>()
            / m;
        let r = m2 / m1;
        let se = r * (v2 / (m * m2 * m2) + v1 / (m * m1 * m1) - 2.0 * c12 / (m * m1 * m2)).sqrt();
        let tol = 4.0 * (se * se + want_se * want_se).sqrt();
        assert!(
            (r - want).abs() < tol,
            "PPR({interval}) = {r} ± {se}, reference {want} ± {want_se}"
        );
    }
}

/// TM recursion (Appendix A) in f64 for the expected values.
pub fn tm_reference(u0: f64, d: f64, f: f64, isi: f64, n: usize) -> Vec<f64> {
    let (mut u, mut x) = (u0, 1.0);
    let mut out = vec![u * x];
    for _ in 1..n {
        x = 1.0 + (x - x * u - 1.0) * (-isi / d).exp();
        u = u0 + u * (1.0 - u0) * if f > 0.0 { (-isi / f).exp() } else { 0.0 };
        out.push(u * x);
    }
    out
}

/// Amplitudes (quanta per spike) of one tm_mean synapse driven at `rate_hz`.
pub(crate) fn tm_mean_amplitudes(u: f64, d: f64, f: f64, rate_hz: f64, pulses: usize) -> Vec<f64> {
    let isi = 1000.0 / rate_hz;
    let times: Vec<String> = (0..pulses)
        .map(|k| format!("{:?}", k as f64 * isi))
        .collect();
    let text = trials(1, 1, &format!("[{}]", times.join(", ")), &format!("release = \"tm_mean\"\n[synapse_types.tm]\nn_sites = 1\nu = {u}\ntau_rec_ms = {d}\ntau_fac_ms = {f}\n"))
        .replace("duration_ms = 2000.0", &format!("duration_ms = {}", isi * pulses as f64 + 10.0));
    let mut b = backend(&text);
    let steps = ((isi * pulses as f64) / 0.1) as u32 + 5;
    let mut amps = Vec::new();
    for _ in 0..steps {
        b.step().unwrap();
        let q = b.quanta_last_step();
        if q > 0.0 {
            amps.push(q);
        }
    }
    assert_eq!(amps.len(), pulses);
    amps
}

/// §8d: steady-state A_ss/A_1 of the mean TM versus frequency (all five parameter sets
/// of the table), the 20 Hz train, and the 1/f limit of depressing synapses.
#[test]
fn tsodyks_markram_steady_state() {
    let rates = [1.0, 5.0, 10.0, 20.0, 40.0, 100.0];
    let table: [((f64, f64, f64), [f64; 6]); 5] = [
        (
            (0.5, 800.0, 0.0),
            [0.8328, 0.3623, 0.2103, 0.1143, 0.0597, 0.0245],
        ),
        (
            (0.5, 671.0, 17.0),
            [0.8730, 0.4099, 0.2433, 0.1345, 0.0711, 0.0294],
        ),
        (
            (0.25, 706.0, 21.0),
            [0.9259, 0.5671, 0.3793, 0.2306, 0.1297, 0.0554],
        ),
        (
            (0.03, 130.0, 530.0),
            [1.1723, 2.9146, 4.4905, 5.5162, 4.6259, 2.3623],
        ),
        (
            (0.09, 138.0, 670.0),
            [1.2571, 2.8372, 3.3249, 2.7659, 1.7346, 0.7686],
        ),
    ];
    for ((u, d, f), want) in table {
        for (k, &rate) in rates.iter().enumerate() {
            let pulses = if rate < 2.0 { 60 } else { 400 };
            let a = tm_mean_amplitudes(u, d, f, rate, pulses);
            Tolerance::printed(4).check(
                &format!("A_ss/A_1 for ({u}, {d}, {f}) at {rate} Hz"),
                a[pulses - 1] / a[0],
                want[k],
            );
        }
    }
    let a = tm_mean_amplitudes(0.5, 800.0, 0.0, 20.0, 10);
    for (n, w) in [
        1.000, 0.530, 0.310, 0.206, 0.157, 0.135, 0.124, 0.119, 0.116, 0.115,
    ]
    .iter()
    .enumerate()
    {
        Tolerance::printed(3).check(&format!("20 Hz train pulse {}", n + 1), a[n] / a[0], *w);
    }
    // 1/f: A_ss/A_SE → 1/(f τ_rec); within 10 % for f ≥ 16.9 Hz, not at 10 Hz.
    for (rate, within) in [(10.0, false), (20.0, true), (40.0, true), (100.0, true)] {
        let a = tm_mean_amplitudes(0.5, 800.0, 0.0, rate, 400);
        let ratio = a[399] / (1000.0 / (rate * 800.0));
        assert_eq!(
            (ratio - 1.0).abs() < 0.1,
            within,
            "{rate} Hz: A_ss·f·τ_rec/A_SE = {ratio}"
        );
        if rate == 100.0 {
            // The spec prints 0.01225 (= 0.5 × the rounded table value 0.0245); the closed
            // form gives 0.012270, so compare at the table's precision.
            Tolerance::printed(4).check("A_ss/A_SE at 100 Hz", a[399], 0.01225);
        }
    }
}

/// §3.3/§8i: the stochastic per-site TM mean equals the deterministic TM (Monte Carlo
/// numbers of §3.3), within 4 SE, for a depressing and a facilitating set.
#[test]
fn tm_stochastic_mean_equals_tm() {
    for (u, d, f, rate) in [(0.5, 800.0, 0.0, 20.0), (0.1, 100.0, 500.0, 50.0)] {
        let isi = 1000.0 / rate;
        let times: Vec<String> = (0..5).map(|k| format!("{:?}", k as f64 * isi)).collect();
        let syn = format!("release = \"tm_stochastic\"\n[synapse_types.tm]\nn_sites = 10\nu = {u}\ntau_rec_ms = {d}\ntau_fac_ms = {f}\n");
        let mut b = backend(&trials(20, 1000, &format!("[{}]", times.join(", ")), &syn));
        let want = tm_reference(u, d, f, isi, 5);
        run(&mut b, 1);
        for (n, w) in want.iter().enumerate() {
            run(&mut b, 1);
            let k: Vec<f64> = released_now(&b).iter().map(|x| x / 10.0).collect();
            let (m, se) = mean_se(&k);
            assert!(
                (m - w).abs() < 4.0 * se,
                "({u}, {d}, {f}) pulse {}: {m} ± {se} vs TM {w}",
                n + 1
            );
            run(&mut b, (isi / 0.1) as u32 - 1);
        }
    }
}

/// §8i vesicle conservation with every pool on: occupied + R + E (committed sites are
/// occupied until they fuse) stays N + R_0 at every step, through synchronous,
/// asynchronous and spontaneous release, refilling and recycling.
#[test]
fn vesicle_conservation() {
    let spikes: Vec<String> = (0..60).map(|k| format!("{:?}", k as f64 * 10.0)).collect();
    let syn = "release = \"ca\"\n[synapse_types.ca]\nn_sites = 8\np_ref = 0.5\n[synapse_types.vesicles]\nreserve_size = 12\ntau_endo_ms = 50.0\nasync_rho = 2.0\ntau_async_ms = 5.0\nspont_rate_per_s = 50.0\n";
    let mut b = backend(&trials(10, 20, &format!("[{}]", spikes.join(", ")), syn));
    let mut async_fused = 0.0;
    let mut saw_async = false;
    for _ in 0..8000 {
        b.step().unwrap();
        let st = b.state_ref();
        for i in 0..st.term.len() {
            let total = st.term[i].sites.count_ones() + st.reserve[i] + st.endo[i];
            assert_eq!(
                total,
                8 + 12,
                "synapse {i} at step {}: sites {:b} reserve {} endo {}",
                st.step,
                st.term[i].sites,
                st.reserve[i],
                st.endo[i]
            );
            assert_eq!(
                st.committed[i] & !st.term[i].sites,
                0,
                "committed sites must be occupied"
            );
            saw_async |= st.committed[i] != 0;
        }
        async_fused += b.quanta_last_step();
    }
    assert!(
        saw_async && async_fused > 0.0,
        "the protocol must exercise asynchronous release"
    );
}

/// Regression (correctness issue, item 2): a terminal whose X_D⁺ is an f32 subnormal
/// (reached when a miniature fusion advances a long-silent terminal without a Ca jump)
/// made K_D/X_D overflow, the refill factor η NaN and P_fill NaN, so no empty site
/// refilled at the next advance. After 10 s of silence every empty site refills
/// (P_fill = 1 - e^{-k0·10 s} ≈ 1 - 2e-9), and X_D decays to exactly 0 (flushed).
#[test]
fn refilling_survives_ten_seconds_of_silence() {
    use quantal::backend::cpu::terminal::advance_terminal;
    let syn = "release = \"ca\"\n[synapse_types.ca]\nn_sites = 8\np_ref = 0.5\n\
               [synapse_types.vesicles]\nasync_rho = 0.0\nspont_rate_per_s = 0.0\n";
    let mut b = backend(&trials(10, 10, "[0.0]", syn));
    let model = b.model().clone();
    let ty = model.syn_types[0].gpu;
    for x_d in [1e-40f32, 3e-39, 1e-45, 0.0] {
        let st = b.state_mut();
        for i in 0..st.term.len() {
            st.term[i].sites = 0;
            st.term[i].x_d = x_d;
            st.term[i].t_last = 0;
        }
        let ns = b.state_ref().term.len();
        let mut all = b.state_mut().terminals(&[0, ns]);
        for syn in 0..100u32 {
            advance_terminal(
                model.seed,
                &ty,
                &model.pow_tables,
                syn,
                100_000,
                &mut all[0],
            );
        }
        let st = b.state_ref();
        for i in 0..100 {
            assert_eq!(
                st.term[i].sites, 0xFF,
                "X_D⁺ = {x_d:e}: synapse {i} sites {:b}",
                st.term[i].sites
            );
            assert_eq!(st.term[i].x_d, 0.0, "X_D after 10 s");
        }
    }
}

/// §8i spontaneous release: no APs, fast refilling (k0 = 1000/s); minis per synapse per
/// second = λ_s·N·P(docked) with P(docked) = k0/(k0 + λ_s), within 4 SE.
#[test]
fn spontaneous_release_rate() {
    let lambda = 20.0;
    let syn = format!("release = \"ca\"\n[synapse_types.ca]\nn_sites = 5\nk0_per_s = 1000.0\nkmax_per_s = 1000.0\n[synapse_types.vesicles]\nasync_rho = 0.0\nspont_rate_per_s = {lambda}\n");
    let text = trials(100, 2, "[]", &syn).replace("duration_ms = 2000.0", "duration_ms = 5000.0");
    let mut b = backend(&text);
    let mut minis = 0.0;
    run(&mut b, 1);
    for _ in 0..50_000 {
        b.step().unwrap();
        minis += b.quanta_last_step();
    }
    let t_s = 5.0;
    let want = lambda * 5.0 * 1000.0 / (1000.0 + lambda) * 200.0 * t_s;
    assert!(
        (minis - want).abs() < 4.0 * want.sqrt(),
        "minis {minis} vs {want}"
    );
}

/// §8i: a spike emitted at step s arrives at step s + delay_steps exactly: no loss, no
/// double delivery, across many wraps of the delay ring.
#[test]
fn delays_are_exact_across_ring_wrap() {
    let delays = [0.1, 0.7, 2.3, 6.4, 6.5, 30.0];
    let spike_steps: Vec<u32> = vec![0, 1, 2, 5, 64, 65, 300, 301, 302, 601, 900, 1203, 1499];
    let times: Vec<String> = spike_steps
        .iter()
        .map(|s| format!("{:?}", *s as f64 * 0.1))
        .collect();
    let mut text = trials(
        1,
        1,
        &format!("[{}]", times.join(", ")),
        "release = \"tm_mean\"\n[synapse_types.tm]\nn_sites = 1\nu = 1.0\ntau_rec_ms = 0.001\n",
    );
    text = text.split("[[projections]]").next().unwrap().to_string();
    for (k, d) in delays.iter().enumerate() {
        text.push_str(&format!("[[projections]]\nname = \"d{k}\"\nsource = \"pre\"\ntarget = \"post\"\nsynapse = \"s\"\nrule = \"all_to_all\"\ndelay_ms = {d}\n"));
    }
    let mut b = backend(&text);
    assert_eq!(b.state_ref().ring.len(), 301);
    let mut got = Vec::new();
    for _ in 0..2000 {
        let s = b.step_index();
        b.step().unwrap();
        for (syn, k) in released_now(&b).iter().enumerate() {
            assert!(*k == 0.0 || *k == 1.0, "double delivery at step {s}");
            if *k > 0.0 {
                got.push((s, b.network().syn_delay[syn] as u32));
            }
        }
    }
    let mut want = Vec::new();
    for &s in &spike_steps {
        for d in delays {
            let steps = (d / 0.1f64).round() as u32;
            if s + steps < 2000 {
                want.push((s + steps, steps));
            }
        }
    }
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
}

fn nach(k_enzyme: f64) -> Vec<f64> {
    let text = trials(1, 1, "[0.0]", &format!("release = \"tm_mean\"\n[synapse_types.tm]\nn_sites = 1\nu = 1.0\n[synapse_types.cleft]\nk_enzyme_per_ms = {k_enzyme}\n"))
        .replace("transmitter = \"glutamate\"", "transmitter = \"acetylcholine\"")
        .replace("kind = \"ampa\"", "kind = \"nach\"");
    let mut b = backend(&text);
    run(&mut b, 1);
    let mut buf = Vec::new();
    (0..300)
        .map(|_| {
            b.step().unwrap();
            b.sample(&[Probe::Synapse(SynVar::R(0), 0)], &mut buf)
                .unwrap();
            buf[0] as f64
        })
        .collect()
}

/// §4.2/§8i: blocking acetylcholinesterase (k_enz → 0) prolongs the nicotinic response
/// toward the diffusion-limited time course: larger charge, later half decay.
#[test]
fn ache_knockout_prolongs_nach_current() {
    let with = nach(7.0);
    let without = nach(0.0);
    let charge = |x: &[f64]| x.iter().sum::<f64>() * 0.1;
    let half_decay = |x: &[f64]| {
        let (ip, p) = x
            .iter()
            .enumerate()
            .fold((0, 0.0), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        (ip..x.len()).find(|&i| x[i] < 0.5 * p).unwrap() as f64 * 0.1
    };
    assert!(
        charge(&without) > 2.0 * charge(&with),
        "charge {} vs {}",
        charge(&without),
        charge(&with)
    );
    assert!(
        half_decay(&without) > half_decay(&with) + 0.5,
        "half decay {} vs {}",
        half_decay(&without),
        half_decay(&with)
    );
}

pub(crate) const RICH: &str = r#"
version = 1
[simulation]
dt_ms = 0.1
duration_ms = 100.0
seed = 5
[[populations]]
name = "src"
size = 30
model = "poisson"
[populations.poisson]
rate_hz = 80.0
[[populations]]
name = "lif"
size = 20
model = "lif"
[[populations]]
name = "hh"
size = 5
model = "hh"
[[synapse_types]]
name = "glu"
transmitter = "glutamate"
[synapse_types.vesicles]
reserve_size = 30
async_rho = 0.5
spont_rate_per_s = 5.0
[[synapse_types.receptors]]
kind = "ampa"
g_max_ns = 3.0
[[synapse_types.receptors]]
kind = "nmda"
[[synapse_types]]
name = "gaba"
transmitter = "gaba"
release = "tm_stochastic"
[[synapse_types.receptors]]
kind = "gaba_a"
[[synapse_types.receptors]]
kind = "gaba_b"
[[projections]]
source = "src"
target = "lif"
synapse = "glu"
rule = "fixed_probability"
p = 0.5
delay_ms = { dist = "uniform", low = 0.1, high = 3.0 }
[[projections]]
source = "lif"
target = "hh"
synapse = "gaba"
rule = "fixed_indegree"
indegree = 4
[[projections]]
source = "src"
target = "hh"
synapse = "glu"
rule = "all_to_all"
weight = 4.0
"#;

/// Determinism contract: same file and seed → the same bits; another seed → another
/// release sequence.
#[test]
fn same_seed_same_bits_other_seed_other_release() {
    let go = |seed: &str| {
        let mut b = backend_with(RICH, &[seed]);
        let mut q = Vec::new();
        for _ in 0..1000 {
            b.step().unwrap();
            q.push(b.quanta_last_step());
        }
        (b.state_ref().clone(), q)
    };
    let (a, qa) = go("simulation.seed=5");
    let (b, qb) = go("simulation.seed=5");
    assert!(a == b, "two runs with the same seed differ");
    assert_eq!(qa, qb);
    assert!(qa.iter().sum::<f64>() > 100.0, "the network must release");
    let (c, qc) = go("simulation.seed=6");
    assert_ne!(qa, qc, "different seeds gave the same release sequence");
    assert!(a != c);
}

/// §3.4 asynchronous release: after one AP each still-docked site commits with
/// P_a = 1 - e^{-ρ_a·p}; every committed site fuses later, after an Exp(τ_a) latency.
#[test]
fn asynchronous_release_fraction_and_latency() {
    let (n, p, rho, tau): (f64, f64, f64, f64) = (10.0, 0.3, 0.5, 30.0);
    let syn = format!("release = \"ca\"\n[synapse_types.ca]\nn_sites = 10\np_ref = {p}\n[synapse_types.vesicles]\nasync_rho = {rho}\ntau_async_ms = {tau}\nspont_rate_per_s = 0.0\n");
    let mut b = backend(&trials(50, 400, "[0.0]", &syn));
    run(&mut b, 2);
    let committed: Vec<f64> = b
        .state_ref()
        .committed
        .iter()
        .map(|c| c.count_ones() as f64)
        .collect();
    let (m, se) = mean_se(&committed);
    let want = n * (1.0 - p) * (1.0 - (-rho * p).exp());
    assert!(
        (m - want).abs() < 4.0 * se,
        "committed per synapse {m} ± {se} vs {want}"
    );
    let total: f64 = committed.iter().sum();
    let mut latencies = Vec::new();
    for _ in 0..(20.0 * tau / 0.1) as u32 {
        let s = b.step_index();
        b.step().unwrap();
        for k in released_now(&b) {
            for _ in 0..k as u32 {
                latencies.push((s - 1) as f64 * 0.1);
            }
        }
    }
    assert_eq!(
        latencies.len() as f64,
        total,
        "every committed site fuses once"
    );
    let (ml, sel) = mean_se(&latencies);
    assert!(
        (ml - tau).abs() < 4.0 * sel + 0.05,
        "mean latency {ml} ± {sel} ms vs τ_a {tau}"
    );
    assert!(b.state_ref().committed.iter().all(|&c| c == 0));
}
