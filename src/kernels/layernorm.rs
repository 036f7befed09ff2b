//! LayerNorm (shaders/layernorm.wgsl), llm.c's `layernorm_forward` and `layernorm_backward`.

use super::{grid, ModuleSpec, Pipe, Program, Widths};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    c: u32,
    eps: f32,
    /// RMS | BIAS, as shaders/layernorm.wgsl.
    flags: u32,
}

const RMS: u32 = 1;
const BIAS: u32 = 2;

/// Which normalisation: LayerNorm (GPT-2's) or RMSNorm (no mean, Llama's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    Layer,
    Rms,
}

/// GPT-2's layer_norm_epsilon.
pub const EPS: f32 = 1e-5;

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["layernorm.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    let mut all = vec![spec("backward_params"), spec("backward_weight")];
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
    /// None: no bias (RMSNorm, or a LayerNorm without one).
    pub bias: Option<&'a Tensor>,
    pub kind: NormKind,
    pub eps: f32,
}

/// The backward's tensors: dinp (N,C), dweight (C), dbias (C) accumulate; dout (N,C) and the
/// forward's inp (N,C), weight (C), mean (N), rstd (N) are read.
pub struct LayerNormBwd<'a> {
    pub dinp: &'a Tensor,
    pub dweight: &'a Tensor,
    /// None where the forward had no bias.
    pub dbias: Option<&'a Tensor>,
    pub dout: &'a Tensor,
    pub inp: &'a Tensor,
    pub weight: &'a Tensor,
    pub mean: &'a Tensor,
    pub rstd: &'a Tensor,
    pub kind: NormKind,
}

pub struct LayerNorm {
    fwd: Widths,
    bwd: Widths,
    bwd_params: Pipe,
    bwd_weight: Pipe,
}

impl LayerNorm {
    pub fn new(gpu: &Gpu) -> LayerNorm {
        LayerNorm {
            fwd: Widths::new(gpu, || spec("forward")),
            bwd: Widths::new(gpu, || spec("backward")),
            bwd_params: Pipe::new(gpu, spec("backward_params")),
            bwd_weight: Pipe::new(gpu, spec("backward_weight")),
        }
    }

    fn params(weight: &Tensor, inp: &Tensor, kind: NormKind, bias: bool, eps: f32) -> (Params, usize, usize) {
        let c = weight.numel();
        let rows = inp.numel() / c;
        let flags = if kind == NormKind::Rms { RMS } else { 0 } | if bias { BIAS } else { 0 };
        (Params { rows: rows as u32, c: c as u32, eps, flags }, rows, c)
    }

    pub fn forward(&self, prog: &mut Program, t: LayerNormFwd) {
        let (params, rows, _) = Self::params(t.weight, t.inp, t.kind, t.bias.is_some(), t.eps);
        // without a bias the weight fills its binding (read-only, never read)
        let tensors = [t.out, t.mean, t.rstd, t.inp, t.weight, t.bias.unwrap_or(t.weight)];
        prog.push(self.fwd.pick(params.c as usize).0.dispatch(&params, &tensors, grid(rows, 64)));
    }

    pub fn backward(&self, prog: &mut Program, t: LayerNormBwd) {
        // eps is the forward's business: the backward reads its rstd
        let (params, _, c) = Self::params(t.weight, t.inp, t.kind, t.dbias.is_some(), EPS);
        self.dinp(prog, &params, [t.dinp, t.dout, t.inp, t.weight, t.mean, t.rstd]);
        let groups = grid(c.div_ceil(16), 1);
        match t.dbias {
            Some(dbias) => {
                let tensors = [t.dweight, dbias, t.dout, t.inp, t.mean, t.rstd];
                prog.push(self.bwd_params.dispatch(&params, &tensors, groups));
            }
            None => {
                let tensors = [t.dweight, t.dout, t.inp, t.mean, t.rstd];
                prog.push(self.bwd_weight.dispatch(&params, &tensors, groups));
            }
        }
    }

    /// The input's half of the backward, for a frozen norm (LoRA): `io` = [dinp, dout, inp,
    /// weight, mean, rstd], dinp (N,C) += the gradient through the norm; no weight gradients.
    pub fn backward_dinp(&self, prog: &mut Program, kind: NormKind, io: [&Tensor; 6]) {
        let (params, _, _) = Self::params(io[3], io[2], kind, false, EPS);
        self.dinp(prog, &params, io);
    }

    fn dinp(&self, prog: &mut Program, params: &Params, io: [&Tensor; 6]) {
        let (rows, c) = (params.rows as usize, params.c as usize);
        prog.push(self.bwd.pick(c).0.dispatch(params, &io, grid(rows, 64)));
    }
}
