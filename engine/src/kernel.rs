//! Kernels (a WGSL entry point with an explicit bind group layout) and dispatches (a kernel bound
//! to buffers and a uniform block, ready to be recorded into any number of command buffers).

use crate::error::{Error, Result};
use std::sync::Arc;

/// How a kernel binds a storage buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// The layout of a kernel's uniform parameter block as the Rust struct that mirrors the WGSL
/// struct lays it out: its name, its size and each field's (name, byte offset, type); the shader
/// tests compare it with the WGSL module.
#[derive(Clone, Copy, Debug)]
pub struct ParamsLayout {
    /// The struct's name, the same in Rust and WGSL.
    pub name: &'static str,
    /// `size_of` the Rust struct, in bytes.
    pub size: usize,
    /// Each field's (name, byte offset, Rust type), in declaration order.
    pub fields: &'static [(&'static str, usize, &'static str)],
}

/// A `#[repr(C)]` struct that mirrors a WGSL parameter struct of the same name.
pub trait GpuParams: bytemuck::Pod {
    /// The struct's layout, for launch-time and shader-test checks.
    const LAYOUT: ParamsLayout;
}

/// Kernels without a uniform block are launched with `&()`.
impl GpuParams for () {
    const LAYOUT: ParamsLayout = ParamsLayout { name: "()", size: 0, fields: &[] };
}

/// Declares a kernel parameter struct: `#[repr(C)]`, `Pod`, and its [`ParamsLayout`].
#[macro_export]
macro_rules! gpu_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $($(#[$field_meta])* pub $field: $ty,)* }

        impl $crate::kernel::GpuParams for $name {
            const LAYOUT: $crate::kernel::ParamsLayout = $crate::kernel::ParamsLayout {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                fields: &[$((stringify!($field), std::mem::offset_of!($name, $field), stringify!($ty))),*],
            };
        }
    };
}

/// A compute entry point and its bindings: binding 0 is the uniform parameter block (when the
/// kernel has one); `storage` lists (binding, access) in the order a launcher passes its tensors.
#[derive(Clone, Copy, Debug)]
pub struct KernelSpec {
    /// Shader file stem in `shaders/`.
    pub file: &'static str,
    /// The `@compute` entry point's name.
    pub entry: &'static str,
    /// The uniform block at binding 0, if any.
    pub params: Option<ParamsLayout>,
    /// Storage bindings as (binding, access), in launch order.
    pub storage: &'static [(u32, Access)],
}

impl KernelSpec {
    /// A kernel whose uniform block is `P`.
    pub const fn new<P: GpuParams>(file: &'static str, entry: &'static str, storage: &'static [(u32, Access)]) -> Self {
        KernelSpec { file, entry, params: Some(P::LAYOUT), storage }
    }

    /// A kernel without a uniform block.
    pub const fn without_params(file: &'static str, entry: &'static str, storage: &'static [(u32, Access)]) -> Self {
        KernelSpec { file, entry, params: None, storage }
    }
}

/// A compiled kernel: its compute pipeline and the bind group layout its dispatches bind to.
pub struct Kernel {
    /// The entry point's name (labels and timings).
    pub name: &'static str,
    /// The pipeline, compiled against `layout`.
    pub pipeline: wgpu::ComputePipeline,
    /// The bind group layout built from the [`KernelSpec`].
    pub layout: wgpu::BindGroupLayout,
}

impl Kernel {
    /// Compiles a shader file once; its entry points share the module.
    pub(crate) fn compile_module(device: &wgpu::Device, file: &'static str) -> Result<wgpu::ShaderModule> {
        let fail = |message: String| Error::Kernel { kernel: format!("{file}.wgsl"), message };
        // A browser's WGSL compiler wants directives (`enable subgroups;`) that naga refuses.
        #[cfg(target_arch = "wasm32")]
        let source = shaders::browser_source(file).ok_or_else(|| fail("no such shader file".into()))?;
        #[cfg(not(target_arch = "wasm32"))]
        let source = shaders::source(file).ok_or_else(|| fail("no such shader file".into()))?;
        let (module, error) = error_scope(device, wgpu::ErrorFilter::Validation, || {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        });
        match error {
            Some(e) => Err(fail(e.to_string())),
            None => Ok(module),
        }
    }

    pub(crate) fn compile(
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        spec: &'static KernelSpec,
    ) -> Result<Kernel> {
        let fail = |message: String| Error::Kernel { kernel: spec.entry.into(), message };
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        };
        let uniform = spec.params.is_some().then(|| entry(0, wgpu::BufferBindingType::Uniform));
        let storage = spec.storage.iter().map(|&(binding, access)| {
            entry(binding, wgpu::BufferBindingType::Storage { read_only: access == Access::Read })
        });
        let entries: Vec<_> = uniform.into_iter().chain(storage).collect();
        let ((layout, pipeline), error) = error_scope(device, wgpu::ErrorFilter::Validation, || {
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(spec.entry),
                entries: &entries,
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(spec.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(spec.entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(spec.entry),
                compilation_options: Default::default(),
                cache: None,
            });
            (layout, pipeline)
        });
        if let Some(e) = error {
            return Err(fail(e.to_string()));
        }
        Ok(Kernel { name: spec.entry, pipeline, layout })
    }
}

/// A kernel bound to its buffers and parameters. Built once; recorded as often as needed.
pub struct Dispatch {
    /// The kernel dispatched.
    pub kernel: Arc<Kernel>,
    pub(crate) bind_group: wgpu::BindGroup,
    /// Workgroup counts along x, y and z.
    pub workgroups: [u32; 3],
    /// Bytes of the distinct storage views bound: the bench's estimate of the memory the
    /// dispatch moves (each view read or written once).
    pub bytes_bound: u64,
    /// Floating-point operations done, where the launcher counts them (the products), else 0.
    pub flops: u64,
    pub(crate) _uniform: Option<wgpu::Buffer>,
}

impl Dispatch {
    /// This dispatch, counting the multiply-adds of a product over `dims` (m, n, k, ...) as 2
    /// floating-point operations each, in u64 (a 32-bit usize could overflow).
    pub(crate) fn with_multiply_adds(self, dims: &[usize]) -> Dispatch {
        Dispatch { flops: 2 * dims.iter().map(|&d| d as u64).product::<u64>(), ..self }
    }

    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Records dispatches, in order, into one compute pass of `encoder` (none when there are none).
pub(crate) fn record<'a>(encoder: &mut wgpu::CommandEncoder, dispatches: impl IntoIterator<Item = &'a Dispatch>) {
    let mut dispatches = dispatches.into_iter().peekable();
    if dispatches.peek().is_none() {
        return;
    }
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
    for d in dispatches {
        d.record(&mut pass);
    }
}

/// Runs `create` inside an error scope of `filter` and returns what the scope caught. In a
/// browser a scope can only be awaited, so there errors go to the uncaptured-error handler and
/// surface at the next submission's check instead.
pub(crate) fn error_scope<T>(
    device: &wgpu::Device,
    filter: wgpu::ErrorFilter,
    create: impl FnOnce() -> T,
) -> (T, Option<wgpu::Error>) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let scope = device.push_error_scope(filter);
        let created = create();
        (created, pollster::block_on(scope.pop()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (device, filter);
        (create(), None)
    }
}
