//! The logit lens of a speedrun model (rope, RMSNorm at its eps, ReLU², qk-norm, one KV head for
//! two query heads, an untied head, a logit softcap) against a plain CPU reading of the same
//! forward's hidden states: each layer's (the embeddings', each block's) through the final
//! RMSNorm, lm_head and the softcap, every position's top-1 and the last position's top-5, as the
//! page's look inside shows them. GPT-2's lens is checked against transformers in tests/lens.rs.

mod common;

use wgpt::cpu::{matmul_nt_forward, rmsnorm_forward, softcap_forward, RmsNormFwd};
use wgpt::lens::{top_k, Lens};
use wgpt::model::{ArchPreset, Gpt2, Gpt2Config, Weights};

#[test]
fn speedrun_lens_goes_through_its_norm_head_and_softcap() {
    let Some(k) = common::shared_kernels() else { return };
    let mut cfg = Gpt2Config::preset("tiny").unwrap();
    ArchPreset::Speedrun.apply(&mut cfg.arch, cfg.n_head);
    (cfg.arch.n_kv_head, cfg.arch.logit_softcap, cfg.arch.norm_eps, cfg.vocab_size) = (Some(1), Some(3.0), 1e-6, 37);
    cfg.validate().unwrap();
    let mut weights = Weights::random(cfg, 11);
    let specs = cfg.param_specs();
    let at = |name: &str| specs.iter().position(|(n, _)| n == name).unwrap();
    let (ln_f, head) = (at("ln_f.weight"), at("lm_head.weight"));
    // logits of a few units, so that the cap of 3 bends them, and a final norm that is not all ones
    weights.tensors[head].iter_mut().for_each(|w| *w *= 40.0);
    weights.tensors[ln_f].iter_mut().enumerate().for_each(|(j, w)| *w = 0.5 + (j % 7) as f32 * 0.1);
    let model = Gpt2::new(k, &weights).unwrap();
    let ids: Vec<u32> = (0..13).map(|i| (i * 7 % 37) as u32).collect();
    let got = pollster::block_on(Lens::default().run(&model, &ids, 5)).unwrap();
    // the same forward again, its hidden states read back
    let (t, c, v) = (ids.len(), cfg.n_embd, cfg.vocab_size);
    let f = model.forward_plan(1, t).unwrap();
    model.forward(&f, &ids, None).unwrap();
    let gpu = &model.kernels.gpu;
    let (mut worst, mut capped, mut compared) = (0.0f32, 0usize, 0usize);
    for l in 0..=cfg.n_layer {
        let h = if l == 0 { &f.acts.encoded } else { &f.acts.residual3[l - 1] };
        let h = pollster::block_on(gpu.read_range(h, 0, t * c)).unwrap();
        let (mut normed, mut rstd, mut logits) = (vec![0.0f32; t * c], vec![0.0f32; t], vec![0.0f32; t * v]);
        let io = RmsNormFwd { out: &mut normed, rstd: &mut rstd, inp: &h, weight: &weights.tensors[ln_f] };
        rmsnorm_forward(io, t, c, cfg.arch.norm_eps);
        matmul_nt_forward(&mut logits, &normed, &weights.tensors[head], t, c, v);
        capped += logits.iter().filter(|x| x.abs() > 3.0).count();
        softcap_forward(&mut logits, 3.0);
        let layer = &got.layers[l];
        assert_eq!(layer.layer, l);
        let mut check = |what: String, (gid, gp): (u32, f32), (wid, wp): (u32, f32), second: f32| {
            // a cell whose two best tokens are closer than f32 can tell may go either way
            if (wp - second) / wp > 1e-4 {
                assert_eq!(gid, wid, "{what}: token {gid}, the CPU's {wid}");
            }
            let e = (gp - wp).abs() / wp;
            assert!(e <= 1e-4, "{what}: p {gp:e}, the CPU's {wp:e} (relative error {e:.2e})");
            (worst, compared) = (worst.max(e), compared + 1);
        };
        for pos in 0..t {
            let want = top_k(&logits[pos * v..(pos + 1) * v], 2);
            check(format!("layer {l} position {pos}"), layer.cells[pos], want[0], want[1].1);
        }
        let want = top_k(&logits[(t - 1) * v..], 6);
        for (i, &g) in layer.top.iter().enumerate() {
            check(format!("layer {l} top {i}"), g, want[i], want[i + 1].1);
        }
    }
    assert!(capped > t, "the cap bends too few logits to tell ({capped})");
    println!(
        "{} layers x {t} positions through RMSNorm, the untied lm_head and the softcap ({capped} logits past the \
         cap): {compared} probabilities equal the CPU's, worst relative error {worst:.2e}",
        cfg.n_layer + 1
    );
}
