//! Inverted dropout (shaders/dropout.wgsl) from a counter-based hash: the same call masks an
//! activation in the forward and its gradient in the backward.

use super::{grid, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    site: u32,
    p: f32,
    scale: f32,
}

pub struct Dropout {
    apply: Pipe,
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
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Dropout {
        Dropout { apply: Pipe::new(gpu, module, "dropout.apply", "apply", 1) }
    }

    /// x *= mask(seed[0], site) / (1 − p), in place; records nothing when p = 0.
    pub fn apply(&self, gpu: &Gpu, prog: &mut Program, x: &Tensor, seed: &Tensor, site: u32, p: f32) {
        if p <= 0.0 {
            return;
        }
        let n = x.numel();
        let params = Params { n: n as u32, site, p, scale: 1.0 / (1.0 - p) };
        prog.push(self.apply.dispatch(gpu, &params, &[x, seed], grid(n, 64)));
    }
}
