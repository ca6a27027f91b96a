//! What reaches a terminal (issue 19, items 6 and 7): a stdout that closes early ends quietly
//! and a full one is an error naming stdout, for every command that writes to it; and text from
//! outside (LaunchDarkly's error bodies, store names, reasons) never reaches a terminal, a sync
//! note or a commit message raw, with colour on or off.

use crate::support::fake_ld::Reply;
use crate::support::fixtures::{file_store_and_ld, overrides, toml_string};
use crate::support::{git, Relayctl, Run};
use crate::sync::Setup;
use std::process::Stdio;

/// Runs `cmd` with stdout a pipe whose reader has already gone (`relayctl log | head -1`, once
/// head has exited): every write to it fails with EPIPE.
fn closed_stdout(cmd: Relayctl) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    run_with_stdout(cmd, writer.into())
}

/// Runs `cmd` with stdout on /dev/full: every write to it fails with ENOSPC.
fn full_stdout(cmd: Relayctl) -> Run {
    let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
    run_with_stdout(cmd, full.into())
}

fn run_with_stdout(cmd: Relayctl, stdout: Stdio) -> Run {
    let out = cmd
        .std()
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting relayctl")
        .wait_with_output()
        .unwrap();
    Run {
        code: out.status.code().expect("relayctl was killed by a signal"),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `args` run with a closed stdout end with `code` and no panic, and with a full stdout fail
/// with exit 1 and an error naming stdout.
fn check_stdout(s: &Setup, args: &[&str], code: i32) {
    let run = closed_stdout(s.w.cmd(args).token());
    assert_eq!(run.code, code, "{args:?} with stdout closed: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    let run = full_stdout(s.w.cmd(args).token());
    assert_eq!(run.code, 1, "{args:?} with stdout full: {}", run.stderr);
    assert!(
        run.stderr
            .contains("error: cannot write to stdout: No space left on device (os error 28)"),
        "{args:?}: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_full_one_is_an_error_naming_it() {
    let s = Setup::new(&[("new-checkout", 5, true), ("pricing", 5, true)]);
    // One pending commit (new-checkout), one change still to apply (pricing).
    s.apply("new-checkout = false\n");
    let declared = "new-checkout = false\npricing = { on = false, reason = \"INC-7\" }\n";
    s.w.write(
        "overrides.toml",
        &overrides(&file_store_and_ld(&s.ld.url), declared),
    );
    let file = "flags/default-production.json";
    let before = s.w.read(file);

    // A full stdout stops apply before it writes: what is approved is what was shown.
    let run = full_stdout(s.w.cmd(["apply", "--auto-approve"]));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("cannot write to stdout"), "{}", run.stderr);
    assert_eq!(s.w.read(file), before, "apply wrote with nobody seeing its plan");
    assert_eq!(s.w.journal_commits(), 2);

    for (args, code) in [
        (&["plan"][..], 0),
        (&["plan", "--json"], 0),
        (&["plan", "--detailed-exitcode"], 2),
        (&["show"], 0),
        (&["show", "--json"], 0),
        (&["import", "default/production/pricing"], 0),
        (&["log"], 0),
        (&["log", "--pending"], 0),
        (&["verify"], 2),
        (&["sync", "--dry-run"], 0),
        (&["status"], 2),
        (&["status", "--json"], 2),
        (&["eval", "default/production/pricing", "--user", "alice"], 0),
        (
            &["eval", "default/production/pricing", "--user", "alice", "--json"],
            0,
        ),
        (&["completions", "bash"], 0),
        (&["man"], 0),
    ] {
        check_stdout(&s, args, code);
    }

    // A closed stdout does not stop apply: the reader's going away is no reason to leave a
    // change half-made.
    let run = closed_stdout(s.w.cmd(["apply", "--auto-approve"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("Apply complete: 1 flag(s) changed"),
        "{}",
        run.stderr
    );
    assert_eq!(s.w.journal_commits(), 3);

    // sync goes on when stdout fills up (what it sent must be noted), then fails naming stdout.
    let run = full_stdout(s.w.cmd(["sync"]).token());
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("Sync: 2 synced"), "{}", run.stderr);
    assert!(run.stderr.contains("cannot write to stdout"), "{}", run.stderr);
    assert_eq!(s.ld.env("default", "pricing", "production")["on"], false);
    assert!(s.notes().iter().all(|(_, note)| note.starts_with("synced ")));
    let run = closed_stdout(s.w.cmd(["sync"]).token());
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Terminal control sequences, bidirectional overrides and invisible characters, as a hostile
/// LaunchDarkly error body, store name or reason would carry them: a window title, a clear
/// screen, an 8-bit CSI, a right-to-left override, a zero-width space, an isolate, a BOM and a
/// tag character.
const HOSTILE: &str =
    "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[8m\u{9b}1;1H\u{202e}gnp.exe\u{200b}\u{2066}\u{feff}\u{e0041}\r";

/// The characters of `text` that must not reach a terminal raw, with their offsets: anything
/// [`HOSTILE`] holds, any control character but line breaks and tabs, and (with `colour`) any
/// escape sequence other than the SGR colours relayctl itself uses.
fn raw_controls(text: &str, colour: bool) -> Vec<(usize, String)> {
    const OURS: [&str; 5] = [
        "\u{1b}[0m",
        "\u{1b}[1m",
        "\u{1b}[31m",
        "\u{1b}[33m",
        "\u{1b}[1;33m",
    ];
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        if colour {
            if let Some(code) = OURS.iter().find(|code| text[i..].starts_with(*code)) {
                i += code.len();
                continue;
            }
        }
        let bad = (c.is_control() && !matches!(c, '\n' | '\t'))
            || HOSTILE.contains(c)
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if bad && !"pwned gnp.exe[]0;8m2J1H".contains(c) {
            let around: String = text[..i]
                .chars()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            found.push((i, around + &text[i..].chars().take(20).collect::<String>()));
        }
        i += c.len_utf8();
    }
    found
}

/// Checks that `run` (of `what`) showed nothing raw.
fn assert_escaped(run: &Run, what: &str, colour: bool) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let raw = raw_controls(text, colour);
        assert!(raw.is_empty(), "{what}: raw on {stream} at {raw:?}:\n{text}");
    }
}

#[test]
fn launchdarkly_s_error_text_reaches_no_terminal_and_no_note_raw() {
    let s = Setup::new(&[("new-checkout", 5, true), ("pricing", 5, true)]);
    s.apply("new-checkout = false\npricing = false\n");
    // LaunchDarkly refuses one change (400: noted `skipped`) and fails the other (500, every retry).
    s.ld.inject(
        Some("PATCH"),
        Some("new-checkout"),
        1,
        Reply::Status(400, "invalid_request", HOSTILE),
    );
    s.ld.inject(
        Some("PATCH"),
        Some("pricing"),
        10,
        Reply::Status(500, "internal", HOSTILE),
    );
    let run = s.w.cmd(["sync"]).token().run();
    assert_ne!(run.code, 0, "{}", run.all());
    assert_escaped(&run, "sync", false);
    assert!(
        run.all().contains("\\u{1b}]0;pwned\\u{7}\\u{1b}[2J") && run.all().contains("\\u{202e}gnp.exe"),
        "the error text is shown, escaped: {}",
        run.all()
    );
    // The note is as safe for `git notes show` as for `relayctl log`.
    let notes = s.notes();
    let skipped = &notes.iter().find(|(_, n)| n.starts_with("skipped")).unwrap().1;
    assert!(raw_controls(skipped, false).is_empty(), "{skipped:?}");
    assert!(skipped.contains("\\u{202e}gnp.exe"), "{skipped}");

    for colour in ["never", "always"] {
        let on = colour == "always";
        let run = s.w.cmd(["--color", colour, "log"]).run();
        assert_eq!(run.code, 0, "{}", run.all());
        assert_escaped(&run, &format!("log --color {colour}"), on);
        assert!(run.stdout.contains("skipped: "), "{}", run.stdout);

        // Failing again, with colour.
        s.ld.inject(Some("PATCH"), None, 20, Reply::Status(500, "internal", HOSTILE));
        let run = s.w.cmd(["--color", colour, "sync", "--force"]).token().run();
        assert_escaped(&run, &format!("sync --color {colour}"), on);
        s.ld.inject(Some("GET"), None, 20, Reply::Status(500, "internal", HOSTILE));
        let run = s.w.cmd(["--color", colour, "verify"]).token().run();
        assert_eq!(run.code, 2, "{}", run.all());
        assert!(run.stdout.contains("HTTP 500: \\u{1b}]0;pwned"), "{}", run.all());
        assert_escaped(&run, &format!("verify --color {colour}"), on);
    }
}

#[test]
fn hostile_store_names_and_reasons_are_escaped_everywhere_they_are_shown() {
    let s = Setup::new(&[("new-checkout", 5, true)]);
    let reason = format!("INC-1 {HOSTILE} done");
    let stores = format!(
        "[[store]]\nname = \"relay\u{202e}file\u{200b}\"\ntype = \"file\"\npath = \"flags/{{project}}-{{environment}}.json\"\n\n\
         [launchdarkly]\nbase_url = \"{}\"\n\n",
        s.ld.url
    );
    let declared = format!(
        "new-checkout = {{ on = false, reason = {} }}\n",
        toml_string(&reason)
    );
    s.w.write("overrides.toml", &overrides(&stores, &declared));

    for colour in ["never", "always"] {
        let on = colour == "always";
        for args in [&["plan"][..], &["plan", "--json"], &["show"], &["show", "--json"]] {
            let run = s.w.cmd([&["--color", colour][..], args].concat()).run();
            assert_eq!(run.code, 0, "{args:?}: {}", run.all());
            assert_escaped(&run, &format!("{args:?} --color {colour}"), on);
        }
    }
    // The JSON escapes are JSON's: the reason reads back exactly.
    let run = s.w.run(["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["changes"][0]["reason"], reason.as_str(), "{}", run.stdout);
    assert!(run.stdout.contains("\\u202e"), "{}", run.stdout);

    let run = s.w.cmd(["--color", "always", "apply", "--auto-approve"]).run();
    assert_eq!(run.code, 0, "{}", run.all());
    assert_escaped(&run, "apply", true);
    assert!(
        run.stdout.contains("relay\\u{202e}file\\u{200b}"),
        "{}",
        run.stdout
    );
    for colour in ["never", "always"] {
        for args in [&["log"][..], &["sync", "--dry-run"]] {
            let run = s.w.cmd([&["--color", colour][..], args].concat()).token().run();
            assert_eq!(run.code, 0, "{args:?}: {}", run.all());
            assert_escaped(&run, &format!("{args:?} --color {colour}"), colour == "always");
        }
    }
    // `git log -p` plays nothing either, and the state file still reads back the exact reason.
    let journal = s.w.path("journal");
    let shown = git(&journal, &["log", "-p", "--format=%B"]);
    assert!(raw_controls(&shown, false).is_empty(), "{shown}");
    let state: toml::Table =
        toml::from_str(&s.w.read("journal/default/production/new-checkout.toml")).unwrap();
    assert_eq!(state["reason"].as_str(), Some(reason.as_str()));
}

/// A reason of only invisible characters says nothing: plan warns and apply refuses, as for "".
#[test]
fn a_reason_with_nothing_visible_is_an_empty_reason() {
    let s = Setup::new(&[("new-checkout", 5, true)]);
    let declared = "new-checkout = { on = false, reason = \"\\u200B\\u200D \\u2060\" }\n";
    s.w.write(
        "overrides.toml",
        &overrides(&file_store_and_ld(&s.ld.url), declared),
    );
    let run = s.w.run(["plan"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains("default/production/new-checkout has an empty reason: say why before you apply"),
        "{}",
        run.all()
    );
    let before = s.w.read("flags/default-production.json");
    let run = s.w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("not applying: the reason of"),
        "{}",
        run.all()
    );
    assert_eq!(s.w.read("flags/default-production.json"), before);
    assert_eq!(s.w.journal_commits(), 0);
}
