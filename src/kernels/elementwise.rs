//! Elementwise kernels: tanh-GELU (shaders/gelu.wgsl) and the residual add (shaders/residual.wgsl),
//! forward and backward.

use super::{grid, Dims4, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

pub struct Gelu {
    fwd: Pipe,
    bwd: Pipe,
}

impl Gelu {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Gelu {
        Gelu {
            fwd: Pipe::new(gpu, module, "gelu.forward", "forward", 1),
            bwd: Pipe::new(gpu, module, "gelu.backward", "backward", 3),
        }
    }

    /// out = gelu_new(inp), any shape.
    pub fn forward(&self, gpu: &Gpu, prog: &mut Program, out: &Tensor, inp: &Tensor) {
        let n = inp.numel();
        prog.push(self.fwd.dispatch(gpu, &Dims4::new(n, 0, 0, 0), &[out, inp], grid(n, 64)));
    }

    /// dinp += gelu_new'(inp) · dout, any shape.
    pub fn backward(&self, gpu: &Gpu, prog: &mut Program, dinp: &Tensor, inp: &Tensor, dout: &Tensor) {
        let n = inp.numel();
        prog.push(self.bwd.dispatch(gpu, &Dims4::new(n, 0, 0, 0), &[dinp, inp, dout], grid(n, 64)));
    }
}

pub struct Residual {
    fwd: Pipe,
    bwd: Pipe,
}

impl Residual {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Residual {
        Residual {
            fwd: Pipe::new(gpu, module, "residual.forward", "forward", 1),
            bwd: Pipe::new(gpu, module, "residual.backward", "backward", 4),
        }
    }

    /// out = a + b, any shape.
    pub fn forward(&self, gpu: &Gpu, prog: &mut Program, out: &Tensor, a: &Tensor, b: &Tensor) {
        let n = a.numel();
        prog.push(self.fwd.dispatch(gpu, &Dims4::new(n, 0, 0, 0), &[out, a, b], grid(n, 64)));
    }

    /// da += dout and db += dout, any shape; da and db must be different tensors.
    pub fn backward(&self, gpu: &Gpu, prog: &mut Program, da: &Tensor, db: &Tensor, dout: &Tensor) {
        assert!(
            !std::sync::Arc::ptr_eq(&da.buffer, &db.buffer),
            "residual backward: da and db must be different tensors"
        );
        let n = dout.numel();
        prog.push(self.bwd.dispatch(gpu, &Dims4::new(n, 0, 0, 0), &[da, db, dout], grid(n, 64)));
    }
}
