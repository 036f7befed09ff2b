//! Training end to end: resuming equals not stopping, and the CLI trains, lowers the loss and
//! writes a checkpoint that loads back with the keys and config fields transformers expects.

mod common;

use std::path::{Path, PathBuf};

use wgpt::model::{Gpt2Config, Weights};
use wgpt::run::{DataSource, Run, RunConfig};
use wgpt::tokenizer::Tokenizer;
use wgpt::train::TrainConfig;

/// A corpus a tiny model learns within a few dozen steps.
fn pangrams() -> String {
    "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs!\n".repeat(40)
}

/// A fresh folder wgpt-{name}-test-{pid} in the temp dir and the path of the pangram corpus
/// written into it.
fn scratch_with_corpus(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("wgpt-{name}-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, pangrams()).unwrap();
    (dir, corpus)
}

fn tiny_run_config() -> RunConfig {
    RunConfig {
        model: Gpt2Config { n_layer: 2, n_head: 2, n_embd: 32, block_size: 16, vocab_size: 30 },
        train: TrainConfig {
            batch_size: 4,
            seq_len: 16,
            grad_accum: 2,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_iters: 3,
            lr_decay_iters: 20,
            ..TrainConfig::default()
        },
        max_iters: 20,
        eval_interval: 10,
        eval_iters: 2,
        log_interval: 1,
        seed: 7,
        data: DataSource::Text("pangrams".into()),
        tokenizer: "char".into(),
    }
}

fn new_run(k: &std::sync::Arc<wgpt::kernels::Kernels>, weights: &Weights) -> Run {
    let cfg = tiny_run_config();
    let text = pangrams();
    let tok = Tokenizer::char_level(&text).unwrap();
    assert_eq!(tok.vocab_size(), cfg.model.vocab_size);
    Run::new(k.clone(), cfg, weights, tok, &text).unwrap()
}

/// 20 steps straight equal 10 steps + checkpoint + a fresh run restored from it + 10 steps,
/// with gradient accumulation, warmup, decay and clipping all active.
#[test]
fn resume_continues_exactly() {
    let Some(k) = common::shared_kernels() else { return };
    let weights = Weights::random(tiny_run_config().model, 1);
    let losses = |run: &mut Run, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                run.train_step().unwrap();
                pollster::block_on(run.loss()).unwrap()
            })
            .collect()
    };
    let mut straight = new_run(&k, &weights);
    let want = losses(&mut straight, 20);

    let mut first = new_run(&k, &weights);
    let mut got = losses(&mut first, 10);
    let ckpt = pollster::block_on(first.checkpoint()).unwrap();
    drop(first);
    let saved = wgpt::hf::load_weights("checkpoint", &ckpt.model, tiny_run_config().model).unwrap();
    let mut resumed = new_run(&k, &saved);
    resumed.restore(&ckpt.state).unwrap();
    assert_eq!(resumed.step(), 10);
    got.extend(losses(&mut resumed, 10));
    println!("straight: {want:?}\nresumed:  {got:?}");
    assert_eq!(got, want, "resumed losses differ from an uninterrupted run");
    assert!(want[19] < want[0], "the loss should fall: {} -> {}", want[0], want[19]);
}

/// `wgpt train` on a tiny config: the loss falls, and the output directory is a complete HF
/// checkpoint (keys, shapes, dtypes, config fields) plus metrics and a chart.
#[test]
fn cli_trains_and_writes_an_hf_checkpoint() {
    let Some(_) = common::shared_kernels() else { return };
    let (out, corpus) = scratch_with_corpus("cli");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["train", "--n-layer", "2", "--n-head", "2", "--n-embd", "32"])
        .arg("--data")
        .arg(&corpus)
        .args(["--block-size", "16", "--batch-size", "8", "--max-iters", "60", "--eval-interval", "30"])
        .args(["--eval-iters", "4", "--log-interval", "10", "--lr", "3e-3", "--warmup-iters", "5"])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run wgpt");
    assert!(status.success(), "wgpt train failed: {status}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("val_loss").is_some())
        .collect();
    let (first, last) = (evals[0]["val_loss"].as_f64().unwrap(), evals.last().unwrap()["val_loss"].as_f64().unwrap());
    println!("val loss {first} -> {last}");
    assert!(last < first - 0.3, "val loss should fall clearly: {first} -> {last}");
    assert!(out.join("loss.png").exists());

    check_hf_dir(&out);
    let _ = std::fs::remove_dir_all(&out);
}

/// An absurd learning rate makes the loss non-finite: `wgpt train` stops at the first readback
/// after it with exit code 2 and a message naming the step, keeps the last good checkpoint
/// untouched, and `--resume DIR --lr <lower>` continues it to the end with finite losses.
#[test]
fn cli_stops_on_divergence_and_resumes_with_a_lower_lr() {
    let Some(_) = common::shared_kernels() else { return };
    let (out, corpus) = scratch_with_corpus("nan");
    let wgpt = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).output().expect("run wgpt");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let dir = out.to_str().unwrap();
    let common_args = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4"];
    let mut args = vec!["train", "--data", corpus.to_str().unwrap(), "--out", dir];
    args.extend(common_args);
    args.extend(["--max-iters", "40", "--eval-interval", "2", "--eval-iters", "1", "--log-interval", "1"]);
    args.extend(["--warmup-iters", "0", "--lr", "1e6"]);
    let (code, stderr) = wgpt(&args);
    assert_eq!(code, Some(2), "a diverged run exits with 2: {stderr}");
    assert!(stderr.contains("training diverged at step"), "the message says what happened: {stderr}");
    assert!(stderr.contains("--resume") && stderr.contains("--lr"), "the message says what to do: {stderr}");
    let state = std::fs::read(out.join(wgpt::checkpoint::STATE_FILE)).expect("the last good checkpoint is kept");
    let (weights, _) = wgpt::hf::dir::load(&out).unwrap();
    let saved = wgpt::run::saved_run(&state, &weights.config).unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    println!("diverged: {}\ncheckpoint kept at step {}", stderr.lines().last().unwrap_or(""), saved.step);

    let (code, stderr) = wgpt(&["train", "--resume", dir, "--lr", "1e-3", "--log-interval", "1"]);
    assert_eq!(code, Some(0), "resuming with a lower lr finishes: {stderr}");
    let after = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let resumed: Vec<serde_json::Value> =
        after[metrics.len()..].lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let losses: Vec<f64> = resumed.iter().filter_map(|v| v.get("loss").and_then(|l| l.as_f64())).collect();
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite()), "resumed losses: {losses:?}");
    assert!(resumed.iter().all(|v| v.get("lr").and_then(|l| l.as_f64()).is_none_or(|lr| lr <= 1e-3 + 1e-9)));
    println!("resumed from step {} with lr 1e-3: {} finite losses, last {:?}", saved.step, losses.len(), losses.last());
    let _ = std::fs::remove_dir_all(&out);
}

/// The GPU device is destroyed after step 15 (`WGPT_LOSE_DEVICE_AT`, as a driver reset would):
/// `wgpt train` says so, starts a new device, reloads the checkpoint of step 10 and finishes
/// (losing at most one checkpoint interval), and ends with exactly the weights of a run that
/// never lost its device.
#[test]
fn cli_recovers_from_device_loss() {
    let Some(_) = common::shared_kernels() else { return };
    let (root, corpus) = scratch_with_corpus("lost");
    let train = |out: &Path, lose_at: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"));
        cmd.args(["train", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16"])
            .args(["--batch-size", "4", "--max-iters", "20", "--eval-interval", "10", "--eval-iters", "1"])
            .args(["--log-interval", "1", "--warmup-iters", "2", "--data", corpus.to_str().unwrap(), "--out"])
            .arg(out);
        if let Some(step) = lose_at {
            cmd.env("WGPT_LOSE_DEVICE_AT", step);
        }
        let o = cmd.output().expect("run wgpt");
        (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout))
    };
    let (code, log) = train(&root.join("lost"), Some("15"));
    assert_eq!(code, Some(0), "training goes on after the device is lost: {log}");
    let line = log.lines().find(|l| l.contains("device was lost")).unwrap_or_else(|| panic!("no message: {log}"));
    println!("{line}");
    assert!(line.contains("step 15") && line.contains("checkpoint of step 10"), "{line}");
    let (code, log) = train(&root.join("clean"), None);
    assert_eq!(code, Some(0), "{log}");
    let (lost, _) = wgpt::hf::dir::load(&root.join("lost")).unwrap();
    let (clean, _) = wgpt::hf::dir::load(&root.join("clean")).unwrap();
    let worst = lost
        .tensors
        .iter()
        .zip(&clean.tensors)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    println!("recovered vs uninterrupted run after 20 steps: max |difference| {worst:e}");
    assert_eq!(worst, 0.0, "the recovered run must continue exactly");
    let state = std::fs::read(root.join("lost").join(wgpt::checkpoint::STATE_FILE)).unwrap();
    assert_eq!(wgpt::run::saved_run(&state, &lost.config).unwrap().step, 20);
    let _ = std::fs::remove_dir_all(&root);
}

/// What transformers' GPT2LMHeadModel.from_pretrained needs from a directory.
fn check_hf_dir(dir: &Path) {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    for field in [
        "model_type",
        "n_layer",
        "n_head",
        "n_embd",
        "n_positions",
        "vocab_size",
        "activation_function",
        "layer_norm_epsilon",
    ] {
        assert!(config.get(field).is_some(), "config.json lacks {field}");
    }
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["architectures"][0], "GPT2LMHeadModel");
    assert_eq!(config["activation_function"], "gelu_new");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt", "transformers requires metadata format=pt");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let cfg = wgpt::hf::parse_config(&config.to_string()).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut want: Vec<String> = cfg.param_specs().iter().map(|(n, _)| format!("transformer.{n}")).collect();
    want.sort();
    assert_eq!(names, want, "exactly GPT2LMHeadModel's keys (lm_head tied, so absent)");
    for (name, shape) in cfg.param_specs() {
        let t = st.tensor(&format!("transformer.{name}")).unwrap();
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    }
    let (weights, tok) = wgpt::hf::dir::load(dir).unwrap();
    assert_eq!(weights.config, cfg);
    let tok = tok.expect("tokenizer.json saved");
    assert_eq!(tok.decode(&tok.encode("lazy dog\n").unwrap()).unwrap(), "lazy dog\n");
}

/// Dropout changes training (masks differ per step and micro-batch) but keeps it finite and
/// reproducible; resuming reproduces the masks.
#[test]
fn dropout_trains_reproducibly() {
    let Some(k) = common::shared_kernels() else { return };
    let weights = Weights::random(tiny_run_config().model, 2);
    let run_with = |p: f32| -> Vec<f32> {
        let mut cfg = tiny_run_config();
        cfg.train.dropout = p;
        let text = pangrams();
        let mut run = Run::new(k.clone(), cfg, &weights, Tokenizer::char_level(&text).unwrap(), &text).unwrap();
        (0..6)
            .map(|_| {
                run.train_step().unwrap();
                pollster::block_on(run.loss()).unwrap()
            })
            .collect()
    };
    let (plain, dropped, again) = (run_with(0.0), run_with(0.2), run_with(0.2));
    println!("no dropout {plain:?}\ndropout    {dropped:?}");
    assert!(dropped.iter().all(|l| l.is_finite()));
    assert_eq!(dropped, again, "dropout must be reproducible");
    assert_ne!(dropped, plain, "dropout 0.2 must change the losses");
}
