//! Whole models, written forward-only from the layers in [`crate::nn`] on a
//! [`Tape`](crate::tape::Tape): the tape records their backward. Each implements
//! [`TrainStep`](crate::train::TrainStep), so one generic step trains any of them.

pub mod classifier;
pub mod language_model;
pub mod seq2seq;
pub mod tagger;

pub use classifier::{ClassifierConfig, Readout, SequenceClassifier};
pub use language_model::{LanguageModel, LanguageModelConfig, LanguageModelStream};
pub use seq2seq::{DecoderStream, EncoderKind, Ensemble, Hypothesis, Link, Seq2Seq, Seq2SeqConfig};
pub use tagger::{BiLstmTagger, CharConfig, TaggerConfig};
