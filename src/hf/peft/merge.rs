//! Merging a LoRA adapter into its base's weights on the CPU: W' = W + (alpha / r)·B·A, peft's
//! `merge_and_unload`, done in wgpt's internal [in, out] layout.
//!
//! In HF's nn.Linear layout the update is ΔW = s·B·A, [out, in]; transposed into the internal
//! layout (GPT-2's Conv1D layout, which peft's fan_in_fan_out merge also transposes into) it is
//! ΔW[i][o] = s·Σ_k A[k][i]·B[o][k], added to the layer's columns of the internal weight (all of
//! them for GPT-2, q/k/v's or gate/up's range of the fused tensor for Llama and Qwen3).

use std::collections::HashMap;

use super::{Adapter, LoraLayer};
use crate::hf::names::Part;
use crate::model::Weights;
use crate::{Error, Result};

/// Adds every layer's update to `weights` in place. `weights` must be of the base the adapter
/// was made for.
///
/// Rounding: the sum over the rank and the scale are in f64 and the update is added to the f32
/// weight with one rounding; peft rounds B·A, its scaling and the sum each to f32, so the two
/// merges can differ by an ulp or two of the weight.
pub fn merge(weights: &mut Weights, adapter: &Adapter) -> Result<()> {
    if weights.config != adapter.base {
        return Err(Error::Input(format!(
            "the adapter was read for a base of config {:?}, not this model's {:?}",
            adapter.base, weights.config
        )));
    }
    let specs = weights.config.param_specs();
    let index: HashMap<&str, usize> = specs.iter().enumerate().map(|(k, (n, _))| (n.as_str(), k)).collect();
    let (r, scale) = (adapter.config.r, adapter.config.scale());
    for layer in &adapter.layers {
        let k = *index.get(layer.site.internal.as_str()).ok_or_else(|| {
            Error::Input(format!("the model has no parameter {} for {}", layer.site.internal, layer.site.module))
        })?;
        let cols = specs[k].1[1];
        add_update(&mut weights.tensors[k], cols, layer, r, scale);
    }
    Ok(())
}

/// w[i][start + o] += s·Σ_k A[k][i]·B[o][k] over the layer's inputs i and outputs o, for the
/// internal [in, cols] weight `w`.
fn add_update(w: &mut [f32], cols: usize, layer: &LoraLayer, r: usize, scale: f64) {
    let (a, b) = (&layer.a, &layer.b);
    let (n_in, n_out) = (layer.site.in_features, layer.site.out_features);
    let start = match layer.site.part {
        Part::Whole => 0,
        Part::Cols { start, .. } => start,
    };
    for i in 0..n_in {
        for o in 0..n_out {
            let sum: f64 = (0..r).map(|k| a[k * n_in + i] as f64 * b[o * r + k] as f64).sum();
            let w = &mut w[i * cols + start + o];
            *w = (*w as f64 + scale * sum) as f32;
        }
    }
}
