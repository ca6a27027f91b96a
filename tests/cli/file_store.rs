//! The file store: the README's quickstart (examples/quickstart), run in a temp copy.

use crate::support::fixtures::edited;
use crate::support::{git, Workspace};
use serde_json::{json, Value};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart");
const FLAGS: &str = "flags/default-production.json";

fn quickstart() -> Workspace {
    let w = Workspace::new(&std::fs::read_to_string(format!("{EXAMPLE}/overrides.toml")).unwrap());
    w.write(
        FLAGS,
        &std::fs::read_to_string(format!("{EXAMPLE}/{FLAGS}")).unwrap(),
    );
    w
}

fn doc(w: &Workspace) -> Value {
    serde_json::from_str(&w.read(FLAGS)).expect("the flag file stays valid JSON")
}

#[test]
fn quickstart_plans_applies_and_journals_with_no_server() {
    let w = quickstart();
    let before = doc(&w);
    let run = w.run(["plan"]);
    insta::assert_snapshot!(run.render(&[(&w.root(), "[WS]")]));
    assert_eq!(doc(&w), before, "plan does not write");

    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let after = doc(&w);
    // Segments and unmanaged (or unchanged) flags are kept as they were.
    assert_eq!(after["segments"], before["segments"]);
    for f in ["search-v2", "dark-mode"] {
        assert_eq!(after["flags"][f], before["flags"][f], "{f}");
    }
    let expect = |flag: &str, changes: Value| {
        let v = edited(&before["flags"][flag], changes);
        assert_eq!(after["flags"][flag], v, "{flag}");
        // Property order is kept too.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&after["flags"][flag]),
            keys(&before["flags"][flag]),
            "{flag}"
        );
    };
    expect("new-checkout", json!({"on": false, "version": 42}));
    expect(
        "pricing-page",
        json!({"on": false, "offVariation": 0, "version": 18}),
    );
    expect(
        "recommendations",
        json!({"fallthrough": {"variation": 0}, "version": 9}),
    );
    // No temp file left beside the store.
    let names: Vec<_> = std::fs::read_dir(w.path("flags"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("default-production.json")]);

    let subjects = git(&w.path("journal"), &["log", "--reverse", "--format=%s"]);
    assert_eq!(
        subjects,
        "Start the relayctl journal\n\
         default/production/new-checkout: turn off\n\
         default/production/pricing-page: turn off, serve \"control\" when off\n\
         default/production/recommendations: fall through to \"v1\"\n"
    );
    let store = git(
        &w.path("journal"),
        &["log", "-1", "--format=%(trailers:key=Store,valueonly)"],
    );
    assert_eq!(store.trim(), format!("local {FLAGS} v9"));
    let log = w.run(["log"]);
    assert_eq!(log.code, 0);
    assert_eq!(log.stdout.lines().count(), 3, "{}", log.stdout);
    assert!(
        log.stdout.lines().all(|l| l.ends_with("[pending]")),
        "{}",
        log.stdout
    );

    let run = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("Plan: 0 to change, 4 unchanged."),
        "{}",
        run.stdout
    );
}

#[test]
fn paths_in_the_overrides_file_are_relative_to_it_not_to_the_working_directory() {
    let w = Workspace::new("# the real file is in ops/\n");
    w.write(
        "ops/overrides.toml",
        &std::fs::read_to_string(format!("{EXAMPLE}/overrides.toml")).unwrap(),
    );
    w.write(
        &format!("ops/{FLAGS}"),
        &std::fs::read_to_string(format!("{EXAMPLE}/{FLAGS}")).unwrap(),
    );
    let run = w.run(["-c", "ops/overrides.toml", "apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(w.path("ops/journal/.git").is_dir());
    assert!(!w.path("journal").exists());
    let doc: Value = serde_json::from_str(&w.read(&format!("ops/{FLAGS}"))).unwrap();
    assert_eq!(doc["flags"]["new-checkout"]["on"], json!(false));
    // RELAYCTL_CONFIG works the same way.
    let run = w
        .cmd(["plan", "--detailed-exitcode"])
        .env("RELAYCTL_CONFIG", "ops/overrides.toml")
        .run();
    assert_eq!(run.code, 0, "{}", run.all());
}
