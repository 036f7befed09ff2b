//! Vocabularies past 65,535 (Qwen3's 151,936): the cross-entropy forward and backward, the logit
//! lens' row reduction, the GPU argmax and the embedding at V = 70001 and V = 151936 against the
//! CPU references (and logsumexp in f64), with targets, maxima and ids past 65535; few rows, so
//! lavapipe stays quick.

mod common;
use common::assert_close;

use std::sync::Arc;

use common::Rng;
use wgpt::cpu;
use wgpt::kernels::{CrossEntropyBwd, CrossEntropyFwd, Decode, Kernels, Program, IGNORE, MAX_VOCAB};

/// The vocabularies past the one-pass row loop: ragged, and Qwen3's.
const VOCABS: [usize; 2] = [70001, 151936];

/// log Σ exp of each row, in f64.
fn logsumexp(logits: &[f32], v: usize) -> Vec<f32> {
    let lse = |row: &[f32]| {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        (row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m) as f32
    };
    logits.chunks(v).map(lse).collect()
}

/// Targets for `rows` rows: the first past 65535 (V − 1), the second ignored when there are three
/// or more, the rest random.
fn targets(rng: &mut Rng, rows: usize, v: usize) -> Vec<u32> {
    let mut t = rng.ids(rows, v);
    t[0] = (v - 1) as u32;
    if rows >= 3 {
        t[1] = IGNORE;
    }
    t
}

async fn crossentropy(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(rows, v)) in [(3, VOCABS[0]), (1, VOCABS[1]), (5, VOCABS[1])].iter().enumerate() {
        assert!(v > MAX_VOCAB);
        let mut rng = Rng::new(2500 + i as u64);
        let logits = rng.vec(rows * v, -10.0, 10.0);
        let targets = targets(&mut rng, rows, v);
        let (loss, losses, lse) = (g.tensor("loss", &[1]), g.tensor("losses", &[rows]), g.tensor("lse", &[rows]));
        let counted = g.tensor("counted", &[1]);
        let (logits_t, targets_t) = (g.upload("logits", &[rows, v], &logits), g.upload("targets", &[rows], &targets));
        let mut prog = Program::default();
        let io = CrossEntropyFwd {
            loss: &loss,
            counted: &counted,
            losses: &losses,
            lse: &lse,
            logits: &logits_t,
            targets: &targets_t,
        };
        k.crossentropy.forward(&mut prog, io);
        let dloss = 1.0 / rows as f32;
        let dlogits = g.upload("dlogits", &[rows, v], &vec![f32::NAN; rows * v]);
        let io = CrossEntropyBwd {
            dlogits: &dlogits,
            logits: &logits_t,
            lse: &lse,
            targets: &targets_t,
            counted: &counted,
            scale: None,
            softcap: None,
        };
        k.crossentropy.backward(&mut prog, io, dloss);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&losses, &loss, &lse, &dlogits]).await.unwrap();
        let want_lse = logsumexp(&logits, v);
        let want: Vec<f32> = (0..rows)
            .map(|r| if targets[r] == IGNORE { 0.0 } else { want_lse[r] - logits[r * v + targets[r] as usize] })
            .collect();
        let counted_rows = targets.iter().filter(|&&t| t != IGNORE).count();
        let mean = want.iter().map(|&x| x as f64).sum::<f64>() / counted_rows as f64;
        let mut cpu_losses = vec![0.0; rows];
        let cpu_mean = cpu::crossentropy_forward(&mut cpu_losses, &logits, &targets, v);
        assert_close(&format!("cpu losses N{rows} V{v} vs f64"), &cpu_losses, &want, 1e-4, 1e-5);
        assert_close(&format!("crossentropy lse N{rows} V{v}"), &got[2], &want_lse, 1e-5, 1e-5);
        assert_close(&format!("crossentropy losses N{rows} V{v}"), &got[0], &want, 1e-5, 1e-5);
        assert_close(&format!("crossentropy mean N{rows} V{v}"), &got[1], &[mean as f32], 1e-5, 1e-5);
        assert_close(&format!("cpu mean N{rows} V{v}"), &[cpu_mean], &[mean as f32], 1e-4, 1e-5);
        // the backward from the GPU's own lse and count, against the CPU's from its logits (which
        // scales dloss by rows / counted and zeroes the ignored row, as the kernel)
        let mut want_d = vec![0.0; rows * v];
        cpu::crossentropy_backward(&mut want_d, &logits, &targets, dloss, v);
        assert_close(&format!("crossentropy dlogits N{rows} V{v}"), &got[3], &want_d, 1e-6 * dloss, 1e-4);
    }
}
gpu_test!(crossentropy_past_65535, crossentropy);

async fn row_top1(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(rows, v)) in [(3, VOCABS[0]), (4, VOCABS[1])].iter().enumerate() {
        let mut rng = Rng::new(2600 + i as u64);
        let mut logits = rng.vec(rows * v, -4.0, 4.0);
        // row 0: its maximum past 65535; row 1: two equal maxima, the first one wins (both on
        // different invocations' columns); row 2: the maximum at column 0
        logits[v - 2] = 9.0;
        logits[v + 70000] = 9.5;
        logits[v + 65537] = 9.5;
        logits[2 * v] = 8.0;
        let out0 = 2; // the rows land at out0.. as the lens' layers do
        let (top_id, top_p) = (g.tensor("top_id", &[rows + out0]), g.tensor("top_p", &[rows + out0]));
        let mut prog = Program::default();
        k.row_top1.forward(&mut prog, &top_id, &top_p, &g.upload("logits", &[rows, v], &logits), out0);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&top_id, &top_p]).await.unwrap();
        let want = cpu::row_top1(&logits, v);
        let ids: Vec<u32> = got[0][out0..].iter().map(|x| x.to_bits()).collect();
        assert_eq!(ids, want.iter().map(|w| w.0).collect::<Vec<_>>(), "row_top1 ids N{rows} V{v}");
        assert_eq!(&ids[..3], &[(v - 2) as u32, 65537, 0], "row_top1: the planted maxima at V{v}");
        let want_p: Vec<f32> = want.iter().map(|w| w.1).collect();
        assert_close(&format!("row_top1 p N{rows} V{v}"), &got[1][out0..], &want_p, 1e-7, 1e-5);
    }
}
gpu_test!(row_top1_past_65535, row_top1);

async fn argmax(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &v) in VOCABS.iter().enumerate() {
        let mut rng = Rng::new(2700 + i as u64);
        let mut logits = rng.vec(v, -4.0, 4.0);
        logits[v - 3] = 7.0;
        logits[65536] = 7.0; // the first of two equal maxima wins
        let (out, part) = (g.tensor("argmax", &[1]), Decode::argmax_scratch(g, v));
        let mut prog = Program::default();
        k.decode.argmax(&mut prog, &out, &part, &g.upload("logits", &[v], &logits));
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read(&out).await.unwrap()[0].to_bits();
        assert_eq!(got, cpu::row_top1(&logits, v)[0].0, "argmax V{v}");
        assert_eq!(got, 65536, "argmax V{v}: the first maximum");
        println!("argmax V{v}: {got}");
    }
}
gpu_test!(argmax_past_65535, argmax);

async fn encoder(k: Arc<Kernels>) {
    let g = &k.gpu;
    let (b, t, c, v) = (2, 5, 7, VOCABS[1]);
    let mut rng = Rng::new(2800);
    let mut ids = rng.ids(b * t, v);
    ids[0] = (v - 1) as u32;
    ids[1] = 65536;
    let (wte, wpe) = (rng.vec(v * c, -1.0, 1.0), rng.vec(t * c, -1.0, 1.0));
    let out = g.tensor("out", &[b, t, c]);
    let mut prog = Program::default();
    let (wte_t, wpe_t) = (g.upload("wte", &[v, c], &wte), g.upload("wpe", &[t, c], &wpe));
    k.encoder.forward(&mut prog, &out, &g.upload("ids", &[b, t], &ids), &wte_t, Some(&wpe_t));
    k.gpu.run(|pass| prog.encode(pass));
    let got = g.read(&out).await.unwrap();
    let mut want = vec![0.0; b * t * c];
    cpu::encoder_forward(&mut want, &ids, &wte, &wpe, b * t, t, c);
    assert_close(&format!("encoder ids past 65535 V{v}"), &got, &want, 0.0, 0.0);
}
gpu_test!(encoder_past_65535, encoder);

/// A hub model's config.json (tests/fixtures/hub_configs/), read without asking whether this
/// build runs every switch it sets.
fn hub_config(name: &str) -> wgpt::model::Gpt2Config {
    let path = format!("{}/tests/fixtures/hub_configs/{name}.json", env!("CARGO_MANIFEST_DIR"));
    wgpt::hf::read_config(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Whether this build runs `name`'s switches; prints the skip where it does not yet (SwiGLU).
fn runs_here(name: &str) -> bool {
    let path = format!("{}/tests/fixtures/hub_configs/{name}.json", env!("CARGO_MANIFEST_DIR"));
    match wgpt::hf::parse_config(&std::fs::read_to_string(path).unwrap()) {
        Ok(_) => true,
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("swiglu"), "{name}: refused for another reason than SwiGLU: {e}");
            println!("SKIP {name}: this build refuses it until the SwiGLU MLP lands ({e})");
            false
        }
    }
}

/// SmolLM2-135M's and Qwen3-0.6B's config.json forms read into their shapes; their parameter
/// counts are transformers' `num_parameters()` (134,515,008 and 596,049,920, from the same files).
#[test]
fn hub_configs_read_as_their_shapes() {
    let smol = hub_config("smollm2-135m");
    let a = smol.attn_dims();
    assert_eq!((smol.n_layer, smol.n_embd, smol.n_head, a.kv, a.hs), (30, 576, 9, 3, 64));
    assert_eq!((smol.vocab_size, smol.block_size, smol.intermediate_size()), (49152, 8192, 1536));
    assert!(smol.arch.tied && !smol.arch.qk_norm && !smol.arch.bias);
    assert_eq!((smol.arch.rope_theta, smol.arch.norm_eps), (100000.0, 1e-5));
    assert_eq!(smol.num_params(), 134_515_008);
    let qwen = hub_config("qwen3-0.6b");
    let a = qwen.attn_dims();
    assert_eq!((qwen.n_layer, qwen.n_embd, qwen.n_head, a.kv, a.hs), (28, 1024, 16, 8, 128));
    assert_eq!((qwen.vocab_size, qwen.block_size, qwen.intermediate_size()), (151936, 40960, 3072));
    assert!(qwen.arch.tied && qwen.arch.qk_norm && !qwen.arch.bias);
    assert_eq!((qwen.arch.rope_theta, qwen.arch.norm_eps), (1_000_000.0, 1e-6));
    assert_eq!(qwen.num_params(), 596_049_920);
    // the training plan's fixed part: weights, gradients and AdamW's two moments, 16 bytes a parameter
    let adamw = wgpt::train::TrainConfig::default();
    assert_eq!(wgpt::train::optimizer_bytes(&smol, &adamw), 16 * 134_515_008);
    assert_eq!(wgpt::train::optimizer_bytes(&qwen, &adamw), 16 * 596_049_920);
    for name in ["smollm2-135m", "qwen3-0.6b"] {
        if runs_here(name) {
            println!("{name}: this build runs it");
        }
    }
}

/// The KV cache is sized to the context asked for, by default block_size capped at 2048, never
/// to Qwen3's 40,960 positions; a context past the model's positions, or of 0, is refused.
#[test]
fn the_context_is_asked_for_not_max_position_embeddings() {
    use wgpt::generate::{decode_context, DecoderBytes};
    let qwen = hub_config("qwen3-0.6b");
    assert_eq!(decode_context(&qwen, None).unwrap(), 2048);
    assert_eq!(decode_context(&hub_config("smollm2-135m"), None).unwrap(), 2048);
    assert_eq!(decode_context(&wgpt::Gpt2Config::preset("gpt2").unwrap(), None).unwrap(), 1024);
    assert_eq!(decode_context(&qwen, Some(40960)).unwrap(), 40960);
    let e = decode_context(&qwen, Some(40961)).unwrap_err().to_string();
    assert!(e.contains("40961") && e.contains("at most 40960"), "{e}");
    assert!(decode_context(&qwen, Some(0)).unwrap_err().to_string().contains("at least 1"));
    // 2 (k, v) x 28 layers x 2048 positions x 8 KV heads x 128 x 4 bytes = 448 MiB; 8.75 GiB at 40960
    assert_eq!(DecoderBytes::of(&qwen, 2048, false).kv_cache, 2 * 28 * 2048 * 8 * 128 * 4);
    assert_eq!(DecoderBytes::of(&qwen, 40960, false).kv_cache, 9_395_240_960);
    assert_eq!(DecoderBytes::of(&qwen, 2048, false).weights, 4 * 596_049_920);
}

/// Qwen3-0.6B on a device of 1 GiB is refused before anything is allocated, with the numbers:
/// 2.2 GiB of weights alone; at 2.5 GiB a shorter context is offered (the longest that fits);
/// SmolLM2-135M fits 1 GiB at the default context.
#[test]
fn qwen3_is_refused_by_memory_with_the_numbers() {
    use wgpt::generate::{check_decoder_memory, DecoderBytes};
    let (qwen, smol) = (hub_config("qwen3-0.6b"), hub_config("smollm2-135m"));
    let gib = 1u64 << 30;
    let e = check_decoder_memory(&qwen, 2048, false, Some(gib)).unwrap_err().to_string();
    println!("{e}");
    for part in ["596049920 parameters", "28 layers", "vocabulary 151936", "448.0 MiB for the KV cache"] {
        assert!(e.contains(part), "the message names {part:?}: {e}");
    }
    assert!(e.contains("1024.0 MiB for buffers") && e.contains("a smaller model"), "{e}");
    let budget = gib * 5 / 2;
    let e = check_decoder_memory(&qwen, 2048, false, Some(budget)).unwrap_err().to_string();
    println!("{e}");
    let n: usize = e.split("--context ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    let total = |n| DecoderBytes::of(&qwen, n, false).total();
    assert!(total(n) <= budget && total(n + 1) > budget, "offered context {n}");
    check_decoder_memory(&qwen, 2048, false, Some(3 * gib)).unwrap();
    check_decoder_memory(&smol, 2048, false, Some(gib)).unwrap();
    check_decoder_memory(&qwen, 40960, false, None).unwrap(); // an unknown memory is not checked
}

/// Prompts are tokenized as transformers' `tokenizer(prompt)`: a tokenizer whose post-processor
/// adds a BOS (tests/fixtures/bos_tokenizer, made by make_bos_tokenizer.py) gives transformers'
/// ids, BOS first (an empty prompt is the BOS alone); corpora (`encode`) get no special tokens.
#[test]
fn prompts_get_the_post_processors_bos() {
    let dir = format!("{}/tests/fixtures/bos_tokenizer", env!("CARGO_MANIFEST_DIR"));
    let tok = wgpt::tokenizer::Tokenizer::from_file(std::path::Path::new(&format!("{dir}/tokenizer.json"))).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/expected.json")).unwrap()).unwrap();
    for case in want["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let plain: Vec<u32> = serde_json::from_value(case["plain"].clone()).unwrap();
        assert_eq!(ids[0], want["bos"].as_u64().unwrap() as u32);
        assert_eq!(tok.prompt_ids(prompt).unwrap(), ids, "prompt {prompt:?}");
        assert_eq!(tok.encode(prompt).unwrap(), plain, "corpus text {prompt:?}");
    }
}

/// `wgpt sample` with `env` set: its exit code and stderr.
#[cfg(not(target_arch = "wasm32"))]
fn sample(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"));
    cmd.arg("sample").args(args).envs(env.iter().copied());
    let out = cmd.output().expect("run wgpt");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "wgpt panicked: {stderr}");
    (out.status.code(), stderr)
}

/// `wgpt sample --context N`: past the model's positions it is refused naming both; a prompt
/// longer than the context keeps its last N tokens (said on stderr); where the device's memory
/// is known (WGPT_GPU_MEMORY) a model that does not fit is refused before its weights are read
/// (Qwen3-0.6B's config.json alone in a directory: no weights to read).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn sample_takes_a_context_and_refuses_before_loading() {
    let Some(d) = common::shared_data() else { return };
    let tiny = d.join("hf-tiny-gpt2"); // 128 positions
    let tiny = tiny.to_str().unwrap();
    let (code, e) = sample(&["--model", tiny, "--context", "129"], &[]);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("129 tokens") && e.contains("at most 128"), "{e}");
    let prompt = "the quick brown fox jumps over the lazy dog";
    let args = ["--model", tiny, "--context", "4", "--prompt", prompt, "--max-new-tokens", "2", "--temperature", "0"];
    let (code, e) = sample(&args, &[]);
    assert_eq!(code, Some(0), "{e}");
    assert!(e.contains("the context is 4 (--context); using its last 4 tokens"), "{e}");
    let (code, e) = sample(&["--model", tiny], &[("WGPT_GPU_MEMORY", "100000")]);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("for the KV cache") && e.contains("What fits: a smaller model"), "{e}");
    let dir = std::env::temp_dir().join(format!("wgpt-qwen3-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!("{}/tests/fixtures/hub_configs/qwen3-0.6b.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(config, dir.join("config.json")).unwrap();
    let (code, e) = sample(&["--model", dir.to_str().unwrap()], &[("WGPT_GPU_MEMORY", &(1u64 << 30).to_string())]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(2), "{e}");
    if e.contains("swiglu") {
        println!(
            "SKIP the Qwen3-0.6B memory refusal on the CLI: this build refuses it until the SwiGLU MLP lands ({e})"
        );
        return;
    }
    assert!(e.contains("596049920 parameters") && e.contains("448.0 MiB for the KV cache"), "{e}");
}
