//! Everything fits WebGPU's default limits (8 storage buffers per shader stage,
//! 16 KiB of workgroup storage, 256 invocations per workgroup, ...), the most
//! some adapters and browsers give: on a device opened with
//! `wgpu::Limits::default()` the recurrent layers, attention, the tagger and the
//! encoder-decoder run and give what the device opened with the adapter's limits
//! gives.

mod common;

use std::sync::OnceLock;

use common::ctx;
use rnn_wgpu::data::{Batch, ParallelBatch};
use rnn_wgpu::models::{BiLstmTagger, EncoderKind, Link, Seq2Seq, Seq2SeqConfig, TaggerConfig};
use rnn_wgpu::nn::recurrent::{Config, Mode, Recurrent};
use rnn_wgpu::nn::{Module, Score};
use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
use rnn_wgpu::{Context, ContextOptions, Recorder, Tensor};

/// The same kernels on the same adapter: only the limits differ, so the results
/// agree to rounding.
const TOL: f32 = 1e-5;

/// Devices with WebGPU's default limits: the default GEMM choice, and the
/// storage-buffer kernels alone.
fn limited() -> [&'static Context; 2] {
    static DEFAULT: OnceLock<Context> = OnceLock::new();
    static BUFFERS: OnceLock<Context> = OnceLock::new();
    let open = |gemm_packed| {
        Context::with_options(
            &ContextOptions::default()
                .with_limits(Some(rnn_wgpu::wgpu::Limits::default()))
                .with_gemm_packed(gemm_packed),
        )
        .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
    };
    [
        DEFAULT.get_or_init(|| open(None)),
        BUFFERS.get_or_init(|| open(Some(false))),
    ]
}

fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL * w.abs().max(1.0),
            "{what}[{i}]: {g} with WebGPU's default limits, {w} with the adapter's"
        );
    }
}

#[test]
fn the_device_has_webgpu_default_limits() {
    for limited in limited() {
        let l = limited.limits();
        assert_eq!(l.max_storage_buffers_per_shader_stage, 8);
        assert_eq!(l.max_compute_workgroup_storage_size, 16384);
    }
}

/// Forward and backward of a 2-layer bidirectional layer of every cell (H = 8 on
/// the vec4 kernels, H = 5 on the scalar ones): every output and gradient.
fn recurrent_run(ctx: &Context, mode: Mode, hidden: usize) -> Vec<(String, Vec<f32>)> {
    let cfg = Config::new(6, hidden)
        .with_layers(2)
        .with_bidirectional(true);
    let model = Recurrent::new(ctx, mode, cfg, 11).unwrap();
    let (b, t) = (3, 5);
    let mut rng = common::Rng::new(5);
    let x = Tensor::from_slice(ctx, &[b, t, 6], &rng.vec(b * t * 6)).unwrap();
    let dy = Tensor::from_slice(ctx, &[b, t, 2 * hidden], &rng.vec(b * t * 2 * hidden)).unwrap();
    let mut rec = Recorder::new(ctx, "limits");
    model.zero_grad(&mut rec).unwrap();
    let (out, saved) = model.forward(&mut rec, &x, &[5, 2, 4], None).unwrap();
    let grads = model.backward(&mut rec, &saved, &dy, None).unwrap();
    rec.submit();
    let mut all = vec![
        ("y".to_string(), out.y.to_vec().unwrap()),
        ("dx".to_string(), grads.dx.to_vec().unwrap()),
    ];
    for g in model.named_grads() {
        all.push((g.name.clone(), g.read().unwrap()));
    }
    all
}

#[test]
fn recurrent_layers_fit_the_default_limits() {
    for limited in limited() {
        for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh] {
            for hidden in [8, 5] {
                let want = recurrent_run(ctx(), mode, hidden);
                let got = recurrent_run(limited, mode, hidden);
                for ((name, g), (_, w)) in got.iter().zip(&want) {
                    assert_same(&format!("{mode:?} H={hidden} {name}"), g, w);
                }
            }
        }
    }
}

/// Three tagger training steps: their losses.
fn tagger_losses(ctx: &Context) -> Vec<f32> {
    let model = BiLstmTagger::new(
        ctx,
        TaggerConfig::new(40, 6)
            .with_emb(12)
            .with_hidden(16)
            .with_layers(1),
        2,
    )
    .unwrap();
    let mut opt =
        Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 1e-2), model.params()).unwrap();
    let ids: [&[u32]; 3] = [&[3, 9, 27, 4], &[12, 5], &[33, 2, 8]];
    let pairs: Vec<(&[u32], Vec<u32>)> = ids
        .iter()
        .map(|&s| (s, s.iter().map(|&i| i % 6).collect()))
        .collect();
    let refs: Vec<(&[u32], &[u32])> = pairs.iter().map(|(a, b)| (*a, &b[..])).collect();
    let batch = Batch::pad(&refs, 0).unwrap();
    (0..3)
        .map(|_| model.train_step(ctx, &batch, &mut opt).unwrap().loss)
        .collect()
}

#[test]
fn the_tagger_trains_within_the_default_limits() {
    let want = tagger_losses(ctx());
    for limited in limited() {
        assert_same("tagger losses", &tagger_losses(limited), &want);
    }
}

/// A training step, then greedy and beam decoding of an attention model with an
/// LSTM or a transformer encoder: the step's loss, the tokens and the scores.
fn seq2seq_run(ctx: &Context, encoder: EncoderKind) -> (f32, Vec<Vec<u32>>, Vec<f32>) {
    let cfg = Seq2SeqConfig::new(11, 9, 1, 2)
        .with_emb(6)
        .with_hidden(4)
        .with_layers(2)
        .with_bidirectional(true)
        .with_encoder(encoder)
        .with_link(Link::Luong {
            score: Score::General,
            input_feeding: true,
        });
    let model = Seq2Seq::new(ctx, cfg, 3).unwrap();
    let pairs: [(&[u32], &[u32]); 2] = [(&[3, 4, 5, 6], &[4, 5, 6]), (&[7, 8], &[8, 3])];
    let batch = ParallelBatch::new(&pairs, 0, 1, 2).unwrap();
    let mut opt =
        Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 1e-2), model.params()).unwrap();
    let loss = model.train_step(ctx, &batch, &mut opt).unwrap().loss;
    let sources: Vec<&[u32]> = pairs.iter().map(|(s, _)| *s).collect();
    let mut tokens = model.greedy(ctx, &sources, 5).unwrap();
    let beams = model.beam_search(ctx, &sources, 3, 5, 0.6).unwrap();
    let scores = beams.iter().flatten().map(|h| h.score).collect();
    tokens.extend(beams.into_iter().flatten().map(|h| h.tokens));
    (loss, tokens, scores)
}

#[test]
fn the_encoder_decoder_trains_and_decodes_within_the_default_limits() {
    for encoder in [
        EncoderKind::Lstm,
        EncoderKind::Transformer { heads: 2, ff: 7 },
    ] {
        let (loss, tokens, scores) = seq2seq_run(ctx(), encoder);
        for limited in limited() {
            let (l, t, s) = seq2seq_run(limited, encoder);
            assert_same(&format!("{encoder:?} loss"), &[l], &[loss]);
            assert_eq!(t, tokens, "{encoder:?} decoded tokens");
            assert_same(&format!("{encoder:?} beam scores"), &s, &scores);
        }
    }
}
