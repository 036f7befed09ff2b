//! Each CPU backward against central finite differences of its CPU forward, on tiny shapes, for
//! the scalar loss L = Σ out·w with random w (so dout = w). CPU only: no GPU needed.

mod common;

use common::Rng;
use wgpt::cpu;

/// Finite-difference step: large enough that f32 rounding in L stays small against it.
const EPS: f32 = 1e-2;

/// Σ out·w in f64.
fn dot(out: &[f32], w: &[f32]) -> f64 {
    out.iter().zip(w).map(|(&o, &w)| o as f64 * w as f64).sum()
}

/// Central differences of `loss` at `x`, one coordinate at a time (divided by the step as
/// actually taken in f32).
fn numeric_grad(x: &[f32], mut loss: impl FnMut(&[f32]) -> f64) -> Vec<f32> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = xp[i];
            let (hi, lo) = (x0 + EPS, x0 - EPS);
            xp[i] = hi;
            let lp = loss(&xp);
            xp[i] = lo;
            let lm = loss(&xp);
            xp[i] = x0;
            ((lp - lm) / (hi as f64 - lo as f64)) as f32
        })
        .collect()
}

fn assert_grad(what: &str, analytic: &[f32], numeric: &[f32]) {
    match cpu::check_close(what, analytic, numeric, 1e-4, 1e-2) {
        Ok(c) => println!("{what}: max abs err {:.2e}, max rel err {:.2e}", c.max_abs, c.max_rel),
        Err(msg) => panic!("{msg}"),
    }
}

#[test]
fn encoder() {
    let (b, t, c, v, max_t) = (2, 3, 4, 5, 4);
    let mut rng = Rng::new(1);
    // repeated tokens: 1 three times, 3 twice
    let ids = [1u32, 3, 1, 1, 0, 3];
    let wte = rng.vec(v * c, -1.0, 1.0);
    let wpe = rng.vec(max_t * c, -1.0, 1.0);
    let w = rng.vec(b * t * c, -1.0, 1.0);
    let forward = |wte: &[f32], wpe: &[f32]| {
        let mut out = vec![0.0; b * t * c];
        cpu::encoder_forward(&mut out, &ids, wte, wpe, b * t, t, c);
        dot(&out, &w)
    };
    let (mut dwte, mut dwpe) = (vec![0.0; v * c], vec![0.0; max_t * c]);
    cpu::encoder_backward(&mut dwte, &mut dwpe, &w, &ids, b * t, t, c);
    assert_grad("encoder dwte", &dwte, &numeric_grad(&wte, |x| forward(x, &wpe)));
    assert_grad("encoder dwpe", &dwpe, &numeric_grad(&wpe, |x| forward(&wte, x)));
}

#[test]
fn layernorm() {
    let (n, c) = (3, 5);
    let mut rng = Rng::new(2);
    let inp = rng.vec(n * c, -1.0, 1.0);
    let weight = rng.vec(c, 0.5, 1.5);
    let bias = rng.vec(c, -0.5, 0.5);
    let w = rng.vec(n * c, -1.0, 1.0);
    let forward = |inp: &[f32], weight: &[f32], bias: &[f32]| {
        let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        cpu::layernorm_forward(
            cpu::LayerNormFwd { out: &mut out, mean: &mut mean, rstd: &mut rstd, inp, weight, bias },
            n,
            c,
        );
        (dot(&out, &w), mean, rstd)
    };
    let (_, mean, rstd) = forward(&inp, &weight, &bias);
    let (mut dinp, mut dweight, mut dbias) = (vec![0.0; n * c], vec![0.0; c], vec![0.0; c]);
    let io = cpu::LayerNormBwd {
        dinp: &mut dinp,
        dweight: &mut dweight,
        dbias: &mut dbias,
        dout: &w,
        inp: &inp,
        weight: &weight,
        mean: &mean,
        rstd: &rstd,
    };
    cpu::layernorm_backward(io, n, c);
    assert_grad("layernorm dinp", &dinp, &numeric_grad(&inp, |x| forward(x, &weight, &bias).0));
    assert_grad("layernorm dweight", &dweight, &numeric_grad(&weight, |x| forward(&inp, x, &bias).0));
    assert_grad("layernorm dbias", &dbias, &numeric_grad(&bias, |x| forward(&inp, &weight, x).0));
}

#[test]
fn relu2() {
    let mut rng = Rng::new(14);
    // away from 0, where relu² is not differentiable twice and finite differences straddle it
    let x: Vec<f32> = rng.vec(9, -2.0, 2.0).into_iter().map(|v| if v.abs() < 0.1 { v + 0.3 } else { v }).collect();
    let w = rng.vec(9, -1.0, 1.0);
    let forward = |x: &[f32]| {
        let mut y = vec![0.0; x.len()];
        cpu::relu2_forward(&mut y, x);
        dot(&y, &w)
    };
    let mut dx = vec![0.0; 9];
    cpu::relu2_backward(&mut dx, &x, &w);
    assert_grad("relu2 dx", &dx, &numeric_grad(&x, forward));
}

#[test]
fn softcap() {
    let cap = 1.5;
    let mut rng = Rng::new(13);
    let x = rng.vec(7, -4.0, 4.0);
    let w = rng.vec(7, -1.0, 1.0);
    let forward = |x: &[f32]| {
        let mut y = x.to_vec();
        cpu::softcap_forward(&mut y, cap);
        y
    };
    let mut dx = vec![0.0; 7];
    cpu::softcap_backward(&mut dx, &forward(&x), &w, cap);
    assert_grad("softcap dx", &dx, &numeric_grad(&x, |x| dot(&forward(x), &w)));
}

#[test]
fn rmsnorm() {
    let (n, c, eps) = (3, 5, 1e-6);
    let mut rng = Rng::new(12);
    let inp = rng.vec(n * c, -1.0, 1.0);
    let weight = rng.vec(c, 0.5, 1.5);
    let w = rng.vec(n * c, -1.0, 1.0);
    let forward = |inp: &[f32], weight: &[f32]| {
        let (mut out, mut rstd) = (vec![0.0; n * c], vec![0.0; n]);
        cpu::rmsnorm_forward(cpu::RmsNormFwd { out: &mut out, rstd: &mut rstd, inp, weight }, n, c, eps);
        (dot(&out, &w), rstd)
    };
    let (_, rstd) = forward(&inp, &weight);
    let (mut dinp, mut dweight) = (vec![0.0; n * c], vec![0.0; c]);
    let io =
        cpu::RmsNormBwd { dinp: &mut dinp, dweight: &mut dweight, dout: &w, inp: &inp, weight: &weight, rstd: &rstd };
    cpu::rmsnorm_backward(io, n, c);
    assert_grad("rmsnorm dinp", &dinp, &numeric_grad(&inp, |x| forward(x, &weight).0));
    assert_grad("rmsnorm dweight", &dweight, &numeric_grad(&weight, |x| forward(&inp, x).0));
}

#[test]
fn matmul() {
    let (m, k, n) = (4, 3, 5);
    let mut rng = Rng::new(3);
    let inp = rng.vec(m * k, -1.0, 1.0);
    let weight = rng.vec(k * n, -1.0, 1.0);
    let bias = rng.vec(n, -1.0, 1.0);
    let w = rng.vec(m * n, -1.0, 1.0);
    let forward = |inp: &[f32], weight: &[f32], bias: &[f32]| {
        let mut out = vec![0.0; m * n];
        cpu::matmul_forward(&mut out, inp, weight, Some(bias), m, k, n);
        dot(&out, &w)
    };
    let (mut dinp, mut dweight, mut dbias) = (vec![0.0; m * k], vec![0.0; k * n], vec![0.0; n]);
    let io = cpu::MatmulBwd {
        dinp: &mut dinp,
        dweight: &mut dweight,
        dbias: Some(&mut dbias),
        dout: &w,
        inp: &inp,
        weight: &weight,
    };
    cpu::matmul_backward(io, m, k, n);
    assert_grad("matmul dinp", &dinp, &numeric_grad(&inp, |x| forward(x, &weight, &bias)));
    assert_grad("matmul dweight", &dweight, &numeric_grad(&weight, |x| forward(&inp, x, &bias)));
    assert_grad("matmul dbias", &dbias, &numeric_grad(&bias, |x| forward(&inp, &weight, x)));
}

#[test]
fn attention() {
    // (B, T, NH, KV, hs): GPT-2's heads (KV = NH), grouped heads and one KV head for all (MQA)
    let shapes = [(1, 1, 1, 1, 4), (2, 4, 2, 2, 3), (1, 5, 1, 1, 8), (2, 4, 4, 2, 2), (1, 5, 3, 1, 4)];
    for (i, &(b, t, nh, kv, hs)) in shapes.iter().enumerate() {
        let (w_qkv, w_out) = ((nh + 2 * kv) * hs, nh * hs);
        // without dropout, and with a fixed dropout mask on the probabilities (every other
        // element dropped, the rest scaled by 2)
        let mask: Vec<f32> = (0..b * nh * t * t).map(|j| if j % 2 == 0 { 2.0 } else { 0.0 }).collect();
        for drop in [None, Some(&mask[..])] {
            let mut rng = Rng::new(40 + i as u64);
            let qkv = rng.vec(b * t * w_qkv, -1.0, 1.0);
            let w = rng.vec(b * t * w_out, -1.0, 1.0);
            let forward = |qkv: &[f32]| {
                let (mut out, mut att) = (vec![0.0; b * t * w_out], vec![0.0; b * nh * t * t]);
                cpu::attention_forward(cpu::AttnFwd { out: &mut out, att: &mut att, qkv, drop }, b, t, nh, kv, hs);
                (dot(&out, &w), att)
            };
            let (_, att) = forward(&qkv);
            let (mut dqkv, mut dpreatt) = (vec![0.0; b * t * w_qkv], vec![0.0; b * nh * t * t]);
            let io = cpu::AttnBwd { dqkv: &mut dqkv, dpreatt: &mut dpreatt, dout: &w, qkv: &qkv, att: &att, drop };
            cpu::attention_backward(io, b, t, nh, kv, hs);
            let numeric = numeric_grad(&qkv, |x| forward(x).0);
            let what = format!("attention dqkv B{b} T{t} NH{nh} KV{kv} hs{hs} dropout {}", drop.is_some());
            assert_grad(&what, &dqkv, &numeric);
        }
    }
}

#[test]
fn gelu() {
    let n = 40;
    let mut rng = Rng::new(5);
    let inp = rng.vec(n, -4.0, 4.0);
    let w = rng.vec(n, -1.0, 1.0);
    let mut dinp = vec![0.0; n];
    cpu::gelu_backward(&mut dinp, &inp, &w);
    let numeric = numeric_grad(&inp, |x| {
        let mut out = vec![0.0; n];
        cpu::gelu_forward(&mut out, x);
        dot(&out, &w)
    });
    assert_grad("gelu dinp", &dinp, &numeric);
}

#[test]
fn swiglu() {
    let (n, i) = (3, 7);
    let mut rng = Rng::new(7);
    let inp = rng.vec(n * 2 * i, -4.0, 4.0);
    let w = rng.vec(n * i, -1.0, 1.0);
    let mut dinp = vec![0.0; n * 2 * i];
    cpu::swiglu_backward(&mut dinp, &inp, &w, i);
    let numeric = numeric_grad(&inp, |x| {
        let mut out = vec![0.0; n * i];
        cpu::swiglu_forward(&mut out, x, i);
        dot(&out, &w)
    });
    assert_grad("swiglu dgate | dup", &dinp, &numeric);
}

#[test]
fn residual() {
    let n = 7;
    let mut rng = Rng::new(6);
    let (a, b) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let w = rng.vec(n, -1.0, 1.0);
    let forward = |a: &[f32], b: &[f32]| {
        let mut out = vec![0.0; n];
        cpu::residual_forward(&mut out, a, b);
        dot(&out, &w)
    };
    let (mut da, mut db) = (vec![0.0; n], vec![0.0; n]);
    cpu::residual_backward(&mut da, &mut db, &w);
    assert_grad("residual da", &da, &numeric_grad(&a, |x| forward(x, &b)));
    assert_grad("residual db", &db, &numeric_grad(&b, |x| forward(&a, x)));
}

#[test]
fn crossentropy() {
    let (n, v) = (3, 7);
    let mut rng = Rng::new(7);
    let logits = rng.vec(n * v, -3.0, 3.0);
    let targets = rng.ids(n, v);
    // L = the mean loss, so dL/dlosses[r] = 1/N
    let dloss = 1.0 / n as f32;
    let mut dlogits = vec![f32::NAN; n * v]; // overwritten
    cpu::crossentropy_backward(&mut dlogits, &logits, &targets, dloss, v);
    let numeric = numeric_grad(&logits, |x| {
        let mut losses = vec![0.0; n];
        cpu::crossentropy_forward(&mut losses, x, &targets, v);
        losses.iter().map(|&l| l as f64).sum::<f64>() * dloss as f64
    });
    assert_grad("crossentropy dlogits", &dlogits, &numeric);
}

#[test]
fn rope_and_qk_norm() {
    let (rows, t, nh, kv, hd) = (4, 2, 2, 1, 6);
    let w = (nh + 2 * kv) * hd;
    let mut rng = Rng::new(9);
    let inp = rng.vec(rows * w, -1.0, 1.0);
    let (qn, kn) = (rng.vec(hd, 0.5, 1.5), rng.vec(hd, 0.5, 1.5));
    let dout = rng.vec(rows * w, -1.0, 1.0);
    let s = cpu::RopeShape { t, nh, kv, hd, pos0: 3, theta: Some(100.0), eps: 1e-5 };
    let forward = |inp: &[f32], qn: &[f32], kn: &[f32]| {
        let (mut out, mut rstd) = (vec![0.0; rows * w], vec![0.0; rows * (nh + kv)]);
        cpu::rope_forward(cpu::RopeFwd { out: &mut out, rstd: &mut rstd, inp, norm: Some((qn, kn)) }, s);
        (dot(&out, &dout), rstd)
    };
    let rstd = forward(&inp, &qn, &kn).1;
    let (mut dinp, mut dq, mut dk) = (vec![0.0; rows * w], vec![0.0; hd], vec![0.0; hd]);
    let dnorm = Some((dq.as_mut_slice(), dk.as_mut_slice()));
    let norm = Some((qn.as_slice(), kn.as_slice()));
    cpu::rope_backward(cpu::RopeBwd { dinp: &mut dinp, dnorm, dout: &dout, inp: &inp, rstd: &rstd, norm }, s);
    assert_grad("rope dinp", &dinp, &numeric_grad(&inp, |x| forward(x, &qn, &kn).0));
    assert_grad("rope dq_norm", &dq, &numeric_grad(&qn, |x| forward(&inp, x, &kn).0));
    assert_grad("rope dk_norm", &dk, &numeric_grad(&kn, |x| forward(&inp, &qn, x).0));
}
