//! A character language model on tinyshakespeare: a stacked LSTM (or
//! LayerNorm-LSTM, GRU, Elman RNN, minGRU, minLSTM) trained by truncated BPTT
//! across continuous streams, reporting the validation loss in nats per
//! character and perplexity, and a sample of generated text (temperature, top-k
//! and top-p sampling on the GPU) after each evaluation.
//!
//! Run: `cargo run --release --example char_lm` (`-- --help` for the options):
//! the best measured recipe by default, a LayerNorm-LSTM of 2 × 256 units for
//! 20 minutes of training, validated every 2 minutes. Reads `--data` (default
//! ../shared/data/tinyshakespeare/input.txt; the last 10% is validation);
//! without it, it generates a text from a small grammar so that a fresh clone
//! still runs end to end. `--cells lstm,lnlstm,gru,rnn` trains one model of
//! each kind in turn, each for its share of `--minutes`, and plots their loss
//! curves together (`*.loss.png` beside `--checkpoint`, numbers in the CSV
//! beside it), so the Elman RNN's trouble with long dependencies shows next to
//! the gated cells. Curves are by minutes of training (evaluation and sampling
//! off the clock), and the run ends with a table: each cell's final and best
//! validation loss and when it first reached 1.50 nats/char. Training runs in
//! `train::fit`: the model, optimizer, position in the streams and the state
//! carried into the next chunk go to `--checkpoint` after every epoch and when
//! time runs out (one file per cell when comparing; the best by validation loss
//! beside it); `--resume` continues exactly where it stopped, within the same
//! `--minutes`. `--compare earlier.loss.csv` draws an earlier run's curves
//! beside this one's (a cell trained with `--zoneout`, `--dropout` or
//! `--recurrent-dropout` is labelled with them).

#[path = "common/plot.rs"]
mod plot;
#[path = "common/run.rs"]
mod run;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use clap::Parser;
use rnn_wgpu::data::readers::read_chars;
use rnn_wgpu::data::Batch;
use rnn_wgpu::data::{Streams, Vocab};
use rnn_wgpu::models::language_model::{Chunk, State};
use rnn_wgpu::models::{LanguageModel, LanguageModelConfig};
use rnn_wgpu::nn::{self, Mode, Module, SplitMix};
use rnn_wgpu::ops::sample::Sampling;
use rnn_wgpu::train::{fit, Clock, FitConfig, Goal, Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, Error, Result, Tape};

#[derive(Parser, Debug)]
#[command(about = "Train a character language model on tinyshakespeare")]
struct Args {
    #[arg(long, default_value = "../shared/data/tinyshakespeare/input.txt")]
    data: PathBuf,
    /// Curves of earlier runs (their `*.loss.csv`) to draw beside this run's,
    /// so that runs of different options share one plot; repeatable.
    #[arg(long)]
    compare: Vec<PathBuf>,
    /// Cells to train, comma separated: lstm, lnlstm (LayerNorm-LSTM), gru, rnn
    /// (Elman tanh), mingru, minlstm (trained by a scan over time).
    #[arg(long, default_value = "lnlstm")]
    cells: String,
    /// Epochs at most (the time budget ends the run first here).
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Training time in minutes, shared equally by the cells.
    #[arg(long, default_value_t = 20.0)]
    minutes: f64,
    /// Parallel streams per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Characters per chunk of truncated BPTT.
    #[arg(long, default_value_t = 64)]
    bptt: usize,
    #[arg(long, default_value_t = 64)]
    emb: usize,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// The learning rate as this many cosine cycles from --lr down to zero
    /// over the training minutes (warm restarts); 0: held at --lr.
    #[arg(long, default_value_t = 1)]
    cycles: u32,
    /// Dropout on the embeddings, between layers and on the outputs while
    /// training.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Zoneout on h while training: the probability that a unit keeps its
    /// previous state at a step.
    #[arg(long, default_value_t = 0.0)]
    zoneout: f32,
    /// Zoneout on the LSTM's cell state c (other cells have none).
    #[arg(long, default_value_t = 0.0)]
    zoneout_c: f32,
    /// Dropout on the states the recurrent products read while training, one
    /// mask per stream, unit and chunk.
    #[arg(long, default_value_t = 0.0)]
    recurrent_dropout: f32,
    /// Temperature of the samples.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample only among the k most likely characters.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample only within the smallest set of most likely characters holding
    /// this much probability (nucleus sampling).
    #[arg(long)]
    top_p: Option<f32>,
    /// Characters sampled after each epoch.
    #[arg(long, default_value_t = 300)]
    sample: usize,
    /// Also measure the validation loss every this many minutes of training
    /// (0: at the end of each epoch only).
    #[arg(long, default_value_t = 2.0)]
    eval_every: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "runs/char_lm.safetensors")]
    checkpoint: PathBuf,
    #[arg(long)]
    resume: bool,
}

/// A generated stand-in: sentences from a small grammar, so that there is
/// structure at the word and the sentence level.
fn generated(seed: u64) -> Vec<char> {
    let subjects = ["the king", "a fool", "my lord", "the queen", "good sir"];
    let verbs = ["speaks", "weeps", "laughs", "fights", "sleeps"];
    let ends = [
        "tonight.",
        "in the hall.",
        "for love.",
        "and is gone.",
        "again.",
    ];
    let mut rng = SplitMix::new(seed);
    let mut pick = |xs: &[&'static str]| xs[(rng.next_u64() % xs.len() as u64) as usize];
    let mut text = String::new();
    while text.len() < 200_000 {
        text.push_str(&format!(
            "{} {} {}\n",
            pick(&subjects),
            pick(&verbs),
            pick(&ends)
        ));
    }
    text.chars().collect()
}

fn cell_of(name: &str) -> Result<nn::Cell> {
    match name {
        "lstm" | "lnlstm" => Ok(nn::Cell::Recurrent(Mode::Lstm)),
        "gru" => Ok(nn::Cell::Recurrent(Mode::Gru)),
        "rnn" => Ok(nn::Cell::Recurrent(Mode::RnnTanh)),
        "mingru" => Ok(nn::Cell::MinGru),
        "minlstm" => Ok(nn::Cell::MinLstm),
        other => Err(Error::File {
            path: "--cells".into(),
            reason: format!(
                "unknown cell {other:?}: expected lstm, lnlstm, gru, rnn, mingru or minlstm"
            ),
        }),
    }
}

/// Zoneout's probability for c: the LSTMs' (plain and LayerNorm) have a c.
fn zoneout_c(cell: &str, args: &Args) -> f32 {
    if cell == "lstm" || cell == "lnlstm" {
        args.zoneout_c
    } else {
        0.0
    }
}

/// A cell's name in the plot and the table, with the regularization it trains
/// with: `gru`, or `gru, zoneout 0.1`.
fn label(cell: &str, args: &Args) -> String {
    let zoneout_c = zoneout_c(cell, args);
    let options = [
        ("dropout", args.dropout),
        ("zoneout", args.zoneout),
        ("zoneout c", zoneout_c),
        ("recurrent dropout", args.recurrent_dropout),
    ];
    // Sizes other than the defaults tell apart runs of one cell.
    let name = if (args.layers, args.hidden) == (2, 256) {
        cell.to_string()
    } else {
        format!("{cell} {}×{}", args.layers, args.hidden)
    };
    options
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .fold(name, |out, (name, p)| format!("{out}, {name} {p}"))
}

/// A named series of (minutes, loss) points.
type Curve = (String, Vec<(f64, f64)>);

/// The series of a `*.loss.csv` the plot wrote (`series,x,y` rows), in order.
fn read_curves(path: &Path) -> Result<Vec<Curve>> {
    let text = std::fs::read_to_string(path).map_err(|e| run::file_err(path, e))?;
    let mut out: Vec<Curve> = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let bad = || run::file_err(path, format!("line {}: expected series,x,y", n + 1));
        let mut cols = line.rsplitn(3, ',');
        let (Some(y), Some(x), Some(name)) = (cols.next(), cols.next(), cols.next()) else {
            return Err(bad());
        };
        let (Ok(x), Ok(y)) = (x.parse::<f64>(), y.parse::<f64>()) else {
            return Err(bad());
        };
        match out.last_mut() {
            Some((last, points)) if last == name => points.push((x, y)),
            _ => out.push((name.to_string(), vec![(x, y)])),
        }
    }
    Ok(out)
}

/// Mean cross-entropy per character (nats) over `ids`, state carried across chunks.
fn evaluate(ctx: &Context, lm: &LanguageModel, ids: &[u32], bptt: usize) -> Result<f64> {
    let streams = Streams::new(ids, 16, bptt)?;
    let (mut sum, mut count) = (0.0, 0usize);
    let mut state: Option<State> = None;
    for b in (0..streams.chunks()).filter_map(|i| streams.chunk(i)) {
        let mut tape = Tape::eval(ctx, "val");
        let (loss, next) = lm.loss(&mut tape, &b, state.as_ref())?;
        tape.into_recorder().submit();
        let n = b.targets.iter().filter(|&&t| t != Batch::IGNORE).count();
        sum += f64::from(loss.to_vec()?[0]) * n as f64;
        count += n;
        state = Some(next);
    }
    Ok(sum / count.max(1) as f64)
}

/// `n` characters sampled after a newline, the uniform numbers drawn from `seed`.
fn sample(
    ctx: &Context,
    lm: &LanguageModel,
    chars: &Vocab,
    args: &Args,
    seed: u64,
) -> Result<String> {
    let prime = [chars.id("\n")];
    let how = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
    };
    let ids = lm.sample(ctx, &prime, args.sample, &how, seed)?;
    Ok(ids.iter().map(|&i| chars.token(i).unwrap_or("?")).collect())
}

/// Per-step training losses and the validation losses, by minutes of training
/// (evaluation and sampling excluded); the training speed.
struct Curves {
    train: Vec<(f64, f64)>,
    val: Vec<(f64, f64)>,
    chars_per_s: f64,
}

/// Trains one cell for `minutes` with `train::fit`, the validation loss its
/// score, a sample after each evaluation.
fn train(
    ctx: &Context,
    args: &Args,
    cell: &str,
    data: &Data,
    checkpoint: &Path,
    minutes: f64,
) -> Result<Curves> {
    let zoneout_c = zoneout_c(cell, args);
    let cfg = LanguageModelConfig::new(data.chars.len())
        .with_emb(args.emb)
        .with_hidden(args.hidden)
        .with_layers(args.layers)
        .with_cell(cell_of(cell)?);
    let lm = LanguageModel::new(ctx, cfg, args.seed)?
        .with_dropout(args.dropout, args.seed as u32)?
        .with_zoneout(args.zoneout, zoneout_c, args.seed as u32 + 2)?
        .with_recurrent_dropout(args.recurrent_dropout, args.seed as u32 + 3)?;
    let lm = if cell == "lnlstm" {
        lm.with_layer_norm()?
    } else {
        lm
    };
    let opt_cfg = OptimConfig::new(Method::ADAM, args.lr).with_max_norm(Some(5.0));
    let mut opt = Optimizer::new(ctx, opt_cfg, lm.params())?;
    let mut streams = Streams::new(&data.train, args.batch, args.bptt)?;
    let params: usize = lm.params().iter().map(|p| p.value.numel()).sum();
    println!(
        "{cell}: {} layers of {}, {params} parameters; {} streams × {} chunks of {} characters per epoch",
        args.layers,
        args.hidden,
        streams.streams(),
        streams.chunks(),
        args.bptt
    );
    let fit_cfg = FitConfig::new(args.epochs)
        .with_minutes(Some(minutes))
        .with_clock(Clock::Training)
        .with_eval_minutes((args.eval_every > 0.0).then_some(args.eval_every))
        .with_cycles((args.cycles > 0).then_some(args.cycles))
        .with_goal(Goal::Lower)
        .with_checkpoint(Some(checkpoint.to_path_buf()))
        .with_resume(args.resume);
    let sampled = RefCell::new(None);
    let evaluations = Cell::new(0u64);
    let history = fit(
        ctx,
        &lm,
        &mut opt,
        &mut streams,
        &fit_cfg,
        |m| {
            let val = evaluate(ctx, m, &data.val, args.bptt)?;
            let seed = args.seed + evaluations.replace(evaluations.get() + 1);
            *sampled.borrow_mut() = Some(sample(ctx, m, &data.chars, args, seed)?);
            Ok(val)
        },
        run::progress_then(
            ctx,
            |v| {
                format!(
                    "{cell}: val loss {v:.3} nats/char, perplexity {:.2}",
                    v.exp()
                )
            },
            ("characters", |c: &Chunk| c.batch.size * c.batch.steps),
            || {
                let text = sampled.borrow_mut().take()?;
                Some(format!(
                    "--- sample (temperature {}) ---\n{text}\n---",
                    args.temperature
                ))
            },
        ),
    )?;
    let chars = history.losses.len() * streams.streams() * args.bptt;
    let (train, val) = run::curves(&history);
    Ok(Curves {
        train,
        val,
        chars_per_s: chars as f64 / (history.minutes * 60.0).max(1e-9),
    })
}

/// The text's characters as ids, 90% for training and the rest for validation.
struct Data {
    chars: Vocab,
    train: Vec<u32>,
    val: Vec<u32>,
}

impl Data {
    /// `--data`, or the generated text where there is none.
    fn load(args: &Args) -> Result<Self> {
        let text = if args.data.exists() {
            println!("data: {}", args.data.display());
            read_chars(&args.data)?
        } else {
            println!(
                "data: {} not found; training on a generated text",
                args.data.display()
            );
            generated(args.seed)
        };
        let mut alphabet: Vec<String> = text.iter().map(|c| c.to_string()).collect();
        alphabet.sort();
        alphabet.dedup();
        let chars = Vocab::from_tokens(alphabet);
        let mut train: Vec<u32> = text.iter().map(|c| chars.id(&c.to_string())).collect();
        let val = train.split_off(train.len() * 9 / 10);
        println!(
            "{} characters ({} train, {} validation), {} distinct",
            train.len() + val.len(),
            train.len(),
            val.len(),
            chars.len()
        );
        Ok(Self { chars, train, val })
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = Context::new()?;
    println!("device: {}", ctx.adapter_info().name);
    let data = Data::load(&args)?;
    run::checkpoint_dir(&args.checkpoint)?;
    let cells: Vec<&str> = args.cells.split(',').map(str::trim).collect();
    for cell in &cells {
        cell_of(cell)?;
    }
    let mut all = Vec::new();
    for cell in &cells {
        let checkpoint = if cells.len() > 1 {
            args.checkpoint
                .with_extension(format!("{cell}.safetensors"))
        } else {
            args.checkpoint.clone()
        };
        let minutes = args.minutes / cells.len() as f64;
        let curves = train(&ctx, &args, cell, &data, &checkpoint, minutes)?;
        all.push((label(cell, &args), curves));
    }
    let names: Vec<(String, String)> = all
        .iter()
        .map(|(cell, _)| (format!("{cell} training"), format!("{cell} validation")))
        .collect();
    let earlier = args
        .compare
        .iter()
        .map(|path| read_curves(path))
        .collect::<Result<Vec<_>>>()?
        .concat();
    let mut series = Vec::new();
    for (group, ((_, c), (train, val))) in all.iter().zip(&names).enumerate() {
        series.push(plot::Series {
            name: train,
            points: &c.train,
            style: plot::Style::Noisy,
            group,
        });
        series.push(plot::Series {
            name: val,
            points: &c.val,
            style: plot::Style::Points,
            group,
        });
    }
    // An earlier run's series keep their names; each of its cells gets a colour.
    let mut groups: Vec<&str> = Vec::new();
    for (name, points) in &earlier {
        let (cell, style) = match name.rsplit_once(' ') {
            Some((cell, "training")) => (cell, plot::Style::Noisy),
            Some((cell, _)) => (cell, plot::Style::Points),
            None => (name.as_str(), plot::Style::Points),
        };
        let group = match groups.iter().position(|&g| g == cell) {
            Some(g) => g,
            None => {
                groups.push(cell);
                groups.len() - 1
            }
        };
        series.push(plot::Series {
            name,
            points,
            style,
            group: all.len() + group,
        });
    }
    let chart = plot::Chart {
        title: "Character language model: loss by cell",
        x: "minutes of training (evaluation excluded)",
        y: "loss (nats per character)",
        right: None,
        legend: plot::Legend::UpperRight,
    };
    let path = args.checkpoint.with_extension("loss.png");
    plot::curves(&path, &chart, &series).map_err(|e| run::file_err(&path, e))?;
    print_table(&all);
    Ok(())
}

/// Each cell's final and best validation loss, when it first reached 1.50
/// nats/char, and its speed.
fn print_table(all: &[(String, Curves)]) {
    let w = all
        .iter()
        .map(|(cell, _)| cell.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "\n{:<w$}   final val   best val   first at or below 1.50   chars/s",
        "cell"
    );
    for (cell, c) in all {
        let (Some(&(minutes, last)), Some(best)) = (
            c.val.last(),
            c.val.iter().map(|&(_, v)| v).min_by(f64::total_cmp),
        ) else {
            continue;
        };
        let reached = c
            .val
            .iter()
            .find(|&&(_, v)| v <= 1.50)
            .map_or("not reached".to_string(), |(m, _)| format!("{m:.1} min"));
        println!(
            "{cell:<w$} {last:>11.3} {best:>10.3} {reached:>24} {:>9.0}   ({minutes:.1} min of training)",
            c.chars_per_s
        );
    }
}
