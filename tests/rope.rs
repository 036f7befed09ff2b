//! The fused rope + qk-norm kernel (shaders/rope.wgsl) against the CPU reference at ragged
//! shapes: head sizes 4, 12, 64 and 128, rope only, norm only and both, positions from 0 and
//! from pos0 > 0; the backward's input gradient and the norm weights' gradients accumulate
//! (+=) onto what was there. Also the host cos/sin table against the formula in f64. Runs
//! natively and, compiled to wasm32, in headless Chromium (wasm-bindgen-test).

mod common;
use common::assert_close;

use std::sync::Arc;

use common::Rng;
use wgpt::cpu;
use wgpt::kernels::{rope_table, Kernels, Program, QkNorm, RopeBwd, RopeDims, RopeFwd};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// (B, T, NH, KV, hd, pos0)
const SHAPES: [(usize, usize, usize, usize, usize, usize); 5] =
    [(1, 1, 2, 1, 4, 0), (2, 7, 3, 1, 12, 5), (1, 13, 4, 2, 64, 0), (2, 5, 2, 2, 128, 37), (1, 3, 9, 3, 12, 1)];

/// The table's cos and sin against f64's at the same f32 frequencies' exact formula: within
/// the f32 angle's rounding (|angle| · 2⁻²³ plus the value's).
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_host_table_follows_the_formula() {
    for (theta, hd, n) in [(10000.0f32, 12usize, 40usize), (1e6, 128, 2048), (500.0, 4, 9)] {
        let table = rope_table(theta, hd, n);
        assert_eq!(table.len(), n * hd);
        let mut worst = 0.0f64;
        for p in 0..n {
            for i in 0..hd / 2 {
                let angle = p as f64 * (theta as f64).powf(-((2 * i) as f64) / hd as f64);
                let tol = angle * 3.0 * f32::EPSILON as f64 + 1e-7;
                let (c, s) = (table[p * hd + i] as f64, table[p * hd + hd / 2 + i] as f64);
                let err = (c - angle.cos()).abs().max((s - angle.sin()).abs());
                assert!(err <= tol, "theta {theta} hd {hd} pos {p} pair {i}: error {err:e} > {tol:e}");
                worst = worst.max(err);
            }
        }
        println!("table theta {theta} hd {hd} x {n} positions: max error {worst:.2e}");
    }
}

/// One shape, one mode: forward and backward on the GPU against the CPU.
async fn check(
    k: &Kernels,
    (b, t, nh, kv, hd, pos0): (usize, usize, usize, usize, usize, usize),
    rope: bool,
    norm: bool,
) {
    let g = &k.gpu;
    let name = format!("B{b} T{t} NH{nh} KV{kv} hd{hd} pos0 {pos0} rope {rope} norm {norm}");
    let (rows, w, qk) = (b * t, (nh + 2 * kv) * hd, nh + kv);
    let mut rng = Rng::new((hd * 31 + t) as u64);
    let raw = rng.vec(rows * w, -2.0, 2.0);
    let (qn, kn) = (rng.vec(hd, 0.5, 1.5), rng.vec(hd, 0.5, 1.5));
    let dout = rng.vec(rows * w, -1.0, 1.0);
    let prior = rng.vec(rows * w, -1.0, 1.0);
    let (prior_q, prior_k) = (rng.vec(hd, -1.0, 1.0), rng.vec(hd, -1.0, 1.0));
    let theta = 10000.0f32;
    let s = cpu::RopeShape { t, nh, kv, hd, pos0, theta: rope.then_some(theta), eps: 1e-6 };
    let cpu_norm = norm.then_some((qn.as_slice(), kn.as_slice()));
    let (mut want, mut want_rstd) = (vec![0.0; rows * w], vec![0.0; rows * qk]);
    cpu::rope_forward(cpu::RopeFwd { out: &mut want, rstd: &mut want_rstd, inp: &raw, norm: cpu_norm }, s);
    let (mut want_d, mut want_dq, mut want_dk) = (prior.clone(), prior_q.clone(), prior_k.clone());
    let dnorm = norm.then_some((want_dq.as_mut_slice(), want_dk.as_mut_slice()));
    let bwd = cpu::RopeBwd { dinp: &mut want_d, dnorm, dout: &dout, inp: &raw, rstd: &want_rstd, norm: cpu_norm };
    cpu::rope_backward(bwd, s);

    let up = |n: &str, v: &[f32], shape: &[usize]| g.upload(n, shape, v);
    let (raw_t, qn_t, kn_t) = (up("raw", &raw, &[rows, w]), up("qn", &qn, &[hd]), up("kn", &kn, &[hd]));
    let (qkv, rstd) = (g.tensor("qkv", &[rows, w]), g.tensor("rstd", &[rows, qk]));
    let table = up("table", &rope_table(theta, hd, pos0 + t), &[pos0 + t, hd]);
    let pos = g.upload("pos", &[1], &[pos0 as u32]);
    let (dout_t, dinp) = (up("dout", &dout, &[rows, w]), up("dinp", &prior, &[rows, w]));
    let (dq, dk) = (up("dq", &prior_q, &[hd]), up("dk", &prior_k, &[hd]));
    let d = RopeDims { nh, kv, hd, t, eps: 1e-6 };
    let (qnorm, table) = (norm.then_some(QkNorm { q: &qn_t, k: &kn_t }), rope.then_some(&table));
    let mut prog = Program::default();
    let fwd = RopeFwd { qkv: &qkv, rstd: &rstd, qkv_raw: &raw_t, norm: qnorm, table, pos: &pos };
    k.rope.forward(&mut prog, d, fwd);
    let dnorm = norm.then_some(QkNorm { q: &dq, k: &dk });
    let (dqkv_raw, dqkv, qkv_raw, rstd_r) = (&dinp, &dout_t, &raw_t, &rstd);
    let bwd = RopeBwd { dqkv_raw, dnorm, dqkv, qkv_raw, rstd: rstd_r, norm: qnorm, table, pos: &pos };
    k.rope.backward(&mut prog, d, bwd);
    g.run(|pass| prog.encode(pass));
    let got = g.read_many(&[&qkv, &rstd, &dinp, &dq, &dk]).await.unwrap();
    assert_close(&format!("{name}: qkv"), &got[0], &want, 1e-5, 1e-4);
    if norm {
        assert_close(&format!("{name}: rstd"), &got[1], &want_rstd, 1e-5, 1e-4);
        assert_close(&format!("{name}: dq_norm"), &got[3], &want_dq, 1e-4, 1e-4);
        assert_close(&format!("{name}: dk_norm"), &got[4], &want_dk, 1e-4, 1e-4);
    }
    assert_close(&format!("{name}: dqkv_raw"), &got[2], &want_d, 1e-5, 1e-4);
}

async fn rope_and_qk_norm(k: Arc<Kernels>) {
    for shape in SHAPES {
        for (rope, norm) in [(true, false), (false, true), (true, true)] {
            check(&k, shape, rope, norm).await;
        }
    }
}
gpu_test!(rope_and_qk_norm_match_the_cpu, rope_and_qk_norm);
