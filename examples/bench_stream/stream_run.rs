//! One stream run (single-record pushes through the appender, as fast as possible or paced)
//! and the per-event baseline (one `append` per event).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use sales_history::{
    CatalogConfig, SaleRecord, SalesHistory, SnapshotInfo, SourcePosition, TableOptions,
};
use serde_json::{Value, json};

use crate::data::inspect;
use crate::flush_log;
use crate::stats::{Dist, median};
use crate::{DIMENSION, Res, STAGE};

/// Appender settings of a run.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_buffered_bytes: usize,
    pub max_age: Duration,
}

impl Settings {
    pub fn to_json(self) -> Value {
        json!({"max_rows": self.max_rows, "max_bytes": self.max_bytes,
               "max_buffered_bytes": self.max_buffered_bytes, "max_age_s": self.max_age.as_secs_f64()})
    }
}

#[derive(Debug, Clone)]
pub struct StreamResult {
    pub label: String,
    pub rows: usize,
    pub rate: Option<usize>,
    pub settings: Settings,
    /// First push to `close` returned.
    pub elapsed_s: f64,
    /// First push to the last push returned.
    pub push_phase_s: f64,
    pub events_per_s: f64,
    pub in_mb_per_s: f64,
    pub written_bytes: u64,
    pub written_mb_per_s: f64,
    pub snapshots: usize,
    pub commits: u64,
    pub data_files: u64,
    pub metadata_files: u64,
    pub failed_flushes: u64,
    pub push: Dist,
    pub visible: Dist,
    /// Rows whose commit the watch channel never reported (should be 0).
    pub unobserved: usize,
    /// The appender's own timing of each flush (write + commit, conversion excluded).
    pub flush: Dist,
    pub flush_rows: f64,
    /// Paced run: snapshot cadence, the final `close` flush excluded.
    pub cadence: Option<Cadence>,
    /// Paced run: time from the oldest row of a unit + max_age to its commit (age flushes).
    pub commit_after_due: Option<Dist>,
    /// Paced run: visible latency confirmed by a fresh scan of a second handle.
    pub scan_visible: Option<Dist>,
    pub scan_checks: usize,
    pub scan_behind: usize,
    pub table_rows: u64,
    pub count_s: f64,
    pub metadata_json_bytes: u64,
}

impl StreamResult {
    pub fn files_per_event(&self) -> f64 {
        self.data_files as f64 / self.rows as f64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "label": self.label, "rows": self.rows, "rate": self.rate,
            "settings": self.settings.to_json(),
            "elapsed_s": self.elapsed_s, "push_phase_s": self.push_phase_s,
            "events_per_s": self.events_per_s, "in_mb_per_s": self.in_mb_per_s,
            "written_bytes": self.written_bytes, "written_mb_per_s": self.written_mb_per_s,
            "snapshots": self.snapshots, "commits": self.commits, "data_files": self.data_files,
            "metadata_files": self.metadata_files, "failed_flushes": self.failed_flushes,
            "data_files_per_event": self.files_per_event(),
            "push_latency": self.push.to_json(), "visible_latency": self.visible.to_json(),
            "unobserved_rows": self.unobserved,
            "flush_write_commit": self.flush.to_json(), "flush_rows_median": self.flush_rows,
            "cadence": self.cadence.map(Cadence::to_json),
            "commit_after_due": self.commit_after_due.map(Dist::to_json),
            "scan_visible_latency": self.scan_visible.map(Dist::to_json),
            "scan_checks": self.scan_checks, "scan_checks_behind": self.scan_behind,
            "table_rows": self.table_rows, "fresh_count_s": self.count_s,
            "metadata_json_bytes": self.metadata_json_bytes,
        })
    }
}

/// Per row: first time in `obs` (time, rows committed; in time order) that covers it, minus
/// its push time. Returns the latencies and the count of rows never covered.
fn cover_latencies(starts: &[Instant], obs: &[(Instant, u64)]) -> (Vec<f64>, usize) {
    let mut out = Vec::with_capacity(starts.len());
    let mut j = 0;
    let mut missing = 0;
    for (i, t0) in starts.iter().enumerate() {
        while j < obs.len() && obs[j].1 <= i as u64 {
            j += 1;
        }
        match obs.get(j) {
            Some((t, _)) => out.push(t.saturating_duration_since(*t0).as_secs_f64()),
            None => missing += 1,
        }
    }
    (out, missing)
}

/// How snapshots followed each other (their timestamps), the last one (the `close` flush)
/// excluded.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub snapshots: usize,
    pub min_gap_s: f64,
    pub mean_gap_s: f64,
    /// Most snapshots in any half-open 1-s window.
    pub max_in_1s: usize,
}

impl Cadence {
    pub fn of(snapshots: &[SnapshotInfo]) -> Cadence {
        let mut ms: Vec<i64> = snapshots
            .iter()
            .map(|s| s.committed_at.timestamp_millis())
            .collect();
        ms.sort_unstable();
        ms.pop();
        let gaps: Vec<f64> = ms.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e3).collect();
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..ms.len() {
            while ms[hi] - ms[lo] >= 1000 {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        Cadence {
            snapshots: ms.len(),
            min_gap_s: gaps.iter().copied().fold(f64::NAN, f64::min),
            mean_gap_s: if gaps.is_empty() {
                f64::NAN
            } else {
                gaps.iter().sum::<f64>() / gaps.len() as f64
            },
            max_in_1s: best,
        }
    }

    pub fn to_json(self) -> Value {
        json!({"age_snapshots": self.snapshots, "min_gap_s": self.min_gap_s,
               "mean_gap_s": self.mean_gap_s, "max_in_1s": self.max_in_1s})
    }
}

pub async fn stream_run(
    label: &str,
    dir: &Path,
    pool: &[SaleRecord],
    bytes_per_row: f64,
    rows: usize,
    rate: Option<usize>,
    settings: Settings,
) -> Res<StreamResult> {
    let config = CatalogConfig::local(dir);
    let options = TableOptions::default().embedding_dimension(DIMENSION);
    let table = SalesHistory::ensure_with(&config, STAGE, options).await?;
    let appender = table
        .appender()
        .max_rows(settings.max_rows)
        .max_bytes(settings.max_bytes)
        .max_buffered_bytes(settings.max_buffered_bytes)
        .max_age(settings.max_age)
        .start()?;

    // Commit observer on its own OS thread, so that a busy runtime does not delay it.
    let mut rx = appender.watch();
    let observer = std::thread::spawn(move || {
        let mut seen: Vec<(Instant, u64, u64)> = Vec::new();
        while futures::executor::block_on(rx.changed()).is_ok() {
            let stats = *rx.borrow_and_update();
            seen.push((Instant::now(), stats.committed_rows, stats.commits));
        }
        seen
    });
    // Paced run: a second handle scans after every commit (what a reader would see).
    let scanner = if rate.is_some() {
        let reader = SalesHistory::open(&config, STAGE).await?;
        let mut rx = appender.watch();
        Some(tokio::spawn(async move {
            let mut seen: Vec<(Instant, u64, u64)> = Vec::new();
            while rx.changed().await.is_ok() {
                let committed = rx.borrow_and_update().committed_rows;
                let count = reader.scan().count().await?;
                seen.push((Instant::now(), count, committed));
            }
            Res::Ok(seen)
        }))
    } else {
        None
    };

    let mut starts = Vec::with_capacity(rows);
    let mut push_lat = Vec::with_capacity(rows);
    let source = "bench:stream";
    flush_log::take();
    let begin = Instant::now();
    let interval = rate.map(|r| 1.0 / r as f64);
    for i in 0..rows {
        if let Some(interval) = interval {
            let due = begin + Duration::from_secs_f64(i as f64 * interval);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let record = pool[i % pool.len()].clone();
        let position = SourcePosition::at(source, i as u64)?;
        let t0 = Instant::now();
        appender.push_at(record, position).await?;
        let t1 = Instant::now();
        starts.push(t0);
        push_lat.push((t1 - t0).as_secs_f64());
    }
    let push_phase_s = begin.elapsed().as_secs_f64();
    let before_close = appender.stats();
    appender.close().await?;
    let elapsed_s = begin.elapsed().as_secs_f64();
    let flushes = flush_log::take();
    let observed = observer
        .join()
        .map_err(|_| anyhow!("the commit observer panicked"))?;
    let scans = match scanner {
        Some(h) => Some(h.await??),
        None => None,
    };

    let found = inspect(&config).await?;
    let (table_rows, written, meta_files) = (found.table_rows, found.written, found.metadata_files);
    let snapshots = &found.snapshots;
    let data_files: u64 = snapshots.iter().filter_map(|s| s.added_files).sum();
    let commits = observed.last().map_or(0, |o| o.2);
    let observed: Vec<(Instant, u64)> = observed.iter().map(|(t, n, _)| (*t, *n)).collect();
    let (visible, unobserved) = cover_latencies(&starts, &observed);
    let mut result = StreamResult {
        label: label.to_string(),
        rows,
        rate,
        settings,
        elapsed_s,
        push_phase_s,
        events_per_s: rows as f64 / elapsed_s,
        in_mb_per_s: rows as f64 * bytes_per_row / 1e6 / elapsed_s,
        written_bytes: written,
        written_mb_per_s: written as f64 / 1e6 / elapsed_s,
        snapshots: snapshots.len(),
        commits,
        data_files,
        metadata_files: meta_files,
        failed_flushes: before_close.failed_flushes,
        push: Dist::of(&push_lat),
        visible: Dist::of(&visible),
        flush: Dist::of(
            &flushes
                .iter()
                .map(|f| f.ms as f64 / 1e3)
                .collect::<Vec<_>>(),
        ),
        flush_rows: median(&flushes.iter().map(|f| f.rows as f64).collect::<Vec<_>>()),
        unobserved,
        cadence: None,
        commit_after_due: None,
        scan_visible: None,
        scan_checks: 0,
        scan_behind: 0,
        table_rows,
        count_s: found.count_s,
        metadata_json_bytes: found.metadata_json_bytes,
    };
    if rate.is_some() {
        result.cadence = Some(Cadence::of(snapshots));
        // Each unit's first row was pushed at starts[c_prev]; an age flush is due max_age later.
        let mut after_due = Vec::new();
        let mut prev = 0u64;
        for (t, committed) in &observed {
            if *committed > prev && (prev as usize) < starts.len() {
                let due = starts[prev as usize] + settings.max_age;
                after_due.push(t.saturating_duration_since(due).as_secs_f64());
            }
            prev = *committed;
        }
        // The last unit was flushed by close, not by age.
        after_due.pop();
        result.commit_after_due = Some(Dist::of(&after_due));
    }
    if let Some(scans) = scans {
        result.scan_checks = scans.len();
        result.scan_behind = scans.iter().filter(|(_, c, w)| c < w).count();
        let obs: Vec<(Instant, u64)> = scans.iter().map(|(t, c, _)| (*t, *c)).collect();
        let (lat, _) = cover_latencies(&starts, &obs);
        result.scan_visible = Some(Dist::of(&lat));
    }
    Ok(result)
}

#[derive(Debug, Clone)]
pub struct Baseline {
    pub events: usize,
    pub elapsed_s: f64,
    pub events_per_s: f64,
    pub written_bytes: u64,
    pub snapshots: usize,
    pub data_files: u64,
    pub metadata_files: u64,
    pub latency: Dist,
    pub first10: f64,
    pub last10: f64,
    pub table_rows: u64,
    pub count_s: f64,
    pub metadata_json_bytes: u64,
}

impl Baseline {
    pub fn files_per_event(&self) -> f64 {
        self.data_files as f64 / self.events as f64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "events": self.events, "elapsed_s": self.elapsed_s, "events_per_s": self.events_per_s,
            "written_bytes": self.written_bytes, "snapshots": self.snapshots,
            "data_files": self.data_files, "metadata_files": self.metadata_files,
            "data_files_per_event": self.files_per_event(), "append_latency": self.latency.to_json(),
            "median_first10_s": self.first10, "median_last10_s": self.last10,
            "table_rows": self.table_rows, "fresh_count_s": self.count_s,
            "metadata_json_bytes": self.metadata_json_bytes,
        })
    }
}

pub async fn baseline(dir: &Path, pool: &[SaleRecord], events: usize) -> Res<Baseline> {
    let config = CatalogConfig::local(dir);
    let options = TableOptions::default().embedding_dimension(DIMENSION);
    let table = SalesHistory::ensure_with(&config, STAGE, options).await?;
    let mut lat = Vec::with_capacity(events);
    let begin = Instant::now();
    for i in 0..events {
        let record = pool[i % pool.len()].clone();
        let t0 = Instant::now();
        table.append(vec![record]).await?;
        lat.push(t0.elapsed().as_secs_f64());
    }
    let elapsed_s = begin.elapsed().as_secs_f64();
    let found = inspect(&config).await?;
    let (table_rows, written, meta_files) = (found.table_rows, found.written, found.metadata_files);
    let snapshots = &found.snapshots;
    let k = 10.min(lat.len());
    Ok(Baseline {
        events,
        elapsed_s,
        events_per_s: events as f64 / elapsed_s,
        written_bytes: written,
        snapshots: snapshots.len(),
        data_files: snapshots.iter().filter_map(|s| s.added_files).sum(),
        metadata_files: meta_files,
        latency: Dist::of(&lat),
        first10: median(&lat[..k]),
        last10: median(&lat[lat.len() - k..]),
        table_rows,
        count_s: found.count_s,
        metadata_json_bytes: found.metadata_json_bytes,
    })
}
