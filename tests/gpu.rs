//! GPU tests. They run by default and fail without an adapter (install
//! `mesa-vulkan-drivers libvulkan1` for lavapipe); `QUANTAL_SKIP_GPU_TESTS=1` at build
//! time marks them ignored. CI builds with `QUANTAL_REQUIRE_GPU=1`, which forbids the skip.

/// wgpu sees at least one adapter, with the limits the GPU backend will size its
/// buffers by (storage bindings of at least the WebGPU minimum of 128 MiB).
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn wgpu_finds_an_adapter() {
    let list = quantal::gpu::list_adapters().unwrap_or_else(|e| panic!("{e}"));
    assert!(!list.is_empty());
    for a in &list {
        eprintln!(
            "adapter: {} [{} {}] {}",
            a.name, a.backend, a.device_type, a.driver
        );
        assert!(!a.name.is_empty());
        assert!(
            a.max_storage_buffer_binding_size >= 128 << 20,
            "{}: {}",
            a.name,
            a.max_storage_buffer_binding_size
        );
        assert!(a.max_compute_workgroups_per_dimension >= 65_535);
    }
}
