//! What apply writes, byte for byte: stored flags serde_json cannot round-trip (nesting deeper
//! than 128, `1e400`, integers beyond 64 bits), a flag file's other flags and segments, versions
//! that cannot be incremented exactly, and how a hostile stored value is quoted (issue 8, items
//! 13, 14, 17 and 19).

use crate::support::fixtures::{bool_flag, overrides, redis_overrides, PREFIX};
use crate::support::{Redis, Run, Workspace};
use std::os::unix::fs::PermissionsExt;

const FEATURES: &str = "ld:default:production:features";

/// `raw` with each `(from, to)` replaced exactly once.
fn edit(raw: &str, pairs: &[(&str, &str)]) -> String {
    pairs.iter().fold(raw.to_owned(), |text, (from, to)| {
        assert_eq!(text.matches(from).count(), 1, "{from:?} once in {text}");
        text.replacen(from, to, 1)
    })
}

#[test]
fn unknown_properties_are_written_back_exactly_as_stored() {
    let r = Redis::start();
    let deep = format!("{}\"leaf\"{}", "[".repeat(130), "]".repeat(130));
    let nested = format!(
        r#"{{"key":"nested","on":true,"future":{{"tree":{deep}}},"huge":1e400,"variations":[true,false],"offVariation":1,"version":41}}"#
    );
    let numbers = r#"{"key":"numbers","on":true,"rules":[{"id":"r","clauses":[{"attribute":"n","op":"in","values":[123456789012345678901234567890,1e0,-0.0]}],"rollout":{"variations":[{"variation":0,"weight":1E5}]}}],"fallthrough":{"variation":0},"offVariation":1,"variations":[true,false],"name":"caf\u00e9 \/","version":7}"#;
    r.set_raw(PREFIX, "nested", &nested);
    r.set_raw(PREFIX, "numbers", numbers);
    r.seed(PREFIX, &[bool_flag("z-later", 3)]);
    let w = Workspace::new(&redis_overrides(
        &[&r],
        "nested = false\nnumbers = false\nz-later = false\n",
    ));

    let plan = w.run(["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let stored = r.hash(FEATURES);
    assert_eq!(
        stored["nested"],
        edit(
            &nested,
            &[
                (r#""on":true"#, r#""on":false"#),
                (r#""version":41"#, r#""version":42"#)
            ]
        )
    );
    assert_eq!(
        stored["numbers"],
        edit(
            numbers,
            &[
                (r#""on":true"#, r#""on":false"#),
                (r#""version":7"#, r#""version":8"#)
            ]
        )
    );
    assert_eq!(
        r.flag(PREFIX, "z-later").unwrap()["on"],
        false,
        "later flags are applied too"
    );
    assert_eq!(w.journal_commits(), 4);
    let again = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
}

/// A flag file as a person writes one: pretty-printed, its own spacing, numbers as written, a
/// segment, and another flag with `"version": 1e0`.
const FILE: &str = r#"{
  "segments": {
    "beta": { "key": "beta", "included": ["a"], "version": 1e0, "salt": "s", "weights": [123456789012345678901234567890] }
  },
  "flags": {
    "other":   {"key": "other", "on": true, "version": 1e0, "variations": [true, false]},
    "managed": {
      "key": "managed",
      "on":   true,
      "variations": ["a", "b"],
      "offVariation": 0,
      "fallthrough": { "rollout": { "variations": [ { "variation": 0, "weight": 1E5 } ] } },
      "rules": [ { "values": [ 123456789012345678901234567890 ] } ],
      "version": 41
    }
  },
  "trailing": "caf\u00e9"
}
"#;

#[test]
fn the_file_store_changes_only_the_bytes_of_the_flag_it_rewrites() {
    let stores = "[[store]]\nname = \"local\"\ntype = \"file\"\npath = \"flags.json\"\n\n";
    let w = Workspace::new(&overrides(
        stores,
        "managed = { on = false, off_variation = \"b\", fallthrough = \"a\" }\n",
    ));
    w.write("flags.json", FILE);
    std::fs::set_permissions(w.path("flags.json"), std::fs::Permissions::from_mode(0o640)).unwrap();

    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let expected = edit(
        FILE,
        &[
            ("\"on\":   true", "\"on\":   false"),
            ("\"offVariation\": 0", "\"offVariation\": 1"),
            (
                "{ \"rollout\": { \"variations\": [ { \"variation\": 0, \"weight\": 1E5 } ] } }",
                "{\"variation\":0}",
            ),
            ("\"version\": 41", "\"version\": 42"),
        ],
    );
    assert_eq!(w.read("flags.json"), expected);
    let mode = std::fs::metadata(w.path("flags.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "the file keeps its permissions");
    let names: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".relayctl-"))
        .collect();
    assert!(names.is_empty(), "no temp file left: {names:?}");
    let again = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
}

/// Runs `plan` and `apply --auto-approve`; both must fail with exit 1. Returns plan's run.
fn refused(w: &Workspace) -> Run {
    let plan = w.run(["plan"]);
    assert_eq!(plan.code, 1, "plan: {}", plan.all());
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "apply: {}", apply.all());
    assert!(!w.path("journal").exists(), "no journal may be created");
    plan
}

#[test]
fn a_flag_file_flag_that_is_not_utf8_is_named_and_the_others_are_carried() {
    let stores = "[[store]]\nname = \"local\"\ntype = \"file\"\npath = \"flags.json\"\n\n";
    let mut file =
        br#"{"flags": {"bad": {"key": "bad", "on": true, "version": 3, "huge": 1e400, "name": "x"#.to_vec();
    file.extend_from_slice(b"\xff\xfe");
    file.extend_from_slice(br#""}, "good": {"key": "good", "on": true, "version": 5}}, "segments": {}}"#);
    let w = Workspace::new(&overrides(stores, "bad = false\ngood = false\n"));
    std::fs::write(w.path("flags.json"), &file).unwrap();
    let run = refused(&w);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("default/production/bad in local flags.json"))
        .unwrap_or_else(|| panic!("names the flag, store and target: {}", run.stderr));
    assert!(line.contains("not valid UTF-8"), "{line}");
    assert_eq!(
        std::fs::read(w.path("flags.json")).unwrap(),
        file,
        "nothing written"
    );

    // Not declared, it is only carried: the other flag is written and its bytes stay.
    w.write("overrides.toml", &overrides(stores, "good = false\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let after = std::fs::read(w.path("flags.json")).unwrap();
    let expected = String::from_utf8_lossy(&file).replace(
        r#""key": "good", "on": true, "version": 5"#,
        r#""key": "good", "on": false, "version": 6"#,
    );
    assert_eq!(String::from_utf8_lossy(&after), expected);
    assert!(
        after.windows(2).any(|w| w == b"\xff\xfe"),
        "the bytes are carried as they were"
    );
}

#[test]
fn versions_that_cannot_be_incremented_exactly_are_plan_problems_and_never_written() {
    let r = Redis::start();
    let max = r#"{"key":"u64-max","on":true,"variations":[true,false],"offVariation":1,"version":18446744073709551615}"#;
    let i64_max = r#"{"key":"i64-max","on":true,"variations":[true,false],"offVariation":1,"version":9223372036854775807}"#;
    r.set_raw(PREFIX, "u64-max", max);
    r.set_raw(PREFIX, "i64-max", i64_max);
    // 2^53 - 1: what relayctl writes at most, so it is read; but it cannot take one more change.
    r.seed(
        PREFIX,
        &[
            bool_flag("fine", 9007199254740990),
            bool_flag("at-max", 9007199254740991),
        ],
    );
    let before = r.dump();
    let w = Workspace::new(&redis_overrides(
        &[&r],
        "u64-max = false\ni64-max = false\nat-max = false\nfine = false\n",
    ));
    let run = refused(&w);
    for (flag, version) in [
        ("u64-max", "18446744073709551615"),
        ("i64-max", "9223372036854775807"),
        ("at-max", "9007199254740991"),
    ] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(&format!("default/production/{flag} in relay-redis {}", r.url())))
            .unwrap_or_else(|| panic!("names {flag}, the store and the target: {}", run.stderr));
        assert!(
            line.contains(&format!(
                "\"version\" is {version}, too large to increment exactly"
            )) && line.contains("9007199254740991"),
            "{line}"
        );
    }
    assert_eq!(r.dump(), before, "nothing may be written");

    // The largest version that can still be incremented exactly is written exactly, and a flag
    // at 2^53 - 1 that needs no change is no problem.
    let w = Workspace::new(&redis_overrides(&[&r], "fine = false\nat-max = true\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        r.hash(FEATURES)["fine"].contains(r#""version":9007199254740991"#),
        "{}",
        r.hash(FEATURES)["fine"]
    );
}

#[test]
fn a_huge_hostile_stored_value_is_quoted_as_one_short_line() {
    let r = Redis::start();
    let big = "x".repeat(5_000_000);
    r.set_raw(
        PREFIX,
        "rc-flag",
        &format!(r#"{{"key":"rc-flag","on":"{big}","version":5}}"#),
    );
    r.set_raw(
        PREFIX,
        "forged",
        r#"{"key":"forged","on":"off\nerror: everything is fine\u001b[2K","version":5}"#,
    );
    let w = Workspace::new(&redis_overrides(&[&r], "rc-flag = false\nforged = false\n"));
    let run = refused(&w);
    assert!(run.stderr.len() < 2_000, "{} bytes of stderr", run.stderr.len());
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("default/production/rc-flag in relay-redis"))
        .unwrap_or_else(|| panic!("names the flag: {}", run.stderr));
    assert!(
        line.contains("\"on\" is \"xxxx") && line.contains("… (5000002 bytes), not a boolean"),
        "{line}"
    );
    assert!(
        !run.stderr.contains("\nerror: everything is fine") && !run.stderr.contains('\u{1b}'),
        "{}",
        run.stderr
    );
}
