//! peft LoRA adapters, both ways: `adapter_config.json` ([`config`]), the layers the adapters
//! modify ([`sites`]), `adapter_model.safetensors` under peft's names
//! (`base_model.model.<module>.lora_A.weight` [r, in] and `lora_B.weight` [out, r], nn.Linear's
//! layout even on GPT-2's Conv1D) and the merge into the base's weights ([`merge`]).

pub mod config;
pub mod merge;
pub mod sites;

pub use config::{PeftConfig, MAX_RANK};
pub use merge::merge;
pub use sites::Site;

use std::collections::HashMap;

use super::names::NamedTensor;
use super::tensors::{parse_safetensors, serialize, to_f32};
use crate::model::Gpt2Config;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The adapter's settings file.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's tensors.
pub const TENSORS_FILE: &str = "adapter_model.safetensors";

/// One layer's adapter: the update is (alpha / r) · B·A in nn.Linear's [out, in] layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraLayer {
    pub site: Site,
    /// lora_A, [r, in].
    pub a: Vec<f32>,
    /// lora_B, [out, r].
    pub b: Vec<f32>,
}

/// A LoRA adapter for a base of a given config: its settings and a layer per targeted module.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    pub config: PeftConfig,
    /// The config of the base it was read or made for.
    pub base: Gpt2Config,
    /// One per targeted module, in the parameter table's order.
    pub layers: Vec<LoraLayer>,
}

impl Adapter {
    /// An adapter for `base` with `config`'s settings, each layer's (A [r, in], B [out, r]) from
    /// `tensors(site)`: the one conversion a trainer's LoRA tensors need. A wrong length is an
    /// error naming the tensor.
    pub fn new(
        config: PeftConfig,
        base: &Gpt2Config,
        mut tensors: impl FnMut(&Site) -> (Vec<f32>, Vec<f32>),
    ) -> Result<Adapter> {
        let layers = sites::select(base, &config)?
            .into_iter()
            .map(|site| {
                let (a, b) = tensors(&site);
                let (want_a, want_b) = (config.r * site.in_features, site.out_features * config.r);
                if a.len() != want_a || b.len() != want_b {
                    return Err(Error::Input(format!(
                        "{}: lora_A has {} values and lora_B {}, expected {want_a} ([{}, {}]) and {want_b} ([{}, {}])",
                        site.module,
                        a.len(),
                        b.len(),
                        config.r,
                        site.in_features,
                        site.out_features,
                        config.r
                    )));
                }
                Ok(LoraLayer { site, a, b })
            })
            .collect::<Result<_>>()?;
        Ok(Adapter { config, base: *base, layers })
    }

    /// Reads an adapter for a base of config `base` from adapter_config.json's text and
    /// adapter_model.safetensors' bytes (`what` names the file for messages). The config is
    /// checked before the tensors; then every targeted module needs both its tensors at the
    /// base's shapes, and no other tensor may be present.
    pub fn read(what: &str, config_text: &str, bytes: &[u8], base: &Gpt2Config) -> Result<Adapter> {
        Adapter::read_parsed(what, PeftConfig::parse(config_text)?, bytes, base)
    }

    /// [`Adapter::read`] with the config already parsed.
    pub fn read_parsed(what: &str, config: PeftConfig, bytes: &[u8], base: &Gpt2Config) -> Result<Adapter> {
        let sites = sites::select(base, &config)?;
        let st = parse_safetensors(what, bytes)?;
        let mut by_name: HashMap<String, _> = st.tensors().into_iter().collect();
        let mut take = |site: &Site, which: &str, shape: [usize; 2]| -> Result<Vec<f32>> {
            let name = site.tensor_name(which);
            let view = by_name.remove(&name).ok_or_else(|| {
                Error::Format(format!("{what}: missing tensor {name} (shape {shape:?}; its module is a target)"))
            })?;
            if view.shape() != shape {
                return Err(Error::Format(format!(
                    "{what}: tensor {name} has shape {:?}, but the base's {} needs {shape:?}: the adapter was made for \
                     another base",
                    view.shape(),
                    site.module
                )));
            }
            to_f32(&name, &view).map_err(|e| Error::Format(format!("{what}: {e}")))
        };
        let mut layers = Vec::with_capacity(sites.len());
        for site in sites {
            let a = take(&site, "A", [config.r, site.in_features])?;
            let b = take(&site, "B", [site.out_features, config.r])?;
            layers.push(LoraLayer { site, a, b });
        }
        let mut extra: Vec<&String> = by_name.keys().collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return Err(Error::Format(format!(
                "{what}: unexpected tensor {name}: not the lora_A or lora_B of a module adapter_config.json targets"
            )));
        }
        Ok(Adapter { config, base: *base, layers })
    }

    /// The adapter's tensors under peft's names, (name, shape, values).
    pub fn tensors(&self) -> Vec<NamedTensor> {
        let r = self.config.r;
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    (l.site.tensor_name("A"), vec![r, l.site.in_features], l.a.clone()),
                    (l.site.tensor_name("B"), vec![l.site.out_features, r], l.b.clone()),
                ]
            })
            .collect()
    }

    /// adapter_model.safetensors' bytes (f32, metadata format "pt", as peft saves).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        serialize(&self.tensors())
    }

    /// A LoRA run's directory files, by name: the PEFT adapter (adapter_config.json, whose
    /// base_model_name_or_path names the base as given, and adapter_model.safetensors) and the
    /// base's config.json and tokenizer.json, without the base's weights.
    /// `PeftModel.from_pretrained(base, dir)` loads it, and wgpt reads it with the base.
    pub fn files(&self, tokenizer: Option<&Tokenizer>) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let mut files = vec![
            (CONFIG_FILE, self.config.to_json().into_bytes()),
            (TENSORS_FILE, self.to_safetensors()?),
            ("config.json", super::config_json(&self.base).into_bytes()),
        ];
        if let Some(t) = tokenizer {
            files.push(("tokenizer.json", t.to_json()?.into_bytes()));
        }
        Ok(files)
    }
}

/// Adapter directories on disk: loading one onto its base, writing one, merging.
#[cfg(not(target_arch = "wasm32"))]
pub mod dir;
