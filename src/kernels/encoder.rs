//! Token + position embedding (shaders/encoder.wgsl), llm.c's `encoder_forward`.

use super::{grid, Dims4, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

pub struct Encoder {
    fwd: Pipe,
}

impl Encoder {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Encoder {
        Encoder {
            fwd: Pipe::new(gpu, module, "encoder.forward", "forward", 1),
        }
    }

    /// out (B,T,C) = wte[ids] + wpe[t]; ids (B,T) u32, wte (V,C), wpe (maxT,C).
    pub fn forward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        out: &Tensor,
        ids: &Tensor,
        wte: &Tensor,
        wpe: &Tensor,
    ) {
        let (bt, c) = (ids.numel(), wte.shape[1]);
        let t = ids.shape[ids.shape.len() - 1];
        let params = Dims4::new(bt, t, c, wte.shape[0]);
        prog.push(
            self.fwd
                .dispatch(gpu, &params, &[out, ids, wte, wpe], grid(bt * c, 64)),
        );
    }
}
