//! The whole forward pass against Hugging Face: the shared parity files, our own odd-shaped
//! fixtures, SGD's, Muon's, Llama's and Qwen3's (tests/fixtures/make_parity.py) and the
//! official-layout tiny GPT-2 directory with the real GPT-2 tokenizer.

mod common;

use std::path::Path;

use wgpt::parity::{check_forward, check_training, ParityFile};

fn run_parity_file(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let p = ParityFile::parse(&path.display().to_string(), &bytes).unwrap();
    let Some(k) = common::shared_kernels() else {
        return;
    };
    let budget = common::options().submit_budget_ms;
    let mut checks = pollster::block_on(check_forward(k.clone(), &p, budget)).unwrap();
    checks.extend(pollster::block_on(check_training(k, &p, budget)).unwrap());
    for c in &checks {
        println!("{}: {c}", path.display());
    }
    let failed: Vec<String> = checks.iter().filter(|c| !c.passed()).map(|c| c.to_string()).collect();
    assert!(failed.is_empty(), "{}: {failed:#?}", path.display());
}

#[test]
fn parity_tiny() {
    if let Some(d) = common::shared_data() {
        run_parity_file(&d.join("parity/tiny.safetensors"));
    }
}

#[test]
fn parity_baby() {
    if let Some(d) = common::shared_data() {
        run_parity_file(&d.join("parity/baby.safetensors"));
    }
}

/// 3 layers, 3 heads of size 12, vocab 53, B 3, T 19 < block_size 23: nothing divides anything.
#[test]
fn parity_odd_shapes() {
    run_parity_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/odd.safetensors"));
}

/// 1 layer, 1 head, T = block_size = 9, vocab 11.
#[test]
fn parity_one_head() {
    run_parity_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/odd1.safetensors"));
}

/// torch.optim.SGD, momentum 0.9 (two groups: decay 0.1 on rank >= 2 tensors, none on 1-D
/// ones), lr 0.05: 2 layers, head size 8, vocab 37, B 2, T 13. The decay moves a weight by up to
/// 3.4e-4 in the first step (over STEP1_TOL) and the tenth loss by 0.069, so a run without it
/// fails.
#[test]
fn parity_sgd() {
    run_parity_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sgd.safetensors"));
}

/// As parity_sgd with Nesterov momentum (the tenth loss 0.075 from plain momentum's).
#[test]
fn parity_sgd_nesterov() {
    run_parity_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sgd-nesterov.safetensors"));
}

/// Muon (torch.optim.Muon, Newton-Schulz patched to f32) on the hidden matrices and AdamW on
/// the rest, with Nesterov: 2 layers, n_embd 16, vocab 29, B 2, T 11; mlp.c_proj (64, 16) is
/// tall, so Newton-Schulz runs on its transpose and its lr is doubled.
#[test]
fn parity_muon() {
    run_parity_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/muon.safetensors"));
}

/// Muon without Nesterov: 1 layer, 3 heads of 4, n_embd 12.
#[test]
fn parity_muon_nonesterov() {
    run_parity_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/muon-nonesterov.safetensors"));
}

/// LlamaForCausalLM (the file's `config` its config.json, tensors under its names): 2 layers, 4
/// heads of 8 over 2 KV heads (4 x 8 != n_embd 16), SwiGLU at an odd intermediate size 21,
/// attention and MLP biases, untied; AdamW, B 3, T 19.
#[test]
fn parity_llama() {
    run_parity_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama.safetensors"));
}

/// Qwen3ForCausalLM: 2 layers, 4 heads of 8 over 1 KV head (MQA) at n_embd 24, qk-norm, rms eps
/// 1e-6, SwiGLU at 20, tied; AdamW, B 2, T 13.
#[test]
fn parity_qwen3() {
    run_parity_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3.safetensors"));
}

/// `muon.safetensors` with its `optimizer` metadata edited by `edit`: the same expected values
/// under other settings.
fn muon_file_edited(edit: impl Fn(&mut serde_json::Value)) -> wgpt::Result<ParityFile> {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/muon.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = &mut header["__metadata__"]["optimizer"];
    let mut optimizer: serde_json::Value = serde_json::from_str(meta.as_str().unwrap()).unwrap();
    edit(&mut optimizer);
    *meta = optimizer.to_string().into();
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(text.len().next_multiple_of(8), b' ');
    let edited = [&(text.len() as u64).to_le_bytes()[..], &text, &bytes[8 + n..]].concat();
    ParityFile::parse("muon.safetensors edited", &edited)
}

/// The Muon checks can fail: run without weight decay the parameters after one step are off by
/// lr·wd·|w| (~1.5e-3 > 1e-4); without Nesterov the first step is the same (both normalise a
/// multiple of g) but the ten losses part by ~0.1 (> 1e-3); Newton-Schulz settings wgpt does not
/// run are refused.
#[test]
fn muon_parity_sees_decay_and_nesterov() {
    let Some(k) = common::shared_kernels() else { return };
    let budget = common::options().submit_budget_ms;
    let failed = |p: &ParityFile| -> Vec<String> {
        let checks = pollster::block_on(check_training(k.clone(), p, budget)).unwrap();
        checks.iter().filter(|c| !c.passed()).map(|c| c.name.clone()).collect()
    };
    let no_decay = muon_file_edited(|o| {
        o["weight_decay"] = 0.0.into();
        o["adamw"]["weight_decay"] = 0.0.into();
    })
    .unwrap();
    assert!(failed(&no_decay).iter().any(|n| n.starts_with("params after 1")), "no decay passed");
    let plain = muon_file_edited(|o| o["nesterov"] = false.into()).unwrap();
    assert_eq!(failed(&plain), ["losses of 10 steps"], "plain momentum");
    let four_steps = muon_file_edited(|o| o["ns_steps"] = 4.into()).err().expect("4 Newton-Schulz steps accepted");
    assert!(four_steps.to_string().contains("4 steps"), "{four_steps}");
    let other =
        muon_file_edited(|o| o["adjust_lr"] = "match_rms_adamw".into()).err().expect("match_rms_adamw accepted");
    assert!(other.to_string().contains("match_rms_adamw"), "{other}");
}

/// The official file layout (no `transformer.` prefix, attn.bias buffers) and GPT-2's tokenizer:
/// our ids equal HF's and our logits equal HF's.
#[test]
fn hf_tiny_gpt2_directory() {
    let Some(d) = common::shared_data() else {
        return;
    };
    let dir = d.join("hf-tiny-gpt2");
    let (weights, tokenizer) = wgpt::hf::dir::load(&dir).unwrap();
    let tokenizer = tokenizer.expect("hf-tiny-gpt2 has tokenizer.json");
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let prompt = meta.metadata().as_ref().unwrap()["prompt"].clone();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want_ids = common::i32_tensor(&st, "ids");
    let ids = tokenizer.encode(&prompt).unwrap();
    assert_eq!(ids, want_ids, "tokenizer ids differ from HF's");
    assert_eq!(tokenizer.decode(&ids).unwrap(), prompt);
    let want_logits = wgpt::hf::to_f32("logits", &st.tensor("logits").unwrap()).unwrap();

    let Some(k) = common::shared_kernels() else {
        return;
    };
    let model = wgpt::Gpt2::new(k, &weights).unwrap();
    let f = model.forward_plan(1, ids.len()).unwrap();
    model.forward(&f, &ids, None).unwrap();
    let logits = pollster::block_on(model.kernels.gpu.read(&f.acts.logits)).unwrap();
    let c = wgpt::cpu::check_close("hf-tiny-gpt2 logits", &logits, &want_logits, 1e-4, 1e-4)
        .unwrap_or_else(|m| panic!("{m}"));
    println!(
        "hf-tiny-gpt2 logits [{}, {}]: max abs err {:.2e}, max rel err {:.2e}",
        ids.len(),
        weights.config.vocab_size,
        c.max_abs,
        c.max_rel
    );
}
