//! The models part of the engine: what the page does with a model, trained or imported: import
//! and export Hugging Face files, generate, and check the GPU against a parity file.

use std::cell::RefCell;
use std::rc::Rc;

use crate::generate::{Decoder, SampleConfig, TextStream};
use crate::model::{Gpt2, Gpt2Config, Weights};
use crate::options::Options;
use crate::parity::{self, ParityFile};
use crate::precision::Precision;
use crate::run::fits::{allocate, Building};
use crate::tokenizer::Tokenizer;
use crate::web::held::{Held, Loaded, With};
use crate::web::host::{Host, Inbox};
use crate::web::protocol::{Event, ParityCheck, Request, Sampler};
use crate::web::session::Session;
use crate::web::views::params_event;
use crate::{hf, Error, Result};

/// Handles `import`, `export`, `generate` and `parity` on the model the engine holds; a
/// generation reads the inbox's cancel flag between tokens.
pub(crate) struct Models {
    inbox: Rc<RefCell<Inbox>>,
}

impl Models {
    pub fn new(inbox: Rc<RefCell<Inbox>>) -> Models {
        Models { inbox }
    }

    pub async fn handle(&self, request: Request, files: Vec<Vec<u8>>, w: With<'_>) -> Result<()> {
        match request {
            Request::Import { name, config, tokenizer, names, generation_config } => {
                let dir = ModelFiles { config, tokenizer, generation_config, names, files };
                import(w, name, dir).await?;
            }
            Request::Export => export(w.held, w.host).await?,
            Request::Generate { prompt, sampling, max_tokens, seed, precision } => {
                let Sampler { temperature, top_k, top_p } = sampling;
                let cfg = SampleConfig { max_new_tokens: max_tokens, temperature, top_k, top_p, seed };
                self.generate(w.held, w.host, &prompt, &cfg, precision).await?;
            }
            Request::Parity { name } => {
                let event = parity(w.session, name, files.into_iter().next()).await?;
                w.host.post(&event, &[]);
            }
            other => unreachable!("the models part does not handle {other:?}"),
        }
        Ok(())
    }

    /// Streams a continuation of `prompt` as `token` events, until max_tokens, `<|endoftext|>`
    /// or a Cancel.
    async fn generate(
        &self,
        held: &mut Held,
        host: &dyn Host,
        prompt: &str,
        cfg: &SampleConfig,
        precision: Precision,
    ) -> Result<()> {
        cfg.validate()?;
        let not_fitted = set_precision(held, precision).await;
        let (ids, tokenizer) = held.prompt(prompt, "generate from it")?;
        self.inbox.borrow_mut().uncancel();
        let mut stream = TextStream::new(&tokenizer, &ids)?;
        let started = (host.clock())();
        let send = |text: String| {
            if !text.is_empty() {
                host.post(&Event::Token { text }, &[]);
            }
        };
        let on_token = |id| {
            if let Ok(text) = stream.push(&tokenizer, id) {
                send(text);
            }
            !self.inbox.borrow().cancelled()
        };
        let (out, precision) = held.generate(&ids, cfg, on_token).await?;
        send(stream.finish(&tokenizer)?);
        let secs = ((host.clock())() - started) / 1e3;
        let (tokens, tokens_per_sec) = (out.len(), out.len() as f64 / secs.max(1e-3));
        let precision_note = not_fitted.or(precision.note);
        host.post(&Event::Generated { tokens, tokens_per_sec, precision: precision.runs, precision_note }, &[]);
        Ok(())
    }
}

/// A Hugging Face model directory's files as the page sends them.
struct ModelFiles {
    config: String,
    tokenizer: String,
    generation_config: Option<String>,
    /// The safetensors files' names (empty: one, model.safetensors) ...
    names: Vec<String>,
    /// ... and their bytes.
    files: Vec<Vec<u8>>,
}

impl ModelFiles {
    /// The weights for `cfg`, from model.safetensors or the checkpoint's shards.
    fn weights(&self, cfg: Gpt2Config) -> Result<Weights> {
        let names = match self.names.is_empty() {
            true => vec!["model.safetensors".to_string()],
            false => self.names.clone(),
        };
        if names.len() != self.files.len() {
            return Err(Error::Input(match names.get(self.files.len()) {
                Some(n) => format!(
                    "{n} is missing ({} of the model's {} safetensors files came)",
                    self.files.len(),
                    names.len()
                ),
                None => format!("{} safetensors files came for {} names", self.files.len(), names.len()),
            }));
        }
        let parsed =
            names.iter().zip(&self.files).map(|(n, b)| hf::parse_safetensors(n, b)).collect::<Result<Vec<_>>>()?;
        let what = match names.len() {
            1 => names[0].clone(),
            n => format!("model.safetensors.index.json ({n} shards)"),
        };
        hf::load_files(&what, &parsed, cfg)
    }

    /// The tokens that end generated text: generation_config.json's eos tokens, none without it.
    fn stops(&self) -> Result<Vec<u32>> {
        let Some(text) = &self.generation_config else { return Ok(vec![]) };
        hf::eos_tokens(text)
    }
}

/// Loads a Hugging Face model directory's files (`name`: what the page calls it); on error the
/// current model stays.
async fn import(w: With<'_>, name: String, dir: ModelFiles) -> Result<()> {
    let kernels = w.session.kernels()?;
    let cfg = hf::parse_config(&dir.config)?;
    let stops = dir.stops()?;
    let weights = dir.weights(cfg)?;
    let tokenizer = Tokenizer::from_bytes("tokenizer.json", dir.tokenizer.as_bytes())?;
    drop(dir);
    if tokenizer.vocab_size() > cfg.vocab_size {
        return Err(Error::Format(format!(
            "tokenizer.json has {} tokens but the model's vocab_size is {}",
            tokenizer.vocab_size(),
            cfg.vocab_size
        )));
    }
    let gpu = kernels.gpu.clone();
    // the page generates from an imported model in auto precision: f16 where shader-f16 is
    let build = || {
        Gpt2::new(kernels, &weights).and_then(|model| Ok((Decoder::with_precision(&model, Precision::Auto)?, model)))
    };
    let (decoder, model) = allocate(&gpu, Building::Model(&cfg), build).await?;
    // the FLOPs per token at the context the decoder holds (at most 2048), not max_position_embeddings
    w.host.post(&params_event(&cfg, decoder.context_size(), &model.kernels.gpu.describe()), &[]);
    w.held.load(Loaded { model, decoder, tokenizer, stops, name: name.clone(), adapter: None });
    let imported = Event::Imported {
        name,
        n_layer: cfg.n_layer,
        n_head: cfg.n_head,
        n_embd: cfg.n_embd,
        block_size: cfg.block_size,
        vocab_size: cfg.vocab_size,
        params: cfg.num_params(),
    };
    w.host.post(&imported, &[]);
    Ok(())
}

/// The model as Hugging Face files (an `export` event with their bytes).
async fn export(held: &Held, host: &dyn Host) -> Result<()> {
    let current = held.current("export it")?;
    let files = hf::files(&current.model.weights().await?, current.tokenizer)?;
    let event = Event::Export { files: files.iter().map(|(name, _)| name.to_string()).collect(), step: current.step };
    let bytes: Vec<&[u8]> = files.iter().map(|(_, b)| b.as_slice()).collect();
    host.post(&event, &bytes);
    Ok(())
}

/// A parity file's checks on this GPU.
async fn parity(session: &Session, name: String, bytes: Option<Vec<u8>>) -> Result<Event> {
    let kernels = session.kernels()?;
    let bytes = bytes.ok_or_else(|| Error::Input("no parity file given".into()))?;
    let p = ParityFile::parse(&name, &bytes)?;
    drop(bytes);
    let checks: Vec<ParityCheck> = parity::check(kernels.clone(), &p, Options::default().submit_budget_ms)
        .await?
        .iter()
        .map(|c| ParityCheck {
            name: c.name.clone(),
            passed: c.passed(),
            max_abs: c.closeness.max_abs,
            max_rel: c.closeness.max_rel,
            atol: c.atol,
            rtol: c.rtol,
        })
        .collect();
    let passed = checks.iter().all(|c| c.passed);
    Ok(Event::Parity { name, adapter: kernels.gpu.describe(), checks, passed })
}

/// Makes the current model's decoder run in `precision` where it was made for another. Where
/// its f16 copies of the weights do not fit in the GPU's memory, the decoder in use stays and
/// the note says so (never an error).
/// Auto is f32 for a training run: its samples (and evaluations' samples) stay the CLI's.
async fn set_precision(held: &mut Held, precision: Precision) -> Option<String> {
    let (model, decoder, trained) = held.decoder_mut()?;
    let precision = match (trained, precision) {
        (true, Precision::Auto) => Precision::F32,
        (_, p) => p,
    };
    if decoder.asked() == precision {
        return None;
    }
    let gpu = model.kernels.gpu.clone();
    match allocate(&gpu, Building::Model(&model.config), || Decoder::with_precision(model, precision)).await {
        Ok(d) => {
            *decoder = d;
            None
        }
        Err(_) => Some(format!(
            "{} asked, but the f16 copies of the weights do not fit in this GPU's memory; generating in {}",
            precision.name(),
            decoder.precision().runs.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::tensors::serialize;
    use crate::model::ArchPreset;

    fn files(names: &[&str], files: Vec<Vec<u8>>, generation_config: Option<&str>) -> ModelFiles {
        ModelFiles {
            config: String::new(),
            tokenizer: String::new(),
            generation_config: generation_config.map(String::from),
            names: names.iter().map(|n| n.to_string()).collect(),
            files,
        }
    }

    #[test]
    fn a_sharded_checkpoint_reads_as_its_one_file() {
        let mut cfg = Gpt2Config::preset("tiny").unwrap();
        ArchPreset::Speedrun.apply(&mut cfg.arch, cfg.n_head);
        cfg.vocab_size = 29;
        let weights = Weights::random(cfg, 7);
        let one = hf::save_weights(&weights).unwrap();
        let st = hf::parse_safetensors("model.safetensors", &one).unwrap();
        let mut all: Vec<_> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n.clone(), v.shape().to_vec(), hf::to_f32(&n, &v).unwrap()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let second = all.split_off(all.len() / 2);
        let shards = vec![serialize(&all).unwrap(), serialize(&second).unwrap()];
        let names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
        let read = files(&names, shards.clone(), None).weights(cfg).unwrap();
        assert_eq!(read.tensors, weights.tensors, "the shards hold the model bit for bit");
        assert_eq!(files(&[], vec![one], None).weights(cfg).unwrap().tensors, weights.tensors);
        let err = files(&names, shards[..1].to_vec(), None).weights(cfg).unwrap_err().to_string();
        assert!(err.contains("model-00002-of-00002.safetensors is missing"), "{err}");
        let err = files(&names[..1], shards[..1].to_vec(), None).weights(cfg).unwrap_err().to_string();
        assert!(err.contains("missing tensor"), "a shard left out is a missing tensor by name: {err}");
    }

    #[test]
    fn generation_configs_eos_tokens_stop_and_none_without_one() {
        assert_eq!(files(&[], vec![], Some(r#"{"eos_token_id":[2,3]}"#)).stops().unwrap(), [2, 3]);
        assert_eq!(files(&[], vec![], Some(r#"{"eos_token_id":5}"#)).stops().unwrap(), [5]);
        assert!(files(&[], vec![], None).stops().unwrap().is_empty());
        let err = files(&[], vec![], Some("{eos")).stops().unwrap_err().to_string();
        assert!(err.contains("generation_config.json"), "{err}");
    }
}
