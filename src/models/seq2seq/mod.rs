//! The LSTM encoder-decoder: an embedding and a (bi)LSTM encoder, an LSTM decoder
//! started from the encoder's final state, linked to the encoder's outputs by
//! attention or by nothing else (the bottleneck), trained with teacher forcing
//! and decoded by greedy or beam search on the GPU.
//!
//! Decoder step t, for a decoder input token y (BOS first, then the target):
//! - [`Link::None`]: h_t = LSTM(emb(y), h_{t−1}); logits = W_out·h_t.
//! - [`Link::Luong`]: h_t = LSTM(x_t, h_{t−1}) with x_t = emb(y), or
//!   [emb(y); h̃_{t−1}] with input feeding (h̃_{−1} = 0); c_t = attention of h_t
//!   over the encoder outputs; h̃_t = tanh(W_c·[c_t; h_t]); logits = W_out·h̃_t.
//! - [`Link::Bahdanau`]: c_t = additive attention of the previous top-layer state
//!   over the encoder outputs; h_t = LSTM([emb(y); c_t], h_{t−1});
//!   h̃_t = tanh(W_c·[c_t; h_t]); logits = W_out·h̃_t.
//!
//! With a bidirectional encoder of H units per direction the decoder has 2H, its
//! initial state in layer l the two directions' final states of encoder layer l
//! side by side. A transformer encoder ([`EncoderKind::Transformer`]: embeddings
//! plus sinusoidal positions through encoder layers of `emb` features) has no
//! final state: the decoder (`emb` units) starts from zero and attention is its
//! only link to the source. Training runs the decoder one step at a time (input feeding and
//! Bahdanau need the previous step's output; without them all steps run at once),
//! then one output projection and one masked cross-entropy over all steps. The
//! model is written forward-only: the tape records the backward.
//!
//! Regularization, in training steps only: dropout
//! ([`Seq2Seq::with_dropout`]) on both embeddings, between stacked LSTM layers
//! and on the decoder's output features before the output projection
//! (OpenNMT's placement), and label smoothing of the targets
//! ([`Seq2Seq::with_label_smoothing`]); evaluation losses are the plain
//! cross-entropy.
//!
//! `encoder.rs` reads the source, `decoder.rs` runs the teacher-forced decoder and
//! the loss, `search.rs` decodes greedily or by beam search, one model or an
//! [`Ensemble`].
//!
//! ```
//! use rnn_wgpu::data::ParallelBatch;
//! use rnn_wgpu::models::seq2seq::{Link, Seq2Seq, Seq2SeqConfig};
//! use rnn_wgpu::nn::Module;
//! use rnn_wgpu::nn::attention::Score;
//! use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
//! use rnn_wgpu::{Context, Result};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     // Ids 1 and 2 begin and end targets; the task: copy the source reversed.
//!     let cfg = Seq2SeqConfig::new(10, 10, 1, 2)
//!         .with_emb(16)
//!         .with_hidden(16)
//!         .with_link(Link::Luong { score: Score::General, input_feeding: false });
//!     let model = Seq2Seq::new(&ctx, cfg, 1)?;
//!     let pairs: Vec<(Vec<u32>, Vec<u32>)> = [[3, 4, 5], [6, 7, 8], [5, 3, 9], [8, 6, 4]]
//!         .iter()
//!         .map(|s| (s.to_vec(), s.iter().rev().copied().collect()))
//!         .collect();
//!     let refs: Vec<(&[u32], &[u32])> = pairs.iter().map(|(s, t)| (&s[..], &t[..])).collect();
//!     let batch = ParallelBatch::new(&refs, 0, 1, 2)?;
//!     let mut opt = Optimizer::new(&ctx, OptimConfig::new(Method::ADAM, 0.02), model.params())?;
//!     for _ in 0..150 {
//!         model.train_step(&ctx, &batch, &mut opt)?;
//!     }
//!     let out = model.greedy(&ctx, &[&[6, 7, 8], &[3, 4, 5]], 5)?;
//!     assert_eq!(out, [vec![8, 7, 6], vec![5, 4, 3]]);
//!     Ok(())
//! }
//! ```

mod decoder;
mod encoder;
mod search;
mod stream;

pub use encoder::Encoder;
pub use search::{Ensemble, Hypothesis};
pub use stream::DecoderStream;

use crate::data::ParallelBatch;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::nn::recurrent::Config;
use crate::nn::{prefixed, Attention, Dropout, Embedding, Entry, Linear, Module, Score};
use crate::nn::{Lstm, MinGru, MinLstm, TransformerEncoderLayer};
use crate::tape::{Tape, Var};
use crate::train::{Step, TrainStep};

const OP: &str = "seq2seq";

/// How the decoder sees the encoder beyond its final state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Link {
    /// Nothing: the final encoder state is the only link (the bottleneck).
    None,
    /// Luong attention (`Score::Dot` or `Score::General`) with the new decoder
    /// state as the query; `input_feeding` feeds h̃_{t−1} into step t.
    Luong {
        /// How the decoder state scores the encoder outputs.
        score: Score,
        /// Whether h̃_{t−1} joins step t's input.
        input_feeding: bool,
    },
    /// Bahdanau: additive attention of `size` units with the previous decoder
    /// state as the query; the context joins the decoder's input.
    Bahdanau {
        /// Units of the additive score.
        size: usize,
    },
}

/// What reads the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncoderKind {
    /// LSTM layers of `hidden` units per direction.
    Lstm,
    /// minGRU layers of `hidden` units per direction, trained by a scan over
    /// the source (the decoder starts from their final states and a zero cell
    /// state).
    MinGru,
    /// minLSTM layers, as [`MinGru`](Self::MinGru).
    MinLstm,
    /// Transformer encoder layers of `emb` features, `heads` heads and a
    /// feed-forward block of `ff` units.
    Transformer {
        /// Attention heads.
        heads: usize,
        /// Units of the feed-forward block.
        ff: usize,
    },
}

/// Sizes and special tokens of a [`Seq2Seq`]: [`Seq2SeqConfig::new`], then
/// `with_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Seq2SeqConfig {
    /// Source tokens.
    pub src_vocab: usize,
    /// Target tokens.
    pub tgt_vocab: usize,
    /// Embedding size of both sides.
    pub emb: usize,
    /// LSTM encoder units per direction; the decoder has `hidden · directions`.
    pub hidden: usize,
    /// Layers of the encoder and of the decoder.
    pub layers: usize,
    /// Whether an LSTM encoder reads both ways.
    pub bidirectional: bool,
    /// What reads the source.
    pub encoder: EncoderKind,
    /// How the decoder sees the encoder.
    pub link: Link,
    /// Padding id of both vocabularies (its embeddings stay zero).
    pub pad: u32,
    /// Target-side begin- and end-of-sequence ids.
    pub bos: u32,
    /// Target-side end-of-sequence id.
    pub eos: u32,
}

impl Seq2SeqConfig {
    /// A model from `src_vocab` to `tgt_vocab` tokens whose targets start with
    /// `bos` and end with `eos`: embeddings of 128, one bidirectional LSTM
    /// encoder layer of 128 units per direction, the decoder of 256, no
    /// attention, padding id 0.
    pub fn new(src_vocab: usize, tgt_vocab: usize, bos: u32, eos: u32) -> Self {
        Self {
            src_vocab,
            tgt_vocab,
            emb: 128,
            hidden: 128,
            layers: 1,
            bidirectional: true,
            encoder: EncoderKind::Lstm,
            link: Link::None,
            pad: 0,
            bos,
            eos,
        }
    }

    /// Embedding size of both sides.
    pub fn with_emb(self, emb: usize) -> Self {
        Self { emb, ..self }
    }

    /// LSTM encoder units per direction.
    pub fn with_hidden(self, hidden: usize) -> Self {
        Self { hidden, ..self }
    }

    /// Layers of the encoder and of the decoder.
    pub fn with_layers(self, layers: usize) -> Self {
        Self { layers, ..self }
    }

    /// Whether an LSTM encoder reads both ways.
    pub fn with_bidirectional(self, bidirectional: bool) -> Self {
        Self {
            bidirectional,
            ..self
        }
    }

    /// What reads the source.
    pub fn with_encoder(self, encoder: EncoderKind) -> Self {
        Self { encoder, ..self }
    }

    /// How the decoder sees the encoder.
    pub fn with_link(self, link: Link) -> Self {
        Self { link, ..self }
    }

    /// Padding id of both vocabularies.
    pub fn with_pad(self, pad: u32) -> Self {
        Self { pad, ..self }
    }

    /// The target-side begin-of-sequence id.
    pub fn with_bos(self, bos: u32) -> Self {
        Self { bos, ..self }
    }

    /// The target-side end-of-sequence id.
    pub fn with_eos(self, eos: u32) -> Self {
        Self { eos, ..self }
    }

    fn dirs(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Decoder units (= encoder output features).
    pub fn decoder_hidden(&self) -> usize {
        match self.encoder {
            EncoderKind::Transformer { .. } => self.emb,
            _ => self.dirs() * self.hidden,
        }
    }

    /// Features of a decoder step's input.
    fn decoder_input(&self) -> usize {
        match self.link {
            Link::Luong {
                input_feeding: true,
                ..
            }
            | Link::Bahdanau { .. } => self.emb + self.decoder_hidden(),
            _ => self.emb,
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Seq2Seq {
    cfg: Seq2SeqConfig,
    /// Source embedding, `src_embedding.weight`.
    src_embedding: Embedding,
    /// Target embedding, `tgt_embedding.weight`.
    tgt_embedding: Embedding,
    /// The encoder, `encoder.*`.
    encoder: Encoder,
    /// The decoder LSTM, `decoder.*`.
    decoder: Lstm,
    /// Attention over the encoder outputs, `attention.*`, where the link has it.
    attention: Option<Attention>,
    /// W_c `[Hd, 2·Hd]`, no bias (attention links only).
    combine: Option<Linear>,
    /// `[V_tgt, Hd]` with bias; `[V_tgt, emb]`, the target embedding's table, when
    /// tied ([`Seq2Seq::with_tied_embeddings`]).
    out: Linear,
    /// `[emb, Hd]`, no bias: the output features projected to the embedding size
    /// before a tied output layer (none when untied or the sizes agree).
    out_proj: Option<Linear>,
    /// On the embeddings and the output features, in training.
    dropout: Dropout,
    /// ε of the training loss's label smoothing.
    label_smoothing: f32,
}

impl Seq2Seq {
    /// A model initialized as PyTorch initializes each layer, from `seed`.
    pub fn new(ctx: &Context, cfg: Seq2SeqConfig, seed: u64) -> Result<Self> {
        if [
            cfg.src_vocab,
            cfg.tgt_vocab,
            cfg.emb,
            cfg.hidden,
            cfg.layers,
        ]
        .contains(&0)
        {
            return Err(Error::Empty {
                op: OP,
                what: "[src_vocab, tgt_vocab, emb, hidden, layers]",
                shape: vec![
                    cfg.src_vocab,
                    cfg.tgt_vocab,
                    cfg.emb,
                    cfg.hidden,
                    cfg.layers,
                ],
            });
        }
        if cfg.bos == cfg.eos {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "bos and eos",
                expected: "two different ids (decoding stops at eos)",
                got: format!("both {}", cfg.bos),
            });
        }
        if let Some(&id) = [cfg.bos, cfg.eos, cfg.pad]
            .iter()
            .find(|&&id| id as usize >= cfg.tgt_vocab)
        {
            return Err(Error::IndexOutOfRange {
                op: OP,
                what: "special token id",
                index: 0,
                value: id as usize,
                bound: cfg.tgt_vocab,
            });
        }
        let hd = cfg.decoder_hidden();
        let transformer = matches!(cfg.encoder, EncoderKind::Transformer { .. });
        let attention = match cfg.link {
            Link::None if transformer => {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    what: "link",
                    expected: "attention: a transformer encoder has no final state".into(),
                    got: vec![],
                })
            }
            Link::None => None,
            Link::Luong { score, .. } => {
                if !matches!(score, Score::Dot | Score::General) {
                    return Err(Error::ShapeMismatch {
                        op: OP,
                        what: "Luong score",
                        expected: "Dot or General".into(),
                        got: vec![],
                    });
                }
                Some(Attention::new(ctx, score, hd, hd, 1.0, seed + 4)?)
            }
            Link::Bahdanau { size } => Some(Attention::new(
                ctx,
                Score::Additive { size },
                hd,
                hd,
                1.0,
                seed + 4,
            )?),
        };
        let combine = attention
            .is_some()
            .then(|| Linear::new(ctx, 2 * hd, hd, false, seed + 5))
            .transpose()?;
        let pad = Some(cfg.pad);
        let sizes = Config::new(cfg.emb, cfg.hidden)
            .with_layers(cfg.layers)
            .with_bidirectional(cfg.bidirectional);
        Ok(Self {
            src_embedding: Embedding::new(ctx, cfg.src_vocab, cfg.emb, pad, seed)?,
            tgt_embedding: Embedding::new(ctx, cfg.tgt_vocab, cfg.emb, pad, seed + 1)?,
            encoder: match cfg.encoder {
                EncoderKind::Lstm => Encoder::Lstm(Lstm::new(ctx, sizes, seed + 2)?),
                EncoderKind::MinGru => Encoder::MinGru(MinGru::new(ctx, sizes, seed + 2)?),
                EncoderKind::MinLstm => Encoder::MinLstm(MinLstm::new(ctx, sizes, seed + 2)?),
                EncoderKind::Transformer { heads, ff } => Encoder::Transformer(
                    (0..cfg.layers)
                        .map(|l| {
                            TransformerEncoderLayer::new(
                                ctx,
                                cfg.emb,
                                heads,
                                ff,
                                seed + 10 + l as u64,
                            )
                        })
                        .collect::<Result<_>>()?,
                ),
            },
            decoder: Lstm::new(
                ctx,
                Config::new(cfg.decoder_input(), hd).with_layers(cfg.layers),
                seed + 3,
            )?,
            attention,
            combine,
            out: Linear::new(ctx, hd, cfg.tgt_vocab, true, seed + 6)?,
            out_proj: None,
            dropout: Dropout::new(0.0, seed as u32),
            label_smoothing: 0.0,
            cfg,
        })
    }

    /// The same model with dropout `p` (0 ≤ p < 1) in training steps on both
    /// embeddings, between stacked LSTM layers (encoder and decoder) and on the
    /// decoder's output features; masks from `seed`.
    pub fn with_dropout(self, p: f32, seed: u32) -> Result<Self> {
        let encoder = match self.encoder {
            Encoder::Lstm(lstm) => Encoder::Lstm(lstm.with_dropout(p, seed.wrapping_add(1))?),
            Encoder::MinGru(m) => Encoder::MinGru(m.with_dropout(p, seed.wrapping_add(1))?),
            Encoder::MinLstm(m) => Encoder::MinLstm(m.with_dropout(p, seed.wrapping_add(1))?),
            other => other,
        };
        Ok(Self {
            encoder,
            decoder: self.decoder.with_dropout(p, seed.wrapping_add(2))?,
            dropout: Dropout::new(p, seed),
            ..self
        })
    }

    /// The same model with its output layer tied to the target embedding (Press &
    /// Wolf 2017; fairseq's `share_decoder_input_output_embed`): logits = E·x + b
    /// for the table E `[V_tgt, emb]`, where x is the decoder's output features,
    /// first projected from the decoder's units to `emb` (a new `[emb, Hd]` layer
    /// without bias, from `seed`) when the sizes differ. The table learns from both
    /// ends, its padding row too (a padded position is masked wherever it is read);
    /// the output layer's separate `[V_tgt, Hd]` weight is gone, and with it
    /// `out.weight` from the state_dict (`out_proj.weight` joins it).
    pub fn with_tied_embeddings(self, seed: u64) -> Result<Self> {
        let (hd, emb) = (self.cfg.decoder_hidden(), self.cfg.emb);
        let out_proj = (hd != emb)
            .then(|| Linear::new(self.tgt_embedding.weight().context(), hd, emb, false, seed))
            .transpose()?;
        let out = Linear::tied(
            self.tgt_embedding.weight(),
            self.tgt_embedding.grad(),
            true,
            seed.wrapping_add(1),
        )?;
        Ok(Self {
            out,
            out_proj,
            ..self
        })
    }

    /// Whether the output layer shares the target embedding's table.
    pub fn tied_embeddings(&self) -> bool {
        self.out.is_tied()
    }

    /// Records the logits `[.., V_tgt]` of output features `[.., Hd]`: the output
    /// layer, after the projection of a tied model.
    fn logits(&self, tape: &mut Tape, top: &Var) -> Result<Var> {
        match &self.out_proj {
            Some(proj) => {
                let x = proj.apply(tape, top)?;
                self.out.apply(tape, &x)
            }
            None => self.out.apply(tape, top),
        }
    }

    /// The same model trained against targets smoothed by `eps` (0 ≤ ε ≤ 1; see
    /// [`Tape::cross_entropy_smoothed`]); evaluation tapes take the plain loss.
    pub fn with_label_smoothing(self, eps: f32) -> Result<Self> {
        crate::ops::cross_entropy::check_smoothing(OP, eps)?;
        Ok(Self {
            label_smoothing: eps,
            ..self
        })
    }

    /// The sizes this model was made with.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.cfg
    }
}

impl TrainStep for Seq2Seq {
    type Batch = ParallelBatch;
    type Carry = ();
    const LABEL: &'static str = "seq2seq step";

    fn loss(&self, tape: &mut Tape, batch: &ParallelBatch) -> Result<Step> {
        Ok(Step::new(Seq2Seq::loss(self, tape, batch)?))
    }
}

impl Module for Seq2Seq {
    fn entries(&self) -> Vec<Entry> {
        let mut out = prefixed("src_embedding", self.src_embedding.entries());
        out.extend(prefixed("tgt_embedding", self.tgt_embedding.entries()));
        match &self.encoder {
            Encoder::Lstm(lstm) => out.extend(prefixed("encoder", lstm.entries())),
            Encoder::MinGru(m) => out.extend(prefixed("encoder", m.entries())),
            Encoder::MinLstm(m) => out.extend(prefixed("encoder", m.entries())),
            Encoder::Transformer(layers) => {
                for (l, layer) in layers.iter().enumerate() {
                    let prefix = format!("encoder.layers.{l}");
                    out.extend(prefixed(&prefix, layer.entries()));
                }
            }
        }
        out.extend(prefixed("decoder", self.decoder.entries()));
        if let Some(a) = &self.attention {
            out.extend(prefixed("attention", a.entries()));
        }
        if let Some(c) = &self.combine {
            out.extend(prefixed("combine", c.entries()));
        }
        if let Some(proj) = &self.out_proj {
            out.extend(prefixed("out_proj", proj.entries()));
        }
        out.extend(prefixed("out", self.out.entries()));
        out
    }
}
