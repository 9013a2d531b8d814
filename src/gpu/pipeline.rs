//! Compute pipelines, compiled once per device and cached by (shader, entry point,
//! override constants, storage aliases made f16). Compiling is the slow part (tens
//! to hundreds of ms through a driver's JIT), so every op and every user kernel
//! asks this cache and never builds its own.
//!
//! Each pipeline has an explicit layout whose binding 0, the parameters, takes a
//! dynamic offset: the dispatches of a recorder share their uniform buffers, and
//! the dispatches of one kernel over the same tensors (the steps of a recurrence)
//! share one bind group. The other bindings are the ones the entry point uses,
//! known from its first dispatch (an entry point is always given exactly those),
//! each typed as the shader declares it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use crate::gpu::{reflect, Context};
use crate::shaders::Shader;

/// What the cache knows a shader by: a library shader by its name, a user's
/// kernel by a hash of its name and source (so that equal kernels share their
/// pipelines and different ones never do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SourceId {
    Library(&'static str),
    User(u64),
}

/// A shader to compile: its identity, name (for labels), WGSL and where its
/// bindings' types come from.
pub(crate) struct Source<'a> {
    pub(crate) id: SourceId,
    pub(crate) name: &'a str,
    pub(crate) text: &'a str,
    pub(crate) bindings: Bindings<'a>,
}

/// How a shader's bindings are known.
pub(crate) enum Bindings<'a> {
    /// A library shader's declarations, read from its text.
    Library(&'a Shader),
    /// A user's kernel, read by naga when it was created.
    User(&'a BTreeMap<u32, reflect::Binding>),
}

impl Bindings<'_> {
    fn types(&self) -> HashMap<u32, wgpu::BindingType> {
        match self {
            Self::Library(shader) => shader.bindings(),
            Self::User(bindings) => bindings.iter().map(|(&n, b)| (n, b.ty)).collect(),
        }
    }
}

impl<'a> From<&'a Shader> for Source<'a> {
    fn from(s: &'a Shader) -> Self {
        Self {
            id: SourceId::Library(s.name),
            name: s.name,
            text: s.source,
            bindings: Bindings::Library(s),
        }
    }
}

/// One entry point: compiled, with its bind group layout, at its first dispatch.
pub(crate) struct Pipeline {
    module: wgpu::ShaderModule,
    entry: Cow<'static, str>,
    constants: Vec<(Cow<'static, str>, f64)>,
    label: String,
    /// The module's bindings as declared, by number.
    declared: Arc<HashMap<u32, wgpu::BindingType>>,
    compiled: OnceLock<Compiled>,
}

pub(crate) struct Compiled {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

impl Pipeline {
    /// The compiled pipeline for a dispatch that binds the parameters at 0 and
    /// `bindings`, compiled on the first call (counted in `ctx`'s
    /// [`CompileStats`](crate::gpu::CompileStats)). `None` when one of
    /// `bindings` is not declared by the shader.
    pub(crate) fn compiled(&self, ctx: &Context, bindings: &[u32]) -> Option<&Compiled> {
        if let Some(c) = self.compiled.get() {
            return Some(c);
        }
        let device = ctx.device();
        #[cfg(not(target_arch = "wasm32"))]
        let started = std::time::Instant::now();
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        for &binding in bindings {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: *self.declared.get(&binding)?,
                count: None,
            });
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&self.label),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&self.label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let constants: Vec<(&str, f64)> = self
            .constants
            .iter()
            .map(|(k, v)| (k.as_ref(), *v))
            .collect();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&self.label),
            layout: Some(&pipeline_layout),
            module: &self.module,
            entry_point: Some(&self.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: true,
            },
            cache: ctx.pipeline_cache(),
        });
        #[cfg(not(target_arch = "wasm32"))]
        ctx.note_compile(&self.label, started);
        #[cfg(target_arch = "wasm32")]
        ctx.note_compile(&self.label);
        Some(self.compiled.get_or_init(|| Compiled { pipeline, layout }))
    }
}

type Key = (
    SourceId,
    Cow<'static, str>,
    Vec<(Cow<'static, str>, u64)>,
    Vec<Cow<'static, str>>,
);

type Module = (wgpu::ShaderModule, Arc<HashMap<u32, wgpu::BindingType>>);

/// A module: its shader and the storage aliases made f16.
type ModuleKey = (SourceId, Vec<Cow<'static, str>>);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<ModuleKey, Module>>,
    pipelines: Mutex<HashMap<Key, Arc<Pipeline>>>,
}

impl PipelineCache {
    /// The pipeline for `entry` of `source` with the given override constants
    /// (name, bits of the f64 value) and the storage aliases in `f16` declared
    /// f16 (see [`Shader::source_f16`]).
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        source: Source,
        entry: Cow<'static, str>,
        constants: Vec<(Cow<'static, str>, u64)>,
        f16: Vec<Cow<'static, str>>,
    ) -> Arc<Pipeline> {
        let key: Key = (source.id, entry, constants, f16);
        // Pipelines are only ever inserted whole, so a lock poisoned by a panic
        // elsewhere still guards a consistent map.
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipelines.get(&key) {
            return p.clone();
        }
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let (module, declared) = modules
            .entry((source.id, key.3.clone()))
            .or_insert_with(|| {
                let names: Vec<&str> = key.3.iter().map(|a| a.as_ref()).collect();
                let text = crate::shaders::with_f16(source.text, &names);
                let declared = Arc::new(source.bindings.types());
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(source.name),
                    source: wgpu::ShaderSource::Wgsl(text),
                };
                let module = match source.id {
                    // SAFETY: the only check dropped is forced loop bounding, a guard
                    // against loops that never end. Every loop in shaders/ runs a count
                    // taken from its params, which the host sets from checked tensor
                    // shapes, so each loop ends. Bounds checks on memory stay on. Loop
                    // bounding costs several times the arithmetic of a small loop body
                    // on lavapipe.
                    SourceId::Library(_) => unsafe {
                        device.create_shader_module_trusted(
                            desc,
                            wgpu::ShaderRuntimeChecks {
                                force_loop_bounding: false,
                                ..wgpu::ShaderRuntimeChecks::checked()
                            },
                        )
                    },
                    // A user's loops are not ours to vouch for: every check stays.
                    SourceId::User(_) => device.create_shader_module(desc),
                };
                (module, declared)
            });
        let (_, entry, constants, _) = &key;
        let p = Arc::new(Pipeline {
            module: module.clone(),
            entry: entry.clone(),
            constants: constants
                .iter()
                .map(|(k, bits)| (k.clone(), f64::from_bits(*bits)))
                .collect(),
            label: format!("{}::{}", source.name, entry),
            declared: declared.clone(),
            compiled: OnceLock::new(),
        });
        pipelines.insert(key, p.clone());
        p
    }
}
