//! The logit lens' reduction (shaders/lens.wgsl): each row of logits to its most likely token and
//! that token's probability, so a (layers x T) grid needs no (T, V) readback per layer.

use super::{grid, ModuleSpec, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    v: u32,
    out0: u32,
    _pad: u32,
}

fn spec() -> ModuleSpec {
    ModuleSpec::new::<Params>(&["lens.wgsl"], "row_top1")
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    vec![spec()]
}

pub struct RowTop1 {
    pipe: Pipe,
}

impl RowTop1 {
    pub fn new(gpu: &Gpu) -> RowTop1 {
        RowTop1 { pipe: Pipe::new(gpu, spec()) }
    }

    /// top_id[out0 + r] (u32) = the first maximum of logits row r (rows, V) and top_p[out0 + r]
    /// its softmax probability. V is at most [`super::crossentropy::MAX_VOCAB`].
    pub fn forward(&self, prog: &mut Program, top_id: &Tensor, top_p: &Tensor, logits: &Tensor, out0: usize) {
        let (rows, v) = (logits.numel() / logits.shape[logits.shape.len() - 1], logits.shape[logits.shape.len() - 1]);
        assert!(
            v <= super::crossentropy::MAX_VOCAB,
            "row_top1 supports at most {} classes",
            super::crossentropy::MAX_VOCAB
        );
        assert!(out0 + rows <= top_id.numel() && out0 + rows <= top_p.numel(), "row_top1 writes past its outputs");
        let params = Params { rows: rows as u32, v: v as u32, out0: out0 as u32, _pad: 0 };
        prog.push(self.pipe.dispatch(&params, &[top_id, top_p, logits], grid(rows, 64)));
    }
}
