//! Keeping secrets out of everything relayctl prints or records.
//!
//! Store URLs may carry passwords (`rediss://:secret@host`), and a password may hold anything: a
//! space, a quote, a backtick, `%`, non-ASCII text. So a URL is never shown by masking parts of
//! its text (a scan for where the password ends stops at the first character it did not expect,
//! and shows the rest): it is parsed, by the same parser the redis crate connects with, and what
//! is shown is built from the parts that hold no secret: scheme, host, port, path, and the user
//! name when there is a password. Every place that shows a target goes through [`url`].
//!
//! One reading is not safe: a password holding `/`, `?` or `#` unencoded, which ends the URL's
//! authority early, so the parser takes the rest of the password for a host, a port or a path.
//! [`Parsed::Ambiguous`] is that case (an `@` the parser did not take as the end of the user
//! information); then only the part after the URL's last `@`, which no password reaches, is
//! shown, and [`crate::store::redis::check_url`] refuses the URL, saying to percent-encode.
//!
//! A line of the overrides file quoted in an error may hold such a URL too, and may not parse
//! ([`text`]): there everything from a `://` to the line's last `@` is masked.

use url::{Position, Url};

/// How a URL reads.
#[derive(Debug)]
pub enum Parsed {
    /// It parses, and every `@` in it is in its user information or ends it.
    Clear(Url),
    /// It holds an `@` that the parser did not take for the end of the user information (or it
    /// does not parse at all): a password holding `/`, `?` or `#`. `host` is the URL rebuilt
    /// from its scheme and what follows its last `@`, when that parses.
    Ambiguous { host: Option<Url> },
    /// It does not parse.
    Invalid,
}

/// Reads `raw` as the url crate (and so the redis crate) does, and says whether that reading
/// can be trusted to keep the password inside the user information.
pub fn parse(raw: &str) -> Parsed {
    // What follows the last `@`, which no password reaches, under the scheme `raw` starts with.
    let host = || {
        let (head, host) = raw.rsplit_once('@')?;
        let (scheme, _) = head.split_once("://")?;
        valid_scheme(scheme).then(|| Url::parse(&format!("{scheme}://{host}")).ok())?
    };
    let Ok(url) = Url::parse(raw) else {
        return match raw.contains('@') {
            true => Parsed::Ambiguous { host: host() },
            false => Parsed::Invalid,
        };
    };
    let credentials = !url.username().is_empty() || url.password().is_some();
    if url[Position::BeforePath..].contains('@') || (!credentials && raw.contains('@')) {
        return Parsed::Ambiguous { host: host() };
    }
    Parsed::Clear(url)
}

/// `raw` as it may be shown: `redis://:***@host:6379/0`, as the URL parser writes it, with the
/// password replaced. The user name is shown only beside a password (a user name alone may be a
/// token: `***@`); a query's values and any fragment but `#insecure` (the one the redis crate
/// reads) are left out. A URL that does not parse is shown by its scheme alone.
pub fn url(raw: &str) -> String {
    match parse(raw) {
        Parsed::Clear(u) => shown(u),
        Parsed::Ambiguous { host: Some(mut u) } => {
            let _ = u.set_username("***");
            shown(u)
        }
        Parsed::Ambiguous { host: None } | Parsed::Invalid => {
            match raw.split_once("://").filter(|(s, _)| valid_scheme(s)) {
                Some((scheme, _)) => format!("{scheme}://<unparseable URL>"),
                None => "<unparseable URL>".to_owned(),
            }
        }
    }
}

/// `u` with its secrets replaced: the password by `***` (a user name without one too), a
/// query by `...`, a fragment other than `insecure` by `...`.
fn shown(mut u: Url) -> String {
    match u.password() {
        Some(_) => {
            let _ = u.set_password(Some("***"));
        }
        None if !u.username().is_empty() => {
            let _ = u.set_username("***");
        }
        None => {}
    }
    if u.query().is_some() {
        u.set_query(Some("..."));
    }
    if u.fragment().is_some_and(|f| f != "insecure") {
        u.set_fragment(Some("..."));
    }
    u.to_string()
}

/// Whether `scheme` is a URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn valid_scheme(scheme: &str) -> bool {
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Text that may hold URLs with credentials (a line of the overrides file quoted in an error, the
/// TOML parser's message quoting a value), with everything from each line's first `://` to its
/// last `@` masked: a password lies between some `://` and an `@` after it, whatever characters
/// it holds, so none survives. A line with an `@` but no `://` before it (a URL continued from a
/// line above) is masked from its start. A line setting a key that names a password
/// (`password_env = ...`, where a password may have been pasted by mistake) shows no value.
pub fn text(text: &str) -> String {
    let line = |line: &str| {
        if let Some((key, _)) = line.split_once('=') {
            if key.to_ascii_lowercase().contains("password") {
                return format!("{key}= ***");
            }
        }
        let Some(at) = line.rfind('@') else {
            return line.to_owned();
        };
        match line[..at].find("://") {
            Some(start) => format!("{}***{}", &line[..start + 3], &line[at..]),
            None => format!("***{}", &line[at..]),
        }
    };
    text.split('\n').map(line).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_in_text() {
        assert_eq!(
            text(r#"urls = ["redis://:hunter2@h:1/0", "rediss://u:p@w@x"] # redis://plain"#),
            r#"urls = ["redis://***@x"] # redis://plain"#
        );
        assert_eq!(
            text(r#"url = "redis://:pa\"s s'`@h:1""#),
            r#"url = "redis://***@h:1""#
        );
        assert_eq!(text("ss@host\""), "***@host\"");
        assert_eq!(text("url = \"redis://h:1\""), "url = \"redis://h:1\"");
        assert_eq!(text("password_env = \"hunter2\""), "password_env = ***");
    }

    #[test]
    fn passwords_with_url_delimiters_are_hidden_whole() {
        for (raw, shown) in [
            ("redis://:hun#ter2Q@host:6379", "redis://***@host:6379"),
            ("redis://:p@ss/word@host", "redis://***@host"),
            ("redis://:a?b=c@host:1/0", "redis://***@host:1/0"),
            ("redis://u:12/a@host", "redis://***@host"),
            ("redis://:a@b/c@host:7", "redis://***@host:7"),
            ("http://TOKEN@ld.example", "http://***@ld.example/"),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn hides_passwords_only() {
        assert_eq!(
            url("rediss://:secret@10.0.0.6:6380/0"),
            "rediss://:***@10.0.0.6:6380/0"
        );
        assert_eq!(url("redis://user:pw@h:1"), "redis://user:***@h:1");
        assert_eq!(url("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
        assert_eq!(url("rediss://:pw@h/#insecure"), "rediss://:***@h/#insecure");
        assert_eq!(url("redis://:pw@[bad"), "redis://<unparseable URL>");
        assert_eq!(
            url("http://127.0.0.1:5000/x?token=t"),
            "http://127.0.0.1:5000/x?..."
        );
    }

    /// Every printable ASCII character, spaces, percent-encodings and non-ASCII text, raw and
    /// percent-encoded, as a password: no part of any is ever shown.
    #[test]
    fn no_password_of_the_corpus_shows_in_part() {
        for password in corpus() {
            for raw in [
                format!("redis://:{password}@127.0.0.1:6379/0"),
                format!("rediss://app:{password}@redis.example:6380"),
                format!("redis://:{}@127.0.0.1:6379", encode(&password)),
            ] {
                let shown = url(&raw);
                assert!(!shown.contains("LEAK"), "{raw:?} shown as {shown:?}");
                let line = text(&format!("url = \"{raw}\""));
                assert!(!line.contains("LEAK"), "{raw:?} quoted as {line:?}");
            }
        }
    }

    fn encode(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    /// Passwords that have leaked before, and every printable ASCII character: each is `LEAK`, a
    /// number, the character(s), then `LEAK` again, so a test can look for `LEAK` in what was shown.
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
                "a b\tc",
            ]
            .map(str::to_owned),
        );
        specials
            .iter()
            .enumerate()
            .map(|(i, s)| format!("LEAK{i}{s}{i}LEAK"))
            .collect()
    }
}
