//! Matrix products (shaders/matmul*.wgsl): Conv1D's x·W + b, lm_head's x·wteᵀ, and (for
//! backward) products with transposed operands. The three layouts GPT-2 uses (NN, NT, TN) run on
//! one of several families of kernels with identical results ([`MatmulVariant`]: the portable
//! register tiles, the subgroup kernels of adapters with 8-wide subgroups, the workgroup-tiled
//! kernels of real GPUs), chosen per product shape ([`Matmul::set_choice`], filled in by
//! [`crate::tune`]); single-row products (a decode step) run on vector-matrix kernels, and
//! anything else on one strided generic kernel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{grid, Dispatch, ModuleSpec, Pipe, PipeCache, Program};
use crate::gpu::{Gpu, Tensor};
use crate::tune::Family;

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
    /// C[m, n] is c[c_off + m·ldc + n] (0 and N but for NT's column blocks).
    c_off: u32,
    ldc: u32,
}

const FLAG_BIAS: u32 = 1;
const FLAG_ACCUMULATE: u32 = 2;
/// Output tile of one generic invocation (TM x TN in the shader) times the workgroup's 8 x 8.
const TILE: usize = 32;
/// Columns of one register-tile invocation and that kernel's workgroup (x over columns, y over
/// rows; `@workgroup_size(8, 4)`).
const FAST_COLS: usize = 16;
const FAST_WG: [usize; 2] = [8, 4];
/// Rows of the register-tile kernels that every family shares (NN1, TN1: the unaligned layouts).
/// On lavapipe 16x16 tiles were the best overall of 4x8, 8x8, 8x16 and 16x8 ones (1.5-2x over
/// 4x8 at 1024³: more FMAs per load; smaller tiles only win on small ragged products).
const SHARED_ROWS: u32 = 16;
/// C covered by one workgroup of the subgroup kernels (columns, rows): 4 subgroups of 8 lanes,
/// each lane 8 columns of the subgroup's 32 rows.
const SG_TILE: [usize; 2] = [64, 128];
/// Longest K one dispatch handles; longer products are split into accumulating chunks (lavapipe
/// caps an invocation at 65535 loop iterations). A multiple of 4, so chunks keep vec4 alignment.
/// Every family chunks alike, so their results stay bit-identical.
pub const K_CHUNK: usize = 16384;

/// A workgroup-tiled kernel's shape (shaders/matmul_tiled.wgsl): a workgroup of wgx x wgy
/// invocations, each with tm rows x 4·tn4 columns of C, K in steps of bk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    pub wgx: u32,
    pub wgy: u32,
    pub tm: u32,
    pub tn4: u32,
    pub bk: u32,
}

impl Tile {
    /// Rows and columns of C per workgroup.
    pub fn block(&self) -> (u32, u32) {
        (self.wgy * self.tm, self.wgx * self.tn4 * 4)
    }
}

/// The tiled shapes on offer: gpu.cpp's 64x64 blocks of 8x8 per invocation with K steps of 8,
/// 128-row and 128-column blocks of the same, 4x4 per invocation in 256-invocation workgroups,
/// and 32x32 blocks for small products. Each loads whole tiles with whole invocations (the
/// tile's vec4s are a multiple of the workgroup size; checked by the shader tests).
pub const TILES: [Tile; 5] = [
    Tile { wgx: 8, wgy: 8, tm: 8, tn4: 2, bk: 8 },
    Tile { wgx: 8, wgy: 16, tm: 8, tn4: 2, bk: 8 },
    Tile { wgx: 16, wgy: 8, tm: 8, tn4: 2, bk: 8 },
    Tile { wgx: 16, wgy: 16, tm: 4, tn4: 1, bk: 16 },
    Tile { wgx: 8, wgy: 8, tm: 4, tn4: 1, bk: 16 },
];

/// Rows per invocation of the portable register-tile variants.
pub const PORTABLE_ROWS: [u32; 2] = [16, 8];

/// One implementation of the NN, NT and TN products. All give bit-identical results (one fma
/// chain over k in order per output, then bias, then C), so any may be chosen per product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// matmul.wgsl's vec4 register tiles of `rows` x 16 per invocation, no workgroup memory.
    Portable { rows: u32 },
    /// matmul_subgroup.wgsl: 32 x 64 per subgroup of 8, A shared by subgroupBroadcast.
    Subgroup,
    /// matmul_tiled.wgsl: tiles staged in workgroup memory.
    Tiled(Tile),
}

impl MatmulVariant {
    /// Every variant, whether or not an adapter can run it.
    pub fn all() -> Vec<MatmulVariant> {
        let mut all: Vec<MatmulVariant> = PORTABLE_ROWS.map(|rows| MatmulVariant::Portable { rows }).to_vec();
        all.push(MatmulVariant::Subgroup);
        all.extend(TILES.map(MatmulVariant::Tiled));
        all
    }

    /// The variants of `family` that `gpu` runs (auto: all of them).
    pub fn available(gpu: &Gpu, family: Family) -> Vec<MatmulVariant> {
        MatmulVariant::all()
            .into_iter()
            .filter(|v| (family == Family::Auto || v.family() == family) && v.runs_on(gpu))
            .collect()
    }

    pub fn family(&self) -> Family {
        match self {
            MatmulVariant::Portable { .. } => Family::Portable,
            MatmulVariant::Subgroup => Family::Subgroup,
            MatmulVariant::Tiled(_) => Family::Tiled,
        }
    }

    pub fn runs_on(&self, gpu: &Gpu) -> bool {
        *self != MatmulVariant::Subgroup || gpu.subgroups_of_8()
    }

    /// e.g. `portable-r16`, `subgroup`, `tiled-64x64-k8-8x8` (block, K step, outputs per
    /// invocation).
    pub fn name(&self) -> String {
        match self {
            MatmulVariant::Portable { rows } => format!("portable-r{rows}"),
            MatmulVariant::Subgroup => "subgroup".into(),
            MatmulVariant::Tiled(t) => {
                let (bm, bn) = t.block();
                format!("tiled-{bm}x{bn}-k{}-{}x{}", t.bk, t.tm, 4 * t.tn4)
            }
        }
    }

    pub fn parse(name: &str) -> Option<MatmulVariant> {
        MatmulVariant::all().into_iter().find(|v| v.name() == name)
    }

    /// The module of this variant's kernel for `layout` (NN, NT or TN), with B in f16 where
    /// `half` (NN and NT: inference's weights).
    fn spec(&self, layout: Layout, half: bool) -> ModuleSpec {
        let (entry, subgroup_entry) = match layout {
            Layout::Nn => ("nn", "snn"),
            Layout::Nt => ("nt", "snt"),
            Layout::Tn => ("tn", "stn"),
            _ => unreachable!("variants cover NN, NT and TN"),
        };
        let spec = match *self {
            MatmulVariant::Portable { rows } => ModuleSpec::new::<Params>(PORTABLE, entry).var("ROWS", rows),
            MatmulVariant::Subgroup => {
                ModuleSpec { subgroups: true, ..ModuleSpec::new::<Params>(SUBGROUP, subgroup_entry) }
            }
            MatmulVariant::Tiled(t) => ModuleSpec::new::<Params>(TILED, "tiled")
                .var("WGX", t.wgx)
                .var("WGY", t.wgy)
                .var("TM", t.tm)
                .var("TN4", t.tn4)
                .var("BK", t.bk)
                .var("A_ALONG_M", u32::from(layout == Layout::Tn))
                .var("B_ALONG_K", u32::from(layout == Layout::Nt)),
        };
        ModuleSpec { f16: half, ..spec }
    }

    /// Columns and rows of C one workgroup computes.
    fn block(&self) -> [usize; 2] {
        match *self {
            MatmulVariant::Portable { rows } => [FAST_COLS * FAST_WG[0], rows as usize * FAST_WG[1]],
            MatmulVariant::Subgroup => SG_TILE,
            MatmulVariant::Tiled(t) => {
                let (bm, bn) = t.block();
                [bn as usize, bm as usize]
            }
        }
    }

    /// Workgroups (x over columns, y over rows) for an M x N product.
    fn workgroups(&self, m: usize, n: usize) -> [usize; 2] {
        let [cols, rows] = self.block();
        [n.div_ceil(cols), m.div_ceil(rows)]
    }
}

const PORTABLE: &[&str] = &["matmul.wgsl"];
const SUBGROUP: &[&str] = &["matmul.wgsl", "matmul_subgroup.wgsl"];
const TILED: &[&str] = &["matmul.wgsl", "matmul_tiled.wgsl"];

pub(super) fn modules() -> Vec<ModuleSpec> {
    let shared = |e| ModuleSpec::new::<Params>(PORTABLE, e);
    let mut all = vec![shared("forward"), shared("bias_backward"), shared("vm"), shared("vmt")];
    all.extend(["nn1", "tn1"].map(|e| shared(e).var("ROWS", SHARED_ROWS)));
    all.extend(["svm", "svmt"].map(single_row_subgroup));
    all.extend(["vm", "vmt", "to_f16"].map(|e| half(shared(e))));
    all.extend(["svm", "svmt"].map(|e| half(single_row_subgroup(e))));
    for v in MatmulVariant::all() {
        all.extend([Layout::Nn, Layout::Nt, Layout::Tn].map(|l| v.spec(l, false)));
        all.extend([Layout::Nn, Layout::Nt].map(|l| v.spec(l, true)));
    }
    all
}

/// The kernels for an operand layout (C is M x N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layout {
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
    /// The fast kernel for operands of these transposes and vec4 alignments, or None for the
    /// generic one.
    fn pick(ta: bool, tb: bool, a4: bool, b4: bool, m: usize, k: usize, n: usize) -> Option<Layout> {
        match (ta, tb) {
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

    fn name(self) -> &'static str {
        ["nn", "nn1", "nt", "tn", "tn1", "vm", "vmt"][self as usize]
    }
}

/// A product whose kernel can be chosen: its layout (NN, NT or TN) and M, K, N. Its name (the
/// key of the tuning table) is e.g. `nn 4096x768x2304`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Product {
    pub layout: Layout,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Product {
    /// The product of `a` (M,K as used) and `b` (K,N as used) when it runs on a choosable layout.
    /// Whole, vec4-aligned tensors, as a model's products are; chunks of K count as the whole.
    pub fn of(a: Operand, b: Operand) -> Option<Product> {
        let (m, k) = a.dims();
        let n = b.dims().1;
        let layout = Layout::pick(
            a.transposed,
            b.transposed,
            a.stored_cols().is_multiple_of(4),
            b.stored_cols().is_multiple_of(4),
            m,
            k,
            n,
        )?;
        matches!(layout, Layout::Nn | Layout::Nt | Layout::Tn).then_some(Product { layout, m, k, n })
    }

    /// `layout` with M, K, N = `mkn` if operands of these transposes (`t`) and vec4 alignments
    /// (`aligned`) run on it.
    fn if_layout(layout: Layout, t: (bool, bool), aligned: (bool, bool), mkn: [usize; 3]) -> Option<Product> {
        let [m, k, n] = mkn;
        (Layout::pick(t.0, t.1, aligned.0, aligned.1, m, k, n) == Some(layout)).then_some(Product { layout, m, k, n })
    }

    /// The products of a Conv1D (N,C) → (N,OC) layer in training, where choosable: forward NN,
    /// dinp NT and dweight TN.
    pub fn linear(rows: usize, c: usize, oc: usize) -> Vec<Product> {
        let (c4, oc4) = (c.is_multiple_of(4), oc.is_multiple_of(4));
        [
            Product::if_layout(Layout::Nn, (false, false), (c4, oc4), [rows, c, oc]),
            Product::if_layout(Layout::Nt, (false, true), (oc4, oc4), [rows, oc, c]),
            Product::if_layout(Layout::Tn, (true, false), (c4, oc4), [c, rows, oc]),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn flop(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }

    pub fn name(&self) -> String {
        format!("{} {}x{}x{}", self.layout.name(), self.m, self.k, self.n)
    }

    pub fn parse(name: &str) -> Option<Product> {
        let (layout, dims) = name.split_once(' ')?;
        let layout = [Layout::Nn, Layout::Nt, Layout::Tn].into_iter().find(|l| l.name() == layout)?;
        let d: Vec<usize> = dims.split('x').map(str::parse).collect::<Result<_, _>>().ok()?;
        let [m, k, n] = d[..] else { return None };
        Some(Product { layout, m, k, n })
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
    pub fn stored_cols(&self) -> usize {
        *self.t.shape.last().expect("matmul operand has a shape")
    }

    /// (rows, cols) of the operand as used, the stored tensor seen as (numel / last, last).
    pub fn dims(&self) -> (usize, usize) {
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

/// One product to record: out (M, cols.1) gets a · b (+ bias) (+ out with `accumulate`) in its
/// columns cols.0 .. cols.0 + N (the whole output when cols = (0, N); a column block only for NT
/// products), on `variant` or, when None, the one chosen for the product.
struct Job<'a> {
    out: &'a Tensor,
    cols: (usize, usize),
    a: Block<'a>,
    b: Block<'a>,
    bias: Option<&'a Tensor>,
    accumulate: bool,
    variant: Option<MatmulVariant>,
}

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

/// The kernels that every family shares: the generic strided product, the bias backward, the
/// unaligned layouts and the single-row products (in f32 and, for f16 weights, f16).
struct Shared {
    generic: Arc<Pipe>,
    bias_bwd: Pipe,
    nn1: Arc<Pipe>,
    tn1: Arc<Pipe>,
    vm: Arc<Pipe>,
    vmt: Arc<Pipe>,
    vm16: Arc<Pipe>,
    vmt16: Arc<Pipe>,
    to_f16: Pipe,
}

/// `spec` with B in f16.
fn half(spec: ModuleSpec) -> ModuleSpec {
    ModuleSpec { f16: true, ..spec }
}

/// VM and VMT for 8-wide subgroups (matmul_subgroup.wgsl's svm, svmt: the row of A loaded once
/// per subgroup; the same fma order), used where the subgroup kernels are the default.
fn single_row_subgroup(entry: &'static str) -> ModuleSpec {
    ModuleSpec { subgroups: true, ..ModuleSpec::new::<Params>(SUBGROUP, entry) }
}

/// Which way a product's dispatch is cut ([`Blocks`]), with the rows or columns of C that one
/// workgroup computes.
#[derive(Clone, Copy)]
enum Along {
    Rows(usize),
    Cols(usize),
}

/// A product's dispatch run as several over blocks of C, so that a submit which one product
/// alone would keep past its budget can be cut (src/submit.rs): blocks of rows (M, A's and C's
/// offsets moved to the block's first row, a multiple of the workgroup's rows), or for an NT
/// product without bias whose rows are one workgroup high (lm_head over a short prompt) blocks
/// of columns (N, B's and C's offsets moved; the NT kernels store through `put1`, which takes
/// any column offset). Every element of C is the same fma chain as in the whole dispatch. The
/// blocks' dispatches are made when first asked for.
pub(super) struct Blocks {
    pipe: Arc<Pipe>,
    params: Params,
    tensors: [Tensor; 4],
    /// The whole dispatch's workgroups (x over columns, y over rows).
    workgroups: [u32; 2],
    along: Along,
    /// The dispatches of the last cut asked for, and into how many blocks.
    made: Mutex<Option<(usize, Vec<Dispatch>)>>,
}

impl Blocks {
    /// The blocks of a dispatch of `params` over `workgroups` of `block` (columns, rows of C)
    /// each, where it has more than one workgroup along a way it can be cut.
    fn new(
        pipe: &Arc<Pipe>,
        layout: Option<Layout>,
        block: [usize; 2],
        params: Params,
        tensors: [&Tensor; 4],
        workgroups: [u32; 3],
    ) -> Option<Blocks> {
        let along = if workgroups[1] > 1 {
            Along::Rows(block[1])
        } else if workgroups[0] > 1 && layout == Some(Layout::Nt) && params.flags & FLAG_BIAS == 0 {
            Along::Cols(block[0])
        } else {
            return None;
        };
        Some(Blocks {
            pipe: pipe.clone(),
            params,
            tensors: tensors.map(Tensor::clone),
            workgroups: [workgroups[0], workgroups[1]],
            along,
            made: Mutex::new(None),
        })
    }

    /// The most blocks: one per workgroup row (or column).
    pub(super) fn max(&self) -> usize {
        match self.along {
            Along::Rows(_) => self.workgroups[1] as usize,
            Along::Cols(_) => self.workgroups[0] as usize,
        }
    }

    /// Records block `j` of the product cut into `of` (at most [`Blocks::max`]).
    pub(super) fn encode(&self, pass: &mut wgpu::ComputePass<'_>, j: usize, of: usize) {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if made.as_ref().is_none_or(|(n, _)| *n != of) {
            *made = Some((of, self.make(of)));
        }
        made.as_ref().expect("made above").1[j].encode(pass);
    }

    fn make(&self, of: usize) -> Vec<Dispatch> {
        let (p, n, [wx, wy]) = (self.params, self.max(), self.workgroups);
        let [out, a, b, bias] = &self.tensors;
        (0..of)
            .map(|j| {
                let (w0, w1) = (j * n / of, (j + 1) * n / of);
                let (params, wg) = match self.along {
                    Along::Rows(rows) => {
                        let (m0, m1) = (w0 * rows, (w1 * rows).min(p.m as usize));
                        let (m, m0) = ((m1 - m0) as u32, m0 as u32);
                        (
                            Params { m, a_off: p.a_off + m0 * p.a_rs, c_off: p.c_off + m0 * p.ldc, ..p },
                            [wx, (w1 - w0) as u32],
                        )
                    }
                    Along::Cols(cols) => {
                        let (n0, n1) = (w0 * cols, (w1 * cols).min(p.n as usize));
                        let (n, n0) = ((n1 - n0) as u32, n0 as u32);
                        (Params { n, b_off: p.b_off + n0 * p.b_cs, c_off: p.c_off + n0, ..p }, [(w1 - w0) as u32, wy])
                    }
                };
                self.pipe.dispatch(&params, &[out, a, b, bias], [wg[0], wg[1], 1])
            })
            .collect()
    }
}

pub struct Matmul {
    gpu: Gpu,
    shared: Shared,
    /// The NN, NT and TN pipelines of each variant made so far (and NN and NT with B in f16).
    pipes: PipeCache<(MatmulVariant, Layout, bool)>,
    /// The variant of products the table does not name, for NN, NT and TN.
    defaults: [MatmulVariant; 3],
    /// The variant chosen for each product (by tuning or a built-in table).
    table: Mutex<HashMap<Product, MatmulVariant>>,
    /// Bound where there is no bias (four floats: the vec4 kernels bind it as one vec4).
    no_bias: Tensor,
}

impl Matmul {
    /// The kernels of `gpu`, running `default` (which `gpu` must run) where no choice was set.
    pub fn new(gpu: &Gpu, default: MatmulVariant) -> Matmul {
        Matmul::with_defaults(gpu, [default; 3])
    }

    /// [`Matmul::new`] with a default per layout: NN, NT and TN.
    // in the browser wgpu's types are not Send: there is one thread, the Arcs only share
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn with_defaults(gpu: &Gpu, defaults: [MatmulVariant; 3]) -> Matmul {
        for d in defaults {
            assert!(d.runs_on(gpu), "{} does not run on {}", d.name(), gpu.describe());
        }
        let default = defaults[0];
        let shared = |e| Pipe::new(gpu, ModuleSpec::new::<Params>(PORTABLE, e));
        let rows = |e| Pipe::new(gpu, ModuleSpec::new::<Params>(PORTABLE, e).var("ROWS", SHARED_ROWS));
        // a decode step's products share A's row across the subgroup where the subgroup kernels run
        let sg = default == MatmulVariant::Subgroup;
        let spec =
            |e: &'static str, s| if sg { single_row_subgroup(s) } else { ModuleSpec::new::<Params>(PORTABLE, e) };
        let single = |e, s| Arc::new(Pipe::new(gpu, spec(e, s)));
        let single16 = |e, s| Arc::new(Pipe::new(gpu, half(spec(e, s))));
        Matmul {
            gpu: gpu.clone(),
            shared: Shared {
                generic: Arc::new(shared("forward")),
                bias_bwd: shared("bias_backward"),
                nn1: Arc::new(rows("nn1")),
                tn1: Arc::new(rows("tn1")),
                vm: single("vm", "svm"),
                vmt: single("vmt", "svmt"),
                vm16: single16("vm", "svm"),
                vmt16: single16("vmt", "svmt"),
                to_f16: Pipe::new(gpu, half(ModuleSpec::new::<Params>(PORTABLE, "to_f16"))),
            },
            pipes: PipeCache::new(gpu),
            defaults,
            table: Mutex::new(HashMap::new()),
            no_bias: gpu.tensor("no_bias", &[4]),
        }
    }

    /// The variant that runs `product`.
    pub fn choice(&self, product: &Product) -> MatmulVariant {
        let layout = [Layout::Nn, Layout::Nt, Layout::Tn].iter().position(|l| *l == product.layout).unwrap_or(0);
        self.table.lock().unwrap_or_else(|e| e.into_inner()).get(product).copied().unwrap_or(self.defaults[layout])
    }

    /// Runs `product` on `variant` in programs recorded from now on.
    pub fn set_choice(&self, product: Product, variant: MatmulVariant) {
        assert!(variant.runs_on(&self.gpu), "{} does not run on {}", variant.name(), self.gpu.describe());
        self.table.lock().unwrap_or_else(|e| e.into_inner()).insert(product, variant);
    }

    fn pipe(&self, variant: MatmulVariant, layout: Layout, half: bool) -> Arc<Pipe> {
        self.pipes.get((variant, layout, half), || variant.spec(layout, half))
    }

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
        let (a, b) = (Block::whole(a), Block::whole(b));
        self.record(prog, Job { out, cols: (0, n), a, b, bias, accumulate, variant: None });
    }

    /// out += a · b on `variant` whatever the table says (the tuner and the bench time each).
    pub fn gemm_on(&self, variant: MatmulVariant, prog: &mut Program, out: &Tensor, a: Operand, b: Operand) {
        assert!(Product::of(a, b).is_some(), "gemm_on takes products of a choosable layout");
        let (n, a, b) = (b.dims().1, Block::whole(a), Block::whole(b));
        self.record(prog, Job { out, cols: (0, n), a, b, bias: None, accumulate: true, variant: Some(variant) });
    }

    /// The tied lm_head: logits (M,V) = x (M,C) · wte (V,C)ᵀ. A wte bigger than one storage
    /// binding is bound in row chunks ([`Gpu::row_chunks`]), each making its block of columns.
    pub fn lm_head(&self, prog: &mut Program, logits: &Tensor, x: &Tensor, wte: &Tensor) {
        let v = wte.shape[0];
        assert_eq!(logits.numel(), x.numel() / wte.shape[1] * v, "lm_head: logits have the wrong size");
        for (v0, chunk) in self.gpu.row_chunks(wte) {
            let (a, b) = (Block::whole(Operand::n(x)), Block::whole(Operand::t(&chunk)));
            self.record(prog, Job { out: logits, cols: (v0, v), a, b, bias: None, accumulate: false, variant: None });
        }
    }

    /// Backward of [`Matmul::lm_head`] given dlogits (M,V): dx (M,C) += dlogits · wte and
    /// dwte (V,C) += dlogitsᵀ · x. Where wte (and so dwte) is bigger than one storage binding,
    /// each row chunk [v0, v1) pairs with dlogits' columns v0..v1: dx accumulates the chunks'
    /// products in turn and each chunk of dwte gets its own. With `wte16` (an f16 copy of wte),
    /// dx's product reads it where that is an NN product (V and every chunk's first row
    /// multiples of 4), and wte elsewhere.
    pub fn lm_head_backward(&self, prog: &mut Program, t: LmHeadBwd) {
        let LmHeadBwd { dx, dwte, dlogits, x, wte, wte16 } = t;
        let (v, c) = (wte.shape[0], wte.shape[1]);
        assert_eq!(dwte.shape, wte.shape, "lm_head backward: dwte and wte differ in shape");
        assert_eq!(dlogits.numel(), x.numel() / c * v, "lm_head backward: dlogits have the wrong size");
        let nn = |w: &Tensor| v.is_multiple_of(4) && self.gpu.row_chunks(w).iter().all(|(v0, _)| v0.is_multiple_of(4));
        let read = wte16.filter(|w| nn(w)).unwrap_or(wte);
        for (v0, chunk) in self.gpu.row_chunks(read) {
            let (a, b) = (Block::cols(Operand::n(dlogits), v0, chunk.shape[0]), Block::whole(Operand::n(&chunk)));
            self.record(prog, Job { out: dx, cols: (0, c), a, b, bias: None, accumulate: true, variant: None });
        }
        for (v0, chunk) in self.gpu.row_chunks(dwte) {
            let (a, b) = (Block::cols(Operand::t(dlogits), v0, chunk.shape[0]), Block::whole(Operand::n(x)));
            self.record(prog, Job { out: &chunk, cols: (0, c), a, b, bias: None, accumulate: true, variant: None });
        }
    }

    /// The products, where choosable, that lm_head and its backward run for `rows` rows of x
    /// (C wide) against a wte of (V,C) on this device (in its row chunks).
    pub fn lm_head_products(&self, rows: usize, c: usize, v: usize) -> Vec<Product> {
        let c4 = c.is_multiple_of(4);
        let mut all = vec![];
        for (v0, v1) in self.gpu.chunk_rows(&[v, c]) {
            let (len, block4) = (v1 - v0, v.is_multiple_of(4) && v0.is_multiple_of(4)); // dlogits' column block
            all.extend(Product::if_layout(Layout::Nt, (false, true), (c4, c4), [rows, c, len]));
            all.extend(Product::if_layout(Layout::Nn, (false, false), (block4, c4), [rows, len, c]));
            all.extend(Product::if_layout(Layout::Tn, (true, false), (block4, c4), [len, rows, c]));
        }
        all
    }

    /// Records `j`'s dispatches (one per chunk of K).
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
            cols == (0, n) || matches!(layout, Some(Layout::Nt | Layout::Vmt)),
            "matmul: a column block of the output needs the NT layout with K % 4 == 0"
        );
        // f16 weights: B only, on the layouts inference's products take
        let half = b.op.t.half;
        assert!(!a.op.t.half && !out.half && !bias_t.half, "matmul: only B may be f16");
        assert!(
            !half || matches!(layout, Some(Layout::Nn | Layout::Nt | Layout::Vm | Layout::Vmt)),
            "matmul: an f16 B needs the NN, NT, VM or VMT layout (K and N multiples of 4), got {layout:?}"
        );
        // the pipe, its workgroups and the block of C (columns, rows) one workgroup computes
        // (None: the single-row products, which are not cut)
        let (pipe, wg, block) = match layout {
            Some(l @ (Layout::Nn | Layout::Nt | Layout::Tn)) => {
                let variant = variant.unwrap_or_else(|| self.choice(&Product { layout: l, m, k, n }));
                (self.pipe(variant, l, half), variant.workgroups(m, n), Some(variant.block()))
            }
            _ => self.shared_pipe(layout, m, n, half),
        };
        assert!(wg[0] <= 65535 && wg[1] <= 65535, "matmul {m}x{k}x{n}: too many workgroups");
        let wg = [wg[0] as u32, wg[1] as u32, 1];
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
            let d = pipe.dispatch(&params, &tensors, wg);
            prog.push(match block.and_then(|block| Blocks::new(&pipe, layout, block, params, tensors, wg)) {
                Some(blocks) => d.with_blocks(blocks),
                None => d,
            });
        }
    }

    /// The shared pipeline for a layout no variant covers, its workgroups (x, y) and the block
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
            Some(Layout::Vm) => (if half { &s.vm16 } else { &s.vm }.clone(), flat(grid(n / 4, 64)), None),
            Some(Layout::Vmt) => (if half { &s.vmt16 } else { &s.vmt }.clone(), flat(grid(n, 64)), None),
            _ => (s.generic.clone(), tiles([TILE, TILE]), Some([TILE, TILE])),
        }
    }

    /// out (f16, from [`Gpu::tensor_f16`]) = x (f32) rounded to f16 element by element: the f16
    /// copy of a weight that the f16-weight products read. Needs shader-f16. Tensors bigger than
    /// one storage binding (GPT-2's wte) go in row chunks: one dispatch per overlap of an f32
    /// chunk of x and an f16 chunk of out (they differ: f16 rows are half as many bytes).
    pub fn to_f16(&self, prog: &mut Program, out: &Tensor, x: &Tensor) {
        assert!(out.half && !x.half && out.shape == x.shape, "to_f16: an f16 out of x's shape");
        assert!(self.gpu.shader_f16(), "to_f16 needs shader-f16 ({})", self.gpu.describe());
        let cols = x.numel() / x.shape[0].max(1);
        for (h0, h) in self.gpu.row_chunks(out) {
            for (x0, xs) in self.gpu.row_chunks(x) {
                let (r0, r1) = (h0.max(x0), (h0 + h.shape[0]).min(x0 + xs.shape[0]));
                if r0 >= r1 {
                    continue;
                }
                let n = (r1 - r0) * cols;
                let (a_off, c_off) = (((r0 - x0) * cols) as u32, ((r0 - h0) * cols) as u32);
                let params = Params { m: n as u32, a_off, c_off, ..bytemuck::Zeroable::zeroed() };
                prog.push(self.shared.to_f16.dispatch(&params, &[&h, &xs], grid(n, 64)));
            }
        }
    }

    /// HF Conv1D: out (N,OC) = inp (N,C) · weight (C,OC) + bias (OC).
    pub fn forward(&self, prog: &mut Program, out: &Tensor, inp: &Tensor, weight: &Tensor, bias: Option<&Tensor>) {
        self.gemm(prog, out, Operand::n(inp), Operand::n(weight), bias, false);
    }

    /// Backward of HF Conv1D (see [`LinearBwd`]).
    pub fn backward(&self, prog: &mut Program, t: LinearBwd) {
        self.gemm(prog, t.dinp, Operand::n(t.dout), Operand::t(t.weight), None, true);
        self.gemm(prog, t.dweight, Operand::t(t.inp), Operand::n(t.dout), None, true);
        if let Some(dbias) = t.dbias {
            let (rows, oc) = Operand::n(t.dout).dims();
            assert_eq!(dbias.numel(), oc, "matmul backward: dbias has the wrong size");
            let params = Params { m: rows as u32, n: oc as u32, ..bytemuck::Zeroable::zeroed() };
            // one workgroup per 16 columns
            prog.push(self.shared.bias_bwd.dispatch(&params, &[dbias, t.dout], grid(oc.div_ceil(16), 1)));
        }
    }
}
