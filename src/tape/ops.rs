//! The tensor ops of a tape, each recording its backward beside its forward.
//! Shapes in the docs: `[..]` any leading dimensions.

use super::{Tape, Var};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::broadcast::{self, Binary, Operand};
use crate::ops::crf::{self, Chain};
use crate::ops::cross_entropy::{self, CrossEntropy};
use crate::ops::elementwise::{self, Activation, Block};
use crate::ops::embedding::{self, Index};
use crate::ops::gemm::{self, View};
use crate::ops::mse;
use crate::ops::reduce::{self, Reduction};
use crate::ops::softmax::{self, Kind};
use crate::tensor::{DType, Tensor};

const OP: &str = "tape";

/// `[n]` u32 lengths: `lengths` checked against `max` and `n` entries, or all `max`.
fn lengths_tensor(
    ctx: &Context,
    op: &'static str,
    lengths: Option<&[usize]>,
    n: usize,
    max: usize,
) -> Result<Tensor> {
    let values: Vec<u32> = match lengths {
        Some(l) => {
            crate::ops::check_lengths(op, "lengths", l, n, max)?;
            l.iter().map(|&v| v as u32).collect()
        }
        None => vec![max as u32; n],
    };
    Tensor::from_u32(ctx, &[n], &values)
}

/// The rows `rows` of `x` `[N, ..]`, one gather.
pub(crate) fn gather_rows(rec: &mut Recorder, x: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let r = x.shape().first().copied().unwrap_or(0);
    let width = x.numel() / r.max(1);
    let ids: Vec<u32> = rows.iter().map(|&i| i as u32).collect();
    let index = Index::new(rec.context(), &ids, r, None)?;
    let out = rec.empty(&[rows.len(), width], DType::F32)?;
    embedding::forward(rec, &out, &x.reshape(&[r, width])?, &index)?;
    let mut shape = x.shape().to_vec();
    shape[0] = rows.len();
    out.reshape(&shape)
}

fn block(tensor: &Tensor, offset: usize, width: usize) -> Block<'_> {
    Block {
        tensor,
        offset,
        width,
    }
}

fn shape_error(what: &'static str, expected: String, got: &[usize]) -> Error {
    Error::ShapeMismatch {
        op: OP,
        what,
        expected,
        got: got.to_vec(),
    }
}

/// (batch, rows, cols) of a matrix operand: `[R, C]` is one shared matrix
/// (batch 0), `[B, R, C]` a batch.
fn matrix_dims(x: &Tensor, what: &'static str) -> Result<(usize, usize, usize)> {
    match *x.shape() {
        [r, c] => Ok((0, r, c)),
        [b, r, c] => Ok((b, r, c)),
        _ => Err(shape_error(what, "[R, C] or [B, R, C]".into(), x.shape())),
    }
}

/// A product's operands as views: `a` `[B?, M, K]`, `b` `[B?, K, N]` (or `[B?, N,
/// K]` when `b_t`); a batch of `a` against one `b` is one product over all rows.
struct Product {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    /// `b` is one matrix while `a` is a batch: `a` is read as `[B·M, K]`.
    shared_b: bool,
    b_t: bool,
}

impl Product {
    fn new(a: &Tensor, b: &Tensor, b_t: bool) -> Result<Self> {
        let (ba, m, k) = matrix_dims(a, "a")?;
        let (bb, r, c) = matrix_dims(b, "b")?;
        let (kb, n) = if b_t { (c, r) } else { (r, c) };
        if kb != k || (bb != 0 && bb != ba) || m * k * n == 0 {
            let want = if b_t { "[B?, N, K]" } else { "[B?, K, N]" };
            let batch = if ba == 0 {
                String::new()
            } else {
                format!(", B = {ba} or none")
            };
            return Err(shape_error(
                "b",
                format!("{want} non-empty with K = {k}{batch}"),
                b.shape(),
            ));
        }
        let shared_b = bb == 0;
        Ok(Self {
            batch: if shared_b { 1 } else { ba },
            m: if shared_b { ba.max(1) * m } else { m },
            k,
            n,
            shared_b,
            b_t,
        })
    }

    fn batched(&self) -> bool {
        !self.shared_b
    }

    fn a<'t>(&self, t: &'t Tensor) -> View<'t> {
        View::matrix(t, self.m, self.k, self.batched())
    }

    /// `b` as `[K, N]`.
    fn b<'t>(&self, t: &'t Tensor) -> View<'t> {
        if self.b_t {
            View::matrix(t, self.n, self.k, self.batched()).t()
        } else {
            View::matrix(t, self.k, self.n, self.batched())
        }
    }

    fn c<'t>(&self, t: &'t Tensor) -> View<'t> {
        View::matrix(t, self.m, self.n, self.batched())
    }

    fn run(&self, rec: &mut Recorder, c: View, a: View, b: View) -> Result<()> {
        gemm::forward_view(rec, c, a, b, None, self.batch, 1.0, 0.0)
    }
}

impl Tape {
    /// A value that needs no gradient.
    pub fn constant(&self, tensor: Tensor) -> Var {
        Var::constant(tensor)
    }

    /// A `[..shape]` constant from host values.
    pub fn from_slice(&self, shape: &[usize], data: &[f32]) -> Result<Var> {
        Ok(Var::constant(Tensor::from_slice(
            self.context(),
            shape,
            data,
        )?))
    }

    /// `a·b` for `a` `[M, K]` or `[B, M, K]` and `b` `[K, N]` or `[B, K, N]`.
    pub fn matmul(&mut self, a: &Var, b: &Var) -> Result<Var> {
        self.product(a, b, false)
    }

    /// `a·bᵀ` for `b` `[N, K]` or `[B, N, K]` (as `x·Wᵀ` with a PyTorch weight).
    pub fn matmul_t(&mut self, a: &Var, b: &Var) -> Result<Var> {
        self.product(a, b, true)
    }

    fn product(&mut self, a: &Var, b: &Var, b_t: bool) -> Result<Var> {
        let p = Product::new(a, b, b_t)?;
        let mut shape = a.shape().to_vec();
        *shape.last_mut().unwrap_or(&mut 0) = p.n;
        let c = self.rec().empty(&shape, DType::F32)?;
        p.run(self.rec(), p.c(&c), p.a(a), p.b(b))?;
        let (need_a, need_b) = (self.needs_grad(a), self.needs_grad(b));
        let (at, bt) = (a.tensor.clone(), b.tensor.clone());
        Ok(self
            .record(&[a, b], vec![c], false, move |rec, d| {
                let Some(dc) = d.into_iter().next().flatten() else {
                    return Ok(vec![None, None]);
                };
                let dc_v = p.c(&dc);
                let da = need_a
                    .then(|| -> Result<Tensor> {
                        // dA = dC·op(B)ᵀ
                        let da = rec.empty(at.shape(), DType::F32)?;
                        p.run(rec, p.a(&da), dc_v, p.b(&bt).t())?;
                        Ok(da)
                    })
                    .transpose()?;
                let db = need_b
                    .then(|| -> Result<Tensor> {
                        // dB = Aᵀ·dC, or dBᵀ = dCᵀ·A for a transposed B
                        let db = rec.empty(bt.shape(), DType::F32)?;
                        if p.b_t {
                            let db_v = View::matrix(&db, p.n, p.k, p.batched());
                            p.run(rec, db_v, dc_v.t(), p.a(&at))?;
                        } else {
                            p.run(rec, p.b(&db), p.a(&at).t(), dc_v)?;
                        }
                        Ok(db)
                    })
                    .transpose()?;
                Ok(vec![da, db])
            })
            .remove(0))
    }

    /// `x + y`, broadcasting by NumPy's rules (a bias `[F]` over `[.., F]`
    /// rows, a `[B, 1, S]` over `[B, T, S]`); each gradient is summed over the
    /// dimensions its operand was broadcast along.
    pub fn add(&mut self, x: &Var, y: &Var) -> Result<Var> {
        if x.shape() != y.shape() {
            return self.binary(Binary::Add, x, y);
        }
        let out = elementwise::sum(self.rec(), x, y)?;
        Ok(self
            .record(&[x, y], vec![out], false, |_, d| {
                let d = d.into_iter().next().flatten();
                Ok(vec![d.clone(), d])
            })
            .remove(0))
    }

    /// `x − y`, broadcasting as [`add`](Self::add).
    pub fn sub(&mut self, x: &Var, y: &Var) -> Result<Var> {
        self.binary(Binary::Sub, x, y)
    }

    /// `x / y` elementwise, broadcasting as [`add`](Self::add).
    pub fn div(&mut self, x: &Var, y: &Var) -> Result<Var> {
        self.binary(Binary::Div, x, y)
    }

    /// A broadcasting binary op: one kernel forward, one per operand that
    /// needs its gradient backward.
    fn binary(&mut self, op: Binary, x: &Var, y: &Var) -> Result<Var> {
        let out = broadcast::binary(self.rec(), op, x, y)?;
        let needs = [self.needs_grad(x), self.needs_grad(y)];
        // Sums need only the operands' shapes; products and quotients their values.
        let keep = matches!(op, Binary::Mul | Binary::Div);
        let shapes = [x.shape().to_vec(), y.shape().to_vec()];
        let values = keep.then(|| (x.tensor.clone(), y.tensor.clone()));
        Ok(self
            .record(&[x, y], vec![out], false, move |rec, d| {
                let Some(d) = d.into_iter().next().flatten() else {
                    return Ok(vec![None, None]);
                };
                let mut grads = vec![None, None];
                for (k, which) in [Operand::X, Operand::Y].into_iter().enumerate() {
                    if !needs[k] {
                        continue;
                    }
                    grads[k] = Some(match &values {
                        Some((xt, yt)) => broadcast::binary_backward(rec, op, which, &d, xt, yt)?,
                        None if shapes[k] == d.shape() && !(op == Binary::Sub && k == 1) => {
                            d.clone()
                        }
                        None => broadcast::signed_sum_to(
                            rec,
                            &d,
                            &shapes[k],
                            op == Binary::Sub && k == 1,
                        )?,
                    });
                }
                Ok(grads)
            })
            .remove(0))
    }

    /// `alpha · x`.
    pub fn scale(&mut self, x: &Var, alpha: f32) -> Result<Var> {
        if !alpha.is_finite() {
            return Err(Error::InvalidArgument {
                op: "scale",
                what: "alpha",
                expected: "a finite number",
                got: alpha.to_string(),
            });
        }
        let out = elementwise::scale(self.rec(), x, alpha)?;
        Ok(self.unary(x, out, false, move |rec, d| {
            elementwise::scale(rec, &d, alpha)
        }))
    }

    /// `x · y` elementwise, broadcasting as [`add`](Self::add).
    pub fn mul(&mut self, x: &Var, y: &Var) -> Result<Var> {
        if x.shape() != y.shape() {
            return self.binary(Binary::Mul, x, y);
        }
        let out = elementwise::mul(self.rec(), x, y)?;
        let (need_x, need_y) = (self.needs_grad(x), self.needs_grad(y));
        let (xt, yt) = (x.tensor.clone(), y.tensor.clone());
        Ok(self
            .record(&[x, y], vec![out], false, move |rec, d| {
                let Some(d) = d.into_iter().next().flatten() else {
                    return Ok(vec![None, None]);
                };
                let dx = need_x.then(|| elementwise::mul(rec, &d, &yt)).transpose()?;
                let dy = need_y.then(|| elementwise::mul(rec, &d, &xt)).transpose()?;
                Ok(vec![dx, dy])
            })
            .remove(0))
    }

    /// The sum over dimension `dim`; with `lengths`, row `o` (the index over the
    /// dimensions before `dim`) sums only its first `lengths[o]` positions.
    pub fn sum(&mut self, x: &Var, dim: usize, lengths: Option<&[usize]>) -> Result<Var> {
        self.reduce(x, dim, lengths, Reduction::Sum)
    }

    /// The mean over dimension `dim`, of each row's first `lengths[o]` positions
    /// when given (a masked mean over time of padded sequences: `dim` 1 of
    /// `[B, T, F]` with the sequences' lengths).
    pub fn mean(&mut self, x: &Var, dim: usize, lengths: Option<&[usize]>) -> Result<Var> {
        self.reduce(x, dim, lengths, Reduction::Mean)
    }

    fn reduce(
        &mut self,
        x: &Var,
        dim: usize,
        lengths: Option<&[usize]>,
        how: Reduction,
    ) -> Result<Var> {
        let (outer, n, _) = reduce::split_dims(x, dim)?;
        let lens = lengths_tensor(self.context(), "reduce", lengths, outer, n)?;
        let mut shape = x.shape().to_vec();
        shape.remove(dim);
        if shape.is_empty() {
            shape.push(1);
        }
        let out = self.rec().empty(&shape, DType::F32)?;
        reduce::forward(self.rec(), how, &out, x, dim, &lens)?;
        let x_shape = x.shape().to_vec();
        Ok(self.unary(x, out, false, move |rec, d| {
            let dx = rec.empty(&x_shape, DType::F32)?;
            reduce::backward(rec, how, &dx, &d, dim, &lens)?;
            Ok(dx)
        }))
    }

    /// Softmax over the last dimension; with `lengths`, the rows under index `b`
    /// of the first dimension normalize their first `lengths[b]` values only and
    /// are zero past them (attention over padded positions).
    pub fn softmax(&mut self, x: &Var, lengths: Option<&[usize]>) -> Result<Var> {
        self.normalize(x, lengths, None, Kind::Softmax)
    }

    /// Log-softmax over the last dimension, masked like [`softmax`](Self::softmax).
    pub fn log_softmax(&mut self, x: &Var, lengths: Option<&[usize]>) -> Result<Var> {
        self.normalize(x, lengths, None, Kind::LogSoftmax)
    }

    /// Softmax over the last dimension of the positions where `mask` (u32,
    /// broadcasting to `x`'s shape: `[B, 1, S]` for keys shared by a row's
    /// queries) is not zero; the others, and a row with none, are exactly zero
    /// and get no gradient.
    pub fn softmax_masked(&mut self, x: &Var, mask: &Tensor) -> Result<Var> {
        self.normalize(x, None, Some(mask), Kind::Softmax)
    }

    /// Log-softmax over the positions of a mask, as
    /// [`softmax_masked`](Self::softmax_masked).
    pub fn log_softmax_masked(&mut self, x: &Var, mask: &Tensor) -> Result<Var> {
        self.normalize(x, None, Some(mask), Kind::LogSoftmax)
    }

    fn normalize(
        &mut self,
        x: &Var,
        lengths: Option<&[usize]>,
        mask: Option<&Tensor>,
        kind: Kind,
    ) -> Result<Var> {
        let shape = x.shape().to_vec();
        let s = shape.last().copied().unwrap_or(0);
        let b = if shape.len() > 1 { shape[0] } else { 1 };
        if s == 0 || x.numel() == 0 {
            return Err(Error::Empty {
                op: "softmax",
                what: "x",
                shape,
            });
        }
        let tq = x.numel() / (b * s);
        let lens = lengths_tensor(self.context(), "softmax", lengths, b, s)?;
        let view = move |t: &Tensor| t.reshape(&[b, tq, s]);
        let mask = mask
            .map(|m| -> Result<Tensor> {
                view(&broadcast::mask_as(self.rec(), "softmax", m, &shape)?)
            })
            .transpose()?;
        let y = self.rec().empty(&shape, DType::F32)?;
        softmax::forward_masked(
            self.rec(),
            kind,
            &view(&y)?,
            &view(x)?,
            &lens,
            mask.as_ref(),
        )?;
        let yt = y.clone();
        Ok(self.unary(x, y, false, move |rec, d| {
            let dx = rec.empty(&shape, DType::F32)?;
            let (dxv, dv, yv) = (view(&dx)?, view(&d)?, view(&yt)?);
            softmax::backward_masked(rec, kind, &dxv, &dv, &yv, &lens, mask.as_ref())?;
            Ok(dx)
        }))
    }

    /// Rows of `x` `[N, F]` picked by `ids` (index-select): `[ids.len(), F]`. Ids
    /// past N are an error.
    pub fn gather(&mut self, x: &Var, ids: &[u32]) -> Result<Var> {
        let &[n, f] = x.shape() else {
            return Err(shape_error("x", "[N, F]".into(), x.shape()));
        };
        let index = Index::new(self.context(), ids, n, None).map_err(|e| e.in_op("gather"))?;
        let out = self.rec().empty(&[ids.len(), f], DType::F32)?;
        embedding::forward(self.rec(), &out, x, &index)?;
        Ok(self.unary(x, out, false, move |rec, d| {
            // Rows picked twice add up; rows never picked get zero.
            let dx = Tensor::zeros(rec.context(), &[n, f])?;
            embedding::backward(rec, &dx, &d, &index)?;
            Ok(dx)
        }))
    }

    /// `len` positions of dimension `dim` from `start`. A slice of the first
    /// dimension that holds data (the dimensions before it are 1) is a copy, not
    /// a dispatch.
    pub fn slice(&mut self, x: &Var, dim: usize, start: usize, len: usize) -> Result<Var> {
        let (outer, n, inner) = reduce::split_dims(x, dim).map_err(|e| e.in_op("slice"))?;
        if len == 0 {
            return Err(Error::InvalidArgument {
                op: "slice",
                what: "len",
                expected: "at least one position",
                got: "0".into(),
            });
        }
        if start + len > n {
            return Err(Error::ViewOutOfBounds {
                op: "slice",
                what: "positions",
                last: start + len - 1,
                len: n,
            });
        }
        let mut shape = x.shape().to_vec();
        shape[dim] = len;
        let out = self.rec().empty(&shape, DType::F32)?;
        let (row, width) = (n * inner, len * inner);
        if outer == 1 {
            self.rec().copy_range(&out, 0, x, start * inner, width)?;
        } else {
            elementwise::copy_block(
                self.rec(),
                outer,
                width,
                block(&out, 0, width),
                block(x, start * inner, row),
            )?;
        }
        let x_shape = x.shape().to_vec();
        Ok(self.unary(x, out, false, move |rec, d| {
            let dx = Tensor::zeros(rec.context(), &x_shape)?;
            if outer == 1 {
                rec.copy_range(&dx, start * inner, &d, 0, width)?;
            } else {
                elementwise::copy_block(
                    rec,
                    outer,
                    width,
                    block(&dx, start * inner, row),
                    block(&d, 0, width),
                )?;
            }
            Ok(dx)
        }))
    }

    /// `x` and `y` side by side along dimension `dim` (the other dimensions
    /// equal).
    pub fn concat(&mut self, x: &Var, y: &Var, dim: usize) -> Result<Var> {
        self.cat(&[x, y], dim)
    }

    /// `xs` side by side along dimension `dim` (the other dimensions equal).
    /// Along the first dimension that holds data it is copies, not dispatches
    /// (stacking the steps of a sequence); elsewhere a dispatch per pair.
    pub fn cat(&mut self, xs: &[&Var], dim: usize) -> Result<Var> {
        let Some(first) = xs.first() else {
            return Err(Error::Empty {
                op: "cat",
                what: "values",
                shape: vec![0],
            });
        };
        let (outer, _, inner) = reduce::split_dims(first, dim).map_err(|e| e.in_op("cat"))?;
        let mut sizes = Vec::with_capacity(xs.len());
        for x in xs {
            let (_, n, _) = reduce::split_dims(x, dim).map_err(|e| e.in_op("cat"))?;
            let mut want = first.shape().to_vec();
            want[dim] = n;
            if x.shape() != want {
                return Err(shape_error("values", format!("{want:?}"), x.shape()));
            }
            sizes.push(n);
        }
        if outer != 1 && xs.len() > 2 {
            let (head, last) = xs.split_at(xs.len() - 1);
            let head = self.cat(head, dim)?;
            return self.cat(&[&head, last[0]], dim);
        }
        let total: usize = sizes.iter().sum();
        let mut shape = first.shape().to_vec();
        shape[dim] = total;
        let out = if outer == 1 {
            let out = self.rec().empty(&shape, DType::F32)?;
            let mut at = 0;
            for (x, n) in xs.iter().zip(&sizes) {
                self.rec().copy_range(&out, at, x, 0, n * inner)?;
                at += n * inner;
            }
            out
        } else if xs.len() == 1 {
            return Ok((*first).clone());
        } else {
            let (a, b) = (sizes[0], sizes[1]);
            elementwise::concat(
                self.rec(),
                outer,
                block(xs[0], 0, a * inner),
                block(xs[1], 0, b * inner),
            )?
            .reshape(&shape)?
        };
        let shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape().to_vec()).collect();
        Ok(self
            .record(xs, vec![out], false, move |rec, d| {
                let Some(d) = d.into_iter().next().flatten() else {
                    return Ok(vec![None; shapes.len()]);
                };
                if outer == 1 {
                    let mut at = 0;
                    let mut grads = Vec::with_capacity(shapes.len());
                    for s in &shapes {
                        let n: usize = s.iter().product();
                        let g = rec.empty(s, DType::F32)?;
                        rec.copy_range(&g, 0, &d, at, n)?;
                        at += n;
                        grads.push(Some(g));
                    }
                    return Ok(grads);
                }
                let (a, b) = (sizes[0] * inner, sizes[1] * inner);
                let (dx, dy) = elementwise::split(rec, outer, block(&d, 0, a + b), a, b)?;
                Ok(vec![
                    Some(dx.reshape(&shapes[0])?),
                    Some(dy.reshape(&shapes[1])?),
                ])
            })
            .remove(0))
    }

    /// `x` with dimensions `dim` and `dim + 1` swapped.
    pub fn transpose(&mut self, x: &Var, dim: usize) -> Result<Var> {
        let shape = x.shape().to_vec();
        if dim + 1 >= shape.len() {
            return Err(shape_error(
                "x",
                format!("dimensions {dim} and {}", dim + 1),
                &shape,
            ));
        }
        let dims = [
            shape[..dim].iter().product(),
            shape[dim],
            shape[dim + 1],
            shape[dim + 2..].iter().product(),
        ];
        let mut out_shape = shape.clone();
        out_shape.swap(dim, dim + 1);
        let out = elementwise::transpose(self.rec(), x, dims)?.reshape(&out_shape)?;
        let [r, a, b, i] = dims;
        Ok(self.unary(x, out, false, move |rec, d| {
            elementwise::transpose(rec, &d, [r, b, a, i])?.reshape(&shape)
        }))
    }

    /// `x` with dimensions `a` and `b` swapped (`torch.transpose(x, a, b)`).
    pub fn swap_dims(&mut self, x: &Var, a: usize, b: usize) -> Result<Var> {
        let mut perm: Vec<usize> = (0..x.shape().len()).collect();
        if a >= perm.len() || b >= perm.len() {
            return Err(Error::InvalidArgument {
                op: "swap_dims",
                what: "dimensions",
                expected: "two dimensions of x",
                got: format!("{a} and {b} of shape {:?}", x.shape()),
            });
        }
        perm.swap(a, b);
        self.permute(x, &perm)
    }

    /// `x` with its dimensions in the order `dims` (output dimension `i` is
    /// input dimension `dims[i]`, as `torch.permute`): one strided copy, and
    /// its inverse backward.
    pub fn permute(&mut self, x: &Var, dims: &[usize]) -> Result<Var> {
        let out = broadcast::permute(self.rec(), x, dims)?;
        let mut inverse = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(self.unary(x, out, false, move |rec, d| {
            broadcast::permute(rec, &d, &inverse)
        }))
    }

    /// `x` with a dimension of size 1 inserted at `dim` (0 ≤ dim ≤ rank): a
    /// reshape.
    pub fn unsqueeze(&mut self, x: &Var, dim: usize) -> Result<Var> {
        let mut shape = x.shape().to_vec();
        if dim > shape.len() {
            return Err(Error::InvalidArgument {
                op: "unsqueeze",
                what: "dim",
                expected: "at most the rank of x",
                got: format!("{dim} for shape {shape:?}"),
            });
        }
        shape.insert(dim, 1);
        self.reshape(x, &shape)
    }

    /// `x` repeated along its dimensions of size 1 (and new leading ones) up
    /// to `shape`, as `torch.expand` (a copy here); the gradient sums the
    /// repeats.
    pub fn expand(&mut self, x: &Var, shape: &[usize]) -> Result<Var> {
        let out = broadcast::expand(self.rec(), x, shape)?;
        let x_shape = x.shape().to_vec();
        Ok(self.unary(x, out, false, move |rec, d| {
            broadcast::sum_to(rec, &d, &x_shape)
        }))
    }

    /// `value` where `mask` (u32, broadcasting to `x`'s shape) is not zero,
    /// `x` elsewhere (`torch.masked_fill`); no gradient reaches the filled
    /// positions.
    pub fn masked_fill(&mut self, x: &Var, mask: &Tensor, value: f32) -> Result<Var> {
        let out = broadcast::masked_fill(self.rec(), x, mask, value)?;
        let mask = mask.clone();
        Ok(self.unary(x, out, false, move |rec, d| {
            broadcast::masked_fill(rec, &d, &mask, 0.0)
        }))
    }

    /// The rows of `x` `[N, ..]` in the order `rows`, a permutation of 0..N: its
    /// backward is the inverse permutation, one gather.
    pub fn permute_rows(&mut self, x: &Var, rows: &[usize]) -> Result<Var> {
        let n = x.shape().first().copied().unwrap_or(0);
        let mut inverse = vec![usize::MAX; n];
        for (to, &from) in rows.iter().enumerate() {
            match inverse.get_mut(from) {
                Some(slot) if *slot == usize::MAX => *slot = to,
                _ => {
                    return Err(Error::InvalidArgument {
                        op: "permute_rows",
                        what: "rows",
                        expected: "a permutation of the rows",
                        got: format!("{} rows, {rows:?}", n),
                    })
                }
            }
        }
        if rows.len() != n {
            return Err(Error::InvalidArgument {
                op: "permute_rows",
                what: "rows",
                expected: "a permutation of the rows",
                got: format!("{} of {n} rows", rows.len()),
            });
        }
        let out = gather_rows(self.rec(), x, rows)?;
        Ok(self.unary(x, out, false, move |rec, d| gather_rows(rec, &d, &inverse)))
    }

    /// The same values under another shape of as many elements.
    pub fn reshape(&mut self, x: &Var, shape: &[usize]) -> Result<Var> {
        let out = x.tensor.reshape(shape)?;
        let x_shape = x.shape().to_vec();
        Ok(self.unary(x, out, false, move |_, d| d.reshape(&x_shape)))
    }

    /// `tanh(x)`.
    pub fn tanh(&mut self, x: &Var) -> Result<Var> {
        self.activate(x, Activation::Tanh)
    }

    /// `max(x, 0)`.
    pub fn relu(&mut self, x: &Var) -> Result<Var> {
        self.activate(x, Activation::Relu)
    }

    /// `1 / (1 + exp(−x))`.
    pub fn sigmoid(&mut self, x: &Var) -> Result<Var> {
        self.activate(x, Activation::Sigmoid)
    }

    /// `exp(x)`.
    pub fn exp(&mut self, x: &Var) -> Result<Var> {
        self.activate(x, Activation::Exp)
    }

    /// The natural logarithm (NaN below 0 and −inf at 0, as IEEE has it).
    pub fn log(&mut self, x: &Var) -> Result<Var> {
        self.activate(x, Activation::Log)
    }

    fn activate(&mut self, x: &Var, f: Activation) -> Result<Var> {
        let y = elementwise::activate(self.rec(), f, x)?;
        let saved = if f.saves_input() {
            x.tensor.clone()
        } else {
            y.clone()
        };
        Ok(self.unary(x, y, false, move |rec, d| {
            elementwise::activate_backward(rec, f, &d, &saved)
        }))
    }

    /// The mean softmax cross-entropy of `logits` `[.., C]` against one class
    /// per row; rows whose target is `ignore_index` count nowhere. `[1]`.
    pub fn cross_entropy(
        &mut self,
        logits: &Var,
        targets: &[u32],
        ignore_index: Option<u32>,
    ) -> Result<Var> {
        let loss = cross_entropy::forward(self.rec(), logits, targets, ignore_index)?;
        Ok(self.loss_node(logits, loss))
    }

    /// [`cross_entropy`](Self::cross_entropy) against label-smoothed targets:
    /// see [`cross_entropy::forward_smoothed`]. `[1]`.
    pub fn cross_entropy_smoothed(
        &mut self,
        logits: &Var,
        targets: &[u32],
        ignore_index: Option<u32>,
        smoothing: f32,
    ) -> Result<Var> {
        let loss =
            cross_entropy::forward_smoothed(self.rec(), logits, targets, ignore_index, smoothing)?;
        Ok(self.loss_node(logits, loss))
    }

    /// [`cross_entropy`](Self::cross_entropy) and the accuracy of the same rows
    /// (`[1]`: the share whose highest logit is the target's), from the same
    /// kernels; the accuracy needs no gradient.
    pub fn cross_entropy_with_accuracy(
        &mut self,
        logits: &Var,
        targets: &[u32],
        ignore_index: Option<u32>,
    ) -> Result<(Var, Tensor)> {
        let options = CrossEntropy {
            ignore_index,
            ..CrossEntropy::default()
        };
        self.cross_entropy_with(logits, targets, &options)
    }

    /// [`cross_entropy`](Self::cross_entropy) with the choices of `options`
    /// (an ignore index, label smoothing, a class mask: see
    /// [`CrossEntropy`]), and the accuracy of the rows that count (`[1]`,
    /// over each row's classes).
    pub fn cross_entropy_with(
        &mut self,
        logits: &Var,
        targets: &[u32],
        options: &CrossEntropy,
    ) -> Result<(Var, Tensor)> {
        let loss = cross_entropy::forward_with(self.rec(), logits, targets, options)?;
        let accuracy = loss.accuracy.clone().ok_or(Error::Empty {
            op: "cross_entropy",
            what: "accuracy",
            shape: vec![],
        })?;
        Ok((self.loss_node(logits, loss), accuracy))
    }

    /// The negative log-likelihood of gold tag paths under a linear-chain CRF,
    /// per token (see [`crf::nll`]): `emissions` `[B, T, K]`, `weights` `[K + 2,
    /// K]` (start, end, transitions), the gold `tags` `[B·T]` and the lengths.
    /// `[1]`. Its backward comes from the forward-backward marginals.
    pub fn crf_nll(
        &mut self,
        chain: &Chain,
        emissions: &Var,
        weights: &Var,
        tags: &[u32],
        lengths: &[usize],
    ) -> Result<Var> {
        let (loss, saved) = crf::nll(self.rec(), chain, emissions, weights, tags, lengths)?;
        Ok(
            self.record_loss(&[emissions, weights], loss, move |rec, d| {
                let (de, dw) = crf::nll_backward(rec, &saved)?;
                Ok(match d.into_iter().next().flatten() {
                    None => vec![Some(de), Some(dw)],
                    Some(dloss) => vec![
                        Some(elementwise::mul(rec, &de, &dloss)?),
                        Some(elementwise::mul(rec, &dw, &dloss)?),
                    ],
                })
            }),
        )
    }

    /// The mean squared error of `y` against `target` (same shape). `[1]`.
    pub fn mse(&mut self, y: &Var, target: &Tensor) -> Result<Var> {
        let loss = mse::forward(self.rec(), y, target)?;
        Ok(self.loss_node(y, loss))
    }

    /// A fused loss, whose forward computed its gradient too.
    fn loss_node(&mut self, x: &Var, loss: cross_entropy::Loss) -> Var {
        let dx = loss.dlogits;
        self.record_loss(&[x], loss.loss, move |rec, d| {
            Ok(vec![Some(match d.into_iter().next().flatten() {
                None => dx,
                Some(dloss) => elementwise::mul(rec, &dx, &dloss)?,
            })])
        })
    }
}
