//! A recurrent language model (embedding → stacked RNN, LSTM, GRU, minGRU or
//! minLSTM ([`Cell`]) → linear → cross-entropy of the next token), trained by truncated backpropagation through
//! time over continuous streams: each chunk starts from the state the previous
//! chunk ended in, and its backward stops there. Generation samples on the GPU,
//! from a stream ([`LanguageModel::stream`]) that reads a token per step.
//! Dropout ([`LanguageModel::with_dropout`]) on the embeddings, between layers
//! and on the last layer's outputs, in training steps only (Zaremba et al.'s
//! regularization of LSTM language models). Zoneout
//! ([`LanguageModel::with_zoneout`]) on the recurrent states and recurrent
//! dropout ([`LanguageModel::with_recurrent_dropout`]) on what the recurrent
//! products read, in training steps; evaluation and generation use zoneout's
//! expectation and no recurrent dropout.
//!
//! ```
//! use rnn_wgpu::data::Streams;
//! use rnn_wgpu::models::{LanguageModel, LanguageModelConfig};
//! use rnn_wgpu::nn::Module;
//! use rnn_wgpu::ops::sample::Sampling;
//! use rnn_wgpu::train::{Method, OptimConfig, Optimizer};
//! use rnn_wgpu::{Context, Result};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let text: Vec<u32> = (0..400).map(|i| 2 + i % 5).collect(); // 2 3 4 5 6 2 3 ...
//!     let model = LanguageModel::new(&ctx, LanguageModelConfig::new(8).with_emb(8).with_hidden(16).with_layers(1), 1)?;
//!     let mut opt = Optimizer::new(&ctx, OptimConfig::new(Method::ADAM, 0.02), model.params())?;
//!     // Truncated BPTT: 4 streams of 10-step chunks, each chunk from the state the last ended in.
//!     let streams = Streams::new(&text, 4, 10)?;
//!     let mut state = None;
//!     let mut loss = f32::INFINITY;
//!     for _ in 0..3 {
//!         for i in 0..streams.chunks() {
//!             let chunk = streams.chunk(i).expect("a chunk");
//!             let (report, next) = model.train_step(&ctx, &chunk, state.as_ref(), &mut opt)?;
//!             (loss, state) = (report.loss, Some(next));
//!         }
//!     }
//!     assert!(loss < 0.5, "{loss}");
//!     let next = model.sample(&ctx, &[2, 3, 4], 5, &Sampling::at(0.1), 7)?;
//!     assert_eq!(next, [5, 6, 2, 3, 4]);
//!     Ok(())
//! }
//! ```

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::init::SplitMix;
use crate::nn::recurrent::{Mode, Recurrent};
use crate::nn::stack::Stack;
use crate::nn::{prefixed, Cell, Config, Dropout, Embedding, Entry, Linear, Module, Stream};
use crate::ops::sample::{self, Sampling};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;
use crate::train::{self, Optimizer, Step, StepReport, TrainStep};

/// See the module docs.
#[derive(Debug)]
pub struct LanguageModel {
    /// The token embedding, `embedding.weight`.
    embedding: Embedding,
    /// The recurrent stack, `rnn.*`.
    rnn: Stack,
    /// The output layer, `fc.*`.
    fc: Linear,
    /// Dropout on the embeddings and the outputs.
    dropout: Dropout,
}

const OP: &str = "LanguageModel";

/// Records `stack` over `x` from `state`: the outputs and the state each
/// sequence ends in.
fn run(
    stack: &Stack,
    tape: &mut Tape,
    x: &Var,
    lengths: &[usize],
    state: Option<&State>,
) -> Result<(Var, State)> {
    stack.check_state(OP, state)?;
    let state = state.map(|s| s.map(|t| Var::constant(t.clone())));
    let (y, last) = stack.apply(tape, x, lengths, state.as_ref())?;
    Ok((y, last.map(|v| v.tensor().clone())))
}

/// The recurrent state a chunk ends in, `[L, B, H]` per tensor: an LSTM's
/// hidden and cell states ([`nn::State::Lstm`](crate::nn::State::Lstm)), or the
/// hidden state of the other cells ([`nn::State::Hidden`](crate::nn::State::Hidden)).
pub type State = crate::nn::State<Tensor>;

/// One chunk of a training stream and the state the previous chunk ended in.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// The chunk.
    pub batch: Batch,
    /// The state the previous chunk ended in (`None`: zero).
    pub state: Option<State>,
}

/// The streams as [`train::fit`](crate::train::fit()) reads them: every epoch the
/// same chunks in order, each starting without a state (`fit` hands each
/// chunk the state the one before it ended in).
#[cfg(not(target_arch = "wasm32"))]
impl train::Epochs for crate::data::Streams<'_> {
    type Batch = Chunk;

    fn batches(&mut self, _epoch: usize) -> Result<usize> {
        Ok(self.chunks())
    }

    fn batch(&mut self, _epoch: usize, index: usize) -> Result<Chunk> {
        let batch = self.chunk(index).ok_or(Error::IndexOutOfRange {
            op: "streams",
            what: "chunk",
            index: 0,
            value: index,
            bound: self.chunks(),
        })?;
        Ok(Chunk { batch, state: None })
    }
}

/// The sizes of a [`LanguageModel`]: [`LanguageModelConfig::new`] with the
/// vocabulary, then `with_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LanguageModelConfig {
    /// Tokens in the vocabulary.
    pub vocab: usize,
    /// Embedding size.
    pub emb: usize,
    /// Units per layer.
    pub hidden: usize,
    /// Stacked layers (unidirectional).
    pub layers: usize,
    /// The cell.
    pub cell: Cell,
}

impl LanguageModelConfig {
    /// A model of `vocab` tokens: embeddings of 64, 2 LSTM layers of 256 units.
    pub fn new(vocab: usize) -> Self {
        Self {
            vocab,
            emb: 64,
            hidden: 256,
            layers: 2,
            cell: Cell::Recurrent(Mode::Lstm),
        }
    }

    /// Embedding size.
    pub fn with_emb(self, emb: usize) -> Self {
        Self { emb, ..self }
    }

    /// Units per layer.
    pub fn with_hidden(self, hidden: usize) -> Self {
        Self { hidden, ..self }
    }

    /// Stacked layers.
    pub fn with_layers(self, layers: usize) -> Self {
        Self { layers, ..self }
    }

    /// One of the run-time cells (LSTM, GRU, Elman).
    pub fn with_mode(self, mode: Mode) -> Self {
        self.with_cell(Cell::Recurrent(mode))
    }

    /// The cell: a run-time one or minGRU / minLSTM.
    pub fn with_cell(self, cell: Cell) -> Self {
        Self { cell, ..self }
    }
}

impl LanguageModel {
    /// A model initialized as PyTorch does, from `seed`.
    pub fn new(ctx: &Context, cfg: LanguageModelConfig, seed: u64) -> Result<Self> {
        let sizes = Config::new(cfg.emb, cfg.hidden).with_layers(cfg.layers);
        let rnn = Stack::new(ctx, cfg.cell, sizes, seed + 1)?;
        Ok(Self {
            embedding: Embedding::new(ctx, cfg.vocab, cfg.emb, None, seed)?,
            rnn,
            fc: Linear::new(ctx, cfg.hidden, cfg.vocab, true, seed + 2)?,
            dropout: Dropout::new(0.0, seed as u32),
        })
    }

    /// The same model with dropout `p` in training steps (see the module docs).
    /// A `p` outside [0, 1) is an error.
    pub fn with_dropout(self, p: f32, seed: u32) -> Result<Self> {
        Ok(Self {
            rnn: self.rnn.with_dropout(p, seed.wrapping_add(1))?,
            dropout: Dropout::new(p, seed),
            ..self
        })
    }

    /// The run-time stack (`None` for minGRU and minLSTM).
    pub fn recurrent(&self) -> Option<&Recurrent> {
        self.rnn.recurrent()
    }

    /// The same LSTM model on `ctx` with its states projected to `proj` values
    /// (PyTorch's `proj_size`; see [`Recurrent::with_projection`]), the output
    /// layer reading them: both newly initialized from `seed`.
    pub fn with_projection(self, ctx: &Context, proj: usize, seed: u64) -> Result<Self> {
        let vocab = self.fc.params()[0].value.shape()[0];
        let rnn = self.rnn.recurrent_only(OP, "projection")?;
        if rnn.mode() != Mode::Lstm {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "projection",
                expected: "an LSTM",
                got: rnn.mode().name().to_string(),
            });
        }
        Ok(Self {
            rnn: Stack::Recurrent(rnn.clone().with_projection(proj, seed)?),
            fc: Linear::new(ctx, proj, vocab, true, seed + 1)?,
            ..self
        })
    }

    /// The same model with zoneout on its recurrent stack: probabilities `h` and
    /// (LSTM only, else 0) `c`; see [`Recurrent::with_zoneout`].
    pub fn with_zoneout(self, h: f32, c: f32, seed: u32) -> Result<Self> {
        if h == 0.0 && c == 0.0 && !matches!(self.rnn, Stack::Recurrent(_)) {
            return Ok(self);
        }
        let rnn = self.rnn.recurrent_only(OP, "zoneout")?;
        Ok(Self {
            rnn: Stack::Recurrent(rnn.with_zoneout(h, c, seed)?),
            ..self
        })
    }

    /// The same model with recurrent dropout `p` on its recurrent stack; see
    /// [`Recurrent::with_recurrent_dropout`].
    pub fn with_recurrent_dropout(self, p: f32, seed: u32) -> Result<Self> {
        if p == 0.0 && !matches!(self.rnn, Stack::Recurrent(_)) {
            return Ok(self);
        }
        let rnn = self.rnn.recurrent_only(OP, "recurrent dropout")?;
        Ok(Self {
            rnn: Stack::Recurrent(rnn.with_recurrent_dropout(p, seed)?),
            ..self
        })
    }

    /// The same LSTM model as a LayerNorm-LSTM (see
    /// [`Recurrent::with_layer_norm`]).
    pub fn with_layer_norm(self) -> Result<Self> {
        let rnn = self.rnn.recurrent_only(OP, "layer norm")?;
        Ok(Self {
            rnn: Stack::Recurrent(rnn.with_layer_norm()?),
            ..self
        })
    }

    /// Records the logits `[B, T, V]` of `ids` (row-major `[B, T]`, every
    /// sequence T long) on `tape` from `state` (zero when `None`; no gradient flows
    /// into it: truncated BPTT); returns them and the state the chunk ends in.
    pub fn forward(
        &self,
        tape: &mut Tape,
        ids: &[u32],
        batch: usize,
        steps: usize,
        state: Option<&State>,
    ) -> Result<(Var, State)> {
        self.forward_lengths(tape, ids, batch, steps, &vec![steps; batch], state)
    }

    /// [`forward`](Self::forward) of sequences `lengths` long (1..=`steps`):
    /// the state each ends in is the one at its length.
    fn forward_lengths(
        &self,
        tape: &mut Tape,
        ids: &[u32],
        batch: usize,
        steps: usize,
        lengths: &[usize],
        state: Option<&State>,
    ) -> Result<(Var, State)> {
        let emb = self.embedding.apply(tape, ids, &[batch, steps])?;
        let emb = self.dropout.apply(tape, &emb)?;
        let (y, next) = run(&self.rnn, tape, &emb, lengths, state)?;
        let y = self.dropout.apply(tape, &y)?;
        let logits = self.fc.apply(tape, &y)?;
        Ok((logits, next))
    }

    /// Records the forward of `batch` (ids, next-token targets, each sequence
    /// its length long) and the mean cross-entropy over its targets; returns it
    /// and the state each sequence ends in at its length.
    pub fn loss(
        &self,
        tape: &mut Tape,
        batch: &Batch,
        state: Option<&State>,
    ) -> Result<(Var, State)> {
        crate::ops::check_lengths(
            "LanguageModel::loss",
            "batch.lengths",
            &batch.lengths,
            batch.size,
            batch.steps,
        )?;
        let (logits, next) = self.forward_lengths(
            tape,
            &batch.ids,
            batch.size,
            batch.steps,
            &batch.lengths,
            state,
        )?;
        let loss = tape.cross_entropy(&logits, &batch.targets, Some(Batch::IGNORE))?;
        Ok((loss, next))
    }

    /// One training step on a chunk, one submit: returns the loss and gradient
    /// norm, and the state to start the next chunk from.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_step(
        &self,
        ctx: &Context,
        batch: &Batch,
        state: Option<&State>,
        opt: &mut Optimizer,
    ) -> Result<(StepReport, State)> {
        pollster::block_on(self.train_step_async(ctx, batch, state, opt))
    }

    /// [`train_step`](Self::train_step), awaited.
    pub async fn train_step_async(
        &self,
        ctx: &Context,
        batch: &Batch,
        state: Option<&State>,
        opt: &mut Optimizer,
    ) -> Result<(StepReport, State)> {
        let chunk = Chunk {
            batch: batch.clone(),
            state: state.cloned(),
        };
        train::step_async(self, ctx, &chunk, opt).await
    }

    /// Reads `prime` (at least one token), then samples `n` tokens one at a time
    /// as `how` says (temperature, top-k, top-p), the uniform numbers drawn from
    /// `seed`; returns the sampled tokens. Each step is one submit that reads back
    /// one id.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sample(
        &self,
        ctx: &Context,
        prime: &[u32],
        n: usize,
        how: &Sampling,
        seed: u64,
    ) -> Result<Vec<u32>> {
        pollster::block_on(self.sample_async(ctx, prime, n, how, seed))
    }

    /// [`sample`](Self::sample), awaited.
    pub async fn sample_async(
        &self,
        ctx: &Context,
        prime: &[u32],
        n: usize,
        how: &Sampling,
        seed: u64,
    ) -> Result<Vec<u32>> {
        let label = "language model sample";
        let mut rng = SplitMix::new(seed);
        let mut rec = Recorder::new(ctx, label);
        let mut stream = self.stream(&mut rec, 1)?;
        // The last prime token's logits predict the first sampled token.
        let mut logits = stream.feed(&mut rec, prime)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let u = Tensor::from_slice(ctx, &[1], &[rng.uniform_unit()])?;
            let id = sample::forward(&mut rec, &logits, &u, how)?;
            let id = std::mem::replace(&mut rec, Recorder::new(ctx, label))
                .submit_read_u32_async(&id)
                .await?[0];
            out.push(id);
            if i + 1 < n {
                logits = stream.feed(&mut rec, &[id])?;
            }
        }
        Ok(out)
    }

    /// A stream of `batch` sequences from zero states (see [`crate::nn::stream`]):
    /// tokens in, logits out, the state kept on the GPU. Records the weights'
    /// preparation into `rec`.
    pub fn stream(&self, rec: &mut Recorder, batch: usize) -> Result<LanguageModelStream> {
        Ok(LanguageModelStream {
            rnn: self.rnn.stream(rec, batch)?,
            embedding: self.embedding.clone(),
            fc: self.fc.clone(),
        })
    }
}

/// A [`LanguageModel`] run token by token: see [`LanguageModel::stream`].
/// Cloning forks it (both continue from the same state; nothing is copied).
#[derive(Clone, Debug)]
pub struct LanguageModelStream {
    rnn: Stream,
    embedding: Embedding,
    fc: Linear,
}

impl LanguageModelStream {
    /// Records reading `ids`, row-major `[B, T]` (T tokens of each of the B
    /// sequences, at least one); returns the logits `[B, V]` after the last.
    /// Ids past the vocabulary are an error that leaves the stream as it was.
    pub fn feed(&mut self, rec: &mut Recorder, ids: &[u32]) -> Result<Tensor> {
        let b = self.rnn.batch();
        if ids.is_empty() || !ids.len().is_multiple_of(b) {
            return Err(Error::ShapeMismatch {
                op: "language model stream",
                what: "ids",
                expected: format!("T > 0 tokens for each of {b} sequences"),
                got: vec![ids.len()],
            });
        }
        let (x, _) = self.embedding.forward(rec, ids, &[b, ids.len() / b])?;
        let h = self.rnn.feed(rec, &x)?;
        self.fc.forward(rec, &h)
    }

    /// Records starting over from zero states with `batch` sequences.
    pub fn reset(&mut self, rec: &mut Recorder, batch: usize) -> Result<()> {
        self.rnn.reset(rec, batch)
    }

    /// The recurrent stream underneath (its states, or states to set).
    pub fn rnn(&mut self) -> &mut Stream {
        &mut self.rnn
    }
}

impl TrainStep for LanguageModel {
    type Batch = Chunk;
    type Carry = State;
    const LABEL: &'static str = "language model step";

    fn loss(&self, tape: &mut Tape, chunk: &Chunk) -> Result<Step<State>> {
        let (loss, next) = LanguageModel::loss(self, tape, &chunk.batch, chunk.state.as_ref())?;
        Ok(Step::carrying(loss, next))
    }

    fn continued(chunk: Chunk, state: State) -> Chunk {
        Chunk {
            state: Some(state),
            ..chunk
        }
    }
}

impl Module for LanguageModel {
    fn entries(&self) -> Vec<Entry> {
        let mut out = prefixed("embedding", self.embedding.entries());
        out.extend(prefixed("rnn", self.rnn.entries()));
        out.extend(prefixed("fc", self.fc.entries()));
        out
    }
}
