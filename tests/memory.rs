//! GPU memory accounting (its own test binary, so no other test allocates meanwhile): the
//! estimate the page shows before training matches what a Trainer allocates.

mod common;

use wgpt::model::{Gpt2, Gpt2Config, Weights};
use wgpt::train::{training_bytes, TrainConfig, Trainer};

#[test]
fn training_bytes_matches_allocations() {
    let Some(k) = common::shared_kernels() else { return };
    for (cfg, b) in [
        (Gpt2Config { n_layer: 2, n_head: 2, n_embd: 64, block_size: 32, vocab_size: 65 }, 8),
        (Gpt2Config { n_layer: 3, n_head: 4, n_embd: 48, block_size: 40, vocab_size: 300 }, 3),
    ] {
        let (_, before) = k.gpu.buffer_stats();
        let model = Gpt2::new(k.clone(), &Weights::random(cfg, 1)).unwrap();
        let train = TrainConfig {
            batch_size: b,
            seq_len: cfg.block_size,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 1,
            lr_decay_iters: 10,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            grad_clip: 1.0,
            dropout: 0.0,
        };
        let trainer = Trainer::new(model, train).unwrap();
        let (_, after) = k.gpu.buffer_stats();
        let actual = after - before;
        let estimate = training_bytes(&cfg, b, cfg.block_size);
        let ratio = estimate as f64 / actual as f64;
        println!("{cfg:?} B={b}: estimate {estimate} bytes, allocated {actual} ({ratio:.3})");
        // the estimate leaves out only small buffers (uniforms, token buckets, step scalars)
        assert!((0.98..=1.0).contains(&ratio), "estimate {estimate} vs allocated {actual}: ratio {ratio:.3}");
        drop(trainer);
    }
}
