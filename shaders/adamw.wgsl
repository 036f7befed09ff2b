// AdamW with decoupled weight decay and bias correction (torch.optim.AdamW), after global
// gradient-norm clipping. The squared norm is reduced on the GPU in a fixed order (no atomics,
// no readback): partial sums per 65536-element chunk, then one workgroup over the partials.

struct Params {
    n: u32,           // elements of this tensor (sumsq, update) or partial sums (norm)
    slot: u32,        // sumsq: index of this tensor's first partial sum
    weight_decay: f32, // update: this tensor's decay (0 for rank < 2 tensors)
    _pad: u32,
}

// Written once per step by the host: lr, beta1, beta2, eps, 1 − beta1^t, √(1 − beta2^t) and
// grad_clip (0 = off).
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

var<workgroup> red: array<f32, WG>;

// One workgroup of 256: norm[0] = sqrt(sum of the p.n partial sums).
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
        norm[0] = sqrt(red[0]);
    }
}

//#entry update
@group(0) @binding(1) var<storage, read_write> param: array<$T>;
@group(0) @binding(2) var<storage, read_write> m: array<$T>;
@group(0) @binding(3) var<storage, read_write> v: array<$T>;
@group(0) @binding(4) var<storage, read> grad: array<$T>;
@group(0) @binding(5) var<storage, read> step: Step;
@group(0) @binding(6) var<storage, read> grad_norm: array<f32>;

// One invocation per element ($T: vec4<f32> where the tensor's length is a multiple of 4, p.n
// counting vec4s) of one parameter tensor (2D grid of 64-wide workgroups).
@compute @workgroup_size(64)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    var scale = 1.0;
    if step.grad_clip > 0.0 {
        // torch.nn.utils.clip_grad_norm_: g · clip / (norm + 1e-6) when norm > clip
        scale = min(1.0, step.grad_clip / (grad_norm[0] + 1e-6));
    }
    let g = grad[i] * scale;
    // the operations and their order follow torch's single-tensor AdamW
    let w = param[i] * (1.0 - step.lr * p.weight_decay);
    let mi = m[i] + (1.0 - step.beta1) * (g - m[i]);
    let vi = v[i] * step.beta2 + (1.0 - step.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / step.bias2_sqrt + step.eps;
    param[i] = w - (step.lr / step.bias1) * (mi / denom);
}
