//! Layers built from the ops: they own their parameters and gradients, record
//! their forward and backward into a [`Recorder`], and put both on a
//! [`Tape`](crate::tape::Tape) through their `apply`.

pub mod attention;
pub mod char_encoder;
pub mod crf;
pub mod dropout;
pub mod embedding;
pub mod layer_norm;
pub mod linear;
pub mod min_rnn;
pub mod recurrent;
pub mod rnn;
pub(crate) mod stack;
pub mod state_dict;
pub mod stream;
pub mod transformer;

pub use attention::{Attention, Score};
pub use char_encoder::CharEncoder;
pub use crf::Crf;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use min_rnn::{MinGru, MinLstm};

/// A recurrent cell, for models that take any: one of [`Recurrent`]'s
/// ([`Mode`]: LSTM, GRU, Elman), or minGRU / minLSTM ([`MinGru`], [`MinLstm`]),
/// trained by a scan over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cell {
    /// An LSTM, GRU or Elman stack.
    Recurrent(Mode),
    /// A minGRU stack.
    MinGru,
    /// A minLSTM stack.
    MinLstm,
}

impl From<Mode> for Cell {
    fn from(mode: Mode) -> Self {
        Cell::Recurrent(mode)
    }
}
pub use recurrent::{Config, Mode, Recurrent, State};
#[allow(deprecated)]
pub use rnn::Sizes;
pub use rnn::{Gru, HiddenState, Lstm, LstmState, Rnn};
pub use state_dict::StateDict;
pub use stream::Stream;
pub use transformer::TransformerEncoderLayer;

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
pub use crate::init::SplitMix;
pub use crate::tape::Param;
use crate::tensor::{DType, Tensor};

/// What optimizers and checkpoints need of a layer or a model. A module names
/// each parameter once, in [`entries`](Module::entries); the parameter list and
/// the state_dict names both come from there.
pub trait Module {
    /// Every parameter with its state_dict name(s), in a fixed order.
    fn entries(&self) -> Vec<Entry>;

    /// Every parameter tensor with its gradient.
    fn params(&self) -> Vec<Param> {
        self.entries().into_iter().map(|e| e.param).collect()
    }

    /// Every parameter under its PyTorch state_dict name, as views into the
    /// tensors of [`params`](Module::params).
    fn named_params(&self) -> Vec<Named> {
        self.entries().into_iter().flat_map(|e| e.names).collect()
    }

    /// Records setting every parameter gradient to zero.
    fn zero_grad(&self, rec: &mut Recorder) -> Result<()> {
        self.params().iter().try_for_each(|p| rec.zero(&p.grad))
    }

    /// Writes the parameters to a safetensors file under their state_dict names
    /// (beside it first, then renamed over it: a crash never tears the file).
    #[cfg(not(target_arch = "wasm32"))]
    fn save(&self, path: &std::path::Path) -> Result<()> {
        StateDict::read(&self.named_params())?.save(path)
    }

    /// Loads the parameters from a safetensors file (PyTorch's
    /// `save_file(model.state_dict())` or [`save`](Module::save)), strictly: every
    /// parameter present with its shape, no tensor left over. Nothing is written
    /// unless everything matches.
    fn load(&self, path: &std::path::Path) -> Result<()> {
        StateDict::load(path)?.apply(&self.named_params(), &path.display().to_string())
    }
}

/// One parameter and the name(s) its values go by in a state_dict: one name for
/// most, one per direction for a recurrent layer's stacked tensors.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The parameter.
    pub param: Param,
    /// Its names and the parts they cover.
    pub names: Vec<Named>,
}

impl Entry {
    /// `param` under one `name`.
    pub fn new(name: &str, param: &Param) -> Self {
        Self {
            param: param.clone(),
            names: vec![Named::whole(name, &param.value)],
        }
    }
}

/// `entries` with every name behind `prefix.` (a submodule's names in its parent).
pub fn prefixed(prefix: &str, entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|e| Entry {
            names: e
                .names
                .into_iter()
                .map(|n| Named {
                    name: format!("{prefix}.{}", n.name),
                    ..n
                })
                .collect(),
            ..e
        })
        .collect()
}

/// One named parameter, possibly a slice of a larger tensor (the recurrent layers
/// stack both directions), with its PyTorch state_dict name and shape.
#[derive(Clone, Debug)]
pub struct Named {
    /// The state_dict name.
    pub name: String,
    /// Its shape in the state_dict.
    pub shape: Vec<usize>,
    /// The tensor holding it.
    pub tensor: Tensor,
    /// Element offset of the parameter inside `tensor`.
    pub offset: usize,
}

impl Named {
    /// All of `tensor` under `name`.
    pub fn whole(name: &str, tensor: &Tensor) -> Self {
        Self {
            name: name.into(),
            shape: tensor.shape().to_vec(),
            tensor: tensor.clone(),
            offset: 0,
        }
    }

    /// Element count.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Reads the values back (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.read_async())
    }

    /// [`read`](Self::read), awaited.
    pub async fn read_async(&self) -> Result<Vec<f32>> {
        let all = self.tensor.to_vec_async().await?;
        let end = self.offset.saturating_add(self.numel());
        all.get(self.offset..end)
            .map(<[f32]>::to_vec)
            .ok_or(Error::ViewOutOfBounds {
                op: "parameter",
                what: "named slice",
                last: end,
                len: all.len(),
            })
    }

    /// Overwrites the values.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::DataLength {
                shape: self.shape.clone(),
                expected: self.numel(),
                got: data.len(),
            });
        }
        self.tensor.write_at(self.offset, data)
    }
}

/// Checks that `dtype` can store activations on this context: f32, or f16 where
/// the adapter has SHADER_F16.
pub(crate) fn check_storage(ctx: &Context, dtype: DType) -> Result<DType> {
    match dtype {
        DType::F32 => Ok(dtype),
        DType::F16 if ctx.has_f16() => Ok(dtype),
        DType::F16 => Err(Error::FeatureMissing {
            adapter: ctx.adapter_info().name.clone(),
            feature: "SHADER_F16",
        }),
        DType::U32 => Err(Error::DType {
            op: "storage",
            what: "storage",
            expected: DType::F16,
            got: dtype,
        }),
    }
}
