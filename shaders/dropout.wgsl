// Inverted dropout with a counter-based RNG (the prelude's drop_keep): element i of site `site`
// is kept when hash(seed, site, i) ≥ p, and kept elements are scaled by 1/(1−p). The same call
// masks an activation in the forward and its gradient in the backward. The host skips every
// dropout dispatch when p = 0, so that is bit-identical to no dropout.

struct Params {
    n: u32,
    site: u32, // which dropout in the model (kernels::dropout::Site)
    p: f32,
    scale: f32, // 1 / (1 − p)
}

@group(0) @binding(0) var<uniform> p: Params;

//#entry apply
@group(0) @binding(1) var<storage, read_write> x: array<$T>;
@group(0) @binding(2) var<storage, read> seed: array<u32>; // [1], set per micro-batch

// One invocation per element, in place (forward on activations, backward on their gradients);
// with $T = vec4<f32> (lengths that are multiples of 4) per four elements, p.n counting vec4s,
// each component masked as element 4i + j.
@compute @workgroup_size(64)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
//#if V4
    let s0 = seed[0];
    var y = x[i];
//#for j in 0..4
    y[$j] = select(0.0, y[$j] * p.scale, drop_keep(s0, p.site, 4u * i + ${j}u, p.p));
//#end
    x[i] = y;
//#else
    x[i] = select(0.0, x[i] * p.scale, drop_keep(seed[0], p.site, i, p.p));
//#end
}

//#entry masked_copy
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> seed: array<u32>; // [1], set per micro-batch

// One invocation per element: y = x masked and scaled as `apply` would, into another tensor
// (LoRA's dropout on its adapters' input, which the base product reads unmasked).
@compute @workgroup_size(64)
fn masked_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    y[i] = select(0.0, x[i] * p.scale, drop_keep(seed[0], p.site, i, p.p));
}

//#entry masked_add
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> seed: array<u32>; // [1], set per micro-batch

// One invocation per element: y += x masked and scaled as `apply` would (the gradient of a masked
// copy onto its source's).
@compute @workgroup_size(64)
fn masked_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    y[i] += select(0.0, x[i] * p.scale, drop_keep(seed[0], p.site, i, p.p));
}
