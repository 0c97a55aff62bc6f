//! A compaction of a month's small files beside a writer committing every 100 ms.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sales_history::{CatalogConfig, SalesHistory};
use serde_json::{Value, json};

use crate::stats::Dist;
use crate::{Res, STAGE, Settings, Variant, report, table_setup};

/// The writer's pace.
const WRITER_EVERY: Duration = Duration::from_millis(100);
/// The target: the compaction lands within this.
pub const LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Beside {
    pub files_before: u64,
    pub elapsed: Duration,
    pub attempts: u32,
    pub files_removed: usize,
    pub files_added: usize,
    pub rows_rewritten: u64,
    /// Writer commits that landed while the compaction ran.
    pub writer_commits_during: usize,
    pub writer_commits: usize,
    pub writer: Dist,
    pub rows_ok: bool,
    /// The compaction's error, when it failed.
    pub error: Option<String>,
}

impl Beside {
    pub fn to_json(&self) -> Value {
        json!({
            "small_files_before": self.files_before,
            "compaction_s": self.elapsed.as_secs_f64(), "attempts": self.attempts,
            "files_removed": self.files_removed, "files_added": self.files_added,
            "rows_rewritten": self.rows_rewritten,
            "writer_commits_during_compaction": self.writer_commits_during,
            "writer_commits": self.writer_commits,
            "writer_commit_ms": {"p50": self.writer.p50 * 1e3, "p99": self.writer.p99 * 1e3, "max": self.writer.max * 1e3},
            "rows_match": self.rows_ok, "error": self.error,
        })
    }
}

pub async fn run(settings: &Settings, root: &Path) -> Res<Beside> {
    let warehouse = root.join("beside-writer");
    let table = table_setup::create(settings, Variant::Merge, &warehouse).await?;
    let mut generator = table_setup::generator(settings);
    for _ in 0..settings.beside_files {
        table.append(generator.take_records(settings.rows)).await?;
    }
    let files_before = table.scan().plan().await?.files.len() as u64;
    eprintln!(
        "beside-writer: {files_before} small files in the month; a writer appends {} rows every {} ms",
        settings.rows,
        WRITER_EVERY.as_millis()
    );

    // The writer: its own handle, as another process would have.
    let writer_table = SalesHistory::open(&CatalogConfig::local(&warehouse), STAGE).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let rows = settings.rows;
    let writer = {
        let stop = stop.clone();
        let mut generator = generator.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WRITER_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut commits: Vec<(Instant, Duration)> = Vec::new();
            while !stop.load(Ordering::Acquire) {
                tick.tick().await;
                let records = generator.take_records(rows);
                let t = Instant::now();
                writer_table.append(records).await?;
                commits.push((Instant::now(), t.elapsed()));
            }
            anyhow::Ok(commits)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let compaction = table.compact().await;
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Release);
    let commits = writer
        .await?
        .context("the writer's append failed beside the compaction")?;
    let (report, error) = match compaction {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(report::report(&e))),
    };
    let during = commits
        .iter()
        .filter(|(at, took)| *at >= started && at.checked_sub(*took).is_some_and(|s| s <= ended))
        .count();
    let expected = (settings.beside_files + commits.len()) as u64 * settings.rows as u64;
    table.refresh().await?;
    let rows_now = table.scan().count().await?;
    let out = Beside {
        files_before,
        elapsed: report.as_ref().map_or(ended - started, |r| r.elapsed),
        attempts: report.as_ref().map_or(0, |r| r.attempts),
        files_removed: report.as_ref().map_or(0, |r| r.files_removed),
        files_added: report.as_ref().map_or(0, |r| r.files_added),
        rows_rewritten: report.as_ref().map_or(0, |r| r.rows_rewritten),
        error,
        writer_commits_during: during,
        writer_commits: commits.len(),
        writer: Dist::of(
            &commits
                .iter()
                .map(|(_, d)| d.as_secs_f64())
                .collect::<Vec<_>>(),
        ),
        rows_ok: rows_now == expected,
    };
    eprintln!(
        "beside-writer: compaction {} {:.2} s, {} attempts, {} → {} files; {} writer commits during it; rows {} (expected {expected})",
        out.error
            .as_deref()
            .map_or("landed in".to_string(), |e| format!("FAILED ({e}) after")),
        out.elapsed.as_secs_f64(),
        out.attempts,
        out.files_removed,
        out.files_added,
        out.writer_commits_during,
        rows_now
    );
    Ok(out)
}
