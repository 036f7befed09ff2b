//! Each GPU kernel against its CPU reference on random inputs, at shapes that include T = 1,
//! T = block_size, sizes that do not divide the workgroup size, one head and many heads.
//! Runs natively and, compiled to wasm32, in headless Chromium (wasm-bindgen-test).

mod common;

use std::sync::Arc;

use common::Rng;
use wgpt::cpu;
use wgpt::kernels::{Kernels, Operand, Program};
use wgpt::Tensor;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Runs `prog` and reads `t` back.
async fn run_read(k: &Kernels, prog: &Program, t: &Tensor) -> Vec<f32> {
    k.gpu.run(|pass| prog.encode(pass));
    k.gpu.read(t).await.expect("readback")
}

fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    match cpu::check_close(what, got, want, atol, rtol) {
        Ok(c) => println!(
            "{what}: max abs err {:.2e}, max rel err {:.2e}",
            c.max_abs, c.max_rel
        ),
        Err(msg) => panic!("{msg}"),
    }
}

async fn encoder(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(b, t, c, v)) in [(1, 1, 8, 5), (2, 7, 13, 11), (3, 64, 48, 50)]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(i as u64);
        let ids = rng.ids(b * t, v);
        let wte = rng.vec(v * c, -1.0, 1.0);
        let wpe = rng.vec(t * c, -1.0, 1.0);
        let out = g.tensor("out", &[b, t, c]);
        let mut prog = Program::default();
        k.encoder.forward(
            g,
            &mut prog,
            &out,
            &g.upload("ids", &[b, t], &ids),
            &g.upload("wte", &[v, c], &wte),
            &g.upload("wpe", &[t, c], &wpe),
        );
        let got = run_read(&k, &prog, &out).await;
        let mut want = vec![0.0; b * t * c];
        cpu::encoder_forward(&mut want, &ids, &wte, &wpe, b * t, t, c);
        assert_close(&format!("encoder B{b} T{t} C{c}"), &got, &want, 0.0, 0.0);
    }
}
gpu_test!(encoder_forward, encoder);

async fn layernorm(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(n, c)) in [(1, 1), (1, 7), (7, 13), (67, 768), (130, 64)]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(10 + i as u64);
        let inp = rng.vec(n * c, -3.0, 3.0);
        let w = rng.vec(c, 0.5, 1.5);
        let bias = rng.vec(c, -0.5, 0.5);
        let (out, mean, rstd) = (
            g.tensor("out", &[n, c]),
            g.tensor("mean", &[n]),
            g.tensor("rstd", &[n]),
        );
        let mut prog = Program::default();
        k.layernorm.forward(
            g,
            &mut prog,
            &out,
            &mean,
            &rstd,
            &g.upload("inp", &[n, c], &inp),
            &g.upload("w", &[c], &w),
            &g.upload("b", &[c], &bias),
        );
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&out, &mean, &rstd]).await.unwrap();
        let (mut wo, mut wm, mut wr) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        cpu::layernorm_forward(&mut wo, &mut wm, &mut wr, &inp, &w, &bias, n, c);
        assert_close(
            &format!("layernorm out N{n} C{c}"),
            &got[0],
            &wo,
            1e-5,
            1e-4,
        );
        assert_close(
            &format!("layernorm mean N{n} C{c}"),
            &got[1],
            &wm,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("layernorm rstd N{n} C{c}"),
            &got[2],
            &wr,
            1e-6,
            1e-4,
        );
    }
}
gpu_test!(layernorm_forward, layernorm);

/// C = op(A)·op(B) (+ bias) (+ C): every transpose combination and both flags.
async fn matmul(k: Arc<Kernels>) {
    let g = &k.gpu;
    let shapes = [
        (1, 1, 1),
        (7, 13, 5),
        (33, 65, 97),
        (64, 128, 384),
        (5, 768, 65),
        // K = 70000 runs as accumulating K_CHUNK dispatches
        (3, 70000, 2),
    ];
    for (i, &(m, kk, n)) in shapes.iter().enumerate() {
        for (ta, tb) in [(false, false), (false, true), (true, false)] {
            let mut rng = Rng::new(100 + i as u64);
            let a = rng.vec(m * kk, -1.0, 1.0);
            let b = rng.vec(kk * n, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let c0 = rng.vec(m * n, -1.0, 1.0);
            // stored layouts: A as (M,K) or (K,M); B as (K,N) or (N,K)
            let at = if ta {
                g.upload("a", &[kk, m], &transpose(&a, m, kk))
            } else {
                g.upload("a", &[m, kk], &a)
            };
            let bt = if tb {
                g.upload("b", &[n, kk], &transpose(&b, kk, n))
            } else {
                g.upload("b", &[kk, n], &b)
            };
            for (with_bias, accumulate) in [(false, false), (true, false), (true, true)] {
                let out = g.upload("c", &[m, n], &c0);
                let bias_t = g.upload("bias", &[n], &bias);
                let mut prog = Program::default();
                k.matmul.gemm(
                    g,
                    &mut prog,
                    &out,
                    op(&at, ta),
                    op(&bt, tb),
                    with_bias.then_some(&bias_t),
                    accumulate,
                );
                let got = run_read(&k, &prog, &out).await;
                let mut want = vec![0.0; m * n];
                cpu::matmul_forward(&mut want, &a, &b, with_bias.then_some(&bias[..]), m, kk, n);
                if accumulate {
                    for (w, c) in want.iter_mut().zip(&c0) {
                        *w += c;
                    }
                }
                let what = format!(
                    "matmul M{m} K{kk} N{n} ta {ta} tb {tb} bias {with_bias} acc {accumulate}"
                );
                assert_close(&what, &got, &want, 1e-5 * (kk as f32).sqrt(), 1e-4);
            }
        }
    }
}
gpu_test!(matmul_forward, matmul);

fn op(t: &Tensor, transposed: bool) -> Operand<'_> {
    Operand { t, transposed }
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
    t
}

async fn attention(k: Arc<Kernels>) {
    let g = &k.gpu;
    let shapes = [
        (1, 1, 8, 1),
        (2, 7, 12, 3),
        (1, 64, 64, 4),
        (2, 33, 48, 6),
        (1, 16, 20, 1),
        // T = 1024 with head size 64: GPT-2's longest rows
        (1, 1024, 128, 2),
    ];
    for (i, &(b, t, c, nh)) in shapes.iter().enumerate() {
        let mut rng = Rng::new(200 + i as u64);
        let qkv = rng.vec(b * t * 3 * c, -2.0, 2.0);
        let (out, att) = (g.tensor("out", &[b, t, c]), g.tensor("att", &[b, nh, t, t]));
        let mut prog = Program::default();
        k.attention.forward(
            g,
            &mut prog,
            &out,
            &att,
            &g.upload("qkv", &[b, t, 3 * c], &qkv),
            nh,
        );
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&out, &att]).await.unwrap();
        let (mut wo, mut wa) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
        cpu::attention_forward(&mut wo, &mut wa, &qkv, b, t, c, nh);
        assert_close(
            &format!("attention out B{b} T{t} C{c} NH{nh}"),
            &got[0],
            &wo,
            1e-5,
            1e-4,
        );
        assert_close(
            &format!("attention att B{b} T{t} C{c} NH{nh}"),
            &got[1],
            &wa,
            1e-6,
            1e-4,
        );
    }
}
gpu_test!(attention_forward, attention);

async fn gelu(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &n) in [1usize, 63, 1000, 70_001].iter().enumerate() {
        let mut rng = Rng::new(300 + i as u64);
        // wide range: large |x| must give x or 0, never NaN
        let inp = rng.vec(n, -30.0, 30.0);
        let out = g.tensor("out", &[n]);
        let mut prog = Program::default();
        k.gelu
            .forward(g, &mut prog, &out, &g.upload("inp", &[n], &inp));
        let got = run_read(&k, &prog, &out).await;
        let mut want = vec![0.0; n];
        cpu::gelu_forward(&mut want, &inp);
        assert_close(&format!("gelu n{n}"), &got, &want, 1e-6, 1e-5);
    }
}
gpu_test!(gelu_forward, gelu);

async fn residual(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &n) in [1usize, 65, 4097].iter().enumerate() {
        let mut rng = Rng::new(400 + i as u64);
        let (a, b) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let out = g.tensor("out", &[n]);
        let mut prog = Program::default();
        k.residual.forward(
            g,
            &mut prog,
            &out,
            &g.upload("a", &[n], &a),
            &g.upload("b", &[n], &b),
        );
        let got = run_read(&k, &prog, &out).await;
        let mut want = vec![0.0; n];
        cpu::residual_forward(&mut want, &a, &b);
        assert_close(&format!("residual n{n}"), &got, &want, 0.0, 0.0);
    }
}
gpu_test!(residual_forward, residual);

async fn crossentropy(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(rows, v)) in [(1, 1), (7, 65), (300, 11), (3, 50257)].iter().enumerate() {
        let mut rng = Rng::new(500 + i as u64);
        let logits = rng.vec(rows * v, -10.0, 10.0);
        let targets = rng.ids(rows, v);
        let (loss, losses) = (g.tensor("loss", &[1]), g.tensor("losses", &[rows]));
        let mut prog = Program::default();
        k.crossentropy.forward(
            g,
            &mut prog,
            &loss,
            &losses,
            &g.upload("logits", &[rows, v], &logits),
            &g.upload("targets", &[rows], &targets),
        );
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&losses, &loss]).await.unwrap();
        let mut want = vec![0.0; rows];
        let mean = cpu::crossentropy_forward(&mut want, &logits, &targets, v);
        assert_close(
            &format!("crossentropy losses N{rows} V{v}"),
            &got[0],
            &want,
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("crossentropy mean N{rows} V{v}"),
            &got[1],
            &[mean],
            1e-5,
            1e-5,
        );
    }
}
gpu_test!(crossentropy_forward, crossentropy);
