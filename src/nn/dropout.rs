//! Dropout (torch.nn.Dropout): in training, each element is zeroed with
//! probability p and the rest scaled by 1 / (1 − p); in evaluation it is the
//! identity. Masks come from a seed and a call counter (on a tape with a stream,
//! [`Tape::with_stream`], from the step's number), so a seeded run repeats.
//!
//! ```
//! use rnn_wgpu::nn::dropout::Dropout;
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let drop = Dropout::new(0.5, 7);
//!     let mut tape = Tape::train(&ctx, "dropout");
//!     let x = tape.from_slice(&[1000], &[1.0; 1000])?;
//!     let y = drop.apply(&mut tape, &x)?;
//!     tape.into_recorder().submit();
//!     let y = y.to_vec()?;
//!     // Kept elements are scaled by 1 / (1 - p); about half are kept.
//!     assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
//!     let kept = y.iter().filter(|&&v| v > 0.0).count();
//!     assert!((400..600).contains(&kept));
//!     // In evaluation it is the identity.
//!     let mut tape = Tape::eval(&ctx, "eval");
//!     let x = tape.from_slice(&[3], &[1.0, 2.0, 3.0])?;
//!     let same = drop.apply(&mut tape, &x)?;
//!     tape.into_recorder().submit();
//!     assert_eq!(same.to_vec()?, [1.0, 2.0, 3.0]);
//!     Ok(())
//! }
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::ops::dropout;
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};

/// See the module docs.
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    seed: u32,
    calls: AtomicU32,
}

/// The mask of one forward, for its backward (None: nothing was dropped).
#[derive(Clone, Copy, Debug)]
pub struct Mask(Option<u32>);

impl Dropout {
    /// Drop probability `p` (0 ≤ p < 1), masks from `seed`.
    pub fn new(p: f32, seed: u32) -> Self {
        Self {
            p,
            seed,
            calls: AtomicU32::new(0),
        }
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Records the forward; `train` false (evaluation) returns `x` itself.
    pub fn forward(&self, rec: &mut Recorder, x: &Tensor, train: bool) -> Result<(Tensor, Mask)> {
        self.forward_drawn(rec, x, train, &mut Draws::Counters)
    }

    /// [`forward`](Self::forward) with its mask's seed from `draws`.
    pub(crate) fn forward_drawn(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        train: bool,
        draws: &mut Draws,
    ) -> Result<(Tensor, Mask)> {
        if !train || self.p == 0.0 {
            return Ok((x.clone(), Mask(None)));
        }
        let seed = draws.seed(self.seed, &self.calls);
        let y = rec.empty(x.shape(), x.dtype())?;
        dropout::apply(rec, &y, x, self.p, seed)?;
        Ok((y, Mask(Some(seed))))
    }

    /// [`forward`](Self::forward) on a tape: drops on a training tape only.
    pub fn apply(&self, tape: &mut Tape, x: &Var) -> Result<Var> {
        let train = tape.is_training();
        let (rec, mut draws) = tape.rec_and_draws();
        let (y, mask) = self.forward_drawn(rec, x, train, &mut draws)?;
        let Mask(Some(seed)) = mask else {
            return Ok(x.clone());
        };
        let p = self.p;
        Ok(tape.unary(x, y, false, move |rec, dy| undrop(rec, &dy, p, seed)))
    }

    /// Records the backward of a forward that returned `mask`.
    pub fn backward(&self, rec: &mut Recorder, dy: &Tensor, mask: Mask) -> Result<Tensor> {
        match mask.0 {
            None => Ok(dy.clone()),
            Some(seed) => undrop(rec, dy, self.p, seed),
        }
    }
}

/// Dropout `p` between stacked layers, as a stack's `with_dropout` sets it:
/// `None` for 0, [`Error::InvalidArgument`] outside [0, 1). Shared by the
/// stack's clones, as its call counter must be.
pub(crate) fn between_layers(op: &'static str, p: f32, seed: u32) -> Result<Option<Arc<Dropout>>> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::InvalidArgument {
            op,
            what: "dropout between layers",
            expected: "0 <= p < 1",
            got: p.to_string(),
        });
    }
    Ok((p > 0.0).then(|| Arc::new(Dropout::new(p, seed))))
}

/// The mask seed of call `call` of masks drawn from `seed`: each call draws anew.
pub(crate) fn call_seed(seed: u32, call: u32) -> u32 {
    seed.wrapping_mul(0x9E37_79B9).wrapping_add(call)
}

/// Where a training forward's mask seeds come from: each drawer's own call
/// counter, or a tape's stream ([`Tape::with_stream`]): the stream's position
/// and the draws made on the tape so far, so that a step's masks depend on
/// the step alone and a resumed run draws what the uninterrupted one drew.
pub(crate) enum Draws<'a> {
    Counters,
    Stream { position: u32, draws: &'a mut u32 },
}

impl Draws<'_> {
    /// The seed of the next draw of a drawer seeded `seed` counting its calls
    /// in `calls`.
    pub(crate) fn seed(&mut self, seed: u32, calls: &AtomicU32) -> u32 {
        match self {
            Draws::Counters => call_seed(seed, calls.fetch_add(1, Ordering::Relaxed)),
            Draws::Stream { position, draws } => {
                let n = **draws;
                **draws += 1;
                call_seed(call_seed(seed, *position), n.wrapping_mul(0x2545_F491))
            }
        }
    }
}

/// The backward of a forward with drop probability `p` and mask `seed`: the same
/// mask and scale applied to `dy`.
fn undrop(rec: &mut Recorder, dy: &Tensor, p: f32, seed: u32) -> Result<Tensor> {
    let dx = rec.empty(dy.shape(), DType::F32)?;
    dropout::apply(rec, &dx, dy, p, seed)?;
    Ok(dx)
}
