//! The context a [`super::Decoder`] holds and the memory that costs, decided before anything is
//! allocated: the KV cache is sized to the context asked for (at most [`DEFAULT_CONTEXT`] by
//! default), never to a model's max_position_embeddings (Qwen3-0.6B's 40,960 would need 9 GiB of
//! cache), and a model that cannot fit a device's known memory is refused with the numbers.

use crate::model::Gpt2Config;
use crate::weights16::MatmulWeights;
use crate::{Error, Result};

/// The context a decoder gets when none is asked for: the model's block_size, capped here.
pub const DEFAULT_CONTEXT: usize = 2048;

/// The context (cache rows) of a decoder for `cfg`: `asked`, or block_size capped at
/// [`DEFAULT_CONTEXT`]. An asked context of 0 or past block_size is an error naming both.
pub fn decode_context(cfg: &Gpt2Config, asked: Option<usize>) -> Result<usize> {
    let block = cfg.block_size;
    match asked {
        None => Ok(block.min(DEFAULT_CONTEXT)),
        Some(0) => Err(Error::Input("the context must be at least 1 token".into())),
        Some(n) if n > block => Err(Error::Input(format!(
            "a context of {n} tokens is longer than the model's {block} positions (block_size, or \
             max_position_embeddings); ask for at most {block}"
        ))),
        Some(n) => Ok(n),
    }
}

/// What generating from a model holds on the GPU, in bytes, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderBytes {
    /// The f32 weights.
    pub weights: u64,
    /// The products' f16 weight copies (0 in f32).
    pub f16_copies: u64,
    /// Keys and values of every layer: 2 · n_layer · context · n_kv_head · head size floats.
    pub kv_cache: u64,
    /// The attention scores of a prefill of the whole context (context · n_head · context
    /// floats), which the window's slide runs once the context is full.
    pub scores: u64,
}

impl DecoderBytes {
    /// The parts for `cfg` with a context of `s` tokens, with f16 copies where `f16`.
    pub fn of(cfg: &Gpt2Config, s: usize, f16: bool) -> DecoderBytes {
        let a = cfg.attn_dims();
        DecoderBytes {
            weights: 4 * cfg.num_params() as u64,
            f16_copies: if f16 { MatmulWeights::f16_bytes(cfg) } else { 0 },
            kv_cache: 4 * (2 * cfg.n_layer * s * a.kv_width()) as u64,
            scores: 4 * (s * a.nh * s) as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.weights + self.f16_copies + self.kv_cache + self.scores
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Refuses, before anything is allocated, a decoder for `cfg` with a context of `s` that needs
/// more than `budget` bytes (the device's memory where known; None: nothing to check), saying
/// what it needs by part and the longest context that fits, if any.
pub fn check_decoder_memory(cfg: &Gpt2Config, s: usize, f16: bool, budget: Option<u64>) -> Result<()> {
    let Some(budget) = budget else { return Ok(()) };
    let need = DecoderBytes::of(cfg, s, f16);
    if need.total() <= budget {
        return Ok(());
    }
    let fits = |n: usize| DecoderBytes::of(cfg, n, f16).total() <= budget;
    let (mut lo, mut hi) = (0, s); // fits(lo) or lo == 0; not fits(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let offer = match lo {
        0 => "a smaller model: its weights alone do not fit".to_string(),
        n => format!("a context of {n} tokens (--context {n}, about {})", mib(DecoderBytes::of(cfg, n, f16).total())),
    };
    let copies = if f16 { format!(", {} for the f16 weight copies", mib(need.f16_copies)) } else { String::new() };
    Err(Error::Limits(format!(
        "generating from this model ({} parameters, {} layers, vocabulary {}) with a context of {s} tokens needs \
         about {}: {} for the weights{copies}, {} for the KV cache, {} for the attention scores of a full \
         prefill; this GPU has {} for buffers. What fits: {offer}",
        cfg.num_params(),
        cfg.n_layer,
        cfg.vocab_size,
        mib(need.total()),
        mib(need.weights),
        mib(need.kv_cache),
        mib(need.scores),
        mib(budget)
    )))
}
