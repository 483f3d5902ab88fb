//! The network file: what the user writes (TOML, one file a network).
//!
//! Every key carries its unit in its name (`dt_ms`, `g_max_ns`, `ca_o_mm`). Values the
//! user leaves out take the defaults of `model-spec.md` (resolved in `crate::model`).
//! Loading has two stages, both reporting `file:line:column`, the field, the value and
//! the accepted range: serde (unknown keys, wrong types, unknown variants) and
//! [`validate`](mod@validate) (ranges and cross references). The format is documented field by field
//! in `networks/README.md`.

mod dist;
mod locate;
mod overrides;
pub mod validate;

pub use dist::Dist;
pub use locate::{line_col, path_at, PathSeg, SpecPath};
pub use overrides::apply_overrides;
pub use validate::validate;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, SpecError};

/// The whole network file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// Format version; must be 1.
    pub version: u32,
    /// Free text shown by `quantal check` and stored in the output.
    #[serde(default)]
    pub description: Option<String>,
    /// Time step, duration, seed.
    pub simulation: SimulationSpec,
    /// Bath (\[Ca\]o, \[Mg\]o) shared by all synapses.
    #[serde(default)]
    pub environment: EnvironmentSpec,
    /// Neuron populations and spike sources.
    #[serde(default)]
    pub populations: Vec<PopulationSpec>,
    /// Synapse types: transmitter, release model, cleft, receptors.
    #[serde(default)]
    pub synapse_types: Vec<SynapseTypeSpec>,
    /// Connections between populations.
    #[serde(default)]
    pub projections: Vec<ProjectionSpec>,
    /// External currents injected into neurons.
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    /// What to record.
    #[serde(default)]
    pub record: RecordSpec,
}

/// `[simulation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationSpec {
    /// Integration step in ms (default 0.1; §6.4).
    #[serde(default = "default_dt")]
    pub dt_ms: f64,
    /// Simulated time in ms.
    pub duration_ms: f64,
    /// Seed of every random number of the run (construction and dynamics): any u64, as
    /// an integer or, from 2^63 on (beyond TOML's integers), as a decimal string.
    #[serde(default = "default_seed", deserialize_with = "seed_from_int_or_string")]
    pub seed: u64,
    /// Largest state the run may allocate, in GiB (default: the machine's available memory).
    #[serde(default)]
    pub max_memory_gib: Option<f64>,
}

fn default_dt() -> f64 {
    0.1
}
fn default_seed() -> u64 {
    1
}

/// A u64 seed from a TOML integer or a decimal string.
fn seed_from_int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seed {
        Int(u64),
        Text(String),
    }
    match Seed::deserialize(d)? {
        Seed::Int(v) => Ok(v),
        Seed::Text(t) => t.trim().parse::<u64>().map_err(|_| {
            serde::de::Error::custom(format!(
                "seed `{}` is not an integer in [0, 18446744073709551615]",
                t.chars().take(40).collect::<String>()
            ))
        }),
    }
}

/// `[environment]`: extracellular ions (§1.1, §5.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Extracellular calcium in mM (reference saline 2 mM).
    #[serde(default = "default_ca_o")]
    pub ca_o_mm: f64,
    /// Extracellular magnesium in mM (reference saline 1 mM); also sets the NMDA block.
    #[serde(default = "default_mg_o")]
    pub mg_o_mm: f64,
}

fn default_ca_o() -> f64 {
    2.0
}
fn default_mg_o() -> f64 {
    1.0
}

impl Default for EnvironmentSpec {
    fn default() -> Self {
        Self {
            ca_o_mm: default_ca_o(),
            mg_o_mm: default_mg_o(),
        }
    }
}

/// Neuron model of a population.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeuronModel {
    /// Conductance-based leaky integrate-and-fire with refractoriness (§6.1).
    Lif,
    /// Traub-Miles Hodgkin-Huxley (§6.2).
    Hh,
    /// Poisson spike source.
    Poisson,
    /// Spike source firing at listed times.
    SpikeTimes,
}

/// `[[populations]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationSpec {
    /// Unique name (also the SONATA population name in the output).
    pub name: String,
    /// Number of neurons (or sources).
    pub size: u64,
    /// Neuron model.
    pub model: NeuronModel,
    /// Parameters of `model = "lif"`.
    #[serde(default)]
    pub lif: Option<LifSpec>,
    /// Parameters of `model = "hh"`.
    #[serde(default)]
    pub hh: Option<HhSpec>,
    /// Parameters of `model = "poisson"`.
    #[serde(default)]
    pub poisson: Option<PoissonSpec>,
    /// Parameters of `model = "spike_times"`.
    #[serde(default)]
    pub spike_times: Option<SpikeTimesSpec>,
    /// Positions in space (µm), needed for distance rules and conduction delays.
    #[serde(default)]
    pub positions: Option<PositionsSpec>,
    /// Initial values.
    #[serde(default)]
    pub init: Option<InitSpec>,
}

/// LIF parameters (§6.1); every key optional, defaults from the spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LifSpec {
    pub c_m_pf: Option<f64>,
    pub g_l_ns: Option<f64>,
    pub e_l_mv: Option<f64>,
    pub v_th_mv: Option<f64>,
    pub v_reset_mv: Option<f64>,
    pub t_ref_ms: Option<f64>,
    pub q_rr_ns: Option<f64>,
    pub tau_rr_ms: Option<f64>,
    pub e_rr_mv: Option<f64>,
    pub q_sfa_ns: Option<f64>,
    pub tau_sfa_ms: Option<f64>,
    pub e_sfa_mv: Option<f64>,
    pub delta_theta_mv: Option<f64>,
    pub tau_theta_ms: Option<f64>,
    pub i_bias_pa: Option<f64>,
}

/// Hodgkin-Huxley (Traub-Miles) parameters (§6.2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HhSpec {
    pub c_m_pf: Option<f64>,
    pub g_l_ns: Option<f64>,
    pub e_l_mv: Option<f64>,
    pub g_na_ns: Option<f64>,
    pub g_k_ns: Option<f64>,
    pub e_na_mv: Option<f64>,
    pub e_k_mv: Option<f64>,
    pub v_t_mv: Option<f64>,
    pub v_spike_mv: Option<f64>,
    pub lockout_ms: Option<f64>,
    pub i_bias_pa: Option<f64>,
}

/// Poisson source parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoissonSpec {
    /// Rate of each source in Hz.
    pub rate_hz: f64,
    /// Start of firing in ms (default 0).
    #[serde(default)]
    pub start_ms: f64,
    /// End of firing in ms (default: end of the run).
    #[serde(default)]
    pub stop_ms: Option<f64>,
}

/// Explicit spike times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeTimesSpec {
    /// Times in ms fired by every source of the population.
    #[serde(default)]
    pub times_ms: Option<Vec<f64>>,
    /// Times in ms per source (one list per neuron of the population).
    #[serde(default)]
    pub per_neuron_ms: Option<Vec<Vec<f64>>>,
}

/// How positions are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Regular grid of `shape` points `spacing_um` apart.
    Grid,
    /// Uniformly random in a box of `size_um`.
    Box,
    /// Uniformly random in a ball of `radius_um`.
    Sphere,
    /// Listed in `points_um`.
    List,
}

/// `[populations.positions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionsSpec {
    /// Layout rule.
    pub layout: Layout,
    /// Origin (grid corner, box corner or ball centre), µm.
    #[serde(default)]
    pub origin_um: [f64; 3],
    /// Grid spacing, µm.
    #[serde(default)]
    pub spacing_um: Option<f64>,
    /// Grid shape (points per axis); the product must equal the population size.
    #[serde(default)]
    pub shape: Option<[u64; 3]>,
    /// Box edge lengths, µm.
    #[serde(default)]
    pub size_um: Option<[f64; 3]>,
    /// Ball radius, µm.
    #[serde(default)]
    pub radius_um: Option<f64>,
    /// Listed points, µm.
    #[serde(default)]
    pub points_um: Option<Vec<[f64; 3]>>,
}

/// `[populations.init]`: initial values, constants or distributions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitSpec {
    /// Membrane potential in mV (default: E_L).
    #[serde(default)]
    pub v_mv: Option<Dist>,
    /// Initial pooled conductance in nS per receptor, keyed `"<synapse type>.<receptor kind>"`.
    #[serde(default)]
    pub g_ns: BTreeMap<String, Dist>,
}

/// Transmitter of a synapse type (§4): sets cleft defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transmitter {
    /// Glutamate (diffusion + EAAT uptake).
    Glutamate,
    /// GABA (diffusion + GAT uptake).
    Gaba,
    /// Glycine (diffusion + GlyT uptake).
    Glycine,
    /// Acetylcholine (hydrolysis by acetylcholinesterase + diffusion).
    Acetylcholine,
}

/// Presynaptic release model (§0, §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseModel {
    /// Event-driven calcium model (default, §1.1, §2.1, §3.2).
    #[default]
    Ca,
    /// Stochastic per-site Tsodyks-Markram (Fuhrmann et al. 2002; §3.3).
    TmStochastic,
    /// Deterministic mean Tsodyks-Markram (§2.2).
    TmMean,
    /// Exactly one quantum per presynaptic spike: no release sites, no failures, no
    /// short-term plasticity and no terminal state. The fixed conductance jump
    /// (g_max·w per spike) of the benchmark networks (Brette et al. 2007).
    Static,
}

/// Release probability law of the `ca` model (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FacilitationLaw {
    /// Residual Ca multiplies the Ca drive inside the Hill function (default).
    #[default]
    FacilitatedDrive,
    /// The original DKR 2000 law p = F1 + (1 - F1) X_F / (X_F + K_F).
    Dkr,
}

/// `[synapse_types.ca]` (§1-§3).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CaReleaseSpec {
    pub n_sites: Option<u32>,
    pub p_ref: Option<f64>,
    pub p_max: Option<f64>,
    pub hill_n: Option<f64>,
    pub phi_f: Option<f64>,
    pub k_f: Option<f64>,
    pub tau_f_ms: Option<f64>,
    pub tau_d_ms: Option<f64>,
    pub k0_per_s: Option<f64>,
    pub kmax_per_s: Option<f64>,
    pub k_d: Option<f64>,
    pub k_ca_mm: Option<f64>,
    pub k_mg_mm: Option<f64>,
    pub law: Option<FacilitationLaw>,
    pub ca_rest_um: Option<f64>,
    pub delta_ca_um: Option<f64>,
}

/// `[synapse_types.tm]` (§2.2, §3.3).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TmSpec {
    pub n_sites: Option<u32>,
    pub u: Option<f64>,
    pub tau_rec_ms: Option<f64>,
    pub tau_fac_ms: Option<f64>,
}

/// `[synapse_types.vesicles]` (§3.1, §3.4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct VesicleSpec {
    pub reserve_size: Option<u32>,
    pub tau_endo_ms: Option<f64>,
    pub async_rho: Option<f64>,
    pub tau_async_ms: Option<f64>,
    pub spont_rate_per_s: Option<f64>,
}

/// Cleft transmitter time course (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleftModel {
    /// First-order clearance by diffusion, uptake and enzymes (default).
    Exponential,
    /// Destexhe-Mainen-Sejnowski square pulse.
    Pulse,
}

/// `[synapse_types.cleft]` (§4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CleftSpec {
    pub model: Option<CleftModel>,
    pub delta_t_mm: Option<f64>,
    pub k_diffusion_per_ms: Option<f64>,
    pub k_uptake_per_ms: Option<f64>,
    pub k_enzyme_per_ms: Option<f64>,
    pub pulse_mm: Option<f64>,
    pub pulse_ms: Option<f64>,
    pub clear_threshold_mm: Option<f64>,
}

/// Receptor kinds (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ReceptorKind {
    /// AMPA (two-state, §5.1).
    Ampa,
    /// NMDA with Mg2+ block (§5.1).
    Nmda,
    /// GABA_A (§5.1).
    GabaA,
    /// Glycine (§5.1).
    Glycine,
    /// Nicotinic ACh (§5.1).
    Nach,
    /// GABA_B metabotropic cascade (§5.2).
    GabaB,
    /// Exponential conductance per quantum (the Brette et al. 2007 benchmark synapse, §6.4a).
    Exp,
}

impl ReceptorKind {
    /// Lower-case name as written in files and output.
    pub fn name(self) -> &'static str {
        match self {
            ReceptorKind::Ampa => "ampa",
            ReceptorKind::Nmda => "nmda",
            ReceptorKind::GabaA => "gaba_a",
            ReceptorKind::Glycine => "glycine",
            ReceptorKind::Nach => "nach",
            ReceptorKind::GabaB => "gaba_b",
            ReceptorKind::Exp => "exp",
        }
    }
}

/// `[[synapse_types.receptors]]` (§5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ReceptorSpec {
    pub kind: ReceptorKind,
    pub g_max_ns: Option<f64>,
    pub alpha_per_mm_ms: Option<f64>,
    pub beta_per_ms: Option<f64>,
    pub e_rev_mv: Option<f64>,
    pub tau_ms: Option<f64>,
    pub k1_per_mm_ms: Option<f64>,
    pub k2_per_ms: Option<f64>,
    pub k3_per_ms: Option<f64>,
    pub k4_per_ms: Option<f64>,
    pub k_d: Option<f64>,
    pub n_hill: Option<f64>,
}

/// `[[synapse_types]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynapseTypeSpec {
    /// Unique name.
    pub name: String,
    /// Transmitter (sets cleft defaults).
    pub transmitter: Transmitter,
    /// Release model.
    #[serde(default)]
    pub release: ReleaseModel,
    /// `ca` release parameters.
    #[serde(default)]
    pub ca: Option<CaReleaseSpec>,
    /// `tm_*` release parameters.
    #[serde(default)]
    pub tm: Option<TmSpec>,
    /// Pools, recycling, asynchronous and spontaneous release.
    #[serde(default)]
    pub vesicles: Option<VesicleSpec>,
    /// Cleft clearance.
    #[serde(default)]
    pub cleft: Option<CleftSpec>,
    /// Postsynaptic receptors (at least one, at most three).
    pub receptors: Vec<ReceptorSpec>,
}

/// Connection rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Every source to every target.
    AllToAll,
    /// Source i to target i (equal sizes).
    OneToOne,
    /// Each pair independently with probability `p` (or the distance profile).
    FixedProbability,
    /// Each target gets exactly `indegree` sources drawn with replacement.
    FixedIndegree,
    /// Listed `pairs = [[source, target], ...]`.
    Pairs,
    /// The edges of a SONATA edge population (`[projections.sonata]`), e.g. written by
    /// an earlier run (`RUN.edges.h5`) or by another tool.
    Sonata,
}

/// `[projections.sonata]`: connectivity from a SONATA edges file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SonataEdgesSpec {
    /// The edges file, relative to the network file's directory.
    pub edges: String,
    /// The edge population (default: the projection's name).
    #[serde(default)]
    pub population: Option<String>,
}

/// Distance-dependent connection probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistanceProfile {
    /// p_max · exp(-d² / (2 σ²)).
    Gaussian,
    /// p_max · exp(-d / λ).
    Exponential,
}

/// `[projections.distance]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistanceSpec {
    /// Profile.
    pub profile: DistanceProfile,
    /// Probability at zero distance.
    pub p_max: f64,
    /// Length scale in µm (σ for gaussian, λ for exponential).
    pub scale_um: f64,
}

/// Axon type for distance-derived delays (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fibre {
    /// v = 6 m/s per µm of diameter.
    Myelinated,
    /// v = k·√d, k = 1.5 m/s/√µm.
    Unmyelinated,
}

/// `[projections.conduction]`: delay = synaptic delay + distance / velocity (§7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConductionSpec {
    /// Fibre type.
    pub fibre: Fibre,
    /// Axon diameter in µm.
    #[serde(default)]
    pub diameter_um: Option<f64>,
    /// Velocity in m/s (overrides the diameter rule).
    #[serde(default)]
    pub velocity_m_per_s: Option<f64>,
    /// Chemical synaptic latency in ms (default 0.2).
    #[serde(default)]
    pub synaptic_delay_ms: Option<f64>,
}

/// `[[projections]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionSpec {
    /// Unique name (default `"<source>_to_<target>"`).
    #[serde(default)]
    pub name: Option<String>,
    /// Source population.
    pub source: String,
    /// Target population.
    pub target: String,
    /// Synapse type.
    pub synapse: String,
    /// Connection rule.
    pub rule: Rule,
    /// Probability for `fixed_probability`.
    #[serde(default)]
    pub p: Option<f64>,
    /// In-degree for `fixed_indegree`.
    #[serde(default)]
    pub indegree: Option<u64>,
    /// Pairs for `pairs`.
    #[serde(default)]
    pub pairs: Option<Vec<[u64; 2]>>,
    /// Allow a neuron to contact itself (same population only). Default false.
    #[serde(default)]
    pub allow_autapses: bool,
    /// Distance-dependent probability (replaces `p`).
    #[serde(default)]
    pub distance: Option<DistanceSpec>,
    /// Weight: multiplies the receptors' g_max (default 1).
    #[serde(default)]
    pub weight: Option<Dist>,
    /// Delay in ms (default 0.1 ms, one step at least).
    #[serde(default)]
    pub delay_ms: Option<Dist>,
    /// Delay from distance and conduction velocity (replaces `delay_ms`).
    #[serde(default)]
    pub conduction: Option<ConductionSpec>,
    /// Connectivity from a SONATA edges file (rule `sonata`); its weights and delays are
    /// used unless `weight` or `delay_ms` is given.
    #[serde(default)]
    pub sonata: Option<SonataEdgesSpec>,
    /// `sonata.edges` resolved against the network file's directory (set by the loader).
    #[serde(skip)]
    pub sonata_path: Option<PathBuf>,
}

/// `[[inputs]]`: a current injected into neurons (enters `integrate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Target population.
    pub target: String,
    /// Current in pA (positive depolarises).
    pub amplitude_pa: f64,
    /// Start in ms (default 0).
    #[serde(default)]
    pub start_ms: f64,
    /// End in ms (default: end of run).
    #[serde(default)]
    pub stop_ms: Option<f64>,
    /// Neuron ids within the population (default: all).
    #[serde(default)]
    pub ids: Option<Vec<u64>>,
}

/// `[record]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// Populations whose spikes are written (default: all).
    #[serde(default)]
    pub spikes: Option<Vec<String>>,
    /// Sampling interval of the reports in ms (default dt).
    #[serde(default)]
    pub sample_interval_ms: Option<f64>,
    /// Interval between flushes of the output file in ms of simulated time (default 100).
    #[serde(default)]
    pub flush_interval_ms: Option<f64>,
    /// Neuron reports.
    #[serde(default)]
    pub neurons: Vec<NeuronRecordSpec>,
    /// Synapse reports.
    #[serde(default)]
    pub synapses: Vec<SynapseRecordSpec>,
    /// Write the built network as SONATA nodes and edges beside the results (default:
    /// yes up to 2 million synapses; about 60 bytes per synapse on disk).
    #[serde(default)]
    pub network: Option<bool>,
    /// Projections whose every release event is written (time, synapse, quanta, kind).
    #[serde(default)]
    pub releases: Option<Vec<String>>,
}

/// `[[record.neurons]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuronRecordSpec {
    /// Population.
    pub population: String,
    /// Variables (see networks/README.md).
    pub variables: Vec<String>,
    /// Neuron ids (default: all).
    #[serde(default)]
    pub ids: Option<Vec<u64>>,
}

/// `[[record.synapses]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynapseRecordSpec {
    /// Projection.
    pub projection: String,
    /// Variables (see networks/README.md).
    pub variables: Vec<String>,
    /// Synapse ids within the projection (default: all).
    #[serde(default)]
    pub ids: Option<Vec<u64>>,
}

impl ProjectionSpec {
    /// The projection's name: explicit or `"<source>_to_<target>"`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}_to_{}", self.source, self.target))
    }
}

/// A loaded network file: the parsed content with its source text for error locations.
#[derive(Debug, Clone)]
pub struct LoadedNetwork {
    /// Parsed and validated file.
    pub file: NetworkFile,
    /// The text that was parsed (after `--set` overrides).
    pub text: String,
    /// The text of the file as written.
    pub original_text: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// The `--set` overrides applied, as given.
    pub overrides: Vec<String>,
    /// Located warnings: what the file asks for that the model changes (a delay rounded
    /// up to one step, a sampling interval rounded to whole steps, a spike time after the
    /// run, a step too coarse for HH).
    pub warnings: Vec<String>,
}

/// Reads, overrides, parses and validates a network file.
pub fn load(path: &Path, overrides: &[String]) -> Result<LoadedNetwork, Error> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        cause: e,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(located(
            path,
            1,
            1,
            format!(
                "the file has {size} bytes; accepted: at most {MAX_FILE_BYTES} (64 MiB): large connectivity belongs in rules, not in pair lists"
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let original_text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let ok = std::str::from_utf8(&e.as_bytes()[..at]).unwrap_or("");
            let (line, column) = line_col(ok, ok.len());
            return Err(located(
                path,
                line,
                column,
                format!("byte {at} is not UTF-8; accepted: a UTF-8 text file"),
            ));
        }
    };
    load_str(&original_text, path, overrides)
}

/// Largest network file read (64 MiB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

fn located(path: &Path, line: usize, column: usize, message: String) -> Error {
    Error::Spec(Box::new(SpecError {
        path: path.to_path_buf(),
        line,
        column,
        field: "(file)".into(),
        message,
    }))
}

/// Parses and validates network text; `path` is used in error messages.
pub fn load_str(
    original_text: &str,
    path: &Path,
    overrides: &[String],
) -> Result<LoadedNetwork, Error> {
    // Control characters other than tab and line ends are refused with their place.
    if let Some((i, c)) = original_text
        .char_indices()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        let (line, column) = line_col(original_text, i);
        return Err(located(
            path,
            line,
            column,
            format!(
                "control character U+{:04X}; accepted: printable text, tabs and line ends",
                c as u32
            ),
        ));
    }
    if overrides.is_empty() {
        return parse_and_validate(original_text, original_text, path, overrides);
    }
    // The file as written must be valid (its errors are located in it); then each
    // override is applied in turn, and an error it causes names the override, since its
    // value has no line in the file.
    parse_and_validate(original_text, original_text, path, &[])?;
    let mut text = original_text.to_string();
    for (k, given) in overrides.iter().enumerate() {
        text = apply_overrides(&text, std::slice::from_ref(given), path)?;
        if let Err(e) = parse_and_validate(&text, original_text, path, &overrides[..=k]) {
            let reason = match e.as_spec() {
                Some(s) => format!("field `{}`: {}", s.field, s.message),
                None => e.to_string(),
            };
            return Err(Error::Override {
                given: given.clone(),
                reason,
                path: path.to_path_buf(),
            });
        }
    }
    parse_and_validate(&text, original_text, path, overrides)
}

/// Parses and validates `text` (the file with `overrides` applied).
fn parse_and_validate(
    text: &str,
    original_text: &str,
    path: &Path,
    overrides: &[String],
) -> Result<LoadedNetwork, Error> {
    let text = text.to_string();
    let file: NetworkFile = toml::from_str(&text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
        let msg = e.message().trim().to_string();
        Error::Spec(Box::new(SpecError {
            path: path.to_path_buf(),
            line,
            column,
            field: e
                .span()
                .and_then(|s| path_at(&text, s.start))
                .map(|p| p.to_string())
                .unwrap_or_else(|| field_from_message(&text, e.span())),
            message: msg,
        }))
    })?;
    let mut file = file;
    let dir = path.parent().unwrap_or(Path::new("."));
    for p in file.projections.iter_mut() {
        p.sonata_path = p.sonata.as_ref().map(|s| dir.join(&s.edges));
    }
    validate(&file, &text, path)?;
    let warnings = validate::warnings(&file, &text, path);
    Ok(LoadedNetwork {
        file,
        text,
        original_text: original_text.to_string(),
        path: path.to_path_buf(),
        overrides: overrides.to_vec(),
        warnings,
    })
}

/// The key at the start of the line a serde error points at, as the field name.
fn field_from_message(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::from("(document)");
    };
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let line = &text[start..];
    let line = line.lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((k, _)) => k.trim().to_string(),
        None => line
            .trim()
            .trim_matches(|c| c == '[' || c == ']')
            .to_string(),
    }
}

/// Cleft defaults per transmitter (§4.1, §4.2): (ΔT mM, k_diffusion, k_uptake, k_enzyme in 1/ms).
///
/// Glutamate: ΔT 1.1 mM, τ_clear 1.2 ms (Clements et al. 1992), split into diffusion
/// 0.5/ms and EAAT uptake 1/3 per ms [design split]. GABA: 1.5 mM, τ 0.3 ms
/// (Barberis et al. 2011 range 0.1-0.5 ms) \[verify\]. Glycine: 2.5 mM, τ 0.75 ms
/// (Beato 2008) \[verify\]. ACh: 1 mM \[design\], AChE 7/ms (τ ≈ 0.14 ms, "destroyed in
/// < 1 ms") plus diffusion 1/ms, so that blocking the enzyme leaves a diffusion-limited
/// τ of 1 ms (§4.2).
pub fn cleft_defaults(t: Transmitter) -> (f64, f64, f64, f64) {
    match t {
        Transmitter::Glutamate => (1.1, 0.5, 1.0 / 1.2 - 0.5, 0.0),
        Transmitter::Gaba => (1.5, 2.0, 1.0 / 0.3 - 2.0, 0.0),
        Transmitter::Glycine => (2.5, 0.8, 1.0 / 0.75 - 0.8, 0.0),
        Transmitter::Acetylcholine => (1.0, 1.0, 0.0, 7.0),
    }
}
