//! The native `wgpt` command line: `train`, `tasks`, `experiments`, `export-run`, `sample`,
//! `inspect`, `parity`, `forward`, `merge-lora` and `bench`, all on the same library the page uses
//! (the `cli` feature).

mod arch;
mod bench;
mod chart;
mod experiment;
mod inspect;
mod sample;
mod train;
mod train_args;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use wgpt::kernels::{Family, Kernels};
use wgpt::model::Gpt2;
use wgpt::options::{vars, Options};
use wgpt::parity::{check, ParityFile};
use wgpt::precision::{Precision, Purpose};
use wgpt::tokenizer::Tokenizer;
use wgpt::{hf, read_file, Error, Gpu, Result};

#[derive(Parser)]
#[command(
    name = "wgpt",
    version,
    about = "GPT-2 on WebGPU: our own WGSL kernels, equal to Hugging Face's GPT2LMHeadModel"
)]
struct Cli {
    /// Kernel family: auto (per adapter: tuned on first use and cached, or a built-in table
    /// on software adapters), portable, subgroup or tiled. Overrides WGPT_KERNELS.
    #[arg(long, global = true, value_name = "auto|portable|subgroup|tiled")]
    kernels: Option<String>,
    /// Numeric precision: f32 (HF's numbers), f16 (the matrix products read f16 copies of the
    /// weights, accumulating in f32, where the adapter has shader-f16; f32 with a note
    /// elsewhere; training keeps f32 master weights, activations, gradients and AdamW, with
    /// loss scaling) or auto (f16 for inference where available, f32 for training).
    #[arg(long, global = true, value_name = "f32|f16|auto", default_value = "f32", value_parser = parse_precision)]
    precision: Precision,
    /// Split a training step, prefill or evaluation into several submits at layer boundaries
    /// where one would run longer than this many milliseconds, so no driver resets the GPU (TDR);
    /// 0: one submit always. Overrides WGPT_SUBMIT_BUDGET_MS (default 500).
    #[arg(long, global = true, value_name = "MS")]
    submit_budget_ms: Option<f64>,
    #[command(subcommand)]
    command: Command,
}

fn parse_precision(name: &str) -> std::result::Result<Precision, String> {
    Precision::parse(name).map_err(|e| e.to_string())
}

/// The options of this invocation: the environment variables (see [`vars`]), with the flags
/// over them (a variable a flag overrides is not read).
fn options(cli: &Cli) -> Result<Options> {
    let overridden = |name: &str| match name {
        vars::KERNELS => cli.kernels.is_some(),
        vars::SUBMIT_BUDGET_MS => cli.submit_budget_ms.is_some(),
        _ => false,
    };
    let mut o = Options::from_vars(|name| std::env::var(name).ok().filter(|_| !overridden(name)))?;
    if let Some(ms) = cli.submit_budget_ms {
        o.submit_budget_ms = Options::check_budget(ms, "--submit-budget-ms")?;
    }
    if let Some(name) = &cli.kernels {
        o.family = Family::parse(name)?;
    }
    o.precision = cli.precision;
    Ok(o)
}

/// --precision resolved for `purpose` on `k`'s adapter; says on stderr what runs (and why, where
/// that is not what was asked).
pub fn precision(opts: &Options, k: &Kernels, purpose: Purpose) -> Precision {
    let asked = opts.precision;
    let r = asked.resolve(purpose, k.gpu.shader_f16());
    if let Some(note) = &r.note {
        eprintln!("note: {note}");
    }
    if asked != Precision::F32 {
        eprintln!("precision: {} (asked {})", r.runs.name(), asked.name());
    }
    r.runs
}

#[derive(Subcommand)]
enum Command {
    /// Train a GPT-2 on a corpus or a built-in task (nanoGPT's train.py; with no arguments:
    /// the baby model on multi-digit addition, offline).
    Train(Box<crate::train::TrainArgs>),
    /// List the built-in tasks (`wgpt train --task NAME[:k=v,...]`): a line each, its name first,
    /// then what a model must learn, its parameters with defaults and bounds, and an example.
    Tasks,
    /// List the experiments (`wgpt train --experiment NAME`): a line each, its name first, then
    /// what it compares, its runs and its corpus.
    Experiments,
    /// Zip a run directory (checkpoint, metrics.jsonl, corpus.txt) into one file: the page's
    /// Import run takes it, and `wgpt train --resume run.zip` goes on with it on another machine.
    ExportRun {
        /// The run directory (`wgpt train --out`'s).
        dir: PathBuf,
        /// The zip to write.
        zip: PathBuf,
    },
    /// Generate text from a model directory with the KV cache, streamed to stdout as it is
    /// generated; tokens/s on stderr at the end.
    Sample(crate::sample::SampleArgs),
    /// Show a model directory's parameter table (every HF name, shape, count, what it is
    /// for, and the total), and with --prompt its tokens and the logit lens.
    Inspect(crate::inspect::InspectArgs),
    /// Check our GPU forward pass against a parity file made by HF transformers
    /// (tests/fixtures/make_parity.py); exits 1 when past tolerance.
    Parity {
        /// A parity .safetensors file (e.g. ../shared/data/parity/baby.safetensors).
        file: PathBuf,
    },
    /// Run a model directory on a prompt and print the most likely next tokens.
    Forward {
        /// HF model directory: config.json, model.safetensors, tokenizer.json (for --text); or a
        /// peft LoRA adapter directory, run on its base.
        #[arg(long)]
        model: PathBuf,
        /// The base model directory of an adapter --model (default: the adapter's
        /// base_model_name_or_path, when that is a local directory).
        #[arg(long)]
        base: Option<PathBuf>,
        /// Prompt text, tokenized with the directory's tokenizer.json.
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        text: Option<String>,
        /// Prompt as comma-separated token ids, e.g. 464,3290,318.
        #[arg(long, value_delimiter = ',')]
        ids: Option<Vec<u32>>,
        /// How many of the most likely next tokens to print.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Write the logits of every position, [T, V] f32, to this safetensors file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Merge a peft LoRA adapter directory into its base (W + (alpha/r)·B·A) and write the
    /// result as a plain HF model directory (config.json, model.safetensors, tokenizer.json,
    /// generation_config.json) that transformers loads without peft.
    MergeLora {
        /// The adapter directory (adapter_config.json, adapter_model.safetensors).
        dir: PathBuf,
        /// The new directory to write.
        out: PathBuf,
        /// The base model directory (default: the adapter's base_model_name_or_path, when that
        /// is a local directory).
        #[arg(long)]
        base: Option<PathBuf>,
    },
    /// Time a workload on random weights of a preset's shapes (wall clock; prints a table).
    Bench(crate::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.precision == Precision::F16
        && matches!(cli.command, Command::Parity { .. } | Command::Forward { .. } | Command::Inspect(_))
    {
        eprintln!("note: --precision f16 applies to train, sample and bench; this command runs in f32");
    }
    let opts = match options(&cli) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Train(args) => crate::train::train(*args, &opts),
        Command::Tasks => tasks(),
        Command::Experiments => crate::experiment::list(),
        Command::ExportRun { dir, zip } => crate::train::export_run(&dir, &zip),
        Command::Parity { file } => parity(file, &opts),
        Command::Forward { model, base, text, ids, top, out } => {
            hf::peft::dir::Source::resolve(&model, base.as_deref()).and_then(|m| forward(&opts, m, text, ids, top, out))
        }
        Command::MergeLora { dir, out, base } => merge_lora(&dir, &out, base.as_deref()),
        Command::Sample(args) => crate::sample::sample(args, &opts),
        Command::Inspect(args) => crate::inspect::inspect(args, &opts),
        Command::Bench(args) => crate::bench::bench(args, &opts),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The kernels of the default adapter (asked for what `opts.device` says), of `opts`' family.
pub fn kernels(opts: &Options) -> Result<Arc<Kernels>> {
    let gpu = pollster::block_on(Gpu::new(opts.device))?;
    eprintln!("adapter: {} (kernels: {})", gpu.describe(), opts.family.name());
    Ok(Arc::new(Kernels::with_family(&gpu, opts.family)?))
}

/// The model of `source` on [`kernels`], its submits split at `opts`' budget, and its tokenizer
/// if it has one. A model past the device's limits is refused from its config.json, before its
/// weights are read.
pub fn model(opts: &Options, source: &hf::peft::dir::Source) -> Result<(Gpt2, Option<Tokenizer>)> {
    let kernels = kernels(opts)?;
    source.config()?.check_params(&kernels.gpu)?;
    let (weights, tokenizer) = source.load()?;
    Ok((Gpt2::new(kernels, &weights)?.with_submit_budget(opts.submit_budget_ms), tokenizer))
}

/// The kernel tuning cache file (crate::tune): `WGPT_TUNE_CACHE` if set, else wgpt/tune.json in
/// the user's cache directory (XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS,
/// %LOCALAPPDATA% on Windows); None where none is known.
pub fn cache_path() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("WGPT_TUNE_CACHE") {
        return Some(p);
    }
    let dir = if cfg!(target_os = "windows") {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    }?;
    Some(dir.join("wgpt").join("tune.json"))
}

fn tasks() -> Result<ExitCode> {
    for spec in wgpt::data::TASKS {
        let example = wgpt::data::Task::parse(spec.name)?.examples(1, 1).concat();
        let recipe = match &spec.recipe {
            Some(r) => format!("recipe (--recipe): --preset {} {}: 95% at step {}", r.preset, r.flags()?, r.reached),
            None => "no recipe yet".to_string(),
        };
        println!("{:<19} {}; params: {}; e.g. {example}; {recipe}", spec.name, spec.describe, spec.params_line());
    }
    Ok(ExitCode::SUCCESS)
}

fn parity(file: PathBuf, opts: &Options) -> Result<ExitCode> {
    let bytes = read_file(&file)?;
    let p = ParityFile::parse(&file.display().to_string(), &bytes)?;
    let c = p.weights.config;
    println!(
        "{}: n_layer {} n_head {} n_embd {} block_size {} vocab_size {}, batch {}x{}",
        file.display(),
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        c.vocab_size,
        p.b,
        p.t
    );
    let k = kernels(opts)?;
    let checks = pollster::block_on(check(k, &p, opts.submit_budget_ms))?;
    for check in &checks {
        println!("{check}");
    }
    let failed = checks.iter().filter(|c| !c.passed()).count();
    println!("{} passed, {failed} failed", checks.len() - failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn merge_lora(dir: &Path, out: &Path, base: Option<&Path>) -> Result<ExitCode> {
    let source = hf::peft::dir::Source::resolve(dir, base)?;
    source.merge_into(out)?;
    let base = source.base.as_deref().unwrap_or(dir);
    println!("{} merged into {} and written to {}", dir.display(), base.display(), out.display());
    Ok(ExitCode::SUCCESS)
}

fn forward(
    opts: &Options,
    source: hf::peft::dir::Source,
    text: Option<String>,
    ids: Option<Vec<u32>>,
    top: usize,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let (model, tokenizer) = model(opts, &source)?;
    let ids = match (text, ids) {
        (_, Some(ids)) => ids,
        (Some(text), None) => {
            let tok = tokenizer.as_ref().ok_or_else(|| {
                Error::Input(format!("{} has no tokenizer.json; pass --ids instead of --text", source.dir.display()))
            })?;
            tok.encode(&text)?
        }
        (None, None) => unreachable!("clap requires --text or --ids"),
    };
    if ids.is_empty() {
        return Err(Error::Input("the prompt is empty; give at least one token".into()));
    }
    let t = ids.len();
    let f = model.forward_plan(1, t)?;
    model.forward(&f, &ids, None)?;
    let logits = pollster::block_on(model.kernels.gpu.read(&f.acts.logits))?;
    let v = model.config.vocab_size;
    let last = &logits[(t - 1) * v..t * v];
    let max = last.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = last.iter().map(|&x| (x - max).exp()).sum();
    let mut order: Vec<usize> = (0..v).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    println!("prompt: {t} tokens {ids:?}");
    println!("{:>5}  {:>8}  {:>10}  token", "rank", "id", "prob");
    for (rank, &id) in order.iter().take(top).enumerate() {
        let p = (last[id] - max).exp() / sum;
        let shown = match &tokenizer {
            Some(tok) => format!("{:?}", tok.decode(&[id as u32])?),
            None => String::new(),
        };
        println!("{:>5}  {id:>8}  {p:>10.6}  {shown}", rank + 1);
    }
    if let Some(path) = out {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![t, v], bytemuck::cast_slice(&logits))
                .map_err(|e| Error::Format(format!("cannot serialize logits: {e}")))?;
        let bytes = safetensors::serialize([("logits", view)], None)
            .map_err(|e| Error::Format(format!("cannot serialize logits: {e}")))?;
        std::fs::write(&path, bytes).map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))?;
        println!("logits [{t}, {v}] written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
