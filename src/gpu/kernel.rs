//! Your own WGSL compute kernel, run through the library's machinery: compiled
//! once per device in the context's pipeline cache, its bindings read from the
//! shader (by naga, as the library's kernels are), its operands held until the
//! submit, its dispatches timed by the profiler under `name::entry`.
//!
//! The shader follows the library's convention: group 0 only; binding 0, when
//! present, is the parameters' `var<uniform>` (a struct that a
//! `bytemuck::Pod` mirror fills); tensors are `var<storage, read>` or
//! `var<storage, read_write>` arrays from binding 1 on. A binding declared
//! `array<x_t>` with `alias x_t = f32;` at a line's start takes f32 or f16
//! tensors (the f16 variant is compiled where one is bound, as for the
//! library's kernels); `array<f32>` takes f32, `array<u32>`, `array<i32>` and
//! their atomics take u32 tensors. Each tensor is bound at exactly its own
//! bytes, so `arrayLength` counts its elements (rounded up to whole 4-byte words
//! for f16).
//!
//! ```no_run
//! # fn main() -> rnn_wgpu::Result<()> {
//! use rnn_wgpu::{Context, DType, Kernel, Recorder, Tensor};
//! let ctx = Context::new()?;
//! let double = Kernel::new("double", "
//!     @group(0) @binding(1) var<storage, read> x: array<f32>;
//!     @group(0) @binding(2) var<storage, read_write> y: array<f32>;
//!     @compute @workgroup_size(64)
//!     fn forward(@builtin(global_invocation_id) id: vec3<u32>) {
//!         if (id.x < arrayLength(&x)) { y[id.x] = 2.0 * x[id.x]; }
//!     }")?;
//! let x = Tensor::from_slice(&ctx, &[3], &[1.0, 2.0, 3.0])?;
//! let y = Tensor::empty(&ctx, &[3], DType::F32)?;
//! let mut rec = Recorder::new(&ctx, "double");
//! double.launch("forward").bind("x", &x).bind("y", &y).cover([3, 1, 1]).record(&mut rec)?;
//! assert_eq!(rec.submit_read(&y)?, [2.0, 4.0, 6.0]);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::error::{Error, KernelProblem, Result};
use crate::gpu::pipeline::{Bindings, Source, SourceId};
use crate::gpu::reflect::{self, Element, Reflection};
use crate::gpu::Recorder;
use crate::tensor::{DType, Tensor};

/// A user's WGSL compute shader, parsed and validated. See the module docs.
/// Cheap to clone; not tied to a device (each context compiles it at its
/// first launch there).
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    source: String,
    /// The pipeline cache's key: a hash of the name and the source.
    id: u64,
    reflection: Reflection,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.inner.name)
            .field("entry_points", &self.entry_points())
            .finish()
    }
}

impl Kernel {
    /// Parses and validates `wgsl` (naga's WGSL front end and validator, the
    /// compiler wgpu runs natively). `name` labels its dispatches (`name::entry`
    /// in the profile and the trace) and its errors. A WGSL error, a binding the
    /// library cannot bind (see the module docs) or a shader without a compute
    /// entry point is [`Error::Shader`] with the line and column.
    pub fn new(name: &str, wgsl: &str) -> Result<Self> {
        let reflection = reflect::reflect(name, wgsl)?;
        if reflection.entries.is_empty() {
            return Err(Error::Shader {
                kernel: name.to_string(),
                line: 0,
                column: 0,
                message: "no @compute entry point".into(),
                text: String::new(),
            });
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (name, wgsl).hash(&mut hasher);
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                source: wgsl.to_string(),
                id: hasher.finish(),
                reflection,
            }),
        })
    }

    /// The name given to [`new`](Self::new).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The compute entry points, in the shader's order.
    pub fn entry_points(&self) -> Vec<&str> {
        let r = &self.inner.reflection;
        r.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// The `@workgroup_size` of `entry`, if it is an entry point.
    pub fn workgroup_size(&self, entry: &str) -> Option<[u32; 3]> {
        self.entry(entry).map(|e| e.workgroup_size)
    }

    /// Bytes of the parameters' struct at binding 0, if the shader declares one.
    pub fn params_size(&self) -> Option<u32> {
        self.inner.reflection.params
    }

    fn entry(&self, entry: &str) -> Option<&reflect::EntryPoint> {
        let r = &self.inner.reflection;
        r.entries.iter().find(|e| e.name == entry)
    }

    /// Starts a launch of `entry`: bind its tensors, give its parameters and
    /// workgroup count, then [`record`](Launch::record) it.
    pub fn launch<'a>(&'a self, entry: &'a str) -> Launch<'a> {
        Launch {
            kernel: self,
            entry,
            params: None,
            bound: Vec::new(),
            groups: None,
        }
    }

    fn problem(&self, problem: KernelProblem) -> Error {
        Error::Kernel {
            kernel: self.inner.name.clone(),
            problem,
        }
    }
}

/// How many workgroups a launch runs.
#[derive(Clone, Copy, Debug)]
enum Groups {
    Exact([u32; 3]),
    /// Enough workgroups of the entry point's size for these invocations.
    Cover([usize; 3]),
}

/// One dispatch of a [`Kernel`]'s entry point, being described; nothing is
/// checked or recorded until [`record`](Self::record).
#[must_use = "a launch does nothing until it is recorded"]
pub struct Launch<'a> {
    kernel: &'a Kernel,
    entry: &'a str,
    params: Option<Vec<u8>>,
    bound: Vec<(&'a str, &'a Tensor)>,
    groups: Option<Groups>,
}

/// Bytes bound as the parameters of a kernel that declares none (binding 0 of
/// every layout is the parameters' uniform).
const NO_PARAMS: [u8; 16] = [0; 16];

impl<'a> Launch<'a> {
    /// The parameters: a `#[repr(C)]` mirror of the shader's uniform struct at
    /// binding 0, which must have its size exactly.
    pub fn params<P: bytemuck::Pod>(mut self, params: &P) -> Self {
        self.params = Some(bytemuck::bytes_of(params).to_vec());
        self
    }

    /// Binds `tensor` to the storage binding the shader names `name`.
    pub fn bind(mut self, name: &'a str, tensor: &'a Tensor) -> Self {
        self.bound.push((name, tensor));
        self
    }

    /// Runs `groups` workgroups (x, y, z).
    pub fn groups(mut self, groups: [u32; 3]) -> Self {
        self.groups = Some(Groups::Exact(groups));
        self
    }

    /// Runs enough workgroups of the entry point's `@workgroup_size` for
    /// `invocations` (x, y, z): `invocations[d].div_ceil(size[d])` along each;
    /// the shader guards the ones past the end.
    pub fn cover(mut self, invocations: [usize; 3]) -> Self {
        self.groups = Some(Groups::Cover(invocations));
        self
    }

    /// Checks the launch against the shader and the device and records its
    /// dispatch into `rec`, holding every bound tensor until the submit. Every
    /// check comes first: on an error nothing is recorded or held.
    pub fn record(self, rec: &mut Recorder) -> Result<()> {
        let kernel = self.kernel;
        let reflection = &kernel.inner.reflection;
        let Some(entry) = kernel.entry(self.entry) else {
            return Err(kernel.problem(KernelProblem::UnknownEntry {
                entry: self.entry.to_string(),
                known: kernel
                    .entry_points()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            }));
        };
        // Each bound tensor at its binding, in binding order.
        let mut bound: Vec<(u32, &reflect::Binding, &Tensor)> = Vec::new();
        for (i, &(name, tensor)) in self.bound.iter().enumerate() {
            let Some((&number, binding)) = reflection.bindings.iter().find(|(_, b)| b.name == name)
            else {
                return Err(kernel.problem(KernelProblem::UndeclaredBinding {
                    name: name.to_string(),
                    declared: reflection
                        .bindings
                        .values()
                        .map(|b| b.name.clone())
                        .collect(),
                }));
            };
            if self.bound[..i].iter().any(|&(n, _)| n == name) {
                return Err(kernel.problem(KernelProblem::BoundTwice {
                    name: name.to_string(),
                }));
            }
            // A tensor bound for another entry point of the same shader is let
            // be: the layout holds exactly the bindings this one uses.
            if entry.uses.contains(&number) {
                bound.push((number, binding, tensor));
            }
        }
        bound.sort_by_key(|&(number, _, _)| number);
        if let Some(missing) = entry
            .uses
            .iter()
            .filter(|&&n| n != 0)
            .find(|&&n| !bound.iter().any(|&(b, _, _)| b == n))
        {
            return Err(kernel.problem(KernelProblem::UnboundBinding {
                entry: entry.name.clone(),
                name: reflection.bindings[missing].name.clone(),
            }));
        }
        let tensors: Vec<&Tensor> = bound.iter().map(|&(_, _, t)| t).collect();
        rec.check_same_device("kernel", &tensors)?;
        let mut f16: Vec<Cow<'static, str>> = Vec::new();
        for &(_, binding, tensor) in &bound {
            if tensor.numel() == 0 {
                return Err(kernel.problem(KernelProblem::EmptyTensor {
                    name: binding.name.clone(),
                }));
            }
            let fits = match (&binding.element, tensor.dtype()) {
                (Element::F32, DType::F32) | (Element::F16, DType::F16) => true,
                (Element::Word, DType::U32) | (Element::Other, _) => true,
                (Element::Alias(_), DType::F32) => true,
                (Element::Alias(alias), DType::F16) => {
                    if !f16.iter().any(|a| a == alias) {
                        f16.push(Cow::Owned(alias.clone()));
                    }
                    true
                }
                _ => false,
            };
            if !fits {
                return Err(kernel.problem(KernelProblem::ElementType {
                    name: binding.name.clone(),
                    declared: binding.element.to_string(),
                    got: tensor.dtype(),
                }));
            }
        }
        f16.sort();
        for (i, &(_, a, x)) in bound.iter().enumerate() {
            for &(_, b, y) in &bound[i + 1..] {
                if (a.writable || b.writable) && x.buffer() == y.buffer() {
                    let (w, o) = if a.writable { (a, b) } else { (b, a) };
                    return Err(kernel.problem(KernelProblem::Aliasing {
                        writable: w.name.clone(),
                        other: o.name.clone(),
                    }));
                }
            }
        }
        let expected = reflection.params.unwrap_or(0);
        let params = match (&self.params, reflection.params) {
            (None, None) => &NO_PARAMS[..],
            (Some(p), Some(size)) if p.len() == size as usize => p.as_slice(),
            (given, _) => {
                return Err(kernel.problem(KernelProblem::ParamsSize {
                    expected,
                    got: given.as_ref().map_or(0, Vec::len),
                }))
            }
        };
        let ctx = rec.context().clone();
        if (reflection.uses_f16 || !f16.is_empty()) && !ctx.has_f16() {
            return Err(Error::FeatureMissing {
                adapter: ctx.adapter_info().name.clone(),
                feature: "SHADER_F16",
            });
        }
        let limits = ctx.limits();
        let size = entry.workgroup_size;
        let per_dim = [
            limits.max_compute_workgroup_size_x,
            limits.max_compute_workgroup_size_y,
            limits.max_compute_workgroup_size_z,
        ];
        let checks = [
            (
                "workgroup size x (max_compute_workgroup_size_x)",
                u64::from(size[0]),
                u64::from(per_dim[0]),
            ),
            (
                "workgroup size y (max_compute_workgroup_size_y)",
                u64::from(size[1]),
                u64::from(per_dim[1]),
            ),
            (
                "workgroup size z (max_compute_workgroup_size_z)",
                u64::from(size[2]),
                u64::from(per_dim[2]),
            ),
            (
                "invocations per workgroup (max_compute_invocations_per_workgroup)",
                size.iter().map(|&s| u64::from(s)).product(),
                u64::from(limits.max_compute_invocations_per_workgroup),
            ),
            (
                "bytes of workgroup memory (max_compute_workgroup_storage_size)",
                entry.workgroup_bytes,
                u64::from(limits.max_compute_workgroup_storage_size),
            ),
            (
                "storage buffers bound to one kernel (max_storage_buffers_per_shader_stage)",
                bound.len() as u64,
                u64::from(limits.max_storage_buffers_per_shader_stage),
            ),
        ];
        for (what, value, limit) in checks {
            if value > limit {
                return Err(Error::LimitExceeded {
                    op: "kernel",
                    what,
                    value,
                    limit,
                });
            }
        }
        for &(_, _, t) in &bound {
            if t.padded_bytes() > limits.max_storage_buffer_binding_size {
                return Err(Error::LimitExceeded {
                    op: "kernel",
                    what: "bytes of a tensor bound to one kernel (max_storage_buffer_binding_size)",
                    value: t.padded_bytes(),
                    limit: limits.max_storage_buffer_binding_size,
                });
            }
        }
        let groups = match self.groups {
            None => return Err(kernel.problem(KernelProblem::NoGroups)),
            Some(Groups::Exact(g)) => g.map(u64::from),
            Some(Groups::Cover(n)) => {
                [0, 1, 2].map(|d| (n[d] as u64).div_ceil(u64::from(size[d]).max(1)))
            }
        };
        let max = u64::from(limits.max_compute_workgroups_per_dimension);
        if let Some(&g) = groups.iter().find(|&&g| g > max) {
            return Err(Error::LimitExceeded {
                op: "kernel",
                what: "workgroups in one dimension (max_compute_workgroups_per_dimension)",
                value: g,
                limit: max,
            });
        }
        let source = Source {
            id: SourceId::User(kernel.inner.id),
            name: &kernel.inner.name,
            text: &kernel.inner.source,
            bindings: Bindings::User(&reflection.bindings),
        };
        let pipeline = ctx.kernel_pipeline(source, &entry.name, f16);
        rec.hold(&tensors);
        let resources: Vec<(u32, wgpu::BindingResource)> = bound
            .iter()
            .map(|&(number, _, t)| {
                let binding = wgpu::BufferBinding {
                    buffer: t.buffer(),
                    offset: 0,
                    size: wgpu::BufferSize::new(t.padded_bytes()),
                };
                (number, wgpu::BindingResource::Buffer(binding))
            })
            .collect();
        let label = format!("{}::{}", kernel.inner.name, entry.name);
        // Checked against the limit above, so each fits a u32.
        let groups = groups.map(|g| g as u32);
        rec.dispatch(&label, &pipeline, params, &resources, groups)
    }
}
