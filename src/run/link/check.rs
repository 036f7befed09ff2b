//! The checks of one value of a link against its field's bound (and of its corpus choice), with
//! the value shown short in the message that refuses it.

use serde_json::Value;

use super::{Bound, Field, LinkCorpus, BUILTIN_CORPORA};
use crate::data::tasks::old_defaults;
use crate::data::{Task, TASKS};

/// Checks one value against its field's bound; the reason it is refused otherwise.
pub(super) fn check(field: &Field, v: &Value) -> std::result::Result<(), String> {
    if v.is_null() {
        return if field.optional { Ok(()) } else { Err("must be set (it is null)".into()) };
    }
    match field.bound {
        Bound::Int(min, max) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!("must be a whole number from {min} to {max}, not {}", shown(v))),
        },
        Bound::Float(min, max) => match v.as_f64() {
            Some(x) if x.is_finite() && (min..=max).contains(&x) => Ok(()),
            _ => Err(format!("must be a number from {min} to {max}, not {}", shown(v))),
        },
        Bound::Bool => match v.as_bool() {
            Some(_) => Ok(()),
            None => Err(format!("must be true or false, not {}", shown(v))),
        },
        Bound::Choice(names) => match v.as_str() {
            Some(s) if names.contains(&s) => Ok(()),
            _ => Err(format!("must be one of {}, not {}", names.join(", "), shown(v))),
        },
        Bound::Tokenizer(min, max) => {
            let ok = match v.as_str() {
                Some("char") => true,
                Some(s) => s.strip_prefix("bpe:").is_some_and(|n| {
                    n.len() <= 6
                        && n.bytes().all(|b| b.is_ascii_digit())
                        && n.parse().is_ok_and(|n| (min..=max).contains(&n))
                }),
                None => false,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("must be char or bpe:N with N from {min} to {max}, not {}", shown(v)))
            }
        }
    }
}

/// A link's corpus choice, checked: a known built-in corpus, or a known task with parameters of
/// the form `k=v,...` (short names, numbers); a default that changed after the link's `version`
/// is named at its old value (`data::tasks::CHANGED_DEFAULTS`).
pub(super) fn link_corpus(v: &Value, version: u64) -> std::result::Result<LinkCorpus, String> {
    let mut c: LinkCorpus = serde_json::from_value(v.clone()).map_err(|_| {
        format!("must be \"own\", {{\"builtin\": NAME}} or {{\"task\": {{\"name\": NAME, \"params\": \"k=v,...\"}}}}, not {}", shown(v))
    })?;
    match &c {
        LinkCorpus::Builtin(name) if !BUILTIN_CORPORA.contains(&name.as_str()) => {
            Err(format!("names no built-in corpus: {}; the page has {}", shown(v), BUILTIN_CORPORA.join(", ")))
        }
        LinkCorpus::Task { name, params } => {
            if !task_params(params) {
                return Err(format!(
                    "has task parameters {} that are not k=v,... (short names, numbers)",
                    shorten(params)
                ));
            }
            if !TASKS.iter().any(|t| t.name == name) {
                return Err(format!("names an unknown task {}", shorten(name)));
            }
            let spec = if params.is_empty() { name.clone() } else { format!("{name}:{params}") };
            Task::parse(&spec).map_err(|e| format!("names a task this page cannot make: {e}"))?;
            if let LinkCorpus::Task { name, params } = &mut c {
                *params = old_defaults(name, params, |changed| version < changed.link_version);
            }
            Ok(c)
        }
        _ => Ok(c),
    }
}

/// Whether `params` is empty or `k=v,...` with k of at most 16 of [a-z_-] and v a number of at
/// most 12 characters, 64 in all.
fn task_params(params: &str) -> bool {
    params.is_empty()
        || params.len() <= 64
            && params.split(',').all(|kv| {
                kv.split_once('=').is_some_and(|(k, v)| {
                    (1..=16).contains(&k.len())
                        && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
                        && (1..=12).contains(&v.len())
                        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                })
            })
}

/// What kind of JSON value `v` is, for a message.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value for a message: its JSON, at most 40 characters.
pub(super) fn shown(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => kind(v).to_string(),
        _ => shorten(&v.to_string()),
    }
}

/// `s` cut to 40 characters (on a character boundary), marked where cut.
pub(super) fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
