//! Softmax cross-entropy and its mean (shaders/crossentropy.wgsl), llm.c's `crossentropy_forward`.

use super::{grid, Dims4, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

pub struct CrossEntropy {
    fwd: Pipe,
    mean: Pipe,
}

impl CrossEntropy {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> CrossEntropy {
        CrossEntropy {
            fwd: Pipe::new(gpu, module, "crossentropy.forward", "forward", 1),
            mean: Pipe::new(gpu, module, "crossentropy.mean", "mean", 4),
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
        let v = logits.numel() / rows;
        let params = Dims4::new(rows, v, 0, 0);
        prog.push(
            self.fwd
                .dispatch(gpu, &params, &[losses, logits, targets], grid(rows, 1)),
        );
        prog.push(self.mean.dispatch(gpu, &params, &[loss, losses], [1, 1, 1]));
    }
}
