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

// One invocation per row; a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = (wid.y * nwg.x + wid.x) * 64u + lid;
    if r >= p.rows {
        return;
    }
    let base = r * p.V;
    var maxv = -3.4028235e38;
    for (var v = 0u; v < p.V; v++) {
        maxv = max(maxv, logits[base + v]);
    }
    var sum = 0.0;
    for (var v = 0u; v < p.V; v++) {
        sum += exp(logits[base + v] - maxv);
    }
    let y = min(targets[r], p.V - 1u);
    losses[r] = log(sum) + maxv - logits[base + y];
}

@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read> losses_in: array<f32>;
// (mean's bindings start at 4 so that no binding number means two things)

var<workgroup> partial: array<f32, 256>;

// One workgroup of 256: each invocation sums a strided slice, then a tree reduction; the order
// is fixed, so the mean is deterministic.
@compute @workgroup_size(256)
fn mean(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var r = lid; r < p.rows; r += 256u) {
        s += losses_in[r];
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        loss[0] = partial[0] / f32(p.rows);
    }
}
