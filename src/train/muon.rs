//! Muon's share of a trainer (src/kernels/muon.rs): the Newton-Schulz scratch, allocated once per
//! oriented shape (m, n), m ≤ n, of the Muon matrices (so GPT-2's (C, 4C) and (4C, C) share one,
//! each seeing it in its own shape; the (m, m) products once per m) from one list of specs that
//! the memory estimate sums too, and the table of Muon's per-step scalars ([`MuonStep`]) written
//! before every step.

use std::collections::BTreeMap;

use crate::gpu::{Gpu, Tensor};
use crate::kernels::{MuonStep, NsScratch};
use crate::model::{shape_bytes, Gpt2Config};

use super::{rules, Rule, TrainConfig};

/// One Muon matrix: its name, stored (rows, cols) and weight decay.
struct Matrix {
    name: String,
    shape: (usize, usize),
    decay: f32,
}

/// The Muon matrices of `model` under `cfg`, in parameter order.
fn matrices(model: &Gpt2Config, cfg: &TrainConfig) -> Vec<Matrix> {
    rules(model, cfg)
        .into_iter()
        .filter_map(|(name, shape, rule)| match rule {
            Rule::Muon { decay, .. } => Some(Matrix { name, shape: (shape[0], shape[1]), decay }),
            _ => None,
        })
        .collect()
}

/// (min, max) of a stored shape: the shape Newton-Schulz works in.
fn oriented((rows, cols): (usize, usize)) -> (usize, usize) {
    (rows.min(cols), rows.max(cols))
}

/// The step table and the scratch of every Muon matrix.
pub(crate) struct MuonTensors {
    /// The step's [`MuonStep`], matrices in `matrices` order.
    pub step: Tensor,
    matrices: Vec<Matrix>,
    scratch: BTreeMap<(usize, usize), NsScratch>,
}

impl MuonTensors {
    /// Each tensor's key and shape: the step table, then per distinct oriented shape (m, n)
    /// `ns_x.MxN`, `ns_y.MxN`, `ns_partials.MxN`, and per distinct m `ns_a.M`, `ns_aa.M`
    /// ([`NsScratch::specs`]); nothing where no parameter takes Muon.
    pub fn specs(model: &Gpt2Config, cfg: &TrainConfig) -> Vec<(String, Vec<usize>)> {
        let matrices = matrices(model, cfg);
        if matrices.is_empty() {
            return vec![];
        }
        let mut specs = vec![("muon_step".to_string(), vec![MuonStep::words_len(matrices.len())])];
        let oriented: std::collections::BTreeSet<(usize, usize)> = matrices.iter().map(|m| oriented(m.shape)).collect();
        for &(m, n) in &oriented {
            for (label, shape) in NsScratch::specs(m, n) {
                let key = match label {
                    "ns_a" | "ns_aa" => format!("{label}.{m}"),
                    _ => format!("{label}.{m}x{n}"),
                };
                if !specs.iter().any(|(k, _)| *k == key) {
                    specs.push((key, shape));
                }
            }
        }
        specs
    }

    /// The bytes [`MuonTensors::new`] allocates.
    pub fn bytes(model: &Gpt2Config, cfg: &TrainConfig) -> u64 {
        MuonTensors::specs(model, cfg).iter().map(|(_, shape)| shape_bytes(shape)).fold(0, u64::saturating_add)
    }

    /// The tensors of a trainer of `model` under `cfg`; None where no parameter takes Muon.
    pub fn new(gpu: &Gpu, model: &Gpt2Config, cfg: &TrainConfig) -> Option<MuonTensors> {
        let matrices = matrices(model, cfg);
        if matrices.is_empty() {
            return None;
        }
        let all: Vec<(String, Tensor)> = MuonTensors::specs(model, cfg)
            .into_iter()
            .map(|(key, shape)| (key.clone(), gpu.tensor(&key, &shape)))
            .collect();
        let get = |key: String| all.iter().find(|(k, _)| *k == key).map(|(_, t)| t.clone()).expect("in the specs");
        let mut scratch = BTreeMap::new();
        for &(rows, cols) in matrices.iter().map(|m| &m.shape) {
            let ((m, n), stored) = (oriented((rows, cols)), vec![rows, cols]);
            // x and y seen in the stored shape, whichever orientation allocated them
            let view = |t: Tensor| Tensor { shape: stored.clone(), ..t };
            scratch.entry((rows, cols)).or_insert_with(|| NsScratch {
                x: view(get(format!("ns_x.{m}x{n}"))),
                y: view(get(format!("ns_y.{m}x{n}"))),
                a: get(format!("ns_a.{m}")),
                aa: get(format!("ns_aa.{m}")),
                partials: get(format!("ns_partials.{m}x{n}")),
            });
        }
        Some(MuonTensors { step: get("muon_step".into()), matrices, scratch })
    }

    /// The number of parameter `name` in the step table, where it takes Muon.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.matrices.iter().position(|m| m.name == name)
    }

    /// The scratch for matrices stored as `shape`.
    pub fn scratch(&self, shape: &[usize]) -> &NsScratch {
        &self.scratch[&(shape[0], shape[1])]
    }

    /// Writes step `it`'s (0-based) table: Muon's lr under the schedule, each matrix's decay and
    /// lr adjustment, the momentum.
    pub fn write(&self, gpu: &Gpu, cfg: &TrainConfig, it: usize) {
        let lr = cfg.muon_lr_at(it) as f64;
        let mut table = MuonStep::new(cfg.optimizer.momentum, cfg.optimizer.nesterov);
        for m in &self.matrices {
            table.push(lr, m.decay as f64, m.shape.0, m.shape.1);
        }
        gpu.write(&self.step, &table.words());
    }
}
