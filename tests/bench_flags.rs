//! `wgpt bench`'s --config and --lora refused by name where they are wrong (exit code 2, no
//! panic), and --lora taking a finetune step of a tiny model with its memory plan printed.
#![cfg(not(target_arch = "wasm32"))] // native only: processes

mod common;

/// Runs `wgpt bench ARGS`; (exit code, stdout, stderr).
fn bench(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .arg("bench")
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("WGPT_TUNE_CACHE", std::env::temp_dir().join(format!("wgpt-bench-flags-{}.json", std::process::id())))
        .output()
        .expect("run wgpt");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn refused(what: &str, args: &[&str], needles: &[&str]) {
    let (code, _, stderr) = bench(args);
    println!("{what}: {}", stderr.lines().last().unwrap_or(""));
    assert!(!stderr.contains("panicked"), "{what}: wgpt panicked: {stderr}");
    assert_eq!(code, Some(2), "{what}: expected exit code 2, got {code:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{what}: the message lacks {n:?}: {stderr}");
    }
}

#[test]
fn bad_config_and_lora_are_refused_by_name() {
    if common::shared_kernels().is_none() {
        return; // bench opens the GPU before it reads its flags' files
    }
    let dir = std::env::temp_dir().join(format!("wgpt-bench-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.json");
    let missing = missing.to_str().unwrap();
    refused("a missing config", &["--workload", "decode", "--config", missing], &[missing, "cannot read it"]);
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"model_type\": ").unwrap();
    refused("a config that is not JSON", &["--config", broken.to_str().unwrap()], &["broken.json", "not valid JSON"]);
    let smol = format!("{}/tests/fixtures/hub_configs/smollm2-135m.json", env!("CARGO_MANIFEST_DIR"));
    refused(
        "architecture flags beside a config",
        &["--workload", "decode", "--config", &smol, "--arch", "llama"],
        &["--config sets the architecture", "drop the architecture flags"],
    );
    let tiny = ["--workload", "finetune", "--preset", "tiny", "--batch-size", "2", "--seq", "8", "--iters", "1"];
    refused("LoRA rank 0", &[&tiny[..], &["--lora", "0"]].concat(), &["LoRA rank must be in 1..=256, got 0"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A LoRA finetune step runs, and its memory plan counts only the adapters as trained: rank 1 on
/// the tiny preset's four products per layer, (in + out) values each.
#[test]
fn lora_finetune_prints_its_plan() {
    if common::shared_kernels().is_none() {
        return;
    }
    let args = ["--workload", "finetune", "--preset", "tiny", "--batch-size", "2", "--seq", "8", "--iters", "1"];
    let (code, full, stderr) = bench(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, lora, stderr) = bench(&[&args[..], &["--lora", "1"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    let cfg = wgpt::Gpt2Config::preset("tiny").unwrap();
    let (c, l, h) = (cfg.n_embd, cfg.n_layer, cfg.intermediate_size());
    // c_attn C -> 3C, attn c_proj C -> C, c_fc C -> H, mlp c_proj H -> C
    let adapters = l * ((c + 3 * c) + (c + c) + (c + h) + (h + c));
    let n = cfg.num_params();
    println!("{full}{lora}");
    assert!(full.contains(&format!("; {n} parameters, {n} trained")), "{full}");
    assert!(lora.contains(&format!("; {n} parameters, {adapters} trained")), "{lora}");
    assert!(lora.contains("train step tiny lora r1"), "{lora}");
}
