//! The streaming appender: buffer rows, flush on rows / bytes / age, one snapshot per flush,
//! source positions stored in the same atomic commit.
//!
//! A service that appends per event would make thousands of snapshots and tiny files an hour.
//! [`Appender`] buffers validated rows and commits them through the same write and commit path
//! as [`SalesHistory::append`] when the buffer holds `max_rows` rows or `max_bytes` bytes, or
//! its oldest row is `max_age` old. Memory is bounded: `push` waits while `max_buffered_bytes`
//! are buffered and not yet committed (backpressure).
//!
//! A failed flush keeps its rows, under the same commit id, and the background task retries
//! it after `max_age`, then after twice as long with each further failure (at most a minute,
//! or `max_age` if longer), full buffer or not. Its error goes to the next `push` or `flush`,
//! and to a `push` that is waiting for buffer space.
//!
//! Exactly-once for sources with offsets: a push may carry a [`SourcePosition`]; a flush
//! stores the highest position per source in the snapshot summary (and every later commit
//! carries it forward), and [`SalesHistory::last_committed_position`] tells a restarted service
//! where to resume.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::append::{Append, AppendOutcome};
use crate::batch::{conform, records_to_batch};
use crate::commit::CommitSummary;
use crate::error::{Error, Result};
use crate::position::{Positions, SourcePosition};
use crate::record::{SaleRecord, check_embedding_len};
use crate::table::SalesHistory;

/// Bytes per semaphore permit (the buffer budget is counted in KiB).
const PERMIT_BYTES: usize = 1024;

/// The longest pause between the background task's retries of a failed flush (unless
/// `max_age` is longer): a catalog that refuses every commit is asked about once a minute,
/// not continuously.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(60);

/// Settings of a streaming appender; start one with [`SalesHistory::appender`].
///
/// ```no_run
/// # async fn f(table: sales_history::SalesHistory, rows: Vec<sales_history::SaleRecord>) -> sales_history::Result<()> {
/// use std::time::Duration;
/// use sales_history::SourcePosition;
/// let appender = table
///     .appender()
///     .max_rows(50_000)
///     .max_age(Duration::from_secs(1))
///     .start()?;
/// for (line, row) in rows.into_iter().enumerate() {
///     appender.push_at(row, SourcePosition::at("stdin:events.jsonl", line as u64)?).await?;
/// }
/// appender.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "an appender builder does nothing until `start` is called"]
pub struct AppenderBuilder {
    table: SalesHistory,
    max_rows: usize,
    max_bytes: usize,
    max_age: Duration,
    max_buffered_bytes: usize,
    /// A tenant scope: every pushed row must be of this tenant.
    tenant: Option<String>,
}

impl AppenderBuilder {
    pub(crate) fn new(table: SalesHistory) -> Self {
        AppenderBuilder {
            table,
            max_rows: 100_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(5),
            max_buffered_bytes: 256 << 20,
            tenant: None,
        }
    }

    /// Locks the appender to one tenant (a tenant scope's appender).
    pub(crate) fn scoped(mut self, tenant: String) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Flush when this many rows are buffered (default 100,000).
    pub fn max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows;
        self
    }

    /// Flush when the buffered rows take this many bytes (default 64 MiB).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Flush when the oldest buffered row is this old (default 5 s): the longest a pushed
    /// row waits before it is committed (plus one commit).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// At most this many bytes buffered and not yet committed (default 256 MiB): `push` waits
    /// while the buffer is full. At least `max_bytes`.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_bytes = bytes;
        self
    }

    /// Checks the settings and starts the appender's background flush task (on the current
    /// tokio runtime).
    pub fn start(self) -> Result<Appender> {
        if self.max_rows == 0 {
            return Err(Error::config("max_rows", "must be at least 1"));
        }
        if self.max_bytes == 0 {
            return Err(Error::config("max_bytes", "must be at least 1"));
        }
        if self.max_age.is_zero() {
            return Err(Error::config("max_age", "must be longer than zero"));
        }
        if self.max_buffered_bytes < self.max_bytes {
            return Err(Error::config(
                "max_buffered_bytes",
                format!(
                    "{} is less than max_bytes ({})",
                    self.max_buffered_bytes, self.max_bytes
                ),
            ));
        }
        let permits = self.max_buffered_bytes.div_ceil(PERMIT_BYTES);
        if permits > Semaphore::MAX_PERMITS {
            return Err(Error::config("max_buffered_bytes", "is too large"));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::config("appender", "must be started inside a tokio runtime"))?;
        let shared = Arc::new(Shared {
            tenant: self.tenant,
            table: self.table,
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            max_age: self.max_age,
            permits_total: permits,
            budget: Arc::new(Semaphore::new(permits)),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
            flush_lock: tokio::sync::Mutex::new(()),
            prefix: format!(
                "appender-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            sequence: AtomicU64::new(0),
            watch: tokio::sync::watch::Sender::new(AppenderStats::default()),
        });
        let task = runtime.spawn(background(shared.clone()));
        Ok(Appender {
            shared,
            task: Some(task),
        })
    }
}

/// A running streaming appender; built by [`SalesHistory::appender`] (see [`AppenderBuilder`]).
///
/// **Dropping** an appender without [`close`](Self::close) stops its background task at once
/// and discards the rows not yet committed (a warning with their count is logged through
/// `tracing`). With source positions nothing is lost: a restarted service resumes after
/// [`SalesHistory::last_committed_position`]. Call `close` to commit them.
#[derive(Debug)]
pub struct Appender {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

/// What a running appender holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AppenderStats {
    /// Rows pushed and not yet committed (including a failed flush's rows awaiting retry).
    pub buffered_rows: u64,
    /// Bytes those rows take (estimated), bounded by `max_buffered_bytes`.
    pub buffered_bytes: u64,
    /// Snapshots committed by this appender.
    pub commits: u64,
    /// Rows committed by this appender.
    pub committed_rows: u64,
    /// Flushes that failed (their rows stay buffered and are retried).
    pub failed_flushes: u64,
}

#[derive(Debug)]
struct Shared {
    tenant: Option<String>,
    table: SalesHistory,
    max_rows: usize,
    max_bytes: usize,
    max_age: Duration,
    permits_total: usize,
    budget: Arc<Semaphore>,
    state: Mutex<State>,
    wake: Notify,
    stop: Notify,
    stopped: AtomicBool,
    /// One flush at a time.
    flush_lock: tokio::sync::Mutex<()>,
    prefix: String,
    sequence: AtomicU64,
    /// The stats after every commit or failed flush.
    watch: tokio::sync::watch::Sender<AppenderStats>,
}

/// Rows waiting for a flush.
#[derive(Debug, Default)]
struct Buffer {
    records: Vec<SaleRecord>,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    oldest: Option<Instant>,
    positions: Positions,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Buffer {
    fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// A flush's rows under one commit id (kept, with the same id, when the commit fails).
#[derive(Debug)]
struct Unit {
    commit_id: String,
    /// A commit with this id was attempted before (its outcome may be unknown).
    attempted: bool,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    positions: Positions,
    permits: Vec<OwnedSemaphorePermit>,
}

#[derive(Debug, Default)]
struct State {
    buffer: Buffer,
    /// A flush whose commit failed: retried (same commit id) before anything else.
    retry: Option<Unit>,
    /// When the failed unit is retried by the background task.
    retry_at: Option<Instant>,
    /// Failed flushes since the last commit: the background retry's pause doubles with each
    /// (from `max_age`, at most [`RETRY_PAUSE_MAX`] or `max_age` if longer).
    failures_in_a_row: u32,
    /// The last background flush's error, handed to the next `push`/`flush`.
    failed: Option<Error>,
    closed: bool,
    commits: u64,
    committed_rows: u64,
    failed_flushes: u64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves buffer space for `bytes` (waits while the buffer is full).
    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit> {
        let permits = bytes.div_ceil(PERMIT_BYTES).max(1);
        if permits > self.permits_total {
            return Err(Error::config(
                "max_buffered_bytes",
                format!("one push of {bytes} bytes is larger than the whole buffer"),
            ));
        }
        let n = u32::try_from(permits).unwrap_or(u32::MAX);
        // While it waits, a failed background flush (which keeps the buffer full) is handed
        // to this push, as to the next one, rather than leaving it waiting for as long as
        // the catalog refuses.
        let mut stats = self.watch.subscribe();
        let acquire = self.budget.clone().acquire_many_owned(n);
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                permit = &mut acquire => {
                    return permit.map_err(|_| Error::config("appender", "the appender is closed"));
                }
                changed = stats.changed() => {
                    if let Some(e) = self.lock().failed.take() {
                        return Err(e);
                    }
                    if changed.is_err() {
                        // The sender lives as long as `self`: never here; wait on the permits.
                        return (&mut acquire)
                            .await
                            .map_err(|_| Error::config("appender", "the appender is closed"));
                    }
                }
            }
        }
    }

    /// Adds validated rows to the buffer; wakes the flusher when a size limit is reached.
    fn add(
        &self,
        rows: usize,
        bytes: usize,
        permit: OwnedSemaphorePermit,
        position: Option<&SourcePosition>,
        push: impl FnOnce(&mut Buffer),
    ) -> Result<()> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::config("appender", "the appender is closed"));
        }
        let buffer = &mut state.buffer;
        // The first row of an empty buffer starts the age clock: the flusher must learn it.
        let first = buffer.oldest.is_none();
        push(buffer);
        buffer.rows += rows;
        buffer.bytes += bytes;
        buffer.oldest.get_or_insert_with(Instant::now);
        buffer.permits.push(permit);
        if let Some(p) = position {
            buffer.positions.advance(p);
        }
        let full = buffer.rows >= self.max_rows || buffer.bytes >= self.max_bytes;
        drop(state);
        if full || first {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Commits the failed unit (if any), then everything buffered. Returns the last commit.
    async fn flush(&self) -> Result<Option<CommitSummary>> {
        let _one = self.flush_lock.lock().await;
        let mut last = None;
        let retry = self.lock().retry.take();
        if let Some(unit) = retry {
            last = Some(self.commit(unit).await?);
        }
        let unit = {
            let mut state = self.lock();
            let buffer = std::mem::take(&mut state.buffer);
            if buffer.is_empty() {
                None
            } else {
                Some(buffer)
            }
        };
        if let Some(buffer) = unit {
            let unit = match self.unit(buffer) {
                Ok(unit) => unit,
                Err(failed) => {
                    let (e, buffer) = *failed;
                    // Validated rows always convert; should they not, keep them (never drop).
                    tracing::error!(error = %e, "buffered rows could not be converted; kept");
                    self.restore(buffer);
                    return Err(e);
                }
            };
            last = Some(self.commit(unit).await?);
        }
        self.lock().failed = None;
        Ok(last)
    }

    /// The buffer as one unit with a fresh commit id.
    fn unit(&self, buffer: Buffer) -> std::result::Result<Unit, Box<(Error, Buffer)>> {
        let records = if buffer.records.is_empty() {
            None
        } else {
            // Rows were checked at push; `conform` relabels them and derives missing seasons.
            let dimension = self.table.embedding_dimension();
            match records_to_batch(&buffer.records).and_then(|b| conform(&b, 0, 0, dimension)) {
                Ok(b) => Some(b),
                Err(e) => return Err(Box::new((e, buffer))),
            }
        };
        let mut batches = buffer.batches;
        batches.extend(records);
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        Ok(Unit {
            commit_id: format!("{}-{seq:06}", self.prefix),
            attempted: false,
            batches,
            rows: buffer.rows,
            bytes: buffer.bytes,
            positions: buffer.positions,
            permits: buffer.permits,
        })
    }

    /// Puts taken rows back in front of what was pushed since.
    fn restore(&self, mut taken: Buffer) {
        let mut state = self.lock();
        let newer = std::mem::take(&mut state.buffer);
        taken.records.extend(newer.records);
        taken.batches.extend(newer.batches);
        taken.rows += newer.rows;
        taken.bytes += newer.bytes;
        taken.oldest = taken.oldest.or(newer.oldest);
        taken.positions.merge(&newer.positions);
        taken.permits.extend(newer.permits);
        state.buffer = taken;
    }

    /// One unit → one snapshot (or none if an earlier attempt with its commit id landed). On
    /// failure the unit is kept for the retry and the error returned.
    async fn commit(&self, unit: Unit) -> Result<CommitSummary> {
        let started = Instant::now();
        let mut append = Append::from_validated(self.table.clone(), unit.batches.clone())
            .commit_id(unit.commit_id.clone())
            .positions(unit.positions.clone());
        if !unit.attempted {
            append = append.first_attempt();
        }
        let result = append.await;
        let summary = match result {
            Ok(AppendOutcome::Committed(s)) => s,
            Ok(AppendOutcome::AlreadyCommitted {
                snapshot_id,
                commit_id,
            }) => CommitSummary {
                snapshot_id,
                commit_id,
                rows: unit.rows as u64,
                data_files: 0,
                bytes: 0,
                attempts: 0,
            },
            Ok(_) => CommitSummary {
                snapshot_id: 0,
                commit_id: unit.commit_id.clone(),
                rows: 0,
                data_files: 0,
                bytes: 0,
                attempts: 0,
            },
            Err(e) => {
                tracing::warn!(
                    commit_id = %unit.commit_id,
                    rows = unit.rows,
                    retryable = e.is_retryable(),
                    error = %e,
                    "flush failed; the rows stay buffered for the retry"
                );
                let mut state = self.lock();
                state.retry = Some(Unit {
                    attempted: true,
                    ..unit
                });
                state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
                state.retry_at = Some(Instant::now() + self.retry_pause(state.failures_in_a_row));
                state.failed_flushes += 1;
                drop(state);
                self.publish();
                return Err(e);
            }
        };
        tracing::info!(
            commit_id = %summary.commit_id,
            snapshot_id = summary.snapshot_id,
            rows = unit.rows,
            bytes = unit.bytes,
            data_files = summary.data_files,
            ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
        let mut state = self.lock();
        state.commits += 1;
        state.committed_rows += unit.rows as u64;
        state.failures_in_a_row = 0;
        drop(state);
        drop(unit.permits); // the buffer space is free again
        self.publish();
        Ok(summary)
    }

    fn stats(&self) -> AppenderStats {
        let state = self.lock();
        let (retry_rows, retry_bytes) = state.retry.as_ref().map_or((0, 0), |u| (u.rows, u.bytes));
        AppenderStats {
            buffered_rows: (state.buffer.rows + retry_rows) as u64,
            buffered_bytes: (state.buffer.bytes + retry_bytes) as u64,
            commits: state.commits,
            committed_rows: state.committed_rows,
            failed_flushes: state.failed_flushes,
        }
    }

    fn publish(&self) {
        self.watch.send_replace(self.stats());
    }

    /// When the background task should flush next (`None`: nothing buffered); `now` when a
    /// size limit is reached.
    fn due(&self, now: Instant) -> Option<Instant> {
        let state = self.lock();
        // A failed flush is retried after its pause, full buffer or not: a flush retries the
        // failed unit first and stops at its error, so a full buffer would otherwise retry
        // at once, forever, writing the unit's files again each time.
        if state.retry.is_some() {
            return Some(state.retry_at.unwrap_or(now));
        }
        let full = state.buffer.rows >= self.max_rows || state.buffer.bytes >= self.max_bytes;
        if full {
            return Some(now);
        }
        state.buffer.oldest.map(|t| t + self.max_age)
    }

    /// The pause before the background task retries after `failures` failed flushes in a
    /// row: `max_age`, doubled with each further failure, at most [`RETRY_PAUSE_MAX`] (or
    /// `max_age` if that is longer).
    fn retry_pause(&self, failures: u32) -> Duration {
        let doubled = self
            .max_age
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled.min(RETRY_PAUSE_MAX.max(self.max_age))
    }
}

/// The background flusher: flushes when a limit is reached or the oldest row is `max_age`
/// old; stops on `close` or drop.
async fn background(shared: Arc<Shared>) {
    loop {
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let due = shared.due(Instant::now());
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = shared.stop.notified() => return,
            _ = shared.wake.notified() => {}
            _ = sleep => {}
        }
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        if shared.due(now).is_some_and(|at| at <= now)
            && let Err(e) = shared.flush().await
        {
            shared.lock().failed = Some(e);
            // A push waiting for buffer space learns of it (`reserve`).
            shared.publish();
        }
    }
}

impl Appender {
    /// Validates `record` against the table (nothing invalid is buffered: the typed error
    /// comes back here) and buffers it; waits while the buffer is full.
    ///
    /// If a background flush failed since the last call, that error is returned instead and
    /// `record` is not taken; the failed rows stay buffered and are retried.
    pub async fn push(&self, record: SaleRecord) -> Result<()> {
        self.push_record(record, None).await
    }

    /// [`push`](Self::push) with the record's position in its source.
    pub async fn push_at(&self, record: SaleRecord, position: SourcePosition) -> Result<()> {
        self.push_record(record, Some(position)).await
    }

    /// Validates and buffers a caller-built batch (see [`SalesHistory::append_batches`]).
    pub async fn push_batch(&self, batch: RecordBatch) -> Result<()> {
        self.push_batch_inner(batch, None).await
    }

    /// [`push_batch`](Self::push_batch) with the position of the batch's last row.
    pub async fn push_batch_at(&self, batch: RecordBatch, position: SourcePosition) -> Result<()> {
        self.push_batch_inner(batch, Some(position)).await
    }

    async fn push_record(
        &self,
        record: SaleRecord,
        position: Option<SourcePosition>,
    ) -> Result<()> {
        self.take_failure()?;
        record.check(None)?;
        if let Some(tenant) = &self.shared.tenant
            && record.tenant_id != *tenant
        {
            return Err(crate::batch::foreign_tenant(
                &record.tenant_id,
                tenant,
                None,
            ));
        }
        if let Some(e) = &record.embedding {
            check_embedding_len(e.len(), self.shared.table.embedding_dimension())?;
        }
        let bytes = approx_bytes(&record);
        let permit = self.shared.reserve(bytes).await?;
        self.shared.add(1, bytes, permit, position.as_ref(), |b| {
            b.records.push(record)
        })
    }

    async fn push_batch_inner(
        &self,
        batch: RecordBatch,
        position: Option<SourcePosition>,
    ) -> Result<()> {
        self.take_failure()?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(&batch, 0, 0, self.shared.table.embedding_dimension())?;
        if let Some(tenant) = &self.shared.tenant {
            crate::batch::check_tenant(&batch, tenant, 0)?;
        }
        let batch = own_rows(batch)?;
        let (rows, bytes) = (batch.num_rows(), batch.get_array_memory_size());
        let permit = self.shared.reserve(bytes).await?;
        self.shared
            .add(rows, bytes, permit, position.as_ref(), |b| {
                b.batches.push(batch)
            })
    }

    fn take_failure(&self) -> Result<()> {
        match self.shared.lock().failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Commits everything buffered now (a failed earlier flush first, with its commit id).
    /// Returns the last snapshot committed (`None`: nothing was buffered). On error the rows
    /// stay buffered for the next flush.
    pub async fn flush(&self) -> Result<Option<CommitSummary>> {
        self.shared.flush().await
    }

    /// What the appender holds and has committed.
    pub fn stats(&self) -> AppenderStats {
        self.shared.stats()
    }

    /// A receiver that sees the stats after every commit and every failed flush (for
    /// progress lines, metrics, health checks). Rapid changes may be seen as one.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<AppenderStats> {
        self.shared.watch.subscribe()
    }

    /// Flushes everything and stops the background task. Pushes after `close` fail. If the
    /// last flush fails, the error is returned and the rows are not committed (nor silently
    /// dropped: the caller learns it here).
    pub async fn close(mut self) -> Result<Option<CommitSummary>> {
        self.shared.lock().closed = true;
        let flushed = self.shared.flush().await;
        self.stop_task().await;
        flushed
    }

    async fn stop_task(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.shared.stopped.store(true, Ordering::Release);
            self.shared.stop.notify_one();
            task.abort();
            let stats = self.stats();
            if stats.buffered_rows > 0 {
                tracing::warn!(
                    rows = stats.buffered_rows,
                    "appender dropped without close(): its uncommitted rows are discarded"
                );
            }
        }
    }
}

/// `batch`, copied when it is a slice of a batch over twice its size: buffered zero-copy, a
/// slice keeps its whole parent alive, and the buffer's budget counts what it holds (a
/// small slice of a large batch would be charged, and held, the whole parent each push).
fn own_rows(batch: RecordBatch) -> Result<RecordBatch> {
    let held = batch.get_array_memory_size();
    let own: usize = batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(held))
        .sum();
    if held <= 2 * own.max(1) {
        return Ok(batch);
    }
    let rows = u32::try_from(batch.num_rows())
        .map_err(|_| Error::config("batch", "a pushed batch has more than 2^32 rows"))?;
    let all = arrow_array::UInt32Array::from_iter_values(0..rows);
    Ok(arrow_select::take::take_record_batch(&batch, &all)?)
}

/// Estimated buffer bytes of one row.
fn approx_bytes(r: &SaleRecord) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    96 + r.product_id.len()
        + r.tenant_id.len()
        + text(&r.category)
        + text(&r.brand)
        + text(&r.condition)
        + text(&r.image_s3_key)
        + text(&r.description)
        + text(&r.source)
        + r.embedding.as_ref().map_or(0, |e| e.len() * 8)
}
