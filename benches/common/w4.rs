//! The W4 workload: the BiLSTM tagger's training step (vocab 5000, embeddings 64,
//! 64 units per direction, 9 tags, B = 32, T = 40, Adam). Shared by the native
//! workloads (`workloads.rs`) and the web example's in-browser measurement, so
//! both time the same step.

use rnn_wgpu::data::Batch;
use rnn_wgpu::models::{BiLstmTagger, TaggerConfig};
use rnn_wgpu::nn::Module;
use rnn_wgpu::train::{Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, DType, Result};

pub const VOCAB: u32 = 5000;
pub const TAGS: u32 = 9;
pub const EMB: usize = 64;
pub const HIDDEN: usize = 64;
pub const BATCH: usize = 32;
pub const STEPS: usize = 40;

/// The tagger in `storage` and its Adam optimizer.
pub fn tagger(ctx: &Context, storage: DType) -> Result<(BiLstmTagger, Optimizer)> {
    tagger_with(ctx, storage, false)
}

/// [`tagger`], with a CRF over the tag scores when `crf`.
pub fn tagger_with(ctx: &Context, storage: DType, crf: bool) -> Result<(BiLstmTagger, Optimizer)> {
    let model = BiLstmTagger::new(
        ctx,
        TaggerConfig::new(VOCAB as usize, TAGS as usize)
            .with_emb(EMB)
            .with_hidden(HIDDEN)
            .with_layers(1)
            .with_crf(crf),
        1,
    )?
    .with_storage(storage)?;
    let adam = Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 1e-3), model.params())?;
    Ok((model, adam))
}

/// The step's batch: fixed pseudo-random ids and tags, every sequence full length.
pub fn batch() -> Batch {
    Batch {
        ids: (0..BATCH * STEPS)
            .map(|i| 1 + (i as u32 * 7919) % (VOCAB - 1))
            .collect(),
        targets: (0..BATCH * STEPS).map(|i| (i as u32 * 31) % TAGS).collect(),
        lengths: vec![STEPS; BATCH],
        size: BATCH,
        steps: STEPS,
        chars: None,
    }
}

/// The step's GEMM arithmetic: BiLSTM 64 → 64 per direction and the 128 → 9
/// projection, forward and the two gradient products.
pub fn flops() -> f64 {
    let (tokens, e, h) = (BATCH * STEPS, EMB, HIDDEN);
    3.0 * (2.0 * (tokens * 2 * 4 * h * (e + h)) as f64
        + 2.0 * (tokens * 2 * h) as f64 * f64::from(TAGS))
}

/// What the bench table says of it.
pub fn what() -> String {
    format!(
        "BiLSTM tagger train step B={BATCH} T={STEPS} (vocab {VOCAB}, emb {EMB}, {HIDDEN}/dir, {TAGS} tags, Adam)"
    )
}
