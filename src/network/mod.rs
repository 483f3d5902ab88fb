//! Building the network: neuron ids, positions, connectivity (post-major synapse order),
//! weights, delays (§7), the outgoing CSR for `propagate`, spike-source tables, inputs.
//!
//! Synapse ids are assigned **sorted by target neuron** (then projection, then creation
//! order), so the incoming synapses of a neuron are one contiguous id range. Summation of
//! conductances in ascending synapse id is therefore a fixed-order gather per neuron
//! (DESIGN.md, determinism contract), and miniature release can pick an incoming synapse
//! by index (§3.4 thinning).

use glam::DVec3;

use crate::error::Error;
use crate::model::{Model, SynapseArrays, MYELINATED_M_PER_S_PER_UM, UNMYELINATED_K};
use crate::netfile::{
    validate, DistanceProfile, Fibre, Layout, LoadedNetwork, NetworkFile, NeuronModel,
    PopulationSpec, Rule, SpecPath,
};
use crate::philox::Stream;

/// Resident memory of a run beyond its state, its recording buffers and the program as
/// `check` finds it at its start: the per-step event, release and spike lists, delay
/// rings, active pool headroom, allocator slack and the code pages the step kernels
/// touch (about 0.9 MiB more file-backed memory in a run than at `check`'s start),
/// measured at 2.9-3.3 MiB on `coba` and `brette_coba` (x86-64 Linux, one thread).
pub const RUN_BUFFER_BYTES: u64 = 3 << 20;
/// Extra bytes per synapse while building (source, target, weight, delay per entry).
pub const BUILD_BYTES_PER_SYNAPSE: u64 = 16;
/// Bytes of state per neuron and receptor (active and pooled conductance).
pub const BYTES_PER_NEURON_RECEPTOR: u64 = 8;
/// Bytes of state per neuron besides receptors.
pub const BYTES_PER_NEURON: u64 = 64;

/// One built projection.
#[derive(Debug, Clone)]
pub struct ProjectionInfo {
    /// Name.
    pub name: String,
    /// Source population index.
    pub source: usize,
    /// Target population index.
    pub target: usize,
    /// Synapse type index.
    pub syn_type: usize,
    /// Number of synapses. The projection-local synapse id is the rank in creation order,
    /// which is ascending global id (the rules create a projection's synapses target by
    /// target, and each target's incoming synapses are numbered in creation order):
    /// [`Network::projection_synapses`] lists them.
    pub n_synapses: u64,
}

/// A DC current input.
#[derive(Debug, Clone)]
pub struct CurrentInput {
    /// Global neuron ids.
    pub neurons: Vec<u32>,
    /// Amplitude, pA.
    pub amplitude_pa: f32,
    /// First step with the current on.
    pub start_step: u32,
    /// First step with the current off.
    pub stop_step: u32,
}

/// The built network (static data).
#[derive(Debug, Clone)]
pub struct Network {
    /// Population index of every neuron.
    pub neuron_pop: Vec<u16>,
    /// Positions per population (µm), if given.
    pub positions: Vec<Option<Vec<DVec3>>>,
    /// Target neuron of every synapse (ascending).
    pub syn_post: Vec<u32>,
    /// Projection of every synapse (index into `projections`); its synapse type is
    /// `proj_type` of it ([`Network::syn_type`]). The source neuron is not stored per
    /// synapse: the outgoing CSR has it ([`Network::sources`]).
    pub syn_proj: Vec<u16>,
    /// Synapse type of every projection (`projections[p].syn_type`, as u16 for the
    /// kernels' lookup).
    pub proj_type: Vec<u16>,
    /// Delay of every synapse in steps (≥ 1).
    pub syn_delay: Vec<u16>,
    /// Weight of every synapse (scales g_max).
    pub syn_weight: Vec<f32>,
    /// Incoming synapse id range of neuron n: `in_offsets[n]..in_offsets[n+1]`.
    pub in_offsets: Vec<u32>,
    /// Outgoing CSR offsets per neuron.
    pub out_offsets: Vec<u32>,
    /// Outgoing synapse ids, grouped by source neuron, ascending within a group.
    pub out_syn: Vec<u32>,
    /// Longest delay in steps.
    pub max_delay: u32,
    /// Spike-time sources: offsets per neuron into `spike_steps`.
    pub spike_offsets: Vec<u32>,
    /// Spike steps of spike-time sources, ascending per neuron, duplicates removed.
    pub spike_steps: Vec<u32>,
    /// Current inputs.
    pub inputs: Vec<CurrentInput>,
    /// Inputs of neuron n, in input order: `input_ids[input_offsets[n]..input_offsets[n+1]]`
    /// (the per-neuron view of `inputs` that the `integrate` kernel reads).
    pub input_offsets: Vec<u32>,
    /// Input indices, grouped by neuron.
    pub input_ids: Vec<u32>,
    /// Projections.
    pub projections: Vec<ProjectionInfo>,
    /// Initial membrane potential per neuron, mV.
    pub v_init: Vec<f32>,
    /// Initial pooled conductance (neuron, global receptor, nS).
    pub g_init: Vec<(u32, u32, f32)>,
}

impl Network {
    /// Number of neurons.
    pub fn n_neurons(&self) -> u32 {
        self.neuron_pop.len() as u32
    }
    /// Number of synapses.
    pub fn n_synapses(&self) -> u32 {
        self.syn_post.len() as u32
    }

    /// Synapse type of synapse `s`.
    #[inline(always)]
    pub fn syn_type(&self, s: usize) -> usize {
        self.proj_type[self.syn_proj[s] as usize] as usize
    }

    /// Key of synapse `s`'s evoked-release counter among `n_pops` populations and
    /// `n_types` synapse types: (source population, target population, type) of its
    /// projection, as one index.
    #[inline(always)]
    pub fn evoked_key(&self, s: usize, n_pops: usize, n_types: usize) -> usize {
        let p = &self.projections[self.syn_proj[s] as usize];
        (p.source * n_pops + p.target) * n_types + p.syn_type
    }

    /// The global ids of projection `p`'s synapses in creation order (ascending), the
    /// projection-local id being the index. Built by one pass over the target
    /// population's incoming synapses.
    pub fn projection_synapses(&self, p: usize) -> Vec<u32> {
        let range = self.target_synapses(p);
        let mut ids = Vec::with_capacity(self.projections[p].n_synapses as usize);
        ids.extend(
            (range.start as u32..range.end as u32)
                .filter(|&s| self.syn_proj[s as usize] as usize == p),
        );
        ids
    }

    /// Projection and projection-local id of synapse `s` (its rank among the projection's
    /// synapses, [`Network::projection_synapses`]).
    pub fn local_id(&self, s: u32) -> (usize, u64) {
        let p = self.syn_proj[s as usize] as usize;
        let start = self.target_synapses(p).start;
        let local = self.syn_proj[start..s as usize]
            .iter()
            .filter(|&&q| q as usize == p)
            .count();
        (p, local as u64)
    }

    /// The synapse ids whose target lies in projection `p`'s target population (its
    /// synapses are among them).
    fn target_synapses(&self, p: usize) -> std::ops::Range<usize> {
        let target = self.projections[p].target as u16;
        let first = self.neuron_pop.iter().position(|&q| q == target);
        let last = self.neuron_pop.iter().rposition(|&q| q == target);
        match (first, last) {
            (Some(a), Some(b)) => self.in_offsets[a] as usize..self.in_offsets[b + 1] as usize,
            _ => 0..0,
        }
    }

    /// The source neuron of every synapse, from the outgoing CSR (a temporary of 4 B per
    /// synapse, for export and checks; the kernels never need it).
    pub fn sources(&self) -> Vec<u32> {
        let mut pre = vec![0u32; self.syn_post.len()];
        for n in 0..self.n_neurons() as usize {
            for &s in &self.out_syn[self.out_offsets[n] as usize..self.out_offsets[n + 1] as usize]
            {
                pre[s as usize] = n as u32;
            }
        }
        pre
    }
}

/// A memory size for people: GiB, MiB or KiB with sensible digits (an empty sum's -0.0
/// reads 0).
pub fn bytes_text(b: f64) -> String {
    let b = if b > 0.0 { b } else { 0.0 };
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// Size estimate of a network before it is built.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// Neurons.
    pub neurons: u64,
    /// Expected synapses per projection (name, count).
    pub synapses: Vec<(String, f64)>,
    /// Bytes of CPU state per synapse (`model::SynapseArrays::bytes_per_synapse`).
    pub bytes_per_synapse: u64,
    /// Bytes of CPU state while running.
    pub cpu_bytes: f64,
    /// Peak bytes while building (static arrays and the construction's temporaries,
    /// freed before the dynamic state is allocated).
    pub build_bytes: f64,
    /// Peak bytes of the run: the larger of `build_bytes` and `cpu_bytes`.
    pub peak_bytes: f64,
    /// Bytes of recorded samples buffered between flushes (at most
    /// `sim::MAX_BUFFERED_BYTES`, when the driver flushes early); part of `cpu_bytes`.
    pub record_bytes: f64,
}

/// Expected sizes and memory of a validated file.
pub fn estimate(f: &NetworkFile) -> Estimate {
    let size = |n: &str| {
        f.populations
            .iter()
            .find(|p| p.name == n)
            .map(|p| p.size as f64)
            .unwrap_or(0.0)
    };
    let neurons: u64 = f.populations.iter().map(|p| p.size).sum();
    let n_receptors: usize = f.synapse_types.iter().map(|s| s.receptors.len()).sum();
    let synapses: Vec<(String, f64)> = f
        .projections
        .iter()
        .map(|p| {
            let (ns, nt) = (size(&p.source), size(&p.target));
            let n = match p.rule {
                Rule::AllToAll => ns * nt,
                Rule::OneToOne => nt,
                Rule::FixedProbability => match (&p.p, &p.distance) {
                    (Some(prob), _) => prob * ns * nt,
                    (None, Some(d)) => {
                        expected_distance_pairs(f, p, d).unwrap_or(d.p_max * ns * nt)
                    }
                    _ => 0.0,
                },
                Rule::FixedIndegree => p.indegree.unwrap_or(0) as f64 * nt,
                Rule::Pairs => p.pairs.as_ref().map(|v| v.len()).unwrap_or(0) as f64,
                Rule::Sonata => p
                    .sonata_path
                    .as_ref()
                    .and_then(|path| {
                        let pop = p
                            .sonata
                            .as_ref()
                            .and_then(|s| s.population.clone())
                            .unwrap_or_else(|| p.display_name());
                        crate::record::sonata_net::count_edges(path, &pop)
                    })
                    .unwrap_or(0) as f64,
            };
            (p.display_name(), n)
        })
        .collect();
    let total_syn: f64 = synapses.iter().map(|s| s.1).sum();
    let neuron_bytes =
        neurons as f64 * (BYTES_PER_NEURON + BYTES_PER_NEURON_RECEPTOR * n_receptors as u64) as f64;
    let bytes_per_synapse = SynapseArrays::of(&Model::from_spec(f)).bytes_per_synapse();
    // Recording: samples per row (probes) times rows between flushes, 4 bytes each.
    let probes: f64 = f
        .record
        .neurons
        .iter()
        .map(|r| {
            let n = r
                .ids
                .as_ref()
                .map(|v| v.len() as f64)
                .unwrap_or(size(&r.population));
            n * r.variables.len() as f64
        })
        .chain(f.record.synapses.iter().map(|r| {
            let n = r.ids.as_ref().map(|v| v.len() as f64).unwrap_or_else(|| {
                synapses
                    .iter()
                    .find(|s| s.0 == r.projection)
                    .map(|s| s.1)
                    .unwrap_or(0.0)
            });
            n * r.variables.len() as f64
        }))
        .sum();
    let dt = f.simulation.dt_ms;
    let sample = f.record.sample_interval_ms.unwrap_or(dt).max(dt);
    let flush = f.record.flush_interval_ms.unwrap_or(100.0).max(dt);
    let rows = (flush / sample).ceil().max(1.0);
    let record_bytes = (probes * 4.0 * rows).min(
        crate::sim::MAX_BUFFERED_BYTES as f64 + probes * 4.0 * crate::sim::MAX_BATCH_STEPS as f64,
    );
    let cpu_bytes = neuron_bytes + total_syn * bytes_per_synapse as f64 + record_bytes;
    let build_bytes = neuron_bytes
        + total_syn * (crate::model::STATIC_BYTES_PER_SYNAPSE + BUILD_BYTES_PER_SYNAPSE) as f64;
    Estimate {
        neurons,
        synapses,
        bytes_per_synapse,
        cpu_bytes,
        build_bytes,
        peak_bytes: cpu_bytes.max(build_bytes),
        record_bytes,
    }
}

/// Expected connections of a distance-dependent projection: for up to 256 targets spread
/// evenly over the target population, the exact sum of the connection probabilities
/// from every source at the positions the build will use, scaled to all targets (None
/// without positions).
fn expected_distance_pairs(
    f: &NetworkFile,
    p: &crate::netfile::ProjectionSpec,
    d: &crate::netfile::DistanceSpec,
) -> Option<f64> {
    let idx = |n: &str| f.populations.iter().position(|q| q.name == n);
    let (si, ti) = (idx(&p.source)?, idx(&p.target)?);
    let seed = f.simulation.seed;
    let ps = positions(&f.populations[si], seed, si)?;
    let pt = positions(&f.populations[ti], seed, ti)?;
    let k = pt.len().min(256);
    let mut sum = 0.0;
    for j in 0..k {
        let b = pt[j * pt.len() / k];
        for a in &ps {
            let r = a.distance(b);
            sum += match d.profile {
                DistanceProfile::Gaussian => {
                    d.p_max * (-r * r / (2.0 * d.scale_um * d.scale_um)).exp()
                }
                DistanceProfile::Exponential => d.p_max * (-r / d.scale_um).exp(),
            };
        }
    }
    Some(sum / k as f64 * pt.len() as f64)
}

/// Memory available to this process in bytes (MemAvailable), or 8 GiB if unknown.
pub fn available_memory() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb * 1024.0)
        .unwrap_or(8.0 * (1u64 << 30) as f64)
}

fn positions(p: &PopulationSpec, seed: u64, pop_index: usize) -> Option<Vec<DVec3>> {
    let pos = p.positions.as_ref()?;
    let o = DVec3::from_array(pos.origin_um);
    let n = p.size as usize;
    let mut rng = Stream::new(seed, 0x5000 + pop_index as u32, 0);
    Some(match pos.layout {
        Layout::Grid => {
            let [nx, ny, _] = pos.shape.expect("validated");
            let sp = pos.spacing_um.expect("validated");
            (0..n as u64)
                .map(|i| {
                    o + sp
                        * DVec3::new(
                            (i % nx) as f64,
                            ((i / nx) % ny) as f64,
                            (i / (nx * ny)) as f64,
                        )
                })
                .collect()
        }
        Layout::Box => {
            let s = DVec3::from_array(pos.size_um.expect("validated"));
            (0..n)
                .map(|_| {
                    o + s * DVec3::new(
                        rng.uniform() as f64,
                        rng.uniform() as f64,
                        rng.uniform() as f64,
                    )
                })
                .collect()
        }
        Layout::Sphere => {
            let r = pos.radius_um.expect("validated");
            (0..n)
                .map(|_| loop {
                    let q = DVec3::new(
                        rng.uniform() as f64,
                        rng.uniform() as f64,
                        rng.uniform() as f64,
                    ) * 2.0
                        - DVec3::ONE;
                    if q.length_squared() <= 1.0 {
                        break o + q * r;
                    }
                })
                .collect()
        }
        Layout::List => pos
            .points_um
            .as_ref()
            .expect("validated")
            .iter()
            .map(|x| DVec3::from_array(*x))
            .collect(),
    })
}

/// An edge read from a SONATA file: source, and weight and delay (ms) when given.
type FileEdge = (u32, Option<f32>, Option<f32>);

/// Builds the network of a loaded file with its resolved model. Checks the memory
/// estimate first; delays beyond the u16 range are reported with their location.
pub fn build(net: &LoadedNetwork, model: &Model) -> Result<Network, Error> {
    let f = &net.file;
    let est = estimate(f);
    let limit = f
        .simulation
        .max_memory_gib
        .map(|g| g * (1u64 << 30) as f64)
        .unwrap_or_else(available_memory);
    if est.peak_bytes > limit {
        let gib = (1u64 << 30) as f64;
        let syn: f64 = est.synapses.iter().map(|s| s.1).sum();
        return Err(Error::TooLarge {
            needed_gib: est.peak_bytes / gib,
            limit_gib: limit / gib,
            detail: format!("{} neurons, {:.3e} synapses", est.neurons, syn),
            path: net.path.clone(),
        });
    }
    let seed = f.simulation.seed;
    let dt = f.simulation.dt_ms;
    let n_neurons = model.n_neurons() as usize;
    let pop_index = |name: &str| {
        f.populations
            .iter()
            .position(|p| p.name == name)
            .expect("validated reference")
    };
    let mut neuron_pop = Vec::with_capacity(n_neurons);
    for (i, p) in model.pops.iter().enumerate() {
        neuron_pop.extend(std::iter::repeat_n(i as u16, p.size as usize));
    }
    let positions: Vec<Option<Vec<DVec3>>> = f
        .populations
        .iter()
        .enumerate()
        .map(|(i, p)| positions(p, seed, i))
        .collect();

    // Per projection: entries (post, pre, weight, delay) grouped by ascending post.
    struct Entry {
        post: u32,
        pre: u32,
        weight: f32,
        delay: u16,
    }
    let mut per_proj: Vec<Vec<Entry>> = Vec::with_capacity(f.projections.len());
    let mut max_delay = 1u32;
    for (pi, p) in f.projections.iter().enumerate() {
        let at = SpecPath::root().key("projections").index(pi);
        let (si, ti) = (pop_index(&p.source), pop_index(&p.target));
        let (src, tgt) = (&model.pops[si], &model.pops[ti]);
        let same = si == ti;
        let mut entries: Vec<Entry> = Vec::new();
        let mut pairs_by_target: Vec<Vec<u32>> = Vec::new();
        if p.rule == Rule::Pairs {
            pairs_by_target = vec![Vec::new(); tgt.size as usize];
            for [a, b] in p.pairs.as_ref().expect("validated") {
                pairs_by_target[*b as usize].push(*a as u32);
            }
        }
        // Rule sonata: the file's edges grouped by target, in file order, with their
        // weights and delays (used unless the projection gives weight or delay_ms).
        let mut file_by_target: Vec<Vec<FileEdge>> = Vec::new();
        if p.rule == Rule::Sonata {
            let sp = p.sonata.as_ref().expect("validated");
            let path = p.sonata_path.clone().expect("resolved by the loader");
            let pop = sp.population.clone().unwrap_or_else(|| p.display_name());
            let e = crate::record::sonata_net::read_edges(&path, &pop).map_err(|e| {
                validate::spec_error(
                    &net.text,
                    &net.path,
                    &at.key("sonata").key("edges"),
                    e.to_string(),
                )
            })?;
            file_by_target = vec![Vec::new(); tgt.size as usize];
            for k in 0..e.source.len() {
                let (s, t) = (e.source[k], e.target[k]);
                if s >= src.size as u64 || t >= tgt.size as u64 {
                    return Err(validate::spec_error(
                        &net.text,
                        &net.path,
                        &at.key("sonata").key("edges"),
                        format!(
                            "edge {k} of `{pop}` in {} connects {s} -> {t}; accepted: source id < {} (`{}`), target id < {} (`{}`)",
                            path.display(), src.size, src.name, tgt.size, tgt.name
                        ),
                    ));
                }
                let w = e.weight.as_ref().map(|v| v[k]);
                let d = e.delay_ms.as_ref().map(|v| v[k]);
                file_by_target[t as usize].push((s as u32, w, d));
            }
        }
        let weight = p.weight.unwrap_or(crate::netfile::Dist::Const(1.0));
        let delay = p.delay_ms.unwrap_or(crate::netfile::Dist::Const(0.2));
        let mut sources: Vec<u32> = Vec::new();
        for t in 0..tgt.size {
            let mut rng = Stream::new(seed, 0x1000 + pi as u32, t);
            sources.clear();
            match p.rule {
                Rule::AllToAll => {
                    sources.extend((0..src.size).filter(|&s| !same || p.allow_autapses || s != t))
                }
                Rule::OneToOne => sources.push(t),
                Rule::FixedProbability => {
                    if let Some(d) = &p.distance {
                        let (ps, pt) = (
                            positions[si].as_ref().expect("validated"),
                            positions[ti].as_ref().expect("validated"),
                        );
                        for s in 0..src.size {
                            if same && !p.allow_autapses && s == t {
                                continue;
                            }
                            let dist = ps[s as usize].distance(pt[t as usize]);
                            let prob = match d.profile {
                                DistanceProfile::Gaussian => {
                                    d.p_max * (-dist * dist / (2.0 * d.scale_um * d.scale_um)).exp()
                                }
                                DistanceProfile::Exponential => {
                                    d.p_max * (-dist / d.scale_um).exp()
                                }
                            };
                            // 52-bit uniform on (0, 1): a probability of 1e-300 is
                            // (practically) never accepted (correctness issue, item 1).
                            if rng.uniform_f64() < prob {
                                sources.push(s);
                            }
                        }
                    } else {
                        let prob = p.p.expect("validated");
                        if prob >= 1.0 {
                            sources.extend(0..src.size);
                        } else if prob > 0.0 {
                            // Geometric skipping: gaps between successes are Geometric(p).
                            // ln(1 - p) through ln_1p: for p below ~1e-16, 1 - p rounds
                            // to 1 and ln gives 0 (an endless loop of zero-length gaps).
                            let ln_q = (-prob).ln_1p();
                            let mut s: f64 = -1.0;
                            loop {
                                s += 1.0 + (rng.uniform_open().ln() / ln_q).floor();
                                if !s.is_finite() || s >= src.size as f64 {
                                    break;
                                }
                                sources.push(s as u32);
                            }
                        }
                        if same && !p.allow_autapses {
                            sources.retain(|&s| s != t);
                        }
                    }
                }
                Rule::FixedIndegree => {
                    let k = p.indegree.expect("validated");
                    let can_skip_self = !same || p.allow_autapses || src.size > 1;
                    for _ in 0..k {
                        let mut s = rng.below(src.size);
                        while same && !p.allow_autapses && s == t && can_skip_self {
                            s = rng.below(src.size);
                        }
                        sources.push(s);
                    }
                    sources.sort_unstable();
                }
                Rule::Pairs => sources.extend_from_slice(&pairs_by_target[t as usize]),
                Rule::Sonata => sources.extend(file_by_target[t as usize].iter().map(|e| e.0)),
            }
            for (k, &s) in sources.iter().enumerate() {
                let from_file = file_by_target.get(t as usize).and_then(|v| v.get(k));
                let w = match from_file.and_then(|e| e.1).filter(|_| p.weight.is_none()) {
                    Some(w) => w.max(0.0),
                    None => weight.sample(&mut rng).max(0.0) as f32,
                };
                let file_delay = from_file
                    .and_then(|e| e.2)
                    .filter(|_| p.delay_ms.is_none() && p.conduction.is_none());
                let d_ms = match &p.conduction {
                    None => match file_delay {
                        Some(d) => d as f64,
                        None => delay.sample(&mut rng),
                    },
                    Some(c) => {
                        let (ps, pt) = (
                            positions[si].as_ref().expect("validated"),
                            positions[ti].as_ref().expect("validated"),
                        );
                        let l_um = ps[s as usize].distance(pt[t as usize]);
                        let v = c.velocity_m_per_s.unwrap_or_else(|| {
                            let d = c.diameter_um.expect("validated");
                            match c.fibre {
                                Fibre::Myelinated => MYELINATED_M_PER_S_PER_UM * d,
                                Fibre::Unmyelinated => UNMYELINATED_K * d.sqrt(),
                            }
                        });
                        // µm / (m/s) = 1e-6 s = 1e-3 ms (§7).
                        c.synaptic_delay_ms.unwrap_or(0.2) + l_um / v * 1e-3
                    }
                };
                let steps = (d_ms / dt).round().max(1.0);
                if steps > validate::MAX_DELAY_STEPS as f64 {
                    let key = if p.conduction.is_some() {
                        "conduction"
                    } else {
                        "delay_ms"
                    };
                    return Err(validate::spec_error(
                        &net.text,
                        &net.path,
                        &at.key(key),
                        format!("a delay of {d_ms:.3} ms is {steps} steps; accepted: at most {} steps ({} ms at dt = {dt} ms)", validate::MAX_DELAY_STEPS, validate::MAX_DELAY_STEPS as f64 * dt),
                    ));
                }
                max_delay = max_delay.max(steps as u32);
                entries.push(Entry {
                    post: tgt.first + t,
                    pre: src.first + s,
                    weight: w,
                    delay: steps as u16,
                });
            }
        }
        per_proj.push(entries);
    }

    // Post-major merge: counts per post, then fill in projection order.
    let mut in_offsets = vec![0u32; n_neurons + 1];
    let mut total: u64 = 0;
    for entries in &per_proj {
        for e in entries {
            in_offsets[e.post as usize + 1] += 1;
        }
        total += entries.len() as u64;
    }
    if total > validate::MAX_IDS {
        return Err(Error::TooLarge {
            needed_gib: total as f64 * est.bytes_per_synapse as f64 / (1u64 << 30) as f64,
            limit_gib: validate::MAX_IDS as f64 * est.bytes_per_synapse as f64
                / (1u64 << 30) as f64,
            detail: format!("{total} synapses exceed the u32 synapse ids"),
            path: net.path.clone(),
        });
    }
    for n in 0..n_neurons {
        in_offsets[n + 1] += in_offsets[n];
    }
    let ns = total as usize;
    let mut cursor: Vec<u32> = in_offsets[..n_neurons].to_vec();
    // The source of every synapse is a temporary: the outgoing CSR below keeps it.
    let (mut syn_post, mut syn_pre, mut syn_proj, mut syn_delay, mut syn_weight) = (
        vec![0u32; ns],
        vec![0u32; ns],
        vec![0u16; ns],
        vec![0u16; ns],
        vec![0f32; ns],
    );
    let mut projections = Vec::new();
    for (pi, entries) in per_proj.into_iter().enumerate() {
        let p = &f.projections[pi];
        let st = f
            .synapse_types
            .iter()
            .position(|s| s.name == p.synapse)
            .expect("validated");
        let n_synapses = entries.len() as u64;
        let mut last_id = None;
        for e in entries {
            let id = cursor[e.post as usize];
            cursor[e.post as usize] += 1;
            // Creation order is ascending id (ProjectionInfo::n_synapses).
            debug_assert!(last_id < Some(id));
            last_id = Some(id);
            let i = id as usize;
            syn_post[i] = e.post;
            syn_pre[i] = e.pre;
            syn_proj[i] = pi as u16;
            syn_delay[i] = e.delay;
            syn_weight[i] = e.weight;
        }
        projections.push(ProjectionInfo {
            name: p.display_name(),
            source: pop_index(&p.source),
            target: pop_index(&p.target),
            syn_type: st,
            n_synapses,
        });
    }
    let proj_type: Vec<u16> = projections.iter().map(|p| p.syn_type as u16).collect();

    // Outgoing CSR by source, ascending synapse id within a source.
    let mut out_offsets = vec![0u32; n_neurons + 1];
    for &pre in &syn_pre {
        out_offsets[pre as usize + 1] += 1;
    }
    for n in 0..n_neurons {
        out_offsets[n + 1] += out_offsets[n];
    }
    let mut oc: Vec<u32> = out_offsets[..n_neurons].to_vec();
    let mut out_syn = vec![0u32; ns];
    for (id, &pre) in syn_pre.iter().enumerate() {
        out_syn[oc[pre as usize] as usize] = id as u32;
        oc[pre as usize] += 1;
    }
    drop(syn_pre);

    // Spike-time sources.
    let mut spike_offsets = vec![0u32; n_neurons + 1];
    let mut spike_steps = Vec::new();
    for (pi, p) in f.populations.iter().enumerate() {
        let first = model.pops[pi].first as usize;
        for i in 0..p.size as usize {
            if let Some(st) = &p.spike_times {
                let times: &[f64] = match (&st.times_ms, &st.per_neuron_ms) {
                    (Some(t), _) => t,
                    (None, Some(l)) => &l[i],
                    _ => &[],
                };
                let mut steps: Vec<u32> = times.iter().map(|t| (t / dt).round() as u32).collect();
                steps.sort_unstable();
                steps.dedup();
                spike_steps.extend(steps);
            }
            spike_offsets[first + i + 1] = spike_steps.len() as u32;
        }
    }

    let inputs: Vec<CurrentInput> = f
        .inputs
        .iter()
        .map(|inp| {
            let pi = pop_index(&inp.target);
            let first = model.pops[pi].first;
            let neurons = match &inp.ids {
                Some(ids) => ids.iter().map(|&i| first + i as u32).collect(),
                None => (first..first + model.pops[pi].size).collect(),
            };
            CurrentInput {
                neurons,
                amplitude_pa: inp.amplitude_pa as f32,
                start_step: (inp.start_ms / dt).round() as u32,
                stop_step: inp
                    .stop_ms
                    .map(|s| (s / dt).round().min(u32::MAX as f64) as u32)
                    .unwrap_or(u32::MAX),
            }
        })
        .collect();

    // Per-neuron input lists (CSR, input order within a neuron).
    let mut input_offsets = vec![0u32; n_neurons + 1];
    for inp in &inputs {
        for &n in &inp.neurons {
            input_offsets[n as usize + 1] += 1;
        }
    }
    for n in 0..n_neurons {
        input_offsets[n + 1] += input_offsets[n];
    }
    let mut fill: Vec<u32> = input_offsets[..n_neurons].to_vec();
    let mut input_ids = vec![0u32; input_offsets[n_neurons] as usize];
    for (k, inp) in inputs.iter().enumerate() {
        for &n in &inp.neurons {
            input_ids[fill[n as usize] as usize] = k as u32;
            fill[n as usize] += 1;
        }
    }

    // Initial values.
    let mut v_init = vec![0f32; n_neurons];
    let mut g_init = Vec::new();
    for (pi, p) in f.populations.iter().enumerate() {
        let pm = &model.pops[pi];
        let mut rng = Stream::new(seed, 0x6000 + pi as u32, 0);
        let init = p.init.clone().unwrap_or_default();
        for i in 0..pm.size {
            let n = (pm.first + i) as usize;
            v_init[n] = match (&init.v_mv, p.model) {
                (Some(d), _) => d.sample(&mut rng) as f32,
                (None, NeuronModel::Lif | NeuronModel::Hh) => pm.gpu.e_l_mv,
                _ => 0.0,
            };
        }
        for (key, d) in &init.g_ns {
            let ri = model
                .receptors
                .iter()
                .position(|r| {
                    format!("{}.{}", model.syn_types[r.syn_type].name, r.kind.name()) == *key
                })
                .expect("validated");
            for i in 0..pm.size {
                g_init.push((pm.first + i, ri as u32, d.sample(&mut rng).max(0.0) as f32));
            }
        }
    }

    Ok(Network {
        neuron_pop,
        positions,
        syn_post,
        syn_proj,
        proj_type,
        syn_delay,
        syn_weight,
        in_offsets,
        out_offsets,
        out_syn,
        max_delay,
        spike_offsets,
        spike_steps,
        inputs,
        input_offsets,
        input_ids,
        projections,
        v_init,
        g_init,
    })
}
