//! Layer normalization over the last dimension and its backward
//! (`shaders/layer_norm.wgsl`).

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "layer_norm";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    _pad: u32,
}

/// What backward needs: the input and each row's mean and 1/σ `[N, 2]`.
#[derive(Clone, Debug)]
pub struct Saved {
    x: Tensor,
    stats: Tensor,
}

fn params(rec: &Recorder, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Params> {
    super::check_f32(rec, OP, &[("x", x), ("gamma", gamma), ("beta", beta)])?;
    let d = gamma.numel();
    if d == 0 || x.shape().last() != Some(&d) || beta.numel() != d {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "x",
            expected: format!("[.., {d}] with γ and β of [{d}], non-empty"),
            got: x.shape().to_vec(),
        });
    }
    Ok(Params {
        rows: (x.numel() / d) as u32,
        d: d as u32,
        eps,
        _pad: 0,
    })
}

/// Records `y = LayerNorm(x)` with scale `gamma` and shift `beta` `[D]`; returns `y`
/// (shaped as `x` `[.., D]`) and what backward needs.
pub fn forward(
    rec: &mut Recorder,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<(Tensor, Saved)> {
    let p = params(rec, x, gamma, beta, eps)?;
    let ctx = rec.context().clone();
    let y = rec.empty(x.shape(), DType::F32)?;
    let stats = rec.empty(&[p.rows as usize, 2], DType::F32)?;
    let pipeline = ctx.pipeline(&shaders::LAYER_NORM, "forward", &[]);
    let groups = super::grid_rows(rec, 1, p.rows as usize);
    rec.dispatch_tensors(
        "layer_norm::forward",
        &pipeline,
        bytemuck::bytes_of(&p),
        &[(1, x), (2, gamma), (3, beta), (4, &y), (5, &stats)],
        groups,
    )?;
    Ok((
        y,
        Saved {
            x: x.clone(),
            stats,
        },
    ))
}

/// Records the backward for upstream `dy`: adds to `dgamma`, `dbeta` `[D]` and
/// returns `dx`.
pub fn backward(
    rec: &mut Recorder,
    saved: &Saved,
    dy: &Tensor,
    gamma: &Tensor,
    dgamma: &Tensor,
    dbeta: &Tensor,
) -> Result<Tensor> {
    let p = params(rec, &saved.x, gamma, dgamma, 0.0)?;
    super::check_f32(rec, OP, &[("dy", dy), ("dbeta", dbeta)])?;
    if dy.shape() != saved.x.shape() || dbeta.numel() != p.d as usize {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "dy",
            expected: format!("{:?} like x, dβ of [{}]", saved.x.shape(), p.d),
            got: dy.shape().to_vec(),
        });
    }
    let ctx = rec.context().clone();
    let dx = rec.empty(dy.shape(), DType::F32)?;
    let pipeline = ctx.pipeline(&shaders::LAYER_NORM, "backward", &[]);
    let groups = super::grid_rows(rec, 1, p.rows as usize);
    rec.dispatch_tensors(
        "layer_norm::backward",
        &pipeline,
        bytemuck::bytes_of(&p),
        &[
            (1, &saved.x),
            (2, gamma),
            (6, dy),
            (7, &saved.stats),
            (8, &dx),
        ],
        groups,
    )?;
    let pipeline = ctx.pipeline(&shaders::LAYER_NORM, "backward_params", &[]);
    rec.dispatch_tensors(
        "layer_norm::backward_params",
        &pipeline,
        bytemuck::bytes_of(&p),
        &[
            (1, &saved.x),
            (6, dy),
            (7, &saved.stats),
            (9, dgamma),
            (10, dbeta),
        ],
        [p.d.div_ceil(64), 1, 1],
    )?;
    Ok(dx)
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::LAYER_NORM);
