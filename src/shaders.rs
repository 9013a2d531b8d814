//! The WGSL sources, embedded in the binary. One file per kernel family in
//! `shaders/`; its stem is the name of the Rust module that launches it.

/// A WGSL source file and its name (the file stem).
///
/// A binding that may hold f16 storage has its element type named by an alias,
/// `alias x_t = f32;`, and the kernel converts on load (`f32(x[i])`) and store
/// (`x_t(v)`), so arithmetic stays f32 either way. [`source_f16`](Self::source_f16)
/// turns chosen aliases to f16: one source, one variant per combination a launch
/// binds.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File stem, also the op's module name and the label of its GPU objects.
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
}

impl Shader {
    /// The storage aliases the source declares (`alias name = f32;` at a line's start).
    pub fn storage_aliases(&self) -> Vec<&'static str> {
        self.source.lines().filter_map(storage_alias).collect()
    }

    /// The source with the storage aliases in `f16` declared f16 (and the f16
    /// extension enabled); the plain source when `f16` is empty.
    pub fn source_f16(&self, f16: &[&str]) -> std::borrow::Cow<'static, str> {
        with_f16(self.source, f16)
    }

    /// The bindings of group 0 other than the parameters (binding 0), by number,
    /// typed from their declarations: `var<storage, read>` and `var<storage, read_write>`
    /// buffers, `texture_2d_array<f32>` (read with textureLoad: unfilterable) and
    /// `texture_storage_2d_array<rgba32float, write>`. Pipelines take their layouts
    /// from these, with the parameters at a dynamic offset.
    pub fn bindings(&self) -> std::collections::HashMap<u32, wgpu::BindingType> {
        let mut out = std::collections::HashMap::new();
        for line in self.source.lines() {
            let Some(rest) = line.trim().strip_prefix("@group(0) @binding(") else {
                continue;
            };
            let Some((number, decl)) = rest.split_once(')') else {
                continue;
            };
            let Ok(binding) = number.parse::<u32>() else {
                continue;
            };
            let decl = decl.split("//").next().unwrap_or("");
            let ty = if decl.contains("var<storage, read_write>") {
                wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: false },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                }
            } else if decl.contains("var<storage, read>") {
                wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: true },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                }
            } else if decl.contains("texture_storage_2d_array<rgba32float, write>") {
                wgpu::BindingType::StorageTexture {
                    access: wgpu::StorageTextureAccess::WriteOnly,
                    format: wgpu::TextureFormat::Rgba32Float,
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                }
            } else if decl.contains("texture_2d_array<f32>") {
                wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                    multisampled: false,
                }
            } else {
                continue;
            };
            out.insert(binding, ty);
        }
        out
    }
}

/// `source` with the storage aliases in `f16` declared f16 (and the f16
/// extension enabled); `source` itself when `f16` is empty.
pub(crate) fn with_f16<'a>(source: &'a str, f16: &[&str]) -> std::borrow::Cow<'a, str> {
    if f16.is_empty() {
        return source.into();
    }
    let mut out = String::from("enable f16;\n");
    for line in source.lines() {
        match storage_alias(line) {
            Some(name) if f16.contains(&name) => out.push_str(&format!("alias {name} = f16;")),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out.into()
}

/// The alias a line declares as a storage alias (`alias name = f32;`).
pub(crate) fn storage_alias(line: &str) -> Option<&str> {
    line.strip_prefix("alias ")?.strip_suffix(" = f32;")
}

/// Batched strided GEMM and its bias gradient.
pub const GEMM: Shader = Shader {
    name: "gemm",
    source: concat!(
        include_str!("../shaders/gemm.wgsl"),
        include_str!("../shaders/gemm_rows.wgsl")
    ),
};

/// The GEMM whose packed kernel shares A's rows across a subgroup, for adapters
/// with SUBGROUP whose subgroups have 8 invocations (`ops::gemm`).
pub const GEMM_SUBGROUP: Shader = Shader {
    name: "gemm_subgroup",
    source: concat!(
        include_str!("../shaders/gemm.wgsl"),
        include_str!("../shaders/gemm_subgroup.wgsl")
    ),
};

/// Storage conversion between f32 and f16, and element-range copies and fills.
pub const CAST: Shader = Shader {
    name: "cast",
    source: include_str!("../shaders/cast.wgsl"),
};

/// FMA-rate probe used to express every speed as a fraction of the device's ceiling.
pub const FMA_PROBE: Shader = Shader {
    name: "fma_probe",
    source: include_str!("../shaders/fma_probe.wgsl"),
};

/// A recurrent cell: the hash and zoneout's choices, the activations, the shared
/// part (`shaders/recurrence.wgsl`: parameters, layouts, indexing), then the
/// cell's own file.
macro_rules! cell {
    ($name:literal) => {
        Shader {
            name: $name,
            source: concat!(
                include_str!("../shaders/hash.wgsl"),
                include_str!("../shaders/zoneout.wgsl"),
                include_str!("../shaders/activations.wgsl"),
                include_str!("../shaders/recurrence.wgsl"),
                include_str!(concat!("../shaders/", $name, ".wgsl"))
            ),
        }
    };
}

/// Fused LSTM cell, forward and backward.
pub const LSTM_CELL: Shader = cell!("lstm_cell");

/// Fused GRU cell, forward and backward.
pub const GRU_CELL: Shader = cell!("gru_cell");

/// Elman RNN cell (tanh or relu), forward and backward.
pub const RNN_CELL: Shader = cell!("rnn_cell");

/// Embedding lookup and its deterministic gradient.
pub const EMBEDDING: Shader = Shader {
    name: "embedding",
    source: include_str!("../shaders/embedding.wgsl"),
};

/// Softmax cross-entropy fused with its gradient.
pub const CROSS_ENTROPY: Shader = Shader {
    name: "cross_entropy",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/cross_entropy.wgsl")
    ),
};

/// Additive attention scores and their backward.
pub const ATTENTION: Shader = Shader {
    name: "attention",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/attention.wgsl")
    ),
};

/// Masked softmax and log-softmax over the last dimension and their backward.
pub const SOFTMAX: Shader = Shader {
    name: "softmax",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/softmax.wgsl")
    ),
};

/// Sum and mean over one dimension with a lengths mask, and their backward.
pub const REDUCE: Shader = Shader {
    name: "reduce",
    source: include_str!("../shaders/reduce.wgsl"),
};

/// Row-wise argmax.
pub const ARGMAX: Shader = Shader {
    name: "argmax",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/argmax.wgsl")
    ),
};

/// Mean squared error fused with its gradient.
pub const MSE: Shader = Shader {
    name: "mse",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/mse.wgsl")
    ),
};

/// Inverted dropout from a counter-based hash.
pub const DROPOUT: Shader = Shader {
    name: "dropout",
    source: concat!(
        include_str!("../shaders/hash.wgsl"),
        include_str!("../shaders/dropout.wgsl")
    ),
};

/// SGD, Adam and AdamW updates with global-norm clipping.
pub const OPTIM: Shader = Shader {
    name: "optim",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/optim.wgsl")
    ),
};

/// tanh, ReLU, add, scale, product, concatenation, split and block copies.
pub const ELEMENTWISE: Shader = Shader {
    name: "elementwise",
    source: include_str!("../shaders/elementwise.wgsl"),
};

/// Broadcasting add, sub, mul and div with their backward, strided copies
/// (permute, expand) and masked fills.
pub const BROADCAST: Shader = Shader {
    name: "broadcast",
    source: include_str!("../shaders/broadcast.wgsl"),
};

/// Beam search: log-softmax of every beam and the top k continuations.
pub const BEAM: Shader = Shader {
    name: "beam",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/beam.wgsl")
    ),
};

/// Layer normalization and its backward.
pub const LAYER_NORM: Shader = Shader {
    name: "layer_norm",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/layer_norm.wgsl")
    ),
};

/// LayerNorm-LSTM steps and their backward.
pub const LAYER_NORM_LSTM: Shader = Shader {
    name: "layer_norm_lstm",
    source: concat!(
        include_str!("../shaders/hash.wgsl"),
        include_str!("../shaders/zoneout.wgsl"),
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/activations.wgsl"),
        include_str!("../shaders/layer_norm_lstm.wgsl")
    ),
};

/// Temperature sampling by inverting the softmax's cumulative distribution.
pub const SAMPLE: Shader = Shader {
    name: "sample",
    source: concat!(
        include_str!("../shaders/workgroup_reduce.wgsl"),
        include_str!("../shaders/sample.wgsl")
    ),
};

/// The minGRU and minLSTM recurrence as a scan over time, and its backward:
/// an invocation per unit.
pub const MIN_RNN: Shader = Shader {
    name: "min_rnn",
    source: concat!(
        "alias v32 = f32; // a lane's values: f32 whatever the storage\nalias pre_v = pre_t;\nalias y_v = y_t;\n\n",
        include_str!("../shaders/min_rnn.wgsl")
    ),
};

/// [`MIN_RNN`] with an invocation per 4 neighbouring units (H a multiple of 4).
pub const MIN_RNN4: Shader = Shader {
    name: "min_rnn4",
    source: concat!(
        include_str!("../shaders/min_rnn4.wgsl"),
        include_str!("../shaders/min_rnn.wgsl")
    ),
};

/// The linear-chain CRF: forward algorithm, marginals and Viterbi.
pub const CRF: Shader = Shader {
    name: "crf",
    source: include_str!("../shaders/crf.wgsl"),
};

/// Every shader the crate ships, for validation and cross-compilation tests.
pub const ALL: &[Shader] = &[
    GEMM,
    GEMM_SUBGROUP,
    CAST,
    FMA_PROBE,
    LSTM_CELL,
    GRU_CELL,
    RNN_CELL,
    EMBEDDING,
    CROSS_ENTROPY,
    DROPOUT,
    OPTIM,
    MSE,
    ATTENTION,
    SOFTMAX,
    REDUCE,
    ARGMAX,
    ELEMENTWISE,
    BROADCAST,
    BEAM,
    LAYER_NORM,
    LAYER_NORM_LSTM,
    SAMPLE,
    STREAM_STEP,
    PROJECTION,
    MIN_RNN,
    MIN_RNN4,
    CRF,
];

/// One step of a recurrent layer for a stream: both products and the cell.
pub const STREAM_STEP: Shader = Shader {
    name: "stream_step",
    source: concat!(
        include_str!("../shaders/activations.wgsl"),
        include_str!("../shaders/stream_step.wgsl")
    ),
};

/// The LSTM's output projection (proj_size) and its backward.
pub const PROJECTION: Shader = Shader {
    name: "projection",
    source: include_str!("../shaders/projection.wgsl"),
};

/// Shaders of [`ALL`] the library never runs in a browser: subgroup builtins
/// there need WGSL's `enable subgroups;`, which naga does not parse
/// ([`crate::Context::gemm_subgroups`] is false on wasm32).
pub const NATIVE_ONLY: &[&str] = &["gemm_subgroup"];

/// Files of `shaders/` that are parts of other shaders rather than shaders.
pub const PARTS: &[&str] = &[
    "activations",
    "gemm_rows",
    "hash",
    "recurrence",
    "workgroup_reduce",
    "zoneout",
];

/// Size in bytes that naga lays out for struct `name` of `shader`, for checking
/// the Rust mirrors of uniform structs.
#[cfg(test)]
pub(crate) fn wgsl_struct_size(shader: &Shader, name: &str) -> usize {
    let module = naga::front::wgsl::parse_str(shader.source).expect("shader parses");
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    let (handle, _) = module
        .types
        .iter()
        .find(|(_, ty)| ty.name.as_deref() == Some(name))
        .expect("struct is declared");
    layouter[handle].size as usize
}
