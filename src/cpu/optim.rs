//! Plain f32 references of the optimizers beside AdamW (src/cpu/backward.rs has AdamW's), written
//! from torch.optim's single-tensor code, for the kernel tests.

/// What an SGD step shares across tensors: the lr, torch.optim.SGD's momentum and nesterov, and
/// `clip_scale`, clip_grad_norm_'s factor on the gradient (1 for none).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub clip_scale: f32,
}

/// torch.optim.SGD's update (dampening 0) of one tensor `param` with its momentum buffer `buf`
/// (zeros before the first step, which then holds the gradient as torch's clone does) from
/// `grad`, weight decay `weight_decay` added to the gradient.
pub fn sgd_update(param: &mut [f32], buf: &mut [f32], grad: &[f32], step: &SgdStep, weight_decay: f32) {
    let SgdStep { lr, momentum, nesterov, clip_scale } = *step;
    for i in 0..param.len() {
        let g = grad[i] * clip_scale + weight_decay * param[i];
        buf[i] = momentum * buf[i] + g;
        let d = if nesterov { g + momentum * buf[i] } else { buf[i] };
        param[i] -= lr * d;
    }
}
