// GELU, tanh approximation (HF's `gelu_new`): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// Backward as llm.c's gelu_backward.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Elements are $T (the host picks vec4<f32> where the length is a multiple of 4: a quarter of
// the loads); p.n counts them.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// tanh clamped to |u| <= 10, where it is ±1 in f32: some tanh implementations overflow to NaN.
fn tanh_safe(u: $T) -> $T {
    return tanh(clamp(u, $T(-10.0), $T(10.0)));
}

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
    let x = inp[i];
    out[i] = 0.5 * x * (1.0 + tanh_safe(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

//#entry backward
// dinp += gelu_new'(x)·dout, with sech² = 1 − tanh² of the same clamped argument.
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
    let x = inp[i];
    let th = tanh_safe(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
    let sech2 = 1.0 - th * th;
    let grad = 0.5 * (1.0 + th) + 0.5 * x * sech2 * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    dinp[i] += grad * dout[i];
}
