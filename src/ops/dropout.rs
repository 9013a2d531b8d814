//! Inverted dropout (`shaders/dropout.wgsl`): the mask comes from a hash of the
//! element index and a seed, so backward recomputes it instead of storing it.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::Tensor;

const OP: &str = "dropout";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    seed: u32,
    threshold: u32,
    _pad: u32,
    scale: f32,
    _pad1: [u32; 3],
}

/// Records `out = dropout(x)` with drop probability `p` (0 ≤ p < 1) and mask
/// `seed`. The backward is the same call on the upstream gradient with the same
/// seed: masking is its own derivative.
pub fn apply(rec: &mut Recorder, out: &Tensor, x: &Tensor, p: f32, seed: u32) -> Result<()> {
    super::check_float(rec, OP, &[("out", out), ("x", x)])?;
    if !(0.0..1.0).contains(&p) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "drop probability",
            expected: "0 <= p < 1",
            got: p.to_string(),
        });
    }
    if out.shape() != x.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "out",
            expected: format!("{:?} like x", x.shape()),
            got: out.shape().to_vec(),
        });
    }
    if out.buffer() == x.buffer() {
        return Err(Error::Aliasing {
            op: OP,
            what: "out",
        });
    }
    let params = Params {
        n: x.numel() as u32,
        seed,
        threshold: super::hash_threshold(p),
        scale: 1.0 / (1.0 - p),
        ..Params::default()
    };
    let groups = super::grid_elems(rec, x.numel());
    rec.dispatch_entry(
        &shaders::DROPOUT,
        "apply",
        &super::f16_aliases(&[("x_t", x), ("y_t", out)]),
        bytemuck::bytes_of(&params),
        &[(1, x), (2, out)],
        groups,
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::DROPOUT);
