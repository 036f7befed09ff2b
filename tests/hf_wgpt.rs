//! wgpt's own model type (any combination of switches that is no transformers class) travels
//! with its code: config.json's `auto_map` names configuration_wgpt.py and modeling_wgpt.py,
//! which lie beside the weights in an exported directory, the page's Export files, run
//! directories (`wgpt train --out`) and run zips, and nowhere for GPT-2, Llama and Qwen3. The
//! directory reads back as the same model (bit for bit, logits too), and so does config.json as
//! transformers' `save_pretrained` rewrites it. That the Python file computes wgpt's logits is
//! tests/fixtures/check_modeling_wgpt.py's to check (it needs torch).
#![cfg(not(target_arch = "wasm32"))] // native only: processes and files

mod common;

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use wgpt::hf::{self, CODE_FILES};
use wgpt::model::{Arch, Gpt2Config, HfClass, Mlp, Norm, Positions, Weights};
use wgpt::run::format::{dir as run_dir, Metrics, RunFiles};
use wgpt::run::{archive, CheckpointFiles};
use wgpt::tokenizer::Tokenizer;

const CODE: [&str; 2] = ["configuration_wgpt.py", "modeling_wgpt.py"];

fn tokenizer() -> Tokenizer {
    Tokenizer::char_level("the quick brown fox jumps over a lazy dog.\n").unwrap()
}

fn config(arch: Arch) -> Gpt2Config {
    Gpt2Config { n_layer: 2, n_head: 4, n_embd: 32, block_size: 16, vocab_size: tokenizer().vocab_size(), arch }
}

/// The speedrun-like mix: no positions, RMSNorm, ReLU², no biases, untied, softcap 15.
fn mixed() -> Gpt2Config {
    config(Arch {
        positions: Positions::Off,
        norm: Norm::RmsNorm,
        mlp: Mlp::Relu2,
        bias: false,
        tied: false,
        logit_softcap: Some(15.0),
        ..Arch::GPT2
    })
}

/// Rope, qk-norm, MQA and a head size of its own over LayerNorm with biases, tied.
fn mixed_rope() -> Gpt2Config {
    config(Arch { positions: Positions::Rope, qk_norm: true, n_kv_head: Some(1), head_dim: Some(12), ..Arch::GPT2 })
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpt-hf-wgpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect()
}

/// The bits of every tensor, for comparisons that must be exact.
fn bits(w: &Weights) -> Vec<Vec<u32>> {
    w.tensors.iter().map(|t| t.iter().map(|x| x.to_bits()).collect()).collect()
}

/// The model's logits (T, V) of `ids` on the GPU; None where the tests skip the GPU.
fn logits(weights: &Weights, ids: &[u32]) -> Option<Vec<f32>> {
    let kernels = common::shared_kernels()?;
    let model = wgpt::Gpt2::new(kernels, weights).unwrap();
    let f = model.forward_plan(1, ids.len()).unwrap();
    model.forward(&f, ids, None).unwrap();
    Some(pollster::block_on(model.kernels.gpu.read(&f.acts.logits)).unwrap())
}

/// The state-dict names the modeling file's header documents (`transformer.h.N....`).
fn documented_names() -> BTreeSet<String> {
    let (_, text) = CODE_FILES.iter().find(|(n, _)| *n == "modeling_wgpt.py").unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .map(|l| l.split("  ").next().unwrap_or_default())
        .filter(|n| n.starts_with("transformer.") || n.starts_with("lm_head."))
        .flat_map(|n| match n.split_once(", .") {
            // "transformer.h.N.ln_1.weight, .bias" documents both
            Some((w, b)) => vec![w.to_string(), format!("{}.{b}", w.rsplit_once('.').unwrap().0)],
            None => vec![n.to_string()],
        })
        .collect()
}

#[test]
fn the_configs_are_wgpt_type_and_the_classes_are_not() {
    assert_eq!(HfClass::of(&mixed()), HfClass::Wgpt);
    assert_eq!(HfClass::of(&mixed_rope()), HfClass::Wgpt);
    let mut llama = Arch::GPT2;
    wgpt::model::ArchPreset::Llama.apply(&mut llama, 4);
    let mut qwen3 = Arch::GPT2;
    wgpt::model::ArchPreset::Qwen3.apply(&mut qwen3, 4);
    for (arch, class) in [(Arch::GPT2, HfClass::Gpt2), (llama, HfClass::Llama), (qwen3, HfClass::Qwen3)] {
        assert_eq!(HfClass::of(&config(arch)), class);
        assert!(hf::code_files(&config(arch)).is_empty(), "{class:?} travels without code");
    }
}

#[test]
fn an_exported_directory_holds_the_code_and_reads_back_bit_for_bit() {
    for (name, cfg) in [("mixed", mixed()), ("rope", mixed_rope())] {
        let dir = fresh_dir(name);
        let weights = Weights::random(cfg, 3);
        hf::dir::save(&dir, &weights, Some(&tokenizer())).unwrap();
        let want: BTreeSet<String> =
            ["config.json", "model.safetensors", "tokenizer.json"].into_iter().chain(CODE).map(String::from).collect();
        assert_eq!(names_in(&dir), want, "{name}");
        for (file, text) in CODE_FILES {
            assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), text, "{name}: {file}");
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(v["model_type"], "wgpt");
        assert_eq!(v["architectures"], serde_json::json!(["WgptForCausalLM"]));
        assert_eq!(v["auto_map"]["AutoConfig"], "configuration_wgpt.WgptConfig");
        assert_eq!(v["auto_map"]["AutoModelForCausalLM"], "modeling_wgpt.WgptForCausalLM");
        // the classes auto_map names are the files' own
        let text = |f: &str| CODE_FILES.iter().find(|(n, _)| *n == f).unwrap().1;
        assert!(text("configuration_wgpt.py").contains("class WgptConfig(PretrainedConfig):"));
        assert!(text("configuration_wgpt.py").contains("model_type = \"wgpt\""));
        assert!(text("modeling_wgpt.py").contains("class WgptForCausalLM(WgptPreTrainedModel, GenerationMixin):"));

        let (back, tok) = hf::dir::load(&dir).unwrap();
        assert_eq!(back.config, cfg, "{name}: config.json reads back as the config written");
        assert!(bits(&back) == bits(&weights), "{name}: the weights read back differ");
        assert_eq!(tok.unwrap().vocab_size(), cfg.vocab_size);
        let ids: Vec<u32> = (0..11).map(|i| (i * 7 + 3) % cfg.vocab_size as u32).collect();
        if let (Some(a), Some(b)) = (logits(&weights, &ids), logits(&back, &ids)) {
            let differ = a.iter().zip(&b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
            println!("{name}: {} logits, {differ} differ in any bit", a.len());
            assert_eq!(differ, 0, "{name}: the read-back model's logits differ");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn the_modeling_file_documents_every_saved_name() {
    let documented = documented_names();
    println!("modeling_wgpt.py documents {} names", documented.len());
    for cfg in [mixed(), mixed_rope()] {
        let bytes = hf::save_weights(&Weights::random(cfg, 1)).unwrap();
        let st = hf::parse_safetensors("model.safetensors", &bytes).unwrap();
        for (name, view) in st.tensors() {
            let generic = name.replace(".h.0.", ".h.N.").replace(".h.1.", ".h.N.");
            assert!(documented.contains(&generic), "{name} {:?} is not in modeling_wgpt.py's table", view.shape());
        }
    }
    // nn.Linear [out, in]: c_attn's rows are q | k | v of (NH + 2KV)·hs
    let cfg = mixed_rope();
    let bytes = hf::save_weights(&Weights::random(cfg, 1)).unwrap();
    let st = hf::parse_safetensors("model.safetensors", &bytes).unwrap();
    let shape = |n: &str| st.tensor(n).unwrap().shape().to_vec();
    assert_eq!(shape("transformer.h.0.attn.c_attn.weight"), [(4 + 2) * 12, 32]);
    assert_eq!(shape("transformer.h.0.attn.c_proj.weight"), [32, 4 * 12]);
    assert_eq!(shape("transformer.h.0.attn.q_norm.weight"), [12]);
    assert_eq!(shape("transformer.h.0.mlp.c_fc.weight"), [4 * 32, 32]);
}

#[test]
fn the_page_export_carries_the_code_only_for_wgpt_type() {
    let names = |cfg: Gpt2Config| -> Vec<&str> {
        hf::files(&Weights::random(cfg, 1), &tokenizer()).unwrap().into_iter().map(|(n, _)| n).collect()
    };
    let mut llama = Arch::GPT2;
    wgpt::model::ArchPreset::Llama.apply(&mut llama, 4);
    for (arch, what) in [(Arch::GPT2, "GPT-2"), (Arch { tied: false, ..Arch::GPT2 }, "GPT-2 untied"), (llama, "Llama")]
    {
        assert_eq!(names(config(arch)), ["config.json", "model.safetensors", "tokenizer.json"], "{what}");
    }
    let files = hf::files(&Weights::random(mixed(), 1), &tokenizer()).unwrap();
    let got: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        got,
        ["config.json", "model.safetensors", "tokenizer.json", "configuration_wgpt.py", "modeling_wgpt.py"]
    );
    for (file, text) in CODE_FILES {
        assert_eq!(files.iter().find(|(n, _)| *n == file).unwrap().1, text.as_bytes());
    }
}

/// A run's files for `cfg` (a training state of no real run: the format does not read it).
fn run_files(cfg: Gpt2Config) -> RunFiles {
    let weights = Weights::random(cfg, 2);
    let checkpoint = CheckpointFiles {
        config_json: hf::config_json(&cfg),
        model: hf::save_weights(&weights).unwrap(),
        tokenizer_json: tokenizer().to_json().unwrap(),
        state: vec![1, 2, 3],
    };
    RunFiles { checkpoint, metrics: Metrics::default(), corpus: Some("a lazy dog\n".into()) }
}

fn zip_names(bytes: &[u8]) -> BTreeSet<String> {
    let zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    zip.file_names().map(|n| n.unwrap().to_string()).collect()
}

#[test]
fn run_zips_and_directories_carry_the_code_only_for_wgpt_type() {
    let code: BTreeSet<String> = CODE.into_iter().map(String::from).collect();
    for (cfg, what) in [(mixed(), "mixed"), (config(Arch::GPT2), "GPT-2")] {
        let files = run_files(cfg);
        let zip = archive::write(&files.named()).unwrap();
        let names = zip_names(&zip);
        let wgpt_type = HfClass::of(&cfg) == HfClass::Wgpt;
        assert_eq!(names.is_superset(&code), wgpt_type, "{what}: {names:?}");
        assert_eq!(names.intersection(&code).count(), if wgpt_type { 2 } else { 0 }, "{what}: {names:?}");
        // the zip reads back (its code entries left alone) as the run it was
        let back = archive::read("run.zip", &zip).unwrap();
        assert_eq!(back.checkpoint.config_json, files.checkpoint.config_json);
        assert!(back.checkpoint.model == files.checkpoint.model, "{what}: the weights differ");

        let dir = fresh_dir(&format!("run-{what}"));
        run_dir::commit(&dir, &files.named(), Duration::ZERO).unwrap();
        assert_eq!(names_in(&dir).is_superset(&code), wgpt_type, "{what}: {:?}", names_in(&dir));
        run_dir::read(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn an_interrupted_commit_rolls_the_code_forward() {
    let dir = fresh_dir("rolled");
    std::fs::create_dir_all(&dir).unwrap();
    let files = run_files(mixed());
    // every file of the commit written as .NAME.tmp and the commit point reached, no rename yet
    for (name, bytes) in files.named() {
        std::fs::write(dir.join(format!(".{name}.tmp")), bytes).unwrap();
    }
    let names: Vec<&str> = files.named().iter().map(|(n, _)| *n).collect();
    std::fs::write(dir.join(".commit"), serde_json::to_vec(&names).unwrap()).unwrap();
    run_dir::read(&dir).unwrap();
    let left = names_in(&dir);
    assert!(left.iter().all(|n| !n.starts_with('.')), "temporary files left: {left:?}");
    for (file, text) in CODE_FILES {
        assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), text);
    }
    // one that never reached its commit point leaves no temporary code file either
    std::fs::write(dir.join(".modeling_wgpt.py.tmp"), "half").unwrap();
    run_dir::finish(&dir).unwrap();
    assert!(!dir.join(".modeling_wgpt.py.tmp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// config.json as transformers' `save_pretrained` writes a loaded wgpt model back (its own keys
/// added: dtype, transformers_version), from check_modeling_wgpt.py's mixed run.
const RESAVED: &str = r#"{
  "architectures": ["WgptForCausalLM"],
  "auto_map": {
    "AutoConfig": "configuration_wgpt.WgptConfig",
    "AutoModelForCausalLM": "modeling_wgpt.WgptForCausalLM"
  },
  "bias": false,
  "bos_token_id": 64,
  "dtype": "float32",
  "eos_token_id": 64,
  "head_dim": 32,
  "intermediate_size": 256,
  "logit_softcap": 15.0,
  "mlp": "relu2",
  "model_type": "wgpt",
  "n_embd": 64,
  "n_head": 2,
  "n_kv_head": 2,
  "n_layer": 2,
  "n_positions": 32,
  "norm": "rmsnorm",
  "norm_eps": 1e-05,
  "positions": "none",
  "qk_norm": false,
  "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "tied": false,
  "transformers_version": "5.25.0",
  "vocab_size": 65
}"#;

#[test]
fn our_reader_imports_wgpt_configs_with_auto_map() {
    let cfg = hf::parse_config(RESAVED).unwrap();
    let want = Gpt2Config {
        n_layer: 2,
        n_head: 2,
        n_embd: 64,
        block_size: 32,
        vocab_size: 65,
        arch: Arch {
            positions: Positions::Off,
            norm: Norm::RmsNorm,
            mlp: Mlp::Relu2,
            bias: false,
            tied: false,
            logit_softcap: Some(15.0),
            ..Arch::GPT2
        },
    };
    assert_eq!(cfg, want);
    // and what wgpt writes reads back as itself
    for c in [mixed(), mixed_rope()] {
        assert_eq!(hf::parse_config(&hf::config_json(&c)).unwrap(), c);
    }
}

/// `wgpt train --out DIR` of a mixed combination writes the code beside each checkpoint, and
/// `wgpt export-run` zips it.
#[test]
fn wgpt_train_out_and_export_run_carry_the_code() {
    if common::shared_kernels().is_none() {
        return;
    }
    let dir = fresh_dir("train");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).output().unwrap();
        assert!(out.status.success(), "wgpt {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let d = dir.to_str().unwrap();
    let flags = ["--positions", "none", "--norm", "rmsnorm", "--mlp", "relu2", "--no-bias", "--untied"];
    let mut args = vec!["train", "--preset", "tiny", "--task", "reverse:max=6", "--max-iters", "2", "--out", d];
    args.extend(flags);
    args.extend(["--logit-softcap", "15"]);
    run(&args);
    let names = names_in(&dir);
    assert!(CODE.iter().all(|c| names.contains(*c)), "{names:?}");
    let (weights, _) = hf::dir::load(&dir).unwrap();
    assert_eq!(HfClass::of(&weights.config), HfClass::Wgpt);
    let zip = dir.with_extension("zip");
    run(&["export-run", d, zip.to_str().unwrap()]);
    let in_zip = zip_names(&std::fs::read(&zip).unwrap());
    assert!(CODE.iter().all(|c| in_zip.contains(*c)), "{in_zip:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&zip).unwrap();
}
