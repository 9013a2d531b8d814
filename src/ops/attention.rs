//! Additive (Bahdanau) attention scores and their backward
//! (`shaders/attention.wgsl`). Dot and general scores and the context are GEMMs
//! and the masked softmax is [`super::softmax`]'s ([`crate::nn::attention`]).

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::Tensor;

const OP: &str = "attention";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    tq: u32,
    s: u32,
    a: u32,
}

/// Checks the additive score's projections pq `[B, Tq, A]`, pk `[B, S, A]` and v
/// `[A]` against scores of (B, Tq, S); returns A.
fn check_additive(
    rec: &Recorder,
    dims: (usize, usize, usize),
    pq: &Tensor,
    pk: &Tensor,
    v: &Tensor,
) -> Result<usize> {
    super::check_f32(rec, OP, &[("pq", pq), ("pk", pk), ("v", v)])?;
    let (b, tq, s) = dims;
    let a = v.numel();
    for (what, t, shape) in [("pq", pq, [b, tq, a]), ("pk", pk, [b, s, a])] {
        if t.shape() != shape {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("{shape:?}"),
                got: t.shape().to_vec(),
            });
        }
    }
    if a == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "v",
            shape: v.shape().to_vec(),
        });
    }
    Ok(a)
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    dims: (usize, usize, usize),
    a: usize,
    elements: usize,
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let (b, tq, s) = dims;
    let params = Params {
        rows: (b * tq) as u32,
        tq: tq as u32,
        s: s as u32,
        a: a as u32,
    };
    let groups = super::grid_elems(rec, elements);
    rec.dispatch_entry(
        &shaders::ATTENTION,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        tensors,
        groups,
    )
}

/// Records additive scores `e[b, i, s] = Σ_a v[a]·tanh(pq[b, i, a] + pk[b, s, a])`.
pub fn additive_scores(
    rec: &mut Recorder,
    scores: &Tensor,
    pq: &Tensor,
    pk: &Tensor,
    v: &Tensor,
) -> Result<()> {
    super::check_f32(rec, OP, &[("scores", scores)])?;
    let &[b, tq, s] = scores.shape() else {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "scores",
            expected: "[B, Tq, S]".into(),
            got: scores.shape().to_vec(),
        });
    };
    let a = check_additive(rec, (b, tq, s), pq, pk, v)?;
    launch(
        rec,
        "additive_scores",
        (b, tq, s),
        a,
        b * tq * s,
        &[(3, scores), (6, pq), (7, pk), (8, v)],
    )
}

/// Records the gradients of [`additive_scores`] for `de` `[B, Tq, S]`: writes `dpq`
/// and `dpk` (shaped like pq and pk) and adds to `dv`.
#[allow(clippy::too_many_arguments)]
pub fn additive_backward(
    rec: &mut Recorder,
    dpq: &Tensor,
    dpk: &Tensor,
    dv: &Tensor,
    de: &Tensor,
    pq: &Tensor,
    pk: &Tensor,
    v: &Tensor,
) -> Result<()> {
    super::check_f32(
        rec,
        OP,
        &[("de", de), ("dpq", dpq), ("dpk", dpk), ("dv", dv)],
    )?;
    let &[b, tq, s] = de.shape() else {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "de",
            expected: "[B, Tq, S]".into(),
            got: de.shape().to_vec(),
        });
    };
    let dims = (b, tq, s);
    let a = check_additive(rec, dims, pq, pk, v)?;
    check_additive(rec, dims, dpq, dpk, dv)?;
    // The v gradient needs de and t only.
    for (entry, out, n, uses_v) in [
        ("additive_dq", dpq, b * tq * a, true),
        ("additive_dk", dpk, b * s * a, true),
        ("additive_dv", dv, a, false),
    ] {
        let mut tensors = vec![(4, de), (6, pq), (7, pk), (9, out)];
        if uses_v {
            tensors.push((8, v));
        }
        launch(rec, entry, dims, a, n, &tensors)?;
    }
    Ok(())
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::ATTENTION);
