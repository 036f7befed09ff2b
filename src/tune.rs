//! Which kernel variant runs each product and each attention, per adapter: a [`Family`] forced
//! by `--kernels` / `WGPT_KERNELS`, or `auto`, which times the candidates on the shapes a run
//! will really use ([`Tuning::tune`]) and keeps the fastest, in a cache per adapter (vendor,
//! device, driver, backend and wgpt version): natively a JSON file in the user's cache
//! directory ([`cache_path`]), in the page the browser's storage (the page hands the JSON in and
//! stores what comes out, [`Tuning::load_json`], [`Tuning::to_json`]). Software adapters
//! (lavapipe, SwiftShader) skip the timing and use a built-in table, which `wgpt bench` shows
//! to be the fastest there.
//!
//! Matrix-product variants give bit-identical results, so their choice may change at any time.
//! Attention's two numerics (classic and flash) do not: a training run records its
//! [`AttentionKind`] (in its TrainConfig) and keeps it on resume and after a lost device; only the
//! implementation within that numerics is chosen here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, Tensor};
use crate::kernels::matmul::Product;
use crate::kernels::{AttentionImpl, AttentionKind, AttnBwd, AttnFwd, Kernels, MatmulVariant, Operand, Program};
use crate::model::Gpt2Config;
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

    /// The family in the environment variable `WGPT_KERNELS` (auto when unset or empty; always
    /// auto in the browser, which has no environment).
    pub fn from_env() -> Result<Family> {
        match std::env::var("WGPT_KERNELS") {
            Ok(v) if !v.trim().is_empty() => Family::parse(&v),
            _ => Ok(Family::Auto),
        }
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

/// The built-in choices, what [`Tuning::matmul_default`] and [`Tuning::attention_impl`] pick
/// without timing (part of the cache key, so a changed table invalidates cached copies of it).
pub const BUILT_IN: &str = "8-wide subgroups (lavapipe): subgroup matmuls, flash-subgroup; other software adapters: \
                            portable-r16 (NN, NT), portable-r8 (TN), flash-rows; hardware before tuning: \
                            tiled-64x64-k8-8x8, flash-tiled";

/// What identifies an adapter in the cache: a cached choice is used only by the same adapter,
/// driver, wgpt version and kernels (a hash of every shader, variant and the built-in table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterKey {
    pub name: String,
    pub vendor: u32,
    pub device: u32,
    pub driver: String,
    pub driver_info: String,
    pub backend: String,
    pub wgpt: String,
    pub kernels: String,
}

/// FNV-1a of the kernels' sources, the variants' names and [`BUILT_IN`].
fn kernels_hash() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (name, text) in crate::kernels::SHADERS {
        eat(name.as_bytes());
        eat(text.as_bytes());
    }
    for v in MatmulVariant::all() {
        eat(v.name().as_bytes());
    }
    for i in AttentionImpl::ALL {
        eat(i.name().as_bytes());
    }
    eat(BUILT_IN.as_bytes());
    format!("{h:016x}")
}

impl AdapterKey {
    pub fn of(gpu: &Gpu) -> AdapterKey {
        let i = &gpu.info;
        AdapterKey {
            name: i.name.clone(),
            vendor: i.vendor,
            device: i.device,
            driver: i.driver.clone(),
            driver_info: i.driver_info.clone(),
            backend: format!("{:?}", i.backend),
            wgpt: env!("CARGO_PKG_VERSION").into(),
            kernels: kernels_hash(),
        }
    }
}

/// One adapter's choices: product name → matmul variant name, attention shape → implementation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheEntry {
    pub adapter: AdapterKey,
    pub matmul: BTreeMap<String, String>,
    pub attention: BTreeMap<String, String>,
}

/// The cache file: an entry per adapter.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CacheFile {
    pub entries: Vec<CacheEntry>,
}

/// An attention problem: batch, heads, sequence and head size (the key of its choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttnShape {
    pub b: usize,
    pub nh: usize,
    pub t: usize,
    pub hs: usize,
}

impl AttnShape {
    pub fn name(&self) -> String {
        format!("B{} NH{} T{} hs{}", self.b, self.nh, self.t, self.hs)
    }

    /// FLOPs of the causal half, forward (q·k and att·v over T(T+1)/2 pairs); twice that backward.
    pub fn flop(&self) -> f64 {
        2.0 * (self.b * self.nh * self.t * (self.t + 1) * self.hs) as f64
    }
}

/// What a [`Tuning::tune`] did.
#[derive(Clone, Debug, Default)]
pub struct TuneReport {
    /// Problems timed now (0: all came from the cache or the built-in table).
    pub timed: usize,
    /// Wall-clock milliseconds spent timing.
    pub ms: f64,
    /// Every problem timed now, its candidates and the pick.
    pub tables: Vec<Timed>,
    /// Where the choice came from: "tuned", "cache", "built-in table for a software adapter" or
    /// "forced by --kernels / WGPT_KERNELS".
    pub source: String,
    /// Whether this adapter's cache entry changed (write the cache back).
    pub recorded: bool,
}

/// One problem's candidates: their milliseconds and the one chosen.
#[derive(Clone, Debug)]
pub struct Timed {
    pub problem: String,
    pub times: Vec<(String, f64)>,
    pub pick: String,
}

/// Stop timing new problems after this long; the rest keep their defaults (and are timed on a
/// later start).
const BUDGET_MS: f64 = 2500.0;
/// Largest M and N a timed product is cut to (the variants' ranking does not depend on more).
const TIMED_MAX: usize = 4096;

/// The selection state of one device: the family, the attention choices and what is cached.
pub struct Tuning {
    gpu: Gpu,
    family: Family,
    attention: Mutex<HashMap<AttnShape, AttentionImpl>>,
    /// This adapter's choices, cached or new.
    entry: Mutex<CacheEntry>,
    /// The cache file given to [`Tuning::load_json`] (other adapters' entries are kept).
    file: Mutex<CacheFile>,
}

impl Tuning {
    pub fn new(gpu: &Gpu, family: Family) -> Tuning {
        let entry = CacheEntry { adapter: AdapterKey::of(gpu), matmul: BTreeMap::new(), attention: BTreeMap::new() };
        Tuning {
            gpu: gpu.clone(),
            family,
            attention: Mutex::new(HashMap::new()),
            entry: Mutex::new(entry),
            file: Mutex::new(CacheFile::default()),
        }
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// Whether the adapter runs on the CPU (lavapipe, SwiftShader, WARP): auto uses the built-in
    /// table there instead of timing.
    pub fn software(&self) -> bool {
        let i = &self.gpu.info;
        let name = i.name.to_lowercase();
        i.device_type == wgpu::DeviceType::Cpu
            || ["llvmpipe", "lavapipe", "swiftshader", "warp"].iter().any(|s| name.contains(s))
    }

    /// The matmul variants of products nobody chose, for NN, NT and TN: the family's, or for
    /// auto the built-in table's (the subgroup kernels where subgroups are 8 wide; on other
    /// software adapters the 16-row register tiles, 8-row ones for TN, the fastest on SwiftShader;
    /// the 64x64 tiles elsewhere until tuning chooses).
    pub fn matmul_defaults(&self) -> [MatmulVariant; 3] {
        let (r16, r8) = (MatmulVariant::Portable { rows: 16 }, MatmulVariant::Portable { rows: 8 });
        match self.family {
            Family::Portable => [r16; 3],
            Family::Subgroup => [MatmulVariant::Subgroup; 3],
            Family::Tiled => [MatmulVariant::Tiled(crate::kernels::matmul::TILES[0]); 3],
            Family::Auto if self.gpu.subgroups_of_8() => [MatmulVariant::Subgroup; 3],
            Family::Auto if self.software() => [r16, r16, r8],
            Family::Auto => [MatmulVariant::Tiled(crate::kernels::matmul::TILES[0]); 3],
        }
    }

    /// The attention implementation for `shape`, within `kind` where a run has fixed it: the
    /// family's (classic for portable and subgroup, tiled flash for tiled), or for auto the tuned
    /// choice, else the built-in table's (flash by subgroups where they are 8 wide, by rows on
    /// other software adapters, tiled elsewhere). A run fixed to the other numerics keeps them,
    /// on the family's nearest implementation.
    pub fn attention_impl(&self, kind: Option<AttentionKind>, shape: AttnShape) -> AttentionImpl {
        let tuned = self.attention.lock().unwrap_or_else(|e| e.into_inner()).get(&shape).copied();
        let flash = match self.family {
            Family::Portable => AttentionImpl::FlashRows,
            Family::Subgroup => AttentionImpl::FlashSubgroup,
            Family::Tiled => AttentionImpl::FlashTiled,
            Family::Auto if self.gpu.subgroups_of_8() => AttentionImpl::FlashSubgroup,
            Family::Auto if self.software() => AttentionImpl::FlashRows,
            Family::Auto => AttentionImpl::FlashTiled,
        };
        let default = match self.family {
            Family::Portable | Family::Subgroup => AttentionImpl::Classic,
            Family::Tiled => flash,
            Family::Auto => tuned.unwrap_or(flash),
        };
        match kind {
            Some(k) if k != default.kind() => match k {
                AttentionKind::Classic => AttentionImpl::Classic,
                AttentionKind::Flash => tuned.filter(|i| i.kind() == k).unwrap_or(flash),
            },
            _ => default,
        }
    }

    /// Takes this adapter's choices from a cache file's JSON; Ok(false) when the file has no
    /// entry for this adapter, driver, wgpt version and kernels (an entry for another is refused)
    /// or the family is forced.
    pub fn load_json(&self, kernels: &Kernels, json: &str) -> Result<bool> {
        let file: CacheFile = serde_json::from_str(json)
            .map_err(|e| Error::Format(format!("the kernel tuning cache is malformed: {e}")))?;
        let key = AdapterKey::of(&self.gpu);
        let found = file.entries.iter().find(|e| e.adapter == key).cloned();
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
        // a forced family takes nothing from the cache
        let Some(entry) = found.filter(|_| self.family == Family::Auto) else {
            return Ok(false);
        };
        for (product, variant) in &entry.matmul {
            if let (Some(p), Some(v)) = (Product::parse(product), MatmulVariant::parse(variant)) {
                if v.runs_on(&self.gpu) {
                    kernels.matmul.set_choice(p, v);
                }
            }
        }
        let mut attention = self.attention.lock().unwrap_or_else(|e| e.into_inner());
        for (shape, imp) in &entry.attention {
            if let (Some(s), Some(i)) = (parse_attn_shape(shape), AttentionImpl::parse(imp)) {
                attention.insert(s, i);
            }
        }
        *self.entry.lock().unwrap_or_else(|e| e.into_inner()) = entry;
        Ok(true)
    }

    /// The cache file last loaded (or an empty one) with this adapter's entry replaced by what it
    /// knows now, as JSON.
    pub fn to_json(&self) -> String {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let entry = self.entry.lock().unwrap_or_else(|e| e.into_inner()).clone();
        file.entries.retain(|e| e.adapter != entry.adapter);
        file.entries.push(entry);
        serde_json::to_string_pretty(&file).expect("the cache serializes")
    }

    /// Whether choices come from timing: auto on a hardware adapter.
    pub fn times(&self) -> bool {
        self.family == Family::Auto && !self.software()
    }

    /// The variant for `p` given every candidate's milliseconds: the fastest where choices come
    /// from timing ([`Tuning::times`], then kept and cached), else the family's or the built-in
    /// table's.
    pub fn decide_matmul(&self, k: &Kernels, p: Product, times: &[(MatmulVariant, f64)]) -> MatmulVariant {
        match fastest(times) {
            Some(pick) if self.times() => {
                k.matmul.set_choice(p, pick);
                self.entry.lock().unwrap_or_else(|e| e.into_inner()).matmul.insert(p.name(), pick.name());
                pick
            }
            _ => k.matmul.choice(&p),
        }
    }

    /// [`Tuning::decide_matmul`] for attention (times: forward plus backward).
    pub fn decide_attention(&self, s: AttnShape, times: &[(AttentionImpl, f64)]) -> AttentionImpl {
        match fastest(times) {
            Some(pick) if self.times() => {
                self.attention.lock().unwrap_or_else(|e| e.into_inner()).insert(s, pick);
                self.entry.lock().unwrap_or_else(|e| e.into_inner()).attention.insert(s.name(), pick.name().into());
                pick
            }
            _ => self.attention_impl(None, s),
        }
    }

    /// Whether `product` and `attention` already have choices (cached or tuned).
    fn known(&self, products: &[Product], attention: &[AttnShape]) -> bool {
        let e = self.entry.lock().unwrap_or_else(|e| e.into_inner());
        products.iter().all(|p| e.matmul.contains_key(&p.name()))
            && attention.iter().all(|s| e.attention.contains_key(&s.name()))
    }

    /// Chooses variants for a run of `cfg` at (B, T) (training: the backward's products too):
    /// under auto on a hardware adapter, each problem not cached is timed on every candidate and
    /// the fastest kept; forced families and software adapters time nothing (but the bench
    /// asks with `force` to see every candidate anyway). Choices apply to programs recorded
    /// afterwards.
    pub async fn tune(&self, k: &Kernels, cfg: &Gpt2Config, b: usize, t: usize, force: bool) -> Result<TuneReport> {
        let (products, attention) = run_problems(k, cfg, b, t);
        let source = if self.family != Family::Auto {
            "forced by --kernels / WGPT_KERNELS"
        } else if self.known(&products, &attention) {
            "cache"
        } else if self.software() {
            "built-in table for a software adapter"
        } else {
            "tuned"
        };
        let mut report = TuneReport { source: source.into(), ..TuneReport::default() };
        if source.starts_with("built-in") {
            // recorded, so that the next start finds this run's problems in the cache
            let mut e = self.entry.lock().unwrap_or_else(|e| e.into_inner());
            for p in &products {
                e.matmul.insert(p.name(), k.matmul.choice(p).name());
            }
            for s in &attention {
                e.attention.insert(s.name(), self.attention_impl(None, *s).name().into());
            }
            report.recorded = true;
        }
        if source != "tuned" && !force {
            return Ok(report);
        }
        let start = crate::gpu::now_ms();
        let over = || crate::gpu::now_ms() - start > BUDGET_MS;
        for p in products {
            if !force && (self.entry.lock().unwrap_or_else(|e| e.into_inner()).matmul.contains_key(&p.name()) || over())
            {
                continue;
            }
            let mut times = vec![];
            for v in MatmulVariant::available(&self.gpu, self.family) {
                times.push((v, time_product(k, v, p, 3).await?));
            }
            let pick = self.decide_matmul(k, p, &times);
            report.recorded |= self.times();
            report.tables.push(Timed {
                problem: p.name(),
                times: times.iter().map(|(v, ms)| (v.name(), *ms)).collect(),
                pick: pick.name(),
            });
            report.timed += 1;
        }
        for s in attention {
            if !force
                && (self.entry.lock().unwrap_or_else(|e| e.into_inner()).attention.contains_key(&s.name()) || over())
            {
                continue;
            }
            let mut times = vec![];
            for imp in AttentionImpl::ALL.into_iter().filter(|i| i.runs_on(&self.gpu)) {
                if let Some((f, b)) = time_attention(k, imp, s, 3).await? {
                    times.push((imp, f + b));
                }
            }
            let pick = self.decide_attention(s, &times);
            report.recorded |= self.times();
            let times = times.iter().map(|(i, ms)| (i.name().to_string(), *ms)).collect();
            report.tables.push(Timed { problem: s.name(), times, pick: pick.name().into() });
            report.timed += 1;
        }
        report.ms = crate::gpu::now_ms() - start;
        Ok(report)
    }
}

fn parse_attn_shape(s: &str) -> Option<AttnShape> {
    let v: Vec<usize> = s
        .split(' ')
        .zip(["B", "NH", "T", "hs"])
        .map(|(part, tag)| part.strip_prefix(tag)?.parse().ok())
        .collect::<Option<_>>()?;
    let [b, nh, t, hs] = v[..] else { return None };
    Some(AttnShape { b, nh, t, hs })
}

/// The fastest of timed candidates.
fn fastest<T: Copy>(times: &[(T, f64)]) -> Option<T> {
    times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map(|(v, _)| *v)
}

/// The matmul products and attention problems of a training run of `cfg` at (B, T).
pub fn run_problems(k: &Kernels, cfg: &Gpt2Config, b: usize, t: usize) -> (Vec<Product>, Vec<AttnShape>) {
    let (bt, c) = (b * t, cfg.n_embd);
    let mut products: Vec<Product> = [(c, 3 * c), (c, c), (c, 4 * c), (4 * c, c)]
        .into_iter()
        .flat_map(|(i, o)| Product::linear(bt, i, o))
        .chain(k.matmul.lm_head_products(bt, c, cfg.vocab_size))
        .collect();
    products.sort();
    products.dedup();
    (products, vec![AttnShape { b, nh: cfg.n_head, t, hs: c / cfg.n_head }])
}

/// Milliseconds of one run of `prog`: the median of `iters` GPU-timestamped runs after a
/// warm-up, or where the adapter has no timestamps the wall clock of `iters` runs ended by a
/// readback.
pub async fn time_program(gpu: &Gpu, prog: &Program, iters: usize) -> Result<f64> {
    if gpu.timestamps() {
        gpu.time_pass(|pass| prog.encode(pass)).await?;
        let mut ms = vec![];
        for _ in 0..iters.max(1) {
            ms.push(gpu.time_pass(|pass| prog.encode(pass)).await?.unwrap_or(0.0) / 1e6);
        }
        ms.sort_by(f64::total_cmp);
        return Ok(ms[ms.len() / 2]);
    }
    let sync = gpu.tensor("tune.sync", &[1]);
    gpu.run(|pass| prog.encode(pass));
    gpu.read(&sync).await?;
    let start = crate::gpu::now_ms();
    for _ in 0..iters.max(1) {
        gpu.run(|pass| prog.encode(pass));
    }
    gpu.read(&sync).await?;
    Ok((crate::gpu::now_ms() - start) / iters.max(1) as f64)
}

/// Milliseconds of `p` on `variant`: the median of `iters` runs (after a warm-up) of the product
/// cut to [`TIMED_MAX`] in M and N, scaled up to the whole product's FLOPs.
pub async fn time_product(k: &Kernels, variant: MatmulVariant, p: Product, iters: usize) -> Result<f64> {
    let g = &k.gpu;
    let (m, n) = (p.m.min(TIMED_MAX), p.n.min(TIMED_MAX));
    let (m, n) = if p.layout == crate::kernels::matmul::Layout::Tn { (m - m % 4, n - n % 4) } else { (m, n - n % 4) };
    let (m, n) = (m.max(4), n.max(4));
    let (a, b): (Tensor, Tensor) = match p.layout {
        crate::kernels::matmul::Layout::Nn => (g.tensor("tune.a", &[m, p.k]), g.tensor("tune.b", &[p.k, n])),
        crate::kernels::matmul::Layout::Nt => (g.tensor("tune.a", &[m, p.k]), g.tensor("tune.b", &[n, p.k])),
        _ => (g.tensor("tune.a", &[p.k, m]), g.tensor("tune.b", &[p.k, n])),
    };
    let out = g.tensor("tune.c", &[m, n]);
    let (ta, tb) = (p.layout == crate::kernels::matmul::Layout::Tn, p.layout == crate::kernels::matmul::Layout::Nt);
    let mut prog = Program::default();
    k.matmul.gemm_on(variant, &mut prog, &out, Operand { t: &a, transposed: ta }, Operand { t: &b, transposed: tb });
    let timed = Product { m, n, ..p };
    Ok(time_program(g, &prog, iters).await? * p.flop() / timed.flop())
}

/// Milliseconds of attention's forward and of its backward for `s` by `imp` (medians of `iters`
/// runs; the batch cut so the classic matrix stays within 64 MiB, times scaled back to the whole
/// batch), or None where `imp`'s saved tensor would not fit one binding at the whole batch.
pub async fn time_attention(k: &Kernels, imp: AttentionImpl, s: AttnShape, iters: usize) -> Result<Option<(f64, f64)>> {
    let g = &k.gpu;
    let full: usize = imp.kind().saved_shape(s.b, s.nh, s.t).iter().product();
    if 4 * full as u64 > g.max_binding() {
        return Ok(None);
    }
    let per_b = 4 * (s.nh * s.t * s.t) as u64;
    let b = s.b.min(((64 << 20) / per_b.max(1)).max(1) as usize);
    let saved_shape = imp.kind().saved_shape(b, s.nh, s.t);
    let c = s.nh * s.hs;
    let (qkv, out) = (g.tensor("tune.qkv", &[b, s.t, 3 * c]), g.tensor("tune.out", &[b, s.t, c]));
    let (saved, scratch) = (g.tensor("tune.saved", &saved_shape), g.tensor("tune.scratch", &saved_shape));
    let (dqkv, dout) = (g.tensor("tune.dqkv", &[b, s.t, 3 * c]), g.tensor("tune.dout", &[b, s.t, c]));
    let (mut fwd, mut bwd) = (Program::default(), Program::default());
    k.attention.forward(&mut fwd, imp, AttnFwd { out: &out, saved: &saved, qkv: &qkv }, s.nh, None);
    let tensors = AttnBwd { dqkv: &dqkv, scratch: &scratch, dout: &dout, qkv: &qkv, out: &out, saved: &saved };
    k.attention.backward(&mut bwd, imp, tensors, s.nh, None);
    let scale = s.b as f64 / b as f64;
    Ok(Some((time_program(g, &fwd, iters).await? * scale, time_program(g, &bwd, iters).await? * scale)))
}

/// The native cache file: `WGPT_TUNE_CACHE` if set, else wgpt/tune.json in the user's cache
/// directory (XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on
/// Windows); None where none is known.
#[cfg(not(target_arch = "wasm32"))]
pub fn cache_path() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("WGPT_TUNE_CACHE") {
        return Some(p);
    }
    let dir = if cfg!(target_os = "windows") {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    }?;
    Some(dir.join("wgpt").join("tune.json"))
}

/// Natively: takes this adapter's cached choices from [`cache_path`], tunes what is missing for
/// a run of `cfg` at (B, T) and writes the cache back where that changed it. A cache that cannot
/// be read or written costs a retune, not the run (the report's source says so).
#[cfg(not(target_arch = "wasm32"))]
pub fn prepare(k: &Kernels, cfg: &Gpt2Config, b: usize, t: usize) -> Result<TuneReport> {
    prepare_with(k, cfg, b, t, cache_path().as_deref())
}

/// [`prepare`] with the cache file at `path` (None: no cache).
#[cfg(not(target_arch = "wasm32"))]
pub fn prepare_with(
    k: &Kernels,
    cfg: &Gpt2Config,
    b: usize,
    t: usize,
    path: Option<&std::path::Path>,
) -> Result<TuneReport> {
    if let Some(json) = path.and_then(|p| std::fs::read_to_string(p).ok()) {
        // a malformed file is replaced below
        let _ = k.tuning.load_json(k, &json);
    }
    let mut report = pollster::block_on(k.tuning.tune(k, cfg, b, t, false))?;
    if let (true, Some(p)) = (report.recorded, path) {
        let written =
            p.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| std::fs::write(p, k.tuning.to_json()));
        report.source = match written {
            Ok(()) => format!("{} (cached in {})", report.source, p.display()),
            Err(e) => format!("{} (the cache {} could not be written: {e})", report.source, p.display()),
        };
    }
    Ok(report)
}
