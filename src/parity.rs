//! Parity files: a model, a batch and what Hugging Face's GPT2LMHeadModel (or, where the
//! file's `config` is a config.json with a `model_type`, that class: LlamaForCausalLM,
//! Qwen3ForCausalLM) computed for it (logits, loss, and for training the gradients, the
//! parameters after one optimizer step and N losses, by torch.optim's AdamW, SGD or Muon with
//! AdamW, and the parameters after N steps of nanoGPT's loop: schedule, clipping, accumulation).
//! The format is in tests/fixtures/README.md; `wgpt parity FILE` and the tests run it. Parameters
//! are compared element by element and, per tensor, by the update's norm (check.rs).

mod check;
mod file;
mod muon;
mod optimizer;
mod train;

use std::sync::Arc;

use crate::kernels::Kernels;
use crate::model::Gpt2;
use crate::train::Trainer;
use crate::{Error, Result};

pub use check::{Check, Measure, UpdateRatio};
use check::{Part, Updates};
pub use file::ParityFile;
pub use muon::{AdjustLr, MuonConfig};
pub use optimizer::{AdamWConfig, OptimizerMeta, SgdConfig};
pub use train::TrainMeta;

/// Tolerances: logits 1e-4 and loss 1e-5 (absolute + relative).
pub const LOGITS_TOL: f32 = 1e-4;
pub const LOSS_TOL: f32 = 1e-5;

/// Runs the forward pass of a parity file on the GPU (submits split at `submit_budget_ms`) and
/// compares logits and loss.
pub async fn check_forward(kernels: Arc<Kernels>, p: &ParityFile, submit_budget_ms: f64) -> Result<Vec<Check>> {
    let model = Gpt2::new(kernels, &p.weights)?.with_submit_budget(submit_budget_ms);
    let f = model.forward_plan(p.b, p.t)?;
    model.forward(&f, &p.x, Some(&p.y))?;
    let out = model.kernels.gpu.read_many(&[&f.acts.logits, &f.acts.loss]).await?;
    Ok(vec![
        Check::new("logits", &out[0], &p.logits, LOGITS_TOL, LOGITS_TOL),
        Check::new("loss", &out[1], &[p.loss], LOSS_TOL, LOSS_TOL),
    ])
}

/// Every check the file has data for: the forward pass, and training where it has gradients.
pub async fn check(kernels: Arc<Kernels>, p: &ParityFile, submit_budget_ms: f64) -> Result<Vec<Check>> {
    let mut checks = check_forward(kernels.clone(), p, submit_budget_ms).await?;
    if p.grads.is_some() {
        checks.extend(check_training(kernels, p, submit_budget_ms).await?);
    }
    Ok(checks)
}

/// Tolerances of the training checks: gradients 1e-5 + 1e-3·|want|, parameters after one step
/// and after the N steps of `train` 1e-4, the N-step losses 1e-3.
pub const GRAD_ATOL: f32 = 1e-5;
pub const GRAD_RTOL: f32 = 1e-3;
pub const STEP1_TOL: f32 = 1e-4;
pub const LOSSES_TOL: f32 = 1e-3;

/// The bound r of the update-norm check, ‖Δgot − Δwant‖ ≤ r·‖Δwant‖ per tensor (Δ = after −
/// before; c_attn's bias without its key part, see [`norm_parts`]). The absolute bound above
/// cannot see an update's small parts: one AdamW step at lr 1e-3 and decay 0.1 moves a weight of
/// 0.02 by 2e-6, far under 1e-4, so a run without decay passes it. In norm the decay is
/// wd·rms(w) of an AdamW update (2e-3 at HF's init std 0.02, 2e-2 at the std 0.2 of
/// tests/fixtures/train.safetensors), and the other parts are larger (decay on the gains: 0.1;
/// no clipping, another schedule: 3e-2 and more).
///
/// r sits over the f32 noise floor, measured by `make_parity.py --noise` (torch f32 against the
/// same step in float64) and by wgpt against torch on every committed and shared fixture: one
/// AdamW step differs by 3e-6 of the update's norm at the median tensor, 3e-5 on the layer-norm
/// gains (the updated value is rounded to the f32 spacing of a weight near 1, 1e-7, against a
/// step of 1e-3), and at worst 2.2e-4, on c_attn's and c_fc's weights at HF's init (elements
/// whose gradient is near AdamW's eps 1e-8, where g/(|g| + eps) is sensitive); SGD's steps 2e-6.
/// r = 1e-3 leaves 4x room over that worst and still catches a missing decay at HF's init.
pub const UPDATE_NORM_RTOL: f32 = 1e-3;

/// Trains on the parity file's batch as its maker did (its optimizer at constant lr, no
/// clipping) and compares every gradient, the parameters after one step (element by element and
/// each tensor's update in norm) and the N losses; then, where the file has `train`, the
/// parameters after its N steps of nanoGPT's loop ([`check_n_steps`]).
pub async fn check_training(kernels: Arc<Kernels>, p: &ParityFile, submit_budget_ms: f64) -> Result<Vec<Check>> {
    let (Some(cfg), Some(grads), Some(step1)) = (p.train_config(), &p.grads, &p.step1) else {
        return Err(Error::Format(
            "this parity file has no training data (optimizer or adamw, expected.grad.*, expected.step1.*)".into(),
        ));
    };
    let model = Gpt2::new(kernels.clone(), &p.weights)?.with_submit_budget(submit_budget_ms);
    let mut trainer = Trainer::new(model, cfg)?;
    let batch = [(p.x.clone(), p.y.clone())];
    trainer.step(&batch)?;
    let gpu = trainer.model.kernels.gpu.clone();
    let got_grads = gpu.read_many(&trainer.grads.ordered()).await?;
    let got_step1 = gpu.read_many(&trainer.model.params.ordered()).await?;
    let mut losses = vec![trainer.last_loss().await?];
    for _ in 1..p.losses.len() {
        trainer.step(&batch)?;
        losses.push(trainer.last_loss().await?);
    }
    drop(trainer);
    let (names, parts) = (tensor_names(p), norm_parts(p));
    let flat = |v: &[Vec<f32>]| v.concat();
    let mut checks = vec![Check::new("grads (all)", &flat(&got_grads), &flat(grads), GRAD_ATOL, GRAD_RTOL)];
    let what = format!("1 {} step", p.optimizer.map_or("AdamW", |o| o.title()));
    let updates = Updates { parts: &parts, before: &p.weights.tensors, got: &got_step1, want: step1 };
    checks.extend(parameter_checks(&what, updates));
    checks.push(Check::new(&format!("losses of {} steps", p.losses.len()), &losses, &p.losses, LOSSES_TOL, 0.0));
    for ((name, got), want) in names.iter().zip(&got_grads).zip(grads) {
        let c = Check::new(&format!("grad {name}"), got, want, GRAD_ATOL, GRAD_RTOL);
        if !c.passed() {
            checks.push(c);
        }
    }
    if p.train.is_some() {
        checks.extend(check_n_steps(kernels, p, submit_budget_ms).await?);
    }
    Ok(checks)
}

/// Runs the `train` metadata's N steps through the trainer the CLI and the page train with (the
/// same schedule, clipping and accumulation code) from the file's parameters, on its batch cut
/// into grad_accum micro-batches, and compares the parameters after them with
/// `expected.stepN.*`: element by element and each tensor's update in norm.
pub async fn check_n_steps(kernels: Arc<Kernels>, p: &ParityFile, submit_budget_ms: f64) -> Result<Vec<Check>> {
    let (Some(train), Some(cfg), Some(want)) = (p.train, p.train_n_config(), &p.step_n) else {
        return Err(Error::Format("this parity file has no N-step training (metadata train, expected.stepN.*)".into()));
    };
    let model = Gpt2::new(kernels, &p.weights)?.with_submit_budget(submit_budget_ms);
    let mut trainer = Trainer::new(model, cfg)?;
    let batches = p.micro_batches(cfg.grad_accum);
    for _ in 0..train.steps {
        trainer.step(&batches)?;
    }
    let got = trainer.model.kernels.gpu.read_many(&trainer.model.params.ordered()).await?;
    let parts = norm_parts(p);
    let what = format!(
        "{} steps (warmup {}, clip {}, accum {})",
        train.steps, train.warmup_iters, train.grad_clip, train.grad_accum
    );
    Ok(parameter_checks(&what, Updates { parts: &parts, before: &p.weights.tensors, got: &got, want }))
}

/// The parameters after `what` (all of them, element by element, within STEP1_TOL) and each
/// tensor's update in norm (within UPDATE_NORM_RTOL), with a check of its own for each tensor
/// past that bound.
fn parameter_checks(what: &str, u: Updates<'_>) -> Vec<Check> {
    let flat = |v: &[Vec<f32>]| v.concat();
    let elements = Check::new(&format!("params after {what}"), &flat(u.got), &flat(u.want), STEP1_TOL, 0.0);
    let norm = Check::update_norm(&format!("update norms of {what}"), u, UPDATE_NORM_RTOL);
    let failed = norm.failed_tensors(&format!("update of {what}:"));
    [elements, norm].into_iter().chain(failed).collect()
}

/// The parameters' names (as the config's parameter table has them) in parameter order.
fn tensor_names(p: &ParityFile) -> Vec<String> {
    p.weights.config.param_specs().into_iter().map(|(name, _)| name).collect()
}

/// What the update-norm check compares: every tensor whole, but c_attn's bias as its query part
/// and its value part. Its key part has a gradient of zero in exact arithmetic (softmax ignores
/// q·b_k, the same on every score of a row), so its AdamW step is f32 rounding divided by
/// |rounding| + eps, of any size up to lr and either sign in any implementation (1e-3 to 3e-3 of
/// the whole bias's update norm in the fixtures, torch against float64 as well as wgpt against
/// torch); the element-wise bound still holds it.
fn norm_parts(p: &ParityFile) -> Vec<Part> {
    let a = p.weights.config.attn_dims();
    let (q, kv) = (a.out_width(), a.kv_width());
    let specs = p.weights.config.param_specs();
    let mut parts = vec![];
    for (i, (name, shape)) in specs.into_iter().enumerate() {
        let n: usize = shape.iter().product();
        if name.ends_with("attn.c_attn.bias") {
            parts.push(Part { name: format!("{name}[q]"), tensor: i, range: 0..q });
            parts.push(Part { name: format!("{name}[v]"), tensor: i, range: q + kv..n });
        } else {
            parts.push(Part { name, tensor: i, range: 0..n });
        }
    }
    parts
}
