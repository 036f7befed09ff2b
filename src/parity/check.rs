//! One compared quantity of a parity run: elementwise (`|got − want| ≤ atol + rtol·|want|`,
//! the worst element named) or the update's norm per tensor (`‖Δgot − Δwant‖ ≤ r·‖Δwant‖` with
//! Δ = after − before, the worst tensor named).

use crate::cpu::{closeness, Closeness};

/// What a check compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Element by element; `closeness.worst` is the worst element's index.
    Elements,
    /// Each tensor's update in norm, per tensor in parameter order; `closeness.max_rel` is the
    /// worst ratio, `closeness.max_abs` that tensor's ‖Δgot − Δwant‖, `closeness.worst` its
    /// index; `rtol` is r.
    UpdateNorm { tensors: Vec<UpdateRatio> },
}

/// One tensor's update against the reference's.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRatio {
    pub tensor: String,
    /// ‖Δgot − Δwant‖
    pub diff: f32,
    /// ‖Δgot − Δwant‖ / ‖Δwant‖ (0 where neither moves, infinite where only ours does or a
    /// value is NaN)
    pub ratio: f32,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub closeness: Closeness,
    pub atol: f32,
    pub rtol: f32,
    pub measure: Measure,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.closeness.excess <= 0.0
    }

    pub(super) fn new(name: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Check {
        Check {
            name: name.to_string(),
            closeness: closeness(got, want, atol, rtol),
            atol,
            rtol,
            measure: Measure::Elements,
        }
    }

    /// Each part's update Δ = after − before from the same `before`, ours (`got`) against the
    /// reference's (`want`), in norm: passes where every part has ‖Δgot − Δwant‖ ≤ r·‖Δwant‖ (a
    /// part that should not move must not). Sums in f64.
    pub(super) fn update_norm(name: &str, u: Updates<'_>, r: f32) -> Check {
        let mut c = Closeness { max_abs: 0.0, max_rel: 0.0, worst: 0, excess: f32::NEG_INFINITY };
        let mut tensors = Vec::with_capacity(u.parts.len());
        for (i, part) in u.parts.iter().enumerate() {
            let (tensor, at, r0) = (&part.name, part.tensor, part.range.clone());
            let (b, g, w) = (&u.before[at][r0.clone()], &u.got[at][r0.clone()], &u.want[at][r0]);
            let (mut diff, mut norm) = (0.0f64, 0.0f64);
            for ((&b, &g), &w) in b.iter().zip(g).zip(w) {
                let (dg, dw) = (g as f64 - b as f64, w as f64 - b as f64);
                diff += (dg - dw) * (dg - dw);
                norm += dw * dw;
            }
            let (diff, norm) = (diff.sqrt(), norm.sqrt());
            let ratio = match (diff, norm) {
                (d, n) if d.is_nan() || n.is_nan() => f64::INFINITY,
                (d, n) if d == 0.0 && n == 0.0 => 0.0,
                (d, n) => d / n,
            } as f32;
            tensors.push(UpdateRatio { tensor: tensor.clone(), diff: diff as f32, ratio });
            if ratio - r > c.excess {
                c = Closeness { max_abs: diff as f32, max_rel: ratio, worst: i, excess: ratio - r };
            }
        }
        Check { name: name.to_string(), closeness: c, atol: 0.0, rtol: r, measure: Measure::UpdateNorm { tensors } }
    }

    /// The checks of single tensors past their bound, each named `what tensor`, where this is an
    /// update-norm check.
    pub(super) fn failed_tensors(&self, what: &str) -> Vec<Check> {
        let Measure::UpdateNorm { tensors } = &self.measure else { return vec![] };
        tensors
            .iter()
            .filter(|u| u.ratio > self.rtol)
            .map(|u| Check {
                name: format!("{what} {}", u.tensor),
                closeness: Closeness { max_abs: u.diff, max_rel: u.ratio, worst: 0, excess: u.ratio - self.rtol },
                atol: 0.0,
                rtol: self.rtol,
                measure: Measure::UpdateNorm { tensors: vec![u.clone()] },
            })
            .collect()
    }
}

/// The parameters before an update, ours after it and the reference's, per tensor in parameter
/// order, and the parts of them compared in norm.
pub(super) struct Updates<'a> {
    pub parts: &'a [Part],
    pub before: &'a [Vec<f32>],
    pub got: &'a [Vec<f32>],
    pub want: &'a [Vec<f32>],
}

/// A part of a tensor whose update is compared in norm: elements `range` of parameter `tensor`.
pub(super) struct Part {
    pub name: String,
    pub tensor: usize,
    pub range: std::ops::Range<usize>,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.closeness;
        let verdict = if self.passed() { "ok" } else { "FAIL" };
        match &self.measure {
            Measure::Elements => write!(
                f,
                "{verdict:<8} {:<26} max abs err {:.3e}  max rel err {:.3e}  (tolerance {:.0e} + {:.0e}·|want|, worst at [{}])",
                self.name, c.max_abs, c.max_rel, self.atol, self.rtol, c.worst
            ),
            Measure::UpdateNorm { tensors } => write!(
                f,
                "{verdict:<8} {:<26} worst ‖Δgot − Δwant‖/‖Δwant‖ {:.3e} at {}  (bound {:.0e}, {} tensors)",
                self.name,
                c.max_rel,
                tensors.get(c.worst).map_or("-", |u| u.tensor.as_str()),
                self.rtol,
                tensors.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update norm per part: a part off by 1% of its update fails a bound of 1e-3 and is
    /// named; a part that should not move and does, or a NaN, fails; nothing moving passes.
    #[test]
    fn update_norm_names_the_worst_part() {
        let before = vec![vec![1.0f32, 2.0, 3.0, 4.0], vec![0.5, 0.5]];
        let want = vec![vec![1.1f32, 2.1, 3.1, 4.1], vec![0.5, 0.5]];
        let part = |name: &str, tensor, range| Part { name: name.into(), tensor, range };
        let parts = [part("a[0..2]", 0, 0..2), part("a[2..4]", 0, 2..4), part("b", 1, 0..2)];
        let run = |got: &[Vec<f32>]| {
            Check::update_norm("u", Updates { parts: &parts, before: &before, got, want: &want }, 1e-3)
        };
        assert!(run(&want).passed());
        let off = run(&[vec![1.1, 2.1, 3.101, 4.1], vec![0.5, 0.5]]);
        assert!(!off.passed() && off.closeness.worst == 1, "{off}");
        assert!((off.closeness.max_rel - 1e-3 / 0.1f32.hypot(0.1)).abs() < 1e-4, "{off}");
        assert_eq!(off.failed_tensors("x").iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["x a[2..4]"]);
        assert!(!run(&[want[0].clone(), vec![0.5, 0.5001]]).passed(), "b should not move");
        assert!(!run(&[vec![f32::NAN, 2.1, 3.1, 4.1], vec![0.5, 0.5]]).passed(), "NaN");
    }
}
