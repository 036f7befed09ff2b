//! Training on the GPU: forward, backward, global-norm clipping and AdamW for one step, in one
//! submit or, where that would run past the submit budget, several cut at layer boundaries
//! (src/submit.rs) (nanoGPT's train.py loop, llm.c's kernels). Buffers are
//! allocated once per (B, T, grad_accum); the step allocates nothing on the GPU.

mod config;
mod lora;
mod muon;
mod optim;
mod schedule;
pub(crate) mod slots;
mod state;

use crate::backward::GradActs;
use crate::dynamics::DynamicsPlan;
use crate::gpu::Tensor;
use crate::kernels::dropout::{pcg, DropoutRate};
use crate::kernels::{AdamW, AttentionKind, EncoderBuckets, Program, ScalerHead, StepParams, BIAS_WINDOW};
use crate::model::lora::{Grads, LoraActs};
use crate::model::{
    shape_bytes, total_bytes, ActivationTensors, Forward, Gpt2, Gpt2Config, LoraTensors, ParameterTensors,
};
use crate::precision::{Precision, Purpose, Resolved};
use crate::submit::{Piece, SubmitPlan, SubmitStats};
use crate::weights16::MatmulWeights;
use crate::{Error, Result};

pub use config::{LossScale, LossScaling, TrainConfig};
use lora::attach_lora;
use muon::MuonTensors;
pub use optim::{rules, Optimizer, OptimizerConfig, Rule, MUON_LR};
pub use schedule::{wsd_cooldown_start, Schedule};
use slots::{param_slots, record_update, Slot, StepTensors};
pub use state::OptimizerState;

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

/// GPU memory an AdamW [`Trainer`] allocates for `cfg` at (B, T) with attention of `kind`:
/// [`training_bytes_for`] AdamW.
pub fn training_bytes(cfg: &Gpt2Config, b: usize, t: usize, kind: AttentionKind, f16: bool) -> u64 {
    training_bytes_for(cfg, &OptimizerConfig::default(), b, t, kind, f16)
}

/// GPU memory a [`Trainer`] with `optimizer` allocates for `cfg` at (B, T) with attention of
/// `kind`, in bytes, summed over the specs its tensors are made from: parameters, gradients and
/// the optimizer's state ([`optimizer_bytes`]), the forward's activations
/// ([`ActivationTensors::specs`]) and their gradients ([`GradActs::specs`]); the small per-step
/// buffers and uniforms are left out. Flash attention keeps (B, NH, T) per layer where classic
/// keeps (B, NH, T, T). `f16`: the run's precision resolves to f16 on this adapter
/// ([`crate::precision::Precision::resolve`]), which adds the products' f16 weight copies
/// ([`MatmulWeights::f16_bytes`]); the loss scaler's state is one of the small buffers every run
/// has.
pub fn training_bytes_for(
    cfg: &Gpt2Config,
    optimizer: &OptimizerConfig,
    b: usize,
    t: usize,
    kind: AttentionKind,
    f16: bool,
) -> u64 {
    let train = TrainConfig { optimizer: *optimizer, ..TrainConfig::default() };
    training_bytes_of(cfg, &train, b, t, kind, f16)
}

/// [`training_bytes_for`] a run of `train`'s optimizer and, where it has them, LoRA adapters:
/// those hold the adapters, their gradients, their state and what their forward keeps
/// ([`LoraActs::specs`]), and no gradients or state for the frozen base.
pub fn training_bytes_of(
    cfg: &Gpt2Config,
    train: &TrainConfig,
    b: usize,
    t: usize,
    kind: AttentionKind,
    f16: bool,
) -> u64 {
    let acts = total_bytes(&ActivationTensors::specs(cfg, b, t, kind));
    let grad_acts = total_bytes(&GradActs::specs(cfg, b, t, kind));
    let copies = if f16 { MatmulWeights::f16_bytes(cfg) } else { 0 };
    let lora_acts = train.lora.map_or(0, |lc| total_bytes(&LoraActs::specs(cfg, &lc, b, t)));
    [optimizer_bytes(cfg, train), acts, grad_acts, copies, lora_acts].into_iter().fold(0, u64::saturating_add)
}

/// The bytes of the weights, their gradients ([`ParameterTensors::zeros`]) and the state of
/// `train`'s optimizer ([`OptimizerState::specs`]: AdamW two tensors of every parameter's shape,
/// SGD one, Muon one per matrix and two per other tensor) with Muon's Newton-Schulz scratch
/// ([`MuonTensors::specs`]), the part of [`training_bytes`] that does not depend on (B, T). A
/// LoRA run has the adapters and their gradients in place of the base's gradients, and state
/// for the adapters only.
pub fn optimizer_bytes(cfg: &Gpt2Config, train: &TrainConfig) -> u64 {
    // saturating, as the specs' bytes ([`crate::model::shape_bytes`]): a hostile size is refused, never wrapped
    let params = cfg.param_specs().iter().map(|(_, shape)| shape_bytes(shape)).fold(0, u64::saturating_add);
    // the trained tensors' gradients: every parameter's, or only the adapters'
    let trained = train.lora.map_or(params, |lc| lc.bytes(cfg).saturating_mul(2));
    [params, trained, OptimizerState::bytes(cfg, train), MuonTensors::bytes(cfg, train)]
        .into_iter()
        .fold(0, u64::saturating_add)
}

/// A step's programs, recorded once, and the buffers only they use.
struct StepPrograms {
    gacts: GradActs,
    micro: Vec<Micro>,
    /// The forward's blocks and head, and the backward's head and blocks: one program each.
    body: Vec<Program>,
    backward: Vec<Program>,
    /// The global gradient norm (before clipping) into `norm`.
    clip_norm: Program,
    update: Program,
    /// The scaler's update after a step (empty without loss scaling).
    scaler_update: Program,
    /// In f16: the program that refreshes the products' f16 weight copies from the master
    /// weights (run once at the start, then after every update); the copies are its bindings.
    refresh: Option<(Program, MatmulWeights)>,
    dropout_seed: Tensor, // (1) u32, the current micro-batch's
    micro_seeds: Tensor,  // (grad_accum) u32, written every step
}

/// A model with everything a training step needs: gradients, the optimizer's state, the
/// activations of (B, T) and their gradients, and the step's programs recorded once.
pub struct Trainer {
    pub model: Gpt2,
    pub cfg: TrainConfig,
    /// Activations for (B, T); eval batches run through it too.
    pub fwd: Forward,
    /// Every parameter's gradient, or in a LoRA run only the adapters'.
    pub grads: Grads,
    /// What the optimizer keeps per parameter (AdamW's moments, momentum buffers).
    pub state: OptimizerState,
    /// Every parameter with its gradient, rule and state, as the updates bind them.
    pub(crate) slots: Vec<Slot>,
    /// What every update reads: the step's parameters, the gradient norm, the loss scaler.
    pub(crate) shared: StepTensors,
    programs: StepPrograms,
    /// The precision that runs (and, where it is not the one asked for, why).
    pub precision: Resolved,
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

impl StepPrograms {
    /// Records every program of a step of `model` under `cfg` on `fwd`'s activations, the
    /// products reading f16 weight copies where `cfg.precision` (what runs) is f16.
    fn record(
        model: &Gpt2,
        cfg: &TrainConfig,
        fwd: &Forward,
        grads: &Grads,
        slots: &[Slot],
        shared: &StepTensors,
    ) -> Result<StepPrograms> {
        let (k, gpu) = (&*model.kernels, &model.kernels.gpu);
        let (b, t) = (fwd.b, fwd.t);
        let gacts = GradActs::new(gpu, &model.config, b, t, fwd.acts.attention.kind());
        // multiplied in f64 (exact below 2^53), so a large grad_accum cannot wrap a 32-bit usize
        let dloss = 1.0 / (b as f64 * t as f64 * cfg.grad_accum as f64) as f32;
        let scaled = cfg.loss_scaling.map(|_| &shared.scaler);
        let micro = (0..cfg.grad_accum)
            .map(|i| {
                let ids = gpu.tensor(&format!("ids.{i}"), &[b, t]);
                let targets = gpu.tensor(&format!("targets.{i}"), &[b, t]);
                let buckets = EncoderBuckets::new(gpu, b * t);
                Micro {
                    embed: model.record_embed(&fwd.acts, &ids),
                    loss: model.record_loss(&fwd.acts, &targets),
                    loss_backward: model.record_loss_backward(&fwd.acts, &gacts, &targets, dloss, scaled),
                    // a frozen base (LoRA): no embedding gradients
                    embed_backward: grads
                        .full()
                        .map_or_else(Program::default, |g| model.record_embed_backward(&gacts, g, &buckets)),
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
        let refresh = match cfg.precision == Precision::F16 {
            true => Some(MatmulWeights::f16(k, &model.params)?),
            false => None,
        };
        let f32_weights = MatmulWeights::f32(&model.params);
        let weights = refresh.as_ref().map_or(&f32_weights, |(w, _)| w);
        let lora_dropout = cfg.lora.filter(|lc| lc.dropout > 0.0);
        let lora_dropout = lora_dropout.map(|lc| DropoutRate { p: lc.dropout, seed: &dropout_seed, n_layer });
        let body = model.record_body(&fwd.acts, weights, dropout, lora_dropout);
        let backward = model.record_backward(&fwd.acts, &gacts, grads, weights, (dropout, lora_dropout));
        let refresh = refresh.map(|(w, prog)| {
            gpu.run(|pass| prog.encode(pass));
            (prog, w)
        });
        // the norm and the update bind each tensor whole or, where it exceeds one binding (wte),
        // in row chunks (the slots')
        let grad_list: Vec<&Tensor> = slots.iter().flat_map(|s| &s.chunks).map(|c| &c.grad).collect();
        let partials = gpu.tensor("grad_norm_partials", &[AdamW::partials_len(&grad_list)]);
        let mut clip_norm = Program::default();
        k.adamw.grad_norm(&mut clip_norm, &shared.norm, &partials, &grad_list, &shared.scaler);
        let mut update = Program::default();
        for slot in slots {
            record_update(k, &mut update, slot, shared, cfg)?;
        }
        let mut scaler_update = Program::default();
        if let Some(ls) = cfg.loss_scaling {
            k.adamw.scaler_update(&mut scaler_update, &shared.scaler, &shared.norm, ls.growth_interval);
        }
        Ok(StepPrograms {
            gacts,
            micro,
            body,
            backward,
            clip_norm,
            update,
            scaler_update,
            refresh,
            dropout_seed,
            micro_seeds,
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

    /// The step's pieces, each the commands before one cut point: a micro-batch's embedding
    /// (after clearing its gradients, and `grads` before the first), each block forward, the
    /// head, the loss and its gradient, each block backward, the embeddings' backward; then the
    /// clip, `update` (AdamW's, or the one with statistics) and (in f16) the weights' f16 copies.
    fn pieces<'a>(&'a self, grads: &'a Grads, update: &'a Program) -> Vec<Piece<'a>> {
        let mut pieces: Vec<Piece> = Vec::new();
        for (i, mi) in self.micro.iter().enumerate() {
            let mut progs = self.micro_programs(mi).into_iter();
            let embed = progs.next().expect("a micro-batch starts with its embedding");
            let pre = move |enc: &mut wgpu::CommandEncoder| {
                if i == 0 {
                    for g in grads.ordered() {
                        enc.clear_buffer(&g.buffer.raw, 0, None);
                    }
                }
                let seeds = &self.micro_seeds.buffer.raw;
                enc.copy_buffer_to_buffer(seeds, 4 * i as u64, &self.dropout_seed.buffer.raw, 0, 4);
                for d in self.gacts.all() {
                    enc.clear_buffer(&d.buffer.raw, 0, None);
                }
            };
            pieces.push(Piece::with_pre(pre, vec![embed]));
            pieces.extend(progs.map(|p| Piece::pass(vec![p])));
        }
        pieces.push(Piece::pass(vec![&self.clip_norm]));
        pieces.push(Piece::pass(vec![update, &self.scaler_update]));
        // mixed precision: the f16 copies of the updated master weights, for the next step
        if let Some((refresh, _)) = &self.refresh {
            pieces.push(Piece::pass(vec![refresh]));
        }
        pieces
    }
}

impl Trainer {
    /// Allocates gradients, optimizer state and activations, and records every program. Where
    /// `cfg.attention` is None, the device's tuning picks it, and the trainer's cfg records it;
    /// likewise cfg.precision records what runs, and f16 turns loss scaling on.
    pub fn new(mut model: Gpt2, mut cfg: TrainConfig) -> Result<Trainer> {
        cfg.validate(model.config.block_size)?;
        attach_lora(&mut model, &cfg)?;
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
        let grads = match &model.lora {
            Some(lora) => Grads::Lora(LoraTensors::zeros(&gpu, &model.config, lora.config, "grad.")),
            None => Grads::Full(Box::new(ParameterTensors::zeros(&gpu, &model.config, "grad."))),
        };
        let state = OptimizerState::zeros(&gpu, &model.config, &cfg);
        let slots = param_slots(&gpu, &model, &grads, &state, &cfg);
        let scaler = match cfg.loss_scaling {
            Some(ls) => ScalerHead::on(ls.init_scale, 0, 0),
            None => ScalerHead::off(),
        }
        .tensor(&gpu);
        let muon = MuonTensors::new(&gpu, &model.config, &cfg);
        let shared =
            StepTensors { params: gpu.tensor("step_params", &[8]), norm: gpu.tensor("grad_norm", &[1]), scaler, muon };
        let programs = StepPrograms::record(&model, &cfg, &fwd, &grads, &slots, &shared)?;
        let plan = SubmitPlan::new(model.submit_budget_ms);
        Ok(Trainer {
            model,
            cfg,
            fwd,
            grads,
            state,
            slots,
            shared,
            programs,
            precision,
            dynamics: None,
            plan,
            step: 0,
            moments_since: 0,
        })
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
        let p = &self.programs;
        let mut by_kernel = Vec::new();
        for mi in &p.micro {
            for prog in p.micro_programs(mi) {
                prog.profile(gpu, &mut by_kernel).await?;
            }
        }
        p.clip_norm.profile(gpu, &mut by_kernel).await?;
        p.update.profile(gpu, &mut by_kernel).await?;
        // where dynamics are tracked, their update too (under its own labels), for comparison
        if let Some(d) = &self.dynamics {
            d.update.profile(gpu, &mut by_kernel).await?;
        }
        if let Some((refresh, _)) = &p.refresh {
            refresh.profile(gpu, &mut by_kernel).await?;
        }
        Ok(by_kernel)
    }

    /// One optimizer step on `batches` (grad_accum pairs of ids and targets, each B·T): forward,
    /// backward, clip and AdamW, no readback; in one submit, or several cut at layer boundaries
    /// where one would take longer than the budget ([`Trainer::submits`]).
    pub fn step(&mut self, batches: &[(Vec<u32>, Vec<u32>)]) -> Result<()> {
        let micro = &self.programs.micro;
        if batches.len() != micro.len() {
            return Err(Error::Input(format!("{} micro-batches given, grad_accum is {}", batches.len(), micro.len())));
        }
        let gpu = self.model.kernels.gpu.clone();
        for ((ids, targets), mi) in batches.iter().zip(micro) {
            self.model.check_ids("ids", ids, &self.fwd)?;
            self.model.check_ids("targets", targets, &self.fwd)?;
            gpu.write(&mi.ids, ids);
            gpu.write(&mi.targets, targets);
            mi.buckets.write(&gpu, ids);
        }
        self.write_step_params();
        // dropout masks: a fresh seed per micro-batch, a function of the step (so resuming
        // reproduces them)
        let seeds: Vec<u32> =
            (0..micro.len()).map(|i| pcg((self.step * micro.len() as u64 + i as u64) as u32)).collect();
        gpu.write(&self.programs.micro_seeds, &seeds);
        // a tracked step's update also sums the dynamics (src/dynamics.rs)
        let tracked = self.dynamics.as_ref().filter(|d| d.due(self.step + 1));
        let update = tracked.map_or(&self.programs.update, |d| &d.update);
        self.plan.run(&gpu, &self.programs.pieces(&self.grads, update));
        self.step += 1;
        if let Some(d) = self.dynamics.as_mut().filter(|d| d.due(self.step)) {
            d.last = Some(self.step);
        }
        Ok(())
    }

    /// Writes the step's [`StepParams`] (and, with loss scaling, the bias corrections of the
    /// steps that skipped ones may leave it at).
    fn write_step_params(&self) {
        let (gpu, c) = (&self.model.kernels.gpu, &self.cfg);
        let lr = c.lr_at(self.step as usize);
        let sp = StepParams::new(self.step + 1 - self.moments_since, lr, c.beta1, c.beta2, c.eps, c.grad_clip);
        gpu.write(&self.shared.params, bytemuck::bytes_of(&sp));
        if let Some(muon) = &self.shared.muon {
            muon.write(gpu, c, self.step as usize);
        }
        if c.loss_scaling.is_some() {
            // the bias corrections of step − k, for the update to pick where k steps were skipped
            let bias: Vec<f32> = (0..BIAS_WINDOW as u64)
                .flat_map(|k| {
                    let t = (self.step + 1 - self.moments_since).saturating_sub(k).max(1);
                    let sp = StepParams::new(t, lr, c.beta1, c.beta2, c.eps, c.grad_clip);
                    [sp.bias1, sp.bias2_sqrt]
                })
                .collect();
            let (scaler, at) = (&self.shared.scaler, std::mem::size_of::<ScalerHead>() as u64);
            gpu.queue.write_buffer(&scaler.buffer.raw, scaler.offset + at, bytemuck::cast_slice(&bias));
        }
    }

    /// The mean loss of the last micro-batch of the last step (a readback: call it only when
    /// logging).
    pub async fn last_loss(&self) -> Result<f32> {
        Ok(self.model.kernels.gpu.read(&self.fwd.acts.loss).await?[0])
    }

    /// The global gradient norm of the last step, before clipping.
    pub async fn grad_norm(&self) -> Result<f32> {
        Ok(self.model.kernels.gpu.read(&self.shared.norm).await?[0])
    }

    /// The loss scaler's state (a readback: for logs and tests); None without loss scaling.
    pub async fn loss_scale(&self) -> Result<Option<LossScale>> {
        if self.cfg.loss_scaling.is_none() {
            return Ok(None);
        }
        let words = self.model.kernels.gpu.read(&self.shared.scaler).await?;
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
        self.model.kernels.gpu.write(&self.shared.scaler, bytemuck::bytes_of(&head));
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
