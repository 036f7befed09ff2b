//! The engine's GPU: opened by `init` (with the page's kernel tuning cache), reopened after a lost
//! device, and the requests about the device itself (lose it, cap its memory, count what it
//! holds). Until `init` has opened it (or failed to), requests that need it wait (see
//! [`crate::web::Engine`]).

use std::sync::Arc;

use crate::kernels::Kernels;
use crate::options::Options;
use crate::tune::CacheFile;
use crate::web::host::Host;
use crate::web::protocol::{Event, Manifest, Request};
use crate::{Error, Gpu, Result};

/// Where the GPU is.
enum Device {
    /// `init` has not come yet.
    Unopened,
    Open(Arc<Kernels>),
    /// It failed to open, or was lost and no new one opened.
    Closed,
}

/// The GPU part of the engine.
pub(crate) struct Session {
    device: Device,
    /// What the page runs with (the defaults: auto kernels, the default submit budget).
    options: Options,
}

impl Session {
    pub fn new() -> Session {
        Session { device: Device::Unopened, options: Options::default() }
    }

    /// Whether `init` has yet to open the GPU (requests that need it wait until it has).
    pub fn waits(&self) -> bool {
        matches!(self.device, Device::Unopened)
    }

    /// The GPU's kernels, or an error where there is no GPU.
    pub fn kernels(&self) -> Result<Arc<Kernels>> {
        match &self.device {
            Device::Open(k) => Ok(k.clone()),
            Device::Unopened | Device::Closed => Err(Error::Gpu("the GPU is not ready".into())),
        }
    }

    /// The GPU's kernels where it is open.
    pub fn open(&self) -> Option<&Arc<Kernels>> {
        match &self.device {
            Device::Open(k) => Some(k),
            Device::Unopened | Device::Closed => None,
        }
    }

    /// Whether the device was lost.
    pub fn lost(&self) -> bool {
        self.open().and_then(|k| k.gpu.lost()).is_some()
    }

    /// Uses `kernels` (a run rebuilt itself on a new device).
    pub fn adopt(&mut self, kernels: Arc<Kernels>) {
        self.device = Device::Open(kernels);
    }

    /// Handles a request about the device: `init`, `lose_device`, `cap_memory`, `memory`.
    pub async fn handle(&mut self, request: Request, host: &dyn Host) -> Result<()> {
        match request {
            Request::Init { tune_cache } => {
                self.device = Device::Closed; // until it opens
                let gpu = Gpu::new(self.options.device).await?;
                let l = gpu.limits();
                host.post(
                    &Event::Ready {
                        adapter: gpu.describe(),
                        max_buffer_size: l.max_buffer_size,
                        max_storage_binding: l.max_storage_buffer_binding_size,
                        protocol: Manifest::new(),
                    },
                    &[],
                );
                self.device = Device::Open(Arc::new(kernels(&gpu, &self.options, tune_cache)?));
            }
            Request::LoseDevice => {
                if let Some(k) = self.open() {
                    k.gpu.device.destroy();
                }
            }
            Request::CapMemory { bytes } => self.kernels()?.gpu.cap_memory(bytes),
            Request::Memory => {
                let (gpu_buffers, gpu_bytes) = self.open().map_or((0, 0), |k| k.gpu.buffer_stats());
                host.post(&Event::Memory { wasm_bytes: host.memory_bytes(), gpu_buffers, gpu_bytes }, &[]);
            }
            other => unreachable!("the session does not handle {other:?}"),
        }
        Ok(())
    }

    /// Opens a new device after the old one was lost with `e` (and no run rebuilt itself on a new
    /// one); where none opens, the error to report instead of `e`, saying so.
    pub async fn reopen(&mut self, e: &Error) -> Result<()> {
        self.device = Device::Closed;
        let gpu = Gpu::new(self.options.device)
            .await
            .map_err(|e2| Error::Gpu(format!("{e}, and no new GPU device opens: {e2}")))?;
        let k = Kernels::with_family(&gpu, self.options.family)
            .map_err(|e2| Error::Gpu(format!("{e}, and the new GPU device's kernels: {e2}")))?;
        self.device = Device::Open(Arc::new(k));
        Ok(())
    }
}

/// The kernels of a new device, of `options`' family, with this adapter's choices from the
/// page's tuning cache.
fn kernels(gpu: &Gpu, options: &Options, tune_cache: Option<String>) -> Result<Kernels> {
    let k = Kernels::with_family(gpu, options.family)?;
    // a stale or malformed cache only costs a retune
    let file = tune_cache.and_then(|json| CacheFile::parse(&json).ok()).unwrap_or_default();
    if let Some(cached) = file.choices(gpu) {
        k.set_selection(k.selection().with_cached(gpu, cached));
    }
    Ok(k)
}
