//! `wgpt bench`: timings of single kernels (matmul, attention) and of whole workloads (forward,
//! training step, KV-cache decode) on random weights of a preset's shapes, printed as one table.
//! Kernels are timed by GPU timestamp queries where the device has them ([`wgpt::Gpu::timestamps`]),
//! by the wall clock elsewhere; training steps and decoding by the wall clock up to a readback.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use wgpt::generate::{sample, Decoder, SampleConfig};
use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2, Gpt2Config, Weights, PRESETS};
use wgpt::options::Options;
use wgpt::precision::{Precision, Purpose};
use wgpt::rng::Rng;
use wgpt::submit::SubmitStats;
use wgpt::train::{TrainConfig, Trainer};
use wgpt::tune;
use wgpt::{Error, Result};

use super::arch::ArchArgs;

mod kernels;

use kernels::{attention, matmul};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Workload {
    /// The forward pass with the loss over (B, T).
    Forward,
    /// KV-cache generation: prefill of --prompt-len tokens, greedy and top-k decode tokens/s
    /// after a short prompt, and cached vs uncached time per token at a context of --context.
    /// With --precision f16 also the prefill and greedy decode with f16 weights, alternating
    /// with f32 runs, and their ratio.
    Decode,
    /// One training step over (B, T): forward, backward, clipping and AdamW, the median of
    /// --iters steps after one warm-up (GPT-2 fine-tuning: --preset gpt2 --batch-size 1 --seq 128).
    /// With --precision f16 also the mixed-precision step, alternating with f32 steps, and their
    /// ratio.
    Finetune,
    /// Matrix products: 1024³ (and 4096³ on hardware adapters), and GPT-2's Conv1D and lm_head
    /// shapes at B·T = 4096, each forward and its two backward products (dinp and dweight); every
    /// kernel candidate's GFLOP/s, autotune's pick marked, then a row at the pick. With
    /// --precision f16 also the forward products with f16 weights, and the single-row (decode)
    /// products in f32 and f16.
    Matmul,
    /// Causal attention forward and backward at (B 8, NH 6, T 256), (B 1, NH 12, T 1024), head
    /// size 64, and the baby's (B 12, NH 4, T 64, hs 32); every implementation's GFLOP/s of the
    /// causal half (q·k and att·v over T(T+1)/2 pairs), autotune's pick marked.
    Attention,
    /// A training step of the baby (B 12, T 64) and shakespeare-char (B 8, T 256) presets (with
    /// --precision f16 also in mixed precision, as finetune).
    Train,
    /// matmul, attention, train, and decode with GPT-2 124M's shapes (--preset, --batch-size
    /// and --seq are not used).
    All,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "forward")]
    workload: Workload,
    /// Model preset: gpt2, shakespeare-char or baby (forward, decode, finetune).
    #[arg(long, default_value = "shakespeare-char")]
    preset: String,
    /// Batch size B (forward, finetune).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Sequence length T (forward, finetune; at most the preset's block_size).
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Timed iterations (forward, after 2 warm-up runs; decode: tokens per decode timing;
    /// finetune and train: training steps after 1 warm-up step; matmul and attention: runs of
    /// each kernel after 1 warm-up run). 1 or 2 give a quick `--workload all` on a software GPU.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Train and finetune: after the timing, each kernel's GPU time in one step (timestamp
    /// queries, each dispatch in a pass of its own), largest first.
    #[arg(long)]
    profile: bool,
    /// Train and finetune: also time steps that record training dynamics (every other step,
    /// each read back as at a log interval), next to the plain steps in between.
    #[arg(long)]
    dynamics: bool,
    /// Decode: the prompt length whose prefill is timed.
    #[arg(long, default_value_t = 512)]
    prompt_len: usize,
    /// Decode: the short prompt before the timed greedy tokens.
    #[arg(long, default_value_t = 16)]
    short_prompt: usize,
    /// Decode: the context length where cached and uncached decoding are compared.
    #[arg(long, default_value_t = 256)]
    context: usize,
    // architecture (issue 25): the preset's shapes with these switches
    #[command(flatten)]
    arch: ArchArgs,
}

/// What a row's rate counts.
#[derive(Clone, Copy)]
enum Unit {
    GflopPerSec,
    TokensPerSec,
}

/// One row of the table: unit, workload, shape, milliseconds and the rate, columns at least two
/// spaces apart (tests/fixtures/bench_compare.py splits on that).
fn row(unit: Unit, workload: &str, shape: &str, ms: f64, rate: f64) {
    let unit = match unit {
        Unit::GflopPerSec => "GFLOP/s",
        Unit::TokensPerSec => "tokens/s",
    };
    println!("{unit:<8}  {workload:<32}  {shape:<24}  {ms:>12.2}  {rate:>12.1}");
}

/// A row of tokens/s.
fn tokens_row(workload: &str, shape: &str, ms: f64, tokens_per_sec: f64) {
    row(Unit::TokensPerSec, workload, shape, ms, tokens_per_sec);
}

/// A row of GFLOP/s for a kernel doing `flop` in `ms`.
fn flops_row(workload: &str, shape: &str, ms: f64, flop: f64) {
    row(Unit::GflopPerSec, workload, shape, ms, flop / ms / 1e6);
}

pub fn bench(args: BenchArgs, opts: &Options) -> Result<ExitCode> {
    let k = super::kernels(opts)?;
    let kernels = if k.gpu.timestamps() {
        format!("GPU timestamps of each kernel's pass, the median of --iters {} after 1 warm-up", args.iters.max(1))
    } else {
        format!(
            "wall clock of --iters {} runs submitted back to back after 1 warm-up run, ended by a device poll (this \
             adapter has no TIMESTAMP_QUERY)",
            args.iters.max(1)
        )
    };
    println!("timing: kernels: {kernels}; steps and tokens: wall clock up to a readback");
    println!("{:<8}  {:<32}  {:<24}  {:>12}  {:>12}", "unit", "workload", "shape", "ms", "rate");
    let preset = &args.preset;
    // f16 rows beside the f32 ones where inference runs f16 (f16 or auto with shader-f16), and
    // train rows where training does (f16 with shader-f16)
    let f16 = super::precision(opts, &k, Purpose::Inference) == Precision::F16;
    let f16_train = opts.precision.resolve(Purpose::Training, k.gpu.shader_f16()).f16();
    let model_of = |preset: &str| model(&k, preset, &args.arch, opts.submit_budget_ms);
    match args.workload {
        Workload::Forward => forward(&model_of(preset)?, preset, args.batch_size, args.seq, args.iters)?,
        Workload::Decode => decode(&model_of(preset)?, preset, &args, f16)?,
        Workload::Finetune => finetune(model_of(preset)?, preset, args.batch_size, args.seq, &args, f16_train)?,
        Workload::Matmul => matmul(&k, args.iters, f16)?,
        Workload::Attention => attention(&k, args.iters)?,
        Workload::Train => train(&k, &args, f16_train, opts.submit_budget_ms)?,
        Workload::All => {
            matmul(&k, args.iters, f16)?;
            attention(&k, args.iters)?;
            train(&k, &args, f16_train, opts.submit_budget_ms)?;
            decode(&model_of("gpt2")?, "gpt2", &args, f16)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A model with a preset's shapes, `arch`'s switches and random weights, its submits split at
/// `budget_ms`.
fn model(k: &Arc<Kernels>, preset: &str, arch: &ArchArgs, budget_ms: f64) -> Result<Gpt2> {
    let mut config = Gpt2Config::preset(preset).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        Error::Input(format!("unknown preset {preset:?}; choose one of {}", names.join(", ")))
    })?;
    config.arch = arch.choice().arch(config.n_head)?;
    // refused past the device's limits before the weights are drawn
    config.check_params(&k.gpu)?;
    Ok(Gpt2::new(k.clone(), &Weights::random(config, 0))?.with_submit_budget(budget_ms))
}

/// A training step of each small preset at nanoGPT's batch for it.
fn train(k: &Arc<Kernels>, args: &BenchArgs, f16: bool, budget_ms: f64) -> Result<()> {
    for (preset, b, t) in [("baby", 12, 64), ("shakespeare-char", 8, 256)] {
        finetune(model(k, preset, &args.arch, budget_ms)?, preset, b, t, args, f16)?;
    }
    Ok(())
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
    let mut submits = vec![];
    for _ in 0..iters {
        model.forward(&f, &ids, Some(&targets))?;
        submits.push(f.submits());
    }
    pollster::block_on(gpu.read(&f.acts.loss))?;
    let ms = start.elapsed().as_secs_f64() * 1e3 / iters as f64;
    tokens_row(&format!("forward {preset}"), &format!("B={b} T={t}"), ms, (b * t) as f64 / ms * 1e3);
    // an evaluation batch is this forward with the loss
    submit_line(&format!("forward (an evaluation batch) {preset}"), &submits, model.submit_budget_ms);
    Ok(())
}

/// Training steps from `model` with nanoGPT's default AdamW settings (grad_accum 1), each timed
/// up to a readback of its loss; the median of --iters after one warm-up step. With --dynamics,
/// every other step also records the training dynamics and reads them back: the medians of both
/// kinds of step, interleaved so that a busy machine slows both alike. With `f16`, a second
/// trainer from the same weights trains in mixed precision (f16 weight operands), its steps
/// alternating with the f32 one's, and the ratio of their medians.
fn finetune(model: Gpt2, preset: &str, b: usize, t: usize, args: &BenchArgs, f16: bool) -> Result<()> {
    let v = model.config.vocab_size;
    let report = tune::prepare(&model.kernels, model.config.run_shape(b, t), super::cache_path().as_deref())?;
    let (how, n, ms) = (report.describe(), report.timed, report.ms);
    eprintln!("kernels for {preset} B={b} T={t}: {how}, {n} problems timed in {ms:.0} ms");
    let cfg = TrainConfig { batch_size: b, seq_len: t, ..TrainConfig::default() };
    let twin = match f16 {
        true => Some(
            Gpt2::new(model.kernels.clone(), &pollster::block_on(model.weights())?)?
                .with_submit_budget(model.submit_budget_ms),
        ),
        false => None,
    };
    let mut trainers = vec![("", Trainer::new(model, cfg)?)];
    if let Some(model) = twin {
        trainers.push((" f16", Trainer::new(model, TrainConfig { precision: Precision::F16, ..cfg })?));
    }
    if args.dynamics {
        trainers.iter_mut().for_each(|(_, trainer)| trainer.track_dynamics(2));
    }
    let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % v) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| (i * 13 % v) as u32).collect();
    let batch = [(ids, targets)];
    let step = |trainer: &mut Trainer| -> Result<f64> {
        let start = Instant::now();
        trainer.step(&batch)?;
        pollster::block_on(trainer.last_loss())?;
        if args.dynamics && trainer.step.is_multiple_of(2) {
            pollster::block_on(trainer.dynamics())?;
        }
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let kinds = if args.dynamics { 2 } else { 1 };
    // warm-up: one step of each kind
    for (_, trainer) in &mut trainers {
        for _ in 0..kinds {
            step(trainer)?;
        }
    }
    let mut ms = vec![vec![vec![]; kinds]; trainers.len()];
    let mut submits = vec![vec![]; trainers.len()];
    for i in 0..kinds * args.iters.max(1) {
        for (j, (_, trainer)) in trainers.iter_mut().enumerate() {
            ms[j][i % kinds].push(step(trainer)?);
            submits[j].push(trainer.submits());
        }
    }
    let shape = format!("B={b} T={t}");
    let mut plain = vec![];
    for (((precision, trainer), ms), submits) in trainers.iter().zip(&mut ms).zip(&submits) {
        let medians: Vec<f64> = ms
            .iter_mut()
            .map(|m| {
                m.sort_by(f64::total_cmp);
                m[m.len() / 2]
            })
            .collect();
        for (median, tag) in medians.iter().zip(["", " +dynamics"]) {
            let name = format!("train step {preset}{precision}{tag}");
            tokens_row(&name, &shape, *median, (b * t) as f64 / median * 1e3);
        }
        if let [plain, tracked] = medians[..] {
            println!("  a step with dynamics takes {:+.1}% of a plain step's time", 100.0 * (tracked / plain - 1.0));
        }
        plain.push(medians[0]);
        submit_line(&format!("train step {preset}{precision}"), submits, trainer.model.submit_budget_ms);
        if args.profile {
            print_profile(trainer, precision)?;
        }
    }
    if let [f32_ms, f16_ms] = plain[..] {
        println!("  train step {preset}: f16 is {:.2}x f32's speed (steps alternating)", f32_ms / f16_ms);
    }
    Ok(())
}

/// The GPU time of each kernel in one step of `trainer`, largest first.
fn print_profile(trainer: &Trainer, precision: &str) -> Result<()> {
    let mut by_kernel = pollster::block_on(trainer.profile())?;
    by_kernel.sort_by(|x, y| y.1.total_cmp(&x.1));
    let total: f64 = by_kernel.iter().map(|(_, ms)| ms).sum();
    println!("  profile of one{precision} step, GPU time per kernel (sum {total:.1} ms):");
    for (label, ms) in by_kernel {
        println!("  {label:<28} {ms:>10.2} ms {:>6.1}%", 100.0 * ms / total);
    }
    Ok(())
}

/// The longest measured submit of runs after the first measured one against the budget, and
/// the most submits one of them used.
fn submit_line(what: &str, runs: &[SubmitStats], budget: f64) {
    let most = runs.iter().map(|s| s.submits).max().unwrap_or(0);
    match runs.iter().filter_map(|s| s.longest_ms).reduce(f64::max) {
        Some(longest) => println!(
            "  {what}: longest submit {longest:.1} ms after the first measured run, budget {budget} ms ({}), up to {most} submits",
            if longest <= budget { "within" } else { "OVER" }
        ),
        None => println!("  {what}: one submit per run (budget 0), not measured"),
    }
}

/// Milliseconds per call of `f` over `n` calls.
fn time_ms(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / n.max(1) as f64)
}

/// Milliseconds of a prefill of `prompt`, up to its argmax.
fn prefill_ms(dec: &mut Decoder, model: &Gpt2, prompt: &[u32]) -> Result<f64> {
    time_ms(1, || {
        dec.prefill(model, prompt)?;
        pollster::block_on(dec.argmax(model)).map(|_| ())
    })
}

/// Milliseconds per greedy token after `prompt`: push the token, then pick the next from its
/// logits (GPU argmax, 4-byte readback), so each timed step ends with its own result.
fn greedy_ms(dec: &mut Decoder, model: &Gpt2, prompt: &[u32], n: usize) -> Result<f64> {
    dec.prefill(model, prompt)?;
    let mut next = pollster::block_on(dec.argmax(model))?; // the prefill is not part of the timing
    time_ms(n, || {
        dec.push(model, next)?;
        next = pollster::block_on(dec.argmax(model))?;
        Ok(())
    })
}

/// The prefill and greedy decode rows in f16 beside f32's, the two alternating (f32, f16, f32,
/// f16: a busy machine slows both alike; each row the faster of its two runs), and the ratio.
fn decode_f16(model: &Gpt2, preset: &str, args: &BenchArgs, ids: &[u32], dec: &mut Decoder) -> Result<()> {
    let (p, short, n) = (args.prompt_len, args.short_prompt, args.iters.max(1));
    let mut dec16 = Decoder::with_precision(model, Precision::F16)?;
    greedy_ms(&mut dec16, model, &ids[..short], 1)?; // warm-up: the f16 pipelines
    let (mut pre, mut step) = ([f64::INFINITY; 2], [f64::INFINITY; 2]);
    for _ in 0..2 {
        for (i, d) in [&mut *dec, &mut dec16].into_iter().enumerate() {
            pre[i] = pre[i].min(prefill_ms(d, model, &ids[..p])?);
            step[i] = step[i].min(greedy_ms(d, model, &ids[..short], n)?);
        }
    }
    let shape = format!("prompt {short}, {n} new");
    for (i, tag) in ["f32", "f16"].into_iter().enumerate() {
        tokens_row(&format!("prefill {preset} {tag}"), &format!("prompt {p} tokens"), pre[i], p as f64 / pre[i] * 1e3);
        tokens_row(&format!("decode {preset} {tag} (KV cache)"), &shape, step[i], 1e3 / step[i]);
    }
    println!(
        "  f16 weights: decode {:.2}x and prefill {:.2}x f32's speed (alternating runs, best of 2 each)",
        step[0] / step[1],
        pre[0] / pre[1]
    );
    Ok(())
}

fn decode(model: &Gpt2, preset: &str, args: &BenchArgs, f16: bool) -> Result<()> {
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
    let ms = prefill_ms(&mut dec, model, &ids[..p])?;
    tokens_row(&format!("prefill {preset}"), &format!("prompt {p} tokens"), ms, p as f64 / ms * 1e3);
    // the timed prefill was this length's first, measured one; the next follows its plan
    dec.prefill(model, &ids[..p])?;
    sync(&mut dec)?;
    submit_line(&format!("prefill {preset}"), &[dec.submits()], model.submit_budget_ms);

    // greedy generation after a short prompt
    let ms = greedy_ms(&mut dec, model, &ids[..args.short_prompt], n)?;
    let shape = format!("prompt {}, {n} new", args.short_prompt);
    tokens_row(&format!("decode {preset} (KV cache)"), &shape, ms, 1e3 / ms);
    if f16 {
        decode_f16(model, preset, args, &ids, &mut dec)?;
    }

    // the same, sampling (temperature 1, top-k 40) on the CPU from the V logits read back
    dec.prefill(model, &ids[..args.short_prompt])?;
    let cfg = SampleConfig { max_new_tokens: n, temperature: 1.0, top_k: 40, top_p: 1.0, seed: 1 };
    let mut rng = Rng::new(1);
    let mut next = sample(&pollster::block_on(dec.logits(model))?, &cfg, &mut rng);
    let ms = time_ms(n, || {
        dec.push(model, next)?;
        next = sample(&pollster::block_on(dec.logits(model))?, &cfg, &mut rng);
        Ok(())
    })?;
    tokens_row(&format!("decode {preset} (KV, top-k 40)"), &shape, ms, 1e3 / ms);

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
    tokens_row(&format!("decode {preset} (KV cache)"), &format!("context {c}"), cached, 1e3 / cached);
    let f = model.forward_plan(1, c + 1)?;
    let gpu = &model.kernels.gpu;
    let uncached = time_ms(1, || {
        model.forward(&f, &ids[..c + 1], None)?;
        pollster::block_on(gpu.read_range(&f.acts.logits, c * v, v)).map(|_| ())
    })?;
    tokens_row(&format!("decode {preset} (no cache)"), &format!("context {c}"), uncached, 1e3 / uncached);
    Ok(())
}
