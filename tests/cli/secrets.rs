//! Secrets in the places people put them by mistake: a `.env` line that does not parse, a Redis
//! password holding URL delimiters, credentials in REDIS_HOSTS. Whatever fails, the secret is
//! never printed. And a generated corpus of Redis passwords (every printable ASCII character,
//! spaces, quotes, percent-encodings, non-ASCII) through every output and the journal (issue 19,
//! item 8).

use crate::support::fixtures::{bool_flag, overrides, redis_store, toml_string};
use crate::support::{free_port, git, Redis, Replicated, Workspace};
use redis::IntoConnectionInfo;

/// A file store the commands can load without a server.
fn file_store() -> String {
    overrides(
        "[[store]]\ntype = \"file\"\npath = \"flags.json\"\n\n",
        "new-checkout = false\n",
    )
}

#[test]
fn a_dot_env_line_that_does_not_parse_is_named_but_never_shown() {
    for line in [
        "LD_API_KEY=\"api-SECRET-unterminated",
        "LD_API_KEY=tok SECRET-trailing",
        "export LD_API_KEY SECRET-tok",
    ] {
        let w = Workspace::new(&file_store());
        w.write(
            ".env",
            &format!("# relayctl\nLD_BASE_URL=http://127.0.0.1:1\n{line}\n"),
        );
        for args in [&["plan"][..], &["sync"], &["log"]] {
            let run = w.run(args);
            assert_eq!(run.code, 1, "{line} {args:?}: {}", run.all());
            assert!(
                !run.all().contains("SECRET"),
                "{line} {args:?}: leaked: {}",
                run.all()
            );
            assert!(
                run.stderr.contains(
                    ".env in the working directory cannot be read: its line 3 (setting LD_API_KEY)"
                ),
                "{line} {args:?}: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn a_password_holding_url_delimiters_is_never_shown_even_in_part() {
    let port = free_port();
    for (password, fragment) in [
        ("hun#ter2Q", "ter2Q"),
        ("p@ss/word", "ss/word"),
        ("a?b=c9", "b=c9"),
    ] {
        let url = format!("redis://:{password}@127.0.0.1:{port}");
        // A valid file whose URL cannot be used as written, and a TOML error on the URL's line.
        let valid = overrides(&redis_store(std::slice::from_ref(&url)), "new-checkout = false\n");
        let broken = valid.replace("\"]", "\", 5]");
        for (name, text) in [("valid", valid), ("TOML error", broken)] {
            let w = Workspace::new(&text);
            let run = w.run(["plan"]);
            assert_eq!(run.code, 1, "{password} {name}: {}", run.all());
            assert!(
                !run.all().contains(fragment) && !run.all().contains(password),
                "{password} {name}: leaked: {}",
                run.all()
            );
            assert!(
                run.stderr.contains("***@127.0.0.1"),
                "{password} {name}: {}",
                run.stderr
            );
            if name == "valid" {
                assert!(
                    run.stderr.contains("percent-encode"),
                    "{password}: {}",
                    run.stderr
                );
            }
        }
    }
}

#[test]
fn credentials_in_redis_hosts_are_refused_without_echoing_them() {
    let w = Workspace::new(&overrides(
        "[[store]]\ntype = \"redis\"\n\n",
        "new-checkout = false\n",
    ));
    for (hosts, says) in [
        (
            ":hunter2@127.0.0.1:1",
            "REDIS_HOSTS entry 1 of 1 (redis://:***@127.0.0.1:1) holds credentials",
        ),
        (
            "user:hunter2@127.0.0.1",
            "REDIS_HOSTS entry 1 of 1 (redis://user:***@127.0.0.1) holds credentials",
        ),
        (
            "127.0.0.1:1,:hunter2@h:x",
            "REDIS_HOSTS entry 2 of 2 (redis://<unparseable URL>) holds credentials",
        ),
        // A password put where the port goes, or instead of a host.
        ("127.0.0.1:hunter2", "REDIS_HOSTS entry 1 of 1 is not host[:port]"),
        (
            "127.0.0.1:1, hunter2 x",
            "REDIS_HOSTS entry 2 of 2 is not host[:port]",
        ),
        (
            "127.0.0.1:6379/hunter2",
            "REDIS_HOSTS entry 1 of 1 is not host[:port]",
        ),
    ] {
        let run = w.cmd(["plan"]).env("REDIS_HOSTS", hosts).run();
        assert_eq!(run.code, 1, "{hosts}: {}", run.all());
        assert!(!run.all().contains("hunter2"), "{hosts}: leaked: {}", run.all());
        assert!(run.stderr.contains(says), "{hosts}: {}", run.stderr);
    }
}

/// Passwords that have leaked before and every printable ASCII character, each between markers:
/// `LEAK<n><characters><n>LEAK`, so that any part of one shown contains `LEAK`.
fn corpus() -> Vec<String> {
    let mut specials: Vec<String> = (' '..='~').map(String::from).collect();
    specials.extend(
        [
            " two words ",
            "\"q\"",
            "'s'",
            "`b`",
            "%41%",
            "%zz",
            "%2F",
            "é密码🔑",
            "a\tb",
        ]
        .map(str::to_owned),
    );
    specials
        .iter()
        .enumerate()
        .map(|(i, s)| format!("LEAK{i}{s}{i}LEAK"))
        .collect()
}

/// `s` with each byte but ASCII letters and digits as `%XX` (the `LEAK` markers stay as they are).
fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b.is_ascii_alphanumeric() {
            true => (b as char).to_string(),
            false => format!("%{b:02X}"),
        })
        .collect()
}

/// The corpus as store URLs on `port`, each with the password redis-rs (and so relayctl) sends
/// for it: written as it is where relayctl takes it so (no `/`, `?`, `#` or control character),
/// and percent-encoded. User `u<n>` or `e<n>` (encoded).
fn corpus_urls(port: u16) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (i, password) in corpus().iter().enumerate() {
        let mut forms = vec![(format!("e{i}"), percent_encoded(password))];
        if !password.contains(['/', '?', '#']) && !password.contains(char::is_control) {
            forms.push((format!("u{i}"), password.clone()));
        }
        for (user, written) in forms {
            let url = format!("redis://{user}:{written}@127.0.0.1:{port}/0");
            // Written as it is, `%41%99` decodes to bytes that are not UTF-8: not a password.
            let Ok(info) = url.as_str().into_connection_info() else {
                assert!(user.starts_with('u'), "{url}");
                continue;
            };
            let sent = info.redis.password.expect("a password");
            assert!(sent.contains("LEAK"), "{url} sends {sent:?}");
            out.push((user, url, sent));
        }
    }
    out
}

/// One `redis` store per URL, named after its user, prefix `p-<user>`.
fn corpus_stores(urls: &[(String, String, String)]) -> String {
    urls.iter()
        .map(|(user, url, _)| {
            format!(
                "[[store]]\nname = \"{user}\"\ntype = \"redis\"\nurl = {}\nprefix = \"p-{user}\"\n\n",
                toml_string(url)
            )
        })
        .collect()
}

/// Gives every user of `urls` its password on `server` (an ACL user each).
fn add_users(server: &Redis, urls: &[(String, String, String)]) {
    let mut c = server.conn();
    for (user, _, password) in urls {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .exec(&mut c)
            .unwrap();
    }
}

/// Asserts that `text` (what `what` showed or recorded) holds no part of any password.
fn assert_no_leak(what: &str, text: &str) {
    if let Some(at) = text.find("LEAK") {
        let from = text[..at].char_indices().rev().nth(80).map_or(0, |(i, _)| i);
        panic!(
            "{what} shows a password: ...{}...",
            &text[from..(at + 40).min(text.len())]
        );
    }
}

#[test]
fn no_password_of_a_generated_corpus_reaches_any_output_or_the_journal() {
    let server = Redis::start();
    let urls = corpus_urls(server.port);
    add_users(&server, &urls);
    for (user, _, _) in &urls {
        server.seed(&format!("p-{user}"), &[bool_flag("kill-switch", 41)]);
    }
    let flags = "kill-switch = { on = false, reason = \"INC-8\" }\n";
    let w = Workspace::new(&overrides(&corpus_stores(&urls), flags));

    let mut runs = Vec::new();
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["plan", "--out", "plan.json"],
        &["show", "default/production"],
        &["show", "default/production", "--json"],
        &["import", "default/production/kill-switch"],
        &["apply", "plan.json"],
        &["log"],
        &["show", "default/production/kill-switch"],
    ] {
        let run = w.run(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.all());
        assert_no_leak(&format!("{args:?}"), &run.all());
        runs.push(run);
    }
    // Every target is named, its password masked, the user kept.
    let plan = &runs[0].stdout;
    assert!(plan.contains("u40:***@127.0.0.1"), "{plan}");
    assert!(plan.contains("e95:***@127.0.0.1"), "{plan}");
    assert_eq!(plan.matches(":***@127.0.0.1").count(), urls.len(), "{plan}");
    assert_no_leak("plan.json", &w.read("plan.json"));
    for (user, _, _) in &urls {
        assert_eq!(
            server.flag(&format!("p-{user}"), "kill-switch").unwrap()["on"],
            false,
            "{user}"
        );
    }
    // The journal: messages and trailers, notes, state files, the write-ahead log.
    let journal = w.path("journal");
    let messages = git(&journal, &["log", "-p", "--format=%B"]);
    assert_no_leak("the journal's commits", &messages);
    let stores = git(&journal, &["log", "--format=%(trailers:key=Store,valueonly)"]);
    assert_eq!(stores.matches(":***@127.0.0.1").count(), urls.len(), "{stores}");
    assert_no_leak("the Store: trailers", &stores);
    for entry in walk(&journal.join(".git")) {
        if !entry.to_string_lossy().contains("/objects/") {
            assert_no_leak(
                &entry.display().to_string(),
                &String::from_utf8_lossy(&std::fs::read(&entry).unwrap()),
            );
        }
    }
}

#[test]
fn the_replica_error_shows_no_password_of_the_corpus() {
    let nodes = Replicated::start(1);
    let replica = &nodes.replicas[0];
    let urls = corpus_urls(replica.port);
    add_users(replica, &urls);
    let w = Workspace::new(&overrides(&corpus_stores(&urls), "kill-switch = false\n"));
    for args in [&["plan"][..], &["show", "default/production"]] {
        let run = w.run(args);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("read-only replica of the primary"),
            "{}",
            run.all()
        );
        assert_no_leak(&format!("{args:?} against a replica"), &run.all());
    }
}

/// A TOML error on the line of a URL (`cluster` given a string): the line and the parser's
/// message, which quotes the value, show no part of the password.
#[test]
fn a_toml_error_quoting_a_url_shows_no_password_of_the_corpus() {
    for url in corpus_urls(1).iter().map(|(_, url, _)| url).step_by(5) {
        for line in [
            format!("url = {}\ncluster = 5", toml_string(url)),
            format!("cluster = {}", toml_string(url)),
        ] {
            let w = Workspace::new(&overrides(
                &format!("[[store]]\ntype = \"redis\"\n{line}\n\n"),
                "f = false\n",
            ));
            let run = w.run(["plan"]);
            assert_eq!(run.code, 1, "{}", run.all());
            assert_no_leak(&line, &run.all());
        }
    }
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        match path.is_dir() {
            true => out.extend(walk(&path)),
            false => out.push(path),
        }
    }
    out
}

/// The URL parser drops a tab or a line break: written raw in a password, it would silently make
/// another password. It is refused, saying how to write it.
#[test]
fn a_tab_in_a_password_is_refused_not_dropped() {
    let port = free_port();
    for raw in ["LEAKa\tbLEAK", "LEAKa\nbLEAK"] {
        let url = format!("redis://:{raw}@127.0.0.1:{port}");
        let w = Workspace::new(&overrides(
            &redis_store(&[toml_string(&url).trim_matches('"').to_owned()]),
            "f = false\n",
        ));
        let run = w.run(["plan"]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("percent-encode it (%09 for a tab"),
            "{}",
            run.all()
        );
        assert_no_leak(&format!("{raw:?}"), &run.all());
    }
}
