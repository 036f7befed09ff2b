// The MLP's nonlinearity, one template for every kind (kernels::elementwise instantiates it with
// ACT, the activation's name, and $T, the element type):
// - elementwise (ACT = gelu: HF's tanh-approximated `gelu_new`, GPT-2's; ACT = relu2: relu(x)²,
//   the speedrun's): out = act(x), backward dinp += act'(x)·dout;
// - gated (ACT = silu: SwiGLU, Llama's and Qwen3's): the fused product's rows are [gate | up],
//   2·I wide, and out = act(gate)·up is I wide; backward dgate += act'(gate)·up·dout and
//   dup += act(gate)·dout, into one gradient of the fused product's shape.

struct Params {
    // elements ($T) of the output
    n: u32,
    // gated: I, the output's row width, in elements ($T); the input's rows are 2·i wide
    i: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Elements are $T (the host picks vec4<f32> where the length, for the gated kernels the width I,
// is a multiple of 4: a quarter of the loads; the same operations per element).

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// tanh clamped to |u| <= 10, where it is ±1 in f32: some tanh implementations overflow to NaN.
fn tanh_safe(u: $T) -> $T {
    return tanh(clamp(u, $T(-10.0), $T(10.0)));
}

// gelu_new(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
fn act_gelu(x: $T) -> $T {
    return 0.5 * x * (1.0 + tanh_safe(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

// gelu_new'(x), as llm.c's gelu_backward, with sech² = 1 − tanh² of the same clamped argument.
fn grad_gelu(x: $T) -> $T {
    let th = tanh_safe(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
    let sech2 = 1.0 - th * th;
    return 0.5 * (1.0 + th) + 0.5 * x * sech2 * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
}

fn act_relu2(x: $T) -> $T {
    let r = max(x, $T(0.0));
    return r * r;
}

fn grad_relu2(x: $T) -> $T {
    return 2.0 * max(x, $T(0.0));
}

// The logistic function, its exponent clamped to |x| <= 80 where it is 0 or 1 to f32's
// precision (exp overflows past 88, and an overflow's value is not defined in WGSL).
fn sigmoid(x: $T) -> $T {
    return 1.0 / (1.0 + exp(-clamp(x, $T(-80.0), $T(80.0))));
}

// silu(x) = x·sigmoid(x) (torch's F.silu).
fn act_silu(x: $T) -> $T {
    return x * sigmoid(x);
}

// silu'(x) = s·(1 + x·(1 − s)) with s = sigmoid(x).
fn grad_silu(x: $T) -> $T {
    let s = sigmoid(x);
    return s * (1.0 + x * (1.0 - s));
}

// Where output element i's gate sits in the gated kernels' fused input (its up is p.i further).
fn gate_index(i: u32) -> u32 {
    return i + (i / p.i) * p.i;
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
    out[i] = act_$ACT(inp[i]);
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
    dinp[i] += grad_$ACT(inp[i]) * dout[i];
}

//#entry gated_forward
@group(0) @binding(1) var<storage, read_write> out: array<$T>;
@group(0) @binding(2) var<storage, read> inp: array<$T>;

// One invocation per output element (N·I); a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn gated_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    let g = gate_index(i);
    out[i] = act_$ACT(inp[g]) * inp[g + p.i];
}

//#entry gated_backward
@group(0) @binding(1) var<storage, read_write> dinp: array<$T>;
@group(0) @binding(2) var<storage, read> inp: array<$T>;
@group(0) @binding(3) var<storage, read> dout: array<$T>;

// One invocation per output element (N·I), writing its gate's and its up's gradient; a 2D grid
// of 64-wide workgroups.
@compute @workgroup_size(64)
fn gated_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.n {
        return;
    }
    let g = gate_index(i);
    let gate = inp[g];
    let up = inp[g + p.i];
    let d = dout[i];
    dinp[g] += grad_$ACT(gate) * up * d;
    dinp[g + p.i] += act_$ACT(gate) * d;
}
