//! Where a team lease lives in each kind of store (SPEC "Working as a team"): the one place that
//! knows the lease's key or item, beside the flags it guards, and the commands that take, renew,
//! release and break it. The engine (waiting, renewing, messages) is `crate::lease`'s.
//!
//! A lease is a small JSON document naming its holder, written only if no live lease is there:
//! - Redis: the key [`redis::lease::KEY`], set with `SET NX PX` (the server expires it), renewed
//!   and released by scripts that act only while it still holds this lease's exact text;
//! - DynamoDB: the item [`dynamodb::lease`] describes, put on condition that none is there or the
//!   one there has expired (an `expires` attribute, in milliseconds by the writers' clocks);
//! - a file store has none: it is on one machine, where the journal's own lock keeps applies apart.
//!
//! A [`Spot`] carries what it needs to connect by itself, so the lease's own thread (which keeps
//! renewing it whatever the apply is doing) makes its own connections.

use super::dynamodb;
use super::redis;
pub use super::LeaseTaken as Taken;
use anyhow::Result;
use std::time::Duration;

/// One place a lease is taken: a Redis server or a DynamoDB table.
#[derive(Clone)]
pub struct Spot {
    /// How messages name it (no secret): `redis://10.0.0.5:6379`, `dynamodb://ld-relay`.
    pub shown: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Redis(Box<redis::lease::At>),
    Dynamo(dynamodb::Config),
}

/// A lease held in a spot: its exact text, which renewing and releasing it check.
pub struct Holding {
    text: String,
}

impl Spot {
    pub(super) fn redis(at: redis::lease::At, shown: String) -> Spot {
        Spot {
            shown,
            kind: Kind::Redis(Box::new(at)),
        }
    }

    pub(super) fn dynamo(config: dynamodb::Config, shown: String) -> Spot {
        Spot {
            shown,
            kind: Kind::Dynamo(config),
        }
    }

    /// Where the lease lives, for ordering and deduplicating spots: [`Self::shown`] without the
    /// user name, so two names of one server (two users, two prefixes) are one place.
    pub fn place(&self) -> String {
        match self.shown.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}"),
                None => self.shown.clone(),
            },
            None => self.shown.clone(),
        }
    }

    /// Tries once to take the lease with the text `text`, good for `ttl`.
    pub async fn take(&self, text: &str, ttl: Duration) -> Result<(Taken, Option<Holding>)> {
        let holding = || Holding {
            text: text.to_owned(),
        };
        match &self.kind {
            Kind::Redis(at) => Ok(match at.take(text, ttl).await? {
                Taken::Ours => (Taken::Ours, Some(holding())),
                held => (held, None),
            }),
            Kind::Dynamo(config) => Ok(match dynamodb::lease::take(config, text, ttl).await? {
                Taken::Ours => (Taken::Ours, Some(holding())),
                held => (held, None),
            }),
        }
    }

    /// Extends the lease by `ttl`; `false` when it is no longer this run's (it expired and was
    /// taken, or was broken with `relayctl unlock`).
    pub async fn renew(&self, held: &Holding, ttl: Duration) -> Result<bool> {
        match &self.kind {
            Kind::Redis(at) => at.renew(&held.text, ttl).await,
            Kind::Dynamo(config) => dynamodb::lease::renew(config, &held.text, ttl).await,
        }
    }

    /// Ends the lease, if it is still this run's; whether it was (and is now deleted).
    pub async fn release(&self, held: Holding) -> Result<bool> {
        match &self.kind {
            Kind::Redis(at) => at.release(&held.text).await,
            Kind::Dynamo(config) => dynamodb::lease::release(config, &held.text).await,
        }
    }

    /// The lease there now (its text), if any is live.
    pub async fn read(&self) -> Result<Option<String>> {
        match &self.kind {
            Kind::Redis(at) => at.read().await,
            Kind::Dynamo(config) => dynamodb::lease::read(config).await,
        }
    }

    /// Breaks the lease whose exact text is `text` (`relayctl unlock`); `false` if it was not
    /// there any more.
    pub async fn break_lease(&self, text: &str) -> Result<bool> {
        match &self.kind {
            Kind::Redis(at) => at.release(text).await,
            Kind::Dynamo(config) => dynamodb::lease::release(config, text).await,
        }
    }
}
