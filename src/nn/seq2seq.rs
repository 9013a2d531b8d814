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
//! Bahdanau need the previous step's output), then one output projection and one
//! masked cross-entropy over all steps; backward runs the steps in reverse.

use super::attention::{self, Attention, Score};
use super::recurrent::{self, Config, Mode, Recurrent};
use super::transformer::{self, TransformerEncoderLayer};
use super::{prefixed, Embedding, Linear, Module, Named, Param};
use crate::data::ParallelBatch;
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::cross_entropy::{self, Loss};
use crate::ops::elementwise::{self, Activation, Block};
use crate::ops::embedding::{self, Index};
use crate::ops::{argmax, beam};
use crate::tensor::{DType, Tensor};
use crate::train::{finish_step_async, Optimizer, StepReport};

const OP: &str = "seq2seq";

/// How the decoder sees the encoder beyond its final state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Nothing: the final encoder state is the only link (the bottleneck).
    None,
    /// Luong attention (`Score::Dot` or `Score::General`) with the new decoder
    /// state as the query; `input_feeding` feeds h̃_{t−1} into step t.
    Luong { score: Score, input_feeding: bool },
    /// Bahdanau: additive attention of `size` units with the previous decoder
    /// state as the query; the context joins the decoder's input.
    Bahdanau { size: usize },
}

/// What reads the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderKind {
    /// LSTM layers of `hidden` units per direction.
    Lstm,
    /// Transformer encoder layers of `emb` features, `heads` heads and a
    /// feed-forward block of `ff` units.
    Transformer { heads: usize, ff: usize },
}

/// The encoder of a [`Seq2Seq`].
#[derive(Debug)]
pub enum Encoder {
    Lstm(Recurrent),
    Transformer(Vec<TransformerEncoderLayer>),
}

/// What the encoder's backward needs.
#[derive(Debug)]
enum EncoderSaved {
    Lstm(recurrent::Saved),
    Transformer(Vec<transformer::Saved>),
}

/// Sizes and special tokens of a [`Seq2Seq`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seq2SeqConfig {
    pub src_vocab: usize,
    pub tgt_vocab: usize,
    /// Embedding size of both sides.
    pub emb: usize,
    /// LSTM encoder units per direction; the decoder has `hidden · directions`.
    pub hidden: usize,
    /// Layers of the encoder and of the decoder.
    pub layers: usize,
    /// Whether an LSTM encoder reads both ways.
    pub bidirectional: bool,
    pub encoder: EncoderKind,
    pub link: Link,
    /// Padding id of both vocabularies (its embeddings stay zero).
    pub pad: u32,
    /// Target-side begin- and end-of-sequence ids.
    pub bos: u32,
    pub eos: u32,
}

impl Seq2SeqConfig {
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
            EncoderKind::Lstm => self.dirs() * self.hidden,
            EncoderKind::Transformer { .. } => self.emb,
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
    pub src_embedding: Embedding,
    pub tgt_embedding: Embedding,
    pub encoder: Encoder,
    pub decoder: Recurrent,
    pub attention: Option<Attention>,
    /// W_c `[Hd, 2·Hd]`, no bias (attention links only).
    pub combine: Option<Linear>,
    /// `[V_tgt, Hd]` with bias.
    pub out: Linear,
}

/// Decoder state between steps: `[L, N, Hd]` each, and h̃ `[N, Hd]` for input feeding.
#[derive(Clone, Debug)]
struct State {
    h: Tensor,
    c: Tensor,
    feed: Option<Tensor>,
}

/// The encoder's outputs as the decoder reads them.
#[derive(Clone, Debug)]
struct Memory {
    /// `[N, S, Hd]`
    keys: Tensor,
    /// `[N]`
    lengths: Vec<usize>,
}

/// What a decoder step's backward needs.
#[derive(Debug)]
struct StepSaved {
    index: Index,
    decoder: recurrent::Saved,
    attention: Option<attention::Saved>,
    /// `[c; h]` `[N, 2·Hd]` (attention links)
    comb: Option<Tensor>,
    /// the step's output feature (h̃ or h) `[N, Hd]`
    top: Tensor,
    /// the attention weights `[N, 1, S]` (attention links)
    weights: Option<Tensor>,
}

/// What [`Seq2Seq::backward`] needs from the forward.
#[derive(Debug)]
pub struct Saved {
    src_index: Index,
    encoder: EncoderSaved,
    decoded: Decoded,
    /// `[T, B, Hd]` every step's output feature
    tops: Tensor,
    batch: usize,
    steps: usize,
    src_steps: usize,
}

/// How the decoder ran in training.
#[derive(Debug)]
enum Decoded {
    /// One step at a time: input feeding and Bahdanau need the previous step.
    Steps(Vec<StepSaved>),
    /// All steps at once: without input feeding the inputs are known up front.
    Parallel(Box<ParallelSaved>),
}

/// What the backward of the all-steps-at-once decoder needs (batch-major rows).
#[derive(Debug)]
struct ParallelSaved {
    index: Index,
    decoder: recurrent::Saved,
    attention: Option<attention::Saved>,
    /// `[c; h]` `[B·T, 2·Hd]` (Luong)
    comb: Option<Tensor>,
    /// `[B·T, Hd]`
    top: Tensor,
}

/// One result of [`Seq2Seq::beam_search`].
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// The tokens, without `eos`.
    pub tokens: Vec<u32>,
    /// Σ log p of the tokens (and of `eos` when `finished`).
    pub score: f32,
    /// `score / len^alpha`, len counting `eos`: what the hypotheses are ranked by.
    pub normalized: f32,
    /// Whether the hypothesis ended with `eos` within the step limit.
    pub finished: bool,
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
        Ok(Self {
            src_embedding: Embedding::new(ctx, cfg.src_vocab, cfg.emb, pad, seed)?,
            tgt_embedding: Embedding::new(ctx, cfg.tgt_vocab, cfg.emb, pad, seed + 1)?,
            encoder: match cfg.encoder {
                EncoderKind::Lstm => Encoder::Lstm(Recurrent::new(
                    ctx,
                    Config {
                        mode: Mode::Lstm,
                        input_size: cfg.emb,
                        hidden_size: cfg.hidden,
                        num_layers: cfg.layers,
                        bidirectional: cfg.bidirectional,
                    },
                    seed + 2,
                )?),
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
            decoder: Recurrent::new(
                ctx,
                Config {
                    mode: Mode::Lstm,
                    input_size: cfg.decoder_input(),
                    hidden_size: hd,
                    num_layers: cfg.layers,
                    bidirectional: false,
                },
                seed + 3,
            )?,
            attention,
            combine,
            out: Linear::new(ctx, hd, cfg.tgt_vocab, true, seed + 6)?,
            cfg,
        })
    }

    /// The sizes this model was made with.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.cfg
    }

    /// Records the encoder over `src` and the decoder's initial state.
    fn encode(
        &self,
        rec: &mut Recorder,
        src: &crate::data::Batch,
    ) -> Result<(Memory, State, Index, EncoderSaved)> {
        let (b, s) = (src.size, src.steps);
        let (emb, index) = self.src_embedding.forward(rec, &src.ids, &[b, s])?;
        let (keys, state, saved) = match &self.encoder {
            Encoder::Lstm(lstm) => {
                let (out, saved) = lstm.forward(rec, &emb, &src.lengths, None, None)?;
                let c_n = out.c_n.ok_or(Error::Empty {
                    op: OP,
                    what: "encoder cell state",
                    shape: vec![],
                })?;
                let state = State {
                    h: self.bridge(rec, &out.h_n, b)?,
                    c: self.bridge(rec, &c_n, b)?,
                    feed: self.zero_feed(rec, b)?,
                };
                (out.y, state, EncoderSaved::Lstm(saved))
            }
            Encoder::Transformer(layers) => {
                let e = self.cfg.emb;
                let pe = Tensor::from_slice(rec.context(), &[b, s, e], &positions(b, s, e))?;
                elementwise::add(rec, &emb, 0, &pe, 0, b * s * e)?;
                let mut x = emb;
                let mut saved = Vec::with_capacity(layers.len());
                for layer in layers {
                    let (y, sv) = layer.forward(rec, &x, &src.lengths)?;
                    saved.push(sv);
                    x = y;
                }
                let zeros = || Tensor::zeros(rec.context(), &[self.cfg.layers, b, e]);
                let state = State {
                    h: zeros()?,
                    c: zeros()?,
                    feed: self.zero_feed(rec, b)?,
                };
                (x, state, EncoderSaved::Transformer(saved))
            }
        };
        let memory = Memory {
            keys,
            lengths: src.lengths.clone(),
        };
        Ok((memory, state, index, saved))
    }

    fn zero_feed(&self, rec: &mut Recorder, n: usize) -> Result<Option<Tensor>> {
        match self.cfg.link {
            Link::Luong {
                input_feeding: true,
                ..
            } => {
                let feed =
                    Tensor::empty(rec.context(), &[n, self.cfg.decoder_hidden()], DType::F32)?;
                rec.zero(&feed)?;
                Ok(Some(feed))
            }
            _ => Ok(None),
        }
    }

    /// Encoder final states `[L·D, B, H]` → decoder initial states `[L, B, D·H]`.
    fn bridge(&self, rec: &mut Recorder, s_n: &Tensor, b: usize) -> Result<Tensor> {
        let (l, h) = (self.cfg.layers, self.cfg.hidden);
        if !self.cfg.bidirectional {
            return Ok(s_n.clone());
        }
        let out = Tensor::empty(rec.context(), &[l, b, 2 * h], DType::F32)?;
        for layer in 0..l {
            let part = |dir: usize| Block {
                tensor: s_n,
                offset: (2 * layer + dir) * b * h,
                width: h,
            };
            let both = elementwise::concat(rec, b, part(0), part(1))?;
            rec.copy_range(&out, layer * b * 2 * h, &both, 0, b * 2 * h)?;
        }
        Ok(out)
    }

    /// The backward of [`bridge`](Self::bridge).
    fn bridge_backward(&self, rec: &mut Recorder, d: &Tensor, b: usize) -> Result<Tensor> {
        let (l, h) = (self.cfg.layers, self.cfg.hidden);
        if !self.cfg.bidirectional {
            return Ok(d.clone());
        }
        let out = Tensor::empty(rec.context(), &[2 * l, b, h], DType::F32)?;
        for layer in 0..l {
            let block = Block {
                tensor: d,
                offset: layer * b * 2 * h,
                width: 2 * h,
            };
            let (fwd, bwd) = elementwise::split(rec, b, block, h, h)?;
            rec.copy_range(&out, 2 * layer * b * h, &fwd, 0, b * h)?;
            rec.copy_range(&out, (2 * layer + 1) * b * h, &bwd, 0, b * h)?;
        }
        Ok(out)
    }

    /// Records one decoder step for tokens `ids` `[N]`: the new state and what
    /// backward needs (its `top` is the step's output feature).
    fn step(
        &self,
        rec: &mut Recorder,
        state: &State,
        memory: &Memory,
        ids: &[u32],
    ) -> Result<(State, StepSaved)> {
        let n = ids.len();
        let (hd, l) = (self.cfg.decoder_hidden(), self.cfg.layers);
        let ctx = rec.context().clone();
        let (emb, index) = self.tgt_embedding.forward(rec, ids, &[n])?;
        let emb_block = Block::whole(&emb);
        let mut attn = None;
        let x = match (self.cfg.link, &state.feed) {
            (Link::Luong { .. }, Some(feed)) => {
                elementwise::concat(rec, n, emb_block, Block::whole(feed))?
            }
            (Link::Bahdanau { .. }, _) => {
                let q = Tensor::empty(&ctx, &[n, 1, hd], DType::F32)?;
                rec.copy_range(&q, 0, &state.h, (l - 1) * n * hd, n * hd)?;
                let (o, saved, w) = self.attend(rec, &q, memory)?;
                let x = elementwise::concat(rec, n, emb_block, Block::whole(&o))?;
                attn = Some((o, saved, w));
                x
            }
            _ => emb,
        };
        let x = x.reshape(&[n, 1, x.shape()[1]])?;
        let (out, decoder) =
            self.decoder
                .forward(rec, &x, &vec![1; n], Some(&state.h), Some(&state.c))?;
        let h_t = out.y.reshape(&[n, hd])?;
        if let Link::Luong { .. } = self.cfg.link {
            attn = Some(self.attend(rec, &out.y, memory)?);
        }
        let (top, comb, attention, weights) = match (attn, &self.combine) {
            (Some((context, saved, weights)), Some(combine)) => {
                let comb = elementwise::concat(rec, n, Block::whole(&context), Block::whole(&h_t))?;
                let pre = combine.forward(rec, &comb)?;
                let top = elementwise::activate(rec, Activation::Tanh, &pre)?;
                (top, Some(comb), Some(saved), Some(weights))
            }
            _ => (h_t, None, None, None),
        };
        let c = out.c_n.ok_or(Error::Empty {
            op: OP,
            what: "decoder cell state",
            shape: vec![],
        })?;
        let feed = state.feed.as_ref().map(|_| top.clone());
        let next = State {
            h: out.h_n,
            c,
            feed,
        };
        Ok((
            next,
            StepSaved {
                index,
                decoder,
                attention,
                comb,
                top,
                weights,
            },
        ))
    }

    /// Attention of `q` `[N, 1, Hd]` over the memory: the context `[N, Hd]`, what
    /// backward needs, the weights `[N, 1, S]`.
    fn attend(
        &self,
        rec: &mut Recorder,
        q: &Tensor,
        memory: &Memory,
    ) -> Result<(Tensor, attention::Saved, Tensor)> {
        let attention = self.attention.as_ref().ok_or(Error::Empty {
            op: OP,
            what: "attention layer",
            shape: vec![],
        })?;
        let (o, saved) = attention.forward(rec, q, &memory.keys, &memory.lengths)?;
        let n = q.shape()[0];
        let context = o.context.reshape(&[n, self.cfg.decoder_hidden()])?;
        Ok((context, saved, o.weights))
    }

    /// Records the teacher-forced forward of a batch: logits `[T, B, V]` (time
    /// major: step t of every sequence together) and what backward needs.
    pub fn forward(&self, rec: &mut Recorder, batch: &ParallelBatch) -> Result<(Tensor, Saved)> {
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
        let (memory, mut state, src_index, encoder) = self.encode(rec, &batch.src)?;
        let (tops, decoded) = if self.parallel() {
            let p = self.decode_parallel(rec, &state, &memory, &batch.tgt)?;
            // Time-major rows, as the stepwise decoder lays them out: row s·B + i
            // holds sequence i's step s.
            let rows: Vec<usize> = (0..t * b).map(|r| (r % b) * t + r / b).collect();
            let tops = gather_rows(rec, &p.top, &rows)?.reshape(&[t, b, hd])?;
            (tops, Decoded::Parallel(Box::new(p)))
        } else {
            let tops = Tensor::empty(rec.context(), &[t, b, hd], DType::F32)?;
            let mut steps = Vec::with_capacity(t);
            for s in 0..t {
                let ids: Vec<u32> = (0..b).map(|i| batch.tgt.ids[i * t + s]).collect();
                let (next, saved) = self.step(rec, &state, &memory, &ids)?;
                rec.copy_range(&tops, s * b * hd, &saved.top, 0, b * hd)?;
                steps.push(saved);
                state = next;
            }
            (tops, Decoded::Steps(steps))
        };
        let logits = self.out.forward(rec, &tops)?;
        Ok((
            logits,
            Saved {
                src_index,
                encoder,
                decoded,
                tops,
                batch: b,
                steps: t,
                src_steps: batch.src.steps,
            },
        ))
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
    /// the attentional hidden states; the same math as [`step`](Self::step) T times.
    fn decode_parallel(
        &self,
        rec: &mut Recorder,
        state: &State,
        memory: &Memory,
        tgt: &crate::data::Batch,
    ) -> Result<ParallelSaved> {
        let (b, t, hd) = (tgt.size, tgt.steps, self.cfg.decoder_hidden());
        let (emb, index) = self.tgt_embedding.forward(rec, &tgt.ids, &[b, t])?;
        let (out, decoder) =
            self.decoder
                .forward(rec, &emb, &vec![t; b], Some(&state.h), Some(&state.c))?;
        let (top, comb, attention) = match (&self.attention, &self.combine) {
            (Some(attention), Some(combine)) => {
                let (o, saved) = attention.forward(rec, &out.y, &memory.keys, &memory.lengths)?;
                let y = Block::whole(&out.y);
                let comb = elementwise::concat(rec, b * t, Block::whole(&o.context), y)?;
                let pre = combine.forward(rec, &comb)?;
                let top = elementwise::activate(rec, Activation::Tanh, &pre)?;
                (top, Some(comb), Some(saved))
            }
            _ => (out.y.reshape(&[b * t, hd])?, None, None),
        };
        Ok(ParallelSaved {
            index,
            decoder,
            attention,
            comb,
            top,
        })
    }

    /// The backward of [`decode_parallel`](Self::decode_parallel) for upstream
    /// `dtop` `[B·T, Hd]` (batch-major): adds to `dkeys`, returns dh0 and dc0.
    fn decode_parallel_backward(
        &self,
        rec: &mut Recorder,
        p: &ParallelSaved,
        dtop: Tensor,
        dkeys: &Tensor,
        (b, t): (usize, usize),
    ) -> Result<(Tensor, Option<Tensor>)> {
        let hd = self.cfg.decoder_hidden();
        let dy = match (&p.comb, &self.combine, &self.attention, &p.attention) {
            (Some(comb), Some(combine), Some(attention), Some(saved)) => {
                let dpre = elementwise::activate_backward(rec, Activation::Tanh, &dtop, &p.top)?;
                let dcomb = combine.backward(rec, &dpre, comb)?;
                let (dctx, dy) = elementwise::split(rec, b * t, Block::whole(&dcomb), hd, hd)?;
                let g = attention.backward(rec, saved, &dctx.reshape(&[b, t, hd])?, None)?;
                elementwise::add(rec, &dy, 0, &g.dq, 0, b * t * hd)?;
                elementwise::add(rec, dkeys, 0, &g.dk, 0, dkeys.numel())?;
                dy
            }
            _ => dtop,
        };
        let g = self
            .decoder
            .backward(rec, &p.decoder, &dy.reshape(&[b, t, hd])?, None, None)?;
        self.tgt_embedding.backward(rec, &g.dx, &p.index)?;
        Ok((g.dh0, g.dc0))
    }

    /// Records the forward and the mean cross-entropy over the real target tokens.
    pub fn loss(&self, rec: &mut Recorder, batch: &ParallelBatch) -> Result<(Loss, Saved)> {
        let (logits, saved) = self.forward(rec, batch)?;
        let (b, t) = (batch.tgt.size, batch.tgt.steps);
        // Time-major targets, as the logits.
        let targets: Vec<u32> = (0..t * b)
            .map(|i| batch.tgt.targets[(i % b) * t + i / b])
            .collect();
        let loss =
            cross_entropy::forward(rec, &logits, &targets, Some(crate::data::Batch::IGNORE))?;
        Ok((loss, saved))
    }

    /// Records the backward from the loss's gradient, adding to every parameter's
    /// gradient.
    pub fn backward(&self, rec: &mut Recorder, loss: &Loss, saved: &Saved) -> Result<()> {
        let (b, t) = (saved.batch, saved.steps);
        let (hd, e, l) = (self.cfg.decoder_hidden(), self.cfg.emb, self.cfg.layers);
        let ctx = rec.context().clone();
        let dtops = self.out.backward(rec, &loss.dlogits, &saved.tops)?;
        let dkeys = Tensor::empty(&ctx, &[b, saved.src_steps, hd], DType::F32)?;
        rec.zero(&dkeys)?;
        let mut dh: Option<Tensor> = None;
        let mut dc: Option<Tensor> = None;
        let steps = match &saved.decoded {
            Decoded::Parallel(p) => {
                // Back to batch-major rows: row i·T + s from time-major s·B + i.
                let rows: Vec<usize> = (0..b * t).map(|r| (r % t) * b + r / t).collect();
                let dtop = gather_rows(rec, &dtops.reshape(&[t * b, hd])?, &rows)?;
                let (dh0, dc0) = self.decode_parallel_backward(rec, p, dtop, &dkeys, (b, t))?;
                dh = Some(dh0);
                dc = dc0;
                &[][..]
            }
            Decoded::Steps(steps) => &steps[..],
        };
        let mut dfeed: Option<Tensor> = None;
        for (s, st) in steps.iter().enumerate().rev() {
            let dtop = Tensor::empty(&ctx, &[b, hd], DType::F32)?;
            rec.copy_range(&dtop, 0, &dtops, s * b * hd, b * hd)?;
            if let Some(df) = &dfeed {
                elementwise::add(rec, &dtop, 0, df, 0, b * hd)?;
            }
            let (dy, dcontext) = match (&st.comb, &self.combine) {
                (Some(comb), Some(combine)) => {
                    let dpre =
                        elementwise::activate_backward(rec, Activation::Tanh, &dtop, &st.top)?;
                    let dcomb = combine.backward(rec, &dpre, comb)?;
                    let (dcontext, dy) = elementwise::split(rec, b, Block::whole(&dcomb), hd, hd)?;
                    (dy, Some(dcontext))
                }
                _ => (dtop, None),
            };
            let mut dcontext_in = None;
            match (self.cfg.link, dcontext) {
                (Link::Luong { .. }, Some(dctx)) => {
                    let g = self.attend_backward(rec, st, &dctx, &dkeys)?;
                    elementwise::add(rec, &dy, 0, &g, 0, b * hd)?;
                }
                (Link::Bahdanau { .. }, Some(dctx)) => dcontext_in = Some(dctx),
                _ => {}
            }
            let dy = dy.reshape(&[b, 1, hd])?;
            let g = self
                .decoder
                .backward(rec, &st.decoder, &dy, dh.as_ref(), dc.as_ref())?;
            let dx = g.dx.reshape(&[b, g.dx.numel() / b])?;
            let demb = match self.cfg.link {
                Link::Luong {
                    input_feeding: true,
                    ..
                } => {
                    let (demb, df) = elementwise::split(rec, b, Block::whole(&dx), e, hd)?;
                    dfeed = Some(df);
                    demb
                }
                Link::Bahdanau { .. } => {
                    let (demb, dctx) = elementwise::split(rec, b, Block::whole(&dx), e, hd)?;
                    if let Some(d_out) = &dcontext_in {
                        elementwise::add(rec, &dctx, 0, d_out, 0, b * hd)?;
                    }
                    let dq = self.attend_backward(rec, st, &dctx, &dkeys)?;
                    elementwise::add(rec, &g.dh0, (l - 1) * b * hd, &dq, 0, b * hd)?;
                    demb
                }
                _ => dx,
            };
            self.tgt_embedding.backward(rec, &demb, &st.index)?;
            dh = Some(g.dh0);
            dc = g.dc0;
        }
        let dh0 = dh.ok_or(Error::Empty {
            op: OP,
            what: "target steps",
            shape: vec![b, t],
        })?;
        let dc0 = dc.ok_or(Error::Empty {
            op: OP,
            what: "decoder cell state",
            shape: vec![],
        })?;
        let dx = match (&self.encoder, &saved.encoder) {
            (Encoder::Lstm(lstm), EncoderSaved::Lstm(es)) => {
                let dh_n = self.bridge_backward(rec, &dh0, b)?;
                let dc_n = self.bridge_backward(rec, &dc0, b)?;
                lstm.backward(rec, es, &dkeys, Some(&dh_n), Some(&dc_n))?.dx
            }
            (Encoder::Transformer(layers), EncoderSaved::Transformer(es)) => {
                // The decoder's zero initial state is a constant: dh0, dc0 end here.
                let mut d = dkeys;
                for (layer, sv) in layers.iter().zip(es).rev() {
                    d = layer.backward(rec, sv, &d)?;
                }
                d
            }
            _ => {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    what: "saved encoder state",
                    expected: "the kind of this model's encoder".into(),
                    got: vec![],
                })
            }
        };
        self.src_embedding.backward(rec, &dx, &saved.src_index)
    }

    /// Attention backward for upstream `dcontext` `[N, Hd]`: adds dkeys, returns dq `[N, Hd]`.
    fn attend_backward(
        &self,
        rec: &mut Recorder,
        st: &StepSaved,
        dcontext: &Tensor,
        dkeys: &Tensor,
    ) -> Result<Tensor> {
        let (attention, saved) = match (&self.attention, &st.attention) {
            (Some(a), Some(s)) => (a, s),
            _ => {
                return Err(Error::Empty {
                    op: OP,
                    what: "attention saved by the forward",
                    shape: vec![],
                })
            }
        };
        let n = dcontext.shape()[0];
        let hd = self.cfg.decoder_hidden();
        let g = attention.backward(rec, saved, &dcontext.reshape(&[n, 1, hd])?, None)?;
        elementwise::add(rec, dkeys, 0, &g.dk, 0, dkeys.numel())?;
        g.dq.reshape(&[n, hd])
    }

    /// One training step on `batch`, one submit: zero the gradients, forward,
    /// loss, backward, optimizer update; returns the loss and gradient norm.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_step(
        &self,
        ctx: &Context,
        batch: &ParallelBatch,
        opt: &mut Optimizer,
    ) -> Result<StepReport> {
        pollster::block_on(self.train_step_async(ctx, batch, opt))
    }

    /// [`train_step`](Self::train_step), awaited.
    pub async fn train_step_async(
        &self,
        ctx: &Context,
        batch: &ParallelBatch,
        opt: &mut Optimizer,
    ) -> Result<StepReport> {
        let mut rec = Recorder::new(ctx, "seq2seq step");
        self.zero_grad(&mut rec)?;
        let (loss, saved) = self.loss(&mut rec, batch)?;
        self.backward(&mut rec, &loss, &saved)?;
        opt.step(&mut rec)?;
        finish_step_async(rec, &loss.loss, opt).await
    }
}

/// A greedy translation and the attention weights of each of its steps.
type Translation = (Vec<u32>, Vec<Vec<f32>>);

/// Decoding: greedy and beam search. Each step is one submit whose only readback
/// is the chosen tokens (and, for beam search, their scores and origins).
impl Seq2Seq {
    /// Pads sources for decoding (no targets).
    fn sources(&self, src: &[&[u32]]) -> Result<crate::data::Batch> {
        let pairs: Vec<(&[u32], &[u32])> = src.iter().map(|&s| (s, s)).collect();
        crate::data::Batch::pad(&pairs, self.cfg.pad)
    }

    /// Greedy decoding of each source, at most `max_len` tokens each (`eos` not
    /// included).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn greedy(&self, ctx: &Context, src: &[&[u32]], max_len: usize) -> Result<Vec<Vec<u32>>> {
        pollster::block_on(self.greedy_async(ctx, src, max_len))
    }

    /// [`greedy`](Self::greedy), awaited.
    pub async fn greedy_async(
        &self,
        ctx: &Context,
        src: &[&[u32]],
        max_len: usize,
    ) -> Result<Vec<Vec<u32>>> {
        Ok(self
            .decode_greedy(ctx, src, max_len, false)
            .await?
            .into_iter()
            .map(|(tokens, _)| tokens)
            .collect())
    }

    /// Greedy decoding of one source with the attention weights of every step
    /// (one row of S source weights per output token, `eos` included when
    /// produced); no rows without attention.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn greedy_with_attention(
        &self,
        ctx: &Context,
        src: &[u32],
        max_len: usize,
    ) -> Result<(Vec<u32>, Vec<Vec<f32>>)> {
        pollster::block_on(self.greedy_with_attention_async(ctx, src, max_len))
    }

    /// [`greedy_with_attention`](Self::greedy_with_attention), awaited.
    pub async fn greedy_with_attention_async(
        &self,
        ctx: &Context,
        src: &[u32],
        max_len: usize,
    ) -> Result<(Vec<u32>, Vec<Vec<f32>>)> {
        let mut out = self.decode_greedy(ctx, &[src], max_len, true).await?;
        Ok(out.pop().unwrap_or_default())
    }

    async fn decode_greedy(
        &self,
        ctx: &Context,
        src: &[&[u32]],
        max_len: usize,
        want_weights: bool,
    ) -> Result<Vec<Translation>> {
        let batch = self.sources(src)?;
        let (b, s) = (batch.size, batch.steps);
        let mut rec = Recorder::new(ctx, "seq2seq greedy");
        let (memory, mut state, _, _) = self.encode(&mut rec, &batch)?;
        let mut ids = vec![self.cfg.bos; b];
        let mut out = vec![(Vec::new(), Vec::new()); b];
        let mut done = vec![false; b];
        for _ in 0..max_len {
            let (next, saved) = self.step(&mut rec, &state, &memory, &ids)?;
            let logits = self.out.forward(&mut rec, &saved.top)?;
            let best = argmax::forward(&mut rec, &logits)?;
            std::mem::replace(&mut rec, Recorder::new(ctx, "seq2seq greedy")).submit();
            ids = best.to_vec_u32_async().await?;
            let weights = match (&saved.weights, want_weights) {
                (Some(w), true) => Some(w.to_vec_async().await?),
                _ => None,
            };
            for (i, &id) in ids.iter().enumerate() {
                if done[i] {
                    continue;
                }
                if let Some(w) = &weights {
                    out[i].1.push(w[i * s..(i + 1) * s].to_vec());
                }
                if id == self.cfg.eos {
                    done[i] = true;
                } else {
                    out[i].0.push(id);
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            state = next;
        }
        Ok(out)
    }

    /// Beam search with `k` hypotheses per source (1..=16) for at most `max_len`
    /// steps; returns each source's hypotheses ranked by `score / len^alpha`
    /// (len counting `eos`; `alpha` = 0 ranks by score). Finished hypotheses stay
    /// in the beam, competing on their score, until every slot is finished.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn beam_search(
        &self,
        ctx: &Context,
        src: &[&[u32]],
        k: usize,
        max_len: usize,
        alpha: f32,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        pollster::block_on(self.beam_search_async(ctx, src, k, max_len, alpha))
    }

    /// [`beam_search`](Self::beam_search), awaited.
    pub async fn beam_search_async(
        &self,
        ctx: &Context,
        src: &[&[u32]],
        k: usize,
        max_len: usize,
        alpha: f32,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        if !alpha.is_finite() {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "length penalty alpha",
                expected: "a finite number",
                got: alpha.to_string(),
            });
        }
        if k == 0 || k > beam::MAX_BEAM {
            return Err(Error::LimitExceeded {
                op: OP,
                what: "beam width",
                value: k as u64,
                limit: beam::MAX_BEAM as u64,
            });
        }
        let batch = self.sources(src)?;
        let (b, n) = (batch.size, batch.size * k);
        let (hd, l) = (self.cfg.decoder_hidden(), self.cfg.layers);
        let mut rec = Recorder::new(ctx, "seq2seq beam");
        let (memory, state, _, _) = self.encode(&mut rec, &batch)?;
        // Every source's memory and state repeated for its k hypotheses.
        let parents: Vec<usize> = (0..n).map(|r| r / k).collect();
        let memory = Memory {
            keys: gather_rows(&mut rec, &memory.keys, &parents)?,
            lengths: parents.iter().map(|&p| memory.lengths[p]).collect(),
        };
        let mut state = State {
            h: gather_layers(&mut rec, &state.h, &parents, l, b)?,
            c: gather_layers(&mut rec, &state.c, &parents, l, b)?,
            feed: self.zero_feed(&mut rec, n)?,
        };
        // Only the first slot of each source is alive at the start.
        let mut scores: Vec<f32> = (0..n)
            .map(|r| if r % k == 0 { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let mut finished = vec![false; n];
        let mut seqs: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut ids = vec![self.cfg.bos; n];
        for _ in 0..max_len {
            let (next, saved) = self.step(&mut rec, &state, &memory, &ids)?;
            let logits = self.out.forward(&mut rec, &saved.top)?;
            let score_t = Tensor::from_slice(ctx, &[n], &scores)?;
            let done: Vec<u32> = finished.iter().map(|&f| u32::from(f)).collect();
            let done_t = Tensor::from_u32(ctx, &[n], &done)?;
            let st = beam::step(&mut rec, &logits, &score_t, &done_t, k, self.cfg.eos)?;
            std::mem::replace(&mut rec, Recorder::new(ctx, "seq2seq beam")).submit();
            scores = st.score.to_vec_async().await?;
            let origin = st.origin.to_vec_u32_async().await?;
            let token = st.token.to_vec_u32_async().await?;
            let rows: Vec<usize> = (0..n).map(|r| (r / k) * k + origin[r] as usize).collect();
            let mut next_seqs = Vec::with_capacity(n);
            let mut next_finished = Vec::with_capacity(n);
            for (r, &p) in rows.iter().enumerate() {
                let mut seq = seqs[p].clone();
                let was_done = finished[p];
                if !was_done && token[r] != self.cfg.eos {
                    seq.push(token[r]);
                }
                next_seqs.push(seq);
                next_finished.push(was_done || token[r] == self.cfg.eos);
            }
            seqs = next_seqs;
            finished = next_finished;
            ids = token;
            let all_done = finished
                .iter()
                .zip(&scores)
                .all(|(&f, s)| f || *s == f32::NEG_INFINITY);
            if all_done {
                break;
            }
            state = State {
                h: gather_layers(&mut rec, &next.h, &rows, l, n)?,
                c: gather_layers(&mut rec, &next.c, &rows, l, n)?,
                feed: next
                    .feed
                    .as_ref()
                    .map(|f| gather_rows(&mut rec, &f.reshape(&[n, 1, hd])?, &rows))
                    .transpose()?
                    .map(|f| f.reshape(&[n, hd]))
                    .transpose()?,
            };
        }
        Ok((0..b)
            .map(|i| {
                let mut hyps: Vec<Hypothesis> = (i * k..(i + 1) * k)
                    .filter(|&r| scores[r] > f32::NEG_INFINITY)
                    .map(|r| {
                        let len = seqs[r].len() + usize::from(finished[r]);
                        let norm = (len.max(1) as f32).powf(alpha);
                        Hypothesis {
                            tokens: seqs[r].clone(),
                            score: scores[r],
                            normalized: scores[r] / norm,
                            finished: finished[r],
                        }
                    })
                    .collect();
                hyps.sort_by(|a, b| b.normalized.total_cmp(&a.normalized));
                hyps
            })
            .collect())
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

/// Rows `rows` of `x` `[R, ..]` as a new `[rows.len(), ..]` tensor.
fn gather_rows(rec: &mut Recorder, x: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let r = x.shape()[0];
    let width = x.numel() / r.max(1);
    let ids: Vec<u32> = rows.iter().map(|&i| i as u32).collect();
    let index = Index::new(rec.context(), &ids, r, None)?;
    let out = Tensor::empty(rec.context(), &[rows.len(), width], DType::F32)?;
    embedding::forward(rec, &out, &x.reshape(&[r, width])?, &index)?;
    let mut shape = x.shape().to_vec();
    shape[0] = rows.len();
    out.reshape(&shape)
}

/// `[L, N, H]` states, each layer's rows `rows` (indices into its `n_in` rows).
fn gather_layers(
    rec: &mut Recorder,
    s: &Tensor,
    rows: &[usize],
    layers: usize,
    n_in: usize,
) -> Result<Tensor> {
    let h = s.numel() / (layers * n_in).max(1);
    let all: Vec<usize> = (0..layers)
        .flat_map(|l| rows.iter().map(move |&r| l * n_in + r))
        .collect();
    let out = gather_rows(rec, &s.reshape(&[layers * n_in, h])?, &all)?;
    out.reshape(&[layers, rows.len(), h])
}

impl Module for Seq2Seq {
    fn params(&self) -> Vec<Param> {
        let mut out = self.src_embedding.params();
        out.extend(self.tgt_embedding.params());
        match &self.encoder {
            Encoder::Lstm(lstm) => out.extend(lstm.params()),
            Encoder::Transformer(layers) => out.extend(layers.iter().flat_map(Module::params)),
        }
        out.extend(self.decoder.params());
        out.extend(self.attention.iter().flat_map(Module::params));
        out.extend(self.combine.iter().flat_map(Module::params));
        out.extend(self.out.params());
        out
    }

    fn named_params(&self) -> Vec<Named> {
        let mut out = prefixed("src_embedding", self.src_embedding.named_params());
        out.extend(prefixed("tgt_embedding", self.tgt_embedding.named_params()));
        match &self.encoder {
            Encoder::Lstm(lstm) => out.extend(prefixed("encoder", lstm.named_params())),
            Encoder::Transformer(layers) => {
                for (l, layer) in layers.iter().enumerate() {
                    let prefix = format!("encoder.layers.{l}");
                    out.extend(prefixed(&prefix, layer.named_params()));
                }
            }
        }
        out.extend(prefixed("decoder", self.decoder.named_params()));
        if let Some(a) = &self.attention {
            out.extend(prefixed("attention", a.named_params()));
        }
        if let Some(c) = &self.combine {
            out.extend(prefixed("combine", c.named_params()));
        }
        out.extend(prefixed("out", self.out.named_params()));
        out
    }
}
