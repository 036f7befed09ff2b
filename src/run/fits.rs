//! Whether a training run fits the device, checked before anything is allocated with the same
//! checks [`crate::Gpt2::new`] and [`crate::Gpt2::forward_plan`] make, and what fits instead when
//! it does not: the page's plan and `wgpt train` say the same. Past the limits, a device may still
//! run out of memory while the buffers are made: [`allocate`] builds inside WebGPU's error scopes
//! and says what fits then too.

use crate::gpu::OutOfMemory;
use crate::kernels::AttentionKind;
use crate::model::Gpt2Config;
use crate::model::LoraConfig;
use crate::train::{optimizer_bytes, training_bytes_of, TrainConfig};
use crate::weights16::MatmulWeights;
use crate::{Error, Gpu, Result};

/// What is being built, for the message when it does not fit the device's memory.
#[derive(Debug, Clone, Copy)]
pub enum Building<'a> {
    /// A model to generate from (an import).
    Model(&'a Gpt2Config),
    /// A training run of `model` at batch `b` and context `t` with attention of `kind`; `f16`:
    /// its precision resolves to f16 here, so it holds f16 copies of the products' weights too;
    /// `lora`: it trains these adapters only (the base frozen).
    Run { model: &'a Gpt2Config, b: usize, t: usize, kind: AttentionKind, f16: bool, lora: Option<LoraConfig> },
}

/// Runs `build` (which makes a model or a run on `gpu`) inside an allocation scope. Where the
/// device runs out of memory, what it built is dropped (what the caller had stays) and the
/// error says what was asked for and what fits.
pub async fn allocate<T>(gpu: &Gpu, what: Building<'_>, build: impl FnOnce() -> Result<T>) -> Result<T> {
    let scope = gpu.alloc_scope();
    let built = build();
    match scope.end().await? {
        None => built,
        Some(oom) => {
            drop(built);
            gpu.queue.submit([]); // the browser frees destroyed buffers once the queue moves
            Err(out_of_memory(what, &oom))
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The message for a run or model that ran the device out of memory: what it asked for, what
/// was in use, and the largest batch and context that fit where the device's memory is known
/// (else what halving them needs).
fn out_of_memory(what: Building<'_>, oom: &OutOfMemory) -> Error {
    let held = if oom.in_use >= 256 << 10 {
        format!(" with {} already held by the model in use, which stays", mib(oom.in_use))
    } else {
        String::new()
    };
    let known = match oom.budget {
        Some(b) => format!("this GPU has {} for buffers", mib(b)),
        None => "this GPU does not say how much memory it has".to_string(),
    };
    let room = oom.budget.map(|b| b.saturating_sub(oom.in_use));
    let (thing, offers) = match what {
        Building::Model(_) => ("this model".to_string(), vec![]),
        Building::Run { model, b, t, kind, f16, lora } => {
            let train = TrainConfig { lora, ..TrainConfig::default() };
            // a checkpoint reads AdamW's moments back through a staging buffer of their size
            let readback = readback_bytes(model, lora);
            let need = |b, t| training_bytes_of(model, &train, b, t, kind, f16) + readback;
            let fixed = optimizer_bytes(model, &train); // weights, gradients, AdamW's m and v
            let copies = if f16 {
                format!(", {} for the f16 weight copies of mixed precision", mib(MatmulWeights::f16_bytes(model)))
            } else {
                String::new()
            };
            let kept = match lora {
                Some(_) => "the frozen weights, the adapters, their gradients",
                None => "the weights, gradients",
            };
            let thing = format!(
                "this run (about {}: {} for {kept} and AdamW moments{copies}, {} to read a checkpoint back, the \
                 rest activations at batch {b}, context {t})",
                mib(need(b, t)),
                mib(fixed),
                mib(readback)
            );
            let offers = match room {
                Some(room) => {
                    let mut offers = vec![];
                    let in_f32 = training_bytes_of(model, &train, b, t, kind, false) + readback;
                    if f16 && in_f32 <= room {
                        offers.push(format!(
                            "precision f32 at batch {b}, context {t} (about {}, without the f16 copies)",
                            mib(in_f32)
                        ));
                    }
                    if let Some(b2) = largest_below(b, |b2| need(b2, t) <= room) {
                        offers.push(format!(
                            "batch size {b2} with gradient accumulation {} ({} sequences per step, about {})",
                            b.div_ceil(b2),
                            b2 * b.div_ceil(b2),
                            mib(need(b2, t))
                        ));
                    }
                    if let Some(t2) = largest_below(t, |t2| need(b, t2) <= room) {
                        offers
                            .push(format!("a context (block size) of {t2} at batch {b} (about {})", mib(need(b, t2))));
                    }
                    offers.extend(lora_offer(what, room));
                    offers
                }
                None if b > 1 || t > 1 => vec![format!(
                    "perhaps batch size {} with gradient accumulation 2 (about {}), or a context of {} (about {})",
                    b.div_ceil(2),
                    mib(need(b.div_ceil(2), t)),
                    t.div_ceil(2),
                    mib(need(b, t.div_ceil(2)))
                )],
                None => vec![],
            };
            (thing, offers)
        }
    };
    let what_fits =
        if offers.is_empty() { "a smaller model (fewer layers or dims)".to_string() } else { offers.join("; or ") };
    Error::Limits(format!(
        "the GPU ran out of memory for {thing}: it asked for {}{held}, and {known}. What fits: {what_fits}",
        mib(oom.requested)
    ))
}

/// The staging buffer a checkpoint reads the optimizer's moments back through: two of the
/// parameters' size, or of the adapters' in a LoRA run.
fn readback_bytes(model: &Gpt2Config, lora: Option<LoraConfig>) -> u64 {
    2 * lora.map_or(4 * model.num_params() as u64, |lc| lc.bytes(model))
}

/// Where a full run does not fit `room` but LoRA at rank 8 (or the model's smaller side) would,
/// the offer of it (fine-tuning a pretrained model only, and its base frozen).
fn lora_offer(run: Building, room: u64) -> Option<String> {
    let Building::Run { model, b, t, kind, f16, lora: None } = run else { return None };
    let lc = LoraConfig::for_model(model, 8.min(model.n_embd), 0);
    lc.validate(model).ok()?;
    let train = TrainConfig { lora: Some(lc), ..TrainConfig::default() };
    let need = training_bytes_of(model, &train, b, t, kind, f16) + readback_bytes(model, Some(lc));
    (need <= room).then(|| {
        format!(
            "when fine-tuning a pretrained model (--init), LoRA adapters of rank {} with the base frozen (--lora {}: \
             about {})",
            lc.rank,
            lc.rank,
            mib(need)
        )
    })
}

/// Checks training `model` at batch `b` and context `t` with attention of `kind` against `gpu`'s
/// limits; past them the
/// error also says what fits: the largest batch (with the gradient accumulation that keeps the
/// sequences per step) and the longest context at this batch.
pub fn check_fits(gpu: &Gpu, model: &Gpt2Config, b: usize, t: usize, kind: AttentionKind) -> Result<()> {
    let fits = |b: usize, t: usize| model.check_params(gpu).and_then(|_| model.check_activations(gpu, b, t, kind));
    let Err(e) = fits(b, t) else { return Ok(()) };
    let batch = largest_below(b, |b2| fits(b2, t).is_ok());
    let context = largest_below(t, |t2| fits(b, t2).is_ok());
    let mut offers = vec![];
    if let Some(b2) = batch {
        offers.push(format!(
            "batch size {b2} with gradient accumulation {} ({} sequences per step)",
            b.div_ceil(b2),
            b2 * b.div_ceil(b2)
        ));
    }
    if let Some(t2) = context {
        offers.push(format!("a context (block size) of {t2} at batch {b}"));
    }
    if offers.is_empty() {
        return Err(e);
    }
    let why = match e {
        Error::Limits(m) => m,
        other => other.to_string(),
    };
    Err(Error::Limits(format!("{}. What fits this GPU: {}", why.trim_end_matches('.'), offers.join("; or "))))
}

/// The largest n in 1..limit with `ok(n)`, for an `ok` that holds up to some point and not past
/// it (memory grows with n); None when not even 1 is ok.
fn largest_below(limit: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let (mut lo, mut hi) = (0, limit); // ok(lo) or lo == 0; not ok(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo > 0).then_some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An f16 run counts its f16 weight copies (2 bytes per element of every Conv1D weight and
    /// wte): on a device with room for the f32 run but not for the copies, it does not fit, and
    /// the message says so and offers f32, or a batch whose f16 run fits; in f32 the same
    /// room would do.
    #[test]
    fn the_f16_copies_count_where_memory_runs_out() {
        let model = Gpt2Config::preset("baby").unwrap();
        let (b, t, kind) = (12, 64, AttentionKind::Flash);
        let readback = 8 * model.num_params() as u64;
        let need = |b, f16| crate::train::training_bytes(&model, b, t, kind, f16) + readback;
        let copies = MatmulWeights::f16_bytes(&model);
        assert_eq!(need(b, true) - need(b, false), copies);
        let budget = need(b, false) + copies / 2;
        let oom = OutOfMemory { in_use: 0, requested: need(b, true), budget: Some(budget) };
        let run = |f16| out_of_memory(Building::Run { model: &model, b, t, kind, f16, lora: None }, &oom).to_string();
        let message = run(true);
        println!("{message}");
        assert!(message.contains(&format!("{} for the f16 weight copies", mib(copies))), "{message}");
        assert!(message.contains("What fits: precision f32 at batch 12, context 64"), "{message}");
        let batch: usize =
            message.split("; or batch size ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(need(batch, true) <= budget && need(batch + 1, true) > budget, "offered batch {batch}");
        // in f32 the same budget holds batch 12, and an f32 run's message says nothing of f16
        assert!(need(b, false) <= budget);
        let message = run(false);
        assert!(!message.contains("f16") && !message.contains("precision f32"), "{message}");
    }

    /// A full fine-tune of GPT-2 124M at batch 1 that the device cannot hold, where LoRA at rank 8
    /// fits: the message offers it, with its memory; a LoRA run's message counts its adapters'
    /// state, not the base's.
    #[test]
    fn a_full_fine_tune_that_does_not_fit_is_offered_lora() {
        let model = Gpt2Config::preset("gpt2").unwrap();
        let (b, t, kind) = (1, 128, AttentionKind::Flash);
        let lc = LoraConfig::new(8, 0);
        let lora_train = TrainConfig { lora: Some(lc), ..TrainConfig::default() };
        let lora_need = training_bytes_of(&model, &lora_train, b, t, kind, false) + readback_bytes(&model, Some(lc));
        let full_need =
            training_bytes_of(&model, &TrainConfig::default(), b, t, kind, false) + readback_bytes(&model, None);
        println!("GPT-2 124M at B 1, T 128: full fine-tune {}, LoRA r 8 {}", mib(full_need), mib(lora_need));
        assert!(2 * lora_need < full_need, "LoRA holds under half a full fine-tune's memory");
        let oom = OutOfMemory { in_use: 0, requested: full_need, budget: Some(lora_need + (1 << 20)) };
        let full = Building::Run { model: &model, b, t, kind, f16: false, lora: None };
        let message = out_of_memory(full, &oom).to_string();
        println!("{message}");
        assert!(message.contains(&format!("(--lora 8: about {})", mib(lora_need))), "{message}");
        let lora = Building::Run { model: &model, b, t, kind, f16: false, lora: Some(lc) };
        let message = out_of_memory(lora, &oom).to_string();
        assert!(!message.contains("--lora") && message.contains("the adapters, their gradients"), "{message}");
    }

    #[test]
    fn largest_below_finds_the_edge() {
        assert_eq!(largest_below(100, |n| n <= 37), Some(37));
        assert_eq!(largest_below(100, |_| false), None);
        assert_eq!(largest_below(1, |_| true), None, "1 itself is the limit, known not to fit");
    }
}
