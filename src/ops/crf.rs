//! A linear-chain CRF (`shaders/crf.wgsl`): the negative log-likelihood of gold
//! tag paths by the forward algorithm, its gradient from the forward-backward
//! marginals, and Viterbi decoding, a workgroup per sequence.
//!
//! The weights are one `[K + 2, K]` tensor: row 0 the start scores, row 1 the
//! end scores, rows 2.. the transitions (`w[2 + i][j]`: from tag `i` to tag
//! `j`). [`Chain`] says which transitions are allowed.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "crf";

/// A decoded path's entry past the sequence's length.
pub const NO_TAG: u32 = u32::MAX;

/// The lanes of a sequence's workgroup (the shader's `WG`): the tags rounded
/// up to a power of two from 8 to 64 (past 64, lanes hold several tags).
fn lanes(k: usize) -> u32 {
    k.next_power_of_two().clamp(8, 64) as u32
}

/// Records `entry`, one workgroup per sequence.
fn per_sequence(
    rec: &mut Recorder,
    entry: &'static str,
    k: usize,
    b: usize,
    params: &Params,
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let lanes = lanes(k);
    let pipeline = rec
        .context()
        .pipeline(&shaders::CRF, entry, &[("WG", f64::from(lanes))]);
    let groups = super::grid_rows(rec, 1, b);
    rec.dispatch_tensors(
        &format!("crf::{entry}"),
        &pipeline,
        bytemuck::bytes_of(params),
        tensors,
        groups,
    )
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    k: u32,
    masked: u32,
    scale: f32,
    viterbi: u32,
    _pad: [u32; 2],
}

impl Params {
    /// A call over `[b, t, k]` under `chain` (masked where it forbids
    /// transitions): the loss's recursion scaled by `scale`, or Viterbi's.
    fn new(chain: &Chain, (b, t, k): (usize, usize, usize), scale: f32, viterbi: bool) -> Self {
        Self {
            b: b as u32,
            t: t as u32,
            k: k as u32,
            masked: u32::from(chain.allowed.is_some()),
            scale,
            viterbi: u32::from(viterbi),
            _pad: [0; 2],
        }
    }
}

/// The tags of a chain and the transitions it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    tags: usize,
    /// `[K, K]`, 1 where the transition from `i` to `j` is allowed; `None`: all.
    allowed: Option<Vec<u32>>,
}

impl Chain {
    /// `tags` tags, every transition allowed. Zero tags is an error.
    pub fn new(tags: usize) -> Result<Self> {
        if tags == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "tags",
                shape: vec![0],
            });
        }
        Ok(Self {
            tags,
            allowed: None,
        })
    }

    /// The same chain with the transitions `(from, to)` forbidden: no path
    /// takes them (a gold path that does is an error). Each tag must keep an
    /// allowed successor, so that a path of any length exists.
    pub fn with_forbidden(self, pairs: &[(usize, usize)]) -> Result<Self> {
        let k = self.tags;
        let mut allowed = self.allowed.unwrap_or_else(|| vec![1; k * k]);
        for (index, &(from, to)) in pairs.iter().enumerate() {
            if let Some(value) = [from, to].into_iter().find(|&t| t >= k) {
                return Err(Error::IndexOutOfRange {
                    op: OP,
                    what: "forbidden transition's tag",
                    index,
                    value,
                    bound: k,
                });
            }
            allowed[from * k + to] = 0;
        }
        if let Some(tag) = (0..k).find(|&i| allowed[i * k..(i + 1) * k].iter().all(|&a| a == 0)) {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "forbidden transitions",
                expected: "each tag left with an allowed successor",
                got: format!("every transition from tag {tag} forbidden"),
            });
        }
        Ok(Self {
            tags: k,
            allowed: Some(allowed),
        })
    }

    /// The number of tags.
    pub fn tags(&self) -> usize {
        self.tags
    }

    /// Whether the transition from `from` to `to` is allowed.
    pub fn allows(&self, from: usize, to: usize) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|a| a[from * self.tags + to] != 0)
    }
}

/// What [`nll`] keeps for [`nll_backward`].
#[derive(Debug)]
pub struct Saved {
    emissions: Tensor,
    gold: Tensor,
    weights: Tensor,
    allowed: Option<Tensor>,
    alpha: Tensor,
    seq: Tensor,
    params: Params,
}

/// The shapes of a call: (B, T, K), checked against the chain, the weights and
/// the lengths.
fn check(
    rec: &Recorder,
    chain: &Chain,
    emissions: &Tensor,
    weights: &Tensor,
    lengths: &[usize],
) -> Result<(usize, usize, usize)> {
    super::check_f32(rec, OP, &[("emissions", emissions), ("weights", weights)])?;
    let k = chain.tags;
    let &[b, t, kk] = emissions.shape() else {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "emissions",
            expected: format!("[B, T, {k}]"),
            got: emissions.shape().to_vec(),
        });
    };
    if kk != k {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "emissions",
            expected: format!("[B, T, {k}], a score per tag"),
            got: emissions.shape().to_vec(),
        });
    }
    if b == 0 || t == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "emissions [B, T, K]",
            shape: emissions.shape().to_vec(),
        });
    }
    if weights.shape() != [k + 2, k] {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "weights (start, end, transitions)",
            expected: format!("[{}, {k}]", k + 2),
            got: weights.shape().to_vec(),
        });
    }
    super::check_lengths(OP, "lengths", lengths, b, t)?;
    Ok((b, t, k))
}

/// The lengths as the shader reads them, then (for a loss) the gold tags.
fn gold_buffer(rec: &Recorder, lengths: &[usize], tags: &[u32]) -> Result<Tensor> {
    let mut gold: Vec<u32> = lengths.iter().map(|&n| n as u32).collect();
    gold.extend_from_slice(tags);
    Tensor::from_u32(rec.context(), &[gold.len()], &gold)
}

/// The allowed-transition mask, when the chain forbids some.
fn allowed_tensor(rec: &Recorder, chain: &Chain) -> Result<Option<Tensor>> {
    chain
        .allowed
        .as_ref()
        .map(|a| Tensor::from_u32(rec.context(), &[chain.tags, chain.tags], a))
        .transpose()
}

/// Records the mean negative log-likelihood per token of the gold `tags`
/// (`[B·T]`, row-major like the emissions; anything past a sequence's length,
/// e.g. an ignore index) under the CRF of `chain` with `weights` `[K + 2, K]`,
/// given `emissions` `[B, T, K]` and each sequence's length (1..=T): `[1]`,
/// Σ_b (log Z_b − score_b(tags)) / Σ_b L_b. A gold tag out of range or on a
/// forbidden transition is an error.
pub fn nll(
    rec: &mut Recorder,
    chain: &Chain,
    emissions: &Tensor,
    weights: &Tensor,
    tags: &[u32],
    lengths: &[usize],
) -> Result<(Tensor, Saved)> {
    let (b, t, k) = check(rec, chain, emissions, weights, lengths)?;
    if tags.len() != b * t {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "tags",
            expected: format!("[{}], one per step of emissions [{b}, {t}, {k}]", b * t),
            got: vec![tags.len()],
        });
    }
    for (s, &len) in lengths.iter().enumerate() {
        let row = &tags[s * t..s * t + len];
        if let Some(i) = row.iter().position(|&y| y as usize >= k) {
            return Err(Error::IndexOutOfRange {
                op: OP,
                what: "gold tag",
                index: s * t + i,
                value: row[i] as usize,
                bound: k,
            });
        }
        if let Some(i) = row
            .windows(2)
            .position(|p| !chain.allows(p[0] as usize, p[1] as usize))
        {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "gold tags",
                expected: "paths on allowed transitions",
                got: format!(
                    "sequence {s} goes from tag {} to tag {} at step {}, a forbidden transition",
                    row[i],
                    row[i + 1],
                    i + 1
                ),
            });
        }
    }
    let tokens: usize = lengths.iter().sum();
    let allowed = allowed_tensor(rec, chain)?;
    let saved = Saved {
        emissions: emissions.clone(),
        gold: gold_buffer(rec, lengths, tags)?,
        weights: weights.clone(),
        alpha: rec.empty(&[b, t, k], DType::F32)?,
        seq: rec.empty(&[b, 2], DType::F32)?,
        params: Params::new(chain, (b, t, k), 1.0 / tokens as f32, false),
        allowed,
    };
    let loss = rec.empty(&[1], DType::F32)?;
    per_sequence(
        rec,
        "nll",
        k,
        b,
        &saved.params,
        &[
            (1, emissions),
            (2, &saved.gold),
            (3, weights),
            // The gold buffer stands in for no mask: the kernel reads none then.
            (4, saved.allowed.as_ref().unwrap_or(&saved.gold)),
            (5, &saved.alpha),
            (6, &saved.seq),
        ],
    )?;
    rec.dispatch_entry(
        &shaders::CRF,
        "loss",
        &[],
        bytemuck::bytes_of(&saved.params),
        &[(6, &saved.seq), (9, &loss)],
        [1, 1, 1],
    )?;
    Ok((loss, saved))
}

/// Records the gradients of [`nll`]'s loss: (d emissions `[B, T, K]`, zero past
/// each length; d weights `[K + 2, K]`).
pub fn nll_backward(rec: &mut Recorder, saved: &Saved) -> Result<(Tensor, Tensor)> {
    let Params { b, t, k, .. } = saved.params;
    let (b, t, k) = (b as usize, t as usize, k as usize);
    let beta = rec.empty(&[b, t, k], DType::F32)?;
    let demissions = rec.empty(&[b, t, k], DType::F32)?;
    let dweights = rec.empty(&[k + 2, k], DType::F32)?;
    let allowed = saved.allowed.as_ref().unwrap_or(&saved.gold);
    per_sequence(
        rec,
        "marginals",
        k,
        b,
        &saved.params,
        &[
            (1, &saved.emissions),
            (2, &saved.gold),
            (3, &saved.weights),
            (4, allowed),
            (7, &beta),
        ],
    )?;
    let params = bytemuck::bytes_of(&saved.params);
    super::launch_elems(
        rec,
        &shaders::CRF,
        "emissions",
        b * t * k,
        params,
        &[
            (2, &saved.gold),
            (5, &saved.alpha),
            (6, &saved.seq),
            (7, &beta),
            (8, &demissions),
        ],
    )?;
    super::launch_elems(
        rec,
        &shaders::CRF,
        "weights",
        (k + 2) * k,
        params,
        &[
            (1, &saved.emissions),
            (2, &saved.gold),
            (3, &saved.weights),
            (4, allowed),
            (5, &saved.alpha),
            (6, &saved.seq),
            (7, &beta),
            (10, &dweights),
        ],
    )?;
    Ok((demissions, dweights))
}

/// Records Viterbi decoding: the best tag path of each sequence under the CRF
/// of `chain` with `weights` `[K + 2, K]`, given `emissions` `[B, T, K]` and
/// the lengths (1..=T). Returns u32 `[B, T]`: the tags, [`NO_TAG`] past each
/// length (on ties the lower tag wins).
pub fn viterbi(
    rec: &mut Recorder,
    chain: &Chain,
    emissions: &Tensor,
    weights: &Tensor,
    lengths: &[usize],
) -> Result<Tensor> {
    let (b, t, k) = check(rec, chain, emissions, weights, lengths)?;
    let allowed = allowed_tensor(rec, chain)?;
    let gold = gold_buffer(rec, lengths, &[])?;
    // δ, then the back-pointers.
    let delta = rec.empty(&[2, b, t, k], DType::F32)?;
    let path = rec.empty(&[b, t], DType::U32)?;
    let params = Params::new(chain, (b, t, k), 1.0, true);
    per_sequence(
        rec,
        "viterbi",
        k,
        b,
        &params,
        &[
            (1, emissions),
            (2, &gold),
            (3, weights),
            (4, allowed.as_ref().unwrap_or(&gold)),
            (5, &delta),
            (11, &path),
        ],
    )?;
    Ok(path)
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::CRF);
