//! LayerNorm (shaders/layernorm.wgsl), llm.c's `layernorm_forward` and `layernorm_backward`.

use super::{grid, ModuleSpec, Pipe, Program, Widths};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

/// GPT-2's layer_norm_epsilon.
pub const EPS: f32 = 1e-5;

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["layernorm.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    let mut all = vec![spec("backward_params")];
    all.extend(["forward", "backward"].into_iter().flat_map(|e| Widths::specs(spec(e))));
    all
}

/// The forward's tensors: out (N,C), mean (N), rstd (N) from inp (N,C), weight (C), bias (C).
pub struct LayerNormFwd<'a> {
    pub out: &'a Tensor,
    pub mean: &'a Tensor,
    pub rstd: &'a Tensor,
    pub inp: &'a Tensor,
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
}

/// The backward's tensors: dinp (N,C), dweight (C), dbias (C) accumulate; dout (N,C) and the
/// forward's inp (N,C), weight (C), mean (N), rstd (N) are read.
pub struct LayerNormBwd<'a> {
    pub dinp: &'a Tensor,
    pub dweight: &'a Tensor,
    pub dbias: &'a Tensor,
    pub dout: &'a Tensor,
    pub inp: &'a Tensor,
    pub weight: &'a Tensor,
    pub mean: &'a Tensor,
    pub rstd: &'a Tensor,
}

pub struct LayerNorm {
    fwd: Widths,
    bwd: Widths,
    bwd_params: Pipe,
}

impl LayerNorm {
    pub fn new(gpu: &Gpu) -> LayerNorm {
        LayerNorm {
            fwd: Widths::new(gpu, || spec("forward")),
            bwd: Widths::new(gpu, || spec("backward")),
            bwd_params: Pipe::new(gpu, spec("backward_params")),
        }
    }

    fn params(weight: &Tensor, inp: &Tensor) -> (Params, usize, usize) {
        let c = weight.numel();
        let rows = inp.numel() / c;
        (Params { rows: rows as u32, c: c as u32, eps: EPS, _pad: 0 }, rows, c)
    }

    pub fn forward(&self, prog: &mut Program, t: LayerNormFwd) {
        let (params, rows, _) = Self::params(t.weight, t.inp);
        let tensors = [t.out, t.mean, t.rstd, t.inp, t.weight, t.bias];
        prog.push(self.fwd.pick(params.c as usize).0.dispatch(&params, &tensors, grid(rows, 64)));
    }

    /// dinp, dweight, dbias += the gradients of the forward given dout.
    pub fn backward(&self, prog: &mut Program, t: LayerNormBwd) {
        let (params, rows, c) = Self::params(t.weight, t.inp);
        let bwd = self.bwd.pick(c).0;
        prog.push(bwd.dispatch(&params, &[t.dinp, t.dout, t.inp, t.weight, t.mean, t.rstd], grid(rows, 64)));
        // one workgroup per 16 columns
        let tensors = [t.dweight, t.dbias, t.dout, t.inp, t.mean, t.rstd];
        prog.push(self.bwd_params.dispatch(&params, &tensors, grid(c.div_ceil(16), 1)));
    }
}
