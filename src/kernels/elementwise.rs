//! Elementwise kernels: tanh-GELU (shaders/gelu.wgsl), ReLU² (shaders/relu2.wgsl) and the
//! residual add (shaders/residual.wgsl),
//! forward and backward, on vec4s where the length is a multiple of 4 (a quarter of the loads;
//! the same operations per element, so the same results) and on scalars elsewhere; and the logit
//! softcap (shaders/softcap.wgsl), in place, whose backward is the cross-entropy's.

use super::{grid, Dims4, ModuleSpec, Pipe, Program, Widths};
use crate::gpu::{Gpu, Tensor};

const GELU: &[&str] = &["gelu.wgsl"];
const RESIDUAL: &[&str] = &["residual.wgsl"];
const RELU2: &[&str] = &["relu2.wgsl"];

fn spec(files: &'static [&'static str], entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Dims4>(files, entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    [
        (GELU, "forward"),
        (GELU, "backward"),
        (RELU2, "forward"),
        (RELU2, "backward"),
        (RESIDUAL, "forward"),
        (RESIDUAL, "backward"),
    ]
    .into_iter()
    .flat_map(|(f, e)| Widths::specs(spec(f, e)))
    .chain([softcap_spec()])
    .collect()
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftcapParams {
    n: u32,
    cap: f32,
    _pad: [u32; 2],
}

fn softcap_spec() -> ModuleSpec {
    ModuleSpec::new::<SoftcapParams>(&["softcap.wgsl"], "forward")
}

pub struct Softcap {
    fwd: Pipe,
}

impl Softcap {
    pub fn new(gpu: &Gpu) -> Softcap {
        Softcap { fwd: Pipe::new(gpu, softcap_spec()) }
    }

    /// x = cap·tanh(x / cap) in place, any shape (the logits after the head).
    pub fn forward(&self, prog: &mut Program, x: &Tensor, cap: f32) {
        let n = x.numel();
        prog.push(self.fwd.dispatch(&SoftcapParams { n: n as u32, cap, _pad: [0; 2] }, &[x], grid(n, 64)));
    }
}

/// A dispatch of `pipes` over `n` elements of `tensors` (each of n elements).
fn dispatch(pipes: &Widths, prog: &mut Program, n: usize, tensors: &[&Tensor]) {
    let (pipe, n) = pipes.pick(n);
    prog.push(pipe.dispatch(&Dims4::new(n, 0, 0, 0), tensors, grid(n, 64)));
}

pub struct Gelu {
    fwd: Widths,
    bwd: Widths,
}

impl Gelu {
    pub fn new(gpu: &Gpu) -> Gelu {
        Gelu { fwd: Widths::new(gpu, || spec(GELU, "forward")), bwd: Widths::new(gpu, || spec(GELU, "backward")) }
    }

    /// out = gelu_new(inp), any shape.
    pub fn forward(&self, prog: &mut Program, out: &Tensor, inp: &Tensor) {
        dispatch(&self.fwd, prog, inp.numel(), &[out, inp]);
    }

    /// dinp += gelu_new'(inp) · dout, any shape.
    pub fn backward(&self, prog: &mut Program, dinp: &Tensor, inp: &Tensor, dout: &Tensor) {
        dispatch(&self.bwd, prog, inp.numel(), &[dinp, inp, dout]);
    }
}

pub struct Relu2 {
    fwd: Widths,
    bwd: Widths,
}

impl Relu2 {
    pub fn new(gpu: &Gpu) -> Relu2 {
        Relu2 { fwd: Widths::new(gpu, || spec(RELU2, "forward")), bwd: Widths::new(gpu, || spec(RELU2, "backward")) }
    }

    /// out = relu(inp)², any shape.
    pub fn forward(&self, prog: &mut Program, out: &Tensor, inp: &Tensor) {
        dispatch(&self.fwd, prog, inp.numel(), &[out, inp]);
    }

    /// dinp += 2·relu(inp)·dout, any shape.
    pub fn backward(&self, prog: &mut Program, dinp: &Tensor, inp: &Tensor, dout: &Tensor) {
        dispatch(&self.bwd, prog, inp.numel(), &[dinp, inp, dout]);
    }
}

pub struct Residual {
    fwd: Widths,
    bwd: Widths,
}

impl Residual {
    pub fn new(gpu: &Gpu) -> Residual {
        Residual {
            fwd: Widths::new(gpu, || spec(RESIDUAL, "forward")),
            bwd: Widths::new(gpu, || spec(RESIDUAL, "backward")),
        }
    }

    /// out = a + b, any shape.
    pub fn forward(&self, prog: &mut Program, out: &Tensor, a: &Tensor, b: &Tensor) {
        dispatch(&self.fwd, prog, a.numel(), &[out, a, b]);
    }

    /// da += dout and db += dout, any shape; da and db must be different tensors.
    pub fn backward(&self, prog: &mut Program, da: &Tensor, db: &Tensor, dout: &Tensor) {
        assert!(
            !std::sync::Arc::ptr_eq(&da.buffer, &db.buffer),
            "residual backward: da and db must be different tensors"
        );
        dispatch(&self.bwd, prog, dout.numel(), &[da, db, dout]);
    }
}
