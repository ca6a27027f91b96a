//! The topology settings of a Redis store: `sentinels` + `master` instead of `url`/`urls`, or
//! `cluster = true` (SPEC §1 "Plain Redis keys and Redis topologies"); and the passwords it
//! gives apart from its URLs, by naming the environment variables that hold them
//! (`password_env`, `sentinel_password_env`): a secret never comes from this file but in a URL.

use super::{ConfigEnv, Located, RawStore};
use crate::store::redis::{self, Auth, Secret};
use toml::Spanned;

/// `sentinels` + `master` (instead of `url`/`urls`), or `cluster = true`, or neither.
pub(super) fn parse(s: &RawStore) -> Result<redis::Topology, Located> {
    let cluster = s.cluster.as_ref().filter(|c| *c.get_ref());
    match (&s.sentinels, &s.master, cluster) {
        (Some(sentinels), _, Some(c)) => Err((
            Some(c.span().start.min(sentinels.span().start)..c.span().end.max(sentinels.span().end)),
            "set either `sentinels` (with `master`) or `cluster = true`, not both".into(),
        )),
        (Some(sentinels), _, None) if s.url.is_some() || s.urls.is_some() => Err((
            Some(sentinels.span()),
            "`sentinels` replaces url/urls: remove url/urls (the Sentinels say where the primary is)".into(),
        )),
        (Some(sentinels), _, None) if sentinels.get_ref().is_empty() => Err((
            Some(sentinels.span()),
            "`sentinels` is empty: list at least one Sentinel, like \"redis://127.0.0.1:26379\"".into(),
        )),
        (Some(sentinels), None, None) => Err((
            Some(sentinels.span()),
            "`sentinels` needs `master`: the name the Sentinels monitor the primary by, like master = \"mymaster\"".into(),
        )),
        (Some(_), Some(master), None) if master.get_ref().trim().is_empty() => {
            Err((Some(master.span()), "`master` is empty: give the name the Sentinels monitor".into()))
        }
        (Some(_), Some(master), None) => Ok(redis::Topology::Sentinel {
            master: master.get_ref().clone(),
        }),
        (None, Some(master), _) => Err((
            Some(master.span()),
            "`master` goes with `sentinels = [\"redis://host:26379\", ...]`: add the Sentinels, or remove `master`".into(),
        )),
        (None, None, Some(_)) => Ok(redis::Topology::Cluster),
        (None, None, None) => Ok(redis::Topology::Nodes),
    }
}

/// The Sentinels' URLs, checked like any Redis URL, when the store names Sentinels.
pub(super) fn sentinel_urls(s: &mut RawStore) -> Result<Option<Vec<String>>, Located> {
    let Some(sentinels) = s.sentinels.take() else {
        return Ok(None);
    };
    let mut urls = Vec::new();
    for u in sentinels.into_inner() {
        redis::check_url(u.get_ref()).map_err(|m| (Some(u.span()), format!("sentinels: {m}")))?;
        urls.push(u.into_inner());
    }
    Ok(Some(urls))
}

/// The passwords `s` gives apart from its URLs, read from the variables it names.
pub(super) fn auth(s: &RawStore, env: &ConfigEnv) -> Result<Auth, Located> {
    if let (Some(v), None) = (&s.sentinel_password_env, &s.sentinels) {
        return Err((
            Some(v.span()),
            "`sentinel_password_env` goes with `sentinels`: it names the variable holding the Sentinels' own \
             password (password_env names the data servers')"
                .into(),
        ));
    }
    let read = |name: &Option<Spanned<String>>, whose: &str| match name {
        None => Ok(None),
        Some(name) => secret(name, whose, env).map(Some),
    };
    let whose = match s.sentinels {
        Some(_) => "the primary's",
        None => "the servers'",
    };
    Ok(Auth {
        password: read(&s.password_env, whose)?,
        sentinel_password: read(&s.sentinel_password_env, "the Sentinels'")?,
    })
}

/// The value of the variable `name` names: `whose` password.
fn secret(name: &Spanned<String>, whose: &str, env: &ConfigEnv) -> Result<Secret, Located> {
    let n = name.get_ref();
    let valid = n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    // A name that is not in the usual VARIABLE_NAME form may be the password pasted in its
    // place: it is not shown.
    let usual = n
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err((
            Some(name.span()),
            format!(
                "the value is not an environment variable name (not shown: it may be the password itself): name \
                 the variable that holds {whose} password, like \"REDIS_PASSWORD\""
            ),
        ));
    }
    env.var(n).map(Secret).ok_or_else(|| {
        let shown = if usual { n.as_str() } else { "the variable it names (not shown: it may be a password)" };
        (
            Some(name.span()),
            format!(
                "{shown} is not set (or empty): it should hold {whose} password. Set it in the environment or in \
                 .env in the working directory"
            ),
        )
    })
}
