//! Passwords behind Sentinels (issue 19, item 13): a primary that requires a password, behind
//! real Sentinels that require none or their own. The primary's password and the Sentinels' are
//! given apart (`password_env`, `sentinel_password_env`, each naming an environment variable or
//! a line of `.env`), and every refusal says which setting to fix, never showing a password.

use crate::support::fixtures::{bool_flag, overrides, PREFIX};
use crate::support::{Redis, Run, Sentinels, Workspace};

const FLAGS: &str = "kill-switch = { on = false, reason = \"INC-13\" }\n";
const OWN: &str = "own-s3ntinel-pw";

/// A Sentinel store over `urls` with the extra `settings` (TOML lines).
fn store(urls: &[String], settings: &str) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[[store]]\nname = \"relay-redis\"\ntype = \"redis\"\nsentinels = [{}]\nmaster = \"{}\"\n{settings}\
         prefix = \"ld:{{project}}:{{environment}}\"\n\n",
        quoted.join(", "),
        Sentinels::MASTER
    )
}

/// Sentinels requiring `own` (or nothing) in front of a primary requiring
/// [`Sentinels::PASSWORD`], holding `kill-switch` on at version 41.
fn sentinels(own: Option<&str>) -> Sentinels {
    let s = Sentinels::start_with(own);
    s.nodes.primary.seed(PREFIX, &[bool_flag("kill-switch", 41)]);
    s.nodes.sync();
    s
}

/// `relayctl plan` in `w`, with the variables `env` set.
fn plan(w: &Workspace, env: &[(&str, &str)]) -> Run {
    env.iter()
        .fold(w.cmd(["plan"]), |cmd, (k, v)| cmd.env(k, v))
        .run()
}

/// Checks that `run` failed saying `says`, and showed no password.
fn refused(run: &Run, says: &[&str]) {
    assert_eq!(run.code, 1, "{}", run.all());
    for text in says {
        assert!(run.stderr.contains(text), "wanted {text:?}: {}", run.all());
    }
    assert_no_password(run);
}

fn assert_no_password(run: &Run) {
    for password in [Sentinels::PASSWORD, OWN] {
        assert!(!run.all().contains(password), "{password} shown: {}", run.all());
    }
}

/// Applies in `w` (variables `env`) and checks the primary holds the change and the journal says
/// where it went.
fn applies(w: &Workspace, env: &[(&str, &str)], primary: &Redis) {
    let run = env
        .iter()
        .fold(w.cmd(["apply", "--auto-approve"]), |cmd, (k, v)| cmd.env(k, v))
        .run();
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_password(&run);
    assert_eq!(primary.flag(PREFIX, "kill-switch").unwrap()["on"], false);
    let messages = w.journal_messages();
    let last = messages.last().unwrap();
    assert!(
        last.contains(&format!("(primary redis://127.0.0.1:{}", primary.port)),
        "{last}"
    );
    assert!(
        !last.contains(Sentinels::PASSWORD) && !last.contains(OWN),
        "{last}"
    );
}

#[test]
fn sentinels_without_a_password_in_front_of_a_primary_with_one() {
    let s = sentinels(None);
    let primary = &s.nodes.primary;

    // The primary's password in the Sentinel URLs: the Sentinels refuse it.
    let w = Workspace::new(&overrides(
        &store(&s.urls_with(Some(Sentinels::PASSWORD)), ""),
        FLAGS,
    ));
    refused(
        &plan(&w, &[]),
        &[
            "the Sentinel 127.0.0.1:",
            ": it refused the password",
            "remove it from the URLs",
            "password_env",
        ],
    );
    // No password anywhere: the primary wants one.
    let w = Workspace::new(&overrides(&store(&s.urls(), ""), FLAGS));
    refused(
        &plan(&w, &[]),
        &[
            "as the primary of \"mymaster\", but it requires a password",
            "password_env",
        ],
    );
    // password_env naming a variable that is not set, or not a variable at all.
    let w = Workspace::new(&overrides(
        &store(&s.urls(), "password_env = \"PRIMARY_PW\"\n"),
        FLAGS,
    ));
    refused(
        &plan(&w, &[]),
        &["PRIMARY_PW is not set (or empty): it should hold the primary's password"],
    );
    let pasted = format!("password_env = \"{}\"\n", Sentinels::PASSWORD);
    let pasted = Workspace::new(&overrides(&store(&s.urls(), &pasted), FLAGS));
    refused(&plan(&pasted, &[]), &["is not an environment variable name"]);

    // The primary's password apart, from the environment: plan and apply reach it.
    let env = [("PRIMARY_PW", Sentinels::PASSWORD)];
    let run = plan(&w, &env);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_password(&run);
    assert!(run.stdout.contains("sentinel://127.0.0.1:"), "{}", run.all());
    applies(&w, &env, primary);
}

#[test]
fn sentinels_with_their_own_password_in_front_of_a_primary_with_another() {
    let s = sentinels(Some(OWN));
    let primary = &s.nodes.primary;

    // The Sentinels' password in their URLs is theirs: the primary refuses it.
    let w = Workspace::new(&overrides(&store(&s.urls(), ""), FLAGS));
    refused(
        &plan(&w, &[]),
        &[
            "as the primary of \"mymaster\", but it refused the password",
            "password_env",
        ],
    );
    // The primary's password apart: reached.
    let w = Workspace::new(&overrides(
        &store(&s.urls(), "password_env = \"PRIMARY_PW\"\n"),
        FLAGS,
    ));
    let run = plan(&w, &[("PRIMARY_PW", Sentinels::PASSWORD)]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_password(&run);

    // Both apart, from .env, and no secret in the overrides file at all.
    let settings = "password_env = \"PRIMARY_PW\"\nsentinel_password_env = \"SENTINEL_PW\"\n";
    let w = Workspace::new(&overrides(&store(&s.urls_with(None), settings), FLAGS));
    w.write(
        ".env",
        &format!("PRIMARY_PW={}\nSENTINEL_PW={OWN}\n", Sentinels::PASSWORD),
    );
    assert!(!w.read("overrides.toml").contains(OWN));
    applies(&w, &[], primary);
    // A wrong Sentinel password is the Sentinels' refusal, named as such.
    let run = plan(&w, &[("SENTINEL_PW", "not-it")]);
    refused(
        &run,
        &[
            "the Sentinel 127.0.0.1:",
            ": it refused the password",
            "sentinel_password_env",
        ],
    );
}

/// `sentinel_password_env` outside a Sentinel store is a mistake, named with its line.
#[test]
fn a_sentinel_password_without_sentinels_is_an_error() {
    let w = Workspace::new(&overrides(
        "[[store]]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\nsentinel_password_env = \"S\"\n\n",
        "f = false\n",
    ));
    let run = w.run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("overrides.toml:4:25: `sentinel_password_env` goes with `sentinels`"),
        "{}",
        run.all()
    );
}

/// Without Sentinels, `password_env` is the password of every server the store names: its URLs,
/// or relayCommander's REDIS_HOSTS (which takes no credentials).
#[test]
fn password_env_gives_a_plain_store_its_password() {
    let r = Redis::start_with_password(OWN);
    r.seed(PREFIX, &[bool_flag("kill-switch", 41)]);
    let store = |settings: &str| {
        let store =
            format!("[[store]]\ntype = \"redis\"\n{settings}prefix = \"ld:{{project}}:{{environment}}\"\n\n");
        Workspace::new(&overrides(&store, FLAGS))
    };
    let hosts = format!("127.0.0.1:{}", r.port);
    let run = store("").cmd(["plan"]).env("REDIS_HOSTS", &hosts).run();
    refused(
        &run,
        &["it requires a password and was given none", "password_env"],
    );
    let w = store("password_env = \"RPW\"\n");
    let run = w
        .cmd(["apply", "--auto-approve"])
        .env("REDIS_HOSTS", &hosts)
        .env("RPW", OWN)
        .run();
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_password(&run);
    assert_eq!(r.flag(PREFIX, "kill-switch").unwrap()["on"], false);
}
