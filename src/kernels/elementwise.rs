//! Elementwise kernels: tanh-GELU (shaders/gelu.wgsl) and the residual add (shaders/residual.wgsl),
//! forward and backward.

use super::{grid, Dims4, ModuleSpec, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

const GELU: &[&str] = &["gelu.wgsl"];
const RESIDUAL: &[&str] = &["residual.wgsl"];

fn spec(files: &'static [&'static str], entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Dims4>(files, entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    vec![spec(GELU, "forward"), spec(GELU, "backward"), spec(RESIDUAL, "forward"), spec(RESIDUAL, "backward")]
}

pub struct Gelu {
    fwd: Pipe,
    bwd: Pipe,
}

impl Gelu {
    pub fn new(gpu: &Gpu) -> Gelu {
        Gelu { fwd: Pipe::new(gpu, spec(GELU, "forward")), bwd: Pipe::new(gpu, spec(GELU, "backward")) }
    }

    /// out = gelu_new(inp), any shape.
    pub fn forward(&self, prog: &mut Program, out: &Tensor, inp: &Tensor) {
        let n = inp.numel();
        prog.push(self.fwd.dispatch(&Dims4::new(n, 0, 0, 0), &[out, inp], grid(n, 64)));
    }

    /// dinp += gelu_new'(inp) · dout, any shape.
    pub fn backward(&self, prog: &mut Program, dinp: &Tensor, inp: &Tensor, dout: &Tensor) {
        let n = inp.numel();
        prog.push(self.bwd.dispatch(&Dims4::new(n, 0, 0, 0), &[dinp, inp, dout], grid(n, 64)));
    }
}

pub struct Residual {
    fwd: Pipe,
    bwd: Pipe,
}

impl Residual {
    pub fn new(gpu: &Gpu) -> Residual {
        Residual { fwd: Pipe::new(gpu, spec(RESIDUAL, "forward")), bwd: Pipe::new(gpu, spec(RESIDUAL, "backward")) }
    }

    /// out = a + b, any shape.
    pub fn forward(&self, prog: &mut Program, out: &Tensor, a: &Tensor, b: &Tensor) {
        let n = a.numel();
        prog.push(self.fwd.dispatch(&Dims4::new(n, 0, 0, 0), &[out, a, b], grid(n, 64)));
    }

    /// da += dout and db += dout, any shape; da and db must be different tensors.
    pub fn backward(&self, prog: &mut Program, da: &Tensor, db: &Tensor, dout: &Tensor) {
        assert!(
            !std::sync::Arc::ptr_eq(&da.buffer, &db.buffer),
            "residual backward: da and db must be different tensors"
        );
        let n = dout.numel();
        prog.push(self.bwd.dispatch(&Dims4::new(n, 0, 0, 0), &[da, db, dout], grid(n, 64)));
    }
}
