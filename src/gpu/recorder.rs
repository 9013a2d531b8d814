//! A recorder collects the dispatches of one unit of work (a training step, a
//! forward pass) into one command encoder, submitted once. Ops take `&mut Recorder`
//! and only record; nothing runs until [`Recorder::submit`].

use crate::error::{Error, Result};
use crate::gpu::pipeline::Pipeline;
use crate::gpu::pool::Loan;
use crate::gpu::profile::Timed;
use crate::gpu::Context;
use crate::shaders::Shader;
use crate::tensor::{DType, Tensor};

/// Records GPU work for one submit. See the module docs.
pub struct Recorder {
    ctx: Context,
    /// The compute pass that consecutive dispatches share (wgpu orders and
    /// synchronizes dispatches inside a pass); ended before any other command.
    /// One pass for a whole W1 step (409 dispatches) takes 2.7 ms of host time to
    /// record and submit, where a pass per dispatch took 4.2.
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: wgpu::CommandEncoder,
    /// The dispatches' parameters: each a slot of a few uniform buffers, written
    /// with one queue write per buffer rather than one per dispatch.
    params: Params,
    /// Scratch textures of this submit (packed GEMM operands); back to the pool
    /// once submitted, like the uniforms.
    textures: Vec<Loan<wgpu::Texture>>,
    /// Those of them whose last reader is recorded: free for a later packing in
    /// this submit. Only kernels write textures, so the writes of a later owner
    /// are ordered after the earlier reads (unlike a queue write into a buffer).
    spare_textures: Vec<wgpu::Texture>,
    /// Tensors the recorded commands use. A tensor the caller drops before the
    /// submit must not go back to the pool yet: a queue write into its buffer by
    /// the next owner would land before these commands run.
    held: Vec<Tensor>,
    /// The bind groups of this submit by what they bind: the dispatches of a
    /// kernel over the same tensors (each step of a recurrence) share one.
    bind_groups: std::collections::HashMap<BindKey, wgpu::BindGroup>,
    /// The buffers of `held`, each held once.
    held_keys: std::collections::HashSet<usize>,
    dispatches: usize,
    /// Names the submit in the profile and the trace (whose host track a page,
    /// without a clock, leaves out).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    label: String,
    /// The phase new dispatches count under when profiling.
    phase: &'static str,
    /// Profiling with timestamps: each dispatch's label and phase, in order, and
    /// the query sets holding their start and end timestamps.
    timed: Vec<(String, &'static str)>,
    query_sets: Vec<wgpu::QuerySet>,
    /// When recording started, for the trace's host track and the recording
    /// time (native only).
    #[cfg(not(target_arch = "wasm32"))]
    started: std::time::Instant,
}

/// What a bind group binds: the layout, the parameters' buffer and size (the
/// offset is dynamic) and the other resources.
#[derive(PartialEq, Eq, Hash)]
struct BindKey {
    layout: wgpu::BindGroupLayout,
    uniform: (wgpu::Buffer, u64),
    resources: Vec<(u32, Resource)>,
}

#[derive(PartialEq, Eq, Hash)]
enum Resource {
    Buffer(wgpu::Buffer, u64, Option<u64>),
    View(wgpu::TextureView),
    /// Anything else: never equal to another, so never shared.
    Other(usize),
}

impl Resource {
    fn of(r: &wgpu::BindingResource) -> Self {
        static OTHER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        match r {
            wgpu::BindingResource::Buffer(b) => {
                Resource::Buffer(b.buffer.clone(), b.offset, b.size.map(|s| s.get()))
            }
            wgpu::BindingResource::TextureView(v) => Resource::View((*v).clone()),
            _ => Resource::Other(OTHER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        }
    }
}

/// Bytes of the first uniform buffer of [`Params`], and of the largest: each
/// next one doubles, so a few dispatches take 4 KiB and a W1 step (346
/// dispatches at the usual 256-byte alignment) five buffers.
const PARAMS_FIRST: u64 = 1 << 12;
const PARAMS_MAX: u64 = 1 << 16;

/// The parameters of a recorder's dispatches, packed at the device's uniform
/// offset alignment into pooled uniform buffers. Each buffer is written once,
/// when full or at the submit: a queue write lands before the submit that
/// follows it, so every slot holds its data when the dispatches run. The
/// buffers go back to the pool once submitted (a later queue write into them is
/// ordered after this submit).
#[derive(Default)]
struct Params {
    full: Vec<Loan<wgpu::Buffer>>,
    /// The buffer being filled and its contents so far.
    current: Option<(Loan<wgpu::Buffer>, Vec<u8>)>,
}

impl Params {
    /// A slot holding `bytes` at a multiple of `align`: its buffer and offset.
    fn slot(&mut self, ctx: &crate::Context, align: u64, bytes: &[u8]) -> (wgpu::Buffer, u64) {
        let len = bytes.len() as u64;
        let next = |data: &[u8]| (data.len() as u64).div_ceil(align) * align;
        if let Some((buffer, data)) = &self.current {
            if next(data) + len > buffer.get().size() {
                self.flush(ctx);
            }
        }
        let size = self
            .full
            .last()
            .map_or(PARAMS_FIRST, |b| (2 * b.get().size()).min(PARAMS_MAX))
            .max(len);
        let (buffer, data) = self.current.get_or_insert_with(|| {
            let buffer = Loan::buffer(
                ctx,
                size,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                "params",
            );
            (buffer, Vec::with_capacity(size as usize))
        });
        let offset = next(data);
        data.resize(offset as usize, 0);
        data.extend_from_slice(bytes);
        (buffer.get().clone(), offset)
    }

    /// Writes the buffer being filled.
    fn flush(&mut self, ctx: &crate::Context) {
        if let Some((buffer, mut data)) = self.current.take() {
            // Queue writes take a multiple of 4 bytes.
            data.resize(data.len().div_ceil(4) * 4, 0);
            ctx.queue().write_buffer(buffer.get(), 0, &data);
            self.full.push(buffer);
        }
    }
}

/// Dispatches whose timestamps one query set holds (two queries each; wgpu
/// allows 4096 queries per set).
const TIMED_PER_SET: usize = 2048;

impl Recorder {
    /// Starts recording on `ctx`; `label` names the command buffer in captures.
    pub fn new(ctx: &Context, label: &str) -> Self {
        let encoder = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Self {
            ctx: ctx.clone(),
            pass: None,
            encoder,
            params: Params::default(),
            textures: Vec::new(),
            spare_textures: Vec::new(),
            held: Vec::new(),
            held_keys: Default::default(),
            bind_groups: Default::default(),
            dispatches: 0,
            label: label.to_string(),
            phase: "other",
            timed: Vec::new(),
            query_sets: Vec::new(),
            #[cfg(not(target_arch = "wasm32"))]
            started: std::time::Instant::now(),
        }
    }

    /// Sets the phase that the dispatches recorded from now on count under when
    /// profiling (see [`crate::gpu::profile`]); returns the previous one, to set
    /// back when the part is done. Under "other" (the default) a dispatch counts
    /// under its op's phase: loss, optimizer, embedding, attention, decoding.
    pub fn phase(&mut self, name: &'static str) -> &'static str {
        std::mem::replace(&mut self.phase, name)
    }

    /// The context this recorder submits to.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Number of compute dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Submits everything recorded, once. When profiling, the timings are added
    /// to the context's profile once the device has run the work: on native the
    /// submit waits for it; in a browser, whose page must not block, they land when
    /// the GPU is done.
    pub fn submit(mut self) -> wgpu::SubmissionIndex {
        self.pass = None;
        self.params.flush(&self.ctx);
        #[cfg(not(target_arch = "wasm32"))]
        let recording_ns = self.started.elapsed().as_nanos() as u64;
        #[cfg(target_arch = "wasm32")]
        let recording_ns = 0;
        self.ctx.count_submit(self.dispatches, recording_ns);
        if !self.ctx.profiling() {
            return self.ctx.queue().submit([self.encoder.finish()]);
        }
        if self.timed.is_empty() {
            #[cfg(not(target_arch = "wasm32"))]
            {
                let start = std::time::Instant::now();
                let index = self.ctx.queue().submit([self.encoder.finish()]);
                if self.ctx.poll().is_ok() && self.dispatches > 0 {
                    let ns = start.elapsed().as_nanos() as u64;
                    self.ctx.totals().add_host(&self.label, ns);
                }
                return index;
            }
            // No host clock to time a submit by in a page.
            #[cfg(target_arch = "wasm32")]
            return self.ctx.queue().submit([self.encoder.finish()]);
        }
        let n = self.timed.len();
        let bytes = (2 * n * 8) as u64;
        let device = self.ctx.device().clone();
        let resolved = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        for (i, set) in self.query_sets.iter().enumerate() {
            let count = (n - i * TIMED_PER_SET).min(TIMED_PER_SET) as u32;
            let offset = (i * TIMED_PER_SET * 16) as u64;
            self.encoder
                .resolve_query_set(set, 0..2 * count, &resolved, offset);
        }
        self.encoder
            .copy_buffer_to_buffer(&resolved, 0, &readback, 0, bytes);
        let command_buffer = self.encoder.finish();
        #[cfg(not(target_arch = "wasm32"))]
        let start = std::time::Instant::now();
        // The recording's span on the host, for the trace (a page has no clock
        // to give it).
        #[cfg(not(target_arch = "wasm32"))]
        let host = Some((
            self.label.clone(),
            self.ctx.since_open_ns(self.started),
            self.ctx.since_open_ns(start),
        ));
        #[cfg(target_arch = "wasm32")]
        let host: Option<(String, u64, u64)> = None;
        let index = self.ctx.queue().submit([command_buffer]);
        let (ctx, timed, mapped) = (
            self.ctx.clone(),
            std::mem::take(&mut self.timed),
            readback.clone(),
        );
        readback
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                if result.is_err() {
                    return;
                }
                if let Ok(view) = mapped.slice(..).get_mapped_range() {
                    let ticks: &[u64] = bytemuck::cast_slice(&view);
                    let period = f64::from(ctx.queue().get_timestamp_period());
                    let spans: Vec<Timed> = timed
                        .iter()
                        .zip(ticks.chunks_exact(2))
                        .map(|((label, phase), t)| {
                            let end = t[1].max(t[0]);
                            (
                                label.as_str(),
                                *phase,
                                (t[0] as f64 * period) as u64,
                                (end as f64 * period) as u64,
                            )
                        })
                        .collect();
                    let mut totals = ctx.totals();
                    for &(label, phase, start, end) in &spans {
                        totals.add(label, phase, end - start);
                    }
                    let host = host.as_ref().map(|(l, a, b)| (l.as_str(), *a, *b));
                    totals.add_trace(host, &spans);
                }
            });
        #[cfg(not(target_arch = "wasm32"))]
        if self.ctx.poll().is_ok() {
            self.ctx
                .totals()
                .add_wall(start.elapsed().as_nanos() as u64);
        }
        index
    }

    /// Submits everything recorded and reads `t` back, its copy recorded at the
    /// end of this submit: one submit and one wait, where `submit` and then
    /// [`Tensor::to_vec`] take two (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn submit_read(self, t: &Tensor) -> Result<Vec<f32>> {
        pollster::block_on(self.submit_read_async(t))
    }

    /// [`submit_read`](Self::submit_read), awaited (in a page, without blocking).
    pub async fn submit_read_async(self, t: &Tensor) -> Result<Vec<f32>> {
        t.to_vec_in(self).await
    }

    /// [`submit_read`](Self::submit_read) of a u32 tensor, exactly (blocking;
    /// native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn submit_read_u32(self, t: &Tensor) -> Result<Vec<u32>> {
        pollster::block_on(self.submit_read_u32_async(t))
    }

    /// [`submit_read_u32`](Self::submit_read_u32), awaited.
    pub async fn submit_read_u32_async(self, t: &Tensor) -> Result<Vec<u32>> {
        t.to_vec_u32_in(self).await
    }

    /// The underlying encoder, for interop with the application's own GPU work.
    pub fn encoder_mut(&mut self) -> &mut wgpu::CommandEncoder {
        self.encoder()
    }

    /// The encoder, after ending the shared compute pass if one is open.
    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        &mut self.encoder
    }

    /// Copies all of `src` into `dst` (same shape and dtype).
    pub fn copy(&mut self, dst: &Tensor, src: &Tensor) -> Result<()> {
        self.check_same_device("copy", &[dst, src])?;
        if dst.shape() != src.shape() || dst.dtype() != src.dtype() {
            return Err(Error::ShapeMismatch {
                op: "copy",
                what: "dst",
                expected: format!("{:?} {:?} like src", src.shape(), src.dtype()),
                got: dst.shape().to_vec(),
            });
        }
        let bytes = src.padded_bytes();
        self.hold(&[dst, src]);
        self.encoder()
            .copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, bytes);
        Ok(())
    }

    /// Copies `len` elements of `src` from `src_offset` into `dst` at `dst_offset`
    /// (same dtype, 4-byte elements).
    pub fn copy_range(
        &mut self,
        dst: &Tensor,
        dst_offset: usize,
        src: &Tensor,
        src_offset: usize,
        len: usize,
    ) -> Result<()> {
        self.check_same_device("copy", &[dst, src])?;
        word_range("copy", "src", src, src_offset, len)?;
        word_range("copy", "dst", dst, dst_offset, len)?;
        if dst.dtype() != src.dtype() {
            return Err(Error::DType {
                op: "copy",
                what: "dst",
                expected: src.dtype(),
                got: dst.dtype(),
            });
        }
        self.hold(&[dst, src]);
        self.encoder().copy_buffer_to_buffer(
            src.buffer(),
            4 * src_offset as u64,
            dst.buffer(),
            4 * dst_offset as u64,
            4 * len as u64,
        );
        Ok(())
    }

    /// Sets `len` elements of `t` from `offset` to zero (4-byte elements).
    pub fn zero_range(&mut self, t: &Tensor, offset: usize, len: usize) -> Result<()> {
        self.check_same_device("zero", &[t])?;
        word_range("zero", "tensor", t, offset, len)?;
        self.hold(&[t]);
        self.encoder()
            .clear_buffer(t.buffer(), 4 * offset as u64, Some(4 * len as u64));
        Ok(())
    }

    /// Sets every element of `t` to zero.
    pub fn zero(&mut self, t: &Tensor) -> Result<()> {
        self.check_same_device("zero", &[t])?;
        let bytes = t.padded_bytes();
        self.hold(&[t]);
        self.encoder().clear_buffer(t.buffer(), 0, Some(bytes));
        Ok(())
    }

    /// Keeps `tensors` (their buffers) out of the pool until this recorder is
    /// submitted. Every op and [`Kernel`](crate::Kernel) launch holds its
    /// operands; commands recorded through [`encoder_mut`](Self::encoder_mut)
    /// hold theirs here, or a tensor dropped before the submit may go back to
    /// the pool and be written (by its next owner's upload) before they run.
    pub fn hold(&mut self, tensors: &[&Tensor]) {
        for t in tensors {
            if self.held_keys.insert(t.storage_key()) {
                self.held.push((*t).clone());
            }
        }
    }

    /// A tensor whose contents are unspecified, for an output that the work
    /// recorded next overwrites: [`Tensor::empty`], or the buffer of a tensor this
    /// recorder holds and nobody else refers to any more (no larger than twice
    /// what is needed). Such a buffer cannot go back to the pool before the
    /// submit — a queue write by its next owner would land before the recorded
    /// work that still reads it — but the kernels recorded after that work may
    /// write it: they run after it. Never write it from the host.
    pub fn empty(&mut self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = Tensor::checked_bytes(&self.ctx, shape, dtype)?;
        let limit = self.ctx.limits().max_storage_buffer_binding_size;
        let best = (0..self.held.len())
            .filter(|&i| {
                let t = &self.held[i];
                let size = t.buffer().size();
                t.unshared()
                    && size >= bytes
                    && size <= 2 * bytes.max(256)
                    && size <= limit.max(bytes)
            })
            .min_by_key(|&i| self.held[i].buffer().size());
        match best {
            // The recorder keeps holding it: it goes back to the pool at the submit
            // even if the new owner drops it sooner.
            Some(i) => Ok(self.held[i].clone().relabel(shape, dtype)),
            None => Tensor::empty(&self.ctx, shape, dtype),
        }
    }

    pub(crate) fn check_same_device(&self, op: &'static str, tensors: &[&Tensor]) -> Result<()> {
        if tensors.iter().all(|t| t.context().id() == self.ctx.id()) {
            Ok(())
        } else {
            Err(Error::DeviceMismatch { op })
        }
    }

    /// A scratch rgba32float array texture of at least `size`, held until this
    /// recorder is submitted: the smallest spare one of this submit that fits,
    /// else a new one. Users index it within their own sizes.
    pub(crate) fn scratch_texture(&mut self, size: wgpu::Extent3d) -> wgpu::Texture {
        let fits = |t: &wgpu::Texture| {
            let s = t.size();
            s.width >= size.width
                && s.height >= size.height
                && s.depth_or_array_layers >= size.depth_or_array_layers
        };
        let volume = |t: &wgpu::Texture| {
            let s = t.size();
            u64::from(s.width) * u64::from(s.height) * u64::from(s.depth_or_array_layers)
        };
        let best = (0..self.spare_textures.len())
            .filter(|&i| fits(&self.spare_textures[i]))
            .min_by_key(|&i| volume(&self.spare_textures[i]));
        if let Some(i) = best {
            return self.spare_textures.swap_remove(i);
        }
        let t = Loan::texture(&self.ctx, size);
        let texture = t.get().clone();
        self.textures.push(t);
        texture
    }

    /// Returns a texture of [`scratch_texture`](Self::scratch_texture) whose
    /// last reader has been recorded, for later packings of this submit.
    pub(crate) fn spare_texture(&mut self, texture: &wgpu::Texture) {
        self.spare_textures.push(texture.clone());
    }

    /// [`dispatch_tensors`](Self::dispatch_tensors) of `entry` of `shader` (its
    /// storage aliases in `f16` made f16), labelled `shader::entry`.
    pub(crate) fn dispatch_entry(
        &mut self,
        shader: &Shader,
        entry: &'static str,
        f16: &[&'static str],
        params: &[u8],
        tensors: &[(u32, &Tensor)],
        groups: [u32; 3],
    ) -> Result<()> {
        let pipeline = self.ctx.pipeline_f16(shader, entry, &[], f16);
        let label = format!("{}::{entry}", shader.name);
        self.dispatch_tensors(&label, &pipeline, params, tensors, groups)
    }

    /// [`dispatch`](Self::dispatch) with whole tensors at the given bindings, held
    /// until the submit.
    pub(crate) fn dispatch_tensors(
        &mut self,
        label: &str,
        pipeline: &Pipeline,
        params: &[u8],
        tensors: &[(u32, &Tensor)],
        groups: [u32; 3],
    ) -> Result<()> {
        self.hold(&tensors.iter().map(|&(_, t)| t).collect::<Vec<_>>());
        let resources: Vec<_> = tensors
            .iter()
            .map(|&(i, t)| (i, t.buffer().as_entire_binding()))
            .collect();
        self.dispatch(label, pipeline, params, &resources, groups)
    }

    /// Records one dispatch of `pipeline` with `params` as the uniform at binding 0
    /// and `resources` at the given bindings, in a compute pass labelled `label`.
    pub(crate) fn dispatch(
        &mut self,
        label: &str,
        pipeline: &Pipeline,
        params: &[u8],
        resources: &[(u32, wgpu::BindingResource)],
        groups: [u32; 3],
    ) -> Result<()> {
        let limits = self.ctx.limits();
        let max = limits.max_compute_workgroups_per_dimension;
        if let Some(&g) = groups.iter().find(|&&g| g > max) {
            return Err(Error::LimitExceeded {
                op: "dispatch",
                what: "workgroups in one dimension",
                value: g.into(),
                limit: max.into(),
            });
        }
        // A storage binding past the device's limits is a validation error inside
        // wgpu: refuse it here, before anything is recorded. Every buffer bound
        // here is a storage buffer (the uniform is binding 0).
        let buffers = resources
            .iter()
            .filter(|(_, r)| matches!(r, wgpu::BindingResource::Buffer(_)))
            .count() as u64;
        if buffers > limits.max_storage_buffers_per_shader_stage.into() {
            return Err(Error::LimitExceeded {
                op: "dispatch",
                what: "storage buffers bound to one kernel (max_storage_buffers_per_shader_stage)",
                value: buffers,
                limit: limits.max_storage_buffers_per_shader_stage.into(),
            });
        }
        let limit = limits.max_storage_buffer_binding_size;
        for (_, resource) in resources {
            if let wgpu::BindingResource::Buffer(b) = resource {
                let bytes = b.size.map_or(b.buffer.size() - b.offset, |s| s.get());
                if bytes > limit {
                    return Err(Error::LimitExceeded {
                        op: "dispatch",
                        what: "bytes of a tensor bound to one kernel (max_storage_buffer_binding_size)",
                        value: bytes,
                        limit,
                    });
                }
            }
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let bindings: Vec<u32> = resources.iter().map(|&(b, _)| b).collect();
        let Some(compiled) = pipeline.compiled(&self.ctx, &bindings) else {
            return Err(Error::InvalidArgument {
                op: "dispatch",
                what: "a kernel's bindings",
                got: format!("{label} {bindings:?}"),
                expected: "bindings the shader declares",
            });
        };
        let align = u64::from(limits.min_uniform_buffer_offset_alignment).max(16);
        let (uniform, offset) = self.params.slot(&self.ctx, align, params);
        let key = BindKey {
            layout: compiled.layout.clone(),
            uniform: (uniform.clone(), params.len() as u64),
            resources: resources
                .iter()
                .map(|(binding, r)| (*binding, Resource::of(r)))
                .collect(),
        };
        let bind_group =
            match self.bind_groups.get(&key) {
                Some(g) => g.clone(),
                None => {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &uniform,
                            offset: 0,
                            size: wgpu::BufferSize::new(params.len() as u64),
                        }),
                    }];
                    entries.extend(resources.iter().map(|(binding, resource)| {
                        wgpu::BindGroupEntry {
                            binding: *binding,
                            resource: resource.clone(),
                        }
                    }));
                    let g = self
                        .ctx
                        .device()
                        .create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some(label),
                            layout: &compiled.layout,
                            entries: &entries,
                        });
                    self.bind_groups.insert(key, g.clone());
                    g
                }
            };
        // Offsets past u32 never occur: a uniform buffer here is at most PARAMS_MAX.
        let offsets = [offset as u32];
        let timestamps = self.timestamps(label);
        if let Some((set, i)) = timestamps {
            // Timed: a pass of its own, whose start and end the timestamps mark.
            let mut pass = self
                .encoder()
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(label),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &set,
                        beginning_of_pass_write_index: Some(2 * i),
                        end_of_pass_write_index: Some(2 * i + 1),
                    }),
                });
            pass.set_pipeline(&compiled.pipeline);
            pass.set_bind_group(0, &bind_group, &offsets);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        } else {
            let encoder = &mut self.encoder;
            let pass = self.pass.get_or_insert_with(|| {
                encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("dispatches"),
                        timestamp_writes: None,
                    })
                    .forget_lifetime()
            });
            pass.set_pipeline(&compiled.pipeline);
            pass.set_bind_group(0, &bind_group, &offsets);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.dispatches += 1;
        Ok(())
    }
}

impl Recorder {
    /// When profiling with timestamps: the query set and slot for the next
    /// dispatch, which is noted under `label` and the current phase.
    fn timestamps(&mut self, label: &str) -> Option<(wgpu::QuerySet, u32)> {
        if !self.ctx.profiling()
            || !self
                .ctx
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return None;
        }
        let i = self.timed.len();
        if i.is_multiple_of(TIMED_PER_SET) {
            let set = self
                .ctx
                .device()
                .create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: (2 * TIMED_PER_SET) as u32,
                });
            self.query_sets.push(set);
        }
        let phase = match self.phase {
            "other" => crate::gpu::profile::phase_of(label),
            named => named,
        };
        self.timed.push((label.to_string(), phase));
        let set = self.query_sets.last()?.clone();
        Some((set, (i % TIMED_PER_SET) as u32))
    }
}

/// Checks that `offset..offset + len` lies inside `t` and that its elements are
/// 4 bytes wide, as buffer copies and clears need.
fn word_range(
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    offset: usize,
    len: usize,
) -> Result<()> {
    if t.dtype().size() != 4 {
        return Err(Error::DType {
            op,
            what,
            expected: crate::DType::F32,
            got: t.dtype(),
        });
    }
    element_range(op, what, t, offset, len)
}

/// Checks that the elements `offset..offset + len` lie inside `t`.
pub(crate) fn element_range(
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    offset: usize,
    len: usize,
) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > t.numel()) {
        return Err(Error::ViewOutOfBounds {
            op,
            what,
            last: offset.saturating_add(len),
            len: t.numel(),
        });
    }
    Ok(())
}
