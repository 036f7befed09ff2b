//! The exact-match accuracy of task runs: teacher-forced scoring agrees, example by example,
//! with greedy decoding (char and BPE tokenizers) and with each example run alone; accuracy is a
//! fraction of exact matches; and every task trains a few steps on a tiny model and reports an
//! accuracy on the held-out examples (CI's short version of the task presets).

mod common;

use std::sync::Arc;

use wgpt::data::tasks::HELD_OUT_EXAMPLES;
use wgpt::data::{Task, TASKS};
use wgpt::kernels::Kernels;
use wgpt::model::{Gpt2Config, Weights};
use wgpt::run::score::{Scored, TaskScore};
use wgpt::run::settings::TASK_EXAMPLES;
use wgpt::run::{DataSource, Run, RunConfig};
use wgpt::tokenizer::Tokenizer;
use wgpt::train::TrainConfig;

/// A tiny run (2 layers, C 32, T 32) on `spec`'s corpus, tokenized by `tokenizer`, its loss on
/// the answers only where `answer_loss`.
fn task_run(k: &Arc<Kernels>, spec: &str, tokenizer: &str, lr: f32, answer_loss: bool) -> wgpt::Result<Run> {
    let task = Task::parse(spec)?;
    let text = task.corpus(TASK_EXAMPLES, 7);
    let tok = Tokenizer::from_spec(tokenizer, &text)?;
    let model = Gpt2Config {
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
        block_size: 32,
        vocab_size: tok.vocab_size(),
        arch: wgpt::model::Arch::GPT2,
    };
    let cfg = RunConfig {
        model,
        train: TrainConfig {
            batch_size: 16,
            seq_len: 32,
            lr,
            min_lr: lr,
            warmup_iters: 0,
            lr_decay_iters: 1000,
            answer_loss,
            ..TrainConfig::default()
        },
        max_iters: 1000,
        eval_interval: 1000,
        eval_iters: 1,
        log_interval: 1000,
        seed: 7,
        data: DataSource::Task(task.spec()),
        tokenizer: tokenizer.into(),
    };
    Run::new(k.clone(), cfg, &Weights::random(model, 3), tok, &text)
}

/// The index of the first wrong answer token (the length where all are right).
fn first_wrong(s: &Scored) -> usize {
    s.right.iter().position(|&r| !r).unwrap_or(s.right.len())
}

/// Each example's exact match and first wrong token, teacher-forced and decoded greedily.
fn agree_with_greedy(run: &mut Run, score: &TaskScore) {
    for e in &score.examples {
        let g = pollster::block_on(run.greedy_scored(e.prompt.clone(), e.answer.clone())).unwrap();
        assert_eq!(
            e.exact, g.exact,
            "{}{}: teacher-forced {:?}, greedy {:?}",
            e.prompt, e.answer, e.predicted, g.predicted
        );
        assert_eq!(first_wrong(e), first_wrong(&g), "{}{}: first wrong token", e.prompt, e.answer);
    }
}

#[test]
fn accuracy_is_the_fraction_of_exact_matches() {
    let ex = |exact| Scored {
        prompt: "1+1=".into(),
        answer: "2".into(),
        tokens: vec!["2".into(), "\n".into()],
        predicted: vec!["2".into(), if exact { "\n" } else { "3" }.into()],
        right: vec![true, exact],
        exact,
    };
    assert_eq!(TaskScore { examples: vec![ex(true), ex(false), ex(true)] }.accuracy(), 2.0 / 3.0);
    assert_eq!(TaskScore { examples: vec![ex(false)] }.accuracy(), 0.0);
    assert_eq!(TaskScore::default().accuracy(), 0.0);
}

#[test]
fn teacher_forcing_agrees_with_greedy_decoding_and_with_each_example_alone() {
    let Some(k) = common::shared_kernels() else { return };
    let mut run = task_run(&k, "addition:digits=1,pad=0", "char", 1e-2, false).unwrap();
    common::step_losses(&mut run, 400);
    let task = run.task.clone().unwrap();
    let score = pollster::block_on(run.task_score(&task, 40)).unwrap();
    let acc = score.accuracy();
    println!("addition:digits=1 after 400 steps: accuracy {acc}");
    assert!(acc > 0.0 && acc < 1.0, "the check needs both right and wrong answers; accuracy {acc}");
    agree_with_greedy(&mut run, &score);
    // each example alone (B 1, no padding) gives the same argmax at every answer position
    let model = &run.trainer.model;
    for e in &score.examples {
        let ids = run.tokenizer.encode(&format!("{}{}", e.prompt, e.answer)).unwrap();
        let p = run.tokenizer.encode(&e.prompt).unwrap().len();
        let f = model.forward_plan(1, ids.len()).unwrap();
        model.forward(&f, &ids, None).unwrap();
        let logits = pollster::block_on(model.kernels.gpu.read(&f.acts.logits)).unwrap();
        let v = run.cfg.model.vocab_size;
        for (j, row) in logits.chunks(v).skip(p - 1).enumerate() {
            let best = (0..v).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            let want = run.tokenizer.decode(&[best as u32]).unwrap();
            assert_eq!(e.predicted[j], want, "{}{}: answer position {j}", e.prompt, e.answer);
        }
    }
}

#[test]
fn a_bpe_run_is_scored_as_greedy_decoding_scores_it() {
    let Some(k) = common::shared_kernels() else { return };
    let mut run = task_run(&k, "addition:digits=2,pad=0", "bpe:300", 3e-3, false).unwrap();
    common::step_losses(&mut run, 20);
    let task = run.task.clone().unwrap();
    let score = pollster::block_on(run.task_score(&task, 30)).unwrap();
    assert_eq!(score.examples.len(), 30);
    agree_with_greedy(&mut run, &score);
}

#[test]
fn every_task_trains_and_reports_an_accuracy() {
    let Some(k) = common::shared_kernels() else { return };
    for spec in TASKS {
        let mut run = task_run(&k, spec.name, "char", 1e-3, false).unwrap();
        let losses = common::step_losses(&mut run, 3);
        let eval = pollster::block_on(run.evaluate()).unwrap();
        let acc = eval.accuracy.expect("a task run reports an accuracy");
        let score = run.task_score.as_ref().unwrap();
        println!("{:<19} losses {losses:.3?} accuracy {acc}", spec.name);
        assert!(losses.iter().all(|l| l.is_finite()), "{}", spec.name);
        assert!((0.0..=1.0).contains(&acc), "{}: accuracy {acc}", spec.name);
        assert_eq!(score.examples.len(), HELD_OUT_EXAMPLES, "{}", spec.name);
        assert_eq!(acc, score.accuracy());
        for e in &score.examples {
            assert_eq!(e.tokens.len(), e.right.len(), "{}: a mark per answer token", spec.name);
        }
    }
}

#[test]
fn an_answer_only_loss_trains_on_the_answers() {
    let Some(k) = common::shared_kernels() else { return };
    let mut run = task_run(&k, "addition:digits=1,pad=0", "char", 1e-2, true).unwrap();
    let losses = common::step_losses(&mut run, 200);
    let eval = pollster::block_on(run.evaluate()).unwrap();
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    println!("answer-only loss {first:.3} -> {last:.3}, accuracy {:?}", eval.accuracy);
    assert!(losses.iter().all(|l| l.is_finite()) && last < first * 0.6, "the loss falls: {first} -> {last}");
    assert!((0.0..=1.0).contains(&eval.accuracy.unwrap()));
    // a corpus without answers is refused
    let mut cfg = run.cfg.clone();
    cfg.data = DataSource::Text("notes".into());
    let text = "some notes\n".repeat(100);
    let tok = Tokenizer::char_level(&text).unwrap();
    let e = Run::new(k.clone(), cfg, &Weights::random(run.cfg.model, 3), tok, &text).err().expect("refused");
    assert!(e.to_string().contains("answer-only loss needs a task"), "{e}");
}
