//! Our variants: the commit loop (variants taking turns), checkpoints, peak RSS per quarter.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use sales_history::sample::SampleGenerator;
use sales_history::{Appender, Maintainer, MaintainerStats, SalesHistory};
use serde_json::{Value, json};

use crate::stats::{Dist, upper_median};
use crate::{Res, Settings, TENANT, Variant, host, table_setup};

/// One variant at one checkpoint.
#[derive(Debug, Clone)]
pub struct Row {
    pub variant: String,
    pub commits: u64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub plan_ms: f64,
    /// A plan by a fresh handle: every manifest read from storage, as another process or
    /// engine plans (the writer's handle keeps the manifests it read).
    pub plan_first_ms: f64,
    pub count_ms: f64,
    pub count_rows: u64,
    pub metadata_json_bytes: u64,
    pub metadata_files: u64,
    pub metadata_bytes: u64,
    pub live_data_files: u64,
    pub manifests: u64,
    pub snapshots: u64,
    /// Peak RSS of this process so far in the current quarter (ours only), kB.
    pub rss_peak_kb: Option<u64>,
    /// RSS of this process at the checkpoint (ours only), kB: what stays resident between
    /// the peaks.
    pub rss_kb: Option<u64>,
    /// The maintainer's counters (task only).
    pub maintainer: Option<Value>,
    /// Commit p50 of the window's commits that overlapped no maintenance run.
    pub p50_outside_runs_ms: f64,
    /// Commit p50 of those that overlapped one, and how many they were.
    pub p50_during_runs_ms: f64,
    pub commits_during_runs: usize,
}

impl Row {
    pub fn to_json(&self) -> Value {
        json!({
            "variant": self.variant, "commits": self.commits,
            "commit_p50_ms": self.commit_p50_ms, "commit_p99_ms": self.commit_p99_ms,
            "plan_ms": self.plan_ms, "plan_first_ms": self.plan_first_ms, "count_ms": self.count_ms, "count_rows": self.count_rows,
            "metadata_json_bytes": self.metadata_json_bytes,
            "metadata_files": self.metadata_files, "metadata_bytes": self.metadata_bytes,
            "live_data_files": self.live_data_files, "manifests": self.manifests,
            "snapshots": self.snapshots, "rss_peak_kb": self.rss_peak_kb, "rss_kb": self.rss_kb,
            "maintainer": self.maintainer,
            "commit_p50_outside_runs_ms": self.p50_outside_runs_ms,
            "commit_p50_during_runs_ms": self.p50_during_runs_ms,
            "commits_during_runs": self.commits_during_runs,
        })
    }

    /// A row the Python script printed.
    pub fn from_json(v: &Value) -> Res<Row> {
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let u = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(Row {
            variant: v["variant"]
                .as_str()
                .context("a row without `variant`")?
                .to_string(),
            commits: u("commits"),
            commit_p50_ms: f("commit_p50_ms"),
            commit_p99_ms: f("commit_p99_ms"),
            plan_ms: f("plan_ms"),
            plan_first_ms: f("plan_first_ms"),
            count_ms: f("count_ms"),
            count_rows: u("count_rows"),
            metadata_json_bytes: u("metadata_json_bytes"),
            metadata_files: u("metadata_files"),
            metadata_bytes: u("metadata_bytes"),
            live_data_files: u("live_data_files"),
            manifests: u("manifests"),
            snapshots: u("snapshots"),
            rss_peak_kb: None,
            rss_kb: None,
            maintainer: None,
            p50_outside_runs_ms: f64::NAN,
            p50_during_runs_ms: f64::NAN,
            commits_during_runs: 0,
        })
    }
}

/// What our variants' run produced.
#[derive(Debug)]
pub struct Soak {
    pub rows: Vec<Row>,
    /// Every commit's latency per variant, ms, in commit order.
    pub latencies: Vec<(Variant, Vec<f64>)>,
    /// Peak RSS of each quarter of the run, kB.
    pub quarter_peaks_kb: Vec<u64>,
    /// Whether the peaks were reset per quarter (else VmHWM since the start).
    pub peaks_reset: bool,
    /// The maintainer's final counters.
    pub maintainer: Option<MaintainerStats>,
}

struct Ours {
    variant: Variant,
    table: SalesHistory,
    /// Where the table's local catalog is (a fresh reader opens it there).
    warehouse: std::path::PathBuf,
    appender: Option<Appender>,
    maintainer: Option<Maintainer>,
    generator: SampleGenerator,
    /// The window's commits, as (start, end).
    window: Vec<(Instant, Instant)>,
    /// Maintenance runs seen to finish in this window, as (start, end).
    runs: Vec<(Instant, Instant)>,
    /// Runs the maintainer had finished when last looked at.
    runs_seen: u64,
    all: Vec<f64>,
}

pub async fn run(settings: &Settings, variants: &[Variant], root: &Path) -> Res<Soak> {
    let mut ours = Vec::new();
    for &variant in variants {
        let warehouse: PathBuf = root.join(variant.name());
        let table = table_setup::create(settings, variant, &warehouse).await?;
        let appender = if settings.appender {
            Some(
                table
                    .appender()
                    .max_rows(settings.rows.saturating_mul(1000))
                    .max_age(Duration::from_secs(3600))
                    .start()?,
            )
        } else {
            None
        };
        let maintainer = if variant == Variant::Task {
            Some(
                table
                    .maintainer()
                    .every(settings.maintain_every)
                    .after_commits(settings.maintain_after_commits)
                    .min_small_files(settings.min_small_files)
                    .orphans_older_than(Some(settings.orphans_older_than))
                    .orphans_every(settings.orphans_every)
                    .max_snapshots(settings.max_snapshots)
                    .start()?,
            )
        } else {
            None
        };
        ours.push(Ours {
            variant,
            table,
            warehouse: warehouse.clone(),
            appender,
            maintainer,
            generator: table_setup::generator(settings),
            window: Vec::new(),
            runs: Vec::new(),
            runs_seen: 0,
            all: Vec::with_capacity(settings.commits as usize),
        });
    }

    let n = settings.commits;
    let quarter = |q: u64| (n * q).div_ceil(4).max(1);
    let peaks_reset = host::reset_peak();
    let mut quarter_peaks = Vec::new();
    let mut next_quarter = 1;
    let mut rows = Vec::new();
    let started = Instant::now();
    let mut maintainer = None;
    let mut latencies = Vec::new();
    for i in 0..n {
        for o in ours.iter_mut().filter(|o| i < o.variant.commits(settings)) {
            let records = o.generator.take_records(settings.rows);
            let t = Instant::now();
            match &o.appender {
                Some(a) => {
                    for r in records {
                        a.push(r).await?;
                    }
                    a.flush().await?;
                }
                None => {
                    o.table.append(records).await?;
                }
            }
            let end = Instant::now();
            let ms = (end - t).as_secs_f64() * 1e3;
            if let Some(m) = &o.maintainer {
                let s = m.stats();
                if s.runs > o.runs_seen {
                    o.runs_seen = s.runs;
                    // The run ended at or before `end`: its span is approximate, on the late side.
                    o.runs
                        .push((end.checked_sub(s.last_run).unwrap_or(end), end));
                }
            }
            o.window.push((t, end));
            o.all.push(ms);
        }
        let done = i + 1;
        for o in ours.iter_mut().filter(|o| {
            let last = o.variant.commits(settings);
            done <= last && (done % settings.every == 0 || done == last)
        }) {
            let row = checkpoint(settings, o, done).await?;
            eprintln!("{}", progress(&row, started.elapsed()));
            rows.push(row);
        }
        // A variant stopped early (`--stop-after`) is closed now: its handle, with the caches
        // of a table that grew without the task, would otherwise stay in this process and in
        // every later quarter's peak RSS.
        let mut k = 0;
        while k < ours.len() {
            if done < n && done >= ours[k].variant.commits(settings) {
                let o = ours.remove(k);
                finish(o, &mut maintainer, &mut latencies).await?;
            } else {
                k += 1;
            }
        }
        while next_quarter <= 4 && done >= quarter(next_quarter) {
            quarter_peaks.push(host::proc_status_kb("VmHWM:").unwrap_or(0));
            next_quarter += 1;
            if peaks_reset {
                host::reset_peak();
            }
        }
    }

    for o in ours {
        finish(o, &mut maintainer, &mut latencies).await?;
    }
    Ok(Soak {
        rows,
        latencies,
        quarter_peaks_kb: quarter_peaks,
        peaks_reset,
        maintainer,
    })
}

/// Closes a variant's appender and maintainer and keeps its latencies.
async fn finish(
    o: Ours,
    maintainer: &mut Option<MaintainerStats>,
    latencies: &mut Vec<(Variant, Vec<f64>)>,
) -> Res<()> {
    if let Some(a) = o.appender {
        a.close().await?;
    }
    if let Some(m) = o.maintainer {
        *maintainer = Some(m.stop().await);
    }
    latencies.push((o.variant, o.all));
    Ok(())
}

/// One progress line on stderr.
fn progress(row: &Row, elapsed: Duration) -> String {
    format!(
        "[{:>7.1}s] {:<8} {:>6} commits: p50 {:.1} ms (outside runs {:.1}, during {:.1} × {}), p99 {:.1} ms, plan {:.1} ms (first {:.1}), count {:.1} ms, metadata.json {} B, metadata dir {} files {} B, {} data files, {} manifests, {} snapshots, RSS {} MB (peak {} MB){}",
        elapsed.as_secs_f64(),
        row.variant,
        row.commits,
        row.commit_p50_ms,
        row.p50_outside_runs_ms,
        row.p50_during_runs_ms,
        row.commits_during_runs,
        row.commit_p99_ms,
        row.plan_ms,
        row.plan_first_ms,
        row.count_ms,
        row.metadata_json_bytes,
        row.metadata_files,
        row.metadata_bytes,
        row.live_data_files,
        row.manifests,
        row.snapshots,
        row.rss_kb.unwrap_or(0) / 1024,
        row.rss_peak_kb.unwrap_or(0) / 1024,
        row.maintainer
            .as_ref()
            .map(|m| format!(", maintainer {m}"))
            .unwrap_or_default()
    )
}

/// How long `table` takes to plan the tenant-month scan, in ms.
async fn tenant_month_plan_ms(table: &SalesHistory, settings: &Settings) -> Res<f64> {
    let t = Instant::now();
    table
        .scan()
        .tenant(TENANT)
        .sold_between(settings.month_start, settings.month_end)
        .plan()
        .await?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The measurements of one variant after `commits` commits.
async fn checkpoint(settings: &Settings, o: &mut Ours, commits: u64) -> Res<Row> {
    let ms = |&(s, e): &(Instant, Instant)| (e - s).as_secs_f64() * 1e3;
    let dist = Dist::of(&o.window.iter().map(ms).collect::<Vec<_>>());
    let (during, outside): (Vec<_>, Vec<_>) = o
        .window
        .iter()
        .partition(|&&(s, e)| o.runs.iter().any(|&(rs, re)| s < re && rs < e));
    let during_p50 = Dist::of(&during.iter().copied().map(ms).collect::<Vec<_>>()).p50;
    let outside_p50 = Dist::of(&outside.iter().copied().map(ms).collect::<Vec<_>>()).p50;
    let commits_during_runs = during.len();
    o.window.clear();
    o.runs.clear();
    // The task variant's reads are timed right after a maintenance run (started now, so the
    // maintainer is idle for its `every`), as a service reading between runs sees the table:
    // packed into minutes, the runs would otherwise share the two cores with every read.
    // Twice: the first run to finish may be one that was under way (it started before the
    // last commits); the second started after them.
    if let Some(m) = &o.maintainer {
        let mut watch = m.watch();
        for _ in 0..2 {
            let runs = watch.borrow_and_update().runs;
            m.run_now();
            tokio::time::timeout(Duration::from_secs(600), watch.wait_for(|s| s.runs > runs))
                .await
                .context("no maintenance run within 10 minutes")??;
        }
    }
    let table = &o.table;
    // The first plan by a fresh reader (a new handle: every manifest read from storage, as
    // another process or engine reads the table); then the writer's handle, which keeps the
    // manifests it read and reads only those a commit added.
    let fresh = SalesHistory::open(
        &sales_history::CatalogConfig::local(&o.warehouse),
        crate::STAGE,
    )
    .await?;
    let plan_first_ms = tenant_month_plan_ms(&fresh, settings).await?;
    drop(fresh);
    let (mut plans, mut counts, mut count_rows) = (Vec::new(), Vec::new(), 0);
    for _ in 0..settings.reps {
        plans.push(tenant_month_plan_ms(table, settings).await?);
        let t = Instant::now();
        count_rows = table
            .scan()
            .tenant(TENANT)
            .sold_between(settings.month_start, settings.month_end)
            .count()
            .await?;
        counts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let live_data_files = table.scan().plan().await?.files.len() as u64;
    let meta = metadata_figures(table).await?;
    Ok(Row {
        variant: o.variant.name().to_string(),
        commits,
        commit_p50_ms: dist.p50,
        commit_p99_ms: dist.p99,
        plan_ms: upper_median(&plans),
        plan_first_ms,
        count_ms: upper_median(&counts),
        count_rows,
        metadata_json_bytes: meta.json_bytes,
        metadata_files: meta.files,
        metadata_bytes: meta.bytes,
        live_data_files,
        manifests: meta.manifests,
        snapshots: meta.snapshots,
        rss_peak_kb: host::proc_status_kb("VmHWM:"),
        rss_kb: host::proc_status_kb("VmRSS:"),
        maintainer: o.maintainer.as_ref().map(|m| maintainer_json(&m.stats())),
        p50_outside_runs_ms: outside_p50,
        p50_during_runs_ms: during_p50,
        commits_during_runs,
    })
}

pub fn maintainer_json(s: &MaintainerStats) -> Value {
    json!({
        "runs": s.runs, "failed_runs": s.failed_runs, "compactions": s.compactions,
        "files_compacted": s.files_compacted, "compaction_retries": s.compaction_retries,
        "snapshots_expired": s.snapshots_expired, "files_deleted": s.files_deleted,
        "last_run_s": s.last_run.as_secs_f64(), "last_error": s.last_error,
        "last_compaction_s": s.last_compaction.as_secs_f64(),
        "last_expiry_s": s.last_expiry.as_secs_f64(),
        "last_orphan_removal_s": s.last_orphan_removal.as_secs_f64(),
    })
}

struct MetadataFigures {
    json_bytes: u64,
    files: u64,
    bytes: u64,
    manifests: u64,
    snapshots: u64,
}

fn local(location: &str) -> PathBuf {
    PathBuf::from(location.strip_prefix("file://").unwrap_or(location))
}

/// The current metadata file, the metadata directory, the current snapshot's manifests. The
/// maintainer may commit (and delete old metadata files) meanwhile: a vanished file is read
/// again from a fresh table state.
async fn metadata_figures(table: &SalesHistory) -> Res<MetadataFigures> {
    let mut last_error = None;
    for _ in 0..5 {
        table.refresh().await?;
        let t = table.iceberg_table();
        let location = t.metadata_location().context("no metadata location")?;
        let json_bytes = match std::fs::metadata(local(location)) {
            Ok(m) => m.len(),
            Err(e) => {
                last_error = Some(anyhow::Error::from(e).context(location.to_string()));
                continue;
            }
        };
        let (manifests, snapshots) = match t.metadata().current_snapshot() {
            Some(s) => match t.manifest_list_reader(s).load().await {
                Ok(list) => (
                    list.entries().len() as u64,
                    t.metadata().snapshots().count(),
                ),
                Err(e) => {
                    last_error = Some(e.into());
                    continue;
                }
            },
            None => (0, 0),
        };
        let dir = local(t.metadata().location()).join("metadata");
        let (mut files, mut bytes) = (0, 0);
        for entry in std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .flatten()
        {
            if let Ok(m) = entry.metadata() {
                files += 1;
                bytes += m.len();
            }
        }
        return Ok(MetadataFigures {
            json_bytes,
            files,
            bytes,
            manifests,
            snapshots: snapshots as u64,
        });
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("metadata kept changing")))
}
