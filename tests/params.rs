//! The parameter table against transformers (tests/fixtures/make_param_table.py): for the HF
//! tiny GPT-2 and GPT-2 124M's config, the names of `named_parameters(remove_duplicate=False)` in
//! order, their shapes, the tie of lm_head.weight to wte, and `num_parameters()`.

mod common;

use wgpt::model::Gpt2Config;
use wgpt::params::{param_table, total};

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/param_table.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check(key: &str, cfg: &Gpt2Config) {
    let want = &fixture()[key];
    let want_cfg: Gpt2Config = serde_json::from_value(want["config"].clone()).unwrap();
    assert_eq!(&want_cfg, cfg, "{key}: the fixture was made for another config");
    let rows = param_table(cfg);
    let want_rows = want["params"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let want_names: Vec<&str> = want_rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, want_names, "{key}: names differ from transformers'");
    for (r, w) in rows.iter().zip(want_rows) {
        let shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        assert_eq!(r.shape, shape, "{key}: {} has shape {:?}, transformers {shape:?}", r.name, r.shape);
        assert_eq!(r.tied_to.as_deref(), w["tied_to"].as_str(), "{key}: {} tied_to", r.name);
        let want_count = if r.tied_to.is_some() { 0 } else { shape.iter().product() };
        assert_eq!(r.count, want_count, "{key}: {} count", r.name);
    }
    let n = want["num_parameters"].as_u64().unwrap() as usize;
    assert_eq!(total(&rows), n, "{key}: total differs from num_parameters()");
    println!("{key}: {} rows equal transformers' (names, shapes, tie); total {n} = num_parameters()", rows.len());
}

#[test]
fn gpt2_124m_equals_transformers() {
    check("gpt2", &Gpt2Config::preset("gpt2").unwrap());
}

#[test]
fn hf_tiny_gpt2_equals_transformers() {
    // the fixture's config, checked against the shared directory's config.json where it is there
    let cfg: Gpt2Config = serde_json::from_value(fixture()["hf-tiny-gpt2"]["config"].clone()).unwrap();
    if let Some(d) = common::shared_data() {
        let text = std::fs::read_to_string(d.join("hf-tiny-gpt2/config.json")).unwrap();
        assert_eq!(wgpt::hf::parse_config(&text).unwrap(), cfg);
    }
    check("hf-tiny-gpt2", &cfg);
}

#[test]
fn json_row_has_the_issue_fields_in_order() {
    let rows = param_table(&Gpt2Config::preset("gpt2").unwrap());
    let head = serde_json::to_string(&rows[0]).unwrap();
    assert!(
        head.starts_with(r#"{"name":"transformer.wte.weight","shape":[50257,768],"count":38597376,"about":"#),
        "{head}"
    );
    assert!(head.ends_with(r#","tied_to":null}"#), "{head}");
    let lm = serde_json::to_value(rows.last().unwrap()).unwrap();
    assert_eq!(lm["tied_to"], "transformer.wte.weight");
    assert_eq!(lm["count"], 0);
}
