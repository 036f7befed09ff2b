//! The logit lens' reduction (shaders/lens.wgsl): each row of logits to its most likely token and
//! that token's probability, so a (layers x T) grid needs no (T, V) readback per layer.

use super::crossentropy::{MAX_VOCAB, MAX_WIDE_VOCAB, WIDE};
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

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["softmax_row.wgsl", "lens.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    vec![spec("row_top1"), spec("row_top1_wide")]
}

pub struct RowTop1 {
    pipe: Pipe,
    wide: Pipe,
}

impl RowTop1 {
    pub fn new(gpu: &Gpu) -> RowTop1 {
        RowTop1 { pipe: Pipe::new(gpu, spec("row_top1")), wide: Pipe::new(gpu, spec("row_top1_wide")) }
    }

    /// top_id[out0 + r] (u32) = the first maximum of logits row r (rows, V) and top_p[out0 + r]
    /// its softmax probability. Rows of more than [`MAX_VOCAB`] classes take a workgroup each (up
    /// to [`MAX_WIDE_VOCAB`]).
    pub fn forward(&self, prog: &mut Program, top_id: &Tensor, top_p: &Tensor, logits: &Tensor, out0: usize) {
        let (rows, v) = (logits.numel() / logits.shape[logits.shape.len() - 1], logits.shape[logits.shape.len() - 1]);
        assert!(v <= MAX_WIDE_VOCAB, "row_top1 supports at most {MAX_WIDE_VOCAB} classes");
        assert!(out0 + rows <= top_id.numel() && out0 + rows <= top_p.numel(), "row_top1 writes past its outputs");
        let params = Params { rows: rows as u32, v: v as u32, out0: out0 as u32, _pad: 0 };
        let io = [top_id, top_p, logits];
        prog.push(match v > MAX_VOCAB {
            true => self.wide.dispatch(&params, &io, grid(rows * WIDE, WIDE)),
            false => self.pipe.dispatch(&params, &io, grid(rows, 64)),
        });
    }
}
