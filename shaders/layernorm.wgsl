// LayerNorm over the last dimension (eps from the config, 1e-5 for GPT-2), keeping each row's
// mean and reciprocal standard deviation for the backward pass. Variance is biased, as torch's.

struct Params {
    rows: u32,
    C: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> inp: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;

// One invocation per row; a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * nwg.x + wid.x) * 64u + lid;
    if row >= p.rows {
        return;
    }
    let base = row * p.C;
    var sum = 0.0;
    for (var c = 0u; c < p.C; c++) {
        sum += inp[base + c];
    }
    let m = sum / f32(p.C);
    var var_sum = 0.0;
    for (var c = 0u; c < p.C; c++) {
        let d = inp[base + c] - m;
        var_sum += d * d;
    }
    let s = inverseSqrt(var_sum / f32(p.C) + p.eps);
    for (var c = 0u; c < p.C; c++) {
        out[base + c] = (inp[base + c] - m) * s * weight[c] + bias[c];
    }
    mean[row] = m;
    rstd[row] = s;
}
