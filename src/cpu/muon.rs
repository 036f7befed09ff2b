//! Muon's plain CPU reference: torch.optim.Muon's single-tensor step (`_single_tensor_muon`) with
//! `_zeropower_via_newtonschulz` run in f32 instead of bf16, written the way torch writes it (the
//! transpose of a tall matrix made explicitly), with products summed in f64.

/// A row-major (rows, cols) matrix's transpose.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
    t
}

/// a (m, k) · b (k, n), each sum in f64 rounded once.
fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
            out[i * n + j] = s as f32;
        }
    }
    out
}

/// Newton-Schulz orthogonalisation of g (rows, cols): X = g (transposed when rows > cols) /
/// max(‖g‖_F, eps); `steps` times A = X·Xᵀ, B = b·A + c·A·A, X = a·X + B·X; X transposed back.
pub fn newton_schulz(g: &[f32], rows: usize, cols: usize, coefficients: [f32; 3], steps: usize, eps: f32) -> Vec<f32> {
    let tall = rows > cols;
    let (m, n) = if tall { (cols, rows) } else { (rows, cols) };
    let mut x = if tall { transpose(g, rows, cols) } else { g.to_vec() };
    let norm = (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32).max(eps);
    x.iter_mut().for_each(|v| *v /= norm);
    let [a, b, c] = coefficients;
    for _ in 0..steps {
        let gram = matmul(&x, &transpose(&x, m, n), m, n, m);
        let gram2 = matmul(&gram, &gram, m, m, m);
        let update: Vec<f32> = gram.iter().zip(&gram2).map(|(&g1, &g2)| b * g1 + c * g2).collect();
        let bx = matmul(&update, &x, m, m, n);
        x = x.iter().zip(&bx).map(|(&xi, &yi)| a * xi + yi).collect();
    }
    if tall {
        transpose(&x, m, n)
    } else {
        x
    }
}

/// Muon's settings for one matrix.
#[derive(Clone, Copy, Debug)]
pub struct MuonHyper {
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub coefficients: [f32; 3],
    pub steps: usize,
    pub eps: f32,
}

/// torch.lerp(start, end, w) in f32.
fn lerp(start: f32, end: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        start + w * (end - start)
    } else {
        end - (end - start) * (1.0 - w)
    }
}

/// One Muon step of w (rows, cols) with momentum buffer buf and gradient g (already unscaled
/// and clipped): buf.lerp_(g, 1 − μ); u = g.lerp(buf, μ) or buf; O = NS(u); w ← w·(1 − lr·wd);
/// w ← w − lr·√max(1, rows/cols)·O.
pub fn muon_step(w: &mut [f32], buf: &mut [f32], g: &[f32], rows: usize, cols: usize, h: MuonHyper) {
    let (one_minus, mu) = ((1.0 - h.momentum) as f32, h.momentum as f32);
    for (b, &gi) in buf.iter_mut().zip(g) {
        *b = lerp(*b, gi, one_minus);
    }
    let u: Vec<f32> =
        if h.nesterov { g.iter().zip(buf.iter()).map(|(&gi, &b)| lerp(gi, b, mu)).collect() } else { buf.to_vec() };
    let o = newton_schulz(&u, rows, cols, h.coefficients, h.steps, h.eps);
    let keep = (1.0 - h.lr * h.weight_decay) as f32;
    let adj = (h.lr * (rows as f64 / cols as f64).max(1.0).sqrt()) as f32;
    for (wi, oi) in w.iter_mut().zip(o) {
        *wi = *wi * keep - adj * oi;
    }
}
