//! A model the library does not ship, written forward-only: embedding → two
//! bidirectional GRU layers → attention pooling (a learned query scores every
//! real position; padding gets no weight) → linear → cross-entropy. The tape
//! records the backward of every op; the model implements `TrainStep`, so the
//! library's generic step and its loop (`train::fit`) train it. Task: the genre of each UD English EWT
//! sentence (as `classify`), or a generated stand-in without the data.
//!
//! Run: `cargo run --release --example custom_model` (`-- --help` for the
//! options). It prints the dev accuracy after every epoch and the test accuracy
//! of the best dev epoch's model, which it keeps beside `--save` (the latest
//! state, which `train::fit` resumes from).

#[path = "common/genres.rs"]
mod genres;
#[path = "common/run.rs"]
mod run;

use std::path::PathBuf;

use clap::Parser;
use rnn_wgpu::data::LabeledBatch;
use rnn_wgpu::init::SplitMix;
use rnn_wgpu::nn::{prefixed, Config, Embedding, Entry, Gru, Linear, Module, Param};
use rnn_wgpu::train::{best_path, fit, FitConfig, Method, OptimConfig, Optimizer, Step, TrainStep};
use rnn_wgpu::{Context, Result, Tape, Tensor, Var};

/// Embedding → BiGRU × 2 → attention pooling → linear.
struct PooledGru {
    /// `[V, E]`
    embedding: Embedding,
    /// `[B, T, E]` → `[B, T, 2H]`
    gru: Gru,
    /// `[2H, 1]` the pooling query
    query: Param,
    /// `[classes, 2H]`
    fc: Linear,
}

impl PooledGru {
    fn new(ctx: &Context, vocab: usize, emb: usize, hidden: usize, classes: usize) -> Result<Self> {
        let sizes = Config::new(emb, hidden)
            .with_layers(2)
            .with_bidirectional(true);
        let bound = 1.0 / (2.0 * hidden as f32).sqrt();
        let query = SplitMix::new(4).uniform(2 * hidden, bound);
        Ok(Self {
            embedding: Embedding::new(ctx, vocab, emb, Some(0), 1)?,
            gru: Gru::new(ctx, sizes, 2)?,
            query: Param::new(Tensor::from_slice(ctx, &[2 * hidden, 1], &query)?)?,
            fc: Linear::new(ctx, 2 * hidden, classes, true, 3)?,
        })
    }

    /// The logits `[B, classes]` of a batch.
    fn forward(&self, tape: &mut Tape, b: &LabeledBatch) -> Result<Var> {
        let (n, t) = (b.size, b.steps);
        let x = self.embedding.apply(tape, &b.ids, &[n, t])?;
        let (h, _) = self.gru.apply(tape, &x, &b.lengths, None)?;
        let q = tape.param(&self.query);
        let scores = tape.matmul(&h, &q)?; // [B, T, 1]
        let scores = tape.reshape(&scores, &[n, 1, t])?;
        let weights = tape.softmax(&scores, Some(&b.lengths))?; // zero past each length
        let pooled = tape.matmul(&weights, &h)?; // [B, 1, 2H]
        let width = pooled.numel() / n;
        let pooled = tape.reshape(&pooled, &[n, width])?;
        self.fc.apply(tape, &pooled)
    }
}

impl TrainStep for PooledGru {
    type Batch = LabeledBatch;
    type Carry = ();

    fn loss(&self, tape: &mut Tape, b: &LabeledBatch) -> Result<Step> {
        let logits = self.forward(tape, b)?;
        let (loss, accuracy) = tape.cross_entropy_with_accuracy(&logits, &b.labels, None)?;
        Ok(Step::new(loss).metric("accuracy", accuracy)) // read back with the loss
    }
}

impl Module for PooledGru {
    fn entries(&self) -> Vec<Entry> {
        let mut out = prefixed("embedding", self.embedding.entries());
        out.extend(prefixed("gru", self.gru.entries()));
        out.push(Entry::new("query", &self.query));
        out.extend(prefixed("fc", self.fc.entries()));
        out
    }
}

#[derive(Parser, Debug)]
#[command(about = "A custom attention-pooled GRU classifier, written forward-only")]
struct Args {
    #[arg(long, default_value = "../shared/data/ud-english-ewt")]
    data: PathBuf,
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Training time limit in minutes.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    #[arg(long, default_value = "runs/custom_model.safetensors")]
    save: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = Context::new()?;
    println!("device: {}", ctx.adapter_info().name);
    let corpus = genres::load_or_generate(&args.data, 1)?;
    let words = genres::vocab(&corpus);
    let model = PooledGru::new(&ctx, words.len(), 64, 48, corpus.classes.len())?;
    let cfg = OptimConfig::new(Method::ADAM, args.lr).with_max_norm(Some(5.0));
    let mut opt = Optimizer::new(&ctx, cfg, model.params())?;
    let lengths: Vec<usize> = corpus.train.iter().map(|e| e.words.len()).collect();
    let mut train = run::Buckets::new(lengths, args.batch, usize::MAX, 0, |idx: &[usize], _, _| {
        let chosen: Vec<&genres::Example> = idx.iter().map(|&i| &corpus.train[i]).collect();
        genres::batch(&words, &chosen)
    });
    run::checkpoint_dir(&args.save)?;
    // The loop every model gets: epochs, a time budget, the best model kept.
    let cfg = FitConfig::new(args.epochs)
        .with_minutes(Some(args.minutes))
        .with_checkpoint(Some(args.save.clone()));
    let dev = |m: &PooledGru| genres::accuracy(&ctx, &words, &corpus.dev, |t, b| m.forward(t, b));
    let history = fit(
        &ctx,
        &model,
        &mut opt,
        &mut train,
        &cfg,
        dev,
        run::progress(
            &ctx,
            |s| format!("dev accuracy {:.2}%", 100.0 * s),
            |b: &LabeledBatch| b.lengths.iter().sum(),
        ),
    )?;
    let best = best_path(&args.save);
    model.load(&best)?;
    let test = genres::accuracy(&ctx, &words, &corpus.test, |t, b| model.forward(t, b))?;
    println!(
        "best dev {:.2}%, test {:.2}% with it; model in {}",
        100.0 * history.best.map_or(0.0, |(_, s)| s),
        100.0 * test,
        best.display()
    );
    Ok(())
}
