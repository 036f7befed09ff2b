//! The built-in synthetic tasks: a registry of what each teaches, its parameters (with defaults
//! and bounds) and its seeded generator (src/data/tasks/gen.rs). A task is named as
//! `NAME[:k=v,...]` (`reverse:max=12`, `modular-addition:p=97,frac=0.3`); its training corpus
//! and its held-out examples follow from that and the run's seed, so a run (or a link) names
//! its data in one string.

pub mod gen;

use crate::rng::Rng;
use crate::{Error, Result};

use gen::Example;

/// Held-out examples the exact-match accuracy is measured on at every evaluation.
pub const HELD_OUT_EXAMPLES: usize = 200;

/// One parameter of a task: an integer, or a fraction where `integer` is false.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    pub what: &'static str,
    pub default: f64,
    pub min: f64,
    pub max: f64,
    pub integer: bool,
}

const fn int(name: &'static str, what: &'static str, default: usize, min: usize, max: usize) -> Param {
    Param { name, what, default: default as f64, min: min as f64, max: max as f64, integer: true }
}

/// How a task draws its examples: one at a time from the RNG, or (modular addition) from a fixed
/// set of (a, b) pairs split by the seed into training and held-out pairs.
#[derive(Debug)]
pub enum Draw {
    Each(fn(&Task, &mut Rng) -> Example),
    Pairs,
}

/// A task in the registry.
#[derive(Debug)]
pub struct TaskSpec {
    pub name: &'static str,
    /// What a model must learn, in one line.
    pub describe: &'static str,
    pub params: &'static [Param],
    pub draw: Draw,
    /// Settings that train the task at its defaults to 95% exact match (None: none found yet).
    pub recipe: Option<Recipe>,
}

/// A task's recipe: a preset and run-settings keys over it (a JSON object, as an experiment's),
/// and the first evaluated step whose exact match on the held-out examples reached 95% when it
/// was trained on lavapipe from the default seed (BENCHMARKS.md, "Tasks";
/// `bash tests/fixtures/task_presets.sh` retrains it). `wgpt train --task NAME --recipe` and the
/// page's task panel use it.
#[derive(Debug)]
pub struct Recipe {
    pub preset: &'static str,
    pub settings: &'static str,
    pub reached: usize,
}

const LEN: [Param; 2] = [int("min", "shortest string", 3, 1, 24), int("max", "longest string", 8, 1, 24)];

impl Recipe {
    /// The recipe's keys as `wgpt train` flags, by name (`--answer-loss --n-head 4`).
    pub fn flags(&self) -> Result<String> {
        let keys: serde_json::Map<String, serde_json::Value> = serde_json::from_str(self.settings)
            .map_err(|e| Error::Input(format!("a recipe is not a JSON object ({e})")))?;
        let flag = |(k, v): (&String, &serde_json::Value)| match v {
            serde_json::Value::Bool(true) => format!("--{}", k.replace('_', "-")),
            serde_json::Value::String(s) => format!("--{} {s}", k.replace('_', "-")),
            v => format!("--{} {v}", k.replace('_', "-")),
        };
        Ok(keys.iter().map(flag).collect::<Vec<_>>().join(" "))
    }
}

const fn recipe(preset: &'static str, settings: &'static str, reached: usize) -> Option<Recipe> {
    Some(Recipe { preset, settings, reached })
}

/// Every task, in the order `wgpt tasks` and the page list them.
pub const TASKS: &[TaskSpec] = &[
    TaskSpec {
        name: "addition",
        describe: "add two numbers digit by digit, carrying; zero-padded, so a digit's place is its position \
                   (0123+4567=04690)",
        params: &[
            int("digits", "digits per number", 4, 1, 9),
            int("pad", "1: zero-pad the numbers and the sum to fixed widths; 0: write them as they are", 1, 0, 1),
        ],
        draw: Draw::Each(gen::addition),
        recipe: recipe(
            "baby",
            r#"{"block_size": 15, "batch_size": 64, "lr": 0.003,
                "max_iters": 4000, "eval_interval": 50, "answer_loss": true}"#,
            1950,
        ),
    },
    TaskSpec {
        name: "reverse",
        describe: "write a string backwards: attend to the mirrored position (hello|olleh)",
        params: &LEN,
        draw: Draw::Each(gen::reverse),
        recipe: recipe(
            "tiny",
            r#"{"n_head": 4, "block_size": 20, "batch_size": 64, "lr": 0.005,
                "max_iters": 1500, "eval_interval": 50, "answer_loss": true}"#,
            400,
        ),
    },
    TaskSpec {
        name: "sort",
        describe: "sort the letters of a string (dbca|abcd)",
        params: &LEN,
        draw: Draw::Each(gen::sort),
        recipe: recipe(
            "tiny",
            r#"{"block_size": 20, "batch_size": 64, "lr": 0.01,
                "max_iters": 4000, "eval_interval": 50, "answer_loss": true}"#,
            3200,
        ),
    },
    TaskSpec {
        name: "copy",
        describe: "copy a string: attend to the same position one string back (hello|hello)",
        params: &LEN,
        draw: Draw::Each(gen::copy),
        recipe: recipe(
            "tiny",
            r#"{"block_size": 20, "batch_size": 64, "lr": 0.01,
                "max_iters": 2500, "eval_interval": 50, "answer_loss": true}"#,
            1650,
        ),
    },
    TaskSpec {
        name: "repeat",
        describe: "write a string k times: count repetitions (abc*3=abcabcabc)",
        params: &[int("max", "longest string", 4, 1, 12), int("times", "most repetitions", 3, 2, 9)],
        draw: Draw::Each(gen::repeat),
        recipe: recipe(
            "tiny",
            r#"{"n_head": 4, "block_size": 22, "batch_size": 64, "lr": 0.005,
                "max_iters": 1000, "eval_interval": 50, "answer_loss": true}"#,
            350,
        ),
    },
    TaskSpec {
        name: "parity",
        describe: "say whether a bit string has an odd number of ones, writing the running parity as it goes: \
                   a global XOR one step at a time (10110=11011: the last digit answers)",
        params: &[
            int("min", "shortest string", 4, 1, 24),
            int("max", "longest string", 10, 1, 24),
            int("scratch", "1: write every prefix's parity (a scratchpad); 0: only the answer", 1, 0, 1),
        ],
        draw: Draw::Each(gen::parity),
        recipe: recipe(
            "tiny",
            r#"{"n_head": 4, "block_size": 21, "batch_size": 64, "lr": 0.003,
                "max_iters": 6000, "eval_interval": 50, "answer_loss": true}"#,
            4200,
        ),
    },
    TaskSpec {
        name: "dyck",
        describe: "say whether round and square brackets are balanced: keep a stack (([])=y)",
        params: &[int("pairs", "most bracket pairs", 4, 1, 12)],
        draw: Draw::Each(gen::dyck),
        recipe: recipe(
            "baby",
            r#"{"block_size": 13, "batch_size": 64, "max_iters": 1000, "eval_interval": 50, "answer_loss": true}"#,
            200,
        ),
    },
    TaskSpec {
        name: "two-sum",
        describe: "find the positions of the two numbers that add up to the target, writing each number's \
                   complement first, marked y where it is in the list (12,45,07,30:37=25n,--n,30y,07y=2,3)",
        params: &[
            int("n", "numbers in the list", 4, 2, 8),
            int("max", "numbers are below this", 50, 20, 999),
            int("scratch", "1: zero-pad; write each complement, marked if listed; 0: the positions alone", 1, 0, 1),
        ],
        draw: Draw::Each(gen::two_sum),
        recipe: recipe(
            "baby",
            r#"{"n_head": 8, "block_size": 34, "batch_size": 64, "lr": 0.003,
                "max_iters": 6000, "eval_interval": 100, "answer_loss": true}"#,
            3300,
        ),
    },
    TaskSpec {
        name: "modular-addition",
        describe: "a+b mod p, trained on a fraction of all pairs and tested on the others: memorise, then \
                   generalise much later (grokking) (12+90=5 for p=97)",
        params: &[
            int("p", "the modulus", 97, 3, 997),
            Param {
                name: "frac",
                what: "fraction of the p*p pairs trained on",
                default: 0.5,
                min: 0.05,
                max: 0.95,
                integer: false,
            },
        ],
        draw: Draw::Pairs,
        recipe: recipe(
            "tiny",
            r#"{"n_head": 4, "n_embd": 128, "block_size": 16, "batch_size": 64, "max_iters": 6000, "lr": 0.001,
                "lr_schedule": "constant", "warmup_iters": 50, "beta2": 0.98, "weight_decay": 1.0, "eval_interval": 250,
                "answer_loss": true}"#,
            4500,
        ),
    },
    TaskSpec {
        name: "associative-recall",
        describe: "look up keys in the pairs before them, writing each key then its value: having written a key, \
                   find its earlier copy and read the token after it, what induction heads do (a1b5c3:cb=c3b5)",
        params: &[int("pairs", "key-value pairs", 4, 1, 10), int("queries", "keys asked", 4, 1, 10)],
        draw: Draw::Each(gen::associative_recall),
        recipe: recipe(
            "tiny",
            r#"{"n_head": 4, "block_size": 22, "batch_size": 64, "lr": 0.003,
                "max_iters": 1500, "eval_interval": 50, "answer_loss": true}"#,
            800,
        ),
    },
    TaskSpec {
        name: "counting",
        describe: "count how often a letter occurs in a string (abcab:a=2)",
        params: &[
            int("min", "shortest string", 5, 1, 24),
            int("max", "longest string", 12, 1, 24),
            int("alphabet", "letters used", 3, 2, 26),
        ],
        draw: Draw::Each(gen::counting),
        recipe: recipe(
            "baby",
            r#"{"block_size": 20, "batch_size": 64, "max_iters": 3000, "eval_interval": 50, "answer_loss": true}"#,
            700,
        ),
    },
    TaskSpec {
        name: "multiplication",
        describe: "multiply two numbers, writing the long multiplication's rows, then their sum \
                   (47*83=0141+3760=3901)",
        params: &[
            int("digits", "digits per number", 2, 1, 4),
            int(
                "scratch",
                "1: write the zero-padded partial products, then their sum (a scratchpad); 0: only the product",
                1,
                0,
                1,
            ),
        ],
        draw: Draw::Each(gen::multiplication),
        recipe: recipe(
            "baby",
            r#"{"block_size": 20, "batch_size": 64, "lr": 0.003,
                "max_iters": 6000, "eval_interval": 100, "answer_loss": true}"#,
            2200,
        ),
    },
    TaskSpec {
        name: "marked-addition",
        describe: "add only the digits marked with * (37*25*1=12)",
        params: &[int("n", "digits in the list", 5, 1, 12)],
        draw: Draw::Each(gen::marked_addition),
        recipe: recipe(
            "baby",
            r#"{"block_size": 16, "batch_size": 64, "max_iters": 3000, "eval_interval": 50, "answer_loss": true}"#,
            1700,
        ),
    },
    TaskSpec {
        name: "temporal-order",
        describe: "say which of X and Y appear, in order, among noise letters: ignore the noise (abXcdYe=XY)",
        params: &[int("len", "letters in the string", 8, 3, 24)],
        draw: Draw::Each(gen::temporal_order),
        recipe: recipe(
            "tiny",
            r#"{"block_size": 14, "batch_size": 64, "lr": 0.01,
                "max_iters": 2500, "eval_interval": 50, "answer_loss": true}"#,
            250,
        ),
    },
];

/// A task parameter whose default changed after runs and links had used the old one.
#[derive(Debug)]
pub struct ChangedDefault {
    /// The first link version (`run::link::LINK_VERSION`) written with the new default.
    pub link_version: u64,
    pub task: &'static str,
    pub param: &'static str,
    /// The default before.
    pub old: &'static str,
}

/// Every changed default: [`Task::spec`] always names these parameters, so a recorded task that
/// does not name one was recorded before, at the old default ([`Task::recorded`]); a link of an
/// older version opens with it.
pub const CHANGED_DEFAULTS: &[ChangedDefault] = &[
    ChangedDefault { link_version: 2, task: "addition", param: "pad", old: "0" },
    ChangedDefault { link_version: 2, task: "multiplication", param: "scratch", old: "0" },
    ChangedDefault { link_version: 3, task: "two-sum", param: "scratch", old: "0" },
];

/// `params` (`k=v,...`, of task `name`) with each changed default that `applies` and `params`
/// does not name added at its old value.
pub fn old_defaults(name: &str, params: &str, applies: impl Fn(&ChangedDefault) -> bool) -> String {
    let mut out = params.to_string();
    for c in CHANGED_DEFAULTS.iter().filter(|c| c.task == name && applies(c)) {
        if !params.split(',').any(|kv| kv.split_once('=').is_some_and(|(k, _)| k.trim() == c.param)) {
            let sep = if out.is_empty() { "" } else { "," };
            out = format!("{out}{sep}{}={}", c.param, c.old);
        }
    }
    out
}

/// A task with its parameters' values (in the order of its spec's params).
#[derive(Debug, Clone)]
pub struct Task {
    pub spec: &'static TaskSpec,
    pub values: Vec<f64>,
}

impl PartialEq for Task {
    fn eq(&self, other: &Task) -> bool {
        self.spec.name == other.spec.name && self.values == other.values
    }
}

impl TaskSpec {
    /// The parameters as `name=default (min..max)`, for `wgpt tasks` and error messages.
    pub fn params_line(&self) -> String {
        let p: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{}={} ({}..{}: {})", p.name, p.default, p.min, p.max, p.what))
            .collect();
        if p.is_empty() {
            "no parameters".to_string()
        } else {
            p.join(", ")
        }
    }
}

impl Task {
    /// Parses `NAME[:k=v,...]`: a task of [`TASKS`] with its parameters, the others at their
    /// defaults. Unknown names and parameters, values that are not numbers, out of bounds or
    /// given twice are refused, naming the task's parameters.
    pub fn parse(text: &str) -> Result<Task> {
        let (name, args) = match text.trim().split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (text.trim(), None),
        };
        let spec = TASKS.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = TASKS.iter().map(|s| s.name).collect();
            Error::Input(format!("unknown task {name:?}; choose one of {} (`wgpt tasks` lists them)", names.join(", ")))
        })?;
        let mut values: Vec<f64> = spec.params.iter().map(|p| p.default).collect();
        let mut given = vec![false; values.len()];
        for pair in args.into_iter().flat_map(|a| a.split(',')).filter(|p| !p.trim().is_empty()) {
            let refuse =
                |why: String| Error::Input(format!("task {name}: {why}; its parameters are {}", spec.params_line()));
            let (k, v) = pair.split_once('=').ok_or_else(|| refuse(format!("{pair:?} is not key=value")))?;
            let i = spec
                .params
                .iter()
                .position(|p| p.name == k.trim())
                .ok_or_else(|| refuse(format!("there is no parameter {:?}", k.trim())))?;
            let p = &spec.params[i];
            let x: f64 = v.trim().parse().map_err(|_| refuse(format!("{}={v:?} is not a number", p.name)))?;
            if given[i] {
                return Err(refuse(format!("{} is given twice", p.name)));
            }
            if !x.is_finite() || x < p.min || x > p.max || (p.integer && x.fract() != 0.0) {
                let kind = if p.integer { "an integer" } else { "a number" };
                return Err(refuse(format!("{}={v} must be {kind} in {}..{}", p.name, p.min, p.max)));
            }
            (values[i], given[i]) = (x, true);
        }
        let task = Task { spec, values };
        task.check()?;
        Ok(task)
    }

    /// Checks what one parameter's bounds cannot: min ≤ max, and enough held-out pairs.
    fn check(&self) -> Result<()> {
        let name = self.spec.name;
        if let Some(i) = self.index("min") {
            if self.values[i] > self.param("max") {
                return Err(Error::Input(format!(
                    "task {name}: min={} is more than max={}; its parameters are {}",
                    self.values[i],
                    self.param("max"),
                    self.spec.params_line()
                )));
            }
        }
        if matches!(self.spec.draw, Draw::Pairs) {
            let (train, held) = self.pair_counts();
            if held < HELD_OUT_EXAMPLES || train == 0 {
                return Err(Error::Input(format!(
                    "task {}: {train} training and {held} held-out pairs; the accuracy needs at least \
                     {HELD_OUT_EXAMPLES} held-out pairs and training at least one: raise p or lower frac",
                    self.spec()
                )));
            }
        }
        Ok(())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.spec.params.iter().position(|p| p.name == name)
    }

    /// A parameter's value by name (a name the task's spec has: the generators ask for their own).
    pub fn param(&self, name: &str) -> f64 {
        self.index(name)
            .map(|i| self.values[i])
            .unwrap_or_else(|| panic!("task {} has no parameter {name}", self.spec.name))
    }

    /// An integer parameter's value.
    pub fn int(&self, name: &str) -> usize {
        self.param(name) as usize
    }

    /// A task as a run recorded it ([`Task::spec`]): as [`Task::parse`] reads it, except that a
    /// parameter whose default changed ([`CHANGED_DEFAULTS`]) and that it does not name has the
    /// old default, which the run was made with.
    pub fn recorded(text: &str) -> Result<Task> {
        let (name, params) = text.trim().split_once(':').unwrap_or((text.trim(), ""));
        Task::parse(&format!("{name}:{}", old_defaults(name, params, |_| true)))
    }

    /// The task as [`Task::parse`] reads it: its name, then the parameters that differ from
    /// their defaults and those whose default changed (`reverse:max=12`, `addition:pad=1`).
    pub fn spec(&self) -> String {
        let changed = |p: &Param| CHANGED_DEFAULTS.iter().any(|c| c.task == self.spec.name && c.param == p.name);
        let set: Vec<String> = (self.spec.params.iter().zip(&self.values))
            .filter(|(p, v)| p.default != **v || changed(p))
            .map(|(p, v)| format!("{}={v}", p.name))
            .collect();
        if set.is_empty() {
            self.spec.name.to_string()
        } else {
            format!("{}:{}", self.spec.name, set.join(","))
        }
    }

    /// Modular addition's training and held-out pair counts.
    fn pair_counts(&self) -> (usize, usize) {
        let all = self.int("p") * self.int("p");
        let train = (self.param("frac") * all as f64).round() as usize;
        (train, all - train)
    }

    /// Modular addition's pairs (a·p + b), shuffled by `seed`: (training, held out), disjoint.
    pub fn pairs(&self, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let p = self.int("p");
        let mut all = gen::shuffled(p * p, &mut Rng::new(seed ^ 0x9A1F_5EED));
        let held = all.split_off(self.pair_counts().0);
        (all, held)
    }

    /// `n` training examples from `seed`: drawn one by one, or the training pairs in their
    /// shuffled order, again and again.
    pub fn train_examples(&self, n: usize, seed: u64) -> Vec<Example> {
        match self.spec.draw {
            Draw::Each(draw) => {
                let mut rng = Rng::new(seed);
                (0..n).map(|_| draw(self, &mut rng)).collect()
            }
            Draw::Pairs => {
                let (train, _) = self.pairs(seed);
                train.iter().cycle().take(n).map(|&pair| gen::modular(self.int("p"), pair)).collect()
            }
        }
    }

    /// A training corpus of `n` examples, one per line (prompt + answer + "\n").
    pub fn corpus(&self, n: usize, seed: u64) -> String {
        self.train_examples(n, seed).into_iter().map(|(p, a)| format!("{p}{a}\n")).collect()
    }

    /// Examples for the exact-match accuracy: from another seed than the training corpus, or
    /// (modular addition) the first `n` of the held-out pairs, none of which is trained on.
    pub fn held_out(&self, n: usize, seed: u64) -> Vec<Example> {
        match self.spec.draw {
            Draw::Each(draw) => {
                let mut rng = Rng::new(seed ^ 0xA5A5_5A5A_F00D);
                (0..n).map(|_| draw(self, &mut rng)).collect()
            }
            Draw::Pairs => {
                let (_, held) = self.pairs(seed);
                held.iter().take(n).map(|&pair| gen::modular(self.int("p"), pair)).collect()
            }
        }
    }

    /// The first `n` training lines of `seed`'s corpus, to show what the task is before training.
    pub fn examples(&self, n: usize, seed: u64) -> Vec<String> {
        self.train_examples(n, seed).into_iter().map(|(p, a)| format!("{p}{a}")).collect()
    }
}
