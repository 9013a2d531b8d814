//! A pool of GPU buffers keyed by (size, usage). Training steps allocate the same
//! buffers every step, so after the first step every request is served from the
//! pool and nothing is created: sizes are rounded up to 256 bytes only, which wastes
//! little and still matches exactly when the same shapes come back.

use std::collections::HashMap;

/// Sizes are rounded up to this many bytes (also the uniform offset alignment most
/// adapters require, and a multiple of wgpu's 4-byte copy alignment).
const ALIGN: u64 = 256;

/// Counters of a [`BufferPool`], for tests and long-run memory checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers created since the context was opened.
    pub created: u64,
    /// Bytes held by all buffers the pool has created and not dropped.
    pub bytes: u64,
    /// Buffers waiting in the pool for reuse.
    pub idle: usize,
}

#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>,
    stats: PoolStats,
}

impl BufferPool {
    pub(crate) fn rounded(bytes: u64) -> u64 {
        bytes.max(1).div_ceil(ALIGN) * ALIGN
    }

    /// A buffer of at least `bytes` bytes with exactly `usage`; its contents are
    /// whatever its last user left.
    pub(crate) fn take(
        &mut self,
        device: &wgpu::Device,
        bytes: u64,
        usage: wgpu::BufferUsages,
        label: &str,
    ) -> wgpu::Buffer {
        let size = Self::rounded(bytes);
        if let Some(buf) = self.free.get_mut(&(size, usage)).and_then(Vec::pop) {
            self.stats.idle -= 1;
            return buf;
        }
        self.stats.created += 1;
        self.stats.bytes += size;
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    pub(crate) fn give(&mut self, buf: wgpu::Buffer) {
        self.stats.idle += 1;
        self.free
            .entry((buf.size(), buf.usage()))
            .or_default()
            .push(buf);
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }
}

/// A buffer on loan from the context's pool; it goes back when dropped.
pub(crate) struct Pooled {
    ctx: crate::Context,
    buffer: wgpu::Buffer,
}

impl Pooled {
    pub(crate) fn take(
        ctx: &crate::Context,
        bytes: u64,
        usage: wgpu::BufferUsages,
        label: &str,
    ) -> Self {
        let buffer = ctx.pool().take(ctx.device(), bytes, usage, label);
        Self {
            ctx: ctx.clone(),
            buffer,
        }
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.ctx.pool().give(self.buffer.clone());
    }
}
