//! Every config and options struct is built from its constructor (or
//! `Default`) plus `with_*` overrides, the only way a caller outside the crate
//! can build one now that they are `#[non_exhaustive]`: a field added later
//! comes with a default and breaks no caller. Each override lands in its own
//! field, and the models accept what the builders give.

mod common;

use common::ctx;
use rnn_wgpu::models::{
    BiLstmTagger, CharConfig, ClassifierConfig, EncoderKind, LanguageModel, LanguageModelConfig,
    Link, Readout, Seq2Seq, Seq2SeqConfig, SequenceClassifier, TaggerConfig,
};
use rnn_wgpu::nn::recurrent::{Config, Mode, Recurrent};
use rnn_wgpu::nn::{Cell, Gru, Score};
use rnn_wgpu::train::{Clock, FitConfig, Goal, Method, OptimConfig, Optimizer, Schedule};
use rnn_wgpu::ContextOptions;

#[test]
fn model_configs_build_from_their_constructors_and_overrides() {
    let ctx = ctx();
    let chars = CharConfig::new(30).with_emb(5).with_hidden(7);
    assert_eq!((chars.chars, chars.emb, chars.hidden), (30, 5, 7));
    let tagger = TaggerConfig::new(40, 6)
        .with_emb(9)
        .with_hidden(11)
        .with_layers(1)
        .with_pad(3)
        .with_chars(Some(chars));
    assert_eq!(
        (
            tagger.vocab,
            tagger.tags,
            tagger.emb,
            tagger.hidden,
            tagger.layers,
            tagger.pad
        ),
        (40, 6, 9, 11, 1, 3)
    );
    assert_eq!(tagger.chars, Some(chars));
    BiLstmTagger::new(ctx, tagger, 1).unwrap();
    BiLstmTagger::new(ctx, TaggerConfig::new(40, 6), 1).unwrap();

    let lm = LanguageModelConfig::new(12)
        .with_emb(4)
        .with_hidden(5)
        .with_layers(3)
        .with_mode(Mode::Gru);
    assert_eq!(
        (lm.vocab, lm.emb, lm.hidden, lm.layers, lm.cell),
        (12, 4, 5, 3, Cell::Recurrent(Mode::Gru))
    );
    LanguageModel::new(ctx, lm, 1).unwrap();
    let min = LanguageModelConfig::new(12).with_cell(Cell::MinLstm);
    assert_eq!(min.cell, Cell::MinLstm);
    LanguageModel::new(ctx, min, 1).unwrap();
    LanguageModel::new(ctx, LanguageModelConfig::new(12), 1).unwrap();

    let rnn = Config::new(8, 6)
        .with_layers(2)
        .with_bidirectional(true)
        .with_input_size(9);
    assert_eq!(
        (
            rnn.input_size,
            rnn.hidden_size,
            rnn.num_layers,
            rnn.bidirectional
        ),
        (9, 6, 2, true)
    );
    assert_eq!(
        Recurrent::new(ctx, Mode::Lstm, rnn, 1).unwrap().mode(),
        Mode::Lstm
    );
    let classifier = ClassifierConfig::new(20, 3, Mode::Gru, rnn)
        .with_emb(7)
        .with_pad(2)
        .with_readout(Readout::Mean);
    assert_eq!(
        (
            classifier.vocab,
            classifier.classes,
            classifier.emb,
            classifier.pad
        ),
        (20, 3, 7, 2)
    );
    assert_eq!(
        (classifier.rnn, classifier.readout, classifier.cell),
        (rnn, Readout::Mean, Cell::Recurrent(Mode::Gru))
    );
    SequenceClassifier::new(ctx, classifier, 1).unwrap();

    let sizes = Config::new(4, 5).with_layers(2).with_bidirectional(true);
    assert_eq!(
        (
            sizes.input_size,
            sizes.hidden_size,
            sizes.num_layers,
            sizes.bidirectional
        ),
        (4, 5, 2, true)
    );
    Gru::new(ctx, sizes, 1).unwrap();

    let link = Link::Luong {
        score: Score::General,
        input_feeding: true,
    };
    let s2s = Seq2SeqConfig::new(15, 16, 1, 2)
        .with_emb(8)
        .with_hidden(6)
        .with_layers(2)
        .with_bidirectional(false)
        .with_encoder(EncoderKind::Lstm)
        .with_link(link)
        .with_pad(3)
        .with_bos(4)
        .with_eos(5);
    assert_eq!(
        (
            s2s.src_vocab,
            s2s.tgt_vocab,
            s2s.emb,
            s2s.hidden,
            s2s.layers
        ),
        (15, 16, 8, 6, 2)
    );
    assert_eq!(
        (
            s2s.bidirectional,
            s2s.encoder,
            s2s.link,
            s2s.pad,
            s2s.bos,
            s2s.eos
        ),
        (false, EncoderKind::Lstm, link, 3, 4, 5)
    );
    Seq2Seq::new(ctx, s2s, 1).unwrap();
    Seq2Seq::new(ctx, Seq2SeqConfig::new(15, 16, 1, 2), 1).unwrap();
}

#[test]
fn optimizer_fit_and_context_options_build_from_defaults_and_overrides() {
    let schedule = Schedule::Cosine {
        total: 100,
        min_lr: 1e-5,
    };
    let cfg = OptimConfig::new(Method::ADAMW, 1e-3)
        .with_lr(2e-3)
        .with_weight_decay(0.01)
        .with_max_norm(Some(5.0))
        .with_clip_value(Some(1.0))
        .with_schedule(schedule)
        .with_warmup(10);
    assert_eq!(
        (
            cfg.method,
            cfg.lr,
            cfg.weight_decay,
            cfg.max_norm,
            cfg.clip_value
        ),
        (Method::ADAMW, 2e-3, 0.01, Some(5.0), Some(1.0))
    );
    assert_eq!((cfg.schedule, cfg.warmup), (schedule, 10));
    let ctx = ctx();
    let param = rnn_wgpu::nn::Param::new(rnn_wgpu::Tensor::zeros(ctx, &[3]).unwrap()).unwrap();
    Optimizer::new(ctx, cfg, vec![param]).unwrap();

    let opts = ContextOptions::default()
        .with_backends(Some(wgpu::Backends::VULKAN))
        .with_power_preference(wgpu::PowerPreference::LowPower)
        .with_label("configs")
        .with_gemm_packed(Some(true))
        .with_gemm_subgroups(Some(false))
        .with_fused_steps(Some(false))
        .with_persistent_steps(Some(false))
        .with_limits(Some(wgpu::Limits::default()))
        .with_pipeline_cache(false);
    assert_eq!(opts.backends, Some(wgpu::Backends::VULKAN));
    assert_eq!(opts.power_preference, wgpu::PowerPreference::LowPower);
    assert_eq!(opts.label, "configs");
    assert_eq!(
        (
            opts.gemm_packed,
            opts.gemm_subgroups,
            opts.fused_steps,
            opts.persistent_steps
        ),
        (Some(true), Some(false), Some(false), Some(false))
    );
    assert_eq!(opts.limits, Some(wgpu::Limits::default()));
    assert!(!opts.pipeline_cache);
    let defaults = ContextOptions::default();
    assert_eq!(
        (defaults.backends, defaults.gemm_packed, defaults.limits),
        (None, None, None)
    );
    assert!(defaults.pipeline_cache);

    let path = std::path::PathBuf::from("runs/x.safetensors");
    let fit = FitConfig::new(7)
        .with_minutes(Some(3.0))
        .with_max_steps(Some(90))
        .with_checkpoint(Some(path.clone()))
        .with_every(Some(10))
        .with_resume(true)
        .with_goal(Goal::Lower)
        .with_clock(Clock::Training)
        .with_eval_minutes(Some(0.5))
        .with_cycles(Some(2));
    assert_eq!(
        (
            fit.epochs,
            fit.minutes,
            fit.max_steps,
            fit.checkpoint,
            fit.every
        ),
        (7, Some(3.0), Some(90), Some(path), Some(10))
    );
    assert!(fit.resume);
    assert_eq!(
        (fit.goal, fit.clock, fit.eval_minutes, fit.cycles),
        (Goal::Lower, Clock::Training, Some(0.5), Some(2))
    );
    let plain = FitConfig::new(1);
    assert_eq!(
        (plain.clock, plain.eval_minutes, plain.cycles, plain.minutes),
        (Clock::Run, None, None, None)
    );
}
