//! Rewriting stored flags that serde_json cannot round-trip, versions that cannot be incremented,
//! and messages about hostile stored values (issue 8, items 13, 14, 17 and 19). The property
//! tests of rewriting are in `src/proptests.rs`.

use super::stored::MAX_VERSION;
use super::*;
use serde_json::json;

fn off() -> Targeting {
    Targeting {
        on: false,
        off_variation: None,
        fallthrough: None,
    }
}

fn rewritten(raw: &str, to: &Targeting) -> String {
    StoredFlag::parse(raw).unwrap().rewrite(to).unwrap()
}

#[test]
fn unknown_properties_serde_json_cannot_hold_are_kept_as_written() {
    // Nested deeper than serde_json's limit of 128, and a number beyond f64: both used to make
    // apply panic after plan had passed, on every re-run.
    let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
    let raw = format!(
        r#"{{"key":"k","on":true,"future":{{"tree":{deep}}},"huge":1e400,"variations":[true,false],"offVariation":1,"version":41}}"#
    );
    let out = rewritten(&raw, &off());
    assert_eq!(
        out,
        raw.replace(r#""on":true"#, r#""on":false"#)
            .replace(r#""version":41"#, r#""version":42"#)
    );
}

#[test]
fn numbers_and_text_relayctl_does_not_manage_keep_their_bytes() {
    let raw = "{\n  \"key\": \"k\",\n  \"rules\": [{\"clauses\": [{\"values\": [123456789012345678901234567890, 1e0, -0.0, 1E+2]}]}],\n  \
               \"on\" :  true ,\n  \"name\": \"caf\\u00e9 \\/ \u{e9}\",\n  \"variations\": [\"a\", \"b\"],\n  \
               \"fallthrough\": {\"rollout\": {\"variations\": [{\"variation\": 0, \"weight\": 1e5}]}},\n  \"version\": 7\n}\n";
    let out = rewritten(
        raw,
        &Targeting {
            on: false,
            off_variation: Some(Serve::Variation(Variation {
                index: 1,
                value: json!("b"),
            })),
            fallthrough: Some(Serve::Variation(Variation {
                index: 0,
                value: json!("a"),
            })),
        },
    );
    let expected = raw
        .replace("\"on\" :  true ,", "\"on\" :  false ,")
        .replace(
            "{\"rollout\": {\"variations\": [{\"variation\": 0, \"weight\": 1e5}]}}",
            "{\"variation\":0}",
        )
        .replace("\"version\": 7\n}", "\"version\": 8,\"offVariation\":1\n}");
    assert_eq!(out, expected);
    assert!(out.contains("123456789012345678901234567890, 1e0, -0.0, 1E+2"));
}

#[test]
fn absent_managed_properties_are_added_at_the_end() {
    let out = rewritten(
        r#"{"key":"k","variations":[1],"version":1}"#,
        &Targeting {
            on: true,
            off_variation: Some(Serve::Variation(Variation {
                index: 0,
                value: json!(1),
            })),
            fallthrough: None,
        },
    );
    assert_eq!(
        out,
        r#"{"key":"k","variations":[1],"version":2,"on":true,"offVariation":0}"#
    );
}

#[test]
fn a_managed_property_given_twice_is_refused() {
    for raw in [
        r#"{"key":"k","on":true,"on":false,"version":1}"#,
        r#"{"key":"k","on":true,"o\u006e":false,"version":1}"#,
        r#"{"key":"k","version":1,"version":2}"#,
    ] {
        let err = StoredFlag::parse(raw).unwrap_err().to_string();
        assert!(err.contains("duplicate field"), "{raw}: {err}");
    }
}

#[test]
fn versions_that_cannot_be_incremented_exactly_are_refused() {
    for version in [u64::MAX, i64::MAX as u64, 1 << 53, MAX_VERSION] {
        let raw = format!(r#"{{"key":"k","on":true,"version":{version}}}"#);
        // Above MAX_VERSION, relayctl never wrote it; at MAX_VERSION it may have, so it is read,
        // and the planner refuses to change it.
        let err = match StoredFlag::parse(&raw) {
            Ok(f) if version == MAX_VERSION => f.next_version().unwrap_err().to_string(),
            other => other.unwrap_err().to_string(),
        };
        assert!(
            err.contains(&format!(
                "\"version\" is {version}, too large to increment exactly"
            )) && err.contains("9007199254740991"),
            "{err}"
        );
    }
    let raw = format!(r#"{{"key":"k","on":true,"version":{}}}"#, MAX_VERSION - 1);
    let out = rewritten(&raw, &off());
    assert_eq!(
        out,
        format!(r#"{{"key":"k","on":false,"version":{MAX_VERSION}}}"#)
    );
    // A tombstone is reported as deleted, whatever its version.
    let f = StoredFlag::parse(r#"{"key":"$deleted","deleted":true,"version":18446744073709551615}"#).unwrap();
    assert!(f.deleted);
    assert!(f.next_version().is_err());
}

#[test]
fn versions_beyond_u64_or_not_integers_are_quoted_as_written() {
    for (version, shown) in [
        ("18446744073709551616", "18446744073709551616"),
        ("1e400", ""),
        ("41.0", "41.0"),
        ("-1", "-1"),
        ("\"41\"", "\"41\""),
    ] {
        let raw = format!(r#"{{"key":"k","version":{version}}}"#);
        let err = StoredFlag::parse(&raw).unwrap_err().to_string();
        assert!(
            err.contains(&format!("\"version\" is {shown}")) || shown.is_empty(),
            "{err}"
        );
        assert!(err.len() < 300, "{err}");
    }
}

#[test]
fn messages_quote_a_short_single_line_excerpt_of_stored_values() {
    let big = "x".repeat(5_000_000);
    let cases = [
        format!(r#"{{"key":"k","version":1,"on":"{big}"}}"#),
        r#"{"key":"k","version":1,"on":"INC\nerror: forged line"}"#.to_owned(),
        r#"{"key":"k","version":1,"on":"a\u001b[2Kb"}"#.to_owned(),
        format!(r#"{{"key":"k","version":"{big}"}}"#),
        format!(r#"{{"key":["{big}"],"version":1}}"#),
        format!(r#"{{"key":"k","version":1,"deleted":"{big}"}}"#),
        format!(r#"{{"key":"k","version":1,"variations":{{"a":"{big}"}}}}"#),
        format!(r#"{{"key":"k","version":1,"offVariation":"{big}"}}"#),
        format!(r#"{{"key":"k","version":1,"fallthrough":{{"variation":"{big}"}}}}"#),
        format!(r#"{{"key":"k","version":1,"fallthrough":"{big}"}}"#),
        "{\"key\":\"k\",\"version\":1,\"on\":\n  {\"a\":\n\n\"b\"}}".to_owned(),
    ];
    for raw in &cases {
        let err = StoredFlag::parse(raw).unwrap_err().to_string();
        assert!(
            err.len() < 300,
            "{} bytes: {}",
            err.len(),
            &err[..300.min(err.len())]
        );
        assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err:?}");
    }
    let err = StoredFlag::parse(&cases[0]).unwrap_err().to_string();
    assert!(
        err.starts_with("\"on\" is \"xxxx") && err.ends_with("… (5000002 bytes), not a boolean"),
        "{err}"
    );
}

#[test]
fn variation_lists_in_messages_are_bounded() {
    let many: Vec<Value> = (0..1000)
        .map(|i| json!(format!("{i}{}", "v".repeat(10_000))))
        .collect();
    let err = find_variation(&VariationRef::Value(json!("none")), &many).unwrap_err();
    assert!(err.len() < 2_000 && err.ends_with("and 980 more"), "{err}");
}
