//! A many-to-one sequence classifier: embedding → recurrent layers → one vector
//! per sequence (the readout) → linear → cross-entropy, written forward-only.
//! The readouts:
//! - [`Readout::Final`]: the top layer's final states (each sequence's own last
//!   real step forward, its first step backward), side by side;
//! - [`Readout::Mean`]: the outputs averaged over each sequence's real positions;
//! - [`Readout::LastStep`]: the outputs at the last padded position — the common
//!   mistake with padded batches, kept to show it: for every sequence shorter
//!   than the batch's longest, that position is padding and carries nothing.
//!
//! State_dict names: `embedding.*`, `rnn.*` (torch.nn.LSTM/GRU/RNN) and `fc.*`.
//!
//! ```
//! use rnn_wgpu::data::{LabeledBatch, Vocab};
//! use rnn_wgpu::models::classifier::{ClassifierConfig, Readout, SequenceClassifier};
//! use rnn_wgpu::nn::{Config, Mode, Module};
//! use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
//! use rnn_wgpu::{Context, Result};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let rnn = Config::new(0, 8).with_bidirectional(true); // input size: the embedding's
//!     let cfg = ClassifierConfig::new(12, 2, Mode::Gru, rnn).with_emb(8).with_readout(Readout::Mean);
//!     let model = SequenceClassifier::new(&ctx, cfg, 1)?;
//!     // Class 1 when the sequence holds word 7.
//!     let batch = LabeledBatch::pad(&[(&[2, 7, 3][..], 1), (&[4, 5][..], 0), (&[7][..], 1), (&[6, 3, 2, 5][..], 0)], Vocab::PAD)?;
//!     let mut opt = Optimizer::new(&ctx, OptimConfig::new(Method::ADAM, 0.05), model.params())?;
//!     let first = model.train_step(&ctx, &batch, &mut opt)?.loss;
//!     for _ in 0..30 {
//!         model.train_step(&ctx, &batch, &mut opt)?;
//!     }
//!     assert!(model.train_step(&ctx, &batch, &mut opt)?.loss < first / 4.0);
//!     Ok(())
//! }
//! ```

use crate::data::LabeledBatch;
use crate::error::Result;
use crate::gpu::Context;
use crate::nn::recurrent::Config;
use crate::nn::stack::Stack;
use crate::nn::{prefixed, Cell, Embedding, Entry, Linear, Module};
use crate::tape::{Tape, Var};
use crate::train::{Step, TrainStep};

/// How a sequence becomes one vector. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readout {
    /// The top layer's final states, side by side.
    Final,
    /// The outputs averaged over each sequence's real positions.
    Mean,
    /// The outputs at the last padded position (the mistake, kept to show it).
    LastStep,
}

/// See the module docs. The parameters are reachable through [`Module`]:
/// `embedding.weight`, `rnn.*` (whatever the cell) and `fc.*`.
#[derive(Debug)]
pub struct SequenceClassifier {
    embedding: Embedding,
    /// The recurrent stack ([`ClassifierConfig::cell`]).
    rnn: Stack,
    fc: Linear,
    /// How a sequence becomes one vector.
    readout: Readout,
}

/// The sizes of a [`SequenceClassifier`]: [`ClassifierConfig::new`], then `with_*`.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ClassifierConfig {
    /// Words in the vocabulary.
    pub vocab: usize,
    /// Embedding size.
    pub emb: usize,
    /// The recurrent layers; their `input_size` is `emb`.
    pub rnn: Config,
    /// Classes.
    pub classes: usize,
    /// The padding word (its embedding stays zero).
    pub pad: u32,
    /// How a sequence becomes one vector.
    pub readout: Readout,
    /// The stack's cell: LSTM, GRU, Elman, minGRU or minLSTM.
    pub cell: Cell,
}

impl ClassifierConfig {
    /// A classifier of `vocab` words into `classes`: embeddings of 64 read by a
    /// stack of `cell` with `rnn`'s sizes (its `input_size` is set to the
    /// embedding size), padding word 0, [`Readout::Final`].
    pub fn new(vocab: usize, classes: usize, cell: impl Into<Cell>, rnn: Config) -> Self {
        Self {
            vocab,
            emb: 64,
            rnn,
            classes,
            pad: 0,
            readout: Readout::Final,
            cell: cell.into(),
        }
    }

    /// Embedding size.
    pub fn with_emb(self, emb: usize) -> Self {
        Self { emb, ..self }
    }

    /// The padding word.
    pub fn with_pad(self, pad: u32) -> Self {
        Self { pad, ..self }
    }

    /// How a sequence becomes one vector.
    pub fn with_readout(self, readout: Readout) -> Self {
        Self { readout, ..self }
    }

    /// The stack's cell.
    pub fn with_cell(self, cell: impl Into<Cell>) -> Self {
        Self {
            cell: cell.into(),
            ..self
        }
    }
}

impl SequenceClassifier {
    /// A classifier initialized as PyTorch does, from `seed`.
    pub fn new(ctx: &Context, cfg: ClassifierConfig, seed: u64) -> Result<Self> {
        let r = cfg.rnn;
        let sizes = r.with_input_size(cfg.emb);
        let dirs = r.dirs();
        Ok(Self {
            embedding: Embedding::new(ctx, cfg.vocab, cfg.emb, Some(cfg.pad), seed)?,
            rnn: Stack::new(ctx, cfg.cell, sizes, seed + 1)?,
            fc: Linear::new(ctx, dirs * r.hidden_size, cfg.classes, true, seed + 2)?,
            readout: cfg.readout,
        })
    }

    /// Records the logits `[B, classes]` of a batch on `tape`.
    pub fn forward(&self, tape: &mut Tape, batch: &LabeledBatch) -> Result<Var> {
        let (n, t) = (batch.size, batch.steps);
        let s = self.rnn.config();
        let (h, d) = (s.hidden_size, s.dirs());
        let emb = self.embedding.apply(tape, &batch.ids, &[n, t])?;
        let (y, last) = self.rnn.apply(tape, &emb, &batch.lengths, None)?;
        let feature = match self.readout {
            Readout::Final => {
                // h_n is [L·D, B, H]: the top layer's directions, side by side.
                let top = tape.slice(last.h(), 0, (s.num_layers - 1) * d, d)?;
                let mut both = tape.slice(&top, 0, 0, 1)?;
                both = tape.reshape(&both, &[n, h])?;
                if d == 2 {
                    let back = tape.slice(&top, 0, 1, 1)?;
                    let back = tape.reshape(&back, &[n, h])?;
                    both = tape.concat(&both, &back, 1)?;
                }
                both
            }
            Readout::Mean => tape.mean(&y, 1, Some(&batch.lengths))?,
            Readout::LastStep => {
                let at_end = tape.slice(&y, 1, t - 1, 1)?;
                tape.reshape(&at_end, &[n, d * h])?
            }
        };
        self.fc.apply(tape, &feature)
    }
}

impl TrainStep for SequenceClassifier {
    type Batch = LabeledBatch;
    type Carry = ();
    const LABEL: &'static str = "classifier step";

    /// The mean cross-entropy, with the batch's accuracy as `accuracy`.
    fn loss(&self, tape: &mut Tape, batch: &LabeledBatch) -> Result<Step> {
        let logits = self.forward(tape, batch)?;
        let (loss, accuracy) = tape.cross_entropy_with_accuracy(&logits, &batch.labels, None)?;
        Ok(Step::new(loss).metric("accuracy", accuracy))
    }
}

impl Module for SequenceClassifier {
    fn entries(&self) -> Vec<Entry> {
        let mut out = prefixed("embedding", self.embedding.entries());
        out.extend(prefixed("rnn", self.rnn.entries()));
        out.extend(prefixed("fc", self.fc.entries()));
        out
    }
}
