//! The architecture flags `wgpt train` (and `wgpt bench`) take: a family preset (`--arch`) and
//! the switches over it. Every flag is optional, so the preset applies first and an explicit
//! flag wins whatever the order on the command line.

use wgpt::model::{ArchChoice, Mlp, Norm, Positions};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ArchArgs {
    /// Architecture preset: gpt2, llama, qwen3 or speedrun (any size; the flags below override
    /// it) [default: gpt2].
    #[arg(long)]
    arch: Option<String>,
    /// learned (GPT-2's wpe), rope (rotary) or none.
    #[arg(long)]
    positions: Option<Positions>,
    /// The rotary base [default: 10000].
    #[arg(long)]
    rope_theta: Option<f32>,
    /// layernorm or rmsnorm.
    #[arg(long)]
    norm: Option<Norm>,
    /// Every norm's eps [default: 1e-5; qwen3: 1e-6].
    #[arg(long)]
    norm_eps: Option<f32>,
    /// gelu (tanh, GPT-2's), relu2 or swiglu.
    #[arg(long)]
    mlp: Option<Mlp>,
    /// The MLP's hidden width [default: 4 x n_embd; swiglu: the multiple of 4 nearest 8 x n_embd / 3].
    #[arg(long)]
    intermediate_size: Option<usize>,
    /// Key/value heads, dividing --n-head (1: multi-query attention) [default: n_head].
    #[arg(long)]
    n_kv_head: Option<usize>,
    /// The width of a head [default: n_embd / n_head].
    #[arg(long)]
    head_dim: Option<usize>,
    /// An RMSNorm over each head's q and k (Qwen3's).
    #[arg(long, overrides_with = "no_qk_norm")]
    qk_norm: bool,
    #[arg(long, overrides_with = "qk_norm")]
    no_qk_norm: bool,
    /// Biases in the linear layers (GPT-2's).
    #[arg(long, overrides_with = "no_bias")]
    bias: bool,
    #[arg(long, overrides_with = "bias")]
    no_bias: bool,
    /// The head shares the token embedding (GPT-2's).
    #[arg(long, overrides_with = "untied")]
    tied: bool,
    /// The head is a matrix of its own (lm_head).
    #[arg(long, overrides_with = "tied")]
    untied: bool,
    /// logits = C tanh(logits / C); 0 turns a preset's off.
    #[arg(long)]
    logit_softcap: Option<f32>,
}

/// Some(true) for `--x`, Some(false) for `--no-x`, None for neither (the last one given wins).
fn switch(on: bool, off: bool) -> Option<bool> {
    (on || off).then_some(on)
}

impl ArchArgs {
    /// The choice these flags make.
    pub fn choice(&self) -> ArchChoice {
        ArchChoice {
            arch: self.arch.clone(),
            positions: self.positions,
            rope_theta: self.rope_theta,
            norm: self.norm,
            norm_eps: self.norm_eps,
            mlp: self.mlp,
            intermediate_size: self.intermediate_size,
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
            qk_norm: switch(self.qk_norm, self.no_qk_norm),
            bias: switch(self.bias, self.no_bias),
            tied: switch(self.tied, self.untied),
            logit_softcap: self.logit_softcap,
        }
    }

    /// Whether any architecture flag was given.
    pub fn given(&self) -> bool {
        self.choice().is_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use wgpt::model::{Arch, ArchPreset};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        arch: ArchArgs,
    }

    fn arch(args: &[&str], n_head: usize) -> wgpt::Result<Arch> {
        let cli = Cli::try_parse_from(std::iter::once("wgpt").chain(args.iter().copied())).unwrap();
        cli.arch.choice().arch(n_head)
    }

    #[test]
    fn the_preset_applies_first_and_flags_win_whatever_their_order() {
        let mut llama = Arch::default();
        ArchPreset::Llama.apply(&mut llama, 6);
        assert_eq!(arch(&["--arch", "llama"], 6).unwrap(), llama);
        let want = Arch { bias: true, tied: false, ..llama };
        assert_eq!(arch(&["--arch", "llama", "--bias", "--untied"], 6).unwrap(), want);
        assert_eq!(arch(&["--untied", "--bias", "--arch", "llama"], 6).unwrap(), want);
        assert!(!arch(&["--qk-norm", "--no-qk-norm"], 6).unwrap().qk_norm, "the last of a pair wins");
        assert_eq!(arch(&["--arch", "speedrun", "--logit-softcap", "0"], 6).unwrap().logit_softcap, None);
        assert_eq!(arch(&[], 6).unwrap(), Arch::GPT2);
        let mixed = arch(&["--positions", "none", "--norm", "rmsnorm", "--mlp", "swiglu", "--no-bias"], 4).unwrap();
        assert_eq!(
            (mixed.positions, mixed.norm, mixed.mlp, mixed.bias),
            (Positions::Off, Norm::RmsNorm, Mlp::SwiGlu, false)
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_choices() {
        let e = Cli::try_parse_from(["wgpt", "--norm", "batchnorm"]).err().unwrap().to_string();
        assert!(e.contains("unknown norm \"batchnorm\"; choose one of layernorm, rmsnorm"), "{e}");
        let e = arch(&["--arch", "mamba"], 4).unwrap_err().to_string();
        assert!(e.contains("unknown arch \"mamba\"; choose one of gpt2, llama, qwen3, speedrun"), "{e}");
    }
}
