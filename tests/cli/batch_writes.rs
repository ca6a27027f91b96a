//! apply writes flags in batches (one read of the batch, then a compare-and-set per flag, all in
//! flight at once): what happens to one flag of a batch happens to it alone. A concurrent writer
//! between the read and the write makes that flag retry and is never lost; a stale flag fails
//! alone; a kill in the middle of a batch loses nothing and doubles nothing. The partial failure
//! of a batch (a server that stops answering mid-batch) is in `store_faults`.

use crate::support::fixtures::{all_off, bool_flag, overrides, redis_store, PREFIX};
use crate::support::{git, set_raw, signal_pid, wait_for, Proxy, Redis, Workspace};
use serde_json::json;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Redis holding `names` (boolean flags, on, v10), a proxy in front of it set up by `setup`,
/// and a workspace declaring every flag off through the proxy.
fn batch(names: &[String], setup: impl FnOnce(Proxy, String) -> Proxy) -> (Redis, Proxy, Workspace) {
    let r = Redis::start();
    let mut pipe = redis::pipe();
    for n in names {
        pipe.cmd("HSET")
            .arg(format!("{PREFIX}:features"))
            .arg(n)
            .arg(bool_flag(n, 10).to_string())
            .ignore();
    }
    pipe.exec(&mut r.conn()).unwrap();
    let proxy = setup(Proxy::start(r.port), r.url());
    let w = Workspace::new(&overrides(&redis_store(&[proxy.url()]), &all_off(names)));
    (r, proxy, w)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("flag-{i:04}")).collect()
}

fn turned_off(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| format!("default/production/{n}: turn off"))
        .collect()
}

#[test]
fn a_flag_rewritten_between_the_read_and_the_write_is_retried_and_their_bytes_kept() {
    // Relay rewrites flag-0002 at the same version (a property relayctl does not manage added)
    // after relayctl read the batch and before its first write reaches Redis.
    let names = names(5);
    let mut theirs = bool_flag("flag-0002", 10);
    theirs["_relay"] = json!("kept");
    let write = theirs.to_string();
    let (r, proxy, w) = batch(&names, |p, url| {
        p.before("EVAL", 1, move || set_raw(&url, PREFIX, "flag-0002", &write))
    });
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        proxy.count("EVAL"),
        6,
        "one write per flag, and one more for the flag that moved"
    );
    let stored = r.flag(PREFIX, "flag-0002").unwrap();
    assert_eq!(
        stored["_relay"],
        json!("kept"),
        "their write is not lost: {stored}"
    );
    assert_eq!(
        (stored["on"].clone(), stored["version"].clone()),
        (json!(false), json!(11))
    );
    for n in &names {
        assert_eq!(r.flag(PREFIX, n).unwrap()["version"], json!(11), "{n}");
    }
    assert_eq!(w.journal_subjects(), turned_off(&names));
}

#[test]
fn a_stale_flag_inside_a_batch_fails_alone() {
    // LaunchDarkly's own update of flag-0002 (v11) lands between relayctl's read and its writes.
    let names = names(5);
    let mut theirs = bool_flag("flag-0002", 11);
    theirs["rules"] = json!([]);
    let write = theirs.to_string();
    let (r, _proxy, w) = batch(&names, |p, url| {
        p.before("EVAL", 1, move || set_raw(&url, PREFIX, "flag-0002", &write))
    });
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("default/production/flag-0002 NOT written")
            && run
                .stderr
                .contains("stale plan: the store holds v11 but the plan was made against v10"),
        "{}",
        run.stderr
    );
    assert_eq!(
        r.flag(PREFIX, "flag-0002").unwrap(),
        theirs,
        "their write survives"
    );
    let others: Vec<String> = names.iter().filter(|n| *n != "flag-0002").cloned().collect();
    for n in &others {
        assert_eq!(r.flag(PREFIX, n).unwrap()["version"], json!(11), "{n}");
    }
    assert_eq!(w.journal_subjects(), turned_off(&others));
}

#[test]
fn a_kill_in_the_middle_of_a_batch_loses_nothing_and_doubles_nothing() {
    // relayctl is killed (SIGKILL) as the 400th write (the second batch) reaches the proxy: part
    // of that batch is in Redis, the rest not, and nothing of it is journaled yet.
    let names = names(1000);
    let pid: Arc<Mutex<Option<u32>>> = Arc::default();
    let victim = pid.clone();
    let (r, _proxy, w) = batch(&names, |p, _| {
        p.before("EVAL", 400, move || {
            wait_for("relayctl to be started", Duration::from_secs(10), || {
                victim.lock().unwrap().is_some()
            });
            signal_pid(victim.lock().unwrap().unwrap(), "KILL");
        })
    });
    let mut child = w
        .cmd(["apply", "--auto-approve"])
        .spawn(Stdio::null(), Stdio::null());
    *pid.lock().unwrap() = Some(child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal: {status:?}");
    let landed = names
        .iter()
        .filter(|n| r.flag(PREFIX, n).unwrap()["version"] == json!(11))
        .count();
    assert!(
        (256..1000).contains(&landed),
        "killed in the second batch: {landed} of 1000 written"
    );

    // The next apply records exactly what landed, then writes the rest: every flag once.
    let again = w.run(["apply", "--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.all());
    for n in &names {
        assert_eq!(
            r.flag(PREFIX, n).unwrap()["version"],
            json!(11),
            "{n} written once"
        );
    }
    let mut subjects = w.journal_subjects();
    subjects.sort();
    assert_eq!(
        subjects,
        turned_off(&names),
        "one commit per flag: none lost, none twice"
    );
    assert!(w.run(["log"]).stderr.is_empty(), "nothing left unrecorded");
    // The packfiles and indexes relayctl wrote itself, across the kill: git reads every object
    // back and finds each id matches what it holds.
    git(
        &w.path("journal"),
        &["fsck", "--full", "--strict", "--no-progress"],
    );
}
