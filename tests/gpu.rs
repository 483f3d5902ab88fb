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

/// `coba`'s model and network, and a context on the adapter (whose memory a test may
/// pretend is smaller).
fn coba_on_the_adapter() -> (
    std::sync::Arc<quantal::model::Model>,
    std::sync::Arc<quantal::network::Network>,
    quantal::gpu::GpuContext,
) {
    example_on_the_adapter("coba")
}

/// The model and network of example `networks/NAME.toml`, and a context on the adapter.
fn example_on_the_adapter(
    name: &str,
) -> (
    std::sync::Arc<quantal::model::Model>,
    std::sync::Arc<quantal::network::Network>,
    quantal::gpu::GpuContext,
) {
    let cpu = crate::common::backend_with(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("networks/{name}.toml")),
        )
        .unwrap(),
        &[],
    );
    let ctx = quantal::gpu::GpuContext::new(None).unwrap_or_else(|e| panic!("{e}"));
    (
        std::sync::Arc::new(cpu.model().clone()),
        std::sync::Arc::new(cpu.network().clone()),
        ctx,
    )
}

/// A network whose device image exceeds the adapter's memory is refused before anything
/// is allocated, with its size and the adapter's; Vulkan adapters report their memory.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn a_network_larger_than_the_device_memory_is_refused() {
    use quantal::backend::gpu::{image_bytes, GpuBackend};
    let (model, net, mut ctx) = coba_on_the_adapter();
    if ctx.info.backend == wgpu::Backend::Vulkan {
        let m = ctx.memory_bytes.expect("Vulkan reports its heaps");
        assert!(m >= 256 << 20, "{} reports {m} bytes", ctx.adapter_name());
    }
    let need = image_bytes(&model, &net, false);
    // At least the synapses' static arrays (16 B each).
    assert!(need > 16.0 * 320961.0, "coba's image: {need} bytes");
    // The adapter as if it had a little less than the image needs.
    ctx.memory_bytes = Some((need * 1.05) as u64);
    let name = ctx.adapter_name();
    let err = GpuBackend::new(ctx, model, net)
        .err()
        .expect("refused")
        .to_string();
    for part in [
        "device image needs about",
        "4000 neurons, 320961 synapses",
        "of device memory of",
        name.as_str(),
        "--backend cpu",
    ] {
        assert!(err.contains(part), "`{part}` not in: {err}");
    }
}

/// The device image the GPU backend allocates is the size `quantal check` prints and the
/// memory check uses (`image_bytes`), and `quantal bench --backend gpu` reports it.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn the_device_image_is_the_size_check_predicts() {
    use quantal::backend::gpu::{image_bytes, GpuBackend};
    use quantal::backend::gpu_syn::device_bytes;
    use quantal::backend::Backend;
    let (model, net, ctx) = coba_on_the_adapter();
    let predicted = (
        image_bytes(&model, &net, false),
        device_bytes(&model, &net, false),
    );
    let gpu = GpuBackend::new(ctx, model, net).unwrap_or_else(|e| panic!("{e}"));
    let (neurons, synapses) = gpu.device_image_bytes().expect("the GPU reports its image");
    assert_eq!(synapses, predicted.1);
    assert_eq!((neurons + synapses) as f64, predicted.0);
    drop(gpu);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let o = crate::common::quantal(&[
        "bench",
        "networks/coba.toml",
        "--backend",
        "gpu",
        "--steps",
        "20",
        "--warmup",
        "5",
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let per = format!("{:.1} B per synapse)", synapses as f64 / 320961.0);
    assert!(
        out.contains("device image ") && out.contains(&per),
        "{per} not in:\n{out}"
    );
    assert!(out.contains("submissions and"), "{out}");
    let j = std::fs::read_to_string(&json).unwrap();
    let field =
        format!("\"device_image_bytes\": {{\"neurons\": {neurons}, \"synapses\": {synapses}}}");
    assert!(j.contains(&field), "{field} not in {j}");
    // A network without synapses has no synapse image, and the prediction says so.
    let (model, net, ctx) = example_on_the_adapter("cells_fi");
    assert_eq!(net.n_synapses(), 0);
    let predicted = image_bytes(&model, &net, false);
    assert_eq!(device_bytes(&model, &net, false), 0);
    let gpu = GpuBackend::new(ctx, model, net).unwrap_or_else(|e| panic!("{e}"));
    let (neurons, synapses) = gpu.device_image_bytes().expect("the GPU reports its image");
    assert_eq!((neurons as f64, synapses), (predicted, 0));
}

/// A `released` probe adds each synapse's sum to the device image: `watch` refuses it,
/// with both sizes, when the adapter's memory holds the image without the sums but not
/// with them, and the backend still runs without them.
#[test]
#[cfg_attr(
    skip_gpu_tests,
    ignore = "QUANTAL_SKIP_GPU_TESTS=1: no GPU adapter on this machine"
)]
fn released_sums_past_the_device_memory_are_refused() {
    use quantal::backend::gpu::{image_bytes, GpuBackend};
    use quantal::backend::{Backend, Probe, SynVar};
    let (model, net, mut ctx) = coba_on_the_adapter();
    let (without, with) = (
        image_bytes(&model, &net, false),
        image_bytes(&model, &net, true),
    );
    assert!(with > without + 4.0 * 320961.0 - 1.0, "{without} {with}");
    // 90 % of the memory lies between the two sizes.
    ctx.memory_bytes = Some(((without + with) / 2.0 / 0.9) as u64);
    let mut gpu = GpuBackend::new(ctx, model, net).unwrap_or_else(|e| panic!("{e}"));
    let err = gpu
        .watch(&[Probe::Synapse(SynVar::Released, 7)])
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("the sums of the `released` report") && err.contains("--backend cpu"),
        "{err}"
    );
    gpu.watch(&[]).unwrap();
    gpu.advance(20, &[], 1).unwrap();
}
