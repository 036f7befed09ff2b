//! Sizes past u32 and u64 products through the planning code and the CLI: a clean error naming
//! the setting, never a panic or a wrapped product (usize is 32 bits on wasm32, the page's
//! engine; the model config's own u32-range bound is checked in src/model/config.rs's tests).
#![cfg(not(target_arch = "wasm32"))] // native only: processes

use wgpt::kernels::AttentionKind;
use wgpt::model::{shape_bytes, ActivationTensors, Gpt2Config};
use wgpt::train::{training_bytes, TrainConfig};

/// Runs wgpt; (exit code, stderr).
fn wgpt(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).output().expect("run wgpt");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// The byte counts of the memory plans saturate at u64::MAX where the product passes it, and
/// stay exact below (GPT-2's logits at B 12, T 1024).
#[test]
fn plans_saturate_instead_of_wrapping() {
    assert_eq!(shape_bytes(&[12, 1024, 50257]), 4 * 12 * 1024 * 50257);
    // the logits of batch 10^7 at block 16384 and a 10^6 vocab: far past u32, within u64
    assert_eq!(shape_bytes(&[10_000_000, 16384, 1_000_000]), 655_360_000_000_000_000);
    assert_eq!(shape_bytes(&[usize::MAX, usize::MAX]), u64::MAX);
    let gpt2 = Gpt2Config::preset("gpt2").unwrap();
    let big = Gpt2Config { block_size: 16384, vocab_size: 1_000_000, ..gpt2 };
    big.validate().unwrap();
    let at_b = training_bytes(&big, 10_000_000, 16384, AttentionKind::Flash, false);
    assert!(at_b > 655_360_000_000_000_000 && at_b < u64::MAX, "{at_b}");
    // every size at about 2^24 (the largest each setting may be; the vocabulary at the kernels'
    // bound): (B, T, V) logits are about 2^74 bytes and classic attention's (B, NH, T, T) more,
    // past u64: the sums saturate
    let cfg = Gpt2Config { block_size: 1 << 24, vocab_size: wgpt::kernels::MAX_WIDE_VOCAB, ..gpt2 };
    cfg.validate().unwrap();
    let logits =
        ActivationTensors::specs(&cfg, 1 << 24, 1 << 24, AttentionKind::Flash).into_iter().find(|s| s.name == "logits");
    assert_eq!(logits.unwrap().tensor_bytes(), u64::MAX);
    for kind in [AttentionKind::Classic, AttentionKind::Flash] {
        for f16 in [false, true] {
            assert_eq!(training_bytes(&cfg, 1 << 24, 1 << 24, kind, f16), u64::MAX, "{kind:?} f16 {f16}");
        }
    }
    // below the edge the sum is exact and grows with the batch
    let small = training_bytes(&gpt2, 1, 1024, AttentionKind::Flash, false);
    assert!(small < training_bytes(&gpt2, 2, 1024, AttentionKind::Flash, false));
}

/// A batch or gradient accumulation past 2^24 is refused by TrainConfig, naming it, so the
/// tokens per step (B x T x grad_accum) are multiplied out only within bounds.
#[test]
fn train_settings_past_their_bounds_are_refused() {
    for (name, cfg) in [
        ("batch_size", TrainConfig { batch_size: 1 << 30, ..TrainConfig::default() }),
        ("grad_accum", TrainConfig { grad_accum: usize::MAX, ..TrainConfig::default() }),
    ] {
        let e = cfg.validate(1024).unwrap_err().to_string();
        println!("{e}");
        assert!(e.contains(name) && e.contains("too large"), "{e}");
    }
    // 10^7 (the page's e2e check) is within the bound: the device's limits refuse it instead
    TrainConfig { batch_size: 10_000_000, grad_accum: 1_000_000, ..TrainConfig::default() }.validate(1024).unwrap();
}

/// The CLI with hostile sizes: exit code 2 and the setting named, never a panic. The batch of
/// 10^7 is the page's e2e case ("a batch past the device's limits"): it reaches the GPU's limit
/// check (lavapipe here) and is refused there with what fits.
#[test]
fn the_cli_refuses_hostile_sizes() {
    let dir = std::env::temp_dir().join(format!("wgpt-overflow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("corpus.txt");
    std::fs::write(&data, "a small corpus of plain words, repeated to be long enough.\n".repeat(40)).unwrap();
    let out = dir.join("run");
    let (data, out) = (data.to_str().unwrap(), out.to_str().unwrap());
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("n_layer past 2^24", &["--n-layer", "100000000"], &["n_layer", "implausibly large"]),
        ("grad_accum 10^8", &["--grad-accum", "100000000"], &["grad_accum", "too large"]),
        ("batch 10^8", &["--batch-size", "100000000"], &["batch_size", "too large"]),
        ("batch 10^7", &["--batch-size", "10000000", "--max-iters", "1"], &["What fits this GPU: batch size"]),
    ];
    for (what, flags, needles) in cases {
        let mut args = vec!["train", "--data", data, "--out", out, "--tokenizer", "char"];
        args.extend_from_slice(flags);
        let (code, stderr) = wgpt(&args);
        println!("{what}: {}", stderr.lines().last().unwrap_or(""));
        assert!(!stderr.contains("panicked"), "{what}: wgpt panicked: {stderr}");
        assert_eq!(code, Some(2), "{what}: expected exit code 2, got {code:?}: {stderr}");
        for n in *needles {
            assert!(stderr.contains(n), "{what}: the message lacks {n:?}: {stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
