//! Structure-of-arrays state shared by both backends (DESIGN.md "Data layout").
//!
//! Neurons: one array per variable. Synapses: static arrays live in
//! [`crate::network::Network`]; the dynamic presynaptic state here is advanced lazily,
//! only when an event reaches the synapse (§9). Cleft and receptor state exists only for
//! *active* synapses, in [`ActivePool`], kept sorted by synapse id so that the per-neuron
//! conductance sums are a fixed-order gather.

use crate::layout;
use crate::model::{Model, SynapseArrays};
use crate::network::Network;

/// `handoff_step` value of a synapse that is active (its receptor state lives in the pool).
pub const ACTIVE: u32 = u32::MAX;
/// `handoff_step` value of a synapse that never handed receptor state to a neuron pool.
pub const NO_HANDOFF: u32 = u32::MAX - 1;
/// Receptor state slots per active synapse at most: two per receptor (r, or R and G for
/// GABA_B). A model's pool keeps [`Model::receptor_state_stride`] of them.
pub const SLOT_STRIDE: usize = 2 * crate::netfile::validate::MAX_RECEPTORS;

/// Cleft state of one active synapse: one 24-byte record, so that `cleft` reads and
/// writes it as one piece and moving a slot is one copy; its receptor state lies in
/// [`ActivePool::r`], as many floats per slot as the model's types use.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slot {
    /// Synapse id.
    pub syn: u32,
    /// For a synapse activated in this step: its previous hand-off step (or NO_HANDOFF), so
    /// the cleft kernel takes its receptor state back from the neuron pool (§5.4); ACTIVE after.
    pub fresh: u32,
    /// Cleft transmitter, mM (exponential cleft), after this step's release.
    pub cleft_mm: f32,
    /// Quanta released into this cleft in the current step.
    pub released: f32,
    /// Pulse cleft: steps of pulse left.
    pub pulse_left: u32,
    /// Pulse cleft: quanta of the current pulse.
    pub pulse_quanta: f32,
}

impl Slot {
    /// A newly activated synapse `syn` whose previous hand-off step is `handoff`
    /// (NO_HANDOFF if none), with an empty cleft and closed receptors.
    pub fn new(syn: u32, handoff: u32) -> Slot {
        Slot {
            syn,
            fresh: handoff,
            ..Slot::default()
        }
    }
}

/// Cleft and receptor state of the active synapses, sorted by synapse id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivePool {
    /// One record per active synapse, ascending by synapse id.
    pub slots: Vec<Slot>,
    /// Receptor state, `stride` per slot, in slot order: r of receptor j at `2j` (R and G
    /// at `2j`, `2j + 1` for GABA_B).
    pub r: Vec<f32>,
    /// Floats of receptor state per slot ([`Model::receptor_state_stride`]).
    pub stride: usize,
}

impl ActivePool {
    /// Number of active synapses.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// True when no synapse is active.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Slot of a synapse, if active.
    pub fn slot_of(&self, syn: u32) -> Option<usize> {
        self.slots.binary_search_by_key(&syn, |s| s.syn).ok()
    }
    /// The first slot whose synapse id is at least `syn`.
    pub fn first_at_or_after(&self, syn: u32) -> usize {
        self.slots.partition_point(|s| s.syn < syn)
    }
    /// One field of every slot, in slot order (e.g. `column(|s| s.syn)`).
    pub fn column<T>(&self, field: impl Fn(&Slot) -> T) -> Vec<T> {
        self.slots.iter().map(field).collect()
    }
    /// Receptor state of every slot, `stride` per slot.
    pub fn r(&self) -> Vec<f32> {
        self.r.clone()
    }
    /// Receptor state of slot `k`.
    pub fn r_of(&self, k: usize) -> &[f32] {
        &self.r[k * self.stride..(k + 1) * self.stride]
    }
}

/// Splits `v` at `bounds` (ascending element offsets from 0 to `v.len()`) times `stride`
/// into `bounds.len() - 1` parts; an empty `v` (an array a model does not use) gives
/// empty parts.
pub(crate) fn split_parts<'a, 'b, T>(
    v: &'a mut [T],
    bounds: &'b [usize],
    stride: usize,
) -> impl Iterator<Item = &'a mut [T]> + 'b
where
    'a: 'b,
{
    let empty = v.is_empty();
    let mut rest = v;
    bounds.windows(2).map(move |w| {
        if empty {
            return <&mut [T]>::default();
        }
        let (a, b) = std::mem::take(&mut rest).split_at_mut((w[1] - w[0]) * stride);
        rest = b;
        a
    })
}

/// The neuron arrays of neurons `base..base + v_mv.len()`: what one invocation range of
/// `integrate` and `decay_pools` writes, so that ranges run on different threads. Indexed
/// by the neuron's local id `n` (global id `base + n`, as `params.neuron_base + n` in
/// the shaders); the (neuron, receptor) arrays by `n · n_receptors + r`.
#[derive(Debug)]
pub struct Neurons<'a> {
    /// Global id of local neuron 0.
    pub base: usize,
    /// Membrane potential, mV.
    pub v_mv: &'a mut [f32],
    /// Relative refractory conductance, nS.
    pub g_rr_ns: &'a mut [f32],
    /// Adaptation conductance, nS.
    pub g_sfa_ns: &'a mut [f32],
    /// Threshold elevation, mV.
    pub theta_mv: &'a mut [f32],
    /// Remaining refractory or lock-out steps.
    pub refr: &'a mut [u32],
    /// HH gate m.
    pub hh_m: &'a mut [f32],
    /// HH gate h.
    pub hh_h: &'a mut [f32],
    /// HH gate n.
    pub hh_n: &'a mut [f32],
    /// Injected current, pA.
    pub i_ext_pa: &'a mut [f32],
    /// Next spike of each spike-time source.
    pub spike_ptr: &'a mut [u32],
    /// Conductance of active synapses, nS.
    pub g_active_ns: &'a mut [f32],
    /// Pooled conductance, nS.
    pub g_pool_ns: &'a mut [f32],
    /// `g_active_ns` is all +0 and stays so: no synapse of the network is ever active
    /// ([`Model::exp_only`]). The blocks of `integrate` then add +0 instead of reading it
    /// (the same bits). False from [`State::neurons`]; the CPU backend sets it.
    pub active_zero: bool,
}

/// The state of one presynaptic terminal that every arriving event reads and writes,
/// packed in one 16-byte record: one cache line brings it all (instead of four, one per
/// array), which matters once the synapses no longer fit the cache.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Terminal {
    /// Last step at which the terminal was advanced.
    pub t_last: u32,
    /// Occupied release sites, bitmask.
    pub sites: u32,
    /// Facilitation site X_F (CA) or TM facilitation u·(1-U).
    pub x_f: f32,
    /// Recovery site X_D (CA) or TM resources x.
    pub x_d: f32,
}

/// The presynaptic terminal arrays of synapses `base..base + term.len()` (what
/// `release` and `spontaneous` write), indexed by local id (global id `base + i`).
#[derive(Debug)]
pub struct Terminals<'a> {
    /// Global id of local synapse 0.
    pub base: usize,
    /// Each terminal's record.
    pub term: &'a mut [Terminal],
    /// Sites committed to a pending asynchronous fusion (empty when unused).
    pub committed: &'a mut [u32],
    /// Reserve pool count (empty when untracked).
    pub reserve: &'a mut [u32],
    /// Vesicles in endocytosis (empty when untracked).
    pub endo: &'a mut [u32],
}

/// What `cleft` reads and writes for the postsynaptic neurons `base..` of one range:
/// the slots of their incoming synapses that were active (`old`) and that this step
/// activated (`new`), which it merges in ascending synapse id into `out` (room for both),
/// keeping those that stay active; the synapses' hand-off state (`syn_base..`) and the
/// neurons' conductances. Ranges run on different threads.
#[derive(Debug)]
pub struct CleftPart<'a> {
    /// Global id of the range's first neuron.
    pub base: usize,
    /// Global id of the range's first incoming synapse.
    pub syn_base: usize,
    /// Slots active before this step.
    pub old: &'a [Slot],
    /// Their receptor state, `stride` per slot.
    pub old_r: &'a [f32],
    /// Slots of the synapses this step activated.
    pub new: &'a [Slot],
    /// This step's releases at synapses of `old` (ascending by synapse), when `activate`
    /// left them to `cleft`'s pass over the slots (`cleft_kinetic`); else empty.
    pub hits: &'a [(u32, f32)],
    /// The next step's slots: `old.len() + new.len()` of room.
    pub out: &'a mut [Slot],
    /// Their receptor state, `stride` per slot (a new slot's starts at 0).
    pub out_r: &'a mut [f32],
    /// The kinetic cleft's one-receptor form (`cleft::cleft_one`) takes the pool as the
    /// CPU backend keeps it for that form, one array per field, instead of `old` and
    /// `out` (then empty; `old_r` and `out_r` hold r): the old slots' synapse ids (empty
    /// when unused).
    pub old_syn: &'a [u32],
    /// Their transmitter, mM.
    pub old_t_mm: &'a [f32],
    /// Their constants: the synapse's (neuron, receptor) entry times 16 plus its table
    /// row.
    pub old_key: &'a [u32],
    /// And ḡ·w, nS.
    pub old_gw_ns: &'a [f32],
    /// The same for the next step's slots (room for the old and new ones).
    pub out_syn: &'a mut [u32],
    /// Their transmitter, mM, after the step.
    pub out_t_mm: &'a mut [f32],
    /// Their constants' key, as `old_key`.
    pub out_key: &'a mut [u32],
    /// Their ḡ·w, nS.
    pub out_gw_ns: &'a mut [f32],
    /// Floats of receptor state per slot.
    pub stride: usize,
    /// Hand-off step per synapse.
    pub handoff_step: &'a mut [u32],
    /// Receptor open fraction at hand-off, `handoff_stride` per synapse.
    pub handoff_r: &'a mut [f32],
    /// Conductance of active synapses, nS, per (neuron, receptor).
    pub g_active_ns: &'a mut [f32],
    /// Pooled conductance, nS, per (neuron, receptor).
    pub g_pool_ns: &'a mut [f32],
}

/// The dynamic state of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The next step to compute.
    pub step: u32,
    /// Membrane potential, mV (per neuron).
    pub v_mv: Vec<f32>,
    /// Relative refractory conductance, nS (LIF, §6.1).
    pub g_rr_ns: Vec<f32>,
    /// Adaptation conductance, nS (LIF, §6.1).
    pub g_sfa_ns: Vec<f32>,
    /// Threshold elevation, mV (LIF, §6.1).
    pub theta_mv: Vec<f32>,
    /// Remaining refractory (LIF) or lock-out (HH) steps.
    pub refr: Vec<u32>,
    /// HH gates m, h, n (§6.2).
    pub hh_m: Vec<f32>,
    /// HH gate h.
    pub hh_h: Vec<f32>,
    /// HH gate n.
    pub hh_n: Vec<f32>,
    /// Injected current, pA (sum of the inputs on at this step).
    pub i_ext_pa: Vec<f32>,
    /// Next spike of each spike-time source (index into `Network::spike_steps`).
    pub spike_ptr: Vec<u32>,
    /// Conductance of active synapses this step, nS, `[neuron * n_receptors + receptor]`.
    pub g_active_ns: Vec<f32>,
    /// Pooled conductance, nS (§5.4 hand-offs and exp receptors), same indexing.
    pub g_pool_ns: Vec<f32>,
    /// Terminal records (per synapse): last advance, sites, X_F, X_D.
    pub term: Vec<Terminal>,
    /// Sites committed to a pending asynchronous fusion (empty unless async release is on).
    pub committed: Vec<u32>,
    /// Reserve pool count (empty unless a type tracks it).
    pub reserve: Vec<u32>,
    /// Vesicles in endocytosis, on their way back to the reserve (same).
    pub endo: Vec<u32>,
    /// Step of the last hand-off of receptor state to the neuron pool, or ACTIVE / NO_HANDOFF.
    /// Empty when no synapse type needs the cleft (every synapse is NO_HANDOFF forever:
    /// [`State::handoff_of`]).
    pub handoff_step: Vec<u32>,
    /// Receptor open fraction at hand-off, `handoff_stride` per synapse.
    pub handoff_r: Vec<f32>,
    /// Stride of `handoff_r`.
    pub handoff_stride: usize,
    /// Active synapses.
    pub active: ActivePool,
    /// Delay ring: synapse ids whose presynaptic spike arrives at step ≡ slot.
    pub ring: Vec<Vec<u32>>,
    /// Delay ring of asynchronous fusions: (synapse, site).
    pub ring_async: Vec<Vec<(u32, u32)>>,
    /// Spikes of the last computed step (ascending neuron ids).
    pub spikes: Vec<u32>,
    /// Miniature releases drawn in the last step, released into the cleft in the next
    /// (synapse ascending, quanta).
    pub pending_minis: Vec<(u32, f32)>,
    /// Quanta released in the last computed step, summed over synapses.
    pub quanta_step: f64,
    /// The first non-finite value a kernel produced: (element, variable, is a synapse).
    pub non_finite: NonFinite,
}

/// A non-finite value a kernel produced, if any: (element, variable, is a synapse).
pub type NonFinite = Option<(u32, &'static str, bool)>;

impl State {
    /// The neuron arrays split at the neuron ids `bounds` (ascending, from 0 to
    /// n_neurons), one [`Neurons`] per range; `n_receptors` is the stride of the
    /// (neuron, receptor) arrays.
    pub fn neurons(&mut self, bounds: &[usize], n_receptors: usize) -> Vec<Neurons<'_>> {
        let mut v_mv = split_parts(&mut self.v_mv, bounds, 1);
        let mut g_rr = split_parts(&mut self.g_rr_ns, bounds, 1);
        let mut g_sfa = split_parts(&mut self.g_sfa_ns, bounds, 1);
        let mut theta = split_parts(&mut self.theta_mv, bounds, 1);
        let mut refr = split_parts(&mut self.refr, bounds, 1);
        let mut hh_m = split_parts(&mut self.hh_m, bounds, 1);
        let mut hh_h = split_parts(&mut self.hh_h, bounds, 1);
        let mut hh_n = split_parts(&mut self.hh_n, bounds, 1);
        let mut i_ext = split_parts(&mut self.i_ext_pa, bounds, 1);
        let mut ptr = split_parts(&mut self.spike_ptr, bounds, 1);
        let mut active = split_parts(&mut self.g_active_ns, bounds, n_receptors);
        let mut pool = split_parts(&mut self.g_pool_ns, bounds, n_receptors);
        bounds
            .windows(2)
            .map(|w| Neurons {
                base: w[0],
                v_mv: v_mv.next().expect("one part per range"),
                g_rr_ns: g_rr.next().expect("one part per range"),
                g_sfa_ns: g_sfa.next().expect("one part per range"),
                theta_mv: theta.next().expect("one part per range"),
                refr: refr.next().expect("one part per range"),
                hh_m: hh_m.next().expect("one part per range"),
                hh_h: hh_h.next().expect("one part per range"),
                hh_n: hh_n.next().expect("one part per range"),
                i_ext_pa: i_ext.next().expect("one part per range"),
                spike_ptr: ptr.next().expect("one part per range"),
                g_active_ns: active.next().expect("one part per range"),
                g_pool_ns: pool.next().expect("one part per range"),
                active_zero: false,
            })
            .collect()
    }

    /// Every terminal's last advance step (a column of [`State::term`]).
    pub fn terminal_t_last(&self) -> Vec<u32> {
        self.term.iter().map(|t| t.t_last).collect()
    }

    /// Every terminal's occupied sites (a column of [`State::term`]).
    pub fn terminal_sites(&self) -> Vec<u32> {
        self.term.iter().map(|t| t.sites).collect()
    }

    /// Every terminal's X_F (a column of [`State::term`]).
    pub fn terminal_x_f(&self) -> Vec<f32> {
        self.term.iter().map(|t| t.x_f).collect()
    }

    /// Every terminal's X_D (a column of [`State::term`]).
    pub fn terminal_x_d(&self) -> Vec<f32> {
        self.term.iter().map(|t| t.x_d).collect()
    }

    /// The terminal arrays split at the synapse ids `bounds` (ascending, from 0 to
    /// n_synapses), one [`Terminals`] per range.
    pub fn terminals(&mut self, bounds: &[usize]) -> Vec<Terminals<'_>> {
        let mut term = split_parts(&mut self.term, bounds, 1);
        let mut committed = split_parts(&mut self.committed, bounds, 1);
        let mut reserve = split_parts(&mut self.reserve, bounds, 1);
        let mut endo = split_parts(&mut self.endo, bounds, 1);
        bounds
            .windows(2)
            .map(|w| Terminals {
                base: w[0],
                term: term.next().expect("one part per range"),
                committed: committed.next().expect("one part per range"),
                reserve: reserve.next().expect("one part per range"),
                endo: endo.next().expect("one part per range"),
            })
            .collect()
    }

    /// What `cleft` reads and writes, split at the neuron ids `neurons` (ascending, from 0
    /// to n_neurons), at the matching synapse ids `synapses` (the neurons' first incoming
    /// synapses), at the slots `slots` of the active pool and `new_slots` of `new` (this
    /// step's activations), and at `out_slots` of `out` (each range's room: its old and
    /// new slots).
    #[expect(clippy::too_many_arguments, reason = "one split per array family")]
    pub fn cleft_parts<'a>(
        &'a mut self,
        neurons: &[usize],
        synapses: &[usize],
        slots: &[usize],
        new: &'a [Slot],
        new_slots: &[usize],
        out: &'a mut [Slot],
        out_r: &'a mut [f32],
        out_slots: &[usize],
        n_receptors: usize,
    ) -> Vec<CleftPart<'a>> {
        let hs = self.handoff_stride;
        let rs = self.active.stride;
        let (old, old_r) = (&self.active.slots, &self.active.r);
        let mut outs = split_parts(out, out_slots, 1);
        let mut outs_r = split_parts(out_r, out_slots, rs);
        let mut step = split_parts(&mut self.handoff_step, synapses, 1);
        let mut hr = split_parts(&mut self.handoff_r, synapses, hs);
        let mut active = split_parts(&mut self.g_active_ns, neurons, n_receptors);
        let mut pool = split_parts(&mut self.g_pool_ns, neurons, n_receptors);
        let one = "one part per range";
        (0..neurons.len().saturating_sub(1))
            .map(|k| CleftPart {
                base: neurons[k],
                syn_base: synapses[k],
                old: &old[slots[k]..slots[k + 1]],
                old_r: &old_r[slots[k] * rs..slots[k + 1] * rs],
                new: &new[new_slots[k]..new_slots[k + 1]],
                hits: &[],
                out: outs.next().expect(one),
                out_r: outs_r.next().expect(one),
                old_syn: &[],
                old_t_mm: &[],
                old_key: &[],
                old_gw_ns: &[],
                out_syn: &mut [],
                out_t_mm: &mut [],
                out_key: &mut [],
                out_gw_ns: &mut [],
                stride: rs,
                handoff_step: step.next().expect(one),
                handoff_r: hr.next().expect(one),
                g_active_ns: active.next().expect(one),
                g_pool_ns: pool.next().expect(one),
            })
            .collect()
    }

    /// The f32 neuron arrays in the section order of `layout::neuron_f32` (the GPU
    /// image's `neuron_f32` buffer).
    pub fn neuron_f32(&self) -> [&Vec<f32>; layout::neuron_f32::COUNT as usize] {
        [
            &self.v_mv,
            &self.g_rr_ns,
            &self.g_sfa_ns,
            &self.theta_mv,
            &self.hh_m,
            &self.hh_h,
            &self.hh_n,
            &self.i_ext_pa,
        ]
    }

    /// As [`State::neuron_f32`], mutable.
    pub fn neuron_f32_mut(&mut self) -> [&mut Vec<f32>; layout::neuron_f32::COUNT as usize] {
        [
            &mut self.v_mv,
            &mut self.g_rr_ns,
            &mut self.g_sfa_ns,
            &mut self.theta_mv,
            &mut self.hh_m,
            &mut self.hh_h,
            &mut self.hh_n,
            &mut self.i_ext_pa,
        ]
    }

    /// The same state with every delay-ring row sorted: the rows are sets (the order of
    /// a row's entries never changes a result), filled in spike order on the CPU and in
    /// atomic order on the GPU, so states are compared in this form.
    pub fn canonical(&self) -> State {
        let mut s = self.clone();
        for row in s.ring.iter_mut() {
            row.sort_unstable();
        }
        for row in s.ring_async.iter_mut() {
            row.sort_unstable();
        }
        s.quanta_step = 0.0;
        s
    }

    /// Hand-off step of synapse `i` (ACTIVE, NO_HANDOFF or the step); NO_HANDOFF when
    /// the model keeps no hand-off steps because no synapse can be active.
    #[inline]
    pub fn handoff_of(&self, i: usize) -> u32 {
        self.handoff_step.get(i).copied().unwrap_or(NO_HANDOFF)
    }

    /// Initial state: neurons at their initial potential, all release sites occupied,
    /// reserve pools full, nothing in flight (§3.1).
    pub fn new(model: &Model, net: &Network) -> State {
        let nn = net.n_neurons() as usize;
        let ns = net.n_synapses() as usize;
        let nr = model.receptors.len();
        let SynapseArrays {
            any_async,
            any_reserve,
            handoff_stride,
            any_cleft,
            static_record: _,
        } = SynapseArrays::of(model);
        let mut s = State {
            step: 0,
            v_mv: net.v_init.clone(),
            g_rr_ns: vec![0.0; nn],
            g_sfa_ns: vec![0.0; nn],
            theta_mv: vec![0.0; nn],
            refr: vec![0; nn],
            hh_m: vec![0.0; nn],
            hh_h: vec![0.0; nn],
            hh_n: vec![0.0; nn],
            i_ext_pa: vec![0.0; nn],
            spike_ptr: net.spike_offsets[..nn].to_vec(),
            g_active_ns: vec![0.0; nn * nr],
            g_pool_ns: vec![0.0; nn * nr],
            term: vec![Terminal::default(); ns],
            committed: if any_async { vec![0; ns] } else { Vec::new() },
            reserve: if any_reserve { vec![0; ns] } else { Vec::new() },
            endo: if any_reserve { vec![0; ns] } else { Vec::new() },
            handoff_step: if any_cleft {
                vec![NO_HANDOFF; ns]
            } else {
                Vec::new()
            },
            handoff_r: vec![0.0; ns * handoff_stride],
            handoff_stride,
            active: ActivePool {
                stride: model.receptor_state_stride(),
                ..ActivePool::default()
            },
            ring: Vec::new(),
            ring_async: Vec::new(),
            spikes: Vec::new(),
            pending_minis: Vec::new(),
            quanta_step: 0.0,
            non_finite: None,
        };
        for i in 0..ns {
            let t = &model.syn_types[net.syn_type(i)].gpu;
            s.term[i].sites = if t.n_sites >= 32 {
                u32::MAX
            } else {
                (1u32 << t.n_sites) - 1
            };
            if t.release == layout::release::TM_MEAN {
                s.term[i].x_d = 1.0;
            }
            if any_reserve {
                s.reserve[i] = t.reserve_size;
            }
        }
        for n in 0..nn {
            let p = &model.pops[net.neuron_pop[n] as usize].gpu;
            if p.model == layout::neuron::HH {
                let (m, h, nn_) = crate::model::hh_steady_state(s.v_mv[n], p.v_t_mv);
                s.hh_m[n] = m;
                s.hh_h[n] = h;
                s.hh_n[n] = nn_;
            }
        }
        for &(n, r, g) in &net.g_init {
            s.g_pool_ns[n as usize * nr + r as usize] += g;
        }
        let max_async = model
            .syn_types
            .iter()
            .map(|t| t.max_async_steps)
            .max()
            .unwrap_or(0);
        let ring_len = net.max_delay.max(max_async) as usize + 1;
        s.ring = vec![Vec::new(); ring_len];
        s.ring_async = vec![Vec::new(); ring_len];
        s
    }
}
