//! The passwords of a Redis store given apart from its URLs, and what a server's refusal of
//! them means (SPEC §1 "Plain Redis keys and Redis topologies").
//!
//! A URL's user and password are its server's. The Sentinels' are also the primary's unless the
//! store gives the primary's password apart (`password_env`), and the Sentinels may have their
//! own apart too (`sentinel_password_env`): Sentinels without a password in front of a primary
//! with one, or each with its own, kept apart as the redis crate's Sentinel client keeps the
//! Sentinels' credentials and the primary's, and as Relay keeps `REDIS_PASSWORD` apart from its
//! URL. The values come from environment variables the store names, read by settings; this
//! file never shows them. A server that refuses a password, or wants one, is an error saying
//! which setting to fix, not "does not answer".

/// A password from the environment. Its `Debug` never shows it.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The passwords a Redis store gives apart from its URLs, read from the environment variables
/// it names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    /// The password of the servers that hold the data (`password_env`): each URL's server, the
    /// cluster's nodes, the primary the Sentinels name. It replaces a password in the URLs; for
    /// the primary behind Sentinels, the Sentinel URLs' user name is not used either.
    pub password: Option<Secret>,
    /// The Sentinels' own password (`sentinel_password_env`), replacing the Sentinel URLs'.
    pub sentinel_password: Option<Secret>,
}

/// Whose password a server refused, for the advice on what to set.
#[derive(Clone, Copy)]
pub(super) enum Who {
    /// A server named by its own URL.
    Node,
    /// The primary a Sentinel named.
    Primary,
    Sentinel,
}

/// Why a server refused relayctl's credentials, or wants some, in words saying what to set;
/// `None` for any other error.
pub(super) fn refused(e: &redis::RedisError, who: Who) -> Option<String> {
    let wrong = e.kind() == redis::ErrorKind::AuthenticationFailed;
    let none = e.code() == Some("NOAUTH");
    let advice = match (who, wrong) {
        (Who::Node, true) => "check the password in its URL, or in the variable password_env names",
        (Who::Primary, true) => {
            "the primary is given the Sentinel URL's password unless password_env = \"VAR\" names the \
             environment variable holding its own"
        }
        (Who::Sentinel, true) => {
            "a Sentinel URL's password is the Sentinel's own, and a Sentinel without one refuses any: remove it \
             from the URLs (or name the variable holding the Sentinels' own with sentinel_password_env), and give \
             the primary's with password_env = \"VAR\""
        }
        (Who::Node, false) => {
            "put it in the URL (redis://:password@host) or name the environment variable holding it with \
             password_env = \"VAR\""
        }
        (Who::Primary, false) => "name the environment variable holding it with password_env = \"VAR\"",
        (Who::Sentinel, false) => {
            "put it in the Sentinel URLs or name the variable holding it with sentinel_password_env = \"VAR\""
        }
    };
    match (wrong, none) {
        (true, _) => Some(format!("it refused the password ({e}): {advice}")),
        (false, true) => Some(format!(
            "it requires a password and was given none ({}): {advice}",
            e.detail().unwrap_or("NOAUTH")
        )),
        _ => None,
    }
}
