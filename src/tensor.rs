//! GPU tensors: a pooled storage buffer, a shape (row-major, last dimension
//! fastest) and an element type. Cloning a tensor shares its storage.

use std::future::Future;
use std::sync::Arc;

use half::f16;

use crate::error::{Error, Result};
use crate::gpu::pool::Loan;
use crate::gpu::{Context, Recorder};

/// Element type of a tensor's storage. Kernels compute in f32 either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit float storage; needs the adapter's SHADER_F16 feature.
    F16,
    /// 32-bit unsigned integers: sequence lengths, token ids.
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A tensor on the GPU. See the module docs.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Loan<wgpu::Buffer>>,
    ctx: Context,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.shape, self.dtype)
    }
}

impl Tensor {
    /// A tensor whose contents are unspecified (whatever the pooled buffer held);
    /// for outputs that an op overwrites completely.
    pub fn empty(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Self> {
        let bytes = Self::checked_bytes(ctx, shape, dtype)?;
        let label = format!("tensor{shape:?}");
        Ok(Self {
            storage: Arc::new(Loan::buffer(ctx, bytes, USAGE, &label)),
            ctx: ctx.clone(),
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// The bytes a `shape` of `dtype` takes, checked against the element count
    /// shaders can index, the adapter's features and its largest buffer.
    pub(crate) fn checked_bytes(ctx: &Context, shape: &[usize], dtype: DType) -> Result<u64> {
        if dtype == DType::F16 && !ctx.has_f16() {
            return Err(Error::FeatureMissing {
                adapter: ctx.adapter_info().name.clone(),
                feature: "SHADER_F16",
            });
        }
        let numel = checked_numel(shape)?;
        let bytes = (numel as u64) * dtype.size() as u64;
        let limit = ctx.limits().max_buffer_size;
        if bytes > limit {
            return Err(Error::LimitExceeded {
                op: "tensor",
                what: "bytes",
                value: bytes,
                limit,
            });
        }
        Ok(bytes)
    }

    /// Whether no other tensor shares this one's buffer.
    pub(crate) fn unshared(&self) -> bool {
        Arc::strong_count(&self.storage) == 1
    }

    /// Identifies the buffer: tensors that share it have the same key.
    pub(crate) fn storage_key(&self) -> usize {
        Arc::as_ptr(&self.storage) as usize
    }

    /// This buffer under another shape and dtype (as many bytes or fewer).
    pub(crate) fn relabel(self, shape: &[usize], dtype: DType) -> Self {
        Self {
            shape: shape.to_vec(),
            dtype,
            ..self
        }
    }

    /// A zero-filled f32 tensor.
    pub fn zeros(ctx: &Context, shape: &[usize]) -> Result<Self> {
        let t = Self::empty(ctx, shape, DType::F32)?;
        let mut rec = Recorder::new(ctx, "zeros");
        rec.zero(&t)?;
        rec.submit();
        Ok(t)
    }

    /// An f32 tensor holding `data` (row-major, `shape`'s element count).
    pub fn from_slice(ctx: &Context, shape: &[usize], data: &[f32]) -> Result<Self> {
        let t = Self::empty(ctx, shape, DType::F32)?;
        t.write(data)?;
        Ok(t)
    }

    /// An f16-storage tensor holding `data`; needs SHADER_F16 on the adapter.
    pub fn from_f16(ctx: &Context, shape: &[usize], data: &[f16]) -> Result<Self> {
        let t = Self::empty(ctx, shape, DType::F16)?;
        t.check_len(data.len())?;
        t.write_bytes(0, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// A u32 tensor holding `data` (row-major, `shape`'s element count).
    pub fn from_u32(ctx: &Context, shape: &[usize], data: &[u32]) -> Result<Self> {
        let t = Self::empty(ctx, shape, DType::U32)?;
        t.check_len(data.len())?;
        t.write_bytes(0, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// Overwrites the contents with `data`, converting to the tensor's dtype. The
    /// write is ordered before the next submit on this context.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        self.check_len(data.len())?;
        self.write_at(0, data)
    }

    /// Overwrites elements `offset..offset + data.len()` of a float tensor.
    pub fn write_at(&self, offset: usize, data: &[f32]) -> Result<()> {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.numel())
        {
            return Err(Error::ViewOutOfBounds {
                op: "write",
                what: "data",
                last: offset.saturating_add(data.len()),
                len: self.numel(),
            });
        }
        let at = (offset * self.dtype.size()) as u64;
        match self.dtype {
            DType::F32 => self.write_bytes(at, bytemuck::cast_slice(data)),
            // An f16 write covers whole 4-byte words, so it must not end inside one
            // that holds an element past `data`.
            DType::F16
                if offset.is_multiple_of(2)
                    && (data.len().is_multiple_of(2) || offset + data.len() == self.numel()) =>
            {
                let h: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
                self.write_bytes(at, bytemuck::cast_slice(&h));
            }
            got => {
                return Err(Error::DType {
                    op: "write",
                    what: "tensor (f32, or f16 covering whole pairs)",
                    expected: DType::F32,
                    got,
                })
            }
        }
        Ok(())
    }

    fn write_bytes(&self, at: u64, bytes: &[u8]) {
        // Queue writes need a multiple of 4 bytes; an odd f16 count gets one pad element.
        if bytes.len().is_multiple_of(4) {
            self.ctx.queue().write_buffer(self.buffer(), at, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            self.ctx.queue().write_buffer(self.buffer(), at, &padded);
        }
    }

    fn check_len(&self, got: usize) -> Result<()> {
        if got == self.numel() {
            Ok(())
        } else {
            Err(Error::DataLength {
                shape: self.shape.clone(),
                expected: self.numel(),
                got,
            })
        }
    }

    /// The same storage under another shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let numel = checked_numel(shape)?;
        if numel != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                what: "new shape",
                expected: format!("{} elements like {:?}", self.numel(), self.shape),
                got: shape.to_vec(),
            });
        }
        Ok(Self {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Reads the contents back as f32 (u32 values converted), blocking until the
    /// GPU has finished all work submitted before this call (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.to_vec_async())
    }

    /// Reads the contents back as f32 (u32 values converted) once the GPU has
    /// finished all work submitted before this call; in a page, without blocking.
    pub async fn to_vec_async(&self) -> Result<Vec<f32>> {
        self.to_vec_in(Recorder::new(&self.ctx, "readback")).await
    }

    /// [`to_vec_async`](Self::to_vec_async) with the copy recorded at the end of
    /// `rec` and submitted with it.
    pub(crate) async fn to_vec_in(&self, rec: Recorder) -> Result<Vec<f32>> {
        let (dtype, numel) = (self.dtype, self.numel());
        self.read_settled_in(rec, move |bytes| as_f32(bytes, dtype, numel))
            .await
    }

    /// Reads a u32 tensor back exactly (token ids, lengths; through f32 they
    /// would round past 2²⁴), blocking as [`to_vec`](Self::to_vec) does (native
    /// only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        pollster::block_on(self.to_vec_u32_async())
    }

    /// [`to_vec_u32`](Self::to_vec_u32), awaited.
    pub async fn to_vec_u32_async(&self) -> Result<Vec<u32>> {
        self.to_vec_u32_in(Recorder::new(&self.ctx, "readback"))
            .await
    }

    /// [`to_vec_u32_async`](Self::to_vec_u32_async) with the copy recorded at the
    /// end of `rec` and submitted with it.
    pub(crate) async fn to_vec_u32_in(&self, rec: Recorder) -> Result<Vec<u32>> {
        if self.dtype != DType::U32 {
            return Err(Error::DType {
                op: "to_vec_u32",
                what: "tensor",
                expected: DType::U32,
                got: self.dtype,
            });
        }
        let numel = self.numel();
        self.read_settled_in(rec, move |bytes| {
            bytemuck::cast_slice::<u8, u32>(bytes)[..numel].to_vec()
        })
        .await
    }

    /// `convert` of the contents' bytes (padded to whole words), copied at the end
    /// of `rec` and submitted with it, once the GPU has finished that submit and
    /// all work before it.
    async fn read_settled_in<T>(
        &self,
        rec: Recorder,
        convert: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        let pending = self.read_bytes_in(rec, convert)?;
        let waited = self.ctx.wait_async().await;
        // Settle the map even when the device reported an error, so that the
        // staging buffer goes back to the pool unmapped.
        let read = pending.await;
        waited?;
        read
    }

    /// Starts a readback now and returns a future of the contents as f32 (u32
    /// values converted). The copy is submitted at once; the future resolves once
    /// the device has been polled ([`Context::wait_async`], or a thread that
    /// polls), which the browser does by itself.
    pub fn read_async(&self) -> Result<impl Future<Output = Result<Vec<f32>>> + use<>> {
        let (numel, dtype) = (self.numel(), self.dtype);
        self.read_bytes(move |bytes| as_f32(bytes, dtype, numel))
    }

    /// Submits a copy of the contents into a staging buffer and maps it; the
    /// future gives `convert` of the mapped bytes (word-aligned, as the casts
    /// need) once the map completes.
    fn read_bytes<T, F: FnOnce(&[u8]) -> T>(
        &self,
        convert: F,
    ) -> Result<impl Future<Output = Result<T>> + use<T, F>> {
        self.read_bytes_in(Recorder::new(&self.ctx, "readback"), convert)
    }

    /// [`read_bytes`](Self::read_bytes) with the copy recorded at the end of `rec`.
    fn read_bytes_in<T, F: FnOnce(&[u8]) -> T>(
        &self,
        mut rec: Recorder,
        convert: F,
    ) -> Result<impl Future<Output = Result<T>> + use<T, F>> {
        rec.check_same_device("readback", &[self])?;
        // An empty tensor still maps 4 bytes: wgpu refuses empty buffer slices.
        let bytes = self.padded_bytes().max(4);
        let staging = Loan::buffer(
            &self.ctx,
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            "readback",
        );
        rec.hold(&[self]);
        rec.encoder_mut()
            .copy_buffer_to_buffer(self.buffer(), 0, staging.get(), 0, bytes);
        rec.submit();
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging
            .get()
            .slice(..bytes)
            .map_async(wgpu::MapMode::Read, move |r| {
                // The receiver only goes away with the future; nothing to report then.
                let _ = tx.send(r);
            });
        let label = format!("{self:?}");
        Ok(async move {
            let failed = |reason: String| Error::Readback {
                label: label.clone(),
                reason,
            };
            rx.receive()
                .await
                .ok_or_else(|| failed("the map callback was dropped".into()))?
                .map_err(|e| failed(e.to_string()))?;
            let out = staging
                .get()
                .slice(..bytes)
                .get_mapped_range()
                .map(|view| convert(&view))
                .map_err(|e| failed(e.to_string()));
            staging.get().unmap();
            out
        })
    }

    /// Dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element type of the storage.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The context (device) this tensor lives on.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The storage buffer (for interop; it may be larger than the tensor).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.storage.get()
    }

    /// Bytes of the contents rounded up to wgpu's 4-byte copy alignment.
    pub(crate) fn padded_bytes(&self) -> u64 {
        ((self.numel() * self.dtype.size()) as u64).next_multiple_of(4)
    }
}

/// The first `numel` elements of `bytes` (a readback of a `dtype` tensor) as f32.
fn as_f32(bytes: &[u8], dtype: DType, numel: usize) -> Vec<f32> {
    match dtype {
        DType::F32 => bytemuck::cast_slice::<u8, f32>(bytes)[..numel].to_vec(),
        DType::F16 => bytemuck::cast_slice::<u8, f16>(bytes)[..numel]
            .iter()
            .map(|h| h.to_f32())
            .collect(),
        DType::U32 => bytemuck::cast_slice::<u8, u32>(bytes)[..numel]
            .iter()
            .map(|&v| v as f32)
            .collect(),
    }
}

/// The element count of `shape`; shaders index with u32, so it must fit one.
fn checked_numel(shape: &[usize]) -> Result<usize> {
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= u32::MAX as usize)
        .ok_or_else(|| Error::LimitExceeded {
            op: "tensor",
            what: "elements",
            value: shape.iter().map(|&d| d as u64).fold(1, u64::saturating_mul),
            limit: u32::MAX.into(),
        })?;
    Ok(numel)
}
