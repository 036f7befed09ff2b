//! What the page does with a model, trained or imported: import and export Hugging Face files,
//! generate, and check the GPU against a parity file.

use crate::generate::{Decoder, SampleConfig, TextStream};
use crate::model::Gpt2;
use crate::options::Options;
use crate::parity::{self, ParityFile};
use crate::precision::{Precision, Purpose};
use crate::run::fits::{allocate, Building};
use crate::tokenizer::Tokenizer;
use crate::web::engine::{Engine, Loaded, Model};
use crate::web::protocol::{Event, ParityCheck};
use crate::web::views::{params_event, Looker};
use crate::{hf, Error, Result};

impl Engine {
    /// Loads a Hugging Face GPT-2 directory's files; on error the current model stays.
    pub(crate) async fn import(
        &mut self,
        name: String,
        config: &str,
        tokenizer: &str,
        bytes: Option<Vec<u8>>,
    ) -> Result<Event> {
        let kernels = self.kernels()?;
        let bytes = bytes.ok_or_else(|| Error::Input("model.safetensors is missing".into()))?;
        let cfg = hf::parse_config(config)?;
        let weights = hf::load_weights("model.safetensors", &bytes, cfg)?;
        drop(bytes);
        let tokenizer = Tokenizer::from_bytes("tokenizer.json", tokenizer.as_bytes())?;
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
            Gpt2::new(kernels, &weights)
                .and_then(|model| Ok((Decoder::with_precision(&model, Precision::Auto)?, model)))
        };
        let (decoder, model) = allocate(&gpu, Building::Model(&cfg), build).await?;
        self.tokens = None;
        self.post(&params_event(&cfg, cfg.block_size, &model.kernels.gpu.describe()));
        self.model = Model::Loaded(Box::new(Loaded { model, decoder, tokenizer, look: Looker::default() }));
        Ok(Event::Imported {
            name,
            n_layer: cfg.n_layer,
            n_head: cfg.n_head,
            n_embd: cfg.n_embd,
            block_size: cfg.block_size,
            vocab_size: cfg.vocab_size,
            params: cfg.num_params(),
        })
    }

    /// The model, its tokenizer and the step it is at, or what to do when there is none.
    fn current(&self, then: &str) -> Result<(&Gpt2, &Tokenizer, u64)> {
        match &self.model {
            Model::Training(tr) => Ok((&tr.driver.run.trainer.model, &tr.driver.run.tokenizer, tr.driver.run.step())),
            Model::Loaded(l) => Ok((&l.model, &l.tokenizer, 0)),
            Model::None => Err(Error::Input(format!("train or import a model first, then {then}"))),
        }
    }

    /// The model as Hugging Face files (an `export` event with their bytes).
    pub(crate) async fn export(&mut self) -> Result<()> {
        let (model, tokenizer, step) = self.current("export it")?;
        let files = hf::files(&model.weights().await?, tokenizer)?;
        let event = Event::Export { files: files.iter().map(|(name, _)| name.to_string()).collect(), step };
        let bytes: Vec<&[u8]> = files.iter().map(|(_, b)| b.as_slice()).collect();
        self.host.post(&event, &bytes);
        Ok(())
    }

    pub(crate) async fn parity(&mut self, name: String, bytes: Option<Vec<u8>>) -> Result<Event> {
        let kernels = self.kernels()?;
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

    /// The prompt's token ids for the current model (an empty prompt starts a trained model at
    /// its validation text, an imported one at `<|endoftext|>`), and its tokenizer.
    pub(crate) fn prompt(&self, prompt: &str, then: &str) -> Result<(Vec<u32>, Tokenizer)> {
        match &self.model {
            Model::Training(tr) => Ok((tr.driver.run.prompt_ids(prompt)?, tr.driver.run.tokenizer.clone())),
            Model::Loaded(l) => Ok((l.tokenizer.prompt_ids(prompt)?, l.tokenizer.clone())),
            Model::None => Err(Error::Input(format!("train or import a model first, then {then}"))),
        }
    }

    /// Makes the current model's decoder run in `precision` where it was made for another. Where
    /// its f16 copies of the weights do not fit in the GPU's memory, the decoder in use stays and
    /// the note says so (never an error).
    /// Auto is f32 for a training run: its samples (and evaluations' samples) stay the CLI's.
    async fn set_precision(&mut self, precision: Precision) -> Option<String> {
        let precision = match (&self.model, precision) {
            (Model::Training(_), Precision::Auto) => Precision::F32,
            (_, p) => p,
        };
        let (model, decoder) = match &mut self.model {
            Model::Training(tr) => tr.driver.run.decoder_mut(),
            Model::Loaded(l) => (&l.model, &mut l.decoder),
            Model::None => return None,
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

    /// Streams a continuation of `prompt` as `token` events, until max_tokens, `<|endoftext|>`
    /// or a Cancel.
    pub(crate) async fn generate(&mut self, prompt: &str, cfg: &SampleConfig, precision: Precision) -> Result<()> {
        cfg.validate()?;
        let not_fitted = self.set_precision(precision).await;
        let (ids, tokenizer) = self.prompt(prompt, "generate from it")?;
        self.inbox.borrow_mut().cancel = false;
        let mut stream = TextStream::new(&tokenizer, &ids)?;
        let started = (self.host.clock())();
        let (inbox, host) = (self.inbox.clone(), &*self.host);
        let send = |text: String| {
            if !text.is_empty() {
                host.post(&Event::Token { text }, &[]);
            }
        };
        let on_token = |id| {
            if let Ok(text) = stream.push(&tokenizer, id) {
                send(text);
            }
            !inbox.borrow().cancel
        };
        let (out, precision) = match &mut self.model {
            Model::Training(tr) => {
                (tr.driver.run.generate(&ids, cfg, on_token).await?, tr.driver.run.precision().clone())
            }
            Model::Loaded(l) => (
                l.decoder.generate(&l.model, &ids, cfg, l.tokenizer.end_of_text(), on_token).await?,
                l.decoder.precision().clone(),
            ),
            Model::None => (Vec::new(), Precision::F32.resolve(Purpose::Inference, false)), // prompt() refused already
        };
        send(stream.finish(&tokenizer)?);
        let secs = ((self.host.clock())() - started) / 1e3;
        let (tokens, tokens_per_sec) = (out.len(), out.len() as f64 / secs.max(1e-3));
        self.post(&Event::Generated {
            tokens,
            tokens_per_sec,
            precision: precision.runs.name().into(),
            precision_note: not_fitted.or(precision.note),
        });
        Ok(())
    }
}
