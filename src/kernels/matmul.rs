//! Matrix products (shaders/matmul.wgsl): Conv1D's x·W + b, lm_head's x·wteᵀ, and (for backward)
//! products with transposed operands. The three layouts GPT-2 uses (NN, NT, TN) run on vec4
//! register-tile kernels when the shapes allow vec4 access, single-row products (a decode step)
//! on vector-matrix kernels; anything else runs on one strided generic kernel. On adapters whose
//! subgroups are 8 invocations wide (lavapipe) NN, NT and TN run on the subgroup kernels of
//! shaders/matmul_subgroup.wgsl instead, which share A's loads across the subgroup.

use super::{grid, shader_module, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    flags: u32,
    a_off: u32,
    b_off: u32,
    /// NT and VMT: C[m, n] is c[c_off + m·ldc + n] (elsewhere 0 and N).
    c_off: u32,
    ldc: u32,
}

const FLAG_BIAS: u32 = 1;
const FLAG_ACCUMULATE: u32 = 2;
/// Output tile of one generic invocation (TM x TN in the shader) times the workgroup's 8 x 8.
const TILE: usize = 32;
/// Output tile of one vec4-kernel invocation (ROWS x 16 in the shader) and its workgroup (x over
/// columns, y over rows; `@workgroup_size(8, 4)`). On lavapipe 16x16 tiles were the best overall
/// of 4x8, 8x8, 8x16 and 16x8 ones with lanes along M or N (1.5-2x over 4x8 at 1024³: more FMAs
/// per load; smaller tiles only win on small ragged products), and 8x4 workgroups give small
/// products more workgroups than 8x8 at no cost.
const FAST_ROWS: usize = 16;
const FAST_COLS: usize = 16;
const FAST_WG: [usize; 2] = [8, 4];
/// C covered by one workgroup of the subgroup kernels (columns, rows): 4 subgroups of 8 lanes,
/// each lane 8 columns of the subgroup's 32 rows.
const SG_TILE: [usize; 2] = [64, 128];
/// Longest K one dispatch handles; longer products are split into accumulating chunks (lavapipe
/// caps an invocation at 65535 loop iterations). A multiple of 4, so chunks keep vec4 alignment.
pub const K_CHUNK: usize = 16384;

/// The vec4 register-tile kernels, by operand layout (C is M x N).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// A[M,K]·B[K,N] with N % 4 == 0 and K % 4 == 0: A read as vec4 along K.
    Nn,
    /// A[M,K]·B[K,N] with N % 4 == 0, any K: A read as scalars.
    Nn1,
    /// A[M,K]·B[N,K]ᵀ with K % 4 == 0, any N.
    Nt,
    /// A[K,M]ᵀ·B[K,N] with N % 4 == 0 and M % 4 == 0: A read as vec4 along M.
    Tn,
    /// A[K,M]ᵀ·B[K,N] with N % 4 == 0, any M: A read as scalars.
    Tn1,
    /// A[1,K]·B[K,N] with N % 4 == 0: one invocation per vec4 of C (a decode step).
    Vm,
    /// A[1,K]·B[N,K]ᵀ with K % 4 == 0: one invocation per element of C (a decode step's lm_head).
    Vmt,
}

impl Layout {
    /// The fast kernel for these operands, or None for the generic one. A vec4 operand's stored
    /// rows may be read as vec4s ([`Block::vec4`]; always so for a whole tensor whose rows are a
    /// multiple of 4 long).
    fn pick(a: &Block, b: &Block, m: usize, k: usize, n: usize) -> Option<Layout> {
        let (a4, b4) = (a.vec4(), b.vec4());
        match (a.op.transposed, b.op.transposed) {
            (false, false) if m == 1 && n.is_multiple_of(4) && b4 => Some(Layout::Vm),
            (false, true) if m == 1 && k.is_multiple_of(4) && a4 && b4 => Some(Layout::Vmt),
            (false, false) if n.is_multiple_of(4) && b4 => {
                Some(if k.is_multiple_of(4) && a4 { Layout::Nn } else { Layout::Nn1 })
            }
            (false, true) if k.is_multiple_of(4) && a4 && b4 => Some(Layout::Nt),
            (true, false) if n.is_multiple_of(4) && b4 => {
                Some(if m.is_multiple_of(4) && a4 { Layout::Tn } else { Layout::Tn1 })
            }
            _ => None,
        }
    }
}

/// A [`grid`] as the (x, y) pair the other layouts give.
fn flat(g: [u32; 3]) -> [usize; 2] {
    [g[0] as usize, g[1] as usize]
}

/// A row-major matrix tensor read as stored or transposed.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub t: &'a Tensor,
    pub transposed: bool,
}

impl<'a> Operand<'a> {
    pub fn n(t: &'a Tensor) -> Operand<'a> {
        Operand { t, transposed: false }
    }

    pub fn t(t: &'a Tensor) -> Operand<'a> {
        Operand { t, transposed: true }
    }

    /// The stored tensor's last dimension: its row stride.
    fn stored_cols(&self) -> usize {
        *self.t.shape.last().expect("matmul operand has a shape")
    }

    /// (rows, cols) of the operand as used, the stored tensor seen as (numel / last, last).
    fn dims(&self) -> (usize, usize) {
        let cols = self.stored_cols();
        let rows = self.t.numel() / cols;
        if self.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        }
    }

    /// (row stride, column stride) of the operand as used.
    fn strides(&self) -> (u32, u32) {
        let cols = self.stored_cols() as u32;
        if self.transposed {
            (1, cols)
        } else {
            (cols, 1)
        }
    }
}

/// What one dispatch reads of an operand: stored columns c0 .. c0 + n of its tensor (all of
/// them for a whole operand), a (rows, n) matrix starting at element c0 with the tensor's row
/// stride. lm_head's backward reads dlogits (B·T, V) one block of vocabulary columns at a time.
#[derive(Clone, Copy)]
struct Block<'a> {
    op: Operand<'a>,
    c0: usize,
    n: usize,
}

impl<'a> Block<'a> {
    fn whole(op: Operand<'a>) -> Block<'a> {
        Block { op, c0: 0, n: op.stored_cols() }
    }

    /// Stored columns c0 .. c0 + n of `op`.
    fn cols(op: Operand<'a>, c0: usize, n: usize) -> Block<'a> {
        let stored = op.stored_cols();
        assert!(c0 + n <= stored, "matmul: columns {c0}..{} of an operand {stored} wide", c0 + n);
        Block { op, c0, n }
    }

    /// (rows, cols) as used.
    fn dims(&self) -> (usize, usize) {
        let (rows, cols) = self.op.dims();
        if self.op.transposed {
            (self.n, cols)
        } else {
            (rows, self.n)
        }
    }

    /// Whether the stored rows can be read as vec4s: the row stride and the first column are
    /// multiples of 4.
    fn vec4(&self) -> bool {
        self.op.stored_cols().is_multiple_of(4) && self.c0.is_multiple_of(4)
    }
}

/// The subgroup kernels (matmul_subgroup.wgsl) for NN, NT and TN.
struct Subgroup {
    nn: Pipe,
    nt: Pipe,
    tn: Pipe,
}

pub struct Matmul {
    sg: Option<Subgroup>,
    fwd: Pipe,
    nn: Pipe,
    nn1: Pipe,
    nt: Pipe,
    tn: Pipe,
    tn1: Pipe,
    vm: Pipe,
    vmt: Pipe,
    bias_bwd: Pipe,
    /// Bound where there is no bias (four floats: the vec4 kernels bind it as one vec4).
    no_bias: Tensor,
}

impl Matmul {
    /// The kernels for this adapter: with the subgroup kernels where [`Gpu::subgroups_of_8`].
    pub fn new(gpu: &Gpu) -> Matmul {
        Matmul::build(gpu, gpu.subgroups_of_8())
    }

    /// Only the kernels of matmul.wgsl, on any adapter (tests and the bench compare both sets).
    pub fn without_subgroups(gpu: &Gpu) -> Matmul {
        Matmul::build(gpu, false)
    }

    /// Every pipeline from one module: matmul_subgroup.wgsl (which includes matmul.wgsl) where
    /// `subgroups`, else matmul.wgsl. A subgroup kernel binds the tensors of its portable twin.
    fn build(gpu: &Gpu, subgroups: bool) -> Matmul {
        let module = &shader_module(gpu, if subgroups { "matmul_subgroup.wgsl" } else { "matmul.wgsl" });
        Matmul {
            sg: subgroups.then(|| Subgroup {
                nn: Pipe::new(gpu, module, "matmul.snn", "snn", 7),
                nt: Pipe::new(gpu, module, "matmul.snt", "snt", 15),
                tn: Pipe::new(gpu, module, "matmul.stn", "stn", 19),
            }),
            fwd: Pipe::new(gpu, module, "matmul.forward", "forward", 1),
            bias_bwd: Pipe::new(gpu, module, "matmul.bias_backward", "bias_backward", 5),
            nn: Pipe::new(gpu, module, "matmul.nn", "nn", 7),
            nn1: Pipe::new(gpu, module, "matmul.nn1", "nn1", 11),
            nt: Pipe::new(gpu, module, "matmul.nt", "nt", 15),
            tn: Pipe::new(gpu, module, "matmul.tn", "tn", 19),
            tn1: Pipe::new(gpu, module, "matmul.tn1", "tn1", 23),
            vm: Pipe::new(gpu, module, "matmul.vm", "vm", 27),
            vmt: Pipe::new(gpu, module, "matmul.vmt", "vmt", 31),
            no_bias: gpu.tensor("no_bias", &[4]),
        }
    }

    /// out (M,N) = a (M,K) · b (K,N) (+ bias (N)); with `accumulate`, out += that instead.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        out: &Tensor,
        a: Operand,
        b: Operand,
        bias: Option<&Tensor>,
        accumulate: bool,
    ) {
        let (m, n) = (a.dims().0, b.dims().1);
        assert_eq!(out.numel(), m * n, "matmul output has the wrong size");
        self.gemm_cols(gpu, prog, out, (0, n), Block::whole(a), Block::whole(b), bias, accumulate);
    }

    /// The tied lm_head: logits (M,V) = x (M,C) · wte (V,C)ᵀ. A wte bigger than one storage
    /// binding is bound in row chunks ([`Gpu::row_chunks`]), each making its block of columns.
    pub fn lm_head(&self, gpu: &Gpu, prog: &mut Program, logits: &Tensor, x: &Tensor, wte: &Tensor) {
        let v = wte.shape[0];
        assert_eq!(logits.numel(), x.numel() / wte.shape[1] * v, "lm_head: logits have the wrong size");
        for (v0, chunk) in gpu.row_chunks(wte) {
            let (x, chunk) = (Block::whole(Operand::n(x)), Block::whole(Operand::t(&chunk)));
            self.gemm_cols(gpu, prog, logits, (v0, v), x, chunk, None, false);
        }
    }

    /// Backward of [`Matmul::lm_head`] given dlogits (M,V): dx (M,C) += dlogits · wte and
    /// dwte (V,C) += dlogitsᵀ · x. Where wte (and so dwte) is bigger than one storage binding,
    /// each row chunk [v0, v1) pairs with dlogits' columns v0..v1: dx accumulates the chunks'
    /// products in turn and each chunk of dwte gets its own.
    #[allow(clippy::too_many_arguments)]
    pub fn lm_head_backward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        dx: &Tensor,
        dwte: &Tensor,
        dlogits: &Tensor,
        x: &Tensor,
        wte: &Tensor,
    ) {
        let (v, c) = (wte.shape[0], wte.shape[1]);
        assert_eq!(dwte.shape, wte.shape, "lm_head backward: dwte and wte differ in shape");
        assert_eq!(dlogits.numel(), x.numel() / c * v, "lm_head backward: dlogits have the wrong size");
        for (v0, chunk) in gpu.row_chunks(wte) {
            let a = Block::cols(Operand::n(dlogits), v0, chunk.shape[0]);
            self.gemm_cols(gpu, prog, dx, (0, c), a, Block::whole(Operand::n(&chunk)), None, true);
        }
        for (v0, chunk) in gpu.row_chunks(dwte) {
            let a = Block::cols(Operand::t(dlogits), v0, chunk.shape[0]);
            self.gemm_cols(gpu, prog, &chunk, (0, c), a, Block::whole(Operand::n(x)), None, true);
        }
    }

    /// [`Matmul::gemm`] into columns cols.0 .. cols.0 + N of an output whose rows are cols.1
    /// wide (the whole output when cols = (0, N); a column block only for NT products).
    #[allow(clippy::too_many_arguments)]
    fn gemm_cols(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        out: &Tensor,
        cols: (usize, usize),
        a: Block,
        b: Block,
        bias: Option<&Tensor>,
        accumulate: bool,
    ) {
        let (m, k) = a.dims();
        let (k2, n) = b.dims();
        assert_eq!(k, k2, "matmul inner dimensions differ");
        assert!(cols.0 + n <= cols.1 && out.numel() == m * cols.1, "matmul output has the wrong size");
        let (a_rs, a_cs) = a.op.strides();
        let (b_rs, b_cs) = b.op.strides();
        let bias_t = bias.unwrap_or(&self.no_bias);
        let layout = Layout::pick(&a, &b, m, k, n);
        assert!(
            cols == (0, n) || matches!(layout, Some(Layout::Nt | Layout::Vmt)),
            "matmul: a column block of the output needs the NT layout with K % 4 == 0"
        );
        let sg_tiles = [n.div_ceil(SG_TILE[0]), m.div_ceil(SG_TILE[1])];
        let (pipe, wg) = match (layout, &self.sg) {
            (Some(Layout::Nn), Some(sg)) => (&sg.nn, sg_tiles),
            (Some(Layout::Nt), Some(sg)) => (&sg.nt, sg_tiles),
            (Some(Layout::Tn), Some(sg)) => (&sg.tn, sg_tiles),
            _ => self.portable(layout, m, n),
        };
        assert!(wg[0] <= 65535 && wg[1] <= 65535, "matmul {m}x{k}x{n}: too many workgroups");
        let wg = [wg[0] as u32, wg[1] as u32, 1];
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
            prog.push(pipe.dispatch(gpu, &params, &[out, a.op.t, b.op.t, bias_t], wg));
        }
    }

    /// The pipeline of matmul.wgsl for this layout and its workgroups (x, y).
    fn portable(&self, layout: Option<Layout>, m: usize, n: usize) -> (&Pipe, [usize; 2]) {
        let tiles = [n.div_ceil(FAST_COLS * FAST_WG[0]), m.div_ceil(FAST_ROWS * FAST_WG[1])];
        match layout {
            None => (&self.fwd, [n.div_ceil(TILE), m.div_ceil(TILE)]),
            Some(Layout::Nn) => (&self.nn, tiles),
            Some(Layout::Nn1) => (&self.nn1, tiles),
            Some(Layout::Nt) => (&self.nt, tiles),
            Some(Layout::Tn) => (&self.tn, tiles),
            Some(Layout::Tn1) => (&self.tn1, tiles),
            Some(Layout::Vm) => (&self.vm, flat(grid(n / 4, 64))),
            Some(Layout::Vmt) => (&self.vmt, flat(grid(n, 64))),
        }
    }

    /// HF Conv1D: out (N,OC) = inp (N,C) · weight (C,OC) + bias (OC).
    pub fn forward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        out: &Tensor,
        inp: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
    ) {
        self.gemm(gpu, prog, out, Operand::n(inp), Operand::n(weight), bias, false);
    }

    /// Backward of HF Conv1D out = inp (N,C) · weight (C,OC) + bias (OC), given dout (N,OC):
    /// dinp (N,C) += dout · weightᵀ, dweight (C,OC) += inpᵀ · dout, dbias (OC) += Σ_rows dout.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        dinp: &Tensor,
        dweight: &Tensor,
        dbias: Option<&Tensor>,
        dout: &Tensor,
        inp: &Tensor,
        weight: &Tensor,
    ) {
        self.gemm(gpu, prog, dinp, Operand::n(dout), Operand::t(weight), None, true);
        self.gemm(gpu, prog, dweight, Operand::t(inp), Operand::n(dout), None, true);
        if let Some(dbias) = dbias {
            let (rows, oc) = Operand::n(dout).dims();
            assert_eq!(dbias.numel(), oc, "matmul backward: dbias has the wrong size");
            let params = Params { m: rows as u32, n: oc as u32, ..bytemuck::Zeroable::zeroed() };
            // one workgroup per 16 columns
            prog.push(self.bias_bwd.dispatch(gpu, &params, &[dbias, dout], grid(oc.div_ceil(16), 1)));
        }
    }
}
