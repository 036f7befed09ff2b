//! Vocabularies past 65,535 (Qwen3's 151,936): the cross-entropy forward and backward, the logit
//! lens' row reduction, the GPU argmax and the embedding at V = 70001 and V = 151936 against the
//! CPU references (and logsumexp in f64), with targets, maxima and ids past 65535; few rows, so
//! lavapipe stays quick.

mod common;

use std::sync::Arc;

use common::Rng;
use wgpt::cpu;
use wgpt::kernels::{CrossEntropyBwd, CrossEntropyFwd, Decode, Kernels, Program, IGNORE, MAX_VOCAB};

/// The vocabularies past the one-pass row loop: ragged, and Qwen3's.
const VOCABS: [usize; 2] = [70001, 151936];

fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    match cpu::check_close(what, got, want, atol, rtol) {
        Ok(c) => println!("{what}: max abs err {:.2e}, max rel err {:.2e}", c.max_abs, c.max_rel),
        Err(msg) => panic!("{msg}"),
    }
}

/// log Σ exp of each row, in f64.
fn logsumexp(logits: &[f32], v: usize) -> Vec<f32> {
    let lse = |row: &[f32]| {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        (row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m) as f32
    };
    logits.chunks(v).map(lse).collect()
}

/// Targets for `rows` rows: the first past 65535 (V − 1), the second ignored when there are three
/// or more, the rest random.
fn targets(rng: &mut Rng, rows: usize, v: usize) -> Vec<u32> {
    let mut t = rng.ids(rows, v);
    t[0] = (v - 1) as u32;
    if rows >= 3 {
        t[1] = IGNORE;
    }
    t
}

async fn crossentropy(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(rows, v)) in [(3, VOCABS[0]), (1, VOCABS[1]), (5, VOCABS[1])].iter().enumerate() {
        assert!(v > MAX_VOCAB);
        let mut rng = Rng::new(2500 + i as u64);
        let logits = rng.vec(rows * v, -10.0, 10.0);
        let targets = targets(&mut rng, rows, v);
        let (loss, losses, lse) = (g.tensor("loss", &[1]), g.tensor("losses", &[rows]), g.tensor("lse", &[rows]));
        let counted = g.tensor("counted", &[1]);
        let (logits_t, targets_t) = (g.upload("logits", &[rows, v], &logits), g.upload("targets", &[rows], &targets));
        let mut prog = Program::default();
        let io = CrossEntropyFwd {
            loss: &loss,
            counted: &counted,
            losses: &losses,
            lse: &lse,
            logits: &logits_t,
            targets: &targets_t,
        };
        k.crossentropy.forward(&mut prog, io);
        let dloss = 1.0 / rows as f32;
        let dlogits = g.upload("dlogits", &[rows, v], &vec![f32::NAN; rows * v]);
        let io = CrossEntropyBwd {
            dlogits: &dlogits,
            logits: &logits_t,
            lse: &lse,
            targets: &targets_t,
            counted: &counted,
            scale: None,
            softcap: None,
        };
        k.crossentropy.backward(&mut prog, io, dloss);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&losses, &loss, &lse, &dlogits]).await.unwrap();
        let want_lse = logsumexp(&logits, v);
        let want: Vec<f32> = (0..rows)
            .map(|r| if targets[r] == IGNORE { 0.0 } else { want_lse[r] - logits[r * v + targets[r] as usize] })
            .collect();
        let counted_rows = targets.iter().filter(|&&t| t != IGNORE).count();
        let mean = want.iter().map(|&x| x as f64).sum::<f64>() / counted_rows as f64;
        let mut cpu_losses = vec![0.0; rows];
        let cpu_mean = cpu::crossentropy_forward(&mut cpu_losses, &logits, &targets, v);
        assert_close(&format!("cpu losses N{rows} V{v} vs f64"), &cpu_losses, &want, 1e-4, 1e-5);
        assert_close(&format!("crossentropy lse N{rows} V{v}"), &got[2], &want_lse, 1e-5, 1e-5);
        assert_close(&format!("crossentropy losses N{rows} V{v}"), &got[0], &want, 1e-5, 1e-5);
        assert_close(&format!("crossentropy mean N{rows} V{v}"), &got[1], &[mean as f32], 1e-5, 1e-5);
        assert_close(&format!("cpu mean N{rows} V{v}"), &[cpu_mean], &[mean as f32], 1e-4, 1e-5);
        // the backward from the GPU's own lse and count, against the CPU's from its logits (which
        // scales dloss by rows / counted and zeroes the ignored row, as the kernel)
        let mut want_d = vec![0.0; rows * v];
        cpu::crossentropy_backward(&mut want_d, &logits, &targets, dloss, v);
        assert_close(&format!("crossentropy dlogits N{rows} V{v}"), &got[3], &want_d, 1e-6 * dloss, 1e-4);
    }
}
gpu_test!(crossentropy_past_65535, crossentropy);

async fn row_top1(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(rows, v)) in [(3, VOCABS[0]), (4, VOCABS[1])].iter().enumerate() {
        let mut rng = Rng::new(2600 + i as u64);
        let mut logits = rng.vec(rows * v, -4.0, 4.0);
        // row 0: its maximum past 65535; row 1: two equal maxima, the first one wins (both on
        // different invocations' columns); row 2: the maximum at column 0
        logits[v - 2] = 9.0;
        logits[v + 70000] = 9.5;
        logits[v + 65537] = 9.5;
        logits[2 * v] = 8.0;
        let out0 = 2; // the rows land at out0.. as the lens' layers do
        let (top_id, top_p) = (g.tensor("top_id", &[rows + out0]), g.tensor("top_p", &[rows + out0]));
        let mut prog = Program::default();
        k.row_top1.forward(&mut prog, &top_id, &top_p, &g.upload("logits", &[rows, v], &logits), out0);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&top_id, &top_p]).await.unwrap();
        let want = cpu::row_top1(&logits, v);
        let ids: Vec<u32> = got[0][out0..].iter().map(|x| x.to_bits()).collect();
        assert_eq!(ids, want.iter().map(|w| w.0).collect::<Vec<_>>(), "row_top1 ids N{rows} V{v}");
        assert_eq!(&ids[..3], &[(v - 2) as u32, 65537, 0], "row_top1: the planted maxima at V{v}");
        let want_p: Vec<f32> = want.iter().map(|w| w.1).collect();
        assert_close(&format!("row_top1 p N{rows} V{v}"), &got[1][out0..], &want_p, 1e-7, 1e-5);
    }
}
gpu_test!(row_top1_past_65535, row_top1);

async fn argmax(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &v) in VOCABS.iter().enumerate() {
        let mut rng = Rng::new(2700 + i as u64);
        let mut logits = rng.vec(v, -4.0, 4.0);
        logits[v - 3] = 7.0;
        logits[65536] = 7.0; // the first of two equal maxima wins
        let (out, part) = (g.tensor("argmax", &[1]), Decode::argmax_scratch(g, v));
        let mut prog = Program::default();
        k.decode.argmax(&mut prog, &out, &part, &g.upload("logits", &[v], &logits));
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read(&out).await.unwrap()[0].to_bits();
        assert_eq!(got, cpu::row_top1(&logits, v)[0].0, "argmax V{v}");
        assert_eq!(got, 65536, "argmax V{v}: the first maximum");
        println!("argmax V{v}: {got}");
    }
}
gpu_test!(argmax_past_65535, argmax);

async fn encoder(k: Arc<Kernels>) {
    let g = &k.gpu;
    let (b, t, c, v) = (2, 5, 7, VOCABS[1]);
    let mut rng = Rng::new(2800);
    let mut ids = rng.ids(b * t, v);
    ids[0] = (v - 1) as u32;
    ids[1] = 65536;
    let (wte, wpe) = (rng.vec(v * c, -1.0, 1.0), rng.vec(t * c, -1.0, 1.0));
    let out = g.tensor("out", &[b, t, c]);
    let mut prog = Program::default();
    let (wte_t, wpe_t) = (g.upload("wte", &[v, c], &wte), g.upload("wpe", &[t, c], &wpe));
    k.encoder.forward(&mut prog, &out, &g.upload("ids", &[b, t], &ids), &wte_t, Some(&wpe_t));
    k.gpu.run(|pass| prog.encode(pass));
    let got = g.read(&out).await.unwrap();
    let mut want = vec![0.0; b * t * c];
    cpu::encoder_forward(&mut want, &ids, &wte, &wpe, b * t, t, c);
    assert_close(&format!("encoder ids past 65535 V{v}"), &got, &want, 0.0, 0.0);
}
gpu_test!(encoder_past_65535, encoder);
