//! Reading what a store holds, rather than what the overrides file declares: every flag of a
//! project/environment (or the named ones) on every endpoint, for `relayctl show` and
//! `relayctl import`.
//!
//! Planning reads only the declared flags ([`Stores::read`]); this lists a whole environment
//! through each backend's own `list` (Redis: HGETALL of the hash; DynamoDB: a Query of the
//! namespace; file: the file's `flags`). Like every read it never writes, and unlike planning
//! one unreachable endpoint does not hide what the others hold: each endpoint answers for itself.

use super::{Backend, Endpoint, FlagEndpoint, Raw, StoreConfig, StoreKind, Stores};
use crate::flag::{FlagId, Lookup};
use crate::kind::StoreTarget;
use anyhow::Result;
use futures::future::join_all;
use std::collections::{BTreeMap, BTreeSet};

/// What a backend holds in one project/environment: where it looked (a hash, a namespace, a
/// file) and each flag key with what it holds.
pub(crate) struct Listed {
    pub place: String,
    pub flags: Vec<(String, Raw)>,
}

/// What one endpoint holds in one project/environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// Where the flags were looked for, in words (`hash ld:default:production:features`).
    pub place: String,
    /// Every flag held there (or every flag asked for), by key.
    pub flags: BTreeMap<String, Lookup>,
}

impl FlagEndpoint {
    /// Every flag of `project`/`environment` this endpoint holds, or only `flags` when given.
    async fn list(&self, project: &str, environment: &str, flags: Option<&[String]>) -> Result<Listing> {
        if let Some(flags) = flags {
            let ids: Vec<FlagId> = flags
                .iter()
                .map(|flag| FlagId {
                    project: project.to_owned(),
                    environment: environment.to_owned(),
                    flag: flag.clone(),
                })
                .collect();
            let lookups = self.read(&ids.iter().collect::<Vec<_>>(), false).await?;
            return Ok(Listing {
                place: self.target_in(project, environment).to_string(),
                flags: flags.iter().cloned().zip(lookups).collect(),
            });
        }
        let listed = match &self.backend {
            Backend::Redis(r) => r.list(project, environment).await?,
            Backend::DynamoDb(d) => d.list(project, environment).await?,
            Backend::File(f) => f.list(project, environment).await?,
        };
        let flags = listed
            .flags
            .into_iter()
            .map(|(flag, raw)| (flag, Lookup::from(raw)))
            .collect();
        Ok(Listing {
            place: listed.place,
            flags,
        })
    }
}

impl Stores {
    /// What every endpoint holds in `project`/`environment` (every flag, or only `flags`), read
    /// concurrently; one result per endpoint, in the order of the overrides file, so an
    /// unreachable endpoint is reported without hiding the others.
    pub async fn list(
        &self,
        project: &str,
        environment: &str,
        flags: Option<&[String]>,
    ) -> Vec<(StoreTarget, Result<Listing>)> {
        let results = join_all(self.flags.iter().map(|e| e.list(project, environment, flags))).await;
        self.flags
            .iter()
            .map(|e| e.target_in(project, environment))
            .zip(results)
            .collect()
    }
}

impl StoreConfig {
    /// The project/environments this store names by an exact `[store.prefixes]` entry.
    pub fn environments(&self) -> BTreeSet<(String, String)> {
        match &self.kind {
            StoreKind::Redis(c) => c.prefix.exact.keys().cloned().collect(),
            StoreKind::DynamoDb(c) => c.prefix.exact.keys().cloned().collect(),
            StoreKind::File(_) => BTreeSet::new(),
        }
    }
}
