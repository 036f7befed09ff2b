// Matrix products for adapters whose subgroups are exactly 8 invocations wide (lavapipe): the
// NN, NT and TN products of matmul.wgsl, with the operand that is the same for the subgroup's 8
// lanes read once and shared by subgroupBroadcast. This file is compiled after matmul.wgsl: each
// kernel binds the tensors of its twin there (nn, nt, tn) and stores through its helpers. On
// lavapipe every storage load is a loop over the 8 SIMD lanes while a broadcast is one register
// shuffle: the vec4 kernels of matmul.wgsl have all 8 lanes load the same A values, these load
// each value once, ~2.7x fewer loads per FMA, and run ~2x faster (BENCHMARKS.md). Each subgroup
// (8 lanes, one y of the 8 x 4 workgroup) computes a 32 x 64 tile of C: the 32 rows are shared,
// each lane has 8 columns (two vec4s) and 32 x 8 accumulators (r0..r31). Lanes never return alone
// (the others read their broadcasts): columns past N are clamped on load and skipped on store;
// only whole subgroups past M return.
// Every output is the same in-order fma chain over k as in matmul.wgsl.

const SG_ROWS: u32 = 32u;

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

// The first row of this subgroup's tile.
fn sg_m0(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * 4u + lid.y) * SG_ROWS;
}

// For NN and NT (A[M,K] read as vec4 along K): the vec4 index of the rows lane l reads, m0 + l,
// m0 + l + 8, m0 + l + 16 and m0 + l + 24, clamped into [0, M).
fn sg_a_rows(m0: u32, lane: u32) -> vec4<u32> {
    let rows = min(m0 + lane + vec4(0u, 8u, 16u, 24u), vec4(p.M - 1u));
    return p.a_off / 4u + rows * (p.a_rs / 4u);
}

// NN: C[M,N] = A[M,K] · B[K,N], N % 4 == 0 and K % 4 == 0. Lane l reads the k4 slices of rows
// m0 + l, m0 + l + 8, ... of A; row i's slice is then broadcast from lane i % 8.
//
// C[m, 4q .. 4q + 7] = r (+ bias) (+ C), for the vec4 columns that exist.
fn snn_put(m: u32, q: u32, r: X2) {
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
}

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

    var r0 = X2();
    var r1 = X2();
    var r2 = X2();
    var r3 = X2();
    var r4 = X2();
    var r5 = X2();
    var r6 = X2();
    var r7 = X2();
    var r8 = X2();
    var r9 = X2();
    var r10 = X2();
    var r11 = X2();
    var r12 = X2();
    var r13 = X2();
    var r14 = X2();
    var r15 = X2();
    var r16 = X2();
    var r17 = X2();
    var r18 = X2();
    var r19 = X2();
    var r20 = X2();
    var r21 = X2();
    var r22 = X2();
    var r23 = X2();
    var r24 = X2();
    var r25 = X2();
    var r26 = X2();
    var r27 = X2();
    var r28 = X2();
    var r29 = X2();
    var r30 = X2();
    var r31 = X2();
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K / 4u; k++) {
        let b0 = X2(nn_b[bi + c0], nn_b[bi + c1]);
        let b1 = X2(nn_b[bi + ldb + c0], nn_b[bi + ldb + c1]);
        let b2 = X2(nn_b[bi + 2u * ldb + c0], nn_b[bi + 2u * ldb + c1]);
        let b3 = X2(nn_b[bi + 3u * ldb + c0], nn_b[bi + 3u * ldb + c1]);
        bi += 4u * ldb;
        let a0 = nn_a[ar[0] + k];
        let a1 = nn_a[ar[1] + k];
        let a2 = nn_a[ar[2] + k];
        let a3 = nn_a[ar[3] + k];
        r0 = axpy2x4(r0, subgroupBroadcast(a0, 0u), b0, b1, b2, b3);
        r1 = axpy2x4(r1, subgroupBroadcast(a0, 1u), b0, b1, b2, b3);
        r2 = axpy2x4(r2, subgroupBroadcast(a0, 2u), b0, b1, b2, b3);
        r3 = axpy2x4(r3, subgroupBroadcast(a0, 3u), b0, b1, b2, b3);
        r4 = axpy2x4(r4, subgroupBroadcast(a0, 4u), b0, b1, b2, b3);
        r5 = axpy2x4(r5, subgroupBroadcast(a0, 5u), b0, b1, b2, b3);
        r6 = axpy2x4(r6, subgroupBroadcast(a0, 6u), b0, b1, b2, b3);
        r7 = axpy2x4(r7, subgroupBroadcast(a0, 7u), b0, b1, b2, b3);
        r8 = axpy2x4(r8, subgroupBroadcast(a1, 0u), b0, b1, b2, b3);
        r9 = axpy2x4(r9, subgroupBroadcast(a1, 1u), b0, b1, b2, b3);
        r10 = axpy2x4(r10, subgroupBroadcast(a1, 2u), b0, b1, b2, b3);
        r11 = axpy2x4(r11, subgroupBroadcast(a1, 3u), b0, b1, b2, b3);
        r12 = axpy2x4(r12, subgroupBroadcast(a1, 4u), b0, b1, b2, b3);
        r13 = axpy2x4(r13, subgroupBroadcast(a1, 5u), b0, b1, b2, b3);
        r14 = axpy2x4(r14, subgroupBroadcast(a1, 6u), b0, b1, b2, b3);
        r15 = axpy2x4(r15, subgroupBroadcast(a1, 7u), b0, b1, b2, b3);
        r16 = axpy2x4(r16, subgroupBroadcast(a2, 0u), b0, b1, b2, b3);
        r17 = axpy2x4(r17, subgroupBroadcast(a2, 1u), b0, b1, b2, b3);
        r18 = axpy2x4(r18, subgroupBroadcast(a2, 2u), b0, b1, b2, b3);
        r19 = axpy2x4(r19, subgroupBroadcast(a2, 3u), b0, b1, b2, b3);
        r20 = axpy2x4(r20, subgroupBroadcast(a2, 4u), b0, b1, b2, b3);
        r21 = axpy2x4(r21, subgroupBroadcast(a2, 5u), b0, b1, b2, b3);
        r22 = axpy2x4(r22, subgroupBroadcast(a2, 6u), b0, b1, b2, b3);
        r23 = axpy2x4(r23, subgroupBroadcast(a2, 7u), b0, b1, b2, b3);
        r24 = axpy2x4(r24, subgroupBroadcast(a3, 0u), b0, b1, b2, b3);
        r25 = axpy2x4(r25, subgroupBroadcast(a3, 1u), b0, b1, b2, b3);
        r26 = axpy2x4(r26, subgroupBroadcast(a3, 2u), b0, b1, b2, b3);
        r27 = axpy2x4(r27, subgroupBroadcast(a3, 3u), b0, b1, b2, b3);
        r28 = axpy2x4(r28, subgroupBroadcast(a3, 4u), b0, b1, b2, b3);
        r29 = axpy2x4(r29, subgroupBroadcast(a3, 5u), b0, b1, b2, b3);
        r30 = axpy2x4(r30, subgroupBroadcast(a3, 6u), b0, b1, b2, b3);
        r31 = axpy2x4(r31, subgroupBroadcast(a3, 7u), b0, b1, b2, b3);
    }
    snn_put(m0 + 0u, q, r0);
    snn_put(m0 + 1u, q, r1);
    snn_put(m0 + 2u, q, r2);
    snn_put(m0 + 3u, q, r3);
    snn_put(m0 + 4u, q, r4);
    snn_put(m0 + 5u, q, r5);
    snn_put(m0 + 6u, q, r6);
    snn_put(m0 + 7u, q, r7);
    snn_put(m0 + 8u, q, r8);
    snn_put(m0 + 9u, q, r9);
    snn_put(m0 + 10u, q, r10);
    snn_put(m0 + 11u, q, r11);
    snn_put(m0 + 12u, q, r12);
    snn_put(m0 + 13u, q, r13);
    snn_put(m0 + 14u, q, r14);
    snn_put(m0 + 15u, q, r15);
    snn_put(m0 + 16u, q, r16);
    snn_put(m0 + 17u, q, r17);
    snn_put(m0 + 18u, q, r18);
    snn_put(m0 + 19u, q, r19);
    snn_put(m0 + 20u, q, r20);
    snn_put(m0 + 21u, q, r21);
    snn_put(m0 + 22u, q, r22);
    snn_put(m0 + 23u, q, r23);
    snn_put(m0 + 24u, q, r24);
    snn_put(m0 + 25u, q, r25);
    snn_put(m0 + 26u, q, r26);
    snn_put(m0 + 27u, q, r27);
    snn_put(m0 + 28u, q, r28);
    snn_put(m0 + 29u, q, r29);
    snn_put(m0 + 30u, q, r30);
    snn_put(m0 + 31u, q, r31);
}

// NT: C[M,N] = A[M,K] · B[N,K]ᵀ, K % 4 == 0, any N (C and bias as scalars); C[m, n] is
// c[c_off + m * ldc + n]. A is shared as in NN; each lane reads the k4 slices of its 8 columns.

// C[m, n .. n + 7] = r (+ bias) (+ C), for the columns that exist.
fn snt_put(m: u32, n: u32, r: X2) {
    if m >= p.M {
        return;
    }
    let row = p.c_off + m * p.ldc;
    nt_put4(row, n, r.v0);
    nt_put4(row, n + 4u, r.v1);
}

// Four k steps for one row's 8 columns: lo and hi hold the k4 slices of columns 0-3 and 4-7.
fn sdots(r: X2, a: vec4<f32>, lo: X4, hi: X4) -> X2 {
    return X2(dots(r.v0, a, lo), dots(r.v1, a, hi));
}

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

    var r0 = X2();
    var r1 = X2();
    var r2 = X2();
    var r3 = X2();
    var r4 = X2();
    var r5 = X2();
    var r6 = X2();
    var r7 = X2();
    var r8 = X2();
    var r9 = X2();
    var r10 = X2();
    var r11 = X2();
    var r12 = X2();
    var r13 = X2();
    var r14 = X2();
    var r15 = X2();
    var r16 = X2();
    var r17 = X2();
    var r18 = X2();
    var r19 = X2();
    var r20 = X2();
    var r21 = X2();
    var r22 = X2();
    var r23 = X2();
    var r24 = X2();
    var r25 = X2();
    var r26 = X2();
    var r27 = X2();
    var r28 = X2();
    var r29 = X2();
    var r30 = X2();
    var r31 = X2();
    for (var k = 0u; k < p.K / 4u; k++) {
        let lo = X4(nt_b[blo.x + k], nt_b[blo.y + k], nt_b[blo.z + k], nt_b[blo.w + k]);
        let hi = X4(nt_b[bhi.x + k], nt_b[bhi.y + k], nt_b[bhi.z + k], nt_b[bhi.w + k]);
        let a0 = nt_a[ar[0] + k];
        let a1 = nt_a[ar[1] + k];
        let a2 = nt_a[ar[2] + k];
        let a3 = nt_a[ar[3] + k];
        r0 = sdots(r0, subgroupBroadcast(a0, 0u), lo, hi);
        r1 = sdots(r1, subgroupBroadcast(a0, 1u), lo, hi);
        r2 = sdots(r2, subgroupBroadcast(a0, 2u), lo, hi);
        r3 = sdots(r3, subgroupBroadcast(a0, 3u), lo, hi);
        r4 = sdots(r4, subgroupBroadcast(a0, 4u), lo, hi);
        r5 = sdots(r5, subgroupBroadcast(a0, 5u), lo, hi);
        r6 = sdots(r6, subgroupBroadcast(a0, 6u), lo, hi);
        r7 = sdots(r7, subgroupBroadcast(a0, 7u), lo, hi);
        r8 = sdots(r8, subgroupBroadcast(a1, 0u), lo, hi);
        r9 = sdots(r9, subgroupBroadcast(a1, 1u), lo, hi);
        r10 = sdots(r10, subgroupBroadcast(a1, 2u), lo, hi);
        r11 = sdots(r11, subgroupBroadcast(a1, 3u), lo, hi);
        r12 = sdots(r12, subgroupBroadcast(a1, 4u), lo, hi);
        r13 = sdots(r13, subgroupBroadcast(a1, 5u), lo, hi);
        r14 = sdots(r14, subgroupBroadcast(a1, 6u), lo, hi);
        r15 = sdots(r15, subgroupBroadcast(a1, 7u), lo, hi);
        r16 = sdots(r16, subgroupBroadcast(a2, 0u), lo, hi);
        r17 = sdots(r17, subgroupBroadcast(a2, 1u), lo, hi);
        r18 = sdots(r18, subgroupBroadcast(a2, 2u), lo, hi);
        r19 = sdots(r19, subgroupBroadcast(a2, 3u), lo, hi);
        r20 = sdots(r20, subgroupBroadcast(a2, 4u), lo, hi);
        r21 = sdots(r21, subgroupBroadcast(a2, 5u), lo, hi);
        r22 = sdots(r22, subgroupBroadcast(a2, 6u), lo, hi);
        r23 = sdots(r23, subgroupBroadcast(a2, 7u), lo, hi);
        r24 = sdots(r24, subgroupBroadcast(a3, 0u), lo, hi);
        r25 = sdots(r25, subgroupBroadcast(a3, 1u), lo, hi);
        r26 = sdots(r26, subgroupBroadcast(a3, 2u), lo, hi);
        r27 = sdots(r27, subgroupBroadcast(a3, 3u), lo, hi);
        r28 = sdots(r28, subgroupBroadcast(a3, 4u), lo, hi);
        r29 = sdots(r29, subgroupBroadcast(a3, 5u), lo, hi);
        r30 = sdots(r30, subgroupBroadcast(a3, 6u), lo, hi);
        r31 = sdots(r31, subgroupBroadcast(a3, 7u), lo, hi);
    }
    snt_put(m0 + 0u, n0, r0);
    snt_put(m0 + 1u, n0, r1);
    snt_put(m0 + 2u, n0, r2);
    snt_put(m0 + 3u, n0, r3);
    snt_put(m0 + 4u, n0, r4);
    snt_put(m0 + 5u, n0, r5);
    snt_put(m0 + 6u, n0, r6);
    snt_put(m0 + 7u, n0, r7);
    snt_put(m0 + 8u, n0, r8);
    snt_put(m0 + 9u, n0, r9);
    snt_put(m0 + 10u, n0, r10);
    snt_put(m0 + 11u, n0, r11);
    snt_put(m0 + 12u, n0, r12);
    snt_put(m0 + 13u, n0, r13);
    snt_put(m0 + 14u, n0, r14);
    snt_put(m0 + 15u, n0, r15);
    snt_put(m0 + 16u, n0, r16);
    snt_put(m0 + 17u, n0, r17);
    snt_put(m0 + 18u, n0, r18);
    snt_put(m0 + 19u, n0, r19);
    snt_put(m0 + 20u, n0, r20);
    snt_put(m0 + 21u, n0, r21);
    snt_put(m0 + 22u, n0, r22);
    snt_put(m0 + 23u, n0, r23);
    snt_put(m0 + 24u, n0, r24);
    snt_put(m0 + 25u, n0, r25);
    snt_put(m0 + 26u, n0, r26);
    snt_put(m0 + 27u, n0, r27);
    snt_put(m0 + 28u, n0, r28);
    snt_put(m0 + 29u, n0, r29);
    snt_put(m0 + 30u, n0, r30);
    snt_put(m0 + 31u, n0, r31);
}

// TN: C[M,N] = A[K,M]ᵀ · B[K,N], M % 4 == 0 and N % 4 == 0. Per k, lane l reads A[k, m0 + 4l ..
// m0 + 4l + 3] (a vec4 along M); row i's value is component i % 4 of lane i / 4's vec4.

// C[m, 4q .. 4q + 7] = r (+ bias) (+ C), for the vec4 columns that exist.
fn stn_put(m: u32, q: u32, r: X2) {
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
}

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

    var r0 = X2();
    var r1 = X2();
    var r2 = X2();
    var r3 = X2();
    var r4 = X2();
    var r5 = X2();
    var r6 = X2();
    var r7 = X2();
    var r8 = X2();
    var r9 = X2();
    var r10 = X2();
    var r11 = X2();
    var r12 = X2();
    var r13 = X2();
    var r14 = X2();
    var r15 = X2();
    var r16 = X2();
    var r17 = X2();
    var r18 = X2();
    var r19 = X2();
    var r20 = X2();
    var r21 = X2();
    var r22 = X2();
    var r23 = X2();
    var r24 = X2();
    var r25 = X2();
    var r26 = X2();
    var r27 = X2();
    var r28 = X2();
    var r29 = X2();
    var r30 = X2();
    var r31 = X2();
    var ai = p.a_off / 4u + am;
    var bi = p.b_off / 4u;
    for (var k = 0u; k < p.K; k++) {
        let b = X2(tn_b[bi + c0], tn_b[bi + c1]);
        let a = tn_a[ai];
        ai += lda;
        bi += ldb;
        let a0 = subgroupBroadcast(a, 0u);
        let a1 = subgroupBroadcast(a, 1u);
        let a2 = subgroupBroadcast(a, 2u);
        let a3 = subgroupBroadcast(a, 3u);
        let a4 = subgroupBroadcast(a, 4u);
        let a5 = subgroupBroadcast(a, 5u);
        let a6 = subgroupBroadcast(a, 6u);
        let a7 = subgroupBroadcast(a, 7u);
        r0 = axpy2(r0, a0.x, b);
        r1 = axpy2(r1, a0.y, b);
        r2 = axpy2(r2, a0.z, b);
        r3 = axpy2(r3, a0.w, b);
        r4 = axpy2(r4, a1.x, b);
        r5 = axpy2(r5, a1.y, b);
        r6 = axpy2(r6, a1.z, b);
        r7 = axpy2(r7, a1.w, b);
        r8 = axpy2(r8, a2.x, b);
        r9 = axpy2(r9, a2.y, b);
        r10 = axpy2(r10, a2.z, b);
        r11 = axpy2(r11, a2.w, b);
        r12 = axpy2(r12, a3.x, b);
        r13 = axpy2(r13, a3.y, b);
        r14 = axpy2(r14, a3.z, b);
        r15 = axpy2(r15, a3.w, b);
        r16 = axpy2(r16, a4.x, b);
        r17 = axpy2(r17, a4.y, b);
        r18 = axpy2(r18, a4.z, b);
        r19 = axpy2(r19, a4.w, b);
        r20 = axpy2(r20, a5.x, b);
        r21 = axpy2(r21, a5.y, b);
        r22 = axpy2(r22, a5.z, b);
        r23 = axpy2(r23, a5.w, b);
        r24 = axpy2(r24, a6.x, b);
        r25 = axpy2(r25, a6.y, b);
        r26 = axpy2(r26, a6.z, b);
        r27 = axpy2(r27, a6.w, b);
        r28 = axpy2(r28, a7.x, b);
        r29 = axpy2(r29, a7.y, b);
        r30 = axpy2(r30, a7.z, b);
        r31 = axpy2(r31, a7.w, b);
    }
    stn_put(m0 + 0u, q, r0);
    stn_put(m0 + 1u, q, r1);
    stn_put(m0 + 2u, q, r2);
    stn_put(m0 + 3u, q, r3);
    stn_put(m0 + 4u, q, r4);
    stn_put(m0 + 5u, q, r5);
    stn_put(m0 + 6u, q, r6);
    stn_put(m0 + 7u, q, r7);
    stn_put(m0 + 8u, q, r8);
    stn_put(m0 + 9u, q, r9);
    stn_put(m0 + 10u, q, r10);
    stn_put(m0 + 11u, q, r11);
    stn_put(m0 + 12u, q, r12);
    stn_put(m0 + 13u, q, r13);
    stn_put(m0 + 14u, q, r14);
    stn_put(m0 + 15u, q, r15);
    stn_put(m0 + 16u, q, r16);
    stn_put(m0 + 17u, q, r17);
    stn_put(m0 + 18u, q, r18);
    stn_put(m0 + 19u, q, r19);
    stn_put(m0 + 20u, q, r20);
    stn_put(m0 + 21u, q, r21);
    stn_put(m0 + 22u, q, r22);
    stn_put(m0 + 23u, q, r23);
    stn_put(m0 + 24u, q, r24);
    stn_put(m0 + 25u, q, r25);
    stn_put(m0 + 26u, q, r26);
    stn_put(m0 + 27u, q, r27);
    stn_put(m0 + 28u, q, r28);
    stn_put(m0 + 29u, q, r29);
    stn_put(m0 + 30u, q, r30);
    stn_put(m0 + 31u, q, r31);
}
