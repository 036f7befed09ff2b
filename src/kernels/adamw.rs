//! AdamW with global gradient-norm clipping (shaders/adamw.wgsl): the norm is reduced on the GPU
//! and read by the update, so a training step needs no readback.

use super::{grid, ModuleSpec, Pipe, Program, Widths};
use crate::gpu::{Gpu, Tensor};

/// adamw.wgsl's Params (shared with shaders/dynamics.wgsl, whose modules start with its header).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub n: u32,
    pub slot: u32,
    pub weight_decay: f32,
    pub _pad: u32,
}

/// Per-step hyperparameters, mirrored by `Step` in the shader; written once per step.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// 1 − beta1^t
    pub bias1: f32,
    /// √(1 − beta2^t)
    pub bias2_sqrt: f32,
    /// Clip the global gradient norm to this; 0 turns clipping off.
    pub grad_clip: f32,
    pub _pad: f32,
}

impl StepParams {
    /// The values for step `t` (1-based), bias corrections computed in f64 as torch does.
    pub fn new(t: u64, lr: f32, beta1: f32, beta2: f32, eps: f32, grad_clip: f32) -> StepParams {
        let bias1 = 1.0 - (beta1 as f64).powi(t as i32);
        let bias2 = 1.0 - (beta2 as f64).powi(t as i32);
        StepParams { lr, beta1, beta2, eps, bias1: bias1 as f32, bias2_sqrt: bias2.sqrt() as f32, grad_clip, _pad: 0.0 }
    }
}

/// Elements per partial sum of the squared norm (CHUNK in the shader).
pub(super) const CHUNK: usize = 65536;

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["adamw.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    let mut all = vec![spec("sumsq"), spec("norm_finish")];
    all.extend(Widths::specs(spec("update")));
    all
}

/// One update's tensors: param, m and v are updated in place from grad (scaled by the clip
/// factor from norm (1)); step holds the step's [`StepParams`].
pub struct AdamWUpdate<'a> {
    pub param: &'a Tensor,
    pub m: &'a Tensor,
    pub v: &'a Tensor,
    pub grad: &'a Tensor,
    pub step: &'a Tensor,
    pub norm: &'a Tensor,
}

pub struct AdamW {
    sumsq: Pipe,
    norm_finish: Pipe,
    update: Widths,
}

impl AdamW {
    pub fn new(gpu: &Gpu) -> AdamW {
        AdamW {
            sumsq: Pipe::new(gpu, spec("sumsq")),
            norm_finish: Pipe::new(gpu, spec("norm_finish")),
            update: Widths::new(gpu, || spec("update")),
        }
    }

    /// Length of the partial-sums buffer [`AdamW::grad_norm`] needs for these gradients.
    pub fn partials_len(grads: &[&Tensor]) -> usize {
        grads.iter().map(|g| g.numel().div_ceil(CHUNK)).sum::<usize>().max(1)
    }

    /// norm (1) = ‖all grads‖₂, through `partials` (length [`AdamW::partials_len`]).
    pub fn grad_norm(&self, prog: &mut Program, norm: &Tensor, partials: &Tensor, grads: &[&Tensor]) {
        let mut slot = 0;
        for g in grads {
            let chunks = g.numel().div_ceil(CHUNK);
            let params = Params { n: g.numel() as u32, slot: slot as u32, weight_decay: 0.0, _pad: 0 };
            prog.push(self.sumsq.dispatch(&params, &[partials, g], grid(chunks, 1)));
            slot += chunks;
        }
        let params = Params { n: slot as u32, slot: 0, weight_decay: 0.0, _pad: 0 };
        prog.push(self.norm_finish.dispatch(&params, &[norm, partials], [1, 1, 1]));
    }

    /// One AdamW update of `t.param` with decoupled weight decay `weight_decay`.
    pub fn update(&self, prog: &mut Program, t: AdamWUpdate, weight_decay: f32) {
        let (pipe, n) = self.update.pick(t.param.numel());
        let params = Params { n: n as u32, slot: 0, weight_decay, _pad: 0 };
        prog.push(pipe.dispatch(&params, &[t.param, t.m, t.v, t.grad, t.step, t.norm], grid(n, 64)));
    }
}
