// SGD with momentum and Nesterov (torch.optim.SGD, dampening 0), weight decay added to the
// gradient as torch does (not decoupled). Its modules start with shaders/adamw.wgsl's header
// (Params, Step, Scaler) and take its @scaled_grad snippet, so loss scaling, skipped steps and
// global-norm clipping are AdamW's. The lr is Step's (the schedule's); the momentum factor and
// Nesterov are the dispatch's Params.

//#entry sgd_update
//#use @scaled_grad
//#use @sgd_step
@group(0) @binding(1) var<storage, read_write> param: array<$T>;
@group(0) @binding(2) var<storage, read_write> buf: array<$T>;
@group(0) @binding(3) var<storage, read> grad: array<$T>;
@group(0) @binding(4) var<storage, read> step: Step;
@group(0) @binding(5) var<storage, read> grad_norm: array<f32>;
@group(0) @binding(6) var<storage, read> scaler: Scaler;

// One invocation per element ($T: vec4<f32> where the tensor's length is a multiple of 4, p.n
// counting vec4s) of one parameter tensor (2D grid of 64-wide workgroups).
@compute @workgroup_size(64)
fn sgd_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n || skip_step() {
        return;
    }
    let t = sgd_step(param[i], buf[i], unscale(grad[i]) * clip_scale());
    buf[i] = t.buf;
    param[i] = t.w;
}

//#entry @sgd_step
struct Sgd {
    w: $T,
    buf: $T,
}

// One element's (or vec4's) SGD step from weight w0, momentum buffer buf0 and the clipped
// gradient g0, in torch's single-tensor order: g = g0 + wd·w; buf = μ·buf + g (a buffer of
// zeros makes the first step torch's clone of g); d = g + μ·buf with Nesterov, else buf;
// w −= lr·d. The update and shaders/dynamics.wgsl's update_stats_sgd both call it.
fn sgd_step(w0: $T, buf0: $T, g0: $T) -> Sgd {
    let g = g0 + p.weight_decay * w0;
    let b = buf0 * p.momentum + g;
    var d = b;
    if p.nesterov != 0u {
        d = g + p.momentum * b;
    }
    return Sgd(w0 - step.lr * d, b);
}
