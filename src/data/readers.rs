//! Readers for the text formats the examples train on. Each takes the file's text
//! (so that it can be fed any bytes) and a name for errors; the `read_*` forms
//! read a file first. Malformed input is an [`Error::Parse`] naming the line.

use std::path::Path;

use crate::error::{Error, Result};

fn parse_err(name: &str, line: usize, reason: impl Into<String>) -> Error {
    Error::Parse {
        path: name.to_string(),
        line,
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    String::from_utf8(bytes).map_err(|e| Error::File {
        path: path.display().to_string(),
        reason: format!("not UTF-8 text: {e}"),
    })
}

/// One sentence of a CoNLL-U file: its word forms and their UPOS tags, and its
/// `# sent_id` when it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaggedSentence {
    /// The word forms.
    pub words: Vec<String>,
    /// Their UPOS tags.
    pub tags: Vec<String>,
    /// Its `# sent_id`.
    pub id: Option<String>,
}

/// One syntactic word of a CoNLL-U sentence: its ten columns, `_` read as
/// absent where a column may be unspecified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdWord {
    /// ID: 1, 2, ... in order.
    pub id: usize,
    /// FORM: the word as written.
    pub form: String,
    /// LEMMA (`None` for `_`).
    pub lemma: Option<String>,
    /// UPOS, the universal part-of-speech tag (`None` for `_`).
    pub upos: Option<String>,
    /// XPOS, the treebank's own tag (`None` for `_`).
    pub xpos: Option<String>,
    /// FEATS as `(name, value)` pairs in the file's order (empty for `_`).
    pub feats: Vec<(String, String)>,
    /// HEAD: the ID of the word this one depends on, 0 for the root (`None`
    /// for `_`, as in a file without syntax).
    pub head: Option<usize>,
    /// DEPREL, the relation to the head (`None` for `_`).
    pub deprel: Option<String>,
    /// DEPS, the enhanced graph as written (`None` for `_`).
    pub deps: Option<String>,
    /// MISC as written (`None` for `_`).
    pub misc: Option<String>,
}

/// A multiword token (ID `first-last`): the written form of the words
/// `first..=last` (Spanish "del" for "de el").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdToken {
    /// The IDs of its first and last word.
    pub first: usize,
    /// The ID of its last word.
    pub last: usize,
    /// FORM as written.
    pub form: String,
    /// MISC as written (`None` for `_`).
    pub misc: Option<String>,
}

/// An empty node of the enhanced graph (ID `after.n`): it follows word `after`
/// (0: before the first) and takes no part in the basic tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdEmptyNode {
    /// The word it follows and its number among the nodes there (1, 2, ...).
    pub after: usize,
    /// Its number among the nodes after that word, from 1.
    pub n: usize,
    /// FORM.
    pub form: String,
    /// LEMMA (`None` for `_`).
    pub lemma: Option<String>,
    /// UPOS (`None` for `_`).
    pub upos: Option<String>,
    /// XPOS (`None` for `_`).
    pub xpos: Option<String>,
    /// FEATS as `(name, value)` pairs.
    pub feats: Vec<(String, String)>,
    /// DEPS, its place in the enhanced graph.
    pub deps: Option<String>,
    /// MISC (`None` for `_`).
    pub misc: Option<String>,
}

/// One sentence of a CoNLL-U file, whole: its words, multiword tokens, empty
/// nodes and comments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdSentence {
    /// `# sent_id = ...`
    pub id: Option<String>,
    /// `# text = ...`
    pub text: Option<String>,
    /// Every comment line, without its `#`, in order.
    pub comments: Vec<String>,
    /// The syntactic words, IDs 1, 2, ...
    pub words: Vec<UdWord>,
    /// The multiword tokens.
    pub tokens: Vec<UdToken>,
    /// The empty nodes.
    pub empty_nodes: Vec<UdEmptyNode>,
}

impl UdSentence {
    /// The words' forms and UPOS tags (`_` for an unspecified tag).
    pub fn tagged(&self) -> TaggedSentence {
        TaggedSentence {
            words: self.words.iter().map(|w| w.form.clone()).collect(),
            tags: self
                .words
                .iter()
                .map(|w| w.upos.clone().unwrap_or_else(|| "_".into()))
                .collect(),
            id: self.id.clone(),
        }
    }
}

/// Parses CoNLL-U as Universal Dependencies specifies it: sentences separated
/// by blank lines, `#` comments, ten tab-separated columns per line; word lines
/// numbered 1, 2, ...; multiword token lines (`1-2`) before the words they
/// span; empty node lines (`3.1`, `3.2`) after the word they follow. HEAD must
/// name a word of the sentence (or 0); FEATS is `_` or `Name=Value` pairs
/// joined by `|`. Anything else is an [`Error::Parse`] naming the line.
pub fn parse_ud(text: &str, name: &str) -> Result<Vec<UdSentence>> {
    Ok(parse_ud_lines(text, name)?
        .into_iter()
        .map(|(s, _)| s)
        .collect())
}

/// [`parse_ud`], each sentence with the line of each of its words.
fn parse_ud_lines(text: &str, name: &str) -> Result<Vec<(UdSentence, Vec<usize>)>> {
    let mut out = Vec::new();
    let mut cur = UdSentence::default();
    // The lines of the sentence's words, for HEAD errors at its end.
    let mut word_lines = Vec::new();
    let mut last_line = 0;
    type Out = Vec<(UdSentence, Vec<usize>)>;
    let finish = |cur: &mut UdSentence, word_lines: &mut Vec<usize>, out: &mut Out| {
        let n = cur.words.len();
        if n == 0 {
            if cur.tokens.is_empty() && cur.empty_nodes.is_empty() {
                // Comments alone (or nothing) between blank lines.
                *cur = UdSentence::default();
                return Ok(());
            }
            return Err((
                word_lines.first().copied().unwrap_or(0),
                "a sentence without words".to_string(),
            ));
        }
        if let Some((w, line)) = cur
            .words
            .iter()
            .zip(word_lines.iter())
            .find(|(w, _)| w.head.is_some_and(|h| h > n))
        {
            return Err((
                *line,
                format!("HEAD {} past the sentence's {n} words", w.head.unwrap_or(0)),
            ));
        }
        if let Some(t) = cur.tokens.iter().find(|t| t.last > n) {
            return Err((
                word_lines[n - 1],
                format!(
                    "token {}-{} spans words past the last, {n}",
                    t.first, t.last
                ),
            ));
        }
        out.push((std::mem::take(cur), std::mem::take(word_lines)));
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        last_line = n;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            finish(&mut cur, &mut word_lines, &mut out).map_err(|(l, r)| parse_err(name, l, r))?;
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some((key, value)) = comment.split_once('=') {
                match key.trim() {
                    "sent_id" => cur.id = Some(value.trim().to_string()),
                    "text" => cur.text = Some(value.trim().to_string()),
                    _ => {}
                }
            }
            cur.comments.push(comment.trim_start().to_string());
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let Ok(cols) = <[&str; 10]>::try_from(cols.as_slice()) else {
            return Err(parse_err(
                name,
                n,
                format!("{} tab-separated columns, CoNLL-U has 10", cols.len()),
            ));
        };
        let err = |reason: String| parse_err(name, n, reason);
        let [id, form, lemma, upos, xpos, feats, head, deprel, deps, misc] = cols;
        if form.is_empty() {
            return Err(err("empty FORM".into()));
        }
        let opt = |c: &str| (c != "_" && !c.is_empty()).then(|| c.to_string());
        let words = cur.words.len();
        if let Some((first, last)) = id.split_once('-') {
            let (Ok(first), Ok(last)) = (first.parse::<usize>(), last.parse::<usize>()) else {
                return Err(err(format!("multiword token ID {id:?} is not two numbers")));
            };
            if first != words + 1 || last <= first {
                return Err(err(format!(
                    "multiword token {id} where a range from word {} comes next",
                    words + 1
                )));
            }
            cur.tokens.push(UdToken {
                first,
                last,
                form: form.into(),
                misc: opt(misc),
            });
        } else if let Some((after, k)) = id.split_once('.') {
            let (Ok(after), Ok(k)) = (after.parse::<usize>(), k.parse::<usize>()) else {
                return Err(err(format!("empty node ID {id:?} is not two numbers")));
            };
            let before = cur.empty_nodes.iter().filter(|e| e.after == after).count();
            if after != words || k != before + 1 {
                return Err(err(format!(
                    "empty node {id} where {words}.{} comes next",
                    cur.empty_nodes.iter().filter(|e| e.after == words).count() + 1
                )));
            }
            if head != "_" || deprel != "_" {
                return Err(err(format!(
                    "empty node {id} has a HEAD or DEPREL (they are _)"
                )));
            }
            cur.empty_nodes.push(UdEmptyNode {
                after,
                n: k,
                form: form.into(),
                lemma: opt(lemma),
                upos: opt(upos),
                xpos: opt(xpos),
                feats: parse_feats(feats).map_err(err)?,
                deps: opt(deps),
                misc: opt(misc),
            });
        } else {
            if id.parse::<usize>().ok() != Some(words + 1) {
                return Err(err(format!(
                    "word id {id:?} where {} comes next",
                    words + 1
                )));
            }
            if cur.empty_nodes.last().is_some_and(|e| e.after == words + 1) {
                return Err(err(format!("word {id} after its own empty nodes")));
            }
            let head = match head {
                "_" => None,
                h => Some(
                    h.parse::<usize>()
                        .map_err(|_| err(format!("HEAD {h:?} is not a word ID")))?,
                ),
            };
            if head == Some(words + 1) {
                return Err(err(format!("word {id} is its own HEAD")));
            }
            word_lines.push(n);
            cur.words.push(UdWord {
                id: words + 1,
                form: form.into(),
                lemma: opt(lemma),
                upos: opt(upos),
                xpos: opt(xpos),
                feats: parse_feats(feats).map_err(err)?,
                head,
                deprel: opt(deprel),
                deps: opt(deps),
                misc: opt(misc),
            });
        }
    }
    finish(&mut cur, &mut word_lines, &mut out).map_err(|(l, r)| parse_err(name, l, r))?;
    if out.is_empty() {
        return Err(parse_err(name, last_line, "no sentences"));
    }
    Ok(out)
}

/// FEATS: `_`, or `Name=Value` pairs joined by `|`.
fn parse_feats(feats: &str) -> std::result::Result<Vec<(String, String)>, String> {
    if feats == "_" {
        return Ok(Vec::new());
    }
    feats
        .split('|')
        .map(|f| match f.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("FEATS {feats:?}: {f:?} is not Name=Value")),
        })
        .collect()
}

/// [`parse_ud`] of a file.
pub fn read_ud(path: &Path) -> Result<Vec<UdSentence>> {
    parse_ud(&read(path)?, &path.display().to_string())
}

/// Parses CoNLL-U ([`parse_ud`]) and keeps each sentence's word forms and UPOS
/// tags, as a tagger of the syntactic words wants (multiword tokens and empty
/// nodes left out); a word without a UPOS tag is an error.
pub fn parse_conllu(text: &str, name: &str) -> Result<Vec<TaggedSentence>> {
    parse_ud_lines(text, name)?
        .into_iter()
        .map(|(sentence, lines)| {
            match sentence
                .words
                .iter()
                .zip(&lines)
                .find(|(w, _)| w.upos.is_none())
            {
                Some((w, &line)) => {
                    Err(parse_err(name, line, format!("word {} has no UPOS", w.id)))
                }
                None => Ok(sentence.tagged()),
            }
        })
        .collect()
}

/// [`parse_conllu`] of a file.
pub fn read_conllu(path: &Path) -> Result<Vec<TaggedSentence>> {
    parse_conllu(&read(path)?, &path.display().to_string())
}

/// Whitespace tokens of each line; blank lines are skipped. Empty text is an error.
pub fn parse_lines(text: &str, name: &str) -> Result<Vec<Vec<String>>> {
    let out: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect();
    if out.is_empty() {
        return Err(parse_err(name, text.lines().count(), "no tokens"));
    }
    Ok(out)
}

/// [`parse_lines`] of a file.
pub fn read_lines(path: &Path) -> Result<Vec<Vec<String>>> {
    parse_lines(&read(path)?, &path.display().to_string())
}

/// The characters of a text (for character models). Empty text is an error.
pub fn read_chars(path: &Path) -> Result<Vec<char>> {
    let text = read(path)?;
    if text.is_empty() {
        return Err(parse_err(&path.display().to_string(), 0, "empty text"));
    }
    Ok(text.chars().collect())
}

/// Sentence pairs from two texts of one sentence a line, tokenized on
/// whitespace. The texts must have the same number of lines, and no line may be
/// blank (a pair would be lost).
pub fn parse_parallel(
    source: &str,
    target: &str,
    names: (&str, &str),
) -> Result<Vec<(Vec<String>, Vec<String>)>> {
    let (src, tgt): (Vec<&str>, Vec<&str>) = (source.lines().collect(), target.lines().collect());
    if src.len() != tgt.len() {
        let n = src.len().min(tgt.len()) + 1;
        let longer = if src.len() > tgt.len() {
            names.0
        } else {
            names.1
        };
        return Err(parse_err(
            longer,
            n,
            format!("{} lines against {}", src.len(), tgt.len()),
        ));
    }
    if src.is_empty() {
        return Err(parse_err(names.0, 0, "no lines"));
    }
    src.iter()
        .zip(&tgt)
        .enumerate()
        .map(|(i, (s, t))| {
            let tokens = |line: &str, name: &str| -> Result<Vec<String>> {
                let v: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                if v.is_empty() {
                    return Err(parse_err(name, i + 1, "blank line"));
                }
                Ok(v)
            };
            Ok((tokens(s, names.0)?, tokens(t, names.1)?))
        })
        .collect()
}

/// [`parse_parallel`] of two files.
pub fn read_parallel(source: &Path, target: &Path) -> Result<Vec<(Vec<String>, Vec<String>)>> {
    let names = (source.display().to_string(), target.display().to_string());
    parse_parallel(&read(source)?, &read(target)?, (&names.0, &names.1))
}
