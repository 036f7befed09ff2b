//! The LoRA part of the engine: a LoRA run's adapter exported as peft saves it (the files `wgpt
//! train` writes into its run directory, [`adapter_files`]), the run's model with the adapter
//! merged in ([`peft::merge`], as `wgpt merge-lora`), and a peft adapter imported onto the model
//! the page loaded. An imported adapter on GPT-2's whole products runs beside the base weights,
//! as in training (the decoder records the adapters after their products), so the model
//! generates what the run it came from generated; one on parts of a fused product (Llama's and
//! Qwen3's q/k/v_proj, gate/up_proj) is merged into the weights.

use std::collections::BTreeMap;

use crate::generate::Decoder;
use crate::hf::peft::{self, Adapter, CONFIG_FILE, TENSORS_FILE};
use crate::model::lora::Targets;
use crate::model::{Gpt2, Gpt2Config, LoraConfig, LoraTensors};
use crate::run::archive;
use crate::run::format::{adapter_files, ADAPTER_FILES};
use crate::web::held::{Training, With};
use crate::web::protocol::{Event, Request};
use crate::web::run_loop;
use crate::web::runs::{run_base, run_stem};
use crate::{hf, Error, Result};

/// Handles `export_adapter`, `export_merged` and `import_adapter`.
pub(crate) async fn handle(request: Request, files: Vec<Vec<u8>>, w: With<'_>) -> Result<()> {
    match request {
        Request::ExportAdapter => {
            let host = w.host;
            let (tr, files) = run_adapter(w).await?;
            let named: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
            let zip = archive::write(&named)?;
            let (name, step, base) = (format!("{}-adapter.zip", run_stem(tr)), tr.driver.run.step(), run_base(tr));
            host.post(&Event::ExportAdapter { name, step, base }, &[&zip]);
        }
        Request::ExportMerged => {
            let host = w.host;
            let (tr, files) = run_adapter(w).await?;
            let cfg = tr.driver.run.cfg.model;
            let adapter = read_adapter("the run's adapter", files_by_name(files), &cfg)?;
            let mut weights = tr.driver.run.trainer.model.weights().await?;
            peft::merge(&mut weights, &adapter)?;
            let files = hf::files(&weights, &tr.driver.run.tokenizer)?;
            let named: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
            let zip = archive::write(&named)?;
            host.post(
                &Event::ExportMerged { name: format!("{}-merged.zip", run_stem(tr)), step: tr.driver.run.step() },
                &[&zip],
            );
        }
        Request::ImportAdapter { name, names } => import(w, &name, names, files).await?,
        other => unreachable!("the adapters part does not handle {other:?}"),
    }
    Ok(())
}

/// The held LoRA run, saved at its step, and its adapter's files (peft's two).
async fn run_adapter(w: With<'_>) -> Result<(&Training, Vec<(&'static str, Vec<u8>)>)> {
    let host = w.host;
    if let Some(tr) = w.held.training_mut() {
        run_loop::save(tr, host).await?;
    }
    let Some(tr) = w.held.training() else {
        return Err(Error::Input(
            "there is no LoRA run to export: load a model, choose a LoRA rank and press Fine-tune first".into(),
        ));
    };
    if tr.driver.run.cfg.train.lora.is_none() {
        return Err(Error::Input(
            "this run trains every weight (a full fine-tune), so it has no adapter: Export model saves it; choose a \
             LoRA rank before Fine-tune for an adapter"
                .into(),
        ));
    }
    let checkpoint = tr.driver.current_checkpoint().ok_or_else(|| Error::Input("the run is not saved".into()))?;
    let files = adapter_files(checkpoint, &run_base(tr))?;
    if files.is_empty() {
        return Err(Error::Input(
            "the run's base is wgpt's own model type, which peft has no class for: export the merged model".into(),
        ));
    }
    Ok((tr, files))
}

fn files_by_name(files: Vec<(&'static str, Vec<u8>)>) -> BTreeMap<String, Vec<u8>> {
    files.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

/// The adapter in `files` (adapter_config.json and adapter_model.safetensors) for a base of
/// `cfg`, every refusal naming `what` and what is wrong.
fn read_adapter(what: &str, mut files: BTreeMap<String, Vec<u8>>, cfg: &Gpt2Config) -> Result<Adapter> {
    let missing: Vec<&str> = ADAPTER_FILES.into_iter().filter(|n| !files.contains_key(*n)).collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "{what} lacks {}: a peft LoRA adapter is adapter_config.json and adapter_model.safetensors (choose both, \
             or a zip of them)",
            missing.join(" and ")
        )));
    }
    let config = String::from_utf8(files.remove(CONFIG_FILE).unwrap_or_default())
        .map_err(|_| Error::Format(format!("{what}: {CONFIG_FILE} is not UTF-8 text")))?;
    let tensors = files.remove(TENSORS_FILE).unwrap_or_default();
    Adapter::read(TENSORS_FILE, &config, &tensors, cfg).map_err(|e| Error::Format(format!("{what}: {e}")))
}

/// The page's files as an adapter's, by name: one zip (`names` empty), or the files `names` names.
fn adapter_input(what: &str, names: Vec<String>, files: Vec<Vec<u8>>) -> Result<BTreeMap<String, Vec<u8>>> {
    if names.is_empty() {
        let zip = files.into_iter().next().ok_or_else(|| Error::Input("no adapter given".into()))?;
        return archive::read_entries(what, &zip, &ADAPTER_FILES);
    }
    if names.len() != files.len() {
        return Err(Error::Input(format!("{} file names for {} files", names.len(), files.len())));
    }
    Ok(names.into_iter().zip(files).collect())
}

/// The adapter as the model's own LoRA adapters (its config and tensors in
/// [`LoraConfig::specs`] order), where every adapted layer is a whole GPT-2 product; None where
/// it must be merged instead.
fn as_lora(adapter: &Adapter, cfg: &Gpt2Config) -> Option<(LoraConfig, Vec<Vec<f32>>)> {
    // h.{l}.attn.c_attn.weight: the adapter's name lora.h.{l}.attn.c_attn, its target attn.c_attn
    let stems: Vec<String> =
        adapter.layers.iter().map(|l| format!("lora.{}", l.site.internal.trim_end_matches(".weight"))).collect();
    let modules: Vec<&str> = stems.iter().filter_map(|s| Some(s.strip_prefix("lora.h.")?.split_once('.')?.1)).collect();
    let targets = Targets::parse(&modules.join(",")).ok()?;
    let c = &adapter.config;
    let lc = LoraConfig { rank: c.r, alpha: c.lora_alpha as f32, targets, dropout: 0.0, seed: 0 };
    lc.validate(cfg).ok()?;
    if 2 * adapter.layers.len() != lc.specs(cfg).len() {
        return None;
    }
    let mut tensors = Vec::new();
    for (name, shape) in lc.specs(cfg) {
        let (stem, which) = name.rsplit_once('.')?;
        let layer = &adapter.layers[stems.iter().position(|s| s == stem)?];
        let values = if which == "lora_A" { &layer.a } else { &layer.b };
        if values.len() != shape.iter().product::<usize>() {
            return None;
        }
        tensors.push(values.clone());
    }
    Some((lc, tensors))
}

/// Puts the adapter in `files` onto the imported model: beside its weights where it can, else
/// merged into them; the model keeps its own weights if anything is refused.
async fn import(w: With<'_>, name: &str, names: Vec<String>, files: Vec<Vec<u8>>) -> Result<()> {
    let Some(l) = w.held.loaded_mut() else {
        return Err(Error::Input(
            "an adapter goes onto its base model: load that first (Load GPT-2, or Import a model), then import the \
             adapter"
                .into(),
        ));
    };
    let cfg = l.model.config;
    let adapter = read_adapter(name, adapter_input(name, names, files)?, &cfg)?;
    let merged = match as_lora(&adapter, &cfg) {
        Some((lc, tensors)) => {
            l.model.lora = Some(LoraTensors::upload(&l.model.kernels.gpu, &cfg, lc, &tensors)?);
            l.adapter = Some(adapter.clone());
            false
        }
        None => {
            let mut weights = l.model.weights().await?;
            peft::merge(&mut weights, &adapter)?;
            let model = Gpt2::new(l.model.kernels.clone(), &weights)?;
            l.model = model;
            l.adapter = None;
            true
        }
    };
    // the decoder's recorded passes ran without the adapter
    l.decoder = Decoder::with_precision(&l.model, l.decoder.asked())?;
    let c = adapter.config;
    let (rank, alpha, targets, base) = (c.r, c.lora_alpha, c.target_modules, c.base_model_name_or_path);
    w.host.post(&Event::AdapterImported { name: name.into(), rank, alpha, targets, base, merged }, &[]);
    Ok(())
}
