//! [`DeleteWhere`]: copy-on-write delete of the rows a [`ScanFilter`] matches.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use arrow_array::{BooleanArray, RecordBatch};
use iceberg::spec::{DataFile, PrimitiveLiteral};

use crate::commit::{self, Change, ChangeKind};
use crate::error::{Error, Result};
use crate::scan::{Resolved, ScanFilter};
use crate::schema::Column;
use crate::table::SalesHistory;

/// Deletes the rows a [`ScanFilter`] matches; built by [`SalesHistory::delete_where`].
///
/// Copy-on-write, in one snapshot:
/// - files the filter cannot match (partition values and column statistics) are not read;
/// - files whose rows all match are dropped from the table **without being read** when their
///   partition and column bounds prove it (e.g. a file holding one tenant's rows, for a
///   tenant filter), else after reading them;
/// - files with some matching rows are rewritten without those rows.
///
/// The snapshot is a `delete` when files were only dropped, an `overwrite` when some were
/// rewritten. When the table has a vector index ([`SalesHistory::index_embeddings`]), the
/// index is then updated: the segments naming a removed file (which hold the deleted rows'
/// columns and 8-bit embeddings) leave the current snapshot's index, and their live files
/// are indexed again ([`DeleteReport::index`]). Older snapshots still hold the rows until
/// they are expired: a **tenant erasure** is `delete_where(ScanFilter::new().tenant(id))`,
/// then [`expire_snapshots`](SalesHistory::expire_snapshots) (keeping none older than now)
/// and [`remove_orphan_files`](SalesHistory::remove_orphan_files); `examples/maintain.rs
/// --delete-tenant ID` runs the three.
///
/// An empty filter is refused (it would delete every row).
///
/// ```no_run
/// # async fn f(table: sales_history::SalesHistory) -> sales_history::Result<()> {
/// use sales_history::ScanFilter;
/// let gone = ScanFilter::new().tenant("tenant-offboarded");
/// let plan = table.delete_where(gone.clone()).dry_run(true).await?;
/// println!("would delete {} rows", plan.rows_deleted);
/// table.delete_where(gone).await?;
/// # Ok(()) }
/// ```
#[must_use = "a delete does nothing until it is run"]
#[derive(Debug, Clone)]
pub struct DeleteWhere {
    table: SalesHistory,
    filter: ScanFilter,
    dry_run: bool,
}

/// What a [`DeleteWhere`] did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteReport {
    /// Nothing was written or committed.
    pub dry_run: bool,
    /// The new snapshot (`None` in a dry run or when no row matched).
    pub snapshot_id: Option<i64>,
    /// `delete` or `overwrite` (`None` when nothing matched).
    pub operation: Option<String>,
    /// Rows deleted.
    pub rows_deleted: u64,
    /// Files dropped whole, decided from metadata alone (not read).
    pub files_dropped_by_metadata: usize,
    /// Files dropped whole after reading them (every row matched).
    pub files_dropped_after_reading: usize,
    /// Files rewritten without the matching rows.
    pub files_rewritten: usize,
    /// Files read to decide (the rest of the table was not touched).
    pub files_read: usize,
    /// Data files added (the rewritten files' remaining rows).
    pub files_added: usize,
    /// Bytes of the data files removed from the table.
    pub bytes_removed: u64,
    /// Bytes of the data files added.
    pub bytes_added: u64,
    /// Catalog attempts of the commit.
    pub attempts: u32,
    /// The vector index update run after the delete landed (`None`: the table has no index,
    /// nothing was deleted, a dry run, or the update failed: see `index_stale`).
    pub index: Option<crate::ann::IndexReport>,
    /// The delete landed but the index update after it failed: the current snapshot's index
    /// still names the removed files' segments (searches skip them, but their Puffin files
    /// stay referenced, holding the deleted rows). Run
    /// [`index_embeddings`](SalesHistory::index_embeddings) before expiring snapshots.
    pub index_stale: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl DeleteWhere {
    pub(crate) fn new(table: SalesHistory, filter: ScanFilter) -> Self {
        DeleteWhere {
            table,
            filter,
            dry_run: false,
        }
    }

    /// Plan only: find and count the matching rows, write and commit nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Runs the delete.
    #[tracing::instrument(name = "delete_where", skip_all, fields(table = %self.table.name(), dry_run = self.dry_run))]
    async fn run(self) -> Result<DeleteReport> {
        let started = Instant::now();
        let table = &self.table;
        if self.filter.is_empty() {
            return Err(Error::config(
                "filter",
                "an empty filter matches every row: delete_where refuses to empty the table",
            ));
        }
        let resolved = self.filter.resolve()?;
        // A filter that keeps every row once resolved (e.g. an unbounded price range) is as
        // empty as no filter at all.
        if resolved.is_trivial() {
            return Err(Error::config(
                "filter",
                "the filter matches every row (it has no bound): delete_where refuses to empty the table",
            ));
        }
        if let Some(reason) = table.swap().refuses("delete") {
            return Err(Error::Unsupported {
                operation: "delete_where".into(),
                reason,
            });
        }
        table.refresh().await?;
        let base = table.current();
        let mut report = DeleteReport {
            dry_run: self.dry_run,
            snapshot_id: None,
            operation: None,
            rows_deleted: 0,
            files_dropped_by_metadata: 0,
            files_dropped_after_reading: 0,
            files_rewritten: 0,
            files_read: 0,
            files_added: 0,
            bytes_removed: 0,
            bytes_added: 0,
            attempts: 0,
            index: None,
            index_stale: false,
            elapsed: Duration::ZERO,
        };
        let Some(snapshot_id) = base.metadata().current_snapshot_id() else {
            report.elapsed = started.elapsed();
            return Ok(report);
        };
        if resolved.matches_nothing {
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        commit::refuse_delete_files(&base, "delete_where").await?;
        let candidates: HashSet<String> = table
            .scan()
            .filter(self.filter.clone())
            .snapshot_id(snapshot_id)
            .plan()
            .await?
            .files
            .into_iter()
            .map(|f| f.path)
            .collect();
        let live: HashMap<String, DataFile> = commit::live(&base)
            .await?
            .into_iter()
            .map(|l| (l.file.file_path().to_string(), l.file))
            .filter(|(p, _)| candidates.contains(p))
            .collect();
        let mut paths: Vec<&String> = live.keys().collect();
        paths.sort();

        let commit_id = format!("delete-{}", uuid::Uuid::new_v4().simple());
        let mut change = Change::new(table, ChangeKind::Delete, commit_id);
        change.written_spec_id = Some(base.metadata().default_partition_spec_id());
        let mut removed = HashSet::new();
        for path in paths {
            let file = &live[path];
            if all_match(&resolved, file) {
                report.files_dropped_by_metadata += 1;
                report.rows_deleted += file.record_count();
                report.bytes_removed += file.file_size_in_bytes();
                removed.insert(path.clone());
                continue;
            }
            report.files_read += 1;
            let rewritten = async {
                let batches = crate::scan::read_file_rows(
                    base.file_io(),
                    path,
                    file.file_size_in_bytes(),
                    None,
                    crate::scan::EmbeddingDecoder::Auto,
                )
                .await?;
                let (kept, matched) = without_matches(&resolved, batches)?;
                if matched == 0 {
                    return Ok(None);
                }
                report.rows_deleted += matched;
                report.bytes_removed += file.file_size_in_bytes();
                removed.insert(path.clone());
                if kept.iter().all(|b| b.num_rows() == 0) {
                    report.files_dropped_after_reading += 1;
                    return Ok(None);
                }
                report.files_rewritten += 1;
                if self.dry_run {
                    return Ok(None);
                }
                let created = change.files.paths_mut();
                crate::write::write_months(&base, &kept, 1, &change.commit_id, created)
                    .await
                    .map(Some)
            }
            .await;
            match rewritten {
                Ok(Some(files)) => change.added.extend(files),
                Ok(None) => {}
                Err(e) => {
                    change.files.discard("a rewrite failed").await;
                    return Err(e);
                }
            }
        }
        if !removed.is_empty() {
            report.operation = Some(
                if report.files_rewritten == 0 {
                    "delete"
                } else {
                    "overwrite"
                }
                .to_string(),
            );
        }
        if self.dry_run || removed.is_empty() {
            change.files.discard("a dry run commits nothing").await;
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        if !change.added.is_empty() {
            change.kind = ChangeKind::Overwrite;
        }
        change.removed = removed;
        change.properties = HashMap::from([(
            "sales-history.operation".to_string(),
            "delete-where".to_string(),
        )]);
        report.files_added = change.added.len();
        report.bytes_added = change.added.iter().map(DataFile::file_size_in_bytes).sum();
        let landed = commit::commit(table, change).await?;
        report.snapshot_id = Some(landed.snapshot_id);
        report.attempts = landed.attempts;
        // The new snapshot carries its parent's index, whose segments covering the removed
        // files hold the deleted rows (every column but the embedding, and its 8-bit copy):
        // updated now, they leave the current index, and expiry plus orphan removal delete
        // them with the old snapshots.
        let indexed =
            crate::ann::index_for(table.current().metadata(), landed.snapshot_id).is_some();
        if indexed {
            match table.index_embeddings().await {
                Ok(update) => report.index = Some(update),
                Err(e) => {
                    tracing::warn!(error = %e, retryable = e.is_retryable(),
                        "the delete landed; the vector index update after it failed");
                    report.index_stale = true;
                }
            }
        }
        report.elapsed = started.elapsed();
        tracing::info!(?report, "deleted");
        Ok(report)
    }
}

impl std::future::IntoFuture for DeleteWhere {
    type Output = Result<DeleteReport>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The batches without the rows `filter` matches, and how many rows it matched.
fn without_matches(
    filter: &Resolved,
    batches: Vec<RecordBatch>,
) -> Result<(Vec<RecordBatch>, u64)> {
    let mut kept = Vec::with_capacity(batches.len());
    let mut matched = 0u64;
    for batch in batches {
        let hits = filter.evaluate(batch.num_rows(), |c| Some(batch.column(c.index()).clone()))?;
        let n = hits.true_count() as u64;
        matched += n;
        if n == 0 {
            kept.push(batch);
        } else if (n as usize) < batch.num_rows() {
            let keep: BooleanArray = hits.iter().map(|v| Some(v != Some(true))).collect();
            kept.push(arrow_select::filter::filter_record_batch(&batch, &keep)?);
        }
    }
    Ok((kept, matched))
}

/// Whether every row of `file` matches, from its column bounds and null counts alone.
/// `false` when the metadata cannot prove it (then the file is read).
fn all_match(filter: &Resolved, file: &DataFile) -> bool {
    if filter.is_trivial() {
        // Never decided from metadata alone (and refused before this is reached).
        return false;
    }
    let lower = |c: Column| file.lower_bounds().get(&c.field_id()).map(|d| d.literal());
    let upper = |c: Column| file.upper_bounds().get(&c.field_id()).map(|d| d.literal());
    let no_nulls = |c: Column| file.null_value_counts().get(&c.field_id()) == Some(&0);
    // Under an `identity(tenant_id)` layout the partition value is the file's one tenant
    // (of our layouts only that one has a string partition field; the drift check refuses
    // any other spec), whatever its column bounds (long ids have truncated bounds).
    let partition_tenant = match file.partition().fields().first() {
        Some(Some(iceberg::spec::Literal::Primitive(PrimitiveLiteral::String(t)))) => Some(t),
        _ => None,
    };
    for (col, values) in &filter.strings {
        if *col == Column::TenantId
            && partition_tenant.is_some_and(|t| values.iter().any(|v| v == t))
        {
            continue;
        }
        // Equal bounds are never truncated (a truncated upper bound is incremented).
        match (lower(*col), upper(*col)) {
            (Some(PrimitiveLiteral::String(l)), Some(PrimitiveLiteral::String(u)))
                if l == u && no_nulls(*col) && values.iter().any(|v| v == l) => {}
            _ => return false,
        }
    }
    if filter.sold != (None, None) {
        let (Some(PrimitiveLiteral::Long(min)), Some(PrimitiveLiteral::Long(max))) =
            (lower(Column::SoldDate), upper(Column::SoldDate))
        else {
            return false;
        };
        if !no_nulls(Column::SoldDate)
            || filter.sold.0.is_some_and(|s| *min < s)
            || filter.sold.1.is_some_and(|e| *max >= e)
        {
            return false;
        }
    }
    if filter.price != (None, None) {
        let (Some(PrimitiveLiteral::Int128(min)), Some(PrimitiveLiteral::Int128(max))) =
            (lower(Column::SoldPrice), upper(Column::SoldPrice))
        else {
            return false;
        };
        if !no_nulls(Column::SoldPrice)
            || filter.price.0.is_some_and(|l| *min < i128::from(l))
            || filter.price.1.is_some_and(|h| *max > i128::from(h))
        {
            return false;
        }
    }
    true
}
