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
use wgpt::options::Options;
use wgpt::precision::{Precision, Purpose};
use wgpt::run::builder::{self, Init, NewRun, Overrides, Resumed, TuneCache, Tuned};
use wgpt::run::driver::diverged_message;
use wgpt::run::format::{
    adapter_files, checkpoint_files, code_files, dir, RunFiles, ADAPTER_FILES, CORPUS_FILE, RUN_FILES,
};
use wgpt::run::{archive, DataSource, Driver, Eval, RunEvent, Status};
use wgpt::tokenizer::Tokenizer;
use wgpt::train::Optimizer;
use wgpt::{hf, read_file, Error, Result};

use super::chart;
use super::train_args::settings;
pub use super::train_args::TrainArgs;

/// Reads a corpus file, refusing a huge one before reading it.
pub(super) fn read_corpus(path: &str) -> Result<String> {
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
pub(super) fn tokenizer_for(spec: &str, text: &str) -> Result<Tokenizer> {
    if spec == "char" || spec.starts_with("bpe:") {
        Tokenizer::from_spec(spec, text)
    } else {
        Tokenizer::from_file(&Path::new(spec).join("tokenizer.json"))
    }
}

/// A new run from the flags, and its corpus (written into the run with its first checkpoint).
fn start(a: &TrainArgs, kernels: Arc<Kernels>, precision: Precision) -> Result<(Driver, String)> {
    let data = match (&a.data, &a.task) {
        (Some(path), _) => DataSource::File(path.display().to_string()),
        // without --data or --task: the addition task
        (None, task) => DataSource::Task(Task::parse(task.as_deref().unwrap_or("addition"))?.spec()),
    };
    let text = source_text(&data, a.seed)?;
    let (weights, model, tokenizer, spec) = match &a.init {
        Some(dir) => {
            // a model past the device's limits is refused before its weights are read
            hf::dir::load_config(dir)?.check_params(&kernels.gpu)?;
            let (weights, own) = hf::dir::load(dir)?;
            let (tok, spec) = match (&a.tokenizer, own) {
                (Some(spec), _) => (tokenizer_for(spec, &text)?, spec.clone()),
                (None, Some(tok)) => (tok, "dir".to_string()),
                (None, None) => {
                    return Err(Error::Input(format!("{} has no tokenizer.json; pass --tokenizer", dir.display())))
                }
            };
            let s = settings(a, spec.clone(), Some(&weights))?;
            let model = weights.config;
            (Init::Pretrained(weights), model, tok, s)
        }
        None => {
            let spec = a.tokenizer.clone().unwrap_or_else(|| "char".into());
            let tok = tokenizer_for(&spec, &text)?;
            let s = settings(a, spec, None)?;
            (Init::Random(a.seed), s.model(tok.vocab_size())?, tok, s)
        }
    };
    let mut cfg = spec.run_config(model, data, spec.tokenizer.clone())?;
    cfg.train.precision = precision;
    let new = NewRun { cfg, weights, tokenizer, optimizer_state: a.optimizer_state || !a.no_optimizer_state };
    Ok((launch(kernels, new, &text)?, text))
}

/// Builds `new` on `kernels` (its kernels tuned, or read from the cache), saying how they were
/// chosen.
pub(super) fn launch(kernels: Arc<Kernels>, new: NewRun, text: &str) -> Result<Driver> {
    let say =
        |tuned: &Tuned| eprintln!("kernels: {}, {} problems timed in {:.0} ms", tuned.source, tuned.timed, tuned.ms);
    pollster::block_on(builder::start(kernels, new, text, TuneCache::File(super::cache_path()), wall_clock, say))
}

fn wall_clock() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Unpacks a run zip into `out`, everything checked before anything is written.
fn unpack(zip: &Path, out: &Path, pause: Duration) -> Result<()> {
    let what = zip.display().to_string();
    let names: Vec<&str> = RUN_FILES.into_iter().chain(ADAPTER_FILES).collect();
    let mut entries = archive::read_entries(&what, &read_file(zip)?, &names)?;
    // a LoRA run's adapter comes along: its adapter_config.json names the base the run goes on naming
    let adapter: Vec<(&str, Vec<u8>)> =
        ADAPTER_FILES.into_iter().filter_map(|n| Some((n, entries.remove(n)?))).collect();
    let files = RunFiles::from_named(&what, entries)?;
    files.checkpoint.state()?;
    if dir::holds_a_run(out) {
        return Err(Error::Input(format!(
            "{} holds a run already; pass --out NEWDIR to unpack {} there, or --resume {} to go on with that run",
            out.display(),
            zip.display(),
            out.display()
        )));
    }
    let mut named = files.named();
    named.extend(adapter.iter().map(|(name, bytes)| (*name, bytes.as_slice())));
    dir::commit(out, &named, pause)?;
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
    if let Some(flag) = a.optimizer_flags().first() {
        return Err(Error::Input(format!(
            "{flag} does not apply to --resume: a run keeps the optimizer and schedule it started with"
        )));
    }
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
        let fresh = match run.cfg.train.optimizer.kind {
            Optimizer::AdamW => "AdamW's moments start",
            Optimizer::Sgd => "SGD's momentum buffers start",
            Optimizer::Muon => "Muon's momentum buffers and AdamW's moments start",
        };
        eprintln!(
            "its checkpoint was saved without the optimizer state (--no-optimizer-state): {fresh} fresh, from zero, at \
             step {} (the loss may wobble for a few steps)",
            run.step()
        );
    }
    Ok((driver, out, missing_corpus.then_some(text)))
}

pub fn train(a: TrainArgs, opts: &Options) -> Result<ExitCode> {
    if let Some(name) = &a.experiment {
        return super::experiment::run(&a, name, opts);
    }
    if a.resume.is_some() && a.arch.given() {
        return Err(Error::Input(
            "the architecture flags (--arch, --positions, ...) do not go with --resume: a run keeps its architecture"
                .into(),
        ));
    }
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
    train_loop(driver, &out, a.init.as_deref(), corpus, opts)
}

/// Drives the run to its end, drawing its events and writing its checkpoints into `out` (with
/// `corpus` in the first one); destroys the device after the step `opts` says, if any, to
/// exercise the recovery. A LoRA run's adapter_config.json names `base` (the --init directory
/// as given); resumed, the name it had, or else the run's own directory (whose
/// model.safetensors holds the base's weights, frozen).
pub(super) fn train_loop(
    mut driver: Driver,
    out: &Path,
    base: Option<&Path>,
    mut corpus: Option<String>,
    opts: &Options,
) -> Result<ExitCode> {
    let base = match base {
        Some(dir) => dir.display().to_string(),
        None => hf::peft::dir::read_config(out)
            .ok()
            .and_then(|c| c.base_model_name_or_path)
            .unwrap_or_else(|| out.display().to_string()),
    };
    let cfg = driver.run.cfg.clone();
    let tokens_per_step = cfg.train.batch_size as f64 * cfg.train.seq_len as f64 * cfg.train.grad_accum as f64;
    let bar = ProgressBar::new(cfg.max_iters as u64).with_position(driver.run.step());
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
            .expect("a valid progress template"),
    );
    let (started, first_step) = (Instant::now(), driver.run.step());
    let mut lose_device_at = opts.lose_device_at;
    let dest = Dest { dir: out, pause: opts.commit_pause, base };
    let mut diverged = None;
    let adapter = driver.run.gpu().info.name.clone();
    let throughput = |tokens_per_sec| Throughput::new(&cfg.model, cfg.train.seq_len, tokens_per_sec, &adapter);
    loop {
        let mut sink = |ev: RunEvent<'_>| show(&bar, &dest, &mut corpus, &mut diverged, &throughput, ev);
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

/// Where a run's checkpoints go: the directory, the test hook's pause in each commit, and the
/// base a LoRA run's adapter_config.json names.
struct Dest<'a> {
    dir: &'a Path,
    pause: Duration,
    base: String,
}

/// Draws one event of the run, and writes its checkpoints into `dest` (with a LoRA run's
/// adapter in peft's files beside them).
fn show(
    bar: &ProgressBar,
    dest: &Dest,
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
            files.extend(code_files(checkpoint));
            let adapter = adapter_files(checkpoint, &dest.base)?;
            files.extend(adapter.iter().map(|(name, bytes)| (*name, bytes.as_slice())));
            dir::commit(dest.dir, &files, dest.pause)?;
            chart::draw(metrics, &dest.dir.join("loss.png"));
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
                    dir = dest.dir.display()
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
    // a LoRA run's adapter as peft saves it, naming its base (the page reads the name back)
    let adapter: Vec<(&str, Vec<u8>)> =
        ADAPTER_FILES.into_iter().filter_map(|n| Some((n, std::fs::read(from.join(n)).ok()?))).collect();
    let mut named = files.named();
    named.extend(adapter.iter().map(|(name, bytes)| (*name, bytes.as_slice())));
    let bytes = archive::write(&named)?;
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
