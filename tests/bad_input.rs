//! Bad input to a training step, one class at a time: each gives its typed error
//! and leaves the model's parameters and the optimizer's step count exactly as
//! they were, and a good step afterwards still trains. `cargo test --release
//! --test bad_input -- --nocapture` prints the table of inputs and errors.

mod common;

use common::ctx;
use rnn_wgpu::data::readers::parse_conllu;
use rnn_wgpu::data::Batch;
use rnn_wgpu::models::{BiLstmTagger, TaggerConfig};
use rnn_wgpu::nn::Module;
use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
use rnn_wgpu::{Context, Error, Tape};

const VOCAB: usize = 20;
const TAGS: usize = 5;

/// The toy task's tagger sizes: `emb` embeddings, `hidden` units per direction.
fn toy(emb: usize, hidden: usize) -> TaggerConfig {
    TaggerConfig::new(VOCAB, TAGS)
        .with_emb(emb)
        .with_hidden(hidden)
        .with_layers(1)
}

fn good_batch() -> Batch {
    let a: (&[u32], &[u32]) = (&[1, 2, 3], &[0, 1, 2]);
    let b: (&[u32], &[u32]) = (&[4, 5], &[3, 4]);
    Batch::pad(&[a, b], 0).unwrap()
}

/// Every parameter's bits (NaN compares equal to itself this way).
fn snapshot(model: &BiLstmTagger) -> Vec<Vec<u32>> {
    model
        .named_params()
        .iter()
        .map(|n| n.read().unwrap().iter().map(|v| v.to_bits()).collect())
        .collect()
}

type Case = (
    &'static str,
    Box<dyn Fn(&Batch) -> Batch>,
    fn(&Error) -> bool,
);

#[test]
fn each_class_of_bad_input_is_a_typed_error_and_changes_nothing() {
    let ctx = ctx();
    let model = BiLstmTagger::new(ctx, toy(8, 6), 3).unwrap();
    let mut opt =
        Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 0.01), model.params()).unwrap();
    model.train_step(ctx, &good_batch(), &mut opt).unwrap();

    let cases: Vec<Case> = vec![
        (
            "ids not B·T long",
            Box::new(|b| Batch {
                ids: b.ids[1..].to_vec(),
                ..b.clone()
            }),
            |e| matches!(e, Error::ShapeMismatch { .. }),
        ),
        (
            "token id past the vocabulary",
            Box::new(|b| {
                let mut ids = b.ids.clone();
                ids[1] = VOCAB as u32;
                Batch { ids, ..b.clone() }
            }),
            |e| matches!(e, Error::IndexOutOfRange { .. }),
        ),
        (
            "target class past the tags",
            Box::new(|b| {
                let mut targets = b.targets.clone();
                targets[0] = TAGS as u32 + 3;
                Batch {
                    targets,
                    ..b.clone()
                }
            }),
            |e| matches!(e, Error::IndexOutOfRange { .. }),
        ),
        (
            "length 0",
            Box::new(|b| Batch {
                lengths: vec![3, 0],
                ..b.clone()
            }),
            |e| matches!(e, Error::LengthOutOfRange { .. }),
        ),
        (
            "length past T",
            Box::new(|b| Batch {
                lengths: vec![4, 2],
                ..b.clone()
            }),
            |e| matches!(e, Error::LengthOutOfRange { .. }),
        ),
        (
            "lengths not one per sequence",
            Box::new(|b| Batch {
                lengths: vec![3],
                ..b.clone()
            }),
            |e| matches!(e, Error::ShapeMismatch { .. }),
        ),
        (
            "empty batch",
            Box::new(|_| Batch {
                ids: vec![],
                targets: vec![],
                lengths: vec![],
                size: 0,
                steps: 0,
                chars: None,
            }),
            |e| matches!(e, Error::Empty { .. }),
        ),
        (
            "only padding targets",
            Box::new(|b| Batch {
                targets: vec![Batch::IGNORE; b.targets.len()],
                ..b.clone()
            }),
            |e| matches!(e, Error::Empty { .. }),
        ),
    ];
    println!("{:<32} error", "input");
    for (what, make, expected) in &cases {
        let before = (snapshot(&model), opt.steps());
        let err = model
            .train_step(ctx, &make(&good_batch()), &mut opt)
            .unwrap_err();
        println!("{what:<32} {err}");
        assert!(expected(&err), "{what}: {err:?}");
        assert!(
            (snapshot(&model), opt.steps()) == before,
            "{what}: the model changed"
        );
    }

    // A NaN weight makes the loss NaN: the step is refused with its number and
    // the optimizer writes nothing (the NaN row stays, every other value too).
    let emb = &model.params()[0].value;
    let saved = emb.to_vec().unwrap();
    let mut poisoned = saved.clone();
    poisoned[8..16].fill(f32::NAN); // token 1's embedding
    emb.write(&poisoned).unwrap();
    let before = (snapshot(&model), opt.steps());
    let err = model.train_step(ctx, &good_batch(), &mut opt).unwrap_err();
    println!("{:<32} {err}", "NaN in the loss");
    assert!(matches!(err, Error::NonFinite { step: 2, .. }), "{err:?}");
    assert!(
        (snapshot(&model), opt.steps()) == before,
        "NaN loss: the model changed"
    );
    emb.write(&saved).unwrap();

    // A tensor past the device's largest storage binding: the forward that would
    // bind it is refused before anything is recorded.
    let big = BiLstmTagger::new(
        ctx,
        TaggerConfig::new(device_limit_vocab(ctx), TAGS)
            .with_emb(64)
            .with_hidden(6)
            .with_layers(1),
        3,
    )
    .unwrap();
    let mut tape = Tape::eval(ctx, "too big");
    let err = big.forward(&mut tape, &good_batch()).unwrap_err();
    println!("{:<32} {err}", "embedding past the binding limit");
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err:?}");
    assert_eq!(tape.rec().dispatches(), 0);
    drop((tape, big));

    // A malformed data file.
    let err = parse_conllu("1\tcat\tcat\tNOUN\n\n", "bad.conllu").unwrap_err();
    println!("{:<32} {err}", "malformed CoNLL-U line");
    assert!(matches!(err, Error::Parse { line: 1, .. }), "{err:?}");

    // After all of it a good step still trains.
    let before = snapshot(&model);
    model.train_step(ctx, &good_batch(), &mut opt).unwrap();
    assert!(snapshot(&model) != before);
    assert_eq!(opt.steps(), 2);
}

/// A vocabulary whose 64-wide f32 embedding exceeds the largest storage binding.
fn device_limit_vocab(ctx: &Context) -> usize {
    let limit = ctx.limits().max_storage_buffer_binding_size as usize;
    limit / (64 * 4) + 1
}

/// Scalar and configuration arguments out of range: each is `InvalidArgument`,
/// naming the argument and the value.
#[test]
fn out_of_range_arguments_are_invalid_argument_errors() {
    use rnn_wgpu::models::{EncoderKind, Link, Seq2Seq, Seq2SeqConfig};
    use rnn_wgpu::nn::Dropout;
    use rnn_wgpu::train::Schedule;
    let ctx = ctx();
    let model = BiLstmTagger::new(ctx, toy(8, 6), 3).unwrap();
    let adam = OptimConfig::new(Method::ADAM, 0.01);
    let configs: Vec<(&str, OptimConfig)> = vec![
        ("NaN learning rate", adam.with_lr(f32::NAN)),
        ("negative learning rate", adam.with_lr(-1e-3)),
        ("infinite learning rate", adam.with_lr(f32::INFINITY)),
        ("negative weight decay", adam.with_weight_decay(-0.1)),
        ("NaN weight decay", adam.with_weight_decay(f32::NAN)),
        ("max_norm 0", adam.with_max_norm(Some(0.0))),
        ("NaN clip_value", adam.with_clip_value(Some(f32::NAN))),
        (
            "beta1 of 1",
            OptimConfig::new(
                Method::Adam {
                    beta1: 1.0,
                    beta2: 0.999,
                    eps: 1e-8,
                },
                0.01,
            ),
        ),
        (
            "eps 0",
            OptimConfig::new(
                Method::AdamW {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 0.0,
                },
                0.01,
            ),
        ),
        (
            "NaN momentum",
            OptimConfig::new(Method::Sgd { momentum: f32::NAN }, 0.1),
        ),
        (
            "cosine min_lr NaN",
            adam.with_schedule(Schedule::Cosine {
                total: 10,
                min_lr: f32::NAN,
            }),
        ),
        (
            "step gamma 0",
            adam.with_schedule(Schedule::Step {
                every: 5,
                gamma: 0.0,
            }),
        ),
    ];
    for (what, cfg) in configs {
        let err = Optimizer::new(ctx, cfg, model.params()).unwrap_err();
        println!("{what:<32} {err}");
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    op: "optimizer",
                    ..
                }
            ),
            "{what}: {err:?}"
        );
    }

    // Dropout that would drop everything: refused by the model, and by the layer
    // at the step.
    let err = BiLstmTagger::new(ctx, toy(8, 6), 3)
        .unwrap()
        .with_dropout(1.0, 1)
        .unwrap_err();
    println!("{:<32} {err}", "tagger dropout 1");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let all = Dropout::new(1.0, 1);
    let mut tape = Tape::train(ctx, "dropout");
    let x = tape.from_slice(&[2], &[1.0, 2.0]).unwrap();
    let err = all.apply(&mut tape, &x).unwrap_err();
    println!("{:<32} {err}", "drop probability 1");
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                what: "drop probability",
                ..
            }
        ),
        "{err:?}"
    );
    let _ = Dropout::new(0.5, 1); // a valid probability builds

    // Ids and targets of different lengths.
    let err = Batch::pad(&[(&[1, 2, 3][..], &[0, 1][..])], 0).unwrap_err();
    println!("{:<32} {err}", "2 targets for 3 ids");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("3 ids, 2 targets"), "{err}");

    // A decoder whose begin and end ids are the same, and a NaN length penalty.
    let cfg = Seq2SeqConfig::new(7, 7, 1, 1)
        .with_emb(4)
        .with_hidden(4)
        .with_layers(1)
        .with_bidirectional(false)
        .with_encoder(EncoderKind::Lstm)
        .with_link(Link::None);
    let err = Seq2Seq::new(ctx, cfg, 1).unwrap_err();
    println!("{:<32} {err}", "bos = eos");
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                what: "bos and eos",
                ..
            }
        ),
        "{err:?}"
    );
    let model = Seq2Seq::new(ctx, cfg.with_eos(2), 1).unwrap();
    let err = model
        .beam_search(ctx, &[&[3, 4]], 2, 4, f32::NAN)
        .unwrap_err();
    println!("{:<32} {err}", "NaN length penalty");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

/// Careless input through the models' and the tape's surface: each refused with
/// an error that names the op the caller called and the argument.
#[test]
fn careless_input_is_refused_naming_the_op_called() {
    use rnn_wgpu::models::{LanguageModel, LanguageModelConfig};
    use rnn_wgpu::nn::recurrent::Mode;
    use rnn_wgpu::nn::LayerNorm;
    use rnn_wgpu::{Tensor, Var};
    let ctx = ctx();

    // A padding word past the vocabulary.
    let err = BiLstmTagger::new(ctx, toy(8, 6).with_pad(VOCAB as u32), 1)
        .expect_err("a pad id past the vocabulary was accepted");
    assert!(
        matches!(err, Error::IndexOutOfRange { op: "BiLstmTagger::new", value, bound: VOCAB, .. } if value == VOCAB),
        "{err}"
    );

    // A language model reads the batch's lengths: past its steps is refused,
    // and a shorter sequence ends in the state at its length.
    let lm = LanguageModel::new(
        ctx,
        LanguageModelConfig::new(7)
            .with_emb(4)
            .with_hidden(5)
            .with_layers(1)
            .with_mode(Mode::Gru),
        2,
    )
    .unwrap();
    let ids: Vec<u32> = vec![1, 2, 3, 4, 5, 6];
    let full = Batch::pad(&[(&ids[..3], &ids[1..4]), (&ids[2..5], &ids[3..6])], 0).unwrap();
    let mut past = full.clone();
    past.lengths = vec![3, 4];
    let mut tape = Tape::train(ctx, "lm");
    let err = lm.loss(&mut tape, &past, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthOutOfRange {
                op: "LanguageModel::loss",
                index: 1,
                value: 4,
                max: 3
            }
        ),
        "{err}"
    );
    let short = Batch::pad(&[(&ids[..3], &ids[1..4]), (&ids[2..4], &ids[3..5])], 0).unwrap();
    let one = Batch::pad(&[(&ids[2..4], &ids[3..5])], 0).unwrap();
    let state_at = |batch: &Batch, row: usize| {
        let mut tape = Tape::eval(ctx, "lm");
        let (_, state) = lm.loss(&mut tape, batch, None).unwrap();
        tape.into_recorder().submit();
        let h = state.h().to_vec().unwrap();
        h[row * 5..row * 5 + 5].to_vec()
    };
    let (a, b) = (state_at(&short, 1), state_at(&one, 0));
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() < 1e-5,
            "state at the length: {a:?} against {b:?}"
        );
    }

    // LayerNorm over no features.
    assert!(matches!(
        LayerNorm::new(ctx, 0),
        Err(Error::Empty {
            op: "LayerNorm::new",
            ..
        })
    ));

    // The tape's gather and cat name themselves, not their building blocks.
    let table = Tensor::from_slice(ctx, &[3, 2], &[1.0; 6]).unwrap();
    let mut tape = Tape::train(ctx, "ops");
    let x = Var::constant(table.clone());
    let err = tape.gather(&x, &[0, 3]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::IndexOutOfRange {
                op: "gather",
                index: 1,
                value: 3,
                bound: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = tape.concat(&x, &x, 2).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { op: "cat", .. }),
        "{err}"
    );
}
