//! The architecture switches as config: GPT-2's JSON reads and writes as before, the presets set
//! what the issue says at any size, explicit keys win over a preset, every switch name round-trips
//! through serde, and every bad key gets its own message.

use wgpt::model::{Arch, ArchChoice, ArchPreset, Gpt2Config, HfClass, Mlp, Named, Norm, Positions};
use wgpt::run::RunSettings;

fn gpt2(n_layer: usize, n_head: usize, n_embd: usize) -> Gpt2Config {
    Gpt2Config { n_layer, n_head, n_embd, block_size: 64, vocab_size: 65, arch: Arch::GPT2 }
}

#[test]
fn a_gpt2_config_reads_and_writes_as_before() {
    let old = r#"{"n_layer":4,"n_head":4,"n_embd":128,"block_size":64,"vocab_size":65}"#;
    let cfg: Gpt2Config = serde_json::from_str(old).unwrap();
    assert_eq!(cfg, Gpt2Config::preset("baby").unwrap());
    assert_eq!(serde_json::to_string(&cfg).unwrap(), old, "GPT-2's switches are left out of the JSON");
    let mut llama = cfg;
    ArchPreset::Llama.apply(&mut llama.arch, 4);
    let json = serde_json::to_string(&llama).unwrap();
    println!("{json}");
    for key in
        [r#""positions":"rope""#, r#""norm":"rmsnorm""#, r#""mlp":"swiglu""#, r#""n_kv_head":2"#, r#""bias":false"#]
    {
        assert!(json.contains(key), "{key} in {json}");
    }
    assert_eq!(serde_json::from_str::<Gpt2Config>(&json).unwrap(), llama, "a round trip");
}

#[test]
fn switch_names_match_their_serde_names() {
    fn check<T: Named + PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned>() {
        for (v, name) in T::ALL {
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<T>(&format!("\"{name}\"")).unwrap(), *v);
            assert_eq!(T::parse(name).unwrap(), *v);
            assert_eq!(v.name(), *name);
        }
        let e = T::parse("nope").unwrap_err().to_string();
        assert!(e.contains(T::KEY) && e.contains(T::ALL[0].1), "{e}");
    }
    check::<Positions>();
    check::<Norm>();
    check::<Mlp>();
    check::<ArchPreset>();
}

#[test]
fn presets_set_their_families_switches_at_any_size() {
    let preset = |p: ArchPreset, n_head| {
        let mut a = Arch::default();
        p.apply(&mut a, n_head);
        a
    };
    let llama = preset(ArchPreset::Llama, 6);
    assert_eq!((llama.positions, llama.norm, llama.mlp), (Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu));
    assert_eq!((llama.n_kv_head, llama.bias, llama.tied, llama.qk_norm), (Some(3), false, true, false));
    assert_eq!(preset(ArchPreset::Llama, 3).n_kv_head, Some(3), "n_head when odd");
    let qwen3 = preset(ArchPreset::Qwen3, 4);
    assert!(qwen3.qk_norm && qwen3.norm_eps == 1e-6 && qwen3.n_kv_head == Some(2));
    let s = preset(ArchPreset::Speedrun, 4);
    assert_eq!((s.positions, s.norm, s.mlp, s.qk_norm), (Positions::Rope, Norm::RmsNorm, Mlp::Relu2, true));
    assert_eq!((s.n_kv_head, s.bias, s.tied, s.logit_softcap), (None, false, false, Some(15.0)));
    assert_eq!(preset(ArchPreset::Gpt2, 4), Arch::GPT2);
    for p in [ArchPreset::Gpt2, ArchPreset::Llama, ArchPreset::Qwen3, ArchPreset::Speedrun] {
        assert!(!p.about().is_empty() && !p.about().contains('\n'));
    }
}

#[test]
fn the_mlp_width_follows_the_mlp() {
    let mut baby = Gpt2Config::preset("baby").unwrap();
    assert_eq!((baby.intermediate_size(), baby.mlp_width()), (512, 512));
    baby.arch.mlp = Mlp::SwiGlu;
    // 8 x 128 / 3 = 341.3: the multiple of 4 nearest it
    assert_eq!((baby.intermediate_size(), baby.mlp_width()), (340, 680));
    let mut sc = Gpt2Config::preset("shakespeare-char").unwrap();
    sc.arch.mlp = Mlp::SwiGlu;
    assert_eq!(sc.intermediate_size(), 1024, "8 x 384 / 3 = 1024");
    sc.arch.intermediate_size = Some(100);
    assert_eq!((sc.intermediate_size(), sc.mlp_width()), (100, 200));
}

#[test]
fn each_combination_names_its_transformers_class() {
    let mut c = gpt2(2, 4, 64);
    assert_eq!(HfClass::of(&c), HfClass::Gpt2);
    c.arch.tied = false;
    assert_eq!(HfClass::of(&c).class_name(), "GPT2LMHeadModel", "GPT-2 tied or untied");
    ArchPreset::Llama.apply(&mut c.arch, 4);
    assert_eq!(HfClass::of(&c), HfClass::Llama);
    c.arch.bias = true;
    assert_eq!(HfClass::of(&c), HfClass::Llama, "Llama with attention and MLP biases");
    ArchPreset::Qwen3.apply(&mut c.arch, 4);
    assert_eq!(HfClass::of(&c).model_type(), "qwen3");
    c.arch.bias = true;
    assert_eq!(HfClass::of(&c), HfClass::Wgpt, "Qwen3's config has no switch for biases with qk_norm");
    ArchPreset::Speedrun.apply(&mut c.arch, 4);
    assert_eq!(HfClass::of(&c), HfClass::Wgpt);
    let mut g = gpt2(2, 4, 64);
    g.arch.norm = Norm::RmsNorm;
    assert_eq!(HfClass::of(&g), HfClass::Wgpt);
}

/// (what is set, the words its message must hold)
#[test]
fn every_bad_key_gets_its_own_message() {
    let base = gpt2(1, 4, 32);
    let cases: Vec<(Arch, &[&str])> = vec![
        (Arch { n_kv_head: Some(3), ..Arch::GPT2 }, &["n_kv_head (3) must divide n_head (4)"]),
        (Arch { n_kv_head: Some(0), ..Arch::GPT2 }, &["n_kv_head (0)"]),
        (Arch { head_dim: Some(6), ..Arch::GPT2 }, &["head_dim = 6 must be a positive multiple of 4"]),
        (Arch { norm_eps: 0.0, ..Arch::GPT2 }, &["norm_eps = 0"]),
        (Arch { rope_theta: f32::NAN, ..Arch::GPT2 }, &["rope_theta = NaN"]),
        (Arch { logit_softcap: Some(-1.0), ..Arch::GPT2 }, &["logit_softcap = -1"]),
        (Arch { intermediate_size: Some(0), ..Arch::GPT2 }, &["intermediate_size"]),
    ];
    for (arch, needles) in cases {
        let e = Gpt2Config { arch, ..base }.validate().unwrap_err().to_string();
        println!("{e}");
        for n in needles {
            assert!(e.contains(n), "{arch:?}: {n:?} not in {e}");
        }
    }
    assert!(base.validate().is_ok());
    // grouped KV heads and a head size apart from n_embd / n_head run
    let gqa = Gpt2Config { arch: Arch { n_kv_head: Some(2), head_dim: Some(12), ..Arch::GPT2 }, ..base };
    assert!(gqa.validate().is_ok(), "{:?}", gqa.validate());
    // a head_dim set makes n_embd / n_head's divisibility moot, and is checked instead
    let odd = Gpt2Config { n_embd: 30, arch: Arch { head_dim: Some(8), ..Arch::GPT2 }, ..base };
    assert!(odd.validate().is_ok(), "{:?}", odd.validate());
    let odd = Gpt2Config { n_embd: 30, arch: Arch { head_dim: Some(6), ..Arch::GPT2 }, ..base };
    let e = odd.validate().unwrap_err().to_string();
    assert!(!e.contains("multiple of n_head") && e.contains("head_dim = 6"), "{e}");
}

#[test]
fn run_settings_take_the_switches_under_their_keys() {
    let page = r#"{"tokenizer":"char","n_layer":2,"n_head":4,"n_embd":64,"block_size":32,"batch_size":8,
        "max_iters":60,"lr":0.002,"eval_interval":30,"log_interval":1,"seed":1337}"#;
    let s: RunSettings = serde_json::from_str(page).unwrap();
    assert_eq!(s.architecture, ArchChoice::default(), "settings from before the switches are GPT-2's");
    assert_eq!(s.model(65).unwrap().arch, Arch::GPT2);
    let with = page.replace('}', r#","arch":"llama","bias":true,"n_kv_head":4,"norm_eps":1e-6}"#);
    let s: RunSettings = serde_json::from_str(&with).unwrap();
    let a = s.architecture.arch(4).unwrap();
    assert_eq!(
        (a.positions, a.mlp, a.bias, a.n_kv_head, a.norm_eps),
        (Positions::Rope, Mlp::SwiGlu, true, Some(4), 1e-6)
    );
    let back: RunSettings = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    let bad: RunSettings = serde_json::from_str(&page.replace('}', r#","arch":"mamba"}"#)).unwrap();
    assert!(bad.model(65).unwrap_err().to_string().contains("unknown arch \"mamba\""));
    let e = serde_json::from_str::<RunSettings>(&page.replace('}', r#","norm":"batchnorm"}"#)).unwrap_err();
    assert!(e.to_string().contains("unknown variant `batchnorm`, expected `layernorm` or `rmsnorm`"), "{e}");
}
