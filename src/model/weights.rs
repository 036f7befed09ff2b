//! Parameters: the one (name, shape) table under Hugging Face's names, the host copy
//! (`Weights`, with GPT-2's initialisation) and the GPU copy (`ParameterTensors`).

use crate::gpu::{Gpu, Tensor};
use crate::kernels::QkNorm;
use crate::rng::Rng;

use super::Gpt2Config;

/// Parameter names of one transformer block, after `h.N.`, in Hugging Face's order.
pub const BLOCK_PARAMS: [&str; 12] = [
    "ln_1.weight",
    "ln_1.bias",
    "attn.c_attn.weight",
    "attn.c_attn.bias",
    "attn.c_proj.weight",
    "attn.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
];
impl Gpt2Config {
    /// Every parameter's HF name (without the `transformer.` prefix) and shape, in HF's order.
    /// Conv1D weights are [in, out].
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        let (c, v, t) = (self.n_embd, self.vocab_size, self.block_size);
        let (qkv, q) = (self.attn_dims().qkv_width(), self.attn_dims().out_width());
        let mut specs = vec![("wte.weight".to_string(), vec![v, c]), ("wpe.weight".to_string(), vec![t, c])];
        for l in 0..self.n_layer {
            let shapes = [
                vec![c],
                vec![c],
                vec![c, qkv],
                vec![qkv],
                vec![q, c],
                vec![c],
                vec![c],
                vec![c],
                vec![c, 4 * c],
                vec![4 * c],
                vec![4 * c, c],
                vec![c],
            ];
            for (name, shape) in BLOCK_PARAMS.iter().zip(shapes) {
                specs.push((format!("h.{l}.{name}"), shape));
            }
        }
        specs.push(("ln_f.weight".to_string(), vec![c]));
        specs.push(("ln_f.bias".to_string(), vec![c]));
        if self.arch.qk_norm {
            // Qwen3's RMSNorm weights over each head's q and k, after the rest
            for l in 0..self.n_layer {
                specs.push((format!("h.{l}.attn.q_norm.weight"), vec![self.head_dim()]));
                specs.push((format!("h.{l}.attn.k_norm.weight"), vec![self.head_dim()]));
            }
        }
        specs
    }

    pub fn num_params(&self) -> usize {
        self.param_specs().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}

/// Parameters on the host, in [`Gpt2Config::param_specs`] order.
#[derive(Clone)]
pub struct Weights {
    pub config: Gpt2Config,
    pub tensors: Vec<Vec<f32>>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weights({:?}, {} tensors)", self.config, self.tensors.len())
    }
}

impl Weights {
    /// GPT-2's initialisation (as HF's `_init_weights` and nanoGPT): weights N(0, 0.02), the
    /// residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02/√(2·n_layer)), biases 0,
    /// layer norm (and qk-norm) weights 1.
    pub fn random(config: Gpt2Config, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let proj_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
        let tensors = config
            .param_specs()
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                if (name.contains("ln_") || name.contains("_norm.")) && name.ends_with(".weight") {
                    vec![1.0; n]
                } else if name.ends_with(".bias") {
                    vec![0.0; n]
                } else {
                    let std = if name.ends_with("c_proj.weight") { proj_std } else { 0.02 };
                    (0..n).map(|_| std * rng.normal()).collect()
                }
            })
            .collect();
        Weights { config, tensors }
    }
}

/// Parameters on the GPU, llm.c's `ParameterTensors` under HF's names; per-layer fields are
/// indexed by layer.
pub struct ParameterTensors {
    pub wte: Tensor,         // (V, C)
    pub wpe: Tensor,         // (maxT, C)
    pub ln_1_w: Vec<Tensor>, // (L) x (C)
    pub ln_1_b: Vec<Tensor>,
    pub c_attn_w: Vec<Tensor>, // (L) x (C, (NH + 2·KV)·hs): q, k and v of every head
    pub c_attn_b: Vec<Tensor>, // (L) x ((NH + 2·KV)·hs)
    pub c_proj_w: Vec<Tensor>, // (L) x (NH·hs, C)
    pub c_proj_b: Vec<Tensor>,
    pub ln_2_w: Vec<Tensor>,
    pub ln_2_b: Vec<Tensor>,
    pub c_fc_w: Vec<Tensor>,     // (L) x (C, 4C)
    pub c_fc_b: Vec<Tensor>,     // (L) x (4C)
    pub mlp_proj_w: Vec<Tensor>, // (L) x (4C, C)
    pub mlp_proj_b: Vec<Tensor>, // (L) x (C)
    pub ln_f_w: Tensor,          // (C)
    pub ln_f_b: Tensor,
    /// With qk_norm: the RMSNorm weights of each head's q and of its k, (L) x (hs) each.
    pub q_norm: Option<Vec<Tensor>>,
    pub k_norm: Option<Vec<Tensor>>,
}

impl ParameterTensors {
    /// Layer `l`'s qk-norm weights, where the model has them.
    pub fn qk_norm(&self, l: usize) -> Option<QkNorm<'_>> {
        Some(QkNorm { q: &self.q_norm.as_ref()?[l], k: &self.k_norm.as_ref()?[l] })
    }
}

impl ParameterTensors {
    /// Builds from tensors in [`Gpt2Config::param_specs`] order.
    pub(super) fn from_ordered(n_layer: usize, tensors: Vec<Tensor>) -> ParameterTensors {
        let mut it = tensors.into_iter();
        let mut next = || it.next().expect("one tensor per parameter spec");
        let (wte, wpe) = (next(), next());
        let mut blocks: [Vec<Tensor>; 12] = Default::default();
        for _ in 0..n_layer {
            for field in blocks.iter_mut() {
                field.push(next());
            }
        }
        let [ln_1_w, ln_1_b, c_attn_w, c_attn_b, c_proj_w, c_proj_b, ln_2_w, ln_2_b, c_fc_w, c_fc_b, mlp_proj_w, mlp_proj_b] =
            blocks;
        let (ln_f_w, ln_f_b) = (next(), next());
        // what is left: the qk-norm weights, q then k per layer, where the model has them
        let rest: Vec<Tensor> = it.collect();
        let (q_norm, k_norm) = match rest.is_empty() {
            true => (None, None),
            false => {
                let (q, k): (Vec<_>, Vec<_>) = rest.chunks(2).map(|p| (p[0].clone(), p[1].clone())).unzip();
                (Some(q), Some(k))
            }
        };
        ParameterTensors {
            wte,
            wpe,
            ln_1_w,
            ln_1_b,
            c_attn_w,
            c_attn_b,
            c_proj_w,
            c_proj_b,
            ln_2_w,
            ln_2_b,
            c_fc_w,
            c_fc_b,
            mlp_proj_w,
            mlp_proj_b,
            ln_f_w,
            ln_f_b,
            q_norm,
            k_norm,
        }
    }

    /// Zero-filled tensors of the parameters' shapes: gradients and optimizer moments.
    pub fn zeros(gpu: &Gpu, config: &Gpt2Config, prefix: &str) -> ParameterTensors {
        let tensors =
            config.param_specs().iter().map(|(name, shape)| gpu.tensor(&format!("{prefix}{name}"), shape)).collect();
        ParameterTensors::from_ordered(config.n_layer, tensors)
    }

    /// Every tensor in [`Gpt2Config::param_specs`] order.
    pub fn ordered(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.wte, &self.wpe];
        for l in 0..self.ln_1_w.len() {
            v.extend([
                &self.ln_1_w[l],
                &self.ln_1_b[l],
                &self.c_attn_w[l],
                &self.c_attn_b[l],
                &self.c_proj_w[l],
                &self.c_proj_b[l],
                &self.ln_2_w[l],
                &self.ln_2_b[l],
                &self.c_fc_w[l],
                &self.c_fc_b[l],
                &self.mlp_proj_w[l],
                &self.mlp_proj_b[l],
            ]);
        }
        v.extend([&self.ln_f_w, &self.ln_f_b]);
        if let (Some(q), Some(k)) = (&self.q_norm, &self.k_norm) {
            v.extend(q.iter().zip(k).flat_map(|(q, k)| [q, k]));
        }
        v
    }
}
