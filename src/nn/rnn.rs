//! The recurrent stacks by cell, with their state as a type: an LSTM's `h` and
//! `c`, a GRU's or Elman RNN's `h`. Each wraps a [`Recurrent`] (which picks the
//! cell at run time) and puts it on a tape.
//!
//! ```
//! use rnn_wgpu::nn::{Config, Lstm, LstmState, Module};
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let cfg = Config::new(4, 6).with_layers(2).with_bidirectional(true);
//!     let lstm = Lstm::new(&ctx, cfg, 1)?;
//!     let mut tape = Tape::eval(&ctx, "lstm");
//!     let x = tape.from_slice(&[3, 5, 4], &[0.2; 60])?; // [B, T, I]
//!     let (y, LstmState { h, c }) = lstm.apply(&mut tape, &x, &[5, 1, 3], None)?;
//!     tape.into_recorder().submit();
//!     assert_eq!(y.shape(), [3, 5, 12]); // both directions' outputs
//!     assert_eq!(h.shape(), [4, 3, 6]); // [L·D, B, H], at each length
//!     assert_eq!(c.shape(), h.shape());
//!     assert_eq!(lstm.named_params()[0].name, "weight_ih_l0");
//!     Ok(())
//! }
//! ```

use super::recurrent::{Config, Mode, Recurrent, State};
use super::{Entry, Module};
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::tape::{Tape, Var};

/// The sizes of a stack: [`Config`], which every recurrent layer now takes.
#[deprecated(note = "use nn::Config (the same fields and builders)")]
pub type Sizes = Config;

/// An LSTM stack's state: `[L·D, B, H]` each.
#[derive(Clone, Debug)]
pub struct LstmState {
    /// Hidden state.
    pub h: Var,
    /// Cell state.
    pub c: Var,
}

/// A GRU's or Elman RNN's state: `[L·D, B, H]`.
#[derive(Clone, Debug)]
pub struct HiddenState {
    /// Hidden state.
    pub h: Var,
}

/// torch.nn.LSTM (batch-first).
#[derive(Clone, Debug)]
pub struct Lstm(Recurrent);

/// torch.nn.GRU (batch-first).
#[derive(Clone, Debug)]
pub struct Gru(Recurrent);

/// torch.nn.RNN (batch-first), tanh or ReLU.
#[derive(Clone, Debug)]
pub struct Rnn(Recurrent);

impl Lstm {
    /// A stack initialized as PyTorch does, from `seed`.
    pub fn new(ctx: &Context, cfg: Config, seed: u64) -> Result<Self> {
        Recurrent::new(ctx, Mode::Lstm, cfg, seed).map(Self)
    }

    /// The same stack with its states and outputs projected to `proj_size`
    /// values, as torch.nn.LSTM's `proj_size`, started again from `seed`
    /// ([`Recurrent::with_projection`]).
    pub fn with_projection(self, proj_size: usize, seed: u64) -> Result<Self> {
        self.0.with_projection(proj_size, seed).map(Self)
    }

    /// The outputs `[B, T, D·H]` of `x` `[B, T, I]` (sequence b has `lengths[b]`
    /// real steps) from `state` (zero when `None`), and the state at each
    /// sequence's last real step.
    pub fn apply(
        &self,
        tape: &mut Tape,
        x: &Var,
        lengths: &[usize],
        state: Option<&LstmState>,
    ) -> Result<(Var, LstmState)> {
        let state = state.map(|s| State::Lstm {
            h: s.h.clone(),
            c: s.c.clone(),
        });
        let out = self.0.apply(tape, x, lengths, state.as_ref())?;
        match out.state {
            State::Lstm { h, c } => Ok((out.y, LstmState { h, c })),
            State::Hidden { .. } => Err(Error::Empty {
                op: "lstm",
                what: "cell state",
                shape: vec![],
            }),
        }
    }

    /// The untyped stack (its forward and backward on a recorder, its config).
    pub fn layer(&self) -> &Recurrent {
        &self.0
    }
}

/// GRU and RNN share the typed form: a hidden state only.
macro_rules! hidden_state_stack {
    ($name:ident) => {
        impl $name {
            /// The outputs `[B, T, D·H]` of `x` `[B, T, I]` (sequence b has
            /// `lengths[b]` real steps) from `state` (zero when `None`), and the
            /// state at each sequence's last real step.
            pub fn apply(
                &self,
                tape: &mut Tape,
                x: &Var,
                lengths: &[usize],
                state: Option<&HiddenState>,
            ) -> Result<(Var, HiddenState)> {
                let state = state.map(|s| State::Hidden { h: s.h.clone() });
                let out = self.0.apply(tape, x, lengths, state.as_ref())?;
                let h = out.state.h().clone();
                Ok((out.y, HiddenState { h }))
            }

            /// The untyped stack (its forward and backward on a recorder, its config).
            pub fn layer(&self) -> &Recurrent {
                &self.0
            }
        }
    };
}

hidden_state_stack!(Gru);
hidden_state_stack!(Rnn);

impl Gru {
    /// A stack initialized as PyTorch does, from `seed`.
    pub fn new(ctx: &Context, cfg: Config, seed: u64) -> Result<Self> {
        Recurrent::new(ctx, Mode::Gru, cfg, seed).map(Self)
    }
}

impl Rnn {
    /// A stack with tanh (or, with `relu`, ReLU) initialized as PyTorch does.
    pub fn new(ctx: &Context, cfg: Config, relu: bool, seed: u64) -> Result<Self> {
        let mode = if relu { Mode::RnnRelu } else { Mode::RnnTanh };
        Recurrent::new(ctx, mode, cfg, seed).map(Self)
    }
}

macro_rules! module_of_stack {
    ($($name:ident),+) => {$(
        impl Module for $name {
            fn entries(&self) -> Vec<Entry> {
                self.0.entries()
            }
        }

        impl $name {
            /// The same stack with dropout `p` on each layer's output but the
            /// last, on training tapes ([`Recurrent::with_dropout`]).
            pub fn with_dropout(self, p: f32, seed: u32) -> Result<Self> {
                self.0.with_dropout(p, seed).map(Self)
            }

            /// The same stack with zoneout on h (probability `h`) and the
            /// LSTM's c (`c`; 0 for the others), on training tapes
            /// ([`Recurrent::with_zoneout`]).
            pub fn with_zoneout(self, h: f32, c: f32, seed: u32) -> Result<Self> {
                self.0.with_zoneout(h, c, seed).map(Self)
            }

            /// The same stack with recurrent dropout `p` on the states its
            /// recurrent products read, on training tapes
            /// ([`Recurrent::with_recurrent_dropout`]).
            pub fn with_recurrent_dropout(self, p: f32, seed: u32) -> Result<Self> {
                self.0.with_recurrent_dropout(p, seed).map(Self)
            }
        }
    )+};
}

module_of_stack!(Lstm, Gru, Rnn);
