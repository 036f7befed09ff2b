// Inference with a KV cache: T new tokens at absolute positions pos0 .. pos0 + T − 1 (T = the
// prompt for a prefill, 1 for a decode step), attending to every cached position before them.
// pos0 is read from a one-word storage buffer written before each submit, so one recorded
// program serves every position. Per layer, K and V of the new tokens go into caches of S =
// block_size rows of KV·HD (qkv rows are [q NH·HD | k KV·HD | v KV·HD]; query head h reads KV
// head h / (NH / KV)); attention reads them in three barrier-free passes (scores, softmax,
// weighted sum), each parallel over keys or head columns so that a single decode token still
// fills the GPU. The head of the model then needs only the last row (last_row), and greedy
// decoding reads back one u32 (argmax_part, argmax_final) instead of V logits.

struct Params {
    T: u32,  // new tokens (rows of x, qkv, out)
    C: u32,  // the residual stream's width
    NH: u32, // query heads
    KV: u32, // key and value heads; divides NH
    HD: u32, // head size, a multiple of 4
    S: u32,  // cache rows (block_size)
    V: u32,  // vocabulary (embed, argmax)
    v0: u32, // embed: the bound wte holds rows v0 .. v0 + rows (one chunk of a table bigger than
    rows: u32, // one storage binding)
    has_wpe: u32, // embed: 0 without learned positions (wpe bound to wte, never read)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const CHUNK: u32 = 256u; // logits per argmax_part invocation

//#entry embed
// x[t, c] = wte[ids[t], c] + wpe[pos0 + t, c]; one invocation per element, one dispatch
// per chunk of wte.
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;
@group(0) @binding(5) var<storage, read> pos: array<u32>;

@compute @workgroup_size(64)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.T * p.C {
        return;
    }
    let t = i / p.C;
    let c = i % p.C;
    let id = min(ids[t], p.V - 1u); // checked on the CPU; the clamp only keeps reads in bounds
    if id < p.v0 || id >= p.v0 + p.rows {
        return; // another chunk's token
    }
    let row = min(pos[0] + t, p.S - 1u);
    if p.has_wpe != 0u {
        out[i] = wte[(id - p.v0) * p.C + c] + wpe[row * p.C + c];
    } else {
        out[i] = wte[(id - p.v0) * p.C + c];
    }
}

//#entry kv_write
// Rows pos0 + t of the caches (S, KV·HD) = the k and v parts of qkv (T, (NH + 2·KV)·HD).
@group(0) @binding(1) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;

@compute @workgroup_size(64)
fn kv_write(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    let KVW = p.KV * p.HD;
    if i >= p.T * KVW {
        return;
    }
    let t = i / KVW;
    let c = i % KVW;
    let row = pos[0] + t;
    if row >= p.S {
        return;
    }
    let q = t * (p.NH + 2u * p.KV) * p.HD; // the token's qkv row
    k_cache[row * KVW + c] = qkv[q + p.NH * p.HD + c];
    v_cache[row * KVW + c] = qkv[q + p.NH * p.HD + KVW + c];
}

//#entry scores
// s[t, h, j] = q[t, h] · k[j, h / (NH / KV)] / √hs for the keys j ≤ pos0 + t (the causal mask; the
// entries past it are never read). One invocation per (t, h, j), j < S. q, k read as vec4s.
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;

@compute @workgroup_size(64)
fn scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.T * p.NH * p.S {
        return;
    }
    let j = i % p.S;
    let h = (i / p.S) % p.NH;
    let t = i / (p.S * p.NH);
    if j > pos[0] + t {
        return;
    }
    let hs4 = p.HD / 4u;
    let q = t * (p.NH + 2u * p.KV) * hs4 + h * hs4;
    let k = j * p.KV * hs4 + h / (p.NH / p.KV) * hs4;
    var s = 0.0;
    for (var e = 0u; e < hs4; e++) {
        s += dot(qkv[q + e], k_cache[k + e]);
    }
    out[i] = s * (1.0 / sqrt(f32(hs4 * 4u)));
}

//#entry softmax
// Each row (t, h) of s over j ≤ pos0 + t, in place. One invocation per row.
@group(0) @binding(1) var<storage, read_write> scores: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;

@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, lid, 64u);
    if row >= p.T * p.NH {
        return;
    }
    let t = row / p.NH;
    let n = min(pos[0] + t + 1u, p.S);
    let base = row * p.S;
    var maxv = -3.0e38;
    for (var j = 0u; j < n; j++) {
        maxv = max(maxv, scores[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < n; j++) {
        let e = exp(scores[base + j] - maxv);
        scores[base + j] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for (var j = 0u; j < n; j++) {
        scores[base + j] *= inv;
    }
}

//#entry weighted
// out[t, h·hs + 4e ..] = Σ_{j ≤ pos0 + t} s[t, h, j] · v[j, kh·hs + 4e ..] (kh = h / (NH / KV)).
// One invocation per vec4 of out (T, NH·HD).
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;

@compute @workgroup_size(64)
fn weighted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    let hs4 = p.HD / 4u;
    let O4 = p.NH * hs4;
    if i >= p.T * O4 {
        return;
    }
    let t = i / O4;
    let h = (i % O4) / hs4;
    let c4 = h / (p.NH / p.KV) * hs4 + i % hs4; // the vec4 within a cache row
    let n = min(pos[0] + t + 1u, p.S);
    let base = (t * p.NH + h) * p.S;
    var acc = vec4<f32>(0.0);
    for (var j = 0u; j < n; j++) {
        acc = fma(vec4<f32>(scores[base + j]), v_cache[j * p.KV * hs4 + c4], acc);
    }
    out[i] = acc;
}

//#entry last_row
// out (1, C) = x[T − 1, :], the only row the next token needs.
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(64)
fn last_row(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let c = flat_index(wid, nwg, lid, 64u);
    if c >= p.C {
        return;
    }
    out[c] = x[(p.T - 1u) * p.C + c];
}

//#entry argmax_part
// Greedy decoding: the index of the first maximum of V logits, as the CPU's argmax. Pass 1: the
// first maximum of each chunk of CHUNK; pass 2 (argmax_final): the first maximum among those.
@group(0) @binding(1) var<storage, read_write> part: array<u32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;

@compute @workgroup_size(64)
fn argmax_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let chunk = flat_index(wid, nwg, lid, 64u);
    let start = chunk * CHUNK;
    if start >= p.V {
        return;
    }
    let end = min(start + CHUNK, p.V);
    var best = start;
    for (var i = start + 1u; i < end; i++) {
        if logits[i] > logits[best] {
            best = i;
        }
    }
    part[chunk] = best;
}

//#entry argmax_final
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> part: array<u32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;

@compute @workgroup_size(1)
fn argmax_final() {
    let chunks = (p.V + CHUNK - 1u) / CHUNK;
    var best = part[0];
    for (var c = 1u; c < chunks; c++) {
        let i = part[c];
        if logits[i] > logits[best] {
            best = i;
        }
    }
    out[0] = best;
}
