//! Running out of GPU memory: a run whose buffers pass every binding limit but not the device's
//! memory fails inside WebGPU error scopes with a message that says what it asked for and what
//! fits, and what the user had stays. Neither lavapipe nor SwiftShader reports running out of
//! memory, so a memory budget is injected ([`wgpt::Gpu::cap_memory`]; `WGPT_GPU_MEMORY` for the
//! CLI; the page's `cap_memory` request, also in tests/browser/reliability.mjs).
#![cfg(not(target_arch = "wasm32"))] // native only: processes

mod common;

use common::page::{Posted, Recorder};
use std::path::Path;
use std::rc::Rc;

use serde_json::json;
use wgpt::kernels::Kernels;
use wgpt::model::Gpt2Config;
use wgpt::train::training_bytes;
use wgpt::web::protocol::{Event, Scope, TrainState};
use wgpt::web::Engine;
use wgpt::weights16::MatmulWeights;

fn corpus() -> String {
    "the cat sat on the mat. a dog ran to the door. my friend sang for the moon.\n".repeat(30)
}

/// The tiny preset on the corpus's characters.
fn tiny() -> Gpt2Config {
    let vocab_size = wgpt::tokenizer::Tokenizer::char_level(&corpus()).unwrap().vocab_size();
    Gpt2Config { vocab_size, ..Gpt2Config::preset("tiny").unwrap() }
}

/// What a run of `tiny()` at batch b needs on `k`'s device (with the attention it picks there):
/// its buffers, and the staging buffer a checkpoint reads AdamW's moments back through.
fn need(k: &Kernels, b: usize) -> u64 {
    need_in(k, b, false)
}

/// The same in f16 (mixed precision) where `f16`: the f16 weight copies too.
fn need_in(k: &Kernels, b: usize, f16: bool) -> u64 {
    training_bytes(&tiny(), b, 32, tiny().attention_kind(&k.selection(), b, 32), f16) + 8 * tiny().num_params() as u64
}

/// A new scratch directory holding the corpus (corpus.txt).
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("corpus.txt"), corpus()).unwrap();
    dir
}

/// `wgpt --precision P train` of the tiny preset for 2 steps at `batch` and `accum` on `dir`'s
/// corpus into `dir`/`out`, with `budget` bytes of GPU memory: its exit code and stderr.
fn train_tiny(dir: &Path, out: &str, precision: &str, budget: u64, batch: &str, accum: &str) -> (Option<i32>, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["--precision", precision, "train", "--preset", "tiny", "--max-iters", "2", "--eval-interval", "2"])
        .args(["--eval-iters", "1", "--batch-size", batch, "--grad-accum", accum, "--data"])
        .arg(dir.join("corpus.txt"))
        .arg("--out")
        .arg(dir.join(out))
        .env("WGPT_GPU_MEMORY", budget.to_string())
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string())
}

/// The out-of-memory line of a run that exited with it (code 2).
fn out_of_memory((code, log): (Option<i32>, String)) -> String {
    let message = log.lines().find(|l| l.contains("out of memory")).unwrap_or_else(|| panic!("no message: {log}"));
    println!("{message}");
    assert_eq!(code, Some(2), "{log}");
    message.to_string()
}

/// The batch the message offers ("What fits: batch size N with ...").
fn offered_batch(message: &str) -> usize {
    let tail = message.split("What fits: batch size ").nth(1).unwrap_or_else(|| panic!("no batch offered: {message}"));
    tail.split(' ').next().unwrap().parse().unwrap()
}

/// `wgpt train` on a device with too little memory for batch 8 exits with what fits; the batch
/// it offers then trains within the same memory.
#[test]
fn the_cli_says_what_fits_when_the_gpu_runs_out_of_memory() {
    let Some(k) = common::shared_kernels() else { return };
    let dir = scratch("wgpt-oom-test");
    let budget = need(&k, 3) + (64 << 10);
    let train = |batch: &str, accum: &str| train_tiny(&dir, "run", "f32", budget, batch, accum);
    let message = out_of_memory(train("8", "1"));
    assert!(message.contains("this GPU has") && message.contains("gradients and AdamW moments"), "{message}");
    let b = offered_batch(&message);
    assert!(need(&k, b) <= budget && need(&k, b + 1) > budget, "offered batch {b}");
    assert!(
        message.contains(&format!("batch size {b} with gradient accumulation 3 (9 sequences per step")),
        "{message}"
    );
    assert!(!dir.join("run").join("training_state.safetensors").exists(), "nothing saved from a run that never was");
    let (code, log) = train(&b.to_string(), "3");
    assert_eq!(code, Some(0), "the offered batch does not fit: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mixed precision's f16 weight copies count: `wgpt --precision f16 train` on a device with room
/// for the f32 run's buffers but not for the copies beside them exits with a message that counts
/// the copies, and the batch it offers then trains in f16 within the same memory. (The estimate
/// keeps room for reading a checkpoint back, so a budget between the f32 and f16 estimates
/// leaves the f16 run room; src/run/fits.rs's unit test checks what the message offers there.)
#[test]
fn the_f16_weight_copies_count_against_the_memory() {
    let Some(k) = common::shared_kernels() else { return };
    if !k.gpu.shader_f16() {
        println!("SKIP: this adapter has no shader-f16, so f16 trains in f32 and holds no copies");
        return;
    }
    let copies = MatmulWeights::f16_bytes(&tiny());
    // 2 bytes per element of every Conv1D weight and wte
    assert_eq!(copies, 2 * (12 * 2 * 64 * 64 + tiny().vocab_size * 64) as u64);
    assert_eq!(need_in(&k, 8, true) - need(&k, 8), copies);
    let dir = scratch("wgpt-oom-f16-test");
    // the f32 run's buffers and its small ones, not the f16 copies beside them
    let kind = tiny().attention_kind(&k.selection(), 8, 32);
    let budget = training_bytes(&tiny(), 8, 32, kind, false) + (64 << 10);
    let train = |batch: &str, accum: &str| train_tiny(&dir, batch, "f16", budget, batch, accum);
    let message = out_of_memory(train("8", "1"));
    assert!(message.contains("MiB for the f16 weight copies of mixed precision"), "{message}");
    let b = offered_batch(&message);
    assert!(need_in(&k, b, true) <= budget && need_in(&k, b + 1, true) > budget, "offered batch {b}");
    let (code, log) = train(&b.to_string(), "2");
    assert_eq!(code, Some(0), "the offered batch does not fit in f16: {log}");
    assert!(log.contains("precision: f16"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `request`, then works until an event matching `done` (returned with the events since).
fn ask(engine: &mut Engine, events: &Posted, request: serde_json::Value, done: impl Fn(&Event) -> bool) -> Vec<Event> {
    let seen = events.borrow().len();
    engine.handle(&request.to_string(), vec![]).unwrap();
    loop {
        let busy = pollster::block_on(engine.tick());
        let since: Vec<Event> = events.borrow()[seen..].iter().map(|(e, _)| e.clone()).collect();
        if since.iter().any(&done) {
            return since;
        }
        assert!(busy, "the engine went idle first: {since:?}");
    }
}

fn settings(batch: usize) -> serde_json::Value {
    json!({"tokenizer": "char", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 32, "batch_size": batch, "max_iters": 4, "lr": 2e-3, "eval_interval": 4,
           "eval_iters": 1, "log_interval": 1, "seed": 1})
}

fn memory(engine: &mut Engine, events: &Posted) -> (u64, u64) {
    let ev = ask(engine, events, json!({"type": "memory"}), |e| matches!(e, Event::Memory { .. }));
    match ev.last() {
        Some(Event::Memory { gpu_buffers, gpu_bytes, .. }) => (*gpu_buffers, *gpu_bytes),
        e => panic!("{e:?}"),
    }
}

/// The page's engine: a run trains; a bigger one fails out of memory with what fits, and the
/// first run's model stays, every buffer of the failed one freed; the batch it offers starts;
/// and an import that does not fit keeps the run too.
#[test]
fn the_page_keeps_its_run_when_the_next_one_runs_out_of_memory() {
    let Some(k) = common::shared_kernels() else { return };
    let events: Posted = Rc::default();
    let mut engine = Engine::new(Box::new(Recorder(events.clone())));
    ask(&mut engine, &events, json!({"type": "init"}), |e| matches!(e, Event::Ready { .. }));
    ask(&mut engine, &events, json!({"type": "corpus", "name": "c.txt", "text": corpus()}), |e| {
        matches!(e, Event::Corpus { .. })
    });
    let done = |e: &Event| matches!(e, Event::State { state: TrainState::Done, .. });
    ask(&mut engine, &events, json!({"type": "start", "settings": settings(2)}), done);
    let before = memory(&mut engine, &events);
    // room for the run held and a second one at batch 3, not at batch 8
    let budget = before.1 + need(&k, 3) + (64 << 10);
    engine.handle(&json!({"type": "cap_memory", "bytes": budget}).to_string(), vec![]).unwrap();
    pollster::block_on(engine.tick());
    let failed = |e: &Event| matches!(e, Event::Error { .. });
    let ev = ask(&mut engine, &events, json!({"type": "start", "settings": settings(8)}), failed);
    let Some(Event::Error { scope: Scope::Train, message }) = ev.last() else { panic!("{ev:?}") };
    println!("{message}");
    assert!(message.contains("ran out of memory") && message.contains("already held by the model in use"), "{message}");
    let b = offered_batch(message);
    assert!(need(&k, b) <= budget - before.1, "offered batch {b} does not fit the room left");
    assert_eq!(memory(&mut engine, &events), before, "the failed run's buffers are not all freed");
    let token = |e: &Event| matches!(e, Event::Generated { .. });
    let ev = ask(&mut engine, &events, prompt(), token);
    assert!(matches!(ev.last(), Some(Event::Generated { tokens: 5, .. })), "the kept model does not generate: {ev:?}");

    // the offered batch fits beside the kept run, and replaces it
    let ev = ask(&mut engine, &events, json!({"type": "start", "settings": settings(b)}), done);
    assert!(!ev.iter().any(|e| matches!(e, Event::Error { .. })), "{ev:?}");

    // an imported model too big for what is left: the run stays
    let big = Gpt2Config { n_layer: 4, n_head: 4, n_embd: 256, block_size: 64, ..tiny() };
    let weights = wgpt::model::Weights::random(big, 1);
    let tok = wgpt::tokenizer::Tokenizer::char_level(&corpus()).unwrap();
    let files = wgpt::hf::files(&weights, &tok).unwrap();
    let file = |name| String::from_utf8(files.iter().find(|(n, _)| *n == name).unwrap().1.clone()).unwrap();
    let model = files.iter().find(|(n, _)| *n == "model.safetensors").unwrap().1.clone();
    let request =
        json!({"type": "import", "name": "big", "config": file("config.json"), "tokenizer": file("tokenizer.json")});
    let seen = events.borrow().len();
    engine.handle(&request.to_string(), vec![model]).unwrap();
    while !events.borrow()[seen..].iter().any(|(e, _)| failed(e) || matches!(e, Event::Imported { .. })) {
        assert!(pollster::block_on(engine.tick()), "the import neither failed nor finished");
    }
    let Some(Event::Error { scope: Scope::Import, message }) = events.borrow().last().map(|(e, _)| e.clone()) else {
        panic!()
    };
    println!("{message}");
    assert!(message.contains("ran out of memory for this model") && message.contains("a smaller model"), "{message}");
    let ev = ask(&mut engine, &events, prompt(), token);
    assert!(matches!(ev.last(), Some(Event::Generated { tokens: 5, .. })), "the run is gone after the import: {ev:?}");
}

/// The page's Start of a model past the device's limits (a 3 GiB c_attn in each of 200 layers) is
/// refused from its shape at once, before its weights are drawn: on wasm32 that is up to 2^29
/// parameters filled one by one, natively hundreds of GB.
#[test]
fn the_page_refuses_a_model_past_the_limits_before_drawing_its_weights() {
    if common::shared_kernels().is_none() {
        return;
    }
    let events: Posted = Rc::default();
    let mut engine = Engine::new(Box::new(Recorder(events.clone())));
    ask(&mut engine, &events, json!({"type": "init"}), |e| matches!(e, Event::Ready { .. }));
    ask(&mut engine, &events, json!({"type": "corpus", "name": "c.txt", "text": corpus()}), |e| {
        matches!(e, Event::Corpus { .. })
    });
    let mut huge = settings(2);
    (huge["n_layer"], huge["n_embd"], huge["n_head"]) = (200.into(), 16384.into(), 128.into());
    let start = std::time::Instant::now();
    let ev =
        ask(&mut engine, &events, json!({"type": "start", "settings": huge}), |e| matches!(e, Event::Error { .. }));
    let seconds = start.elapsed().as_secs_f64();
    let Some(Event::Error { scope: Scope::Train, message }) = ev.last() else { panic!("{ev:?}") };
    println!("refused in {seconds:.3} s: {message}");
    assert!(message.contains("h.0.attn.c_attn.weight needs a"), "{message}");
    assert!(seconds < 1.0, "the refusal took {seconds:.1} s: the weights were drawn before the check");
}

fn prompt() -> serde_json::Value {
    let sampling = json!({"temperature": 0.0, "top_k": 0, "top_p": 1.0});
    json!({"type": "generate", "prompt": "the", "sampling": sampling, "max_tokens": 5, "seed": 1})
}
