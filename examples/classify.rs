//! Many-to-one: a BiLSTM sentence classifier, here the genre of each UD English
//! EWT sentence (answers, email, newsgroup, reviews, weblog: the source named in
//! its `sent_id`). The sentence is read by a bidirectional LSTM and classified
//! from one vector, taken one of three ways (`--readouts`):
//! - `final`: the final states of both directions (each sequence's own last real
//!   step forward, its first step backward), side by side;
//! - `mean`: the outputs averaged over the real positions;
//! - `last-step`: the outputs at the last padded position, the common mistake
//!   with padded batches: for every sequence shorter than the batch's longest,
//!   that position is padding and carries nothing of the sentence.
//!
//! Each readout trains its own model for its share of `--minutes`; the example
//! ends with a table of dev and test accuracy per readout. Each model and its
//! optimizer go beside `--checkpoint` after every epoch (`--resume` continues),
//! and the readouts' training losses are drawn together as `*.loss.png`.
//!
//! Run: `cargo run --release --example classify` (`-- --help` for the options).
//! Reads `--data` (default ../shared/data/ud-english-ewt); without it, it
//! generates a task whose class is set by the first word, so that a fresh clone
//! still runs end to end.

#[path = "common/plot.rs"]
mod plot;
#[path = "common/run.rs"]
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use rnn_wgpu::data::readers::{read_conllu, TaggedSentence};
use rnn_wgpu::data::{buckets, Batch, Vocab};
use rnn_wgpu::metrics::accuracy;
use rnn_wgpu::nn::recurrent::{self, Config, Mode, Recurrent};
use rnn_wgpu::nn::{prefixed, Embedding, Linear, Module, Named, Param, SplitMix};
use rnn_wgpu::ops::argmax;
use rnn_wgpu::ops::cross_entropy::{self, Loss};
use rnn_wgpu::ops::elementwise::{self, Block};
use rnn_wgpu::ops::embedding::Index;
use rnn_wgpu::ops::gemm::{self, View};
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::train::{finish_step, Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, DType, Recorder, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Readout {
    Final,
    Mean,
    LastStep,
}

#[derive(Parser, Debug)]
#[command(about = "Classify EWT sentences by genre from the final or pooled BiLSTM state")]
struct Args {
    #[arg(long, default_value = "../shared/data/ud-english-ewt")]
    data: PathBuf,
    /// Readouts to compare, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "final,mean,last-step"
    )]
    readouts: Vec<Readout>,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// Training time in minutes, shared equally by the readouts.
    #[arg(long, default_value_t = 15.0)]
    minutes: f64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    emb: usize,
    /// Units per direction.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where each readout's model and optimizer go (`*.final.safetensors`, ...),
    /// and the loss curves (`*.loss.png`).
    #[arg(long, default_value = "runs/classify.safetensors")]
    checkpoint: PathBuf,
    /// Continue each readout from its checkpoint.
    #[arg(long)]
    resume: bool,
}

struct Example {
    words: Vec<String>,
    label: usize,
}

struct Corpus {
    train: Vec<Example>,
    dev: Vec<Example>,
    test: Vec<Example>,
    classes: Vec<String>,
}

fn load(dir: &std::path::Path) -> Result<Corpus> {
    let mut classes: Vec<String> = Vec::new();
    let mut split = |s: &str| -> Result<Vec<Example>> {
        let sents: Vec<TaggedSentence> = read_conllu(&dir.join(format!("en_ewt-ud-{s}.conllu")))?;
        Ok(sents
            .into_iter()
            .filter_map(|t| {
                let genre = t.id.as_deref()?.split('-').next()?.to_string();
                let label = match classes.iter().position(|c| *c == genre) {
                    Some(i) => i,
                    None => {
                        classes.push(genre);
                        classes.len() - 1
                    }
                };
                let words = t.words.iter().map(|w| w.to_lowercase()).collect();
                Some(Example { words, label })
            })
            .collect())
    };
    let (train, dev, test) = (split("train")?, split("dev")?, split("test")?);
    Ok(Corpus {
        train,
        dev,
        test,
        classes,
    })
}

/// A generated stand-in: the class is set by the first word, followed by filler,
/// so that only a readout that sees the start of every sentence can learn it.
fn generated(seed: u64) -> Corpus {
    let mut rng = SplitMix::new(seed);
    let mut make = |n: usize| -> Vec<Example> {
        (0..n)
            .map(|_| {
                let label = (rng.next_u64() % 3) as usize;
                let len = 2 + (rng.next_u64() % 12) as usize;
                let mut words = vec![format!("k{label}")];
                words.extend((1..len).map(|_| format!("w{}", rng.next_u64() % 20)));
                Example { words, label }
            })
            .collect()
    };
    Corpus {
        train: make(3000),
        dev: make(300),
        test: make(300),
        classes: vec!["a".into(), "b".into(), "c".into()],
    }
}

/// Embedding → BiLSTM → one vector per sentence (the readout) → linear.
struct Classifier {
    embedding: Embedding,
    lstm: Recurrent,
    fc: Linear,
    readout: Readout,
    hidden: usize,
}

struct Saved {
    index: Index,
    lstm: recurrent::Saved,
    /// `[B, 1, T]` position weights of a pooled readout
    weights: Option<Tensor>,
    feature: Tensor,
    steps: usize,
}

impl Classifier {
    fn params(&self) -> Vec<Param> {
        let mut out = self.embedding.params();
        out.extend(self.lstm.params());
        out.extend(self.fc.params());
        out
    }

    fn forward(&self, rec: &mut Recorder, b: &Batch) -> Result<(Tensor, Saved)> {
        let (n, t, h) = (b.size, b.steps, self.hidden);
        let ctx = rec.context().clone();
        let (emb, index) = self.embedding.forward(rec, &b.ids, &[n, t])?;
        let (out, lstm) = self.lstm.forward(rec, &emb, &b.lengths, None, None)?;
        let (feature, weights) = match self.readout {
            Readout::Final => {
                let dir = |d: usize| Block {
                    tensor: &out.h_n,
                    offset: d * n * h,
                    width: h,
                };
                (elementwise::concat(rec, n, dir(0), dir(1))?, None)
            }
            Readout::Mean | Readout::LastStep => {
                let w: Vec<f32> = b
                    .lengths
                    .iter()
                    .flat_map(|&len| {
                        (0..t).map(move |s| match self.readout {
                            Readout::Mean if s < len => 1.0 / len as f32,
                            Readout::LastStep if s == t - 1 => 1.0,
                            _ => 0.0,
                        })
                    })
                    .collect();
                let w = Tensor::from_slice(&ctx, &[n, 1, t], &w)?;
                let feature = Tensor::empty(&ctx, &[n, 2 * h], DType::F32)?;
                // feature[b] = w[b] · y[b]: a [1, T] by [T, 2H] product per sequence.
                gemm::forward_view(
                    rec,
                    View::matrix(&feature, 1, 2 * h, true),
                    View::matrix(&w, 1, t, true),
                    View::matrix(&out.y, t, 2 * h, true),
                    None,
                    n,
                    1.0,
                    0.0,
                )?;
                (feature, Some(w))
            }
        };
        let logits = self.fc.forward(rec, &feature)?;
        Ok((
            logits,
            Saved {
                index,
                lstm,
                weights,
                feature,
                steps: t,
            },
        ))
    }

    fn backward(&self, rec: &mut Recorder, loss: &Loss, saved: &Saved) -> Result<()> {
        let h = self.hidden;
        let n = saved.feature.shape()[0];
        let t = saved.steps;
        let ctx = rec.context().clone();
        let dfeature = self.fc.backward(rec, &loss.dlogits, &saved.feature)?;
        let dy = Tensor::zeros(&ctx, &[n, t, 2 * h])?;
        let g = match &saved.weights {
            None => {
                let (fwd, bwd) = elementwise::split(rec, n, Block::whole(&dfeature), h, h)?;
                let dh_n = Tensor::empty(&ctx, &[2, n, h], DType::F32)?;
                rec.copy_range(&dh_n, 0, &fwd, 0, n * h)?;
                rec.copy_range(&dh_n, n * h, &bwd, 0, n * h)?;
                self.lstm
                    .backward(rec, &saved.lstm, &dy, Some(&dh_n), None)?
            }
            Some(w) => {
                // dy[b] = w[b]ᵀ · dfeature[b]
                gemm::forward_view(
                    rec,
                    View::matrix(&dy, t, 2 * h, true),
                    View::matrix(w, 1, t, true).t(),
                    View::matrix(&dfeature, 1, 2 * h, true),
                    None,
                    n,
                    1.0,
                    0.0,
                )?;
                self.lstm.backward(rec, &saved.lstm, &dy, None, None)?
            }
        };
        self.embedding.backward(rec, &g.dx, &saved.index)
    }
}

fn batch(words: &Vocab, examples: &[&Example]) -> Result<(Batch, Vec<u32>)> {
    let ids: Vec<Vec<u32>> = examples
        .iter()
        .map(|e| e.words.iter().map(|w| words.id(w)).collect())
        .collect();
    let pairs: Vec<(&[u32], &[u32])> = ids.iter().map(|v| (&v[..], &v[..])).collect();
    let labels = examples.iter().map(|e| e.label as u32).collect();
    Ok((Batch::pad(&pairs, Vocab::PAD)?, labels))
}

fn evaluate(ctx: &Context, model: &Classifier, words: &Vocab, set: &[Example]) -> Result<f64> {
    let lengths: Vec<usize> = set.iter().map(|e| e.words.len()).collect();
    let (mut predicted, mut gold) = (vec![], vec![]);
    for idx in buckets(&lengths, 64, 0) {
        let chosen: Vec<&Example> = idx.iter().map(|&i| &set[i]).collect();
        let (b, labels) = batch(words, &chosen)?;
        let mut rec = Recorder::new(ctx, "eval");
        let (logits, _) = model.forward(&mut rec, &b)?;
        let best = argmax::forward(&mut rec, &logits)?;
        rec.submit();
        predicted.extend(best.to_vec()?.into_iter().map(|v| v as u32));
        gold.extend(labels);
    }
    let keep = vec![true; gold.len()];
    Ok(accuracy(&predicted, &gold, &keep)?.unwrap_or(0.0))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = Context::new()?;
    println!("device: {}", ctx.adapter_info().name);
    let corpus = if args.data.join("en_ewt-ud-train.conllu").exists() {
        println!("data: {}", args.data.display());
        load(&args.data)?
    } else {
        println!("data: {} not found; a generated task", args.data.display());
        generated(args.seed)
    };
    let words = Vocab::build(
        corpus
            .train
            .iter()
            .flat_map(|e| &e.words)
            .map(String::as_str),
        2,
    );
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for e in &corpus.test {
        *counts.entry(e.label).or_insert(0) += 1;
    }
    let majority =
        counts.values().copied().max().unwrap_or(0) as f64 / corpus.test.len().max(1) as f64;
    println!(
        "train {} / dev {} / test {} sentences, classes {:?} (the largest is {:.1}% of test); {} words",
        corpus.train.len(),
        corpus.dev.len(),
        corpus.test.len(),
        corpus.classes,
        100.0 * majority,
        words.len()
    );
    run::checkpoint_dir(&args.checkpoint)?;
    let mut table = Vec::new();
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for &readout in &args.readouts {
        let name = format!("{readout:?}").to_lowercase();
        let checkpoint = args
            .checkpoint
            .with_extension(format!("{name}.safetensors"));
        let cfg = Config {
            mode: Mode::Lstm,
            input_size: args.emb,
            hidden_size: args.hidden,
            num_layers: 1,
            bidirectional: true,
        };
        let model = Classifier {
            embedding: Embedding::new(&ctx, words.len(), args.emb, Some(Vocab::PAD), args.seed)?,
            lstm: Recurrent::new(&ctx, cfg, args.seed + 1)?,
            fc: Linear::new(
                &ctx,
                2 * args.hidden,
                corpus.classes.len(),
                true,
                args.seed + 2,
            )?,
            readout,
            hidden: args.hidden,
        };
        let opt_cfg = OptimConfig {
            max_norm: Some(5.0),
            ..OptimConfig::new(Method::ADAM, args.lr)
        };
        let mut opt = Optimizer::new(&ctx, opt_cfg, model.params())?;
        let named: Vec<Named> = [
            prefixed("embedding", model.embedding.named_params()),
            prefixed("lstm", model.lstm.named_params()),
            prefixed("fc", model.fc.named_params()),
        ]
        .concat();
        if args.resume {
            run::resume(&checkpoint, &named, &mut opt)?;
        }
        let mut losses = Vec::new();
        let lengths: Vec<usize> = corpus.train.iter().map(|e| e.words.len()).collect();
        let (start, budget) = (
            Instant::now(),
            args.minutes * 60.0 / args.readouts.len() as f64,
        );
        let mut best_dev = 0.0;
        let mut test_at_best = 0.0;
        let steps_per_epoch = lengths.len().div_ceil(args.batch) as u32;
        let first_epoch = (opt.steps() / steps_per_epoch.max(1)) as usize;
        'epochs: for epoch in first_epoch..args.epochs {
            let batches = buckets(&lengths, args.batch, args.seed + epoch as u64);
            let bar = run::bar(batches.len(), format!("{readout:?} epoch {}", epoch + 1));
            let mut out_of_time = false;
            for idx in &batches {
                let chosen: Vec<&Example> = idx.iter().map(|&i| &corpus.train[i]).collect();
                let (b, labels) = batch(&words, &chosen)?;
                let mut rec = Recorder::new(&ctx, "classify step");
                for p in model.params() {
                    rec.zero(&p.grad)?;
                }
                let (logits, saved) = model.forward(&mut rec, &b)?;
                let loss = cross_entropy::forward(&mut rec, &logits, &labels, None)?;
                model.backward(&mut rec, &loss, &saved)?;
                opt.step(&mut rec)?;
                let report = finish_step(rec, &loss.loss, &mut opt)?;
                losses.push((f64::from(opt.steps()), f64::from(report.loss)));
                bar.set_message(format!("loss {:.3}", report.loss));
                bar.inc(1);
                if start.elapsed().as_secs_f64() > budget {
                    out_of_time = true;
                    break;
                }
            }
            bar.finish_and_clear();
            Checkpoint::capture(&named, Some(&opt))?.save(&checkpoint)?;
            let dev = evaluate(&ctx, &model, &words, &corpus.dev)?;
            println!(
                "{readout:?} epoch {} ({:.1} min): dev accuracy {:.2}%",
                epoch + 1,
                start.elapsed().as_secs_f64() / 60.0,
                100.0 * dev
            );
            if dev > best_dev {
                best_dev = dev;
                test_at_best = evaluate(&ctx, &model, &words, &corpus.test)?;
            }
            if out_of_time {
                break 'epochs;
            }
        }
        table.push((
            readout,
            best_dev,
            test_at_best,
            start.elapsed().as_secs_f64() / 60.0,
        ));
        curves.push((format!("{name} readout"), losses));
    }
    let path = args.checkpoint.with_extension("loss.png");
    let series: Vec<plot::Series> = curves
        .iter()
        .enumerate()
        .map(|(group, (name, points))| plot::Series {
            name,
            points,
            style: plot::Style::Noisy,
            group,
        })
        .collect();
    let chart = plot::Chart {
        title: "Genre classifier: training loss by readout",
        x: "training step",
        y: "loss (nats per sentence)",
        right: None,
    };
    plot::curves(&path, &chart, &series).map_err(|e| run::file_err(&path, e))?;
    println!("readout      dev      test   (best dev epoch; minutes)");
    for (readout, dev, test, minutes) in table {
        println!(
            "{:<10} {:>6.2}%  {:>6.2}%   {minutes:.1}",
            format!("{readout:?}"),
            100.0 * dev,
            100.0 * test
        );
    }
    Ok(())
}
