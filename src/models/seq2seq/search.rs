//! Decoding: greedy, sampled and beam search, by one model or an [`Ensemble`].
//! Each step is one submit whose only readback is the chosen tokens (and, for
//! beam search, their scores and origins).

use super::decoder::{State, Step};
use super::encoder::Memory;
use super::{Seq2Seq, OP};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::init::SplitMix;
use crate::ops::sample::{self, Sampling};
use crate::ops::{argmax, beam};
use crate::tape::ops::gather_rows;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

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

/// Encoder-decoders that translate together (an ensemble, e.g. models trained
/// from different seeds): every step chooses from the mean of the members'
/// next-token log-probabilities, i.e. from their normalized product
/// (log-linear combination). Members may differ in sizes, encoders and links;
/// they must share vocabularies, padding and special tokens.
#[derive(Clone)]
pub struct Ensemble<'a> {
    members: Vec<&'a Seq2Seq>,
}

impl<'a> Ensemble<'a> {
    /// An ensemble of `members` (at least one).
    pub fn new(members: &[&'a Seq2Seq]) -> Result<Self> {
        let first = lead(members)?;
        let key = |m: &Seq2Seq| {
            let c = &m.cfg;
            (c.src_vocab, c.tgt_vocab, c.pad, c.bos, c.eos)
        };
        if let Some(m) = members.iter().find(|m| key(m) != key(first)) {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "ensemble member",
                expected: "the first member's vocabulary sizes, pad, bos and eos",
                got: format!(
                    "(src_vocab, tgt_vocab, pad, bos, eos) {:?} against {:?}",
                    key(m),
                    key(first)
                ),
            });
        }
        Ok(Self {
            members: members.to_vec(),
        })
    }

    /// One model decoding alone (its own logits, no averaging).
    fn single(model: &'a Seq2Seq) -> Self {
        Self {
            members: vec![model],
        }
    }

    /// The members, in order.
    pub fn members(&self) -> &[&'a Seq2Seq] {
        &self.members
    }

    /// Greedy decoding, as [`Seq2Seq::greedy`].
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
        let out = decode_members(&self.members, ctx, src, max_len, false, Pick::Greedy).await?;
        Ok(out.into_iter().map(|(tokens, _)| tokens).collect())
    }

    /// Beam search, as [`Seq2Seq::beam_search`]; scores are sums of the
    /// ensemble's log-probabilities.
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
        beam_members(&self.members, ctx, src, k, max_len, alpha).await
    }
}

/// A translation and the attention weights of each of its steps.
type Translation = (Vec<u32>, Vec<Vec<f32>>);

/// How each step's token is chosen.
#[derive(Clone, Copy)]
enum Pick<'a> {
    /// The most likely.
    Greedy,
    /// A draw as the sampling says, uniform numbers from the stream.
    Sample(&'a Sampling, u64),
}

/// Submits what `tape` recorded and starts a new inference tape.
fn submit(tape: &mut Tape, ctx: &Context, label: &str) {
    std::mem::replace(tape, Tape::eval(ctx, label))
        .into_recorder()
        .submit();
}

impl Seq2Seq {
    /// Pads sources for decoding (no targets).
    pub(super) fn sources(&self, src: &[&[u32]]) -> Result<Batch> {
        let pairs: Vec<(&[u32], &[u32])> = src.iter().map(|&s| (s, s)).collect();
        Batch::pad(&pairs, self.cfg.pad)
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
        Ensemble::single(self).greedy_async(ctx, src, max_len).await
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
        let mut out = decode_members(&[self], ctx, &[src], max_len, true, Pick::Greedy).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Decoding of each source that draws every token from the decoder's
    /// distribution as `how` says (temperature, top-k, top-p), the uniform numbers
    /// drawn from `seed`; at most `max_len` tokens each (`eos` not included).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sample(
        &self,
        ctx: &Context,
        src: &[&[u32]],
        max_len: usize,
        how: &Sampling,
        seed: u64,
    ) -> Result<Vec<Vec<u32>>> {
        pollster::block_on(self.sample_async(ctx, src, max_len, how, seed))
    }

    /// [`sample`](Self::sample), awaited.
    pub async fn sample_async(
        &self,
        ctx: &Context,
        src: &[&[u32]],
        max_len: usize,
        how: &Sampling,
        seed: u64,
    ) -> Result<Vec<Vec<u32>>> {
        Ok(
            decode_members(&[self], ctx, src, max_len, false, Pick::Sample(how, seed))
                .await?
                .into_iter()
                .map(|(tokens, _)| tokens)
                .collect(),
        )
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
        Ensemble::single(self)
            .beam_search_async(ctx, src, k, max_len, alpha)
            .await
    }
}

/// `[L, N, H]` states, each layer's rows `rows` (indices into its `n_in` rows).
fn gather_layers(
    tape: &mut Tape,
    s: &Tensor,
    rows: &[usize],
    layers: usize,
    n_in: usize,
) -> Result<Var> {
    let h = s.numel() / (layers * n_in).max(1);
    let all: Vec<usize> = (0..layers)
        .flat_map(|l| rows.iter().map(move |&r| l * n_in + r))
        .collect();
    let out = gather_rows(tape.rec(), &s.reshape(&[layers * n_in, h])?, &all)?;
    Ok(Var::constant(out.reshape(&[layers, rows.len(), h])?))
}

/// Greedy or sampled decoding of each source by `members` together (one member:
/// its own logits); attention weights from the first member when `want_weights`.
async fn decode_members(
    members: &[&Seq2Seq],
    ctx: &Context,
    src: &[&[u32]],
    max_len: usize,
    want_weights: bool,
    pick: Pick<'_>,
) -> Result<Vec<Translation>> {
    const LABEL: &str = "seq2seq decode";
    let first = lead(members)?;
    let mut rng = match pick {
        Pick::Sample(_, seed) => SplitMix::new(seed),
        Pick::Greedy => SplitMix::new(0),
    };
    let batch = first.sources(src)?;
    let (b, s) = (batch.size, batch.steps);
    let mut tape = Tape::eval(ctx, LABEL);
    let (memories, mut states) = encode_members(members, &mut tape, &batch)?;
    let mut ids = vec![first.cfg.bos; b];
    let mut out = vec![(Vec::new(), Vec::new()); b];
    let mut done = vec![false; b];
    for _ in 0..max_len {
        let (next, steps, logits) = step_members(members, &mut tape, &states, &memories, &ids)?;
        let best = match pick {
            Pick::Greedy => argmax::forward(tape.rec(), &logits)?,
            Pick::Sample(how, _) => {
                let u: Vec<f32> = (0..b).map(|_| rng.uniform_unit()).collect();
                let u = Tensor::from_slice(ctx, &[b], &u)?;
                sample::forward(tape.rec(), &logits, &u, how)?
            }
        };
        submit(&mut tape, ctx, LABEL);
        ids = best.to_vec_u32_async().await?;
        let weights = match (&steps[0].weights, want_weights) {
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
            if id == first.cfg.eos {
                done[i] = true;
            } else {
                out[i].0.push(id);
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        states = next;
    }
    Ok(out)
}

/// Beam search by `members` together (one member: its own logits); see
/// [`Seq2Seq::beam_search`].
async fn beam_members(
    members: &[&Seq2Seq],
    ctx: &Context,
    src: &[&[u32]],
    k: usize,
    max_len: usize,
    alpha: f32,
) -> Result<Vec<Vec<Hypothesis>>> {
    const LABEL: &str = "seq2seq beam";
    let first = lead(members)?;
    if !alpha.is_finite() {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "length penalty alpha",
            expected: "a finite number",
            got: alpha.to_string(),
        });
    }
    if k == 0 {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "beam width",
            expected: "at least 1",
            got: "0".into(),
        });
    }
    if k > beam::MAX_BEAM {
        return Err(Error::LimitExceeded {
            op: OP,
            what: "beam width",
            value: k as u64,
            limit: beam::MAX_BEAM as u64,
        });
    }
    let batch = first.sources(src)?;
    let (b, n) = (batch.size, batch.size * k);
    let mut tape = Tape::eval(ctx, LABEL);
    let (memories, states) = encode_members(members, &mut tape, &batch)?;
    // Every source's memory and state repeated for its k hypotheses.
    let parents: Vec<usize> = (0..n).map(|r| r / k).collect();
    let mut memories_k = Vec::with_capacity(members.len());
    for memory in &memories {
        memories_k.push(Memory {
            keys: Var::constant(gather_rows(tape.rec(), &memory.keys, &parents)?),
            lengths: parents.iter().map(|&p| memory.lengths[p]).collect(),
        });
    }
    let memories = memories_k;
    let mut states = regather(members, &mut tape, &states, &parents, b)?;
    // Only the first slot of each source is alive at the start.
    let mut scores: Vec<f32> = (0..n)
        .map(|r| if r % k == 0 { 0.0 } else { f32::NEG_INFINITY })
        .collect();
    let mut finished = vec![false; n];
    let mut seqs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut ids = vec![first.cfg.bos; n];
    let eos = first.cfg.eos;
    for _ in 0..max_len {
        let (next, _, logits) = step_members(members, &mut tape, &states, &memories, &ids)?;
        let score_t = Tensor::from_slice(ctx, &[n], &scores)?;
        let done: Vec<u32> = finished.iter().map(|&f| u32::from(f)).collect();
        let done_t = Tensor::from_u32(ctx, &[n], &done)?;
        let st = beam::step(tape.rec(), &logits, &score_t, &done_t, k, eos)?;
        submit(&mut tape, ctx, LABEL);
        scores = st.score.to_vec_async().await?;
        let origin = st.origin.to_vec_u32_async().await?;
        let token = st.token.to_vec_u32_async().await?;
        let rows: Vec<usize> = (0..n).map(|r| (r / k) * k + origin[r] as usize).collect();
        let mut next_seqs = Vec::with_capacity(n);
        let mut next_finished = Vec::with_capacity(n);
        for (r, &p) in rows.iter().enumerate() {
            let mut seq = seqs[p].clone();
            let was_done = finished[p];
            if !was_done && token[r] != eos {
                seq.push(token[r]);
            }
            next_seqs.push(seq);
            next_finished.push(was_done || token[r] == eos);
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
        states = regather(members, &mut tape, &next, &rows, n)?;
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

/// Every member's encoding of `batch`: memories and initial states.
fn encode_members(
    members: &[&Seq2Seq],
    tape: &mut Tape,
    batch: &Batch,
) -> Result<(Vec<Memory>, Vec<State>)> {
    let mut out = (
        Vec::with_capacity(members.len()),
        Vec::with_capacity(members.len()),
    );
    for m in members {
        let (memory, state) = m.encode(tape, batch)?;
        out.0.push(memory);
        out.1.push(state);
    }
    Ok(out)
}

/// One decoding step of every member on one tape: their next states and steps,
/// and the scores to choose the next token from: a single member's logits, or
/// the mean of the members' log-probabilities (a softmax over them renormalizes
/// the product of the members' distributions, as beam search and sampling do).
fn step_members(
    members: &[&Seq2Seq],
    tape: &mut Tape,
    states: &[State],
    memories: &[Memory],
    ids: &[u32],
) -> Result<(Vec<State>, Vec<Step>, Var)> {
    let (mut next, mut steps) = (Vec::new(), Vec::new());
    let mut sum: Option<Var> = None;
    for ((m, state), memory) in members.iter().zip(states).zip(memories) {
        let (state, step) = m.step(tape, state, memory, ids)?;
        let logits = m.logits(tape, &step.top)?;
        sum = Some(match (sum, members.len()) {
            (_, 1) => logits,
            (None, _) => tape.log_softmax(&logits, None)?,
            (Some(s), _) => {
                let lp = tape.log_softmax(&logits, None)?;
                tape.add(&s, &lp)?
            }
        });
        next.push(state);
        steps.push(step);
    }
    let sum = sum.ok_or_else(no_members)?;
    let scores = match members.len() {
        1 => sum,
        m => tape.scale(&sum, 1.0 / m as f32)?,
    };
    Ok((next, steps, scores))
}

/// Each member's states `[L, n_in, H]` at rows `rows` (what beam search keeps).
fn regather(
    members: &[&Seq2Seq],
    tape: &mut Tape,
    states: &[State],
    rows: &[usize],
    n_in: usize,
) -> Result<Vec<State>> {
    let n = rows.len();
    let mut out = Vec::with_capacity(members.len());
    for (m, state) in members.iter().zip(states) {
        let (hd, l) = (m.cfg.decoder_hidden(), m.cfg.layers);
        let feed = match &state.feed {
            Some(f) => {
                let f = gather_rows(tape.rec(), &f.reshape(&[n_in, 1, hd])?, rows)?;
                Some(Var::constant(f.reshape(&[n, hd])?))
            }
            None => None,
        };
        out.push(State {
            h: gather_layers(tape, &state.h, rows, l, n_in)?,
            c: gather_layers(tape, &state.c, rows, l, n_in)?,
            feed,
        });
    }
    Ok(out)
}

fn no_members() -> Error {
    Error::Empty {
        op: OP,
        what: "ensemble members",
        shape: vec![0],
    }
}

/// The first member, whose special tokens and padding every member shares.
fn lead<'a>(members: &[&'a Seq2Seq]) -> Result<&'a Seq2Seq> {
    members.first().copied().ok_or_else(no_members)
}
