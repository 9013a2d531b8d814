//! The encoder: source embeddings through LSTM or transformer layers, and the
//! decoder's initial state.

use super::decoder::State;
use super::Seq2Seq;
use crate::data::Batch;
use crate::error::Result;
use crate::nn::{HiddenState, Lstm, LstmState, MinGru, MinLstm, TransformerEncoderLayer};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// The encoder of a [`Seq2Seq`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Encoder {
    /// LSTM layers.
    Lstm(Lstm),
    /// minGRU layers.
    MinGru(MinGru),
    /// minLSTM layers.
    MinLstm(MinLstm),
    /// Transformer encoder layers.
    Transformer(Vec<TransformerEncoderLayer>),
}

/// The encoder's outputs as the decoder reads them.
#[derive(Clone, Debug)]
pub(super) struct Memory {
    /// `[N, S, Hd]`
    pub keys: Var,
    /// `[N]`
    pub lengths: Vec<usize>,
}

impl Seq2Seq {
    /// Records the encoder over `src` and the decoder's initial state.
    pub(super) fn encode(&self, tape: &mut Tape, src: &Batch) -> Result<(Memory, State)> {
        let (b, s) = (src.size, src.steps);
        let emb = self.src_embedding.apply(tape, &src.ids, &[b, s])?;
        let emb = self.dropout.apply(tape, &emb)?;
        let (keys, state) = match &self.encoder {
            Encoder::Lstm(lstm) => {
                let (y, LstmState { h, c }) = lstm.apply(tape, &emb, &src.lengths, None)?;
                let state = State {
                    h: self.bridge(tape, &h, b)?,
                    c: self.bridge(tape, &c, b)?,
                    feed: self.zero_feed(tape, b)?,
                };
                (y, state)
            }
            Encoder::MinGru(m) => {
                let (y, HiddenState { h }) = m.apply(tape, &emb, &src.lengths, None)?;
                (y, self.without_cell_state(tape, &h, b)?)
            }
            Encoder::MinLstm(m) => {
                let (y, HiddenState { h }) = m.apply(tape, &emb, &src.lengths, None)?;
                (y, self.without_cell_state(tape, &h, b)?)
            }
            Encoder::Transformer(layers) => {
                let e = self.cfg.emb;
                let pe = tape.from_slice(&[b, s, e], &positions(b, s, e))?;
                let mut x = tape.add(&emb, &pe)?;
                for layer in layers {
                    x = layer.apply(tape, &x, &src.lengths)?;
                }
                // No final state: the decoder starts from zero, a constant.
                let state = State {
                    h: self.zero_state(tape, b)?,
                    c: self.zero_state(tape, b)?,
                    feed: self.zero_feed(tape, b)?,
                };
                (x, state)
            }
        };
        let memory = Memory {
            keys,
            lengths: src.lengths.clone(),
        };
        Ok((memory, state))
    }

    /// A decoder state `[L, B, Hd]` of zeros, a constant.
    fn zero_state(&self, tape: &Tape, b: usize) -> Result<Var> {
        let shape = [self.cfg.layers, b, self.cfg.decoder_hidden()];
        Ok(Var::constant(Tensor::zeros(tape.context(), &shape)?))
    }

    /// The decoder's initial state from an encoder with no cell state (minGRU,
    /// minLSTM): its final states `h_n`, a zero cell state.
    fn without_cell_state(&self, tape: &mut Tape, h_n: &Var, b: usize) -> Result<State> {
        Ok(State {
            h: self.bridge(tape, h_n, b)?,
            c: self.zero_state(tape, b)?,
            feed: self.zero_feed(tape, b)?,
        })
    }

    /// Encoder final states `[L·D, B, H]` → decoder initial states `[L, B, D·H]`:
    /// each layer's two directions side by side.
    fn bridge(&self, tape: &mut Tape, s_n: &Var, b: usize) -> Result<Var> {
        let (l, h) = (self.cfg.layers, self.cfg.hidden);
        if !self.cfg.bidirectional {
            return Ok(s_n.clone());
        }
        let by_dir = tape.reshape(s_n, &[l, 2, b, h])?;
        let by_row = tape.transpose(&by_dir, 1)?;
        tape.reshape(&by_row, &[l, b, 2 * h])
    }
}

/// Sinusoidal position encodings (Vaswani et al.) of `s` positions of `e`
/// features, repeated for `b` sequences: `[b, s, e]` row-major.
fn positions(b: usize, s: usize, e: usize) -> Vec<f32> {
    let one: Vec<f32> = (0..s)
        .flat_map(|pos| {
            (0..e).map(move |i| {
                let rate = (10000f64).powf(-((i / 2 * 2) as f64) / e as f64);
                let angle = pos as f64 * rate;
                (if i % 2 == 0 { angle.sin() } else { angle.cos() }) as f32
            })
        })
        .collect();
    one.repeat(b)
}
