//! A character-aware BiLSTM part-of-speech tagger (word embedding beside a
//! character BiLSTM over each word's spelling → stacked bidirectional LSTM →
//! linear → masked cross-entropy) trained on Universal Dependencies English EWT:
//! trains on train, keeps the model that tags dev best, reports UPOS accuracy on
//! test, the throughput, and the most frequent confusions. `--char-hidden 0`
//! trains the word-only tagger.
//!
//! Run: `cargo run --release --example tagger` (`-- --help` for the options).
//! Reads `--data` (default ../shared/data/ud-english-ewt, the en_ewt-ud-*.conllu
//! files); without it, it generates a small tagging task so that a fresh clone
//! still runs end to end. Prints a progress bar with the loss and tokens/s, dev
//! accuracy after each epoch, then test accuracy and the confusions. After every
//! epoch (and when time runs out) the model and its optimizer state go to
//! `--checkpoint`, which `--resume` continues from; the model that tagged dev best
//! goes beside it as `*.best.safetensors` and is the one tested (with
//! `--average N`, beside the mean of the parameters at the last N evaluations;
//! whichever tags dev better is reported first). The training
//! loss and dev error rate by step go beside it as `*.loss.png` (numbers in the
//! CSV beside that).

#[path = "common/ewt.rs"]
mod ewt;
#[path = "common/plot.rs"]
mod plot;
#[path = "common/run.rs"]
mod run;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use rnn_wgpu::data::readers::TaggedSentence;
use rnn_wgpu::data::{token_buckets, Batch, Vocab};
use rnn_wgpu::models::{BiLstmTagger, CharConfig, TaggerConfig};
use rnn_wgpu::nn::{Cell, Mode, Module, SplitMix};
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::train::{
    best_path, fit, Epochs, FitConfig, History, Method, OptimConfig, Optimizer, Schedule,
};
use rnn_wgpu::{Context, DType, Result, Tape};

#[derive(Parser, Debug)]
#[command(about = "Train a BiLSTM POS tagger on UD English EWT")]
struct Args {
    /// Folder with en_ewt-ud-{train,dev,test}.conllu.
    #[arg(long, default_value = "../shared/data/ud-english-ewt")]
    data: PathBuf,
    /// Passes over the training set.
    #[arg(long, default_value_t = 17)]
    epochs: usize,
    /// Stop training after this many minutes (then evaluate).
    #[arg(long, default_value_t = 19.5)]
    minutes: f64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// At most this many padded tokens (sentences × the longest) per batch:
    /// the few long sentences go in smaller batches, so that they do not set
    /// the memory of the whole run.
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    #[arg(long, default_value_t = 128)]
    emb: usize,
    /// Hidden units per direction.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Stacked BiLSTM layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Character embedding size.
    #[arg(long, default_value_t = 32)]
    char_emb: usize,
    /// Character BiLSTM units per direction (0: no character encoder).
    #[arg(long, default_value_t = 64)]
    char_hidden: usize,
    /// Words longer than this keep their first and last half as many characters.
    #[arg(long, default_value_t = 20)]
    max_chars: usize,
    /// Word dropout while training: a word seen n times in training is read as
    /// its unknown-word class with probability a / (a + n), so that the model
    /// learns to tag words it has not seen (0: off).
    #[arg(long, default_value_t = 0.25)]
    word_dropout: f64,
    /// Words seen fewer times in training share their unknown-word class.
    #[arg(long, default_value_t = 1)]
    min_count: usize,
    /// Keep the words' own entries case-sensitive (by default they are
    /// lower-cased, and the case is read from the characters).
    #[arg(long)]
    cased: bool,
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Dropout on the embeddings and the BiLSTM outputs while training.
    #[arg(long, default_value_t = 0.33)]
    dropout: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the latest model and its optimizer state are saved (the best one
    /// beside it, as *.best.safetensors).
    #[arg(long, default_value = "runs/tagger.safetensors")]
    checkpoint: PathBuf,
    /// Continue from --checkpoint.
    #[arg(long)]
    resume: bool,
    /// The bidirectional stack's cell.
    #[arg(long, value_enum, default_value_t = CellArg::Lstm)]
    cell: CellArg,
    /// A linear-chain CRF over the tag scores: trained on whole tag paths,
    /// decoded by Viterbi.
    #[arg(long)]
    crf: bool,
    /// Activation storage: f32, or f16 (mixed precision; needs SHADER_F16).
    #[arg(long, value_enum, default_value_t = Storage::F32)]
    storage: Storage,
    /// Also test the mean of the parameters at the last N evaluations
    /// (checkpoint averaging; 0 or 1: off), kept beside --checkpoint as
    /// *.stepS.safetensors; whichever model tags dev better is reported first.
    #[arg(long, default_value_t = 0)]
    average: usize,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CellArg {
    Lstm,
    Gru,
    Mingru,
    Minlstm,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Storage {
    F32,
    F16,
}

struct Data {
    words: Vocab,
    tags: Vocab,
    /// Characters seen in training (empty without a character encoder).
    chars: Vocab,
    max_chars: usize,
    /// Training counts, for word dropout.
    counts: HashMap<String, usize>,
    /// Whether word entries are lower-cased (the characters keep the case).
    fold: bool,
}

/// The unknown-word class of a word: its capitalization, digits, hyphens and a
/// common suffix, so that an unseen "Kowalski" or "reinstating" still tells the
/// tagger something.
fn signature(word: &str) -> String {
    let first_upper = word.chars().next().is_some_and(char::is_uppercase);
    let all_upper = word.chars().all(|c| !c.is_lowercase());
    let cap = if all_upper && first_upper {
        'A'
    } else if first_upper {
        'C'
    } else {
        'l'
    };
    let digit = if word.chars().any(|c| c.is_ascii_digit()) {
        'D'
    } else {
        '-'
    };
    let hyphen = if word.contains('-') { 'H' } else { '-' };
    let lower = word.to_lowercase();
    const SUFFIXES: [&str; 16] = [
        "ing", "ed", "ly", "ion", "er", "est", "al", "ive", "able", "ful", "ous", "ic", "ity", "s",
        "y", "'s",
    ];
    let suffix = SUFFIXES
        .iter()
        .find(|s| lower.ends_with(*s))
        .unwrap_or(&"-");
    format!("<unk:{cap}{digit}{hyphen}{suffix}>")
}

/// A word's own entry: lower-cased with `fold`.
fn entry_key(w: &str, fold: bool) -> Cow<'_, str> {
    if fold {
        w.to_lowercase().into()
    } else {
        w.into()
    }
}

impl Data {
    /// Words seen at least `min_count` times (lower-cased with `fold`) keep their
    /// own entry; the rest share entries by [`signature`], trained on the rarer
    /// words and by word dropout.
    fn new(train: &[TaggedSentence], tags: Vocab, opts: &Args) -> Self {
        let fold = !opts.cased;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for w in train.iter().flat_map(|s| &s.words) {
            *counts.entry(entry_key(w, fold).into_owned()).or_insert(0) += 1;
        }
        let tokens: Vec<String> = train
            .iter()
            .flat_map(|s| &s.words)
            .map(|w| {
                let k = entry_key(w, fold);
                if counts[k.as_ref()] >= opts.min_count {
                    k.into_owned()
                } else {
                    signature(w)
                }
            })
            .collect();
        let words = Vocab::build(tokens.iter().map(String::as_str), 1);
        let chars = if opts.char_hidden > 0 {
            let spelled: Vec<String> = train
                .iter()
                .flat_map(|s| &s.words)
                .flat_map(|w| w.chars())
                .map(String::from)
                .collect();
            Vocab::build(spelled.iter().map(String::as_str), 1)
        } else {
            Vocab::from_tokens(Vec::<String>::new())
        };
        Self {
            words,
            tags,
            chars,
            max_chars: opts.max_chars,
            counts,
            fold,
        }
    }

    /// The word's key in `words` and `counts`.
    fn key<'w>(&self, w: &'w str) -> Cow<'w, str> {
        entry_key(w, self.fold)
    }

    fn word_id(&self, w: &str) -> u32 {
        self.words
            .get(&self.key(w))
            .unwrap_or_else(|| self.words.id(&signature(w)))
    }

    fn ids(&self, s: &TaggedSentence) -> Result<(Vec<u32>, Vec<u32>)> {
        let words = s.words.iter().map(|w| self.word_id(w)).collect();
        let tags = s
            .tags
            .iter()
            .map(|t| {
                self.tags.get(t).ok_or_else(|| rnn_wgpu::Error::File {
                    path: "tags".into(),
                    reason: format!("tag {t} does not occur in the training set"),
                })
            })
            .collect::<Result<_>>()?;
        Ok((words, tags))
    }

    /// A padded batch of `sents` (with their characters where the model reads
    /// them); `dropout` = (a, rng) applies word dropout.
    fn batch(
        &self,
        sents: &[&TaggedSentence],
        dropout: Option<(f64, &mut SplitMix)>,
    ) -> Result<Batch> {
        let mut pairs = sents
            .iter()
            .map(|s| self.ids(s))
            .collect::<Result<Vec<_>>>()?;
        if let Some((a, rng)) = dropout {
            for (s, (ids, _)) in sents.iter().zip(&mut pairs) {
                for (w, id) in s.words.iter().zip(ids.iter_mut()) {
                    let n = self.counts.get(self.key(w).as_ref()).copied().unwrap_or(0) as f64;
                    if f64::from(rng.uniform_unit()) < a / (a + n) {
                        *id = self.words.id(&signature(w));
                    }
                }
            }
        }
        let refs: Vec<(&[u32], &[u32])> = pairs
            .iter()
            .map(|(a, b)| (a.as_slice(), b.as_slice()))
            .collect();
        let batch = Batch::pad(&refs, Vocab::PAD)?;
        if self.chars.is_empty() {
            return Ok(batch);
        }
        let words: Vec<&[String]> = sents.iter().map(|s| s.words.as_slice()).collect();
        batch.with_chars(&words, &self.chars, self.max_chars)
    }
}

/// Counts of (gold, predicted) tag pairs that differ.
type Confusion = HashMap<(u32, u32), usize>;

/// Tag accuracy over real tokens, and the confusions.
fn evaluate(
    ctx: &Context,
    model: &BiLstmTagger,
    data: &Data,
    sents: &[TaggedSentence],
    batch: usize,
    max_tokens: usize,
) -> Result<(f64, Confusion)> {
    let (mut right, mut total) = (0usize, 0usize);
    let mut confusion = HashMap::new();
    let lengths: Vec<usize> = sents.iter().map(|s| s.words.len()).collect();
    for idx in token_buckets(&lengths, batch, max_tokens, 0) {
        let chosen: Vec<&TaggedSentence> = idx.iter().map(|&i| &sents[i]).collect();
        let b = data.batch(&chosen, None)?;
        let mut tape = Tape::eval(ctx, "eval");
        // One tag per token comes back, not the scores.
        let predicted = model.predict(&mut tape, &b)?;
        tape.into_recorder().submit();
        let predicted = predicted.to_vec_u32()?;
        for (pos, &gold) in b.targets.iter().enumerate() {
            if gold == Batch::IGNORE {
                continue;
            }
            let pred = predicted[pos];
            total += 1;
            if pred == gold {
                right += 1;
            } else {
                *confusion.entry((gold, pred)).or_insert(0) += 1;
            }
        }
    }
    Ok((right as f64 / total.max(1) as f64, confusion))
}

/// The tagger `args` describe, over `data`'s vocabularies.
fn build(ctx: &Context, args: &Args, data: &Data) -> Result<BiLstmTagger> {
    let cell = match args.cell {
        CellArg::Lstm => Cell::Recurrent(Mode::Lstm),
        CellArg::Gru => Cell::Recurrent(Mode::Gru),
        CellArg::Mingru => Cell::MinGru,
        CellArg::Minlstm => Cell::MinLstm,
    };
    let chars = (args.char_hidden > 0).then_some(
        CharConfig::new(data.chars.len())
            .with_emb(args.char_emb)
            .with_hidden(args.char_hidden),
    );
    let cfg = TaggerConfig::new(data.words.len(), data.tags.len())
        .with_emb(args.emb)
        .with_hidden(args.hidden)
        .with_pad(Vocab::PAD)
        .with_layers(args.layers)
        .with_cell(cell)
        .with_chars(chars)
        .with_crf(args.crf);
    BiLstmTagger::new(ctx, cfg, args.seed)?
        .with_dropout(args.dropout, args.seed as u32)?
        .with_storage(match args.storage {
            Storage::F32 => DType::F32,
            Storage::F16 => DType::F16,
        })
}

/// The training loss and the dev error rate by step, beside the checkpoint.
fn plot_history(args: &Args, history: &History) -> Result<()> {
    let losses: Vec<(f64, f64)> = history
        .losses
        .iter()
        .map(|&(s, l)| (f64::from(s), f64::from(l)))
        .collect();
    let dev_errors: Vec<(f64, f64)> = history
        .scores
        .iter()
        .map(|&(s, a)| (f64::from(s), 100.0 * (1.0 - a)))
        .collect();
    let curve = args.checkpoint.with_extension("loss.png");
    let chart = plot::Chart {
        title: match (args.char_hidden > 0, args.crf) {
            (true, false) => "Character-aware BiLSTM tagger: training loss and dev error rate",
            (true, true) => "Character-aware BiLSTM-CRF tagger: training loss and dev error rate",
            (false, false) => "BiLSTM tagger: training loss and dev error rate",
            (false, true) => "BiLSTM-CRF tagger: training loss and dev error rate",
        },
        x: "training step",
        y: "loss (nats per token)",
        right: Some("dev error rate (%)"),
        legend: plot::Legend::UpperRight,
    };
    let series = [
        plot::Series {
            name: "training loss",
            points: &losses,
            style: plot::Style::Noisy,
            group: 0,
        },
        plot::Series {
            name: "dev error rate",
            points: &dev_errors,
            style: plot::Style::Right,
            group: 1,
        },
    ];
    plot::curves(&curve, &chart, &series).map_err(|e| run::file_err(&curve, e))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = Context::new()?;
    println!("device: {}", ctx.adapter_info().name);
    let corpus = ewt::load_or_generate(&args.data, args.seed)?;
    let tags = Vocab::from_tokens(
        Vocab::build(
            corpus
                .train
                .iter()
                .flat_map(|s| s.tags.iter())
                .map(String::as_str),
            1,
        )
        .tokens()
        .skip(2),
    );
    let data = Data::new(&corpus.train, tags, &args);
    println!(
        "train {} / dev {} / test {} sentences; {} word entries (seen {}+ times, or an unknown-word class), {} characters, {} tags",
        corpus.train.len(),
        corpus.dev.len(),
        corpus.test.len(),
        data.words.len(),
        args.min_count,
        data.chars.len(),
        data.tags.len()
    );
    let model = build(&ctx, &args, &data)?;
    let lengths: Vec<usize> = corpus.train.iter().map(|s| s.words.len()).collect();
    let mut train = run::Buckets::new(
        lengths,
        args.batch,
        args.max_tokens,
        args.seed,
        |idx: &[usize], epoch, index| {
            let chosen: Vec<&TaggedSentence> = idx.iter().map(|&i| &corpus.train[i]).collect();
            // Word dropout drawn from the batch's place: a resumed run repeats it.
            let mut rng = SplitMix::new(args.seed ^ ((epoch as u64) << 32 | index as u64));
            data.batch(&chosen, Some((args.word_dropout, &mut rng)))
        },
    );
    // Every epoch has as many batches: the cut depends on the lengths alone.
    let steps_per_epoch = train.batches(0)? as u32;
    let cfg = OptimConfig::new(Method::ADAM, args.lr)
        .with_max_norm(Some(5.0))
        .with_schedule(Schedule::Cosine {
            total: steps_per_epoch * args.epochs as u32,
            min_lr: args.lr / 20.0,
        })
        .with_warmup(100);
    let mut opt = Optimizer::new(&ctx, cfg, model.params())?;
    run::checkpoint_dir(&args.checkpoint)?;
    let fit_cfg = FitConfig::new(args.epochs)
        .with_minutes(Some(args.minutes))
        .with_checkpoint(Some(args.checkpoint.clone()))
        .with_resume(args.resume);
    let start = Instant::now();
    let snapshots = run::Snapshots::new(&args.checkpoint, args.average, args.resume)?;
    let failed = RefCell::new(None);
    let progress = run::progress(
        &ctx,
        |s| format!("dev accuracy {:.2}%", 100.0 * s),
        |b: &Batch| b.lengths.iter().sum(),
    );
    let history = fit(
        &ctx,
        &model,
        &mut opt,
        &mut train,
        &fit_cfg,
        |m| Ok(evaluate(&ctx, m, &data, &corpus.dev, 64, args.max_tokens)?.0),
        snapshots.keeping(|| model.named_params(), &failed, progress),
    )?;
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    plot_history(&args, &history)?;
    // Nothing evaluated (a resumed run that was already done): test the latest.
    let tested = match history.best {
        Some(_) => best_path(&args.checkpoint),
        None => args.checkpoint.clone(),
    };
    let mut candidates = vec![tested];
    let kept = snapshots.last(&history.scores)?;
    if kept.len() > 1 {
        // Checkpoint averaging: the mean of the kept parameters, scored like
        // the others and saved beside them.
        candidates.push(run::average(
            &kept,
            &args.checkpoint,
            &model.named_params(),
        )?);
        println!("average of the last {} evaluations' parameters", kept.len());
    }
    let mut scored = Vec::new();
    for tested in candidates {
        let name = tested.display().to_string();
        Checkpoint::load(&tested)?.apply(&model.named_params(), &name)?;
        let (test, confusion) = evaluate(&ctx, &model, &data, &corpus.test, 64, args.max_tokens)?;
        let (dev, _) = evaluate(&ctx, &model, &data, &corpus.dev, 64, args.max_tokens)?;
        scored.push((name, dev, test, confusion));
    }
    // The model that tags dev better first; its confusions below.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, dev, test, _) in &scored {
        println!(
            "model {name}: dev {:.2}%, test UPOS accuracy {:.2}% after {:.1} min",
            100.0 * dev,
            100.0 * test,
            start.elapsed().as_secs_f64() / 60.0
        );
    }
    let confusion = scored.into_iter().next().map(|s| s.3).unwrap_or_default();
    let mut errors: Vec<_> = confusion.into_iter().collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!("most frequent errors (gold -> predicted):");
    for ((gold, pred), n) in errors.iter().take(8) {
        let tag = |t: &u32| data.tags.token(*t).unwrap_or("?").to_string();
        println!("  {:>6} -> {:<6} {n}", tag(gold), tag(pred));
    }
    Ok(())
}
