//! Backward passes of every layer on the CPU, llm.c's `*_backward`: gradients get a `d` prefix
//! and are accumulated (+=) unless noted, mirroring the GPU kernels' API.

use super::forward::QkvLayout;

/// dwte (V,C) += dout at each position's token, dwpe (maxT,C) += dout at each position's t;
/// dout (B,T,C), ids (B,T).
pub fn encoder_backward(dwte: &mut [f32], dwpe: &mut [f32], dout: &[f32], ids: &[u32], bt: usize, t: usize, c: usize) {
    for i in 0..bt {
        let id = ids[i] as usize;
        let pos = i % t;
        for j in 0..c {
            let d = dout[i * c + j];
            dwte[id * c + j] += d;
            dwpe[pos * c + j] += d;
        }
    }
}

/// The layernorm backward's slices: dinp (N,C), dweight (C), dbias (C) accumulate; dout (N,C)
/// and the forward's inp (N,C), weight (C), mean (N), rstd (N) are read.
pub struct LayerNormBwd<'a> {
    pub dinp: &'a mut [f32],
    pub dweight: &'a mut [f32],
    pub dbias: &'a mut [f32],
    pub dout: &'a [f32],
    pub inp: &'a [f32],
    pub weight: &'a [f32],
    pub mean: &'a [f32],
    pub rstd: &'a [f32],
}

/// dinp (N,C), dweight (C), dbias (C) += the gradients of layernorm given dout (N,C) and the
/// forward's inp, weight, mean (N), rstd (N).
pub fn layernorm_backward(io: LayerNormBwd, n: usize, c: usize) {
    let LayerNormBwd { dinp, dweight, dbias, dout, inp, weight, mean, rstd } = io;
    for r in 0..n {
        let (x, dy) = (&inp[r * c..(r + 1) * c], &dout[r * c..(r + 1) * c]);
        let (m, s) = (mean[r], rstd[r]);
        // the means of dnorm = weight·dout and of dnorm·norm over the row
        let mut dnorm_mean = 0.0;
        let mut dnorm_norm_mean = 0.0;
        for j in 0..c {
            let norm = (x[j] - m) * s;
            let dnorm = weight[j] * dy[j];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= c as f32;
        dnorm_norm_mean /= c as f32;
        for j in 0..c {
            let norm = (x[j] - m) * s;
            let dnorm = weight[j] * dy[j];
            dbias[j] += dy[j];
            dweight[j] += norm * dy[j];
            dinp[r * c + j] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}

/// dinp = dout · (1 − (y/cap)²): the softcap's backward from its output y = cap·tanh(x/cap).
pub fn softcap_backward(dinp: &mut [f32], y: &[f32], dout: &[f32], cap: f32) {
    for ((d, &yi), &g) in dinp.iter_mut().zip(y).zip(dout) {
        *d = g * (1.0 - (yi / cap) * (yi / cap));
    }
}

/// dinp += 2·relu(inp)·dout: ReLU²'s backward.
pub fn relu2_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
        *d += 2.0 * x.max(0.0) * g;
    }
}

/// SwiGLU's backward: each row of dinp (N,2I) gets [dgate | dup] += [silu'(gate)·up·dout |
/// silu(gate)·dout], given the forward's inp (N,2I) = [gate | up] and dout (N,I), where
/// silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
pub fn swiglu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32], i: usize) {
    for ((d, row), dy) in dinp.chunks_exact_mut(2 * i).zip(inp.chunks_exact(2 * i)).zip(dout.chunks_exact(i)) {
        let (dgate, dup) = d.split_at_mut(i);
        for j in 0..i {
            let (g, u) = (row[j], row[i + j]);
            let s = 1.0 / (1.0 + (-g).exp());
            dgate[j] += s * (1.0 + g * (1.0 - s)) * u * dy[j];
            dup[j] += super::silu(g) * dy[j];
        }
    }
}

/// The RMSNorm backward's slices: dinp (N,C) and dweight (C) accumulate; dout (N,C) and the
/// forward's inp (N,C), weight (C) and rstd (N) are read.
pub struct RmsNormBwd<'a> {
    pub dinp: &'a mut [f32],
    pub dweight: &'a mut [f32],
    pub dout: &'a [f32],
    pub inp: &'a [f32],
    pub weight: &'a [f32],
    pub rstd: &'a [f32],
}

/// dinp (N,C), dweight (C) += the gradients of y = x·s·w, s = 1/sqrt(mean(x²) + eps):
/// dx_j = s·(w_j·dy_j − x_j·s²·mean_k(w_k·dy_k·x_k)), dw_j = Σ_rows x_j·s·dy_j.
pub fn rmsnorm_backward(io: RmsNormBwd, n: usize, c: usize) {
    let RmsNormBwd { dinp, dweight, dout, inp, weight, rstd } = io;
    for r in 0..n {
        let (x, dy, s) = (&inp[r * c..(r + 1) * c], &dout[r * c..(r + 1) * c], rstd[r]);
        let dot = (0..c).map(|j| weight[j] * dy[j] * x[j]).sum::<f32>() / c as f32;
        for j in 0..c {
            dweight[j] += x[j] * s * dy[j];
            dinp[r * c + j] += s * (weight[j] * dy[j] - x[j] * s * s * dot);
        }
    }
}

/// The matmul backward's slices: dinp (M,K), dweight (K,N) and dbias (N), if any, accumulate;
/// dout (M,N) and the forward's inp (M,K) and weight (K,N) are read.
pub struct MatmulBwd<'a> {
    pub dinp: &'a mut [f32],
    pub dweight: &'a mut [f32],
    pub dbias: Option<&'a mut [f32]>,
    pub dout: &'a [f32],
    pub inp: &'a [f32],
    pub weight: &'a [f32],
}

/// Backward of out (M,N) = inp (M,K) · weight (K,N) + bias (N), given dout (M,N):
/// dinp += dout · weightᵀ, dweight += inpᵀ · dout, dbias += column sums of dout.
pub fn matmul_backward(io: MatmulBwd, m: usize, k: usize, n: usize) {
    let MatmulBwd { dinp, dweight, dbias, dout, inp, weight } = io;
    for i in 0..m {
        for l in 0..k {
            dinp[i * k + l] += (0..n).map(|j| dout[i * n + j] * weight[l * n + j]).sum::<f32>();
        }
    }
    for l in 0..k {
        for j in 0..n {
            dweight[l * n + j] += (0..m).map(|i| inp[i * k + l] * dout[i * n + j]).sum::<f32>();
        }
    }
    if let Some(dbias) = dbias {
        for (j, db) in dbias.iter_mut().enumerate() {
            *db += (0..m).map(|i| dout[i * n + j]).sum::<f32>();
        }
    }
}

/// The attention backward's slices: dqkv (B,T,(NH+2·KV)·hs) accumulates; dpreatt (B,NH,T,T) is
/// scratch, overwritten; dout (B,T,NH·hs) and the forward's qkv, softmax att (B,NH,T,T) and
/// dropout multiplier `drop` (B,NH,T,T), if any, are read.
pub struct AttnBwd<'a> {
    pub dqkv: &'a mut [f32],
    pub dpreatt: &'a mut [f32],
    pub dout: &'a [f32],
    pub qkv: &'a [f32],
    pub att: &'a [f32],
    pub drop: Option<&'a [f32]>,
}

/// dqkv += the gradient of causal attention given dout and the forward's qkv and softmax att
/// (shapes as [`AttnBwd`]); dpreatt is scratch, overwritten with the gradient of the unscaled
/// scores q·k (zero above the diagonal). A KV head's dk and dv sum over the query heads that
/// read it. `drop` is the forward's dropout multiplier.
pub fn attention_backward(io: AttnBwd, b: usize, t: usize, nh: usize, kv: usize, hs: usize) {
    let AttnBwd { dqkv, dpreatt, dout, qkv, att, drop } = io;
    let at = QkvLayout { t, nh, kv, hs };
    let scale = 1.0 / (hs as f32).sqrt();
    for bi in 0..b {
        for h in 0..nh {
            for ti in 0..t {
                let row = ((bi * nh + h) * t + ti) * t;
                let a = &att[row..row + t];
                let dy = &dout[at.out(bi, ti, h)..][..hs];
                // datt[t2] = dout · v[t2]; dv[t2] += att[t2] · dout
                let mut datt = vec![0.0f32; ti + 1];
                for t2 in 0..=ti {
                    let dm = drop.map_or(1.0, |d| d[row + t2]);
                    let v = at.v(bi, t2, h);
                    datt[t2] = dm * (0..hs).map(|i| dy[i] * qkv[v + i]).sum::<f32>();
                    for i in 0..hs {
                        dqkv[v + i] += dm * a[t2] * dy[i];
                    }
                }
                // softmax backward, folding in the score scale
                let s: f32 = (0..=ti).map(|t2| a[t2] * datt[t2]).sum();
                let dp = &mut dpreatt[row..row + t];
                dp.fill(0.0);
                for t2 in 0..=ti {
                    dp[t2] = a[t2] * (datt[t2] - s) * scale;
                }
                // dq += dp · k, dk[t2] += dp[t2] · q
                let q = at.q(bi, ti, h);
                for (t2, &d) in dp.iter().enumerate().take(ti + 1) {
                    let k = at.k(bi, t2, h);
                    for i in 0..hs {
                        dqkv[q + i] += d * qkv[k + i];
                        dqkv[k + i] += d * qkv[q + i];
                    }
                }
            }
        }
    }
}

/// dinp += gelu_new'(inp) · dout.
pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    let s = (2.0f32 / std::f32::consts::PI).sqrt();
    for ((di, &x), &dy) in dinp.iter_mut().zip(inp).zip(dout) {
        let th = (s * (x + 0.044715 * x * x * x)).tanh();
        let sech2 = 1.0 - th * th;
        let grad = 0.5 * (1.0 + th) + 0.5 * x * sech2 * s * (1.0 + 3.0 * 0.044715 * x * x);
        *di += grad * dy;
    }
}

/// da += dout, db += dout.
pub fn residual_backward(da: &mut [f32], db: &mut [f32], dout: &[f32]) {
    for ((a, b), &d) in da.iter_mut().zip(db.iter_mut()).zip(dout) {
        *a += d;
        *b += d;
    }
}

/// dlogits (N,V) = (softmax(logits) − onehot(targets)) · dloss, OVERWRITTEN: the fused backward
/// of crossentropy_forward with dL/dlosses[r] = dloss for every row (1/N for the mean), scaled
/// by N/counted where targets are [`crate::kernels::IGNORE`]d (whose rows are 0), so the mean is
/// over the counted ones.
pub fn crossentropy_backward(dlogits: &mut [f32], logits: &[f32], targets: &[u32], dloss: f32, v: usize) {
    let counted = targets.iter().filter(|&&y| y != crate::kernels::IGNORE).count();
    let dloss = dloss * (targets.len() as f32 / counted as f32);
    for (r, &y) in targets.iter().enumerate() {
        if y == crate::kernels::IGNORE {
            dlogits[r * v..(r + 1) * v].fill(0.0);
            continue;
        }
        let row = &logits[r * v..(r + 1) * v];
        let maxv = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&x| (x - maxv).exp()).sum();
        for (j, d) in dlogits[r * v..(r + 1) * v].iter_mut().enumerate() {
            let p = (row[j] - maxv).exp() / sum;
            *d = (p - if j == y as usize { 1.0 } else { 0.0 }) * dloss;
        }
    }
}

/// ‖grads‖₂ over all tensors, in f64.
pub fn grad_norm(grads: &[&[f32]]) -> f32 {
    grads.iter().flat_map(|g| g.iter()).map(|&x| x as f64 * x as f64).sum::<f64>().sqrt() as f32
}

/// One AdamW update's slices: param, m and v are updated in place from grad.
pub struct AdamWUpdate<'a> {
    pub param: &'a mut [f32],
    pub m: &'a mut [f32],
    pub v: &'a mut [f32],
    pub grad: &'a [f32],
}

/// What an AdamW step shares across tensors: the hyperparameters, the step `t` (1-based) and
/// `clip_scale`, clip_grad_norm_'s factor on the gradient (1 for none).
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub t: i32,
    pub clip_scale: f32,
}

/// torch.optim.AdamW's update of one tensor with that tensor's `weight_decay`, the gradient
/// first scaled by the step's `clip_scale`.
pub fn adamw_update(io: AdamWUpdate, step: &AdamWStep, weight_decay: f32) {
    let AdamWUpdate { param, m, v, grad } = io;
    let AdamWStep { lr, beta1, beta2, eps, t, clip_scale } = *step;
    let bias1 = 1.0 - (beta1 as f64).powi(t);
    let bias2 = 1.0 - (beta2 as f64).powi(t);
    for i in 0..param.len() {
        let g = grad[i] * clip_scale;
        param[i] *= 1.0 - lr * weight_decay;
        m[i] = beta1 * m[i] + (1.0 - beta1) * g;
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
        let denom = (v[i] as f64 / bias2).sqrt() + eps as f64;
        param[i] -= (lr as f64 / bias1 * m[i] as f64 / denom) as f32;
    }
}
