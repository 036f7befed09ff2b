//! `wgpt bench --workload decode`: KV-cache prefill and decode of random weights, greedy (GPU
//! argmax) and sampled, cached against uncached, with f16 weights beside f32 where they run.

use std::time::Instant;

use wgpt::generate::{decode_context, sample, Decoder, DecoderBytes, SampleConfig};
use wgpt::model::Gpt2;
use wgpt::precision::Precision;
use wgpt::rng::Rng;
use wgpt::{Error, Result};

use super::{submit_line, tokens_row, BenchArgs};

/// Milliseconds per call of `f` over `n` calls.
fn time_ms(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / n.max(1) as f64)
}

/// Milliseconds of a prefill of `prompt`, up to its argmax.
fn prefill_ms(dec: &mut Decoder, model: &Gpt2, prompt: &[u32]) -> Result<f64> {
    time_ms(1, || {
        dec.prefill(model, prompt)?;
        pollster::block_on(dec.argmax(model)).map(|_| ())
    })
}

/// Milliseconds per greedy token after `prompt`: push the token, then pick the next from its
/// logits (GPU argmax, 4-byte readback), so each timed step ends with its own result.
fn greedy_ms(dec: &mut Decoder, model: &Gpt2, prompt: &[u32], n: usize) -> Result<f64> {
    dec.prefill(model, prompt)?;
    let mut next = pollster::block_on(dec.argmax(model))?; // the prefill is not part of the timing
    time_ms(n, || {
        dec.push(model, next)?;
        next = pollster::block_on(dec.argmax(model))?;
        Ok(())
    })
}

/// The prefill and greedy decode rows in f16 beside f32's, the two alternating (f32, f16, f32,
/// f16: a busy machine slows both alike; each row the faster of its two runs), and the ratio.
fn decode_f16(model: &Gpt2, preset: &str, args: &BenchArgs, ids: &[u32], dec: &mut Decoder) -> Result<()> {
    let (p, short, n) = (args.prompt_len, args.short_prompt, args.iters.max(1));
    let mut dec16 = Decoder::with_precision(model, Precision::F16)?;
    greedy_ms(&mut dec16, model, &ids[..short], 1)?; // warm-up: the f16 pipelines
    let (mut pre, mut step) = ([f64::INFINITY; 2], [f64::INFINITY; 2]);
    for _ in 0..2 {
        for (i, d) in [&mut *dec, &mut dec16].into_iter().enumerate() {
            pre[i] = pre[i].min(prefill_ms(d, model, &ids[..p])?);
            step[i] = step[i].min(greedy_ms(d, model, &ids[..short], n)?);
        }
    }
    let shape = format!("prompt {short}, {n} new");
    for (i, tag) in ["f32", "f16"].into_iter().enumerate() {
        tokens_row(&format!("prefill {preset} {tag}"), &format!("prompt {p} tokens"), pre[i], p as f64 / pre[i] * 1e3);
        tokens_row(&format!("decode {preset} {tag} (KV cache)"), &shape, step[i], 1e3 / step[i]);
    }
    println!(
        "  f16 weights: decode {:.2}x and prefill {:.2}x f32's speed (alternating runs, best of 2 each)",
        step[0] / step[1],
        pre[0] / pre[1]
    );
    Ok(())
}

/// Prefill and decode rows for `model` (see [`super::Workload::Decode`]), after the memory the
/// decoder holds at its default context (the plan a front end checks before loading).
pub(super) fn decode(model: &Gpt2, preset: &str, args: &BenchArgs, f16: bool) -> Result<()> {
    let (v, block) = (model.config.vocab_size, model.config.block_size);
    let n = args.iters.max(1);
    for (what, len) in
        [("--prompt-len", args.prompt_len), ("--short-prompt", args.short_prompt), ("--context", args.context)]
    {
        if len == 0 || len + n > block {
            return Err(Error::Input(format!(
                "{what} {len} plus {n} decode steps must fit the context of {block} tokens (and be at least 1)"
            )));
        }
    }
    let ids: Vec<u32> = (0..block).map(|i| ((i * 7919 + 13) % v) as u32).collect();
    let context = decode_context(&model.config, None)?;
    let plan = DecoderBytes::of(&model.config, context, false);
    let mib = |bytes: u64| bytes as f64 / (1u64 << 20) as f64;
    println!(
        "  memory plan of decoding {preset} ({} parameters, context {context}, f32): {:.1} MiB = weights {:.1} + KV \
         cache {:.1} + prefill scores {:.1}",
        model.config.num_params(),
        mib(plan.total()),
        mib(plan.weights),
        mib(plan.kv_cache),
        mib(plan.scores)
    );
    let mut dec = Decoder::new(model)?;
    let sync = |dec: &mut Decoder| pollster::block_on(dec.argmax(model)).map(|_| ());

    // warm-up (first use of each pipeline and the one-token step)
    dec.prefill(model, &ids[..args.short_prompt])?;
    dec.push(model, ids[args.short_prompt])?;
    sync(&mut dec)?;

    let p = args.prompt_len;
    let ms = prefill_ms(&mut dec, model, &ids[..p])?;
    tokens_row(&format!("prefill {preset}"), &format!("prompt {p} tokens"), ms, p as f64 / ms * 1e3);
    // the timed prefill was this length's first, measured one; the next follows its plan
    dec.prefill(model, &ids[..p])?;
    sync(&mut dec)?;
    submit_line(&format!("prefill {preset}"), &[dec.submits()], model.submit_budget_ms);

    // greedy generation after a short prompt
    let ms = greedy_ms(&mut dec, model, &ids[..args.short_prompt], n)?;
    let shape = format!("prompt {}, {n} new", args.short_prompt);
    tokens_row(&format!("decode {preset} (KV cache)"), &shape, ms, 1e3 / ms);
    if f16 {
        decode_f16(model, preset, args, &ids, &mut dec)?;
    }

    // the same, sampling (temperature 1, top-k 40) on the CPU from the V logits read back
    dec.prefill(model, &ids[..args.short_prompt])?;
    let cfg = SampleConfig { max_new_tokens: n, temperature: 1.0, top_k: 40, top_p: 1.0, seed: 1 };
    let mut rng = Rng::new(1);
    let mut next = sample(&pollster::block_on(dec.logits(model))?, &cfg, &mut rng);
    let ms = time_ms(n, || {
        dec.push(model, next)?;
        next = sample(&pollster::block_on(dec.logits(model))?, &cfg, &mut rng);
        Ok(())
    })?;
    tokens_row(&format!("decode {preset} (KV, top-k 40)"), &shape, ms, 1e3 / ms);

    // one more token at a context of `c`: with the cache, vs a full forward over c + 1 tokens
    let c = args.context;
    dec.prefill(model, &ids[..c])?;
    sync(&mut dec)?;
    let mut at = c;
    let cached = time_ms(n, || {
        dec.push(model, ids[at])?;
        at += 1;
        sync(&mut dec)
    })?;
    tokens_row(&format!("decode {preset} (KV cache)"), &format!("context {c}"), cached, 1e3 / cached);
    let f = model.forward_plan(1, c + 1)?;
    let gpu = &model.kernels.gpu;
    let uncached = time_ms(1, || {
        model.forward(&f, &ids[..c + 1], None)?;
        pollster::block_on(gpu.read_range(&f.acts.logits, c * v, v)).map(|_| ())
    })?;
    tokens_row(&format!("decode {preset} (no cache)"), &format!("context {c}"), uncached, 1e3 / uncached);
    Ok(())
}
