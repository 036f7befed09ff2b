//! LoRA fine-tuning: the CPU reference against finite differences; the adapters' kernels against
//! it at ragged shapes; a model with B = 0 gives its base's logits bit for bit; a LoRA model's
//! loss and adapter gradients equal those of the merged model's full backward (W + s·Aᵀ·Bᵀ, the
//! path the parity files check against torch) mapped onto A and B; training moves only the
//! adapters; and a LoRA run's checkpoint state resumes bit for bit.

mod common;
use common::{assert_bits, assert_close};

use std::sync::{Arc, Mutex};

use common::{runs, Rng};
use wgpt::cpu::{self, LoraDims};
use wgpt::kernels::{Kernels, Program};
use wgpt::model::lora::{lora_backward, lora_forward, LoraBwd, LoraFwd, Target, Targets};
use wgpt::model::{Gpt2, Gpt2Config, LoraConfig, LoraTensors, Weights};
use wgpt::run::{DataSource, RunSettings};
use wgpt::train::{Optimizer, OptimizerConfig, TrainConfig, Trainer};

/// Held by every GPU test here, so that the memory test counts only its own buffers.
static GPU: Mutex<()> = Mutex::new(());

/// A native GPU test running `$body` (an async fn taking the shared kernels) while holding
/// [`GPU`].
macro_rules! locked_gpu_test {
    ($name:ident, $body:path) => {
        #[test]
        fn $name() {
            if let Some(k) = common::shared_kernels() {
                let _gpu = GPU.lock().unwrap_or_else(|e| e.into_inner());
                pollster::block_on($body(k));
            }
        }
    };
}

/// Σ out·w in f64.
fn dot(out: &[f32], w: &[f32]) -> f64 {
    out.iter().zip(w).map(|(&o, &w)| o as f64 * w as f64).sum()
}

/// The CPU backward against central differences of the CPU forward, for L = Σ out·w.
#[test]
fn cpu_backward_matches_finite_differences() {
    let d = LoraDims { n: 3, inp: 5, out: 4, r: 2, scale: 1.5 };
    let mut rng = Rng::new(7);
    let (x, a, b) = (rng.vec(d.n * d.inp, -1.0, 1.0), rng.vec(d.r * d.inp, -1.0, 1.0), rng.vec(d.out * d.r, -1.0, 1.0));
    let w = rng.vec(d.n * d.out, -1.0, 1.0);
    let loss = |x: &[f32], a: &[f32], b: &[f32]| {
        let (mut out, mut hs) = (vec![0.0; d.n * d.out], vec![0.0; d.n * d.r]);
        cpu::lora_forward(cpu::LoraFwd { out: &mut out, hs: &mut hs, x, a, b }, d);
        dot(&out, &w)
    };
    let mut hs = vec![0.0; d.n * d.r];
    cpu::lora_forward(cpu::LoraFwd { out: &mut vec![0.0; d.n * d.out], hs: &mut hs, x: &x, a: &a, b: &b }, d);
    let (mut dx, mut da, mut db) = (vec![0.0; x.len()], vec![0.0; a.len()], vec![0.0; b.len()]);
    let io = cpu::LoraBwd { dx: &mut dx, da: &mut da, db: &mut db, dout: &w, x: &x, a: &a, b: &b, hs: &hs };
    cpu::lora_backward(io, d);
    let numeric = |v: &[f32], f: &dyn Fn(&[f32]) -> f64| -> Vec<f32> {
        let eps = 1e-2;
        (0..v.len())
            .map(|i| {
                let (mut p, mut m) = (v.to_vec(), v.to_vec());
                p[i] += eps;
                m[i] -= eps;
                ((f(&p) - f(&m)) / (2.0 * eps as f64)) as f32
            })
            .collect()
    };
    assert_close("lora dx", &dx, &numeric(&x, &|v| loss(v, &a, &b)), 1e-3, 1e-2);
    assert_close("lora dA", &da, &numeric(&a, &|v| loss(&x, v, &b)), 1e-3, 1e-2);
    assert_close("lora dB", &db, &numeric(&b, &|v| loss(&x, &a, v)), 1e-3, 1e-2);
    // the merged weight gives the same product
    let mut w0 = vec![0.0; d.inp * d.out];
    cpu::lora_merge(&mut w0, &a, &b, d);
    let mut merged = vec![0.0; d.n * d.out];
    cpu::matmul_forward(&mut merged, &x, &w0, None, d.n, d.inp, d.out);
    let mut adapted = vec![0.0; d.n * d.out];
    cpu::lora_forward(cpu::LoraFwd { out: &mut adapted, hs: &mut hs, x: &x, a: &a, b: &b }, d);
    assert_close("lora merged product", &merged, &adapted, 1e-5, 1e-5);
}

/// The adapters' forward and backward recorders against the CPU at ragged shapes (odd N, in, out,
/// r): out, dx, dA and dB start from random values (they accumulate), hs and dh from NaN (they
/// are written whole).
async fn kernels_at_ragged_shapes(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(n, inp, out, r)) in [(13, 11, 7, 3), (5, 48, 80, 1), (17, 33, 65, 5), (64, 64, 192, 8)].iter().enumerate()
    {
        let d = LoraDims { n, inp, out, r, scale: 7.0 / r as f32 };
        let mut rng = Rng::new(40 + i as u64);
        let (x, a, b) = (rng.vec(n * inp, -1.0, 1.0), rng.vec(r * inp, -1.0, 1.0), rng.vec(out * r, -1.0, 1.0));
        let (out0, dout) = (rng.vec(n * out, -1.0, 1.0), rng.vec(n * out, -1.0, 1.0));
        let (dx0, da0, db0) = (rng.vec(n * inp, -1.0, 1.0), rng.vec(r * inp, -1.0, 1.0), rng.vec(out * r, -1.0, 1.0));
        let nan = |len: usize| vec![f32::NAN; len];
        let up = |name: &str, shape: &[usize], v: &[f32]| g.upload(name, shape, v);
        let (x_t, a_t, b_t) = (up("x", &[n, inp], &x), up("a", &[r, inp], &a), up("b", &[out, r], &b));
        let (out_t, hs, dh) =
            (up("out", &[n, out], &out0), up("hs", &[n, r], &nan(n * r)), up("dh", &[n, r], &nan(n * r)));
        let (dout_t, dx, da, db) = (
            up("dout", &[n, out], &dout),
            up("dx", &[n, inp], &dx0),
            up("da", &[r, inp], &da0),
            up("db", &[out, r], &db0),
        );
        let seed = g.tensor("seed", &[1]);
        let mut prog = Program::default();
        let (x_r, a_r, b_r, hs_r, seed_r) = (&x_t, &a_t, &b_t, &hs, &seed);
        lora_forward(
            &k,
            &mut prog,
            LoraFwd { out: &out_t, hs: hs_r, x: x_r, a: a_r, b: b_r, seed: seed_r, scale: d.scale },
        );
        let bwd = LoraBwd {
            dx: &dx,
            da: &da,
            db: &db,
            dh: &dh,
            dout: &dout_t,
            x: x_r,
            a: a_r,
            b: b_r,
            hs: hs_r,
            seed: seed_r,
            scale: d.scale,
            accumulate_dx: true,
        };
        lora_backward(&k, &mut prog, bwd);
        g.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&out_t, &hs, &dx, &da, &db]).await.unwrap();
        let (mut want_out, mut want_hs) = (out0.clone(), vec![0.0; n * r]);
        cpu::lora_forward(cpu::LoraFwd { out: &mut want_out, hs: &mut want_hs, x: &x, a: &a, b: &b }, d);
        let (mut wdx, mut wda, mut wdb) = (dx0, da0, db0);
        let io =
            cpu::LoraBwd { dx: &mut wdx, da: &mut wda, db: &mut wdb, dout: &dout, x: &x, a: &a, b: &b, hs: &want_hs };
        cpu::lora_backward(io, d);
        let what = format!("N{n} in{inp} out{out} r{r}");
        let tol = |k: usize| 1e-5 * (k as f32).sqrt() * d.scale.max(1.0);
        assert_close(&format!("lora hs {what}"), &got[1], &want_hs, tol(inp), 1e-4);
        assert_close(&format!("lora out {what}"), &got[0], &want_out, tol(inp * r), 1e-4);
        assert_close(&format!("lora dx {what}"), &got[2], &wdx, tol(out * r), 1e-4);
        assert_close(&format!("lora dA {what}"), &got[3], &wda, tol(out * n), 1e-4);
        assert_close(&format!("lora dB {what}"), &got[4], &wdb, tol(inp * n), 1e-4);
    }
}
locked_gpu_test!(lora_kernels_at_ragged_shapes, kernels_at_ragged_shapes);

/// The masked copy and masked add of LoRA's dropout against the CPU's mask rule
/// (`kernels::dropout::keep`) at a ragged length: y = x·mask/(1 − p), and y += that.
async fn masked_dropout(k: Arc<Kernels>) {
    let g = &k.gpu;
    let (n, p, site, seed) = (1001, 0.3f32, 17, 12345u32);
    let mut rng = Rng::new(50);
    let (x, y0) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let (x_t, copy, add) =
        (g.upload("x", &[n], &x), g.upload("copy", &[n], &vec![f32::NAN; n]), g.upload("add", &[n], &y0));
    let seed_t = g.upload("seed", &[1], &[seed]);
    let mut prog = Program::default();
    k.dropout.masked(&mut prog, [&copy, &x_t, &seed_t], site, p, false);
    k.dropout.masked(&mut prog, [&add, &x_t, &seed_t], site, p, true);
    g.run(|pass| prog.encode(pass));
    let got = g.read_many(&[&copy, &add]).await.unwrap();
    let masked: Vec<f32> = (0..n)
        .map(|i| if wgpt::kernels::dropout::keep(seed, site, i as u32, p) { x[i] * (1.0 / (1.0 - p)) } else { 0.0 })
        .collect();
    let added: Vec<f32> = y0.iter().zip(&masked).map(|(a, b)| a + b).collect();
    assert_bits("masked copy", &got[0], &masked);
    assert_bits("masked add", &got[1], &added);
    let kept = masked.iter().filter(|&&v| v != 0.0).count();
    println!("masked dropout p {p}: {kept} of {n} kept, copy and add equal the CPU's bit for bit");
}
locked_gpu_test!(lora_masked_dropout_matches_the_cpu, masked_dropout);

/// LoRA's dropout in a model: at p = 1e-6 (nothing dropped, the scale 1 + 1e-6) the adapters'
/// gradients equal p = 0's to rounding, so the masked input feeds A's gradient and the masked
/// gradient reaches dx; at p = 0.3 they differ, the base stays frozen, and a resumed run goes on
/// bit for bit (the masks are a function of the step).
async fn dropout_in_a_model(k: Arc<Kernels>) {
    let cfg = tiny();
    let weights = Weights::random(cfg, 61);
    let lc = LoraConfig { alpha: 5.0, ..LoraConfig::new(3, 62) };
    let specs = lc.specs(&cfg);
    let mut rng = Rng::new(63);
    let adapters: Vec<Vec<f32>> = specs.iter().map(|(_, s)| rng.vec(s[0] * s[1], -0.3, 0.3)).collect();
    let mut all = vec![];
    for p in [0.0, 1e-6, 0.3] {
        let lc = LoraConfig { dropout: p, ..lc };
        let mut model = Gpt2::new(k.clone(), &weights).unwrap();
        model.lora = Some(LoraTensors::upload(&k.gpu, &cfg, lc, &adapters).unwrap());
        let mut t = Trainer::new(model, train_cfg(Some(lc))).unwrap();
        t.step(&batch(64, &cfg)).unwrap();
        all.push(k.gpu.read_many(&t.grads.ordered()).await.unwrap());
    }
    let (g0, g_tiny, g_drop) = (&all[0], &all[1], &all[2]);
    for (i, (name, _)) in specs.iter().enumerate() {
        let scale = g0[i].iter().fold(0f32, |m, x| m.max(x.abs()));
        assert_close(&format!("{name} at p 1e-6"), &g_tiny[i], &g0[i], 1e-4 * scale, 1e-3);
    }
    assert!(g_drop.iter().zip(g0).all(|(a, b)| a != b), "dropout 0.3 changes every adapter's gradient");
    let lc = LoraConfig { dropout: 0.3, ..lc };
    let mut a = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), train_cfg(Some(lc))).unwrap();
    for s in 0..3 {
        a.step(&batch(70 + s, &cfg)).unwrap();
    }
    let mut b = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), train_cfg(Some(lc))).unwrap();
    b.restore(&a.optimizer_state().await.unwrap(), 3).unwrap();
    for s in 3..5 {
        a.step(&batch(70 + s, &cfg)).unwrap();
        b.step(&batch(70 + s, &cfg)).unwrap();
    }
    let (sa, sb) = (a.optimizer_state().await.unwrap(), b.optimizer_state().await.unwrap());
    for ((name, x), (_, y)) in sa.iter().zip(&sb) {
        assert_bits(&format!("resumed with dropout {name}"), y, x);
    }
    assert_eq!(a.model.weights().await.unwrap().tensors, weights.tensors, "the base is frozen");
    println!("LoRA dropout: p 1e-6 equals p 0, p 0.3 differs, resumed bit for bit");
}
locked_gpu_test!(lora_dropout_in_a_model, dropout_in_a_model);

fn tiny() -> Gpt2Config {
    Gpt2Config {
        n_layer: 2,
        n_head: 2,
        n_embd: 24,
        block_size: 16,
        vocab_size: 37,
        ..Gpt2Config::preset("tiny").unwrap()
    }
}

fn train_cfg(lora: Option<LoraConfig>) -> TrainConfig {
    TrainConfig { batch_size: 2, seq_len: 9, warmup_iters: 0, lr: 1e-2, lora, ..TrainConfig::default() }
}

fn batch(seed: u64, cfg: &Gpt2Config) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut rng = Rng::new(seed);
    vec![(rng.ids(18, cfg.vocab_size), rng.ids(18, cfg.vocab_size))]
}

/// A model with adapters whose B is zero (peft's start) gives exactly its base's logits.
async fn b_zero_is_the_base(k: Arc<Kernels>) {
    let cfg = tiny();
    let mut model = Gpt2::new(k.clone(), &Weights::random(cfg, 3)).unwrap();
    let ids = Rng::new(4).ids(18, cfg.vocab_size);
    let base = model.forward_plan(2, 9).unwrap();
    model.forward(&base, &ids, None).unwrap();
    let want = k.gpu.read(&base.acts.logits).await.unwrap();
    model.attach_lora(LoraConfig::new(4, 5)).unwrap();
    let adapted = model.forward_plan(2, 9).unwrap();
    assert!(adapted.acts.lora.is_some(), "a plan made after attach_lora runs the adapters");
    model.forward(&adapted, &ids, None).unwrap();
    let hs = k.gpu.read(adapted.acts.lora.as_ref().unwrap().hs[1][0].as_ref().unwrap()).await.unwrap();
    assert!(hs.iter().any(|&v| v != 0.0), "A is drawn, so x·Aᵀ is not zero");
    assert_bits("logits with B = 0", &k.gpu.read(&adapted.acts.logits).await.unwrap(), &want);
    println!("B = 0: {} logits equal the base's bit for bit", want.len());
}
locked_gpu_test!(lora_with_b_zero_gives_the_base_logits, b_zero_is_the_base);

/// A LoRA model with random A and B against the merged model W' = W + s·Aᵀ·Bᵀ trained in full:
/// the same loss, and the adapters' gradients equal the merged weights' gradient G mapped onto
/// them (dA = s·Bᵀ·Gᵀ, dB = s·Gᵀ·Aᵀ).
async fn gradients_match_the_merged_model(k: Arc<Kernels>) {
    let cfg = tiny();
    let weights = Weights::random(cfg, 11);
    let lc = LoraConfig { alpha: 5.0, targets: Targets::ALL, ..LoraConfig::new(3, 12) };
    let specs = lc.specs(&cfg);
    let mut rng = Rng::new(13);
    let adapters: Vec<Vec<f32>> = specs.iter().map(|(_, s)| rng.vec(s[0] * s[1], -0.3, 0.3)).collect();
    let mut model = Gpt2::new(k.clone(), &weights).unwrap();
    model.lora = Some(LoraTensors::upload(&k.gpu, &cfg, lc, &adapters).unwrap());
    let mut lora = Trainer::new(model, train_cfg(Some(lc))).unwrap();
    // the merged model
    let names: Vec<String> = cfg.param_specs().into_iter().map(|(n, _)| n).collect();
    let mut merged = weights.clone();
    let dims = |t: Target| {
        let (inp, out) = t.dims(&cfg);
        LoraDims { n: 0, inp, out, r: lc.rank, scale: lc.scale() }
    };
    let mut at = 0;
    for l in 0..cfg.n_layer {
        for t in Target::ALL {
            let w = names.iter().position(|n| *n == format!("h.{l}.{}.weight", t.module())).unwrap();
            cpu::lora_merge(&mut merged.tensors[w], &adapters[at], &adapters[at + 1], dims(t));
            at += 2;
        }
    }
    let mut full = Trainer::new(Gpt2::new(k.clone(), &merged).unwrap(), train_cfg(None)).unwrap();
    let data = batch(14, &cfg);
    lora.step(&data).unwrap();
    full.step(&data).unwrap();
    let (got_loss, want_loss) = (lora.last_loss().await.unwrap(), full.last_loss().await.unwrap());
    println!("loss: LoRA {got_loss}, merged {want_loss}");
    assert!((got_loss - want_loss).abs() <= 1e-5 * want_loss.abs(), "loss {got_loss} vs merged {want_loss}");
    let got = k.gpu.read_many(&lora.grads.ordered()).await.unwrap();
    let g_full = k.gpu.read_many(&full.grads.ordered()).await.unwrap();
    let mut at = 0;
    for l in 0..cfg.n_layer {
        for t in Target::ALL {
            let d = dims(t);
            let gw = &g_full[names.iter().position(|n| *n == format!("h.{l}.{}.weight", t.module())).unwrap()];
            let (a, b) = (&adapters[at], &adapters[at + 1]);
            // dA (r,in) = s·Bᵀ·Gᵀ, dB (out,r) = s·Gᵀ·Aᵀ, in f64
            let da: Vec<f32> = (0..d.r * d.inp)
                .map(|i| {
                    let (j, kk) = (i / d.inp, i % d.inp);
                    let s: f64 = (0..d.out).map(|o| b[o * d.r + j] as f64 * gw[kk * d.out + o] as f64).sum();
                    (d.scale as f64 * s) as f32
                })
                .collect();
            let db: Vec<f32> = (0..d.out * d.r)
                .map(|i| {
                    let (o, j) = (i / d.r, i % d.r);
                    let s: f64 = (0..d.inp).map(|kk| gw[kk * d.out + o] as f64 * a[j * d.inp + kk] as f64).sum();
                    (d.scale as f64 * s) as f32
                })
                .collect();
            let scale = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
            let what = format!("h.{l}.{}", t.module());
            assert_close(&format!("{what} dA"), &got[at], &da, 1e-4 * scale(&da), 1e-3);
            assert_close(&format!("{what} dB"), &got[at + 1], &db, 1e-4 * scale(&db), 1e-3);
            at += 2;
        }
    }
}
locked_gpu_test!(lora_gradients_match_the_merged_model, gradients_match_the_merged_model);

/// Three steps move the adapters and leave every base weight bit for bit; the checkpoint state
/// (adapters beside their moments) read back into a fresh trainer goes on bit for bit.
async fn trains_only_the_adapters_and_resumes(k: Arc<Kernels>) {
    let cfg = tiny();
    let weights = Weights::random(cfg, 21);
    let lc = LoraConfig { targets: Targets::parse("c_attn,c_fc").unwrap(), ..LoraConfig::new(2, 22) };
    let mut a = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), train_cfg(Some(lc))).unwrap();
    let before = a.adapters().await.unwrap();
    for s in 0..3 {
        a.step(&batch(30 + s, &cfg)).unwrap();
    }
    assert_eq!(a.model.weights().await.unwrap().tensors, weights.tensors, "the base is frozen");
    let after = a.adapters().await.unwrap();
    for ((name, w0), (_, w1)) in before.iter().zip(&after) {
        assert!(w0 != w1, "{name} did not move");
    }
    println!("3 steps: every base weight unchanged, all {} adapter tensors moved", after.len());
    let state = a.optimizer_state().await.unwrap();
    assert!(state.iter().any(|(k, _)| k == "adam_m.lora.h.1.mlp.c_fc.lora_B"), "the adapters' moments are saved");
    let bytes = wgpt::checkpoint::state_bytes(&cfg, Some(&state), &serde_json::json!({"step": 3})).unwrap();
    let (saved, _): (_, serde_json::Value) = wgpt::checkpoint::parse_state("state", &bytes, &cfg).unwrap();
    let mut b = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), train_cfg(Some(lc))).unwrap();
    b.restore(&saved.unwrap(), 3).unwrap();
    for s in 3..5 {
        a.step(&batch(30 + s, &cfg)).unwrap();
        b.step(&batch(30 + s, &cfg)).unwrap();
    }
    let (sa, sb) = (a.optimizer_state().await.unwrap(), b.optimizer_state().await.unwrap());
    for ((name, x), (_, y)) in sa.iter().zip(&sb) {
        assert_bits(&format!("resumed {name}"), y, x);
    }
    println!("resumed at step 3: {} adapter and state tensors equal bit for bit after step 5", sa.len());
    // a full run refuses a LoRA state, naming the adapter
    let mut full = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), train_cfg(None)).unwrap();
    let e = full.restore(&sa, 5).unwrap_err().to_string();
    assert!(e.contains("lora.h.0.attn.c_attn.lora_A"), "{e}");
}
locked_gpu_test!(lora_trains_only_the_adapters_and_resumes_bit_exact, trains_only_the_adapters_and_resumes);

/// SGD and Muon train the adapters too (Muon's Newton-Schulz on each A and B): two steps move
/// every adapter, keep the base, and the state is the adapters' momentum buffers.
async fn other_optimizers(k: Arc<Kernels>) {
    let cfg = tiny();
    let weights = Weights::random(cfg, 81);
    for kind in [Optimizer::Sgd, Optimizer::Muon] {
        let lc = LoraConfig::new(2, 82);
        let train = TrainConfig { optimizer: OptimizerConfig::of(kind), ..train_cfg(Some(lc)) };
        let mut t = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), train).unwrap();
        let before = t.adapters().await.unwrap();
        for s in 0..2 {
            t.step(&batch(90 + s, &cfg)).unwrap();
        }
        assert_eq!(t.model.weights().await.unwrap().tensors, weights.tensors, "{kind:?}: the base is frozen");
        let after = t.adapters().await.unwrap();
        assert!(before.iter().zip(&after).all(|(a, b)| a.1 != b.1 && b.1.iter().all(|v| v.is_finite())), "{kind:?}");
        let state = t.optimizer_state().await.unwrap();
        let buffers = state.iter().filter(|(k, _)| k.starts_with("momentum_buffer.lora.")).count();
        assert_eq!(buffers, after.len(), "{kind:?}: one momentum buffer per adapter tensor");
        println!("{}: {} adapter tensors moved, base unchanged", kind.name(), after.len());
    }
}
locked_gpu_test!(lora_trains_with_sgd_and_muon, other_optimizers);

/// The memory estimate follows what a LoRA trainer allocates (the adapters, their gradients,
/// moments and kept products; no gradients or moments for the base), and the base's gradients
/// and moments are what it saves against a full run.
async fn memory_follows_the_allocations(k: Arc<Kernels>) {
    let cfg = Gpt2Config { n_layer: 2, n_head: 2, n_embd: 64, block_size: 32, vocab_size: 65, ..tiny() };
    let kind = wgpt::kernels::AttentionKind::Flash;
    let lc = LoraConfig::new(4, 1);
    let mut got = vec![];
    for lora in [None, Some(lc)] {
        let (_, before) = k.gpu.buffer_stats();
        let model = Gpt2::new(k.clone(), &Weights::random(cfg, 1)).unwrap();
        let train = TrainConfig { attention: Some(kind), seq_len: 32, batch_size: 4, ..train_cfg(lora) };
        let trainer = Trainer::new(model, train).unwrap();
        let actual = k.gpu.buffer_stats().1 - before;
        let estimate = wgpt::train::training_bytes_of(&cfg, &train, 4, 32, kind, false);
        let ratio = estimate as f64 / actual as f64;
        println!("LoRA {:?}: estimate {estimate} bytes, allocated {actual} ({ratio:.3})", lora.map(|l| l.rank));
        assert!((0.98..=1.0).contains(&ratio), "estimate {estimate} vs allocated {actual}: ratio {ratio:.3}");
        got.push(estimate);
        drop(trainer);
    }
    let (params, adapters) = (4 * cfg.num_params() as u64, lc.bytes(&cfg));
    let acts: u64 = wgpt::model::total_bytes(&wgpt::model::lora::LoraActs::specs(&cfg, &lc, 4, 32));
    // full: gradients + m + v of the base; LoRA: the adapters, their gradients, m, v and kept products
    assert_eq!(got[0] + 4 * adapters + acts, got[1] + 3 * params);
}
locked_gpu_test!(lora_memory_estimate_follows_the_allocations, memory_follows_the_allocations);

/// The settings keys: a rank turns LoRA on with alpha 2r on every product; the other keys need
/// a rank; old settings (no keys) are full runs; the JSON round trips.
#[test]
fn settings_keys() {
    let mut s = RunSettings::preset("tiny").unwrap();
    let model = s.model(40).unwrap();
    let run = |s: &RunSettings| s.run_config(model, DataSource::Text("x".into()), "char".into());
    assert_eq!(run(&s).unwrap().train.lora, None);
    assert!(serde_json::to_value(&s).unwrap().get("lora_rank").is_none(), "unset keys are left out");
    s.lora.alpha = Some(3.0);
    assert!(run(&s).unwrap_err().to_string().contains("lora_rank"));
    s.lora.rank = Some(4);
    s.lora.targets = Some(Targets::parse("c_proj").unwrap());
    let lc = run(&s).unwrap().train.lora.unwrap();
    assert_eq!((lc.rank, lc.alpha, lc.targets.list()), (4, 3.0, vec![Target::AttnProj, Target::MlpProj]));
    assert_eq!(lc.seed, s.seed);
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains(r#""lora_targets":["attn.c_proj","mlp.c_proj"]"#), "{json}");
    assert_eq!(serde_json::from_str::<RunSettings>(&json).unwrap(), s);
    s.lora.alpha = None;
    assert_eq!(run(&s).unwrap().train.lora.unwrap().alpha, 8.0, "alpha defaults to 2r");
    s.lora.rank = Some(model.n_embd + 1);
    let e = run(&s).unwrap_err().to_string();
    assert!(e.contains("smaller side"), "{e}");
    s.lora.rank = Some(2);
    s.lora.dropout = Some(1.5);
    assert!(run(&s).unwrap_err().to_string().contains("[0, 1)"));
    s.lora.dropout = Some(0.1);
    assert_eq!(run(&s).unwrap().train.lora.unwrap().dropout, 0.1);
    let bad: Result<RunSettings, _> = serde_json::from_str(&json.replace("attn.c_proj", "q_proj"));
    assert!(bad.unwrap_err().to_string().contains("q_proj"));
}

/// `wgpt train --init DIR --lora 4` fine-tunes a model the CLI trained: its checkpoints keep the
/// base weights as they were and the adapters in the training state; a run that loses its device
/// at step 9 recovers from the checkpoint of step 6 and ends with exactly the adapters of a run
/// that did not. `--lora` without `--init`, or with `--resume`, is refused.
#[test]
fn cli_fine_tunes_with_lora_and_recovers_from_device_loss() {
    let Some(_) = common::shared_kernels() else { return };
    let root = std::env::temp_dir().join(format!("wgpt-lora-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let corpus = root.join("corpus.txt");
    std::fs::write(&corpus, "the quick brown fox jumps over the lazy dog.\n".repeat(40)).unwrap();
    let wgpt = |args: &[&str], lose_at: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"));
        cmd.args(args).args(["--data", corpus.to_str().unwrap(), "--eval-iters", "1", "--log-interval", "1"]);
        if let Some(step) = lose_at {
            cmd.env("WGPT_LOSE_DEVICE_AT", step);
        }
        let o = cmd.output().expect("run wgpt");
        (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout))
    };
    let base = root.join("base");
    let shape = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4"];
    let mut args = vec!["train", "--max-iters", "2", "--eval-interval", "2", "--out", base.to_str().unwrap()];
    args.extend(shape);
    let (code, log) = wgpt(&args, None);
    assert_eq!(code, Some(0), "{log}");
    let fine_tune = |out: &str, lose_at| {
        let out = root.join(out);
        let args = ["train", "--init", base.to_str().unwrap(), "--lora", "4", "--lora-targets", "c_attn,c_fc"];
        let more = ["--batch-size", "4", "--max-iters", "12", "--eval-interval", "6", "--warmup-iters", "2", "--out"];
        let (code, log) = wgpt(&[&args[..], &more[..], &[out.to_str().unwrap()]].concat(), lose_at);
        assert_eq!(code, Some(0), "{log}");
        (out, log)
    };
    let (lost, log) = fine_tune("lost", Some("9"));
    let line = log.lines().find(|l| l.contains("device was lost")).unwrap_or_else(|| panic!("no message: {log}"));
    println!("{line}");
    assert!(line.contains("checkpoint of step 6"), "{line}");
    let (clean, _) = fine_tune("clean", None);
    let (base_w, _) = wgpt::hf::dir::load(&base).unwrap();
    for dir in [&lost, &clean] {
        assert_eq!(wgpt::hf::dir::load(dir).unwrap().0.tensors, base_w.tensors, "the base stays as it was");
    }
    let (a, b) = (runs::saved_adapters(&lost), runs::saved_adapters(&clean));
    assert_eq!(a.len(), 4, "A and B of c_attn and c_fc: {:?}", a.iter().map(|x| &x.0).collect::<Vec<_>>());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_bits(&format!("recovered {name}"), x, y);
        assert!(!name.ends_with("lora_B") || x.iter().any(|&v| v != 0.0), "{name} trained");
    }
    println!("recovered vs uninterrupted LoRA run after 12 steps: {} adapter tensors equal bit for bit", a.len());
    let (code, log) = wgpt(&["train", "--lora", "4", "--max-iters", "2"], None);
    assert_ne!(code, Some(0));
    assert!(log.contains("--lora fine-tunes a pretrained model: give it --init DIR"), "{log}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["train", "--resume", lost.to_str().unwrap(), "--lora", "4"])
        .output()
        .expect("run wgpt");
    let (code, log) = (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string());
    assert_ne!(code, Some(0));
    assert!(log.contains("--lora") && log.contains("--resume"), "{log}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The committed peft fixture (tests/fixtures/make_lora_parity.py: peft 0.21's LoRA r 4, alpha 8
/// on c_attn, c_proj and c_fc of a tiny GPT-2, random A and B, torch.optim.AdamW with decay and
/// clipping): the first step's loss, adapter gradients and adapters after it, and ten losses.
async fn peft_parity(k: Arc<Kernels>) {
    let file = "lora.safetensors";
    let bytes = std::fs::read(format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let shape: serde_json::Value = serde_json::from_str(&header.metadata().as_ref().unwrap()["config"]).unwrap();
    let size = |key: &str| shape[key].as_u64().unwrap() as usize;
    let cfg = Gpt2Config {
        n_layer: size("n_layer"),
        n_head: size("n_head"),
        n_embd: size("n_embd"),
        block_size: size("block_size"),
        vocab_size: size("vocab_size"),
        arch: wgpt::model::Arch::GPT2,
    };
    let weights = wgpt::hf::load_weights(file, &bytes, cfg).unwrap();
    // peft's saved names for ours: lora.h.0.attn.c_attn.lora_A -> base_model.model.transformer.h.0.attn.c_attn.lora_A.weight
    let peft_name = |ours: &str| format!("base_model.model.transformer.{}.weight", ours.strip_prefix("lora.").unwrap());
    common::peft_steps::check(&k, file, &bytes, (&weights, cfg), peft_name).await;
}
locked_gpu_test!(lora_matches_peft, peft_parity);
