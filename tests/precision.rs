//! f16 inference (--precision f16) against Hugging Face: the KV-cache decoder's logits on the
//! parity files, by prefill and by decode steps, within the f16 tolerance and measurably off f32
//! (so the test fails if f16 silently did not run); greedy tokens of the tiny HF GPT-2 in f16
//! equal f32's; and the fallback to f32, with its note, on a device without shader-f16.

mod common;

use wgpt::generate::{Decoder, SampleConfig};
use wgpt::model::Gpt2;
use wgpt::parity::ParityFile;
use wgpt::precision::Precision;

/// f16 logits against HF's: |got − want| ≤ 1e-3 + 1e-2·|want|. Rounding a weight to f16 moves it
/// by up to 2^-11 (4.9e-4) of itself, and every logit sums such products over C inputs per layer
/// and the lm_head: on these random-init models (logits of order 1e-3) the measured worst is
/// 3.4e-4 (baby) and 1.5e-4 (tiny), against f32's 7e-7, so the bound has 3x room and f32's error
/// is 10x below f16's (checked: f16 ran).
const F16_ATOL: f32 = 1e-3;
const F16_RTOL: f32 = 1e-2;

/// The logits after every position of every row of `p`: each row by decode steps (the
/// single-row VM and VMT products), and after its whole prefill (the NN and NT products over T
/// rows) the last position again. Returns (all positions, last positions by prefill).
fn decoder_logits(model: &Gpt2, dec: &mut Decoder, p: &ParityFile) -> (Vec<f32>, Vec<f32>) {
    let v = model.config.vocab_size;
    let (mut steps, mut prefills) = (vec![], vec![]);
    for row in p.x.chunks(p.t) {
        dec.prefill(model, &row[..1]).unwrap();
        steps.extend(pollster::block_on(dec.logits(model)).unwrap());
        for &id in &row[1..] {
            dec.push(model, id).unwrap();
            steps.extend(pollster::block_on(dec.logits(model)).unwrap());
        }
        dec.prefill(model, row).unwrap();
        prefills.extend(pollster::block_on(dec.logits(model)).unwrap());
    }
    assert_eq!(steps.len(), p.b * p.t * v);
    (steps, prefills)
}

fn check_parity_file(name: &str) {
    let Some(d) = common::shared_data() else {
        return;
    };
    let path = d.join("parity").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let p = ParityFile::parse(&path.display().to_string(), &bytes).unwrap();
    let Some(k) = common::shared_kernels() else {
        return;
    };
    assert!(k.gpu.shader_f16(), "{} has no shader-f16: these tests need an adapter with it", k.gpu.describe());
    let model = Gpt2::new(k, &p.weights).unwrap();
    let (v, t) = (model.config.vocab_size, p.t);
    let last: Vec<f32> = p.logits.chunks(t * v).flat_map(|row| row[(t - 1) * v..].to_vec()).collect();
    let mut worst = [0.0f32; 2];
    for (i, precision) in [Precision::F32, Precision::F16].into_iter().enumerate() {
        let mut dec = Decoder::with_precision(&model, precision).unwrap();
        assert_eq!(dec.precision().runs, precision, "{name}: the precision that runs");
        assert_eq!(dec.precision().note, None);
        let (steps, prefills) = decoder_logits(&model, &mut dec, &p);
        let tol = match precision {
            Precision::F16 => (F16_ATOL, F16_RTOL),
            _ => (wgpt::parity::LOGITS_TOL, wgpt::parity::LOGITS_TOL),
        };
        let check = |what: &str, got: &[f32], want: &[f32]| {
            let what = format!("{name} {} logits {what}", precision.name());
            let c = wgpt::cpu::check_close(&what, got, want, tol.0, tol.1).unwrap_or_else(|m| panic!("{m}"));
            println!(
                "{what}: max abs err {:.3e} (worst at [{}]: {} vs HF {}), bound {:.0e} + {:.0e}·|want|",
                c.max_abs, c.worst, got[c.worst], want[c.worst], tol.0, tol.1
            );
            c.max_abs
        };
        worst[i] = check("by decode steps", &steps, &p.logits).max(check("by prefill", &prefills, &last));
    }
    // f16 ran: its error is well above f32's (about 1e-6 here), not just non-zero
    assert!(
        worst[1] > 10.0 * worst[0].max(1e-7),
        "{name}: the f16 error {:.3e} is not above 10x f32's {:.3e}: did f16 run?",
        worst[1],
        worst[0]
    );
}

#[test]
fn f16_logits_parity_tiny() {
    check_parity_file("tiny.safetensors");
}

#[test]
fn f16_logits_parity_baby() {
    check_parity_file("baby.safetensors");
}

/// The tiny HF GPT-2's weights, its prompt ids and transformers' greedy continuation.
fn hf_tiny(data: &std::path::Path) -> (wgpt::model::Weights, Vec<u32>, Vec<u32>) {
    let dir = data.join("hf-tiny-gpt2");
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (weights, _) = wgpt::hf::dir::load(&dir).unwrap();
    (weights, common::i32_tensor(&st, "ids"), common::i32_tensor(&st, "greedy"))
}

/// transformers' 20 greedy tokens of the tiny HF GPT-2 (official layout, wte 50257 x 32) in
/// f16 too: the f16 errors never flip the argmax here.
#[test]
fn f16_greedy_equals_f32_on_hf_tiny_gpt2() {
    let Some(d) = common::shared_data() else {
        return;
    };
    let (weights, ids, want) = hf_tiny(&d);
    let Some(k) = common::shared_kernels() else {
        return;
    };
    let model = Gpt2::new(k, &weights).unwrap();
    for precision in [Precision::F32, Precision::F16] {
        let mut dec = Decoder::with_precision(&model, precision).unwrap();
        assert_eq!(dec.precision().runs, precision);
        let cfg = SampleConfig::greedy(want.len());
        let got = pollster::block_on(dec.generate(&model, &ids, &cfg, None, |_| true)).unwrap();
        assert_eq!(got, want, "{} greedy tokens differ from transformers' generate", precision.name());
    }
    println!("hf-tiny-gpt2: {} greedy tokens in f16 equal f32's and transformers'", want.len());
}

/// Without shader-f16 (WGPT_NO_SHADER_F16=1 requests a device without it, as on SwiftShader)
/// `wgpt sample --precision f16` says it runs f32 and prints what f32 prints; with it, it says
/// f16 runs.
#[test]
fn f16_falls_back_to_f32_without_shader_f16() {
    let Some(d) = common::shared_data() else {
        return;
    };
    if common::shared_kernels().is_none() {
        return;
    }
    let dir = d.join("hf-tiny-gpt2");
    let sample = |precision: &str, no_f16: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"));
        cmd.args(["sample", "--temperature", "0", "--max-new-tokens", "8", "--prompt", "Hello", "--precision"]);
        cmd.arg(precision).arg("--model").arg(&dir);
        if no_f16 {
            cmd.env("WGPT_NO_SHADER_F16", "1");
        }
        let out = cmd.output().expect("run wgpt");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "wgpt sample --precision {precision} failed: {stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let (f32_text, _) = sample("f32", false);
    let (text, stderr) = sample("f16", true);
    assert!(stderr.contains("no shader-f16") && stderr.contains("running in f32"), "the fallback note: {stderr}");
    assert!(stderr.contains("precision: f32 (asked f16)"), "says f32 runs: {stderr}");
    assert_eq!(text, f32_text, "the fallback prints what f32 prints");
    let (_, stderr) = sample("auto", false);
    assert!(stderr.contains("precision: f16 (asked auto)"), "auto runs f16 with shader-f16: {stderr}");
    let (_, stderr) = sample("auto", true);
    assert!(
        stderr.contains("precision: f32 (asked auto)") && !stderr.contains("note:"),
        "auto falls back quietly: {stderr}"
    );
}

/// The f16 copy of a weight bigger than one storage binding is made in row chunks: the tiny HF
/// GPT-2's wte (50257 x 32: 6.4 MB in f32, 3.2 MB in f16) on a device capped at 1 MiB bindings,
/// where f32 and f16 chunks differ, decodes the same greedy tokens.
#[test]
fn f16_wte_in_row_chunks() {
    let Some(d) = common::shared_data() else {
        return;
    };
    let Some(k) = common::shared_kernels() else {
        return;
    };
    let (weights, ids, want) = hf_tiny(&d);
    let mut gpu = k.gpu.clone();
    gpu.cap_binding(1 << 20);
    let k = std::sync::Arc::new(wgpt::kernels::Kernels::with_family(&gpu, common::options().family).unwrap());
    let model = Gpt2::new(k, &weights).unwrap();
    let (f32_chunks, f16_chunks) = (gpu.chunk_rows_of(&[50257, 32], 4).len(), gpu.chunk_rows_of(&[50257, 32], 2).len());
    assert!(f16_chunks > 1 && f32_chunks > f16_chunks, "chunks: {f32_chunks} f32, {f16_chunks} f16");
    let mut dec = Decoder::with_precision(&model, Precision::F16).unwrap();
    let got =
        pollster::block_on(dec.generate(&model, &ids, &SampleConfig::greedy(want.len()), None, |_| true)).unwrap();
    assert_eq!(got, want, "f16 greedy tokens with wte in {f16_chunks} f16 chunks ({f32_chunks} f32)");
}

/// The f16 copies are made before the first pass and again after `weights_changed`: a model
/// whose weights changed in between (here c_fc of block 0 zeroed) decodes, after the call,
/// exactly as a new f16 decoder of it does.
#[test]
fn f16_copies_follow_weights_changed() {
    let Some(k) = common::shared_kernels() else {
        return;
    };
    let config = wgpt::Gpt2Config {
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
        block_size: 8,
        vocab_size: 64,
        arch: wgpt::model::Arch::GPT2,
    };
    let model = Gpt2::new(k.clone(), &wgpt::model::Weights::random(config, 5)).unwrap();
    let ids = [3, 1, 4, 1, 5];
    let logits = |dec: &mut Decoder| {
        dec.prefill(&model, &ids).unwrap();
        pollster::block_on(dec.logits(&model)).unwrap()
    };
    let mut dec = Decoder::with_precision(&model, Precision::F16).unwrap();
    let before = logits(&mut dec);
    let w = &model.params.c_fc_w[0];
    k.gpu.write(w, &vec![0.0f32; w.numel()]);
    dec.weights_changed();
    let after = logits(&mut dec);
    let fresh = logits(&mut Decoder::with_precision(&model, Precision::F16).unwrap());
    assert_ne!(before, after, "zeroing c_fc changes the logits");
    assert!(after.iter().zip(&fresh).all(|(a, b)| a.to_bits() == b.to_bits()), "refreshed copies equal fresh ones");
}

/// Every family's f16-weight products against the CPU computing with the same f16-rounded
/// weights in f32: NN and NT (x · w, x · wteᵀ) over 37 rows on each variant the adapter runs,
/// and the single-row VM and VMT of a decode step. Only the summation order differs, so the
/// bound is f32's (1e-5), and a kernel that read the f16 words wrongly fails it by far.
#[test]
fn f16_weight_products_on_every_variant() {
    use wgpt::kernels::{MatmulVariant, Operand, Program};
    let Some(k) = common::shared_kernels() else {
        return;
    };
    let g = &k.gpu;
    let (kk, n) = (64, 72);
    let w = common::Rng::new(9).vec(kk * n, -1.0, 1.0);
    let w16: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    assert!(w16.iter().zip(&w).any(|(a, b)| a != b), "the rounding changes some weights");
    let half_of = |t: &wgpt::Tensor| common::f16_copy(&k, t);
    // w as a Conv1D weight (K, N) and as a wte (N, K): the CPU's B[k][j] for each
    let (w_nn, w_nt) = (g.upload("w", &[kk, n], &w), g.upload("wte", &[n, kk], &w));
    let (h_nn, h_nt) = (half_of(&w_nn), half_of(&w_nt));
    let b = |nt: bool, kx: usize, j: usize| if nt { w16[j * kk + kx] } else { w16[kx * n + j] };
    let cpu = |x: &[f32], m: usize, nt: bool| -> Vec<f32> {
        (0..m * n).map(|i| (0..kk).map(|kx| x[i / n * kk + kx] * b(nt, kx, i % n)).sum()).collect()
    };
    let run = |what: &str, m: usize, nt: bool, record: &dyn Fn(&mut Program, &wgpt::Tensor, &wgpt::Tensor)| {
        let x = rng_vec(m * kk);
        let (xt, out) = (g.upload("x", &[m, kk], &x), g.tensor("out", &[m, n]));
        let mut p = Program::default();
        record(&mut p, &out, &xt);
        g.run(|pass| p.encode(pass));
        let got = pollster::block_on(g.read(&out)).unwrap();
        let c = wgpt::cpu::check_close(what, &got, &cpu(&x, m, nt), 1e-5, 1e-5).unwrap_or_else(|e| panic!("{e}"));
        println!("{what}: max abs err {:.2e}", c.max_abs);
    };
    for v in MatmulVariant::available(g, wgpt::kernels::Family::Auto) {
        let name = v.name();
        run(&format!("{name} NN f16"), 37, false, &|p, out, x| {
            k.matmul.gemm_on(v, p, out, Operand::n(x), Operand::n(&h_nn))
        });
        run(&format!("{name} NT f16"), 37, true, &|p, out, x| {
            k.matmul.gemm_on(v, p, out, Operand::n(x), Operand::t(&h_nt))
        });
    }
    run("VM f16", 1, false, &|p, out, x| k.matmul.forward(p, out, x, &h_nn, None));
    run("VMT f16", 1, true, &|p, out, x| k.matmul.lm_head(p, out, x, &h_nt));
}

/// Inputs in [-1, 1) from a fixed seed per length.
fn rng_vec(n: usize) -> Vec<f32> {
    common::Rng::new(n as u64).vec(n, -1.0, 1.0)
}
