//! Evaluation measures computed on the host: corpus BLEU as sacreBLEU computes it
//! on tokenized text, and accuracy over the positions a mask keeps.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Corpus BLEU with its parts, on sacreBLEU's 0–100 scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bleu {
    /// BLEU, 0–100.
    pub score: f64,
    /// Modified n-gram precisions for n = 1..=4, in percent.
    pub precisions: [f64; 4],
    /// The brevity penalty, at most 1.
    pub brevity_penalty: f64,
    /// Tokens in the hypotheses and in the references.
    pub sys_len: usize,
    /// Tokens in the references.
    pub ref_len: usize,
}

/// Corpus BLEU of `hypotheses` against one reference each (token lists): n-gram
/// matches clipped by the reference's counts, summed over the corpus, for n up to
/// 4; the brevity penalty exp(1 − r/c) when the hypotheses are shorter; an n with
/// no match at all gets sacreBLEU's exponential smoothing (precision
/// 100 / (2^k · total) for the k-th such n), so the score is that of
/// `sacrebleu.corpus_bleu(hyps, [refs], tokenize="none")`.
pub fn corpus_bleu<S: AsRef<str>>(hypotheses: &[Vec<S>], references: &[Vec<S>]) -> Result<Bleu> {
    if hypotheses.len() != references.len() {
        return Err(Error::ShapeMismatch {
            op: "bleu",
            what: "references",
            expected: format!("{} sentences, one per hypothesis", hypotheses.len()),
            got: vec![references.len()],
        });
    }
    let mut correct = [0usize; 4];
    let mut total = [0usize; 4];
    let (mut sys_len, mut ref_len) = (0, 0);
    for (hyp, reference) in hypotheses.iter().zip(references) {
        let hyp: Vec<&str> = hyp.iter().map(AsRef::as_ref).collect();
        let reference: Vec<&str> = reference.iter().map(AsRef::as_ref).collect();
        sys_len += hyp.len();
        ref_len += reference.len();
        for n in 1..=4 {
            let ref_counts = ngrams(&reference, n);
            for (gram, count) in ngrams(&hyp, n) {
                correct[n - 1] += count.min(ref_counts.get(&gram).copied().unwrap_or(0));
            }
            total[n - 1] += hyp.len().saturating_sub(n - 1);
        }
    }
    let mut precisions = [0.0; 4];
    let mut smooth = 1.0;
    for n in 0..4 {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    let brevity_penalty = if sys_len == 0 {
        0.0
    } else if sys_len < ref_len {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        1.0
    };
    let score = if precisions.contains(&0.0) {
        0.0
    } else {
        brevity_penalty * (precisions.iter().map(|p| p.ln()).sum::<f64>() / 4.0).exp()
    };
    Ok(Bleu {
        score,
        precisions,
        brevity_penalty,
        sys_len,
        ref_len,
    })
}

fn ngrams<'a>(tokens: &[&'a str], n: usize) -> HashMap<Vec<&'a str>, usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram.to_vec()).or_insert(0) += 1;
    }
    counts
}

/// The fraction of kept positions (`keep[i]`) where `predicted[i] == gold[i]`;
/// `None` when no position is kept.
pub fn accuracy<T: PartialEq>(predicted: &[T], gold: &[T], keep: &[bool]) -> Result<Option<f64>> {
    if predicted.len() != gold.len() || keep.len() != gold.len() {
        return Err(Error::ShapeMismatch {
            op: "accuracy",
            what: "predicted, gold, keep",
            expected: "equal lengths".into(),
            got: vec![predicted.len(), gold.len(), keep.len()],
        });
    }
    let kept = keep.iter().filter(|&&k| k).count();
    let right = predicted
        .iter()
        .zip(gold)
        .zip(keep)
        .filter(|((p, g), &k)| k && p == g)
        .count();
    Ok((kept > 0).then(|| right as f64 / kept as f64))
}
