//! Users' own kernels: a WGSL shader through the library's pipeline cache,
//! operand holds, profiler and tape. Checked against f64 references and central
//! differences (the public gradcheck); every bad launch is a typed error with
//! nothing recorded.

mod common;

use common::{assert_close, ctx, Rng};
use rnn_wgpu::nn::Param;
use rnn_wgpu::tape::{CustomOp, GradCheck, Saved};
use rnn_wgpu::{DType, Error, Kernel, KernelProblem, Recorder, Result, Tape, Tensor, Var};

const GELU_WGSL: &str = include_str!("../examples/custom_op/gelu.wgsl");

/// f32 kernels against f64 references.
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;
/// GELU's gradient where tanh saturates in f32 (|u| ≳ 8): 1 − t² has no
/// digits left there, so the kernel gives 0 where f64 has up to ~2e-6.
const GELU_ATOL: f64 = 1e-5;

const K: f64 = 0.797_884_560_802_865_4;
const C: f64 = 0.044_715;

fn gelu_ref(x: f64) -> f64 {
    0.5 * x * (1.0 + (K * (x + C * x * x * x)).tanh())
}

fn gelu_grad_ref(x: f64) -> f64 {
    let t = (K * (x + C * x * x * x)).tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * K * (1.0 + 3.0 * C * x * x)
}

fn gelu() -> Kernel {
    Kernel::new("gelu", GELU_WGSL).unwrap()
}

/// GELU as a tape op: the example's kernel with its backward.
#[derive(Clone)]
struct Gelu {
    kernel: Kernel,
    /// A wrong backward (the mutation the gradcheck must catch): half the gradient.
    broken: bool,
}

impl CustomOp for Gelu {
    fn name(&self) -> &str {
        "gelu"
    }

    fn forward(&self, rec: &mut Recorder, x: &[&Tensor]) -> Result<Vec<Tensor>> {
        let y = rec.empty(x[0].shape(), DType::F32)?;
        self.kernel
            .launch("forward")
            .bind("x", x[0])
            .bind("y", &y)
            .cover([x[0].numel(), 1, 1])
            .record(rec)?;
        Ok(vec![y])
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        saved: &Saved,
        dy: &[Tensor],
    ) -> Result<Vec<Option<Tensor>>> {
        let x = &saved.inputs()[0];
        let dx = rec.empty(x.shape(), DType::F32)?;
        self.kernel
            .launch("backward")
            .bind("x", x)
            .bind("dy", &dy[0])
            .bind("dx", &dx)
            .cover([x.numel(), 1, 1])
            .record(rec)?;
        if self.broken {
            return Ok(vec![Some(rnn_wgpu::ops::elementwise::scale(
                rec, &dx, 0.5,
            )?)]);
        }
        Ok(vec![Some(dx)])
    }
}

#[test]
fn a_user_kernel_matches_its_reference() {
    let ctx = ctx();
    let k = gelu();
    assert_eq!(k.entry_points(), ["forward", "backward"]);
    assert_eq!(k.workgroup_size("forward"), Some([64, 1, 1]));
    assert_eq!(k.params_size(), None);
    // 1000 values over [-8, 8): past both ends of the clamp, and a tail
    // workgroup that is mostly past the end.
    let mut rng = Rng::new(11);
    let x: Vec<f32> = rng.vec(1000).iter().map(|v| 8.0 * v).collect();
    let dy = rng.vec(1000);
    let xt = Tensor::from_slice(ctx, &[10, 100], &x).unwrap();
    let dyt = Tensor::from_slice(ctx, &[10, 100], &dy).unwrap();
    let y = Tensor::empty(ctx, &[10, 100], DType::F32).unwrap();
    let dx = Tensor::empty(ctx, &[10, 100], DType::F32).unwrap();
    let mut rec = Recorder::new(ctx, "gelu");
    k.launch("forward")
        .bind("x", &xt)
        .bind("y", &y)
        .cover([1000, 1, 1])
        .record(&mut rec)
        .unwrap();
    k.launch("backward")
        .bind("x", &xt)
        .bind("dy", &dyt)
        .bind("dx", &dx)
        .cover([1000, 1, 1])
        .record(&mut rec)
        .unwrap();
    assert_eq!(rec.dispatches(), 2);
    rec.submit();
    let want: Vec<f64> = x.iter().map(|&v| gelu_ref(v.into())).collect();
    assert_close("gelu forward", &y.to_vec().unwrap(), &want, RTOL, ATOL);
    let want: Vec<f64> = x
        .iter()
        .zip(&dy)
        .map(|(&v, &d)| gelu_grad_ref(v.into()) * f64::from(d))
        .collect();
    assert_close(
        "gelu backward",
        &dx.to_vec().unwrap(),
        &want,
        RTOL,
        GELU_ATOL,
    );
}

/// An input dropped before the submit goes back to the pool only after it: a
/// new upload meanwhile takes another buffer, so its queue write (which lands
/// before the submit) cannot overwrite what the kernel reads.
#[test]
fn an_operand_dropped_before_the_submit_is_held_until_it() {
    let ctx = ctx();
    let k = gelu();
    for round in 0..4 {
        let x = Tensor::from_slice(ctx, &[1], &[1.0]).unwrap();
        let y = Tensor::empty(ctx, &[1], DType::F32).unwrap();
        let mut rec = Recorder::new(ctx, "held");
        k.launch("forward")
            .bind("x", &x)
            .bind("y", &y)
            .cover([1, 1, 1])
            .record(&mut rec)
            .unwrap();
        drop(x);
        let other = Tensor::from_slice(ctx, &[1], &[-3.0]).unwrap();
        rec.submit();
        let got = y.to_vec().unwrap()[0];
        assert!(
            (f64::from(got) - gelu_ref(1.0)).abs() < 1e-6,
            "round {round}: GELU(1) gave {got} (GELU(-3) is {}): the input's buffer was reused \
             before the submit",
            gelu_ref(-3.0)
        );
        drop(other);
    }
}

/// y = a·x + b over the first n elements, with its parameters in a uniform.
const AXPB: &str = "
struct Params {
    n: u32,
    a: f32,
    b: f32,
    _pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(32, 2)
fn run(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + 32u * id.y;
    if (i < p.n) {
        y[i] = p.a * x[i] + p.b;
    }
}
";

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Axpb {
    n: u32,
    a: f32,
    b: f32,
    _pad: u32,
}

#[test]
fn parameters_come_from_a_pod_struct_of_the_shaders_size() {
    let ctx = ctx();
    let k = Kernel::new("axpb", AXPB).unwrap();
    assert_eq!(k.params_size(), Some(16));
    let x = Tensor::from_slice(ctx, &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let y = Tensor::from_slice(ctx, &[5], &[9.0; 5]).unwrap();
    let mut rec = Recorder::new(ctx, "axpb");
    let p = Axpb {
        n: 3,
        a: 2.0,
        b: -1.0,
        _pad: 0,
    };
    k.launch("run")
        .params(&p)
        .bind("x", &x)
        .bind("y", &y)
        .groups([1, 1, 1])
        .record(&mut rec)
        .unwrap();
    assert_eq!(rec.submit_read(&y).unwrap(), [1.0, 3.0, 5.0, 9.0, 9.0]);

    // A struct of one word.
    let k = Kernel::new("count", COUNT).unwrap();
    assert_eq!(k.params_size(), Some(4));
    let mut rec = Recorder::new(ctx, "count");
    k.launch("fill")
        .params(&3u32)
        .bind("y", &y)
        .cover([5, 1, 1])
        .record(&mut rec)
        .unwrap();
    assert_eq!(rec.submit_read(&y).unwrap(), [0.0, 1.0, 2.0, 9.0, 9.0]);
}

/// y[i] = i for the first p.n elements: parameters of 4 bytes.
const COUNT: &str = "
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn fill(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < p.n) { y[id.x] = f32(id.x); }
}
";

/// f16 storage through a storage alias, as the library's kernels have it: one
/// source, the f16 variant compiled where an f16 tensor is bound.
#[test]
fn a_storage_alias_takes_f16_tensors() {
    let ctx = ctx();
    let source = "
alias x_t = f32;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn square(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&y)) {
        let v = f32(x[id.x]);
        y[id.x] = v * v;
    }
}
";
    let k = Kernel::new("square", source).unwrap();
    let data = [0.5f32, -1.5, 2.0, 3.25, -0.125, 7.0];
    let y = Tensor::empty(ctx, &[6], DType::F32).unwrap();
    for dtype in [DType::F32, DType::F16] {
        let x = match dtype {
            DType::F16 if !ctx.has_f16() => {
                assert!(matches!(
                    Tensor::empty(ctx, &[6], DType::F16),
                    Err(Error::FeatureMissing { .. })
                ));
                continue;
            }
            DType::F16 => {
                let h: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
                Tensor::from_f16(ctx, &[6], &h).unwrap()
            }
            _ => Tensor::from_slice(ctx, &[6], &data).unwrap(),
        };
        let mut rec = Recorder::new(ctx, "square");
        k.launch("square")
            .bind("x", &x)
            .bind("y", &y)
            .cover([6, 1, 1])
            .record(&mut rec)
            .unwrap();
        let got = rec.submit_read(&y).unwrap();
        let want: Vec<f32> = data.iter().map(|v| v * v).collect();
        assert_eq!(got, want, "{dtype:?}");
    }
}

/// A WGSL error names its line and column; so does a binding the library
/// cannot bind.
#[test]
fn wgsl_errors_name_their_line_and_column() {
    let cases = [
        (
            "a missing semicolon",
            "@group(0) @binding(1) var<storage, read> x: array<f32>;\n\
             @compute @workgroup_size(64)\n\
             fn main() { let v = x[0] }\n",
            3,
        ),
        (
            "a type error",
            "@group(0) @binding(1) var<storage, read_write> x: array<f32>;\n\
             @compute @workgroup_size(64)\n\
             fn main() {\n    x[0] = 1u;\n}\n",
            4,
        ),
        (
            "a binding outside group 0",
            "@group(1) @binding(1) var<storage, read> x: array<f32>;\n\
             @compute @workgroup_size(1) fn main() { _ = x[0]; }\n",
            1,
        ),
        (
            "a storage buffer at binding 0",
            "\n@group(0) @binding(0) var<storage, read> x: array<f32>;\n\
             @compute @workgroup_size(1) fn main() { _ = x[0]; }\n",
            2,
        ),
    ];
    for (what, source, line) in cases {
        match Kernel::new("bad", source) {
            Err(Error::Shader {
                kernel,
                line: got,
                column,
                message,
                ..
            }) => {
                assert_eq!(kernel, "bad");
                assert_eq!(got, line, "{what}: {message}");
                assert!(column > 0, "{what}: column {column}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let no_entry = "@group(0) @binding(1) var<storage, read> x: array<f32>;\n";
    assert!(matches!(
        Kernel::new("none", no_entry),
        Err(Error::Shader { .. })
    ));
}

/// Every bad launch is a typed error, and nothing is recorded: the recorder
/// goes on to record a good launch.
#[test]
fn bad_launches_are_typed_errors_with_nothing_recorded() {
    let ctx = ctx();
    let k = gelu();
    let axpb = Kernel::new("axpb", AXPB).unwrap();
    let other = common::open(None);
    let x = Tensor::from_slice(ctx, &[4], &[1.0; 4]).unwrap();
    let y = Tensor::empty(ctx, &[4], DType::F32).unwrap();
    let ids = Tensor::from_u32(ctx, &[4], &[1; 4]).unwrap();
    let foreign = Tensor::from_slice(&other, &[4], &[1.0; 4]).unwrap();
    let empty = Tensor::empty(ctx, &[0], DType::F32).unwrap();
    let x_view = x.reshape(&[2, 2]).unwrap();
    let max = ctx.limits().max_compute_workgroups_per_dimension;
    let problem = |e: Error| match e {
        Error::Kernel { problem, .. } => problem,
        other => panic!("not a kernel problem: {other:?}"),
    };
    let mut rec = Recorder::new(ctx, "bad");
    let fwd = || k.launch("forward");
    let cases: Vec<(&str, Result<()>)> = vec![
        (
            "undeclared binding",
            fwd()
                .bind("x", &x)
                .bind("z", &y)
                .cover([4, 1, 1])
                .record(&mut rec),
        ),
        (
            "unbound binding",
            fwd().bind("x", &x).cover([4, 1, 1]).record(&mut rec),
        ),
        (
            "another context's tensor",
            fwd()
                .bind("x", &foreign)
                .bind("y", &y)
                .cover([4, 1, 1])
                .record(&mut rec),
        ),
        (
            "writable aliasing",
            fwd()
                .bind("x", &x)
                .bind("y", &x_view)
                .cover([4, 1, 1])
                .record(&mut rec),
        ),
        (
            "workgroups past the limit",
            fwd()
                .bind("x", &x)
                .bind("y", &y)
                .groups([max + 1, 1, 1])
                .record(&mut rec),
        ),
        (
            "invocations past the limit",
            fwd()
                .bind("x", &x)
                .bind("y", &y)
                .cover([64 * (max as usize + 1), 1, 1])
                .record(&mut rec),
        ),
        (
            "parameters of the wrong size",
            axpb.launch("run")
                .params(&[1u32, 2, 3])
                .bind("x", &x)
                .bind("y", &y)
                .groups([1, 1, 1])
                .record(&mut rec),
        ),
        (
            "no parameters where the shader has them",
            axpb.launch("run")
                .bind("x", &x)
                .bind("y", &y)
                .groups([1, 1, 1])
                .record(&mut rec),
        ),
        (
            "parameters where the shader has none",
            fwd()
                .params(&[1u32; 4])
                .bind("x", &x)
                .bind("y", &y)
                .cover([4, 1, 1])
                .record(&mut rec),
        ),
        (
            "a u32 tensor for an f32 array",
            fwd()
                .bind("x", &ids)
                .bind("y", &y)
                .cover([4, 1, 1])
                .record(&mut rec),
        ),
        (
            "an unknown entry point",
            k.launch("sideways")
                .bind("x", &x)
                .bind("y", &y)
                .cover([4, 1, 1])
                .record(&mut rec),
        ),
        (
            "no workgroup count",
            fwd().bind("x", &x).bind("y", &y).record(&mut rec),
        ),
        (
            "an empty tensor",
            fwd()
                .bind("x", &empty)
                .bind("y", &y)
                .cover([4, 1, 1])
                .record(&mut rec),
        ),
        (
            "a name bound twice",
            fwd()
                .bind("x", &x)
                .bind("x", &x)
                .bind("y", &y)
                .cover([4, 1, 1])
                .record(&mut rec),
        ),
    ];
    let mut errors = vec![];
    for (what, result) in cases {
        let e = result.expect_err(what);
        assert_eq!(rec.dispatches(), 0, "{what}: recorded a dispatch");
        errors.push((what, e));
    }
    let mut errors = errors.into_iter();
    let mut next = || errors.next().unwrap().1;
    assert!(matches!(
        problem(next()),
        KernelProblem::UndeclaredBinding { name, .. } if name == "z"
    ));
    assert!(matches!(
        problem(next()),
        KernelProblem::UnboundBinding { name, .. } if name == "y"
    ));
    assert!(matches!(next(), Error::DeviceMismatch { op: "kernel" }));
    assert!(matches!(
        problem(next()),
        KernelProblem::Aliasing { writable, other } if writable == "y" && other == "x"
    ));
    for _ in 0..2 {
        assert!(matches!(
            next(),
            Error::LimitExceeded { op: "kernel", value, limit, .. }
                if value == u64::from(max) + 1 && limit == u64::from(max)
        ));
    }
    assert_eq!(
        problem(next()),
        KernelProblem::ParamsSize {
            expected: 16,
            got: 12
        }
    );
    assert_eq!(
        problem(next()),
        KernelProblem::ParamsSize {
            expected: 16,
            got: 0
        }
    );
    assert_eq!(
        problem(next()),
        KernelProblem::ParamsSize {
            expected: 0,
            got: 16
        }
    );
    assert!(matches!(
        problem(next()),
        KernelProblem::ElementType { name, got: DType::U32, .. } if name == "x"
    ));
    assert!(matches!(
        problem(next()),
        KernelProblem::UnknownEntry { .. }
    ));
    assert_eq!(problem(next()), KernelProblem::NoGroups);
    assert!(matches!(problem(next()), KernelProblem::EmptyTensor { name } if name == "x"));
    assert!(matches!(problem(next()), KernelProblem::BoundTwice { name } if name == "x"));

    // Two read-only bindings of one buffer are fine; the recorder still works.
    let both = "
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&c)) { c[id.x] = a[id.x] + b[id.x]; }
}";
    let add = Kernel::new("add", both).unwrap();
    add.launch("add")
        .bind("a", &x)
        .bind("b", &x_view)
        .bind("c", &y)
        .cover([4, 1, 1])
        .record(&mut rec)
        .unwrap();
    assert_eq!(rec.dispatches(), 1);
    assert_eq!(rec.submit_read(&y).unwrap(), [2.0; 4]);
}

/// A workgroup past the device's limits is refused when launched (the kernel
/// itself is valid WGSL).
#[test]
fn workgroup_sizes_past_the_device_are_refused() {
    let ctx = ctx();
    let limit = ctx.limits().max_compute_invocations_per_workgroup;
    let source = format!(
        "@group(0) @binding(1) var<storage, read_write> y: array<f32>;\n\
         @compute @workgroup_size({})\n\
         fn big(@builtin(global_invocation_id) id: vec3<u32>) {{ y[id.x] = 1.0; }}\n",
        2 * limit
    );
    let k = Kernel::new("big", &source).unwrap();
    let y = Tensor::empty(ctx, &[4], DType::F32).unwrap();
    let mut rec = Recorder::new(ctx, "big");
    let e = k
        .launch("big")
        .bind("y", &y)
        .groups([1, 1, 1])
        .record(&mut rec)
        .unwrap_err();
    assert!(
        matches!(e, Error::LimitExceeded { op: "kernel", .. }),
        "{e}"
    );
    assert_eq!(rec.dispatches(), 0);
}

/// A user's kernel is timed like the library's: a row of the profile and a
/// slice of the trace under `name::entry`.
#[test]
fn user_kernels_are_in_the_profile_and_the_trace() {
    let ctx = common::open(None);
    if !ctx
        .features()
        .contains(rnn_wgpu::wgpu::Features::TIMESTAMP_QUERY)
    {
        eprintln!("no timestamps on this adapter: the profile counts whole submits");
    }
    ctx.set_profiling(true);
    let k = gelu();
    let x = Tensor::from_slice(&ctx, &[256], &[0.5; 256]).unwrap();
    let y = Tensor::empty(&ctx, &[256], DType::F32).unwrap();
    for _ in 0..3 {
        let mut rec = Recorder::new(&ctx, "profiled");
        k.launch("forward")
            .bind("x", &x)
            .bind("y", &y)
            .cover([256, 1, 1])
            .record(&mut rec)
            .unwrap();
        rec.submit();
    }
    ctx.wait().unwrap();
    let profile = ctx.profile();
    if ctx
        .features()
        .contains(rnn_wgpu::wgpu::Features::TIMESTAMP_QUERY)
    {
        let row = profile
            .kernels
            .iter()
            .find(|r| r.name == "gelu::forward")
            .unwrap_or_else(|| panic!("no gelu::forward in\n{profile}"));
        assert_eq!(row.calls, 3);
        assert!(profile.table().contains("gelu::forward"));
        let trace = ctx.trace_json();
        assert_eq!(
            trace.matches("\"name\":\"gelu::forward\"").count(),
            3,
            "{trace}"
        );
    } else {
        assert!(profile.kernels.iter().any(|r| r.name == "profiled"));
    }
}

/// GELU as a custom tape op: its gradients pass the public gradcheck (against
/// the device's own differences and against an f64 reference), and a wrong
/// backward fails both.
#[test]
fn a_custom_op_passes_gradcheck_and_a_wrong_backward_fails_it() {
    let ctx = ctx();
    let mut rng = Rng::new(5);
    let x = Tensor::from_slice(
        ctx,
        &[3, 7],
        &rng.vec(21).iter().map(|v| 3.0 * v).collect::<Vec<_>>(),
    )
    .unwrap();
    for broken in [false, true] {
        let op = Gelu {
            kernel: gelu(),
            broken,
        };
        let f = |tape: &mut Tape, v: &[Var]| -> Result<Var> {
            Ok(tape.custom(&op, &[&v[0]])?.remove(0))
        };
        let on_device = GradCheck::new().run(ctx, &[&x], f).unwrap();
        let reference = GradCheck::against_reference()
            .run_with_reference(ctx, &[&x], f, |v| {
                v[0].iter().map(|&a| gelu_ref(a)).collect()
            })
            .unwrap();
        assert_eq!(on_device.passed(), !broken, "{on_device}");
        assert_eq!(reference.passed(), !broken, "{reference}");
        assert!(
            reference.forward.is_some_and(|w| w.excess <= 0.0),
            "{reference}"
        );
    }
}

/// A highway gate as one kernel with three inputs and its backward:
/// y = s·h + (1 − s)·x with s = σ(g). Its gradients flow to all three, and a
/// parameter fed through the tape accumulates its gradient over backwards.
const HIGHWAY: &str = "
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dh: array<f32>;
@group(0) @binding(7) var<storage, read_write> dg: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;

fn gate(i: u32) -> f32 {
    return 1.0 / (1.0 + exp(-g[i]));
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < arrayLength(&y)) {
        let s = gate(i);
        y[i] = s * h[i] + (1.0 - s) * x[i];
    }
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < arrayLength(&dy)) {
        let s = gate(i);
        dh[i] = dy[i] * s;
        dx[i] = dy[i] * (1.0 - s);
        dg[i] = dy[i] * (h[i] - x[i]) * s * (1.0 - s);
    }
}
";

#[derive(Clone)]
struct Highway(Kernel);

impl CustomOp for Highway {
    fn name(&self) -> &str {
        "highway"
    }

    fn forward(&self, rec: &mut Recorder, v: &[&Tensor]) -> Result<Vec<Tensor>> {
        let y = rec.empty(v[0].shape(), DType::F32)?;
        self.0
            .launch("forward")
            .bind("h", v[0])
            .bind("g", v[1])
            .bind("x", v[2])
            .bind("y", &y)
            .cover([y.numel(), 1, 1])
            .record(rec)?;
        Ok(vec![y])
    }

    fn backward(&self, rec: &mut Recorder, s: &Saved, d: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let grads: Vec<Tensor> = (0..3)
            .map(|_| rec.empty(d[0].shape(), DType::F32))
            .collect::<Result<_>>()?;
        let v = s.inputs();
        self.0
            .launch("backward")
            .bind("h", &v[0])
            .bind("g", &v[1])
            .bind("x", &v[2])
            .bind("dy", &d[0])
            .bind("dh", &grads[0])
            .bind("dg", &grads[1])
            .bind("dx", &grads[2])
            .cover([d[0].numel(), 1, 1])
            .record(rec)?;
        Ok(grads
            .into_iter()
            .enumerate()
            .map(|(i, g)| s.needs_grad(i).then_some(g))
            .collect())
    }
}

#[test]
fn a_custom_op_of_three_inputs_and_a_parameter() {
    let ctx = ctx();
    let op = Highway(Kernel::new("highway", HIGHWAY).unwrap());
    let mut rng = Rng::new(8);
    let inputs: Vec<Tensor> = (0..3)
        .map(|_| Tensor::from_slice(ctx, &[4, 5], &rng.vec(20)).unwrap())
        .collect();
    let report = GradCheck::against_reference()
        .run_with_reference(
            ctx,
            &inputs.iter().collect::<Vec<_>>(),
            |tape, v| Ok(tape.custom(&op, &[&v[0], &v[1], &v[2]])?.remove(0)),
            |v| {
                (0..20)
                    .map(|i| {
                        let s = 1.0 / (1.0 + (-v[1][i]).exp());
                        s * v[0][i] + (1.0 - s) * v[2][i]
                    })
                    .collect()
            },
        )
        .unwrap();
    assert!(report.passed(), "{report}");

    // The gate as a parameter: two backwards add up in its gradient; the
    // constant x gets no gradient and needs none.
    let gate = Param::new(inputs[1].clone()).unwrap();
    let dy = rng.vec(20);
    let dyt = Tensor::from_slice(ctx, &[4, 5], &dy).unwrap();
    let mut once = vec![];
    for round in 0..2 {
        let mut tape = Tape::train(ctx, "highway");
        let h = tape.param(&Param::new(inputs[0].clone()).unwrap());
        let g = tape.param(&gate);
        let x = Var::constant(inputs[2].clone());
        let y = tape.custom(&op, &[&h, &g, &x]).unwrap().remove(0);
        tape.backward_with(&y, &dyt).unwrap();
        tape.into_recorder().submit();
        let grad = gate.grad.to_vec().unwrap();
        if round == 0 {
            once = grad;
        } else {
            let twice: Vec<f64> = once.iter().map(|&v| 2.0 * f64::from(v)).collect();
            assert_close("accumulated gate gradient", &grad, &twice, 1e-6, 1e-7);
        }
    }
    let (h, g, x) = (
        inputs[0].to_vec().unwrap(),
        inputs[1].to_vec().unwrap(),
        inputs[2].to_vec().unwrap(),
    );
    let want: Vec<f64> = (0..20)
        .map(|i| {
            let s = 1.0 / (1.0 + (-f64::from(g[i])).exp());
            f64::from(dy[i]) * f64::from(h[i] - x[i]) * s * (1.0 - s)
        })
        .collect();
    assert_close("gate gradient", &once, &want, RTOL, ATOL);
}

/// A backward that returns a gradient of the wrong shape is refused at the
/// replay, naming the op.
#[test]
fn a_custom_backward_of_the_wrong_shape_is_an_error() {
    #[derive(Clone)]
    struct Bad;
    impl CustomOp for Bad {
        fn name(&self) -> &str {
            "bad"
        }
        fn forward(&self, rec: &mut Recorder, x: &[&Tensor]) -> Result<Vec<Tensor>> {
            Ok(vec![rnn_wgpu::ops::elementwise::scale(rec, x[0], 2.0)?])
        }
        fn backward(
            &self,
            rec: &mut Recorder,
            _: &Saved,
            d: &[Tensor],
        ) -> Result<Vec<Option<Tensor>>> {
            let flat = d[0].reshape(&[d[0].numel()])?;
            Ok(vec![Some(rnn_wgpu::ops::elementwise::scale(
                rec, &flat, 2.0,
            )?)])
        }
    }
    let ctx = ctx();
    let p = Param::new(Tensor::from_slice(ctx, &[2, 3], &[1.0; 6]).unwrap()).unwrap();
    let mut tape = Tape::train(ctx, "bad");
    let x = tape.param(&p);
    let y = tape.custom(&Bad, &[&x]).unwrap().remove(0);
    let d = Tensor::from_slice(ctx, &[2, 3], &[1.0; 6]).unwrap();
    match tape.backward_with(&y, &d) {
        Err(Error::CustomOp { op, problem }) => {
            assert_eq!(op, "bad");
            assert!(problem.contains("input 0"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

/// A kernel compiles once per device and entry point: a second launch, or an
/// equal kernel made again, reuses the pipeline; another source compiles anew.
#[test]
fn a_kernel_compiles_once_per_device() {
    let ctx = common::open(None);
    let x = Tensor::from_slice(&ctx, &[8], &[0.5; 8]).unwrap();
    let y = Tensor::empty(&ctx, &[8], DType::F32).unwrap();
    let run = |k: &Kernel| {
        let mut rec = Recorder::new(&ctx, "once");
        k.launch("forward")
            .bind("x", &x)
            .bind("y", &y)
            .cover([8, 1, 1])
            .record(&mut rec)
            .unwrap();
        rec.submit();
    };
    let before = ctx.compile_stats().pipelines;
    run(&gelu());
    assert_eq!(ctx.compile_stats().pipelines, before + 1);
    run(&gelu());
    run(&gelu());
    assert_eq!(
        ctx.compile_stats().pipelines,
        before + 1,
        "an equal kernel compiled again"
    );
    let other = GELU_WGSL.replace("0.044715", "0.044716");
    run(&Kernel::new("gelu", &other).unwrap());
    assert_eq!(
        ctx.compile_stats().pipelines,
        before + 2,
        "another source shared a pipeline"
    );
}
