//! Starting and resuming a training run, one way for `wgpt train` and the page: a new run
//! ([`start`]: random weights, or fine-tuning a pretrained model) is checked against the device
//! before anything is allocated (random weights included) (the page's plan checks the same, [`plan`]) and its kernels are
//! chosen for its shapes; a saved run
//! ([`resume`]) goes on with the overrides asked for. Either is built inside an allocation scope
//! (past the device's memory, the error says what fits) and handed to a [`Driver`].

use std::sync::Arc;

use crate::kernels::{AttentionKind, Kernels};
use crate::model::{Gpt2Config, LoraConfig, Weights};
use crate::precision::{Precision, Purpose, Resolved};
use crate::run::driver::Clock;
use crate::run::fits::{allocate, check_fits, Building};
use crate::run::format::Metrics;
use crate::run::{CheckpointFiles, Driver, Run, RunConfig};
use crate::tokenizer::Tokenizer;
use crate::train::{training_bytes_of, OptimizerConfig, TrainConfig};
use crate::tune::CacheFile;
use crate::Result;

/// Where the kernels' tuning choices are kept between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TuneCache {
    /// The CLI's: the cache file at this path (None: no cache), read before tuning and written
    /// after where the choices changed ([`crate::tune::prepare`]).
    #[cfg(not(target_arch = "wasm32"))]
    File(Option<std::path::PathBuf>),
    /// The page's: the cache the page handed in at `init`; where the choices changed, the new
    /// cache comes back in [`Tuned::cache`] for the page to store.
    Returned,
}

/// How a new run's kernels were chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuned {
    /// Where the choice came from (tuned, cached, a built-in table).
    pub source: String,
    /// Problems timed now.
    pub timed: usize,
    /// The time tuning took.
    pub ms: f64,
    /// The tuning cache to store, where it changed ([`TuneCache::Returned`]).
    pub cache: Option<String>,
}

/// The weights a new run starts from.
pub enum Init {
    /// GPT-2's initialisation of the run's model ([`Weights::random`]) from this seed, drawn only
    /// once the run is known to fit the device: a model past its limits is refused at once,
    /// before its parameters are filled on the host.
    Random(u64),
    /// A pretrained model's (fine-tuning); its config is the run's model.
    Pretrained(Weights),
}

/// A new run: its settings, the weights it starts from and its tokenizer.
pub struct NewRun {
    pub cfg: RunConfig,
    pub weights: Init,
    pub tokenizer: Tokenizer,
    /// Whether its checkpoints hold AdamW's moments (else model-only).
    pub optimizer_state: bool,
}

/// What a resumed run changes of its saved settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Train on to this many steps, where that is more than the run's.
    pub max_iters: Option<usize>,
    /// A new peak learning rate (min_lr scales with it), e.g. after the run diverged.
    pub lr: Option<f32>,
    /// Train in this precision from now on; None: the run's own.
    pub precision: Option<Precision>,
    /// Whether checkpoints hold AdamW's moments from now on; None: as the run was saved.
    pub optimizer_state: Option<bool>,
    /// Save the run anew at once even where nothing above changes it (its files moved, or lack
    /// their corpus).
    pub save: bool,
}

/// A resumed run, with what became of the overrides, to tell the user.
pub struct Resumed {
    pub driver: Driver,
    /// One line per override that changed the run.
    pub notes: Vec<String>,
}

/// The attention kernels a run of `model` at (B, T) uses with the kernels' current choices.
fn attention_kind(kernels: &Kernels, model: &Gpt2Config, b: usize, t: usize) -> AttentionKind {
    model.attention_kind(&kernels.selection(), b, t)
}

/// Chooses the kernels for a run of `model` at (B, T): this adapter's cached choices, with what
/// is missing timed now, the cache kept as `cache` says. The source names a shape whose classic
/// attention would pass the loop cap and runs flash instead.
async fn tune(kernels: &Kernels, model: &Gpt2Config, b: usize, t: usize, cache: TuneCache) -> Result<Tuned> {
    let shape = model.run_shape(b, t);
    let mut tuned = match cache {
        #[cfg(not(target_arch = "wasm32"))]
        TuneCache::File(path) => {
            let report = crate::tune::prepare(kernels, shape, path.as_deref())?;
            Tuned { source: report.describe(), timed: report.timed, ms: report.ms, cache: None }
        }
        TuneCache::Returned => {
            let report = crate::tune::tune_live(kernels, shape).await?;
            let cache = report.recorded.then(|| CacheFile::one(&kernels.gpu, &kernels.selection().choices).to_json());
            Tuned { source: report.describe(), timed: report.timed, ms: report.ms, cache }
        }
    };
    if let Some(note) = kernels.selection().attention_note(None, model.attn_shape(b, t)) {
        tuned.source = format!("{}; {note}", tuned.source);
    }
    Ok(tuned)
}

/// What a run would hold on the GPU: the precision it would train in and its memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub precision: Resolved,
    pub memory_bytes: u64,
}

/// A run of `model` at (B, T) asking for `precision`, training with `optimizer` (the LoRA
/// adapters `lora` only, where given), checked against the GPU's limits before anything is
/// allocated (without a GPU yet: unchecked, with flash attention's memory).
pub fn plan(
    kernels: Option<&Kernels>,
    model: &Gpt2Config,
    (b, t): (usize, usize),
    precision: Precision,
    optimizer: &OptimizerConfig,
    lora: Option<LoraConfig>,
) -> Result<Plan> {
    let kind = kernels.map_or(AttentionKind::Flash, |k| attention_kind(k, model, b, t));
    if let Some(k) = kernels {
        check_fits(&k.gpu, model, b, t, kind)?;
    }
    let precision = precision.resolve(Purpose::Training, kernels.is_some_and(|k| k.gpu.shader_f16()));
    let train = TrainConfig { optimizer: *optimizer, lora, ..TrainConfig::default() };
    let memory_bytes = training_bytes_of(model, &train, b, t, kind, precision.f16());
    Ok(Plan { precision, memory_bytes })
}

/// Starts `new` on `text`: checked against the device, its kernels chosen (`on_tuned` hears how,
/// before the run is built), then built. Past the device's limits or memory, nothing stays
/// allocated and the error says what fits.
pub async fn start(
    kernels: Arc<Kernels>,
    new: NewRun,
    text: &str,
    cache: TuneCache,
    clock: Clock,
    on_tuned: impl FnOnce(&Tuned),
) -> Result<Driver> {
    let NewRun { cfg, weights, tokenizer, optimizer_state } = new;
    let (model, b, t) = (cfg.model, cfg.train.batch_size, cfg.train.seq_len);
    // the kind before tuning; Trainer::new checks the activations again with the tuned one
    check_fits(&kernels.gpu, &model, b, t, attention_kind(&kernels, &model, b, t))?;
    let weights = match weights {
        Init::Random(seed) => Weights::random(model, seed),
        Init::Pretrained(weights) => weights,
    };
    on_tuned(&tune(&kernels, &model, b, t, cache).await?);
    // the settings' numerics where they name one (a link's), else the tuned choice
    let kind = cfg.train.attention.unwrap_or_else(|| attention_kind(&kernels, &model, b, t));
    let gpu = kernels.gpu.clone();
    let f16 = cfg.train.precision.resolve(Purpose::Training, gpu.shader_f16()).f16();
    let lora = cfg.train.lora;
    let build = || Run::new(kernels, cfg, &weights, tokenizer, text);
    let run = allocate(&gpu, Building::Run { model: &model, b, t, kind, f16, lora }, build).await?;
    let mut driver = Driver::new(run, clock);
    driver.set_optimizer_state(optimizer_state);
    Ok(driver)
}

/// Goes on with the run saved as `checkpoint` (with its `metrics` so far) on `text`, at its step,
/// with `over`'s changes; a run whose settings changed saves anew at once.
pub async fn resume(
    kernels: Arc<Kernels>,
    checkpoint: CheckpointFiles,
    metrics: Metrics,
    text: &str,
    over: Overrides,
    clock: Clock,
) -> Result<Resumed> {
    let saved = checkpoint.state()?.run;
    let (b, t) = (saved.train.batch_size, saved.train.seq_len);
    let kind = saved.train.attention.unwrap_or_else(|| attention_kind(&kernels, &saved.model, b, t));
    // a saved run goes on in its precision unless told otherwise
    let precision = over.precision.unwrap_or(saved.train.precision);
    let f16 = precision.resolve(Purpose::Training, kernels.gpu.shader_f16()).f16();
    let lora = saved.train.lora;
    let (gpu, building) = (kernels.gpu.clone(), Building::Run { model: &saved.model, b, t, kind, f16, lora });
    let (mut changed, mut notes) = (over.save, Vec::new());
    let build = || {
        Run::from_checkpoint(kernels, &checkpoint, text, |cfg| {
            if let Some(n) = over.max_iters.filter(|&n| n > cfg.max_iters) {
                cfg.max_iters = n;
                changed = true;
            }
            if let Some(lr) = over.lr {
                cfg.train.set_lr(lr)?;
                notes.push(format!("learning rate {lr:e} (min_lr {:e}) from now on", cfg.train.min_lr));
                changed = true;
            }
            if let Some(p) = over.precision.filter(|&p| p != cfg.train.precision) {
                notes.push(format!(
                    "precision {} from now on (the run trained in {})",
                    p.name(),
                    cfg.train.precision.name()
                ));
                cfg.train.precision = p;
                changed = true;
            }
            Ok(())
        })
    };
    let run = allocate(&gpu, building, build).await?;
    let mut driver = Driver::resume(run, metrics, checkpoint, changed, clock);
    if let Some(on) = over.optimizer_state {
        driver.set_optimizer_state(on);
    }
    Ok(Resumed { driver, notes })
}
