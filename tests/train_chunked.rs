//! Training with the token embedding bound in row chunks: on a device whose storage bindings are
//! smaller than wte (GPT-2 124M's 154 MB on lavapipe's or SwiftShader's 128 MiB), wte, dwte and
//! AdamW's moments of wte are bound a chunk at a time everywhere a step touches them. Here the same
//! small model trains on a device capped so that they split into several chunks and on one where
//! they fit whole: losses, gradient norms, gradients, moments and parameters must agree.
#![cfg(not(target_arch = "wasm32"))] // a second device with a capped binding: native only

mod common;

use std::sync::Arc;

use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2, Gpt2Config, Weights};
use wgpt::train::{TrainConfig, Trainer};

/// What a few training steps leave behind.
struct Outcome {
    losses: Vec<f32>,
    norms: Vec<f32>,
    grads: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
}

/// `batches.len()` optimizer steps from `weights` on `k`'s device, each of grad_accum
/// micro-batches, reading the loss and the gradient norm after each.
fn run_steps(k: Arc<Kernels>, weights: &Weights, cfg: TrainConfig, batches: &[Vec<(Vec<u32>, Vec<u32>)>]) -> Outcome {
    let model = Gpt2::new(k, weights).unwrap();
    let mut trainer = Trainer::new(model, cfg).unwrap();
    let (mut losses, mut norms) = (Vec::new(), Vec::new());
    for step in batches {
        trainer.step(step).unwrap();
        losses.push(pollster::block_on(trainer.last_loss()).unwrap());
        norms.push(pollster::block_on(trainer.grad_norm()).unwrap());
    }
    let gpu = &trainer.model.kernels.gpu;
    let grads = pollster::block_on(gpu.read_many(&trainer.grads.ordered())).unwrap();
    let (m, v) = pollster::block_on(trainer.moments()).unwrap();
    let params = pollster::block_on(trainer.model.weights()).unwrap().tensors;
    Outcome { losses, norms, grads, m, v, params }
}

/// Checks every tensor (in parameter order) elementwise to `tol` relative to the tensor's scale,
/// |got − want| ≤ tol · max|want|, and prints the worst element of all and how many differ at all.
fn check_all(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], names: &[String], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: tensor counts differ");
    let mut worst = (0.0, String::from("none"));
    for ((g, w), name) in got.iter().zip(want).zip(names) {
        let scale = w.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(f32::MIN_POSITIVE);
        let c = wgpt::cpu::check_close(&format!("{what} {name} (max |want| {scale:.3e})"), g, w, tol * scale, 0.0)
            .unwrap_or_else(|m| panic!("{m}"));
        if c.max_abs / scale > worst.0 {
            let i = c.worst;
            worst = (c.max_abs / scale, format!("{name}[{i}] = {:e} vs {:e}", g[i], w[i]));
        }
    }
    let bits = got.iter().flatten().zip(want.iter().flatten()).filter(|(g, w)| g.to_bits() != w.to_bits()).count();
    let n = want.iter().map(Vec::len).sum::<usize>();
    println!("  {what}: worst {} ({:.2e} of the tensor's max); {bits} of {n} not bit-identical", worst.1, worst.0);
}

/// `cfg` at (b, t) trained 1 and 3 steps with grad_accum 2, once with bindings capped at `rows`
/// rows of wte (which must split into at least 3 chunks) and once uncapped.
fn chunked_matches_whole(cfg: Gpt2Config, b: usize, t: usize, rows: usize) {
    let Some(whole_k) = common::shared_kernels() else { return };
    let mut gpu = pollster::block_on(wgpt::Gpu::new(common::options().device)).unwrap();
    gpu.cap_binding((rows * cfg.n_embd * 4) as u64);
    let chunked_k = Arc::new(Kernels::with_family(&gpu, common::options().family).unwrap());
    let weights = Weights::random(cfg, 5);
    let starts: Vec<usize> = {
        let model = Gpt2::new(chunked_k.clone(), &weights).unwrap();
        gpu.row_chunks(&model.params.wte).into_iter().map(|(v0, _)| v0).collect()
    };
    assert!(starts.len() >= 3, "wte of {} rows in chunks starting at {starts:?}: want at least 3", cfg.vocab_size);
    assert_eq!(starts[1], rows, "chunks of {rows} rows (min_storage_buffer_offset_alignment allowing)");
    let whole_chunks = whole_k.gpu.row_chunks(&Gpt2::new(whole_k.clone(), &weights).unwrap().params.wte).len();
    assert_eq!(whole_chunks, 1, "the uncapped device binds wte whole");
    println!("{cfg:?} B={b} T={t}: wte's {} rows in chunks starting at {starts:?}", cfg.vocab_size);

    let train = TrainConfig {
        batch_size: b,
        seq_len: t,
        grad_accum: 2,
        lr: 1e-2,
        min_lr: 1e-3,
        warmup_iters: 1,
        lr_decay_iters: 4,
        grad_clip: 0.5,
        // AdamW moves an element by about lr·g/(|g| + eps), so a gradient's rounding difference
        // δ moves it by up to lr·δ/eps: with torch's 1e-8, the rounding noise of gradients that
        // are zero in exact arithmetic (the key biases': softmax ignores them) would become
        // parameter differences of 1e-4 of the tensors' scale
        eps: 1e-4,
        ..TrainConfig::default()
    };
    // random tokens, plus the first and last token of every chunk (alternately as an input and a
    // target, each in a slot of its own) so that each chunk's boundary rows are gathered,
    // scattered into and predicted
    let mut rng = common::Rng::new(11);
    let v = cfg.vocab_size;
    let edges: Vec<u32> =
        starts.iter().flat_map(|&s| [s.saturating_sub(1), s]).chain([v - 1]).map(|x| x as u32).collect();
    assert!(edges.len().div_ceil(2) <= b * t, "{} edge tokens do not fit B·T = {}", edges.len(), b * t);
    let batches: Vec<Vec<(Vec<u32>, Vec<u32>)>> = (0..3)
        .map(|step| {
            (0..2)
                .map(|micro| {
                    let mut ids = rng.ids(b * t, v);
                    let mut targets = rng.ids(b * t, v);
                    for (j, &e) in edges.iter().enumerate() {
                        let slot = (j / 2 + step + micro) % (b * t);
                        if j % 2 == 0 {
                            ids[slot] = e;
                        } else {
                            targets[slot] = e;
                        }
                    }
                    (ids, targets)
                })
                .collect()
        })
        .collect();

    let names: Vec<String> = cfg.param_specs().into_iter().map(|(name, _)| name).collect();
    // the chunked run differs only in the order dlnf sums its vocabulary chunks (and the grad
    // norm its partial sums); everything downstream inherits that rounding, and AdamW's
    // division by √v + eps amplifies it in the parameters
    let (tol_loss, tol_grad, tol_param) = (1e-6, 1e-5, 1e-4);
    for n in [1, 3] {
        let want = run_steps(whole_k.clone(), &weights, train, &batches[..n]);
        let got = run_steps(chunked_k.clone(), &weights, train, &batches[..n]);
        println!(
            "after {n} steps: losses {:?} vs {:?}; grad norms {:?} vs {:?}",
            got.losses, want.losses, got.norms, want.norms
        );
        assert!(want.norms.iter().all(|&x| x > train.grad_clip), "clipping is active in every step");
        check_all("losses", &[got.losses], &[want.losses], &["loss".into()], tol_loss);
        check_all("grad norms", &[got.norms], &[want.norms], &["norm".into()], tol_loss);
        check_all("gradients", &got.grads, &want.grads, &names, tol_grad);
        check_all("adam m", &got.m, &want.m, &names, tol_grad);
        check_all("adam v", &got.v, &want.v, &names, tol_grad);
        check_all("parameters", &got.params, &want.params, &names, tol_param);
    }
}

/// V % 4 == 0 and chunks of 152 rows: the products over vocabulary chunks take the vec4 kernels
/// (NN, TN), the last chunk is shorter (144 rows).
#[test]
fn chunked_wte_vec4_chunks() {
    let cfg =
        Gpt2Config { n_layer: 2, n_head: 2, n_embd: 32, block_size: 8, vocab_size: 600, arch: wgpt::model::Arch::GPT2 };
    chunked_matches_whole(cfg, 2, 4, 152);
}

/// An odd V and chunks of 150 rows: vocabulary blocks at unaligned columns on the scalar kernels
/// (NN1, TN1), and a last chunk of a single row.
#[test]
fn chunked_wte_ragged_chunks() {
    let cfg =
        Gpt2Config { n_layer: 2, n_head: 2, n_embd: 32, block_size: 8, vocab_size: 601, arch: wgpt::model::Arch::GPT2 };
    chunked_matches_whole(cfg, 2, 3, 150);
}
