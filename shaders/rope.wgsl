// Rotary position embeddings (HF's rotate-half layout) with an optional RMSNorm of each q and k
// head before the rotation (Qwen3's q_norm / k_norm), fused in one pass over qkv.
// qkv rows are (NH + 2·KV)·HD wide: q heads, then k heads, then v heads. Token t of a row block
// of T sits at position pos[0] + t (the decoder binds its pos, training a zero), and the host's
// table holds cos then sin of that position's angles, (positions, HD): no WGSL cos or sin.
// Backward rotates by −θ, then runs the RMSNorm backward; the norms' weight gradients are column
// sums over every q (or k) head row in a fixed order.

struct Params {
    rows: u32,   // B·T
    T: u32,
    NH: u32,
    KV: u32,
    HD: u32,
    norm: u32,   // 1: RMSNorm q and k heads (weights q_norm, k_norm)
    rope: u32,   // 1: rotate q and k heads
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

//#entry @common
// The head at (row, h) starts at element base(row, h) of qkv.
fn base(row: u32, h: u32) -> u32 {
    return (row * (p.NH + 2u * p.KV) + h) * p.HD;
}

// Where row's position's cos values start in the table (its sin values follow at + HD/2).
fn table_at(row: u32) -> u32 {
    return (pos[0] + row % p.T) * p.HD;
}

// The gradient of the rotation's input at (b + i, b + i + HD/2) given the output's gradient
// there: the rotation by −θ.
fn unrotate(d0: f32, d1: f32, i: u32, tab: u32) -> vec2<f32> {
    if p.rope == 0u {
        return vec2<f32>(d0, d1);
    }
    let c = table[tab + i];
    let s = table[tab + p.HD / 2u + i];
    return vec2<f32>(d0 * c + d1 * s, d1 * c - d0 * s);
}

//#entry @weight
// The head's weight j of q_norm (q heads) or k_norm (k heads); 1 without the norm.
fn weight(h: u32, j: u32) -> f32 {
    if p.norm == 0u {
        return 1.0;
    }
    if h < p.NH {
        return q_norm[j];
    }
    return k_norm[j];
}

//#entry forward
//#use @common
//#use @weight
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(3) var<storage, read> qkv_raw: array<f32>;
@group(0) @binding(4) var<storage, read> q_norm: array<f32>;
@group(0) @binding(5) var<storage, read> k_norm: array<f32>;
@group(0) @binding(6) var<storage, read> table: array<f32>;
@group(0) @binding(7) var<storage, read> pos: array<u32>;

// One invocation per (row, head) of all NH + 2·KV heads (v heads are copied); a 2D grid of
// 64-wide workgroups.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let idx = flat_index(wid, nwg, lid, 64u);
    let heads = p.NH + 2u * p.KV;
    if idx >= p.rows * heads {
        return;
    }
    let row = idx / heads;
    let h = idx % heads;
    let b = base(row, h);
    if h >= p.NH + p.KV {
        for (var j = 0u; j < p.HD; j++) {
            qkv[b + j] = qkv_raw[b + j];
        }
        return;
    }
    var s = 1.0;
    if p.norm == 1u {
        var sum = 0.0;
        for (var j = 0u; j < p.HD; j++) {
            sum += qkv_raw[b + j] * qkv_raw[b + j];
        }
        s = inverseSqrt(sum / f32(p.HD) + p.eps);
        rstd[row * (p.NH + p.KV) + h] = s;
    }
    let half = p.HD / 2u;
    let tab = table_at(row);
    for (var i = 0u; i < half; i++) {
        let x0 = qkv_raw[b + i] * s * weight(h, i);
        let x1 = qkv_raw[b + i + half] * s * weight(h, i + half);
        if p.rope == 1u {
            let c = table[tab + i];
            let sn = table[tab + half + i];
            qkv[b + i] = x0 * c - x1 * sn;
            qkv[b + i + half] = x1 * c + x0 * sn;
        } else {
            qkv[b + i] = x0;
            qkv[b + i + half] = x1;
        }
    }
}

//#entry backward
//#use @common
//#use @weight
@group(0) @binding(1) var<storage, read_write> dqkv_raw: array<f32>;
@group(0) @binding(2) var<storage, read> dqkv: array<f32>;
@group(0) @binding(3) var<storage, read> qkv_raw: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> q_norm: array<f32>;
@group(0) @binding(6) var<storage, read> k_norm: array<f32>;
@group(0) @binding(7) var<storage, read> table: array<f32>;
@group(0) @binding(8) var<storage, read> pos: array<u32>;

// The gradient of the norm's output at element j of the head at b: the rotation's input's.
fn dnormed(b: u32, j: u32, tab: u32) -> f32 {
    let half = p.HD / 2u;
    let i = j % half;
    let d = unrotate(dqkv[b + i], dqkv[b + i + half], i, tab);
    return select(d.x, d.y, j >= half);
}

// One invocation per (row, head), as the forward; dqkv_raw accumulates (+=).
@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let idx = flat_index(wid, nwg, lid, 64u);
    let heads = p.NH + 2u * p.KV;
    if idx >= p.rows * heads {
        return;
    }
    let row = idx / heads;
    let h = idx % heads;
    let b = base(row, h);
    if h >= p.NH + p.KV {
        for (var j = 0u; j < p.HD; j++) {
            dqkv_raw[b + j] += dqkv[b + j];
        }
        return;
    }
    let tab = table_at(row);
    if p.norm == 0u {
        for (var j = 0u; j < p.HD; j++) {
            dqkv_raw[b + j] += dnormed(b, j, tab);
        }
        return;
    }
    // y = x·s·w: dx = s·(g − x̂·mean(g·x̂)) with g = w·dy and x̂ = x·s
    let s = rstd[row * (p.NH + p.KV) + h];
    var gx = 0.0;
    for (var j = 0u; j < p.HD; j++) {
        gx += weight(h, j) * dnormed(b, j, tab) * qkv_raw[b + j] * s;
    }
    gx /= f32(p.HD);
    for (var j = 0u; j < p.HD; j++) {
        let g = weight(h, j) * dnormed(b, j, tab);
        dqkv_raw[b + j] += (g - qkv_raw[b + j] * s * gx) * s;
    }
}

//#entry backward_params
//#use @common
@group(0) @binding(1) var<storage, read_write> dq_norm: array<f32>;
@group(0) @binding(2) var<storage, read_write> dk_norm: array<f32>;
@group(0) @binding(3) var<storage, read> dqkv: array<f32>;
@group(0) @binding(4) var<storage, read> qkv_raw: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read> table: array<f32>;
@group(0) @binding(7) var<storage, read> pos: array<u32>;

const COLS: u32 = 16u;
const LANES: u32 = 16u;
var<workgroup> red: array<f32, 256>; // COLS * LANES

// Columns 0..HD are q_norm's, HD..2·HD k_norm's. One 16x16 workgroup per 16 columns: x picks the
// column, y a lane that sums head rows y, y+16, ... (row-major over (token, head)); then a tree
// reduction over the lanes in a fixed order, so the sums are deterministic.
@compute @workgroup_size(16, 16)
fn backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) l: vec3<u32>) {
    let c0 = flat_index(wid, nwg, 0u, COLS);
    if c0 >= 2u * p.HD {
        return; // the whole workgroup: c0 is uniform, so the barriers below stay uniform
    }
    let col = c0 + l.x;
    var sum = 0.0;
    if col < 2u * p.HD {
        let is_k = col >= p.HD;
        let j = col % p.HD;
        let n = select(p.NH, p.KV, is_k);
        let h0 = select(0u, p.NH, is_k);
        let half = p.HD / 2u;
        let i = j % half;
        for (var r = l.y; r < p.rows * n; r += LANES) {
            let row = r / n;
            let h = h0 + r % n;
            let b = base(row, h);
            let d = unrotate(dqkv[b + i], dqkv[b + i + half], i, table_at(row));
            let dy = select(d.x, d.y, j >= half);
            sum += dy * qkv_raw[b + j] * rstd[row * (p.NH + p.KV) + h];
        }
    }
    let k = l.y * COLS + l.x;
    red[k] = sum;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if l.y < stride {
            red[k] += red[k + stride * COLS];
        }
        workgroupBarrier();
    }
    if l.y == 0u && col < 2u * p.HD {
        if col < p.HD {
            dq_norm[col] += red[l.x];
        } else {
            dk_norm[col - p.HD] += red[l.x];
        }
    }
}
