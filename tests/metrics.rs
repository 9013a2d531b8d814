//! BLEU against sacreBLEU's numbers on a committed fixture (tools/bleu_fixture.py),
//! and accuracy on a worked example.

use rnn_wgpu::metrics::{accuracy, corpus_bleu};
use rnn_wgpu::Error;

#[test]
fn corpus_bleu_matches_sacrebleu() {
    let text = include_str!("fixtures/bleu.txt");
    let mut cases = 0;
    let (mut name, mut hyps, mut refs) = (String::new(), vec![], vec![]);
    for line in text.lines() {
        let tokens = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        match line.split_at(line.find(' ').unwrap_or(line.len())) {
            ("#", rest) => name = rest.trim().to_string(),
            ("H", rest) => hyps.push(tokens(rest)),
            ("R", rest) => refs.push(tokens(rest)),
            ("=", rest) => {
                let want: Vec<f64> = rest
                    .split_whitespace()
                    .map(|v| v.parse().unwrap())
                    .collect();
                let got = corpus_bleu(&hyps, &refs).unwrap();
                let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
                assert!(
                    close(got.score, want[0]),
                    "{name}: BLEU {} vs sacreBLEU {}",
                    got.score,
                    want[0]
                );
                for n in 0..4 {
                    assert!(
                        close(got.precisions[n], want[1 + n]),
                        "{name}: precision {}",
                        n + 1
                    );
                }
                assert!(
                    close(got.brevity_penalty, want[5]),
                    "{name}: brevity penalty"
                );
                assert_eq!(
                    (got.sys_len as f64, got.ref_len as f64),
                    (want[6], want[7]),
                    "{name}"
                );
                cases += 1;
                hyps.clear();
                refs.clear();
            }
            _ => panic!("unexpected fixture line {line:?}"),
        }
    }
    assert_eq!(cases, 6);
    let one = vec![vec!["a"]];
    assert!(matches!(
        corpus_bleu(&one, &[]),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn accuracy_counts_kept_positions_only() {
    let predicted = [3, 1, 4, 1, 5];
    let gold = [3, 2, 4, 1, 9];
    let keep = [true, true, true, false, false];
    assert_eq!(accuracy(&predicted, &gold, &keep).unwrap(), Some(2.0 / 3.0));
    assert_eq!(accuracy(&predicted, &gold, &[false; 5]).unwrap(), None);
    assert!(matches!(
        accuracy(&predicted, &gold[..4], &keep),
        Err(Error::ShapeMismatch { .. })
    ));
}
