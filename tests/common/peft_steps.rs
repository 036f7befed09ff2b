//! The committed peft fixtures (tests/fixtures/make_lora_parity.py) trained by wgpt: the first
//! step's adapter gradients and adapters after it, and ten losses, against peft + torch.optim's.

use std::sync::Arc;

use wgpt::kernels::Kernels;
use wgpt::model::lora::Targets;
use wgpt::model::{Gpt2, Gpt2Config, LoraConfig, LoraTensors, Weights};
use wgpt::train::{TrainConfig, Trainer};

use super::{assert_close, i32_tensor};

/// Trains the fixture `file` (its bytes, its base `weights` of shape `cfg`) from its adapters
/// under its `lora` and `adamw` metadata for as many steps as it has losses, and checks every
/// one; `peft_name` names our adapter (`lora.h.0.attn.c_attn.lora_A`) as the fixture does.
pub async fn check(
    k: &Arc<Kernels>,
    file: &str,
    bytes: &[u8],
    (weights, cfg): (&Weights, Gpt2Config),
    peft_name: impl Fn(&str) -> String,
) {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let meta =
        |key: &str| -> serde_json::Value { serde_json::from_str(&header.metadata().as_ref().unwrap()[key]).unwrap() };
    let (peft, hyper) = (meta("lora"), meta("adamw"));
    let targets: Vec<&str> = peft["target_modules"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let (rank, alpha) = (peft["r"].as_u64().unwrap() as usize, peft["lora_alpha"].as_f64().unwrap() as f32);
    let lc = LoraConfig { alpha, targets: Targets::parse(&targets.join(",")).unwrap(), ..LoraConfig::new(rank, 0) };
    lc.validate(&cfg).unwrap();
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let f32s = |name: &str| -> Vec<f32> {
        let view = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let specs = lc.specs(&cfg);
    let adapters: Vec<Vec<f32>> = specs.iter().map(|(n, _)| f32s(&peft_name(n))).collect();
    let mut model = Gpt2::new(k.clone(), weights).unwrap();
    model.lora = Some(LoraTensors::upload(&k.gpu, &cfg, lc, &adapters).unwrap());
    let (x, y, xs) = (i32_tensor(&st, "x"), i32_tensor(&st, "y"), st.tensor("x").unwrap().shape().to_vec());
    let h = |key: &str| hyper[key].as_f64().unwrap() as f32;
    let train = TrainConfig {
        batch_size: xs[0],
        seq_len: xs[1],
        lr: h("lr"),
        min_lr: h("lr"),
        warmup_iters: 0,
        lr_schedule: wgpt::train::Schedule::Constant,
        weight_decay: h("weight_decay"),
        beta1: h("beta1"),
        beta2: h("beta2"),
        eps: h("eps"),
        grad_clip: h("grad_clip"),
        lora: Some(lc),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, train).unwrap();
    let want_losses = f32s("expected.losses");
    let batch = vec![(x, y)];
    let mut losses = vec![];
    for step in 0..want_losses.len() {
        trainer.step(&batch).unwrap();
        losses.push(trainer.last_loss().await.unwrap());
        if step > 0 {
            continue;
        }
        let grads = k.gpu.read_many(&trainer.grads.ordered()).await.unwrap();
        let after = trainer.adapters().await.unwrap();
        for (i, (name, _)) in specs.iter().enumerate() {
            let want = f32s(&format!("expected.grad.{}", peft_name(name)));
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_close(&format!("{file} grad {name}"), &grads[i], &want, 1e-4 * scale, 1e-3);
            let want = f32s(&format!("expected.step1.{}", peft_name(name)));
            assert_close(&format!("{file} step1 {name}"), &after[i].1, &want, 1e-6, 1e-5);
        }
    }
    assert_close(&format!("{file} losses"), &losses, &want_losses, 1e-5, 1e-5);
    println!("{file}: {} losses {:.6} -> {:.6}", losses.len(), losses[0], losses[losses.len() - 1]);
}
