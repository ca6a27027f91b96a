//! A team incident (issue 21): a bare repository as the journal's remote and two workspaces with
//! their own clones ("two machines") writing the same real Redis; the fake LaunchDarkly for sync.
//! Concurrent applies (one waits, then plans on the other's result), a remote that goes away and
//! comes back, two machines cut off and combined, a lease holder killed with SIGKILL, hostile text
//! and secrets.

use crate::support::fake_ld::FakeLd;
use crate::support::fixtures::{bool_flag, redis_overrides, PREFIX};
use crate::support::{git, wait_for, Fault, Proxy, Redis, Workspace};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Redis holding the flags `f1`..=`fN`, on, at version 41.
fn seeded(n: usize) -> Redis {
    let redis = Redis::start();
    let flags: Vec<_> = (1..=n).map(|i| bool_flag(&format!("f{i}"), 41)).collect();
    redis.seed(PREFIX, &flags);
    redis
}

/// A bare repository, the team's remote.
fn bare() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "--bare", "-q"]);
    dir
}

/// An overrides file on `url` (Redis) declaring `flags`, with `remote` as the journal's remote
/// and `extra` (more TOML) at the end.
fn team_overrides(url: &str, flags: &str, remote: &str, extra: &str) -> String {
    let stores = format!(
        "[[store]]\nname = \"relay-redis\"\ntype = \"redis\"\nurl = \"{url}\"\nprefix = \"ld:{{project}}:{{environment}}\"\n\n"
    );
    let remote = toml::Value::String(remote.into());
    format!("{stores}[journal]\nremote = {remote}\n{extra}\n[overrides.default.production]\n{flags}")
}

fn machine(url: &str, flags: &str, remote: &std::path::Path) -> Workspace {
    Workspace::new(&team_overrides(url, flags, &remote.display().to_string(), ""))
}

/// The flag commits' subjects on the remote's branch, oldest first.
fn remote_subjects(remote: &std::path::Path) -> Vec<String> {
    git(
        remote,
        &["log", "--all", "--reverse", "--format=%s", "--no-merges"],
    )
    .lines()
    .filter(|s| {
        !s.starts_with("Start the relayctl journal") && !s.starts_with("Notes") && !s.starts_with("Combine")
    })
    .map(str::to_owned)
    .collect()
}

fn fsck(dir: &std::path::Path) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["fsck", "--full", "--strict"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git fsck {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn concurrent_applies_from_two_machines_wait_for_each_other_and_write_each_flag_once() {
    let redis = Redis::start();
    let flags: Vec<_> = (1..=4).map(|i| bool_flag(&format!("f{i}"), 41)).collect();
    redis.seed(PREFIX, &flags);
    let remote = bare();
    // Machine A reaches Redis through a proxy that holds its first write 2 s: B starts then.
    let b = machine(
        &redis.url(),
        "f2 = false\nf3 = false\nf4 = false\n",
        remote.path(),
    );
    let started: Arc<Mutex<Option<std::process::Child>>> = Arc::default();
    let mut b_cmd = Some(b.cmd(["apply", "--auto-approve"]).std());
    let slot = started.clone();
    let proxy = Proxy::start(redis.port).before("EVAL", 1, move || {
        if let Some(mut cmd) = b_cmd.take() {
            let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            *slot.lock().unwrap() = Some(child);
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    let a = machine(
        &proxy.url(),
        "f1 = false\nf2 = false\nf3 = false\n",
        remote.path(),
    );
    let run_a = a.run(["apply", "--auto-approve"]);
    assert_eq!(run_a.code, 0, "{}", run_a.all());
    let child = started
        .lock()
        .unwrap()
        .take()
        .expect("B was started during A's write");
    let run_b = crate::support::Run::from(child.wait_with_output().unwrap());
    assert_eq!(run_b.code, 0, "{}", run_b.all());
    // B waited for A's lease, naming it, then planned on what A wrote: only f4 was left.
    assert!(
        run_b
            .stderr
            .contains("Waiting up to 10s (--lock-timeout) for the team lock"),
        "{}",
        run_b.stderr
    );
    assert!(
        run_b.stderr.contains("running `relayctl apply` since"),
        "{}",
        run_b.stderr
    );
    assert!(
        run_b.stdout.contains("default/production/f4") && !run_b.stdout.contains("journal")
            || run_b.stdout.matches("journal ").count() == 1,
        "{}",
        run_b.stdout
    );
    for i in 1..=4 {
        let stored = redis.flag(PREFIX, &format!("f{i}")).unwrap();
        assert_eq!(stored["version"], 42, "f{i} written exactly once: {stored}");
    }
    let mut subjects = remote_subjects(remote.path());
    subjects.sort();
    assert_eq!(
        subjects.len(),
        4,
        "every commit on the remote, once: {subjects:?}"
    );
    for dir in [remote.path().to_owned(), a.path("journal"), b.path("journal")] {
        fsck(&dir);
    }
    assert!(run_b.stderr.contains("Pushed 1 commit(s)"), "{}", run_b.stderr);
    // B's log shows A's commits (pushed) with their author.
    let log = b.run(["log"]);
    assert_eq!(log.stdout.lines().count(), 4, "{}", log.all());
    assert!(
        log.stdout.lines().all(|l| l.ends_with("[pushed]")),
        "{}",
        log.stdout
    );
}

#[test]
fn a_remote_gone_mid_incident_gets_every_commit_once_when_it_is_back() {
    let redis = seeded(3);
    let remote = bare();
    let away = remote.path().with_extension("away");
    let w = machine(&redis.url(), "f1 = false\n", remote.path());
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    std::fs::rename(remote.path(), &away).unwrap();
    w.write(
        "overrides.toml",
        &team_overrides(
            &redis.url(),
            "f1 = false\nf2 = false\n",
            &remote.path().display().to_string(),
            "",
        ),
    );
    let cut = w.run(["apply", "--auto-approve"]);
    assert_eq!(
        cut.code,
        0,
        "an unreachable remote never stops an apply: {}",
        cut.all()
    );
    assert!(cut.stderr.contains("cannot be reached"), "{}", cut.stderr);
    assert!(cut.stderr.contains("Not pushed to"), "{}", cut.stderr);
    let log = w.run(["log"]);
    assert!(
        log.stdout.lines().next().unwrap().ends_with("[not pushed]"),
        "{}",
        log.all()
    );
    // status names each flag's latest commit, its author, and whether the remote has it.
    let status = w.run(["status"]);
    let line = |flag: &str| {
        status
            .stdout
            .lines()
            .find(|l| l.contains(&format!("default/production/{flag} ")))
            .unwrap_or_else(|| panic!("{flag}: {}", status.all()))
            .to_owned()
    };
    assert!(
        line("f1").ends_with("by Test Operator <operator@example.com>, pushed"),
        "{}",
        status.all()
    );
    assert!(
        line("f2").ends_with("by Test Operator <operator@example.com>, not pushed"),
        "{}",
        status.all()
    );
    std::fs::rename(&away, remote.path()).unwrap();
    w.write(
        "overrides.toml",
        &team_overrides(
            &redis.url(),
            "f1 = false\nf2 = false\nf3 = false\n",
            &remote.path().display().to_string(),
            "",
        ),
    );
    let back = w.run(["apply", "--auto-approve"]);
    assert_eq!(back.code, 0, "{}", back.all());
    assert!(back.stderr.contains("Pushed 2 commit(s)"), "{}", back.stderr);
    assert_eq!(
        remote_subjects(remote.path()),
        [
            "default/production/f1: turn off",
            "default/production/f2: turn off",
            "default/production/f3: turn off"
        ]
    );
    fsck(remote.path());
    let log = w.run(["log"]);
    assert!(
        log.stdout.lines().all(|l| l.ends_with("[pushed]")),
        "{}",
        log.stdout
    );
}

#[test]
fn two_machines_cut_off_are_combined_and_each_flag_synced_once_by_store_version() {
    let redis = seeded(3);
    let ld = FakeLd::start();
    for i in 1..=3 {
        ld.add_flag(
            "default",
            &format!("f{i}"),
            &[true.into(), false.into()],
            "production",
            true,
            1,
            0,
            41,
        );
    }
    let remote = bare();
    let away = remote.path().with_extension("away");
    let extra = format!("[launchdarkly]\nbase_url = \"{}\"\n", ld.url);
    let at = remote.path().display().to_string();
    let a = Workspace::new(&team_overrides(&redis.url(), "f1 = false\n", &at, &extra));
    let b = Workspace::new(&team_overrides(&redis.url(), "f1 = false\n", &at, &extra));
    assert_eq!(a.run(["apply", "--auto-approve"]).code, 0);
    assert_eq!(b.run(["log"]).code, 0, "B makes its journal from the remote");
    std::fs::rename(remote.path(), &away).unwrap();
    // Cut off: B turns f2 off, then A turns it on again (planned on B's write), and f3 off; B's
    // clock runs ahead, so by time B's commit looks newest.
    b.write(
        "overrides.toml",
        &team_overrides(&redis.url(), "f1 = false\nf2 = false\n", &at, &extra),
    );
    assert_eq!(
        b.cmd(["apply", "--auto-approve"])
            .env("GIT_COMMITTER_DATE", "2030-01-01T00:00:00Z")
            .run()
            .code,
        0
    );
    a.write(
        "overrides.toml",
        &team_overrides(&redis.url(), "f1 = false\nf2 = true\nf3 = false\n", &at, &extra),
    );
    let cut = a.run(["apply", "--auto-approve"]);
    assert_eq!(cut.code, 0, "{}", cut.all());
    std::fs::rename(&away, remote.path()).unwrap();
    let sync_a = a.cmd(["sync"]).token().run();
    assert_eq!(sync_a.code, 0, "{}", sync_a.all());
    let sync_b = b.cmd(["sync"]).token().run();
    assert_eq!(sync_b.code, 0, "{}", sync_b.all());
    let patches = ld.applied();
    let mut flags: Vec<String> = patches.iter().map(|p| p.flag()).collect();
    flags.sort();
    // f2 ends on (A's write, the later by store version), which LaunchDarkly had all along: no
    // PATCH, and B's older write of it (off) is superseded, never replayed.
    assert_eq!(
        flags,
        ["f1", "f3"],
        "each flag synced once: {}{}",
        sync_a.all(),
        sync_b.all()
    );
    assert!(
        sync_b.stderr.contains("superseded by later writes"),
        "{}",
        sync_b.stderr
    );
    assert_eq!(
        ld.env("default", "f2", "production")["on"],
        true,
        "the later write by store version wins: {}{}{}",
        sync_a.all(),
        sync_b.all(),
        git(&a.path("journal"), &["log", "--format=%h %s %ct", "--all"])
    );
    assert_eq!(ld.env("default", "f3", "production")["on"], false);
    // A teammate's sync is seen as synced from the other machine.
    let log = b.run(["log", "--pending"]);
    assert!(log.stdout.is_empty(), "{}", log.all());
    let log = b.run(["log"]);
    assert!(
        log.stdout.lines().all(|l| l.contains("[synced ")),
        "{}",
        log.stdout
    );
    for dir in [remote.path().to_owned(), a.path("journal"), b.path("journal")] {
        fsck(&dir);
    }
    let subjects = remote_subjects(remote.path());
    assert_eq!(subjects.len(), 4, "{subjects:?}");
}

#[test]
fn a_killed_lease_holder_is_named_then_unlocked_or_expires() {
    let redis = seeded(2);
    let holding = |proxy: &Proxy, flag: &str| {
        let w = Workspace::new(&redis_overrides_url(&proxy.url(), &format!("{flag} = false\n")));
        let child = w
            .cmd(["apply", "--auto-approve"])
            .env("RELAYCTL_AUTHOR", "Eve \u{1b}[2J <eve@example.com>")
            .env("RELAYCTL_LEASE_TTL", "3")
            .spawn(Stdio::null(), Stdio::null());
        wait_for("the lease", Duration::from_secs(20), || {
            redis.conn().exists::<_, bool>("relayctl-team-lease").unwrap()
        });
        (w, child)
    };
    // Its write is swallowed: the holder sits in its store write, holding the lease.
    let proxy = Proxy::start(redis.port).fault("EVAL", 1, Fault::Drop);
    let (_a, mut child) = holding(&proxy, "f1");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let b = Workspace::new(&redis_overrides(&[&redis], "f2 = false\n"));
    let busy = b.run(["apply", "--auto-approve", "--lock-timeout", "1s"]);
    assert_eq!(busy.code, 1, "{}", busy.all());
    let e = &busy.stderr;
    assert!(
        e.contains("Waiting up to 1s (--lock-timeout) for the team lock"),
        "{e}"
    );
    for part in [
        "another operator is applying to",
        "held by Eve ?[2J <eve@example.com> on host",
        "running `relayctl apply` since",
        "relayctl unlock ",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
    assert!(!e.contains('\u{1b}'), "{e:?}");
    let id = e
        .split("relayctl unlock ")
        .nth(1)
        .unwrap()
        .split('`')
        .next()
        .unwrap()
        .to_owned();
    let unlocked = b.run(["unlock", &id]);
    assert_eq!(unlocked.code, 0, "{}", unlocked.all());
    assert!(
        unlocked
            .stderr
            .contains(&format!("warning: broke the team lock on {}", redis.url())),
        "{}",
        unlocked.stderr
    );
    assert_eq!(
        b.run(["unlock", &id]).code,
        1,
        "a lease that ended cannot be broken twice"
    );
    assert_eq!(b.run(["apply", "--auto-approve"]).code, 0);
    // Killed again: this time the lease expires by itself (3 s) while the next apply waits.
    let proxy = Proxy::start(redis.port).fault("EVAL", 1, Fault::Drop);
    let (_c, mut child) = holding(&proxy, "f1");
    child.kill().unwrap();
    child.wait().unwrap();
    b.write(
        "overrides.toml",
        &redis_overrides(&[&redis], "f1 = false\nf2 = false\n"),
    );
    let later = b.run(["apply", "--auto-approve", "--lock-timeout", "20s"]);
    assert_eq!(later.code, 0, "{}", later.all());
    assert!(later.stderr.contains("Waiting up to 20s"), "{}", later.stderr);
}

fn redis_overrides_url(url: &str, flags: &str) -> String {
    format!(
        "[[store]]\nname = \"relay-redis\"\ntype = \"redis\"\nurl = \"{url}\"\nprefix = \"ld:{{project}}:{{environment}}\"\n\n[overrides.default.production]\n{flags}"
    )
}

#[test]
fn hostile_remotes_are_refused_and_a_token_in_the_remote_url_is_never_shown_or_kept() {
    let redis = seeded(1);
    for hostile in [
        "--upload-pack=touch pwned",
        "ext::sh -c touch% pwned",
        "https://h/j\u{1b}[31m",
    ] {
        let w = Workspace::new(&team_overrides(&redis.url(), "f1 = false\n", hostile, ""));
        let run = w.run(["plan"]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(run.stderr.contains("journal.remote"), "{}", run.stderr);
        assert!(!w.path("pwned").exists() && !run.all().contains('\u{1b}'));
    }
    let port = crate::support::free_port();
    let secret = "ghp_S3CRETt0ken";
    let url = format!("https://x-access-token:{secret}@127.0.0.1:{port}/acme/journal.git");
    for cli in ["false", "true"] {
        let w = Workspace::new(&team_overrides(
            &redis.url(),
            "f1 = false\n",
            &url,
            &format!("git_fetch_with_cli = {cli}\n"),
        ));
        redis.seed(PREFIX, &[bool_flag("f1", 41)]);
        let runs = [
            w.run(["apply", "--auto-approve"]),
            w.run(["log"]),
            w.run(["plan"]),
            w.cmd(["sync", "--dry-run"]).run(),
        ];
        for run in &runs {
            assert!(!run.all().contains(secret), "{}", run.all());
        }
        assert!(
            runs[0].stderr.contains("https://***@127.0.0.1"),
            "{}",
            runs[0].stderr
        );
        assert_eq!(runs[0].code, 0, "{}", runs[0].all());
        let found = Command::new("grep")
            .args(["-r", "-a", "-l", secret])
            .arg(w.path("journal"))
            .output()
            .unwrap();
        assert!(
            found.stdout.is_empty(),
            "the token is in {}",
            String::from_utf8_lossy(&found.stdout)
        );
    }
}

use redis::Commands;

#[test]
fn a_rerun_on_the_journal_of_a_killed_apply_takes_its_lease_over_and_leaves_none() {
    let redis = seeded(2);
    // The first write is swallowed: the apply sits in it, holding the lease, and is killed.
    let proxy = Proxy::start(redis.port).fault("EVAL", 1, Fault::Drop);
    let w = Workspace::new(&redis_overrides_url(&proxy.url(), "f1 = false\nf2 = false\n"));
    let mut child = w
        .cmd(["apply", "--auto-approve"])
        .env("RELAYCTL_LEASE_TTL", "60")
        .spawn(Stdio::null(), Stdio::null());
    wait_for("the lease", Duration::from_secs(20), || {
        redis.conn().exists::<_, bool>("relayctl-team-lease").unwrap()
    });
    child.kill().unwrap(); // SIGKILL: the lease lives on for 60 s
    child.wait().unwrap();
    // Its journal's lock ended with it, so the next apply of that journal knows the lease is
    // the dead run's: it takes it over at once instead of waiting a minute.
    let again = w.run(["apply", "--auto-approve", "--lock-timeout", "1s"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stderr.contains("Taking over lease "), "{}", again.stderr);
    assert!(!again.stderr.contains("Waiting up to"), "{}", again.stderr);
    assert_eq!(w.journal_subjects().len(), 2, "{}", again.all());
    assert!(
        !redis.conn().exists::<_, bool>("relayctl-team-lease").unwrap(),
        "a finished apply leaves no lease"
    );
    // Another journal (another machine) never takes a lease over: it waits, then names it
    // (a_killed_lease_holder_is_named_then_unlocked_or_expires).
}

/// `git daemon` serving `root` (fetch and push) on a free loopback port; killed when dropped.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(root: &std::path::Path) -> GitDaemon {
        let port = crate::support::free_port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon (part of git) must be installed: apt-get install git");
        wait_for("git daemon", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_network_remote_is_fetched_and_pushed_by_the_git_program() {
    let redis = seeded(2);
    let root = tempfile::tempdir().unwrap();
    git(root.path(), &["init", "--bare", "-q", "journal.git"]);
    let daemon = GitDaemon::start(root.path());
    let url = format!("git://127.0.0.1:{}/journal.git", daemon.port);
    let a = Workspace::new(&team_overrides(&redis.url(), "f1 = false\n", &url, ""));
    let b = Workspace::new(&team_overrides(
        &redis.url(),
        "f1 = false\nf2 = false\n",
        &url,
        "",
    ));
    let run = a.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains(&format!("Pushed 1 commit(s) to {url}")),
        "{}",
        run.stderr
    );
    let run = b.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("Made the journal journal from {url}'s.")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("Pushed 1 commit(s) to {url}")),
        "{}",
        run.stderr
    );
    assert_eq!(
        remote_subjects(&root.path().join("journal.git")),
        [
            "default/production/f1: turn off",
            "default/production/f2: turn off"
        ]
    );
    let log = a.run(["log"]);
    assert!(
        log.stderr
            .contains("Teammates pushed 1 commit(s) by Test Operator"),
        "{}",
        log.stderr
    );
    assert_eq!(log.stdout.lines().count(), 2, "{}", log.all());
    assert!(
        log.stdout.lines().all(|l| l.ends_with("[pushed]")),
        "{}",
        log.stdout
    );
    fsck(&root.path().join("journal.git"));
}

#[test]
fn a_store_whose_acl_refuses_the_lease_is_still_written_and_says_what_to_allow() {
    let redis = seeded(1);
    // Relay's own user: its keys only.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("relay")
        .arg("on")
        .arg(">relay-pw")
        .arg("~ld:*")
        .arg("+@all")
        .exec(&mut redis.conn())
        .unwrap();
    let url = format!("redis://relay:relay-pw@127.0.0.1:{}", redis.port);
    let w = Workspace::new(&redis_overrides_url(&url, "f1 = false\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("no team lock taken on")
            && run.stderr.contains("the store refused it: allow relayctl's user the lease (Redis ACL: the key relayctl-team-lease"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("relay-pw"), "{}", run.all());
    assert_eq!(w.journal_subjects(), ["default/production/f1: turn off"]);
}
