//! Batching and vocabularies: padding to the longest sequence of a batch with
//! lengths, bucketing by length, seeded shuffling; token ↔ id maps with unknown
//! and padding entries; byte-pair encoding ([`bpe`]) for subword vocabularies.

pub mod bpe;
pub mod readers;

use std::collections::HashMap;

use crate::error::{Error, Result};

/// A padded batch of token sequences with per-token targets, row-major `[B, T]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `[B, T]` token ids, the padding id past each length.
    pub ids: Vec<u32>,
    /// `[B, T]` target classes, [`Batch::IGNORE`] past each length.
    pub targets: Vec<u32>,
    /// `[B]` real lengths, 1..=T.
    pub lengths: Vec<usize>,
    /// B
    pub size: usize,
    /// T, the longest length.
    pub steps: usize,
    /// The characters of the batch's words, for a model that reads them
    /// ([`Batch::with_chars`]); `None` otherwise.
    pub chars: Option<WordChars>,
}

impl Batch {
    /// The target of a padded position: it counts in no loss.
    pub const IGNORE: u32 = u32::MAX;

    /// Pads `(ids, targets)` pairs to the longest; `pad` fills the ids. Empty
    /// sequences and pairs of unequal lengths are errors.
    pub fn pad(seqs: &[(&[u32], &[u32])], pad: u32) -> Result<Self> {
        let steps = seqs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        if seqs.is_empty() || steps == 0 {
            return Err(Error::Empty {
                op: "batch",
                what: "sequences",
                shape: vec![seqs.len(), steps],
            });
        }
        let mut batch = Batch {
            ids: Vec::with_capacity(seqs.len() * steps),
            targets: Vec::with_capacity(seqs.len() * steps),
            lengths: Vec::with_capacity(seqs.len()),
            size: seqs.len(),
            steps,
            chars: None,
        };
        for (index, (ids, targets)) in seqs.iter().enumerate() {
            if ids.len() != targets.len() {
                return Err(Error::InvalidArgument {
                    op: "batch",
                    what: "ids and targets of a sequence",
                    expected: "as many targets as ids",
                    got: format!(
                        "sequence {index}: {} ids, {} targets",
                        ids.len(),
                        targets.len()
                    ),
                });
            }
            if ids.is_empty() {
                return Err(Error::LengthOutOfRange {
                    op: "batch",
                    index,
                    value: 0,
                    max: steps,
                });
            }
            batch.ids.extend_from_slice(ids);
            batch.ids.resize(batch.ids.len() + steps - ids.len(), pad);
            batch.targets.extend_from_slice(targets);
            batch
                .targets
                .resize(batch.targets.len() + steps - ids.len(), Self::IGNORE);
            batch.lengths.push(ids.len());
        }
        Ok(batch)
    }

    /// The same batch with the characters of its words: `words` holds each
    /// sequence's words (as many as its length), read as in [`WordChars::new`].
    pub fn with_chars<S: AsRef<str>>(
        self,
        words: &[&[S]],
        chars: &Vocab,
        max_chars: usize,
    ) -> Result<Self> {
        if words.len() != self.size || words.iter().zip(&self.lengths).any(|(w, &n)| w.len() != n) {
            return Err(Error::InvalidArgument {
                op: "batch",
                what: "words",
                expected: "one word per token of each sequence",
                got: format!(
                    "{:?} words for lengths {:?}",
                    words.iter().map(|w| w.len()).collect::<Vec<_>>(),
                    self.lengths
                ),
            });
        }
        let chars = WordChars::new(words, self.steps, chars, max_chars)?;
        Ok(Self {
            chars: Some(chars),
            ..self
        })
    }
}

/// The characters of a batch's words for a character-level encoder: each
/// distinct word once, its character ids padded to the longest (row-major
/// `[W, L]`), and for every position of the `[B, T]` batch the row of its word.
#[derive(Clone, Debug, PartialEq)]
pub struct WordChars {
    /// `[W, L]` character ids, [`Vocab::PAD`] past each word's length.
    pub ids: Vec<u32>,
    /// `[W]` characters per word, 1..=L.
    pub lengths: Vec<usize>,
    /// `[B·T]` the row of each position's word; padding positions point at row 0.
    pub index: Vec<u32>,
    /// W, the distinct words.
    pub words: usize,
    /// L, the longest word in characters.
    pub steps: usize,
}

impl WordChars {
    /// From the words of each sequence of a batch padded to `steps` positions:
    /// characters through `chars` (unknown ones as [`Vocab::UNK`]); a word longer
    /// than `max_chars` keeps its first and last `max_chars / 2` characters,
    /// where its capitalization and its suffix are. Empty words, sequences longer
    /// than `steps` and a `max_chars` under 2 are errors.
    pub fn new<S: AsRef<str>>(
        seqs: &[&[S]],
        steps: usize,
        chars: &Vocab,
        max_chars: usize,
    ) -> Result<Self> {
        if max_chars < 2 {
            return Err(Error::InvalidArgument {
                op: "word characters",
                what: "max_chars",
                expected: "at least 2",
                got: max_chars.to_string(),
            });
        }
        let mut rows: HashMap<&str, u32> = HashMap::new();
        let mut words: Vec<Vec<u32>> = Vec::new();
        let mut index = Vec::with_capacity(seqs.len() * steps);
        for (s, seq) in seqs.iter().enumerate() {
            if seq.len() > steps {
                return Err(Error::LengthOutOfRange {
                    op: "word characters",
                    index: s,
                    value: seq.len(),
                    max: steps,
                });
            }
            for (w, word) in seq.iter().enumerate() {
                let word = word.as_ref();
                if word.is_empty() {
                    return Err(Error::InvalidArgument {
                        op: "word characters",
                        what: "word",
                        expected: "at least one character",
                        got: format!("an empty string at word {w} of sequence {s}"),
                    });
                }
                let row = *rows.entry(word).or_insert_with(|| {
                    let ids: Vec<u32> = word
                        .chars()
                        .map(|c| chars.id(c.encode_utf8(&mut [0; 4])))
                        .collect();
                    let ids = if ids.len() > max_chars {
                        let half = max_chars / 2;
                        [&ids[..half], &ids[ids.len() - half..]].concat()
                    } else {
                        ids
                    };
                    words.push(ids);
                    words.len() as u32 - 1
                });
                index.push(row);
            }
            index.resize(index.len() + steps - seq.len(), 0);
        }
        if words.is_empty() {
            return Err(Error::Empty {
                op: "word characters",
                what: "words",
                shape: vec![seqs.len(), steps],
            });
        }
        let longest = words.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(words.len() * longest);
        for w in &words {
            ids.extend_from_slice(w);
            ids.resize(ids.len() + longest - w.len(), Vocab::PAD);
        }
        Ok(Self {
            ids,
            lengths: words.iter().map(Vec::len).collect(),
            index,
            words: words.len(),
            steps: longest,
        })
    }
}

/// A padded batch of token sequences with one label per sequence (a
/// classifier's batch), row-major `[B, T]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LabeledBatch {
    /// `[B, T]` token ids, the padding id past each length.
    pub ids: Vec<u32>,
    /// `[B]` the class of each sequence.
    pub labels: Vec<u32>,
    /// `[B]` real lengths, 1..=T.
    pub lengths: Vec<usize>,
    /// B
    pub size: usize,
    /// T, the longest length.
    pub steps: usize,
}

impl LabeledBatch {
    /// Pads `(ids, label)` pairs to the longest; `pad` fills the ids. Empty
    /// sequences are errors.
    pub fn pad(seqs: &[(&[u32], u32)], pad: u32) -> Result<Self> {
        let pairs: Vec<(&[u32], &[u32])> = seqs.iter().map(|&(ids, _)| (ids, ids)).collect();
        let b = Batch::pad(&pairs, pad)?;
        Ok(Self {
            ids: b.ids,
            labels: seqs.iter().map(|&(_, label)| label).collect(),
            lengths: b.lengths,
            size: b.size,
            steps: b.steps,
        })
    }
}

/// Continuous streams for truncated backpropagation through time: `batch`
/// streams over `ids`, each a contiguous share; chunk `i` holds positions
/// `i·bptt .. (i + 1)·bptt` of every stream, with the next ids as targets, so
/// the state one chunk ends in is where the next one starts.
#[derive(Clone, Debug)]
pub struct Streams<'a> {
    ids: &'a [u32],
    batch: usize,
    bptt: usize,
    /// Ids per stream.
    len: usize,
}

impl<'a> Streams<'a> {
    /// At most `batch` streams of chunks of `bptt` ids: fewer where `ids` is too
    /// short for every stream to hold a chunk and the id after it. An error when
    /// `bptt` or `batch` is 0 or `ids` cannot fill one chunk.
    pub fn new(ids: &'a [u32], batch: usize, bptt: usize) -> Result<Self> {
        let batch = batch.min(ids.len() / (bptt + 1));
        if batch == 0 || bptt == 0 {
            return Err(Error::Empty {
                op: "streams",
                what: "chunks of bptt ids and the id after them",
                shape: vec![ids.len(), bptt],
            });
        }
        Ok(Self {
            ids,
            batch,
            bptt,
            len: ids.len() / batch,
        })
    }

    /// Streams per batch.
    pub fn streams(&self) -> usize {
        self.batch
    }

    /// Chunks per pass over the ids (at least 1).
    pub fn chunks(&self) -> usize {
        (self.len - 1) / self.bptt
    }

    /// Chunk `i` as a batch of `streams()` sequences of `bptt` ids; `None` past
    /// the last.
    pub fn chunk(&self, i: usize) -> Option<Batch> {
        if i >= self.chunks() {
            return None;
        }
        let t = self.bptt;
        let mut b = Batch {
            ids: Vec::with_capacity(self.batch * t),
            targets: Vec::with_capacity(self.batch * t),
            lengths: vec![t; self.batch],
            size: self.batch,
            steps: t,
            chars: None,
        };
        for s in 0..self.batch {
            let start = s * self.len + i * t;
            b.ids.extend_from_slice(&self.ids[start..start + t]);
            b.targets
                .extend_from_slice(&self.ids[start + 1..start + t + 1]);
        }
        Some(b)
    }
}

/// A padded batch of (source, target) pairs for an encoder-decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct ParallelBatch {
    /// The sources: `ids` and `lengths` (its `targets` repeat the ids).
    pub src: Batch,
    /// The decoder's side: `ids` = `bos` + target (the teacher-forced inputs),
    /// `targets` = target + `eos` (what each step predicts); lengths count `eos`.
    pub tgt: Batch,
}

impl ParallelBatch {
    /// Pads `(source, target)` pairs; `pad` fills the ids. An empty source is an
    /// error; an empty target is a sequence of `eos` alone.
    pub fn new(pairs: &[(&[u32], &[u32])], pad: u32, bos: u32, eos: u32) -> Result<Self> {
        let src: Vec<(&[u32], &[u32])> = pairs.iter().map(|&(s, _)| (s, s)).collect();
        let tgt: Vec<(Vec<u32>, Vec<u32>)> = pairs
            .iter()
            .map(|&(_, t)| {
                let input = std::iter::once(bos).chain(t.iter().copied()).collect();
                let output = t.iter().copied().chain(std::iter::once(eos)).collect();
                (input, output)
            })
            .collect();
        let tgt: Vec<(&[u32], &[u32])> = tgt
            .iter()
            .map(|(i, o)| (i.as_slice(), o.as_slice()))
            .collect();
        Ok(Self {
            src: Batch::pad(&src, pad)?,
            tgt: Batch::pad(&tgt, pad)?,
        })
    }
}

/// Groups sequence indices into batches of at most `size`, sequences of similar
/// length together (sorted by length, cut into batches, the batches shuffled with
/// `seed`), so that little of each batch is padding.
pub fn buckets(lengths: &[usize], size: usize, seed: u64) -> Vec<Vec<usize>> {
    token_buckets(lengths, size, usize::MAX, seed)
}

/// As [`buckets`], with each batch also holding at most `max_tokens` padded
/// tokens (sequences × its longest length), so that a few long sequences do not
/// make one batch that sets the memory a whole run needs: the batches of long
/// sequences are smaller. A sequence longer than `max_tokens` is a batch alone.
pub fn token_buckets(
    lengths: &[usize],
    size: usize,
    max_tokens: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    let mut rng = crate::init::SplitMix::new(seed);
    // Shuffle first so that equal lengths are not always batched in file order.
    shuffle(&mut order, &mut rng);
    order.sort_by_key(|&i| lengths[i]);
    let mut batches: Vec<Vec<usize>> = vec![];
    let mut batch: Vec<usize> = vec![];
    for i in order {
        // Ascending lengths: the newcomer is the batch's longest.
        let padded = (batch.len() + 1).saturating_mul(lengths[i].max(1));
        if !batch.is_empty() && (batch.len() == size.max(1) || padded > max_tokens) {
            batches.push(std::mem::take(&mut batch));
        }
        batch.push(i);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    shuffle(&mut batches, &mut rng);
    batches
}

/// Fisher–Yates with the crate's seeded generator.
pub fn shuffle<T>(items: &mut [T], rng: &mut crate::init::SplitMix) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Tokens ↔ ids. Id 0 is the padding token and id 1 the unknown token.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// The padding token, id 0.
    pub const PAD: u32 = 0;
    /// The unknown token, id 1.
    pub const UNK: u32 = 1;

    /// The tokens seen at least `min_count` times, most frequent first (ties in
    /// first-seen order), after `<pad>` and `<unk>`.
    pub fn build<'a>(tokens: impl IntoIterator<Item = &'a str>, min_count: usize) -> Self {
        Self::build_with(&[], tokens, min_count)
    }

    /// As [`build`](Self::build), with `specials` (such as begin- and
    /// end-of-sequence markers) right after `<pad>` and `<unk>`, counted or not.
    pub fn build_with<'a>(
        specials: &[&str],
        tokens: impl IntoIterator<Item = &'a str>,
        min_count: usize,
    ) -> Self {
        let mut counts: Vec<(String, usize)> = Vec::new();
        let mut at: HashMap<&str, usize> = HashMap::new();
        for t in tokens {
            match at.get(t) {
                Some(&i) => counts[i].1 += 1,
                None => {
                    at.insert(t, counts.len());
                    counts.push((t.to_string(), 1));
                }
            }
        }
        // Stable: equal counts keep first-seen order.
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        let mut vocab = Self::from_tokens(
            ["<pad>", "<unk>"]
                .into_iter()
                .chain(specials.iter().copied()),
        );
        for (t, c) in counts {
            if c >= min_count && !vocab.ids.contains_key(&t) {
                vocab.push(t);
            }
        }
        vocab
    }

    /// A vocabulary of exactly these tokens, in order (no pad or unk added).
    pub fn from_tokens<S: Into<String>>(tokens: impl IntoIterator<Item = S>) -> Self {
        let mut vocab = Self {
            tokens: Vec::new(),
            ids: HashMap::new(),
        };
        for t in tokens {
            vocab.push(t.into());
        }
        vocab
    }

    fn push(&mut self, t: String) {
        if !self.ids.contains_key(&t) {
            self.ids.insert(t.clone(), self.tokens.len() as u32);
            self.tokens.push(t);
        }
    }

    /// The id of `token`, or [`Vocab::UNK`].
    pub fn id(&self, token: &str) -> u32 {
        self.ids.get(token).copied().unwrap_or(Self::UNK)
    }

    /// The id of `token` if it is in the vocabulary.
    pub fn get(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The token of `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The tokens in id order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}
