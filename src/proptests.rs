//! Property tests of the two readers of outside input: the overrides file (`desired::parse`) and
//! stored flags (`StoredFlag::parse` / `rewrite`, on `json_text`). Whatever the text, they
//! return a value or an error, never panic; and a rewrite changes exactly the managed
//! properties, every other byte staying as stored.
//!
//! Case counts are bounded (a few hundred small cases per property, seconds in all), and failures
//! are not persisted to files: a failure prints its minimal case, to be added as a plain test.

use crate::desired::{parse, ConfigEnv};
use crate::flag::{Serve, StoredFlag, Targeting, Variation};
use crate::json_text;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::BTreeSet;
use std::path::Path;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---- stored flags ---------------------------------------------------------------------------

/// JSON whitespace, mostly none.
fn space() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(String::new()), 1 => "[ \t\r\n]{1,3}"]
}

/// A JSON string literal: plain text, any Unicode, and every kind of escape.
fn string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 ._-]{1,6}",
        2 => any::<char>()
            .prop_filter("needs an escape", |c| !matches!(c, '"' | '\\') && *c >= ' ')
            .prop_map(String::from),
        1 => prop_oneof![
            Just(r"\n"), Just(r#"\""#), Just(r"\\"), Just(r"\/"), Just(r"\u00e9"),
            Just(r"\ud83d\ude00"), Just(r"\u0000"), Just(r"\ud800"),
        ]
        .prop_map(String::from),
    ];
    vec(piece, 0..5).prop_map(|p| format!("\"{}\"", p.concat()))
}

/// A JSON number as written, including ones serde_json cannot hold exactly or at all.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,3})",
        "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,4})?",
        Just("1e400".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
    ]
}

/// Any JSON value as text, with nesting, odd spacing and duplicate keys.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number(),
        string(),
    ];
    leaf.prop_recursive(5, 32, 4, |inner| {
        prop_oneof![
            vec((space(), inner.clone(), space()), 0..4).prop_map(|items| {
                let items: Vec<String> = items.iter().map(|(a, v, b)| format!("{a}{v}{b}")).collect();
                format!("[{}]", items.join(","))
            }),
            vec((string(), space(), inner), 0..4).prop_map(|members| {
                let m: Vec<String> = members
                    .iter()
                    .map(|(k, s, v)| format!("{s}{k}{s}:{s}{v}"))
                    .collect();
                format!("{{{}}}", m.join(","))
            }),
        ]
    })
}

/// A value nested deeper than serde_json reads (it stops at 128).
fn deep() -> impl Strategy<Value = String> {
    (129usize..200).prop_map(|n| format!("{}0{}", "[".repeat(n), "]".repeat(n)))
}

/// One member of a stored flag: mostly well-typed managed properties, sometimes not, and
/// properties relayctl does not know, holding anything.
fn member() -> impl Strategy<Value = (String, String)> {
    let named =
        |name: &'static str, v: BoxedStrategy<String>| v.prop_map(move |v| (format!("\"{name}\""), v));
    prop_oneof![
        1 => named("key", prop_oneof![4 => string(), 1 => value()].boxed()),
        1 => named("on", prop_oneof![4 => "true|false", 1 => value()].boxed()),
        1 => named("deleted", prop_oneof![6 => Just("false".to_owned()), 1 => Just("true".to_owned()), 1 => value()].boxed()),
        1 => named(
            "variations",
            prop_oneof![4 => vec(value(), 0..4).prop_map(|v| format!("[{}]", v.join(","))), 1 => value()].boxed()
        ),
        1 => named("offVariation", prop_oneof![4 => "[0-3]", 1 => Just("null".to_owned()), 1 => value()].boxed()),
        1 => named(
            "fallthrough",
            prop_oneof![
                3 => "[0-3]".prop_map(|i| format!("{{\"variation\": {i}}}")),
                1 => value().prop_map(|r| format!("{{\"rollout\":{r}}}")),
                1 => value(),
            ]
            .boxed()
        ),
        // "on", as every JSON reader decodes it.
        1 => named("o\\u006e", Just("true".to_owned()).boxed()),
        6 => (string(), prop_oneof![4 => value(), 1 => deep()]),
    ]
}

/// Text of a stored flag: `version` (almost always) and `key` among any members, in any order.
fn stored_flag() -> impl Strategy<Value = String> {
    let version = prop_oneof![
        8 => (0u64..1 << 20).prop_map(|v| v.to_string()),
        1 => prop_oneof![
            Just(((1u64 << 53) - 2).to_string()),
            Just(((1u64 << 53) - 1).to_string()),
            Just(u64::MAX.to_string()),
            number(),
        ],
    ];
    (
        version,
        string(),
        vec((space(), member(), space()), 0..8),
        space(),
    )
        .prop_flat_map(|(version, key, members, end)| {
            let mut all: Vec<String> = members
                .into_iter()
                .map(|(a, (k, v), b)| format!("{a}{k}{a}:{b}{v}{b}"))
                .collect();
            all.push(format!("\"version\":{version}"));
            all.push(format!("\"key\":{key}"));
            Just(all)
                .prop_shuffle()
                .prop_map(move |all| format!("{{{}{end}}}", all.join(",")))
        })
}

/// The text between the values of `text`'s top-level members, and the values: `gaps[i]` comes
/// before `values[i]`, and one more gap ends the text.
fn pieces(text: &str) -> (Vec<&str>, Vec<&str>, Vec<json_text::Member<'_>>) {
    let (object, _) = json_text::object(text.as_bytes(), 0).expect("an object");
    let mut gaps = Vec::new();
    let mut at = 0;
    for m in &object.members {
        gaps.push(&text[at..m.value.start]);
        at = m.value.end;
    }
    gaps.push(&text[at..]);
    let values = object.members.iter().map(|m| &text[m.value.clone()]).collect();
    (gaps, values, object.members)
}

/// The new text of each managed property a rewrite to `to` at `version` sets, in the order
/// absent ones are added.
fn managed(to: &Targeting, version: u64) -> Vec<(&'static str, String)> {
    let mut out = vec![("on", to.on.to_string())];
    if let Some(Serve::Variation(v)) = &to.off_variation {
        out.push(("offVariation", v.index.to_string()));
    }
    if let Some(Serve::Variation(v)) = &to.fallthrough {
        out.push(("fallthrough", format!("{{\"variation\":{}}}", v.index)));
    }
    out.push(("version", version.to_string()));
    out
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_bytes_are_scanned_without_panicking(bytes in vec(any::<u8>(), 0..64), text in "[{}\\[\\]\",:a0 \\\\]{0,40}") {
        let _ = json_text::object(&bytes, 0);
        let _ = json_text::object(text.as_bytes(), 0);
        let _ = StoredFlag::parse(&text);
        let _ = StoredFlag::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn rewriting_any_stored_flag_changes_exactly_the_managed_properties(
        raw in stored_flag(),
        on in any::<bool>(),
        off in proptest::option::of(0usize..4),
        fallthrough in proptest::option::of(0usize..4),
    ) {
        let Ok(flag) = StoredFlag::parse(&raw) else { return Ok(()) };
        prop_assume!(!flag.deleted);
        let serve = |i: Option<usize>| {
            i.and_then(|i| flag.variations().get(i).map(|v| Serve::Variation(Variation { index: i, value: v.clone() })))
        };
        let to = Targeting { on, off_variation: serve(off), fallthrough: serve(fallthrough) };
        if flag.next_version().is_err() {
            prop_assert!(flag.rewrite(&to).is_err(), "a version that cannot be incremented is refused");
            return Ok(());
        }
        let out = flag.rewrite(&to).expect("a flag that parses can be rewritten");

        // SDKs read back the target state at version + 1.
        let back = StoredFlag::parse(&out).expect("the rewritten flag parses");
        prop_assert_eq!(back.version, flag.version + 1);
        prop_assert_eq!(back.targeting_like(&to), to.clone());

        // Byte for byte: the same gaps (keys, spacing, commas) and values, but for the managed
        // values; absent managed properties are appended after the last member.
        let new = managed(&to, flag.version + 1);
        let (raw_gaps, raw_values, raw_members) = pieces(&raw);
        let (out_gaps, out_values, out_members) = pieces(&out);
        let n = raw_values.len();
        let appended: Vec<(&str, &str)> = new
            .iter()
            .filter(|(name, _)| !raw_members.iter().any(|m| m.is(name)))
            .map(|(name, text)| (*name, text.as_str()))
            .collect();
        prop_assert_eq!(out_values.len(), n + appended.len());
        for i in 0..n {
            prop_assert_eq!(out_gaps[i], raw_gaps[i]);
            match new.iter().find(|(name, _)| raw_members[i].is(name)) {
                Some((_, text)) => prop_assert_eq!(out_values[i], text.as_str()),
                None => prop_assert_eq!(out_values[i], raw_values[i]),
            }
        }
        for (j, (name, text)) in appended.iter().enumerate() {
            prop_assert_eq!(out_gaps[n + j], format!(",\"{name}\":"));
            prop_assert!(out_members[n + j].is(name));
            prop_assert_eq!(out_values[n + j], *text);
        }
        prop_assert_eq!(out_gaps[n + appended.len()], raw_gaps[n]);
    }
}

// ---- the overrides file ---------------------------------------------------------------------

/// `s` as a TOML basic string on one line (a valid key, too).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out + "\""
}

/// Fragments an overrides file is made of, right and wrong, to be strung together.
fn toml_ish() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("[[store]]\n"),
        Just("type = \"redis\"\n"),
        Just("type = \"file\"\n"),
        Just("type = \"dynamodb\"\n"),
        Just("url = \"redis://127.0.0.1:6379\"\n"),
        Just("urls = [\"redis://:p@h:1/0\", \"rediss://h\"]\n"),
        Just("path = \"f/{project}-{environment}.json\"\n"),
        Just("table = \"t\"\n"),
        Just("prefix = \"{project\"\n"),
        Just("name = \"s\"\n"),
        Just("[store.prefixes]\n\"a/b\" = \"x\"\n"),
        Just("[journal]\npath = \".\"\n"),
        Just("[launchdarkly]\nbase_url = \"ftp://x\"\n"),
        Just("[overrides.default.production]\n"),
        Just("[overrides.\"p\"]\n"),
        Just("f = true\n"),
        Just("f = { on = false, off_variation = { index = 99999999999999999999 } }\n"),
        Just("g = { on = true, fallthrough = 1.5, reason = \"\" }\n"),
        Just("h = { on = 1 }\n"),
        Just("\"a/b\" = false\n"),
        Just("= \n"),
        Just("[[\n"),
        Just("\"\"\"\n"),
        Just("'''x"),
        Just("{ "),
        Just(" }"),
        Just("\u{feff}"),
        Just("é"),
        Just("\r\n"),
        Just("\t"),
        Just("#"),
        Just("\\u0000"),
        Just("\u{0}"),
        Just("日本"),
        Just("x.y.z = 1\n"),
    ]
    .prop_map(String::from);
    prop_oneof![
        1 => any::<String>(),
        4 => vec(prop_oneof![8 => fragment, 1 => any::<String>()], 0..30).prop_map(|f| f.concat()),
    ]
}

/// A key that LaunchDarkly allows, or one it does not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![12 => "[a-z0-9][a-z0-9._-]{0,8}", 1 => any::<String>()]
}

/// A variation reference as the overrides file writes it.
fn variation_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| toml_string(&s)),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("a finite float", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<u64>().prop_map(|i| format!("{{ index = {i} }}")),
    ]
}

/// A declaration: `true`, or a table with `on` and any of the optional fields.
fn declaration() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(variation_ref()),
        proptest::option::of(variation_ref()),
        proptest::option::of(any::<String>()),
    )
        .prop_map(|(short, on, off, ft, reason)| {
            if short {
                return on.to_string();
            }
            let mut fields = vec![format!("on = {on}")];
            fields.extend(off.map(|v| format!("off_variation = {v}")));
            fields.extend(ft.map(|v| format!("fallthrough = {v}")));
            fields.extend(reason.map(|r| format!("reason = {}", toml_string(&r))));
            format!("{{ {} }}", fields.join(", "))
        })
}

/// One `[[store]]` of any type, with any name and prefix: mostly a valid one.
fn store() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        1 => Just(String::new()),
        4 => "[a-z]{1,8}".prop_map(|s| format!("name = {}\n", toml_string(&s))),
        1 => any::<String>().prop_map(|s| format!("name = {}\n", toml_string(&s))),
    ];
    let prefix = prop_oneof![
        1 => Just(String::new()),
        8 => Just("prefix = \"ld:{project}:{environment}\"\n".to_owned()),
        1 => "[a-z:{}]{0,12}(\\{project\\}|\\{environment\\}|\\{x\\})?"
            .prop_map(|p| format!("prefix = {}\n", toml_string(&p))),
    ];
    let path = prop_oneof![
        8 => Just("f/{project}-{environment}.json".to_owned()),
        1 => "[a-z{}/.]{1,12}",
    ];
    let kind = prop_oneof![
        (1u16..65535, prefix.clone())
            .prop_map(|(port, p)| format!("type = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\n{p}")),
        ("[a-z]{1,8}", prefix).prop_map(|(t, p)| format!("type = \"dynamodb\"\ntable = \"{t}\"\n{p}")),
        path.prop_map(|p| format!("type = \"file\"\npath = {}\n", toml_string(&p))),
    ];
    (name, kind).prop_map(|(n, k)| format!("[[store]]\n{n}{k}\n"))
}

/// A whole overrides file of the right shape: stores, then flags under project/environment,
/// with what it declares.
fn overrides_file() -> impl Strategy<Value = (String, BTreeSet<(String, String, String)>)> {
    let flags = vec((key(), key(), key(), declaration()), 1..6);
    (vec(store(), 1..3), flags).prop_map(|(stores, flags)| {
        let mut text = stores.concat();
        let mut declared = BTreeSet::new();
        for (p, e, f, decl) in flags {
            text += &format!(
                "[overrides.{}.{}]\n{} = {decl}\n",
                toml_string(&p),
                toml_string(&e),
                toml_string(&f)
            );
            declared.insert((p, e, f));
        }
        (text, declared)
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_text_is_a_config_or_an_error_never_a_panic(text in toml_ish(), hosts in proptest::option::of(any::<String>())) {
        let env = ConfigEnv {
            redis_hosts: hosts,
            var: None,
        };
        if let Err(e) = parse(Path::new("overrides.toml"), &text, &env) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn a_valid_shaped_file_declares_exactly_what_it_lists((text, declared) in overrides_file()) {
        match parse(Path::new("dir/overrides.toml"), &text, &ConfigEnv::default()) {
            Ok(config) => {
                for o in &config.overrides {
                    let id = (o.id.project.clone(), o.id.environment.clone(), o.id.flag.clone());
                    prop_assert!(declared.contains(&id), "{:?} was not declared", id);
                }
                prop_assert!(!config.overrides.is_empty() && !config.stores.is_empty());
            }
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(shown.starts_with("dir/overrides.toml:"), "{}", shown);
            }
        }
    }
}
