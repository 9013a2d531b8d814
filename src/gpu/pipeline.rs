//! Compute pipelines, compiled once per device and cached by (shader, entry point,
//! override constants, storage aliases made f16). Compiling is the slow part (tens
//! to hundreds of ms through a driver's JIT), so every op asks this cache and never
//! builds its own.
//!
//! Each pipeline has an explicit layout whose binding 0, the parameters, takes a
//! dynamic offset: the dispatches of a recorder share their uniform buffers, and
//! the dispatches of one kernel over the same tensors (the steps of a recurrence)
//! share one bind group. The other bindings are the ones the entry point uses,
//! known from its first dispatch (an entry point is always given exactly those),
//! each typed as the shader declares it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::shaders::Shader;

/// One entry point: compiled, with its bind group layout, at its first dispatch.
pub(crate) struct Pipeline {
    module: wgpu::ShaderModule,
    entry: &'static str,
    constants: Vec<(&'static str, f64)>,
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
    /// `bindings`, compiled on the first call. `None` when one of `bindings` is
    /// not declared by the shader.
    pub(crate) fn compiled(&self, device: &wgpu::Device, bindings: &[u32]) -> Option<&Compiled> {
        if let Some(c) = self.compiled.get() {
            return Some(c);
        }
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
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&self.label),
            layout: Some(&pipeline_layout),
            module: &self.module,
            entry_point: Some(self.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &self.constants,
                zero_initialize_workgroup_memory: true,
            },
            cache: None,
        });
        Some(self.compiled.get_or_init(|| Compiled { pipeline, layout }))
    }
}

type Key = (
    &'static str,
    &'static str,
    Vec<(&'static str, u64)>,
    Vec<&'static str>,
);

type Module = (wgpu::ShaderModule, Arc<HashMap<u32, wgpu::BindingType>>);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<(&'static str, Vec<&'static str>), Module>>,
    pipelines: Mutex<HashMap<Key, Arc<Pipeline>>>,
}

impl PipelineCache {
    /// The pipeline for `entry` of `shader` with the given override constants and
    /// the storage aliases in `f16` declared f16 (see [`Shader::source_f16`]).
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        f16: &[&'static str],
    ) -> Arc<Pipeline> {
        let key: Key = (
            shader.name,
            entry,
            constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
            f16.to_vec(),
        );
        // Pipelines are only ever inserted whole, so a lock poisoned by a panic
        // elsewhere still guards a consistent map.
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipelines.get(&key) {
            return p.clone();
        }
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let (module, declared) = modules
            .entry((shader.name, f16.to_vec()))
            .or_insert_with(|| {
                let source = shader.source_f16(f16);
                let declared = Arc::new(shader.bindings());
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(source),
                };
                // SAFETY: the only check dropped is forced loop bounding, a guard against
                // loops that never end. Every loop in shaders/ runs a count taken from
                // its params, which the host sets from checked tensor shapes, so each
                // loop ends. Bounds checks on memory stay on. Loop bounding costs
                // several times the arithmetic of a small loop body on lavapipe.
                let module = unsafe {
                    device.create_shader_module_trusted(
                        desc,
                        wgpu::ShaderRuntimeChecks {
                            force_loop_bounding: false,
                            ..wgpu::ShaderRuntimeChecks::checked()
                        },
                    )
                };
                (module, declared)
            });
        let p = Arc::new(Pipeline {
            module: module.clone(),
            entry,
            constants: constants.to_vec(),
            label: format!("{}::{}", shader.name, entry),
            declared: declared.clone(),
            compiled: OnceLock::new(),
        });
        pipelines.insert(key, p.clone());
        p
    }
}
