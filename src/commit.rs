//! Committing written data files as one snapshot: [`PendingCommit`] → the catalog.
//!
//! One function, [`PendingCommit::commit`], used by every operation that adds data: a
//! `fast_append` through iceberg (conflicts are retried there with refreshed metadata and our
//! catalog wrapper's jitter), then, when the catalog answered with an error, the self-heal:
//! re-read the table and look for our commit id (an answer lost on the way back means the
//! snapshot may have landed). Files of an attempt that certainly failed are deleted here, by
//! the code that owns them.

use std::collections::HashMap;

use iceberg::ErrorKind;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use crate::error::{Error, IcebergResultExt, Result};
use crate::table::{COMMIT_ID_PROPERTY, SalesHistory, WRITER_PROPERTY};
use crate::write::WrittenFiles;

/// What one committed append added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitSummary {
    /// The new snapshot's id.
    pub snapshot_id: i64,
    /// The commit id stored in the snapshot summary under [`COMMIT_ID_PROPERTY`].
    pub commit_id: String,
    /// Rows appended.
    pub rows: u64,
    /// Data files added (at least one per month touched).
    pub data_files: usize,
    /// Bytes of Parquet written.
    pub bytes: u64,
}

/// Data files written for one snapshot, with the commit id and summary that go with them.
/// Owns the files: until [`commit`](Self::commit) succeeds, they are its to delete.
#[derive(Debug)]
pub(crate) struct PendingCommit {
    pub(crate) files: WrittenFiles,
    pub(crate) commit_id: String,
    pub(crate) rows: u64,
}

impl PendingCommit {
    /// Commits the files as one `append` snapshot of `table` and moves the handle to it.
    #[tracing::instrument(name = "commit", skip_all, fields(
        table = %table.name(),
        commit_id = %self.commit_id,
        rows = self.rows,
        data_files = self.files.data_files.len(),
    ))]
    pub(crate) async fn commit(self, table: &SalesHistory) -> Result<CommitSummary> {
        let base = table.current();
        let summary = CommitSummary {
            snapshot_id: 0,
            commit_id: self.commit_id.clone(),
            rows: self.rows,
            data_files: self.files.data_files.len(),
            bytes: self.files.bytes(),
        };
        let properties = HashMap::from([
            (COMMIT_ID_PROPERTY.to_string(), self.commit_id.clone()),
            (
                WRITER_PROPERTY.to_string(),
                concat!("sales-history/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ]);
        let tx = Transaction::new(&base);
        let applied = tx
            .fast_append()
            .with_check_duplicate(false)
            .set_snapshot_properties(properties)
            .add_data_files(self.files.data_files.clone())
            .apply(tx);
        let result = match applied {
            Ok(tx) => tx.commit(table.catalog()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(new_table) => {
                tracing::info!(
                    snapshot_id = ?new_table.metadata().current_snapshot_id(),
                    "committed"
                );
                table.advance_to(new_table);
                match table.find_commit(&self.commit_id) {
                    Some(snapshot_id) => Ok(CommitSummary {
                        snapshot_id,
                        ..summary
                    }),
                    None => Err(Error::internal(format!(
                        "the committed table has no snapshot with commit id {}",
                        self.commit_id
                    ))),
                }
            }
            Err(error) => self.heal(table, summary, error).await,
        }
    }

    /// After a commit error: if the snapshot did land (an answer lost on the way back),
    /// report it as committed; if it certainly did not, delete the files written for it.
    async fn heal(
        self,
        table: &SalesHistory,
        summary: CommitSummary,
        error: iceberg::Error,
    ) -> Result<CommitSummary> {
        tracing::warn!(error = %error, "commit failed; re-reading the table to find the commit id");
        if table.refresh().await.is_err() {
            tracing::warn!("outcome unknown: the table could not be re-read; files kept");
            // Outcome unknown: keep the files, they may be referenced.
            return Err(Error::CommitStateUnknown {
                table: table.name(),
                commit_id: self.commit_id,
                source: Box::new(error),
            });
        }
        if let Some(snapshot_id) = table.find_commit(&self.commit_id) {
            tracing::info!(snapshot_id, "the commit had landed (its answer was lost)");
            return Ok(CommitSummary {
                snapshot_id,
                ..summary
            });
        }
        tracing::info!(
            files = self.files.paths.len(),
            "the commit did not land; deleting its files"
        );
        self.files.delete(table.current().file_io()).await;
        if error.kind() == ErrorKind::CatalogCommitConflicts {
            Err(Error::CommitConflict {
                table: table.name(),
                source: Box::new(error),
            })
        } else {
            Err::<CommitSummary, _>(error).or_ours()
        }
    }
}
