// AdamW with decoupled weight decay and bias correction (torch.optim.AdamW), after global
// gradient-norm clipping. The squared norm is reduced on the GPU in a fixed order (no atomics,
// no readback): partial sums per 65536-element chunk, then one workgroup over the partials.

struct Params {
    n: u32,            // elements of this tensor (sumsq, update, update_stats), partial sums
                       // (norm_finish), tensors (stats_finish) or the loss scale's growth
                       // interval (scaler_update)
    slot: u32,         // sumsq, update_stats, muon's stats: index of this tensor's first partial
                       // sum; muon's apply: the matrix's number in MuonStep (shaders/muon.wgsl)
    weight_decay: f32, // update, update_stats, sgd: this tensor's decay (0 for rank < 2 tensors)
    momentum: f32,     // sgd (shaders/optim.wgsl): the momentum factor
    nesterov: u32,     // sgd: 1 for Nesterov momentum
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Written once per step by the host: lr, beta1, beta2, eps, 1 − beta1^t, √(1 − beta2^t) and
// grad_clip (0 = off), for t the step's number (where loss scaling skipped steps, Scaler's bias
// has those of the steps actually applied).
struct Step {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias1: f32,
    bias2_sqrt: f32,
    grad_clip: f32,
    _pad: f32,
}

// Dynamic loss scaling (src/train.rs LossScaling; torch.cuda.amp.GradScaler): the scale S the
// loss gradient was multiplied by and 1/S, clean steps since the scale last changed, steps
// skipped so far and whether scaling is on, kept on the GPU (no readback)
// and updated by scaler_update after every step; then, written by the host every step, the bias
// corrections (1 − beta1^t, √(1 − beta2^t)) of t = step − k for k skipped steps (k ≥ 1; k = 0
// is Step's), so that AdamW counts applied steps only, as torch does.
struct Scaler {
    scale: f32,
    inv_scale: f32,
    good: u32,
    skipped: u32,
    enabled: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    bias: array<vec2<f32>, 256>, // BIAS_WINDOW in src/kernels/adamw.rs
}

// Whether x is neither infinite nor NaN (its exponent bits are not all ones).
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 256u;
const CHUNK: u32 = 65536u; // elements per sumsq workgroup: 256 per invocation

//#entry sumsq
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;

var<workgroup> red: array<f32, WG>;

// One workgroup of 256 per 65536-element chunk of one gradient tensor: partials[slot + chunk].
@compute @workgroup_size(256)
fn sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let chunk = flat_index(wid, nwg, 0u, 1u);
    let start = chunk * CHUNK;
    if start >= p.n {
        return; // whole workgroup
    }
    let end = min(start + CHUNK, p.n);
    var s = 0.0;
    for (var i = start + lid; i < end; i += WG) {
        let g = grad[i];
        s = fma(g, g, s);
    }
    red[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        partials[p.slot + chunk] = red[0];
    }
}

//#entry norm_finish
@group(0) @binding(1) var<storage, read_write> norm: array<f32>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read> scaler: Scaler;

var<workgroup> red: array<f32, WG>;

// One workgroup of 256: norm[0] = sqrt(sum of the p.n partial sums), unscaled where loss
// scaling is on (exact for a power-of-two scale).
@compute @workgroup_size(256)
fn norm_finish(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        s += partials[i];
    }
    red[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        var n = sqrt(red[0]);
        if scaler.enabled != 0u {
            n *= scaler.inv_scale;
        }
        norm[0] = n;
    }
}

//#entry update
//#use @scaled_grad
//#use @adamw_step
@group(0) @binding(1) var<storage, read_write> param: array<$T>;
@group(0) @binding(2) var<storage, read_write> m: array<$T>;
@group(0) @binding(3) var<storage, read_write> v: array<$T>;
@group(0) @binding(4) var<storage, read> grad: array<$T>;
@group(0) @binding(5) var<storage, read> step: Step;
@group(0) @binding(6) var<storage, read> grad_norm: array<f32>;
@group(0) @binding(7) var<storage, read> scaler: Scaler;

// One invocation per element ($T: vec4<f32> where the tensor's length is a multiple of 4, p.n
// counting vec4s) of one parameter tensor (2D grid of 64-wide workgroups).
@compute @workgroup_size(64)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n || skip_step() {
        return;
    }
    let t = adamw_step(param[i], m[i], v[i], unscale(grad[i]) * clip_scale());
    m[i] = t.m;
    v[i] = t.v;
    param[i] = t.w;
}

//#entry scaler_update
@group(0) @binding(1) var<storage, read_write> scaler: Scaler;
@group(0) @binding(2) var<storage, read> grad_norm: array<f32>;

// After a step's update, one invocation: an overflow (a gradient norm that is not finite, so the
// update skipped the step) halves the scale and restarts the count of clean steps; p.n (the
// growth interval) clean steps in a row double it. The scale stays within [2^-126, 2^126], so 1/S stays a normal
// number.
@compute @workgroup_size(1)
fn scaler_update() {
    if scaler.enabled == 0u {
        return;
    }
    if finite(grad_norm[0]) {
        scaler.good += 1u;
        if scaler.good >= p.n && scaler.scale <= 0x1p125f {
            scaler.scale *= 2.0;
            scaler.inv_scale *= 0.5;
            scaler.good = 0u;
        }
    } else {
        if scaler.scale >= 0x1p-125f {
            scaler.scale *= 0.5;
            scaler.inv_scale *= 2.0;
        }
        scaler.good = 0u;
        scaler.skipped += 1u;
    }
}

//#entry @scaled_grad
// What every optimizer's update does with the gradient (shaders/optim.wgsl's too): whether the
// step is skipped, the loss scale taken off, the clip factor.

// Whether this step is skipped: loss scaling is on and the gradients overflowed (their norm is
// not finite); parameters and moments then stay as they are.
fn skip_step() -> bool {
    return scaler.enabled != 0u && !finite(grad_norm[0]);
}

// A gradient as the loss made it, without the loss scale (exact for a power-of-two scale).
fn unscale(g: $T) -> $T {
    if scaler.enabled != 0u {
        return g * scaler.inv_scale;
    }
    return g;
}

// The clip factor of this step's gradients: torch.nn.utils.clip_grad_norm_ scales g by
// clip / (norm + 1e-6) when norm > clip.
fn clip_scale() -> f32 {
    if step.grad_clip > 0.0 {
        return min(1.0, step.grad_clip / (grad_norm[0] + 1e-6));
    }
    return 1.0;
}

//#entry @adamw_step
// The bias corrections of this step: Step's, or where k steps were skipped those of t − k.
fn bias() -> vec2<f32> {
    let k = min(scaler.skipped, 255u);
    if k == 0u {
        return vec2<f32>(step.bias1, step.bias2_sqrt);
    }
    return scaler.bias[k];
}

struct Adamw {
    w: $T,
    m: $T,
    v: $T,
}

// One element's (or vec4's) AdamW step from weight w0, moments m0 and v0 and the clipped
// gradient g: the operations and their order follow torch's single-tensor AdamW. The update and
// shaders/dynamics.wgsl's update_stats both call it, so they cannot drift apart.
fn adamw_step(w0: $T, m0: $T, v0: $T, g: $T) -> Adamw {
    let b = bias();
    let w = w0 * (1.0 - step.lr * p.weight_decay);
    let mi = m0 + (1.0 - step.beta1) * (g - m0);
    let vi = v0 * step.beta2 + (1.0 - step.beta2) * g * g;
    let denom = sqrt(vi) / b.y + step.eps;
    return Adamw(w - (step.lr / b.x) * (mi / denom), mi, vi);
}
