//! Submits short enough that no driver resets the GPU. Windows resets a GPU whose single
//! submission runs longer than about 2 s (TDR). A training step, prefill or evaluation is a list
//! of pieces cut at layer boundaries (the embedding, each block, the head, the loss, each block's
//! backward, the clip and the update); a [`SubmitPlan`] submits them in as few groups as keep
//! every group's measured GPU time under a budget. The first run of a plan submits every
//! dispatch on its own and measures each (so even that run holds no submit longer than one
//! dispatch); later runs group whole pieces by those times up to [`FILL`] of the budget, cut a
//! piece over it between its dispatches, and a dispatch over it (a big matrix product) into
//! slices of its output's rows or columns. A submit measured over the budget scales its dispatches'
//! estimates up, so the next run splits it further. Splitting changes only where command
//! buffers end and which workgroups a dispatch holds, never the arithmetic: results are
//! bit-identical to one submit.
//!
//! Natively each group is timed from its submit to the device's wait on it returning; waiting
//! keeps the CPU from recording ahead, so after a plan's first few runs only every 16th is timed
//! (the others submit the same groups without waiting). In the browser nothing can block: each
//! submit's `onSubmittedWorkDone` records when it finished, and the next run learns from the
//! previous one's times (until they arrive, every dispatch is its own submit).

use std::ops::Range;
#[cfg(target_arch = "wasm32")]
use std::sync::{Arc, Mutex};

use crate::gpu::{now_ms, Gpu};
use crate::kernels::{Launch, Program};

/// The budget where the caller says nothing else ([`crate::options::Options`]' default): a
/// quarter of Windows' 2 s TDR limit.
pub const DEFAULT_BUDGET_MS: f64 = 500.0;

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
/// cut between its dispatches, and a dispatch that alone does (a big matrix product) into
/// slices of its output where it can be ([`Launch::max_slices`]).
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

    fn launches(&self) -> impl Iterator<Item = &Launch> {
        self.programs.iter().flat_map(|p| p.launches())
    }

    /// Into how many slices each of its dispatches can be cut.
    fn shape(&self) -> Vec<usize> {
        self.launches().map(Launch::max_slices).collect()
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

    /// Records slice `j` of dispatch `d` cut into `of` (the commands before the piece with the
    /// first slice of its first dispatch). The cut's dispatches are made the first time it is
    /// asked for, before the pass begins, and kept.
    fn encode_slice(&self, enc: &mut wgpu::CommandEncoder, d: usize, j: usize, of: usize) {
        if d == 0 && j == 0 {
            if let Some(pre) = &self.pre {
                pre(enc);
            }
        }
        let launch = self.launches().nth(d).expect("a slice of one of the piece's dispatches");
        launch.prepare(of);
        launch.encode_slice(&mut enc.begin_compute_pass(&Default::default()), j, of);
    }
}

/// What one submit holds: whole pieces, a part (dispatches) of one piece, or a slice of one
/// dispatch.
#[derive(Debug, Clone, PartialEq)]
enum Unit {
    Pieces(Range<usize>),
    Part { piece: usize, dispatches: Range<usize> },
    Slice { piece: usize, dispatch: usize, slice: usize, of: usize },
}

/// Times of one run's submits in the browser: submit time, and the done time once reported.
#[cfg(target_arch = "wasm32")]
struct Pending {
    units: Vec<Unit>,
    shape: Vec<Vec<usize>>,
    submitted: Vec<f64>,
    done: Arc<Mutex<Vec<Option<f64>>>>,
}

/// Where the submits of one kind of run (a training step, a forward of one shape, a prefill of
/// one length) are cut, learned from measured times.
pub struct SubmitPlan {
    budget_ms: f64,
    /// Estimated GPU milliseconds of each dispatch of each piece; a piece not measured yet (or
    /// whose dispatches changed in number) has none.
    est: Vec<Vec<f64>>,
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

/// The share of the budget a plan fills with its estimates: a submit's time varies from run to
/// run (by a tenth or two on lavapipe), and the margin keeps such a submit under the budget.
const FILL: f64 = 0.75;

/// Closes the open group of whole pieces (its first piece and estimate) before piece `end`.
fn close(units: &mut Vec<Unit>, group: &mut Option<(usize, f64)>, end: usize) {
    if let Some((start, _)) = group.take() {
        units.push(Unit::Pieces(start..end));
    }
}

impl SubmitPlan {
    /// A plan with `budget_ms` (0: one submit always).
    pub fn new(budget_ms: f64) -> SubmitPlan {
        SubmitPlan {
            budget_ms: budget_ms.max(0.0),
            est: Vec::new(),
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
    }

    /// How the last run was submitted.
    pub fn stats(&self) -> SubmitStats {
        self.last
    }

    /// Whether piece `i`, of `dispatches` dispatches, has been measured.
    fn known(&self, i: usize, dispatches: usize) -> bool {
        self.est.get(i).is_some_and(|e| e.len() == dispatches)
    }

    /// Into how many slices a dispatch estimated at `ms` is cut (at most `max`).
    fn slices(&self, ms: f64, max: usize) -> usize {
        let cap = FILL * self.budget_ms;
        if ms <= cap {
            1
        } else {
            ((ms / cap).ceil() as usize).clamp(1, max.max(1))
        }
    }

    /// The submits of pieces whose dispatches can be cut into `shape` slices each: a piece not
    /// measured yet has every dispatch alone; measured pieces go in groups of consecutive whole
    /// pieces whose estimates add up to at most [`FILL`] of the budget, a piece over that is
    /// cut between its dispatches by their estimates, and a dispatch over it alone into slices.
    fn units(&self, shape: &[Vec<usize>]) -> Vec<Unit> {
        let cap = FILL * self.budget_ms;
        let mut units = Vec::new();
        let mut group: Option<(usize, f64)> = None;
        for (i, max) in shape.iter().enumerate() {
            if max.is_empty() {
                // nothing to time: it goes with the open group or opens one
                group.get_or_insert((i, 0.0));
                continue;
            }
            if !self.known(i, max.len()) {
                close(&mut units, &mut group, i);
                units.extend((0..max.len()).map(|d| Unit::Part { piece: i, dispatches: d..d + 1 }));
                continue;
            }
            let est = &self.est[i];
            let total: f64 = est.iter().sum();
            if total <= cap {
                match &mut group {
                    Some((_, sum)) if *sum + total <= cap => *sum += total,
                    _ => {
                        close(&mut units, &mut group, i);
                        group = Some((i, total));
                    }
                }
                continue;
            }
            close(&mut units, &mut group, i);
            let (mut start, mut sum) = (0, 0.0);
            for (d, (&ms, &m)) in est.iter().zip(max).enumerate() {
                let of = self.slices(ms, m);
                if d > start && (of > 1 || sum + ms > cap) {
                    units.push(Unit::Part { piece: i, dispatches: start..d });
                    (start, sum) = (d, 0.0);
                }
                if of > 1 {
                    units.extend((0..of).map(|slice| Unit::Slice { piece: i, dispatch: d, slice, of }));
                    (start, sum) = (d + 1, 0.0);
                    continue;
                }
                sum += ms;
            }
            if start < est.len() {
                units.push(Unit::Part { piece: i, dispatches: start..est.len() });
            }
        }
        close(&mut units, &mut group, shape.len());
        units
    }

    /// Learns from the measured milliseconds of `units` (made by [`SubmitPlan::units`] for
    /// `shape`): a piece measured for the first time gets its dispatches' times; a submit over
    /// the budget raises the estimates of what it held to its time (so the next run cuts it
    /// further), a slice over it cuts its dispatch into more.
    fn learn(&mut self, units: &[Unit], shape: &[Vec<usize>], times: &[f64]) {
        let fresh: Vec<bool> = shape.iter().enumerate().map(|(i, m)| !self.known(i, m.len())).collect();
        if self.est.len() < shape.len() {
            self.est.resize(shape.len(), Vec::new());
        }
        for (i, m) in shape.iter().enumerate() {
            if fresh[i] {
                self.est[i] = vec![0.0; m.len()];
            }
        }
        for (u, &ms) in units.iter().zip(times) {
            match *u {
                // a piece not measured before ran one dispatch per submit
                Unit::Part { piece, ref dispatches } if fresh[piece] => self.est[piece][dispatches.start] = ms,
                _ if ms <= self.budget_ms => {}
                Unit::Pieces(ref g) => self.scale(g.clone().map(|i| (i, 0..shape[i].len())).collect(), ms),
                Unit::Part { piece, ref dispatches } => self.scale(vec![(piece, dispatches.clone())], ms),
                Unit::Slice { piece, dispatch, of, .. } => {
                    let e = &mut self.est[piece][dispatch];
                    *e = e.max(ms * of as f64);
                }
            }
        }
        self.last.longest_ms = times.iter().copied().reduce(f64::max);
    }

    /// Raises the estimates of the dispatches `spans` (piece, dispatches) that ran in one
    /// submit measured at `ms` so they add up to it.
    fn scale(&mut self, spans: Vec<(usize, Range<usize>)>, ms: f64) {
        let sum: f64 = spans.iter().map(|(i, r)| self.est[*i][r.clone()].iter().sum::<f64>()).sum();
        let n: usize = spans.iter().map(|(_, r)| r.len()).sum();
        for (i, r) in spans {
            for e in &mut self.est[i][r] {
                *e = if sum > 0.0 { *e * ms / sum } else { ms / n as f64 };
            }
        }
    }

    /// Submits `pieces` in order: in one command buffer where the budget is 0, else in the
    /// plan's submits, each timed.
    pub fn run(&mut self, gpu: &Gpu, pieces: &[Piece]) {
        #[cfg(target_arch = "wasm32")]
        self.harvest();
        let shape: Vec<Vec<usize>> = pieces.iter().map(Piece::shape).collect();
        let encode = |u: &Unit| {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            match u {
                Unit::Pieces(g) => {
                    for (p, m) in pieces[g.clone()].iter().zip(&shape[g.clone()]) {
                        p.encode(&mut enc, 0..m.len());
                    }
                }
                Unit::Part { piece, dispatches } => pieces[*piece].encode(&mut enc, dispatches.clone()),
                &Unit::Slice { piece, dispatch, slice, of } => {
                    pieces[piece].encode_slice(&mut enc, dispatch, slice, of)
                }
            }
            enc.finish()
        };
        if self.budget_ms <= 0.0 {
            gpu.queue.submit([encode(&Unit::Pieces(0..pieces.len()))]);
            self.last = SubmitStats { submits: 1, longest_ms: None };
            return;
        }
        let units = self.units(&shape);
        // in the browser longest_ms stays the last measured run's (harvest)
        self.last.submits = units.len();
        #[cfg(not(target_arch = "wasm32"))]
        {
            let measure = shape.iter().enumerate().any(|(i, m)| !self.known(i, m.len()))
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
            self.learn(&units, &shape, &times);
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
                self.pending = Some(Pending { units, shape, submitted, done });
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
        self.learn(&p.units, &p.shape, &times);
        self.last.submits = submits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(piece: usize, r: Range<usize>) -> Unit {
        Unit::Part { piece, dispatches: r }
    }

    fn slices(piece: usize, dispatch: usize, of: usize) -> Vec<Unit> {
        (0..of).map(|slice| Unit::Slice { piece, dispatch, slice, of }).collect()
    }

    #[test]
    fn units_follow_the_estimates() {
        let shape = vec![vec![1; 3]; 4];
        let mut plan = SubmitPlan::new(10.0); // fills up to 7.5
        let first = plan.units(&shape);
        assert_eq!(first.len(), 12, "unmeasured: every dispatch alone");
        plan.learn(&first, &shape, &[1.0, 1.0, 2.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 1.0, 1.0, 1.0]);
        assert_eq!(plan.est[2], vec![3.0, 3.0, 3.0]);
        let want = vec![Unit::Pieces(0..1), Unit::Pieces(1..2), part(2, 0..2), part(2, 2..3), Unit::Pieces(3..4)];
        assert_eq!(plan.units(&shape), want);
        assert_eq!(plan.units(&shape[..2]), want[..2], "a prefix uses the prefix's estimates");
        // the first submit measured 20 ms: its dispatches scale to 5, 5, 10 and split apart
        // (the 10 ms one cannot be cut: alone)
        plan.learn(&want, &shape, &[20.0, 5.0, 6.0, 3.0, 3.0]);
        assert_eq!(plan.est[0], vec![5.0, 5.0, 10.0]);
        assert_eq!(plan.units(&shape)[..3], [part(0, 0..1), part(0, 1..2), part(0, 2..3)]);
        assert_eq!(plan.stats().longest_ms, Some(20.0));
        plan.set_budget_ms(1000.0);
        assert_eq!(plan.units(&shape), vec![Unit::Pieces(0..4)]);
        // a piece whose dispatches changed in number is measured again, dispatch by dispatch
        let mut changed = shape.clone();
        changed[1].push(1);
        assert_eq!(
            plan.units(&changed),
            [vec![Unit::Pieces(0..1)], (0..4).map(|d| part(1, d..d + 1)).collect(), vec![Unit::Pieces(2..4)]].concat()
        );
    }

    #[test]
    fn a_dispatch_over_the_budget_is_cut_into_slices() {
        let shape = vec![vec![1, 8, 1], vec![]];
        let mut plan = SubmitPlan::new(10.0);
        let first = plan.units(&shape);
        assert_eq!(first, vec![part(0, 0..1), part(0, 1..2), part(0, 2..3), Unit::Pieces(1..2)]);
        plan.learn(&first, &shape, &[1.0, 30.0, 1.0, 0.1]);
        // 30 ms over 7.5 a slice: 4 slices
        let want = [vec![part(0, 0..1)], slices(0, 1, 4), vec![part(0, 2..3), Unit::Pieces(1..2)]].concat();
        assert_eq!(plan.units(&shape), want);
        // a slice measured at 12 ms: 4 x 12 = 48 ms, so 7 slices
        plan.learn(&want, &shape, &[1.0, 12.0, 8.0, 8.0, 8.0, 1.0, 0.1]);
        assert_eq!(plan.units(&shape)[1..8], slices(0, 1, 7)[..]);
        // never more slices than the dispatch has (its workgroup rows)
        plan.learn(&plan.units(&shape), &shape, &[1.0, 100.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1]);
        assert_eq!(plan.units(&shape)[1..9], slices(0, 1, 8)[..]);
        assert_eq!(plan.units(&shape).len(), 11);
    }
}
