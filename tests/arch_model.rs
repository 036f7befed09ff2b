//! Models with the architecture switches the kernels run (RMSNorm, no biases, an untied head,
//! no learned positions, the logit softcap, ReLU², SwiGLU, an intermediate_size of any width;
//! alone and mixed): the GPU forward against a plain CPU model built from src/cpu's references,
//! the KV-cache decoder against full forwards, training that resumes bit for bit, and their
//! Hugging Face files read back as the same model.

mod common;

use wgpt::cpu;
use wgpt::generate::Decoder;
use wgpt::model::{Arch, Gpt2, Gpt2Config, HfClass, Mlp, Norm, Positions, Weights};
use wgpt::run::{DataSource, Run, RunConfig};
use wgpt::tokenizer::Tokenizer;
use wgpt::train::TrainConfig;

fn cfg(arch: Arch) -> Gpt2Config {
    Gpt2Config { n_layer: 2, n_head: 3, n_embd: 24, block_size: 9, vocab_size: 37, arch }
}

/// Each switch alone, then all of them together: twice, with ReLU² and with SwiGLU at an odd
/// intermediate_size (the last two are the mixed models).
fn arches() -> Vec<(&'static str, Arch)> {
    let g = Arch::GPT2;
    let mixed = Arch {
        norm: Norm::RmsNorm,
        bias: false,
        tied: false,
        positions: Positions::Off,
        logit_softcap: Some(15.0),
        mlp: Mlp::Relu2,
        ..g
    };
    vec![
        ("rmsnorm", Arch { norm: Norm::RmsNorm, norm_eps: 1e-6, ..g }),
        ("no bias", Arch { bias: false, ..g }),
        ("untied", Arch { tied: false, ..g }),
        ("no positions", Arch { positions: Positions::Off, ..g }),
        ("softcap", Arch { logit_softcap: Some(2.0), ..g }),
        ("relu2", Arch { mlp: Mlp::Relu2, ..g }),
        ("swiglu", Arch { mlp: Mlp::SwiGlu, ..g }),
        ("gelu, I 29", Arch { intermediate_size: Some(29), ..g }),
        ("relu2, I 50", Arch { mlp: Mlp::Relu2, intermediate_size: Some(50), ..g }),
        ("swiglu, I 13", Arch { mlp: Mlp::SwiGlu, intermediate_size: Some(13), ..g }),
        ("mixed", mixed),
        ("mixed swiglu, I 13", Arch { mlp: Mlp::SwiGlu, intermediate_size: Some(13), ..mixed }),
    ]
}

/// The two mixed models: ReLU² and SwiGLU at an odd intermediate_size.
fn mixed() -> Vec<(&'static str, Arch)> {
    arches().split_off(arches().len() - 2)
}

/// The model's logits (B·T, V) on the CPU: llm.c's forward, layer by layer, from the weights
/// by name (a tensor the architecture lacks is simply not there).
fn cpu_logits(w: &Weights, ids: &[u32], b: usize, t: usize) -> Vec<f32> {
    let c = &w.config;
    let (ch, nh, v, n) = (c.n_embd, c.n_head, c.vocab_size, b * t);
    let (i, fc_width) = (c.intermediate_size(), c.mlp_width());
    let specs = c.param_specs();
    let get = |name: &str| specs.iter().position(|(s, _)| s == name).map(|i| w.tensors[i].as_slice());
    let norm = |x: &[f32], prefix: &str| -> Vec<f32> {
        let weight = get(&format!("{prefix}.weight")).unwrap();
        let (mut out, mut mean, mut rstd) = (vec![0.0; x.len()], vec![0.0; n], vec![0.0; n]);
        match c.arch.norm {
            Norm::RmsNorm => {
                let io = cpu::RmsNormFwd { out: &mut out, rstd: &mut rstd, inp: x, weight };
                cpu::rmsnorm_forward(io, n, ch, c.arch.norm_eps)
            }
            Norm::LayerNorm => {
                let zero = vec![0.0; ch];
                let bias = get(&format!("{prefix}.bias")).unwrap_or(&zero);
                let io = cpu::LayerNormFwd { out: &mut out, mean: &mut mean, rstd: &mut rstd, inp: x, weight, bias };
                cpu::layernorm_forward(io, n, ch)
            }
        }
        out
    };
    let linear = |x: &[f32], prefix: &str, k: usize, m: usize| -> Vec<f32> {
        let mut out = vec![0.0; n * m];
        let weight = get(&format!("{prefix}.weight")).unwrap();
        cpu::matmul_forward(&mut out, x, weight, get(&format!("{prefix}.bias")), n, k, m);
        out
    };
    let zero_wpe = vec![0.0; t * ch];
    let mut x = vec![0.0; n * ch];
    cpu::encoder_forward(&mut x, ids, get("wte.weight").unwrap(), get("wpe.weight").unwrap_or(&zero_wpe), n, t, ch);
    for l in 0..c.n_layer {
        let h = |s: &str| format!("h.{l}.{s}");
        let qkv = linear(&norm(&x, &h("ln_1")), &h("attn.c_attn"), ch, 3 * ch);
        let (mut att_out, mut att) = (vec![0.0; n * ch], vec![0.0; b * nh * t * t]);
        cpu::attention_forward(
            cpu::AttnFwd { out: &mut att_out, att: &mut att, qkv: &qkv, drop: None },
            b,
            t,
            nh,
            nh,
            ch / nh,
        );
        let mut x2 = vec![0.0; n * ch];
        cpu::residual_forward(&mut x2, &x, &linear(&att_out, &h("attn.c_proj"), ch, ch));
        let fc = linear(&norm(&x2, &h("ln_2")), &h("mlp.c_fc"), ch, fc_width);
        let mut act = vec![0.0; n * i];
        match c.arch.mlp {
            Mlp::Gelu => cpu::gelu_forward(&mut act, &fc),
            Mlp::Relu2 => cpu::relu2_forward(&mut act, &fc),
            Mlp::SwiGlu => cpu::swiglu_forward(&mut act, &fc, i),
        }
        cpu::residual_forward(&mut x, &x2, &linear(&act, &h("mlp.c_proj"), i, ch));
    }
    let head = get("lm_head.weight").or(get("wte.weight")).unwrap();
    let mut logits = vec![0.0; n * v];
    cpu::matmul_nt_forward(&mut logits, &norm(&x, "ln_f"), head, n, ch, v);
    if let Some(cap) = c.arch.logit_softcap {
        cpu::softcap_forward(&mut logits, cap);
    }
    logits
}

#[test]
fn each_switch_forwards_as_the_cpu_model() {
    let Some(k) = common::shared_kernels() else { return };
    let (b, t) = (2, 7);
    for (i, (what, arch)) in arches().into_iter().enumerate() {
        let mut w = Weights::random(cfg(arch), 20 + i as u64);
        // norm weights and biases away from 1 and 0, so that a norm or bias read wrongly shows
        let mut rng = common::Rng::new(i as u64);
        for ((name, _), t) in w.config.param_specs().iter().zip(&mut w.tensors) {
            if name.contains("ln_") || name.ends_with(".bias") {
                t.iter_mut().for_each(|x| *x += rng.vec(1, -0.3, 0.3)[0]);
            }
        }
        let want_params = w.config.param_specs().len();
        let model = Gpt2::new(k.clone(), &w).unwrap();
        let ids = rng.ids(b * t, 37);
        let f = model.forward_plan(b, t).unwrap();
        model.forward(&f, &ids, None).unwrap();
        let got = pollster::block_on(k.gpu.read(&f.acts.logits)).unwrap();
        let want = cpu_logits(&w, &ids, b, t);
        let c = cpu::check_close(&format!("{what} logits"), &got, &want, 1e-4, 1e-4).unwrap_or_else(|m| panic!("{m}"));
        println!(
            "{what}: {want_params} tensors, {} parameters, logits max abs err {:.2e}",
            w.config.num_params(),
            c.max_abs
        );
    }
}

#[test]
fn the_decoder_of_a_mixed_model_equals_full_forwards() {
    let Some(k) = common::shared_kernels() else { return };
    for (what, arch) in mixed() {
        let model = Gpt2::new(k.clone(), &Weights::random(cfg(arch), 3)).unwrap();
        let mut dec = Decoder::new(&model).unwrap();
        let tokens = common::Rng::new(4).ids(12, 37);
        dec.prefill(&model, &tokens[..3]).unwrap();
        let mut worst = 0.0f32;
        for n in 3..=tokens.len() {
            if n > 3 {
                dec.push(&model, tokens[n - 1]).unwrap();
            }
            let window = &tokens[n.saturating_sub(9)..n];
            let got = pollster::block_on(dec.logits(&model)).unwrap();
            let f = model.forward_plan(1, window.len()).unwrap();
            model.forward(&f, window, None).unwrap();
            let want = pollster::block_on(k.gpu.read_range(&f.acts.logits, (window.len() - 1) * 37, 37)).unwrap();
            let c = cpu::check_close(&format!("{what}: decoder after {n} tokens"), &got, &want, 1e-4, 1e-4)
                .unwrap_or_else(|m| panic!("{m}"));
            worst = worst.max(c.max_abs);
        }
        println!("{what}, KV cache vs full forward through the window slide: max abs err {worst:.2e}");
    }
}

fn text() -> String {
    "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs!\n".repeat(40)
}

fn run_config(model: Gpt2Config) -> RunConfig {
    let train = TrainConfig {
        batch_size: 4,
        seq_len: 9,
        grad_accum: 2,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_iters: 3,
        lr_decay_iters: 16,
        ..TrainConfig::default()
    };
    let (data, tokenizer) = (DataSource::Text("pangrams".into()), "char".into());
    RunConfig {
        model,
        train,
        max_iters: 16,
        eval_interval: 8,
        eval_iters: 2,
        log_interval: 1,
        seed: 7,
        data,
        tokenizer,
    }
}

/// 16 steps straight equal 8 + a checkpoint + a fresh run restored from it + 8, bit for bit, for
/// each mixed model (RMSNorm, no biases, untied, no positions, softcap 15, ReLU² or SwiGLU at
/// I = 13); the checkpoint's config.json is wgpt's model type and reads back as the same config.
#[test]
fn a_mixed_run_resumes_exactly() {
    let Some(k) = common::shared_kernels() else { return };
    for (what, arch) in mixed() {
        let tok = Tokenizer::char_level(&text()).unwrap();
        let model = Gpt2Config { vocab_size: tok.vocab_size(), ..cfg(arch) };
        let weights = Weights::random(model, 5);
        let new_run = |w: &Weights| Run::new(k.clone(), run_config(model), w, tok.clone(), &text()).unwrap();
        let want = common::step_losses(&mut new_run(&weights), 16);
        let mut first = new_run(&weights);
        let mut got = common::step_losses(&mut first, 8);
        let ckpt = pollster::block_on(first.checkpoint(true)).unwrap();
        drop(first);
        assert!(ckpt.config_json.contains(r#""model_type": "wgpt""#), "{}", ckpt.config_json);
        assert_eq!(wgpt::hf::parse_config(&ckpt.config_json).unwrap(), model, "{what}: config.json reads back");
        let saved = wgpt::hf::load_weights("checkpoint", &ckpt.model, model).unwrap();
        let mut resumed = new_run(&saved);
        resumed.restore(&ckpt.state).unwrap();
        got.extend(common::step_losses(&mut resumed, 8));
        println!("{what}\nstraight: {want:?}\nresumed:  {got:?}");
        assert_eq!(got, want, "{what}: resumed losses differ from an uninterrupted run");
        assert!(want[15] < want[0], "{what}: the loss should fall: {} -> {}", want[0], want[15]);
    }
}

/// An untied GPT-2 saves as GPT2LMHeadModel with tie_word_embeddings false and lm_head.weight
/// beside transformer.*; a mixed model as wgpt's model type; both read back as themselves.
#[test]
fn untied_and_mixed_models_round_trip_through_hf_files() {
    for (what, arch) in arches() {
        let w = Weights::random(cfg(arch), 9);
        let json = wgpt::hf::config_json(&w.config);
        let back = wgpt::hf::parse_config(&json).unwrap();
        assert_eq!(back, w.config, "{what}: {json}");
        let bytes = wgpt::hf::save_weights(&w).unwrap();
        let loaded = wgpt::hf::load_weights(what, &bytes, back).unwrap();
        assert_eq!(loaded.tensors, w.tensors, "{what}");
        let names: Vec<String> =
            wgpt::hf::parse_safetensors(what, &bytes).unwrap().names().into_iter().map(String::from).collect();
        assert_eq!(names.iter().any(|n| n == "lm_head.weight"), !arch.tied, "{what}: {names:?}");
        let class = HfClass::of(&w.config);
        assert!(json.contains(&format!(r#""model_type": "{}""#, class.model_type())), "{what}: {json}");
        println!("{what}: {} ({} tensors)", class.class_name(), names.len());
    }
    let untied = cfg(Arch { tied: false, ..Arch::GPT2 });
    assert_eq!(HfClass::of(&untied), HfClass::Gpt2);
    assert!(wgpt::hf::config_json(&untied).contains(r#""tie_word_embeddings": false"#));
    assert!(
        wgpt::hf::config_json(&cfg(Arch::GPT2)).contains(r#""layer_norm_epsilon": 0.00001,"#),
        "GPT-2's eps as before"
    );
}

/// The untied head's f16 copy and SwiGLU's fused gate|up one: an f16 decoder of the mixed
/// models (products on f16 copies, the head's being lm_head's; an odd I's MLP weights, which
/// have no f16 kernels, stay f32) and of SwiGLU at I = 64 gives the f32 decoder's logits within
/// f16's tolerance.
#[test]
fn an_untied_model_decodes_in_f16() {
    let Some(k) = common::shared_kernels() else { return };
    if !k.gpu.shader_f16() {
        return;
    }
    let models = arches().into_iter().filter(|(what, _)| what.starts_with("mixed") || *what == "swiglu");
    for (what, arch) in models {
        let model = Gpt2::new(k.clone(), &Weights::random(cfg(arch), 11)).unwrap();
        let tokens = common::Rng::new(12).ids(6, 37);
        let logits = |precision| {
            let mut dec = Decoder::with_precision(&model, precision).unwrap();
            assert_eq!(dec.precision().f16(), precision == wgpt::precision::Precision::F16);
            dec.prefill(&model, &tokens).unwrap();
            pollster::block_on(dec.logits(&model)).unwrap()
        };
        let (f32s, f16s) = (logits(wgpt::precision::Precision::F32), logits(wgpt::precision::Precision::F16));
        let c = cpu::check_close(&format!("{what}: f16 vs f32 decoder logits"), &f16s, &f32s, 2e-2, 2e-2)
            .unwrap_or_else(|m| panic!("{m}"));
        assert!(c.max_abs > 0.0, "{what}: the f16 decoder ran on f16 copies");
        println!("{what}, f16 vs f32 decoder logits: max abs err {:.2e}", c.max_abs);
    }
}
