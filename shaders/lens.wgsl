// The logit lens' per-position reduction (src/kernels/lens.rs): for each row of logits (rows, V),
// the index of its first maximum and that token's probability under the row's softmax, written
// at out0 + row so that every layer's rows land in one (layers x T) table.

struct Params {
    rows: u32,
    V: u32,
    out0: u32, // where this call's first row goes in top_id and top_p
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

//#entry row_top1
//#use @row_stats
@group(0) @binding(1) var<storage, read_write> top_id: array<u32>;
@group(0) @binding(2) var<storage, read_write> top_p: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;

// One invocation per row, one online pass as the cross-entropy's (softmax_row.wgsl's row_stats;
// V ≤ 65535, the host takes row_top1_wide past it). The top token's probability is
// exp(max − logsumexp) = 1 / Σ exp(x − max).
@compute @workgroup_size(64)
fn row_top1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = flat_index(wid, nwg, lid, 64u);
    if r >= p.rows {
        return;
    }
    let row = row_stats(r * p.V, 0u, 1u);
    top_id[p.out0 + r] = row.best;
    top_p[p.out0 + r] = 1.0 / row.s;
}

//#entry row_top1_wide
//#use @row_stats
//#use @row_stats_wide
@group(0) @binding(1) var<storage, read_write> top_id: array<u32>;
@group(0) @binding(2) var<storage, read_write> top_p: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;

// For V past 65535, as crossentropy.wgsl's forward_wide: one workgroup of 256 per row
// (softmax_row.wgsl's row_stats_wide, whose `best` is the row's first maximum, as row_top1's).
@compute @workgroup_size(256)
fn row_top1_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = wid.y * nwg.x + wid.x;
    if r >= p.rows {
        return; // the whole workgroup leaves together, so the barriers in row_stats_wide stay uniform
    }
    let row = row_stats_wide(r * p.V, lid);
    if lid == 0u {
        top_id[p.out0 + r] = row.best;
        top_p[p.out0 + r] = 1.0 / row.s;
    }
}
