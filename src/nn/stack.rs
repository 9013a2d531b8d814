//! A recurrent stack of any [`Cell`] behind one type, for the models that take
//! a cell choice: a run-time one ([`Recurrent`]: LSTM, GRU, Elman) or a minimal
//! one trained by a scan ([`MinGru`], [`MinLstm`]).

use super::recurrent::{Config, Recurrent, State};
use super::{Cell, Entry, HiddenState, MinGru, MinLstm, Module, Stream};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::tape::{Tape, Var};
use crate::tensor::DType;

#[derive(Clone, Debug)]
pub(crate) enum Stack {
    Recurrent(Recurrent),
    MinGru(MinGru),
    MinLstm(MinLstm),
}

impl Stack {
    /// A stack of `cell` with `cfg`'s sizes, initialized as PyTorch does from `seed`.
    pub(crate) fn new(ctx: &Context, cell: Cell, cfg: Config, seed: u64) -> Result<Self> {
        Ok(match cell {
            Cell::Recurrent(mode) => Stack::Recurrent(Recurrent::new(ctx, mode, cfg, seed)?),
            Cell::MinGru => Stack::MinGru(MinGru::new(ctx, cfg, seed)?),
            Cell::MinLstm => Stack::MinLstm(MinLstm::new(ctx, cfg, seed)?),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Stack::Recurrent(r) => r.mode().name(),
            Stack::MinGru(_) => "min_gru",
            Stack::MinLstm(_) => "min_lstm",
        }
    }

    /// Whether the cell is an LSTM (whose state has a cell state beside h).
    pub(crate) fn is_lstm(&self) -> bool {
        matches!(self, Stack::Recurrent(r) if r.mode() == super::Mode::Lstm)
    }

    /// The stack's sizes.
    pub(crate) fn config(&self) -> Config {
        match self {
            Stack::Recurrent(r) => *r.config(),
            Stack::MinGru(m) => m.config(),
            Stack::MinLstm(m) => m.config(),
        }
    }

    /// The run-time stack (`None` for minGRU and minLSTM).
    pub(crate) fn recurrent(&self) -> Option<&Recurrent> {
        match self {
            Stack::Recurrent(r) => Some(r),
            _ => None,
        }
    }

    /// A stream of `batch` sequences over the stack from zero states.
    pub(crate) fn stream(&self, rec: &mut Recorder, batch: usize) -> Result<Stream> {
        match self {
            Stack::Recurrent(r) => r.stream(rec, batch),
            Stack::MinGru(m) => m.stream(rec, batch),
            Stack::MinLstm(m) => m.stream(rec, batch),
        }
    }

    /// A minimal cell refuses what only the run-time ones have (`what`, asked
    /// of `op`).
    pub(crate) fn recurrent_only(self, op: &'static str, what: &'static str) -> Result<Recurrent> {
        match self {
            Stack::Recurrent(r) => Ok(r),
            other => Err(Error::InvalidArgument {
                op,
                what,
                expected: "an LSTM, GRU or Elman cell",
                got: other.name().to_string(),
            }),
        }
    }

    /// Dropout `p` between stacked layers, masks from `seed`.
    pub(crate) fn with_dropout(self, p: f32, seed: u32) -> Result<Self> {
        Ok(match self {
            Stack::Recurrent(r) => Stack::Recurrent(r.with_dropout(p, seed)?),
            Stack::MinGru(m) => Stack::MinGru(m.with_dropout(p, seed)?),
            Stack::MinLstm(m) => Stack::MinLstm(m.with_dropout(p, seed)?),
        })
    }

    /// Activations stored as `dtype`.
    pub(crate) fn with_storage(self, dtype: DType) -> Result<Self> {
        Ok(match self {
            Stack::Recurrent(r) => Stack::Recurrent(r.with_storage(dtype)?),
            Stack::MinGru(m) => Stack::MinGru(m.with_storage(dtype)?),
            Stack::MinLstm(m) => Stack::MinLstm(m.with_storage(dtype)?),
        })
    }

    /// Records the stack over `x` from the initial `state` (zero when `None`):
    /// the outputs and the state each sequence ends in.
    pub(crate) fn apply(
        &self,
        tape: &mut Tape,
        x: &Var,
        lengths: &[usize],
        state: Option<&State<Var>>,
    ) -> Result<(Var, State<Var>)> {
        let (y, s) = match self {
            Stack::Recurrent(r) => {
                let out = r.apply(tape, x, lengths, state)?;
                return Ok((out.y, out.state));
            }
            Stack::MinGru(m) => m.apply(tape, x, lengths, self.hidden(state)?.as_ref())?,
            Stack::MinLstm(m) => m.apply(tape, x, lengths, self.hidden(state)?.as_ref())?,
        };
        Ok((y, State::Hidden { h: s.h }))
    }

    /// A minimal cell's initial state: a hidden state or none.
    fn hidden(&self, state: Option<&State<Var>>) -> Result<Option<HiddenState>> {
        self.check_state(self.name(), state)?;
        Ok(state.map(|s| HiddenState { h: s.h().clone() }))
    }

    /// Refuses, as `op`, a state of the other kind than the cell's: an LSTM's
    /// state for an LSTM, a hidden state for every other cell.
    pub(crate) fn check_state<T>(&self, op: &'static str, state: Option<&State<T>>) -> Result<()> {
        State::check_kind(state, (op, "state"), self.is_lstm(), (self.name(), "model"))
    }
}

impl Module for Stack {
    fn entries(&self) -> Vec<Entry> {
        match self {
            Stack::Recurrent(r) => r.entries(),
            Stack::MinGru(m) => m.entries(),
            Stack::MinLstm(m) => m.entries(),
        }
    }
}
