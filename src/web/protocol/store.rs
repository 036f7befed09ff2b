//! The page's store of saved runs (www/js/runs.js, in the worker beside the engine): what the page
//! asks of it ([`StoreRequest`]) and what it tells the page ([`StoreEvent`]). The worker answers
//! these itself; every other message passes between the page and the engine as it is. The store
//! writes the engine's `checkpoint` events into the browser's storage and its `tune_cache` events
//! too, and reports the failures of its own work as `error` events (scopes `storage`,
//! `checkpoint`, `restore`).

use serde::{Deserialize, Serialize};
use strum::VariantNames;

use crate::run::format::History;
use crate::run::RunConfig;

/// What the page asks of the store of saved runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum StoreRequest {
    /// The saved runs (a `runs` event).
    Runs,
    /// Delete saved run `id` (then a `runs` event).
    DeleteRun { id: String },
    /// Go on with saved run `id`: the store reads its files and hands them to the engine as a
    /// `restore` request (with `lr`, where given).
    RestoreRun {
        id: String,
        #[serde(default)]
        lr: Option<f32>,
    },
    /// The loss curves of saved runs `ids` (a `run_histories` event), for Compare runs.
    RunHistories { ids: Vec<String> },
    /// Whether `bytes` (full checkpoints) and `model_bytes` (model-only ones) more fit in the
    /// browser's storage (a `room` event).
    Room {
        bytes: u64,
        #[serde(default)]
        model_bytes: Option<u64>,
    },
    /// Wait `ms` between the steps of each commit (tests: `wgptDebug.commitPause(ms)`).
    CommitPause { ms: u64 },
}

/// What the list of saved runs shows of one, read from its own files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    pub id: String,
    /// The corpus's name (a task's "... task").
    pub name: String,
    pub step: u64,
    pub max_iters: usize,
    /// "N layers, C dims".
    pub shape: String,
    /// The run's files' bytes in the store.
    pub bytes: u64,
    /// When its training state was written (ms since 1970).
    pub saved_at: f64,
    /// The run's settings (its checkpoint's), for Compare runs' legend.
    pub settings: RunConfig,
    /// Saved without AdamW's moments.
    pub model_only: bool,
    /// Another tab of the page trains it: it cannot be resumed or deleted here meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_elsewhere: bool,
}

/// One saved run's loss curves, or why they could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCurves {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the store of saved runs tells the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum StoreEvent {
    /// A checkpoint is saved: the run's summary; `copied` where it was copied in memory rather
    /// than staged (the store's staging files were not ready).
    Saved {
        #[serde(flatten)]
        run: Box<SavedRun>,
        copied: bool,
    },
    /// Every saved run, newest first, with the storage used and quota (where the browser says),
    /// whether the browser keeps it under storage pressure, and why there is no storage where
    /// there is none.
    Runs {
        runs: Vec<SavedRun>,
        usage: Option<f64>,
        quota: Option<f64>,
        #[serde(default)]
        persisted: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unavailable: Option<String>,
    },
    /// The loss curves of the runs a `run_histories` request named.
    RunHistories { runs: Vec<RunCurves> },
    /// Whether the checkpoints of a `room` request's sizes fit.
    Room { bytes: u64, fits: bool, model_bytes: Option<u64>, model_fits: bool },
}
