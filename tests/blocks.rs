//! The CPU's block dispatchers against its per-invocation kernels (the GPU's twins): for
//! every number of receptors and every receptor kind the LIF and HH blocks of
//! `integrate_all` (vectorised, with their AVX2 build where the CPU has it) leave the same
//! bits as `integrate` called neuron by neuron, from random states with neurons
//! refractory, spiking, adapting, at the points where the HH rates change form, and
//! carrying NaN.

use crate::common::backend;
use quantal::backend::cpu::integrate::{integrate, integrate_all, Fired};
use quantal::backend::cpu::step_params;
use quantal::philox::Stream;
use quantal::state::State;

/// Receptor tables to draw from, in order, every kind `integrate` sums (NMDA with its
/// block): the first three bind glutamate, the others GABA.
const RECEPTORS: [&str; 6] = [
    "kind = \"exp\"\ng_max_ns = 1.0\ntau_ms = 5.0\ne_rev_mv = 0.0",
    "kind = \"nmda\"\ng_max_ns = 1.0",
    "kind = \"ampa\"\ng_max_ns = 1.0",
    "kind = \"gaba_a\"\ng_max_ns = 1.0",
    "kind = \"exp\"\ng_max_ns = 2.0\ntau_ms = 10.0\ne_rev_mv = -80.0",
    "kind = \"gaba_b\"\ng_max_ns = 1.0",
];

/// Two LIF populations (one with relative refractoriness, adaptation and a moving
/// threshold; sizes that leave partial blocks) and synapse types with `nr` receptors in
/// all: a glutamate type with the first three, a GABA type with the rest.
fn network(nr: usize) -> String {
    network_of(&(0..nr).collect::<Vec<_>>())
}

/// [`network`] with the receptors `chosen` (indices into [`RECEPTORS`], ascending): a
/// glutamate type with those below 3, a GABA type with the others.
fn network_of(chosen: &[usize]) -> String {
    let mut t = String::from(
        r#"version = 1
[simulation]
dt_ms = 0.1
duration_ms = 10.0
seed = 3
[[populations]]
name = "a"
size = 150
model = "lif"
[populations.lif]
i_bias_pa = 120.0
q_rr_ns = 3.0
q_sfa_ns = 1.5
delta_theta_mv = 2.0
tau_theta_ms = 50.0
[[populations]]
name = "b"
size = 71
model = "lif"
[[populations]]
name = "c"
size = 93
model = "hh"
[populations.hh]
v_spike_mv = -20.0
lockout_ms = 0.3
"#,
    );
    let glu: Vec<usize> = chosen.iter().copied().filter(|&r| r < 3).collect();
    let gab: Vec<usize> = chosen.iter().copied().filter(|&r| r >= 3).collect();
    let types = [("glu", "glutamate", glu), ("gab", "gaba", gab)];
    for (name, tr, list) in types.iter().filter(|t| !t.2.is_empty()) {
        t += &format!("[[synapse_types]]\nname = \"{name}\"\ntransmitter = \"{tr}\"\n");
        t += "release = \"ca\"\n";
        for &r in list {
            t += &format!("[[synapse_types.receptors]]\n{}\n", RECEPTORS[r]);
        }
    }
    for (name, _, list) in types.iter().filter(|t| !t.2.is_empty()) {
        t += &format!("[[projections]]\nname = \"p_{name}\"\nsource = \"a\"\ntarget = \"b\"\n");
        t += &format!("synapse = \"{name}\"\nrule = \"fixed_probability\"\np = 0.1\n");
        t += &format!("delay_ms = {}\n", 1.0 + list[0] as f64);
    }
    t += "[[inputs]]\ntarget = \"b\"\namplitude_pa = 100.0\nstart_ms = 0.0\n";
    t += "[[inputs]]\ntarget = \"c\"\namplitude_pa = 300.0\nstart_ms = 0.0\n";
    t
}

/// Random conductances, potentials, refractory counts, adaptation and HH gates; one NaN
/// (in a pool, or in V without receptors).
fn scramble(st: &mut State, seed: u32) {
    let mut s = Stream::new(7, 0, seed);
    let mut u = || s.uniform();
    for g in st.g_active_ns.iter_mut().chain(st.g_pool_ns.iter_mut()) {
        *g = if u() < 0.3 { 0.0 } else { 40.0 * u() };
    }
    for v in st.v_mv.iter_mut() {
        *v = -80.0 + 40.0 * u();
    }
    for r in st.refr.iter_mut() {
        *r = if u() < 0.2 { (4.0 * u()) as u32 } else { 0 };
    }
    for x in st.g_rr_ns.iter_mut().chain(st.g_sfa_ns.iter_mut()) {
        *x = if u() < 0.5 { 0.0 } else { 5.0 * u() };
    }
    for x in st.theta_mv.iter_mut() {
        *x = 3.0 * u();
    }
    for x in st
        .hh_m
        .iter_mut()
        .chain(st.hh_h.iter_mut())
        .chain(st.hh_n.iter_mut())
    {
        *x = u();
    }
    // Some HH neurons near the crossing of v_spike (-20 mV), some at the exprel points
    // (V - V_T = 13, 40, 15 mV with V_T = -63 mV).
    let n = st.v_mv.len();
    for (k, v) in st.v_mv[n - 93..].iter_mut().enumerate() {
        *v = match k % 4 {
            0 => -20.0 - 2.0 * u(),
            1 => [-50.0, -23.0, -48.0][k % 3] + 1e-5 * (u() - 0.5),
            _ => *v,
        };
    }
    let k = (u() * st.v_mv.len() as f32) as usize;
    let nr = st.g_pool_ns.len() / st.v_mv.len();
    if nr > 0 {
        st.g_pool_ns[k * nr] = f32::NAN;
    } else {
        st.v_mv[k] = f32::NAN;
    }
    st.refr[k] = 0;
}

/// `integrate` neuron by neuron over all of `st`: the spiking neurons.
fn integrate_each(
    model: &quantal::model::Model,
    net: &quantal::network::Network,
    params: &quantal::layout::StepParams,
    st: &mut State,
) -> Vec<u32> {
    let (nn, nr) = (net.n_neurons() as usize, model.receptors.len());
    let mut view = st.neurons(&[0, nn], nr);
    let (pops, rcs) = (&model.gpu_pops, &model.gpu_receptors);
    (0..nn)
        .filter(|&n| integrate(n, params, pops, rcs, net, &mut view[0]))
        .map(|n| n as u32)
        .collect()
}

/// `integrate_all` over all of `st` as one range, its view's `active_zero` as given.
fn integrate_blocks(
    model: &quantal::model::Model,
    net: &quantal::network::Network,
    params: &quantal::layout::StepParams,
    st: &mut State,
    active_zero: bool,
) -> Fired {
    let (nn, nr) = (net.n_neurons() as usize, model.receptors.len());
    let mut fired = Fired::default();
    let mut view = st.neurons(&[0, nn], nr);
    view[0].active_zero = active_zero;
    let (pops, rcs) = (&model.gpu_pops, &model.gpu_receptors);
    integrate_all(params, pops, rcs, net, &mut view[0], &mut fired);
    fired
}

/// Each named pair of arrays holds the same bits, element by element.
fn assert_same_bits(label: &str, pairs: &[(&str, &[f32], &[f32])]) {
    for (name, a, b) in pairs {
        assert_eq!(a.len(), b.len(), "{label}: {name} lengths");
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{label}: {name}[{i}] {x} vs {y}");
        }
    }
}

#[test]
fn neuron_blocks_leave_the_bits_of_integrate() {
    // Every prefix of RECEPTORS, and the lists of at most two receptors without the Mg²⁺
    // block that the CPU's fused LIF chunks take (two exp, two kinetic, one kinetic,
    // none).
    let lists = (1..=RECEPTORS.len())
        .map(|nr| (0..nr).collect::<Vec<usize>>())
        .chain([vec![0, 4], vec![2, 3], vec![2], vec![]]);
    for (case, list) in lists.enumerate() {
        let nr = list.len();
        let mut cpu = backend(&network_of(&list));
        assert_eq!(cpu.model().receptors.len(), nr);
        let model = cpu.model().clone();
        let net = cpu.network().clone();
        let nn = net.n_neurons() as usize;
        for trial in 0..4u32 {
            scramble(cpu.state_mut(), 100 * case as u32 + trial);
            let mut one = cpu.state_ref().clone();
            let mut all = cpu.state_ref().clone();
            let mut params = step_params(&model, &net, trial);
            params.neuron_base = 0;
            let want = integrate_each(&model, &net, &params, &mut one);
            let fired = integrate_blocks(&model, &net, &params, &mut all, false);
            assert!(!want.is_empty(), "receptors {list:?}: some neurons spike");
            let hh_spikes = want.iter().filter(|&&w| w as usize >= nn - 93).count();
            assert!(
                hh_spikes > 5,
                "receptors {list:?}: {hh_spikes} HH neurons spike"
            );
            assert_eq!(
                fired.spikes, want,
                "receptors {list:?} trial {trial}: spikes"
            );
            let bad = fired.non_finite.expect("the NaN pool is found");
            assert!(
                !one.v_mv[bad.0 as usize].is_finite(),
                "receptors {list:?}: {bad:?}"
            );
            let label = format!("receptors {list:?} trial {trial}");
            assert_same_bits(
                &label,
                &[
                    ("v_mv", &one.v_mv, &all.v_mv),
                    ("g_rr_ns", &one.g_rr_ns, &all.g_rr_ns),
                    ("g_sfa_ns", &one.g_sfa_ns, &all.g_sfa_ns),
                    ("theta_mv", &one.theta_mv, &all.theta_mv),
                    ("i_ext_pa", &one.i_ext_pa, &all.i_ext_pa),
                    ("hh_m", &one.hh_m, &all.hh_m),
                    ("hh_h", &one.hh_h, &all.hh_h),
                    ("hh_n", &one.hh_n, &all.hh_n),
                ],
            );
            assert_eq!(one.refr, all.refr, "receptors {list:?} trial {trial}: refr");

            // With every active sum +0 (a network of exp receptors only,
            // `Neurons::active_zero`) the blocks add +0 instead of reading the sums: the
            // same bits as the scalar kernel reading them, pools of -0 included.
            // Population b's neurons 64.. keep +0 relative refractoriness, adaptation and
            // threshold elevation (what its q of 0 leaves), which the blocks skip.
            let mut base = cpu.state_ref().clone();
            base.g_active_ns.fill(0.0);
            for g in base.g_pool_ns.iter_mut().step_by(7) {
                *g = -0.0;
            }
            for x in [&mut base.g_rr_ns, &mut base.g_sfa_ns, &mut base.theta_mv] {
                x[150 + 64..150 + 71].fill(0.0);
            }
            let (mut one, mut zero) = (base.clone(), base);
            let want = integrate_each(&model, &net, &params, &mut one);
            let fired = integrate_blocks(&model, &net, &params, &mut zero, true);
            assert_eq!(
                fired.spikes, want,
                "receptors {list:?} trial {trial}: spikes, active +0"
            );
            assert_eq!(
                one.refr, zero.refr,
                "receptors {list:?} trial {trial}: refr, active +0"
            );
            assert_same_bits(
                &format!("{label}, active +0"),
                &[
                    ("v_mv", &one.v_mv, &zero.v_mv),
                    ("g_rr_ns", &one.g_rr_ns, &zero.g_rr_ns),
                    ("g_sfa_ns", &one.g_sfa_ns, &zero.g_sfa_ns),
                    ("theta_mv", &one.theta_mv, &zero.theta_mv),
                ],
            );
        }
    }
}

#[test]
fn pool_decay_rows_leave_the_bits_of_decay_pools() {
    use quantal::backend::cpu::decay_pools::{decay_pools, decay_pools_all};
    for nr in 1..=RECEPTORS.len() {
        let mut cpu = backend(&network(nr));
        let model = cpu.model().clone();
        let net = cpu.network().clone();
        let nn = net.n_neurons() as usize;
        scramble(cpu.state_mut(), nr as u32);
        // Values that decay into subnormals, which both flush (receptor 0 decays by 0.98).
        cpu.state_mut().g_pool_ns[nr] = 1.18e-38;
        cpu.state_mut().g_pool_ns[nn * nr - 1] = -1.18e-38;
        let mut one = cpu.state_ref().clone();
        let mut all = cpu.state_ref().clone();
        let params = step_params(&model, &net, 0);
        {
            let mut view = one.neurons(&[0, nn], nr);
            for idx in 0..nn * nr {
                decay_pools(idx, &params, &model.gpu_receptors, &mut view[0]);
            }
        }
        {
            let mut view = all.neurons(&[0, nn], nr);
            decay_pools_all(&params, &model.gpu_receptors, &mut view[0], true);
        }
        assert_eq!(one.g_pool_ns[nr], 0.0, "nr {nr}: flushed");
        for (name, a, b) in [
            ("g_pool_ns", &one.g_pool_ns, &all.g_pool_ns),
            ("g_active_ns", &one.g_active_ns, &all.g_active_ns),
        ] {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "nr {nr}: {name}[{i}] {x} vs {y}");
            }
        }
    }
}

/// `cleft` in its straight-line form for exponential clefts and kinetic receptors
/// (`cleft_kinetic`, one receptor per type and any number) leaves the bits of its general
/// form: coba_kinetic over 60 ms, then with an NMDA receptor beside each AMPA
/// one, every step's spikes and the whole state compared after synapses have handed
/// their receptors to the pools and taken them back.
#[test]
fn kinetic_cleft_leaves_the_bits_of_cleft() {
    use quantal::backend::Backend;
    use quantal::state::{ACTIVE, NO_HANDOFF};
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba_kinetic.toml"),
    )
    .unwrap();
    let two = text.replace(
        "kind = \"ampa\"\ng_max_ns = 2.3",
        "kind = \"ampa\"\ng_max_ns = 2.3\n[[synapse_types.receptors]]\nkind = \"nmda\"\ng_max_ns = 0.5",
    );
    assert_ne!(two, text, "the AMPA receptor is where the test expects it");
    for (name, text) in [("one receptor", &text), ("two receptors", &two)] {
        let mut fast = crate::common::backend_with(text, &[]);
        let mut general = crate::common::backend_with(text, &[]).with_general_cleft();
        assert!(
            fast.model().kinetic_only(),
            "{name}: takes the kinetic form"
        );
        let (mut spikes, mut most_active) = (0, 0);
        for step in 0..600 {
            fast.step().unwrap();
            general.step().unwrap();
            assert_eq!(
                fast.spikes(),
                general.spikes(),
                "{name}: spikes of step {step}"
            );
            spikes += fast.spikes().len();
            most_active = most_active.max(fast.state_ref().active.len());
            if step % 100 == 99 {
                assert!(
                    fast.state_ref().canonical() == general.state_ref().canonical(),
                    "{name}: state after step {step}: {:?}",
                    crate::synparity::first_difference(fast.state_ref(), general.state_ref())
                );
            }
        }
        let st = fast.state_ref();
        let handed = st
            .handoff_step
            .iter()
            .filter(|&&h| h != ACTIVE && h != NO_HANDOFF)
            .count();
        assert!(
            spikes > 3000 && most_active > 30_000 && handed > 50_000,
            "{name}: {spikes} spikes, at most {most_active} active, {handed} handed off"
        );
    }
}

/// The one-receptor form of `cleft_kinetic` keeps each active slot's constants (entry,
/// table row, ḡ·w) beside the pool; a state set from elsewhere makes them again. Here one
/// active slot of coba_kinetic moves to an inactive synapse onto another neuron: the
/// backend whose state was changed in place and a new backend given that state compute
/// the same conductances and the same run.
#[test]
fn kinetic_cleft_after_a_state_set_from_elsewhere() {
    use quantal::backend::Backend;
    use quantal::state::{ACTIVE, NO_HANDOFF};
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba_kinetic.toml"),
    )
    .unwrap();
    let mut a = crate::common::backend_with(&text, &[]);
    for _ in 0..100 {
        a.step().unwrap();
    }
    // A slot whose synapse is its target's first, after an inactive synapse onto another.
    let (k, s) = {
        let (st, post) = (a.state_ref(), &a.network().syn_post);
        let slots = &st.active.slots;
        let k = (1..slots.len())
            .find(|&k| {
                let s = slots[k].syn as usize;
                s > slots[k - 1].syn as usize + 1 && post[s - 1] != post[s]
            })
            .expect("a slot to move");
        (k, slots[k].syn)
    };
    {
        let st = a.state_mut();
        st.active.slots[k].syn = s - 1;
        st.handoff_step[s as usize - 1] = ACTIVE;
        st.handoff_step[s as usize] = NO_HANDOFF;
    }
    let mut b = crate::common::backend_with(&text, &[]);
    *b.state_mut() = a.state_ref().clone();
    for step in 0..100 {
        a.step().unwrap();
        b.step().unwrap();
        assert_eq!(a.spikes(), b.spikes(), "spikes of step {step}");
        assert!(
            a.state_ref().g_active_ns == b.state_ref().g_active_ns,
            "active conductances after step {step}"
        );
    }
    assert!(a.state_ref() == b.state_ref(), "the same state");
}

/// The one-receptor form keeps its active pool one array per field and writes the
/// state's slot records from it only when they are read (a batch's end, a synapse probe,
/// the state): coba_kinetic with reports of quanta released (summed over each sampling
/// interval), cleft transmitter and AMPA open fraction at 300 synapses, sampled every
/// step and every third step in batches, gives the general cleft's samples bit for bit,
/// and the same state after each batch.
#[test]
fn kinetic_one_form_reports_synapses_as_the_general_cleft() {
    use quantal::backend::{Backend, Probe, SynVar};
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/coba_kinetic.toml"),
    )
    .unwrap();
    let probes: Vec<Probe> = (0..100u32)
        .flat_map(|k| {
            let syn = k * 997;
            [
                Probe::Synapse(SynVar::Released, syn),
                Probe::Synapse(SynVar::Cleft, syn),
                Probe::Synapse(SynVar::R(0), syn),
            ]
        })
        .collect();
    for every in [1, 3] {
        let mut fast = crate::common::backend_with(&text, &[]);
        let mut general = crate::common::backend_with(&text, &[]).with_general_cleft();
        assert!(quantal::backend::cpu::cleft::one_form(fast.model()));
        fast.watch(&probes).unwrap();
        general.watch(&probes).unwrap();
        let (mut released, mut cleft) = (0, 0);
        for batch in 0..8 {
            let a = fast.advance(40, &probes, every).unwrap();
            let b = general.advance(40, &probes, every).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&a.samples),
                bits(&b.samples),
                "every {every}: samples of batch {batch}"
            );
            assert!(
                fast.state_ref() == general.state_ref(),
                "every {every}: state after batch {batch}"
            );
            released += a.samples.chunks(3).filter(|s| s[0] > 0.0).count();
            cleft += a.samples.chunks(3).filter(|s| s[1] > 0.0).count();
        }
        assert!(
            released > 20 && cleft > 200,
            "every {every}: {released} samples with releases, {cleft} with transmitter"
        );
    }
}

/// The fused release paths take a step's arrivals unsorted only where their spike order
/// is each target's synapse order: in brette_coba and coba (one delay; at each target the
/// sources of a type ascend), not when a projection from later sources of the same type
/// is listed first, nor with mixed delays, where the arrivals are sorted (and the bits are
/// those of the GPU and of the split runs, tested in parity and synparity).
#[test]
fn arrivals_go_unsorted_only_in_spike_order() {
    let read = |f: &str| {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f)).unwrap()
    };
    let (brette, coba) = (
        read("networks/brette_coba.toml"),
        read("networks/coba.toml"),
    );
    // ie (from inh, the later ids) onto the exc targets with ee's type, listed before ee.
    let ee = "[[projections]]\nname = \"ee\"";
    let ie_start = brette.find("[[projections]]\nname = \"ie\"").unwrap();
    let ie_end = brette[ie_start..]
        .find("[[projections]]\nname = \"ii\"")
        .unwrap()
        + ie_start;
    let ie = brette[ie_start..ie_end].replace("synapse = \"gaba\"", "synapse = \"ampa\"");
    let swapped =
        brette
            .replace(&brette[ie_start..ie_end], "")
            .replacen(ee, &format!("{ie}{ee}"), 1);
    assert_ne!(swapped, brette);
    let mixed = brette.replacen("delay_ms = 0.1", "delay_ms = 0.3", 1);
    for (text, want, what) in [
        (&brette, true, "brette"),
        (&coba, true, "coba"),
        (&swapped, false, "ie before ee with one type"),
        (&mixed, false, "two delays"),
    ] {
        let b = crate::common::backend_with(text, &[]);
        assert_eq!(b.arrivals_in_spike_order(), want, "{what}");
    }
}
