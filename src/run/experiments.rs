//! The experiments gallery: one-click comparisons, each two or three runs trained one after the
//! other on the same data from the same seed, with a paragraph on what to look for and what the
//! result means. Both fronts read this one table: `wgpt experiments` and `wgpt train --experiment`
//! (the CLI), and the page's gallery through the engine's manifest ([`ExperimentInfo`]). A run is
//! a few run-settings keys (JSON) over the entry's base, itself a few keys over a preset's
//! settings, so the runs differ in exactly what the entry compares.

use serde::{Deserialize, Serialize};

use crate::data::Task;
use crate::flops::flops_per_token;
use crate::run::link::{Link, LinkCorpus};
use crate::run::settings::EVAL_ITERS;
use crate::run::RunSettings;
use crate::{Error, Result};

/// Where an experiment's runs get their text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Corpus {
    /// A built-in corpus the page downloads (the CLI takes it as `--data FILE`).
    Builtin(&'static str),
    /// A built-in task, `NAME[:k=v,...]`, generated from the run's seed.
    Task(&'static str),
}

/// One entry of the gallery.
#[derive(Debug)]
pub struct Experiment {
    pub name: &'static str,
    pub title: &'static str,
    /// What to look for while it trains, and what the result means.
    pub explain: &'static str,
    pub corpus: Corpus,
    /// The preset whose settings the base starts from.
    pub preset: &'static str,
    /// Run-settings keys over the preset's, shared by every run (a JSON object).
    pub base: &'static str,
    /// (label, run-settings keys over the base): the runs, in the order they train.
    pub runs: &'static [(&'static str, &'static str)],
    /// Whether the page shows look inside's attention for a held-out example of the task at the
    /// start and at the end of each run.
    pub attention: bool,
}

/// One run of an experiment: its label (the CLI's subdirectory) and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRun {
    pub label: &'static str,
    pub settings: RunSettings,
}

/// The gallery, in the order both fronts list it. Sized for a few minutes each on a laptop GPU.
pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "architectures",
        title: "GPT-2 vs Llama vs the speedrun, at one size",
        explain: "The same 4-layer, 128-dim model and the same batches, in three architectures: GPT-2 (learned \
                  positions, LayerNorm, GELU, tied head), Llama (rotary positions, RMSNorm, SwiGLU) and the \
                  modded-nanoGPT speedrun (rotary, RMSNorm, ReLU², qk-norm, an untied head, logits softcapped). \
                  Look at the validation loss at equal steps: the later architectures usually reach a given loss \
                  sooner; the gap is a few hundredths at this size and grows with scale. The legend in Compare \
                  runs lists what differs (arch).",
        corpus: Corpus::Builtin("shakespeare"),
        preset: "baby",
        base: r#"{"max_iters": 1500, "eval_interval": 250}"#,
        runs: &[
            ("gpt2", r#"{"arch": "gpt2"}"#),
            ("llama", r#"{"arch": "llama"}"#),
            ("speedrun", r#"{"arch": "speedrun"}"#),
        ],
        attention: false,
    },
    Experiment {
        name: "optimizers",
        title: "AdamW vs Muon",
        explain: "One model, two optimizers: AdamW on every tensor, and Muon (momentum orthogonalised by \
                  Newton-Schulz) on the hidden matrices with AdamW on the embeddings and 1-D tensors. Look at how \
                  fast the validation loss falls in the first few hundred steps: Muon's updates move every \
                  direction of a matrix at a similar rate, so it usually gets ahead early; each of its steps costs \
                  a few more matrix products.",
        corpus: Corpus::Builtin("shakespeare"),
        preset: "baby",
        base: r#"{"max_iters": 1000, "eval_interval": 200}"#,
        runs: &[("adamw", r#"{"optimizer": "adamw"}"#), ("muon", r#"{"optimizer": "muon"}"#)],
        attention: false,
    },
    Experiment {
        name: "positions",
        title: "Learned vs rotary vs no positions, on reversing strings",
        explain: "Reversing a string means attending to the mirrored position, so the model must know where each \
                  token is. Learned position embeddings and rotary embeddings both tell it; without positions it \
                  has only what the causal mask reveals (how many tokens came before), and learns slower or not \
                  at all. Look at the exact-match accuracy at each evaluation, and the validation loss: rotary \
                  usually learns fastest, none lags far behind.",
        corpus: Corpus::Task("reverse"),
        preset: "tiny",
        base: r#"{"n_head": 4, "batch_size": 32, "max_iters": 2000, "eval_interval": 250, "answer_loss": true}"#,
        runs: &[
            ("learned", r#"{"positions": "learned"}"#),
            ("rope", r#"{"positions": "rope"}"#),
            ("none", r#"{"positions": "none"}"#),
        ],
        attention: false,
    },
    Experiment {
        name: "grokking",
        title: "Grokking: modular addition with and without weight decay",
        explain: "a + b mod 97, trained on half of the pairs and tested on the other half, with the loss on the \
                  answers only. Both runs soon get the training pairs right (train loss near zero): they have \
                  memorised them. With weight decay, the validation accuracy climbs much later, long after the \
                  training loss flattened: the decay slowly trades the memorised solution for a smaller one that \
                  generalises (a Fourier algorithm). Without it, validation stays near chance. Grokking's timing \
                  varies: where the validation accuracy has not risen by the end, Train on goes further.",
        corpus: Corpus::Task("modular-addition"),
        preset: "tiny",
        base: r#"{"n_head": 4, "n_embd": 128, "batch_size": 64, "max_iters": 6000, "eval_interval": 250, "lr": 0.001,
                  "lr_schedule": "constant", "warmup_iters": 50, "beta2": 0.98, "answer_loss": true}"#,
        runs: &[("decay", r#"{"weight_decay": 1.0}"#), ("no-decay", r#"{"weight_decay": 0.0}"#)],
        attention: false,
    },
    Experiment {
        name: "induction-head",
        title: "An induction head forms: associative recall",
        explain: "Each line lists key-value pairs, then asks for four keys; the answer writes each key, then its \
                  value (a1b5c3:cb=c3b5). Having written a key, the model must find the key's earlier copy and \
                  read the token after it: an induction head, which takes two layers (a head of the first marks \
                  each token with the one before it, a head of the second looks for the match). Look inside \
                  shows the attention of a held-out example at the start and at the end: in the two-layer model a \
                  head of the last layer comes to look from each written key to the value after its earlier \
                  copy, and the accuracy jumps when it does; one layer cannot. Measured (lavapipe, this seed): \
                  one layer stays at 4-8% for all 1500 steps; two layers sit at 5-7% to step 700 (the asked keys \
                  copied, their values guessed), then 77.5% at 750 and 100% at 800. How much there is to learn \
                  from matters too: with one key asked per line (associative-recall:queries=1) models of this \
                  size stayed near 35-40% for thousands of steps (BENCHMARKS.md, Tasks).",
        corpus: Corpus::Task("associative-recall"),
        preset: "tiny",
        base: r#"{"n_head": 4, "block_size": 22, "batch_size": 64, "lr": 0.003, "max_iters": 1500, "eval_interval": 50,
                 "answer_loss": true}"#,
        runs: &[("1-layer", r#"{"n_layer": 1}"#), ("2-layers", r#"{"n_layer": 2}"#)],
        attention: true,
    },
    Experiment {
        name: "tied-head",
        title: "Tied vs untied output head",
        explain: "GPT-2 reads its logits through the token embedding (a tied head); later models keep a separate \
                  output matrix. Untied costs vocab x dims more parameters (the legend's parameter counts) and \
                  lets input and output meanings differ. Look at the validation loss: at a character vocabulary \
                  the difference is small, and the untied head tends to overfit a little sooner; the saving of a \
                  tie matters at GPT-2's 50257 tokens, where the embedding is a third of the small model.",
        corpus: Corpus::Builtin("shakespeare"),
        preset: "baby",
        base: r#"{"max_iters": 1000, "eval_interval": 200}"#,
        runs: &[("tied", r#"{"tied": true}"#), ("untied", r#"{"tied": false}"#)],
        attention: false,
    },
];

/// The vocabulary the page's time estimate assumes (Tiny Shakespeare's characters; the tasks'
/// are smaller): the head's share of the FLOPs is small at these sizes.
const VOCAB_GUESS: usize = 65;

impl Experiment {
    /// The entry called `name`; an error lists them.
    pub fn find(name: &str) -> Result<&'static Experiment> {
        EXPERIMENTS.iter().find(|e| e.name == name).ok_or_else(|| {
            let names: Vec<&str> = EXPERIMENTS.iter().map(|e| e.name).collect();
            Error::Input(format!(
                "unknown experiment {name:?}; choose one of {} (`wgpt experiments` lists them)",
                names.join(", ")
            ))
        })
    }

    /// The runs' settings: the preset's, the base's keys over them, each run's over those.
    pub fn runs(&self) -> Result<Vec<ExperimentRun>> {
        let preset = RunSettings::preset(self.preset)
            .ok_or_else(|| Error::Input(format!("experiment {}: no preset {:?}", self.name, self.preset)))?;
        let base = preset.with_keys(self.base, &format!("experiment {}'s base", self.name))?;
        self.runs
            .iter()
            .map(|&(label, over)| {
                let settings = base.with_keys(over, &format!("experiment {}'s run {label}", self.name))?;
                Ok(ExperimentRun { label, settings })
            })
            .collect()
    }

    /// The corpus choice a link carries for this entry.
    pub fn link_corpus(&self) -> LinkCorpus {
        match self.corpus {
            Corpus::Builtin(name) => LinkCorpus::Builtin(name.into()),
            Corpus::Task(spec) => {
                let (name, params) = spec.split_once(':').unwrap_or((spec, ""));
                LinkCorpus::Task { name: name.into(), params: params.into() }
            }
        }
    }

    /// A held-out example of the entry's task with its answer, for look inside: the attention at
    /// the answer's tokens is what the entry is about (the written key looking up its value).
    pub fn prompt(&self, seed: u64) -> Result<Option<String>> {
        match (self.attention, self.corpus) {
            (true, Corpus::Task(spec)) => Ok(Task::parse(spec)?.held_out(1, seed).pop().map(|(p, answer)| p + &answer)),
            _ => Ok(None),
        }
    }
}

impl ExperimentRun {
    /// The run cut to `steps` steps (a quick look, or a test): evaluated at the start and the
    /// end (and every `eval_interval` before, where that is shorter), on at most `steps` batches.
    pub fn shortened(mut self, steps: usize) -> ExperimentRun {
        let s = &mut self.settings;
        s.max_iters = steps.max(1);
        s.eval_interval = s.eval_interval.min(s.max_iters);
        s.eval_iters = Some(s.eval_iters.unwrap_or(EVAL_ITERS).min(s.max_iters));
        s.warmup_iters = s.warmup_iters.map(|w| w.min(s.max_iters / 2));
        self
    }
}

/// An experiment as the page's gallery shows it (in the engine's manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub name: String,
    pub title: String,
    pub explain: String,
    pub corpus: LinkCorpus,
    /// A held-out example (prompt and answer) whose attention the page shows at the start and the
    /// end of each run.
    pub prompt: Option<String>,
    pub runs: Vec<RunInfo>,
}

/// One run of an [`ExperimentInfo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub label: String,
    /// The run's settings, `eval_iters` spelled out.
    pub settings: RunSettings,
    /// The run's own link (`#run=...`): it opens in the form without the rest of the entry.
    pub link: String,
    /// Tokens per optimizer step and model FLOPs per token (at a 65-token vocabulary): with a
    /// measured FLOP/s, the page's time estimate.
    pub tokens_per_step: usize,
    pub flops_per_token: f64,
}

impl ExperimentInfo {
    /// Every entry whose runs make settings a link carries; an entry that does not (a bug this
    /// module's tests catch) is left out rather than break the page.
    pub fn all() -> Vec<ExperimentInfo> {
        EXPERIMENTS.iter().filter_map(|e| ExperimentInfo::of(e).ok()).collect()
    }

    /// `e` as the page shows it.
    pub fn of(e: &Experiment) -> Result<ExperimentInfo> {
        let corpus = e.link_corpus();
        let runs = e.runs()?;
        let seed = runs.first().map_or(crate::run::settings::DEFAULT_SEED, |r| r.settings.seed);
        let runs = runs
            .into_iter()
            .map(|mut r| {
                // spelled out, so the page shortens a run as [`ExperimentRun::shortened`] does
                r.settings.eval_iters.get_or_insert(EVAL_ITERS);
                let s = &r.settings;
                // the head's size guessed, the rest exact; where the kernels refuse the
                // architecture yet the estimate is that of GPT-2's blocks
                let flops = s.model(VOCAB_GUESS).map(|m| flops_per_token(&m, s.block_size)).unwrap_or_else(|_| {
                    let plain = RunSettings { architecture: Default::default(), ..s.clone() };
                    plain.model(VOCAB_GUESS).map_or(0.0, |m| flops_per_token(&m, s.block_size))
                });
                Ok(RunInfo {
                    label: r.label.into(),
                    link: Link::share(s.clone(), Some(corpus.clone()))?,
                    tokens_per_step: s.batch_size * s.block_size * s.grad_accum.max(1),
                    flops_per_token: flops,
                    settings: r.settings,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ExperimentInfo {
            name: e.name.into(),
            title: e.title.into(),
            explain: e.explain.into(),
            prompt: e.prompt(seed)?,
            corpus,
            runs,
        })
    }
}
