//! `wgpt bench`: timings of single kernels (matmul, attention) and of whole workloads (forward,
//! training step, KV-cache decode) on random weights of a preset's shapes, printed as one table.
//! Kernels are timed by GPU timestamp queries where the device has them ([`wgpt::Gpu::timestamps`]),
//! by the wall clock elsewhere; training steps and decoding by the wall clock up to a readback.

mod decode;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2, Gpt2Config, LoraConfig, Weights, PRESETS};
use wgpt::options::Options;
use wgpt::precision::{Precision, Purpose};
use wgpt::submit::SubmitStats;
use wgpt::train::{training_bytes_of, TrainConfig, Trainer};
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
    // issues 25 and 26: hub shapes and LoRA
    /// An HF config.json whose shapes and architecture replace --preset's, with random weights
    /// (forward, decode, finetune; e.g. tests/fixtures/hub_configs/smollm2-135m.json).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Finetune: train rank-R LoRA adapters on every product (peft's alpha 2R) over the frozen
    /// weights, instead of every weight.
    #[arg(long, value_name = "R")]
    lora: Option<usize>,
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
    let preset = &match &args.config {
        Some(path) => path.file_stem().map_or("config".into(), |s| s.to_string_lossy().into_owned()),
        None => args.preset.clone(),
    };
    // f16 rows beside the f32 ones where inference runs f16 (f16 or auto with shader-f16), and
    // train rows where training does (f16 with shader-f16)
    let f16 = super::precision(opts, &k, Purpose::Inference) == Precision::F16;
    let f16_train = opts.precision.resolve(Purpose::Training, k.gpu.shader_f16()).f16();
    let model_of = |preset: &str| match &args.config {
        Some(path) => hub_model(&k, path, &args.arch, opts.submit_budget_ms),
        None => model(&k, preset, &args.arch, opts.submit_budget_ms),
    };
    match args.workload {
        Workload::Forward => forward(&model_of(preset)?, preset, args.batch_size, args.seq, args.iters)?,
        Workload::Decode => decode::decode(&model_of(preset)?, preset, &args, f16)?,
        Workload::Finetune => finetune(model_of(preset)?, preset, args.batch_size, args.seq, &args, f16_train)?,
        Workload::Matmul => matmul(&k, args.iters, f16)?,
        Workload::Attention => attention(&k, args.iters)?,
        Workload::Train => train(&k, &args, f16_train, opts.submit_budget_ms)?,
        Workload::All => {
            matmul(&k, args.iters, f16)?;
            attention(&k, args.iters)?;
            train(&k, &args, f16_train, opts.submit_budget_ms)?;
            decode::decode(&model_of("gpt2")?, "gpt2", &args, f16)?;
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

/// A model of the shapes and architecture `path` (an HF config.json) gives, random weights.
fn hub_model(k: &Arc<Kernels>, path: &std::path::Path, arch: &ArchArgs, budget_ms: f64) -> Result<Gpt2> {
    if arch.given() {
        return Err(Error::Input("--config sets the architecture: drop the architecture flags (--arch ...)".into()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("--config {}: cannot read it: {e}", path.display())))?;
    let config =
        wgpt::hf::parse_config(&text).map_err(|e| Error::Input(format!("--config {}: {e}", path.display())))?;
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
    let lora = args.lora.map(|r| LoraConfig::new(r, 0));
    let preset = &match lora {
        Some(lc) => format!("{preset} lora r{}", lc.rank),
        None => preset.to_string(),
    };
    let cfg = TrainConfig { batch_size: b, seq_len: t, lora, ..TrainConfig::default() };
    memory_line(&model, &cfg, preset);
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

/// The memory plan of training `model` with `cfg` in f32 (what a run checks before allocating):
/// its total, the parameters and how many of them are trained.
fn memory_line(model: &Gpt2, cfg: &TrainConfig, preset: &str) {
    let (m, b, t) = (&model.config, cfg.batch_size, cfg.seq_len);
    let kind = m.attention_kind(&model.kernels.selection(), b, t);
    let bytes = training_bytes_of(m, cfg, b, t, kind, false);
    let trained = cfg.lora.map_or(m.num_params() as u64, |lc| lc.bytes(m) / 4);
    println!(
        "  memory plan of training {preset} B={b} T={t} (f32): {:.1} MiB; {} parameters, {trained} trained",
        bytes as f64 / (1u64 << 20) as f64,
        m.num_params()
    );
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
