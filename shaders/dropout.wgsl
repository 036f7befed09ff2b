// Inverted dropout with a counter-based RNG: element i of site `site` is kept when
// hash(seed, site, i) ≥ p, and kept elements are scaled by 1/(1−p). The mask is a pure function
// of (seed, site, i), so the backward applies the same op to the gradient and nothing is stored.
// The host skips every dropout dispatch when p = 0, so that is bit-identical to no dropout.

struct Params {
    n: u32,
    site: u32, // which dropout in the model (embedding, each layer's two residual branches)
    p: f32,
    scale: f32, // 1 / (1 − p)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> seed: array<u32>; // [1], set per micro-batch

// PCG-style integer hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020).
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// One invocation per element, in place (forward on activations, backward on their gradients).
@compute @workgroup_size(64)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if i >= p.n {
        return;
    }
    let u = f32(pcg(pcg(seed[0] ^ pcg(p.site)) ^ i) >> 8u) * (1.0 / 16777216.0);
    x[i] = select(0.0, x[i] * p.scale, u >= p.p);
}
