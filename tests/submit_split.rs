//! Split submits (src/submit.rs): with a budget so small that every dispatch is a submit of its
//! own and every matrix product that can be cut into slices of rows is, a training step (with
//! dropout and gradient accumulation), a prefill and an evaluation must give bit-identical
//! results to one submit per run, and must really have been split; and every matmul variant cut
//! into row slices must equal its whole dispatch.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::Arc;

use wgpt::generate::Decoder;
use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2, Gpt2Config, Weights};
use wgpt::options::{vars, Options};
use wgpt::train::{TrainConfig, Trainer};

/// A budget every dispatch exceeds: the first run measures every dispatch as its own submit, and
/// after it every matrix product that can be cut is cut into one dispatch per workgroup row.
const TINY: f64 = 1e-9;

/// Batches of 4 x 64 = 256 rows: the products over B·T rows have more than one workgroup row
/// (the subgroup kernels' 128 rows, the portable ones' 64), so they are cut.
const CFG: Gpt2Config =
    Gpt2Config { n_layer: 3, n_head: 2, n_embd: 32, block_size: 64, vocab_size: 61, arch: wgpt::model::Arch::GPT2 };
const ROWS: usize = 4 * 64;

fn weights() -> Weights {
    Weights::random(CFG, 7)
}

/// Panics with the worst element where `got` and `want` differ in any bit.
fn assert_bitwise(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let differ: Vec<usize> = (0..got.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).collect();
    if let Some(&worst) = differ.iter().max_by(|&&i, &&j| (got[i] - want[i]).abs().total_cmp(&(got[j] - want[j]).abs()))
    {
        panic!(
            "{what}: {} of {} elements differ from one submit; worst [{worst}]: {:e} vs {:e}",
            differ.len(),
            got.len(),
            got[worst],
            want[worst]
        );
    }
}

fn batches(rng: &mut common::Rng, n: usize, len: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    (0..n)
        .map(|_| {
            let ids = (0..len).map(|_| rng.below(CFG.vocab_size) as u32).collect();
            let targets = (0..len).map(|_| rng.below(CFG.vocab_size) as u32).collect();
            (ids, targets)
        })
        .collect()
}

fn trainer(k: &Arc<Kernels>, budget: f64) -> Trainer {
    let cfg = TrainConfig {
        batch_size: 4,
        seq_len: 64,
        grad_accum: 2,
        dropout: 0.1,
        warmup_iters: 1,
        lr_decay_iters: 10,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(Gpt2::new(k.clone(), &weights()).unwrap(), cfg).unwrap();
    t.set_submit_budget(budget);
    t
}

#[test]
fn a_split_training_step_equals_one_submit() {
    let Some(k) = common::shared_kernels() else { return };
    let (mut one, mut split) = (trainer(&k, 0.0), trainer(&k, TINY));
    let mut rng = common::Rng::new(11);
    let mut first = 0;
    for step in 0..3 {
        let b = batches(&mut rng, 2, ROWS);
        one.step(&b).unwrap();
        split.step(&b).unwrap();
        assert_eq!(one.submits().submits, 1, "budget 0 submits a step at once");
        let s = split.submits();
        // per micro-batch: embedding, 3 blocks, head, loss, its gradient, head and 3 blocks
        // backward, embeddings' backward; then the clip and the update: 26 pieces
        if step == 0 {
            first = s.submits;
            assert!(first > 2 * 12 + 2, "the first step measures every dispatch alone: {first} submits");
        } else {
            // every dispatch alone again, and the products over B·T rows in slices of rows
            assert!(s.submits > first, "step {step}: {} submits, no product cut into rows", s.submits);
        }
        assert!(s.longest_ms.is_some());
        let loss = |t: &Trainer| pollster::block_on(t.last_loss()).unwrap();
        assert_eq!(loss(&one).to_bits(), loss(&split).to_bits(), "step {step}: loss");
    }
    let read = |t: &Trainer| {
        let w = pollster::block_on(t.model.weights()).unwrap().tensors;
        let (m, v) = pollster::block_on(t.moments()).unwrap();
        (w, m, v)
    };
    let (w1, m1, v1) = read(&one);
    let (w2, m2, v2) = read(&split);
    let names = CFG.param_specs();
    for (i, (name, _)) in names.iter().enumerate() {
        assert_bitwise(&format!("{name} after 3 steps"), &w2[i], &w1[i]);
        assert_bitwise(&format!("adam_m.{name}"), &m2[i], &m1[i]);
        assert_bitwise(&format!("adam_v.{name}"), &v2[i], &v1[i]);
    }
    println!(
        "3 steps (dropout 0.1, grad_accum 2), the first in {first} submits (one per dispatch), the last in {}: every parameter and moment bitwise equal to one submit",
        split.submits().submits
    );
}

#[test]
fn a_split_evaluation_equals_one_submit() {
    let Some(k) = common::shared_kernels() else { return };
    let (one, split) = (trainer(&k, 0.0), trainer(&k, TINY));
    let mut rng = common::Rng::new(5);
    let b = batches(&mut rng, 3, ROWS);
    // the first batch measures every dispatch alone; the next ones cut the products over B·T
    // rows into slices of rows too
    let l1 = pollster::block_on(one.eval_loss(&b[..1])).unwrap();
    let l2 = pollster::block_on(split.eval_loss(&b[..1])).unwrap();
    assert_eq!(l1.to_bits(), l2.to_bits(), "first eval loss {l2} vs {l1}");
    let first = split.fwd.submits().submits;
    assert!(first > 6, "{first} submits: every dispatch alone");
    let l1 = pollster::block_on(one.eval_loss(&b)).unwrap();
    let l2 = pollster::block_on(split.eval_loss(&b)).unwrap();
    assert_eq!(one.fwd.submits().submits, 1);
    let n = split.fwd.submits().submits;
    assert!(n > first, "{n} submits: no product was cut into rows");
    assert_eq!(l1.to_bits(), l2.to_bits(), "eval loss {l2} vs {l1}");
    let logits = |t: &Trainer| pollster::block_on(t.model.kernels.gpu.read(&t.fwd.acts.logits)).unwrap();
    assert_bitwise("logits of the last eval batch", &logits(&split), &logits(&one));
    println!(
        "evaluation of 3 batches, the first in {first} submits (one per dispatch), then {n} each: loss {l2} and logits bitwise equal to one submit"
    );
}

#[test]
fn a_split_prefill_equals_one_submit() {
    let Some(k) = common::shared_kernels() else { return };
    let model = Gpt2::new(k.clone(), &weights()).unwrap();
    let (mut one, mut split) = (Decoder::new(&model).unwrap(), Decoder::new(&model).unwrap());
    one.set_submit_budget(0.0);
    split.set_submit_budget(TINY);
    let prompt: Vec<u32> = (0..12).map(|i| (i * 17 % CFG.vocab_size) as u32).collect();
    for round in 0..2 {
        one.prefill(&model, &prompt).unwrap();
        split.prefill(&model, &prompt).unwrap();
        assert_eq!(one.submits().submits, 1);
        // embedding with the first block, 2 more blocks, the last row, the head: 5 pieces, every
        // dispatch alone in each round
        let n = split.submits().submits;
        assert!(n > 5 * 3, "round {round}: {n} submits: the pieces were not cut");
        let l1 = pollster::block_on(one.logits(&model)).unwrap();
        let l2 = pollster::block_on(split.logits(&model)).unwrap();
        assert_bitwise(&format!("prefill logits, round {round}"), &l2, &l1);
        // and a decode step on the caches the split prefill wrote
        one.push(&model, 3).unwrap();
        split.push(&model, 3).unwrap();
        let l1 = pollster::block_on(one.logits(&model)).unwrap();
        let l2 = pollster::block_on(split.logits(&model)).unwrap();
        assert_bitwise(&format!("logits after a decode step, round {round}"), &l2, &l1);
    }
    println!(
        "prefill of 12 tokens in {} submits: logits bitwise equal to one submit, and the decode step after it",
        split.submits().submits
    );
}

/// The plan is decided after the first measured run: with a budget far above the whole run,
/// the first evaluation batch is measured dispatch by dispatch and the later ones go in one
/// submit.
#[test]
fn a_generous_budget_submits_once_after_the_first_measured_run() {
    let Some(k) = common::shared_kernels() else { return };
    let t = trainer(&k, 1e6);
    let b = batches(&mut common::Rng::new(8), 1, ROWS);
    pollster::block_on(t.eval_loss(&b)).unwrap();
    assert!(t.fwd.submits().submits > 6, "the first run measures every dispatch");
    pollster::block_on(t.eval_loss(&b)).unwrap();
    let s = t.fwd.submits();
    assert_eq!(s.submits, 1, "the measured pieces fit one submit");
    assert!(s.longest_ms.is_some_and(|ms| ms < 1e6));
}

#[test]
fn the_budget_comes_from_the_environment_or_its_default() {
    // WGPT_SUBMIT_BUDGET_MS is not set by the test runner: the default holds
    if std::env::var(vars::SUBMIT_BUDGET_MS).is_err() {
        assert_eq!(common::options().submit_budget_ms, wgpt::submit::DEFAULT_BUDGET_MS);
    }
    assert!(Options::check_budget(-1.0, "--submit-budget-ms").is_err());
    assert!(Options::check_budget(f64::NAN, "--submit-budget-ms").is_err());
}

/// The CLI refuses a budget that is not a number of milliseconds, from the flag or the
/// environment, with a message naming it.
#[test]
fn the_cli_refuses_a_bad_budget() {
    let Some(d) = common::shared_data() else { return };
    let Some(_) = common::shared_kernels() else { return };
    let wgpt = || std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"));
    let model = d.join("hf-tiny-gpt2");
    let forward = ["forward", "--model", model.to_str().unwrap(), "--ids", "464,3290,318"];
    let out = wgpt().arg("--submit-budget-ms=-5").args(forward).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--submit-budget-ms must be a number of milliseconds >= 0"), "{err}");
    let out = wgpt().env(vars::SUBMIT_BUDGET_MS, "half a second").args(forward).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("WGPT_SUBMIT_BUDGET_MS=\"half a second\" is not a number"), "{err}");
    let out = wgpt().env(vars::SUBMIT_BUDGET_MS, "0").args(forward).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Every variant's NN, NT and TN products (and NN and NT with f16 weights where the adapter has
/// shader-f16), the shared kernels' unaligned NN and TN and the generic one, and a Conv1D forward
/// with its bias, cut into slices of rows (one per workgroup row, and in two) equal the whole
/// dispatch bit for bit: 300 rows, several workgroup rows for every kernel and the last one
/// ragged, accumulating into a C that is not zero. An NT product one workgroup row high (20 rows,
/// 300 columns: lm_head over a short prompt) is cut into slices of columns.
#[test]
fn a_product_cut_into_slices_equals_the_whole() {
    use wgpt::kernels::{MatmulVariant, Operand, Program};
    let Some(k) = common::shared_kernels() else { return };
    let g = &k.gpu;
    let mut rng = common::Rng::new(3);
    let mut up = |name: &str, shape: &[usize]| g.upload(name, shape, &rng.vec(shape.iter().product(), -1.0, 1.0));
    let (m, kk, n) = (300, 64, 72);
    let a = up("a", &[m, kk]); // NN, NT: A (M, K)
    let at = up("at", &[kk, m]); // TN: A stored (K, M)
    let b = up("b", &[kk, n]); // NN, TN: B (K, N)
    let bt = up("bt", &[n, kk]); // NT: B stored (N, K)
    let bias = up("bias", &[n]);
    let a65 = up("a65", &[m, 65]); // K % 4 != 0: NN1, and NT on the generic kernel
    let b65 = up("b65", &[65, n]);
    let bt65 = up("bt65", &[n, 65]);
    let at302 = up("at302", &[kk, 302]); // M % 4 != 0: TN1
    let (short, wide) = (up("short", &[20, kk]), up("wide", &[m, kk])); // NT one workgroup row high
    let c0 = |rows: usize, cols: usize| common::Rng::new(rows as u64).vec(rows * cols, -1.0, 1.0);
    let half_of = |t: &wgpt::Tensor| common::f16_copy(&k, t);
    let halves = g.shader_f16().then(|| (half_of(&b), half_of(&bt)));
    type Record<'a> = Box<dyn Fn(&mut Program, &wgpt::Tensor) + 'a>;
    // (what, C's rows and columns, the product into C)
    let gemm =
        |x: Operand<'_>, y: Operand<'_>, p: &mut Program, c: &wgpt::Tensor| k.matmul.gemm(p, c, x, y, None, true);
    let mut cases: Vec<(String, [usize; 2], Record)> = vec![];
    for v in MatmulVariant::available(g, wgpt::kernels::Family::Auto) {
        let (a, at, b, bt, short, wide, k) = (&a, &at, &b, &bt, &short, &wide, &k);
        let name = v.name();
        let on =
            move |x: Operand<'_>, y: Operand<'_>, p: &mut Program, c: &wgpt::Tensor| k.matmul.gemm_on(v, p, c, x, y);
        cases.push((format!("{name} NN"), [m, n], Box::new(move |p, c| on(Operand::n(a), Operand::n(b), p, c))));
        cases.push((format!("{name} NT"), [m, n], Box::new(move |p, c| on(Operand::n(a), Operand::t(bt), p, c))));
        cases.push((format!("{name} TN"), [m, n], Box::new(move |p, c| on(Operand::t(at), Operand::n(b), p, c))));
        let cols = Box::new(move |p: &mut Program, c: &wgpt::Tensor| on(Operand::n(short), Operand::t(wide), p, c));
        cases.push((format!("{name} NT 20 rows, in columns"), [20, m], cols));
        if let Some((h, ht)) = &halves {
            cases.push((
                format!("{name} NN f16"),
                [m, n],
                Box::new(move |p, c| on(Operand::n(a), Operand::n(h), p, c)),
            ));
            cases.push((
                format!("{name} NT f16"),
                [m, n],
                Box::new(move |p, c| on(Operand::n(a), Operand::t(ht), p, c)),
            ));
        }
    }
    cases.push(("NN1 (K 65)".into(), [m, n], Box::new(|p, c| gemm(Operand::n(&a65), Operand::n(&b65), p, c))));
    cases.push(("TN1 (M 302)".into(), [302, n], Box::new(|p, c| gemm(Operand::t(&at302), Operand::n(&b), p, c))));
    cases.push(("generic (NT, K 65)".into(), [m, n], Box::new(|p, c| gemm(Operand::n(&a65), Operand::t(&bt65), p, c))));
    cases.push((
        "Conv1D forward with bias".into(),
        [m, n],
        Box::new(|p, c| k.matmul.forward(p, c, &a, &b, Some(&bias))),
    ));
    for (what, [rows, cols], record) in &cases {
        let c0 = c0(*rows, *cols);
        let run = |of: Option<usize>| {
            let c = g.upload("c", &[*rows, *cols], &c0);
            let mut p = Program::default();
            record(&mut p, &c);
            let max = p.launches().iter().map(|d| d.max_slices()).min().unwrap();
            assert!(max > 1, "{what}: {max} slices, the product cannot be cut");
            if let Some(of) = of {
                p.launches().iter().for_each(|d| d.prepare(of.min(d.max_slices())));
            }
            g.run(|pass| match of {
                None => p.encode(pass),
                Some(of) => {
                    for d in p.launches() {
                        let of = of.min(d.max_slices());
                        (0..of).for_each(|j| d.encode_slice(pass, j, of));
                    }
                }
            });
            (pollster::block_on(g.read(&c)).unwrap(), max)
        };
        let (whole, max) = run(None);
        assert_ne!(whole, c0, "{what}: the product changed nothing");
        for of in [2, max] {
            assert_bitwise(&format!("{what} in {of} slices"), &run(Some(of)).0, &whole);
        }
        println!("{what}: in 2 and {max} slices bitwise equal to the whole");
    }
}
