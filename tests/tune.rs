//! Kernel selection (src/kernels/selection.rs, src/tune.rs): --kernels / WGPT_KERNELS values,
//! the forced families, and the per-adapter cache: written on the first start, read back on the
//! second (no tuning), and refused when the adapter differs.
#![cfg(not(target_arch = "wasm32"))] // files and the native cache

mod common;

use wgpt::kernels::matmul::Product;
use wgpt::kernels::{AttentionImpl, AttnShape, Family, Kernels, MatmulVariant, Source};
use wgpt::model::Gpt2Config;
use wgpt::tune::{self, CacheFile};

const CFG: Gpt2Config =
    Gpt2Config { n_layer: 2, n_head: 2, n_embd: 64, block_size: 32, vocab_size: 65, arch: wgpt::model::Arch::GPT2 };

#[test]
fn family_names_and_errors() {
    for f in Family::ALL {
        assert_eq!(Family::parse(f.name()).unwrap(), f);
    }
    let e = Family::parse("fast").unwrap_err().to_string();
    for word in ["\"fast\"", "--kernels", "WGPT_KERNELS", "auto, portable, subgroup, tiled"] {
        assert!(e.contains(word), "the error {e:?} should name {word}");
    }
}

#[test]
fn forced_families_choose_their_kernels() {
    let Some(k) = common::shared_kernels() else { return };
    let g = &k.gpu;
    let p = Product::linear(256, 64, 192)[0];
    let s = AttnShape { b: 8, nh: 2, kv: 2, t: 32, hs: 32 };
    for family in [Family::Portable, Family::Tiled, Family::Subgroup] {
        if family == Family::Subgroup && !g.subgroups_of_8() {
            let e = Kernels::with_family(g, family).err().expect("subgroup needs 8-wide subgroups").to_string();
            assert!(e.contains("--kernels") && e.contains("WGPT_KERNELS"), "{e}");
            continue;
        }
        let fk = Kernels::with_family(g, family).unwrap();
        let problems = tune::run_problems(&fk, CFG.run_shape(8, 32));
        let (sel, report) = pollster::block_on(tune::tune(&fk, fk.selection(), &problems, false)).unwrap();
        println!("{}: {} {} {}", family.name(), report.source, sel.matmul(&p).name(), sel.attention(None, s).name());
        assert_eq!(report.source, Source::Forced);
        assert_eq!(sel.matmul(&p).family(), family, "{}: the matmul family", family.name());
        let attention = if family == Family::Tiled { AttentionImpl::FlashTiled } else { AttentionImpl::Classic };
        assert_eq!(sel.attention(None, s), attention);
        // a run fixed to the other numerics keeps them
        let other = if family == Family::Tiled { AttentionImpl::Classic } else { AttentionImpl::FlashTiled };
        assert_eq!(sel.attention(Some(other.kind()), s).kind(), other.kind());
    }
}

#[test]
fn cache_written_read_back_and_refused_for_another_adapter() {
    let Some(k) = common::shared_kernels() else { return };
    let g = &k.gpu;
    let dir = std::env::temp_dir().join(format!("wgpt-tune-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("cache/tune.json");

    // first start: choices made (timed on a GPU, the built-in table on a software adapter) and
    // written for this adapter
    let first = Kernels::with_family(g, Family::Auto).unwrap();
    let report = tune::prepare(&first, CFG.run_shape(8, 32), Some(&path)).unwrap();
    println!("first start: {}, {} timed in {:.0} ms", report.describe(), report.timed, report.ms);
    assert!(report.source != Source::Cache, "nothing was cached yet");
    let file: CacheFile = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file.entries.len(), 1);
    assert_eq!(file.entries[0].adapter, tune::AdapterKey::of(g));
    let products = tune::run_problems(&first, CFG.run_shape(8, 32)).products;
    assert!(products.iter().all(|p| file.entries[0].choices.matmul.contains_key(p)), "every product cached");

    // the cache says portable-r8 for the first product: a second start reads it and times nothing
    let p = products[0];
    let mut edited = file.clone();
    edited.entries[0].choices.matmul.insert(p, MatmulVariant::Portable { rows: 8 });
    std::fs::write(&path, serde_json::to_string(&edited).unwrap()).unwrap();
    let second = Kernels::with_family(g, Family::Auto).unwrap();
    let report = tune::prepare(&second, CFG.run_shape(8, 32), Some(&path)).unwrap();
    assert_eq!((report.source, report.timed), (Source::Cache, 0));
    assert_eq!(second.matmul.choice(&p), MatmulVariant::Portable { rows: 8 }, "the cached choice is used");

    // an entry for another driver is refused: nothing is taken from it, and this adapter's entry
    // is added beside it
    edited.entries[0].adapter.driver_info.push_str(" (another build)");
    std::fs::write(&path, serde_json::to_string(&edited).unwrap()).unwrap();
    let third = Kernels::with_family(g, Family::Auto).unwrap();
    assert!(CacheFile::parse(&std::fs::read_to_string(&path).unwrap()).unwrap().choices(g).is_none());
    assert_ne!(third.matmul.choice(&p), MatmulVariant::Portable { rows: 8 }, "another adapter's choice");
    let report = tune::prepare(&third, CFG.run_shape(8, 32), Some(&path)).unwrap();
    println!("third start: {}", report.describe());
    assert!(report.source != Source::Cache, "{}", report.describe());
    let file: CacheFile = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file.entries.len(), 2, "both adapters' entries kept: {file:?}");

    // a malformed cache is an error to parse and a retune to prepare
    std::fs::write(&path, "{not json").unwrap();
    assert!(CacheFile::parse("{not json").is_err());
    assert!(tune::prepare(&third, CFG.run_shape(8, 32), Some(&path)).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
