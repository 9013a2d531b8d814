//! A linear-chain conditional random field over K tags (pytorch-crf's `CRF`):
//! start, end and transition scores on top of per-step emissions (a tagger's
//! logits); training minimizes the negative log-likelihood of the gold paths
//! ([`Crf::nll`]) and decoding takes each sequence's best path ([`Crf::decode`],
//! Viterbi). Both run on the GPU, a workgroup per sequence; the gradient comes
//! from the forward-backward marginals. Its state_dict names are pytorch-crf's:
//! `start_transitions` `[K]`, `end_transitions` `[K]`, `transitions` `[K, K]`
//! (from the row's tag to the column's).
//!
//! ```
//! use rnn_wgpu::nn::{Crf, Module};
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let crf = Crf::new(&ctx, 3, 1)?; // 3 tags
//!     // Two sequences of up to 4 steps (the second 2 long), scores per tag.
//!     let scores: Vec<f32> = (0..24).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
//!     let gold = [0, 1, 2, 1, 2, 2, u32::MAX, u32::MAX]; // past a length: anything
//!     let mut tape = Tape::train(&ctx, "crf");
//!     crf.zero_grad(tape.rec())?;
//!     let emissions = tape.from_slice(&[2, 4, 3], &scores)?;
//!     let loss = crf.nll(&mut tape, &emissions, &gold, &[4, 2])?;
//!     tape.backward(&loss)?;
//!     let paths = crf.decode(tape.rec(), &emissions, &[4, 2])?; // u32 [2, 4]
//!     tape.into_recorder().submit();
//!     assert!(loss.to_vec()?[0] > 0.0);
//!     let paths = paths.to_vec_u32()?;
//!     assert!(paths[..6].iter().all(|&t| t < 3));
//!     assert_eq!(paths[6..], [u32::MAX, u32::MAX]);
//!     Ok(())
//! }
//! ```

use super::{Entry, Module, Named, Param, SplitMix};
use crate::error::Result;
use crate::gpu::{Context, Recorder};
use crate::ops::crf::viterbi;
pub use crate::ops::crf::{Chain, NO_TAG};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Crf {
    chain: Chain,
    /// `[K + 2, K]`: start scores, end scores, then the transitions.
    weights: Param,
}

impl Crf {
    /// A CRF over `tags` tags with every transition allowed, its scores
    /// uniform in [−0.1, 0.1] (pytorch-crf's initialization) from `seed`.
    pub fn new(ctx: &Context, tags: usize, seed: u64) -> Result<Self> {
        let chain = Chain::new(tags)?;
        let values = SplitMix::new(seed).uniform((tags + 2) * tags, 0.1);
        let weights = Param::new(Tensor::from_slice(ctx, &[tags + 2, tags], &values)?)?;
        Ok(Self { chain, weights })
    }

    /// The same CRF with the transitions `(from, to)` forbidden (e.g. `I-PER`
    /// after `B-LOC` in BIO tagging): no decoded path takes them, they get no
    /// gradient, and a gold path that takes one is an error. Each tag must keep
    /// an allowed successor.
    pub fn with_forbidden(self, pairs: &[(usize, usize)]) -> Result<Self> {
        Ok(Self {
            chain: self.chain.with_forbidden(pairs)?,
            ..self
        })
    }

    /// The number of tags.
    pub fn tags(&self) -> usize {
        self.chain.tags()
    }

    /// The tags and the transitions allowed.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Records the negative log-likelihood of the gold `tags` (`[B·T]`,
    /// row-major like `emissions` `[B, T, K]`; entries past a sequence's
    /// length are ignored) with each sequence's length (1..=T): `[1]`, summed
    /// over the sequences and divided by the tokens, so that it reads as a
    /// per-token cross-entropy does.
    pub fn nll(
        &self,
        tape: &mut Tape,
        emissions: &Var,
        tags: &[u32],
        lengths: &[usize],
    ) -> Result<Var> {
        let weights = tape.param(&self.weights);
        tape.crf_nll(&self.chain, emissions, &weights, tags, lengths)
    }

    /// Records Viterbi decoding of `emissions` `[B, T, K]` with each sequence's
    /// length (1..=T): u32 `[B, T]`, each sequence's best tag path, [`NO_TAG`]
    /// past its length.
    pub fn decode(
        &self,
        rec: &mut Recorder,
        emissions: &Tensor,
        lengths: &[usize],
    ) -> Result<Tensor> {
        viterbi(rec, &self.chain, emissions, &self.weights.value, lengths)
    }
}

impl Module for Crf {
    fn entries(&self) -> Vec<Entry> {
        let k = self.chain.tags();
        let w = &self.weights.value;
        let part = |name: &str, shape: Vec<usize>, offset| Named {
            name: name.into(),
            shape,
            tensor: w.clone(),
            offset,
        };
        vec![Entry {
            param: self.weights.clone(),
            names: vec![
                part("start_transitions", vec![k], 0),
                part("end_transitions", vec![k], k),
                part("transitions", vec![k, k], 2 * k),
            ],
        }]
    }
}
