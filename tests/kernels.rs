//! Each GPU kernel against its CPU reference on random inputs, at shapes that include T = 1,
//! T = block_size, sizes that do not divide the workgroup size, one head and many heads.
//! Runs natively and, compiled to wasm32, in headless Chromium (wasm-bindgen-test).

mod common;
use common::{assert_bits, assert_close};

use std::sync::Arc;

use common::Rng;
use wgpt::cpu;
use wgpt::kernels::{
    AttentionImpl, AttnBwd, AttnDims, AttnFwd, CrossEntropyBwd, CrossEntropyFwd, EncoderBuckets, Kernels, LayerNormBwd,
    LayerNormFwd, LinearBwd, Matmul, MatmulVariant, NormKind, Operand, Program, Selection,
};
use wgpt::Tensor;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Runs `prog` and reads `t` back.
async fn run_read(k: &Kernels, prog: &Program, t: &Tensor) -> Vec<f32> {
    k.gpu.run(|pass| prog.encode(pass));
    k.gpu.read(t).await.expect("readback")
}

async fn encoder(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(b, t, c, v)) in [(1, 1, 8, 5), (2, 7, 13, 11), (3, 64, 48, 50)].iter().enumerate() {
        let mut rng = Rng::new(i as u64);
        let ids = rng.ids(b * t, v);
        let wte = rng.vec(v * c, -1.0, 1.0);
        let wpe = rng.vec(t * c, -1.0, 1.0);
        let out = g.tensor("out", &[b, t, c]);
        let mut prog = Program::default();
        let (ids_t, wte_t, wpe_t) =
            (g.upload("ids", &[b, t], &ids), g.upload("wte", &[v, c], &wte), g.upload("wpe", &[t, c], &wpe));
        k.encoder.forward(&mut prog, &out, &ids_t, &wte_t, Some(&wpe_t));
        let got = run_read(&k, &prog, &out).await;
        let mut want = vec![0.0; b * t * c];
        cpu::encoder_forward(&mut want, &ids, &wte, &wpe, b * t, t, c);
        assert_close(&format!("encoder B{b} T{t} C{c}"), &got, &want, 0.0, 0.0);
    }
}
gpu_test!(encoder_forward, encoder);

async fn layernorm(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(n, c)) in [(1, 1), (1, 7), (7, 13), (67, 768), (130, 64)].iter().enumerate() {
        let mut rng = Rng::new(10 + i as u64);
        let inp = rng.vec(n * c, -3.0, 3.0);
        let w = rng.vec(c, 0.5, 1.5);
        let bias = rng.vec(c, -0.5, 0.5);
        let (out, mean, rstd) = (g.tensor("out", &[n, c]), g.tensor("mean", &[n]), g.tensor("rstd", &[n]));
        let mut prog = Program::default();
        let (inp_t, w_t, b_t) = (g.upload("inp", &[n, c], &inp), g.upload("w", &[c], &w), g.upload("b", &[c], &bias));
        let (kind, eps) = (NormKind::Layer, 1e-5);
        let t = LayerNormFwd {
            out: &out,
            mean: &mean,
            rstd: &rstd,
            inp: &inp_t,
            weight: &w_t,
            bias: Some(&b_t),
            kind,
            eps,
        };
        k.layernorm.forward(&mut prog, t);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&out, &mean, &rstd]).await.unwrap();
        let (mut wo, mut wm, mut wr) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        let io = cpu::LayerNormFwd { out: &mut wo, mean: &mut wm, rstd: &mut wr, inp: &inp, weight: &w, bias: &bias };
        cpu::layernorm_forward(io, n, c);
        assert_close(&format!("layernorm out N{n} C{c}"), &got[0], &wo, 1e-5, 1e-4);
        assert_close(&format!("layernorm mean N{n} C{c}"), &got[1], &wm, 1e-6, 1e-5);
        assert_close(&format!("layernorm rstd N{n} C{c}"), &got[2], &wr, 1e-6, 1e-4);
    }
}
gpu_test!(layernorm_forward, layernorm);

/// C = op(A)·op(B) (+ bias) (+ C): every transpose combination and both flags.
async fn matmul(k: Arc<Kernels>) {
    let shapes = [
        (1, 1, 1),
        (7, 13, 5),
        (33, 65, 97),
        (64, 128, 384),
        (5, 768, 65),
        // K = 70000 runs as accumulating K_CHUNK dispatches
        (3, 70000, 2),
    ];
    check_matmul(&k, &k.matmul, &shapes, 100).await;
}
gpu_test!(matmul_forward, matmul);

/// The vec4 kernels (NN: N % 4 == 0, NN1 when K % 4 != 0; NT: K % 4 == 0; TN: N % 4 == 0, TN1
/// when M % 4 != 0; VM and VMT when M = 1) at ragged M and N (the register tiles are 16 x 16 or
/// 8 x 16, their workgroups 128 x 128; the subgroup kernels' 32 x 64 and 128 x 64; the tiled
/// kernels' blocks 32 to 128 wide), K chunking in each and K not a multiple of the tiled K
/// steps, and the generic fallback where the alignment is missing: on every variant the adapter
/// runs.
async fn matmul_fast(k: Arc<Kernels>) {
    let shapes = [
        // NN, NT, TN: a ragged tile row (M = 12 < 16) and tile column (N = 20: 16 + 4)
        (12, 8, 20),
        // NN1 (K odd), NT falls back, TN1 (M odd): dlnf / dwte of the baby model
        (37, 65, 36),
        // NN, NT, TN over several workgroups in both directions, ragged in both; K = 20 is not a
        // multiple of the tiled K steps (8, 16)
        (132, 20, 260),
        // NT with an odd N like lm_head's 50257 (NN and TN fall back)
        (3, 32, 4099),
        // K chunking: NN, NT, TN (M = 8) and NN1, TN1 with K % 4 != 0 (NT falls back)
        (8, 70000, 4),
        (3, 70001, 12),
        // one row (a decode step): VM (NN) and VMT (NT), TN1; VMT at lm_head's odd N; both
        // with K chunks (VMT falls back when K % 4 != 0)
        (1, 768, 64),
        (1, 36, 4099),
        (1, 70000, 8),
        (1, 70001, 12),
        // a subgroup whose rows 32..39 are partly past M
        (40, 8, 72),
    ];
    for mm in matmuls(&k) {
        check_matmul(&k, &mm, &shapes, 1500).await;
    }
}

/// One Matmul per variant the adapter runs (every product on that variant).
fn matmuls(k: &Kernels) -> Vec<Matmul> {
    let variants = MatmulVariant::available(&k.gpu, wgpt::kernels::Family::Auto);
    let names: Vec<String> = variants.iter().map(|v| v.name()).collect();
    println!("{}: testing {}", k.gpu.describe(), names.join(", "));
    variants.into_iter().map(|v| Matmul::new(&k.gpu, Selection::all_on(&k.gpu, v))).collect()
}
gpu_test!(matmul_forward_fast, matmul_fast);

async fn check_matmul(k: &Kernels, mm: &Matmul, shapes: &[(usize, usize, usize)], seed: u64) {
    let g = &k.gpu;
    for (i, &(m, kk, n)) in shapes.iter().enumerate() {
        if let Some(p) =
            wgpt::kernels::matmul::Product::of(op(&g.tensor("a", &[m, kk]), false), op(&g.tensor("b", &[kk, n]), false))
        {
            println!("{}: {}", p.name(), mm.choice(&p).name());
        }
        for (ta, tb) in [(false, false), (false, true), (true, false)] {
            let mut rng = Rng::new(seed + i as u64);
            let a = rng.vec(m * kk, -1.0, 1.0);
            let b = rng.vec(kk * n, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let c0 = rng.vec(m * n, -1.0, 1.0);
            // stored layouts: A as (M,K) or (K,M); B as (K,N) or (N,K)
            let at = if ta { g.upload("a", &[kk, m], &transpose(&a, m, kk)) } else { g.upload("a", &[m, kk], &a) };
            let bt = if tb { g.upload("b", &[n, kk], &transpose(&b, kk, n)) } else { g.upload("b", &[kk, n], &b) };
            for (with_bias, accumulate) in [(false, false), (true, false), (true, true)] {
                let out = g.upload("c", &[m, n], &c0);
                let bias_t = g.upload("bias", &[n], &bias);
                let mut prog = Program::default();
                mm.gemm(&mut prog, &out, op(&at, ta), op(&bt, tb), with_bias.then_some(&bias_t), accumulate);
                let got = run_read(k, &prog, &out).await;
                let mut want = vec![0.0; m * n];
                cpu::matmul_forward(&mut want, &a, &b, with_bias.then_some(&bias[..]), m, kk, n);
                if accumulate {
                    for (w, c) in want.iter_mut().zip(&c0) {
                        *w += c;
                    }
                }
                let what = format!("matmul M{m} K{kk} N{n} ta {ta} tb {tb} bias {with_bias} acc {accumulate}");
                assert_close(&what, &got, &want, 1e-5 * (kk as f32).sqrt(), 1e-4);
            }
        }
    }
}

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
        for p in [0.0, 0.25] {
            let mut rng = Rng::new(200 + i as u64);
            let qkv = rng.vec(b * t * 3 * c, -2.0, 2.0);
            let (out, att) = (g.tensor("out", &[b, t, c]), g.tensor("att", &[b, nh, t, t]));
            let seed = g.upload("seed", &[1], &[99u32]);
            let mask = drop_mask(99, 5, p, b * nh * t * t);
            let mut prog = Program::default();
            let qkv_t = g.upload("qkv", &[b, t, 3 * c], &qkv);
            let fwd = AttnFwd { out: &out, saved: &att, qkv: &qkv_t };
            k.attention.forward(&mut prog, AttentionImpl::Classic, fwd, mha(c, nh), (p > 0.0).then_some((p, &seed, 5)));
            k.gpu.run(|pass| prog.encode(pass));
            let got = g.read_many(&[&out, &att]).await.unwrap();
            let (mut wo, mut wa) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
            let io = cpu::AttnFwd { out: &mut wo, att: &mut wa, qkv: &qkv, drop: mask.as_deref() };
            cpu::attention_forward(io, b, t, nh, nh, c / nh);
            assert_close(&format!("attention out B{b} T{t} C{c} NH{nh} dropout {p}"), &got[0], &wo, 1e-5, 1e-4);
            assert_close(&format!("attention att B{b} T{t} C{c} NH{nh} dropout {p}"), &got[1], &wa, 1e-6, 1e-4);
        }
    }
}

/// The attention dropout's multipliers (0 or 1/(1−p)) by the GPU's rule, or None for p = 0.
fn drop_mask(seed: u32, site: u32, p: f32, n: usize) -> Option<Vec<f32>> {
    use wgpt::kernels::dropout::keep;
    (p > 0.0).then(|| (0..n).map(|i| if keep(seed, site, i as u32, p) { 1.0 / (1.0 - p) } else { 0.0 }).collect())
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
        k.gelu.forward(&mut prog, &out, &g.upload("inp", &[n], &inp));
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
        k.residual.forward(&mut prog, &out, &g.upload("a", &[n], &a), &g.upload("b", &[n], &b));
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
        let (loss, losses, lse) = (g.tensor("loss", &[1]), g.tensor("losses", &[rows]), g.tensor("lse", &[rows]));
        let mut prog = Program::default();
        let (logits_t, targets_t) = (g.upload("logits", &[rows, v], &logits), g.upload("targets", &[rows], &targets));
        let counted = g.tensor("counted", &[1]);
        let t = CrossEntropyFwd {
            loss: &loss,
            counted: &counted,
            losses: &losses,
            lse: &lse,
            logits: &logits_t,
            targets: &targets_t,
        };
        k.crossentropy.forward(&mut prog, t);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&losses, &loss, &lse]).await.unwrap();
        let mut want = vec![0.0; rows];
        let mean = cpu::crossentropy_forward(&mut want, &logits, &targets, v);
        assert_close(&format!("crossentropy losses N{rows} V{v}"), &got[0], &want, 1e-5, 1e-5);
        assert_close(&format!("crossentropy mean N{rows} V{v}"), &got[1], &[mean], 1e-5, 1e-5);
        assert_close(&format!("crossentropy lse N{rows} V{v}"), &got[2], &logsumexp(&logits, v), 1e-5, 1e-5);
    }
}
gpu_test!(crossentropy_forward, crossentropy);

/// log Σ exp of each row, in f64.
fn logsumexp(logits: &[f32], v: usize) -> Vec<f32> {
    logits
        .chunks(v)
        .map(|row| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            (m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()) as f32
        })
        .collect()
}

// ---- backward: every gradient buffer starts NON-ZERO (random) to prove accumulation; buffers
// the API overwrites (dpreatt, dlogits) start as NaN to prove every element is written.

/// Uniform values rounded to multiples of 1/64: sums of up to 2^17 of them are exact in f32 in
/// any order, so order-dependent kernels can be checked exactly.
fn dyadic(rng: &mut Rng, n: usize) -> Vec<f32> {
    rng.vec(n, -1.0, 1.0).iter().map(|x| (x * 64.0).round() / 64.0).collect()
}

async fn encoder_bwd(k: Arc<Kernels>) {
    let g = &k.gpu;
    // (B, T, C, V): repeated ids everywhere (V small); the last puts all 65536 positions in one
    // bucket and sums dwpe over B = 65536 (lavapipe's 65535-iteration cap)
    let shapes = [(1, 1, 8, 5), (2, 7, 13, 11), (3, 64, 48, 50), (4, 33, 20, 3), (65536, 1, 3, 1)];
    for (i, &(b, t, c, v)) in shapes.iter().enumerate() {
        let mut rng = Rng::new(600 + i as u64);
        let max_t = t + 2; // rows of wpe past T get no gradient
        let ids = rng.ids(b * t, v);
        let dout = dyadic(&mut rng, b * t * c);
        let dwte0 = dyadic(&mut rng, v * c);
        let dwpe0 = dyadic(&mut rng, max_t * c);
        let (dwte, dwpe) = (g.upload("dwte", &[v, c], &dwte0), g.upload("dwpe", &[max_t, c], &dwpe0));
        let buckets = EncoderBuckets::new(g, b * t);
        // stale contents from an earlier step must not matter
        buckets.write(g, &(0..(b * t) as u32).map(|x| x % 2).collect::<Vec<_>>());
        buckets.write(g, &ids);
        let mut prog = Program::default();
        k.encoder.backward(&mut prog, &dwte, Some(&dwpe), &g.upload("dout", &[b, t, c], &dout), &buckets);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&dwte, &dwpe]).await.unwrap();
        let (mut want_wte, mut want_wpe) = (dwte0, dwpe0);
        cpu::encoder_backward(&mut want_wte, &mut want_wpe, &dout, &ids, b * t, t, c);
        assert_close(&format!("encoder dwte B{b} T{t} C{c} V{v}"), &got[0], &want_wte, 0.0, 0.0);
        assert_close(&format!("encoder dwpe B{b} T{t} C{c} V{v}"), &got[1], &want_wpe, 0.0, 0.0);
    }
}
gpu_test!(encoder_backward, encoder_bwd);

async fn layernorm_bwd(k: Arc<Kernels>) {
    let g = &k.gpu;
    // 65536 rows: dweight and dbias sum more rows than one invocation may loop over
    for (i, &(n, c)) in [(1, 1), (1, 7), (7, 13), (67, 768), (130, 64), (65536, 5)].iter().enumerate() {
        let mut rng = Rng::new(700 + i as u64);
        let inp = rng.vec(n * c, -3.0, 3.0);
        let weight = rng.vec(c, 0.5, 1.5);
        let bias = rng.vec(c, -0.5, 0.5);
        let dout = rng.vec(n * c, -1.0, 1.0);
        let (dinp0, dw0, db0) = (rng.vec(n * c, -1.0, 1.0), rng.vec(c, -1.0, 1.0), rng.vec(c, -1.0, 1.0));
        let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        let io = cpu::LayerNormFwd {
            out: &mut out,
            mean: &mut mean,
            rstd: &mut rstd,
            inp: &inp,
            weight: &weight,
            bias: &bias,
        };
        cpu::layernorm_forward(io, n, c);
        let (dinp, dweight, dbias) =
            (g.upload("dinp", &[n, c], &dinp0), g.upload("dw", &[c], &dw0), g.upload("db", &[c], &db0));
        let mut prog = Program::default();
        let (dout_t, inp_t) = (g.upload("dout", &[n, c], &dout), g.upload("inp", &[n, c], &inp));
        let (w_t, mean_t, rstd_t) =
            (g.upload("w", &[c], &weight), g.upload("mean", &[n], &mean), g.upload("rstd", &[n], &rstd));
        let t = LayerNormBwd {
            dinp: &dinp,
            dweight: &dweight,
            dbias: Some(&dbias),
            dout: &dout_t,
            inp: &inp_t,
            weight: &w_t,
            mean: &mean_t,
            rstd: &rstd_t,
            kind: NormKind::Layer,
        };
        k.layernorm.backward(&mut prog, t);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&dinp, &dweight, &dbias]).await.unwrap();
        let (mut wi, mut ww, mut wb) = (dinp0, dw0, db0);
        let io = cpu::LayerNormBwd {
            dinp: &mut wi,
            dweight: &mut ww,
            dbias: &mut wb,
            dout: &dout,
            inp: &inp,
            weight: &weight,
            mean: &mean,
            rstd: &rstd,
        };
        cpu::layernorm_backward(io, n, c);
        // column sums over n rows: f32 rounding grows with √n
        let sum_tol = 1e-5 * (n as f32).sqrt();
        assert_close(&format!("layernorm dinp N{n} C{c}"), &got[0], &wi, 1e-5, 1e-4);
        assert_close(&format!("layernorm dweight N{n} C{c}"), &got[1], &ww, sum_tol, 1e-4);
        assert_close(&format!("layernorm dbias N{n} C{c}"), &got[2], &wb, sum_tol, 1e-4);
    }
}
gpu_test!(layernorm_backward, layernorm_bwd);

async fn matmul_bwd(k: Arc<Kernels>) {
    // (N, C, OC, bias); N = 65536 splits dweight's K = N into chunks and dbias into lanes
    let shapes = [
        (1, 1, 1, true),
        (7, 13, 5, false),
        (7, 13, 5, true),
        (33, 65, 97, true),
        (64, 128, 384, true),
        (65536, 3, 2, true),
    ];
    check_matmul_bwd(&k, &k.matmul, &shapes, 800).await;
}
gpu_test!(matmul_backward, matmul_bwd);

/// Backward through the vec4 kernels: dinp = dout·Wᵀ is NT (K = OC), dweight = inpᵀ·dout is TN
/// (TN1 when C % 4 != 0), here with ragged tiles and dweight's K = N in chunks.
async fn matmul_bwd_fast(k: Arc<Kernels>) {
    let shapes = [(768, 128, 384, true), (70, 65, 36, true), (65536, 4, 8, true), (20, 36, 20, false)];
    for mm in matmuls(&k) {
        check_matmul_bwd(&k, &mm, &shapes, 1600).await;
    }
}
gpu_test!(matmul_backward_fast, matmul_bwd_fast);

async fn check_matmul_bwd(k: &Kernels, mm: &Matmul, shapes: &[(usize, usize, usize, bool)], seed: u64) {
    let g = &k.gpu;
    for (i, &(n, c, oc, with_bias)) in shapes.iter().enumerate() {
        let mut rng = Rng::new(seed + i as u64);
        let inp = rng.vec(n * c, -1.0, 1.0);
        let weight = rng.vec(c * oc, -1.0, 1.0);
        let dout = rng.vec(n * oc, -1.0, 1.0);
        let (dinp0, dw0, db0) = (rng.vec(n * c, -1.0, 1.0), rng.vec(c * oc, -1.0, 1.0), rng.vec(oc, -1.0, 1.0));
        let (dinp, dweight, dbias) =
            (g.upload("dinp", &[n, c], &dinp0), g.upload("dw", &[c, oc], &dw0), g.upload("db", &[oc], &db0));
        let mut prog = Program::default();
        let (dout_t, inp_t, w_t) =
            (g.upload("dout", &[n, oc], &dout), g.upload("inp", &[n, c], &inp), g.upload("w", &[c, oc], &weight));
        let t = LinearBwd {
            dinp: &dinp,
            dweight: &dweight,
            dbias: with_bias.then_some(&dbias),
            dout: &dout_t,
            inp: &inp_t,
            weight: &w_t,
        };
        mm.backward(&mut prog, t);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&dinp, &dweight, &dbias]).await.unwrap();
        let (mut wi, mut ww, mut wb) = (dinp0, dw0, db0);
        let dbias = with_bias.then_some(&mut wb[..]);
        let io = cpu::MatmulBwd { dinp: &mut wi, dweight: &mut ww, dbias, dout: &dout, inp: &inp, weight: &weight };
        cpu::matmul_backward(io, n, c, oc);
        let what = format!("N{n} C{c} OC{oc} bias {with_bias}");
        let sum_tol = 1e-5 * (n as f32).sqrt();
        assert_close(&format!("matmul dinp {what}"), &got[0], &wi, 1e-5 * (oc as f32).sqrt(), 1e-4);
        assert_close(&format!("matmul dweight {what}"), &got[1], &ww, sum_tol, 1e-4);
        assert_close(&format!("matmul dbias {what}"), &got[2], &wb, sum_tol, 1e-4);
    }
}

async fn attention_bwd(k: Arc<Kernels>) {
    let g = &k.gpu;
    let shapes = [
        (1, 1, 8, 1),
        (2, 7, 12, 3),
        (1, 64, 64, 4),
        (2, 33, 48, 6),
        (1, 16, 20, 1),
        // T = 1024 with head size 64: GPT-2's longest rows and columns
        (1, 1024, 128, 2),
    ];
    for (i, &(b, t, c, nh)) in shapes.iter().enumerate() {
        for p in [0.0, 0.25] {
            let mut rng = Rng::new(900 + i as u64);
            let seed = g.upload("seed", &[1], &[7u32]);
            let mask = drop_mask(7, 3, p, b * nh * t * t);
            let qkv = rng.vec(b * t * 3 * c, -2.0, 2.0);
            let dout = rng.vec(b * t * c, -1.0, 1.0);
            let dqkv0 = rng.vec(b * t * 3 * c, -1.0, 1.0);
            let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
            cpu::attention_forward(
                cpu::AttnFwd { out: &mut out, att: &mut att, qkv: &qkv, drop: None },
                b,
                t,
                nh,
                nh,
                c / nh,
            );
            let dqkv = g.upload("dqkv", &[b, t, 3 * c], &dqkv0);
            let dpreatt = g.upload("dpreatt", &[b, nh, t, t], &vec![f32::NAN; b * nh * t * t]);
            let mut prog = Program::default();
            let (dout_t, qkv_t, att_t) = (
                g.upload("dout", &[b, t, c], &dout),
                g.upload("qkv", &[b, t, 3 * c], &qkv),
                g.upload("att", &[b, nh, t, t], &att),
            );
            let out_t = g.upload("out", &[b, t, c], &out);
            let bwd =
                AttnBwd { dqkv: &dqkv, scratch: &dpreatt, dout: &dout_t, qkv: &qkv_t, out: &out_t, saved: &att_t };
            k.attention.backward(
                &mut prog,
                AttentionImpl::Classic,
                bwd,
                mha(c, nh),
                (p > 0.0).then_some((p, &seed, 3)),
            );
            k.gpu.run(|pass| prog.encode(pass));
            let got = g.read_many(&[&dqkv, &dpreatt]).await.unwrap();
            let (mut wq, mut wp) = (dqkv0, vec![0.0; b * nh * t * t]);
            let io = cpu::AttnBwd {
                dqkv: &mut wq,
                dpreatt: &mut wp,
                dout: &dout,
                qkv: &qkv,
                att: &att,
                drop: mask.as_deref(),
            };
            cpu::attention_backward(io, b, t, nh, nh, c / nh);
            let what = format!("B{b} T{t} C{c} NH{nh} dropout {p}");
            assert_close(&format!("attention dqkv {what}"), &got[0], &wq, 1e-5 * (t as f32).sqrt(), 1e-4);
            assert_close(&format!("attention dpreatt {what}"), &got[1], &wp, 1e-6, 1e-4);
        }
    }
}
gpu_test!(attention_backward, attention_bwd);

/// Every matmul variant gives bit-identical results (one fma chain over k in order, then bias,
/// then C), so switching among them cannot change a training run: NN, NT and TN at ragged shapes,
/// K chunks, with bias and accumulation.
async fn matmul_variants_identical(k: Arc<Kernels>) {
    let g = &k.gpu;
    let all = matmuls(&k);
    let mut compared = 0;
    for (i, &(m, kk, n)) in
        [(64, 128, 384), (132, 20, 260), (12, 8, 20), (8, 70000, 4), (200, 36, 100)].iter().enumerate()
    {
        for (ta, tb) in [(false, false), (false, true), (true, false)] {
            let mut rng = Rng::new(1700 + i as u64);
            let (a, b) = (rng.vec(m * kk, -1.0, 1.0), rng.vec(kk * n, -1.0, 1.0));
            let (bias, c0) = (rng.vec(n, -1.0, 1.0), rng.vec(m * n, -1.0, 1.0));
            let at = if ta { g.upload("a", &[kk, m], &a) } else { g.upload("a", &[m, kk], &a) };
            let bt = if tb { g.upload("b", &[n, kk], &b) } else { g.upload("b", &[kk, n], &b) };
            let bias_t = g.upload("bias", &[n], &bias);
            let mut first: Option<(String, Vec<f32>)> = None;
            for mm in &all {
                let out = g.upload("c", &[m, n], &c0);
                let mut prog = Program::default();
                mm.gemm(&mut prog, &out, op(&at, ta), op(&bt, tb), Some(&bias_t), true);
                let got = run_read(&k, &prog, &out).await;
                let name = wgpt::kernels::matmul::Product::of(op(&at, ta), op(&bt, tb))
                    .map_or("shared".to_string(), |p| mm.choice(&p).name());
                match &first {
                    None => first = Some((name, got)),
                    Some((first_name, want)) => {
                        let diff = got.iter().zip(want).position(|(x, y)| x.to_bits() != y.to_bits());
                        assert!(
                            diff.is_none(),
                            "M{m} K{kk} N{n} ta {ta} tb {tb}: {name} differs from {first_name} at {:?}: {} vs {}",
                            diff,
                            got[diff.unwrap_or(0)],
                            want[diff.unwrap_or(0)]
                        );
                        compared += 1;
                    }
                }
            }
        }
    }
    println!("{compared} products bit-identical to the first variant's");
}
gpu_test!(matmul_variants_bit_identical, matmul_variants_identical);

/// The flash implementations the adapter runs.
/// GPT-2's heads: `nh` of C / nh, each its own key and value head.
fn mha(c: usize, nh: usize) -> AttnDims {
    AttnDims { nh, kv: nh, hs: c / nh }
}

fn flash(k: &Kernels) -> Vec<AttentionImpl> {
    wgpt::kernels::AttentionKind::Flash.impls().iter().copied().filter(|i| i.runs_on(&k.gpu)).collect()
}

/// Attention shapes (B, T, C, NH): T = 1, ragged T against the tiled kernels' 64-row blocks and
/// 16- or 32-key tiles, T = block (64), one head and many, head sizes 4 to 64, and GPT-2's
/// longest rows (T 1024, hs 64).
const ATTN_SHAPES: [(usize, usize, usize, usize); 6] =
    [(1, 1, 8, 1), (2, 7, 12, 3), (1, 64, 64, 4), (2, 33, 48, 6), (1, 130, 20, 1), (1, 1024, 128, 2)];

/// Row-wise logsumexp of the causal scores q·k/√hs, (B, NH, T), in f64.
fn attention_lse(qkv: &[f32], b: usize, t: usize, c: usize, nh: usize) -> Vec<f32> {
    let hs = c / nh;
    let mut lse = vec![0.0; b * nh * t];
    for bi in 0..b {
        for h in 0..nh {
            for ti in 0..t {
                let q = &qkv[(bi * t + ti) * 3 * c + h * hs..][..hs];
                let s: Vec<f64> = (0..=ti)
                    .map(|t2| {
                        let k = &qkv[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
                        q.iter().zip(k).map(|(a, b)| (a * b) as f64).sum::<f64>() / (hs as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                lse[(bi * nh + h) * t + ti] = (m + s.iter().map(|x| (x - m).exp()).sum::<f64>().ln()) as f32;
            }
        }
    }
    lse
}

/// Flash attention's forward by rows, tiled and (with 8-wide subgroups) by subgroups: out against the CPU reference (the classic
/// test's tolerance), lse against the scores' logsumexp in f64, with and without dropout, and
/// the implementations bit-identical.
async fn attention_flash(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(b, t, c, nh)) in ATTN_SHAPES.iter().enumerate() {
        for p in [0.0, 0.25] {
            let mut rng = Rng::new(1800 + i as u64);
            let qkv = rng.vec(b * t * 3 * c, -2.0, 2.0);
            let seed = g.upload("seed", &[1], &[99u32]);
            let mask = drop_mask(99, 5, p, b * nh * t * t);
            let qkv_t = g.upload("qkv", &[b, t, 3 * c], &qkv);
            let (mut wo, mut wa) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
            let io = cpu::AttnFwd { out: &mut wo, att: &mut wa, qkv: &qkv, drop: mask.as_deref() };
            cpu::attention_forward(io, b, t, nh, nh, c / nh);
            let want_lse = attention_lse(&qkv, b, t, c, nh);
            let mut first: Option<Vec<Vec<f32>>> = None;
            for imp in flash(&k) {
                let (out, lse) = (g.tensor("out", &[b, t, c]), g.tensor("lse", &[b, nh, t]));
                let mut prog = Program::default();
                let fwd = AttnFwd { out: &out, saved: &lse, qkv: &qkv_t };
                k.attention.forward(&mut prog, imp, fwd, mha(c, nh), (p > 0.0).then_some((p, &seed, 5)));
                k.gpu.run(|pass| prog.encode(pass));
                let got = g.read_many(&[&out, &lse]).await.unwrap();
                let what = format!("{} B{b} T{t} C{c} NH{nh} dropout {p}", imp.name());
                assert_close(&format!("attention out {what}"), &got[0], &wo, 1e-5, 1e-4);
                assert_close(&format!("attention lse {what}"), &got[1], &want_lse, 1e-5, 1e-5);
                match &first {
                    None => first = Some(got),
                    Some(want) => {
                        assert_bits(&format!("{what}: out"), &got[0], &want[0]);
                        assert_bits(&format!("{what}: lse"), &got[1], &want[1]);
                    }
                }
            }
        }
    }
}
gpu_test!(attention_flash_forward, attention_flash);

/// Flash attention's backward by rows, tiled and by subgroups, each from its own forward: dqkv (starting non-zero,
/// to prove accumulation) against the CPU reference at the classic test's tolerance, the scratch
/// (starting NaN) overwritten with dout·out per row, with and without dropout; the
/// implementations bit-identical.
async fn attention_flash_bwd(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(b, t, c, nh)) in ATTN_SHAPES.iter().enumerate() {
        for p in [0.0, 0.25] {
            let mut rng = Rng::new(1900 + i as u64);
            let seed = g.upload("seed", &[1], &[7u32]);
            let mask = drop_mask(7, 3, p, b * nh * t * t);
            let qkv = rng.vec(b * t * 3 * c, -2.0, 2.0);
            let dout = rng.vec(b * t * c, -1.0, 1.0);
            let dqkv0 = rng.vec(b * t * 3 * c, -1.0, 1.0);
            let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
            let io = cpu::AttnFwd { out: &mut out, att: &mut att, qkv: &qkv, drop: mask.as_deref() };
            cpu::attention_forward(io, b, t, nh, nh, c / nh);
            let (mut wq, mut wp) = (dqkv0.clone(), vec![0.0; b * nh * t * t]);
            let io = cpu::AttnBwd {
                dqkv: &mut wq,
                dpreatt: &mut wp,
                dout: &dout,
                qkv: &qkv,
                att: &att,
                drop: mask.as_deref(),
            };
            cpu::attention_backward(io, b, t, nh, nh, c / nh);
            let hs = c / nh;
            let want_delta: Vec<f32> = (0..b * nh * t)
                .map(|row| {
                    let (bi, h, ti) = (row / (nh * t), row / t % nh, row % t);
                    let at = (bi * t + ti) * c + h * hs;
                    (0..hs).map(|e| dout[at + e] * out[at + e]).sum()
                })
                .collect();
            let (qkv_t, dout_t) = (g.upload("qkv", &[b, t, 3 * c], &qkv), g.upload("dout", &[b, t, c], &dout));
            let drop = (p > 0.0).then_some((p, &seed, 3));
            let mut first: Option<Vec<Vec<f32>>> = None;
            for imp in flash(&k) {
                let (out_t, lse) = (g.tensor("out", &[b, t, c]), g.tensor("lse", &[b, nh, t]));
                let dqkv = g.upload("dqkv", &[b, t, 3 * c], &dqkv0);
                let delta = g.upload("delta", &[b, nh, t], &vec![f32::NAN; b * nh * t]);
                let mut prog = Program::default();
                k.attention.forward(
                    &mut prog,
                    imp,
                    AttnFwd { out: &out_t, saved: &lse, qkv: &qkv_t },
                    mha(c, nh),
                    drop,
                );
                let bwd =
                    AttnBwd { dqkv: &dqkv, scratch: &delta, dout: &dout_t, qkv: &qkv_t, out: &out_t, saved: &lse };
                k.attention.backward(&mut prog, imp, bwd, mha(c, nh), drop);
                k.gpu.run(|pass| prog.encode(pass));
                let got = g.read_many(&[&dqkv, &delta]).await.unwrap();
                let what = format!("{} B{b} T{t} C{c} NH{nh} dropout {p}", imp.name());
                assert_close(&format!("attention dqkv {what}"), &got[0], &wq, 1e-5 * (t as f32).sqrt(), 1e-4);
                assert_close(&format!("attention dout·out {what}"), &got[1], &want_delta, 1e-5, 1e-4);
                match &first {
                    None => first = Some(got),
                    Some(want) => assert_bits(&format!("{what}: dqkv"), &got[0], &want[0]),
                }
            }
        }
    }
}
gpu_test!(attention_flash_backward, attention_flash_bwd);

async fn gelu_bwd(k: Arc<Kernels>) {
    let g = &k.gpu;
    // (n, range): the widest reaches the clamped tanh, where the gradient must be 1 or 0, not NaN
    for (i, &(n, r)) in [(1usize, 1.0), (63, 5.0), (1000, 10.0), (70_001, 30.0)].iter().enumerate() {
        let mut rng = Rng::new(1000 + i as u64);
        let inp = rng.vec(n, -r, r);
        let dout = rng.vec(n, -1.0, 1.0);
        let dinp0 = rng.vec(n, -1.0, 1.0);
        let dinp = g.upload("dinp", &[n], &dinp0);
        let mut prog = Program::default();
        k.gelu.backward(&mut prog, &dinp, &g.upload("inp", &[n], &inp), &g.upload("dout", &[n], &dout));
        let got = run_read(&k, &prog, &dinp).await;
        let mut want = dinp0;
        cpu::gelu_backward(&mut want, &inp, &dout);
        // sech² = 1 − tanh² turns tanh's last-ulp differences into ~1e-7, times x·(1 + 0.134·x²)
        assert_close(&format!("gelu dinp n{n} range ±{r}"), &got, &want, 1e-5, 1e-5);
    }
}
gpu_test!(gelu_backward, gelu_bwd);

async fn residual_bwd(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &n) in [1usize, 65, 4097].iter().enumerate() {
        let mut rng = Rng::new(1100 + i as u64);
        let (da0, db0, dout) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let (da, db) = (g.upload("da", &[n], &da0), g.upload("db", &[n], &db0));
        let mut prog = Program::default();
        k.residual.backward(&mut prog, &da, &db, &g.upload("dout", &[n], &dout));
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&da, &db]).await.unwrap();
        let (mut wa, mut wb) = (da0, db0);
        cpu::residual_backward(&mut wa, &mut wb, &dout);
        assert_close(&format!("residual da n{n}"), &got[0], &wa, 0.0, 0.0);
        assert_close(&format!("residual db n{n}"), &got[1], &wb, 0.0, 0.0);
    }
}
gpu_test!(residual_backward, residual_bwd);

async fn crossentropy_bwd(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(rows, v)) in [(1, 1), (7, 65), (300, 11), (3, 50257), (64, 50257)].iter().enumerate() {
        let mut rng = Rng::new(1200 + i as u64);
        let logits = rng.vec(rows * v, -10.0, 10.0);
        let targets = rng.ids(rows, v);
        let dloss = 1.0 / rows as f32;
        let dlogits = g.upload("dlogits", &[rows, v], &vec![f32::NAN; rows * v]);
        let mut prog = Program::default();
        let (logits_t, lse_t) =
            (g.upload("logits", &[rows, v], &logits), g.upload("lse", &[rows], &logsumexp(&logits, v)));
        let targets_t = g.upload("targets", &[rows], &targets);
        let counted = g.upload("counted", &[1], &[rows as f32]); // every target counts
        let t = CrossEntropyBwd {
            dlogits: &dlogits,
            logits: &logits_t,
            lse: &lse_t,
            targets: &targets_t,
            counted: &counted,
            scale: None,
            softcap: None,
        };
        k.crossentropy.backward(&mut prog, t, dloss);
        let got = run_read(&k, &prog, &dlogits).await;
        let mut want = vec![0.0; rows * v];
        cpu::crossentropy_backward(&mut want, &logits, &targets, dloss, v);
        assert_close(&format!("crossentropy dlogits N{rows} V{v}"), &got, &want, 1e-6 * dloss, 1e-4);
    }
}
gpu_test!(crossentropy_backward, crossentropy_bwd);

/// Cross-entropy with about half the targets IGNOREd (answer-only loss): losses, the mean over
/// the counted targets, the count, and the backward reading the forward's count, against the CPU
/// reference at ragged shapes, and a batch where nothing counts (loss and gradient 0).
async fn crossentropy_ignore(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(rows, v, keep)) in [(7, 65, 2), (33, 97, 2), (300, 11, 3), (5, 13, 0)].iter().enumerate() {
        let mut rng = Rng::new(1250 + i as u64);
        let logits = rng.vec(rows * v, -10.0, 10.0);
        let mut targets = rng.ids(rows, v);
        for y in targets.iter_mut() {
            if keep == 0 || rng.below(keep) == 0 {
                *y = wgpt::kernels::IGNORE;
            }
        }
        let counted_want = targets.iter().filter(|&&y| y != wgpt::kernels::IGNORE).count();
        let (loss, counted) = (g.tensor("loss", &[1]), g.tensor("counted", &[1]));
        let (losses, lse) = (g.tensor("losses", &[rows]), g.tensor("lse", &[rows]));
        let (logits_t, targets_t) = (g.upload("logits", &[rows, v], &logits), g.upload("targets", &[rows], &targets));
        let dlogits = g.upload("dlogits", &[rows, v], &vec![f32::NAN; rows * v]);
        let dloss = 1.0 / rows as f32;
        let mut prog = Program::default();
        let (counted_t, logits_r, targets_r) = (&counted, &logits_t, &targets_t);
        let fwd = CrossEntropyFwd {
            loss: &loss,
            counted: counted_t,
            losses: &losses,
            lse: &lse,
            logits: logits_r,
            targets: targets_r,
        };
        k.crossentropy.forward(&mut prog, fwd);
        let bwd = CrossEntropyBwd {
            dlogits: &dlogits,
            logits: logits_r,
            lse: &lse,
            targets: targets_r,
            counted: counted_t,
            scale: None,
            softcap: None,
        };
        k.crossentropy.backward(&mut prog, bwd, dloss);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&losses, &loss, &counted, &dlogits]).await.unwrap();
        let mut want = vec![0.0; rows];
        let mean = cpu::crossentropy_forward(&mut want, &logits, &targets, v);
        let what = format!("N{rows} V{v}, {counted_want} counted");
        assert_close(&format!("crossentropy ignore losses {what}"), &got[0], &want, 1e-5, 1e-5);
        assert_close(&format!("crossentropy ignore mean {what}"), &got[1], &[mean], 1e-5, 1e-5);
        assert_eq!(got[2], [counted_want as f32], "counted {what}");
        let mut dwant = vec![0.0; rows * v];
        cpu::crossentropy_backward(&mut dwant, &logits, &targets, dloss, v);
        assert_close(&format!("crossentropy ignore dlogits {what}"), &got[3], &dwant, 1e-6 * dloss, 1e-4);
        assert!(got[3].iter().all(|x| x.is_finite()), "{what}: dlogits finite");
    }
}
gpu_test!(crossentropy_ignored_targets, crossentropy_ignore);

/// Global gradient norm (one tensor longer than a 65536-element chunk) and AdamW with clipping
/// active, against torch's formulas on the CPU; two steps so the moments matter.
async fn adamw(k: Arc<Kernels>) {
    use wgpt::kernels::{AdamW, AdamWUpdate, ScalerHead, StepParams};
    let g = &k.gpu;
    let sizes = [1usize, 1000, 70_001];
    let mut rng = Rng::new(1300);
    let params: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec(n, -1.0, 1.0)).collect();
    let grads: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec(n, -0.1, 0.1)).collect();
    let (p_t, g_t): (Vec<Tensor>, Vec<Tensor>) =
        params.iter().zip(&grads).map(|(p, gr)| (g.upload("p", &[p.len()], p), g.upload("g", &[gr.len()], gr))).unzip();
    let m_t: Vec<Tensor> = sizes.iter().map(|&n| g.tensor("m", &[n])).collect();
    let v_t: Vec<Tensor> = sizes.iter().map(|&n| g.tensor("v", &[n])).collect();
    let grad_refs: Vec<&Tensor> = g_t.iter().collect();
    let (norm, partials) = (g.tensor("norm", &[1]), g.tensor("partials", &[AdamW::partials_len(&grad_refs)]));
    let step = g.tensor("step", &[8]);
    let scaler = ScalerHead::off().tensor(g);
    let wd = [0.0, 0.1, 0.1];
    let mut prog = Program::default();
    k.adamw.grad_norm(&mut prog, &norm, &partials, &grad_refs, &scaler);
    for i in 0..sizes.len() {
        let (step, norm, scaler) = (&step, &norm, &scaler);
        let t = AdamWUpdate { param: &p_t[i], m: &m_t[i], v: &v_t[i], grad: &g_t[i], step, norm, scaler };
        k.adamw.update(&mut prog, t, wd[i]);
    }
    let (lr, b1, b2, eps, clip) = (1e-2, 0.9, 0.95, 1e-8, 1.0);
    let (mut cp, mut cm, mut cv) = (params.clone(), vec![vec![]; 3], vec![vec![]; 3]);
    for i in 0..3 {
        cm[i] = vec![0.0; sizes[i]];
        cv[i] = vec![0.0; sizes[i]];
    }
    let want_norm = cpu::grad_norm(&grads.iter().map(|x| &x[..]).collect::<Vec<_>>());
    assert!(want_norm > clip, "the test must exercise clipping");
    for t in 1..=2 {
        g.write(&step, bytemuck::bytes_of(&StepParams::new(t as u64, lr, b1, b2, eps, clip)));
        g.run(|pass| prog.encode(pass));
        let clip_scale = (clip / (want_norm + 1e-6)).min(1.0);
        let step = cpu::AdamWStep { lr, beta1: b1, beta2: b2, eps, t, clip_scale };
        for i in 0..3 {
            let io = cpu::AdamWUpdate { param: &mut cp[i], m: &mut cm[i], v: &mut cv[i], grad: &grads[i] };
            cpu::adamw_update(io, &step, wd[i]);
        }
    }
    let got_norm = g.read(&norm).await.unwrap();
    assert_close("grad norm", &got_norm, &[want_norm], 1e-6, 1e-5);
    for i in 0..3 {
        let got = g.read_many(&[&p_t[i], &m_t[i], &v_t[i]]).await.unwrap();
        assert_close(&format!("adamw param n{}", sizes[i]), &got[0], &cp[i], 1e-6, 1e-5);
        assert_close(&format!("adamw m n{}", sizes[i]), &got[1], &cm[i], 1e-7, 1e-5);
        assert_close(&format!("adamw v n{}", sizes[i]), &got[2], &cv[i], 1e-9, 1e-5);
    }
}
gpu_test!(adamw_update, adamw);

/// Dropout against the CPU rule (same hash), and the kept fraction near 1 − p.
async fn dropout(k: Arc<Kernels>) {
    use wgpt::kernels::dropout::keep;
    let g = &k.gpu;
    for (i, &(n, p, seed, site)) in
        [(1usize, 0.5f32, 1u32, 0u32), (1000, 0.1, 7, 3), (100_003, 0.3, 12345, 9)].iter().enumerate()
    {
        let mut rng = Rng::new(1400 + i as u64);
        let x = rng.vec(n, -1.0, 1.0);
        let t = g.upload("x", &[n], &x);
        let mut prog = Program::default();
        k.dropout.apply(&mut prog, &t, &g.upload("seed", &[1], &[seed]), site, p);
        let got = run_read(&k, &prog, &t).await;
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(j, &v)| if keep(seed, site, j as u32, p) { v * (1.0 / (1.0 - p)) } else { 0.0 })
            .collect();
        assert_close(&format!("dropout n{n} p{p}"), &got, &want, 0.0, 0.0);
        if n > 10_000 {
            let kept = want.iter().filter(|&&v| v != 0.0).count() as f32 / n as f32;
            assert!((kept - (1.0 - p)).abs() < 0.01, "kept fraction {kept}, expected {}", 1.0 - p);
        }
    }
}
gpu_test!(dropout_apply, dropout);

/// SGD with momentum (Nesterov and not, with decay and without) at ragged sizes (the scalar and
/// vec4 paths, odd tails, a tensor over one 65536-element norm chunk), clipping active and the
/// loss scaled by 1024, two steps against torch's formulas on the CPU; then a step whose
/// gradients overflow is skipped: weights and buffers stay bit for bit.
async fn sgd(k: Arc<Kernels>) {
    use wgpt::kernels::{AdamW, ScalerHead, SgdConsts, SgdUpdate, StepParams};
    let g = &k.gpu;
    let sizes = [1usize, 3, 4, 5, 1023, 65537];
    let scale = 1024.0f32;
    let mut rng = Rng::new(2600);
    let params: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec(n, -1.0, 1.0)).collect();
    let grads: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec(n, -0.1, 0.1)).collect();
    let scaled: Vec<Vec<f32>> = grads.iter().map(|gr| gr.iter().map(|x| x * scale).collect()).collect();
    let p_t: Vec<Tensor> = params.iter().map(|p| g.upload("p", &[p.len()], p)).collect();
    let g_t: Vec<Tensor> = scaled.iter().map(|gr| g.upload("g", &[gr.len()], gr)).collect();
    let b_t: Vec<Tensor> = sizes.iter().map(|&n| g.tensor("buf", &[n])).collect();
    let grad_refs: Vec<&Tensor> = g_t.iter().collect();
    let (norm, partials) = (g.tensor("norm", &[1]), g.tensor("partials", &[AdamW::partials_len(&grad_refs)]));
    let step = g.tensor("step", &[8]);
    let scaler = ScalerHead::on(scale, 0, 0).tensor(g);
    let consts = |i: usize| SgdConsts {
        weight_decay: if i.is_multiple_of(2) { 0.1 } else { 0.0 },
        momentum: 0.9,
        nesterov: !i.is_multiple_of(3),
    };
    let mut prog = Program::default();
    k.adamw.grad_norm(&mut prog, &norm, &partials, &grad_refs, &scaler);
    for i in 0..sizes.len() {
        let (step, norm, scaler) = (&step, &norm, &scaler);
        let t = SgdUpdate { param: &p_t[i], buf: &b_t[i], grad: &g_t[i], step, norm, scaler };
        k.sgd.update(&mut prog, t, consts(i));
    }
    let (lr, clip) = (0.05f32, 1.0f32);
    let want_norm = cpu::grad_norm(&grads.iter().map(|x| &x[..]).collect::<Vec<_>>());
    assert!(want_norm > clip, "the test must exercise clipping");
    let (mut cp, mut cb) = (params.clone(), sizes.iter().map(|&n| vec![0.0; n]).collect::<Vec<_>>());
    for t in 1..=2 {
        g.write(&step, bytemuck::bytes_of(&StepParams::new(t, lr, 0.9, 0.99, 1e-8, clip)));
        g.run(|pass| prog.encode(pass));
        let clip_scale = (clip / (want_norm + 1e-6)).min(1.0);
        for (i, c) in (0..sizes.len()).map(|i| (i, consts(i))) {
            let s = cpu::SgdStep { lr, momentum: c.momentum, nesterov: c.nesterov, clip_scale };
            cpu::sgd_update(&mut cp[i], &mut cb[i], &grads[i], &s, c.weight_decay);
        }
    }
    let mut before = vec![];
    for i in 0..sizes.len() {
        let got = g.read_many(&[&p_t[i], &b_t[i]]).await.unwrap();
        assert_close(&format!("sgd param n{}", sizes[i]), &got[0], &cp[i], 1e-6, 1e-5);
        assert_close(&format!("sgd buf n{}", sizes[i]), &got[1], &cb[i], 1e-6, 1e-5);
        before.push(got);
    }
    // a gradient overflows: the norm is not finite and every tensor's update is skipped
    let mut overflow = scaled[4].clone();
    overflow[7] = f32::INFINITY;
    g.write(&g_t[4], &overflow);
    g.run(|pass| prog.encode(pass));
    for i in 0..sizes.len() {
        let got = g.read_many(&[&p_t[i], &b_t[i]]).await.unwrap();
        assert_close(&format!("skipped sgd param n{}", sizes[i]), &got[0], &before[i][0], 0.0, 0.0);
        assert_close(&format!("skipped sgd buf n{}", sizes[i]), &got[1], &before[i][1], 0.0, 0.0);
    }
}
gpu_test!(sgd_update, sgd);

/// SwiGLU (shaders/mlp.wgsl's gated entries) against the CPU at ragged (rows, I): one row, I
/// odd (the scalar instance) and multiples of 4 (the vec4 one), inputs past the sigmoid's clamp.
/// The output starts as NaN (an element left unwritten fails); the gradient from random values
/// (a `+=` that overwrote fails).
async fn swiglu(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (s, &(n, i)) in [(1, 1), (1, 20), (7, 13), (65, 4), (3, 340), (193, 7), (2, 1021)].iter().enumerate() {
        let mut rng = Rng::new(1100 + s as u64);
        let (inp, dout, dinp0) =
            (rng.vec(n * 2 * i, -12.0, 12.0), rng.vec(n * i, -1.0, 1.0), rng.vec(n * 2 * i, -1.0, 1.0));
        let out = g.upload("out", &[n, i], &vec![f32::NAN; n * i]);
        let (inp_t, dout_t) = (g.upload("inp", &[n, 2 * i], &inp), g.upload("dout", &[n, i], &dout));
        let dinp = g.upload("dinp", &[n, 2 * i], &dinp0);
        let mut prog = Program::default();
        k.swiglu.forward(&mut prog, &out, &inp_t);
        k.swiglu.backward(&mut prog, &dinp, &inp_t, &dout_t);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&out, &dinp]).await.unwrap();
        let mut want = vec![0.0; n * i];
        cpu::swiglu_forward(&mut want, &inp, i);
        let mut wd = dinp0;
        cpu::swiglu_backward(&mut wd, &inp, &dout, i);
        assert_close(&format!("swiglu N{n} I{i}"), &got[0], &want, 1e-6, 1e-5);
        assert_close(&format!("swiglu dinp N{n} I{i}"), &got[1], &wd, 1e-6, 1e-5);
    }
}
gpu_test!(swiglu_forward_backward, swiglu);

/// A SwiGLU MLP at ragged shapes on every matmul variant the adapter runs: fc = x·W_fc + b_fc
/// (N x C x 2I), h = silu(gate)·up, y = h·W_proj + b_proj (N x I x C), and its backward (dx,
/// both weights' and biases' gradients), against the CPU. N and I odd put the products on the
/// unaligned kernels (NN1, TN1, the generic one); I a multiple of 4 on each variant's own.
async fn swiglu_mlp(k: Arc<Kernels>) {
    let g = &k.gpu;
    let shapes = [(7, 12, 13), (33, 20, 5), (65, 16, 24), (130, 8, 6)];
    for mm in matmuls(&k) {
        let square = g.tensor("square", &[4, 4]);
        let product = wgpt::kernels::matmul::Product::of(op(&square, false), op(&square, false)).unwrap();
        let variant = mm.choice(&product).name();
        for (s, &(n, c, i)) in shapes.iter().enumerate() {
            let mut rng = Rng::new(1200 + s as u64);
            let (x, wfc, bfc) = (rng.vec(n * c, -1.0, 1.0), rng.vec(c * 2 * i, -0.5, 0.5), rng.vec(2 * i, -0.5, 0.5));
            let (wp, bp, dy) = (rng.vec(i * c, -0.5, 0.5), rng.vec(c, -0.5, 0.5), rng.vec(n * c, -1.0, 1.0));
            let up = |name, shape: &[usize], v: &[f32]| g.upload(name, shape, v);
            let (x_t, wfc_t, bfc_t) = (up("x", &[n, c], &x), up("wfc", &[c, 2 * i], &wfc), up("bfc", &[2 * i], &bfc));
            let (wp_t, bp_t, dy_t) = (up("wp", &[i, c], &wp), up("bp", &[c], &bp), up("dy", &[n, c], &dy));
            let (fc, h, y) = (g.tensor("fc", &[n, 2 * i]), g.tensor("h", &[n, i]), g.tensor("y", &[n, c]));
            let (dx, dfc, dh) = (g.tensor("dx", &[n, c]), g.tensor("dfc", &[n, 2 * i]), g.tensor("dh", &[n, i]));
            let (dwfc, dbfc) = (g.tensor("dwfc", &[c, 2 * i]), g.tensor("dbfc", &[2 * i]));
            let (dwp, dbp) = (g.tensor("dwp", &[i, c]), g.tensor("dbp", &[c]));
            let mut prog = Program::default();
            mm.forward(&mut prog, &fc, &x_t, &wfc_t, Some(&bfc_t));
            k.swiglu.forward(&mut prog, &h, &fc);
            mm.forward(&mut prog, &y, &h, &wp_t, Some(&bp_t));
            let bwd = LinearBwd { dinp: &dh, dweight: &dwp, dbias: Some(&dbp), dout: &dy_t, inp: &h, weight: &wp_t };
            mm.backward(&mut prog, bwd);
            k.swiglu.backward(&mut prog, &dfc, &fc, &dh);
            let bwd =
                LinearBwd { dinp: &dx, dweight: &dwfc, dbias: Some(&dbfc), dout: &dfc, inp: &x_t, weight: &wfc_t };
            mm.backward(&mut prog, bwd);
            k.gpu.run(|pass| prog.encode(pass));
            let got = g.read_many(&[&y, &dx, &dwfc, &dbfc, &dwp, &dbp]).await.unwrap();
            let (mut wfch, mut wh, mut wy) = (vec![0.0; n * 2 * i], vec![0.0; n * i], vec![0.0; n * c]);
            cpu::matmul_forward(&mut wfch, &x, &wfc, Some(&bfc), n, c, 2 * i);
            cpu::swiglu_forward(&mut wh, &wfch, i);
            cpu::matmul_forward(&mut wy, &wh, &wp, Some(&bp), n, i, c);
            let (mut wdh, mut wdwp, mut wdbp) = (vec![0.0; n * i], vec![0.0; i * c], vec![0.0; c]);
            let io = cpu::MatmulBwd {
                dinp: &mut wdh,
                dweight: &mut wdwp,
                dbias: Some(&mut wdbp),
                dout: &dy,
                inp: &wh,
                weight: &wp,
            };
            cpu::matmul_backward(io, n, i, c);
            let mut wdfc = vec![0.0; n * 2 * i];
            cpu::swiglu_backward(&mut wdfc, &wfch, &wdh, i);
            let (mut wdx, mut wdwfc, mut wdbfc) = (vec![0.0; n * c], vec![0.0; c * 2 * i], vec![0.0; 2 * i]);
            let io = cpu::MatmulBwd {
                dinp: &mut wdx,
                dweight: &mut wdwfc,
                dbias: Some(&mut wdbfc),
                dout: &wdfc,
                inp: &x,
                weight: &wfc,
            };
            cpu::matmul_backward(io, n, c, 2 * i);
            let what = |t: &str| format!("swiglu mlp {t} N{n} C{c} I{i} on {variant}");
            let sum_tol = 1e-5 * (n as f32).sqrt();
            assert_close(&what("y"), &got[0], &wy, 1e-5, 1e-4);
            assert_close(&what("dx"), &got[1], &wdx, 1e-5, 1e-4);
            assert_close(&what("dW_fc"), &got[2], &wdwfc, sum_tol, 1e-4);
            assert_close(&what("db_fc"), &got[3], &wdbfc, sum_tol, 1e-4);
            assert_close(&what("dW_proj"), &got[4], &wdwp, sum_tol, 1e-4);
            assert_close(&what("db_proj"), &got[5], &wdbp, sum_tol, 1e-4);
        }
    }
}
gpu_test!(swiglu_mlp_every_variant, swiglu_mlp);
