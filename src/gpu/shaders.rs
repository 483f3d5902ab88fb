//! The WGSL sources. Each kernel file in `shaders/` is compiled with `common.wgsl`,
//! `philox.wgsl` and `math.wgsl` prepended (WGSL has no includes).

use crate::error::Error;

/// Structs, codes and shared functions (twins in `layout`, `model`, `integrate`).
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");
/// Philox4x32-10 and uniforms (twin of `philox`).
pub const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
/// exp, ln, pow (twin of `math`).
pub const MATH: &str = include_str!("../../shaders/math.wgsl");

/// Kernel files by name: (name, source). The entry point of each is the file's name
/// (`selftest` has `selftest_philox` and `selftest_math`).
pub const KERNELS: [(&str, &str); 4] = [
    (
        "decay_pools",
        include_str!("../../shaders/decay_pools.wgsl"),
    ),
    ("integrate", include_str!("../../shaders/integrate.wgsl")),
    ("sample", include_str!("../../shaders/sample.wgsl")),
    ("selftest", include_str!("../../shaders/selftest.wgsl")),
];

/// The full source of kernel `name`: the shared files, then the kernel.
pub fn source(name: &str) -> Result<String, Error> {
    let kernel = KERNELS
        .iter()
        .find(|k| k.0 == name)
        .map(|k| k.1)
        .ok_or_else(|| Error::Device(format!("no kernel named `{name}`")))?;
    Ok(format!("{COMMON}\n{PHILOX}\n{MATH}\n{kernel}"))
}
