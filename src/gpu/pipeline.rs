//! Compute pipelines, compiled once per device and cached by (shader, entry point,
//! override constants, storage aliases made f16). Compiling is the slow part (tens
//! to hundreds of ms through a driver's JIT), so every op asks this cache and never
//! builds its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::shaders::Shader;

/// One compiled entry point with the layout of its bind group 0.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

type Key = (
    &'static str,
    &'static str,
    Vec<(&'static str, u64)>,
    Vec<&'static str>,
);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<(&'static str, Vec<&'static str>), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Key, Arc<Pipeline>>>,
}

impl PipelineCache {
    /// The pipeline for `entry` of `shader` with the given override constants and
    /// the storage aliases in `f16` declared f16 (see [`Shader::source_f16`]),
    /// compiled on first use.
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
        let module = modules
            .entry((shader.name, f16.to_vec()))
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.source_f16(f16)),
                };
                // SAFETY: the only check dropped is forced loop bounding, a guard against
                // loops that never end. Every loop in shaders/ runs a count taken from
                // its params, which the host sets from checked tensor shapes, so each
                // loop ends. Bounds checks on memory stay on. Loop bounding costs
                // several times the arithmetic of a small loop body on lavapipe.
                unsafe {
                    device.create_shader_module_trusted(
                        desc,
                        wgpu::ShaderRuntimeChecks {
                            force_loop_bounding: false,
                            ..wgpu::ShaderRuntimeChecks::checked()
                        },
                    )
                }
            });
        let label = format!("{}::{}", shader.name, entry);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: true,
            },
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let p = Arc::new(Pipeline { pipeline, layout });
        pipelines.insert(key, p.clone());
        p
    }
}
