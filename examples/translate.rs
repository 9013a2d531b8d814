//! An attention encoder-decoder translating German to English on Multi30k:
//! trains on train, keeps the model with the best validation BLEU, and reports
//! corpus BLEU on test_2016_flickr with beam search, a few translations, and an
//! attention heat map (PNG) of one of them.
//!
//! Run: `cargo run --release --example translate` (`-- --help` for the options):
//! the measured best recipe by default, an hour of training as two cosine cycles
//! with warm restarts, dropout 0.3, label smoothing 0.1, and the average of the
//! last five evaluations tested beside the best model.
//! Reads `--data` (default ../shared/data/multi30k, the tokenized, lower-cased
//! files); without it, it generates a small translation task (a word-for-word
//! cipher in reversed order) so that a fresh clone still runs end to end.
//! `--attention none` trains the classic encoder-decoder whose only link is the
//! final encoder state; `--encoder transformer` swaps the BiLSTM encoder for
//! transformer encoder layers. What the field adds: `--dropout`,
//! `--label-smoothing`, `--bpe N` (subword pieces from N byte-pair merges learned
//! on each side's training words; BLEU is on the words joined back), `--schedule
//! cosine` (the learning rate down to zero over `--minutes`; with `--cycles N`, N
//! times, each restart at `--lr`) and `--average N` (the mean of the parameters
//! at the last N evaluations, tested beside the best single model; each
//! evaluation's parameters go beside the checkpoint as *.stepS.safetensors, the
//! last N kept, so a resumed run averages across it). `--minutes` counts
//! training only: validation (and with `--test-curve`, greedy test BLEU after
//! each epoch) runs off the clock.
//! `--alpha 0.6,0.8,1` picks beam search's length normalization on validation;
//! `--evaluate FILE` tests a saved model without training, `--ensemble A,B`
//! saved models alone and translating together. After
//! every epoch (and when time runs out) the model and optimizer go to
//! `--checkpoint` (resume with `--resume`), the best by validation BLEU beside it
//! as *.best.safetensors; the loss and BLEU curves go beside it as *.loss.png
//! (with a CSV of the numbers) and the heat map as *.attention.png.

#[path = "common/plot.rs"]
mod plot;
#[path = "common/run.rs"]
mod run;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use rnn_wgpu::data::bpe::{self, Bpe};
use rnn_wgpu::data::readers::read_parallel;
use rnn_wgpu::data::{buckets, Batch, ParallelBatch, Vocab};
use rnn_wgpu::metrics::corpus_bleu;
use rnn_wgpu::models::{EncoderKind, Ensemble, Link, Seq2Seq, Seq2SeqConfig};
use rnn_wgpu::nn::{Module, Score, SplitMix};
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::train::{best_path, fit, Clock, FitConfig, Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, Result, Tape};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AttentionArg {
    /// Luong's general score (`--input-feeding` feeds h̃ to the next step).
    Luong,
    /// Bahdanau's additive score.
    Bahdanau,
    /// No attention: the final encoder state is the only link.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScheduleArg {
    Constant,
    Cosine,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EncoderArg {
    Lstm,
    Mingru,
    Minlstm,
    Transformer,
}

#[derive(Parser, Debug)]
#[command(about = "Train an attention encoder-decoder on Multi30k German to English")]
struct Args {
    /// Folder with {train,val,test_2016_flickr}.lc.norm.tok.{de,en}.
    #[arg(long, default_value = "../shared/data/multi30k")]
    data: PathBuf,
    /// Epochs at most [default: 100 on Multi30k, where the time budget ends
    /// the run first; 12 on the generated task].
    #[arg(long)]
    epochs: Option<usize>,
    /// Stop training after this many minutes (then evaluate).
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    emb: usize,
    /// LSTM encoder units per direction (the decoder has twice as many).
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    #[arg(long, default_value_t = 1)]
    layers: usize,
    #[arg(long, value_enum, default_value_t = AttentionArg::Luong)]
    attention: AttentionArg,
    /// Luong input feeding: better translations, but training must then run the
    /// decoder a step at a time instead of over all steps at once.
    #[arg(long)]
    input_feeding: bool,
    #[arg(long, value_enum, default_value_t = EncoderArg::Lstm)]
    encoder: EncoderArg,
    /// Heads and feed-forward units of a transformer encoder (its width is --emb).
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 256)]
    ff: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// How the learning rate moves over the time budget: held, or a cosine from
    /// --lr down to zero at the last minute.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    schedule: ScheduleArg,
    /// Warm restarts of the cosine: the budget split into this many cycles, each
    /// starting again at --lr (SGDR).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    cycles: u32,
    /// Dropout on the embeddings, between layers and before the output layer.
    #[arg(long, default_value_t = 0.3)]
    dropout: f32,
    /// Tie the output layer to the target embedding (the decoder's features
    /// projected to --emb first): fewer parameters, a cheaper output layer.
    #[arg(long)]
    tie_embeddings: bool,
    /// Label smoothing of the training targets.
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f32,
    /// Also translate test greedily after each epoch, for test BLEU against
    /// training time (off the clock, as validation is; not used to choose).
    #[arg(long)]
    test_curve: bool,
    /// Also test the average of the parameters at the last N evaluations
    /// (checkpoint averaging; 0 or 1: off); the one with the better validation
    /// BLEU is reported first.
    #[arg(long, default_value_t = 5)]
    average: usize,
    /// Byte-pair merges learned on each side's training words (0: whole words):
    /// the model reads and writes subword pieces, joined back for BLEU.
    #[arg(long, default_value_t = 0)]
    bpe: usize,
    /// Tokens seen fewer times in training become <unk>.
    #[arg(long, default_value_t = 2)]
    min_count: usize,
    /// Training pairs longer than this (either side) are skipped.
    #[arg(long, default_value_t = 40)]
    max_len: usize,
    /// Use only the first N training pairs (0: all).
    #[arg(long, default_value_t = 0)]
    train_pairs: usize,
    /// Validation pairs translated (greedily) for BLEU after each epoch.
    #[arg(long, default_value_t = 300)]
    val_pairs: usize,
    /// Also evaluate on validation every this many minutes of training (0: only
    /// after each epoch), for BLEU against training time.
    #[arg(long, default_value_t = 0.0)]
    eval_minutes: f64,
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// Length normalization: hypotheses ranked by score / length^alpha. Several
    /// (comma separated): the one whose beam search scores best on validation
    /// translates test.
    #[arg(long, value_delimiter = ',', default_value = "1.0")]
    alpha: Vec<f32>,
    /// Train nothing: test this checkpoint (made with the same data and sizes).
    #[arg(long)]
    evaluate: Option<PathBuf>,
    /// Train nothing: test these checkpoints (comma separated; the same data and
    /// sizes, e.g. runs from different seeds) alone and as an ensemble, which
    /// chooses each token from the mean of the models' log-probabilities.
    #[arg(long, value_delimiter = ',')]
    ensemble: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "runs/translate.safetensors")]
    checkpoint: PathBuf,
    #[arg(long)]
    resume: bool,
}

type Pairs = Vec<(Vec<String>, Vec<String>)>;

struct Corpus {
    train: Pairs,
    val: Pairs,
    test: Pairs,
}

fn load(dir: &Path) -> Result<Corpus> {
    let split = |s: &str| {
        read_parallel(
            &dir.join(format!("{s}.lc.norm.tok.de")),
            &dir.join(format!("{s}.lc.norm.tok.en")),
        )
    };
    Ok(Corpus {
        train: split("train")?,
        val: split("val")?,
        test: split("test_2016_flickr")?,
    })
}

/// A generated stand-in: each source word has its own target word, and the
/// target is the source's words in reverse order.
fn generated(seed: u64) -> Corpus {
    let words = 40;
    let mut rng = SplitMix::new(seed);
    let mut make = |n: usize| -> Pairs {
        (0..n)
            .map(|_| {
                let len = 3 + (rng.next_u64() % 6) as usize;
                let src: Vec<usize> = (0..len)
                    .map(|_| (rng.next_u64() % words) as usize)
                    .collect();
                (
                    src.iter().map(|w| format!("q{w}")).collect(),
                    src.iter().rev().map(|w| format!("w{w}")).collect(),
                )
            })
            .collect()
    };
    Corpus {
        train: make(3000),
        val: make(200),
        test: make(200),
    }
}

struct Vocabs {
    src: Vocab,
    tgt: Vocab,
    bos: u32,
    eos: u32,
    /// Subword merges of each side, when the model reads and writes pieces.
    bpe: Option<(Bpe, Bpe)>,
}

impl Vocabs {
    /// Vocabularies of the training words, or of their pieces after `merges`
    /// byte-pair merges learned on each side's training words.
    fn new(train: &Pairs, min_count: usize, merges: usize) -> Result<Self> {
        let bpe = if merges > 0 {
            let src = train.iter().flat_map(|p| &p.0);
            let tgt = train.iter().flat_map(|p| &p.1);
            Some((
                Bpe::learn(src.map(String::as_str), merges)?,
                Bpe::learn(tgt.map(String::as_str), merges)?,
            ))
        } else {
            None
        };
        let (src, tgt) = match &bpe {
            Some((s, t)) => (
                pieces(train.iter().map(|p| s.encode(&p.0))),
                pieces(train.iter().map(|p| t.encode(&p.1))),
            ),
            None => (
                pieces(train.iter().map(|p| p.0.clone())),
                pieces(train.iter().map(|p| p.1.clone())),
            ),
        };
        let src = Vocab::build(src.iter().map(String::as_str), min_count);
        let tgt = Vocab::build_with(&["<s>", "</s>"], tgt.iter().map(String::as_str), min_count);
        let (bos, eos) = (tgt.id("<s>"), tgt.id("</s>"));
        Ok(Self {
            src,
            tgt,
            bos,
            eos,
            bpe,
        })
    }

    fn src_ids(&self, s: &[String]) -> Vec<u32> {
        match &self.bpe {
            Some((b, _)) => b.encode(s).iter().map(|w| self.src.id(w)).collect(),
            None => s.iter().map(|w| self.src.id(w)).collect(),
        }
    }

    fn tgt_ids(&self, t: &[String]) -> Vec<u32> {
        match &self.bpe {
            Some((_, b)) => b.encode(t).iter().map(|w| self.tgt.id(w)).collect(),
            None => t.iter().map(|w| self.tgt.id(w)).collect(),
        }
    }

    fn batch(&self, pairs: &[&(Vec<String>, Vec<String>)]) -> Result<ParallelBatch> {
        let ids: Vec<(Vec<u32>, Vec<u32>)> = pairs
            .iter()
            .map(|(s, t)| (self.src_ids(s), self.tgt_ids(t)))
            .collect();
        let refs: Vec<(&[u32], &[u32])> = ids.iter().map(|(s, t)| (&s[..], &t[..])).collect();
        ParallelBatch::new(&refs, Vocab::PAD, self.bos, self.eos)
    }

    /// The target tokens of `ids`: words, pieces joined back when subwords.
    fn words(&self, ids: &[u32]) -> Vec<String> {
        let tokens: Vec<&str> = ids
            .iter()
            .map(|&i| self.tgt.token(i).unwrap_or("<unk>"))
            .collect();
        match self.bpe {
            Some(_) => bpe::decode(&tokens),
            None => tokens.into_iter().map(String::from).collect(),
        }
    }

    /// The source tokens the model reads (pieces when subwords).
    fn src_tokens(&self, s: &[String]) -> Vec<String> {
        match &self.bpe {
            Some((b, _)) => b.encode(s),
            None => s.to_vec(),
        }
    }
}

/// Every token of every sequence, in order.
fn pieces(seqs: impl Iterator<Item = Vec<String>>) -> Vec<String> {
    seqs.flatten().collect()
}

/// Mean teacher-forced cross-entropy per target token over `pairs`.
fn eval_loss(
    ctx: &Context,
    model: &Seq2Seq,
    v: &Vocabs,
    pairs: &Pairs,
    batch: usize,
) -> Result<f64> {
    let lengths: Vec<usize> = pairs.iter().map(|(s, _)| s.len()).collect();
    let (mut sum, mut count) = (0.0, 0usize);
    for idx in buckets(&lengths, batch, 0) {
        let chosen: Vec<_> = idx.iter().map(|&i| &pairs[i]).collect();
        let b = v.batch(&chosen)?;
        let mut tape = Tape::eval(ctx, "val loss");
        let loss = model.loss(&mut tape, &b)?;
        tape.into_recorder().submit();
        let n = b
            .tgt
            .targets
            .iter()
            .filter(|&&t| t != Batch::IGNORE)
            .count();
        sum += f64::from(loss.to_vec()?[0]) * n as f64;
        count += n;
    }
    Ok(sum / count.max(1) as f64)
}

/// Translations of `pairs`' sources by one model or several together: greedy
/// (`beam` = 1) or beam search.
fn translate(
    ctx: &Context,
    models: &[&Seq2Seq],
    v: &Vocabs,
    pairs: &[(Vec<String>, Vec<String>)],
    beam: usize,
    alpha: f32,
) -> Result<Vec<Vec<String>>> {
    let ensemble = Ensemble::new(models)?;
    let batch = if beam > 1 { 16 } else { 64 };
    let mut out = vec![Vec::new(); pairs.len()];
    let lengths: Vec<usize> = pairs.iter().map(|(s, _)| s.len()).collect();
    for idx in buckets(&lengths, batch, 0) {
        let src: Vec<Vec<u32>> = idx.iter().map(|&i| v.src_ids(&pairs[i].0)).collect();
        let refs: Vec<&[u32]> = src.iter().map(Vec::as_slice).collect();
        let max_len = refs.iter().map(|s| s.len()).max().unwrap_or(1) * 2 + 10;
        let hyps: Vec<Vec<u32>> = if beam > 1 {
            ensemble
                .beam_search(ctx, &refs, beam, max_len, alpha)?
                .into_iter()
                .map(|h| h.into_iter().next().map(|h| h.tokens).unwrap_or_default())
                .collect()
        } else {
            ensemble.greedy(ctx, &refs, max_len)?
        };
        for (&i, h) in idx.iter().zip(hyps) {
            out[i] = v.words(&h);
        }
    }
    Ok(out)
}

/// Validation loss and greedy BLEU.
fn validate(ctx: &Context, model: &Seq2Seq, v: &Vocabs, val: &Pairs) -> Result<(f64, f64)> {
    let loss = eval_loss(ctx, model, v, val, 64)?;
    let score = bleu(&translate(ctx, &[model], v, val, 1, 0.0)?, val)?;
    Ok((loss, score))
}

/// The length normalization whose beam search scores best on `val` (the only
/// one when `--alpha` gives one).
fn pick_alpha(
    ctx: &Context,
    models: &[&Seq2Seq],
    v: &Vocabs,
    val: &Pairs,
    args: &Args,
) -> Result<f32> {
    let mut alpha = (f64::MIN, args.alpha[0]);
    if args.alpha.len() > 1 {
        for &a in &args.alpha {
            let score = bleu(&translate(ctx, models, v, val, args.beam, a)?, val)?;
            println!("alpha {a}: val BLEU {score:.2} (beam {})", args.beam);
            if score > alpha.0 {
                alpha = (score, a);
            }
        }
    }
    Ok(alpha.1)
}

/// Test BLEU greedy and with beam search, printed; returns the beam's translations.
fn test(
    ctx: &Context,
    models: &[&Seq2Seq],
    v: &Vocabs,
    test: &Pairs,
    args: &Args,
    alpha: f32,
    name: &str,
) -> Result<Vec<Vec<String>>> {
    let t = Instant::now();
    let greedy_bleu = bleu(&translate(ctx, models, v, test, 1, 0.0)?, test)?;
    let out = translate(ctx, models, v, test, args.beam, alpha)?;
    let beam_bleu = bleu(&out, test)?;
    println!(
        "model {name}: test BLEU {beam_bleu:.2} (beam {}, alpha {alpha}), {greedy_bleu:.2} greedy; {} pairs decoded both ways in {:.0} s",
        args.beam,
        test.len(),
        t.elapsed().as_secs_f64(),
    );
    Ok(out)
}

/// The model as the options describe it (dropout and label smoothing act in
/// training steps only).
fn build(ctx: &Context, cfg: Seq2SeqConfig, args: &Args) -> Result<Seq2Seq> {
    let model = Seq2Seq::new(ctx, cfg, args.seed)?
        .with_dropout(args.dropout, args.seed as u32)?
        .with_label_smoothing(args.label_smoothing)?;
    if args.tie_embeddings {
        return model.with_tied_embeddings(args.seed + 7);
    }
    Ok(model)
}

/// `--ensemble`: each checkpoint's test BLEU, then theirs together.
fn evaluate_ensemble(
    ctx: &Context,
    args: &Args,
    cfg: &Seq2SeqConfig,
    v: &Vocabs,
    corpus: &Corpus,
) -> Result<()> {
    let mut models = Vec::with_capacity(args.ensemble.len());
    for path in &args.ensemble {
        let model = build(ctx, *cfg, args)?;
        Checkpoint::load(path)?.apply(&model.named_params(), &path.display().to_string())?;
        models.push(model);
    }
    let val: Pairs = corpus.val.iter().take(args.val_pairs).cloned().collect();
    let all: Vec<&Seq2Seq> = models.iter().collect();
    let alpha = pick_alpha(ctx, &all, v, &val, args)?;
    for (model, path) in all.iter().zip(&args.ensemble) {
        test(
            ctx,
            &[model],
            v,
            &corpus.test,
            args,
            alpha,
            &path.display().to_string(),
        )?;
    }
    let name = format!("ensemble of {}", all.len());
    test(ctx, &all, v, &corpus.test, args, alpha, &name)?;
    Ok(())
}

fn bleu(hyps: &[Vec<String>], pairs: &[(Vec<String>, Vec<String>)]) -> Result<f64> {
    let refs: Vec<Vec<String>> = pairs.iter().map(|(_, t)| t.clone()).collect();
    Ok(corpus_bleu(hyps, &refs)?.score)
}

/// What each evaluation measured beside the validation BLEU that `fit` keeps.
#[derive(Default)]
struct Evals {
    losses: Vec<f64>,
    tests: Vec<f64>,
}

/// What training leaves for testing: the best validation BLEU, the minutes it
/// trained, and the files of the parameters at the last `--average`
/// evaluations (oldest first).
struct Trained {
    best: Option<f64>,
    minutes: f64,
    snapshots: Vec<PathBuf>,
}

/// Trains `model` with `train::fit` as the options say and plots the curves.
fn train(
    ctx: &Context,
    args: &Args,
    model: &Seq2Seq,
    v: &Vocabs,
    corpus: &Corpus,
    val: &Pairs,
    epochs: usize,
) -> Result<Trained> {
    let opt_cfg = OptimConfig::new(Method::ADAM, args.lr).with_max_norm(Some(5.0));
    let mut opt = Optimizer::new(ctx, opt_cfg, model.params())?;
    let lengths = corpus.train.iter().map(|(s, _)| s.len()).collect();
    let mut data = run::Buckets::new(
        lengths,
        args.batch,
        usize::MAX,
        args.seed,
        |idx: &[usize], _, _| {
            let chosen: Vec<_> = idx.iter().map(|&i| &corpus.train[i]).collect();
            v.batch(&chosen)
        },
    );
    let cfg = FitConfig::new(epochs)
        .with_minutes(Some(args.minutes))
        .with_clock(Clock::Training)
        .with_cycles((args.schedule == ScheduleArg::Cosine).then_some(args.cycles))
        .with_eval_minutes((args.eval_minutes > 0.0).then_some(args.eval_minutes))
        .with_checkpoint(Some(args.checkpoint.clone()))
        .with_resume(args.resume);
    let evals = RefCell::new(Evals::default());
    let snapshots = run::Snapshots::new(&args.checkpoint, args.average, args.resume)?;
    let failed = RefCell::new(None);
    let progress = run::progress(
        ctx,
        |score| {
            let e = evals.borrow();
            let loss = e.losses.last().copied().unwrap_or(f64::NAN);
            let test = e
                .tests
                .last()
                .map_or(String::new(), |t| format!(", test BLEU {t:.2}"));
            format!(
                "val loss {loss:.3} (ppl {:.1}), val BLEU {score:.2}{test} (greedy, {} pairs)",
                loss.exp(),
                val.len()
            )
        },
        |b: &ParallelBatch| b.tgt.lengths.iter().sum(),
    );
    let history = fit(
        ctx,
        model,
        &mut opt,
        &mut data,
        &cfg,
        |m| {
            let mut e = evals.borrow_mut();
            let (loss, score) = validate(ctx, m, v, val)?;
            e.losses.push(loss);
            if args.test_curve {
                let hyps = translate(ctx, &[m], v, &corpus.test, 1, 0.0)?;
                e.tests.push(bleu(&hyps, &corpus.test)?);
            }
            Ok(score)
        },
        snapshots.keeping(|| model.named_params(), &failed, progress),
    )?;
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    let Evals { losses, tests } = evals.into_inner();
    // A resumed run measured only its own evaluations' losses: the latest ones.
    let at = |ys: Vec<f64>| -> Vec<(f64, f64)> {
        let xs = &history.score_minutes[history.score_minutes.len().saturating_sub(ys.len())..];
        xs.iter().copied().zip(ys).collect()
    };
    let (train, bleu) = run::curves(&history);
    let series = [
        ("training loss", train, plot::Style::Noisy),
        ("validation loss", at(losses), plot::Style::Points),
        ("validation BLEU", bleu, plot::Style::Right),
        ("test BLEU", at(tests), plot::Style::Right),
    ];
    let series: Vec<plot::Series> = series
        .iter()
        .enumerate()
        .map(|(group, (name, points, style))| plot::Series {
            name,
            points,
            style: *style,
            group,
        })
        .collect();
    let chart = plot::Chart {
        title: "Encoder-decoder: loss and BLEU against training time",
        x: "minutes of training",
        y: "loss (nats per target token)",
        right: Some("BLEU (greedy)"),
        legend: plot::Legend::MiddleRight,
    };
    let path = args.checkpoint.with_extension("loss.png");
    if !history.losses.is_empty() {
        plot::curves(&path, &chart, &series).map_err(|e| run::file_err(&path, e))?;
    }
    Ok(Trained {
        best: history.best.map(|(_, s)| s),
        minutes: history.minutes,
        snapshots: snapshots.last(&history.scores)?,
    })
}

/// Tests the model chosen on validation (the best, or the average of the kept
/// parameters when it validates better), both with beam search, and shows a
/// few translations and an attention map.
fn test_trained(
    ctx: &Context,
    args: &Args,
    model: &Seq2Seq,
    v: &Vocabs,
    corpus: &Corpus,
    val: &Pairs,
    trained: Trained,
) -> Result<()> {
    let best = best_path(&args.checkpoint);
    let tested = match (&args.evaluate, trained.best) {
        (Some(path), _) => path,
        (None, None) => &args.checkpoint,
        (None, Some(_)) => &best,
    };
    let mut candidates = vec![(tested.clone(), trained.best.unwrap_or(f64::MIN))];
    let snapshots = &trained.snapshots;
    if snapshots.len() > 1 {
        // Checkpoint averaging: the mean of the kept parameters, validated like
        // the others and saved beside them.
        let avg_path = run::average(snapshots, &args.checkpoint, &model.named_params())?;
        let (_, score) = validate(ctx, model, v, val)?;
        println!(
            "average of the last {} evaluations' parameters: val BLEU {score:.2} (greedy)",
            snapshots.len()
        );
        candidates.push((avg_path, score));
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    }
    let load = |path: &Path| {
        Checkpoint::load(path)?.apply(&model.named_params(), &path.display().to_string())
    };
    // The length normalization, chosen on validation with the first candidate.
    load(&candidates[0].0)?;
    let alpha = pick_alpha(ctx, &[model], v, val, args)?;
    let mut beamed = Vec::new();
    for (i, (path, _)) in candidates.iter().enumerate() {
        load(path)?;
        let out = test(
            ctx,
            &[model],
            v,
            &corpus.test,
            args,
            alpha,
            &path.display().to_string(),
        )?;
        println!("  trained {:.1} min", trained.minutes);
        if i == 0 {
            beamed = out;
        }
    }
    // The model shown below is the one chosen on validation.
    load(&candidates[0].0)?;
    for ((src, tgt), ours) in corpus.test.iter().zip(&beamed).take(3) {
        println!("  de:   {}", src.join(" "));
        println!("  en:   {}", tgt.join(" "));
        println!("  ours: {}", ours.join(" "));
    }
    match (model.config().link, corpus.test.first()) {
        (Link::None, _) | (_, None) => Ok(()),
        (_, Some((src, _))) => attention_map(ctx, args, model, v, src),
    }
}

/// The attention weights of the model's greedy translation of `src` as a heat
/// map beside the checkpoint.
fn attention_map(
    ctx: &Context,
    args: &Args,
    model: &Seq2Seq,
    v: &Vocabs,
    src: &[String],
) -> Result<()> {
    let src_ids = v.src_ids(src);
    let (tokens, rows) = model.greedy_with_attention(ctx, &src_ids, 2 * src_ids.len() + 10)?;
    let path = args.checkpoint.with_extension("attention.png");
    // Rows and columns are the tokens the model wrote and read (pieces when
    // subwords).
    let mut out: Vec<String> = tokens
        .iter()
        .map(|&i| v.tgt.token(i).unwrap_or("<unk>").to_string())
        .collect();
    out.push("<eos>".into());
    let read = v.src_tokens(src);
    let title = "Attention weights: each output token (row) over the source tokens";
    plot::heat_map(&path, title, &rows, &out, &read).map_err(|e| run::file_err(&path, e))?;
    println!(
        "attention of \"{}\" (rows, top to bottom) over \"{}\" (columns): {}",
        out[..out.len() - 1].join(" "),
        read.join(" "),
        path.display()
    );
    Ok(())
}

/// The corpus (or the generated task), its training pairs filtered, and its
/// vocabularies; the epochs the run may take.
fn prepare(args: &Args) -> Result<(Corpus, Vocabs, usize)> {
    let found = args.data.join("train.lc.norm.tok.de").exists();
    let mut corpus = if found {
        println!("data: {}", args.data.display());
        load(&args.data)?
    } else {
        println!(
            "data: {} not found; training on a generated task",
            args.data.display()
        );
        generated(args.seed)
    };
    corpus
        .train
        .retain(|(s, t)| !s.is_empty() && s.len() <= args.max_len && t.len() <= args.max_len);
    if args.train_pairs > 0 {
        corpus.train.truncate(args.train_pairs);
    }
    let v = Vocabs::new(&corpus.train, args.min_count, args.bpe)?;
    println!(
        "train {} / val {} / test {} pairs; vocabularies: {} German, {} English {}",
        corpus.train.len(),
        corpus.val.len(),
        corpus.test.len(),
        v.src.len(),
        v.tgt.len(),
        if args.bpe > 0 {
            format!("subwords ({} merges each)", args.bpe)
        } else {
            "words".into()
        }
    );
    Ok((
        corpus,
        v,
        args.epochs.unwrap_or(if found { 100 } else { 12 }),
    ))
}

/// The model's sizes and links as the options give them.
fn config(args: &Args, v: &Vocabs) -> Seq2SeqConfig {
    let link = match args.attention {
        AttentionArg::Luong => Link::Luong {
            score: Score::General,
            input_feeding: args.input_feeding,
        },
        AttentionArg::Bahdanau => Link::Bahdanau { size: args.emb },
        AttentionArg::None => Link::None,
    };
    let encoder = match args.encoder {
        EncoderArg::Lstm => EncoderKind::Lstm,
        EncoderArg::Mingru => EncoderKind::MinGru,
        EncoderArg::Minlstm => EncoderKind::MinLstm,
        EncoderArg::Transformer => EncoderKind::Transformer {
            heads: args.heads,
            ff: args.ff,
        },
    };
    Seq2SeqConfig::new(v.src.len(), v.tgt.len(), v.bos, v.eos)
        .with_emb(args.emb)
        .with_hidden(args.hidden)
        .with_layers(args.layers)
        .with_bidirectional(true)
        .with_encoder(encoder)
        .with_link(link)
        .with_pad(Vocab::PAD)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = Context::new()?;
    println!("device: {}", ctx.adapter_info().name);
    let (corpus, v, epochs) = prepare(&args)?;
    let model = build(&ctx, config(&args, &v), &args)?;
    let size = |prefix: &str| -> usize {
        let named = model.named_params();
        let ours = named.iter().filter(|n| n.name.starts_with(prefix));
        ours.map(|n| n.shape.iter().product::<usize>()).sum()
    };
    println!(
        "model: {:?} encoder ({} parameters), {:?}; {} parameters in all",
        args.encoder,
        size("encoder."),
        model.config().link,
        size("")
    );
    if !args.ensemble.is_empty() {
        return evaluate_ensemble(&ctx, &args, model.config(), &v, &corpus);
    }
    run::checkpoint_dir(&args.checkpoint)?;
    let val: Pairs = corpus.val.iter().take(args.val_pairs).cloned().collect();
    let trained = match args.evaluate {
        Some(_) => Trained {
            best: None,
            minutes: 0.0,
            snapshots: Vec::new(),
        },
        None => train(&ctx, &args, &model, &v, &corpus, &val, epochs)?,
    };
    test_trained(&ctx, &args, &model, &v, &corpus, &val, trained)
}
