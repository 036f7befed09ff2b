//! `wgpt train`: nanoGPT's train.py on our GPU kernels, with a progress bar, metrics as JSON
//! lines, a loss chart and HF-format checkpoints that `--resume` continues exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use wgpt::data::{check_corpus_size, corpus_text, Task};
use wgpt::generate::SampleConfig;
use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2Config, Weights};
use wgpt::run::{CheckpointFiles, DataSource, Eval, Run, RunConfig};
use wgpt::tokenizer::Tokenizer;
use wgpt::train::TrainConfig;
use wgpt::{checkpoint, hf, read_file, Error, Result};

use super::chart;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Model shape: baby (4 layers, 4 heads, 128 dims, block 64), shakespeare-char or gpt2;
    /// --n-layer etc. override it. The vocabulary size comes from the tokenizer.
    #[arg(long, default_value = "baby")]
    preset: String,
    #[arg(long)]
    n_layer: Option<usize>,
    #[arg(long)]
    n_head: Option<usize>,
    #[arg(long)]
    n_embd: Option<usize>,
    /// Context length (and the training sequence length).
    #[arg(long)]
    block_size: Option<usize>,
    #[arg(long, default_value_t = 12)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Optimizer steps in all [default: 2000]. With --resume: the checkpoint's, or this to extend
    /// the run.
    #[arg(long)]
    max_iters: Option<usize>,
    /// Peak learning rate [default: 1e-3]. With --resume it replaces the checkpoint's (lower it
    /// after a diverged run), and min_lr scales with it.
    #[arg(long)]
    lr: Option<f32>,
    /// Learning rate at the end of the cosine decay (at max_iters).
    #[arg(long, default_value_t = 1e-4)]
    min_lr: f32,
    #[arg(long, default_value_t = 100)]
    warmup_iters: usize,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f32,
    #[arg(long, default_value_t = 0.9)]
    beta1: f32,
    #[arg(long, default_value_t = 0.99)]
    beta2: f32,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f32,
    /// Dropout on the embeddings, residual branches and attention probabilities (GPT-2's
    /// embd_pdrop, resid_pdrop and attn_pdrop);
    /// 0 turns it off exactly.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Evaluate, print a sample and save a checkpoint every this many steps.
    #[arg(long, default_value_t = 250)]
    eval_interval: usize,
    /// Batches per split in each evaluation.
    #[arg(long, default_value_t = 20)]
    eval_iters: usize,
    /// Read the loss back (and log it) every this many steps.
    #[arg(long, default_value_t = 10)]
    log_interval: usize,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// A UTF-8 text corpus to train on.
    #[arg(long, conflicts_with = "task")]
    data: Option<PathBuf>,
    /// A built-in synthetic task: addition (default when no --data), reverse or sort.
    #[arg(long)]
    task: Option<String>,
    /// char (one token per character), bpe:N (byte-level BPE with N tokens trained on the
    /// corpus) or a model directory whose tokenizer.json to use. Default: char, or the --init
    /// model's own tokenizer.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Output directory: checkpoint (HF model dir + training_state.safetensors), metrics.jsonl,
    /// loss.png [default: out; with --resume: the resumed directory].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue a run from its checkpoint directory (same data, same batches, same losses).
    /// --max-iters may extend it and --lr replace its learning rate; other settings come from
    /// the checkpoint.
    #[arg(long, conflicts_with_all = ["init", "data", "task"])]
    resume: Option<PathBuf>,
    /// Fine-tune a pretrained HF GPT-2 directory (its shape and, by default, its tokenizer).
    #[arg(long)]
    init: Option<PathBuf>,
}

/// Rebuilds a run from its checkpoint directory on `kernels`' device, continuing exactly where it
/// was saved; `adjust` may change the saved settings first (--resume's --lr and --max-iters).
fn load_checkpoint(
    kernels: Arc<Kernels>,
    dir: &Path,
    adjust: impl FnOnce(&mut RunConfig) -> Result<()>,
) -> Result<Run> {
    let text = |name: &str| -> Result<String> {
        let path = dir.join(name);
        String::from_utf8(read_file(&path)?).map_err(|_| Error::Format(format!("{} is not UTF-8 text", path.display())))
    };
    let files = CheckpointFiles {
        config_json: text("config.json")?,
        model: read_file(&dir.join("model.safetensors"))?,
        tokenizer_json: text("tokenizer.json")?,
        state: read_file(&dir.join(checkpoint::STATE_FILE))?,
    };
    Run::from_checkpoint(kernels, &files, |cfg| {
        adjust(cfg)?;
        source_text(&cfg.data, cfg.seed)
    })
    .map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", dir.display())),
        e => e,
    })
}

/// Corpus text for a data source.
fn source_text(source: &DataSource, seed: u64) -> Result<String> {
    match source {
        DataSource::File(path) => {
            // refuse a huge file before reading it
            if let Ok(meta) = std::fs::metadata(path) {
                check_corpus_size(path, meta.len())?;
            }
            corpus_text(path, &read_file(Path::new(path))?)
        }
        DataSource::Task(name) => Ok(Task::from_name(name)?.corpus(20_000, seed)),
        DataSource::Text(name) => Err(Error::Input(format!(
            "this run trained on text from the page ({name}); resume it in the page, or pass --data"
        ))),
    }
}

/// `char`, `bpe:N`, or a directory holding a tokenizer.json.
fn tokenizer_for(spec: &str, text: &str) -> Result<Tokenizer> {
    if spec == "char" || spec.starts_with("bpe:") {
        Tokenizer::from_spec(spec, text)
    } else {
        Tokenizer::from_file(&Path::new(spec).join("tokenizer.json"))
    }
}

pub fn train(a: TrainArgs) -> Result<ExitCode> {
    let kernels = super::kernels()?;
    let (run, out) = if let Some(dir) = &a.resume {
        let run = load_checkpoint(kernels, dir, |cfg| {
            cfg.max_iters = a.max_iters.unwrap_or(cfg.max_iters).max(cfg.max_iters);
            if let Some(lr) = a.lr {
                cfg.train.set_lr(lr)?;
                eprintln!("learning rate {lr:e} (min_lr {:e}) from now on", cfg.train.min_lr);
            }
            Ok(())
        })?;
        eprintln!("resuming {} at step {}", dir.display(), run.step());
        (run, a.out.clone().unwrap_or_else(|| dir.clone()))
    } else {
        let max_iters = a.max_iters.unwrap_or(2000);
        let data = match (&a.data, &a.task) {
            (Some(path), _) => DataSource::File(path.display().to_string()),
            (None, Some(task)) => DataSource::Task(Task::from_name(task)?.name().to_string()),
            (None, None) => DataSource::Task("addition".into()),
        };
        let text = source_text(&data, a.seed)?;
        let (weights, tokenizer, spec) = match &a.init {
            Some(dir) => {
                let (weights, own) = hf::dir::load(dir)?;
                let (tok, spec) = match (&a.tokenizer, own) {
                    (Some(spec), _) => (tokenizer_for(spec, &text)?, spec.clone()),
                    (None, Some(tok)) => (tok, "dir".to_string()),
                    (None, None) => {
                        return Err(Error::Input(format!("{} has no tokenizer.json; pass --tokenizer", dir.display())))
                    }
                };
                (weights, tok, spec)
            }
            None => {
                let spec = a.tokenizer.clone().unwrap_or_else(|| "char".into());
                let tok = tokenizer_for(&spec, &text)?;
                let base = Gpt2Config::preset(&a.preset).ok_or_else(|| {
                    Error::Input(format!("unknown preset {:?}; choose baby, shakespeare-char or gpt2", a.preset))
                })?;
                let config = Gpt2Config {
                    n_layer: a.n_layer.unwrap_or(base.n_layer),
                    n_head: a.n_head.unwrap_or(base.n_head),
                    n_embd: a.n_embd.unwrap_or(base.n_embd),
                    block_size: a.block_size.unwrap_or(base.block_size),
                    vocab_size: tok.vocab_size(),
                };
                config.validate()?;
                (Weights::random(config, a.seed), tok, spec)
            }
        };
        let model = weights.config;
        let seq_len = a.block_size.unwrap_or(model.block_size).min(model.block_size);
        let cfg = RunConfig {
            model,
            train: TrainConfig {
                batch_size: a.batch_size,
                seq_len,
                grad_accum: a.grad_accum,
                lr: a.lr.unwrap_or(TrainConfig::default().lr),
                min_lr: a.min_lr,
                warmup_iters: a.warmup_iters,
                lr_decay_iters: max_iters,
                weight_decay: a.weight_decay,
                beta1: a.beta1,
                beta2: a.beta2,
                eps: 1e-8,
                grad_clip: a.grad_clip,
                dropout: a.dropout,
                attention: None,
            },
            max_iters,
            eval_interval: a.eval_interval.max(1),
            eval_iters: a.eval_iters,
            log_interval: a.log_interval.max(1),
            seed: a.seed,
            data,
            tokenizer: spec,
        };
        let t = wgpt::tune::prepare(&kernels, &cfg.model, cfg.train.batch_size, cfg.train.seq_len)?;
        eprintln!("kernels: {}, {} problems timed in {:.0} ms", t.source, t.timed, t.ms);
        (Run::new(kernels, cfg, &weights, tokenizer, &text)?, a.out.clone().unwrap_or_else(|| PathBuf::from("out")))
    };
    std::fs::create_dir_all(&out).map_err(|e| Error::Io(format!("cannot create {}: {e}", out.display())))?;
    let c = &run.cfg;
    eprintln!(
        "model: {} layers, {} heads, {} dims, block {}, vocab {} ({:.2}M parameters); data: {:?}, {} train / {} val tokens",
        c.model.n_layer,
        c.model.n_head,
        c.model.n_embd,
        c.model.block_size,
        c.model.vocab_size,
        c.model.num_params() as f64 / 1e6,
        c.data,
        run.data.train.len(),
        run.data.val.len()
    );
    train_loop(run, &out)
}

fn train_loop(mut run: Run, out: &Path) -> Result<ExitCode> {
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| Error::Io(format!("cannot open {}: {e}", metrics_path.display())))?;
    let mut log = |v: serde_json::Value| {
        let _ = writeln!(metrics, "{v}");
    };
    let cfg = run.cfg.clone();
    let tokens_per_step = (cfg.train.batch_size * cfg.train.seq_len * cfg.train.grad_accum) as f64;
    let bar = ProgressBar::new(cfg.max_iters as u64).with_position(run.step());
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
            .expect("a valid progress template"),
    );
    let started = Instant::now();
    let first_step = run.step();
    let mut last_log = (Instant::now(), run.step());
    let mut last_saved: Option<u64> = None;
    let mut lose_device_at = lose_device_at()?;
    let mut recoveries = 0;
    loop {
        // One evaluation and/or one step; Ok(true) when the run is done.
        let advanced = (|| -> Result<bool> {
            let step = run.step();
            if (step as usize).is_multiple_of(cfg.eval_interval) || run.done() || last_saved.is_none() {
                let e = pollster::block_on(run.evaluate())?;
                if !e.train_loss.is_finite() || !e.val_loss.is_finite() {
                    return Err(diverged(step, out, last_saved));
                }
                say(&bar, eval_line(&e));
                log(
                    json!({"iter": e.iter, "train_loss": e.train_loss, "val_loss": e.val_loss, "accuracy": e.accuracy}),
                );
                let sample = pollster::block_on(run.sample(
                    "",
                    &SampleConfig { max_new_tokens: 120, temperature: 0.8, top_k: 0, top_p: 1.0, seed: step },
                ))?;
                say(&bar, format!("--- sample at step {step} ---\n{sample}\n---"));
                save(&run, out)?;
                last_saved = Some(step);
                recoveries = 0;
                chart::draw(&metrics_path, &out.join("loss.png"));
            }
            if run.done() {
                return Ok(true);
            }
            run.train_step()?;
            let step = run.step();
            if lose_device_at == Some(step) {
                lose_device_at = None;
                run.trainer.model.kernels.gpu.device.destroy();
            }
            bar.set_position(step);
            if (step as usize).is_multiple_of(cfg.log_interval) {
                let loss = pollster::block_on(run.loss())?;
                if !loss.is_finite() {
                    return Err(diverged(step, out, last_saved));
                }
                let (t0, s0) = last_log;
                let dt = t0.elapsed().as_secs_f64();
                let tok_s = (step - s0) as f64 * tokens_per_step / dt.max(1e-9);
                let ms = dt * 1e3 / (step - s0).max(1) as f64;
                let lr = cfg.train.lr_at(step as usize - 1);
                bar.set_message(format!("loss {loss:.4} | {tok_s:.0} tok/s | {ms:.1} ms/step | lr {lr:.2e}"));
                log(json!({"iter": step, "loss": loss, "lr": lr, "tokens_per_sec": tok_s, "ms_per_step": ms}));
                if bar.is_hidden() {
                    println!("step {step}: loss {loss:.4} | {tok_s:.0} tok/s | {ms:.1} ms/step | lr {lr:.2e}");
                }
                last_log = (Instant::now(), step);
            }
            Ok(false)
        })();
        match advanced {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                // A lost device (driver reset, GPU hang, a destroyed device) loses the weights and
                // optimizer state on it; the checkpoint on disk has them as of the last save.
                let (Some(why), Some(saved)) = (run.trainer.model.kernels.gpu.lost(), last_saved) else {
                    return Err(e);
                };
                recoveries += 1;
                if recoveries > MAX_RECOVERIES {
                    return Err(Error::Gpu(format!(
                        "the GPU device was lost {MAX_RECOVERIES} times since the checkpoint of step {saved} ({why}); \
                         giving up. The checkpoint in {} is intact: `wgpt train --resume {}`",
                        out.display(),
                        out.display()
                    )));
                }
                say(
                    &bar,
                    format!(
                        "the GPU device was lost at step {} ({why}); starting a new device and resuming from the \
                         checkpoint of step {saved}",
                        run.step()
                    ),
                );
                drop(run);
                run = load_checkpoint(super::kernels()?, out, |_| Ok(()))?;
                bar.set_position(run.step());
                last_log = (Instant::now(), run.step());
            }
        }
    }
    bar.finish();
    let steps = run.step() - first_step;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "done: {steps} steps in {secs:.1} s ({:.0} tokens/s overall, evals included); checkpoint, metrics.jsonl and loss.png in {}",
        steps as f64 * tokens_per_step / secs.max(1e-9),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Device losses in a row (with no checkpoint saved between them) that training recovers from.
const MAX_RECOVERIES: u32 = 3;

/// Fault injection for tests: `WGPT_LOSE_DEVICE_AT=N` destroys the GPU device right after step
/// N, as a driver reset or a GPU hang would, to exercise the recovery.
fn lose_device_at() -> Result<Option<u64>> {
    match std::env::var("WGPT_LOSE_DEVICE_AT") {
        Err(_) => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Error::Input(format!("WGPT_LOSE_DEVICE_AT must be a step number, got {v:?}"))),
    }
}

/// Prints above the progress bar, or plainly when the bar is hidden (output not a terminal).
fn say(bar: &ProgressBar, msg: String) {
    if bar.is_hidden() {
        println!("{msg}");
    } else {
        bar.println(msg);
    }
}

fn eval_line(e: &Eval) -> String {
    let acc = e.accuracy.map(|a| format!(", exact-match accuracy {:.0}%", a * 100.0)).unwrap_or_default();
    format!("step {}: train loss {:.4}, val loss {:.4}{acc}", e.iter, e.train_loss, e.val_loss)
}

/// The message for a NaN/inf loss: what happened, what was kept, what to do.
fn diverged(step: u64, out: &Path, last_saved: Option<u64>) -> Error {
    let kept = match last_saved {
        Some(s) => format!(
            "the checkpoint from step {s} in {dir} is intact; continue it with a lower learning rate: \
             `wgpt train --resume {dir} --lr <lower>` (e.g. a tenth of it)",
            dir = out.display()
        ),
        None => "no checkpoint was saved yet; restart with a lower --lr".into(),
    };
    Error::Input(format!(
        "training diverged at step {step}: the loss is not a finite number. Nothing more was saved; {kept}"
    ))
}

/// Writes the checkpoint so that a crash mid-write leaves the previous one whole: every file
/// goes to a temporary name first and is renamed into place.
fn save(run: &Run, out: &Path) -> Result<()> {
    let files = pollster::block_on(run.checkpoint())?;
    let items: [(&str, &[u8]); 4] = [
        ("config.json", files.config_json.as_bytes()),
        ("model.safetensors", &files.model),
        ("tokenizer.json", files.tokenizer_json.as_bytes()),
        (checkpoint::STATE_FILE, &files.state),
    ];
    for (name, bytes) in items {
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| Error::Io(format!("cannot write {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, out.join(name))
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", out.join(name).display())))?;
    }
    Ok(())
}
