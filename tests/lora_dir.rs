//! A LoRA run's directory holds its adapter as peft saves it: `wgpt train --init BASE --lora R`
//! writes adapter_config.json (naming BASE) and adapter_model.safetensors beside the checkpoint;
//! read back with peft's reader, the adapters equal the training state's bit for bit, and the
//! base with the adapter merged gives the LoRA model's own logits; resumed, the run keeps naming
//! its base.

mod common;

use common::runs;

use wgpt::hf::peft;
use wgpt::model::lora::Target;
use wgpt::model::{Gpt2, LoraTensors, Weights};
use wgpt::run::format::dir;

/// Logits of `weights` (with `lora`'s adapters where given) on `ids`.
fn logits(
    k: &std::sync::Arc<wgpt::kernels::Kernels>,
    weights: &Weights,
    lora: Option<LoraTensors>,
    ids: &[u32],
) -> Vec<f32> {
    let mut model = Gpt2::new(k.clone(), weights).unwrap();
    model.lora = lora;
    let plan = model.forward_plan(1, ids.len()).unwrap();
    model.forward(&plan, ids, None).unwrap();
    pollster::block_on(k.gpu.read(&plan.acts.logits)).unwrap()
}

/// The LoRA model as `run` has it (the base `weights` and the adapters `saved` in its checkpoint)
/// against the base with `adapter` (peft's reading of the run) merged: the same logits, and not
/// the base's.
fn merged_gives_the_lora_logits(
    k: &std::sync::Arc<wgpt::kernels::Kernels>,
    run: &std::path::Path,
    weights: &Weights,
    adapter: &peft::Adapter,
    saved: &[(String, Vec<f32>)],
    family: &str,
) {
    let lc = dir::read(run).unwrap().checkpoint.state().unwrap().run.train.lora.unwrap();
    let specs = lc.specs(&weights.config);
    let tensors: Vec<Vec<f32>> =
        specs.iter().map(|(name, _)| saved.iter().find(|(n, _)| n == name).unwrap().1.clone()).collect();
    let ids: Vec<u32> = (0..13).map(|i| (i * 7 + 3) % weights.config.vocab_size as u32).collect();
    let own = logits(k, weights, Some(LoraTensors::upload(&k.gpu, &weights.config, lc, &tensors).unwrap()), &ids);
    let mut merged = weights.clone();
    peft::merge(&mut merged, adapter).unwrap();
    let got = logits(k, &merged, None, &ids);
    let plain = logits(k, weights, None, &ids);
    let worst = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("{family}: base + merged adapter vs the LoRA model: worst |Δlogit| {:.3e}", worst(&got, &own));
    println!("(the adapter's effect: base vs LoRA model, worst |Δlogit| {:.3e})", worst(&plain, &own));
    assert!(worst(&got, &own) <= 1e-5, "{family}: merged logits differ by {}", worst(&got, &own));
    assert!(worst(&plain, &own) > 1e-3, "{family}: the adapter changes the logits");
}

#[test]
fn a_lora_run_directory_is_a_peft_adapter() {
    let Some(k) = common::shared_kernels() else { return };
    let root = std::env::temp_dir().join(format!("wgpt-lora-dir-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let corpus = root.join("corpus.txt");
    std::fs::write(&corpus, "the quick brown fox jumps over the lazy dog.\n".repeat(40)).unwrap();
    // a new run gets the corpus and short evaluations; a resumed one keeps its own
    let wgpt = |args: &[&str]| {
        let new = ["--data", corpus.to_str().unwrap(), "--eval-iters", "1", "--log-interval", "1"];
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(args)
            .args(if args.contains(&"--resume") { &[][..] } else { &new[..] })
            .output()
            .expect("run wgpt");
        let log = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{log}");
    };
    let (base, run) = (root.join("base"), root.join("run"));
    let shape = ["--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4"];
    wgpt(
        &[&["train", "--max-iters", "2", "--eval-interval", "2", "--out", base.to_str().unwrap()], &shape[..]].concat(),
    );
    let lora = ["--lora", "4", "--lora-alpha", "6", "--lora-dropout", "0.05", "--lora-targets", "c_attn,mlp.c_proj"];
    let more = ["--batch-size", "4", "--max-iters", "6", "--eval-interval", "6", "--lr", "1e-2", "--out"];
    wgpt(&[&["train", "--init", base.to_str().unwrap()], &lora[..], &more[..], &[run.to_str().unwrap()]].concat());

    let config = peft::dir::read_config(&run).unwrap();
    assert_eq!(config.base_model_name_or_path.as_deref(), Some(base.to_str().unwrap()));
    assert_eq!((config.r, config.lora_alpha, config.lora_dropout), (4, 6.0, 0.05));
    let text = std::fs::read_to_string(run.join(peft::CONFIG_FILE)).unwrap();
    assert!(text.contains("\"lora_dropout\": 0.05"), "0.05 stays 0.05: {text}");
    let (weights, _) = wgpt::hf::dir::load(&run).unwrap();
    let adapter = peft::dir::read(&run, &weights.config).unwrap();
    let saved = runs::saved_adapters(&run);
    assert_eq!(saved.len(), 8, "A and B of c_attn and mlp.c_proj in 2 layers");
    assert_eq!(adapter.layers.len(), 4);
    for l in &adapter.layers {
        let stem = format!("lora.{}", l.site.internal.trim_end_matches(".weight"));
        let find = |which: &str| &saved.iter().find(|(n, _)| *n == format!("{stem}.{which}")).unwrap().1;
        assert_eq!(l.a, *find("lora_A"), "{} lora_A", l.site.module);
        assert_eq!(l.b, *find("lora_B"), "{} lora_B", l.site.module);
        assert!(l.b.iter().any(|&v| v != 0.0), "{} trained", l.site.module);
    }
    println!("{} adapter tensors in adapter_model.safetensors equal the training state's bit for bit", 2 * 4);

    merged_gives_the_lora_logits(&k, &run, &weights, &adapter, &saved, "GPT-2");

    // resumed (no --init), the run keeps naming its base, and the adapter follows the state
    wgpt(&["train", "--resume", run.to_str().unwrap(), "--max-iters", "8"]);
    let config = peft::dir::read_config(&run).unwrap();
    assert_eq!(config.base_model_name_or_path.as_deref(), Some(base.to_str().unwrap()));
    let adapter = peft::dir::read(&run, &weights.config).unwrap();
    let (saved, before) = (runs::saved_adapters(&run), saved);
    assert_ne!(saved, before, "the resumed steps trained the adapters");
    for l in &adapter.layers {
        let stem = format!("lora.{}", l.site.internal.trim_end_matches(".weight"));
        assert_eq!(l.b, saved.iter().find(|(n, _)| *n == format!("{stem}.lora_B")).unwrap().1, "{stem} resumed");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The same on a Llama base (`--arch llama`: GQA, rope, swiglu): the default targets are its
/// seven layers, saved under peft's names (`base_model.model.model.layers.0.self_attn.q_proj.
/// lora_A.weight`), each equal to the training state's adapter bit for bit, and the base with the
/// adapter merged into its fused q|k|v and gate|up columns gives the LoRA model's logits.
#[test]
fn a_llama_lora_run_directory_is_a_peft_adapter() {
    let Some(k) = common::shared_kernels() else { return };
    let root = std::env::temp_dir().join(format!("wgpt-lora-dir-llama-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let corpus = root.join("corpus.txt");
    std::fs::write(&corpus, "the quick brown fox jumps over the lazy dog.\n".repeat(40)).unwrap();
    let wgpt = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(args)
            .args(["--data", corpus.to_str().unwrap(), "--eval-iters", "1", "--log-interval", "1"])
            .output()
            .expect("run wgpt");
        let log = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{log}");
    };
    let (base, run) = (root.join("base"), root.join("run"));
    let shape = ["--arch", "llama", "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16"];
    let steps = ["--batch-size", "4", "--max-iters", "2", "--eval-interval", "2", "--out"];
    wgpt(&[&["train"], &shape[..], &steps[..], &[base.to_str().unwrap()]].concat());
    let lora = ["--lora", "3", "--lora-alpha", "5"];
    let more = ["--batch-size", "4", "--max-iters", "6", "--eval-interval", "6", "--lr", "1e-2", "--out"];
    wgpt(&[&["train", "--init", base.to_str().unwrap()], &lora[..], &more[..], &[run.to_str().unwrap()]].concat());

    let config = peft::dir::read_config(&run).unwrap();
    assert_eq!(config.base_model_name_or_path.as_deref(), Some(base.to_str().unwrap()));
    let mut targets = config.target_modules.clone();
    targets.sort();
    let mut seven: Vec<String> = Target::LLAMA.iter().map(|t| t.module().to_string()).collect();
    seven.sort();
    assert_eq!(targets, seven, "every layer of the family by default");
    let (weights, _) = wgpt::hf::dir::load(&run).unwrap();
    let bytes = std::fs::read(run.join(peft::TENSORS_FILE)).unwrap();
    let names = safetensors::SafeTensors::deserialize(&bytes).unwrap().names().len();
    assert_eq!(names, 2 * 7 * 2, "A and B of seven layers in 2 blocks");
    assert!(safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .tensor("base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight")
        .is_ok());
    let adapter = peft::dir::read(&run, &weights.config).unwrap();
    let saved = runs::saved_adapters(&run);
    assert_eq!((saved.len(), adapter.layers.len()), (28, 14));
    for l in &adapter.layers {
        // model.layers.{l}.self_attn.q_proj -> lora.h.{l}.self_attn.q_proj
        let stem = format!("lora.h.{}", l.site.module.strip_prefix("model.layers.").unwrap());
        let find = |which: &str| &saved.iter().find(|(n, _)| *n == format!("{stem}.{which}")).unwrap().1;
        assert_eq!(l.a, *find("lora_A"), "{} lora_A", l.site.module);
        assert_eq!(l.b, *find("lora_B"), "{} lora_B", l.site.module);
        assert!(l.b.iter().any(|&v| v != 0.0), "{} trained", l.site.module);
    }
    merged_gives_the_lora_logits(&k, &run, &weights, &adapter, &saved, "Llama");
    let _ = std::fs::remove_dir_all(&root);
}
