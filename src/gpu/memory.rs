//! The memory our buffers hold: every buffer counted while alive ([`BufferStats`]), the memory
//! budget tests inject (a device that runs out of memory), and the allocation scopes that build
//! a model or a run and say when the device ran out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Gpu;
use crate::{Error, Result};

/// How many buffers we have created and not yet dropped, and their bytes: a leak shows here.
#[derive(Default)]
pub struct BufferStats {
    count: AtomicU64,
    bytes: AtomicU64,
    /// An injected device memory budget in bytes (0: none), see [`Gpu::cap_memory`].
    budget: AtomicU64,
    /// Buffers the budget refused so far.
    refused: AtomicU64,
}

impl Gpu {
    /// Behave as if the device had `bytes` of memory for our buffers (None: what it has): past
    /// it a buffer fails as it would on a device out of memory. Neither lavapipe nor SwiftShader
    /// reports running out of memory, so tests inject a budget (leaving the current run room for
    /// its readbacks).
    pub fn cap_memory(&self, bytes: Option<u64>) {
        self.stats.budget.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// The budget [`Gpu::cap_memory`] set, if any.
    pub fn memory_budget(&self) -> Option<u64> {
        Some(self.stats.budget.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }

    /// Opens an allocation scope: WebGPU error scopes (out-of-memory, and validation for the
    /// uses of a buffer that failed) around building a model or a run, which
    /// [`AllocScope::end`] closes.
    pub fn alloc_scope(&self) -> AllocScope {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let (_, in_use) = self.buffer_stats();
        AllocScope { oom, validation, gpu: self.clone(), refused: self.stats.refused.load(Ordering::Relaxed), in_use }
    }

    /// Buffers alive and their total bytes (only buffers made through [`Gpu::buffer`]).
    pub fn buffer_stats(&self) -> (u64, u64) {
        (self.stats.count.load(Ordering::Relaxed), self.stats.bytes.load(Ordering::Relaxed))
    }

    /// A storage buffer of `bytes` (rounded up to 4), zero-filled, counted in [`Gpu::buffer_stats`].
    pub fn buffer(&self, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> Buffer {
        let size = bytes.max(4).div_ceil(4) * 4;
        // past an injected budget the buffer fails as on a device out of memory: counted as
        // made, holding nothing (4 bytes), reported by the allocation scope around it
        let budget = self.stats.budget.load(Ordering::Relaxed);
        let refused = budget > 0 && self.stats.bytes.load(Ordering::Relaxed) + size > budget;
        if refused {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        let raw = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: if refused { 4 } else { size },
            usage,
            mapped_at_creation: false,
        });
        self.stats.count.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(size, Ordering::Relaxed);
        Buffer { raw, size, stats: self.stats.clone() }
    }
}

/// Error scopes around a block of allocations ([`Gpu::alloc_scope`]).
#[must_use]
pub struct AllocScope {
    // dropped in declaration order, so an early return pops the scopes as pushed in reverse
    oom: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
    gpu: Gpu,
    refused: u64,
    /// Bytes of our buffers alive when the scope opened.
    pub in_use: u64,
}

/// What an allocation scope saw when the device ran out of memory.
#[derive(Debug, Clone)]
pub struct OutOfMemory {
    /// Bytes of our buffers alive when the scope opened (the current model or run).
    pub in_use: u64,
    /// Bytes the scope's buffers asked for.
    pub requested: u64,
    /// The device's (injected) memory budget, where known.
    pub budget: Option<u64>,
}

impl AllocScope {
    /// Closes the scopes: Ok(None) when every allocation in them succeeded, Ok(Some) when the
    /// device ran out of memory (the caller drops what it built and says what fits); a
    /// validation error or a lost device is an error. In the browser a scope whose device died
    /// pops as "no error", hence the check of the device afterwards.
    pub async fn end(self) -> Result<Option<OutOfMemory>> {
        let AllocScope { oom, validation, gpu, refused, in_use } = self;
        let oom = oom.pop().await;
        let invalid = validation.pop().await;
        if let Some(why) = gpu.lost() {
            return Err(Error::Gpu(format!("the GPU device was lost ({why})")));
        }
        let refused = gpu.stats.refused.load(Ordering::Relaxed) > refused;
        if refused || matches!(oom, Some(wgpu::Error::OutOfMemory { .. })) {
            let requested = gpu.buffer_stats().1.saturating_sub(in_use);
            return Ok(Some(OutOfMemory { in_use, requested, budget: gpu.memory_budget() }));
        }
        match oom.or(invalid) {
            Some(e) => Err(Error::Gpu(format!("the GPU refused an allocation: {e}"))),
            None => Ok(None),
        }
    }
}

/// A wgpu buffer that keeps [`BufferStats`] honest when dropped.
pub struct Buffer {
    pub raw: wgpu::Buffer,
    pub size: u64,
    stats: Arc<BufferStats>,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.stats.count.fetch_sub(1, Ordering::Relaxed);
        self.stats.bytes.fetch_sub(self.size, Ordering::Relaxed);
    }
}
