//! `wgpt train`'s flags (clap) and the run settings they make: the preset's with the flags over
//! them.

use std::path::PathBuf;

use wgpt::data::Task;
use wgpt::model::lora::Targets;
use wgpt::model::{ArchChoice, Weights};
use wgpt::run::settings::{LoraSettings, DEFAULT_SEED};
use wgpt::run::RunSettings;
use wgpt::train::{Optimizer, Schedule};
use wgpt::{Error, Result};

use super::arch::ArchArgs;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Model shape and the training settings that go with it: tiny, baby (4 layers, 4 heads, 128
    /// dims, block 64: nanoGPT's CPU run), shakespeare-char or gpt2; the flags below override it.
    /// The vocabulary size comes from the tokenizer.
    #[arg(long, default_value = "baby")]
    pub preset: String,
    #[arg(long)]
    pub n_layer: Option<usize>,
    #[arg(long)]
    pub n_head: Option<usize>,
    #[arg(long)]
    pub n_embd: Option<usize>,
    /// Context length (and the training sequence length) [default: the preset's, or the --init
    /// model's].
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Sequences per micro-batch [default: the preset's].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Optimizer steps in all [default: the preset's]. With --resume: the run's, or this to
    /// extend it.
    #[arg(long)]
    pub max_iters: Option<usize>,
    /// Peak learning rate [default: the preset's]. With --resume it replaces the run's (lower it
    /// after a diverged run), and min_lr scales with it.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Learning rate at the end of the cosine decay (at max_iters) [default: lr / 10].
    #[arg(long)]
    pub min_lr: Option<f32>,
    /// Linear warmup steps [default: max_iters / 20, at most 100].
    #[arg(long)]
    pub warmup_iters: Option<usize>,
    /// Weight decay on every tensor of rank >= 2 (never on 1-D ones): decoupled for AdamW and
    /// Muon, added to the gradient for SGD (as torch.optim.SGD) [default: 0.1].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// AdamW's beta1 [default: 0.9].
    #[arg(long)]
    pub beta1: Option<f32>,
    /// AdamW's beta2 [default: 0.99].
    #[arg(long)]
    pub beta2: Option<f32>,
    /// Clip the global gradient norm to this (0 = off) [default: 1].
    #[arg(long)]
    pub grad_clip: Option<f32>,
    /// Dropout on the embeddings, residual branches and attention probabilities (GPT-2's
    /// embd_pdrop, resid_pdrop and attn_pdrop); 0 turns it off exactly [default: 0].
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Evaluate, print a sample and save a checkpoint every this many steps (and at step 0 and
    /// the end) [default: the preset's].
    #[arg(long)]
    pub eval_interval: Option<usize>,
    /// Batches per split in each evaluation [default: 20].
    #[arg(long)]
    pub eval_iters: Option<usize>,
    /// Read the loss back (and log it) every this many steps (and at step 1 and the end).
    #[arg(long, default_value_t = 10)]
    pub log_interval: usize,
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// A UTF-8 text corpus to train on.
    #[arg(long, conflicts_with = "task")]
    pub data: Option<PathBuf>,
    /// A built-in synthetic task, NAME[:k=v,...] (`wgpt tasks` lists them): addition (the
    /// default when no --data), reverse:max=12, modular-addition:p=97,frac=0.3, ...
    #[arg(long)]
    pub task: Option<String>,
    /// char (one token per character), bpe:N (byte-level BPE with N tokens trained on the
    /// corpus) or a model directory whose tokenizer.json to use. Default: char, or the --init
    /// model's own tokenizer.
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Output directory: the run (checkpoint, metrics.jsonl, corpus.txt) and loss.png [default:
    /// out; with --resume DIR: DIR; with --resume run.zip: run/ beside it].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Go on with a run: its directory, or a run zip (the page's Export run, `wgpt export-run`),
    /// unpacked into --out first. Same data, batches, optimizer (and its state) and lr schedule;
    /// --max-iters may extend it and --lr replace its learning rate (Muon's scales with it);
    /// other settings come from the run.
    #[arg(long, conflicts_with_all = ["init", "data", "task"])]
    pub resume: Option<PathBuf>,
    /// Fine-tune a pretrained HF GPT-2 directory (its shape and, by default, its tokenizer).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Save checkpoints without AdamW's moments ("model only": a third of the size, where disk
    /// space is short). Resumed, such a run goes on at its step with the moments starting from
    /// zero (a fresh AdamW), and goes on saving without them unless --optimizer-state.
    #[arg(long, overrides_with = "optimizer_state")]
    pub no_optimizer_state: bool,
    /// Save AdamW's moments again (with --resume of a run saved with --no-optimizer-state).
    #[arg(long, overrides_with = "no_optimizer_state")]
    pub optimizer_state: bool,
    // optimizers and schedules (issue 26)
    /// adamw, muon (Newton-Schulz orthogonalised momentum on the hidden matrices, AdamW on the
    /// embeddings and 1-D tensors) or sgd (with momentum) [default: adamw]. --lr is AdamW's or
    /// SGD's. A resumed run keeps its optimizer and the settings below.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Muon's peak learning rate for the hidden matrices (the schedule scales it as --lr)
    /// [default: 0.02].
    #[arg(long)]
    pub muon_lr: Option<f32>,
    /// Momentum of Muon or SGD [default: 0.95 for Muon, 0.9 for SGD].
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Nesterov momentum for Muon and SGD (on by default).
    #[arg(long, overrides_with = "no_nesterov")]
    pub nesterov: bool,
    /// Plain (heavy-ball) momentum for Muon and SGD.
    #[arg(long, overrides_with = "nesterov")]
    pub no_nesterov: bool,
    /// cosine (nanoGPT's decay to min_lr), wsd (hold the lr, cool down linearly to min_lr over
    /// the last 20%) or constant; after --warmup-iters of linear warmup [default: cosine].
    #[arg(long)]
    pub lr_schedule: Option<String>,
    // architecture (issue 25)
    #[command(flatten)]
    pub arch: ArchArgs,
    // issue 27, tasks
    /// On a task, count only the answers' tokens in the loss (the grokking setup); windows
    /// start at a line.
    #[arg(long)]
    pub answer_loss: bool,
    /// Start from the --task's recipe (`wgpt tasks` shows it: settings measured to reach 95%
    /// exact match) instead of --preset; the other flags still override it.
    #[arg(long, requires = "task")]
    pub recipe: bool,
    // issue 27, experiments
    /// Run a gallery entry (`wgpt experiments`): its runs one after the other into --out/RUN, and
    /// their losses overlaid in --out/loss.png. The entry's settings are its own: only --out,
    /// --steps, --data (the Tiny Shakespeare entries' corpus), --no-optimizer-state and the
    /// global flags apply.
    #[arg(long, value_name = "NAME", conflicts_with_all = EXPERIMENT_CONFLICTS)]
    pub experiment: Option<String>,
    /// With --experiment: cut each run to this many steps (a quick look; evaluated at the start
    /// and the end).
    #[arg(long, value_name = "N", requires = "experiment")]
    pub steps: Option<usize>,
    // issue 26, LoRA
    /// Fine-tune rank-R LoRA adapters (peft's LoRA) on the --init model, whose weights stay
    /// frozen: no gradients or optimizer state for them. A resumed LoRA run keeps its adapters
    /// and these settings.
    #[arg(long, value_name = "R", conflicts_with = "resume")]
    pub lora: Option<usize>,
    /// LoRA's alpha: the adapters' product is scaled by alpha/R [default: 2R].
    #[arg(long, requires = "lora")]
    pub lora_alpha: Option<f32>,
    /// The products that carry adapters, comma-separated: c_attn, c_proj (attention's and the
    /// MLP's, as peft matches the name), c_fc, or a module path such as attn.c_proj [default:
    /// c_attn,c_proj,c_fc].
    #[arg(long, requires = "lora")]
    pub lora_targets: Option<String>,
    /// Dropout on the adapters' input [default: 0].
    #[arg(long, requires = "lora")]
    pub lora_dropout: Option<f32>,
}

/// The flags that do not go with --experiment (the entry sets what they would).
const EXPERIMENT_CONFLICTS: [&str; 31] = [
    "resume",
    "init",
    "task",
    "preset",
    "grad_accum",
    "weight_decay",
    "beta1",
    "beta2",
    "grad_clip",
    "dropout",
    "eval_iters",
    "log_interval",
    "seed",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "batch_size",
    "max_iters",
    "lr",
    "min_lr",
    "warmup_iters",
    "eval_interval",
    "tokenizer",
    "optimizer",
    "muon_lr",
    "momentum",
    "lr_schedule",
    "answer_loss",
    "no_nesterov",
    "nesterov",
];

impl TrainArgs {
    /// The flags a resumed run cannot take: its optimizer and schedule are its own.
    pub fn optimizer_flags(&self) -> Vec<&'static str> {
        let given = [
            (self.optimizer.is_some(), "--optimizer"),
            (self.muon_lr.is_some(), "--muon-lr"),
            (self.momentum.is_some(), "--momentum"),
            (self.nesterov || self.no_nesterov, "--nesterov/--no-nesterov"),
            (self.lr_schedule.is_some(), "--lr-schedule"),
        ];
        given.into_iter().filter(|g| g.0).map(|g| g.1).collect()
    }
}

/// The preset's settings with the flags over them.
pub fn settings(a: &TrainArgs, tokenizer: String, init: Option<&Weights>) -> Result<RunSettings> {
    let names: Vec<String> = RunSettings::presets().into_iter().map(|(n, _)| n).collect();
    let mut s = match (a.recipe, a.task.as_deref()) {
        (true, Some(task)) => RunSettings::recipe(Task::parse(task)?.spec)?,
        _ => RunSettings::preset(&a.preset).ok_or_else(|| {
            Error::Input(format!("unknown preset {:?}; choose one of {}", a.preset, names.join(", ")))
        })?,
    };
    if let Some(w) = init {
        if a.arch.given() {
            return Err(Error::Input(
                "the architecture flags (--arch, --positions, ...) do not go with --init: the model's \
                 architecture is its own"
                    .into(),
            ));
        }
        (s.n_layer, s.n_head, s.n_embd, s.block_size) =
            (w.config.n_layer, w.config.n_head, w.config.n_embd, w.config.block_size);
        s.architecture = ArchChoice::of(&w.config.arch);
    }
    if init.is_none() {
        s.architecture = a.arch.choice().over(&s.architecture);
    }
    s.n_layer = a.n_layer.unwrap_or(s.n_layer);
    s.n_head = a.n_head.unwrap_or(s.n_head);
    s.n_embd = a.n_embd.unwrap_or(s.n_embd);
    s.block_size = a.block_size.unwrap_or(s.block_size);
    s.batch_size = a.batch_size.unwrap_or(s.batch_size);
    s.max_iters = a.max_iters.unwrap_or(s.max_iters);
    s.eval_interval = a.eval_interval.unwrap_or(s.eval_interval);
    s.lr = a.lr.unwrap_or(s.lr);
    s.min_lr = a.min_lr.or(s.min_lr);
    s.warmup_iters = a.warmup_iters.or(s.warmup_iters);
    s.grad_accum = a.grad_accum;
    s.weight_decay = a.weight_decay.or(s.weight_decay);
    s.beta1 = a.beta1.or(s.beta1);
    s.beta2 = a.beta2.or(s.beta2);
    s.grad_clip = a.grad_clip.or(s.grad_clip);
    s.dropout = a.dropout.or(s.dropout);
    s.eval_iters = a.eval_iters.or(s.eval_iters);
    s.log_interval = a.log_interval;
    s.seed = a.seed;
    s.tokenizer = tokenizer;
    s.answer_loss = a.answer_loss || s.answer_loss;
    let flag = |name: &'static str| move |e: Error| Error::Input(format!("{name}: {e}"));
    let optimizer = a.optimizer.as_deref().map(Optimizer::parse).transpose().map_err(flag("--optimizer"))?;
    s.optimizer = optimizer.or(s.optimizer);
    s.muon_lr = a.muon_lr.or(s.muon_lr);
    s.momentum = a.momentum.or(s.momentum);
    s.nesterov = (a.nesterov || a.no_nesterov).then_some(a.nesterov).or(s.nesterov);
    let schedule = a.lr_schedule.as_deref().map(Schedule::parse).transpose().map_err(flag("--lr-schedule"))?;
    s.lr_schedule = schedule.or(s.lr_schedule);
    if a.lora.is_some() && init.is_none() {
        return Err(Error::Input(
            "--lora fine-tunes a pretrained model: give it --init DIR (a resumed LoRA run keeps its own adapters)"
                .into(),
        ));
    }
    let targets = a.lora_targets.as_deref().map(Targets::parse).transpose().map_err(flag("--lora-targets"))?;
    *s.lora = LoraSettings { rank: a.lora, alpha: a.lora_alpha, targets, dropout: a.lora_dropout };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    fn parse(args: &[&str]) -> RunSettings {
        let cli = Cli::try_parse_from(std::iter::once("wgpt").chain(args.iter().copied())).unwrap();
        settings(&cli.train, "char".into(), None).unwrap()
    }

    #[test]
    fn a_recipe_is_its_flags_and_flags_go_over_it() {
        for spec in wgpt::data::TASKS {
            let Some(recipe) = &spec.recipe else { continue };
            let flags = recipe.flags().unwrap();
            let mut spelled = vec!["--task", spec.name, "--preset", recipe.preset];
            spelled.extend(flags.split_whitespace());
            assert_eq!(parse(&["--task", spec.name, "--recipe"]), parse(&spelled), "{}: {flags}", spec.name);
            assert_eq!(parse(&spelled), RunSettings::recipe(spec).unwrap(), "{}: the CLI's defaults", spec.name);
        }
        let over =
            parse(&["--task", "reverse", "--recipe", "--lr", "0.5", "--weight-decay", "0", "--positions", "rope"]);
        let recipe = RunSettings::recipe(wgpt::data::Task::parse("reverse").unwrap().spec).unwrap();
        assert_eq!((over.lr, over.weight_decay, over.block_size), (0.5, Some(0.0), recipe.block_size));
        assert_eq!(over.architecture.positions, Some(wgpt::model::Positions::Rope));
        assert!(Cli::try_parse_from(["wgpt", "--recipe"]).is_err(), "--recipe needs a --task");
    }
}
