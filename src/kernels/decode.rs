//! KV-cache inference kernels (shaders/decode.wgsl): the position-offset embedding, cache writes,
//! attention over the cache, the last-row pick and a GPU argmax. Every kernel reads the first
//! new position from a one-word `pos` tensor, so one recorded program serves every position.

use super::{grid, ModuleSpec, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    c: u32,
    nh: u32,
    kv: u32,
    hd: u32,
    s: u32,
    v: u32,
    v0: u32,
    rows: u32,
    has_wpe: u32,
    _pad: [u32; 2],
}

/// Logits per argmax_part invocation (CHUNK in the shader).
const ARGMAX_CHUNK: usize = 256;

/// The shapes one recorded decode program works on.
#[derive(Clone, Copy, Debug)]
pub struct DecodeDims {
    /// New tokens per call.
    pub t: usize,
    /// The residual stream's width.
    pub c: usize,
    /// Query heads.
    pub nh: usize,
    /// Key and value heads (dividing nh).
    pub kv: usize,
    /// Head size (a multiple of 4).
    pub hd: usize,
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
            kv: self.kv as u32,
            hd: self.hd as u32,
            s: self.s as u32,
            v: self.v as u32,
            v0: 0,
            rows: self.v as u32,
            has_wpe: 1,
            _pad: [0; 2],
        }
    }
}

const ENTRIES: [&str; 8] =
    ["embed", "kv_write", "scores", "softmax", "weighted", "last_row", "argmax_part", "argmax_final"];

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["decode.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    ENTRIES.map(spec).to_vec()
}

/// The embedding's tensors: x (T,C) from ids (T) u32, wte (V,C), wpe (S,C) and pos (1) u32.
pub struct DecodeEmbed<'a> {
    pub x: &'a Tensor,
    pub ids: &'a Tensor,
    pub wte: &'a Tensor,
    /// None without learned positions.
    pub wpe: Option<&'a Tensor>,
    pub pos: &'a Tensor,
}

/// One decode attention's tensors: out (T,nh·hd) from qkv (T,(nh+2·kv)·hd) and the layer's
/// caches (S,kv·hd),
/// whose rows pos0.. get qkv's K and V parts first; scores (T,NH,S) is scratch; pos (1) u32.
pub struct DecodeAttn<'a> {
    pub out: &'a Tensor,
    pub scores: &'a Tensor,
    pub qkv: &'a Tensor,
    pub k_cache: &'a Tensor,
    pub v_cache: &'a Tensor,
    pub pos: &'a Tensor,
}

pub struct Decode {
    gpu: Gpu,
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
    pub fn new(gpu: &Gpu) -> Decode {
        let [embed, kv_write, scores, softmax, weighted, last_row, argmax_part, argmax_final] =
            ENTRIES.map(|e| Pipe::new(gpu, spec(e)));
        Decode { gpu: gpu.clone(), embed, kv_write, scores, softmax, weighted, last_row, argmax_part, argmax_final }
    }

    /// x (T,C) = wte[ids] + wpe[pos0 + t]; wte in row chunks where it exceeds one binding.
    pub fn embed(&self, prog: &mut Program, d: DecodeDims, t: DecodeEmbed) {
        for (v0, chunk) in self.gpu.row_chunks(t.wte) {
            let (v0, rows, has_wpe) = (v0 as u32, chunk.shape[0] as u32, t.wpe.is_some() as u32);
            let params = Params { v0, rows, has_wpe, ..d.params() };
            let wpe = t.wpe.unwrap_or(&chunk);
            prog.push(self.embed.dispatch(&params, &[t.x, t.ids, &chunk, wpe, t.pos], grid(d.t * d.c, 64)));
        }
    }

    /// Writes the K and V parts of qkv into rows pos0.. of the caches, then out = causal
    /// attention of the new queries over cache rows 0..=pos0 + t.
    pub fn attention(&self, prog: &mut Program, d: DecodeDims, t: DecodeAttn) {
        assert_eq!(d.hd % 4, 0, "decode attention reads heads as vec4: the head size must be a multiple of 4");
        assert!(
            d.kv > 0 && d.nh.is_multiple_of(d.kv),
            "decode attention: {} KV heads do not divide {} heads",
            d.kv,
            d.nh
        );
        assert_eq!(t.k_cache.numel(), d.s * d.kv * d.hd, "decode attention: the caches are (S, kv·hd)");
        assert_eq!(t.qkv.numel(), d.t * (d.nh + 2 * d.kv) * d.hd, "decode attention: qkv is (T, (nh+2·kv)·hd)");
        let p = d.params();
        let (k, v) = (t.k_cache, t.v_cache);
        prog.push(self.kv_write.dispatch(&p, &[k, v, t.qkv, t.pos], grid(d.t * d.kv * d.hd, 64)));
        prog.push(self.scores.dispatch(&p, &[t.scores, t.qkv, k, t.pos], grid(d.t * d.nh * d.s, 64)));
        prog.push(self.softmax.dispatch(&p, &[t.scores, t.pos], grid(d.t * d.nh, 64)));
        prog.push(self.weighted.dispatch(&p, &[t.out, t.scores, v, t.pos], grid(d.t * d.nh * d.hd / 4, 64)));
    }

    /// out (1,C) = x[T − 1].
    pub fn last_row(&self, prog: &mut Program, d: DecodeDims, out: &Tensor, x: &Tensor) {
        prog.push(self.last_row.dispatch(&d.params(), &[out, x], grid(d.c, 64)));
    }

    /// Scratch for [`Decode::argmax`] over `v` logits.
    pub fn argmax_scratch(gpu: &Gpu, v: usize) -> Tensor {
        gpu.tensor("argmax.part", &[v.div_ceil(ARGMAX_CHUNK)])
    }

    /// out (1) u32 = the index of the first maximum of logits (V).
    pub fn argmax(&self, prog: &mut Program, out: &Tensor, part: &Tensor, logits: &Tensor) {
        let v = logits.numel();
        let d = DecodeDims { t: 1, c: 0, nh: 0, kv: 0, hd: 0, s: 0, v };
        prog.push(self.argmax_part.dispatch(&d.params(), &[part, logits], grid(v.div_ceil(ARGMAX_CHUNK), 64)));
        prog.push(self.argmax_final.dispatch(&d.params(), &[out, part, logits], [1, 1, 1]));
    }
}
