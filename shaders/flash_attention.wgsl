// Flash attention (FlashAttention-2's algorithm with a per-key online softmax): causal
// self-attention over qkv [B, T, 3C] into out [B, T, C] that never stores the T x T matrix. The
// forward keeps each query row's logsumexp lse [B, NH, T]; the backward recomputes the
// probabilities from it, P = exp(q·k/√hs − lse), takes D = dout·out per query row (Σ P·dP, as
// FlashAttention-2) and accumulates dq per query row and dk, dv per key row, each by the one
// invocation that owns the row (no atomics, deterministic). Dropout on the probabilities uses
// the same (seed, site, (b·NH + h)·T·T + t·T + t2) mask as attention.wgsl.
//
// A template over the head size (HS4 = hs / 4 vec4s; q, k, v rows and accumulators are arrays
// indexed only by unrolled constants, so they live in registers). Two instances of each pass:
// `rows` has one invocation per row and reads K and V (or Q and dout) from storage, no workgroup
// memory and no barriers (lavapipe); `tiled` has a workgroup of 64 rows load tiles of BC rows of
// the other side into workgroup memory (GPUs). Both visit the keys of a row in the same order
// through the same functions, so their results are bit-identical.

struct Params {
    B: u32,
    T: u32,
    C: u32,
    NH: u32,
    drop_p: f32,     // dropout on the attention probabilities; 0 = off
    drop_scale: f32, // 1 / (1 − drop_p)
    drop_site: u32,  // dropout site of this layer (kernels::dropout::Site)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const HS4: u32 = ${HS4}u;
const SCALE: f32 = $SCALE; // 1/√hs, written by the host
const WG: u32 = 64u; // rows per workgroup of the tiled passes
const BC: u32 = ${BC}u; // rows of the other side per tile

// One head's row of q, k, v, dout or an accumulator.
alias Head = array<vec4<f32>, HS4>;

// (b, h, t) of a row index (b·NH + h)·T + t of the [B, NH, T] arrays.
fn bht(row: u32) -> vec3<u32> {
    return vec3(row / (p.T * p.NH), (row / p.T) % p.NH, row % p.T);
}

// The vec4 index of part (0 q, 1 k, 2 v) of head h at token t of batch row b in qkv.
fn qkv_at(b: u32, t: u32, h: u32, part: u32) -> u32 {
    return (b * p.T + t) * (3u * p.C / 4u) + part * (p.C / 4u) + h * HS4;
}

// The vec4 index of head h at token t of batch row b in out and dout.
fn out_at(b: u32, t: u32, h: u32) -> u32 {
    return (b * p.T + t) * (p.C / 4u) + h * HS4;
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

//#entry forward_rows
//#use @load_qkv
//#use @finish
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> seed: array<u32>;

// One invocation per query row (b, h, t): keys 0..=t in order.
@compute @workgroup_size(64)
fn forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, lid, 64u);
    if row >= p.B * p.NH * p.T {
        return;
    }
    let x = bht(row);
    let b = x.x;
    let h = x.y;
    let t = x.z;
    let q = load(qkv_at(b, t, h, 0u));
    let s0 = seed[0];
    var o = online_start();
    for (var t2 = 0u; t2 <= t; t2++) {
        let s = score(q, load(qkv_at(b, t2, h, 1u)));
        o = attend(o, s, load(qkv_at(b, t2, h, 2u)), drop_at(s0, row, t2));
    }
    finish(o, b, h, t, row);
}

//#entry forward_tiled
//#use @load_qkv
//#use @finish
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> seed: array<u32>;

var<workgroup> k_tile: array<Head, BC>;
var<workgroup> v_tile: array<Head, BC>;

// A workgroup per 64 query rows of one (b, h) (x: the row block, y: b·NH + h); K and V come in
// tiles of BC keys, loaded by the first BC invocations; each invocation takes the tile's keys
// up to its own row.
@compute @workgroup_size(64)
fn forward_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.y / p.NH;
    let h = wid.y % p.NH;
    let t0 = wid.x * WG;
    let t = t0 + lid;
    let last = min(t0 + WG, p.T) - 1u; // the block's last row: uniform
    let row = wid.y * p.T + t;
    let q = load(qkv_at(b, min(t, p.T - 1u), h, 0u));
    let s0 = seed[0];
    var o = online_start();
    for (var j0 = 0u; j0 <= last; j0 += BC) {
        if lid < BC && j0 + lid <= last {
            k_tile[lid] = load(qkv_at(b, j0 + lid, h, 1u));
            v_tile[lid] = load(qkv_at(b, j0 + lid, h, 2u));
        }
        workgroupBarrier();
        for (var j = 0u; j < BC; j++) {
            let t2 = j0 + j;
            if t2 <= t && t < p.T {
                o = attend(o, score(q, k_tile[j]), v_tile[j], drop_at(s0, row, t2));
            }
        }
        workgroupBarrier();
    }
    if t < p.T {
        finish(o, b, h, t, row);
    }
}

//#entry backward_dq_rows
//#use @load_qkv
//#use @load_dout
@group(0) @binding(1) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> out: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(7) var<storage, read> seed: array<u32>;

// One invocation per query row (b, h, t): D = dout·out (kept in delta for the dk/dv pass), then
// dq += Σ_{t2 ≤ t} dS·k/√hs over the keys in order.
@compute @workgroup_size(64)
fn backward_dq_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, lid, 64u);
    if row >= p.B * p.NH * p.T {
        return;
    }
    let x = bht(row);
    let b = x.x;
    let h = x.y;
    let t = x.z;
    let qi = qkv_at(b, t, h, 0u);
    let q = load(qi);
    let d_o = load_dout(out_at(b, t, h));
    var o: Head;
//#for e in 0..HS4
    o[$e] = out[out_at(b, t, h) + ${e}u];
//#end
    let d_q = dot_head(d_o, o);
    delta[row] = d_q;
    let l = lse[row];
    let s0 = seed[0];
    var dq: Head;
    for (var t2 = 0u; t2 <= t; t2++) {
        let k = load(qkv_at(b, t2, h, 1u));
        let ds = dscore(score(q, k), l, dot_head(d_o, load(qkv_at(b, t2, h, 2u))), drop_at(s0, row, t2), d_q);
        dq = axpy_head(dq, ds, k);
    }
//#for e in 0..HS4
    dqkv[qi + ${e}u] += dq[$e];
//#end
}

//#entry backward_dq_tiled
//#use @load_qkv
//#use @load_dout
@group(0) @binding(1) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> out: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(7) var<storage, read> seed: array<u32>;

var<workgroup> k_tile: array<Head, BC>;
var<workgroup> v_tile: array<Head, BC>;

// backward_dq_rows with a workgroup per 64 query rows of one (b, h), K and V in tiles.
@compute @workgroup_size(64)
fn backward_dq_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.y / p.NH;
    let h = wid.y % p.NH;
    let t0 = wid.x * WG;
    let t = t0 + lid;
    let tc = min(t, p.T - 1u);
    let last = min(t0 + WG, p.T) - 1u;
    let row = wid.y * p.T + tc;
    let qi = qkv_at(b, tc, h, 0u);
    let q = load(qi);
    let d_o = load_dout(out_at(b, tc, h));
    var o: Head;
//#for e in 0..HS4
    o[$e] = out[out_at(b, tc, h) + ${e}u];
//#end
    let d_q = dot_head(d_o, o);
    let l = lse[row];
    let s0 = seed[0];
    var dq: Head;
    for (var j0 = 0u; j0 <= last; j0 += BC) {
        if lid < BC && j0 + lid <= last {
            k_tile[lid] = load(qkv_at(b, j0 + lid, h, 1u));
            v_tile[lid] = load(qkv_at(b, j0 + lid, h, 2u));
        }
        workgroupBarrier();
        for (var j = 0u; j < BC; j++) {
            let t2 = j0 + j;
            if t2 <= t && t < p.T {
                let ds = dscore(score(q, k_tile[j]), l, dot_head(d_o, v_tile[j]), drop_at(s0, row, t2), d_q);
                dq = axpy_head(dq, ds, k_tile[j]);
            }
        }
        workgroupBarrier();
    }
    if t < p.T {
        delta[row] = d_q;
//#for e in 0..HS4
        dqkv[qi + ${e}u] += dq[$e];
//#end
    }
}

//#entry backward_dkv_rows
//#use @load_qkv
//#use @load_dout
@group(0) @binding(1) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
@group(0) @binding(6) var<storage, read> seed: array<u32>;

// One invocation per key row (b, h, t): over the queries t1 ≥ t in order, dk += dS·q/√hs and
// dv += P·drop·dout.
@compute @workgroup_size(64)
fn backward_dkv_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, lid, 64u);
    if row >= p.B * p.NH * p.T {
        return;
    }
    let x = bht(row);
    let b = x.x;
    let h = x.y;
    let t = x.z;
    let ki = qkv_at(b, t, h, 1u);
    let vi = qkv_at(b, t, h, 2u);
    let k = load(ki);
    let v = load(vi);
    let head0 = row - t; // row (b, h, 0)
    let s0 = seed[0];
    var dk: Head;
    var dv: Head;
    for (var t1 = t; t1 < p.T; t1++) {
        let q = load(qkv_at(b, t1, h, 0u));
        let d_o = load_dout(out_at(b, t1, h));
        let s = score(q, k);
        let drop = drop_at(s0, head0 + t1, t);
        let qrow = head0 + t1;
        dk = axpy_head(dk, dscore(s, lse[qrow], dot_head(d_o, v), drop, delta[qrow]), q);
        dv = axpy_head(dv, exp(s - lse[qrow]) * drop, d_o);
    }
//#for e in 0..HS4
    dqkv[ki + ${e}u] += dk[$e];
    dqkv[vi + ${e}u] += dv[$e];
//#end
}

//#entry backward_dkv_tiled
//#use @load_qkv
//#use @load_dout
@group(0) @binding(1) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
@group(0) @binding(6) var<storage, read> seed: array<u32>;

var<workgroup> q_tile: array<Head, BC>;
var<workgroup> do_tile: array<Head, BC>;
var<workgroup> lse_tile: array<f32, BC>;
var<workgroup> delta_tile: array<f32, BC>;

// backward_dkv_rows with a workgroup per 64 key rows of one (b, h), Q, dout, lse and D of the
// queries from the block's first row on in tiles.
@compute @workgroup_size(64)
fn backward_dkv_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.y / p.NH;
    let h = wid.y % p.NH;
    let t0 = wid.x * WG;
    let t = t0 + lid;
    let tc = min(t, p.T - 1u);
    let head0 = wid.y * p.T;
    let ki = qkv_at(b, tc, h, 1u);
    let vi = qkv_at(b, tc, h, 2u);
    let k = load(ki);
    let v = load(vi);
    let s0 = seed[0];
    var dk: Head;
    var dv: Head;
    for (var j0 = t0; j0 < p.T; j0 += BC) {
        if lid < BC && j0 + lid < p.T {
            q_tile[lid] = load(qkv_at(b, j0 + lid, h, 0u));
            do_tile[lid] = load_dout(out_at(b, j0 + lid, h));
            lse_tile[lid] = lse[head0 + j0 + lid];
            delta_tile[lid] = delta[head0 + j0 + lid];
        }
        workgroupBarrier();
        for (var j = 0u; j < BC; j++) {
            let t1 = j0 + j;
            if t1 >= t && t1 < p.T && t < p.T {
                let s = score(q_tile[j], k);
                let drop = drop_at(s0, head0 + t1, t);
                dk = axpy_head(dk, dscore(s, lse_tile[j], dot_head(do_tile[j], v), drop, delta_tile[j]), q_tile[j]);
                dv = axpy_head(dv, exp(s - lse_tile[j]) * drop, do_tile[j]);
            }
        }
        workgroupBarrier();
    }
    if t < p.T {
//#for e in 0..HS4
        dqkv[ki + ${e}u] += dk[$e];
        dqkv[vi + ${e}u] += dv[$e];
//#end
    }
}

//#entry @share
// The subgroup passes (adapters with subgroups of exactly 8, natively: lavapipe): the 8 lanes of
// a subgroup own 8 consecutive rows of one (b, h) (invocation 8·block + lane, block = (b·NH + h)·
// ceil(T/8) + t / 8), and the other side's rows, which all 8 need, are loaded once: lane l loads
// vec4s l, l + 8, ... of a row and subgroupBroadcast hands every lane the rest (on lavapipe a
// storage load is a loop over the 8 lanes, a broadcast one shuffle). Same keys in the same order
// through the same functions as `rows`: bit-identical to it.
const PARTS: u32 = ${(HS4 + 7) / 8}u;
alias Part = array<vec4<f32>, PARTS>;

// Lane `lane`'s vec4s of the row starting at vec4 i of `qkv` (clamped into the row).
fn load_part(i: u32, lane: u32) -> Part {
    var r: Part;
//#for j in 0..(HS4 + 7) / 8
    r[$j] = qkv[i + min(${8 * j}u + lane, HS4 - 1u)];
//#end
    return r;
}

// The whole row from the lanes' parts.
fn share(x: Part) -> Head {
    var r: Head;
//#for e in 0..HS4
    r[$e] = subgroupBroadcast(x[${e / 8}], ${e % 8}u);
//#end
    return r;
}

// The first row of a subgroup's block and its (b, h): x = b, y = h, z = t0; w = 0 when the block
// is past the end.
fn sg_block(g: u32) -> vec4<u32> {
    let nblk = (p.T + 7u) / 8u;
    let blk = g / 8u;
    let bh = blk / nblk;
    return vec4(bh / p.NH, bh % p.NH, (blk % nblk) * 8u, u32(blk < p.B * p.NH * nblk));
}

//#entry forward_sg
//#use @load_qkv
//#use @finish
//#use @share
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> seed: array<u32>;

// forward_rows with a subgroup per 8 query rows sharing the keys' loads.
@compute @workgroup_size(64)
fn forward_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let blk = sg_block(flat_index(wid, nwg, lid, 64u));
    if blk.w == 0u {
        return; // the whole subgroup
    }
    let lane = lid % 8u;
    let b = blk.x;
    let h = blk.y;
    let t = blk.z + lane;
    let tc = min(t, p.T - 1u);
    let last = min(blk.z + 7u, p.T - 1u);
    let row = (b * p.NH + h) * p.T + tc;
    let q = load(qkv_at(b, tc, h, 0u));
    let s0 = seed[0];
    var o = online_start();
    for (var t2 = 0u; t2 <= last; t2++) {
        let k = share(load_part(qkv_at(b, t2, h, 1u), lane));
        let v = share(load_part(qkv_at(b, t2, h, 2u), lane));
        if t2 <= t {
            o = attend(o, score(q, k), v, drop_at(s0, row, t2));
        }
    }
    if t < p.T {
        finish(o, b, h, t, row);
    }
}

//#entry backward_dq_sg
//#use @load_qkv
//#use @load_dout
//#use @share
@group(0) @binding(1) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> out: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(7) var<storage, read> seed: array<u32>;

// backward_dq_rows with a subgroup per 8 query rows sharing the keys' loads.
@compute @workgroup_size(64)
fn backward_dq_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let blk = sg_block(flat_index(wid, nwg, lid, 64u));
    if blk.w == 0u {
        return; // the whole subgroup
    }
    let lane = lid % 8u;
    let b = blk.x;
    let h = blk.y;
    let t = blk.z + lane;
    let tc = min(t, p.T - 1u);
    let last = min(blk.z + 7u, p.T - 1u);
    let row = (b * p.NH + h) * p.T + tc;
    let qi = qkv_at(b, tc, h, 0u);
    let q = load(qi);
    let d_o = load_dout(out_at(b, tc, h));
    var o: Head;
//#for e in 0..HS4
    o[$e] = out[out_at(b, tc, h) + ${e}u];
//#end
    let d_q = dot_head(d_o, o);
    let l = lse[row];
    let s0 = seed[0];
    var dq: Head;
    for (var t2 = 0u; t2 <= last; t2++) {
        let k = share(load_part(qkv_at(b, t2, h, 1u), lane));
        let v = share(load_part(qkv_at(b, t2, h, 2u), lane));
        if t2 <= t {
            let ds = dscore(score(q, k), l, dot_head(d_o, v), drop_at(s0, row, t2), d_q);
            dq = axpy_head(dq, ds, k);
        }
    }
    if t < p.T {
        delta[row] = d_q;
//#for e in 0..HS4
        dqkv[qi + ${e}u] += dq[$e];
//#end
    }
}

//#entry backward_dkv_sg
//#use @load_qkv
//#use @load_dout
//#use @share
@group(0) @binding(1) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
@group(0) @binding(6) var<storage, read> seed: array<u32>;

// Lane `lane`'s vec4s of dout's row starting at vec4 i.
fn load_dout_part(i: u32, lane: u32) -> Part {
    var r: Part;
//#for j in 0..(HS4 + 7) / 8
    r[$j] = dout[i + min(${8 * j}u + lane, HS4 - 1u)];
//#end
    return r;
}

// backward_dkv_rows with a subgroup per 8 key rows sharing the queries' loads.
@compute @workgroup_size(64)
fn backward_dkv_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let blk = sg_block(flat_index(wid, nwg, lid, 64u));
    if blk.w == 0u {
        return; // the whole subgroup
    }
    let lane = lid % 8u;
    let b = blk.x;
    let h = blk.y;
    let t = blk.z + lane;
    let tc = min(t, p.T - 1u);
    let head0 = (b * p.NH + h) * p.T;
    let ki = qkv_at(b, tc, h, 1u);
    let vi = qkv_at(b, tc, h, 2u);
    let k = load(ki);
    let v = load(vi);
    let s0 = seed[0];
    var dk: Head;
    var dv: Head;
    for (var t1 = blk.z; t1 < p.T; t1++) {
        let q = share(load_part(qkv_at(b, t1, h, 0u), lane));
        let d_o = share(load_dout_part(out_at(b, t1, h), lane));
        let qrow = head0 + t1;
        let lq = lse[qrow];
        let dq = delta[qrow];
        if t1 >= t {
            let s = score(q, k);
            let drop = drop_at(s0, qrow, t);
            dk = axpy_head(dk, dscore(s, lq, dot_head(d_o, v), drop, dq), q);
            dv = axpy_head(dv, exp(s - lq) * drop, d_o);
        }
    }
    if t < p.T {
//#for e in 0..HS4
        dqkv[ki + ${e}u] += dk[$e];
        dqkv[vi + ${e}u] += dv[$e];
//#end
    }
}
