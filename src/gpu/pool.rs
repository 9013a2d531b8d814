//! A pool of GPU buffers keyed by (size class, usage), and of scratch textures
//! keyed by dimension classes. Training steps allocate the same buffers every
//! step, so after the first step every request is served from the pool and
//! nothing is created. Sizes are rounded up to classes — 256-byte steps up to
//! 64 KiB, then quarter octaves (2^k · 1.25, 1.5, 1.75, 2: at most 25% more than
//! asked for) — so that batches of varying shapes (bucketed sequence lengths)
//! meet a bounded set of classes instead of a new size each time; and the pool
//! keeps at most [`IDLE_CAP`] bytes idle, dropping the longest-idle items to make
//! room for what comes back.

use std::collections::HashMap;

/// Small sizes are rounded up to this many bytes (also the uniform offset
/// alignment most adapters require, and a multiple of wgpu's 4-byte copy alignment).
const ALIGN: u64 = 256;

/// Bytes past which sizes go by quarter octaves.
const FINE_BYTES: u64 = 64 * 1024;

/// Texture dimensions past which sizes go by quarter octaves.
const FINE_TEXELS: u32 = 64;

/// Most bytes the pool keeps idle; past it, the items idle longest are dropped.
pub const IDLE_CAP: u64 = 1 << 30;

/// `n` rounded up to its quarter-octave class: the next multiple of 2^k / 4
/// where 2^k ≤ n < 2^(k+1).
fn quarter_octave(n: u64) -> u64 {
    let base = 1u64 << (63 - n.max(1).leading_zeros());
    let step = (base / 4).max(1);
    n.div_ceil(step) * step
}

/// Counters of a context's buffer pool, for tests and long-run memory checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers and scratch textures created since the context was opened.
    pub created: u64,
    /// Bytes held by all of them.
    pub bytes: u64,
    /// Buffers and textures waiting in the pool for reuse.
    pub idle: usize,
    /// Bytes of those (at most [`IDLE_CAP`]).
    pub idle_bytes: u64,
}

/// Width, height and layers of a scratch texture.
type TextureKey = (u32, u32, u32);

/// Idle items by key, each with the time it came back (oldest first).
type Idle<K, T> = HashMap<K, Vec<(u64, T)>>;

#[derive(Default)]
pub(crate) struct BufferPool {
    free: Idle<(u64, wgpu::BufferUsages), wgpu::Buffer>,
    free_textures: Idle<TextureKey, wgpu::Texture>,
    /// Counts returns, to order idle items by age.
    clock: u64,
    stats: PoolStats,
}

/// The key and time of the longest-idle item of `idle`.
fn oldest<K: Copy + Eq + std::hash::Hash, T>(idle: &Idle<K, T>) -> Option<(u64, K)> {
    idle.iter()
        .filter_map(|(k, v)| v.first().map(|(t, _)| (*t, *k)))
        .min_by_key(|(t, _)| *t)
}

impl BufferPool {
    fn rounded(bytes: u64) -> u64 {
        let bytes = bytes.max(1);
        if bytes <= FINE_BYTES {
            bytes.div_ceil(ALIGN) * ALIGN
        } else {
            quarter_octave(bytes)
        }
    }

    /// A texture dimension's class, at most `limit` (which the request is within).
    fn texels(n: u32, limit: u32) -> u32 {
        if n <= FINE_TEXELS {
            return n;
        }
        u32::try_from(quarter_octave(n.into())).map_or(limit, |c| c.min(limit))
    }

    fn texture_bytes(key: TextureKey) -> u64 {
        u64::from(key.0) * u64::from(key.1) * u64::from(key.2) * 16
    }

    /// Drops the longest-idle items until `bytes` more fit under [`IDLE_CAP`];
    /// whether they do. An item that is not kept is forgotten by the caller.
    fn make_room(&mut self, bytes: u64) -> bool {
        while self.stats.idle_bytes + bytes > IDLE_CAP {
            let freed = match (oldest(&self.free), oldest(&self.free_textures)) {
                (Some((tb, kb)), t) if t.is_none_or(|(tt, _)| tb < tt) => {
                    self.free.get_mut(&kb).map(|v| v.remove(0));
                    kb.0
                }
                (_, Some((_, kt))) => {
                    self.free_textures.get_mut(&kt).map(|v| v.remove(0));
                    Self::texture_bytes(kt)
                }
                _ => return false,
            };
            self.stats.idle -= 1;
            self.stats.idle_bytes -= freed;
            self.stats.bytes -= freed;
        }
        true
    }

    /// Counts `bytes` coming back: idle if there is room, else dropped (the
    /// caller drops the item when this is false).
    fn keep(&mut self, bytes: u64) -> bool {
        if !self.make_room(bytes) {
            self.stats.bytes -= bytes;
            return false;
        }
        self.stats.idle += 1;
        self.stats.idle_bytes += bytes;
        self.clock += 1;
        true
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
        // A class never takes a buffer past a limit its request is within, so
        // that whole-buffer bindings stay valid.
        let limits = device.limits();
        let cap = if bytes <= limits.max_storage_buffer_binding_size {
            limits.max_storage_buffer_binding_size
        } else {
            limits.max_buffer_size
        };
        let size = Self::rounded(bytes)
            .min(cap)
            .max(bytes.max(1).div_ceil(ALIGN) * ALIGN);
        if let Some((_, buf)) = self.free.get_mut(&(size, usage)).and_then(Vec::pop) {
            self.stats.idle -= 1;
            self.stats.idle_bytes -= size;
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
        if self.keep(buf.size()) {
            self.free
                .entry((buf.size(), buf.usage()))
                .or_default()
                .push((self.clock, buf));
        }
    }

    /// An rgba32float array texture usable as a storage texture and a sampled one.
    pub(crate) fn take_texture(
        &mut self,
        device: &wgpu::Device,
        size: wgpu::Extent3d,
    ) -> wgpu::Texture {
        let limit = device.limits().max_texture_dimension_2d;
        let key = (
            Self::texels(size.width, limit),
            Self::texels(size.height, limit),
            size.depth_or_array_layers,
        );
        if let Some((_, t)) = self.free_textures.get_mut(&key).and_then(Vec::pop) {
            self.stats.idle -= 1;
            self.stats.idle_bytes -= Self::texture_bytes(key);
            return t;
        }
        self.stats.created += 1;
        self.stats.bytes += Self::texture_bytes(key);
        device.create_texture(&wgpu::TextureDescriptor {
            label: Some("packed operand"),
            size: wgpu::Extent3d {
                width: key.0,
                height: key.1,
                depth_or_array_layers: key.2,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        })
    }

    pub(crate) fn give_texture(&mut self, t: wgpu::Texture) {
        let key = (t.width(), t.height(), t.depth_or_array_layers());
        if self.keep(Self::texture_bytes(key)) {
            self.free_textures
                .entry(key)
                .or_default()
                .push((self.clock, t));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_waste_at_most_a_quarter_and_are_few() {
        for bytes in [
            1u64,
            255,
            256,
            257,
            65_536,
            65_537,
            100_000,
            1 << 20,
            (1 << 20) + 1,
            7_777_777,
        ] {
            let c = BufferPool::rounded(bytes);
            assert!(c >= bytes && c.is_multiple_of(ALIGN), "{bytes} -> {c}");
            assert!(c <= bytes.max(ALIGN) + bytes / 4 + ALIGN, "{bytes} -> {c}");
        }
        // Every size from 64 KiB to 64 MiB falls in 4 classes per octave.
        let mut classes: Vec<u64> = (16..26)
            .flat_map(|k| (0..64).map(move |i| (1u64 << k) + i * (1u64 << k) / 64 + 1))
            .map(BufferPool::rounded)
            .collect();
        classes.sort();
        classes.dedup();
        assert!(classes.len() <= 4 * 10 + 1, "{} classes", classes.len());
        assert_eq!(BufferPool::texels(300, 8192), 320);
        assert_eq!(BufferPool::texels(8000, 8192), 8192);
        assert_eq!(BufferPool::texels(33, 8192), 33);
    }
}
