//! The GPU side through wgpu (Vulkan, Metal, DX12, GL): adapter discovery and choice
//! ([`list_adapters`], [`GpuContext`]), the WGSL sources ([`shaders`]) and small helpers
//! for buffers and readback. The step kernels run in [`crate::backend::gpu`].

pub mod shaders;

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
    /// Largest device-local memory heap, bytes, where the backend says (Vulkan).
    pub memory_bytes: Option<u64>,
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
                memory_bytes: device_memory_bytes(a),
                max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
                max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                float_atomics: a.features().contains(wgpu::Features::SHADER_FLOAT32_ATOMIC),
            }
        })
        .collect())
}

/// Rank of an adapter type: discrete GPUs first, the software rasteriser last.
fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Rank of a wgpu backend for compute: native APIs before GL.
fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

/// An open device: the adapter chosen, its limits and the queue.
pub struct GpuContext {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter's description.
    pub info: wgpu::AdapterInfo,
    /// The limits the device was opened with (the adapter's own).
    pub limits: wgpu::Limits,
    /// Device-local memory of the adapter, bytes, where the backend says (Vulkan: its
    /// largest device-local heap); a device image larger than this is refused before
    /// anything is allocated.
    pub memory_bytes: Option<u64>,
}

/// The largest device-local memory heap of `adapter`, bytes: read from Vulkan's memory
/// properties through wgpu-hal (wgpu itself reports no memory size); None for other
/// backends.
pub fn device_memory_bytes(adapter: &wgpu::Adapter) -> Option<u64> {
    #[cfg(not(any(target_os = "macos", target_os = "ios", target_arch = "wasm32")))]
    {
        // SAFETY: the hal adapter is only read (its physical device and instance), and
        // vkGetPhysicalDeviceMemoryProperties has no preconditions beyond a valid
        // physical device of that instance, which wgpu-hal holds for the adapter's life.
        let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
        let props = unsafe {
            hal.shared_instance()
                .raw_instance()
                .get_physical_device_memory_properties(hal.raw_physical_device())
        };
        let n = (props.memory_heap_count as usize).min(props.memory_heaps.len());
        props.memory_heaps[..n]
            .iter()
            .filter(|h| h.flags.contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL))
            .map(|h| h.size)
            .max()
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_arch = "wasm32"))]
    {
        let _ = adapter;
        None
    }
}

/// The adapters wgpu lists, best first (discrete, integrated, virtual, other, CPU;
/// Vulkan, Metal or DX12 before GL), with their instance; an error saying why when there
/// is none.
fn ranked_adapters() -> Result<(wgpu::Instance, Vec<wgpu::Adapter>), Error> {
    let backends = backends();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        // Resource creation past 95 % of the driver's memory budget is an out-of-memory
        // error (D3D12, Vulkan with VK_EXT_memory_budget), which the backend turns into
        // a refusal naming the network's size.
        memory_budget_thresholds: wgpu::MemoryBudgetThresholds {
            for_resource_creation: Some(95),
            for_device_loss: None,
        },
        // No validation of indirect dispatch arguments (wgpu's default in every build),
        // which costs a dispatch of its own per indirect dispatch: the `plan` kernels
        // write at most 65 535 groups per dimension by construction, and no kernel reads
        // `@builtin(num_workgroups)`, which D3D12 reports as 0 without it. The variable
        // WGPU_VALIDATION_INDIRECT_CALL=1 turns it back on.
        flags: wgpu::InstanceFlags::from_build_config()
            .difference(wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL)
            .with_env(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    if adapters.is_empty() {
        return Err(list_adapters()
            .err()
            .unwrap_or_else(|| Error::NoAdapter("wgpu lists no adapter".into())));
    }
    adapters.sort_by_key(|a| {
        let i = a.get_info();
        (type_rank(i.device_type), backend_rank(i.backend))
    });
    Ok((instance, adapters))
}

/// The adapter [`GpuContext::new`] opens when no name is given, without opening a
/// device: its "name (backend)" and whether it is a software renderer (lavapipe,
/// SwiftShader, WARP), which `--backend auto` does not take unless it is named.
pub fn best_adapter() -> Result<(String, bool), Error> {
    let (_instance, mut adapters) = ranked_adapters()?;
    let i = adapters.swap_remove(0).get_info();
    Ok((
        format!("{} ({:?})", i.name, i.backend),
        i.device_type == wgpu::DeviceType::Cpu,
    ))
}

impl GpuContext {
    /// Opens the best adapter (discrete, integrated, virtual, other, CPU; Vulkan, Metal or
    /// DX12 before GL), or the first whose name contains `name` (case-insensitive).
    pub fn new(name: Option<&str>) -> Result<GpuContext, Error> {
        let (_instance, mut adapters) = ranked_adapters()?;
        let adapter = match name {
            None => adapters.swap_remove(0),
            Some(want) => {
                let lw = want.to_lowercase();
                match adapters
                    .iter()
                    .position(|a| a.get_info().name.to_lowercase().contains(&lw))
                {
                    Some(k) => adapters.swap_remove(k),
                    None => {
                        let names: Vec<String> = adapters
                            .iter()
                            .map(|a| {
                                let i = a.get_info();
                                format!("`{}` ({:?})", i.name, i.backend)
                            })
                            .collect();
                        return Err(Error::NoAdapter(format!(
                            "no adapter name contains `{want}`; the adapters are {}",
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let memory_bytes = device_memory_bytes(&adapter);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("quantal"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Device(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            memory_bytes,
        })
    }

    /// "name (backend)" of the adapter in use.
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// A compute pipeline for `entry` of the composed `kernel` source, with the layout
    /// derived from the shader. Validation errors are returned, not panicked on.
    pub fn pipeline(&self, kernel: &str, entry: &str) -> Result<wgpu::ComputePipeline, Error> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(entry),
                source: wgpu::ShaderSource::Wgsl(shaders::source(kernel)?.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        match pollster::block_on(scope.pop()) {
            None => Ok(pipeline),
            Some(e) => Err(Error::Device(format!("shader `{entry}`: {e}"))),
        }
    }

    /// A storage buffer holding `data`; an empty `data` gives one zeroed element (wgpu
    /// binds no empty buffer, and a binding holds at least one element of its array).
    pub fn storage<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let padded;
        let contents = if bytes.is_empty() {
            padded = vec![0u8; std::mem::size_of::<T>().max(16)];
            &padded[..]
        } else {
            bytes
        };
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A buffer for reading `size` bytes back.
    pub fn staging(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Submits `encoder` after copying each (source, staging, bytes) pair, waits, and
    /// returns the bytes read from each staging buffer.
    pub fn submit_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        copies: &[(&wgpu::Buffer, &wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>, Error> {
        let pending = self.submit_reads(encoder, copies, &[])?;
        self.finish_reads(pending)
    }

    /// Submits `encoder` after copying each (source, staging, bytes) pair and then
    /// zeroing each (buffer, offset, bytes) range (counters the next submission starts
    /// from), and returns without waiting: the GPU works on while the caller prepares
    /// and submits the next batch. [`GpuContext::finish_reads`] waits for this
    /// submission only and reads the staging buffers.
    pub fn submit_reads(
        &self,
        mut encoder: wgpu::CommandEncoder,
        copies: &[(&wgpu::Buffer, &wgpu::Buffer, u64)],
        clears: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<PendingReads, Error> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (tx, rx) = std::sync::mpsc::channel();
        for (k, (src, dst, bytes)) in copies.iter().enumerate() {
            if *bytes == 0 {
                continue;
            }
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, *bytes);
            let tx = tx.clone();
            encoder.map_buffer_on_submit(dst, wgpu::MapMode::Read, ..*bytes, move |r| {
                let _ = tx.send((k, r));
            });
        }
        drop(tx);
        for &(buf, offset, bytes) in clears {
            encoder.clear_buffer(buf, offset, Some(bytes));
        }
        let index = self.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Device(e.to_string()));
        }
        Ok(PendingReads {
            index,
            rx,
            copies: copies
                .iter()
                .map(|(_, dst, bytes)| ((*dst).clone(), *bytes))
                .collect(),
        })
    }

    /// Waits for the submission of `pending` (not for later ones) and returns the bytes
    /// of each of its staging buffers, which are unmapped for reuse.
    pub fn finish_reads(&self, pending: PendingReads) -> Result<Vec<Vec<u8>>, Error> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(pending.index),
                timeout: None,
            })
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))?;
        let mut out = vec![Vec::new(); pending.copies.len()];
        let mut first_error = None;
        for (k, r) in pending.rx.iter() {
            let (dst, bytes) = &pending.copies[k];
            match r {
                Ok(()) => {
                    {
                        let view = dst
                            .slice(..*bytes)
                            .get_mapped_range()
                            .map_err(|e| Error::Device(format!("reading back: {e}")))?;
                        out[k] = view.to_vec();
                    }
                    dst.unmap();
                }
                Err(e) => {
                    first_error.get_or_insert(Error::Device(format!("reading back: {e}")));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// A submission whose read-back copies have not been read yet ([`GpuContext::submit_reads`]).
#[derive(Debug)]
pub struct PendingReads {
    index: wgpu::SubmissionIndex,
    rx: std::sync::mpsc::Receiver<(usize, Result<(), wgpu::BufferAsyncError>)>,
    copies: Vec<(wgpu::Buffer, u64)>,
}
