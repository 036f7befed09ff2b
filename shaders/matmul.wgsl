// Matrix product with optional bias and accumulation: C[M,N] (+)= A[M,K] · B[K,N] (+ bias[N]).
// The transposed operands that GPT-2 needs (lm_head's wteᵀ, backward's Wᵀ and Xᵀ) are used in
// place without copies. HF's Conv1D stores its weight [in, out], which is B as is. `forward` reads
// A and B through row/column strides and takes any shape; the vec4 kernels below (nn, nn1, nt,
// tn, tn1) take the three layouts GPT-2 uses when the shapes allow vec4 access and are ~10x
// faster. Every output is one fma chain over k in order: all kernels sum in the same order, and
// deterministically.

struct Params {
    M: u32,
    N: u32,
    K: u32,
    a_rs: u32, // A[m, k] = a[m * a_rs + k * a_cs]
    a_cs: u32,
    b_rs: u32, // B[k, n] = b[k * b_rs + n * b_cs]
    b_cs: u32,
    flags: u32, // 1: add bias[n]; 2: accumulate into C (C += ...)
    a_off: u32, // element offsets of A and B: a K-chunk of a longer product, or a block of
    b_off: u32, // columns of a wider stored matrix (lm_head's backward over wte chunks), starts there
    c_off: u32, // NT and VMT only: C[m, n] is c[c_off + m * ldc + n] (a column block of a wider
    ldc: u32,   // C, as lm_head over one row chunk of wte); elsewhere 0 and N
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

// ---- vec4 register-tile kernels, one per operand layout ----
//
// One invocation computes a 16x16 tile of C: 16 rows m0.., 16 columns n0.. (four vec4s). The
// accumulators are plain variables (r0..r15, one X4 per row), never dynamically indexed arrays:
// those would live in memory. No workgroup memory and no barriers: on lavapipe (Mesa 22.3) every
// storage load is a scalar loop over the 8 SIMD lanes and a barrier is a coroutine switch, so
// the kernel is built to do as many FMAs per loaded vec4 as possible and nothing else. Rows past
// M and columns past N are clamped on load (valid addresses, the results are discarded) and
// skipped on store. The host splits K into chunks of at most 16384: a loop runs K / 4 (NN, NT)
// or K (TN, NN1, TN1) iterations, under lavapipe's 65535 per invocation.
// On a real GPU 256 accumulators per invocation are too many registers: there a variant that
// stages A and B tiles in var<workgroup> (barriers are cheap) with a 4x4 tile per invocation
// would win; Matmul::gemm is where the choice per adapter goes.

// Sixteen consecutive floats as four vec4s: a 16-column piece of a row of C or B, or the k4
// slices of four rows of a transposed operand.
struct X4 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

const ROWS: u32 = 16u; // rows of C per invocation; 16 columns; workgroup 8 x 4

// r + a · b, element-wise: one k step of the outer product for one row of the tile.
fn axpy(r: X4, a: f32, b: X4) -> X4 {
    return X4(fma(vec4(a), b.v0, r.v0), fma(vec4(a), b.v1, r.v1), fma(vec4(a), b.v2, r.v2),
              fma(vec4(a), b.v3, r.v3));
}

// Four k steps: r + a.x · b0 + a.y · b1 + a.z · b2 + a.w · b3, in that order.
fn axpy4(r: X4, a: vec4<f32>, b0: X4, b1: X4, b2: X4, b3: X4) -> X4 {
    return axpy(axpy(axpy(axpy(r, a.x, b0), a.y, b1), a.z, b2), a.w, b3);
}

// c + a · b over four k, in order.
fn dot4(a: vec4<f32>, b: vec4<f32>, c: f32) -> f32 {
    return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, c))));
}

// v + a · bⱼ for the four columns j whose k4 slices b holds.
fn dots(v: vec4<f32>, a: vec4<f32>, b: X4) -> vec4<f32> {
    return vec4(dot4(a, b.v0, v.x), dot4(a, b.v1, v.y), dot4(a, b.v2, v.z), dot4(a, b.v3, v.w));
}

// Four k steps for one row of the NT tile: b0..b3 hold the k4 slices of columns 0-3, ..., 12-15.
fn dots16(r: X4, a: vec4<f32>, b0: X4, b1: X4, b2: X4, b3: X4) -> X4 {
    return X4(dots(r.v0, a, b0), dots(r.v1, a, b1), dots(r.v2, a, b2), dots(r.v3, a, b3));
}

// The first row of this invocation's tile.
fn tile_m0(gid: vec3<u32>) -> u32 {
    return gid.y * ROWS;
}

// The tile's four vec4 columns (C and B[K,N] as arrays of vec4), clamped into [0, N / 4).
fn tile_cols(gid: vec3<u32>) -> vec4<u32> {
    let last = p.N / 4u - 1u;
    let q0 = gid.x * 4u;
    return min(vec4(q0, q0 + 1u, q0 + 2u, q0 + 3u), vec4(last));
}

// NN: C[M,N] = A[M,K] · B[K,N], N % 4 == 0 and K % 4 == 0 (A read as vec4 along K).
@group(0) @binding(7) var<storage, read_write> nn_c: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> nn_a: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> nn_b: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> nn_bias: array<vec4<f32>>;

// C[m, 4q .. 4q + 15] = r (+ bias) (+ C), for the vec4 columns q.. that exist.
fn nn_put(m: u32, q: u32, r: X4) {
    let nq = p.N / 4u;
    if m >= p.M {
        return;
    }
    let row = m * nq;
    if q < nq {
        nn_c[row + q] = nn_put_value(r.v0, q, row + q);
    }
    if q + 1u < nq {
        nn_c[row + q + 1u] = nn_put_value(r.v1, q + 1u, row + q + 1u);
    }
    if q + 2u < nq {
        nn_c[row + q + 2u] = nn_put_value(r.v2, q + 2u, row + q + 2u);
    }
    if q + 3u < nq {
        nn_c[row + q + 3u] = nn_put_value(r.v3, q + 3u, row + q + 3u);
    }
}

// v (+ bias) (+ C), in the generic kernel's order, for vec4 column q at o.
fn nn_put_value(v: vec4<f32>, q: u32, o: u32) -> vec4<f32> {
    var x = v;
    if (p.flags & 1u) != 0u {
        x += nn_bias[q];
    }
    if (p.flags & 2u) != 0u {
        x += nn_c[o];
    }
    return x;
}

// The tile's 16 columns of the B row starting at vec4 i.
fn nn_b_row(i: u32, c: vec4<u32>) -> X4 {
    return X4(nn_b[i + c.x], nn_b[i + c.y], nn_b[i + c.z], nn_b[i + c.w]);
}

@compute @workgroup_size(8, 4)
fn nn(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = tile_m0(gid);
    let q0 = gid.x * 4u;
    if m0 >= p.M || q0 * 4u >= p.N {
        return;
    }
    let c = tile_cols(gid);
    let lda = p.a_rs / 4u;
    let ldb = p.b_rs / 4u;
    let a0 = p.a_off / 4u + min(m0, p.M - 1u) * lda;
    let a1 = p.a_off / 4u + min(m0 + 1u, p.M - 1u) * lda;
    let a2 = p.a_off / 4u + min(m0 + 2u, p.M - 1u) * lda;
    let a3 = p.a_off / 4u + min(m0 + 3u, p.M - 1u) * lda;
    let a4 = p.a_off / 4u + min(m0 + 4u, p.M - 1u) * lda;
    let a5 = p.a_off / 4u + min(m0 + 5u, p.M - 1u) * lda;
    let a6 = p.a_off / 4u + min(m0 + 6u, p.M - 1u) * lda;
    let a7 = p.a_off / 4u + min(m0 + 7u, p.M - 1u) * lda;
    let a8 = p.a_off / 4u + min(m0 + 8u, p.M - 1u) * lda;
    let a9 = p.a_off / 4u + min(m0 + 9u, p.M - 1u) * lda;
    let a10 = p.a_off / 4u + min(m0 + 10u, p.M - 1u) * lda;
    let a11 = p.a_off / 4u + min(m0 + 11u, p.M - 1u) * lda;
    let a12 = p.a_off / 4u + min(m0 + 12u, p.M - 1u) * lda;
    let a13 = p.a_off / 4u + min(m0 + 13u, p.M - 1u) * lda;
    let a14 = p.a_off / 4u + min(m0 + 14u, p.M - 1u) * lda;
    let a15 = p.a_off / 4u + min(m0 + 15u, p.M - 1u) * lda;
    var r0 = X4();
    var r1 = X4();
    var r2 = X4();
    var r3 = X4();
    var r4 = X4();
    var r5 = X4();
    var r6 = X4();
    var r7 = X4();
    var r8 = X4();
    var r9 = X4();
    var r10 = X4();
    var r11 = X4();
    var r12 = X4();
    var r13 = X4();
    var r14 = X4();
    var r15 = X4();
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K / 4u; k++) {
        let b0 = nn_b_row(bi, c);
        let b1 = nn_b_row(bi + ldb, c);
        let b2 = nn_b_row(bi + 2u * ldb, c);
        let b3 = nn_b_row(bi + 3u * ldb, c);
        bi += 4u * ldb;
        r0 = axpy4(r0, nn_a[a0 + k], b0, b1, b2, b3);
        r1 = axpy4(r1, nn_a[a1 + k], b0, b1, b2, b3);
        r2 = axpy4(r2, nn_a[a2 + k], b0, b1, b2, b3);
        r3 = axpy4(r3, nn_a[a3 + k], b0, b1, b2, b3);
        r4 = axpy4(r4, nn_a[a4 + k], b0, b1, b2, b3);
        r5 = axpy4(r5, nn_a[a5 + k], b0, b1, b2, b3);
        r6 = axpy4(r6, nn_a[a6 + k], b0, b1, b2, b3);
        r7 = axpy4(r7, nn_a[a7 + k], b0, b1, b2, b3);
        r8 = axpy4(r8, nn_a[a8 + k], b0, b1, b2, b3);
        r9 = axpy4(r9, nn_a[a9 + k], b0, b1, b2, b3);
        r10 = axpy4(r10, nn_a[a10 + k], b0, b1, b2, b3);
        r11 = axpy4(r11, nn_a[a11 + k], b0, b1, b2, b3);
        r12 = axpy4(r12, nn_a[a12 + k], b0, b1, b2, b3);
        r13 = axpy4(r13, nn_a[a13 + k], b0, b1, b2, b3);
        r14 = axpy4(r14, nn_a[a14 + k], b0, b1, b2, b3);
        r15 = axpy4(r15, nn_a[a15 + k], b0, b1, b2, b3);
    }
    nn_put(m0 + 0u, q0, r0);
    nn_put(m0 + 1u, q0, r1);
    nn_put(m0 + 2u, q0, r2);
    nn_put(m0 + 3u, q0, r3);
    nn_put(m0 + 4u, q0, r4);
    nn_put(m0 + 5u, q0, r5);
    nn_put(m0 + 6u, q0, r6);
    nn_put(m0 + 7u, q0, r7);
    nn_put(m0 + 8u, q0, r8);
    nn_put(m0 + 9u, q0, r9);
    nn_put(m0 + 10u, q0, r10);
    nn_put(m0 + 11u, q0, r11);
    nn_put(m0 + 12u, q0, r12);
    nn_put(m0 + 13u, q0, r13);
    nn_put(m0 + 14u, q0, r14);
    nn_put(m0 + 15u, q0, r15);
}

// NN1: as NN for any K (A read as scalars).
@group(0) @binding(11) var<storage, read_write> nn1_c: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> nn1_a: array<f32>;
@group(0) @binding(13) var<storage, read> nn1_b: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read> nn1_bias: array<vec4<f32>>;

// C[m, 4q .. 4q + 15] = r (+ bias) (+ C), for the vec4 columns q.. that exist.
fn nn1_put(m: u32, q: u32, r: X4) {
    let nq = p.N / 4u;
    if m >= p.M {
        return;
    }
    let row = m * nq;
    if q < nq {
        nn1_c[row + q] = nn1_put_value(r.v0, q, row + q);
    }
    if q + 1u < nq {
        nn1_c[row + q + 1u] = nn1_put_value(r.v1, q + 1u, row + q + 1u);
    }
    if q + 2u < nq {
        nn1_c[row + q + 2u] = nn1_put_value(r.v2, q + 2u, row + q + 2u);
    }
    if q + 3u < nq {
        nn1_c[row + q + 3u] = nn1_put_value(r.v3, q + 3u, row + q + 3u);
    }
}

// v (+ bias) (+ C), in the generic kernel's order, for vec4 column q at o.
fn nn1_put_value(v: vec4<f32>, q: u32, o: u32) -> vec4<f32> {
    var x = v;
    if (p.flags & 1u) != 0u {
        x += nn1_bias[q];
    }
    if (p.flags & 2u) != 0u {
        x += nn1_c[o];
    }
    return x;
}

@compute @workgroup_size(8, 4)
fn nn1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = tile_m0(gid);
    let q0 = gid.x * 4u;
    if m0 >= p.M || q0 * 4u >= p.N {
        return;
    }
    let c = tile_cols(gid);
    let ldb = p.b_rs / 4u;
    let a0 = p.a_off + min(m0, p.M - 1u) * p.a_rs;
    let a1 = p.a_off + min(m0 + 1u, p.M - 1u) * p.a_rs;
    let a2 = p.a_off + min(m0 + 2u, p.M - 1u) * p.a_rs;
    let a3 = p.a_off + min(m0 + 3u, p.M - 1u) * p.a_rs;
    let a4 = p.a_off + min(m0 + 4u, p.M - 1u) * p.a_rs;
    let a5 = p.a_off + min(m0 + 5u, p.M - 1u) * p.a_rs;
    let a6 = p.a_off + min(m0 + 6u, p.M - 1u) * p.a_rs;
    let a7 = p.a_off + min(m0 + 7u, p.M - 1u) * p.a_rs;
    let a8 = p.a_off + min(m0 + 8u, p.M - 1u) * p.a_rs;
    let a9 = p.a_off + min(m0 + 9u, p.M - 1u) * p.a_rs;
    let a10 = p.a_off + min(m0 + 10u, p.M - 1u) * p.a_rs;
    let a11 = p.a_off + min(m0 + 11u, p.M - 1u) * p.a_rs;
    let a12 = p.a_off + min(m0 + 12u, p.M - 1u) * p.a_rs;
    let a13 = p.a_off + min(m0 + 13u, p.M - 1u) * p.a_rs;
    let a14 = p.a_off + min(m0 + 14u, p.M - 1u) * p.a_rs;
    let a15 = p.a_off + min(m0 + 15u, p.M - 1u) * p.a_rs;
    var r0 = X4();
    var r1 = X4();
    var r2 = X4();
    var r3 = X4();
    var r4 = X4();
    var r5 = X4();
    var r6 = X4();
    var r7 = X4();
    var r8 = X4();
    var r9 = X4();
    var r10 = X4();
    var r11 = X4();
    var r12 = X4();
    var r13 = X4();
    var r14 = X4();
    var r15 = X4();
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K; k++) {
        let b = X4(nn1_b[bi + c.x], nn1_b[bi + c.y], nn1_b[bi + c.z], nn1_b[bi + c.w]);
        bi += ldb;
        r0 = axpy(r0, nn1_a[a0 + k], b);
        r1 = axpy(r1, nn1_a[a1 + k], b);
        r2 = axpy(r2, nn1_a[a2 + k], b);
        r3 = axpy(r3, nn1_a[a3 + k], b);
        r4 = axpy(r4, nn1_a[a4 + k], b);
        r5 = axpy(r5, nn1_a[a5 + k], b);
        r6 = axpy(r6, nn1_a[a6 + k], b);
        r7 = axpy(r7, nn1_a[a7 + k], b);
        r8 = axpy(r8, nn1_a[a8 + k], b);
        r9 = axpy(r9, nn1_a[a9 + k], b);
        r10 = axpy(r10, nn1_a[a10 + k], b);
        r11 = axpy(r11, nn1_a[a11 + k], b);
        r12 = axpy(r12, nn1_a[a12 + k], b);
        r13 = axpy(r13, nn1_a[a13 + k], b);
        r14 = axpy(r14, nn1_a[a14 + k], b);
        r15 = axpy(r15, nn1_a[a15 + k], b);
    }
    nn1_put(m0 + 0u, q0, r0);
    nn1_put(m0 + 1u, q0, r1);
    nn1_put(m0 + 2u, q0, r2);
    nn1_put(m0 + 3u, q0, r3);
    nn1_put(m0 + 4u, q0, r4);
    nn1_put(m0 + 5u, q0, r5);
    nn1_put(m0 + 6u, q0, r6);
    nn1_put(m0 + 7u, q0, r7);
    nn1_put(m0 + 8u, q0, r8);
    nn1_put(m0 + 9u, q0, r9);
    nn1_put(m0 + 10u, q0, r10);
    nn1_put(m0 + 11u, q0, r11);
    nn1_put(m0 + 12u, q0, r12);
    nn1_put(m0 + 13u, q0, r13);
    nn1_put(m0 + 14u, q0, r14);
    nn1_put(m0 + 15u, q0, r15);
}

// NT: C[M,N] = A[M,K] · B[N,K]ᵀ, K % 4 == 0; any N (C and bias as scalars).
@group(0) @binding(15) var<storage, read_write> nt_c: array<f32>;
@group(0) @binding(16) var<storage, read> nt_a: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read> nt_b: array<vec4<f32>>;
@group(0) @binding(18) var<storage, read> nt_bias: array<f32>;

// C[m, n .. n + 15] = r (+ bias) (+ C), for the columns that exist.
fn nt_put(m: u32, n: u32, r: X4) {
    if m >= p.M {
        return;
    }
    let row = p.c_off + m * p.ldc;
    nt_put4(row, n, r.v0);
    nt_put4(row, n + 4u, r.v1);
    nt_put4(row, n + 8u, r.v2);
    nt_put4(row, n + 12u, r.v3);
}

fn nt_put4(row: u32, n: u32, v: vec4<f32>) {
    nt_put1(row, n, v.x);
    nt_put1(row, n + 1u, v.y);
    nt_put1(row, n + 2u, v.z);
    nt_put1(row, n + 3u, v.w);
}

fn nt_put1(row: u32, n: u32, v: f32) {
    if n < p.N {
        var x = v;
        if (p.flags & 1u) != 0u {
            x += nt_bias[n];
        }
        if (p.flags & 2u) != 0u {
            x += nt_c[row + n];
        }
        nt_c[row + n] = x;
    }
}

// The k4 slices at k of B's rows (columns of C) i0 .. i3.
fn nt_b4(i: vec4<u32>, k: u32) -> X4 {
    return X4(nt_b[i.x + k], nt_b[i.y + k], nt_b[i.z + k], nt_b[i.w + k]);
}

@compute @workgroup_size(8, 4)
fn nt(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = tile_m0(gid);
    let n0 = gid.x * 16u;
    if m0 >= p.M || n0 >= p.N {
        return;
    }
    let lda = p.a_rs / 4u;
    let ldb = p.b_cs / 4u;
    let last = vec4(p.N - 1u);
    let j = vec4(n0, n0 + 1u, n0 + 2u, n0 + 3u);
    let bo = vec4(p.b_off / 4u);
    let b0i = bo + min(j, last) * ldb;
    let b1i = bo + min(j + 4u, last) * ldb;
    let b2i = bo + min(j + 8u, last) * ldb;
    let b3i = bo + min(j + 12u, last) * ldb;
    let a0 = p.a_off / 4u + min(m0, p.M - 1u) * lda;
    let a1 = p.a_off / 4u + min(m0 + 1u, p.M - 1u) * lda;
    let a2 = p.a_off / 4u + min(m0 + 2u, p.M - 1u) * lda;
    let a3 = p.a_off / 4u + min(m0 + 3u, p.M - 1u) * lda;
    let a4 = p.a_off / 4u + min(m0 + 4u, p.M - 1u) * lda;
    let a5 = p.a_off / 4u + min(m0 + 5u, p.M - 1u) * lda;
    let a6 = p.a_off / 4u + min(m0 + 6u, p.M - 1u) * lda;
    let a7 = p.a_off / 4u + min(m0 + 7u, p.M - 1u) * lda;
    let a8 = p.a_off / 4u + min(m0 + 8u, p.M - 1u) * lda;
    let a9 = p.a_off / 4u + min(m0 + 9u, p.M - 1u) * lda;
    let a10 = p.a_off / 4u + min(m0 + 10u, p.M - 1u) * lda;
    let a11 = p.a_off / 4u + min(m0 + 11u, p.M - 1u) * lda;
    let a12 = p.a_off / 4u + min(m0 + 12u, p.M - 1u) * lda;
    let a13 = p.a_off / 4u + min(m0 + 13u, p.M - 1u) * lda;
    let a14 = p.a_off / 4u + min(m0 + 14u, p.M - 1u) * lda;
    let a15 = p.a_off / 4u + min(m0 + 15u, p.M - 1u) * lda;
    var r0 = X4();
    var r1 = X4();
    var r2 = X4();
    var r3 = X4();
    var r4 = X4();
    var r5 = X4();
    var r6 = X4();
    var r7 = X4();
    var r8 = X4();
    var r9 = X4();
    var r10 = X4();
    var r11 = X4();
    var r12 = X4();
    var r13 = X4();
    var r14 = X4();
    var r15 = X4();
    for (var k = 0u; k < p.K / 4u; k++) {
        let b0 = nt_b4(b0i, k);
        let b1 = nt_b4(b1i, k);
        let b2 = nt_b4(b2i, k);
        let b3 = nt_b4(b3i, k);
        r0 = dots16(r0, nt_a[a0 + k], b0, b1, b2, b3);
        r1 = dots16(r1, nt_a[a1 + k], b0, b1, b2, b3);
        r2 = dots16(r2, nt_a[a2 + k], b0, b1, b2, b3);
        r3 = dots16(r3, nt_a[a3 + k], b0, b1, b2, b3);
        r4 = dots16(r4, nt_a[a4 + k], b0, b1, b2, b3);
        r5 = dots16(r5, nt_a[a5 + k], b0, b1, b2, b3);
        r6 = dots16(r6, nt_a[a6 + k], b0, b1, b2, b3);
        r7 = dots16(r7, nt_a[a7 + k], b0, b1, b2, b3);
        r8 = dots16(r8, nt_a[a8 + k], b0, b1, b2, b3);
        r9 = dots16(r9, nt_a[a9 + k], b0, b1, b2, b3);
        r10 = dots16(r10, nt_a[a10 + k], b0, b1, b2, b3);
        r11 = dots16(r11, nt_a[a11 + k], b0, b1, b2, b3);
        r12 = dots16(r12, nt_a[a12 + k], b0, b1, b2, b3);
        r13 = dots16(r13, nt_a[a13 + k], b0, b1, b2, b3);
        r14 = dots16(r14, nt_a[a14 + k], b0, b1, b2, b3);
        r15 = dots16(r15, nt_a[a15 + k], b0, b1, b2, b3);
    }
    nt_put(m0 + 0u, n0, r0);
    nt_put(m0 + 1u, n0, r1);
    nt_put(m0 + 2u, n0, r2);
    nt_put(m0 + 3u, n0, r3);
    nt_put(m0 + 4u, n0, r4);
    nt_put(m0 + 5u, n0, r5);
    nt_put(m0 + 6u, n0, r6);
    nt_put(m0 + 7u, n0, r7);
    nt_put(m0 + 8u, n0, r8);
    nt_put(m0 + 9u, n0, r9);
    nt_put(m0 + 10u, n0, r10);
    nt_put(m0 + 11u, n0, r11);
    nt_put(m0 + 12u, n0, r12);
    nt_put(m0 + 13u, n0, r13);
    nt_put(m0 + 14u, n0, r14);
    nt_put(m0 + 15u, n0, r15);
}

// TN: C[M,N] = A[K,M]ᵀ · B[K,N], N % 4 == 0 and M % 4 == 0 (A read as vec4 along M).
@group(0) @binding(19) var<storage, read_write> tn_c: array<vec4<f32>>;
@group(0) @binding(20) var<storage, read> tn_a: array<vec4<f32>>;
@group(0) @binding(21) var<storage, read> tn_b: array<vec4<f32>>;
@group(0) @binding(22) var<storage, read> tn_bias: array<vec4<f32>>;

// C[m, 4q .. 4q + 15] = r (+ bias) (+ C), for the vec4 columns q.. that exist.
fn tn_put(m: u32, q: u32, r: X4) {
    let nq = p.N / 4u;
    if m >= p.M {
        return;
    }
    let row = m * nq;
    if q < nq {
        tn_c[row + q] = tn_put_value(r.v0, q, row + q);
    }
    if q + 1u < nq {
        tn_c[row + q + 1u] = tn_put_value(r.v1, q + 1u, row + q + 1u);
    }
    if q + 2u < nq {
        tn_c[row + q + 2u] = tn_put_value(r.v2, q + 2u, row + q + 2u);
    }
    if q + 3u < nq {
        tn_c[row + q + 3u] = tn_put_value(r.v3, q + 3u, row + q + 3u);
    }
}

// v (+ bias) (+ C), in the generic kernel's order, for vec4 column q at o.
fn tn_put_value(v: vec4<f32>, q: u32, o: u32) -> vec4<f32> {
    var x = v;
    if (p.flags & 1u) != 0u {
        x += tn_bias[q];
    }
    if (p.flags & 2u) != 0u {
        x += tn_c[o];
    }
    return x;
}

@compute @workgroup_size(8, 4)
fn tn(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = tile_m0(gid);
    let q0 = gid.x * 4u;
    if m0 >= p.M || q0 * 4u >= p.N {
        return;
    }
    let c = tile_cols(gid);
    let lda = p.a_cs / 4u;
    let ldb = p.b_rs / 4u;
    let mlast = p.M / 4u - 1u;
    let a0 = min(m0 / 4u, mlast);
    let a1 = min(m0 / 4u + 1u, mlast);
    let a2 = min(m0 / 4u + 2u, mlast);
    let a3 = min(m0 / 4u + 3u, mlast);
    var r0 = X4();
    var r1 = X4();
    var r2 = X4();
    var r3 = X4();
    var r4 = X4();
    var r5 = X4();
    var r6 = X4();
    var r7 = X4();
    var r8 = X4();
    var r9 = X4();
    var r10 = X4();
    var r11 = X4();
    var r12 = X4();
    var r13 = X4();
    var r14 = X4();
    var r15 = X4();
    var ai = p.a_off / 4u;
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K; k++) {
        let b = X4(tn_b[bi + c.x], tn_b[bi + c.y], tn_b[bi + c.z], tn_b[bi + c.w]);
        let x0 = tn_a[ai + a0];
        let x1 = tn_a[ai + a1];
        let x2 = tn_a[ai + a2];
        let x3 = tn_a[ai + a3];
        ai += lda;
        bi += ldb;
        r0 = axpy(r0, x0.x, b);
        r1 = axpy(r1, x0.y, b);
        r2 = axpy(r2, x0.z, b);
        r3 = axpy(r3, x0.w, b);
        r4 = axpy(r4, x1.x, b);
        r5 = axpy(r5, x1.y, b);
        r6 = axpy(r6, x1.z, b);
        r7 = axpy(r7, x1.w, b);
        r8 = axpy(r8, x2.x, b);
        r9 = axpy(r9, x2.y, b);
        r10 = axpy(r10, x2.z, b);
        r11 = axpy(r11, x2.w, b);
        r12 = axpy(r12, x3.x, b);
        r13 = axpy(r13, x3.y, b);
        r14 = axpy(r14, x3.z, b);
        r15 = axpy(r15, x3.w, b);
    }
    tn_put(m0 + 0u, q0, r0);
    tn_put(m0 + 1u, q0, r1);
    tn_put(m0 + 2u, q0, r2);
    tn_put(m0 + 3u, q0, r3);
    tn_put(m0 + 4u, q0, r4);
    tn_put(m0 + 5u, q0, r5);
    tn_put(m0 + 6u, q0, r6);
    tn_put(m0 + 7u, q0, r7);
    tn_put(m0 + 8u, q0, r8);
    tn_put(m0 + 9u, q0, r9);
    tn_put(m0 + 10u, q0, r10);
    tn_put(m0 + 11u, q0, r11);
    tn_put(m0 + 12u, q0, r12);
    tn_put(m0 + 13u, q0, r13);
    tn_put(m0 + 14u, q0, r14);
    tn_put(m0 + 15u, q0, r15);
}

// TN1: as TN for any M (A read as scalars).
@group(0) @binding(23) var<storage, read_write> tn1_c: array<vec4<f32>>;
@group(0) @binding(24) var<storage, read> tn1_a: array<f32>;
@group(0) @binding(25) var<storage, read> tn1_b: array<vec4<f32>>;
@group(0) @binding(26) var<storage, read> tn1_bias: array<vec4<f32>>;

// C[m, 4q .. 4q + 15] = r (+ bias) (+ C), for the vec4 columns q.. that exist.
fn tn1_put(m: u32, q: u32, r: X4) {
    let nq = p.N / 4u;
    if m >= p.M {
        return;
    }
    let row = m * nq;
    if q < nq {
        tn1_c[row + q] = tn1_put_value(r.v0, q, row + q);
    }
    if q + 1u < nq {
        tn1_c[row + q + 1u] = tn1_put_value(r.v1, q + 1u, row + q + 1u);
    }
    if q + 2u < nq {
        tn1_c[row + q + 2u] = tn1_put_value(r.v2, q + 2u, row + q + 2u);
    }
    if q + 3u < nq {
        tn1_c[row + q + 3u] = tn1_put_value(r.v3, q + 3u, row + q + 3u);
    }
}

// v (+ bias) (+ C), in the generic kernel's order, for vec4 column q at o.
fn tn1_put_value(v: vec4<f32>, q: u32, o: u32) -> vec4<f32> {
    var x = v;
    if (p.flags & 1u) != 0u {
        x += tn1_bias[q];
    }
    if (p.flags & 2u) != 0u {
        x += tn1_c[o];
    }
    return x;
}

@compute @workgroup_size(8, 4)
fn tn1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = tile_m0(gid);
    let q0 = gid.x * 4u;
    if m0 >= p.M || q0 * 4u >= p.N {
        return;
    }
    let c = tile_cols(gid);
    let ldb = p.b_rs / 4u;
    let a0 = min(m0, p.M - 1u);
    let a1 = min(m0 + 1u, p.M - 1u);
    let a2 = min(m0 + 2u, p.M - 1u);
    let a3 = min(m0 + 3u, p.M - 1u);
    let a4 = min(m0 + 4u, p.M - 1u);
    let a5 = min(m0 + 5u, p.M - 1u);
    let a6 = min(m0 + 6u, p.M - 1u);
    let a7 = min(m0 + 7u, p.M - 1u);
    let a8 = min(m0 + 8u, p.M - 1u);
    let a9 = min(m0 + 9u, p.M - 1u);
    let a10 = min(m0 + 10u, p.M - 1u);
    let a11 = min(m0 + 11u, p.M - 1u);
    let a12 = min(m0 + 12u, p.M - 1u);
    let a13 = min(m0 + 13u, p.M - 1u);
    let a14 = min(m0 + 14u, p.M - 1u);
    let a15 = min(m0 + 15u, p.M - 1u);
    var r0 = X4();
    var r1 = X4();
    var r2 = X4();
    var r3 = X4();
    var r4 = X4();
    var r5 = X4();
    var r6 = X4();
    var r7 = X4();
    var r8 = X4();
    var r9 = X4();
    var r10 = X4();
    var r11 = X4();
    var r12 = X4();
    var r13 = X4();
    var r14 = X4();
    var r15 = X4();
    var ai = p.a_off;
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K; k++) {
        let b = X4(tn1_b[bi + c.x], tn1_b[bi + c.y], tn1_b[bi + c.z], tn1_b[bi + c.w]);
        r0 = axpy(r0, tn1_a[ai + a0], b);
        r1 = axpy(r1, tn1_a[ai + a1], b);
        r2 = axpy(r2, tn1_a[ai + a2], b);
        r3 = axpy(r3, tn1_a[ai + a3], b);
        r4 = axpy(r4, tn1_a[ai + a4], b);
        r5 = axpy(r5, tn1_a[ai + a5], b);
        r6 = axpy(r6, tn1_a[ai + a6], b);
        r7 = axpy(r7, tn1_a[ai + a7], b);
        r8 = axpy(r8, tn1_a[ai + a8], b);
        r9 = axpy(r9, tn1_a[ai + a9], b);
        r10 = axpy(r10, tn1_a[ai + a10], b);
        r11 = axpy(r11, tn1_a[ai + a11], b);
        r12 = axpy(r12, tn1_a[ai + a12], b);
        r13 = axpy(r13, tn1_a[ai + a13], b);
        r14 = axpy(r14, tn1_a[ai + a14], b);
        r15 = axpy(r15, tn1_a[ai + a15], b);
        ai += p.a_cs;
        bi += ldb;
    }
    tn1_put(m0 + 0u, q0, r0);
    tn1_put(m0 + 1u, q0, r1);
    tn1_put(m0 + 2u, q0, r2);
    tn1_put(m0 + 3u, q0, r3);
    tn1_put(m0 + 4u, q0, r4);
    tn1_put(m0 + 5u, q0, r5);
    tn1_put(m0 + 6u, q0, r6);
    tn1_put(m0 + 7u, q0, r7);
    tn1_put(m0 + 8u, q0, r8);
    tn1_put(m0 + 9u, q0, r9);
    tn1_put(m0 + 10u, q0, r10);
    tn1_put(m0 + 11u, q0, r11);
    tn1_put(m0 + 12u, q0, r12);
    tn1_put(m0 + 13u, q0, r13);
    tn1_put(m0 + 14u, q0, r14);
    tn1_put(m0 + 15u, q0, r15);
}

// VM: C[M,N] = A[M,K] · B[K,N] for a single row of A (a decode step's M = 1), N % 4 == 0. The
// tile kernels would leave 15 of their 16 rows idle and give a 768-wide product only a few dozen
// invocations; here each invocation makes one vec4 of C, walking down a column vec4 of B (the
// row of B is read by neighbouring invocations together). Same fma order over k as NN.
@group(0) @binding(27) var<storage, read_write> vm_c: array<vec4<f32>>;
@group(0) @binding(28) var<storage, read> vm_a: array<f32>;
@group(0) @binding(29) var<storage, read> vm_b: array<vec4<f32>>;
@group(0) @binding(30) var<storage, read> vm_bias: array<vec4<f32>>;

@compute @workgroup_size(64)
fn vm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
      @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    let nq = p.N / 4u;
    if i >= p.M * nq {
        return;
    }
    let m = i / nq;
    let q = i % nq;
    let ldb = p.b_rs / 4u;
    let a0 = p.a_off + m * p.a_rs;
    var bi = p.b_off / 4u + q;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < p.K; k++) {
        acc = fma(vec4(vm_a[a0 + k]), vm_b[bi], acc);
        bi += ldb;
    }
    if (p.flags & 1u) != 0u {
        acc += vm_bias[q];
    }
    if (p.flags & 2u) != 0u {
        acc += vm_c[i];
    }
    vm_c[i] = acc;
}

// VMT: C[M,N] = A[M,K] · B[N,K]ᵀ for a single row of A (a decode step's lm_head), K % 4 == 0:
// one invocation per element of C, a vec4 dot product along k in NT's order.
@group(0) @binding(31) var<storage, read_write> vmt_c: array<f32>;
@group(0) @binding(32) var<storage, read> vmt_a: array<vec4<f32>>;
@group(0) @binding(33) var<storage, read> vmt_b: array<vec4<f32>>;
@group(0) @binding(34) var<storage, read> vmt_bias: array<f32>;

@compute @workgroup_size(64)
fn vmt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if i >= p.M * p.N {
        return;
    }
    let m = i / p.N;
    let n = i % p.N;
    let a0 = (p.a_off + m * p.a_rs) / 4u;
    let b0 = (p.b_off + n * p.b_cs) / 4u;
    var acc = 0.0;
    for (var k = 0u; k < p.K / 4u; k++) {
        acc = dot4(vmt_a[a0 + k], vmt_b[b0 + k], acc);
    }
    if (p.flags & 1u) != 0u {
        acc += vmt_bias[n];
    }
    let o = p.c_off + m * p.ldc + n;
    if (p.flags & 2u) != 0u {
        acc += vmt_c[o];
    }
    vmt_c[o] = acc;
}
