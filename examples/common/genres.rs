//! The genre task of the classifier examples: each UD English EWT sentence
//! labelled with its source (answers, email, newsgroup, reviews, weblog: the
//! genre named in its `sent_id`), or a generated stand-in without the data.
#![allow(dead_code)] // each example uses its own subset

use std::path::Path;

use rnn_wgpu::data::readers::{read_conllu, TaggedSentence};
use rnn_wgpu::data::{buckets, LabeledBatch, Vocab};
use rnn_wgpu::metrics;
use rnn_wgpu::nn::SplitMix;
use rnn_wgpu::ops::argmax;
use rnn_wgpu::{Context, Result, Tape, Var};

pub struct Example {
    pub words: Vec<String>,
    pub label: usize,
}

pub struct Corpus {
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
    pub test: Vec<Example>,
    pub classes: Vec<String>,
}

pub fn load(dir: &std::path::Path) -> Result<Corpus> {
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
pub fn generated(seed: u64) -> Corpus {
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

/// The corpus at `dir` (its train, dev and test files), or, when they are not
/// there, the generated task; says which on stdout.
pub fn load_or_generate(dir: &Path, seed: u64) -> Result<Corpus> {
    if dir.join("en_ewt-ud-train.conllu").exists() {
        println!("data: {}", dir.display());
        load(dir)
    } else {
        println!("data: {} not found; a generated task", dir.display());
        Ok(generated(seed))
    }
}

/// The word vocabulary of the training sentences (words seen at least twice).
pub fn vocab(corpus: &Corpus) -> Vocab {
    Vocab::build(
        corpus
            .train
            .iter()
            .flat_map(|e| &e.words)
            .map(String::as_str),
        2,
    )
}

/// A padded batch of `examples` with their labels.
pub fn batch(words: &Vocab, examples: &[&Example]) -> Result<LabeledBatch> {
    let ids: Vec<Vec<u32>> = examples
        .iter()
        .map(|e| e.words.iter().map(|w| words.id(w)).collect())
        .collect();
    let seqs: Vec<(&[u32], u32)> = ids
        .iter()
        .zip(examples)
        .map(|(v, e)| (&v[..], e.label as u32))
        .collect();
    LabeledBatch::pad(&seqs, Vocab::PAD)
}

/// The share of `set` whose most likely class under `logits` (a model's forward
/// on an inference tape) is its label.
pub fn accuracy(
    ctx: &Context,
    words: &Vocab,
    set: &[Example],
    logits: impl Fn(&mut Tape, &LabeledBatch) -> Result<Var>,
) -> Result<f64> {
    let lengths: Vec<usize> = set.iter().map(|e| e.words.len()).collect();
    let (mut predicted, mut gold) = (vec![], vec![]);
    for idx in buckets(&lengths, 64, 0) {
        let chosen: Vec<&Example> = idx.iter().map(|&i| &set[i]).collect();
        let b = batch(words, &chosen)?;
        let mut tape = Tape::eval(ctx, "eval");
        let scores = logits(&mut tape, &b)?;
        let best = argmax::forward(tape.rec(), &scores)?;
        tape.into_recorder().submit();
        predicted.extend(best.to_vec_u32()?);
        gold.extend(b.labels);
    }
    let keep = vec![true; gold.len()];
    Ok(metrics::accuracy(&predicted, &gold, &keep)?.unwrap_or(0.0))
}
