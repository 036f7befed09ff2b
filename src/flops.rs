//! Training throughput in model FLOPs, as nanoGPT's `estimate_mfu` counts them (after the PaLM
//! paper's appendix B): per token 6·N for the forward and backward through the weights (N without
//! the position embeddings, which are a lookup) plus 12·L·H·Q·T for attention (Q the head size, T
//! the sequence trained on); achieved FLOP/s from tokens/s, and the fraction of the adapter's
//! peak (MFU) where its fp32 peak is known.

use serde::Serialize;

use crate::model::{Gpt2Config, Positions};

/// Model FLOPs of one token's forward and backward when training on sequences of `t` tokens.
pub fn flops_per_token(cfg: &Gpt2Config, t: usize) -> f64 {
    // the learned position embeddings are a lookup (rope models have none to take away)
    let wpe = if cfg.arch.positions == Positions::Learned { cfg.block_size * cfg.n_embd } else { 0 };
    let n = (cfg.num_params() - wpe) as f64;
    let (l, h, q) = (cfg.n_layer as f64, cfg.n_head as f64, cfg.head_dim() as f64);
    6.0 * n + 12.0 * l * h * q * t as f64
}

/// Nominal fp32 (non-tensor-core) peaks in FLOP/s, by a substring of the adapter's name, from the
/// vendors' data sheets; the first match wins, so longer names come first.
pub const PEAK_FP32: &[(&str, f64)] = &[
    ("H100 PCIe", 51e12),
    ("H100", 67e12),
    ("H200", 67e12),
    ("A100", 19.5e12),
    ("RTX 4090", 82.6e12),
    ("RTX 3090", 35.6e12),
];

/// The fp32 peak of the adapter called `name`, where [`PEAK_FP32`] knows it.
pub fn peak_flops(name: &str) -> Option<f64> {
    PEAK_FP32.iter().find(|(part, _)| name.contains(part)).map(|&(_, peak)| peak)
}

/// Tokens/s with what they mean in model FLOPs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub tokens_per_sec: f64,
    /// Model FLOPs per second achieved ([`flops_per_token`] · tokens/s).
    pub flops_per_sec: f64,
    /// `flops_per_sec` over the adapter's fp32 peak, where it is known.
    pub mfu: Option<f64>,
}

impl Throughput {
    /// Training `cfg` on sequences of `t` tokens at `tokens_per_sec` on the adapter `adapter`.
    pub fn new(cfg: &Gpt2Config, t: usize, tokens_per_sec: f64, adapter: &str) -> Throughput {
        let flops_per_sec = flops_per_token(cfg, t) * tokens_per_sec;
        Throughput { tokens_per_sec, flops_per_sec, mfu: peak_flops(adapter).map(|peak| flops_per_sec / peak) }
    }
}

/// `1234 tok/s | 5.67 GFLOP/s` and `| MFU 1.2%` where the peak is known: for progress lines.
impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scale, unit) = match self.flops_per_sec {
            x if x >= 1e12 => (1e12, "TFLOP/s"),
            x if x >= 1e9 => (1e9, "GFLOP/s"),
            _ => (1e6, "MFLOP/s"),
        };
        write!(f, "{:.0} tok/s | {:.2} {unit}", self.tokens_per_sec, self.flops_per_sec / scale)?;
        if let Some(mfu) = self.mfu {
            write!(f, " | MFU {:.1}%", 100.0 * mfu)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPT-2 124M at T 1024, by hand: N = 124,439,808 − 1024·768 (wpe) = 123,653,376;
    /// 6N = 741,920,256; attention 12·12·12·64·1024 = 113,246,208; sum 855,166,464.
    #[test]
    fn gpt2_by_hand() {
        let cfg = Gpt2Config::preset("gpt2").unwrap();
        assert_eq!(flops_per_token(&cfg, 1024), 855_166_464.0);
        // at T 128: 741,920,256 + 12·12·12·64·128 = 741,920,256 + 14,155,776
        assert_eq!(flops_per_token(&cfg, 128), 756_076_032.0);
        let t = Throughput::new(&cfg, 1024, 1000.0, "NVIDIA A100-SXM4-80GB");
        assert_eq!(t.flops_per_sec, 855_166_464_000.0);
        assert!((t.mfu.unwrap() - 855_166_464_000.0 / 19.5e12).abs() < 1e-12);
        assert_eq!(t.to_string(), "1000 tok/s | 855.17 GFLOP/s | MFU 4.4%");
        let cpu = Throughput::new(&cfg, 1024, 10.0, "llvmpipe (LLVM 15.0.6, 256 bits)");
        assert_eq!(cpu.mfu, None);
        assert_eq!(cpu.to_string(), "10 tok/s | 8.55 GFLOP/s");
        assert_eq!(peak_flops("NVIDIA H100 PCIe"), Some(51e12));
        assert_eq!(peak_flops("NVIDIA H100 80GB HBM3"), Some(67e12));
    }
}
