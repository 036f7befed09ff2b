//! The small run the run-level tests share: a pangram corpus a tiny model learns within a few
//! dozen steps, a 2-layer character model over it, and scratch folders for the CLI's runs.

use std::path::PathBuf;
use std::sync::Arc;

use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2Config, Weights};
use wgpt::run::{DataSource, Run, RunConfig};
use wgpt::tokenizer::Tokenizer;
use wgpt::train::TrainConfig;

/// A corpus a tiny model learns within a few dozen steps (30 distinct characters).
pub fn pangrams() -> String {
    "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs!\n".repeat(40)
}

/// A fresh folder wgpt-{name}-test-{pid} in the temp dir and the path of the pangram corpus
/// written into it.
pub fn scratch_with_corpus(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("wgpt-{name}-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, pangrams()).unwrap();
    (dir, corpus)
}

/// The training settings the run tests start from: accumulation, warmup, decay and clipping all
/// active within 20 steps.
pub fn tiny_train() -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        seq_len: 16,
        grad_accum: 2,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_iters: 3,
        lr_decay_iters: 20,
        ..TrainConfig::default()
    }
}

/// A 2-layer character model of the pangrams under `train`: 20 steps, evaluated at 10 and 20.
pub fn tiny_run_config(train: TrainConfig) -> RunConfig {
    RunConfig {
        model: Gpt2Config {
            n_layer: 2,
            n_head: 2,
            n_embd: 32,
            block_size: 16,
            vocab_size: 30,
            arch: wgpt::model::Arch::GPT2,
        },
        train,
        max_iters: 20,
        eval_interval: 10,
        eval_iters: 2,
        log_interval: 1,
        seed: 7,
        data: DataSource::Text("pangrams".into()),
        tokenizer: "char".into(),
    }
}

/// A run of `cfg` over the pangrams from `weights`.
pub fn pangram_run(k: &Arc<Kernels>, cfg: RunConfig, weights: &Weights) -> Run {
    let text = pangrams();
    let tok = Tokenizer::char_level(&text).unwrap();
    assert_eq!(tok.vocab_size(), cfg.model.vocab_size);
    Run::new(k.clone(), cfg, weights, tok, &text).unwrap()
}

/// The adapters of a run directory's training state, by name.
pub fn saved_adapters(dir: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join(wgpt::checkpoint::STATE_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().filter(|n| n.starts_with("lora.")).map(String::from).collect();
    names.sort();
    let read = |n: &str| {
        let data = st.tensor(n).unwrap().data().to_vec();
        data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect::<Vec<f32>>()
    };
    names.into_iter().map(|n| (n.clone(), read(&n))).collect()
}
