//! The BiLSTM tagger (embedding → bidirectional LSTM → linear → masked
//! cross-entropy), written forward-only from the layers as a user would write it. Its
//! state_dict names are those of a PyTorch module with the fields `embedding`,
//! `lstm` and `fc`, so such a module's saved weights load here.

use crate::data::Batch;
use crate::error::Result;
use crate::gpu::Context;
use crate::nn::recurrent::{Config, Mode, Recurrent};
use crate::nn::{prefixed, Dropout, Embedding, Entry, Linear, Module};
use crate::tape::{Tape, Var};
use crate::tensor::DType;
use crate::train::{Step, TrainStep};

/// See the module docs. Dropout (none unless [`with_dropout`](Self::with_dropout))
/// applies to the embeddings and the LSTM outputs in training steps only.
#[derive(Debug)]
pub struct BiLstmTagger {
    pub embedding: Embedding,
    pub lstm: Recurrent,
    pub fc: Linear,
    pub dropout: Dropout,
}

/// The sizes of a [`BiLstmTagger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaggerConfig {
    /// Words in the vocabulary.
    pub vocab: usize,
    /// Embedding size.
    pub emb: usize,
    /// LSTM units per direction.
    pub hidden: usize,
    /// Tag classes.
    pub tags: usize,
    /// The padding word (its embedding stays zero).
    pub pad: u32,
}

impl BiLstmTagger {
    /// A tagger initialized as PyTorch does, from `seed`.
    pub fn new(ctx: &Context, cfg: TaggerConfig, seed: u64) -> Result<Self> {
        let lstm = Config {
            mode: Mode::Lstm,
            input_size: cfg.emb,
            hidden_size: cfg.hidden,
            num_layers: 1,
            bidirectional: true,
        };
        Ok(Self {
            embedding: Embedding::new(ctx, cfg.vocab, cfg.emb, Some(cfg.pad), seed)?,
            lstm: Recurrent::new(ctx, lstm, seed + 1)?,
            fc: Linear::new(ctx, 2 * cfg.hidden, cfg.tags, true, seed + 2)?,
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

    /// Records the logits `[B, T, tags]` of a batch on `tape` (dropout on a
    /// training tape only).
    pub fn forward(&self, tape: &mut Tape, batch: &Batch) -> Result<Var> {
        let emb = self
            .embedding
            .apply(tape, &batch.ids, &[batch.size, batch.steps])?;
        let emb = self.dropout.apply(tape, &emb)?;
        let lstm = self.lstm.apply(tape, &emb, &batch.lengths, None, None)?;
        let hidden = self.dropout.apply(tape, &lstm.y)?;
        self.fc.apply(tape, &hidden)
    }
}

impl TrainStep for BiLstmTagger {
    type Batch = Batch;
    type Carry = ();
    const LABEL: &'static str = "tagger step";

    /// The mean cross-entropy over the real tokens, with their accuracy as
    /// `accuracy`.
    fn loss(&self, tape: &mut Tape, batch: &Batch) -> Result<Step> {
        let logits = self.forward(tape, batch)?;
        let (loss, accuracy) =
            tape.cross_entropy_with_accuracy(&logits, &batch.targets, Some(Batch::IGNORE))?;
        Ok(Step::new(loss).metric("accuracy", accuracy))
    }
}

impl Module for BiLstmTagger {
    fn entries(&self) -> Vec<Entry> {
        let mut out = prefixed("embedding", self.embedding.entries());
        out.extend(prefixed("lstm", self.lstm.entries()));
        out.extend(prefixed("fc", self.fc.entries()));
        out
    }
}
