//! State dicts as safetensors files with PyTorch's names, so a state dict saved
//! by PyTorch (`safetensors.torch.save_file(model.state_dict(), path)`) loads here
//! and one saved here loads there.
//!
//! ```
//! use rnn_wgpu::nn::{Linear, Module, StateDict};
//! use rnn_wgpu::{Context, Result};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let fc = Linear::new(&ctx, 3, 2, true, 1)?;
//!     let mut sd = StateDict::read(&fc.named_params())?; // "weight", "bias"
//!     sd.metadata.insert("config".into(), r#"{"inputs": 3}"#.into());
//!     let bytes = sd.to_bytes()?; // what `save` writes; a page can offer it as a download
//!     let other = Linear::new(&ctx, 3, 2, true, 2)?;
//!     let back = StateDict::from_bytes(&bytes, "download")?;
//!     back.apply(&other.named_params(), "download")?; // strict: names and shapes
//!     assert_eq!(other.named_params()[0].read()?, fc.named_params()[0].read()?);
//!     assert_eq!(back.metadata["config"], r#"{"inputs": 3}"#);
//!     Ok(())
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::Named;
use crate::error::{Error, Result};

/// f32 tensors by name and the metadata: a model's parameters (and, in a
/// training checkpoint, the optimizer's state under `optim.` names and the
/// run's history under `fit.` names).
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    /// Tensors by name: shape and f32 values.
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// The file's metadata.
    pub metadata: HashMap<String, String>,
}

/// Whether a tensor is a training checkpoint's state rather than a parameter:
/// the optimizer's (`optim.`) or the training loop's (`fit.`).
fn training_state(name: &str) -> bool {
    name.starts_with("optim.") || name.starts_with("fit.")
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl StateDict {
    /// Reads `params` back from the GPU (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(params: &[Named]) -> Result<Self> {
        pollster::block_on(Self::read_async(params))
    }

    /// [`read`](Self::read), awaited.
    pub async fn read_async(params: &[Named]) -> Result<Self> {
        let mut sd = StateDict::default();
        for p in params {
            sd.tensors
                .insert(p.name.clone(), (p.shape.clone(), p.read_async().await?));
        }
        Ok(sd)
    }

    /// The same tensors under the names `rename` gives (a file whose fields are
    /// named differently: `emb.weight` for `embedding.weight`); names it returns
    /// `None` for are dropped. Two tensors given one name are refused (stripping
    /// `module.` from a file that has both `module.fc.weight` and `fc.weight`
    /// would otherwise keep one of them silently).
    pub fn renamed(self, rename: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        let mut from: BTreeMap<String, String> = BTreeMap::new();
        for (name, t) in self.tensors {
            let Some(to) = rename(&name) else {
                continue;
            };
            if let Some(first) = from.get(&to) {
                return Err(Error::InvalidArgument {
                    op: "StateDict::renamed",
                    what: "rename",
                    expected: "a different name for each tensor it keeps",
                    got: format!("`{first}` and `{name}` both renamed to `{to}`"),
                });
            }
            from.insert(to.clone(), name);
            tensors.insert(to, t);
        }
        Ok(Self { tensors, ..self })
    }

    /// The safetensors bytes of the tensors (f32) and the metadata, as
    /// [`save`](Self::save) writes them: for a page's download, a database or a
    /// socket. [`from_bytes`](Self::from_bytes) reads them back, and so does
    /// PyTorch (`safetensors.torch.load(bytes)`).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let refused = |name: &str, got: String| Error::InvalidArgument {
            op: "StateDict::to_bytes",
            what: "tensor",
            expected: "as many values as its shape holds",
            got: format!("`{name}`: {got}"),
        };
        let views = self
            .tensors
            .iter()
            .map(|(name, (shape, data))| {
                if shape.iter().product::<usize>() != data.len() {
                    return Err(refused(
                        name,
                        format!("shape {shape:?}, {} values", data.len()),
                    ));
                }
                TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                    .map(|v| (name.clone(), v))
                    .map_err(|e| refused(name, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, Some(self.metadata.clone()))
            .map_err(|e| refused("(all)", e.to_string()))
    }

    /// Writes the file (f32 tensors). The bytes go to `<path>.partial` first,
    /// synced to disk and then renamed over `path`, so that a crash or a full disk
    /// in the middle leaves the last good file as it was.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let written = std::fs::File::create(&partial).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| {
                // What is left of the partial file is of no use to anyone.
                let _ = std::fs::remove_file(&partial);
                file_err(path, e)
            })
    }

    /// Reads a file; tensors must be f32 (f16 and bf16 are converted).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses a file's bytes (`name` labels errors), as [`load`](Self::load).
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        Self::parse(bytes).map_err(|reason| Error::File {
            path: name.to_string(),
            reason,
        })
    }

    fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let mut ck = StateDict {
            metadata: header.metadata().clone().unwrap_or_default(),
            ..Default::default()
        };
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => return Err(format!("tensor {name} is {other:?}; expected a float type")),
            };
            ck.tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(ck)
    }

    /// Writes every parameter of `params` from the tensor of the same name and
    /// shape. Like PyTorch's strict loading, a missing or mis-shaped parameter and
    /// a tensor no parameter takes (outside `optim.` and `fit.`) are errors, reported before
    /// anything is written.
    pub fn apply(&self, params: &[Named], path_for_errors: &str) -> Result<()> {
        let err = |reason: String| Error::File {
            path: path_for_errors.into(),
            reason,
        };
        // The file's keys no parameter claims: a missing parameter names them,
        // since one of them is most likely it under another name.
        let unclaimed = || {
            let keys: Vec<&str> = self
                .tensors
                .keys()
                .filter(|k| !training_state(k) && !params.iter().any(|p| &p.name == *k))
                .map(String::as_str)
                .collect();
            if keys.is_empty() {
                String::new()
            } else {
                format!(" (the file's unclaimed tensors: {})", keys.join(", "))
            }
        };
        for p in params {
            match self.tensors.get(&p.name) {
                None => return Err(err(format!("no tensor {}{}", p.name, unclaimed()))),
                Some((shape, _)) if *shape != p.shape => {
                    return Err(err(format!(
                        "{} is {shape:?}, the model's is {:?}",
                        p.name, p.shape
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = self
            .tensors
            .keys()
            .find(|k| !training_state(k) && !params.iter().any(|p| &p.name == *k))
        {
            return Err(err(format!("tensor {extra} belongs to no parameter")));
        }
        for p in params {
            p.write(&self.tensors[&p.name].1)?;
        }
        Ok(())
    }
}
