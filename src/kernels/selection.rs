//! Which kernel variant runs each product and each attention: a plain [`Selection`] value that
//! the recorders read. It starts from a [`Family`] (forced by the front end's `--kernels` /
//! `WGPT_KERNELS`, or `auto`) and the built-in table ([`Selection::built_in`]); the tuner above
//! the kernels (crate::tune) fills in a choice per problem, and the per-adapter cache stores
//! those choices ([`Choices`], serialised by name).
//!
//! Matrix-product variants give bit-identical results, so their choice may change at any time.
//! Attention's two numerics (classic and flash) do not: a training run records its
//! [`AttentionKind`] and keeps it on resume and after a lost device; only the implementation
//! within that numerics is chosen here ([`Selection::attention`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::matmul::{Layout, Product, TILES};
use super::{AttentionImpl, AttentionKind, AttnDims, MatmulVariant};
use crate::gpu::Gpu;
use crate::{Error, Result};

/// A family of kernels: `auto` chooses per adapter and shape; the others force one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Family {
    #[default]
    Auto,
    /// The register-tile matmuls and classic attention (no workgroup memory, no subgroups).
    Portable,
    /// The matmuls for 8-wide subgroups (lavapipe) and classic attention.
    Subgroup,
    /// The workgroup-memory matmuls and the tiled flash attention.
    Tiled,
}

impl Family {
    pub const ALL: [Family; 4] = [Family::Auto, Family::Portable, Family::Subgroup, Family::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            Family::Auto => "auto",
            Family::Portable => "portable",
            Family::Subgroup => "subgroup",
            Family::Tiled => "tiled",
        }
    }

    /// The family called `name`; the error names the flag, the variable and the values.
    pub fn parse(name: &str) -> Result<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name.trim()).ok_or_else(|| {
            Error::Input(format!(
                "unknown kernel family {name:?} (from --kernels or WGPT_KERNELS); use one of auto, portable, \
                 subgroup, tiled"
            ))
        })
    }

    /// Err if `gpu` cannot run this family.
    pub fn check(self, gpu: &Gpu) -> Result<()> {
        if self == Family::Subgroup && !gpu.subgroups_of_8() {
            return Err(Error::Input(format!(
                "--kernels / WGPT_KERNELS subgroup needs subgroups of exactly 8 invocations, natively (lavapipe \
                 has them); this adapter, {}, has subgroups of {} to {}{}; use auto, portable or tiled",
                gpu.describe(),
                gpu.info.subgroup_min_size,
                gpu.info.subgroup_max_size,
                if cfg!(target_arch = "wasm32") { " and WGSL in the browser has no subgroup kernels here" } else { "" },
            )));
        }
        Ok(())
    }
}

/// The built-in choices, what [`Selection::built_in`] picks without timing (part of the cache
/// key, so a changed table invalidates cached copies of it).
pub const BUILT_IN: &str = "8-wide subgroups (lavapipe): subgroup matmuls, flash-subgroup; other software adapters: \
                            portable-r16 (NN, NT), portable-r8 (TN), flash-rows; hardware before tuning: \
                            tiled-64x64-k8-8x8, flash-tiled";

/// Whether the adapter runs on the CPU (lavapipe, SwiftShader, WARP): auto keeps the built-in
/// table there instead of timing.
pub fn software(gpu: &Gpu) -> bool {
    let i = &gpu.info;
    let name = i.name.to_lowercase();
    i.device_type == wgpu::DeviceType::Cpu
        || ["llvmpipe", "lavapipe", "swiftshader", "warp"].iter().any(|s| name.contains(s))
}

/// The most loop iterations one invocation of the classic attention kernels may run: lavapipe
/// stops a loop at 65535 iterations, and this leaves a margin below it.
pub const CLASSIC_LOOP_CAP: usize = 60_000;

/// An attention problem: batch, query heads, key and value heads, sequence and head size (the key
/// of its choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttnShape {
    pub b: usize,
    pub nh: usize,
    pub kv: usize,
    pub t: usize,
    pub hs: usize,
}

impl AttnShape {
    /// The problem of a (B, T) batch through heads `d`.
    pub fn new(b: usize, t: usize, d: AttnDims) -> AttnShape {
        AttnShape { b, nh: d.nh, kv: d.kv, t, hs: d.hs }
    }

    pub fn dims(&self) -> AttnDims {
        AttnDims { nh: self.nh, kv: self.kv, hs: self.hs }
    }

    /// e.g. `B8 NH9 KV3 T64 hs64`.
    pub fn name(&self) -> String {
        format!("B{} NH{} KV{} T{} hs{}", self.b, self.nh, self.kv, self.t, self.hs)
    }

    /// The shape `name` names; the names of wgpt before grouped heads (`B8 NH2 T32 hs32`) read
    /// with as many KV heads as heads, so tuning caches stay valid.
    pub fn parse(s: &str) -> Option<AttnShape> {
        let parts: Vec<&str> = s.split(' ').collect();
        let tags: &[&str] = if parts.len() == 4 { &["B", "NH", "T", "hs"] } else { &["B", "NH", "KV", "T", "hs"] };
        if parts.len() != tags.len() {
            return None;
        }
        let v: Vec<usize> =
            parts.iter().zip(tags).map(|(part, tag)| part.strip_prefix(tag)?.parse().ok()).collect::<Option<_>>()?;
        match v[..] {
            [b, nh, t, hs] => Some(AttnShape { b, nh, kv: nh, t, hs }),
            [b, nh, kv, t, hs] => Some(AttnShape { b, nh, kv, t, hs }),
            _ => None,
        }
    }

    /// FLOPs of the causal half, forward (q·k and att·v over T(T+1)/2 pairs); twice that backward.
    pub fn flop(&self) -> f64 {
        // in f64: the product passes u32 (wasm32's usize) at real sizes (B 8, NH 12, T 1024, hs 64)
        let [b, nh, t, hs] = [self.b, self.nh, self.t, self.hs].map(|n| n as f64);
        2.0 * b * nh * t * (t + 1.0) * hs
    }

    /// Loop iterations of the busiest classic invocation: a forward row runs T keys of hs/4 vec4
    /// steps for the scores and again for the weighted sum, plus three passes over T (the
    /// backward's score row is lighter; its dk and dv elements run G·T).
    pub fn classic_iterations(&self) -> usize {
        let group = self.nh / self.kv.max(1);
        // saturating: a hostile T or head size is past the cap, never wrapped below it
        let (t, hs) = (self.t, self.hs);
        (t.saturating_mul(hs) / 2).saturating_add(t.saturating_mul(3)).max(group.saturating_mul(t))
    }

    /// Whether the classic kernels run this shape within [`CLASSIC_LOOP_CAP`].
    pub fn classic_fits(&self) -> bool {
        self.classic_iterations() <= CLASSIC_LOOP_CAP
    }
}

/// Where a selection's choices came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Source {
    /// The built-in table: software adapters keep it, hardware ones until tuning chooses.
    #[default]
    BuiltIn,
    /// This adapter's entry in the tuning cache.
    Cache,
    /// Timed on this adapter now.
    Tuned,
    /// A family forced by `--kernels` / `WGPT_KERNELS`.
    Forced,
}

impl Source {
    /// How the front ends say it.
    pub fn describe(self) -> &'static str {
        match self {
            Source::BuiltIn => "built-in table",
            Source::Cache => "cache",
            Source::Tuned => "tuned",
            Source::Forced => "forced by --kernels / WGPT_KERNELS",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// The choices made per problem: a variant per product, an implementation per attention shape.
/// Serialised by name (`"nn 4096x768x2304": "tiled-64x64-k8-8x8"`, `"B8 NH2 T32 hs32":
/// "flash-rows"`), as the tuning cache stores them; names that are not known (an older wgpt's)
/// are skipped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "Names", from = "Names")]
pub struct Choices {
    pub matmul: BTreeMap<Product, MatmulVariant>,
    pub attention: BTreeMap<AttnShape, AttentionImpl>,
}

/// [`Choices`] as the cache writes them.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Names {
    matmul: BTreeMap<String, String>,
    attention: BTreeMap<String, String>,
}

impl From<Choices> for Names {
    fn from(c: Choices) -> Names {
        Names {
            matmul: c.matmul.iter().map(|(p, v)| (p.name(), v.name())).collect(),
            attention: c.attention.iter().map(|(s, i)| (s.name(), i.name().to_string())).collect(),
        }
    }
}

impl From<Names> for Choices {
    fn from(n: Names) -> Choices {
        let matmul = n.matmul.iter().filter_map(|(p, v)| Some((Product::parse(p)?, MatmulVariant::parse(v)?)));
        let attention = n.attention.iter().filter_map(|(s, i)| Some((AttnShape::parse(s)?, AttentionImpl::parse(i)?)));
        Choices { matmul: matmul.collect(), attention: attention.collect() }
    }
}

/// What the kernels run: the family, the variant of products nobody chose (per layout), the
/// flash implementation of attention shapes nobody chose, the choices per problem, and where
/// they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    pub family: Family,
    /// The variant of products without a choice, for NN, NT and TN.
    pub defaults: [MatmulVariant; 3],
    /// The flash implementation of shapes without a choice.
    pub flash: AttentionImpl,
    pub choices: Choices,
    pub source: Source,
}

impl Selection {
    /// The family's selection on `gpu`, or for auto the built-in table's ([`BUILT_IN`]): the
    /// subgroup kernels where subgroups are 8 wide; on other software adapters the 16-row
    /// register tiles, 8-row ones for TN (the fastest on SwiftShader), and flash by rows; the
    /// 64x64 tiles and tiled flash elsewhere until tuning chooses. No choices yet.
    pub fn built_in(gpu: &Gpu, family: Family) -> Selection {
        let (r16, r8) = (MatmulVariant::Portable { rows: 16 }, MatmulVariant::Portable { rows: 8 });
        let tiled = MatmulVariant::Tiled(TILES[0]);
        let (defaults, flash) = match family {
            Family::Portable => ([r16; 3], AttentionImpl::FlashRows),
            Family::Subgroup => ([MatmulVariant::Subgroup; 3], AttentionImpl::FlashSubgroup),
            Family::Tiled => ([tiled; 3], AttentionImpl::FlashTiled),
            Family::Auto if gpu.subgroups_of_8() => ([MatmulVariant::Subgroup; 3], AttentionImpl::FlashSubgroup),
            Family::Auto if software(gpu) => ([r16, r16, r8], AttentionImpl::FlashRows),
            Family::Auto => ([tiled; 3], AttentionImpl::FlashTiled),
        };
        let source = if family == Family::Auto { Source::BuiltIn } else { Source::Forced };
        Selection { family, defaults, flash, choices: Choices::default(), source }
    }

    /// `variant` for every product (its family's selection otherwise): how tests and the bench
    /// run one variant.
    pub fn all_on(gpu: &Gpu, variant: MatmulVariant) -> Selection {
        Selection { defaults: [variant; 3], ..Selection::built_in(gpu, variant.family()) }
    }

    /// This selection with `cached` choices taken in (those `gpu` runs), as loaded from the
    /// cache; a forced family takes nothing from it.
    pub fn with_cached(mut self, gpu: &Gpu, cached: &Choices) -> Selection {
        if self.family != Family::Auto {
            return self;
        }
        let runs = cached.matmul.iter().filter(|(_, v)| v.runs_on(gpu));
        self.choices.matmul.extend(runs);
        self.choices.attention.extend(cached.attention.iter());
        self.source = Source::Cache;
        self
    }

    /// The variant that runs `product`.
    pub fn matmul(&self, product: &Product) -> MatmulVariant {
        let layout = [Layout::Nn, Layout::Nt, Layout::Tn].iter().position(|l| *l == product.layout).unwrap_or(0);
        self.choices.matmul.get(product).copied().unwrap_or(self.defaults[layout])
    }

    /// Whether the single-row products (a decode step) share A's row across 8-wide subgroups:
    /// where the subgroup kernels are the NN default.
    pub fn single_row_subgroup(&self) -> bool {
        self.defaults[0] == MatmulVariant::Subgroup
    }

    /// The attention implementation for `shape`, within `kind` where a run has fixed it: the
    /// family's (classic for portable and subgroup, tiled flash for tiled), or for auto the
    /// chosen one, else the built-in flash. A run fixed to the other numerics keeps them, on the
    /// family's nearest implementation. Classic never runs a shape past the loop cap
    /// ([`AttnShape::classic_fits`]): flash runs it instead ([`Selection::attention_note`]).
    pub fn attention(&self, kind: Option<AttentionKind>, shape: AttnShape) -> AttentionImpl {
        let imp = self.attention_wanted(kind, shape);
        if imp == AttentionImpl::Classic && !shape.classic_fits() {
            let chosen = self.choices.attention.get(&shape).copied();
            return chosen.filter(|i| i.kind() == AttentionKind::Flash).unwrap_or(self.flash);
        }
        imp
    }

    /// Why `shape` runs flash attention where classic was asked for (by the family or by `kind`),
    /// in a sentence for the front ends; None where it runs what was asked.
    pub fn attention_note(&self, kind: Option<AttentionKind>, shape: AttnShape) -> Option<String> {
        (self.attention_wanted(kind, shape) == AttentionImpl::Classic && !shape.classic_fits()).then(|| {
            format!(
                "attention {}: flash instead of classic, whose {} loop iterations per row would pass the cap of \
                 {CLASSIC_LOOP_CAP} (lavapipe stops loops at 65535)",
                shape.name(),
                shape.classic_iterations()
            )
        })
    }

    /// [`Selection::attention`] before the loop-cap fallback.
    fn attention_wanted(&self, kind: Option<AttentionKind>, shape: AttnShape) -> AttentionImpl {
        let chosen = self.choices.attention.get(&shape).copied();
        let default = match self.family {
            Family::Portable | Family::Subgroup => AttentionImpl::Classic,
            Family::Tiled => self.flash,
            Family::Auto => chosen.unwrap_or(self.flash),
        };
        match kind {
            Some(k) if k != default.kind() => match k {
                AttentionKind::Classic => AttentionImpl::Classic,
                AttentionKind::Flash => chosen.filter(|i| i.kind() == k).unwrap_or(self.flash),
            },
            _ => default,
        }
    }

    /// Whether every one of `products` and `attention` has a choice.
    pub fn knows(&self, products: &[Product], attention: &[AttnShape]) -> bool {
        products.iter().all(|p| self.choices.matmul.contains_key(p))
            && attention.iter().all(|s| self.choices.attention.contains_key(s))
    }

    /// Every variant this selection runs, for checking that a device runs them.
    pub fn variants(&self) -> impl Iterator<Item = MatmulVariant> + '_ {
        self.defaults.iter().chain(self.choices.matmul.values()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(t: usize, hs: usize) -> AttnShape {
        AttnShape { b: 1, nh: 12, kv: 4, t, hs }
    }

    fn portable() -> Selection {
        let r16 = MatmulVariant::Portable { rows: 16 };
        let flash = AttentionImpl::FlashRows;
        Selection {
            family: Family::Portable,
            defaults: [r16; 3],
            flash,
            choices: Choices::default(),
            source: Source::Forced,
        }
    }

    /// Classic's iterations per row, 2·T·hs/4 + 3·T, against the cap: GPT-2's longest rows fit,
    /// hs 128 fits up to T = 895 and not at 896.
    #[test]
    fn classic_loop_cap_boundary() {
        assert_eq!(shape(1024, 64).classic_iterations(), 35 * 1024);
        assert!(shape(1024, 64).classic_fits());
        assert_eq!(shape(895, 128).classic_iterations(), 59_965);
        assert!(shape(895, 128).classic_fits());
        assert_eq!(shape(896, 128).classic_iterations(), 60_032);
        assert!(!shape(896, 128).classic_fits());
        // the dk and dv elements of a group of 64 heads over one run 64·T
        assert_eq!(AttnShape { b: 1, nh: 64, kv: 1, t: 1000, hs: 4 }.classic_iterations(), 64_000);
    }

    /// Past the cap the selection runs flash where classic was asked for, by the family or by a
    /// run's fixed numerics, and says why; within it nothing changes.
    #[test]
    fn classic_falls_back_to_flash_past_the_cap() {
        let mut sel = portable();
        for kind in [None, Some(AttentionKind::Classic)] {
            assert_eq!(sel.attention(kind, shape(895, 128)), AttentionImpl::Classic);
            assert_eq!(sel.attention_note(kind, shape(895, 128)), None);
            assert_eq!(sel.attention(kind, shape(896, 128)), AttentionImpl::FlashRows);
            let note = sel.attention_note(kind, shape(896, 128)).expect("a note past the cap");
            assert!(note.contains("B1 NH12 KV4 T896 hs128") && note.contains("60032"), "{note}");
        }
        assert_eq!(sel.attention(Some(AttentionKind::Flash), shape(896, 128)), AttentionImpl::FlashRows);
        // a cached classic choice for a shape past the cap (auto) runs the built-in flash
        sel.family = Family::Auto;
        sel.choices.attention.insert(shape(896, 128), AttentionImpl::Classic);
        assert_eq!(sel.attention(None, shape(896, 128)), AttentionImpl::FlashRows);
    }

    /// Names carry the KV heads; names from before them read with KV = NH.
    #[test]
    fn shape_names_old_and_new() {
        let s = AttnShape { b: 8, nh: 9, kv: 3, t: 64, hs: 64 };
        assert_eq!(s.name(), "B8 NH9 KV3 T64 hs64");
        assert_eq!(AttnShape::parse(&s.name()), Some(s));
        assert_eq!(AttnShape::parse("B8 NH2 T32 hs32"), Some(AttnShape { b: 8, nh: 2, kv: 2, t: 32, hs: 32 }));
        for bad in ["B8 NH2 T32", "B8 NH2 KV1 T32 hs32 x", "B8 NH2 X1 T32 hs32", "B8 NH2 Tx hs32"] {
            assert_eq!(AttnShape::parse(bad), None, "{bad}");
        }
    }
}
