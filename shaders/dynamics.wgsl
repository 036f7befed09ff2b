// Training dynamics on the GPU (src/kernels/dynamics.rs). Its modules start with
// shaders/adamw.wgsl's header (Params, Step, WG, CHUNK). `update_stats` is AdamW's update through
// the same adamw_step, that also sums per 65536-element chunk of one tensor the squares of the
// raw gradient, of the updated weights and of the update (new minus old weight); a training step
// runs it in place of the plain update only on the steps whose dynamics are read, so the other
// steps cost nothing extra; `update_stats_sgd` is the same through SGD's sgd_step
// (shaders/optim.wgsl). `stats_finish` then sums each tensor's chunks. Sums run in a fixed
// order (no atomics), so they are deterministic.

var<workgroup> red: array<vec3<f32>, WG>;

// red[0] = the sum of red[0..WG], by a tree over the workgroup.
fn reduce(lid: u32) {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
}

//#entry update_stats
//#use @scaled_grad
//#use @adamw_step
//#use @put_sums
//#use @stats_chunk
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;
@group(0) @binding(5) var<storage, read> step: Step;
@group(0) @binding(6) var<storage, read> grad_norm: array<f32>;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>; // (chunks, 3): Σg², Σw², Σ(Δw)²
@group(0) @binding(8) var<storage, read> scaler: Scaler;

// AdamW's step of element i with gradient g (clipped, unscaled); returns the new weight.
fn step_one(i: u32, g: f32) -> f32 {
    let t = adamw_step(param[i], m[i], v[i], g);
    m[i] = t.m;
    v[i] = t.v;
    return t.w;
}

@compute @workgroup_size(256)
fn update_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    stats_chunk(flat_index(wid, nwg, 0u, 1u), lid);
}

//#entry update_stats_sgd
//#use @scaled_grad
//#use @sgd_step
//#use @put_sums
//#use @stats_chunk
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> buf: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read> step: Step;
@group(0) @binding(5) var<storage, read> grad_norm: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>; // (chunks, 3): Σg², Σw², Σ(Δw)²
@group(0) @binding(7) var<storage, read> scaler: Scaler;

// SGD's step of element i with gradient g (clipped, unscaled); returns the new weight.
fn step_one(i: u32, g: f32) -> f32 {
    let t = sgd_step(param[i], buf[i], g);
    buf[i] = t.buf;
    return t.w;
}

@compute @workgroup_size(256)
fn update_stats_sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    stats_chunk(flat_index(wid, nwg, 0u, 1u), lid);
}

//#entry @stats_chunk
// One workgroup of 256 per 65536-element chunk of one tensor (p.n elements), each invocation a
// strided 256 of them: every element takes the entry's optimizer step (its step_one), and
// partials[p.slot + chunk] gets the chunk's three sums (of the unscaled gradient; a step that
// loss scaling skips leaves the weights, so Δw = 0).
fn stats_chunk(chunk: u32, lid: u32) {
    let start = chunk * CHUNK;
    if start >= p.n {
        return; // whole workgroup
    }
    let end = min(start + CHUNK, p.n);
    let scale = clip_scale();
    let skip = skip_step();
    var s = vec3<f32>(0.0);
    for (var i = start + lid; i < end; i += WG) {
        let raw = unscale(grad[i]);
        let old = param[i];
        var w = old;
        if !skip {
            w = step_one(i, raw * scale);
            param[i] = w;
        }
        let d = w - old;
        s += vec3<f32>(raw * raw, w * w, d * d);
    }
    put_sums(lid, chunk, s);
}

//#entry @put_sums
// partials[p.slot + chunk] = the workgroup's sums s, reduced over its invocations.
fn put_sums(lid: u32, chunk: u32, s: vec3<f32>) {
    red[lid] = s;
    reduce(lid);
    if lid == 0u {
        let at = 3u * (p.slot + chunk);
        partials[at] = red[0].x;
        partials[at + 1u] = red[0].y;
        partials[at + 2u] = red[0].z;
    }
}

//#entry stats_finish
@group(0) @binding(1) var<storage, read_write> sums: array<f32>;  // (tensors, 3)
@group(0) @binding(2) var<storage, read> partials: array<f32>;    // (chunks, 3)
@group(0) @binding(3) var<storage, read> ranges: array<u32>;      // (tensors, 2): first, end chunk

// One workgroup of 256 per tensor (p.n tensors): sums[tensor] = the sums over its chunks.
@compute @workgroup_size(256)
fn stats_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, 0u, 1u);
    if t >= p.n {
        return; // whole workgroup
    }
    var s = vec3<f32>(0.0);
    for (var c = ranges[2u * t] + lid; c < ranges[2u * t + 1u]; c += WG) {
        s += vec3<f32>(partials[3u * c], partials[3u * c + 1u], partials[3u * c + 2u]);
    }
    red[lid] = s;
    reduce(lid);
    if lid == 0u {
        sums[3u * t] = red[0].x;
        sums[3u * t + 1u] = red[0].y;
        sums[3u * t + 2u] = red[0].z;
    }
}
