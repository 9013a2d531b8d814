//! Streams: a trained unidirectional recurrent stack run a token (or a chunk) at a
//! time, as on-device apps run it (keyboards, live tagging, streaming speech). The
//! state stays on the GPU between calls; each step of each layer is one dispatch
//! (both products and the cell, `ops::stream_step`), for a minGRU or minLSTM
//! stack ([`MinGru::stream`](crate::nn::MinGru::stream)) as for the others: the
//! sequential form of their scan. The stream reads the layer's
//! weight matrices in place, but its biases from a copy made with the stream:
//! make a new stream after training further.
//!
//! Steps never write a state in place: each writes new tensors, so an output
//! handed out stays valid, and [`Clone`] forks a stream (both continue from the
//! same state, sharing the weights) without copying anything.
//!
//! A GRU stack fed a prompt, forked, then stepped a token at a time:
//!
//! ```
//! use rnn_wgpu::nn::{Config, Mode, Recurrent};
//! use rnn_wgpu::{Context, Recorder, Result, Tensor};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let cfg = Config::new(8, 16).with_layers(2);
//!     let gru = Recurrent::new(&ctx, Mode::Gru, cfg, 3)?;
//!     let mut rec = Recorder::new(&ctx, "open");
//!     let mut stream = gru.stream(&mut rec, 1)?;                          // one sequence, zero state
//!     let prompt = Tensor::from_slice(&ctx, &[1, 4, 8], &[0.2; 32])?;     // [B, T, I]: a chunk
//!     stream.feed(&mut rec, &prompt)?;
//!     rec.submit();
//!     let mut other = stream.clone();                                      // a fork: both go on from here
//!     for _ in 0..3 {
//!         let mut rec = Recorder::new(&ctx, "token");
//!         let x = Tensor::from_slice(&ctx, &[1, 8], &[0.1; 8])?;         // [B, I]: one token
//!         let y = stream.step(&mut rec, &x)?;                               // [B, H]: the top layer's h
//!         let y = rec.submit_read(&y)?;                                     // one submit, one wait
//!         assert_eq!(y.len(), 16);
//!     }
//!     let mut rec = Recorder::new(&ctx, "reset");
//!     other.reset(&mut rec, 1)?;                                           // back to zero states
//!     rec.submit();
//!     Ok(())
//! }
//! ```

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::nn::recurrent::{layer_norm_params, Recurrent, State};
use crate::nn::Cell;
use crate::ops::min_rnn::MinCell;
use crate::ops::stream_step::{self, StepCell, Weights};
use crate::tensor::{DType, Tensor};

const OP: &str = "stream";

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Stream {
    layers: Vec<Weights>,
    /// Per layer `[B, S]` (S: P with a projection, else H).
    h: Vec<Tensor>,
    /// Per layer `[B, H]`: the LSTM's cell states.
    c: Option<Vec<Tensor>>,
}

impl Recurrent {
    /// A stream of `batch` sequences over this stack from zero states; records
    /// the copy of the biases into `rec`. Bidirectional stacks cannot stream
    /// (their reverse direction reads the future). A projected LSTM's step adds
    /// the projection's product.
    pub fn stream(&self, rec: &mut Recorder, batch: usize) -> Result<Stream> {
        let cfg = *self.config();
        if cfg.bidirectional {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "the stack",
                got: "bidirectional".into(),
                expected: "a unidirectional stack",
            });
        }
        if batch == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "batch",
                shape: vec![0],
            });
        }
        let g = self.mode().gates() * cfg.hidden_size;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for p in self.layers() {
            let bias = rec.empty(&[2, g], DType::F32)?;
            rec.copy_range(&bias, 0, &p.b_ih, 0, g)?;
            rec.copy_range(&bias, g, &p.b_hh, 0, g)?;
            let matrix = |w: &Tensor| w.reshape(&w.shape()[1..]);
            layers.push(Weights {
                cell: StepCell::Recurrent(self.mode()),
                w_ih: matrix(&p.w_ih)?,
                w_hh: Some(matrix(&p.w_hh)?),
                bias,
                w_hr: p.w_hr.as_ref().map(matrix).transpose()?,
                ln: p
                    .ln
                    .as_ref()
                    .map(|ln| layer_norm_params(rec, p, ln, cfg.hidden_size, 1))
                    .transpose()?,
                zoneout: self.zoneout().map_or([0.0; 2], |(h, c)| [h, c]),
            });
        }
        Stream::new(rec, layers, batch)
    }
}

impl Stream {
    /// A stream of `batch` sequences over `layers` (bottom first) from zero
    /// states.
    pub(crate) fn new(rec: &mut Recorder, layers: Vec<Weights>, batch: usize) -> Result<Self> {
        let mut stream = Stream {
            layers,
            h: Vec::new(),
            c: None,
        };
        stream.reset(rec, batch)?;
        Ok(stream)
    }

    /// Sequences in the stream.
    pub fn batch(&self) -> usize {
        self.h[0].shape()[0]
    }

    /// The cell.
    pub fn cell(&self) -> Cell {
        match self.layers[0].cell {
            StepCell::Recurrent(mode) => Cell::Recurrent(mode),
            StepCell::Min(MinCell::Gru) => Cell::MinGru,
            StepCell::Min(MinCell::Lstm) => Cell::MinLstm,
        }
    }

    fn is_lstm(&self) -> bool {
        self.layers[0].is_lstm()
    }

    /// Records one step of every sequence from `x` `[B, I]`; returns the top
    /// layer's new hidden state `[B, S]` (its output; S is P with a projection,
    /// else H).
    pub fn step(&mut self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
        self.feed(rec, x)
    }

    /// Records the steps of a chunk `x` `[B, T, I]` (or `[B, I]`, one step);
    /// returns the top layer's hidden state after the last `[B, S]`.
    pub fn feed(&mut self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
        let steps = match x.shape() {
            [_, _] => 1,
            [_, t, _] => *t,
            _ => 0,
        };
        let (i, _) = self.layers[0].sizes();
        let want = [self.batch(), i];
        let shape_ok =
            x.shape().first() == Some(&want[0]) && x.shape().last() == Some(&want[1]) && steps > 0;
        if !shape_ok {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "x",
                expected: format!("[{}, {}] or [{}, T, {}] with T > 0", want[0], i, want[0], i),
                got: x.shape().to_vec(),
            });
        }
        // New states replace the old ones only once every step is recorded, so
        // that an error leaves the stream as it was.
        let (mut h, mut c) = (self.h.clone(), self.c.clone());
        for t in 0..steps {
            for (l, w) in self.layers.iter().enumerate() {
                let (input, t_in) = if l == 0 {
                    (x.clone(), t)
                } else {
                    (h[l - 1].clone(), 0)
                };
                let cl = c.as_ref().map(|c| &c[l]);
                let (h_new, c_new) = stream_step::forward(rec, w, &input, t_in, &h[l], cl)?;
                h[l] = h_new;
                if let (Some(c), Some(c_new)) = (c.as_mut(), c_new) {
                    c[l] = c_new;
                }
            }
        }
        self.h = h;
        self.c = c;
        Ok(self.output())
    }

    /// The top layer's hidden state `[B, S]`.
    pub fn output(&self) -> Tensor {
        self.h[self.h.len() - 1].clone()
    }

    /// The hidden states, one `[B, S]` per layer.
    pub fn h(&self) -> &[Tensor] {
        &self.h
    }

    /// The state, one tensor per layer: `h` `[B, S]` and, for an LSTM, `c`
    /// `[B, H]`.
    pub fn state(&self) -> State<Vec<Tensor>> {
        State::of(self.h.clone(), self.c.clone())
    }

    /// Records starting over from zero states with `batch` sequences.
    pub fn reset(&mut self, rec: &mut Recorder, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "batch",
                shape: vec![0],
            });
        }
        let (_, units) = self.layers[0].sizes();
        let zeros = |rec: &mut Recorder, width: usize| -> Result<Vec<Tensor>> {
            (0..self.layers.len())
                .map(|_| {
                    let t = rec.empty(&[batch, width], DType::F32)?;
                    rec.zero(&t)?;
                    Ok(t)
                })
                .collect()
        };
        let h = zeros(rec, self.layers[0].state_size())?;
        let c = self.is_lstm().then(|| zeros(rec, units)).transpose()?;
        self.h = h;
        self.c = c;
        Ok(())
    }

    /// Continues from the given state instead, as [`state`](Self::state) gives
    /// it: [`State::Lstm`] for an LSTM, else [`State::Hidden`].
    pub fn set_state(&mut self, state: State<Vec<Tensor>>) -> Result<()> {
        let (h, c) = match state {
            State::Lstm { h, c } => (h, Some(c)),
            State::Hidden { h } => (h, None),
        };
        let (_, units) = self.layers[0].sizes();
        let sw = self.layers[0].state_size();
        let layers = self.layers.len();
        let b = h.first().map_or(0, |t| t.shape()[0]);
        let ok = |v: &Vec<Tensor>, width: usize| {
            v.len() == layers
                && v.iter()
                    .all(|t| t.shape() == [b, width] && t.dtype() == DType::F32)
        };
        if b == 0 || !ok(&h, sw) || c.as_ref().is_some_and(|c| !ok(c, units)) {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "state",
                expected: format!("{layers} f32 tensors [B, {sw}] (c: [B, {units}]) with B > 0"),
                got: h.first().map_or(vec![], |t| t.shape().to_vec()),
            });
        }
        if c.is_some() != self.is_lstm() {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "state",
                got: if c.is_some() {
                    "an LSTM's state"
                } else {
                    "a hidden state"
                }
                .into(),
                expected: "an LSTM's state (State::Lstm) for an LSTM, else a hidden state",
            });
        }
        self.h = h;
        self.c = c;
        Ok(())
    }
}
