//! A pool of GPU buffers keyed by (usage, size class), and of scratch textures
//! keyed by dimension classes. Training steps allocate the same buffers every
//! step, so after the first step every request is served from the pool and
//! nothing is created. Sizes are rounded up to classes — 256-byte steps up to
//! 64 KiB, then quarter octaves (2^k · 1.25, 1.5, 1.75, 2: at most 25% more than
//! asked for) — and a request takes the smallest idle item that is at least its
//! class (best fit), so that the buffers of a step over long sequences serve the
//! steps over shorter ones (bucketed batches) instead of each shape holding its
//! own. Idle items are capped by the peak of the bytes on loan (or a cap the
//! caller sets), so the pool holds at most twice what was ever in use at once;
//! past the cap, spares go first — the longest idle of a size that has others
//! idle — then the longest idle. (Plain longest-idle-first drops the buffers of
//! the longest batches, idle the longest when long batches are rare, and makes
//! them again an epoch later.)

use std::collections::BTreeMap;

/// Small sizes are rounded up to this many bytes (also the uniform offset
/// alignment most adapters require, and a multiple of wgpu's 4-byte copy alignment).
const ALIGN: u64 = 256;

/// Bytes past which sizes go by quarter octaves.
const FINE_BYTES: u64 = 64 * 1024;

/// Texture dimensions past which sizes go by quarter octaves.
const FINE_TEXELS: u32 = 64;

/// `n` rounded up to its quarter-octave class: the next multiple of 2^k / 4
/// where 2^k ≤ n < 2^(k+1).
fn quarter_octave(n: u64) -> u64 {
    let base = 1u64 << (63 - n.max(1).leading_zeros());
    let step = (base / 4).max(1);
    n.div_ceil(step) * step
}

/// Counters of a context's buffer pool, for tests and long-run memory checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Buffers and scratch textures created since the context was opened.
    pub created: u64,
    /// Bytes held by all of them (on loan and idle).
    pub bytes: u64,
    /// Buffers and textures waiting in the pool for reuse.
    pub idle: usize,
    /// Bytes of those.
    pub idle_bytes: u64,
    /// Bytes on loan now: tensors, uniforms and scratch textures in use.
    pub live_bytes: u64,
    /// The most bytes ever on loan at once.
    pub peak_live_bytes: u64,
    /// Of the bytes on loan now, those of scratch textures (the packed
    /// operands of matrix products).
    pub live_texture_bytes: u64,
    /// Of `peak_live_bytes`, those of scratch textures when the peak was set:
    /// the rest were buffers (tensors and uniforms).
    pub peak_texture_bytes: u64,
}

/// Width, height and layers of a scratch texture.
type TextureKey = (u32, u32, u32);

/// An idle item and the time it came back.
struct Idle<T> {
    since: u64,
    item: T,
}

#[derive(Default)]
pub(crate) struct BufferPool {
    /// Idle buffers by (usage bits, size), oldest first within a key.
    free: BTreeMap<(u32, u64), Vec<Idle<wgpu::Buffer>>>,
    free_textures: BTreeMap<TextureKey, Vec<Idle<wgpu::Texture>>>,
    /// Counts returns, to order idle items by age.
    clock: u64,
    stats: PoolStats,
    /// Most bytes kept idle; `None`: the peak of the bytes on loan.
    idle_cap: Option<u64>,
}

/// The key and time of the longest-idle item of `idle`, among the sizes with
/// more than one idle item when there are such.
fn oldest<K: Copy + Ord, T>(idle: &BTreeMap<K, Vec<Idle<T>>>) -> Option<(u64, K)> {
    let pick = |spare: bool| {
        idle.iter()
            .filter(|(_, v)| !spare || v.len() > 1)
            .filter_map(|(k, v)| v.first().map(|i| (i.since, *k)))
            .min_by_key(|(t, _)| *t)
    };
    pick(true).or_else(|| pick(false))
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

    /// A texture side for `n` texels: its class, past any power of two where
    /// the limit allows. Lavapipe compiles a kernel's code anew for every
    /// combination of power-of-two sides among the textures it binds (seconds
    /// for the packed GEMM); with none, one compile serves every shape.
    fn texture_side(n: u32, limit: u32) -> u32 {
        let mut side = Self::texels(n, limit);
        while side.is_power_of_two() && side < limit {
            side += 1;
        }
        side
    }

    fn texture_bytes(key: TextureKey) -> u64 {
        u64::from(key.0) * u64::from(key.1) * u64::from(key.2) * 16
    }

    /// Sets the most bytes kept idle; `None` keeps at most the peak of the bytes
    /// on loan. Drops idle items past it at once (see the module docs).
    pub(crate) fn set_idle_cap(&mut self, cap: Option<u64>) {
        self.idle_cap = cap;
        self.make_room(0);
    }

    /// Starts the peak of the bytes in use again from what is in use now; under
    /// the default cap, the idle items past it are dropped at once.
    pub(crate) fn reset_peak(&mut self) {
        self.stats.peak_live_bytes = self.stats.live_bytes;
        self.stats.peak_texture_bytes = self.stats.live_texture_bytes;
        self.make_room(0);
    }

    fn cap(&self) -> u64 {
        self.idle_cap.unwrap_or(self.stats.peak_live_bytes)
    }

    /// Drops idle items (spares first) until `bytes` more fit under the cap;
    /// whether they do. An item that is not kept is forgotten by the caller.
    fn make_room(&mut self, bytes: u64) -> bool {
        while self.stats.idle_bytes + bytes > self.cap() {
            let freed = match (oldest(&self.free), oldest(&self.free_textures)) {
                (Some((tb, kb)), t) if t.is_none_or(|(tt, _)| tb < tt) => {
                    take_first(&mut self.free, kb);
                    kb.1
                }
                (_, Some((_, kt))) => {
                    take_first(&mut self.free_textures, kt);
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

    /// Counts `bytes` coming back from loan: idle if there is room, else dropped
    /// (the caller drops the item when this is false).
    fn keep(&mut self, bytes: u64, texture: bool) -> bool {
        self.stats.live_bytes -= bytes;
        if texture {
            self.stats.live_texture_bytes -= bytes;
        }
        if !self.make_room(bytes) {
            self.stats.bytes -= bytes;
            return false;
        }
        self.stats.idle += 1;
        self.stats.idle_bytes += bytes;
        self.clock += 1;
        true
    }

    /// Counts `bytes` going out on loan, `created` or from the idle items.
    fn lend(&mut self, bytes: u64, created: bool, texture: bool) {
        if created {
            self.stats.created += 1;
            self.stats.bytes += bytes;
        } else {
            self.stats.idle -= 1;
            self.stats.idle_bytes -= bytes;
        }
        self.stats.live_bytes += bytes;
        if texture {
            self.stats.live_texture_bytes += bytes;
        }
        if self.stats.live_bytes > self.stats.peak_live_bytes {
            self.stats.peak_live_bytes = self.stats.live_bytes;
            self.stats.peak_texture_bytes = self.stats.live_texture_bytes;
        }
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
        let u = usage.bits();
        let fit = self
            .free
            .range((u, size)..=(u, cap))
            .find(|(_, v)| !v.is_empty())
            .map(|(k, _)| *k);
        if let Some(buf) = fit.and_then(|k| take_first(&mut self.free, k)) {
            self.lend(buf.size(), false, false);
            return buf;
        }
        self.lend(size, true, false);
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    pub(crate) fn give(&mut self, buf: wgpu::Buffer) {
        if self.keep(buf.size(), false) {
            let since = self.clock;
            self.free
                .entry((buf.usage().bits(), buf.size()))
                .or_default()
                .push(Idle { since, item: buf });
        }
    }

    /// An rgba32float array texture usable as a storage texture and a sampled one:
    /// the smallest idle one that covers `size` (as many layers), else a new one.
    pub(crate) fn take_texture(
        &mut self,
        device: &wgpu::Device,
        size: wgpu::Extent3d,
    ) -> wgpu::Texture {
        let limit = device.limits().max_texture_dimension_2d;
        let key = (
            Self::texture_side(size.width, limit),
            Self::texture_side(size.height, limit),
            size.depth_or_array_layers,
        );
        let fit = self
            .free_textures
            .iter()
            .filter(|(k, v)| k.0 >= key.0 && k.1 >= key.1 && k.2 == key.2 && !v.is_empty())
            .map(|(k, _)| *k)
            .min_by_key(|&k| Self::texture_bytes(k));
        if let Some(k) = fit {
            if let Some(t) = take_first(&mut self.free_textures, k) {
                self.lend(Self::texture_bytes(k), false, true);
                return t;
            }
        }
        self.lend(Self::texture_bytes(key), true, true);
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
        if self.keep(Self::texture_bytes(key), true) {
            let since = self.clock;
            self.free_textures
                .entry(key)
                .or_default()
                .push(Idle { since, item: t });
        }
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }
}

/// Takes the longest-idle item under `key`, dropping the key when it empties.
fn take_first<K: Ord, T>(idle: &mut BTreeMap<K, Vec<Idle<T>>>, key: K) -> Option<T> {
    let items = idle.get_mut(&key)?;
    let first = (!items.is_empty()).then(|| items.remove(0).item);
    if items.is_empty() {
        idle.remove(&key);
    }
    first
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
        assert_eq!(BufferPool::texture_side(1, 8192), 3);
        assert_eq!(BufferPool::texture_side(64, 8192), 65);
        assert_eq!(BufferPool::texture_side(300, 8192), 320);
        assert_eq!(BufferPool::texture_side(8000, 8192), 8192);
    }
}
