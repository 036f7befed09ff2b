// Token + position embedding: out[b, t, :] = wte[ids[b, t], :] + wpe[t, :] (without learned
// positions, has_wpe = 0: wte alone).

struct Params {
    BT: u32,
    T: u32,
    C: u32,
    V: u32,
    v0: u32,   // the bound wte (forward) or dwte (backward_wte) holds rows v0 .. v0 + rows of
    rows: u32, // the full (V, C) table (one bigger than a storage binding is bound in row chunks)
    has_wpe: u32, // 0: no wpe (bound to wte, never read)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

//#entry forward
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;

// One invocation per output element (b, t, c); a 2D grid of 64-wide workgroups. With wte in
// chunks, one dispatch per chunk, each writing the positions whose token it holds.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.BT * p.C {
        return;
    }
    let bt = i / p.C;
    let c = i % p.C;
    let t = bt % p.T;
    let id = min(ids[bt], p.V - 1u); // ids are checked on the CPU; the clamp only keeps reads in bounds
    if id < p.v0 || id >= p.v0 + p.rows {
        return; // another chunk's token
    }
    if p.has_wpe != 0u {
        out[i] = wte[(id - p.v0) * p.C + c] + wpe[t * p.C + c];
    } else {
        out[i] = wte[(id - p.v0) * p.C + c];
    }
}

//#entry backward_wte
// dwte is deterministic without atomics: the host groups the batch's positions by token
// (EncoderBuckets: distinct tokens ascending, CSR starts, positions ascending within each), so
// each dwte element has exactly one writer that sums its contributors in a fixed order.
@group(0) @binding(1) var<storage, read_write> dwte: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read> starts: array<u32>;
@group(0) @binding(5) var<storage, read> positions: array<u32>;
@group(0) @binding(6) var<storage, read> count: array<u32>;

// One invocation per (bucket, c), bucket = one distinct token of the batch; invocations past
// count[0] exit. Four positions per iteration (added in order), so that even a bucket holding all
// 65536 positions loops ≤ 16384 times (lavapipe caps an invocation at 65535 loop iterations).
// With dwte in chunks, one dispatch per chunk, each summing the buckets whose token it holds.
@compute @workgroup_size(64)
fn backward_wte(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    let bucket = i / p.C;
    if bucket >= count[0] {
        return;
    }
    let id = min(tokens[bucket], p.V - 1u); // ids are checked on the CPU; the clamp only keeps writes in bounds
    if id < p.v0 || id >= p.v0 + p.rows {
        return; // another chunk's token
    }
    let c = i % p.C;
    let end = starts[bucket + 1u];
    var j = starts[bucket];
    var acc = 0.0;
    while j + 4u <= end {
        acc += dout[positions[j] * p.C + c];
        acc += dout[positions[j + 1u] * p.C + c];
        acc += dout[positions[j + 2u] * p.C + c];
        acc += dout[positions[j + 3u] * p.C + c];
        j += 4u;
    }
    while j < end {
        acc += dout[positions[j] * p.C + c];
        j += 1u;
    }
    dwte[(id - p.v0) * p.C + c] += acc;
}

//#entry backward_wpe
@group(0) @binding(1) var<storage, read_write> dwpe: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;

// One invocation per (t, c) with t < T, summing dout[b, t, c] over b in order, four per
// iteration (B can be 65536 when T = 1).
@compute @workgroup_size(64)
fn backward_wpe(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.T * p.C {
        return;
    }
    let stride = p.T * p.C; // one sequence of dout
    let end = p.BT * p.C;
    var j = i;
    var acc = 0.0;
    while j + 3u * stride < end {
        acc += dout[j];
        acc += dout[j + stride];
        acc += dout[j + 2u * stride];
        acc += dout[j + 3u * stride];
        j += 4u * stride;
    }
    while j < end {
        acc += dout[j];
        j += stride;
    }
    dwpe[i] += acc;
}
