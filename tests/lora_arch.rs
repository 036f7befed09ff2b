//! LoRA on the Llama/Qwen3 family: the adapters' recorders on a column range of a wider product
//! (q/k/v_proj of the fused q|k|v, gate/up_proj of gate|up) against the CPU at ragged shapes; the
//! CPU's column-range reference against finite differences; the targets by the model's family
//! (defaults, refusals); and the committed peft fixtures (tests/fixtures/make_lora_parity.py
//! --hf: a tiny Llama with GQA and biases at rank 3, a tiny Qwen3 with MQA and qk-norm at rank 4):
//! the first step's loss, adapter gradients and adapters after it, and ten losses.

mod common;
use common::assert_close;

use std::sync::{Arc, Mutex};

use common::Rng;
use wgpt::cpu::{self, LoraCols, LoraDims};
use wgpt::kernels::{Kernels, Program};
use wgpt::model::lora::{lora_backward_at, lora_forward_at, LoraBwd, LoraFwd, Target, Targets};
use wgpt::model::{Gpt2Config, LoraConfig};

/// Held by every GPU test here.
static GPU: Mutex<()> = Mutex::new(());

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

/// The column-range CPU backward against central differences of its forward (L = Σ out·w over
/// the whole wide out), and the merge into the same columns of a wider W.
#[test]
fn cpu_column_range_matches_finite_differences() {
    let d = LoraDims { n: 3, inp: 5, out: 4, r: 2, scale: 1.5 };
    let c = LoraCols { c0: 3, width: 9 };
    let mut rng = Rng::new(70);
    let (x, a, b) = (rng.vec(d.n * d.inp, -1.0, 1.0), rng.vec(d.r * d.inp, -1.0, 1.0), rng.vec(d.out * d.r, -1.0, 1.0));
    let w = rng.vec(d.n * c.width, -1.0, 1.0);
    let forward = |x: &[f32], a: &[f32], b: &[f32]| {
        let (mut out, mut hs) = (vec![0.0; d.n * c.width], vec![0.0; d.n * d.r]);
        cpu::lora_forward_cols(cpu::LoraFwd { out: &mut out, hs: &mut hs, x, a, b }, d, c);
        (out, hs)
    };
    let loss = |x: &[f32], a: &[f32], b: &[f32]| -> f64 {
        forward(x, a, b).0.iter().zip(&w).map(|(&o, &w)| o as f64 * w as f64).sum()
    };
    let (out, hs) = forward(&x, &a, &b);
    for i in 0..d.n {
        for o in (0..c.width).filter(|o| !(c.c0..c.c0 + d.out).contains(o)) {
            assert_eq!(out[i * c.width + o], 0.0, "column {o} outside the range was written");
        }
    }
    let (mut dx, mut da, mut db) = (vec![0.0; x.len()], vec![0.0; a.len()], vec![0.0; b.len()]);
    let io = cpu::LoraBwd { dx: &mut dx, da: &mut da, db: &mut db, dout: &w, x: &x, a: &a, b: &b, hs: &hs };
    cpu::lora_backward_cols(io, d, c);
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
    assert_close("cols dx", &dx, &numeric(&x, &|v| loss(v, &a, &b)), 1e-3, 1e-2);
    assert_close("cols dA", &da, &numeric(&a, &|v| loss(&x, v, &b)), 1e-3, 1e-2);
    assert_close("cols dB", &db, &numeric(&b, &|v| loss(&x, &a, v)), 1e-3, 1e-2);
    let mut w0 = vec![0.0; d.inp * c.width];
    cpu::lora_merge_cols(&mut w0, &a, &b, d, c);
    let mut merged = vec![0.0; d.n * c.width];
    cpu::matmul_forward(&mut merged, &x, &w0, None, d.n, d.inp, c.width);
    assert_close("cols merged product", &merged, &out, 1e-5, 1e-5);
}

/// The recorders on columns c0 .. c0 + out of a wider product against the CPU at ragged shapes
/// (odd N, in, out, r, c0 and widths not multiples of 4; a single row as a decode step's; and
/// aligned ones that take the vec4 kernels): out's other columns keep their values, out, dx, dA
/// and dB accumulate onto random values, hs and dh start from NaN.
async fn windows_at_ragged_shapes(k: Arc<Kernels>) {
    let g = &k.gpu;
    // (N, in, out, r, c0, width)
    let shapes = [
        (13, 11, 7, 3, 5, 19),
        (17, 33, 9, 5, 21, 30),
        (1, 20, 6, 4, 7, 17),
        (5, 48, 12, 4, 16, 40),
        (64, 64, 24, 8, 40, 64),
    ];
    for (i, &(n, inp, out, r, c0, width)) in shapes.iter().enumerate() {
        let (d, c) = (LoraDims { n, inp, out, r, scale: 5.0 / r as f32 }, LoraCols { c0, width });
        let mut rng = Rng::new(80 + i as u64);
        let (x, a, b) = (rng.vec(n * inp, -1.0, 1.0), rng.vec(r * inp, -1.0, 1.0), rng.vec(out * r, -1.0, 1.0));
        let (out0, dout) = (rng.vec(n * width, -1.0, 1.0), rng.vec(n * width, -1.0, 1.0));
        let (dx0, da0, db0) = (rng.vec(n * inp, -1.0, 1.0), rng.vec(r * inp, -1.0, 1.0), rng.vec(out * r, -1.0, 1.0));
        let nan = vec![f32::NAN; n * r];
        let up = |name: &str, shape: &[usize], v: &[f32]| g.upload(name, shape, v);
        let (x_t, a_t, b_t) = (up("x", &[n, inp], &x), up("a", &[r, inp], &a), up("b", &[out, r], &b));
        let (out_t, hs, dh) = (up("out", &[n, width], &out0), up("hs", &[n, r], &nan), up("dh", &[n, r], &nan));
        let dout_t = up("dout", &[n, width], &dout);
        let (dx, da, db) = (up("dx", &[n, inp], &dx0), up("da", &[r, inp], &da0), up("db", &[out, r], &db0));
        let seed = g.tensor("seed", &[1]);
        let mut prog = Program::default();
        let (x_r, a_r, b_r, hs_r, seed_r) = (&x_t, &a_t, &b_t, &hs, &seed);
        let fwd = LoraFwd { out: &out_t, hs: hs_r, x: x_r, a: a_r, b: b_r, seed: seed_r, scale: d.scale };
        lora_forward_at(&k, &mut prog, fwd, c0);
        let (dx_r, da_r, db_r, dh_r, dout_r) = (&dx, &da, &db, &dh, &dout_t);
        let bwd = LoraBwd {
            dx: dx_r,
            da: da_r,
            db: db_r,
            dh: dh_r,
            dout: dout_r,
            x: x_r,
            a: a_r,
            b: b_r,
            hs: hs_r,
            seed: seed_r,
            scale: d.scale,
            accumulate_dx: true,
        };
        lora_backward_at(&k, &mut prog, bwd, c0);
        g.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&out_t, &hs, &dx, &da, &db]).await.unwrap();
        let (mut want_out, mut want_hs) = (out0.clone(), vec![0.0; n * r]);
        cpu::lora_forward_cols(cpu::LoraFwd { out: &mut want_out, hs: &mut want_hs, x: &x, a: &a, b: &b }, d, c);
        let (mut wdx, mut wda, mut wdb) = (dx0, da0, db0);
        let io =
            cpu::LoraBwd { dx: &mut wdx, da: &mut wda, db: &mut wdb, dout: &dout, x: &x, a: &a, b: &b, hs: &want_hs };
        cpu::lora_backward_cols(io, d, c);
        let what = format!("N{n} in{inp} out{out} r{r} cols {c0}..{} of {width}", c0 + out);
        let tol = |k: usize| 1e-5 * (k as f32).sqrt() * d.scale.max(1.0);
        assert_close(&format!("hs {what}"), &got[1], &want_hs, tol(inp), 1e-4);
        assert_close(&format!("out {what}"), &got[0], &want_out, tol(inp * r), 1e-4);
        assert_close(&format!("dx {what}"), &got[2], &wdx, tol(out * r), 1e-4);
        assert_close(&format!("dA {what}"), &got[3], &wda, tol(out * n), 1e-4);
        assert_close(&format!("dB {what}"), &got[4], &wdb, tol(inp * n), 1e-4);
        let outside = (0..n * width).filter(|j| !(c0..c0 + out).contains(&(j % width)));
        if let Some(j) = outside.clone().find(|&j| got[0][j].to_bits() != out0[j].to_bits()) {
            panic!("{what}: out[{j}] outside the adapter's columns changed: {} -> {}", out0[j], got[0][j]);
        }
    }
}
locked_gpu_test!(lora_windows_at_ragged_shapes, windows_at_ragged_shapes);

fn config_of(name: &str) -> (Vec<u8>, Gpt2Config) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let config = header.metadata().as_ref().unwrap()["config"].clone();
    (bytes, wgpt::hf::parse_config(&config).unwrap())
}

/// Each family's default targets, and the other family's names refused by name.
#[test]
fn targets_follow_the_family() {
    let (_, llama) = config_of("lora_llama.safetensors");
    let gpt2 = Gpt2Config::preset("tiny").unwrap();
    let lc = LoraConfig::for_model(&llama, 2, 1);
    assert_eq!(lc.targets, Targets::LLAMA);
    assert_eq!(lc.targets.list(), Target::LLAMA.to_vec());
    assert!(lc.validate(&llama).is_ok());
    assert_eq!(LoraConfig::for_model(&gpt2, 2, 1).targets, Targets::ALL);
    let refused = |names: &str, cfg: &Gpt2Config| {
        let lc = LoraConfig { targets: Targets::parse(names).unwrap(), ..LoraConfig::new(2, 1) };
        lc.validate(cfg).unwrap_err().to_string()
    };
    let e = refused("c_attn,c_fc", &llama);
    assert!(e.contains("attn.c_attn") && e.contains("q_proj, k_proj"), "{e}");
    let e = refused("q_proj,down_proj", &gpt2);
    assert!(e.contains("self_attn.q_proj") && e.contains("c_attn, c_proj, c_fc"), "{e}");
    let e = Targets::parse("q_proj,c_fc").unwrap_err().to_string();
    assert!(e.contains("q_proj") && e.contains("c_fc") && e.contains("different"), "{e}");
    let e = Targets::parse("gate").unwrap_err().to_string();
    assert!(e.contains("\"gate\"") && e.contains("gate_proj"), "{e}");
    // columns: q|k|v of 4 heads of 8 over 2 KV heads, gate|up of 21
    let cols: Vec<(usize, usize)> = Target::LLAMA.iter().map(|t| t.cols(&llama)).collect();
    assert_eq!(cols, vec![(0, 32), (32, 16), (48, 16), (0, 16), (0, 21), (21, 21), (0, 16)]);
    // a rank over a layer's smaller side (k_proj's 16 outputs)
    let e = LoraConfig::for_model(&llama, 17, 1).validate(&llama).unwrap_err().to_string();
    assert!(e.contains("at most 16"), "{e}");
    // the adapters' checkpoint names read back to their shapes, and not on the other family
    for (name, shape) in lc.specs(&llama) {
        assert_eq!(wgpt::model::lora::adapter_shape(&llama, &name, shape.iter().product()), Some(shape), "{name}");
    }
    assert_eq!(wgpt::model::lora::adapter_shape(&gpt2, "lora.h.0.self_attn.q_proj.lora_A", 2 * 64), None);
}

/// One committed peft fixture of the family: the first step's loss, gradients and adapters, and
/// ten losses (tests/common/peft_steps.rs, as the GPT-2 fixture in tests/lora.rs).
async fn peft_parity(k: &Arc<Kernels>, file: &str) {
    let (bytes, cfg) = config_of(file);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // the base alone (the class's names), as a model directory holds it
    let base = st.tensors().into_iter().filter(|(n, _)| n.starts_with("model.") || n.starts_with("lm_head."));
    let weights = wgpt::hf::load_weights(file, &safetensors::serialize(base, None).unwrap(), cfg).unwrap();
    // ours lora.h.0.self_attn.q_proj.lora_A -> base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
    let peft_name =
        |ours: &str| format!("base_model.model.model.layers.{}.weight", ours.strip_prefix("lora.h.").unwrap());
    common::peft_steps::check(k, file, &bytes, (&weights, cfg), peft_name).await;
}

async fn llama_parity(k: Arc<Kernels>) {
    peft_parity(&k, "lora_llama.safetensors").await;
}
locked_gpu_test!(lora_llama_matches_peft, llama_parity);

async fn qwen3_parity(k: Arc<Kernels>) {
    peft_parity(&k, "lora_qwen3.safetensors").await;
}
locked_gpu_test!(lora_qwen3_matches_peft, qwen3_parity);
