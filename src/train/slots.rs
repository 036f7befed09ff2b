//! The walk over parameter slots: every parameter with its gradient and AdamW moments, in the row
//! chunks an update binds. AdamW's update (train.rs), the update with statistics (dynamics.rs) and
//! the gradient norm all record their per-tensor programs from this one list.

use crate::gpu::{Gpu, Tensor};
use crate::kernels::AdamWUpdate;
use crate::model::{Gpt2, ParameterTensors};

use super::TrainConfig;

/// One parameter and the tensors of its shape an optimizer updates it with.
pub(crate) struct Slot {
    /// Its name and shape in [`crate::Gpt2Config::param_specs`] (the name without the
    /// `transformer.` prefix).
    pub name: String,
    pub shape: Vec<usize>,
    /// Its weight decay ([`TrainConfig::weight_decay_of`]).
    pub decay: f32,
    /// Its rows in chunks that each fit one storage binding ([`Gpu::row_chunks`]; one chunk, the
    /// whole tensor, where it fits): a parameter, its gradient and moments have one shape, so
    /// their chunks match.
    pub chunks: Vec<Chunk>,
}

/// The same rows of a parameter, its gradient and its moments.
pub(crate) struct Chunk {
    pub param: Tensor,
    pub grad: Tensor,
    pub m: Tensor,
    pub v: Tensor,
}

/// What every update reads besides its chunk.
pub(crate) struct StepTensors {
    /// (8) the step's [`crate::kernels::StepParams`].
    pub params: Tensor,
    /// (1) the global gradient norm before clipping.
    pub norm: Tensor,
    /// The loss scaler's state ([`crate::kernels::ScalerHead`], then the bias corrections of
    /// skipped steps).
    pub scaler: Tensor,
}

impl Chunk {
    /// AdamW's update of this chunk in the step that `s` describes.
    pub(crate) fn adamw<'a>(&'a self, s: &'a StepTensors) -> AdamWUpdate<'a> {
        let (step, norm, scaler) = (&s.params, &s.norm, &s.scaler);
        AdamWUpdate { param: &self.param, m: &self.m, v: &self.v, grad: &self.grad, step, norm, scaler }
    }
}

/// Every parameter of `model` with its gradient and moments (`grads`, `m`, `v`), in
/// [`crate::Gpt2Config::param_specs`] order, with `cfg`'s weight decay.
pub(crate) fn param_slots(
    gpu: &Gpu,
    model: &Gpt2,
    [grads, m, v]: [&ParameterTensors; 3],
    cfg: &TrainConfig,
) -> Vec<Slot> {
    let rows = |t: &Tensor| gpu.row_chunks(t).into_iter().map(|(_, view)| view);
    let tensors = model.params.ordered().into_iter().zip(grads.ordered()).zip(m.ordered()).zip(v.ordered());
    tensors
        .zip(model.config.param_specs())
        .map(|((((p, g), m), v), (name, shape))| {
            let chunks = rows(p)
                .zip(rows(g))
                .zip(rows(m))
                .zip(rows(v))
                .map(|(((param, grad), m), v)| Chunk { param, grad, m, v })
                .collect();
            Slot { decay: cfg.weight_decay_of(&shape), name, shape, chunks }
        })
        .collect()
}
