// A row's softmax statistics, shared by the cross-entropy (crossentropy.wgsl) and the logit lens
// (lens.wgsl): the row's maximum m, the column of its first maximum, and s = Σ exp(x − m), in one
// online pass. A module that uses these snippets has the rows in `logits` and their width in p.V.

//#entry @row_stats
struct RowStats {
    m: f32,    // the row's maximum
    best: u32, // the column of its first occurrence
    s: f32,    // Σ exp(x − m)
}

// An online max, first argmax and sum over the columns first, first + stride, ... (< p.V) of the
// row starting at `base` (first < p.V). One invocation per row takes (0, 1): p.V ≤ 65535 steps,
// within lavapipe's cap of 65535 loop iterations per invocation.
fn row_stats(base: u32, first: u32, stride: u32) -> RowStats {
    var m = logits[base + first];
    var best = first;
    var s = 1.0;
    for (var v = first + stride; v < p.V; v += stride) {
        let x = logits[base + v];
        if x > m {
            s = s * exp(m - x) + 1.0;
            m = x;
            best = v;
        } else {
            s += exp(x - m);
        }
    }
    return RowStats(m, best, s);
}

//#entry @row_stats_wide
const WIDE: u32 = 256u;
var<workgroup> wide_m: array<f32, WIDE>;
var<workgroup> wide_s: array<f32, WIDE>;
var<workgroup> wide_best: array<u32, WIDE>;

// For p.V past 65535 (Qwen3's 151,936), where one invocation's loop would pass lavapipe's cap:
// called by every invocation of a workgroup of WIDE per row (p.V > WIDE, so each has a first
// column), each row_stats over the columns lid, lid + WIDE, ... (p.V / WIDE steps), then a tree
// reduction of the (max, first column, sum) triples in a fixed order; on equal maxima the smaller
// column wins, so `best` is the row's first maximum, as row_stats'. Every invocation gets the
// row's statistics; the caller keeps the workgroup together (uniform barriers).
fn row_stats_wide(base: u32, lid: u32) -> RowStats {
    let own = row_stats(base, lid, WIDE);
    wide_m[lid] = own.m;
    wide_s[lid] = own.s;
    wide_best[lid] = own.best;
    workgroupBarrier();
    for (var stride = WIDE / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            let m1 = wide_m[lid];
            let m2 = wide_m[lid + stride];
            let mx = max(m1, m2);
            wide_s[lid] = wide_s[lid] * exp(m1 - mx) + wide_s[lid + stride] * exp(m2 - mx);
            let b2 = wide_best[lid + stride];
            if m2 > m1 || (m2 == m1 && b2 < wide_best[lid]) {
                wide_best[lid] = b2;
            }
            wide_m[lid] = mx;
        }
        workgroupBarrier();
    }
    return RowStats(wide_m[0], wide_best[0], wide_s[0]);
}
