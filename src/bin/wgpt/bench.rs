//! `wgpt bench`: wall-clock timings of whole workloads on random weights of a preset's shapes.

use std::process::ExitCode;
use std::time::Instant;

use wgpt::generate::{sample, Decoder, SampleConfig};
use wgpt::model::{Gpt2, Gpt2Config, Weights, PRESETS};
use wgpt::rng::Rng;
use wgpt::train::{TrainConfig, Trainer};
use wgpt::{Error, Result};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Workload {
    /// The forward pass with the loss over (B, T).
    Forward,
    /// KV-cache generation: prefill of --prompt-len tokens, greedy and top-k decode tokens/s
    /// after a short prompt, and cached vs uncached time per token at a context of --context.
    Decode,
    /// One training step over (B, T): forward, backward, clipping and AdamW, the median of
    /// --iters steps after one warm-up (GPT-2 fine-tuning: --preset gpt2 --batch-size 1 --seq 128).
    Finetune,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "forward")]
    workload: Workload,
    /// Model preset: gpt2, shakespeare-char or baby.
    #[arg(long, default_value = "shakespeare-char")]
    preset: String,
    /// Batch size B (forward, finetune).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Sequence length T (forward, finetune; at most the preset's block_size).
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Timed iterations (forward, after 2 warm-up runs; decode: tokens per decode timing;
    /// finetune: training steps after 1 warm-up step).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Decode: the prompt length whose prefill is timed.
    #[arg(long, default_value_t = 512)]
    prompt_len: usize,
    /// Decode: the short prompt before the timed greedy tokens.
    #[arg(long, default_value_t = 16)]
    short_prompt: usize,
    /// Decode: the context length where cached and uncached decoding are compared.
    #[arg(long, default_value_t = 256)]
    context: usize,
}

fn row(workload: &str, shape: &str, ms: f64, tokens_per_sec: f64) {
    println!("{workload:<30} {shape:<26} {ms:>12.2} {tokens_per_sec:>12.1}");
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let preset = &args.preset;
    let config = Gpt2Config::preset(preset).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        Error::Input(format!("unknown preset {preset:?}; choose one of {}", names.join(", ")))
    })?;
    let model = Gpt2::new(super::kernels()?, &Weights::random(config, 0))?;
    println!("{:<30} {:<26} {:>12} {:>12}", "workload", "shape", "ms", "tokens/s");
    match args.workload {
        Workload::Forward => forward(&model, preset, args.batch_size, args.seq, args.iters)?,
        Workload::Decode => decode(&model, preset, &args)?,
        Workload::Finetune => finetune(model, preset, args.batch_size, args.seq, args.iters)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn forward(model: &Gpt2, preset: &str, b: usize, t: usize, iters: usize) -> Result<()> {
    let v = model.config.vocab_size;
    let f = model.forward_plan(b, t)?;
    let gpu = &model.kernels.gpu;
    let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % v) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| (i * 13 % v) as u32).collect();
    for _ in 0..2 {
        model.forward(&f, &ids, Some(&targets))?;
        pollster::block_on(gpu.read(&f.acts.loss))?;
    }
    let start = Instant::now();
    for _ in 0..iters {
        model.forward(&f, &ids, Some(&targets))?;
    }
    pollster::block_on(gpu.read(&f.acts.loss))?;
    let ms = start.elapsed().as_secs_f64() * 1e3 / iters as f64;
    row(&format!("forward {preset}"), &format!("B={b} T={t}"), ms, (b * t) as f64 / ms * 1e3);
    Ok(())
}

/// Training steps from `model` with nanoGPT's default AdamW settings (grad_accum 1), each timed
/// up to a readback of its loss; the median of `iters` after one warm-up step.
fn finetune(model: Gpt2, preset: &str, b: usize, t: usize, iters: usize) -> Result<()> {
    let v = model.config.vocab_size;
    let mut trainer = Trainer::new(model, TrainConfig { batch_size: b, seq_len: t, ..TrainConfig::default() })?;
    let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % v) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| (i * 13 % v) as u32).collect();
    let batch = [(ids, targets)];
    let mut step = || -> Result<f64> {
        let start = Instant::now();
        trainer.step(&batch)?;
        pollster::block_on(trainer.last_loss())?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    step()?;
    let mut ms = (0..iters.max(1)).map(|_| step()).collect::<Result<Vec<f64>>>()?;
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    row(&format!("finetune {preset} (AdamW)"), &format!("B={b} T={t}"), median, (b * t) as f64 / median * 1e3);
    Ok(())
}

/// Milliseconds per call of `f` over `n` calls.
fn time_ms(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / n.max(1) as f64)
}

fn decode(model: &Gpt2, preset: &str, args: &BenchArgs) -> Result<()> {
    let (v, block) = (model.config.vocab_size, model.config.block_size);
    let n = args.iters.max(1);
    for (what, len) in
        [("--prompt-len", args.prompt_len), ("--short-prompt", args.short_prompt), ("--context", args.context)]
    {
        if len == 0 || len + n > block {
            return Err(Error::Input(format!(
                "{what} {len} plus {n} decode steps must fit the context of {block} tokens (and be at least 1)"
            )));
        }
    }
    let ids: Vec<u32> = (0..block).map(|i| ((i * 7919 + 13) % v) as u32).collect();
    let mut dec = Decoder::new(model)?;
    let sync = |dec: &mut Decoder| pollster::block_on(dec.argmax(model)).map(|_| ());

    // warm-up (first use of each pipeline and the one-token step)
    dec.prefill(model, &ids[..args.short_prompt])?;
    dec.push(model, ids[args.short_prompt])?;
    sync(&mut dec)?;

    let p = args.prompt_len;
    let ms = time_ms(1, || {
        dec.prefill(model, &ids[..p])?;
        sync(&mut dec)
    })?;
    row(&format!("prefill {preset}"), &format!("prompt {p} tokens"), ms, p as f64 / ms * 1e3);

    // greedy generation after a short prompt: pick (GPU argmax, 4-byte readback), then push it
    dec.prefill(model, &ids[..args.short_prompt])?;
    sync(&mut dec)?; // the prefill is not part of the timing
    let ms = time_ms(n, || {
        let next = pollster::block_on(dec.argmax(model))?;
        dec.push(model, next)
    })?;
    let shape = format!("prompt {}, {n} new", args.short_prompt);
    row(&format!("decode {preset} (KV cache)"), &shape, ms, 1e3 / ms);

    // the same, sampling (temperature 1, top-k 40) on the CPU from the V logits read back
    dec.prefill(model, &ids[..args.short_prompt])?;
    sync(&mut dec)?;
    let cfg = SampleConfig { max_new_tokens: n, temperature: 1.0, top_k: 40, top_p: 1.0, seed: 1 };
    let mut rng = Rng::new(1);
    let ms = time_ms(n, || {
        let logits = pollster::block_on(dec.logits(model))?;
        dec.push(model, sample(&logits, &cfg, &mut rng))
    })?;
    row(&format!("decode {preset} (KV, top-k 40)"), &shape, ms, 1e3 / ms);

    // one more token at a context of `c`: with the cache, vs a full forward over c + 1 tokens
    let c = args.context;
    dec.prefill(model, &ids[..c])?;
    sync(&mut dec)?;
    let mut at = c;
    let cached = time_ms(n, || {
        dec.push(model, ids[at])?;
        at += 1;
        sync(&mut dec)
    })?;
    row(&format!("decode {preset} (KV cache)"), &format!("context {c}"), cached, 1e3 / cached);
    let f = model.forward_plan(1, c + 1)?;
    let gpu = &model.kernels.gpu;
    let uncached = time_ms(1, || {
        model.forward(&f, &ids[..c + 1], None)?;
        pollster::block_on(gpu.read_range(&f.acts.logits, c * v, v)).map(|_| ())
    })?;
    row(&format!("decode {preset} (no cache)"), &format!("context {c}"), uncached, 1e3 / uncached);
    println!("cached / uncached speed at context {c}: {:.1}x", uncached / cached);
    Ok(())
}
