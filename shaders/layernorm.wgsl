// LayerNorm over the last dimension (eps from the config, 1e-5 for GPT-2), keeping each row's
// mean and reciprocal standard deviation for the backward pass. Variance is biased, as torch's.
// Backward as llm.c's layernorm_backward: dinp per row, dweight and dbias as column sums.
// With RMS (Llama's RMSNorm) the mean is taken as 0, so rstd = 1/sqrt(mean(x^2) + eps) and
// the backward drops the mean's term; without BIAS there is no bias to add or to sum.

struct Params {
    rows: u32,
    C: u32,
    eps: f32,
    flags: u32, // RMS | BIAS
}

const RMS: u32 = 1u;
const BIAS: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;

//#entry @widths
// Rows are read as $T: vec4<f32> where C % 4 == 0 (a quarter of the loads), the row sums still
// taken element by element in order. at(x, j) is element j of x.
fn at(x: $T, j: u32) -> f32 {
//#if V4
    return x[j];
//#else
    return x;
//#end
}


//#entry forward
//#use @widths
@group(0) @binding(1) var<storage, read_write> out: array<$T>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> inp: array<$T>;
@group(0) @binding(5) var<storage, read> weight: array<$T>;
@group(0) @binding(6) var<storage, read> bias: array<$T>; // weight again without BIAS (unread)

// One invocation per row; a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, lid, 64u);
    if row >= p.rows {
        return;
    }
    let n = p.C / ${W}u;
    let base = row * n;
    var m = 0.0;
    if (p.flags & RMS) == 0u {
        var sum = 0.0;
        for (var c = 0u; c < n; c++) {
            let x = inp[base + c];
//#for j in 0..W
            sum += at(x, ${j}u);
//#end
        }
        m = sum / f32(p.C);
    }
    var var_sum = 0.0;
    for (var c = 0u; c < n; c++) {
        let d = inp[base + c] - m;
//#for j in 0..W
        var_sum += at(d, ${j}u) * at(d, ${j}u);
//#end
    }
    let s = inverseSqrt(var_sum / f32(p.C) + p.eps);
    if (p.flags & BIAS) != 0u {
        for (var c = 0u; c < n; c++) {
            out[base + c] = (inp[base + c] - m) * s * weight[c] + bias[c];
        }
    } else {
        for (var c = 0u; c < n; c++) {
            out[base + c] = (inp[base + c] - m) * s * weight[c];
        }
    }
    mean[row] = m;
    rstd[row] = s;
}

//#entry backward
//#use @widths
@group(0) @binding(1) var<storage, read_write> dinp: array<$T>;
@group(0) @binding(2) var<storage, read> dout: array<$T>;
@group(0) @binding(3) var<storage, read> inp: array<$T>;
@group(0) @binding(4) var<storage, read> weight: array<$T>;
@group(0) @binding(5) var<storage, read> mean: array<f32>;
@group(0) @binding(6) var<storage, read> rstd: array<f32>;

// One invocation per row (two passes over C ≤ 1600); a 2D grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, lid, 64u);
    if row >= p.rows {
        return;
    }
    let n = p.C / ${W}u;
    let base = row * n;
    let m = mean[row];
    let s = rstd[row];
    // the means of dnorm and of dnorm · norm over the row
    var dnorm_mean = 0.0;
    var dnorm_norm_mean = 0.0;
    for (var c = 0u; c < n; c++) {
        let norm = (inp[base + c] - m) * s;
        let dnorm = weight[c] * dout[base + c];
//#for j in 0..W
        dnorm_mean += at(dnorm, ${j}u);
        dnorm_norm_mean += at(dnorm, ${j}u) * at(norm, ${j}u);
//#end
    }
    dnorm_mean = select(dnorm_mean / f32(p.C), 0.0, (p.flags & RMS) != 0u);
    dnorm_norm_mean /= f32(p.C);
    for (var c = 0u; c < n; c++) {
        let norm = (inp[base + c] - m) * s;
        let dnorm = weight[c] * dout[base + c];
        dinp[base + c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
}

//#entry backward_params
@group(0) @binding(1) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> inp: array<f32>;
@group(0) @binding(5) var<storage, read> mean: array<f32>;
@group(0) @binding(6) var<storage, read> rstd: array<f32>;

const COLS: u32 = 16u;
const LANES: u32 = 16u;
var<workgroup> red_w: array<f32, 256>; // COLS * LANES
var<workgroup> red_b: array<f32, 256>;

// One 16x16 workgroup per 16 columns: x picks the column, y a lane that sums rows y, y+16, ...
// (≤ 4096 rows each for 65536 rows: lavapipe caps an invocation at 65535 loop iterations); then
// a tree reduction over the lanes in a fixed order, so the sums are deterministic.
@compute @workgroup_size(16, 16)
fn backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) l: vec3<u32>) {
    let c0 = flat_index(wid, nwg, 0u, COLS);
    if c0 >= p.C {
        return; // the whole workgroup: c0 is uniform, so the barriers below stay uniform
    }
    let col = c0 + l.x;
    var sw = 0.0;
    var sb = 0.0;
    if col < p.C {
        for (var r = l.y; r < p.rows; r += LANES) {
            let d = dout[r * p.C + col];
            sw += (inp[r * p.C + col] - mean[r]) * rstd[r] * d;
            sb += d;
        }
    }
    let k = l.y * COLS + l.x;
    red_w[k] = sw;
    red_b[k] = sb;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if l.y < stride {
            red_w[k] += red_w[k + stride * COLS];
            red_b[k] += red_b[k + stride * COLS];
        }
        workgroupBarrier();
    }
    if l.y == 0u && col < p.C {
        dweight[col] += red_w[l.x];
        dbias[col] += red_b[l.x];
    }
}

//#entry backward_weight
@group(0) @binding(1) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> inp: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;

const COLS: u32 = 16u;
const LANES: u32 = 16u;
var<workgroup> red_w: array<f32, 256>; // COLS * LANES

// backward_params without a bias (RMSNorm, or a LayerNorm without one): the same 16x16
// workgroups, lanes and fixed-order tree reduction, for dweight alone.
@compute @workgroup_size(16, 16)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) l: vec3<u32>) {
    let c0 = flat_index(wid, nwg, 0u, COLS);
    if c0 >= p.C {
        return; // the whole workgroup: c0 is uniform, so the barriers below stay uniform
    }
    let col = c0 + l.x;
    var sw = 0.0;
    if col < p.C {
        for (var r = l.y; r < p.rows; r += LANES) {
            sw += (inp[r * p.C + col] - mean[r]) * rstd[r] * dout[r * p.C + col];
        }
    }
    let k = l.y * COLS + l.x;
    red_w[k] = sw;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if l.y < stride {
            red_w[k] += red_w[k + stride * COLS];
        }
        workgroupBarrier();
    }
    if l.y == 0u && col < p.C {
        dweight[col] += red_w[l.x];
    }
}
