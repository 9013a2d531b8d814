//! A recurrent language model (embedding → stacked RNN, LSTM or GRU → linear →
//! cross-entropy of the next token), trained by truncated backpropagation through
//! time over continuous streams: each chunk starts from the state the previous
//! chunk ended in, and its backward stops there. Generation samples on the GPU.

use super::recurrent::{self, Config, Mode, Recurrent};
use super::{prefixed, Embedding, Linear, Module, Named, Param, SplitMix};
use crate::data::Batch;
use crate::error::Result;
use crate::gpu::{Context, Recorder};
use crate::ops::cross_entropy::{self, Loss};
use crate::ops::embedding::Index;
use crate::ops::sample;
use crate::tensor::Tensor;
use crate::train::{finish_step_async, Optimizer, StepReport};

/// See the module docs.
#[derive(Debug)]
pub struct LanguageModel {
    pub embedding: Embedding,
    pub rnn: Recurrent,
    pub fc: Linear,
}

/// The recurrent state a chunk ends in: `[L, B, H]` (and the LSTM's cell state).
#[derive(Clone, Debug)]
pub struct State {
    pub h: Tensor,
    pub c: Option<Tensor>,
}

/// What [`LanguageModel::backward`] needs from the forward.
#[derive(Debug)]
pub struct Saved {
    index: Index,
    rnn: recurrent::Saved,
    hidden: Tensor,
}

impl LanguageModel {
    /// `vocab` tokens embedded in `emb` dimensions, `layers` of `hidden` units of
    /// `mode` (unidirectional), from `seed`.
    pub fn new(
        ctx: &Context,
        vocab: usize,
        emb: usize,
        hidden: usize,
        layers: usize,
        mode: Mode,
        seed: u64,
    ) -> Result<Self> {
        let cfg = Config {
            mode,
            input_size: emb,
            hidden_size: hidden,
            num_layers: layers,
            bidirectional: false,
        };
        Ok(Self {
            embedding: Embedding::new(ctx, vocab, emb, None, seed)?,
            rnn: Recurrent::new(ctx, cfg, seed + 1)?,
            fc: Linear::new(ctx, hidden, vocab, true, seed + 2)?,
        })
    }

    /// Records the logits `[B, T, V]` of `ids` (row-major `[B, T]`, every
    /// sequence T long) from `state` (zero when `None`); returns them, the state
    /// the chunk ends in, and what backward needs.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        ids: &[u32],
        batch: usize,
        steps: usize,
        state: Option<&State>,
    ) -> Result<(Tensor, State, Saved)> {
        let (emb, index) = self.embedding.forward(rec, ids, &[batch, steps])?;
        let (h0, c0) = match state {
            Some(s) => (Some(&s.h), s.c.as_ref()),
            None => (None, None),
        };
        let (out, rnn) = self.rnn.forward(rec, &emb, &vec![steps; batch], h0, c0)?;
        let logits = self.fc.forward(rec, &out.y)?;
        let next = State {
            h: out.h_n,
            c: out.c_n,
        };
        Ok((
            logits,
            next,
            Saved {
                index,
                rnn,
                hidden: out.y,
            },
        ))
    }

    /// Records the forward of `batch` (ids, next-token targets) and the mean
    /// cross-entropy over its targets.
    pub fn loss(
        &self,
        rec: &mut Recorder,
        batch: &Batch,
        state: Option<&State>,
    ) -> Result<(Loss, State, Saved)> {
        let (logits, next, saved) =
            self.forward(rec, &batch.ids, batch.size, batch.steps, state)?;
        let loss = cross_entropy::forward(rec, &logits, &batch.targets, Some(Batch::IGNORE))?;
        Ok((loss, next, saved))
    }

    /// Records the backward from the loss's gradient; it stops at the chunk's
    /// initial state (truncated BPTT).
    pub fn backward(&self, rec: &mut Recorder, loss: &Loss, saved: &Saved) -> Result<()> {
        let dy = self.fc.backward(rec, &loss.dlogits, &saved.hidden)?;
        let g = self.rnn.backward(rec, &saved.rnn, &dy, None, None)?;
        self.embedding.backward(rec, &g.dx, &saved.index)
    }

    /// One training step on a chunk, one submit: returns the loss and gradient
    /// norm, and the state to start the next chunk from.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_step(
        &self,
        ctx: &Context,
        batch: &Batch,
        state: Option<&State>,
        opt: &mut Optimizer,
    ) -> Result<(StepReport, State)> {
        pollster::block_on(self.train_step_async(ctx, batch, state, opt))
    }

    /// [`train_step`](Self::train_step), awaited.
    pub async fn train_step_async(
        &self,
        ctx: &Context,
        batch: &Batch,
        state: Option<&State>,
        opt: &mut Optimizer,
    ) -> Result<(StepReport, State)> {
        let mut rec = Recorder::new(ctx, "language model step");
        self.zero_grad(&mut rec)?;
        let (loss, next, saved) = self.loss(&mut rec, batch, state)?;
        self.backward(&mut rec, &loss, &saved)?;
        opt.step(&mut rec)?;
        Ok((finish_step_async(rec, &loss.loss, opt).await?, next))
    }

    /// Reads `prime` (at least one token), then samples `n` tokens one at a time
    /// at `temperature`, the uniform numbers drawn from `seed`; returns the
    /// sampled tokens. Each step is one submit that reads back one id.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sample(
        &self,
        ctx: &Context,
        prime: &[u32],
        n: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<Vec<u32>> {
        pollster::block_on(self.sample_async(ctx, prime, n, temperature, seed))
    }

    /// [`sample`](Self::sample), awaited.
    pub async fn sample_async(
        &self,
        ctx: &Context,
        prime: &[u32],
        n: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<Vec<u32>> {
        let mut rng = SplitMix::new(seed);
        let mut rec = Recorder::new(ctx, "language model sample");
        let (logits, mut state, _) = self.forward(&mut rec, prime, 1, prime.len(), None)?;
        let v = self.fc_outputs();
        // The last position's logits predict the first sampled token.
        let mut last = Tensor::empty(ctx, &[1, v], crate::DType::F32)?;
        rec.copy_range(&last, 0, &logits, (prime.len() - 1) * v, v)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let u = Tensor::from_slice(ctx, &[1], &[rng.uniform_unit()])?;
            let id = sample::forward(&mut rec, &last, &u, temperature)?;
            std::mem::replace(&mut rec, Recorder::new(ctx, "language model sample")).submit();
            let id = id.to_vec_u32_async().await?[0];
            out.push(id);
            if i + 1 < n {
                let (logits, next, _) = self.forward(&mut rec, &[id], 1, 1, Some(&state))?;
                last = logits.reshape(&[1, v])?;
                state = next;
            }
        }
        Ok(out)
    }

    fn fc_outputs(&self) -> usize {
        self.embedding.weight().shape()[0]
    }
}

impl Module for LanguageModel {
    fn params(&self) -> Vec<Param> {
        let mut out = self.embedding.params();
        out.extend(self.rnn.params());
        out.extend(self.fc.params());
        out
    }

    fn named_params(&self) -> Vec<Named> {
        let mut out = prefixed("embedding", self.embedding.named_params());
        out.extend(prefixed("rnn", self.rnn.named_params()));
        out.extend(prefixed("fc", self.fc.named_params()));
        out
    }
}
