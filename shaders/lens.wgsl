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
@group(0) @binding(1) var<storage, read_write> top_id: array<u32>;
@group(0) @binding(2) var<storage, read_write> top_p: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;

// One invocation per row, one pass with an online max and sum as the cross-entropy's (V ≤ 65535
// steps, lavapipe's cap on loop iterations; the host checks V). The top token's probability is
// exp(max − logsumexp) = 1 / Σ exp(x − max).
@compute @workgroup_size(64)
fn row_top1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = flat_index(wid, nwg, lid, 64u);
    if r >= p.rows {
        return;
    }
    let base = r * p.V;
    var m = logits[base];
    var best = 0u;
    var s = 1.0;
    for (var v = 1u; v < p.V; v++) {
        let x = logits[base + v];
        if x > m {
            s = s * exp(m - x) + 1.0;
            m = x;
            best = v;
        } else {
            s += exp(x - m);
        }
    }
    top_id[p.out0 + r] = best;
    top_p[p.out0 + r] = 1.0 / s;
}
