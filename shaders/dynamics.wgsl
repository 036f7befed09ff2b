// Training dynamics on the GPU (src/kernels/dynamics.rs). `update_stats` is the AdamW update of
// shaders/adamw.wgsl, element for element the same arithmetic, that also sums per 65536-element
// chunk of one tensor the squares of the raw gradient, of the updated weights and of the update
// (new minus old weight); a training step runs it in place of the plain update only on the
// steps whose dynamics are read, so the other steps cost nothing extra. `stats_finish` then sums
// each tensor's chunks. Sums run in a fixed order (no atomics), so they are deterministic.

struct Params {
    n: u32,            // update_stats: elements of this tensor; stats_finish: tensors
    slot: u32,         // update_stats: index of this tensor's first chunk
    weight_decay: f32, // update_stats: this tensor's decay (0 for rank < 2 tensors)
    _pad: u32,
}

// shaders/adamw.wgsl's Step: written once per step by the host.
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
const CHUNK: u32 = 65536u; // elements per update_stats workgroup: 256 per invocation
var<workgroup> red: array<vec3<f32>, WG>;

// red[0] = the sum of red[0..WG], by a tree over the workgroup.
fn reduce(lid: u32) {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
}

@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;
@group(0) @binding(5) var<storage, read> step: Step;
@group(0) @binding(6) var<storage, read> grad_norm: array<f32>;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>; // (chunks, 3): Σg², Σw², Σ(Δw)²

// One workgroup of 256 per 65536-element chunk of one tensor, each invocation a strided 256 of
// them; partials[slot + chunk] gets the chunk's three sums.
@compute @workgroup_size(256)
fn update_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let chunk = wid.y * nwg.x + wid.x;
    let start = chunk * CHUNK;
    if start >= p.n {
        return; // whole workgroup
    }
    let end = min(start + CHUNK, p.n);
    var scale = 1.0;
    if step.grad_clip > 0.0 {
        scale = min(1.0, step.grad_clip / (grad_norm[0] + 1e-6));
    }
    var s = vec3<f32>(0.0);
    for (var i = start + lid; i < end; i += WG) {
        let raw = grad[i];
        let g = raw * scale;
        let old = param[i];
        let w = old * (1.0 - step.lr * p.weight_decay);
        let mi = m[i] + (1.0 - step.beta1) * (g - m[i]);
        let vi = v[i] * step.beta2 + (1.0 - step.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        let denom = sqrt(vi) / step.bias2_sqrt + step.eps;
        let updated = w - (step.lr / step.bias1) * (mi / denom);
        param[i] = updated;
        let d = updated - old;
        s += vec3<f32>(raw * raw, updated * updated, d * d);
    }
    red[lid] = s;
    reduce(lid);
    if lid == 0u {
        let at = 3u * (p.slot + chunk);
        partials[at] = red[0].x;
        partials[at + 1u] = red[0].y;
        partials[at + 2u] = red[0].z;
    }
}

@group(0) @binding(8) var<storage, read_write> sums: array<f32>;     // (tensors, 3)
@group(0) @binding(9) var<storage, read> partials_in: array<f32>;    // (chunks, 3)
@group(0) @binding(10) var<storage, read> ranges: array<u32>;        // (tensors, 2): first, end chunk

// One workgroup of 256 per tensor: sums[tensor] = the sums over its chunks.
@compute @workgroup_size(256)
fn stats_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = wid.y * nwg.x + wid.x;
    if t >= p.n {
        return; // whole workgroup
    }
    var s = vec3<f32>(0.0);
    for (var c = ranges[2u * t] + lid; c < ranges[2u * t + 1u]; c += WG) {
        s += vec3<f32>(partials_in[3u * c], partials_in[3u * c + 1u], partials_in[3u * c + 2u]);
    }
    red[lid] = s;
    reduce(lid);
    if lid == 0u {
        sums[3u * t] = red[0].x;
        sums[3u * t + 1u] = red[0].y;
        sums[3u * t + 2u] = red[0].z;
    }
}
