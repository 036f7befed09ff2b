//! What the engine holds: nothing, an imported model, or a run (one enum, never both). The engine
//! hands it to the part that handles a request; the parts reach the model through its methods.

use std::rc::Rc;

use crate::generate::{Decoder, SampleConfig};
use crate::hf::peft::Adapter;
use crate::model::Gpt2;
use crate::precision::Resolved;
use crate::run::Driver;
use crate::tokenizer::Tokenizer;
use crate::web::host::Host;
use crate::web::protocol::TrainState;
use crate::web::session::Session;
use crate::{Error, Result};

/// What a part of the engine works with besides its own state: the GPU, what the engine holds,
/// and where it runs.
pub(crate) struct With<'a> {
    pub session: &'a mut Session,
    pub held: &'a mut Held,
    pub host: &'a dyn Host,
}

/// A corpus: its name, its text, and the built-in task it came from if any.
pub(crate) struct Corpus {
    pub name: String,
    pub text: String,
    pub task: Option<String>,
}

/// A model loaded from Hugging Face files, with its decoder and tokenizer.
pub(crate) struct Loaded {
    pub model: Gpt2,
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    /// generation_config.json's eos tokens: they end generated text (unshown, as transformers).
    pub stops: Vec<u32>,
    // issue 26, LoRA in the page
    /// What the page calls it (a hub repo, or "the imported model"): a LoRA fine-tune's adapter
    /// names it as its base.
    pub name: String,
    /// A peft adapter imported onto it, running beside its weights (the model's LoRA
    /// adapters): a fine-tune starts from the two merged.
    pub adapter: Option<Adapter>,
}

/// A run and what the page knows it by.
pub(crate) struct Training {
    pub driver: Driver,
    /// Names the run's saved checkpoints.
    pub id: String,
    /// The text it trains on (corpus.txt).
    pub corpus: Rc<Corpus>,
    /// Whether a checkpoint event has handed out corpus.txt yet.
    pub corpus_sent: bool,
    pub state: TrainState,
    // issue 26, LoRA in the page
    /// The base a LoRA run's adapter names (base_model_name_or_path): the model it fine-tunes,
    /// or what a run zip's adapter_config.json named; None where neither is known.
    pub base: Option<String>,
}

enum Holding {
    None,
    /// An imported model, until training starts from it.
    Loaded(Box<Loaded>),
    Training(Box<Training>),
}

/// The model the engine holds, and a count of the models it has held (a new one, or the same
/// run rebuilt on a new device, counts anew: what was computed for the last one is stale).
pub(crate) struct Held {
    now: Holding,
    generation: u64,
}

/// The current model, its tokenizer and the training step it is at (0 for an imported one).
pub(crate) struct Current<'a> {
    pub model: &'a Gpt2,
    pub tokenizer: &'a Tokenizer,
    pub step: u64,
    /// Whether it is a run (else an imported model).
    pub trained: bool,
}

impl Held {
    pub fn new() -> Held {
        Held { now: Holding::None, generation: 0 }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn hold(&mut self, now: Holding) {
        self.now = now;
        self.generation += 1;
    }

    pub fn load(&mut self, loaded: Loaded) {
        self.hold(Holding::Loaded(Box::new(loaded)));
    }

    pub fn train(&mut self, training: Box<Training>) {
        self.hold(Holding::Training(training));
    }

    /// Lets go of what it holds; the run, where it is one.
    pub fn take(&mut self) -> Option<Box<Training>> {
        let was = std::mem::replace(&mut self.now, Holding::None);
        self.generation += 1;
        match was {
            Holding::Training(tr) => Some(tr),
            Holding::Loaded(_) | Holding::None => None,
        }
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        match &self.now {
            Holding::Loaded(l) => Some(l),
            Holding::Training(_) | Holding::None => None,
        }
    }

    pub fn loaded_mut(&mut self) -> Option<&mut Loaded> {
        match &mut self.now {
            Holding::Loaded(l) => Some(l),
            Holding::Training(_) | Holding::None => None,
        }
    }

    pub fn training(&self) -> Option<&Training> {
        match &self.now {
            Holding::Training(tr) => Some(tr),
            Holding::Loaded(_) | Holding::None => None,
        }
    }

    pub fn training_mut(&mut self) -> Option<&mut Training> {
        match &mut self.now {
            Holding::Training(tr) => Some(tr),
            Holding::Loaded(_) | Holding::None => None,
        }
    }

    /// The current model with its decoder, and whether it is a run's.
    pub fn decoder_mut(&mut self) -> Option<(&Gpt2, &mut Decoder, bool)> {
        match &mut self.now {
            Holding::Training(tr) => {
                let (model, decoder) = tr.driver.run.decoder_mut();
                Some((model, decoder, true))
            }
            Holding::Loaded(l) => Some((&l.model, &mut l.decoder, false)),
            Holding::None => None,
        }
    }

    /// Continues `ids` with the current model, calling `on_token` with each new token until it
    /// says stop; the tokens, and the precision they were generated in.
    pub async fn generate(
        &mut self,
        ids: &[u32],
        cfg: &SampleConfig,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<(Vec<u32>, Resolved)> {
        match &mut self.now {
            Holding::Training(tr) => {
                let out = tr.driver.run.generate(ids, cfg, on_token).await?;
                Ok((out, tr.driver.run.precision().clone()))
            }
            Holding::Loaded(l) => {
                let stops = &l.stops;
                let on_token = |id| !stops.contains(&id) && on_token(id);
                let out = l.decoder.generate(&l.model, ids, cfg, l.tokenizer.end_of_text(), on_token).await?;
                Ok((out, l.decoder.precision().clone()))
            }
            Holding::None => Err(Error::Input("train or import a model first, then generate from it".into())),
        }
    }

    /// The current model, or what to do when there is none (`then`: what the page asked for).
    pub fn current(&self, then: &str) -> Result<Current<'_>> {
        match &self.now {
            Holding::Training(tr) => Ok(Current {
                model: &tr.driver.run.trainer.model,
                tokenizer: &tr.driver.run.tokenizer,
                step: tr.driver.run.step(),
                trained: true,
            }),
            Holding::Loaded(l) => Ok(Current { model: &l.model, tokenizer: &l.tokenizer, step: 0, trained: false }),
            Holding::None => Err(Error::Input(format!("train or import a model first, then {then}"))),
        }
    }

    /// The prompt's token ids for the current model (an empty prompt starts a trained model at
    /// its validation text, an imported one at `<|endoftext|>`), and its tokenizer.
    pub fn prompt(&self, prompt: &str, then: &str) -> Result<(Vec<u32>, Tokenizer)> {
        match &self.now {
            Holding::Training(tr) => Ok((tr.driver.run.prompt_ids(prompt)?, tr.driver.run.tokenizer.clone())),
            Holding::Loaded(l) => Ok((l.tokenizer.prompt_ids(prompt)?, l.tokenizer.clone())),
            Holding::None => Err(Error::Input(format!("train or import a model first, then {then}"))),
        }
    }
}
