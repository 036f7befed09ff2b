//! The logit lens of the HF tiny GPT-2 against transformers' `output_hidden_states` run in
//! float64 (tests/fixtures/make_logit_lens.py): every layer's top-5 next tokens at the last
//! position and every cell's top-1 token, with their probabilities.

mod common;

use wgpt::lens::Lens;
use wgpt::model::Gpt2;

#[test]
fn equals_transformers_hidden_states() {
    let Some(d) = common::shared_data() else { return };
    let Some(k) = common::shared_kernels() else { return };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/logit_lens_tiny.json");
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = d.join("hf-tiny-gpt2");
    let (weights, tokenizer) = wgpt::hf::dir::load(&dir).unwrap();
    let ids = tokenizer.unwrap().encode(want["prompt"].as_str().unwrap()).unwrap();
    let want_ids: Vec<u32> = serde_json::from_value(want["ids"].clone()).unwrap();
    assert_eq!(ids, want_ids, "tokenizer ids differ from the fixture's");
    let model = Gpt2::new(k, &weights).unwrap();
    let mut lens = Lens::default();
    let got = pollster::block_on(lens.run(&model, &ids, 5)).unwrap();
    let layers = want["layers"].as_array().unwrap();
    assert_eq!(got.layers.len(), model.config.n_layer + 1);
    assert_eq!(got.layers.len(), layers.len());
    let vec = |w: &serde_json::Value, key: &str| -> Vec<f64> { serde_json::from_value(w[key].clone()).unwrap() };
    // probabilities within 1e-4 relative (the issue asks 1e-4 absolute; this random model's
    // probabilities are all about 2e-5, where that would test nothing)
    let tol = 1e-4;
    let (mut worst, mut at) = (0.0f64, String::new());
    let mut check = |what: String, got: f32, want: f64| {
        let e = (got as f64 - want).abs() / want;
        assert!(e <= tol, "{what}: p {got:e}, transformers {want:e} (relative error {e:.2e})");
        if e > worst {
            (worst, at) = (e, what);
        }
    };
    for (g, w) in got.layers.iter().zip(layers) {
        let l = g.layer;
        let top_ids: Vec<u32> = serde_json::from_value(w["top_ids"].clone()).unwrap();
        assert_eq!(g.top.iter().map(|t| t.0).collect::<Vec<_>>(), top_ids, "layer {l}: top-5 ids");
        for (i, (&(_, p), want_p)) in g.top.iter().zip(vec(w, "top_p")).enumerate() {
            check(format!("layer {l} top {i}"), p, want_p);
        }
        let cell_ids: Vec<u32> = serde_json::from_value(w["cell_ids"].clone()).unwrap();
        let (cell_p, cell_p2) = (vec(w, "cell_p"), vec(w, "cell_p2"));
        assert_eq!(g.cells.len(), ids.len());
        for (pos, &(id, p)) in g.cells.iter().enumerate() {
            // a cell whose two best tokens are closer than float32 can tell may go either way
            if (cell_p[pos] - cell_p2[pos]) / cell_p[pos] > 1e-5 {
                assert_eq!(id, cell_ids[pos], "layer {l} position {pos}: top-1 id");
            }
            check(format!("layer {l} position {pos} top-1"), p, cell_p[pos]);
        }
    }
    // the last layer is the model's own distribution: its top-1 is greedy decoding's first token
    let st_bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    assert_eq!(got.layers[model.config.n_layer].top[0].0, common::i32_tensor(&st, "greedy")[0]);
    // the plan is kept for the same length and replaced for another; bad lengths are refused
    let again = pollster::block_on(lens.run(&model, &ids, 5)).unwrap();
    assert_eq!(again, got, "a second run of the same prompt");
    let short = pollster::block_on(lens.run(&model, &ids[..3], 2)).unwrap();
    for (a, b) in short.layers.iter().zip(&got.layers) {
        for (x, y) in a.cells.iter().zip(&b.cells[..3]) {
            assert!(
                x.0 == y.0 && (x.1 - y.1).abs() <= 1e-5 * y.1,
                "causal: a prefix's cells are the same: {x:?} vs {y:?}"
            );
        }
    }
    assert!(pollster::block_on(lens.run(&model, &[], 5)).is_err());
    let long = vec![1u32; model.config.block_size + 1];
    let e = pollster::block_on(lens.run(&model, &long, 5)).unwrap_err().to_string();
    assert!(e.contains("context"), "{e}");
    println!(
        "{} layers x {} positions equal transformers' top-5 and top-1 ids; worst probability error {worst:.2e} relative ({at})",
        got.layers.len(),
        ids.len()
    );
}
