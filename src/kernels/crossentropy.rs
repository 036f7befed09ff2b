//! Softmax cross-entropy and its mean (shaders/crossentropy.wgsl), llm.c's
//! `crossentropy_forward` and the fused `crossentropy_softmax_backward`; a target of [`IGNORE`]
//! is not counted, as torch's `ignore_index` (answer-only loss on tasks).

use super::{grid, ModuleSpec, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    v: u32,
    dloss: f32,
    /// The softcap the logits went through (0: none).
    cap: f32,
}

/// The largest vocabulary the forward's one-pass row loop handles (lavapipe runs at most 65535
/// loop iterations per invocation); GPT-2's is 50257. Past it a row is one workgroup of
/// [`WIDE`] (`forward_wide`, and the lens' `row_top1_wide`).
pub const MAX_VOCAB: usize = 65535;

/// The invocations that share one row past [`MAX_VOCAB`] (WIDE in the shaders).
pub const WIDE: usize = 256;

/// The largest vocabulary at all: [`WIDE`] invocations of at most 65535 steps each.
pub const MAX_WIDE_VOCAB: usize = WIDE * 65535;

/// A target the loss does not count: its loss and gradient are 0 and the mean is over the others.
pub const IGNORE: u32 = u32::MAX;

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["softmax_row.wgsl", "crossentropy.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    ["forward", "forward_wide", "mean", "backward", "backward_scaled"].map(spec).to_vec()
}

/// The forward's tensors: loss (1), counted (1) (the targets not [`IGNORE`]d, as f32), losses
/// (N) and lse (N), the logsumexp of each row, from logits (N,V) and targets (N) u32.
pub struct CrossEntropyFwd<'a> {
    pub loss: &'a Tensor,
    pub counted: &'a Tensor,
    pub losses: &'a Tensor,
    pub lse: &'a Tensor,
    pub logits: &'a Tensor,
    pub targets: &'a Tensor,
}

/// The backward's tensors: dlogits (N,V) is overwritten from logits (N,V), the forward's lse (N)
/// and targets (N) u32 and counted (1); `scale`, if any, holds the loss scale in `scale[0]` (the
/// trainer's scaler state, shaders/adamw.wgsl's Scaler).
pub struct CrossEntropyBwd<'a> {
    pub dlogits: &'a Tensor,
    pub logits: &'a Tensor,
    pub lse: &'a Tensor,
    pub targets: &'a Tensor,
    pub counted: &'a Tensor,
    pub scale: Option<&'a Tensor>,
    /// The logit softcap the logits went through ([`super::Softcap`]), if any: dlogits are then
    /// the gradients of the logits before it.
    pub softcap: Option<f32>,
}

pub struct CrossEntropy {
    fwd: Pipe,
    fwd_wide: Pipe,
    mean: Pipe,
    bwd: Pipe,
    bwd_scaled: Pipe,
}

impl CrossEntropy {
    pub fn new(gpu: &Gpu) -> CrossEntropy {
        CrossEntropy {
            fwd: Pipe::new(gpu, spec("forward")),
            fwd_wide: Pipe::new(gpu, spec("forward_wide")),
            mean: Pipe::new(gpu, spec("mean")),
            bwd: Pipe::new(gpu, spec("backward")),
            bwd_scaled: Pipe::new(gpu, spec("backward_scaled")),
        }
    }

    /// losses and lse of each row, then loss = the mean of the counted rows' losses and counted =
    /// their number. Rows of more than [`MAX_VOCAB`] classes take a workgroup each (up to
    /// [`MAX_WIDE_VOCAB`]).
    pub fn forward(&self, prog: &mut Program, t: CrossEntropyFwd) {
        let rows = t.targets.numel();
        let v = t.logits.numel() / rows;
        assert!(v <= MAX_WIDE_VOCAB, "cross-entropy supports at most {MAX_WIDE_VOCAB} classes");
        let params = Params { rows: rows as u32, v: v as u32, dloss: 0.0, cap: 0.0 };
        let io = [t.losses, t.lse, t.logits, t.targets];
        prog.push(match v > MAX_VOCAB {
            true => self.fwd_wide.dispatch(&params, &io, grid(rows * WIDE, WIDE)),
            false => self.fwd.dispatch(&params, &io, grid(rows, 64)),
        });
        prog.push(self.mean.dispatch(&params, &[t.loss, t.counted, t.losses, t.targets], [1, 1, 1]));
    }

    /// dlogits (N,V) = (softmax(logits (N,V)) − onehot(targets (N))) · dloss, OVERWRITTEN (not
    /// accumulated), with the softmax from the forward's lse (N); `dloss` is dL/dlosses[r] for
    /// every row, 1/N for the mean loss, scaled by N/counted (0 for an ignored row). With `scale`, also times the loss scale in `scale[0]`
    /// (the trainer's scaler state, shaders/adamw.wgsl's Scaler): dynamic loss scaling.
    pub fn backward(&self, prog: &mut Program, t: CrossEntropyBwd, dloss: f32) {
        let CrossEntropyBwd { dlogits, logits, lse, targets, counted, scale, softcap } = t;
        let rows = targets.numel();
        let v = logits.numel() / rows;
        assert!(rows * v <= u32::MAX as usize, "cross-entropy backward: {rows} rows of {v} classes pass u32 indices");
        let params = Params { rows: rows as u32, v: v as u32, dloss, cap: softcap.unwrap_or(0.0) };
        let wg = grid(rows * v, 64);
        prog.push(match scale {
            Some(scale) => self.bwd_scaled.dispatch(&params, &[dlogits, logits, lse, targets, counted, scale], wg),
            None => self.bwd.dispatch(&params, &[dlogits, logits, lse, targets, counted], wg),
        });
    }
}
