//! Training dynamics (shaders/dynamics.wgsl): AdamW's update with, per chunk of each tensor, the
//! sums of squares of the gradient, the updated weights and the update, then per tensor the sums
//! over its chunks. Recorded into a second update program that a step runs instead of the plain
//! one when its dynamics are wanted. Its modules start with adamw.wgsl's header and share its
//! Params and its update's arithmetic.

use super::adamw::{AdamWUpdate, Params, CHUNK};
use super::optim::{SgdConsts, SgdUpdate};
use super::{grid, ModuleSpec, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["adamw.wgsl", "dynamics.wgsl"], entry).var("T", "f32")
}

/// The SGD variant's module: optim.wgsl's header and snippets too.
fn sgd_spec() -> ModuleSpec {
    ModuleSpec::new::<Params>(&["adamw.wgsl", "optim.wgsl", "dynamics.wgsl"], "update_stats_sgd").var("T", "f32")
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    vec![spec("update_stats"), sgd_spec(), spec("stats_finish")]
}

/// Sums per chunk and per tensor: Σg², Σw², Σ(Δw)².
pub const SUMS: usize = 3;

pub struct UpdateStats {
    update: Pipe,
    update_sgd: Pipe,
    finish: Pipe,
}

impl UpdateStats {
    pub fn new(gpu: &Gpu) -> UpdateStats {
        UpdateStats {
            update: Pipe::new(gpu, spec("update_stats")),
            update_sgd: Pipe::new(gpu, sgd_spec()),
            finish: Pipe::new(gpu, spec("stats_finish")),
        }
    }

    /// Chunks of a tensor of `n` elements: its rows in `partials`.
    pub fn chunks(n: usize) -> usize {
        n.div_ceil(CHUNK).max(1)
    }

    /// AdamW's update of `a.param` (shaders/adamw.wgsl's adamw_step, the plain update's tensors),
    /// writing the sums of its [`UpdateStats::chunks`] chunks into `partials` (chunks, [`SUMS`])
    /// from row `slot` on.
    pub fn update(&self, prog: &mut Program, a: &AdamWUpdate, partials: &Tensor, slot: usize, weight_decay: f32) {
        let n = a.param.numel();
        let params = Params::new(n, slot, weight_decay);
        let tensors = [a.param, a.m, a.v, a.grad, a.step, a.norm, partials, a.scaler];
        prog.push(self.update.dispatch(&params, &tensors, grid(Self::chunks(n), 1)));
    }

    /// SGD's update of `a.param` under `c` (shaders/optim.wgsl's sgd_step), with the sums as
    /// [`UpdateStats::update`]'s.
    pub fn update_sgd(&self, prog: &mut Program, a: &SgdUpdate, partials: &Tensor, slot: usize, c: SgdConsts) {
        let n = a.param.numel();
        prog.push(self.update_sgd.dispatch(&c.params(n, slot), &a.bindings(Some(partials)), grid(Self::chunks(n), 1)));
    }

    /// sums (tensors, [`SUMS`]) = per tensor the sums of its chunks in `partials`, chunks
    /// `ranges[2t] .. ranges[2t + 1]` (u32) for tensor t.
    pub fn finish(&self, prog: &mut Program, sums: &Tensor, partials: &Tensor, ranges: &Tensor) {
        let tensors = ranges.numel() / 2;
        let params = Params::new(tensors, 0, 0.0);
        prog.push(self.finish.dispatch(&params, &[sums, partials, ranges], grid(tensors, 1)));
    }
}
