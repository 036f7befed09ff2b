//! The experiments gallery (src/run/experiments.rs): every entry's runs parse into valid run
//! settings that differ only in what the entry compares (same data, same seed), names are
//! unique, each run travels as a link, the page's manifest carries every entry, `wgpt
//! experiments` lists them, bad `--experiment` input is refused, and one shortened experiment
//! runs end to end in the CLI, writing each run and the overlaid loss.png.
#![cfg(not(target_arch = "wasm32"))] // native only: processes and files

mod common;

use std::collections::BTreeSet;

use serde_json::Value;
use wgpt::data::Task;
use wgpt::model::Mlp;
use wgpt::run::experiments::{Corpus, Experiment, ExperimentInfo, EXPERIMENTS};
use wgpt::run::link::{Link, LinkCorpus};
use wgpt::run::{DataSource, RunSettings};

/// The keys of `s` whose values differ from `t`'s.
fn differing(s: &RunSettings, t: &RunSettings) -> BTreeSet<String> {
    let (a, b) = (serde_json::to_value(s).unwrap(), serde_json::to_value(t).unwrap());
    let (Value::Object(a), Value::Object(b)) = (a, b) else { panic!("settings are objects") };
    a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

/// The keys a run's overrides name.
fn named(over: &str) -> BTreeSet<String> {
    serde_json::from_str::<serde_json::Map<String, Value>>(over).unwrap().keys().cloned().collect()
}

#[test]
fn every_entry_makes_valid_runs_that_differ_only_in_what_it_compares() {
    let mut names = BTreeSet::new();
    let mut waiting_for_swiglu = vec![];
    for e in EXPERIMENTS {
        assert!(names.insert(e.name), "two entries are called {}", e.name);
        assert!(e.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{}", e.name);
        assert!((2..=3).contains(&e.runs.len()), "{}: {} runs", e.name, e.runs.len());
        assert!(e.explain.len() > 200 && !e.title.is_empty(), "{}: a title and a paragraph", e.name);
        let runs = e.runs().unwrap_or_else(|err| panic!("{}: {err}", e.name));
        let labels: BTreeSet<&str> = runs.iter().map(|r| r.label).collect();
        assert_eq!(labels.len(), runs.len(), "{}: run labels are unique", e.name);
        let data = match e.corpus {
            Corpus::Task(spec) => DataSource::Task(Task::parse(spec).unwrap().spec()),
            Corpus::Builtin(name) => DataSource::Text(name.into()),
        };
        for (r, (_, over)) in runs.iter().zip(e.runs) {
            let s = &r.settings;
            // same data and seed: only the keys the two runs' overrides name may differ
            let first = &runs[0].settings;
            let may = &named(over) | &named(e.runs[0].1);
            let diff = differing(first, s);
            assert!(
                diff.is_subset(&may),
                "{} {}: differs from {} in {diff:?}, names only {may:?}",
                e.name,
                r.label,
                runs[0].label
            );
            assert_eq!((s.seed, &s.tokenizer), (first.seed, &first.tokenizer), "{} {}", e.name, r.label);
            // valid settings: the model (the kernels' check included) and the run
            match s.model(65) {
                Ok(model) => {
                    let cfg = s.run_config(model, data.clone(), s.tokenizer.clone());
                    let cfg = cfg.unwrap_or_else(|err| panic!("{} {}: {err}", e.name, r.label));
                    assert_eq!((cfg.max_iters, cfg.seed), (s.max_iters, s.seed));
                }
                // the llama entry runs once the SwiGLU kernels land; until then the only refusal
                // allowed is theirs
                Err(err) if s.architecture.arch(s.n_head).unwrap().mlp == Mlp::SwiGlu => {
                    assert!(err.to_string().contains("mlp = swiglu"), "{} {}: {err}", e.name, r.label);
                    waiting_for_swiglu.push(format!("{} {}", e.name, r.label));
                }
                Err(err) => panic!("{} {}: {err}", e.name, r.label),
            }
            // each run is a link that opens to exactly its settings
            let link = Link::share(s.clone(), Some(e.link_corpus())).unwrap();
            let opened = Link::decode(&link, &RunSettings::preset("tiny").unwrap()).unwrap();
            assert_eq!(&opened.settings, s, "{} {}", e.name, r.label);
            assert!(opened.refused.is_empty() && opened.ignored.is_empty(), "{opened:?}");
            assert_eq!(opened.corpus, Some(e.link_corpus()));
            if let Some(LinkCorpus::Task { name, params }) = &opened.corpus {
                assert!(Task::parse(&format!("{name}:{params}")).is_ok() || params.is_empty());
            }
        }
    }
    println!("{} entries; waiting for the SwiGLU kernels: {waiting_for_swiglu:?}", EXPERIMENTS.len());
    for want in ["architectures", "optimizers", "positions", "grokking", "induction-head", "tied-head"] {
        assert!(names.contains(want), "the gallery has {want}");
    }
}

#[test]
fn entries_compare_what_they_say() {
    let runs = |name: &str| Experiment::find(name).unwrap().runs().unwrap();
    let arch: Vec<Option<String>> =
        runs("architectures").iter().map(|r| r.settings.architecture.arch.clone()).collect();
    assert_eq!(arch, [Some("gpt2".into()), Some("llama".into()), Some("speedrun".into())]);
    let grok = runs("grokking");
    assert!(grok.iter().all(|r| r.settings.answer_loss), "grokking trains on the answers only");
    assert_eq!(grok.iter().map(|r| r.settings.weight_decay).collect::<Vec<_>>(), [Some(1.0), Some(0.0)]);
    let layers: Vec<usize> = runs("induction-head").iter().map(|r| r.settings.n_layer).collect();
    assert_eq!(layers, [1, 2]);
    let tied: Vec<Option<bool>> = runs("tied-head").iter().map(|r| r.settings.architecture.tied).collect();
    assert_eq!(tied, [Some(true), Some(false)]);
    let err = Experiment::find("nope").unwrap_err().to_string();
    assert!(err.contains("unknown experiment \"nope\"") && err.contains("grokking"), "{err}");
}

#[test]
fn a_shortened_run_evaluates_at_its_start_and_end() {
    let r = Experiment::find("grokking").unwrap().runs().unwrap().remove(0);
    let full = r.settings.clone();
    let s = r.shortened(3).settings;
    assert_eq!((s.max_iters, s.eval_interval, s.eval_iters, s.warmup_iters), (3, 3, Some(3), Some(1)));
    assert_eq!(
        differing(&full, &s),
        ["eval_interval", "eval_iters", "max_iters", "warmup_iters"].map(String::from).into()
    );
}

#[test]
fn the_manifest_carries_every_entry_with_its_links_and_estimate() {
    let infos = ExperimentInfo::all();
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, EXPERIMENTS.iter().map(|e| e.name).collect::<Vec<_>>(), "no entry left out");
    for i in &infos {
        for r in &i.runs {
            assert!(r.link.starts_with("#run="), "{} {}", i.name, r.label);
            assert!(r.flops_per_token > 1e4 && r.tokens_per_step > 0, "{} {}: {r:?}", i.name, r.label);
            assert!(r.settings.eval_iters.is_some(), "{} {}: the page shortens eval_iters", i.name, r.label);
        }
    }
    let induction = infos.iter().find(|i| i.name == "induction-head").unwrap();
    let prompt = induction.prompt.as_deref().unwrap();
    let (asked, answer) = prompt.split_once(':').and_then(|(_, q)| q.split_once('=')).expect("pairs:keys=answer");
    assert_eq!(answer.len(), 2 * asked.len(), "a held-out example with its answer: {prompt}");
    assert!(infos.iter().filter(|i| i.name != "induction-head").all(|i| i.prompt.is_none()));
}

/// `wgpt ARGS`: (exit code, stdout, stderr).
fn wgpt(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn wgpt_experiments_lists_every_entry_name_first() {
    let (code, out, err) = wgpt(&["experiments"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), EXPERIMENTS.len(), "{out}");
    for (line, e) in lines.iter().zip(EXPERIMENTS) {
        assert_eq!(line.split_whitespace().next(), Some(e.name), "a line per entry, its name first: {line}");
        assert!(line.contains(e.title) && e.runs.iter().all(|r| line.contains(r.0)), "{line}");
    }
}

#[test]
fn bad_experiment_input_is_refused_with_a_message() {
    let out = std::env::temp_dir().join(format!("wgpt-bad-experiment-{}", std::process::id()));
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--experiment", "nope"], "unknown experiment \"nope\""),
        (&["--experiment", "architectures"], "pass --data FILE"),
        (&["--experiment", "positions", "--data", "x.txt"], "leave --data out"),
        (&["--experiment", "positions", "--steps", "0"], "--steps must be at least 1"),
        (&["--experiment", "positions", "--positions", "rope"], "do not go with --experiment"),
        (&["--experiment", "positions", "--lr", "0.1"], "cannot be used with"),
        (&["--experiment", "positions", "--seed", "3"], "cannot be used with"),
        (&["--experiment", "positions", "--preset", "tiny"], "cannot be used with"),
        (&["--steps", "3"], "--experiment"),
    ];
    for (args, says) in cases {
        let (code, _, err) = wgpt(&[&["train", "--out", out], *args].concat());
        println!("train {args:?}: {}", err.lines().find(|l| l.contains("error")).unwrap_or(""));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("panicked"), "{args:?}: wanted {says:?} in {err}");
        assert!(!err.contains("adapter:"), "{args:?}: refused before the GPU opened: {err}");
    }
}

#[test]
fn a_shortened_experiment_runs_end_to_end() {
    if pollster::block_on(common::kernels()).is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgpt-experiment-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, out, err) =
        wgpt(&["train", "--experiment", "induction-head", "--steps", "2", "--out", dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let e = Experiment::find("induction-head").unwrap();
    for (label, _) in e.runs {
        let run = dir.join(label);
        for file in ["config.json", "model.safetensors", "metrics.jsonl", "corpus.txt", "loss.png"] {
            assert!(run.join(file).is_file(), "{label}: no {file} in {}", run.display());
        }
        let line =
            out.lines().find(|l| l.starts_with(&format!("{label}: val loss"))).unwrap_or_else(|| panic!("{out}"));
        assert!(line.contains("at step 2") && line.contains("exact-match accuracy"), "{line}");
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert!(metrics.lines().count() >= 3, "{label}: evaluations at 0 and 2, progress: {metrics}");
    }
    let config: Value = serde_json::from_slice(&std::fs::read(dir.join("1-layer/config.json")).unwrap()).unwrap();
    assert_eq!(config["n_layer"], 1, "{config}");
    let png = std::fs::read(dir.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let (w, h) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((w, h), (900, 540), "the overlaid chart");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_link_carries_tinystories_as_a_built_in_corpus() {
    let tiny = RunSettings::preset("tiny").unwrap();
    let corpus = LinkCorpus::Builtin("tinystories".into());
    let opened = Link::decode(&Link::share(tiny.clone(), Some(corpus.clone())).unwrap(), &tiny).unwrap();
    assert_eq!(opened.corpus, Some(corpus));
    let bad = Link::decode(
        &Link { settings: tiny.clone(), corpus: Some(LinkCorpus::Builtin("tinystory".into())) }.encode(),
        &tiny,
    );
    let refused = bad.unwrap().refused;
    assert!(refused.iter().any(|r| r.field == "corpus" && r.why.contains("tinystories")), "{refused:?}");
}
