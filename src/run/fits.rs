//! Whether a training run fits the device, checked before anything is allocated with the same
//! checks [`crate::Gpt2::new`] and [`crate::Gpt2::forward_plan`] make, and what fits instead when
//! it does not: the page's plan and `wgpt train` say the same.

use crate::kernels::AttentionKind;
use crate::model::Gpt2Config;
use crate::{Error, Gpu, Result};

/// Checks training `model` at batch `b` and context `t` with attention of `kind` against `gpu`'s
/// limits; past them the
/// error also says what fits: the largest batch (with the gradient accumulation that keeps the
/// sequences per step) and the longest context at this batch.
pub fn check_fits(gpu: &Gpu, model: &Gpt2Config, b: usize, t: usize, kind: AttentionKind) -> Result<()> {
    let fits = |b: usize, t: usize| model.check_params(gpu).and_then(|_| model.check_activations(gpu, b, t, kind));
    let Err(e) = fits(b, t) else { return Ok(()) };
    let batch = largest_below(b, |b2| fits(b2, t).is_ok());
    let context = largest_below(t, |t2| fits(b, t2).is_ok());
    let mut offers = vec![];
    if let Some(b2) = batch {
        offers.push(format!(
            "batch size {b2} with gradient accumulation {} ({} sequences per step)",
            b.div_ceil(b2),
            b2 * b.div_ceil(b2)
        ));
    }
    if let Some(t2) = context {
        offers.push(format!("a context (block size) of {t2} at batch {b}"));
    }
    if offers.is_empty() {
        return Err(e);
    }
    let why = match e {
        Error::Limits(m) => m,
        other => other.to_string(),
    };
    Err(Error::Limits(format!("{}. What fits this GPU: {}", why.trim_end_matches('.'), offers.join("; or "))))
}

/// The largest n in 1..limit with `ok(n)`, for an `ok` that holds up to some point and not past
/// it (memory grows with n); None when not even 1 is ok.
fn largest_below(limit: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let (mut lo, mut hi) = (0, limit); // ok(lo) or lo == 0; not ok(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo > 0).then_some(lo)
}

#[cfg(test)]
mod tests {
    use super::largest_below;

    #[test]
    fn largest_below_finds_the_edge() {
        assert_eq!(largest_below(100, |n| n <= 37), Some(37));
        assert_eq!(largest_below(100, |_| false), None);
        assert_eq!(largest_below(1, |_| true), None, "1 itself is the limit, known not to fit");
    }
}
