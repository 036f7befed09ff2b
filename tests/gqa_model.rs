//! Grouped KV heads (GQA, MQA) and a head size apart from n_embd / n_head in the whole model: the
//! KV-cache decoder equals full forwards over the same tokens, a run trains and resumes bit for
//! bit, and its checkpoint's config.json (wgpt's own model type) reads back as the same config.

mod common;

use std::sync::Arc;

use common::Rng;
use wgpt::generate::Decoder;
use wgpt::kernels::Kernels;
use wgpt::model::{Arch, ArchPreset, Gpt2, Gpt2Config, HfClass, Mlp, Norm, Positions, Weights};
use wgpt::run::{DataSource, Run, RunConfig};
use wgpt::tokenizer::Tokenizer;
use wgpt::train::{TrainConfig, Trainer};

/// 6 heads of 12 over 2 KV heads at a width of 20 (head_dim ≠ n_embd / n_head), MQA: 4 heads
/// of 8 over 1 at a width of 32, and the first with rotary positions (theta 100, so that the
/// angles turn within the 8 positions), that with qk-norm, that with Qwen3's other choices
/// (rmsnorm at eps 1e-6, no biases, an untied head, swiglu at an odd intermediate_size), and the
/// llama preset at 4 heads of 8 over 2 (swiglu at I = 84; tied: LlamaForCausalLM).
fn configs() -> [Gpt2Config; 6] {
    let base = Gpt2Config { n_layer: 2, n_head: 6, n_embd: 20, block_size: 8, vocab_size: 70, arch: Arch::GPT2 };
    let gqa = Arch { n_kv_head: Some(2), head_dim: Some(12), ..Arch::GPT2 };
    let (norm, mlp, intermediate_size) = (Norm::RmsNorm, Mlp::SwiGlu, Some(19));
    let rope = Positions::Rope;
    let qwen3ish = Arch {
        positions: rope,
        qk_norm: true,
        norm,
        norm_eps: 1e-6,
        mlp,
        intermediate_size,
        bias: false,
        tied: false,
        ..gqa
    };
    let mut llama = Gpt2Config { n_head: 4, n_embd: 32, ..base };
    ArchPreset::Llama.apply(&mut llama.arch, 4);
    [
        Gpt2Config { arch: gqa, ..base },
        Gpt2Config { n_head: 4, n_embd: 32, arch: Arch { n_kv_head: Some(1), ..Arch::GPT2 }, ..base },
        Gpt2Config { arch: Arch { positions: Positions::Rope, rope_theta: 100.0, ..gqa }, ..base },
        Gpt2Config { arch: Arch { positions: Positions::Rope, rope_theta: 100.0, qk_norm: true, ..gqa }, ..base },
        Gpt2Config { arch: qwen3ish, ..base },
        llama,
    ]
}

/// The last position's logits of a full forward over `ids` (no cache).
async fn full_forward_last(model: &Gpt2, ids: &[u32]) -> Vec<f32> {
    let v = model.config.vocab_size;
    let f = model.forward_plan(1, ids.len()).unwrap();
    model.forward(&f, ids, None).unwrap();
    model.kernels.gpu.read_range(&f.acts.logits, (ids.len() - 1) * v, v).await.unwrap()
}

/// A 3-token prefill, then one token at a time to 11 on a block of 8 (through 3 slides): every
/// step's logits equal a full forward over the window.
async fn kv_cache(k: Arc<Kernels>) {
    for config in configs() {
        config.validate().unwrap();
        let model = Gpt2::new(k.clone(), &Weights::random(config, 7)).unwrap();
        let mut dec = Decoder::new(&model).unwrap();
        let tokens = Rng::new(3).ids(11, config.vocab_size);
        let mut worst = 0.0f32;
        dec.prefill(&model, &tokens[..3]).unwrap();
        for n in 3..=tokens.len() {
            if n > 3 {
                dec.push(&model, tokens[n - 1]).unwrap();
            }
            let window = &tokens[n.saturating_sub(config.block_size)..n];
            let got = dec.logits(&model).await.unwrap();
            let want = full_forward_last(&model, window).await;
            let c = wgpt::cpu::check_close(&format!("logits after {n} tokens"), &got, &want, 1e-4, 1e-4)
                .unwrap_or_else(|m| panic!("{config:?}: {m}"));
            worst = worst.max(c.max_abs);
        }
        let a = config.attn_dims();
        let rope = config.arch.positions == Positions::Rope;
        let qk = config.arch.qk_norm;
        println!(
            "NH {} KV {} hs {} rope {rope} qk_norm {qk}: KV cache vs full forward, max abs err {worst:.2e}",
            a.nh, a.kv, a.hs
        );
    }
}
gpu_test!(gqa_kv_cache_matches_full_forward, kv_cache);

fn text() -> String {
    "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs!\n".repeat(20)
}

fn run_config(model: Gpt2Config) -> RunConfig {
    RunConfig {
        model,
        train: TrainConfig { batch_size: 2, seq_len: 8, lr: 3e-3, warmup_iters: 2, ..TrainConfig::default() },
        max_iters: 8,
        eval_interval: 4,
        eval_iters: 1,
        log_interval: 1,
        seed: 7,
        data: DataSource::Text("pangrams".into()),
        tokenizer: "char".into(),
    }
}

/// 8 steps straight equal 4 steps + checkpoint + a fresh run restored from it + 4 steps; the
/// checkpoint's config.json is its class's model type (qwen3 for the Qwen3-like model, llama
/// for the preset, wgpt's own for the others: each saved under its class's names) and parses
/// back to the config.
fn trains_and_resumes_exactly(k: &Arc<Kernels>, model: Gpt2Config) {
    let tok = Tokenizer::char_level(&text()).unwrap();
    let model = Gpt2Config { vocab_size: tok.vocab_size(), ..model };
    let new_run = |w: &Weights| Run::new(k.clone(), run_config(model), w, tok.clone(), &text()).unwrap();
    let weights = Weights::random(model, 1);
    let want = common::step_losses(&mut new_run(&weights), 8);
    let mut first = new_run(&weights);
    let mut got = common::step_losses(&mut first, 4);
    let ckpt = pollster::block_on(first.checkpoint(true)).unwrap();
    drop(first);
    let class = HfClass::of(&model);
    let want_class = match (model.arch.mlp, model.arch.qk_norm) {
        (Mlp::SwiGlu, true) => HfClass::Qwen3,
        (Mlp::SwiGlu, false) => HfClass::Llama,
        _ => HfClass::Wgpt,
    };
    assert_eq!(class, want_class, "{model:?}");
    let model_type = format!(r#""model_type": "{}""#, class.model_type());
    assert!(ckpt.config_json.contains(&model_type), "{}", ckpt.config_json);
    assert_eq!(wgpt::hf::parse_config(&ckpt.config_json).unwrap(), model, "config.json reads back");
    let saved = wgpt::hf::load_weights("checkpoint", &ckpt.model, model).unwrap();
    let mut resumed = new_run(&saved);
    resumed.restore(&ckpt.state).unwrap();
    got.extend(common::step_losses(&mut resumed, 4));
    println!("straight: {want:?}\nresumed:  {got:?}");
    assert_eq!(got, want, "resumed losses differ from an uninterrupted run");
    assert!(want[7] < want[0], "the loss should fall: {} -> {}", want[0], want[7]);
}

#[test]
fn gqa_trains_and_resumes_exactly() {
    let Some(k) = common::shared_kernels() else { return };
    trains_and_resumes_exactly(&k, configs()[0]);
}

#[test]
fn rope_trains_and_resumes_exactly() {
    let Some(k) = common::shared_kernels() else { return };
    trains_and_resumes_exactly(&k, configs()[2]);
}

#[test]
fn qk_norm_trains_and_resumes_exactly() {
    let Some(k) = common::shared_kernels() else { return };
    trains_and_resumes_exactly(&k, configs()[3]);
    trains_and_resumes_exactly(&k, configs()[4]);
}

#[test]
fn the_llama_preset_trains_and_resumes_exactly() {
    let Some(k) = common::shared_kernels() else { return };
    trains_and_resumes_exactly(&k, configs()[5]);
}

/// The llama preset at an odd intermediate size in split submits: with a budget every dispatch
/// exceeds, a training step runs a submit per dispatch, then cuts its products over B·T = 256
/// rows (N x C x 2I and N x I x C among them) into slices of rows, and still equals one submit
/// bit for bit (the losses, then every parameter).
#[test]
fn a_split_llama_step_equals_one_submit() {
    let Some(k) = common::shared_kernels() else { return };
    let mut cfg = Gpt2Config { n_layer: 2, n_head: 4, n_embd: 32, block_size: 64, vocab_size: 61, arch: Arch::GPT2 };
    ArchPreset::Llama.apply(&mut cfg.arch, 4);
    cfg.arch.intermediate_size = Some(19);
    let weights = Weights::random(cfg, 5);
    let train =
        TrainConfig { batch_size: 4, seq_len: 64, warmup_iters: 1, lr_decay_iters: 10, ..TrainConfig::default() };
    let trainer = |budget| {
        let mut t = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), train).unwrap();
        t.set_submit_budget(budget);
        t
    };
    let (mut one, mut split) = (trainer(0.0), trainer(1e-9));
    let mut rng = Rng::new(8);
    let mut submits = vec![];
    for step in 0..3 {
        let batch = vec![(rng.ids(4 * 64, 61), rng.ids(4 * 64, 61))];
        one.step(&batch).unwrap();
        split.step(&batch).unwrap();
        submits.push(split.submits().submits);
        let loss = |t: &Trainer| pollster::block_on(t.last_loss()).unwrap().to_bits();
        assert_eq!(loss(&one), loss(&split), "step {step}: the split loss differs");
    }
    assert!(submits[2] > submits[0], "no product was cut into rows: {submits:?} submits");
    let (w1, w2) =
        (pollster::block_on(one.model.weights()).unwrap(), pollster::block_on(split.model.weights()).unwrap());
    for ((name, _), (a, b)) in cfg.param_specs().iter().zip(w1.tensors.iter().zip(&w2.tensors)) {
        let differ = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert_eq!(differ, 0, "{name}: {differ} of {} elements differ from one submit", a.len());
    }
    println!("llama preset, I 19: 3 split steps ({submits:?} submits) equal one submit each, bit for bit");
}
