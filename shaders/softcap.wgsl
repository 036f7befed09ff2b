// Logit softcap (Gemma-2, the modded-nanoGPT speedruns), in place: x = cap·tanh(x / cap). Its
// backward is fused into crossentropy.wgsl's (the factor 1 − (x/cap)² of the capped logits).

struct Params {
    n: u32,
    cap: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

//#entry forward
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

// One invocation per element; a 2D grid of 64-wide workgroups. tanh's argument is clamped to
// |u| <= 10, where it is ±1 in f32 (some tanh implementations overflow to NaN).
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    x[i] = p.cap * tanh(clamp(x[i] / p.cap, -10.0, 10.0));
}
