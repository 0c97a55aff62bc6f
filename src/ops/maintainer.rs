//! [`Maintainer`]: the maintenance task a service runs beside its writers, so that a table
//! committed to every second stays fast for months.
//!
//! On a schedule ([`MaintainerBuilder::every`]) or after a number of commits by anyone
//! ([`MaintainerBuilder::after_commits`]), one run:
//!
//! 1. **compacts** the months with many small files ([`Compact`](super::Compact) with
//!    [`min_small_files`](MaintainerBuilder::min_small_files)), the month written last first,
//!    one `replace` snapshot per month (a conflict with a concurrent append is re-applied
//!    cheaply by the commit loop; a run never blocks or fails an append);
//! 2. **updates the vector index** when the table has one ([`MaintainerBuilder::index_embeddings`]):
//!    the files appended or compacted since the last run get their entries;
//! 3. **expires snapshots** by the table's retention properties
//!    (`history.expire.max-snapshot-age-ms`, `history.expire.min-snapshots-to-keep`) and
//!    beyond the [`max_snapshots`](MaintainerBuilder::max_snapshots) most recent ones (default
//!    [`DEFAULT_MAX_SNAPSHOTS`]: `metadata.json` holds every snapshot, so age alone does not
//!    bound it under a writer that commits every second);
//! 4. **removes orphan files** older than [`orphans_older_than`](MaintainerBuilder::orphans_older_than)
//!    (default 1 day: never a file an in-flight commit may still reference).
//!
//! Each run's errors are counted and logged ([`MaintainerStats`], `tracing`), never returned
//! to a writer; the next run tries again. On S3 Tables the service manages all of this
//! itself: the task says so once and does nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

use crate::table::SalesHistory;

/// How many snapshots a [`Maintainer`] keeps at most by default (whatever their age):
/// with the default `after_commits` (100), a table holds at most ~250 snapshots between runs
/// (`metadata.json` ≈ 220 KiB); time travel reaches back at least this many commits.
pub const DEFAULT_MAX_SNAPSHOTS: usize = 150;

/// Counters of a [`Maintainer`], published after every run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MaintainerStats {
    /// Runs finished (successful or not).
    pub runs: u64,
    /// Runs in which a step failed (the error is in `last_error`).
    pub failed_runs: u64,
    /// Compaction snapshots committed.
    pub compactions: u64,
    /// Small files compacted away.
    pub files_compacted: u64,
    /// Commit attempts the compactions took beyond the first (conflicts with writers, retried).
    pub compaction_retries: u64,
    /// Snapshots expired.
    pub snapshots_expired: u64,
    /// Files deleted (by expiry and orphan removal).
    pub files_deleted: u64,
    /// Rows added to the vector index by the runs (see [`MaintainerBuilder::index_embeddings`]).
    pub rows_indexed: u64,
    /// How long the last run's index step took.
    pub last_index: Duration,
    /// The last error of a step, in words.
    pub last_error: Option<String>,
    /// Whether the catalog manages maintenance itself (S3 Tables): the task does nothing.
    pub managed_by_catalog: bool,
    /// How long the last run took.
    pub last_run: Duration,
    /// How long the last run's compaction step took.
    pub last_compaction: Duration,
    /// How long the last run's expiry step took.
    pub last_expiry: Duration,
    /// How long the last orphan removal took (it runs at most every
    /// [`orphans_every`](MaintainerBuilder::orphans_every)).
    pub last_orphan_removal: Duration,
}

/// Configures a [`Maintainer`]; built by [`SalesHistory::maintainer`].
#[derive(Debug, Clone)]
#[must_use = "a maintainer builder does nothing until `start` is called"]
pub struct MaintainerBuilder {
    table: SalesHistory,
    every: Duration,
    after_commits: Option<u64>,
    min_small_files: usize,
    compact: bool,
    expire: bool,
    snapshot_max_age: Option<Duration>,
    max_snapshots: Option<usize>,
    orphans_older_than: Option<Duration>,
    orphans_every: Duration,
    index: Option<bool>,
}

/// How often the task removes orphans by default: listing the table's files and reading
/// every live snapshot's manifests costs far more than a compaction of a month's new files.
pub const DEFAULT_ORPHANS_EVERY: Duration = Duration::from_secs(3600);

impl MaintainerBuilder {
    pub(crate) fn new(table: SalesHistory) -> Self {
        MaintainerBuilder {
            table,
            every: Duration::from_secs(300),
            after_commits: Some(100),
            min_small_files: 8,
            compact: true,
            expire: true,
            snapshot_max_age: None,
            max_snapshots: Some(DEFAULT_MAX_SNAPSHOTS),
            orphans_older_than: Some(Duration::from_secs(24 * 3600)),
            orphans_every: DEFAULT_ORPHANS_EVERY,
            index: None,
        }
    }

    /// Whether runs update the vector index ([`SalesHistory::index_embeddings`]) after
    /// compacting: files appended or compacted since the last run get their entries, segments
    /// of removed files go. Default (`None`): only when the table already has an index — a
    /// table nobody indexed is not indexed behind its back. A new file waits for its entries
    /// until the next run (it is searched exactly meanwhile).
    pub fn index_embeddings(mut self, on: Option<bool>) -> Self {
        self.index = on;
        self
    }

    /// Run at least this often (default 5 minutes).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    /// Also run once this many commits (by any writer) landed since the last run (default
    /// 100; `None`: on the schedule only).
    pub fn after_commits(mut self, commits: Option<u64>) -> Self {
        self.after_commits = commits;
        self
    }

    /// Compact a month once it has this many small files (default 8, at least 2).
    pub fn min_small_files(mut self, files: usize) -> Self {
        self.min_small_files = files.max(2);
        self
    }

    /// Whether runs compact (default yes).
    pub fn compact(mut self, on: bool) -> Self {
        self.compact = on;
        self
    }

    /// Whether runs expire snapshots by the table's retention properties (default yes).
    pub fn expire(mut self, on: bool) -> Self {
        self.expire = on;
        self
    }

    /// Expire snapshots older than this (instead of the table's
    /// `history.expire.max-snapshot-age-ms`; the table's minimum count still applies).
    pub fn snapshot_max_age(mut self, age: Duration) -> Self {
        self.snapshot_max_age = Some(age);
        self
    }

    /// Keep at most this many snapshots, whatever their age (default
    /// [`DEFAULT_MAX_SNAPSHOTS`]; `None`: age and the table's minimum count only). See
    /// [`ExpireSnapshots::keep_at_most`](super::ExpireSnapshots::keep_at_most).
    pub fn max_snapshots(mut self, n: Option<usize>) -> Self {
        self.max_snapshots = n.map(|n| n.max(1));
        self
    }

    /// Remove orphan files older than this (default 1 day; `None`: never). Keep it well
    /// above the longest a commit may take: an uncommitted write's files look like orphans.
    pub fn orphans_older_than(mut self, age: Option<Duration>) -> Self {
        self.orphans_older_than = age;
        self
    }

    /// Remove orphans at most this often (default [`DEFAULT_ORPHANS_EVERY`], an hour; the
    /// first run always does). Orphans are what failed writes leave; expiry and the commit
    /// loop delete everything else, so a rare sweep is enough.
    pub fn orphans_every(mut self, interval: Duration) -> Self {
        self.orphans_every = interval;
        self
    }

    /// Starts the task on the current tokio runtime.
    pub fn start(self) -> Result<Maintainer> {
        if self.every.is_zero() {
            return Err(Error::config("every", "must be longer than zero"));
        }
        if self.after_commits == Some(0) {
            return Err(Error::config("after_commits", "must be at least 1"));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::config("maintainer", "must be started inside a tokio runtime"))?;
        let shared = Arc::new(Shared {
            config: self,
            stop: Notify::new(),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            stats: Mutex::new(MaintainerStats::default()),
            last_orphan_removal: Mutex::new(None),
            watch: tokio::sync::watch::Sender::new(MaintainerStats::default()),
        });
        let task = runtime.spawn(background(shared.clone()));
        Ok(Maintainer {
            shared,
            task: Some(task),
        })
    }
}

/// The running maintenance task, started by [`SalesHistory::maintainer`](crate::SalesHistory::maintainer):
/// on a schedule or after N commits it compacts the months with many small files (newest
/// first, one `replace` snapshot per month), expires snapshots by the table's retention and
/// removes orphans older than a safe age; it never blocks or fails an append, and does
/// nothing on S3 Tables (whose service does this). Stoppable with [`stop`](Self::stop) (or by
/// dropping it), observable with [`stats`](Self::stats) and [`watch`](Self::watch).
#[derive(Debug)]
pub struct Maintainer {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    config: MaintainerBuilder,
    stop: Notify,
    wake: Notify,
    stopped: AtomicBool,
    stats: Mutex<MaintainerStats>,
    /// When orphans were last removed.
    last_orphan_removal: Mutex<Option<Instant>>,
    watch: tokio::sync::watch::Sender<MaintainerStats>,
}

impl Maintainer {
    /// The counters so far.
    pub fn stats(&self) -> MaintainerStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A receiver that sees the counters after every run.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<MaintainerStats> {
        self.shared.watch.subscribe()
    }

    /// Starts a run now (if none is running; otherwise the next one starts right after).
    pub fn run_now(&self) {
        self.shared.wake.notify_one();
    }

    /// Stops the task after the step it is in (a compaction or expiry in flight finishes or
    /// fails as a whole: the table is never left half-changed) and returns the counters.
    pub async fn stop(mut self) -> MaintainerStats {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.stats()
    }
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.shared.stopped.store(true, Ordering::Release);
            self.shared.stop.notify_one();
            task.abort();
        }
    }
}

/// Waits for the schedule, a commit count, a `run_now` or a stop; runs; repeats.
async fn background(shared: Arc<Shared>) {
    let config = &shared.config;
    let table = &config.table;
    if !table.swap().may_delete_files() {
        tracing::info!(
            table = %table.name(),
            "maintenance is managed by S3 Tables (compaction, snapshot expiry, unreferenced-file \
             removal): this task does nothing"
        );
        {
            let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.managed_by_catalog = true;
            shared.watch.send_replace(stats.clone());
        }
        shared.stop.notified().await;
        return;
    }
    let mut last_run = Instant::now();
    let mut sequence_at_last_run = table.current().metadata().last_sequence_number();
    // How often the commit count is looked at (one catalog read).
    let poll = config.every.min(Duration::from_secs(1));
    loop {
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            _ = shared.stop.notified() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {
                let due_by_time = last_run.elapsed() >= config.every;
                let due_by_commits = match config.after_commits {
                    Some(n) if table.refresh().await.is_ok() => {
                        let seq = table.current().metadata().last_sequence_number();
                        seq.saturating_sub(sequence_at_last_run) >= i64::try_from(n).unwrap_or(i64::MAX)
                    }
                    _ => false,
                };
                if !due_by_time && !due_by_commits {
                    continue;
                }
            }
        }
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let started = Instant::now();
        let outcome = run_once(&shared).await;
        last_run = Instant::now();
        sequence_at_last_run = table.current().metadata().last_sequence_number();
        let stats = {
            let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.runs += 1;
            stats.last_run = started.elapsed();
            if let Err(e) = &outcome {
                stats.failed_runs += 1;
                stats.last_error = Some(e.to_string());
            }
            stats.clone()
        };
        if let Err(e) = &outcome {
            tracing::warn!(table = %table.name(), error = %e, retryable = e.is_retryable(), "maintenance run failed; the next run tries again");
        }
        tracing::info!(table = %table.name(), ?stats, "maintenance run");
        shared.watch.send_replace(stats);
    }
}

/// One run: compaction month by month (newest first), expiry, orphan removal. Every step
/// runs; the first error is returned after the others.
async fn run_once(shared: &Shared) -> Result<()> {
    let config = &shared.config;
    let table = &config.table;
    let mut first_error = None;
    let timed = |step: fn(&mut MaintainerStats) -> &mut Duration, since: Instant| {
        let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
        *step(&mut stats) = since.elapsed();
    };
    if config.compact {
        let t = Instant::now();
        match compact_months(shared).await {
            Ok(()) => {}
            Err(e) => first_error = first_error.or(Some(e)),
        }
        timed(|s| &mut s.last_compaction, t);
    }
    if shared.stopped.load(Ordering::Acquire) {
        return first_error.map_or(Ok(()), Err);
    }
    let index_due = match config.index {
        Some(on) => on,
        None => {
            let current = table.current();
            let metadata = current.metadata();
            metadata
                .current_snapshot_id()
                .is_some_and(|id| crate::ann::index_for(metadata, id).is_some())
        }
    };
    if index_due {
        let t = phase_started(Phase::Index, None);
        let indexed = table.index_embeddings().await;
        phase_finished(Phase::Index, None, t, indexed.is_ok());
        timed(|s| &mut s.last_index, t);
        match indexed {
            Ok(r) => {
                let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
                stats.rows_indexed += r.rows_indexed;
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if shared.stopped.load(Ordering::Acquire) {
        return first_error.map_or(Ok(()), Err);
    }
    if config.expire {
        let mut expiry = table.expire_snapshots();
        if let Some(age) = config.snapshot_max_age {
            expiry = expiry.older_than(
                chrono::Utc::now()
                    - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::days(5)),
            );
        }
        if let Some(n) = config.max_snapshots {
            expiry = expiry.keep_at_most(n);
        }
        let t = phase_started(Phase::Expiry, None);
        let expired = expiry.await;
        phase_finished(Phase::Expiry, None, t, expired.is_ok());
        timed(|s| &mut s.last_expiry, t);
        match expired {
            Ok(r) => {
                let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
                stats.snapshots_expired += r.expired_snapshots.len() as u64;
                stats.files_deleted += r.deleted_files.len() as u64;
                drop(stats);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    let orphans_due = shared
        .last_orphan_removal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_none_or(|at| at.elapsed() >= config.orphans_every);
    if let Some(age) = config.orphans_older_than
        && orphans_due
        && !shared.stopped.load(Ordering::Acquire)
    {
        let t = phase_started(Phase::OrphanRemoval, None);
        *shared
            .last_orphan_removal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(t);
        let before = chrono::Utc::now()
            - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::days(1));
        let removed = table.remove_orphan_files().older_than(before).await;
        phase_finished(Phase::OrphanRemoval, None, t, removed.is_ok());
        timed(|s| &mut s.last_orphan_removal, t);
        match removed {
            Ok(r) => {
                let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
                stats.files_deleted += r.deleted_files.len() as u64;
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A step of a run, named in the `maintenance phase started` / `finished` tracing events.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Compaction,
    Index,
    Expiry,
    OrphanRemoval,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Compaction => "compaction",
            Phase::Index => "index",
            Phase::Expiry => "expiry",
            Phase::OrphanRemoval => "orphan-removal",
        }
    }
}

/// Logs the start of a step (INFO, before any of its I/O) and returns when it started. With
/// [`phase_finished`] after the step, an operator (or a test killing the process) can tell
/// which step a run was in: a `started` without its `finished` means the process stopped
/// inside the step.
fn phase_started(phase: Phase, month: Option<crate::month::Month>) -> Instant {
    match month {
        Some(month) => {
            tracing::info!(phase = phase.name(), %month, "maintenance phase started")
        }
        None => tracing::info!(phase = phase.name(), "maintenance phase started"),
    }
    Instant::now()
}

/// Logs the end of a step begun by [`phase_started`].
fn phase_finished(phase: Phase, month: Option<crate::month::Month>, started: Instant, ok: bool) {
    let ms = started.elapsed().as_millis() as u64;
    match month {
        Some(month) => {
            tracing::info!(phase = phase.name(), %month, ms, ok, "maintenance phase finished")
        }
        None => tracing::info!(phase = phase.name(), ms, ok, "maintenance phase finished"),
    }
}

/// Compacts each month with at least `min_small_files` small files, newest month first,
/// one snapshot per month.
async fn compact_months(shared: &Shared) -> Result<()> {
    let config = &shared.config;
    let table = &config.table;
    let months = table
        .compact()
        .min_input_files(config.min_small_files)
        .months()
        .await?;
    let mut first_error = None;
    for month in months.into_iter().rev() {
        if shared.stopped.load(Ordering::Acquire) {
            break;
        }
        // A month that fails (e.g. conflicts outlasting the retry budget) does not stop the
        // others; the next run tries it again.
        let started = phase_started(Phase::Compaction, Some(month));
        let compacted = table
            .compact()
            .min_input_files(config.min_small_files)
            .tiered(true)
            .parallel_bins(1)
            .only_month(month)
            .await;
        phase_finished(Phase::Compaction, Some(month), started, compacted.is_ok());
        let done = match compacted {
            Ok(done) => done,
            Err(e) => {
                tracing::info!(%month, error = %e, "compaction of the month failed; next run retries");
                first_error.get_or_insert(e);
                continue;
            }
        };
        let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
        if done.snapshot_id.is_some() {
            stats.compactions += 1;
            stats.files_compacted += done.files_removed as u64;
            stats.compaction_retries += u64::from(done.attempts.saturating_sub(1));
        }
    }
    first_error.map_or(Ok(()), Err)
}
