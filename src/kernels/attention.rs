//! Fused causal self-attention, llm.c's `attention_forward` and `attention_backward`, with
//! optional dropout on the attention probabilities, in two numerics ([`AttentionKind`]):
//! classic (shaders/attention.wgsl) keeps the softmax (B, NH, T, T) for the backward; flash
//! (shaders/flash_attention.wgsl) keeps each row's logsumexp (B, NH, T) and recomputes the
//! probabilities, in two bit-identical implementations ([`AttentionImpl`]). Heads are grouped
//! ([`AttnDims`]): NH query heads over KV key and value heads of any size that is a multiple of 4.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{grid, ModuleSpec, Pipe, PipeCache, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    nh: u32,
    kv: u32,
    hs: u32,
    drop_p: f32,
    drop_scale: f32,
    drop_site: u32,
}

/// The heads of an attention: `nh` query heads over `kv` key and value heads (kv divides nh;
/// query head h reads KV head h / (nh / kv): kv = nh is GPT-2's multi-head attention, 1 is
/// multi-query), each of size `hs`. qkv holds per token [q nh·hs | k kv·hs | v kv·hs]; the
/// output nh·hs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttnDims {
    pub nh: usize,
    pub kv: usize,
    pub hs: usize,
}

impl AttnDims {
    /// Floats per token of qkv: (nh + 2·kv)·hs.
    pub fn qkv_width(&self) -> usize {
        (self.nh + 2 * self.kv) * self.hs
    }

    /// Floats per token of the output: nh·hs.
    pub fn out_width(&self) -> usize {
        self.nh * self.hs
    }

    /// Floats per token of one of the key and value caches: kv·hs.
    pub fn kv_width(&self) -> usize {
        self.kv * self.hs
    }

    /// Panics unless the kernels can run these heads (a config error caught before here).
    fn check(&self) {
        assert!(
            self.kv > 0 && self.nh.is_multiple_of(self.kv),
            "attention: {} KV heads do not divide {} heads",
            self.kv,
            self.nh
        );
        assert!(
            self.hs > 0 && self.hs.is_multiple_of(4),
            "attention reads heads as vec4: head size {} is not a multiple of 4",
            self.hs
        );
    }
}

/// Dropout on the attention probabilities: (p, the seed tensor (1) u32, the site's id).
pub type AttnDropout<'a> = Option<(f32, &'a Tensor, u32)>;

/// What attention computes and keeps, which a training run fixes for its whole life (the two
/// round differently, so switching would break bit-exact resume): the classic kernels keep the
/// softmax (B, NH, T, T) for the backward; flash keeps its logsumexp (B, NH, T) and recomputes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    Classic,
    Flash,
}

impl AttentionKind {
    /// The shape of what the forward keeps for the backward: the softmax or the logsumexp.
    pub fn saved_shape(self, b: usize, nh: usize, t: usize) -> Vec<usize> {
        match self {
            AttentionKind::Classic => vec![b, nh, t, t],
            AttentionKind::Flash => vec![b, nh, t],
        }
    }

    /// The implementations of this numerics.
    pub fn impls(self) -> &'static [AttentionImpl] {
        match self {
            AttentionKind::Classic => &[AttentionImpl::Classic],
            AttentionKind::Flash => {
                &[AttentionImpl::FlashRows, AttentionImpl::FlashTiled, AttentionImpl::FlashSubgroup]
            }
        }
    }
}

/// One implementation of attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionImpl {
    /// attention.wgsl: one invocation per row, the softmax kept.
    Classic,
    /// flash_attention.wgsl's `*_rows` entries: one invocation per row, no workgroup memory.
    FlashRows,
    /// flash_attention.wgsl's `*_tiled` entries: 64 rows per workgroup, tiles of the other side
    /// in workgroup memory.
    FlashTiled,
    /// flash_attention.wgsl's `*_sg` entries: 8 rows per subgroup of 8 sharing the other side's
    /// loads (adapters with 8-wide subgroups).
    FlashSubgroup,
}

impl AttentionImpl {
    pub const ALL: [AttentionImpl; 4] =
        [AttentionImpl::Classic, AttentionImpl::FlashRows, AttentionImpl::FlashTiled, AttentionImpl::FlashSubgroup];

    /// Whether `gpu` runs this implementation.
    pub fn runs_on(self, gpu: &Gpu) -> bool {
        self != AttentionImpl::FlashSubgroup || gpu.subgroups_of_8()
    }

    pub fn kind(self) -> AttentionKind {
        match self {
            AttentionImpl::Classic => AttentionKind::Classic,
            _ => AttentionKind::Flash,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AttentionImpl::Classic => "classic",
            AttentionImpl::FlashRows => "flash-rows",
            AttentionImpl::FlashTiled => "flash-tiled",
            AttentionImpl::FlashSubgroup => "flash-subgroup",
        }
    }

    pub fn parse(name: &str) -> Option<AttentionImpl> {
        AttentionImpl::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// The forward's tensors: out (B,T,nh·hs) from qkv (B,T,(nh+2·kv)·hs); `saved` is what the backward needs,
/// of [`AttentionKind::saved_shape`]: the softmax (classic) or the logsumexp (flash).
pub struct AttnFwd<'a> {
    pub out: &'a Tensor,
    pub saved: &'a Tensor,
    pub qkv: &'a Tensor,
}

/// The backward's tensors: dqkv (B,T,(nh+2·kv)·hs) accumulates; scratch is overwritten (classic:
/// the score gradients (B,NH,T,T); flash: D = dout·out per row (B,NH,T)); dout (B,T,nh·hs), and the forward's
/// qkv, out (flash reads it) and saved tensors are read.
pub struct AttnBwd<'a> {
    pub dqkv: &'a Tensor,
    pub scratch: &'a Tensor,
    pub dout: &'a Tensor,
    pub qkv: &'a Tensor,
    pub out: &'a Tensor,
    pub saved: &'a Tensor,
}

const CLASSIC: &[&str] = &["attention.wgsl"];
const FLASH: &[&str] = &["flash_attention.wgsl"];
/// Rows of the other side per workgroup-memory tile, for head size 4·hs4: two tiles of
/// BC x hs floats in at most 8 KiB (within WebGPU's 16 KiB of workgroup memory).
fn tile_rows(hs4: usize) -> usize {
    (512 / (2 * hs4)).clamp(1, 32)
}

/// The flash module of `entry` (forward, backward_dq, backward_dkv) by `imp`, for head size 4·hs4.
fn flash_spec(entry: &'static str, imp: AttentionImpl, hs4: usize) -> ModuleSpec {
    let scale = 1.0 / ((4 * hs4) as f32).sqrt();
    let mode = match imp {
        AttentionImpl::FlashTiled => 1,
        AttentionImpl::FlashSubgroup => 2,
        _ => 0,
    };
    let spec = ModuleSpec::new::<Params>(FLASH, entry).var("HS4", hs4).var("BC", tile_rows(hs4)).var("MODE", mode);
    ModuleSpec { subgroups: mode == 2, ..spec.var("SCALE", format!("{scale:?}")) }
}

const FLASH_ENTRIES: [&str; 3] = ["forward", "backward_dq", "backward_dkv"];

pub(super) fn modules() -> Vec<ModuleSpec> {
    let mut all: Vec<ModuleSpec> =
        ["forward", "backward_scores", "backward_qkv"].map(|e| ModuleSpec::new::<Params>(CLASSIC, e)).to_vec();
    for hs4 in [1, 3, 8, 16, 17, 32] {
        for imp in AttentionKind::Flash.impls() {
            all.extend(FLASH_ENTRIES.map(|e| flash_spec(e, *imp, hs4)));
        }
    }
    all
}

pub struct Attention {
    fwd: Pipe,
    bwd_scores: Pipe,
    bwd_qkv: Pipe,
    /// The flash pipelines made so far, by (entry, hs / 4).
    flash: PipeCache<(&'static str, AttentionImpl, usize)>,
    /// Bound as the seed where there is no dropout.
    no_seed: Tensor,
}

impl Attention {
    pub fn new(gpu: &Gpu) -> Attention {
        let classic = |e| Pipe::new(gpu, ModuleSpec::new::<Params>(CLASSIC, e));
        Attention {
            fwd: classic("forward"),
            bwd_scores: classic("backward_scores"),
            bwd_qkv: classic("backward_qkv"),
            flash: PipeCache::new(gpu),
            no_seed: gpu.tensor("no_seed", &[1]),
        }
    }

    fn flash_pipe(&self, entry: &'static str, imp: AttentionImpl, hs4: usize) -> Arc<Pipe> {
        self.flash.get((entry, imp, hs4), || flash_spec(entry, imp, hs4))
    }

    /// The params of an attention with output `out` (B,T,nh·hs) and qkv `qkv`, checked against
    /// `d`, and the seed tensor to bind.
    fn params<'a>(&'a self, out: &Tensor, qkv: &Tensor, d: AttnDims, dropout: AttnDropout<'a>) -> (Params, &'a Tensor) {
        d.check();
        let (b, t) = (out.shape[0], out.shape[1]);
        assert_eq!(out.shape, [b, t, d.out_width()], "attention: out (or dout) is not (B,T,nh·hs) for {d:?}");
        assert_eq!(qkv.shape, [b, t, d.qkv_width()], "attention: qkv is not (B,T,(nh+2·kv)·hs) for {d:?}");
        let (p, seed, site) = dropout.unwrap_or((0.0, &self.no_seed, 0));
        let params = Params {
            b: b as u32,
            t: t as u32,
            nh: d.nh as u32,
            kv: d.kv as u32,
            hs: d.hs as u32,
            drop_p: p,
            drop_scale: 1.0 / (1.0 - p),
            drop_site: site,
        };
        (params, seed)
    }

    /// Workgroups of a flash pass over `nh` heads' rows (query heads, or KV heads for the dk and
    /// dv pass): one invocation per row, a workgroup per 64 rows of each head, or 8 invocations
    /// per 8 rows of each head.
    fn flash_grid(imp: AttentionImpl, b: usize, nh: usize, t: usize) -> [u32; 3] {
        match imp {
            AttentionImpl::FlashTiled => [t.div_ceil(64) as u32, (b * nh) as u32, 1],
            AttentionImpl::FlashSubgroup => grid(b * nh * t.div_ceil(8) * 8, 64),
            _ => grid(b * nh * t, 64),
        }
    }

    /// out and the saved tensor from qkv by `imp`, with the forward's `dropout`.
    pub fn forward(&self, prog: &mut Program, imp: AttentionImpl, x: AttnFwd, d: AttnDims, dropout: AttnDropout) {
        let (params, seed) = self.params(x.out, x.qkv, d, dropout);
        let (b, t, nh) = (x.out.shape[0], x.out.shape[1], d.nh);
        assert_eq!(x.saved.shape, imp.kind().saved_shape(b, nh, t), "attention forward: saved tensor shape");
        let tensors = [x.out, x.saved, x.qkv, seed];
        match imp {
            AttentionImpl::Classic => prog.push(self.fwd.dispatch(&params, &tensors, grid(b * nh * t, 64))),
            _ => {
                let pipe = self.flash_pipe("forward", imp, d.hs / 4);
                prog.push(pipe.dispatch(&params, &tensors, Self::flash_grid(imp, b, nh, t)));
            }
        }
    }

    /// dqkv += the gradient of the forward by `imp` given dout, with the forward's `dropout`.
    pub fn backward(&self, prog: &mut Program, imp: AttentionImpl, x: AttnBwd, d: AttnDims, dropout: AttnDropout) {
        let (params, seed) = self.params(x.dout, x.qkv, d, dropout);
        assert_eq!(x.dqkv.shape, x.qkv.shape, "attention backward: dqkv");
        let (b, t, nh) = (x.dout.shape[0], x.dout.shape[1], d.nh);
        assert_eq!(x.saved.shape, imp.kind().saved_shape(b, nh, t), "attention backward: saved tensor shape");
        assert_eq!(
            x.scratch.numel(),
            imp.kind().saved_shape(b, nh, t).iter().product::<usize>(),
            "attention backward: scratch"
        );
        match imp {
            AttentionImpl::Classic => {
                let scores = [x.scratch, x.dout, x.qkv, x.saved, seed];
                prog.push(self.bwd_scores.dispatch(&params, &scores, grid(b * nh * t, 64)));
                let qkv = [x.dqkv, x.scratch, x.dout, x.qkv, x.saved, seed];
                prog.push(self.bwd_qkv.dispatch(&params, &qkv, grid(b * t * d.qkv_width(), 64)));
            }
            _ => {
                let hs4 = d.hs / 4;
                let dq = self.flash_pipe("backward_dq", imp, hs4);
                let dq_tensors = [x.dqkv, x.scratch, x.dout, x.out, x.qkv, x.saved, seed];
                prog.push(dq.dispatch(&params, &dq_tensors, Self::flash_grid(imp, b, nh, t)));
                let dkv = self.flash_pipe("backward_dkv", imp, hs4);
                let dkv_tensors = [x.dqkv, x.dout, x.qkv, x.saved, x.scratch, seed];
                prog.push(dkv.dispatch(&params, &dkv_tensors, Self::flash_grid(imp, b, d.kv, t)));
            }
        }
    }
}
