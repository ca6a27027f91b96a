use super::*;

fn declared(key: &str, value: Option<&str>) -> DeclaredKey {
    DeclaredKey {
        store: "meow-blue".into(),
        key: key.into(),
        value: value.map(str::to_owned),
        reason: None,
    }
}

fn target() -> StoreTarget {
    StoreTarget {
        store: "meow-blue".into(),
        target: "redis://127.0.0.1:6379".into(),
    }
}

fn run(d: DeclaredKey, held: Held) -> KeyPlan {
    let observed = Observed::from([((d.store.clone(), d.key.clone()), vec![(target(), held)])]);
    plan(&[d], &observed)
}

#[test]
fn table() {
    let v = |s: &str| Held::Value(s.as_bytes().to_vec());
    for (name, d, held, changes, unchanged, problem) in [
        (
            "set an absent key",
            declared("RECENT", Some("ON")),
            Held::Absent,
            1,
            0,
            None,
        ),
        (
            "change a value",
            declared("RECENT", Some("ON")),
            v("OFF"),
            1,
            0,
            None,
        ),
        ("same bytes", declared("RECENT", Some("ON")), v("ON"), 0, 1, None),
        (
            "case matters",
            declared("RECENT", Some("ON")),
            v("on"),
            1,
            0,
            None,
        ),
        ("delete", declared("old", None), v("x"), 1, 0, None),
        ("already absent", declared("old", None), Held::Absent, 0, 1, None),
        (
            "not UTF-8",
            declared("k", Some("1")),
            Held::Value(vec![0xff]),
            1,
            0,
            None,
        ),
        (
            "a hash",
            declared("k", Some("1")),
            Held::Other("hash".into()),
            0,
            0,
            Some("the key holds a Redis hash, not a string"),
        ),
    ] {
        let p = run(d, held);
        assert_eq!(p.changes.len(), changes, "{name}");
        assert_eq!(p.unchanged, unchanged, "{name}");
        match problem {
            Some(want) => assert!(
                p.problems.len() == 1 && p.problems[0].contains(want),
                "{name}: {:?}",
                p.problems
            ),
            None => assert!(p.problems.is_empty(), "{name}: {:?}", p.problems),
        }
    }
}

#[test]
fn values_and_keys_are_shown_escaped_and_cut() {
    assert_eq!(show_key("RECENT"), "RECENT");
    assert_eq!(show_key("a b\nKey: x"), "\"a b\\nKey: x\"");
    assert_eq!(show_key(""), "\"\"");
    assert_eq!(show_to(None), "(absent)");
    assert_eq!(show_to(Some("ON")), "\"ON\"");
    assert_eq!(show_to(Some("a\n\u{1b}[31m")), "\"a\\n\\u{1b}[31m\"");
    assert_eq!(show_held(Some(&[0xff, b'a'])), "b\"\\xffa\"");
    let long = "x".repeat(100);
    assert_eq!(
        show_to(Some(&long)),
        format!("\"{}\"... (100 bytes)", "x".repeat(64))
    );
}

#[test]
fn stored_values_round_trip_through_plan_json_even_when_not_text() {
    for bytes in [b"ON".to_vec(), vec![0xff, 0x00, b'a'], Vec::new()] {
        let json = serde_json::to_string(&Stored(bytes.clone())).unwrap();
        let back: Stored = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, bytes, "{json}");
    }
    assert_eq!(
        serde_json::to_string(&Stored(vec![0xff])).unwrap(),
        "{\"hex\":\"ff\"}"
    );
}

#[test]
fn a_saved_plan_must_match_the_declarations() {
    let d = declared("RECENT", Some("ON"));
    let good = run(d.clone(), Held::Absent).changes;
    assert!(check_saved(&good, std::slice::from_ref(&d), |_| true).is_empty());
    let mut edited = good.clone();
    edited[0].to = None;
    let p = check_saved(&edited, std::slice::from_ref(&d), |_| true);
    assert!(
        p[0].contains("the plan sets (absent), but the overrides file declares \"ON\""),
        "{p:?}"
    );
    let p = check_saved(&good, std::slice::from_ref(&d), |_| false);
    assert!(
        p[0].contains("which the overrides file does not declare for store \"meow-blue\""),
        "{p:?}"
    );
    let p = check_saved(&good, &[], |_| true);
    assert!(
        p[0].contains("the overrides file does not declare this key"),
        "{p:?}"
    );
    let twice = [good[0].clone(), good[0].clone()];
    assert!(check_saved(&twice, std::slice::from_ref(&d), |_| true)[0].contains("more than once"));
}
