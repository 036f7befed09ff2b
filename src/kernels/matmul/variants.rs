//! The catalogue of matrix-product kernels for the NN, NT and TN layouts ([`MatmulVariant`]):
//! the portable register tiles, the subgroup kernels of adapters with 8-wide subgroups and the
//! workgroup-tiled kernels of real GPUs, each with the module it builds and the tile of C one of
//! its workgroups computes.

use super::layout::Layout;
use super::{Params, PORTABLE, SUBGROUP, TILED};
use crate::gpu::Gpu;
use crate::kernels::{Family, ModuleSpec};

/// Columns of one register-tile invocation and that kernel's workgroup (x over columns, y over
/// rows; `@workgroup_size(8, 4)`).
pub(super) const FAST_COLS: usize = 16;
pub(super) const FAST_WG: [usize; 2] = [8, 4];
/// C covered by one workgroup of the subgroup kernels (columns, rows): 4 subgroups of 8 lanes,
/// each lane 8 columns of the subgroup's 32 rows.
const SG_TILE: [usize; 2] = [64, 128];

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
    /// Rows and columns of C per workgroup: the workgroup's output tile.
    pub fn size(&self) -> (u32, u32) {
        (self.wgy * self.tm, self.wgx * self.tn4 * 4)
    }
}

/// The tiled shapes on offer: gpu.cpp's 64x64 tiles of 8x8 per invocation with K steps of 8,
/// 128-row and 128-column tiles of the same, 4x4 per invocation in 256-invocation workgroups,
/// and 32x32 tiles for small products. Each loads whole tiles of A and B with whole invocations
/// (their vec4s are a multiple of the workgroup size; checked by the shader tests).
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
    /// matmul_tiled.wgsl: tiles of A and B staged in workgroup memory.
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

    /// e.g. `portable-r16`, `subgroup`, `tiled-64x64-k8-8x8` (tile, K step, outputs per
    /// invocation).
    pub fn name(&self) -> String {
        match self {
            MatmulVariant::Portable { rows } => format!("portable-r{rows}"),
            MatmulVariant::Subgroup => "subgroup".into(),
            MatmulVariant::Tiled(t) => {
                let (bm, bn) = t.size();
                format!("tiled-{bm}x{bn}-k{}-{}x{}", t.bk, t.tm, 4 * t.tn4)
            }
        }
    }

    pub fn parse(name: &str) -> Option<MatmulVariant> {
        MatmulVariant::all().into_iter().find(|v| v.name() == name)
    }

    /// The module of this variant's kernel for `layout` (NN, NT or TN), with B in f16 where
    /// `half` (NN and NT: inference's weights).
    pub(super) fn spec(&self, layout: Layout, half: bool) -> ModuleSpec {
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

    /// Columns and rows of C one workgroup computes (its output tile).
    pub(super) fn tile(&self) -> [usize; 2] {
        match *self {
            MatmulVariant::Portable { rows } => [FAST_COLS * FAST_WG[0], rows as usize * FAST_WG[1]],
            MatmulVariant::Subgroup => SG_TILE,
            MatmulVariant::Tiled(t) => {
                let (bm, bn) = t.size();
                [bn as usize, bm as usize]
            }
        }
    }

    /// Workgroups (x over columns, y over rows) for an M x N product.
    pub(super) fn workgroups(&self, m: usize, n: usize) -> [usize; 2] {
        let [cols, rows] = self.tile();
        [n.div_ceil(cols), m.div_ceil(rows)]
    }
}
