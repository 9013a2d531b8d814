//! Past one GPU: a tagger trained here goes on training under PyTorch's
//! DistributedDataParallel and comes back, checked both ways.
//!
//! `export DIR` trains a two-layer BiLSTM tagger on a small generated task and
//! writes `DIR/model.safetensors` (PyTorch's names, the configuration in the
//! metadata) and the batch, `DIR/batch.safetensors`. `tools/ddp.py DIR`, run by
//! `torchrun`, loads it into the equal `torch.nn` model, trains it under
//! DistributedDataParallel and writes `DIR/trained.safetensors` with its logits
//! for the batch. `import DIR` loads that file and checks that this library's
//! logits for the batch are PyTorch's. `tools/ddp_check` runs the three.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use rnn_wgpu::data::{Batch, Vocab};
use rnn_wgpu::models::{BiLstmTagger, TaggerConfig};
use rnn_wgpu::nn::{Module, SplitMix, StateDict};
use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
use rnn_wgpu::{Context, Tape};

/// `export DIR` or `import DIR`.
#[derive(Parser, Debug)]
#[command(about = "A tagger trained here, on under PyTorch's DDP, and back")]
struct Args {
    /// `export` (train here and write the model) or `import` (read PyTorch's).
    #[arg(value_parser = ["export", "import"])]
    step: String,
    dir: PathBuf,
}

type Failure = Box<dyn std::error::Error>;

/// The configuration, as the metadata carries it.
const CONFIG: [(&str, usize); 6] = [
    ("vocab", 40),
    ("emb", 16),
    ("hidden", 12),
    ("layers", 2),
    ("tags", 6),
    ("pad", 0),
];

fn tagger(ctx: &Context, cfg: &HashMap<String, usize>) -> rnn_wgpu::Result<BiLstmTagger> {
    let c = |k: &str| cfg.get(k).copied().unwrap_or(0);
    let config = TaggerConfig::new(c("vocab"), c("tags"))
        .with_emb(c("emb"))
        .with_hidden(c("hidden"))
        .with_layers(c("layers"))
        .with_pad(c("pad") as u32);
    BiLstmTagger::new(ctx, config, 1)
}

/// Sixteen sentences whose tags depend on the word and the one before it.
fn task() -> rnn_wgpu::Result<Batch> {
    let mut rng = SplitMix::new(7);
    let sents: Vec<(Vec<u32>, Vec<u32>)> = (0..16)
        .map(|_| {
            let n = 2 + (rng.next_u64() % 11) as usize;
            let ids: Vec<u32> = (0..n).map(|_| 2 + (rng.next_u64() % 38) as u32).collect();
            let tags = (0..n).map(|i| (ids[i] + ids[i.max(1) - 1]) % 6).collect();
            (ids, tags)
        })
        .collect();
    let refs: Vec<(&[u32], &[u32])> = sents.iter().map(|(a, b)| (&a[..], &b[..])).collect();
    Batch::pad(&refs, Vocab::PAD)
}

fn export(ctx: &Context, dir: &Path) -> Result<(), Failure> {
    let cfg = CONFIG.iter().map(|&(k, v)| (k.to_string(), v)).collect();
    let model = tagger(ctx, &cfg)?;
    let batch = task()?;
    let mut opt = Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 1e-2), model.params())?;
    for step in 1..=30 {
        let loss = model.train_step(ctx, &batch, &mut opt)?.loss;
        if step % 10 == 0 {
            println!("here, step {step}: loss {loss:.4}");
        }
    }
    let mut sd = StateDict::read(&model.named_params())?;
    sd.metadata = cfg
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    sd.save(&dir.join("model.safetensors"))?;
    // f32 holds these small ids exactly; -1 marks padding for PyTorch.
    let as_f32 = |v: &[u32]| -> Vec<f32> {
        v.iter()
            .map(|&x| if x == Batch::IGNORE { -1.0 } else { x as f32 })
            .collect()
    };
    let (b, t) = (batch.size, batch.steps);
    let mut io = StateDict::default();
    io.tensors
        .insert("ids".into(), (vec![b, t], as_f32(&batch.ids)));
    io.tensors
        .insert("targets".into(), (vec![b, t], as_f32(&batch.targets)));
    let lengths: Vec<u32> = batch.lengths.iter().map(|&n| n as u32).collect();
    io.tensors
        .insert("lengths".into(), (vec![b], as_f32(&lengths)));
    io.save(&dir.join("batch.safetensors"))?;
    println!("wrote {}", dir.join("model.safetensors").display());
    Ok(())
}

fn import(ctx: &Context, dir: &Path) -> Result<(), Failure> {
    let ours = StateDict::load(&dir.join("model.safetensors"))?;
    let cfg = ours
        .metadata
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.parse()?)))
        .collect::<Result<HashMap<String, usize>, Failure>>()?;
    let model = tagger(ctx, &cfg)?;
    let trained = StateDict::load(&dir.join("trained.safetensors"))?;
    trained.apply(&model.named_params(), "trained.safetensors")?;
    let moved = trained
        .tensors
        .iter()
        .flat_map(|(k, (_, v))| v.iter().zip(&ours.tensors[k].1).map(|(a, b)| (a - b).abs()))
        .fold(0f32, f32::max);
    let io = StateDict::load(&dir.join("trained_io.safetensors"))?;
    let mut tape = Tape::eval(ctx, "logits");
    let logits = model.forward(&mut tape, &task()?)?;
    tape.into_recorder().submit();
    let (shape, want) = &io.tensors["logits"];
    let got = logits.to_vec()?;
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0f32, f32::max);
    println!("PyTorch's training moved the weights by up to {moved:.4}; logits {shape:?} within {worst:.2e} of PyTorch's");
    if logits.shape() != &shape[..] || worst > 1e-4 || moved < 1e-3 {
        return Err("the model PyTorch trained does not give PyTorch's logits here".into());
    }
    Ok(())
}

fn main() -> Result<(), Failure> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let ctx = Context::new()?;
    match args.step.as_str() {
        "export" => export(&ctx, &args.dir),
        _ => import(&ctx, &args.dir),
    }
}
