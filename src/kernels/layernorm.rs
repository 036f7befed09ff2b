//! LayerNorm (shaders/layernorm.wgsl), llm.c's `layernorm_forward` and `layernorm_backward`.

use super::{grid, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

pub struct LayerNorm {
    fwd: Pipe,
    bwd: Pipe,
    bwd_params: Pipe,
}

/// GPT-2's layer_norm_epsilon.
pub const EPS: f32 = 1e-5;

impl LayerNorm {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> LayerNorm {
        LayerNorm {
            fwd: Pipe::new(gpu, module, "layernorm.forward", "forward", 1),
            bwd: Pipe::new(gpu, module, "layernorm.backward", "backward", 7),
            bwd_params: Pipe::new(gpu, module, "layernorm.backward_params", "backward_params", 13),
        }
    }

    /// out (N,C), mean (N), rstd (N) from inp (N,C), weight (C), bias (C).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        out: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        inp: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
    ) {
        let c = weight.numel();
        let rows = inp.numel() / c;
        let params = Params { rows: rows as u32, c: c as u32, eps: EPS, _pad: 0 };
        prog.push(self.fwd.dispatch(gpu, &params, &[out, mean, rstd, inp, weight, bias], grid(rows, 64)));
    }

    /// dinp (N,C), dweight (C), dbias (C) += the gradients of the forward given dout (N,C) and
    /// the forward's inp (N,C), weight (C), mean (N), rstd (N).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        dinp: &Tensor,
        dweight: &Tensor,
        dbias: &Tensor,
        dout: &Tensor,
        inp: &Tensor,
        weight: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
    ) {
        let c = weight.numel();
        let rows = inp.numel() / c;
        let params = Params { rows: rows as u32, c: c as u32, eps: EPS, _pad: 0 };
        prog.push(self.bwd.dispatch(gpu, &params, &[dinp, dout, inp, weight, mean, rstd], grid(rows, 64)));
        // one workgroup per 16 columns
        prog.push(self.bwd_params.dispatch(
            gpu,
            &params,
            &[dweight, dbias, dout, inp, mean, rstd],
            grid(c.div_ceil(16), 1),
        ));
    }
}
