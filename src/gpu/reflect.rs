//! What a WGSL module declares, read by naga: the bindings of group 0 (their
//! types, whether the shader writes them, their element types), the size of the
//! parameters' struct at binding 0, and per entry point its workgroup size, its
//! workgroup memory and the bindings it uses, for users' kernels, which are
//! validated too (a WGSL error comes back with its line and column). The
//! library's own shaders are read by their declarations' text
//! ([`crate::shaders::Shader::bindings`], checked against naga in the tests), so
//! that a program without a user's kernel does not carry the WGSL compiler
//! (a page's download).

use std::collections::BTreeMap;

use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, ImageClass, ScalarKind, TypeInner};

use crate::error::{Error, Result};

/// What the bound tensor's elements must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Element {
    F32,
    F16,
    /// u32 or i32 words, atomic or not.
    Word,
    /// `array<name>` of a storage alias (`alias name = f32;`): f32, or f16
    /// where the launch binds f16 (see [`crate::shaders::Shader::source_f16`]).
    Alias(String),
    /// Anything else (structs, textures): not checked.
    Other,
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::F32 => write!(f, "f32"),
            Self::F16 => write!(f, "f16"),
            Self::Word => write!(f, "u32 or i32 words"),
            Self::Alias(a) => write!(f, "{a} (f32, or f16 storage)"),
            Self::Other => write!(f, "any element"),
        }
    }
}

/// One binding of group 0.
#[derive(Clone, Debug)]
pub(crate) struct Binding {
    /// The variable's name in the shader.
    pub(crate) name: String,
    pub(crate) ty: wgpu::BindingType,
    /// Written by the shader: `read_write` storage or a storage texture.
    pub(crate) writable: bool,
    pub(crate) element: Element,
}

/// One compute entry point.
#[derive(Clone, Debug)]
pub(crate) struct EntryPoint {
    pub(crate) name: String,
    pub(crate) workgroup_size: [u32; 3],
    /// Bytes of the `var<workgroup>` variables it uses.
    pub(crate) workgroup_bytes: u64,
    /// The bindings of group 0 it uses (reads, writes or queries), ascending.
    pub(crate) uses: Vec<u32>,
}

/// What a module declares (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct Reflection {
    pub(crate) bindings: BTreeMap<u32, Binding>,
    /// Bytes of the uniform struct at binding 0, when the module declares one.
    pub(crate) params: Option<u32>,
    pub(crate) entries: Vec<EntryPoint>,
    /// Whether the module declares f16 values itself (`enable f16;`).
    pub(crate) uses_f16: bool,
}

/// A WGSL error of `kernel`'s `source` as [`Error::Shader`].
fn shader_error(
    kernel: &str,
    source: &str,
    location: Option<naga::SourceLocation>,
    message: String,
) -> Error {
    let (line, column) = location.map_or((0, 0), |l| (l.line_number, l.line_position));
    let text = source
        .lines()
        .nth((line as usize).saturating_sub(1))
        .filter(|_| line > 0)
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    Error::Shader {
        kernel: kernel.to_string(),
        line,
        column,
        message,
        text,
    }
}

/// Parses `source`; a WGSL error names its line and column.
fn parse(kernel: &str, source: &str) -> Result<naga::Module> {
    naga::front::wgsl::parse_str(source).map_err(|e| {
        let labels: Vec<&str> = e
            .labels()
            .map(|(_, l)| l)
            .filter(|l| !l.is_empty())
            .collect();
        let message = if labels.is_empty() {
            e.message().to_string()
        } else {
            format!("{} ({})", e.message(), labels.join("; "))
        };
        shader_error(kernel, source, e.location(source), message)
    })
}

/// Validates `module` as naga does before translating it; the error names the
/// line and column of the first place it points at.
fn validate(kernel: &str, source: &str, module: &naga::Module) -> Result<ModuleInfo> {
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(module)
        .map_err(|e| {
            let mut message = e.as_inner().to_string();
            let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e.as_inner());
            while let Some(c) = cause {
                message.push_str(": ");
                message.push_str(&c.to_string());
                cause = c.source();
            }
            shader_error(kernel, source, e.location(source), message)
        })
}

/// Parses and validates a user's kernel and reads what it declares. Refuses
/// what the library cannot bind: resources outside group 0, a binding 0 that
/// is not the parameters' uniform, a uniform elsewhere, samplers.
pub(crate) fn reflect(kernel: &str, source: &str) -> Result<Reflection> {
    let module = parse(kernel, source)?;
    let info = validate(kernel, source, &module)?;
    let refuse = |span: naga::Span, message: String| {
        Err(shader_error(
            kernel,
            source,
            Some(span.location(source)),
            message,
        ))
    };
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        let span = module.global_variables.get_span(handle);
        let name = var.name.as_deref().unwrap_or("?");
        if binding.group != 0 {
            return refuse(
                span,
                format!(
                    "{name} is in group {}: kernels bind group 0 only",
                    binding.group
                ),
            );
        }
        let uniform = var.space == AddressSpace::Uniform;
        if (binding.binding == 0) != uniform {
            return refuse(
                span,
                format!(
                    "{name} at binding {}: binding 0 is the parameters' var<uniform>, \
                     the only uniform; tensors are var<storage> at 1 and up",
                    binding.binding
                ),
            );
        }
        if !uniform && !matches!(var.space, AddressSpace::Storage { .. }) {
            return refuse(
                span,
                format!("{name}: kernels bind storage buffers and one uniform only"),
            );
        }
    }
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| shader_error(kernel, source, None, format!("layout: {e}")))?;
    let params = module
        .global_variables
        .iter()
        .find(|(_, v)| v.space == AddressSpace::Uniform)
        .map(|(_, v)| layouter[v.ty].size);
    let entries = module
        .entry_points
        .iter()
        .enumerate()
        .filter(|(_, e)| e.stage == naga::ShaderStage::Compute)
        .map(|(i, e)| {
            let uses = info.get_entry_point(i);
            let mut bindings = vec![];
            let mut workgroup_bytes = 0u64;
            for (handle, var) in module.global_variables.iter() {
                if uses[handle].is_empty() {
                    continue;
                }
                if let Some(b) = &var.binding {
                    bindings.push(b.binding);
                }
                if var.space == AddressSpace::WorkGroup {
                    workgroup_bytes += u64::from(layouter[var.ty].size);
                }
            }
            bindings.sort_unstable();
            EntryPoint {
                name: e.name.clone(),
                workgroup_size: e.workgroup_size,
                workgroup_bytes,
                uses: bindings,
            }
        })
        .collect();
    let uses_f16 = module.types.iter().any(|(_, t)| {
        matches!(t.inner, TypeInner::Scalar(s) | TypeInner::Vector { scalar: s, .. }
            | TypeInner::Matrix { scalar: s, .. } if s == naga::Scalar::F16)
    });
    Ok(Reflection {
        bindings: bindings(&module, source),
        params,
        entries,
        uses_f16,
    })
}

/// The bindings of group 0 other than the parameters, typed for a layout.
fn bindings(module: &naga::Module, source: &str) -> BTreeMap<u32, Binding> {
    let aliases: Vec<&str> = source
        .lines()
        .filter_map(crate::shaders::storage_alias)
        .collect();
    let mut out = BTreeMap::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(b) = &var.binding else {
            continue;
        };
        if b.group != 0 || b.binding == 0 {
            continue;
        }
        let inner = &module.types[var.ty].inner;
        let (ty, writable) = match (var.space, inner) {
            (AddressSpace::Storage { access }, _) => {
                let writable = access.contains(naga::StorageAccess::STORE);
                let ty = wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: !writable,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                };
                (ty, writable)
            }
            (
                AddressSpace::Handle,
                TypeInner::Image {
                    dim: naga::ImageDimension::D2,
                    arrayed: true,
                    class: ImageClass::Storage { .. },
                },
            ) => (
                wgpu::BindingType::StorageTexture {
                    access: wgpu::StorageTextureAccess::WriteOnly,
                    format: wgpu::TextureFormat::Rgba32Float,
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                },
                true,
            ),
            (
                AddressSpace::Handle,
                TypeInner::Image {
                    dim: naga::ImageDimension::D2,
                    arrayed: true,
                    class: ImageClass::Sampled { .. },
                },
            ) => (
                wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                    multisampled: false,
                },
                false,
            ),
            _ => continue,
        };
        let span = module.global_variables.get_span(handle);
        let declaration = span.to_range().and_then(|r| source.get(r)).unwrap_or("");
        out.insert(
            b.binding,
            Binding {
                name: var.name.clone().unwrap_or_default(),
                ty,
                writable,
                element: element(module, inner, declaration, &aliases),
            },
        );
    }
    out
}

/// The element type of a storage buffer's array, by its declaration's text
/// where that names a storage alias (naga resolves aliases away).
fn element(
    module: &naga::Module,
    inner: &TypeInner,
    declaration: &str,
    aliases: &[&str],
) -> Element {
    let TypeInner::Array { base, .. } = inner else {
        return Element::Other;
    };
    if let Some(alias) = aliases.iter().find(|a| {
        declaration.split("array<").skip(1).any(|rest| {
            rest.trim_start()
                .strip_prefix(*a)
                .is_some_and(|r| r.trim_start().starts_with('>'))
        })
    }) {
        return Element::Alias(alias.to_string());
    }
    let scalar = match module.types[*base].inner {
        TypeInner::Scalar(s) | TypeInner::Vector { scalar: s, .. } | TypeInner::Atomic(s) => s,
        _ => return Element::Other,
    };
    match (scalar.kind, scalar.width) {
        (ScalarKind::Float, 4) => Element::F32,
        (ScalarKind::Float, 2) => Element::F16,
        (ScalarKind::Uint | ScalarKind::Sint, 4) => Element::Word,
        _ => Element::Other,
    }
}
