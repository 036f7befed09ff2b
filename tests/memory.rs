//! GPU memory accounting, in a test binary of its own (the tests here take a lock, so nothing
//! else allocates while one counts): the estimate the page shows before training matches what a
//! Trainer allocates, and a long run does not leak.
#![cfg(not(target_arch = "wasm32"))] // native only: processes, files and /proc

mod common;

use wgpt::kernels::AttentionKind;
use wgpt::model::{Gpt2, Gpt2Config, Weights};
use wgpt::precision::Precision;
use wgpt::train::{training_bytes, training_bytes_for, Optimizer, OptimizerConfig, TrainConfig, Trainer};
use wgpt::weights16::MatmulWeights;

/// Held by each test while it counts buffers.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// In f32 and in f16 (mixed precision, which adds the products' f16 weight copies where the
/// adapter has shader-f16; without it the run trains in f32 and the estimate counts no copies).
#[test]
fn training_bytes_matches_allocations() {
    let _lock = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(k) = common::shared_kernels() else { return };
    if !k.gpu.shader_f16() {
        println!("this adapter has no shader-f16: f16 runs train in f32, and their estimate must count no copies");
    }
    for (cfg, b) in [
        (
            Gpt2Config {
                n_layer: 2,
                n_head: 2,
                n_embd: 64,
                block_size: 32,
                vocab_size: 65,
                arch: wgpt::model::Arch::GPT2,
            },
            8,
        ),
        (
            Gpt2Config {
                n_layer: 3,
                n_head: 4,
                n_embd: 48,
                block_size: 40,
                vocab_size: 300,
                arch: wgpt::model::Arch::GPT2,
            },
            3,
        ),
    ] {
        for kind in [AttentionKind::Classic, AttentionKind::Flash] {
            let mut in_f32 = 0;
            for precision in [Precision::F32, Precision::F16] {
                let (_, before) = k.gpu.buffer_stats();
                let model = Gpt2::new(k.clone(), &Weights::random(cfg, 1)).unwrap();
                let train = TrainConfig {
                    batch_size: b,
                    seq_len: cfg.block_size,
                    lr: 1e-3,
                    min_lr: 1e-4,
                    warmup_iters: 1,
                    lr_decay_iters: 10,
                    attention: Some(kind),
                    precision,
                    ..TrainConfig::default()
                };
                let trainer = Trainer::new(model, train).unwrap();
                let (_, after) = k.gpu.buffer_stats();
                let actual = after - before;
                let f16 = trainer.precision.f16();
                assert_eq!(f16, precision == Precision::F16 && k.gpu.shader_f16(), "{:?}", trainer.precision);
                let estimate = training_bytes(&cfg, b, cfg.block_size, kind, f16);
                let ratio = estimate as f64 / actual as f64;
                println!(
                    "{cfg:?} B={b} {kind:?} {} asked, {} runs: estimate {estimate} bytes, allocated {actual} ({ratio:.3})",
                    precision.name(),
                    trainer.precision.runs.name()
                );
                // the estimate leaves out only small buffers (uniforms, token buckets, step scalars)
                assert!((0.98..=1.0).contains(&ratio), "estimate {estimate} vs allocated {actual}: ratio {ratio:.3}");
                match precision {
                    Precision::F32 => in_f32 = actual,
                    // f16 allocates the copies more than f32 (none where it fell back), and the
                    // uniforms of the programs that fill them and scale the loss
                    _ => {
                        let copies = if f16 { MatmulWeights::f16_bytes(&cfg) } else { 0 };
                        let more = actual - in_f32;
                        println!("  f16 allocates {more} bytes more than f32: {copies} of f16 weight copies");
                        assert!((copies..=copies + 1024).contains(&more), "{more} bytes more, {copies} of copies");
                        assert_eq!(estimate - training_bytes(&cfg, b, cfg.block_size, kind, false), copies);
                    }
                }
                drop(trainer);
            }
        }
    }
}

/// The optimizer's state is in the estimate as it is allocated: SGD keeps one buffer per
/// parameter where AdamW keeps two moments, so an SGD trainer allocates one parameter set's
/// bytes less, exactly, and its estimate (the page's plan too) says so.
#[test]
fn the_estimate_follows_the_optimizers_state() {
    let _lock = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(k) = common::shared_kernels() else { return };
    let cfg =
        Gpt2Config { n_layer: 2, n_head: 2, n_embd: 64, block_size: 32, vocab_size: 65, arch: wgpt::model::Arch::GPT2 };
    let (b, kind) = (4, AttentionKind::Flash);
    let mut allocated = vec![];
    for optimizer in [OptimizerConfig::default(), OptimizerConfig::of(Optimizer::Sgd)] {
        let (_, before) = k.gpu.buffer_stats();
        let model = Gpt2::new(k.clone(), &Weights::random(cfg, 1)).unwrap();
        let train =
            TrainConfig { batch_size: b, seq_len: 32, attention: Some(kind), optimizer, ..TrainConfig::default() };
        let trainer = Trainer::new(model, train).unwrap();
        let actual = k.gpu.buffer_stats().1 - before;
        let estimate = training_bytes_for(&cfg, &optimizer, b, 32, kind, false);
        let ratio = estimate as f64 / actual as f64;
        println!("{}: estimate {estimate} bytes, allocated {actual} ({ratio:.3})", optimizer.kind.name());
        assert!((0.98..=1.0).contains(&ratio), "estimate {estimate} vs allocated {actual}: ratio {ratio:.3}");
        allocated.push((actual, estimate));
        drop(trainer);
    }
    let one_set = 4 * cfg.num_params() as u64;
    assert_eq!(allocated[0].0 - allocated[1].0, one_set, "SGD allocates one parameter set less than AdamW");
    assert_eq!(allocated[0].1 - allocated[1].1, one_set);
    let plan = |o: &OptimizerConfig| {
        wgpt::run::builder::plan(None, &cfg, (b, 32), Precision::F32, o, None).unwrap().memory_bytes
    };
    assert_eq!(plan(&OptimizerConfig::default()) - plan(&OptimizerConfig::of(Optimizer::Sgd)), one_set);
}

/// Flash attention keeps (B, NH, T) per layer where classic keeps (B, NH, T, T), forward and
/// backward's scratch: GPT-2 124M fine-tuning at B 8, T 1024 drops by (L + 1)·B·NH·T·(T − 1)
/// floats (5.2 GB), and no activation left is past a 128 MiB binding but the logits.
#[test]
fn flash_attention_drops_the_matrix() {
    let cfg = Gpt2Config::preset("gpt2").unwrap();
    let (b, t) = (8, 1024);
    let classic = training_bytes(&cfg, b, t, AttentionKind::Classic, false);
    let flash = training_bytes(&cfg, b, t, AttentionKind::Flash, false);
    let matrix = 4 * (cfg.n_layer + 1) * b * cfg.n_head * t * (t - 1);
    println!("GPT-2 124M, B {b}, T {t}: classic {classic} bytes, flash {flash} bytes");
    assert_eq!(classic - flash, matrix as u64);
    // one layer's matrix is 403 MB, past a 128 MiB binding; its logsumexp is 393 KB
    for (kind, fits) in [(AttentionKind::Classic, false), (AttentionKind::Flash, true)] {
        for spec in wgpt::model::ActivationTensors::specs(&cfg, b, t, kind) {
            let (what, bytes) = (spec.what, spec.tensor_bytes() as usize);
            if !what.starts_with("logits") {
                assert!(
                    bytes <= 128 << 20 || !fits && what.starts_with("attention"),
                    "{kind:?}: {what} is {bytes} bytes"
                );
            }
        }
    }
}

/// Resident memory of this process in KiB (Linux), or None elsewhere.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// 2,000 training steps with a loss readback every 10, an evaluation and a sample every 500:
/// after the first evaluation (which records the decoder's programs), the GPU buffer count and
/// bytes (our own counters) stay exactly flat and the process's memory stays within 16 MiB.
#[test]
fn no_leaks_over_2000_steps() {
    let _lock = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(k) = common::shared_kernels() else { return };
    let text = "the quick brown fox jumps over the lazy dog.\n".repeat(60);
    let tokenizer = wgpt::tokenizer::Tokenizer::char_level(&text).unwrap();
    let model = Gpt2Config {
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        block_size: 16,
        vocab_size: tokenizer.vocab_size(),
        arch: wgpt::model::Arch::GPT2,
    };
    let cfg = wgpt::run::RunConfig {
        model,
        train: TrainConfig {
            batch_size: 4,
            seq_len: 16,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 10,
            lr_decay_iters: 2000,
            ..TrainConfig::default()
        },
        max_iters: 2000,
        eval_interval: 500,
        eval_iters: 2,
        log_interval: 10,
        seed: 3,
        data: wgpt::run::DataSource::Text("fox".into()),
        tokenizer: "char".into(),
    };
    let mut run = wgpt::run::Run::new(k.clone(), cfg, &Weights::random(model, 3), tokenizer, &text).unwrap();
    let sample = wgpt::generate::SampleConfig { max_new_tokens: 20, temperature: 1.0, top_k: 0, top_p: 1.0, seed: 1 };
    let mut marks = vec![];
    for step in 1..=2000 {
        run.train_step().unwrap();
        if step % 10 == 0 {
            assert!(pollster::block_on(run.loss()).unwrap().is_finite());
        }
        if step % 500 == 0 {
            pollster::block_on(run.evaluate()).unwrap();
            pollster::block_on(run.sample("the", &sample)).unwrap();
            let (count, bytes) = k.gpu.buffer_stats();
            marks.push((step, count, bytes, rss_kib()));
        }
    }
    println!("(step, buffers, bytes, rss KiB): {marks:?}");
    let (_, count, bytes, rss) = marks[0];
    for &(step, c, b, r) in &marks[1..] {
        assert_eq!((c, b), (count, bytes), "GPU buffers at step {step} differ from step 500");
        if let (Some(r0), Some(r)) = (rss, r) {
            assert!(r <= r0 + 16 * 1024, "process memory grew from {r0} KiB to {r} KiB by step {step}");
        }
    }
}
