//! Decoding: greedy and beam search. Each step is one submit whose only readback
//! is the chosen tokens (and, for beam search, their scores and origins).

use super::decoder::State;
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
        Ok(self
            .decode(ctx, src, max_len, false, Pick::Greedy)
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
        let mut out = self
            .decode(ctx, &[src], max_len, true, Pick::Greedy)
            .await?;
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
        Ok(self
            .decode(ctx, src, max_len, false, Pick::Sample(how, seed))
            .await?
            .into_iter()
            .map(|(tokens, _)| tokens)
            .collect())
    }

    async fn decode(
        &self,
        ctx: &Context,
        src: &[&[u32]],
        max_len: usize,
        want_weights: bool,
        pick: Pick<'_>,
    ) -> Result<Vec<Translation>> {
        const LABEL: &str = "seq2seq decode";
        let mut rng = match pick {
            Pick::Sample(_, seed) => SplitMix::new(seed),
            Pick::Greedy => SplitMix::new(0),
        };
        let batch = self.sources(src)?;
        let (b, s) = (batch.size, batch.steps);
        let mut tape = Tape::eval(ctx, LABEL);
        let (memory, mut state) = self.encode(&mut tape, &batch)?;
        let mut ids = vec![self.cfg.bos; b];
        let mut out = vec![(Vec::new(), Vec::new()); b];
        let mut done = vec![false; b];
        for _ in 0..max_len {
            let (next, step) = self.step(&mut tape, &state, &memory, &ids)?;
            let logits = self.logits(&mut tape, &step.top)?;
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
            let weights = match (&step.weights, want_weights) {
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
        const LABEL: &str = "seq2seq beam";
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
        let mut tape = Tape::eval(ctx, LABEL);
        let (memory, state) = self.encode(&mut tape, &batch)?;
        // Every source's memory and state repeated for its k hypotheses.
        let parents: Vec<usize> = (0..n).map(|r| r / k).collect();
        let memory = Memory {
            keys: Var::constant(gather_rows(tape.rec(), &memory.keys, &parents)?),
            lengths: parents.iter().map(|&p| memory.lengths[p]).collect(),
        };
        let mut state = State {
            h: gather_layers(&mut tape, &state.h, &parents, l, b)?,
            c: gather_layers(&mut tape, &state.c, &parents, l, b)?,
            feed: self.zero_feed(&tape, n)?,
        };
        // Only the first slot of each source is alive at the start.
        let mut scores: Vec<f32> = (0..n)
            .map(|r| if r % k == 0 { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let mut finished = vec![false; n];
        let mut seqs: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut ids = vec![self.cfg.bos; n];
        for _ in 0..max_len {
            let (next, step) = self.step(&mut tape, &state, &memory, &ids)?;
            let logits = self.logits(&mut tape, &step.top)?;
            let score_t = Tensor::from_slice(ctx, &[n], &scores)?;
            let done: Vec<u32> = finished.iter().map(|&f| u32::from(f)).collect();
            let done_t = Tensor::from_u32(ctx, &[n], &done)?;
            let st = beam::step(tape.rec(), &logits, &score_t, &done_t, k, self.cfg.eos)?;
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
            let feed = match &next.feed {
                Some(f) => {
                    let rows = gather_rows(tape.rec(), &f.reshape(&[n, 1, hd])?, &rows)?;
                    Some(Var::constant(rows.reshape(&[n, hd])?))
                }
                None => None,
            };
            state = State {
                h: gather_layers(&mut tape, &next.h, &rows, l, n)?,
                c: gather_layers(&mut tape, &next.c, &rows, l, n)?,
                feed,
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
