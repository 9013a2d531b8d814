//! UD English EWT for the tagging examples: the CoNLL-U splits, or a generated
//! stand-in so that a fresh clone runs end to end.
#![allow(dead_code)] // each example uses its own subset

use std::path::Path;

use rnn_wgpu::data::readers::{read_conllu, TaggedSentence};
use rnn_wgpu::nn::SplitMix;
use rnn_wgpu::Result;

/// The three splits, as tagged sentences.
pub struct Corpus {
    pub train: Vec<TaggedSentence>,
    pub dev: Vec<TaggedSentence>,
    pub test: Vec<TaggedSentence>,
}

pub fn load(dir: &Path) -> Result<Corpus> {
    let split = |s: &str| read_conllu(&dir.join(format!("en_ewt-ud-{s}.conllu")));
    Ok(Corpus {
        train: split("train")?,
        dev: split("dev")?,
        test: split("test")?,
    })
}

/// A generated stand-in: tags follow a small grammar of word classes, and some
/// words are ambiguous so that context decides.
pub fn generated(seed: u64) -> Corpus {
    let classes: [(&str, &[&str]); 5] = [
        ("DET", &["the", "a", "this"]),
        ("NOUN", &["dog", "cat", "run", "walk", "house", "tree"]),
        ("VERB", &["run", "walk", "sees", "likes", "sleeps"]),
        ("ADJ", &["big", "small", "red"]),
        ("ADV", &["quickly", "now", "here"]),
    ];
    let pattern: [&[usize]; 4] = [
        &[0, 1, 2, 0, 1],
        &[0, 3, 1, 2, 4],
        &[0, 1, 2],
        &[0, 3, 3, 1, 2, 0, 1],
    ];
    let mut rng = SplitMix::new(seed);
    let mut make = |n: usize| -> Vec<TaggedSentence> {
        (0..n)
            .map(|_| {
                let p = pattern[(rng.next_u64() % pattern.len() as u64) as usize];
                let mut s = TaggedSentence::default();
                for &c in p {
                    let (tag, words) = classes[c];
                    s.words
                        .push(words[(rng.next_u64() % words.len() as u64) as usize].to_string());
                    s.tags.push(tag.to_string());
                }
                s
            })
            .collect()
    };
    Corpus {
        train: make(2000),
        dev: make(200),
        test: make(200),
    }
}

/// The splits in `dir` (en_ewt-ud-{train,dev,test}.conllu) when present, else
/// the generated task; says which on standard output.
pub fn load_or_generate(dir: &Path, seed: u64) -> Result<Corpus> {
    if dir.join("en_ewt-ud-train.conllu").exists() {
        println!("data: {}", dir.display());
        load(dir)
    } else {
        println!(
            "data: {} not found; training on a generated task",
            dir.display()
        );
        Ok(generated(seed))
    }
}
