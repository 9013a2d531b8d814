//! GEMM forward and backward against an f64 CPU reference, the reference backward
//! against central finite differences, and every input error the op can report.

mod common;

use common::{assert_close, assert_close_f64, ctx, gemm_contexts, open, open_with, to_f64, Rng};
use rnn_wgpu::ops::gemm::{self, BiasView, Gemm, Grads, View};
use rnn_wgpu::{Context, ContextOptions, DType, Error, Recorder, Tensor};
use std::sync::OnceLock;

/// f32 sums of K products against an f64 reference: rounding grows with K.
const RTOL: f64 = 1e-5;
fn atol(k: usize) -> f64 {
    2e-6 * k as f64
}

#[derive(Clone, Copy, Debug)]
struct Case {
    /// 0: rank-2 operands; otherwise C is [batch, M, N].
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    a_batched: bool,
    b_batched: bool,
    bias: bool,
    alpha: f32,
    beta: f32,
}

impl Case {
    fn new(m: usize, n: usize, k: usize) -> Self {
        Self {
            batch: 0,
            m,
            n,
            k,
            ta: false,
            tb: false,
            a_batched: false,
            b_batched: false,
            bias: false,
            alpha: 1.0,
            beta: 0.0,
        }
    }
    fn t(self, ta: bool, tb: bool) -> Self {
        Self { ta, tb, ..self }
    }
    fn batched(self, batch: usize, a_batched: bool, b_batched: bool) -> Self {
        Self {
            batch,
            a_batched,
            b_batched,
            ..self
        }
    }
    fn scaled(self, alpha: f32, beta: f32, bias: bool) -> Self {
        Self {
            alpha,
            beta,
            bias,
            ..self
        }
    }
    fn nb(&self) -> usize {
        self.batch.max(1)
    }
    /// Stored shape of op(X) = [rows, cols]: transposed storage swaps them, and a
    /// batched operand leads with the batch.
    fn operand_shape(&self, rows: usize, cols: usize, trans: bool, batched: bool) -> Vec<usize> {
        let mat = if trans {
            vec![cols, rows]
        } else {
            vec![rows, cols]
        };
        if batched {
            [vec![self.batch], mat].concat()
        } else {
            mat
        }
    }
    fn a_shape(&self) -> Vec<usize> {
        self.operand_shape(self.m, self.k, self.ta, self.a_batched)
    }
    fn b_shape(&self) -> Vec<usize> {
        self.operand_shape(self.k, self.n, self.tb, self.b_batched)
    }
    fn c_shape(&self) -> Vec<usize> {
        if self.batch == 0 {
            vec![self.m, self.n]
        } else {
            vec![self.batch, self.m, self.n]
        }
    }
    fn gemm(&self) -> Gemm {
        Gemm {
            trans_a: self.ta,
            trans_b: self.tb,
            alpha: self.alpha,
            beta: self.beta,
        }
    }
    /// Index into A's storage of op(A)[bi, i, kk].
    fn ai(&self, bi: usize, i: usize, kk: usize) -> usize {
        let base = if self.a_batched {
            bi * self.m * self.k
        } else {
            0
        };
        base + if self.ta {
            kk * self.m + i
        } else {
            i * self.k + kk
        }
    }
    /// Index into B's storage of op(B)[bi, kk, j].
    fn bi(&self, bi: usize, kk: usize, j: usize) -> usize {
        let base = if self.b_batched {
            bi * self.k * self.n
        } else {
            0
        };
        base + if self.tb {
            j * self.k + kk
        } else {
            kk * self.n + j
        }
    }
}

/// C = alpha·op(A)·op(B) + beta·C0 + bias, in f64.
fn cpu_forward(c: &Case, a: &[f64], b: &[f64], bias: &[f64], c0: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; c.nb() * c.m * c.n];
    for bi in 0..c.nb() {
        for i in 0..c.m {
            for j in 0..c.n {
                let dot: f64 = (0..c.k)
                    .map(|kk| a[c.ai(bi, i, kk)] * b[c.bi(bi, kk, j)])
                    .sum();
                let o = (bi * c.m + i) * c.n + j;
                out[o] = c.alpha as f64 * dot
                    + c.beta as f64 * c0[o]
                    + if c.bias { bias[j] } else { 0.0 };
            }
        }
    }
    out
}

/// Gradients of Σ C·dC with respect to A, B and bias, in f64.
fn cpu_backward(c: &Case, a: &[f64], b: &[f64], dc: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut da, mut db, mut dbias) = (vec![0.0; a.len()], vec![0.0; b.len()], vec![0.0; c.n]);
    let alpha = c.alpha as f64;
    for bi in 0..c.nb() {
        for i in 0..c.m {
            for j in 0..c.n {
                let g = dc[(bi * c.m + i) * c.n + j];
                dbias[j] += g;
                for kk in 0..c.k {
                    da[c.ai(bi, i, kk)] += alpha * g * b[c.bi(bi, kk, j)];
                    db[c.bi(bi, kk, j)] += alpha * g * a[c.ai(bi, i, kk)];
                }
            }
        }
    }
    (da, db, dbias)
}

struct Data {
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Vec<f32>,
    c0: Vec<f32>,
    dc: Vec<f32>,
}

fn data(c: &Case, seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    Data {
        a: rng.vec(c.a_shape().iter().product()),
        b: rng.vec(c.b_shape().iter().product()),
        bias: rng.vec(c.n),
        c0: rng.vec(c.nb() * c.m * c.n),
        dc: rng.vec(c.nb() * c.m * c.n),
    }
}

/// [`gemm_contexts`] and a context that packs every GEMM without sharing A's
/// rows through subgroups, so that both packed kernels are checked where the
/// adapter has the subgroup one.
fn contexts() -> [&'static Context; 4] {
    static PLAIN: OnceLock<Context> = OnceLock::new();
    let [default, packed, unpacked] = gemm_contexts();
    let plain = PLAIN.get_or_init(|| {
        open_with(
            &ContextOptions::default()
                .with_gemm_packed(Some(true))
                .with_gemm_subgroups(Some(false)),
        )
    });
    assert!(!plain.gemm_subgroups());
    [default, packed, plain, unpacked]
}

/// Runs forward and backward on the GPU, with and without packed operands, and
/// checks both against the reference.
fn check(c: Case, seed: u64) {
    for ctx in contexts() {
        check_on(ctx, c, seed);
    }
}

fn check_on(ctx: &Context, c: Case, seed: u64) {
    let d = data(&c, seed);
    let what = format!("{c:?} (packed: {})", ctx.gemm_packs(c.m, c.n, c.k));
    let a = Tensor::from_slice(ctx, &c.a_shape(), &d.a).unwrap();
    let b = Tensor::from_slice(ctx, &c.b_shape(), &d.b).unwrap();
    let bias = Tensor::from_slice(ctx, &[c.n], &d.bias).unwrap();
    let out = Tensor::from_slice(ctx, &c.c_shape(), &d.c0).unwrap();
    let dc = Tensor::from_slice(ctx, &c.c_shape(), &d.dc).unwrap();
    let (da, db, dbias) = (
        Tensor::empty(ctx, &c.a_shape(), DType::F32).unwrap(),
        Tensor::empty(ctx, &c.b_shape(), DType::F32).unwrap(),
        Tensor::empty(ctx, &[c.n], DType::F32).unwrap(),
    );
    let mut rec = Recorder::new(ctx, "check");
    let saved = gemm::forward(&mut rec, &out, &a, &b, c.bias.then_some(&bias), c.gemm()).unwrap();
    let grads = Grads {
        a: Some(&da),
        b: Some(&db),
        bias: Some(&dbias),
        accumulate: false,
    };
    gemm::backward(&mut rec, grads, &dc, &saved).unwrap();
    rec.submit();

    let (a64, b64) = (to_f64(&d.a), to_f64(&d.b));
    let want = cpu_forward(&c, &a64, &b64, &to_f64(&d.bias), &to_f64(&d.c0));
    assert_close(
        &format!("C of {what}"),
        &out.to_vec().unwrap(),
        &want,
        RTOL,
        atol(c.k) + 1e-6,
    );
    let (wa, wb, wbias) = cpu_backward(&c, &a64, &b64, &to_f64(&d.dc));
    let rows = c.nb() * c.n.max(c.m);
    assert_close(
        &format!("dA of {what}"),
        &da.to_vec().unwrap(),
        &wa,
        RTOL,
        atol(c.n * c.nb()),
    );
    assert_close(
        &format!("dB of {what}"),
        &db.to_vec().unwrap(),
        &wb,
        RTOL,
        atol(rows),
    );
    assert_close(
        &format!("dbias of {what}"),
        &dbias.to_vec().unwrap(),
        &wbias,
        RTOL,
        atol(c.nb() * c.m),
    );
}

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

#[test]
fn odd_shapes_all_transposes() {
    for (i, (ta, tb)) in TRANSPOSES.into_iter().enumerate() {
        check(Case::new(1, 1, 1).t(ta, tb), 1 + i as u64);
        check(
            Case::new(37, 53, 19).t(ta, tb).scaled(0.5, 0.0, true),
            10 + i as u64,
        );
        check(
            Case::new(7, 3, 11).t(ta, tb).scaled(-1.25, 0.75, true),
            20 + i as u64,
        );
    }
    check(Case::new(130, 70, 260), 30);
    check(
        Case::new(130, 70, 260).t(true, true).scaled(1.0, 1.0, true),
        31,
    );
}

/// Shapes whose strides are multiples of 4 take the vec4 kernel; M = 37 and N = 520
/// leave partial blocks and span two workgroups along N.
#[test]
fn vec4_aligned_shapes_all_transposes() {
    for (i, (ta, tb)) in TRANSPOSES.into_iter().enumerate() {
        check(
            Case::new(36, 44, 20).t(ta, tb).scaled(0.5, 0.25, true),
            40 + i as u64,
        );
        check(
            Case::new(37, 520, 12).t(ta, tb).scaled(1.0, 0.0, true),
            50 + i as u64,
        );
    }
    // The 4H × H product of an LSTM step (H = 256) with a shorter K.
    check(Case::new(32, 1024, 64).scaled(1.0, 1.0, true), 60);
}

/// C of 1 to 4 rows with A's rows vec4-aligned along k takes the thin kernel: both
/// layouts of B, N spanning two workgroups and ending inside a block, batched and
/// shared operands, a K tail (one row needs no aligned row stride), and N ≤ 4,
/// computed as Cᵀ = Bᵀ·Aᵀ.
#[test]
fn thin_products() {
    for m in 1..=4 {
        for (i, tb) in [false, true].into_iter().enumerate() {
            let s = 100 + 10 * m as u64 + 4 * i as u64;
            check(
                Case::new(m, 520, 16).t(false, tb).scaled(0.5, 0.25, true),
                s,
            );
            check(
                Case::new(m, 44, 28).t(false, tb).batched(3, true, false),
                s + 1,
            );
            check(
                Case::new(m, 12, 8).t(false, tb).batched(2, false, true),
                s + 2,
            );
        }
        check(
            Case::new(37, m, 12).t(false, true).scaled(1.0, 1.0, true),
            150 + m as u64,
        );
    }
    check(Case::new(1, 20, 13).scaled(1.0, 0.0, true), 160);
    check(Case::new(1, 20, 13).t(false, true), 161);
}

/// The thin shapes above do run the thin kernel (where nothing is packed): both
/// forwards, and the gradient of A of the first, [3, 16] = dC·Bᵀ.
#[test]
fn thin_products_take_the_thin_kernel() {
    let ctx = open(Some(false));
    ctx.set_profiling(true);
    check_on(&ctx, Case::new(3, 520, 16).t(false, true), 170);
    check_on(&ctx, Case::new(37, 2, 12).t(false, true), 171);
    let profile = ctx.profile();
    let calls = |name: &str| {
        profile
            .kernels
            .iter()
            .find(|r| r.name == name)
            .map_or(0, |r| r.calls)
    };
    assert_eq!(calls("gemm::forward_thin"), 3, "{}", profile.table());
}

#[test]
fn batched_and_broadcast_operands() {
    for (i, (ta, tb)) in TRANSPOSES.into_iter().enumerate() {
        let s = 70 + 10 * i as u64;
        check(
            Case::new(13, 29, 7)
                .t(ta, tb)
                .batched(3, true, true)
                .scaled(1.5, 0.5, true),
            s,
        );
        // A shared weight across the batch: its gradient sums over the batch.
        check(
            Case::new(13, 29, 7)
                .t(ta, tb)
                .batched(3, true, false)
                .scaled(1.0, 0.0, true),
            s + 1,
        );
        check(
            Case::new(13, 29, 7).t(ta, tb).batched(3, false, true),
            s + 2,
        );
        check(
            Case::new(16, 24, 8)
                .t(ta, tb)
                .batched(3, false, true)
                .scaled(1.0, 0.0, true),
            s + 3,
        );
        check(Case::new(5, 6, 7).t(ta, tb).batched(2, false, false), s + 4);
    }
}

/// The reference backward, checked against central differences of the reference
/// forward in f64 (loss = Σ C·dC) for every transpose and broadcast combination.
#[test]
fn reference_backward_matches_finite_differences() {
    const H: f64 = 1e-6;
    for (i, (ta, tb)) in TRANSPOSES.into_iter().enumerate() {
        for c in [
            Case::new(3, 4, 5).t(ta, tb).scaled(0.7, 0.3, true),
            Case::new(3, 2, 4)
                .t(ta, tb)
                .batched(2, true, false)
                .scaled(1.3, 0.0, true),
            Case::new(2, 3, 3).t(ta, tb).batched(3, false, true),
        ] {
            let d = data(&c, 100 + i as u64);
            let (a, b, bias) = (to_f64(&d.a), to_f64(&d.b), to_f64(&d.bias));
            let (c0, dc) = (to_f64(&d.c0), to_f64(&d.dc));
            let loss = |a: &[f64], b: &[f64], bias: &[f64]| -> f64 {
                cpu_forward(&c, a, b, bias, &c0)
                    .iter()
                    .zip(&dc)
                    .map(|(x, g)| x * g)
                    .sum()
            };
            let (ga, gb, gbias) = cpu_backward(&c, &a, &b, &dc);
            let fd = |v: &mut Vec<f64>, which: usize| -> Vec<f64> {
                (0..v.len())
                    .map(|idx| {
                        let x = v[idx];
                        v[idx] = x + H;
                        let up = match which {
                            0 => loss(v, &b, &bias),
                            1 => loss(&a, v, &bias),
                            _ => loss(&a, &b, v),
                        };
                        v[idx] = x - H;
                        let down = match which {
                            0 => loss(v, &b, &bias),
                            1 => loss(&a, v, &bias),
                            _ => loss(&a, &b, v),
                        };
                        v[idx] = x;
                        (up - down) / (2.0 * H)
                    })
                    .collect()
            };
            let fa = fd(&mut a.clone(), 0);
            let fb = fd(&mut b.clone(), 1);
            let fbias = if c.bias {
                fd(&mut bias.clone(), 2)
            } else {
                gbias.clone()
            };
            assert_close_f64(&format!("dA {c:?}"), &ga, &fa, 1e-6);
            assert_close_f64(&format!("dB {c:?}"), &gb, &fb, 1e-6);
            assert_close_f64(&format!("dbias {c:?}"), &gbias, &fbias, 1e-6);
        }
    }
}

/// A view whose rows are longer than K: the vec4 and thin kernels' K loops end with
/// a tail of scalar steps (K = 18 = 4·4 + 2; M = 9, and M = 3 for the thin kernel),
/// and C is written into a slice of a larger tensor.
#[test]
fn strided_views_and_k_tail() {
    for ctx in contexts() {
        for m in [9, 3] {
            strided_views_and_k_tail_on(ctx, m);
        }
    }
}

fn strided_views_and_k_tail_on(ctx: &Context, m: usize) {
    let (n, k, lda, ldc) = (8, 18, 20, 12);
    let mut rng = Rng::new(200);
    let (mut a, b, bias) = (rng.vec(m * lda), rng.vec(k * n), rng.vec(n));
    // The columns past the view are NaN: a kernel or a pack that reads them, even
    // to multiply by zero, poisons C.
    for row in a.chunks_mut(lda) {
        row[k..].fill(f32::NAN);
    }
    let ta = Tensor::from_slice(ctx, &[m, lda], &a).unwrap();
    let tb = Tensor::from_slice(ctx, &[k, n], &b).unwrap();
    let tbias = Tensor::from_slice(ctx, &[n], &bias).unwrap();
    let tc = Tensor::zeros(ctx, &[m, ldc]).unwrap();
    let av = View {
        tensor: &ta,
        offset: 0,
        rows: m,
        cols: k,
        row_stride: lda,
        col_stride: 1,
        batch_stride: 0,
    };
    let bv = View::matrix(&tb, k, n, false);
    let cv = View {
        tensor: &tc,
        offset: 4,
        rows: m,
        cols: n,
        row_stride: ldc,
        col_stride: 1,
        batch_stride: 0,
    };
    let mut rec = Recorder::new(ctx, "views");
    gemm::forward_view(
        &mut rec,
        cv,
        av,
        bv,
        Some(BiasView::from(&tbias)),
        1,
        2.0,
        0.0,
    )
    .unwrap();
    rec.submit();
    let mut want = vec![0.0f64; m * ldc];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|kk| a[i * lda + kk] as f64 * b[kk * n + j] as f64)
                .sum();
            want[i * ldc + 4 + j] = 2.0 * dot + bias[j] as f64;
        }
    }
    assert_close("C in a slice", &tc.to_vec().unwrap(), &want, RTOL, atol(k));
}

/// On CPU adapters the default context packs big products into textures but not
/// thin ones (a decoding step at batch 1), where packing the weights costs as much
/// as the product; the forced contexts pack always or never.
#[test]
fn default_context_packs_only_products_that_fill_the_packed_block() {
    let [default, packed, unpacked] = gemm_contexts();
    let cpu = default.adapter_info().device_type == wgpu::DeviceType::Cpu;
    assert_eq!(default.gemm_packs(32, 1024, 256), cpu);
    assert_eq!(default.gemm_packs(1280, 9, 128), cpu);
    assert!(!default.gemm_packs(1, 1024, 256));
    assert!(!default.gemm_packs(1024, 7, 1024));
    assert!(!default.gemm_packs(16, 16, 16), "4,096 multiply-adds");
    assert!(packed.gemm_packs(1, 1, 1));
    assert!(!unpacked.gemm_packs(1024, 1024, 1024));
}

#[test]
fn beta_zero_never_reads_c() {
    let ctx = ctx();
    let a = Tensor::from_slice(ctx, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let b = Tensor::from_slice(ctx, &[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
    let c = Tensor::from_slice(ctx, &[2, 2], &[f32::NAN; 4]).unwrap();
    let mut rec = Recorder::new(ctx, "nan");
    gemm::forward(&mut rec, &c, &a, &b, None, Gemm::default()).unwrap();
    rec.submit();
    assert_eq!(c.to_vec().unwrap(), vec![4.0, 5.0, 10.0, 11.0]);
}

#[test]
fn backward_accumulates_when_asked() {
    let ctx = ctx();
    let c = Case::new(5, 6, 7)
        .batched(2, true, false)
        .scaled(1.0, 0.0, true);
    let d = data(&c, 300);
    let a = Tensor::from_slice(ctx, &c.a_shape(), &d.a).unwrap();
    let b = Tensor::from_slice(ctx, &c.b_shape(), &d.b).unwrap();
    let out = Tensor::empty(ctx, &c.c_shape(), DType::F32).unwrap();
    let dc = Tensor::from_slice(ctx, &c.c_shape(), &d.dc).unwrap();
    let db = Tensor::from_slice(ctx, &c.b_shape(), &vec![1.0; d.b.len()]).unwrap();
    let dbias = Tensor::from_slice(ctx, &[c.n], &vec![-2.0; c.n]).unwrap();
    let mut rec = Recorder::new(ctx, "acc");
    let saved = gemm::forward(&mut rec, &out, &a, &b, None, c.gemm()).unwrap();
    let grads = Grads {
        a: None,
        b: Some(&db),
        bias: Some(&dbias),
        accumulate: true,
    };
    gemm::backward(&mut rec, grads, &dc, &saved).unwrap();
    gemm::backward(&mut rec, grads, &dc, &saved).unwrap();
    rec.submit();
    let (_, wb, wbias) = cpu_backward(&c, &to_f64(&d.a), &to_f64(&d.b), &to_f64(&d.dc));
    let wb: Vec<f64> = wb.iter().map(|g| 1.0 + 2.0 * g).collect();
    let wbias: Vec<f64> = wbias.iter().map(|g| -2.0 + 2.0 * g).collect();
    assert_close("accumulated dB", &db.to_vec().unwrap(), &wb, RTOL, atol(20));
    assert_close(
        "accumulated dbias",
        &dbias.to_vec().unwrap(),
        &wbias,
        RTOL,
        atol(20),
    );
}

#[test]
fn bad_input_is_a_typed_error_and_records_nothing() {
    let ctx = ctx();
    let t = |shape: &[usize]| Tensor::zeros(ctx, shape).unwrap();
    let (a, b, c) = (t(&[4, 3]), t(&[3, 5]), t(&[4, 5]));
    let mut rec = Recorder::new(ctx, "errors");
    let g = Gemm::default();
    let err = gemm::forward(&mut rec, &c, &a, &t(&[4, 5]), None, g).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                what: "op(A)·op(B)",
                ..
            }
        ),
        "{err}"
    );
    let err = gemm::forward(&mut rec, &t(&[2, 4, 5]), &t(&[3, 4, 3]), &b, None, g).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { what: "A", .. }),
        "{err}"
    );
    let err = gemm::forward(&mut rec, &c, &a, &b, Some(&t(&[4])), g).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { what: "bias", .. }),
        "{err}"
    );
    let err = gemm::forward(&mut rec, &t(&[4, 0]), &a, &t(&[3, 0]), None, g).unwrap_err();
    assert!(matches!(err, Error::Empty { .. }), "{err}");
    let err = gemm::forward(&mut rec, &a, &a, &t(&[3, 3]), None, g).unwrap_err();
    assert!(matches!(err, Error::Aliasing { what: "A", .. }), "{err}");
    let ids = Tensor::empty(ctx, &[3, 5], DType::U32).unwrap();
    let err = gemm::forward(&mut rec, &c, &a, &ids, None, g).unwrap_err();
    assert!(matches!(err, Error::DType { what: "B", .. }), "{err}");
    if ctx.has_f16() {
        let half_bias = Tensor::empty(ctx, &[5], DType::F16).unwrap();
        let err = gemm::forward(&mut rec, &c, &a, &b, Some(&half_bias), g).unwrap_err();
        assert!(matches!(err, Error::DType { what: "bias", .. }), "{err}");
        let dc = View::matrix(&c, 4, 5, false);
        let err = gemm::bias_grad(&mut rec, (&half_bias).into(), dc, 1, 1.0, 0.0).unwrap_err();
        assert!(matches!(err, Error::DType { what: "dbias", .. }), "{err}");
    }
    // The error for A given as `av` in C [4, 5] = A [4, 3] · B [3, 5].
    let a_view_err = |rec: &mut Recorder, av: View| {
        let (cv, bv) = (View::matrix(&c, 4, 5, false), View::matrix(&b, 3, 5, false));
        gemm::forward_view(rec, cv, av, bv, None, 1, 1.0, 0.0).unwrap_err()
    };
    let long = View {
        offset: 1,
        ..View::matrix(&a, 4, 3, false)
    };
    let err = a_view_err(&mut rec, long);
    assert!(
        matches!(
            err,
            Error::ViewOutOfBounds {
                what: "A",
                last: 12,
                len: 12,
                ..
            }
        ),
        "{err}"
    );
    // A stride so large that the last index would wrap around in 32 or 64 bits.
    let wrapping = View {
        row_stride: usize::MAX / 2,
        ..View::matrix(&a, 4, 3, false)
    };
    let err = a_view_err(&mut rec, wrapping);
    assert!(
        matches!(err, Error::ViewOutOfBounds { what: "A", .. }),
        "{err}"
    );
    let saved = gemm::forward(&mut rec, &c, &a, &b, None, g).unwrap();
    let err = gemm::backward(&mut rec, Grads::default(), &t(&[5, 4]), &saved).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { what: "dC", .. }),
        "{err}"
    );
    let err = gemm::backward(
        &mut rec,
        Grads {
            a: Some(&t(&[3, 4])),
            ..Grads::default()
        },
        &c,
        &saved,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { what: "dA", .. }),
        "{err}"
    );
    assert_eq!(rec.dispatches(), 1, "only the valid forward was recorded");

    let other = rnn_wgpu::Context::new().unwrap();
    let foreign = Tensor::zeros(&other, &[3, 5]).unwrap();
    let err = gemm::forward(&mut rec, &c, &a, &foreign, None, g).unwrap_err();
    assert!(matches!(err, Error::DeviceMismatch { .. }), "{err}");
}

/// A training-shaped step (forward and backward) repeated: after the
/// first step every buffer comes from the pool.
/// Products recorded one after another in one submit, each packing its operands
/// into scratch textures: a later product packs into the textures an earlier one
/// is done with (smaller operands into larger textures), and every product still
/// gets its own numbers. Each product's A is the previous product's C, so a
/// packing that landed before an earlier read would show.
#[test]
fn products_of_one_submit_share_their_scratch_textures() {
    let ctx = open(Some(true));
    let mut rng = Rng::new(410);
    let m = 40;
    // (K, N) of each product: K is the previous N.
    let dims = [(44, 36), (36, 20), (20, 36), (36, 12)];
    let a0 = rng.vec(m * 44);
    let mut tensors = vec![Tensor::from_slice(&ctx, &[m, 44], &a0).unwrap()];
    let mut bs = vec![];
    for &(k, n) in &dims {
        let b = rng.vec(k * n);
        bs.push((Tensor::from_slice(&ctx, &[k, n], &b).unwrap(), b));
        tensors.push(Tensor::empty(&ctx, &[m, n], DType::F32).unwrap());
    }
    ctx.wait().unwrap();
    ctx.reset_pool_peak();
    let before = ctx.pool_stats().live_bytes;
    let mut rec = Recorder::new(&ctx, "chain");
    for (i, &(k, n)) in dims.iter().enumerate() {
        gemm::matmul(
            &mut rec,
            View::matrix(&tensors[i + 1], m, n, false),
            View::matrix(&tensors[i], m, k, false),
            View::matrix(&bs[i].0, k, n, false),
        )
        .unwrap();
    }
    // The first product's two textures ([K/4, rows, 2 layers] of 16-byte texels)
    // serve all four; with a texture per operand the rest would add 50 KiB.
    let texel = |k: usize, rows: usize| (k.div_ceil(4) * rows * 2 * 16) as u64;
    let first = texel(44, m) + texel(44, 36);
    let grown = ctx.pool_stats().peak_live_bytes - before;
    assert!(
        grown < first + 8 * 1024,
        "{grown} bytes in use for the chain; its first product's textures take {first}"
    );
    // Part of the peak is those textures, on loan until the submit.
    let s = ctx.pool_stats();
    assert!(
        s.peak_texture_bytes > 0
            && s.peak_texture_bytes <= grown
            && s.live_texture_bytes == s.peak_texture_bytes,
        "{s:?}: the textures of the chain should be part of its {grown} bytes"
    );
    rec.submit();
    let mut a_host = to_f64(&a0);
    for (i, &(k, n)) in dims.iter().enumerate() {
        let b = &bs[i].1;
        let want: Vec<f64> = (0..m * n)
            .map(|e| {
                (0..k)
                    .map(|l| a_host[e / n * k + l] * b[l * n + e % n] as f64)
                    .sum()
            })
            .collect();
        let got = tensors[i + 1].to_vec().unwrap();
        assert_close(&format!("product {i}"), &got, &want, 1e-4, 1e-4);
        a_host = to_f64(&got);
    }
    assert_eq!(
        ctx.pool_stats().live_texture_bytes,
        0,
        "textures back after the submit"
    );
}

/// Products whose packed operands would exceed the packing budget (4 MiB of
/// texels each) are computed in parts along K (accumulated in C, bias once),
/// along M or along N, forward and backward; every part matches the reference.
#[test]
fn products_too_large_to_pack_at_once_are_computed_in_parts() {
    let cases = [
        // Along K (A: 520 rows of 1,025 texels), beta and bias on the first part only.
        Case::new(520, 40, 4100).scaled(0.7, 0.5, true),
        Case::new(520, 40, 4100)
            .t(true, true)
            .scaled(1.0, 0.0, true),
        // Batched A along K.
        Case::new(300, 24, 2000)
            .batched(2, true, false)
            .scaled(1.0, 0.3, true),
        // Along M and along N: K too short to cut.
        Case::new(9000, 24, 120).scaled(1.0, 0.5, true),
        Case::new(20, 9000, 120)
            .t(false, true)
            .scaled(0.5, 0.0, true),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        for ctx in contexts() {
            check_on(ctx, c, 700 + i as u64);
        }
    }
}

/// A product cut along K holds one part's textures, not its whole operands:
/// packed at once, this one's A alone would take 32 MiB.
#[test]
fn a_product_cut_in_parts_holds_one_parts_textures() {
    let ctx = open(Some(true));
    let (m, n, k) = (512, 32, 16384);
    let mut rng = Rng::new(77);
    let a = Tensor::from_slice(&ctx, &[m, k], &rng.vec(m * k)).unwrap();
    let b = Tensor::from_slice(&ctx, &[k, n], &rng.vec(k * n)).unwrap();
    let c = Tensor::empty(&ctx, &[m, n], DType::F32).unwrap();
    ctx.wait().unwrap();
    ctx.reset_pool_peak();
    let before = ctx.pool_stats().live_bytes;
    let mut rec = Recorder::new(&ctx, "parts");
    gemm::matmul(
        &mut rec,
        View::matrix(&c, m, n, false),
        View::matrix(&a, m, k, false),
        View::matrix(&b, k, n, false),
    )
    .unwrap();
    let grown = ctx.pool_stats().peak_live_bytes - before;
    rec.submit();
    let whole_a = (m * k / 4 * 16) as u64;
    assert!(
        grown < 8 << 20,
        "{grown} bytes in use for the product; A packed whole takes {whole_a}"
    );
}

#[test]
fn steady_state_steps_create_no_buffers() {
    // Contexts of its own: other tests allocate on the shared ones concurrently.
    for packed in [None, Some(true), Some(false)] {
        steady_state_on(&open(packed));
    }
}

fn steady_state_on(ctx: &Context) {
    let mut rng = Rng::new(400);
    let x = Tensor::from_slice(ctx, &[3, 16, 12], &rng.vec(3 * 16 * 12)).unwrap();
    let w = Tensor::from_slice(ctx, &[12, 20], &rng.vec(12 * 20)).unwrap();
    let step = || {
        let y = Tensor::empty(ctx, &[3, 16, 20], DType::F32).unwrap();
        let dw = Tensor::empty(ctx, &[12, 20], DType::F32).unwrap();
        let mut rec = Recorder::new(ctx, "step");
        let saved = gemm::forward(&mut rec, &y, &x, &w, None, Gemm::default()).unwrap();
        gemm::backward(
            &mut rec,
            Grads {
                b: Some(&dw),
                ..Grads::default()
            },
            &y,
            &saved,
        )
        .unwrap();
        rec.submit();
        dw.to_vec().unwrap()
    };
    step();
    let after_first = ctx.pool_stats().created;
    for _ in 0..3 {
        step();
    }
    assert_eq!(ctx.pool_stats().created, after_first);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Random shapes (1 included), transposes, batches (none, 1, several; shared
    /// or batched operands), scales and bias on every GEMM path.
    #[test]
    fn random_products_match_the_reference(
        m in 1usize..40, n in 1usize..40, k in 1usize..40, batch in 0usize..4,
        ta: bool, tb: bool, a_batched: bool, b_batched: bool, bias: bool,
        alpha in proptest::sample::select(vec![1.0f32, 0.5, -2.0]),
        beta in proptest::sample::select(vec![0.0f32, 1.0, 0.25]),
        seed in 0u64..1_000_000,
    ) {
        let case = Case::new(m, n, k)
            .t(ta, tb)
            .batched(batch, a_batched && batch > 0, b_batched && batch > 0)
            .scaled(alpha, beta, bias);
        check(case, seed);
    }
}

/// Rounds to the nearest f16, as f16 storage holds a value.
fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// A tensor of `data` stored as `dtype`.
fn stored(ctx: &Context, shape: &[usize], data: &[f32], dtype: DType) -> Tensor {
    let t = Tensor::empty(ctx, shape, dtype).unwrap();
    t.write(data).unwrap();
    t
}

/// f16 storage for each of A, B and C alone and for all three, on every kernel
/// (plain, vec4, thin, packed; transposed, batched, K tails, beta reading an f16
/// C), against the f64 product of the values as stored; an f16 C is the f32 sum
/// rounded once.
/// Adapters without SHADER_F16 refuse an f16 tensor with a typed error.
#[test]
fn f16_storage_operands_on_every_kernel() {
    if !ctx().has_f16() {
        let err = Tensor::empty(ctx(), &[4], DType::F16).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FeatureMissing {
                    feature: "SHADER_F16",
                    ..
                }
            ),
            "{err}"
        );
        return;
    }
    let cases = [
        Case::new(37, 29, 13).t(true, false).scaled(0.5, 0.25, true),
        Case::new(36, 44, 20).t(false, true).scaled(1.0, 1.0, false),
        Case::new(32, 1024, 64).scaled(1.0, 0.0, true),
        Case::new(3, 520, 16).scaled(1.0, 0.5, true),
        Case::new(1, 20, 13).t(false, true),
        Case::new(12, 16, 40)
            .batched(3, true, false)
            .scaled(1.0, 0.0, true),
    ];
    // The default context is one of the other two.
    for ctx in &gemm_contexts()[1..] {
        for (i, c) in cases.into_iter().enumerate() {
            for bits in [1, 2, 4, 7] {
                let dt = |bit: u32| {
                    if bits & bit != 0 {
                        DType::F16
                    } else {
                        DType::F32
                    }
                };
                let (ad, bd, cd) = (dt(1), dt(2), dt(4));
                let d = data(&c, 700 + i as u64);
                let round = |v: &[f32], dtype| {
                    if dtype == DType::F16 {
                        round_f16(v)
                    } else {
                        v.to_vec()
                    }
                };
                let (a, b, c0) = (round(&d.a, ad), round(&d.b, bd), round(&d.c0, cd));
                let out = stored(ctx, &c.c_shape(), &c0, cd);
                let mut rec = Recorder::new(ctx, "f16");
                let bias = Tensor::from_slice(ctx, &[c.n], &d.bias).unwrap();
                gemm::forward(
                    &mut rec,
                    &out,
                    &stored(ctx, &c.a_shape(), &a, ad),
                    &stored(ctx, &c.b_shape(), &b, bd),
                    c.bias.then_some(&bias),
                    c.gemm(),
                )
                .unwrap();
                rec.submit();
                let want =
                    cpu_forward(&c, &to_f64(&a), &to_f64(&b), &to_f64(&d.bias), &to_f64(&c0));
                // An f16 C adds one rounding of at most half an f16 ulp (2⁻¹¹ relative).
                let rtol = if cd == DType::F16 { 1e-3 } else { RTOL };
                assert_close(
                    &format!(
                        "C of {c:?}, A {ad:?} B {bd:?} C {cd:?} (packed: {})",
                        ctx.gemm_packs(c.m, c.n, c.k)
                    ),
                    &out.to_vec().unwrap(),
                    &want,
                    rtol,
                    atol(c.k) + 1e-6,
                );
            }
        }
    }
}
