//! Plain f32 CPU reference of every kernel, written for clarity, not speed: llm.c's
//! `train_gpt2.c` layer by layer (outputs first, then inputs, then sizes). The GPU kernels are
//! tested against these, and these against finite differences and PyTorch's numbers.

mod backward;
mod forward;
mod lora;
mod muon;
mod optim;
mod rope;

pub use backward::*;
pub use forward::*;
pub use lora::{
    lora_backward, lora_backward_cols, lora_forward, lora_forward_cols, lora_merge, lora_merge_cols, LoraBwd, LoraCols,
    LoraDims, LoraFwd,
};
pub use muon::*;
pub use optim::*;
pub use rope::{rope_backward, rope_forward, RopeBwd, RopeFwd, RopeShape};

/// `|got − want| ≤ atol + rtol·|want|` over two slices; on failure the message names the worst
/// element (by how far past its tolerance it is), its index and both values.
pub fn check_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Result<Closeness, String> {
    let c = closeness(got, want, atol, rtol);
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, expected {}", got.len(), want.len()));
    }
    if c.excess > 0.0 || c.max_abs.is_nan() {
        return Err(format!(
            "{what}: worst element [{}] = {} but expected {} (|diff| {:.3e} > {:.1e} + {:.1e}·|want|); max abs err {:.3e}, max rel err {:.3e}",
            c.worst, got[c.worst], want[c.worst], (got[c.worst] - want[c.worst]).abs(), atol, rtol, c.max_abs, c.max_rel
        ));
    }
    Ok(c)
}

/// How far apart two slices are.
#[derive(Debug, Clone, Copy)]
pub struct Closeness {
    pub max_abs: f32,
    pub max_rel: f32,
    /// Index of the element furthest past (or closest to) its tolerance.
    pub worst: usize,
    /// max over elements of |got − want| − (atol + rtol·|want|); > 0 fails. NaN counts as +inf.
    pub excess: f32,
}

pub fn closeness(got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Closeness {
    let mut c = Closeness { max_abs: 0.0, max_rel: 0.0, worst: 0, excess: f32::NEG_INFINITY };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        let d = if d.is_nan() { f32::INFINITY } else { d };
        c.max_abs = c.max_abs.max(d);
        c.max_rel = c.max_rel.max(d / w.abs().max(1e-12));
        let excess = d - (atol + rtol * w.abs());
        if excess > c.excess {
            c.excess = excess;
            c.worst = i;
        }
    }
    c
}
