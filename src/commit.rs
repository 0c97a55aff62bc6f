//! Committing written data files as one snapshot: [`PendingCommit`] → the catalog.
//!
//! One function, [`PendingCommit::commit`], used by every operation that adds data (append,
//! the streaming appender). Each attempt builds a `fast_append` on the table version this
//! handle holds, with the snapshot summary computed from that same version (our commit id,
//! the writer, and the source positions carried forward), and asks the catalog to swap it in.
//! The attempt is pinned to that version (iceberg's transaction reloads the table before
//! committing and would silently rebase onto a newer version whose summary we never read): a
//! concurrent writer makes the attempt fail with a conflict, and this loop refreshes,
//! recomputes the summary and tries again, with exponential backoff (`commit.retry.*`) plus
//! the catalog wrapper's jitter. When the catalog answers with another error, the self-heal
//! re-reads the table and looks for our commit id (an answer lost on the way back means the
//! snapshot may have landed). Files of an attempt that certainly failed are deleted here, by
//! the code that owns them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
};

use crate::catalog::GuardedCatalog;
use crate::error::{Error, IcebergResultExt, Result};
use crate::position::Positions;
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
    /// Catalog attempts it took (1 without conflicts).
    pub attempts: u32,
}

/// Data files written for one snapshot, with the commit id, row count and source positions
/// that go with them. Owns the files: until [`commit`](Self::commit) succeeds, they are its
/// to delete.
#[derive(Debug)]
pub(crate) struct PendingCommit {
    pub(crate) files: WrittenFiles,
    pub(crate) commit_id: String,
    pub(crate) rows: u64,
    /// Highest source position per source among the rows (empty for plain appends).
    pub(crate) positions: Positions,
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
        let mut summary = CommitSummary {
            snapshot_id: 0,
            commit_id: self.commit_id.clone(),
            rows: self.rows,
            data_files: self.files.data_files.len(),
            bytes: self.files.bytes(),
            attempts: 0,
        };
        if crate::rewrite::own_path_for_appends(table) {
            return self.commit_on_our_path(table, summary).await;
        }
        let retry = RetryPolicy::of(&table.current());
        let started = Instant::now();
        loop {
            summary.attempts += 1;
            let base = table.current();
            let error = match self.attempt(table, &base).await {
                Ok(new_table) => {
                    tracing::info!(
                        snapshot_id = ?new_table.metadata().current_snapshot_id(),
                        attempts = summary.attempts,
                        "committed"
                    );
                    table.advance_to(new_table);
                    return match table.find_commit(&self.commit_id) {
                        Some(snapshot_id) => Ok(CommitSummary {
                            snapshot_id,
                            ..summary
                        }),
                        None => Err(Error::internal(format!(
                            "the committed table has no snapshot with commit id {}",
                            self.commit_id
                        ))),
                    };
                }
                Err(e) => e,
            };
            let conflict = error.kind() == ErrorKind::CatalogCommitConflicts;
            match retry.pause(summary.attempts, started) {
                Some(pause) if conflict => {
                    tracing::info!(
                        attempt = summary.attempts,
                        reason = %error.message(),
                        backoff_ms = pause.as_millis() as u64,
                        "commit refused; refreshing and retrying"
                    );
                    tokio::time::sleep(pause).await;
                    if let Err(e) = table.refresh().await {
                        tracing::warn!(error = %e, "refresh after a conflict failed");
                        return self.heal(table, summary, error).await;
                    }
                }
                _ => return self.heal(table, summary, error).await,
            }
        }
    }

    /// The append as a snapshot of our own commit path ([`crate::rewrite`]): one new manifest
    /// plus the existing ones, swapped in by compare-and-swap. An attempt that loses a race
    /// deletes the manifest, manifest list and metadata file it wrote (iceberg's catalogs
    /// write and name the metadata file inside `update_table` and leave it behind).
    async fn commit_on_our_path(
        self,
        table: &SalesHistory,
        summary: CommitSummary,
    ) -> Result<CommitSummary> {
        let change = crate::rewrite::Change {
            operation: iceberg::spec::Operation::Append,
            added: self.files.data_files.clone(),
            removed: Default::default(),
            commit_id: self.commit_id.clone(),
            properties: HashMap::new(),
            positions: self.positions.clone(),
        };
        match crate::rewrite::commit(table, &change).await {
            Ok(landed) => Ok(CommitSummary {
                snapshot_id: landed.snapshot_id,
                attempts: landed.attempts,
                ..summary
            }),
            // The snapshot may yet be the table's: its files stay.
            Err(e @ Error::CommitStateUnknown { .. }) => Err(e),
            Err(e) => {
                if table.config().may_delete_files() {
                    tracing::info!(
                        files = self.files.paths.len(),
                        "the commit did not land; deleting its files"
                    );
                    self.files.delete(table.current().file_io()).await;
                }
                Err(e)
            }
        }
    }

    /// One catalog attempt on `base`: the summary computed from `base`, the transaction pinned
    /// to it.
    async fn attempt(&self, table: &SalesHistory, base: &Table) -> iceberg::Result<Table> {
        let mut positions = Positions::of_current(base);
        positions.merge(&self.positions);
        let mut properties: HashMap<String, String> = positions.properties().collect();
        properties.insert(COMMIT_ID_PROPERTY.to_string(), self.commit_id.clone());
        properties.insert(
            WRITER_PROPERTY.to_string(),
            concat!("sales-history/", env!("CARGO_PKG_VERSION")).to_string(),
        );
        let tx = Transaction::new(base);
        let tx = tx
            .fast_append()
            .with_check_duplicate(false)
            .set_snapshot_properties(properties)
            .add_data_files(self.files.data_files.clone())
            .apply(tx)?;
        let pinned = Pinned {
            base: base.clone(),
            inner: table.catalog(),
        };
        tx.commit(&pinned).await
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
        if table.config().may_delete_files() {
            tracing::info!(
                files = self.files.paths.len(),
                "the commit did not land; deleting its files"
            );
            self.files.delete(table.current().file_io()).await;
        } else {
            tracing::info!(
                files = self.files.paths.len(),
                "the commit did not land; its files are left to the catalog's unreferenced-file removal"
            );
        }
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

/// The table's `commit.retry.*` settings (iceberg's defaults when unset).
pub(crate) struct RetryPolicy {
    retries: u32,
    min_wait: Duration,
    max_wait: Duration,
    total: Duration,
}

impl RetryPolicy {
    pub(crate) fn of(table: &Table) -> Self {
        match table.metadata().table_properties() {
            Ok(p) => RetryPolicy {
                retries: u32::try_from(p.commit_num_retries).unwrap_or(u32::MAX),
                min_wait: Duration::from_millis(p.commit_min_retry_wait_ms),
                max_wait: Duration::from_millis(p.commit_max_retry_wait_ms),
                total: Duration::from_millis(p.commit_total_retry_timeout_ms),
            },
            Err(_) => RetryPolicy {
                retries: 4,
                min_wait: Duration::from_millis(100),
                max_wait: Duration::from_secs(60),
                total: Duration::from_secs(1800),
            },
        }
    }

    /// The pause before attempt `attempts + 1`, or `None` when the budget is spent.
    pub(crate) fn pause(&self, attempts: u32, started: Instant) -> Option<Duration> {
        if attempts > self.retries || started.elapsed() >= self.total {
            return None;
        }
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        Some(self.min_wait.saturating_mul(factor).min(self.max_wait))
    }
}

/// The catalog as one commit attempt sees it: `load_table` answers with the version the
/// attempt was built on (so iceberg's transaction never rebases onto a version whose summary
/// we did not read), and a refused `update_table` is final for the attempt (our loop retries).
#[derive(Debug)]
struct Pinned<'a> {
    base: Table,
    inner: &'a GuardedCatalog,
}

#[async_trait]
impl Catalog for Pinned<'_> {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        if table == self.base.identifier() {
            Ok(self.base.clone())
        } else {
            self.inner.load_table(table).await
        }
    }

    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }

    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        self.inner
            .update_table(commit)
            .await
            .map_err(|e| e.with_retryable(false))
    }
}
