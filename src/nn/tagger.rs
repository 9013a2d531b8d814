//! The BiLSTM tagger (embedding → bidirectional LSTM → linear → masked
//! cross-entropy), written from the layers as a user would write it. Its
//! state_dict names are those of a PyTorch module with the fields `embedding`,
//! `lstm` and `fc`, so such a module's saved weights load here.

use super::dropout::Mask;
use super::recurrent::{self, Config, Mode, Recurrent};
use super::{prefixed, Dropout, Embedding, Linear, Module, Named, Param};
use crate::data::Batch;
use crate::error::Result;
use crate::gpu::{Context, Recorder};
use crate::ops::cross_entropy::{self, Loss};
use crate::ops::embedding::Index;
use crate::tensor::{DType, Tensor};
use crate::train::{finish_step_async, Optimizer, StepReport};

/// See the module docs. Dropout (none unless [`with_dropout`](Self::with_dropout))
/// applies to the embeddings and the LSTM outputs in training steps only.
#[derive(Debug)]
pub struct BiLstmTagger {
    pub embedding: Embedding,
    pub lstm: Recurrent,
    pub fc: Linear,
    pub dropout: Dropout,
}

/// What [`BiLstmTagger::backward`] needs from [`BiLstmTagger::forward`].
#[derive(Debug)]
pub struct Saved {
    index: Index,
    emb_mask: Mask,
    lstm: recurrent::Saved,
    hidden: Tensor,
    hidden_mask: Mask,
}

impl BiLstmTagger {
    /// `vocab` words embedded in `emb` dimensions, `hidden` units per direction,
    /// `tags` classes; `pad` is the padding word (its embedding stays zero).
    pub fn new(
        ctx: &Context,
        vocab: usize,
        emb: usize,
        hidden: usize,
        tags: usize,
        pad: u32,
        seed: u64,
    ) -> Result<Self> {
        let cfg = Config {
            mode: Mode::Lstm,
            input_size: emb,
            hidden_size: hidden,
            num_layers: 1,
            bidirectional: true,
        };
        Ok(Self {
            embedding: Embedding::new(ctx, vocab, emb, Some(pad), seed)?,
            lstm: Recurrent::new(ctx, cfg, seed + 1)?,
            fc: Linear::new(ctx, 2 * hidden, tags, true, seed + 2)?,
            dropout: Dropout::new(0.0, seed as u32),
        })
    }

    /// The same model with dropout `p` in training steps.
    pub fn with_dropout(self, p: f32, seed: u32) -> Self {
        Self {
            dropout: Dropout::new(p, seed),
            ..self
        }
    }

    /// The same model with its activations stored as `dtype`: f32 (the default)
    /// or f16 (mixed precision, needs SHADER_F16). Under f16 the embedding rows,
    /// the LSTM's activations and its forward weights are f16 copies, every kernel
    /// accumulates in f32, and the parameters, gradients, optimizer state, logits
    /// and loss stay f32.
    pub fn with_storage(self, dtype: DType) -> Result<Self> {
        Ok(Self {
            embedding: self.embedding.with_storage(dtype)?,
            lstm: self.lstm.with_storage(dtype)?,
            ..self
        })
    }

    /// Records the logits `[B, T, tags]` of a batch (evaluation: no dropout).
    pub fn forward(&self, rec: &mut Recorder, batch: &Batch) -> Result<(Tensor, Saved)> {
        self.run(rec, batch, false)
    }

    fn run(&self, rec: &mut Recorder, batch: &Batch, train: bool) -> Result<(Tensor, Saved)> {
        let shape = [batch.size, batch.steps];
        let (emb, index) = self.embedding.forward(rec, &batch.ids, &shape)?;
        let (emb, emb_mask) = self.dropout.forward(rec, &emb, train)?;
        let (out, lstm) = self.lstm.forward(rec, &emb, &batch.lengths, None, None)?;
        let (hidden, hidden_mask) = self.dropout.forward(rec, &out.y, train)?;
        let logits = self.fc.forward(rec, &hidden)?;
        let saved = Saved {
            index,
            emb_mask,
            lstm,
            hidden,
            hidden_mask,
        };
        Ok((logits, saved))
    }

    /// Records the forward of a training step (with dropout) and the mean
    /// cross-entropy over the real tokens.
    pub fn loss(&self, rec: &mut Recorder, batch: &Batch) -> Result<(Loss, Saved)> {
        let (logits, saved) = self.run(rec, batch, true)?;
        let loss = cross_entropy::forward(rec, &logits, &batch.targets, Some(Batch::IGNORE))?;
        Ok((loss, saved))
    }

    /// Records the backward from the loss's gradient, adding to every parameter's
    /// gradient.
    pub fn backward(&self, rec: &mut Recorder, loss: &Loss, saved: &Saved) -> Result<()> {
        let dhidden = self.fc.backward(rec, &loss.dlogits, &saved.hidden)?;
        let dy = self.dropout.backward(rec, &dhidden, saved.hidden_mask)?;
        let dx = self.lstm.backward(rec, &saved.lstm, &dy, None, None)?;
        let demb = self.dropout.backward(rec, &dx.dx, saved.emb_mask)?;
        self.embedding.backward(rec, &demb, &saved.index)
    }

    /// One training step on `batch`, one submit: zero the gradients, forward,
    /// loss, backward, optimizer update; returns the loss and gradient norm.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_step(
        &self,
        ctx: &Context,
        batch: &Batch,
        opt: &mut Optimizer,
    ) -> Result<StepReport> {
        pollster::block_on(self.train_step_async(ctx, batch, opt))
    }

    /// [`train_step`](Self::train_step), awaited.
    pub async fn train_step_async(
        &self,
        ctx: &Context,
        batch: &Batch,
        opt: &mut Optimizer,
    ) -> Result<StepReport> {
        let mut rec = Recorder::new(ctx, "tagger step");
        self.zero_grad(&mut rec)?;
        let (loss, saved) = self.loss(&mut rec, batch)?;
        self.backward(&mut rec, &loss, &saved)?;
        opt.step(&mut rec)?;
        finish_step_async(rec, &loss.loss, opt).await
    }
}

impl Module for BiLstmTagger {
    fn params(&self) -> Vec<Param> {
        let mut out = self.embedding.params();
        out.extend(self.lstm.params());
        out.extend(self.fc.params());
        out
    }

    fn named_params(&self) -> Vec<Named> {
        let mut out = prefixed("embedding", self.embedding.named_params());
        out.extend(prefixed("lstm", self.lstm.named_params()));
        out.extend(prefixed("fc", self.fc.named_params()));
        out
    }
}
