//! Table maintenance: expiring snapshots (and deleting the files only they referenced) and
//! removing orphan files (never referenced by any snapshot, e.g. left by a crashed writer).
//!
//! Expiry is a [`Change`](crate::commit) of the one commit loop (the snapshots removed from
//! the metadata, swapped in like any commit); the file clean-up iceberg 0.10.1's
//! `ExpireSnapshotsAction` lacks is added here, and never deletes a file that a retained
//! snapshot, or the table's current or logged metadata, references.

use std::collections::HashSet;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use chrono::{DateTime, Utc};
use iceberg::table::Table;

use crate::commit::{Change, ChangeKind};
use crate::error::{Error, IcebergResultExt, Result};
use crate::table::SalesHistory;

/// Table property: snapshots older than this many milliseconds are expired by default
/// (Java's default when unset: 5 days).
pub const MAX_SNAPSHOT_AGE_PROPERTY: &str = "history.expire.max-snapshot-age-ms";
/// Table property: the most recent snapshots always kept by default (default 1).
pub const MIN_SNAPSHOTS_TO_KEEP_PROPERTY: &str = "history.expire.min-snapshots-to-keep";
/// [`MAX_SNAPSHOT_AGE_PROPERTY`]'s default: 5 days, as Java Iceberg.
pub const DEFAULT_MAX_SNAPSHOT_AGE_MS: i64 = 5 * 24 * 60 * 60 * 1000;

/// A snapshot expiry in preparation; `.await` it. Built by [`SalesHistory::expire_snapshots`].
///
/// A snapshot is expired when it is older than the cut-off **and** not one of the
/// `retain_last` most recent snapshots; the current snapshot is never expired. Both default to
/// the table's retention properties ([`MAX_SNAPSHOT_AGE_PROPERTY`],
/// [`MIN_SNAPSHOTS_TO_KEEP_PROPERTY`]; 5 days and 1 when unset), as Java Iceberg's.
///
/// ```no_run
/// # async fn f(table: sales_history::SalesHistory) -> sales_history::Result<()> {
/// use chrono::{Duration, Utc};
/// let report = table
///     .expire_snapshots()
///     .older_than(Utc::now() - Duration::days(7))
///     .retain_last(10)
///     .await?;
/// println!("expired {} snapshots", report.expired_snapshots.len());
/// # Ok(()) }
/// ```
#[must_use = "an expiry does nothing until it is awaited"]
#[derive(Debug, Clone)]
pub struct ExpireSnapshots {
    table: SalesHistory,
    /// `None`: from the table's property; `Some(None)`: any age.
    older_than: Option<Option<DateTime<Utc>>>,
    retain_last: Option<usize>,
    keep_at_most: Option<usize>,
    dry_run: bool,
}

impl ExpireSnapshots {
    pub(crate) fn new(table: SalesHistory) -> Self {
        ExpireSnapshots {
            table,
            older_than: None,
            retain_last: None,
            keep_at_most: None,
            dry_run: false,
        }
    }

    /// Expire snapshots committed before `when` (instead of the table's maximum age).
    pub fn older_than(mut self, when: DateTime<Utc>) -> Self {
        self.older_than = Some(Some(when));
        self
    }

    /// Age is no criterion: everything but the `retain_last` most recent snapshots expires.
    pub fn any_age(mut self) -> Self {
        self.older_than = Some(None);
        self
    }

    /// Always keep the `n` most recent snapshots (at least 1; instead of the table's
    /// minimum).
    pub fn retain_last(mut self, n: usize) -> Self {
        self.retain_last = Some(n.max(1));
        self
    }

    /// Keep at most the `n` most recent snapshots, whatever their age (at least 1, and never
    /// fewer than [`retain_last`](Self::retain_last)): snapshots beyond them expire even when
    /// younger than the cut-off.
    ///
    /// Age alone does not bound a table's metadata: `metadata.json` carries every snapshot
    /// (about 0.8 KiB each), so a writer committing once a second keeps 432,000 snapshots
    /// under the default 5-day maximum age. A cap on the count keeps the file (and every
    /// commit, which rewrites it) small; time travel then reaches back `n` commits.
    pub fn keep_at_most(mut self, n: usize) -> Self {
        self.keep_at_most = Some(n.max(1));
        self
    }

    /// Report only; change nothing.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// The cut-off and count this expiry uses on `table` (explicit settings, else the
    /// table's retention properties).
    fn retention(&self, table: &Table) -> Result<(Option<DateTime<Utc>>, usize)> {
        let props = table.metadata().properties();
        let parse = |key: &str| -> Result<Option<i64>> {
            props
                .get(key)
                .map(|v| {
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| Error::config(key, format!("`{v}` is not a whole number")))
                })
                .transpose()
        };
        let older_than = match self.older_than {
            Some(explicit) => explicit,
            None => {
                let age = parse(MAX_SNAPSHOT_AGE_PROPERTY)?.unwrap_or(DEFAULT_MAX_SNAPSHOT_AGE_MS);
                DateTime::from_timestamp_millis(Utc::now().timestamp_millis() - age.max(0))
            }
        };
        let retain_last = match self.retain_last {
            Some(n) => n,
            None => parse(MIN_SNAPSHOTS_TO_KEEP_PROPERTY)?
                .map_or(1, |n| usize::try_from(n).unwrap_or(1)),
        };
        Ok((older_than, retain_last.max(1)))
    }

    /// Expires snapshots and deletes the data files, manifests and manifest lists that no
    /// retained snapshot references. Time travel to retained snapshots keeps working.
    #[tracing::instrument(name = "expire_snapshots", skip_all, fields(table = %self.table.name(), dry_run = self.dry_run))]
    async fn run(self) -> Result<MaintenanceReport> {
        let this = &self.table;
        #[cfg(feature = "s3tables")]
        if let crate::CatalogConfig::S3Tables(_) = this.config() {
            return Err(Error::managed_by_s3_tables(
                "expire_snapshots",
                "S3 Tables expires snapshots and deletes their files itself: set the table's \
                 snapshot management (PutTableMaintenanceConfiguration: minSnapshotsToKeep, \
                 maxSnapshotAgeHours)",
            ));
        }
        this.refresh().await?;
        let table = this.current();
        let (older_than, retain_last) = self.retention(&table)?;
        let metadata = table.metadata();
        let current = metadata.current_snapshot_id();
        let mut snapshots: Vec<_> = metadata.snapshots().cloned().collect();
        snapshots.sort_by_key(|s| (s.timestamp_ms(), s.snapshot_id()));
        let keep_from = snapshots.len().saturating_sub(retain_last);
        // Snapshots before this index expire whatever their age (the count cap).
        let capped_before = self
            .keep_at_most
            .map_or(0, |n| snapshots.len().saturating_sub(n.max(retain_last)));
        let cutoff = older_than.map(|t| t.timestamp_millis());
        // Never a snapshot a branch or tag points at (expiring it would drop the ref).
        let referenced = ref_heads(metadata);
        let expired: Vec<i64> = snapshots[..keep_from]
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                Some(s.snapshot_id()) != current && !referenced.contains(&s.snapshot_id())
            })
            .filter(|(i, s)| *i < capped_before || cutoff.is_none_or(|c| s.timestamp_ms() < c))
            .map(|(_, s)| s.snapshot_id())
            .collect();
        let mut report = MaintenanceReport {
            expired_snapshots: expired.clone(),
            dry_run: self.dry_run,
            ..Default::default()
        };
        if expired.is_empty() {
            return Ok(report);
        }
        let candidates = referenced_by(&table, |id| expired.contains(&id)).await?;
        let retained_after = if self.dry_run {
            referenced_by(&table, |id| !expired.contains(&id)).await?
        } else {
            let change = Change::new(
                this,
                ChangeKind::Expire {
                    ids: expired.clone(),
                    older_than_ms: cutoff.unwrap_or(i64::MAX),
                    retain_last,
                },
                format!("expire-{}", uuid::Uuid::new_v4().simple()),
            );
            crate::commit::commit(this, change).await?;
            // Files of every snapshot still in the table (also ones committed meanwhile).
            referenced_by(&this.current(), |_| true).await?
        };
        let mut doomed: Vec<String> = candidates.difference(&retained_after).cloned().collect();
        doomed.sort();
        if !self.dry_run {
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
}

impl IntoFuture for ExpireSnapshots {
    type Output = Result<MaintenanceReport>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
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

/// A removal of orphan files in preparation; `.await` it. Built by
/// [`SalesHistory::remove_orphan_files`]: files under the table's location that no snapshot and
/// no metadata file (current or in the metadata log) references, last modified more than a day
/// ago unless [`older_than`](Self::older_than) says otherwise.
///
/// ```no_run
/// # async fn f(table: &sales_history::SalesHistory) -> sales_history::Result<()> {
/// use chrono::{Duration, Utc};
/// let plan = table.remove_orphan_files().older_than(Utc::now() - Duration::days(3)).dry_run().await?;
/// println!("would delete {} files", plan.deleted_files.len());
/// # Ok(()) }
/// ```
#[must_use = "a removal does nothing until it is awaited"]
#[derive(Debug)]
pub struct RemoveOrphanFiles {
    table: SalesHistory,
    older_than: DateTime<Utc>,
    dry_run: bool,
}

impl RemoveOrphanFiles {
    pub(crate) fn new(table: SalesHistory) -> Self {
        RemoveOrphanFiles {
            table,
            older_than: Utc::now() - chrono::Duration::days(1),
            dry_run: false,
        }
    }

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
            referenced.insert(normalize(loc));
        }
        for log in metadata.metadata_log() {
            referenced.insert(normalize(&log.metadata_file));
        }
        for stats in metadata.statistics_iter() {
            referenced.insert(normalize(&stats.statistics_path));
        }
        for stats in metadata.partition_statistics_iter() {
            referenced.insert(normalize(&stats.statistics_path));
        }
        // The vector index: the segment files its manifests name. A manifest that cannot be
        // read leaves them unknown: every index file is then kept (never deleted on a guess).
        let keep_index_files = match crate::ann::referenced_files(
            table.file_io(),
            metadata,
            &this.shared.index_cache,
        )
        .await
        {
            Ok(files) => {
                referenced.extend(files.iter().map(|f| normalize(f)));
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "an index manifest is unreadable: index files are kept");
                true
            }
        };
        let listed = this.config().list_files(metadata.location()).await?;
        // The listing must spell paths as the metadata does: if the current metadata file is
        // not among the listed files, every file would look unreferenced (a scheme or prefix
        // mismatch, as Java's "prefix mismatch" check): refuse rather than delete the table.
        if let Some(current) = table.metadata_location()
            && !listed
                .iter()
                .any(|(p, _)| normalize(p) == normalize(current))
        {
            // A fast writer may have replaced it and, with delete-after-commit, deleted it
            // while we listed: the table moved on, which says nothing about the spelling.
            if !table.file_io().exists(current).await.unwrap_or(true) {
                return Err(Error::CommitConflict {
                    table: this.name(),
                    source: format!(
                        "the table moved on while its files were listed (its metadata file \
                         {current} was replaced and deleted): nothing was deleted; run again"
                    )
                    .into(),
                });
            }
            return Err(Error::Unsupported {
                operation: "remove_orphan_files".into(),
                reason: format!(
                    "the files listed under {} do not include the current metadata file {current}: \
                     their paths do not match the table's, so nothing is deleted",
                    metadata.location()
                ),
            });
        }
        let mut orphans: Vec<String> = listed
            .into_iter()
            .filter(|(path, modified)| {
                *modified < older_than
                    && !referenced.contains(&normalize(path))
                    && !(keep_index_files && crate::ann::is_index_file_name(path))
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

impl IntoFuture for RemoveOrphanFiles {
    type Output = Result<MaintenanceReport>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The snapshots branches and tags point at. iceberg 0.10.1 exposes refs only by name
/// (`snapshot_for_ref`), so they are read from the metadata's own JSON form (`refs`).
fn ref_heads(metadata: &iceberg::spec::TableMetadata) -> HashSet<i64> {
    let json = serde_json::to_value(metadata).unwrap_or_default();
    json.get("refs")
        .and_then(|r| r.as_object())
        .map(|refs| {
            refs.values()
                .filter_map(|r| r.get("snapshot-id").and_then(|v| v.as_i64()))
                .collect()
        })
        .unwrap_or_default()
}

/// One spelling per file: `file:/x` and `file:///x` name the same local file; `s3a://` and
/// `s3n://` (Spark/Hadoop) the same object as `s3://` (what listing returns).
fn normalize(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("file:") {
        return format!("file:///{}", rest.trim_start_matches('/'));
    }
    for scheme in ["s3a://", "s3n://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            return format!("s3://{rest}");
        }
    }
    path.to_string()
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

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn paths_are_compared_in_one_spelling() {
        assert_eq!(normalize("file:/w/t/a.parquet"), "file:///w/t/a.parquet");
        assert_eq!(normalize("file:///w/t/a.parquet"), "file:///w/t/a.parquet");
        assert_eq!(normalize("s3a://b/t/a.parquet"), "s3://b/t/a.parquet");
        assert_eq!(normalize("s3n://b/t/a.parquet"), "s3://b/t/a.parquet");
        assert_eq!(normalize("s3://b/t/a.parquet"), "s3://b/t/a.parquet");
    }
}
