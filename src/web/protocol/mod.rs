//! The page protocol: what the page asks of the engine ([`Request`]) and what the engine tells
//! it ([`Event`]), and what the page asks of the worker's store of saved runs ([`StoreRequest`])
//! and what the store tells it ([`StoreEvent`]), as JSON objects tagged by `type`. Files travel
//! beside a message as byte arrays, in the order its `names`/`files` field lists them. The engine
//! sends the names of every message type, training state and error scope, and the presets, in its
//! `ready` event ([`Manifest`]): the JS takes them from there, not from a copy of its own.

mod events;
mod requests;
mod store;

pub use events::{
    ArchPresetInfo, Bar, DynamicsPoint, Event, Guess, LensRow, LoraPlan, Manifest, ParityCheck, SamplingView, TaskInfo,
};
pub use requests::{Request, Sampler, Scope, TrainState};
pub use store::{RunCurves, SavedRun, StoreEvent, StoreRequest};

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use strum::VariantNames;

    use super::*;
    use crate::dynamics::{LayerDynamics, TensorDynamics};
    use crate::precision::Precision;
    use crate::run::format::History;
    use crate::run::{Progress, RunSettings};

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(value: &T) -> String {
        let json = serde_json::to_string(value).unwrap();
        let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(&back, value, "{json}");
        json
    }

    /// The `type` tag of a message, checked against the names the manifest exports.
    fn tag(json: &str, names: &[String]) -> String {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let t = v["type"].as_str().unwrap().to_string();
        assert!(names.contains(&t), "{t} is not in the manifest's {names:?}");
        t
    }

    #[test]
    fn every_request_round_trips_under_its_manifest_name() {
        let m = Manifest::new();
        let settings = RunSettings::preset("tiny").unwrap();
        let sampling = Sampler { temperature: 0.8, top_k: 40, top_p: 0.9 };
        let requests = [
            Request::Init { tune_cache: Some("{}".into()) },
            Request::Corpus { name: "a.txt".into(), text: Some("hi".into()), task: None },
            Request::Plan { settings: settings.clone() },
            Request::Start { settings },
            Request::Pause,
            Request::Resume,
            Request::Stop,
            Request::Generate { prompt: "to be".into(), sampling, max_tokens: 10, seed: 1, precision: Precision::F16 },
            Request::Cancel,
            Request::Export,
            Request::ExportRun,
            Request::Import {
                name: "gpt2".into(),
                config: "{}".into(),
                tokenizer: "{}".into(),
                names: vec!["model-00001-of-00002.safetensors".into(), "model-00002-of-00002.safetensors".into()],
                generation_config: Some(r#"{"eos_token_id":[2,3]}"#.into()),
            },
            Request::Restore { id: "run-1".into(), names: vec!["config.json".into()], lr: Some(1e-4) },
            Request::ImportRun { name: "run.zip".into(), max_iters: Some(100) },
            Request::Inspect { prompt: "x".into(), layer: 1, sampling },
            Request::Sampling(Sampler { temperature: 0.0, ..sampling }),
            Request::Parity { name: "tiny.safetensors".into() },
            Request::LoseDevice,
            Request::Memory,
            Request::Checkpoints { optimizer_state: false },
            Request::CapMemory { bytes: Some(1 << 20) },
            Request::TrainOn { max_iters: 40 },
            Request::ShareLink {
                settings: RunSettings::preset("tiny").unwrap(),
                corpus: Some(crate::run::link::LinkCorpus::Builtin("shakespeare".into())),
            },
            Request::OpenLink { fragment: "#run=e30".into(), settings: RunSettings::preset("tiny").unwrap() },
            Request::ExportAdapter,
            Request::ExportMerged,
            Request::ImportAdapter { name: "adapter.zip".into(), names: vec![] },
        ];
        let tags: Vec<String> = requests.iter().map(|r| tag(&round_trip(r), &m.requests)).collect();
        assert_eq!(tags, m.requests, "one sample per request, in declaration order");
        // what the page sends: optional fields may be left out
        let r: Request = serde_json::from_str(r#"{"type":"restore","id":"run-1","names":[]}"#).unwrap();
        assert_eq!(r, Request::Restore { id: "run-1".into(), names: vec![], lr: None });
        assert!(serde_json::from_str::<Request>(r#"{"type":"launch"}"#).is_err());
    }

    #[test]
    fn every_event_round_trips_under_its_manifest_name() {
        let m = Manifest::new();
        let progress = Progress {
            step: 3,
            max_iters: 60,
            loss: 2.5,
            lr: 1e-3,
            ms_per_step: 20.0,
            tokens_per_sec: 1e4,
            eta_s: 1.2,
            dynamics: None,
            loss_scale: None,
        };
        let history = History { train: vec![(1, 3.0), (2, 2.75)], val: vec![(0, 3.25)] };
        let layer = LayerDynamics { name: "h.0".into(), grad_norm: 0.5, update_ratio: 1e-3 };
        let point = DynamicsPoint { step: 10, lr: 1e-3, grad_norm: 0.75, grad_clip: 1.0, layers: vec![layer] };
        let tensor = TensorDynamics {
            name: "transformer.wte.weight".into(),
            count: 1536,
            grad_norm: 0.25,
            grad_rms: 0.01,
            weight_rms: 0.02,
            update_rms: 2e-5,
            update_ratio: 1e-3,
        };
        let guess = Guess { id: 3, text: " the".into(), p: 0.5 };
        let bar = Bar { id: 3, text: " the".into(), before: 0.5, after: 0.625, candidate: true };
        let sampling = SamplingView {
            settings: Sampler { temperature: 0.8, top_k: 0, top_p: 0.9 },
            bars: vec![bar],
            candidates: 12,
            mass: 0.875,
        };
        let params = crate::params::param_table(&crate::model::Gpt2Config::preset("tiny").unwrap());
        let events = [
            Event::Ready {
                adapter: "lavapipe".into(),
                max_buffer_size: 1 << 30,
                max_storage_binding: 1 << 27,
                protocol: m.clone(),
            },
            Event::Tuned { source: "built-in table".into(), timed: 0, ms: 0.0 },
            Event::TuneCache { cache: "{}".into() },
            Event::Corpus { name: "a.txt".into(), bytes: 10, chars: 10, distinct: 5 },
            Event::Plan {
                vocab: 24,
                tokens: 1000,
                train: 900,
                val: 100,
                params: 103_680,
                memory_bytes: 1 << 20,
                precision: Precision::F32,
                precision_note: Some("f16 asked, but ...".into()),
                export_class: "GPT2LMHeadModel".into(),
                model_type: "gpt2".into(),
                lora: Some(LoraPlan { params: 4096, full_memory_bytes: 1 << 22 }),
            },
            Event::State { state: TrainState::Paused, step: 4 },
            Event::Progress(progress),
            Event::Dynamics { point: point.clone(), tensors: vec![tensor] },
            Event::Eval { step: 30, train_loss: 2.0, val_loss: 2.25, accuracy: Some(0.5), sample: "the cat".into() },
            Event::Token { text: "a".into() },
            Event::Generated { tokens: 10, tokens_per_sec: 100.0, precision: Precision::F16, precision_note: None },
            Event::Export { files: vec!["config.json".into()], step: 60 },
            Event::ExportRun { name: "lines.txt-step60.zip".into(), step: 60 },
            Event::Checkpoint { id: "run-1".into(), name: "a.txt".into(), step: 30, files: vec!["config.json".into()] },
            Event::Recovered { lost_at: 33, step: 30, reason: "Destroyed".into() },
            Event::Diverged { id: "run-1".into(), step: 5, saved: Some(0), lr: 1e6, message: "diverged".into() },
            Event::Restored {
                id: "run-1".into(),
                name: "a.txt".into(),
                step: 30,
                max_iters: 60,
                history,
                dynamics: vec![point],
                fresh_moments: true,
            },
            Event::Params {
                total: crate::params::total(&params),
                rows: params,
                flops_per_token: 6e5,
                peak_flops: None,
                arch: crate::model::ArchChoice::of(&crate::model::Arch::GPT2),
                export_class: "GPT2LMHeadModel".into(),
            },
            Event::Inspect {
                step: 30,
                prompt: "the".into(),
                notes: vec![],
                ids: vec![3],
                tokens: vec![" the".into()],
                lens: vec![LensRow { layer: 0, top: vec![guess.clone()], cells: vec![guess] }],
                sampling: sampling.clone(),
                layer: 0,
                n_layer: 2,
                n_head: 2,
                n_kv_head: 1,
            },
            Event::Sampling { step: 30, prompt: "the".into(), sampling },
            Event::Parity {
                name: "tiny".into(),
                adapter: "x".into(),
                checks: vec![ParityCheck {
                    name: "logits".into(),
                    passed: true,
                    max_abs: 1e-6,
                    max_rel: 1e-5,
                    atol: 1e-4,
                    rtol: 0.0,
                }],
                passed: true,
            },
            Event::Imported {
                name: "gpt2".into(),
                n_layer: 12,
                n_head: 12,
                n_embd: 768,
                block_size: 1024,
                vocab_size: 50257,
                params: 124_439_808,
            },
            Event::Error { scope: Scope::Checkpoint, message: "full".into() },
            Event::Memory { wasm_bytes: Some(1 << 24), gpu_buffers: 300, gpu_bytes: 1 << 22 },
            Event::Link { fragment: "#run=e30".into() },
            Event::LinkOpened(Box::new(crate::run::link::Opened {
                settings: RunSettings::preset("tiny").unwrap(),
                corpus: Some(crate::run::link::LinkCorpus::Own),
                set: vec!["n_layer".into()],
                ignored: vec!["future_knob".into()],
                refused: vec![crate::run::link::Refusal { field: "lr".into(), why: "must be a number".into() }],
            })),
            Event::TaskEval {
                step: 30,
                task: "reverse:max=12".into(),
                accuracy: 0.5,
                total: 200,
                examples: vec![crate::run::score::Scored {
                    prompt: "abc=".into(),
                    answer: "cba".into(),
                    tokens: vec!["c".into(), "b".into(), "a".into(), "\n".into()],
                    predicted: vec!["c".into(), "a".into(), "a".into(), "\n".into()],
                    right: vec![true, false, true, true],
                    exact: false,
                }],
            },
            Event::ExportAdapter { name: "lines-step20-adapter.zip".into(), step: 20, base: "gpt2".into() },
            Event::ExportMerged { name: "lines-step20-merged.zip".into(), step: 20 },
            Event::AdapterImported {
                name: "adapter.zip".into(),
                rank: 4,
                alpha: 8.0,
                targets: vec!["c_attn".into()],
                base: Some("gpt2".into()),
                merged: false,
            },
        ];
        let tags: Vec<String> = events.iter().map(|e| tag(&round_trip(e), &m.events)).collect();
        assert_eq!(tags, m.events, "one sample per event, in declaration order");
        // a progress report is flat: the page reads ev.step, ev.loss
        let json = serde_json::to_string(&events[6]).unwrap();
        assert!(json.starts_with(r#"{"type":"progress","step":3,"max_iters":60,"loss":2.5"#), "{json}");
    }

    #[test]
    fn states_and_scopes_serialize_as_their_manifest_names() {
        let m = Manifest::new();
        for s in [TrainState::Training, TrainState::Paused, TrainState::Stopped, TrainState::Done] {
            assert!(m.states.contains(&round_trip(&s).trim_matches('"').to_string()));
        }
        assert_eq!(m.scopes.len(), Scope::VARIANTS.len());
        for (scope, text) in &m.scopes {
            assert_eq!(round_trip(scope).trim_matches('"'), Scope::VARIANTS[*scope as usize]);
            assert!(!text.is_empty());
        }
    }

    #[test]
    fn every_store_message_round_trips_under_its_manifest_name() {
        let m = Manifest::new();
        let requests = [
            StoreRequest::Runs,
            StoreRequest::DeleteRun { id: "run-1".into() },
            StoreRequest::RestoreRun { id: "run-1".into(), lr: Some(1e-4) },
            StoreRequest::RunHistories { ids: vec!["run-1".into()] },
            StoreRequest::Room { bytes: 1 << 30, model_bytes: Some(1 << 28) },
            StoreRequest::CommitPause { ms: 200 },
        ];
        let tags: Vec<String> = requests.iter().map(|r| tag(&round_trip(r), &m.store_requests)).collect();
        assert_eq!(tags, m.store_requests, "one sample per store request, in declaration order");
        let settings = RunSettings::preset("tiny").unwrap();
        let cfg = settings.model(24).unwrap();
        let run = SavedRun {
            id: "run-1".into(),
            name: "a.txt".into(),
            step: 30,
            max_iters: 60,
            shape: "2 layers, 64 dims".into(),
            bytes: 1 << 20,
            saved_at: 1.7e12,
            settings: settings.run_config(cfg, crate::run::DataSource::Text("a.txt".into()), "char".into()).unwrap(),
            model_only: false,
            open_elsewhere: true,
        };
        let history = History { train: vec![(1, 3.0)], val: vec![(0, 3.25)] };
        let events = [
            StoreEvent::Saved { run: Box::new(run.clone()), copied: false },
            StoreEvent::Runs {
                runs: vec![run],
                usage: Some(2e6),
                quota: None,
                persisted: Some(false),
                unavailable: None,
            },
            StoreEvent::RunHistories {
                runs: vec![
                    RunCurves { id: "run-1".into(), history: Some(history), error: None },
                    RunCurves { id: "run-2".into(), history: None, error: Some("NotFoundError: gone".into()) },
                ],
            },
            StoreEvent::Room { bytes: 1 << 30, fits: false, model_bytes: Some(1 << 28), model_fits: true },
        ];
        let tags: Vec<String> = events.iter().map(|e| tag(&round_trip(e), &m.store_events)).collect();
        assert_eq!(tags, m.store_events, "one sample per store event, in declaration order");
        // what runs.js posts: a summary flat beside `copied`, the list without storage
        let json = serde_json::to_string(&events[0]).unwrap();
        assert!(json.starts_with(r#"{"type":"saved","id":"run-1","name":"a.txt","step":30"#), "{json}");
        let none = r#"{"type":"runs","runs":[],"usage":null,"quota":null,"unavailable":"no OPFS"}"#;
        let e: StoreEvent = serde_json::from_str(none).unwrap();
        assert!(matches!(e, StoreEvent::Runs { unavailable: Some(_), persisted: None, .. }), "{e:?}");
        // no name is both the engine's and the store's: the worker tells them apart by it
        assert!(m.requests.iter().all(|r| !m.store_requests.contains(r)), "{:?}", m.store_requests);
        assert!(m.events.iter().all(|e| !m.store_events.contains(e)), "{:?}", m.store_events);
    }

    #[test]
    fn the_arch_presets_are_the_engines() {
        use crate::model::{Arch, ArchPreset, Named};
        let presets = Manifest::new().arch_presets;
        let labels: Vec<&str> = presets.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["GPT-2 (2019)", "Llama (2023)", "Qwen3 (2025)", "speedrun (modded-nanoGPT)"]);
        for p in &presets {
            assert!(!p.about.is_empty() && !p.about.contains(": "), "{}: {}", p.name, p.about);
            // what the page shows of a preset, over any head count, is the engine's preset
            for n_head in [1, 2, 3, 12] {
                let mut want = Arch::default();
                ArchPreset::parse(&p.name).unwrap().apply(&mut want, n_head);
                let mut shown = p.switches.clone();
                shown.arch = None;
                shown.n_kv_head = match (p.kv_half, n_head % 2) {
                    (true, 0) => Some(n_head / 2),
                    (true, _) => Some(n_head),
                    (false, _) => None,
                };
                assert_eq!(shown.arch(n_head).unwrap(), want, "{} at {n_head} heads", p.name);
            }
        }
        let speedrun = &presets[3].switches;
        assert_eq!(
            (speedrun.logit_softcap, speedrun.tied, speedrun.arch.as_deref()),
            (Some(15.0), Some(false), Some("speedrun"))
        );
        assert_eq!(presets[0].switches.logit_softcap, Some(0.0), "off, as the page's empty softcap");
    }
}
