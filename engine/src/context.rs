//! The GPU context: adapter choice, device with the adapter's own limits, a pipeline cache,
//! buffer upload and readback, and submission of recorded dispatches.

use crate::error::{Error, Result};
use crate::kernel::{error_scope, Dispatch, GpuParams, Kernel, KernelSpec};
use crate::signal::Signal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// The most elements a tensor may hold: the shaders index in u32, and a 1-D grid folded past
/// 65535 workgroups (`grid_1d`) runs up to 65535·256 threads past its last element, whose
/// indices must not wrap around to the start.
pub const MAX_ELEMENTS: u64 = (1 << 32) - 65535 * 256;

/// Parameters are packed at 64-float (256-byte) boundaries: the storage offset alignment every
/// backend accepts, so each parameter can be bound as its own slice of one buffer.
pub const PARAM_ALIGN: usize = 64;

/// A GPU buffer view of `len` elements of 4 bytes (f32 or u32) starting `offset` bytes in.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub(crate) buffer: Arc<wgpu::Buffer>,
    /// Byte offset of the first element in the buffer.
    pub offset: u64,
    /// Number of 4-byte elements.
    pub len: usize,
}

impl Tensor {
    /// The view's size in bytes (`len * 4`).
    pub fn bytes(&self) -> u64 {
        self.len as u64 * 4
    }

    /// A sub-view of `len` elements starting `start` elements in. `start * 4` must be a multiple
    /// of the device's storage offset alignment (256 bytes everywhere wgpu runs).
    pub fn slice(&self, start: usize, len: usize) -> Tensor {
        assert!(start + len <= self.len, "slice {start}+{len} past a tensor of {}", self.len);
        Tensor { buffer: self.buffer.clone(), offset: self.offset + start as u64 * 4, len }
    }

    /// Refuses a tensor too small for what a kernel will touch.
    pub fn check_len(&self, what: &str, need: usize) -> Result<()> {
        if self.len < need {
            return Err(Error::Shape(format!("{what} needs {need} elements, the buffer holds {}", self.len)));
        }
        Ok(())
    }

    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            // A zero-sized binding is invalid; empty tensors are given one element at allocation.
            size: wgpu::BufferSize::new(self.bytes().max(4)),
        })
    }
}

/// A submitted command buffer, to wait for.
// The index is what a native poll waits on; a browser waits on `done` alone.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub struct Submission {
    index: wgpu::SubmissionIndex,
    done: Signal,
}

/// A small buffer read back while the queue runs on: [`GpuContext::submit`] records a copy of
/// `source` after its work and maps it asynchronously; `take` returns the copy once it has
/// arrived, and only then may another be requested.
pub struct AsyncRead {
    source: Tensor,
    staging: wgpu::Buffer,
    /// Set by the map callback (natively from any thread's poll, in a browser from its event
    /// loop) once the copy has arrived, with whether it mapped.
    arrived: Signal,
    pending: bool,
}

impl AsyncRead {
    /// A reader of `source` with its own staging buffer; no copy is requested yet.
    pub fn new(ctx: &GpuContext, source: &Tensor) -> AsyncRead {
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("async read"),
            size: source.bytes().max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        AsyncRead { source: source.clone(), staging, arrived: Signal::default(), pending: false }
    }

    /// Whether a requested copy has not been taken yet.
    pub fn pending(&self) -> bool {
        self.pending
    }

    fn map(&mut self) {
        self.pending = true;
        let arrived = self.arrived.clone();
        self.staging.slice(..).map_async(wgpu::MapMode::Read, move |r| arrived.set(r.is_ok()));
    }

    /// The copied words, if the requested copy has arrived (the queue's progress is noticed when
    /// the context next submits or waits).
    pub fn take<T: bytemuck::Pod>(&mut self) -> Result<Option<Vec<T>>> {
        let arrived = self.arrived.take();
        self.words(arrived)
    }

    /// The copied words, once the map callback has run (natively, after the queue has gone
    /// idle, another thread's poll may still be running it).
    async fn arrival<T: bytemuck::Pod>(&mut self) -> Result<Vec<T>> {
        let mapped = self.arrived.wait().await;
        Ok(self.words(Some(mapped))?.expect("the copy has arrived"))
    }

    fn words<T: bytemuck::Pod>(&mut self, arrived: Option<bool>) -> Result<Option<Vec<T>>> {
        match arrived {
            None => return Ok(None),
            Some(false) => return Err(Error::Readback("mapping the copy failed".into())),
            Some(true) => {}
        }
        let words = {
            let view = self.staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        self.staging.unmap();
        self.pending = false;
        Ok(Some(words))
    }
}

/// What was opened, for the log line every binary prints first.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    /// The adapter's name (empty where a browser withholds it).
    pub name: String,
    /// The wgpu backend, e.g. `Vulkan`.
    pub backend: String,
    /// The wgpu device type, e.g. `DiscreteGpu` or `Cpu`.
    pub device_type: String,
    /// Driver name and version, where the adapter reports them.
    pub driver: String,
    /// Whether the device was opened with subgroup operations.
    pub subgroups: bool,
    /// The smallest and largest subgroup size, where subgroups are available.
    pub subgroup_sizes: Option<(u32, u32)>,
    /// Whether the device was opened with timestamp queries (for `time_dispatches`).
    pub timestamps: bool,
}

impl AdapterReport {
    /// A CPU driver whose subgroups are always 8 SIMD lanes (lavapipe with AVX2): kernels
    /// written for one lane per invocation (matmul_subgroup) beat workgroup-memory tiling there.
    pub fn cpu_lanes_8(&self) -> bool {
        self.device_type == "Cpu" && self.subgroup_sizes == Some((8, 8))
    }

    /// The Mesa release of the driver (major, minor), where the driver says it is Mesa.
    pub fn mesa_version(&self) -> Option<(u32, u32)> {
        let version = self.driver.split("Mesa ").nth(1)?;
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// One line for the binaries to print on a Mesa CPU driver older than 24, whose loads cost
    /// about twice as much (measured: docs/performance.md); None elsewhere.
    pub fn newer_driver_advice(&self) -> Option<String> {
        let (major, minor) = self.mesa_version().filter(|&(major, _)| major < 24)?;
        (self.device_type == "Cpu").then(|| {
            format!(
                "note: Mesa {major}.{minor}'s software driver runs this engine about half as fast as Mesa 24 or \
                 newer; on Debian 12 install lavapipe from bookworm-backports (README.md, Prerequisites)"
            )
        })
    }
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A browser may keep the adapter's name to itself.
        let name = if self.name.is_empty() { "unnamed adapter" } else { &self.name };
        write!(f, "{name} ({}, {}", self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", driver {}", self.driver)?;
        }
        let subgroups = match self.subgroup_sizes {
            Some((min, max)) if min == max => format!("yes, size {min}"),
            Some((min, max)) => format!("yes, size {min}-{max}"),
            None => "no".into(),
        };
        write!(f, "; subgroups {subgroups}, timestamp queries {})", if self.timestamps { "yes" } else { "no" })
    }
}

/// An open device and queue with its kernel cache: allocates tensors, creates dispatches and
/// submits them.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// What was opened.
    pub report: AdapterReport,
    pub(crate) limits: wgpu::Limits,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    kernels: Mutex<HashMap<(&'static str, &'static str), Arc<Kernel>>>,
    /// Validation errors raised outside an error scope (e.g. while recording a pass); checked
    /// after each submission so they surface as `Error` values instead of a panic.
    uncaptured: Arc<Mutex<Vec<String>>>,
    placeholder: Tensor,
}

/// Which limits to ask the device for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitsRequest {
    /// The adapter's own: the WebGPU defaults (128 MiB bindings, 16 KiB workgroup memory, 8
    /// storage buffers) are too small for some shapes.
    Adapter,
    /// WebGPU's defaults, which every WebGPU adapter grants: proves every kernel within them.
    WebGpuDefaults,
}

#[cfg(target_arch = "wasm32")]
const NO_ADAPTER_HELP: &str = "the browser offers WebGPU but gave no adapter: its GPU may be blocklisted \
or WebGPU turned off (chrome://gpu says which); another browser or an updated GPU driver may have one";
#[cfg(not(target_arch = "wasm32"))]
const NO_ADAPTER_HELP: &str = "a Vulkan, Metal or DX12 driver is needed. On a headless Linux \
machine install the software Vulkan driver: `apt-get install mesa-vulkan-drivers libvulkan1`. \
WGPU_BACKEND (vulkan, metal, dx12, gl) and WGPU_ADAPTER_NAME (a name substring) choose among several";

fn backend_rank(backend: wgpu::Backend) -> u8 {
    // Native backends first; GL only as a last resort.
    match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

fn device_rank(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// The best adapter: native backends before GL, hardware before software, filtered by
/// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` when set; else why there is none.
async fn best_adapter() -> Result<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let wanted_name = std::env::var("WGPU_ADAPTER_NAME").ok().map(|n| n.to_lowercase());
    let mut adapters = instance.enumerate_adapters(backends).await;
    let found: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    if let Some(name) = &wanted_name {
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(name));
    }
    adapters.sort_by_key(|a| {
        let i = a.get_info();
        (backend_rank(i.backend), device_rank(i.device_type))
    });
    adapters.into_iter().next().ok_or_else(|| {
        let filter = match &wanted_name {
            Some(n) => format!(" matching WGPU_ADAPTER_NAME={n:?} (found: {})", found.join(", ")),
            None => String::new(),
        };
        Error::NoAdapter(format!("no adapter{filter} on backends {backends:?}; {NO_ADAPTER_HELP}"))
    })
}

impl AdapterReport {
    /// The report of an adapter opened with `features`.
    fn of(info: &wgpu::AdapterInfo, features: wgpu::Features) -> AdapterReport {
        let subgroups = features.contains(wgpu::Features::SUBGROUP);
        AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            subgroups,
            subgroup_sizes: subgroups.then_some((info.subgroup_min_size, info.subgroup_max_size)),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

impl GpuContext {
    /// Opens the best adapter: native backends before GL, hardware before software, filtered by
    /// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` when set.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<GpuContext> {
        pollster::block_on(Self::open(LimitsRequest::Adapter))
    }

    /// Opens the best adapter (see [`new`](Self::new)) with the limits asked for; the only way
    /// in a browser, where nothing may block.
    pub async fn open(limits: LimitsRequest) -> Result<GpuContext> {
        let adapter = best_adapter().await?;
        let info = adapter.get_info();
        let features = adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY);
        let limits = match limits {
            LimitsRequest::Adapter => adapter.limits(),
            LimitsRequest::WebGpuDefaults => wgpu::Limits::default(),
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("engine"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Device(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.lock().unwrap().push(e.to_string())));
        // A browser may reset the device (a long submission, a driver update); say so at the next check.
        let sink = uncaptured.clone();
        device.set_device_lost_callback(move |reason, message| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                sink.lock().unwrap().push(format!("the GPU device was lost ({reason:?}): {message}"));
            }
        });
        let placeholder = Tensor {
            buffer: Arc::new(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("placeholder"),
                size: 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })),
            offset: 0,
            len: 1,
        };
        Ok(GpuContext {
            placeholder,
            device,
            queue,
            report: AdapterReport::of(&info, features),
            limits,
            modules: Mutex::new(HashMap::new()),
            kernels: Mutex::new(HashMap::new()),
            uncaptured,
        })
    }

    /// The compiled pipeline of a kernel, built on first use and cached (as is its shader module).
    pub fn kernel(&self, spec: &'static KernelSpec) -> Result<Arc<Kernel>> {
        if let Some(k) = self.kernels.lock().unwrap().get(&(spec.file, spec.entry)) {
            return Ok(k.clone());
        }
        let module = {
            let mut modules = self.modules.lock().unwrap();
            match modules.get(spec.file) {
                Some(m) => m.clone(),
                None => {
                    let m = Kernel::compile_module(&self.device, spec.file)?;
                    modules.insert(spec.file, m.clone());
                    m
                }
            }
        };
        let kernel = Arc::new(Kernel::compile(&self.device, &module, spec)?);
        self.kernels.lock().unwrap().insert((spec.file, spec.entry), kernel.clone());
        Ok(kernel)
    }

    /// A storage buffer; running out of device memory is an error naming the buffer.
    fn new_buffer(&self, bytes: u64, label: &str) -> Result<wgpu::Buffer> {
        let (buffer, error) = error_scope(&self.device, wgpu::ErrorFilter::OutOfMemory, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(4),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        match error {
            Some(e) => Err(Error::Device(format!("out of GPU memory for buffer `{label}` of {bytes} bytes: {e}"))),
            None => Ok(buffer),
        }
    }

    /// A one-element buffer to bind where a kernel's optional output is switched off. WebGPU
    /// refuses a dispatch that binds one buffer to two bindings of which one is writable, so
    /// another operand cannot stand in.
    pub fn placeholder(&self) -> &Tensor {
        &self.placeholder
    }

    /// The largest buffer this device binds, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// The most workgroups a dispatch may have along one dimension.
    pub fn max_workgroups_per_dimension(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// A zero-filled buffer of `len` 4-byte elements.
    pub fn zeros(&self, len: usize, label: &str) -> Result<Tensor> {
        self.check_fits(len, label)?;
        Ok(Tensor { buffer: Arc::new(self.new_buffer(len as u64 * 4, label)?), offset: 0, len })
    }

    /// Refuses a buffer of `len` elements that this device cannot bind, or whose indices would
    /// overflow the shaders' u32 arithmetic (some devices allow buffers far past 2^32 bytes).
    pub fn check_fits(&self, len: usize, label: &str) -> Result<()> {
        if len as u64 > MAX_ELEMENTS {
            return Err(Error::DeviceLimit(format!(
                "buffer `{label}` of {len} elements exceeds the {MAX_ELEMENTS} elements the shaders can index"
            )));
        }
        let bytes = len as u64 * 4;
        if bytes > self.max_binding_bytes() {
            return Err(Error::DeviceLimit(format!(
                "buffer `{label}` of {bytes} bytes exceeds this device's limit of {} bytes per binding",
                self.max_binding_bytes()
            )));
        }
        Ok(())
    }

    /// A new buffer holding `data` (4-byte elements), written before the next submission.
    pub fn upload<T: bytemuck::Pod>(&self, data: &[T], label: &str) -> Result<Tensor> {
        assert_eq!(std::mem::size_of::<T>(), 4, "tensors hold 4-byte elements");
        let t = self.zeros(data.len(), label)?;
        self.write(&t, data);
        Ok(t)
    }

    /// Queues a write of `data` into `t` (ordered before the next submission).
    pub fn write<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) {
        self.write_bytes(t, 0, bytemuck::cast_slice(data));
    }

    /// Queues a write of raw bytes into `t` at byte `offset` (both a multiple of 4 bytes long).
    pub fn write_bytes(&self, t: &Tensor, offset: u64, bytes: &[u8]) {
        assert!(offset.is_multiple_of(4) && bytes.len().is_multiple_of(4), "writes are of whole 4-byte words");
        assert!(
            offset + bytes.len() as u64 <= t.bytes(),
            "write of {} bytes at {offset} into a {}-byte tensor",
            bytes.len(),
            t.bytes()
        );
        if !bytes.is_empty() {
            self.queue.write_buffer(&t.buffer, t.offset + offset, bytes);
        }
    }

    /// Copies a tensor back to the host, waiting for all queued work first.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read<T: bytemuck::Pod>(&self, t: &Tensor) -> Result<Vec<T>> {
        pollster::block_on(self.read_async(t))
    }

    /// Copies a tensor back to the host once all queued work has finished.
    pub async fn read_async<T: bytemuck::Pod>(&self, t: &Tensor) -> Result<Vec<T>> {
        assert_eq!(std::mem::size_of::<T>(), 4, "tensors hold 4-byte elements");
        if t.len == 0 {
            return Ok(Vec::new());
        }
        let mut read = AsyncRead::new(self, t);
        let submission = self.submit([], Some(&mut read))?;
        self.finished(submission).await?;
        read.arrival().await
    }

    /// Submits the dispatches as one compute pass in one command buffer, then the copy that
    /// `read` requests (if any), without waiting; the submission can be waited for.
    pub fn submit<'a>(
        &self,
        dispatches: impl IntoIterator<Item = &'a Dispatch>,
        read: Option<&mut AsyncRead>,
    ) -> Result<Submission> {
        if read.as_ref().is_some_and(|r| r.pending) {
            return Err(Error::Readback("a copy was requested while the previous one is still pending".into()));
        }
        let mut encoder = self.device.create_command_encoder(&Default::default());
        crate::kernel::record(&mut encoder, dispatches);
        if let Some(read) = &read {
            let source = &read.source;
            encoder.copy_buffer_to_buffer(&source.buffer, source.offset, &read.staging, 0, source.bytes());
        }
        let index = self.queue.submit([encoder.finish()]);
        let done = Signal::default();
        let on_done = done.clone();
        self.queue.on_submitted_work_done(move || on_done.set(true));
        if let Some(read) = read {
            read.map();
        }
        self.check()?;
        Ok(Submission { index, done })
    }

    /// Blocks until the given submission has finished (earlier ones too).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_for(&self, submission: Submission) -> Result<()> {
        pollster::block_on(self.finished(submission))
    }

    /// Resolves once the given submission has finished (earlier ones too).
    pub async fn finished(&self, submission: Submission) -> Result<()> {
        // Natively the callbacks run inside a poll; a browser runs them from its event loop.
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(submission.index), timeout: None })
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))?;
        submission.done.wait().await;
        self.check()
    }

    /// Records the dispatches into one command buffer, submits it and waits.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        crate::kernel::record(&mut encoder, dispatches.iter().copied());
        self.queue.submit([encoder.finish()]);
        self.wait()
    }

    /// Each dispatch's time in seconds from timestamp queries where the device has them, else
    /// the wall-clock time of running it alone (submit and wait included), and which of the two.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn dispatch_seconds(&self, dispatches: &[&Dispatch]) -> Result<(Vec<f64>, &'static str)> {
        if let Some(times) = self.time_dispatches(dispatches)? {
            return Ok((times, "GPU time, timestamp queries"));
        }
        let mut times = Vec::new();
        for d in dispatches {
            let start = std::time::Instant::now();
            self.run(&[d])?;
            times.push(start.elapsed().as_secs_f64());
        }
        Ok((times, "wall clock, each alone with submit and wait"))
    }

    /// The GPU time of each dispatch in seconds, from timestamp queries written around it; None
    /// when the device lacks TIMESTAMP_QUERY (callers then fall back to wall-clock timing).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_dispatches(&self, dispatches: &[&Dispatch]) -> Result<Option<Vec<f64>>> {
        if !self.report.timestamps {
            return Ok(None);
        }
        let count = dispatches.len() as u32 * 2;
        if count > wgpu::QUERY_SET_MAX_QUERIES {
            return Err(Error::Shape(format!(
                "cannot time more than {} dispatches at once",
                wgpu::QUERY_SET_MAX_QUERIES / 2
            )));
        }
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("dispatch timing"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dispatch timing"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        for (i, d) in dispatches.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(d.kernel.name),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            d.record(&mut pass);
        }
        encoder.resolve_query_set(&set, 0..count, &resolved, 0);
        self.queue.submit([encoder.finish()]);
        let words: Vec<u32> = self.read(&Tensor { buffer: Arc::new(resolved), offset: 0, len: count as usize * 2 })?;
        let ticks: Vec<u64> = words.chunks(2).map(|w| w[0] as u64 | (w[1] as u64) << 32).collect();
        let seconds_per_tick = self.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(Some(ticks.chunks(2).map(|t| t[1].saturating_sub(t[0]) as f64 * seconds_per_tick).collect()))
    }

    /// Blocks until the queue is idle.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))?;
        self.check()
    }

    /// Turns any validation error raised since the last check into an `Error`.
    fn check(&self) -> Result<()> {
        let mut errors = self.uncaptured.lock().unwrap();
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.join("\n");
        errors.clear();
        Err(Error::Kernel { kernel: "dispatch".into(), message })
    }

    /// Creates a dispatch of a kernel over the given storage tensors (in the spec's binding
    /// order) with `params` as its uniform block (`&()` for a kernel without one).
    pub fn dispatch<P: GpuParams>(
        &self,
        spec: &'static KernelSpec,
        params: &P,
        tensors: &[&Tensor],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let fail = |message: String| Error::Kernel { kernel: spec.entry.into(), message };
        let declared = spec.params.as_ref().map(|l| l.name);
        let given = (std::mem::size_of::<P>() > 0).then_some(P::LAYOUT.name);
        if declared != given {
            return Err(fail(format!("declared with parameters {declared:?}, launched with {given:?}")));
        }
        let kernel = self.kernel(spec)?;
        let limit = self.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > limit) {
            return Err(fail(format!("{workgroups:?} workgroups exceed this device's {limit} per dimension")));
        }
        if tensors.len() != spec.storage.len() {
            return Err(fail(format!("takes {} buffers, given {}", spec.storage.len(), tensors.len())));
        }
        // Uniform blocks are padded to 16 bytes, the strictest alignment any backend asks for.
        let uniform = given.map(|_| {
            let mut bytes = bytemuck::bytes_of(params).to_vec();
            bytes.resize(bytes.len().next_multiple_of(16), 0);
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(spec.entry),
                contents: &bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            })
        });
        let uniform_entry =
            uniform.as_ref().map(|u| wgpu::BindGroupEntry { binding: 0, resource: u.as_entire_binding() });
        let storage_entries = spec
            .storage
            .iter()
            .zip(tensors)
            .map(|((binding, _), t)| wgpu::BindGroupEntry { binding: *binding, resource: t.binding() });
        let entries: Vec<_> = uniform_entry.into_iter().chain(storage_entries).collect();
        let (bind_group, error) = error_scope(&self.device, wgpu::ErrorFilter::Validation, || {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(spec.entry),
                layout: &kernel.layout,
                entries: &entries,
            })
        });
        if let Some(e) = error {
            return Err(fail(e.to_string()));
        }
        let mut distinct: Vec<&Tensor> = Vec::new();
        for t in tensors {
            if !distinct.iter().any(|d| Arc::ptr_eq(&d.buffer, &t.buffer) && d.offset == t.offset && d.len == t.len) {
                distinct.push(t);
            }
        }
        let bytes_bound = distinct.iter().map(|t| t.bytes()).sum();
        Ok(Dispatch { kernel, bind_group, workgroups, bytes_bound, flops: 0, _uniform: uniform })
    }
}

/// Workgroups for one thread per element with workgroups of 256, folded into a second
/// dimension past 65535 groups (the kernels rebuild the flat index from `num_workgroups`).
pub fn grid_1d(elements: usize) -> [u32; 3] {
    let groups = elements.div_ceil(256).max(1);
    if groups <= 65535 {
        [groups as u32, 1, 1]
    } else {
        [65535, groups.div_ceil(65535) as u32, 1]
    }
}
