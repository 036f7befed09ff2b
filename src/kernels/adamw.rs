//! AdamW with global gradient-norm clipping (shaders/adamw.wgsl): the norm is reduced on the GPU
//! and read by the update, so a training step needs no readback.

use super::{grid, ModuleSpec, Pipe, Program, Widths};
use crate::gpu::{Gpu, Tensor};

/// adamw.wgsl's Params (shared with shaders/dynamics.wgsl and shaders/optim.wgsl, whose modules
/// start with its header).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub n: u32,
    pub slot: u32,
    pub weight_decay: f32,
    /// SGD's momentum factor and Nesterov flag (src/kernels/optim.rs).
    pub momentum: f32,
    pub nesterov: u32,
    pub _pad: [u32; 3],
}

impl Params {
    /// `n` elements (or partials, tensors), from partial sum `slot`, with `weight_decay`.
    pub(super) fn new(n: usize, slot: usize, weight_decay: f32) -> Params {
        Params { n: n as u32, slot: slot as u32, weight_decay, momentum: 0.0, nesterov: 0, _pad: [0; 3] }
    }
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

/// Skipped steps whose bias corrections the scaler state holds (the size of Scaler's bias array
/// in the shader): AdamW counts applied steps exactly while fewer steps were skipped; past that
/// it uses those of step − (BIAS_WINDOW − 1).
pub const BIAS_WINDOW: usize = 256;

/// The head of the loss scaler's state (Scaler in shaders/adamw.wgsl), kept on the GPU; the bias
/// corrections follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ScalerHead {
    pub scale: f32,
    pub inv_scale: f32,
    /// Clean steps since the scale last changed.
    pub good: u32,
    /// Steps skipped for overflow so far.
    pub skipped: u32,
    /// 0: no loss scaling (the scale is 1 and nothing is skipped).
    pub enabled: u32,
    pub _pad: [u32; 3],
}

impl ScalerHead {
    /// 32-bit words of the whole state: the head and the bias corrections.
    pub const WORDS: usize = 8 + 2 * BIAS_WINDOW;

    /// No loss scaling.
    pub fn off() -> ScalerHead {
        ScalerHead { scale: 1.0, inv_scale: 1.0, good: 0, skipped: 0, enabled: 0, _pad: [0; 3] }
    }

    /// Scaling from `scale` (1/scale computed in f64: exact for a power of two).
    pub fn on(scale: f32, good: u32, skipped: u32) -> ScalerHead {
        let inv_scale = (1.0 / scale as f64) as f32;
        ScalerHead { scale, inv_scale, good, skipped, enabled: 1, _pad: [0; 3] }
    }

    /// A state tensor holding `self` (the bias corrections zero).
    pub fn tensor(&self, gpu: &Gpu) -> Tensor {
        let t = gpu.tensor("loss_scaler", &[Self::WORDS]);
        gpu.write(&t, bytemuck::bytes_of(self));
        t
    }
}

/// Elements per partial sum of the squared norm (CHUNK in the shader).
pub(super) const CHUNK: usize = 65536;

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["adamw.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    let mut all = vec![spec("sumsq"), spec("norm_finish"), spec("scaler_update")];
    all.extend(Widths::specs(spec("update")));
    all
}

/// One update's tensors: param, m and v are updated in place from grad (unscaled by the loss
/// scale and scaled by the clip factor from norm (1)); step holds the step's [`StepParams`],
/// scaler the loss scaler's state ([`ScalerHead`]).
pub struct AdamWUpdate<'a> {
    pub param: &'a Tensor,
    pub m: &'a Tensor,
    pub v: &'a Tensor,
    pub grad: &'a Tensor,
    pub step: &'a Tensor,
    pub norm: &'a Tensor,
    pub scaler: &'a Tensor,
}

pub struct AdamW {
    sumsq: Pipe,
    norm_finish: Pipe,
    update: Widths,
    scaler_update: Pipe,
}

impl AdamW {
    pub fn new(gpu: &Gpu) -> AdamW {
        AdamW {
            sumsq: Pipe::new(gpu, spec("sumsq")),
            norm_finish: Pipe::new(gpu, spec("norm_finish")),
            update: Widths::new(gpu, || spec("update")),
            scaler_update: Pipe::new(gpu, spec("scaler_update")),
        }
    }

    /// Length of the partial-sums buffer [`AdamW::grad_norm`] needs for these gradients.
    pub fn partials_len(grads: &[&Tensor]) -> usize {
        grads.iter().map(|g| g.numel().div_ceil(CHUNK)).sum::<usize>().max(1)
    }

    /// norm (1) = ‖all grads‖₂, through `partials` (length [`AdamW::partials_len`]), divided by
    /// the loss scale where `scaler` has scaling on.
    pub fn grad_norm(&self, prog: &mut Program, norm: &Tensor, partials: &Tensor, grads: &[&Tensor], scaler: &Tensor) {
        let mut slot = 0;
        for g in grads {
            let chunks = g.numel().div_ceil(CHUNK);
            let params = Params::new(g.numel(), slot, 0.0);
            prog.push(self.sumsq.dispatch(&params, &[partials, g], grid(chunks, 1)));
            slot += chunks;
        }
        let params = Params::new(slot, 0, 0.0);
        prog.push(self.norm_finish.dispatch(&params, &[norm, partials, scaler], [1, 1, 1]));
    }

    /// After a step's updates: the loss scale halves where `norm` overflowed (and the step
    /// counts as skipped) and doubles after `growth_interval` clean steps in a row.
    pub fn scaler_update(&self, prog: &mut Program, scaler: &Tensor, norm: &Tensor, growth_interval: u32) {
        let params = Params::new(growth_interval as usize, 0, 0.0);
        prog.push(self.scaler_update.dispatch(&params, &[scaler, norm], [1, 1, 1]));
    }

    /// One AdamW update of `t.param` with decoupled weight decay `weight_decay`.
    pub fn update(&self, prog: &mut Program, t: AdamWUpdate, weight_decay: f32) {
        let (pipe, n) = self.update.pick(t.param.numel());
        let params = Params::new(n, 0, weight_decay);
        prog.push(pipe.dispatch(&params, &[t.param, t.m, t.v, t.grad, t.step, t.norm, t.scaler], grid(n, 64)));
    }
}
