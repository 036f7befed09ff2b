// ReLU² (the modded-nanoGPT speedrun's MLP nonlinearity): out = relu(x)²; backward
// dinp += 2·relu(x)·dout.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Elements are $T (the host picks vec4<f32> where the length is a multiple of 4: a quarter of
// the loads); p.n counts them.

//#entry forward
@group(0) @binding(1) var<storage, read_write> out: array<$T>;
@group(0) @binding(2) var<storage, read> inp: array<$T>;

// One invocation per element; a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    let r = max(inp[i], $T(0.0));
    out[i] = r * r;
}

//#entry backward
@group(0) @binding(1) var<storage, read_write> dinp: array<$T>;
@group(0) @binding(2) var<storage, read> inp: array<$T>;
@group(0) @binding(3) var<storage, read> dout: array<$T>;

// One invocation per element; a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    dinp[i] += 2.0 * max(inp[i], $T(0.0)) * dout[i];
}
