// Inference with a KV cache: T new tokens at absolute positions pos0 .. pos0 + T − 1 (T = the
// prompt for a prefill, 1 for a decode step), attending to every cached position before them.
// pos0 is read from a one-word storage buffer written before each submit, so one recorded
// program serves every position. Per layer, K and V of the new tokens go into caches of S =
// block_size rows of C; attention reads them in three barrier-free passes (scores, softmax,
// weighted sum), each parallel over keys or head columns so that a single decode token still
// fills the GPU. The head of the model then needs only the last row (last_row), and greedy
// decoding reads back one u32 (argmax_part, argmax_final) instead of V logits.

struct Params {
    T: u32,  // new tokens (rows of x, qkv, out)
    C: u32,
    NH: u32,
    S: u32,  // cache rows (block_size)
    V: u32,  // vocabulary (embed, argmax)
    v0: u32, // embed: the bound wte holds rows v0 .. v0 + rows (one chunk of a table bigger than
    rows: u32, // one storage binding)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

// embed: x[t, c] = wte[ids[t], c] + wpe[pos0 + t, c]; one invocation per element, one dispatch
// per chunk of wte.
@group(0) @binding(1) var<storage, read_write> em_out: array<f32>;
@group(0) @binding(2) var<storage, read> em_ids: array<u32>;
@group(0) @binding(3) var<storage, read> em_wte: array<f32>;
@group(0) @binding(4) var<storage, read> em_wpe: array<f32>;
@group(0) @binding(5) var<storage, read> em_pos: array<u32>;

@compute @workgroup_size(64)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if i >= p.T * p.C {
        return;
    }
    let t = i / p.C;
    let c = i % p.C;
    let id = min(em_ids[t], p.V - 1u); // checked on the CPU; the clamp only keeps reads in bounds
    if id < p.v0 || id >= p.v0 + p.rows {
        return; // another chunk's token
    }
    let pos = min(em_pos[0] + t, p.S - 1u);
    em_out[i] = em_wte[(id - p.v0) * p.C + c] + em_wpe[pos * p.C + c];
}

// kv_write: rows pos0 + t of the caches = the k and v parts of qkv (T, 3C).
@group(0) @binding(6) var<storage, read_write> kw_k: array<f32>;
@group(0) @binding(7) var<storage, read_write> kw_v: array<f32>;
@group(0) @binding(8) var<storage, read> kw_qkv: array<f32>;
@group(0) @binding(9) var<storage, read> kw_pos: array<u32>;

@compute @workgroup_size(64)
fn kv_write(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if i >= p.T * p.C {
        return;
    }
    let t = i / p.C;
    let c = i % p.C;
    let row = kw_pos[0] + t;
    if row >= p.S {
        return;
    }
    kw_k[row * p.C + c] = kw_qkv[t * 3u * p.C + p.C + c];
    kw_v[row * p.C + c] = kw_qkv[t * 3u * p.C + 2u * p.C + c];
}

// scores: s[t, h, j] = q[t, h] · k[j, h] / √hs for the keys j ≤ pos0 + t (the causal mask; the
// entries past it are never read). One invocation per (t, h, j), j < S. q, k read as vec4s.
@group(0) @binding(10) var<storage, read_write> sc_s: array<f32>;
@group(0) @binding(11) var<storage, read> sc_qkv: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> sc_k: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read> sc_pos: array<u32>;

@compute @workgroup_size(64)
fn scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if i >= p.T * p.NH * p.S {
        return;
    }
    let j = i % p.S;
    let h = (i / p.S) % p.NH;
    let t = i / (p.S * p.NH);
    if j > sc_pos[0] + t {
        return;
    }
    let hs4 = p.C / p.NH / 4u;
    let q = t * 3u * p.C / 4u + h * hs4;
    let k = j * p.C / 4u + h * hs4;
    var s = 0.0;
    for (var e = 0u; e < hs4; e++) {
        s += dot(sc_qkv[q + e], sc_k[k + e]);
    }
    sc_s[i] = s * (1.0 / sqrt(f32(hs4 * 4u)));
}

// softmax: each row (t, h) of s over j ≤ pos0 + t, in place. One invocation per row.
@group(0) @binding(14) var<storage, read_write> sm_s: array<f32>;
@group(0) @binding(15) var<storage, read> sm_pos: array<u32>;

@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = index(wid, nwg, lid);
    if row >= p.T * p.NH {
        return;
    }
    let t = row / p.NH;
    let n = min(sm_pos[0] + t + 1u, p.S);
    let base = row * p.S;
    var maxv = -3.0e38;
    for (var j = 0u; j < n; j++) {
        maxv = max(maxv, sm_s[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < n; j++) {
        let e = exp(sm_s[base + j] - maxv);
        sm_s[base + j] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for (var j = 0u; j < n; j++) {
        sm_s[base + j] *= inv;
    }
}

// weighted: out[t, h·hs + 4e ..] = Σ_{j ≤ pos0 + t} s[t, h, j] · v[j, h·hs + 4e ..]. One
// invocation per vec4 of out.
@group(0) @binding(16) var<storage, read_write> wv_out: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read> wv_s: array<f32>;
@group(0) @binding(18) var<storage, read> wv_v: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read> wv_pos: array<u32>;

@compute @workgroup_size(64)
fn weighted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    let C4 = p.C / 4u;
    if i >= p.T * C4 {
        return;
    }
    let t = i / C4;
    let c4 = i % C4;
    let h = c4 / (C4 / p.NH);
    let n = min(wv_pos[0] + t + 1u, p.S);
    let base = (t * p.NH + h) * p.S;
    var acc = vec4<f32>(0.0);
    for (var j = 0u; j < n; j++) {
        acc = fma(vec4<f32>(wv_s[base + j]), wv_v[j * C4 + c4], acc);
    }
    wv_out[i] = acc;
}

// last_row: out (1, C) = x[T − 1, :], the only row the next token needs.
@group(0) @binding(20) var<storage, read_write> lr_out: array<f32>;
@group(0) @binding(21) var<storage, read> lr_x: array<f32>;

@compute @workgroup_size(64)
fn last_row(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let c = index(wid, nwg, lid);
    if c >= p.C {
        return;
    }
    lr_out[c] = lr_x[(p.T - 1u) * p.C + c];
}

// Greedy decoding: the index of the first maximum of V logits, as the CPU's argmax. Pass 1: the
// first maximum of each chunk of 256; pass 2 (one invocation): the first maximum among those.
const CHUNK: u32 = 256u;

@group(0) @binding(22) var<storage, read_write> am_part: array<u32>;
@group(0) @binding(23) var<storage, read> am_logits: array<f32>;

@compute @workgroup_size(64)
fn argmax_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let chunk = index(wid, nwg, lid);
    let start = chunk * CHUNK;
    if start >= p.V {
        return;
    }
    let end = min(start + CHUNK, p.V);
    var best = start;
    for (var i = start + 1u; i < end; i++) {
        if am_logits[i] > am_logits[best] {
            best = i;
        }
    }
    am_part[chunk] = best;
}

@group(0) @binding(24) var<storage, read_write> af_out: array<u32>;
@group(0) @binding(25) var<storage, read> af_part: array<u32>;
@group(0) @binding(26) var<storage, read> af_logits: array<f32>;

@compute @workgroup_size(1)
fn argmax_final() {
    let chunks = (p.V + CHUNK - 1u) / CHUNK;
    var best = af_part[0];
    for (var c = 1u; c < chunks; c++) {
        let i = af_part[c];
        if af_logits[i] > af_logits[best] {
            best = i;
        }
    }
    af_out[0] = best;
}
