// Token + position embedding: out[b, t, :] = wte[ids[b, t], :] + wpe[t, :].

struct Params {
    BT: u32,
    T: u32,
    C: u32,
    V: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;

// One invocation per output element (b, t, c); a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if i >= p.BT * p.C {
        return;
    }
    let bt = i / p.C;
    let c = i % p.C;
    let t = bt % p.T;
    let id = min(ids[bt], p.V - 1u); // ids are checked on the CPU; the clamp only keeps reads in bounds
    out[i] = wte[id * p.C + c] + wpe[t * p.C + c];
}
