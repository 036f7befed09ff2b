//! `wgpt bench matmul` and `wgpt bench attention`: the kernels alone at GPT-2's shapes, every
//! candidate of each problem timed and the one the kernels run marked.

use wgpt::kernels::matmul::Product;
use wgpt::kernels::{software, AttentionImpl, AttnShape, Kernels, LmHeadBwd, Matmul, MatmulVariant, Program};
use wgpt::rng::Rng;
use wgpt::tune;
use wgpt::{Gpu, Result};

use super::flops_row;

/// Milliseconds per run of `prog` ([`tune::time_program`]: GPU timestamps where the device has
/// them, else the wall clock up to a readback).
fn time_program(gpu: &Gpu, prog: &Program, iters: usize) -> Result<f64> {
    pollster::block_on(tune::time_program(gpu, prog, iters))
}

/// B·T of the GPT-2 matmul shapes (B 4, T 1024 or B 8, T 512).
const BT: usize = 4096;

/// Prints one problem's candidates (ms and rate), marking the one the kernels run ("*": autotune's
/// pick where it times, else the family's or the built-in table's).
fn candidates(problem: &str, times: &[(String, f64)], pick: &str, flop: f64) {
    println!("candidates  {problem}");
    for (name, ms) in times {
        let mark = if name == pick { "*" } else { " " };
        println!("          {mark} {name:<24} {ms:>10.3} ms {:>10.1} GFLOP/s", flop / ms / 1e6);
    }
}

/// Every candidate of one product, the pick marked (the fastest where autotune times, kept in
/// `mm`, the bench's own matmul recorders; else the family's or the built-in table's); returns
/// the pick's milliseconds.
fn product_candidates(k: &Kernels, mm: &Matmul, p: Product, iters: usize) -> Result<f64> {
    let mut sel = mm.selection();
    let mut times = vec![];
    for v in MatmulVariant::available(&k.gpu, sel.family) {
        times.push((v, pollster::block_on(tune::time_product(k, v, p, iters))?));
    }
    let timing = tune::times(&k.gpu, sel.family);
    let pick = tune::decide(timing, &times, sel.matmul(&p));
    if timing {
        sel.choices.matmul.insert(p, pick);
        mm.set_selection(sel);
    }
    let named: Vec<(String, f64)> = times.iter().map(|(v, ms)| (v.name(), *ms)).collect();
    candidates(&p.name(), &named, &pick.name(), p.flop());
    Ok(times.iter().find(|(v, _)| *v == pick).map_or(f64::NAN, |(_, ms)| *ms))
}

/// Each product of a Conv1D layer on every candidate: forward out (M,N) = inp (M,K) · w (K,N),
/// the backward products dinp (M,K) += dout · wᵀ (NT) and dweight (K,N) += inpᵀ · dout (TN), then
/// lm_head (V = 50257) forward (NT, per row chunk of wte) and its backward through the model's
/// entry points; one row per product at the pick. The picks go to matmul recorders of the
/// bench's own, never to the kernels' live selection.
pub(super) fn matmul(k: &Kernels, iters: usize, f16: bool) -> Result<()> {
    let g = &k.gpu;
    let mm = Matmul::new(g, k.selection());
    let mut shapes = vec![(1024, 1024, 1024, "1024x1024x1024".to_string())];
    if !software(g) {
        // the share of a GPU's fp32 peak (a minute per candidate on a software adapter)
        shapes.push((4096, 4096, 4096, "4096x4096x4096".to_string()));
    }
    for (c, oc) in [(768, 2304), (768, 768), (768, 3072), (3072, 768)] {
        shapes.push((BT, c, oc, format!("BT {BT}, {c}->{oc}")));
    }
    if f16 {
        // a decode step's products (one row: VM, and VMT for lm_head), f32 and f16 weights
        for (kk, n) in [(768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50257)] {
            let shape = format!("1x{kk}x{n}");
            for half in [false, true] {
                let what = format!("matmul decode row{}", if half { " f16" } else { "" });
                flops_row(&what, &shape, time_linear(k, &mm, [1, kk, n], half, iters)?, 2.0 * (kk * n) as f64);
            }
        }
    }
    for (m, kk, n, shape) in shapes {
        let products = Product::linear(m, kk, n);
        for (p, what) in products.into_iter().zip(["forward", "dinp", "dweight"]) {
            let ms = product_candidates(k, &mm, p, iters)?;
            flops_row(&format!("matmul {what}"), &shape, ms, p.flop());
        }
        if f16 {
            flops_row(
                "matmul forward f16 weights",
                &shape,
                time_linear(k, &mm, [m, kk, n], true, iters)?,
                2.0 * (m * kk * n) as f64,
            );
        }
    }
    let (c, v, rows) = (768, 50257, 512);
    for p in k.matmul.lm_head_products(BT, c, v) {
        product_candidates(k, &mm, p, iters)?;
    }

    // lm_head: logits (BT,V) = x (BT,C) · wte (V,C)ᵀ, and its backward (dx += dlogits · wte,
    // dwte += dlogitsᵀ · x) through the model's entry points, in blocks of 512 rows of x (a block
    // of logits is 103 MB: one binding on devices with 128 MiB bindings; row offsets stay
    // 256-byte aligned) and the row chunks of wte those entry points make.
    let (x, wte, logits) = (g.tensor("x", &[BT, c]), g.tensor("wte", &[v, c]), g.tensor("logits", &[BT, v]));
    let (dx, dwte, dlogits) = (g.tensor("dx", &[BT, c]), g.tensor("dwte", &[v, c]), g.tensor("dlogits", &[BT, v]));
    let (shape, flop) = (format!("BT {BT}, {c}->{v}"), 2.0 * (BT * c * v) as f64);
    let (mut fwd, mut bwd) = (Program::default(), Program::default());
    for r0 in (0..BT).step_by(rows) {
        let (x, logits, dx, dlogits) =
            (x.rows(r0, r0 + rows), logits.rows(r0, r0 + rows), dx.rows(r0, r0 + rows), dlogits.rows(r0, r0 + rows));
        mm.lm_head(&mut fwd, &logits, &x, &wte);
        let (dx, dwte, dlogits, x, wte) = (&dx, &dwte, &dlogits, &x, &wte);
        mm.lm_head_backward(&mut bwd, LmHeadBwd { dx, dwte, dlogits, x, wte, wte16: None });
    }
    flops_row("matmul lm_head forward", &shape, time_program(g, &fwd, iters)?, flop);
    flops_row("matmul lm_head dinp+dweight", &shape, time_program(g, &bwd, iters)?, 2.0 * flop);
    Ok(())
}

/// Milliseconds of out (M,N) = x (M,K) · w at `mm`'s pick, w (K,N) a Conv1D weight, or for
/// N = 50257 lm_head's wte (N,K); with `half` w in f16 (its f16 copy made before the timing).
fn time_linear(k: &Kernels, mm: &Matmul, [m, kk, n]: [usize; 3], half: bool, iters: usize) -> Result<f64> {
    let g = &k.gpu;
    let lm_head = n == 50257;
    let w32 = g.tensor("w", &if lm_head { [n, kk] } else { [kk, n] });
    g.write(&w32, &Rng::new(3).vec(w32.numel(), -0.1, 0.1));
    let w = if half {
        let h = g.tensor_f16("w.f16", &w32.shape);
        let mut convert = Program::default();
        k.matmul.to_f16(&mut convert, &h, &w32);
        g.run(|pass| convert.encode(pass));
        h
    } else {
        w32
    };
    let (x, out) = (g.tensor("x", &[m, kk]), g.tensor("out", &[m, n]));
    let mut prog = Program::default();
    if lm_head {
        mm.lm_head(&mut prog, &out, &x, &w);
    } else {
        mm.forward(&mut prog, &out, &x, &w, None);
    }
    time_program(g, &prog, iters)
}

/// Causal attention without dropout, every implementation. FLOPs count the causal half: q·k
/// and att·v over the T(T+1)/2 (query, key) pairs of each head, 2·hs each, forward; twice that
/// backward (datt, dv, dq and dk). The pick is the fastest where autotune times, else the
/// family's or the built-in table's (the live selection stays as it is).
pub(super) fn attention(k: &Kernels, iters: usize) -> Result<()> {
    let sel = k.selection();
    let timing = tune::times(&k.gpu, sel.family);
    for (b, nh, t, hs) in [(8, 6, 256, 64), (1, 12, 1024, 64), (12, 4, 64, 32)] {
        let s = AttnShape { b, nh, kv: nh, t, hs };
        let mut times = vec![];
        for imp in AttentionImpl::ALL.into_iter().filter(|i| i.runs_on(&k.gpu)) {
            if let Some(fb) = pollster::block_on(tune::time_attention(k, imp, s, iters))? {
                times.push((imp, fb));
            }
        }
        let sums: Vec<(AttentionImpl, f64)> = times.iter().map(|(i, (f, b))| (*i, f + b)).collect();
        let pick = tune::decide(timing, &sums, sel.attention(None, s));
        for (what, part, flop) in [("forward", 0, s.flop()), ("backward", 1, 2.0 * s.flop())] {
            let named: Vec<(String, f64)> =
                times.iter().map(|(i, fb)| (i.name().to_string(), if part == 0 { fb.0 } else { fb.1 })).collect();
            candidates(&format!("attention {what} {}", s.name()), &named, pick.name(), flop);
            let ms = named.iter().find(|(n, _)| n == pick.name()).map_or(f64::NAN, |(_, ms)| *ms);
            flops_row(&format!("attention {what}"), &s.name(), ms, flop);
        }
    }
    Ok(())
}
