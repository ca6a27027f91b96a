//! The topology settings of a Redis store: `sentinels` + `master` instead of `url`/`urls`, or
//! `cluster = true` (SPEC §1 "Plain Redis keys and Redis topologies").

use super::{Located, RawStore};
use crate::store::redis;

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
