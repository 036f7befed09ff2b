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

pub struct CrossEntropy {
    fwd: Pipe,
    mean: Pipe,
    bwd: Pipe,
}

impl CrossEntropy {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> CrossEntropy {
        CrossEntropy {
            fwd: Pipe::new(gpu, module, "crossentropy.forward", "forward", 1),
            mean: Pipe::new(gpu, module, "crossentropy.mean", "mean", 4),
            bwd: Pipe::new(gpu, module, "crossentropy.backward", "backward", 6),
        }
    }

    /// losses (N) from logits (N,V) and targets (N) u32; then loss (1) = mean(losses).
    pub fn forward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        loss: &Tensor,
        losses: &Tensor,
        logits: &Tensor,
        targets: &Tensor,
    ) {
        let rows = targets.numel();
        let params = Params { rows: rows as u32, v: (logits.numel() / rows) as u32, dloss: 0.0, _pad: 0 };
        prog.push(self.fwd.dispatch(gpu, &params, &[losses, logits, targets], grid(rows, 1)));
        prog.push(self.mean.dispatch(gpu, &params, &[loss, losses], [1, 1, 1]));
    }

    /// dlogits (N,V) = (softmax(logits (N,V)) − onehot(targets (N))) · dloss, OVERWRITTEN (not
    /// accumulated); `dloss` is dL/dlosses[r] for every row, 1/N for the mean loss.
    pub fn backward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        dlogits: &Tensor,
        logits: &Tensor,
        targets: &Tensor,
        dloss: f32,
    ) {
        let rows = targets.numel();
        let params = Params { rows: rows as u32, v: (logits.numel() / rows) as u32, dloss, _pad: 0 };
        prog.push(self.bwd.dispatch(gpu, &params, &[dlogits, logits, targets], grid(rows, 1)));
    }
}
