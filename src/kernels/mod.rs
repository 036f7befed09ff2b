//! The Rust side of the WGSL kernels in `shaders/`: one file per layer, each with a params
//! struct that mirrors its WGSL struct, its pipelines and recorders that append dispatches to a
//! [`Program`]. Every entry point is a module of its own (the shared prelude, its file's header
//! and its section; see [`template`]), so its tensors bind from 1 in the order the recorder
//! passes them, after the params at 0. Pipelines are built on first use and kept; a program's
//! bind groups are built once per (B, T) and replayed every step.

mod adamw;
pub mod attention;
mod crossentropy;
mod decode;
pub mod dropout;
mod dynamics;
mod elementwise;
mod encoder;
pub mod layernorm;
mod lens;
pub mod matmul;
mod muon;
mod optim;
pub mod rope;
mod selection;
pub mod template;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub use adamw::{AdamW, AdamWUpdate, ScalerHead, StepParams, BIAS_WINDOW};
pub use attention::{Attention, AttentionImpl, AttentionKind, AttnBwd, AttnDims, AttnFwd};
pub use crossentropy::{CrossEntropy, CrossEntropyBwd, CrossEntropyFwd, IGNORE, MAX_VOCAB, MAX_WIDE_VOCAB};
pub use decode::{Decode, DecodeAttn, DecodeDims, DecodeEmbed};
pub use dropout::{Dropout, Site};
pub use dynamics::{UpdateStats, SUMS};
pub use elementwise::{Act, Activation, Residual, Softcap};
pub use encoder::{Encoder, EncoderBuckets};
pub use layernorm::{LayerNorm, LayerNormBwd, LayerNormFwd, NormKind};
pub use lens::RowTop1;
pub use matmul::{LinearBwd, LmHeadBwd, Matmul, MatmulVariant, Operand, Window};
pub use muon::{Muon, MuonStep, MuonUpdate, NsConsts, NsScratch};
pub use optim::{Sgd, SgdConsts, SgdUpdate};
pub use rope::{rope_table, QkNorm, Rope, RopeBwd, RopeDims, RopeFwd};
pub use selection::{software, AttnShape, Choices, Family, Selection, Source, BUILT_IN};

use crate::gpu::{Buffer, Gpu, Tensor};
use crate::Result;

/// The shared prelude, put before every module.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// Every WGSL file of shaders/, by name (the shader tests check the list against the folder).
pub const SHADERS: &[(&str, &str)] = &[
    ("adamw.wgsl", include_str!("../../shaders/adamw.wgsl")),
    ("attention.wgsl", include_str!("../../shaders/attention.wgsl")),
    ("crossentropy.wgsl", include_str!("../../shaders/crossentropy.wgsl")),
    ("decode.wgsl", include_str!("../../shaders/decode.wgsl")),
    ("dropout.wgsl", include_str!("../../shaders/dropout.wgsl")),
    ("dynamics.wgsl", include_str!("../../shaders/dynamics.wgsl")),
    ("encoder.wgsl", include_str!("../../shaders/encoder.wgsl")),
    ("flash_attention.wgsl", include_str!("../../shaders/flash_attention.wgsl")),
    ("layernorm.wgsl", include_str!("../../shaders/layernorm.wgsl")),
    ("lens.wgsl", include_str!("../../shaders/lens.wgsl")),
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    ("matmul_subgroup.wgsl", include_str!("../../shaders/matmul_subgroup.wgsl")),
    ("matmul_tiled.wgsl", include_str!("../../shaders/matmul_tiled.wgsl")),
    ("mlp.wgsl", include_str!("../../shaders/mlp.wgsl")),
    ("muon.wgsl", include_str!("../../shaders/muon.wgsl")),
    ("optim.wgsl", include_str!("../../shaders/optim.wgsl")),
    ("prelude.wgsl", PRELUDE),
    ("residual.wgsl", include_str!("../../shaders/residual.wgsl")),
    ("rope.wgsl", include_str!("../../shaders/rope.wgsl")),
    ("softcap.wgsl", include_str!("../../shaders/softcap.wgsl")),
    ("softmax_row.wgsl", include_str!("../../shaders/softmax_row.wgsl")),
];

fn shader(file: &str) -> &'static str {
    SHADERS.iter().find(|(f, _)| *f == file).map(|(_, s)| *s).unwrap_or_else(|| panic!("{file} is not in SHADERS"))
}

/// Where one entry point's module comes from: the files whose headers it starts with (the last
/// holds its section), the entry's name and the template variables of this instance.
#[derive(Clone, Debug)]
pub struct ModuleSpec {
    pub files: &'static [&'static str],
    pub entry: &'static str,
    pub vars: template::Vars,
    /// Size of the Rust params struct written to binding 0 (tests compare it with the WGSL one).
    pub params_size: usize,
    /// Whether the module uses subgroup operations (adapters with 8-wide subgroups only).
    pub subgroups: bool,
    /// Whether the matmul's B operand is f16 (`enable f16;`, adapters with shader-f16 only): the
    /// template variable BT is its element type, f16 here and f32 in every other module.
    pub f16: bool,
}

impl ModuleSpec {
    pub fn new<P>(files: &'static [&'static str], entry: &'static str) -> ModuleSpec {
        ModuleSpec { files, entry, vars: vec![], params_size: std::mem::size_of::<P>(), subgroups: false, f16: false }
    }

    pub fn var(mut self, name: &'static str, value: impl ToString) -> ModuleSpec {
        self.vars.push((name, value.to_string()));
        self
    }

    /// The module's WGSL: the prelude, every file's header, the snippets the section asks for
    /// (`//#use @name` lines) and the section, with the template expanded.
    pub fn wgsl(&self) -> String {
        // `enable` comes before any declaration
        let mut text = String::from(if self.f16 { "enable f16;\n" } else { "" });
        text.push_str(PRELUDE);
        for f in self.files {
            text.push_str(template::split_entries(shader(f)).0);
        }
        let last = self.files.last().expect("a module has a file");
        let section = template::entry_section(shader(last), self.entry)
            .unwrap_or_else(|| panic!("{last} has no entry {}", self.entry));
        for line in section.lines() {
            if let Some(snippet) = line.trim().strip_prefix("//#use ") {
                let found = self.files.iter().find_map(|f| template::entry_section(shader(f), snippet.trim()));
                text.push_str(found.unwrap_or_else(|| panic!("no snippet {snippet} for {}", self.entry)));
            }
        }
        text.push_str(section);
        let mut vars = self.vars.clone();
        vars.push(("BT", if self.f16 { "f16" } else { "f32" }.into()));
        template::expand(&text, &vars)
    }

    /// A label naming the file, entry and variables, e.g. `matmul.nn[ROWS=16]`.
    pub fn label(&self) -> String {
        let file = self.files.last().expect("a module has a file").trim_end_matches(".wgsl");
        let mut vars: Vec<String> = self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if self.f16 {
            vars.push("BT=f16".into());
        }
        if vars.is_empty() {
            format!("{file}.{}", self.entry)
        } else {
            format!("{file}.{}[{}]", self.entry, vars.join(","))
        }
    }
}

/// Every module any kernel builds (a representative set of instances where variables depend on
/// the model, e.g. head sizes): what the shader tests validate and check params sizes of.
pub fn all_modules() -> Vec<ModuleSpec> {
    let mut all = vec![];
    all.extend(adamw::modules());
    all.extend(attention::modules());
    all.extend(crossentropy::modules());
    all.extend(decode::modules());
    all.extend(dropout::modules());
    all.extend(dynamics::modules());
    all.extend(elementwise::modules());
    all.extend(encoder::modules());
    all.extend(layernorm::modules());
    all.extend(lens::modules());
    all.extend(matmul::modules());
    all.extend(muon::modules());
    all.extend(optim::modules());
    all.extend(rope::modules());
    all
}

/// All kernels of one device. The live [`Selection`] (which variant runs each product and each
/// attention) is kept by the matmul recorders, which read it whenever they record; the model
/// reads attention's choice from it.
pub struct Kernels {
    pub gpu: Gpu,
    pub encoder: Encoder,
    pub layernorm: LayerNorm,
    pub matmul: Matmul,
    pub attention: Attention,
    pub gelu: Activation,
    pub relu2: Activation,
    pub swiglu: Activation,
    pub residual: Residual,
    pub softcap: Softcap,
    pub crossentropy: CrossEntropy,
    pub adamw: AdamW,
    pub muon: Muon,
    pub dropout: Dropout,
    pub decode: Decode,
    pub update_stats: UpdateStats,
    pub row_top1: RowTop1,
    pub sgd: Sgd,
    pub rope: Rope,
}

impl Kernels {
    /// The kernels of `gpu` using `family`'s built-in selection ([`Selection::built_in`]); a
    /// family this adapter cannot run is an error saying what it takes.
    pub fn with_family(gpu: &Gpu, family: Family) -> Result<Kernels> {
        family.check(gpu)?;
        Ok(Kernels::with_selection(gpu, Selection::built_in(gpu, family)))
    }

    /// The kernels of `gpu` running `selection` (whose variants `gpu` must run).
    pub fn with_selection(gpu: &Gpu, selection: Selection) -> Kernels {
        Kernels {
            gpu: gpu.clone(),
            encoder: Encoder::new(gpu),
            layernorm: LayerNorm::new(gpu),
            matmul: Matmul::new(gpu, selection),
            attention: Attention::new(gpu),
            gelu: Activation::new(gpu, Act::Gelu),
            relu2: Activation::new(gpu, Act::Relu2),
            swiglu: Activation::new(gpu, Act::SwiGlu),
            residual: Residual::new(gpu),
            softcap: Softcap::new(gpu),
            crossentropy: CrossEntropy::new(gpu),
            adamw: AdamW::new(gpu),
            muon: Muon::new(gpu),
            dropout: Dropout::new(gpu),
            decode: Decode::new(gpu),
            update_stats: UpdateStats::new(gpu),
            row_top1: RowTop1::new(gpu),
            sgd: Sgd::new(gpu),
            rope: Rope::new(gpu),
        }
    }

    /// A copy of the live selection.
    pub fn selection(&self) -> Selection {
        self.matmul.selection()
    }

    /// Makes `selection` live: programs recorded from now on run it.
    pub fn set_selection(&self, selection: Selection) {
        self.matmul.set_selection(selection);
    }

    pub fn family(&self) -> Family {
        self.matmul.selection().family
    }

    /// The MLP's nonlinearity `act`.
    pub fn activation(&self, act: Act) -> &Activation {
        match act {
            Act::Gelu => &self.gelu,
            Act::Relu2 => &self.relu2,
            Act::SwiGlu => &self.swiglu,
        }
    }
}

/// One entry point: its module's source and, once first used, its pipeline (auto layout).
pub struct Pipe {
    gpu: Gpu,
    spec: ModuleSpec,
    label: Arc<str>,
    pipeline: OnceLock<wgpu::ComputePipeline>,
}

impl Pipe {
    pub fn new(gpu: &Gpu, spec: ModuleSpec) -> Pipe {
        let label = spec.label().into();
        Pipe { gpu: gpu.clone(), spec, label, pipeline: OnceLock::new() }
    }

    fn pipeline(&self) -> &wgpu::ComputePipeline {
        self.pipeline.get_or_init(|| {
            let module = self.gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&self.label),
                source: wgpu::ShaderSource::Wgsl(self.spec.wgsl().into()),
            });
            self.gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&self.label),
                layout: None,
                module: &module,
                entry_point: Some(self.spec.entry),
                compilation_options: Default::default(),
                cache: None,
            })
        })
    }

    /// A dispatch of this entry point over `workgroups`, with `params` in a uniform buffer of its
    /// own at binding 0 and `tensors` at bindings 1, 2, ... in order.
    pub fn dispatch<P: bytemuck::Pod>(&self, params: &P, tensors: &[&Tensor], workgroups: [u32; 3]) -> Dispatch {
        debug_assert_eq!(std::mem::size_of::<P>(), self.spec.params_size, "{}: params type", self.label);
        let gpu = &self.gpu;
        let pipeline = self.pipeline();
        let uniform = gpu.uniform(&self.label, params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.raw.as_entire_binding() }];
        for (i, t) in tensors.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: 1 + i as u32, resource: t.binding() });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&self.label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch { pipeline: pipeline.clone(), bind_group, workgroups, label: self.label.clone(), _uniform: uniform }
    }
}

/// One elementwise entry point in its scalar and vec4 instances (template variables T, the
/// element type, W its width and V4 = W == 4):
/// the vec4 one runs where the length is a multiple of 4, a quarter of the loads (on lavapipe a
/// load costs about the same whatever its width) and the same operations per element.
pub struct Widths {
    scalar: Pipe,
    vec4: Pipe,
}

impl Widths {
    pub fn new(gpu: &Gpu, spec: impl Fn() -> ModuleSpec) -> Widths {
        Widths { scalar: Pipe::new(gpu, Widths::spec(spec(), false)), vec4: Pipe::new(gpu, Widths::spec(spec(), true)) }
    }

    /// `spec` for elements of one width.
    pub fn spec(spec: ModuleSpec, vec4: bool) -> ModuleSpec {
        let t = if vec4 { "vec4<f32>" } else { "f32" };
        spec.var("T", t).var("V4", u32::from(vec4)).var("W", if vec4 { 4 } else { 1 })
    }

    /// Both instances of `spec`, for the shader tests.
    pub fn specs(spec: ModuleSpec) -> [ModuleSpec; 2] {
        [Widths::spec(spec.clone(), false), Widths::spec(spec, true)]
    }

    /// The pipe for `n` elements and how many of its elements they are.
    pub fn pick(&self, n: usize) -> (&Pipe, usize) {
        if n.is_multiple_of(4) {
            (&self.vec4, n / 4)
        } else {
            (&self.scalar, n)
        }
    }
}

/// Pipes made on first use by key, for kernels with many instances (matmul variants, flash
/// attention per head size).
pub struct PipeCache<K> {
    gpu: Gpu,
    pipes: Mutex<HashMap<K, Arc<Pipe>>>,
}

impl<K: std::hash::Hash + Eq> PipeCache<K> {
    pub fn new(gpu: &Gpu) -> PipeCache<K> {
        PipeCache { gpu: gpu.clone(), pipes: Mutex::new(HashMap::new()) }
    }

    /// The pipe of `key`, made from `spec()` the first time.
    // in the browser wgpu's types are not Send: there is one thread, the Arc only shares
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn get(&self, key: K, spec: impl FnOnce() -> ModuleSpec) -> Arc<Pipe> {
        let mut pipes = self.pipes.lock().unwrap_or_else(|e| e.into_inner());
        pipes.entry(key).or_insert_with(|| Arc::new(Pipe::new(&self.gpu, spec()))).clone()
    }
}

/// A recorded kernel launch: replayable any number of times.
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    label: Arc<str>,
    _uniform: Buffer,
}

impl Dispatch {
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// A launch that can also run as several dispatches, each over a slice of its output, with the
/// same results: what lets a submit plan (crate::submit) cut a dispatch that alone would keep a
/// submit past its budget. A cut's dispatches are made once, by [`Slices::prepare`] before any
/// of them is encoded, and kept for every later run cut the same way.
pub trait Slices: wgpu::WasmNotSendSync {
    /// The launch uncut.
    fn whole(&self) -> &Dispatch;

    /// Into how many slices it can be cut.
    fn max_slices(&self) -> usize;

    /// Makes the dispatches of the cut into `of` slices (2 ..= [`Slices::max_slices`]) unless
    /// they were made before.
    fn prepare(&self, of: usize);

    /// Records slice `j` of the cut into `of`, made by [`Slices::prepare`].
    fn encode_slice(&self, pass: &mut wgpu::ComputePass<'_>, j: usize, of: usize);
}

/// One entry of a [`Program`]: a dispatch, or a launch that can be cut into slices.
pub enum Launch {
    Whole(Dispatch),
    Sliceable(Box<dyn Slices>),
}

impl Launch {
    /// The launch uncut.
    pub fn dispatch(&self) -> &Dispatch {
        match self {
            Launch::Whole(d) => d,
            Launch::Sliceable(s) => s.whole(),
        }
    }

    /// Into how many slices it can be cut (1: it cannot).
    pub fn max_slices(&self) -> usize {
        match self {
            Launch::Whole(_) => 1,
            Launch::Sliceable(s) => s.max_slices(),
        }
    }

    /// Makes the dispatches of the cut into `of` slices where it has them (nothing for 1);
    /// call it before [`Launch::encode_slice`] with that `of`, outside the compute pass.
    pub fn prepare(&self, of: usize) {
        match self {
            Launch::Sliceable(s) if of > 1 => s.prepare(of),
            _ => {}
        }
    }

    /// Records slice `j` of this launch cut into `of` (at most [`Launch::max_slices`], prepared;
    /// 1: the whole launch).
    pub fn encode_slice(&self, pass: &mut wgpu::ComputePass<'_>, j: usize, of: usize) {
        match self {
            Launch::Sliceable(s) if of > 1 => s.encode_slice(pass, j, of),
            _ => self.dispatch().encode(pass),
        }
    }
}

/// A list of launches recorded once and encoded into a compute pass as often as needed.
#[derive(Default)]
pub struct Program {
    launches: Vec<Launch>,
}

impl Program {
    pub fn push(&mut self, d: Dispatch) {
        self.launches.push(Launch::Whole(d));
    }

    pub fn push_launch(&mut self, l: Launch) {
        self.launches.push(l);
    }

    pub fn len(&self) -> usize {
        self.launches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.launches.is_empty()
    }

    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.encode_range(pass, 0..self.launches.len());
    }

    /// Encodes launches `range` only, each whole (a split submit's part of a program).
    pub fn encode_range(&self, pass: &mut wgpu::ComputePass<'_>, range: std::ops::Range<usize>) {
        for l in &self.launches[range] {
            l.dispatch().encode(pass);
        }
    }

    pub fn launches(&self) -> &[Launch] {
        &self.launches
    }

    /// Runs each launch in a pass of its own, timed by GPU timestamps, and adds its
    /// milliseconds to `by_kernel` under its pipeline's label (the order of first appearance).
    /// Nothing where the device has no timestamp queries.
    pub async fn profile(&self, gpu: &Gpu, by_kernel: &mut Vec<(String, f64)>) -> Result<()> {
        for l in &self.launches {
            let d = l.dispatch();
            let Some(ns) = gpu.time_pass(|pass| d.encode(pass)).await? else {
                return Ok(());
            };
            match by_kernel.iter_mut().find(|(label, _)| **label == *d.label) {
                Some((_, ms)) => *ms += ns / 1e6,
                None => by_kernel.push((d.label.to_string(), ns / 1e6)),
            }
        }
        Ok(())
    }
}

/// Workgroups for `n` invocations in groups of `wg` on a 2D grid (x at most 65535, WebGPU's
/// per-dimension limit); shaders rebuild the index with the prelude's flat_index.
pub fn grid(n: usize, wg: usize) -> [u32; 3] {
    let groups = n.div_ceil(wg).max(1);
    let x = groups.min(65535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// A `#[repr(C)]` params block of four u32s, the shape most elementwise kernels use.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Dims4 {
    pub a: u32,
    pub b: u32,
    pub c: u32,
    pub d: u32,
}

impl Dims4 {
    pub fn new(a: usize, b: usize, c: usize, d: usize) -> Dims4 {
        Dims4 { a: a as u32, b: b as u32, c: c as u32, d: d as u32 }
    }
}
