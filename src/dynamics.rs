//! Training dynamics, per tensor under its HF name: the gradient's norm and RMS, the weights' RMS
//! and the last step's update-to-weight ratio ‖Δw‖/‖w‖ (Karpathy's "update:data ratio", the
//! weights after the step), with the global gradient norm before clipping and the lr. Computed on
//! the GPU inside the step's submit: a step whose dynamics are wanted runs AdamW's update in a
//! variant that also sums squares per chunk and per tensor (shaders/dynamics.wgsl), every other
//! step the plain update, so tracking costs only the steps it reads. [`Trainer::dynamics`] reads
//! back 3 floats per tensor.

use serde::{Deserialize, Serialize};

use crate::gpu::Tensor;
use crate::kernels::{NsConsts, Program, UpdateStats, SUMS};
use crate::params::PREFIX;
use crate::train::slots::sgd_consts;
use crate::train::{Rule, Trainer};
use crate::{Error, Result};

/// One tensor's dynamics at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDynamics {
    /// The HF name, e.g. `transformer.h.0.attn.c_attn.weight`.
    pub name: String,
    pub count: usize,
    /// ‖g‖₂ of the raw gradient (before clipping).
    pub grad_norm: f32,
    /// ‖g‖₂ / √count.
    pub grad_rms: f32,
    /// RMS of the weights after the step.
    pub weight_rms: f32,
    /// RMS of the step's update Δw (new minus old weights, clipping, Adam and decay included).
    pub update_rms: f32,
    /// ‖Δw‖ / ‖w‖ with w the weights after the step (0 where they are all zero).
    pub update_ratio: f32,
}

/// A group of tensors (the embeddings, one block, the final layer norm) at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerDynamics {
    /// `embeddings` (wte, wpe), `h.N` or `ln_f`.
    pub name: String,
    /// ‖g‖₂ over the group's tensors.
    pub grad_norm: f32,
    /// ‖Δw‖ / ‖w‖ over the group's tensors.
    pub update_ratio: f32,
}

/// The dynamics of one optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dynamics {
    /// The step they are of (1 = the first step taken).
    pub step: u64,
    /// The learning rate the step used.
    pub lr: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
    /// The clipping threshold (0 = no clipping).
    pub grad_clip: f32,
    /// Every parameter tensor, in state-dict order.
    pub tensors: Vec<TensorDynamics>,
}

impl Dynamics {
    /// The tensors grouped as the chart shows them: embeddings, each block, ln_f.
    pub fn layers(&self) -> Vec<LayerDynamics> {
        // (name, Σg², Σw², ΣΔw²)
        let mut groups: Vec<(String, f64, f64, f64)> = Vec::new();
        for t in &self.tensors {
            let local = t.name.strip_prefix(PREFIX).unwrap_or(&t.name);
            let group = match local.strip_prefix("h.") {
                Some(rest) => format!("h.{}", rest.split('.').next().unwrap_or(rest)),
                None if local.starts_with("ln_f.") => "ln_f".to_string(),
                None => "embeddings".to_string(),
            };
            let n = t.count as f64;
            let (g2, w2, d2) =
                ((t.grad_norm as f64).powi(2), n * (t.weight_rms as f64).powi(2), n * (t.update_rms as f64).powi(2));
            match groups.iter_mut().find(|g| g.0 == group) {
                Some(g) => (g.1, g.2, g.3) = (g.1 + g2, g.2 + w2, g.3 + d2),
                None => groups.push((group, g2, w2, d2)),
            }
        }
        groups
            .into_iter()
            .map(|(name, g2, w2, d2)| LayerDynamics { name, grad_norm: g2.sqrt() as f32, update_ratio: ratio(d2, w2) })
            .collect()
    }
}

/// √(num / den) where den > 0, else 0.
fn ratio(num: f64, den: f64) -> f32 {
    if den > 0.0 {
        (num / den).sqrt() as f32
    } else {
        0.0
    }
}

/// The update-with-statistics program and where it sums; made by [`Trainer::track_dynamics`].
pub(crate) struct DynamicsPlan {
    every: u64,
    pub(crate) update: Program,
    /// (tensors, SUMS): Σg², Σw², ΣΔw² per parameter tensor.
    sums: Tensor,
    /// The last step that ran `update`.
    pub(crate) last: Option<u64>,
    _scratch: [Tensor; 2],
}

impl DynamicsPlan {
    /// Whether step `step` (1-based) runs the statistics update.
    pub(crate) fn due(&self, step: u64) -> bool {
        step.is_multiple_of(self.every)
    }

    /// Records AdamW's update of every parameter with statistics: the trainer's own slots, in
    /// the row chunks its plain update binds, each tensor's chunks in one range of the partials.
    fn new(tr: &Trainer, every: u64) -> DynamicsPlan {
        let k = &*tr.model.kernels;
        let gpu = &k.gpu;
        let chunks = tr.slots.iter().flat_map(|s| &s.chunks);
        let partials =
            gpu.tensor("dynamics.partials", &[chunks.map(|c| UpdateStats::chunks(c.param.numel())).sum(), SUMS]);
        let mut update = Program::default();
        let mut ranges = Vec::with_capacity(2 * tr.slots.len());
        let mut slot = 0;
        for s in &tr.slots {
            ranges.push(slot as u32);
            if let Some((muon, t)) = s.muon(&tr.shared) {
                // a Muon matrix is one chunk
                let stats = (&partials, slot);
                k.muon.update_stats(&mut update, &k.matmul, muon, t.scratch(&s.shape), NsConsts::default(), stats);
                slot += UpdateStats::chunks(s.chunks[0].param.numel());
                ranges.push(slot as u32);
                continue;
            }
            for chunk in &s.chunks {
                match (s.rule, chunk.adamw(&tr.shared), chunk.sgd(&tr.shared)) {
                    (Rule::AdamW { decay }, Some(a), _) => {
                        k.update_stats.update(&mut update, &a, &partials, slot, decay)
                    }
                    (Rule::Sgd { decay }, _, Some(a)) => {
                        k.update_stats.update_sgd(&mut update, &a, &partials, slot, sgd_consts(&tr.cfg, decay))
                    }
                    // Muon's matrices were recorded above
                    (rule, ..) => unreachable!("{}: no statistics update for {rule:?}", s.name),
                }
                slot += UpdateStats::chunks(chunk.param.numel());
            }
            ranges.push(slot as u32);
        }
        let sums = gpu.tensor("dynamics.sums", &[tr.slots.len(), SUMS]);
        let ranges = gpu.upload("dynamics.ranges", &[ranges.len()], &ranges);
        k.update_stats.finish(&mut update, &sums, &partials, &ranges);
        DynamicsPlan { every, update, sums, last: None, _scratch: [partials, ranges] }
    }
}

impl Trainer {
    /// Records the dynamics of every `every`-th step from now on (steps whose number, counted
    /// from 1, is a multiple of it; the log interval), for [`Trainer::dynamics`]; 0 stops. The
    /// other steps run as without it.
    pub fn track_dynamics(&mut self, every: usize) {
        self.dynamics = match every {
            0 => None,
            n if self.dynamics.as_ref().is_some_and(|d| d.every == n as u64) => self.dynamics.take(),
            n => Some(DynamicsPlan::new(self, n as u64)),
        };
    }

    /// The last step whose dynamics were recorded, if any.
    pub fn dynamics_step(&self) -> Option<u64> {
        self.dynamics.as_ref().and_then(|d| d.last)
    }

    /// The dynamics of the last tracked step (a small readback: call it when logging).
    pub async fn dynamics(&self) -> Result<Dynamics> {
        let Some(step) = self.dynamics.as_ref().and_then(|d| d.last) else {
            return Err(Error::Input(
                "no step has recorded training dynamics yet: call track_dynamics before the steps to watch".into(),
            ));
        };
        let plan = self.dynamics.as_ref().expect("a tracked step has a plan");
        let sums = self.model.kernels.gpu.read(&plan.sums).await?;
        let tensors: Vec<TensorDynamics> = self
            .slots
            .iter()
            .zip(sums.chunks_exact(SUMS))
            .map(|(slot, s)| {
                let count: usize = slot.shape.iter().product();
                let n = count as f64;
                let (g2, w2, d2) = (s[0] as f64, s[1] as f64, s[2] as f64);
                TensorDynamics {
                    name: crate::model::hf_name(&slot.name),
                    count,
                    grad_norm: g2.sqrt() as f32,
                    grad_rms: ratio(g2, n),
                    weight_rms: ratio(w2, n),
                    update_rms: ratio(d2, n),
                    update_ratio: ratio(d2, w2),
                }
            })
            .collect();
        Ok(Dynamics {
            step,
            lr: self.cfg.lr_at(step as usize - 1),
            // the sum of the tensors' squares: the global norm the step clipped by, summed in
            // another order (so kept with the step, whatever steps ran since)
            grad_norm: sums.chunks_exact(SUMS).map(|s| s[0] as f64).sum::<f64>().sqrt() as f32,
            grad_clip: self.cfg.grad_clip,
            tensors,
        })
    }
}
