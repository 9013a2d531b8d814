//! The BiLSTM tagger (embedding → bidirectional LSTM → linear → masked
//! cross-entropy), written forward-only from the layers as a user would write it,
//! optionally character-aware: a [`CharEncoder`] over each word's characters
//! beside the word embedding, so that unknown words are read by their spelling;
//! optionally a BiLSTM-CRF ([`TaggerConfig::with_crf`]): a linear-chain [`Crf`]
//! over the linear layer's scores, trained on whole tag paths and decoded by
//! Viterbi. Its state_dict names are those of a PyTorch module with the fields
//! `embedding`, `chars` (with a character encoder), `lstm`, `fc` and `crf`
//! (pytorch-crf's), so such a module's saved weights load here.
//!
//! ```
//! use rnn_wgpu::data::{Batch, Vocab};
//! use rnn_wgpu::models::{BiLstmTagger, TaggerConfig};
//! use rnn_wgpu::nn::Module;
//! use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     // 20 words, 4 tags; two sentences (ids, tags), padded with id 0.
//!     let model = BiLstmTagger::new(&ctx, TaggerConfig::new(20, 4).with_emb(8).with_hidden(8), 1)?;
//!     let batch = Batch::pad(&[(&[5, 9, 2, 7][..], &[0, 1, 2, 3][..]), (&[3, 4][..], &[1, 1][..])], Vocab::PAD)?;
//!     let mut opt = Optimizer::new(&ctx, OptimConfig::new(Method::ADAM, 0.05), model.params())?;
//!     let first = model.train_step(&ctx, &batch, &mut opt)?.loss;
//!     for _ in 0..40 {
//!         model.train_step(&ctx, &batch, &mut opt)?; // one submit each
//!     }
//!     let last = model.train_step(&ctx, &batch, &mut opt)?;
//!     assert!(last.loss < first / 4.0);
//!     assert_eq!(last.metric("accuracy"), Some(1.0));
//!     let mut tape = Tape::eval(&ctx, "tag");
//!     let logits = model.forward(&mut tape, &batch)?; // [B, T, tags]
//!     tape.into_recorder().submit();
//!     assert_eq!(logits.shape(), [2, 4, 4]);
//!     Ok(())
//! }
//! ```

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::nn::recurrent::Mode;
use crate::nn::stack::Stack;
use crate::nn::{
    prefixed, Cell, CharEncoder, Config, Crf, Dropout, Embedding, Entry, Linear, Module,
};
use crate::ops::argmax;
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};
use crate::train::{Step, TrainStep};

/// See the module docs. Dropout (none unless [`with_dropout`](Self::with_dropout))
/// applies to the word vectors, between stacked layers and to the LSTM outputs,
/// in training steps only. The parameters are reachable through [`Module`]:
/// `embedding.weight`, `chars.*`, `lstm.*` (whatever the cell) and `fc.*`.
#[derive(Debug)]
pub struct BiLstmTagger {
    embedding: Embedding,
    /// The character encoder ([`TaggerConfig::chars`]).
    chars: Option<CharEncoder>,
    /// The bidirectional stack ([`TaggerConfig::cell`]), `lstm.*`.
    lstm: Stack,
    fc: Linear,
    /// The CRF over the tag scores ([`TaggerConfig::crf`]).
    crf: Option<Crf>,
    /// Dropout on the embeddings and the stack's outputs.
    dropout: Dropout,
}

/// The sizes of a [`BiLstmTagger`]: [`TaggerConfig::new`] with the vocabulary
/// and tag count, then `with_*` for the rest (fields may be read and set; a
/// field added later comes with a default, so no caller breaks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaggerConfig {
    /// Words in the vocabulary.
    pub vocab: usize,
    /// Embedding size.
    pub emb: usize,
    /// LSTM units per direction.
    pub hidden: usize,
    /// Stacked BiLSTM layers.
    pub layers: usize,
    /// Tag classes.
    pub tags: usize,
    /// The padding word (its embedding stays zero).
    pub pad: u32,
    /// A character encoder beside the word embedding; its batches then need
    /// their words' characters ([`Batch::with_chars`]).
    pub chars: Option<CharConfig>,
    /// The bidirectional stack's cell: an LSTM unless set (a GRU, or minGRU /
    /// minLSTM, trained by a scan over time).
    pub cell: Cell,
    /// A linear-chain CRF over the tag scores: the loss is the negative
    /// log-likelihood of the gold tag path, and [`BiLstmTagger::predict`]
    /// decodes each sentence's best path (Viterbi) instead of each word's best
    /// tag.
    pub crf: bool,
}

/// The sizes of a tagger's [`CharEncoder`]: [`CharConfig::new`], then `with_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CharConfig {
    /// Character ids (the padding character is [`Vocab::PAD`](crate::data::Vocab::PAD)).
    pub chars: usize,
    /// Character embedding size.
    pub emb: usize,
    /// Character LSTM units per direction; a word's vector is twice as wide.
    pub hidden: usize,
}

impl TaggerConfig {
    /// A tagger of `vocab` words and `tags` tags: embeddings of 128, 2 BiLSTM
    /// layers of 128 units per direction, padding word 0, no character encoder.
    pub fn new(vocab: usize, tags: usize) -> Self {
        Self {
            vocab,
            emb: 128,
            hidden: 128,
            layers: 2,
            tags,
            pad: 0,
            chars: None,
            cell: Cell::Recurrent(Mode::Lstm),
            crf: false,
        }
    }

    /// Embedding size.
    pub fn with_emb(self, emb: usize) -> Self {
        Self { emb, ..self }
    }

    /// LSTM units per direction.
    pub fn with_hidden(self, hidden: usize) -> Self {
        Self { hidden, ..self }
    }

    /// Stacked BiLSTM layers.
    pub fn with_layers(self, layers: usize) -> Self {
        Self { layers, ..self }
    }

    /// The padding word.
    pub fn with_pad(self, pad: u32) -> Self {
        Self { pad, ..self }
    }

    /// A character encoder beside the word embedding (`None`: none).
    pub fn with_chars(self, chars: Option<CharConfig>) -> Self {
        Self { chars, ..self }
    }

    /// The bidirectional stack's cell.
    pub fn with_cell(self, cell: Cell) -> Self {
        Self { cell, ..self }
    }

    /// A CRF over the tag scores (see [`crf`](Self::crf)).
    pub fn with_crf(self, crf: bool) -> Self {
        Self { crf, ..self }
    }
}

impl CharConfig {
    /// A character encoder over `chars` character ids: embeddings of 32, a
    /// BiLSTM of 64 units per direction.
    pub fn new(chars: usize) -> Self {
        Self {
            chars,
            emb: 32,
            hidden: 64,
        }
    }

    /// Character embedding size.
    pub fn with_emb(self, emb: usize) -> Self {
        Self { emb, ..self }
    }

    /// Character LSTM units per direction.
    pub fn with_hidden(self, hidden: usize) -> Self {
        Self { hidden, ..self }
    }
}

impl BiLstmTagger {
    /// A tagger initialized as PyTorch does, from `seed`.
    pub fn new(ctx: &Context, cfg: TaggerConfig, seed: u64) -> Result<Self> {
        if cfg.pad as usize >= cfg.vocab {
            return Err(Error::IndexOutOfRange {
                op: "BiLstmTagger::new",
                what: "pad (the padding word id)",
                index: 0,
                value: cfg.pad as usize,
                bound: cfg.vocab,
            });
        }
        let chars = cfg
            .chars
            .map(|c| CharEncoder::new(ctx, c.chars, c.emb, c.hidden, seed + 3))
            .transpose()?;
        let input = cfg.emb + chars.as_ref().map_or(0, CharEncoder::width);
        let sizes = Config::new(input, cfg.hidden)
            .with_layers(cfg.layers)
            .with_bidirectional(true);
        Ok(Self {
            embedding: Embedding::new(ctx, cfg.vocab, cfg.emb, Some(cfg.pad), seed)?,
            chars,
            lstm: Stack::new(ctx, cfg.cell, sizes, seed + 1)?,
            fc: Linear::new(ctx, 2 * cfg.hidden, cfg.tags, true, seed + 2)?,
            crf: cfg
                .crf
                .then(|| Crf::new(ctx, cfg.tags, seed + 4))
                .transpose()?,
            dropout: Dropout::new(0.0, seed as u32),
        })
    }

    /// The same model with dropout `p` in training steps (also between stacked
    /// layers). A `p` outside [0, 1) is an error.
    pub fn with_dropout(self, p: f32, seed: u32) -> Result<Self> {
        Ok(Self {
            lstm: self.lstm.with_dropout(p, seed.wrapping_add(1))?,
            dropout: Dropout::new(p, seed),
            ..self
        })
    }

    /// The same model with its activations stored as `dtype`: f32 (the default)
    /// or f16 (mixed precision, needs SHADER_F16). Under f16 the embedding rows,
    /// the LSTM's activations and its forward weights are f16 copies, every kernel
    /// accumulates in f32, and the parameters, gradients, optimizer state, logits
    /// and loss stay f32. With a character encoder the word vectors stay f32 (they
    /// are concatenated with the characters' vectors) and only the BiLSTM is f16.
    pub fn with_storage(self, dtype: DType) -> Result<Self> {
        let lstm = self.lstm.with_storage(dtype)?;
        let embedding = if self.chars.is_some() {
            self.embedding
        } else {
            self.embedding.with_storage(dtype)?
        };
        Ok(Self {
            embedding,
            lstm,
            ..self
        })
    }

    /// Records the logits `[B, T, tags]` of a batch on `tape` (dropout on a
    /// training tape only). A character-aware tagger needs the batch's
    /// characters.
    pub fn forward(&self, tape: &mut Tape, batch: &Batch) -> Result<Var> {
        let shape = [batch.size, batch.steps];
        let mut emb = self.embedding.apply(tape, &batch.ids, &shape)?;
        if let Some(encoder) = &self.chars {
            let words = batch.chars.as_ref().ok_or(Error::InvalidArgument {
                op: "tagger",
                what: "batch",
                expected: "the characters of its words (Batch::with_chars)",
                got: "a batch without them".into(),
            })?;
            let spelled = encoder.apply(tape, words, shape)?;
            emb = tape.concat(&emb, &spelled, 2)?;
        }
        let emb = self.dropout.apply(tape, &emb)?;
        let (y, _) = self.lstm.apply(tape, &emb, &batch.lengths, None)?;
        let hidden = self.dropout.apply(tape, &y)?;
        self.fc.apply(tape, &hidden)
    }

    /// Records the predicted tags of a batch: u32 `[B, T]`, each sentence's
    /// best path under the CRF (Viterbi) or, without one, each word's highest
    /// score; past a sentence's length, [`NO_TAG`](crate::nn::crf::NO_TAG) with
    /// a CRF and a tag without.
    pub fn predict(&self, tape: &mut Tape, batch: &Batch) -> Result<Tensor> {
        let scores = self.forward(tape, batch)?;
        match &self.crf {
            Some(crf) => crf.decode(tape.rec(), &scores, &batch.lengths),
            None => argmax::forward(tape.rec(), &scores),
        }
    }
}

impl TrainStep for BiLstmTagger {
    type Batch = Batch;
    type Carry = ();
    const LABEL: &'static str = "tagger step";

    /// The mean cross-entropy over the real tokens, with their accuracy as
    /// `accuracy`; with a CRF, the gold paths' negative log-likelihood per
    /// token (no accuracy: that needs decoding).
    fn loss(&self, tape: &mut Tape, batch: &Batch) -> Result<Step> {
        let logits = self.forward(tape, batch)?;
        if let Some(crf) = &self.crf {
            return Ok(Step::new(crf.nll(
                tape,
                &logits,
                &batch.targets,
                &batch.lengths,
            )?));
        }
        let (loss, accuracy) =
            tape.cross_entropy_with_accuracy(&logits, &batch.targets, Some(Batch::IGNORE))?;
        Ok(Step::new(loss).metric("accuracy", accuracy))
    }
}

impl Module for BiLstmTagger {
    fn entries(&self) -> Vec<Entry> {
        let mut out = prefixed("embedding", self.embedding.entries());
        if let Some(chars) = &self.chars {
            out.extend(prefixed("chars", chars.entries()));
        }
        out.extend(prefixed("lstm", self.lstm.entries()));
        out.extend(prefixed("fc", self.fc.entries()));
        if let Some(crf) = &self.crf {
            out.extend(prefixed("crf", crf.entries()));
        }
        out
    }
}
