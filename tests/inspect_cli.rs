//! `wgpt inspect` end to end: the table needs only config.json and no GPU; `--json` is the object
//! issue 15 specifies, its numbers transformers' (the parameter table's and the logit lens'
//! fixtures); bad input exits 2 with a message saying what is wrong, never a panic.
#![cfg(not(target_arch = "wasm32"))] // native only: processes and files

mod common;

use std::path::PathBuf;

use wgpt::model::{Gpt2Config, Weights};
use wgpt::tokenizer::Tokenizer;

/// `wgpt inspect ARGS`: (exit code, stdout, stderr).
fn inspect(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).arg("inspect").args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Exit code 2, no panic, and every needle in stderr.
fn refuses(args: &[&str], needles: &[&str]) {
    let (code, _, stderr) = inspect(args);
    println!("inspect {args:?}: {}", stderr.lines().last().unwrap_or(""));
    assert!(!stderr.contains("panicked"), "{args:?}: panicked: {stderr}");
    assert_eq!(code, Some(2), "{args:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: the message lacks {n:?}: {stderr}");
    }
}

/// A fresh directory holding a random 1-layer model of context 8 with a char tokenizer.
fn small_model(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpt-inspect-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tok = Tokenizer::char_level("abc de").unwrap();
    let cfg = Gpt2Config {
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        block_size: 8,
        vocab_size: tok.vocab_size(),
        arch: wgpt::model::Arch::GPT2,
    };
    wgpt::hf::dir::save(&dir, &Weights::random(cfg, 1), Some(&tok)).unwrap();
    dir
}

#[test]
fn table_from_config_alone() {
    let dir = small_model("table");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let (code, stdout, stderr) = inspect(&["--model", dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("adapter"), "the table needs no GPU: {stderr}");
    for needle in ["transformer.h.0.attn.c_attn.weight", "[16, 48]", "tied to transformer.wte.weight", "total"] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    let (_, json, _) = inspect(&["--model", dir.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cfg = wgpt::hf::dir::load_config(&dir).unwrap();
    assert_eq!(v["total_params"], cfg.num_params());
    assert_eq!(v["params"].as_array().unwrap().len(), 2 + 12 + 2 + 1);
    assert_eq!(v["tokens"], serde_json::json!([]));
    assert_eq!(v["logit_lens"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_equals_transformers() {
    let Some(d) = common::shared_data() else { return };
    if common::shared_kernels().is_none() {
        return;
    }
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(format!("{}/tests/fixtures/{p}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
        )
        .unwrap()
    };
    let (lens, table) = (read("logit_lens_tiny.json"), read("param_table.json"));
    let dir = d.join("hf-tiny-gpt2");
    let prompt = lens["prompt"].as_str().unwrap();
    let (code, stdout, stderr) = inspect(&["--model", dir.to_str().unwrap(), "--prompt", prompt, "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    let head = &stdout[..stdout.find(r#""count""#).unwrap()];
    assert_eq!(
        head, r#"{"params":[{"name":"transformer.wte.weight","shape":[50257,32],"#,
        "fields in the issue's order"
    );
    assert_eq!(v["total_params"], table["hf-tiny-gpt2"]["num_parameters"]);
    let ids: Vec<u64> = v["tokens"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(serde_json::json!(ids), lens["ids"]);
    let text: String = v["tokens"].as_array().unwrap().iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(text, prompt, "the tokens' texts make the prompt");
    let layers = v["logit_lens"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    for (got, want) in layers.iter().zip(lens["layers"].as_array().unwrap()) {
        assert_eq!(got["layer"], want["layer"]);
        let top: Vec<u64> = got["top"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
        assert_eq!(serde_json::json!(top), want["top_ids"], "layer {}", got["layer"]);
        let (p, want_p) = (got["top"][0]["p"].as_f64().unwrap(), want["top_p"][0].as_f64().unwrap());
        assert!((p - want_p).abs() <= 1e-4 * want_p, "layer {}: p {p} vs {want_p}", got["layer"]);
    }
    // the text form shows the same, with the grid
    let (code, text, stderr) = inspect(&["--model", dir.to_str().unwrap(), "--prompt", prompt, "--top", "2"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(text.contains("prompt: 14 tokens") && text.contains("layer  2 (after h.1, output"), "{text}");
    assert!(text.contains("the most likely next token at each position"), "{text}");
}

#[test]
fn bad_input_is_refused() {
    refuses(&["--model", "/nonexistent/model"], &["/nonexistent/model", "is not a directory"]);
    refuses(&["--model", ".", "--top", "0"], &["--top"]);
    let dir = small_model("bad");
    let m = dir.to_str().unwrap();
    if common::shared_kernels().is_some() {
        refuses(&["--model", m, "--prompt", "abcdeabcde"], &["10 tokens", "context is 8"]);
        refuses(&["--model", m, "--prompt", "xyz"], &["none of the prompt's characters"]);
        let (code, stdout, stderr) = inspect(&["--model", m, "--prompt", "ab zz"]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("were dropped") && stdout.contains("prompt: 3 tokens"), "{stderr}\n{stdout}");
        std::fs::write(dir.join("model.safetensors"), b"\x10\0\0\0\0\0\0\0{\"a\":").unwrap();
        refuses(&["--model", m, "--prompt", "ab"], &["model.safetensors"]);
    }
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    refuses(&["--model", m, "--prompt", "ab"], &["no tokenizer.json"]);
    std::fs::write(dir.join("config.json"), b"{").unwrap();
    refuses(&["--model", m], &["config.json"]);
    let _ = std::fs::remove_dir_all(&dir);
}
