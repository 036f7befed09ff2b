//! The GPU context: adapter, device, queue and the limits we asked for, plus tensors (buffers
//! with shapes), upload and readback. The one place where native and wasm differ (how to wait
//! for a mapped buffer, and the clock), as in the wgpu examples.

use std::sync::{Arc, Mutex};

use crate::{Error, Result};

mod memory;

pub use memory::{AllocScope, Buffer, BufferStats, OutOfMemory};

/// Device, queue and what the adapter is. Cheap to clone.
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    stats: Arc<BufferStats>,
    /// A lower storage-binding limit than the device's, set by tests to exercise chunking.
    binding_cap: Option<u64>,
    faults: Arc<Faults>,
    settings: DeviceSettings,
}

/// What a device is asked for beyond the adapter's own: the test injections of an adapter without
/// shader-f16 and of a device with little memory. The default asks for nothing (the page's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceSettings {
    /// Leave shader-f16 out, as on an adapter without it (SwiftShader, some RTX cards in Chrome):
    /// tests use it to check the fallback to f32.
    pub hide_shader_f16: bool,
    /// A device with this many bytes of memory ([`Gpu::cap_memory`]).
    pub memory: Option<u64>,
}

/// What the device reported on its own: that it was lost (destroyed, driver reset, a browser's
/// GPU process crash), or an error no caller was waiting for. Readbacks turn these into errors.
#[derive(Default)]
struct Faults {
    lost: Mutex<Option<String>>,
    error: Mutex<Option<String>>,
}

impl Gpu {
    /// Picks the high-performance adapter and requests a device with every limit the adapter
    /// offers (GPT-2's wte alone is 154 MB, over WebGPU's default 128 MiB storage binding), with
    /// `settings`' injections.
    pub async fn new(settings: DeviceSettings) -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle().with_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Gpu(format!(
                    "no GPU adapter found ({e}). Natively wgpt needs Vulkan, Metal or DX12 \
                     (on Linux without a GPU: apt-get install mesa-vulkan-drivers); in a browser \
                     it needs WebGPU (Chrome 113+ or Edge 113+)"
                ))
            })?;
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpt"),
                // GPU timestamps where the adapter has them (`wgpt bench` times kernels with
                // them), subgroups (the matmul kernels for 8-wide subgroups) and shader-f16 (the
                // f16-weight matmuls of --precision f16)
                required_features: adapter.features() & wanted_features(settings),
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("the adapter {} refused a device: {e}", info.name)))?;
        // Record, don't panic (wgpu's default): a lost device is something the caller recovers
        // from (a new device, the last checkpoint), and any other error surfaces at the next
        // readback as an Error naming it.
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        device.set_device_lost_callback(move |reason, message| {
            *f.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{reason:?} {message}").trim().into());
        });
        let f = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            f.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
        }));
        let stats = Arc::new(BufferStats::default());
        let gpu = Gpu { device, queue, info, stats, binding_cap: None, faults, settings };
        gpu.cap_memory(settings.memory);
        Ok(gpu)
    }

    /// What the device was asked for (a device made again after a loss asks for the same).
    pub fn settings(&self) -> DeviceSettings {
        self.settings
    }

    /// Why the device was lost, once it has been: it and everything on it are gone, and only a
    /// new [`Gpu`] can go on.
    pub fn lost(&self) -> Option<String> {
        self.faults.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Err if the device was lost or reported an error since it was made.
    pub fn check(&self) -> Result<()> {
        if let Some(why) = self.lost() {
            return Err(Error::Gpu(format!("the GPU device was lost ({why})")));
        }
        match self.faults.error.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(e) => Err(Error::Gpu(format!("the GPU reported an error: {e}"))),
            None => Ok(()),
        }
    }

    /// A one-line description of the adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// Whether the device has WGSL's `f16` (the WebGPU feature shader-f16), which the f16-weight
    /// matmuls of [`crate::precision::Precision::F16`] need.
    pub fn shader_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// Whether the device has subgroup operations with subgroups of exactly 8 invocations
    /// (lavapipe: one 256-bit SIMD register of f32), which the matmul's subgroup kernels assume.
    /// Natively only: in a browser WGSL would also need `enable subgroups;`, which naga refuses.
    pub fn subgroups_of_8(&self) -> bool {
        !cfg!(target_arch = "wasm32")
            && self.device.features().contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size == 8
            && self.info.subgroup_max_size == 8
    }

    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// Behave as if max_storage_buffer_binding_size were at most `bytes` (tests use it to run the
    /// chunked paths that big models take on devices with small bindings).
    pub fn cap_binding(&mut self, bytes: u64) {
        self.binding_cap = Some(bytes);
    }

    /// The largest storage binding, in bytes.
    pub fn max_binding(&self) -> u64 {
        let limit = self.limits().max_storage_buffer_binding_size;
        self.binding_cap.map_or(limit, |cap| cap.min(limit))
    }

    /// Checks that a buffer of `bytes` can be created; the error names the limit.
    pub fn check_buffer(&self, what: &str, bytes: u64) -> Result<()> {
        let max = self.limits().max_buffer_size;
        if bytes > max {
            return Err(Error::Limits(format!(
                "{what} needs a buffer of {bytes} bytes but this GPU's max_buffer_size is {max} bytes; use a smaller \
                 model, batch or context"
            )));
        }
        Ok(())
    }

    /// Checks that a buffer of `bytes` can be created and bound as storage; the error names the
    /// limit, what is needed and what the device has.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        self.check_buffer(what, bytes)?;
        let binding = self.max_binding();
        if bytes > binding {
            return Err(Error::Limits(format!(
                "{what} needs a storage binding of {bytes} bytes but this GPU's \
                 max_storage_buffer_binding_size is {binding} bytes; use a smaller model, batch \
                 or context"
            )));
        }
        Ok(())
    }

    /// `t` (rows, ...) split along its first dimension into views that each fit one storage
    /// binding and start at an allowed binding offset: (first row, view) pairs; just `t` when it
    /// fits whole. GPT-2's wte (154 MB) takes two on a device with 128 MiB bindings.
    pub fn row_chunks(&self, t: &Tensor) -> Vec<(usize, Tensor)> {
        let chunks = self.chunk_rows_of(&t.shape, t.elem_bytes());
        if chunks.len() == 1 {
            return vec![(0, t.clone())];
        }
        chunks.into_iter().map(|(r0, r1)| (r0, t.rows(r0, r1))).collect()
    }

    /// The row ranges [r0, r1) that [`Gpu::row_chunks`] splits an f32 tensor of `shape` into.
    pub fn chunk_rows(&self, shape: &[usize]) -> Vec<(usize, usize)> {
        self.chunk_rows_of(shape, 4)
    }

    /// [`Gpu::chunk_rows`] for elements of `elem` bytes (4: f32 and u32, 2: f16).
    pub fn chunk_rows_of(&self, shape: &[usize], elem: u64) -> Vec<(usize, usize)> {
        let rows = shape[0];
        let numel: usize = shape.iter().product();
        let row_bytes = elem * (numel / rows.max(1)) as u64;
        if elem * numel as u64 <= self.max_binding() || row_bytes == 0 {
            return vec![(0, rows)];
        }
        // chunks start at multiples of the offset alignment: rows per chunk a multiple of `step`
        let align = u64::from(self.limits().min_storage_buffer_offset_alignment);
        let step = align / gcd(row_bytes, align);
        let per = (self.max_binding() / row_bytes / step * step).max(step) as usize;
        (0..rows).step_by(per).map(|r0| (r0, (r0 + per).min(rows))).collect()
    }

    /// A zero-filled f16 tensor of `shape` (2 bytes an element, the buffer rounded up to 4 bytes),
    /// for the f16 weights of inference; only kernels that declare f16 storage bind it.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn tensor_f16(&self, label: &str, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buffer = self.buffer(label, 2 * n as u64, usage);
        Tensor { buffer: Arc::new(buffer), shape: shape.to_vec(), offset: 0, half: true }
    }

    /// A zero-filled f32 (or u32) tensor of `shape` usable as storage, copy source and destination.
    // in the browser wgpu's buffers are not Send: there is one thread, the Arc only shares
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn tensor(&self, label: &str, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buffer = self.buffer(label, 4 * n as u64, usage);
        Tensor { buffer: Arc::new(buffer), shape: shape.to_vec(), offset: 0, half: false }
    }

    /// A tensor holding `data` (f32 or u32 words).
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, shape: &[usize], data: &[T]) -> Tensor {
        let t = self.tensor(label, shape);
        assert_eq!(t.numel() * 4, std::mem::size_of_val(data), "upload of {label}: shape and data disagree");
        self.write(&t, data);
        t
    }

    /// Overwrites a tensor's contents (ordered before any later submit).
    pub fn write<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) {
        if !data.is_empty() {
            self.queue.write_buffer(&t.buffer.raw, t.offset, bytemuck::cast_slice(data));
        }
    }

    /// A uniform buffer holding `params` (a `#[repr(C)]` struct that mirrors a WGSL struct).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, params: &T) -> Buffer {
        let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let b = self.buffer(label, std::mem::size_of::<T>() as u64, usage);
        self.queue.write_buffer(&b.raw, 0, bytemuck::bytes_of(params));
        b
    }

    /// Reads tensors back to the CPU as f32 words, with one copy per tensor into one staging
    /// buffer, one submit and one map.
    pub async fn read_many(&self, tensors: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
        let total: u64 = tensors.iter().map(|t| t.bytes()).sum();
        let staging = self.buffer("readback", total, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut offset = 0;
        for t in tensors {
            assert!(!t.half, "read_many reads f32 words; an f16 tensor is read by no one");
            enc.copy_buffer_to_buffer(&t.buffer.raw, t.offset, &staging.raw, offset, t.bytes());
            offset += t.bytes();
        }
        self.queue.submit([enc.finish()]);
        let bytes = self.map_read(&staging).await?;
        let mut out = Vec::with_capacity(tensors.len());
        let mut offset = 0usize;
        for t in tensors {
            let words: &[f32] = bytemuck::cast_slice(&bytes[offset..offset + 4 * t.numel()]);
            out.push(words.to_vec());
            offset += t.bytes() as usize;
        }
        Ok(out)
    }

    /// Reads `len` f32 words of a tensor starting at word `offset`.
    pub async fn read_range(&self, t: &Tensor, offset: usize, len: usize) -> Result<Vec<f32>> {
        let staging = self.staging(4 * len as u64);
        self.read_via(&staging, t, offset, len).await
    }

    /// A buffer to read back through, for [`Gpu::read_via`]: readers on a hot path (a decode
    /// step) keep one instead of making one per read.
    pub fn staging(&self, bytes: u64) -> Buffer {
        self.buffer("readback", bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST)
    }

    /// [`Gpu::read_range`] through `staging` (at least 4·len bytes; one read at a time).
    pub async fn read_via(&self, staging: &Buffer, t: &Tensor, offset: usize, len: usize) -> Result<Vec<f32>> {
        assert!(offset + len <= t.numel(), "read_range past the end of the tensor");
        let bytes = 4 * len as u64;
        assert!(bytes <= staging.size, "the staging buffer holds {} bytes, the read needs {bytes}", staging.size);
        let from = t.offset + 4 * offset as u64;
        self.encode(|enc| enc.copy_buffer_to_buffer(&t.buffer.raw, from, &staging.raw, 0, bytes));
        let bytes = self.map_read(staging).await?;
        Ok(bytemuck::cast_slice(&bytes[..4 * len]).to_vec())
    }

    /// Reads one tensor back as f32.
    pub async fn read(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(self.read_many(&[t]).await?.pop().unwrap_or_default())
    }

    /// Maps a MAP_READ buffer and copies its bytes out. Natively we poll the device until the
    /// map completes; in the browser the map callback fires on the event loop and we await it.
    async fn map_read(&self, staging: &Buffer) -> Result<Vec<u8>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.raw.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
            self.check()?;
            return Err(Error::Gpu(format!("waiting for the GPU failed: {e}")));
        }
        let mapped = rx.await;
        self.check()?;
        mapped
            .map_err(|_| Error::Gpu("the GPU dropped a readback".into()))?
            .map_err(|e| Error::Gpu(format!("reading back from the GPU failed: {e}")))?;
        let bytes = staging
            .raw
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer failed: {e}")))?
            .to_vec();
        staging.raw.unmap();
        Ok(bytes)
    }

    /// Whether the device has GPU timestamp queries (TIMESTAMP_QUERY), which [`Gpu::time_pass`]
    /// reads.
    pub fn timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// GPU nanoseconds between the start and the end of one compute pass recorded by `record`,
    /// from timestamp queries; None where the device has no TIMESTAMP_QUERY.
    pub async fn time_pass(&self, record: impl FnOnce(&mut wgpu::ComputePass<'_>)) -> Result<Option<f64>> {
        if !self.timestamps() {
            return Ok(None);
        }
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolved =
            self.buffer("pass timestamps", 16, wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let staging = self.staging(16);
        let mut enc = self.device.create_command_encoder(&Default::default());
        record(&mut enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("timed pass"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        }));
        enc.resolve_query_set(&set, 0..2, &resolved.raw, 0);
        enc.copy_buffer_to_buffer(&resolved.raw, 0, &staging.raw, 0, 16);
        self.queue.submit([enc.finish()]);
        let bytes = self.map_read(&staging).await?;
        let t: [u64; 2] = [0, 8].map(|i| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes")));
        Ok(Some(t[1].saturating_sub(t[0]) as f64 * f64::from(self.queue.get_timestamp_period())))
    }

    /// Records into one command buffer and submits it.
    pub fn encode(&self, record: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        record(&mut enc);
        self.queue.submit([enc.finish()]);
    }

    /// Runs `record` in one compute pass of one command buffer and submits it.
    pub fn run(&self, record: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
        self.encode(|enc| record(&mut enc.begin_compute_pass(&Default::default())));
    }
}

/// Milliseconds on a monotonic-enough clock (the tuner's wall clock where the adapter has no
/// timestamp queries): std's Instant natively, Date.now() in the browser.
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
    }
}

/// The device features wgpt uses where the adapter has them: timestamps, subgroups and
/// shader-f16 (unless `settings` hides it).
fn wanted_features(settings: DeviceSettings) -> wgpu::Features {
    let base = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
    if settings.hide_shader_f16 {
        base
    } else {
        base | wgpu::Features::SHADER_F16
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A dense row-major f32 (or u32, or for inference's weights f16) array on the GPU: a whole
/// buffer, or a view of some of its rows ([`Tensor::rows`]). Clones share the buffer.
#[derive(Clone)]
pub struct Tensor {
    pub buffer: Arc<Buffer>,
    pub shape: Vec<usize>,
    /// Where the tensor starts in the buffer, in bytes (0 but for views).
    pub offset: u64,
    /// f16 elements ([`Gpu::tensor_f16`]) instead of 4-byte words.
    pub half: bool,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes per element: 4, or 2 for f16.
    pub fn elem_bytes(&self) -> u64 {
        if self.half {
            2
        } else {
            4
        }
    }

    /// Bytes the tensor spans (at least 4: an empty tensor still has a 4-byte buffer; an f16
    /// tensor rounded up to whole words, as storage bindings take).
    pub fn bytes(&self) -> u64 {
        (self.elem_bytes() * self.numel() as u64).div_ceil(4).max(1) * 4
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer.raw,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.bytes()),
        })
    }

    /// Rows r0..r1 of a (rows, ...) tensor, as a tensor of their own over the same buffer.
    pub fn rows(&self, r0: usize, r1: usize) -> Tensor {
        assert!(r0 < r1 && r1 <= self.shape[0], "rows {r0}..{r1} of a tensor of {} rows", self.shape[0]);
        let row = self.elem_bytes() * (self.numel() / self.shape[0]) as u64;
        let mut shape = self.shape.clone();
        shape[0] = r1 - r0;
        Tensor { buffer: self.buffer.clone(), shape, offset: self.offset + r0 as u64 * row, half: self.half }
    }
}
