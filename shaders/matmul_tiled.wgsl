// Workgroup-tiled matrix products for GPUs with fast workgroup memory (every discrete and
// integrated GPU; not lavapipe, where a barrier is a coroutine switch): the NN, NT and TN products
// of matmul.wgsl (whose header starts each module), one entry point instantiated per layout and
// tile shape (src/kernels/matmul.rs lists the shapes). A workgroup of WGX x WGY invocations makes
// a BM x BN block of C (BM = WGY·TM, BN = WGX·4·TN4); K advances BK at a time: the workgroup
// loads A's BM x BK and B's BK x BN tiles into workgroup memory as vec4s, then each invocation
// accumulates its TM x 4·TN4 outputs from them in registers (rows strided by WGY, vec4 columns
// strided by WGX, so neighbouring invocations read neighbouring words). Each output is the same
// in-order fma chain over k as every other matmul kernel (bit-identical results); a last partial
// tile of K is skipped, not padded, so the chain has no extra terms.
//
// Layouts (the vec4 direction of each operand as stored): A along K (NN, NT) or along M (TN,
// M % 4 == 0); B along N (NN, TN; N % 4 == 0) or along K (NT). K % 4 == 0 where A or B is read
// along K. C and bias are written and read as scalars (any N; NT's column blocks).

//#entry tiled
//#use @store1
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<$BT>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

const BM: u32 = ${WGY * TM}u;
const BN4: u32 = ${WGX * TN4}u; // vec4 columns of the block
const BK: u32 = ${BK}u;
const THREADS: u32 = ${WGX * WGY}u;
var<workgroup> a_tile: array<f32, ${BK * WGY * TM}>;         // [BK][BM]
var<workgroup> b_tile: array<vec4<f32>, ${BK * WGX * TN4}>;  // [BK][BN4]

@compute @workgroup_size($WGX, $WGY)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN4 * 4u;
//#for i in 0..TM
//#for j in 0..TN4
    var r${i}_$j = vec4<f32>(0.0);
//#end
//#end
    for (var k0 = 0u; k0 < p.K; k0 += BK) {
        // A's tile: BM x BK of A[m, k] into a_tile[k][m]
//#if A_ALONG_M
//#for r in 0..BK * WGY * TM / 4 / (WGX * WGY)
        {
            let v = li + ${r}u * THREADS;
            let kk = v / (BM / 4u);
            let m = m0 + 4u * (v % (BM / 4u));
            var x = vec4<f32>(0.0);
            if k0 + kk < p.K && m < p.M {
                x = a[p.a_off / 4u + (k0 + kk) * (p.a_cs / 4u) + m / 4u];
            }
            let at = kk * BM + m - m0;
            a_tile[at] = x.x;
            a_tile[at + 1u] = x.y;
            a_tile[at + 2u] = x.z;
            a_tile[at + 3u] = x.w;
        }
//#end
//#else
//#for r in 0..BK * WGY * TM / 4 / (WGX * WGY)
        {
            let v = li + ${r}u * THREADS;
            let row = v / (BK / 4u);
            let kk = 4u * (v % (BK / 4u));
            var x = vec4<f32>(0.0);
            if m0 + row < p.M && k0 + kk < p.K {
                x = a[p.a_off / 4u + (m0 + row) * (p.a_rs / 4u) + (k0 + kk) / 4u];
            }
            a_tile[kk * BM + row] = x.x;
            a_tile[(kk + 1u) * BM + row] = x.y;
            a_tile[(kk + 2u) * BM + row] = x.z;
            a_tile[(kk + 3u) * BM + row] = x.w;
        }
//#end
//#end
        // B's tile: BK x BN of B[k, n] into b_tile[k][n / 4]
//#if B_ALONG_K
//#for r in 0..BK * WGX * TN4 / (WGX * WGY)
        {
            let v = li + ${r}u * THREADS;
            let n = v / (BK / 4u);
            let kk = 4u * (v % (BK / 4u));
            var x = vec4<f32>(0.0);
            if n0 + n < p.N && k0 + kk < p.K {
                x = vec4<f32>(b[p.b_off / 4u + (n0 + n) * (p.b_cs / 4u) + (k0 + kk) / 4u]);
            }
            let q = n / 4u;
            let e = n % 4u;
            b_tile[kk * BN4 + q][e] = x.x;
            b_tile[(kk + 1u) * BN4 + q][e] = x.y;
            b_tile[(kk + 2u) * BN4 + q][e] = x.z;
            b_tile[(kk + 3u) * BN4 + q][e] = x.w;
        }
//#end
//#else
//#for r in 0..BK * WGX * TN4 / (WGX * WGY)
        {
            let v = li + ${r}u * THREADS;
            let kk = v / BN4;
            let q = v % BN4;
            var x = vec4<f32>(0.0);
            if k0 + kk < p.K && n0 + 4u * q < p.N {
                x = vec4<f32>(b[p.b_off / 4u + (k0 + kk) * (p.b_rs / 4u) + n0 / 4u + q]);
            }
            b_tile[kk * BN4 + q] = x;
        }
//#end
//#end
        workgroupBarrier();
//#for kk in 0..BK
        if k0 + ${kk}u < p.K {
//#for i in 0..TM
            let a$i = a_tile[${kk}u * BM + lid.y + ${i * WGY}u];
//#end
//#for j in 0..TN4
            let b$j = b_tile[${kk}u * BN4 + lid.x + ${j * WGX}u];
//#end
//#for i in 0..TM
//#for j in 0..TN4
            r${i}_$j = fma(vec4(a$i), b$j, r${i}_$j);
//#end
//#end
        }
//#end
        workgroupBarrier();
    }
//#for i in 0..TM
//#for j in 0..TN4
    put1x4(m0 + lid.y + ${i * WGY}u, n0 + 4u * (lid.x + ${j * WGX}u), r${i}_$j);
//#end
//#end
}
