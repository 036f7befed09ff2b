//! The walk over parameter slots: every parameter with its gradient, its optimizer rule and the
//! state that rule keeps, in the row chunks an update binds. The step's update (train.rs), the
//! update with statistics (dynamics.rs) and the gradient norm all record their per-tensor
//! programs from this one list; [`record_update`] is where an optimizer is one more arm.

use crate::gpu::{Gpu, Tensor};
use crate::kernels::{AdamWUpdate, Kernels, MuonUpdate, NsConsts, Program, SgdConsts, SgdUpdate};
use crate::model::lora::Grads;
use crate::model::Gpt2;
use crate::{Error, Result};

use super::muon::MuonTensors;
use super::{rules, OptimizerState, Rule, TrainConfig};

/// One parameter and the tensors of its shape an optimizer updates it with.
pub(crate) struct Slot {
    /// Its name and shape in [`crate::Gpt2Config::param_specs`] (the name without the
    /// `transformer.` prefix).
    pub name: String,
    pub shape: Vec<usize>,
    /// Its optimizer and weight decay ([`Rule::of`]).
    pub rule: Rule,
    /// Its rows in chunks that each fit one storage binding ([`Gpu::row_chunks`]; one chunk, the
    /// whole tensor, where it fits): a parameter, its gradient and its state have one shape, so
    /// their chunks match.
    pub chunks: Vec<Chunk>,
}

/// The same rows of a parameter, its gradient and its optimizer state.
pub(crate) struct Chunk {
    pub param: Tensor,
    pub grad: Tensor,
    pub state: State,
}

/// What a rule keeps of a parameter (the same rows as its chunk).
pub(crate) enum State {
    /// AdamW's first and second moments.
    Adam { m: Tensor, v: Tensor },
    /// SGD's or Muon's momentum buffer.
    Momentum { buf: Tensor },
}

/// What every update reads besides its chunk.
pub(crate) struct StepTensors {
    /// (8) the step's [`crate::kernels::StepParams`].
    pub params: Tensor,
    /// (1) the global gradient norm before clipping.
    pub norm: Tensor,
    /// The loss scaler's state ([`crate::kernels::ScalerHead`], then the bias corrections of
    /// skipped steps).
    pub scaler: Tensor,
    /// Muon's step table and Newton-Schulz scratch, where some parameter takes Muon.
    pub muon: Option<MuonTensors>,
}

impl Chunk {
    /// AdamW's update of this chunk in the step that `s` describes, where it keeps Adam's
    /// moments.
    pub(crate) fn adamw<'a>(&'a self, s: &'a StepTensors) -> Option<AdamWUpdate<'a>> {
        let State::Adam { m, v } = &self.state else { return None };
        let (step, norm, scaler) = (&s.params, &s.norm, &s.scaler);
        Some(AdamWUpdate { param: &self.param, m, v, grad: &self.grad, step, norm, scaler })
    }

    /// SGD's update of this chunk in the step that `s` describes, where it keeps a momentum
    /// buffer.
    pub(crate) fn sgd<'a>(&'a self, s: &'a StepTensors) -> Option<SgdUpdate<'a>> {
        let State::Momentum { buf } = &self.state else { return None };
        let (step, norm, scaler) = (&s.params, &s.norm, &s.scaler);
        Some(SgdUpdate { param: &self.param, buf, grad: &self.grad, step, norm, scaler })
    }
}

impl Slot {
    /// Muon's update of this matrix and its scratch, where its rule is Muon (a matrix is never
    /// bound in row chunks: only wte can exceed a binding, and wte takes AdamW).
    pub(crate) fn muon<'a>(&'a self, s: &'a StepTensors) -> Option<(MuonUpdate<'a>, &'a MuonTensors)> {
        let (Rule::Muon { .. }, [chunk], Some(muon)) = (self.rule, &self.chunks[..], &s.muon) else { return None };
        let State::Momentum { buf } = &chunk.state else { return None };
        let (param, grad, step, norm, scaler) = (&chunk.param, &chunk.grad, &s.params, &s.norm, &s.scaler);
        let slot = muon.slot(&self.name)?;
        Some((MuonUpdate { param, buf, grad, step, muon: &muon.step, norm, scaler, slot }, muon))
    }
}

/// An SGD rule's constants under `cfg`.
pub(crate) fn sgd_consts(cfg: &TrainConfig, decay: f32) -> SgdConsts {
    SgdConsts { weight_decay: decay, momentum: cfg.optimizer.momentum, nesterov: cfg.optimizer.nesterov }
}

/// Records `slot`'s update by its rule under `cfg` into `prog`, chunk by chunk.
pub(crate) fn record_update(
    k: &Kernels,
    prog: &mut Program,
    slot: &Slot,
    shared: &StepTensors,
    cfg: &TrainConfig,
) -> Result<()> {
    if let Some((update, muon)) = slot.muon(shared) {
        k.muon.update(prog, &k.matmul, update, muon.scratch(&slot.shape), NsConsts::default());
        return Ok(());
    }
    for chunk in &slot.chunks {
        match (slot.rule, chunk.adamw(shared), chunk.sgd(shared)) {
            (Rule::AdamW { decay }, Some(update), _) => k.adamw.update(prog, update, decay),
            (Rule::Sgd { decay }, _, Some(update)) => k.sgd.update(prog, update, sgd_consts(cfg, decay)),
            (rule, ..) => return Err(Error::Input(format!("{}: no kernel updates it by {rule:?} yet", slot.name))),
        }
    }
    Ok(())
}

/// Every parameter of `model` that trains (the adapters of a LoRA run) with its gradient
/// (`grads`), rule under `cfg` and state (`state`, allocated for the same rules), in [`rules`]'
/// order.
pub(crate) fn param_slots(
    gpu: &Gpu,
    model: &Gpt2,
    grads: &Grads,
    state: &OptimizerState,
    cfg: &TrainConfig,
) -> Vec<Slot> {
    let rows = |t: &Tensor| gpu.row_chunks(t).into_iter().map(|(_, view)| view);
    let tensors = model.trainable().into_iter().zip(grads.ordered());
    tensors
        .zip(rules(&model.config, cfg))
        .map(|((p, g), (name, shape, rule))| {
            let kept = |prefix: &str| {
                let key = format!("{prefix}{name}");
                rows(state.get(&key).expect("OptimizerState::specs lists every tensor the rules keep"))
            };
            let states: Vec<State> = match rule {
                Rule::AdamW { .. } => kept("adam_m.").zip(kept("adam_v.")).map(|(m, v)| State::Adam { m, v }).collect(),
                Rule::Sgd { .. } | Rule::Muon { .. } => {
                    kept("momentum_buffer.").map(|buf| State::Momentum { buf }).collect()
                }
            };
            let chunks =
                rows(p).zip(rows(g)).zip(states).map(|((param, grad), state)| Chunk { param, grad, state }).collect();
            Slot { rule, name, shape, chunks }
        })
        .collect()
}
