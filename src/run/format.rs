//! The run format: the files of one run, the same for `wgpt train --out DIR`, the page's saved
//! runs (a folder in the browser's origin-private file system) and a run zip (Export run,
//! `wgpt export-run`, `wgpt train --resume run.zip`, Import run):
//!
//! ```text
//! config.json, model.safetensors, tokenizer.json   the model: an HF directory transformers loads
//! training_state.safetensors                         AdamW's moments, step, data RNG, settings
//! metrics.jsonl                                      every progress and evaluation record so far
//! corpus.txt                                         the text the run trains on
//! configuration_wgpt.py, modeling_wgpt.py            wgpt's own model type only: its code
//! ```
//!
//! A checkpoint replaces the first five together in one commit ([`dir::commit`]; www/js/runs.js
//! does the same in the browser); corpus.txt is written once, when the run starts. A run saved
//! before corpus.txt existed resolves its corpus from the reference in its settings (the file's
//! path, or the built-in task it regenerates). A model of wgpt's own type (no transformers class)
//! has its code beside the weights in run directories and zips ([`code_files`]), written with
//! each checkpoint and never read back: config.json says what it is. A LoRA run's adapter is
//! written the same way in peft's two files ([`adapter_files`]). The page's saved runs keep
//! the six files; its Export run adds the code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, STATE_FILE};
use crate::dynamics::Dynamics;
use crate::hf;
use crate::hf::peft::{self, Adapter, PeftConfig};
use crate::model::HfClass;
use crate::run::{CheckpointFiles, Eval, Progress, RunState};
use crate::{Error, Result};

pub const CONFIG_FILE: &str = "config.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CORPUS_FILE: &str = "corpus.txt";

/// The files one checkpoint commits, in the order they are written.
pub const CHECKPOINT_FILES: [&str; 5] = [CONFIG_FILE, TOKENIZER_FILE, MODEL_FILE, STATE_FILE, METRICS_FILE];

/// A LoRA run's adapter in peft's files, written with each checkpoint ([`adapter_files`]).
pub const ADAPTER_FILES: [&str; 2] = [peft::CONFIG_FILE, peft::TENSORS_FILE];

/// Every file of a run, in the order a run zip holds them.
pub const RUN_FILES: [&str; 6] = [CONFIG_FILE, TOKENIZER_FILE, MODEL_FILE, STATE_FILE, METRICS_FILE, CORPUS_FILE];

/// A run's files in memory.
pub struct RunFiles {
    pub checkpoint: CheckpointFiles,
    pub metrics: Metrics,
    /// corpus.txt; None where the run refers to its corpus instead (see the module docs).
    pub corpus: Option<String>,
}

impl RunFiles {
    /// From files by name (a zip's entries, a folder's files, the page's saved run); `what`
    /// names the source in errors. The four checkpoint files are required, metrics.jsonl and
    /// corpus.txt are not; every text file must be UTF-8.
    pub fn from_named(what: &str, mut files: BTreeMap<String, Vec<u8>>) -> Result<RunFiles> {
        let missing: Vec<&str> = [CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, STATE_FILE]
            .into_iter()
            .filter(|name| !files.contains_key(*name))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Format(format!(
                "{what} lacks {}: a run holds config.json, model.safetensors, tokenizer.json, \
                 training_state.safetensors, metrics.jsonl and corpus.txt (Export run in the page, or `wgpt \
                 export-run DIR run.zip`, makes one)",
                missing.join(", ")
            )));
        }
        let mut text = |name: &str| -> Result<Option<String>> {
            files
                .remove(name)
                .map(|bytes| {
                    String::from_utf8(bytes).map_err(|_| Error::Format(format!("{what}: {name} is not UTF-8 text")))
                })
                .transpose()
        };
        let config_json = text(CONFIG_FILE)?.unwrap_or_default();
        let tokenizer_json = text(TOKENIZER_FILE)?.unwrap_or_default();
        let metrics = Metrics::parse(&format!("{what}: {METRICS_FILE}"), &text(METRICS_FILE)?.unwrap_or_default())?;
        let corpus = text(CORPUS_FILE)?;
        let take = |files: &mut BTreeMap<String, Vec<u8>>, name: &str| files.remove(name).unwrap_or_default();
        let checkpoint = CheckpointFiles {
            config_json,
            model: take(&mut files, MODEL_FILE),
            tokenizer_json,
            state: take(&mut files, STATE_FILE),
        };
        Ok(RunFiles { checkpoint, metrics, corpus })
    }

    /// Each file's name and bytes, in [`RUN_FILES`] order (corpus.txt only where there is one),
    /// then the [`code_files`].
    pub fn named(&self) -> Vec<(&'static str, &[u8])> {
        let mut files = checkpoint_files(&self.checkpoint, &self.metrics);
        if let Some(corpus) = &self.corpus {
            files.push((CORPUS_FILE, corpus.as_bytes()));
        }
        files.extend(code_files(&self.checkpoint));
        files
    }
}

/// A checkpoint and the metrics so far as the files one commit writes, in [`CHECKPOINT_FILES`]
/// order.
pub fn checkpoint_files<'a>(c: &'a CheckpointFiles, metrics: &'a Metrics) -> Vec<(&'static str, &'a [u8])> {
    vec![
        (CONFIG_FILE, c.config_json.as_bytes()),
        (TOKENIZER_FILE, c.tokenizer_json.as_bytes()),
        (MODEL_FILE, &c.model),
        (STATE_FILE, &c.state),
        (METRICS_FILE, metrics.text().as_bytes()),
    ]
}

/// The code files beside a checkpoint's weights where its config.json is wgpt's own model type
/// ([`hf::code_files`]); none for a transformers class.
pub fn code_files(c: &CheckpointFiles) -> Vec<(&'static str, &'static [u8])> {
    let code = hf::read_config(&c.config_json).map_or(&[][..], |config| hf::code_files(&config));
    code.iter().map(|(name, text)| (*name, text.as_bytes())).collect()
}

/// A LoRA run's adapter as peft saves it, beside the checkpoint (which keeps the adapters in its
/// training state for resuming): adapter_config.json, naming `base` as base_model_name_or_path,
/// and adapter_model.safetensors under peft's names, so that `PeftModel.from_pretrained(base,
/// run_dir)` and `wgpt forward --model RUN_DIR --base BASE` load the run. None for a full run,
/// or for a base of wgpt's own model type (peft has no class for it).
pub fn adapter_files(c: &CheckpointFiles, base: &str) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let cfg = hf::parse_config(&c.config_json)?;
    let (tensors, state): (_, RunState) = checkpoint::parse_state(STATE_FILE, &c.state, &cfg)?;
    let Some(lc) = state.run.train.lora else { return Ok(vec![]) };
    if HfClass::of(&cfg) == HfClass::Wgpt {
        return Ok(vec![]);
    }
    let tensors = tensors.unwrap_or_default();
    let take = |name: String| tensors.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    // through the shortest decimal, so that an f32 of 0.05 stays 0.05 in the JSON
    let exact = |x: f32| x.to_string().parse::<f64>().unwrap_or(f64::from(x));
    let targets = lc.targets.list().into_iter().map(|t| t.module().to_string()).collect();
    let config = PeftConfig::lora(base, &cfg, lc.rank, exact(lc.alpha), targets, exact(lc.dropout));
    let adapter = Adapter::new(config, &cfg, |site| {
        // lora.h.{l}.<module in the block> (attn.c_attn, self_attn.q_proj: the path's last two parts)
        let layer = site.internal.split('.').nth(1).unwrap_or_default();
        let mut parts = site.module.rsplit('.');
        let (name, parent) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let stem = format!("lora.h.{layer}.{parent}.{name}");
        (take(format!("{stem}.lora_A")), take(format!("{stem}.lora_B")))
    })?;
    Ok(vec![
        (peft::CONFIG_FILE, adapter.config.to_json().into_bytes()),
        (peft::TENSORS_FILE, adapter.to_safetensors()?),
    ])
}

/// One line of metrics.jsonl: a progress report or an evaluation, each with its step (`iter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    Progress {
        iter: u64,
        loss: f32,
        lr: f32,
        tokens_per_sec: f64,
        ms_per_step: f64,
        /// Per-tensor training dynamics, on the steps that track them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dynamics: Option<Dynamics>,
    },
    Eval(Eval),
}

impl Record {
    pub fn iter(&self) -> u64 {
        match self {
            Record::Progress { iter, .. } => *iter,
            Record::Eval(e) => e.iter,
        }
    }
}

impl From<&Progress> for Record {
    fn from(p: &Progress) -> Record {
        Record::Progress {
            iter: p.step,
            loss: p.loss,
            lr: p.lr,
            tokens_per_sec: p.tokens_per_sec,
            ms_per_step: p.ms_per_step,
            dynamics: p.dynamics.clone(),
        }
    }
}

/// The loss curves of a run: (step, train loss) of each progress report and (step, val loss) of
/// each evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub train: Vec<(u64, f32)>,
    pub val: Vec<(u64, f32)>,
}

/// metrics.jsonl: one JSON record a line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    records: Vec<Record>,
    text: String,
}

impl Metrics {
    /// Parses metrics.jsonl (blank lines are skipped); `what` names it in errors.
    pub fn parse(what: &str, text: &str) -> Result<Metrics> {
        let mut m = Metrics::default();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let record = serde_json::from_str(line).map_err(|e| {
                Error::Format(format!("{what}: line {} is not a progress or evaluation record: {e}", i + 1))
            })?;
            m.push(record);
        }
        Ok(m)
    }

    pub fn push(&mut self, record: Record) {
        // a record of numbers and an Option always serializes
        self.text.push_str(&serde_json::to_string(&record).unwrap_or_default());
        self.text.push('\n');
        self.records.push(record);
    }

    /// Drops the records after `step` (a run going on from its checkpoint of that step).
    pub fn truncate(&mut self, step: u64) {
        if self.records.iter().any(|r| r.iter() > step) {
            let kept: Vec<Record> = self.records.drain(..).filter(|r| r.iter() <= step).collect();
            *self = Metrics::default();
            kept.into_iter().for_each(|r| self.push(r));
        }
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn history(&self) -> History {
        let mut h = History::default();
        for r in &self.records {
            match r {
                Record::Progress { iter, loss, .. } => h.train.push((*iter, *loss)),
                Record::Eval(e) => h.val.push((e.iter, e.val_loss)),
            }
        }
        h
    }
}

/// A run directory on disk, written so that a process killed at any moment leaves the last
/// complete checkpoint loadable.
///
/// A commit writes each file of the checkpoint to `.NAME.tmp` (synced), then the list of names
/// to `.commit.tmp` (synced), renames that to `.commit` (the commit point: one rename), renames
/// each `.NAME.tmp` to NAME and removes `.commit`. Opening a run ([`read`]) first finishes an
/// interrupted commit: with `.commit` present every temporary file is complete, so the renames
/// are redone (rolled forward); without it the temporary files are removed (rolled back) and the
/// previous checkpoint, untouched, is the run.
#[cfg(not(target_arch = "wasm32"))]
pub mod dir {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::Path;
    use std::time::Duration;

    use super::{RunFiles, ADAPTER_FILES, CORPUS_FILE, RUN_FILES};
    use crate::hf::CODE_FILES;
    use crate::{Error, Result};

    const COMMIT: &str = ".commit";

    fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
        Error::Io(format!("cannot {what} {}: {e}", path.display()))
    }

    /// Whether `name` is one of a run's files: [`RUN_FILES`] or a code file.
    fn is_run_file(name: &str) -> bool {
        RUN_FILES.contains(&name) || CODE_FILES.iter().any(|(n, _)| *n == name) || ADAPTER_FILES.contains(&name)
    }

    fn tmp(name: &str) -> String {
        format!(".{name}.tmp")
    }

    /// Test hook: sleeps `pause` after each step of a commit (none where it is zero), widening the
    /// window a kill test aims at (tests/kill.rs, through [`crate::options::Options::commit_pause`]).
    fn hold(pause: Duration) {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }

    /// Writes `bytes` to `path` and syncs it to disk.
    fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
        let mut f = std::fs::File::create(path).map_err(|e| io("create", path, e))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| io("write", path, e))
    }

    /// Syncs the directory itself, so that its renames are on disk (a no-op where directories
    /// cannot be opened, as on Windows).
    fn sync_dir(dir: &Path) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }

    /// Writes `files` (name, bytes) into `dir` as one commit (see the module docs), sleeping
    /// `pause` after each of its steps (a test hook; zero but in tests/kill.rs).
    pub fn commit(dir: &Path, files: &[(&str, &[u8])], pause: Duration) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        for (name, bytes) in files {
            write_synced(&dir.join(tmp(name)), bytes)?;
            hold(pause);
        }
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        let list = serde_json::to_vec(&names).map_err(|e| Error::Format(format!("cannot list the commit: {e}")))?;
        write_synced(&dir.join(tmp(COMMIT)), &list)?;
        std::fs::rename(dir.join(tmp(COMMIT)), dir.join(COMMIT)).map_err(|e| io("write", &dir.join(COMMIT), e))?;
        sync_dir(dir);
        hold(pause);
        roll(dir, pause)
    }

    /// Finishes an interrupted commit in `dir` (rolls it forward), or removes the temporary
    /// files of one that did not reach its commit point (rolls it back).
    pub fn finish(dir: &Path) -> Result<()> {
        roll(dir, Duration::ZERO)
    }

    /// [`finish`], sleeping `pause` after each rename.
    fn roll(dir: &Path, pause: Duration) -> Result<()> {
        let marker = dir.join(COMMIT);
        match std::fs::read(&marker) {
            Ok(list) => {
                let names: Vec<String> = serde_json::from_slice(&list)
                    .map_err(|e| Error::Format(format!("{} is not a list of file names: {e}", marker.display())))?;
                for name in names.iter().filter(|n| is_run_file(n)) {
                    let from = dir.join(tmp(name));
                    if from.exists() {
                        std::fs::rename(&from, dir.join(name)).map_err(|e| io("write", &dir.join(name), e))?;
                        hold(pause);
                    }
                }
                sync_dir(dir);
                std::fs::remove_file(&marker).map_err(|e| io("remove", &marker, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let code = CODE_FILES.iter().map(|(n, _)| *n);
                for name in RUN_FILES.into_iter().chain(code).chain(ADAPTER_FILES).map(tmp).chain([tmp(COMMIT)]) {
                    let _ = std::fs::remove_file(dir.join(name));
                }
            }
            Err(e) => return Err(io("read", &marker, e)),
        }
        Ok(())
    }

    /// Writes corpus.txt into `dir` where it is not there yet (a temporary name, then a rename).
    pub fn write_corpus(dir: &Path, text: &str) -> Result<()> {
        let path = dir.join(CORPUS_FILE);
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let t = dir.join(tmp(CORPUS_FILE));
        write_synced(&t, text.as_bytes())?;
        std::fs::rename(&t, &path).map_err(|e| io("write", &path, e))
    }

    /// Opens the run in `dir`: finishes an interrupted commit, then reads its files.
    pub fn read(dir: &Path) -> Result<RunFiles> {
        finish(dir)?;
        let mut files = BTreeMap::new();
        for name in RUN_FILES {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    files.insert(name.to_string(), bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("read", &path, e)),
            }
        }
        RunFiles::from_named(&dir.display().to_string(), files)
    }

    /// Whether `dir` holds a run (its training state) that writing another run there would
    /// overwrite.
    pub fn holds_a_run(dir: &Path) -> bool {
        dir.join(crate::checkpoint::STATE_FILE).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_round_trip_and_truncate() {
        let mut m = Metrics::default();
        let p = |step, loss| Record::Progress {
            iter: step,
            loss,
            lr: 1e-3,
            tokens_per_sec: 10.0,
            ms_per_step: 5.0,
            dynamics: None,
        };
        m.push(p(1, 3.5));
        m.push(Record::Eval(Eval { iter: 2, train_loss: 3.0, val_loss: 3.25, accuracy: None }));
        m.push(p(3, 2.75));
        let again = Metrics::parse("metrics.jsonl", m.text()).unwrap();
        assert_eq!(again, m);
        assert_eq!(m.history(), History { train: vec![(1, 3.5), (3, 2.75)], val: vec![(2, 3.25)] });
        m.truncate(2);
        assert_eq!(m.records().len(), 2);
        assert_eq!(Metrics::parse("metrics.jsonl", m.text()).unwrap(), m);
        let err = Metrics::parse("metrics.jsonl", "{\"iter\": 1}\nnot json\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_run_lacking_a_checkpoint_file_is_refused_with_what_it_needs() {
        let files = BTreeMap::from([("config.json".to_string(), b"{}".to_vec())]);
        let err = RunFiles::from_named("run.zip", files).err().unwrap().to_string();
        assert!(err.contains("run.zip lacks model.safetensors, tokenizer.json, training_state.safetensors"), "{err}");
        assert!(err.contains("wgpt export-run"), "{err}");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn an_interrupted_commit_rolls_forward_after_its_commit_point_and_back_before_it() {
        let d = std::env::temp_dir().join(format!("wgpt-commit-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        dir::commit(&d, &[("config.json", b"old"), ("metrics.jsonl", b"1\n")], std::time::Duration::ZERO).unwrap();
        // killed before the commit point: a temporary file, no .commit
        std::fs::write(d.join(".config.json.tmp"), b"half").unwrap();
        dir::finish(&d).unwrap();
        assert_eq!(std::fs::read(d.join("config.json")).unwrap(), b"old");
        assert!(!d.join(".config.json.tmp").exists());
        // killed after it, one file renamed and one not
        std::fs::write(d.join(".metrics.jsonl.tmp"), b"2\n").unwrap();
        std::fs::write(d.join("config.json"), b"new").unwrap();
        std::fs::write(d.join(".commit"), br#"["config.json","metrics.jsonl"]"#).unwrap();
        dir::finish(&d).unwrap();
        assert_eq!(std::fs::read(d.join("config.json")).unwrap(), b"new");
        assert_eq!(std::fs::read(d.join("metrics.jsonl")).unwrap(), b"2\n");
        assert!(!d.join(".commit").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
