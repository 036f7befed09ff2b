//! KV-cache inference kernels (shaders/decode.wgsl): the position-offset embedding, cache writes,
//! attention over the cache, the last-row pick and a GPU argmax. Every kernel reads the first
//! new position from a one-word `pos` tensor, so one recorded program serves every position.

use super::{grid, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    c: u32,
    nh: u32,
    s: u32,
    v: u32,
    v0: u32,
    rows: u32,
    _pad: u32,
}

/// Logits per argmax_part invocation (CHUNK in the shader).
const ARGMAX_CHUNK: usize = 256;

/// The shapes one recorded decode program works on.
#[derive(Clone, Copy, Debug)]
pub struct DecodeDims {
    /// New tokens per call.
    pub t: usize,
    pub c: usize,
    pub nh: usize,
    /// Cache rows (block_size).
    pub s: usize,
    pub v: usize,
}

impl DecodeDims {
    fn params(&self) -> Params {
        Params {
            t: self.t as u32,
            c: self.c as u32,
            nh: self.nh as u32,
            s: self.s as u32,
            v: self.v as u32,
            v0: 0,
            rows: self.v as u32,
            _pad: 0,
        }
    }
}

pub struct Decode {
    embed: Pipe,
    kv_write: Pipe,
    scores: Pipe,
    softmax: Pipe,
    weighted: Pipe,
    last_row: Pipe,
    argmax_part: Pipe,
    argmax_final: Pipe,
}

impl Decode {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule) -> Decode {
        Decode {
            embed: Pipe::new(gpu, module, "decode.embed", "embed", 1),
            kv_write: Pipe::new(gpu, module, "decode.kv_write", "kv_write", 6),
            scores: Pipe::new(gpu, module, "decode.scores", "scores", 10),
            softmax: Pipe::new(gpu, module, "decode.softmax", "softmax", 14),
            weighted: Pipe::new(gpu, module, "decode.weighted", "weighted", 16),
            last_row: Pipe::new(gpu, module, "decode.last_row", "last_row", 20),
            argmax_part: Pipe::new(gpu, module, "decode.argmax_part", "argmax_part", 22),
            argmax_final: Pipe::new(gpu, module, "decode.argmax_final", "argmax_final", 24),
        }
    }

    /// x (T,C) = wte[ids] + wpe[pos0 + t]; wte in row chunks where it exceeds one binding.
    #[allow(clippy::too_many_arguments)]
    pub fn embed(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        d: DecodeDims,
        x: &Tensor,
        ids: &Tensor,
        wte: &Tensor,
        wpe: &Tensor,
        pos: &Tensor,
    ) {
        for (v0, chunk) in gpu.row_chunks(wte) {
            let params = Params { v0: v0 as u32, rows: chunk.shape[0] as u32, ..d.params() };
            prog.push(self.embed.dispatch(gpu, &params, &[x, ids, &chunk, wpe, pos], grid(d.t * d.c, 64)));
        }
    }

    /// Writes the K and V parts of qkv (T,3C) into rows pos0.. of the caches (S,C), then
    /// out (T,C) = causal attention of the new queries over cache rows 0..=pos0 + t;
    /// scores (T,NH,S) is scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        d: DecodeDims,
        out: &Tensor,
        scores: &Tensor,
        qkv: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
        pos: &Tensor,
    ) {
        assert_eq!(d.c % (4 * d.nh), 0, "decode attention reads heads as vec4: the head size must be a multiple of 4");
        let p = d.params();
        prog.push(self.kv_write.dispatch(gpu, &p, &[k_cache, v_cache, qkv, pos], grid(d.t * d.c, 64)));
        prog.push(self.scores.dispatch(gpu, &p, &[scores, qkv, k_cache, pos], grid(d.t * d.nh * d.s, 64)));
        prog.push(self.softmax.dispatch(gpu, &p, &[scores, pos], grid(d.t * d.nh, 64)));
        prog.push(self.weighted.dispatch(gpu, &p, &[out, scores, v_cache, pos], grid(d.t * d.c / 4, 64)));
    }

    /// out (1,C) = x[T − 1].
    pub fn last_row(&self, gpu: &Gpu, prog: &mut Program, d: DecodeDims, out: &Tensor, x: &Tensor) {
        prog.push(self.last_row.dispatch(gpu, &d.params(), &[out, x], grid(d.c, 64)));
    }

    /// Scratch for [`Decode::argmax`] over `v` logits.
    pub fn argmax_scratch(gpu: &Gpu, v: usize) -> Tensor {
        gpu.tensor("argmax.part", &[v.div_ceil(ARGMAX_CHUNK)])
    }

    /// out (1) u32 = the index of the first maximum of logits (V).
    pub fn argmax(&self, gpu: &Gpu, prog: &mut Program, out: &Tensor, part: &Tensor, logits: &Tensor) {
        let v = logits.numel();
        let d = DecodeDims { t: 1, c: 0, nh: 0, s: 0, v };
        prog.push(self.argmax_part.dispatch(gpu, &d.params(), &[part, logits], grid(v.div_ceil(ARGMAX_CHUNK), 64)));
        prog.push(self.argmax_final.dispatch(gpu, &d.params(), &[out, part, logits], [1, 1, 1]));
    }
}
