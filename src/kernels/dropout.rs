//! Inverted dropout (shaders/dropout.wgsl) from a counter-based hash: the same call masks an
//! activation in the forward and its gradient in the backward, at a [`Site`] that names which
//! dropout of the model it is.

use super::{grid, ModuleSpec, Pipe, Program, Widths};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    site: u32,
    p: f32,
    scale: f32,
}

fn spec() -> ModuleSpec {
    ModuleSpec::new::<Params>(&["dropout.wgsl"], "apply")
}

/// The masked copy (`add`: the masked add) of [`Dropout::masked`].
fn masked_spec(add: bool) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["dropout.wgsl"], "masked").var("ADD", u32::from(add))
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    let mut all = Widths::specs(spec()).to_vec();
    all.extend([false, true].map(masked_spec));
    all
}

/// Which dropout of the model a mask belongs to: each has a mask of its own, and the forward and
/// the backward of one dropout use the same site (GPT-2's embd_pdrop, resid_pdrop, attn_pdrop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The embedding output.
    Embedding,
    /// Layer l's attention branch before the residual add.
    AttnResidual(usize),
    /// Layer l's MLP branch before the residual add.
    MlpResidual(usize),
    /// Layer l's attention probabilities.
    AttnProbs(usize),
}

impl Site {
    /// The site's number in the hash, for a model of `n_layer` layers: 0 for the embedding,
    /// 1 + 2l and 2 + 2l for layer l's residual branches, then 1 + 2·n_layer + l for its
    /// attention probabilities.
    pub fn id(self, n_layer: usize) -> u32 {
        (match self {
            Site::Embedding => 0,
            Site::AttnResidual(l) => 1 + 2 * l,
            Site::MlpResidual(l) => 2 + 2 * l,
            Site::AttnProbs(l) => 1 + 2 * n_layer + l,
        }) as u32
    }
}

/// A dropout as a model applies it: probability p with the micro-batch's seed (1) u32, at the
/// sites of a model of n_layer layers.
#[derive(Clone, Copy)]
pub struct DropoutRate<'a> {
    pub p: f32,
    pub seed: &'a Tensor,
    pub n_layer: usize,
}

pub struct Dropout {
    apply: Widths,
    masked_copy: Pipe,
    masked_add: Pipe,
}

/// The shader's hash, for the CPU reference.
pub fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// Whether element `i` of `site` survives dropout `p` under `seed` (the shader's rule).
pub fn keep(seed: u32, site: u32, i: u32, p: f32) -> bool {
    let u = (pcg(pcg(seed ^ pcg(site)) ^ i) >> 8) as f32 * (1.0 / 16777216.0);
    u >= p
}

impl Dropout {
    pub fn new(gpu: &Gpu) -> Dropout {
        Dropout {
            apply: Widths::new(gpu, spec),
            masked_copy: Pipe::new(gpu, masked_spec(false)),
            masked_add: Pipe::new(gpu, masked_spec(true)),
        }
    }

    /// x *= mask(seed[0], site) / (1 − p), in place; records nothing when p = 0.
    pub fn apply(&self, prog: &mut Program, x: &Tensor, seed: &Tensor, site: u32, p: f32) {
        if p <= 0.0 {
            return;
        }
        let (pipe, n) = self.apply.pick(x.numel());
        let params = Params { n: n as u32, site, p, scale: 1.0 / (1.0 - p) };
        prog.push(pipe.dispatch(&params, &[x, seed], grid(n, 64)));
    }

    /// x *= s, in place: the same kernel keeping every element (p = 0), for LoRA's alpha/r;
    /// `seed` is bound but decides nothing.
    pub fn scale(&self, prog: &mut Program, x: &Tensor, seed: &Tensor, s: f32) {
        let (pipe, n) = self.apply.pick(x.numel());
        let params = Params { n: n as u32, site: 0, p: 0.0, scale: s };
        prog.push(pipe.dispatch(&params, &[x, seed], grid(n, 64)));
    }

    /// `io` = [y, x, seed]: y = x masked as [`Dropout::apply`] masks it at `site` (`add`: y +=
    /// that), x untouched: LoRA's dropout on its adapters' input, and the way back of its
    /// gradient.
    pub fn masked(&self, prog: &mut Program, io: [&Tensor; 3], site: u32, p: f32, add: bool) {
        let [y, x, _] = io;
        assert_eq!(y.numel(), x.numel(), "masked dropout: y and x differ in size");
        let params = Params { n: x.numel() as u32, site, p, scale: 1.0 / (1.0 - p) };
        let pipe = if add { &self.masked_add } else { &self.masked_copy };
        prog.push(pipe.dispatch(&params, &io, grid(x.numel(), 64)));
    }

    /// [`Dropout::apply`] at a model's `site` under `rate`, or nothing without one.
    pub fn at(&self, prog: &mut Program, x: &Tensor, rate: Option<DropoutRate>, site: Site) {
        if let Some(r) = rate {
            self.apply(prog, x, r.seed, site.id(r.n_layer), r.p);
        }
    }
}
