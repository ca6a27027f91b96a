//! `relayctl completions SHELL` and `relayctl man`: generated from the clap definitions, so
//! they know every command; neither needs an overrides file.

use crate::support::Workspace;

#[test]
fn completions_know_every_command_for_every_shell() {
    // No overrides file at all: these only print.
    let w = Workspace::new("");
    std::fs::remove_file(w.path("overrides.toml")).unwrap();
    let bash = w.run(["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    for command in ["plan", "apply", "sync", "show", "import", "completions", "man"] {
        assert!(bash.stdout.contains(command), "bash completion lacks {command}");
    }
    assert!(bash.stdout.contains("complete -F _relayctl"), "{}", bash.stdout);
    for (shell, marker) in [
        ("zsh", "#compdef relayctl"),
        ("fish", "complete -c relayctl"),
        ("elvish", "edit:completion:arg-completer[relayctl]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = w.run(["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        assert!(run.stdout.contains("apply"), "{shell}");
    }
    let run = w.run(["completions", "tcsh"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("invalid value 'tcsh'"), "{}", run.stderr);
}

#[test]
fn the_man_page_has_a_name_section_and_every_command() {
    let w = Workspace::new("");
    let run = w.run(["man"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(".ie"),
        "roff: {}",
        &run.stdout[..80.min(run.stdout.len())]
    );
    assert!(run.stdout.contains(".SH NAME\nrelayctl"), "{}", run.stdout);
    // One page is the whole reference: a section per command, with its options.
    for command in ["plan", "apply", "sync", "log", "verify", "show", "import"] {
        let section = format!(".SH \"COMMAND: RELAYCTL {}\"", command.to_uppercase());
        assert!(run.stdout.contains(&section), "the man page lacks {command}");
    }
    assert!(
        run.stdout.contains("\\fB\\-\\-detailed\\-exitcode\\fR"),
        "plan's options are there"
    );
    assert!(
        !run.stdout.contains("(1)\n"),
        "no reference to pages that do not exist"
    );
}
