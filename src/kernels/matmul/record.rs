//! The matmul recorders: a general product ([`Matmul::gemm`]), HF Conv1D's forward and
//! backward, and the tied lm_head with its backward, each appending its dispatches (one per
//! chunk of K) to a program on the variant the live selection chooses.

use std::sync::Arc;

use super::layout::{Layout, Operand, Product, Window};
use super::slicing::{Recorded, Slicing};
use super::variants::{MatmulVariant, FAST_COLS, FAST_WG};
use super::{Matmul, Params, FLAG_ACCUMULATE, FLAG_BIAS, K_CHUNK, SHARED_ROWS};
use crate::gpu::Tensor;
use crate::kernels::{grid, Pipe, Program};

/// C of one generic workgroup, rows and columns: its invocation's TM x TN in the shader times
/// the workgroup's 8 x 8.
const GENERIC_TILE: usize = 32;

/// The tensors of a Conv1D backward: dinp (N,C) += dout · weightᵀ, dweight (C,OC) += inpᵀ · dout
/// and dbias (OC) += Σ_rows dout, given dout (N,OC) and the forward's inp (N,C) and weight (C,OC).
pub struct LinearBwd<'a> {
    pub dinp: &'a Tensor,
    pub dweight: &'a Tensor,
    pub dbias: Option<&'a Tensor>,
    pub dout: &'a Tensor,
    pub inp: &'a Tensor,
    pub weight: &'a Tensor,
}

/// The tensors of the tied lm_head's backward ([`Matmul::lm_head_backward`]): dx (M,C) and
/// dwte (V,C) from dlogits (M,V), the forward's x (M,C) and wte (V,C), and optionally wte's f16
/// copy for dx's product.
pub struct LmHeadBwd<'a> {
    pub dx: &'a Tensor,
    pub dwte: &'a Tensor,
    pub dlogits: &'a Tensor,
    pub x: &'a Tensor,
    pub wte: &'a Tensor,
    pub wte16: Option<&'a Tensor>,
}

/// One product to record: out (M, cols.1) gets a · b (+ bias) (+ out with `accumulate`) in its
/// columns cols.0 .. cols.0 + N (the whole output when cols = (0, N); a column window only for
/// NT, VMT and generic products), on `variant` or, when None, the one the selection chooses for the product.
struct Job<'a> {
    out: &'a Tensor,
    cols: (usize, usize),
    a: Window<'a>,
    b: Window<'a>,
    bias: Option<&'a Tensor>,
    accumulate: bool,
    variant: Option<MatmulVariant>,
}

/// A [`grid`] as the (x, y) pair the other layouts give.
fn flat(g: [u32; 3]) -> [usize; 2] {
    [g[0] as usize, g[1] as usize]
}

impl Matmul {
    /// out (M,N) = a (M,K) · b (K,N) (+ bias (N)); with `accumulate`, out += that instead.
    pub fn gemm(
        &self,
        prog: &mut Program,
        out: &Tensor,
        a: Operand,
        b: Operand,
        bias: Option<&Tensor>,
        accumulate: bool,
    ) {
        let (m, n) = (a.dims().0, b.dims().1);
        assert_eq!(out.numel(), m * n, "matmul output has the wrong size");
        let (a, b) = (Window::whole(a), Window::whole(b));
        self.record(prog, Job { out, cols: (0, n), a, b, bias, accumulate, variant: None });
    }

    /// out[:, c0 .. c0 + N] (+)= a · b (M,N), of windows of a's and b's columns, into an out of
    /// (M, W) rows (W ≥ c0 + N; the whole of it when c0 = 0 and N = W): LoRA's adapters on a
    /// column range of a fused product. A window of out runs on the NT, VMT or generic kernels
    /// (which store through `put1`); of the reads, on any.
    pub fn gemm_window(&self, prog: &mut Program, out: &Tensor, c0: usize, a: Window, b: Window, accumulate: bool) {
        let width = *out.shape.last().expect("matmul output has a shape");
        let job = Job { out, cols: (c0, width), a, b, bias: None, accumulate, variant: None };
        self.record(prog, job);
    }

    /// out += a · b on `variant` whatever the selection says (the tuner and the bench time each).
    pub fn gemm_on(&self, variant: MatmulVariant, prog: &mut Program, out: &Tensor, a: Operand, b: Operand) {
        assert!(Product::of(a, b).is_some(), "gemm_on takes products of a choosable layout");
        let (n, a, b) = (b.dims().1, Window::whole(a), Window::whole(b));
        self.record(prog, Job { out, cols: (0, n), a, b, bias: None, accumulate: true, variant: Some(variant) });
    }

    /// HF Conv1D: out (N,OC) = inp (N,C) · weight (C,OC) + bias (OC).
    pub fn forward(&self, prog: &mut Program, out: &Tensor, inp: &Tensor, weight: &Tensor, bias: Option<&Tensor>) {
        self.gemm(prog, out, Operand::n(inp), Operand::n(weight), bias, false);
    }

    /// Backward of HF Conv1D (see [`LinearBwd`]).
    pub fn backward(&self, prog: &mut Program, t: LinearBwd) {
        self.backward_dinp(prog, t.dinp, t.dout, t.weight);
        self.gemm(prog, t.dweight, Operand::t(t.inp), Operand::n(t.dout), None, true);
        if let Some(dbias) = t.dbias {
            let (rows, oc) = Operand::n(t.dout).dims();
            assert_eq!(dbias.numel(), oc, "matmul backward: dbias has the wrong size");
            let params = Params { m: rows as u32, n: oc as u32, ..bytemuck::Zeroable::zeroed() };
            // one workgroup per 16 columns
            prog.push(self.shared.bias_bwd.dispatch(&params, &[dbias, t.dout], grid(oc.div_ceil(16), 1)));
        }
    }

    /// The input's half of a Conv1D backward, for a frozen weight (LoRA): dinp (N,C) += dout
    /// (N,OC) · weight (C,OC)ᵀ; no weight or bias gradient.
    pub fn backward_dinp(&self, prog: &mut Program, dinp: &Tensor, dout: &Tensor, weight: &Tensor) {
        self.gemm(prog, dinp, Operand::n(dout), Operand::t(weight), None, true);
    }

    /// The tied lm_head: logits (M,V) = x (M,C) · wte (V,C)ᵀ. A wte bigger than one storage
    /// binding is bound in row chunks ([`crate::gpu::Gpu::row_chunks`]), each making its window
    /// of columns of the logits.
    pub fn lm_head(&self, prog: &mut Program, logits: &Tensor, x: &Tensor, wte: &Tensor) {
        let v = wte.shape[0];
        assert_eq!(logits.numel(), x.numel() / wte.shape[1] * v, "lm_head: logits have the wrong size");
        for (v0, chunk) in self.gpu.row_chunks(wte) {
            let (a, b) = (Window::whole(Operand::n(x)), Window::whole(Operand::t(&chunk)));
            self.record(prog, Job { out: logits, cols: (v0, v), a, b, bias: None, accumulate: false, variant: None });
        }
    }

    /// Backward of [`Matmul::lm_head`] given dlogits (M,V): dx (M,C) += dlogits · wte and
    /// dwte (V,C) += dlogitsᵀ · x. Where wte (and so dwte) is bigger than one storage binding,
    /// each row chunk [v0, v1) pairs with the window of dlogits' columns v0..v1: dx accumulates
    /// the chunks' products in turn and each chunk of dwte gets its own. With `wte16` (an f16
    /// copy of wte), dx's product reads it where that is an NN product (V and every chunk's
    /// first row multiples of 4), and wte elsewhere.
    pub fn lm_head_backward(&self, prog: &mut Program, t: LmHeadBwd) {
        let LmHeadBwd { dx, dwte, dlogits, x, wte, wte16 } = t;
        let (v, c) = (wte.shape[0], wte.shape[1]);
        assert_eq!(dwte.shape, wte.shape, "lm_head backward: dwte and wte differ in shape");
        assert_eq!(dlogits.numel(), x.numel() / c * v, "lm_head backward: dlogits have the wrong size");
        self.lm_head_backward_dx(prog, dx, dlogits, wte, wte16);
        for (v0, chunk) in self.gpu.row_chunks(dwte) {
            let (a, b) = (Window::cols(Operand::t(dlogits), v0, chunk.shape[0]), Window::whole(Operand::n(x)));
            self.record(prog, Job { out: &chunk, cols: (0, c), a, b, bias: None, accumulate: true, variant: None });
        }
    }

    /// The input's half of [`Matmul::lm_head_backward`], for a frozen head (LoRA): dx (M,C) +=
    /// dlogits (M,V) · wte (V,C), reading `wte16` as that describes.
    pub fn lm_head_backward_dx(
        &self,
        prog: &mut Program,
        dx: &Tensor,
        dlogits: &Tensor,
        wte: &Tensor,
        wte16: Option<&Tensor>,
    ) {
        let (v, c) = (wte.shape[0], wte.shape[1]);
        let nn = |w: &Tensor| v.is_multiple_of(4) && self.gpu.row_chunks(w).iter().all(|(v0, _)| v0.is_multiple_of(4));
        let read = wte16.filter(|w| nn(w)).unwrap_or(wte);
        for (v0, chunk) in self.gpu.row_chunks(read) {
            let (a, b) = (Window::cols(Operand::n(dlogits), v0, chunk.shape[0]), Window::whole(Operand::n(&chunk)));
            self.record(prog, Job { out: dx, cols: (0, c), a, b, bias: None, accumulate: true, variant: None });
        }
    }

    /// The products, where choosable, that lm_head and its backward run for `rows` rows of x
    /// (C wide) against a wte of (V,C) on this device (in its row chunks).
    pub fn lm_head_products(&self, rows: usize, c: usize, v: usize) -> Vec<Product> {
        let c4 = c.is_multiple_of(4);
        let mut all = vec![];
        for (v0, v1) in self.gpu.chunk_rows(&[v, c]) {
            // the window of dlogits' columns that pairs with this chunk
            let (len, window4) = (v1 - v0, v.is_multiple_of(4) && v0.is_multiple_of(4));
            all.extend(Product::if_layout(Layout::Nt, (false, true), (c4, c4), [rows, c, len]));
            all.extend(Product::if_layout(Layout::Nn, (false, false), (window4, c4), [rows, len, c]));
            all.extend(Product::if_layout(Layout::Tn, (true, false), (window4, c4), [len, rows, c]));
        }
        all
    }

    /// Records `j`'s dispatches (one per chunk of K), each one the submit plan can cut into
    /// slices where it has workgroups to cut.
    fn record(&self, prog: &mut Program, j: Job) {
        let Job { out, cols, a, b, bias, accumulate, variant } = j;
        let (m, k) = a.dims();
        let (k2, n) = b.dims();
        assert_eq!(k, k2, "matmul inner dimensions differ");
        assert!(cols.0 + n <= cols.1 && out.numel() == m * cols.1, "matmul output has the wrong size");
        let (a_rs, a_cs) = a.op.strides();
        let (b_rs, b_cs) = b.op.strides();
        let bias_t = bias.unwrap_or(&self.no_bias);
        let layout = Layout::pick(a.op.transposed, b.op.transposed, a.vec4(), b.vec4(), m, k, n);
        assert!(
            cols == (0, n) || matches!(layout, Some(Layout::Nt | Layout::Vmt) | None),
            "matmul: a column window of the output needs the NT, VMT or generic kernel"
        );
        // f16 weights: B only, on the layouts inference's products take
        let half = b.op.t.half;
        assert!(!a.op.t.half && !out.half && !bias_t.half, "matmul: only B may be f16");
        assert!(
            !half || matches!(layout, Some(Layout::Nn | Layout::Nt | Layout::Vm | Layout::Vmt)),
            "matmul: an f16 B needs the NN, NT, VM or VMT layout (K and N multiples of 4), got {layout:?}"
        );
        // the pipe, its workgroups and the tile of C (columns, rows) one workgroup computes
        // (None: the single-row products, which are not cut)
        let (pipe, wg, tile) = match layout {
            Some(l @ (Layout::Nn | Layout::Nt | Layout::Tn)) => {
                let variant = variant.unwrap_or_else(|| self.choice(&Product { layout: l, m, k, n }));
                (self.pipe(variant, l, half), variant.workgroups(m, n), Some(variant.tile()))
            }
            _ => self.shared_pipe(layout, m, n, half),
        };
        assert!(wg[0] <= 65535 && wg[1] <= 65535, "matmul {m}x{k}x{n}: too many workgroups");
        let workgroups = [wg[0] as u32, wg[1] as u32, 1];
        let tensors = [out, a.op.t, b.op.t, bias_t];
        for k0 in (0..k.max(1)).step_by(K_CHUNK) {
            let first = k0 == 0;
            let mut flags = 0;
            if first && bias.is_some() {
                flags |= FLAG_BIAS;
            }
            if accumulate || !first {
                flags |= FLAG_ACCUMULATE;
            }
            let params = Params {
                m: m as u32,
                n: n as u32,
                k: (k - k0).min(K_CHUNK) as u32,
                a_rs,
                a_cs,
                b_rs,
                b_cs,
                flags,
                a_off: k0 as u32 * a_cs + a.c0 as u32,
                b_off: k0 as u32 * b_rs + b.c0 as u32,
                c_off: cols.0 as u32,
                ldc: cols.1 as u32,
            };
            let d = pipe.dispatch(&params, &tensors, workgroups);
            match tile {
                Some(tile) => {
                    let recorded = Recorded { pipe: &pipe, layout, tile, params, tensors, workgroups };
                    prog.push_launch(Slicing::launch(d, recorded));
                }
                None => prog.push(d),
            }
        }
    }

    /// The shared pipeline for a layout no variant covers, its workgroups (x, y) and the tile
    /// of C (columns, rows) one workgroup computes (None for the single-row products).
    fn shared_pipe(
        &self,
        layout: Option<Layout>,
        m: usize,
        n: usize,
        half: bool,
    ) -> (Arc<Pipe>, [usize; 2], Option<[usize; 2]>) {
        let fast = [FAST_COLS * FAST_WG[0], SHARED_ROWS as usize * FAST_WG[1]];
        let tiles = |[cols, rows]: [usize; 2]| [n.div_ceil(cols), m.div_ceil(rows)];
        let s = &self.shared;
        match layout {
            Some(Layout::Nn1) => (s.nn1.clone(), tiles(fast), Some(fast)),
            Some(Layout::Tn1) => (s.tn1.clone(), tiles(fast), Some(fast)),
            Some(Layout::Vm) => (self.single_row(Layout::Vm, half), flat(grid(n / 4, 64)), None),
            Some(Layout::Vmt) => (self.single_row(Layout::Vmt, half), flat(grid(n, 64)), None),
            _ => (s.generic.clone(), tiles([GENERIC_TILE, GENERIC_TILE]), Some([GENERIC_TILE, GENERIC_TILE])),
        }
    }
}
