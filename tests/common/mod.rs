//! Helpers shared by the test themes.
#![allow(dead_code)]

use quantal::backend::cpu::CpuBackend;
use quantal::backend::Backend;
use quantal::model::Model;
use quantal::network;
use std::path::Path;
use std::sync::Arc;

/// |x - y| ≤ max(rel·|y|, abs) (burn-style), with a readable failure message.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub rel: f64,
    pub abs: f64,
}

impl Tolerance {
    pub const fn rel(rel: f64) -> Self {
        Self { rel, abs: 0.0 }
    }
    pub const fn abs(abs: f64) -> Self {
        Self { rel: 0.0, abs }
    }
    /// §8 deterministic rule: 1e-4 relative or half a unit in the last printed digit.
    pub fn printed(decimals: i32) -> Self {
        Self {
            rel: 1e-4,
            abs: 0.5 * 10f64.powi(-decimals),
        }
    }
    #[track_caller]
    pub fn check(&self, what: &str, got: f64, want: f64) {
        let tol = (self.rel * want.abs()).max(self.abs);
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, want {want} (tolerance {tol:e})"
        );
    }
}

/// Runs the `quantal` binary in the repository root and returns what it did.
pub fn quantal(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quantal"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run quantal")
}

/// Builds a CPU backend from network text.
pub fn backend(text: &str) -> CpuBackend {
    backend_with(text, &[])
}

/// Builds a CPU backend from network text with `--set` overrides.
pub fn backend_with(text: &str, overrides: &[&str]) -> CpuBackend {
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let loaded = quantal::netfile::load_str(text, Path::new("test.toml"), &ov)
        .unwrap_or_else(|e| panic!("test network: {e}"));
    let model = Model::from_spec(&loaded.file);
    let net = network::build(&loaded, &model).unwrap_or_else(|e| panic!("test network: {e}"));
    CpuBackend::new(Arc::new(model), Arc::new(net))
}

/// Steps `n` times.
pub fn run(b: &mut CpuBackend, n: u32) {
    for _ in 0..n {
        b.step().expect("cpu step");
    }
}

/// Steps `n` times and returns the spike steps of neuron `id`.
pub fn spike_steps(b: &mut CpuBackend, n: u32, id: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for _ in 0..n {
        let s = b.step_index();
        b.step().expect("cpu step");
        if b.spikes().contains(&id) {
            out.push(s);
        }
    }
    out
}

/// Mean and standard error.
pub fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / (n - 1.0);
    (m, (v / n).sqrt())
}
