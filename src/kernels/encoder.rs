//! Token + position embedding (shaders/encoder.wgsl), llm.c's `encoder_forward` and
//! `encoder_backward`; dwte is made deterministic by grouping positions by token on the host.

use super::{grid, ModuleSpec, Pipe, Program};
use crate::gpu::{Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    bt: u32,
    t: u32,
    c: u32,
    v: u32,
    v0: u32,
    rows: u32,
    has_wpe: u32,
    _pad: u32,
}

impl Params {
    fn new(bt: usize, t: usize, c: usize, v: usize) -> Params {
        Params { bt: bt as u32, t: t as u32, c: c as u32, v: v as u32, v0: 0, rows: v as u32, has_wpe: 1, _pad: 0 }
    }
}

fn spec(entry: &'static str) -> ModuleSpec {
    ModuleSpec::new::<Params>(&["encoder.wgsl"], entry)
}

pub(super) fn modules() -> Vec<ModuleSpec> {
    ["forward", "backward_wte", "backward_wpe"].map(spec).to_vec()
}

pub struct Encoder {
    gpu: Gpu,
    fwd: Pipe,
    bwd_wte: Pipe,
    bwd_wpe: Pipe,
}

/// The batch's positions grouped by token, in CSR form, for a deterministic dwte: distinct token
/// ids ascending, and for bucket i the positions `positions[starts[i]..starts[i + 1]]`
/// (ascending). Allocated once for a B·T, rewritten every step by [`EncoderBuckets::write`].
pub struct EncoderBuckets {
    pub tokens: Tensor,    // (B*T) u32, the first `count` used
    pub starts: Tensor,    // (B*T + 1) u32, the first `count + 1` used
    pub positions: Tensor, // (B*T) u32
    pub count: Tensor,     // (1) u32: the number of distinct tokens
}

impl EncoderBuckets {
    /// Room for `bt` positions (at most `bt` distinct tokens).
    pub fn new(gpu: &Gpu, bt: usize) -> EncoderBuckets {
        EncoderBuckets {
            tokens: gpu.tensor("buckets.tokens", &[bt]),
            starts: gpu.tensor("buckets.starts", &[bt + 1]),
            positions: gpu.tensor("buckets.positions", &[bt]),
            count: gpu.tensor("buckets.count", &[1]),
        }
    }

    /// How many positions these buckets hold room for.
    pub fn capacity(&self) -> usize {
        self.positions.numel()
    }

    /// Groups `ids` (B·T, at most the capacity) by token on the CPU and writes the result with
    /// queue writes (ordered before the next submit; nothing on the GPU is allocated).
    pub fn write(&self, gpu: &Gpu, ids: &[u32]) {
        assert!(ids.len() <= self.capacity(), "{} ids but the encoder buckets hold {}", ids.len(), self.capacity());
        let mut positions: Vec<u32> = (0..ids.len() as u32).collect();
        // stable: positions stay ascending within a token
        positions.sort_by_key(|&i| ids[i as usize]);
        let mut tokens = Vec::new();
        let mut starts = Vec::new();
        for (j, &pos) in positions.iter().enumerate() {
            let id = ids[pos as usize];
            if tokens.last() != Some(&id) {
                tokens.push(id);
                starts.push(j as u32);
            }
        }
        starts.push(ids.len() as u32);
        gpu.write(&self.tokens, &tokens);
        gpu.write(&self.starts, &starts);
        gpu.write(&self.positions, &positions);
        gpu.write(&self.count, &[tokens.len() as u32]);
    }
}

impl Encoder {
    pub fn new(gpu: &Gpu) -> Encoder {
        Encoder {
            gpu: gpu.clone(),
            fwd: Pipe::new(gpu, spec("forward")),
            bwd_wte: Pipe::new(gpu, spec("backward_wte")),
            bwd_wpe: Pipe::new(gpu, spec("backward_wpe")),
        }
    }

    /// out (B,T,C) = wte[ids] + wpe[t]; ids (B,T) u32, wte (V,C), wpe (maxT,C) (None: no
    /// learned positions, wte alone). A wte bigger than one storage binding is read in row
    /// chunks ([`Gpu::row_chunks`]), one dispatch each.
    pub fn forward(&self, prog: &mut Program, out: &Tensor, ids: &Tensor, wte: &Tensor, wpe: Option<&Tensor>) {
        let gpu = &self.gpu;
        let (bt, c) = (ids.numel(), wte.shape[1]);
        let t = ids.shape[ids.shape.len() - 1];
        for (v0, chunk) in gpu.row_chunks(wte) {
            let (v0, rows, has_wpe) = (v0 as u32, chunk.shape[0] as u32, wpe.is_some() as u32);
            let params = Params { v0, rows, has_wpe, ..Params::new(bt, t, c, wte.shape[0]) };
            prog.push(self.fwd.dispatch(&params, &[out, ids, &chunk, wpe.unwrap_or(&chunk)], grid(bt * c, 64)));
        }
    }

    /// dwte (V,C) += dout summed per token, dwpe (maxT,C), if any, += dout summed over the batch; dout
    /// (B,T,C); `buckets` hold the ids of this step (written before the submit). A dwte bigger
    /// than one storage binding is written in row chunks ([`Gpu::row_chunks`]), one dispatch each.
    pub fn backward(
        &self,
        prog: &mut Program,
        dwte: &Tensor,
        dwpe: Option<&Tensor>,
        dout: &Tensor,
        buckets: &EncoderBuckets,
    ) {
        let gpu = &self.gpu;
        let (t, c, v) = (dout.shape[1], dwte.shape[1], dwte.shape[0]);
        let bt = dout.numel() / c;
        assert!(bt <= buckets.capacity(), "encoder backward: B*T = {bt} but the buckets hold {}", buckets.capacity());
        let params = Params::new(bt, t, c, v);
        for (v0, chunk) in gpu.row_chunks(dwte) {
            let chunk_params = Params { v0: v0 as u32, rows: chunk.shape[0] as u32, ..params };
            // at most min(B·T, V) distinct tokens; the kernel skips buckets past `count`
            prog.push(self.bwd_wte.dispatch(
                &chunk_params,
                &[&chunk, dout, &buckets.tokens, &buckets.starts, &buckets.positions, &buckets.count],
                grid(bt.min(v) * c, 64),
            ));
        }
        if let Some(dwpe) = dwpe {
            prog.push(self.bwd_wpe.dispatch(&params, &[dwpe, dout], grid(t * c, 64)));
        }
    }
}
