//! `kill -9` during `wgpt train`: the run directory always opens at its last complete checkpoint
//! and `--resume` goes on from it, to the same losses as a run never killed. The kills land at
//! random moments and, through `WGPT_COMMIT_PAUSE_MS` (which widens each step of a checkpoint
//! commit), deliberately inside the write: before its commit point (rolled back to the checkpoint
//! before) and after it (rolled forward to the new one). `WGPT_KILL_SEED=N` replays a sequence.
#![cfg(not(target_arch = "wasm32"))] // native only: processes and signals

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Rng;
use wgpt::run::format::{dir, Record};

const MAX_ITERS: u64 = 24;
const EVAL_INTERVAL: u64 = 2;

/// Where a kill lands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KillAt {
    /// A random moment (training, evaluating, writing or starting up).
    Random,
    /// While a checkpoint's files are being written, before its commit point.
    BeforeCommitPoint,
    /// After the commit point, while the files are being renamed into place.
    AfterCommitPoint,
}

/// `wgpt train` on a tiny model, evaluating (and saving) every 2 steps; or `--resume` of it.
fn train_args(corpus: &Path, out: &Path, resume: bool) -> Vec<String> {
    let out = out.display().to_string();
    if resume {
        return vec!["train".into(), "--resume".into(), out];
    }
    let flags = "train --n-layer 1 --n-head 2 --n-embd 16 --block-size 16 --batch-size 4 --lr 3e-3 --seed 5 \
                 --eval-iters 2 --log-interval 1";
    let mut a: Vec<String> = flags.split_whitespace().map(String::from).collect();
    a.extend(["--max-iters".into(), MAX_ITERS.to_string(), "--eval-interval".into(), EVAL_INTERVAL.to_string()]);
    a.extend(["--data".into(), corpus.display().to_string(), "--out".into(), out]);
    a
}

/// A running `wgpt train` and the steps of the evaluations it prints.
struct Training {
    child: Child,
    reader: std::thread::JoinHandle<Vec<u64>>,
}

fn spawn(args: &[String], pause_ms: u64) -> Training {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(args)
        .env("WGPT_COMMIT_PAUSE_MS", pause_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run wgpt");
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        // "step N: train loss ..., val loss ..." (the bar is hidden: stdout is not a terminal)
        let step = |line: &str| line.strip_prefix("step ")?.split(':').next()?.parse().ok();
        let lines = BufReader::new(stdout).lines().map_while(|l| l.ok());
        lines.filter(|l| l.contains("val loss")).filter_map(|l| step(&l)).collect()
    });
    Training { child, reader }
}

/// The names in the run directory that start with a dot: a commit's leftovers.
fn leftovers(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.starts_with('.'));
    names.sort();
    names
}

/// A commit's data files written, its commit point not reached.
fn before_commit_point(left: &[String]) -> bool {
    left.iter().any(|n| n.ends_with(".tmp") && n != ".commit.tmp") && !left.iter().any(|n| n == ".commit")
}

fn after_commit_point(left: &[String]) -> bool {
    left.iter().any(|n| n == ".commit")
}

/// Waits (polling every 2 ms) until `ready` holds; false if the process ended first.
fn wait_for(child: &mut Child, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if ready() {
            return true;
        }
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("wgpt train did not reach the kill point within 120 s");
}

/// (step, loss) pairs.
type Curve = Vec<(u64, f32)>;

/// The (step, loss) of every progress record and (step, val loss) of every evaluation.
fn losses(out: &Path) -> (Curve, Curve) {
    let files = dir::read(out).unwrap();
    let mut progress = vec![];
    let mut evals = vec![];
    for r in files.metrics.records() {
        match r {
            Record::Progress { iter, loss, .. } => progress.push((*iter, *loss)),
            Record::Eval(e) => evals.push((e.iter, e.val_loss)),
        }
    }
    (progress, evals)
}

#[test]
fn kill_9_at_random_moments_and_inside_the_checkpoint_write_then_resume() {
    let Some(_) = common::shared_kernels() else { return };
    let root = std::env::temp_dir().join(format!("wgpt-kill-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let corpus = root.join("corpus.txt");
    std::fs::write(
        &corpus,
        "the quick brown fox jumps over the lazy dog. pack my box with five dozen jugs!\n".repeat(40),
    )
    .unwrap();
    let seed = std::env::var("WGPT_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("WGPT_KILL_SEED={seed}");
    let mut rng = Rng::new(seed);

    // the run never killed
    let straight = root.join("straight");
    let o = Command::new(env!("CARGO_BIN_EXE_wgpt")).args(train_args(&corpus, &straight, false)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // the run killed again and again: each kill aims at a moment, the files left behind say where
    // it landed, and opening the run must give the checkpoint that place implies
    let out = root.join("killed");
    let aims = [
        KillAt::AfterCommitPoint,
        KillAt::Random,
        KillAt::BeforeCommitPoint,
        KillAt::Random,
        KillAt::BeforeCommitPoint,
        KillAt::AfterCommitPoint,
    ];
    let (mut last_step, mut hits) = (0, [0; 3]);
    for (i, aim) in aims.into_iter().enumerate() {
        let mut t = spawn(&train_args(&corpus, &out, i > 0), 30);
        // the first run is killed only once its first checkpoint is complete
        let state = out.join("training_state.safetensors");
        assert!(i > 0 || wait_for(&mut t.child, || state.exists()), "wgpt train ended before its first checkpoint");
        let reached = match aim {
            KillAt::Random => {
                let at = Instant::now() + Duration::from_millis(100 + rng.below(2500) as u64);
                wait_for(&mut t.child, || Instant::now() >= at)
            }
            KillAt::BeforeCommitPoint => wait_for(&mut t.child, || before_commit_point(&leftovers(&out))),
            KillAt::AfterCommitPoint => wait_for(&mut t.child, || after_commit_point(&leftovers(&out))),
        };
        assert!(reached, "wgpt train ended before kill {i} ({aim:?})");
        if aim != KillAt::Random {
            // into the window: the commit pauses 30 ms after each of its 5 or 6 steps
            std::thread::sleep(Duration::from_millis(rng.below(60) as u64));
        }
        t.child.kill().unwrap(); // SIGKILL
        t.child.wait().unwrap();
        let evals = t.reader.join().unwrap();
        let left = leftovers(&out);
        let files = dir::read(&out).unwrap_or_else(|e| panic!("after kill {i} ({aim:?}) the run does not open: {e}"));
        let step = files.checkpoint.state().unwrap().step;
        println!(
            "kill {i} aimed {aim:?}: evaluations printed {evals:?}, left behind {left:?}; the run opens at step {step}"
        );
        assert!(leftovers(&out).is_empty(), "opening the run left {:?}", leftovers(&out));
        // the commit in progress at the kill is the last evaluation's
        let writing = evals.last().copied().unwrap_or(last_step);
        if after_commit_point(&left) {
            hits[2] += 1;
            assert_eq!(step, writing, "an interrupted commit past its commit point is rolled forward");
        } else if before_commit_point(&left) {
            hits[1] += 1;
            assert_eq!(
                step,
                writing.saturating_sub(EVAL_INTERVAL),
                "an interrupted commit before its commit point is rolled back"
            );
        } else {
            hits[0] += 1;
            assert!(step == writing || step + EVAL_INTERVAL == writing, "step {step}, last evaluation {writing}");
        }
        assert!(step >= last_step, "the checkpoint went back from step {last_step} to {step}");
        let last_record = files.metrics.records().iter().map(|r| r.iter()).max();
        assert_eq!(last_record, Some(step), "metrics.jsonl goes past its checkpoint");
        last_step = step;
    }
    println!("kills that left no commit, one before its commit point, one after: {hits:?}");
    assert!(hits[1] >= 1 && hits[2] >= 1, "the kills missed the checkpoint write: {hits:?}");

    // and now to the end, unhindered: the same losses as the run never killed
    let o = Command::new(env!("CARGO_BIN_EXE_wgpt")).args(train_args(&corpus, &out, true)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (want, want_evals) = losses(&straight);
    let (got, got_evals) = losses(&out);
    println!(
        "straight run: {} losses, {} evaluations; killed {} times: the same",
        want.len(),
        want_evals.len(),
        aims.len()
    );
    assert_eq!(got, want, "the killed and resumed run's losses differ from the run never killed");
    assert_eq!(got_evals, want_evals);
    let _ = std::fs::remove_dir_all(&root);
}
