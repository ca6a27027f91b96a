//! The journal's remote (`[journal] remote`, SPEC "Working as a team"): which git URLs relayctl
//! accepts, and how one is shown. A leaf: it knows URL text, nothing of git or the journal.
//!
//! A remote is ssh (`ssh://host/path`, `git@host:path`), https (or http, git), `file://`, or a
//! path. Anything else is refused before git sees it: a URL starting with `-` (git would read it
//! as an option: `--upload-pack=...`), git's transport helpers (`ext::sh -c ...` runs a command,
//! `fd::`), other schemes, and control or invisible characters (a URL is printed in messages).
//! The URL may carry credentials (`https://x-access-token:TOKEN@host/...`): they reach git only,
//! never a message, the journal or its config; [`Remote::shown`] is what everything prints.

use std::path::Path;

/// A journal remote as the overrides file gives it, checked.
#[derive(Clone, PartialEq)]
pub struct Remote {
    /// The URL as git gets it (a path resolved against the overrides file's folder). Secret:
    /// it may hold a token.
    pub url: String,
    /// How messages show it: no password or token, no query.
    pub shown: String,
    /// The credentials part (`user:token`) of an http(s) URL, to blank out of git's messages.
    pub secret: Option<String>,
    /// Fetch and push a path or `file://` remote with the git CLI instead of libgit2 (cargo's
    /// `net.git-fetch-with-cli`). A network remote always goes through the git CLI: see
    /// [`Remote::with_cli`].
    pub cli: bool,
    /// ssh, https, http or git: over the network.
    pub network: bool,
}

impl Remote {
    /// Whether fetch and push run the git program: for every network remote (relayctl's libgit2
    /// is built without its https and ssh transports, whose start-up alone cost every command
    /// about 25 ms, even those that never fetch: loading OpenSSL and the system's certificate
    /// bundle; the git program uses the operator's own ssh and credential set-up anyway), and for
    /// a local one with `git_fetch_with_cli`.
    pub fn with_cli(&self) -> bool {
        self.cli || self.network
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("shown", &self.shown)
            .field("cli", &self.cli)
            .field("network", &self.network)
            .finish()
    }
}

/// Characters no remote may hold: controls, and invisible ones that change how text reads.
fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

impl Remote {
    /// Checks `raw` (from the overrides file in `base_dir`) and resolves a relative path.
    /// The error never quotes the URL whole (it may hold a token).
    pub fn parse(raw: &str, base_dir: &Path, cli: bool) -> Result<Remote, String> {
        if raw.trim().is_empty() {
            return Err("journal.remote is empty".into());
        }
        if raw.chars().any(hostile) {
            return Err(
                "journal.remote holds a control or invisible character; write the URL plainly".into(),
            );
        }
        if raw.starts_with('-') {
            return Err(
                "journal.remote starts with '-', which git would read as an option: give a URL or a path"
                    .into(),
            );
        }
        if raw.contains("::") && !raw.contains("://") {
            return Err(
                "journal.remote names a git transport helper (`<helper>::...`), which runs programs; give an \
                 ssh, https or file URL, or a path"
                    .into(),
            );
        }
        let remote = |url: String, shown: String, secret: Option<String>, network: bool| Remote {
            url,
            shown,
            secret,
            cli,
            network,
        };
        if let Some((scheme, _)) = raw.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if !matches!(scheme.as_str(), "ssh" | "https" | "http" | "git" | "file") {
                return Err(format!(
                    "journal.remote has the scheme {:?}; relayctl takes ssh://, https://, http://, git://, \
                     file:// or a path",
                    shown_part(&scheme)
                ));
            }
            let parsed = url::Url::parse(raw)
                .map_err(|e| format!("journal.remote is not a URL relayctl can read: {e}"))?;
            let (shown, secret) = shown_url(&parsed);
            return Ok(remote(raw.to_owned(), shown, secret, scheme != "file"));
        }
        if scp_like(raw) {
            // `user@host:path`: git's ssh shorthand. A user name is not a secret.
            return Ok(remote(raw.to_owned(), raw.to_owned(), None, true));
        }
        let path = base_dir.join(raw);
        let url = path.display().to_string();
        Ok(remote(url.clone(), url, None, false))
    }
}

/// Whether `raw` is git's scp-like ssh syntax: a colon before any slash, and not a drive letter.
fn scp_like(raw: &str) -> bool {
    match (raw.find(':'), raw.find('/')) {
        (Some(colon), slash) => colon > 1 && slash.is_none_or(|s| colon < s),
        (None, _) => false,
    }
}

/// `url` with no password (an http(s) user name too, which may be a token), no query or
/// fragment; and the credentials taken out, if any.
fn shown_url(url: &url::Url) -> (String, Option<String>) {
    let mut shown = url.clone();
    let user = url.username().to_owned();
    let password = url.password().map(str::to_owned);
    let web = matches!(url.scheme(), "https" | "http");
    let secret = match (web && !user.is_empty(), &password) {
        (true, Some(p)) => Some(format!("{user}:{p}")),
        (true, None) => Some(user.clone()),
        (false, Some(p)) => Some(p.clone()),
        (false, None) => None,
    };
    if web && !user.is_empty() {
        let _ = shown.set_username("***");
        let _ = shown.set_password(None);
    } else if password.is_some() {
        let _ = shown.set_password(Some("***"));
    }
    if shown.query().is_some() {
        shown.set_query(Some("***"));
    }
    shown.set_fragment(None);
    (shown.to_string(), secret)
}

fn shown_part(text: &str) -> String {
    text.chars().take(20).collect()
}

/// `text` (git's message) with every trace of `remote`'s credentials blanked out.
pub fn scrub(text: &str, remote: &Remote) -> String {
    let mut out = text.replace(&remote.url, &remote.shown);
    if let Some(secret) = remote.secret.as_deref().filter(|s| !s.is_empty()) {
        out = out.replace(secret, "***");
        // The token alone, and percent-decoded forms of it.
        for part in secret.split(':').filter(|p| p.len() >= 4) {
            out = out.replace(part, "***");
            if let Ok(decoded) = percent_decode(part) {
                if decoded.len() >= 4 {
                    out = out.replace(&decoded, "***");
                }
            }
        }
    }
    out.chars()
        .map(|c| if hostile(c) && c != '\n' { '?' } else { c })
        .collect()
}

fn percent_decode(text: &str) -> Result<String, ()> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = text.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Remote, String> {
        Remote::parse(raw, Path::new("/srv/incident"), false)
    }

    #[test]
    fn remotes_are_shown_without_their_credentials() {
        let r = parse("https://x-access-token:ghp_SECRET123@github.com/acme/journal.git?t=abc").unwrap();
        assert_eq!(r.shown, "https://***@github.com/acme/journal.git?***");
        assert!(!format!("{r:?}").contains("SECRET"));
        let e = "fatal: unable to access 'https://x-access-token:ghp_SECRET123@github.com/acme/journal.git?t=abc/'";
        assert!(!scrub(e, &r).contains("SECRET"), "{}", scrub(e, &r));
        assert_eq!(parse("https://ghp_TOKEN@h/j").unwrap().shown, "https://***@h/j");
        assert_eq!(
            parse("git@github.com:acme/j.git").unwrap().shown,
            "git@github.com:acme/j.git"
        );
        assert_eq!(parse("ssh://git@h:22/j").unwrap().shown, "ssh://git@h:22/j");
        assert_eq!(parse("../team.git").unwrap().url, "/srv/incident/../team.git");
        assert_eq!(parse("/abs/team.git").unwrap().url, "/abs/team.git");
    }

    #[test]
    fn hostile_remotes_are_refused_without_quoting_them() {
        for raw in [
            "--upload-pack=touch /tmp/pwned",
            "-oProxyCommand=sh",
            "ext::sh -c touch% /tmp/pwned",
            "fd::17",
            "https://h/j\n[remote]",
            "https://h/\u{1b}[31mj",
            "/path/\u{202e}gpj",
            "javascript://alert",
            "",
        ] {
            let e = parse(raw).unwrap_err();
            assert!(!e.contains("pwned") && !e.contains('\u{1b}'), "{raw:?}: {e}");
        }
    }
}
