//! A recorder collects the dispatches of one unit of work (a training step, a
//! forward pass) into one command encoder, submitted once. Ops take `&mut Recorder`
//! and only record; nothing runs until [`Recorder::submit`].

use crate::error::{Error, Result};
use crate::gpu::pipeline::Pipeline;
use crate::gpu::pool::Loan;
use crate::gpu::Context;
use crate::tensor::Tensor;

/// Records GPU work for one submit. See the module docs.
pub struct Recorder {
    ctx: Context,
    encoder: wgpu::CommandEncoder,
    /// Uniform buffers written for this submit; back to the pool once submitted
    /// (queue writes for a later submit are ordered after this one).
    uniforms: Vec<Loan<wgpu::Buffer>>,
    /// Scratch textures of this submit (packed GEMM operands); back to the pool
    /// once submitted, like the uniforms.
    textures: Vec<Loan<wgpu::Texture>>,
    /// Tensors the recorded commands use. A tensor the caller drops before the
    /// submit must not go back to the pool yet: a queue write into its buffer by
    /// the next owner would land before these commands run.
    held: Vec<Tensor>,
    dispatches: usize,
}

impl Recorder {
    /// Starts recording on `ctx`; `label` names the command buffer in captures.
    pub fn new(ctx: &Context, label: &str) -> Self {
        let encoder = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Self {
            ctx: ctx.clone(),
            encoder,
            uniforms: Vec::new(),
            textures: Vec::new(),
            held: Vec::new(),
            dispatches: 0,
        }
    }

    /// The context this recorder submits to.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Number of compute dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Submits everything recorded, once.
    pub fn submit(self) -> wgpu::SubmissionIndex {
        self.ctx.queue().submit([self.encoder.finish()])
    }

    /// The underlying encoder, for interop with the application's own GPU work.
    pub fn encoder_mut(&mut self) -> &mut wgpu::CommandEncoder {
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
        self.encoder
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
        self.encoder.copy_buffer_to_buffer(
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
        self.encoder
            .clear_buffer(t.buffer(), 4 * offset as u64, Some(4 * len as u64));
        Ok(())
    }

    /// Sets every element of `t` to zero.
    pub fn zero(&mut self, t: &Tensor) -> Result<()> {
        self.check_same_device("zero", &[t])?;
        let bytes = t.padded_bytes();
        self.hold(&[t]);
        self.encoder.clear_buffer(t.buffer(), 0, Some(bytes));
        Ok(())
    }

    /// Keeps `tensors` (their buffers) out of the pool until this recorder is submitted.
    pub(crate) fn hold(&mut self, tensors: &[&Tensor]) {
        self.held.extend(tensors.iter().map(|&t| t.clone()));
    }

    pub(crate) fn check_same_device(&self, op: &'static str, tensors: &[&Tensor]) -> Result<()> {
        if tensors.iter().all(|t| t.context().id() == self.ctx.id()) {
            Ok(())
        } else {
            Err(Error::DeviceMismatch { op })
        }
    }

    /// A scratch rgba32float array texture, held until this recorder is submitted.
    pub(crate) fn scratch_texture(&mut self, size: wgpu::Extent3d) -> wgpu::Texture {
        let t = Loan::texture(&self.ctx, size);
        let texture = t.get().clone();
        self.textures.push(t);
        texture
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
        let max = self.ctx.limits().max_compute_workgroups_per_dimension;
        if let Some(&g) = groups.iter().find(|&&g| g > max) {
            return Err(Error::LimitExceeded {
                op: "dispatch",
                what: "workgroups in one dimension",
                value: g.into(),
                limit: max.into(),
            });
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let uniform = Loan::buffer(
            &self.ctx,
            params.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            "params",
        );
        self.ctx.queue().write_buffer(uniform.get(), 0, params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.get().as_entire_binding(),
        }];
        entries.extend(
            resources
                .iter()
                .map(|(binding, resource)| wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: resource.clone(),
                }),
        );
        let bind_group = self
            .ctx
            .device()
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &pipeline.layout,
                entries: &entries,
            });
        self.uniforms.push(uniform);
        let mut pass = self
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        drop(pass);
        self.dispatches += 1;
        Ok(())
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
