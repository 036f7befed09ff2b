//! f16 copies of weights (matmul.wgsl's `to_f16`): what the f16-weight products read as B,
//! made on the GPU from the f32 weights (crate::precision says when a run uses them).

use super::{Matmul, Params};
use crate::gpu::Tensor;
use crate::kernels::{grid, ModuleSpec, Program};

/// `spec` with B in f16.
pub(super) fn half(spec: ModuleSpec) -> ModuleSpec {
    ModuleSpec { f16: true, ..spec }
}

impl Matmul {
    /// out (f16, from [`crate::gpu::Gpu::tensor_f16`]) = x (f32) rounded to f16 element by
    /// element: the f16 copy of a weight that the f16-weight products read. Needs shader-f16.
    /// Tensors bigger than one storage binding (GPT-2's wte) go in row chunks: one dispatch per
    /// overlap of an f32 chunk of x and an f16 chunk of out (they differ: f16 rows are half as
    /// many bytes).
    pub fn to_f16(&self, prog: &mut Program, out: &Tensor, x: &Tensor) {
        assert!(out.half && !x.half && out.shape == x.shape, "to_f16: an f16 out of x's shape");
        assert!(self.gpu.shader_f16(), "to_f16 needs shader-f16 ({})", self.gpu.describe());
        let cols = x.numel() / x.shape[0].max(1);
        for (h0, h) in self.gpu.row_chunks(out) {
            for (x0, xs) in self.gpu.row_chunks(x) {
                let (r0, r1) = (h0.max(x0), (h0 + h.shape[0]).min(x0 + xs.shape[0]));
                if r0 >= r1 {
                    continue;
                }
                let n = (r1 - r0) * cols;
                let (a_off, c_off) = (((r0 - x0) * cols) as u32, ((r0 - h0) * cols) as u32);
                let params = Params { m: n as u32, a_off, c_off, ..bytemuck::Zeroable::zeroed() };
                prog.push(self.shared.to_f16.dispatch(&params, &[&h, &xs], grid(n, 64)));
            }
        }
    }
}
