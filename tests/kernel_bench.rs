//! A benchmark, not a test (ignored unless asked for): every kernel candidate timed on the
//! problems of a training run of the page's default `tiny` model (B 8, T 32) and the baby
//! (B 12, T 64), with the choice autotune or the built-in table makes, printed as a table. It
//! exists for the adapters `wgpt bench` cannot reach: SwiftShader in headless Chromium.
//!
//! ```sh
//! cargo test --test kernel_bench -- --ignored --nocapture                 # natively
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER=/usr/bin/chromedriver \
//!   WASM_BINDGEN_TEST_WEBDRIVER_JSON=.ci/webdriver.json \
//!   cargo test --target wasm32-unknown-unknown --test kernel_bench -- --ignored  # in Chromium
//! ```

mod common;

use wgpt::kernels::matmul::Product;
use wgpt::model::Gpt2Config;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// println! natively, the browser console (which the runner prints) in wasm.
macro_rules! out {
    ($($t:tt)*) => {{
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::console_log!($($t)*);
        #[cfg(not(target_arch = "wasm32"))]
        println!($($t)*);
    }};
}

async fn candidates() {
    let k = common::kernels().await.expect("a GPU adapter");
    out!("{}: every candidate's ms and GFLOP/s; * marks the kernel chosen", k.gpu.describe());
    for (preset, b, t) in [("tiny", 8, 32), ("baby", 12, 64)] {
        let cfg = Gpt2Config::preset(preset).expect("preset");
        let problems = wgpt::tune::run_problems(&k, cfg.run_shape(b, t));
        let (_, report) = wgpt::tune::tune(&k, k.selection(), &problems, true).await.expect("timing");
        out!("{preset} B={b} T={t} ({})", report.describe());
        for timed in &report.tables {
            let flop = match Product::parse(&timed.problem) {
                Some(p) => p.flop(),
                // attention forward and backward: three times the forward's causal half
                None => 3.0 * cfg.attn_shape(b, t).flop(),
            };
            out!("  {}", timed.problem);
            for (name, ms) in &timed.times {
                let mark = if *name == timed.pick { "*" } else { " " };
                out!("    {mark} {name:<24} {ms:>9.3} ms {:>8.2} GFLOP/s", flop / ms / 1e6);
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "a benchmark: run with --ignored"]
fn kernel_candidates() {
    pollster::block_on(candidates());
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
#[ignore = "a benchmark: run with --ignored"]
async fn kernel_candidates() {
    candidates().await;
}
