//! GPU discovery through wgpu (Vulkan, Metal, DX12, GL). The GPU step backend mirrors
//! the CPU kernels in a later stage; this module already tells which adapters exist, so
//! `quantal info` can report them and `--backend auto` can decide.

use crate::error::Error;

/// What `quantal info` shows of one adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// wgpu backend (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Device type (DiscreteGpu, IntegratedGpu, Cpu, ...).
    pub device_type: String,
    /// Driver and driver info.
    pub driver: String,
    /// Largest storage buffer binding, bytes (arrays above it are bound in windows).
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Storage buffers per shader stage.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Float atomics on storage buffers available (not used: summation is ordered, DESIGN.md).
    pub float_atomics: bool,
}

/// The wgpu backends searched: `WGPU_BACKEND` when set, else Vulkan, Metal, DX12 and GL.
pub fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(
        wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12 | wgpu::Backends::GL,
    )
}

/// Lists the adapters wgpu can see. `Err(NoAdapter)` with the reason when there is none.
pub fn list_adapters() -> Result<Vec<AdapterSummary>, Error> {
    let backends = backends();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    if adapters.is_empty() {
        // request_adapter explains why (drivers that could not be loaded, ...).
        let why = match pollster::block_on(
            instance.request_adapter(&wgpu::RequestAdapterOptions::default()),
        ) {
            Err(e) => e.to_string(),
            Ok(_) => "enumerate_adapters returned none".to_string(),
        };
        return Err(Error::NoAdapter(format!(
            "{why}. On Debian/Ubuntu without a GPU, install Mesa's software Vulkan driver: apt-get install mesa-vulkan-drivers libvulkan1"
        )));
    }
    Ok(adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            let l = a.limits();
            AdapterSummary {
                name: i.name,
                backend: format!("{:?}", i.backend),
                device_type: format!("{:?}", i.device_type),
                driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_buffer_size: l.max_buffer_size,
                max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
                max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                float_atomics: a.features().contains(wgpu::Features::SHADER_FLOAT32_ATOMIC),
            }
        })
        .collect())
}
