// Causal self-attention for all heads, fused, keeping the softmax for backward ("classic"; the
// flash kernels in flash_attention.wgsl keep only each row's logsumexp): scores q·k/√hs, the
// causal mask, softmax and the weighted sum of v. qkv is c_attn's output [B, T, (NH + 2·KV)·HS]:
// NH query heads, then KV key heads and KV value heads, head h at columns h·HS..(h+1)·HS of its
// part. Query head h reads key and value head h / (NH / KV) (grouped-query attention; KV = NH is
// GPT-2's, 1 is multi-query). out is [B, T, NH·HS]; att keeps the softmax [B, NH, T, T] for
// backward (zero above the diagonal). Backward as llm.c's attention_backward, without atomics:
// first the score gradients per query row, then every element of dqkv by its own invocation.
//
// qkv, out and dout are read as vec4: the host requires a head size that is a multiple of 4.
// A row runs about 2·T·HS/4 + 2·T loop iterations, which must stay under lavapipe's cap of 65535
// per invocation: the selection takes flash attention for shapes past it
// (kernels::selection::classic_fits).

struct Params {
    B: u32,
    T: u32,
    NH: u32, // query heads
    KV: u32, // key and value heads; divides NH
    HS: u32, // head size, a multiple of 4
    drop_p: f32,     // dropout on the attention probabilities (GPT-2's attn_pdrop); 0 = off
    drop_scale: f32, // 1 / (1 − drop_p)
    drop_site: u32,  // dropout site of this layer (kernels::dropout::Site)
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
    let hs4 = p.HS / 4u;
    let W4 = (p.NH + 2u * p.KV) * hs4; // vec4s per qkv row
    let kh = h / (p.NH / p.KV); // the key and value head
    let k0 = p.NH * hs4 + kh * hs4; // its k within a qkv row
    let v0 = (p.NH + p.KV) * hs4 + kh * hs4; // and its v
    let scale = 1.0 / sqrt(f32(hs4 * 4u));
    let q = (b * p.T + t) * W4 + h * hs4;
    let att_row = row * p.T;

    var maxv = -3.0e38;
    for (var t2 = 0u; t2 <= t; t2++) {
        let k = (b * p.T + t2) * W4 + k0;
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
    let o = (b * p.T + t) * p.NH * hs4 + h * hs4;
    let s0 = seed[0]; // loaded once: a storage load in the loop would run every iteration
    for (var i = 0u; i < hs4; i++) {
        var acc = vec4<f32>(0.0);
        for (var t2 = 0u; t2 <= t; t2++) {
            let a = att[att_row + t2] * drop_factor(s0, p.drop_site, att_row + t2, p.drop_p, p.drop_scale);
            acc = fma(vec4<f32>(a), qkv[(b * p.T + t2) * W4 + v0 + i], acc);
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

// One invocation per query row (b, h, t), no barriers: datt[t2] = dout[b,t,h,:]·v[b,t2,kh,:]
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
    let hs4 = p.HS / 4u;
    let W4 = (p.NH + 2u * p.KV) * hs4;
    let v0 = (p.NH + p.KV) * hs4 + h / (p.NH / p.KV) * hs4; // v of the key and value head
    let scale = 1.0 / sqrt(f32(hs4 * 4u));
    let o = (b * p.T + t) * p.NH * hs4 + h * hs4;
    let att_row = row * p.T;

    var total = 0.0;
    let s0 = seed[0];
    for (var t2 = 0u; t2 <= t; t2++) {
        let v = (b * p.T + t2) * W4 + v0;
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

// One invocation per element of dqkv (b, t, j), j < (NH + 2·KV)·HS, on a 2D grid of 64-wide
// workgroups; it sums its contributors in order (the G = NH / KV query heads of a key head, each
// over ≤ T queries), so no two invocations write one element (kh = h / G):
//   dq[b,t,h,i]  += Σ_{t2≤t} dpreatt[b,h,t,t2]·k[b,t2,kh,i]
//   dk[b,t,kh,i] += Σ_{h in kh's group} Σ_{t'≥t} dpreatt[b,h,t',t]·q[b,t',h,i]
//   dv[b,t,kh,i] += Σ_{h in kh's group} Σ_{t'≥t} drop(att)[b,h,t',t]·dout[b,t',h,i]
@compute @workgroup_size(64)
fn backward_qkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let W = (p.NH + 2u * p.KV) * p.HS; // floats per qkv row
    let idx = flat_index(wid, nwg, lid, 64u);
    if idx >= p.B * p.T * W {
        return;
    }
    let bt = idx / W;
    let j = idx % W;
    let b = bt / p.T;
    let t = bt % p.T;
    let G = p.NH / p.KV;
    let i = j % p.HS;
    var acc = 0.0;
    if j < p.NH * p.HS {
        let h = j / p.HS;
        let row = ((b * p.NH + h) * p.T + t) * p.T;
        let k = p.NH * p.HS + h / G * p.HS + i;
        for (var t2 = 0u; t2 <= t; t2++) {
            acc = fma(dpreatt[row + t2], qkv[(b * p.T + t2) * W + k], acc);
        }
    } else if j < (p.NH + p.KV) * p.HS {
        let kh = (j - p.NH * p.HS) / p.HS;
        for (var g = 0u; g < G; g++) {
            let h = kh * G + g;
            let bh = (b * p.NH + h) * p.T; // row (b, h, 0) of the (B,NH,T,T) matrices
            for (var t1 = t; t1 < p.T; t1++) {
                acc = fma(dpreatt[(bh + t1) * p.T + t], qkv[(b * p.T + t1) * W + h * p.HS + i], acc);
            }
        }
    } else {
        let kh = (j - (p.NH + p.KV) * p.HS) / p.HS;
        let s0 = seed[0];
        for (var g = 0u; g < G; g++) {
            let h = kh * G + g;
            let bh = (b * p.NH + h) * p.T;
            for (var t1 = t; t1 < p.T; t1++) {
                let ai = (bh + t1) * p.T + t;
                let a = att[ai] * drop_factor(s0, p.drop_site, ai, p.drop_p, p.drop_scale);
                acc = fma(a, dout[(b * p.T + t1) * p.NH * p.HS + h * p.HS + i], acc);
            }
        }
    }
    dqkv[idx] += acc;
}
