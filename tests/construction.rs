//! Network construction: connection rules, autapses, distance-dependent probability,
//! delays from distance and conduction velocity (§7), positions, Poisson sources.

use crate::common::{backend, mean_se};
use quantal::backend::Backend;

fn net(pops: &str, projections: &str) -> String {
    format!(
        "version = 1\n[simulation]\nduration_ms = 100.0\nseed = 3\n{pops}\n[[synapse_types]]\nname = \"glu\"\ntransmitter = \"glutamate\"\n[[synapse_types.receptors]]\nkind = \"ampa\"\ng_max_ns = 0.0\n{projections}"
    )
}

fn pop(name: &str, size: u32, extra: &str) -> String {
    format!("[[populations]]\nname = \"{name}\"\nsize = {size}\nmodel = \"lif\"\n{extra}\n")
}

fn proj(name: &str, src: &str, tgt: &str, rule: &str) -> String {
    format!("[[projections]]\nname = \"{name}\"\nsource = \"{src}\"\ntarget = \"{tgt}\"\nsynapse = \"glu\"\n{rule}\n")
}

#[test]
fn connection_rules() {
    let text = net(
        &(pop("a", 200, "") + &pop("b", 300, "")),
        &(proj("all", "a", "a", "rule = \"all_to_all\"")
            + &proj(
                "one",
                "a",
                "a",
                "rule = \"one_to_one\"\nallow_autapses = true",
            )
            + &proj("prob", "a", "b", "rule = \"fixed_probability\"\np = 0.1")
            + &proj(
                "indeg",
                "b",
                "a",
                "rule = \"fixed_indegree\"\nindegree = 17",
            )
            + &proj(
                "pairs",
                "a",
                "b",
                "rule = \"pairs\"\npairs = [[0, 5], [0, 5], [199, 299]]",
            )),
    );
    let b = backend(&text);
    let n = b.network();
    let count = |name: &str| {
        let p = n.projections.iter().position(|p| p.name == name).unwrap();
        let ids = n.projection_synapses(p);
        assert_eq!(ids.len() as u64, n.projections[p].n_synapses);
        ids.len()
    };
    assert_eq!(count("all"), 200 * 199, "all_to_all without autapses");
    assert_eq!(count("one"), 200);
    let m = count("prob") as f64;
    let (mean, var) = (0.1 * 60_000.0, 0.1 * 0.9 * 60_000.0);
    assert!(
        (m - mean).abs() < 4.0 * f64::sqrt(var),
        "fixed_probability gave {m}, expected {mean}"
    );
    assert_eq!(count("indeg"), 17 * 200);
    assert_eq!(count("pairs"), 3);
    // No autapse in the all-to-all projection, every neuron of `a` gets exactly 17 from `indeg`.
    let sources = n.sources();
    assert!(n
        .projection_synapses(0)
        .iter()
        .all(|&s| sources[s as usize] != n.syn_post[s as usize]));
    let mut per = vec![0u32; 200];
    for &s in &n.projection_synapses(3) {
        per[n.syn_post[s as usize] as usize] += 1;
    }
    assert!(per.iter().all(|&k| k == 17));
    // Post-major ids and consistent CSRs.
    assert!(n.syn_post.windows(2).all(|w| w[0] <= w[1]));
    for post in 0..n.n_neurons() as usize {
        for s in n.in_offsets[post]..n.in_offsets[post + 1] {
            assert_eq!(n.syn_post[s as usize] as usize, post);
        }
    }
    // Every synapse is in one source's outgoing list, and in one projection, which
    // numbers its synapses in ascending id; local ids round-trip.
    let mut seen = vec![0u32; n.n_synapses() as usize];
    for &s in &n.out_syn {
        seen[s as usize] += 1;
    }
    assert!(seen.iter().all(|&k| k == 1));
    let mut total = 0;
    for p in 0..n.projections.len() {
        let ids = n.projection_synapses(p);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for (local, &s) in ids.iter().enumerate() {
            assert_eq!(n.syn_type(s as usize), n.projections[p].syn_type);
            if local % 97 == 0 {
                assert_eq!(n.local_id(s), (p, local as u64));
            }
        }
        total += ids.len();
    }
    assert_eq!(total, n.n_synapses() as usize);
    // The pairs projection in file order: [0, 5] twice, then [199, 299] (ids of `b`
    // follow the 200 of `a`).
    let pairs = n.projection_synapses(4);
    assert_eq!(
        pairs
            .iter()
            .map(|&s| (sources[s as usize], n.syn_post[s as usize]))
            .collect::<Vec<_>>(),
        vec![(0, 205), (0, 205), (199, 499)]
    );
}

/// §7: delay = d_syn + L/v, v = 6 m/s per µm (myelinated) or 1.5·√d m/s (unmyelinated),
/// in steps max(1, round(delay/dt)).
#[test]
fn delays_from_distance_and_conduction_velocity() {
    let pts = "[populations.positions]\nlayout = \"list\"\npoints_um = [[0.0, 0.0, 0.0], [600.0, 0.0, 0.0], [0.0, 3000.0, 4000.0]]";
    let text = net(
        &pop("p", 3, pts),
        &(proj("myel", "p", "p", "rule = \"pairs\"\npairs = [[0, 1], [0, 2]]\n[projections.conduction]\nfibre = \"myelinated\"\ndiameter_um = 1.0")
            + &proj("unmyel", "p", "p", "rule = \"pairs\"\npairs = [[0, 1], [0, 2]]\n[projections.conduction]\nfibre = \"unmyelinated\"\ndiameter_um = 4.0\nsynaptic_delay_ms = 0.5")),
    );
    let b = backend(&text);
    let n = b.network();
    let delays = |name: &str| -> Vec<u16> {
        let p = n.projections.iter().position(|p| p.name == name).unwrap();
        n.projection_synapses(p)
            .iter()
            .map(|&s| n.syn_delay[s as usize])
            .collect()
    };
    // 600 µm at 6 m/s = 0.1 ms (+0.2) → 3 steps; 5000 µm → 0.833 + 0.2 → 10 steps.
    assert_eq!(delays("myel"), vec![3, 10]);
    // v = 1.5·√4 = 3 m/s: 600 µm → 0.2 + 0.5 → 7 steps; 5000 µm → 1.667 + 0.5 → 22 steps.
    assert_eq!(delays("unmyel"), vec![7, 22]);
}

/// Distance-dependent probability on a grid: the connection frequency at a given
/// distance follows p_max·exp(-d²/2σ²).
#[test]
fn gaussian_distance_profile() {
    let grid = "[populations.positions]\nlayout = \"grid\"\nshape = [40, 40, 1]\nspacing_um = 10.0";
    let text = net(&pop("g", 1600, grid), &proj("d", "g", "g", "rule = \"fixed_probability\"\n[projections.distance]\nprofile = \"gaussian\"\np_max = 0.8\nscale_um = 30.0"));
    let b = backend(&text);
    let n = b.network();
    let pos = n.positions[0].as_ref().unwrap();
    for (d, want) in [
        (10.0f64, 0.8 * (-100.0f64 / 1800.0).exp()),
        (30.0, 0.8 * (-0.5f64).exp()),
        (50.0, 0.8 * (-2500.0f64 / 1800.0).exp()),
    ] {
        let (mut pairs, mut hits) = (0.0, 0.0);
        let mut connected = std::collections::HashSet::new();
        for (&pre, &post) in n.sources().iter().zip(&n.syn_post) {
            connected.insert((pre, post));
        }
        for a in 0..1600u32 {
            for b2 in 0..1600u32 {
                if a != b2 && (pos[a as usize].distance(pos[b2 as usize]) - d).abs() < 1e-6 {
                    pairs += 1.0;
                    hits += connected.contains(&(a, b2)) as u32 as f64;
                }
            }
        }
        let f = hits / pairs;
        let se = (want * (1.0 - want) / pairs).sqrt();
        assert!(
            (f - want).abs() < 4.0 * se,
            "at {d} µm: {f} vs {want} ({pairs} pairs)"
        );
    }
}

/// Poisson sources fire at their rate inside their window, and only there.
#[test]
fn poisson_source_rate_and_window() {
    let text = "version = 1\n[simulation]\nduration_ms = 1000.0\n[[populations]]\nname = \"p\"\nsize = 500\nmodel = \"poisson\"\n[populations.poisson]\nrate_hz = 40.0\nstart_ms = 100.0\nstop_ms = 600.0\n";
    let mut b = backend(text);
    let mut counts = vec![0.0f64; 500];
    let mut outside = 0;
    for s in 0..10_000u32 {
        b.step().unwrap();
        for &n in b.spikes() {
            if (1000..6000).contains(&s) {
                counts[n as usize] += 1.0;
            } else {
                outside += 1;
            }
        }
    }
    assert_eq!(outside, 0);
    let rates: Vec<f64> = counts.iter().map(|c| c / 0.5).collect();
    let (m, se) = mean_se(&rates);
    // Per step p = 1 - e^{-λ dt}: mean count per step equals p, so the rate is p/dt ≈ 39.92 Hz.
    let want = (1.0 - (-40.0f64 * 1e-4).exp()) / 1e-4;
    assert!((m - want).abs() < 4.0 * se, "rate {m} ± {se} vs {want}");
}

/// The memory estimate per synapse equals what the CPU state and network allocate: for a
/// network with kinetic receptors, async release and reserve pools, for coba.toml, whose
/// exp receptors never make a synapse active (no hand-off step is kept), for
/// coba_kinetic.toml (the 40 B of a Ca-law AMPA synapse, CPU speed issue), and for
/// brette_coba.toml, whose static release keeps one 8-byte record per synapse.
#[test]
fn memory_estimate_matches_allocation() {
    let coba = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba.toml"),
    )
    .unwrap()
    .replace("size = 3200", "size = 320")
    .replace("size = 800", "size = 80");
    let brette = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/brette_coba.toml"),
    )
    .unwrap()
    .replace("size = 3200", "size = 320")
    .replace("size = 800", "size = 80");
    let kinetic = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba_kinetic.toml"),
    )
    .unwrap()
    .replace("size = 3200", "size = 320")
    .replace("size = 800", "size = 80");
    for (text, want, what) in [
        (
            crate::release::RICH,
            36 + 4 * 2 + 4 + 8,
            "two receptors per type, async and reserve on",
        ),
        (coba.as_str(), 32, "Ca-law release onto exp receptors"),
        (
            kinetic.as_str(),
            40,
            "Ca-law release onto one kinetic receptor (AMPA, GABA_A), with its hand-off step and open fraction",
        ),
        (
            brette.as_str(),
            40,
            "static release onto exp receptors, with its 8-byte records",
        ),
    ] {
        let b = crate::common::backend(text);
        let loaded =
            quantal::netfile::load_str(text, std::path::Path::new("net.toml"), &[]).unwrap();
        let est = quantal::network::estimate(&loaded.file);
        let (n, st) = (b.network(), b.state_ref());
        let ns = n.n_synapses() as usize;
        let bytes = 4 * (n.syn_post.len() + n.syn_weight.len() + n.out_syn.len())
            + 2 * (n.syn_proj.len() + n.syn_delay.len())
            + std::mem::size_of_val(st.term.as_slice())
            + 4 * st.handoff_step.len()
            + 4 * (st.handoff_r.len() + st.committed.len() + st.reserve.len() + st.endo.len())
            + b.static_record_bytes();
        assert_eq!(bytes, ns * est.bytes_per_synapse as usize, "{what}");
        assert_eq!(est.bytes_per_synapse, want, "{what}");
    }
}

/// Regression (correctness issue, item 1): pairs whose probability is astronomically small
/// but not 0 are never connected. Two 2048-cell sheets 7 mm apart with an exponential
/// profile of 10 µm: p ≈ e^-700 ≈ 1e-304 per pair. An f32 uniform that can be exactly 0
/// (once in 2^24 draws) accepted such a pair; the 52-bit open uniform does not.
#[test]
fn astronomically_unlikely_pairs_are_not_connected() {
    let sheet = |x: f64| {
        format!("[populations.positions]\nlayout = \"grid\"\nshape = [64, 32, 1]\nspacing_um = 1.0\norigin_um = [{x}, 0.0, 0.0]")
    };
    let text = net(
        &(pop("a", 2048, &sheet(0.0)) + &pop("b", 2048, &sheet(7000.0))),
        &proj("far", "a", "b", "rule = \"fixed_probability\"\n[projections.distance]\nprofile = \"exponential\"\np_max = 1.0\nscale_um = 10.0"),
    );
    let b = backend(&text);
    assert_eq!(b.network().n_synapses(), 0, "no pair at ~7 mm may connect");
}

/// Regression (correctness issue, item 4): p below ~5e-17 (1 - p rounds to 1) made the
/// geometric skip add zero-length gaps forever. Tiny p now builds (almost surely) nothing.
#[test]
fn tiny_connection_probability_terminates() {
    for p in ["1e-17", "1e-300", "5e-324"] {
        let text = net(
            &(pop("a", 1000, "") + &pop("b", 1000, "")),
            &proj(
                "tiny",
                "a",
                "b",
                &format!("rule = \"fixed_probability\"\np = {p}"),
            ),
        );
        let b = backend(&text);
        assert_eq!(b.network().n_synapses(), 0, "p = {p}");
    }
    // Small but resolvable p still gives the expected count (1e6 pairs, p = 1e-4: 100 ± 10).
    let text = net(
        &(pop("a", 1000, "") + &pop("b", 1000, "")),
        &proj("small", "a", "b", "rule = \"fixed_probability\"\np = 1e-4"),
    );
    let n = backend(&text).network().n_synapses() as f64;
    assert!(
        (n - 100.0).abs() < 40.0,
        "{n} synapses for p = 1e-4 over 1e6 pairs"
    );
}

/// Regression (correctness issue, item 5): population indices are u16 per neuron; the
/// 65537th population is refused with its location instead of wrapping onto population 0.
#[test]
fn more_populations_than_the_index_holds_are_refused() {
    let mut text = String::from("version = 1\n[simulation]\nduration_ms = 1.0\n");
    for i in 0..=65536u32 {
        text.push_str(&format!(
            "[[populations]]\nname = \"p{i}\"\nsize = 1\nmodel = \"lif\"\n"
        ));
    }
    text.push_str("[[synapse_types]]\nname = \"glu\"\ntransmitter = \"glutamate\"\n[[synapse_types.receptors]]\nkind = \"ampa\"\n");
    assert_one_too_many(&text, "populations", 4 + 4 * 65536);
}

/// `text` is refused for its 65537th `key` entry, which starts at `line`: the count, the
/// bound and the location are in the error.
fn assert_one_too_many(text: &str, key: &str, line: usize) {
    let err = match quantal::netfile::load_str(text, std::path::Path::new("many.toml"), &[]) {
        Ok(_) => panic!("65537 {key} must be refused"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("65537 {key}")) && msg.contains("at most 65536"),
        "{msg}"
    );
    let e = err.as_spec().expect("a located error");
    assert_eq!(e.line, line, "{msg}");
}

/// Projection indices are u16 per synapse (`Network::syn_proj`): the 65537th projection is
/// refused with its location.
#[test]
fn more_projections_than_the_index_holds_are_refused() {
    let mut text = String::from(
        "version = 1\n[simulation]\nduration_ms = 1.0\n[[populations]]\nname = \"p\"\nsize = 2\nmodel = \"lif\"\n[[synapse_types]]\nname = \"glu\"\ntransmitter = \"glutamate\"\n[[synapse_types.receptors]]\nkind = \"ampa\"\n",
    );
    for i in 0..=65536u32 {
        text.push_str(&format!(
            "[[projections]]\nname = \"c{i}\"\nsource = \"p\"\ntarget = \"p\"\nsynapse = \"glu\"\nrule = \"one_to_one\"\n"
        ));
    }
    assert_one_too_many(&text, "projections", 13 + 6 * 65536);
}

/// Regression (correctness issue, input): the memory guard estimates a distance-dependent
/// projection from its expected connection count (a 40 000-cell sheet with a 40 µm
/// Gaussian: about 2πσ²/a² = 100 connections per cell), not from all 1.6e9 pairs.
#[test]
fn distance_dependent_estimate_is_the_expected_count() {
    let sheet =
        "[populations.positions]\nlayout = \"grid\"\nshape = [200, 200, 1]\nspacing_um = 10.0";
    let text = net(
        &pop("s", 40_000, sheet),
        &proj("d", "s", "s", "rule = \"fixed_probability\"\n[projections.distance]\nprofile = \"gaussian\"\np_max = 1.0\nscale_um = 40.0"),
    );
    let l = quantal::netfile::load_str(&text, std::path::Path::new("sheet.toml"), &[]).unwrap();
    let est = quantal::network::estimate(&l.file);
    let n = est.synapses[0].1;
    let closed_form = 40_000.0 * 2.0 * std::f64::consts::PI * 1600.0 / 100.0;
    assert!(
        n > 0.85 * closed_form && n < 1.25 * closed_form,
        "{n} vs {closed_form}"
    );
    assert!(est.build_bytes < 1e9, "{} bytes", est.build_bytes);
}

/// Recording buffers count in the memory estimate: 1000 neurons × 2 variables sampled
/// every step and flushed every 100 ms hold 2000 × 4 B × 1000 rows between flushes.
#[test]
fn recording_buffers_count_in_the_estimate() {
    let text = net(&pop("a", 1000, ""), "")
        + "[record]\nflush_interval_ms = 100.0\n[[record.neurons]]\npopulation = \"a\"\nvariables = [\"v_mv\", \"g_rr_ns\"]\n";
    let l = quantal::netfile::load_str(&text, std::path::Path::new("r.toml"), &[]).unwrap();
    let est = quantal::network::estimate(&l.file);
    assert_eq!(est.record_bytes, 2000.0 * 4.0 * 1000.0);
    assert!(est.cpu_bytes >= est.record_bytes);
}
