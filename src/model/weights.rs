//! Parameters: the one (name, shape) table under Hugging Face's names, the host copy
//! (`Weights`, with GPT-2's initialisation) and the GPU copy (`ParameterTensors`).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::gpu::{Gpu, Tensor};
use crate::rng::Rng;

use super::{Gpt2Config, Norm, Positions};

/// Parameter names of one transformer block, after `h.N.`, in Hugging Face's order (GPT-2's
/// full set; an architecture without biases or with RMSNorm leaves the biases out).
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

/// The untied head's name (a tensor of its own, outside `transformer.` in HF's files).
pub const LM_HEAD: &str = "lm_head.weight";

/// A spec name as HF's state dict names it: `transformer.` before everything but the untied
/// head.
pub fn hf_name(name: &str) -> String {
    match name {
        LM_HEAD => name.to_string(),
        _ => format!("transformer.{name}"),
    }
}

impl Gpt2Config {
    /// Whether the norms have biases: LayerNorm with `bias` (RMSNorm has none).
    pub fn norm_bias(&self) -> bool {
        self.arch.bias && self.arch.norm == Norm::LayerNorm
    }

    /// Every parameter's HF name (without the `transformer.` prefix) and shape, in HF's order;
    /// tensors the architecture does not have (wpe without learned positions, biases without
    /// `bias`, norm biases with RMSNorm, lm_head when tied) are left out. Conv1D weights are
    /// [in, out].
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        let (c, v, t, i, w) =
            (self.n_embd, self.vocab_size, self.block_size, self.intermediate_size(), self.mlp_width());
        let (bias, norm_bias) = (self.arch.bias, self.norm_bias());
        let mut specs = vec![("wte.weight".to_string(), vec![v, c])];
        if self.arch.positions == Positions::Learned {
            specs.push(("wpe.weight".to_string(), vec![t, c]));
        }
        for l in 0..self.n_layer {
            let shapes = [
                (vec![c], true),
                (vec![c], norm_bias),
                (vec![c, 3 * c], true),
                (vec![3 * c], bias),
                (vec![c, c], true),
                (vec![c], bias),
                (vec![c], true),
                (vec![c], norm_bias),
                (vec![c, w], true),
                (vec![w], bias),
                (vec![i, c], true),
                (vec![c], bias),
            ];
            for (name, (shape, present)) in BLOCK_PARAMS.iter().zip(shapes) {
                if present {
                    specs.push((format!("h.{l}.{name}"), shape));
                }
            }
        }
        specs.push(("ln_f.weight".to_string(), vec![c]));
        if norm_bias {
            specs.push(("ln_f.bias".to_string(), vec![c]));
        }
        if !self.arch.tied {
            specs.push((LM_HEAD.to_string(), vec![v, c]));
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
    /// layer norm weights 1.
    pub fn random(config: Gpt2Config, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let proj_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
        let tensors = config
            .param_specs()
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                if name.contains("ln_") && name.ends_with(".weight") {
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
/// indexed by layer. Tensors the architecture does not have are None (see
/// [`Gpt2Config::param_specs`]).
pub struct ParameterTensors {
    pub wte: Tensor,                     // (V, C)
    pub wpe: Option<Tensor>,             // (maxT, C), learned positions only
    pub ln_1_w: Vec<Tensor>,             // (L) x (C)
    pub ln_1_b: Option<Vec<Tensor>>,     // (L) x (C), LayerNorm with bias only
    pub c_attn_w: Vec<Tensor>,           // (L) x (C, 3C)
    pub c_attn_b: Option<Vec<Tensor>>,   // (L) x (3C)
    pub c_proj_w: Vec<Tensor>,           // (L) x (C, C)
    pub c_proj_b: Option<Vec<Tensor>>,   // (L) x (C)
    pub ln_2_w: Vec<Tensor>,             // (L) x (C)
    pub ln_2_b: Option<Vec<Tensor>>,     // (L) x (C)
    pub c_fc_w: Vec<Tensor>,             // (L) x (C, I) (swiglu: (C, 2I), gate | up)
    pub c_fc_b: Option<Vec<Tensor>>,     // (L) x (I)
    pub mlp_proj_w: Vec<Tensor>,         // (L) x (I, C)
    pub mlp_proj_b: Option<Vec<Tensor>>, // (L) x (C)
    pub ln_f_w: Tensor,                  // (C)
    pub ln_f_b: Option<Tensor>,          // (C)
    pub lm_head: Option<Tensor>,         // (V, C), untied only
    /// The spec names, in [`Gpt2Config::param_specs`] order.
    names: Vec<String>,
}

/// Layer `l`'s tensor of a per-layer field the architecture may leave out.
pub fn layer(field: &Option<Vec<Tensor>>, l: usize) -> Option<&Tensor> {
    field.as_ref().map(|ts| &ts[l])
}

impl ParameterTensors {
    /// Builds from tensors in [`Gpt2Config::param_specs`] order.
    pub(super) fn from_ordered(cfg: &Gpt2Config, tensors: Vec<Tensor>) -> ParameterTensors {
        let specs = cfg.param_specs();
        assert_eq!(specs.len(), tensors.len(), "one tensor per parameter spec");
        let names: Vec<String> = specs.into_iter().map(|(name, _)| name).collect();
        let by_name: RefCell<HashMap<String, Tensor>> = RefCell::new(names.iter().cloned().zip(tensors).collect());
        let opt = |name: &str| by_name.borrow_mut().remove(name);
        let n = cfg.n_layer;
        let layers =
            |suffix: &str| -> Option<Vec<Tensor>> { (0..n).map(|l| opt(&format!("h.{l}.{suffix}"))).collect() };
        let p = ParameterTensors {
            wte: opt("wte.weight").expect("wte"),
            wpe: opt("wpe.weight"),
            ln_1_w: layers("ln_1.weight").expect("ln_1.weight"),
            ln_1_b: layers("ln_1.bias"),
            c_attn_w: layers("attn.c_attn.weight").expect("c_attn.weight"),
            c_attn_b: layers("attn.c_attn.bias"),
            c_proj_w: layers("attn.c_proj.weight").expect("c_proj.weight"),
            c_proj_b: layers("attn.c_proj.bias"),
            ln_2_w: layers("ln_2.weight").expect("ln_2.weight"),
            ln_2_b: layers("ln_2.bias"),
            c_fc_w: layers("mlp.c_fc.weight").expect("c_fc.weight"),
            c_fc_b: layers("mlp.c_fc.bias"),
            mlp_proj_w: layers("mlp.c_proj.weight").expect("mlp c_proj.weight"),
            mlp_proj_b: layers("mlp.c_proj.bias"),
            ln_f_w: opt("ln_f.weight").expect("ln_f.weight"),
            ln_f_b: opt("ln_f.bias"),
            lm_head: opt(LM_HEAD),
            names,
        };
        assert!(by_name.borrow().is_empty(), "every spec has a field");
        p
    }

    /// Zero-filled tensors of the parameters' shapes: gradients and optimizer moments.
    pub fn zeros(gpu: &Gpu, config: &Gpt2Config, prefix: &str) -> ParameterTensors {
        let tensors =
            config.param_specs().iter().map(|(name, shape)| gpu.tensor(&format!("{prefix}{name}"), shape)).collect();
        ParameterTensors::from_ordered(config, tensors)
    }

    /// The head's (V, C) matrix: lm_head where untied, else wte.
    pub fn head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }

    /// The tensor of a spec name.
    fn get(&self, name: &str) -> Option<&Tensor> {
        let one = match name {
            "wte.weight" => Some(&self.wte),
            "wpe.weight" => self.wpe.as_ref(),
            "ln_f.weight" => Some(&self.ln_f_w),
            "ln_f.bias" => self.ln_f_b.as_ref(),
            LM_HEAD => self.lm_head.as_ref(),
            _ => None,
        };
        if one.is_some() {
            return one;
        }
        let (l, suffix) = name.strip_prefix("h.").and_then(|r| r.split_once('.'))?;
        let l: usize = l.parse().ok()?;
        match suffix {
            "ln_1.weight" => Some(&self.ln_1_w[l]),
            "ln_1.bias" => layer(&self.ln_1_b, l),
            "attn.c_attn.weight" => Some(&self.c_attn_w[l]),
            "attn.c_attn.bias" => layer(&self.c_attn_b, l),
            "attn.c_proj.weight" => Some(&self.c_proj_w[l]),
            "attn.c_proj.bias" => layer(&self.c_proj_b, l),
            "ln_2.weight" => Some(&self.ln_2_w[l]),
            "ln_2.bias" => layer(&self.ln_2_b, l),
            "mlp.c_fc.weight" => Some(&self.c_fc_w[l]),
            "mlp.c_fc.bias" => layer(&self.c_fc_b, l),
            "mlp.c_proj.weight" => Some(&self.mlp_proj_w[l]),
            "mlp.c_proj.bias" => layer(&self.mlp_proj_b, l),
            _ => None,
        }
    }

    /// Every tensor in [`Gpt2Config::param_specs`] order.
    pub fn ordered(&self) -> Vec<&Tensor> {
        self.names.iter().map(|n| self.get(n).expect("every spec name has a tensor")).collect()
    }
}
