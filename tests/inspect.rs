//! The "look inside" view's numbers: the next-token top 10 of the HF tiny GPT-2 against
//! transformers' logits for the same prompt, and one head's attention probabilities against the
//! CPU reference attention on the same layer input.

mod common;

use wgpt::inspect::{top_k, Inspector};
use wgpt::model::Gpt2;

#[test]
fn next_token_top_k_and_attention() {
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
    let mut inspector = Inspector::default();
    let (layer, head) = (1, 1);
    let got = pollster::block_on(inspector.inspect(&model, &ids, layer, head, 10)).unwrap();

    // next-token probabilities: softmax of transformers' last row of logits, in f64
    let want = top_k(&logits[(t - 1) * v..], 10);
    assert_eq!(got.top.len(), 10);
    let ids_got: Vec<u32> = got.top.iter().map(|p| p.0).collect();
    let ids_want: Vec<u32> = want.iter().map(|p| p.0).collect();
    assert_eq!(ids_got, ids_want, "top-10 tokens differ from transformers'");
    let probs = |x: &[(u32, f32)]| x.iter().map(|p| p.1).collect::<Vec<_>>();
    let cp = wgpt::cpu::check_close("top-10 probabilities", &probs(&got.top), &probs(&want), 0.0, 1e-3)
        .unwrap_or_else(|m| panic!("{m}"));
    assert!(got.top.windows(2).all(|w| w[0].1 >= w[1].1), "most likely first");

    // attention of layer 1, head 1: the CPU reference on the GPU's own qkv of that layer
    let f = model.forward_plan(1, t).unwrap();
    model.forward(&f, &ids, None).unwrap();
    let qkv = pollster::block_on(model.kernels.gpu.read(&f.acts.qkv[layer])).unwrap();
    let (mut out, mut att) = (vec![0.0; t * c], vec![0.0; nh * t * t]);
    wgpt::cpu::attention_forward(&mut out, &mut att, &qkv, None, 1, t, c, nh);
    let ca =
        wgpt::cpu::check_close("attention probabilities", &got.attention, &att[head * t * t..][..t * t], 1e-6, 1e-4)
            .unwrap_or_else(|m| panic!("{m}"));
    for (i, row) in got.attention.chunks(t).enumerate() {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5 && row[i + 1..].iter().all(|&a| a == 0.0), "row {i}: {row:?}");
    }
    // a prompt past the context keeps its last block_size tokens
    let long: Vec<u32> = ids.iter().cycle().take(model.config.block_size + 5).copied().collect();
    let l = pollster::block_on(inspector.inspect(&model, &long, 0, 0, 3)).unwrap();
    assert_eq!(l.ids, long[5..]);
    assert!(pollster::block_on(inspector.inspect(&model, &ids, 2, 0, 3)).is_err(), "layer 2 of 2 is refused");
    println!(
        "top-10 next tokens equal transformers' (probabilities max abs err {:.2e}, p1 = {:.4}); attention L{layer}H{head} max abs err {:.2e}",
        cp.max_abs, got.top[0].1, ca.max_abs
    );
}
