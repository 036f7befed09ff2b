//! Optimizers beside AdamW end to end: an SGD run resumes bit for bit, its checkpoint holds
//! torch's momentum buffers and no moments, a checkpoint of another optimizer is refused, and
//! `wgpt train --optimizer sgd` recovers from device loss exactly, records its optimizer and
//! refuses bad optimizer flags.

mod common;

use common::runs::{self, scratch_with_corpus};

use std::path::Path;

use wgpt::model::Weights;
use wgpt::run::RunConfig;
use wgpt::train::{Optimizer, OptimizerConfig, Schedule, TrainConfig};

/// A tiny run under `optimizer` on `schedule`, with accumulation, warmup and clipping.
fn run_config(optimizer: OptimizerConfig, lr_schedule: Schedule) -> RunConfig {
    runs::tiny_run_config(TrainConfig { lr: 0.1, min_lr: 0.01, optimizer, lr_schedule, ..runs::tiny_train() })
}

fn sgd() -> OptimizerConfig {
    OptimizerConfig::of(Optimizer::Sgd)
}

/// 20 SGD steps (Nesterov, WSD schedule) straight equal 10 + checkpoint + a fresh run restored
/// from it + 10; the checkpoint holds one momentum buffer per parameter under torch's name.
#[test]
fn sgd_resumes_exactly() {
    let Some(k) = common::shared_kernels() else { return };
    let cfg = run_config(sgd(), Schedule::Wsd);
    let weights = Weights::random(cfg.model, 1);
    let losses = common::step_losses;
    let want = losses(&mut runs::pangram_run(&k, cfg.clone(), &weights), 20);

    let mut first = runs::pangram_run(&k, cfg.clone(), &weights);
    let mut got = losses(&mut first, 10);
    let ckpt = pollster::block_on(first.checkpoint(true)).unwrap();
    drop(first);
    let (state, meta) = wgpt::checkpoint::parse_state::<serde_json::Value>("state", &ckpt.state, &cfg.model).unwrap();
    let keys: Vec<String> = state.unwrap().into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys.len(), cfg.model.param_specs().len(), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("momentum_buffer.")), "{keys:?}");
    assert_eq!(meta["run"]["train"]["optimizer"]["kind"], "sgd");
    assert_eq!(meta["run"]["train"]["lr_schedule"], "wsd");
    let saved = wgpt::hf::load_weights("checkpoint", &ckpt.model, cfg.model).unwrap();
    let mut resumed = runs::pangram_run(&k, cfg.clone(), &saved);
    resumed.restore(&ckpt.state).unwrap();
    assert_eq!(resumed.step(), 10);
    got.extend(losses(&mut resumed, 10));
    println!("straight: {want:?}\nresumed:  {got:?}");
    assert_eq!(got, want, "resumed losses differ from an uninterrupted run");
    assert!(want[19] < want[0], "the loss should fall: {} -> {}", want[0], want[19]);
}

/// A checkpoint's optimizer state goes only into a run of the optimizer that saved it.
#[test]
fn another_optimizers_state_is_refused() {
    let Some(k) = common::shared_kernels() else { return };
    let (adamw, sgd) = (run_config(OptimizerConfig::default(), Schedule::Cosine), run_config(sgd(), Schedule::Cosine));
    let weights = Weights::random(adamw.model, 1);
    for (from, into, foreign) in [(&adamw, &sgd, "adam_m."), (&sgd, &adamw, "momentum_buffer.")] {
        let mut run = runs::pangram_run(&k, from.clone(), &weights);
        common::step_losses(&mut run, 1);
        let ckpt = pollster::block_on(run.checkpoint(true)).unwrap();
        let err = runs::pangram_run(&k, into.clone(), &weights).restore(&ckpt.state).unwrap_err().to_string();
        println!("{err}");
        assert!(err.contains(foreign) && err.contains("another optimizer"), "{err}");
    }
}

/// A model-only checkpoint of an SGD run resumes at its step with its momentum buffers at zero
/// (torch's fresh SGD), and trains on.
#[test]
fn a_model_only_sgd_checkpoint_resumes_with_fresh_buffers() {
    let Some(k) = common::shared_kernels() else { return };
    let cfg = run_config(sgd(), Schedule::Cosine);
    let mut run = runs::pangram_run(&k, cfg.clone(), &Weights::random(cfg.model, 1));
    common::step_losses(&mut run, 3);
    let kept = pollster::block_on(run.trainer.optimizer_state()).unwrap();
    assert!(kept.iter().any(|(_, v)| v.iter().any(|&x| x != 0.0)), "three steps fill the buffers");
    let ckpt = pollster::block_on(run.checkpoint(false)).unwrap();
    let saved = wgpt::hf::load_weights("checkpoint", &ckpt.model, cfg.model).unwrap();
    let mut resumed = runs::pangram_run(&k, cfg, &saved);
    resumed.restore(&ckpt.state).unwrap();
    assert!(resumed.fresh_moments && resumed.step() == 3);
    let fresh = pollster::block_on(resumed.trainer.optimizer_state()).unwrap();
    assert_eq!(fresh.len(), kept.len());
    assert!(fresh.iter().all(|(_, v)| v.iter().all(|&x| x == 0.0)), "the buffers start from zero");
    let losses = common::step_losses(&mut resumed, 2);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
}

/// `wgpt train` on a tiny model with `extra` flags, into `out`: exit code and output.
fn wgpt_train(corpus: &Path, out: &Path, extra: &[&str], lose_at: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"));
    cmd.args(["train", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16"])
        .args(["--batch-size", "4", "--max-iters", "20", "--eval-interval", "10", "--eval-iters", "1"])
        .args(["--log-interval", "1", "--warmup-iters", "2", "--data", corpus.to_str().unwrap(), "--out"])
        .arg(out)
        .args(extra);
    if let Some(step) = lose_at {
        cmd.env("WGPT_LOSE_DEVICE_AT", step);
    }
    let o = cmd.output().expect("run wgpt");
    (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout))
}

/// An SGD run that loses its device at step 15 goes on from its step-10 checkpoint as SGD and
/// ends bit for bit where an uninterrupted one does; the run records its optimizer.
#[test]
fn cli_sgd_recovers_from_device_loss() {
    let Some(_) = common::shared_kernels() else { return };
    let (root, corpus) = scratch_with_corpus("sgd-lost");
    let flags = ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.8", "--lr-schedule", "wsd"];
    let (code, log) = wgpt_train(&corpus, &root.join("lost"), &flags, Some("15"));
    assert_eq!(code, Some(0), "training goes on after the device is lost: {log}");
    assert!(log.contains("device was lost"), "{log}");
    let (code, log) = wgpt_train(&corpus, &root.join("clean"), &flags, None);
    assert_eq!(code, Some(0), "{log}");
    let (lost, _) = wgpt::hf::dir::load(&root.join("lost")).unwrap();
    let (clean, _) = wgpt::hf::dir::load(&root.join("clean")).unwrap();
    let worst = lost
        .tensors
        .iter()
        .zip(&clean.tensors)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    println!("recovered vs uninterrupted SGD run after 20 steps: max |difference| {worst:e}");
    assert_eq!(worst, 0.0, "the recovered run must continue exactly");
    let state = std::fs::read(root.join("lost").join(wgpt::checkpoint::STATE_FILE)).unwrap();
    let train = wgpt::run::saved_run(&state, &lost.config).unwrap().run.train;
    assert_eq!((train.optimizer.kind, train.optimizer.momentum, train.optimizer.nesterov), (Optimizer::Sgd, 0.8, true));
    assert_eq!(train.lr_schedule, Schedule::Wsd);
    // a resumed run keeps its optimizer: flags that would change it are refused
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["train", "--resume", root.join("lost").to_str().unwrap(), "--optimizer", "adamw"])
        .output()
        .expect("run wgpt");
    let (code, log) = (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string());
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("--optimizer does not apply to --resume"), "{log}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Bad optimizer flags are refused with what is wrong, before any training.
#[test]
fn cli_refuses_bad_optimizer_flags() {
    let Some(_) = common::shared_kernels() else { return };
    let (root, corpus) = scratch_with_corpus("optim-flags");
    for (flags, says) in [
        (&["--optimizer", "adam"][..], "--optimizer: unknown optimizer \"adam\": choose adamw, muon or sgd"),
        (&["--lr-schedule", "linear"], "--lr-schedule: unknown lr schedule \"linear\""),
        (&["--optimizer", "sgd", "--momentum", "1.5"], "momentum must be in [0, 1), got 1.5"),
        (&["--optimizer", "sgd", "--momentum", "0"], "SGD's Nesterov momentum needs a momentum above 0"),
        (&["--optimizer", "muon", "--muon-lr=-1"], "muon_lr must be a positive number"),
    ] {
        let (code, log) = wgpt_train(&corpus, &root.join("out"), flags, None);
        println!("{flags:?}: {}", log.trim());
        assert_eq!(code, Some(2), "{flags:?}: {log}");
        assert!(log.contains(says), "{flags:?} should say {says:?}: {log}");
        assert!(!root.join("out").join("model.safetensors").exists(), "{flags:?} trained");
    }
    let _ = std::fs::remove_dir_all(&root);
}
