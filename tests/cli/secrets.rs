//! Secrets in the places people put them by mistake: a `.env` line that does not parse, a Redis
//! password holding URL delimiters, credentials in REDIS_HOSTS. Whatever fails, the secret is
//! never printed.

use crate::support::fixtures::{overrides, redis_store};
use crate::support::{free_port, Workspace};

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
                run.stderr.contains(":***@127.0.0.1"),
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
    for hosts in [
        ":hunter2@127.0.0.1:1",
        "user:hunter2@127.0.0.1",
        "127.0.0.1:1,:hunter2@h:x",
    ] {
        let run = w.cmd(["plan"]).env("REDIS_HOSTS", hosts).run();
        assert_eq!(run.code, 1, "{hosts}: {}", run.all());
        assert!(!run.all().contains("hunter2"), "{hosts}: leaked: {}", run.all());
        assert!(
            run.stderr.contains("REDIS_HOSTS entry \"***@"),
            "{hosts}: {}",
            run.stderr
        );
    }
}
