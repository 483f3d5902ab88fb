//! # quantal
//!
//! Spiking neural networks whose chemical synapses are modelled step by step as
//! neuroscience describes them: action potential arrival after an axonal conduction
//! delay, voltage-gated Ca2+ influx scaled by \[Ca\]o and \[Mg\]o, Ca2+-triggered binomial
//! fusion of docked vesicles with facilitation, refilling, recycling, asynchronous and
//! spontaneous release, transmitter in the cleft cleared by diffusion, uptake and
//! enzymes, ionotropic and metabotropic receptors, and conductance-based neurons with
//! absolute and relative refractoriness.
//!
//! Equations, defaults and validation targets: `model-spec.md` (cited as §1-§9 in the
//! code). Architecture: `DESIGN.md`.
//!
//! Pipeline: [`netfile`] (network file) → [`model`] (parameters, derived constants) →
//! [`network`] (connectivity) → [`state`] (SoA) → [`backend`] (kernels) → [`sim`]
//! (driving, sampling) → [`record`] (HDF5 / memory).

#![deny(missing_docs)]

pub mod backend;
pub mod error;
pub mod gpu;
pub mod layout;
pub mod math;
pub mod model;
pub mod netfile;
pub mod network;
pub mod philox;
pub mod plot;
pub mod record;
pub mod sim;
pub mod state;
pub mod validate;

pub use error::Error;

/// Program version (Cargo package version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
