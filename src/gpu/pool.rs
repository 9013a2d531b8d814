//! A pool of GPU buffers keyed by (size, usage). Training steps allocate the same
//! buffers every step, so after the first step every request is served from the
//! pool and nothing is created: sizes are rounded up to 256 bytes only, which wastes
//! little and still matches exactly when the same shapes come back.

use std::collections::HashMap;

/// Sizes are rounded up to this many bytes (also the uniform offset alignment most
/// adapters require, and a multiple of wgpu's 4-byte copy alignment).
const ALIGN: u64 = 256;

/// Counters of a context's buffer pool, for tests and long-run memory checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers and scratch textures created since the context was opened.
    pub created: u64,
    /// Bytes held by all of them.
    pub bytes: u64,
    /// Buffers and textures waiting in the pool for reuse.
    pub idle: usize,
}

/// Width, height and layers of a scratch texture.
type TextureKey = (u32, u32, u32);

#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>,
    free_textures: HashMap<TextureKey, Vec<wgpu::Texture>>,
    stats: PoolStats,
}

impl BufferPool {
    fn rounded(bytes: u64) -> u64 {
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

    /// An rgba32float array texture usable as a storage texture and a sampled one.
    pub(crate) fn take_texture(
        &mut self,
        device: &wgpu::Device,
        size: wgpu::Extent3d,
    ) -> wgpu::Texture {
        let key = (size.width, size.height, size.depth_or_array_layers);
        if let Some(t) = self.free_textures.get_mut(&key).and_then(Vec::pop) {
            self.stats.idle -= 1;
            return t;
        }
        self.stats.created += 1;
        self.stats.bytes += u64::from(size.width)
            * u64::from(size.height)
            * u64::from(size.depth_or_array_layers)
            * 16;
        device.create_texture(&wgpu::TextureDescriptor {
            label: Some("packed operand"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        })
    }

    pub(crate) fn give_texture(&mut self, t: wgpu::Texture) {
        self.stats.idle += 1;
        let key = (t.width(), t.height(), t.depth_or_array_layers());
        self.free_textures.entry(key).or_default().push(t);
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }
}

/// What a [`Loan`] can hold: a pooled buffer or scratch texture.
pub(crate) trait Pooled: Clone {
    fn give_back(self, pool: &mut BufferPool);
}

impl Pooled for wgpu::Buffer {
    fn give_back(self, pool: &mut BufferPool) {
        pool.give(self);
    }
}

impl Pooled for wgpu::Texture {
    fn give_back(self, pool: &mut BufferPool) {
        pool.give_texture(self);
    }
}

/// A buffer or texture on loan from the context's pool; it goes back when dropped.
pub(crate) struct Loan<T: Pooled> {
    ctx: crate::Context,
    item: T,
}

impl Loan<wgpu::Buffer> {
    pub(crate) fn buffer(
        ctx: &crate::Context,
        bytes: u64,
        usage: wgpu::BufferUsages,
        label: &str,
    ) -> Self {
        let item = ctx.pool().take(ctx.device(), bytes, usage, label);
        Self {
            ctx: ctx.clone(),
            item,
        }
    }
}

impl Loan<wgpu::Texture> {
    pub(crate) fn texture(ctx: &crate::Context, size: wgpu::Extent3d) -> Self {
        let item = ctx.pool().take_texture(ctx.device(), size);
        Self {
            ctx: ctx.clone(),
            item,
        }
    }
}

impl<T: Pooled> Loan<T> {
    pub(crate) fn get(&self) -> &T {
        &self.item
    }
}

impl<T: Pooled> Drop for Loan<T> {
    fn drop(&mut self) {
        self.item.clone().give_back(&mut self.ctx.pool());
    }
}
