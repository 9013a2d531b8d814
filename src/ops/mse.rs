//! Mean squared error fused with its gradient (`shaders/mse.wgsl`).

use super::cross_entropy::Loss;
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "mse";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

/// Records `loss = mean((y − target)²)` and its gradient with respect to `y`
/// (returned as `dlogits`, shaped like `y`; `count` is the element count).
pub fn forward(rec: &mut Recorder, y: &Tensor, target: &Tensor) -> Result<Loss> {
    super::check_f32(rec, OP, &[("y", y), ("target", target)])?;
    if y.shape() != target.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "target",
            expected: format!("{:?} like y", y.shape()),
            got: target.shape().to_vec(),
        });
    }
    if y.numel() == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "y",
            shape: y.shape().to_vec(),
        });
    }
    let ctx = rec.context().clone();
    let out = Loss {
        loss: rec.empty(&[1], DType::F32)?,
        dlogits: rec.empty(y.shape(), DType::F32)?,
        count: y.numel(),
        accuracy: None,
    };
    let params = Params {
        n: y.numel() as u32,
        ..Params::default()
    };
    let tensors = [y, target, &out.dlogits, &out.loss];
    rec.hold(&tensors);
    let bindings: Vec<_> = tensors
        .iter()
        .zip(1..)
        .map(|(t, i)| (i, t.buffer().as_entire_binding()))
        .collect();
    let pipeline = ctx.pipeline(&shaders::MSE, "forward", &[]);
    rec.dispatch(
        "mse::forward",
        &pipeline,
        bytemuck::bytes_of(&params),
        &bindings,
        [1, 1, 1],
    )?;
    Ok(out)
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::MSE);
