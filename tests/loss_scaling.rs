//! Dynamic loss scaling (src/train.rs LossScaling): an overflow skips the step (parameters and
//! AdamW's moments bitwise unchanged) and halves the scale, and the run goes on; with a
//! power-of-two scale and no overflow, f32 training equals training without scaling bitwise;
//! the scale doubles after the growth interval of clean steps.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::Arc;

use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2, Gpt2Config, Weights};
use wgpt::train::{LossScale, LossScaling, TrainConfig, Trainer};

const CFG: Gpt2Config =
    Gpt2Config { n_layer: 2, n_head: 2, n_embd: 32, block_size: 16, vocab_size: 61, arch: wgpt::model::Arch::GPT2 };

fn trainer(k: &Arc<Kernels>, scaling: Option<LossScaling>, dropout: f32) -> Trainer {
    let cfg = TrainConfig {
        batch_size: 2,
        seq_len: 16,
        grad_accum: 2,
        dropout,
        warmup_iters: 2,
        lr_decay_iters: 50,
        loss_scaling: scaling,
        ..TrainConfig::default()
    };
    Trainer::new(Gpt2::new(k.clone(), &Weights::random(CFG, 21)).unwrap(), cfg).unwrap()
}

fn batches(rng: &mut common::Rng) -> Vec<(Vec<u32>, Vec<u32>)> {
    (0..2).map(|_| (rng.ids(32, CFG.vocab_size), rng.ids(32, CFG.vocab_size))).collect()
}

/// Parameters, then AdamW's m and v, in parameter order.
fn state(t: &Trainer) -> Vec<Vec<f32>> {
    let mut all = pollster::block_on(t.model.weights()).unwrap().tensors;
    let (m, v) = pollster::block_on(t.moments()).unwrap();
    all.extend(m);
    all.extend(v);
    all
}

/// Panics with the worst element where `got` and `want` differ in any bit.
fn assert_bitwise(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let differ: Vec<usize> = (0..g.len()).filter(|&j| g[j].to_bits() != w[j].to_bits()).collect();
        if let Some(&j) = differ.iter().max_by(|&&a, &&b| (g[a] - w[a]).abs().total_cmp(&(g[b] - w[b]).abs())) {
            panic!(
                "{what}: tensor {i}: {} of {} elements differ; worst [{j}]: {:e} vs {:e}",
                differ.len(),
                g.len(),
                g[j],
                w[j]
            );
        }
    }
}

fn scale(t: &Trainer) -> LossScale {
    pollster::block_on(t.loss_scale()).unwrap().expect("loss scaling is on")
}

#[test]
fn an_overflow_skips_the_step_and_the_run_goes_on() {
    let Some(k) = common::shared_kernels() else { return };
    // 2^80 times these gradients overflows their squared norm in f32
    let init = 2f32.powi(80);
    let mut t = trainer(&k, Some(LossScaling { init_scale: init, growth_interval: 1000 }), 0.1);
    let mut rng = common::Rng::new(4);
    let before = state(&t);
    t.step(&batches(&mut rng)).unwrap();
    assert!(!pollster::block_on(t.grad_norm()).unwrap().is_finite(), "the test must overflow");
    assert_bitwise("parameters and moments after a skipped step", &state(&t), &before);
    assert_eq!(scale(&t), LossScale { scale: init / 2.0, good: 0, skipped: 1 });
    assert_eq!(t.step, 1, "a skipped step still counts as an iteration (lr schedule, dropout seeds)");
    // the run goes on: the scale falls until the gradients fit, then the steps apply
    let mut losses = vec![];
    for _ in 0..40 {
        t.step(&batches(&mut rng)).unwrap();
        losses.push(pollster::block_on(t.last_loss()).unwrap());
    }
    let s = scale(&t);
    assert!(s.skipped > 1 && s.skipped < 40, "skipped {} of 41 steps", s.skipped);
    assert_eq!(s.scale, init / 2f32.powi(s.skipped as i32), "halved once per skip");
    assert_eq!(s.good, 41 - s.skipped, "every step after the last skip was clean");
    assert!(pollster::block_on(t.grad_norm()).unwrap().is_finite());
    assert!(losses.iter().all(|l| l.is_finite()), "losses {losses:?}");
    let after = state(&t);
    let changed = after.iter().zip(&before).filter(|(a, b)| a != b).count();
    assert!(changed == after.len(), "{changed} of {} tensors changed after the skips", after.len());
    println!(
        "scale 2^80: {} steps skipped, scale settled at 2^{}, {} clean steps; losses {:.3} .. {:.3}",
        s.skipped,
        s.scale.log2(),
        s.good,
        losses[0],
        losses[losses.len() - 1]
    );
}

/// After k skipped steps, AdamW's bias correction counts applied steps only (as torch, where a
/// skipped step does not advance the optimizer): at a constant learning rate, the first applied
/// step after the skips equals the first step of a run without scaling on the same batch, bitwise.
#[test]
fn the_first_applied_step_after_skips_is_adams_first() {
    let Some(k) = common::shared_kernels() else { return };
    let constant = |mut t: Trainer| {
        (t.cfg.warmup_iters, t.cfg.lr_decay_iters, t.cfg.min_lr) = (0, 0, t.cfg.lr);
        t
    };
    // 2^70: the squared norm overflows for several steps; the scale stays a power of two
    let mut scaled = constant(trainer(&k, Some(LossScaling { init_scale: 2f32.powi(70), growth_interval: 1000 }), 0.0));
    let mut plain = constant(trainer(&k, None, 0.0));
    let b = batches(&mut common::Rng::new(9));
    let before = state(&scaled);
    let mut steps = 0;
    while state(&scaled) == before {
        assert!(steps < 40, "no step applied after {steps} skips");
        scaled.step(&b).unwrap();
        steps += 1;
    }
    let skipped = steps - 1;
    assert!(skipped >= 2, "the test must skip more than once");
    assert_eq!(scale(&scaled).skipped, skipped);
    plain.step(&b).unwrap();
    assert_bitwise("the first applied step after skips vs AdamW's first step", &state(&scaled), &state(&plain));
    println!("{skipped} steps skipped, then the applied step equals AdamW's step 1 bitwise");
}

#[test]
fn power_of_two_scaling_without_overflow_equals_no_scaling_bitwise() {
    let Some(k) = common::shared_kernels() else { return };
    let mut on = trainer(&k, Some(LossScaling::default()), 0.1);
    let mut off = trainer(&k, None, 0.1);
    let mut rng = common::Rng::new(6);
    for step in 0..4 {
        let b = batches(&mut rng);
        on.step(&b).unwrap();
        off.step(&b).unwrap();
        let n = |t: &Trainer| pollster::block_on(t.grad_norm()).unwrap();
        assert_eq!(n(&on).to_bits(), n(&off).to_bits(), "step {step}: unscaled gradient norm");
    }
    assert_eq!(scale(&on), LossScale { scale: 65536.0, good: 4, skipped: 0 });
    assert_bitwise("4 steps with scale 65536 vs without", &state(&on), &state(&off));
    assert_eq!(pollster::block_on(off.loss_scale()).unwrap(), None);
    println!(
        "4 steps (dropout 0.1, grad_accum 2) with loss scale 65536: parameters and moments bitwise equal to no scaling"
    );
}

#[test]
fn the_scale_grows_after_the_interval_and_resumes() {
    let Some(k) = common::shared_kernels() else { return };
    let ls = LossScaling { init_scale: 1024.0, growth_interval: 3 };
    let mut t = trainer(&k, Some(ls), 0.0);
    let mut rng = common::Rng::new(2);
    let mut seen = vec![];
    for _ in 0..7 {
        t.step(&batches(&mut rng)).unwrap();
        seen.push(scale(&t));
    }
    let want = |scale: f32, good: u32| LossScale { scale, good, skipped: 0 };
    assert_eq!(seen[1], want(1024.0, 2));
    assert_eq!(seen[2], want(2048.0, 0), "doubled after 3 clean steps");
    assert_eq!(seen[5], want(4096.0, 0));
    assert_eq!(seen[6], want(4096.0, 1));
    // a checkpoint's state restores into a new trainer
    let mut r = trainer(&k, Some(ls), 0.0);
    r.restore_loss_scale(&seen[6]).unwrap();
    assert_eq!(scale(&r), seen[6]);
    assert!(r.restore_loss_scale(&LossScale { scale: f32::INFINITY, good: 0, skipped: 0 }).is_err());
    println!("scale 1024, interval 3: {:?}", seen.iter().map(|s| s.scale).collect::<Vec<_>>());
}

#[test]
fn bad_scaling_settings_are_refused() {
    for (init, interval) in [(0.0, 10), (f32::INFINITY, 10), (2f32.powi(127), 10), (1.0, 0)] {
        let cfg = TrainConfig {
            loss_scaling: Some(LossScaling { init_scale: init, growth_interval: interval }),
            ..TrainConfig::default()
        };
        assert!(cfg.validate(64).is_err(), "init {init}, interval {interval} was accepted");
    }
}

/// A run with loss scaling: 6 steps straight equal 3 steps + checkpoint + a fresh run restored
/// from it + 3 steps, losses and the scaler's state (which grows every 2 steps here) included.
#[test]
fn a_checkpoint_keeps_the_loss_scale() {
    use wgpt::run::{DataSource, Run, RunConfig};
    use wgpt::tokenizer::Tokenizer;
    let Some(k) = common::shared_kernels() else { return };
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(20);
    let tok = Tokenizer::char_level(&text).unwrap();
    let model = Gpt2Config { vocab_size: tok.vocab_size(), ..CFG };
    let cfg = RunConfig {
        model,
        train: TrainConfig {
            batch_size: 2,
            seq_len: 16,
            loss_scaling: Some(LossScaling { init_scale: 256.0, growth_interval: 2 }),
            ..TrainConfig::default()
        },
        max_iters: 6,
        eval_interval: 100,
        eval_iters: 1,
        log_interval: 1,
        seed: 3,
        data: DataSource::Text("fox".into()),
        tokenizer: "char".into(),
    };
    let weights = Weights::random(model, 5);
    let new_run = |w: &Weights| Run::new(k.clone(), cfg.clone(), w, tok.clone(), &text).unwrap();
    let losses = common::step_losses;
    let mut straight = new_run(&weights);
    let want = losses(&mut straight, 6);
    let mut first = new_run(&weights);
    let mut got = losses(&mut first, 3);
    let ckpt = pollster::block_on(first.checkpoint(true)).unwrap();
    assert_eq!(ckpt.state().unwrap().loss_scale, Some(LossScale { scale: 512.0, good: 1, skipped: 0 }));
    let saved = wgpt::hf::load_weights("checkpoint", &ckpt.model, model).unwrap();
    let mut resumed = new_run(&saved);
    resumed.restore(&ckpt.state).unwrap();
    got.extend(losses(&mut resumed, 3));
    assert_eq!(got, want, "resumed losses differ from an uninterrupted run");
    assert_eq!(scale(&resumed.trainer), scale(&straight.trainer));
    assert_eq!(scale(&resumed.trainer).scale, 2048.0);
    println!("6 steps with scaling: resumed at step 3 (scale 512) equals straight; scale 2048 at the end");
}
