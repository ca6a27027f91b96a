//! The contexts `relayctl eval` evaluates: LaunchDarkly's context JSON (single-kind, multi-kind,
//! or the old user format), given inline, as `@file` or as `-` (standard input), one context or
//! an array of them; or built from `--user KEY` / `--context-kind KIND --key KEY` and
//! `--attr name=value`.
//!
//! The evaluation engine parses and validates every context (its `Context` deserializer and
//! builders), so relayctl accepts exactly what the engine does. Its messages do not always say
//! where a context goes wrong, so when it refuses one, [`locate`] looks for the field at fault
//! and the error names it beside the engine's own words.

use crate::json_text::excerpt;
use anyhow::{anyhow, bail, Result};
use launchdarkly_server_sdk_evaluation::{AttributeValue, Context, ContextBuilder, Kind};
use serde_json::{Map, Value};

/// How the command line names the contexts to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextArgs {
    /// `--context` values, in order: JSON, `@file`, or `-` for standard input.
    Json(Vec<String>),
    /// `--user KEY` (kind `user`) or `--context-kind KIND --key KEY`, with `--attr name=value`.
    Built {
        kind: String,
        key: String,
        attrs: Vec<String>,
    },
}

/// The contexts `args` name. `text` turns a `--context` value into its JSON text (reading
/// `@file` or `-`), and how messages name that source.
pub fn build(
    args: &ContextArgs,
    text: &mut dyn FnMut(&str) -> Result<(String, String)>,
) -> Result<Vec<Context>> {
    match args {
        ContextArgs::Built { kind, key, attrs } => Ok(vec![built(kind, key, attrs)?]),
        ContextArgs::Json(values) => {
            let mut contexts = Vec::new();
            for value in values {
                let (json, source) = text(value)?;
                contexts.extend(parse(&json, &source)?);
            }
            if contexts.is_empty() {
                bail!("the --context values hold no context (an empty array); give at least one");
            }
            Ok(contexts)
        }
    }
}

/// The contexts in `json` (one, or an array of them) from `source` (for messages).
pub fn parse(json: &str, source: &str) -> Result<Vec<Context>> {
    let value: Value = serde_json::from_str(json).map_err(|e| {
        anyhow!(
            "{source} is not JSON ({e}); give a context such as {{\"kind\": \"user\", \"key\": \"alice\"}}"
        )
    })?;
    let (items, many) = match value {
        Value::Array(items) => (items, true),
        one => (vec![one], false),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let which = match many {
                true => format!("{source}, context {} of the array", i + 1),
                false => source.to_owned(),
            };
            one(item, &which)
        })
        .collect()
}

/// One context from its JSON, or an error naming `which` one, the field at fault if it can be
/// found, and the engine's reason.
fn one(item: Value, which: &str) -> Result<Context> {
    let at_fault = locate(&item);
    serde_json::from_value::<Context>(item).map_err(|e| {
        let engine = crate::ui::printable(&e.to_string()).into_owned();
        match at_fault {
            Some(field) => anyhow!(
                "{which} is not a valid LaunchDarkly context: {field} (the evaluation engine says: {engine}); \
                 fix that field"
            ),
            None => anyhow!("{which} is not a valid LaunchDarkly context: {engine}"),
        }
    })
}

/// The context of `--user` / `--context-kind` and `--key`, with `--attr name=value` attributes
/// (a value that is JSON is taken as JSON: `age=42`, `beta=true`, `groups=["a"]`; any other is a
/// string: `country=NZ`; `id="42"` forces a string).
fn built(kind: &str, key: &str, attrs: &[String]) -> Result<Context> {
    let mut builder = ContextBuilder::new(key);
    builder.kind(kind);
    for raw in attrs {
        let Some((name, value)) = raw.split_once('=').filter(|(n, _)| !n.is_empty()) else {
            bail!(
                "--attr {}: expected name=value, e.g. --attr country=NZ",
                excerpt(raw)
            );
        };
        let value: AttributeValue =
            serde_json::from_str(value).unwrap_or_else(|_| AttributeValue::String(value.to_owned()));
        let refused = match name {
            "kind" | "key" => Some("give the kind with --context-kind and the key with --user or --key"),
            "_meta" => Some("\"_meta\" holds metadata, not an attribute"),
            _ => None,
        };
        if let Some(why) = refused.or_else(|| (!builder.try_set_value(name, value)).then_some("")) {
            let rule = match name {
                "name" => "\"name\" must be a string",
                "anonymous" => "\"anonymous\" must be true or false",
                _ => why,
            };
            bail!("--attr {}: {rule}", excerpt(raw));
        }
    }
    builder.build().map_err(|e| {
        anyhow!(
            "the context of kind {} and key {} is not valid: {e}",
            excerpt(&format!("{kind:?}")),
            excerpt(&format!("{key:?}"))
        )
    })
}

/// Where `context` goes wrong, in words naming the field, when it can be told; `None` when the
/// field at fault cannot be found (the engine's message then stands alone).
pub fn locate(context: &Value) -> Option<String> {
    let Some(object) = context.as_object() else {
        return Some(format!("it is {}, not a JSON object", shown(context)));
    };
    match object.get("kind") {
        None => single(object, true),
        Some(Value::String(kind)) if kind == "multi" => multi(object),
        Some(Value::String(kind)) => match Kind::try_from(kind.as_str()) {
            Err(e) => Some(format!("\"kind\" {}: {e}", shown(&Value::String(kind.clone())))),
            Ok(_) => single(object, false),
        },
        Some(other) => Some(format!("\"kind\" is {}, not a string", shown(other))),
    }
}

/// Where a multi-kind context (`"kind": "multi"`) goes wrong.
fn multi(object: &Map<String, Value>) -> Option<String> {
    let mut kinds = object.iter().filter(|(name, _)| *name != "kind").peekable();
    if kinds.peek().is_none() {
        return Some("a multi-kind context needs at least one kind beside \"kind\": \"multi\"".to_owned());
    }
    for (kind, member) in kinds {
        let name = shown(&Value::String(kind.clone()));
        if let Err(e) = Kind::try_from(kind.as_str()) {
            return Some(format!("kind {name}: {e}"));
        }
        let Some(member) = member.as_object() else {
            return Some(format!(
                "{name} is {}, not an object (a multi-kind context holds one object per kind)",
                shown(member)
            ));
        };
        if let Some(why) = single(member, false) {
            return Some(format!("in kind {name}, {why}"));
        }
    }
    None
}

/// Where a single context's object goes wrong (`old_user`: the format without `"kind"`, whose
/// key may be empty).
fn single(object: &Map<String, Value>, old_user: bool) -> Option<String> {
    match object.get("key") {
        None => return Some("it has no \"key\"".to_owned()),
        Some(Value::String(key)) if key.is_empty() && !old_user => {
            return Some("\"key\" is empty".to_owned())
        }
        Some(Value::String(_)) => {}
        Some(other) => return Some(format!("\"key\" is {}, not a string", shown(other))),
    }
    let expected = [
        ("name", "a string", Value::is_string as fn(&Value) -> bool),
        ("anonymous", "true or false", Value::is_boolean),
        ("_meta", "an object", Value::is_object),
        ("custom", "an object", Value::is_object),
    ];
    for (field, what, fits) in expected {
        match object.get(field) {
            Some(v) if !v.is_null() && !fits(v) && (field != "custom" || old_user) => {
                return Some(format!("\"{field}\" is {}, not {what}", shown(v)));
            }
            _ => {}
        }
    }
    let private = object.get("_meta").and_then(|m| m.get("privateAttributes"));
    match private {
        Some(Value::Array(names)) if names.iter().all(Value::is_string) => None,
        Some(v) if !v.is_null() => Some(format!(
            "\"_meta\".\"privateAttributes\" is {}, not an array of strings",
            shown(v)
        )),
        _ => None,
    }
}

/// A JSON value as a message quotes it: short, on one line, escaped.
fn shown(value: &Value) -> String {
    excerpt(&value.to_string())
}

/// How a message or a line names `context`: its canonical key (`alice`, `org:acme`,
/// `org:acme:user:alice`), LaunchDarkly's one-string name for it.
pub fn name(context: &Context) -> &str {
    context.canonical_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        format!("{:#}", parse(json, "--context").unwrap_err())
    }

    #[test]
    fn contexts_parse_single_multi_old_user_and_arrays() {
        let one = parse(r#"{"kind": "user", "key": "alice", "country": "NZ"}"#, "x").unwrap();
        assert_eq!(name(&one[0]), "alice");
        let multi = parse(
            r#"{"kind": "multi", "user": {"key": "alice"}, "org": {"key": "acme", "name": "Acme"}}"#,
            "x",
        )
        .unwrap();
        assert_eq!(name(&multi[0]), "org:acme:user:alice");
        let old = parse(r#"{"key": "bob", "custom": {"groups": ["beta"]}}"#, "x").unwrap();
        assert_eq!(name(&old[0]), "bob");
        let many = parse(
            r#"[{"kind": "org", "key": "a"}, {"kind": "org", "key": "b"}]"#,
            "x",
        )
        .unwrap();
        assert_eq!(many.iter().map(name).collect::<Vec<_>>(), ["org:a", "org:b"]);
    }

    #[test]
    fn a_malformed_context_names_the_field_at_fault() {
        for (json, field) in [
            (r#"{"kind": "user"}"#, "it has no \"key\""),
            (r#"{"kind": "user", "key": 5}"#, "\"key\" is 5, not a string"),
            (r#"{"kind": "user", "key": ""}"#, "\"key\" is empty"),
            (r#"{"kind": 3, "key": "a"}"#, "\"kind\" is 3, not a string"),
            (
                r#"{"kind": "a b", "key": "a"}"#,
                "\"kind\" \"a b\": context kind contains disallowed",
            ),
            (
                r#"{"kind": "user", "key": "a", "anonymous": "yes"}"#,
                "\"anonymous\" is \"yes\", not true or false",
            ),
            (
                r#"{"kind": "user", "key": "a", "name": 1}"#,
                "\"name\" is 1, not a string",
            ),
            (r#"{"kind": "multi"}"#, "at least one kind"),
            (
                r#"{"kind": "multi", "org": {"name": "x"}}"#,
                "in kind \"org\", it has no \"key\"",
            ),
            (r#"{"kind": "multi", "org": 7}"#, "\"org\" is 7, not an object"),
            (
                r#"{"kind": "user", "key": "a", "_meta": {"privateAttributes": [1]}}"#,
                "not an array of strings",
            ),
            (
                r#"[{"kind": "user", "key": "a"}, {"kind": "user"}]"#,
                "context 2 of the array",
            ),
            ("42", "it is 42, not a JSON object"),
        ] {
            let e = error(json);
            assert!(e.contains(field), "{json}: {e}");
            assert!(e.contains("not a valid LaunchDarkly context"), "{json}: {e}");
        }
        assert!(error("{oops").contains("--context is not JSON"));
    }

    #[test]
    fn shorthand_contexts_take_typed_attributes() {
        let attrs = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = built(
            "user",
            "alice",
            &attrs(&["country=NZ", "age=42", "beta=true", "id=\"7\""]),
        )
        .unwrap();
        let get = |n: &str| c.get_value(&launchdarkly_server_sdk_evaluation::Reference::new(n));
        assert_eq!(get("country"), Some(AttributeValue::String("NZ".into())));
        assert_eq!(get("age"), Some(AttributeValue::Number(42.0)));
        assert_eq!(get("beta"), Some(AttributeValue::Bool(true)));
        assert_eq!(get("id"), Some(AttributeValue::String("7".into())));
        for (attr, why) in [
            ("country", "expected name=value"),
            ("=x", "expected name=value"),
            ("key=bob", "--user or --key"),
            ("anonymous=maybe", "true or false"),
            ("name=5", "must be a string"),
        ] {
            let e = built("user", "alice", &attrs(&[attr])).unwrap_err().to_string();
            assert!(e.contains(why), "{attr}: {e}");
        }
        let e = built("not a kind", "k", &[]).unwrap_err().to_string();
        assert!(e.contains("disallowed characters"), "{e}");
        assert_eq!(name(&built("org", "acme", &[]).unwrap()), "org:acme");
    }
}
