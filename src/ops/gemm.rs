//! Batched GEMM, `C = alpha·op(A)·op(B) + beta·C + bias`, and its backward.
//!
//! Shapes (row-major tensors): A `[M, K]` (`[K, M]` when `trans_a`), B `[K, N]`
//! (`[N, K]` when `trans_b`), C `[M, N]`, bias `[N]` added to every row. Each of A,
//! B, C may carry a leading batch dimension; an A or B without one is shared by
//! every batch entry of C. [`forward_view`] takes arbitrary strided [`View`]s
//! (slices of larger tensors, transposes, broadcasts) for the layers built on it.
//!
//! Backward (with Â = op(A), B̂ = op(B)): dÂ = alpha·dC·B̂ᵀ, dB̂ = alpha·Âᵀ·dC,
//! dbias = Σ_rows dC; a shared operand's gradient sums over the batch. The gradient
//! reaching C's old value (`beta·dC`) is the caller's to route.
//!
//! Storage: A, B and C may each be f32 or f16 (on adapters with SHADER_F16); the
//! kernels convert on load and store and accumulate in f32, so an f16 C is the
//! f32 result rounded once. Bias and bias gradients are f32.
//!
//! Kernels (in shaders/gemm.wgsl, same math, chosen per call):
//! - packed: A and B are copied into array textures, then `forward_tex` computes
//!   16 × 16 outputs per invocation from texel fetches. An operand shared by many
//!   products is packed once ([`pack_b`], [`pack_a`]), or written into its texture
//!   by the kernel that computes it ([`pack_a_target`], as the recurrent cells do
//!   with the next step's states). Chosen where the context
//!   says so ([`crate::ContextOptions::gemm_packed`]; by default on CPU adapters,
//!   whose storage-buffer loads are several times dearer than texel fetches).
//!   Where a subgroup is the kernel's 8-invocation workgroup
//!   ([`Context::gemm_subgroups`]), its invocations fetch A's 16 rows two each
//!   and share them by subgroup broadcasts (`shaders/gemm_subgroup.wgsl`).
//!   A product whose own packed operand would exceed 4 MiB of texels is
//!   recorded in parts along K (accumulated in C), M or N, whose textures the
//!   next part reuses: a step holds a few bounded textures, not one per large
//!   operand shape.
//! - `forward_thin`: C of at most 4 rows (a decoding step), every row × 8 columns
//!   per invocation from aligned vec4 loads, A read once per row instead of as
//!   part of an 8-row block.
//! - `forward_vec4`: 8 × 8 outputs per invocation from aligned vec4 loads, when
//!   strides and offsets are multiples of 4 (as is, or as Cᵀ = Bᵀ·Aᵀ).
//! - `forward`: any strides.

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::shaders;
use crate::tensor::Tensor;

const OP: &str = "gemm";
/// Columns of C per workgroup (64 lanes × 4 columns each), as in gemm.wgsl.
const TILE_N: usize = 256;
/// Rows of C per workgroup, as in gemm.wgsl.
const TILE_M: usize = 8;
/// Columns and rows of C per workgroup of `forward_vec4` (64 lanes × 8 × 8).
const VEC4_TILE_N: usize = 512;
const VEC4_TILE_M: usize = 8;
/// Most rows of C that `forward_thin` takes (its invocations own every row).
const THIN_ROWS: usize = 4;
/// Columns and rows of C per workgroup of `forward_tex` (8 lanes × 16 × 16).
const TEX_TILE_N: usize = 128;
const TEX_TILE_M: usize = 16;

/// Mirror of `Params` in shaders/gemm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_off: u32,
    a_ms: u32,
    a_ks: u32,
    a_bs: u32,
    b_off: u32,
    b_ks: u32,
    b_ns: u32,
    b_bs: u32,
    c_off: u32,
    c_ms: u32,
    c_ns: u32,
    c_bs: u32,
    bias_off: u32,
    bias_ms: u32,
    bias_ns: u32,
    has_bias: u32,
    alpha: f32,
    beta: f32,
    /// forward_tex's 4 × 4 blocks per invocation (16), read from here so that
    /// no compiler unrolls its scalar epilogue.
    blocks: u32,
    /// The packed layouts of A and B (rows per texture layer, texture layers
    /// per entry: see [`Packing`]); of the texture `pack` writes in `a_*`.
    a_h: u32,
    a_f: u32,
    b_h: u32,
    b_f: u32,
    _pad0: u32,
}

/// A strided matrix inside a tensor: element `(b, r, c)` is
/// `tensor[offset + b·batch_stride + r·row_stride + c·col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The tensor.
    pub tensor: &'a Tensor,
    /// Element offset of `(0, 0, 0)`.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Elements between rows.
    pub row_stride: usize,
    /// Elements between columns.
    pub col_stride: usize,
    /// 0 shares one matrix across the batch.
    pub batch_stride: usize,
}

impl<'a> View<'a> {
    /// The contiguous row-major matrix `[rows, cols]` at the start of `tensor`, or a
    /// batch of them laid one after the other when `batched`.
    pub fn matrix(tensor: &'a Tensor, rows: usize, cols: usize, batched: bool) -> Self {
        Self {
            tensor,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
            batch_stride: if batched { rows * cols } else { 0 },
        }
    }

    /// The transpose: the same elements with rows and columns swapped.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// The view of batch entry `b` alone.
    fn entry(self, b: usize) -> Self {
        Self {
            offset: self.offset + b * self.batch_stride,
            batch_stride: 0,
            ..self
        }
    }

    /// Checks that every element of `batch` entries lies inside the tensor.
    fn check(&self, what: &'static str, batch: usize) -> Result<()> {
        let last = last_index(
            self.offset,
            &[
                (batch, self.batch_stride),
                (self.rows, self.row_stride),
                (self.cols, self.col_stride),
            ],
        );
        if last >= self.tensor.numel() as u64 {
            return Err(Error::ViewOutOfBounds {
                op: OP,
                what,
                last: usize::try_from(last).unwrap_or(usize::MAX),
                len: self.tensor.numel(),
            });
        }
        Ok(())
    }
}

/// The largest index `offset + Σ (count − 1)·stride` reaches, in u64 so that no
/// stride, however large, can wrap around (counts are at least 1).
fn last_index(offset: usize, dims: &[(usize, usize)]) -> u64 {
    dims.iter().fold(offset as u64, |acc, &(count, stride)| {
        acc.saturating_add((count as u64 - 1).saturating_mul(stride as u64))
    })
}

/// `bias[offset + i·stride]`, one value per column of C.
#[derive(Clone, Copy, Debug)]
pub struct BiasView<'a> {
    /// The tensor.
    pub tensor: &'a Tensor,
    /// Element offset of the first value.
    pub offset: usize,
    /// Elements between values.
    pub stride: usize,
}

impl<'a> From<&'a Tensor> for BiasView<'a> {
    fn from(tensor: &'a Tensor) -> Self {
        Self {
            tensor,
            offset: 0,
            stride: 1,
        }
    }
}

/// Transposes and scalars of a GEMM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    /// Whether A is stored transposed.
    pub trans_a: bool,
    /// Whether B is stored transposed.
    pub trans_b: bool,
    /// Scale of the product.
    pub alpha: f32,
    /// 0 never reads C, so C may hold anything (even NaN) beforehand.
    pub beta: f32,
}

impl Default for Gemm {
    fn default() -> Self {
        Self {
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
        }
    }
}

/// What [`backward`] needs from a [`forward`]: the operands (shared, not copied).
#[derive(Clone, Debug)]
pub struct Saved {
    a: Tensor,
    b: Tensor,
    c_shape: Vec<usize>,
    gemm: Gemm,
}

/// Gradient outputs of [`backward`]; `None` skips that gradient.
#[derive(Clone, Copy, Debug, Default)]
pub struct Grads<'a> {
    /// Shaped like A.
    pub a: Option<&'a Tensor>,
    /// Shaped like B.
    pub b: Option<&'a Tensor>,
    /// Shaped like bias, `[N]`.
    pub bias: Option<&'a Tensor>,
    /// Add to the gradients already there (parameters) instead of overwriting them.
    pub accumulate: bool,
}

/// The views op(A) `[M, K]`, op(B) `[K, N]`, C `[M, N]` and the batch size of
/// tensors shaped as the module docs say.
fn views<'t>(
    c: &'t Tensor,
    a: &'t Tensor,
    b: &'t Tensor,
    g: &Gemm,
) -> Result<(View<'t>, View<'t>, View<'t>, usize)> {
    let (batch, m, n) = match *c.shape() {
        [m, n] => (1, m, n),
        [batch, m, n] => (batch, m, n),
        _ => return Err(shape_err("C", "[M, N] or [batch, M, N]", c)),
    };
    let operand = |t: &'t Tensor, what: &'static str, trans: bool| -> Result<View<'t>> {
        let (batched, rows, cols) = match *t.shape() {
            [r, cols] => (false, r, cols),
            [bt, r, cols] if bt == batch && c.shape().len() == 3 => (true, r, cols),
            _ => {
                return Err(shape_err(
                    what,
                    "a matrix, or a batch of them as many as C has",
                    t,
                ))
            }
        };
        let v = View::matrix(t, rows, cols, batched);
        Ok(if trans { v.t() } else { v })
    };
    let av = operand(a, "A", g.trans_a)?;
    let bv = operand(b, "B", g.trans_b)?;
    if av.rows != m || bv.cols != n || av.cols != bv.rows {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "op(A)·op(B)",
            expected: format!(
                "op(A) [{m}, K] and op(B) [K, {n}] for C {:?}; got op(A) [{}, {}], op(B) [{}, {}]",
                c.shape(),
                av.rows,
                av.cols,
                bv.rows,
                bv.cols
            ),
            got: c.shape().to_vec(),
        });
    }
    let cv = View::matrix(c, m, n, c.shape().len() == 3);
    Ok((cv, av, bv, batch))
}

fn shape_err(what: &'static str, expected: &str, t: &Tensor) -> Error {
    Error::ShapeMismatch {
        op: OP,
        what,
        expected: expected.into(),
        got: t.shape().to_vec(),
    }
}

/// Checks what every kernel of this op needs of its operands: one device, f32 or
/// f16 elements, and each buffer small enough for one storage binding.
fn check_operands(rec: &Recorder, operands: &[(&'static str, &Tensor)]) -> Result<()> {
    super::check_float(rec, OP, operands)?;
    let limit = rec.context().limits().max_storage_buffer_binding_size;
    for &(_, t) in operands {
        if t.buffer().size() > limit {
            return Err(Error::LimitExceeded {
                op: OP,
                what: "operand bytes (one storage binding)",
                value: t.buffer().size(),
                limit,
            });
        }
    }
    Ok(())
}

/// Records `C = alpha·op(A)·op(B) + beta·C + bias` for tensors shaped as the
/// module docs say, and returns what [`backward`] needs.
pub fn forward(
    rec: &mut Recorder,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    g: Gemm,
) -> Result<Saved> {
    let (cv, av, bv, batch) = views(c, a, b, &g)?;
    if let Some(bias) = bias {
        if bias.shape() != [cv.cols] {
            return Err(shape_err("bias", "[N]", bias));
        }
    }
    forward_view(
        rec,
        cv,
        av,
        bv,
        bias.map(BiasView::from),
        batch,
        g.alpha,
        g.beta,
    )?;
    Ok(Saved {
        a: a.clone(),
        b: b.clone(),
        c_shape: c.shape().to_vec(),
        gemm: g,
    })
}

/// Records `C = A·B` on views (`.t()` for a transposed operand): the product as
/// the math reads. [`forward_view`] adds a bias, a batch, alpha and beta.
pub fn matmul(rec: &mut Recorder, c: View, a: View, b: View) -> Result<()> {
    forward_view(rec, c, a, b, None, 1, 1.0, 0.0)
}

/// Records `C[i] = alpha·A[i]·B[i] + beta·C[i] + bias` for `i < batch`, on strided
/// views: A `[M, K]`, B `[K, N]`, C `[M, N]`, bias one value per column.
/// C may have batch stride 0 only when `batch` is 1.
#[allow(clippy::too_many_arguments)]
pub fn forward_view(
    rec: &mut Recorder,
    c: View,
    a: View,
    b: View,
    bias: Option<BiasView>,
    batch: usize,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    forward_impl(rec, c, a, b, None, None, bias, batch, alpha, beta)
}

/// An operand B `[K, N]` prepared once for many products that share it, such as a
/// layer's recurrent weights over the steps of a sequence: on adapters that use
/// the packed kernels it is packed into a texture here, once, instead of at every
/// product. Valid while the recorder it was made with records: the texture
/// reflects B's contents at this point of the recording.
#[derive(Debug)]
pub struct PackedB<'a> {
    view: View<'a>,
    batch: usize,
    texture: Option<wgpu::TextureView>,
}

/// Prepares `b` (a batch of `batch` views, or one shared) for [`forward_packed`]
/// products with `m` rows (M decides, with B's shape, whether packing pays).
pub fn pack_b<'a>(rec: &mut Recorder, b: View<'a>, batch: usize, m: usize) -> Result<PackedB<'a>> {
    // The texture holds Bᵀ's rows: N rows of K.
    let texture = match prepare(rec, "B", b.t(), batch, m)? {
        Some(v) => pack(rec, b.tensor, v)?,
        None => None,
    };
    Ok(PackedB {
        view: b,
        batch,
        texture,
    })
}

/// Checks an operand `v` of rows × K (per batch entry) prepared for products whose
/// other side has `other` rows, and holds it for the recording. Where the context
/// packs such products, how to pack it. (The view's numbers were checked against
/// the tensor's length, which fits u32.)
fn prepare(
    rec: &mut Recorder,
    what: &'static str,
    v: View,
    batch: usize,
    other: usize,
) -> Result<Option<Packing>> {
    check_operands(rec, &[(what, v.tensor)])?;
    if batch == 0 || v.rows == 0 || v.cols == 0 {
        return Err(Error::Empty {
            op: OP,
            what,
            shape: vec![batch, v.rows, v.cols],
        });
    }
    v.check(what, batch)?;
    rec.hold(&[v.tensor]);
    if !rec.context().gemm_packs(v.rows, other, v.cols) {
        return Ok(None);
    }
    let u = |x: usize| x as u32;
    Ok(Some(Packing {
        rows: u(v.rows),
        k: u(v.cols),
        layers: if v.batch_stride == 0 { 1 } else { u(batch) },
        off: u(v.offset),
        row_stride: u(v.row_stride),
        k_stride: u(v.col_stride),
        batch_stride: u(v.batch_stride),
        fold: false,
    }))
}

/// An operand A `[M, K]` (a batch of `batch` views, or one shared) prepared for
/// [`forward_packed`]: on adapters that use the packed kernels for the products it
/// serves, a texture that holds A (packed by [`pack_a`], or to be written by a
/// kernel of the caller's, see [`pack_a_target`]); otherwise A is read from its
/// view. Valid while the recorder it was made with records.
#[derive(Debug)]
pub struct PackedA<'a> {
    view: View<'a>,
    batch: usize,
    /// The texture and what it was made for: rows, K and layers.
    texture: Option<(wgpu::TextureView, [u32; 3])>,
}

impl PackedA<'_> {
    /// The texture of a [`pack_a_target`], for the caller's kernel to write before
    /// the product: texel `(k / 4, m, b)` holds `A[b, m, k .. k + 4]`, zeros past K.
    /// None where the products read A from its view.
    pub fn texture(&self) -> Option<&wgpu::TextureView> {
        self.texture.as_ref().map(|(view, _)| view)
    }

    /// `a` (as many rows, as long a K and the same batch as this operand, for
    /// products with `n` columns) prepared in this operand's texture: packed when
    /// `fill`, else left for the caller's kernel as [`pack_a_target`] leaves it.
    /// A recurrence so alternates two textures instead of holding one per step
    /// until the submit: a dispatch that writes the texture is ordered after the
    /// products recorded before it that read it, so every product of `self` must
    /// already be recorded.
    pub fn reuse<'b>(
        self,
        rec: &mut Recorder,
        a: View<'b>,
        n: usize,
        fill: bool,
    ) -> Result<PackedA<'b>> {
        prepare_a(rec, a, self.batch, n, fill, self.texture)
    }
}

/// Packs `a` for [`forward_packed`] products with `n` columns (M, N and K decide
/// whether packing pays, as for any product).
pub fn pack_a<'a>(rec: &mut Recorder, a: View<'a>, batch: usize, n: usize) -> Result<PackedA<'a>> {
    prepare_a(rec, a, batch, n, true, None)
}

/// [`pack_a`] without the packing: where the products will read a texture, one
/// for the caller's own kernel to fill (as the recurrent cells write the next
/// step's states), which saves a pack dispatch. The view must hold the same
/// values, for adapters that read it instead.
pub fn pack_a_target<'a>(
    rec: &mut Recorder,
    a: View<'a>,
    batch: usize,
    n: usize,
) -> Result<PackedA<'a>> {
    prepare_a(rec, a, batch, n, false, None)
}

/// `a` prepared as [`pack_a`] (`fill`) or [`pack_a_target`] prepare it, in `old`
/// (a texture and the rows, K and layers it was made for) where that fits, else
/// in a new scratch texture.
fn prepare_a<'a>(
    rec: &mut Recorder,
    a: View<'a>,
    batch: usize,
    n: usize,
    fill: bool,
    old: Option<(wgpu::TextureView, [u32; 3])>,
) -> Result<PackedA<'a>> {
    let Some(v) = prepare(rec, "A", a, batch, n)? else {
        return Ok(PackedA {
            view: a,
            batch,
            texture: None,
        });
    };
    let dims = [v.rows, v.k, v.layers];
    let view = match old.filter(|(_, d)| *d == dims) {
        Some((view, _)) => {
            if fill {
                pack_into(rec, a.tensor, v, &view)?;
            }
            Some(view)
        }
        None if fill => pack(rec, a.tensor, v)?,
        None => packed_texture(rec, v),
    };
    Ok(PackedA {
        view: a,
        batch,
        texture: view.map(|view| (view, dims)),
    })
}

/// [`forward_view`] with A prepared by [`pack_a`] or [`pack_a_target`] and B by
/// [`pack_b`] (for `batch` entries).
#[allow(clippy::too_many_arguments)]
pub fn forward_packed(
    rec: &mut Recorder,
    c: View,
    a: &PackedA,
    b: &PackedB,
    bias: Option<BiasView>,
    batch: usize,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    for (what, prepared) in [
        ("batch of the packed A", a.batch),
        ("batch of the packed B", b.batch),
    ] {
        if batch != prepared {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("{prepared}"),
                got: vec![batch],
            });
        }
    }
    forward_impl(
        rec,
        c,
        a.view,
        b.view,
        a.texture(),
        b.texture.as_ref(),
        bias,
        batch,
        alpha,
        beta,
    )
}

#[allow(clippy::too_many_arguments)]
fn forward_impl(
    rec: &mut Recorder,
    c: View,
    a: View,
    b: View,
    packed_a: Option<&wgpu::TextureView>,
    packed_b: Option<&wgpu::TextureView>,
    bias: Option<BiasView>,
    batch: usize,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let mut operands = vec![("C", c.tensor), ("A", a.tensor), ("B", b.tensor)];
    operands.extend(bias.map(|v| ("bias", v.tensor)));
    check_operands(rec, &operands)?;
    if let Some(bv) = bias {
        super::check_f32(rec, OP, &[("bias", bv.tensor)])?;
    }
    for (what, t) in [("A", a.tensor), ("B", b.tensor)] {
        if t.buffer() == c.tensor.buffer() {
            return Err(Error::Aliasing { op: OP, what });
        }
    }
    let (m, n, k) = (c.rows, c.cols, a.cols);
    if a.rows != m || b.rows != k || b.cols != n {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "views",
            expected: format!("A [{m}, K], B [K, {n}] for C [{m}, {n}]"),
            got: vec![a.rows, a.cols, b.rows, b.cols],
        });
    }
    if [m, n, k, batch].contains(&0) {
        return Err(Error::Empty {
            op: OP,
            what: "[batch, M, N, K]",
            shape: vec![batch, m, n, k],
        });
    }
    if batch > 1 && c.batch_stride == 0 {
        return Err(Error::Aliasing {
            op: OP,
            what: "C (batch stride 0 with batch > 1)",
        });
    }
    a.check("A", batch)?;
    b.check("B", batch)?;
    c.check("C", batch)?;
    if let Some(bv) = bias {
        let last = last_index(bv.offset, &[(n, bv.stride)]);
        if last >= bv.tensor.numel() as u64 {
            return Err(Error::ViewOutOfBounds {
                op: OP,
                what: "bias",
                last: usize::try_from(last).unwrap_or(usize::MAX),
                len: bv.tensor.numel(),
            });
        }
        if bv.tensor.buffer() == c.tensor.buffer() {
            return Err(Error::Aliasing {
                op: OP,
                what: "bias",
            });
        }
    }
    // Every index inside the views was checked against a tensor length, which fits
    // u32. A stride can exceed u32 only for a dimension of one entry, where the
    // shaders multiply it by 0 (or read rows past M through the bounds check and
    // drop them).
    let u = |x: usize| x as u32;
    let mut p = Params {
        m: u(m),
        n: u(n),
        k: u(k),
        batch: u(batch),
        a_off: u(a.offset),
        a_ms: u(a.row_stride),
        a_ks: u(a.col_stride),
        a_bs: u(a.batch_stride),
        b_off: u(b.offset),
        b_ks: u(b.row_stride),
        b_ns: u(b.col_stride),
        b_bs: u(b.batch_stride),
        c_off: u(c.offset),
        c_ms: u(c.row_stride),
        c_ns: u(c.col_stride),
        c_bs: u(c.batch_stride),
        alpha,
        beta,
        blocks: 16,
        ..Params::default()
    };
    if let Some(bv) = bias {
        p.bias_off = u(bv.offset);
        p.bias_ns = u(bv.stride);
        p.has_bias = 1;
    }
    let swapped = p.swapped();
    rec.hold(&operands.iter().map(|&(_, t)| t).collect::<Vec<_>>());
    let ctx = rec.context().clone();
    let (a_buf, b_buf, c_buf) = (a.tensor, b.tensor, c.tensor);
    // Without a bias the shaders never read binding 3; any buffer that is not C fills it.
    let bias_buf = bias.map_or(a_buf.buffer(), |bv| bv.tensor.buffer());
    // The kernels spread their lanes along N; a short, wide N wastes lanes, so such
    // a product is computed as Cᵀ = Bᵀ·Aᵀ instead.
    let swap = |lane_cols: usize| n < lane_cols && m > n;
    let oriented = |lane_cols: usize| {
        if swap(lane_cols) {
            (swapped, b_buf, a_buf)
        } else {
            (p, a_buf, b_buf)
        }
    };
    if ctx.gemm_packs(m, n, k) {
        if packed_a.is_none() && packed_b.is_none() {
            if let Some(split) = Split::of(&p, c.tensor) {
                return split.record(rec, c, a, b, bias, batch, alpha, beta);
            }
        }
        let a_src = packed_a.map_or(Source::Buffer(a_buf), Source::Packed);
        let b_src = packed_b.map_or(Source::Buffer(b_buf), Source::Packed);
        let (q, qa, qb) = if swap(TEX_TILE_N) {
            (swapped, b_src, a_src)
        } else {
            (p, a_src, b_src)
        };
        if forward_tex(rec, &q, qa, qb, bias_buf, c_buf)? {
            return Ok(());
        }
    }
    let (q, qa, qb, entry, constants) = if let Some(consts) = p.thin_layout() {
        (p, a_buf, b_buf, "forward_thin", consts)
    } else if let Some(consts) = swapped.thin_layout() {
        (swapped, b_buf, a_buf, "forward_thin", consts)
    } else if let Some(consts) = p.vec4_layout() {
        (p, a_buf, b_buf, "forward_vec4", p.with_c_vec4(consts))
    } else if let Some(consts) = swapped.vec4_layout() {
        (
            swapped,
            b_buf,
            a_buf,
            "forward_vec4",
            swapped.with_c_vec4(consts),
        )
    } else {
        let (q, qa, qb) = oriented(TILE_N);
        (q, qa, qb, "forward", vec![])
    };
    let f16 = super::f16_aliases(&[("a_t", qa), ("b_t", qb), ("c_t", c_buf)]);
    let pipeline = ctx.pipeline_f16(&shaders::GEMM, entry, &constants, &f16);
    let (label, cols_per_group, rows_per_group) = match entry {
        "forward" => ("gemm::forward", TILE_N, TILE_M),
        "forward_thin" => ("gemm::forward_thin", VEC4_TILE_N, THIN_ROWS),
        _ => ("gemm::forward_vec4", VEC4_TILE_N, VEC4_TILE_M),
    };
    let (qa, qb) = (qa.buffer(), qb.buffer());
    let vec4 = entry == "forward_vec4";
    let [c, c4] = c_views(&ctx, &q, c_buf);
    let mut bindings = vec![
        (1, qa.as_entire_binding()),
        (2, qb.as_entire_binding()),
        (3, bias_buf.as_entire_binding()),
        (
            4,
            if vec4 {
                c
            } else {
                c_buf.buffer().as_entire_binding()
            },
        ),
    ];
    if entry != "forward" {
        bindings.extend([(5, qa.as_entire_binding()), (6, qb.as_entire_binding())]);
    }
    if vec4 {
        bindings.extend([(10, c4), (11, bias_buf.as_entire_binding())]);
    }
    rec.dispatch(
        label,
        &pipeline,
        bytemuck::bytes_of(&q),
        &bindings,
        groups(q.n, cols_per_group, q.m, rows_per_group, batch),
    )
}

/// Most texels (16 bytes each) of an operand a product packs for itself: a
/// larger one is computed in parts along K, M or N, whose textures a later part
/// (or product) of the recording reuses. Without it a step held a texture per
/// distinct large shape until its submit: the tagger's weight gradients over
/// every word of a batch took 20 to 80 MiB each.
const PACK_TEXELS: u64 = 1 << 18;
/// Fewest K per part of a split along K: shorter dot products pay more in
/// packing and stores than they save.
const MIN_SPLIT_K: usize = 256;

/// How a product too large to pack at once is cut (see [`PACK_TEXELS`]).
#[derive(Clone, Copy, Debug)]
enum Split {
    /// Parts of K, accumulated into C (beta 1 after the first).
    K(usize),
    /// Parts of C's rows (A's rows).
    M(usize),
    /// Parts of C's columns (B's columns).
    N(usize),
}

impl Split {
    /// The cut for a product of `p`'s sizes into `c`, or None where both
    /// operands fit. Parts of K accumulate in C, so an f16 C is cut only along
    /// its rows or columns.
    fn of(p: &Params, c: &Tensor) -> Option<Self> {
        let layers = |batch_stride: u32| {
            if batch_stride == 0 {
                1
            } else {
                u64::from(p.batch)
            }
        };
        let a_rows = u64::from(p.m) * layers(p.a_bs);
        let b_rows = u64::from(p.n) * layers(p.b_bs);
        let k_texels = u64::from(p.k.div_ceil(4));
        if a_rows.max(b_rows) * k_texels <= PACK_TEXELS {
            return None;
        }
        // The rows that one part of the shortest K admits.
        let rows_for = |layers: u64| {
            let k = k_texels.min(MIN_SPLIT_K as u64 / 4);
            ((PACK_TEXELS / (k * layers)) as usize / TEX_TILE_M * TEX_TILE_M).max(TEX_TILE_M)
        };
        let k_part = |rows: u64| (PACK_TEXELS / rows) as usize * 4;
        let splits_k = |rows: u64| {
            c.dtype() == crate::tensor::DType::F32
                && p.k as usize > MIN_SPLIT_K
                && k_part(rows) >= MIN_SPLIT_K
        };
        if a_rows >= b_rows {
            if splits_k(a_rows) {
                return Some(Self::K(k_part(a_rows)));
            }
            Self::M(rows_for(layers(p.a_bs))).filter_part(p.m)
        } else {
            if splits_k(b_rows) {
                return Some(Self::K(k_part(b_rows)));
            }
            Self::N(rows_for(layers(p.b_bs))).filter_part(p.n)
        }
    }

    /// None where the part would be the whole dimension `len`.
    fn filter_part(self, len: u32) -> Option<Self> {
        let part = match self {
            Self::K(n) | Self::M(n) | Self::N(n) => n,
        };
        (part < len as usize).then_some(self)
    }

    /// Records the product part by part, each through [`forward_impl`].
    #[allow(clippy::too_many_arguments)]
    fn record(
        self,
        rec: &mut Recorder,
        c: View,
        a: View,
        b: View,
        bias: Option<BiasView>,
        batch: usize,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let (len, part) = match self {
            Self::K(n) => (a.cols, n),
            Self::M(n) => (c.rows, n),
            Self::N(n) => (c.cols, n),
        };
        for start in (0..len).step_by(part) {
            let n = part.min(len - start);
            let (mut c, mut a, mut b, mut bias, mut beta) = (c, a, b, bias, beta);
            match self {
                Self::K(_) => {
                    a.offset += start * a.col_stride;
                    a.cols = n;
                    b.offset += start * b.row_stride;
                    b.rows = n;
                    if start > 0 {
                        // The first part wrote beta·C + bias; the others add to it.
                        beta = 1.0;
                        bias = None;
                    }
                }
                Self::M(_) => {
                    a.offset += start * a.row_stride;
                    a.rows = n;
                    c.offset += start * c.row_stride;
                    c.rows = n;
                }
                Self::N(_) => {
                    b.offset += start * b.col_stride;
                    b.cols = n;
                    c.offset += start * c.col_stride;
                    c.cols = n;
                    if let Some(bv) = &mut bias {
                        bv.offset += start * bv.stride;
                    }
                }
            }
            forward_impl(rec, c, a, b, None, None, bias, batch, alpha, beta)?;
        }
        Ok(())
    }
}

/// Workgroup counts: columns, rows, batch.
fn groups(n: u32, cols_per_group: usize, m: u32, rows_per_group: usize, batch: usize) -> [u32; 3] {
    [
        (n as usize).div_ceil(cols_per_group),
        (m as usize).div_ceil(rows_per_group),
        batch,
    ]
    .map(|g| u32::try_from(g).unwrap_or(u32::MAX))
}

/// The buffers bound as C's scalar view (binding 4) and vec4 view (binding 10) of
/// `forward_vec4` and `forward_tex`: C's buffer for the view `store_block` writes
/// (the vec4 one where `C_VEC4`), the context's placeholder for the other. WebGPU
/// forbids binding one buffer twice as writable storage in a dispatch.
fn c_views<'a>(ctx: &'a Context, p: &Params, c: &'a Tensor) -> [wgpu::BindingResource<'a>; 2] {
    let (c, idle) = (
        c.buffer().as_entire_binding(),
        ctx.placeholder().as_entire_binding(),
    );
    if p.c_vec4() {
        [idle, c]
    } else {
        [c, idle]
    }
}

/// Where `forward_tex` gets an operand: a tensor to pack now, or a texture packed before.
#[derive(Clone, Copy)]
enum Source<'t> {
    Buffer(&'t Tensor),
    Packed(&'t wgpu::TextureView),
}

/// A strided `[rows, K]` view (per layer) to pack into a texture.
#[derive(Clone, Copy)]
struct Packing {
    rows: u32,
    k: u32,
    layers: u32,
    off: u32,
    row_stride: u32,
    k_stride: u32,
    batch_stride: u32,
    /// One entry's rows folded into two texture layers (where `layers` is 1):
    /// the texture is an array without a second, unused layer (see
    /// [`packed_texture`]). Textures that kernels of the recurrent cells
    /// write (`pack_a_target`) are never folded.
    fold: bool,
}

impl Packing {
    /// Rows per texture layer and texture layers per entry, as `pack` and
    /// `forward_tex` read them (`a_h`, `a_f`): a folded entry's rows go to two
    /// layers of a multiple of 16 rows, so that forward_tex's 16-row tiles
    /// never straddle them.
    fn layout(&self) -> (u32, u32) {
        if self.fold && self.layers == 1 {
            (self.rows.div_ceil(2).next_multiple_of(16), 2)
        } else {
            (self.rows, 1)
        }
    }
}

/// Records `pack` of a view into a scratch array texture whose texels hold 4
/// consecutive k; None (nothing recorded) when it would exceed the device limits.
fn pack(rec: &mut Recorder, src: &Tensor, v: Packing) -> Result<Option<wgpu::TextureView>> {
    let Some(view) = packed_texture(rec, v) else {
        return Ok(None);
    };
    pack_into(rec, src, v, &view)?;
    Ok(Some(view))
}

/// Records `pack` of a view into `view`, a texture made for its rows, K and layers.
fn pack_into(rec: &mut Recorder, src: &Tensor, v: Packing, view: &wgpu::TextureView) -> Result<()> {
    let k_texels = v.k.div_ceil(4);
    let (a_h, a_f) = v.layout();
    let pp = Params {
        m: v.rows,
        k: v.k,
        batch: v.layers,
        a_off: v.off,
        a_ms: v.row_stride,
        a_ks: v.k_stride,
        a_bs: v.batch_stride,
        a_h,
        a_f,
        ..Params::default()
    };
    // Lanes go along whichever of k and the rows is contiguous in memory: a
    // transposed operand (W1's weight gradients) packs twice as fast so.
    let along_rows = v.row_stride < v.k_stride;
    let pipeline = rec.context().pipeline_f16(
        &shaders::GEMM,
        "pack",
        &[("PACK_ALONG_ROWS", flag(along_rows))],
        &super::f16_aliases(&[("a_t", src)]),
    );
    let groups = if along_rows {
        [v.rows.div_ceil(64), k_texels, v.layers]
    } else {
        [k_texels.div_ceil(64), v.rows, v.layers]
    };
    rec.dispatch(
        "gemm::pack",
        &pipeline,
        bytemuck::bytes_of(&pp),
        &[
            (1, src.buffer().as_entire_binding()),
            (7, wgpu::BindingResource::TextureView(view)),
        ],
        groups,
    )
}

/// A scratch array texture for `v` packed as `pack` lays it out; None when it
/// would exceed the device limits.
fn packed_texture(rec: &mut Recorder, v: Packing) -> Option<wgpu::TextureView> {
    let limits = rec.context().limits();
    let k_texels = v.k.div_ceil(4);
    let (rows, per_entry) = v.layout();
    let layers = v.layers * per_entry;
    if k_texels.max(rows) > limits.max_texture_dimension_2d
        || layers > limits.max_texture_array_layers
    {
        return None;
    }
    // At least two layers (an unused one where nothing folds), so that the
    // texture is always an array: wgpu's GL backend makes a one-layer texture a
    // plain 2D texture, which an array binding cannot read, and lavapipe
    // compiles a kernel anew for each mix of array and plain textures it binds
    // (seconds for forward_tex).
    let texture = rec.scratch_texture(wgpu::Extent3d {
        width: k_texels,
        height: rows,
        depth_or_array_layers: layers.max(2),
    });
    Some(texture.create_view(&wgpu::TextureViewDescriptor {
        dimension: Some(wgpu::TextureViewDimension::D2Array),
        ..Default::default()
    }))
}

/// Records the product through packed textures: packs what is not packed yet (one
/// layer per batch entry, one for a shared operand), then `forward_tex`. Records
/// nothing and returns false when a texture would exceed the device limits.
fn forward_tex(
    rec: &mut Recorder,
    p: &Params,
    a: Source,
    b: Source,
    bias: &wgpu::Buffer,
    c: &Tensor,
) -> Result<bool> {
    let layers = |batch_stride: u32| if batch_stride == 0 { 1 } else { p.batch };
    let (a_layers, b_layers) = (layers(p.a_bs), layers(p.b_bs));
    let limits = rec.context().limits();
    if p.k.div_ceil(4).max(p.m).max(p.n) > limits.max_texture_dimension_2d
        || a_layers.max(b_layers) > limits.max_texture_array_layers
    {
        return Ok(false);
    }
    // The textures packed here serve this product only.
    let mut own = Vec::new();
    let mut texture = |src: Source, v: Packing| -> Result<Option<wgpu::TextureView>> {
        match src {
            Source::Packed(view) => Ok(Some(view.clone())),
            Source::Buffer(buf) => {
                let view = pack(rec, buf, v)?;
                own.extend(view.as_ref().map(|v| v.texture().clone()));
                Ok(view)
            }
        }
    };
    // What this product packs itself serves it alone: a single entry folds.
    let a_packing = Packing {
        rows: p.m,
        k: p.k,
        layers: a_layers,
        off: p.a_off,
        row_stride: p.a_ms,
        k_stride: p.a_ks,
        batch_stride: p.a_bs,
        fold: matches!(a, Source::Buffer(_)),
    };
    let b_packing = Packing {
        rows: p.n,
        k: p.k,
        layers: b_layers,
        off: p.b_off,
        row_stride: p.b_ns,
        k_stride: p.b_ks,
        batch_stride: p.b_bs,
        fold: matches!(b, Source::Buffer(_)),
    };
    let (Some(ta), Some(tb)) = (texture(a, a_packing)?, texture(b, b_packing)?) else {
        return Ok(false);
    };
    let mut p = *p;
    (p.a_h, p.a_f) = a_packing.layout();
    (p.b_h, p.b_f) = b_packing.layout();
    let p = &p;
    let shader = if rec.context().gemm_subgroups() {
        &shaders::GEMM_SUBGROUP
    } else {
        &shaders::GEMM
    };
    let pipeline = rec.context().pipeline_f16(
        shader,
        "forward_tex",
        &p.with_c_vec4(vec![]),
        &super::f16_aliases(&[("c_t", c)]),
    );
    let ctx = rec.context().clone();
    let [c, c4] = c_views(&ctx, p, c);
    rec.dispatch(
        "gemm::forward_tex",
        &pipeline,
        bytemuck::bytes_of(p),
        &[
            (3, bias.as_entire_binding()),
            (4, c),
            (10, c4),
            (11, bias.as_entire_binding()),
            (8, wgpu::BindingResource::TextureView(&ta)),
            (9, wgpu::BindingResource::TextureView(&tb)),
        ],
        groups(p.n, TEX_TILE_N, p.m, TEX_TILE_M, p.batch as usize),
    )?;
    for t in &own {
        rec.spare_texture(t);
    }
    Ok(true)
}

impl Params {
    /// The same product as Cᵀ = Bᵀ·Aᵀ: A and B trade places, C and bias are transposed.
    fn swapped(&self) -> Self {
        Self {
            m: self.n,
            n: self.m,
            a_off: self.b_off,
            a_ms: self.b_ns,
            a_ks: self.b_ks,
            a_bs: self.b_bs,
            b_off: self.a_off,
            b_ks: self.a_ks,
            b_ns: self.a_ms,
            b_bs: self.a_bs,
            c_ms: self.c_ns,
            c_ns: self.c_ms,
            bias_ms: self.bias_ns,
            bias_ns: self.bias_ms,
            ..*self
        }
    }

    /// The override constants of `forward_vec4` when A and B can both be read as
    /// aligned vec4s (along k, or along m for A and n for B), else None.
    fn vec4_layout(&self) -> Option<Vec<(&'static str, f64)>> {
        let a_along_k = self.a_ks == 1 && aligned(self.a_off, self.a_bs, self.a_ms);
        let a_along_m = self.a_ms == 1 && aligned(self.a_off, self.a_bs, self.a_ks);
        let b_along_n = self.b_vec4()?;
        (a_along_k || a_along_m).then(|| {
            vec![
                ("A_ALONG_K", flag(a_along_k)),
                ("B_ALONG_N", flag(b_along_n)),
            ]
        })
    }

    /// The override constants of `forward_thin` when C has at most [`THIN_ROWS`]
    /// rows, A's rows can be read as aligned vec4s along k (one row needs no
    /// aligned row stride) and B as aligned vec4s, else None.
    fn thin_layout(&self) -> Option<Vec<(&'static str, f64)>> {
        let row_stride = if self.m == 1 { 0 } else { self.a_ms };
        let a_along_k = self.a_ks == 1 && aligned(self.a_off, self.a_bs, row_stride);
        let b_along_n = self.b_vec4()?;
        (self.m as usize <= THIN_ROWS && a_along_k).then(|| {
            vec![
                ("THIN_ROWS", f64::from(self.m)),
                ("B_ALONG_N", flag(b_along_n)),
            ]
        })
    }

    /// `constants` plus `C_VEC4` for this product.
    fn with_c_vec4(&self, mut constants: Vec<(&'static str, f64)>) -> Vec<(&'static str, f64)> {
        constants.push(("C_VEC4", flag(self.c_vec4())));
        constants
    }

    /// Whether `store_block` may store C's rows as aligned vec4s (`C_VEC4`): C
    /// contiguous along N, N and C's offset and strides multiples of 4, and a bias,
    /// if any, along N from an aligned offset.
    fn c_vec4(&self) -> bool {
        let row_stride = if self.m == 1 { 0 } else { self.c_ms };
        let batch_stride = if self.batch == 1 { 0 } else { self.c_bs };
        let bias_ok = self.has_bias == 0
            || (self.bias_ms == 0 && self.bias_ns == 1 && self.bias_off.is_multiple_of(4));
        self.c_ns == 1
            && self.n.is_multiple_of(4)
            && aligned(self.c_off, batch_stride, row_stride)
            && bias_ok
    }

    /// Whether B can be read as aligned vec4s along n (true) or along k (false).
    fn b_vec4(&self) -> Option<bool> {
        if self.b_ns == 1 && aligned(self.b_off, self.b_bs, self.b_ks) {
            Some(true)
        } else if self.b_ks == 1 && aligned(self.b_off, self.b_bs, self.b_ns) {
            Some(false)
        } else {
            None
        }
    }
}

/// Whether an operand's offset and strides keep its vec4s aligned.
fn aligned(off: u32, batch_stride: u32, other_stride: u32) -> bool {
    off.is_multiple_of(4) && batch_stride.is_multiple_of(4) && other_stride.is_multiple_of(4)
}

/// An override constant's value for a flag.
fn flag(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

/// Records `out = alpha·Σ_i x[i]·y[i] + beta·out` when `out` is shared across the
/// batch (batch stride 0), else the batched `out[i] = alpha·x[i]·y[i] + beta·out[i]`.
fn product_into(
    rec: &mut Recorder,
    out: View,
    x: View,
    y: View,
    batch: usize,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    if out.batch_stride != 0 || batch == 1 {
        return forward_view(rec, out, x, y, None, batch, alpha, beta);
    }
    // A sum over the batch of products is one product over a K that runs through
    // the batch, when x's batch entries sit side by side along its columns and y's
    // along its rows (true for contiguous tensors).
    if x.batch_stride == x.cols * x.col_stride && y.batch_stride == y.rows * y.row_stride {
        let x = View {
            cols: x.cols * batch,
            batch_stride: 0,
            ..x
        };
        let y = View {
            rows: y.rows * batch,
            batch_stride: 0,
            ..y
        };
        return forward_view(rec, out, x, y, None, 1, alpha, beta);
    }
    for i in 0..batch {
        let beta_i = if i == 0 { beta } else { 1.0 };
        forward_view(rec, out, x.entry(i), y.entry(i), None, 1, alpha, beta_i)?;
    }
    Ok(())
}

/// Records the gradients of a [`forward`] given `d_out` (dC, shaped like C).
pub fn backward(rec: &mut Recorder, grads: Grads, d_out: &Tensor, saved: &Saved) -> Result<()> {
    if d_out.shape() != saved.c_shape.as_slice() {
        return Err(shape_err("dC", "the shape of C", d_out));
    }
    let g = saved.gemm;
    let beta = if grads.accumulate { 1.0 } else { 0.0 };
    let (dc, a, b, batch) = views(d_out, &saved.a, &saved.b, &g)?;
    if let Some(da) = grads.a {
        if da.shape() != saved.a.shape() {
            return Err(shape_err("dA", "the shape of A", da));
        }
        // dÂ lies in dA exactly as Â lies in A.
        let da_view = View { tensor: da, ..a };
        product_into(rec, da_view, dc, b.t(), batch, g.alpha, beta)?;
    }
    if let Some(db) = grads.b {
        if db.shape() != saved.b.shape() {
            return Err(shape_err("dB", "the shape of B", db));
        }
        let db_view = View { tensor: db, ..b };
        product_into(rec, db_view, a.t(), dc, batch, g.alpha, beta)?;
    }
    if let Some(dbias) = grads.bias {
        if dbias.shape() != [dc.cols] {
            return Err(shape_err("dbias", "[N]", dbias));
        }
        bias_grad(rec, dbias.into(), dc, batch, 1.0, beta)?;
    }
    Ok(())
}

/// Records `dbias = alpha·Σ_{i,rows} dc[i] + beta·dbias`, one value per column of `dc`.
pub fn bias_grad(
    rec: &mut Recorder,
    dbias: BiasView,
    dc: View,
    batch: usize,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    check_operands(rec, &[("dbias", dbias.tensor), ("dC", dc.tensor)])?;
    super::check_f32(rec, OP, &[("dbias", dbias.tensor)])?;
    if dbias.tensor.buffer() == dc.tensor.buffer() {
        return Err(Error::Aliasing {
            op: OP,
            what: "dbias",
        });
    }
    if last_index(dbias.offset, &[(dc.cols, dbias.stride)]) >= dbias.tensor.numel() as u64 {
        return Err(shape_err(
            "dbias",
            "one value per column of dC inside the tensor",
            dbias.tensor,
        ));
    }
    if batch == 0 || dc.rows == 0 || dc.cols == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "dC",
            shape: vec![batch, dc.rows, dc.cols],
        });
    }
    dc.check("dC", batch)?;
    let u = |x: usize| x as u32;
    let p = Params {
        m: u(dc.rows),
        n: u(dc.cols),
        batch: u(batch),
        a_off: u(dc.offset),
        a_ms: u(dc.row_stride),
        a_ks: u(dc.col_stride),
        a_bs: u(dc.batch_stride),
        c_off: u(dbias.offset),
        c_ns: u(dbias.stride),
        alpha,
        beta,
        ..Params::default()
    };
    let pipeline = rec.context().pipeline_f16(
        &shaders::GEMM,
        "backward_bias",
        &[],
        &super::f16_aliases(&[("a_t", dc.tensor)]),
    );
    rec.hold(&[dbias.tensor, dc.tensor]);
    rec.dispatch(
        "gemm::backward_bias",
        &pipeline,
        bytemuck::bytes_of(&p),
        &[
            (1, dc.tensor.buffer().as_entire_binding()),
            (4, dbias.tensor.buffer().as_entire_binding()),
        ],
        groups(p.n, 64, 1, 1, 1),
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::GEMM);
