//! Shared by the integration tests: a GPU (or a loud failure in CI), the shared data folder,
//! and a small seeded RNG.
#![allow(dead_code)]

use std::sync::Arc;

use wgpt::kernels::Kernels;
use wgpt::Gpu;

/// True when running in CI: missing GPUs and data are failures there, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The kernels on the default adapter. Without an adapter: panics in CI, otherwise prints why
/// and returns None (the test then skips).
#[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))] // one thread there
pub async fn kernels() -> Option<Arc<Kernels>> {
    match Gpu::new().await {
        Ok(gpu) => Some(Arc::new(Kernels::new(&gpu).unwrap_or_else(|e| panic!("{e}")))),
        Err(e) if in_ci() => panic!("CI is set but there is no GPU adapter: {e}"),
        Err(e) => {
            println!("SKIP: no GPU adapter ({e})");
            None
        }
    }
}

/// One set of kernels per test binary (natively tests run on threads sharing one device).
#[cfg(not(target_arch = "wasm32"))]
pub fn shared_kernels() -> Option<Arc<Kernels>> {
    static K: std::sync::OnceLock<Option<Arc<Kernels>>> = std::sync::OnceLock::new();
    K.get_or_init(|| pollster::block_on(kernels())).clone()
}

/// ../shared/data, or None (with the reason printed) outside CI when it is absent.
#[cfg(not(target_arch = "wasm32"))]
pub fn shared_data() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else if in_ci() {
        panic!("CI is set but {} is missing", dir.display());
    } else {
        println!("SKIP: {} is missing", dir.display());
        None
    }
}

/// An int32 tensor of a safetensors file (token ids in HF's expected-output files) as u32s.
pub fn i32_tensor(st: &safetensors::SafeTensors, name: &str) -> Vec<u32> {
    st.tensor(name)
        .unwrap_or_else(|e| panic!("no tensor {name}: {e}"))
        .data()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect()
}

/// xorshift64*: deterministic test data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    pub fn ids(&mut self, n: usize, v: usize) -> Vec<u32> {
        (0..n).map(|_| (self.next_u64() % v as u64) as u32).collect()
    }
}

/// Declares a GPU test that runs natively (#[test], on the shared device) and in the browser
/// (wasm_bindgen_test): `$body` is an async fn taking `Arc<Kernels>`.
#[macro_export]
macro_rules! gpu_test {
    ($name:ident, $body:path) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            if let Some(k) = common::shared_kernels() {
                pollster::block_on($body(k));
            }
        }

        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            let k = common::kernels().await.expect("WebGPU adapter in the browser");
            $body(k).await;
        }
    };
}
