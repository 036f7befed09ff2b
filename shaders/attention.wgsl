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

// One invocation per query row (b, h, t); a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * nwg.x + wid.x) * 64u + lid;
    if row >= p.B * p.NH * p.T {
        return;
    }
    let t = row % p.T;
    let h = (row / p.T) % p.NH;
    let b = row / (p.T * p.NH);
    let hs = p.C / p.NH;
    let C3 = 3u * p.C;
    let scale = 1.0 / sqrt(f32(hs));
    let q = (b * p.T + t) * C3 + h * hs;
    let att_row = row * p.T;

    // pass 1: scaled scores and their max
    var maxv = -3.4028235e38;
    for (var t2 = 0u; t2 <= t; t2++) {
        let k = (b * p.T + t2) * C3 + p.C + h * hs;
        var s = 0.0;
        for (var i = 0u; i < hs; i++) {
            s = fma(qkv[q + i], qkv[k + i], s);
        }
        s *= scale;
        att[att_row + t2] = s;
        maxv = max(maxv, s);
    }
    // pass 2: exponentials and their sum
    var sum = 0.0;
    for (var t2 = 0u; t2 <= t; t2++) {
        let e = exp(att[att_row + t2] - maxv);
        att[att_row + t2] = e;
        sum += e;
    }
    // pass 3: normalise; the masked part is exactly zero
    let inv = 1.0 / sum;
    for (var t2 = 0u; t2 < p.T; t2++) {
        if t2 <= t {
            att[att_row + t2] *= inv;
        } else {
            att[att_row + t2] = 0.0;
        }
    }
    // pass 4: out = att · v
    let o = (b * p.T + t) * p.C + h * hs;
    for (var i = 0u; i < hs; i++) {
        var acc = 0.0;
        for (var t2 = 0u; t2 <= t; t2++) {
            acc = fma(att[att_row + t2], qkv[(b * p.T + t2) * C3 + 2u * p.C + h * hs + i], acc);
        }
        out[o + i] = acc;
    }
}
