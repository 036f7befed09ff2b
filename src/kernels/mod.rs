//! The Rust side of the WGSL kernels in `shaders/`: one file per layer, each with a params
//! struct that mirrors its WGSL struct, its pipelines and recorders that append dispatches to a
//! [`Program`]. Pipelines are built once per device; a program's bind groups are built once per
//! (B, T) and replayed every step.

mod adamw;
mod attention;
mod crossentropy;
mod decode;
pub mod dropout;
mod dynamics;
mod elementwise;
mod encoder;
pub mod layernorm;
mod lens;
mod matmul;

pub use adamw::{AdamW, StepParams};
pub use attention::Attention;
pub use crossentropy::CrossEntropy;
pub use decode::{Decode, DecodeDims};
pub use dropout::Dropout;
pub use dynamics::{UpdateStats, UpdateStatsArgs, SUMS};
pub use elementwise::{Gelu, Residual};
pub use encoder::{Encoder, EncoderBuckets};
pub use layernorm::LayerNorm;
pub use lens::RowTop1;
pub use matmul::{Matmul, Operand};

use crate::gpu::{Buffer, Gpu, Tensor};

/// Every kernel's source, by file name: what the shader tests validate with naga.
pub const SHADERS: &[(&str, &str)] = &[
    ("adamw.wgsl", include_str!("../../shaders/adamw.wgsl")),
    ("attention.wgsl", include_str!("../../shaders/attention.wgsl")),
    ("crossentropy.wgsl", include_str!("../../shaders/crossentropy.wgsl")),
    ("decode.wgsl", include_str!("../../shaders/decode.wgsl")),
    ("dropout.wgsl", include_str!("../../shaders/dropout.wgsl")),
    ("dynamics.wgsl", include_str!("../../shaders/dynamics.wgsl")),
    ("encoder.wgsl", include_str!("../../shaders/encoder.wgsl")),
    ("gelu.wgsl", include_str!("../../shaders/gelu.wgsl")),
    ("layernorm.wgsl", include_str!("../../shaders/layernorm.wgsl")),
    ("lens.wgsl", include_str!("../../shaders/lens.wgsl")),
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    // compiled after matmul.wgsl, whose Params and helpers it uses
    (
        "matmul_subgroup.wgsl",
        concat!(include_str!("../../shaders/matmul.wgsl"), include_str!("../../shaders/matmul_subgroup.wgsl")),
    ),
    ("residual.wgsl", include_str!("../../shaders/residual.wgsl")),
];

/// All pipelines, built once per device.
pub struct Kernels {
    pub gpu: Gpu,
    pub encoder: Encoder,
    pub layernorm: LayerNorm,
    pub matmul: Matmul,
    pub attention: Attention,
    pub gelu: Gelu,
    pub residual: Residual,
    pub crossentropy: CrossEntropy,
    pub adamw: AdamW,
    pub dropout: Dropout,
    pub decode: Decode,
    pub update_stats: UpdateStats,
    pub row_top1: RowTop1,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Kernels {
        let module = |file: &str| shader_module(gpu, file);
        let adamw = module("adamw.wgsl");
        let attention = module("attention.wgsl");
        let crossentropy = module("crossentropy.wgsl");
        let decode = module("decode.wgsl");
        let dropout = module("dropout.wgsl");
        let encoder = module("encoder.wgsl");
        let gelu = module("gelu.wgsl");
        let layernorm = module("layernorm.wgsl");
        let residual = module("residual.wgsl");
        Kernels {
            gpu: gpu.clone(),
            encoder: Encoder::new(gpu, &encoder),
            layernorm: LayerNorm::new(gpu, &layernorm),
            matmul: Matmul::new(gpu),
            attention: Attention::new(gpu, &attention),
            gelu: Gelu::new(gpu, &gelu),
            residual: Residual::new(gpu, &residual),
            crossentropy: CrossEntropy::new(gpu, &crossentropy),
            adamw: AdamW::new(gpu, &adamw),
            dropout: Dropout::new(gpu, &dropout),
            decode: Decode::new(gpu, &decode),
            update_stats: UpdateStats::new(gpu, &module("dynamics.wgsl")),
            row_top1: RowTop1::new(gpu, &module("lens.wgsl")),
        }
    }
}

/// The module of one file of [`SHADERS`].
fn shader_module(gpu: &Gpu, file: &str) -> wgpu::ShaderModule {
    let (_, src) = SHADERS.iter().find(|(f, _)| *f == file).expect("shader listed in SHADERS");
    gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(file),
        source: wgpu::ShaderSource::Wgsl((*src).into()),
    })
}

/// One entry point: its pipeline (auto layout) and the binding number of its first tensor
/// (binding 0 is always the uniform params; tensors follow in order).
pub struct Pipe {
    pipeline: wgpu::ComputePipeline,
    first_binding: u32,
    label: &'static str,
}

impl Pipe {
    pub fn new(gpu: &Gpu, module: &wgpu::ShaderModule, label: &'static str, entry: &str, first_binding: u32) -> Pipe {
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        Pipe { pipeline, first_binding, label }
    }

    /// A dispatch of this entry point over `workgroups`, with `params` in a uniform buffer of its
    /// own and `tensors` bound from `first_binding` on.
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        params: &P,
        tensors: &[&Tensor],
        workgroups: [u32; 3],
    ) -> Dispatch {
        let uniform = gpu.uniform(self.label, params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.raw.as_entire_binding() }];
        for (i, t) in tensors.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: self.first_binding + i as u32, resource: t.binding() });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch { pipeline: self.pipeline.clone(), bind_group, workgroups, label: self.label, _uniform: uniform }
    }
}

/// A recorded kernel launch: replayable any number of times.
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    label: &'static str,
    _uniform: Buffer,
}

impl Dispatch {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// A list of dispatches recorded once and encoded into a compute pass as often as needed.
#[derive(Default)]
pub struct Program {
    dispatches: Vec<Dispatch>,
}

impl Program {
    pub fn push(&mut self, d: Dispatch) {
        self.dispatches.push(d);
    }

    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }

    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            d.encode(pass);
        }
    }

    /// Runs each dispatch in a pass of its own, timed by GPU timestamps, and adds its
    /// milliseconds to `by_kernel` under its pipeline's label (the order of first appearance).
    /// Nothing where the device has no timestamp queries.
    pub async fn profile(&self, gpu: &Gpu, by_kernel: &mut Vec<(&'static str, f64)>) -> crate::Result<()> {
        for d in &self.dispatches {
            let Some(ns) = gpu.time_pass(|pass| d.encode(pass)).await? else {
                return Ok(());
            };
            match by_kernel.iter_mut().find(|(label, _)| *label == d.label) {
                Some((_, ms)) => *ms += ns / 1e6,
                None => by_kernel.push((d.label, ns / 1e6)),
            }
        }
        Ok(())
    }
}

/// Workgroups for `n` invocations in groups of `wg` on a 2D grid (x at most 65535, WebGPU's
/// per-dimension limit); shaders rebuild the index as (wid.y · nwg.x + wid.x) · wg + lid.
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
