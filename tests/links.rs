//! Hostile links (tests/fixtures/hostile/links/*.txt, made by make_hostile_links.py, and a 10 MB
//! one made here): each is refused as the table below says, whole or field by field, with a
//! message naming what is wrong; none panics, none sets a refused field, none starts anything.
//! And the page's engine answers link requests before its GPU is open, without training.

mod common;

use common::page::{Posted, Recorder};
use std::path::Path;
use std::rc::Rc;

use serde_json::json;
use wgpt::run::link::{Link, LinkCorpus, MAX_LINK_CHARS};
use wgpt::run::RunSettings;
use wgpt::web::protocol::{Event, Scope};
use wgpt::web::Engine;

/// How a hostile link is refused: whole (the error says this), or these fields (each message
/// says this) with every other field left alone.
enum Refused {
    Whole(&'static str),
    Fields(&'static [(&'static str, &'static str)]),
}

/// Every file of tests/fixtures/hostile/links, and how it is refused.
const HOSTILE: &[(&str, Refused)] = &[
    ("bad-base64", Refused::Whole("not a base64url character")),
    ("not-json", Refused::Whole("not JSON")),
    ("array", Refused::Whole("an array, not settings")),
    ("deep-nesting", Refused::Whole("recursion limit")),
    ("version-99", Refused::Whole("version 99")),
    ("no-version", Refused::Whole("no version")),
    ("lr-1e309", Refused::Whole("number out of range")),
    ("other-fragment", Refused::Whole("not a wgpt link")),
    ("n-layer-1e12", Refused::Fields(&[("n_layer", "whole number from 1 to 128, not 1000000000000.0")])),
    ("n-layer-huge-integer", Refused::Fields(&[("n_layer", "whole number from 1 to 128")])),
    ("script-in-tokenizer", Refused::Fields(&[("tokenizer", "char or bpe:N")])),
    ("unknown-task", Refused::Fields(&[("corpus", "unknown task")])),
    ("task-params-injection", Refused::Fields(&[("corpus", "not k=v")])),
    ("unknown-builtin", Refused::Fields(&[("corpus", "no built-in corpus")])),
    ("negative-batch", Refused::Fields(&[("batch_size", "not -4")])),
    ("null-required", Refused::Fields(&[("lr", "must be set"), ("max_iters", "must be set")])),
    ("long-string", Refused::Fields(&[("precision", "ffff…")])),
    ("unknown-keys", Refused::Fields(&[])),
];

fn page() -> RunSettings {
    RunSettings::preset("tiny").unwrap()
}

#[test]
fn hostile_links_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile/links");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".txt").to_string())
        .collect();
    files.sort();
    let mut listed: Vec<String> = HOSTILE.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "every hostile link has a row saying how it is refused");
    let base = page();
    for (name, how) in HOSTILE {
        let fragment = std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap();
        let opened = Link::decode(fragment.trim_end(), &base);
        match (how, opened) {
            (Refused::Whole(why), Err(e)) => {
                println!("{name}: refused: {e}");
                assert!(e.to_string().contains(why), "{name}: the error lacks {why:?}: {e}");
            }
            (Refused::Fields(fields), Ok(o)) => {
                println!("{name}: set {:?}, ignored {:?}, refused {:?}", o.set, o.ignored, o.refused);
                let got: Vec<&str> = o.refused.iter().map(|r| r.field.as_str()).collect();
                let want: Vec<&str> = fields.iter().map(|f| f.0).collect();
                assert_eq!(got, want, "{name}: the fields refused");
                for ((_, why), r) in fields.iter().zip(&o.refused) {
                    assert!(r.why.contains(why), "{name}: {}'s message lacks {why:?}: {}", r.field, r.why);
                    assert!(r.why.chars().count() < 200, "{name}: a message echoes too much: {}", r.why);
                }
                assert_eq!(o.settings, base, "{name}: a refused link changed a setting");
                assert!(o.corpus.is_none() && o.set.is_empty(), "{name}: {o:?}");
                if *name == "unknown-keys" {
                    assert_eq!(o.ignored.len(), 21, "20 named and a count: {:?}", o.ignored);
                    assert_eq!(o.ignored.last().unwrap(), "and 10 more");
                }
            }
            (_, got) => panic!("{name}: refused the wrong way: {got:?}"),
        }
    }
    // a 10 MB link is refused by its length, before anything is decoded
    let huge = format!("#run={}", "A".repeat(10 << 20));
    let e = Link::decode(&huge, &base).unwrap_err().to_string();
    assert!(e.contains(&format!("more than a link of wgpt's ({MAX_LINK_CHARS})")), "{e}");
}

/// The page's engine before `init`: no GPU at all. A link is made and opened at once (nothing
/// waits for the GPU), a hostile one is an error of the link's scope, and nothing trains.
#[test]
fn the_engine_answers_links_without_the_gpu() {
    let events: Posted = Rc::default();
    let mut engine = Engine::new(Box::new(Recorder(events.clone())));
    let mut settings = page();
    settings.n_layer = 3;
    settings.lr = 5e-4;
    let corpus = LinkCorpus::Task { name: "sort".into(), params: String::new() };
    let ask = |engine: &mut Engine, request: serde_json::Value| {
        engine.handle(&request.to_string(), vec![]).unwrap();
        while pollster::block_on(engine.tick()) {}
        events.borrow_mut().drain(..).map(|(e, _)| e).collect::<Vec<Event>>()
    };
    let got = ask(&mut engine, json!({"type": "share_link", "settings": settings, "corpus": corpus}));
    let [Event::Link { fragment }] = got.as_slice() else { panic!("{got:?}") };
    assert!(fragment.starts_with("#run="), "{fragment}");
    let got = ask(&mut engine, json!({"type": "open_link", "fragment": fragment, "settings": page()}));
    let [Event::LinkOpened(opened)] = got.as_slice() else { panic!("{got:?}") };
    assert_eq!((&opened.settings, &opened.corpus), (&settings, &Some(corpus)));
    assert!(opened.refused.is_empty() && opened.ignored.is_empty());
    let got = ask(&mut engine, json!({"type": "open_link", "fragment": "#run=WzFd", "settings": page()}));
    let [Event::Error { scope: Scope::Link, message }] = got.as_slice() else { panic!("{got:?}") };
    assert!(message.contains("an array"), "{message}");
    // an absurd setting of the page's own is refused before it becomes a link
    let mut absurd = serde_json::to_value(page()).unwrap();
    absurd["n_layer"] = json!(100_000);
    let got = ask(&mut engine, json!({"type": "share_link", "settings": absurd}));
    let [Event::Error { scope: Scope::Link, message }] = got.as_slice() else { panic!("{got:?}") };
    assert!(message.contains("n_layer"), "{message}");
}
