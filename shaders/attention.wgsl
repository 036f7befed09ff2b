// Causal self-attention for all heads, fused: scores q·k/√hs, the causal mask, softmax and the
// weighted sum of v. qkv is c_attn's output [B, T, 3C] (q, k, v side by side, head h at columns
// h·hs..(h+1)·hs of each); out is [B, T, C]; att keeps the softmax [B, NH, T, T] for backward
// (zero above the diagonal). Backward as llm.c's attention_backward, without atomics: first the
// score gradients per query row, then every element of dqkv by its own invocation.

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

// Backward, step 1: dpreatt, the gradient of the unscaled scores q·k.
@group(0) @binding(4) var<storage, read_write> dpreatt: array<f32>;
@group(0) @binding(5) var<storage, read> sc_dout: array<f32>;
@group(0) @binding(6) var<storage, read> sc_qkv: array<f32>;
@group(0) @binding(7) var<storage, read> sc_att: array<f32>;

// One workgroup of 64 per query row (b, h, t) on a 2D grid: invocation j takes keys t2 = j,
// j+64, ...: datt[t2] = dout[b,t,h,:]·v[b,t2,h,:] (kept in dpreatt), then after a reduction of
// Σ att·datt, dpreatt[t2] = att[t2]·(datt[t2] − Σ)·scale, zero above the diagonal.
@compute @workgroup_size(64)
fn backward_scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    let o = (b * p.T + t) * p.C + h * hs;
    let att_row = row * p.T;

    var s = 0.0;
    for (var t2 = lid; t2 <= t; t2 += WG) {
        let v = (b * p.T + t2) * C3 + 2u * p.C + h * hs;
        var datt = 0.0;
        for (var i = 0u; i < hs; i++) {
            datt = fma(sc_dout[o + i], sc_qkv[v + i], datt);
        }
        dpreatt[att_row + t2] = datt;
        s = fma(sc_att[att_row + t2], datt, s);
    }
    red[lid] = s;
    let total = reduce(lid, 1u);
    // each invocation rewrites only the elements it wrote above
    for (var t2 = lid; t2 < p.T; t2 += WG) {
        if t2 <= t {
            let a = sc_att[att_row + t2];
            dpreatt[att_row + t2] = a * (dpreatt[att_row + t2] - total) * scale;
        } else {
            dpreatt[att_row + t2] = 0.0;
        }
    }
}

// Backward, step 2: dq, dk and dv.
@group(0) @binding(8) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(9) var<storage, read> g_dpreatt: array<f32>;
@group(0) @binding(10) var<storage, read> g_dout: array<f32>;
@group(0) @binding(11) var<storage, read> g_qkv: array<f32>;
@group(0) @binding(12) var<storage, read> g_att: array<f32>;

// One invocation per element of dqkv (b, t, j), j < 3C, on a 2D grid of 64-wide workgroups; it
// sums its contributors in order (≤ T ≤ 1024 of them), so no two invocations write one element:
//   dq[b,t,h,i] += Σ_{t2≤t} dpreatt[b,h,t,t2]·k[b,t2,h,i]
//   dk[b,t,h,i] += Σ_{t'≥t} dpreatt[b,h,t',t]·q[b,t',h,i]
//   dv[b,t,h,i] += Σ_{t'≥t} att[b,h,t',t]·dout[b,t',h,i]
@compute @workgroup_size(64)
fn backward_qkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let C3 = 3u * p.C;
    let idx = (wid.y * nwg.x + wid.x) * WG + lid;
    if idx >= p.B * p.T * C3 {
        return;
    }
    let bt = idx / C3;
    let j = idx % C3;
    let b = bt / p.T;
    let t = bt % p.T;
    let part = j / p.C; // 0: q, 1: k, 2: v
    let c = j % p.C;
    let h = c / (p.C / p.NH);
    let bh = (b * p.NH + h) * p.T; // row (b, h, 0) of the (B,NH,T,T) matrices
    var acc = 0.0;
    if part == 0u {
        let row = (bh + t) * p.T;
        for (var t2 = 0u; t2 <= t; t2++) {
            acc = fma(g_dpreatt[row + t2], g_qkv[(b * p.T + t2) * C3 + p.C + c], acc);
        }
    } else if part == 1u {
        for (var t1 = t; t1 < p.T; t1++) {
            acc = fma(g_dpreatt[(bh + t1) * p.T + t], g_qkv[(b * p.T + t1) * C3 + c], acc);
        }
    } else {
        for (var t1 = t; t1 < p.T; t1++) {
            acc = fma(g_att[(bh + t1) * p.T + t], g_dout[(b * p.T + t1) * p.C + c], acc);
        }
    }
    dqkv[idx] += acc;
}
