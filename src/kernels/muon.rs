//! Muon (shaders/muon.wgsl; torch.optim.Muon's single-tensor step): momentum in torch's lerp form,
//! Newton-Schulz orthogonalisation of the update from the matrix products and two small
//! elementwise entries, then the update applied with decoupled weight decay and the "original"
//! lr adjustment. Everything stays on the GPU: the Frobenius norm is reduced by AdamW's `sumsq`
//! entry and read by the next dispatch. torch runs Newton-Schulz in bf16; this runs it in f32.

use super::adamw::{self, CHUNK};
use super::{grid, Matmul, ModuleSpec, Operand, Pipe, Program, Widths};
use crate::gpu::{Gpu, Tensor};

/// muon.wgsl's NsParams (normalize, axpby).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NsParams {
    n: u32,
    parts: u32,
    alpha: f32,
    beta: f32,
}

/// Entries that start with adamw.wgsl's header (its Params, Step, Scaler and skipped steps).
fn step_spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<adamw::Params>(&["adamw.wgsl", "muon.wgsl"], entry)
}

/// Newton-Schulz's entries, on muon.wgsl alone.
fn ns_spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<NsParams>(&["muon.wgsl"], entry)
}

/// The statistics entry, which also starts with dynamics.wgsl's header (its reduction).
fn stats_spec() -> ModuleSpec {
    ModuleSpec::new::<adamw::Params>(&["adamw.wgsl", "dynamics.wgsl", "muon.wgsl"], "stats").var("T", "f32")
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    let mut all = vec![stats_spec()];
    for spec in [step_spec("momentum"), step_spec("apply"), ns_spec("normalize"), ns_spec("axpby"), ns_spec("copy")] {
        all.extend(Widths::specs(spec));
    }
    all
}

/// Newton-Schulz's constants: torch's defaults are (3.4445, −4.7750, 2.0315), 5 steps, eps 1e-7.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NsConsts {
    /// (a, b, c): X ← a·X + (b·A + c·A·A)·X for A = X·Xᵀ.
    pub coefficients: [f32; 3],
    pub steps: usize,
    /// X starts as G / max(‖G‖_F, eps).
    pub eps: f32,
}

impl Default for NsConsts {
    fn default() -> NsConsts {
        NsConsts { coefficients: [3.4445, -4.7750, 2.0315], steps: 5, eps: 1e-7 }
    }
}

/// The host side of muon.wgsl's MuonStep: what every Muon dispatch of a step reads, written once
/// per step into a tensor of [`MuonStep::words`] words.
#[derive(Clone, Debug, PartialEq)]
pub struct MuonStep {
    pub momentum: f32,
    pub nesterov: bool,
    /// Per matrix (its `slot` in [`MuonUpdate`]): 1 − lr·weight_decay and the adjusted lr.
    pub matrices: Vec<[f32; 2]>,
}

impl MuonStep {
    pub fn new(momentum: f32, nesterov: bool) -> MuonStep {
        MuonStep { momentum, nesterov, matrices: vec![] }
    }

    /// Adds the next matrix's scalars at Muon lr `lr` for a stored shape (rows, cols), computed
    /// in f64 and rounded once as torch's Python scalars are: keep = 1 − lr·weight_decay and
    /// adj = lr·√max(1, rows/cols) (adjust_lr "original", on the shape as stored).
    pub fn push(&mut self, lr: f64, weight_decay: f64, rows: usize, cols: usize) {
        let ratio = (rows as f64 / cols as f64).max(1.0).sqrt();
        self.matrices.push([(1.0 - lr * weight_decay) as f32, (lr * ratio) as f32]);
    }

    /// Words of a MuonStep tensor for `matrices` matrices.
    pub fn words_len(matrices: usize) -> usize {
        4 + 2 * matrices
    }

    /// The tensor's contents.
    pub fn words(&self) -> Vec<u32> {
        let one_minus = (1.0 - self.momentum as f64) as f32;
        let mut w = vec![self.momentum.to_bits(), one_minus.to_bits(), u32::from(self.nesterov), 0];
        w.extend(self.matrices.iter().flatten().map(|x| x.to_bits()));
        w
    }
}

/// Newton-Schulz's working tensors for matrices stored (rows, cols): x and y of that shape, a and
/// aa (m, m) for m = min(rows, cols) (shareable between shapes of the same m), and the partial
/// sums of x's squares.
pub struct NsScratch {
    pub x: Tensor,
    pub y: Tensor,
    pub a: Tensor,
    pub aa: Tensor,
    pub partials: Tensor,
}

impl NsScratch {
    /// (label, shape) of each tensor, what allocation and the memory plan both read.
    pub fn specs(rows: usize, cols: usize) -> [(&'static str, Vec<usize>); 5] {
        let m = rows.min(cols);
        let parts = (rows * cols).div_ceil(CHUNK).max(1);
        [
            ("ns_x", vec![rows, cols]),
            ("ns_y", vec![rows, cols]),
            ("ns_a", vec![m, m]),
            ("ns_aa", vec![m, m]),
            ("ns_partials", vec![parts]),
        ]
    }

    pub fn new(gpu: &Gpu, rows: usize, cols: usize) -> NsScratch {
        let [x, y, a, aa, partials] = NsScratch::specs(rows, cols).map(|(label, shape)| gpu.tensor(label, &shape));
        NsScratch { x, y, a, aa, partials }
    }
}

/// One Muon matrix's tensors: param (rows, cols) and its momentum buffer buf are updated in place
/// from grad (unscaled by the loss scale and scaled by the clip factor from norm (1), as AdamW's);
/// step holds the step's AdamW [`super::StepParams`] (its grad_clip), muon the [`MuonStep`]
/// where this matrix is number `slot`, scaler the loss scaler's state.
pub struct MuonUpdate<'a> {
    pub param: &'a Tensor,
    pub buf: &'a Tensor,
    pub grad: &'a Tensor,
    pub step: &'a Tensor,
    pub muon: &'a Tensor,
    pub norm: &'a Tensor,
    pub scaler: &'a Tensor,
    pub slot: usize,
}

pub struct Muon {
    momentum: Widths,
    sumsq: Pipe,
    normalize: Widths,
    axpby: Widths,
    apply: Widths,
    copy: Widths,
    stats: Pipe,
}

impl Muon {
    pub fn new(gpu: &Gpu) -> Muon {
        Muon {
            momentum: Widths::new(gpu, || step_spec("momentum")),
            sumsq: Pipe::new(gpu, ModuleSpec::new::<adamw::Params>(&["adamw.wgsl"], "sumsq")),
            normalize: Widths::new(gpu, || ns_spec("normalize")),
            axpby: Widths::new(gpu, || ns_spec("axpby")),
            apply: Widths::new(gpu, || step_spec("apply")),
            copy: Widths::new(gpu, || ns_spec("copy")),
            stats: Pipe::new(gpu, stats_spec()),
        }
    }

    /// One Muon step of `t.param` with `s` (made for its shape): momentum into s.x, s.x
    /// orthogonalised, then the update applied.
    pub fn update(&self, prog: &mut Program, matmul: &Matmul, t: MuonUpdate, s: &NsScratch, ns: NsConsts) {
        self.orthogonal_update(prog, matmul, &t, s, ns);
        self.apply(prog, &t, s);
    }

    /// [`Muon::update`] that also writes dynamics.wgsl's sums (Σg², Σw², Σ(Δw)²) of the
    /// matrix's chunks of 65536 elements into rows `stats.1 ..` of `stats.0` (chunks, 3), as
    /// [`super::UpdateStats::update`] does for AdamW: the weights are copied into s.y first.
    pub fn update_stats(
        &self,
        prog: &mut Program,
        matmul: &Matmul,
        t: MuonUpdate,
        s: &NsScratch,
        ns: NsConsts,
        stats: (&Tensor, usize),
    ) {
        self.orthogonal_update(prog, matmul, &t, s, ns);
        self.elementwise(prog, &self.copy, &[&s.y, t.param], 0, [0.0, 0.0]);
        self.apply(prog, &t, s);
        let n = t.param.numel();
        let params = adamw::Params::new(n, stats.1, 0.0);
        let tensors = [t.param, &s.y, t.grad, stats.0, t.scaler];
        prog.push(self.stats.dispatch(&params, &tensors, grid(n.div_ceil(CHUNK).max(1), 1)));
    }

    /// Momentum into s.x, then s.x orthogonalised.
    fn orthogonal_update(&self, prog: &mut Program, matmul: &Matmul, t: &MuonUpdate, s: &NsScratch, ns: NsConsts) {
        assert_eq!(t.param.shape, s.x.shape, "muon: the scratch is for another shape");
        let (pipe, n) = self.momentum.pick(t.param.numel());
        let params = adamw::Params::new(n, 0, 0.0);
        let tensors = [t.buf, &s.x, t.grad, t.step, t.norm, t.scaler, t.muon];
        prog.push(pipe.dispatch(&params, &tensors, grid(n, 64)));
        self.orthogonalize(prog, matmul, s, ns);
    }

    /// w = w·keep − adj·O for O in s.x.
    fn apply(&self, prog: &mut Program, t: &MuonUpdate, s: &NsScratch) {
        let (pipe, n) = self.apply.pick(t.param.numel());
        let params = adamw::Params::new(n, t.slot, 0.0);
        prog.push(pipe.dispatch(&params, &[t.param, &s.x, t.norm, t.scaler, t.muon], grid(n, 64)));
    }

    /// s.x (rows, cols) ← Newton-Schulz of s.x, as torch's `_zeropower_via_newtonschulz`: X / max(‖X‖_F,
    /// eps), then `ns.steps` times A = X·Xᵀ, B = b·A + c·A·A, X = a·X + B·X, on Xᵀ where
    /// rows > cols. Xᵀ is never stored: for a tall X the same sums are A = XᵀX and X = a·X + X·B
    /// (B is symmetric, exactly so in floating point: A[i][j] and A[j][i] sum the same products).
    pub fn orthogonalize(&self, prog: &mut Program, matmul: &Matmul, s: &NsScratch, ns: NsConsts) {
        let (rows, cols) = (s.x.shape[0], s.x.shape[1]);
        let n = rows * cols;
        let sumsq = adamw::Params::new(n, 0, 0.0);
        prog.push(self.sumsq.dispatch(&sumsq, &[&s.partials, &s.x], grid(n.div_ceil(CHUNK), 1)));
        let parts = n.div_ceil(CHUNK);
        self.elementwise(prog, &self.normalize, &[&s.x, &s.partials], parts, [ns.eps, 0.0]);
        let [a, b, c] = ns.coefficients;
        for _ in 0..ns.steps {
            if rows > cols {
                matmul.gemm(prog, &s.a, Operand::t(&s.x), Operand::n(&s.x), None, false);
            } else {
                matmul.gemm(prog, &s.a, Operand::n(&s.x), Operand::t(&s.x), None, false);
            }
            matmul.gemm(prog, &s.aa, Operand::n(&s.a), Operand::n(&s.a), None, false);
            self.elementwise(prog, &self.axpby, &[&s.aa, &s.a], 0, [c, b]);
            if rows > cols {
                matmul.gemm(prog, &s.y, Operand::n(&s.x), Operand::n(&s.aa), None, false);
            } else {
                matmul.gemm(prog, &s.y, Operand::n(&s.aa), Operand::n(&s.x), None, false);
            }
            self.elementwise(prog, &self.axpby, &[&s.x, &s.y], 0, [a, 1.0]);
        }
    }

    /// A normalize, axpby or copy dispatch over the first tensor's elements.
    fn elementwise(&self, prog: &mut Program, pipes: &Widths, tensors: &[&Tensor], parts: usize, ab: [f32; 2]) {
        let (pipe, n) = pipes.pick(tensors[0].numel());
        let params = NsParams { n: n as u32, parts: parts as u32, alpha: ab[0], beta: ab[1] };
        prog.push(pipe.dispatch(&params, tensors, grid(n, 64)));
    }
}
