//! Attention with grouped key and value heads (GQA; one KV head is MQA) and head sizes apart from
//! GPT-2's, in every attention kernel: classic and flash (rows, tiled, subgroup) forward and
//! backward against the CPU reference, the flash implementations bit-identical to each other,
//! and the KV-cache decode attention (a prefill, then new tokens over the cache) against the
//! CPU's causal attention over the whole sequence. Shapes are ragged: T = 1, T not a multiple
//! of the tiles, head sizes 8 to 128, 9 heads over 3 (SmolLM2), 16 over 8 at 128 (Qwen3-0.6B).

mod common;
use common::{assert_bits, assert_close};

use std::sync::Arc;

use common::Rng;
use wgpt::cpu;
use wgpt::kernels::{
    AttentionImpl, AttentionKind, AttnBwd, AttnDims, AttnFwd, DecodeAttn, DecodeDims, Kernels, Program,
};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// (B, T, NH, KV, hs): MQA at T = 1; hs 12 with a ragged T; SmolLM2's 9 heads over 3; MQA with a
/// ragged T; hs 128 at T = 64 (Qwen3's head size); a T past the tiled kernels' 64-row blocks;
/// and GPT-2's own grouping (KV = NH) at a head size of 20.
const SHAPES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 1, 4, 1, 8),
    (2, 7, 6, 2, 12),
    (1, 33, 9, 3, 16),
    (2, 19, 4, 1, 8),
    (1, 64, 4, 2, 128),
    (1, 130, 6, 3, 20),
    (2, 5, 3, 3, 20),
];

/// The attention dropout's multipliers (0 or 1/(1−p)) by the GPU's rule, or None for p = 0.
fn drop_mask(seed: u32, site: u32, p: f32, n: usize) -> Option<Vec<f32>> {
    use wgpt::kernels::dropout::keep;
    (p > 0.0).then(|| (0..n).map(|i| if keep(seed, site, i as u32, p) { 1.0 / (1.0 - p) } else { 0.0 }).collect())
}

fn flash(k: &Kernels) -> Vec<AttentionImpl> {
    AttentionKind::Flash.impls().iter().copied().filter(|i| i.runs_on(&k.gpu)).collect()
}

/// The CPU forward: out (B,T,NH·hs) and att (B,NH,T,T).
fn cpu_forward(qkv: &[f32], b: usize, t: usize, d: AttnDims, drop: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    let (mut out, mut att) = (vec![0.0; b * t * d.out_width()], vec![0.0; b * d.nh * t * t]);
    cpu::attention_forward(cpu::AttnFwd { out: &mut out, att: &mut att, qkv, drop }, b, t, d.nh, d.kv, d.hs);
    (out, att)
}

/// The CPU backward from `dqkv0`: dqkv and the score gradients.
fn cpu_backward(
    dqkv0: &[f32],
    dout: &[f32],
    qkv: &[f32],
    att: &[f32],
    shape: (usize, usize, AttnDims),
    drop: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (b, t, d) = shape;
    let (mut dqkv, mut dpreatt) = (dqkv0.to_vec(), vec![0.0; b * d.nh * t * t]);
    let io = cpu::AttnBwd { dqkv: &mut dqkv, dpreatt: &mut dpreatt, dout, qkv, att, drop };
    cpu::attention_backward(io, b, t, d.nh, d.kv, d.hs);
    (dqkv, dpreatt)
}

/// Row-wise logsumexp (B, NH, T) of the causal scores q·k/√hs, query head h over KV head
/// h / (NH / KV), in f64.
fn lse(qkv: &[f32], b: usize, t: usize, d: AttnDims) -> Vec<f32> {
    let (w, hs) = (d.qkv_width(), d.hs);
    let mut out = vec![0.0; b * d.nh * t];
    for bi in 0..b {
        for h in 0..d.nh {
            let kh = h / (d.nh / d.kv);
            for ti in 0..t {
                let q = &qkv[(bi * t + ti) * w + h * hs..][..hs];
                let s: Vec<f64> = (0..=ti)
                    .map(|t2| {
                        let k = &qkv[(bi * t + t2) * w + (d.nh + kh) * hs..][..hs];
                        q.iter().zip(k).map(|(a, b)| (a * b) as f64).sum::<f64>() / (hs as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                out[(bi * d.nh + h) * t + ti] = (m + s.iter().map(|x| (x - m).exp()).sum::<f64>().ln()) as f32;
            }
        }
    }
    out
}

/// The tolerance of a gradient summed over `terms` products: the classic test's 1e-5·√T, with
/// the group's heads counted.
fn grad_atol(terms: usize) -> f32 {
    1e-5 * (terms as f32).sqrt()
}

/// Classic attention forward and backward against the CPU, with and without dropout; the
/// backward's dqkv starts non-zero (accumulation) and its scratch NaN (overwritten).
async fn classic(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(b, t, nh, kv, hs)) in SHAPES.iter().enumerate() {
        let d = AttnDims { nh, kv, hs };
        for p in [0.0, 0.25] {
            let mut rng = Rng::new(2500 + i as u64);
            let qkv = rng.vec(b * t * d.qkv_width(), -2.0, 2.0);
            let dout = rng.vec(b * t * d.out_width(), -1.0, 1.0);
            let dqkv0 = rng.vec(b * t * d.qkv_width(), -1.0, 1.0);
            let seed = g.upload("seed", &[1], &[99u32]);
            let mask = drop_mask(99, 5, p, b * nh * t * t);
            let drop = (p > 0.0).then_some((p, &seed, 5));
            let qkv_t = g.upload("qkv", &[b, t, d.qkv_width()], &qkv);
            let (out, att) = (g.tensor("out", &[b, t, d.out_width()]), g.tensor("att", &[b, nh, t, t]));
            let dqkv = g.upload("dqkv", &[b, t, d.qkv_width()], &dqkv0);
            let dpreatt = g.upload("dpreatt", &[b, nh, t, t], &vec![f32::NAN; b * nh * t * t]);
            let dout_t = g.upload("dout", &[b, t, d.out_width()], &dout);
            let mut prog = Program::default();
            k.attention.forward(
                &mut prog,
                AttentionImpl::Classic,
                AttnFwd { out: &out, saved: &att, qkv: &qkv_t },
                d,
                drop,
            );
            let bwd = AttnBwd { dqkv: &dqkv, scratch: &dpreatt, dout: &dout_t, qkv: &qkv_t, out: &out, saved: &att };
            k.attention.backward(&mut prog, AttentionImpl::Classic, bwd, d, drop);
            g.run(|pass| prog.encode(pass));
            let got = g.read_many(&[&out, &att, &dqkv, &dpreatt]).await.unwrap();
            let (wo, wa) = cpu_forward(&qkv, b, t, d, mask.as_deref());
            let (wq, wp) = cpu_backward(&dqkv0, &dout, &qkv, &wa, (b, t, d), mask.as_deref());
            let what = format!("classic B{b} T{t} NH{nh} KV{kv} hs{hs} dropout {p}");
            assert_close(&format!("{what}: out"), &got[0], &wo, 1e-5, 1e-4);
            assert_close(&format!("{what}: att"), &got[1], &wa, 1e-6, 1e-4);
            assert_close(&format!("{what}: dqkv"), &got[2], &wq, grad_atol(nh / kv * t), 1e-4);
            assert_close(&format!("{what}: dpreatt"), &got[3], &wp, 1e-6, 1e-4);
        }
    }
}
gpu_test!(classic_attention_gqa, classic);

/// Flash attention by every implementation the adapter runs, forward and backward (each from its
/// own forward) against the CPU, with and without dropout: out, lse (against f64), dqkv (from a
/// non-zero start) and D = dout·out (over a NaN scratch); the implementations bit-identical.
async fn flash_all(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(b, t, nh, kv, hs)) in SHAPES.iter().enumerate() {
        let d = AttnDims { nh, kv, hs };
        for p in [0.0, 0.25] {
            let mut rng = Rng::new(2600 + i as u64);
            let qkv = rng.vec(b * t * d.qkv_width(), -2.0, 2.0);
            let dout = rng.vec(b * t * d.out_width(), -1.0, 1.0);
            let dqkv0 = rng.vec(b * t * d.qkv_width(), -1.0, 1.0);
            let seed = g.upload("seed", &[1], &[7u32]);
            let mask = drop_mask(7, 3, p, b * nh * t * t);
            let drop = (p > 0.0).then_some((p, &seed, 3));
            let (wo, wa) = cpu_forward(&qkv, b, t, d, mask.as_deref());
            let (wq, _) = cpu_backward(&dqkv0, &dout, &qkv, &wa, (b, t, d), mask.as_deref());
            let want_lse = lse(&qkv, b, t, d);
            let want_delta: Vec<f32> = (0..b * nh * t)
                .map(|row| {
                    let (bi, h, ti) = (row / (nh * t), row / t % nh, row % t);
                    let at = (bi * t + ti) * d.out_width() + h * hs;
                    (0..hs).map(|e| dout[at + e] * wo[at + e]).sum()
                })
                .collect();
            let qkv_t = g.upload("qkv", &[b, t, d.qkv_width()], &qkv);
            let dout_t = g.upload("dout", &[b, t, d.out_width()], &dout);
            let mut first: Option<Vec<Vec<f32>>> = None;
            for imp in flash(&k) {
                let (out, lse_t) = (g.tensor("out", &[b, t, d.out_width()]), g.tensor("lse", &[b, nh, t]));
                let dqkv = g.upload("dqkv", &[b, t, d.qkv_width()], &dqkv0);
                let delta = g.upload("delta", &[b, nh, t], &vec![f32::NAN; b * nh * t]);
                let mut prog = Program::default();
                k.attention.forward(&mut prog, imp, AttnFwd { out: &out, saved: &lse_t, qkv: &qkv_t }, d, drop);
                let bwd =
                    AttnBwd { dqkv: &dqkv, scratch: &delta, dout: &dout_t, qkv: &qkv_t, out: &out, saved: &lse_t };
                k.attention.backward(&mut prog, imp, bwd, d, drop);
                g.run(|pass| prog.encode(pass));
                let got = g.read_many(&[&out, &lse_t, &dqkv, &delta]).await.unwrap();
                let what = format!("{} B{b} T{t} NH{nh} KV{kv} hs{hs} dropout {p}", imp.name());
                assert_close(&format!("{what}: out"), &got[0], &wo, 1e-5, 1e-4);
                assert_close(&format!("{what}: lse"), &got[1], &want_lse, 1e-5, 1e-5);
                assert_close(&format!("{what}: dqkv"), &got[2], &wq, grad_atol(nh / kv * t), 1e-4);
                assert_close(&format!("{what}: dout·out"), &got[3], &want_delta, 1e-5, 1e-4);
                match &first {
                    None => first = Some(got),
                    Some(want) => {
                        for (j, name) in ["out", "lse", "dqkv", "dout·out"].iter().enumerate() {
                            assert_bits(&format!("{what}: {name}"), &got[j], &want[j]);
                        }
                    }
                }
            }
        }
    }
}
gpu_test!(flash_attention_gqa, flash_all);

/// Decode attention over a KV cache of (S, KV·hd): a prefill of `t1` tokens at position 0, then
/// `t2` new tokens at position t1, each out against the rows of the CPU's causal attention over
/// all t1 + t2 tokens (a query sees exactly the keys before it either way). (t1, t2, NH, KV, hd, S).
async fn decode(k: Arc<Kernels>) {
    let g = &k.gpu;
    let cases =
        [(5, 1, 9, 3, 16, 8), (3, 2, 4, 1, 12, 7), (1, 1, 2, 2, 8, 2), (17, 1, 16, 8, 128, 20), (6, 3, 6, 2, 20, 11)];
    for (i, &(t1, t2, nh, kv, hd, s)) in cases.iter().enumerate() {
        let d = AttnDims { nh, kv, hs: hd };
        let t = t1 + t2;
        let qkv = Rng::new(2700 + i as u64).vec(t * d.qkv_width(), -2.0, 2.0);
        let (want, _) = cpu_forward(&qkv, 1, t, d, None);
        let (k_cache, v_cache) = (g.tensor("k_cache", &[s, d.kv_width()]), g.tensor("v_cache", &[s, d.kv_width()]));
        let pos = g.tensor("pos", &[1]);
        let mut got = vec![];
        for (pos0, n) in [(0, t1), (t1, t2)] {
            let dims = DecodeDims { t: n, c: d.out_width(), nh, kv, hd, s, v: 1 };
            let rows = &qkv[pos0 * d.qkv_width()..(pos0 + n) * d.qkv_width()];
            let qkv_t = g.upload("qkv", &[n, d.qkv_width()], rows);
            let (out, scores) = (g.tensor("out", &[n, d.out_width()]), g.tensor("scores", &[n, nh, s]));
            g.write(&pos, &[pos0 as u32]);
            let mut prog = Program::default();
            let attn =
                DecodeAttn { out: &out, scores: &scores, qkv: &qkv_t, k_cache: &k_cache, v_cache: &v_cache, pos: &pos };
            k.decode.attention(&mut prog, dims, attn);
            g.run(|pass| prog.encode(pass));
            got.extend(g.read(&out).await.unwrap());
        }
        assert_close(&format!("decode T{t1}+{t2} NH{nh} KV{kv} hd{hd} S{s}: out"), &got, &want, 1e-5, 1e-4);
    }
}
gpu_test!(decode_attention_gqa, decode);
