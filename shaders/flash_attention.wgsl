// Flash attention (FlashAttention-2's algorithm with a per-key online softmax): causal
// self-attention over qkv [B, T, (NH + 2·KV)·hs] (NH query heads, then KV key and KV value heads;
// query head h reads key and value head h / (NH / KV)) into out [B, T, NH·hs] that never stores
// the T x T matrix. The forward keeps each query row's logsumexp lse [B, NH, T]; the backward
// recomputes the probabilities from it, P = exp(q·k/√hs − lse), takes D = dout·out per query row
// (Σ P·dP, as FlashAttention-2) and accumulates dq per query row and dk, dv per key row of a KV
// head, each by the one invocation that owns the row (no atomics, deterministic): a key row sums
// its group's query heads in order, each over its queries in order. Dropout on the probabilities
// uses the same (seed, site, (b·NH + h)·T·T + t·T + t2) mask as attention.wgsl.
//
// A template over the head size (HS4 = hs / 4 vec4s; q, k, v rows and accumulators are arrays
// indexed only by unrolled constants, so they live in registers) and the implementation (MODE)
// of each pass (forward, backward_dq, backward_dkv), which only changes which invocation owns a
// row and where the other side's rows (keys, or queries) come from:
//   0 `rows`: one invocation per row reads them from storage, no workgroup memory, no barriers;
//   1 `tiled`: a workgroup of 64 rows stages tiles of BC of them in workgroup memory (GPUs);
//   2 `subgroup`: 8 lanes own 8 rows and each row is loaded once, shared by subgroupBroadcast
//     (adapters with subgroups of exactly 8, natively: lavapipe).
// All visit a row's keys in the same order through the same functions, so their results are
// bit-identical.

struct Params {
    B: u32,
    T: u32,
    NH: u32, // query heads
    KV: u32, // key and value heads; divides NH
    HS: u32, // head size (4·HS4)
    drop_p: f32,     // dropout on the attention probabilities; 0 = off
    drop_scale: f32, // 1 / (1 − drop_p)
    drop_site: u32,  // dropout site of this layer (kernels::dropout::Site)
}

@group(0) @binding(0) var<uniform> p: Params;

const HS4: u32 = ${HS4}u;
const SCALE: f32 = $SCALE; // 1/√hs, written by the host
const WG: u32 = 64u; // invocations per workgroup; rows per workgroup of the tiled passes
const BC: u32 = ${BC}u; // rows of the other side per workgroup-memory tile
const TILE: u32 = ${1 + (MODE == 1) * (BC - 1)}u; // rows of the other side per step of a pass

// One head's row of q, k, v, dout or an accumulator.
alias Head = array<vec4<f32>, HS4>;

// (b, h, t) of a row index (b·heads + h)·T + t over `heads` heads (NH query rows, KV key rows).
fn bht(row: u32, heads: u32) -> vec3<u32> {
    return vec3(row / (p.T * heads), (row / p.T) % heads, row % p.T);
}

// The vec4 index of part (0 q, 1 k, 2 v) of head h (a query head for q, a KV head for k and v)
// at token t of batch row b in qkv.
fn qkv_at(b: u32, t: u32, h: u32, part: u32) -> u32 {
    var start = 0u; // heads before the part
    if part == 1u {
        start = p.NH;
    } else if part == 2u {
        start = p.NH + p.KV;
    }
    return (b * p.T + t) * ((p.NH + 2u * p.KV) * HS4) + (start + h) * HS4;
}

// The vec4 index of query head h at token t of batch row b in out and dout.
fn out_at(b: u32, t: u32, h: u32) -> u32 {
    return (b * p.T + t) * (p.NH * HS4) + h * HS4;
}

// x · y / √hs, summed over the head's vec4s in order.
fn score(x: Head, y: Head) -> f32 {
    var s = 0.0;
//#for i in 0..HS4
    s += dot(x[$i], y[$i]);
//#end
    return s * SCALE;
}

// x · y, summed over the head's vec4s in order.
fn dot_head(x: Head, y: Head) -> f32 {
    var s = 0.0;
//#for i in 0..HS4
    s += dot(x[$i], y[$i]);
//#end
    return s;
}

// acc + w · x.
fn axpy_head(acc: Head, w: f32, x: Head) -> Head {
    var r: Head;
//#for i in 0..HS4
    r[$i] = fma(vec4(w), x[$i], acc[$i]);
//#end
    return r;
}

// The online softmax of one query row: the running max m, the running sum l of exp(s − m) and
// the running Σ exp(s − m)·drop·v.
struct Online {
    m: f32,
    l: f32,
    acc: Head,
}

// Takes key t2 with score s and value v into the row's state (drop: its dropout multiplier).
fn attend(o: Online, s: f32, v: Head, drop: f32) -> Online {
    let m = max(o.m, s);
    let alpha = exp(o.m - m);
    let e = exp(s - m);
    var r: Online;
    r.m = m;
    r.l = fma(o.l, alpha, e);
    var scaled: Head;
//#for i in 0..HS4
    scaled[$i] = o.acc[$i] * alpha;
//#end
    r.acc = axpy_head(scaled, e * drop, v);
    return r;
}

fn online_start() -> Online {
    var o: Online;
    o.m = -3.0e38;
    return o;
}

// The dropout multiplier of probability (row, t2).
fn drop_at(seed: u32, row: u32, t2: u32) -> f32 {
    return drop_factor(seed, p.drop_site, row * p.T + t2, p.drop_p, p.drop_scale);
}

// dS·scale of one (query, key) pair: P (from the score and the query's lse), through dropout
// (dP = drop·(dout·v)) and the softmax (dS = P·(dP − D)).
fn dscore(s: f32, lse_q: f32, dov: f32, drop: f32, d_q: f32) -> f32 {
    let pr = exp(s - lse_q);
    return pr * (dov * drop - d_q) * SCALE;
}

//#entry @load_qkv
fn load(i: u32) -> Head {
    var r: Head;
//#for e in 0..HS4
    r[$e] = qkv[i + ${e}u];
//#end
    return r;
}

//#entry @finish
// out[row] = acc / l and lse[row] = m + log l.
fn finish(o: Online, b: u32, h: u32, t: u32, row: u32) {
    let inv = 1.0 / o.l;
    let at = out_at(b, t, h);
//#for i in 0..HS4
    out[at + ${i}u] = o.acc[$i] * inv;
//#end
    lse[row] = o.m + log(o.l);
}

//#entry @load_dout
fn load_dout(i: u32) -> Head {
    var r: Head;
//#for e in 0..HS4
    r[$e] = dout[i + ${e}u];
//#end
    return r;
}

//#entry @rows
// The rows an invocation's workgroup (tiled) or subgroup (subgroup) owns, or the invocation's own
// row (rows): the first and the last, and whether any exists (past the end, a whole invocation or
// subgroup returns; a tiled workgroup never is past it). The tiled passes compute it from the
// workgroup alone, so that their loops and barriers are in uniform control flow.
struct Block {
    first: u32,
    last: u32,
    live: bool,
}

// The row an invocation owns: its (b, h, t) (h a query head in forward and backward_dq, a KV
// head in backward_dkv), the KV head kh its keys and values come from, t clamped into the
// sequence (tc), the row index of (b, h, 0) and of (b, h, tc), and its lane in the subgroup.
struct Rows {
    b: u32,
    h: u32,
    kh: u32,
    t: u32,
    tc: u32,
    head0: u32,
    row: u32,
    lane: u32,
}

//#if MODE == 2
const PARTS: u32 = ${(HS4 + 7) / 8}u;
alias Part = array<vec4<f32>, PARTS>;

// Lane `lane`'s vec4s l, l + 8, ... of the row starting at vec4 i of qkv (clamped into it).
fn load_part(i: u32, lane: u32) -> Part {
    var r: Part;
//#for j in 0..(HS4 + 7) / 8
    r[$j] = qkv[i + min(${8 * j}u + lane, HS4 - 1u)];
//#end
    return r;
}

// The whole row, every lane's part broadcast to all.
fn share(x: Part) -> Head {
    var r: Head;
//#for e in 0..HS4
    r[$e] = subgroupBroadcast(x[${e / 8}], ${e % 8}u);
//#end
    return r;
}

// Invocation 8·block + lane owns row t = 8·(block % ceil(T/8)) + lane of head block / ceil(T/8).
fn sg_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec2<u32> {
    let blocks = (p.T + 7u) / 8u;
    let block = flat_index(wid, nwg, lid, WG) / 8u;
    return vec2(block / blocks, (block % blocks) * 8u); // (b·heads + h, first row)
}
//#end

// The block of rows of `heads` heads (NH: query rows; KV: key rows).
fn block_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, heads: u32) -> Block {
    var k: Block;
//#if MODE == 0
    let g = flat_index(wid, nwg, lid, WG);
    k.first = g % p.T;
    k.last = k.first;
    k.live = g < p.B * heads * p.T;
//#end
//#if MODE == 1
    k.first = wid.x * WG;
    k.last = min(k.first + WG, p.T) - 1u;
    k.live = true;
//#end
//#if MODE == 2
    let x = sg_index(wid, nwg, lid);
    k.first = x.y;
    k.last = min(x.y + 7u, p.T - 1u);
    k.live = x.x < p.B * heads;
//#end
    return k;
}

// The row an invocation owns among those of `heads` heads (see block_of).
fn rows_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, heads: u32) -> Rows {
    var r: Rows;
//#if MODE == 0
    let x = bht(min(flat_index(wid, nwg, lid, WG), p.B * heads * p.T - 1u), heads);
    r.b = x.x;
    r.h = x.y;
    r.t = x.z;
//#end
//#if MODE == 1
    r.b = wid.y / heads;
    r.h = wid.y % heads;
    r.t = wid.x * WG + lid;
//#end
//#if MODE == 2
    let x = sg_index(wid, nwg, lid);
    let bh = min(x.x, p.B * heads - 1u);
    r.b = bh / heads;
    r.h = bh % heads;
    r.lane = lid % 8u;
    r.t = x.y + r.lane;
//#end
    r.kh = r.h / (heads / p.KV);
    r.tc = min(r.t, p.T - 1u);
    r.head0 = (r.b * heads + r.h) * p.T;
    r.row = r.head0 + r.tc;
    return r;
}

// Head h's `part` (0 q, 1 k, 2 v) at token tr of batch row r.b, as every invocation of a block
// reads it: from storage, or from a lane's share.
fn other_row(r: Rows, tr: u32, h: u32, part: u32) -> Head {
//#if MODE == 2
    return share(load_part(qkv_at(r.b, tr, h, part), r.lane));
//#else
    return load(qkv_at(r.b, tr, h, part));
//#end
}

//#entry @keys
// The keys and values of a block's rows, TILE at a time (forward, backward_dq).
//#if MODE == 1
var<workgroup> k_tile: array<Head, BC>;
var<workgroup> v_tile: array<Head, BC>;
//#end

// Keys j0 .. j0 + TILE − 1 (those up to k.last) made ready for key(): staged in workgroup memory
// by the tiled passes (every invocation calls this; it holds the barriers), nothing elsewhere.
fn stage_keys(r: Rows, k: Block, j0: u32, lid: u32) {
//#if MODE == 1
    workgroupBarrier(); // the last tile is done with
    if lid < BC && j0 + lid <= k.last {
        k_tile[lid] = load(qkv_at(r.b, j0 + lid, r.kh, 1u));
        v_tile[lid] = load(qkv_at(r.b, j0 + lid, r.kh, 2u));
    }
    workgroupBarrier();
//#end
}

// Key j0 + j of the block's KV head, and its value.
fn key(r: Rows, j0: u32, j: u32) -> Head {
//#if MODE == 1
    return k_tile[j];
//#else
    return other_row(r, j0 + j, r.kh, 1u);
//#end
}

fn value(r: Rows, j0: u32, j: u32) -> Head {
//#if MODE == 1
    return v_tile[j];
//#else
    return other_row(r, j0 + j, r.kh, 2u);
//#end
}

//#entry forward
//#use @load_qkv
//#use @finish
//#use @rows
//#use @keys
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> seed: array<u32>;

// Per query row (b, h, t): keys 0..=t of KV head kh in order through the online softmax; out and lse.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, lid, p.NH);
    if !blk.live {
        return; // the whole invocation, subgroup or workgroup
    }
    let r = rows_of(wid, nwg, lid, p.NH);
    let q = load(qkv_at(r.b, r.tc, r.h, 0u));
    let s0 = seed[0];
    var o = online_start();
    for (var j0 = 0u; j0 <= blk.last; j0 += TILE) {
        stage_keys(r, blk, j0, lid);
        for (var j = 0u; j < TILE; j++) {
            let t2 = j0 + j;
            let k = key(r, j0, j);
            let v = value(r, j0, j);
            if t2 <= r.t && r.t < p.T {
                o = attend(o, score(q, k), v, drop_at(s0, r.row, t2));
            }
        }
    }
    if r.t < p.T {
        finish(o, r.b, r.h, r.t, r.row);
    }
}

//#entry backward_dq
//#use @load_qkv
//#use @load_dout
//#use @rows
//#use @keys
@group(0) @binding(1) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> out: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(7) var<storage, read> seed: array<u32>;

// Per query row (b, h, t): D = dout·out (kept in delta for backward_dkv), then dq += Σ_{t2 ≤ t}
// dS·k/√hs over the keys in order.
@compute @workgroup_size(64)
fn backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, lid, p.NH);
    if !blk.live {
        return; // the whole invocation, subgroup or workgroup
    }
    let r = rows_of(wid, nwg, lid, p.NH);
    let qi = qkv_at(r.b, r.tc, r.h, 0u);
    let q = load(qi);
    let oi = out_at(r.b, r.tc, r.h);
    let d_o = load_dout(oi);
    var o: Head;
//#for e in 0..HS4
    o[$e] = out[oi + ${e}u];
//#end
    let d_q = dot_head(d_o, o);
    let l = lse[r.row];
    let s0 = seed[0];
    var dq: Head;
    for (var j0 = 0u; j0 <= blk.last; j0 += TILE) {
        stage_keys(r, blk, j0, lid);
        for (var j = 0u; j < TILE; j++) {
            let t2 = j0 + j;
            let k = key(r, j0, j);
            let v = value(r, j0, j);
            if t2 <= r.t && r.t < p.T {
                let ds = dscore(score(q, k), l, dot_head(d_o, v), drop_at(s0, r.row, t2), d_q);
                dq = axpy_head(dq, ds, k);
            }
        }
    }
    if r.t < p.T {
        delta[r.row] = d_q;
//#for e in 0..HS4
        dqkv[qi + ${e}u] += dq[$e];
//#end
    }
}

//#entry backward_dkv
//#use @load_qkv
//#use @load_dout
//#use @rows
@group(0) @binding(1) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
@group(0) @binding(6) var<storage, read> seed: array<u32>;

// The queries of one query head of a block's group from its first row on, TILE at a time: q,
// dout, lse and D.
//#if MODE == 1
var<workgroup> q_tile: array<Head, BC>;
var<workgroup> do_tile: array<Head, BC>;
var<workgroup> lse_tile: array<f32, BC>;
var<workgroup> delta_tile: array<f32, BC>;
//#end

// The query head of a key row's group that a backward_dkv pass is on: h, and the row index of
// (b, h, 0) in lse and delta.
struct QHead {
    h: u32,
    head0: u32,
}

// Queries j0 .. j0 + TILE − 1 (those before T) of query head qh made ready for query() and the
// others (see stage_keys).
fn stage_queries(r: Rows, qh: QHead, j0: u32, lid: u32) {
//#if MODE == 1
    workgroupBarrier(); // the last tile is done with
    if lid < BC && j0 + lid < p.T {
        q_tile[lid] = load(qkv_at(r.b, j0 + lid, qh.h, 0u));
        do_tile[lid] = load_dout(out_at(r.b, j0 + lid, qh.h));
        lse_tile[lid] = lse[qh.head0 + j0 + lid];
        delta_tile[lid] = delta[qh.head0 + j0 + lid];
    }
    workgroupBarrier();
//#end
}

// Query j0 + j's q row, its dout row, its lse and its D.
fn query(r: Rows, qh: QHead, j0: u32, j: u32) -> Head {
//#if MODE == 1
    return q_tile[j];
//#else
    return other_row(r, j0 + j, qh.h, 0u);
//#end
}

fn query_dout(r: Rows, qh: QHead, j0: u32, j: u32) -> Head {
//#if MODE == 1
    return do_tile[j];
//#end
//#if MODE == 2
    var x: Part;
    let i = out_at(r.b, j0 + j, qh.h);
//#for m in 0..(HS4 + 7) / 8
    x[$m] = dout[i + min(${8 * m}u + r.lane, HS4 - 1u)];
//#end
    return share(x);
//#end
//#if MODE == 0
    return load_dout(out_at(r.b, j0 + j, qh.h));
//#end
}

fn query_lse(qh: QHead, j0: u32, j: u32) -> f32 {
//#if MODE == 1
    return lse_tile[j];
//#else
    return lse[qh.head0 + min(j0 + j, p.T - 1u)];
//#end
}

fn query_delta(qh: QHead, j0: u32, j: u32) -> f32 {
//#if MODE == 1
    return delta_tile[j];
//#else
    return delta[qh.head0 + min(j0 + j, p.T - 1u)];
//#end
}

// Per key row (b, kh, t) of a KV head: over the group's query heads h in order, and for each over
// its queries t1 ≥ t in order, dk += dS·q/√hs and dv += P·drop·dout.
@compute @workgroup_size(64)
fn backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, lid, p.KV);
    if !blk.live {
        return; // the whole invocation, subgroup or workgroup
    }
    let r = rows_of(wid, nwg, lid, p.KV);
    let ki = qkv_at(r.b, r.tc, r.h, 1u);
    let vi = qkv_at(r.b, r.tc, r.h, 2u);
    let k = load(ki);
    let v = load(vi);
    let s0 = seed[0];
    let group = p.NH / p.KV;
    var dk: Head;
    var dv: Head;
    for (var g = 0u; g < group; g++) {
        var qh: QHead;
        qh.h = r.h * group + g;
        qh.head0 = (r.b * p.NH + qh.h) * p.T;
        for (var j0 = blk.first; j0 < p.T; j0 += TILE) {
            stage_queries(r, qh, j0, lid);
            for (var j = 0u; j < TILE; j++) {
                let t1 = j0 + j;
                let q = query(r, qh, j0, j);
                let d_o = query_dout(r, qh, j0, j);
                let lq = query_lse(qh, j0, j);
                let dq = query_delta(qh, j0, j);
                if t1 >= r.t && t1 < p.T && r.t < p.T {
                    let s = score(q, k);
                    let drop = drop_at(s0, qh.head0 + t1, r.t);
                    dk = axpy_head(dk, dscore(s, lq, dot_head(d_o, v), drop, dq), q);
                    dv = axpy_head(dv, exp(s - lq) * drop, d_o);
                }
            }
        }
    }
    if r.t < p.T {
//#for e in 0..HS4
        dqkv[ki + ${e}u] += dk[$e];
        dqkv[vi + ${e}u] += dv[$e];
//#end
    }
}
