//! Llama, Qwen3 and wgpt's own model type through the Hugging Face boundary: configs made by
//! transformers (tests/fixtures/hf_arch, written by make_hf_arch.py) read as the right
//! switches, their tensors (sharded f32, bf16) go into the internal fused [in, out] layout and
//! come back out bit for bit, config.json round trips per class, and every unsupported config is
//! refused by name; the forward gives transformers' logits and greedy decoding (the KV-cache
//! decoder, as `wgpt sample` runs it) transformers' `generate` ids.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wgpt::hf::{self, config_json, names, read_config};
use wgpt::model::{Arch, ArchPreset, Gpt2Config, HfClass, Mlp, Norm, Positions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_arch").join(name)
}

fn config_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("config.json")).unwrap()
}

fn config_value(dir: &Path) -> Value {
    serde_json::from_str(&config_text(dir)).unwrap()
}

/// The file's tensors by name, as f32.
fn file_tensors(dir: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let mut out = HashMap::new();
    for (what, bytes) in hf::dir::read_safetensors(dir).unwrap() {
        let st = hf::parse_safetensors(&what, &bytes).unwrap();
        for (name, view) in st.tensors() {
            out.insert(name.clone(), (view.shape().to_vec(), hf::to_f32(&name, &view).unwrap()));
        }
    }
    out
}

/// The internal tensors read from the fixture directory.
fn internal(dir: &Path, cfg: &Gpt2Config) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let files = hf::dir::read_safetensors(dir).unwrap();
    let parsed: Vec<_> = files.iter().map(|(w, b)| hf::parse_safetensors(w, b).unwrap()).collect();
    hf::read_internal("fixture", &parsed, cfg).unwrap()
}

const LLAMA: Gpt2Config = Gpt2Config {
    n_layer: 2,
    n_head: 6,
    n_embd: 24,
    block_size: 32,
    vocab_size: 29,
    arch: Arch {
        positions: Positions::Rope,
        rope_theta: 10000.0,
        norm: Norm::RmsNorm,
        norm_eps: 1e-5,
        mlp: Mlp::SwiGlu,
        intermediate_size: Some(20),
        n_kv_head: Some(2),
        head_dim: Some(8),
        qk_norm: false,
        bias: true,
        tied: false,
        logit_softcap: None,
    },
};

const QWEN3: Gpt2Config = Gpt2Config {
    n_layer: 2,
    n_head: 4,
    n_embd: 32,
    block_size: 64,
    vocab_size: 37,
    arch: Arch {
        positions: Positions::Rope,
        rope_theta: 1e6,
        norm: Norm::RmsNorm,
        norm_eps: 1e-6,
        mlp: Mlp::SwiGlu,
        intermediate_size: Some(24),
        n_kv_head: Some(1),
        head_dim: Some(16),
        qk_norm: true,
        bias: false,
        tied: true,
        logit_softcap: None,
    },
};

const CASES: [(&str, Gpt2Config, HfClass); 2] =
    [("llama_gqa_untied", LLAMA, HfClass::Llama), ("qwen3_mqa_tied", QWEN3, HfClass::Qwen3)];

#[test]
fn transformers_configs_read_as_their_switches() {
    for (name, want, class) in CASES {
        let cfg = read_config(&config_text(&fixture(name))).unwrap();
        assert_eq!(cfg, want, "{name}");
        assert_eq!(HfClass::of(&cfg), class, "{name}");
    }
}

#[test]
fn older_rope_form_reads_the_same() {
    for (name, want, _) in CASES {
        let mut v = config_value(&fixture(name));
        let theta = v["rope_parameters"]["rope_theta"].clone();
        let o = v.as_object_mut().unwrap();
        o.remove("rope_parameters");
        o.insert("rope_theta".into(), theta);
        o.insert("rope_scaling".into(), Value::Null);
        assert_eq!(read_config(&v.to_string()).unwrap(), want, "{name} with top-level rope_theta");
    }
}

#[test]
fn config_json_round_trips_per_class() {
    for (name, want, _) in CASES {
        let ours: Value = serde_json::from_str(&config_json(&want)).unwrap();
        assert_eq!(read_config(&ours.to_string()).unwrap(), want, "{name}");
        // every key transformers wrote, with its value (the ids and versions are the caller's)
        let theirs = config_value(&fixture(name));
        let skip =
            ["transformers_version", "dtype", "bos_token_id", "eos_token_id", "pad_token_id", "max_window_layers"];
        for (k, v) in theirs.as_object().unwrap() {
            if !skip.contains(&k.as_str()) {
                assert_eq!(ours.get(k), Some(v), "{name}: config.json key {k}");
            }
        }
    }
    let mut speedrun =
        Gpt2Config { n_layer: 2, n_head: 4, n_embd: 32, block_size: 16, vocab_size: 50, arch: Arch::GPT2 };
    ArchPreset::Speedrun.apply(&mut speedrun.arch, 4);
    let untied_gpt2 = Gpt2Config { arch: Arch { tied: false, ..Arch::GPT2 }, ..speedrun };
    let bias_qk = Gpt2Config { arch: Arch { bias: true, ..QWEN3.arch }, ..QWEN3 };
    for (cfg, class) in [(speedrun, HfClass::Wgpt), (untied_gpt2, HfClass::Gpt2), (bias_qk, HfClass::Wgpt)] {
        assert_eq!(HfClass::of(&cfg), class);
        let text = config_json(&cfg);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["model_type"], class.model_type(), "{text}");
        assert_eq!(v["architectures"][0], class.class_name(), "{text}");
        assert_eq!(read_config(&text).unwrap(), cfg, "{text}");
        if class == HfClass::Wgpt {
            assert_eq!(v["auto_map"]["AutoModelForCausalLM"], "modeling_wgpt.WgptForCausalLM", "{text}");
            assert_eq!(v["auto_map"]["AutoConfig"], "configuration_wgpt.WgptConfig", "{text}");
        }
    }
}

/// Every HF tensor goes into the internal layout and comes back bit for bit; spot checks that
/// the layout is the fused, transposed one (and not some other self-consistent one).
#[test]
fn tensors_round_trip_through_the_internal_layout() {
    for (name, cfg, _) in CASES {
        let dir = fixture(name);
        let theirs = file_tensors(&dir);
        let ours = internal(&dir, &cfg);
        let by: HashMap<&str, &[f32]> = ours.iter().map(|(n, _, v)| (n.as_str(), v.as_slice())).collect();
        let back = names::from_internal(&cfg, |n| by.get(n).copied()).unwrap();
        assert_eq!(back.len(), theirs.len(), "{name}: one HF tensor each");
        for (n, shape, values) in &back {
            let (s, v) = &theirs[n];
            assert_eq!(
                (shape, values.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
                (s, v.iter().map(|x| x.to_bits()).collect()),
                "{name}: {n}"
            );
        }
        let (c, hd, i) = (cfg.n_embd, cfg.head_dim(), cfg.intermediate_size());
        let (q, kv) = (cfg.n_head * hd, cfg.n_kv_head() * hd);
        let qkv = q + 2 * kv;
        let attn = by["h.1.attn.c_attn.weight"];
        let fc = by["h.1.mlp.c_fc.weight"];
        let down = by["h.1.mlp.c_proj.weight"];
        let (kp, up, dp) = (
            &theirs["model.layers.1.self_attn.k_proj.weight"].1,
            &theirs["model.layers.1.mlp.up_proj.weight"].1,
            &theirs["model.layers.1.mlp.down_proj.weight"].1,
        );
        for (r, j) in [(0, 0), (c - 1, kv - 1), (5, 3)] {
            assert_eq!(attn[r * qkv + q + j], kp[j * c + r], "{name}: k_proj[{j}, {r}]");
        }
        for (r, j) in [(0, 0), (c - 1, i - 1), (7, 2)] {
            assert_eq!(fc[r * 2 * i + i + j], up[j * c + r], "{name}: up_proj[{j}, {r}]");
            assert_eq!(down[j * c + r], dp[r * i + j], "{name}: down_proj[{r}, {j}]");
        }
        // and through a safetensors file again
        let bytes = hf::tensors::serialize(&back).unwrap();
        let st = hf::parse_safetensors("again", &bytes).unwrap();
        let again = hf::read_internal("again", &[st], &cfg).unwrap();
        assert_eq!(again, ours, "{name}: re-saved file reads the same");
    }
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let dir = fixture("llama_gqa_untied");
    let files = hf::dir::read_safetensors(&dir).unwrap();
    assert_eq!(files.len(), 2, "the llama fixture is sharded");
    let first = hf::parse_safetensors(&files[0].0, &files[0].1).unwrap();
    let err = hf::read_internal("shard 1 only", &[first], &LLAMA).unwrap_err().to_string();
    assert!(err.contains("missing tensor model.layers.1."), "{err}");
    let parsed: Vec<_> = files.iter().map(|(w, b)| hf::parse_safetensors(w, b).unwrap()).collect();
    let wider = Gpt2Config { arch: Arch { intermediate_size: Some(21), ..LLAMA.arch }, ..LLAMA };
    let err = hf::read_internal("wider", &parsed, &wider).unwrap_err().to_string();
    assert!(err.contains("mlp.") && err.contains("[20, 24]") && err.contains("[21, 24]"), "{err}");
    let tied = Gpt2Config { arch: Arch { tied: true, ..LLAMA.arch }, ..LLAMA };
    let err = hf::read_internal("tied", &parsed, &tied).unwrap_err().to_string();
    assert!(err.contains("lm_head.weight") && err.contains("tie_word_embeddings"), "{err}");
    let fewer = Gpt2Config { n_layer: 1, ..LLAMA };
    let err = hf::read_internal("fewer", &parsed, &fewer).unwrap_err().to_string();
    assert!(err.contains("unexpected tensor model.layers.1."), "{err}");
}

#[test]
fn generation_config_eos_tokens() {
    assert_eq!(hf::dir::stop_tokens(&fixture("llama_gqa_untied")).unwrap(), vec![2, 3]);
    assert_eq!(hf::dir::stop_tokens(&fixture("qwen3_mqa_tied")).unwrap(), vec![2]);
    assert_eq!(hf::eos_tokens("{}").unwrap(), Vec::<u32>::new());
    assert_eq!(hf::eos_tokens(r#"{"eos_token_id": null}"#).unwrap(), Vec::<u32>::new());
    let err = hf::eos_tokens(r#"{"eos_token_id": "</s>"}"#).unwrap_err().to_string();
    assert!(err.contains("eos_token_id"), "{err}");
}

/// A change to a transformers config that wgpt cannot run, and a word the refusal must name.
fn refusals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("llama_gqa_untied", json!({"model_type": "mistral"}), "mistral"),
        (
            "llama_gqa_untied",
            json!({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}),
            "yarn",
        ),
        ("llama_gqa_untied", json!({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}), "rope_scaling"),
        ("qwen3_mqa_tied", json!({"use_sliding_window": true, "sliding_window": 16}), "use_sliding_window"),
        ("qwen3_mqa_tied", json!({"layer_types": ["full_attention", "sliding_attention"]}), "sliding_attention"),
        ("llama_gqa_untied", json!({"num_key_value_heads": 4}), "num_key_value_heads"),
        ("llama_gqa_untied", json!({"mlp_bias": false}), "mlp_bias"),
        ("qwen3_mqa_tied", json!({"attention_bias": true}), "attention_bias"),
        ("llama_gqa_untied", json!({"hidden_act": "gelu"}), "hidden_act"),
        ("llama_gqa_untied", json!({"pretraining_tp": 2}), "pretraining_tp"),
        ("llama_gqa_untied", json!({"hidden_size": "wide"}), "hidden_size"),
        ("qwen3_mqa_tied", json!({"model_type": 3}), "model_type"),
    ]
}

#[test]
fn unsupported_configs_are_refused_by_name() {
    for (name, change, word) in refusals() {
        let mut v = config_value(&fixture(name));
        for (k, x) in change.as_object().unwrap() {
            v[k] = x.clone();
        }
        let err = read_config(&v.to_string()).unwrap_err().to_string();
        assert!(err.contains(word), "{name} + {change}: {err}");
    }
}

/// Loading checks the model's own parameter table: the family loads and saves back
/// transformers' tensors.
#[test]
fn load_follows_the_parameter_table() {
    for (name, cfg, _) in CASES {
        let dir = fixture(name);
        cfg.validate().unwrap();
        let (weights, _) = hf::dir::load(&dir).unwrap();
        let saved = hf::save_weights(&weights).unwrap();
        let st = hf::parse_safetensors("saved", &saved).unwrap();
        assert_eq!(hf::read_internal("saved", &[st], &cfg).unwrap(), internal(&dir, &cfg), "{name}");
    }
}

/// wgpt's forward against transformers' f32 logits (expected.safetensors), within 1e-4.
#[test]
fn forward_matches_transformers() {
    let Some(kernels) = common::shared_kernels() else {
        return;
    };
    for (name, _, _) in CASES {
        let fx = common::Fixture::load(&kernels, &fixture(name));
        let (st, model) = (fx.expected(), &fx.model);
        let want = hf::to_f32("logits", &st.tensor("logits").unwrap()).unwrap();
        let ids = common::i64_tensor(&st, "input_ids");
        let f = model.forward_plan(1, ids.len()).unwrap();
        model.forward(&f, &ids, None).unwrap();
        let logits = pollster::block_on(model.kernels.gpu.read(&f.acts.logits)).unwrap();
        let c = wgpt::cpu::check_close(name, &logits, &want, 1e-4, 1e-4).unwrap_or_else(|m| panic!("{m}"));
        println!(
            "{name}: logits max abs err {:.2e}, worst [{}] = {} (transformers {})",
            c.max_abs, c.worst, logits[c.worst], want[c.worst]
        );
    }
}

/// Greedy decoding through the KV cache, as `wgpt sample` runs it (generation_config.json's eos
/// tokens end it, kept in the ids as transformers keeps them), gives transformers' greedy
/// `generate` ids token for token: the Llama's stops at an eos, the Qwen3's runs to its limit.
#[test]
fn greedy_generation_matches_transformers() {
    let Some(kernels) = common::shared_kernels() else {
        return;
    };
    for (name, _, _) in CASES {
        let fx = common::Fixture::load(&kernels, &fixture(name));
        let (st, model) = (fx.expected(), &fx.model);
        let (prompt, want) = (common::i64_tensor(&st, "prompt_ids"), common::i64_tensor(&st, "generated"));
        let stops = hf::dir::stop_tokens(&fixture(name)).unwrap();
        let mut dec = wgpt::generate::Decoder::new(model).unwrap();
        let cfg = wgpt::generate::SampleConfig::greedy(20);
        let got = pollster::block_on(dec.generate(model, &prompt, &cfg, None, |id| !stops.contains(&id))).unwrap();
        println!("{name}: prompt {prompt:?} -> {got:?}");
        assert_eq!(got, want, "{name}: greedy ids differ from transformers'");
    }
}
