//! Measurement, not a test: journals N commits over N distinct flags of one environment through
//! the real [`Writer`] (write-ahead log, mempack, packfiles), then reads them back as `log` and
//! `sync` do, printing wall times and the process's peak memory. Run one size per process, in a
//! release build, so the peak is that size's:
//!
//! `RELAYCTL_BENCH_COMMITS=10000 cargo test --release --lib journal::bench -- --ignored --nocapture`
//! (`RELAYCTL_BENCH_DIR=<dir>` keeps the journal in `<dir>/journal`).

use super::message::tests::entry;
use super::*;
use crate::flag::Flag;
use std::time::Instant;

/// The process's peak resident memory so far, in MiB (Linux: `VmHWM`).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[test]
#[ignore = "a measurement: run it on its own, in a release build"]
#[allow(clippy::disallowed_macros)] // it prints its measurement
fn journal_commits_over_distinct_flags() {
    let n: usize = std::env::var("RELAYCTL_BENCH_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // RELAYCTL_BENCH_DIR keeps the journal (at <dir>/journal), e.g. to time `relayctl log` on it.
    let dir = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("RELAYCTL_BENCH_DIR").map(std::path::PathBuf::from);
    let path = kept.unwrap_or_else(|| dir.path().to_owned()).join("journal");
    let mut j = Journal::open_locked(&path, &test_options()).unwrap();
    let started = Instant::now();
    j.write(|w| {
        for i in 0..n {
            let mut e = entry();
            e.record.id.flag = format!("flag-{i:05}");
            let mut begun = e.clone();
            begun.written.clear();
            begun.failed.clear();
            let intent = w.begin::<Flag>(&begun.record, vec![(e.written[0].0.clone(), 41)])?;
            w.finish(&intent, &e)?;
        }
        Ok(())
    })
    .unwrap();
    let commits = started.elapsed();
    let peak = peak_mib();
    let started = Instant::now();
    let checkout = j.close();
    let close = started.elapsed();
    assert_eq!(checkout, None);
    let j = Journal::open_existing(&path).unwrap().unwrap();
    let started = Instant::now();
    let listed = j.entries().unwrap();
    let read = started.elapsed();
    assert_eq!(listed.len(), n);
    let pack: u64 = std::fs::read_dir(path.join(".git/objects/pack"))
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "journal bench: {n} commits in {:.2} s (peak {peak:.0} MiB), working tree {:.2} s, \
         read back (entries) {:.2} s, packs {:.1} MB, final peak {:.0} MiB",
        commits.as_secs_f64(),
        close.as_secs_f64(),
        read.as_secs_f64(),
        pack as f64 / 1e6,
        peak_mib()
    );
}
