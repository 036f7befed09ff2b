//! GPT-2's parameter table, as the post this project grew from starts: every tensor of
//! `GPT2LMHeadModel`'s state dict under its HF name (`transformer.` prefix included), its shape,
//! element count and what it is for, and `lm_head.weight` tied to `transformer.wte.weight` and
//! counted once, so the total equals transformers' `num_parameters()`. Built on
//! [`Gpt2Config::param_specs`], the one list of names and shapes.

use serde::{Deserialize, Serialize};

use crate::model::{hf_name, Gpt2Config};

/// The prefix of every parameter of the transformer in GPT2LMHeadModel's state dict.
pub const PREFIX: &str = "transformer.";
/// The output layer's name; its tensor is `transformer.wte.weight`.
pub const LM_HEAD: &str = "lm_head.weight";

/// One row of the table (serialised as `wgpt inspect --json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamRow {
    /// The HF name, e.g. `transformer.h.0.attn.c_attn.weight`.
    pub name: String,
    /// Conv1D weights are [in, out], as HF stores them.
    pub shape: Vec<usize>,
    /// Elements counted in the total: 0 for a tensor tied to another.
    pub count: usize,
    /// What the tensor is for, in one line.
    pub about: String,
    /// The tensor this one is the same as (lm_head.weight: transformer.wte.weight).
    pub tied_to: Option<String>,
}

impl ParamRow {
    /// The transformer block the tensor belongs to (`transformer.h.N.*`), if any.
    pub fn block(&self) -> Option<usize> {
        self.name.strip_prefix(PREFIX)?.strip_prefix("h.")?.split('.').next()?.parse().ok()
    }
}

/// Every parameter of GPT2LMHeadModel for `cfg` in state-dict order, then `lm_head.weight`
/// (tied: a row counted 0; untied: its own tensor, last in the specs).
pub fn param_table(cfg: &Gpt2Config) -> Vec<ParamRow> {
    let wte = format!("{PREFIX}wte.weight");
    let mut rows: Vec<ParamRow> = cfg
        .param_specs()
        .into_iter()
        .map(|(name, shape)| ParamRow {
            about: match (name.as_str(), cfg.arch.tied) {
                ("wte.weight", false) => "token embeddings: one row per vocabulary token".to_string(),
                _ => about(&name).to_string(),
            },
            name: hf_name(&name),
            count: shape.iter().product(),
            shape,
            tied_to: None,
        })
        .collect();
    if !cfg.arch.tied {
        return rows;
    }
    rows.push(ParamRow {
        name: LM_HEAD.to_string(),
        shape: vec![cfg.vocab_size, cfg.n_embd],
        count: 0,
        about: "output layer: next-token logits = ln_f output · wteᵀ; the same tensor as the token embeddings, \
                counted once"
            .to_string(),
        tied_to: Some(wte),
    });
    rows
}

/// The number of parameters: the sum of the counts (tied tensors once), transformers'
/// `num_parameters()`.
pub fn total(rows: &[ParamRow]) -> usize {
    rows.iter().map(|r| r.count).sum()
}

/// What a parameter does in the model, as optimizers group them: Muon takes the hidden
/// matrices and leaves the embeddings, the head and every 1-D tensor to AdamW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Token embeddings (GPT-2's wte, also its tied output layer).
    Embedding,
    /// Position embeddings (wpe).
    Position,
    /// An untied output layer (lm_head).
    Head,
    /// A hidden matrix: the attention and MLP projections.
    Matrix,
    /// A 1-D tensor: biases and layer norm gains and shifts.
    Vector,
}

/// The role of a parameter of [`Gpt2Config::param_specs`] (name without the prefix) or
/// `lm_head.weight`, of `shape`.
pub fn role(name: &str, shape: &[usize]) -> Role {
    match name {
        "wte.weight" => Role::Embedding,
        "wpe.weight" => Role::Position,
        LM_HEAD => Role::Head,
        _ if shape.len() >= 2 => Role::Matrix,
        _ => Role::Vector,
    }
}

/// What a parameter of [`Gpt2Config::param_specs`] (name without the prefix) is for.
fn about(name: &str) -> &'static str {
    let local = match name.strip_prefix("h.") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, local)| local),
        None => name,
    };
    match local {
        "wte.weight" => "token embeddings: one row per vocabulary token (also the output layer, lm_head)",
        "wpe.weight" => "position embeddings: one row per position of the context",
        LM_HEAD => "output layer: next-token logits = ln_f output · lm_headᵀ, a matrix of its own (untied)",
        "ln_1.weight" => "layer norm before attention: per-channel scale",
        "ln_1.bias" => "layer norm before attention: per-channel shift",
        "attn.c_attn.weight" => "query, key and value projections of all heads together (n_embd -> 3 n_embd)",
        "attn.c_attn.bias" => "query, key and value biases",
        "attn.c_proj.weight" => "attention output projection: the heads' outputs back into the residual stream",
        "attn.c_proj.bias" => "attention output projection bias",
        "ln_2.weight" => "layer norm before the MLP: per-channel scale",
        "ln_2.bias" => "layer norm before the MLP: per-channel shift",
        "mlp.c_fc.weight" => "MLP expansion (n_embd -> 4 n_embd), followed by GELU",
        "mlp.c_fc.bias" => "MLP expansion bias",
        "mlp.c_proj.weight" => "MLP projection (4 n_embd -> n_embd) back into the residual stream",
        "mlp.c_proj.bias" => "MLP projection bias",
        "ln_f.weight" => "final layer norm before the output layer: per-channel scale",
        "ln_f.bias" => "final layer norm before the output layer: per-channel shift",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_total_blocks_and_every_row_explained() {
        let cfg = Gpt2Config::preset("gpt2").unwrap();
        let rows = param_table(&cfg);
        assert_eq!(total(&rows), 124_439_808);
        assert_eq!(total(&rows), cfg.num_params());
        assert_eq!(rows.len(), 2 + 12 * 12 + 2 + 1);
        assert!(rows.iter().all(|r| !r.about.is_empty()), "a row without an explanation");
        assert_eq!(rows[2].block(), Some(0));
        assert_eq!(rows[rows.len() - 4].block(), Some(11));
        assert_eq!(rows[0].block(), None);
        assert_eq!(rows.last().unwrap().block(), None);
    }

    #[test]
    fn roles_follow_names_and_ranks() {
        let cfg = Gpt2Config::preset("tiny").unwrap();
        let roles: Vec<Role> = cfg.param_specs().iter().map(|(n, s)| role(n, s)).collect();
        assert_eq!(&roles[..4], [Role::Embedding, Role::Position, Role::Vector, Role::Vector]);
        assert_eq!(roles[4], Role::Matrix, "attn.c_attn.weight");
        assert_eq!(roles.iter().filter(|r| **r == Role::Matrix).count(), 4 * cfg.n_layer);
        assert_eq!(role(LM_HEAD, &[cfg.vocab_size, cfg.n_embd]), Role::Head);
    }
}
