//! The minGRU and minLSTM recurrence (`shaders/min_rnn.wgsl`): from the
//! pre-activations of every step (one GEMM), the states of every step by a
//! chunked scan over time in one dispatch, whatever T; and its backward, the
//! same scan in reverse, giving the pre-activations' gradients and dh0. Both
//! directions of a bidirectional layer in the same dispatch. The
//! pre-activations and the states may be stored as f16 (the scan runs in f32);
//! h0, h_n and every gradient are f32. An invocation scans four neighbouring
//! units where H is a multiple of 4 (`shaders/min_rnn4.wgsl`), one otherwise.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "min_rnn";
/// Invocations per workgroup, as in the shader.
const GROUP: usize = 64;
/// Invocations a dispatch should have at least: below, a channel (direction,
/// sequence and one or four units) scans its steps in up to 16 chunks at once;
/// above, each runs through time alone, with no workgroup barriers.
const PARALLEL: usize = 2048;

/// Mirror of `Params` in shaders/min_rnn.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    h: u32,
    d: u32,
    lstm: u32,
    has_h0: u32,
    groups_x: u32,
    chunks: u32,
}

/// The cell: which gates the pre-activations hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MinCell {
    /// minGRU: z, h̃ (G = 2).
    Gru,
    /// minLSTM: f, i, h̃ (G = 3).
    Lstm,
}

impl MinCell {
    /// Gate blocks of H in the pre-activations.
    pub fn gates(self) -> usize {
        match self {
            Self::Gru => 2,
            Self::Lstm => 3,
        }
    }
}

/// The sizes of a recurrence: `dirs` directions of `batch` sequences of
/// `steps` steps, `hidden` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The cell.
    pub cell: MinCell,
    /// Sequences.
    pub batch: usize,
    /// Steps.
    pub steps: usize,
    /// Units.
    pub hidden: usize,
    /// Directions, 1 or 2.
    pub dirs: usize,
}

impl Shape {
    /// Invocations per channel: 1, 2, 4, 8 or 16, as many as keep the dispatch
    /// at [`PARALLEL`] invocations and the chunks at a step or more.
    fn chunks(&self) -> usize {
        let channels = self.channels();
        let mut chunks = 1;
        while chunks < 16 && channels * chunks < PARALLEL && chunks * 2 <= self.steps {
            chunks *= 2;
        }
        chunks
    }

    /// Channels (direction, sequence and one or four units): the invocations
    /// of a scan in one chunk.
    fn channels(&self) -> usize {
        self.dirs * self.batch * self.hidden / self.width()
    }

    /// Units per invocation: 4 where H allows.
    fn width(&self) -> usize {
        if self.hidden.is_multiple_of(4) {
            4
        } else {
            1
        }
    }

    /// The kernels of this width.
    fn shader(&self) -> &'static shaders::Shader {
        if self.width() == 4 {
            &shaders::MIN_RNN4
        } else {
            &shaders::MIN_RNN
        }
    }

    fn params(&self, rec: &Recorder, has_h0: bool) -> Result<(Params, [u32; 3])> {
        let channels = self.channels();
        let chunks = self.chunks();
        let groups = channels.div_ceil(GROUP / chunks);
        let max = rec.context().limits().max_compute_workgroups_per_dimension as usize;
        let groups_x = groups.min(max);
        let groups_y = groups.div_ceil(groups_x);
        let pre = self.batch * self.steps * self.dirs * self.cell.gates() * self.hidden;
        if groups_y > max || pre > u32::MAX as usize {
            return Err(Error::LimitExceeded {
                op: OP,
                what: "pre-activations",
                value: pre as u64,
                limit: u32::MAX as u64,
            });
        }
        let u = |v: usize| v as u32;
        Ok((
            Params {
                b: u(self.batch),
                t: u(self.steps),
                h: u(self.hidden / self.width()),
                d: u(self.dirs),
                lstm: u32::from(self.cell == MinCell::Lstm),
                has_h0: u32::from(has_h0),
                groups_x: u(groups_x),
                chunks: u(chunks),
            },
            [u(groups_x), u(groups_y), 1],
        ))
    }

    fn check(&self, what: &'static str, t: &Tensor, shape: &[usize]) -> Result<()> {
        if t.shape() != shape {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("{shape:?}"),
                got: t.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// Checks the operands every entry point reads.
    fn check_inputs(
        &self,
        rec: &Recorder,
        pre: &Tensor,
        lengths: &Tensor,
        h0: Option<&Tensor>,
    ) -> Result<()> {
        let &Shape {
            batch: b,
            steps: t,
            hidden: h,
            dirs: d,
            ..
        } = self;
        if [b, t, h].contains(&0) || !(1..=2).contains(&d) {
            return Err(Error::Empty {
                op: OP,
                what: "[dirs, batch, steps, hidden]",
                shape: vec![d, b, t, h],
            });
        }
        super::check_float(rec, OP, &[("pre", pre)])?;
        self.check("pre", pre, &[b, t, d * self.cell.gates() * h])?;
        super::check_dtypes(rec, OP, &[("lengths", lengths)], &[DType::U32])?;
        self.check("lengths", lengths, &[b])?;
        if let Some(h0) = h0 {
            super::check_f32(rec, OP, &[("h0", h0)])?;
            self.check("h0", h0, &[d, b, h])?;
        }
        Ok(())
    }
}

/// Records the states of every step from the pre-activations `pre` `[B, T,
/// D·G·H]` (direction-major, gate blocks of H) of sequences `lengths` (u32
/// `[B]`, each 1..=T: the caller checks them) long, from `h0` `[D, B, H]` (zero
/// when `None`): returns `y` `[B, T, D·H]` (0 past each length; stored as `pre`
/// is) and `h_n` `[D, B, H]`.
pub fn forward(
    rec: &mut Recorder,
    shape: Shape,
    pre: &Tensor,
    lengths: &Tensor,
    h0: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    shape.check_inputs(rec, pre, lengths, h0)?;
    let (params, groups) = shape.params(rec, h0.is_some())?;
    let (b, t, h, d) = (shape.batch, shape.steps, shape.hidden, shape.dirs);
    let y = rec.empty(&[b, t, d * h], pre.dtype())?;
    let hn = rec.empty(&[d, b, h], DType::F32)?;
    rec.dispatch_entry(
        shape.shader(),
        "forward",
        &super::f16_aliases(&[("pre_t", pre), ("y_t", &y)]),
        bytemuck::bytes_of(&params),
        &[
            (1, pre),
            (2, lengths),
            (3, h0.unwrap_or(lengths)),
            (4, &y),
            (5, &hn),
        ],
        groups,
    )?;
    Ok((y, hn))
}

/// Records the backward of [`forward`] (its `pre`, `lengths`, `h0` and output
/// `y`, stored as `pre` is) from the gradients (f32) of `y` and of `h_n` (zero
/// when `None`): returns those of `pre` (f32, 0 past each length) and of `h0`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    rec: &mut Recorder,
    shape: Shape,
    pre: &Tensor,
    lengths: &Tensor,
    h0: Option<&Tensor>,
    y: &Tensor,
    dy: &Tensor,
    dhn: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    shape.check_inputs(rec, pre, lengths, h0)?;
    let (b, t, h, d) = (shape.batch, shape.steps, shape.hidden, shape.dirs);
    super::check_f32(rec, OP, &[("dy", dy)])?;
    if y.dtype() != pre.dtype() {
        return Err(Error::DType {
            op: OP,
            what: "y",
            expected: pre.dtype(),
            got: y.dtype(),
        });
    }
    shape.check("y", y, &[b, t, d * h])?;
    shape.check("dy", dy, &[b, t, d * h])?;
    let zeros;
    let dhn = match dhn {
        Some(g) => {
            super::check_f32(rec, OP, &[("dh_n", g)])?;
            shape.check("dh_n", g, &[d, b, h])?;
            g
        }
        None => {
            zeros = rec.empty(&[d, b, h], DType::F32)?;
            rec.zero(&zeros)?;
            &zeros
        }
    };
    let (params, groups) = shape.params(rec, h0.is_some())?;
    let dpre = rec.empty(pre.shape(), DType::F32)?;
    let dh0 = rec.empty(&[d, b, h], DType::F32)?;
    rec.dispatch_entry(
        shape.shader(),
        "backward",
        &super::f16_aliases(&[("pre_t", pre), ("y_t", y)]),
        bytemuck::bytes_of(&params),
        &[
            (1, pre),
            (2, lengths),
            (3, h0.unwrap_or(lengths)),
            (6, y),
            (7, dy),
            (8, dhn),
            (9, &dpre),
            (10, &dh0),
        ],
        groups,
    )?;
    Ok((dpre, dh0))
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::MIN_RNN, crate::shaders::MIN_RNN4);
