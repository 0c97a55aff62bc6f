//! The append operation, as a builder: validate → [`write`](crate::write) (months in parallel)
//! → a [`Change`](crate::commit) → the commit loop → one snapshot.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use arrow_array::RecordBatch;

use crate::batch::{conform, records_to_batch};
use crate::commit::{Change, ChangeKind, CommitSummary};
use crate::error::{Error, Result};
use crate::position::Positions;
use crate::record::SaleRecord;
use crate::table::SalesHistory;
use crate::write::write_months;

/// What an awaited [`Append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendOutcome {
    /// One new snapshot holds all the appended rows.
    Committed(CommitSummary),
    /// A snapshot with this commit id is already in the table: nothing was written again.
    AlreadyCommitted {
        /// The snapshot that carries the commit id.
        snapshot_id: i64,
        /// The commit id that was found.
        commit_id: String,
    },
    /// There were no rows: no files were written and no snapshot was created.
    NothingToCommit,
}

impl AppendOutcome {
    /// The summary of a new snapshot, if one was committed.
    pub fn committed(&self) -> Option<&CommitSummary> {
        match self {
            AppendOutcome::Committed(s) => Some(s),
            _ => None,
        }
    }
}

enum Input {
    Records(Vec<SaleRecord>),
    Batches(Vec<RecordBatch>),
    /// Batches that went through `conform` already (the streaming appender's).
    Validated(Vec<RecordBatch>),
}

/// An append in preparation; `.await` it to run it.
///
/// ```no_run
/// # async fn f(table: &sales_history::SalesHistory, rows: Vec<sales_history::SaleRecord>) -> sales_history::Result<()> {
/// let outcome = table.append(rows).commit_id("ingest-2025-06-01-batch-7").await?;
/// println!("{outcome:?}");
/// # Ok(()) }
/// ```
#[must_use = "an append does nothing until it is awaited"]
pub struct Append {
    table: SalesHistory,
    input: Input,
    commit_id: Option<String>,
    parallelism: Option<usize>,
    positions: Positions,
    /// Whether the commit id may have been tried before (then the table is re-read for it).
    retry: bool,
    /// A tenant scope: every row must be of this tenant.
    tenant: Option<String>,
}

impl Append {
    pub(crate) fn from_records(table: SalesHistory, records: Vec<SaleRecord>) -> Self {
        Self::new(table, Input::Records(records))
    }

    pub(crate) fn from_batches(table: SalesHistory, batches: Vec<RecordBatch>) -> Self {
        Self::new(table, Input::Batches(batches))
    }

    /// Batches validated when they were pushed: not validated a second time.
    pub(crate) fn from_validated(table: SalesHistory, batches: Vec<RecordBatch>) -> Self {
        Self::new(table, Input::Validated(batches))
    }

    fn new(table: SalesHistory, input: Input) -> Self {
        Append {
            table,
            input,
            commit_id: None,
            parallelism: None,
            positions: Positions::default(),
            retry: true,
            tenant: None,
        }
    }

    /// Locks the append to one tenant (a tenant scope's append).
    pub(crate) fn scoped(mut self, tenant: String) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Tags the snapshot with a caller-chosen id (1–128 printable ASCII characters).
    ///
    /// When a snapshot with this id is already in the table, the append writes nothing and
    /// returns [`AppendOutcome::AlreadyCommitted`], so a retry after a crash or a lost answer
    /// never appends twice. Without it a random UUID is used.
    ///
    /// The id is looked for among the snapshots the table still has: a retry must come before
    /// snapshot expiry removes the one it looks for. The [`Maintainer`](crate::Maintainer)
    /// keeps at most 150 snapshots by default (`max_snapshots`): under a writer committing
    /// every second, about two and a half minutes. A streaming source with offsets should
    /// resume from [`SalesHistory::last_committed_position`] instead, which every commit
    /// carries forward and no expiry loses.
    pub fn commit_id(mut self, commit_id: impl Into<String>) -> Self {
        self.commit_id = Some(commit_id.into());
        self
    }

    /// How many months are encoded at once (default: the available cores).
    pub fn parallelism(mut self, tasks: usize) -> Self {
        self.parallelism = Some(tasks.max(1));
        self
    }

    /// Source positions to store with the snapshot (the streaming appender's).
    pub(crate) fn positions(mut self, positions: Positions) -> Self {
        self.positions = positions;
        self
    }

    /// The commit id is new, never tried: skip the catalog read that looks for it.
    pub(crate) fn first_attempt(mut self) -> Self {
        self.retry = false;
        self
    }

    async fn run(self) -> Result<AppendOutcome> {
        let table = &self.table;
        let caller_id = self.commit_id.is_some();
        let commit_id = match self.commit_id {
            Some(id) => check_commit_id(id)?,
            None => uuid::Uuid::new_v4().to_string(),
        };
        // 1. Validate everything before anything is written.
        let input = self.input;
        let batches = validate(input, table.embedding_dimension())?;
        if let Some(tenant) = &self.tenant {
            let mut offset = 0;
            for b in &batches {
                crate::batch::check_tenant(b, tenant, offset)?;
                offset += b.num_rows();
            }
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(AppendOutcome::NothingToCommit);
        }
        // 2. Exactly once: a caller's commit id already in the table means it landed.
        if caller_id
            && self.retry
            && let Some(snapshot_id) = table.find_commit_fresh(&commit_id).await?
        {
            return Ok(AppendOutcome::AlreadyCommitted {
                snapshot_id,
                commit_id,
            });
        }
        // 3. Write one set of files per month.
        let tasks = self.parallelism.unwrap_or_else(crate::cores);
        let mut change = Change::new(table, ChangeKind::Append, commit_id);
        let base = table.current();
        change.written_spec_id = Some(base.metadata().default_partition_spec_id());
        let written = write_months(
            &base,
            &batches,
            tasks,
            &change.commit_id,
            change.files.paths_mut(),
        )
        .await;
        drop(batches);
        match written {
            Ok(files) => change.added = files,
            Err(e) => {
                change.files.discard("writing failed").await;
                return Err(e);
            }
        }
        change.positions = self.positions;
        // 4. Commit them as one snapshot.
        let mut summary = CommitSummary {
            snapshot_id: 0,
            commit_id: change.commit_id.clone(),
            rows: rows as u64,
            data_files: change.added.len(),
            bytes: change.added.iter().map(|f| f.file_size_in_bytes()).sum(),
            attempts: 0,
        };
        let landed = crate::commit::commit(table, change).await?;
        summary.snapshot_id = landed.snapshot_id;
        summary.attempts = landed.attempts;
        Ok(AppendOutcome::Committed(summary))
    }
}

/// The input as validated batches in our layout (empty batches dropped).
fn validate(input: Input, dimension: usize) -> Result<Vec<RecordBatch>> {
    match input {
        Input::Records(records) if records.is_empty() => Ok(Vec::new()),
        Input::Records(records) => Ok(vec![conform(
            &records_to_batch(&records)?,
            0,
            0,
            dimension,
        )?]),
        Input::Validated(batches) => Ok(batches.into_iter().filter(|b| b.num_rows() > 0).collect()),
        Input::Batches(batches) => {
            let mut offset = 0;
            let mut out = Vec::with_capacity(batches.len());
            for (i, b) in batches.iter().enumerate() {
                if b.num_rows() > 0 {
                    out.push(conform(b, i, offset, dimension)?);
                }
                offset += b.num_rows();
            }
            Ok(out)
        }
    }
}

fn check_commit_id(id: String) -> Result<String> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(id)
    } else {
        Err(Error::config(
            "commit_id",
            format!("{id:?} must be 1-128 printable ASCII characters without spaces"),
        ))
    }
}

impl IntoFuture for Append {
    type Output = Result<AppendOutcome>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_are_checked() {
        assert!(check_commit_id("batch-7".into()).is_ok());
        assert!(check_commit_id(String::new()).is_err());
        assert!(check_commit_id("has space".into()).is_err());
        assert!(check_commit_id("x".repeat(129)).is_err());
    }
}
