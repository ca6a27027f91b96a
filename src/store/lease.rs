//! Where a team lease lives in each kind of store (SPEC "Working as a team"): the one place that
//! knows the lease's key or item, beside the flags it guards, and the commands that take, renew,
//! release and break it. The engine (waiting, renewing, messages) is `crate::lease`'s.
//!
//! A lease is a small JSON document naming its holder, written only if no live lease is there:
//! - Redis: the key [`redis::lease::KEY`], set with `SET NX PX` (the server expires it), renewed
//!   and released by scripts that act only while it still holds this lease's exact text;
//! - DynamoDB: the item [`dynamodb::lease`] describes, put on condition that none is there or the
//!   one there has expired (an `expires` attribute, in milliseconds by the writers' clocks);
//! - a file store: an OS lock on a file beside the flag file, which ends with its process.
//!
//! A [`Spot`] carries what it needs to connect by itself, so the lease's own thread (which keeps
//! renewing it whatever the apply is doing) makes its own connections.

use super::dynamodb;
use super::redis;
pub use super::LeaseTaken as Taken;
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

/// One place a lease is taken: a Redis server, a DynamoDB table, a flag file.
#[derive(Clone)]
pub struct Spot {
    /// How messages name it (no secret): `redis://10.0.0.5:6379`, `dynamodb://ld-relay`, a path.
    pub shown: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Redis(Box<redis::lease::At>),
    Dynamo(dynamodb::Config),
    File(PathBuf),
}

/// A lease held in a spot: what releasing or renewing it needs (a file lease keeps its lock).
pub struct Holding {
    text: String,
    file: Option<File>,
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

    pub(super) fn file(flag_file: PathBuf) -> Spot {
        let name = flag_file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let lock = flag_file.with_file_name(format!(".{name}.relayctl-lease"));
        Spot {
            shown: lock.display().to_string(),
            kind: Kind::File(lock),
        }
    }

    /// Tries once to take the lease with the text `text`, good for `ttl`.
    pub async fn take(&self, text: &str, ttl: Duration) -> Result<(Taken, Option<Holding>)> {
        let holding = |file| Holding {
            text: text.to_owned(),
            file,
        };
        match &self.kind {
            Kind::Redis(at) => Ok(match at.take(text, ttl).await? {
                Taken::Ours => (Taken::Ours, Some(holding(None))),
                held => (held, None),
            }),
            Kind::Dynamo(config) => Ok(match dynamodb::lease::take(config, text, ttl).await? {
                Taken::Ours => (Taken::Ours, Some(holding(None))),
                held => (held, None),
            }),
            Kind::File(path) => {
                file_take(path, text).map(|(taken, file)| (taken, file.map(|f| holding(Some(f)))))
            }
        }
    }

    /// Extends the lease by `ttl`; `false` when it is no longer this run's (it expired and was
    /// taken, or was broken with `relayctl unlock`).
    pub async fn renew(&self, held: &Holding, ttl: Duration) -> Result<bool> {
        match &self.kind {
            Kind::Redis(at) => at.renew(&held.text, ttl).await,
            Kind::Dynamo(config) => dynamodb::lease::renew(config, &held.text, ttl).await,
            Kind::File(_) => Ok(true),
        }
    }

    /// Ends the lease, if it is still this run's.
    pub async fn release(&self, held: Holding) -> Result<()> {
        match &self.kind {
            Kind::Redis(at) => at.release(&held.text).await.map(|_| ()),
            Kind::Dynamo(config) => dynamodb::lease::release(config, &held.text).await.map(|_| ()),
            Kind::File(path) => {
                if let Some(mut file) = held.file {
                    let _ = file.set_len(0).and_then(|()| file.flush());
                    drop(file);
                }
                let _ = path;
                Ok(())
            }
        }
    }

    /// The lease there now (its text), if any is live.
    pub async fn read(&self) -> Result<Option<String>> {
        match &self.kind {
            Kind::Redis(at) => at.read().await,
            Kind::Dynamo(config) => dynamodb::lease::read(config).await,
            Kind::File(path) => match file_take(path, "")? {
                (Taken::Held(text, _), _) => Ok(text),
                (Taken::Ours, _) => Ok(None),
            },
        }
    }

    /// Breaks the lease whose exact text is `text` (`relayctl unlock`); `false` if it was not
    /// there any more. A file lease cannot be broken: it ends with its process.
    pub async fn break_lease(&self, text: &str) -> Result<bool> {
        match &self.kind {
            Kind::Redis(at) => at.release(text).await,
            Kind::Dynamo(config) => dynamodb::lease::release(config, text).await,
            Kind::File(path) => Err(anyhow!(
                "the lease {} is an OS lock held by a running process on this machine; it ends when that \
                 process ends, and cannot be broken",
                path.display()
            )),
        }
    }
}

/// Takes the OS lock on `path` without waiting, writing `text` in it; or what holds it.
fn file_take(path: &PathBuf, text: &str) -> Result<(Taken, Option<File>)> {
    let context = || format!("taking the lease {}", path.display());
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(context)?;
    match file.try_lock() {
        Ok(()) => {
            if text.is_empty() {
                return Ok((Taken::Ours, None));
            }
            file.set_len(0).with_context(context)?;
            file.rewind().with_context(context)?;
            file.write_all(text.as_bytes()).with_context(context)?;
            file.flush().with_context(context)?;
            Ok((Taken::Ours, Some(file)))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut held = String::new();
            let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut held));
            Ok((Taken::Held((!held.is_empty()).then_some(held), None), None))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow!(e).context(context())),
    }
}
