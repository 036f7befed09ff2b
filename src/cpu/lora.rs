//! LoRA on the CPU, the reference for the GPU's adapters (peft's LoRA on a Conv1D product):
//! y = x·W + b + scale·x·Aᵀ·Bᵀ with A (r, in), B (out, r) and scale = alpha/r; its backward, and
//! the merge W += scale·Aᵀ·Bᵀ that gives the same product with no adapter. An adapter on a
//! column range of a fused product (Llama's q/k/v_proj of q|k|v, gate/up_proj of gate|up) reads
//! and writes its columns c0 .. c0 + out of rows `width` wide ([`LoraCols`]).

/// The sizes of one adapter: N rows of x, its product's in and out, the rank r and alpha/r.
#[derive(Clone, Copy, Debug)]
pub struct LoraDims {
    pub n: usize,
    pub inp: usize,
    pub out: usize,
    pub r: usize,
    pub scale: f32,
}

/// The forward's tensors: out (N, out) += hs · Bᵀ with hs (N, r) = scale · x (N, in) · Aᵀ.
pub struct LoraFwd<'a> {
    pub out: &'a mut [f32],
    pub hs: &'a mut [f32],
    pub x: &'a [f32],
    pub a: &'a [f32],
    pub b: &'a [f32],
}

/// Where an adapter's outputs sit in its product's: columns c0 .. c0 + out of rows `width` wide.
#[derive(Clone, Copy, Debug)]
pub struct LoraCols {
    pub c0: usize,
    pub width: usize,
}

impl LoraCols {
    /// The whole product.
    pub fn whole(d: LoraDims) -> LoraCols {
        LoraCols { c0: 0, width: d.out }
    }
}

pub fn lora_forward(io: LoraFwd, d: LoraDims) {
    lora_forward_cols(io, d, LoraCols::whole(d));
}

/// [`lora_forward`] onto columns `c` of an out (N, width).
pub fn lora_forward_cols(io: LoraFwd, d: LoraDims, c: LoraCols) {
    let LoraFwd { out, hs, x, a, b } = io;
    for i in 0..d.n {
        for j in 0..d.r {
            let dot: f32 = (0..d.inp).map(|k| x[i * d.inp + k] * a[j * d.inp + k]).sum();
            hs[i * d.r + j] = d.scale * dot;
        }
        for o in 0..d.out {
            out[i * c.width + c.c0 + o] += (0..d.r).map(|j| hs[i * d.r + j] * b[o * d.r + j]).sum::<f32>();
        }
    }
}

/// The backward's tensors: dx (N, in), dA (r, in) and dB (out, r) accumulate from dout (N, out)
/// and the forward's x, A, B and hs.
pub struct LoraBwd<'a> {
    pub dx: &'a mut [f32],
    pub da: &'a mut [f32],
    pub db: &'a mut [f32],
    pub dout: &'a [f32],
    pub x: &'a [f32],
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub hs: &'a [f32],
}

pub fn lora_backward(io: LoraBwd, d: LoraDims) {
    lora_backward_cols(io, d, LoraCols::whole(d));
}

/// [`lora_backward`] from columns `c` of a dout (N, width).
pub fn lora_backward_cols(io: LoraBwd, d: LoraDims, c: LoraCols) {
    let LoraBwd { dx, da, db, dout, x, a, b, hs } = io;
    let dout = |i: usize, o: usize| dout[i * c.width + c.c0 + o];
    // dh (N, r) = scale · dout · B
    let mut dh = vec![0.0f32; d.n * d.r];
    for i in 0..d.n {
        for j in 0..d.r {
            let dot: f32 = (0..d.out).map(|o| dout(i, o) * b[o * d.r + j]).sum();
            dh[i * d.r + j] = d.scale * dot;
        }
    }
    for o in 0..d.out {
        for j in 0..d.r {
            db[o * d.r + j] += (0..d.n).map(|i| dout(i, o) * hs[i * d.r + j]).sum::<f32>();
        }
    }
    for j in 0..d.r {
        for k in 0..d.inp {
            da[j * d.inp + k] += (0..d.n).map(|i| dh[i * d.r + j] * x[i * d.inp + k]).sum::<f32>();
        }
    }
    for i in 0..d.n {
        for k in 0..d.inp {
            dx[i * d.inp + k] += (0..d.r).map(|j| dh[i * d.r + j] * a[j * d.inp + k]).sum::<f32>();
        }
    }
}

/// W (in, out) += scale · Aᵀ · Bᵀ: the Conv1D weight whose product equals the adapted one.
pub fn lora_merge(w: &mut [f32], a: &[f32], b: &[f32], d: LoraDims) {
    lora_merge_cols(w, a, b, d, LoraCols::whole(d));
}

/// [`lora_merge`] into columns `c` of a W (in, width).
pub fn lora_merge_cols(w: &mut [f32], a: &[f32], b: &[f32], d: LoraDims, c: LoraCols) {
    for k in 0..d.inp {
        for o in 0..d.out {
            w[k * c.width + c.c0 + o] += d.scale * (0..d.r).map(|j| a[j * d.inp + k] * b[o * d.r + j]).sum::<f32>();
        }
    }
}
