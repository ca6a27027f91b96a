//! Benchmark (not a test): `relayctl sync` of 1,000 pending journal commits over 1,000 flags
//! against the in-process fake LaunchDarkly. Target: under 5 s wall on the 2-core dev machine.
//! Measured 2026-11-22 (2 shared cores, load average ~5): 3.2 s wall for 2,000 requests and
//! 1,000 notes; a re-run with nothing pending 0.3 s.
//!
//! Run: `cargo bench --bench sync` (prints the apply time used to make the journal, and the
//! sync time). `RELAYCTL_BENCH_FLAGS=N` changes the number of flags.

#[path = "../tests/cli/support/fake_ld.rs"]
mod fake_ld;

use serde_json::{json, Value};
use std::process::Command;
use std::time::Instant;

fn relayctl(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_relayctl"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("RELAYCTL_AUTHOR", "Bench Operator <bench@example.com>")
        .env("LD_API_KEY", fake_ld::TOKEN)
        .args(args)
        .output()
        .expect("running relayctl");
    assert!(
        out.status.success(),
        "relayctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn main() {
    let n: usize = std::env::var("RELAYCTL_BENCH_FLAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let ld = fake_ld::FakeLd::start();
    let variations = [json!("treatment"), json!("control")];
    let mut flags = serde_json::Map::new();
    let mut overrides = String::new();
    for i in 0..n {
        let key = format!("flag-{i:04}");
        flags.insert(
            key.clone(),
            json!({"key": key, "on": true, "prerequisites": [], "targets": [], "contextTargets": [], "rules": [],
                   "fallthrough": {"variation": 0}, "offVariation": 1, "variations": variations, "salt": "s",
                   "trackEvents": false, "trackEventsFallthrough": false, "debugEventsUntilDate": Value::Null,
                   "version": 10, "deleted": false}),
        );
        ld.add_flag("default", &key, &variations, "production", true, 1, 0, 10);
        overrides += &format!("{key} = {{ on = false, reason = \"bench\" }}\n");
    }
    std::fs::create_dir_all(dir.path().join("flags")).unwrap();
    std::fs::write(
        dir.path().join("flags/default-production.json"),
        json!({"flags": flags, "segments": {}}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("overrides.toml"),
        format!(
            "[[store]]\ntype = \"file\"\npath = \"flags/{{project}}-{{environment}}.json\"\n\n\
             [launchdarkly]\nbase_url = \"{}\"\n\n[overrides.default.production]\n{overrides}",
            ld.url
        ),
    )
    .unwrap();

    let started = Instant::now();
    relayctl(dir.path(), &["-q", "apply", "--auto-approve"]);
    eprintln!(
        "setup: apply of {n} flags took {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let out = relayctl(dir.path(), &["-v", "sync"]);
    let took = started.elapsed();
    for line in String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(" ms."))
    {
        eprintln!("  {line}");
    }
    let applied = ld.applied().len();
    let mut per_flag = std::collections::BTreeMap::<String, Vec<String>>::new();
    for r in ld.requests() {
        per_flag
            .entry(r.flag())
            .or_default()
            .push(format!("{} {:?}", r.method, r.status));
    }
    for (flag, reqs) in per_flag.iter().filter(|(_, r)| r.len() != 2) {
        eprintln!("  retried: {flag}: {reqs:?}");
    }
    assert_eq!(applied, n, "every flag patched once");
    println!(
        "sync: {n} pending commits over {n} flags -> {} requests ({applied} PATCH) in {:.2} s wall ({:.0} flags/s)",
        ld.requests().len(),
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );

    let started = Instant::now();
    let out = relayctl(dir.path(), &["-v", "sync"]);
    for line in String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(" ms."))
    {
        eprintln!("  {line}");
    }
    println!(
        "re-run with nothing pending: {:.2} s",
        started.elapsed().as_secs_f64()
    );
}
