//! wgpt: GPT-2 on WebGPU. Forward, backward and AdamW in our own WGSL kernels, run through wgpu
//! natively (Vulkan, Metal, DX12) and in the browser (WebGPU). Semantics follow Hugging Face's
//! `GPT2LMHeadModel`; the layer structure follows llm.c's `train_gpt2.c`.
//!
//! The modules form layers, bottom to top. A module uses its own layer and those below, never
//! one above (tests/layers.rs reads this table and checks every `crate::` path outside comments
//! and `#[cfg(test)]`); a new top-level module gets a row here.
//!
//! | layer | modules |
//! |---|---|
//! | device | gpu, rng, error (lib.rs only re-exports) |
//! | kernels | kernels/, cpu/ |
//! | selection | tune, submit, precision, options |
//! | model | model, backward, hf, params, lens, flops, checkpoint, tokenizer, data, weights16 |
//! | training | train, generate, dynamics, parity |
//! | run | run/ |
//! | front | web/, bin/ |

pub mod backward;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod dynamics;
pub mod flops;
pub mod generate;
pub mod gpu;
pub mod hf;
pub mod kernels;
pub mod lens;
pub mod model;
pub mod options;
pub mod params;
pub mod parity;
pub mod precision;
pub mod rng;
pub mod run;
pub mod submit;
pub mod tokenizer;
pub mod train;
pub mod tune;
pub mod web;
pub mod weights16;

pub use gpu::{Gpu, Tensor};
pub use model::{Gpt2, Gpt2Config};

/// Everything that can go wrong, each with a message that says what and what to do.
#[derive(Debug)]
pub enum Error {
    /// No adapter, no device, or the device failed.
    Gpu(String),
    /// The model or batch does not fit the device's limits.
    Limits(String),
    /// A model directory, safetensors file, config or tokenizer is missing, malformed or
    /// inconsistent.
    Format(String),
    /// The caller asked for something the model cannot do (bad ids, shapes, options).
    Input(String),
    /// A file could not be read or written.
    Io(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Gpu(m) => write!(f, "GPU: {m}"),
            Error::Limits(m) => write!(f, "device limits: {m}"),
            Error::Format(m) => write!(f, "{m}"),
            Error::Input(m) => write!(f, "{m}"),
            Error::Io(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Reads a whole file, with the path in the error.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))
}
