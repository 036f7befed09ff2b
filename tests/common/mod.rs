//! Shared by the integration tests: a GPU (or a loud failure unless skipping is asked for), the
//! shared data folder, and the crate's seeded RNG.
#![allow(dead_code)]

pub mod page;
pub mod peft_steps;
pub mod runs;

use std::sync::Arc;

use wgpt::kernels::Kernels;
use wgpt::options::Options;
use wgpt::Gpu;

/// Asserts `|got − want| ≤ atol + rtol·|want|` elementwise (failing with the worst element, its
/// index and both values) and prints the largest errors and where the worst one is.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    match wgpt::cpu::check_close(what, got, want, atol, rtol) {
        Ok(c) => println!("{what}: max abs err {:.2e}, max rel err {:.2e}, worst [{}]", c.max_abs, c.max_rel, c.worst),
        Err(msg) => panic!("{msg}"),
    }
}

/// Asserts two tensors are the same bits, naming the first element that differs.
pub fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!("{what}: element {i} differs: {} vs {}", got[i], want[i]);
    }
}

/// True when running in CI: missing GPUs and data are failures there, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// True when `WGPT_ALLOW_NO_GPU=1` asks GPU tests to skip on a machine without an adapter.
pub fn allow_no_gpu() -> bool {
    std::env::var("WGPT_ALLOW_NO_GPU").is_ok_and(|v| v == "1")
}

/// The options the tests run with, from the environment variables the CLI reads (CI sets
/// `WGPT_KERNELS`; none is set in the browser), parsed as the CLI parses them.
pub fn options() -> Options {
    Options::from_vars(|name| std::env::var(name).ok()).unwrap_or_else(|e| panic!("{e}"))
}

/// The kernels on the default adapter, of [`options`]' family. Without an adapter the test fails,
/// unless `WGPT_ALLOW_NO_GPU=1` (and not in CI) says to skip: then it prints why and returns None.
#[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))] // one thread there
pub async fn kernels() -> Option<Arc<Kernels>> {
    let options = options();
    match Gpu::new(options.device).await {
        Ok(gpu) => Some(Arc::new(Kernels::with_family(&gpu, options.family).unwrap_or_else(|e| panic!("{e}")))),
        Err(e) if in_ci() => panic!("CI is set but there is no GPU adapter: {e}"),
        Err(e) if allow_no_gpu() => {
            println!("SKIP (WGPT_ALLOW_NO_GPU=1): no GPU adapter ({e})");
            None
        }
        Err(e) => panic!(
            "no GPU adapter: {e}. Install one (on Linux without a GPU: apt-get install mesa-vulkan-drivers), \
             or set WGPT_ALLOW_NO_GPU=1 to skip the GPU tests"
        ),
    }
}

/// One set of kernels per test binary (natively tests run on threads sharing one device).
#[cfg(not(target_arch = "wasm32"))]
pub fn shared_kernels() -> Option<Arc<Kernels>> {
    static K: std::sync::OnceLock<Option<Arc<Kernels>>> = std::sync::OnceLock::new();
    K.get_or_init(|| pollster::block_on(kernels())).clone()
}

/// An f16 copy of `t` made on the GPU (the weights f16 products read); needs shader-f16.
pub fn f16_copy(k: &Kernels, t: &wgpt::Tensor) -> wgpt::Tensor {
    let h = k.gpu.tensor_f16("f16", &t.shape);
    let mut p = wgpt::kernels::Program::default();
    k.matmul.to_f16(&mut p, &h, t);
    k.gpu.run(|pass| p.encode(pass));
    h
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
    int_tensor(st, name, 4)
}

/// An int64 tensor of a safetensors file (token ids as torch saves them) as u32s.
pub fn i64_tensor(st: &safetensors::SafeTensors, name: &str) -> Vec<u32> {
    int_tensor(st, name, 8)
}

/// The low 32 bits of each little-endian integer of `width` bytes of a tensor (an id's `as u32`).
fn int_tensor(st: &safetensors::SafeTensors, name: &str, width: usize) -> Vec<u32> {
    st.tensor(name)
        .unwrap_or_else(|e| panic!("no tensor {name}: {e}"))
        .data()
        .chunks_exact(width)
        .map(|b| u32::from_le_bytes(b[..4].try_into().unwrap()))
        .collect()
}

/// A model directory with what transformers made of it beside it (expected.safetensors: its
/// logits, prompt and generated ids): the model on the test's kernels and the file's bytes.
#[cfg(not(target_arch = "wasm32"))]
pub struct Fixture {
    pub model: wgpt::Gpt2,
    bytes: Vec<u8>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Fixture {
    /// Loads the model of `dir` onto `k` and reads its expected.safetensors.
    pub fn load(k: &Arc<Kernels>, dir: &std::path::Path) -> Fixture {
        let (weights, _) = wgpt::hf::dir::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let model = wgpt::Gpt2::new(k.clone(), &weights).unwrap();
        let path = dir.join("expected.safetensors");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Fixture { model, bytes }
    }

    /// transformers' outputs.
    pub fn expected(&self) -> safetensors::SafeTensors<'_> {
        safetensors::SafeTensors::deserialize(&self.bytes).unwrap()
    }
}

/// The crate's seeded RNG: test data (`vec`, `ids`) from the same generator the library uses.
#[allow(unused_imports)] // not every test binary draws data
pub use wgpt::rng::Rng;

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

/// The loss of each of `n` training steps of `run` (a readback after each).
#[cfg(not(target_arch = "wasm32"))]
pub fn step_losses(run: &mut wgpt::run::Run, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            run.train_step().unwrap();
            pollster::block_on(run.loss()).unwrap()
        })
        .collect()
}
