// Softmax cross-entropy of logits [rows, V] against targets [rows]:
// losses[r] = logsumexp(logits[r, :]) − logits[r, targets[r]], then their mean.

struct Params {
    rows: u32,
    V: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;

const WG: u32 = 256u;
var<workgroup> wmax: array<f32, WG>;
var<workgroup> wsum: array<f32, WG>;

// One workgroup of 256 per row (x + y·65535 on a 2D grid). Each invocation keeps an online
// (max, sum of exp) over a strided slice of the row (≤ V/256 steps, so no invocation runs long
// loops: lavapipe caps an invocation at 65535 loop iterations); then a tree reduction.
@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = wid.y * nwg.x + wid.x;
    if r >= p.rows {
        return; // the whole workgroup: r is uniform, so the barriers below stay uniform
    }
    let base = r * p.V;
    var m = -3.4028235e38;
    var s = 0.0;
    for (var v = lid; v < p.V; v += WG) {
        let x = logits[base + v];
        if x > m {
            s = s * exp(m - x) + 1.0;
            m = x;
        } else {
            s += exp(x - m);
        }
    }
    wmax[lid] = m;
    wsum[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            let m1 = wmax[lid];
            let m2 = wmax[lid + stride];
            let mm = max(m1, m2);
            // an empty slice has sum 0 and max -FLT_MAX: exp(-huge) is 0, never NaN
            wsum[lid] = wsum[lid] * exp(m1 - mm) + wsum[lid + stride] * exp(m2 - mm);
            wmax[lid] = mm;
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let y = min(targets[r], p.V - 1u);
        losses[r] = log(wsum[0]) + wmax[0] - logits[base + y];
    }
}

@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read> losses_in: array<f32>;

var<workgroup> partial: array<f32, WG>;

// One workgroup of 256: each invocation sums a strided slice, then a tree reduction; the order
// is fixed, so the mean is deterministic. (mean's bindings start at 4 so that no binding number
// means two things.)
@compute @workgroup_size(256)
fn mean(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var r = lid; r < p.rows; r += WG) {
        s += losses_in[r];
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        loss[0] = partial[0] / f32(p.rows);
    }
}
