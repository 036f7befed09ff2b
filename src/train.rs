//! Training on the GPU: forward, backward, global-norm clipping and AdamW for one step, in one
//! submit or, where that would run past the submit budget, several cut at layer boundaries
//! (src/submit.rs) (nanoGPT's train.py loop, llm.c's kernels). Buffers are
//! allocated once per (B, T, grad_accum); the step allocates nothing on the GPU.

use serde::{Deserialize, Serialize};

use crate::backward::GradActs;
use crate::dynamics::DynamicsPlan;
use crate::gpu::Tensor;
use crate::kernels::dropout::{pcg, DropoutRate};
use crate::kernels::{AdamW, AdamWUpdate, AttentionKind, EncoderBuckets, Program, ScalerHead, StepParams, BIAS_WINDOW};
use crate::model::{Forward, Gpt2, Gpt2Config, ParameterTensors};
use crate::precision::{Precision, Purpose, Resolved};
use crate::submit::{Piece, SubmitPlan, SubmitStats};
use crate::weights16::MatmulWeights;
use crate::{Error, Result};

/// Optimisation settings, named as nanoGPT's train.py.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Tokens per sequence (T ≤ block_size).
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub lr: f32,
    pub min_lr: f32,
    pub warmup_iters: usize,
    /// Cosine decay from lr to min_lr ends here (nanoGPT's lr_decay_iters; usually max_iters).
    pub lr_decay_iters: usize,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Clip the global gradient norm to this; 0 turns clipping off.
    pub grad_clip: f32,
    /// Dropout probability on the embeddings, residual branches and attention probabilities
    /// (0 = off, and then bit-identical to no dropout).
    #[serde(default)]
    pub dropout: f32,
    /// The attention numerics (classic or flash), fixed for the run's whole life so that resume
    /// and recovery stay bit-exact; None: chosen when the trainer is made (crate::tune), which
    /// then records it here. A checkpoint from before this field trained with classic.
    #[serde(default = "classic_attention")]
    pub attention: Option<AttentionKind>,
    /// Dynamic loss scaling (for mixed-precision training); None: off, the loss gradient as is.
    /// f32, or mixed precision (f16): the forward's matrix products and the backward's
    /// dinp = dout · Wᵀ products read f16 copies of the weights, accumulating in f32; master
    /// weights, activations, gradients (the weight gradients' products too) and AdamW stay f32.
    /// f16 needs shader-f16 ([`Trainer::new`] falls back to f32 with a note) and turns loss
    /// scaling on ([`LossScaling::default`]) where `loss_scaling` is None. Auto trains in f32.
    #[serde(default)]
    pub precision: Precision,
    #[serde(default)]
    pub loss_scaling: Option<LossScaling>,
}

/// Dynamic loss scaling as torch.cuda.amp.GradScaler: the loss gradient is multiplied by a
/// scale S and the gradients divided by it before the norm, clipping and AdamW; a step whose
/// gradients overflow (a gradient norm that is not finite) is skipped (parameters and moments
/// untouched; AdamW's bias correction counts applied steps only) and halves S; `growth_interval`
/// clean steps in a row double it. All on the GPU, no readback ([`Trainer::loss_scale`] reads it
/// on demand). With a power-of-two scale and no overflow, f32 training is bit-identical to
/// training without scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaling {
    /// The first scale (GradScaler's init_scale, 65536); a power of two keeps f32 exact.
    pub init_scale: f32,
    /// Clean steps in a row after which the scale doubles (GradScaler's growth_interval, 2000).
    pub growth_interval: u32,
}

impl Default for LossScaling {
    fn default() -> LossScaling {
        LossScaling { init_scale: 65536.0, growth_interval: 2000 }
    }
}

/// The loss scaler's state on the GPU, read back by [`Trainer::loss_scale`] (and saved in
/// checkpoints so that a resumed run goes on with it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f32,
    /// Clean steps since the scale last changed.
    pub good: u32,
    /// Steps skipped for overflow so far.
    pub skipped: u32,
}

fn classic_attention() -> Option<AttentionKind> {
    Some(AttentionKind::Classic)
}

/// nanoGPT's settings for its small CPU models ("baby": batch 12, block 64, lr 1e-3 decaying to
/// 1e-4 over 2000 iterations after 100 of warmup, beta2 0.99, weight decay 0.1, clip 1.0, no
/// dropout): what `wgpt train` starts from and what other settings override.
impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            batch_size: 12,
            seq_len: 64,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 100,
            lr_decay_iters: 2000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            grad_clip: 1.0,
            dropout: 0.0,
            attention: None,
            precision: Precision::F32,
            loss_scaling: None,
        }
    }
}

impl TrainConfig {
    /// Replaces the peak learning rate (to go on with a lower one after a run diverged); min_lr
    /// keeps its ratio to it.
    pub fn set_lr(&mut self, lr: f32) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Input(format!("the learning rate must be a positive number, got {lr}")));
        }
        self.min_lr *= lr / self.lr;
        self.lr = lr;
        Ok(())
    }

    /// nanoGPT's grouping: decay matrices and embeddings (rank >= 2), not biases and layer norms.
    pub fn weight_decay_of(&self, shape: &[usize]) -> f32 {
        if shape.len() >= 2 {
            self.weight_decay
        } else {
            0.0
        }
    }

    /// nanoGPT's get_lr: linear warmup, then cosine decay to min_lr at lr_decay_iters.
    pub fn lr_at(&self, it: usize) -> f32 {
        if it < self.warmup_iters {
            return self.lr * (it + 1) as f32 / (self.warmup_iters + 1) as f32;
        }
        if it > self.lr_decay_iters || self.lr_decay_iters <= self.warmup_iters {
            return self.min_lr;
        }
        let ratio = (it - self.warmup_iters) as f64 / (self.lr_decay_iters - self.warmup_iters) as f64;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
        (self.min_lr as f64 + coeff * (self.lr - self.min_lr) as f64) as f32
    }

    pub fn validate(&self, block_size: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Input(m));
        if self.batch_size == 0 || self.grad_accum == 0 || self.seq_len == 0 {
            return bad("batch_size, grad_accum and the sequence length must be at least 1".into());
        }
        if self.seq_len > block_size {
            return bad(format!("sequence length {} is longer than the model's block_size {block_size}", self.seq_len));
        }
        for (name, v) in [
            ("lr", self.lr),
            ("min_lr", self.min_lr),
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{name} must be in [0, 1), got {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return bad(format!("eps must be > 0, got {}", self.eps));
        }
        if let Some(ls) = self.loss_scaling {
            // 1/S must stay a normal f32 (the scaler keeps S within these bounds too)
            if !(ls.init_scale >= f32::MIN_POSITIVE && ls.init_scale <= 2f32.powi(126)) {
                return bad(format!("the initial loss scale must be in [2^-126, 2^126], got {}", ls.init_scale));
            }
            if ls.growth_interval == 0 {
                return bad("the loss scale's growth interval must be at least 1 step".into());
            }
        }
        Ok(())
    }
}

/// The inputs of one micro-batch and the programs bound to them.
struct Micro {
    ids: Tensor,     // (B, T) u32
    targets: Tensor, // (B, T) u32
    buckets: EncoderBuckets,
    embed: Program,
    loss: Program,
    loss_backward: Program,
    embed_backward: Program,
}

/// GPU memory a [`Trainer`] allocates for `cfg` at (B, T) with attention of `kind`, in bytes,
/// counted from the tensors it makes (parameters, gradients and both AdamW moments; the
/// forward's activations and their gradients); the small per-step buffers and uniforms are left
/// out. Flash attention keeps (B, NH, T) per layer where classic keeps (B, NH, T, T). `f16`:
/// the run's precision resolves to f16 on this adapter ([`Precision::resolve`]), which adds the
/// products' f16 weight copies ([`MatmulWeights::f16_bytes`]); the loss scaler's state is one of
/// the small buffers every run has.
pub fn training_bytes(cfg: &Gpt2Config, b: usize, t: usize, kind: AttentionKind, f16: bool) -> u64 {
    let (c, nh, v, l) = (cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_layer);
    let bt = b * t;
    let att: usize = kind.saved_shape(b, nh, t).iter().product();
    // ActivationTensors: ids, targets, encoded, per layer 18 (B,T,C)-sized pieces, 4 (B,T) stats
    // and attention's saved tensor, lnf and its stats, logits, losses, lse
    let acts = 2 * bt + bt * c + l * (18 * bt * c + 4 * bt + att) + bt * c + 2 * bt + bt * v + 2 * bt;
    // GradActs: dlogits, dlnf, dencoded, per layer 18 (B,T,C)-sized pieces, attention's scratch
    let grad_acts = bt * v + 2 * bt * c + l * 18 * bt * c + att;
    let copies = if f16 { MatmulWeights::f16_bytes(cfg) } else { 0 };
    4 * (4 * cfg.num_params() + acts + grad_acts) as u64 + copies
}

/// A model with everything a training step needs: gradients, AdamW's moments, the activations
/// of (B, T) and their gradients, and the step's programs recorded once.
pub struct Trainer {
    pub model: Gpt2,
    pub cfg: TrainConfig,
    /// Activations for (B, T); eval batches run through it too.
    pub fwd: Forward,
    pub grads: ParameterTensors,
    pub m: ParameterTensors,
    pub v: ParameterTensors,
    gacts: GradActs,
    micro: Vec<Micro>,
    /// The forward's blocks and head, and the backward's head and blocks: one program each.
    body: Vec<Program>,
    backward: Vec<Program>,
    /// The global gradient norm (before clipping) into `norm`.
    clip_norm: Program,
    update: Program,
    pub(crate) step_params: Tensor, // (8) StepParams
    dropout_seed: Tensor,           // (1) u32, the current micro-batch's
    micro_seeds: Tensor,            // (grad_accum) u32, written every step
    pub(crate) norm: Tensor,        // (1) global gradient norm before clipping
    /// The loss scaler's state (ScalerHead, then the bias corrections of skipped steps).
    pub(crate) scaler: Tensor,
    /// The scaler's update after a step (empty without loss scaling).
    scaler_update: Program,
    /// The precision that runs (and, where it is not the one asked for, why).
    pub precision: Resolved,
    /// In f16: the program that refreshes the products' f16 weight copies from the master
    /// weights (run once at the start, then after every update); the copies are its bindings.
    refresh: Option<(Program, MatmulWeights)>,
    /// The update with statistics, where dynamics are tracked (src/dynamics.rs).
    pub(crate) dynamics: Option<DynamicsPlan>,
    /// Where a step's submits are cut (src/submit.rs).
    plan: SubmitPlan,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// The step AdamW's moments started from (0, or where a run resumed without them): bias
    /// correction counts the steps since.
    pub moments_since: u64,
}

impl Trainer {
    /// Allocates gradients, optimizer state and activations, and records every program. Where
    /// `cfg.attention` is None, the device's tuning picks it, and the trainer's cfg records it;
    /// likewise cfg.precision records what runs, and f16 turns loss scaling on.
    pub fn new(model: Gpt2, mut cfg: TrainConfig) -> Result<Trainer> {
        cfg.validate(model.config.block_size)?;
        let precision = cfg.precision.resolve(Purpose::Training, model.kernels.gpu.shader_f16());
        cfg.precision = precision.runs;
        if precision.f16() && cfg.loss_scaling.is_none() {
            cfg.loss_scaling = Some(LossScaling::default());
        }
        // wte, its gradient and moments are bound in row chunks where they exceed one binding
        // (Gpu::row_chunks), as inference binds wte; Gpt2::new refused a wte over max_buffer_size
        // and forward_plan logits (and so dlogits) over one binding
        let gpu = model.kernels.gpu.clone();
        let (b, t) = (cfg.batch_size, cfg.seq_len);
        let fwd = model.forward_plan_with(b, t, cfg.attention)?;
        cfg.attention = Some(fwd.acts.attention.kind());
        let k = model.kernels.clone();
        let grads = ParameterTensors::zeros(&gpu, &model.config, "grad.");
        let m = ParameterTensors::zeros(&gpu, &model.config, "adam_m.");
        let v = ParameterTensors::zeros(&gpu, &model.config, "adam_v.");
        let gacts = GradActs::new(&gpu, &model.config, b, t, fwd.acts.attention.kind());
        let dloss = 1.0 / (b * t * cfg.grad_accum) as f32;
        let scaler = match cfg.loss_scaling {
            Some(ls) => ScalerHead::on(ls.init_scale, 0, 0),
            None => ScalerHead::off(),
        }
        .tensor(&gpu);
        let scaled = cfg.loss_scaling.map(|_| &scaler);
        let micro = (0..cfg.grad_accum)
            .map(|i| {
                let ids = gpu.tensor(&format!("ids.{i}"), &[b, t]);
                let targets = gpu.tensor(&format!("targets.{i}"), &[b, t]);
                let buckets = EncoderBuckets::new(&gpu, b * t);
                Micro {
                    embed: model.record_embed(&fwd.acts, &ids),
                    loss: model.record_loss(&fwd.acts, &targets),
                    loss_backward: model.record_loss_backward(&fwd.acts, &gacts, &targets, dloss, scaled),
                    embed_backward: model.record_embed_backward(&gacts, &grads, &buckets),
                    ids,
                    targets,
                    buckets,
                }
            })
            .collect();
        let dropout_seed = gpu.tensor("dropout_seed", &[1]);
        let micro_seeds = gpu.tensor("micro_seeds", &[cfg.grad_accum]);
        let n_layer = model.config.n_layer;
        let dropout = (cfg.dropout > 0.0).then_some(DropoutRate { p: cfg.dropout, seed: &dropout_seed, n_layer });
        let refresh = match precision.f16() {
            true => Some(MatmulWeights::f16(&k, &model.params)?),
            false => None,
        };
        let f32_weights = MatmulWeights::f32(&model.params);
        let weights = refresh.as_ref().map_or(&f32_weights, |(w, _)| w);
        let body = model.record_body(&fwd.acts, weights, dropout);
        let backward = model.record_backward(&fwd.acts, &gacts, &grads, weights, dropout);
        let refresh = refresh.map(|(w, prog)| {
            gpu.run(|pass| prog.encode(pass));
            (prog, w)
        });
        let step_params = gpu.tensor("step_params", &[8]);
        let norm = gpu.tensor("grad_norm", &[1]);
        // the norm and the update bind each tensor whole or, where it exceeds one binding (wte),
        // in row chunks: a parameter, its gradient and moments have one shape, so chunks match
        let rows = |t: &Tensor| gpu.row_chunks(t).into_iter().map(|(_, view)| view);
        let grad_views: Vec<Tensor> = grads.ordered().into_iter().flat_map(rows).collect();
        let grad_list: Vec<&Tensor> = grad_views.iter().collect();
        let partials = gpu.tensor("grad_norm_partials", &[AdamW::partials_len(&grad_list)]);
        let mut clip_norm = Program::default();
        k.adamw.grad_norm(&mut clip_norm, &norm, &partials, &grad_list, &scaler);
        let mut update = Program::default();
        let specs = model.config.param_specs();
        for ((((p, g), mt), vt), (_, shape)) in
            model.params.ordered().into_iter().zip(grads.ordered()).zip(m.ordered()).zip(v.ordered()).zip(&specs)
        {
            let wd = cfg.weight_decay_of(shape);
            for (((param, grad), m), v) in rows(p).zip(rows(g)).zip(rows(mt)).zip(rows(vt)) {
                let (step, norm, scaler) = (&step_params, &norm, &scaler);
                let t = AdamWUpdate { param: &param, m: &m, v: &v, grad: &grad, step, norm, scaler };
                k.adamw.update(&mut update, t, wd);
            }
        }
        let plan = SubmitPlan::new(model.submit_budget_ms);
        let mut scaler_update = Program::default();
        if let Some(ls) = cfg.loss_scaling {
            k.adamw.scaler_update(&mut scaler_update, &scaler, &norm, ls.growth_interval);
        }
        Ok(Trainer {
            model,
            cfg,
            fwd,
            grads,
            m,
            v,
            gacts,
            micro,
            body,
            backward,
            clip_norm,
            update,
            step_params,
            dropout_seed,
            micro_seeds,
            norm,
            scaler,
            scaler_update,
            precision,
            refresh,
            dynamics: None,
            plan,
            step: 0,
            moments_since: 0,
        })
    }

    /// A micro-batch's programs in the order a step runs them: forward, loss, backward.
    fn micro_programs<'a>(&'a self, mi: &'a Micro) -> Vec<&'a Program> {
        let mut progs = vec![&mi.embed];
        progs.extend(&self.body);
        progs.extend([&mi.loss, &mi.loss_backward]);
        progs.extend(&self.backward);
        progs.push(&mi.embed_backward);
        progs
    }

    /// How the last step was submitted (src/submit.rs).
    pub fn submits(&self) -> SubmitStats {
        self.plan.stats()
    }

    /// Sets the submit budget of this trainer's steps and evaluations (and of the plans its model
    /// makes from now on) in milliseconds (0: one submit each).
    pub fn set_submit_budget(&mut self, ms: f64) {
        self.model.submit_budget_ms = ms;
        self.plan.set_budget_ms(ms);
        self.fwd.set_submit_budget(ms);
    }

    /// GPU milliseconds per kernel (pipeline label) of one step on the batches the last
    /// [`Trainer::step`] wrote, each dispatch timed on its own in step order (`wgpt bench
    /// --profile`); empty where the device has no timestamp queries. Runs a step's work again: the
    /// parameters move as in a step (twice where dynamics are tracked: their update is timed
    /// too), so profile a throwaway trainer.
    pub async fn profile(&self) -> Result<Vec<(String, f64)>> {
        let gpu = &self.model.kernels.gpu;
        let mut by_kernel = Vec::new();
        for mi in &self.micro {
            for prog in self.micro_programs(mi) {
                prog.profile(gpu, &mut by_kernel).await?;
            }
        }
        self.clip_norm.profile(gpu, &mut by_kernel).await?;
        self.update.profile(gpu, &mut by_kernel).await?;
        // where dynamics are tracked, their update too (under its own labels), for comparison
        if let Some(d) = &self.dynamics {
            d.update.profile(gpu, &mut by_kernel).await?;
        }
        if let Some((refresh, _)) = &self.refresh {
            refresh.profile(gpu, &mut by_kernel).await?;
        }
        Ok(by_kernel)
    }

    /// One optimizer step on `batches` (grad_accum pairs of ids and targets, each B·T): forward,
    /// backward, clip and AdamW, no readback; in one submit, or several cut at layer boundaries
    /// where one would take longer than the budget ([`Trainer::submits`]).
    pub fn step(&mut self, batches: &[(Vec<u32>, Vec<u32>)]) -> Result<()> {
        if batches.len() != self.micro.len() {
            return Err(Error::Input(format!(
                "{} micro-batches given, grad_accum is {}",
                batches.len(),
                self.micro.len()
            )));
        }
        let gpu = self.model.kernels.gpu.clone();
        for ((ids, targets), mi) in batches.iter().zip(&self.micro) {
            self.model.check_ids("ids", ids, &self.fwd)?;
            self.model.check_ids("targets", targets, &self.fwd)?;
            gpu.write(&mi.ids, ids);
            gpu.write(&mi.targets, targets);
            mi.buckets.write(&gpu, ids);
        }
        let c = &self.cfg;
        let lr = c.lr_at(self.step as usize);
        let sp = StepParams::new(self.step + 1 - self.moments_since, lr, c.beta1, c.beta2, c.eps, c.grad_clip);
        gpu.write(&self.step_params, bytemuck::bytes_of(&sp));
        if c.loss_scaling.is_some() {
            // the bias corrections of step − k, for the update to pick where k steps were skipped
            let bias: Vec<f32> = (0..BIAS_WINDOW as u64)
                .flat_map(|k| {
                    let t = (self.step + 1 - self.moments_since).saturating_sub(k).max(1);
                    let sp = StepParams::new(t, lr, c.beta1, c.beta2, c.eps, c.grad_clip);
                    [sp.bias1, sp.bias2_sqrt]
                })
                .collect();
            let at = std::mem::size_of::<ScalerHead>() as u64;
            gpu.queue.write_buffer(&self.scaler.buffer.raw, self.scaler.offset + at, bytemuck::cast_slice(&bias));
        }
        // dropout masks: a fresh seed per micro-batch, a function of the step (so resuming
        // reproduces them)
        let seeds: Vec<u32> =
            (0..self.micro.len()).map(|i| pcg((self.step * self.micro.len() as u64 + i as u64) as u32)).collect();
        gpu.write(&self.micro_seeds, &seeds);
        // the step's pieces, each the commands before one cut point: a micro-batch's embedding
        // (after clearing its gradients), each block forward, the head, the loss and its
        // gradient, each block backward, the embeddings' backward; then the clip, the update
        // and (in f16) the weights' f16 copies
        let mut plan = std::mem::replace(&mut self.plan, SubmitPlan::new(0.0));
        let this = &*self;
        let mut pieces: Vec<Piece> = Vec::new();
        for (i, mi) in this.micro.iter().enumerate() {
            let mut progs = this.micro_programs(mi).into_iter();
            let embed = progs.next().expect("a micro-batch starts with its embedding");
            let pre = move |enc: &mut wgpu::CommandEncoder| {
                if i == 0 {
                    for g in this.grads.ordered() {
                        enc.clear_buffer(&g.buffer.raw, 0, None);
                    }
                }
                let seeds = &this.micro_seeds.buffer.raw;
                enc.copy_buffer_to_buffer(seeds, 4 * i as u64, &this.dropout_seed.buffer.raw, 0, 4);
                for d in this.gacts.all() {
                    enc.clear_buffer(&d.buffer.raw, 0, None);
                }
            };
            pieces.push(Piece::with_pre(pre, vec![embed]));
            pieces.extend(progs.map(|p| Piece::pass(vec![p])));
        }
        // a tracked step's update also sums the dynamics (src/dynamics.rs)
        let update = this.dynamics.as_ref().filter(|d| d.due(this.step + 1)).map_or(&this.update, |d| &d.update);
        pieces.push(Piece::pass(vec![&this.clip_norm]));
        pieces.push(Piece::pass(vec![update, &this.scaler_update]));
        // mixed precision: the f16 copies of the updated master weights, for the next step
        if let Some((refresh, _)) = &this.refresh {
            pieces.push(Piece::pass(vec![refresh]));
        }
        plan.run(&gpu, &pieces);
        drop(pieces);
        self.plan = plan;
        self.step += 1;
        if let Some(d) = self.dynamics.as_mut().filter(|d| d.due(self.step)) {
            d.last = Some(self.step);
        }
        Ok(())
    }

    /// The mean loss of the last micro-batch of the last step (a readback: call it only when
    /// logging).
    pub async fn last_loss(&self) -> Result<f32> {
        Ok(self.model.kernels.gpu.read(&self.fwd.acts.loss).await?[0])
    }

    /// The global gradient norm of the last step, before clipping.
    pub async fn grad_norm(&self) -> Result<f32> {
        Ok(self.model.kernels.gpu.read(&self.norm).await?[0])
    }

    /// The loss scaler's state (a readback: for logs and tests); None without loss scaling.
    pub async fn loss_scale(&self) -> Result<Option<LossScale>> {
        if self.cfg.loss_scaling.is_none() {
            return Ok(None);
        }
        let words = self.model.kernels.gpu.read(&self.scaler).await?;
        let head: ScalerHead = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&words[..8]));
        Ok(Some(LossScale { scale: head.scale, good: head.good, skipped: head.skipped }))
    }

    /// Restores the loss scaler's state (a checkpoint's); nothing without loss scaling.
    pub fn restore_loss_scale(&mut self, s: &LossScale) -> Result<()> {
        if self.cfg.loss_scaling.is_none() {
            return Ok(());
        }
        if !(s.scale >= f32::MIN_POSITIVE && s.scale <= 2f32.powi(126)) {
            return Err(Error::Format(format!("the saved loss scale {} is outside [2^-126, 2^126]", s.scale)));
        }
        let head = ScalerHead::on(s.scale, s.good, s.skipped);
        self.model.kernels.gpu.write(&self.scaler, bytemuck::bytes_of(&head));
        Ok(())
    }

    /// Mean loss over `batches` without touching gradients or optimizer state.
    pub async fn eval_loss(&self, batches: &[(Vec<u32>, Vec<u32>)]) -> Result<f32> {
        let mut sum = 0.0;
        for (ids, targets) in batches {
            self.model.forward(&self.fwd, ids, Some(targets))?;
            sum += self.model.kernels.gpu.read(&self.fwd.acts.loss).await?[0];
        }
        Ok(sum / batches.len().max(1) as f32)
    }
}

impl Trainer {
    /// AdamW's first and second moments, in parameter order (for checkpoints).
    pub async fn moments(&self) -> Result<crate::checkpoint::Moments> {
        let gpu = &self.model.kernels.gpu;
        Ok((gpu.read_many(&self.m.ordered()).await?, gpu.read_many(&self.v.ordered()).await?))
    }

    /// Restores the optimizer from a checkpoint: moments in parameter order and the step count.
    pub fn restore(&mut self, m: &[Vec<f32>], v: &[Vec<f32>], step: u64) -> Result<()> {
        let gpu = &self.model.kernels.gpu;
        let specs = self.model.config.param_specs();
        for (moments, tensors) in [(m, self.m.ordered()), (v, self.v.ordered())] {
            if moments.len() != tensors.len() {
                return Err(Error::Format(format!(
                    "optimizer state has {} tensors, expected {}",
                    moments.len(),
                    tensors.len()
                )));
            }
            for ((data, t), (name, _)) in moments.iter().zip(tensors).zip(&specs) {
                if data.len() != t.numel() {
                    return Err(Error::Format(format!(
                        "optimizer state for {name}: {} values, expected {}",
                        data.len(),
                        t.numel()
                    )));
                }
                gpu.write(t, data);
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings saved before mixed precision (no `precision` field) load as f32; f16 is saved
    /// by name.
    #[test]
    fn precision_defaults_to_f32_in_old_settings() {
        let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
        old.as_object_mut().unwrap().remove("precision");
        let cfg: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(cfg.precision, Precision::F32);
        let f16 = TrainConfig { precision: Precision::F16, ..TrainConfig::default() };
        assert_eq!(serde_json::to_value(f16).unwrap()["precision"], "f16");
    }
}
