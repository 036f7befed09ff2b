// Muon (torch.optim.Muon): momentum in torch's lerp form, Newton-Schulz orthogonalisation of the
// update (src/kernels/muon.rs records it from these entries and the matrix products), then the
// update applied with decoupled weight decay. momentum and apply start with adamw.wgsl's header
// (Step, Scaler: clipping, loss scaling, skipped steps); normalize, axpby and copy stand alone;
// stats also starts with dynamics.wgsl's header (its workgroup reduction).

// Params of normalize, axpby and copy.
struct NsParams {
    n: u32,     // elements ($T's) of x
    parts: u32, // normalize: partial sums of squares of x (adamw.wgsl's sumsq)
    alpha: f32, // axpby: x = alpha·x + beta·y; normalize: eps
    beta: f32,
}

// One Muon matrix's scalars of this step, as torch computes them in f64 and rounds once:
// keep = 1 − lr·weight_decay and adj = lr·√max(1, rows/cols) ("original" adjust_lr).
struct MuonMatrix {
    keep: f32,
    adj: f32,
}

// Written by the host every step (src/kernels/muon.rs MuonStep): the momentum, 1 − momentum
// (rounded from f64, as torch's scalar is), whether Nesterov is on, and each matrix's scalars.
struct MuonStep {
    momentum: f32,
    one_minus: f32,
    nesterov: u32,
    _pad: u32,
    m: array<MuonMatrix>,
}

// torch.lerp(start, end, w) as aten's vectorised kernel computes it: start + w·(end − start) for
// |w| < 0.5, else end + (w − 1)·(end − start), each one fma.
fn lerp_torch(start: $T, end: $T, w: f32) -> $T {
    if abs(w) < 0.5 {
        return fma($T(w), end - start, start);
    }
    return fma($T(w - 1.0), end - start, end);
}

//#entry momentum
//#use @scaled_grad
@group(0) @binding(1) var<storage, read_write> buf: array<$T>;
@group(0) @binding(2) var<storage, read_write> x: array<$T>;
@group(0) @binding(3) var<storage, read> grad: array<$T>;
@group(0) @binding(4) var<storage, read> step: Step;
@group(0) @binding(5) var<storage, read> grad_norm: array<f32>;
@group(0) @binding(6) var<storage, read> scaler: Scaler;
@group(0) @binding(7) var<storage, read> muon: MuonStep;

// One invocation per element ($T) of a matrix (p.n of them): buf.lerp_(g, 1 − μ), then X gets
// g.lerp(buf, μ) (Nesterov) or buf, for g the gradient unscaled and clipped.
@compute @workgroup_size(64)
fn momentum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n || skip_step() {
        return;
    }
    let g = unscale(grad[i]) * clip_scale();
    let b = lerp_torch(buf[i], g, muon.one_minus);
    buf[i] = b;
    if muon.nesterov != 0u {
        x[i] = lerp_torch(g, b, muon.momentum);
    } else {
        x[i] = b;
    }
}

//#entry normalize
@group(0) @binding(0) var<uniform> p: NsParams;
@group(0) @binding(1) var<storage, read_write> x: array<$T>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;

// One invocation per element ($T) of X: X / max(‖X‖_F, eps), torch's `X / X.norm().clamp(min=eps)`;
// every invocation sums the few partial sums in the same order.
@compute @workgroup_size(64)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < p.parts; j++) {
        s += partials[j];
    }
    x[i] = x[i] / max(sqrt(s), p.alpha);
}

//#entry axpby
@group(0) @binding(0) var<uniform> p: NsParams;
@group(0) @binding(1) var<storage, read_write> x: array<$T>;
@group(0) @binding(2) var<storage, read> y: array<$T>;

// One invocation per element ($T): x = alpha·x + beta·y in place (Newton-Schulz's
// B = b·A + c·A·A and X = a·X + B·X).
@compute @workgroup_size(64)
fn axpby(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    x[i] = p.alpha * x[i] + p.beta * y[i];
}

//#entry apply
@group(0) @binding(1) var<storage, read_write> param: array<$T>;
@group(0) @binding(2) var<storage, read> o: array<$T>;
@group(0) @binding(3) var<storage, read> grad_norm: array<f32>;
@group(0) @binding(4) var<storage, read> scaler: Scaler;
@group(0) @binding(5) var<storage, read> muon: MuonStep;

// One invocation per element ($T) of matrix p.slot: w = w·keep − adj·O (torch's param.mul_ then
// param.add_(O, alpha=−adj)). A skipped step (adamw.wgsl's skip_step: loss scaling on and the
// gradients overflowed) leaves the weights as they are.
@compute @workgroup_size(64)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n || (scaler.enabled != 0u && !finite(grad_norm[0])) {
        return;
    }
    let m = muon.m[p.slot];
    param[i] = fma(o[i], $T(-m.adj), param[i] * m.keep);
}

//#entry copy
@group(0) @binding(0) var<uniform> p: NsParams;
@group(0) @binding(1) var<storage, read_write> x: array<$T>;
@group(0) @binding(2) var<storage, read> y: array<$T>;

// One invocation per element ($T): x = y (the weights before a step whose dynamics are read).
@compute @workgroup_size(64)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    x[i] = y[i];
}

//#entry stats
//#use @put_sums
@group(0) @binding(1) var<storage, read> param: array<f32>;
@group(0) @binding(2) var<storage, read> old: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>; // (chunks, 3): Σg², Σw², Σ(Δw)²
@group(0) @binding(5) var<storage, read> scaler: Scaler;

// After a Muon step, dynamics.wgsl's update_stats sums: one workgroup of 256 per 65536-element
// chunk of one matrix (p.n elements); partials[p.slot + chunk] gets the sums of the unscaled
// gradient's squares (adamw.wgsl's unscale), of the weights' and of the update's (the weights
// minus the old ones: 0 where the step was skipped).
@compute @workgroup_size(256)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let chunk = flat_index(wid, nwg, 0u, 1u);
    let start = chunk * CHUNK;
    if start >= p.n {
        return; // whole workgroup
    }
    let end = min(start + CHUNK, p.n);
    let inv = select(1.0, scaler.inv_scale, scaler.enabled != 0u);
    var s = vec3<f32>(0.0);
    for (var i = start + lid; i < end; i += WG) {
        let raw = grad[i] * inv;
        let w = param[i];
        let d = w - old[i];
        s += vec3<f32>(raw * raw, w * w, d * d);
    }
    put_sums(lid, chunk, s);
}
