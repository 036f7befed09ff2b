// Matrix products for adapters whose subgroups are exactly 8 invocations wide (lavapipe): the
// NN, NT and TN products of matmul.wgsl (whose header starts each of these modules), with the
// operand that is the same for the subgroup's 8 lanes read once and shared by subgroupBroadcast.
// On lavapipe every storage load is a loop over the 8 SIMD lanes while a broadcast is one
// register shuffle: the vec4 kernels of matmul.wgsl have all 8 lanes load the same A values,
// these load each value once, ~2.7x fewer loads per FMA, and run ~2x faster (BENCHMARKS.md). Each
// subgroup (8 lanes, one y of the 8 x 4 workgroup) computes a 32 x 64 tile of C: the 32 rows are
// shared, each lane has 8 columns (two vec4s) and 32 x 8 accumulators (r0..r31). Lanes never
// return alone (the others read their broadcasts): columns past N are clamped on load and skipped
// on store; only whole subgroups past M return.
// Every output is the same in-order fma chain over k as in matmul.wgsl.

// Eight consecutive floats: one lane's 8 columns of a row of C or B.
struct X2 {
    v0: vec4<f32>,
    v1: vec4<f32>,
}

// r + a · b, element-wise.
fn axpy2(r: X2, a: f32, b: X2) -> X2 {
    return X2(fma(vec4(a), b.v0, r.v0), fma(vec4(a), b.v1, r.v1));
}

// Four k steps: r + a.x · b0 + a.y · b1 + a.z · b2 + a.w · b3, in that order.
fn axpy2x4(r: X2, a: vec4<f32>, b0: X2, b1: X2, b2: X2, b3: X2) -> X2 {
    return axpy2(axpy2(axpy2(axpy2(r, a.x, b0), a.y, b1), a.z, b2), a.w, b3);
}

// Four k steps for one row's 8 columns: lo and hi hold the k4 slices of columns 0-3 and 4-7.
fn sdots(r: X2, a: vec4<f32>, lo: X4, hi: X4) -> X2 {
    return X2(dots(r.v0, a, lo), dots(r.v1, a, hi));
}

// The first row of this subgroup's tile of 32 rows.
fn sg_m0(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * 4u + lid.y) * 32u;
}

// For NN and NT (A[M,K] read as vec4 along K): the vec4 index of the rows lane l reads, m0 + l,
// m0 + l + 8, m0 + l + 16 and m0 + l + 24, clamped into [0, M).
fn sg_a_rows(m0: u32, lane: u32) -> vec4<u32> {
    let rows = min(m0 + lane + vec4(0u, 8u, 16u, 24u), vec4(p.M - 1u));
    return p.a_off / 4u + rows * (p.a_rs / 4u);
}

//#entry snn
//#use @store4
// NN: C[M,N] = A[M,K] · B[K,N], N % 4 == 0 and K % 4 == 0. Lane l reads the k4 slices of rows
// m0 + l, m0 + l + 8, ... of A; row i's slice is then broadcast from lane i % 8.
@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

@compute @workgroup_size(8, 4)
fn snn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = sg_m0(wid, lid);
    if m0 >= p.M {
        return; // the whole subgroup
    }
    let nq = p.N / 4u;
    let q = (wid.x * 8u + lid.x) * 2u;
    let c0 = min(q, nq - 1u);
    let c1 = min(q + 1u, nq - 1u);
    let ldb = p.b_rs / 4u;
    let ar = sg_a_rows(m0, lid.x);
//#for i in 0..32
    var r$i = X2();
//#end
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K / 4u; k++) {
//#for s in 0..4
        let b$s = X2(vec4<f32>(b[bi + ${s}u * ldb + c0]), vec4<f32>(b[bi + ${s}u * ldb + c1]));
//#end
        bi += 4u * ldb;
//#for s in 0..4
        let a$s = a[ar[$s] + k];
//#end
//#for i in 0..32
        r$i = axpy2x4(r$i, subgroupBroadcast(a${i / 8}, ${i % 8}u), b0, b1, b2, b3);
//#end
    }
//#for i in 0..32
    put4(m0 + ${i}u, q, r$i.v0);
    put4(m0 + ${i}u, q + 1u, r$i.v1);
//#end
}

//#entry snt
//#use @store1
// NT: C[M,N] = A[M,K] · B[N,K]ᵀ, K % 4 == 0, any N (C and bias as scalars); C[m, n] is
// c[c_off + m * ldc + n]. A is shared as in NN; each lane reads the k4 slices of its 8 columns.
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

@compute @workgroup_size(8, 4)
fn snt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = sg_m0(wid, lid);
    if m0 >= p.M {
        return; // the whole subgroup
    }
    let n0 = (wid.x * 8u + lid.x) * 8u;
    let ldb = p.b_cs / 4u;
    let last = vec4(p.N - 1u);
    let j = vec4(n0, n0 + 1u, n0 + 2u, n0 + 3u);
    let bo = vec4(p.b_off / 4u);
    let blo = bo + min(j, last) * ldb;
    let bhi = bo + min(j + 4u, last) * ldb;
    let ar = sg_a_rows(m0, lid.x);
//#for i in 0..32
    var r$i = X2();
//#end
    for (var k = 0u; k < p.K / 4u; k++) {
        let lo = X4(vec4<f32>(b[blo.x + k]), vec4<f32>(b[blo.y + k]), vec4<f32>(b[blo.z + k]),
                     vec4<f32>(b[blo.w + k]));
        let hi = X4(vec4<f32>(b[bhi.x + k]), vec4<f32>(b[bhi.y + k]), vec4<f32>(b[bhi.z + k]),
                     vec4<f32>(b[bhi.w + k]));
//#for s in 0..4
        let a$s = a[ar[$s] + k];
//#end
//#for i in 0..32
        r$i = sdots(r$i, subgroupBroadcast(a${i / 8}, ${i % 8}u), lo, hi);
//#end
    }
//#for i in 0..32
    put1x4(m0 + ${i}u, n0, r$i.v0);
    put1x4(m0 + ${i}u, n0 + 4u, r$i.v1);
//#end
}

//#entry stn
//#use @store4
// TN: C[M,N] = A[K,M]ᵀ · B[K,N], M % 4 == 0 and N % 4 == 0. Per k, lane l reads A[k, m0 + 4l ..
// m0 + 4l + 3] (a vec4 along M); row i's value is component i % 4 of lane i / 4's vec4.
@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

@compute @workgroup_size(8, 4)
fn stn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = sg_m0(wid, lid);
    if m0 >= p.M {
        return; // the whole subgroup
    }
    let nq = p.N / 4u;
    let q = (wid.x * 8u + lid.x) * 2u;
    let c0 = min(q, nq - 1u);
    let c1 = min(q + 1u, nq - 1u);
    let lda = p.a_cs / 4u;
    let ldb = p.b_rs / 4u;
    let am = min(m0 / 4u + lid.x, p.M / 4u - 1u);
//#for i in 0..32
    var r$i = X2();
//#end
    var ai = p.a_off / 4u + am;
    var bi = p.b_off / 4u;
    // four k per loop iteration (fewer iterations; the same fma order)
    for (var k0 = 0u; k0 < p.K; k0 += 4u) {
//#for u in 0..4
        if k0 + ${u}u < p.K {
            let bk = X2(b[bi + c0], b[bi + c1]);
            let ak = a[ai];
            ai += lda;
            bi += ldb;
//#for s in 0..8
            let a$s = subgroupBroadcast(ak, ${s}u);
//#end
//#for i in 0..32
            r$i = axpy2(r$i, a${i / 4}[${i % 4}], bk);
//#end
        }
//#end
    }
//#for i in 0..32
    put4(m0 + ${i}u, q, r$i.v0);
    put4(m0 + ${i}u, q + 1u, r$i.v1);
//#end
}

//#entry svm
//#use @store4
// VM (matmul.wgsl) for a single row of A with 8-wide subgroups: the row's values, the same for
// all lanes, are loaded once per 8 k (lane l loads k0 + l) and broadcast; each lane still walks
// its own vec4 column of B in VM's fma order.
@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

@compute @workgroup_size(64)
fn svm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    let lane = lid % 8u;
    let nq = p.N / 4u;
    if i - lane >= nq {
        return; // the whole subgroup
    }
    let q = min(i, nq - 1u);
    let ldb = p.b_rs / 4u;
    var bi = p.b_off / 4u + q;
    var acc = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.K; k0 += 8u) {
        let av = a[p.a_off + min(k0 + lane, p.K - 1u)];
//#for s in 0..8
        let a$s = subgroupBroadcast(av, ${s}u);
//#end
//#for s in 0..8
        if k0 + ${s}u < p.K {
            acc = fma(vec4(a$s), vec4<f32>(b[bi]), acc);
            bi += ldb;
        }
//#end
    }
    if i < nq {
        put4(0u, q, acc);
    }
}

//#entry svmt
//#use @store1
// VMT (matmul.wgsl) for a single row of A with 8-wide subgroups: A's vec4s are loaded once per
// 8 (lane l loads k4 + l) and broadcast; each lane's dot product keeps VMT's order.
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

@compute @workgroup_size(64)
fn svmt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    let lane = lid % 8u;
    if i - lane >= p.N {
        return; // the whole subgroup
    }
    let n = min(i, p.N - 1u);
    let k4 = p.K / 4u;
    let a0 = p.a_off / 4u;
    let b0 = (p.b_off + n * p.b_cs) / 4u;
    var acc = 0.0;
    for (var j0 = 0u; j0 < k4; j0 += 8u) {
        let av = a[a0 + min(j0 + lane, k4 - 1u)];
//#for s in 0..8
        let a$s = subgroupBroadcast(av, ${s}u);
//#end
//#for s in 0..8
        if j0 + ${s}u < k4 {
            acc = dot4(a$s, vec4<f32>(b[b0 + j0 + ${s}u]), acc);
        }
//#end
    }
    if i < p.N {
        put1(0u, n, acc);
    }
}
