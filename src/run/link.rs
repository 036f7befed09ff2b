//! Shareable links: a run's settings (every key [`RunSettings`] serialises), a version and the
//! corpus choice, as JSON in a URL fragment, `#run=` + base64url without padding. Opening one
//! never trusts it: the size is capped before decoding, the JSON must be an object, and each
//! field is checked against one table of bounds ([`FIELDS`]); a bad field is refused with a
//! message and left at the page's value, an unknown one is named and ignored. Static bounds only:
//! what fits the device is the page's plan's to say.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::run::RunSettings;
use crate::{Error, Result};

mod base64;
mod check;

pub use base64::{base64url, unbase64url};
use check::{check, kind, link_corpus, shorten, shown};

/// The version of the links this code writes; it opens links up to this one. Version 2: the
/// `addition` task pads its numbers and `multiplication` writes its rows by default; version 3:
/// `two-sum` writes each number's complement by default. A link of an older version that does
/// not name a task parameter whose default changed since meant the old default, and opens with
/// it, so it makes the data it made (`data::tasks::CHANGED_DEFAULTS`).
pub const LINK_VERSION: u64 = 3;

/// The longest link fragment opened, in characters (a link of every setting is under 1,500).
pub const MAX_LINK_CHARS: usize = 8192;

/// The built-in corpora a link may name (the page downloads them).
pub const BUILTIN_CORPORA: &[&str] = &["shakespeare", "tinystories"];

/// What a link's fragment starts with.
const PREFIX: &str = "#run=";

/// The largest integer a JavaScript number holds exactly (the page's seed passes through one).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The corpus of a linked run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkCorpus {
    /// A built-in corpus the page downloads, by name ([`BUILTIN_CORPORA`]).
    Builtin(String),
    /// A built-in task, with its parameters (`k=v,...`; empty: its defaults).
    Task {
        name: String,
        #[serde(default)]
        params: String,
    },
    /// The user's own text: a link does not carry it (the page says so).
    Own,
}

/// What a value of a link's field may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// A whole number in min..=max.
    Int(u64, u64),
    /// A number in min..=max (JSON has no NaN or infinity).
    Float(f64, f64),
    /// One of these names.
    Choice(&'static [&'static str]),
    /// "char", or "bpe:N" with N in min..=max.
    Tokenizer(u64, u64),
    /// true or false.
    Bool,
}

/// One key of [`RunSettings`] in a link: its bound, and whether it may be null (an optional
/// setting left to the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub key: &'static str,
    pub bound: Bound,
    pub optional: bool,
}

const fn set(key: &'static str, bound: Bound) -> Field {
    Field { key, bound, optional: false }
}

const fn opt(key: &'static str, bound: Bound) -> Field {
    Field { key, bound, optional: true }
}

/// Every key a link carries, with its bounds: a new [`RunSettings`] key needs a row here (a test
/// fails until it has one).
pub const FIELDS: &[Field] = &[
    set("tokenizer", Bound::Tokenizer(258, 65535)),
    set("n_layer", Bound::Int(1, 128)),
    set("n_head", Bound::Int(1, 128)),
    set("n_embd", Bound::Int(1, 16384)),
    set("block_size", Bound::Int(1, 16384)),
    set("batch_size", Bound::Int(1, 4096)),
    set("grad_accum", Bound::Int(1, 1024)),
    set("max_iters", Bound::Int(1, 10_000_000)),
    set("lr", Bound::Float(0.0, 10.0)),
    set("eval_interval", Bound::Int(1, 10_000_000)),
    set("log_interval", Bound::Int(1, 10_000_000)),
    set("seed", Bound::Int(0, MAX_SAFE_INTEGER)),
    opt("min_lr", Bound::Float(0.0, 10.0)),
    opt("warmup_iters", Bound::Int(0, 10_000_000)),
    opt("eval_iters", Bound::Int(1, 10_000)),
    opt("weight_decay", Bound::Float(0.0, 10.0)),
    opt("beta1", Bound::Float(0.0, 0.9999)),
    opt("beta2", Bound::Float(0.0, 0.99999)),
    opt("grad_clip", Bound::Float(0.0, 1e6)),
    opt("dropout", Bound::Float(0.0, 0.95)),
    set("precision", Bound::Choice(&["f32", "f16", "auto"])),
    opt("attention", Bound::Choice(&["classic", "flash"])),
    // the architecture (issue 25)
    opt("arch", Bound::Choice(&["gpt2", "llama", "qwen3", "speedrun"])),
    opt("positions", Bound::Choice(&["learned", "rope", "none"])),
    opt("rope_theta", Bound::Float(1.0, 1e9)),
    opt("norm", Bound::Choice(&["layernorm", "rmsnorm"])),
    opt("norm_eps", Bound::Float(1e-12, 1e-2)),
    opt("mlp", Bound::Choice(&["gelu", "relu2", "swiglu"])),
    opt("intermediate_size", Bound::Int(1, 65536)),
    opt("n_kv_head", Bound::Int(1, 128)),
    opt("head_dim", Bound::Int(4, 1024)),
    opt("qk_norm", Bound::Bool),
    opt("bias", Bound::Bool),
    opt("tied", Bound::Bool),
    opt("logit_softcap", Bound::Float(0.0, 1e4)),
    // the optimizer and schedule (issue 26)
    opt("optimizer", Bound::Choice(&["adamw", "sgd", "muon"])),
    opt("muon_lr", Bound::Float(0.0, 10.0)),
    opt("momentum", Bound::Float(0.0, 0.9999)),
    opt("nesterov", Bound::Bool),
    opt("lr_schedule", Bound::Choice(&["cosine", "wsd", "constant"])),
    // tasks (issue 27)
    set("answer_loss", Bound::Bool),
];

/// A run as a link carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub settings: RunSettings,
    /// None: no corpus chosen yet.
    pub corpus: Option<LinkCorpus>,
}

/// A field of a link that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub field: String,
    pub why: String,
}

/// What opening a link did: the page's settings with the link's good fields over them, the
/// corpus (None where the link names none or it was refused), the keys set, the unknown keys
/// ignored, and the fields refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub settings: RunSettings,
    pub corpus: Option<LinkCorpus>,
    pub set: Vec<String>,
    pub ignored: Vec<String>,
    pub refused: Vec<Refusal>,
}

impl Link {
    /// The fragment: `#run=` + base64url (no padding) of the settings' JSON with `v` and the
    /// corpus.
    pub fn encode(&self) -> String {
        let mut map = self.settings.to_map();
        map.insert("v".into(), LINK_VERSION.into());
        if let Some(c) = &self.corpus {
            map.insert("corpus".into(), serde_json::to_value(c).expect("a corpus choice serialises"));
        }
        format!("{PREFIX}{}", base64url(Value::Object(map).to_string().as_bytes()))
    }

    /// The link of the page's settings, checked as opening it will check them: a setting the
    /// link could not carry (outside [`FIELDS`]' bounds) is an error naming it.
    pub fn share(settings: RunSettings, corpus: Option<LinkCorpus>) -> Result<String> {
        let map = settings.to_map();
        for field in FIELDS {
            if let Err(why) = check(field, map.get(field.key).unwrap_or(&Value::Null)) {
                return Err(Error::Input(format!("a link cannot carry this {}: it {why}", field.key)));
            }
        }
        Ok(Link { settings, corpus }.encode())
    }

    /// Opens `fragment` over the page's `settings`: whole-link problems (too long, not base64url,
    /// not a JSON object, no or a newer version) are an error; otherwise each field is taken or
    /// refused on its own.
    pub fn decode(fragment: &str, settings: &RunSettings) -> Result<Opened> {
        let bad = |m: String| Err(Error::Input(m));
        if fragment.len() > MAX_LINK_CHARS {
            return bad(format!(
                "the link is {} characters long, more than a link of wgpt's ({MAX_LINK_CHARS})",
                fragment.len()
            ));
        }
        let Some(body) = fragment.strip_prefix(PREFIX).or_else(|| fragment.strip_prefix(&PREFIX[1..])) else {
            return bad(format!("this is not a wgpt link: its fragment should start with {PREFIX}"));
        };
        let bytes = unbase64url(body).map_err(|e| Error::Input(format!("the link is damaged: {e}")))?;
        let json: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Input(format!("the link is damaged: its settings are not JSON ({e})")))?;
        let Value::Object(fields) = json else {
            return bad(format!("the link holds {}, not settings", kind(&json)));
        };
        let version = match fields.get("v").map(|v| (v.as_u64(), v)) {
            None => return bad("the link has no version (v): it is not a wgpt link".into()),
            Some((Some(v), _)) if (1..=LINK_VERSION).contains(&v) => v,
            Some((Some(v), _)) if v > LINK_VERSION => {
                return bad(format!(
                    "the link is of version {v}, and this page opens links up to version {LINK_VERSION}: open it \
                     in a newer wgpt"
                ))
            }
            Some((_, v)) => return bad(format!("the link's version (v) is {}, not a version", shown(v))),
        };
        Ok(open_fields(fields, version, settings))
    }
}

/// Takes `fields` (of a link of `version`) over `settings` one by one.
fn open_fields(fields: Map<String, Value>, version: u64, settings: &RunSettings) -> Opened {
    let mut merged = settings.to_map();
    let mut opened = Opened { settings: settings.clone(), corpus: None, set: vec![], ignored: vec![], refused: vec![] };
    let mut refuse = |field: &str, why: String| opened.refused.push(Refusal { field: field.into(), why });
    let mut corpus = None;
    let mut unknown = vec![];
    for (key, value) in fields {
        if key == "v" {
            continue;
        }
        if key == "corpus" {
            match link_corpus(&value, version) {
                Ok(c) => corpus = Some(c),
                Err(why) => refuse("corpus", why),
            }
            continue;
        }
        let Some(field) = FIELDS.iter().find(|f| f.key == key) else {
            unknown.push(key);
            continue;
        };
        if let Err(why) = check(field, &value) {
            refuse(field.key, why);
            continue;
        }
        let before = merged.insert(key.clone(), value);
        match serde_json::from_value::<RunSettings>(Value::Object(merged.clone())) {
            Ok(s) => {
                opened.settings = s;
                opened.set.push(key);
            }
            Err(e) => {
                // a bound in FIELDS that lets through what RunSettings does not take
                refuse(field.key, format!("is not a setting this page takes ({e})"));
                merged.insert(key, before.unwrap_or(Value::Null));
            }
        }
    }
    opened.corpus = corpus;
    opened.ignored = named(unknown);
    opened
}

/// At most 20 unknown keys, each shortened, and how many more there were.
fn named(unknown: Vec<String>) -> Vec<String> {
    let more = unknown.len().saturating_sub(20);
    let mut names: Vec<String> = unknown.iter().take(20).map(|k| shorten(k)).collect();
    if more > 0 {
        names.push(format!("and {more} more"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::AttentionKind;
    use crate::model::{ArchChoice, Mlp, Norm, Positions};
    use crate::precision::Precision;
    use crate::train::{Optimizer, Schedule};

    fn page() -> RunSettings {
        RunSettings::preset("tiny").unwrap()
    }

    /// A link of `json` (written as a page would not: any JSON at all).
    fn link_of(json: &str) -> String {
        format!("{PREFIX}{}", base64url(json.as_bytes()))
    }

    #[test]
    fn fields_cover_every_key_run_settings_serialises() {
        let Value::Object(keys) = serde_json::to_value(page()).unwrap() else { panic!() };
        let missing: Vec<&String> = keys.keys().filter(|k| !FIELDS.iter().any(|f| f.key == k.as_str())).collect();
        assert!(missing.is_empty(), "RunSettings keys without a row in link::FIELDS (add their bounds): {missing:?}");
        let stale: Vec<&str> = FIELDS.iter().map(|f| f.key).filter(|k| !keys.contains_key(*k)).collect();
        assert!(stale.is_empty(), "link::FIELDS rows for keys RunSettings does not have: {stale:?}");
        assert!(!keys.contains_key("v") && !keys.contains_key("corpus"), "a setting named as a link's own key");
    }

    /// Every field set away from the page's values: the link opens on another page to exactly
    /// these settings.
    #[test]
    fn a_link_round_trips_every_setting() {
        let every = RunSettings {
            tokenizer: "bpe:777".into(),
            n_layer: 3,
            n_head: 5,
            n_embd: 40,
            block_size: 48,
            batch_size: 7,
            grad_accum: 3,
            max_iters: 1234,
            lr: 3.3e-4,
            eval_interval: 77,
            log_interval: 9,
            seed: MAX_SAFE_INTEGER,
            min_lr: Some(1.7e-5),
            warmup_iters: Some(13),
            eval_iters: Some(4),
            weight_decay: Some(0.05),
            beta1: Some(0.85),
            beta2: Some(0.975),
            grad_clip: Some(0.5),
            dropout: Some(0.1),
            precision: Precision::F16,
            attention: Some(AttentionKind::Flash),
            architecture: ArchChoice {
                arch: Some("llama".into()),
                positions: Some(Positions::Off),
                rope_theta: Some(5e5),
                norm: Some(Norm::RmsNorm),
                norm_eps: Some(1e-6),
                mlp: Some(Mlp::Relu2),
                intermediate_size: Some(96),
                n_kv_head: Some(1),
                head_dim: Some(12),
                qk_norm: Some(true),
                bias: Some(false),
                tied: Some(false),
                logit_softcap: Some(15.0),
            },
            optimizer: Some(Optimizer::Sgd),
            muon_lr: Some(0.03),
            momentum: Some(0.8),
            nesterov: Some(false),
            lr_schedule: Some(Schedule::Wsd),
            answer_loss: true,
            // LoRA fine-tunes a model a link does not carry
            lora: Default::default(),
        };
        let Value::Object(keys) = serde_json::to_value(&every).unwrap() else { panic!() };
        let base = page();
        let base_json = serde_json::to_value(&base).unwrap();
        let same: Vec<&String> = keys.keys().filter(|k| keys[*k] == base_json[k.as_str()]).collect();
        assert!(same.is_empty(), "the test must set every field away from the page's: {same:?}");
        for corpus in [
            None,
            Some(LinkCorpus::Own),
            Some(LinkCorpus::Builtin("shakespeare".into())),
            Some(LinkCorpus::Task { name: "reverse".into(), params: "min=4,max=9".into() }),
        ] {
            let link = Link { settings: every.clone(), corpus: corpus.clone() };
            let fragment = Link::share(every.clone(), corpus.clone()).unwrap();
            assert_eq!(fragment, link.encode());
            assert!(fragment.len() < 1500, "{} characters", fragment.len());
            let json = String::from_utf8(unbase64url(&fragment[PREFIX.len()..]).unwrap()).unwrap();
            assert!(json.contains(r#""lr":0.00033,"#), "f32s are written as their shortest decimal: {json}");
            let opened = Link::decode(&fragment, &base).unwrap();
            assert_eq!(opened.settings, every, "{fragment}");
            assert_eq!(opened.corpus, corpus);
            assert_eq!(opened.set.len(), keys.len());
            assert!(opened.ignored.is_empty() && opened.refused.is_empty(), "{opened:?}");
        }
        // and back: the page's own values over the other's
        let opened = Link::decode(&Link { settings: base.clone(), corpus: None }.encode(), &every).unwrap();
        assert_eq!(opened.settings, base);
    }

    #[test]
    fn bad_fields_are_refused_one_by_one_and_unknown_ones_named() {
        let base = page();
        let json = r#"{"v":1,"n_layer":4,"lr":-1,"n_head":"2","batch_size":2.5,"seed":9007199254740992,
            "precision":"f64","attention":"<b>x</b>","min_lr":null,"tokenizer":"bpe:100","future_knob":3,
            "corpus":{"builtin":"war-and-peace"}}"#;
        let opened = Link::decode(&link_of(json), &base).unwrap();
        assert_eq!(opened.settings.n_layer, 4);
        assert_eq!(opened.set, ["min_lr", "n_layer"], "{opened:?}");
        assert_eq!(opened.ignored, ["future_knob"]);
        let refused: Vec<&str> = opened.refused.iter().map(|r| r.field.as_str()).collect();
        let want = ["attention", "batch_size", "corpus", "lr", "n_head", "precision", "seed", "tokenizer"];
        assert_eq!(refused.iter().copied().collect::<std::collections::BTreeSet<_>>(), want.into(), "{opened:?}");
        assert_eq!(opened.corpus, None);
        // refused fields keep the page's values
        let mut want = base.clone();
        want.n_layer = 4;
        assert_eq!(opened.settings, want);
        for r in &opened.refused {
            println!("{}: {}", r.field, r.why);
            assert!(r.why.starts_with("must") || r.why.starts_with("names"), "{r:?}");
        }
        // an old link (fewer keys) opens: what it lacks stays the page's
        let old = Link::decode(&link_of(r#"{"v":1,"n_layer":3}"#), &base).unwrap();
        assert_eq!((old.settings.n_layer, old.settings.lr), (3, base.lr));
    }

    #[test]
    fn an_older_link_keeps_the_task_defaults_it_was_made_with() {
        let task = |v: u64, name: &str, params: &str| {
            let json = format!(r#"{{"v":{v},"corpus":{{"task":{{"name":"{name}","params":"{params}"}}}}}}"#);
            match Link::decode(&link_of(&json), &page()).unwrap().corpus {
                Some(LinkCorpus::Task { params, .. }) => params,
                c => panic!("{json}: {c:?}"),
            }
        };
        // version 1 wrote addition unpadded: its links open at pad=0, what they named kept
        assert_eq!(task(1, "addition", ""), "pad=0");
        assert_eq!(task(1, "addition", "digits=3"), "digits=3,pad=0");
        assert_eq!(task(1, "addition", "pad=1"), "pad=1");
        assert_eq!(task(1, "reverse", "max=9"), "max=9");
        assert_eq!(task(1, "multiplication", ""), "scratch=0");
        // version 2 had padded addition, but two-sum without its scratchpad
        assert_eq!(task(2, "addition", ""), "");
        assert_eq!(task(1, "two-sum", "n=5"), "n=5,scratch=0");
        assert_eq!(task(2, "two-sum", ""), "scratch=0");
        assert_eq!(task(LINK_VERSION, "addition", ""), "");
        assert_eq!(task(LINK_VERSION, "two-sum", ""), "");
    }

    #[test]
    fn whole_links_that_are_not_links_are_refused() {
        let base = page();
        let err = |fragment: &str| Link::decode(fragment, &base).unwrap_err().to_string();
        assert!(err("#other=1").contains("not a wgpt link"));
        assert!(err(&link_of("[1,2]")).contains("an array, not settings"));
        assert!(err(&link_of(r#"{"n_layer":2}"#)).contains("no version"));
        let newer = LINK_VERSION + 1;
        assert!(err(&link_of(&format!(r#"{{"v":{newer}}}"#))).contains(&format!("version {newer}")));
        assert!(err(&link_of(r#"{"v":"1"}"#)).contains("not a version"));
        assert!(err(&"A".repeat(MAX_LINK_CHARS + 1)).contains("more than"));
        // the page's hash or the bare form both open
        assert!(Link::decode(&link_of(r#"{"v":1}"#)[1..], &base).is_ok());
        // a setting the page could not carry refuses to become a link
        let mut s = base;
        s.lr = f32::NAN;
        assert!(Link::share(s, None).unwrap_err().to_string().contains("lr"));
    }
}
