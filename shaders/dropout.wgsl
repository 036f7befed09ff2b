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
//#use @dropped
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
    y[$j] = dropped(y[$j], s0, 4u * i + ${j}u);
//#end
    x[i] = y;
//#else
    x[i] = dropped(x[i], seed[0], i);
//#end
}

//#entry masked
//#use @dropped
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> seed: array<u32>; // [1], set per micro-batch

// One invocation per element, x masked and scaled as `apply` would into another tensor: y = that
// (ADD = 0: LoRA's dropout on its adapters' input, which the base product reads unmasked) or
// y += that (ADD = 1: the gradient of a masked copy onto its source's).
@compute @workgroup_size(64)
fn masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
//#if ADD
    y[i] += dropped(x[i], seed[0], i);
//#else
    y[i] = dropped(x[i], seed[0], i);
//#end
}

//#entry @dropped
// Element i's value v after dropout under the seed word s0: 0 where it is dropped, else
// v / (1 − p) (p.scale).
fn dropped(v: f32, s0: u32, i: u32) -> f32 {
    return select(0.0, v * p.scale, drop_keep(s0, p.site, i, p.p));
}
