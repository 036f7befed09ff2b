//! Loading and saving HF model directories: layouts HF writes, and clear errors for the rest.
//! No GPU needed.

mod common;

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use wgpt::hf::{config_json, load_weights, parse_config, save_weights};
use wgpt::model::{Gpt2Config, Weights};

const CFG: Gpt2Config =
    Gpt2Config { n_layer: 2, n_head: 2, n_embd: 8, block_size: 5, vocab_size: 11, arch: wgpt::model::Arch::GPT2 };

fn random_weights(seed: u64) -> Weights {
    let mut rng = common::Rng::new(seed);
    let tensors = CFG.param_specs().iter().map(|(_, s)| rng.vec(s.iter().product(), -1.0, 1.0)).collect();
    Weights { config: CFG, tensors }
}

/// Serializes named f32 tensors, optionally as f16, with extra tensors.
fn file(w: &Weights, prefix: &str, f16: bool, skip: Option<&str>, extra: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = vec![];
    for ((name, shape), data) in CFG.param_specs().iter().zip(&w.tensors) {
        if Some(name.as_str()) == skip {
            continue;
        }
        let (bytes, dt) = if f16 {
            (data.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(), Dtype::F16)
        } else {
            (bytemuck::cast_slice(data).to_vec(), Dtype::F32)
        };
        bufs.push((format!("{prefix}{name}"), shape.clone(), bytes, dt));
    }
    for (name, shape, data) in extra {
        bufs.push((name.to_string(), shape.clone(), bytemuck::cast_slice(data).to_vec(), Dtype::F32));
    }
    let views: Vec<(String, TensorView)> =
        bufs.iter().map(|(n, s, b, d)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, Some(HashMap::from([("format".into(), "pt".into())]))).unwrap()
}

#[test]
fn save_then_load_is_identity() {
    let w = random_weights(1);
    let bytes = save_weights(&w).unwrap();
    let back = load_weights("saved", &bytes, CFG).unwrap();
    assert_eq!(back.tensors, w.tensors);
    assert_eq!(parse_config(&config_json(&CFG)).unwrap(), CFG);
}

#[test]
fn official_layout_without_prefix_with_buffers_and_tied_lm_head() {
    let w = random_weights(2);
    let mask: Vec<f32> = vec![1.0; 25];
    let extra = [
        ("h.0.attn.bias", vec![1, 1, 5, 5], mask.clone()),
        ("h.1.attn.masked_bias", vec![1], vec![-1e4]),
        ("lm_head.weight", vec![11, 8], w.tensors[0].clone()),
    ];
    let back = load_weights("official", &file(&w, "", false, None, &extra), CFG).unwrap();
    assert_eq!(back.tensors, w.tensors);
    let back = load_weights("prefixed", &file(&w, "transformer.", false, None, &[]), CFG).unwrap();
    assert_eq!(back.tensors, w.tensors);
}

#[test]
fn untied_lm_head_is_refused() {
    let w = random_weights(3);
    let extra = [("lm_head.weight", vec![11, 8], vec![0.5; 88])];
    let err = load_weights("untied", &file(&w, "", false, None, &extra), CFG).unwrap_err().to_string();
    assert!(err.contains("lm_head.weight"), "{err}");
}

#[test]
fn f16_tensors_are_converted() {
    let w = random_weights(4);
    let back = load_weights("f16", &file(&w, "transformer.", true, None, &[]), CFG).unwrap();
    for (got, want) in back.tensors.iter().zip(&w.tensors) {
        for (g, x) in got.iter().zip(want) {
            assert_eq!(*g, half::f16::from_f32(*x).to_f32());
        }
    }
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let w = random_weights(5);
    let err = load_weights("m", &file(&w, "", false, Some("h.1.mlp.c_fc.bias"), &[]), CFG).unwrap_err().to_string();
    assert!(err.contains("missing tensor h.1.mlp.c_fc.bias") && err.contains("[32]"), "{err}");
    let other = Gpt2Config { n_embd: 10, ..CFG };
    let err = load_weights("m", &file(&w, "", false, None, &[]), other).unwrap_err().to_string();
    assert!(err.contains("wte.weight") && err.contains("[11, 8]") && err.contains("[11, 10]"), "{err}");
    let hostile = Gpt2Config { n_layer: 1 << 24, ..CFG };
    let err = load_weights("m", &file(&w, "", false, None, &[]), hostile).unwrap_err().to_string();
    assert!(err.contains("far too few") && err.contains("16777216"), "{err}");
    let fewer = Gpt2Config { n_layer: 1, ..CFG };
    let err = load_weights("m", &file(&w, "", false, None, &[]), fewer).unwrap_err().to_string();
    assert!(err.contains("unexpected tensor h.1."), "{err}");
}

#[test]
fn truncated_or_garbage_files_are_errors() {
    let bytes = save_weights(&random_weights(6)).unwrap();
    for cut in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = load_weights("cut", &bytes[..cut], CFG).unwrap_err().to_string();
        assert!(err.contains("not a valid safetensors file"), "{cut}: {err}");
    }
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(load_weights("huge header", &huge, CFG).is_err());
}

#[test]
fn config_errors_name_the_field() {
    let mut v: serde_json::Value = serde_json::from_str(&config_json(&CFG)).unwrap();
    v.as_object_mut().unwrap().remove("n_head");
    let err = parse_config(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("n_head"), "{err}");
    let mut v: serde_json::Value = serde_json::from_str(&config_json(&CFG)).unwrap();
    v["activation_function"] = "relu".into();
    let err = parse_config(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("activation_function"), "{err}");
    let mut v: serde_json::Value = serde_json::from_str(&config_json(&CFG)).unwrap();
    v["n_embd"] = 9.into();
    let err = parse_config(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("multiple of n_head"), "{err}");
    v["n_embd"] = "eight".into();
    let err = parse_config(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("n_embd"), "{err}");
    assert!(parse_config("not json").is_err());
}

#[test]
fn the_shared_official_config_parses() {
    let Some(d) = common::shared_data() else {
        return;
    };
    let text = std::fs::read_to_string(d.join("hf-tiny-gpt2/config.json")).unwrap();
    let c = parse_config(&text).unwrap();
    assert_eq!(
        c,
        Gpt2Config {
            n_layer: 2,
            n_head: 2,
            n_embd: 32,
            block_size: 128,
            vocab_size: 50257,
            arch: wgpt::model::Arch::GPT2
        }
    );
}
