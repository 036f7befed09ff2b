//! LoRA in the page, natively through its engine: the KV-cache decoder runs a model's adapters
//! (its logits equal the batch forward's with the adapters, which the peft parity files check,
//! and differ from the base's); the plan says what LoRA saves; a LoRA fine-tune of an imported
//! model exports its adapter (peft's two files, naming the base, the bytes `wgpt train` writes)
//! and its merged model (the CPU merge of those), and the adapter imported back onto the base
//! generates what the run generated, token for token; and what is refused is refused with a
//! reason (an adapter for another base, one with DoRA, LoRA without a loaded model, Export
//! adapter of a full fine-tune).

mod common;

use common::page::{Posted, Recorder};
use std::rc::Rc;
use std::sync::Arc;

use common::Rng;
use serde_json::json;
use wgpt::generate::Decoder;
use wgpt::hf::peft::{Adapter, PeftConfig};
use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2, Gpt2Config, LoraConfig, LoraTensors, Weights};
use wgpt::tokenizer::Tokenizer;
use wgpt::web::protocol::{Event, Scope, TrainState};
use wgpt::web::Engine;

fn corpus() -> String {
    "the cat sat on the mat. a dog ran to the door. my friend sang for the moon.\n".repeat(30)
}

/// A GPT-2 of the tiny preset's shape on the corpus's characters, at ragged sizes.
fn tiny() -> Gpt2Config {
    let vocab_size = Tokenizer::char_level(&corpus()).unwrap().vocab_size();
    Gpt2Config { n_embd: 40, n_head: 2, vocab_size, ..Gpt2Config::preset("tiny").unwrap() }
}

/// The decoder of a model with adapters (random A and B) against the batch forward of the same
/// model over the same tokens: the last position's logits agree, and both differ from the base's.
async fn decoder_runs_the_adapters(k: Arc<Kernels>) {
    let cfg = tiny();
    let lc = LoraConfig { alpha: 5.0, ..LoraConfig::new(3, 2) };
    let mut rng = Rng::new(7);
    let adapters: Vec<Vec<f32>> = lc.specs(&cfg).iter().map(|(_, s)| rng.vec(s[0] * s[1], -0.3, 0.3)).collect();
    let mut model = Gpt2::new(k.clone(), &Weights::random(cfg, 5)).unwrap();
    let ids = Rng::new(9).ids(13, cfg.vocab_size);
    let mut base = Decoder::new(&model).unwrap();
    base.prefill(&model, &ids).unwrap();
    let base = base.logits(&model).await.unwrap();
    model.lora = Some(LoraTensors::upload(&k.gpu, &cfg, lc, &adapters).unwrap());
    let f = model.forward_plan(1, ids.len()).unwrap();
    model.forward(&f, &ids, None).unwrap();
    let v = cfg.vocab_size;
    let want = k.gpu.read_range(&f.acts.logits, (ids.len() - 1) * v, v).await.unwrap();
    let mut decoder = Decoder::new(&model).unwrap();
    decoder.prefill(&model, &ids).unwrap();
    let got = decoder.logits(&model).await.unwrap();
    let c = wgpt::cpu::check_close("decoder logits with adapters", &got, &want, 1e-5, 1e-4)
        .unwrap_or_else(|m| panic!("{m}"));
    println!("decoder vs forward with adapters: max abs err {:.2e}", c.max_abs);
    let moved = got.iter().zip(&base).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("the adapters move the logits by up to {moved:.3}");
    assert!(moved > 1e-2, "the decoder ignores the adapters: its logits are the base's (within {moved})");
    // a token after the prompt, one position at a time, agrees too
    decoder.push(&model, ids[0]).unwrap();
    let mut longer = ids.clone();
    longer.push(ids[0]);
    let f = model.forward_plan(1, longer.len()).unwrap();
    model.forward(&f, &longer, None).unwrap();
    let want = k.gpu.read_range(&f.acts.logits, (longer.len() - 1) * v, v).await.unwrap();
    let got = decoder.logits(&model).await.unwrap();
    wgpt::cpu::check_close("decode step with adapters", &got, &want, 1e-5, 1e-4).unwrap_or_else(|m| panic!("{m}"));
}

#[test]
fn the_decoder_runs_a_models_adapters() {
    if let Some(k) = common::shared_kernels() {
        pollster::block_on(decoder_runs_the_adapters(k));
    }
}

struct Page {
    engine: Engine,
    events: Posted,
}

impl Page {
    fn new() -> Page {
        let events: Posted = Rc::default();
        let mut page = Page { engine: Engine::new(Box::new(Recorder(events.clone()))), events };
        page.ask(json!({"type": "init"}), vec![], |e| matches!(e, Event::Ready { .. }));
        page.ask(json!({"type": "corpus", "name": "c.txt", "text": corpus()}), vec![], |e| {
            matches!(e, Event::Corpus { .. })
        });
        page
    }

    /// Sends `request` with `files`, then works until an event matching `done` or an error: that
    /// event with its files.
    fn ask(
        &mut self,
        request: serde_json::Value,
        files: Vec<Vec<u8>>,
        done: impl Fn(&Event) -> bool,
    ) -> (Event, Vec<Vec<u8>>) {
        let seen = self.events.borrow().len();
        self.engine.handle(&request.to_string(), files).unwrap();
        loop {
            let busy = pollster::block_on(self.engine.tick());
            let events = self.events.borrow();
            if let Some(hit) = events[seen..].iter().find(|(e, _)| done(e) || matches!(e, Event::Error { .. })) {
                return hit.clone();
            }
            assert!(busy, "the engine went idle first: {:?}", &events[seen..]);
        }
    }

    /// `ask`, expecting the event `done` and no error.
    fn expect(
        &mut self,
        request: serde_json::Value,
        files: Vec<Vec<u8>>,
        done: impl Fn(&Event) -> bool,
    ) -> (Event, Vec<Vec<u8>>) {
        let hit = self.ask(request.clone(), files, done);
        assert!(!matches!(hit.0, Event::Error { .. }), "{request}: {:?}", hit.0);
        hit
    }

    /// `ask`, expecting an error of `scope`: its message.
    fn refused(&mut self, request: serde_json::Value, files: Vec<Vec<u8>>, scope: Scope) -> String {
        match self.ask(request.clone(), files, |_| false).0 {
            Event::Error { scope: s, message } if s == scope => {
                println!("refused: {message}");
                message
            }
            e => panic!("{request}: {e:?}"),
        }
    }

    /// Imports `weights` as the HF model `name`.
    fn import(&mut self, name: &str, weights: &Weights) {
        let tok = Tokenizer::char_level(&corpus()).unwrap();
        let files = wgpt::hf::files(weights, &tok).unwrap();
        let text = |n| String::from_utf8(files.iter().find(|(f, _)| *f == n).unwrap().1.clone()).unwrap();
        let model = files.iter().find(|(n, _)| *n == "model.safetensors").unwrap().1.clone();
        let request =
            json!({"type": "import", "name": name, "config": text("config.json"), "tokenizer": text("tokenizer.json")});
        self.expect(request, vec![model], |e| matches!(e, Event::Imported { .. }));
    }

    /// A greedy continuation of "the " (its tokens' text).
    fn greedy(&mut self) -> String {
        let seen = self.events.borrow().len();
        let request = json!({"type": "generate", "prompt": "the ", "sampling": {"temperature": 0.0, "top_k": 0, "top_p": 1.0},
                             "max_tokens": 12, "seed": 1, "precision": "f32"});
        self.expect(request, vec![], |e| matches!(e, Event::Generated { .. }));
        let events = self.events.borrow();
        events[seen..]
            .iter()
            .filter_map(|(e, _)| if let Event::Token { text } = e { Some(text.clone()) } else { None })
            .collect()
    }
}

fn settings(lora: serde_json::Value) -> serde_json::Value {
    let mut s = json!({"tokenizer": "char", "n_layer": 2, "n_head": 2, "n_embd": 40, "block_size": 32, "batch_size": 4,
                       "max_iters": 12, "lr": 1e-2, "eval_interval": 12, "eval_iters": 1, "log_interval": 1, "seed": 3});
    s.as_object_mut().unwrap().extend(lora.as_object().unwrap().clone());
    s
}

/// A zip's entries by name.
fn unzip(zip: &[u8], names: &[&str]) -> std::collections::BTreeMap<String, Vec<u8>> {
    wgpt::run::archive::read_entries("the zip", zip, names).unwrap()
}

#[test]
fn the_page_fine_tunes_with_lora_exports_and_imports_the_adapter() {
    if common::shared_kernels().is_none() {
        return;
    }
    let cfg = tiny();
    let base = Weights::random(cfg, 21);
    let mut page = Page::new();
    let lora = json!({"lora_rank": 4, "lora_targets": ["c_attn", "c_fc"]});
    // LoRA needs a loaded model
    let message = page.refused(json!({"type": "start", "settings": settings(lora.clone())}), vec![], Scope::Train);
    assert!(message.contains("load one first"), "{message}");
    let message = page.refused(json!({"type": "import_adapter", "name": "a.zip"}), vec![vec![1, 2]], Scope::Import);
    assert!(message.contains("load that first"), "{message}");
    page.import("tiny-base", &base);
    // the plan: the LoRA run's memory, the adapters' size and a full fine-tune's memory
    let (plan, _) = page.expect(json!({"type": "plan", "settings": settings(lora.clone())}), vec![], |e| {
        matches!(e, Event::Plan { .. })
    });
    let Event::Plan { memory_bytes, lora: Some(lp), .. } = plan else { panic!("no LoRA in the plan: {plan:?}") };
    let lc = LoraConfig { targets: wgpt::model::lora::Targets::parse("c_attn,c_fc").unwrap(), ..LoraConfig::new(4, 3) };
    assert_eq!(lp.params as u64, lc.bytes(&cfg) / 4);
    println!(
        "plan: LoRA {memory_bytes} bytes, {} adapter parameters; a full fine-tune {} bytes",
        lp.params, lp.full_memory_bytes
    );
    assert!(memory_bytes < lp.full_memory_bytes, "LoRA holds less than a full fine-tune");

    // fine-tune with LoRA, then generate greedily
    page.expect(json!({"type": "start", "settings": settings(lora)}), vec![], |e| {
        matches!(e, Event::State { state: TrainState::Done, .. })
    });
    let before = page.greedy();
    println!("the run generates {before:?}");

    // Export adapter: peft's two files, the base named, only the adapters' tensors
    let (ev, files) =
        page.expect(json!({"type": "export_adapter"}), vec![], |e| matches!(e, Event::ExportAdapter { .. }));
    assert!(matches!(&ev, Event::ExportAdapter { base, step: 12, .. } if base == "tiny-base"), "{ev:?}");
    let adapter_zip = files[0].clone();
    let entries = unzip(&adapter_zip, &["adapter_config.json", "adapter_model.safetensors", "model.safetensors"]);
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["adapter_config.json", "adapter_model.safetensors"]);
    let config = PeftConfig::parse(std::str::from_utf8(&entries["adapter_config.json"]).unwrap()).unwrap();
    assert_eq!((config.r, config.lora_alpha, config.base_model_name_or_path.as_deref()), (4, 8.0, Some("tiny-base")));
    let st = wgpt::hf::parse_safetensors("adapter", &entries["adapter_model.safetensors"]).unwrap();
    let names: Vec<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 2 * 2 * cfg.n_layer, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("base_model.model.transformer.h.") && n.contains(".lora_")),
        "{names:?}"
    );
    let adapter = Adapter::read("adapter", &config.to_json(), &entries["adapter_model.safetensors"], &cfg).unwrap();
    assert!(adapter.layers.iter().any(|l| l.b.iter().any(|&x| x != 0.0)), "training moved B off zero");
    // the run zip carries the adapter too
    let (_, files) = page.expect(json!({"type": "export_run"}), vec![], |e| matches!(e, Event::ExportRun { .. }));
    let entries = unzip(&files[0], &["adapter_config.json", "adapter_model.safetensors"]);
    assert_eq!(entries.len(), 2, "the run zip holds the adapter's files");
    // and moves to the CLI, whose run goes on naming the base
    let dir = std::env::temp_dir().join(format!("lora-page-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("run.zip");
    std::fs::write(&zip, &files[0]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["train", "--resume", zip.to_str().unwrap(), "--max-iters", "13"])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    assert!(out.status.success(), "wgpt train --resume run.zip: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.join("run").join("adapter_config.json")).unwrap();
    let resumed = PeftConfig::parse(&text).unwrap();
    assert_eq!(resumed.base_model_name_or_path.as_deref(), Some("tiny-base"), "the CLI's run names the page's base");
    let _ = std::fs::remove_dir_all(&dir);

    // Export merged: the base with the adapter merged in on the CPU
    let (_, files) = page.expect(json!({"type": "export_merged"}), vec![], |e| matches!(e, Event::ExportMerged { .. }));
    let merged = unzip(&files[0], &["config.json", "model.safetensors", "tokenizer.json"]);
    let st = wgpt::hf::parse_safetensors("merged", &merged["model.safetensors"]).unwrap();
    let got = wgpt::hf::load_files("merged", &[st], cfg).unwrap();
    let mut want = base.clone();
    wgpt::hf::peft::merge(&mut want, &adapter).unwrap();
    assert_eq!(got.tensors, want.tensors, "the merged model is the base with the adapter merged in");

    // a full fine-tune has no adapter
    page.import("tiny-base", &base);
    page.expect(json!({"type": "start", "settings": settings(json!({"max_iters": 2}))}), vec![], |e| {
        matches!(e, Event::State { state: TrainState::Done, .. })
    });
    let message = page.refused(json!({"type": "export_adapter"}), vec![], Scope::Export);
    assert!(message.contains("full fine-tune"), "{message}");

    // the adapter back onto the base: refusals first, then the same greedy text as the run's
    page.import("other", &Weights::random(Gpt2Config { n_embd: 48, ..cfg }, 4));
    let message =
        page.refused(json!({"type": "import_adapter", "name": "a.zip"}), vec![adapter_zip.clone()], Scope::Import);
    assert!(message.contains("another base"), "{message}");
    page.import("tiny-base", &base);
    let dora = config.to_json().replace("\"use_dora\": false", "\"use_dora\": true");
    let files = vec![dora.into_bytes(), Vec::new()];
    let request = json!({"type": "import_adapter", "name": "dora", "names": ["adapter_config.json", "adapter_model.safetensors"]});
    let message = page.refused(request, files, Scope::Import);
    assert!(message.contains("use_dora"), "{message}");
    let (ev, _) = page.expect(json!({"type": "import_adapter", "name": "a.zip"}), vec![adapter_zip], |e| {
        matches!(e, Event::AdapterImported { .. })
    });
    assert!(matches!(&ev, Event::AdapterImported { rank: 4, merged: false, .. }), "{ev:?}");
    let after = page.greedy();
    assert_eq!(after, before, "the imported adapter generates what the run generated");
}
