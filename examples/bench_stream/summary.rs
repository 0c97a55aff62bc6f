//! The printed report: each run's lines, the summary tables and the targets (HOLDS / MISSED).

use std::path::PathBuf;

use crate::Args;
use crate::contention::Contention;
use crate::figures::{fmt_n, fmt_s, verdict};
use crate::stats::median;
use crate::stream_run::{Baseline, StreamResult};

/// The lines of one stream run.
pub fn print_stream(r: &StreamResult) {
    println!(
        "  {}: {} rows in {:.2} s (pushes done at {:.2} s): {} events/s, {:.1} MB/s in, {:.1} MB/s written",
        r.label,
        fmt_n(r.rows as f64),
        r.elapsed_s,
        r.push_phase_s,
        fmt_n(r.events_per_s),
        r.in_mb_per_s,
        r.written_mb_per_s
    );
    println!(
        "    snapshots {}, data files {}, metadata files {} (metadata.json {:.1} KB), failed flushes {}, table rows {} ({}, fresh count() {})",
        r.snapshots,
        r.data_files,
        r.metadata_files,
        r.metadata_json_bytes as f64 / 1e3,
        r.failed_flushes,
        fmt_n(r.table_rows as f64),
        if r.table_rows == r.rows as u64 {
            "exact"
        } else {
            "NOT EXACT"
        },
        fmt_s(r.count_s)
    );
    println!(
        "    push p50 {} p99 {} p99.9 {} max {}; visible p50 {} p99 {} max {}{}",
        fmt_s(r.push.p50),
        fmt_s(r.push.p99),
        fmt_s(r.push.p999),
        fmt_s(r.push.max),
        fmt_s(r.visible.p50),
        fmt_s(r.visible.p99),
        fmt_s(r.visible.max),
        if r.unobserved > 0 {
            format!(" ({} rows never reported!)", r.unobserved)
        } else {
            String::new()
        }
    );
    println!(
        "    {} flushes of {} rows (median); the appender's timing of write + commit: p50 {} p99 {} max {}",
        r.flush.n,
        fmt_n(r.flush_rows),
        fmt_s(r.flush.p50),
        fmt_s(r.flush.p99),
        fmt_s(r.flush.max)
    );
    if let Some(d) = r.scan_visible {
        println!(
            "    seen by a fresh scan of a 2nd handle: p50 {} p99 {} max {} ({} scans, {} behind the commit)",
            fmt_s(d.p50),
            fmt_s(d.p99),
            fmt_s(d.max),
            r.scan_checks,
            r.scan_behind
        );
    }
    if let Some(d) = r.commit_after_due {
        println!(
            "    age flushes: commit landed p50 {} p99 {} max {} after due (oldest row + max_age)",
            fmt_s(d.p50),
            fmt_s(d.p99),
            fmt_s(d.max)
        );
    }
}

/// Everything measured, for the summary and the JSON document.
pub struct Report {
    pub fs: String,
    pub dir: PathBuf,
    pub sync_mb_s: Vec<f64>,
    pub fast: Vec<StreamResult>,
    pub paced: Option<StreamResult>,
    pub baseline: Option<Baseline>,
    pub contention: Vec<Contention>,
    /// One core's conversion and raw encoder rates, rows/s.
    pub limits: Option<(f64, f64)>,
}

/// Rows/s of two stages run one after the other on one core.
pub fn serial(a: f64, b: f64) -> f64 {
    1.0 / (1.0 / a + 1.0 / b)
}

/// The median of one figure over several runs.
pub fn med_of(rs: &[StreamResult], f: impl Fn(&StreamResult) -> f64) -> f64 {
    median(&rs.iter().map(f).collect::<Vec<_>>())
}

/// The summary tables, the targets and the contention table.
pub fn print_summary(args: &Args, rep: &Report) {
    let sync = median(&rep.sync_mb_s);
    if !rep.fast.is_empty() || rep.paced.is_some() {
        println!(
            "\n== summary ({} at {}; sync write {:.0} MB/s median of {}) ==",
            rep.fs,
            rep.dir.display(),
            sync,
            rep.sync_mb_s.len()
        );
        println!(
            "\n| run | events | events/s | MB/s in | MB/s written | of sync write | snapshots | data files | files/event | push p50 | push p99 | visible p99 |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    }
    let row = |name: String, r: &[StreamResult]| {
        let written = med_of(r, |x| x.written_mb_per_s);
        println!(
            "| {name} | {} | {} | {:.1} | {:.1} | {:.0}% | {:.0} | {:.0} | {:.5} | {} | {} | {} |",
            fmt_n(med_of(r, |x| x.rows as f64)),
            fmt_n(med_of(r, |x| x.events_per_s)),
            med_of(r, |x| x.in_mb_per_s),
            written,
            100.0 * written / sync,
            med_of(r, |x| x.snapshots as f64),
            med_of(r, |x| x.data_files as f64),
            med_of(r, StreamResult::files_per_event),
            fmt_s(med_of(r, |x| x.push.p50)),
            fmt_s(med_of(r, |x| x.push.p99)),
            fmt_s(med_of(r, |x| x.visible.p99)),
        );
    };
    if !rep.fast.is_empty() {
        let name = format!(
            "stream, as fast as possible ({}; median of {})",
            rep.fs,
            rep.fast.len()
        );
        row(name, &rep.fast);
    }
    if let Some(p) = &rep.paced {
        let name = format!(
            "stream at {}/s, max_age {} ({})",
            fmt_n(args.rate as f64),
            fmt_s(args.max_age.as_secs_f64()),
            rep.fs
        );
        row(name, std::slice::from_ref(p));
    }
    if let Some(b) = &rep.baseline {
        let written = b.written_bytes as f64 / 1e6 / b.elapsed_s;
        println!(
            "| one append per event ({}) | {} | {} | - | {:.1} | {:.1}% | {} | {} | {:.3} | {} | {} | {} |",
            rep.fs,
            fmt_n(b.events as f64),
            fmt_n(b.events_per_s),
            written,
            100.0 * written / sync,
            b.snapshots,
            b.data_files,
            b.files_per_event(),
            fmt_s(b.latency.p50),
            fmt_s(b.latency.p99),
            fmt_s(b.latency.p99),
        );
    }
    if !rep.fast.is_empty() || rep.paced.is_some() {
        println!(
            "\n(push p50/p99 of the baseline row: one `append` call; its row is visible when the call returns)"
        );
    }

    // Targets.
    if !rep.fast.is_empty() || rep.paced.is_some() {
        println!("\n== targets ==");
    }
    if !rep.fast.is_empty() {
        let eps = med_of(&rep.fast, |x| x.events_per_s);
        let written = med_of(&rep.fast, |x| x.written_mb_per_s);
        if rep.fs == "tmpfs" {
            println!(
                "as fast as possible on tmpfs: {} events/s (target >= 50,000) {}",
                fmt_n(eps),
                verdict(eps >= 50_000.0)
            );
        } else {
            println!(
                "as fast as possible on {}: {} events/s, {:.1} MB/s written = {:.0}% of the disk's sync write ({:.0} MB/s)",
                rep.fs,
                fmt_n(eps),
                written,
                100.0 * written / sync,
                sync
            );
        }
    }
    if let (Some((convert, encode)), false) = (rep.limits, rep.fast.is_empty()) {
        let eps = med_of(&rep.fast, |x| x.events_per_s);
        let one = serial(convert, encode);
        println!(
            "as fast as possible: {} events/s = {:.0}% of one core converting and encoding in turn ({} rows/s: conversion {}, raw encoder {})",
            fmt_n(eps),
            100.0 * eps / one,
            fmt_n(one),
            fmt_n(convert),
            fmt_n(encode)
        );
    }
    if let Some(p) = &rep.paced {
        // At most one snapshot per second: in T seconds at most ceil(T) snapshots.
        let allowed = p.elapsed_s.ceil() as usize;
        println!(
            "paced: {} snapshots in {:.2} s = {:.2} per second; at most one per second allows {allowed} {}",
            p.snapshots,
            p.elapsed_s,
            p.snapshots as f64 / p.elapsed_s,
            verdict(p.snapshots <= allowed)
        );
        if let Some(c) = p.cadence.filter(|c| c.snapshots >= 2) {
            println!(
                "paced: age flushes start >= max_age apart; their snapshots: mean gap {}, min gap {}, most in any 1 s window {} (commit-time jitter; final close flush excluded)",
                fmt_s(c.mean_gap_s),
                fmt_s(c.min_gap_s),
                c.max_in_1s
            );
        }
        if let Some(b) = &rep.baseline {
            let ratio = b.files_per_event() / p.files_per_event();
            println!(
                "paced: {:.5} data files per event vs {:.3} for one append per event: {}x fewer (target >= 50x) {}",
                p.files_per_event(),
                b.files_per_event(),
                fmt_n(ratio),
                verdict(ratio >= 50.0)
            );
        }
        let after_due = p.commit_after_due.map_or(f64::NAN, |d| d.p99);
        let bound = args.max_age.as_secs_f64() + after_due;
        if bound.is_nan() || p.flush.n < 2 {
            println!(
                "paced: visible p99 {}: too few age flushes in this run to compare with max_age + one commit",
                fmt_s(p.visible.p99)
            );
        } else {
            println!(
                "paced: visible p99 {} (max {}) vs max_age + one flush (p99 of due -> committed) = {} {}",
                fmt_s(p.visible.p99),
                fmt_s(p.visible.max),
                fmt_s(bound),
                verdict(p.visible.p99 <= bound)
            );
            let outside = p.commit_after_due.map_or(f64::NAN, |d| d.p50);
            println!(
                "paced: one flush p50 {} due -> committed, of which the appender's write + commit {}: {} before it (wake-up, records -> Arrow conversion)",
                fmt_s(outside),
                fmt_s(p.flush.p50),
                fmt_s(outside - p.flush.p50)
            );
        }
    }
    if let (Some(b), false) = (&rep.baseline, rep.fast.is_empty()) {
        let fast_fpe = med_of(&rep.fast, StreamResult::files_per_event);
        println!(
            "as fast as possible: {}x fewer data files per event than one append per event; {:.0}x the events/s",
            fmt_n(b.files_per_event() / fast_fpe),
            med_of(&rep.fast, |x| x.events_per_s) / b.events_per_s
        );
    }

    if !rep.contention.is_empty() {
        println!(
            "\n== contention: writer processes flushing every {} rows into one table ({} rows each){} ==",
            fmt_n(args.writer_flush_rows as f64),
            fmt_n(args.writer_rows as f64),
            if args.writer_refresh {
                ", refresh before each flush"
            } else {
                ""
            }
        );
        println!(
            "\n| catalog | writers | rows | commits | commits/s | rows/s | conflicts retried | commit p50 | commit p99 | rows exact |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|:-:|");
        for c in &rep.contention {
            println!(
                "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |",
                c.catalog,
                c.writers,
                fmt_n(c.rows as f64),
                c.commits,
                c.commits_per_s,
                fmt_n(c.rows_per_s),
                c.conflicts,
                fmt_s(c.commit.p50),
                fmt_s(c.commit.p99),
                if c.exact() {
                    "yes".to_string()
                } else {
                    format!("NO ({} in the table)", c.table_rows)
                }
            );
        }
        println!(
            "\n(commit = one `flush()`: Arrow conversion, Parquet write, catalog commit and its retries; p99 of a few dozen commits is close to the max)"
        );
    }
}
