//! Character-aware word representations: a character embedding and a
//! bidirectional LSTM run over each distinct word of a batch once; a word's
//! vector is the LSTM's last state in each direction (after its last character
//! forward, after its first backward), side by side. Batched over the words, so
//! a batch costs a few short recurrences whatever its number of tokens: the
//! words run in groups of similar length (a recurrence steps through its longest
//! word for every row, and most words are short), chosen to minimize the rows
//! stepped plus a fixed cost per step.
//!
//! ```
//! use rnn_wgpu::data::{Vocab, WordChars};
//! use rnn_wgpu::nn::CharEncoder;
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let text = "the cat sat";
//!     let chars = Vocab::build(text.split("").filter(|c| !c.is_empty() && *c != " "), 1);
//!     let enc = CharEncoder::new(&ctx, chars.len(), 4, 3, 1)?; // char emb 4, 3 units per direction
//!     // One batch of two sentences padded to 3 words; "the" appears twice, spelled once.
//!     let sents: [&[&str]; 2] = [&["the", "cat", "sat"], &["the", "cat"]];
//!     let words = WordChars::new(&sents, 3, &chars, 20)?;
//!     assert_eq!(words.words, 3);
//!     let mut tape = Tape::eval(&ctx, "spell");
//!     let v = enc.apply(&mut tape, &words, [2, 3])?; // [B, T, 2·hidden]
//!     tape.into_recorder().submit();
//!     let v = v.to_vec()?;
//!     assert_eq!(v.len(), 2 * 3 * 6);
//!     assert_eq!(v[0..6], v[9 * 2..9 * 2 + 6]); // "the" at (0, 0) and (1, 0)
//!     Ok(())
//! }
//! ```

use super::{prefixed, Embedding, Entry, Module};
use crate::data::{Vocab, WordChars};
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::nn::{Config, Lstm, LstmState};
use crate::tape::{Tape, Var};

/// See the module docs. Its state_dict names are `embedding.weight` and the
/// LSTM's (`lstm.weight_ih_l0`, `lstm.weight_ih_l0_reverse`, ...).
#[derive(Clone, Debug)]
pub struct CharEncoder {
    /// Character embedding, `embedding.weight`.
    pub embedding: Embedding,
    /// The character BiLSTM, `lstm.*`.
    pub lstm: Lstm,
}

impl CharEncoder {
    /// `chars` character ids ([`Vocab::PAD`] the padding) embedded in `emb`, a
    /// BiLSTM of `hidden` units per direction; initialized as PyTorch does.
    pub fn new(ctx: &Context, chars: usize, emb: usize, hidden: usize, seed: u64) -> Result<Self> {
        let lstm = Config::new(emb, hidden).with_bidirectional(true);
        Ok(Self {
            embedding: Embedding::new(ctx, chars, emb, Some(Vocab::PAD), seed)?,
            lstm: Lstm::new(ctx, lstm, seed + 1)?,
        })
    }

    /// The width of a word's vector: twice the hidden size.
    pub fn width(&self) -> usize {
        2 * self.lstm.layer().config().hidden_size
    }

    /// `[W, 2H]`: one vector per distinct word of `words`, in `order` (rows of
    /// `words`, grouped by [`length_groups`]).
    fn encode_groups(
        &self,
        tape: &mut Tape,
        words: &WordChars,
        order: &[usize],
        groups: &[usize],
    ) -> Result<Var> {
        let mut parts = Vec::with_capacity(groups.len());
        let mut start = 0;
        for &end in groups {
            let rows = &order[start..end];
            let steps = rows.iter().map(|&r| words.lengths[r]).max().unwrap_or(1);
            let mut ids = Vec::with_capacity(rows.len() * steps);
            for &r in rows {
                let row = r * words.steps;
                ids.extend_from_slice(&words.ids[row..row + steps]);
            }
            let lengths: Vec<usize> = rows.iter().map(|&r| words.lengths[r]).collect();
            let chars = self.embedding.apply(tape, &ids, &[rows.len(), steps])?;
            let (_, LstmState { h, .. }) = self.lstm.apply(tape, &chars, &lengths, None)?;
            // h_n [2, W, H] → [W, 2, H]: forward then backward state per word.
            let per_word = tape.transpose(&h, 0)?;
            parts.push(tape.reshape(&per_word, &[rows.len(), self.width()])?);
            start = end;
        }
        let parts: Vec<&Var> = parts.iter().collect();
        tape.cat(&parts, 0)
    }

    /// `[B, T, 2H]`: the vector of the word at every position of a `[B, T]` batch
    /// (`shape`); padding positions get word 0's.
    pub fn apply(&self, tape: &mut Tape, words: &WordChars, shape: [usize; 2]) -> Result<Var> {
        let positions = shape[0] * shape[1];
        if words.index.len() != positions {
            return Err(Error::ShapeMismatch {
                op: "char encoder",
                what: "word index",
                expected: format!("{positions} positions for {shape:?}"),
                got: vec![words.index.len()],
            });
        }
        check(words)?;
        let (order, groups) = length_groups(&words.lengths, step_cost(tape.context()));
        let per_word = self.encode_groups(tape, words, &order, &groups)?;
        // Row r of `words` is row at[r] of the groups' output.
        let mut at = vec![0u32; words.words];
        for (i, &r) in order.iter().enumerate() {
            at[r] = i as u32;
        }
        let index: Vec<u32> = words
            .index
            .iter()
            .map(|&r| at.get(r as usize).copied().unwrap_or(u32::MAX))
            .collect();
        let per_token = tape.gather(&per_word, &index)?;
        tape.reshape(&per_token, &[shape[0], shape[1], self.width()])
    }
}

/// The fixed cost of a recurrence step in rows stepped. A CPU adapter's work grows
/// with the rows; a GPU steps thousands of rows in the time of one dispatch. Both
/// values are first choices, not tuned.
fn step_cost(ctx: &Context) -> usize {
    match ctx.adapter_info().device_type {
        wgpu::DeviceType::Cpu => 64,
        _ => 1024,
    }
}

/// The rows of `lengths` sorted by length, and the ends of the groups to run
/// apart: the grouping that minimizes Σ over groups of longest × (rows +
/// `step_cost`), found exactly over the distinct lengths.
fn length_groups(lengths: &[usize], step_cost: usize) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&r| lengths[r]);
    // Ends (exclusive) of runs of equal length: the candidate cuts.
    let mut ends: Vec<usize> = (1..order.len())
        .filter(|&i| lengths[order[i]] != lengths[order[i - 1]])
        .collect();
    ends.push(order.len());
    // best[j]: the cheapest grouping of the rows before ends[j]; from[j] its last cut.
    let mut best = vec![usize::MAX; ends.len()];
    let mut from = vec![usize::MAX; ends.len()];
    for j in 0..ends.len() {
        let longest = lengths[order[ends[j] - 1]];
        for i in 0..=j {
            let (start, before) = if i == 0 {
                (0, 0)
            } else {
                (ends[i - 1], best[i - 1])
            };
            let cost = before + longest * (ends[j] - start + step_cost);
            if cost < best[j] {
                best[j] = cost;
                from[j] = i;
            }
        }
    }
    let mut groups = Vec::new();
    let mut j = ends.len() - 1;
    loop {
        groups.push(ends[j]);
        match from[j] {
            0 => break,
            i => j = i - 1,
        }
    }
    groups.reverse();
    (order, groups)
}

/// `words` is consistent: W rows of L ids, lengths in 1..=L, indices below W.
fn check(words: &WordChars) -> Result<()> {
    let (w, l) = (words.words, words.steps);
    if w == 0 || l == 0 {
        return Err(Error::Empty {
            op: "char encoder",
            what: "words",
            shape: vec![w, l],
        });
    }
    if words.ids.len() != w * l || words.lengths.len() != w {
        return Err(Error::ShapeMismatch {
            op: "char encoder",
            what: "word characters",
            expected: format!("[{w}, {l}] ids and {w} lengths"),
            got: vec![words.ids.len(), words.lengths.len()],
        });
    }
    if let Some((index, &value)) = words
        .lengths
        .iter()
        .enumerate()
        .find(|(_, &n)| n == 0 || n > l)
    {
        return Err(Error::LengthOutOfRange {
            op: "char encoder",
            index,
            value,
            max: l,
        });
    }
    Ok(())
}

impl Module for CharEncoder {
    fn entries(&self) -> Vec<Entry> {
        let mut out = prefixed("embedding", self.embedding.entries());
        out.extend(prefixed("lstm", self.lstm.entries()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::length_groups;

    const STEP_COST: usize = 64;

    /// The cost of a grouping, as `length_groups` counts it at STEP_COST.
    fn cost(lengths: &[usize], order: &[usize], groups: &[usize]) -> usize {
        let mut start = 0;
        let mut total = 0;
        for &end in groups {
            let longest = order[start..end].iter().map(|&r| lengths[r]).max().unwrap();
            total += longest * (end - start + STEP_COST);
            start = end;
        }
        total
    }

    #[test]
    fn length_groups_are_the_cheapest_cut_of_the_sorted_rows() {
        // Equal lengths: one group.
        let (order, groups) = length_groups(&[3; 10], STEP_COST);
        assert_eq!((order.len(), groups), (10, vec![10]));
        // Many short words and one long one: the long one runs alone.
        let mut lengths = vec![2; 300];
        lengths.insert(17, 20);
        let (order, groups) = length_groups(&lengths, STEP_COST);
        assert_eq!(groups, [300, 301]);
        assert_eq!(order[300], 17);
        // Against every cut of a small mixed case (cuts only between lengths).
        let lengths: Vec<usize> = (0..90)
            .map(|i| 1 + (i * 7) % 13 + (i % 11) / 10 * 8)
            .collect();
        let (order, groups) = length_groups(&lengths, STEP_COST);
        assert!(order.windows(2).all(|w| lengths[w[0]] <= lengths[w[1]]));
        let mut cuts: Vec<usize> = (1..order.len())
            .filter(|&i| lengths[order[i]] != lengths[order[i - 1]])
            .collect();
        cuts.push(order.len());
        let found = cost(&lengths, &order, &groups);
        for mask in 0u32..1 << (cuts.len() - 1) {
            let g: Vec<usize> = cuts
                .iter()
                .enumerate()
                .filter(|&(i, _)| i == cuts.len() - 1 || mask & (1 << i) != 0)
                .map(|(_, &c)| c)
                .collect();
            assert!(
                found <= cost(&lengths, &order, &g),
                "{groups:?} beaten by {g:?}"
            );
        }
    }
}
