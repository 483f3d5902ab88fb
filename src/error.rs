//! The library's error type.

use std::path::PathBuf;
use thiserror::Error;

/// A problem in a network file, located in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// The field, as a dotted path (`populations[1].lif.tau_rr_ms`).
    pub field: String,
    /// What is wrong, with the value and the accepted range.
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A message quotes at most a short excerpt of what the file holds.
        let cut = |s: &str, n: usize| -> String {
            if s.chars().count() <= n {
                s.to_string()
            } else {
                format!("{}…", s.chars().take(n).collect::<String>())
            }
        };
        write!(
            f,
            "{}:{}:{}: field `{}`: {}",
            self.path.display(),
            self.line,
            self.column,
            cut(&self.field, 120),
            cut(&self.message, 400)
        )
    }
}

/// Everything that can go wrong in the library.
#[derive(Debug, Error)]
pub enum Error {
    /// The network file is malformed or out of range.
    #[error("{0}")]
    Spec(Box<SpecError>),
    /// A `--set KEY=VALUE` override could not be applied.
    #[error("bad override `{given}`: {reason} (network file {path})")]
    Override {
        /// The override as given.
        given: String,
        /// Why it was rejected.
        reason: String,
        /// The network file.
        path: PathBuf,
    },
    /// The network would need more memory than allowed.
    #[error("the network needs about {needed_gib:.2} GiB of state ({detail}), more than the {limit_gib:.2} GiB allowed; reduce sizes or raise simulation.max_memory_gib (network file {path})")]
    TooLarge {
        /// Estimated need.
        needed_gib: f64,
        /// The limit.
        limit_gib: f64,
        /// What the estimate is made of.
        detail: String,
        /// The network file.
        path: PathBuf,
    },
    /// Reading or writing a file failed. (The cause is part of the message, not a
    /// chained source, so it is printed once.)
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// Writing the HDF5 output failed.
    #[error("HDF5: {message} ({path})")]
    Hdf5 {
        /// What failed.
        message: String,
        /// The output file.
        path: PathBuf,
    },
    /// No GPU adapter could be found (the CLI's `--backend auto` falls back to the CPU).
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// A GPU device or validation error.
    #[error("GPU device error: {0}")]
    Device(String),
    /// A figure cannot be drawn from the given files (what is missing, and how to get it).
    #[error("{0}")]
    Plot(String),
    /// A state variable became NaN or infinite; the run stopped there.
    #[error("{owner} element {id}: {variable} became {value} in step {step} ({time_ms:.3} ms); the run stopped (the output holds everything up to the last flush, with complete = 0). Check the parameters that drive it (weights, currents, conductances, dt_ms)")]
    NonFinite {
        /// "population `name`" or "projection `name`".
        owner: String,
        /// Element id within the population or projection.
        id: u64,
        /// The variable.
        variable: String,
        /// "NaN" or "infinite".
        value: String,
        /// The step computed when it happened.
        step: u32,
        /// Its start time.
        time_ms: f64,
    },
    /// The run was interrupted (Ctrl-C); the output holds everything up to the last flush.
    #[error("interrupted at step {step}")]
    Interrupted {
        /// The step reached.
        step: u64,
    },
}

impl Error {
    /// The located spec error, if this is one.
    pub fn as_spec(&self) -> Option<&SpecError> {
        match self {
            Error::Spec(e) => Some(e),
            _ => None,
        }
    }
}
