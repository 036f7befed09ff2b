//! The tuner: it times the kernel candidates of a run's problems (its matrix products and its
//! attention) and produces a [`Selection`] keeping the fastest ([`tune`]), where the family is
//! `auto` and the adapter is hardware; forced families and software adapters (lavapipe,
//! SwiftShader) keep the built-in table, which `wgpt bench` shows to be the fastest there. A
//! cache per adapter (vendor, device, driver, backend, wgpt version and kernels) keeps the
//! choices ([`CacheFile`]): natively a JSON file whose path the CLI hands to [`prepare`], in the
//! page the browser's storage (the page hands the JSON in and stores what comes out).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, Tensor};
use crate::kernels::matmul::{Layout, Product};
use crate::kernels::{
    software, AttentionImpl, AttnBwd, AttnDims, AttnFwd, AttnShape, Choices, Family, Kernels, MatmulVariant, Operand,
    Program, Selection, Source,
};
use crate::{Error, Result};

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

/// FNV-1a of the kernels' sources, the variants' names and the built-in table.
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
    eat(crate::kernels::BUILT_IN.as_bytes());
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

/// One adapter's choices: `{"adapter": {...}, "matmul": {product: variant}, "attention":
/// {shape: implementation}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheEntry {
    pub adapter: AdapterKey,
    #[serde(flatten)]
    pub choices: Choices,
}

/// The cache file: an entry per adapter.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CacheFile {
    pub entries: Vec<CacheEntry>,
}

impl CacheFile {
    pub fn parse(json: &str) -> Result<CacheFile> {
        serde_json::from_str(json).map_err(|e| Error::Format(format!("the kernel tuning cache is malformed: {e}")))
    }

    /// `gpu`'s entry: None where the file has none for this adapter, driver, wgpt version and
    /// kernels (an entry for another is never used).
    pub fn choices(&self, gpu: &Gpu) -> Option<&Choices> {
        let key = AdapterKey::of(gpu);
        self.entries.iter().find(|e| e.adapter == key).map(|e| &e.choices)
    }

    /// A file with `gpu`'s entry only: what the page stores (its storage holds the browser's
    /// adapter).
    pub fn one(gpu: &Gpu, choices: &Choices) -> CacheFile {
        let mut file = CacheFile::default();
        file.put(gpu, choices);
        file
    }

    /// Makes `choices` `gpu`'s entry (other adapters' entries are kept).
    pub fn put(&mut self, gpu: &Gpu, choices: &Choices) {
        let adapter = AdapterKey::of(gpu);
        self.entries.retain(|e| e.adapter != adapter);
        self.entries.push(CacheEntry { adapter, choices: choices.clone() });
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the cache serializes")
    }
}

/// The sizes of a training run that decide its problems: the model's width, heads,
/// vocabulary and MLP widths, and the batch (B, T).
#[derive(Clone, Copy, Debug)]
pub struct RunShape {
    pub n_embd: usize,
    pub attn: AttnDims,
    pub vocab: usize,
    pub b: usize,
    pub t: usize,
    /// The MLP's first product's width (I; swiglu's gate | up 2I) and its second's input (I).
    pub mlp: (usize, usize),
}

/// The problems whose kernels are chosen: matrix products and attention shapes.
#[derive(Clone, Debug, Default)]
pub struct Problems {
    pub products: Vec<Product>,
    pub attention: Vec<AttnShape>,
}

/// The matmul products and attention problems of a training run of shape `s` on `k`'s device.
pub fn run_problems(k: &Kernels, s: RunShape) -> Problems {
    let (bt, c) = (s.b * s.t, s.n_embd);
    let (qkv, atty, (fc, i)) = (s.attn.qkv_width(), s.attn.out_width(), s.mlp);
    let mut products: Vec<Product> = [(c, qkv), (atty, c), (c, fc), (i, c)]
        .into_iter()
        .flat_map(|(i, o)| Product::linear(bt, i, o))
        .chain(k.matmul.lm_head_products(bt, c, s.vocab))
        .collect();
    products.sort();
    products.dedup();
    Problems { products, attention: vec![AttnShape::new(s.b, s.t, s.attn)] }
}

/// Where a [`prepare`] left the cache file.
#[derive(Clone, Debug)]
pub enum CacheWrite {
    Written(std::path::PathBuf),
    Failed(std::path::PathBuf, String),
}

/// What a [`tune`] did.
#[derive(Clone, Debug, Default)]
pub struct TuneReport {
    /// Problems timed now (0: all came from the cache or the built-in table).
    pub timed: usize,
    /// Wall-clock milliseconds spent timing.
    pub ms: f64,
    /// Every problem timed now, its candidates and the pick.
    pub tables: Vec<Timed>,
    /// Where the choices came from.
    pub source: Source,
    /// Whether this adapter's choices changed (write the cache back).
    pub recorded: bool,
    /// Where [`prepare`] wrote the cache, or why it could not.
    pub cache: Option<CacheWrite>,
}

impl TuneReport {
    /// e.g. "tuned (cached in ~/.cache/wgpt/tune.json)", "cache", "built-in table for a software
    /// adapter": what the front ends print.
    pub fn describe(&self) -> String {
        let source = match self.source {
            // the tuner keeps the built-in table only on software adapters
            Source::BuiltIn => "built-in table for a software adapter",
            s => s.describe(),
        };
        match &self.cache {
            None => source.into(),
            Some(CacheWrite::Written(p)) => format!("{source} (cached in {})", p.display()),
            Some(CacheWrite::Failed(p, e)) => format!("{source} (the cache {} could not be written: {e})", p.display()),
        }
    }
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
/// Timed runs of each candidate (after a warm-up).
const ITERS: usize = 3;

/// Whether choices come from timing: auto on a hardware adapter.
pub fn times(gpu: &Gpu, family: Family) -> bool {
    family == Family::Auto && !software(gpu)
}

/// The candidate a problem gets from its candidates' milliseconds: the fastest where `timing`
/// (and any was timed), else `current` (the family's or the built-in table's).
pub fn decide<C: Copy>(timing: bool, times: &[(C, f64)], current: C) -> C {
    let fastest = times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map(|(c, _)| *c);
    fastest.filter(|_| timing).unwrap_or(current)
}

/// A kind of problem the tuner chooses a kernel for: its candidates, how one is timed, and
/// where its choice lives in a [`Selection`].
trait Tunable: Copy {
    type Candidate: Copy;
    fn name(&self) -> String;
    fn candidate_name(c: Self::Candidate) -> String;
    fn candidates(gpu: &Gpu, family: Family) -> Vec<Self::Candidate>;
    /// Whether `sel` has a choice for it.
    fn chosen(&self, sel: &Selection) -> bool;
    /// What `sel` runs it on.
    fn current(&self, sel: &Selection) -> Self::Candidate;
    fn keep(&self, sel: &mut Selection, c: Self::Candidate);
    /// Milliseconds of `c` on this problem, or None where `c` cannot run it.
    fn time(&self, k: &Kernels, c: Self::Candidate) -> impl Future<Output = Result<Option<f64>>>;
}

impl Tunable for Product {
    type Candidate = MatmulVariant;
    fn name(&self) -> String {
        Product::name(self)
    }
    fn candidate_name(c: MatmulVariant) -> String {
        c.name()
    }
    fn candidates(gpu: &Gpu, family: Family) -> Vec<MatmulVariant> {
        MatmulVariant::available(gpu, family)
    }
    fn chosen(&self, sel: &Selection) -> bool {
        sel.choices.matmul.contains_key(self)
    }
    fn current(&self, sel: &Selection) -> MatmulVariant {
        sel.matmul(self)
    }
    fn keep(&self, sel: &mut Selection, c: MatmulVariant) {
        sel.choices.matmul.insert(*self, c);
    }
    async fn time(&self, k: &Kernels, c: MatmulVariant) -> Result<Option<f64>> {
        Ok(Some(time_product(k, c, *self, ITERS).await?))
    }
}

impl Tunable for AttnShape {
    type Candidate = AttentionImpl;
    fn name(&self) -> String {
        AttnShape::name(self)
    }
    fn candidate_name(c: AttentionImpl) -> String {
        c.name().into()
    }
    fn candidates(gpu: &Gpu, _: Family) -> Vec<AttentionImpl> {
        AttentionImpl::ALL.into_iter().filter(|i| i.runs_on(gpu)).collect()
    }
    fn chosen(&self, sel: &Selection) -> bool {
        sel.choices.attention.contains_key(self)
    }
    fn current(&self, sel: &Selection) -> AttentionImpl {
        sel.attention(None, *self)
    }
    fn keep(&self, sel: &mut Selection, c: AttentionImpl) {
        sel.choices.attention.insert(*self, c);
    }
    /// Forward plus backward.
    async fn time(&self, k: &Kernels, c: AttentionImpl) -> Result<Option<f64>> {
        Ok(time_attention(k, c, *self, ITERS).await?.map(|(f, b)| f + b))
    }
}

/// The state of one [`tune`]: what it times with and what it did so far.
struct Timing<'a> {
    k: &'a Kernels,
    timing: bool,
    force: bool,
    start: f64,
    report: TuneReport,
}

impl Timing<'_> {
    /// Times every candidate of each of `problems` that `sel` has no choice for (all of them
    /// with `force`), until the budget is spent, and keeps the picks in `sel` where choices come
    /// from timing.
    async fn each<P: Tunable>(&mut self, sel: &mut Selection, problems: &[P]) -> Result<()> {
        for p in problems {
            let over = crate::gpu::now_ms() - self.start > BUDGET_MS;
            if !self.force && (p.chosen(sel) || over) {
                continue;
            }
            let mut times = vec![];
            for c in P::candidates(&self.k.gpu, sel.family) {
                if let Some(ms) = p.time(self.k, c).await? {
                    times.push((c, ms));
                }
            }
            let pick = decide(self.timing, &times, p.current(sel));
            if self.timing {
                if !times.is_empty() {
                    p.keep(sel, pick);
                }
                self.report.recorded = true;
            }
            let times = times.iter().map(|(c, ms)| (P::candidate_name(*c), *ms)).collect();
            self.report.tables.push(Timed { problem: p.name(), times, pick: P::candidate_name(pick) });
            self.report.timed += 1;
        }
        Ok(())
    }
}

/// Chooses kernels for `problems` from `start` (the live selection, or one loaded from the
/// cache): under auto on a hardware adapter, each problem without a choice is timed on every
/// candidate and the fastest kept; forced families and software adapters time nothing (but the
/// bench asks with `force` to see every candidate anyway), a software adapter's choices are the
/// built-in table's, recorded so that the next start finds them in the cache. Returns the
/// selection to run and what was done.
pub async fn tune(k: &Kernels, start: Selection, problems: &Problems, force: bool) -> Result<(Selection, TuneReport)> {
    let mut sel = start;
    let source = if sel.family != Family::Auto {
        Source::Forced
    } else if sel.knows(&problems.products, &problems.attention) {
        Source::Cache
    } else if software(&k.gpu) {
        Source::BuiltIn
    } else {
        Source::Tuned
    };
    sel.source = source;
    let mut report = TuneReport { source, ..TuneReport::default() };
    if source == Source::BuiltIn {
        for p in &problems.products {
            let v = p.current(&sel);
            p.keep(&mut sel, v);
        }
        for s in &problems.attention {
            let i = s.current(&sel);
            s.keep(&mut sel, i);
        }
        report.recorded = true;
    }
    if source != Source::Tuned && !force {
        return Ok((sel, report));
    }
    let timing = times(&k.gpu, sel.family);
    let mut run = Timing { k, timing, force, start: crate::gpu::now_ms(), report };
    run.each(&mut sel, &problems.products).await?;
    run.each(&mut sel, &problems.attention).await?;
    run.report.ms = crate::gpu::now_ms() - run.start;
    Ok((sel, run.report))
}

/// [`tune`] from `k`'s live selection for a training run of shape `s`, the result made live.
pub async fn tune_live(k: &Kernels, s: RunShape) -> Result<TuneReport> {
    let (sel, report) = tune(k, k.selection(), &run_problems(k, s), false).await?;
    k.set_selection(sel);
    Ok(report)
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
    let (m, n) = if p.layout == Layout::Tn { (m - m % 4, n - n % 4) } else { (m, n - n % 4) };
    let (m, n) = (m.max(4), n.max(4));
    let (a, b): (Tensor, Tensor) = match p.layout {
        Layout::Nn => (g.tensor("tune.a", &[m, p.k]), g.tensor("tune.b", &[p.k, n])),
        Layout::Nt => (g.tensor("tune.a", &[m, p.k]), g.tensor("tune.b", &[n, p.k])),
        _ => (g.tensor("tune.a", &[p.k, m]), g.tensor("tune.b", &[p.k, n])),
    };
    let out = g.tensor("tune.c", &[m, n]);
    let (ta, tb) = (p.layout == Layout::Tn, p.layout == Layout::Nt);
    let mut prog = Program::default();
    k.matmul.gemm_on(variant, &mut prog, &out, Operand { t: &a, transposed: ta }, Operand { t: &b, transposed: tb });
    let timed = Product { m, n, ..p };
    Ok(time_program(g, &prog, iters).await? * p.flop() / timed.flop())
}

/// Milliseconds of attention's forward and of its backward for `s` by `imp` (medians of `iters`
/// runs; the batch cut so the classic matrix stays within 64 MiB, times scaled back to the whole
/// batch), or None where `imp`'s saved tensor would not fit one binding at the whole batch, or
/// where `imp` is classic past its loop cap.
pub async fn time_attention(k: &Kernels, imp: AttentionImpl, s: AttnShape, iters: usize) -> Result<Option<(f64, f64)>> {
    let g = &k.gpu;
    let full: usize = imp.kind().saved_shape(s.b, s.nh, s.t).iter().product();
    if 4 * full as u64 > g.max_binding() || (imp == AttentionImpl::Classic && !s.classic_fits()) {
        return Ok(None);
    }
    let per_b = 4 * (s.nh * s.t * s.t) as u64;
    let b = s.b.min(((64 << 20) / per_b.max(1)).max(1) as usize);
    let saved_shape = imp.kind().saved_shape(b, s.nh, s.t);
    let (d, t) = (s.dims(), s.t);
    let (qkv, out) = (g.tensor("tune.qkv", &[b, t, d.qkv_width()]), g.tensor("tune.out", &[b, t, d.out_width()]));
    let (saved, scratch) = (g.tensor("tune.saved", &saved_shape), g.tensor("tune.scratch", &saved_shape));
    let (dqkv, dout) = (g.tensor("tune.dqkv", &[b, t, d.qkv_width()]), g.tensor("tune.dout", &[b, t, d.out_width()]));
    let (mut fwd, mut bwd) = (Program::default(), Program::default());
    k.attention.forward(&mut fwd, imp, AttnFwd { out: &out, saved: &saved, qkv: &qkv }, d, None);
    let tensors = AttnBwd { dqkv: &dqkv, scratch: &scratch, dout: &dout, qkv: &qkv, out: &out, saved: &saved };
    k.attention.backward(&mut bwd, imp, tensors, d, None);
    let scale = s.b as f64 / b as f64;
    Ok(Some((time_program(g, &fwd, iters).await? * scale, time_program(g, &bwd, iters).await? * scale)))
}

/// Natively: takes this adapter's cached choices from the cache file at `path` (None: no
/// cache) into `k`'s live selection, tunes what is missing for a run of shape `s`, makes the
/// result live and writes the cache back where that changed it. A cache that cannot be read or
/// written costs a retune, not the run (the report says so).
#[cfg(not(target_arch = "wasm32"))]
pub fn prepare(k: &Kernels, s: RunShape, path: Option<&std::path::Path>) -> Result<TuneReport> {
    // a missing or malformed file is replaced below
    let mut file = path.and_then(|p| std::fs::read_to_string(p).ok()).and_then(|json| CacheFile::parse(&json).ok());
    let mut start = k.selection();
    if let Some(cached) = file.as_ref().and_then(|f| f.choices(&k.gpu)) {
        start = start.with_cached(&k.gpu, cached);
    }
    let (sel, mut report) = pollster::block_on(tune(k, start, &run_problems(k, s), false))?;
    if let (true, Some(p)) = (report.recorded, path) {
        let file = file.get_or_insert_with(CacheFile::default);
        file.put(&k.gpu, &sel.choices);
        let written =
            p.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| std::fs::write(p, file.to_json()));
        report.cache = Some(match written {
            Ok(()) => CacheWrite::Written(p.to_path_buf()),
            Err(e) => CacheWrite::Failed(p.to_path_buf(), e.to_string()),
        });
    }
    k.set_selection(sel);
    Ok(report)
}
