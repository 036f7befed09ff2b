//! A run written before the architecture switches existed (tests/fixtures/old_run.zip, made
//! with the binary of the commit tests/fixtures/old_run.json names) still opens as the GPT-2 it
//! was and resumes exactly as that binary resumed it.

mod common;

use std::path::Path;

use wgpt::model::Gpt2Config;
use wgpt::run::format::{Metrics, Record};

const ZIP: &str = "tests/fixtures/old_run.zip";

fn recorded() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string("tests/fixtures/old_run.json").unwrap()).unwrap()
}

/// The model the old run recorded, as today's config (the switches at GPT-2's defaults).
fn recorded_model() -> Gpt2Config {
    serde_json::from_value(recorded()["model"].clone()).unwrap()
}

/// The zip's files, written to a fresh folder.
fn unpacked(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpt-{name}-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let files = wgpt::run::archive::read("old_run.zip", &std::fs::read(ZIP).unwrap()).unwrap();
    for (name, bytes) in files.named() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

#[test]
fn an_old_run_opens_as_the_gpt2_it_was() {
    let want = recorded_model();
    let files = wgpt::run::archive::read("old_run.zip", &std::fs::read(ZIP).unwrap()).unwrap();
    let state = files.checkpoint.state().unwrap();
    assert_eq!(state.step, 4);
    assert_eq!(state.run.model, want, "the run's settings come back as the GPT-2 config");
    let dir = unpacked("old-run-open");
    let (weights, tokenizer) = wgpt::hf::dir::load(&dir).unwrap();
    assert_eq!(weights.config, want, "config.json comes back as the GPT-2 config");
    assert_eq!(weights.tensors.len(), want.param_specs().len());
    assert!(tokenizer.is_some());
    println!("old run: step {}, {} tensors, {:?}", state.step, weights.tensors.len(), weights.config);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Resuming the old run to step 6 gives the losses the old binary printed (bit-identical on
/// lavapipe; 1e-5 leaves room for another adapter).
#[test]
fn an_old_run_resumes_with_the_recorded_losses() {
    let Some(_) = common::shared_kernels() else { return };
    let out = std::env::temp_dir().join(format!("wgpt-old-run-resume-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["train", "--resume", ZIP, "--max-iters", "6", "--out"])
        .arg(&out)
        .output()
        .expect("run wgpt");
    assert!(o.status.success(), "resuming the old run: {}", String::from_utf8_lossy(&o.stderr));
    let metrics =
        Metrics::parse("metrics.jsonl", &std::fs::read_to_string(out.join("metrics.jsonl")).unwrap()).unwrap();
    let got: Vec<(u64, f32)> = metrics
        .records()
        .iter()
        .filter_map(|r| match r {
            Record::Progress { iter, loss, .. } if *iter > 4 => Some((*iter, *loss)),
            _ => None,
        })
        .collect();
    let want: Vec<(u64, f32)> = serde_json::from_value(recorded()["resumed_losses"].clone()).unwrap();
    println!("resumed: {got:?}\nrecorded: {want:?}");
    assert_eq!(got.len(), want.len(), "one loss per resumed step");
    for ((gs, gl), (ws, wl)) in got.iter().zip(&want) {
        assert_eq!(gs, ws);
        assert!((gl - wl).abs() <= 1e-5, "step {gs}: loss {gl}, the old binary's {wl} (diff {:e})", (gl - wl).abs());
    }
    let (weights, _) = wgpt::hf::dir::load(Path::new(&out)).unwrap();
    assert_eq!(weights.config, recorded_model(), "the resumed run saves the same GPT-2");
    let _ = std::fs::remove_dir_all(&out);
}
