//! Keeping secrets out of everything relayctl prints or records.
//!
//! Store URLs may carry passwords (`rediss://:secret@host`). Every place that shows a target goes
//! through [`url`], so the plan, the journal's `Store:` trailers and error messages never do.

/// `raw` with any password replaced by `***`; input that does not parse as a URL is shown only
/// up to its scheme, since we cannot tell where a secret in it would be.
pub fn url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => match raw.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://<unparseable URL>"),
            None => "<unparseable URL>".to_owned(),
        },
    }
}

/// `text` with the password of every `scheme://user:password@host` in it replaced by `***`: for
/// free text that may quote a URL, such as a line of the overrides file in an error message.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '"' | '\'' | ' ' | '?' | '#' | ',') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|colon| (colon, at)))
        {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
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
