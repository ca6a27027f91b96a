//! Interrupting a long apply: it stops between two flags, every flag it wrote is journaled, and a
//! re-run finishes the rest.

use crate::support::fixtures::bool_flag;
use crate::support::{output, wait_for, Redis, Workspace};
use std::process::Stdio;
use std::time::Duration;

const FLAGS: usize = 500;

fn seed(redis: &Redis) {
    let mut pipe = redis::pipe();
    for i in 0..FLAGS {
        let f = bool_flag(&format!("flag-{i:04}"), 7);
        pipe.cmd("HSET")
            .arg("launchdarkly:features")
            .arg(format!("flag-{i:04}"))
            .arg(f.to_string())
            .ignore();
    }
    pipe.exec(&mut redis.conn()).unwrap();
}

fn off_in_store(redis: &Redis) -> usize {
    let all = redis.hash("launchdarkly:features");
    all.values().filter(|v| v.contains("\"on\":false")).count()
}

#[test]
fn ctrl_c_stops_between_flags_and_a_rerun_finishes() {
    let redis = Redis::start();
    seed(&redis);
    let flags: String = (0..FLAGS)
        .map(|i| format!("flag-{i:04} = {{ on = false, reason = \"INC-1\" }}\n"))
        .collect();
    let w = Workspace::new(&format!(
        "[[store]]\ntype = \"redis\"\nurl = \"{}\"\n\n[overrides.default.production]\n{flags}",
        redis.url()
    ));
    let child = w
        .cmd(["apply", "--auto-approve"])
        .spawn(Stdio::null(), Stdio::piped());
    // Interrupt once the first flags are written.
    let wal = w.path("journal/.git/relayctl-wal.jsonl");
    wait_for("apply to start writing", Duration::from_secs(30), || {
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0)
    });
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: interrupted after"), "{stderr}");
    assert!(
        stderr.contains("Run `relayctl plan` to see what is left"),
        "{stderr}"
    );

    // Exactly the flags written are journaled: one commit each, plus the initial commit.
    let written = off_in_store(&redis);
    assert!(
        written > 0 && written < FLAGS,
        "interrupted too late to prove anything: {written} of {FLAGS} written"
    );
    assert_eq!(w.journal_commits(), written + 1);

    // The plan shows exactly the rest, and applying it converges.
    let (stdout, _) = output(&w.cmd(["plan"]).assert().success());
    assert!(
        stdout.contains(&format!(
            "Plan: {} to change, {written} unchanged.",
            FLAGS - written
        )),
        "{stdout}"
    );
    w.cmd(["apply", "--auto-approve"]).assert().success();
    assert_eq!(off_in_store(&redis), FLAGS);
    assert_eq!(w.journal_commits(), FLAGS + 1);
}
