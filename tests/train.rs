//! Training end to end: resuming equals not stopping; the CLI trains, lowers the loss and writes
//! a checkpoint that loads back with the keys and config fields transformers expects; and the
//! page's engine (run natively) and the CLI train and resume a run alike, in either direction.

mod common;

use common::page::{Posted, PostedEvent, Recorder};
use common::runs::{self, pangrams, scratch_with_corpus};

use std::path::Path;
use std::rc::Rc;

use serde_json::json;
use wgpt::model::{Gpt2Config, Weights};
use wgpt::precision::Precision;
use wgpt::run::format::{Metrics, Record};
use wgpt::run::{Run, RunConfig};
use wgpt::tokenizer::Tokenizer;
use wgpt::web::protocol::{Event, Scope, TrainState};
use wgpt::weights16::MatmulWeights;

fn tiny_run_config() -> RunConfig {
    runs::tiny_run_config(runs::tiny_train())
}

fn new_run(k: &std::sync::Arc<wgpt::kernels::Kernels>, weights: &Weights) -> Run {
    runs::pangram_run(k, tiny_run_config(), weights)
}

/// 20 steps straight equal 10 steps + checkpoint + a fresh run restored from it + 10 steps,
/// with gradient accumulation, warmup, decay and clipping all active.
#[test]
fn resume_continues_exactly() {
    let Some(k) = common::shared_kernels() else { return };
    let weights = Weights::random(tiny_run_config().model, 1);
    let losses = common::step_losses;
    let mut straight = new_run(&k, &weights);
    let want = losses(&mut straight, 20);

    let mut first = new_run(&k, &weights);
    let mut got = losses(&mut first, 10);
    let ckpt = pollster::block_on(first.checkpoint(true)).unwrap();
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
    println!("diverged: {}\ncheckpoint kept at step {}", stderr.lines().last().unwrap_or(""), saved.step);

    let (code, stderr) = wgpt(&["train", "--resume", dir, "--lr", "1e-3", "--log-interval", "1"]);
    assert_eq!(code, Some(0), "resuming with a lower lr finishes: {stderr}");
    let after = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    // the records after the kept checkpoint's step (the resume truncates metrics.jsonl to it)
    let resumed: Vec<serde_json::Value> = after
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("iter").and_then(|i| i.as_u64()).is_some_and(|i| i > saved.step))
        .collect();
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

/// A run's losses: (step, loss) of each progress report, (step, train, val) of each evaluation.
type Losses = (Vec<(u64, f32)>, Vec<(u64, f32, f32)>);

/// The page's engine, run natively.
struct Page {
    engine: wgpt::web::Engine,
    events: Posted,
}

impl Page {
    /// An engine that has been sent nothing yet.
    fn bare() -> Page {
        let events = Rc::default();
        Page { engine: wgpt::web::Engine::new(Box::new(Recorder(Rc::clone(&events)))), events }
    }

    /// An engine with a GPU (its own device, as in the page's worker) and the pangram corpus.
    fn new() -> Page {
        let mut page = Page::bare();
        page.send(json!({"type": "init"}), vec![]);
        page.send(json!({"type": "corpus", "name": "pangrams.txt", "text": pangrams()}), vec![]);
        page.until(|e| matches!(e, Event::Corpus { .. }));
        page
    }

    fn send(&mut self, request: serde_json::Value, files: Vec<Vec<u8>>) {
        self.engine.handle(&request.to_string(), files).unwrap();
    }

    /// Works until an event matching `done` arrives (failing on an error event or idleness).
    fn until(&mut self, done: impl Fn(&Event) -> bool) -> (Event, Vec<Vec<u8>>) {
        let seen = self.events.borrow().len();
        loop {
            let busy = pollster::block_on(self.engine.tick());
            let events = self.events.borrow();
            if let Some(e) = events[seen..].iter().find(|(e, _)| matches!(e, Event::Error { .. })) {
                panic!("the engine reported {:?}", e.0);
            }
            if let Some(hit) = events[seen..].iter().find(|(e, _)| done(e)) {
                return hit.clone();
            }
            assert!(busy, "the engine went idle before the awaited event; events: {:?}", &events[seen..]);
        }
    }

    /// Starts an 8-step run of `settings`, stops it at its checkpoint of step 4 and exports it:
    /// the zip.
    fn stop_at_4_and_export(&mut self, settings: serde_json::Value) -> Vec<Vec<u8>> {
        self.send(json!({"type": "start", "settings": settings}), vec![]);
        self.until(|e| matches!(e, Event::Checkpoint { step: 4, .. }));
        self.send(json!({"type": "stop"}), vec![]);
        self.until(|e| matches!(e, Event::State { state: TrainState::Stopped, step: 4 }));
        self.send(json!({"type": "export_run"}), vec![]);
        self.until(|e| matches!(e, Event::ExportRun { step: 4, .. })).1
    }

    /// Works until a restored or imported run is back, then checks that it waits at its step in
    /// `state` (paused, or done where it reached max_iters) and that nothing trains unasked: the
    /// engine goes idle without a step or an evaluation. The restored event, and the events since
    /// the request.
    fn restored(&mut self, state: TrainState) -> (Event, Vec<PostedEvent>) {
        let seen = self.events.borrow().len();
        let (restored, _) = self.until(|e| matches!(e, Event::Restored { .. }));
        while pollster::block_on(self.engine.tick()) {}
        let events = self.events.borrow()[seen..].to_vec();
        let Event::Restored { step, .. } = restored else { unreachable!("matched above") };
        let states: Vec<(TrainState, u64)> = events
            .iter()
            .filter_map(|(e, _)| match e {
                Event::State { state, step } => Some((*state, *step)),
                _ => None,
            })
            .collect();
        assert_eq!(states, [(state, step)], "the restored run's states");
        let moved =
            events.iter().find(|(e, _)| matches!(e, Event::Progress(_) | Event::Eval { .. } | Event::Error { .. }));
        assert!(moved.is_none(), "a restored run trained (or failed) unasked: {:?}", moved.map(|m| &m.0));
        (restored, events)
    }

    /// The losses of the progress events and the evaluations since event `from`.
    fn losses(&self, from: usize) -> Losses {
        let events = self.events.borrow();
        let progress = events[from..]
            .iter()
            .filter_map(|(e, _)| match e {
                Event::Progress(p) => Some((p.step, p.loss)),
                _ => None,
            })
            .collect();
        let evals = events[from..]
            .iter()
            .filter_map(|(e, _)| match e {
                Event::Eval { step, train_loss, val_loss, .. } => Some((*step, *train_loss, *val_loss)),
                _ => None,
            })
            .collect();
        (progress, evals)
    }
}

/// The losses of a run directory's metrics.jsonl: progress (step, loss) and evaluations.
fn cli_losses(dir: &Path) -> Losses {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let metrics = Metrics::parse("metrics.jsonl", &text).unwrap();
    let progress = metrics
        .records()
        .iter()
        .filter_map(|r| match r {
            Record::Progress { iter, loss, .. } => Some((*iter, *loss)),
            Record::Eval(_) => None,
        })
        .collect();
    let evals = metrics
        .records()
        .iter()
        .filter_map(|r| match r {
            Record::Eval(e) => Some((e.iter, e.train_loss, e.val_loss)),
            Record::Progress { .. } => None,
        })
        .collect();
    (progress, evals)
}

/// The page's settings for a small run, and the same as `wgpt train` flags.
fn page_settings(max_iters: usize) -> serde_json::Value {
    json!({"tokenizer": "char", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4,
           "max_iters": max_iters, "lr": 3e-3, "eval_interval": 4, "log_interval": 1, "seed": 5})
}

fn cli_train(corpus: &Path, out: &Path, max_iters: usize) {
    let max_iters = max_iters.to_string();
    let mut args = vec!["train", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16"];
    args.extend(["--batch-size", "4", "--max-iters", &max_iters, "--lr", "3e-3", "--eval-interval", "4"]);
    args.extend(["--log-interval", "1", "--seed", "5", "--data", corpus.to_str().unwrap(), "--out"]);
    wgpt_ok(&args, out);
}

/// Runs wgpt with `args` then `last`, expecting success.
fn wgpt_ok(args: &[&str], last: &Path) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).arg(last).output().expect("run wgpt");
    let log = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "wgpt {args:?} {}: {log}", last.display());
}

/// The same settings and seed give the same steps, evaluations and losses through the page's
/// engine and through `wgpt train` (one driver), bit for bit; then a run the page stopped and
/// exported as a zip goes on identically in the page (Import run) and in the CLI (`--resume
/// run.zip`), exactly as if it had never stopped, and the CLI's metrics keep the page's history.
#[test]
fn the_page_and_the_cli_train_and_resume_alike() {
    let Some(_) = common::shared_kernels() else { return };
    let (root, corpus) = scratch_with_corpus("alike");
    let mut page = Page::new();
    let from = page.events.borrow().len();
    page.send(json!({"type": "start", "settings": page_settings(8)}), vec![]);
    page.until(|e| matches!(e, Event::State { state: TrainState::Done, .. }));
    let (page_progress, page_evals) = page.losses(from);
    cli_train(&corpus, &root.join("cli"), 8);
    let (cli_progress, cli_evals) = cli_losses(&root.join("cli"));
    println!("page: {page_progress:?}\n      {page_evals:?}\ncli:  {cli_progress:?}\n      {cli_evals:?}");
    assert_eq!(page_progress.iter().map(|p| p.0).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    assert_eq!(page_evals.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 4, 8], "evaluations at 0, 4 and the end");
    assert_eq!(cli_progress, page_progress, "the same losses at the same steps");
    assert_eq!(cli_evals, page_evals, "the same evaluations");

    // the page stops at step 4 and exports the run
    let from = page.events.borrow().len();
    let zip = page.stop_at_4_and_export(page_settings(8));
    let (history, _) = page.losses(from);
    let zip_path = root.join("page-run.zip");
    std::fs::write(&zip_path, &zip[0]).unwrap();

    // the CLI goes on with it
    let out = root.join("from-page");
    wgpt_ok(&["train", "--resume", zip_path.to_str().unwrap(), "--out"], &out);
    let (cli_progress, cli_evals) = cli_losses(&out);
    assert_eq!(&cli_progress[..4], &history[..], "the CLI's metrics begin with the page's history");
    assert_eq!(cli_progress, page_progress, "the CLI went on exactly where the page stopped");
    assert_eq!(cli_evals, page_evals);

    // and so does the page, from the same zip
    let from = page.events.borrow().len();
    page.send(json!({"type": "import_run", "name": "page-run.zip"}), zip);
    let (restored, _) = page.restored(TrainState::Paused);
    let Event::Restored { step: 4, history: h, .. } = restored else { panic!("{restored:?}") };
    assert_eq!(h.train, history, "the loss chart's history comes back with the run");
    page.send(json!({"type": "resume"}), vec![]);
    page.until(|e| matches!(e, Event::State { state: TrainState::Done, .. }));
    let (progress, evals) = page.losses(from);
    println!("page-format run resumed in the page: {progress:?}, in the CLI: {:?}", &cli_progress[4..]);
    assert_eq!(progress, &cli_progress[4..], "page and CLI resume a page run bit-identically");
    assert_eq!(evals, &cli_evals[2..]);
    let _ = std::fs::remove_dir_all(&root);
}

/// A run zip imported as the page opens, before or at once after the request that opens the GPU
/// (a zip dropped while the engine loads), waits for the GPU and comes back paused at its step,
/// instead of failing with "the GPU is not ready" (and the import being lost); Resume goes on.
#[test]
fn a_run_imported_as_the_page_opens_waits_for_the_gpu() {
    let Some(_) = common::shared_kernels() else { return };
    let zip = Page::new().stop_at_4_and_export(page_settings(8));
    let init = json!({"type": "init"});
    let import = json!({"type": "import_run", "name": "early.zip"});
    for (first, then) in [(import.clone(), init.clone()), (init, import)] {
        let mut page = Page::bare();
        let files = |m: &serde_json::Value| if m["type"] == "import_run" { zip.clone() } else { vec![] };
        page.send(first.clone(), files(&first));
        page.send(then.clone(), files(&then));
        let (restored, _) = page.restored(TrainState::Paused);
        assert!(matches!(restored, Event::Restored { step: 4, .. }), "{first} then {then}: {restored:?}");
        let events = page.events.borrow();
        let ready = events.iter().position(|(e, _)| matches!(e, Event::Ready { .. }));
        assert_eq!(ready, Some(0), "{first} then {then}: the GPU opens first: {:?}", events.first());
        drop(events);
        page.send(json!({"type": "resume"}), vec![]);
        page.until(|e| matches!(e, Event::State { state: TrainState::Done, step: 8 }));
    }
}

/// A saved run of the page's store (Request::Restore, its files as the page keeps them: the
/// checkpoint's and the corpus of the first) that finished comes back done at its step and
/// trains nothing until asked; told to, it trains on to more steps.
#[test]
fn a_restored_run_waits_until_asked() {
    let Some(_) = common::shared_kernels() else { return };
    let mut page = Page::new();
    let from = page.events.borrow().len();
    page.send(json!({"type": "start", "settings": page_settings(4)}), vec![]);
    page.until(|e| matches!(e, Event::State { state: TrainState::Done, step: 4 }));
    // the store's copy of the run: the last checkpoint's files, and corpus.txt from the first
    let mut store: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for (e, files) in page.events.borrow()[from..].iter() {
        if let Event::Checkpoint { files: names, .. } = e {
            store.extend(names.iter().cloned().zip(files.iter().cloned()));
        }
    }
    let (names, files): (Vec<String>, Vec<Vec<u8>>) = store.into_iter().unzip();
    let mut page = Page::new();
    page.send(json!({"type": "restore", "id": "run-1", "names": names}), files);
    let (restored, _) = page.restored(TrainState::Done);
    assert!(matches!(restored, Event::Restored { step: 4, max_iters: 4, .. }), "{restored:?}");
    let from = page.events.borrow().len();
    page.send(json!({"type": "train_on", "max_iters": 6}), vec![]);
    page.until(|e| matches!(e, Event::State { state: TrainState::Done, step: 6 }));
    let steps: Vec<u64> = page.losses(from).0.iter().map(|p| p.0).collect();
    assert_eq!(steps, [5, 6], "trained on from step 4 to 6");
}

/// The page's precision choice for training: f16 plans with mixed precision's f16 weight copies
/// (or, without shader-f16, f32 with a note and no copies), trains in it (other losses than f32's
/// where it runs), and a run stopped and exported in f16 goes on in f16 (Import run) exactly as
/// if it had never stopped.
#[test]
fn the_page_trains_in_f16_and_its_runs_resume_in_it() {
    let Some(k) = common::shared_kernels() else { return };
    let shader_f16 = k.gpu.shader_f16();
    let mut page = Page::new();
    let mut f16 = page_settings(8);
    f16["precision"] = json!("f16");
    let plan = |page: &mut Page, settings: &serde_json::Value| {
        page.send(json!({"type": "plan", "settings": settings}), vec![]);
        match page.until(|e| matches!(e, Event::Plan { .. })).0 {
            Event::Plan { memory_bytes, precision, precision_note, .. } => (memory_bytes, precision, precision_note),
            e => panic!("{e:?}"),
        }
    };
    let (f32_bytes, runs, note) = plan(&mut page, &page_settings(8));
    assert_eq!((runs, note), (Precision::F32, None));
    let (f16_bytes, runs, note) = plan(&mut page, &f16);
    let vocab_size = Tokenizer::char_level(&pangrams()).unwrap().vocab_size();
    let copies = MatmulWeights::f16_bytes(&Gpt2Config {
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        block_size: 16,
        vocab_size,
        arch: wgpt::model::Arch::GPT2,
    });
    println!("plan in f16: {runs:?} ({note:?}), {f16_bytes} bytes, f32 {f32_bytes}, f16 copies {copies}");
    if shader_f16 {
        assert_eq!((runs, note), (Precision::F16, None));
        assert_eq!(f16_bytes - f32_bytes, copies, "the plan counts the f16 weight copies");
    } else {
        println!("this adapter has no shader-f16: f16 trains in f32, with a note");
        assert_eq!(runs, Precision::F32);
        assert!(note.unwrap().contains("no shader-f16"));
        assert_eq!(f16_bytes, f32_bytes, "no copies where f16 falls back");
    }

    let losses_of = |page: &mut Page, settings: &serde_json::Value| {
        let from = page.events.borrow().len();
        page.send(json!({"type": "start", "settings": settings}), vec![]);
        page.until(|e| matches!(e, Event::State { state: TrainState::Done, .. }));
        page.losses(from)
    };
    let (f32_progress, _) = losses_of(&mut page, &page_settings(8));
    let (progress, evals) = losses_of(&mut page, &f16);
    println!("f16: {progress:?}\nf32: {f32_progress:?}");
    assert_eq!(progress.len(), 8);
    assert!(progress.iter().all(|p| p.1.is_finite()));
    if shader_f16 {
        assert_ne!(progress, f32_progress, "f16 trains with other numbers than f32");
    } else {
        assert_eq!(progress, f32_progress, "f16 falling back trains as f32");
    }

    // stopped at step 4 and exported: the zip's settings keep the precision, and the page goes on in it
    let zip = page.stop_at_4_and_export(f16.clone());
    let files = wgpt::run::archive::read("f16-run.zip", &zip[0]).unwrap();
    let saved = files.checkpoint.state().unwrap().run;
    assert_eq!(saved.train.precision, if shader_f16 { Precision::F16 } else { Precision::F32 });
    let from = page.events.borrow().len();
    page.send(json!({"type": "import_run", "name": "f16-run.zip"}), zip);
    page.restored(TrainState::Paused);
    page.send(json!({"type": "resume"}), vec![]);
    page.until(|e| matches!(e, Event::State { state: TrainState::Done, .. }));
    let (resumed, resumed_evals) = page.losses(from);
    assert_eq!(resumed, &progress[4..], "the f16 run resumed in f16 exactly where it stopped");
    assert_eq!(resumed_evals, &evals[2..]);
}

/// A CLI run that finished, zipped by `wgpt export-run`, comes back in the page done at its
/// step (Import run sends no steps of the page's), is saved there at once, and goes on when
/// asked (Train on, to more steps) with the same losses as `wgpt train --resume DIR --max-iters`
/// gives it; Train on to no more steps than it has is refused.
#[test]
fn a_cli_run_goes_on_in_the_page_as_in_the_cli() {
    let Some(_) = common::shared_kernels() else { return };
    let (root, corpus) = scratch_with_corpus("cli2page");
    let dir = root.join("run");
    cli_train(&corpus, &dir, 4);
    let zip = root.join("run.zip");
    wgpt_ok(&["export-run", dir.to_str().unwrap()], &zip);
    wgpt_ok(&["train", "--max-iters", "8", "--resume"], &dir);
    let (cli_progress, cli_evals) = cli_losses(&dir);

    let mut page = Page::new();
    let from = page.events.borrow().len();
    page.send(json!({"type": "import_run", "name": "run.zip"}), vec![std::fs::read(&zip).unwrap()]);
    let (restored, events) = page.restored(TrainState::Done);
    assert!(matches!(restored, Event::Restored { step: 4, max_iters: 4, .. }), "{restored:?}");
    let (saved, files) = events.iter().find(|(e, _)| matches!(e, Event::Checkpoint { .. })).expect("a checkpoint");
    let Event::Checkpoint { step: 4, files: names, .. } = saved else { panic!("{saved:?}") };
    assert!(names.contains(&"corpus.txt".to_string()), "an imported run is saved in the page at once: {names:?}");
    assert_eq!(files.len(), names.len());
    let seen = page.events.borrow().len();
    page.send(json!({"type": "train_on", "max_iters": 4}), vec![]);
    while pollster::block_on(page.engine.tick()) {}
    let refused = page.events.borrow()[seen..].iter().find_map(|(e, _)| match e {
        Event::Error { scope: Scope::Train, message } => Some(message.clone()),
        _ => None,
    });
    assert!(refused.as_deref().is_some_and(|m| m.contains("4 steps already")), "train on to 4 of 4: {refused:?}");
    page.send(json!({"type": "train_on", "max_iters": 8}), vec![]);
    page.until(|e| matches!(e, Event::State { state: TrainState::Done, .. }));
    let (progress, evals) = page.losses(from);
    println!("CLI run resumed in the CLI: {:?}\n                in the page: {progress:?}", &cli_progress[4..]);
    assert_eq!(progress, &cli_progress[4..], "page and CLI resume a CLI run bit-identically");
    assert_eq!(evals, &cli_evals[2..]);
    let _ = std::fs::remove_dir_all(&root);
}

/// `wgpt train --no-optimizer-state`: every checkpoint's training state keeps its step, data
/// position and settings but none of AdamW's moments (a small file); training itself is the same
/// as a run saving them. `--resume` says the moments start fresh and goes on at the saved step, as
/// a fresh AdamW: its first step moves every weight by lr · g/(|g| + eps), the learning rate
/// wherever the gradient is not tiny (bias correction counts from the resume; counted from step 0
/// it would move by half that), where a run resumed from its full checkpoint moves by other
/// amounts, and the losses after differ from that run's.
#[test]
fn a_run_saved_without_its_optimizer_state_resumes_with_fresh_moments() {
    let Some(_) = common::shared_kernels() else { return };
    let (root, corpus) = scratch_with_corpus("model-only");
    let wgpt = |args: &[&str]| -> String {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).output().expect("run wgpt");
        let log = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "wgpt {args:?}: {log}");
        log
    };
    let (model_only, full) = (root.join("model-only"), root.join("full"));
    for (out, extra) in [(&model_only, Some("--no-optimizer-state")), (&full, None)] {
        let mut args = vec!["train", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16"];
        args.extend(["--batch-size", "4", "--lr", "3e-3", "--warmup-iters", "0", "--weight-decay", "0", "--seed", "5"]);
        args.extend(["--max-iters", "6", "--eval-interval", "3", "--eval-iters", "1", "--log-interval", "1"]);
        args.extend(["--data", corpus.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        args.extend(extra);
        wgpt(&args);
    }
    let state = |dir: &Path| std::fs::read(dir.join(wgpt::checkpoint::STATE_FILE)).unwrap();
    let weights = |dir: &Path| wgpt::hf::dir::load(dir).unwrap().0;
    let config = weights(&full).config;
    let (lean, whole) = (state(&model_only), state(&full));
    let saved = wgpt::run::saved_run(&lean, &config).unwrap();
    println!("training_state.safetensors: {} bytes model-only, {} bytes with the moments", lean.len(), whole.len());
    assert!(saved.model_only && saved.step == 6, "the model-only state says {saved:?}");
    assert!(!wgpt::run::saved_run(&whole, &config).unwrap().model_only);
    let (moments, _): (_, wgpt::run::RunState) =
        wgpt::checkpoint::parse_state("model-only state", &lean, &config).unwrap();
    assert!(moments.is_none() && lean.len() * 10 < whole.len(), "the model-only state holds moments");
    assert_eq!(cli_losses(&model_only), cli_losses(&full), "saving without the moments changed the training");
    let before = weights(&model_only);
    assert_eq!(before.tensors, weights(&full).tensors);

    // one step on from step 6: a fresh AdamW's first step for the model-only run
    let resume = |dir: &Path, to: &str| wgpt(&["train", "--resume", dir.to_str().unwrap(), "--max-iters", to]);
    let said = resume(&model_only, "7");
    assert!(said.contains("AdamW's moments start fresh, from zero, at step 6"), "--resume says {said}");
    assert!(!resume(&full, "7").contains("start fresh"));
    let lr_of_step_7 = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        let metrics = Metrics::parse("metrics.jsonl", &text).unwrap();
        let lr = metrics.records().iter().find_map(|r| match r {
            Record::Progress { iter: 7, lr, .. } => Some(*lr),
            _ => None,
        });
        lr.expect("a progress record of step 7")
    };
    // each weight's move over the learning rate: (share within 1% of 1, the largest)
    let moves = |dir: &Path| {
        let (after, lr) = (weights(dir), lr_of_step_7(dir));
        assert_eq!(wgpt::run::saved_run(&state(dir), &config).unwrap().step, 7);
        let ratios: Vec<f32> = after
            .tensors
            .iter()
            .flatten()
            .zip(before.tensors.iter().flatten())
            .map(|(a, b)| (a - b).abs() / lr)
            .collect();
        let near_one = ratios.iter().filter(|r| (**r - 1.0).abs() < 0.01).count() as f64 / ratios.len() as f64;
        (near_one, ratios.iter().copied().fold(0.0, f32::max))
    };
    let (fresh, fresh_max) = moves(&model_only);
    let (kept, kept_max) = moves(&full);
    println!(
        "step 7's moves over lr: model-only run {:.1}% within 1% of 1 (largest {fresh_max:.4}); full run {:.1}% \
         (largest {kept_max:.4})",
        fresh * 100.0,
        kept * 100.0
    );
    assert!(fresh > 0.9 && fresh_max < 1.001, "the step after a model-only resume is not a fresh AdamW's");
    assert!(kept < 0.5, "the full run's step looks like a fresh AdamW's: the check cannot tell them apart");

    // and on: the losses after the resume differ from those of the run that kept its moments
    resume(&model_only, "9");
    resume(&full, "9");
    let (lean_losses, full_losses) = (cli_losses(&model_only).0, cli_losses(&full).0);
    println!("losses after step 7: model-only {:?}, full {:?}", &lean_losses[7..], &full_losses[7..]);
    assert_eq!(lean_losses.len(), 9, "the model-only run's steps: {lean_losses:?}");
    assert_eq!(lean_losses[..7], full_losses[..7]);
    assert!(lean_losses[7..].iter().zip(&full_losses[7..]).all(|(a, b)| a.1 != b.1 && a.1.is_finite()));

    // a run zip of it (Export run's format) goes on as the directory does
    let zip = root.join("model-only.zip");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["export-run", model_only.to_str().unwrap(), zip.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let unzipped = root.join("unzipped");
    let said =
        wgpt(&["train", "--resume", zip.to_str().unwrap(), "--out", unzipped.to_str().unwrap(), "--max-iters", "10"]);
    assert!(said.contains("moments start fresh, from zero, at step 9"), "--resume run.zip says {said}");
    let after = wgpt::run::saved_run(&state(&unzipped), &config).unwrap();
    assert!(after.step == 10 && after.model_only, "the unzipped run saved {after:?}");

    // a training state with no moments that does not say it was saved so is refused, not resumed
    let damaged = wgpt::run::RunState { model_only: false, ..after };
    let bytes = wgpt::checkpoint::state_bytes(&config, None, &damaged).unwrap();
    std::fs::write(unzipped.join(wgpt::checkpoint::STATE_FILE), bytes).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["train", "--resume", unzipped.to_str().unwrap(), "--max-iters", "11"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && said.contains("holds no optimizer state but does not say"), "{said}");
    let _ = std::fs::remove_dir_all(&root);
}

/// A run the page saves without its optimizer state (Request::Checkpoints) exports as a model-only
/// run zip; the CLI (`--resume run.zip`) and the page (Import run) both go on with it from fresh
/// moments, saying so, to the same losses.
#[test]
fn a_model_only_run_moves_between_the_page_and_the_cli() {
    let Some(_) = common::shared_kernels() else { return };
    let (root, _) = scratch_with_corpus("model-only-page");
    let mut page = Page::new();
    page.send(json!({"type": "checkpoints", "optimizer_state": false}), vec![]);
    let zip = page.stop_at_4_and_export(page_settings(8));
    let files = wgpt::run::archive::read("page-run.zip", &zip[0]).unwrap();
    assert!(files.checkpoint.state().unwrap().model_only, "the page's run zip holds the optimizer state");
    let zip_path = root.join("page-run.zip");
    std::fs::write(&zip_path, &zip[0]).unwrap();

    let out = root.join("from-page");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["train", "--resume", zip_path.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && said.contains("moments start fresh, from zero, at step 4"), "{said}");
    let (cli_progress, cli_evals) = cli_losses(&out);

    let from = page.events.borrow().len();
    page.send(json!({"type": "import_run", "name": "page-run.zip"}), zip);
    let (restored, _) = page.restored(TrainState::Paused);
    assert!(matches!(restored, Event::Restored { step: 4, fresh_moments: true, .. }), "{restored:?}");
    page.send(json!({"type": "resume"}), vec![]);
    page.until(|e| matches!(e, Event::State { state: TrainState::Done, .. }));
    let (progress, evals) = page.losses(from);
    println!("a model-only page run resumed in the page: {progress:?}, in the CLI: {:?}", &cli_progress[4..]);
    assert_eq!(progress, &cli_progress[4..], "page and CLI resume a model-only run alike");
    assert_eq!(evals, &cli_evals[2..]);
    let _ = std::fs::remove_dir_all(&root);
}

/// A task run in the page's engine sends its evaluations to the task view: after each `eval`, a
/// `task_eval` of the same step with the same accuracy over the 200 held-out examples, carrying
/// the first 24 of them, the very examples the generator holds out for the run's seed, each
/// answer token marked right exactly where the model's token is the answer's.
#[test]
fn a_task_run_marks_its_held_out_answers_token_by_token() {
    let Some(_) = common::shared_kernels() else { return };
    let mut page = Page::bare();
    page.send(json!({"type": "init"}), vec![]);
    page.send(json!({"type": "corpus", "name": "reverse:max=6 task", "task": "reverse:max=6"}), vec![]);
    page.until(|e| matches!(e, Event::Corpus { .. }));
    let mut settings = page_settings(4);
    settings["eval_iters"] = json!(1);
    page.send(json!({"type": "start", "settings": settings}), vec![]);
    page.until(|e| matches!(e, Event::State { state: TrainState::Done, step: 4 }));
    let task = wgpt::data::Task::parse("reverse:max=6").unwrap();
    let held = task.held_out(wgpt::data::tasks::HELD_OUT_EXAMPLES, 5);
    let events = page.events.borrow();
    let evals: Vec<(u64, Option<f32>)> = events
        .iter()
        .filter_map(|(e, _)| match e {
            Event::Eval { step, accuracy, .. } => Some((*step, *accuracy)),
            _ => None,
        })
        .collect();
    let marked: Vec<&Event> = events.iter().map(|(e, _)| e).filter(|e| matches!(e, Event::TaskEval { .. })).collect();
    assert_eq!(evals.len(), 2, "evaluations at steps 0 and 4: {evals:?}");
    assert_eq!(marked.len(), evals.len(), "a task_eval per evaluation");
    for ((step, accuracy), e) in evals.iter().zip(marked) {
        let Event::TaskEval { step: at, task: spec, accuracy: acc, total, examples } = e else { unreachable!() };
        assert_eq!((at, Some(*acc), spec.as_str(), *total), (step, *accuracy, "reverse:max=6", held.len()), "{e:?}");
        assert_eq!(examples.len(), 24, "the first 24 held-out examples");
        for (x, (prompt, answer)) in examples.iter().zip(&held) {
            assert_eq!((&x.prompt, &x.answer), (prompt, answer), "the generator's held-out example");
            assert_eq!(x.tokens.concat(), format!("{answer}\n"), "the answer's tokens spell it and its newline");
            let right: Vec<bool> = (0..x.tokens.len()).map(|i| x.predicted.get(i) == Some(&x.tokens[i])).collect();
            assert_eq!(x.right, right, "marks of {x:?}");
            assert_eq!(x.exact, right.iter().all(|&r| r) && x.predicted.len() == x.tokens.len(), "{x:?}");
        }
    }
}
