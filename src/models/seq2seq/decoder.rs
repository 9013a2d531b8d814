//! The decoder: one step at a time (input feeding and Bahdanau attention need
//! the previous step) or all teacher-forced steps at once, the output
//! projection and the loss.

use super::encoder::Memory;
use super::{Link, Seq2Seq, OP};
use crate::data::{Batch, ParallelBatch};
use crate::error::{Error, Result};
use crate::nn::LstmState;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Decoder state between steps: `[L, N, Hd]` each, and h̃ `[N, Hd]` for input feeding.
#[derive(Clone, Debug)]
pub(super) struct State {
    pub h: Var,
    pub c: Var,
    pub feed: Option<Var>,
}

impl State {
    /// The decoder LSTM's part.
    fn lstm(&self) -> LstmState {
        LstmState {
            h: self.h.clone(),
            c: self.c.clone(),
        }
    }
}

/// What a decoder step gives besides the next state.
pub(super) struct Step {
    /// The step's output feature (h̃ or h) `[N, Hd]`, what the logits read.
    pub top: Var,
    /// The attention weights `[N, 1, S]` (attention links).
    pub weights: Option<Var>,
}

impl Seq2Seq {
    /// h̃_{−1} = 0 for input feeding, `[n, Hd]`; no state otherwise.
    pub(super) fn zero_feed(&self, tape: &Tape, n: usize) -> Result<Option<Var>> {
        match self.cfg.link {
            Link::Luong {
                input_feeding: true,
                ..
            } => Ok(Some(Var::constant(Tensor::zeros(
                tape.context(),
                &[n, self.cfg.decoder_hidden()],
            )?))),
            _ => Ok(None),
        }
    }

    /// Records one decoder step for tokens `ids` `[N]`: the new state and the
    /// step's output.
    pub(super) fn step(
        &self,
        tape: &mut Tape,
        state: &State,
        memory: &Memory,
        ids: &[u32],
    ) -> Result<(State, Step)> {
        let n = ids.len();
        let (hd, l) = (self.cfg.decoder_hidden(), self.cfg.layers);
        let emb = self.tgt_embedding.apply(tape, ids, &[n])?;
        let emb = self.dropout.apply(tape, &emb)?;
        let mut attn = None;
        let x = match (self.cfg.link, &state.feed) {
            (Link::Luong { .. }, Some(feed)) => tape.concat(&emb, feed, 1)?,
            (Link::Bahdanau { .. }, _) => {
                let top = tape.slice(&state.h, 0, l - 1, 1)?;
                let q = tape.reshape(&top, &[n, 1, hd])?;
                let (context, weights) = self.attend(tape, &q, memory)?;
                let x = tape.concat(&emb, &context, 1)?;
                attn = Some((context, weights));
                x
            }
            _ => emb,
        };
        let x = tape.reshape(&x, &[n, 1, x.shape()[1]])?;
        let (y, LstmState { h, c }) =
            self.decoder
                .apply(tape, &x, &vec![1; n], Some(&state.lstm()))?;
        let h_t = tape.reshape(&y, &[n, hd])?;
        if let Link::Luong { .. } = self.cfg.link {
            attn = Some(self.attend(tape, &y, memory)?);
        }
        let (top, weights) = match (attn, &self.combine) {
            (Some((context, weights)), Some(combine)) => {
                let comb = tape.concat(&context, &h_t, 1)?;
                let pre = combine.apply(tape, &comb)?;
                (tape.tanh(&pre)?, Some(weights))
            }
            _ => (h_t, None),
        };
        let next = State {
            h,
            c,
            feed: state.feed.as_ref().map(|_| top.clone()),
        };
        Ok((next, Step { top, weights }))
    }

    /// Attention of `q` `[N, 1, Hd]` over the memory: the context `[N, Hd]` and
    /// the weights `[N, 1, S]`.
    fn attend(&self, tape: &mut Tape, q: &Var, memory: &Memory) -> Result<(Var, Var)> {
        let attention = self.attention.as_ref().ok_or(Error::Empty {
            op: OP,
            what: "attention layer",
            shape: vec![],
        })?;
        let (context, weights) = attention.apply(tape, q, &memory.keys, &memory.lengths)?;
        let n = q.shape()[0];
        let context = tape.reshape(&context, &[n, self.cfg.decoder_hidden()])?;
        Ok((context, weights))
    }

    /// Records the teacher-forced forward of a batch: the logits `[T, B, V]` (time
    /// major: step t of every sequence together).
    pub fn forward(&self, tape: &mut Tape, batch: &ParallelBatch) -> Result<Var> {
        let (b, t) = (batch.tgt.size, batch.tgt.steps);
        if batch.src.size != b {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "target batch",
                expected: format!("{} sequences like the sources", batch.src.size),
                got: vec![b, t],
            });
        }
        let hd = self.cfg.decoder_hidden();
        let (memory, mut state) = self.encode(tape, &batch.src)?;
        let tops = if self.parallel() {
            let top = self.decode_parallel(tape, &state, &memory, &batch.tgt)?;
            // Time-major rows: row s·B + i holds sequence i's step s.
            let rows: Vec<usize> = (0..t * b).map(|r| (r % b) * t + r / b).collect();
            tape.permute_rows(&top, &rows)?
        } else {
            let mut tops = Vec::with_capacity(t);
            for s in 0..t {
                let ids: Vec<u32> = (0..b).map(|i| batch.tgt.ids[i * t + s]).collect();
                let (next, step) = self.step(tape, &state, &memory, &ids)?;
                tops.push(step.top);
                state = next;
            }
            tape.cat(&tops.iter().collect::<Vec<_>>(), 0)?
        };
        let tops = tape.reshape(&tops, &[t, b, hd])?;
        let tops = self.dropout.apply(tape, &tops)?;
        self.logits(tape, &tops)
    }

    /// Whether training may run the decoder over all steps at once.
    fn parallel(&self) -> bool {
        matches!(
            self.cfg.link,
            Link::None
                | Link::Luong {
                    input_feeding: false,
                    ..
                }
        )
    }

    /// Records the decoder over all target steps at once (teacher forcing without
    /// input feeding): one recurrent pass, attention with every step's query,
    /// the attentional hidden states; the same math as [`step`](Self::step) T
    /// times. Returns the output features `[B·T, Hd]` (batch-major rows).
    fn decode_parallel(
        &self,
        tape: &mut Tape,
        state: &State,
        memory: &Memory,
        tgt: &Batch,
    ) -> Result<Var> {
        let (b, t, hd) = (tgt.size, tgt.steps, self.cfg.decoder_hidden());
        let emb = self.tgt_embedding.apply(tape, &tgt.ids, &[b, t])?;
        let emb = self.dropout.apply(tape, &emb)?;
        let (y, _) = self
            .decoder
            .apply(tape, &emb, &vec![t; b], Some(&state.lstm()))?;
        let top = match (&self.attention, &self.combine) {
            (Some(attention), Some(combine)) => {
                let (context, _) = attention.apply(tape, &y, &memory.keys, &memory.lengths)?;
                let comb = tape.concat(&context, &y, 2)?;
                let pre = combine.apply(tape, &comb)?;
                tape.tanh(&pre)?
            }
            _ => y,
        };
        tape.reshape(&top, &[b * t, hd])
    }

    /// Records the forward and the mean cross-entropy over the real target tokens
    /// (against label-smoothed targets on a training tape, if so made).
    pub fn loss(&self, tape: &mut Tape, batch: &ParallelBatch) -> Result<Var> {
        let logits = self.forward(tape, batch)?;
        let (b, t) = (batch.tgt.size, batch.tgt.steps);
        // Time-major targets, as the logits.
        let targets: Vec<u32> = (0..t * b)
            .map(|i| batch.tgt.targets[(i % b) * t + i / b])
            .collect();
        if tape.is_training() && self.label_smoothing > 0.0 {
            tape.cross_entropy_smoothed(
                &logits,
                &targets,
                Some(Batch::IGNORE),
                self.label_smoothing,
            )
        } else {
            tape.cross_entropy(&logits, &targets, Some(Batch::IGNORE))
        }
    }
}
