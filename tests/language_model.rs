//! The language model: chunks with carried state give the logits of one long
//! sequence, gradients of a chunk (its initial state held fixed, as truncated
//! BPTT treats it) match central differences, and a small model learns a
//! periodic text and samples it back.

mod common;

use common::{ctx, fd_along, Rng};
use rnn_wgpu::data::{Batch, Streams};
use rnn_wgpu::models::language_model::State;
use rnn_wgpu::models::{LanguageModel, LanguageModelConfig};
use rnn_wgpu::nn::{Cell, Mode, Module};
use rnn_wgpu::ops::sample::Sampling;
use rnn_wgpu::train::{fit, FitConfig, Method, OptimConfig, Optimizer, Stop};
use rnn_wgpu::{Error, Recorder, Tape};

const MODES: [Cell; 5] = [
    Cell::Recurrent(Mode::Lstm),
    Cell::Recurrent(Mode::Gru),
    Cell::Recurrent(Mode::RnnTanh),
    Cell::MinGru,
    Cell::MinLstm,
];

fn ids(rng: &mut Rng, n: usize, vocab: u32) -> Vec<u32> {
    (0..n)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect()
}

/// Columns `from..to` of a row-major `[B, T]` array.
fn columns(x: &[u32], b: usize, t: usize, from: usize, to: usize) -> Vec<u32> {
    (0..b)
        .flat_map(|r| x[r * t + from..r * t + to].to_vec())
        .collect()
}

/// A two-layer model of `vocab` tokens, embeddings of 5 and 6 units.
fn small(cell: impl Into<Cell>, vocab: usize, seed: u64) -> LanguageModel {
    let cfg = LanguageModelConfig::new(vocab)
        .with_emb(5)
        .with_hidden(6)
        .with_layers(2)
        .with_cell(cell.into());
    LanguageModel::new(ctx(), cfg, seed).unwrap()
}

#[test]
fn chunks_with_carried_state_give_the_logits_of_one_sequence() {
    let ctx = ctx();
    let (b, t, v) = (2, 7, 9);
    for (i, mode) in MODES.into_iter().enumerate() {
        let lm = small(mode, v, 40 + i as u64);
        let x = ids(&mut Rng::new(3), b * t, v as u32);
        let mut tape = Tape::eval(ctx, "whole");
        let (whole, _) = lm.forward(&mut tape, &x, b, t, None).unwrap();
        let first = columns(&x, b, t, 0, 4);
        let second = columns(&x, b, t, 4, t);
        let (l1, s1) = lm.forward(&mut tape, &first, b, 4, None).unwrap();
        let (l2, _) = lm.forward(&mut tape, &second, b, t - 4, Some(&s1)).unwrap();
        tape.into_recorder().submit();
        let (whole, l1, l2) = (
            whole.to_vec().unwrap(),
            l1.to_vec().unwrap(),
            l2.to_vec().unwrap(),
        );
        for r in 0..b {
            let chunked: Vec<f32> = l1[r * 4 * v..(r + 1) * 4 * v]
                .iter()
                .chain(&l2[r * (t - 4) * v..(r + 1) * (t - 4) * v])
                .copied()
                .collect();
            let want = &whole[r * t * v..(r + 1) * t * v];
            for (k, (a, w)) in chunked.iter().zip(want).enumerate() {
                assert!(
                    (a - w).abs() < 1e-5,
                    "{mode:?} row {r} element {k}: {a} vs {w}"
                );
            }
        }
    }
}

/// A stream (a chunk, then a token at a time, and a fork) gives the logits of
/// the whole sequence at each step, for every cell, with zoneout (its
/// expectation) and for a projected LSTM; an id past the vocabulary is refused.
#[test]
fn streams_give_the_logits_of_the_whole_sequence() {
    let ctx = ctx();
    let (b, t, v) = (2, 6, 9);
    let mut models: Vec<(String, LanguageModel)> = MODES
        .into_iter()
        .enumerate()
        .map(|(i, mode)| (format!("{mode:?}"), small(mode, v, 60 + i as u64)))
        .collect();
    let zoned = small(Mode::Gru, v, 66).with_zoneout(0.3, 0.0, 1).unwrap();
    models.push(("GRU with zoneout".into(), zoned));
    let projected = small(Mode::Lstm, v, 67)
        .with_projection(ctx, 4, 68)
        .unwrap();
    models.push(("LSTM projected to 4".into(), projected));
    for (mode, lm) in models {
        let x = ids(&mut Rng::new(4), b * t, v as u32);
        let mut tape = Tape::eval(ctx, "whole");
        let (whole, _) = lm.forward(&mut tape, &x, b, t, None).unwrap();
        tape.into_recorder().submit();
        let whole = whole.to_vec().unwrap();
        let want = |step: usize| -> Vec<f32> {
            (0..b)
                .flat_map(|r| whole[(r * t + step) * v..(r * t + step + 1) * v].to_vec())
                .collect()
        };
        let close = |what: String, got: &[f32], want: &[f32]| {
            for (k, (a, w)) in got.iter().zip(want).enumerate() {
                assert!((a - w).abs() < 1e-5, "{what} element {k}: {a} vs {w}");
            }
        };
        let mut rec = Recorder::new(ctx, "stream");
        let mut stream = lm.stream(&mut rec, b).unwrap();
        let logits = stream.feed(&mut rec, &columns(&x, b, t, 0, 3)).unwrap();
        assert_eq!(logits.shape(), [b, v]);
        close(
            format!("{mode} chunk"),
            &rec.submit_read(&logits).unwrap(),
            &want(2),
        );
        let fork = stream.clone();
        for step in 3..t {
            let mut rec = Recorder::new(ctx, "token");
            let logits = stream
                .feed(&mut rec, &columns(&x, b, t, step, step + 1))
                .unwrap();
            close(
                format!("{mode} step {step}"),
                &rec.submit_read(&logits).unwrap(),
                &want(step),
            );
        }
        let mut fork = fork;
        let mut rec = Recorder::new(ctx, "fork");
        let logits = fork.feed(&mut rec, &columns(&x, b, t, 3, 4)).unwrap();
        close(
            format!("{mode} fork"),
            &rec.submit_read(&logits).unwrap(),
            &want(3),
        );
        let mut rec = Recorder::new(ctx, "bad");
        assert!(matches!(
            stream.feed(&mut rec, &[0, v as u32]),
            Err(Error::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            stream.feed(&mut rec, &[0, 1, 2]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert_eq!(rec.dispatches(), 0);
    }
}

fn chunk(x: &[u32], b: usize, t: usize) -> Batch {
    // Inputs are x[.., 0..t−1], targets x[.., 1..t].
    Batch {
        ids: columns(x, b, t, 0, t - 1),
        targets: columns(x, b, t, 1, t),
        lengths: vec![t - 1; b],
        size: b,
        steps: t - 1,
        chars: None,
    }
}

#[test]
fn a_chunk_has_the_gradients_of_its_loss_from_a_fixed_state() {
    let ctx = ctx();
    let (b, t, v) = (3, 6, 8);
    for (i, mode) in MODES.into_iter().enumerate() {
        let lm = LanguageModel::new(
            ctx,
            LanguageModelConfig::new(v)
                .with_emb(4)
                .with_hidden(5)
                .with_layers(2)
                .with_cell(mode),
            60 + i as u64,
        )
        .unwrap();
        let mut rng = Rng::new(9 + i as u64);
        let warm = chunk(&ids(&mut rng, b * t, v as u32), b, t);
        let batch = chunk(&ids(&mut rng, b * t, v as u32), b, t);
        let mut tape = Tape::eval(ctx, "warm");
        let (_, state): (_, State) = lm.loss(&mut tape, &warm, None).unwrap();
        tape.into_recorder().submit();
        let loss_of = || -> f64 {
            let mut tape = Tape::eval(ctx, "loss");
            let (loss, _) = lm.loss(&mut tape, &batch, Some(&state)).unwrap();
            tape.into_recorder().submit();
            loss.to_vec().unwrap()[0] as f64
        };
        let mut tape = Tape::train(ctx, "grads");
        lm.zero_grad(tape.rec()).unwrap();
        let (loss, _) = lm.loss(&mut tape, &batch, Some(&state)).unwrap();
        tape.backward(&loss).unwrap();
        tape.into_recorder().submit();
        for (p, param) in lm.params().iter().enumerate() {
            let value = param.value.to_vec().unwrap();
            let grad = param.grad.to_vec().unwrap();
            let n = value.len();
            let mut dir = vec![0.0f32; n];
            for _ in 0..12.min(n) {
                dir[(rng.next_u64() % n as u64) as usize] = rng.uniform();
            }
            let analytic: f64 = grad.iter().zip(&dir).map(|(g, d)| (g * d) as f64).sum();
            let fd = fd_along(param, &dir, 1e-2, loss_of);
            assert!(
                (analytic - fd).abs() <= 5e-5 + 1e-2 * fd.abs(),
                "{mode:?} parameter {p}: gradient·dir {analytic} but finite differences {fd}"
            );
        }
    }
}

/// Dropout changes training losses only: evaluation gives the logits of the
/// model without it, two training forwards draw different masks, and a drop
/// probability of 1 is refused.
#[test]
fn dropout_acts_in_training_only() {
    let ctx = ctx();
    let (b, t, v) = (2, 5, 7);
    let batch = chunk(&ids(&mut Rng::new(4), b * t, v as u32), b, t);
    let plain = small(Mode::Lstm, v, 70);
    let dropped = small(Mode::Lstm, v, 70).with_dropout(0.5, 3).unwrap();
    let loss = |lm: &LanguageModel, train: bool| -> f32 {
        let mut tape = if train {
            Tape::train(ctx, "loss")
        } else {
            Tape::eval(ctx, "loss")
        };
        let (loss, _) = lm.loss(&mut tape, &batch, None).unwrap();
        tape.into_recorder().submit();
        loss.to_vec().unwrap()[0]
    };
    assert_eq!(loss(&plain, false), loss(&dropped, false));
    assert_eq!(loss(&plain, true), loss(&plain, false));
    let (first, second) = (loss(&dropped, true), loss(&dropped, true));
    assert!(
        first != loss(&plain, true) && first != second,
        "{first} {second}"
    );
    let err = small(Mode::Gru, v, 70).with_dropout(1.0, 3).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[test]
fn learns_a_periodic_text_and_samples_it_back() {
    let ctx = ctx();
    let text: Vec<char> = "hello world ".chars().collect();
    let alphabet: Vec<char> = {
        let mut a = text.clone();
        a.sort();
        a.dedup();
        a
    };
    let id = |c: char| alphabet.iter().position(|&a| a == c).unwrap() as u32;
    let stream: Vec<u32> = text.iter().cycle().take(2000).map(|&c| id(c)).collect();
    let lm = LanguageModel::new(
        ctx,
        LanguageModelConfig::new(alphabet.len())
            .with_emb(8)
            .with_hidden(32)
            .with_layers(1)
            .with_mode(Mode::Lstm),
        5,
    )
    .unwrap();
    let cfg = OptimConfig::new(Method::ADAM, 1e-2).with_max_norm(Some(5.0));
    let mut opt = Optimizer::new(ctx, cfg, lm.params()).unwrap();
    let (b, t) = (4, 17);
    let mut state = None;
    let mut last = f32::NAN;
    for step in 0..120 {
        // Four streams at different offsets, each chunk continuing the last
        // (wrapping every 300 characters).
        let x: Vec<u32> = (0..b)
            .flat_map(|r| {
                let start = r * 400 + step * (t - 1) % 300;
                stream[start..start + t].to_vec()
            })
            .collect();
        let batch = chunk(&x, b, t);
        let (report, next) = lm
            .train_step(ctx, &batch, state.as_ref(), &mut opt)
            .unwrap();
        state = Some(next);
        last = report.loss;
    }
    assert!(last < 0.05, "loss {last} after training");
    let prime: Vec<u32> = "hel".chars().map(id).collect();
    let out = lm.sample(ctx, &prime, 15, &Sampling::at(0.05), 1).unwrap();
    let text: String = out.iter().map(|&i| alphabet[i as usize]).collect();
    assert_eq!(text, "lo world hello ");
}

/// What only the run-time cells have is refused for minGRU and minLSTM (and
/// accepted as a no-op when off).
#[test]
fn only_an_lstm_model_is_projected() {
    for mode in [Mode::Gru, Mode::RnnTanh] {
        let err = small(mode, 7, 1).with_projection(ctx(), 3, 1).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    what: "projection",
                    ..
                }
            ),
            "{mode:?}: {err}"
        );
    }
    let projected = small(Mode::Lstm, 7, 1)
        .with_projection(ctx(), 3, 1)
        .unwrap();
    assert_eq!(projected.recurrent().unwrap().proj_size(), Some(3));
}

#[test]
fn minimal_cells_refuse_what_they_do_not_have() {
    let v = 7;
    for cell in [Cell::MinGru, Cell::MinLstm] {
        assert!(small(cell, v, 1).recurrent().is_none());
        small(cell, v, 1).with_zoneout(0.0, 0.0, 1).unwrap();
        small(cell, v, 1).with_recurrent_dropout(0.0, 1).unwrap();
        for err in [
            small(cell, v, 1).with_zoneout(0.1, 0.0, 1).unwrap_err(),
            small(cell, v, 1)
                .with_recurrent_dropout(0.1, 1)
                .unwrap_err(),
            small(cell, v, 1).with_layer_norm().unwrap_err(),
            small(cell, v, 1).with_projection(ctx(), 3, 1).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::InvalidArgument { .. }),
                "{cell:?}: {err}"
            );
        }
        let names: Vec<String> = small(cell, v, 1)
            .named_params()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert!(names.contains(&"rnn.weight_ih_l1".to_string()), "{names:?}");
    }
}

/// The state a chunk ends in is an LSTM's (h and c) for an LSTM and a hidden
/// state for every other cell; handing one model the other kind is an error
/// naming the model, not a state silently half read.
#[test]
fn a_state_of_the_other_kind_is_refused() {
    let (b, t, v) = (2, 3, 7);
    let mut rng = Rng::new(5);
    let batch = chunk(&ids(&mut rng, b * t, v as u32), b, t);
    let mut states = vec![];
    for (i, cell) in MODES.into_iter().enumerate() {
        let lm = small(cell, v, 30 + i as u64);
        let mut tape = Tape::eval(ctx(), "state");
        let (_, state) = lm.loss(&mut tape, &batch, None).unwrap();
        tape.into_recorder().submit();
        let lstm = cell == Cell::Recurrent(Mode::Lstm);
        assert_eq!(matches!(state, State::Lstm { .. }), lstm, "{cell:?}");
        assert_eq!(state.h().shape(), [2, b, 6]);
        states.push((lm, state));
    }
    let lstm = |s: &State| matches!(s, State::Lstm { .. });
    for (lm, own) in &states {
        for (_, other) in &states {
            let mut tape = Tape::eval(ctx(), "other");
            match lm.loss(&mut tape, &batch, Some(other)) {
                Ok(_) => assert_eq!(lstm(own), lstm(other)),
                Err(e) => {
                    assert_ne!(lstm(own), lstm(other));
                    assert!(
                        matches!(
                            e,
                            Error::InvalidArgument {
                                op: "LanguageModel",
                                what: "state",
                                ..
                            }
                        ),
                        "{e}"
                    );
                }
            }
        }
    }
}

/// `train::fit` over streams hands each chunk the state the one before it ended
/// in (its losses are those of a loop passing the state by hand), and a run
/// stopped inside an epoch and resumed into a model of another seed continues
/// from the state it saved: the same losses bit for bit and the same weights,
/// for an LSTM's state (h and c) and a GRU's (h), dropout and zoneout on.
#[test]
fn fit_carries_the_state_across_chunks_and_into_a_resume() {
    let text = ids(&mut Rng::new(31), 300, 7);
    let dir = std::env::temp_dir().join(format!("rnn-wgpu-lm-fit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (n, mode) in [Mode::Lstm, Mode::Gru].into_iter().enumerate() {
        let model = |seed| {
            small(mode, 7, seed)
                .with_dropout(0.2, 9)
                .unwrap()
                .with_zoneout(0.1, if mode == Mode::Lstm { 0.1 } else { 0.0 }, 4)
                .unwrap()
        };
        let optimizer = |m: &LanguageModel| {
            Optimizer::new(ctx(), OptimConfig::new(Method::ADAM, 1e-2), m.params()).unwrap()
        };
        let weights = |m: &LanguageModel| -> Vec<Vec<f32>> {
            m.named_params().iter().map(|p| p.read().unwrap()).collect()
        };
        let streams = Streams::new(&text, 4, 8).unwrap();
        assert_eq!(streams.chunks(), 9);

        let a = model(1);
        let mut opt = optimizer(&a);
        let mut by_hand = vec![];
        for _epoch in 0..2 {
            let mut state: Option<State> = None;
            for i in 0..streams.chunks() {
                let chunk = streams.chunk(i).unwrap();
                let (report, next) = a
                    .train_step(ctx(), &chunk, state.as_ref(), &mut opt)
                    .unwrap();
                state = Some(next);
                by_hand.push(report.loss);
            }
        }

        let cfg = FitConfig::new(2);
        let b = model(1);
        let mut opt = optimizer(&b);
        let full = fit(
            ctx(),
            &b,
            &mut opt,
            &mut streams.clone(),
            &cfg,
            |_| Ok(0.0),
            |_| {},
        )
        .unwrap();
        let losses: Vec<f32> = full.losses.iter().map(|&(_, l)| l).collect();
        assert_eq!(losses, by_hand, "{mode:?}: fit's losses are the loop's");

        let ck = dir.join(format!("lm{n}.safetensors"));
        let cfg = cfg.with_checkpoint(Some(ck));
        let c = model(1);
        let mut opt = optimizer(&c);
        let part = cfg.clone().with_max_steps(Some(13));
        let first = fit(
            ctx(),
            &c,
            &mut opt,
            &mut streams.clone(),
            &part,
            |_| Ok(0.0),
            |_| {},
        )
        .unwrap();
        assert_eq!(first.stop, Some(Stop::Steps));

        let d = model(2);
        assert_ne!(weights(&d), weights(&a));
        let mut opt = optimizer(&d);
        let resumed = fit(
            ctx(),
            &d,
            &mut opt,
            &mut streams.clone(),
            &cfg.with_resume(true),
            |_| Ok(0.0),
            |_| {},
        )
        .unwrap();
        assert_eq!(
            resumed.losses, full.losses,
            "{mode:?}: losses step for step"
        );
        assert_eq!(
            weights(&d),
            weights(&a),
            "{mode:?}: the same weights at the end"
        );
        assert!(resumed.minutes >= first.minutes, "the clock goes on");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
