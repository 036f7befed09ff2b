//! The learning-rate schedules: nanoGPT's get_lr (linear warmup, cosine decay to min_lr at
//! lr_decay_iters), warmup-stable-decay (hold the lr, then cool down linearly over the last
//! fifth) and constant (after warmup). The schedule scales every group's lr by the same factor:
//! Muon's matrices decay from muon_lr to muon_lr · min_lr / lr.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

use super::TrainConfig;

/// The shape of the learning rate over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// nanoGPT's: cosine from lr to min_lr at lr_decay_iters.
    #[default]
    Cosine,
    /// Warmup-stable-decay: lr until the last fifth of lr_decay_iters, then linear to min_lr.
    Wsd,
    /// lr after warmup, min_lr unused.
    Constant,
}

impl Schedule {
    pub const ALL: [Schedule; 3] = [Schedule::Cosine, Schedule::Wsd, Schedule::Constant];

    /// Its name in settings and flags.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Cosine => "cosine",
            Schedule::Wsd => "wsd",
            Schedule::Constant => "constant",
        }
    }

    pub fn parse(name: &str) -> Result<Schedule> {
        Schedule::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| Error::Input(format!("unknown lr schedule {name:?}: choose cosine, wsd or constant")))
    }
}

/// The step WSD's cooldown starts at: the last fifth of `decay_iters` (not before warmup ends).
pub fn wsd_cooldown_start(warmup: usize, decay_iters: usize) -> usize {
    (decay_iters - decay_iters / 5).max(warmup)
}

impl TrainConfig {
    /// The learning rate of step `it` (0-based) of the groups whose peak is `lr`.
    pub fn lr_at(&self, it: usize) -> f32 {
        self.scheduled(self.lr, self.min_lr, it)
    }

    /// Muon's learning rate at step `it`: muon_lr under the same schedule, its floor
    /// muon_lr · min_lr / lr.
    pub fn muon_lr_at(&self, it: usize) -> f32 {
        let muon_lr = self.optimizer.muon_lr;
        let floor = if self.lr > 0.0 { (muon_lr as f64 * self.min_lr as f64 / self.lr as f64) as f32 } else { 0.0 };
        self.scheduled(muon_lr, floor, it)
    }

    /// A group's lr at step `it` from `peak` to `floor`: linear warmup, then the schedule.
    fn scheduled(&self, peak: f32, floor: f32, it: usize) -> f32 {
        let (warmup, decay) = (self.warmup_iters, self.lr_decay_iters);
        if it < warmup {
            return peak * (it + 1) as f32 / (warmup + 1) as f32;
        }
        if self.lr_schedule == Schedule::Constant {
            return peak;
        }
        if it > decay || decay <= warmup {
            return floor;
        }
        let coeff = match self.lr_schedule {
            Schedule::Wsd => {
                let start = wsd_cooldown_start(warmup, decay);
                if it < start {
                    return peak;
                }
                (decay - it) as f64 / (decay - start) as f64
            }
            _ => {
                let ratio = (it - warmup) as f64 / (decay - warmup) as f64;
                0.5 * (1.0 + (std::f64::consts::PI * ratio).cos())
            }
        };
        (floor as f64 + coeff * (peak - floor) as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{Optimizer, OptimizerConfig};

    fn cfg(lr_schedule: Schedule) -> TrainConfig {
        let optimizer = OptimizerConfig::of(Optimizer::Muon);
        TrainConfig {
            warmup_iters: 100,
            lr_decay_iters: 2000,
            lr: 1e-3,
            min_lr: 1e-4,
            optimizer,
            lr_schedule,
            ..TrainConfig::default()
        }
    }

    /// nanoGPT's get_lr, written out again.
    fn nanogpt(it: usize) -> f64 {
        let (lr, min_lr, warmup, decay) = (1e-3f64, 1e-4f64, 100.0, 2000.0);
        let it = it as f64;
        if it < warmup {
            return lr * (it + 1.0) / (warmup + 1.0);
        }
        if it > decay {
            return min_lr;
        }
        let ratio = (it - warmup) / (decay - warmup);
        min_lr + 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos()) * (lr - min_lr)
    }

    #[test]
    fn cosine_is_nanogpts() {
        let c = cfg(Schedule::Cosine);
        for it in [0, 50, 99, 100, 101, 1000, 1600, 1999, 2000, 2001, 5000] {
            assert!((c.lr_at(it) as f64 - nanogpt(it)).abs() < 1e-9, "step {it}: {} vs {}", c.lr_at(it), nanogpt(it));
        }
        assert_eq!(c.lr_at(2000), c.min_lr);
    }

    #[test]
    fn wsd_holds_then_cools_down_over_the_last_fifth() {
        let c = cfg(Schedule::Wsd);
        assert_eq!(c.lr_at(0), cfg(Schedule::Cosine).lr_at(0), "the same warmup");
        assert_eq!((c.lr_at(100), c.lr_at(1599), c.lr_at(1600)), (1e-3, 1e-3, 1e-3));
        assert!((c.lr_at(1800) - 5.5e-4).abs() < 1e-9, "halfway down: {}", c.lr_at(1800));
        assert_eq!((c.lr_at(2000), c.lr_at(3000)), (1e-4, 1e-4));
    }

    #[test]
    fn constant_holds_after_warmup_and_every_group_scales_alike() {
        let c = cfg(Schedule::Constant);
        assert_eq!((c.lr_at(100), c.lr_at(2000), c.lr_at(9999)), (1e-3, 1e-3, 1e-3));
        let w = cfg(Schedule::Wsd);
        for it in [0, 99, 500, 1700, 2000] {
            let (a, m) = (w.lr_at(it) as f64 / w.lr as f64, w.muon_lr_at(it) as f64 / w.optimizer.muon_lr as f64);
            assert!((a - m).abs() < 1e-6, "step {it}: AdamW's factor {a}, Muon's {m}");
        }
        assert_eq!(Schedule::parse("wsd").unwrap(), Schedule::Wsd);
        assert!(Schedule::parse("linear").unwrap_err().to_string().contains("cosine, wsd or constant"));
    }
}
