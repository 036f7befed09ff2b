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
    drop_p: f32,     // dropout on the attention probabilities (GPT-2's attn_pdrop); 0 = off
    drop_scale: f32, // 1 / (1 − drop_p)
    drop_site: u32,  // dropout site of this layer (see dropout.wgsl)
    _pad: u32,
}

// dropout.wgsl's hash and rule: the multiplier (0 or 1/(1−p)) of att element i.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn drop_factor(seed: u32, i: u32) -> f32 {
    if p.drop_p <= 0.0 {
        return 1.0;
    }
    let u = f32(pcg(pcg(seed ^ pcg(p.drop_site)) ^ i) >> 8u) * (1.0 / 16777216.0);
    return select(0.0, p.drop_scale, u >= p.drop_p);
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> att: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> seed: array<u32>;

// qkv, out and dout are read as vec4: the host requires a head size that is a multiple of 4.
// Per-row loops stay under lavapipe's cap of 65535 loop iterations per invocation: T ≤ 1024 keys
// times hs/4 ≤ 16 vec4 steps.

// One invocation per query row (b, h, t), no workgroup memory and no barriers: scores and their
// max, exponentials and their sum, normalisation (zero above the diagonal), then out = att · v.
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
    let hs4 = p.C / p.NH / 4u;
    let C34 = 3u * p.C / 4u; // vec4s per qkv row
    let C4 = p.C / 4u;
    let scale = 1.0 / sqrt(f32(hs4 * 4u));
    let q = (b * p.T + t) * C34 + h * hs4;
    let att_row = row * p.T;

    var maxv = -3.0e38;
    for (var t2 = 0u; t2 <= t; t2++) {
        let k = (b * p.T + t2) * C34 + C4 + h * hs4;
        var s = 0.0;
        for (var i = 0u; i < hs4; i++) {
            s += dot(qkv[q + i], qkv[k + i]);
        }
        s *= scale;
        att[att_row + t2] = s;
        maxv = max(maxv, s);
    }
    var sum = 0.0;
    for (var t2 = 0u; t2 <= t; t2++) {
        let e = exp(att[att_row + t2] - maxv);
        att[att_row + t2] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for (var t2 = 0u; t2 < p.T; t2++) {
        if t2 <= t {
            att[att_row + t2] *= inv;
        } else {
            att[att_row + t2] = 0.0;
        }
    }
    let o = (b * p.T + t) * C4 + h * hs4;
    let s0 = seed[0]; // loaded once: a storage load in the loop would run every iteration
    for (var i = 0u; i < hs4; i++) {
        var acc = vec4<f32>(0.0);
        for (var t2 = 0u; t2 <= t; t2++) {
            let a = att[att_row + t2] * drop_factor(s0, att_row + t2);
            acc = fma(vec4<f32>(a), qkv[(b * p.T + t2) * C34 + 2u * C4 + h * hs4 + i], acc);
        }
        out[o + i] = acc;
    }
}

// Backward, step 1: dpreatt, the gradient of the unscaled scores q·k.
@group(0) @binding(5) var<storage, read_write> dpreatt: array<f32>;
@group(0) @binding(6) var<storage, read> sc_dout: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> sc_qkv: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> sc_att: array<f32>;
@group(0) @binding(9) var<storage, read> sc_seed: array<u32>;

// One invocation per query row (b, h, t), no barriers: datt[t2] = dout[b,t,h,:]·v[b,t2,h,:]
// (kept in dpreatt) and Σ att·datt, then dpreatt[t2] = att[t2]·(datt[t2] − Σ)·scale, zero above
// the diagonal.
@compute @workgroup_size(64)
fn backward_scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * nwg.x + wid.x) * 64u + lid;
    if row >= p.B * p.NH * p.T {
        return;
    }
    let t = row % p.T;
    let h = (row / p.T) % p.NH;
    let b = row / (p.T * p.NH);
    let hs4 = p.C / p.NH / 4u;
    let C34 = 3u * p.C / 4u;
    let C4 = p.C / 4u;
    let scale = 1.0 / sqrt(f32(hs4 * 4u));
    let o = (b * p.T + t) * C4 + h * hs4;
    let att_row = row * p.T;

    var total = 0.0;
    let s0 = sc_seed[0];
    for (var t2 = 0u; t2 <= t; t2++) {
        let v = (b * p.T + t2) * C34 + 2u * C4 + h * hs4;
        var datt = 0.0;
        for (var i = 0u; i < hs4; i++) {
            datt += dot(sc_dout[o + i], sc_qkv[v + i]);
        }
        datt *= drop_factor(s0, att_row + t2); // through the dropout on att
        dpreatt[att_row + t2] = datt;
        total = fma(sc_att[att_row + t2], datt, total);
    }
    for (var t2 = 0u; t2 < p.T; t2++) {
        if t2 <= t {
            dpreatt[att_row + t2] = sc_att[att_row + t2] * (dpreatt[att_row + t2] - total) * scale;
        } else {
            dpreatt[att_row + t2] = 0.0;
        }
    }
}

// Backward, step 2: dq, dk and dv.
@group(0) @binding(10) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(11) var<storage, read> g_dpreatt: array<f32>;
@group(0) @binding(12) var<storage, read> g_dout: array<f32>;
@group(0) @binding(13) var<storage, read> g_qkv: array<f32>;
@group(0) @binding(14) var<storage, read> g_att: array<f32>;
@group(0) @binding(15) var<storage, read> g_seed: array<u32>;

// One invocation per element of dqkv (b, t, j), j < 3C, on a 2D grid of 64-wide workgroups; it
// sums its contributors in order (≤ T ≤ 1024 of them), so no two invocations write one element:
//   dq[b,t,h,i] += Σ_{t2≤t} dpreatt[b,h,t,t2]·k[b,t2,h,i]
//   dk[b,t,h,i] += Σ_{t'≥t} dpreatt[b,h,t',t]·q[b,t',h,i]
//   dv[b,t,h,i] += Σ_{t'≥t} drop(att)[b,h,t',t]·dout[b,t',h,i]
@compute @workgroup_size(64)
fn backward_qkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let C3 = 3u * p.C;
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
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
        let s0 = g_seed[0];
        for (var t1 = t; t1 < p.T; t1++) {
            let ai = (bh + t1) * p.T + t;
            acc = fma(g_att[ai] * drop_factor(s0, ai), g_dout[(b * p.T + t1) * p.C + c], acc);
        }
    }
    dqkv[idx] += acc;
}
