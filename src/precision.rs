//! The numeric precision a command runs in (`--precision f32|f16|auto`, the page's choice):
//! f32 everywhere (HF's numbers), or f16 weights with f32 accumulation where the adapter has
//! shader-f16: for inference, and for mixed-precision training (the matrix products read f16
//! copies of the f32 master weights; activations, gradients and AdamW stay f32). Without
//! shader-f16, f16 falls back to f32 with a message, never an error.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights and activations: results equal to HF's (the CLI's default).
    #[default]
    F32,
    /// f16 weights of the matrix products, f32 activations and accumulation.
    F16,
    /// f16 for inference where the adapter has shader-f16, f32 for training (the page's
    /// default for generation).
    Auto,
}

/// What a precision is for: auto means f16 for inference and f32 for training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Inference,
    Training,
}

/// The precision that runs ([`Precision::F32`] or [`Precision::F16`]) and, where it is not the
/// one asked for, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub runs: Precision,
    pub note: Option<String>,
}

impl Resolved {
    pub fn f16(&self) -> bool {
        self.runs == Precision::F16
    }
}

impl Precision {
    pub const NAMES: &'static str = "f32, f16 or auto";

    pub fn parse(name: &str) -> Result<Precision> {
        match name {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "auto" => Ok(Precision::Auto),
            _ => Err(Error::Input(format!("unknown precision {name:?}; use {}", Precision::NAMES))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Auto => "auto",
        }
    }

    /// What runs for `purpose` on an adapter with (or without) shader-f16. An f16 that cannot
    /// run gives f32 and a note saying why; auto picks quietly (f32 for training).
    pub fn resolve(self, purpose: Purpose, shader_f16: bool) -> Resolved {
        let f32 = |note: Option<String>| Resolved { runs: Precision::F32, note };
        match (self, purpose) {
            (Precision::F32, _) | (Precision::Auto, Purpose::Training) => f32(None),
            (Precision::F16, _) | (Precision::Auto, Purpose::Inference) if shader_f16 => {
                Resolved { runs: Precision::F16, note: None }
            }
            (Precision::Auto, Purpose::Inference) => f32(None),
            (Precision::F16, _) => {
                f32(Some("f16 asked, but this GPU adapter has no shader-f16 (WGSL f16); running in f32 instead".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_falls_back_with_a_note_and_auto_quietly() {
        let inf = Purpose::Inference;
        assert_eq!(Precision::F16.resolve(inf, true), Resolved { runs: Precision::F16, note: None });
        let r = Precision::F16.resolve(inf, false);
        assert_eq!(r.runs, Precision::F32);
        assert!(r.note.unwrap().contains("no shader-f16"));
        assert_eq!(Precision::Auto.resolve(inf, true).runs, Precision::F16);
        assert_eq!(Precision::Auto.resolve(inf, false), Resolved { runs: Precision::F32, note: None });
        let train = Purpose::Training;
        assert_eq!(Precision::Auto.resolve(train, true), Resolved { runs: Precision::F32, note: None });
        assert_eq!(Precision::F16.resolve(train, true), Resolved { runs: Precision::F16, note: None });
        assert!(Precision::F16.resolve(train, false).note.unwrap().contains("no shader-f16"));
        assert_eq!(serde_json::to_string(&Precision::F16).unwrap(), "\"f16\"");
        assert_eq!(Precision::F32.resolve(inf, true), Resolved { runs: Precision::F32, note: None });
        for p in [Precision::F32, Precision::F16, Precision::Auto] {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
        assert!(Precision::parse("bf16").unwrap_err().to_string().contains("f32, f16 or auto"));
    }
}
