//! Elementwise kernels: the MLP's nonlinearity (shaders/mlp.wgsl, one template instantiated
//! per activation: tanh-GELU, ReLU² and SwiGLU over the fused gate|up product) and the residual
//! add (shaders/residual.wgsl), forward and backward, on vec4s where the length (SwiGLU: its
//! width I) is a multiple of 4 (a quarter of the loads; the same operations per element, so the
//! same results) and on scalars elsewhere; and the logit softcap (shaders/softcap.wgsl), in
//! place, whose backward is the cross-entropy's.

use super::{grid, Dims4, ModuleSpec, Pipe, Program, Widths};
use crate::gpu::{Gpu, Tensor};

const MLP: &[&str] = &["mlp.wgsl"];
const RESIDUAL: &[&str] = &["residual.wgsl"];

fn spec(files: &'static [&'static str], entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Dims4>(files, entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    let acts = Act::ALL.into_iter().flat_map(|a| [a.spec(true), a.spec(false)]);
    [(RESIDUAL, "forward"), (RESIDUAL, "backward")]
        .into_iter()
        .map(|(f, e)| spec(f, e))
        .chain(acts)
        .flat_map(Widths::specs)
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

/// The MLP's nonlinearity: which instance of shaders/mlp.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// tanh-approximated GELU (HF's `gelu_new`, GPT-2's).
    Gelu,
    /// relu(x)² (the speedrun's).
    Relu2,
    /// silu(gate)·up over an input of rows [gate | up], twice the output's width (Llama, Qwen3).
    SwiGlu,
}

impl Act {
    pub const ALL: [Act; 3] = [Act::Gelu, Act::Relu2, Act::SwiGlu];

    /// Whether the input is the fused [gate | up] product, its rows twice the output's width.
    pub fn gated(self) -> bool {
        self == Act::SwiGlu
    }

    /// The template's instance: ACT, the activation the entry point applies, and the entry.
    fn spec(self, forward: bool) -> ModuleSpec {
        let act = match self {
            Act::Gelu => "gelu",
            Act::Relu2 => "relu2",
            Act::SwiGlu => "silu",
        };
        let entry = match (self.gated(), forward) {
            (false, true) => "forward",
            (false, false) => "backward",
            (true, true) => "gated_forward",
            (true, false) => "gated_backward",
        };
        spec(MLP, entry).var("ACT", act)
    }
}

/// One activation's forward and backward, in their scalar and vec4 instances.
pub struct Activation {
    act: Act,
    fwd: Widths,
    bwd: Widths,
}

impl Activation {
    pub fn new(gpu: &Gpu, act: Act) -> Activation {
        Activation { act, fwd: Widths::new(gpu, || act.spec(true)), bwd: Widths::new(gpu, || act.spec(false)) }
    }

    /// out = act(inp), any shape; gated (SwiGLU): out (N,I) = silu(gate)·up of inp (N,2I), each
    /// row [gate | up].
    pub fn forward(&self, prog: &mut Program, out: &Tensor, inp: &Tensor) {
        self.launch(&self.fwd, prog, &[out, inp], out, &[inp]);
    }

    /// dinp += act'(inp)·dout, any shape; gated: dinp (N,2I) gets dgate += silu'(gate)·up·dout in
    /// each row's first half and dup += silu(gate)·dout in its second, given dout (N,I).
    pub fn backward(&self, prog: &mut Program, dinp: &Tensor, inp: &Tensor, dout: &Tensor) {
        self.launch(&self.bwd, prog, &[dinp, inp, dout], dout, &[dinp, inp]);
    }

    /// A dispatch of `pipes` over the elements of `out` (the forward's output, the backward's
    /// dout) with `tensors` bound, after checking that the `wide` ones are as long (twice as
    /// long where gated); on vec4s where the whole length (gated: the width I) allows it.
    fn launch(&self, pipes: &Widths, prog: &mut Program, tensors: &[&Tensor], out: &Tensor, wide: &[&Tensor]) {
        let (n, gated) = (out.numel(), self.act.gated());
        let ratio = if gated { 2 } else { 1 };
        for t in wide {
            assert_eq!(t.numel(), ratio * n, "{:?}: {:?} against an output of {:?}", self.act, t.shape, out.shape);
        }
        if !gated {
            return dispatch(pipes, prog, n, tensors);
        }
        let i = *out.shape.last().expect("a gated activation's output has a width");
        let (pipe, width) = pipes.pick(i);
        let units = n / (i / width);
        prog.push(pipe.dispatch(&Dims4::new(units, width, 0, 0), tensors, grid(units, 64)));
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
