// Matrix product with optional bias and accumulation: C[M,N] (+)= A[M,K] · B[K,N] (+ bias[N]).
// The transposed operands that GPT-2 needs (lm_head's wteᵀ, backward's Wᵀ and Xᵀ) are used in
// place without copies. HF's Conv1D stores its weight [in, out], which is B as is. `forward` reads
// A and B through row/column strides and takes any shape; the vec4 kernels take the three layouts
// GPT-2 uses (NN, NT, TN) when the shapes allow vec4 access. This file holds the portable
// kernels; matmul_subgroup.wgsl and matmul_tiled.wgsl hold the other families' NN, NT and TN
// (their modules start with this file's header). Every output of every kernel is one fma chain
// over k in order, then + bias, then + C: all kernels of all families sum in the same order, so
// they give bit-identical results and switching among them changes nothing.
//
// B's element type is the template variable BT: f32, or f16 for inference's f16 weights (NN, NT,
// VM, VMT of every family; ModuleSpec::f16 puts `enable f16;` first). B is widened to f32 as it
// is loaded, so A, the accumulation, bias and C stay f32, and for f32 the load is the identity.

struct Params {
    M: u32,
    N: u32,
    K: u32,
    a_rs: u32, // A[m, k] = a[a_off + m * a_rs + k * a_cs]
    a_cs: u32,
    b_rs: u32, // B[k, n] = b[b_off + k * b_rs + n * b_cs]
    b_cs: u32,
    flags: u32, // 1: add bias[n]; 2: accumulate into C (C += ...)
    a_off: u32, // element offsets of A and B: a K-chunk of a longer product, or a block of
    b_off: u32, // columns of a wider stored matrix (lm_head's backward over wte chunks), starts there
    // C[m, n] is c[c_off + m * ldc + n]: a column block of a wider C (lm_head over one row chunk
    // of wte, NT only), or a block of C's rows or an NT product's columns (a product cut into
    // several dispatches, each with M or N and the offsets moved to its first row or column:
    // Blocks in src/kernels/matmul.rs); elsewhere 0 and N
    c_off: u32,
    ldc: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- vec4 register-tile kernels, one per operand layout, instantiated per ROWS ----
//
// One invocation computes a ROWS x 16 tile of C: ROWS rows m0.., 16 columns (four vec4s), in a
// workgroup of 8 x 4 (x over columns, y over rows). The accumulators are plain variables (r0..,
// one X4 per row), never dynamically indexed arrays: those would live in memory. No workgroup
// memory and no barriers: on lavapipe (Mesa 22.3) every storage load is a scalar loop over the 8
// SIMD lanes and a barrier is a coroutine switch, so the kernel does as many FMAs per loaded
// vec4 as possible and nothing else (16 rows there; fewer rows spill less on real GPUs). Rows
// past M and columns past N are clamped on load (valid addresses, the results are discarded) and
// skipped on store. The host splits K into chunks of at most 16384: a loop runs K / 4 (NN, NT) or
// K (TN, NN1, TN1) iterations, under lavapipe's 65535 per invocation.

// The tile's four vec4 columns (C and B[K,N] as arrays of vec4), clamped into [0, N / 4).
fn tile_cols(gid: vec3<u32>) -> vec4<u32> {
    let last = p.N / 4u - 1u;
    let q0 = gid.x * 4u;
    return min(vec4(q0, q0 + 1u, q0 + 2u, q0 + 3u), vec4(last));
}

//#entry @store4
// For kernels that write C and read bias as vec4s (N % 4 == 0, ldc = N, c_off a multiple of N:
// whole rows): C[m, 4q .. 4q + 3] = v (+ bias) (+ C) where row m and vec4 column q exist.
fn put4(m: u32, q: u32, v: vec4<f32>) {
    let nq = p.N / 4u;
    if m < p.M && q < nq {
        let o = p.c_off / 4u + m * nq + q;
        var x = v;
        if (p.flags & 1u) != 0u {
            x += bias[q];
        }
        if (p.flags & 2u) != 0u {
            x += c[o];
        }
        c[o] = x;
    }
}

// The 16 columns 4q .. 4q + 15 of row m.
fn put16(m: u32, q: u32, r: X4) {
    put4(m, q, r.v0);
    put4(m, q + 1u, r.v1);
    put4(m, q + 2u, r.v2);
    put4(m, q + 3u, r.v3);
}

//#entry @store1
// For kernels that write C and read bias as scalars (any N, and a column block of a wider C):
// C[m, n] = v (+ bias) (+ C) where row m and column n exist.
fn put1(m: u32, n: u32, v: f32) {
    if m < p.M && n < p.N {
        let o = p.c_off + m * p.ldc + n;
        var x = v;
        if (p.flags & 1u) != 0u {
            x += bias[n];
        }
        if (p.flags & 2u) != 0u {
            x += c[o];
        }
        c[o] = x;
    }
}

// Columns n .. n + 3 of row m.
fn put1x4(m: u32, n: u32, v: vec4<f32>) {
    put1(m, n, v.x);
    put1(m, n + 1u, v.y);
    put1(m, n + 2u, v.z);
    put1(m, n + 3u, v.w);
}

//#entry forward
//#use @store1
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
        for (var j = 0u; j < TN; j++) {
            put1(m0 + i, n0 + j, acc[i][j]);
        }
    }
}

//#entry bias_backward
// Backward of the bias: dbias[n] += Σ_m dout[m, n] over the M rows (M = p.M, N = p.N).
@group(0) @binding(1) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;

const COLS: u32 = 16u;
const LANES: u32 = 16u;
var<workgroup> red: array<f32, 256>; // COLS * LANES

// One 16x16 workgroup per 16 columns: x picks the column, y a lane that sums rows y, y+16, ...
// (≤ 4096 rows each for 65536 rows: lavapipe caps an invocation at 65535 loop iterations); then
// a tree reduction over the lanes in a fixed order, so the sums are deterministic.
@compute @workgroup_size(16, 16)
fn bias_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) l: vec3<u32>) {
    let n0 = flat_index(wid, nwg, 0u, COLS);
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

//#entry nn
//#use @store4
// NN: C[M,N] = A[M,K] · B[K,N], N % 4 == 0 and K % 4 == 0 (A read as vec4 along K).
@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

// The tile's 16 columns of the B row starting at vec4 i.
fn b_row(i: u32, cols: vec4<u32>) -> X4 {
    return X4(vec4<f32>(b[i + cols.x]), vec4<f32>(b[i + cols.y]), vec4<f32>(b[i + cols.z]), vec4<f32>(b[i + cols.w]));
}

@compute @workgroup_size(8, 4)
fn nn(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * ${ROWS}u;
    let q0 = gid.x * 4u;
    if m0 >= p.M || q0 * 4u >= p.N {
        return;
    }
    let cols = tile_cols(gid);
    let lda = p.a_rs / 4u;
    let ldb = p.b_rs / 4u;
//#for i in 0..ROWS
    let a$i = p.a_off / 4u + min(m0 + ${i}u, p.M - 1u) * lda;
    var r$i = X4();
//#end
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K / 4u; k++) {
        let b0 = b_row(bi, cols);
        let b1 = b_row(bi + ldb, cols);
        let b2 = b_row(bi + 2u * ldb, cols);
        let b3 = b_row(bi + 3u * ldb, cols);
        bi += 4u * ldb;
//#for i in 0..ROWS
        r$i = axpy4(r$i, a[a$i + k], b0, b1, b2, b3);
//#end
    }
//#for i in 0..ROWS
    put16(m0 + ${i}u, q0, r$i);
//#end
}

//#entry nn1
//#use @store4
// NN1: as NN for any K (A read as scalars).
@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

@compute @workgroup_size(8, 4)
fn nn1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * ${ROWS}u;
    let q0 = gid.x * 4u;
    if m0 >= p.M || q0 * 4u >= p.N {
        return;
    }
    let cols = tile_cols(gid);
    let ldb = p.b_rs / 4u;
//#for i in 0..ROWS
    let a$i = p.a_off + min(m0 + ${i}u, p.M - 1u) * p.a_rs;
    var r$i = X4();
//#end
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K; k++) {
        let bk = X4(b[bi + cols.x], b[bi + cols.y], b[bi + cols.z], b[bi + cols.w]);
        bi += ldb;
//#for i in 0..ROWS
        r$i = axpy(r$i, a[a$i + k], bk);
//#end
    }
//#for i in 0..ROWS
    put16(m0 + ${i}u, q0, r$i);
//#end
}

//#entry nt
//#use @store1
// NT: C[M,N] = A[M,K] · B[N,K]ᵀ, K % 4 == 0; any N (C and bias as scalars).
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// The k4 slices at k of B's rows (columns of C) i0 .. i3.
fn b4(i: vec4<u32>, k: u32) -> X4 {
    return X4(vec4<f32>(b[i.x + k]), vec4<f32>(b[i.y + k]), vec4<f32>(b[i.z + k]), vec4<f32>(b[i.w + k]));
}

// Four k steps for one row of the tile: b0..b3 hold the k4 slices of columns 0-3, ..., 12-15.
fn dots16(r: X4, a: vec4<f32>, b0: X4, b1: X4, b2: X4, b3: X4) -> X4 {
    return X4(dots(r.v0, a, b0), dots(r.v1, a, b1), dots(r.v2, a, b2), dots(r.v3, a, b3));
}

@compute @workgroup_size(8, 4)
fn nt(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * ${ROWS}u;
    let n0 = gid.x * 16u;
    if m0 >= p.M || n0 >= p.N {
        return;
    }
    let lda = p.a_rs / 4u;
    let ldb = p.b_cs / 4u;
    let last = vec4(p.N - 1u);
    let j = vec4(n0, n0 + 1u, n0 + 2u, n0 + 3u);
    let bo = vec4(p.b_off / 4u);
//#for q in 0..4
    let b${q}i = bo + min(j + ${4 * q}u, last) * ldb;
//#end
//#for i in 0..ROWS
    let a$i = p.a_off / 4u + min(m0 + ${i}u, p.M - 1u) * lda;
    var r$i = X4();
//#end
    for (var k = 0u; k < p.K / 4u; k++) {
//#for q in 0..4
        let b$q = b4(b${q}i, k);
//#end
//#for i in 0..ROWS
        r$i = dots16(r$i, a[a$i + k], b0, b1, b2, b3);
//#end
    }
//#for i in 0..ROWS
    put1x4(m0 + ${i}u, n0, r$i.v0);
    put1x4(m0 + ${i}u, n0 + 4u, r$i.v1);
    put1x4(m0 + ${i}u, n0 + 8u, r$i.v2);
    put1x4(m0 + ${i}u, n0 + 12u, r$i.v3);
//#end
}

//#entry tn
//#use @store4
// TN: C[M,N] = A[K,M]ᵀ · B[K,N], N % 4 == 0 and M % 4 == 0 (A read as vec4 along M).
@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

@compute @workgroup_size(8, 4)
fn tn(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * ${ROWS}u;
    let q0 = gid.x * 4u;
    if m0 >= p.M || q0 * 4u >= p.N {
        return;
    }
    let cols = tile_cols(gid);
    let lda = p.a_cs / 4u;
    let ldb = p.b_rs / 4u;
    let mlast = p.M / 4u - 1u;
//#for j in 0..ROWS / 4
    let a$j = min(m0 / 4u + ${j}u, mlast);
//#end
//#for i in 0..ROWS
    var r$i = X4();
//#end
    var ai = p.a_off / 4u;
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K; k++) {
        let bk = X4(b[bi + cols.x], b[bi + cols.y], b[bi + cols.z], b[bi + cols.w]);
//#for j in 0..ROWS / 4
        let x$j = a[ai + a$j];
//#end
        ai += lda;
        bi += ldb;
//#for i in 0..ROWS
        r$i = axpy(r$i, x${i / 4}[${i % 4}], bk);
//#end
    }
//#for i in 0..ROWS
    put16(m0 + ${i}u, q0, r$i);
//#end
}

//#entry tn1
//#use @store4
// TN1: as TN for any M (A read as scalars).
@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

@compute @workgroup_size(8, 4)
fn tn1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * ${ROWS}u;
    let q0 = gid.x * 4u;
    if m0 >= p.M || q0 * 4u >= p.N {
        return;
    }
    let cols = tile_cols(gid);
    let ldb = p.b_rs / 4u;
//#for i in 0..ROWS
    let a$i = min(m0 + ${i}u, p.M - 1u);
    var r$i = X4();
//#end
    var ai = p.a_off;
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K; k++) {
        let bk = X4(b[bi + cols.x], b[bi + cols.y], b[bi + cols.z], b[bi + cols.w]);
//#for i in 0..ROWS
        r$i = axpy(r$i, a[ai + a$i], bk);
//#end
        ai += p.a_cs;
        bi += ldb;
    }
//#for i in 0..ROWS
    put16(m0 + ${i}u, q0, r$i);
//#end
}

//#entry vm
//#use @store4
// VM: C[M,N] = A[M,K] · B[K,N] for a single row of A (a decode step's M = 1), N % 4 == 0. The
// tile kernels would leave most of their rows idle and give a 768-wide product only a few dozen
// invocations; here each invocation makes one vec4 of C, walking down a column vec4 of B (the
// row of B is read by neighbouring invocations together). Same fma order over k as NN.
@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

@compute @workgroup_size(64)
fn vm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
      @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
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
        acc = fma(vec4(a[a0 + k]), vec4<f32>(b[bi]), acc);
        bi += ldb;
    }
    put4(m, q, acc);
}

//#entry vmt
//#use @store1
// VMT: C[M,N] = A[M,K] · B[N,K]ᵀ for a single row of A (a decode step's lm_head), K % 4 == 0:
// one invocation per element of C, a vec4 dot product along k in NT's order.
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

@compute @workgroup_size(64)
fn vmt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i >= p.M * p.N {
        return;
    }
    let m = i / p.N;
    let n = i % p.N;
    let a0 = (p.a_off + m * p.a_rs) / 4u;
    let b0 = (p.b_off + n * p.b_cs) / 4u;
    var acc = 0.0;
    for (var k = 0u; k < p.K / 4u; k++) {
        acc = dot4(a[a0 + k], vec4<f32>(b[b0 + k]), acc);
    }
    put1(m, n, acc);
}

//#entry to_f16
// out[c_off + i] = f16(x[a_off + i]) for i < M: (a row chunk of) a weight's f16 copy for the
// f16-weight products (f16 modules only). One invocation per element.
@group(0) @binding(1) var<storage, read_write> out: array<f16>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(64)
fn to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if i < p.M {
        out[p.c_off + i] = f16(x[p.a_off + i]);
    }
}
