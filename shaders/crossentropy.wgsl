// Softmax cross-entropy of logits [rows, V] against targets [rows]:
// losses[r] = logsumexp(logits[r, :]) − logits[r, targets[r]], then their mean; and the fused
// backward of both, dlogits[r, v] = (softmax(logits[r])[v] − [v == targets[r]])·dloss.

struct Params {
    rows: u32,
    V: u32,
    dloss: f32, // backward only: dL/dlosses[r], 1/rows for the mean loss
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;

const WG: u32 = 256u;
var<workgroup> wmax: array<f32, WG>;
var<workgroup> wsum: array<f32, WG>;

// Adds x to a running (max, sum of exp(· − max)).
fn online(acc: vec2<f32>, x: f32) -> vec2<f32> {
    if x > acc.x {
        return vec2(x, acc.y * exp(acc.x - x) + 1.0);
    }
    return vec2(acc.x, acc.y + exp(x - acc.x));
}

// Merges every invocation's (max, sum) by a tree reduction; the row's are then wmax[0], wsum[0].
fn reduce_max_sum(lid: u32, acc: vec2<f32>) {
    wmax[lid] = acc.x;
    wsum[lid] = acc.y;
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
}

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
    var acc = vec2(-3.4028235e38, 0.0);
    for (var v = lid; v < p.V; v += WG) {
        acc = online(acc, logits[base + v]);
    }
    reduce_max_sum(lid, acc);
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

@group(0) @binding(6) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(7) var<storage, read> logits_b: array<f32>;
@group(0) @binding(8) var<storage, read> targets_b: array<u32>;

// One workgroup of 256 per row, as forward: the row's (max, sum) by the same online pass and
// reduction, then a strided pass writes (overwrites) the row of dlogits.
@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = wid.y * nwg.x + wid.x;
    if r >= p.rows {
        return; // the whole workgroup: r is uniform, so the barriers below stay uniform
    }
    let base = r * p.V;
    var acc = vec2(-3.4028235e38, 0.0);
    for (var v = lid; v < p.V; v += WG) {
        acc = online(acc, logits_b[base + v]);
    }
    reduce_max_sum(lid, acc);
    let m = wmax[0];
    let inv = 1.0 / wsum[0];
    let y = min(targets_b[r], p.V - 1u);
    for (var v = lid; v < p.V; v += WG) {
        let prob = exp(logits_b[base + v] - m) * inv;
        dlogits[base + v] = (prob - select(0.0, 1.0, v == y)) * p.dloss;
    }
}
