//! The sampling distribution against `generate::sample` itself: sample only ever picks a
//! candidate, picks exactly the token the inverse CDF of the after-distribution gives for the
//! same random number, and its frequencies over many draws match that distribution.

mod common;

use wgpt::generate::{sample, sampling_distribution, SampleConfig};
use wgpt::rng::Rng;

fn cfg(temperature: f32, top_k: usize, top_p: f32) -> SampleConfig {
    SampleConfig { max_new_tokens: 1, temperature, top_k, top_p, seed: 0 }
}

/// Settings around every edge: greedy, top-k of 1 and of more than V, tight and loose nuclei.
fn settings() -> Vec<SampleConfig> {
    let mut all = vec![];
    for t in [0.0, 0.3, 1.0, 2.5] {
        for k in [0, 1, 5, 60] {
            for p in [0.2, 0.9, 1.0] {
                all.push(cfg(t, k, p));
            }
        }
    }
    all
}

#[test]
fn sample_draws_from_the_after_distribution() {
    let mut data = common::Rng::new(11);
    let (mut draws, mut rows) = (0, 0);
    for row in 0..4 {
        // V 50 with a few repeated logits (ties broken by index in both)
        let mut logits = data.vec(50, -3.0, 3.0);
        logits[7] = logits[3];
        for c in settings() {
            let d = sampling_distribution(&logits, &c).unwrap();
            rows += 1;
            let sum: f64 = d.after.iter().map(|&p| p as f64).sum();
            assert!((sum - 1.0).abs() < 1e-5, "after sums to {sum} for {c:?}");
            let before: f64 = d.before.iter().map(|&p| p as f64).sum();
            assert!((before - 1.0).abs() < 1e-5);
            for (i, &p) in d.after.iter().enumerate() {
                assert_eq!(p > 0.0, d.candidates.contains(&(i as u32)), "token {i}: p {p} vs candidates, {c:?}");
            }
            let by_logit = d.candidates.windows(2).all(|w| logits[w[0] as usize] >= logits[w[1] as usize]);
            assert!(by_logit, "candidates not most likely first: {:?}", d.candidates);
            if c.is_greedy() {
                assert_eq!(d.candidates.len(), 1);
            }
            if c.top_k > 0 {
                assert!(d.candidates.len() <= c.top_k);
            }
            // the same random number through sample and through the inverse CDF of `after`
            let mut rng = Rng::new(row * 1000 + 7);
            for _ in 0..200 {
                let mut peek = rng.clone();
                let u = peek.next_f32() as f64;
                let got = sample(&logits, &c, &mut rng);
                draws += 1;
                assert!(d.candidates.contains(&got), "sample picked {got}, not a candidate of {c:?}");
                if !c.is_greedy() {
                    let mut cum = 0.0;
                    let want = *d
                        .candidates
                        .iter()
                        .find(|&&i| {
                            cum += d.after[i as usize] as f64;
                            cum > u
                        })
                        .unwrap_or(d.candidates.last().unwrap());
                    assert_eq!(got, want, "u = {u}: sample picked {got}, the after-distribution's CDF {want}, {c:?}");
                }
            }
        }
    }
    println!("{draws} draws over {rows} (logits, settings) pairs: every pick a candidate, each the after-CDF's");
}

#[test]
fn frequencies_match_the_after_distribution() {
    let logits = common::Rng::new(5).vec(12, -2.0, 2.0);
    let c = cfg(0.8, 8, 0.95);
    let d = sampling_distribution(&logits, &c).unwrap();
    let n = 40_000;
    let mut counts = vec![0usize; logits.len()];
    let mut rng = Rng::new(3);
    for _ in 0..n {
        counts[sample(&logits, &c, &mut rng) as usize] += 1;
    }
    let mut worst: (f64, usize) = (0.0, 0);
    for (i, (&k, &p)) in counts.iter().zip(&d.after).enumerate() {
        let p = p as f64;
        let sigma = (p * (1.0 - p) / n as f64).sqrt().max(1e-12);
        let z = (k as f64 / n as f64 - p).abs() / sigma;
        if p == 0.0 {
            assert_eq!(k, 0, "token {i} is no candidate but was drawn {k} times");
        } else if z > worst.0 {
            worst = (z, i);
        }
    }
    assert!(
        worst.0 < 5.0,
        "token {}: {} draws of {n}, p {} ({:.1} sigma)",
        worst.1,
        counts[worst.1],
        d.after[worst.1],
        worst.0
    );
    println!(
        "{n} draws, {} candidates: worst frequency {:.2} sigma from the after-distribution",
        d.candidates.len(),
        worst.0
    );
}

#[test]
fn before_is_the_softmax_and_greedy_is_one_hot() {
    let logits = [1.0f32, 3.0, 2.0, 3.0];
    let d = sampling_distribution(&logits, &cfg(0.0, 0, 1.0)).unwrap();
    let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
    for (b, &x) in d.before.iter().zip(&logits) {
        assert!((*b as f64 - (x as f64).exp() / z).abs() < 1e-7);
    }
    assert_eq!(d.candidates, [1], "greedy takes the first maximum");
    assert_eq!(d.after, [0.0, 1.0, 0.0, 0.0]);
    // temperature sharpens and flattens; top-p 0.5 of [.., 3, .., 3] keeps one of the ties
    let hot = sampling_distribution(&logits, &cfg(10.0, 0, 1.0)).unwrap();
    let cold = sampling_distribution(&logits, &cfg(0.2, 0, 1.0)).unwrap();
    assert!(hot.after[0] > d.before[0] && cold.after[0] < d.before[0]);
    assert_eq!(sampling_distribution(&logits, &cfg(1.0, 0, 0.3)).unwrap().candidates, [1]);
    assert!(sampling_distribution(&logits, &cfg(1.0, 0, 0.0)).is_err(), "top_p 0 is refused");
    assert!(sampling_distribution(&[], &cfg(1.0, 0, 1.0)).is_err(), "no logits");
}
