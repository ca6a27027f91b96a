//! Ctrl-C and SIGTERM: finish the flag in hand, record it, then stop.
//!
//! A long apply or sync checks [`requested`] between flags, and its waits use [`sleep`], so an
//! interruption is prompt and never leaves a flag written to some stores but not journaled (or
//! synced to LaunchDarkly but not noted). A second signal exits at once (status 130); the
//! journal's write-ahead log then recovers what was written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handlers (once per process).
pub fn install() -> std::io::Result<()> {
    if FLAG.get().is_some() {
        return Ok(());
    }
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Order matters: the conditional exit sees the flag the first signal set.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    let _ = FLAG.set(flag);
    Ok(())
}

/// Whether an interruption was requested.
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// Sleeps for `duration`, waking early when an interruption is requested: `false` then. Waits
/// check the flag every 100 ms, so a Ctrl-C during a long wait takes effect at once.
/// A duration too long for the clock sleeps until interrupted.
pub async fn sleep(duration: std::time::Duration) -> bool {
    let started = tokio::time::Instant::now();
    loop {
        if requested() {
            return false;
        }
        let left = duration.saturating_sub(started.elapsed());
        if left.is_zero() {
            return true;
        }
        tokio::time::sleep(left.min(std::time::Duration::from_millis(100))).await;
    }
}

/// Resolves once an interruption is requested (checked every 100 ms), to race with work that
/// may be abandoned halfway, such as a GET.
pub async fn signalled() {
    while !requested() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
