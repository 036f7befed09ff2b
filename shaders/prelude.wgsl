// Shared by every kernel: src/kernels/mod.rs puts this before each module (one per entry point;
// see src/kernels/template.rs). Index helpers, the dropout hash and rule, and X4 with the fma
// helpers of the matrix products.

// The flat index of an invocation on a 2D grid of `wg`-wide workgroups (kernels::grid: x at
// most 65535, WebGPU's per-dimension limit).
fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * wg + lid;
}

// PCG-style integer hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020); the CPU
// twin is kernels::dropout::pcg.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Inverted dropout: whether element i of dropout site `site` survives under `seed` (hash ≥ p).
// The mask is a pure function of (seed, site, i), so a backward applies the same mask and
// nothing is stored (kernels::dropout::keep is the CPU twin).
fn drop_keep(seed: u32, site: u32, i: u32, p: f32) -> bool {
    let u = f32(pcg(pcg(seed ^ pcg(site)) ^ i) >> 8u) * (1.0 / 16777216.0);
    return u >= p;
}

// The multiplier of element i: 0 where dropped, else `scale` = 1/(1−p); 1 when p = 0.
fn drop_factor(seed: u32, site: u32, i: u32, p: f32, scale: f32) -> f32 {
    if p <= 0.0 {
        return 1.0;
    }
    return select(0.0, scale, drop_keep(seed, site, i, p));
}

// Sixteen consecutive floats as four vec4s: a 16-column piece of a row of C or B, or the k4
// slices of four rows of a transposed operand.
struct X4 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

// r + a · b, element-wise: one k step of the outer product for one row of a tile.
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
