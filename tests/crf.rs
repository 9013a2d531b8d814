//! The linear-chain CRF against f64 references on the host: its partition
//! function by brute force over every tag path (small K and T) and by the
//! forward algorithm (K past one workgroup's 64 lanes), its gradients against
//! central differences, Viterbi against brute force and an f64 Viterbi,
//! forbidden transitions, lengths of 1, and bad input.

mod common;

use common::ctx;
use rnn_wgpu::nn::{Crf, Module, SplitMix};
use rnn_wgpu::ops::crf::{self, Chain, NO_TAG};
use rnn_wgpu::tape::GradCheck;
use rnn_wgpu::{Error, Tape, Tensor, Var};

/// A batch of emissions, weights and gold paths, in f64.
struct Problem {
    b: usize,
    t: usize,
    k: usize,
    /// `[B, T, K]`
    em: Vec<f64>,
    /// `[K + 2, K]`: start, end, transitions.
    w: Vec<f64>,
    /// `[B·T]`, `NO_TAG` past each length.
    tags: Vec<u32>,
    lengths: Vec<usize>,
    forbidden: Vec<(usize, usize)>,
}

impl Problem {
    /// Random scores (emissions of spread 2, weights of spread 1) and gold
    /// paths drawn on allowed transitions.
    fn new(seed: u64, k: usize, t: usize, lengths: &[usize], forbidden: &[(usize, usize)]) -> Self {
        let b = lengths.len();
        let mut rng = SplitMix::new(seed);
        let em = rng
            .normal(b * t * k)
            .iter()
            .map(|&v| 2.0 * f64::from(v))
            .collect();
        let w = rng
            .normal((k + 2) * k)
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let mut p = Self {
            b,
            t,
            k,
            em,
            w,
            tags: vec![NO_TAG; b * t],
            lengths: lengths.to_vec(),
            forbidden: forbidden.to_vec(),
        };
        for (s, &len) in lengths.iter().enumerate() {
            let mut y = (rng.next_u64() % k as u64) as usize;
            for step in 0..len {
                if step > 0 {
                    let next: Vec<usize> = (0..k).filter(|&j| p.allowed(y, j)).collect();
                    y = next[(rng.next_u64() % next.len() as u64) as usize];
                }
                p.tags[s * t + step] = y as u32;
            }
        }
        p
    }

    fn allowed(&self, i: usize, j: usize) -> bool {
        !self.forbidden.contains(&(i, j))
    }

    fn chain(&self) -> Chain {
        Chain::new(self.k)
            .unwrap()
            .with_forbidden(&self.forbidden)
            .unwrap()
    }

    fn emissions(&self) -> Tensor {
        Tensor::from_slice(ctx(), &[self.b, self.t, self.k], &f32s(&self.em)).unwrap()
    }

    fn weights(&self) -> Tensor {
        Tensor::from_slice(ctx(), &[self.k + 2, self.k], &f32s(&self.w)).unwrap()
    }

    /// The reference over the problem's own scores.
    fn scores(&self) -> Scores<'_> {
        Scores {
            p: self,
            em: &self.em,
            w: &self.w,
        }
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The reference's view of the scores: emissions and weights by value.
struct Scores<'a> {
    p: &'a Problem,
    em: &'a [f64],
    w: &'a [f64],
}

impl Scores<'_> {
    fn e(&self, s: usize, t: usize, j: usize) -> f64 {
        self.em[(s * self.p.t + t) * self.p.k + j]
    }

    fn trans(&self, i: usize, j: usize) -> f64 {
        self.w[(2 + i) * self.p.k + j]
    }

    /// The score of `path` for sequence `s`; `None` on a forbidden transition.
    fn score(&self, s: usize, path: &[usize]) -> Option<f64> {
        let k = self.p.k;
        let mut total = self.w[path[0]] + self.e(s, 0, path[0]);
        for t in 1..path.len() {
            if !self.p.allowed(path[t - 1], path[t]) {
                return None;
            }
            total += self.trans(path[t - 1], path[t]) + self.e(s, t, path[t]);
        }
        Some(total + self.w[k + path[path.len() - 1]])
    }

    /// Every tag path of sequence `s` with its score (allowed paths only).
    fn all_paths(&self, s: usize) -> Vec<(Vec<usize>, f64)> {
        let (k, len) = (self.p.k, self.p.lengths[s]);
        (0..k.pow(len as u32))
            .filter_map(|mut code| {
                let mut path = vec![0; len];
                for slot in path.iter_mut().rev() {
                    *slot = code % k;
                    code /= k;
                }
                self.score(s, &path).map(|score| (path, score))
            })
            .collect()
    }

    fn brute_log_z(&self, s: usize) -> f64 {
        log_sum_exp(self.all_paths(s).iter().map(|(_, v)| *v))
    }

    fn forward_log_z(&self, s: usize) -> f64 {
        let k = self.p.k;
        let mut alpha: Vec<f64> = (0..k).map(|j| self.w[j] + self.e(s, 0, j)).collect();
        for t in 1..self.p.lengths[s] {
            alpha = (0..k)
                .map(|j| {
                    let into = (0..k)
                        .filter(|&i| self.p.allowed(i, j))
                        .map(|i| alpha[i] + self.trans(i, j));
                    self.e(s, t, j) + log_sum_exp(into)
                })
                .collect();
        }
        log_sum_exp((0..k).map(|j| alpha[j] + self.w[k + j]))
    }

    /// The loss as the op defines it: Σ_s (log Z_s − score(gold_s)) / Σ_s L_s.
    fn nll(&self, log_z: impl Fn(usize) -> f64) -> f64 {
        let mut sum = 0.0;
        for s in 0..self.p.b {
            let len = self.p.lengths[s];
            let gold: Vec<usize> = (0..len)
                .map(|t| self.p.tags[s * self.p.t + t] as usize)
                .collect();
            sum += log_z(s) - self.score(s, &gold).expect("gold paths are allowed");
        }
        sum / self.p.lengths.iter().sum::<usize>() as f64
    }

    fn viterbi(&self, s: usize) -> Vec<usize> {
        let k = self.p.k;
        let mut delta: Vec<f64> = (0..k).map(|j| self.w[j] + self.e(s, 0, j)).collect();
        let mut back = vec![];
        for t in 1..self.p.lengths[s] {
            let (next, from): (Vec<f64>, Vec<usize>) = (0..k)
                .map(|j| {
                    let (i, v) = (0..k)
                        .filter(|&i| self.p.allowed(i, j))
                        .map(|i| (i, delta[i] + self.trans(i, j)))
                        .fold((0, f64::NEG_INFINITY), |a, c| if c.1 > a.1 { c } else { a });
                    (self.e(s, t, j) + v, i)
                })
                .unzip();
            delta = next;
            back.push(from);
        }
        let mut y = (0..k)
            .max_by(|&a, &b| (delta[a] + self.w[k + a]).total_cmp(&(delta[b] + self.w[k + b])))
            .unwrap();
        let mut path = vec![y];
        for from in back.iter().rev() {
            y = from[y];
            path.push(y);
        }
        path.reverse();
        path
    }
}

fn log_sum_exp(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The op's loss of `p`, read back.
fn gpu_nll(p: &Problem) -> f64 {
    let mut tape = Tape::eval(ctx(), "crf");
    let em = Var::constant(p.emissions());
    let w = Var::constant(p.weights());
    let loss = tape
        .crf_nll(&p.chain(), &em, &w, &p.tags, &p.lengths)
        .unwrap();
    tape.into_recorder().submit();
    f64::from(loss.to_vec().unwrap()[0])
}

/// The op's Viterbi paths of `p`, read back.
fn gpu_viterbi(p: &Problem) -> Vec<u32> {
    let mut tape = Tape::eval(ctx(), "viterbi");
    let paths = crf::viterbi(
        tape.rec(),
        &p.chain(),
        &p.emissions(),
        &p.weights(),
        &p.lengths,
    )
    .unwrap();
    tape.into_recorder().submit();
    paths.to_vec_u32().unwrap()
}

fn close(got: f64, want: f64, what: &str) {
    let err = (got - want).abs() / want.abs().max(1.0);
    assert!(
        err < 2e-6,
        "{what}: {got} but the reference says {want} (error {err:.2e})"
    );
}

/// A small chain: (K, T, lengths, forbidden transitions).
type Small = (usize, usize, Vec<usize>, Vec<(usize, usize)>);

fn small() -> Vec<Small> {
    vec![
        (3, 5, vec![5, 1, 3], vec![]),
        (4, 4, vec![2, 4], vec![]),
        (1, 6, vec![6, 2], vec![]),
        (2, 7, vec![7], vec![]),
        (3, 5, vec![5, 4, 1], vec![(0, 2), (2, 2), (1, 0)]),
        (4, 4, vec![4, 3], vec![(3, 0), (3, 1), (3, 2)]),
    ]
}

#[test]
fn the_partition_function_is_the_sum_over_every_path() {
    for (case, (k, t, lengths, forbidden)) in small().into_iter().enumerate() {
        let p = Problem::new(case as u64, k, t, &lengths, &forbidden);
        let r = p.scores();
        for s in 0..p.b {
            // The two references agree before either judges the kernels.
            close(
                r.forward_log_z(s),
                r.brute_log_z(s),
                "forward algorithm vs brute force",
            );
        }
        close(
            gpu_nll(&p),
            r.nll(|s| r.brute_log_z(s)),
            &format!("case {case}"),
        );
    }
}

#[test]
fn long_chains_and_more_tags_than_lanes_match_the_forward_algorithm() {
    for (seed, k, t, lengths) in [
        (10, 70, 40, vec![40, 1, 17]),
        (11, 17, 60, vec![60, 33, 2, 59, 1]),
        (12, 130, 9, vec![9, 4]),
    ] {
        let p = Problem::new(seed, k, t, &lengths, &[]);
        let r = p.scores();
        close(
            gpu_nll(&p),
            r.nll(|s| r.forward_log_z(s)),
            &format!("K {k}, T {t}"),
        );
    }
}

/// The op's gradients with respect to the emissions and the weights against
/// central differences of the f64 forward algorithm.
fn check_gradients(p: &Problem) {
    let chain = p.chain();
    let (em, w) = (p.emissions(), p.weights());
    let report = GradCheck::against_reference()
        .run_with_reference(
            ctx(),
            &[&em, &w],
            |tape, x| tape.crf_nll(&chain, &x[0], &x[1], &p.tags, &p.lengths),
            |v| {
                let r = Scores {
                    p,
                    em: &v[0],
                    w: &v[1],
                };
                vec![r.nll(|s| r.forward_log_z(s))]
            },
        )
        .unwrap();
    assert!(report.passed(), "K {}, T {}: {report}", p.k, p.t);
}

#[test]
fn gradients_match_central_differences() {
    check_gradients(&Problem::new(20, 4, 5, &[5, 2, 1], &[]));
    check_gradients(&Problem::new(21, 3, 6, &[6, 4], &[(0, 1), (2, 2)]));
    check_gradients(&Problem::new(22, 1, 3, &[3, 1], &[]));
    // Lanes that hold two tags each, in the backward as in the forward.
    check_gradients(&Problem::new(23, 66, 3, &[3, 2], &[]));
}

#[test]
fn viterbi_finds_the_best_path() {
    for (case, (k, t, lengths, forbidden)) in small().into_iter().enumerate() {
        let p = Problem::new(100 + case as u64, k, t, &lengths, &forbidden);
        let r = p.scores();
        let got = gpu_viterbi(&p);
        for s in 0..p.b {
            let (best, _) = r
                .all_paths(s)
                .into_iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let len = p.lengths[s];
            let row: Vec<usize> = got[s * t..s * t + len]
                .iter()
                .map(|&y| y as usize)
                .collect();
            assert_eq!(row, best, "case {case}, sequence {s}");
            assert!(got[s * t + len..(s + 1) * t].iter().all(|&y| y == NO_TAG));
        }
    }
    for (seed, k, t, lengths) in [(110, 70, 30, vec![30, 1, 12]), (111, 17, 50, vec![50, 7])] {
        let p = Problem::new(seed, k, t, &lengths, &[]);
        let r = p.scores();
        let got = gpu_viterbi(&p);
        for s in 0..p.b {
            let want: Vec<u32> = r.viterbi(s).into_iter().map(|y| y as u32).collect();
            assert_eq!(got[s * t..s * t + lengths[s]], want, "K {k}, sequence {s}");
        }
    }
}

#[test]
fn the_layer_names_its_scores_as_pytorch_crf_and_trains_them() {
    let crf = Crf::new(ctx(), 3, 7).unwrap();
    let names: Vec<(String, Vec<usize>)> = crf
        .named_params()
        .into_iter()
        .map(|n| (n.name, n.shape))
        .collect();
    assert_eq!(
        names,
        [
            ("start_transitions".to_string(), vec![3]),
            ("end_transitions".to_string(), vec![3]),
            ("transitions".to_string(), vec![3, 3]),
        ]
    );
    // The gradient reaches the layer's one parameter, and the weights' part
    // of it is the op's.
    let p = Problem::new(30, 3, 4, &[4, 2], &[]);
    let values: Vec<f32> = crf.params()[0].value.to_vec().unwrap();
    let p = Problem {
        w: values.iter().map(|&v| f64::from(v)).collect(),
        ..p
    };
    let mut tape = Tape::train(ctx(), "crf layer");
    crf.zero_grad(tape.rec()).unwrap();
    let em = Var::constant(p.emissions());
    let loss = crf.nll(&mut tape, &em, &p.tags, &p.lengths).unwrap();
    tape.backward(&loss).unwrap();
    tape.into_recorder().submit();
    let r = p.scores();
    close(
        f64::from(loss.to_vec().unwrap()[0]),
        r.nll(|s| r.brute_log_z(s)),
        "layer",
    );
    let grad = crf.params()[0].grad.to_vec().unwrap();
    let eps = 1e-6;
    for (i, &g) in grad.iter().enumerate() {
        let moved = |d: f64| {
            let mut w = p.w.clone();
            w[i] += d;
            let r = Scores {
                p: &p,
                em: &p.em,
                w: &w,
            };
            r.nll(|s| r.brute_log_z(s))
        };
        let want = (moved(eps) - moved(-eps)) / (2.0 * eps);
        assert!(
            (f64::from(g) - want).abs() < 1e-5,
            "weight {i}: {g} vs {want}"
        );
    }
}

#[test]
fn bad_input_is_refused_with_a_typed_error() {
    let p = Problem::new(40, 3, 4, &[4, 2], &[]);
    let chain = p.chain();
    let (em, w) = (Var::constant(p.emissions()), Var::constant(p.weights()));
    let mut tape = Tape::eval(ctx(), "bad crf");
    let mut nll = |tags: &[u32], lengths: &[usize]| tape.crf_nll(&chain, &em, &w, tags, lengths);
    let mut tags = p.tags.clone();
    tags[1] = 3;
    assert!(matches!(
        nll(&tags, &p.lengths),
        Err(Error::IndexOutOfRange {
            what: "gold tag",
            index: 1,
            value: 3,
            bound: 3,
            ..
        })
    ));
    // Past a length anything goes; inside it the tag must exist.
    let mut tags = p.tags.clone();
    tags[6] = 99;
    assert!(nll(&tags, &p.lengths).is_ok());
    assert!(matches!(
        nll(&p.tags, &[4, 0]),
        Err(Error::LengthOutOfRange {
            index: 1,
            value: 0,
            ..
        })
    ));
    assert!(matches!(
        nll(&p.tags, &[5, 2]),
        Err(Error::LengthOutOfRange {
            index: 0,
            value: 5,
            max: 4,
            ..
        })
    ));
    assert!(matches!(
        nll(&p.tags, &[4]),
        Err(Error::ShapeMismatch {
            what: "lengths",
            ..
        })
    ));
    assert!(matches!(
        nll(&p.tags[..7], &p.lengths),
        Err(Error::ShapeMismatch { what: "tags", .. })
    ));
    let forbidding = Chain::new(3)
        .unwrap()
        .with_forbidden(&[(p.tags[0] as usize, p.tags[1] as usize)]);
    let mut tape = Tape::eval(ctx(), "bad crf");
    assert!(matches!(
        tape.crf_nll(&forbidding.unwrap(), &em, &w, &p.tags, &p.lengths),
        Err(Error::InvalidArgument {
            op: "crf",
            what: "gold tags",
            ..
        })
    ));
    let flat = Var::constant(Tensor::from_slice(ctx(), &[8, 3], &[0.0; 24]).unwrap());
    assert!(matches!(
        tape.crf_nll(&chain, &flat, &w, &p.tags, &p.lengths),
        Err(Error::ShapeMismatch {
            what: "emissions",
            ..
        })
    ));
    let wrong_k = Var::constant(Tensor::from_slice(ctx(), &[2, 4, 4], &[0.0; 32]).unwrap());
    assert!(matches!(
        tape.crf_nll(&chain, &wrong_k, &w, &p.tags, &p.lengths),
        Err(Error::ShapeMismatch {
            what: "emissions",
            ..
        })
    ));
    let empty = Var::constant(Tensor::zeros(ctx(), &[0, 4, 3]).unwrap());
    assert!(matches!(
        tape.crf_nll(&chain, &empty, &w, &[], &[]),
        Err(Error::Empty { op: "crf", .. })
    ));
    let short_w = Var::constant(Tensor::zeros(ctx(), &[3, 3]).unwrap());
    assert!(matches!(
        tape.crf_nll(&chain, &em, &short_w, &p.tags, &p.lengths),
        Err(Error::ShapeMismatch {
            what: "weights (start, end, transitions)",
            ..
        })
    ));
    assert!(matches!(
        crf::viterbi(tape.rec(), &chain, &em, &w, &[0, 2]),
        Err(Error::LengthOutOfRange { .. })
    ));
    assert!(matches!(
        Chain::new(0),
        Err(Error::Empty { what: "tags", .. })
    ));
    assert!(matches!(
        Chain::new(3).unwrap().with_forbidden(&[(0, 3)]),
        Err(Error::IndexOutOfRange {
            value: 3,
            bound: 3,
            ..
        })
    ));
    assert!(matches!(
        Chain::new(2).unwrap().with_forbidden(&[(1, 0), (1, 1)]),
        Err(Error::InvalidArgument {
            what: "forbidden transitions",
            ..
        })
    ));
    assert!(matches!(
        Crf::new(ctx(), 0, 1),
        Err(Error::Empty { op: "crf", .. })
    ));
}
