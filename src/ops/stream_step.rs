//! One step of a recurrent layer for a stream (`shaders/stream_step.wgsl`): the
//! input product, the recurrent product and the cell in one dispatch, for every
//! cell kind, the minimal cells (input product and cell) included. Inference
//! only: a stream runs a trained model token by token, so this kernel has no
//! backward (training steps run the per-step products and the cells of
//! `recurrence`, or the scan of `min_rnn`, whose backwards exist).

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::ops::gemm::{self, View};
use crate::ops::layer_norm_lstm;
use crate::ops::min_rnn::MinCell;
use crate::ops::recurrence::{Geometry, Mode, Zoneout};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "stream_step";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    i: u32,
    h: u32,
    t: u32,
    steps: u32,
    h_zone: f32,
    c_zone: f32,
    s: u32,
}

/// The cell a step runs: a recurrent stack's, or a minimal one whose gates
/// read the input only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepCell {
    /// LSTM, GRU or Elman.
    Recurrent(Mode),
    /// minGRU or minLSTM.
    Min(MinCell),
}

impl StepCell {
    /// Gate blocks of H in W_ih's rows.
    pub fn gates(self) -> usize {
        match self {
            StepCell::Recurrent(mode) => mode.gates(),
            StepCell::Min(cell) => cell.gates(),
        }
    }

    /// The shader's MODE.
    fn shader_mode(self) -> f64 {
        match self {
            StepCell::Recurrent(Mode::Lstm) => 0.0,
            StepCell::Recurrent(Mode::Gru) => 1.0,
            StepCell::Recurrent(Mode::RnnTanh) => 2.0,
            StepCell::Recurrent(Mode::RnnRelu) => 3.0,
            StepCell::Min(MinCell::Gru) => 4.0,
            StepCell::Min(MinCell::Lstm) => 5.0,
        }
    }
}

impl From<Mode> for StepCell {
    fn from(mode: Mode) -> Self {
        StepCell::Recurrent(mode)
    }
}

/// A layer's weights as the step reads them: `w_ih` `[G, I]`, `w_hh` `[G, S]`
/// (none for a minimal cell) and `bias` `[2, G]` (b_ih then b_hh; a minimal
/// cell reads b_ih only), G = gates · H, and an LSTM's output projection `w_hr`
/// `[P, H]` (S = P with one, else H); with the layer's zoneout probabilities
/// for h and c (zero: none), whose expectation the step applies. A
/// LayerNorm-LSTM's step reads its biases and normalizations from `ln`, `[1,
/// 18H]` as `ops::layer_norm_lstm` lays them out, and runs its products as GEMMs
/// and its cell there.
#[derive(Clone, Debug)]
pub struct Weights {
    /// The cell.
    pub cell: StepCell,
    /// Input weights.
    pub w_ih: Tensor,
    /// Recurrent weights (`None` for a minimal cell).
    pub w_hh: Option<Tensor>,
    /// Both biases.
    pub bias: Tensor,
    /// An LSTM's projection.
    pub w_hr: Option<Tensor>,
    /// Zoneout of h and c (expectation).
    pub zoneout: [f32; 2],
    /// A LayerNorm-LSTM's parameters.
    pub ln: Option<Tensor>,
}

impl Weights {
    /// (input size I, units H).
    pub fn sizes(&self) -> (usize, usize) {
        let [g, i] = self.w_ih.shape() else {
            return (0, 0);
        };
        (*i, g / self.cell.gates())
    }

    /// S, the width of the state and output: P with a projection, else H.
    pub fn state_size(&self) -> usize {
        match &self.w_hh {
            Some(w_hh) => w_hh.shape().get(1).copied().unwrap_or(0),
            None => self.sizes().1,
        }
    }

    /// Whether the cell is an LSTM's (it has a cell state).
    pub(crate) fn is_lstm(&self) -> bool {
        self.cell == StepCell::Recurrent(Mode::Lstm)
    }
}

/// Records one step from step `t` of `x` (`[B, T, I]`, or `[B, I]` as one step)
/// and the state `h` `[B, S]` (and the LSTM's `c` `[B, H]`): returns the new `h`
/// (projected, with a projection) and, for the LSTM, the new `c`, as new tensors.
pub fn forward(
    rec: &mut Recorder,
    w: &Weights,
    x: &Tensor,
    t: usize,
    h: &Tensor,
    c: Option<&Tensor>,
) -> Result<(Tensor, Option<Tensor>)> {
    let (i, units) = w.sizes();
    let sw = w.state_size();
    let g = w.cell.gates() * units;
    let b = x.shape().first().copied().unwrap_or(0);
    let steps = if x.shape().len() == 3 {
        x.shape()[1]
    } else {
        1
    };
    let x_shape = if x.shape().len() == 3 {
        vec![b, steps, i]
    } else {
        vec![b, i]
    };
    if t >= steps {
        return Err(Error::IndexOutOfRange {
            op: OP,
            what: "step of x",
            index: 0,
            value: t,
            bound: steps,
        });
    }
    if w.w_hh.is_some() != matches!(w.cell, StepCell::Recurrent(_)) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "w_hh",
            got: if w.w_hh.is_some() { "given" } else { "missing" }.into(),
            expected: "recurrent weights for an LSTM, GRU or Elman step, none for a minimal cell",
        });
    }
    // A minimal cell reads W_ih where the others read W_hh (never reading it).
    let w_hh = w.w_hh.as_ref().unwrap_or(&w.w_ih);
    let mut bound = vec![
        ("x", x),
        ("h", h),
        ("w_ih", &w.w_ih),
        ("w_hh", w_hh),
        ("bias", &w.bias),
    ];
    bound.extend(c.map(|c| ("c", c)));
    bound.extend(w.w_hr.as_ref().map(|w_hr| ("w_hr", w_hr)));
    super::check_f32(rec, OP, &bound)?;
    let expect = [
        ("x", x, x_shape),
        ("h", h, vec![b, sw]),
        ("w_ih", &w.w_ih, vec![g, i]),
        ("bias", &w.bias, vec![2, g]),
    ];
    let w_hh_shape = w.w_hh.as_ref().map(|w_hh| ("w_hh", w_hh, vec![g, sw]));
    let w_hr = w.w_hr.as_ref().map(|w_hr| ("w_hr", w_hr, vec![sw, units]));
    for (what, t, shape) in expect
        .into_iter()
        .chain(w_hh_shape)
        .chain(c.map(|c| ("c", c, vec![b, units])))
        .chain(w_hr)
    {
        if t.shape() != shape.as_slice() {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("{shape:?}"),
                got: t.shape().to_vec(),
            });
        }
    }
    if b == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "x",
            shape: x.shape().to_vec(),
        });
    }
    let projected = w.w_hr.is_some() || sw != units;
    if projected && (!w.is_lstm() || w.zoneout != [0.0; 2] || w.w_hr.is_none()) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "w_hr",
            got: format!("{:?} with zoneout {:?}", w.cell, w.zoneout),
            expected: "a projection (w_hr and a w_hh as wide as it) of an LSTM without zoneout",
        });
    }
    if let Some(ln) = &w.ln {
        let ok = w.is_lstm() && !projected;
        if !ok || ln.shape() != [1, layer_norm_lstm::lnp_width(units)] {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "ln",
                got: format!("{:?} for a {:?} step", ln.shape(), w.cell),
                expected: "[1, 18H] of an LSTM without projection",
            });
        }
    }
    if c.is_some() != w.is_lstm() {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "c",
            got: if c.is_some() { "given" } else { "missing" }.into(),
            expected: "the LSTM's cell state, and no other cell's",
        });
    }
    let max = rec.context().limits().max_compute_workgroups_per_dimension as usize;
    if b > max {
        return Err(Error::LimitExceeded {
            op: OP,
            what: "sequences in one step",
            value: b as u64,
            limit: max as u64,
        });
    }
    if let (Some(ln), Some(c)) = (&w.ln, c) {
        let x = View {
            offset: t * i,
            row_stride: steps * i,
            ..View::matrix(x, b, i, false)
        };
        return layer_norm_step(rec, w, w_hh, ln, x, h, c);
    }
    let h_out = rec.empty(&[b, units], DType::F32)?;
    let c_out = match c {
        Some(_) => Some(rec.empty(&[b, units], DType::F32)?),
        None => None,
    };
    let params = Params {
        b: b as u32,
        i: i as u32,
        h: units as u32,
        t: t as u32,
        steps: steps as u32,
        h_zone: w.zoneout[0],
        c_zone: w.zoneout[1],
        s: sw as u32,
    };
    // A cell without c reads h as c (reads may alias) and writes c_out into the
    // placeholder (writable bindings may not alias in WebGPU).
    let c_in = c.unwrap_or(h);
    let mut held = vec![x, h, c_in, &w.w_ih, w_hh, &w.bias, &h_out];
    held.extend(c_out.as_ref());
    rec.hold(&held);
    let ctx = rec.context().clone();
    let c_out_binding = match &c_out {
        Some(t) => t.buffer().as_entire_binding(),
        None => ctx.placeholder().as_entire_binding(),
    };
    let vec4 = units.is_multiple_of(4) && i.is_multiple_of(4) && sw.is_multiple_of(4);
    // A CPU adapter runs a workgroup per core at a time: 16-lane workgroups give
    // a batch-1 step of 256 units sixteen of them.
    let cpu = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let wg: u32 = if vec4 && cpu { 16 } else { 64 };
    // forward4 reads x, h and the weights through vec4 views bound elsewhere.
    let (entry, [bx, bh, bw_ih, bw_hh]) = if vec4 {
        ("forward4", [12, 13, 9, 10])
    } else {
        ("forward", [1, 2, 4, 5])
    };
    let constants = [("MODE", w.cell.shader_mode()), ("WG", f64::from(wg))];
    let bindings = [
        (bx, x),
        (bh, h),
        (3, c_in),
        (bw_ih, &w.w_ih),
        (bw_hh, w_hh),
        (6, &w.bias),
        (7, &h_out),
    ];
    let pipeline = ctx.pipeline(&shaders::STREAM_STEP, entry, &constants);
    let mut resources: Vec<_> = bindings
        .iter()
        .map(|&(i, t)| (i, t.buffer().as_entire_binding()))
        .collect();
    resources.push((8, c_out_binding));
    rec.dispatch(
        &format!("{OP}::{entry}"),
        &pipeline,
        bytemuck::bytes_of(&params),
        &resources,
        [units.div_ceil(wg as usize) as u32, b as u32, 1],
    )?;
    let Some(w_hr) = &w.w_hr else {
        return Ok((h_out, c_out));
    };
    // h = W_hr · (o ⊙ tanh(c)) of each sequence.
    let h_proj = rec.empty(&[b, sw], DType::F32)?;
    gemm::matmul(
        rec,
        View::matrix(&h_proj, b, sw, false),
        View::matrix(&h_out, b, units, false),
        View::matrix(w_hr, sw, units, false).t(),
    )?;
    Ok((h_proj, c_out))
}

/// A LayerNorm-LSTM's step: the products x·W_ihᵀ and h·W_hhᵀ as GEMMs, then the
/// training forward's cell on a one-step recurrence whose slots 0 and 1 hold the
/// states before and after.
fn layer_norm_step(
    rec: &mut Recorder,
    w: &Weights,
    w_hh: &Tensor,
    lnp: &Tensor,
    x: View,
    h: &Tensor,
    c: &Tensor,
) -> Result<(Tensor, Option<Tensor>)> {
    let (i, units) = w.sizes();
    let (b, g) = (x.rows, 4 * units);
    let xw = rec.empty(&[b, g], DType::F32)?;
    gemm::matmul(
        rec,
        View::matrix(&xw, b, g, false),
        x,
        View::matrix(&w.w_ih, g, i, false).t(),
    )?;
    let gh = rec.empty(&[b, g], DType::F32)?;
    gemm::matmul(
        rec,
        View::matrix(&gh, b, g, false),
        View::matrix(h, b, units, false),
        View::matrix(w_hh, g, units, false).t(),
    )?;
    let n = b * units;
    let (hs, cs) = (
        rec.empty(&[2, n], DType::F32)?,
        rec.empty(&[2, n], DType::F32)?,
    );
    rec.copy_range(&hs, 0, h, 0, n)?;
    rec.copy_range(&cs, 0, c, 0, n)?;
    let lengths = Tensor::from_u32(rec.context(), &[b], &vec![1; b])?;
    let saved = rec.empty(&[b, layer_norm_lstm::saved_width(units)], DType::F32)?;
    let geo = Geometry {
        batch: b,
        steps: 1,
        hidden: units,
        dirs: 1,
    };
    let io = layer_norm_lstm::ForwardIo {
        lengths: &lengths,
        xw: &xw,
        gh: &gh,
        lnp,
        hs: &hs,
        cs: &cs,
        saved: &saved,
        // Zoneout's expectation, as the other cells' streams.
        zoneout: (w.zoneout != [0.0; 2]).then_some(Zoneout {
            h: w.zoneout[0],
            c: w.zoneout[1],
            seed: None,
        }),
    };
    layer_norm_lstm::forward(rec, geo, 0, layer_norm_lstm::EPS, &io, None)?;
    let (h_out, c_out) = (
        rec.empty(&[b, units], DType::F32)?,
        rec.empty(&[b, units], DType::F32)?,
    );
    rec.copy_range(&h_out, 0, &hs, n, n)?;
    rec.copy_range(&c_out, 0, &cs, n, n)?;
    Ok((h_out, Some(c_out)))
}

#[cfg(test)]
crate::ops::params_match_the_wgsl_struct!(crate::shaders::STREAM_STEP);
