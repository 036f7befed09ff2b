// Matrix product with optional bias and accumulation: C[M,N] (+)= A[M,K] · B[K,N] (+ bias[N]).
// A and B are read through row/column strides, so the transposed operands that GPT-2 needs
// (lm_head's wteᵀ, backward's Wᵀ and Xᵀ) are used in place without copies. HF's Conv1D stores
// its weight [in, out], which is B as is.

struct Params {
    M: u32,
    N: u32,
    K: u32,
    a_rs: u32, // A[m, k] = a[m * a_rs + k * a_cs]
    a_cs: u32,
    b_rs: u32, // B[k, n] = b[k * b_rs + n * b_cs]
    b_cs: u32,
    flags: u32, // 1: add bias[n]; 2: accumulate into C (C += ...)
    a_off: u32, // element offsets of A and B: a K-chunk of a longer product starts there
    b_off: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

const TM: u32 = 4u;
const TN: u32 = 4u;

// One invocation computes a TM x TN tile of C in registers (no workgroup memory, no barriers);
// an 8x8 workgroup covers 32x32 of C. x runs over columns, y over rows. The host splits K into
// chunks of at most 16384 (lavapipe caps an invocation at 65535 loop iterations).
@compute @workgroup_size(8, 8)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * TM;
    let n0 = gid.x * TN;
    if m0 >= p.M || n0 >= p.N {
        return;
    }
    var acc: array<array<f32, TN>, TM>;
    var arow: array<u32, TM>;
    var bcol: array<u32, TN>;
    for (var i = 0u; i < TM; i++) {
        arow[i] = p.a_off + min(m0 + i, p.M - 1u) * p.a_rs;
    }
    for (var j = 0u; j < TN; j++) {
        bcol[j] = p.b_off + min(n0 + j, p.N - 1u) * p.b_cs;
    }
    for (var k = 0u; k < p.K; k++) {
        var av: array<f32, TM>;
        var bv: array<f32, TN>;
        let ak = k * p.a_cs;
        let bk = k * p.b_rs;
        for (var i = 0u; i < TM; i++) {
            av[i] = a[arow[i] + ak];
        }
        for (var j = 0u; j < TN; j++) {
            bv[j] = b[bk + bcol[j]];
        }
        for (var i = 0u; i < TM; i++) {
            for (var j = 0u; j < TN; j++) {
                acc[i][j] = fma(av[i], bv[j], acc[i][j]);
            }
        }
    }
    for (var i = 0u; i < TM; i++) {
        let m = m0 + i;
        if m >= p.M {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let n = n0 + j;
            if n >= p.N {
                break;
            }
            var v = acc[i][j];
            if (p.flags & 1u) != 0u {
                v += bias[n];
            }
            let o = m * p.N + n;
            if (p.flags & 2u) != 0u {
                v += c[o];
            }
            c[o] = v;
        }
    }
}

// Backward of the bias: dbias[n] += Σ_m dout[m, n] over the M rows (M = p.M, N = p.N).
@group(0) @binding(5) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(6) var<storage, read> dout: array<f32>;

const COLS: u32 = 16u;
const LANES: u32 = 16u;
var<workgroup> red: array<f32, 256>; // COLS * LANES

// One 16x16 workgroup per 16 columns: x picks the column, y a lane that sums rows y, y+16, ...
// (≤ 4096 rows each for 65536 rows: lavapipe caps an invocation at 65535 loop iterations); then
// a tree reduction over the lanes in a fixed order, so the sums are deterministic.
@compute @workgroup_size(16, 16)
fn bias_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) l: vec3<u32>) {
    let n0 = (wid.y * nwg.x + wid.x) * COLS;
    if n0 >= p.N {
        return; // the whole workgroup: n0 is uniform, so the barriers below stay uniform
    }
    let n = n0 + l.x;
    var s = 0.0;
    if n < p.N {
        for (var m = l.y; m < p.M; m += LANES) {
            s += dout[m * p.N + n];
        }
    }
    let k = l.y * COLS + l.x;
    red[k] = s;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if l.y < stride {
            red[k] += red[k + stride * COLS];
        }
        workgroupBarrier();
    }
    if l.y == 0u && n < p.N {
        dbias[n] += red[l.x];
    }
}
