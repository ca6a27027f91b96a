//! Who journal commits are by (SPEC §2 "The journal"): the operator's git identity, else
//! `RELAYCTL_AUTHOR`, else the login name. Resolved and checked when the journal is opened, so
//! an author git cannot record is refused before anything is written to a store, never found
//! out at the first commit.

use anyhow::{anyhow, Result};
use git2::{Repository, Signature};

/// A commit author that git accepts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Identity {
    name: String,
    email: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

impl Identity {
    /// The operator's git config identity, else `fallback` ("Name <email>", from
    /// `RELAYCTL_AUTHOR`), else the login name at this host; an error naming where it came
    /// from if git cannot record it.
    pub fn resolve(repo: &Repository, fallback: Option<&str>) -> Result<Identity> {
        if let Ok(config) = repo.config() {
            if let (Ok(name), Ok(email)) = (config.get_string("user.name"), config.get_string("user.email")) {
                if !name.trim().is_empty() {
                    let shown = format!("{name} <{email}>");
                    return Identity { name, email }.checked(|why| {
                        format!(
                            "the git identity {shown:?} (git config user.name and user.email) cannot sign \
                             journal commits: {why}. Fix it with `git config --global user.name/user.email`, \
                             then run this again"
                        )
                    });
                }
            }
        }
        if let Some(raw) = fallback {
            let usage = |why: &str| {
                format!(
                    "RELAYCTL_AUTHOR {raw:?} cannot sign journal commits: {why}. Set it to \"Name <email>\", \
                     both non-empty, and run this again"
                )
            };
            let parsed = raw
                .trim()
                .strip_suffix('>')
                .and_then(|s| s.split_once('<'))
                .map(|(n, e)| Identity {
                    name: n.trim().to_owned(),
                    email: e.trim().to_owned(),
                });
            return match parsed {
                Some(identity) => identity.checked(usage),
                None => Err(anyhow!(usage("it does not look like \"Name <email>\""))),
            };
        }
        let login = whoami::username().unwrap_or_else(|_| "relayctl".to_owned());
        let host = whoami::hostname().unwrap_or_else(|_| "localhost".to_owned());
        Identity {
            email: format!("{login}@{host}"),
            name: login,
        }
        .checked(|why| {
            format!(
                "the login name cannot sign journal commits ({why}); set RELAYCTL_AUTHOR=\"Name <email>\" or \
                 git config user.name and user.email"
            )
        })
    }

    /// `self` if git can record it, else the error `explain` makes of why not.
    fn checked(self, explain: impl FnOnce(&str) -> String) -> Result<Identity> {
        let why = if self.name.is_empty() || self.email.is_empty() {
            Some("the name and the email must both be non-empty".to_owned())
        } else {
            Signature::new(&self.name, &self.email, &git2::Time::new(0, 0))
                .err()
                .map(|e| e.message().to_owned())
        };
        match why {
            None => Ok(self),
            Some(why) => Err(anyhow!(explain(&why))),
        }
    }

    /// The signature at `time` (checked when resolved, so it does not fail).
    pub fn signature(&self, time: &git2::Time) -> Result<Signature<'static>> {
        Signature::new(&self.name, &self.email, time).map_err(|e| {
            anyhow!(
                "invalid journal author {} <{}>: {}",
                self.name,
                self.email,
                e.message()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_author_git_cannot_record_is_refused_naming_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        // A global identity of the developer's would win over RELAYCTL_AUTHOR.
        let mut config = repo
            .config()
            .unwrap()
            .open_level(git2::ConfigLevel::Local)
            .unwrap();
        config.set_str("user.name", "").unwrap();
        for raw in ["Bob <>", "<bob@example.com>", "Bob", "Bob <b<ob@example.com>"] {
            let e = Identity::resolve(&repo, Some(raw)).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("RELAYCTL_AUTHOR {raw:?} cannot sign")),
                "{e}"
            );
        }
        let ok = Identity::resolve(&repo, Some("Bob <bob@example.com>")).unwrap();
        assert_eq!(ok.email, "bob@example.com");
        config.set_str("user.name", "Alice").unwrap();
        config.set_str("user.email", "").unwrap();
        let e = Identity::resolve(&repo, None).unwrap_err().to_string();
        assert!(e.contains("git config user.name and user.email"), "{e}");
    }
}
