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
    pub words: Vec<String>,
    pub tags: Vec<String>,
    pub id: Option<String>,
}

/// Parses CoNLL-U: sentences separated by blank lines, `#` comments (of which
/// `# sent_id = ...` is kept), ten
/// tab-separated columns per word (FORM is column 2, UPOS column 4). Multi-word
/// token ranges (`1-2`) and empty nodes (`1.1`) are skipped, as a tagger of the
/// syntactic words wants.
pub fn parse_conllu(text: &str, name: &str) -> Result<Vec<TaggedSentence>> {
    let mut out = Vec::new();
    let mut cur = TaggedSentence::default();
    let mut last_line = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        last_line = n;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !cur.words.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some((key, value)) = comment.split_once('=') {
                if key.trim() == "sent_id" {
                    cur.id = Some(value.trim().to_string());
                }
            }
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 10 {
            return Err(parse_err(
                name,
                n,
                format!("{} tab-separated columns, CoNLL-U has 10", cols.len()),
            ));
        }
        let id = cols[0];
        if id.contains('-') || id.contains('.') {
            continue;
        }
        let expected = cur.words.len() + 1;
        if id.parse::<usize>().ok() != Some(expected) {
            return Err(parse_err(
                name,
                n,
                format!("word id {id:?} where {expected} comes next"),
            ));
        }
        if cols[1].is_empty() || cols[3].is_empty() || cols[3] == "_" {
            return Err(parse_err(name, n, "empty FORM or UPOS"));
        }
        cur.words.push(cols[1].to_string());
        cur.tags.push(cols[3].to_string());
    }
    if !cur.words.is_empty() {
        out.push(cur);
    }
    if out.is_empty() {
        return Err(parse_err(name, last_line, "no sentences"));
    }
    Ok(out)
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
