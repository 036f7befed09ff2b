//! Training dynamics against independent numbers: per-tensor gradient norms against the parity
//! files' gradients (HF transformers'), and weight RMS, gradient RMS and update ratios against
//! the host's arithmetic on tensors read back before and after each step; with wte bound whole
//! and in row chunks. A tracked step must update exactly as an untracked one.
#![cfg(not(target_arch = "wasm32"))] // a second device with a capped binding: native only

mod common;

use std::sync::Arc;

use wgpt::dynamics::Dynamics;
use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2, Weights};
use wgpt::parity::ParityFile;
use wgpt::train::{Optimizer, OptimizerConfig, TrainConfig, Trainer};

/// ‖x‖₂ in f64.
fn norm(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt()
}

/// Relative error of `got` against `want`, |got − want| / |want| (absolute where want is 0).
fn rel(got: f32, want: f64) -> f64 {
    let d = (got as f64 - want).abs();
    if want == 0.0 {
        d
    } else {
        d / want.abs()
    }
}

/// The worst relative error so far: (error, what).
#[derive(Default)]
struct Worst(f64, String);

impl Worst {
    fn check(&mut self, what: &str, got: f32, want: f64, tol: f64) {
        let e = rel(got, want);
        assert!(e <= tol, "{what}: {got:e} but the host says {want:e} (relative error {e:.2e} > {tol:e})");
        if e > self.0 {
            *self = Worst(e, format!("{what}: {got:e} vs {want:e}"));
        }
    }
}

#[test]
fn grad_norms_equal_the_parity_files() {
    let Some(d) = common::shared_data() else { return };
    let Some(k) = common::shared_kernels() else { return };
    for file in ["tiny", "baby"] {
        let path = d.join(format!("parity/{file}.safetensors"));
        let p = ParityFile::parse(file, &std::fs::read(&path).unwrap()).unwrap();
        let mut trainer = Trainer::new(Gpt2::new(k.clone(), &p.weights).unwrap(), p.train_config().unwrap()).unwrap();
        trainer.track_dynamics(1);
        trainer.step(&[(p.x.clone(), p.y.clone())]).unwrap();
        let dy = pollster::block_on(trainer.dynamics()).unwrap();
        let grads = p.grads.as_ref().unwrap();
        assert_eq!(dy.tensors.len(), grads.len());
        let mut worst = Worst::default();
        for (t, g) in dy.tensors.iter().zip(grads) {
            worst.check(&format!("{file} grad norm of {}", t.name), t.grad_norm, norm(g), 1e-4);
        }
        worst.check(&format!("{file} global grad norm"), dy.grad_norm, norm(&grads.concat()), 1e-4);
        assert_eq!((dy.step, dy.lr), (1, p.adamw.unwrap().lr));
        println!(
            "{file}: {} per-tensor gradient norms within 1e-4 of HF's; worst {} ({:.2e})",
            grads.len(),
            worst.1,
            worst.0
        );
    }
}

/// Steps from `weights` on `k` with dynamics tracked every step, each checked against the host:
/// gradient norm and RMS against the gradients read back, weight RMS against the weights after,
/// update RMS and ratio against the difference of the weights read before and after.
fn check_against_host(k: Arc<Kernels>, weights: &Weights, cfg: TrainConfig, what: &str) {
    let v = weights.config.vocab_size;
    let mut trainer = Trainer::new(Gpt2::new(k, weights).unwrap(), cfg).unwrap();
    let mut rng = common::Rng::new(3);
    let mut batch = || vec![(rng.ids(cfg.batch_size * cfg.seq_len, v), rng.ids(cfg.batch_size * cfg.seq_len, v))];
    assert!(pollster::block_on(trainer.dynamics()).is_err(), "nothing tracked yet");
    trainer.track_dynamics(1);
    let mut worst = Worst::default();
    for step in 1..=2u64 {
        let before = pollster::block_on(trainer.model.weights()).unwrap().tensors;
        trainer.step(&batch()).unwrap();
        let after = pollster::block_on(trainer.model.weights()).unwrap().tensors;
        let grads = pollster::block_on(trainer.model.kernels.gpu.read_many(&trainer.grads.ordered())).unwrap();
        let dy: Dynamics = pollster::block_on(trainer.dynamics()).unwrap();
        let global = pollster::block_on(trainer.grad_norm()).unwrap();
        assert!(global > cfg.grad_clip, "step {step}: clipping is active (norm {global}, clip {})", cfg.grad_clip);
        assert_eq!(dy.step, step);
        worst.check(&format!("{what} step {step} global norm"), dy.grad_norm, global as f64, 1e-5);
        for (((t, w0), w1), g) in dy.tensors.iter().zip(&before).zip(&after).zip(&grads) {
            let n = (w1.len() as f64).sqrt();
            let delta: Vec<f32> = w1.iter().zip(w0).map(|(a, b)| a - b).collect();
            let at = |q: &str| format!("{what} step {step} {q} of {}", t.name);
            worst.check(&at("grad norm"), t.grad_norm, norm(g), 1e-4);
            worst.check(&at("grad RMS"), t.grad_rms, norm(g) / n, 1e-4);
            worst.check(&at("weight RMS"), t.weight_rms, norm(w1) / n, 1e-4);
            worst.check(&at("update RMS"), t.update_rms, norm(&delta) / n, 1e-4);
            worst.check(&at("update ratio"), t.update_ratio, norm(&delta) / norm(w1), 1e-4);
            assert!(t.update_ratio > 0.0, "{}: the step moved it", t.name);
        }
        // a layer's numbers are its tensors' together
        let layers = dy.layers();
        assert_eq!(layers.len(), 2 + weights.config.n_layer, "embeddings, the blocks, ln_f");
        let h0: Vec<usize> = (0..before.len()).filter(|&i| dy.tensors[i].name.contains(".h.0.")).collect();
        let h0_grad = h0.iter().map(|&i| norm(&grads[i]).powi(2)).sum::<f64>().sqrt();
        let (d2, w2) = h0.iter().fold((0.0, 0.0), |(d2, w2), &i| {
            let delta: Vec<f32> = after[i].iter().zip(&before[i]).map(|(a, b)| a - b).collect();
            (d2 + norm(&delta).powi(2), w2 + norm(&after[i]).powi(2))
        });
        assert_eq!(layers[1].name, "h.0");
        worst.check(&format!("{what} step {step} h.0 grad norm"), layers[1].grad_norm, h0_grad, 1e-4);
        worst.check(&format!("{what} step {step} h.0 update ratio"), layers[1].update_ratio, (d2 / w2).sqrt(), 1e-4);
    }
    // every 2nd step: step 3 runs the plain update and reports nothing new, step 4 is tracked
    trainer.track_dynamics(2);
    trainer.step(&batch()).unwrap();
    assert!(pollster::block_on(trainer.dynamics()).is_err(), "step 3 is not tracked by the new plan");
    trainer.step(&batch()).unwrap();
    let dy = pollster::block_on(trainer.dynamics()).unwrap();
    assert_eq!((dy.step, dy.lr), (4, cfg.lr_at(3)));
    let json = serde_json::to_string(&dy).unwrap();
    assert_eq!(serde_json::from_str::<Dynamics>(&json).unwrap(), dy);
    println!("{what}: 2 steps, every tensor within 1e-4 of the host; worst {} ({:.2e})", worst.1, worst.0);
}

fn train_cfg() -> TrainConfig {
    TrainConfig {
        // B·T·V logits fit the capped 2 MiB binding
        batch_size: 1,
        seq_len: 8,
        warmup_iters: 1,
        lr_decay_iters: 10,
        grad_clip: 0.5,
        ..TrainConfig::default()
    }
}

/// The HF tiny GPT-2: wte's 1.6M elements span 25 chunks of the statistics' sums.
#[test]
fn update_ratios_equal_the_host() {
    let Some(d) = common::shared_data() else { return };
    let Some(k) = common::shared_kernels() else { return };
    let (weights, _) = wgpt::hf::dir::load(&d.join("hf-tiny-gpt2")).unwrap();
    check_against_host(k, &weights, train_cfg(), "wte whole");
}

/// The same through SGD's step (dynamics.wgsl's update_stats_sgd).
#[test]
fn update_ratios_equal_the_host_with_sgd() {
    let Some(d) = common::shared_data() else { return };
    let Some(k) = common::shared_kernels() else { return };
    let (weights, _) = wgpt::hf::dir::load(&d.join("hf-tiny-gpt2")).unwrap();
    let cfg = TrainConfig { optimizer: OptimizerConfig::of(Optimizer::Sgd), lr: 0.05, ..train_cfg() };
    check_against_host(k, &weights, cfg, "sgd");
}

/// The same with bindings capped at 2 MiB: wte (6.4 MB) and its gradient and moments are updated
/// in row chunks, each tensor's sums gathered over them.
#[test]
fn update_ratios_with_wte_in_row_chunks() {
    let Some(d) = common::shared_data() else { return };
    if common::shared_kernels().is_none() {
        return;
    }
    let mut gpu = pollster::block_on(wgpt::Gpu::new(common::options().device)).unwrap();
    gpu.cap_binding(2 << 20);
    let (weights, _) = wgpt::hf::dir::load(&d.join("hf-tiny-gpt2")).unwrap();
    let k = Arc::new(Kernels::with_family(&gpu, common::options().family).unwrap());
    let chunks = gpu.row_chunks(&Gpt2::new(k.clone(), &weights).unwrap().params.wte).len();
    assert!(chunks >= 3, "wte in {chunks} chunks");
    check_against_host(k, &weights, train_cfg(), &format!("wte in {chunks} row chunks"));
}

/// Tracking changes no number of the training itself: parameters (and AdamW's moments) after 3
/// steps are bit-identical with dynamics read every step and with none, for each optimizer.
#[test]
fn tracked_steps_update_as_untracked() {
    let Some(k) = common::shared_kernels() else { return };
    let cfg = wgpt::model::Gpt2Config::preset("baby").unwrap();
    let weights = Weights::random(cfg, 9);
    for kind in [Optimizer::AdamW, Optimizer::Sgd, Optimizer::Muon] {
        let optimizer = OptimizerConfig::of(kind);
        let train = TrainConfig { batch_size: 4, seq_len: 16, warmup_iters: 1, optimizer, ..TrainConfig::default() };
        let run = |every: usize| {
            let mut trainer = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), train).unwrap();
            trainer.track_dynamics(every);
            let mut rng = common::Rng::new(1);
            for _ in 0..3 {
                trainer.step(&[(rng.ids(64, cfg.vocab_size), rng.ids(64, cfg.vocab_size))]).unwrap();
            }
            let mut values = pollster::block_on(trainer.model.weights()).unwrap().tensors;
            if kind == Optimizer::AdamW {
                let (m, v) = pollster::block_on(trainer.moments()).unwrap();
                values.extend(m.into_iter().chain(v));
            }
            values.concat()
        };
        let (plain, tracked) = (run(0), run(1));
        let differ = plain.iter().zip(&tracked).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{kind:?}: {differ} of {} values differ with tracking", plain.len());
        println!("{kind:?}: {} values bit-identical after 3 tracked and 3 plain steps", plain.len());
    }
}
