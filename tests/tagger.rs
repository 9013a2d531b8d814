//! The BiLSTM tagger end to end: PyTorch's saved weights give PyTorch's logits,
//! seeded training repeats bit for bit, and a checkpoint resumes training with
//! identical losses.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_close, ctx, to_f64};
use rnn_wgpu::data::{Batch, WordChars};
use rnn_wgpu::models::{BiLstmTagger, CharConfig, TaggerConfig};
use rnn_wgpu::nn::{Cell, Mode, Module, Named, SplitMix};
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::train::{
    best_path, fit, Clock, Epochs, Event, FitConfig, Goal, Method, OptimConfig, Optimizer, Stop,
    TrainStep,
};
use rnn_wgpu::{Context, DType, Error, Tape};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fixture file written by tools/tagger.py: its tensors and metadata.
struct Io {
    bytes: Vec<u8>,
    meta: std::collections::HashMap<String, String>,
}

impl Io {
    fn read(name: &str) -> Self {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap_or_default();
        Self { bytes, meta }
    }

    fn meta(&self, key: &str) -> usize {
        self.meta[key].parse().unwrap()
    }

    fn tensor(&self, key: &str) -> (Vec<usize>, Vec<[u8; 4]>) {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap();
        let words = t.data().chunks_exact(4).map(|c| c.try_into().unwrap());
        (t.shape().to_vec(), words.collect())
    }

    /// An i32 tensor as u32s (-1, PyTorch's ignored target, becomes IGNORE).
    fn ints(&self, key: &str) -> Vec<u32> {
        let (_, words) = self.tensor(key);
        words
            .into_iter()
            .map(|w| i32::from_le_bytes(w) as u32)
            .collect()
    }

    fn floats(&self, key: &str) -> Vec<f32> {
        let (_, words) = self.tensor(key);
        words.into_iter().map(f32::from_le_bytes).collect()
    }

    /// `got` against PyTorch's `key` (relative error past 1 in magnitude).
    fn compare(&self, key: &str, got: &[f32], rtol: f64, atol: f64) {
        assert_close(key, got, &to_f64(&self.floats(key)), rtol, atol);
    }

    /// The batch of `ids`, `lengths` and (where present) `targets`.
    fn batch(&self) -> Batch {
        let lengths: Vec<usize> = self.ints("lengths").iter().map(|&n| n as usize).collect();
        let ids = self.ints("ids");
        let targets = if self.has("targets") {
            self.ints("targets")
        } else {
            vec![0; ids.len()]
        };
        Batch {
            targets,
            size: lengths.len(),
            steps: ids.len() / lengths.len(),
            ids,
            lengths,
            chars: None,
        }
    }

    /// The tagger these inputs were made for (`layers` stacked; with characters
    /// where the metadata sizes them) with PyTorch's saved weights `weights`.
    fn tagger(&self, weights: &str, layers: usize) -> BiLstmTagger {
        let chars = self.meta.contains_key("chars").then(|| {
            CharConfig::new(self.meta("chars"))
                .with_emb(self.meta("char_emb"))
                .with_hidden(self.meta("char_hidden"))
        });
        let cfg = TaggerConfig::new(self.meta("vocab"), self.meta("tags"))
            .with_emb(self.meta("emb"))
            .with_hidden(self.meta("hidden"))
            .with_layers(layers)
            .with_chars(chars);
        let model = BiLstmTagger::new(ctx(), cfg, 1).unwrap();
        let path = fixture(weights);
        Checkpoint::load(&path)
            .unwrap()
            .apply(&model.named_params(), &path.display().to_string())
            .unwrap();
        model
    }

    fn has(&self, key: &str) -> bool {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        st.names().contains(&key)
    }
}

#[test]
fn pytorch_state_dict_gives_pytorch_logits() {
    let ctx = ctx();
    let io = Io::read("bilstm_tagger_io.safetensors");
    let model = io.tagger("bilstm_tagger.safetensors", 1);
    let mut tape = Tape::eval(ctx, "logits");
    let logits = model.forward(&mut tape, &io.batch()).unwrap();
    tape.into_recorder().submit();
    assert_eq!(logits.shape(), io.tensor("logits").0);
    // Within 1e-4 of PyTorch, relative above 1.
    io.compare("logits", &logits.to_vec().unwrap(), 1e-4, 1e-4);
}

/// The character-aware two-layer tagger against PyTorch's: logits, the loss and
/// the gradient of every parameter (the character encoder's included) for a batch
/// whose words repeat.
#[test]
fn the_character_aware_tagger_matches_pytorch_forward_and_backward() {
    let ctx = ctx();
    let io = Io::read("char_tagger_io.safetensors");
    let model = io.tagger("char_tagger.safetensors", 2);
    let (char_shape, _) = io.tensor("char_ids");
    let batch = Batch {
        chars: Some(WordChars {
            ids: io.ints("char_ids"),
            lengths: io
                .ints("char_lengths")
                .iter()
                .map(|&n| n as usize)
                .collect(),
            index: io.ints("index"),
            words: char_shape[0],
            steps: char_shape[1],
        }),
        ..io.batch()
    };

    // Without its characters the batch is refused.
    let mut tape = Tape::eval(ctx, "no characters");
    let err = model.forward(&mut tape, &io.batch()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");

    let mut tape = Tape::train(ctx, "char tagger");
    model.zero_grad(tape.rec()).unwrap();
    let logits = model.forward(&mut tape, &batch).unwrap();
    let loss = tape
        .cross_entropy(&logits, &batch.targets, Some(Batch::IGNORE))
        .unwrap();
    tape.backward(&loss).unwrap();
    tape.into_recorder().submit();
    io.compare("logits", &logits.to_vec().unwrap(), 1e-4, 1e-4);
    io.compare("loss", &loss.to_vec().unwrap(), 1e-5, 1e-6);
    let mut checked = 0;
    for entry in model.entries() {
        for named in entry.names {
            let grad = Named {
                tensor: entry.param.grad.clone(),
                ..named.clone()
            };
            let key = format!("grad.{}", named.name);
            io.compare(&key, &grad.read().unwrap(), 1e-4, 1e-5);
            checked += 1;
        }
    }
    // Word and character embeddings, 2 × 2 directions × 4 LSTM tensors, the
    // character LSTM's 2 × 4, fc's 2.
    assert_eq!(checked, 2 + 16 + 8 + 2);
}

const VOCAB: usize = 30;
const TAGS: usize = 5;

/// The toy task's tagger sizes: `emb` embeddings, `hidden` units per direction.
fn toy(emb: usize, hidden: usize) -> TaggerConfig {
    TaggerConfig::new(VOCAB, TAGS)
        .with_emb(emb)
        .with_hidden(hidden)
        .with_layers(1)
}

/// A learnable toy: a word's tag depends on it and on the word before it, so the
/// recurrence has something to carry. Sentences of 2..=11 words, id 0 is padding.
fn toy_batches(count: usize, size: usize, seed: u64) -> Vec<Batch> {
    let mut rng = common::Rng::new(seed);
    (0..count)
        .map(|_| {
            let sents: Vec<(Vec<u32>, Vec<u32>)> = (0..size)
                .map(|_| {
                    let len = 2 + (rng.next_u64() % 10) as usize;
                    let ids: Vec<u32> = (0..len)
                        .map(|_| 1 + (rng.next_u64() % (VOCAB as u64 - 1)) as u32)
                        .collect();
                    let tags = (0..len)
                        .map(|i| (ids[i] + if i > 0 { ids[i - 1] } else { 0 }) % TAGS as u32)
                        .collect();
                    (ids, tags)
                })
                .collect();
            let pairs: Vec<(&[u32], &[u32])> = sents
                .iter()
                .map(|(a, b)| (a.as_slice(), b.as_slice()))
                .collect();
            Batch::pad(&pairs, 0).unwrap()
        })
        .collect()
}

fn optimizer(model: &BiLstmTagger) -> Optimizer {
    optimizer_on(ctx(), model)
}

fn optimizer_on(ctx: &Context, model: &BiLstmTagger) -> Optimizer {
    let cfg = OptimConfig::new(Method::ADAM, 0.02).with_max_norm(Some(5.0));
    Optimizer::new(ctx, cfg, model.params()).unwrap()
}

fn train(model: &BiLstmTagger, opt: &mut Optimizer, batches: &[Batch]) -> Vec<f32> {
    batches
        .iter()
        .map(|b| model.train_step(ctx(), b, opt).unwrap().loss)
        .collect()
}

#[test]
fn seeded_training_repeats_bit_for_bit() {
    let batches = toy_batches(10, 8, 21);
    let run = || {
        let model = BiLstmTagger::new(ctx(), toy(16, 12), 5).unwrap();
        let mut opt = optimizer(&model);
        train(&model, &mut opt, &batches)
    };
    let first = run();
    let second = run();
    assert_eq!(first, second, "same seed, same losses, bit for bit");
}

/// One context shared by two threads: two models (different seeds and data)
/// trained at the same time give the losses and weights they give when trained
/// one after the other, bit for bit.
#[test]
fn two_threads_train_two_models_on_one_context_as_one_after_the_other() {
    let data = [toy_batches(8, 8, 31), toy_batches(8, 6, 32)];
    let run = |k: usize| {
        let model = BiLstmTagger::new(ctx(), toy(16, 12), 7 + k as u64).unwrap();
        let mut opt = optimizer(&model);
        let losses = train(&model, &mut opt, &data[k]);
        let weights: Vec<Vec<f32>> = model
            .named_params()
            .iter()
            .map(|n| n.read().unwrap())
            .collect();
        (losses, weights)
    };
    let one_after_the_other = [run(0), run(1)];
    let together = std::thread::scope(|s| {
        let handles = [s.spawn(|| run(0)), s.spawn(|| run(1))];
        handles.map(|h| h.join().unwrap())
    });
    assert_eq!(together, one_after_the_other);
}

/// Trains a tagger stored as `storage` for 12 epochs of the toy task; asserts that
/// it learned the rule.
fn learns_the_rule(storage: DType) {
    let batches = toy_batches(10, 16, 41);
    let model = BiLstmTagger::new(ctx(), toy(16, 24), 8)
        .unwrap()
        .with_storage(storage)
        .unwrap();
    let cfg = OptimConfig::new(Method::ADAM, 0.05).with_max_norm(Some(5.0));
    let mut opt = Optimizer::new(ctx(), cfg, model.params()).unwrap();
    let mut losses = vec![];
    for _ in 0..12 {
        losses.extend(train(&model, &mut opt, &batches));
    }
    let last: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    println!("{storage:?}: first {} last {last}", losses[0]);
    // Chance is ln 5 ≈ 1.61; the rule is a function of two words.
    assert!(
        last < 0.3,
        "{storage:?}: mean loss of the last epoch {last}"
    );
}

#[test]
fn the_tagger_learns_a_tagging_rule_that_needs_context() {
    learns_the_rule(DType::F32);
}

/// f16 storage: the first step's gradients agree with the f32 model's within
/// f16 rounding, and the f16 model learns the same rule as well.
#[test]
fn f16_storage_gives_f32_gradients_within_rounding_and_learns_the_rule() {
    if !ctx().has_f16() {
        let model = BiLstmTagger::new(ctx(), toy(16, 24), 8).unwrap();
        let err = model.with_storage(DType::F16).unwrap_err();
        assert!(matches!(err, Error::FeatureMissing { .. }), "{err}");
        return;
    }
    let batches = toy_batches(10, 16, 41);
    let grads = |storage: DType| {
        let model = BiLstmTagger::new(ctx(), toy(16, 24), 8)
            .unwrap()
            .with_storage(storage)
            .unwrap();
        let mut tape = Tape::train(ctx(), "grads");
        model.zero_grad(tape.rec()).unwrap();
        let loss = TrainStep::loss(&model, &mut tape, &batches[0])
            .unwrap()
            .loss;
        tape.backward(&loss).unwrap();
        tape.into_recorder().submit();
        let grads: Vec<(String, Vec<f32>)> = model
            .named_params()
            .iter()
            .zip(model.params())
            .map(|(n, p)| (n.name.clone(), p.grad.to_vec().unwrap()))
            .collect();
        (loss.to_vec().unwrap()[0], grads)
    };
    let (loss32, grads32) = grads(DType::F32);
    let (loss16, grads16) = grads(DType::F16);
    assert!(
        (loss16 - loss32).abs() < 1e-3 * loss32,
        "loss {loss16} vs {loss32}"
    );
    for ((name, g16), (_, g32)) in grads16.iter().zip(&grads32) {
        // Relative to the gradient's own scale: f16 keeps 11 significant bits.
        let scale = g32.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert_close(name, g16, &to_f64(g32), 0.0, 2e-2 * scale as f64);
    }
    learns_the_rule(DType::F16);
}

#[test]
fn a_checkpoint_resumes_training_with_identical_losses() {
    let batches = toy_batches(8, 6, 31);
    let dir = std::env::temp_dir().join(format!("rnn-wgpu-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tagger.safetensors");

    let model = BiLstmTagger::new(ctx(), toy(16, 12), 6).unwrap();
    let mut opt = optimizer(&model);
    train(&model, &mut opt, &batches[..4]);
    Checkpoint::capture(&model.named_params(), Some(&opt))
        .unwrap()
        .save(&path)
        .unwrap();
    let straight = train(&model, &mut opt, &batches[4..]);

    // Another seed: everything must come from the file.
    let resumed = BiLstmTagger::new(ctx(), toy(16, 12), 99).unwrap();
    let mut opt2 = optimizer(&resumed);
    let ck = Checkpoint::load(&path).unwrap();
    ck.apply(&resumed.named_params(), "checkpoint").unwrap();
    ck.apply_optimizer(&mut opt2, "checkpoint").unwrap();
    assert_eq!(opt2.steps(), 4);
    assert_eq!(train(&resumed, &mut opt2, &batches[4..]), straight);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Saving never tears a checkpoint: a save that cannot finish (here the partial
/// file's name is taken by a directory, as a full disk or a crash would stop it)
/// is an error and leaves the last good file loadable and unchanged; the next
/// save that can finish replaces it.
#[test]
fn a_failed_save_leaves_the_last_checkpoint_whole() {
    let dir = std::env::temp_dir().join(format!("rnn-wgpu-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tagger.safetensors");
    let model = BiLstmTagger::new(ctx(), toy(16, 12), 6).unwrap();
    let mut opt = optimizer(&model);
    let first = Checkpoint::capture(&model.named_params(), Some(&opt)).unwrap();
    first.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();

    train(&model, &mut opt, &toy_batches(2, 6, 7));
    let second = Checkpoint::capture(&model.named_params(), Some(&opt)).unwrap();
    assert!(second.tensors != first.tensors, "training changed nothing");
    let blocker = dir.join("tagger.safetensors.partial");
    std::fs::create_dir(&blocker).unwrap();
    let err = second.save(&path).unwrap_err();
    assert!(matches!(err, rnn_wgpu::Error::File { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "the last checkpoint changed"
    );
    assert_eq!(Checkpoint::load(&path).unwrap().tensors, first.tensors);

    std::fs::remove_dir(&blocker).unwrap();
    second.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap().tensors, second.tensors);
    assert!(!blocker.exists(), "the partial file was left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A training loop that survives losing its device: on `Error::DeviceLost` it
/// opens a new context, rebuilds the model from its last checkpoint and goes
/// on; the losses are those of a run that never lost its device.
#[test]
fn training_resumes_on_a_new_context_after_the_device_is_lost() {
    let batches = toy_batches(8, 6, 41);
    let dir = std::env::temp_dir().join(format!("rnn-wgpu-lost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tagger.safetensors");
    let build = |ctx: &Context| {
        let model = BiLstmTagger::new(ctx, toy(16, 12), 8).unwrap();
        let opt = optimizer_on(ctx, &model);
        (model, opt)
    };

    let steady = common::open(None);
    let (model, mut opt) = build(&steady);
    let want: Vec<f32> = batches
        .iter()
        .map(|b| model.train_step(&steady, b, &mut opt).unwrap().loss)
        .collect();

    let mut ctx = common::open(None);
    let (mut model, mut opt) = build(&ctx);
    let mut losses = Vec::new();
    let mut lost_once = false;
    while losses.len() < batches.len() {
        if losses.len() == 5 && !lost_once {
            ctx.device().destroy();
            lost_once = true;
        }
        match model.train_step(&ctx, &batches[losses.len()], &mut opt) {
            Ok(report) => {
                losses.push(report.loss);
                Checkpoint::capture(&model.named_params(), Some(&opt))
                    .unwrap()
                    .save(&path)
                    .unwrap();
            }
            Err(Error::DeviceLost { .. }) => {
                ctx = common::open(None);
                (model, opt) = build(&ctx);
                let ck = Checkpoint::load(&path).unwrap();
                ck.apply(&model.named_params(), "checkpoint").unwrap();
                ck.apply_optimizer(&mut opt, "checkpoint").unwrap();
                assert_eq!(opt.steps() as usize, losses.len());
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(lost_once);
    assert_eq!(losses, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broken_checkpoints_are_refused_before_anything_is_written() {
    let ctx = ctx();
    let model = BiLstmTagger::new(ctx, toy(16, 12), 7).unwrap();
    let before: Vec<Vec<f32>> = model
        .named_params()
        .iter()
        .map(|p| p.read().unwrap())
        .collect();
    let dir = std::env::temp_dir().join(format!("rnn-wgpu-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file").unwrap();
    assert!(matches!(
        Checkpoint::load(&garbage),
        Err(Error::File { .. })
    ));
    assert!(matches!(
        Checkpoint::load(&dir.join("missing")),
        Err(Error::File { .. })
    ));

    // The PyTorch tagger has other sizes: shapes differ, and nothing is written.
    let other = Checkpoint::load(&fixture("bilstm_tagger.safetensors")).unwrap();
    let err = other.apply(&model.named_params(), "other").unwrap_err();
    assert!(err.to_string().contains("embedding.weight"), "{err}");

    let mut ck = Checkpoint::capture(&model.named_params(), None).unwrap();
    ck.tensors.remove("fc.bias");
    assert!(ck
        .apply(&model.named_params(), "x")
        .unwrap_err()
        .to_string()
        .contains("no tensor fc.bias"));
    let mut ck = Checkpoint::capture(&model.named_params(), None).unwrap();
    ck.tensors
        .insert("extra.weight".into(), (vec![1], vec![0.0]));
    assert!(ck
        .apply(&model.named_params(), "x")
        .unwrap_err()
        .to_string()
        .contains("extra.weight"));

    let after: Vec<Vec<f32>> = model
        .named_params()
        .iter()
        .map(|p| p.read().unwrap())
        .collect();
    assert_eq!(before, after);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `save` and `load` on a module: the parameters come back exactly, and a file
/// whose fields carry other names (the PyTorch fixture's `embedding`, `lstm`, `fc`
/// written as `emb`, `lstm`, `out`) loads through a key map; without the map it
/// is refused and nothing is written.
#[test]
fn a_module_saves_loads_and_maps_foreign_names() {
    use rnn_wgpu::nn::StateDict;
    let dir = std::env::temp_dir().join(format!("rnn-wgpu-module-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let values = |m: &BiLstmTagger| -> Vec<Vec<f32>> {
        m.named_params().iter().map(|n| n.read().unwrap()).collect()
    };
    let model = BiLstmTagger::new(ctx(), toy(16, 12), 6).unwrap();
    let path = dir.join("module.safetensors");
    model.save(&path).unwrap();
    let other = BiLstmTagger::new(ctx(), toy(16, 12), 7).unwrap();
    assert_ne!(values(&other), values(&model));
    other.load(&path).unwrap();
    assert_eq!(values(&other), values(&model));

    let fixture = StateDict::load(&fixture("bilstm_tagger.safetensors")).unwrap();
    let foreign = fixture
        .clone()
        .renamed(|name| {
            Some(
                name.replacen("embedding.", "emb.", 1)
                    .replacen("fc.", "out.", 1),
            )
        })
        .unwrap();
    assert!(foreign.tensors.contains_key("emb.weight"));
    let foreign_path = dir.join("foreign.safetensors");
    foreign.save(&foreign_path).unwrap();
    let [vocab, emb] = fixture.tensors["embedding.weight"].0[..] else {
        panic!("embedding weight is not 2-D");
    };
    let hidden = fixture.tensors["lstm.weight_hh_l0"].0[1];
    let tags = fixture.tensors["fc.weight"].0[0];
    let model = BiLstmTagger::new(
        ctx(),
        TaggerConfig::new(vocab, tags)
            .with_emb(emb)
            .with_hidden(hidden)
            .with_layers(1),
        1,
    )
    .unwrap();
    let before = values(&model);
    let err = model.load(&foreign_path).unwrap_err();
    assert!(matches!(err, Error::File { .. }), "{err:?}");
    assert_eq!(values(&model), before, "a refused load wrote something");
    StateDict::load(&foreign_path)
        .unwrap()
        .renamed(|name| {
            Some(
                name.replacen("emb.", "embedding.", 1)
                    .replacen("out.", "fc.", 1),
            )
        })
        .unwrap()
        .apply(&model.named_params(), "foreign")
        .unwrap();
    let want: Vec<Vec<f32>> = model
        .named_params()
        .iter()
        .map(|n| fixture.tensors[&n.name].1.clone())
        .collect();
    assert_eq!(values(&model), want);

    // Two file keys sent to one name: refused, naming both.
    let mut doubled = fixture.clone();
    let fc = doubled.tensors["fc.weight"].clone();
    doubled.tensors.insert("module.fc.weight".into(), fc);
    let err = doubled
        .renamed(|name| Some(name.trim_start_matches("module.").to_string()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                op: "StateDict::renamed",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("module.fc.weight") && text.contains("`fc.weight`"),
        "{text}"
    );

    // In memory: the bytes a file holds, read back whole, metadata included.
    let mut with_meta = fixture.clone();
    with_meta
        .metadata
        .insert("config".into(), "{\"hidden\": 8}".into());
    let bytes = with_meta.to_bytes().unwrap();
    with_meta.save(&foreign_path).unwrap();
    assert_eq!(std::fs::read(&foreign_path).unwrap(), bytes);
    let back = StateDict::from_bytes(&bytes, "memory").unwrap();
    assert_eq!(back.tensors, with_meta.tensors);
    assert_eq!(back.metadata, with_meta.metadata);
    // A tensor whose values do not fill its shape is refused, naming it.
    let mut short = fixture.clone();
    short.tensors.get_mut("fc.bias").unwrap().1.pop();
    let err = short.to_bytes().unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                op: "StateDict::to_bytes",
                ..
            }
        ) && err.to_string().contains("fc.bias"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A training step reports the accuracy of its batch in the same readback as
/// the loss: the accuracy of the weights before the update, as an inference
/// pass (no dropout) measures it on the host.
#[test]
fn a_training_step_reports_its_accuracy() {
    let batches = toy_batches(1, 8, 44);
    let b = &batches[0];
    let model = BiLstmTagger::new(ctx(), toy(16, 12), 9).unwrap();
    let mut opt = optimizer(&model);
    train(&model, &mut opt, &toy_batches(6, 8, 45));
    let mut tape = Tape::eval(ctx(), "logits");
    let logits = model.forward(&mut tape, b).unwrap();
    tape.into_recorder().submit();
    let logits = logits.to_vec().unwrap();
    let (mut hits, mut counted) = (0usize, 0usize);
    for (r, &t) in b.targets.iter().enumerate() {
        if t == Batch::IGNORE {
            continue;
        }
        let row = &logits[r * TAGS..(r + 1) * TAGS];
        let best = row.iter().cloned().fold(f32::MIN, f32::max);
        hits += usize::from(row.iter().position(|&v| v == best) == Some(t as usize));
        counted += 1;
    }
    let report = model.train_step(ctx(), b, &mut opt).unwrap();
    let got = report.metric("accuracy").unwrap();
    assert!(
        (got as f64 - hits as f64 / counted as f64).abs() < 1e-6,
        "step reports {got}, the host counts {hits} of {counted}"
    );
}

/// The toy task as `train::fit` reads it: epoch e's batch i is built from (e, i)
/// alone (the epoch's order and a word dropout drawn from them), as a resumed
/// run needs.
struct ToyEpochs(Vec<Batch>);

impl Epochs for ToyEpochs {
    type Batch = Batch;

    fn batches(&mut self, _epoch: usize) -> rnn_wgpu::Result<usize> {
        Ok(self.0.len())
    }

    fn batch(&mut self, epoch: usize, index: usize) -> rnn_wgpu::Result<Batch> {
        let mut order: Vec<usize> = (0..self.0.len()).collect();
        rnn_wgpu::data::shuffle(&mut order, &mut SplitMix::new(epoch as u64));
        let mut b = self.0[order[index]].clone();
        let mut rng = SplitMix::new((epoch * 1000 + index) as u64);
        for id in b.ids.iter_mut().filter(|id| **id != 0) {
            if rng.uniform_unit() < 0.2 {
                *id = 1;
            }
        }
        Ok(b)
    }
}

/// The mean loss of `model` on `batch` in evaluation.
fn eval_loss(model: &BiLstmTagger, batch: &Batch) -> rnn_wgpu::Result<f64> {
    let mut tape = Tape::eval(ctx(), "eval");
    let step = model.loss(&mut tape, batch)?;
    tape.into_recorder().submit();
    Ok(f64::from(step.loss.to_vec()?[0]))
}

/// `train::fit` stopped mid-epoch and resumed into a model of another seed
/// repeats the uninterrupted run step for step (dropout on, a word dropout in
/// the data): the same losses bit for bit, the same weights at the end, the
/// history and the best score covering both parts.
#[test]
fn fit_resumed_mid_epoch_repeats_the_uninterrupted_run() {
    let dir = std::env::temp_dir().join(format!("rnn-wgpu-fit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = |seed| {
        BiLstmTagger::new(ctx(), toy(16, 12).with_layers(2), seed)
            .unwrap()
            .with_dropout(0.3, 5)
            .unwrap()
    };
    let values = |m: &BiLstmTagger| -> Vec<Vec<f32>> {
        m.named_params().iter().map(|n| n.read().unwrap()).collect()
    };
    let held_out = toy_batches(1, 8, 99).remove(0);
    let data = || ToyEpochs(toy_batches(5, 6, 98));
    let cfg = FitConfig::new(2).with_goal(Goal::Lower);

    let a = model(3);
    let mut opt = optimizer(&a);
    let full = fit(
        ctx(),
        &a,
        &mut opt,
        &mut data(),
        &cfg,
        |m| eval_loss(m, &held_out),
        |_| {},
    )
    .unwrap();
    assert_eq!(full.losses.len(), 10);
    assert_eq!(full.scores.len(), 2);
    assert_eq!(full.stop, Some(Stop::Epochs));

    let ck = dir.join("fit.safetensors");
    let cfg = cfg.with_checkpoint(Some(ck.clone()));
    let b = model(3);
    let mut opt = optimizer(&b);
    let part = cfg.clone().with_max_steps(Some(7));
    let first = fit(
        ctx(),
        &b,
        &mut opt,
        &mut data(),
        &part,
        |m| eval_loss(m, &held_out),
        |_| {},
    )
    .unwrap();
    assert_eq!(first.stop, Some(Stop::Steps));
    assert_eq!(first.losses[..], full.losses[..7]);

    let c = model(4);
    assert_ne!(values(&c), values(&a), "another seed, other weights");
    let mut opt = optimizer(&c);
    let mut resumed_at = vec![];
    let resumed = fit(
        ctx(),
        &c,
        &mut opt,
        &mut data(),
        &cfg.clone().with_resume(true),
        |m| eval_loss(m, &held_out),
        |e| {
            if let Event::Resumed {
                step, epoch, index, ..
            } = e
            {
                resumed_at.push((step, epoch, index));
            }
        },
    )
    .unwrap();
    assert_eq!(
        resumed_at,
        [(7, 1, 2)],
        "step 7 is batch 2 of the second epoch"
    );
    assert_eq!(resumed.losses, full.losses, "losses step for step");
    assert_eq!(values(&c), values(&a), "the same weights at the end");
    // Evaluations after epoch 1, at the stop (step 7) and after epoch 2.
    let steps: Vec<u32> = resumed.scores.iter().map(|&(s, _)| s).collect();
    assert_eq!(steps, [5, 7, 10]);
    let best = resumed
        .scores
        .iter()
        .copied()
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap();
    assert_eq!(resumed.best.map(|(s, _)| s), Some(best.0));
    let kept = Checkpoint::load(&best_path(&ck)).unwrap();
    assert_eq!(kept.metadata["fit.best_step"], best.0.to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `train::fit` with cosine cycles sets the rate of every step as a loop that
/// sets it by hand: two cycles over two epochs of four batches, each from the
/// base rate down (the same losses and weights bit for bit), and gives the
/// optimizer its base rate back at the end.
#[test]
fn fit_cycles_set_the_rate_of_every_step() {
    let data = || ToyEpochs(toy_batches(4, 6, 77));
    let base = 0.02f32;
    let a = BiLstmTagger::new(ctx(), toy(16, 12), 3).unwrap();
    let mut opt = optimizer(&a);
    let mut by_hand = vec![];
    let mut d = data();
    for k in 0..8usize {
        // Steps 0..4 are the first cycle, 4..8 the second.
        let within = (k % 4) as f64 / 4.0;
        let lr = base * (0.5 * (1.0 + (std::f64::consts::PI * within).cos())) as f32;
        opt.set_lr(lr).unwrap();
        let batch = d.batch(k / 4, k % 4).unwrap();
        by_hand.push(a.train_step(ctx(), &batch, &mut opt).unwrap().loss);
    }
    let b = BiLstmTagger::new(ctx(), toy(16, 12), 3).unwrap();
    let mut opt = optimizer(&b);
    let cfg = FitConfig::new(2).with_cycles(Some(2));
    let run = fit(ctx(), &b, &mut opt, &mut data(), &cfg, |_| Ok(0.0), |_| {}).unwrap();
    let losses: Vec<f32> = run.losses.iter().map(|&(_, l)| l).collect();
    assert_eq!(losses, by_hand);
    let values = |m: &BiLstmTagger| -> Vec<Vec<f32>> {
        m.named_params().iter().map(|n| n.read().unwrap()).collect()
    };
    assert_eq!(values(&b), values(&a));
    assert_eq!(opt.config().lr, base);
}

/// `train::fit` evaluates inside an epoch every `eval_minutes` of its clock
/// (here after every step), and its clock leaves out the evaluations when it
/// counts training only: 12 evaluations of 50 ms are on the `Run` clock and
/// off the `Training` one.
#[test]
fn fit_evaluates_on_its_clock() {
    let nap = std::time::Duration::from_millis(50);
    let mut minutes = vec![];
    for clock in [Clock::Run, Clock::Training] {
        let model = BiLstmTagger::new(ctx(), toy(16, 12), 3).unwrap();
        let mut opt = optimizer(&model);
        let cfg = FitConfig::new(3)
            .with_clock(clock)
            .with_eval_minutes(Some(1e-9));
        let mut told = vec![];
        let run = fit(
            ctx(),
            &model,
            &mut opt,
            &mut ToyEpochs(toy_batches(4, 6, 76)),
            &cfg,
            |_| {
                std::thread::sleep(nap);
                Ok(0.0)
            },
            |e| {
                if let Event::Evaluated { step, minutes, .. } = e {
                    told.push((step, minutes));
                }
            },
        )
        .unwrap();
        let steps: Vec<u32> = run.scores.iter().map(|&(s, _)| s).collect();
        assert_eq!(steps, (1..=12).collect::<Vec<u32>>(), "{clock:?}");
        assert_eq!(run.score_minutes.len(), 12);
        let told_minutes: Vec<f64> = told.iter().map(|&(_, m)| m).collect();
        assert_eq!(told_minutes, run.score_minutes);
        assert!(run.loss_minutes.windows(2).all(|w| w[0] <= w[1]));
        minutes.push(run.minutes);
    }
    let napped = 12.0 * nap.as_secs_f64() / 60.0;
    assert!(
        minutes[0] >= napped,
        "the run clock holds the evaluations: {minutes:?}"
    );
    assert!(
        minutes[1] < minutes[0] - 0.9 * napped,
        "the training clock leaves them out: {minutes:?}"
    );
}

/// `train::fit`'s time budget counts the run before a resume: a run stopped by
/// its budget and resumed with the same budget trains no further, and one
/// resumed with a larger budget goes on from the clock it saved.
#[test]
fn fit_resumed_keeps_its_clock() {
    let ck = std::env::temp_dir().join(format!(
        "rnn-wgpu-fit-clock-{}.safetensors",
        std::process::id()
    ));
    let cfg = FitConfig::new(3)
        .with_minutes(Some(1e-6))
        .with_checkpoint(Some(ck.clone()));
    let run = |cfg: &FitConfig| {
        let model = BiLstmTagger::new(ctx(), toy(16, 12), 3).unwrap();
        let mut opt = optimizer(&model);
        let mut data = ToyEpochs(toy_batches(4, 6, 75));
        let history = fit(ctx(), &model, &mut opt, &mut data, cfg, |_| Ok(0.0), |_| {}).unwrap();
        (history, opt.steps())
    };
    let (first, steps) = run(&cfg);
    assert_eq!((first.stop, steps), (Some(Stop::Time), 1));
    let (again, steps) = run(&cfg.clone().with_resume(true));
    assert_eq!(
        (again.stop, steps),
        (Some(Stop::Time), 1),
        "no step past the budget"
    );
    assert_eq!(again.losses, first.losses);
    let (more, steps) = run(&cfg.with_resume(true).with_minutes(Some(10.0)));
    assert_eq!((more.stop, steps), (Some(Stop::Epochs), 12));
    assert!(
        more.loss_minutes[1] >= 0.999 * first.minutes,
        "the clock goes on"
    );
    std::fs::remove_file(&ck).unwrap();
    std::fs::remove_file(best_path(&ck)).unwrap();
}

/// `train::fit` refuses what cannot run before anything trains.
#[test]
fn fit_refuses_bad_settings_before_training() {
    let model = BiLstmTagger::new(ctx(), toy(16, 12), 3).unwrap();
    let mut opt = optimizer(&model);
    let before: Vec<Vec<f32>> = model
        .named_params()
        .iter()
        .map(|n| n.read().unwrap())
        .collect();
    let mut data = ToyEpochs(toy_batches(2, 4, 97));
    let not_saved = std::env::temp_dir().join(format!(
        "rnn-wgpu-fit-old-{}.safetensors",
        std::process::id()
    ));
    model.save(&not_saved).unwrap();
    let cases = [
        FitConfig::new(1).with_minutes(Some(f64::NAN)),
        FitConfig::new(1).with_minutes(Some(0.0)),
        FitConfig::new(1).with_every(Some(0)),
        FitConfig::new(1).with_cycles(Some(0)),
        FitConfig::new(1).with_eval_minutes(Some(-1.0)),
        FitConfig::new(1).with_eval_minutes(Some(f64::INFINITY)),
        FitConfig::new(1).with_resume(true),
        FitConfig::new(1)
            .with_checkpoint(Some(not_saved.clone()))
            .with_resume(true),
    ];
    for cfg in &cases {
        let err = fit(ctx(), &model, &mut opt, &mut data, cfg, |_| Ok(0.0), |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument { op: "fit", .. } | Error::File { .. }
            ),
            "{cfg:?}: {err:?}"
        );
    }
    let err = fit(
        ctx(),
        &model,
        &mut opt,
        &mut ToyEpochs(vec![]),
        &FitConfig::new(1),
        |_| Ok(0.0),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::Empty { op: "fit", .. }), "{err:?}");
    assert_eq!(opt.steps(), 0);
    let after: Vec<Vec<f32>> = model
        .named_params()
        .iter()
        .map(|n| n.read().unwrap())
        .collect();
    assert_eq!(after, before, "a refused run changed the model");
    std::fs::remove_file(&not_saved).unwrap();
}

/// The tagger takes any cell: a GRU, minGRU and minLSTM stack learns the toy
/// task as the LSTM does, under the same `lstm.*` names with the cell's
/// parameters; the minimal cells learn it with f16 storage as well.
#[test]
fn the_tagger_learns_with_every_cell() {
    // Ten epochs of six batches: the last epoch's loss below 0.6 of the first's.
    let learns = |model: &BiLstmTagger, what: &str| {
        let batches = toy_batches(6, 8, 46);
        let mut opt = optimizer(model);
        let epochs: Vec<Batch> = (0..10).flat_map(|_| batches.iter().cloned()).collect();
        let losses = train(model, &mut opt, &epochs);
        let (first, last) = (
            losses[..6].iter().sum::<f32>(),
            losses[54..].iter().sum::<f32>(),
        );
        assert!(last < 0.6 * first, "{what}: {first} → {last}");
    };
    for cell in [
        Cell::Recurrent(Mode::Lstm),
        Cell::Recurrent(Mode::Gru),
        Cell::MinGru,
        Cell::MinLstm,
    ] {
        let model = BiLstmTagger::new(ctx(), toy(16, 12).with_cell(cell), 9).unwrap();
        let names: Vec<String> = model
            .named_params()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        assert!(
            names.iter().any(|n| n == "lstm.weight_ih_l0_reverse"),
            "{cell:?}: {names:?}"
        );
        let gates = model
            .named_params()
            .iter()
            .find(|n| n.name == "lstm.weight_ih_l0")
            .map(|n| n.shape[0])
            .unwrap();
        // Rows of W_ih: 4 gates of an LSTM, 3 of a GRU, 2 of the minimal cells' (gate and candidate; minLSTM: f, i, candidate).
        let want = match cell {
            Cell::Recurrent(Mode::Lstm) => 4 * 12,
            Cell::Recurrent(Mode::Gru) | Cell::MinLstm => 3 * 12,
            _ => 2 * 12,
        };
        assert_eq!(gates, want, "{cell:?}");
        learns(&model, &format!("{cell:?}"));
    }
    // The minimal cells with f16 storage learn it too.
    for cell in [Cell::MinGru, Cell::MinLstm]
        .into_iter()
        .filter(|_| ctx().has_f16())
    {
        let model = BiLstmTagger::new(ctx(), toy(16, 12).with_cell(cell), 9)
            .unwrap()
            .with_storage(DType::F16)
            .unwrap();
        learns(&model, &format!("f16 {cell:?}"));
    }
}

/// The sequence classifier takes any cell too: with minGRU and minLSTM (and its
/// run-time GRU) it learns which sequences hold word 7, under `rnn.*` names.
#[test]
fn the_classifier_learns_with_the_minimal_cells() {
    use rnn_wgpu::data::LabeledBatch;
    use rnn_wgpu::models::{ClassifierConfig, Readout, SequenceClassifier};
    use rnn_wgpu::nn::Config;
    let seqs: [(&[u32], u32); 4] = [(&[2, 7, 3], 1), (&[4, 5], 0), (&[7], 1), (&[6, 3, 2, 5], 0)];
    let batch = LabeledBatch::pad(&seqs, 0).unwrap();
    for cell in [Cell::Recurrent(Mode::Gru), Cell::MinGru, Cell::MinLstm] {
        for readout in [Readout::Final, Readout::Mean] {
            let rnn = Config::new(0, 8).with_bidirectional(true);
            let cfg = ClassifierConfig::new(12, 2, cell, rnn)
                .with_emb(8)
                .with_readout(readout);
            let model = SequenceClassifier::new(ctx(), cfg, 1).unwrap();
            assert!(model
                .named_params()
                .iter()
                .any(|n| n.name == "rnn.weight_ih_l0_reverse"));
            let cfg = OptimConfig::new(Method::ADAM, 0.05);
            let mut opt = Optimizer::new(ctx(), cfg, model.params()).unwrap();
            let first = model.train_step(ctx(), &batch, &mut opt).unwrap().loss;
            for _ in 0..30 {
                model.train_step(ctx(), &batch, &mut opt).unwrap();
            }
            let last = model.train_step(ctx(), &batch, &mut opt).unwrap().loss;
            assert!(last < first / 4.0, "{cell:?} {readout:?}: {first} → {last}");
        }
    }
}

/// A BiLSTM-CRF on the toy task: its parameters are named as pytorch-crf's
/// under `crf.`, its loss falls, and its Viterbi paths tag the training
/// sentences it has learned, NO_TAG past each length. (The CRF's own
/// references are in tests/crf.rs.)
#[test]
fn a_crf_tagger_learns_and_decodes_whole_paths() {
    use rnn_wgpu::nn::crf::NO_TAG;
    let batches = toy_batches(6, 8, 41);
    let model = BiLstmTagger::new(ctx(), toy(16, 24).with_crf(true), 3).unwrap();
    let names: Vec<String> = model.named_params().into_iter().map(|n| n.name).collect();
    assert!(names.contains(&"crf.transitions".to_string()), "{names:?}");
    let mut opt = optimizer(&model);
    let mut losses = vec![];
    for _ in 0..25 {
        losses.extend(train(&model, &mut opt, &batches));
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < first / 5.0, "loss {first} → {last}");
    let (mut right, mut total) = (0, 0);
    for b in &batches {
        let mut tape = Tape::eval(ctx(), "predict");
        let paths = model.predict(&mut tape, b).unwrap();
        tape.into_recorder().submit();
        let paths = paths.to_vec_u32().unwrap();
        for (s, &len) in b.lengths.iter().enumerate() {
            for t in 0..b.steps {
                let (got, gold) = (paths[s * b.steps + t], b.targets[s * b.steps + t]);
                if t >= len {
                    assert_eq!(got, NO_TAG);
                } else {
                    total += 1;
                    right += usize::from(got == gold);
                }
            }
        }
    }
    assert!(right * 100 >= total * 95, "{right} of {total} tags right");
}
