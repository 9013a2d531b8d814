//! Embedding lookup and its deterministic gradient (`shaders/embedding.wgsl`).
//!
//! The backward sums each id's positions in a fixed order taken from a CSR index
//! the host builds from the ids (which it has: batches are made on the host), so
//! the table gradient is the same bit for bit on every run and needs no atomics.

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::shaders;
use crate::tensor::Tensor;

const OP: &str = "embedding";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    _pad: [u32; 2],
}

/// The positions of every distinct id of a batch, grouped by id in increasing
/// position: what the backward needs from the forward.
#[derive(Clone, Debug)]
pub struct Index {
    ids: Tensor,
    /// `[U]` distinct ids (padding excluded)
    uniq: Tensor,
    /// `[U + 1]` offsets into `order`
    starts: Tensor,
    /// `[N]` positions grouped by id
    order: Tensor,
    distinct: usize,
}

impl Index {
    /// Checks `ids` against a table of `vocab` rows and builds the index; positions
    /// holding `padding_idx` get no gradient. The ids tensor is uploaded here.
    pub fn new(ctx: &Context, ids: &[u32], vocab: usize, padding_idx: Option<u32>) -> Result<Self> {
        if ids.is_empty() {
            return Err(Error::Empty {
                op: OP,
                what: "ids",
                shape: vec![0],
            });
        }
        if let Some((index, &id)) = ids
            .iter()
            .enumerate()
            .find(|&(_, &id)| id as usize >= vocab)
        {
            return Err(Error::IndexOutOfRange {
                op: OP,
                what: "token id",
                index,
                value: id as usize,
                bound: vocab,
            });
        }
        let mut order: Vec<u32> = (0..ids.len() as u32)
            .filter(|&n| Some(ids[n as usize]) != padding_idx)
            .collect();
        // Stable: positions of one id stay in increasing order.
        order.sort_by_key(|&n| ids[n as usize]);
        let mut uniq = Vec::new();
        let mut starts = Vec::new();
        for (k, &n) in order.iter().enumerate() {
            if uniq.last() != Some(&ids[n as usize]) {
                uniq.push(ids[n as usize]);
                starts.push(k as u32);
            }
        }
        starts.push(order.len() as u32);
        let distinct = uniq.len();
        // Empty storage bindings are invalid; a padding-only batch keeps one slot.
        let nonempty = |mut v: Vec<u32>| {
            if v.is_empty() {
                v.push(0);
            }
            v
        };
        let (uniq, order) = (nonempty(uniq), nonempty(order));
        Ok(Self {
            ids: Tensor::from_u32(ctx, &[ids.len()], ids)?,
            uniq: Tensor::from_u32(ctx, &[uniq.len()], &uniq)?,
            starts: Tensor::from_u32(ctx, &[starts.len()], &starts)?,
            order: Tensor::from_u32(ctx, &[order.len()], &order)?,
            distinct,
        })
    }

    /// Number of positions.
    pub fn len(&self) -> usize {
        self.ids.numel()
    }

    /// Whether there are no positions (never: [`Index::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.ids.numel() == 0
    }
}

/// Records `out[n, :] = table[ids[n], :]` for `out` `[N, E]`, `table` `[V, E]`.
pub fn forward(rec: &mut Recorder, out: &Tensor, table: &Tensor, index: &Index) -> Result<()> {
    // The looked-up rows may be f16 storage.
    super::check_float(rec, OP, &[("out", out)])?;
    let dim = check(rec, out, table, index, "out")?;
    launch(
        rec,
        "forward",
        &super::f16_aliases(&[("out_t", out)]),
        index.len(),
        dim,
        &[(1, &index.ids), (2, table), (3, out)],
    )
}

/// Records `dtable[v, :] += Σ dout[n, :]` over the positions n of each id v.
pub fn backward(rec: &mut Recorder, dtable: &Tensor, dout: &Tensor, index: &Index) -> Result<()> {
    super::check_f32(rec, OP, &[("dout", dout)])?;
    let dim = check(rec, dout, dtable, index, "dout")?;
    if index.distinct == 0 {
        return Ok(());
    }
    launch(
        rec,
        "backward",
        &[],
        index.distinct,
        dim,
        &[
            (4, dout),
            (5, dtable),
            (6, &index.uniq),
            (7, &index.starts),
            (8, &index.order),
        ],
    )
}

/// Checks `rows` `[N, E]` (its dtype checked by the caller) against `table`
/// `[V, E]` (f32); returns E.
fn check(
    rec: &Recorder,
    rows: &Tensor,
    table: &Tensor,
    index: &Index,
    what: &'static str,
) -> Result<usize> {
    rec.check_same_device(OP, &[&index.ids])?;
    super::check_f32(rec, OP, &[("table", table)])?;
    let &[_, dim] = table.shape() else {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "table",
            expected: "[V, E]".into(),
            got: table.shape().to_vec(),
        });
    };
    if rows.shape() != [index.len(), dim] {
        return Err(Error::ShapeMismatch {
            op: OP,
            what,
            expected: format!("[{}, {dim}]", index.len()),
            got: rows.shape().to_vec(),
        });
    }
    Ok(dim)
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    f16: &[&'static str],
    rows: usize,
    dim: usize,
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let params = Params {
        rows: rows as u32,
        dim: dim as u32,
        ..Params::default()
    };
    let groups = super::grid_rows(rec, dim.div_ceil(64), rows);
    rec.dispatch_entry(
        &shaders::EMBEDDING,
        entry,
        f16,
        bytemuck::bytes_of(&params),
        tensors,
        groups,
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::EMBEDDING);
