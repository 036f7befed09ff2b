//! Elementwise kernels: tanh-GELU (shaders/gelu.wgsl) and the residual add (shaders/residual.wgsl).

use super::{grid, Dims4, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

pub struct Gelu {
    fwd: Pipe,
}

impl Gelu {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Gelu {
        Gelu {
            fwd: Pipe::new(gpu, module, "gelu.forward", "forward", 1),
        }
    }

    /// out = gelu_new(inp), any shape.
    pub fn forward(&self, gpu: &Gpu, prog: &mut Program, out: &Tensor, inp: &Tensor) {
        let n = inp.numel();
        prog.push(
            self.fwd
                .dispatch(gpu, &Dims4::new(n, 0, 0, 0), &[out, inp], grid(n, 64)),
        );
    }
}

pub struct Residual {
    fwd: Pipe,
}

impl Residual {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Residual {
        Residual {
            fwd: Pipe::new(gpu, module, "residual.forward", "forward", 1),
        }
    }

    /// out = a + b, any shape.
    pub fn forward(&self, gpu: &Gpu, prog: &mut Program, out: &Tensor, a: &Tensor, b: &Tensor) {
        let n = a.numel();
        prog.push(
            self.fwd
                .dispatch(gpu, &Dims4::new(n, 0, 0, 0), &[out, a, b], grid(n, 64)),
        );
    }
}
