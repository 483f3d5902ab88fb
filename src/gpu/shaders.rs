//! The WGSL sources. Each kernel file in `shaders/` is compiled with `common.wgsl`,
//! `philox.wgsl` and `math.wgsl` prepended (WGSL has no includes), `terminal.wgsl` for
//! the kernels that advance presynaptic terminals and `events.wgsl` for those that list
//! synapses with events or log releases.

use crate::error::Error;

/// Structs, codes and shared functions (twins in `layout`, `model`, `integrate`).
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");
/// Philox4x32-10 and uniforms (twin of `philox`).
pub const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
/// exp, ln, pow (twin of `math`).
pub const MATH: &str = include_str!("../../shaders/math.wgsl");

/// Kernel files by name: (name, source). The entry point of each is the file's name
/// (`selftest` has `selftest_philox` and `selftest_math`).
pub const KERNELS: [(&str, &str); 12] = [
    (
        "decay_pools",
        include_str!("../../shaders/decay_pools.wgsl"),
    ),
    ("integrate", include_str!("../../shaders/integrate.wgsl")),
    ("sample", include_str!("../../shaders/sample.wgsl")),
    ("selftest", include_str!("../../shaders/selftest.wgsl")),
    ("plan", include_str!("../../shaders/plan.wgsl")),
    ("deliver", include_str!("../../shaders/deliver.wgsl")),
    ("release", include_str!("../../shaders/release.wgsl")),
    ("cleft", include_str!("../../shaders/cleft.wgsl")),
    ("gather", include_str!("../../shaders/gather.wgsl")),
    ("propagate", include_str!("../../shaders/propagate.wgsl")),
    (
        "spontaneous",
        include_str!("../../shaders/spontaneous.wgsl"),
    ),
    (
        "sample_synapse",
        include_str!("../../shaders/sample_synapse.wgsl"),
    ),
];

/// The presynaptic terminal (twin of `backend::cpu::terminal`), prepended to the kernels
/// of [`WITH_TERMINAL`].
pub const TERMINAL: &str = include_str!("../../shaders/terminal.wgsl");

/// Kernels that advance terminals or read pow tables (they declare the bindings
/// terminal.wgsl uses).
pub const WITH_TERMINAL: [&str; 4] = ["release", "cleft", "spontaneous", "sample_synapse"];

/// The to-do list and the release log (`claim`, `watched`, `log_release`), prepended to
/// the kernels of [`WITH_EVENTS`].
pub const EVENTS: &str = include_str!("../../shaders/events.wgsl");

/// Kernels that list synapses with events or log releases (they declare the bindings
/// events.wgsl uses).
pub const WITH_EVENTS: [&str; 3] = ["deliver", "release", "spontaneous"];

/// The full source of kernel `name`: the shared files, then the kernel.
pub fn source(name: &str) -> Result<String, Error> {
    let kernel = KERNELS
        .iter()
        .find(|k| k.0 == name)
        .map(|k| k.1)
        .ok_or_else(|| Error::Device(format!("no kernel named `{name}`")))?;
    let terminal = if WITH_TERMINAL.contains(&name) {
        TERMINAL
    } else {
        ""
    };
    let events = if WITH_EVENTS.contains(&name) {
        EVENTS
    } else {
        ""
    };
    Ok(format!(
        "{COMMON}\n{PHILOX}\n{MATH}\n{terminal}\n{events}\n{kernel}"
    ))
}
