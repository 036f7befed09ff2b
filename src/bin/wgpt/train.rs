//! `wgpt train`: nanoGPT's train.py on our GPU kernels through the run driver the page uses too,
//! drawn as a progress bar, saved in the run format (a directory, or a zip to resume from) that
//! the page's Export run and Import run share; and `wgpt export-run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use wgpt::data::{check_corpus_size, corpus_text, Task};
use wgpt::flops::Throughput;
use wgpt::kernels::Kernels;
use wgpt::model::Weights;
use wgpt::options::Options;
use wgpt::precision::{Precision, Purpose};
use wgpt::run::builder::{self, NewRun, Overrides, Resumed, TuneCache, Tuned};
use wgpt::run::driver::diverged_message;
use wgpt::run::format::{checkpoint_files, dir, RunFiles, CORPUS_FILE};
use wgpt::run::settings::{DEFAULT_SEED, EVAL_ITERS};
use wgpt::run::{archive, DataSource, Driver, Eval, RunEvent, RunSettings, Status};
use wgpt::tokenizer::Tokenizer;
use wgpt::train::TrainConfig;
use wgpt::{hf, read_file, Error, Result};

use super::chart;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Model shape and the training settings that go with it: tiny, baby (4 layers, 4 heads, 128
    /// dims, block 64: nanoGPT's CPU run), shakespeare-char or gpt2; the flags below override it.
    /// The vocabulary size comes from the tokenizer.
    #[arg(long, default_value = "baby")]
    preset: String,
    #[arg(long)]
    n_layer: Option<usize>,
    #[arg(long)]
    n_head: Option<usize>,
    #[arg(long)]
    n_embd: Option<usize>,
    /// Context length (and the training sequence length) [default: the preset's, or the --init
    /// model's].
    #[arg(long)]
    block_size: Option<usize>,
    /// Sequences per micro-batch [default: the preset's].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Optimizer steps in all [default: the preset's]. With --resume: the run's, or this to
    /// extend it.
    #[arg(long)]
    max_iters: Option<usize>,
    /// Peak learning rate [default: the preset's]. With --resume it replaces the run's (lower it
    /// after a diverged run), and min_lr scales with it.
    #[arg(long)]
    lr: Option<f32>,
    /// Learning rate at the end of the cosine decay (at max_iters) [default: lr / 10].
    #[arg(long)]
    min_lr: Option<f32>,
    /// Linear warmup steps [default: max_iters / 20, at most 100].
    #[arg(long)]
    warmup_iters: Option<usize>,
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    weight_decay: f32,
    #[arg(long, default_value_t = TrainConfig::default().beta1)]
    beta1: f32,
    #[arg(long, default_value_t = TrainConfig::default().beta2)]
    beta2: f32,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = TrainConfig::default().grad_clip)]
    grad_clip: f32,
    /// Dropout on the embeddings, residual branches and attention probabilities (GPT-2's
    /// embd_pdrop, resid_pdrop and attn_pdrop); 0 turns it off exactly.
    #[arg(long, default_value_t = TrainConfig::default().dropout)]
    dropout: f32,
    /// Evaluate, print a sample and save a checkpoint every this many steps (and at step 0 and
    /// the end) [default: the preset's].
    #[arg(long)]
    eval_interval: Option<usize>,
    /// Batches per split in each evaluation.
    #[arg(long, default_value_t = EVAL_ITERS)]
    eval_iters: usize,
    /// Read the loss back (and log it) every this many steps (and at step 1 and the end).
    #[arg(long, default_value_t = 10)]
    log_interval: usize,
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// A UTF-8 text corpus to train on.
    #[arg(long, conflicts_with = "task")]
    data: Option<PathBuf>,
    /// A built-in synthetic task, NAME[:k=v,...] (`wgpt tasks` lists them): addition (the
    /// default when no --data), reverse:max=12, modular-addition:p=97,frac=0.3, ...
    #[arg(long)]
    task: Option<String>,
    /// char (one token per character), bpe:N (byte-level BPE with N tokens trained on the
    /// corpus) or a model directory whose tokenizer.json to use. Default: char, or the --init
    /// model's own tokenizer.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Output directory: the run (checkpoint, metrics.jsonl, corpus.txt) and loss.png [default:
    /// out; with --resume DIR: DIR; with --resume run.zip: run/ beside it].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Go on with a run: its directory, or a run zip (the page's Export run, `wgpt export-run`),
    /// unpacked into --out first. Same data, batches, optimizer state and lr schedule; --max-iters
    /// may extend it and --lr replace its learning rate; other settings come from the run.
    #[arg(long, conflicts_with_all = ["init", "data", "task"])]
    resume: Option<PathBuf>,
    /// Fine-tune a pretrained HF GPT-2 directory (its shape and, by default, its tokenizer).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Save checkpoints without AdamW's moments ("model only": a third of the size, where disk
    /// space is short). Resumed, such a run goes on at its step with the moments starting from
    /// zero (a fresh AdamW), and goes on saving without them unless --optimizer-state.
    #[arg(long, overrides_with = "optimizer_state")]
    no_optimizer_state: bool,
    /// Save AdamW's moments again (with --resume of a run saved with --no-optimizer-state).
    #[arg(long, overrides_with = "no_optimizer_state")]
    optimizer_state: bool,
    // issue 27, tasks
    /// On a task, count only the answers' tokens in the loss (the grokking setup); windows
    /// start at a line.
    #[arg(long)]
    answer_loss: bool,
}

/// Reads a corpus file, refusing a huge one before reading it.
fn read_corpus(path: &str) -> Result<String> {
    if let Ok(meta) = std::fs::metadata(path) {
        check_corpus_size(path, meta.len())?;
    }
    corpus_text(path, &read_file(Path::new(path))?)
}

/// The corpus a saved run refers to, where it has no corpus.txt (a run saved before runs kept
/// one): its file, or its task regenerated.
fn source_text(source: &DataSource, seed: u64) -> Result<String> {
    match (source.task_text(seed), source) {
        (Some(text), _) => text,
        (None, DataSource::File(path)) => read_corpus(path),
        (None, _) => Err(Error::Input(format!(
            "this run trained on text from the page ({}) and has no corpus.txt: resume it from the page's Export run \
             zip, which holds the corpus",
            source.name()
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

/// The preset's settings with the flags over them.
fn settings(a: &TrainArgs, tokenizer: String, init: Option<&Weights>) -> Result<RunSettings> {
    let names: Vec<String> = RunSettings::presets().into_iter().map(|(n, _)| n).collect();
    let mut s = RunSettings::preset(&a.preset)
        .ok_or_else(|| Error::Input(format!("unknown preset {:?}; choose one of {}", a.preset, names.join(", "))))?;
    if let Some(w) = init {
        (s.n_layer, s.n_head, s.n_embd, s.block_size) =
            (w.config.n_layer, w.config.n_head, w.config.n_embd, w.config.block_size);
    }
    s.n_layer = a.n_layer.unwrap_or(s.n_layer);
    s.n_head = a.n_head.unwrap_or(s.n_head);
    s.n_embd = a.n_embd.unwrap_or(s.n_embd);
    s.block_size = a.block_size.unwrap_or(s.block_size);
    s.batch_size = a.batch_size.unwrap_or(s.batch_size);
    s.max_iters = a.max_iters.unwrap_or(s.max_iters);
    s.eval_interval = a.eval_interval.unwrap_or(s.eval_interval);
    s.lr = a.lr.unwrap_or(s.lr);
    s.min_lr = a.min_lr;
    s.warmup_iters = a.warmup_iters;
    s.grad_accum = a.grad_accum;
    s.weight_decay = Some(a.weight_decay);
    s.beta1 = Some(a.beta1);
    s.beta2 = Some(a.beta2);
    s.grad_clip = Some(a.grad_clip);
    s.dropout = Some(a.dropout);
    s.eval_iters = Some(a.eval_iters);
    s.log_interval = a.log_interval;
    s.seed = a.seed;
    s.tokenizer = tokenizer;
    s.answer_loss = a.answer_loss;
    Ok(s)
}

/// A new run from the flags, and its corpus (written into the run with its first checkpoint).
fn start(a: &TrainArgs, kernels: Arc<Kernels>, precision: Precision) -> Result<(Driver, String)> {
    let data = match (&a.data, &a.task) {
        (Some(path), _) => DataSource::File(path.display().to_string()),
        (None, Some(task)) => DataSource::Task(Task::parse(task)?.spec()),
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
            let s = settings(a, spec.clone(), Some(&weights))?;
            (weights, tok, s)
        }
        None => {
            let spec = a.tokenizer.clone().unwrap_or_else(|| "char".into());
            let tok = tokenizer_for(&spec, &text)?;
            let s = settings(a, spec, None)?;
            (Weights::random(s.model(tok.vocab_size())?, a.seed), tok, s)
        }
    };
    let mut cfg = spec.run_config(weights.config, data, spec.tokenizer.clone())?;
    cfg.train.precision = precision;
    let new = NewRun { cfg, weights, tokenizer, optimizer_state: a.optimizer_state || !a.no_optimizer_state };
    let say =
        |tuned: &Tuned| eprintln!("kernels: {}, {} problems timed in {:.0} ms", tuned.source, tuned.timed, tuned.ms);
    let driver =
        pollster::block_on(builder::start(kernels, new, &text, TuneCache::File(super::cache_path()), wall_clock, say))?;
    Ok((driver, text))
}

fn wall_clock() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Unpacks a run zip into `out`, everything checked before anything is written.
fn unpack(zip: &Path, out: &Path, pause: Duration) -> Result<()> {
    let files = archive::read(&zip.display().to_string(), &read_file(zip)?)?;
    files.checkpoint.state()?;
    if dir::holds_a_run(out) {
        return Err(Error::Input(format!(
            "{} holds a run already; pass --out NEWDIR to unpack {} there, or --resume {} to go on with that run",
            out.display(),
            zip.display(),
            out.display()
        )));
    }
    dir::commit(out, &files.named(), pause)?;
    eprintln!("unpacked {} into {}", zip.display(), out.display());
    Ok(())
}

/// The run in `--resume` (a directory, or a zip unpacked into --out first), where to save it,
/// and its corpus where that directory lacks corpus.txt.
fn resume(
    a: &TrainArgs,
    kernels: Arc<Kernels>,
    from: &Path,
    precision: Precision,
    opts: &Options,
) -> Result<(Driver, PathBuf, Option<String>)> {
    let dir_of_run = if from.is_file() {
        let out = a.out.clone().unwrap_or_else(|| from.with_file_name(from.file_stem().unwrap_or_default()));
        if out.is_file() {
            return Err(Error::Input(format!("{} is a file; pass --out DIR to unpack the run into", out.display())));
        }
        unpack(from, &out, opts.commit_pause)?;
        out
    } else if from.is_dir() {
        from.to_path_buf()
    } else {
        return Err(Error::Input(format!("{} is neither a run directory nor a run zip", from.display())));
    };
    let RunFiles { checkpoint, metrics, corpus } = dir::read(&dir_of_run)?;
    let saved = checkpoint.state()?.run;
    let out = a.out.clone().unwrap_or_else(|| dir_of_run.clone());
    if out != dir_of_run && dir::holds_a_run(&out) {
        return Err(Error::Input(format!(
            "{} holds another run; pass an --out that holds none, or leave --out out to go on in {}",
            out.display(),
            dir_of_run.display()
        )));
    }
    // a directory without corpus.txt (or a new --out) gets it, and the run, at once
    let missing_corpus = corpus.is_none() || !out.join(CORPUS_FILE).exists();
    let text = match corpus {
        Some(text) => text,
        None => source_text(&saved.data, saved.seed)?,
    };
    let over = Overrides {
        max_iters: a.max_iters,
        lr: a.lr,
        // --precision (f32 by default, as on every command) decides; the master weights are f32
        precision: Some(precision),
        optimizer_state: (a.no_optimizer_state || a.optimizer_state).then_some(a.optimizer_state),
        save: missing_corpus || out != dir_of_run,
    };
    let resumed = pollster::block_on(builder::resume(kernels, checkpoint, metrics, &text, over, wall_clock));
    let Resumed { driver, notes } = resumed.map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", dir_of_run.display())),
        e => e,
    })?;
    for note in notes {
        eprintln!("{note}");
    }
    let run = &driver.run;
    eprintln!("resuming {} at step {}", from.display(), run.step());
    if run.fresh_moments {
        eprintln!(
            "its checkpoint was saved without the optimizer state (--no-optimizer-state): AdamW's moments start \
             fresh, from zero, at step {} (the loss may wobble for a few steps)",
            run.step()
        );
    }
    Ok((driver, out, missing_corpus.then_some(text)))
}

pub fn train(a: TrainArgs, opts: &Options) -> Result<ExitCode> {
    // a bad task is refused before the adapter is opened
    a.task.as_deref().map(Task::parse).transpose()?;
    let kernels = super::kernels(opts)?;
    // f32, or mixed precision (f16 weight operands) where the adapter has shader-f16; auto: f32
    let precision = super::precision(opts, &kernels, Purpose::Training);
    let (mut driver, out, corpus) = match &a.resume {
        Some(from) => resume(&a, kernels, from, precision, opts)?,
        None => {
            let (driver, text) = start(&a, kernels, precision)?;
            (driver, a.out.clone().unwrap_or_else(|| PathBuf::from("out")), Some(text))
        }
    };
    driver.run.set_submit_budget(opts.submit_budget_ms);
    if !driver.optimizer_state() {
        eprintln!("checkpoints are saved without AdamW's moments (model only); --optimizer-state saves them again");
    }
    if a.resume.is_none() && dir::holds_a_run(&out) {
        eprintln!("note: a new run in {}: its first checkpoint replaces the run there", out.display());
    }
    let (run, c) = (&driver.run, &driver.run.cfg);
    eprintln!(
        "model: {} layers, {} heads, {} dims, block {}, vocab {} ({:.2}M parameters); data: {}, {} train / {} val tokens",
        c.model.n_layer,
        c.model.n_head,
        c.model.n_embd,
        c.model.block_size,
        c.model.vocab_size,
        c.model.num_params() as f64 / 1e6,
        c.data.name(),
        run.data.train.len(),
        run.data.val.len()
    );
    train_loop(driver, &out, corpus, opts)
}

/// Drives the run to its end, drawing its events and writing its checkpoints into `out` (with
/// `corpus` in the first one); destroys the device after the step `opts` says, if any, to
/// exercise the recovery.
fn train_loop(mut driver: Driver, out: &Path, mut corpus: Option<String>, opts: &Options) -> Result<ExitCode> {
    let cfg = driver.run.cfg.clone();
    let tokens_per_step = (cfg.train.batch_size * cfg.train.seq_len * cfg.train.grad_accum) as f64;
    let bar = ProgressBar::new(cfg.max_iters as u64).with_position(driver.run.step());
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
            .expect("a valid progress template"),
    );
    let (started, first_step) = (Instant::now(), driver.run.step());
    let (mut lose_device_at, pause) = (opts.lose_device_at, opts.commit_pause);
    let mut diverged = None;
    let adapter = driver.run.gpu().info.name.clone();
    let throughput = |tokens_per_sec| Throughput::new(&cfg.model, cfg.train.seq_len, tokens_per_sec, &adapter);
    loop {
        let mut sink = |ev: RunEvent<'_>| show(&bar, out, pause, &mut corpus, &mut diverged, &throughput, ev);
        let status = match pollster::block_on(driver.advance(&mut sink)) {
            Ok(status) => status,
            Err(e) => {
                // a lost device (driver reset, GPU hang) loses the weights and optimizer state on
                // it: the driver goes on from its last checkpoint on a new one
                pollster::block_on(driver.recover(e, &mut sink)).map_err(|e| match e {
                    Error::Gpu(m) if m.contains("giving up") => Error::Gpu(format!(
                        "{m}. The checkpoint in {dir} is intact: `wgpt train --resume {dir}`",
                        dir = out.display()
                    )),
                    e => e,
                })?;
                Status::Running
            }
        };
        match status {
            Status::Running => {}
            Status::Done => break,
            Status::Diverged => return Err(diverged.unwrap_or_else(|| Error::Input("training diverged".into()))),
        }
        if lose_device_at == Some(driver.run.step()) {
            lose_device_at = None;
            driver.run.gpu().device.destroy();
        }
        bar.set_position(driver.run.step());
    }
    bar.finish();
    let steps = driver.run.step() - first_step;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "done: {steps} steps in {secs:.1} s ({:.0} tokens/s overall, evals included); the run (checkpoint, metrics.jsonl, \
         corpus.txt) and loss.png in {}",
        steps as f64 * tokens_per_step / secs.max(1e-9),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Draws one event of the run, and writes its checkpoints into `out` (each commit pausing as
/// long as the test hook says).
fn show(
    bar: &ProgressBar,
    out: &Path,
    pause: Duration,
    corpus: &mut Option<String>,
    diverged: &mut Option<Error>,
    throughput: &dyn Fn(f64) -> Throughput,
    ev: RunEvent<'_>,
) -> Result<()> {
    match ev {
        RunEvent::Progress(p) => {
            let rate = throughput(p.tokens_per_sec);
            let mut msg = format!("loss {:.4} | {rate} | {:.1} ms/step | lr {:.2e}", p.loss, p.ms_per_step, p.lr);
            if let Some(d) = &p.dynamics {
                msg.push_str(&format!(" | grad norm {:.3}", d.grad_norm));
            }
            if let Some(s) = p.loss_scale {
                msg.push_str(&format!(" | loss scale {s}"));
            }
            if bar.is_hidden() {
                println!("step {}: {msg}", p.step);
            }
            bar.set_message(msg);
        }
        RunEvent::Eval { eval, sample } => {
            say(bar, eval_line(&eval));
            say(bar, format!("--- sample at step {} ---\n{sample}\n---", eval.iter));
        }
        RunEvent::Saved { checkpoint, metrics, .. } => {
            let mut files = checkpoint_files(checkpoint, metrics);
            let text = corpus.take();
            if let Some(text) = &text {
                files.push((CORPUS_FILE, text.as_bytes()));
            }
            dir::commit(out, &files, pause)?;
            chart::draw(metrics, &out.join("loss.png"));
        }
        RunEvent::Recovered { lost_at, step, reason } => say(
            bar,
            format!(
                "the GPU device was lost at step {lost_at} ({reason}); a new device resumed from the checkpoint of \
                 step {step}"
            ),
        ),
        RunEvent::Diverged { step, loss, lr, saved } => {
            let kept = match saved {
                Some(s) => format!(
                    "the checkpoint from step {s} in {dir} is intact; continue it with a lower learning rate: \
                     `wgpt train --resume {dir} --lr <lower>` (e.g. a tenth of it)",
                    dir = out.display()
                ),
                None => "no checkpoint was saved yet; restart with a lower --lr".into(),
            };
            *diverged =
                Some(Error::Input(format!("{}. Nothing more was saved; {kept}", diverged_message(step, loss, lr))));
        }
        RunEvent::Done { .. } => {}
    }
    Ok(())
}

/// `wgpt export-run DIR run.zip`: the run in DIR (its checkpoint, metrics and corpus) as one zip,
/// for the page's Import run or `wgpt train --resume run.zip` on another machine.
pub fn export_run(from: &Path, zip: &Path) -> Result<ExitCode> {
    let mut files = dir::read(from)?;
    let state = files.checkpoint.state()?;
    if files.corpus.is_none() {
        files.corpus = Some(source_text(&state.run.data, state.run.seed)?);
    }
    let bytes = archive::write(&files.named())?;
    let tmp = zip.with_extension("zip.tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| Error::Io(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, zip).map_err(|e| Error::Io(format!("cannot write {}: {e}", zip.display())))?;
    println!(
        "{}: the run of {} at step {} of {} ({} bytes)",
        zip.display(),
        from.display(),
        state.step,
        state.run.max_iters,
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
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
