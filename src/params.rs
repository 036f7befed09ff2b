//! The parameter table, as the post this project grew from starts: every tensor of the model's
//! state dict under the names of the transformers class it exports as (GPT2LMHeadModel's
//! `transformer.` names, LlamaForCausalLM's and Qwen3ForCausalLM's `model.layers.N.self_attn.*`,
//! wgpt's own), its shape as that class stores it, element count and what it is for, and a tied
//! `lm_head.weight` counted once, so the total equals transformers' `num_parameters()`. Built on
//! [`crate::hf::names::table`], the one map from the class's names to [`Gpt2Config::param_specs`]'
//! tensors. A rope model gets one row without parameters saying where its positions went.

use serde::{Deserialize, Serialize};

use crate::hf::names::{self, Part};
use crate::model::{hf_name, Gpt2Config, HfClass, Mlp, Norm, Positions};

/// The prefix of every parameter of the transformer in GPT2LMHeadModel's state dict.
pub const PREFIX: &str = "transformer.";
/// The output layer's name; its tensor is `transformer.wte.weight`.
pub const LM_HEAD: &str = "lm_head.weight";

/// One row of the table (serialised as `wgpt inspect --json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamRow {
    /// The HF name, e.g. `transformer.h.0.attn.c_attn.weight`.
    pub name: String,
    /// As the class stores it: Conv1D weights (GPT-2) [in, out], nn.Linear weights [out, in];
    /// empty for a row without parameters (rope's).
    pub shape: Vec<usize>,
    /// Elements counted in the total: 0 for a tensor tied to another.
    pub count: usize,
    /// What the tensor is for, in one line.
    pub about: String,
    /// The tensor this one is the same as (lm_head.weight: transformer.wte.weight).
    pub tied_to: Option<String>,
    /// The name the training dynamics report this tensor's statistics under (a fused tensor's:
    /// q_proj, k_proj and v_proj are columns of one), where it is not `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
}

impl ParamRow {
    /// The transformer block the tensor belongs to (`transformer.h.N.*`, `model.layers.N.*`).
    pub fn block(&self) -> Option<usize> {
        let rest = match self.name.strip_prefix(PREFIX) {
            Some(rest) => rest.strip_prefix("h.")?,
            None => self.name.strip_prefix("model.layers.")?,
        };
        rest.split('.').next()?.parse().ok()
    }
}

/// Every parameter of `cfg`'s class in state-dict order, then `lm_head.weight` (tied: a row
/// counted 0; untied: its own tensor, last in the specs). GPT-2's rows are GPT2LMHeadModel's.
pub fn param_table(cfg: &Gpt2Config) -> Vec<ParamRow> {
    let class = HfClass::of(cfg);
    let prefix = names::prefix(class);
    let full = |name: &str| if name == LM_HEAD { name.to_string() } else { format!("{prefix}{name}") };
    let mut rows: Vec<ParamRow> = Vec::new();
    for t in names::table(cfg) {
        let name = full(&t.name);
        let live = hf_name(&t.internal);
        rows.push(ParamRow {
            about: about(cfg, &t.internal, matches!(t.part, Part::Cols { .. }).then_some(t.name.as_str())),
            count: t.shape.iter().product(),
            shape: t.shape,
            tied_to: None,
            live: (live != name).then_some(live),
            name,
        });
        if t.internal == "wte.weight" && cfg.arch.positions == Positions::Rope {
            rows.push(ParamRow {
                name: if prefix.is_empty() { "model.rotary_emb".into() } else { full("rotary_emb") },
                shape: vec![],
                count: 0,
                about: "no parameters: q and k are rotated by position (rope), after their projections".into(),
                tied_to: None,
                live: None,
            });
        }
    }
    if cfg.arch.tied {
        let wte = rows[0].name.clone();
        let (norm, emb) = if class == HfClass::Gpt2 { ("ln_f", "wte") } else { ("the final norm's", "the embeddings") };
        rows.push(ParamRow {
            name: LM_HEAD.to_string(),
            shape: vec![cfg.vocab_size, cfg.n_embd],
            count: 0,
            about: format!(
                "output layer: next-token logits = {norm} output · {emb}ᵀ; the same tensor as the token embeddings, \
                 counted once"
            ),
            tied_to: Some(wte),
            live: None,
        });
    }
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

/// What the internal tensor `internal` of [`Gpt2Config::param_specs`] is for in `cfg`'s model;
/// `part`: the HF tensor's name where it is a column range of it (q_proj of c_attn, gate_proj of
/// c_fc).
fn about(cfg: &Gpt2Config, internal: &str, part: Option<&str>) -> String {
    let local = match internal.strip_prefix("h.") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, local)| local),
        None => internal,
    };
    let a = &cfg.arch;
    let norm = match a.norm {
        Norm::LayerNorm => "layer norm",
        Norm::RmsNorm => "RMSNorm",
    };
    let rotated = if a.positions == Positions::Rope { ", then rotated by position (rope)" } else { "" };
    let normed = if a.qk_norm { ", RMS-normalised per head" } else { "" };
    let gqa = cfg.n_kv_head() < cfg.n_head;
    let mlp = match a.mlp {
        Mlp::Gelu => "GELU",
        Mlp::Relu2 => "ReLU²",
        Mlp::SwiGlu => "SwiGLU",
    };
    let width = match cfg.intermediate_size() {
        i if i == 4 * cfg.n_embd => "4 n_embd".to_string(),
        i => i.to_string(),
    };
    if let Some(part) = part {
        return part_about(part, cfg, rotated, normed);
    }
    match local {
        "wte.weight" if a.tied => {
            "token embeddings: one row per vocabulary token (also the output layer, lm_head)".into()
        }
        "wte.weight" if a.positions == Positions::Off => {
            "token embeddings: one row per vocabulary token (no position embeddings: the causal mask alone tells \
             positions apart)"
                .into()
        }
        "wte.weight" => "token embeddings: one row per vocabulary token".into(),
        "wpe.weight" => "position embeddings: one row per position of the context".into(),
        LM_HEAD => {
            "output layer: next-token logits = the final norm's output · lm_headᵀ, a matrix of its own (untied)".into()
        }
        "ln_1.weight" => format!("{norm} before attention: per-channel scale"),
        "ln_1.bias" => format!("{norm} before attention: per-channel shift"),
        "attn.c_attn.weight" if gqa => format!(
            "query ({} heads), key and value ({} shared heads) projections together{rotated}",
            cfg.n_head,
            cfg.n_kv_head()
        ),
        "attn.c_attn.weight" => format!("query, key and value projections of all heads together{rotated}"),
        "attn.c_attn.bias" => "query, key and value biases".into(),
        "attn.q_norm.weight" => "qk-norm: RMSNorm scale over each head's query (one per head dimension)".into(),
        "attn.k_norm.weight" => "qk-norm: RMSNorm scale over each head's key (one per head dimension)".into(),
        "attn.c_proj.weight" => "attention output projection: the heads' outputs back into the residual stream".into(),
        "attn.c_proj.bias" => "attention output projection bias".into(),
        "ln_2.weight" => format!("{norm} before the MLP: per-channel scale"),
        "ln_2.bias" => format!("{norm} before the MLP: per-channel shift"),
        "mlp.c_fc.weight" if a.mlp == Mlp::SwiGlu => "MLP gate|up projections together, for SwiGLU".into(),
        "mlp.c_fc.weight" => format!("MLP expansion (n_embd -> {width}), followed by {mlp}"),
        "mlp.c_fc.bias" => "MLP expansion bias".into(),
        "mlp.c_proj.weight" => format!("MLP projection ({width} -> n_embd) back into the residual stream"),
        "mlp.c_proj.bias" => "MLP projection bias".into(),
        "ln_f.weight" => format!("final {norm} before the output layer: per-channel scale"),
        "ln_f.bias" => format!("final {norm} before the output layer: per-channel shift"),
        _ => String::new(),
    }
}

/// What one column range of a fused tensor is for (Llama's and Qwen3's split projections).
fn part_about(part: &str, cfg: &Gpt2Config, rotated: &str, normed: &str) -> String {
    let (n, kv) = (cfg.n_head, cfg.n_kv_head());
    let share = if kv < n { format!(", each shared by {} query heads (GQA)", n / kv) } else { String::new() };
    let bias = part.ends_with(".bias");
    let what = match part.rsplit('.').nth(1).unwrap_or("") {
        "q_proj" => format!("query projection of the {n} heads{normed}{rotated}"),
        "k_proj" => format!("key projection of the {kv} KV heads{share}{normed}{rotated}"),
        "v_proj" => format!("value projection of the {kv} KV heads{share}"),
        "gate_proj" => "MLP gate: SiLU(x·gate) scales the up projection (SwiGLU)".into(),
        "up_proj" => "MLP up projection, multiplied by the SiLU gate (SwiGLU)".into(),
        _ => String::new(),
    };
    if bias {
        format!("bias of the {what}")
    } else {
        what
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ArchPreset;

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

    fn family(preset: ArchPreset) -> Gpt2Config {
        let mut cfg = Gpt2Config::preset("tiny").unwrap();
        preset.apply(&mut cfg.arch, cfg.n_head);
        cfg
    }

    #[test]
    fn qwen3_rows_are_the_class_names_with_what_each_is() {
        let cfg = family(ArchPreset::Qwen3);
        let rows = param_table(&cfg);
        let (c, hd) = (cfg.n_embd, cfg.head_dim());
        let find = |n: &str| rows.iter().find(|r| r.name == n).unwrap_or_else(|| panic!("no row {n}: {rows:#?}"));
        assert_eq!(rows[0].name, "model.embed_tokens.weight");
        let rope = &rows[1];
        assert_eq!((rope.name.as_str(), rope.count, rope.shape.len()), ("model.rotary_emb", 0, 0));
        assert!(rope.about.starts_with("no parameters: q and k are rotated by position"), "{}", rope.about);
        let q = find("model.layers.0.self_attn.q_proj.weight");
        assert_eq!(q.shape, [cfg.n_head * hd, c], "nn.Linear is [out, in]");
        assert_eq!(q.live.as_deref(), Some("transformer.h.0.attn.c_attn.weight"), "q is columns of the fused c_attn");
        let k = find("model.layers.1.self_attn.k_proj.weight");
        assert_eq!(k.shape, [cfg.n_kv_head() * hd, c]);
        assert!(k.about.contains("shared by 2 query heads (GQA)") && k.about.contains("rope"), "{}", k.about);
        assert_eq!(find("model.layers.0.self_attn.q_norm.weight").shape, [hd]);
        assert!(find("model.layers.0.mlp.gate_proj.weight").about.contains("SiLU"));
        assert_eq!(find("model.norm.weight").live.as_deref(), Some("transformer.ln_f.weight"));
        assert_eq!(rows.last().unwrap().tied_to.as_deref(), Some("model.embed_tokens.weight"));
        assert!(!rows.iter().any(|r| r.name.contains("wpe") || r.name.ends_with(".bias")), "no wpe, no biases");
        assert!(rows.iter().all(|r| !r.about.is_empty()), "a row without an explanation: {rows:#?}");
        assert_eq!(total(&rows), cfg.num_params());
        assert_eq!((find("model.layers.1.input_layernorm.weight").block(), rows[0].block()), (Some(1), None));
    }

    #[test]
    fn speedrun_rows_are_wgpts_own_with_an_untied_head() {
        let cfg = family(ArchPreset::Speedrun);
        assert_eq!(HfClass::of(&cfg), HfClass::Wgpt);
        let rows = param_table(&cfg);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(&names[..3], ["transformer.wte.weight", "transformer.rotary_emb", "transformer.h.0.ln_1.weight"]);
        let qkv = &rows[3];
        assert_eq!(qkv.shape, [3 * cfg.n_embd, cfg.n_embd], "wgpt stores nn.Linear [out, in]");
        assert_eq!((qkv.live.as_ref(), qkv.about.contains("rotated")), (None, true));
        let head = rows.last().unwrap();
        assert_eq!(
            (head.name.as_str(), head.tied_to.as_ref(), head.count),
            (LM_HEAD, None, cfg.vocab_size * cfg.n_embd)
        );
        assert!(head.about.contains("untied"), "{}", head.about);
        assert!(rows[0].about.ends_with("one row per vocabulary token"), "untied: wte is not the head");
        assert!(rows.iter().all(|r| !r.about.is_empty()), "a row without an explanation: {rows:#?}");
        assert_eq!(total(&rows), cfg.num_params());
    }

    #[test]
    fn gpt2_keeps_its_names_and_conv1d_shapes_with_an_untied_head() {
        let mut cfg = Gpt2Config::preset("tiny").unwrap();
        let tied = param_table(&cfg);
        assert!(tied.iter().all(|r| r.live.is_none()), "GPT-2's rows are the dynamics' names");
        assert_eq!(tied[4].shape, [cfg.n_embd, 3 * cfg.n_embd], "Conv1D is [in, out]");
        cfg.arch.tied = false;
        let rows = param_table(&cfg);
        assert_eq!(HfClass::of(&cfg), HfClass::Gpt2);
        assert_eq!(rows.len(), tied.len());
        assert_eq!((rows.last().unwrap().name.as_str(), rows.last().unwrap().tied_to.as_ref()), (LM_HEAD, None));
        assert_eq!(total(&rows), cfg.num_params());
    }
}
