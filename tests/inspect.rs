//! The look inside's other numbers, from the logit lens' forward pass (the page shows them beside
//! the lens): the model's next-token logits after the prompt against transformers' for the HF tiny
//! GPT-2, with the sampling bars they feed, and every head's attention probabilities of each layer
//! against the CPU reference attention on the same layer input.

mod common;

use wgpt::generate::{sampling_distribution, SampleConfig};
use wgpt::lens::{top_k, Lens};
use wgpt::model::Gpt2;

#[test]
fn next_token_logits_and_every_heads_attention() {
    let Some(d) = common::shared_data() else {
        return;
    };
    let Some(k) = common::shared_kernels() else {
        return;
    };
    let dir = d.join("hf-tiny-gpt2");
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = common::i32_tensor(&st, "ids");
    let logits = wgpt::hf::to_f32("logits", &st.tensor("logits").unwrap()).unwrap();
    let (weights, _) = wgpt::hf::dir::load(&dir).unwrap();
    let model = Gpt2::new(k, &weights).unwrap();
    let (t, v, c, nh) = (ids.len(), model.config.vocab_size, model.config.n_embd, model.config.n_head);
    let mut lens = Lens::default();
    let got = pollster::block_on(lens.run(&model, &ids, 5)).unwrap();

    // the model's own logits after the last position: transformers' last row
    let want = &logits[(t - 1) * v..];
    let cl =
        wgpt::cpu::check_close("next-token logits", &got.logits, want, 1e-5, 1e-4).unwrap_or_else(|m| panic!("{m}"));
    let top = |x: &[f32]| top_k(x, 10).into_iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(top(&got.logits), top(want), "top-10 tokens differ from transformers'");
    // the sampling bars read them: at temperature 1 without cuts, before = after = softmax
    let d = sampling_distribution(&got.logits, &SampleConfig { temperature: 1.0, ..SampleConfig::greedy(1) }).unwrap();
    let (id, p) = top_k(want, 1)[0];
    assert!((d.before[id as usize] - p).abs() <= 1e-4 * p && d.after[id as usize] == d.before[id as usize]);

    // every head of every layer: the CPU reference on the GPU's own qkv of that layer
    let f = model.forward_plan(1, t).unwrap();
    model.forward(&f, &ids, None).unwrap();
    let mut worst = 0.0f32;
    for layer in 0..model.config.n_layer {
        let att_got = pollster::block_on(lens.attention(&model, layer)).unwrap();
        let qkv = pollster::block_on(model.kernels.gpu.read(&f.acts.qkv[layer])).unwrap();
        let (mut out, mut att) = (vec![0.0; t * c], vec![0.0; nh * t * t]);
        let io = wgpt::cpu::AttnFwd { out: &mut out, att: &mut att, qkv: &qkv, drop: None };
        wgpt::cpu::attention_forward(io, 1, t, nh, nh, c / nh);
        let ca = wgpt::cpu::check_close(&format!("layer {layer} attention"), &att_got, &att, 1e-6, 1e-4)
            .unwrap_or_else(|m| panic!("{m}"));
        worst = worst.max(ca.max_abs);
        for (r, row) in att_got.chunks(t).enumerate() {
            let i = r % t;
            let sum: f32 = row.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-5 && row[i + 1..].iter().all(|&a| a == 0.0),
                "head {} row {i}: {row:?}",
                r / t
            );
        }
    }
    let e = pollster::block_on(lens.attention(&model, model.config.n_layer)).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert!(pollster::block_on(Lens::default().attention(&model, 0)).is_err(), "no run, no attention");
    println!(
        "next-token logits equal transformers' (max abs err {:.2e}); attention of {} layers x {nh} heads max abs err {worst:.2e}",
        cl.max_abs, model.config.n_layer
    );
}
