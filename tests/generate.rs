//! Generation: the KV-cache decoder against full forwards over the same tokens at every step and
//! across the window slide, greedy decoding of the HF tiny GPT-2 against transformers' own, the
//! GPT-2 tokenizer's round trip, `wgpt sample` end to end, and the sampling rules on hand-made
//! distributions. The GPU decoder test also runs in headless Chromium (wasm-bindgen-test).

mod common;

use std::sync::Arc;

use common::Rng;
use wgpt::generate::{Decoder, SampleConfig};
use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2, Gpt2Config, Weights};
use wgpt::precision::Precision;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// The last position's logits of a full forward over `ids` (no cache).
async fn full_forward_last(model: &Gpt2, ids: &[u32]) -> Vec<f32> {
    let v = model.config.vocab_size;
    let f = model.forward_plan(1, ids.len()).unwrap();
    model.forward(&f, ids, None).unwrap();
    model.kernels.gpu.read_range(&f.acts.logits, (ids.len() - 1) * v, v).await.unwrap()
}

fn cpu_argmax(x: &[f32]) -> u32 {
    x.iter().enumerate().fold(0, |best, (i, &v)| if v > x[best] { i } else { best }) as u32
}

/// Prefill of a 3-token prompt, then one token at a time to 12 tokens on a block of 8: every
/// step's logits equal a full forward over the window (the last <= 8 tokens), through 4 slides;
/// the GPU argmax equals the CPU's (V = 600: three argmax chunks). Then a prefill of a full
/// block, and seeded sampling reproducible through `generate`.
async fn kv_cache(k: Arc<Kernels>) {
    let config =
        Gpt2Config { n_layer: 2, n_head: 3, n_embd: 24, block_size: 8, vocab_size: 600, arch: wgpt::model::Arch::GPT2 };
    let model = Gpt2::new(k, &Weights::random(config, 7)).unwrap();
    let mut dec = Decoder::new(&model).unwrap();
    let tokens = Rng::new(3).ids(12, config.vocab_size);
    let mut worst = 0.0f32;
    dec.prefill(&model, &tokens[..3]).unwrap();
    for n in 3..=tokens.len() {
        if n > 3 {
            dec.push(&model, tokens[n - 1]).unwrap();
        }
        let window = &tokens[n.saturating_sub(config.block_size)..n];
        assert_eq!(dec.context(), window, "decoder context after {n} tokens");
        let got = dec.logits(&model).await.unwrap();
        let want = full_forward_last(&model, window).await;
        let c = wgpt::cpu::check_close(&format!("logits after {n} tokens"), &got, &want, 1e-4, 1e-4)
            .unwrap_or_else(|m| panic!("{m}"));
        worst = worst.max(c.max_abs);
        assert_eq!(dec.argmax(&model).await.unwrap(), cpu_argmax(&got), "GPU argmax after {n} tokens");
    }
    println!("KV cache vs full forward, 3..=12 tokens on block 8: max abs err {worst:.2e}");

    dec.prefill(&model, &tokens[2..10]).unwrap();
    let want = full_forward_last(&model, &tokens[2..10]).await;
    wgpt::cpu::check_close("logits after a full-block prefill", &dec.logits(&model).await.unwrap(), &want, 1e-4, 1e-4)
        .unwrap_or_else(|m| panic!("{m}"));
    assert!(dec.prefill(&model, &tokens[..9]).is_err(), "a prefill longer than block_size is refused");
    assert!(dec.prefill(&model, &[]).is_err(), "an empty prefill is refused");
    assert!(dec.push(&model, 600).is_err(), "a token outside the vocabulary is refused");

    let cfg = SampleConfig { max_new_tokens: 20, temperature: 1.0, top_k: 0, top_p: 1.0, seed: 5 };
    let a = dec.generate(&model, &tokens[..2], &cfg, None, |_| true).await.unwrap();
    let b = dec.generate(&model, &tokens[..2], &cfg, None, |_| true).await.unwrap();
    let c = dec.generate(&model, &tokens[..2], &SampleConfig { seed: 6, ..cfg }, None, |_| true).await.unwrap();
    assert_eq!(a.len(), 20);
    assert_eq!(a, b, "the same seed gives the same tokens");
    assert_ne!(a, c, "another seed gives other tokens");
    // greedy through generate equals the argmax of full forwards, one token at a time
    let greedy = dec.generate(&model, &tokens[..2], &SampleConfig::greedy(10), None, |_| true).await.unwrap();
    let mut ctx = tokens[..2].to_vec();
    for &g in &greedy {
        let logits = full_forward_last(&model, &ctx[ctx.len().saturating_sub(8)..]).await;
        assert_eq!(g, cpu_argmax(&logits), "greedy token after {ctx:?}");
        ctx.push(g);
    }
    // cancel from the callback after 3 tokens
    let mut seen = 0;
    let out = dec
        .generate(&model, &tokens[..2], &cfg, None, |_| {
            seen += 1;
            seen < 3
        })
        .await
        .unwrap();
    assert_eq!(out.len(), 3, "on_token returning false stops generation");
}
gpu_test!(kv_cache_matches_full_forward, kv_cache);

/// `--precision f16` where the adapter has shader-f16, else f32 with a note saying why. Headless
/// Chromium's SwiftShader (the browser tests) has none, so there the fallback must run and its
/// logits equal the f32 decoder's bit for bit; with shader-f16 (lavapipe) the f16 logits are
/// close to f32's and not equal (tests/precision.rs checks them against HF).
async fn f16_or_fallback(k: Arc<Kernels>) {
    let config =
        Gpt2Config { n_layer: 2, n_head: 2, n_embd: 32, block_size: 8, vocab_size: 64, arch: wgpt::model::Arch::GPT2 };
    let model = Gpt2::new(k.clone(), &Weights::random(config, 11)).unwrap();
    let tokens = Rng::new(4).ids(5, config.vocab_size);
    let mut runs = vec![];
    for precision in [Precision::F32, Precision::F16] {
        let mut dec = Decoder::with_precision(&model, precision).unwrap();
        dec.prefill(&model, &tokens[..3]).unwrap();
        dec.push(&model, tokens[3]).unwrap();
        runs.push((dec.precision().clone(), dec.logits(&model).await.unwrap()));
    }
    let ((_, want), (r, got)) = (&runs[0], &runs[1]);
    if cfg!(target_arch = "wasm32") {
        assert!(!k.gpu.shader_f16(), "the browser tests run on SwiftShader, which has no shader-f16");
    }
    if k.gpu.shader_f16() {
        assert_eq!((r.runs, &r.note), (Precision::F16, &None), "f16 runs where the adapter has shader-f16");
        let c = wgpt::cpu::check_close("f16 logits vs f32", got, want, 1e-3, 1e-2).unwrap_or_else(|m| panic!("{m}"));
        assert!(c.max_abs > 0.0, "f16 logits equal f32's: f16 did not run");
        println!("f16 on {}: logits within {:.2e} of f32's", k.gpu.describe(), c.max_abs);
    } else {
        assert_eq!(r.runs, Precision::F32, "f16 without shader-f16 falls back to f32");
        let note = r.note.as_deref().unwrap_or_default();
        assert!(note.contains("no shader-f16") && note.contains("f32"), "the fallback says why: {note:?}");
        assert!(got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "the fallback is f32 exactly");
        println!("no shader-f16 on {}: f16 fell back to f32 ({note})", k.gpu.describe());
    }
}
gpu_test!(f16_runs_or_falls_back_with_a_note, f16_or_fallback);

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::*;
    use wgpt::generate::sample;

    /// Distribution of `n` draws with one RNG.
    fn draws(logits: &[f32], cfg: &SampleConfig, n: usize) -> Vec<usize> {
        let mut rng = wgpt::rng::Rng::new(cfg.seed);
        let mut counts = vec![0; logits.len()];
        for _ in 0..n {
            counts[sample(logits, cfg, &mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn sampling_rules() {
        // probabilities 0.5, 0.3, 0.15, 0.05 in a shuffled order
        let probs = [0.15f32, 0.5, 0.05, 0.3];
        let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        let base = SampleConfig { max_new_tokens: 1, temperature: 1.0, top_k: 0, top_p: 1.0, seed: 9 };
        let n = 20000;
        // plain sampling follows the distribution
        let counts = draws(&logits, &base, n);
        for (i, &p) in probs.iter().enumerate() {
            let f = counts[i] as f32 / n as f32;
            assert!((f - p).abs() < 0.015, "token {i}: frequency {f}, probability {p}");
        }
        // top-p 0.75: 0.5 alone is short of it, 0.5 + 0.3 reaches it -> tokens 1 and 3 only, 5:3
        let counts = draws(&logits, &SampleConfig { top_p: 0.75, ..base }, n);
        assert_eq!((counts[0], counts[2]), (0, 0), "top-p 0.75 keeps only the two most likely: {counts:?}");
        let f = counts[1] as f32 / n as f32;
        assert!((f - 0.625).abs() < 0.015, "top-p renormalises: frequency of the best {f}, want 0.625");
        // top-p 0.9 adds the third (0.95 >= 0.9), never the fourth
        let counts = draws(&logits, &SampleConfig { top_p: 0.9, ..base }, n);
        assert!(counts[0] > 0 && counts[2] == 0, "top-p 0.9 keeps three tokens: {counts:?}");
        // top-k 2: the two most likely
        let counts = draws(&logits, &SampleConfig { top_k: 2, ..base }, n);
        assert_eq!((counts[0], counts[2]), (0, 0), "top-k 2: {counts:?}");
        // top-k 1 and temperature 0 are greedy, whatever the seed
        for seed in 0..20 {
            let mut rng = wgpt::rng::Rng::new(seed);
            assert_eq!(sample(&logits, &SampleConfig { top_k: 1, seed, ..base }, &mut rng), 1);
            assert_eq!(sample(&logits, &SampleConfig { temperature: 0.0, seed, ..base }, &mut rng), 1);
            assert_eq!(sample(&logits, &SampleConfig { temperature: -1.0, seed, ..base }, &mut rng), 1);
        }
        // a low temperature sharpens: 0.25 gives the best token p^4 / sum p^4 ~ 0.87
        let counts = draws(&logits, &SampleConfig { temperature: 0.25, ..base }, n);
        let want = 0.5f32.powi(4) / probs.iter().map(|p| p.powi(4)).sum::<f32>();
        let f = counts[1] as f32 / n as f32;
        assert!((f - want).abs() < 0.015, "temperature 0.25: frequency {f}, want {want}");
        // the same seed draws the same sequence
        assert_eq!(draws(&logits, &base, 100), draws(&logits, &base, 100));
        // bad settings are refused
        for bad in [SampleConfig { top_p: 0.0, ..base }, SampleConfig { top_p: 1.5, ..base }] {
            assert!(bad.validate().is_err(), "top_p {} is refused", bad.top_p);
        }
        assert!(SampleConfig { temperature: f32::NAN, ..base }.validate().is_err());
    }

    fn expected(dir: &std::path::Path) -> (String, Vec<u32>, Vec<u32>) {
        let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let prompt = meta.metadata().as_ref().unwrap()["prompt"].clone();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        (prompt, common::i32_tensor(&st, "ids"), common::i32_tensor(&st, "greedy"))
    }

    /// transformers' greedy `generate` of 20 tokens on the tiny HF GPT-2 (official layout, real
    /// GPT-2 tokenizer), token for token.
    #[test]
    fn hf_tiny_gpt2_greedy() {
        let Some(d) = common::shared_data() else {
            return;
        };
        let dir = d.join("hf-tiny-gpt2");
        let (prompt, want_ids, want_greedy) = expected(&dir);
        let (weights, tokenizer) = wgpt::hf::dir::load(&dir).unwrap();
        let ids = tokenizer.unwrap().encode(&prompt).unwrap();
        assert_eq!(ids, want_ids, "tokenizer ids differ from HF's");
        let Some(k) = common::shared_kernels() else {
            return;
        };
        let model = Gpt2::new(k, &weights).unwrap();
        let mut dec = Decoder::new(&model).unwrap();
        let mut streamed = vec![];
        let out = pollster::block_on(dec.generate(&model, &ids, &SampleConfig::greedy(20), None, |id| {
            streamed.push(id);
            true
        }))
        .unwrap();
        assert_eq!(out, want_greedy, "greedy tokens differ from transformers' generate");
        assert_eq!(streamed, out, "every token is streamed");
        println!("hf-tiny-gpt2: 20 greedy tokens equal transformers' {want_greedy:?}");
    }

    /// GPT-2's wte (154 MB) exceeds the 128 MiB storage binding of lavapipe and of WebGPU's
    /// defaults, so inference binds it in row chunks. Here the tiny HF GPT-2's wte (50257 x 32,
    /// 6.4 MB) on a device capped at 4 MiB bindings: 2 chunks (as GPT-2's at 128 MiB) for the
    /// embedding gather and the lm_head, and the logits and greedy tokens still equal
    /// transformers'; training takes it too (tests/train_chunked.rs checks its numbers).
    #[test]
    fn wte_in_row_chunks() {
        let Some(d) = common::shared_data() else {
            return;
        };
        if common::shared_kernels().is_none() {
            return;
        }
        let dir = d.join("hf-tiny-gpt2");
        let (prompt, ids, want_greedy) = expected(&dir);
        let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let want_logits = wgpt::hf::to_f32("logits", &st.tensor("logits").unwrap()).unwrap();
        let (weights, _) = wgpt::hf::dir::load(&dir).unwrap();
        let mut gpu = pollster::block_on(wgpt::Gpu::new(common::options().device)).unwrap();
        gpu.cap_binding(4 << 20);
        let k = Arc::new(Kernels::with_family(&gpu, common::options().family).unwrap());
        let model = Gpt2::new(k, &weights).unwrap();
        let chunks = gpu.row_chunks(&model.params.wte);
        assert_eq!(chunks.len(), 2, "50257 rows of 128 bytes in 4 MiB chunks");
        let f = model.forward_plan(1, ids.len()).unwrap();
        model.forward(&f, &ids, None).unwrap();
        let logits = pollster::block_on(gpu.read(&f.acts.logits)).unwrap();
        let c = wgpt::cpu::check_close("chunked-wte logits", &logits, &want_logits, 1e-4, 1e-4)
            .unwrap_or_else(|m| panic!("{m}"));
        let mut dec = Decoder::new(&model).unwrap();
        let out = pollster::block_on(dec.generate(&model, &ids, &SampleConfig::greedy(20), None, |_| true)).unwrap();
        assert_eq!(out, want_greedy, "greedy tokens with wte in chunks ({prompt:?})");
        // tokens from both chunks through the full forward, against the unchunked model
        let mixed = [50224, 3, 42770, 32767, 32768, 50256];
        let whole = Gpt2::new(common::shared_kernels().unwrap(), &weights).unwrap();
        let logits_of = |m: &Gpt2| {
            let f = m.forward_plan(1, mixed.len()).unwrap();
            m.forward(&f, &mixed, None).unwrap();
            pollster::block_on(m.kernels.gpu.read(&f.acts.logits)).unwrap()
        };
        wgpt::cpu::check_close("chunked vs whole wte", &logits_of(&model), &logits_of(&whole), 1e-6, 1e-6)
            .unwrap_or_else(|m| panic!("{m}"));
        let train = wgpt::train::TrainConfig {
            batch_size: 1,
            seq_len: 8,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 1,
            lr_decay_iters: 2,
            ..wgpt::train::TrainConfig::default()
        };
        wgpt::train::Trainer::new(model, train).expect("training binds wte in row chunks too");
        println!(
            "wte in {} chunks: logits max abs err {:.2e}, greedy equal; a trainer builds",
            chunks.len(),
            c.max_abs
        );
    }

    /// decode(encode(text)) == text with GPT-2's tokenizer on Shakespeare and on unicode.
    #[test]
    fn gpt2_tokenizer_round_trip() {
        let Some(d) = common::shared_data() else {
            return;
        };
        let tok = wgpt::tokenizer::Tokenizer::from_file(&d.join("gpt2/tokenizer.json")).unwrap();
        let shakespeare = std::fs::read_to_string(d.join("tinyshakespeare.txt")).unwrap();
        let head: String = shakespeare.chars().take(50_000).collect();
        let unicode = "naïve café, Ærøskøbing, 東京 and 北京, Ελληνικά, русский, עברית, 🙂🚀👩‍👩‍👧 \
                       zero\u{200b}width, tabs\tand\r\nCRLF, <|endoftext|> mid-text, trailing  ";
        for (what, text) in [("shakespeare", head.as_str()), ("unicode", unicode)] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text, "{what}: decode(encode(text)) differs");
            println!("{what}: {} chars -> {} tokens -> the same text", text.chars().count(), ids.len());
        }
    }

    /// `wgpt sample` greedy on the tiny HF GPT-2 prints the prompt and transformers' 20 tokens;
    /// a bad --top-p is refused with a message and exit code 2.
    #[test]
    fn sample_cli() {
        let Some(d) = common::shared_data() else {
            return;
        };
        if common::shared_kernels().is_none() {
            return;
        }
        let dir = d.join("hf-tiny-gpt2");
        let (prompt, _, want_greedy) = expected(&dir);
        let tok = wgpt::tokenizer::Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(["sample", "--temperature", "0", "--max-new-tokens", "20", "--model"])
            .arg(&dir)
            .args(["--prompt", &prompt])
            .output()
            .expect("run wgpt");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "wgpt sample failed: {stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let want = format!("{prompt}{}\n", tok.decode(&want_greedy).unwrap());
        assert_eq!(stdout, want, "stdout is the prompt and the greedy continuation");
        assert!(stderr.contains("20 tokens in"), "tokens/s on stderr: {stderr}");

        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(["sample", "--top-p", "1.5", "--model"])
            .arg(&dir)
            .output()
            .expect("run wgpt");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "a bad --top-p exits with 2: {stderr}");
        assert!(stderr.contains("top_p must be in (0, 1]"), "the message names top_p: {stderr}");
    }
}
