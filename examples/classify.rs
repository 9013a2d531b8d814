//! Many-to-one: the library's sequence classifier (`models::SequenceClassifier`), a
//! BiLSTM read out into one vector per sentence, here for the genre of each UD English
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

#[path = "common/genres.rs"]
mod genres;
#[path = "common/plot.rs"]
mod plot;
#[path = "common/run.rs"]
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use rnn_wgpu::data::Vocab;
use rnn_wgpu::models::classifier::{self, ClassifierConfig, SequenceClassifier};
use rnn_wgpu::nn::recurrent::{Config, Mode};
use rnn_wgpu::nn::Module;
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::train::{best_path, fit, FitConfig, Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, Result};

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

fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = Context::new()?;
    println!("device: {}", ctx.adapter_info().name);
    let corpus = genres::load_or_generate(&args.data, args.seed)?;
    let words = genres::vocab(&corpus);
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
        let cfg = ClassifierConfig::new(
            words.len(),
            corpus.classes.len(),
            Mode::Lstm,
            Config::new(args.emb, args.hidden)
                .with_layers(1)
                .with_bidirectional(true),
        )
        .with_emb(args.emb)
        .with_pad(Vocab::PAD)
        .with_readout(match readout {
            Readout::Final => classifier::Readout::Final,
            Readout::Mean => classifier::Readout::Mean,
            Readout::LastStep => classifier::Readout::LastStep,
        });
        let model = SequenceClassifier::new(&ctx, cfg, args.seed)?;
        let opt_cfg = OptimConfig::new(Method::ADAM, args.lr).with_max_norm(Some(5.0));
        let mut opt = Optimizer::new(&ctx, opt_cfg, model.params())?;
        let lengths: Vec<usize> = corpus.train.iter().map(|e| e.words.len()).collect();
        let mut train = run::Buckets::new(
            lengths,
            args.batch,
            usize::MAX,
            args.seed,
            |idx: &[usize], _, _| {
                let chosen: Vec<&genres::Example> = idx.iter().map(|&i| &corpus.train[i]).collect();
                genres::batch(&words, &chosen)
            },
        );
        let minutes = args.minutes / args.readouts.len() as f64;
        let fit_cfg = FitConfig::new(args.epochs)
            .with_minutes(Some(minutes))
            .with_checkpoint(Some(checkpoint.clone()))
            .with_resume(args.resume);
        let start = Instant::now();
        let history = fit(
            &ctx,
            &model,
            &mut opt,
            &mut train,
            &fit_cfg,
            |m| genres::accuracy(&ctx, &words, &corpus.dev, |t, b| m.forward(t, b)),
            run::progress(
                &ctx,
                |s| format!("{readout:?}: dev accuracy {:.2}%", 100.0 * s),
                |b: &rnn_wgpu::data::LabeledBatch| b.lengths.iter().sum(),
            ),
        )?;
        let best = best_path(&checkpoint);
        Checkpoint::load(&best)?.apply(&model.named_params(), &best.display().to_string())?;
        let test_at_best =
            genres::accuracy(&ctx, &words, &corpus.test, |t, b| model.forward(t, b))?;
        let best_dev = history.best.map_or(0.0, |(_, s)| s);
        let losses = history
            .losses
            .iter()
            .map(|&(s, l)| (f64::from(s), f64::from(l)))
            .collect();
        table.push((
            readout,
            best_dev,
            test_at_best,
            start.elapsed().as_secs_f64() / 60.0,
        ));
        curves.push((format!("{name} readout"), losses));
    }
    report(&args.checkpoint, &curves, table)
}

/// The loss curves of every readout in one plot beside `checkpoint`, and the
/// table of their accuracies.
fn report(
    checkpoint: &Path,
    curves: &[(String, Vec<(f64, f64)>)],
    table: Vec<(Readout, f64, f64, f64)>,
) -> Result<()> {
    let path = checkpoint.with_extension("loss.png");
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
        legend: plot::Legend::UpperRight,
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
