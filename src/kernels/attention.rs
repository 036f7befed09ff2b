//! Fused causal self-attention (shaders/attention.wgsl), llm.c's `attention_forward` and
//! `attention_backward`, with optional dropout on the attention probabilities.

use super::{grid, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    c: u32,
    nh: u32,
    drop_p: f32,
    drop_scale: f32,
    drop_site: u32,
    _pad: u32,
}

/// Dropout on the attention probabilities: (p, the seed tensor (1) u32, the site).
pub type AttnDropout<'a> = Option<(f32, &'a Tensor, u32)>;

pub struct Attention {
    fwd: Pipe,
    bwd_scores: Pipe,
    bwd_qkv: Pipe,
    /// Bound as the seed where there is no dropout.
    no_seed: Tensor,
}

impl Attention {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Attention {
        Attention {
            fwd: Pipe::new(gpu, module, "attention.forward", "forward", 1),
            bwd_scores: Pipe::new(gpu, module, "attention.backward_scores", "backward_scores", 5),
            bwd_qkv: Pipe::new(gpu, module, "attention.backward_qkv", "backward_qkv", 10),
            no_seed: gpu.tensor("no_seed", &[1]),
        }
    }

    fn params<'a>(&'a self, shape: &Tensor, nh: usize, dropout: AttnDropout<'a>) -> (Params, &'a Tensor) {
        let (b, t, c) = (shape.shape[0], shape.shape[1], shape.shape[2]);
        assert_eq!(c % (4 * nh), 0, "attention reads heads as vec4: the head size must be a multiple of 4");
        let (p, seed, site) = dropout.unwrap_or((0.0, &self.no_seed, 0));
        let params = Params {
            b: b as u32,
            t: t as u32,
            c: c as u32,
            nh: nh as u32,
            drop_p: p,
            drop_scale: 1.0 / (1.0 - p),
            drop_site: site,
            _pad: 0,
        };
        (params, seed)
    }

    /// out (B,T,C) and att (B,NH,T,T) (the softmax, before dropout) from qkv (B,T,3C).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        out: &Tensor,
        att: &Tensor,
        qkv: &Tensor,
        nh: usize,
        dropout: AttnDropout,
    ) {
        let (params, seed) = self.params(out, nh, dropout);
        let rows = out.shape[0] * nh * out.shape[1];
        prog.push(self.fwd.dispatch(gpu, &params, &[out, att, qkv, seed], grid(rows, 64)));
    }

    /// dqkv (B,T,3C) += the gradient of the forward given dout (B,T,C), the forward's qkv
    /// (B,T,3C) and softmax att (B,NH,T,T), with the forward's `dropout`; dpreatt (B,NH,T,T) is
    /// scratch, overwritten with the gradient of the unscaled scores q·k.
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
        dropout: AttnDropout,
    ) {
        let (params, seed) = self.params(dout, nh, dropout);
        let (b, t, c) = (dout.shape[0], dout.shape[1], dout.shape[2]);
        prog.push(self.bwd_scores.dispatch(gpu, &params, &[dpreatt, dout, qkv, att, seed], grid(b * nh * t, 64)));
        prog.push(self.bwd_qkv.dispatch(gpu, &params, &[dqkv, dpreatt, dout, qkv, att, seed], grid(b * t * 3 * c, 64)));
    }
}
