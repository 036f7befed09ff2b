// Softmax cross-entropy of logits [rows, V] against targets [rows]:
// losses[r] = lse[r] − logits[r, targets[r]] with lse[r] = logsumexp(logits[r, :]) kept for the
// backward; the mean of the losses; and the fused backward
// dlogits[r, v] = (exp(logits[r, v] − lse[r]) − [v == targets[r]]) · dloss.
// A target of IGNORE is not counted (torch's ignore_index): its loss and dlogits are 0, and the
// mean is over the counted targets (the backward's dloss, 1/rows, is scaled by rows/counted).

struct Params {
    rows: u32,
    V: u32,
    dloss: f32, // backward only: dL/dlosses[r], 1/rows for the mean loss
    cap: f32,   // backward only: the logit softcap the logits went through (0: none)
}

@group(0) @binding(0) var<uniform> p: Params;

// A target that is not counted (src/kernels/crossentropy.rs IGNORE).
const IGNORE: u32 = 0xffffffffu;

//#entry forward
//#use @row_stats
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;

// One invocation per row, one online pass (softmax_row.wgsl's row_stats; V ≤ 65535, the host
// takes forward_wide past it).
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = flat_index(wid, nwg, lid, 64u);
    if r >= p.rows {
        return;
    }
    let base = r * p.V;
    let row = row_stats(base, 0u, 1u);
    let l = log(row.s) + row.m;
    lse[r] = l;
    losses[r] = select(l - logits[base + min(targets[r], p.V - 1u)], 0.0, targets[r] == IGNORE);
}

//#entry forward_wide
//#use @row_stats
//#use @row_stats_wide
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;

// For V past 65535: one workgroup of 256 per row (softmax_row.wgsl's row_stats_wide). GPT-2's
// rows keep `forward`, so their results do not change.
@compute @workgroup_size(256)
fn forward_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r = wid.y * nwg.x + wid.x;
    if r >= p.rows {
        return; // the whole workgroup leaves together, so the barriers in row_stats_wide stay uniform
    }
    let base = r * p.V;
    let row = row_stats_wide(base, lid);
    if lid == 0u {
        let l = log(row.s) + row.m;
        lse[r] = l;
        losses[r] = select(l - logits[base + min(targets[r], p.V - 1u)], 0.0, targets[r] == IGNORE);
    }
}

//#entry mean
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;
@group(0) @binding(2) var<storage, read_write> counted: array<f32>;
@group(0) @binding(3) var<storage, read> losses: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;
var<workgroup> counts: array<u32, WG>;

// One workgroup of 256: each invocation sums a strided slice of the losses (an ignored one is 0)
// and counts its counted targets, then a tree reduction of both; the order is fixed, so the
// mean is deterministic. counted[0] is the count, for the backward (0 counted: the loss is 0).
@compute @workgroup_size(256)
fn mean(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    var c = 0u;
    for (var r = lid; r < p.rows; r += WG) {
        s += losses[r];
        c += select(1u, 0u, targets[r] == IGNORE);
    }
    partial[lid] = s;
    counts[lid] = c;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
            counts[lid] += counts[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        counted[0] = f32(counts[0]);
        loss[0] = select(partial[0] / f32(counts[0]), 0.0, counts[0] == 0u);
    }
}

//#entry backward
//#use @dlogit
@group(0) @binding(1) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;
@group(0) @binding(5) var<storage, read> counted: array<f32>; // [0]: the forward's count

// One invocation per element (r, v) on a 2D grid of 64-wide workgroups; dlogits is overwritten.
@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.rows * p.V {
        return;
    }
    dlogits[i] = dlogit(i);
}

//#entry backward_scaled
//#use @dlogit
@group(0) @binding(1) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;
@group(0) @binding(5) var<storage, read> counted: array<f32>; // [0]: the forward's count
@group(0) @binding(6) var<storage, read> scale: array<f32>; // [0]: the loss scale (adamw.wgsl's Scaler)

// backward, times the dynamic loss scale (mixed-precision training, src/train.rs).
@compute @workgroup_size(64)
fn backward_scaled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.rows * p.V {
        return;
    }
    dlogits[i] = dlogit(i) * scale[0];
}

//#entry @dlogit
// dL/dlogits[i] for element i = (r, v): 0 for an ignored target; dloss (1/rows) times
// rows/counted, exactly 1 when no target is ignored, so the mean is over the counted targets.
fn dlogit(i: u32) -> f32 {
    let r = i / p.V;
    let v = i % p.V;
    if targets[r] == IGNORE {
        return 0.0;
    }
    let onehot = select(0.0, 1.0, v == min(targets[r], p.V - 1u));
    let g = (exp(logits[i] - lse[r]) - onehot) * (p.dloss * (f32(p.rows) / counted[0]));
    if p.cap != 0.0 {
        // through y = cap·tanh(x/cap): dy/dx = 1 − tanh² = 1 − (y/cap)², y the logits here
        let y = logits[i] / p.cap;
        return g * (1.0 - y * y);
    }
    return g;
}
