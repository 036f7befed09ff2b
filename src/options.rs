//! What a caller chooses for a session of wgpt, handed down explicitly: the kernel family, the
//! precision, the submit budget, and the faults the tests inject. The library never reads the
//! environment: the CLI fills [`Options`] from its flags and the variables named in [`vars`]
//! (through [`Options::from_vars`]), the tests do the same, and the page uses the default.

use std::time::Duration;

use crate::gpu::DeviceSettings;
use crate::kernels::Family;
use crate::precision::Precision;
use crate::submit::DEFAULT_BUDGET_MS;
use crate::{Error, Result};

/// The environment variables the CLI and the tests read into [`Options`].
pub mod vars {
    /// The kernel family (auto when unset or empty).
    pub const KERNELS: &str = "WGPT_KERNELS";
    /// The submit budget in milliseconds (0: one submit per step).
    pub const SUBMIT_BUDGET_MS: &str = "WGPT_SUBMIT_BUDGET_MS";
    /// `1` asks for a device without shader-f16.
    pub const NO_SHADER_F16: &str = "WGPT_NO_SHADER_F16";
    /// The device's memory in bytes.
    pub const GPU_MEMORY: &str = "WGPT_GPU_MEMORY";
    /// The training step after which `wgpt train` destroys its device.
    pub const LOSE_DEVICE_AT: &str = "WGPT_LOSE_DEVICE_AT";
    /// Milliseconds a run directory's commit sleeps after each of its steps.
    pub const COMMIT_PAUSE_MS: &str = "WGPT_COMMIT_PAUSE_MS";
}

/// Everything a front end chooses once for the library: the default is what the page runs with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Which kernel variants run (auto: per adapter, tuned or built in).
    pub family: Family,
    /// The precision asked for (the CLI's `--precision`; the page asks per request).
    pub precision: Precision,
    /// Submits are split where one would run longer than this many milliseconds (src/submit.rs);
    /// 0: one submit always.
    pub submit_budget_ms: f64,
    /// What the device is asked for: test injections of a missing shader-f16 or a small memory.
    pub device: DeviceSettings,
    /// Fault injection: the GPU device is destroyed right after this training step, as a driver
    /// reset or a GPU hang would, to exercise the recovery.
    pub lose_device_at: Option<u64>,
    /// Test hook: a run directory's commit sleeps this long after each of its steps, widening the
    /// window a kill test aims at (tests/kill.rs).
    pub commit_pause: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            family: Family::Auto,
            precision: Precision::F32,
            submit_budget_ms: DEFAULT_BUDGET_MS,
            device: DeviceSettings::default(),
            lose_device_at: None,
            commit_pause: Duration::ZERO,
        }
    }
}

impl Options {
    /// Options from the variables in [`vars`], each looked up by `var` (the CLI and the tests hand
    /// it the process's environment); an unset variable leaves its default. A value that does not
    /// parse is an error naming the variable, but for the commit pause, a test hook that ignores one.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Options> {
        let mut o = Options::default();
        if let Some(name) = var(vars::KERNELS).filter(|v| !v.trim().is_empty()) {
            o.family = Family::parse(&name)?;
        }
        if let Some(s) = var(vars::SUBMIT_BUDGET_MS) {
            let ms = s.trim().parse::<f64>().map_err(|_| {
                Error::Input(format!(
                    "{}={s:?} is not a number of milliseconds (0: one submit per step)",
                    vars::SUBMIT_BUDGET_MS
                ))
            })?;
            o.submit_budget_ms = Options::check_budget(ms, vars::SUBMIT_BUDGET_MS)?;
        }
        o.device.hide_shader_f16 = var(vars::NO_SHADER_F16).is_some_and(|v| v == "1");
        if let Some(v) = var(vars::GPU_MEMORY) {
            let bytes =
                v.parse().map_err(|_| Error::Input(format!("{} must be bytes, got {v:?}", vars::GPU_MEMORY)))?;
            o.device.memory = Some(bytes);
        }
        if let Some(v) = var(vars::LOSE_DEVICE_AT) {
            let step = v
                .parse()
                .map_err(|_| Error::Input(format!("{} must be a step number, got {v:?}", vars::LOSE_DEVICE_AT)))?;
            o.lose_device_at = Some(step);
        }
        if let Some(ms) = var(vars::COMMIT_PAUSE_MS).and_then(|v| v.parse().ok()) {
            o.commit_pause = Duration::from_millis(ms);
        }
        Ok(o)
    }

    /// `ms` where it is a budget (finite and at least 0); else an error naming `what` (the flag
    /// or variable it came from).
    pub fn check_budget(ms: f64, what: &str) -> Result<f64> {
        if ms.is_finite() && ms >= 0.0 {
            Ok(ms)
        } else {
            Err(Error::Input(format!(
                "{what} must be a number of milliseconds >= 0 (0: one submit per step), got {ms}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Options> {
        Options::from_vars(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn unset_variables_leave_the_defaults_the_page_runs_with() {
        let o = from(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!((o.family, o.submit_budget_ms), (Family::Auto, DEFAULT_BUDGET_MS));
        assert_eq!(from(&[(vars::KERNELS, " ")]).unwrap().family, Family::Auto);
    }

    #[test]
    fn variables_fill_the_options() {
        let o = from(&[
            (vars::KERNELS, "portable"),
            (vars::SUBMIT_BUDGET_MS, " 0 "),
            (vars::NO_SHADER_F16, "1"),
            (vars::GPU_MEMORY, "1000"),
            (vars::LOSE_DEVICE_AT, "15"),
            (vars::COMMIT_PAUSE_MS, "30"),
        ])
        .unwrap();
        assert_eq!((o.family, o.submit_budget_ms), (Family::Portable, 0.0));
        assert_eq!(o.device, DeviceSettings { hide_shader_f16: true, memory: Some(1000) });
        assert_eq!((o.lose_device_at, o.commit_pause), (Some(15), Duration::from_millis(30)));
        assert!(!from(&[(vars::NO_SHADER_F16, "0")]).unwrap().device.hide_shader_f16);
        assert_eq!(from(&[(vars::COMMIT_PAUSE_MS, "soon")]).unwrap().commit_pause, Duration::ZERO);
    }

    #[test]
    fn bad_values_are_errors_naming_their_variable() {
        let err = |pairs: &[(&str, &str)]| from(pairs).unwrap_err().to_string();
        assert!(err(&[(vars::KERNELS, "fast")]).contains("WGPT_KERNELS"));
        let e = err(&[(vars::SUBMIT_BUDGET_MS, "half a second")]);
        assert!(e.contains("WGPT_SUBMIT_BUDGET_MS=\"half a second\" is not a number"), "{e}");
        let e = err(&[(vars::SUBMIT_BUDGET_MS, "-1")]);
        assert!(e.contains("WGPT_SUBMIT_BUDGET_MS must be a number of milliseconds >= 0"), "{e}");
        assert!(err(&[(vars::GPU_MEMORY, "lots")]).contains("WGPT_GPU_MEMORY must be bytes, got \"lots\""));
        assert!(err(&[(vars::LOSE_DEVICE_AT, "x")]).contains("WGPT_LOSE_DEVICE_AT must be a step number"));
        assert!(Options::check_budget(-1.0, "--submit-budget-ms").is_err());
        assert!(Options::check_budget(f64::NAN, "--submit-budget-ms").is_err());
        assert!(Options::check_budget(f64::INFINITY, "--submit-budget-ms").is_err());
        assert_eq!(Options::check_budget(0.0, "--submit-budget-ms").unwrap(), 0.0);
    }
}
