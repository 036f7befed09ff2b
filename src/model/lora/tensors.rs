//! LoRA on the GPU: the adapters (A, B per target product of each block), what the forward keeps
//! for the backward, and the recorders of one adapter's forward and backward, each a few matrix
//! products (the submit plan cuts them like any other) and the scale alpha/r.

use crate::gpu::{Gpu, Tensor};
use crate::kernels::dropout::DropoutRate;
use crate::kernels::{Kernels, Operand, Program, Window};
use crate::model::{ActivationTensors, Allocated, Gpt2, Gpt2Config, ParameterTensors, TensorSpec};
use crate::rng::Rng;
use crate::{Error, Result};

use super::{Family, Linear, LoraConfig, Target, TARGETS};

/// One product's adapter: A (r, in) and B (out, r), nn.Linear's layout as peft's.
pub struct Adapter {
    pub a: Tensor,
    pub b: Tensor,
}

/// One block's adapters, by target in [`Target::EVERY`] order: one where the target carries one.
pub type Adapters = [Option<Adapter>; TARGETS];

/// Every adapter of a model (or their gradients), by layer and target.
pub struct LoraTensors {
    pub config: LoraConfig,
    /// (L) x target: each block's adapters.
    pub layers: Vec<Adapters>,
    /// Per target in [`Target::EVERY`] order, its columns of its product's output: (first,
    /// count).
    pub cols: Vec<(usize, usize)>,
}

impl LoraTensors {
    /// Uploads `tensors`, one per [`LoraConfig::specs`] entry in its order.
    pub fn upload(gpu: &Gpu, cfg: &Gpt2Config, lc: LoraConfig, tensors: &[Vec<f32>]) -> Result<LoraTensors> {
        let specs = lc.specs(cfg);
        if tensors.len() != specs.len() {
            return Err(Error::Format(format!("expected {} LoRA tensors, got {}", specs.len(), tensors.len())));
        }
        for ((name, shape), data) in specs.iter().zip(tensors) {
            let n: usize = shape.iter().product();
            if data.len() != n {
                return Err(Error::Format(format!("{name}: expected {n} values {shape:?}, got {}", data.len())));
            }
        }
        let mut made = specs.iter().zip(tensors).map(|((name, shape), data)| gpu.upload(name, shape, data));
        Ok(LoraTensors::from_made(cfg, lc, &mut made))
    }

    /// peft's initialisation ("default", `init_lora_weights=True`): A as nn.Linear's
    /// kaiming_uniform(a=√5), uniform in ±1/√in, drawn from `lc.seed`; B zeros (so the model
    /// starts as its base).
    pub fn init_host(cfg: &Gpt2Config, lc: &LoraConfig) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(lc.seed);
        let draw = |shape: &[usize], rng: &mut Rng| {
            let bound = 1.0 / (shape[1] as f32).sqrt();
            rng.vec(shape.iter().product(), -bound, bound)
        };
        let specs = lc.specs(cfg);
        specs
            .iter()
            .map(|(name, s)| if name.ends_with("lora_A") { draw(s, &mut rng) } else { vec![0.0; s[0] * s[1]] })
            .collect()
    }

    /// Zero-filled tensors of the adapters' shapes, labelled `prefix` + name (their gradients).
    pub fn zeros(gpu: &Gpu, cfg: &Gpt2Config, lc: LoraConfig, prefix: &str) -> LoraTensors {
        let specs = lc.specs(cfg);
        let mut made = specs.iter().map(|(name, shape)| gpu.tensor(&format!("{prefix}{name}"), shape));
        LoraTensors::from_made(cfg, lc, &mut made)
    }

    fn from_made(cfg: &Gpt2Config, lc: LoraConfig, made: &mut impl Iterator<Item = Tensor>) -> LoraTensors {
        let layers = (0..cfg.n_layer)
            .map(|_| {
                Target::EVERY.map(|t| {
                    lc.targets.contains(t).then(|| {
                        let a = made.next().expect("a spec per tensor");
                        Adapter { a, b: made.next().expect("a spec per tensor") }
                    })
                })
            })
            .collect();
        LoraTensors { config: lc, layers, cols: Target::EVERY.map(|t| t.cols(cfg)).to_vec() }
    }

    /// Every tensor in [`LoraConfig::specs`] order.
    pub fn ordered(&self) -> Vec<&Tensor> {
        self.layers.iter().flatten().flatten().flat_map(|ad| [&ad.a, &ad.b]).collect()
    }
}

/// A model's trainable gradients: every parameter's (a full run), or only the adapters' (a LoRA
/// run, whose base is frozen: no weight gradients are made for it).
pub enum Grads {
    Full(Box<ParameterTensors>),
    Lora(LoraTensors),
}

impl Grads {
    /// Every gradient, in the order of the parameters (or adapters) they belong to.
    pub fn ordered(&self) -> Vec<&Tensor> {
        match self {
            Grads::Full(p) => p.ordered(),
            Grads::Lora(l) => l.ordered(),
        }
    }

    /// The base parameters' gradients, in a full run.
    pub fn full(&self) -> Option<&ParameterTensors> {
        match self {
            Grads::Full(p) => Some(p),
            Grads::Lora(_) => None,
        }
    }

    /// The adapters' gradients, in a LoRA run.
    pub fn lora(&self) -> Option<&LoraTensors> {
        match self {
            Grads::Full(_) => None,
            Grads::Lora(l) => Some(l),
        }
    }
}

/// The buffer labels of the kept products, one per target in [`Target::EVERY`] order; with
/// dropout, of the masked inputs and of their gradients' scratch.
const HS: [&str; TARGETS] = [
    "lora_hs.attn.c_attn",
    "lora_hs.attn.c_proj",
    "lora_hs.mlp.c_fc",
    "lora_hs.mlp.c_proj",
    "lora_hs.self_attn.q_proj",
    "lora_hs.self_attn.k_proj",
    "lora_hs.self_attn.v_proj",
    "lora_hs.self_attn.o_proj",
    "lora_hs.mlp.gate_proj",
    "lora_hs.mlp.up_proj",
    "lora_hs.mlp.down_proj",
];
const XD: [&str; TARGETS] = [
    "lora_xd.attn.c_attn",
    "lora_xd.attn.c_proj",
    "lora_xd.mlp.c_fc",
    "lora_xd.mlp.c_proj",
    "lora_xd.self_attn.q_proj",
    "lora_xd.self_attn.k_proj",
    "lora_xd.self_attn.v_proj",
    "lora_xd.self_attn.o_proj",
    "lora_xd.mlp.gate_proj",
    "lora_xd.mlp.up_proj",
    "lora_xd.mlp.down_proj",
];
const DXD: [&str; TARGETS] = [
    "lora_dxd.attn.c_attn",
    "lora_dxd.attn.c_proj",
    "lora_dxd.mlp.c_fc",
    "lora_dxd.mlp.c_proj",
    "lora_dxd.self_attn.q_proj",
    "lora_dxd.self_attn.k_proj",
    "lora_dxd.self_attn.v_proj",
    "lora_dxd.self_attn.o_proj",
    "lora_dxd.mlp.gate_proj",
    "lora_dxd.mlp.up_proj",
    "lora_dxd.mlp.down_proj",
];

/// One tensor per target where it has an adapter, in [`Target::EVERY`] order.
type ByTarget = [Option<Tensor>; TARGETS];

/// Per layer, one tensor per target where it has an adapter, from per-target lists of layers.
type PerTarget = Vec<ByTarget>;

fn by_layer(n_layer: usize, per_target: Vec<(usize, Vec<Tensor>)>) -> PerTarget {
    let mut out: PerTarget = (0..n_layer).map(|_| std::array::from_fn(|_| None)).collect();
    for (ti, tensors) in per_target {
        for (l, t) in tensors.into_iter().enumerate() {
            out[l][ti] = Some(t);
        }
    }
    out
}

/// What the adapters' forward keeps for (B, T), and the backward's scratch.
pub struct LoraActs {
    /// (L) x target: (B, T, r) = (alpha/r)·x·Aᵀ, where the target carries an adapter.
    pub hs: PerTarget,
    /// With dropout: (L) x target: (B, T, in) the adapter's input as masked (A's gradient reads it).
    pub xd: Option<PerTarget>,
    /// With dropout: per target (B, T, in) the masked input's gradient, scratch the layers share.
    pub dxd: Option<ByTarget>,
    /// (B, T, r) the backward's dout·B, shared by every adapter in turn.
    pub dh: Tensor,
    /// (1) u32 the scale kernel binds (it keeps every element).
    pub seed: Tensor,
}

impl LoraActs {
    /// Every tensor's name and shape for (B, T): what [`LoraActs::new`] allocates and the
    /// memory estimate sums.
    pub fn specs(cfg: &Gpt2Config, lc: &LoraConfig, b: usize, t: usize) -> Vec<TensorSpec> {
        let (l, r, targets) = (cfg.n_layer, lc.rank, lc.targets.list());
        let mut specs: Vec<TensorSpec> = targets
            .iter()
            .map(|&tg| TensorSpec::per_layer(l, HS[tg as usize], "LoRA product x·Aᵀ (B,T,r)", vec![b, t, r]))
            .collect();
        if lc.dropout > 0.0 {
            let input = |tg: Target| vec![b, t, tg.dims(cfg).0];
            let what = "LoRA input, masked (B,T,in)";
            specs.extend(targets.iter().map(|&tg| TensorSpec::per_layer(l, XD[tg as usize], what, input(tg))));
            let what = "LoRA masked input's gradient (B,T,in)";
            specs.extend(targets.iter().map(|&tg| TensorSpec::one(DXD[tg as usize], what, input(tg))));
        }
        specs.push(TensorSpec::one("lora_dh", "LoRA gradient scratch (B,T,r)", vec![b, t, r]));
        specs.push(TensorSpec::one("lora_seed", "LoRA scale kernel's seed", vec![1]));
        specs
    }

    pub fn new(gpu: &Gpu, cfg: &Gpt2Config, lc: &LoraConfig, b: usize, t: usize) -> LoraActs {
        let mut a = Allocated::new(gpu, LoraActs::specs(cfg, lc, b, t));
        let targets: Vec<usize> = lc.targets.list().into_iter().map(|tg| tg as usize).collect();
        let hs = by_layer(cfg.n_layer, targets.iter().map(|&ti| (ti, a.layers(HS[ti]))).collect());
        let (mut xd, mut dxd) = (None, None);
        if lc.dropout > 0.0 {
            xd = Some(by_layer(cfg.n_layer, targets.iter().map(|&ti| (ti, a.layers(XD[ti]))).collect()));
            let mut scratch: ByTarget = std::array::from_fn(|_| None);
            for &ti in &targets {
                scratch[ti] = Some(a.one(DXD[ti]));
            }
            dxd = Some(scratch);
        }
        let acts = LoraActs { hs, xd, dxd, dh: a.one("lora_dh"), seed: a.one("lora_seed") };
        a.done();
        acts
    }
}

/// One adapter's forward: out (N, out) += scale · x (N, in) · Aᵀ · Bᵀ, keeping hs (N, r) =
/// scale · x·Aᵀ.
pub struct LoraFwd<'a> {
    pub out: &'a Tensor,
    pub hs: &'a Tensor,
    pub x: &'a Tensor,
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub seed: &'a Tensor,
    pub scale: f32,
}

/// One adapter's backward given dout (N, out): dB (out, r) += doutᵀ·hs, dh (N, r) = scale ·
/// dout·B (scratch), dA (r, in) += dhᵀ·x and dx (N, in) += dh·A (onto the base product's dinp;
/// without `accumulate_dx`, dx = dh·A: the scratch a dropout's mask then carries onto dinp).
pub struct LoraBwd<'a> {
    pub dx: &'a Tensor,
    pub da: &'a Tensor,
    pub db: &'a Tensor,
    pub dh: &'a Tensor,
    pub dout: &'a Tensor,
    pub x: &'a Tensor,
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub hs: &'a Tensor,
    pub seed: &'a Tensor,
    pub scale: f32,
    pub accumulate_dx: bool,
}

/// Records [`LoraFwd`]: three dispatches after the base product has written `out`.
pub fn lora_forward(k: &Kernels, prog: &mut Program, f: LoraFwd) {
    lora_forward_at(k, prog, f, 0);
}

/// [`lora_forward`] onto columns c0 .. c0 + out of a wider `out` (N, W): an adapter on q/k/v_proj
/// or gate/up_proj adds to its range of the fused product (B's rows are its width).
pub fn lora_forward_at(k: &Kernels, prog: &mut Program, f: LoraFwd, c0: usize) {
    let mm = &k.matmul;
    mm.gemm(prog, f.hs, Operand::n(f.x), Operand::t(f.a), None, false); // (N,r) = x · Aᵀ
    k.dropout.scale(prog, f.hs, f.seed, f.scale);
    let (hs, b) = (Window::whole(Operand::n(f.hs)), Window::whole(Operand::t(f.b)));
    mm.gemm_window(prog, f.out, c0, hs, b, true); // (N,c0..c0+out) += hs · Bᵀ
}

/// Records [`LoraBwd`].
pub fn lora_backward(k: &Kernels, prog: &mut Program, g: LoraBwd) {
    lora_backward_at(k, prog, g, 0);
}

/// [`lora_backward`] given the columns c0 .. c0 + out of a wider `dout` (N, W) (the adapter's
/// range of the fused product's gradient).
pub fn lora_backward_at(k: &Kernels, prog: &mut Program, g: LoraBwd, c0: usize) {
    let mm = &k.matmul;
    let n = g.b.shape[0];
    let (dout_t, dout) = (Window::cols(Operand::t(g.dout), c0, n), Window::cols(Operand::n(g.dout), c0, n));
    mm.gemm_window(prog, g.db, 0, dout_t, Window::whole(Operand::n(g.hs)), true); // (out,r) += doutᵀ · hs
    mm.gemm_window(prog, g.dh, 0, dout, Window::whole(Operand::n(g.b)), false); // (N,r) = dout · B
    k.dropout.scale(prog, g.dh, g.seed, g.scale);
    mm.gemm(prog, g.da, Operand::t(g.dh), Operand::n(g.x), None, true); // (r,in) += dhᵀ · x
    mm.gemm(prog, g.dx, Operand::n(g.dh), Operand::n(g.a), None, g.accumulate_dx);
    // (N,in) += dh · A
}

/// One block's adapters as its recorders use them: the adapters, the block's kept products,
/// (in the backward) the adapters' gradients, and (in training) the dropout on their input.
#[derive(Clone, Copy)]
pub struct LoraBlock<'a> {
    pub adapters: &'a Adapters,
    pub acts: &'a LoraActs,
    pub grads: Option<&'a Adapters>,
    pub dropout: Option<DropoutRate<'a>>,
    pub l: usize,
    pub scale: f32,
    /// Each target's columns of its product ([`LoraTensors::cols`]).
    pub cols: &'a [(usize, usize)],
}

/// The dropout site of layer `l`'s adapter on `t`: after the model's own (kernels::Site, 1 + 3L),
/// then one per target of the model's family by layer.
fn site(n_layer: usize, l: usize, t: Target) -> u32 {
    let (per_layer, i) = match t.family() {
        Family::Gpt2 => (Target::ALL.len(), t as usize),
        Family::Llama => (Target::LLAMA.len(), t as usize - Target::ALL.len()),
    };
    (1 + 3 * n_layer + per_layer * l + i) as u32
}

impl LoraBlock<'_> {
    /// The masked input of target `t`'s adapter and its dropout, where it trains with one.
    fn masked(&self, t: Target) -> Option<(&Tensor, DropoutRate<'_>, u32)> {
        let (d, xd) = (self.dropout?, self.acts.xd.as_ref()?[self.l][t as usize].as_ref()?);
        Some((xd, d, site(d.n_layer, self.l, t)))
    }

    /// After product `p`'s base out = x·W + b: the share of each adapter on it, where the block
    /// has adapters (on x masked, with dropout), each onto its columns of `out`.
    pub fn forward(this: Option<&Self>, k: &Kernels, prog: &mut Program, p: Linear, x: &Tensor, out: &Tensor) {
        let Some(lo) = this else { return };
        for t in Target::EVERY.into_iter().filter(|t| t.linear() == p) {
            let ti = t as usize;
            let (Some(ad), Some(hs)) = (&lo.adapters[ti], &lo.acts.hs[lo.l][ti]) else { continue };
            let x = match lo.masked(t) {
                Some((xd, d, site)) => {
                    k.dropout.masked(prog, [xd, x, d.seed], site, d.p, false);
                    xd
                }
                None => x,
            };
            let (a, b, seed, scale) = (&ad.a, &ad.b, &lo.acts.seed, lo.scale);
            lora_forward_at(k, prog, LoraFwd { out, hs, x, a, b, seed, scale }, lo.cols[ti].0);
        }
    }

    /// Beside product `p`'s base backward (dx += dout·Wᵀ) given `io` = [dx, dout, x]: each of
    /// its adapters' gradients and share of dx, where it has them (through the mask, with
    /// dropout).
    pub fn backward(this: Option<&Self>, k: &Kernels, prog: &mut Program, p: Linear, io: [&Tensor; 3]) {
        let Some(lo) = this else { return };
        for t in Target::EVERY.into_iter().filter(|t| t.linear() == p) {
            lo.backward_one(k, prog, t, io);
        }
    }

    fn backward_one(&self, k: &Kernels, prog: &mut Program, t: Target, io: [&Tensor; 3]) {
        let ([dx, dout, x], ti, lo) = (io, t as usize, self);
        let (Some(ad), Some(Some(g)), Some(hs)) = (&lo.adapters[ti], lo.grads.map(|g| &g[ti]), &lo.acts.hs[lo.l][ti])
        else {
            return;
        };
        let (da, db, dh, seed, scale, c0) = (&g.a, &g.b, &lo.acts.dh, &lo.acts.seed, lo.scale, lo.cols[ti].0);
        let (a, b) = (&ad.a, &ad.b);
        let dxd = lo.acts.dxd.as_ref().and_then(|s| s[ti].as_ref());
        match (lo.masked(t), dxd) {
            (Some((xd, d, site)), Some(dxd)) => {
                let bwd = LoraBwd { dx: dxd, da, db, dh, dout, x: xd, a, b, hs, seed, scale, accumulate_dx: false };
                lora_backward_at(k, prog, bwd, c0);
                k.dropout.masked(prog, [dx, dxd, d.seed], site, d.p, true);
            }
            _ => {
                let bwd = LoraBwd { dx, da, db, dh, dout, x, a, b, hs, seed, scale, accumulate_dx: true };
                lora_backward_at(k, prog, bwd, c0);
            }
        }
    }
}

impl Gpt2 {
    /// Adds rank-`lc.rank` adapters initialised as peft's ([`LoraTensors::init_host`]): the
    /// forward plans made from now on run them (and the model trains only them).
    pub fn attach_lora(&mut self, lc: LoraConfig) -> Result<()> {
        lc.validate(&self.config)?;
        let host = LoraTensors::init_host(&self.config, &lc);
        self.lora = Some(LoraTensors::upload(&self.kernels.gpu, &self.config, lc, &host)?);
        Ok(())
    }

    /// What a run trains: the adapters where the model has them, else every parameter.
    pub fn trainable(&self) -> Vec<&Tensor> {
        self.lora.as_ref().map_or_else(|| self.params.ordered(), LoraTensors::ordered)
    }

    /// Block `l`'s adapters over the activations `a` (with the adapters' gradients `grads` in
    /// the backward, and `dropout` on their input in training); None where the model or the
    /// activations have none.
    pub(crate) fn lora_block<'a>(
        &'a self,
        a: &'a ActivationTensors,
        l: usize,
        grads: Option<&'a LoraTensors>,
        dropout: Option<DropoutRate<'a>>,
    ) -> Option<LoraBlock<'a>> {
        self.lora_over(a.lora.as_ref()?, l, grads, dropout)
    }

    /// [`Gpt2::lora_block`] over the adapters' own activations `acts` (the KV-cache decoder's,
    /// which has no [`ActivationTensors`]); None where the model has no adapters.
    pub(crate) fn lora_over<'a>(
        &'a self,
        acts: &'a LoraActs,
        l: usize,
        grads: Option<&'a LoraTensors>,
        dropout: Option<DropoutRate<'a>>,
    ) -> Option<LoraBlock<'a>> {
        let lora = self.lora.as_ref()?;
        let (adapters, grads, scale) = (&lora.layers[l], grads.map(|g| &g.layers[l]), lora.config.scale());
        Some(LoraBlock { adapters, acts, grads, dropout, l, scale, cols: &lora.cols })
    }
}
