//! Softmax cross-entropy and its mean (shaders/crossentropy.wgsl), llm.c's
//! `crossentropy_forward` and the fused `crossentropy_softmax_backward`.

use super::{grid, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    v: u32,
    dloss: f32,
    _pad: u32,
}

/// The largest vocabulary the forward's one-pass row loop handles (lavapipe runs at most 65535
/// loop iterations per invocation); GPT-2's is 50257.
pub const MAX_VOCAB: usize = 65535;

pub struct CrossEntropy {
    fwd: Pipe,
    mean: Pipe,
    bwd: Pipe,
}

impl CrossEntropy {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> CrossEntropy {
        CrossEntropy {
            fwd: Pipe::new(gpu, module, "crossentropy.forward", "forward", 1),
            mean: Pipe::new(gpu, module, "crossentropy.mean", "mean", 5),
            bwd: Pipe::new(gpu, module, "crossentropy.backward", "backward", 7),
        }
    }

    /// losses (N) and lse (N) = logsumexp of each row from logits (N,V) and targets (N) u32;
    /// then loss (1) = mean(losses). V is at most [`MAX_VOCAB`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        loss: &Tensor,
        losses: &Tensor,
        lse: &Tensor,
        logits: &Tensor,
        targets: &Tensor,
    ) {
        let rows = targets.numel();
        let v = logits.numel() / rows;
        assert!(v <= MAX_VOCAB, "cross-entropy supports at most {MAX_VOCAB} classes");
        let params = Params { rows: rows as u32, v: v as u32, dloss: 0.0, _pad: 0 };
        prog.push(self.fwd.dispatch(gpu, &params, &[losses, lse, logits, targets], grid(rows, 64)));
        prog.push(self.mean.dispatch(gpu, &params, &[loss, losses], [1, 1, 1]));
    }

    /// dlogits (N,V) = (softmax(logits (N,V)) − onehot(targets (N))) · dloss, OVERWRITTEN (not
    /// accumulated), with the softmax from the forward's lse (N); `dloss` is dL/dlosses[r] for
    /// every row, 1/N for the mean loss.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        dlogits: &Tensor,
        logits: &Tensor,
        lse: &Tensor,
        targets: &Tensor,
        dloss: f32,
    ) {
        let rows = targets.numel();
        let v = logits.numel() / rows;
        let params = Params { rows: rows as u32, v: v as u32, dloss, _pad: 0 };
        prog.push(self.bwd.dispatch(gpu, &params, &[dlogits, logits, lse, targets], grid(rows * v, 64)));
    }
}
