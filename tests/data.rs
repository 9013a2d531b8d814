//! Batches, buckets, vocabularies and the text readers, including the errors
//! malformed files get.

use rnn_wgpu::data::bpe::{self, Bpe};
use rnn_wgpu::data::readers::{parse_conllu, parse_lines, parse_parallel, parse_ud, UdToken};
use rnn_wgpu::data::{buckets, token_buckets, Batch, Streams, Vocab, WordChars};
use rnn_wgpu::nn::SplitMix;
use rnn_wgpu::Error;

#[test]
fn batches_pad_to_the_longest_with_lengths_and_ignored_targets() {
    let b = Batch::pad(
        &[(&[5, 6], &[1, 2]), (&[7, 8, 9], &[3, 4, 0]), (&[4], &[2])],
        0,
    )
    .unwrap();
    assert_eq!((b.size, b.steps), (3, 3));
    assert_eq!(b.lengths, [2, 3, 1]);
    assert_eq!(b.ids, [5, 6, 0, 7, 8, 9, 4, 0, 0]);
    let i = Batch::IGNORE;
    assert_eq!(b.targets, [1, 2, i, 3, 4, 0, 2, i, i]);
    assert!(matches!(Batch::pad(&[], 0), Err(Error::Empty { .. })));
    assert!(matches!(
        Batch::pad(&[(&[1], &[1]), (&[], &[])], 0),
        Err(Error::LengthOutOfRange { index: 1, .. })
    ));
    // Ids and targets of different lengths are named as such.
    assert!(matches!(
        Batch::pad(&[(&[1, 2], &[1])], 0),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn word_characters_hold_each_distinct_word_once_with_every_position_s_row() {
    let chars = Vocab::build(["a", "b", "c", "D", "e"], 1);
    let id = |c: &str| chars.id(c);
    let sents: [&[&str]; 2] = [&["ab", "Dab", "ab"], &["cx"]];
    let b = Batch::pad(&[(&[1, 2, 1], &[0, 0, 0]), (&[3], &[0])], 0)
        .unwrap()
        .with_chars(&sents, &chars, 8)
        .unwrap();
    let w = b.chars.unwrap();
    assert_eq!((w.words, w.steps), (3, 3));
    assert_eq!(w.lengths, [2, 3, 2]);
    // "x" was never seen: unknown; rows padded with PAD.
    let (a, bb, c, d) = (id("a"), id("b"), id("c"), id("D"));
    assert_eq!(w.ids, [a, bb, 0, d, a, bb, c, Vocab::UNK, 0]);
    // The padding position of the second sentence points at row 0.
    assert_eq!(w.index, [0, 1, 0, 2, 0, 0]);

    // Long words keep their first and last halves; characters, not bytes.
    let long: [&[&str]; 1] = [&["abcdeéabcDa"]];
    let w = WordChars::new(&long, 1, &chars, 4).unwrap();
    assert_eq!(w.ids, [a, bb, d, a]);
    assert_eq!(w.lengths, [4]);

    let empty: [&[&str]; 1] = [&["a", ""]];
    let err = WordChars::new(&empty, 2, &chars, 4).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { what: "word", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("word 1 of sequence 0"), "{err}");
    assert!(matches!(
        WordChars::new(&long, 1, &chars, 1),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        WordChars::new(&sents, 2, &chars, 4),
        Err(Error::LengthOutOfRange { index: 0, .. })
    ));
    // Words that do not match the batch's lengths are refused.
    let b = Batch::pad(&[(&[1, 2], &[0, 0])], 0).unwrap();
    let short: [&[&str]; 1] = [&["ab"]];
    assert!(matches!(
        b.with_chars(&short, &chars, 8),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn buckets_cover_every_sequence_once_with_similar_lengths() {
    let mut rng = SplitMix::new(3);
    let lengths: Vec<usize> = (0..103)
        .map(|_| 1 + (rng.next_u64() % 40) as usize)
        .collect();
    let batches = buckets(&lengths, 10, 5);
    assert_eq!(batches.len(), 11);
    let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
    all.sort();
    assert_eq!(all, (0..103).collect::<Vec<_>>());
    // Sorted by length before cutting: a batch spans few lengths, so padding is small.
    let padded: usize = batches
        .iter()
        .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap())
        .sum();
    let real: usize = lengths.iter().sum();
    assert!(
        padded < real + real / 10,
        "padding {padded} for {real} real tokens"
    );
    assert_eq!(buckets(&lengths, 10, 5), batches, "same seed, same batches");
    assert_ne!(
        buckets(&lengths, 10, 6),
        batches,
        "another seed, another order"
    );
}

#[test]
fn token_buckets_cap_the_padded_tokens_of_a_batch() {
    let mut rng = SplitMix::new(4);
    let mut lengths: Vec<usize> = (0..200)
        .map(|_| 1 + (rng.next_u64() % 30) as usize)
        .collect();
    // Two long outliers, one past the cap on its own.
    lengths.extend([90, 300]);
    let batches = token_buckets(&lengths, 16, 256, 7);
    let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
    all.sort();
    assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
    for b in &batches {
        let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
        assert!(b.len() <= 16, "{} sequences", b.len());
        assert!(
            b.len() * longest <= 256 || b.len() == 1,
            "{} x {longest} padded tokens",
            b.len()
        );
    }
    assert!(batches.iter().any(|b| b == &vec![201]), "300 alone");
    // The short ones still fill whole batches.
    assert!(batches.iter().filter(|b| b.len() == 16).count() >= 4);
    // Without a cap it is `buckets`.
    assert_eq!(
        token_buckets(&lengths, 16, usize::MAX, 7),
        buckets(&lengths, 16, 7)
    );
}

#[test]
fn vocabularies_map_tokens_by_frequency_with_pad_and_unknown() {
    let v = Vocab::build("b a c a b a d".split(' '), 2);
    assert_eq!(v.len(), 4);
    assert_eq!(v.token(0), Some("<pad>"));
    assert_eq!(v.token(1), Some("<unk>"));
    assert_eq!((v.id("a"), v.id("b")), (2, 3));
    assert_eq!(v.id("c"), Vocab::UNK, "seen once, below min_count");
    assert_eq!(v.get("zzz"), None);
    // Specials come right after <pad> and <unk>, whether the text has them or not.
    let w = Vocab::build_with(&["<s>", "a"], "b a c a b a d".split(' '), 2);
    assert_eq!((w.id("<s>"), w.id("a"), w.id("b"), w.len()), (2, 3, 4, 5));
    let tags = Vocab::from_tokens(["NOUN", "VERB"]);
    assert_eq!((tags.get("VERB"), tags.get("ADJ")), (Some(1), None));
}

const CONLLU: &str = "# sent_id = 1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
";

#[test]
fn conllu_gives_words_and_upos_tags() {
    let s = parse_conllu(CONLLU, "mini.conllu").unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].words, ["Do", "n't", "go", "."]);
    assert_eq!(s[0].tags, ["AUX", "PART", "VERB", "PUNCT"]);
    assert_eq!(s[1].words, ["Yes"]);
    assert_eq!((s[0].id.as_deref(), s[1].id.as_deref()), (Some("1"), None));
}

/// The whole of a sentence as UD writes it: every column, multiword tokens,
/// empty nodes and comments; its tagged view is `parse_conllu`'s.
#[test]
fn conllu_gives_every_column_tokens_and_empty_nodes() {
    let s = parse_ud(CONLLU, "mini.conllu").unwrap();
    assert_eq!(s.len(), 2);
    let (a, b) = (&s[0], &s[1]);
    assert_eq!(a.id.as_deref(), Some("1"));
    assert_eq!(a.text.as_deref(), Some("Don't go."));
    assert_eq!(a.comments, ["sent_id = 1", "text = Don't go."]);
    assert_eq!(
        a.tokens,
        [UdToken {
            first: 1,
            last: 2,
            form: "Don't".into(),
            misc: None
        }]
    );
    let ids: Vec<usize> = a.words.iter().map(|w| w.id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    let heads: Vec<Option<usize>> = a.words.iter().map(|w| w.head).collect();
    assert_eq!(heads, [Some(3), Some(3), Some(0), Some(3)]);
    let w = &a.words[1];
    assert_eq!(
        (
            w.form.as_str(),
            w.lemma.as_deref(),
            w.upos.as_deref(),
            w.xpos.as_deref()
        ),
        ("n't", Some("not"), Some("PART"), Some("RB"))
    );
    assert_eq!(
        (w.deprel.as_deref(), w.deps.as_deref(), w.misc.as_deref()),
        (Some("advmod"), None, None)
    );
    assert_eq!(a.empty_nodes.len(), 1);
    let e = &a.empty_nodes[0];
    assert_eq!(
        (e.after, e.n, e.form.as_str(), e.deps.as_deref()),
        (3, 1, "gone", Some("3:conj"))
    );
    assert_eq!(b.words.len(), 1);
    assert_eq!(b.id, None);
    let tagged: Vec<_> = s.iter().map(|s| s.tagged()).collect();
    assert_eq!(tagged, parse_conllu(CONLLU, "mini.conllu").unwrap());

    let feats = "1\tcats\tcat\tNOUN\tNNS\tNumber=Plur|Case=Nom\t0\troot\t_\tSpaceAfter=No\n";
    let w = &parse_ud(feats, "f").unwrap()[0].words[0];
    assert_eq!(
        w.feats,
        [
            ("Number".into(), "Plur".into()),
            ("Case".into(), "Nom".into())
        ]
    );
    assert_eq!(w.misc.as_deref(), Some("SpaceAfter=No"));
    // Without syntax (HEAD and UPOS `_`): read; the tagger's reader wants UPOS.
    let bare = "1\tcats\t_\t_\t_\t_\t_\t_\t_\t_\n";
    let w = &parse_ud(bare, "b").unwrap()[0].words[0];
    assert_eq!(
        (w.head, w.upos.as_deref(), w.lemma.as_deref()),
        (None, None, None)
    );
    let err = parse_conllu(bare, "b").unwrap_err();
    assert!(matches!(err, Error::Parse { line: 1, .. }), "{err}");
}

/// What UD forbids, each an error naming its line.
#[test]
fn malformed_ud_structure_names_the_line() {
    let cases: [(&str, &str, usize); 9] = [
        ("HEAD past the words", "1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n2\tb\t_\tX\t_\t_\t5\tdep\t_\t_\n", 2),
        ("HEAD not a number", "1\ta\t_\tX\t_\t_\tx\troot\t_\t_\n", 1),
        ("its own HEAD", "1\ta\t_\tX\t_\t_\t1\troot\t_\t_\n", 1),
        ("a token past the words", "1-3\tab\t_\t_\t_\t_\t_\t_\t_\t_\n1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n2\tb\t_\tX\t_\t_\t1\tdep\t_\t_\n", 3),
        ("a token not starting at the next word", "1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n1-2\tab\t_\t_\t_\t_\t_\t_\t_\t_\n", 2),
        ("a one-word range", "1-1\ta\t_\t_\t_\t_\t_\t_\t_\t_\n", 1),
        ("an empty node out of place", "1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n2.1\te\t_\tX\t_\t_\t_\t_\t_\t_\n", 2),
        ("an empty node with a HEAD", "1\ta\t_\tX\t_\t_\t0\troot\t_\t_\n1.1\te\t_\tX\t_\t_\t1\tdep\t_\t_\n", 2),
        ("FEATS not Name=Value", "1\ta\t_\tX\t_\tNumber\t0\troot\t_\t_\n", 1),
    ];
    for (what, text, line) in cases {
        match parse_ud(text, "ud") {
            Err(Error::Parse { line: got, .. }) => assert_eq!(got, line, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn malformed_files_name_the_line() {
    let broken = CONLLU.replace("3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_", "3\tgo\tgo\tVERB");
    let err = parse_conllu(&broken, "broken.conllu").unwrap_err();
    assert!(matches!(err, Error::Parse { line: 6, .. }), "{err}");
    assert!(err.to_string().starts_with("broken.conllu:6:"), "{err}");
    let skipped = CONLLU.replace("2\tn't", "7\tn't");
    assert!(matches!(
        parse_conllu(&skipped, "x").unwrap_err(),
        Error::Parse { line: 5, .. }
    ));
    assert!(matches!(
        parse_conllu("", "empty").unwrap_err(),
        Error::Parse { .. }
    ));
    assert!(matches!(
        parse_conllu("# only a comment\n", "c").unwrap_err(),
        Error::Parse { .. }
    ));
    assert!(matches!(
        parse_lines("\n  \n", "blank").unwrap_err(),
        Error::Parse { .. }
    ));

    let pairs = parse_parallel("ein hund\nzwei\n", "a dog\ntwo\n", ("de", "en")).unwrap();
    assert_eq!(
        pairs[1],
        (vec!["zwei".to_string()], vec!["two".to_string()])
    );
    let err = parse_parallel("a\nb\nc\n", "x\ny\n", ("de", "en")).unwrap_err();
    assert!(
        matches!(err, Error::Parse { line: 3, ref path, .. } if path == "de"),
        "{err}"
    );
    let err = parse_parallel("a\n\n", "x\ny\n", ("de", "en")).unwrap_err();
    assert!(
        matches!(err, Error::Parse { line: 2, ref path, .. } if path == "de"),
        "{err}"
    );
}

/// Arbitrary bytes and mutations of a valid file: every reader returns a value
/// or an error, and never panics.
#[test]
fn readers_survive_arbitrary_input() {
    let mut rng = SplitMix::new(77);
    let mut next = || rng.next_u64();
    let alphabet = b"\t\n\r #-._0123456789abcXYZ\xc3\xa9\xff";
    for case in 0..3000 {
        let text: String = if case % 2 == 0 {
            let len = (next() % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            let mut v: Vec<char> = CONLLU.chars().collect();
            for _ in 0..1 + next() % 4 {
                let at = (next() % v.len() as u64) as usize;
                match next() % 3 {
                    0 => {
                        v.remove(at);
                    }
                    1 => v.insert(at, ['\t', '\n', '-', '.', '9'][(next() % 5) as usize]),
                    _ => v.truncate(at),
                }
                if v.is_empty() {
                    break;
                }
            }
            v.into_iter().collect()
        };
        let _ = parse_conllu(&text, "fuzz");
        let _ = parse_ud(&text, "fuzz");
        let _ = parse_lines(&text, "fuzz");
        let half = text.len() / 2;
        let cut = (half..=text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        let _ = parse_parallel(&text[..cut], &text[cut..], ("a", "b"));
    }
}

#[test]
fn streams_continue_each_stream_from_chunk_to_chunk() {
    let ids: Vec<u32> = (0..103).collect();
    let streams = Streams::new(&ids, 4, 5).unwrap();
    // 4 streams of 25 ids: chunks of 5 and the id after each, 4 of them.
    assert_eq!((streams.streams(), streams.chunks()), (4, 4));
    let first = streams.chunk(0).unwrap();
    assert_eq!(
        (first.size, first.steps, &first.lengths[..]),
        (4, 5, &[5; 4][..])
    );
    assert_eq!(&first.ids[..5], &[0, 1, 2, 3, 4]);
    assert_eq!(&first.targets[..5], &[1, 2, 3, 4, 5]);
    assert_eq!(&first.ids[5..10], &[25, 26, 27, 28, 29]);
    let second = streams.chunk(1).unwrap();
    assert_eq!(
        &second.ids[..5],
        &[5, 6, 7, 8, 9],
        "stream 0 goes on where it stopped"
    );
    assert_eq!(&second.targets[15..20], &[81, 82, 83, 84, 85]);
    let last = streams.chunk(3).unwrap();
    assert_eq!(
        last.targets[19], 95,
        "the last target stays inside stream 3"
    );
    assert!(streams.chunk(4).is_none());

    // A short text gets fewer streams; one too short for a chunk is an error.
    let short: Vec<u32> = (0..7).collect();
    let one = Streams::new(&short, 4, 3).unwrap();
    assert_eq!((one.streams(), one.chunks()), (1, 2));
    assert!(matches!(
        Streams::new(&short[..3], 4, 3),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        Streams::new(&short, 4, 0),
        Err(Error::Empty { .. })
    ));
}

/// Merges learned the slow way: every pair recounted over every word at each
/// merge, the most frequent taken (ties: the pair that sorts first).
fn reference_merges(words: &[&str], merges: usize) -> Vec<(String, String)> {
    let mut types: std::collections::BTreeMap<Vec<String>, usize> = Default::default();
    for w in words {
        let mut syms: Vec<String> = w.chars().map(String::from).collect();
        syms.last_mut().unwrap().push_str("</w>");
        *types.entry(syms).or_default() += 1;
    }
    let mut out = Vec::new();
    while out.len() < merges {
        let mut counts: std::collections::BTreeMap<(String, String), usize> = Default::default();
        for (syms, n) in &types {
            for p in syms.windows(2) {
                *counts.entry((p[0].clone(), p[1].clone())).or_default() += n;
            }
        }
        // BTreeMap order is the tie-break: the first of the most frequent.
        let Some((best, n)) = counts.into_iter().fold(None, |acc, (k, n)| match acc {
            Some((_, m)) if m >= n => acc,
            _ => Some((k, n)),
        }) else {
            break;
        };
        if n < 2 {
            break;
        }
        types = types
            .into_iter()
            .map(|(syms, n)| {
                let mut merged = Vec::new();
                let mut i = 0;
                while i < syms.len() {
                    if i + 1 < syms.len() && syms[i] == best.0 && syms[i + 1] == best.1 {
                        merged.push(format!("{}{}", best.0, best.1));
                        i += 2;
                    } else {
                        merged.push(syms[i].clone());
                        i += 1;
                    }
                }
                (merged, n)
            })
            .fold(
                Default::default(),
                |mut m: std::collections::BTreeMap<_, _>, (k, n)| {
                    *m.entry(k).or_default() += n;
                    m
                },
            );
        out.push(best);
    }
    out
}

#[test]
fn bpe_learns_the_merges_of_the_slow_recount_and_round_trips_every_word() {
    // Sennrich et al.'s example: "es" then "est</w>" come first (9 each); the
    // end mark rides on the last letter, so "ew" (6) beats "lo"+"w" (2).
    let mut words = vec!["low"; 5];
    words.extend(["lower"; 2]);
    words.extend(["newest"; 6]);
    words.extend(["widest"; 3]);
    let bpe = Bpe::learn(words.iter().copied(), 4).unwrap();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        bpe.merges(),
        [
            pair("e", "s"),
            pair("es", "t</w>"),
            pair("l", "o"),
            pair("e", "w")
        ]
    );
    assert_eq!(bpe.encode_word("lowest"), ["lo@@", "w@@", "est"]);
    assert_eq!(bpe.encode_word("newer"), ["n@@", "ew@@", "e@@", "r"]);

    // A generated corpus with repeats, overlaps ("aaaa") and non-ASCII letters.
    let letters: Vec<char> = "aabcdeeéßü".chars().collect();
    let mut rng = SplitMix::new(3);
    let corpus: Vec<String> = (0..3000)
        .map(|_| {
            let len = 1 + (rng.next_u64() % 7) as usize;
            (0..len)
                .map(|_| letters[(rng.next_u64() % letters.len() as u64) as usize])
                .collect()
        })
        .chain(["aaaa".to_string(), "aaaa".into(), "aaaaa".into()])
        .collect();
    let refs: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let bpe = Bpe::learn(refs.iter().copied(), 300).unwrap();
    assert_eq!(bpe.merges(), reference_merges(&refs, 300));
    let unseen = ["zzz", "ßüé", "a", "newestaaaa"];
    let all: Vec<&str> = refs.iter().copied().chain(unseen).collect();
    let pieces = bpe.encode(&all);
    assert!(pieces.len() < all.iter().map(|w| w.chars().count()).sum());
    assert_eq!(bpe::decode(&pieces), all);
    assert_eq!(Bpe::from_merges(bpe.merges().to_vec()), bpe);
    for bad in ["two words", ""] {
        assert!(matches!(
            Bpe::learn([bad], 5),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
