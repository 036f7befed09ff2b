//! The whole forward pass and training against Hugging Face and torch: the shared parity
//! files, our own odd-shaped fixtures, SGD's, Muon's, Llama's and Qwen3's, nanoGPT's N-step loop
//! with AdamW, SGD and Muon (tests/fixtures/make_parity.py, parity_muon.py), the negative
//! fixtures and edited settings each check must reject, and the official-layout tiny GPT-2 directory with the real GPT-2 tokenizer.

mod common;

use std::path::{Path, PathBuf};

use wgpt::parity::{check_forward, check_n_steps, check_training, Check, Measure, ParityFile};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Every check of a parity file (forward and training), printed with each tensor's update-norm
/// ratio; None without a GPU.
fn parity_checks(path: &Path) -> Option<Vec<Check>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let p = ParityFile::parse(&path.display().to_string(), &bytes).unwrap();
    let k = common::shared_kernels()?;
    let budget = common::options().submit_budget_ms;
    let mut checks = pollster::block_on(check_forward(k.clone(), &p, budget)).unwrap();
    checks.extend(pollster::block_on(check_training(k, &p, budget)).unwrap());
    let file = path.file_name().unwrap().to_string_lossy();
    for c in &checks {
        println!("{file}: {c}");
        if let Measure::UpdateNorm { tensors } = &c.measure {
            let each: Vec<String> = tensors.iter().map(|u| format!("{} {:.1e}", u.tensor, u.ratio)).collect();
            println!("{file}:   per tensor: {}", each.join(", "));
        }
    }
    Some(checks)
}

fn run_parity_file(path: &Path) {
    let Some(checks) = parity_checks(path) else { return };
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
    run_parity_file(&fixture("odd.safetensors"));
}

/// 1 layer, 1 head, T = block_size = 9, vocab 11.
#[test]
fn parity_one_head() {
    run_parity_file(&fixture("odd1.safetensors"));
}

/// torch.optim.SGD, momentum 0.9 (two groups: decay 0.1 on rank >= 2 tensors, none on 1-D
/// ones), lr 0.05: 2 layers, head size 8, vocab 37, B 2, T 13, biases and gains perturbed. The
/// decay moves a weight by up to 3.4e-4 in the first step (over STEP1_TOL) and the tenth loss by
/// 0.025, so a run without it fails.
#[test]
fn parity_sgd() {
    run_parity_file(&fixture("sgd.safetensors"));
}

/// As parity_sgd with Nesterov momentum (the tenth loss 0.125 from plain momentum's).
#[test]
fn parity_sgd_nesterov() {
    run_parity_file(&fixture("sgd-nesterov.safetensors"));
}

/// Muon (torch.optim.Muon, Newton-Schulz patched to f32) on the hidden matrices and AdamW on
/// the rest, with Nesterov: 2 layers, n_embd 16, vocab 29, B 2, T 11; mlp.c_proj (64, 16) is
/// tall, so Newton-Schulz runs on its transpose and its lr is doubled.
#[test]
fn parity_muon() {
    run_parity_file(&fixture("muon.safetensors"));
}

/// Muon without Nesterov: 1 layer, 3 heads of 4, n_embd 12.
#[test]
fn parity_muon_nonesterov() {
    run_parity_file(&fixture("muon-nonesterov.safetensors"));
}

/// AdamW through nanoGPT's loop (tests/fixtures/train.safetensors): after the usual step and
/// ten losses at constant lr, 8 steps from the same start with warmup 2, cosine to min_lr at
/// step 6, clipping at 1.0 (active on the first five steps, whose gradient norms fall from 1.6
/// to 0.9) and 2 micro-batches of 2 rows, through the trainer the CLI uses. Weights of std 0.2
/// and perturbed biases and gains make every part visible in the update norms: the negative
/// fixtures below leave one out each.
#[test]
fn parity_train_n_steps() {
    run_parity_file(&fixture("train.safetensors"));
}

/// SGD (Nesterov, momentum 0.9, decay 0.1 added to the gradient) through nanoGPT's loop
/// (tests/fixtures/sgd-train.safetensors): train.safetensors's shapes and settings at lr 0.1
/// (min_lr 0.01), so the schedule's lr meets the momentum buffer (torch keeps lr out of it).
#[test]
fn parity_sgd_n_steps() {
    run_parity_file(&fixture("sgd-train.safetensors"));
}

/// Muon on the hidden matrices and AdamW on the rest through nanoGPT's loop
/// (tests/fixtures/muon-train.safetensors): train.safetensors's shapes and settings, Muon's lr
/// 0.02 under the same schedule factor as AdamW's 1e-2 (its floor 0.02·min_lr/lr), clipping
/// before the momentum, and the decay at the scheduled lr.
#[test]
fn parity_muon_n_steps() {
    run_parity_file(&fixture("muon-train.safetensors"));
}

/// The SGD and Muon N-step checks can fail: each file run under its `train` metadata edited
/// (clipping off, which its first three steps need; no warmup) fails the N-step update-norm
/// check. The worst tensor's ratio wgpt measures: SGD 0.31 without clipping, 0.17 without
/// warmup; Muon 7.0e-2 and 0.19 (the bound is 1e-3, the right files' worst 4.7e-6).
#[test]
fn n_step_checks_see_clipping_and_schedule() {
    let Some(k) = common::shared_kernels() else { return };
    let budget = common::options().submit_budget_ms;
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 2] =
        [("no clipping", |t| t["grad_clip"] = 0.0.into()), ("no warmup", |t| t["warmup_iters"] = 0.into())];
    for file in ["sgd-train.safetensors", "muon-train.safetensors"] {
        for (what, edit) in edits {
            let p = file_edited(file, "train", edit).unwrap();
            let checks = pollster::block_on(check_n_steps(k.clone(), &p, budget)).unwrap();
            let norm = checks.iter().find(|c| c.name.starts_with("update norms")).expect("an update-norm check");
            println!("{file} with {what}: {norm}");
            assert!(!norm.passed(), "{file} with {what} passed: {norm}");
        }
    }
}

/// Each negative fixture (tests/fixtures/parity_negative/: train.safetensors's model, batch and
/// metadata, with the expected values of a wrong training) fails `wgpt parity`, caught by the
/// update-norm check of the stage it changes, while its forward and gradients pass. The worst
/// tensor's ratio wgpt measures against each (the bound is 1e-3, the right file's worst 1.2e-5):
/// no decay 2.2e-2 after one step and 2.7e-2 after eight, decay on the 1-D tensors 9.9e-2 and
/// 0.15, no clipping 6.8e-2, nanoGPT's old warmup (lr·it/warmup) 0.29.
#[test]
fn negative_fixtures_fail_the_check_that_sees_them() {
    let one = "update norms of 1 AdamW step";
    let n = "update norms of 8 steps (warmup 2, clip 1, accum 2)";
    for (file, caught_by) in
        [("no-wd", [one, n].as_slice()), ("wd-1d", &[one, n]), ("no-clip", &[n]), ("other-schedule", &[n])]
    {
        let Some(checks) = parity_checks(&fixture(&format!("parity_negative/{file}.safetensors"))) else { return };
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| !c.passed() && c.name.starts_with("update norms"))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, caught_by, "{file}: the update-norm checks that failed");
        for c in checks.iter().filter(|c| ["logits", "loss", "grads (all)"].contains(&c.name.as_str())) {
            assert!(c.passed(), "{file}: {c}");
        }
        println!("{file}.safetensors: FAILS, caught by {caught_by:?}");
    }
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
    file_edited("muon.safetensors", "optimizer", edit)
}

/// A fixture with its JSON metadata `key` edited by `edit`.
fn file_edited(name: &str, key: &str, edit: impl Fn(&mut serde_json::Value)) -> wgpt::Result<ParityFile> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = &mut header["__metadata__"][key];
    let mut optimizer: serde_json::Value =
        meta.as_str().map_or(serde_json::Value::Null, |t| serde_json::from_str(t).unwrap());
    edit(&mut optimizer);
    *meta = optimizer.to_string().into();
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(text.len().next_multiple_of(8), b' ');
    let edited = [&(text.len() as u64).to_le_bytes()[..], &text, &bytes[8 + n..]].concat();
    ParityFile::parse(&format!("{name} edited"), &edited)
}

/// A `train` field without expected.stepN.* tensors, and one whose micro-batches do not split
/// the batch, are refused by name (no GPU).
#[test]
fn train_metadata_is_refused_by_name() {
    let train = serde_json::json!({"steps": 2, "warmup_iters": 0, "lr_decay_iters": 2, "lr": 1e-3, "min_lr": 1e-4,
                                   "grad_clip": 1.0, "grad_accum": 1});
    let err = file_edited("odd.safetensors", "train", |t| *t = train.clone()).err().expect("train without stepN");
    assert!(err.to_string().contains("come together; this file has only the metadata"), "{err}");
    let err = file_edited("train.safetensors", "train", |t| t["grad_accum"] = 3.into()).err().expect("accum 3 of 4");
    assert!(err.to_string().contains("grad_accum 3, which does not split the batch's 4 rows"), "{err}");
    assert!(file_edited("train.safetensors", "train", |_| {}).is_ok());
}

/// What the element-wise bound cannot see at HF's init and the update norm can: odd.safetensors
/// (weights of std 0.02, lr 1e-3) run without its weight decay stays within 1e-4 of torch after
/// one step (the decay moves a weight by lr·wd·|w| ≈ 6e-6 at most), but each decayed tensor's
/// update is off by wd·rms(w) ≈ 2e-3 of its norm, over the bound 1e-3.
#[test]
fn update_norm_sees_a_missing_decay_the_element_bound_does_not() {
    let Some(k) = common::shared_kernels() else { return };
    let p = file_edited("odd.safetensors", "adamw", |o| o["weight_decay"] = 0.0.into()).unwrap();
    let checks = pollster::block_on(check_training(k, &p, common::options().submit_budget_ms)).unwrap();
    let get = |name: &str| checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}"));
    let (elements, norm) = (get("params after 1 AdamW step"), get("update norms of 1 AdamW step"));
    println!("odd.safetensors without decay: {elements}\n{norm}");
    assert!(elements.passed(), "the element-wise bound now sees the decay: {elements}");
    assert!(!norm.passed(), "the update norm misses a run without decay: {norm}");
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
