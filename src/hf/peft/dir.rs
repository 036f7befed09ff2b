//! Adapter directories on disk: a peft LoRA adapter (adapter_config.json and
//! adapter_model.safetensors, and in wgpt's run directories the base's config.json and
//! tokenizer.json) loaded onto its base by merging, written, and merged into a plain HF model
//! directory.

use std::path::{Path, PathBuf};

use super::{merge, Adapter, PeftConfig, CONFIG_FILE, TENSORS_FILE};
use crate::hf::{dir as hf_dir, parse_config};
use crate::model::{Gpt2Config, Weights};
use crate::read_file;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?).map_err(|_| Error::Format(format!("{} is not UTF-8 text", path.display())))
}

/// True when `dir` holds a peft adapter (an adapter_config.json).
pub fn is_adapter(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// The adapter's settings, refused with the file's path where wgpt cannot load them.
pub fn read_config(dir: &Path) -> Result<PeftConfig> {
    let path = dir.join(CONFIG_FILE);
    PeftConfig::parse(&read_text(&path)?).map_err(|e| Error::Format(format!("{}: {e}", dir.display())))
}

/// Reads the adapter in `dir` for a base of config `base`; its settings are checked against the
/// base before the tensors are read.
pub fn read(dir: &Path, base: &Gpt2Config) -> Result<Adapter> {
    let config = read_config(dir)?;
    super::sites::select(base, &config).map_err(|e| Error::Format(format!("{}: {e}", dir.display())))?;
    let path = dir.join(TENSORS_FILE);
    if !path.exists() && dir.join("adapter_model.bin").exists() {
        return Err(Error::Format(format!(
            "{} has adapter_model.bin (a pickle), which wgpt does not read; save the adapter with \
             safe_serialization=True for adapter_model.safetensors",
            dir.display()
        )));
    }
    Adapter::read_parsed(&path.display().to_string(), config, &read_file(&path)?, base)
}

/// Writes the adapter's run-directory files ([`Adapter::files`]) into `dir`.
pub fn save(dir: &Path, adapter: &Adapter, tokenizer: Option<&Tokenizer>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    for (name, bytes) in adapter.files(tokenizer)? {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::Io(format!("cannot write {}: {e}", p.display())))?;
    }
    Ok(())
}

/// Where a model comes from: an HF model directory, or an adapter directory on its base.
#[derive(Debug, Clone)]
pub struct Source {
    /// The directory asked for.
    pub dir: PathBuf,
    /// The base's directory, where `dir` is an adapter.
    pub base: Option<PathBuf>,
}

impl Source {
    /// `dir` as a model: an adapter directory's base is `base` when given, else its
    /// base_model_name_or_path when that is a local directory (a relative path from the current
    /// directory, as peft takes it); a missing base is an error naming it. `base` with a plain
    /// model directory is an error.
    pub fn resolve(dir: &Path, base: Option<&Path>) -> Result<Source> {
        if !is_adapter(dir) {
            // a directory that is not there is named by the load that follows
            if base.is_some() && dir.is_dir() {
                return Err(Error::Input(format!(
                    "--base is for adapter directories, and {} has no {CONFIG_FILE}",
                    dir.display()
                )));
            }
            return Ok(Source { dir: dir.to_path_buf(), base: None });
        }
        let base = match base {
            Some(b) => b.to_path_buf(),
            None => named_base(dir, &read_config(dir)?)?,
        };
        if is_adapter(&base) {
            return Err(Error::Input(format!(
                "the base {} is itself an adapter directory; pass the model the adapters were trained on",
                base.display()
            )));
        }
        Ok(Source { dir: dir.to_path_buf(), base: Some(base) })
    }

    /// The model's config (an adapter's is its base's, which the adapter directory's own
    /// config.json, where it has one, must equal).
    pub fn config(&self) -> Result<Gpt2Config> {
        let Some(base) = &self.base else {
            return hf_dir::load_config(&self.dir);
        };
        let cfg = hf_dir::load_config(base)?;
        let own = self.dir.join("config.json");
        if own.exists() {
            let text = read_text(&own)?;
            let mine = parse_config(&text).map_err(|e| Error::Format(format!("{}: {e}", own.display())))?;
            if mine != cfg {
                return Err(Error::Input(format!(
                    "{} describes another model than the base {}: the adapter was made for a different base; pass \
                     the right one with --base",
                    own.display(),
                    base.display()
                )));
            }
        }
        Ok(cfg)
    }

    /// The weights (an adapter's merged into its base's) and the tokenizer (the adapter
    /// directory's where it has one, else the base's).
    pub fn load(&self) -> Result<(Weights, Option<Tokenizer>)> {
        let Some(base) = &self.base else {
            return hf_dir::load(&self.dir);
        };
        let cfg = self.config()?;
        let (mut weights, base_tokenizer) = hf_dir::load(base)?;
        let adapter = read(&self.dir, &cfg)?;
        merge(&mut weights, &adapter)?;
        let own = self.dir.join("tokenizer.json");
        let tokenizer = if own.exists() { Some(Tokenizer::from_file(&own)?) } else { base_tokenizer };
        Ok((weights, tokenizer))
    }

    /// The directory a file of the model comes from: the asked directory's own where it has
    /// one, else the base's; None where neither has it.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        [Some(&self.dir), self.base.as_ref()].into_iter().flatten().map(|d| d.join(name)).find(|p| p.exists())
    }

    /// The tokens generation stops at (generation_config.json's eos, see [`hf_dir::stop_tokens`]).
    pub fn stop_tokens(&self) -> Result<Vec<u32>> {
        match self.file("generation_config.json") {
            Some(p) => hf_dir::stop_tokens(p.parent().unwrap_or(Path::new("."))),
            None => Ok(vec![]),
        }
    }

    /// Writes the merged model into the new directory `out` as a plain HF model directory
    /// (config.json, model.safetensors, tokenizer.json and generation_config.json where the
    /// adapter or its base has them) that transformers loads without peft.
    pub fn merge_into(&self, out: &Path) -> Result<()> {
        if self.base.is_none() {
            return Err(Error::Input(format!("{} is not an adapter directory (no {CONFIG_FILE})", self.dir.display())));
        }
        if out.exists() && out.read_dir().map_or(true, |mut d| d.next().is_some()) {
            return Err(Error::Input(format!(
                "{} already exists and is not an empty directory; merge into a new directory",
                out.display()
            )));
        }
        let (weights, tokenizer) = self.load()?;
        hf_dir::save(out, &weights, tokenizer.as_ref())?;
        if let Some(p) = self.file("generation_config.json") {
            let to = out.join("generation_config.json");
            std::fs::copy(&p, &to).map_err(|e| Error::Io(format!("cannot write {}: {e}", to.display())))?;
        }
        Ok(())
    }
}

/// The base an adapter's config names, where it is a local directory.
fn named_base(dir: &Path, config: &PeftConfig) -> Result<PathBuf> {
    let Some(name) = &config.base_model_name_or_path else {
        return Err(Error::Input(format!(
            "{}'s {CONFIG_FILE} names no base model (base_model_name_or_path is null); pass --base BASE_DIR",
            dir.display()
        )));
    };
    let path = PathBuf::from(name);
    if !path.is_dir() {
        return Err(Error::Input(format!(
            "{}'s base model {name:?} (base_model_name_or_path) is not a local directory; pass --base BASE_DIR with \
             that model's files (config.json, model.safetensors)",
            dir.display()
        )));
    }
    Ok(path)
}
