//! Embedding (torch.nn.Embedding with padding_idx): rows of a table looked up by
//! token id. The padding row starts at zero and never gets a gradient.
//!
//! ```
//! use rnn_wgpu::nn::{Embedding, Module};
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     // 10 tokens of 4 features; id 0 pads: its row is zero and gets no gradient.
//!     let emb = Embedding::new(&ctx, 10, 4, Some(0), 1)?;
//!     let mut tape = Tape::eval(&ctx, "embedding");
//!     let x = emb.apply(&mut tape, &[3, 7, 0, 3], &[2, 2])?; // [B, T] ids → [2, 2, 4]
//!     tape.into_recorder().submit();
//!     let v = x.to_vec()?;
//!     assert_eq!(x.shape(), [2, 2, 4]);
//!     assert_eq!(v[0..4], v[12..16]); // id 3 twice, the same row
//!     assert!(v[8..12].iter().all(|&e| e == 0.0)); // padding
//!     assert!(emb.named_params()[0].name.ends_with("weight"));
//!     Ok(())
//! }
//! ```

use super::{Entry, Module, Param, SplitMix};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::embedding::{self, Index};
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};

/// A lookup table with its gradient.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// `[V, E]` weight
    weight: Tensor,
    /// `[V, E]`
    grad: Tensor,
    padding_idx: Option<u32>,
    /// How looked-up rows are stored: f32, or f16.
    storage: DType,
}

impl Embedding {
    /// A table of `vocab` rows of `dim`, initialized N(0, 1) as PyTorch does, the
    /// `padding_idx` row zero.
    pub fn new(
        ctx: &Context,
        vocab: usize,
        dim: usize,
        padding_idx: Option<u32>,
        seed: u64,
    ) -> Result<Self> {
        if let Some(pad) = padding_idx.filter(|&p| p as usize >= vocab) {
            return Err(Error::IndexOutOfRange {
                op: "Embedding::new",
                what: "padding_idx",
                index: 0,
                value: pad as usize,
                bound: vocab,
            });
        }
        let mut values = SplitMix::new(seed).normal(vocab * dim);
        if let Some(pad) = padding_idx {
            let row = pad as usize * dim;
            values[row..row + dim].fill(0.0);
        }
        Ok(Self {
            weight: Tensor::from_slice(ctx, &[vocab, dim], &values)?,
            grad: Tensor::zeros(ctx, &[vocab, dim])?,
            padding_idx,
            storage: DType::F32,
        })
    }

    /// The same table returning its rows stored as `dtype`: f32 (the default) or
    /// f16, which needs SHADER_F16. The table and its gradient stay f32.
    pub fn with_storage(mut self, dtype: DType) -> Result<Self> {
        self.storage = super::check_storage(self.weight.context(), dtype)?;
        Ok(self)
    }

    /// (V, E); the table is `[V, E]` by construction.
    fn sizes(&self) -> (usize, usize) {
        (self.weight.shape()[0], self.weight.shape()[1])
    }

    /// `[V, E]` the table.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `[V, E]` its gradient.
    pub fn grad(&self) -> &Tensor {
        &self.grad
    }

    /// Records the lookup of `ids` (row-major, of shape `shape`): returns
    /// `[shape.., E]` and what backward needs. Ids past the table are an error.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        ids: &[u32],
        shape: &[usize],
    ) -> Result<(Tensor, Index)> {
        let (vocab, dim) = self.sizes();
        let count: usize = shape.iter().product();
        if ids.len() != count {
            return Err(Error::ShapeMismatch {
                op: "embedding",
                what: "ids",
                expected: format!("{count} ids for shape {shape:?}"),
                got: vec![ids.len()],
            });
        }
        let index = Index::new(rec.context(), ids, vocab, self.padding_idx)?;
        let mut out_shape = shape.to_vec();
        out_shape.push(dim);
        let out = rec.empty(&[ids.len(), dim], self.storage)?;
        embedding::forward(rec, &out, &self.weight, &index)?;
        let out = out.reshape(&out_shape)?;
        Ok((out, index))
    }

    /// [`forward`](Self::forward) on a tape, which records the backward: `[shape.., E]`.
    pub fn apply(&self, tape: &mut Tape, ids: &[u32], shape: &[usize]) -> Result<Var> {
        let (out, index) = self.forward(tape.rec(), ids, shape)?;
        let layer = self.clone();
        Ok(tape
            .record(&[], vec![out], true, move |rec, d| {
                if let Some(dout) = d.into_iter().next().flatten() {
                    layer.backward(rec, &dout, &index)?;
                }
                Ok(vec![])
            })
            .remove(0))
    }

    /// Records `grad += d out / d weight` for upstream `dout` `[.., E]`.
    pub fn backward(&self, rec: &mut Recorder, dout: &Tensor, index: &Index) -> Result<()> {
        let dim = self.sizes().1;
        let dout = dout.reshape(&[dout.numel() / dim.max(1), dim])?;
        embedding::backward(rec, &self.grad, &dout, index)
    }
}

impl Module for Embedding {
    fn entries(&self) -> Vec<Entry> {
        let param = Param {
            value: self.weight.clone(),
            grad: self.grad.clone(),
        };
        vec![Entry::new("weight", &param)]
    }
}
