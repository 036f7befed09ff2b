//! Muon's kernels (shaders/muon.wgsl with the matrix products, src/kernels/muon.rs) against the
//! CPU reference (src/cpu/muon.rs: torch.optim.Muon's step, Newton-Schulz in f32 with f64 sums)
//! at ragged shapes, wide, square-ish and tall (the transposed path), with Nesterov on and off,
//! clipping, loss scaling and a skipped step.

mod common;
use common::assert_close;

use std::sync::Arc;

use common::Rng;
use wgpt::cpu;
use wgpt::kernels::{Kernels, MuonStep, MuonUpdate, NsConsts, NsScratch, Program, ScalerHead, StepParams};
use wgpt::Tensor;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Wide, tall, odd and vec4-aligned stored shapes (rows, cols).
const SHAPES: [(usize, usize); 5] = [(7, 5), (5, 7), (33, 97), (64, 192), (192, 64)];

/// Newton-Schulz's output O has entries of about 0.1 to 0.5 whose rounding the five steps'
/// polynomial (|a| + |b| + |c| ≈ 10) amplifies: f32 products against f64 sums were at most
/// 9.5e-7 apart on lavapipe (printed per shape); a bound 4x that, relative terms kept small as
/// O's near-zero entries make relative errors meaningless.
const NS_ATOL: f32 = 4e-6;
const NS_RTOL: f32 = 1e-5;

/// Newton-Schulz alone on random matrices.
async fn newton_schulz(k: Arc<Kernels>) {
    let g = &k.gpu;
    let ns = NsConsts::default();
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        let mut rng = Rng::new(2600 + i as u64);
        let x = rng.vec(rows * cols, -1.0, 1.0);
        let s = NsScratch::new(g, rows, cols);
        g.write(&s.x, &x);
        let mut prog = Program::default();
        k.muon.orthogonalize(&mut prog, &k.matmul, &s, ns);
        g.run(|pass| prog.encode(pass));
        let got = g.read(&s.x).await.unwrap();
        let want = cpu::newton_schulz(&x, rows, cols, ns.coefficients, ns.steps, ns.eps);
        assert_close(&format!("newton-schulz {rows}x{cols}"), &got, &want, NS_ATOL, NS_RTOL);
    }
}
gpu_test!(muon_newton_schulz, newton_schulz);

/// The tensors of one matrix's step, on the GPU.
struct Gpu1 {
    w: Tensor,
    buf: Tensor,
    grad: Tensor,
    scratch: NsScratch,
}

/// Two Muon steps of every shape in one program (the matrices numbered in MuonStep), with
/// clipping active and, where `scale` is given, loss scaling at that scale; against the CPU
/// reference given the clipped gradients.
async fn steps(k: &Kernels, nesterov: bool, scale: Option<f32>) {
    let g = &k.gpu;
    let (lr, wd, momentum, clip) = (0.02, 0.1, 0.95, 1.0);
    let ns = NsConsts::default();
    let mut rng = Rng::new(2700 + u64::from(nesterov));
    let w: Vec<Vec<f32>> = SHAPES.iter().map(|&(r, c)| rng.vec(r * c, -0.5, 0.5)).collect();
    let buf: Vec<Vec<f32>> = SHAPES.iter().map(|&(r, c)| rng.vec(r * c, -0.1, 0.1)).collect();
    let grad: Vec<Vec<f32>> = SHAPES.iter().map(|&(r, c)| rng.vec(r * c, -0.1, 0.1)).collect();
    let norm_value = grad.iter().flatten().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt() as f32;
    assert!(norm_value > clip, "the test must exercise clipping");
    let loss_scale = scale.unwrap_or(1.0);
    let mats: Vec<Gpu1> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, &(r, c))| Gpu1 {
            w: g.upload("w", &[r, c], &w[i]),
            buf: g.upload("buf", &[r, c], &buf[i]),
            grad: g.upload("grad", &[r, c], &grad[i].iter().map(|x| x * loss_scale).collect::<Vec<_>>()),
            scratch: NsScratch::new(g, r, c),
        })
        .collect();
    let step = g.tensor("step", &[std::mem::size_of::<StepParams>() / 4]);
    g.write(&step, bytemuck::bytes_of(&StepParams::new(1, 1e-3, 0.9, 0.95, 1e-8, clip)));
    let norm = g.upload("norm", &[1], &[norm_value]);
    let scaler = scale.map_or(ScalerHead::off(), |s| ScalerHead::on(s, 0, 0)).tensor(g);
    let mut table = MuonStep::new(momentum as f32, nesterov);
    SHAPES.iter().for_each(|&(r, c)| table.push(lr, wd, r, c));
    let muon = g.upload("muon_step", &[MuonStep::words_len(SHAPES.len())], &table.words());
    let mut prog = Program::default();
    for (slot, m) in mats.iter().enumerate() {
        let (step, muon, norm, scaler) = (&step, &muon, &norm, &scaler);
        let t = MuonUpdate { param: &m.w, buf: &m.buf, grad: &m.grad, step, muon, norm, scaler, slot };
        k.muon.update(&mut prog, &k.matmul, t, &m.scratch, ns);
    }
    g.run(|pass| prog.encode(pass));
    g.run(|pass| prog.encode(pass));
    let clip_scale = (clip / (norm_value + 1e-6)).min(1.0);
    let h = cpu::MuonHyper {
        lr,
        weight_decay: wd,
        momentum,
        nesterov,
        coefficients: ns.coefficients,
        steps: ns.steps,
        eps: ns.eps,
    };
    for (i, &(r, c)) in SHAPES.iter().enumerate() {
        let (mut cw, mut cb) = (w[i].clone(), buf[i].clone());
        let clipped: Vec<f32> = grad[i].iter().map(|x| x * clip_scale).collect();
        for _ in 0..2 {
            cpu::muon_step(&mut cw, &mut cb, &clipped, r, c, h);
        }
        let got = g.read_many(&[&mats[i].w, &mats[i].buf]).await.unwrap();
        let what = format!("muon {r}x{c} nesterov {nesterov} scale {scale:?}");
        // w (|w| ≤ 0.5) moves by adj·O ≈ 4e-3 per step, O's error times adj ≤ 0.04 is ~4e-8: a
        // few ulps of w (6e-8) each step; the decay alone moves w by lr·wd·|w| ≈ 1e-3, the clip
        // factor (~0.1) changes buf by ~10x its bound
        assert_close(&format!("{what} w"), &got[0], &cw, 2e-7, 0.0);
        assert_close(&format!("{what} buf"), &got[1], &cb, 5e-8, 0.0);
    }
}

async fn muon_steps(k: Arc<Kernels>) {
    steps(&k, true, None).await;
    steps(&k, false, None).await;
    steps(&k, true, Some(1024.0)).await;
}
gpu_test!(muon_update, muon_steps);

/// Under loss scaling, a gradient norm that overflowed skips the step: the weights and the
/// momentum buffer keep every bit.
async fn skipped(k: Arc<Kernels>) {
    let g = &k.gpu;
    let (r, c) = (33, 97);
    let mut rng = Rng::new(2800);
    let (w, buf, grad) = (rng.vec(r * c, -0.5, 0.5), rng.vec(r * c, -0.1, 0.1), rng.vec(r * c, -0.1, 0.1));
    let (w_t, buf_t, grad_t) =
        (g.upload("w", &[r, c], &w), g.upload("buf", &[r, c], &buf), g.upload("g", &[r, c], &grad));
    let step = g.tensor("step", &[std::mem::size_of::<StepParams>() / 4]);
    g.write(&step, bytemuck::bytes_of(&StepParams::new(1, 1e-3, 0.9, 0.95, 1e-8, 0.0)));
    let norm = g.upload("norm", &[1], &[f32::INFINITY]);
    let scaler = ScalerHead::on(65536.0, 0, 0).tensor(g);
    let mut table = MuonStep::new(0.95, true);
    table.push(0.02, 0.1, r, c);
    let muon = g.upload("muon_step", &[MuonStep::words_len(1)], &table.words());
    let s = NsScratch::new(g, r, c);
    let mut prog = Program::default();
    let t = MuonUpdate {
        param: &w_t,
        buf: &buf_t,
        grad: &grad_t,
        step: &step,
        muon: &muon,
        norm: &norm,
        scaler: &scaler,
        slot: 0,
    };
    k.muon.update(&mut prog, &k.matmul, t, &s, NsConsts::default());
    g.run(|pass| prog.encode(pass));
    let got = g.read_many(&[&w_t, &buf_t]).await.unwrap();
    assert_close("skipped step w", &got[0], &w, 0.0, 0.0);
    assert_close("skipped step buf", &got[1], &buf, 0.0, 0.0);
}
gpu_test!(muon_skipped_step, skipped);
