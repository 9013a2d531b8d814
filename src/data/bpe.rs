//! Byte-pair encoding (Sennrich et al. 2016, as subword-nmt writes it): a
//! subword vocabulary learned from a corpus's words by repeatedly merging the
//! most frequent pair of adjacent symbols. A word splits into pieces whose
//! every piece but the last ends in `@@`, so `decode` joins them back exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use crate::error::{Error, Result};

/// What marks a piece that the next piece continues.
pub const CONTINUES: &str = "@@";
/// The end-of-word symbol while learning and applying merges.
const END: &str = "</w>";

/// Learned merges, applied in the order they were learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bpe {
    merges: Vec<(String, String)>,
    ranks: HashMap<(String, String), usize>,
}

impl Bpe {
    /// Learns up to `merges` merges from `words` (each occurrence counts). Ties
    /// go to the pair that sorts first, so the result depends on the words only.
    /// Words containing whitespace are an error.
    pub fn learn<'a>(words: impl IntoIterator<Item = &'a str>, merges: usize) -> Result<Self> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for w in words {
            if w.is_empty() || w.chars().any(char::is_whitespace) {
                return Err(Error::InvalidArgument {
                    op: "bpe",
                    what: "word",
                    expected: "a non-empty word without whitespace",
                    got: format!("{w:?}"),
                });
            }
            *counts.entry(w).or_default() += 1;
        }
        let mut types: Vec<(Vec<String>, usize)> =
            counts.into_iter().map(|(w, n)| (symbols(w), n)).collect();
        // Pair counts, and which word types hold each pair.
        let mut pairs: HashMap<(String, String), usize> = HashMap::new();
        let mut holders: HashMap<(String, String), HashSet<usize>> = HashMap::new();
        for (i, (syms, n)) in types.iter().enumerate() {
            for pair in syms.windows(2) {
                let key = (pair[0].clone(), pair[1].clone());
                *pairs.entry(key.clone()).or_default() += n;
                holders.entry(key).or_default().insert(i);
            }
        }
        // The most frequent pair from a heap of (count, pair) entries, stale
        // ones (whose count has changed since) skipped as they surface.
        let mut heap: BinaryHeap<(usize, Reverse<(String, String)>)> = pairs
            .iter()
            .map(|(k, &n)| (n, Reverse(k.clone())))
            .collect();
        let mut learned = Vec::with_capacity(merges);
        while learned.len() < merges {
            let Some((count, Reverse(best))) = heap.pop() else {
                break;
            };
            if pairs.get(&best) != Some(&count) {
                continue;
            }
            // A pair seen once merges nothing that generalizes.
            if count < 2 {
                break;
            }
            let mut touched: Vec<usize> = holders
                .remove(&best)
                .map(|s| s.into_iter().collect())
                .unwrap_or_default();
            touched.sort_unstable();
            let mut changed = HashSet::new();
            for i in touched {
                let (syms, n) = &mut types[i];
                for pair in syms.windows(2) {
                    let key = (pair[0].clone(), pair[1].clone());
                    if let Some(c) = pairs.get_mut(&key) {
                        *c -= *n;
                    }
                    changed.insert(key);
                }
                *syms = merge(syms, &best);
                for pair in syms.windows(2) {
                    let key = (pair[0].clone(), pair[1].clone());
                    *pairs.entry(key.clone()).or_default() += *n;
                    holders.entry(key.clone()).or_default().insert(i);
                    changed.insert(key);
                }
            }
            pairs.remove(&best);
            for key in changed {
                if let Some(&n) = pairs.get(&key) {
                    heap.push((n, Reverse(key)));
                }
            }
            learned.push(best);
        }
        Ok(Self::from_merges(learned))
    }

    /// The encoding of a list of merges (as [`merges`](Self::merges) gives).
    pub fn from_merges(merges: Vec<(String, String)>) -> Self {
        let ranks = merges.iter().cloned().zip(0..).collect();
        Self { merges, ranks }
    }

    /// The merges in the order they apply.
    pub fn merges(&self) -> &[(String, String)] {
        &self.merges
    }

    /// The pieces of one word: the learned merges applied lowest rank first,
    /// every piece but the last marked with [`CONTINUES`].
    pub fn encode_word(&self, word: &str) -> Vec<String> {
        let mut syms = symbols(word);
        loop {
            let best = syms
                .windows(2)
                .filter_map(|p| self.ranks.get(&(p[0].clone(), p[1].clone())))
                .min();
            let Some(&rank) = best else { break };
            syms = merge(&syms, &self.merges[rank]);
        }
        let last = syms.len() - 1;
        syms.into_iter()
            .enumerate()
            .map(|(i, s)| {
                if i == last {
                    s.strip_suffix(END).unwrap_or(&s).to_string()
                } else {
                    s + CONTINUES
                }
            })
            .collect()
    }

    /// The pieces of a sequence of words.
    pub fn encode<S: AsRef<str>>(&self, words: &[S]) -> Vec<String> {
        words
            .iter()
            .flat_map(|w| self.encode_word(w.as_ref()))
            .collect()
    }
}

/// Words from pieces: each piece ending in [`CONTINUES`] joins the next. A
/// trailing unfinished piece (a decoder may stop anywhere) ends its word.
pub fn decode<S: AsRef<str>>(pieces: &[S]) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for p in pieces {
        match p.as_ref().strip_suffix(CONTINUES) {
            Some(stem) => word.push_str(stem),
            None => {
                word.push_str(p.as_ref());
                words.push(std::mem::take(&mut word));
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// A word's characters, the last one carrying the end-of-word mark.
fn symbols(word: &str) -> Vec<String> {
    let mut syms: Vec<String> = word.chars().map(String::from).collect();
    if let Some(last) = syms.last_mut() {
        last.push_str(END);
    }
    syms
}

/// `syms` with every non-overlapping occurrence of `pair`, left to right, joined.
fn merge(syms: &[String], pair: &(String, String)) -> Vec<String> {
    let mut out = Vec::with_capacity(syms.len());
    let mut i = 0;
    while i < syms.len() {
        if i + 1 < syms.len() && syms[i] == pair.0 && syms[i + 1] == pair.1 {
            out.push(format!("{}{}", pair.0, pair.1));
            i += 2;
        } else {
            out.push(syms[i].clone());
            i += 1;
        }
    }
    out
}
