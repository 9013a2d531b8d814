//! Checks the gradients a tape gives for any function of [`Var`]s against
//! central differences, as `torch.autograd.gradcheck`: the function's output
//! `y` is contracted with a fixed random `r` (L = Σ y·r), the tape's backward
//! gives dL/dx for every input, and each element of each input is moved by ±eps
//! to difference L. The function must be deterministic (no dropout).
//!
//! Two ways to difference: [`GradCheck::run`] runs the function itself on the
//! device in f32 for every move (no reference needed, loose tolerances: f32
//! rounding divided by 2·eps), [`GradCheck::run_with_reference`] differences
//! an f64 host reference of the function instead, and checks the forward
//! against it too (tight tolerances). Either reports the worst element of each
//! input.

use std::fmt;

use super::{Param, Tape, Var};
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::init::SplitMix;
use crate::tensor::{DType, Tensor};

/// How to check and how closely (see the module docs). An element passes
/// where |analytic − numeric| ≤ atol + rtol·|numeric|.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GradCheck {
    /// The step of the central differences.
    pub eps: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Seeds the contraction `r`.
    pub seed: u64,
}

impl Default for GradCheck {
    /// For [`run`](GradCheck::run): eps 1e-3, rtol 1e-2, atol 1e-3. An f32
    /// difference quotient of a function of values near 1 carries rounding of
    /// about 1e-7 / 1e-3 = 1e-4 per output the move changes; the tolerances
    /// leave room for a few hundred of them.
    fn default() -> Self {
        Self {
            eps: 1e-3,
            rtol: 1e-2,
            atol: 1e-3,
            seed: 0x9e37,
        }
    }
}

impl GradCheck {
    /// The defaults for [`run`](Self::run) (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults for [`run_with_reference`](Self::run_with_reference): eps
    /// 1e-6 on the f64 reference (its differences are exact to about 1e-10),
    /// rtol 1e-4 and atol 1e-5 for the f32 kernels against it.
    pub fn against_reference() -> Self {
        Self {
            eps: 1e-6,
            rtol: 1e-4,
            atol: 1e-5,
            ..Self::default()
        }
    }

    /// The step of the central differences.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// The tolerances (relative to the numeric value, and absolute).
    pub fn with_tolerance(mut self, rtol: f64, atol: f64) -> Self {
        self.rtol = rtol;
        self.atol = atol;
        self
    }

    /// The seed of the contraction `r`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks `f`'s gradients with respect to each of `inputs` (f32 tensors;
    /// they are read, not changed) against central differences of `f` itself,
    /// run on the device. Blocking (native only; a page awaits
    /// [`run_async`](Self::run_async)).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run<F>(&self, ctx: &Context, inputs: &[&Tensor], f: F) -> Result<GradReport>
    where
        F: Fn(&mut Tape, &[Var]) -> Result<Var>,
    {
        pollster::block_on(self.run_async(ctx, inputs, f))
    }

    /// [`run`](Self::run), awaited.
    pub async fn run_async<F>(&self, ctx: &Context, inputs: &[&Tensor], f: F) -> Result<GradReport>
    where
        F: Fn(&mut Tape, &[Var]) -> Result<Var>,
    {
        self.check(ctx, inputs, &f, None::<&fn(&[Vec<f64>]) -> Vec<f64>>)
            .await
    }

    /// Checks `f`'s output against `reference` (the same function in f64 on
    /// the host, given the inputs' values) and its gradients against central
    /// differences of `reference`. Blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_with_reference<F, R>(
        &self,
        ctx: &Context,
        inputs: &[&Tensor],
        f: F,
        reference: R,
    ) -> Result<GradReport>
    where
        F: Fn(&mut Tape, &[Var]) -> Result<Var>,
        R: Fn(&[Vec<f64>]) -> Vec<f64>,
    {
        pollster::block_on(self.run_with_reference_async(ctx, inputs, f, reference))
    }

    /// [`run_with_reference`](Self::run_with_reference), awaited.
    pub async fn run_with_reference_async<F, R>(
        &self,
        ctx: &Context,
        inputs: &[&Tensor],
        f: F,
        reference: R,
    ) -> Result<GradReport>
    where
        F: Fn(&mut Tape, &[Var]) -> Result<Var>,
        R: Fn(&[Vec<f64>]) -> Vec<f64>,
    {
        self.check(ctx, inputs, &f, Some(&reference)).await
    }

    async fn check<F, R>(
        &self,
        ctx: &Context,
        inputs: &[&Tensor],
        f: &F,
        reference: Option<&R>,
    ) -> Result<GradReport>
    where
        F: Fn(&mut Tape, &[Var]) -> Result<Var>,
        R: Fn(&[Vec<f64>]) -> Vec<f64>,
    {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::InvalidArgument {
                op: "gradcheck",
                what: "eps",
                expected: "a finite step above 0",
                got: self.eps.to_string(),
            });
        }
        let mut values = Vec::with_capacity(inputs.len());
        for x in inputs {
            if x.context().id() != ctx.id() {
                return Err(Error::DeviceMismatch { op: "gradcheck" });
            }
            if x.dtype() != DType::F32 {
                return Err(Error::DType {
                    op: "gradcheck",
                    what: "an input",
                    expected: DType::F32,
                    got: x.dtype(),
                });
            }
            values.push(x.to_vec_async().await?);
        }
        // The tape's gradients of L = Σ y·r, each input a parameter of its own.
        let params = values
            .iter()
            .zip(inputs)
            .map(|(v, x)| Param::new(Tensor::from_slice(ctx, x.shape(), v)?))
            .collect::<Result<Vec<_>>>()?;
        let mut tape = Tape::train(ctx, "gradcheck");
        let vars: Vec<Var> = params.iter().map(|p| tape.param(p)).collect();
        let out = f(&mut tape, &vars)?;
        let r: Vec<f32> = SplitMix::new(self.seed).uniform(out.numel(), 1.0);
        let r_tensor = Tensor::from_slice(ctx, out.shape(), &r)?;
        tape.backward_with(&out, &r_tensor)?;
        tape.into_recorder().submit();
        let y = out.to_vec_async().await?;
        let mut analytic = Vec::with_capacity(params.len());
        for p in &params {
            analytic.push(p.grad.to_vec_async().await?);
        }
        let r: Vec<f64> = r.iter().map(|&v| f64::from(v)).collect();
        let contract = |y: &[f64]| -> f64 { y.iter().zip(&r).map(|(a, b)| a * b).sum() };

        let mut report = GradReport {
            inputs: Vec::with_capacity(inputs.len()),
            forward: None,
            rtol: self.rtol,
            atol: self.atol,
        };
        match reference {
            Some(reference) => {
                let mut x: Vec<Vec<f64>> = values
                    .iter()
                    .map(|v| v.iter().map(|&a| f64::from(a)).collect())
                    .collect();
                let want = reference(&x);
                let got: Vec<f64> = y.iter().map(|&a| f64::from(a)).collect();
                report.forward = Some(self.worst(&got, &want));
                for k in 0..x.len() {
                    let mut numeric = Vec::with_capacity(x[k].len());
                    for j in 0..x[k].len() {
                        let at = x[k][j];
                        x[k][j] = at + self.eps;
                        let plus = contract(&reference(&x));
                        x[k][j] = at - self.eps;
                        let minus = contract(&reference(&x));
                        x[k][j] = at;
                        numeric.push((plus - minus) / (2.0 * self.eps));
                    }
                    report
                        .inputs
                        .push(self.worst(&to_f64(&analytic[k]), &numeric));
                }
            }
            None => {
                let moved = inputs
                    .iter()
                    .zip(&values)
                    .map(|(x, v)| Tensor::from_slice(ctx, x.shape(), v))
                    .collect::<Result<Vec<_>>>()?;
                let eval = || async {
                    let mut tape = Tape::train(ctx, "gradcheck");
                    let vars: Vec<Var> = moved.iter().cloned().map(Var::constant).collect();
                    let out = f(&mut tape, &vars)?;
                    tape.into_recorder().submit();
                    Ok::<f64, Error>(contract(&to_f64(&out.to_vec_async().await?)))
                };
                for (k, v) in values.iter().enumerate() {
                    let mut numeric = Vec::with_capacity(v.len());
                    for (j, &at) in v.iter().enumerate() {
                        // The steps as f32 takes them, so the quotient divides
                        // by the distance actually moved.
                        let up = (f64::from(at) + self.eps) as f32;
                        let down = (f64::from(at) - self.eps) as f32;
                        moved[k].write_at(j, &[up])?;
                        let plus = eval().await?;
                        moved[k].write_at(j, &[down])?;
                        let minus = eval().await?;
                        moved[k].write_at(j, &[at])?;
                        numeric.push((plus - minus) / (f64::from(up) - f64::from(down)));
                    }
                    report
                        .inputs
                        .push(self.worst(&to_f64(&analytic[k]), &numeric));
                }
            }
        }
        Ok(report)
    }

    /// The element of `got` furthest past the tolerance around `want`.
    fn worst(&self, got: &[f64], want: &[f64]) -> Worst {
        let mut worst = Worst {
            index: 0,
            got: f64::NAN,
            want: f64::NAN,
            excess: f64::NEG_INFINITY,
        };
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let excess = (g - w).abs() - (self.atol + self.rtol * w.abs());
            // NaN anywhere fails, and is the worst.
            let excess = if excess.is_nan() {
                f64::INFINITY
            } else {
                excess
            };
            if excess > worst.excess {
                worst = Worst {
                    index: i,
                    got: g,
                    want: w,
                    excess,
                };
            }
        }
        if got.len() != want.len() {
            worst.excess = f64::INFINITY;
        }
        worst
    }
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| f64::from(a)).collect()
}

/// The element furthest from its expected value, of one input's gradient or
/// of the forward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Worst {
    /// Row-major index of the element.
    pub index: usize,
    /// The tape's gradient (or the device's output).
    pub got: f64,
    /// The central difference (or the reference's output).
    pub want: f64,
    /// |got − want| past the tolerance: at most 0 passes.
    pub excess: f64,
}

/// What [`GradCheck`] found.
#[derive(Clone, Debug)]
pub struct GradReport {
    /// The worst gradient element of each input, in order.
    pub inputs: Vec<Worst>,
    /// The worst output element against the reference, when there was one.
    pub forward: Option<Worst>,
    rtol: f64,
    atol: f64,
}

impl GradReport {
    /// Whether every checked element is within the tolerance.
    pub fn passed(&self) -> bool {
        self.inputs
            .iter()
            .chain(&self.forward)
            .all(|w| w.excess <= 0.0)
    }
}

impl fmt::Display for GradReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        write!(
            f,
            "gradcheck {verdict} (|got − want| ≤ {:e} + {:e}·|want|)",
            self.atol, self.rtol
        )?;
        let line = |f: &mut fmt::Formatter<'_>, what: String, w: &Worst| {
            let mark = if w.excess <= 0.0 { "ok" } else { "FAIL" };
            write!(
                f,
                "\n  {mark} {what}: worst element {} is {:.6e}, expected {:.6e}",
                w.index, w.got, w.want
            )
        };
        if let Some(w) = &self.forward {
            line(f, "forward".into(), w)?;
        }
        for (i, w) in self.inputs.iter().enumerate() {
            line(f, format!("gradient of input {i}"), w)?;
        }
        Ok(())
    }
}
