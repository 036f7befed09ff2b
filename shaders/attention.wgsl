// Causal self-attention for all heads, fused: scores q·k/√hs, the causal mask, softmax and the
// weighted sum of v. qkv is c_attn's output [B, T, 3C] (q, k, v side by side, head h at columns
// h·hs..(h+1)·hs of each); out is [B, T, C]; att keeps the softmax [B, NH, T, T] for backward
// (zero above the diagonal).

struct Params {
    B: u32,
    T: u32,
    C: u32,
    NH: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> att: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, WG>;

// Tree reduction of red[] with max (op 0) or sum (op 1); every invocation gets the result.
fn reduce(lid: u32, op: u32) -> f32 {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            if op == 0u {
                red[lid] = max(red[lid], red[lid + stride]);
            } else {
                red[lid] += red[lid + stride];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// One workgroup of 64 per query row (b, h, t) on a 2D grid: invocation j takes keys t2 = j,
// j+64, ... for the scores and head dims i = j, j+64, ... for the output, so no invocation loops
// long (lavapipe caps an invocation at 65535 loop iterations).
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let rows = p.B * p.NH * p.T;
    let row = wid.y * nwg.x + wid.x;
    if row >= rows {
        return; // the whole workgroup: row is uniform, so the barriers below stay uniform
    }
    let t = row % p.T;
    let h = (row / p.T) % p.NH;
    let b = row / (p.T * p.NH);
    let hs = p.C / p.NH;
    let C3 = 3u * p.C;
    let scale = 1.0 / sqrt(f32(hs));
    let q = (b * p.T + t) * C3 + h * hs;
    let att_row = row * p.T;

    // scaled scores and their max
    var m = -3.4028235e38;
    for (var t2 = lid; t2 <= t; t2 += WG) {
        let k = (b * p.T + t2) * C3 + p.C + h * hs;
        var s = 0.0;
        for (var i = 0u; i < hs; i++) {
            s = fma(qkv[q + i], qkv[k + i], s);
        }
        s *= scale;
        att[att_row + t2] = s;
        m = max(m, s);
    }
    red[lid] = m;
    let maxv = reduce(lid, 0u);
    // exponentials and their sum
    var sum = 0.0;
    for (var t2 = lid; t2 <= t; t2 += WG) {
        let e = exp(att[att_row + t2] - maxv);
        att[att_row + t2] = e;
        sum += e;
    }
    red[lid] = sum;
    let inv = 1.0 / reduce(lid, 1u);
    // normalise; the masked part is exactly zero
    for (var t2 = lid; t2 < p.T; t2 += WG) {
        if t2 <= t {
            att[att_row + t2] *= inv;
        } else {
            att[att_row + t2] = 0.0;
        }
    }
    storageBarrier();
    // out = att · v, one head dim per invocation
    let o = (b * p.T + t) * p.C + h * hs;
    for (var i = lid; i < hs; i += WG) {
        var acc = 0.0;
        for (var t2 = 0u; t2 <= t; t2++) {
            acc = fma(att[att_row + t2], qkv[(b * p.T + t2) * C3 + 2u * p.C + h * hs + i], acc);
        }
        out[o + i] = acc;
    }
}
