//! A parity file's `train` metadata: the nanoGPT training its `expected.stepN.*` parameters come
//! from (tests/fixtures/parity_train.py): `steps` optimizer steps on the file's batch, each over
//! `grad_accum` micro-batches (x's rows cut into equal parts), global-norm clipping at
//! `grad_clip`, and nanoGPT's schedule (`lr·(it+1)/(warmup_iters+1)` during warmup, cosine to
//! `min_lr` at `lr_decay_iters`). `lr` is the peak of the groups the optimizer's lr names
//! (AdamW's or SGD's); Muon's matrices keep the optimizer's lr as theirs.

use std::collections::HashMap;

use serde::Deserialize;

use crate::train::{Schedule, TrainConfig};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainMeta {
    pub steps: usize,
    pub warmup_iters: usize,
    pub lr_decay_iters: usize,
    pub lr: f32,
    pub min_lr: f32,
    pub grad_clip: f32,
    pub grad_accum: usize,
}

impl TrainMeta {
    /// The file's `train` metadata, or None where it has none; refused (naming the field) where
    /// it is malformed or does not fit a batch of `b` rows.
    pub fn parse(what: &str, meta: &HashMap<String, String>, b: usize) -> Result<Option<TrainMeta>> {
        let Some(text) = meta.get("train") else { return Ok(None) };
        let bad = |m: String| Error::Format(format!("{what}: metadata \"train\" {m}"));
        let t: TrainMeta = serde_json::from_str(text).map_err(|e| bad(format!("is malformed: {e}")))?;
        if t.steps == 0 {
            return Err(bad("has steps 0; it needs at least one step".into()));
        }
        if t.grad_accum == 0 || !b.is_multiple_of(t.grad_accum) {
            return Err(bad(format!("has grad_accum {}, which does not split the batch's {b} rows", t.grad_accum)));
        }
        if t.lr_decay_iters <= t.warmup_iters {
            return Err(bad(format!(
                "has lr_decay_iters {} <= warmup_iters {}; the cosine needs the decay to end after warmup",
                t.lr_decay_iters, t.warmup_iters
            )));
        }
        Ok(Some(t))
    }

    /// `cfg` (the file's optimizer at batch `b`) training as this metadata says: micro-batches
    /// of b / grad_accum rows, nanoGPT's cosine schedule, clipping.
    pub fn apply(&self, cfg: TrainConfig) -> TrainConfig {
        TrainConfig {
            batch_size: cfg.batch_size / self.grad_accum,
            grad_accum: self.grad_accum,
            lr: self.lr,
            min_lr: self.min_lr,
            warmup_iters: self.warmup_iters,
            lr_decay_iters: self.lr_decay_iters,
            grad_clip: self.grad_clip,
            lr_schedule: Schedule::Cosine,
            ..cfg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(text: &str) -> HashMap<String, String> {
        [("train".to_string(), text.to_string())].into()
    }

    #[test]
    fn train_metadata_parses_and_is_refused_by_name() {
        let ok = r#"{"steps": 8, "warmup_iters": 2, "lr_decay_iters": 6, "lr": 0.001, "min_lr": 0.0001,
                     "grad_clip": 1.0, "grad_accum": 2}"#;
        let t = TrainMeta::parse("f", &meta(ok), 4).unwrap().unwrap();
        let cfg = t.apply(TrainConfig { batch_size: 4, ..TrainConfig::default() });
        assert_eq!((cfg.batch_size, cfg.grad_accum, cfg.warmup_iters, cfg.lr_decay_iters), (2, 2, 2, 6));
        assert_eq!(cfg.lr_at(0), 1e-3 / 3.0, "nanoGPT's warmup: lr·(it+1)/(warmup+1)");
        assert_eq!(cfg.lr_at(7), 1e-4);
        assert_eq!(TrainMeta::parse("f", &HashMap::new(), 4).unwrap(), None);
        for (text, b, says) in [
            (ok, 3, "does not split the batch's 3 rows"),
            (&ok.replace("\"steps\": 8", "\"steps\": 0"), 4, "steps 0"),
            (&ok.replace("\"lr_decay_iters\": 6", "\"lr_decay_iters\": 2"), 4, "lr_decay_iters 2"),
            (&ok.replace("\"grad_clip\": 1.0", "\"clip\": 1.0"), 4, "is malformed"),
        ] {
            let err = TrainMeta::parse("f", &meta(text), b).unwrap_err().to_string();
            assert!(err.contains("metadata \"train\"") && err.contains(says), "{err}");
        }
    }
}
