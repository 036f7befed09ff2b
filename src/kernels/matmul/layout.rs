//! What a matrix product reads: its operands ([`Operand`], a tensor as stored or transposed,
//! and [`Window`], the stored columns one dispatch reads of it), the kernel layout their
//! transposes and alignments call for ([`Layout`]), and [`Product`], a product whose kernel can
//! be chosen (the key of a [`crate::kernels::Selection`]'s matmul choices).

use crate::gpu::Tensor;

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
    pub(super) fn pick(ta: bool, tb: bool, a4: bool, b4: bool, m: usize, k: usize, n: usize) -> Option<Layout> {
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
/// key of the tuning cache) is e.g. `nn 4096x768x2304`.
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
        let (a4, b4) = (a.stored_cols().is_multiple_of(4), b.stored_cols().is_multiple_of(4));
        let layout = Layout::pick(a.transposed, b.transposed, a4, b4, m, k, n)?;
        matches!(layout, Layout::Nn | Layout::Nt | Layout::Tn).then_some(Product { layout, m, k, n })
    }

    /// `layout` with M, K, N = `mkn` if operands of these transposes (`t`) and vec4 alignments
    /// (`aligned`) run on it.
    pub(super) fn if_layout(
        layout: Layout,
        t: (bool, bool),
        aligned: (bool, bool),
        mkn: [usize; 3],
    ) -> Option<Product> {
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
    pub(super) fn strides(&self) -> (u32, u32) {
        let cols = self.stored_cols() as u32;
        if self.transposed {
            (1, cols)
        } else {
            (cols, 1)
        }
    }
}

/// What one dispatch reads of an operand: a window of stored columns c0 .. c0 + n of its tensor
/// (all of them for a whole operand), a (rows, n) matrix starting at element c0 with the
/// tensor's row stride. lm_head's backward reads dlogits (B·T, V) one window of vocabulary
/// columns at a time; LoRA's backward an adapter's columns of a fused product's gradient.
#[derive(Clone, Copy)]
pub struct Window<'a> {
    pub op: Operand<'a>,
    pub c0: usize,
    pub n: usize,
}

impl<'a> Window<'a> {
    pub fn whole(op: Operand<'a>) -> Window<'a> {
        Window { op, c0: 0, n: op.stored_cols() }
    }

    /// Stored columns c0 .. c0 + n of `op`.
    pub fn cols(op: Operand<'a>, c0: usize, n: usize) -> Window<'a> {
        let stored = op.stored_cols();
        assert!(c0 + n <= stored, "matmul: columns {c0}..{} of an operand {stored} wide", c0 + n);
        Window { op, c0, n }
    }

    /// (rows, cols) as used.
    pub(super) fn dims(&self) -> (usize, usize) {
        let (rows, cols) = self.op.dims();
        if self.op.transposed {
            (self.n, cols)
        } else {
            (rows, self.n)
        }
    }

    /// Whether the stored rows can be read as vec4s: the row stride and the first column are
    /// multiples of 4.
    pub(super) fn vec4(&self) -> bool {
        self.op.stored_cols().is_multiple_of(4) && self.c0.is_multiple_of(4)
    }
}
