//! The CPU reference backend: one file per kernel, each the twin of a WGSL shader of
//! the same name (DESIGN.md pipeline), run in the pipeline order on f32 state.

/// Defines `$vis fn $name(args)`, which runs `$body(args)` compiled for AVX2 when the CPU
/// has it (detected at run time: the blocks' loops then go eight lanes at a time instead
/// of four), else the baseline build. `$body` is `#[inline(always)]`, so each build has
/// its own copy. Both are the same IEEE operations (Rust never fuses a multiply-add), so
/// the same bits.
macro_rules! avx2_or_baseline {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        avx2_or_baseline! { $(#[$attr])* $vis fn $name($($arg: $ty),*) -> () => $body }
    };
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty => $body:ident) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, tested just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// Asks the CPU to bring the cache line of `x` into the cache, so that a later load of it
/// does not wait (`release`, `propagate`). A hint: nothing is read or changed.
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint, and the address is that of a live element.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((x as *const T).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

pub mod cleft;
pub mod decay_pools;
pub mod deliver;
pub mod integrate;
pub mod propagate;
pub mod release;
pub mod sample;
pub mod spontaneous;
pub mod terminal;

use super::{Backend, Probe, ReleaseEvent, ReleaseKind, SynVar};
use crate::backend::team;
use crate::error::Error;
use crate::layout::StepParams;
use crate::model::Model;
use crate::network::Network;
use crate::state::{Slot, State, ACTIVE};
use integrate::Fired;
use release::Released;
use spontaneous::SpontParams;
use std::sync::Arc;

/// The CPU reference backend.
pub struct CpuBackend {
    model: Arc<Model>,
    net: Arc<Network>,
    st: State,
    spont: SpontParams,
    events: Vec<(u32, u32)>,
    releases: Vec<(u32, f32)>,
    merged: Vec<(u32, f32)>,
    /// This step's releases split: into the cleft (`slow`) and straight into the pool.
    slow: Vec<(u32, f32)>,
    direct: Vec<(u32, f32)>,
    /// This step's newly activated synapses' slots (ascending), built by `activate`.
    new_slots: Vec<Slot>,
    /// Releases at active synapses, left by `activate` to `cleft_kinetic`.
    hits: Vec<(u32, f32)>,
    /// The spare pool `cleft` writes the next step's slots into.
    next_slots: Vec<Slot>,
    /// Their receptor state (`ActivePool::r`).
    next_r: Vec<f32>,
    /// The kinetic cleft's one-receptor form ([`cleft::one_form`], [`cleft::cleft_one`]):
    /// the active pool kept one array per field, with each slot's constants (its entry
    /// and row, and ḡ·w), in place of the state's records, which are written from it when
    /// the state is read (`records_stale`); empty for other networks.
    one: cleft::OnePool,
    /// The spare pool `cleft_one` writes the next step's slots into.
    next_one: cleft::OnePool,
    /// The state's active pool is newer than `one` (at the start, or set from elsewhere:
    /// [`CpuBackend::state_mut`]): `one` is made again from it before the next step.
    one_stale: bool,
    /// `one` is newer than the state's active pool: its records are written before the
    /// state is read.
    records_stale: bool,
    profile: Option<[f64; KERNELS.len()]>,
    /// Synapses whose `released` is reported, with the quanta released since the last
    /// sample (the report is a sum over the sampling interval).
    released_since: Vec<(u32, f32)>,
    /// Quanta of each event of the last step (parallel to `events`).
    event_quanta: Vec<f32>,
    /// Synapses whose releases are logged one by one (ascending), and the log.
    release_watch: Vec<u32>,
    release_log: Vec<ReleaseEvent>,
    /// Evoked events, their failures and quanta (in 2^-16 units, as the GPU counts them)
    /// per (source population, target population, synapse type), the key of a projection.
    evoked: Vec<[u64; 3]>,
    /// Threads: the team (None for one thread), the neuron ranges of `integrate` and
    /// `decay_pools`, and per range of neurons or events what it produced.
    team: Option<team::Team>,
    threads: usize,
    neuron_bounds: Vec<usize>,
    fired: Vec<Fired>,
    released: Vec<Released>,
    event_cuts: Vec<usize>,
    syn_bounds: Vec<usize>,
    /// Events per range below which `release` is not split further.
    min_events: usize,
    /// Static release onto exp receptors only ([`Model::static_exp_only`]): arrivals go
    /// straight into the pools in one pass when the events fit one range.
    static_exp: bool,
    /// Release onto exp receptors only ([`Model::exp_only`]; `static_exp` is its static
    /// case): the releases go straight into the pools in one pass over the events
    /// ([`release::release_exp_direct`]) when they fit one range.
    exp_only: bool,
    /// Exponential clefts and kinetic receptors only ([`Model::kinetic_only`]): `cleft`
    /// takes its straight-line form ([`cleft::cleft_kinetic`]).
    kinetic_only: bool,
    /// One record per synapse for `release_static_exp` ([`release::StaticSynapse::of`];
    /// empty when the network is not of that kind).
    static_records: Vec<release::StaticSynapse>,
    /// Bits of the projection key in each of `static_records`.
    static_key_bits: u32,
    /// `static_records` are in the order of the outgoing lists (arrivals in spike order,
    /// `in_spike_order`), and `spike_rows` keeps each ring row's sources.
    static_by_source: bool,
    /// Per row of the delay ring, the neurons whose spikes `propagate` put there (with
    /// `static_by_source`): the sources of that step's arrivals.
    spike_rows: Vec<Vec<u32>>,
    /// Steps whose static arrivals read their records in order (`static_by_source`).
    by_source_steps: u64,
    /// Arrivals of the last step (`events`, or the ring's row taken as it is).
    n_events: usize,
    /// The delay of every synapse, when all have the same.
    uniform_delay: Option<u16>,
    /// A step's arrivals, in the order `propagate` pushes them, reach each target's pool
    /// entries in ascending synapse id ([`in_spike_order`]), and every release is whole
    /// quanta: the fused paths take them unsorted.
    in_spike_order: bool,
    /// Scratch buffer of `deliver`'s sort.
    sort_scratch: Vec<u32>,
    /// Steps that took one of those paths.
    fused_steps: u64,
    /// Active slots per thread below which `cleft` runs as one range.
    min_slots: usize,
    /// One range of all neurons.
    whole: Vec<usize>,
    /// The neuron ranges of `cleft` while many synapses are active (its work is per
    /// active synapse, so the ranges need not be as long as `integrate`'s).
    cleft_bounds: Vec<usize>,
    /// `cleft`'s ranges: first synapse and first active slot of each neuron range, and
    /// each range's first non-finite conductance.
    cleft_syn: Vec<usize>,
    cleft_slots: Vec<usize>,
    /// Per cleft range: the first slot of `new_slots`.
    cleft_new: Vec<usize>,
    /// Per cleft range: the first slot of its room in `next_slots`.
    cleft_room: Vec<usize>,
    /// Per cleft range: its first non-finite value and how many slots stay active.
    cleft_out: Vec<(crate::state::NonFinite, usize)>,
    /// The most ranges `release` was split into in one step.
    most_event_ranges: usize,
    /// Active synapse-steps since the start.
    active_steps: u64,
}

/// Neurons per thread below which `integrate` and `decay_pools` are not split further:
/// a range must outlast the hand-over to another thread (measured on the 2-vCPU
/// development machine with rayon's pool: 4000 LIF neurons take 20 µs on one thread and
/// 40 µs split in two; with the spinning [`team::Team`], ranges of 1024 and 2048 neurons
/// gave coba and coba_kinetic nothing measurable either).
const MIN_NEURONS_PER_RANGE: usize = 16384;
/// [`MIN_NEURONS_PER_RANGE`] when the network has Traub-Miles HH neurons, about 15 ns
/// each (cobahh.toml: 62 µs per step for 4000 on one thread).
const MIN_HH_NEURONS_PER_RANGE: usize = 1024;
/// Events per thread below which `release` is not split further: 256 quantal events
/// (about 100 ns each since `release` runs them in lanes), or 1024 when every synapse
/// type is static (measured with rayon's pool: 500 static events took 24 µs on one thread
/// and 67 µs split in two). With the spinning [`team::Team`] a hand-over costs about a
/// microsecond: coba_kinetic.toml (about 960 events per step) on two threads, `release`
/// 124-138 µs per step with ranges of at least 2048 events (never split), 117-119 with
/// 512, 98-99 with 256. (With rayon's pool, whose threads took about 100 µs to wake,
/// 2048 had been the best.)
const MIN_EVENTS_PER_RANGE: usize = 256;
/// [`MIN_EVENTS_PER_RANGE`] when every synapse type is static.
const MIN_STATIC_EVENTS_PER_RANGE: usize = 1024;
/// Active synapse slots per thread below which `cleft` is not split.
const MIN_SLOTS_PER_RANGE: usize = 2048;
/// Neurons per range of a split `cleft`.
const MIN_CLEFT_NEURONS_PER_RANGE: usize = 256;

/// The cores this process may use (1 when the system does not say): the default number
/// of threads of a run and of concurrent runs of a sweep.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Runs `f` on every item: on the team's threads when there are several, else in order.
/// Each item owns disjoint state, so the results do not depend on the schedule.
fn for_each<T: Send>(team: Option<&team::Team>, items: &mut [T], f: impl Fn(&mut T) + Sync) {
    match team {
        Some(t) => t.run(items, f),
        None => items.iter_mut().for_each(f),
    }
}

/// True when a step's spike arrivals, in the order `propagate` pushes them (spikes
/// ascending, each source's outgoing synapses ascending), reach every pool entry in
/// ascending synapse id, the order a sort would give: each source's outgoing list
/// ascends, and at every target the synapses of each type (whose receptors own the
/// entries) ascend with their source. Holds for networks built from a file (synapses are
/// target-major, sources ascending within a projection) unless two projections of one
/// type reach a target from sources in the other order.
fn in_spike_order(model: &Model, net: &Network) -> bool {
    let outgoing_ascend = (0..net.n_neurons() as usize).all(|n| {
        let list = &net.out_syn[net.out_offsets[n] as usize..net.out_offsets[n + 1] as usize];
        list.windows(2).all(|w| w[0] < w[1])
    });
    if !outgoing_ascend {
        return false;
    }
    // Per type, 1 + the last source seen at the current target (0: none yet).
    let sources = net.sources();
    let mut last = vec![0u64; model.syn_types.len()];
    (0..net.n_neurons() as usize).all(|post| {
        last.fill(0);
        (net.in_offsets[post] as usize..net.in_offsets[post + 1] as usize).all(|s| {
            let (ty, pre) = (net.syn_type(s), sources[s] as u64 + 1);
            let ok = pre >= last[ty];
            last[ty] = pre;
            ok
        })
    })
}

/// `count` split into at most `parts` ranges of at least `min` (at least one range):
/// the bounds, from 0 to `count`.
fn even_bounds(count: usize, parts: usize, min: usize) -> Vec<usize> {
    let parts = parts.min(count / min.max(1)).max(1);
    (0..=parts).map(|k| k * count / parts).collect()
}

/// Kernel names in pipeline order, as reported by [`Backend::profile`].
pub const KERNELS: [&str; 6] = [
    "deliver",
    "release",
    "cleft",
    "integrate",
    "propagate",
    "spontaneous",
];

impl CpuBackend {
    /// A backend at the initial state of the network, on all cores.
    pub fn new(model: Arc<Model>, net: Arc<Network>) -> Self {
        Self::with_threads(model, net, None)
    }

    /// A backend at the initial state of the network, on `threads` threads (None: one
    /// per core). Results are bit-identical for any number of threads: neurons are split
    /// into ranges, events at synapse boundaries, and each range owns its state.
    pub fn with_threads(model: Arc<Model>, net: Arc<Network>, threads: Option<usize>) -> Self {
        let threads = threads.unwrap_or_else(cores).max(1);
        let team = (threads > 1).then(|| team::Team::new(threads)).flatten();
        let threads = if team.is_some() { threads } else { 1 };
        let has_hh = model
            .pops
            .iter()
            .any(|p| matches!(p.model, crate::netfile::NeuronModel::Hh));
        let min_neurons = if has_hh {
            MIN_HH_NEURONS_PER_RANGE
        } else {
            MIN_NEURONS_PER_RANGE
        };
        let neuron_bounds = even_bounds(net.n_neurons() as usize, threads, min_neurons);
        let net_neurons = net.n_neurons() as usize;
        let all_static = model.all_static_release();
        let static_exp = model.static_exp_only();
        let kinetic_only = model.kinetic_only();
        let uniform_delay = match net.syn_delay.first() {
            Some(&d) if net.syn_delay.iter().all(|&x| x == d) => Some(d),
            _ => None,
        };
        // Only the fused paths (exp receptors only) take arrivals unsorted, so other
        // networks skip the pass over their synapses. Whole quanta only (no mean-TM
        // type), so the step's f64 sum of quanta is exact in any order too. (Before the
        // state is allocated: the test's temporary list of sources, 4 B per synapse, then
        // stays below the construction's peak.)
        let in_spike_order = model.exp_only()
            && uniform_delay.is_some()
            && model
                .syn_types
                .iter()
                .all(|t| t.gpu.release != crate::layout::release::TM_MEAN)
            && in_spike_order(&model, &net);
        let exp_only = model.exp_only();
        let static_by_source = static_exp && in_spike_order;
        let (static_records, static_key_bits) =
            release::StaticSynapse::of(&model, &net, static_by_source);
        let static_by_source = static_by_source && !static_records.is_empty();
        let st = State::new(&model, &net);
        let spike_rows = if static_by_source {
            vec![Vec::new(); st.ring.len()]
        } else {
            Vec::new()
        };
        let spont = SpontParams::new(&model);
        Self {
            model,
            net,
            st,
            spont,
            events: Vec::new(),
            releases: Vec::new(),
            merged: Vec::new(),
            slow: Vec::new(),
            direct: Vec::new(),
            new_slots: Vec::new(),
            hits: Vec::new(),
            next_slots: Vec::new(),
            next_r: Vec::new(),
            one: cleft::OnePool::default(),
            next_one: cleft::OnePool::default(),
            one_stale: true,
            records_stale: false,
            profile: None,
            released_since: Vec::new(),
            event_quanta: Vec::new(),
            release_watch: Vec::new(),
            release_log: Vec::new(),
            evoked: Vec::new(),
            fired: vec![Fired::default(); neuron_bounds.len() - 1],
            team,
            threads,
            neuron_bounds,
            released: Vec::new(),
            event_cuts: Vec::new(),
            syn_bounds: Vec::new(),
            static_exp,
            exp_only,
            kinetic_only,
            static_records,
            static_key_bits,
            static_by_source,
            spike_rows,
            by_source_steps: 0,
            n_events: 0,
            uniform_delay,
            in_spike_order,
            sort_scratch: Vec::new(),
            fused_steps: 0,
            min_events: if all_static {
                MIN_STATIC_EVENTS_PER_RANGE
            } else {
                MIN_EVENTS_PER_RANGE
            },
            min_slots: MIN_SLOTS_PER_RANGE,
            whole: vec![0, net_neurons],
            cleft_bounds: even_bounds(net_neurons, threads, MIN_CLEFT_NEURONS_PER_RANGE),
            most_event_ranges: 0,
            active_steps: 0,
            cleft_syn: Vec::new(),
            cleft_slots: Vec::new(),
            cleft_new: Vec::new(),
            cleft_room: Vec::new(),
            cleft_out: Vec::new(),
        }
    }

    /// The same backend with ranges of at least `min_neurons` neurons and `min_events`
    /// events and active slots per thread (defaults: 16384 neurons (1024 with HH neurons),
    /// 256 events (1024 for static release), 2048 slots, below which a split costs more
    /// than it saves): lets tests split small networks. Results do not depend on it.
    pub fn with_ranges(mut self, min_neurons: usize, min_events: usize) -> Self {
        self.neuron_bounds = even_bounds(self.net.n_neurons() as usize, self.threads, min_neurons);
        self.fired = vec![Fired::default(); self.neuron_bounds.len() - 1];
        self.min_events = min_events.max(1);
        self.min_slots = min_events.max(1);
        self.cleft_bounds = even_bounds(self.net.n_neurons() as usize, self.threads, min_neurons);
        // The one-receptor pool's runs belong to the old ranges.
        self.one.compact();
        self
    }

    /// The same backend with `cleft` in its general form for every network, which a
    /// kinetic-only network otherwise runs in its straight-line form: lets tests compare
    /// the two. Results do not depend on it.
    pub fn with_general_cleft(mut self) -> Self {
        self.kinetic_only = false;
        self
    }

    /// Whether a step's arrivals, in the order `propagate` pushes them, already reach each
    /// target's pool entries in synapse order (`in_spike_order`), so the fused paths
    /// take them unsorted.
    pub fn arrivals_in_spike_order(&self) -> bool {
        self.in_spike_order
    }

    /// Bytes of the per-synapse records of static release onto exp receptors (0 when the
    /// network is not of that kind).
    pub fn static_record_bytes(&self) -> usize {
        std::mem::size_of_val(self.static_records.as_slice())
    }

    /// Steps whose static arrivals read their records in the order of the outgoing lists
    /// ([`release::release_static_by_source`]).
    pub fn by_source_steps(&self) -> u64 {
        self.by_source_steps
    }

    /// Steps whose arrivals went straight into the pools in one pass over the events
    /// ([`release::release_static_exp`], [`release::release_exp_direct`]).
    pub fn fused_steps(&self) -> u64 {
        self.fused_steps
    }

    /// Threads this backend runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The ranges of neurons of `integrate`, and the most ranges of events `release`
    /// was split into in one step so far.
    pub fn ranges(&self) -> (usize, usize) {
        (self.neuron_bounds.len() - 1, self.most_event_ranges)
    }

    /// `release` over this step's events, cut between synapses into one range per
    /// thread; the ranges' releases, per-event quanta, asynchronous fusions and evoked
    /// counters are concatenated (added) in order.
    fn release_ranges(&mut self) {
        let model = Arc::clone(&self.model);
        let net = Arc::clone(&self.net);
        self.cut_events();
        {
            let ring_len = self.st.ring_async.len();
            let t = self.st.step;
            let mut parts: Vec<_> = self
                .st
                .terminals(&self.syn_bounds)
                .into_iter()
                .zip(self.event_cuts.windows(2))
                .zip(self.released.iter_mut())
                .collect();
            let events = &self.events;
            for_each(self.team.as_ref(), &mut parts, |((tm, cut), out)| {
                release::release(&model, &net, t, &events[cut[0]..cut[1]], tm, ring_len, out)
            });
        }
        self.releases.clear();
        self.event_quanta.clear();
        for out in &self.released[..self.event_cuts.len() - 1] {
            self.releases.extend_from_slice(&out.releases);
            self.event_quanta.extend_from_slice(&out.per_event);
            for &(row, syn, site) in &out.fusions {
                self.st.ring_async[row as usize].push((syn, site));
            }
        }
        // Evoked release per projection key, for the run summary: integer counts and
        // quanta in 2^-16 units from every range (sums of integers, in any order).
        let (np, nt) = (model.pops.len(), model.syn_types.len());
        if self.evoked.len() != np * np * nt {
            self.evoked = vec![[0; 3]; np * np * nt];
        }
        for out in &self.released[..self.event_cuts.len() - 1] {
            for (c, r) in self.evoked.iter_mut().zip(&out.evoked) {
                c[0] += r[0];
                c[1] += r[1];
                c[2] += r[2];
            }
        }
    }

    /// `release` over this step's events and last step's minis, the direct split,
    /// `activate`, the pools' decay and the direct releases into them (the general path;
    /// `lap(1)` after `activate`).
    fn release_and_pools(
        &mut self,
        model: &Model,
        net: &Network,
        params: &StepParams,
        lap: &mut impl FnMut(usize),
    ) {
        self.release_ranges();
        if !self.release_watch.is_empty() {
            let t = self.st.step;
            for (&(syn, kind), &q) in self.events.iter().zip(&self.event_quanta) {
                if self.release_watch.binary_search(&syn).is_ok() {
                    let kind = if kind == deliver::SPIKE {
                        ReleaseKind::Evoked
                    } else {
                        ReleaseKind::Asynchronous
                    };
                    self.release_log.push(ReleaseEvent {
                        step: t,
                        synapse: syn,
                        kind,
                        quanta: q,
                    });
                }
            }
        }
        let minis = std::mem::take(&mut self.st.pending_minis);
        merge_releases(&self.releases, &minis, &mut self.merged);
        // Synapses whose receptors are all exp need no cleft or receptor state: their
        // quanta go straight to the neuron pool (§6.4a), after the pools decay.
        release::split_direct(
            model,
            net,
            &self.merged,
            &self.st,
            &mut self.slow,
            &mut self.direct,
        );
        let hits = self.kinetic_only.then_some(&mut self.hits);
        release::activate(
            model,
            net,
            &self.slow,
            &mut self.st,
            &mut self.new_slots,
            hits,
        );
        lap(1);
        let nr = model.receptors.len();
        {
            let mut parts = self.st.neurons(&self.neuron_bounds, nr);
            let clear = !self.exp_only;
            for_each(self.team.as_ref(), &mut parts, |c| {
                decay_pools::decay_pools_all(params, &model.gpu_receptors, c, clear)
            });
        }
        release::release_direct(model, net, &self.direct, &mut self.st);
    }

    /// `cleft` over ranges of postsynaptic neurons with their incoming synapses' active
    /// and newly activated slots, one per thread, each writing its range's next slots
    /// into the spare pool, which then becomes the active pool.
    fn cleft_ranges(&mut self) {
        let model = Arc::clone(&self.model);
        let net = Arc::clone(&self.net);
        let nr = model.receptors.len();
        let kinetic = self.kinetic_only;
        // The one-receptor form keeps its pool one array per field (`one`).
        let one = kinetic && cleft::one_form(&model);
        if one && self.one_stale {
            self.one.load(&model, &net, &self.st.active);
            self.one_stale = false;
        }
        let n_old = if one {
            self.one.len()
        } else {
            self.st.active.len()
        };
        // Ranges of postsynaptic neurons, their first incoming synapses and the first
        // active and new slots of those synapses (slots are ascending by synapse id); one
        // range while there are too few active synapses to share.
        let n_slots = n_old + self.new_slots.len();
        if n_slots == 0 && self.hits.is_empty() {
            // No synapse is active (always so with exp receptors only): nothing to do.
            return;
        }
        let nb = if n_slots >= 2 * self.min_slots {
            &self.cleft_bounds
        } else {
            &self.whole
        };
        // The one-receptor form's pool as the last step's ranges left it, each where it
        // was written (`OnePool::segs`), when this step's ranges are the same; else one
        // run.
        if one && !self.one.segs.is_empty() && self.one.segs.len() != nb.len() - 1 {
            self.one.compact();
        }
        let segs = one && !self.one.segs.is_empty();
        self.cleft_syn.clear();
        self.cleft_slots.clear();
        self.cleft_new.clear();
        self.cleft_room.clear();
        for (k, &b) in nb.iter().enumerate() {
            let s0 = net.in_offsets[b];
            self.cleft_syn.push(s0 as usize);
            // The range's first old slot, counted over the runs before it.
            let old = if segs {
                self.one.segs[..k].iter().map(|s| s.1).sum()
            } else if one {
                self.one.syn.partition_point(|&s| s < s0)
            } else {
                self.st.active.first_at_or_after(s0)
            };
            let new = self.new_slots.partition_point(|s| s.syn < s0);
            self.cleft_slots.push(old);
            self.cleft_new.push(new);
            self.cleft_room.push(old + new);
        }
        self.active_steps += n_slots as u64;
        let ranges = nb.len() - 1;
        if self.cleft_out.len() < ranges {
            self.cleft_out.resize(ranges, (None, 0));
        }
        let rs = self.st.active.stride;
        let (t, hs) = (self.st.step, self.st.handoff_stride);
        // The records' splits: none for the one-receptor form, which takes its own.
        let zeros = vec![0; nb.len()];
        let (record_slots, record_room) = if one {
            self.next_one.resize(n_slots);
            (&zeros, &zeros)
        } else {
            self.next_slots.resize(n_slots, Slot::default());
            self.next_r.resize(n_slots * rs, 0.0);
            (&self.cleft_slots, &self.cleft_room)
        };
        let mut parts = self.st.cleft_parts(
            nb,
            &self.cleft_syn,
            record_slots,
            &self.new_slots,
            &self.cleft_new,
            &mut self.next_slots[..if one { 0 } else { n_slots }],
            &mut self.next_r[..if one { 0 } else { n_slots * rs }],
            record_room,
            nr,
        );
        if kinetic {
            for (k, part) in parts.iter_mut().enumerate() {
                let range = self.cleft_syn[k] as u32..self.cleft_syn[k + 1] as u32;
                let a = self.hits.partition_point(|h| h.0 < range.start);
                let b = self.hits.partition_point(|h| h.0 < range.end);
                part.hits = &self.hits[a..b];
            }
        }
        if one {
            use crate::state::split_parts;
            let (old, room) = (&self.cleft_slots, &self.cleft_room);
            let next = &mut self.next_one;
            let mut syn = split_parts(&mut next.syn, room, 1);
            let mut t_mm = split_parts(&mut next.t_mm, room, 1);
            let mut r = split_parts(&mut next.r, room, 1);
            let mut key = split_parts(&mut next.key, room, 1);
            let mut gw = split_parts(&mut next.gw_ns, room, 1);
            let each = "one part per range";
            for (k, part) in parts.iter_mut().enumerate() {
                let o = match self.one.segs.get(k) {
                    Some(&(at, n)) => at..at + n,
                    None => old[k]..old[k + 1],
                };
                part.old_syn = &self.one.syn[o.clone()];
                part.old_t_mm = &self.one.t_mm[o.clone()];
                part.old_r = &self.one.r[o.clone()];
                part.old_key = &self.one.key[o.clone()];
                part.old_gw_ns = &self.one.gw_ns[o];
                part.out_syn = syn.next().expect(each);
                part.out_t_mm = t_mm.next().expect(each);
                part.out_r = r.next().expect(each);
                part.out_key = key.next().expect(each);
                part.out_gw_ns = gw.next().expect(each);
            }
        }
        let mut items: Vec<_> = parts.into_iter().zip(self.cleft_out.iter_mut()).collect();
        for_each(self.team.as_ref(), &mut items, |(part, (bad, kept))| {
            *bad = None;
            *kept = if one {
                cleft::cleft_one(&model, &net, t, hs, part, bad)
            } else if kinetic {
                cleft::cleft_kinetic(&model, &net, t, hs, part, bad)
            } else {
                cleft::cleft(&model, &net, t, hs, part, bad)
            };
        });
        // Each range's survivors start at its room; the gaps between ranges close (the
        // only copy, and only with more than one range), except in the one-receptor
        // form's pool, which keeps each range where it is for the next step's.
        let mut n = 0;
        for (k, &(bad, kept)) in self.cleft_out[..ranges].iter().enumerate() {
            if self.st.non_finite.is_none() {
                self.st.non_finite = bad;
            }
            let from = self.cleft_room[k];
            if one && ranges > 1 {
                self.next_one.segs.push((from, kept));
            } else if from != n {
                if one {
                    self.next_one.move_slots(from, kept, n);
                } else {
                    self.next_slots.copy_within(from..from + kept, n);
                    self.next_r
                        .copy_within(from * rs..(from + kept) * rs, n * rs);
                }
            }
            n += kept;
        }
        if one {
            if ranges == 1 {
                self.next_one.resize(n);
            }
            self.next_one.set_released(&self.new_slots, &self.hits);
            std::mem::swap(&mut self.one, &mut self.next_one);
            self.records_stale = true;
        } else {
            self.next_slots.truncate(n);
            self.next_r.truncate(n * rs);
            std::mem::swap(&mut self.st.active.slots, &mut self.next_slots);
            std::mem::swap(&mut self.st.active.r, &mut self.next_r);
        }
    }

    /// `integrate` over the neuron ranges, one per thread; the ranges' spikes are
    /// concatenated in order and the first non-finite value is kept.
    fn integrate_ranges(&mut self, params: &StepParams) {
        let model = Arc::clone(&self.model);
        let net = Arc::clone(&self.net);
        let nr = model.receptors.len();
        {
            let mut parts: Vec<_> = self
                .st
                .neurons(&self.neuron_bounds, nr)
                .into_iter()
                .zip(self.fired.iter_mut())
                .collect();
            let active_zero = self.exp_only;
            for_each(self.team.as_ref(), &mut parts, |(c, out)| {
                let mut p = *params;
                p.neuron_base = c.base as u32;
                c.active_zero = active_zero;
                integrate::integrate_all(&p, &model.gpu_pops, &model.gpu_receptors, &net, c, out)
            });
        }
        self.st.spikes.clear();
        for out in &self.fired {
            self.st.spikes.extend_from_slice(&out.spikes);
            if self.st.non_finite.is_none() {
                self.st.non_finite = out.non_finite;
            }
        }
    }

    /// Splits this step's events (sorted by synapse) into ranges for the threads, cut
    /// only between synapses: `event_cuts` into `events`, `syn_bounds` the synapse ids.
    fn cut_events(&mut self) {
        let ns = self.net.n_synapses() as usize;
        let n = self.events.len();
        let parts = self.threads.min(n / self.min_events).max(1);
        self.event_cuts.clear();
        self.syn_bounds.clear();
        self.event_cuts.push(0);
        self.syn_bounds.push(0);
        for k in 1..parts {
            let mut c = (k * n / parts).max(*self.event_cuts.last().expect("starts with 0"));
            while c < n && c > 0 && self.events[c].0 == self.events[c - 1].0 {
                c += 1;
            }
            if c < n && c > *self.event_cuts.last().expect("starts with 0") {
                self.event_cuts.push(c);
                self.syn_bounds.push(self.events[c].0 as usize);
            }
        }
        self.event_cuts.push(n);
        self.syn_bounds.push(ns);
        self.most_event_ranges = self.most_event_ranges.max(self.event_cuts.len() - 1);
        if self.released.len() < self.event_cuts.len() - 1 {
            self.released
                .resize(self.event_cuts.len() - 1, Released::default());
        }
    }

    /// One step; the one-receptor form's pool is not written into the state's records
    /// ([`CpuBackend::write_records`]).
    fn step_inner(&mut self) -> Result<(), Error> {
        let model = Arc::clone(&self.model);
        let net = Arc::clone(&self.net);
        self.st.quanta_step = 0.0;
        let params = self.step_params();
        // 1 deliver, 2 release (+ last step's minis), 3 cleft, 4 integrate, 5 propagate, 6 spontaneous.
        let mut clock = self
            .profile
            .map(|_| (std::time::Instant::now(), [0f64; KERNELS.len()]));
        let mut lap = |k: usize| {
            if let Some((t, acc)) = clock.as_mut() {
                let now = std::time::Instant::now();
                acc[k] += (now - *t).as_secs_f64();
                *t = now;
            }
        };
        // The fused path (below) takes this step's arrivals when they fit one range; it
        // needs only each target's arrivals in synapse order, which the spike order of
        // propagate already is when every delay is the same and sources ascend at each
        // target (`in_spike_order`): then they are not sorted.
        let arrivals = self.st.ring[self.st.step as usize % self.st.ring.len()].len();
        let fused = self.exp_only
            && self.release_watch.is_empty()
            && self.released_since.is_empty()
            && self.st.pending_minis.is_empty()
            && (self.threads == 1 || arrivals < 2 * self.min_events);
        let sorted = !(fused && self.in_spike_order);
        // Static release with its records in outgoing order takes the ring's row as it is
        // when it holds the outgoing lists of the sources kept for it (else, after a state
        // set from elsewhere, the arrivals go through `deliver` and the synapse arrays).
        let row = self.st.step as usize % self.st.ring.len();
        let by_source = fused
            && self.static_by_source
            && self.st.ring_async[row].is_empty()
            && self
                .spike_rows
                .get(row)
                .is_some_and(|sources| release::arrivals_of(&net, sources, &self.st.ring[row]));
        if by_source {
            self.events.clear();
            self.n_events = self.st.ring[row].len();
        } else {
            deliver::deliver(
                &mut self.st,
                &mut self.events,
                &mut self.sort_scratch,
                sorted,
            );
            self.n_events = self.events.len();
        }
        lap(0);
        let nr = model.receptors.len();
        if fused {
            // Release onto exp receptors only, as one range would run it: the pools decay
            // (nothing else reads or writes them before), then each release adds its
            // quanta straight into its target's pool, in one pass over the events.
            {
                let mut parts = self.st.neurons(&self.neuron_bounds, nr);
                for_each(self.team.as_ref(), &mut parts, |c| {
                    decay_pools::decay_pools_all(&params, &model.gpu_receptors, c, false)
                });
            }
            let (np, nt) = (model.pops.len(), model.syn_types.len());
            if self.evoked.len() != np * np * nt {
                self.evoked = vec![[0; 3]; np * np * nt];
            }
            self.most_event_ranges = self.most_event_ranges.max(1);
            self.fused_steps += 1;
            if by_source {
                release::release_static_by_source(
                    &net,
                    &self.static_records,
                    self.static_key_bits,
                    &self.spike_rows[row],
                    &mut self.st,
                    &mut self.evoked,
                );
                // The row's arrivals are taken (as `deliver` takes them).
                self.st.ring[row].clear();
                self.by_source_steps += 1;
            } else if self.static_exp {
                // Records in outgoing order cannot be found by synapse id.
                let records = if self.static_records.is_empty() || self.static_by_source {
                    release::StaticRecords::None
                } else {
                    release::StaticRecords::BySynapse(&self.static_records, self.static_key_bits)
                };
                release::release_static_exp(
                    &model,
                    &net,
                    records,
                    &self.events,
                    &mut self.st,
                    &mut self.evoked,
                );
            } else {
                let t = self.st.step;
                release::release_exp_direct(
                    &model,
                    &net,
                    t,
                    &self.events,
                    &mut self.st,
                    &mut self.evoked,
                );
            }
            lap(1);
        } else {
            self.release_and_pools(&model, &net, &params, &mut lap);
        }
        self.cleft_ranges();
        lap(2);
        self.integrate_ranges(&params);
        lap(3);
        propagate::propagate(&net, &mut self.st, self.uniform_delay);
        if let (true, Some(d)) = (self.static_by_source, self.uniform_delay) {
            // The sources of the arrivals `propagate` just put in the ring's row.
            // (A ring of another length, from a state set from elsewhere, keeps none.)
            let row = (self.st.step as usize + d as usize) % self.st.ring.len();
            if let Some(sources) = self.spike_rows.get_mut(row) {
                sources.clear();
                sources.extend_from_slice(&self.st.spikes);
            }
        }
        lap(4);
        if self.spont.rate_max > 0.0 {
            let ns = net.n_synapses() as usize;
            let t = self.st.step;
            let mut pending = std::mem::take(&mut self.st.pending_minis);
            let mut all = self.st.terminals(&[0, ns]);
            spontaneous::spontaneous(&model, &net, &self.spont, t, &mut all[0], &mut pending);
            self.st.pending_minis = pending;
        }
        if !self.release_watch.is_empty() {
            let t = self.st.step;
            for &(syn, q) in &self.st.pending_minis {
                if self.release_watch.binary_search(&syn).is_ok() {
                    self.release_log.push(ReleaseEvent {
                        step: t,
                        synapse: syn,
                        kind: ReleaseKind::Spontaneous,
                        quanta: q,
                    });
                }
            }
        }
        lap(5);
        if let (Some(p), Some((_, acc))) = (self.profile.as_mut(), clock) {
            for (a, b) in p.iter_mut().zip(acc) {
                *a += b;
            }
        }
        self.st.step += 1;
        if !self.released_since.is_empty() {
            for &(syn, q) in &self.direct {
                if let Ok(k) = self.released_since.binary_search_by_key(&syn, |w| w.0) {
                    self.released_since[k].1 += q;
                }
            }
        }
        for (syn, acc) in self.released_since.iter_mut() {
            if self.st.handoff_of(*syn as usize) == ACTIVE {
                // The one-receptor form's pool, where it is newer than the records.
                let released = if self.records_stale {
                    self.one.released_of(*syn)
                } else {
                    self.st
                        .active
                        .slot_of(*syn)
                        .map(|k| self.st.active.slots[k].released)
                };
                if let Some(q) = released {
                    *acc += q;
                }
            }
        }
        if let Some(bad) = self.st.non_finite {
            return Err(non_finite_error(&self.model, &self.net, &self.st, bad));
        }
        Ok(())
    }

    /// The state, read-only (always up to date: every step and batch ends with the
    /// active pool's records written).
    pub fn state_ref(&self) -> &State {
        debug_assert!(!self.records_stale);
        &self.st
    }

    /// The state, for tests that set up special conditions.
    pub fn state_mut(&mut self) -> &mut State {
        self.write_records();
        self.one_stale = true;
        &mut self.st
    }

    /// Writes the state's active pool records from the one-receptor form's pool, where
    /// that has moved on since.
    fn write_records(&mut self) {
        if self.records_stale {
            self.one.store(&mut self.st.active);
            self.records_stale = false;
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The per-step constants of the step about to be computed (the GPU's uniform).
    pub fn step_params(&self) -> StepParams {
        step_params(&self.model, &self.net, self.st.step)
    }
}

/// The per-step constants of step `step` (one `StepParams` of a GPU batch; the ring and
/// probe fields are the GPU's and 0 here).
pub fn step_params(model: &Model, net: &Network, step: u32) -> StepParams {
    StepParams {
        n_neurons: net.n_neurons(),
        n_synapses: net.n_synapses(),
        step,
        n_receptors: model.receptors.len() as u32,
        dt_ms: model.dt_ms as f32,
        mg_o_mm: model.mg_o_mm as f32,
        seed_lo: model.seed as u32,
        seed_hi: (model.seed >> 32) as u32,
        batch_row: 0,
        sample_row: 0,
        n_probes: 0,
        spike_words: net.n_neurons().div_ceil(32),
        n_neurons_all: net.n_neurons(),
        ..StepParams::default()
    }
}

/// Merges two ascending (synapse, quanta) lists, adding quanta of equal synapses.
fn merge_releases(a: &[(u32, f32)], b: &[(u32, f32)], out: &mut Vec<(u32, f32)>) {
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i].0 < b[j].0) {
            out.push(a[i]);
            i += 1;
        } else if i == a.len() || b[j].0 < a[i].0 {
            out.push(b[j]);
            j += 1;
        } else {
            out.push((a[i].0, a[i].1 + b[j].1));
            i += 1;
            j += 1;
        }
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> String {
        format!(
            "CPU reference ({} {}, {} thread{})",
            std::env::consts::ARCH,
            std::env::consts::OS,
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        )
    }

    fn step(&mut self) -> Result<(), Error> {
        let done = self.step_inner();
        self.write_records();
        done
    }

    /// [`Backend::advance`]'s loop, with the one-receptor form's pool written into the
    /// state's records once, at the end (also after an error), instead of after every step.
    fn advance(
        &mut self,
        n_steps: u32,
        probes: &[Probe],
        sample_every: u32,
    ) -> Result<crate::backend::Batch, Error> {
        let done =
            crate::backend::advance_by(self, n_steps, probes, sample_every, |b| b.step_inner());
        self.write_records();
        done
    }

    fn step_index(&self) -> u32 {
        self.st.step
    }

    fn spikes(&self) -> &[u32] {
        &self.st.spikes
    }

    fn quanta_last_step(&self) -> f64 {
        self.st.quanta_step
    }

    fn sample(&mut self, probes: &[Probe], out: &mut Vec<f32>) -> Result<(), Error> {
        if probes.iter().any(|p| matches!(p, Probe::Synapse(..))) {
            // A synapse's cleft and count are read from the state's records.
            self.write_records();
        }
        out.clear();
        for p in probes {
            out.push(match *p {
                Probe::Synapse(SynVar::Released, syn) => {
                    match self.released_since.binary_search_by_key(&syn, |w| w.0) {
                        Ok(k) => self.released_since[k].1,
                        Err(_) => sample_one(&self.model, &self.net, &self.st, *p),
                    }
                }
                _ => sample_one(&self.model, &self.net, &self.st, *p),
            });
        }
        // The sums restart with the next interval.
        for w in self.released_since.iter_mut() {
            w.1 = 0.0;
        }
        Ok(())
    }

    fn evoked_per_projection(&self) -> Vec<(String, u64, f64, u64)> {
        let (np, nt) = (self.model.pops.len(), self.model.syn_types.len());
        self.net
            .projections
            .iter()
            .map(|p| {
                let key = (p.source * np + p.target) * nt + p.syn_type;
                let c = self.evoked.get(key).copied().unwrap_or([0; 3]);
                (p.name.clone(), c[0], c[2] as f64 / 65536.0, c[1])
            })
            .collect()
    }

    fn watch_releases(&mut self, synapses: &[u32]) {
        self.release_watch = synapses.to_vec();
        self.release_watch.sort_unstable();
        self.release_watch.dedup();
    }

    fn take_releases(&mut self, out: &mut Vec<ReleaseEvent>) {
        out.append(&mut self.release_log);
    }

    fn watch(&mut self, probes: &[Probe]) -> Result<(), Error> {
        self.released_since = probes
            .iter()
            .filter_map(|p| match *p {
                Probe::Synapse(SynVar::Released, syn) => Some((syn, 0.0)),
                _ => None,
            })
            .collect();
        self.released_since.sort_unstable_by_key(|w| w.0);
        self.released_since.dedup_by_key(|w| w.0);
        Ok(())
    }

    fn state(&mut self) -> Result<&State, Error> {
        self.write_records();
        Ok(&self.st)
    }

    fn events_last_step(&self) -> u64 {
        self.n_events as u64
    }

    fn active_synapse_steps(&self) -> Option<u64> {
        Some(self.active_steps)
    }

    fn set_profiling(&mut self, on: bool) {
        self.profile = if on { Some([0.0; KERNELS.len()]) } else { None };
    }

    fn profile(&self) -> Vec<(&'static str, f64)> {
        self.profile
            .map(|p| KERNELS.iter().copied().zip(p).collect())
            .unwrap_or_default()
    }
}

/// The error for a non-finite value of `element` found in the step just computed, named
/// by its population (neuron) or projection (synapse) and local id.
pub fn non_finite_error(
    model: &Model,
    net: &Network,
    st: &State,
    (element, variable, synapse): (u32, &'static str, bool),
) -> Error {
    let (owner, id) = if synapse {
        if element < net.n_synapses() {
            let (p, local) = net.local_id(element);
            (format!("projection `{}`", net.projections[p].name), local)
        } else {
            ("synapse".to_string(), element as u64)
        }
    } else {
        model
            .pops
            .iter()
            .find(|p| element >= p.first && element < p.first + p.size)
            .map(|p| {
                (
                    format!("population `{}`", p.name),
                    (element - p.first) as u64,
                )
            })
            .unwrap_or_else(|| ("neuron".to_string(), element as u64))
    };
    let value = if synapse {
        "NaN or infinite"
    } else {
        let x = match variable {
            "m" => st.hh_m[element as usize],
            "h" => st.hh_h[element as usize],
            "n" => st.hh_n[element as usize],
            _ => st.v_mv[element as usize],
        };
        // The GPU reads the state back after the batch that found the value (or the one
        // after it, which overlapped), when a refractory reset may have replaced it.
        if x.is_nan() {
            "NaN"
        } else if x.is_infinite() {
            "infinite"
        } else {
            "NaN or infinite"
        }
    };
    let step = st.step.saturating_sub(1);
    Error::NonFinite {
        owner,
        id,
        variable: variable.to_string(),
        value: value.to_string(),
        step,
        time_ms: step as f64 * model.dt_ms,
    }
}

/// Value of one probe at the start of step `st.step`.
pub fn sample_one(model: &Model, net: &Network, st: &State, p: Probe) -> f32 {
    match p {
        Probe::Neuron(var, n) => sample::sample(
            [sample::probe_code(var), n],
            &step_params(model, net, st.step),
            &model.gpu_receptors,
            st,
        ),
        Probe::Synapse(var, s) => sample::sample_synapse(
            [sample::syn_probe_code(var), s],
            &step_params(model, net, st.step),
            &model.syn_types[net.syn_type(s as usize)].gpu,
            &model.gpu_receptors,
            &model.pow_tables,
            st,
        ),
    }
}
