//! Muon in training runs: resuming equals not stopping (momentum buffers through the
//! checkpoint), also through the CLI's recovery from a lost device, the update with dynamics statistics moves the weights exactly as the plain one and
//! its sums match the weights it moved, the loss falls, and the memory estimate counts the
//! Newton-Schulz scratch the trainer allocates.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::runs;

use wgpt::model::{Gpt2, Gpt2Config, Weights};
use wgpt::run::{Run, RunConfig};
use wgpt::train::{training_bytes, training_bytes_for, Optimizer, OptimizerConfig, TrainConfig, Trainer};

/// The tests of this binary run one at a time, so that one can count the device's allocations.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Muon with today's AdamW settings for the rest; tall (4C, C) and wide matrices, clipping,
/// accumulation, warmup and decay all active.
fn muon_train() -> TrainConfig {
    TrainConfig { optimizer: OptimizerConfig::of(Optimizer::Muon), ..runs::tiny_train() }
}

fn run_config() -> RunConfig {
    runs::tiny_run_config(muon_train())
}

fn new_run(k: &std::sync::Arc<wgpt::kernels::Kernels>, weights: &Weights) -> Run {
    runs::pangram_run(k, run_config(), weights)
}

/// 20 steps straight equal 10 steps + checkpoint (with the momentum buffers) + a fresh run
/// restored from it + 10 steps; the run tracks dynamics every step, so this is Muon's update
/// with statistics.
#[test]
fn a_muon_run_resumes_exactly() {
    let _lock = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(k) = common::shared_kernels() else { return };
    let weights = Weights::random(run_config().model, 1);
    let mut straight = new_run(&k, &weights);
    let want = common::step_losses(&mut straight, 20);

    let mut first = new_run(&k, &weights);
    let mut got = common::step_losses(&mut first, 10);
    let ckpt = pollster::block_on(first.checkpoint(true)).unwrap();
    drop(first);
    let saved = wgpt::hf::load_weights("checkpoint", &ckpt.model, run_config().model).unwrap();
    let mut resumed = new_run(&k, &saved);
    resumed.restore(&ckpt.state).unwrap();
    got.extend(common::step_losses(&mut resumed, 10));
    println!("straight: {want:?}\nresumed:  {got:?}");
    assert_eq!(got, want, "resumed losses differ from an uninterrupted run");
    assert!(want[19] < 0.8 * want[0], "the loss should fall: {} -> {}", want[0], want[19]);
    let state = pollster::block_on(resumed.trainer.optimizer_state()).unwrap();
    let key = "momentum_buffer.h.0.mlp.c_proj.weight";
    let buf = state.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key} in the state"));
    assert!(buf.1.iter().any(|&x| x != 0.0), "{key} is all zeros");
}

/// Three steps with the statistics update every step leave every weight bit for bit where
/// three plain steps do, and the sums say what moved: the weight and update RMS of each
/// c_proj matrix (one wide, one tall) are those of its weights after the third step and of what
/// that step changed.
#[test]
fn muon_statistics_update_equals_the_plain_one() {
    let _lock = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(k) = common::shared_kernels() else { return };
    let cfg = run_config().model;
    let weights = Weights::random(cfg, 3);
    let mut rng = common::Rng::new(5);
    let batches: Vec<_> = (0..2).map(|_| (rng.ids(64, cfg.vocab_size), rng.ids(64, cfg.vocab_size))).collect();
    let mut trained = vec![];
    for tracked in [false, true] {
        let mut t = Trainer::new(Gpt2::new(k.clone(), &weights).unwrap(), muon_train()).unwrap();
        if tracked {
            t.track_dynamics(1);
        }
        for _ in 0..2 {
            t.step(&batches).unwrap();
        }
        let before = pollster::block_on(t.model.weights()).unwrap().tensors;
        t.step(&batches).unwrap();
        let w = pollster::block_on(t.model.weights()).unwrap().tensors;
        if tracked {
            let d = pollster::block_on(t.dynamics()).unwrap();
            let specs = cfg.param_specs();
            for (i, (name, _)) in specs.iter().enumerate().filter(|(_, (n, _))| n.ends_with("c_proj.weight")) {
                let td = &d.tensors[i];
                let rms = |x: &mut dyn Iterator<Item = f32>| {
                    (x.map(|v| v as f64 * v as f64).sum::<f64>() / w[i].len() as f64).sqrt() as f32
                };
                let (w_rms, d_rms) =
                    (rms(&mut w[i].iter().copied()), rms(&mut w[i].iter().zip(&before[i]).map(|(a, b)| a - b)));
                println!(
                    "{name}: weight rms {} ({w_rms} from the weights), update rms {} ({d_rms})",
                    td.weight_rms, td.update_rms
                );
                assert!(
                    (td.weight_rms - w_rms).abs() <= 1e-5 * w_rms,
                    "{name}: weight rms {} vs {w_rms}",
                    td.weight_rms
                );
                assert!(
                    (td.update_rms - d_rms).abs() <= 1e-4 * d_rms,
                    "{name}: update rms {} vs {d_rms}",
                    td.update_rms
                );
                assert!(td.grad_norm > 0.0, "{name}: no gradient");
            }
        }
        trained.push(w);
    }
    assert!(trained[0] == trained[1], "the update with statistics moved the weights differently");
}

/// The estimate of a Muon run (the memory plan's: one momentum buffer per matrix in place of
/// AdamW's two moments, and the Newton-Schulz scratch) is what its trainer allocates.
#[test]
fn muon_memory_estimate_matches_allocations() {
    let _lock = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(k) = common::shared_kernels() else { return };
    let cfg =
        Gpt2Config { n_layer: 2, n_head: 2, n_embd: 48, block_size: 32, vocab_size: 65, arch: wgpt::model::Arch::GPT2 };
    let train = TrainConfig { batch_size: 4, seq_len: 32, ..muon_train() };
    let (_, before) = k.gpu.buffer_stats();
    let trainer = Trainer::new(Gpt2::new(k.clone(), &Weights::random(cfg, 1)).unwrap(), train).unwrap();
    let (_, after) = k.gpu.buffer_stats();
    let kind = trainer.cfg.attention.unwrap();
    let adamw = training_bytes(&cfg, 4, 32, kind, false);
    let estimate = training_bytes_for(&cfg, &train.optimizer, 4, 32, kind, false);
    let ratio = estimate as f64 / (after - before) as f64;
    println!("Muon: estimate {estimate} bytes, allocated {} ({ratio:.3}); AdamW's estimate {adamw}", after - before);
    assert!((0.98..=1.0).contains(&ratio), "estimate {estimate} vs allocated {}", after - before);
}

/// `wgpt train --optimizer muon` that loses its device at step 15 goes on from its step-10
/// checkpoint (momentum buffers included) as Muon and ends bit for bit where an uninterrupted run
/// does; the run records Muon's settings.
#[test]
fn cli_muon_recovers_from_device_loss() {
    let _lock = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_) = common::shared_kernels() else { return };
    let root = std::env::temp_dir().join(format!("wgpt-muon-lost-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let corpus = root.join("corpus.txt");
    std::fs::write(&corpus, runs::pangrams()).unwrap();
    let train = |out: &str, lose_at: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"));
        cmd.args(["train", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16"])
            .args(["--batch-size", "4", "--max-iters", "20", "--eval-interval", "10", "--eval-iters", "1"])
            .args(["--log-interval", "1", "--warmup-iters", "2", "--data", corpus.to_str().unwrap()])
            .args(["--optimizer", "muon", "--muon-lr", "0.03", "--momentum", "0.9", "--no-nesterov"])
            .arg("--out")
            .arg(root.join(out));
        if let Some(step) = lose_at {
            cmd.env("WGPT_LOSE_DEVICE_AT", step);
        }
        let o = cmd.output().expect("run wgpt");
        let log = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{log}");
        log
    };
    assert!(train("lost", Some("15")).contains("device was lost"));
    train("clean", None);
    let (lost, _) = wgpt::hf::dir::load(&root.join("lost")).unwrap();
    let (clean, _) = wgpt::hf::dir::load(&root.join("clean")).unwrap();
    assert!(lost.tensors == clean.tensors, "the recovered Muon run must continue exactly");
    let state = std::fs::read(root.join("lost").join(wgpt::checkpoint::STATE_FILE)).unwrap();
    let o = wgpt::run::saved_run(&state, &lost.config).unwrap().run.train.optimizer;
    assert_eq!((o.kind, o.muon_lr, o.momentum, o.nesterov), (Optimizer::Muon, 0.03, 0.9, false));
    let _ = std::fs::remove_dir_all(&root);
}
