//! Rotary position embeddings with an optional RMSNorm of each q and k head first, as HF's
//! `apply_rotary_pos_emb` and Qwen3's `q_norm`/`k_norm`: the reference of shaders/rope.wgsl.
//! Angles are computed here in f64 from the formula (not from the GPU's host table).

/// The heads of qkv rows (NH + 2·KV)·hd wide (q heads, k heads, v heads), T tokens a sequence
/// starting at position `pos0`; `theta`: the rotary base, None for no rotation; `eps` of the norm.
#[derive(Clone, Copy, Debug)]
pub struct RopeShape {
    pub t: usize,
    pub nh: usize,
    pub kv: usize,
    pub hd: usize,
    pub pos0: usize,
    pub theta: Option<f32>,
    pub eps: f32,
}

impl RopeShape {
    fn width(&self) -> usize {
        (self.nh + 2 * self.kv) * self.hd
    }

    /// cos and sin of the angle of pair i at token row `row`'s position (1 and 0 without rope).
    fn cos_sin(&self, row: usize, i: usize) -> (f32, f32) {
        let Some(theta) = self.theta else { return (1.0, 0.0) };
        let pos = (self.pos0 + row % self.t) as f64;
        let angle = pos * (theta as f64).powf(-((2 * i) as f64) / self.hd as f64);
        (angle.cos() as f32, angle.sin() as f32)
    }
}

/// The forward: out = rope(norm(inp)) on q and k heads, v copied; rstd (rows, NH+KV) where
/// `norm` (q_norm, k_norm weights) is given.
pub struct RopeFwd<'a> {
    pub out: &'a mut [f32],
    pub rstd: &'a mut [f32],
    pub inp: &'a [f32],
    pub norm: Option<(&'a [f32], &'a [f32])>,
}

pub fn rope_forward(f: RopeFwd, s: RopeShape) {
    let (w, hd, half, qk) = (s.width(), s.hd, s.hd / 2, s.nh + s.kv);
    f.out.copy_from_slice(f.inp);
    for row in 0..f.inp.len() / w {
        for h in 0..qk {
            let b = row * w + h * hd;
            let x = &f.inp[b..b + hd];
            let mut y = x.to_vec();
            if let Some((qn, kn)) = f.norm {
                let weight = if h < s.nh { qn } else { kn };
                let ms = x.iter().map(|v| v * v).sum::<f32>() / hd as f32;
                let r = 1.0 / (ms + s.eps).sqrt();
                f.rstd[row * qk + h] = r;
                y = x.iter().zip(weight).map(|(v, g)| v * r * g).collect();
            }
            for i in 0..half {
                let (c, sn) = s.cos_sin(row, i);
                f.out[b + i] = y[i] * c - y[i + half] * sn;
                f.out[b + i + half] = y[i + half] * c + y[i] * sn;
            }
        }
    }
}

/// The backward: dinp += the gradient given dout, and (with the norm) dq_norm, dk_norm += the
/// weights'; inp, rstd and the weights are the forward's.
pub struct RopeBwd<'a> {
    pub dinp: &'a mut [f32],
    pub dnorm: Option<(&'a mut [f32], &'a mut [f32])>,
    pub dout: &'a [f32],
    pub inp: &'a [f32],
    pub rstd: &'a [f32],
    pub norm: Option<(&'a [f32], &'a [f32])>,
}

pub fn rope_backward(mut g: RopeBwd, s: RopeShape) {
    let (w, hd, half, qk) = (s.width(), s.hd, s.hd / 2, s.nh + s.kv);
    for row in 0..g.inp.len() / w {
        for h in 0..s.nh + 2 * s.kv {
            let b = row * w + h * hd;
            let d = &g.dout[b..b + hd];
            if h >= qk {
                (0..hd).for_each(|j| g.dinp[b + j] += d[j]);
                continue;
            }
            // the rotation's transpose: by −θ
            let mut dy = vec![0.0f32; hd];
            for i in 0..half {
                let (c, sn) = s.cos_sin(row, i);
                dy[i] = d[i] * c + d[i + half] * sn;
                dy[i + half] = d[i + half] * c - d[i] * sn;
            }
            let Some((qn, kn)) = g.norm else {
                (0..hd).for_each(|j| g.dinp[b + j] += dy[j]);
                continue;
            };
            // y = x̂·weight with x̂ = x·r: dx = r·(gy − x̂·mean(gy·x̂)) where gy = weight·dy
            let weight = if h < s.nh { qn } else { kn };
            let r = g.rstd[row * qk + h];
            let xhat: Vec<f32> = g.inp[b..b + hd].iter().map(|v| v * r).collect();
            let gy: Vec<f32> = dy.iter().zip(weight).map(|(d, w)| d * w).collect();
            let mean = gy.iter().zip(&xhat).map(|(a, x)| a * x).sum::<f32>() / hd as f32;
            (0..hd).for_each(|j| g.dinp[b + j] += r * (gy[j] - xhat[j] * mean));
            if let Some((dq, dk)) = g.dnorm.as_mut() {
                let dw = if h < s.nh { dq } else { dk };
                (0..hd).for_each(|j| dw[j] += dy[j] * xhat[j]);
            }
        }
    }
}
