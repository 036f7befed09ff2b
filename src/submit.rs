//! Submits short enough that no driver resets the GPU. Windows resets a GPU whose single
//! submission runs longer than about 2 s (TDR). A training step, prefill or evaluation is a list
//! of pieces cut at layer boundaries (the embedding, each block, the head, the loss, each block's
//! backward, the clip and the update); a [`SubmitPlan`] submits them in as few groups as keep
//! every group's measured GPU time under a budget. The first run of a plan submits every piece on
//! its own and measures each; later runs group the pieces by those times, and a group measured
//! over the budget scales its pieces' estimates up, so the next run splits it further. Splitting
//! changes only where command buffers end, never the arithmetic: results are bit-identical to
//! one submit.
//!
//! Natively each group is timed from its submit to the device's wait on it returning. In the
//! browser nothing can block: each submit's `onSubmittedWorkDone` records when it finished, and
//! the next run learns from the previous one's times (until they arrive, every piece is its own
//! submit).

use std::ops::Range;
use std::sync::OnceLock;
#[cfg(target_arch = "wasm32")]
use std::sync::{Arc, Mutex};

use crate::gpu::{now_ms, Gpu};
use crate::{Error, Result};

/// The budget where neither `--submit-budget-ms` nor `WGPT_SUBMIT_BUDGET_MS` says otherwise: a
/// quarter of Windows' 2 s TDR limit.
pub const DEFAULT_BUDGET_MS: f64 = 500.0;

/// The environment variable that sets the budget in milliseconds (0: one submit always).
pub const BUDGET_ENV: &str = "WGPT_SUBMIT_BUDGET_MS";

static BUDGET_OVERRIDE: OnceLock<f64> = OnceLock::new();

/// Sets the process's budget over `WGPT_SUBMIT_BUDGET_MS` (the CLI's `--submit-budget-ms`);
/// plans made afterwards start with it. Only the first call counts.
pub fn set_budget_ms(ms: f64) -> Result<()> {
    let ms = check_budget(ms, "--submit-budget-ms")?;
    let _ = BUDGET_OVERRIDE.set(ms);
    Ok(())
}

fn check_budget(ms: f64, what: &str) -> Result<f64> {
    if ms.is_finite() && ms >= 0.0 {
        Ok(ms)
    } else {
        Err(Error::Input(format!("{what} must be a number of milliseconds >= 0 (0: one submit per step), got {ms}")))
    }
}

/// The budget new plans get: [`set_budget_ms`]'s, else `WGPT_SUBMIT_BUDGET_MS`, else
/// [`DEFAULT_BUDGET_MS`]. A variable that is not a number is an error saying so.
pub fn budget_ms() -> Result<f64> {
    if let Some(&ms) = BUDGET_OVERRIDE.get() {
        return Ok(ms);
    }
    match std::env::var(BUDGET_ENV) {
        Ok(s) => {
            let ms = s.trim().parse::<f64>().map_err(|_| {
                Error::Input(format!("{BUDGET_ENV}={s:?} is not a number of milliseconds (0: one submit per step)"))
            })?;
            check_budget(ms, BUDGET_ENV)
        }
        Err(_) => Ok(DEFAULT_BUDGET_MS),
    }
}

/// How the last run of a plan was submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SubmitStats {
    /// Command buffers submitted.
    pub submits: usize,
    /// The longest of their measured GPU times in milliseconds; None where nothing was measured
    /// (budget 0, or in the browser before the times came back; there it is the latest run
    /// whose times came back).
    pub longest_ms: Option<f64>,
}

/// One piece of a run: records its commands (usually one compute pass) into an encoder.
pub type Piece<'a> = Box<dyn Fn(&mut wgpu::CommandEncoder) + 'a>;

/// A piece that runs `programs` in one compute pass.
pub fn pass<'a>(programs: Vec<&'a crate::kernels::Program>) -> Piece<'a> {
    Box::new(move |enc| {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for p in &programs {
            p.encode(&mut pass);
        }
    })
}

/// Times of one run's groups in the browser: submit time, and the done time once reported.
#[cfg(target_arch = "wasm32")]
struct Pending {
    groups: Vec<Range<usize>>,
    submitted: Vec<f64>,
    done: Arc<Mutex<Vec<Option<f64>>>>,
}

/// Where the submits of one kind of run (a training step, a forward of one shape, a prefill of
/// one length) are cut, learned from measured times.
pub struct SubmitPlan {
    budget_ms: f64,
    /// Estimated GPU milliseconds of each piece (empty until measured).
    est: Vec<f64>,
    last: SubmitStats,
    #[cfg(target_arch = "wasm32")]
    pending: Option<Pending>,
}

impl SubmitPlan {
    /// A plan with the process's budget ([`budget_ms`]).
    pub fn from_env() -> Result<SubmitPlan> {
        Ok(SubmitPlan::new(budget_ms()?))
    }

    /// A plan with `budget_ms` (0: one submit always).
    pub fn new(budget_ms: f64) -> SubmitPlan {
        SubmitPlan {
            budget_ms: budget_ms.max(0.0),
            est: Vec::new(),
            last: SubmitStats::default(),
            #[cfg(target_arch = "wasm32")]
            pending: None,
        }
    }

    pub fn budget_ms(&self) -> f64 {
        self.budget_ms
    }

    /// Changes the budget; what was measured is kept.
    pub fn set_budget_ms(&mut self, ms: f64) {
        self.budget_ms = ms.max(0.0);
    }

    /// How the last run was submitted.
    pub fn stats(&self) -> SubmitStats {
        self.last
    }

    /// The groups of `n` pieces: every piece alone until measured, else consecutive pieces
    /// whose estimates add up to at most the budget (a piece over it alone).
    fn groups(&self, n: usize) -> Vec<Range<usize>> {
        if self.est.len() < n {
            return (0..n).map(|i| i..i + 1).collect();
        }
        let mut groups = Vec::new();
        let (mut start, mut sum) = (0, 0.0);
        for (i, &ms) in self.est[..n].iter().enumerate() {
            if i > start && sum + ms > self.budget_ms {
                groups.push(start..i);
                (start, sum) = (i, 0.0);
            }
            sum += ms;
        }
        if n > 0 {
            groups.push(start..n);
        }
        groups
    }

    /// Learns from the measured milliseconds of `groups`: a run that measured every piece alone
    /// sets the estimates; a group over the budget scales its pieces' estimates up to its time.
    fn learn(&mut self, groups: &[Range<usize>], times: &[f64]) {
        let n = groups.last().map_or(0, |g| g.end);
        if self.est.len() < n && groups.len() == n {
            self.est = times.to_vec();
        } else if self.est.len() >= n {
            for (g, &ms) in groups.iter().zip(times) {
                let sum: f64 = self.est[g.clone()].iter().sum();
                if ms > self.budget_ms && g.len() > 1 {
                    for e in &mut self.est[g.clone()] {
                        *e = if sum > 0.0 { *e * ms / sum } else { ms / g.len() as f64 };
                    }
                }
            }
        }
        self.last.longest_ms = times.iter().copied().reduce(f64::max);
    }

    /// Submits `pieces` in order: in one command buffer where the budget is 0, else in the
    /// plan's groups, each timed.
    pub fn run(&mut self, gpu: &Gpu, pieces: &[Piece]) {
        #[cfg(target_arch = "wasm32")]
        self.harvest();
        if self.budget_ms <= 0.0 {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            for p in pieces {
                p(&mut enc);
            }
            gpu.queue.submit([enc.finish()]);
            self.last = SubmitStats { submits: 1, longest_ms: None };
            return;
        }
        let groups = self.groups(pieces.len());
        // in the browser longest_ms stays the last measured run's (harvest)
        self.last.submits = groups.len();
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut times = Vec::with_capacity(groups.len());
            for g in &groups {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                for p in &pieces[g.clone()] {
                    p(&mut enc);
                }
                let t0 = now_ms();
                let index = gpu.queue.submit([enc.finish()]);
                // an error here (a lost device) is reported by the next readback
                let _ = gpu.device.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None });
                times.push(now_ms() - t0);
            }
            self.learn(&groups, &times);
        }
        #[cfg(target_arch = "wasm32")]
        {
            // one measured run at a time: while one's times are still coming back, submit only
            let measure = self.pending.is_none();
            let done = Arc::new(Mutex::new(vec![None; groups.len()]));
            let mut submitted = Vec::with_capacity(groups.len());
            for (i, g) in groups.iter().enumerate() {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                for p in &pieces[g.clone()] {
                    p(&mut enc);
                }
                submitted.push(now_ms());
                gpu.queue.submit([enc.finish()]);
                if measure {
                    let done = done.clone();
                    gpu.queue.on_submitted_work_done(move || {
                        done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(now_ms());
                    });
                }
            }
            if measure {
                self.pending = Some(Pending { groups, submitted, done });
            }
        }
    }

    /// Learns from the measured run's times once they have all come back: a group ran from
    /// its submit or the previous group's end, whichever was later, to its own end (the event
    /// loop's delays make this coarser than the native wait).
    #[cfg(target_arch = "wasm32")]
    fn harvest(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let done: Option<Vec<f64>> = p.done.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
        let Some(done) = done else {
            self.pending = Some(p);
            return;
        };
        let mut prev = f64::MIN;
        let times: Vec<f64> = done
            .iter()
            .zip(&p.submitted)
            .map(|(&end, &start)| {
                let t = end - start.max(prev);
                prev = end;
                t.max(0.0)
            })
            .collect();
        let submits = self.last.submits;
        self.learn(&p.groups, &times);
        self.last.submits = submits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_the_estimates() {
        let mut plan = SubmitPlan::new(10.0);
        assert_eq!(plan.groups(3), vec![0..1, 1..2, 2..3], "unmeasured: every piece alone");
        plan.learn(&plan.groups(4), &[4.0, 5.0, 12.0, 3.0]);
        assert_eq!(plan.est, vec![4.0, 5.0, 12.0, 3.0]);
        assert_eq!(plan.groups(4), vec![0..2, 2..3, 3..4]);
        assert_eq!(plan.groups(2), vec![0..2], "a prefix uses the prefix's estimates");
        // the first group measured 20 ms: its pieces scale to 20 and split apart
        plan.learn(&[0..2, 2..3, 3..4], &[20.0, 12.0, 3.0]);
        assert_eq!(plan.groups(4), vec![0..1, 1..2, 2..3, 3..4]);
        assert_eq!(plan.stats().longest_ms, Some(20.0));
        plan.set_budget_ms(1000.0);
        assert_eq!(plan.groups(4), vec![0..4]);
    }
}
