//! Matrix products (shaders/matmul*.wgsl): Conv1D's x·W + b, lm_head's x·wteᵀ, and (for
//! backward) products with transposed operands. The three layouts GPT-2 uses (NN, NT, TN) run on
//! one of several families of kernels with identical results ([`MatmulVariant`], in
//! variants.rs), chosen per product by the live [`Selection`] that [`Matmul`] keeps; single-row
//! products (a decode step) run on vector-matrix kernels, and anything else on one strided
//! generic kernel. By concern: layout.rs (operands, layouts, products), variants.rs (the
//! catalogue), record.rs (the recorders), slicing.rs (cutting a dispatch for the submit plan),
//! half.rs (f16 copies of weights).
//!
//! Words: a workgroup computes a *tile* of C; a dispatch reads a *window* of an operand's
//! columns; the submit plan cuts a dispatch into *slices* of C; K and wte are bound in *chunks*.

mod half;
mod layout;
mod record;
mod slicing;
mod variants;

use std::sync::{Arc, Mutex};

pub use layout::{Layout, Operand, Product, Window};
pub use record::{LinearBwd, LmHeadBwd};
pub use variants::{MatmulVariant, Tile, PORTABLE_ROWS, TILES};

use super::{ModuleSpec, Pipe, PipeCache, Selection};
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
    /// C[m, n] is c[c_off + m·ldc + n] (0 and N but for NT's column windows and slices).
    c_off: u32,
    ldc: u32,
}

const FLAG_BIAS: u32 = 1;
const FLAG_ACCUMULATE: u32 = 2;
/// Rows of the register-tile kernels that every family shares (NN1, TN1: the unaligned layouts).
/// On lavapipe 16x16 tiles were the best overall of 4x8, 8x8, 8x16 and 16x8 ones (1.5-2x over
/// 4x8 at 1024³: more FMAs per load; smaller tiles only win on small ragged products).
const SHARED_ROWS: u32 = 16;
/// Longest K one dispatch handles; longer products are split into accumulating chunks (lavapipe
/// caps an invocation at 65535 loop iterations). A multiple of 4, so chunks keep vec4 alignment.
/// Every family chunks alike, so their results stay bit-identical.
pub const K_CHUNK: usize = 16384;

const PORTABLE: &[&str] = &["matmul.wgsl"];
const SUBGROUP: &[&str] = &["matmul.wgsl", "matmul_subgroup.wgsl"];
const TILED: &[&str] = &["matmul.wgsl", "matmul_tiled.wgsl"];

pub(super) fn modules() -> Vec<ModuleSpec> {
    let shared = |e| ModuleSpec::new::<Params>(PORTABLE, e);
    let mut all = vec![shared("forward"), shared("bias_backward"), shared("vm"), shared("vmt")];
    all.extend(["nn1", "tn1"].map(|e| shared(e).var("ROWS", SHARED_ROWS)));
    all.extend(["svm", "svmt"].map(single_row_subgroup));
    all.extend(["vm", "vmt", "to_f16"].map(|e| half::half(shared(e))));
    all.extend(["svm", "svmt"].map(|e| half::half(single_row_subgroup(e))));
    for v in MatmulVariant::all() {
        all.extend([Layout::Nn, Layout::Nt, Layout::Tn].map(|l| v.spec(l, false)));
        all.extend([Layout::Nn, Layout::Nt].map(|l| v.spec(l, true)));
    }
    all
}

/// VM and VMT for 8-wide subgroups (matmul_subgroup.wgsl's svm, svmt: the row of A loaded once
/// per subgroup; the same fma order), used where the subgroup kernels are the default.
fn single_row_subgroup(entry: &'static str) -> ModuleSpec {
    ModuleSpec { subgroups: true, ..ModuleSpec::new::<Params>(SUBGROUP, entry) }
}

/// The kernels that every family shares: the generic strided product, the bias backward, the
/// unaligned layouts and the f16 conversion.
struct Shared {
    generic: Arc<Pipe>,
    bias_bwd: Pipe,
    nn1: Arc<Pipe>,
    tn1: Arc<Pipe>,
    to_f16: Pipe,
}

pub struct Matmul {
    gpu: Gpu,
    shared: Shared,
    /// The NN, NT and TN pipelines of each variant made so far (and NN and NT with B in f16).
    pipes: PipeCache<(MatmulVariant, Layout, bool)>,
    /// The single-row (VM, VMT) pipelines made so far, by layout, f16 B and 8-wide subgroups.
    single: PipeCache<(Layout, bool, bool)>,
    /// The live selection: which variant runs each product (read whenever a product is
    /// recorded) and, for the model, each attention.
    selection: Mutex<Selection>,
    /// Bound where there is no bias (four floats: the vec4 kernels bind it as one vec4).
    no_bias: Tensor,
}

impl Matmul {
    /// The kernels of `gpu`, running `selection` (whose variants `gpu` must run).
    // in the browser wgpu's types are not Send: there is one thread, the Arcs only share
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn new(gpu: &Gpu, selection: Selection) -> Matmul {
        check_runs(gpu, &selection);
        let shared = |e| Pipe::new(gpu, ModuleSpec::new::<Params>(PORTABLE, e));
        let rows = |e| Pipe::new(gpu, ModuleSpec::new::<Params>(PORTABLE, e).var("ROWS", SHARED_ROWS));
        Matmul {
            gpu: gpu.clone(),
            shared: Shared {
                generic: Arc::new(shared("forward")),
                bias_bwd: shared("bias_backward"),
                nn1: Arc::new(rows("nn1")),
                tn1: Arc::new(rows("tn1")),
                to_f16: Pipe::new(gpu, half::half(ModuleSpec::new::<Params>(PORTABLE, "to_f16"))),
            },
            pipes: PipeCache::new(gpu),
            single: PipeCache::new(gpu),
            selection: Mutex::new(selection),
            no_bias: gpu.tensor("no_bias", &[4]),
        }
    }

    /// A copy of the live selection.
    pub fn selection(&self) -> Selection {
        self.live().clone()
    }

    /// Runs `selection` (whose variants the device must run) in programs recorded from now on.
    pub fn set_selection(&self, selection: Selection) {
        check_runs(&self.gpu, &selection);
        *self.live() = selection;
    }

    /// The variant that runs `product` now.
    pub fn choice(&self, product: &Product) -> MatmulVariant {
        self.live().matmul(product)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Selection> {
        self.selection.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pipe(&self, variant: MatmulVariant, layout: Layout, half: bool) -> Arc<Pipe> {
        self.pipes.get((variant, layout, half), || variant.spec(layout, half))
    }

    /// The single-row pipe of `layout` (VM or VMT), sharing A's row across the subgroup where
    /// the selection's default is the subgroup kernels.
    fn single_row(&self, layout: Layout, half: bool) -> Arc<Pipe> {
        let subgroup = self.live().single_row_subgroup();
        let (entry, subgroup_entry) = if layout == Layout::Vm { ("vm", "svm") } else { ("vmt", "svmt") };
        self.single.get((layout, half, subgroup), || {
            let spec =
                if subgroup { single_row_subgroup(subgroup_entry) } else { ModuleSpec::new::<Params>(PORTABLE, entry) };
            ModuleSpec { f16: half, ..spec }
        })
    }
}

/// Panics unless `gpu` runs every variant of `selection`.
fn check_runs(gpu: &Gpu, selection: &Selection) {
    for v in selection.variants() {
        assert!(v.runs_on(gpu), "{} does not run on {}", v.name(), gpu.describe());
    }
}
