//! The one table between a transformers class's state dict and wgpt's parameters: which HF
//! tensor fills which internal tensor, where in it, and whether it is transposed.
//!
//! Internally every linear weight is [in, out] (GPT-2's Conv1D layout), q|k|v are one fused
//! c_attn of width (NH + 2·KV)·hd and gate|up one fused c_fc of width 2·I, so matmul layouts,
//! tuning and f16 copies never change with the family; Llama's and Qwen3's nn.Linear weights
//! ([out, in], one per projection) are transposed into column ranges here, at the boundary.

use std::collections::HashMap;

use crate::model::{Gpt2Config, HfClass, Norm, Positions};
use crate::{Error, Result};

/// A tensor by name: (name, shape, values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Where an HF tensor goes in its internal tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// All of it.
    Whole,
    /// Columns `start..start + len` of the internal [rows, cols] tensor (a vector is one row).
    Cols { start: usize, len: usize },
}

/// One HF tensor and where it lives internally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfTensor {
    /// The HF state-dict name (GPT-2 and wgpt: without the `transformer.` prefix, see
    /// [`prefix`]).
    pub name: String,
    /// Its shape in HF's file.
    pub shape: Vec<usize>,
    /// The internal tensor's name (as [`Gpt2Config::param_specs`] names it).
    pub internal: String,
    pub part: Part,
    /// Stored [out, in] in HF's file (nn.Linear), [in, out] internally.
    pub transpose: bool,
}

/// The internal tensors a config's model has, in `param_specs` order, with their shapes: every
/// switch's tensors (wpe only with learned positions, biases only with `bias`, norm biases only
/// with LayerNorm, q_norm/k_norm with qk-norm, lm_head when untied).
pub fn internal_specs(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let a = &cfg.arch;
    let (c, v, t, i, hd) = (cfg.n_embd, cfg.vocab_size, cfg.block_size, cfg.intermediate_size(), cfg.head_dim());
    let (q, qkv, fc) = (cfg.n_head * hd, (cfg.n_head + 2 * cfg.n_kv_head()) * hd, cfg.mlp_width());
    let norm_bias = a.bias && a.norm == Norm::LayerNorm;
    let mut specs = vec![("wte.weight".to_string(), vec![v, c])];
    if a.positions == Positions::Learned {
        specs.push(("wpe.weight".to_string(), vec![t, c]));
    }
    for l in 0..cfg.n_layer {
        let rows: [(&str, Vec<usize>, bool); 14] = [
            ("ln_1.weight", vec![c], true),
            ("ln_1.bias", vec![c], norm_bias),
            ("attn.c_attn.weight", vec![c, qkv], true),
            ("attn.c_attn.bias", vec![qkv], a.bias),
            ("attn.q_norm.weight", vec![hd], a.qk_norm),
            ("attn.k_norm.weight", vec![hd], a.qk_norm),
            ("attn.c_proj.weight", vec![q, c], true),
            ("attn.c_proj.bias", vec![c], a.bias),
            ("ln_2.weight", vec![c], true),
            ("ln_2.bias", vec![c], norm_bias),
            ("mlp.c_fc.weight", vec![c, fc], true),
            ("mlp.c_fc.bias", vec![fc], a.bias),
            ("mlp.c_proj.weight", vec![i, c], true),
            ("mlp.c_proj.bias", vec![c], a.bias),
        ];
        specs.extend(rows.into_iter().filter(|r| r.2).map(|(n, s, _)| (format!("h.{l}.{n}"), s)));
    }
    specs.push(("ln_f.weight".to_string(), vec![c]));
    if norm_bias {
        specs.push(("ln_f.bias".to_string(), vec![c]));
    }
    if !a.tied {
        specs.push(("lm_head.weight".to_string(), vec![v, c]));
    }
    specs
}

/// The prefix the class's files put before every name but `lm_head.weight` (GPT2LMHeadModel's
/// and wgpt's `transformer.`); loading accepts names with or without it.
pub fn prefix(class: HfClass) -> &'static str {
    match class {
        HfClass::Gpt2 | HfClass::Wgpt => "transformer.",
        HfClass::Llama | HfClass::Qwen3 => "",
    }
}

/// Every HF tensor of `cfg`'s class, in the internal order. GPT-2 keeps the internal names
/// (Conv1D is [in, out] already); wgpt keeps them too but stores linear weights as nn.Linear;
/// Llama and Qwen3 split the fused tensors into their projections.
pub fn table(cfg: &Gpt2Config) -> Vec<HfTensor> {
    let class = HfClass::of(cfg);
    let specs = internal_specs(cfg);
    match class {
        HfClass::Gpt2 | HfClass::Wgpt => specs
            .into_iter()
            .map(|(internal, shape)| {
                let linear = class == HfClass::Wgpt && shape.len() == 2 && internal.starts_with("h.");
                let shape = if linear { vec![shape[1], shape[0]] } else { shape };
                HfTensor { name: internal.clone(), shape, internal, part: Part::Whole, transpose: linear }
            })
            .collect(),
        HfClass::Llama | HfClass::Qwen3 => {
            specs.iter().flat_map(|(name, shape)| llama_rows(cfg, name, shape)).collect()
        }
    }
}

/// The Llama/Qwen3 tensors that make up the internal tensor `internal` of shape `shape`.
fn llama_rows(cfg: &Gpt2Config, internal: &str, shape: &[usize]) -> Vec<HfTensor> {
    let (hd, c, i) = (cfg.head_dim(), cfg.n_embd, cfg.intermediate_size());
    let (q, kv) = (cfg.n_head * hd, cfg.n_kv_head() * hd);
    let whole = |name: String, transpose: bool| {
        let shape = if transpose { vec![shape[1], shape[0]] } else { shape.to_vec() };
        vec![HfTensor { name, shape, internal: internal.to_string(), part: Part::Whole, transpose }]
    };
    // (HF name after the layer, width) of each column range, in order
    let split = |p: &str, parts: &[(&str, usize)], weight: bool| {
        let mut start = 0;
        parts
            .iter()
            .map(|&(name, len)| {
                let (suffix, hf_shape) = if weight { ("weight", vec![len, c]) } else { ("bias", vec![len]) };
                let t = HfTensor {
                    name: format!("{p}{name}.{suffix}"),
                    shape: hf_shape,
                    internal: internal.to_string(),
                    part: Part::Cols { start, len },
                    transpose: weight,
                };
                start += len;
                t
            })
            .collect::<Vec<_>>()
    };
    let Some(rest) = internal.strip_prefix("h.") else {
        return match internal {
            "wte.weight" => whole("model.embed_tokens.weight".into(), false),
            "ln_f.weight" => whole("model.norm.weight".into(), false),
            other => whole(other.to_string(), false),
        };
    };
    let (layer, key) = rest.split_once('.').unwrap_or((rest, ""));
    let p = format!("model.layers.{layer}.");
    let qkv = [("self_attn.q_proj", q), ("self_attn.k_proj", kv), ("self_attn.v_proj", kv)];
    let gate_up = [("mlp.gate_proj", i), ("mlp.up_proj", i)];
    match key {
        "ln_1.weight" => whole(format!("{p}input_layernorm.weight"), false),
        "ln_2.weight" => whole(format!("{p}post_attention_layernorm.weight"), false),
        "attn.c_attn.weight" => split(&p, &qkv, true),
        "attn.c_attn.bias" => split(&p, &qkv, false),
        "attn.q_norm.weight" => whole(format!("{p}self_attn.q_norm.weight"), false),
        "attn.k_norm.weight" => whole(format!("{p}self_attn.k_norm.weight"), false),
        "attn.c_proj.weight" => whole(format!("{p}self_attn.o_proj.weight"), true),
        "attn.c_proj.bias" => whole(format!("{p}self_attn.o_proj.bias"), false),
        "mlp.c_fc.weight" => split(&p, &gate_up, true),
        "mlp.c_fc.bias" => split(&p, &gate_up, false),
        "mlp.c_proj.weight" => whole(format!("{p}mlp.down_proj.weight"), true),
        "mlp.c_proj.bias" => whole(format!("{p}mlp.down_proj.bias"), false),
        _ => whole(internal.to_string(), false),
    }
}

/// Copies HF tensor `t`'s values into its place in the internal tensor `dst` of shape `shape`.
fn place(t: &HfTensor, src: &[f32], dst: &mut [f32], shape: &[usize]) {
    let cols = *shape.last().unwrap_or(&1);
    let rows = dst.len() / cols.max(1);
    let (start, len) = match t.part {
        Part::Whole => (0, cols),
        Part::Cols { start, len } => (start, len),
    };
    for r in 0..rows {
        for j in 0..len {
            let from = if t.transpose { j * rows + r } else { r * len + j };
            dst[r * cols + start + j] = src[from];
        }
    }
}

/// HF tensor `t`'s values, read out of the internal tensor `src` of shape `shape`.
fn take(t: &HfTensor, src: &[f32], shape: &[usize]) -> Vec<f32> {
    let cols = *shape.last().unwrap_or(&1);
    let rows = src.len() / cols.max(1);
    let (start, len) = match t.part {
        Part::Whole => (0, cols),
        Part::Cols { start, len } => (start, len),
    };
    let mut out = vec![0.0; rows * len];
    for r in 0..rows {
        for j in 0..len {
            let to = if t.transpose { j * rows + r } else { r * len + j };
            out[to] = src[r * cols + start + j];
        }
    }
    out
}

/// The internal tensors of `cfg` (in [`internal_specs`] order), filled from HF tensors that
/// `get(name)` returns as (shape, values); a missing tensor or a wrong shape is an error naming
/// it (`what` is the file, for messages).
pub fn to_internal(
    what: &str,
    cfg: &Gpt2Config,
    mut get: impl FnMut(&str) -> Result<Option<(Vec<usize>, Vec<f32>)>>,
) -> Result<Vec<NamedTensor>> {
    let mut out: Vec<NamedTensor> =
        internal_specs(cfg).into_iter().map(|(n, s)| (n, s.clone(), vec![0.0; s.iter().product()])).collect();
    let index: HashMap<String, usize> = out.iter().enumerate().map(|(k, (n, _, _))| (n.clone(), k)).collect();
    for t in table(cfg) {
        let (shape, values) = get(&t.name)?.ok_or_else(|| {
            Error::Format(format!("{what}: missing tensor {} (expected shape {:?})", t.name, t.shape))
        })?;
        if shape != t.shape {
            return Err(Error::Format(format!(
                "{what}: tensor {} has shape {shape:?}, expected {:?}",
                t.name, t.shape
            )));
        }
        let (_, ishape, dst) = &mut out[index[&t.internal]];
        place(&t, &values, dst, ishape);
    }
    Ok(out)
}

/// The HF tensors (name, shape, values) of `cfg`'s class, from internal tensors that
/// `get(internal name)` returns; an internal tensor the mapping needs and `get` lacks is an
/// error naming it.
pub fn from_internal<'a>(cfg: &Gpt2Config, get: impl Fn(&str) -> Option<&'a [f32]>) -> Result<Vec<NamedTensor>> {
    let shapes: HashMap<String, Vec<usize>> = internal_specs(cfg).into_iter().collect();
    table(cfg)
        .into_iter()
        .map(|t| {
            let src = get(&t.internal).ok_or_else(|| {
                Error::Format(format!(
                    "the model has no parameter {} (needed for {}'s {}); its switch is not in this build's kernels",
                    t.internal,
                    HfClass::of(cfg).class_name(),
                    t.name
                ))
            })?;
            let values = take(&t, src, &shapes[&t.internal]);
            Ok((t.name, t.shape, values))
        })
        .collect()
}

/// Checks that the model's parameter table (`param_specs`) is exactly the mapping's internal
/// tensors, with the same shapes; the error names the first tensor that differs, so a switch
/// whose parameters are not in this build's model yet is refused by name.
pub fn check_specs(cfg: &Gpt2Config) -> Result<()> {
    let mapped: HashMap<String, Vec<usize>> = internal_specs(cfg).into_iter().collect();
    let specs = cfg.param_specs();
    for (name, shape) in &specs {
        match mapped.get(name) {
            None => {
                return Err(Error::Format(format!(
                    "the model's parameter {name} has no counterpart in a {} checkpoint",
                    HfClass::of(cfg).class_name()
                )))
            }
            Some(s) if s != shape => {
                return Err(Error::Format(format!(
                    "the model's parameter {name} has shape {shape:?}, but a {} checkpoint maps {s:?} to it",
                    HfClass::of(cfg).class_name()
                )))
            }
            Some(_) => {}
        }
    }
    let have: std::collections::HashSet<&String> = specs.iter().map(|(n, _)| n).collect();
    let mut absent: Vec<&String> = mapped.keys().filter(|n| !have.contains(n)).collect();
    absent.sort();
    match absent.first() {
        Some(n) => Err(Error::Format(format!(
            "this build's model has no parameter {n}, which a {} checkpoint of this config fills (its switch is \
             not in the kernels yet)",
            HfClass::of(cfg).class_name()
        ))),
        None => Ok(()),
    }
}
