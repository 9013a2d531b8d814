//! Portability: every shader parses and validates with naga and translates to
//! SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12) for every entry point and every
//! combination of its boolean override constants, so a shader that would break on
//! another platform fails here, on any machine, without a GPU.

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn validate(module: &naga::Module, name: &str) -> naga::valid::ModuleInfo {
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(module)
        .unwrap_or_else(|e| panic!("{name}: naga validation failed: {e:?}"))
}

#[test]
fn every_file_in_shaders_is_shipped() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut shipped: Vec<String> = rnn_wgpu::shaders::ALL
        .iter()
        .map(|s| s.name.to_string())
        .chain(rnn_wgpu::shaders::PARTS.iter().map(|s| s.to_string()))
        .collect();
    shipped.sort();
    assert_eq!(
        files, shipped,
        "shaders/*.wgsl and rnn_wgpu::shaders::ALL plus PARTS differ"
    );
    for name in rnn_wgpu::shaders::NATIVE_ONLY {
        assert!(
            rnn_wgpu::shaders::ALL.iter().any(|s| s.name == *name),
            "NATIVE_ONLY names {name}, which is not in ALL"
        );
    }
}

#[test]
fn every_shader_translates_to_spirv_msl_and_hlsl() {
    for shader in rnn_wgpu::shaders::ALL {
        translate(shader.name, shader.source, &hlsl::Options::default());
    }
}

/// Validates `source` and translates every entry point under every combination of
/// its boolean overrides.
fn translate(name: &str, source: &str, hlsl_options: &hlsl::Options) {
    {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        let info = validate(&module, name);
        let bools: Vec<String> = module
            .overrides
            .iter()
            .filter(|(_, o)| matches!(module.types[o.ty].inner, naga::TypeInner::Scalar(s) if s.kind == naga::ScalarKind::Bool))
            .map(|(_, o)| o.name.clone().expect("overrides are named"))
            .collect();
        for ep in &module.entry_points {
            for combo in 0..(1u32 << bools.len()) {
                let mut constants = naga::back::PipelineConstants::default();
                for (i, name) in bools.iter().enumerate() {
                    constants.insert(name.clone(), f64::from((combo >> i) & 1));
                }
                let what = format!("{name}::{} {constants:?}", ep.name);
                let (module, _) = naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((ep.stage, &ep.name)),
                    &constants,
                )
                .unwrap_or_else(|e| panic!("{what}: overrides: {e:?}"));
                let info = validate(&module, &what);

                let spv_pipeline = spv::PipelineOptions {
                    shader_stage: ep.stage,
                    entry_point: ep.name.clone(),
                };
                let words = spv::write_vec(
                    &module,
                    &info,
                    &spv::Options::default(),
                    Some(&spv_pipeline),
                )
                .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e:?}"));
                assert_eq!(
                    words.first(),
                    Some(&0x0723_0203),
                    "{what}: SPIR-V magic number"
                );

                let msl_pipeline = msl::PipelineOptions {
                    entry_point: Some((ep.stage, ep.name.clone())),
                    ..Default::default()
                };
                let (metal, _) =
                    msl::write_string(&module, &info, &msl::Options::default(), &msl_pipeline)
                        .unwrap_or_else(|e| panic!("{what}: MSL: {e:?}"));
                assert!(
                    metal.contains(&format!("kernel void {}", ep.name)),
                    "{what}: no MSL kernel"
                );

                let hlsl_pipeline = hlsl::PipelineOptions {
                    entry_point: Some((ep.stage, ep.name.clone())),
                };
                let mut out = String::new();
                hlsl::Writer::new(&mut out, hlsl_options, &hlsl_pipeline)
                    .write(&module, &info, None)
                    .unwrap_or_else(|e| panic!("{what}: HLSL: {e:?}"));
                assert!(
                    out.contains("[numthreads("),
                    "{what}: no HLSL compute entry point:\n{out}"
                );
            }
        }
    }
}

/// Every combination of a shader's storage aliases made f16 is valid WGSL (the
/// kernels convert at every load and store) and translates like the f32 source
/// (HLSL's f16 needs shader model 6.2).
#[test]
fn every_f16_storage_variant_translates() {
    let hlsl_options = hlsl::Options {
        shader_model: hlsl::ShaderModel::V6_2,
        ..Default::default()
    };
    let mut variants = 0;
    for shader in rnn_wgpu::shaders::ALL {
        let aliases = shader.storage_aliases();
        for bits in 1u32..(1 << aliases.len()) {
            let f16: Vec<&str> = (0..aliases.len())
                .filter(|i| bits & (1 << i) != 0)
                .map(|i| aliases[i])
                .collect();
            let source = shader.source_f16(&f16);
            assert_eq!(
                source.matches(" = f16;").count(),
                f16.len(),
                "{}: an alias is not declared",
                shader.name
            );
            translate(
                &format!("{} with {f16:?} f16", shader.name),
                &source,
                &hlsl_options,
            );
            variants += 1;
        }
    }
    assert!(variants > 0, "no shader declares a storage alias");
}

/// The bind group layouts come from `Shader::bindings`, read from the
/// declarations' text: it must type every binding of group 0 as naga does, and
/// binding 0 must be the parameters' uniform (bound at a dynamic offset).
#[test]
fn declared_bindings_match_naga() {
    use naga::{AddressSpace, ImageClass, ImageDimension, ScalarKind, StorageAccess, TypeInner};
    for shader in rnn_wgpu::shaders::ALL {
        let module = naga::front::wgsl::parse_str(shader.source).unwrap();
        let ours = shader.bindings();
        let mut seen = 0;
        for (_, var) in module.global_variables.iter() {
            let Some(rb) = &var.binding else { continue };
            assert_eq!(rb.group, 0, "{}: only group 0 is bound", shader.name);
            let name = format!("{}::{}", shader.name, var.name.as_deref().unwrap_or("?"));
            if rb.binding == 0 {
                assert_eq!(var.space, AddressSpace::Uniform, "{name}: binding 0");
                assert!(!ours.contains_key(&0), "{name}");
                continue;
            }
            seen += 1;
            let want = match (var.space, &module.types[var.ty].inner) {
                (AddressSpace::Storage { access }, _) => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: !access.contains(StorageAccess::STORE),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                (
                    AddressSpace::Handle,
                    TypeInner::Image {
                        dim: ImageDimension::D2,
                        arrayed: true,
                        class: ImageClass::Storage { format, access },
                    },
                ) => {
                    assert_eq!(*format, naga::StorageFormat::Rgba32Float, "{name}");
                    assert_eq!(*access, StorageAccess::STORE, "{name}");
                    wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: wgpu::TextureFormat::Rgba32Float,
                        view_dimension: wgpu::TextureViewDimension::D2Array,
                    }
                }
                (
                    AddressSpace::Handle,
                    TypeInner::Image {
                        dim: ImageDimension::D2,
                        arrayed: true,
                        class:
                            ImageClass::Sampled {
                                kind: ScalarKind::Float,
                                multi: false,
                            },
                    },
                ) => wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                    multisampled: false,
                },
                (space, ty) => panic!("{name}: no layout for {space:?} {ty:?}"),
            };
            assert_eq!(ours.get(&rb.binding), Some(&want), "{name}");
        }
        assert_eq!(
            ours.len(),
            seen,
            "{}: bindings naga does not see",
            shader.name
        );
    }
}
