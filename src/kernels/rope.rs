//! Rotary position embeddings with an optional RMSNorm of each q and k head first
//! (shaders/rope.wgsl): HF's `apply_rotary_pos_emb` (rotate-half) and Qwen3's `q_norm`/`k_norm`,
//! fused in one pass from the product's qkv to the attention's. The cos/sin table is computed on
//! the host ([`rope_table`]) as torch computes it, never by WGSL's `cos`, whose error bound does
//! not hold at the angles long contexts reach.

use super::{grid, ModuleSpec, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    t: u32,
    nh: u32,
    kv: u32,
    hd: u32,
    norm: u32,
    rope: u32,
    eps: f32,
}

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["rope.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    ["forward", "backward", "backward_params"].into_iter().map(spec).collect()
}

/// The cos/sin table of positions 0..`positions` for heads of `hd` (even) at base `theta`:
/// row p holds cos(p·f_i) for i < hd/2, then sin(p·f_i), as (positions, hd). Computed as torch
/// computes HF's default rope: the exponent 2i/hd in f32, theta to that power in f64 rounded to
/// f32 (a correctly rounded powf), f_i = 1/that in f32, the angle p·f_i in f32, then cos and sin
/// in f64 rounded to f32.
pub fn rope_table(theta: f32, hd: usize, positions: usize) -> Vec<f32> {
    let half = hd / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let e = (2 * i) as f32 / hd as f32;
            1.0f32 / ((theta as f64).powf(e as f64) as f32)
        })
        .collect();
    let mut table = Vec::with_capacity(positions * hd);
    for p in 0..positions {
        let angles: Vec<f64> = inv_freq.iter().map(|&f| (p as f32 * f) as f64).collect();
        table.extend(angles.iter().map(|a| a.cos() as f32));
        table.extend(angles.iter().map(|a| a.sin() as f32));
    }
    table
}

/// The heads of a qkv of rows (NH + 2·KV)·hd wide, T tokens a sequence; `eps` of the norm.
#[derive(Clone, Copy, Debug)]
pub struct RopeDims {
    pub nh: usize,
    pub kv: usize,
    pub hd: usize,
    pub t: usize,
    pub eps: f32,
}

/// The norm's weights (hd) for q heads and k heads, where the heads are normalized.
#[derive(Clone, Copy)]
pub struct QkNorm<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
}

/// The forward's tensors: qkv (B·T, (NH+2KV)·hd) from qkv_raw, the norm's rstd (B·T, NH+KV)
/// (written where `norm` is given). `table` ([`rope_table`], covering pos[0] + T − 1) rotates
/// by position; None: no rotation. `pos` (1 u32) is the first token's position.
pub struct RopeFwd<'a> {
    pub qkv: &'a Tensor,
    pub rstd: &'a Tensor,
    pub qkv_raw: &'a Tensor,
    pub norm: Option<QkNorm<'a>>,
    pub table: Option<&'a Tensor>,
    pub pos: &'a Tensor,
}

/// The backward's tensors: dqkv_raw accumulates (+=) from dqkv, and with the norm its weights'
/// gradients `dnorm` (+=); the forward's qkv_raw, rstd, norm weights, table and pos are read.
pub struct RopeBwd<'a> {
    pub dqkv_raw: &'a Tensor,
    pub dnorm: Option<QkNorm<'a>>,
    pub dqkv: &'a Tensor,
    pub qkv_raw: &'a Tensor,
    pub rstd: &'a Tensor,
    pub norm: Option<QkNorm<'a>>,
    pub table: Option<&'a Tensor>,
    pub pos: &'a Tensor,
}

pub struct Rope {
    fwd: Pipe,
    bwd: Pipe,
    bwd_params: Pipe,
}

impl Rope {
    pub fn new(gpu: &Gpu) -> Rope {
        Rope {
            fwd: Pipe::new(gpu, spec("forward")),
            bwd: Pipe::new(gpu, spec("backward")),
            bwd_params: Pipe::new(gpu, spec("backward_params")),
        }
    }

    fn params(d: RopeDims, qkv: &Tensor, norm: bool, rope: bool) -> (Params, usize) {
        assert!(d.hd >= 2 && d.hd.is_multiple_of(2), "rope: the head size {} must be even", d.hd);
        let heads = d.nh + 2 * d.kv;
        let rows = qkv.numel() / (heads * d.hd);
        let (u, b) = (|x: usize| x as u32, |x: bool| x as u32);
        let params = Params {
            rows: u(rows),
            t: u(d.t),
            nh: u(d.nh),
            kv: u(d.kv),
            hd: u(d.hd),
            norm: b(norm),
            rope: b(rope),
            eps: d.eps,
        };
        (params, rows * heads)
    }

    /// qkv = rope(norm(qkv_raw)) on the q and k heads; v heads are copied.
    pub fn forward(&self, prog: &mut Program, d: RopeDims, t: RopeFwd) {
        let (params, n) = Self::params(d, t.qkv_raw, t.norm.is_some(), t.table.is_some());
        // unused bindings take a read-only tensor already bound
        let (q, k) = t.norm.map_or((t.qkv_raw, t.qkv_raw), |w| (w.q, w.k));
        let table = t.table.unwrap_or(t.qkv_raw);
        let tensors = [t.qkv, t.rstd, t.qkv_raw, q, k, table, t.pos];
        prog.push(self.fwd.dispatch(&params, &tensors, grid(n, 64)));
    }

    /// dqkv_raw += the gradient through the forward given dqkv, and dnorm += its weights'.
    pub fn backward(&self, prog: &mut Program, d: RopeDims, t: RopeBwd) {
        let (params, n) = Self::params(d, t.qkv_raw, t.norm.is_some(), t.table.is_some());
        let (q, k) = t.norm.map_or((t.qkv_raw, t.qkv_raw), |w| (w.q, w.k));
        let table = t.table.unwrap_or(t.qkv_raw);
        let tensors = [t.dqkv_raw, t.dqkv, t.qkv_raw, t.rstd, q, k, table, t.pos];
        prog.push(self.bwd.dispatch(&params, &tensors, grid(n, 64)));
        if let Some(dw) = t.dnorm {
            // one workgroup per 16 of the 2·hd columns (q_norm's, then k_norm's)
            let tensors = [dw.q, dw.k, t.dqkv, t.qkv_raw, t.rstd, table, t.pos];
            prog.push(self.bwd_params.dispatch(&params, &tensors, grid((2 * d.hd).div_ceil(16), 1)));
        }
    }
}
