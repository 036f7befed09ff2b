//! The architecture switches' kernel paths against their CPU references at ragged shapes:
//! RMSNorm forward and backward, a LayerNorm without a bias, the embedding without learned
//! positions, the logit softcap with the cross-entropy backward through it, and ReLU². Outputs the
//! backward accumulates into start from random values (a `+=` that overwrote would fail); the
//! forward's outputs start as NaN (a row left unwritten would fail).

mod common;
use common::assert_close;

use std::sync::Arc;

use common::Rng;
use wgpt::cpu;
use wgpt::kernels::{
    CrossEntropyBwd, CrossEntropyFwd, EncoderBuckets, Kernels, LayerNormBwd, LayerNormFwd, NormKind, Program,
};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// (rows, C): one row, odd widths (the scalar kernels), multiples of 4 (the vec4 ones), many rows.
const NORM_SHAPES: [(usize, usize); 8] = [(1, 8), (7, 13), (193, 36), (7, 128), (1, 7), (193, 13), (65, 8), (65536, 5)];

/// Random inputs of a norm at (n, c): input, weight, output gradient, and the values the
/// backward accumulates into.
struct NormCase {
    inp: Vec<f32>,
    w: Vec<f32>,
    dout: Vec<f32>,
    dinp0: Vec<f32>,
    dw0: Vec<f32>,
}

impl NormCase {
    fn new(seed: u64, n: usize, c: usize) -> NormCase {
        let mut rng = Rng::new(seed);
        let (inp, w, dout) = (rng.vec(n * c, -3.0, 3.0), rng.vec(c, 0.5, 1.5), rng.vec(n * c, -1.0, 1.0));
        NormCase { inp, w, dout, dinp0: rng.vec(n * c, -1.0, 1.0), dw0: rng.vec(c, -1.0, 1.0) }
    }

    /// The kernels' forward and backward without a bias: [out, mean, rstd, dinp, dweight].
    async fn gpu(&self, k: &Kernels, n: usize, c: usize, kind: NormKind, eps: f32) -> Vec<Vec<f32>> {
        let g = &k.gpu;
        let out = g.upload("out", &[n, c], &vec![f32::NAN; n * c]);
        let (mean, rstd) = (g.upload("mean", &[n], &vec![f32::NAN; n]), g.upload("rstd", &[n], &vec![f32::NAN; n]));
        let (inp, weight) = (&g.upload("inp", &[n, c], &self.inp), &g.upload("w", &[c], &self.w));
        let dout = &g.upload("dout", &[n, c], &self.dout);
        let (dinp, dweight) = (g.upload("dinp", &[n, c], &self.dinp0), g.upload("dw", &[c], &self.dw0));
        let mut prog = Program::default();
        let (mean, rstd) = (&mean, &rstd);
        k.layernorm.forward(&mut prog, LayerNormFwd { out: &out, mean, rstd, inp, weight, bias: None, kind, eps });
        let bwd = LayerNormBwd { dinp: &dinp, dweight: &dweight, dbias: None, dout, inp, weight, mean, rstd, kind };
        k.layernorm.backward(&mut prog, bwd);
        k.gpu.run(|pass| prog.encode(pass));
        g.read_many(&[&out, mean, rstd, &dinp, &dweight]).await.unwrap()
    }
}

async fn rmsnorm(k: Arc<Kernels>) {
    for (i, &(n, c)) in NORM_SHAPES.iter().enumerate() {
        let case = NormCase::new(900 + i as u64, n, c);
        let eps = 1e-6;
        let got = case.gpu(&k, n, c, NormKind::Rms, eps).await;
        let (inp, w) = (&case.inp, &case.w);
        let (mut wo, mut wr) = (vec![0.0; n * c], vec![0.0; n]);
        cpu::rmsnorm_forward(cpu::RmsNormFwd { out: &mut wo, rstd: &mut wr, inp, weight: w }, n, c, eps);
        let (mut wi, mut ww) = (case.dinp0.clone(), case.dw0.clone());
        let io = cpu::RmsNormBwd { dinp: &mut wi, dweight: &mut ww, dout: &case.dout, inp, weight: w, rstd: &wr };
        cpu::rmsnorm_backward(io, n, c);
        let sum_tol = 1e-5 * (n as f32).sqrt();
        assert_close(&format!("rmsnorm out N{n} C{c}"), &got[0], &wo, 1e-5, 1e-4);
        assert_close(&format!("rmsnorm mean (zero) N{n} C{c}"), &got[1], &vec![0.0; n], 0.0, 0.0);
        assert_close(&format!("rmsnorm rstd N{n} C{c}"), &got[2], &wr, 1e-6, 1e-4);
        assert_close(&format!("rmsnorm dinp N{n} C{c}"), &got[3], &wi, 1e-5, 1e-4);
        assert_close(&format!("rmsnorm dweight N{n} C{c}"), &got[4], &ww, sum_tol, 1e-4);
    }
}
gpu_test!(rmsnorm_forward_backward, rmsnorm);

/// A LayerNorm without a bias is the CPU's LayerNorm with a zero bias, and its backward leaves
/// out dbias.
async fn layernorm_no_bias(k: Arc<Kernels>) {
    for (i, &(n, c)) in NORM_SHAPES.iter().enumerate() {
        let case = NormCase::new(950 + i as u64, n, c);
        let got = case.gpu(&k, n, c, NormKind::Layer, 1e-5).await;
        let (inp, w) = (&case.inp, &case.w);
        let zero = vec![0.0; c];
        let (mut wo, mut wm, mut wr) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        let io = cpu::LayerNormFwd { out: &mut wo, mean: &mut wm, rstd: &mut wr, inp, weight: w, bias: &zero };
        cpu::layernorm_forward(io, n, c);
        let (mut wi, mut ww, mut wb) = (case.dinp0.clone(), case.dw0.clone(), zero.clone());
        let (dinp, dweight, dbias, dout) = (&mut wi, &mut ww, &mut wb, &case.dout);
        let io = cpu::LayerNormBwd { dinp, dweight, dbias, dout, inp, weight: w, mean: &wm, rstd: &wr };
        cpu::layernorm_backward(io, n, c);
        let sum_tol = 1e-5 * (n as f32).sqrt();
        assert_close(&format!("layernorm (no bias) out N{n} C{c}"), &got[0], &wo, 1e-5, 1e-4);
        assert_close(&format!("layernorm (no bias) dinp N{n} C{c}"), &got[3], &wi, 1e-5, 1e-4);
        assert_close(&format!("layernorm (no bias) dweight N{n} C{c}"), &got[4], &ww, sum_tol, 1e-4);
    }
}
gpu_test!(layernorm_without_bias, layernorm_no_bias);

/// Without learned positions the embedding is wte's row alone, and the backward touches only
/// dwte.
async fn encoder_no_wpe(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(b, t, c, v)) in [(1, 1, 8, 5), (2, 7, 13, 11), (3, 19, 36, 53)].iter().enumerate() {
        let mut rng = Rng::new(980 + i as u64);
        let ids = rng.ids(b * t, v);
        let (wte, dout, dwte0) = (rng.vec(v * c, -1.0, 1.0), rng.vec(b * t * c, -1.0, 1.0), rng.vec(v * c, -1.0, 1.0));
        let out = g.upload("out", &[b, t, c], &vec![f32::NAN; b * t * c]);
        let (ids_t, wte_t) = (g.upload("ids", &[b, t], &ids), g.upload("wte", &[v, c], &wte));
        let (dwte, dout_t) = (g.upload("dwte", &[v, c], &dwte0), g.upload("dout", &[b, t, c], &dout));
        let buckets = EncoderBuckets::new(g, b * t);
        buckets.write(g, &ids);
        let mut prog = Program::default();
        k.encoder.forward(&mut prog, &out, &ids_t, &wte_t, None);
        k.encoder.backward(&mut prog, &dwte, None, &dout_t, &buckets);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&out, &dwte]).await.unwrap();
        let (zero_wpe, mut want) = (vec![0.0; t * c], vec![0.0; b * t * c]);
        cpu::encoder_forward(&mut want, &ids, &wte, &zero_wpe, b * t, t, c);
        let (mut wd, mut dwpe) = (dwte0, vec![0.0; t * c]);
        cpu::encoder_backward(&mut wd, &mut dwpe, &dout, &ids, b * t, t, c);
        assert_close(&format!("encoder (no wpe) B{b} T{t} C{c}"), &got[0], &want, 0.0, 0.0);
        assert_close(&format!("encoder (no wpe) dwte B{b} T{t} C{c}"), &got[1], &wd, 1e-6, 1e-5);
    }
}
gpu_test!(encoder_without_positions, encoder_no_wpe);

/// The logit softcap in place, and the cross-entropy backward through it: the CPU's
/// cross-entropy backward on the capped logits, then the softcap's backward.
async fn softcap(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &(rows, v, cap)) in [(1, 5, 15.0), (7, 13, 2.0), (19, 37, 0.5), (3, 301, 30.0)].iter().enumerate() {
        let mut rng = Rng::new(990 + i as u64);
        let (raw, targets) = (rng.vec(rows * v, -8.0, 8.0), rng.ids(rows, v));
        let logits = g.upload("logits", &[rows, v], &raw);
        let (lse, losses, loss) = (g.tensor("lse", &[rows]), g.tensor("losses", &[rows]), g.tensor("loss", &[1]));
        let (targets_t, dlogits) =
            (g.upload("targets", &[rows], &targets), g.upload("dlogits", &[rows, v], &vec![f32::NAN; rows * v]));
        let mut prog = Program::default();
        k.softcap.forward(&mut prog, &logits, cap);
        let counted = g.tensor("counted", &[1]);
        let (loss, counted, losses, lse, tg) = (&loss, &counted, &losses, &lse, &targets_t);
        let fwd = CrossEntropyFwd { loss, counted, losses, lse, logits: &logits, targets: tg };
        k.crossentropy.forward(&mut prog, fwd);
        let bwd = CrossEntropyBwd {
            dlogits: &dlogits,
            logits: &logits,
            lse,
            targets: tg,
            counted,
            scale: None,
            softcap: Some(cap),
        };
        k.crossentropy.backward(&mut prog, bwd, 1.0 / rows as f32);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&logits, &dlogits]).await.unwrap();
        let mut y = raw.clone();
        cpu::softcap_forward(&mut y, cap);
        let mut dy = vec![0.0; rows * v];
        cpu::crossentropy_backward(&mut dy, &y, &targets, 1.0 / rows as f32, v);
        let mut dx = vec![0.0; rows * v];
        cpu::softcap_backward(&mut dx, &y, &dy, cap);
        assert_close(&format!("softcap R{rows} V{v} cap {cap}"), &got[0], &y, 1e-5, 1e-5);
        assert_close(
            &format!("cross-entropy backward through the softcap R{rows} V{v} cap {cap}"),
            &got[1],
            &dx,
            1e-6,
            1e-4,
        );
    }
}
gpu_test!(softcap_and_its_backward, softcap);

/// ReLU² forward and backward on vec4s (n % 4 == 0) and scalars.
async fn relu2(k: Arc<Kernels>) {
    let g = &k.gpu;
    for (i, &n) in [1usize, 7, 13, 340, 1021].iter().enumerate() {
        let mut rng = Rng::new(1000 + i as u64);
        let (inp, dout, dinp0) = (rng.vec(n, -2.0, 2.0), rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let out = g.upload("out", &[n], &vec![f32::NAN; n]);
        let (inp_t, dout_t, dinp) =
            (g.upload("inp", &[n], &inp), g.upload("dout", &[n], &dout), g.upload("dinp", &[n], &dinp0));
        let mut prog = Program::default();
        k.relu2.forward(&mut prog, &out, &inp_t);
        k.relu2.backward(&mut prog, &dinp, &inp_t, &dout_t);
        k.gpu.run(|pass| prog.encode(pass));
        let got = g.read_many(&[&out, &dinp]).await.unwrap();
        let mut want = vec![0.0; n];
        cpu::relu2_forward(&mut want, &inp);
        let mut wd = dinp0;
        cpu::relu2_backward(&mut wd, &inp, &dout);
        assert_close(&format!("relu2 N{n}"), &got[0], &want, 0.0, 0.0);
        assert_close(&format!("relu2 dinp N{n}"), &got[1], &wd, 1e-6, 1e-6);
    }
}
gpu_test!(relu2_forward_backward, relu2);
