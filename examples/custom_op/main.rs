//! Your own WGSL kernel as a tape op: GELU (`gelu.wgsl`, beside this file, with
//! its backward) becomes a `CustomOp` in 16 lines, passes the library's
//! gradcheck, and trains inside a model: a BiLSTM part-of-speech tagger on UD
//! English EWT whose output layer is an MLP (linear → GELU → linear). The
//! kernel runs through the library's pipeline cache, operand holds and
//! profiler like the built-in ops (`RNN_WGPU_PROFILE=1` lists `gelu::forward`
//! and `gelu::backward` beside them).
//!
//! Run: `cargo run --release --example custom_op` (`-- --help` for the
//! options). Reads `--data` (default ../shared/data/ud-english-ewt); without
//! it, a generated tagging task. Prints the gradcheck report (and the same
//! check of a deliberately wrong backward, which must fail), then the loss and
//! dev accuracy after each epoch and the test accuracy of the best epoch's
//! model.

#[path = "../common/ewt.rs"]
mod ewt;
#[path = "../common/run.rs"]
mod run;

use std::path::PathBuf;

use clap::Parser;
use rnn_wgpu::data::readers::TaggedSentence;
use rnn_wgpu::data::{buckets, Batch, Vocab};
use rnn_wgpu::nn::{prefixed, Config, Embedding, Entry, Linear, Lstm, Module, SplitMix};
use rnn_wgpu::ops::{argmax, elementwise};
use rnn_wgpu::tape::{CustomOp, GradCheck, Gradients, Saved};
use rnn_wgpu::train::{best_path, fit, FitConfig, Method, OptimConfig, Optimizer, Step, TrainStep};
use rnn_wgpu::{Context, DType, Kernel, Recorder, Result, Tape, Tensor, Var};

/// GELU on the tape: the kernel's forward, and its backward from the saved input.
#[derive(Clone)]
struct Gelu(Kernel);

impl CustomOp for Gelu {
    fn forward(&self, rec: &mut Recorder, x: &[&Tensor]) -> Result<Vec<Tensor>> {
        let y = rec.empty(x[0].shape(), DType::F32)?;
        let run = self.0.launch("forward").bind("x", x[0]).bind("y", &y);
        run.cover([y.numel(), 1, 1]).record(rec)?;
        Ok(vec![y])
    }

    fn backward(&self, rec: &mut Recorder, s: &Saved, d: &[Tensor]) -> Result<Gradients> {
        let (x, dx) = (&s.inputs()[0], rec.empty(d[0].shape(), DType::F32)?);
        let run = self.0.launch("backward").bind("x", x).bind("dy", &d[0]);
        run.bind("dx", &dx).cover([dx.numel(), 1, 1]).record(rec)?;
        Ok(vec![Some(dx)])
    }
}

/// The same op with a wrong backward (the factor ½ of the first term
/// dropped): what the gradcheck is for.
#[derive(Clone)]
struct WrongGelu(Gelu);

impl CustomOp for WrongGelu {
    fn forward(&self, rec: &mut Recorder, x: &[&Tensor]) -> Result<Vec<Tensor>> {
        self.0.forward(rec, x)
    }

    fn backward(&self, rec: &mut Recorder, s: &Saved, dy: &[Tensor]) -> Result<Gradients> {
        let dx = self.0.backward(rec, s, dy)?.remove(0);
        let dx = dx.map(|g| elementwise::scale(rec, &g, 1.5)).transpose()?;
        Ok(vec![dx])
    }
}

/// Word embedding → BiLSTM → linear → GELU → linear: tag logits per word.
struct Tagger {
    /// `[V, E]`
    embedding: Embedding,
    /// `[B, T, E]` → `[B, T, 2H]`
    lstm: Lstm,
    /// `[M, 2H]`
    hidden: Linear,
    gelu: Gelu,
    /// `[tags, M]`
    out: Linear,
}

impl Tagger {
    fn forward(&self, tape: &mut Tape, b: &Batch) -> Result<Var> {
        let x = self.embedding.apply(tape, &b.ids, &[b.size, b.steps])?;
        let (h, _) = self.lstm.apply(tape, &x, &b.lengths, None)?;
        let m = self.hidden.apply(tape, &h)?;
        let m = tape.custom(&self.gelu, &[&m])?.remove(0);
        self.out.apply(tape, &m)
    }
}

impl TrainStep for Tagger {
    type Batch = Batch;
    type Carry = ();

    fn loss(&self, tape: &mut Tape, b: &Batch) -> Result<Step> {
        let logits = self.forward(tape, b)?;
        let (loss, acc) =
            tape.cross_entropy_with_accuracy(&logits, &b.targets, Some(Batch::IGNORE))?;
        Ok(Step::new(loss).metric("accuracy", acc))
    }
}

impl Module for Tagger {
    fn entries(&self) -> Vec<Entry> {
        let mut out = prefixed("embedding", self.embedding.entries());
        out.extend(prefixed("lstm", self.lstm.entries()));
        out.extend(prefixed("hidden", self.hidden.entries()));
        out.extend(prefixed("out", self.out.entries()));
        out
    }
}

#[derive(Parser, Debug)]
#[command(about = "A user's WGSL kernel (GELU) as a tape op, gradchecked and trained in a tagger")]
struct Args {
    /// Folder with en_ewt-ud-{train,dev,test}.conllu.
    #[arg(long, default_value = "../shared/data/ud-english-ewt")]
    data: PathBuf,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// Stop training after this many minutes (then test).
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The latest state goes here, the best model beside it.
    #[arg(long, default_value = "runs/custom_op.safetensors")]
    checkpoint: PathBuf,
}

/// Word and tag ids of a batch of sentences (words lower-cased).
fn batch(words: &Vocab, tags: &Vocab, sents: &[&TaggedSentence]) -> Result<Batch> {
    let ids: Vec<(Vec<u32>, Vec<u32>)> = sents
        .iter()
        .map(|s| {
            let w = s
                .words
                .iter()
                .map(|w| words.id(&w.to_lowercase()))
                .collect();
            (w, s.tags.iter().map(|t| tags.id(t)).collect())
        })
        .collect();
    let pairs: Vec<(&[u32], &[u32])> = ids.iter().map(|(w, t)| (&w[..], &t[..])).collect();
    Batch::pad(&pairs, Vocab::PAD)
}

/// Tag accuracy over the real words of `sents`.
fn accuracy(
    ctx: &Context,
    model: &Tagger,
    words: &Vocab,
    tags: &Vocab,
    sents: &[TaggedSentence],
) -> Result<f64> {
    let lengths: Vec<usize> = sents.iter().map(|s| s.words.len()).collect();
    let (mut right, mut total) = (0, 0);
    for idx in buckets(&lengths, 64, 0) {
        let chosen: Vec<&TaggedSentence> = idx.iter().map(|&i| &sents[i]).collect();
        let b = batch(words, tags, &chosen)?;
        let mut tape = Tape::eval(ctx, "evaluate");
        let logits = model.forward(&mut tape, &b)?;
        let best = argmax::forward(tape.rec(), &logits)?;
        tape.into_recorder().submit();
        for (p, &gold) in best.to_vec()?.iter().zip(&b.targets) {
            if gold != Batch::IGNORE {
                total += 1;
                right += usize::from(*p as u32 == gold);
            }
        }
    }
    Ok(right as f64 / total.max(1) as f64)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = Context::new()?;
    println!("device: {}", ctx.adapter_info().name);
    let gelu = Gelu(Kernel::new("gelu", include_str!("gelu.wgsl"))?);

    // The op's gradients against central differences of its own forward, on a
    // spread of inputs; then the wrong backward, which the check must catch.
    let mut rng = SplitMix::new(args.seed);
    let x = Tensor::from_slice(&ctx, &[4, 33], &rng.uniform(4 * 33, 4.0))?;
    let check = GradCheck::new();
    let report = check.run(&ctx, &[&x], |t, v| Ok(t.custom(&gelu, &[&v[0]])?.remove(0)))?;
    println!("GELU: {report}");
    let wrong = WrongGelu(gelu.clone());
    let caught = check.run(&ctx, &[&x], |t, v| {
        Ok(t.custom(&wrong, &[&v[0]])?.remove(0))
    })?;
    println!("GELU with a wrong backward: {caught}");
    if !report.passed() || caught.passed() {
        return Err(rnn_wgpu::Error::InvalidArgument {
            op: "custom_op",
            what: "gradcheck",
            expected: "the right backward to pass and the wrong one to fail",
            got: format!("{} and {}", report.passed(), caught.passed()),
        });
    }

    let corpus = ewt::load_or_generate(&args.data, args.seed)?;
    let all_words = corpus.train.iter().flat_map(|s| s.words.iter());
    let lower: Vec<String> = all_words.map(|w| w.to_lowercase()).collect();
    let words = Vocab::build(lower.iter().map(String::as_str), 2);
    let tags = Vocab::build(
        corpus
            .train
            .iter()
            .flat_map(|s| s.tags.iter())
            .map(String::as_str),
        1,
    );
    println!(
        "train {} / dev {} / test {} sentences, {} words, {} tags",
        corpus.train.len(),
        corpus.dev.len(),
        corpus.test.len(),
        words.len(),
        tags.len()
    );
    let sizes = Config::new(100, 128)
        .with_layers(1)
        .with_bidirectional(true);
    let model = Tagger {
        embedding: Embedding::new(&ctx, words.len(), 100, Some(Vocab::PAD), args.seed)?,
        lstm: Lstm::new(&ctx, sizes, args.seed + 1)?,
        hidden: Linear::new(&ctx, 256, 128, true, args.seed + 2)?,
        gelu,
        out: Linear::new(&ctx, 128, tags.len(), true, args.seed + 3)?,
    };
    let cfg = OptimConfig::new(Method::ADAM, args.lr).with_max_norm(Some(5.0));
    let mut opt = Optimizer::new(&ctx, cfg, model.params())?;
    let lengths: Vec<usize> = corpus.train.iter().map(|s| s.words.len()).collect();
    let mut train = run::Buckets::new(
        lengths,
        args.batch,
        usize::MAX,
        args.seed,
        |idx: &[usize], _, _| {
            let chosen: Vec<&TaggedSentence> = idx.iter().map(|&i| &corpus.train[i]).collect();
            batch(&words, &tags, &chosen)
        },
    );
    run::checkpoint_dir(&args.checkpoint)?;
    let cfg = FitConfig::new(args.epochs)
        .with_minutes(Some(args.minutes))
        .with_checkpoint(Some(args.checkpoint.clone()));
    let history = fit(
        &ctx,
        &model,
        &mut opt,
        &mut train,
        &cfg,
        |m| accuracy(&ctx, m, &words, &tags, &corpus.dev),
        run::progress(
            &ctx,
            |s| format!("dev accuracy {:.2}%", 100.0 * s),
            |b: &Batch| b.lengths.iter().sum(),
        ),
    )?;
    model.load(&best_path(&args.checkpoint))?;
    println!(
        "best dev {:.2}%, test {:.2}% with that model",
        100.0 * history.best.map_or(0.0, |(_, s)| s),
        100.0 * accuracy(&ctx, &model, &words, &tags, &corpus.test)?
    );
    Ok(())
}
