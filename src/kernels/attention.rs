//! Fused causal self-attention (shaders/attention.wgsl), llm.c's `attention_forward`.

use super::{grid, Dims4, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

pub struct Attention {
    fwd: Pipe,
}

impl Attention {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Attention {
        Attention {
            fwd: Pipe::new(gpu, module, "attention.forward", "forward", 1),
        }
    }

    /// out (B,T,C) and att (B,NH,T,T) from qkv (B,T,3C).
    pub fn forward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        out: &Tensor,
        att: &Tensor,
        qkv: &Tensor,
        nh: usize,
    ) {
        let (b, t, c) = (out.shape[0], out.shape[1], out.shape[2]);
        prog.push(self.fwd.dispatch(
            gpu,
            &Dims4::new(b, t, c, nh),
            &[out, att, qkv],
            grid(b * nh * t, 1),
        ));
    }
}
