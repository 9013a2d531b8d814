//! The decoder as a stream: sources encoded once, then target tokens fed one step
//! at a time, the decoder's state (and the attention memory) kept on the GPU
//! between calls. Greedy, sampled and beam decoding are loops of this step; a
//! stream lets an application drive it itself (its own stopping rule, forced
//! tokens, several continuations from one prefix by cloning).

use super::decoder::State;
use super::encoder::Memory;
use super::Seq2Seq;
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// See the module docs. Cloning forks it: both go on from the same state, and
/// nothing is copied (each step writes new tensors).
#[derive(Clone, Debug)]
pub struct DecoderStream<'a> {
    model: &'a Seq2Seq,
    memory: Memory,
    state: State,
    weights: Option<Var>,
}

/// Runs `f` on an inference tape that records into `rec`.
fn on_tape<T>(rec: &mut Recorder, f: impl FnOnce(&mut Tape) -> Result<T>) -> Result<T> {
    let ctx = rec.context().clone();
    let mut tape = Tape::eval_on(std::mem::replace(
        rec,
        Recorder::new(&ctx, "seq2seq stream"),
    ));
    let out = f(&mut tape);
    *rec = tape.into_recorder();
    out
}

impl Seq2Seq {
    /// Records encoding the sources `src` (one stream per source) and returns the
    /// decoder's stream before its first token (feed it `bos`).
    pub fn stream<'a>(&'a self, rec: &mut Recorder, src: &[&[u32]]) -> Result<DecoderStream<'a>> {
        let batch = self.sources(src)?;
        let (memory, state) = on_tape(rec, |tape| self.encode(tape, &batch))?;
        Ok(DecoderStream {
            model: self,
            memory,
            state,
            weights: None,
        })
    }
}

impl DecoderStream<'_> {
    /// Sources, one stream each.
    pub fn batch(&self) -> usize {
        self.memory.lengths.len()
    }

    /// Records one decoder step on `ids` (one target token per source); returns
    /// the logits of the next token `[N, V]`. A wrong count or an id past the
    /// vocabulary is an error that leaves the stream as it was.
    pub fn feed(&mut self, rec: &mut Recorder, ids: &[u32]) -> Result<Tensor> {
        if ids.len() != self.batch() {
            return Err(Error::ShapeMismatch {
                op: "decoder stream",
                what: "ids",
                expected: format!("one token for each of {} sources", self.batch()),
                got: vec![ids.len()],
            });
        }
        let model = self.model;
        let (next, step, logits) = on_tape(rec, |tape| {
            let (next, step) = model.step(tape, &self.state, &self.memory, ids)?;
            let logits = model.logits(tape, &step.top)?;
            Ok((next, step, logits))
        })?;
        self.state = next;
        self.weights = step.weights;
        Ok(logits.tensor().clone())
    }

    /// The attention weights of the last step `[N, 1, S]` (attention links).
    pub fn attention(&self) -> Option<&Tensor> {
        self.weights.as_ref().map(|w| w.tensor())
    }
}
