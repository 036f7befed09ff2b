//! What the page's views of a model need from the engine: the parameter table (and what
//! throughput means for the model), look inside (the prompt's tokens, the logit lens, every
//! head's attention in one layer, the next-token distribution under sampling's settings) and the
//! training dynamics for the chart. A look is one forward pass ([`Lens`]); its logits stay, so the
//! sampling bars follow the controls without another.

use std::collections::HashMap;

use crate::dynamics::Dynamics;
use crate::flops::{flops_per_token, peak_flops};
use crate::generate::sampling_distribution;
use crate::lens::{top_k, Lens};
use crate::model::{ArchChoice, Gpt2Config, HfClass};
use crate::params::{param_table, total};
use crate::run::format::{Metrics, Record};
use crate::tokenizer::Tokenizer;
use crate::web::held::{Current, Held};
use crate::web::host::Host;
use crate::web::protocol::{Bar, DynamicsPoint, Event, Guess, LensRow, Request, Sampler, SamplingView};
use crate::{Error, Result};

/// The lens' tokens per layer at the last position.
pub const LENS_TOP: usize = 5;
/// The next-token bars.
pub const BARS: usize = 10;
/// The most tokens a look shows (the prompt's last ones): the lens grid and every head's T x T
/// attention stay small enough to draw and to post.
pub const WINDOW: usize = 128;

/// A model's look inside: the lens (its forward plan kept for the prompt's length) and the last
/// look's next-token logits.
#[derive(Default)]
struct Looker {
    lens: Lens,
    seen: Option<Seen>,
}

/// What the last look showed.
struct Seen {
    step: u64,
    prompt: String,
    logits: Vec<f32>,
}

/// The `params` event of a model trained on sequences of `t` tokens on the adapter `adapter`.
pub(crate) fn params_event(cfg: &Gpt2Config, t: usize, adapter: &str) -> Event {
    let rows = param_table(cfg);
    Event::Params {
        total: total(&rows),
        rows,
        flops_per_token: flops_per_token(cfg, t),
        peak_flops: peak_flops(adapter),
        arch: ArchChoice::of(&cfg.arch),
        export_class: HfClass::of(cfg).class_name().into(),
    }
}

/// The `dynamics` event of a tracked step.
pub(crate) fn dynamics_event(d: Dynamics) -> Event {
    Event::Dynamics { point: DynamicsPoint::from(&d), tensors: d.tensors }
}

/// The dynamics chart's points of a run's metrics so far.
pub(crate) fn dynamics_history(m: &Metrics) -> Vec<DynamicsPoint> {
    m.records()
        .iter()
        .filter_map(|r| match r {
            Record::Progress { dynamics: Some(d), .. } => Some(DynamicsPoint::from(d)),
            _ => None,
        })
        .collect()
}

/// Token texts, each id decoded once.
struct Texts<'a> {
    tokenizer: &'a Tokenizer,
    known: HashMap<u32, String>,
}

impl Texts<'_> {
    fn of(&mut self, id: u32) -> Result<String> {
        if let Some(t) = self.known.get(&id) {
            return Ok(t.clone());
        }
        let t = self.tokenizer.decode(&[id])?;
        self.known.insert(id, t.clone());
        Ok(t)
    }

    fn guesses(&mut self, g: &[(u32, f32)]) -> Result<Vec<Guess>> {
        g.iter().map(|&(id, p)| Ok(Guess { id, text: self.of(id)?, p })).collect()
    }
}

/// The next-token bars of `logits` under `s`: the [`BARS`] most likely tokens, before and after.
fn sampling_view(logits: &[f32], s: Sampler, texts: &mut Texts) -> Result<SamplingView> {
    let d = sampling_distribution(logits, &s.config())?;
    let candidate = |id: u32| d.candidates.contains(&id);
    let bars = top_k(logits, BARS)
        .into_iter()
        .map(|(id, _)| {
            let (before, after) = (d.before[id as usize], d.after[id as usize]);
            Ok(Bar { id, text: texts.of(id)?, before, after, candidate: candidate(id) })
        })
        .collect::<Result<_>>()?;
    let mass = d.candidates.iter().map(|&i| d.before[i as usize] as f64).sum::<f64>() as f32;
    Ok(SamplingView { settings: s, bars, candidates: d.candidates.len(), mass })
}

/// What the page should know about how `prompt` became `ids`, shown beside the look.
fn notes(prompt: &str, ids: &[u32], window: usize, trained: bool, tokenizer: &Tokenizer) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    if prompt.is_empty() {
        notes.push(if trained {
            "the prompt is empty: this starts from the first token of the validation text".to_string()
        } else {
            "the prompt is empty: this starts from <|endoftext|>".to_string()
        });
    } else if tokenizer.decode(ids)? != prompt {
        let mut lacking: Vec<char> =
            prompt.chars().filter(|c| tokenizer.encode(&c.to_string()).is_ok_and(|t| t.is_empty())).collect();
        lacking.sort_unstable();
        lacking.dedup();
        if !lacking.is_empty() {
            let shown: String = lacking.iter().take(20).flat_map(|c| c.escape_debug()).collect();
            notes.push(format!(
                "the vocabulary lacks {} of the prompt's characters ({shown}): they are left out",
                lacking.len()
            ));
        }
    }
    if ids.len() > window {
        notes.push(format!("the prompt has {} tokens: this shows the last {window}", ids.len()));
    }
    Ok(notes)
}

/// The look-inside part of the engine: it answers `inspect` and `sampling` for the model the
/// engine holds, keeping the last look (and the lens' plan) until that model changes.
pub(crate) struct Views {
    look: Looker,
    /// The [`Held::generation`] the look belongs to.
    of: u64,
}

impl Views {
    pub fn new() -> Views {
        Views { look: Looker::default(), of: 0 }
    }

    /// Forgets the last look (and frees the lens' buffers) once the model it was of is gone.
    pub fn follow(&mut self, held: &Held) {
        if held.generation() != self.of {
            self.look = Looker::default();
            self.of = held.generation();
        }
    }

    /// Handles `inspect` and `sampling`.
    pub async fn handle(&mut self, request: Request, held: &Held, host: &dyn Host) -> Result<()> {
        self.follow(held);
        match request {
            Request::Inspect { prompt, layer, sampling } => self.inspect(held, host, &prompt, layer, sampling).await,
            Request::Sampling(sampling) => {
                host.post(&self.sampling(held, sampling)?, &[]);
                Ok(())
            }
            other => unreachable!("the views do not handle {other:?}"),
        }
    }

    /// Looks inside the current model for `prompt`: its tokens, the logit lens, every head's
    /// attention in `layer` (the last layer where the model has fewer) and the next-token bars
    /// under `s`, as an `inspect` event with the attention alongside.
    async fn inspect(&mut self, held: &Held, host: &dyn Host, prompt: &str, layer: usize, s: Sampler) -> Result<()> {
        s.config().validate()?;
        let (all, tokenizer) = held.prompt(prompt, "look inside it")?;
        let Current { model, step, trained, .. } = held.current("look inside it")?;
        let c = model.config;
        let window = c.block_size.min(WINDOW);
        let notes = notes(prompt, &all, window, trained, &tokenizer)?;
        let ids = &all[all.len().saturating_sub(window)..];
        let layer = layer.min(c.n_layer - 1);
        let look = &mut self.look;
        let lens = look.lens.run(model, ids, LENS_TOP).await?;
        let attention = look.lens.attention(model, layer).await?;
        let mut texts = Texts { tokenizer: &tokenizer, known: HashMap::new() };
        let rows = lens
            .layers
            .iter()
            .map(|l| Ok(LensRow { layer: l.layer, top: texts.guesses(&l.top)?, cells: texts.guesses(&l.cells)? }))
            .collect::<Result<_>>()?;
        let event = Event::Inspect {
            step,
            prompt: prompt.to_string(),
            notes,
            tokens: ids.iter().map(|&id| texts.of(id)).collect::<Result<_>>()?,
            ids: ids.to_vec(),
            lens: rows,
            sampling: sampling_view(&lens.logits, s, &mut texts)?,
            layer,
            n_layer: c.n_layer,
            n_head: c.n_head,
            n_kv_head: c.n_kv_head(),
        };
        look.seen = Some(Seen { step, prompt: prompt.to_string(), logits: lens.logits });
        host.post(&event, &[bytemuck::cast_slice(&attention)]);
        Ok(())
    }

    /// The last look's next-token bars under `s`, from its logits.
    fn sampling(&self, held: &Held, s: Sampler) -> Result<Event> {
        let tokenizer = held.current("look inside it")?.tokenizer;
        let seen = self.look.seen.as_ref().ok_or_else(|| Error::Input("type a prompt to look inside first".into()))?;
        let mut texts = Texts { tokenizer, known: HashMap::new() };
        let sampling = sampling_view(&seen.logits, s, &mut texts)?;
        Ok(Event::Sampling { step: seen.step, prompt: seen.prompt.clone(), sampling })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tokenizer: &Tokenizer) -> Texts<'_> {
        Texts { tokenizer, known: HashMap::new() }
    }

    #[test]
    fn notes_say_what_became_of_the_prompt() {
        let tok = Tokenizer::char_level("the cat sat\n").unwrap();
        let ids = tok.prompt_ids("the cat").unwrap();
        assert!(notes("the cat", &ids, 128, true, &tok).unwrap().is_empty(), "a prompt looked at whole needs no note");
        let n = notes("", &ids, 128, true, &tok).unwrap();
        assert!(n[0].contains("validation text"), "{n:?}");
        assert!(notes("", &ids, 128, false, &tok).unwrap()[0].contains("<|endoftext|>"));
        let lacking = tok.prompt_ids("the dog").unwrap();
        let n = notes("the dog", &lacking, 128, true, &tok).unwrap();
        assert_eq!(n, ["the vocabulary lacks 3 of the prompt's characters (dgo): they are left out"]);
        let n = notes("the cat", &ids, 4, true, &tok).unwrap();
        assert_eq!(n, ["the prompt has 7 tokens: this shows the last 4"]);
    }

    #[test]
    fn sampling_bars_follow_the_settings() {
        let tok = Tokenizer::char_level("abcdefghijkl").unwrap();
        let logits: Vec<f32> = (0..12).map(|i| -(i as f32) * 0.5).collect();
        let warm = Sampler { temperature: 1.0, top_k: 0, top_p: 1.0 };
        let v = sampling_view(&logits, warm, &mut texts(&tok)).unwrap();
        assert_eq!(v.bars.len(), BARS);
        assert_eq!((v.bars[0].text.as_str(), v.candidates), ("a", 12));
        assert!(v.bars.iter().all(|b| b.candidate && (b.before - b.after).abs() < 1e-6), "{v:?}");
        assert!(v.bars.windows(2).all(|w| w[0].before > w[1].before), "most likely first");
        let k3 = sampling_view(&logits, Sampler { top_k: 3, ..warm }, &mut texts(&tok)).unwrap();
        assert_eq!(k3.candidates, 3);
        assert_eq!(k3.bars.iter().filter(|b| b.candidate).count(), 3);
        let after: f32 = k3.bars.iter().map(|b| b.after).sum();
        assert!(
            (after - 1.0).abs() < 1e-5 && (k3.mass - (k3.bars[..3].iter().map(|b| b.before).sum::<f32>())).abs() < 1e-6
        );
        let hot = sampling_view(&logits, Sampler { temperature: 2.0, ..warm }, &mut texts(&tok)).unwrap();
        assert!(hot.bars[0].after < hot.bars[0].before, "a hotter temperature flattens: {hot:?}");
        let greedy = sampling_view(&logits, Sampler { temperature: 0.0, ..warm }, &mut texts(&tok)).unwrap();
        assert_eq!((greedy.candidates, greedy.bars[0].after), (1, 1.0));
    }
}
