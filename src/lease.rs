//! The team lock (SPEC "Working as a team"): before it writes, apply takes a lease in every
//! store it writes to, so operators on different machines never write the same stores at once,
//! and one who has to wait is told who is writing, from where, since when.
//!
//! Which stores: every store endpoint the plan writes to, all of them, taken one after the other
//! in one fixed order (their names as shown, sorted), the same on every machine whatever order
//! an overrides file lists them in. Taking all is what makes two applies exclude each other
//! whenever they share any store (two files may list different sets); the fixed order is what
//! keeps two of them from each holding one lease and waiting for the other's forever. A store
//! that cannot be reached is left without a lease, said out loud: its writes will fail too, and
//! every write is a compare-and-set anyway, so no lease is needed for correctness, only to
//! coordinate people.
//!
//! A lease lives for [`Options::ttl`] and is renewed every third of it by a thread of its own
//! (its own runtime and connections), whatever the apply is doing; a killed run stops renewing
//! and its lease expires by itself. Nothing ever breaks a lease by guessing that its holder is
//! dead (host names and process ids repeat across containers): it ends when released, when it
//! expires, or with `relayctl unlock ID`. The holder is named by the lease's JSON; whatever
//! another machine wrote there is read as hostile text ([`Holder::parse`]).

use crate::store::lease::{Holding, Spot, Taken};
use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// Who holds a lease: written as the lease's JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub id: String,
    /// The operator, `Name <email>`.
    pub holder: String,
    pub host: String,
    pub command: String,
    /// RFC 3339, seconds.
    pub started: String,
    pub pid: u32,
}

impl Holder {
    /// A new lease for `holder` running `command` on this host.
    pub fn new(holder: &str, command: &str) -> Holder {
        Holder {
            id: format!("{:012x}", fastrand::u64(..) >> 16),
            holder: holder.to_owned(),
            host: whoami::hostname().unwrap_or_else(|_| "unknown host".into()),
            command: command.to_owned(),
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            pid: std::process::id(),
        }
    }

    /// The lease read back from a store: its fields as plain one-line text, or `None` when it is
    /// not a lease relayctl wrote.
    pub fn parse(text: &str) -> Option<Holder> {
        let h: Holder = serde_json::from_str(text).ok()?;
        Some(Holder {
            id: plain(&h.id, 40),
            holder: plain(&h.holder, 120),
            host: plain(&h.host, 80),
            command: plain(&h.command, 120),
            started: plain(&h.started, 40),
            pid: h.pid,
        })
    }

    /// `lease 3f9a2c1b7d4e, held by Bob <bob@x> on host bastion-1 (pid 42) running `relayctl
    /// apply` since 2026-11-22T03:04:05Z`.
    pub fn describe(&self) -> String {
        format!(
            "lease {}, held by {} on host {} (pid {}) running `{}` since {}",
            self.id, self.holder, self.host, self.pid, self.command, self.started
        )
    }
}

/// `text` on one line, without control or invisible characters, at most `most` characters.
fn plain(text: &str, most: usize) -> String {
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    text.chars()
        .map(|c| if hostile(c) { '?' } else { c })
        .take(most)
        .collect()
}

/// How leases are taken.
pub struct Options<'a> {
    /// How long to wait for a lease another run holds (`--lock-timeout`).
    pub wait: Duration,
    /// How long a lease lives unless renewed.
    pub ttl: Duration,
    /// Told what relayctl is waiting for, once per lease waited for, and about stores left
    /// without a lease.
    pub say: &'a dyn Fn(&str),
    /// The file in the journal naming the lease its apply holds, written before any is taken
    /// and removed once all are released. It is read and written only under the journal's
    /// lock, an OS lock that ends with its process: a lease this file still names when the
    /// next apply of the journal starts was left by a run that has ended (killed), which that
    /// apply takes over instead of waiting for it to expire.
    pub record: Option<std::path::PathBuf>,
}

/// Leases held; renewed by their thread until released (dropped).
pub struct Leases {
    /// Whether taking it waited for another run's lease.
    pub waited: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Returns why a lease was lost while held, and whether every lease was released.
    thread: Option<std::thread::JoinHandle<(Option<String>, bool)>>,
    record: Option<std::path::PathBuf>,
}

/// What the lease thread tells the caller while taking.
enum Said {
    /// It waits for another run's lease (said).
    Waiting(String),
    /// Something to say: a lease taken over, a store left without one.
    Note(String),
    Taken,
    Busy(String),
}

/// Another run holds a lease past the wait.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Busy(pub String);

/// Takes a lease for `holder` in each of `spots` (deduplicated, in the fixed order), waiting up
/// to `options.wait` for each held by another run; fails with [`Busy`] naming that lease, having
/// released what it took.
pub fn take(mut spots: Vec<Spot>, holder: Holder, options: &Options) -> Result<Leases> {
    spots.sort_by_cached_key(Spot::place);
    spots.dedup_by(|a, b| a.place() == b.place());
    if spots.is_empty() {
        // Only file stores: nothing to take, no thread, no record.
        return Ok(Leases {
            waited: false,
            stop: None,
            thread: None,
            record: None,
        });
    }
    let text = serde_json::to_string(&holder)?;
    let left = match &options.record {
        Some(record) => left_by_a_killed_run(record, &text)?,
        None => Vec::new(),
    };
    let (said_tx, said) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (wait, ttl) = (options.wait, options.ttl);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let rt = match rt {
            Ok(rt) => rt,
            Err(e) => {
                let _ = said_tx.send(Said::Busy(format!("starting the lease thread: {e}")));
                return (None, true);
            }
        };
        rt.block_on(run(spots, (text, left), (wait, ttl), said_tx, stopped))
    });
    let mut leases = Leases {
        waited: false,
        stop: Some(stop),
        thread: Some(thread),
        record: options.record.clone(),
    };
    loop {
        match said.recv() {
            Ok(Said::Waiting(line)) => {
                leases.waited = true;
                (options.say)(&line)
            }
            Ok(Said::Note(line)) => (options.say)(&line),
            Ok(Said::Taken) => return Ok(leases),
            Ok(Said::Busy(why)) => {
                leases.release();
                return Err(Busy(why).into());
            }
            Err(_) => {
                leases.release();
                return Err(anyhow!("the lease thread stopped unexpectedly"));
            }
        }
    }
}

impl Leases {
    /// Releases every lease; returns why one was lost while held, if it was.
    pub fn release(&mut self) -> Option<String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let (lost, released) = match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(ended)) => ended,
            Some(Err(_)) => (None, false),
            None => (None, true),
        };
        // A lease that could not be released stays in the record, for the journal's next apply
        // to take over instead of waiting for it to expire.
        if let Some(record) = self.record.take().filter(|_| released) {
            let _ = std::fs::remove_file(record);
        }
        lost
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.release();
    }
}

/// The lease thread: takes each spot's lease in order, then renews them until told to stop,
/// then releases them. Returns why a lease was lost, if one was, and whether all were released.
async fn run(
    spots: Vec<Spot>,
    (text, left): (String, Vec<String>),
    (wait, ttl): (Duration, Duration),
    said: mpsc::Sender<Said>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> (Option<String>, bool) {
    let mut held: Vec<(Spot, Holding)> = Vec::new();
    for spot in spots {
        match take_one(&spot, (&text, &left), (wait, ttl), &said).await {
            Ok(Some(holding)) => held.push((spot, holding)),
            Ok(None) => {}
            Err(why) => {
                let _ = said.send(Said::Busy(why));
                return (None, release_all(held).await);
            }
        }
    }
    let _ = said.send(Said::Taken);
    let mut lost = None;
    // Renewed every third of its life until told to stop (or the caller is gone), at once.
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            () = tokio::time::sleep(ttl / 3) => {}
        }
        for (spot, holding) in &held {
            match spot.renew(holding, ttl).await {
                Ok(true) => {}
                Ok(false) if lost.is_none() => {
                    lost = Some(format!(
                        "the lease on {} was no longer this run's when it was renewed (it expired, or was broken \
                         with `relayctl unlock`)",
                        spot.shown
                    ))
                }
                _ => {}
            }
        }
    }
    let released = release_all(held).await;
    (lost, released)
}

/// Releases each lease; whether every one was seen deleted. A store that did not answer, or
/// answered that it holds no such lease (it expired, or a node demoted by a failover answered),
/// leaves the run's record in place: the record names only this run's own lease text, so the
/// journal's next apply takes over that lease if it is still somewhere, and nothing else.
async fn release_all(held: Vec<(Spot, Holding)>) -> bool {
    let mut all = true;
    for (spot, holding) in held.into_iter().rev() {
        all &= matches!(spot.release(holding).await, Ok(true));
    }
    all
}

/// Takes the lease of one spot, waiting up to `wait` for another run's; `None` when the store
/// cannot be reached (said); `Err` with the message when the wait runs out.
async fn take_one(
    spot: &Spot,
    (text, left): (&str, &[String]),
    (wait, ttl): (Duration, Duration),
    said: &mpsc::Sender<Said>,
) -> Result<Option<Holding>, String> {
    let started = Instant::now();
    let mut told = false;
    let mut took_over = false;
    loop {
        match spot.take(text, ttl).await {
            Ok((Taken::Ours, holding)) => return Ok(holding),
            // Another name of a server this run holds already (another user, say).
            Ok((Taken::Held(Some(other), _), _)) if other == text => return Ok(None),
            // Tried once: a lease that cannot be broken is waited for like any other.
            Ok((Taken::Held(Some(other), _), _)) if left.contains(&other) && !took_over => {
                took_over = true;
                let id = Holder::parse(&other).map_or_else(String::new, |h| h.id);
                if let Ok(true) = spot.break_lease(&other).await {
                    let _ = said.send(Said::Note(format!(
                        "Taking over lease {id} on {}: an apply of this journal took it and was killed (it no \
                         longer holds the journal's lock, so it has ended).",
                        spot.shown
                    )));
                }
            }
            Ok((Taken::Held(other, left), _)) => {
                let who = other
                    .as_deref()
                    .and_then(Holder::parse)
                    .map_or_else(|| "a lease relayctl cannot read".to_owned(), |h| h.describe());
                let left = left.map_or(String::new(), |l| {
                    format!("; it expires in {}s unless its run renews it", l.as_secs().max(1))
                });
                if started.elapsed() >= wait {
                    return Err(busy(spot, &who, &left, wait, other.as_deref()));
                }
                if crate::interrupt::requested() {
                    return Err(format!(
                        "interrupted while waiting for the team lock on {} ({who})",
                        spot.shown
                    ));
                }
                if !told {
                    let _ = said.send(Said::Waiting(format!(
                        "Waiting up to {}s (--lock-timeout) for the team lock on {}: {who}{left}...",
                        wait.as_secs(),
                        spot.shown
                    )));
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                let _ = said.send(Said::Note(no_lease(spot, &e)));
                return Ok(None);
            }
        }
    }
}

/// The warning for a store where no lease could be taken: refused by the store's permissions
/// (the apply goes on: its writes may well be allowed), or not answering (they will likely fail).
fn no_lease(spot: &Spot, e: &anyhow::Error) -> String {
    let why = format!("{e:#}");
    let refused = why.contains("NOPERM") || why.contains("AccessDenied");
    let next = match refused {
        true => {
            "the store refused it: allow relayctl's user the lease (Redis ACL: the key \
                 relayctl-team-lease; DynamoDB: PutItem and DeleteItem on its table) so that applies from \
                 other machines wait for this one"
        }
        false => "its writes are likely to fail too",
    };
    format!(
        "warning: no team lock taken on {} ({why}); {next}. Each write is a compare-and-set, so none can \
         overwrite another operator's",
        spot.shown
    )
}

/// The leases `record` names (left by an apply of the journal that has ended: see
/// [`Options::record`]), once `text`, this run's lease, is written there in their place.
fn left_by_a_killed_run(record: &std::path::Path, text: &str) -> Result<Vec<String>> {
    use anyhow::Context;
    use std::io::Write;
    let left = match std::fs::read_to_string(record) {
        Ok(found) => found.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", record.display())),
    };
    let mut file = std::fs::File::create(record).with_context(|| format!("writing {}", record.display()))?;
    // Not synced to disk: it serves after a killed process, whose writes the kernel keeps; after a
    // crash of the machine the lease expires by itself.
    file.write_all(format!("{text}\n").as_bytes())
        .with_context(|| format!("writing {}", record.display()))?;
    Ok(left)
}

fn busy(spot: &Spot, who: &str, left: &str, wait: Duration, text: Option<&str>) -> String {
    let id = text.and_then(Holder::parse).map_or("<id>".to_owned(), |h| h.id);
    format!(
        "another operator is applying to {}: {who}{left}. Waited {}s (--lock-timeout); nothing was written. \
         Run this again once that apply is done (`relayctl plan` then shows what is left), or wait longer \
         with --lock-timeout. If that run crashed, its lease expires by itself once it stops being renewed; \
         to end it sooner, make sure it is not running and run `relayctl unlock {id}`",
        spot.shown,
        wait.as_secs()
    )
}

/// Breaks the lease `id` wherever it is among `spots` (`relayctl unlock`): the holders broken,
/// by where; none when no such lease is held.
pub async fn unlock(spots: &[Spot], id: &str) -> Result<Vec<(String, Holder)>> {
    let mut broken = Vec::new();
    let mut failures = Vec::new();
    for spot in spots {
        let text = match spot.read().await {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(e) => {
                failures.push(format!("{}: {e:#}", spot.shown));
                continue;
            }
        };
        match Holder::parse(&text) {
            Some(h) if h.id == id && spot.break_lease(&text).await? => broken.push((spot.shown.clone(), h)),
            _ => {}
        }
    }
    if broken.is_empty() && !failures.is_empty() {
        return Err(anyhow!(
            "no lease {id} was found, and some stores could not be read:\n  {}",
            failures.join("\n  ")
        ));
    }
    Ok(broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_holder_reads_back_as_plain_text() {
        let mut h = Holder::new("Eve \u{1b}[2J <eve@x>\nForged: yes", "relayctl apply");
        h.host = "host\u{202e}gnp".into();
        let text = serde_json::to_string(&h).unwrap();
        let back = Holder::parse(&text).unwrap();
        let shown = back.describe();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\n') && !shown.contains('\u{202e}'),
            "{shown}"
        );
        assert_eq!(back.id, h.id);
        assert!(Holder::parse("not json \u{1b}[2J").is_none());
    }
}
