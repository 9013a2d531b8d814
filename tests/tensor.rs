//! Context, tensors and buffers: upload and readback, f16 storage, reshapes, size
//! limits, backend names, a device handed in by the application, and the
//! profiler.

mod common;

use common::{ctx, Rng};
use rnn_wgpu::gpu::parse_backends;
use rnn_wgpu::ops::cast;
use rnn_wgpu::ops::gemm::{self, Gemm};
use rnn_wgpu::{Context, DType, Error, Recorder, Tensor};

#[test]
fn f32_round_trip_is_exact() {
    let data = Rng::new(1).vec(1001);
    let t = Tensor::from_slice(ctx(), &[7, 11, 13], &data).unwrap();
    assert_eq!(t.shape(), &[7, 11, 13]);
    assert_eq!(t.to_vec().unwrap(), data);
}

#[test]
fn f16_storage_round_trips_or_says_the_feature_is_missing() {
    let data: Vec<f32> = Rng::new(2).vec(37); // odd count: the last write is padded
    let halves: Vec<half::f16> = data.iter().map(|&x| half::f16::from_f32(x)).collect();
    match Tensor::from_f16(ctx(), &[37], &halves) {
        Ok(t) => {
            assert!(ctx().has_f16());
            assert_eq!(t.dtype(), DType::F16);
            let back = t.to_vec().unwrap();
            let want: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
            assert_eq!(back, want);
            // Writing f32 data converts it to the tensor's f16 storage.
            t.write(&data).unwrap();
            assert_eq!(t.to_vec().unwrap(), want);
        }
        Err(e) => {
            assert!(
                !ctx().has_f16(),
                "f16 refused on an adapter that has it: {e}"
            );
            assert!(
                matches!(
                    e,
                    Error::FeatureMissing {
                        feature: "SHADER_F16",
                        ..
                    }
                ),
                "{e}"
            );
        }
    }
}

/// The cast op: f32 → f16 rounds to a neighbouring f16 (WGSL lets the device pick
/// which), f16 → f32 is exact, and ranges at odd f16 offsets copy and zero only
/// their own elements.
#[test]
fn cast_converts_copies_and_zeroes_ranges_of_f16_storage() {
    if !ctx().has_f16() {
        return assert!(Tensor::empty(ctx(), &[2], DType::F16).is_err());
    }
    let data: Vec<f32> = Rng::new(3)
        .vec(301)
        .iter()
        .map(|x| 70000.0 * x * x * x)
        .collect();
    let x = Tensor::from_slice(ctx(), &[301], &data).unwrap();
    let mut rec = Recorder::new(ctx(), "cast");
    let half = cast::to(&mut rec, &x, DType::F16).unwrap();
    let back = cast::to(&mut rec, &half, DType::F32).unwrap();
    // 5 f16 elements at an odd offset into an odd one, and 3 zeros at another.
    let part = Tensor::from_f16(ctx(), &[9], &[half::f16::from_f32(-1.0); 9]).unwrap();
    cast::copy_range(&mut rec, &part, 3, &half, 101, 5).unwrap();
    cast::zero_range(&mut rec, &part, 1, 1).unwrap();
    rec.submit();
    let got = half.to_vec().unwrap();
    for (i, (&g, &x)) in got.iter().zip(&data).enumerate() {
        let h = half::f16::from_f32(x);
        let (below, above) = if h.to_f32() <= x {
            (
                h,
                half::f16::from_bits(
                    h.to_bits()
                        .wrapping_add(if x >= 0.0 { 1 } else { u16::MAX }),
                ),
            )
        } else {
            (
                half::f16::from_bits(
                    h.to_bits()
                        .wrapping_sub(if x >= 0.0 { 1 } else { u16::MAX }),
                ),
                h,
            )
        };
        assert!(
            g == below.to_f32() || g == above.to_f32() || (x.abs() > 65504.0 && g.is_infinite()),
            "element {i}: {x} stored as {g}, neighbours {below} {above}"
        );
    }
    assert_eq!(back.to_vec().unwrap(), got, "f16 → f32 is exact");
    let mut want = vec![-1.0; 9];
    want[1] = 0.0;
    want[3..8].copy_from_slice(&got[101..106]);
    assert_eq!(part.to_vec().unwrap(), want);

    let mut rec = Recorder::new(ctx(), "cast errors");
    let err = cast::copy_range(&mut rec, &part, 5, &half, 0, 5).unwrap_err();
    assert!(
        matches!(err, Error::ViewOutOfBounds { what: "dst", .. }),
        "{err}"
    );
    let err = cast::zero_range(&mut rec, &part, 0, 10).unwrap_err();
    assert!(matches!(err, Error::ViewOutOfBounds { .. }), "{err}");
    let ids = Tensor::from_u32(ctx(), &[2], &[1, 2]).unwrap();
    let err = cast::to(&mut rec, &ids, DType::F16).unwrap_err();
    assert!(matches!(err, Error::DType { what: "x", .. }), "{err}");
    let err = cast::copy_range(&mut rec, &half, 0, &half, 1, 4).unwrap_err();
    assert!(matches!(err, Error::Aliasing { .. }), "{err}");
    assert_eq!(rec.dispatches(), 0);
}

/// u32 tensors read back exactly, past the 2²⁴ where f32 stops holding every
/// integer; asking a float tensor for u32s is a dtype error.
#[test]
fn u32_round_trip_is_exact() {
    let ctx = ctx();
    let data = [0, 1, (1 << 24) + 1, 123_456_789, u32::MAX];
    let t = Tensor::from_u32(ctx, &[5], &data).unwrap();
    assert_eq!(t.to_vec_u32().unwrap(), data);
    assert_ne!(
        t.to_vec().unwrap()[2] as u32,
        data[2],
        "f32 rounds 2^24 + 1"
    );
    let f = Tensor::zeros(ctx, &[2]).unwrap();
    assert!(matches!(f.to_vec_u32(), Err(Error::DType { .. })));
}

#[test]
fn read_async_resolves_after_the_device_is_polled() {
    let t = Tensor::from_slice(ctx(), &[3], &[1.0, 2.0, 3.0]).unwrap();
    let pending = t.read_async().unwrap();
    ctx().wait().unwrap();
    assert_eq!(pollster::block_on(pending).unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn zeros_and_empty_tensors() {
    // A pooled buffer that held data before must come back zeroed.
    drop(Tensor::from_slice(ctx(), &[64], &[5.0; 64]).unwrap());
    assert_eq!(
        Tensor::zeros(ctx(), &[64]).unwrap().to_vec().unwrap(),
        vec![0.0; 64]
    );
    assert_eq!(
        Tensor::zeros(ctx(), &[0, 4]).unwrap().to_vec().unwrap(),
        Vec::<f32>::new()
    );
}

#[test]
fn wrong_data_length_and_reshape_are_errors() {
    let err = Tensor::from_slice(ctx(), &[2, 3], &[1.0; 5]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DataLength {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{err}"
    );
    let t = Tensor::from_slice(ctx(), &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let r = t.reshape(&[3, 2]).unwrap();
    assert_eq!(r.shape(), &[3, 2]);
    assert_eq!(r.to_vec().unwrap(), t.to_vec().unwrap());
    let err = t.reshape(&[4, 2]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

#[test]
fn sizes_past_the_limits_are_refused_before_allocating() {
    let before = ctx().pool_stats();
    let err = Tensor::empty(ctx(), &[1 << 20, 1 << 13], DType::F32).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "elements",
                ..
            }
        ),
        "{err}"
    );
    let err = Tensor::empty(ctx(), &[usize::MAX, 2], DType::F32).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
    let limit = ctx().limits().max_buffer_size;
    let too_big = (limit / 4 + 1) as usize;
    if too_big <= u32::MAX as usize {
        let err = Tensor::empty(ctx(), &[too_big], DType::F32).unwrap_err();
        assert!(
            matches!(err, Error::LimitExceeded { what: "bytes", .. }),
            "{err}"
        );
    }
    assert_eq!(ctx().pool_stats().created, before.created);
}

#[test]
fn recorder_copy_and_zero() {
    let a = Tensor::from_slice(ctx(), &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let b = Tensor::zeros(ctx(), &[4]).unwrap();
    let mut rec = Recorder::new(ctx(), "copy");
    rec.copy(&b, &a).unwrap();
    rec.zero(&a).unwrap();
    let err = rec
        .copy(&Tensor::zeros(ctx(), &[5]).unwrap(), &a)
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    rec.submit();
    assert_eq!(b.to_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(a.to_vec().unwrap(), vec![0.0; 4]);
}

#[test]
fn backend_names() {
    assert_eq!(parse_backends("vulkan").unwrap(), wgpu::Backends::VULKAN);
    assert_eq!(
        parse_backends("GL, metal").unwrap(),
        wgpu::Backends::GL | wgpu::Backends::METAL
    );
    assert_eq!(parse_backends("dx12").unwrap(), wgpu::Backends::DX12);
    let err = parse_backends("cuda").unwrap_err();
    assert!(
        matches!(err, Error::UnknownBackend { ref name } if name == "cuda"),
        "{err}"
    );
    assert!(parse_backends(" , ").is_err());
}

#[test]
fn report_names_the_adapter() {
    let report = ctx().report();
    assert!(report.contains(&ctx().adapter_info().name), "{report}");
    assert!(report.contains("max storage binding"), "{report}");
}

/// An application that owns its device (for rendering, say) hands it in, and the
/// library's ops run on it.
#[test]
fn a_device_owned_by_the_application() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("an adapter");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let ctx = Context::from_device(device, queue);
    let a = Tensor::from_slice(&ctx, &[1, 2], &[1.0, 2.0]).unwrap();
    let b = Tensor::from_slice(&ctx, &[2, 1], &[3.0, 4.0]).unwrap();
    let c = Tensor::empty(&ctx, &[1, 1], DType::F32).unwrap();
    let mut rec = Recorder::new(&ctx, "app device");
    gemm::forward(&mut rec, &c, &a, &b, None, Gemm::default()).unwrap();
    rec.submit();
    assert_eq!(c.to_vec().unwrap(), vec![11.0]);
}

/// Contexts and tensors can be shared between threads (checked at compile time).
#[test]
fn context_and_tensor_are_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Context>();
    shareable::<Tensor>();
    shareable::<rnn_wgpu::Error>();
}

/// A tensor dropped while a recorder still uses it stays out of the pool until the
/// submit: otherwise the next tensor of its size would get its buffer, and that
/// tensor's upload would land before the recorded work reads the old contents.
#[test]
fn recorded_work_sees_tensors_dropped_before_the_submit() {
    let ctx = ctx();
    let identity = Tensor::from_slice(ctx, &[2, 2], &[1.0, 0.0, 0.0, 1.0]).unwrap();
    let c = Tensor::empty(ctx, &[2, 2], DType::F32).unwrap();
    let mut rec = Recorder::new(ctx, "dropped operand");
    {
        let a = Tensor::from_slice(ctx, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        gemm::forward(&mut rec, &c, &a, &identity, None, Gemm::default()).unwrap();
    }
    let _next = Tensor::from_slice(ctx, &[2, 2], &[9.0; 4]).unwrap();
    rec.submit();
    assert_eq!(c.to_vec().unwrap(), [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn the_profiler_times_every_dispatch_by_kernel_and_phase() {
    use rnn_wgpu::gpu::profile::Timing;
    use rnn_wgpu::nn::recurrent::{Config, Mode, Recurrent};
    // A context of its own: profiles are per context, and other tests share ctx().
    // Unfused steps, whose cells count under their own phase.
    let ctx = common::open_with(&rnn_wgpu::ContextOptions::default().with_fused_steps(Some(false)));
    let (b, t, i, h) = (2, 3, 4, 5);
    let cfg = Config::new(i, h).with_layers(1).with_bidirectional(false);
    let lstm = Recurrent::new(&ctx, Mode::Lstm, cfg, 1).unwrap();
    let x = Tensor::from_slice(&ctx, &[b, t, i], &Rng::new(2).vec(b * t * i)).unwrap();
    let dy = Tensor::from_slice(&ctx, &[b, t, h], &Rng::new(3).vec(b * t * h)).unwrap();
    let run = || {
        let mut rec = Recorder::new(&ctx, "profiled");
        let (_, saved) = lstm.forward(&mut rec, &x, &[3, 2], None).unwrap();
        lstm.backward(&mut rec, &saved, &dy, None).unwrap();
        let n = rec.dispatches();
        rec.submit();
        n as u64
    };
    run(); // compiles the pipelines outside the profile
    assert!(ctx.profile().kernels.is_empty(), "off by default");
    ctx.set_profiling(true);
    let dispatches = run() + run();
    let p = ctx.profile();
    let calls = |rows: &[rnn_wgpu::gpu::profile::Row]| rows.iter().map(|r| r.calls).sum::<u64>();
    if ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        assert_eq!(p.timing, Timing::Timestamps);
        assert_eq!(calls(&p.kernels), dispatches, "{p}");
        assert_eq!(calls(&p.phases), dispatches, "{p}");
        let phase = |name: &str| p.phases.iter().find(|r| r.name == name).map(|r| r.calls);
        // T cells and the outputs from the states forward per run; the rest by
        // the layer's documented phases.
        assert_eq!(phase("cell"), Some(2 * (t as u64 + 1)), "{p}");
        for name in [
            "input GEMM",
            "recurrent step",
            "backward recurrence",
            "weight-gradient GEMMs",
        ] {
            assert!(phase(name).is_some_and(|c| c > 0), "{name} missing:\n{p}");
        }
        assert!(
            p.kernels.iter().any(|r| r.name == "lstm_cell::forward"),
            "{p}"
        );
    } else {
        assert_eq!(p.timing, Timing::Host);
        assert_eq!(calls(&p.kernels), 2);
    }
    assert!(p.total_ms() > 0.0, "{p}");
    // Every timed dispatch ran between a submit and the idle that followed it.
    let timed_ns: u64 = p.kernels.iter().map(|r| r.total_ns).sum();
    assert!(p.wall_ns >= timed_ns, "{} < {timed_ns}", p.wall_ns);
    assert!(p.table().contains("GPU time by phase"));
    assert!(p.table().contains("from submit to idle"));
    ctx.reset_profile();
    ctx.set_profiling(false);
    run();
    assert!(ctx.profile().kernels.is_empty());
}

/// The trace of a profiled tagger step parses as Chrome trace-event JSON: one
/// kernel slice per dispatch, named by its kernel and nested in a slice of its
/// phase on the GPU track, and the recording on the host track.
#[test]
fn the_trace_of_a_step_nests_each_dispatch_in_its_phase() {
    use rnn_wgpu::data::Batch;
    use rnn_wgpu::models::{BiLstmTagger, TaggerConfig};
    use rnn_wgpu::nn::Module;
    use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
    let ctx = common::open(None);
    if !ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        // Without timestamps there are no dispatch times to trace.
        assert_eq!(ctx.trace_json().matches("\"ph\":\"X\"").count(), 0);
        return;
    }
    let model = BiLstmTagger::new(
        &ctx,
        TaggerConfig::new(50, 5)
            .with_emb(8)
            .with_hidden(8)
            .with_layers(1),
        1,
    )
    .unwrap();
    let mut opt =
        Optimizer::new(&ctx, OptimConfig::new(Method::ADAM, 1e-3), model.params()).unwrap();
    let batch = Batch::pad(&[(&[3, 4, 5][..], &[0, 1, 2][..]), (&[6][..], &[3][..])], 0).unwrap();
    model.train_step(&ctx, &batch, &mut opt).unwrap(); // compiles outside the trace
    ctx.set_profiling(true);
    model.train_step(&ctx, &batch, &mut opt).unwrap();
    ctx.set_profiling(false);
    let dispatches: u64 = ctx.profile().kernels.iter().map(|r| r.calls).sum();
    let trace: serde_json::Value = serde_json::from_str(&ctx.trace_json()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let slices = |cat: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == cat)
            .collect()
    };
    let (kernels, phases, host) = (slices("kernel"), slices("phase"), slices("host"));
    assert_eq!(kernels.len() as u64, dispatches);
    assert!(dispatches > 10);
    assert_eq!(host.len(), 1, "one recording");
    assert_eq!(host[0]["name"], "tagger step");
    let span = |e: &serde_json::Value| {
        let ts = e["ts"].as_f64().unwrap();
        (ts, ts + e["dur"].as_f64().unwrap())
    };
    // Times are whole nanoseconds; JSON's doubles may round a sum by less.
    for k in &kernels {
        let (start, end) = span(k);
        assert!(
            start + 1e-4 >= span(host[0]).1,
            "a dispatch ran before its submit: {k}"
        );
        assert!(k["name"].as_str().unwrap().contains("::"), "{k}");
        let phase = &k["args"]["phase"];
        let inside = phases.iter().any(|p| {
            let (ps, pe) = span(p);
            p["name"] == *phase && ps <= start + 1e-4 && end <= pe + 1e-4 && p["tid"] == k["tid"]
        });
        assert!(inside, "{k} is in no slice of its phase");
    }
    assert!(phases.iter().any(|p| p["name"] == "backward recurrence"));
}

#[test]
fn the_pool_keeps_at_most_its_cap_idle_dropping_spares_first() {
    // A context of its own, so that its pool starts empty.
    let ctx = common::open(None);
    let n = (16 << 20) / 4; // 16 MiB of f32: one size class
    let live: Vec<Tensor> = (0..5)
        .map(|_| Tensor::empty(&ctx, &[n], DType::F32).unwrap())
        .collect();
    let s = ctx.pool_stats();
    assert_eq!(
        (s.created, s.live_bytes, s.peak_live_bytes),
        (5, 80 << 20, 80 << 20)
    );
    // By default up to the peak in use stays idle: all five.
    drop(live);
    let s = ctx.pool_stats();
    assert_eq!(
        (s.idle, s.idle_bytes, s.bytes, s.live_bytes),
        (5, 80 << 20, 80 << 20, 0)
    );
    // A cap of 48 MiB drops the two idle longest at once.
    ctx.set_pool_idle_cap(Some(48 << 20));
    let s = ctx.pool_stats();
    assert_eq!((s.idle, s.idle_bytes, s.bytes), (3, 48 << 20, 48 << 20));
    // Past the cap a spare goes first: the longest idle of a size that has
    // others idle. An 8 MiB buffer (made while the three 16 MiB ones are in use)
    // comes back first and stays, the only one of its size; the first 16 MiB
    // one back is dropped for the third.
    let big: Vec<Tensor> = (0..3)
        .map(|_| Tensor::empty(&ctx, &[n], DType::F32).unwrap())
        .collect();
    drop(Tensor::empty(&ctx, &[n / 2], DType::F32).unwrap());
    drop(big);
    let s = ctx.pool_stats();
    assert_eq!(
        (s.created, s.idle, s.idle_bytes, s.bytes),
        (6, 3, 40 << 20, 40 << 20)
    );
    // A lower cap drops the spare 16 MiB one before the lone 8 MiB one; with no
    // spare left, the longest idle goes: the 8 MiB one.
    ctx.set_pool_idle_cap(Some(32 << 20));
    let s = ctx.pool_stats();
    assert_eq!((s.idle, s.idle_bytes), (2, 24 << 20));
    ctx.set_pool_idle_cap(Some(16 << 20));
    let s = ctx.pool_stats();
    assert_eq!((s.idle, s.idle_bytes), (1, 16 << 20));
    ctx.set_pool_idle_cap(Some(48 << 20));
    // Both sizes are served from the pool again (8 MiB by the 16 MiB buffer).
    drop(Tensor::empty(&ctx, &[n], DType::F32).unwrap());
    drop(Tensor::empty(&ctx, &[n / 2], DType::F32).unwrap());
    assert_eq!(ctx.pool_stats().created, 6);
}

/// A request takes the smallest idle buffer that is large enough: one of 16 MiB
/// serves 5 MiB when nothing smaller is idle, and the smaller one when it is.
#[test]
fn the_pool_serves_a_request_from_the_smallest_idle_buffer_that_fits() {
    let ctx = common::open(None);
    let mib = |m: usize| (m << 20) / 4;
    drop(Tensor::empty(&ctx, &[mib(16)], DType::F32).unwrap());
    let created = ctx.pool_stats().created;
    let five = Tensor::empty(&ctx, &[mib(5)], DType::F32).unwrap();
    assert_eq!(
        ctx.pool_stats().created,
        created,
        "the 16 MiB buffer serves 5 MiB"
    );
    assert_eq!(five.buffer().size(), 16 << 20);
    // A 6 MiB buffer, made while the 16 MiB one is in use, idles beside it.
    drop((five, Tensor::empty(&ctx, &[mib(6)], DType::F32).unwrap()));
    let t = Tensor::empty(&ctx, &[mib(5)], DType::F32).unwrap();
    assert_eq!(t.buffer().size(), 6 << 20, "best fit");
    // The peak starts again from what is in use (the 6 MiB buffer), and the idle
    // cap, which follows it, drops the 16 MiB buffer.
    ctx.reset_pool_peak();
    let s = ctx.pool_stats();
    assert_eq!((s.peak_live_bytes, s.live_bytes), (6 << 20, 6 << 20));
    assert_eq!((s.idle, s.idle_bytes, s.bytes), (0, 0, 6 << 20));
}

/// Training steps over batches of varying shapes (bucketed lengths 3..=40, and
/// batch sizes 32 and 7): after two passes over the shapes, further passes
/// create no buffer, and the pool holds at most twice the peak in use.
#[test]
fn varying_shapes_reuse_buffers_and_stay_within_twice_the_peak() {
    use rnn_wgpu::data::Batch;
    use rnn_wgpu::models::{BiLstmTagger, TaggerConfig};
    use rnn_wgpu::nn::Module;
    use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
    let ctx = common::open(None);
    let model = BiLstmTagger::new(
        &ctx,
        TaggerConfig::new(300, 9)
            .with_emb(32)
            .with_hidden(32)
            .with_layers(1),
        1,
    )
    .unwrap();
    let mut opt =
        Optimizer::new(&ctx, OptimConfig::new(Method::ADAM, 1e-3), model.params()).unwrap();
    let batch = |size: usize, steps: usize| Batch {
        ids: (0..size * steps)
            .map(|i| 1 + (i as u32 * 31) % 299)
            .collect(),
        targets: (0..size * steps).map(|i| i as u32 % 9).collect(),
        lengths: (0..size).map(|i| steps - i % steps.min(3)).collect(),
        size,
        steps,
        chars: None,
    };
    let shapes: Vec<(usize, usize)> = [40, 3, 17, 29, 8, 40, 12, 23, 5, 33]
        .into_iter()
        .flat_map(|t| [(32, t), (7, t)])
        .collect();
    let pass = |opt: &mut Optimizer| {
        for &(size, steps) in &shapes {
            model.train_step(&ctx, &batch(size, steps), opt).unwrap();
        }
    };
    // Best fit settles within two passes (the second pass meets the idle
    // buffers in another order than the first made them).
    pass(&mut opt);
    pass(&mut opt);
    let settled = ctx.pool_stats();
    for _ in 0..3 {
        pass(&mut opt);
    }
    let s = ctx.pool_stats();
    println!("{s:?}");
    assert_eq!(
        s.created, settled.created,
        "the steady state created buffers"
    );
    assert!(s.bytes <= 2 * s.peak_live_bytes, "{s:?}");
}

/// An error the device reports about submitted work (here a copy past the end of
/// a buffer, recorded through the interop encoder, which the library cannot
/// check) comes back from the next wait as `Error::Device`, not as a panic; the
/// context then works on.
#[test]
fn device_errors_come_back_from_the_next_wait() {
    let ctx = common::open(None);
    let a = Tensor::zeros(&ctx, &[64]).unwrap();
    let b = Tensor::zeros(&ctx, &[64]).unwrap();
    let mut rec = Recorder::new(&ctx, "bad copy");
    let past_the_end = a.buffer().size() + 256;
    rec.encoder_mut()
        .copy_buffer_to_buffer(a.buffer(), 0, b.buffer(), 0, past_the_end);
    rec.submit();
    let err = ctx.wait().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Device {
                kind: "a validation error",
                ..
            }
        ),
        "{err:?}"
    );
    ctx.wait().unwrap(); // reported once
    let c = Tensor::from_slice(&ctx, &[3], &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(c.to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
}

/// A lost device (here destroyed on purpose) is `Error::DeviceLost` from every
/// wait from then on; the application opens a new context and resumes from its
/// checkpoint.
#[test]
fn a_lost_device_is_reported_by_every_wait() {
    let ctx = common::open(None);
    let t = Tensor::from_slice(&ctx, &[2], &[1.0, 2.0]).unwrap();
    ctx.device().destroy();
    for _ in 0..2 {
        let err = ctx.wait().unwrap_err();
        assert!(matches!(err, Error::DeviceLost { .. }), "{err:?}");
    }
    assert!(t.to_vec().is_err());
    let fresh = common::open(None);
    let again = Tensor::from_slice(&fresh, &[2], &[1.0, 2.0]).unwrap();
    assert_eq!(again.to_vec().unwrap(), vec![1.0, 2.0]);
}

/// Asking for a backend this platform does not have is `Error::NoAdapter` with
/// the backends named, not a panic.
#[test]
fn no_adapter_for_an_absent_backend_is_a_typed_error() {
    let absent = if cfg!(target_os = "macos") {
        wgpu::Backends::DX12
    } else {
        wgpu::Backends::METAL
    };
    let options = rnn_wgpu::ContextOptions::default().with_backends(Some(absent));
    let err = Context::with_options(&options).unwrap_err();
    assert!(matches!(err, Error::NoAdapter { .. }), "{err:?}");
}

/// Within one recording, an output takes the buffer of a tensor that the
/// recorded work still reads but nobody holds any more (the kernels that write
/// it run after that work): a chain of twelve scalings whose intermediates are
/// dropped as it goes keeps a few buffers busy, not twelve, and gets the right
/// numbers.
#[test]
fn outputs_reuse_the_buffers_of_dropped_intermediates_within_a_submit() {
    use rnn_wgpu::ops::elementwise;
    let ctx = common::open(None);
    let n = 1000;
    let data: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
    let x = Tensor::from_slice(&ctx, &[n], &data).unwrap();
    ctx.wait().unwrap();
    ctx.reset_pool_peak();
    let before = ctx.pool_stats().live_bytes;
    let mut rec = Recorder::new(&ctx, "chain");
    let mut t = x.clone();
    for _ in 0..12 {
        t = elementwise::scale(&mut rec, &t, 1.5).unwrap();
    }
    let grown = ctx.pool_stats().peak_live_bytes - before;
    rec.submit();
    // Twelve outputs of 4000 bytes each would take 48 000; the uniforms are small.
    assert!(grown < 20_000, "{grown} bytes in use for the chain");
    let got = t.to_vec().unwrap();
    let want: Vec<f64> = data.iter().map(|&v| v as f64 * 1.5f64.powi(12)).collect();
    common::assert_close("chain", &got, &want, 1e-5, 1e-6);
}
