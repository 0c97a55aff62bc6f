//! Table maintenance: expiring snapshots (and deleting the files only they referenced) and
//! removing orphan files (never referenced by any snapshot, e.g. left by a crashed writer).
//!
//! iceberg 0.10.1's `ExpireSnapshotsAction` rewrites metadata only and leaves every file in
//! storage; this module adds the file clean-up, and never deletes a file that a retained
//! snapshot, or the table's current or logged metadata, references.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

#[cfg(feature = "s3tables")]
use crate::error::Error;
use crate::error::{IcebergResultExt, Result};
use crate::table::SalesHistory;

/// What to expire. Snapshots older than `older_than` are expired, except the current one and
/// the `retain_last` most recent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpireSnapshots {
    /// Expire snapshots committed before this instant (`None`: any age).
    pub older_than: Option<DateTime<Utc>>,
    /// Always keep this many of the most recent snapshots (at least 1).
    pub retain_last: usize,
    /// Only report what would be expired and deleted.
    pub dry_run: bool,
}

impl ExpireSnapshots {
    /// Expire snapshots older than `when`, keeping at least the last one.
    pub fn older_than(when: DateTime<Utc>) -> Self {
        ExpireSnapshots {
            older_than: Some(when),
            retain_last: 1,
            dry_run: false,
        }
    }

    /// Keep only the `n` most recent snapshots.
    pub fn retain_last(n: usize) -> Self {
        ExpireSnapshots {
            older_than: None,
            retain_last: n.max(1),
            dry_run: false,
        }
    }

    /// Also keep the `n` most recent snapshots.
    pub fn keeping_last(mut self, n: usize) -> Self {
        self.retain_last = n.max(1);
        self
    }

    /// Report only; change nothing.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }
}

/// What a maintenance run did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// Snapshots expired.
    pub expired_snapshots: Vec<i64>,
    /// Files deleted (sorted).
    pub deleted_files: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl SalesHistory {
    /// Expires snapshots and deletes the data files, manifests and manifest lists that no
    /// retained snapshot references. Time travel to retained snapshots keeps working.
    #[tracing::instrument(name = "expire_snapshots", skip_all, fields(table = %self.name(), dry_run = options.dry_run))]
    pub async fn expire_snapshots(&self, options: ExpireSnapshots) -> Result<MaintenanceReport> {
        #[cfg(feature = "s3tables")]
        if let crate::CatalogConfig::S3Tables(_) = self.config() {
            return Err(Error::managed_by_s3_tables(
                "expire_snapshots",
                "S3 Tables expires snapshots and deletes their files itself: set the table's \
                 snapshot management (PutTableMaintenanceConfiguration: minSnapshotsToKeep, \
                 maxSnapshotAgeHours)",
            ));
        }
        self.refresh().await?;
        let table = self.current();
        let metadata = table.metadata();
        let current = metadata.current_snapshot_id();
        let mut snapshots: Vec<_> = metadata.snapshots().cloned().collect();
        snapshots.sort_by_key(|s| (s.timestamp_ms(), s.snapshot_id()));
        let keep_from = snapshots.len().saturating_sub(options.retain_last.max(1));
        let cutoff = options.older_than.map(|t| t.timestamp_millis());
        let expired: Vec<i64> = snapshots[..keep_from]
            .iter()
            .filter(|s| Some(s.snapshot_id()) != current)
            .filter(|s| cutoff.is_none_or(|c| s.timestamp_ms() < c))
            .map(|s| s.snapshot_id())
            .collect();
        let mut report = MaintenanceReport {
            expired_snapshots: expired.clone(),
            dry_run: options.dry_run,
            ..Default::default()
        };
        if expired.is_empty() {
            return Ok(report);
        }
        let candidates = referenced_by(&table, |id| expired.contains(&id)).await?;
        let retained_after = if options.dry_run {
            referenced_by(&table, |id| !expired.contains(&id)).await?
        } else {
            let tx = Transaction::new(&table);
            let tx = tx
                .expire_snapshots()
                .expire_snapshot_ids(expired.clone())
                .apply(tx)
                .or_ours()?;
            let committed = tx.commit(self.catalog()).await.or_ours()?;
            self.advance_to(committed.clone());
            referenced_by(&committed, |_| true).await?
        };
        let mut doomed: Vec<String> = candidates.difference(&retained_after).cloned().collect();
        doomed.sort();
        if !options.dry_run {
            delete(&table, &doomed).await?;
        }
        tracing::info!(
            expired = report.expired_snapshots.len(),
            files = doomed.len(),
            "snapshots expired"
        );
        report.deleted_files = doomed;
        Ok(report)
    }

    /// Starts a removal of orphan files: files under the table's location that no snapshot
    /// and no metadata file references (left by a crashed writer or a failed commit), last
    /// modified more than a day ago unless [`RemoveOrphanFiles::older_than`] says otherwise.
    ///
    /// ```no_run
    /// # async fn f(table: &sales_history::SalesHistory) -> sales_history::Result<()> {
    /// use chrono::{Duration, Utc};
    /// let plan = table.remove_orphan_files().older_than(Utc::now() - Duration::days(3)).dry_run().await?;
    /// println!("would delete {} files", plan.deleted_files.len());
    /// # Ok(()) }
    /// ```
    pub fn remove_orphan_files(&self) -> RemoveOrphanFiles {
        RemoveOrphanFiles {
            table: self.clone(),
            older_than: Utc::now() - chrono::Duration::days(1),
            dry_run: false,
        }
    }
}

/// A removal of orphan files in preparation; `.await` it. See
/// [`SalesHistory::remove_orphan_files`].
#[must_use = "a removal does nothing until it is awaited"]
#[derive(Debug)]
pub struct RemoveOrphanFiles {
    table: SalesHistory,
    older_than: DateTime<Utc>,
    dry_run: bool,
}

impl RemoveOrphanFiles {
    /// Only files last modified before `when` (default: a day ago). Choose it well before
    /// any append that may still be in flight: an uncommitted append's files look exactly
    /// like orphans.
    pub fn older_than(mut self, when: DateTime<Utc>) -> Self {
        self.older_than = when;
        self
    }

    /// Report what would be deleted; delete nothing.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    #[tracing::instrument(name = "remove_orphan_files", skip_all, fields(table = %self.table.name(), dry_run = self.dry_run))]
    async fn run(self) -> Result<MaintenanceReport> {
        let (this, older_than, dry_run) = (&self.table, self.older_than, self.dry_run);
        this.refresh().await?;
        let table = this.current();
        let mut referenced = referenced_by(&table, |_| true).await?;
        let metadata = table.metadata();
        if let Some(loc) = table.metadata_location() {
            referenced.insert(loc.to_string());
        }
        for log in metadata.metadata_log() {
            referenced.insert(log.metadata_file.clone());
        }
        for stats in metadata.statistics_iter() {
            referenced.insert(stats.statistics_path.clone());
        }
        let listed = this.config().list_files(metadata.location()).await?;
        let mut orphans: Vec<String> = listed
            .into_iter()
            .filter(|(path, modified)| {
                *modified < older_than && !referenced.contains(&normalize(path))
            })
            .map(|(path, _)| path)
            .collect();
        orphans.sort();
        tracing::info!(orphans = orphans.len(), "orphan files found");
        if !dry_run {
            delete(&table, &orphans).await?;
        }
        Ok(MaintenanceReport {
            expired_snapshots: Vec::new(),
            deleted_files: orphans,
            dry_run,
        })
    }
}

impl std::future::IntoFuture for RemoveOrphanFiles {
    type Output = Result<MaintenanceReport>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// `file:/x` and `file:///x` name the same local file.
fn normalize(path: &str) -> String {
    match path.strip_prefix("file:") {
        Some(rest) => format!("file:///{}", rest.trim_start_matches('/')),
        None => path.to_string(),
    }
}

/// Manifest lists, manifests and data files (live entries) of the snapshots selected by `keep`.
async fn referenced_by(table: &Table, keep: impl Fn(i64) -> bool) -> Result<HashSet<String>> {
    let io = table.file_io();
    let mut files = HashSet::new();
    let mut manifests_seen = HashSet::new();
    for snapshot in table.metadata().snapshots() {
        if !keep(snapshot.snapshot_id()) {
            continue;
        }
        files.insert(normalize(snapshot.manifest_list()));
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .or_ours()?;
        for manifest in list.entries() {
            files.insert(normalize(&manifest.manifest_path));
            if !manifests_seen.insert(manifest.manifest_path.clone()) {
                continue;
            }
            let loaded = manifest.load_manifest(io).await.or_ours()?;
            // Only live entries: a `deleted` entry (a rewrite's record of what it removed)
            // names a file that snapshot no longer reads.
            for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
                files.insert(normalize(entry.data_file().file_path()));
            }
        }
    }
    Ok(files)
}

async fn delete(table: &Table, paths: &[String]) -> Result<()> {
    let io = table.file_io();
    for p in paths {
        io.delete(p).await.or_ours()?;
    }
    Ok(())
}
