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
//! Natively each group is timed from its submit to the device's wait on it returning; waiting
//! keeps the CPU from recording ahead, so after a plan's first few runs only every 16th is timed
//! (the others submit the same groups without waiting). In the browser nothing can block: each submit's `onSubmittedWorkDone` records when it finished, and
//! the next run learns from the previous one's times (until they arrive, every piece is its own
//! submit).

use std::ops::Range;
use std::sync::OnceLock;
#[cfg(target_arch = "wasm32")]
use std::sync::{Arc, Mutex};

use crate::gpu::{now_ms, Gpu};
use crate::kernels::Program;
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

/// Commands recorded straight into an encoder (buffer clears and copies).
type Encoding<'a> = Box<dyn Fn(&mut wgpu::CommandEncoder) + 'a>;

/// One piece of a run: commands before it (buffer clears and copies) and programs run in one
/// compute pass. Pieces are the preferred cut points; a piece that alone runs over the budget is
/// cut between its dispatches too.
pub struct Piece<'a> {
    pre: Option<Encoding<'a>>,
    programs: Vec<&'a Program>,
}

impl<'a> Piece<'a> {
    /// A piece that runs `programs` in one compute pass.
    pub fn pass(programs: Vec<&'a Program>) -> Piece<'a> {
        Piece { pre: None, programs }
    }

    /// A piece whose encoder commands `pre` come before its programs.
    pub fn with_pre(pre: impl Fn(&mut wgpu::CommandEncoder) + 'a, programs: Vec<&'a Program>) -> Piece<'a> {
        Piece { pre: Some(Box::new(pre)), programs }
    }

    fn dispatches(&self) -> usize {
        self.programs.iter().map(|p| p.len()).sum()
    }

    /// Records dispatches `range` of the piece (the commands before it with the first).
    fn encode(&self, enc: &mut wgpu::CommandEncoder, range: Range<usize>) {
        if range.start == 0 {
            if let Some(pre) = &self.pre {
                pre(enc);
            }
        }
        let mut pass = enc.begin_compute_pass(&Default::default());
        let mut at = 0;
        for p in &self.programs {
            let (start, end) = (range.start.max(at), range.end.min(at + p.len()));
            if start < end {
                p.encode_range(&mut pass, start - at..end - at);
            }
            at += p.len();
        }
    }
}

/// What one submit holds: whole pieces, or a part (dispatches) of one piece.
#[derive(Debug, Clone, PartialEq)]
enum Unit {
    Pieces(Range<usize>),
    Part { piece: usize, dispatches: Range<usize> },
}

/// Times of one run's submits in the browser: submit time, and the done time once reported.
#[cfg(target_arch = "wasm32")]
struct Pending {
    units: Vec<Unit>,
    dispatches: Vec<usize>,
    submitted: Vec<f64>,
    done: Arc<Mutex<Vec<Option<f64>>>>,
}

/// Where the submits of one kind of run (a training step, a forward of one shape, a prefill of
/// one length) are cut, learned from measured times.
pub struct SubmitPlan {
    budget_ms: f64,
    /// Estimated GPU milliseconds of each piece (empty until measured).
    est: Vec<f64>,
    /// Into how many submits each piece is cut (1: whole; more where it alone is over budget).
    parts: Vec<usize>,
    last: SubmitStats,
    /// Runs since the plan was made (which runs wait on their submits to time them).
    #[cfg(not(target_arch = "wasm32"))]
    runs: u64,
    #[cfg(target_arch = "wasm32")]
    pending: Option<Pending>,
}

/// Natively, timing a submit means waiting on it, which keeps the CPU from recording the next
/// one while the GPU runs: after the first [`MEASURED_FIRST`] runs, only every
/// [`MEASURE_EVERY`]th run is timed (and re-split where it went over the budget).
#[cfg(not(target_arch = "wasm32"))]
const MEASURED_FIRST: u64 = 4;
#[cfg(not(target_arch = "wasm32"))]
const MEASURE_EVERY: u64 = 16;

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
            parts: Vec::new(),
            last: SubmitStats::default(),
            #[cfg(not(target_arch = "wasm32"))]
            runs: 0,
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
        // pieces over the new budget are cut as the first measurement would (at most one
        // dispatch per part: `units` caps it)
        for (p, &e) in self.parts.iter_mut().zip(&self.est) {
            *p = if e <= self.budget_ms { 1 } else { (e / self.budget_ms).ceil() as usize };
        }
    }

    /// How the last run was submitted.
    pub fn stats(&self) -> SubmitStats {
        self.last
    }

    /// The submits of pieces with `dispatches` each: every piece alone until measured, else
    /// consecutive pieces whose estimates add up to at most the budget, and a piece over it
    /// alone or, cut between its dispatches, in parts.
    fn units(&self, dispatches: &[usize]) -> Vec<Unit> {
        let n = dispatches.len();
        if self.est.len() < n {
            return (0..n).map(|i| Unit::Pieces(i..i + 1)).collect();
        }
        let mut units = Vec::new();
        let (mut start, mut sum) = (0, 0.0);
        for (i, &ms) in self.est[..n].iter().enumerate() {
            let parts = self.parts[i].min(dispatches[i]);
            if i > start && (sum + ms > self.budget_ms || parts > 1) {
                units.push(Unit::Pieces(start..i));
                (start, sum) = (i, 0.0);
            }
            if parts > 1 {
                let d = dispatches[i];
                units.extend(
                    (0..parts).map(|j| Unit::Part { piece: i, dispatches: j * d / parts..(j + 1) * d / parts }),
                );
                (start, sum) = (i + 1, 0.0);
                continue;
            }
            sum += ms;
        }
        if start < n {
            units.push(Unit::Pieces(start..n));
        }
        units
    }

    /// Cuts a piece measured at `ms` alone into enough parts for the budget (at most one
    /// dispatch each).
    fn cut(&mut self, piece: usize, ms: f64, dispatches: usize) {
        let want = (ms / self.budget_ms).ceil() as usize;
        self.parts[piece] = want.max(self.parts[piece]).clamp(1, dispatches.max(1));
    }

    /// Learns from the measured milliseconds of `units`: a run that measured every piece alone
    /// sets the estimates; a submit over the budget raises its pieces' estimates to its time,
    /// or cuts its piece into more parts.
    fn learn(&mut self, units: &[Unit], dispatches: &[usize], times: &[f64]) {
        let n = dispatches.len();
        if self.est.len() < n {
            if units.len() != n {
                return;
            }
            self.est = times.to_vec();
            self.parts = vec![1; n];
            for (i, &ms) in times.iter().enumerate() {
                if ms > self.budget_ms {
                    self.cut(i, ms, dispatches[i]);
                }
            }
        } else {
            let mut over_parts = vec![0.0f64; n];
            for (u, &ms) in units.iter().zip(times) {
                match u {
                    Unit::Pieces(g) if ms > self.budget_ms && g.len() > 1 => {
                        let sum: f64 = self.est[g.clone()].iter().sum();
                        for e in &mut self.est[g.clone()] {
                            *e = if sum > 0.0 { *e * ms / sum } else { ms / g.len() as f64 };
                        }
                    }
                    Unit::Pieces(g) if ms > self.budget_ms => {
                        self.est[g.start] = ms;
                        self.cut(g.start, ms, dispatches[g.start]);
                    }
                    Unit::Part { piece, .. } => over_parts[*piece] = over_parts[*piece].max(ms),
                    Unit::Pieces(_) => {}
                }
            }
            for (i, &ms) in over_parts.iter().enumerate() {
                if ms > self.budget_ms {
                    // the longest part over budget: that many times more parts
                    let more = self.parts[i] as f64 * ms / self.budget_ms;
                    self.cut(i, more * self.budget_ms, dispatches[i]);
                }
            }
        }
        self.last.longest_ms = times.iter().copied().reduce(f64::max);
    }

    /// Submits `pieces` in order: in one command buffer where the budget is 0, else in the
    /// plan's submits, each timed.
    pub fn run(&mut self, gpu: &Gpu, pieces: &[Piece]) {
        #[cfg(target_arch = "wasm32")]
        self.harvest();
        let dispatches: Vec<usize> = pieces.iter().map(Piece::dispatches).collect();
        let encode = |u: &Unit| {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            match u {
                Unit::Pieces(g) => {
                    for (p, &d) in pieces[g.clone()].iter().zip(&dispatches[g.clone()]) {
                        p.encode(&mut enc, 0..d);
                    }
                }
                Unit::Part { piece, dispatches } => pieces[*piece].encode(&mut enc, dispatches.clone()),
            }
            enc.finish()
        };
        if self.budget_ms <= 0.0 {
            gpu.queue.submit([encode(&Unit::Pieces(0..pieces.len()))]);
            self.last = SubmitStats { submits: 1, longest_ms: None };
            return;
        }
        let units = self.units(&dispatches);
        // in the browser longest_ms stays the last measured run's (harvest)
        self.last.submits = units.len();
        #[cfg(not(target_arch = "wasm32"))]
        {
            let measure = self.est.len() < dispatches.len()
                || self.runs < MEASURED_FIRST
                || self.runs.is_multiple_of(MEASURE_EVERY);
            self.runs += 1;
            if !measure {
                for u in &units {
                    gpu.queue.submit([encode(u)]);
                }
                return;
            }
            let mut times = Vec::with_capacity(units.len());
            for u in &units {
                let commands = encode(u);
                let t0 = now_ms();
                let index = gpu.queue.submit([commands]);
                // an error here (a lost device) is reported by the next readback
                let _ = gpu.device.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None });
                times.push(now_ms() - t0);
            }
            self.learn(&units, &dispatches, &times);
        }
        #[cfg(target_arch = "wasm32")]
        {
            // one measured run at a time: while one's times are still coming back, submit only
            let measure = self.pending.is_none();
            let done = Arc::new(Mutex::new(vec![None; units.len()]));
            let mut submitted = Vec::with_capacity(units.len());
            for (i, u) in units.iter().enumerate() {
                let commands = encode(u);
                submitted.push(now_ms());
                gpu.queue.submit([commands]);
                if measure {
                    let done = done.clone();
                    gpu.queue.on_submitted_work_done(move || {
                        done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(now_ms());
                    });
                }
            }
            if measure {
                self.pending = Some(Pending { units, dispatches, submitted, done });
            }
        }
    }

    /// Learns from the measured run's times once they have all come back: a submit ran from
    /// its own start or the previous one's end, whichever was later, to its own end (the event
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
        self.learn(&p.units, &p.dispatches, &times);
        self.last.submits = submits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(units: &[Unit]) -> Vec<Range<usize>> {
        units.iter().map(|u| if let Unit::Pieces(g) = u { g.clone() } else { panic!("{u:?} is a part") }).collect()
    }

    #[test]
    fn units_follow_the_estimates() {
        let d = [3, 3, 3, 3];
        let mut plan = SubmitPlan::new(10.0);
        assert_eq!(pieces(&plan.units(&d[..3])), vec![0..1, 1..2, 2..3], "unmeasured: every piece alone");
        plan.learn(&plan.units(&d), &d, &[4.0, 5.0, 9.0, 3.0]);
        assert_eq!(plan.est, vec![4.0, 5.0, 9.0, 3.0]);
        assert_eq!(pieces(&plan.units(&d)), vec![0..2, 2..3, 3..4]);
        assert_eq!(pieces(&plan.units(&d[..2])), vec![0..2], "a prefix uses the prefix's estimates");
        // the first submit measured 20 ms: its pieces scale to 20 and split apart
        plan.learn(&plan.units(&d), &d, &[20.0, 9.0, 3.0]);
        assert_eq!(pieces(&plan.units(&d)), vec![0..1, 1..2, 2..3, 3..4]);
        assert_eq!(plan.stats().longest_ms, Some(20.0));
        plan.set_budget_ms(1000.0);
        assert_eq!(pieces(&plan.units(&d)), vec![0..4]);
    }

    #[test]
    fn a_piece_over_the_budget_is_cut_between_its_dispatches() {
        let d = [2, 10, 2];
        let mut plan = SubmitPlan::new(10.0);
        plan.learn(&plan.units(&d), &d, &[1.0, 25.0, 1.0]);
        let part = |piece, r: Range<usize>| Unit::Part { piece, dispatches: r };
        let want = vec![Unit::Pieces(0..1), part(1, 0..3), part(1, 3..6), part(1, 6..10), Unit::Pieces(2..3)];
        assert_eq!(plan.units(&d), want);
        // a part measured at 15 ms: 3 parts x 15/10 = 4.5, so 5 parts
        plan.learn(&want, &d, &[1.0, 15.0, 8.0, 8.0, 1.0]);
        assert_eq!(plan.parts[1], 5);
        // never more parts than dispatches
        plan.learn(&plan.units(&d), &d, &[1.0, 100.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(plan.parts[1], 10);
        assert_eq!(plan.units(&d).len(), 12);
    }
}
