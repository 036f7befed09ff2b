//! The run driver: the one training cadence of the CLI and the page. Given "do one unit of work"
//! ([`Driver::advance`]: an evaluation or a training step) it decides when to report the loss,
//! evaluate, sample and save a checkpoint, stops on a loss that is no longer a number, and goes on
//! from the last checkpoint on a new device when the GPU is lost ([`Driver::recover`]). It says
//! what happened as [`RunEvent`]s: `wgpt train` draws them with indicatif and writes the run
//! directory; the page's engine posts them to the page. Async where the GPU is read back, so it
//! runs under pollster natively and on the event loop in the browser, never blocking there.
//!
//! The cadence: an evaluation (train and val loss, a sample) and then a checkpoint at step 0,
//! every `eval_interval` steps and at the end; the loss read back at step 1, every
//! `log_interval` steps and at the end. A resumed run starts without either: its checkpoint is
//! the evaluation's (or a pause's) at that step.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dynamics::Dynamics;
use crate::kernels::Kernels;
use crate::run::format::{Metrics, Record};
use crate::run::settings::eval_sample;
use crate::run::{CheckpointFiles, Eval, Run};
use crate::tune::AdapterKey;
use crate::{Error, Gpu, Result};

/// Device losses in a row (no checkpoint saved between them) that a run recovers from.
pub const MAX_RECOVERIES: u32 = 3;

/// Milliseconds on a wall clock (the page: `Date.now`; natively the system clock).
pub type Clock = fn() -> f64;

/// A progress report: the loss of the last step read back, and the pace since the last report
/// (evaluation time left out); on the steps that track them ([`dynamics_interval`]), the
/// per-tensor training dynamics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub step: u64,
    pub max_iters: usize,
    pub loss: f32,
    /// The learning rate the step trained with.
    pub lr: f32,
    pub ms_per_step: f64,
    pub tokens_per_sec: f64,
    pub eta_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamics: Option<Dynamics>,
    /// The dynamic loss scale after the step, where the run scales its loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
}

/// Training dynamics are tracked every this many steps: the smallest multiple of the log
/// interval that is at least 10, so a tracked step is always a logged one and a page that logs
/// every step reads them back (and keeps them in metrics.jsonl) only every tenth.
pub fn dynamics_interval(log_interval: usize) -> usize {
    let every = log_interval.max(1);
    every * 10usize.div_ceil(every)
}

/// What a unit of work did, for the front end to show and keep.
pub enum RunEvent<'a> {
    Progress(Progress),
    Eval {
        eval: Eval,
        sample: String,
    },
    /// A checkpoint of `step`: persist these files (with the metrics so far, see
    /// [`crate::run::format::checkpoint_files`]).
    Saved {
        step: u64,
        checkpoint: &'a CheckpointFiles,
        metrics: &'a Metrics,
    },
    /// The device was lost after step `lost_at`; the run goes on from the checkpoint of `step`
    /// on a new device.
    Recovered {
        lost_at: u64,
        step: u64,
        reason: String,
    },
    /// The loss became `loss` (NaN or infinite) at `step` with learning rate `lr`: training
    /// stopped; `saved` is the step of the last checkpoint, intact, if there is one.
    Diverged {
        step: u64,
        loss: f32,
        lr: f32,
        saved: Option<u64>,
    },
    /// The run reached max_iters.
    Done {
        step: u64,
    },
}

/// What the run does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Done,
    Diverged,
}

/// The sink a front end gives [`Driver::advance`]; an error from it (a checkpoint that could not
/// be written) stops the run.
pub type Sink<'s> = dyn FnMut(RunEvent<'_>) -> Result<()> + 's;

/// A [`Run`] and its cadence.
pub struct Driver {
    pub run: Run,
    clock: Clock,
    metrics: Metrics,
    /// The last checkpoint: its step and files, kept to rebuild the run on a new device. One in
    /// memory at a time (GPT-2 124M's is 1.5 GB of the page's 4 GiB).
    saved: Option<(u64, CheckpointFiles)>,
    /// The step evaluated last, so each step is evaluated once.
    evaluated: Option<u64>,
    /// The settings differ from the saved checkpoint's (a resume with a new lr or more steps):
    /// save before going on.
    unsaved: bool,
    recoveries: u32,
    /// Checkpoints hold AdamW's moments (true) or are model-only (where storage is short).
    optimizer_state: bool,
    /// When the last progress report was made, and at which step.
    last: (f64, u64),
    /// The step the unit of work in progress started at (a lost device is reported after it).
    unit: u64,
    status: Status,
}

/// The message for a diverged run, before what each front end says to do about it.
pub fn diverged_message(step: u64, loss: f32, lr: f32) -> String {
    format!("training diverged at step {step}: the loss became {loss} (learning rate {lr:e})")
}

impl Driver {
    /// A new run, from step 0.
    pub fn new(run: Run, clock: Clock) -> Driver {
        let last = (clock(), run.step());
        Driver {
            run,
            clock,
            metrics: Metrics::default(),
            saved: None,
            evaluated: None,
            unsaved: false,
            recoveries: 0,
            optimizer_state: true,
            last,
            unit: last.1,
            status: Status::Running,
        }
    }

    /// A run rebuilt from `checkpoint`, with its metrics so far; `changed` when its settings
    /// were changed on the way (it saves first then) or it should be saved anew anyway (an
    /// imported run, so the front end keeps it).
    pub fn resume(run: Run, mut metrics: Metrics, checkpoint: CheckpointFiles, changed: bool, clock: Clock) -> Driver {
        let step = run.step();
        metrics.truncate(step);
        let mut d = Driver::new(run, clock);
        d.metrics = metrics;
        d.saved = Some((step, checkpoint));
        d.evaluated = Some(step);
        d.unsaved = changed;
        // a run saved without its optimizer state goes on saving so (where storage is short)
        d.optimizer_state = !d.run.fresh_moments;
        d
    }

    /// Whether checkpoints from now on hold AdamW's moments (true) or are model-only: a third of
    /// the size, resumed with the moments starting from zero.
    pub fn set_optimizer_state(&mut self, on: bool) {
        self.optimizer_state = on;
    }

    /// Trains on to `max_iters` steps, more than the run's: a finished run goes on (saved first,
    /// its settings changed), on the run's own schedule, as `wgpt train --resume --max-iters`.
    pub fn train_on(&mut self, max_iters: usize) -> Result<()> {
        if self.status == Status::Diverged {
            return Err(Error::Input(
                "the run diverged: resume its last checkpoint with a lower learning rate instead".into(),
            ));
        }
        let has = self.run.cfg.max_iters;
        if max_iters <= has {
            return Err(Error::Input(format!("the run has {has} steps already: choose more steps to train on to")));
        }
        self.run.cfg.max_iters = max_iters;
        self.status = Status::Running;
        self.unsaved = true;
        Ok(())
    }

    pub fn optimizer_state(&self) -> bool {
        self.optimizer_state
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The last checkpoint's step, if any.
    pub fn saved_step(&self) -> Option<u64> {
        self.saved.as_ref().map(|(s, _)| *s)
    }

    /// The last checkpoint, if it is of the current step.
    pub fn current_checkpoint(&self) -> Option<&CheckpointFiles> {
        self.saved.as_ref().filter(|(s, _)| *s == self.run.step() && !self.unsaved).map(|(_, c)| c)
    }

    pub fn status(&self) -> Status {
        self.status
    }

    fn eval_due(&self) -> bool {
        let step = self.run.step();
        self.evaluated != Some(step) && ((step as usize).is_multiple_of(self.run.cfg.eval_interval) || self.run.done())
    }

    fn log_due(&self) -> bool {
        let step = self.run.step() as usize;
        step == 1 || step.is_multiple_of(self.run.cfg.log_interval) || step == self.run.cfg.max_iters
    }

    /// One unit of work: an evaluation (and checkpoint) where one is due, else a training step
    /// (and its progress report where one is due). An error leaves the run as it was before the
    /// unit, for [`Driver::recover`].
    pub async fn advance(&mut self, sink: &mut Sink<'_>) -> Result<Status> {
        if self.status != Status::Running {
            return Ok(self.status);
        }
        self.unit = self.run.step();
        self.run.gpu().check()?;
        if self.unsaved {
            self.save(sink).await?;
            return Ok(Status::Running);
        }
        let step = self.run.step();
        if self.eval_due() {
            let eval = self.run.evaluate().await?;
            self.evaluated = Some(step);
            if !(eval.train_loss.is_finite() && eval.val_loss.is_finite()) {
                // not saved: the last checkpoint stays the last good one
                return self.diverge(eval.val_loss, sink);
            }
            let sample = self.run.sample("", &eval_sample(step)).await?;
            self.metrics.push(Record::Eval(eval));
            sink(RunEvent::Eval { eval, sample })?;
            self.save(sink).await?;
            self.last = ((self.clock)(), step); // evaluation time is not training time
            return Ok(Status::Running);
        }
        if self.run.done() {
            self.status = Status::Done;
            sink(RunEvent::Done { step })?;
            return Ok(Status::Done);
        }
        self.run.train_step()?;
        if self.log_due() {
            let loss = self.run.loss().await?;
            if !loss.is_finite() {
                return self.diverge(loss, sink);
            }
            let mut p = self.progress(loss);
            p.loss_scale = self.run.trainer.loss_scale().await?.map(|s| s.scale);
            if self.run.trainer.dynamics_step() == Some(p.step) {
                p.dynamics = Some(self.run.trainer.dynamics().await?);
            }
            self.metrics.push(Record::from(&p));
            sink(RunEvent::Progress(p))?;
        }
        Ok(Status::Running)
    }

    fn progress(&mut self, loss: f32) -> Progress {
        let (step, cfg) = (self.run.step(), &self.run.cfg);
        let now = (self.clock)();
        let (t0, s0) = self.last;
        let ms_per_step = (now - t0) / step.saturating_sub(s0).max(1) as f64;
        self.last = (now, step);
        let tokens = cfg.train.batch_size as f64 * cfg.train.seq_len as f64 * cfg.train.grad_accum as f64;
        Progress {
            step,
            max_iters: cfg.max_iters,
            loss,
            lr: cfg.train.lr_at(step as usize - 1),
            ms_per_step,
            tokens_per_sec: tokens / ms_per_step.max(1e-6) * 1e3,
            eta_s: ms_per_step * cfg.max_iters.saturating_sub(step as usize) as f64 / 1e3,
            dynamics: None,
            loss_scale: None,
        }
    }

    fn diverge(&mut self, loss: f32, sink: &mut Sink<'_>) -> Result<Status> {
        self.status = Status::Diverged;
        let (step, lr) = (self.run.step(), self.run.cfg.train.lr);
        sink(RunEvent::Diverged { step, loss, lr, saved: self.saved_step() })?;
        Ok(Status::Diverged)
    }

    /// Saves a checkpoint of the current step unless there is one (the evaluation's, or a pause
    /// or stop that already saved here).
    /// A diverged run is not saved: its last checkpoint stays the last good one.
    pub async fn save(&mut self, sink: &mut Sink<'_>) -> Result<()> {
        if self.current_checkpoint().is_some() {
            return Ok(());
        }
        if self.status == Status::Diverged {
            let kept = self.saved_step().map_or("none was saved".to_string(), |s| format!("that of step {s} is kept"));
            return Err(Error::Input(format!(
                "the run diverged at step {}, so it is not saved (its last good checkpoint: {kept}); resume that \
                 with a lower learning rate",
                self.run.step()
            )));
        }
        let step = self.run.step();
        self.saved = None; // one checkpoint in memory at a time
        let checkpoint = self.run.checkpoint(self.optimizer_state).await?;
        self.unsaved = false;
        self.recoveries = 0;
        let (_, checkpoint) = self.saved.insert((step, checkpoint));
        sink(RunEvent::Saved { step, checkpoint, metrics: &self.metrics })
    }

    /// After `e` from [`Driver::advance`] or [`Driver::save`]: where the device was lost, opens a
    /// new one and rebuilds the run there from the last checkpoint (at most [`MAX_RECOVERIES`]
    /// times between checkpoints), dropping what came after it; any other error is returned.
    /// The page lets its event loop run first: the browser reports a lost device a turn later.
    pub async fn recover(&mut self, e: Error, sink: &mut Sink<'_>) -> Result<()> {
        let Some(reason) = self.run.gpu().lost() else { return Err(e) };
        let lost_at = self.unit;
        let Some((step, _)) = &self.saved else {
            return Err(Error::Gpu(format!(
                "the GPU device was lost at step {lost_at} ({reason}) and there is no checkpoint to go on from"
            )));
        };
        let step = *step;
        if self.recoveries >= MAX_RECOVERIES {
            return Err(Error::Gpu(format!(
                "the GPU device was lost {} times since the checkpoint of step {step} ({reason}); giving up",
                self.recoveries + 1
            )));
        }
        self.recoveries += 1;
        // the new device is asked for what the old one was
        let gpu = Gpu::new(self.run.gpu().settings())
            .await
            .map_err(|e| Error::Gpu(format!("the GPU device was lost ({reason}) and {e}")))?;
        // the run's kernel family and choices carry over to the new device
        let old = &self.run.trainer.model.kernels;
        let kernels = Kernels::with_family(&gpu, old.family())?;
        // the old device's choices, where the same adapter opened again
        if AdapterKey::of(&old.gpu) == AdapterKey::of(&gpu) {
            kernels.set_selection(old.selection());
        }
        #[allow(clippy::arc_with_non_send_sync)] // wgpu's web types are not Send; one thread there
        let kernels = Arc::new(kernels);
        let (_, checkpoint) = self.saved.as_ref().expect("checked above");
        self.run.reopen(kernels, checkpoint)?;
        self.metrics.truncate(step);
        self.evaluated = Some(step);
        self.last = ((self.clock)(), step);
        sink(RunEvent::Recovered { lost_at, step, reason })
    }
}
