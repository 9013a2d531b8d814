//! The data readers and the checkpoint loader against arbitrary input: none may
//! panic, whatever the bytes; each returns its records or a typed error. Inputs
//! are random bytes, random text built from the characters the formats care
//! about (tabs, newlines, `#`, digits, `-`, `.`), and valid files with random
//! damage (truncation, flipped bytes). PROPTEST_CASES overrides the case count.

use proptest::prelude::*;
use rnn_wgpu::data::readers::{parse_conllu, parse_lines, parse_parallel, parse_ud, read_chars};
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::Error;

const CASES: u32 = 2000;

/// Text drawn mostly from the characters CoNLL-U and plain text split on.
fn format_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => Just('\t'),
            3 => Just('\n'),
            1 => Just('#'),
            1 => Just('-'),
            1 => Just('.'),
            1 => Just('_'),
            1 => Just(' '),
            2 => prop::char::range('0', '9'),
            2 => prop::char::range('a', 'z'),
            1 => any::<char>(),
        ],
        0..400,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// A valid CoNLL-U file of two sentences.
const CONLLU: &str = "# sent_id = a-1\n# text = The cat sat.\n\
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n\
2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_\n\
3-4\tsat.\t_\t_\t_\t_\t_\t_\t_\t_\n\
3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_\n\
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n\n\
# sent_id = a-2\n1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n\n";

/// A valid checkpoint's bytes: two f32 tensors and metadata, as safetensors.
fn checkpoint_bytes() -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let w: Vec<u8> = [0.5f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let b: Vec<u8> = [-1.0f32; 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = [
        ("w", TensorView::new(Dtype::F32, vec![2, 3], &w).unwrap()),
        ("b", TensorView::new(Dtype::F32, vec![3], &b).unwrap()),
    ];
    let meta = std::collections::HashMap::from([("step".to_string(), "3".to_string())]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// Damages `bytes`: cuts it at `cut` (a fraction of its length) and sets the
/// bytes at `flips` (fractions) to the given values.
fn damage(mut bytes: Vec<u8>, cut: f64, flips: &[(f64, u8)]) -> Vec<u8> {
    for &(at, value) in flips {
        let i = ((bytes.len() as f64 * at) as usize).min(bytes.len().saturating_sub(1));
        if let Some(b) = bytes.get_mut(i) {
            *b = value;
        }
    }
    let keep = (bytes.len() as f64 * cut).round() as usize;
    bytes.truncate(keep);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn conllu_parser_never_panics(text in format_text()) {
        let _ = parse_conllu(&text, "fuzz");
        let _ = parse_ud(&text, "fuzz");
    }

    #[test]
    fn damaged_conllu_is_parsed_or_refused(cut in 0.0..=1.0f64,
                                            flips in prop::collection::vec((0.0..1.0f64, any::<u8>()), 0..4)) {
        let bytes = damage(CONLLU.as_bytes().to_vec(), cut, &flips);
        match parse_conllu(&String::from_utf8_lossy(&bytes), "fuzz") {
            Ok(sentences) => prop_assert!(sentences.iter().all(|s| s.words.len() == s.tags.len())),
            Err(e) => prop_assert!(matches!(e, Error::Parse { .. }), "{e}"),
        }
        match parse_ud(&String::from_utf8_lossy(&bytes), "fuzz") {
            Ok(sentences) => {
                let whole = |s: &rnn_wgpu::data::readers::UdSentence| {
                    let n = s.words.len();
                    n > 0
                        && s.words.iter().all(|w| w.head.is_none_or(|h| h <= n))
                        && s.tokens.iter().all(|t| t.first < t.last && t.last <= n)
                };
                prop_assert!(sentences.iter().all(whole));
            }
            Err(e) => prop_assert!(matches!(e, Error::Parse { .. }), "{e}"),
        }
    }

    #[test]
    fn line_readers_never_panic(a in format_text(), b in format_text()) {
        let _ = parse_lines(&a, "a");
        match parse_parallel(&a, &b, ("a", "b")) {
            Ok(pairs) => prop_assert!(pairs.iter().all(|(s, t)| !s.is_empty() && !t.is_empty())),
            Err(e) => prop_assert!(matches!(e, Error::Parse { .. }), "{e}"),
        }
    }

    #[test]
    fn char_reader_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let path = std::env::temp_dir().join(format!("rnn-wgpu-fuzz-chars-{}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        match (read_chars(&path), std::str::from_utf8(&bytes)) {
            (Ok(chars), Ok(text)) => prop_assert_eq!(chars.into_iter().collect::<String>(), text),
            (Err(_), Ok(text)) => prop_assert!(text.is_empty()),
            (Ok(_), Err(_)) => prop_assert!(false, "bytes that are not UTF-8 were read"),
            (Err(e), Err(_)) => prop_assert!(matches!(e, Error::File { .. }), "{e}"),
        }
    }

    #[test]
    fn checkpoint_loader_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Err(e) = Checkpoint::from_bytes(&bytes, "fuzz") {
            prop_assert!(matches!(e, Error::File { .. }), "{e}");
        }
    }

    #[test]
    fn damaged_checkpoints_load_or_fail_cleanly(cut in 0.0..=1.0f64,
                                                flips in prop::collection::vec((0.0..1.0f64, any::<u8>()), 0..4)) {
        let bytes = damage(checkpoint_bytes(), cut, &flips);
        if let Err(e) = Checkpoint::from_bytes(&bytes, "fuzz") {
            prop_assert!(matches!(e, Error::File { .. }), "{e}");
        }
    }
}
