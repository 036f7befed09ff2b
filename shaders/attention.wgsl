// Causal self-attention for all heads, fused, keeping the softmax for backward ("classic"; the
// flash kernels in flash_attention.wgsl keep only each row's logsumexp): scores q·k/√hs, the
// causal mask, softmax and the weighted sum of v. qkv is c_attn's output [B, T, 3C] (q, k, v side
// by side, head h at columns h·hs..(h+1)·hs of each); out is [B, T, C]; att keeps the softmax
// [B, NH, T, T] for backward (zero above the diagonal). Backward as llm.c's attention_backward,
// without atomics: first the score gradients per query row, then every element of dqkv by its
// own invocation.
//
// qkv, out and dout are read as vec4: the host requires a head size that is a multiple of 4.
// Per-row loops stay under lavapipe's cap of 65535 loop iterations per invocation: T ≤ 1024 keys
// times hs/4 ≤ 16 vec4 steps.

struct Params {
    B: u32,
    T: u32,
    C: u32,
    NH: u32,
    drop_p: f32,     // dropout on the attention probabilities (GPT-2's attn_pdrop); 0 = off
    drop_scale: f32, // 1 / (1 − drop_p)
    drop_site: u32,  // dropout site of this layer (kernels::dropout::Site)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

//#entry forward
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> att: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> seed: array<u32>;

// One invocation per query row (b, h, t), no workgroup memory and no barriers: scores and their
// max, exponentials and their sum, normalisation (zero above the diagonal), then out = att · v.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, lid, 64u);
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
            let a = att[att_row + t2] * drop_factor(s0, p.drop_site, att_row + t2, p.drop_p, p.drop_scale);
            acc = fma(vec4<f32>(a), qkv[(b * p.T + t2) * C34 + 2u * C4 + h * hs4 + i], acc);
        }
        out[o + i] = acc;
    }
}

//#entry backward_scores
// Backward, step 1: dpreatt, the gradient of the unscaled scores q·k.
@group(0) @binding(1) var<storage, read_write> dpreatt: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> att: array<f32>;
@group(0) @binding(5) var<storage, read> seed: array<u32>;

// One invocation per query row (b, h, t), no barriers: datt[t2] = dout[b,t,h,:]·v[b,t2,h,:]
// (kept in dpreatt) and Σ att·datt, then dpreatt[t2] = att[t2]·(datt[t2] − Σ)·scale, zero above
// the diagonal.
@compute @workgroup_size(64)
fn backward_scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, lid, 64u);
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
    let s0 = seed[0];
    for (var t2 = 0u; t2 <= t; t2++) {
        let v = (b * p.T + t2) * C34 + 2u * C4 + h * hs4;
        var datt = 0.0;
        for (var i = 0u; i < hs4; i++) {
            datt += dot(dout[o + i], qkv[v + i]);
        }
        datt *= drop_factor(s0, p.drop_site, att_row + t2, p.drop_p, p.drop_scale); // through the dropout on att
        dpreatt[att_row + t2] = datt;
        total = fma(att[att_row + t2], datt, total);
    }
    for (var t2 = 0u; t2 < p.T; t2++) {
        if t2 <= t {
            dpreatt[att_row + t2] = att[att_row + t2] * (dpreatt[att_row + t2] - total) * scale;
        } else {
            dpreatt[att_row + t2] = 0.0;
        }
    }
}

//#entry backward_qkv
// Backward, step 2: dq, dk and dv.
@group(0) @binding(1) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(2) var<storage, read> dpreatt: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> qkv: array<f32>;
@group(0) @binding(5) var<storage, read> att: array<f32>;
@group(0) @binding(6) var<storage, read> seed: array<u32>;

// One invocation per element of dqkv (b, t, j), j < 3C, on a 2D grid of 64-wide workgroups; it
// sums its contributors in order (≤ T ≤ 1024 of them), so no two invocations write one element:
//   dq[b,t,h,i] += Σ_{t2≤t} dpreatt[b,h,t,t2]·k[b,t2,h,i]
//   dk[b,t,h,i] += Σ_{t'≥t} dpreatt[b,h,t',t]·q[b,t',h,i]
//   dv[b,t,h,i] += Σ_{t'≥t} drop(att)[b,h,t',t]·dout[b,t',h,i]
@compute @workgroup_size(64)
fn backward_qkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let C3 = 3u * p.C;
    let idx = flat_index(wid, nwg, lid, 64u);
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
            acc = fma(dpreatt[row + t2], qkv[(b * p.T + t2) * C3 + p.C + c], acc);
        }
    } else if part == 1u {
        for (var t1 = t; t1 < p.T; t1++) {
            acc = fma(dpreatt[(bh + t1) * p.T + t], qkv[(b * p.T + t1) * C3 + c], acc);
        }
    } else {
        let s0 = seed[0];
        for (var t1 = t; t1 < p.T; t1++) {
            let ai = (bh + t1) * p.T + t;
            acc = fma(att[ai] * drop_factor(s0, p.drop_site, ai, p.drop_p, p.drop_scale), dout[(b * p.T + t1) * p.C + c], acc);
        }
    }
    dqkv[idx] += acc;
}
