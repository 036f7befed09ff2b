// The logit lens' per-position reduction (src/kernels/lens.rs): for each row of logits (rows, V),
// the index of its first maximum and that token's probability under the row's softmax, written
// at out0 + row so that every layer's rows land in one (layers x T) table.

struct Params {
    rows: u32,
    V: u32,
    out0: u32, // where this call's first row goes in top_id and top_p
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

//#entry row_top1
@group(0) @binding(1) var<storage, read_write> top_id: array<u32>;
@group(0) @binding(2) var<storage, read_write> top_p: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;

// One invocation per row, one pass with an online max and sum as the cross-entropy's (V ≤ 65535
// steps, lavapipe's cap on loop iterations; the host takes row_top1_wide past it). The top token's probability is
// exp(max − logsumexp) = 1 / Σ exp(x − max).
@compute @workgroup_size(64)
fn row_top1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = flat_index(wid, nwg, lid, 64u);
    if r >= p.rows {
        return;
    }
    let base = r * p.V;
    var m = logits[base];
    var best = 0u;
    var s = 1.0;
    for (var v = 1u; v < p.V; v++) {
        let x = logits[base + v];
        if x > m {
            s = s * exp(m - x) + 1.0;
            m = x;
            best = v;
        } else {
            s += exp(x - m);
        }
    }
    top_id[p.out0 + r] = best;
    top_p[p.out0 + r] = 1.0 / s;
}

//#entry row_top1_wide
@group(0) @binding(1) var<storage, read_write> top_id: array<u32>;
@group(0) @binding(2) var<storage, read_write> top_p: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;

const WIDE: u32 = 256u;
var<workgroup> wide_m: array<f32, WIDE>;
var<workgroup> wide_s: array<f32, WIDE>;
var<workgroup> wide_best: array<u32, WIDE>;

// For V past 65535, as crossentropy.wgsl's forward_wide: one workgroup of 256 per row, each
// invocation an online (max, its first column, sum) over the columns lid, lid + 256, ..., then a
// tree reduction in a fixed order; on equal maxima the smaller column wins, so the result is the
// row's first maximum, as row_top1's.
@compute @workgroup_size(256)
fn row_top1_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = wid.y * nwg.x + wid.x;
    if r >= p.rows {
        return; // the whole workgroup leaves together, so the barriers below stay uniform
    }
    let base = r * p.V;
    var m = logits[base + lid]; // V > 256: every invocation has a first column
    var best = lid;
    var s = 1.0;
    for (var v = lid + WIDE; v < p.V; v += WIDE) {
        let x = logits[base + v];
        if x > m {
            s = s * exp(m - x) + 1.0;
            m = x;
            best = v;
        } else {
            s += exp(x - m);
        }
    }
    wide_m[lid] = m;
    wide_s[lid] = s;
    wide_best[lid] = best;
    workgroupBarrier();
    for (var stride = WIDE / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            let m1 = wide_m[lid];
            let m2 = wide_m[lid + stride];
            let mx = max(m1, m2);
            wide_s[lid] = wide_s[lid] * exp(m1 - mx) + wide_s[lid + stride] * exp(m2 - mx);
            let b2 = wide_best[lid + stride];
            if m2 > m1 || (m2 == m1 && b2 < wide_best[lid]) {
                wide_best[lid] = b2;
            }
            wide_m[lid] = mx;
        }
        workgroupBarrier();
    }
    if lid == 0u {
        top_id[p.out0 + r] = wide_best[0];
        top_p[p.out0 + r] = 1.0 / wide_s[0];
    }
}
