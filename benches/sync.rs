//! Benchmark (not a test): `relayctl sync` of 1,000 pending journal commits over 1,000 flags
//! against the in-process fake LaunchDarkly. Target: under 5 s wall on the 2-core dev machine.
//! Measured 2026-11-22 (2 shared cores, load average ~5): 3.2 s wall for 2,000 requests and
//! 1,000 notes; a re-run with nothing pending 0.3 s.
//!
//! Run: `cargo bench --bench sync` (prints the apply time used to make the journal, and the
//! sync time). `RELAYCTL_BENCH_FLAGS=N` changes the number of flags.

// A benchmark prints its measurements; clippy.toml's ban on print macros is for relayctl.
#![allow(clippy::disallowed_macros)]

// The tests' support code: the same workspace, relayctl builder and fake LaunchDarkly. The bench
// uses a small part of it.
#[allow(unused_imports)]
#[path = "../tests/cli/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::time::Instant;
use support::fake_ld::FakeLd;
use support::fixtures::{file_store_and_ld, flag_file, overrides};
use support::{Run, Workspace};

/// Runs `relayctl args` with the fake's token; it must succeed.
fn relayctl(w: &Workspace, args: &[&str]) -> Run {
    let run = w.cmd(args).token().run();
    assert_eq!(run.code, 0, "relayctl {args:?} failed: {}", run.stderr);
    run
}

fn main() {
    let n: usize = std::env::var("RELAYCTL_BENCH_FLAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let w = Workspace::new("");
    let ld = FakeLd::start();
    let variations = [json!("treatment"), json!("control")];
    let mut flags = Vec::new();
    let mut declared = String::new();
    for i in 0..n {
        let key = format!("flag-{i:04}");
        flags.push(
            json!({"key": key, "on": true, "prerequisites": [], "targets": [], "contextTargets": [], "rules": [],
                   "fallthrough": {"variation": 0}, "offVariation": 1, "variations": variations, "salt": "s",
                   "trackEvents": false, "trackEventsFallthrough": false, "debugEventsUntilDate": Value::Null,
                   "version": 10, "deleted": false}),
        );
        ld.add_flag("default", &key, &variations, "production", true, 1, 0, 10);
        declared += &format!("{key} = {{ on = false, reason = \"bench\" }}\n");
    }
    w.write("flags/default-production.json", &flag_file(&flags));
    w.write(
        "overrides.toml",
        &overrides(&file_store_and_ld(&ld.url), &declared),
    );

    let started = Instant::now();
    relayctl(&w, &["-q", "apply", "--auto-approve"]);
    eprintln!(
        "setup: apply of {n} flags took {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let out = relayctl(&w, &["-v", "sync"]);
    let took = started.elapsed();
    for line in out.stderr.lines().filter(|l| l.contains(" ms.")) {
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
    let out = relayctl(&w, &["-v", "sync"]);
    for line in out.stderr.lines().filter(|l| l.contains(" ms.")) {
        eprintln!("  {line}");
    }
    println!(
        "re-run with nothing pending: {:.2} s",
        started.elapsed().as_secs_f64()
    );
}
