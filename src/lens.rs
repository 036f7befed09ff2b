//! The logit lens (nostalgebraist's): what the model would predict if it stopped after each
//! layer. Layer 0 is the embedding output (HF's `hidden_states[0]`), layer l the output of block
//! l, each through ln_f and the tied lm_head; layer n_layer is the model's own next-token
//! distribution (HF's last hidden state already has ln_f). For one prompt: each layer's top-k next
//! tokens at the last position, and a layer x position grid of each cell's most likely token.
//!
//! One forward pass, then per layer ln_f, the lm_head and a per-row top-1 on the GPU, all in one
//! submit, reusing the forward's logits and ln_f buffers; only the grid's (layers, T) ids and
//! probabilities and one row of V logits per layer come back, never (layers, T, V). The same pass
//! leaves every layer's attention probabilities in place: [`Lens::attention`] reads one layer's
//! heads (the page's look inside shows them beside the lens); where the forward ran flash
//! attention, which keeps no matrix, it recomputes that layer's from its qkv by the classic kernel.

use serde::Serialize;

use crate::gpu::Tensor;
use crate::kernels::{AttentionImpl, AttentionKind, AttnFwd, LayerNormFwd, Program};
use crate::model::{Forward, Gpt2, Gpt2Config};
use crate::{Error, Result};

/// One layer's predictions (serialised with (id, p) pairs as [id, p]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LensLayer {
    /// 0 = the embeddings, l = after block l; n_layer is the model's output.
    pub layer: usize,
    /// The k most likely next tokens after the last position, with probabilities, most likely
    /// first.
    pub top: Vec<(u32, f32)>,
    /// At every position, the most likely next token and its probability.
    pub cells: Vec<(u32, f32)>,
}

/// The logit lens of one prompt: n_layer + 1 layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogitLens {
    pub ids: Vec<u32>,
    pub layers: Vec<LensLayer>,
    /// The model's own next-token logits after the last position (layer n_layer's row, V of them),
    /// for the sampling distribution; not serialised.
    #[serde(skip)]
    pub logits: Vec<f32>,
}

/// The recorded lens for one prompt length.
struct Plan {
    f: Forward,
    /// Per layer (n_layer first: its logits are the forward's, before the others overwrite them):
    /// ln_f, lm_head and the top-1 of every row.
    layers: Vec<(usize, Program)>,
    top_id: Tensor, // (L+1, T) u32
    top_p: Tensor,  // (L+1, T)
    last: Tensor,   // (L+1, V) the last position's logits of each layer
    /// Where the forward's attention keeps no matrix (flash), the classic attention's out
    /// (1,T,C) and probabilities (1,NH,T,T), to recompute one layer's matrices into.
    recompute: Option<(Tensor, Tensor)>,
}

/// Keeps the plan of the last prompt length, so a view that refreshes does not reallocate.
#[derive(Default)]
pub struct Lens {
    plan: Option<Plan>,
}

impl Lens {
    /// The logit lens of `ids` (1 to block_size tokens) with each layer's top `k`.
    pub async fn run(&mut self, model: &Gpt2, ids: &[u32], k: usize) -> Result<LogitLens> {
        let c = &model.config;
        check_prompt(c, ids)?;
        let t = ids.len();
        if self.plan.as_ref().is_none_or(|p| p.f.t != t) {
            self.plan = None; // free the old plan's activations before allocating the new one
            self.plan = Some(Plan::new(model, t)?);
        }
        let plan = self.plan.as_ref().expect("planned above");
        model.forward(&plan.f, ids, None)?;
        let gpu = &model.kernels.gpu;
        let (v, logits) = (c.vocab_size, &plan.f.acts.logits);
        gpu.encode(|enc| {
            for (l, prog) in &plan.layers {
                prog.encode(&mut enc.begin_compute_pass(&Default::default()));
                let (from, to) = (logits.offset + (4 * (t - 1) * v) as u64, plan.last.offset + (4 * l * v) as u64);
                enc.copy_buffer_to_buffer(&logits.buffer.raw, from, &plan.last.buffer.raw, to, 4 * v as u64);
            }
        });
        let mut out = gpu.read_many(&[&plan.top_id, &plan.top_p, &plan.last]).await?;
        let layers = (0..=c.n_layer)
            .map(|l| LensLayer {
                layer: l,
                top: top_k(&out[2][l * v..(l + 1) * v], k),
                cells: (l * t..(l + 1) * t).map(|i| (out[0][i].to_bits(), out[1][i])).collect(),
            })
            .collect();
        let logits = out[2].split_off(c.n_layer * v);
        Ok(LogitLens { ids: ids.to_vec(), layers, logits })
    }

    /// The attention probabilities of every head of `layer` in the last [`Lens::run`]'s forward
    /// pass: (n_head, T, T) row-major, row i how token i attends to tokens 0..=i (zero beyond i,
    /// the causal mask).
    pub async fn attention(&self, model: &Gpt2, layer: usize) -> Result<Vec<f32>> {
        let c = &model.config;
        let plan = self.plan.as_ref().ok_or_else(|| Error::Input("run the lens on a prompt first".into()))?;
        if layer >= c.n_layer {
            return Err(Error::Input(format!(
                "layer {layer} does not exist: the model has {} layers (counting from 0)",
                c.n_layer
            )));
        }
        let (t, gpu) = (plan.f.t, &model.kernels.gpu);
        let att = match &plan.recompute {
            None => &plan.f.acts.att[layer],
            Some((out, att)) => {
                let mut prog = Program::default();
                let fwd = AttnFwd { out, saved: att, qkv: &plan.f.acts.qkv[layer] };
                model.kernels.attention.forward(&mut prog, AttentionImpl::Classic, fwd, c.attn_dims(), None);
                gpu.run(|pass| prog.encode(pass));
                att
            }
        };
        let mut att = gpu.read_range(att, 0, c.n_head * t * t).await?;
        for (r, row) in att.chunks_mut(t).enumerate() {
            row[r % t + 1..].fill(0.0);
        }
        Ok(att)
    }
}

/// The `k` largest probabilities of softmax(`logits`), with their indices, largest first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(order.len());
    if k == 0 {
        return vec![];
    }
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
    order.select_nth_unstable_by(k - 1, by_logit);
    order.truncate(k);
    order.sort_by(by_logit);
    order.into_iter().map(|i| (i, (((logits[i as usize] - max) as f64).exp() / sum) as f32)).collect()
}

/// Checks that `ids` can be looked through: 1 to block_size tokens.
pub fn check_prompt(c: &Gpt2Config, ids: &[u32]) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::Input("the prompt has no tokens; give some text to look through".into()));
    }
    if ids.len() > c.block_size {
        return Err(Error::Input(format!(
            "the prompt has {} tokens but the model's context is {}; shorten it to at most {} tokens",
            ids.len(),
            c.block_size,
            c.block_size
        )));
    }
    Ok(())
}

impl Plan {
    fn new(model: &Gpt2, t: usize) -> Result<Plan> {
        let (k, g, p, c) = (&*model.kernels, &model.kernels.gpu, &model.params, &model.config);
        let f = model.forward_plan(1, t)?;
        let n = c.n_layer + 1;
        g.check_buffer("the logit lens' last-position logits (n_layer + 1, V)", 4 * (n * c.vocab_size) as u64)?;
        let top_id = g.tensor("lens.top_id", &[n, t]);
        let top_p = g.tensor("lens.top_p", &[n, t]);
        let last = g.tensor("lens.last", &[n, c.vocab_size]);
        let a = &f.acts;
        let mut layers = Vec::with_capacity(n);
        for l in std::iter::once(c.n_layer).chain(0..c.n_layer) {
            let mut prog = Program::default();
            if l < c.n_layer {
                let h = if l == 0 { &a.encoded } else { &a.residual3[l - 1] };
                let (out, mean, rstd, weight, bias) = (&a.lnf, &a.lnf_mean, &a.lnf_rstd, &p.ln_f_w, p.ln_f_b.as_ref());
                let (kind, eps) = c.norm();
                k.layernorm.forward(&mut prog, LayerNormFwd { out, mean, rstd, inp: h, weight, bias, kind, eps });
                k.matmul.lm_head(&mut prog, &a.logits, &a.lnf, p.head());
                if let Some(cap) = c.arch.logit_softcap {
                    k.softcap.forward(&mut prog, &a.logits, cap);
                }
            }
            k.row_top1.forward(&mut prog, &top_id, &top_p, &a.logits, l * t);
            layers.push((l, prog));
        }
        let recompute = (a.attention.kind() == AttentionKind::Flash).then(|| {
            let matrices = AttentionKind::Classic.saved_shape(1, c.n_head, t);
            (g.tensor("lens.att_out", &[1, t, c.attn_dims().out_width()]), g.tensor("lens.att", &matrices))
        });
        Ok(Plan { f, layers, top_id, top_p, last, recompute })
    }
}
