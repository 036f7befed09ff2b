//! Sampling: the filtered distribution (temperature, top-k, top-p) against Hugging Face's
//! warpers on random logits (tests/fixtures/sampling.safetensors, made by make_sampling.py), and
//! `generate::sample` against that distribution: sample only ever picks a candidate, picks
//! exactly the token the inverse CDF of the after-distribution gives for the same random number,
//! and its frequencies over many draws match that distribution.

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

#[derive(serde::Deserialize)]
struct Setting {
    temperature: f32,
    top_k: usize,
    top_p: f32,
}

/// `sampling_distribution`'s after-distribution equals the one transformers' Temperature-,
/// TopK- and TopPLogitsWarper give (applied in `generate`'s order, then a softmax) for 36
/// settings on 4 rows of 50 random logits: the same tokens kept, each probability within 1e-6 +
/// 1e-5·p (HF's softmax runs in f32, ours sums in f64).
#[test]
fn filters_match_hugging_face_warpers() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sampling.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let settings: Vec<Setting> = serde_json::from_str(&meta.metadata().as_ref().unwrap()["settings"]).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| wgpt::hf::to_f32(name, &st.tensor(name).unwrap()).unwrap();
    let (logits, probs) = (f32s("logits"), f32s("probs"));
    let v = st.tensor("logits").unwrap().shape()[1];
    let rows = logits.len() / v;
    assert_eq!(probs.len(), settings.len() * rows * v);
    let (atol, rtol) = (1e-6, 1e-5);
    let mut worst = (0.0f32, String::new());
    for (si, s) in settings.iter().enumerate() {
        let c = cfg(s.temperature, s.top_k, s.top_p);
        for (r, row) in logits.chunks(v).enumerate() {
            let want = &probs[(si * rows + r) * v..][..v];
            let got = sampling_distribution(row, &c).unwrap().after;
            for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                let at = format!("T {} top-k {} top-p {}, row {r}, token {i}", s.temperature, s.top_k, s.top_p);
                assert_eq!(g > 0.0, w > 0.0, "{at}: ours {g}, HF's {w}: not the same tokens kept");
                let excess = (g - w).abs() - (atol + rtol * w.abs());
                assert!(excess <= 0.0, "{at}: ours {g}, HF's {w}");
                if (g - w).abs() > worst.0 {
                    worst = ((g - w).abs(), at);
                }
            }
        }
    }
    println!(
        "{} settings x {rows} rows of {v}: the same tokens kept; worst |ours − HF's| {:.2e} at {}",
        settings.len(),
        worst.0,
        worst.1
    );
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
