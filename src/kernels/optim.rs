//! SGD with momentum and Nesterov (shaders/optim.wgsl), torch.optim.SGD's update. Its modules
//! start with adamw.wgsl's header and share its Params, Step and the loss scaler, so a step's
//! gradient norm, clipping and skipped steps are AdamW's.

use super::adamw::Params;
use super::{grid, ModuleSpec, Program, Widths};
use crate::gpu::{Gpu, Tensor};

pub(super) fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["adamw.wgsl", "optim.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    Widths::specs(spec("sgd_update")).into()
}

/// One SGD update's tensors: param and buf (its momentum buffer) are updated in place from grad
/// (unscaled by the loss scale and scaled by the clip factor from norm (1)); step holds the
/// step's [`super::StepParams`] (its lr), scaler the loss scaler's state.
pub struct SgdUpdate<'a> {
    pub param: &'a Tensor,
    pub buf: &'a Tensor,
    pub grad: &'a Tensor,
    pub step: &'a Tensor,
    pub norm: &'a Tensor,
    pub scaler: &'a Tensor,
}

impl SgdUpdate<'_> {
    /// The tensors in binding order, with `extra` (the dynamics' partial sums) before the scaler.
    pub(super) fn bindings<'a>(&'a self, extra: Option<&'a Tensor>) -> Vec<&'a Tensor> {
        let mut all = vec![self.param, self.buf, self.grad, self.step, self.norm];
        all.extend(extra);
        all.push(self.scaler);
        all
    }
}

/// An SGD parameter group's constants: its weight decay (added to the gradient), momentum and
/// whether the momentum is Nesterov's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConsts {
    pub weight_decay: f32,
    pub momentum: f32,
    pub nesterov: bool,
}

impl SgdConsts {
    /// The dispatch's Params for `n` elements.
    pub(super) fn params(&self, n: usize, slot: usize) -> Params {
        Params {
            momentum: self.momentum,
            nesterov: u32::from(self.nesterov),
            ..Params::new(n, slot, self.weight_decay)
        }
    }
}

pub struct Sgd {
    update: Widths,
}

impl Sgd {
    pub fn new(gpu: &Gpu) -> Sgd {
        Sgd { update: Widths::new(gpu, || spec("sgd_update")) }
    }

    /// One SGD update of `t.param` under `c`.
    pub fn update(&self, prog: &mut Program, t: SgdUpdate, c: SgdConsts) {
        let (pipe, n) = self.update.pick(t.param.numel());
        prog.push(pipe.dispatch(&c.params(n, 0), &t.bindings(None), grid(n, 64)));
    }
}
