//! The encoder-decoder and its search: the beam kernel against a host top-k,
//! every link's gradients against central differences of its loss, padding that
//! changes nothing, beam search with k = 1 against greedy decoding, beam scores
//! against the log-probabilities a teacher-forced pass assigns, ensembles
//! against the mean of their members' teacher-forced log-probabilities, and a
//! small task learnt end to end.

mod common;

use common::{ctx, fd_along, Rng};
use rnn_wgpu::data::ParallelBatch;
use rnn_wgpu::models::seq2seq::EncoderKind;
use rnn_wgpu::models::{Ensemble, Hypothesis, Link, Seq2Seq, Seq2SeqConfig};
use rnn_wgpu::nn::{Module, Score};
use rnn_wgpu::ops::beam;
use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
use rnn_wgpu::{Error, Recorder, Tape, Tensor};

const PAD: u32 = 0;
const BOS: u32 = 1;
const EOS: u32 = 2;

const TRANSFORMER: EncoderKind = EncoderKind::Transformer { heads: 2, ff: 7 };

fn config(link: Link, encoder: EncoderKind, bidirectional: bool, layers: usize) -> Seq2SeqConfig {
    Seq2SeqConfig::new(11, 9, BOS, EOS)
        .with_emb(if encoder == EncoderKind::Lstm { 5 } else { 6 })
        .with_hidden(4)
        .with_layers(layers)
        .with_bidirectional(bidirectional)
        .with_encoder(encoder)
        .with_link(link)
        .with_pad(PAD)
}

/// Every link with an LSTM encoder, the attention links with a transformer one,
/// and minGRU and minLSTM encoders (the decoder from their final states alone).
const MODELS: [(Link, EncoderKind); 9] = [
    (Link::None, EncoderKind::Lstm),
    (LINKS[1], EncoderKind::Lstm),
    (LINKS[2], EncoderKind::Lstm),
    (LINKS[3], EncoderKind::Lstm),
    (LINKS[1], TRANSFORMER),
    (LINKS[3], TRANSFORMER),
    (Link::None, EncoderKind::MinGru),
    (LINKS[1], EncoderKind::MinGru),
    (LINKS[3], EncoderKind::MinLstm),
];

const LINKS: [Link; 4] = [
    Link::None,
    Link::Luong {
        score: Score::General,
        input_feeding: true,
    },
    Link::Luong {
        score: Score::Dot,
        input_feeding: false,
    },
    Link::Bahdanau { size: 6 },
];

/// Sources of lengths 4, 1 and 3 (the longest first is not required), targets
/// of 2, 3 and 0 tokens: padding on both sides.
fn batch() -> ParallelBatch {
    let pairs: [(&[u32], &[u32]); 3] = [
        (&[3, 4, 5, 6], &[3, 4]),
        (&[7], &[5, 6, 7]),
        (&[8, 9, 10], &[]),
    ];
    ParallelBatch::new(&pairs, PAD, BOS, EOS).unwrap()
}

fn loss_of(model: &Seq2Seq, b: &ParallelBatch) -> f64 {
    let ctx = ctx();
    let mut tape = Tape::eval(ctx, "loss");
    let loss = model.loss(&mut tape, b).unwrap();
    tape.into_recorder().submit();
    loss.to_vec().unwrap()[0] as f64
}

/// Every parameter gradient, one list per parameter tensor.
fn grads_of(model: &Seq2Seq, b: &ParallelBatch) -> Vec<Vec<f32>> {
    let ctx = ctx();
    let mut tape = Tape::train(ctx, "grads");
    model.zero_grad(tape.rec()).unwrap();
    let loss = model.loss(&mut tape, b).unwrap();
    tape.backward(&loss).unwrap();
    tape.into_recorder().submit();
    model
        .params()
        .iter()
        .map(|p| p.grad.to_vec().unwrap())
        .collect()
}

#[test]
fn every_link_has_the_gradients_of_its_loss() {
    let b = batch();
    for (i, (link, encoder)) in MODELS.into_iter().enumerate() {
        for (bidirectional, layers) in [(true, 1), (false, 2)] {
            let what =
                format!("{link:?} {encoder:?} bidirectional={bidirectional} layers={layers}");
            let cfg = config(link, encoder, bidirectional, layers);
            let model = Seq2Seq::new(ctx(), cfg, 10 + i as u64).unwrap();
            // Attention weights at PyTorch's initial scale make the query's share of
            // the gradient too small to tell from rounding; larger ones make every
            // path count.
            let attention = model
                .entries()
                .into_iter()
                .filter(|e| e.names.iter().all(|n| n.name.starts_with("attention.")))
                .map(|e| e.param)
                .collect::<Vec<_>>();
            let scored = matches!(
                link,
                Link::Bahdanau { .. }
                    | Link::Luong {
                        score: Score::General,
                        ..
                    }
            );
            assert_eq!(attention.is_empty(), !scored, "{what}");
            for p in attention {
                let v: Vec<f32> = p.value.to_vec().unwrap().iter().map(|x| 4.0 * x).collect();
                p.value.write(&v).unwrap();
            }
            let grads = grads_of(&model, &b);
            let names: Vec<String> = model.named_params().into_iter().map(|n| n.name).collect();
            // Central differences step over the kinks of a transformer's ReLUs
            // (hundreds of pre-activations, some within the step of zero), which
            // costs them a few percent; the layer itself matches PyTorch's
            // autograd in tests/golden.rs, so here they check the wiring.
            let rtol = if encoder == EncoderKind::Lstm {
                1e-2
            } else {
                6e-2
            };
            assert_eq!(grads.len(), model.params().len());
            let mut rng = Rng::new(70 + i as u64);
            for (p, (param, g)) in model.params().iter().zip(&grads).enumerate() {
                // The derivative along a random direction over up to 12 entries:
                // a missing or extra term in any of them shows.
                let value = param.value.to_vec().unwrap();
                let n = value.len();
                let picks: Vec<usize> = (0..12.min(n))
                    .map(|_| (rng.next_u64() % n as u64) as usize)
                    .collect();
                let mut dir = vec![0.0f32; n];
                for &k in &picks {
                    dir[k] = rng.uniform();
                }
                let analytic: f64 = g.iter().zip(&dir).map(|(a, d)| (a * d) as f64).sum();
                let fd = fd_along(param, &dir, 1e-2, || loss_of(&model, &b));
                let name = names.get(p).map(String::as_str).unwrap_or("?");
                assert!(
                    (analytic - fd).abs() <= 5e-5 + rtol * fd.abs(),
                    "{what}: parameter {p} ({name}): gradient·dir {analytic} but finite differences {fd}"
                );
            }
        }
    }
}

#[test]
fn padded_positions_change_neither_the_loss_nor_any_gradient() {
    let clean = batch();
    let mut noisy = clean.clone();
    // Real tokens where the sources and the decoder inputs are padded.
    for (i, id) in noisy.src.ids.iter_mut().enumerate() {
        let (r, s) = (i / clean.src.steps, i % clean.src.steps);
        if s >= clean.src.lengths[r] {
            *id = 3 + (i as u32 % 7);
        }
    }
    for (i, id) in noisy.tgt.ids.iter_mut().enumerate() {
        let (r, s) = (i / clean.tgt.steps, i % clean.tgt.steps);
        if s >= clean.tgt.lengths[r] {
            *id = 3 + (i as u32 % 5);
        }
    }
    assert_ne!(noisy, clean);
    for (i, (link, encoder)) in MODELS.into_iter().enumerate() {
        let model = Seq2Seq::new(ctx(), config(link, encoder, true, 1), 30 + i as u64).unwrap();
        let what = format!("{link:?} {encoder:?}");
        assert_eq!(
            loss_of(&model, &clean),
            loss_of(&model, &noisy),
            "{what}: loss"
        );
        assert_eq!(
            grads_of(&model, &clean),
            grads_of(&model, &noisy),
            "{what}: gradients"
        );
    }
}

/// Log-softmax of each row in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    row.iter().map(|&v| v as f64 - lse).collect()
}

#[test]
fn beam_step_keeps_the_k_best_continuations() {
    let ctx = ctx();
    let (b, k, v) = (3, 4, 70);
    let mut rng = Rng::new(5);
    let logits: Vec<f32> = rng.vec(b * k * v).iter().map(|x| 3.0 * x).collect();
    let mut score: Vec<f32> = rng.vec(b * k).iter().map(|x| x - 2.0).collect();
    score[k + 1] = f32::NEG_INFINITY; // an empty slot
    score[2] = 0.5; // finished (below) and best of entry 0
    let finished: Vec<u32> = (0..b * k).map(|r| u32::from(r % k == 2)).collect();
    let lt = Tensor::from_slice(ctx, &[b * k, v], &logits).unwrap();
    let st = Tensor::from_slice(ctx, &[b * k], &score).unwrap();
    let ft = Tensor::from_u32(ctx, &[b * k], &finished).unwrap();
    let mut rec = Recorder::new(ctx, "beam");
    let out = beam::step(&mut rec, &lt, &st, &ft, k, EOS).unwrap();
    rec.submit();
    let (got_s, got_o, got_t) = (
        out.score.to_vec().unwrap(),
        out.origin.to_vec().unwrap(),
        out.token.to_vec().unwrap(),
    );
    for e in 0..b {
        let mut cands: Vec<(f64, usize)> = Vec::new();
        for j in 0..k {
            let r = e * k + j;
            let lp = log_softmax(&logits[r * v..(r + 1) * v]);
            for (t, l) in lp.iter().enumerate() {
                let s = if finished[r] == 1 {
                    if t as u32 == EOS {
                        score[r] as f64
                    } else {
                        f64::NEG_INFINITY
                    }
                } else {
                    score[r] as f64 + l
                };
                cands.push((s, j * v + t));
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (i, &(s, c)) in cands.iter().take(k).enumerate() {
            let o = e * k + i;
            assert!(
                (got_s[o] as f64 - s).abs() < 1e-4,
                "entry {e} rank {i}: score {} vs {s}",
                got_s[o]
            );
            assert_eq!(
                (got_o[o] as usize, got_t[o] as usize),
                (c / v, c % v),
                "entry {e} rank {i}"
            );
        }
    }
    // Entry 0's finished hypothesis (slot 2) has the best score, so it is carried
    // on first, unchanged, with eos.
    assert_eq!((got_s[0], got_o[0], got_t[0]), (score[2], 2.0, EOS as f32));

    let mut rec = Recorder::new(ctx, "bad beam");
    assert!(matches!(
        beam::step(&mut rec, &lt, &st, &ft, 17, EOS),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        beam::step(&mut rec, &lt, &st, &ft, k, v as u32),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        beam::step(&mut rec, &lt, &st, &ft, 5, EOS),
        Err(Error::ShapeMismatch { .. })
    ));
    assert_eq!(rec.dispatches(), 0);
}

/// Σ log p(tokens (+ eos)) that a teacher-forced pass assigns, per pair.
fn sequence_log_prob(model: &Seq2Seq, src: &[u32], tokens: &[u32], with_eos: bool) -> f64 {
    let ctx = ctx();
    let b = ParallelBatch::new(&[(src, tokens)], PAD, BOS, EOS).unwrap();
    let mut tape = Tape::eval(ctx, "score");
    let logits = model.forward(&mut tape, &b).unwrap();
    tape.into_recorder().submit();
    let logits = logits.to_vec().unwrap();
    let v = model.config().tgt_vocab;
    let steps = tokens.len() + usize::from(with_eos);
    (0..steps)
        .map(|t| log_softmax(&logits[t * v..(t + 1) * v])[b.tgt.targets[t] as usize])
        .sum()
}

/// Asserts that each hypothesis's beam score is the log-probability `assigned`
/// gives its tokens (and `eos` when finished).
fn assert_beam_scores(what: &str, hyps: &[Hypothesis], assigned: impl Fn(&Hypothesis) -> f64) {
    for h in hyps {
        let want = assigned(h);
        assert!(
            (h.score as f64 - want).abs() < 1e-3,
            "{what} {:?}: beam score {} but the model assigns {want}",
            h.tokens,
            h.score
        );
    }
}

#[test]
fn beam_of_one_is_greedy_and_beam_scores_are_sequence_log_probs() {
    let ctx = ctx();
    let sources: [&[u32]; 3] = [&[3, 4, 5, 6], &[7], &[8, 9, 10]];
    for (i, (link, encoder)) in MODELS.into_iter().enumerate() {
        let model = Seq2Seq::new(ctx, config(link, encoder, true, 1), 50 + i as u64).unwrap();
        let greedy = model.greedy(ctx, &sources, 6).unwrap();
        let one = model.beam_search(ctx, &sources, 1, 6, 0.0).unwrap();
        for (s, (g, hyps)) in greedy.iter().zip(&one).enumerate() {
            assert_eq!(hyps.len(), 1, "{link:?} source {s}");
            assert_eq!(
                &hyps[0].tokens, g,
                "{link:?} source {s}: beam of 1 vs greedy"
            );
        }
        if link != Link::None {
            let (tokens, rows) = model.greedy_with_attention(ctx, sources[0], 6).unwrap();
            assert_eq!(tokens, greedy[0], "{link:?}: alone as in a batch");
            let steps = tokens.len() + usize::from(tokens.len() < 6);
            assert_eq!(rows.len(), steps, "{link:?}: a row per step");
            for r in &rows {
                assert_eq!(r.len(), sources[0].len());
                assert!(
                    (r.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                    "{link:?}: {r:?}"
                );
            }
        }
        let beams = model.beam_search(ctx, &sources, 3, 6, 0.0).unwrap();
        for (s, hyps) in beams.iter().enumerate() {
            assert_eq!(hyps.len(), 3, "{link:?} source {s}");
            for w in hyps.windows(2) {
                assert!(w[0].normalized >= w[1].normalized, "{link:?}: ranked");
            }
            // The best of three is at least as likely as the greedy path.
            assert!(
                hyps[0].score >= one[s][0].score - 1e-4,
                "{link:?} source {s}"
            );
            assert_beam_scores(&format!("{link:?} source {s}"), hyps, |h| {
                sequence_log_prob(&model, sources[s], &h.tokens, h.finished)
            });
        }
    }
}

#[test]
fn attention_learns_to_reverse_sequences() {
    let ctx = ctx();
    let cfg = Seq2SeqConfig::new(10, 10, BOS, EOS)
        .with_emb(16)
        .with_hidden(16)
        .with_layers(1)
        .with_bidirectional(true)
        .with_encoder(EncoderKind::Lstm)
        .with_link(Link::Luong {
            score: Score::General,
            input_feeding: true,
        })
        .with_pad(PAD);
    let model = Seq2Seq::new(ctx, cfg, 3).unwrap();
    let cfg = OptimConfig::new(Method::ADAM, 1e-2).with_max_norm(Some(5.0));
    let mut opt = Optimizer::new(ctx, cfg, model.params()).unwrap();
    let mut rng = Rng::new(8);
    let mut sample = |n: usize| -> Vec<(Vec<u32>, Vec<u32>)> {
        (0..n)
            .map(|_| {
                let len = 2 + (rng.next_u64() % 4) as usize;
                let s: Vec<u32> = (0..len).map(|_| 3 + (rng.next_u64() % 7) as u32).collect();
                let t = s.iter().rev().copied().collect();
                (s, t)
            })
            .collect()
    };
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..300 {
        let pairs = sample(16);
        let refs: Vec<(&[u32], &[u32])> = pairs.iter().map(|(s, t)| (&s[..], &t[..])).collect();
        let b = ParallelBatch::new(&refs, PAD, BOS, EOS).unwrap();
        last = model.train_step(ctx, &b, &mut opt).unwrap().loss;
        first.get_or_insert(last);
    }
    let test = sample(32);
    let sources: Vec<&[u32]> = test.iter().map(|(s, _)| &s[..]).collect();
    let out = model.greedy(ctx, &sources, 8).unwrap();
    let right = out.iter().zip(&test).filter(|(o, (_, t))| o == &t).count();
    assert!(
        right * 10 >= test.len() * 8,
        "{right} of {} reversed exactly; loss {first:?} → {last}",
        test.len()
    );
}

#[test]
fn bad_input_is_refused_and_leaves_the_model_unchanged() {
    let ctx = ctx();
    let model = Seq2Seq::new(ctx, config(LINKS[3], EncoderKind::Lstm, true, 1), 90).unwrap();
    let before: Vec<Vec<f32>> = model
        .params()
        .iter()
        .map(|p| p.value.to_vec().unwrap())
        .collect();
    let cfg = OptimConfig::new(Method::ADAM, 1e-2);
    let mut opt = Optimizer::new(ctx, cfg, model.params()).unwrap();
    // A source id past the source vocabulary, a target id past the target's.
    let past_src = ParallelBatch::new(&[(&[3, 11][..], &[3][..])], PAD, BOS, EOS).unwrap();
    assert!(matches!(
        model.train_step(ctx, &past_src, &mut opt),
        Err(Error::IndexOutOfRange { bound: 11, .. })
    ));
    let past_tgt = ParallelBatch::new(&[(&[3][..], &[9][..])], PAD, BOS, EOS).unwrap();
    assert!(matches!(
        model.train_step(ctx, &past_tgt, &mut opt),
        Err(Error::IndexOutOfRange { bound: 9, .. })
    ));
    // Empty sources, beam widths out of range.
    assert!(matches!(
        ParallelBatch::new(&[(&[4][..], &[3][..]), (&[][..], &[3][..])], PAD, BOS, EOS),
        Err(Error::LengthOutOfRange { index: 1, .. })
    ));
    assert!(matches!(
        model.greedy(ctx, &[], 5),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        model.beam_search(ctx, &[&[3, 4]], 0, 5, 0.0),
        Err(Error::InvalidArgument {
            what: "beam width",
            ..
        })
    ));
    assert!(matches!(
        model.beam_search(ctx, &[&[3, 4]], 17, 5, 0.0),
        Err(Error::LimitExceeded { .. })
    ));
    // A transformer encoder needs attention; special ids must be in the vocabulary.
    let no_link = config(Link::None, TRANSFORMER, true, 1);
    assert!(matches!(
        Seq2Seq::new(ctx, no_link, 1),
        Err(Error::ShapeMismatch { .. })
    ));
    let bad_eos = config(Link::None, EncoderKind::Lstm, true, 1).with_eos(9);
    assert!(matches!(
        Seq2Seq::new(ctx, bad_eos, 1),
        Err(Error::IndexOutOfRange { .. })
    ));
    let after: Vec<Vec<f32>> = model
        .params()
        .iter()
        .map(|p| p.value.to_vec().unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(opt.steps(), 0);
}

/// Sampling the decoder: with top-k = 1 every draw is the most likely token, so
/// it decodes as greedy search does at any temperature; a seed repeats its
/// draws; every token is a target id, at most `max_len` per source.
#[test]
fn sampling_with_top_k_of_one_is_greedy_and_a_seed_repeats() {
    use rnn_wgpu::ops::sample::Sampling;
    let ctx = ctx();
    let sources: [&[u32]; 3] = [&[3, 4, 5, 6], &[7], &[8, 9, 10]];
    for (i, (link, encoder)) in MODELS.into_iter().enumerate() {
        let model = Seq2Seq::new(ctx, config(link, encoder, true, 1), 60 + i as u64).unwrap();
        let greedy = model.greedy(ctx, &sources, 6).unwrap();
        let top1 = Sampling {
            top_k: Some(1),
            ..Sampling::at(3.0)
        };
        assert_eq!(
            model.sample(ctx, &sources, 6, &top1, 5).unwrap(),
            greedy,
            "{link:?} {encoder:?}"
        );
        let warm = Sampling {
            top_p: Some(0.9),
            ..Sampling::at(1.5)
        };
        let a = model.sample(ctx, &sources, 6, &warm, 11).unwrap();
        assert_eq!(a, model.sample(ctx, &sources, 6, &warm, 11).unwrap());
        for tokens in &a {
            assert!(tokens.len() <= 6);
            assert!(tokens.iter().all(|&t| (t as usize) < 9 && t != EOS));
        }
    }
}

/// The decoder as a stream, fed the target one token at a time, gives the logits
/// the teacher-forced pass gives at each step, for every model; a fork goes on
/// alike; a wrong token count is refused.
/// The logits `[T + 1, 1, V]` a teacher-forced evaluation pass gives the pair.
fn teacher_forced_logits(model: &Seq2Seq, src: &[u32], tgt: &[u32]) -> Vec<f32> {
    let b = ParallelBatch::new(&[(src, tgt)], PAD, BOS, EOS).unwrap();
    let mut tape = Tape::eval(ctx(), "teacher forced");
    let logits = model.forward(&mut tape, &b).unwrap();
    tape.into_recorder().submit();
    logits.to_vec().unwrap()
}

#[test]
fn a_decoder_stream_gives_the_teacher_forced_logits() {
    let ctx = ctx();
    let (src, tgt): (&[u32], &[u32]) = (&[3, 4, 5, 6], &[5, 6, 7]);
    for (i, (link, encoder)) in MODELS.into_iter().enumerate() {
        let what = format!("{link:?} {encoder:?}");
        let model = Seq2Seq::new(ctx, config(link, encoder, true, 2), 80 + i as u64).unwrap();
        let v = model.config().tgt_vocab;
        let want = teacher_forced_logits(&model, src, tgt);
        let mut rec = Recorder::new(ctx, "stream");
        let mut stream = model.stream(&mut rec, &[src]).unwrap();
        rec.submit();
        let mut fork = None;
        for (t, &id) in [BOS].iter().chain(tgt).enumerate() {
            let mut rec = Recorder::new(ctx, "token");
            let logits = stream.feed(&mut rec, &[id]).unwrap();
            let got = rec.submit_read(&logits).unwrap();
            for (k, (g, w)) in got.iter().zip(&want[t * v..(t + 1) * v]).enumerate() {
                assert!(
                    (g - w).abs() < 1e-4,
                    "{what} step {t} logit {k}: {g} vs {w}"
                );
            }
            assert_eq!(stream.attention().is_some(), link != Link::None, "{what}");
            if t == 1 {
                fork = Some(stream.clone());
            }
        }
        // The fork was taken after step 1: fed step 2's token, it gives step 2's
        // logits again.
        let mut fork = fork.unwrap();
        let mut rec = Recorder::new(ctx, "fork");
        let logits = fork.feed(&mut rec, &[tgt[1]]).unwrap();
        let got = rec.submit_read(&logits).unwrap();
        for (g, w) in got.iter().zip(&want[2 * v..3 * v]) {
            assert!((g - w).abs() < 1e-4, "{what} fork: {g} vs {w}");
        }
        let mut rec = Recorder::new(ctx, "bad");
        assert!(matches!(
            stream.feed(&mut rec, &[BOS, BOS]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            stream.feed(&mut rec, &[v as u32]),
            Err(Error::IndexOutOfRange { .. })
        ));
        assert_eq!(rec.dispatches(), 0, "{what}");
    }
}

/// Dropout acts in training only and its backward applies the forward's masks:
/// evaluation gives the plain model's loss, two training forwards draw different
/// masks, and the gradients of a training step match central differences of the
/// loss under the same masks (a fresh model from the same seeds draws them again).
#[test]
fn dropout_acts_in_training_only_with_the_same_masks_backward() {
    let ctx = ctx();
    let b = batch();
    let cfg = config(LINKS[2], EncoderKind::Lstm, true, 2);
    let fresh = || {
        Seq2Seq::new(ctx, cfg, 31)
            .unwrap()
            .with_dropout(0.4, 5)
            .unwrap()
    };
    let plain = Seq2Seq::new(ctx, cfg, 31).unwrap();
    let train_loss = |model: &Seq2Seq| -> f64 {
        let mut tape = Tape::train(ctx, "loss");
        let loss = model.loss(&mut tape, &b).unwrap();
        tape.into_recorder().submit();
        loss.to_vec().unwrap()[0] as f64
    };
    let model = fresh();
    assert_eq!(loss_of(&model, &b), loss_of(&plain, &b));
    assert_eq!(train_loss(&plain), loss_of(&plain, &b));
    let (first, second) = (train_loss(&model), train_loss(&model));
    assert!(
        first != loss_of(&plain, &b) && first != second,
        "{first} {second}"
    );

    let model = fresh();
    let grads = grads_of(&model, &b);
    let names: Vec<String> = model.named_params().into_iter().map(|n| n.name).collect();
    let masked_loss = || {
        let again = fresh();
        for (to, from) in again.params().iter().zip(model.params()) {
            to.value.write(&from.value.to_vec().unwrap()).unwrap();
        }
        train_loss(&again)
    };
    let mut rng = Rng::new(77);
    for (p, (param, g)) in model.params().iter().zip(&grads).enumerate() {
        let n = param.value.numel();
        let mut dir = vec![0.0f32; n];
        for _ in 0..12.min(n) {
            dir[(rng.next_u64() % n as u64) as usize] = rng.uniform();
        }
        let analytic: f64 = g.iter().zip(&dir).map(|(a, d)| (a * d) as f64).sum();
        let fd = fd_along(param, &dir, 1e-2, masked_loss);
        assert!(
            (analytic - fd).abs() <= 5e-5 + 1e-2 * fd.abs(),
            "parameter {p} ({}): gradient·dir {analytic} but finite differences {fd}",
            names[p]
        );
    }
    let err = Seq2Seq::new(ctx, cfg, 31)
        .unwrap()
        .with_dropout(1.0, 5)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

/// Label smoothing changes the training loss only, to the smoothed cross-entropy
/// of the logits the model gives (computed here on the host in f64).
#[test]
fn label_smoothing_acts_on_the_training_loss_only() {
    let ctx = ctx();
    let b = batch();
    let cfg = config(LINKS[1], EncoderKind::Lstm, true, 1);
    let eps = 0.25;
    let model = Seq2Seq::new(ctx, cfg, 32)
        .unwrap()
        .with_label_smoothing(eps)
        .unwrap();
    let plain = Seq2Seq::new(ctx, cfg, 32).unwrap();
    assert_eq!(loss_of(&model, &b), loss_of(&plain, &b));
    let mut tape = Tape::eval(ctx, "logits");
    let logits = model.forward(&mut tape, &b).unwrap();
    tape.into_recorder().submit();
    let logits = logits.to_vec().unwrap();
    let (n, t, v) = (b.tgt.size, b.tgt.steps, cfg.tgt_vocab);
    let (mut sum, mut count) = (0.0, 0);
    for i in 0..n {
        for s in 0..t {
            let target = b.tgt.targets[i * t + s];
            if target == rnn_wgpu::data::Batch::IGNORE {
                continue;
            }
            let row = log_softmax(&logits[(s * n + i) * v..(s * n + i + 1) * v]);
            let smooth: f64 = row.iter().sum::<f64>() * eps as f64 / v as f64;
            sum -= (1.0 - eps as f64) * row[target as usize] + smooth;
            count += 1;
        }
    }
    let mut tape = Tape::train(ctx, "loss");
    let loss = model.loss(&mut tape, &b).unwrap();
    tape.into_recorder().submit();
    let got = loss.to_vec().unwrap()[0] as f64;
    let want = sum / count as f64;
    assert!(
        (got - want).abs() < 1e-5 * want.abs().max(1.0),
        "{got} {want}"
    );
    for bad in [-0.1, 1.1, f32::NAN] {
        let err = Seq2Seq::new(ctx, cfg, 32)
            .unwrap()
            .with_label_smoothing(bad)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }
}

/// A tied output layer is the target embedding's table: its gradient gathers
/// the output layer's share and the lookups' (a row the decoder never reads
/// learns through the logits alone), every parameter's gradient matches central
/// differences with and without the projection to the embedding size, the
/// stream's logits (what the searches read) are the teacher-forced ones, and
/// the state_dict lists the table once and round-trips.
#[test]
fn tied_embeddings_learn_from_both_ends() {
    let ctx = ctx();
    let b = batch();
    let mut square = config(Link::None, EncoderKind::Lstm, false, 1);
    square.hidden = square.emb;
    let cases = [
        (config(LINKS[1], EncoderKind::Lstm, true, 1), true),
        (config(LINKS[2], EncoderKind::Lstm, true, 2), true),
        (square, false),
    ];
    for (i, (cfg, projected)) in cases.into_iter().enumerate() {
        let what = format!("{:?} hidden {}", cfg.link, cfg.decoder_hidden());
        let seed = 40 + i as u64;
        let untied = Seq2Seq::new(ctx, cfg, seed).unwrap();
        let model = Seq2Seq::new(ctx, cfg, seed)
            .unwrap()
            .with_tied_embeddings(seed + 100)
            .unwrap();
        assert!(model.tied_embeddings() && !untied.tied_embeddings());
        let names: Vec<String> = model.named_params().into_iter().map(|n| n.name).collect();
        assert!(
            !names.iter().any(|n| n == "out.weight"),
            "{what}: {names:?}"
        );
        assert!(names.iter().any(|n| n == "out.bias"), "{what}: {names:?}");
        assert_eq!(
            names.iter().any(|n| n == "out_proj.weight"),
            projected,
            "{what}: {names:?}"
        );
        assert_eq!(
            model.params().len(),
            untied.params().len() - 1 + usize::from(projected),
            "{what}"
        );

        let grads = grads_of(&model, &b);
        let table = names
            .iter()
            .position(|n| n == "tgt_embedding.weight")
            .unwrap();
        let e = cfg.emb;
        let mut rng = Rng::new(90 + i as u64);
        for (p, (param, g)) in model.params().iter().zip(&grads).enumerate() {
            let n = param.value.numel();
            let mut dirs = Vec::new();
            let mut dir = vec![0.0f32; n];
            for _ in 0..12.min(n) {
                dir[(rng.next_u64() % n as u64) as usize] = rng.uniform();
            }
            dirs.push(dir);
            if p == table {
                // Row 8 is never a decoder input, row 3 is one and a target, row 0 pads.
                for row in [8, 3, PAD as usize] {
                    let mut dir = vec![0.0f32; n];
                    for x in &mut dir[row * e..(row + 1) * e] {
                        *x = rng.uniform();
                    }
                    dirs.push(dir);
                }
            }
            for dir in dirs {
                let analytic: f64 = g.iter().zip(&dir).map(|(a, d)| (a * d) as f64).sum();
                let fd = fd_along(param, &dir, 1e-2, || loss_of(&model, &b));
                assert!(
                    (analytic - fd).abs() <= 5e-5 + 1e-2 * fd.abs(),
                    "{what}: parameter {p} ({}): gradient·dir {analytic} but finite differences {fd}",
                    names[p]
                );
            }
        }
        let never_read = &grads[table][8 * e..9 * e];
        assert!(
            never_read.iter().any(|&x| x != 0.0),
            "{what}: {never_read:?}"
        );

        let (src, tgt): (&[u32], &[u32]) = (&[3, 4, 5], &[6, 7]);
        let want = teacher_forced_logits(&model, src, tgt);
        let mut rec = Recorder::new(ctx, "stream");
        let mut stream = model.stream(&mut rec, &[src]).unwrap();
        rec.submit();
        for (t, &id) in [BOS].iter().chain(tgt).enumerate() {
            let mut rec = Recorder::new(ctx, "token");
            let logits = stream.feed(&mut rec, &[id]).unwrap();
            let got = rec.submit_read(&logits).unwrap();
            let v = cfg.tgt_vocab;
            for (g, w) in got.iter().zip(&want[t * v..(t + 1) * v]) {
                assert!((g - w).abs() < 1e-4, "{what} step {t}: {g} vs {w}");
            }
        }

        let path = std::env::temp_dir().join(format!("rnn_wgpu_tied_{i}.safetensors"));
        model.save(&path).unwrap();
        let other = Seq2Seq::new(ctx, cfg, seed + 7)
            .unwrap()
            .with_tied_embeddings(seed + 8)
            .unwrap();
        assert_ne!(loss_of(&other, &b), loss_of(&model, &b), "{what}");
        other.load(&path).unwrap();
        assert_eq!(loss_of(&other, &b), loss_of(&model, &b), "{what}");
        assert!(
            untied.load(&path).is_err(),
            "{what}: an untied model loads a tied file"
        );
        std::fs::remove_file(&path).ok();
    }
}

/// The ensemble's next-token log-probabilities after `prefix`: each member's
/// teacher-forced log-softmax, their mean renormalized, in f64.
fn ensemble_next(models: &[&Seq2Seq], src: &[u32], prefix: &[u32]) -> Vec<f64> {
    let v = models[0].config().tgt_vocab;
    let t = prefix.len();
    let mut mean = vec![0.0; v];
    for m in models {
        let logits = teacher_forced_logits(m, src, prefix);
        for (a, lp) in mean
            .iter_mut()
            .zip(log_softmax(&logits[t * v..(t + 1) * v]))
        {
            *a += lp / models.len() as f64;
        }
    }
    let top = mean.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
    let lse = top + mean.iter().map(|&x| (x - top).exp()).sum::<f64>().ln();
    mean.iter().map(|&x| x - lse).collect()
}

#[test]
fn an_ensemble_decodes_from_the_mean_of_its_members_log_probabilities() {
    let ctx = ctx();
    // Different links, depths and encoders; input feeding carries a state of its own.
    let members = [
        Seq2Seq::new(ctx, config(Link::None, EncoderKind::Lstm, true, 1), 90).unwrap(),
        Seq2Seq::new(ctx, config(LINKS[1], EncoderKind::Lstm, true, 2), 91).unwrap(),
        Seq2Seq::new(ctx, config(LINKS[3], TRANSFORMER, true, 1), 92).unwrap(),
    ];
    // Larger weights than the initialization's: peaked distributions that depend
    // on the prefix, so a hypothesis decoded from another's state scores visibly
    // differently.
    for m in &members {
        for p in m.params() {
            let scaled: Vec<f32> = p.value.to_vec().unwrap().iter().map(|x| 3.0 * x).collect();
            p.value.write(&scaled).unwrap();
        }
    }
    let models: Vec<&Seq2Seq> = members.iter().collect();
    let ensemble = Ensemble::new(&models).unwrap();
    let sources: [&[u32]; 3] = [&[3, 4, 5, 6], &[7], &[8, 9, 10]];
    let greedy = ensemble.greedy(ctx, &sources, 5).unwrap();
    for (s, got) in greedy.iter().enumerate() {
        let mut want = vec![];
        while want.len() < 5 {
            let lp = ensemble_next(&models, sources[s], &want);
            let best = (0..lp.len())
                .max_by(|&a, &b| lp[a].total_cmp(&lp[b]))
                .unwrap() as u32;
            if best == EOS {
                break;
            }
            want.push(best);
        }
        assert_eq!(got, &want, "source {s}: greedy");
    }
    // With k = V every one-token prefix survives the first step, so after two
    // steps the best hypothesis (alpha 0) is the best of every output of at
    // most two steps.
    let v = members[0].config().tgt_vocab;
    let beams = ensemble.beam_search(ctx, &sources, v, 2, 0.0).unwrap();
    for (s, hyps) in beams.iter().enumerate() {
        let src = sources[s];
        let first = ensemble_next(&models, src, &[]);
        let mut best = (f64::NEG_INFINITY, vec![]);
        for y1 in 0..v as u32 {
            if y1 == EOS {
                if first[y1 as usize] > best.0 {
                    best = (first[y1 as usize], vec![]);
                }
                continue;
            }
            let second = ensemble_next(&models, src, &[y1]);
            for y2 in 0..v as u32 {
                let score = first[y1 as usize] + second[y2 as usize];
                if score > best.0 {
                    let tokens = if y2 == EOS { vec![y1] } else { vec![y1, y2] };
                    best = (score, tokens);
                }
            }
        }
        assert_eq!(hyps[0].tokens, best.1, "source {s}: the best of all");
        assert!((hyps[0].score as f64 - best.0).abs() < 1e-3, "source {s}");
    }
    // Longer searches reorder the hypotheses (and every member's state) each step.
    let beams = ensemble.beam_search(ctx, &sources, 3, 6, 0.0).unwrap();
    for (s, hyps) in beams.iter().enumerate() {
        assert_eq!(hyps.len(), 3, "source {s}");
        assert_beam_scores(&format!("source {s}"), hyps, |h| {
            let ends: &[u32] = if h.finished { &[EOS] } else { &[] };
            let steps = h.tokens.iter().chain(ends).enumerate();
            steps
                .map(|(t, &y)| ensemble_next(&models, sources[s], &h.tokens[..t])[y as usize])
                .sum()
        });
    }
}

#[test]
fn an_ensemble_needs_members_sharing_vocabularies_and_special_tokens() {
    let ctx = ctx();
    assert!(matches!(Ensemble::new(&[]), Err(Error::Empty { .. })));
    let a = Seq2Seq::new(ctx, config(Link::None, EncoderKind::Lstm, true, 1), 1).unwrap();
    let mut wider = config(Link::None, EncoderKind::Lstm, true, 1);
    wider.tgt_vocab = 10;
    let other_eos = config(LINKS[2], EncoderKind::Lstm, true, 1).with_eos(3);
    for cfg in [wider, other_eos] {
        let b = Seq2Seq::new(ctx, cfg, 2).unwrap();
        assert!(
            matches!(Ensemble::new(&[&a, &b]), Err(Error::InvalidArgument { .. })),
            "{cfg:?}"
        );
    }
    let c = Seq2Seq::new(ctx, config(LINKS[2], EncoderKind::Lstm, false, 2), 3).unwrap();
    assert_eq!(Ensemble::new(&[&a, &c]).unwrap().members().len(), 2);
}
