//! Keeping secrets out of everything relayctl prints or records.
//!
//! Store URLs may carry passwords (`rediss://:secret@host`), and a password may itself hold
//! `#`, `?`, `/` or `@`, which URL parsers read as the end of the authority. So the user
//! information is found the way a person reads it: everything between `://` and the *last* `@`
//! of the URL. Every place that shows a target goes through [`url`], and every place that quotes
//! free text that may hold a URL (a line of the overrides file) through [`text`].

/// `raw` with its user information masked (`redis://:***@host`), normalised by the URL parser
/// when it parses; input that does not parse is shown only up to its scheme, since we cannot
/// tell where a secret in it would be.
pub fn url(raw: &str) -> String {
    let masked = text(raw);
    match url::Url::parse(&masked) {
        Ok(u) => u.to_string(),
        Err(_) => match raw.split_once("://") {
            Some((scheme, _)) if !scheme.contains(char::is_whitespace) => {
                format!("{scheme}://<unparseable URL>")
            }
            _ => "<unparseable URL>".to_owned(),
        },
    }
}

/// `text` with the user information of every `scheme://user:password@host` in it masked: the
/// password becomes `***` (a user name without a password, which may be a token, too).
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        let (token, after) = tail.split_at(end);
        match userinfo(token) {
            Some(info) => {
                match info.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str("***"),
                }
                out.push_str(&token[info.len()..]);
            }
            None => out.push_str(token),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The user information of a URL without its scheme (`user:password` of
/// `user:password@host/path`): everything before the last `@`, if there is one.
pub fn userinfo(after_scheme: &str) -> Option<&str> {
    after_scheme.rfind('@').map(|at| &after_scheme[..at])
}

#[cfg(test)]
mod tests {
    #[test]
    fn hides_passwords_in_text() {
        assert_eq!(
            super::text(r#"urls = ["redis://:hunter2@h:1/0", "rediss://u:p@w@x"] # redis://plain"#),
            r#"urls = ["redis://:***@h:1/0", "rediss://u:***@x"] # redis://plain"#
        );
    }

    #[test]
    fn passwords_with_url_delimiters_are_hidden_whole() {
        for (raw, shown) in [
            ("redis://:hun#ter2Q@host:6379", "redis://:***@host:6379"),
            ("redis://:p@ss/word@host", "redis://:***@host"),
            ("redis://:a?b=c@host:1/0", "redis://:***@host:1/0"),
            ("url = \"redis://:x,y@h:1\", 5", "url = \"redis://:***@h:1\", 5"),
            ("http://TOKEN@ld.example", "http://***@ld.example"),
        ] {
            assert_eq!(super::text(raw), shown, "{raw}");
            assert!(!super::url(raw).contains("ter2Q"));
        }
        assert_eq!(super::url("redis://:p@ss/word@host"), "redis://:***@host");
        assert_eq!(
            super::url("redis://:hun#ter2Q@host:6379"),
            "redis://:***@host:6379"
        );
    }

    #[test]
    fn hides_passwords_only() {
        assert_eq!(
            super::url("rediss://:secret@10.0.0.6:6380/0"),
            "rediss://:***@10.0.0.6:6380/0"
        );
        assert_eq!(super::url("redis://user:pw@h:1"), "redis://user:***@h:1");
        assert_eq!(super::url("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
        assert_eq!(super::url("redis://:pw@[bad"), "redis://<unparseable URL>");
    }
}
