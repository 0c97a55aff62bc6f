//! Reading the table: [`Scan`] with a typed [`ScanFilter`], projection, row limit, time travel
//! and [`ScanMetrics`].
//!
//! Iceberg plans the scan (snapshot, partition and column-statistics pruning); the planned
//! Parquet files are then read with parquet-rs directly (projection by field id, row groups
//! skipped from their statistics, exact row filtering before the other columns are decoded),
//! several files at once. A file with row-level deletes (none are written by this crate) is
//! read through iceberg's own reader instead.

mod embedding;
mod filter;
mod metrics;
mod narrow;
mod partial;
mod reader;
mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use iceberg::scan::{FileScanTask, TableScan};
use iceberg::spec::DataFileFormat;
use iceberg::table::Table;

pub(crate) use embedding::transpose8;
pub use embedding::{EMBEDDING_DECODE_ENV, EmbeddingDecoder};
pub use filter::ScanFilter;
pub(crate) use filter::{Pruner, Resolved};
use metrics::Counters;
pub use metrics::ScanMetrics;
pub use partial::PartialSaleRecord;
pub(crate) use reader::{DEFAULT_FOOTER_CACHE_BYTES, FooterCache};
use reader::{PlannedFile, ReadPlan};
pub use stream::ScanStream;
use stream::{iceberg_reader, spawn_readers};

use crate::batch::batch_to_records;
use crate::error::{Error, IcebergResultExt, Result};
use crate::layout::IdentityTenant;
use crate::record::SaleRecord;
use crate::schema::{Column, arrow_schema};
use crate::table::SalesHistory;

/// A stream of Arrow batches from a scan.
pub type BatchStream = BoxStream<'static, Result<RecordBatch>>;

/// Rows per Arrow batch unless [`Scan::batch_size`] says otherwise (scans without the
/// `embedding` column).
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// Rows per Arrow batch of a scan that reads `embedding`, unless [`Scan::batch_size`] says
/// otherwise: 1024 rows of 1024 doubles are 8 MiB per batch. Smaller batches than
/// [`DEFAULT_BATCH_SIZE`] keep each batch's buffers below the allocator's fresh-mapping
/// threshold, so they are reused instead of faulted in anew (full scan of 50k rows: 444 ms at
/// 8192 rows, 332 ms at 1024; `examples/bench_scan.rs`).
pub const DEFAULT_EMBEDDING_BATCH_SIZE: usize = 1024;

/// Bytes of column chunks one file reader fetches and decodes at a time, unless
/// [`Scan::read_buffer_bytes`] says otherwise. Files are read in turns of whole row groups
/// (of their selected pages, when a tenant or time filter uses the page index), a row group
/// larger than this in row ranges cut where its largest column's pages start, so a scan holds
/// about `concurrency × this` of file data plus its batches in flight, whatever the size of
/// the files and their row groups (our compacted files are up to 128 MiB in one row group,
/// other engines write 512 MiB ones). Bounds, precisely: a range is at least one page of the
/// largest column, and every range of a group also reads its dictionary pages; a file without
/// an offset index reads a larger group whole; a file read in one turn whose needed bytes are
/// most of it is read whole (up to about twice this); tables with row-level delete files are
/// read by iceberg's reader, which this setting does not govern.
///
/// 16 MiB keeps a turn's buffers below glibc's largest threshold for fresh mappings (32 MiB),
/// so they are reused instead of mapped and faulted in anew on every turn: a full scan of a
/// compacted table (three 65 MB files, 40,000 1024-dim rows) took 219–229 ms with 64 MiB
/// turns and 171–205 ms with 16 MiB ones, half the system time (`examples/bench_compact.rs`
/// tables; `examples/bench_scan_memory.rs` compares budgets on files of hundreds of MB).
pub const DEFAULT_READ_BUFFER_BYTES: u64 = 16 << 20;

/// A scan in preparation. Nothing is read until one of the `to_*`, [`stream`](Self::stream),
/// [`execute`](Self::execute), [`plan`](Self::plan) or [`count`](Self::count) methods runs.
///
/// ```no_run
/// # async fn f(table: &sales_history::SalesHistory) -> sales_history::Result<()> {
/// use sales_history::{Column, ScanFilter};
/// let mut stream = table
///     .scan()
///     .filter(ScanFilter::new().tenant("tenant-a").year_month(2025, 3))
///     .select([Column::ProductId, Column::SoldPrice, Column::SoldDate])
///     .limit(1000)
///     .execute()
///     .await?;
/// use futures::TryStreamExt;
/// while let Some(batch) = stream.try_next().await? {
///     println!("{} rows", batch.num_rows());
/// }
/// println!("{:?}", stream.metrics()); // files planned vs in the snapshot, bytes read, rows
/// # Ok(()) }
/// ```
///
/// Batches from different files arrive in no fixed order (files are read concurrently);
/// with a [`limit`](Self::limit), files are read one after another in path order.
#[must_use = "a scan does nothing until it is run"]
#[derive(Debug, Clone)]
pub struct Scan {
    table: SalesHistory,
    filter: ScanFilter,
    /// A tenant scope's filter: ANDed with `filter` when the scan runs, never widened.
    scope: Option<ScanFilter>,
    columns: Option<Vec<Column>>,
    snapshot_id: Option<i64>,
    as_of: Option<DateTime<Utc>>,
    limit: Option<usize>,
    /// `None`: the default for the projection.
    batch_size: Option<usize>,
    concurrency: Option<usize>,
    read_buffer: Option<u64>,
    decoder: EmbeddingDecoder,
    /// Only these data files (the vector index's uncovered files), after pruning.
    only_files: Option<Arc<std::collections::HashSet<String>>>,
    /// Plan with iceberg's planner, not the handle's kept live files ([`SCAN_PLANNER_ENV`]).
    iceberg_planner: bool,
}

/// What [`Scan::plan`] found: the snapshot and the data files left after pruning.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ScanPlan {
    /// The snapshot planned (`None`: the table has no data yet).
    pub snapshot_id: Option<i64>,
    /// Data files in that snapshot, before pruning.
    pub data_files_in_snapshot: u64,
    /// The data files that would be read, in path order.
    pub files: Vec<PlannedDataFile>,
    /// Time spent planning.
    pub planning: Duration,
}

/// One data file of a [`ScanPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlannedDataFile {
    /// Full path (`file:///…`, `s3://…`).
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Rows in the file, when the manifest records it.
    pub record_count: Option<u64>,
    /// The partition spec the file was written under (several after
    /// [`SalesHistory::evolve_layout`](crate::SalesHistory::evolve_layout): each file is
    /// pruned under its own spec).
    pub partition_spec_id: Option<i32>,
}

/// Environment variable choosing how scans plan: `kept` (the default: the snapshot's live
/// files kept by the handle, pruned per filter by their bounds and partition values) or
/// `iceberg` (iceberg's planner for every scan: the earlier way, kept as the baseline
/// `bench_layout` and `bench_scan` measure against). Either way a snapshot with row-level
/// delete files is planned (and read) by iceberg.
pub const SCAN_PLANNER_ENV: &str = "SALES_HISTORY_SCAN_PLANNER";

fn iceberg_planner_asked() -> bool {
    std::env::var(SCAN_PLANNER_ENV).is_ok_and(|v| v.trim().eq_ignore_ascii_case("iceberg"))
}

/// A data file to read, as planning found it.
#[derive(Debug)]
struct PlanFile {
    path: String,
    size: u64,
    record_count: Option<u64>,
    spec_id: Option<i32>,
    /// A Parquet file without row-level deletes: our reader reads it.
    own_readable: bool,
    /// Its `identity(tenant_id)` partition value, under a spec that has one.
    tenant: Option<Arc<str>>,
}

impl PlanFile {
    fn of_task(t: &FileScanTask) -> Self {
        PlanFile {
            path: t.data_file_path.clone(),
            size: t.file_size_in_bytes,
            record_count: t.record_count,
            spec_id: t.partition_spec.as_ref().map(|s| s.spec_id()),
            own_readable: t.deletes.is_empty() && t.data_file_format == DataFileFormat::Parquet,
            // iceberg 0.10.1's planner gives no task its spec (`partition_spec: None`), so
            // which partition field holds the tenant is not known: it is read from the file.
            tenant: None,
        }
    }
}

/// The outcome of planning, shared by `plan`, `execute` and `count`.
struct Planned {
    table: Table,
    scan: Option<TableScan>,
    tasks: Vec<PlanFile>,
    metrics: ScanMetrics,
    filter: Option<Resolved>,
    output: Vec<Column>,
}

impl Scan {
    pub(crate) fn new(table: SalesHistory) -> Self {
        Scan {
            table,
            filter: ScanFilter::new(),
            scope: None,
            columns: None,
            snapshot_id: None,
            as_of: None,
            limit: None,
            batch_size: None,
            concurrency: None,
            read_buffer: None,
            decoder: EmbeddingDecoder::Auto,
            only_files: None,
            iceberg_planner: iceberg_planner_asked(),
        }
    }

    /// Plans with iceberg's planner (`true`) or the handle's kept live files (tests compare
    /// the two).
    #[cfg(test)]
    pub(crate) fn iceberg_planner(mut self, on: bool) -> Self {
        self.iceberg_planner = on;
        self
    }

    /// Restricts the scan to these data files (those of the plan among them).
    pub(crate) fn only_files(mut self, paths: std::collections::HashSet<String>) -> Self {
        self.only_files = Some(Arc::new(paths));
        self
    }

    /// Locks the scan to `scope` (a tenant scope): every filter added later is ANDed with it.
    pub(crate) fn scoped(mut self, scope: ScanFilter) -> Self {
        self.scope = Some(scope);
        self
    }

    /// The filter the scan runs with: its own, within its scope.
    fn effective_filter(&self) -> ScanFilter {
        match &self.scope {
            Some(scope) => self.filter.clone().and(scope.clone()),
            None => self.filter.clone(),
        }
    }

    /// Keeps rows of this tenant (call again to add more tenants).
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.filter = self.filter.tenant(tenant_id);
        self
    }

    /// Keeps rows with `start <= sold_date < end` (half-open). An empty range is an error
    /// ([`Error::Config`]) when the scan runs.
    pub fn sold_between(mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        self.filter = self.filter.sold_between(start, end);
        self
    }

    /// Adds a [`ScanFilter`] (AND with what the scan already has).
    pub fn filter(mut self, filter: ScanFilter) -> Self {
        self.filter = self.filter.and(filter);
        self
    }

    /// Reads only these columns (output in table order). Filters may use other columns;
    /// they are read for filtering only. An empty list is an [`Error::Config`].
    pub fn select(mut self, columns: impl IntoIterator<Item = Column>) -> Self {
        let mut cols: Vec<Column> = columns.into_iter().collect();
        cols.sort();
        cols.dedup();
        self.columns = Some(cols);
        self
    }

    /// Reads the table as of this snapshot instead of the current one (time travel);
    /// [`Error::SnapshotNotFound`] when the table has no such snapshot.
    pub fn snapshot_id(mut self, snapshot_id: i64) -> Self {
        self.snapshot_id = Some(snapshot_id);
        self
    }

    /// Reads the table as it was at `at`: the last snapshot of the table's history committed
    /// at or before it. [`Error::Config`] (key `as_of`) when `at` is before the first snapshot
    /// or combined with [`snapshot_id`](Self::snapshot_id).
    pub fn as_of(mut self, at: DateTime<Utc>) -> Self {
        self.as_of = Some(at);
        self
    }

    /// Returns at most `rows` rows (files are then read one at a time, in path order).
    pub fn limit(mut self, rows: usize) -> Self {
        self.limit = Some(rows);
        self
    }

    /// Rows per Arrow batch (default [`DEFAULT_EMBEDDING_BATCH_SIZE`] when `embedding` is read,
    /// else [`DEFAULT_BATCH_SIZE`]; at least 1).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = Some(rows.max(1));
        self
    }

    /// Data files read at once, and turns (see [`read_buffer_bytes`](Self::read_buffer_bytes))
    /// decoded at once across them: a scan of fewer files than this decodes several turns
    /// of one file side by side (default: twice the available cores).
    pub fn concurrency(mut self, files: usize) -> Self {
        self.concurrency = Some(files.max(1));
        self
    }

    /// Bytes of column chunks each concurrent file reader fetches and decodes at a time
    /// (default [`DEFAULT_READ_BUFFER_BYTES`], which says what exactly is bounded; at least
    /// one row group per turn). Smaller values mean more, smaller reads
    /// ([`ScanMetrics::requests`]).
    pub fn read_buffer_bytes(mut self, bytes: u64) -> Self {
        self.read_buffer = Some(bytes.max(1));
        self
    }

    /// Which decoder reads the `embedding` column (default [`EmbeddingDecoder::Auto`]:
    /// this crate's decoder for the layout's `list<double>` chunks, parquet-rs's Arrow reader
    /// for anything else; [`ScanMetrics::embedding_fallbacks`] counts the latter). The output
    /// is the same either way; [`EmbeddingDecoder::Parquet`] is the baseline benchmarks
    /// compare with.
    pub fn embedding_decoder(mut self, decoder: EmbeddingDecoder) -> Self {
        self.decoder = decoder;
        self
    }

    fn output_columns(&self) -> Result<Vec<Column>> {
        match &self.columns {
            None => Ok(Column::ALL.to_vec()),
            Some(c) if c.is_empty() => Err(Error::config(
                "select",
                "no columns selected; use count() to count rows",
            )),
            Some(c) => Ok(c.clone()),
        }
    }

    /// The snapshot to read: explicit, as of a time, or the current one.
    fn resolve_snapshot(&self, table: &Table) -> Result<Option<i64>> {
        let meta = table.metadata();
        match (self.snapshot_id, self.as_of) {
            (Some(_), Some(_)) => Err(Error::config(
                "as_of",
                "give either snapshot_id or as_of, not both",
            )),
            (Some(id), None) => match meta.snapshot_by_id(id) {
                Some(_) => Ok(Some(id)),
                None => Err(Error::SnapshotNotFound {
                    table: self.table.name(),
                    snapshot_id: id,
                }),
            },
            (None, Some(at)) => {
                let ms = at.timestamp_millis();
                let mut log: Vec<(i64, i64)> = meta
                    .history()
                    .iter()
                    .map(|l| (l.timestamp_ms, l.snapshot_id))
                    .collect();
                if log.is_empty() {
                    log = meta
                        .snapshots()
                        .map(|s| (s.timestamp_ms(), s.snapshot_id()))
                        .collect();
                }
                log.sort();
                log.iter()
                    .rev()
                    .find(|(t, _)| *t <= ms)
                    .map(|(_, id)| Some(*id))
                    .ok_or_else(|| {
                        Error::config(
                            "as_of",
                            format!(
                                "{at} is before the first snapshot of `{}`",
                                self.table.name()
                            ),
                        )
                    })
            }
            (None, None) => Ok(meta.current_snapshot_id()),
        }
    }

    async fn plan_tasks(&self, output: Vec<Column>) -> Result<Planned> {
        let start = Instant::now();
        let table = self.table.table_for_read().await?;
        let resolved = self.effective_filter().resolve()?;
        let snapshot_id = self.resolve_snapshot(&table)?;
        let mut metrics = ScanMetrics {
            snapshot_id,
            ..ScanMetrics::default()
        };
        let Some(id) = snapshot_id else {
            metrics.planning = start.elapsed();
            return Ok(Planned {
                table,
                scan: None,
                tasks: Vec::new(),
                metrics,
                filter: None,
                output,
            });
        };
        let mut read: Vec<Column> = output.iter().chain(&resolved.columns()).copied().collect();
        read.sort();
        read.dedup();
        let predicate = resolved.predicate();
        // iceberg's scan: built only when its planner or reader is needed (building one
        // costs more than planning from kept manifests).
        let iceberg_scan = || {
            let mut builder = table
                .scan()
                .snapshot_id(id)
                .select(read.iter().map(|c| c.name()));
            if let Some(p) = predicate.clone() {
                builder = builder.with_filter(p);
            }
            builder.build().or_ours()
        };
        let mut built = None;
        // The snapshot's live files kept by the handle, pruned here (no delete files: those
        // need iceberg's planner and reader).
        let kept = match (resolved.matches_nothing, self.iceberg_planner) {
            (false, false) => match table.metadata().snapshot_by_id(id) {
                Some(snapshot) => {
                    let live = self
                        .table
                        .shared
                        .live_files
                        .snapshot_files(&table, snapshot)
                        .await?;
                    (!live.has_deletes).then_some(live)
                }
                None => None,
            },
            _ => None,
        };
        let mut tasks: Vec<PlanFile> = match (&kept, resolved.matches_nothing) {
            (_, true) => Vec::new(),
            (Some(live), false) => {
                let pruner = resolved.pruner(table.metadata());
                let specs = table.metadata().partition_specs_iter();
                let tenant = IdentityTenant::of(specs.map(|s| s.as_ref()));
                live.matching(&pruner)
                    .map(|(spec, f)| PlanFile {
                        path: f.file_path().to_string(),
                        size: f.file_size_in_bytes(),
                        record_count: Some(f.record_count()),
                        spec_id: Some(spec),
                        own_readable: f.file_format() == DataFileFormat::Parquet,
                        tenant: tenant.value(spec, f.partition()),
                    })
                    .collect()
            }
            (None, false) => {
                let scan = iceberg_scan()?;
                let tasks = scan
                    .plan_files()
                    .await
                    .or_ours()?
                    .map_ok(|t| PlanFile::of_task(&t))
                    .try_collect()
                    .await
                    .or_ours()?;
                built = Some(scan);
                tasks
            }
        };
        // iceberg's reader reads the scan when a file needs it (delete files, not Parquet).
        let scan = match (tasks.iter().any(|t| !t.own_readable), built) {
            (true, Some(scan)) => Some(scan),
            (true, None) => Some(iceberg_scan()?),
            (false, _) => None,
        };
        tasks.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(only) = &self.only_files {
            tasks.retain(|t| only.contains(&t.path));
        }
        metrics.files_planned = tasks.len() as u64;
        metrics.data_files_in_snapshot = match (total_data_files(&table, id), &kept) {
            (Some(n), _) => n,
            (None, Some(live)) => live.len() as u64,
            (None, None) if predicate.is_none() && !resolved.matches_nothing => tasks.len() as u64,
            (None, None) => {
                let all = table
                    .scan()
                    .snapshot_id(id)
                    .select_empty()
                    .build()
                    .or_ours()?;
                all.plan_files()
                    .await
                    .or_ours()?
                    .try_fold(0u64, |n, _| async move { Ok(n + 1) })
                    .await
                    .or_ours()?
            }
        };
        metrics.planning = start.elapsed();
        tracing::debug!(
            table = %self.table.name(),
            snapshot_id = ?metrics.snapshot_id,
            files_in_snapshot = metrics.data_files_in_snapshot,
            files_planned = metrics.files_planned,
            planning_ms = metrics.planning.as_millis() as u64,
            "scan planned"
        );
        let filter = (!resolved.is_trivial()).then_some(resolved);
        Ok(Planned {
            table,
            scan,
            tasks,
            metrics,
            filter,
            output,
        })
    }

    /// Plans the scan without reading data: the snapshot, the files in it, the files left
    /// after pruning.
    pub async fn plan(self) -> Result<ScanPlan> {
        let output = self.output_columns()?;
        let planned = self.plan_tasks(output).await?;
        // iceberg 0.10.1's planner leaves `FileScanTask::partition_spec` unset: with one spec
        // every file has it; with several (an evolved layout) the snapshot's manifests, as the
        // handle keeps them, say.
        let metadata = planned.table.metadata();
        let specs: std::collections::HashMap<String, i32> = match (
            metadata.partition_specs_iter().len(),
            planned.metrics.snapshot_id,
        ) {
            (n, Some(id)) if n > 1 && planned.tasks.iter().any(|t| t.spec_id.is_none()) => {
                match metadata.snapshot_by_id(id) {
                    Some(snapshot) => self
                        .table
                        .shared
                        .live_files
                        .snapshot_files(&planned.table, snapshot)
                        .await?
                        .iter()
                        .map(|(spec_id, f)| (f.file_path().to_string(), spec_id))
                        .collect(),
                    None => Default::default(),
                }
            }
            _ => Default::default(),
        };
        let only_spec = (metadata.partition_specs_iter().len() == 1)
            .then(|| metadata.default_partition_spec_id());
        Ok(ScanPlan {
            snapshot_id: planned.metrics.snapshot_id,
            data_files_in_snapshot: planned.metrics.data_files_in_snapshot,
            files: planned
                .tasks
                .iter()
                .map(|t| PlannedDataFile {
                    path: t.path.clone(),
                    size_bytes: t.size,
                    record_count: t.record_count,
                    partition_spec_id: t
                        .spec_id
                        .or_else(|| specs.get(&t.path).copied())
                        .or(only_spec),
                })
                .collect(),
            planning: planned.metrics.planning,
        })
    }

    /// Runs the scan: a stream of Arrow batches with live [`ScanMetrics`].
    pub async fn execute(self) -> Result<ScanStream> {
        let output = self.output_columns()?;
        let planned = self.plan_tasks(output).await?;
        let schema = Arc::new(
            arrow_schema()
                .project(&planned.output.iter().map(|c| c.index()).collect::<Vec<_>>())?,
        );
        let counters = Arc::new(Counters::default());
        let workers = match self.limit {
            Some(_) => 1,
            None => self.concurrency.unwrap_or(crate::cores() * 2),
        };
        let plan = Arc::new(ReadPlan {
            file_io: planned.table.file_io().clone(),
            output: planned.output.clone(),
            schema: schema.clone(),
            filter: planned.filter.clone(),
            batch_size: self
                .batch_size
                .unwrap_or(if planned.output.contains(&Column::Embedding) {
                    DEFAULT_EMBEDDING_BATCH_SIZE
                } else {
                    DEFAULT_BATCH_SIZE
                }),
            limit: self.limit,
            read_buffer: self.read_buffer.unwrap_or(DEFAULT_READ_BUFFER_BYTES),
            decode: embedding::Mode::of(self.decoder),
            counters: counters.clone(),
            footers: Some(self.table.shared.footers.clone()),
            // `concurrency` turns at once, wherever they come from (a limit reads in order).
            turn_permits: self
                .limit
                .is_none()
                .then(|| Arc::new(tokio::sync::Semaphore::new(workers))),
        });
        let own_reader = planned.tasks.iter().all(|t| t.own_readable);
        let inner = match (&planned.scan, own_reader) {
            (Some(scan), false) => iceberg_reader(scan, plan).await?,
            _ => {
                let files: Vec<PlannedFile> = planned
                    .tasks
                    .iter()
                    .map(|t| PlannedFile {
                        path: t.path.clone(),
                        size: t.size,
                        rows: None,
                        tenant: t.tenant.clone(),
                    })
                    .collect();
                spawn_readers(plan, files, workers)
            }
        };
        Ok(ScanStream {
            inner: (self.limit != Some(0)).then_some(inner),
            schema,
            counters,
            planned: planned.metrics,
            remaining: self.limit,
        })
    }

    /// Runs the scan and streams Arrow batches.
    pub async fn stream(self) -> Result<BatchStream> {
        Ok(self.execute().await?.boxed())
    }

    /// Runs the scan and collects all batches.
    pub async fn to_batches(self) -> Result<Vec<RecordBatch>> {
        self.stream().await?.try_collect().await
    }

    /// Runs the scan, collects all batches and returns them with the final metrics.
    pub async fn to_batches_with_metrics(self) -> Result<(Vec<RecordBatch>, ScanMetrics)> {
        let mut stream = self.execute().await?;
        let mut out = Vec::new();
        while let Some(b) = stream.try_next().await? {
            out.push(b);
        }
        Ok((out, stream.metrics()))
    }

    /// Runs the scan and returns typed rows. Fails with [`Error::Config`] when a projection
    /// leaves out columns (use [`to_partial_records`](Self::to_partial_records) for that).
    pub async fn to_records(self) -> Result<Vec<SaleRecord>> {
        if self
            .columns
            .as_ref()
            .is_some_and(|c| c.len() != Column::ALL.len())
        {
            return Err(Error::config(
                "select",
                "typed rows need every column; use to_partial_records() for a projection",
            ));
        }
        let mut out = Vec::new();
        let mut stream = self.stream().await?;
        while let Some(batch) = stream.next().await {
            out.extend(batch_to_records(&batch?)?);
        }
        Ok(out)
    }

    /// Runs the scan and returns rows holding only the selected columns.
    pub async fn to_partial_records(self) -> Result<Vec<PartialSaleRecord>> {
        let mut out = Vec::new();
        let mut stream = self.stream().await?;
        while let Some(batch) = stream.next().await {
            out.extend(PartialSaleRecord::from_batch(&batch?)?);
        }
        Ok(out)
    }

    /// Counts the matching rows. Without a filter this reads only manifests (the row counts
    /// of the data files); with one, only the filter's columns.
    pub async fn count(mut self) -> Result<u64> {
        let resolved = self.effective_filter().resolve()?;
        let cols = resolved.columns();
        let output = vec![cols.first().copied().unwrap_or(Column::TenantId)];
        if cols.is_empty() && self.limit.is_none() {
            let planned = self.plan_tasks(output.clone()).await?;
            let exact = planned.tasks.iter().all(|t| t.own_readable);
            let counts: Option<u64> = planned.tasks.iter().map(|t| t.record_count).sum();
            if let (true, Some(n)) = (exact, counts) {
                return Ok(n);
            }
        }
        self.columns = Some(output);
        let mut n = 0u64;
        let mut stream = self.stream().await?;
        while let Some(batch) = stream.next().await {
            n += batch?.num_rows() as u64;
        }
        Ok(n)
    }
}

/// `total-data-files` from the snapshot summary, when the writer recorded it.
fn total_data_files(table: &Table, snapshot_id: i64) -> Option<u64> {
    let snapshot = table.metadata().snapshot_by_id(snapshot_id)?;
    let props = &snapshot.summary().additional_properties;
    props.get("total-data-files")?.parse().ok()
}

/// Reads every row of one data file (all columns, our layout): the input of a rewrite.
/// `filter`, when given, keeps only the rows it matches; `decoder` reads the embeddings.
pub(crate) async fn read_file_rows(
    file_io: &iceberg::io::FileIO,
    path: &str,
    size: u64,
    filter: Option<&ScanFilter>,
    decoder: EmbeddingDecoder,
) -> Result<Vec<RecordBatch>> {
    let filter = match filter {
        Some(f) => Some(f.resolve()?),
        None => None,
    };
    let plan = Arc::new(ReadPlan {
        file_io: file_io.clone(),
        output: Column::ALL.to_vec(),
        schema: arrow_schema(),
        filter,
        batch_size: DEFAULT_EMBEDDING_BATCH_SIZE,
        limit: None,
        read_buffer: DEFAULT_READ_BUFFER_BYTES,
        decode: embedding::Mode::of(decoder),
        counters: Arc::new(Counters::default()),
        footers: None,
        turn_permits: None,
    });
    let file = PlannedFile {
        path: path.to_string(),
        size,
        rows: None,
        tenant: None,
    };
    collect_file(plan, file).await
}

/// Reads rows `rows` (sorted, distinct positions in the file) of one data file, all columns,
/// in position order: the vector index's candidates. Only their pages are fetched when the
/// file has a page index; the file's parsed footer is kept in `footers`.
pub(crate) async fn read_rows_at(
    file_io: &iceberg::io::FileIO,
    path: &str,
    size: u64,
    rows: &[u64],
    decoder: EmbeddingDecoder,
    footers: &Arc<FooterCache>,
) -> Result<Vec<RecordBatch>> {
    let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
    for r in rows {
        match ranges.last_mut() {
            Some(last) if last.end == *r => last.end += 1,
            _ => ranges.push(*r..*r + 1),
        }
    }
    read_ranges_of(
        file_io,
        path,
        size,
        ranges,
        decoder,
        Some(footers.clone()),
        (DEFAULT_READ_BUFFER_BYTES, Arc::default()),
    )
    .await
}

/// Reads the rows at positions `rows` of one data file, all columns: a window of a
/// compaction's merge. Only the pages holding them are fetched and decoded when the file has
/// a page index (every file this crate writes has one); the file's parsed footer and page
/// index are kept in `footers` for its next window.
pub(crate) async fn read_row_range(
    file_io: &iceberg::io::FileIO,
    path: &str,
    size: u64,
    rows: std::ops::Range<u64>,
    decoder: EmbeddingDecoder,
    footers: &Arc<FooterCache>,
) -> Result<Vec<RecordBatch>> {
    read_ranges_of(
        file_io,
        path,
        size,
        vec![rows],
        decoder,
        Some(footers.clone()),
        (DEFAULT_READ_BUFFER_BYTES, Arc::default()),
    )
    .await
}

/// Rows `ranges` (sorted, disjoint positions) of one data file, all columns, in order,
/// reading at most `read_buffer` bytes at a time (counted in `counters`).
pub(crate) async fn read_ranges_of(
    file_io: &iceberg::io::FileIO,
    path: &str,
    size: u64,
    ranges: Vec<std::ops::Range<u64>>,
    decoder: EmbeddingDecoder,
    footers: Option<Arc<FooterCache>>,
    (read_buffer, counters): (u64, Arc<Counters>),
) -> Result<Vec<RecordBatch>> {
    let plan = Arc::new(ReadPlan {
        file_io: file_io.clone(),
        output: Column::ALL.to_vec(),
        schema: arrow_schema(),
        filter: None,
        batch_size: DEFAULT_EMBEDDING_BATCH_SIZE,
        limit: None,
        read_buffer,
        decode: embedding::Mode::of(decoder),
        counters,
        footers,
        turn_permits: None,
    });
    let file = PlannedFile {
        path: path.to_string(),
        size,
        rows: Some(Arc::new(ranges)),
        tenant: None,
    };
    collect_file(plan, file).await
}

/// Runs one file reader and collects its batches.
async fn collect_file(plan: Arc<ReadPlan>, file: PlannedFile) -> Result<Vec<RecordBatch>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let reading = reader::read_file(plan, &file, tx, None);
    let collecting = async {
        let mut out = Vec::new();
        while let Some(batch) = rx.recv().await {
            out.push(batch?);
        }
        Ok::<_, Error>(out)
    };
    let (read, batches) = futures::join!(reading, collecting);
    read?;
    batches
}

#[cfg(test)]
mod plan_tests;
