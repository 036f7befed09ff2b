//! Forward passes of every layer on the CPU.

/// out (B,T,C) = wte[ids] + wpe[t].
pub fn encoder_forward(out: &mut [f32], ids: &[u32], wte: &[f32], wpe: &[f32], bt: usize, t: usize, c: usize) {
    for i in 0..bt {
        let id = ids[i] as usize;
        let pos = i % t;
        for j in 0..c {
            out[i * c + j] = wte[id * c + j] + wpe[pos * c + j];
        }
    }
}

/// The layernorm forward's slices: out (N,C), mean (N), rstd (N) written from inp (N,C),
/// weight (C), bias (C).
pub struct LayerNormFwd<'a> {
    pub out: &'a mut [f32],
    pub mean: &'a mut [f32],
    pub rstd: &'a mut [f32],
    pub inp: &'a [f32],
    pub weight: &'a [f32],
    pub bias: &'a [f32],
}

/// out (N,C), mean (N), rstd (N) = layernorm(inp (N,C)) · weight + bias, eps 1e-5.
pub fn layernorm_forward(io: LayerNormFwd, n: usize, c: usize) {
    let LayerNormFwd { out, mean, rstd, inp, weight, bias } = io;
    for r in 0..n {
        let x = &inp[r * c..(r + 1) * c];
        let m = x.iter().sum::<f32>() / c as f32;
        let v = x.iter().map(|&xi| (xi - m) * (xi - m)).sum::<f32>() / c as f32;
        let s = 1.0 / (v + crate::kernels::layernorm::EPS).sqrt();
        for j in 0..c {
            out[r * c + j] = (x[j] - m) * s * weight[j] + bias[j];
        }
        mean[r] = m;
        rstd[r] = s;
    }
}

/// The RMSNorm forward's slices: out (N,C) and rstd (N) written from inp (N,C), weight (C).
pub struct RmsNormFwd<'a> {
    pub out: &'a mut [f32],
    pub rstd: &'a mut [f32],
    pub inp: &'a [f32],
    pub weight: &'a [f32],
}

/// out (N,C) = inp / sqrt(mean(inp²) + eps) · weight, rstd (N) = 1 / sqrt(mean(inp²) + eps):
/// Llama's RMSNorm (transformers' LlamaRMSNorm, in f32).
pub fn rmsnorm_forward(io: RmsNormFwd, n: usize, c: usize, eps: f32) {
    let RmsNormFwd { out, rstd, inp, weight } = io;
    for r in 0..n {
        let x = &inp[r * c..(r + 1) * c];
        let ms = x.iter().map(|&xi| xi * xi).sum::<f32>() / c as f32;
        let s = 1.0 / (ms + eps).sqrt();
        for j in 0..c {
            out[r * c + j] = x[j] * s * weight[j];
        }
        rstd[r] = s;
    }
}

/// out (M,N) = inp (M,K) · weight (K,N) + bias (N): HF Conv1D.
pub fn matmul_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = bias.map_or(0.0, |b| b[j]);
            for l in 0..k {
                acc += inp[i * k + l] * weight[l * n + j];
            }
            out[i * n + j] = acc;
        }
    }
}

/// out (M,N) = inp (M,K) · weightᵀ where weight is (N,K): the tied lm_head.
pub fn matmul_nt_forward(out: &mut [f32], inp: &[f32], weight: &[f32], m: usize, k: usize, n: usize) {
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|l| inp[i * k + l] * weight[j * k + l]).sum();
        }
    }
}

/// The attention forward's slices: out (B,T,NH·hs) and att (B,NH,T,T) written from qkv
/// (B,T,(NH+2·KV)·hs); `drop` (B,NH,T,T), if any, is the dropout multiplier on att (0 or 1/(1−p)).
pub struct AttnFwd<'a> {
    pub out: &'a mut [f32],
    pub att: &'a mut [f32],
    pub qkv: &'a [f32],
    pub drop: Option<&'a [f32]>,
}

/// Offsets into qkv (B,T,(NH+2·KV)·hs), whose rows are [q NH·hs | k KV·hs | v KV·hs]: query head
/// h reads key and value head h / (NH / KV).
#[derive(Clone, Copy)]
pub(crate) struct QkvLayout {
    pub t: usize,
    pub nh: usize,
    pub kv: usize,
    pub hs: usize,
}

impl QkvLayout {
    fn row(&self, bi: usize, ti: usize) -> usize {
        (bi * self.t + ti) * (self.nh + 2 * self.kv) * self.hs
    }

    /// q of query head h at token (bi, ti).
    pub fn q(&self, bi: usize, ti: usize, h: usize) -> usize {
        self.row(bi, ti) + h * self.hs
    }

    /// k of the KV head query head h reads, at token (bi, ti).
    pub fn k(&self, bi: usize, ti: usize, h: usize) -> usize {
        self.row(bi, ti) + (self.nh + h / (self.nh / self.kv)) * self.hs
    }

    /// v of the KV head query head h reads, at token (bi, ti).
    pub fn v(&self, bi: usize, ti: usize, h: usize) -> usize {
        self.k(bi, ti, h) + self.kv * self.hs
    }

    /// Query head h at token (bi, ti) in out (B,T,NH·hs).
    pub fn out(&self, bi: usize, ti: usize, h: usize) -> usize {
        (bi * self.t + ti) * self.nh * self.hs + h * self.hs
    }
}

/// out (B,T,NH·hs), att (B,NH,T,T) from qkv (B,T,(NH+2·KV)·hs): causal softmax attention for
/// every query head h over key and value head h / (NH / KV). `drop` multiplies the probabilities
/// in the weighted sum of v: the dropout on att; att itself is kept before dropout.
pub fn attention_forward(io: AttnFwd, b: usize, t: usize, nh: usize, kv: usize, hs: usize) {
    let AttnFwd { out, att, qkv, drop } = io;
    let at = QkvLayout { t, nh, kv, hs };
    let scale = 1.0 / (hs as f32).sqrt();
    for bi in 0..b {
        for h in 0..nh {
            for ti in 0..t {
                let q = &qkv[at.q(bi, ti, h)..][..hs];
                let row_at = ((bi * nh + h) * t + ti) * t;
                let row = &mut att[row_at..][..t];
                let mut maxv = f32::NEG_INFINITY;
                for t2 in 0..=ti {
                    let k = &qkv[at.k(bi, t2, h)..][..hs];
                    let s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                    row[t2] = s;
                    maxv = maxv.max(s);
                }
                let mut sum = 0.0;
                for v in row.iter_mut().take(ti + 1) {
                    *v = (*v - maxv).exp();
                    sum += *v;
                }
                for (t2, v) in row.iter_mut().enumerate() {
                    *v = if t2 <= ti { *v / sum } else { 0.0 };
                }
                let o = &mut out[at.out(bi, ti, h)..][..hs];
                o.fill(0.0);
                for (t2, &a) in row.iter().enumerate().take(ti + 1) {
                    let a = a * drop.map_or(1.0, |d| d[row_at + t2]);
                    let v = &qkv[at.v(bi, t2, h)..][..hs];
                    for i in 0..hs {
                        o[i] += a * v[i];
                    }
                }
            }
        }
    }
}

/// x = cap·tanh(x / cap) in place: the logit softcap.
pub fn softcap_forward(x: &mut [f32], cap: f32) {
    for v in x.iter_mut() {
        *v = cap * (*v / cap).tanh();
    }
}

/// out = relu(inp)².
pub fn relu2_forward(out: &mut [f32], inp: &[f32]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = x.max(0.0) * x.max(0.0);
    }
}

/// silu(x) = x·sigmoid(x) (torch's F.silu).
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// SwiGLU: out (N,I) = silu(gate)·up, where each row of inp (N,2I) is [gate | up] (the fused
/// gate_proj | up_proj product).
pub fn swiglu_forward(out: &mut [f32], inp: &[f32], i: usize) {
    for (o, row) in out.chunks_exact_mut(i).zip(inp.chunks_exact(2 * i)) {
        let (gate, up) = row.split_at(i);
        for ((o, &g), &u) in o.iter_mut().zip(gate).zip(up) {
            *o = silu(g) * u;
        }
    }
}

/// out = gelu_new(inp).
pub fn gelu_forward(out: &mut [f32], inp: &[f32]) {
    let s = (2.0f32 / std::f32::consts::PI).sqrt();
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = 0.5 * x * (1.0 + (s * (x + 0.044715 * x * x * x)).tanh());
    }
}

/// out = a + b.
pub fn residual_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// losses (N) = logsumexp(logits (N,V)) − logits[targets]; returns their mean. A target of
/// [`crate::kernels::IGNORE`] has loss 0 and is left out of the mean (0 when none counts).
pub fn crossentropy_forward(losses: &mut [f32], logits: &[f32], targets: &[u32], v: usize) -> f32 {
    for (r, loss) in losses.iter_mut().enumerate() {
        let row = &logits[r * v..(r + 1) * v];
        let maxv = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&x| (x - maxv).exp()).sum();
        *loss = if targets[r] == crate::kernels::IGNORE { 0.0 } else { sum.ln() + maxv - row[targets[r] as usize] };
    }
    let counted = targets.iter().filter(|&&y| y != crate::kernels::IGNORE).count();
    if counted == 0 {
        return 0.0;
    }
    losses.iter().sum::<f32>() / counted as f32
}

/// The logit lens' reduction: for each row of logits (N,V), the index of its first maximum and
/// that token's softmax probability (summed in f64).
pub fn row_top1(logits: &[f32], v: usize) -> Vec<(u32, f32)> {
    let top = |row: &[f32]| {
        let best = row.iter().enumerate().fold(0, |b, (i, &x)| if x > row[b] { i } else { b });
        let sum: f64 = row.iter().map(|&x| ((x - row[best]) as f64).exp()).sum();
        (best as u32, (1.0 / sum) as f32)
    };
    logits.chunks(v).map(top).collect()
}
