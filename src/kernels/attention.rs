//! Fused causal self-attention (shaders/attention.wgsl), llm.c's `attention_forward` and
//! `attention_backward`.

use super::{grid, Dims4, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

pub struct Attention {
    fwd: Pipe,
    bwd_scores: Pipe,
    bwd_qkv: Pipe,
}

impl Attention {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Attention {
        Attention {
            fwd: Pipe::new(gpu, module, "attention.forward", "forward", 1),
            bwd_scores: Pipe::new(gpu, module, "attention.backward_scores", "backward_scores", 4),
            bwd_qkv: Pipe::new(gpu, module, "attention.backward_qkv", "backward_qkv", 8),
        }
    }

    /// out (B,T,C) and att (B,NH,T,T) from qkv (B,T,3C).
    pub fn forward(&self, gpu: &Gpu, prog: &mut Program, out: &Tensor, att: &Tensor, qkv: &Tensor, nh: usize) {
        let (b, t, c) = (out.shape[0], out.shape[1], out.shape[2]);
        assert_eq!(c % (4 * nh), 0, "attention reads heads as vec4: the head size must be a multiple of 4");
        prog.push(self.fwd.dispatch(gpu, &Dims4::new(b, t, c, nh), &[out, att, qkv], grid(b * nh * t, 64)));
    }

    /// dqkv (B,T,3C) += the gradient of the forward given dout (B,T,C), the forward's qkv
    /// (B,T,3C) and softmax att (B,NH,T,T); dpreatt (B,NH,T,T) is scratch, overwritten with the
    /// gradient of the unscaled scores q·k.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        dqkv: &Tensor,
        dpreatt: &Tensor,
        dout: &Tensor,
        qkv: &Tensor,
        att: &Tensor,
        nh: usize,
    ) {
        let (b, t, c) = (dout.shape[0], dout.shape[1], dout.shape[2]);
        let params = Dims4::new(b, t, c, nh);
        assert_eq!(c % (4 * nh), 0, "attention reads heads as vec4: the head size must be a multiple of 4");
        prog.push(self.bwd_scores.dispatch(gpu, &params, &[dpreatt, dout, qkv, att], grid(b * nh * t, 64)));
        prog.push(self.bwd_qkv.dispatch(gpu, &params, &[dqkv, dpreatt, dout, qkv, att], grid(b * t * 3 * c, 64)));
    }
}
