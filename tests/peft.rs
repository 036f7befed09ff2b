//! peft LoRA adapters against peft itself (tests/fixtures/lora/, made by make_lora.py): the
//! config and tensors round-trip, the merge equals peft's merge_and_unload, the forward of base +
//! adapter equals PeftModel's logits (GPU), merge-lora's directory and a run directory read back
//! the same, a missing base is named, and every adapter wgpt cannot load is refused with its
//! reason.

mod common;

use std::path::{Path, PathBuf};

use wgpt::hf::peft::dir::{self as peft_dir, Source};
use wgpt::hf::peft::{self, Adapter, PeftConfig};
use wgpt::hf::{self, names::Part};
use wgpt::model::{Gpt2Config, Weights};

const GPT2_BASE: &str = "tests/fixtures/lora/gpt2_base";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora").join(name)
}

/// A fresh directory under the system's temp dir.
fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgpt-peft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Every file of the fixture's adapter (and of the base, named relative to the crate's root),
/// copied to a temp directory with adapter_config.json's base set to `base`.
fn copy_adapter(name: &str, to: &str, base: serde_json::Value) -> PathBuf {
    let d = temp(to);
    std::fs::create_dir_all(&d).unwrap();
    let src = fixture(name);
    std::fs::copy(src.join("adapter_model.safetensors"), d.join("adapter_model.safetensors")).unwrap();
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap()).unwrap();
    c["base_model_name_or_path"] = base;
    std::fs::write(d.join("adapter_config.json"), serde_json::to_string_pretty(&c).unwrap()).unwrap();
    d
}

/// The fixture's ids and PeftModel's logits.
fn expected(dir: &Path) -> (Vec<u32>, Vec<f32>) {
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap().data().chunks_exact(8).map(|b| b[0] as u32).collect();
    (ids, hf::to_f32("logits", &st.tensor("logits").unwrap()).unwrap())
}

/// peft's merge_and_unload state dict (merged.safetensors) in wgpt's parameter order.
fn peft_merged(dir: &Path, like: &Weights) -> Weights {
    let bytes = std::fs::read(dir.join("merged.safetensors")).unwrap();
    let st = hf::parse_safetensors("merged.safetensors", &bytes).unwrap();
    hf::load_files("merged.safetensors", &[st], like.config).unwrap()
}

/// A base's config, read whether or not this build's kernels run it (Llama's SwiGLU may not yet).
fn base_config(base: &str) -> Gpt2Config {
    hf::read_config(&std::fs::read_to_string(fixture(base).join("config.json")).unwrap()).unwrap()
}

/// A base's weights, read without asking whether the kernels run it.
fn base_weights(base: &str) -> Weights {
    let files = hf::dir::read_safetensors(&fixture(base)).unwrap();
    let parsed: Vec<_> = files.iter().map(|(w, b)| hf::parse_safetensors(w, b).unwrap()).collect();
    hf::load_files(base, &parsed, base_config(base)).unwrap()
}

/// Loads the adapter fixture `name` on its base (base_model_name_or_path, relative to the
/// crate's root, where cargo runs tests).
fn load(name: &str) -> (Weights, Option<wgpt::tokenizer::Tokenizer>) {
    Source::resolve(&fixture(name), None).unwrap().load().unwrap()
}

#[test]
fn config_round_trips_byte_for_byte() {
    for name in ["gpt2_adapter", "llama_adapter"] {
        let text = std::fs::read_to_string(fixture(name).join("adapter_config.json")).unwrap();
        let c = PeftConfig::parse(&text).unwrap();
        assert_eq!(c.to_json(), text, "{name}: adapter_config.json written back differs from peft's");
        assert_eq!(PeftConfig::parse(&c.to_json()).unwrap(), c);
    }
    let c = PeftConfig::parse(&std::fs::read_to_string(fixture("gpt2_adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!((c.r, c.lora_alpha, c.lora_dropout, c.scale()), (4, 8.0, 0.05, 2.0));
    assert_eq!(c.target_modules, ["c_attn", "c_proj", "c_fc"]);
    assert_eq!(c.base_model_name_or_path.as_deref(), Some(GPT2_BASE));
    assert!(c.fan_in_fan_out);
}

/// A config wgpt makes has peft's keys (all but peft_version, which peft fills in) and reads back.
#[test]
fn new_config_has_peft_keys() {
    let targets = vec!["c_attn".to_string(), "c_fc".to_string()];
    let gpt2 = base_config("gpt2_base");
    let c = PeftConfig::lora("some/base", &gpt2, 8, 16.0, targets, 0.1);
    assert!(c.fan_in_fan_out);
    assert!(!PeftConfig::lora("b", &base_config("llama_base"), 8, 16.0, vec!["q_proj".into()], 0.0).fan_in_fan_out);
    let text = c.to_json();
    assert_eq!(PeftConfig::parse(&text).unwrap(), c);
    let ours: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gpt2_adapter/adapter_config.json")).unwrap()).unwrap();
    theirs.as_object_mut().unwrap().remove("peft_version");
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&theirs));
    assert!(text.contains("\"lora_alpha\": 16,") && text.contains("\"task_type\": \"CAUSAL_LM\""), "{text}");
}

#[test]
fn tensors_round_trip_bit_for_bit() {
    for (name, base) in [("gpt2_adapter", "gpt2_base"), ("llama_adapter", "llama_base")] {
        let dir = fixture(name);
        let cfg = base_config(base);
        let adapter = peft_dir::read(&dir, &cfg).unwrap();
        let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
        let ours = adapter.to_safetensors().unwrap();
        assert_eq!(ours, bytes, "{name}: adapter_model.safetensors written back differs from peft's");
        let text = adapter.config.to_json();
        assert_eq!(Adapter::read("ours", &text, &ours, &cfg).unwrap(), adapter);
    }
}

/// The Llama sites are column ranges of the fused tensors, in q|k|v and gate|up order.
#[test]
fn llama_sites_are_fused_columns() {
    let cfg = base_config("llama_base");
    let sites = peft::sites::all_sites(&cfg).unwrap();
    let find = |m: &str| sites.iter().find(|s| s.module == m).unwrap_or_else(|| panic!("no {m}"));
    let cols = |m: &str| (find(m).internal.clone(), find(m).part, find(m).in_features, find(m).out_features);
    let c_attn = "h.1.attn.c_attn.weight".to_string();
    let c_fc = "h.1.mlp.c_fc.weight".to_string();
    assert_eq!(cols("model.layers.1.self_attn.q_proj"), (c_attn.clone(), Part::Cols { start: 0, len: 16 }, 16, 16));
    assert_eq!(cols("model.layers.1.self_attn.k_proj"), (c_attn.clone(), Part::Cols { start: 16, len: 8 }, 16, 8));
    assert_eq!(cols("model.layers.1.self_attn.v_proj"), (c_attn, Part::Cols { start: 24, len: 8 }, 16, 8));
    assert_eq!(cols("model.layers.1.mlp.gate_proj"), (c_fc.clone(), Part::Cols { start: 0, len: 20 }, 16, 20));
    assert_eq!(cols("model.layers.1.mlp.up_proj"), (c_fc, Part::Cols { start: 20, len: 20 }, 16, 20));
    let down = cols("model.layers.1.mlp.down_proj");
    assert_eq!(down, ("h.1.mlp.c_proj.weight".into(), Part::Whole, 20, 16));
    assert_eq!(sites.len(), 2 * 7);
    // Qwen3 names its layers as Llama does
    let qwen = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_arch/qwen3_mqa_tied/config.json");
    let qwen = hf::read_config(&std::fs::read_to_string(qwen).unwrap()).unwrap();
    assert_eq!(peft::sites::all_sites(&qwen).unwrap().len(), 2 * 7);
}

/// Our CPU merge against peft's merge_and_unload, tensor by tensor (f32: a few ulps).
#[test]
fn merge_equals_peft_merge_and_unload() {
    for (name, base) in [("gpt2_adapter", "gpt2_base"), ("llama_adapter", "llama_base")] {
        let plain = base_weights(base);
        let mut merged = plain.clone();
        peft::merge(&mut merged, &peft_dir::read(&fixture(name), &plain.config).unwrap()).unwrap();
        let want = peft_merged(&fixture(name), &merged);
        let specs = merged.config.param_specs();
        let mut moved = 0.0f32;
        for (k, (tensor, _)) in specs.iter().enumerate() {
            let c =
                wgpt::cpu::check_close(&format!("{name} {tensor}"), &merged.tensors[k], &want.tensors[k], 1e-6, 1e-6)
                    .unwrap_or_else(|m| panic!("{m}"));
            let d = merged.tensors[k].iter().zip(&plain.tensors[k]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            moved = moved.max(d);
            if c.max_abs > 0.0 {
                eprintln!("{name} {tensor}: max abs err {:.2e} at [{}]", c.max_abs, c.worst);
            }
        }
        // the adapters matter: the merge moves weights far beyond the tolerance
        assert!(moved > 0.05, "{name}: the merge moved no weight by more than {moved}");
    }
}

/// wgpt's forward of base + adapter (merged on load) against PeftModel's f32 logits.
#[test]
fn forward_matches_peft() {
    for (name, base) in [("gpt2_adapter", "gpt2_base"), ("llama_adapter", "llama_base")] {
        if let Err(e) = base_config(base).validate() {
            eprintln!("skipped {name}'s forward: {e}");
            continue;
        }
        let (weights, _) = load(name);
        let Some(kernels) = common::shared_kernels() else {
            return;
        };
        let (ids, want) = expected(&fixture(name));
        let logits = |w: &Weights| {
            let model = wgpt::Gpt2::new(kernels.clone(), w).unwrap();
            let f = model.forward_plan(1, ids.len()).unwrap();
            model.forward(&f, &ids, None).unwrap();
            pollster::block_on(model.kernels.gpu.read(&f.acts.logits)).unwrap()
        };
        let got = logits(&weights);
        let c = wgpt::cpu::check_close(name, &got, &want, 1e-4, 1e-4).unwrap_or_else(|m| panic!("{m}"));
        eprintln!("{name}: worst element [{}] max abs err {:.2e}, max rel err {:.2e}", c.worst, c.max_abs, c.max_rel);
        let (plain, _) = hf::dir::load(&fixture(base)).unwrap();
        let without = wgpt::cpu::closeness(&logits(&plain), &want, 0.0, 0.0);
        assert!(without.max_abs > 0.05, "{name}: the base alone is within {} of peft's logits", without.max_abs);
    }
}

/// merge-lora's directory: a plain HF directory (no adapter) whose weights are the merge's,
/// bit for bit, with the base's tokenizer and generation config.
#[test]
fn merged_directory_reads_back() {
    let out = temp("merged");
    let source = Source::resolve(&fixture("gpt2_adapter"), None).unwrap();
    source.merge_into(&out).unwrap();
    let (merged, tok) = source.load().unwrap();
    assert!(!peft_dir::is_adapter(&out));
    let (back, back_tok) = hf::dir::load(&out).unwrap();
    assert_eq!(back.tensors, merged.tensors);
    assert_eq!(back.config, merged.config);
    assert_eq!(back_tok.unwrap().to_json().unwrap(), tok.unwrap().to_json().unwrap());
    assert_eq!(hf::dir::stop_tokens(&out).unwrap(), [32]);
    let again = source.merge_into(&out).unwrap_err().to_string();
    assert!(again.contains("already exists"), "{again}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The run directory the trainer writes: the adapter, the base's config.json and tokenizer, no
/// base weights; it loads back onto its base as the adapter it was made from.
#[test]
fn run_directory_loads_onto_its_base() {
    let base = fixture("gpt2_base");
    let (base_weights, tok) = hf::dir::load(&base).unwrap();
    let read = peft_dir::read(&fixture("gpt2_adapter"), &base_weights.config).unwrap();
    let targets = vec!["c_attn".into(), "c_proj".into(), "c_fc".into()];
    let config = PeftConfig::lora(GPT2_BASE, &base_weights.config, 4, 8.0, targets, 0.05);
    let mut layers = read.layers.iter();
    let adapter = Adapter::new(config, &base_weights.config, |site| {
        let l = layers.next().unwrap();
        assert_eq!(&l.site, site);
        (l.a.clone(), l.b.clone())
    })
    .unwrap();
    let run = temp("run");
    peft_dir::save(&run, &adapter, tok.as_ref()).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json"]);
    let (ours, _) = Source::resolve(&run, None).unwrap().load().unwrap();
    let (theirs, _) = load("gpt2_adapter");
    assert_eq!(ours.tensors, theirs.tensors);
    // a config.json of another model is refused: the adapter is for a different base
    let mut other = base_weights.config;
    other.vocab_size += 1;
    std::fs::write(run.join("config.json"), hf::config_json(&other)).unwrap();
    let e = Source::resolve(&run, None).unwrap().load().map(|(w, _)| w).unwrap_err().to_string();
    assert!(e.contains("another model than the base"), "{e}");
    // tensors of the wrong length are named
    let bad = Adapter::new(adapter.config.clone(), &base_weights.config, |_| (vec![0.0; 3], vec![0.0; 3]));
    let e = bad.unwrap_err().to_string();
    assert!(e.contains("transformer.h.0.attn.c_attn: lora_A has 3 values"), "{e}");
    let mut big = adapter.config.clone();
    big.r = 257;
    let e = Adapter::new(big, &base_weights.config, |_| unreachable!()).unwrap_err().to_string();
    assert!(e.contains("LoRA rank 257: the rank must be from 1 to 256"), "{e}");
    std::fs::remove_dir_all(&run).unwrap();
}

#[test]
fn missing_base_is_named() {
    let hub = copy_adapter("gpt2_adapter", "hub", "openai-community/gpt2".into());
    let e = Source::resolve(&hub, None).unwrap_err().to_string();
    assert!(e.contains("\"openai-community/gpt2\"") && e.contains("pass --base"), "{e}");
    let (with_base, _) = Source::resolve(&hub, Some(&fixture("gpt2_base"))).unwrap().load().unwrap();
    assert_eq!(with_base.tensors, load("gpt2_adapter").0.tensors);
    let none = copy_adapter("gpt2_adapter", "nobase", serde_json::Value::Null);
    let e = Source::resolve(&none, None).unwrap_err().to_string();
    assert!(e.contains("names no base model") && e.contains("--base"), "{e}");
    let e = Source::resolve(&fixture("gpt2_base"), Some(&fixture("gpt2_base"))).unwrap_err().to_string();
    assert!(e.contains("has no adapter_config.json"), "{e}");
    let e = Source::resolve(&hub, Some(&fixture("gpt2_adapter"))).unwrap_err().to_string();
    assert!(e.contains("itself an adapter"), "{e}");
    for d in [hub, none] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// Every adapter of tests/fixtures/lora/bad is refused, with the reason.
#[test]
fn unsupported_adapters_are_refused() {
    let cases = [
        ("use_dora", "use_dora is true (DoRA"),
        ("use_rslora", "use_rslora is true"),
        ("bias_all", "bias is \"all\""),
        ("rank_pattern", "rank_pattern is {\"c_fc\":2}"),
        ("alpha_pattern", "alpha_pattern is {\"c_attn\":16}"),
        ("modules_to_save", "modules_to_save is [\"ln_f\"]"),
        ("lora_bias", "lora_bias is true"),
        ("ia3", "peft_type is \"IA3\""),
        ("unknown_target", "target_modules names \"q_proj\", which is no linear layer of this GPT2LMHeadModel"),
        ("rank_over_256", "r = 300: the rank must be a whole number from 1 to 256"),
        ("rank_over_dims", "r = 13 is over transformer.h.0.attn.c_attn's min(in, out) = min(12, 36)"),
        ("missing_tensor", "missing tensor base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight"),
        ("wrong_shape", "tensor base_model.model.transformer.h.0.attn.c_attn.lora_A.weight has shape [4, 16]"),
    ];
    let listed: Vec<&str> = cases.iter().map(|c| c.0).collect();
    for entry in std::fs::read_dir(fixture("bad")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(listed.contains(&name.as_str()), "bad/{name} has no case here");
    }
    for (name, reason) in cases {
        let dir = fixture(&format!("bad/{name}"));
        let e = Source::resolve(&dir, Some(&fixture("gpt2_base"))).and_then(|s| s.load()).map(|(w, _)| w).unwrap_err();
        let e = e.to_string();
        assert!(e.contains(reason), "bad/{name}: {e}");
        eprintln!("bad/{name}: {e}");
    }
}

/// The CLI: forward on an adapter directory prints PeftModel's logits, merge-lora writes the
/// merged model, and a missing base is an error naming it.
#[test]
fn cli_forward_and_merge_lora() {
    let Some(_) = common::shared_kernels() else {
        return;
    };
    let wgpt = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).output().unwrap();
    let dir = temp("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let (ids, want) = expected(&fixture("gpt2_adapter"));
    let ids = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let adapter = fixture("gpt2_adapter");
    let merged = dir.join("merged");
    for (model, logits) in [(&adapter, dir.join("adapter.safetensors")), (&merged, dir.join("merged.safetensors"))] {
        if model == &merged {
            let o = wgpt(&["merge-lora", adapter.to_str().unwrap(), merged.to_str().unwrap()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let o =
            wgpt(&["forward", "--model", model.to_str().unwrap(), "--ids", &ids, "--out", logits.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(&logits).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let got = hf::to_f32("logits", &st.tensor("logits").unwrap()).unwrap();
        let c = wgpt::cpu::check_close("cli logits", &got, &want, 1e-4, 1e-4).unwrap_or_else(|m| panic!("{m}"));
        eprintln!("wgpt forward --model {}: max abs err {:.2e}", model.display(), c.max_abs);
    }
    let hub = copy_adapter("gpt2_adapter", "cli-hub", "openai-community/gpt2".into());
    let o = wgpt(&["sample", "--model", hub.to_str().unwrap(), "--max-new-tokens", "2"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(e.contains("openai-community/gpt2") && e.contains("--base"), "{e}");
    for d in [dir, hub] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// Malformed and unsupported adapter_config.json values, each refused naming the field.
#[test]
fn malformed_configs_are_refused() {
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gpt2_adapter/adapter_config.json")).unwrap()).unwrap();
    let with = |key: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[key] = v;
        c.to_string()
    };
    let without = |key: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(key);
        c.to_string()
    };
    let cases = [
        ("{not json".to_string(), "not valid JSON"),
        ("[]".to_string(), "not a JSON object"),
        (without("peft_type"), "missing the field peft_type"),
        (without("r"), "missing the field r"),
        (with("r", "4".into()), "r must be a number, got \"4\""),
        (with("r", 2.5.into()), "r = 2.5: the rank must be a whole number"),
        (with("r", 0.into()), "r = 0: the rank must be a whole number from 1 to 256"),
        (with("lora_alpha", serde_json::Value::Null), "lora_alpha must be a number"),
        (with("target_modules", ".*c_attn".into()), "target_modules is the pattern \".*c_attn\""),
        (with("target_modules", serde_json::json!([])), "target_modules must be a non-empty list"),
        (with("target_modules", serde_json::json!([1])), "target_modules must be a list of module names"),
        (with("task_type", "SEQ_CLS".into()), "task_type is \"SEQ_CLS\""),
        (with("init_lora_weights", "pissa".into()), "init_lora_weights is \"pissa\", an init that rewrites"),
        (with("layers_to_transform", serde_json::json!([0])), "layers_to_transform is [0]"),
        (with("base_model_name_or_path", 3.into()), "base_model_name_or_path must be a string"),
    ];
    for (text, reason) in cases {
        let e = PeftConfig::parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("adapter_config.json: ") && e.contains(reason), "{reason}: {e}");
    }
    for init in [serde_json::json!(false), "gaussian".into(), "eva".into(), "orthogonal".into()] {
        PeftConfig::parse(&with("init_lora_weights", init)).unwrap();
    }
    let cfg = base_config("gpt2_base");
    let attn = PeftConfig::parse(&with("target_modules", serde_json::json!(["attn.c_proj"]))).unwrap();
    let mut own = cfg;
    own.arch.mlp = wgpt::model::Mlp::Relu2;
    let e = peft::sites::select(&own, &attn).unwrap_err().to_string();
    assert!(e.contains("wgpt's own model type"), "{e}");
    let sites = peft::sites::select(&cfg, &attn).unwrap();
    assert_eq!(
        sites.iter().map(|s| s.module.as_str()).collect::<Vec<_>>(),
        ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]
    );
}
