//! Training checkpoints: a model's [`StateDict`] with the optimizer's state
//! beside the parameters under `optim.` names and the step count in the
//! metadata, so a run resumes where it stopped.

use crate::error::{Error, Result};
use crate::nn::{Named, StateDict};
use crate::train::Optimizer;

/// A training checkpoint: a state dict that may hold optimizer state too.
pub type Checkpoint = StateDict;

impl StateDict {
    /// Reads the model's parameters (and, when given, the optimizer's state) back
    /// from the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn capture(params: &[Named], opt: Option<&Optimizer>) -> Result<Self> {
        pollster::block_on(Self::capture_async(params, opt))
    }

    /// [`capture`](Self::capture), awaited.
    pub async fn capture_async(params: &[Named], opt: Option<&Optimizer>) -> Result<Self> {
        let mut ck = StateDict::read_async(params).await?;
        if let Some(opt) = opt {
            let (state, steps) = opt.state();
            for (name, t) in state {
                ck.tensors.insert(
                    format!("optim.{name}"),
                    (t.shape().to_vec(), t.to_vec_async().await?),
                );
            }
            ck.metadata.insert("optim.steps".into(), steps.to_string());
        }
        Ok(ck)
    }

    /// Restores an optimizer's buffers and step count saved by [`capture`](Self::capture).
    pub fn apply_optimizer(&self, opt: &mut Optimizer, path_for_errors: &str) -> Result<()> {
        let err = |reason: String| Error::File {
            path: path_for_errors.into(),
            reason,
        };
        let (state, _) = opt.state();
        for (name, t) in &state {
            let key = format!("optim.{name}");
            match self.tensors.get(&key) {
                Some((shape, data)) if shape == t.shape() => t.write(data)?,
                _ => return Err(err(format!("no tensor {key} shaped {:?}", t.shape()))),
            }
        }
        let steps = self
            .metadata
            .get("optim.steps")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("no optim.steps in the metadata".into()))?;
        opt.set_steps(steps);
        Ok(())
    }
}
