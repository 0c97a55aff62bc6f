//! [`Compact`]: small data files of a month bin-packed into target-size files, one `replace`
//! snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use futures::{FutureExt, StreamExt, TryStreamExt};
use iceberg::spec::{DataFile, Struct, TableMetadata};

use crate::commit::{self, Change, ChangeKind};
use crate::error::{Error, Result};
use crate::month::Month;
use crate::scan::EmbeddingDecoder;
use crate::table::SalesHistory;
use crate::tasks::AbortOnDrop;

/// Table property with the size compaction aims its files at (Iceberg's standard name).
pub const TARGET_FILE_SIZE_PROPERTY: &str = "write.target-file-size-bytes";
/// Target file size when the table does not set [`TARGET_FILE_SIZE_PROPERTY`]: 128 MiB.
///
/// Smaller than Iceberg's 512 MiB default on purpose: a row of this table carries a
/// 1024-dimension embedding (~4–8 KB encoded), so 128 MiB is already ~20–30 k rows per file,
/// and a month stays spread over several files for parallel scans. (A compaction's memory does
/// not grow with it: bins are merged as a stream.)
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// Compacts small data files, month by month, into files near a target size; built by
/// [`SalesHistory::compact`].
///
/// A file counts as small below ¾ of the target. In each month with at least two small files
/// (or [`min_input_files`](Self::min_input_files)), the small files are bin-packed into groups
/// of at most the target size; each group is read and written again as one file (sorted by the
/// table's sort order when it declares one with identity transforms).
///
/// **Memory.** A group is merged as a stream: its files are read in windows of rows (each
/// file this crate writes is already in the sort order), merged, and written as they come, so
/// a compaction holds a window or two per file (64 MiB decoded in all), two merged batches on
/// their way to the writer's task, and its current row group, per bin being rewritten (one
/// per core at once, each its own task) — not the group's bytes. A file not in the sort order (another engine's)
/// is read whole and sorted alone before it joins the merge.
///
/// All groups of the run go
/// into **one** `replace` snapshot: readers see either the old files or the new, never both,
/// and the rows are the same multiset (a `replace` changes no data). The old snapshot stays
/// readable by time travel until [`expire_snapshots`](SalesHistory::expire_snapshots) removes
/// it.
///
/// A concurrent append is kept: on a conflict the snapshot is re-applied on the new version
/// when every compacted file is still live; if another rewrite removed one of them, the run
/// fails with [`Error::CommitConflict`] and deletes the files it wrote.
///
/// ```no_run
/// # async fn f(table: sales_history::SalesHistory) -> sales_history::Result<()> {
/// let plan = table.compact().dry_run(true).await?; // what it would do
/// println!("{} small files in {} months", plan.files_removed, plan.months);
/// let done = table.compact().await?;
/// println!("{} → {} files, {} rows rewritten", done.files_removed, done.files_added, done.rows_rewritten);
/// # Ok(()) }
/// ```
#[must_use = "a compaction does nothing until it is awaited"]
#[derive(Debug, Clone)]
pub struct Compact {
    table: SalesHistory,
    target: Option<u64>,
    min_input_files: usize,
    dry_run: bool,
    /// Only this month (the maintenance task compacts month by month).
    month: Option<Month>,
    /// Size tiers: small files are combined only with files of their own tier.
    tiered: bool,
    /// Bins rewritten at once (default: one per core).
    parallel_bins: Option<usize>,
    /// Rows per merge window instead of the one the read budget gives (tests: several
    /// windows per small file).
    window_rows: Option<u64>,
    /// Move files of older partition specs onto the default spec (layout migration).
    migrate: bool,
    /// `month(year, month)` as given (checked when the run starts).
    month_given: Option<(i32, u32)>,
    /// Which decoder reads the embeddings of the files rewritten.
    decoder: EmbeddingDecoder,
}

/// What a compaction did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Nothing was written or committed.
    pub dry_run: bool,
    /// The `replace` snapshot (`None` in a dry run or when there was nothing to compact).
    pub snapshot_id: Option<i64>,
    /// The target file size used.
    pub target_file_size: u64,
    /// Months rewritten (partitions, for a tenant layout's compaction).
    pub months: usize,
    /// Data files removed from the table (the small files).
    pub files_removed: usize,
    /// Data files added (in a dry run: the number of bins).
    pub files_added: usize,
    /// Bytes of the files removed.
    pub bytes_removed: u64,
    /// Bytes of the files added (0 in a dry run).
    pub bytes_added: u64,
    /// Rows read and written again.
    pub rows_rewritten: u64,
    /// Catalog attempts of the commit.
    pub attempts: u32,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Compact {
    pub(crate) fn new(table: SalesHistory) -> Self {
        Compact {
            table,
            target: None,
            min_input_files: 2,
            dry_run: false,
            month: None,
            tiered: false,
            parallel_bins: None,
            window_rows: None,
            migrate: false,
            month_given: None,
            decoder: EmbeddingDecoder::Auto,
        }
    }

    /// Which decoder reads the `embedding` column of the files rewritten (default
    /// [`EmbeddingDecoder::Auto`]; [`EmbeddingDecoder::Parquet`] is the baseline
    /// `bench_compact --decoder-pairs` compares with). The files written are the same either way.
    pub fn embedding_decoder(mut self, decoder: EmbeddingDecoder) -> Self {
        self.decoder = decoder;
        self
    }

    /// Layout migration instead of compaction: every live file written under an older
    /// partition spec (before [`SalesHistory::evolve_layout`]) is rewritten under the table's
    /// default spec, whatever its size — bins of up to the target size per month, rows
    /// regrouped by the new partitioning. One `replace` snapshot **per month** (in month
    /// order), so a migration interrupted after some months resumes with the rest: run it
    /// again. With [`month`](Self::month), only that month.
    ///
    /// ```no_run
    /// # async fn f(table: sales_history::SalesHistory) -> sales_history::Result<()> {
    /// table.evolve_layout(sales_history::Layout::TenantMonth).await?;
    /// let march = table.compact().migrate().month(2024, 3).await?;
    /// let rest = table.compact().migrate().await?;
    /// println!("{} + {} files moved", march.files_removed, rest.files_removed);
    /// # Ok(()) }
    /// ```
    pub fn migrate(mut self) -> Self {
        self.migrate = true;
        self
    }

    /// Only the files of `year`-`month` (1–12; another month is [`Error::Config`] when
    /// the run starts).
    pub fn month(mut self, year: i32, month: u32) -> Self {
        self.month_given = Some((year, month));
        self
    }

    /// Target size of the files written (default: the table's
    /// `write.target-file-size-bytes`, else [`DEFAULT_TARGET_FILE_SIZE`]).
    pub fn target_file_size(mut self, bytes: u64) -> Self {
        self.target = Some(bytes);
        self
    }

    /// A month is compacted only when it has at least this many small files (default 2).
    pub fn min_input_files(mut self, files: usize) -> Self {
        self.min_input_files = files.max(2);
        self
    }

    /// Combine small files by size tier (the maintenance task): a file is rewritten only with
    /// files of about its own size (tiers ×4 apart, from 1/256 of the target), so a month
    /// under a streaming writer is not rewritten whole on every run (write amplification
    /// O(log n) instead of O(n), and a run reads a few small files rather than the month).
    pub(crate) fn tiered(mut self, tiered: bool) -> Self {
        self.tiered = tiered;
        self
    }

    /// Rewrite at most this many bins at once (default one per core). Each bin holds its merge
    /// windows and a row group, so this bounds a compaction's memory; the maintenance task
    /// uses 1 and leaves the other cores to the writers.
    pub(crate) fn parallel_bins(mut self, bins: usize) -> Self {
        self.parallel_bins = Some(bins.max(1));
        self
    }

    /// Rows per merge window (tests).
    #[cfg(test)]
    pub(crate) fn window_rows(mut self, rows: u64) -> Self {
        self.window_rows = Some(rows.max(1));
        self
    }

    /// Only `month`'s files.
    pub(crate) fn only_month(mut self, month: Month) -> Self {
        self.month = Some(month);
        self
    }

    /// The months this compaction would rewrite, in the table's current snapshot.
    pub(crate) async fn months(&self) -> Result<Vec<Month>> {
        let table = &self.table;
        table.refresh().await?;
        let base = table.current();
        let target = match self.target {
            Some(t) => t,
            None => target_of(base.metadata())?,
        };
        let live = commit::live(&base).await?;
        let spec_id = base.metadata().default_partition_spec_id();
        let bins = if self.migrate {
            plan_migration(spec_id, live, target)
        } else {
            plan_bins(spec_id, live, target, self.min_input_files, self.tiered)
        };
        let mut months: Vec<Month> = bins.iter().filter_map(|b| month_of(&b.partition)).collect();
        months.sort();
        months.dedup();
        Ok(months)
    }

    /// Plan only: report what would be rewritten, write and commit nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Runs the compaction; a migration of every month runs month by month.
    async fn run(mut self) -> Result<CompactionReport> {
        if let Some((year, month)) = self.month_given.take() {
            let m = Month::from_year_month(year, month).ok_or_else(|| {
                Error::config("month", format!("{year}-{month} is not a calendar month"))
            })?;
            self.month = Some(m);
        }
        if !self.migrate || self.month.is_some() || self.dry_run {
            return self.run_once().await;
        }
        let started = Instant::now();
        let months = self.months().await?;
        let mut total: Option<CompactionReport> = None;
        for month in months {
            let one = self.clone().only_month(month).run_once().await?;
            match &mut total {
                None => total = Some(one),
                Some(t) => {
                    t.snapshot_id = one.snapshot_id.or(t.snapshot_id);
                    t.months += one.months;
                    t.files_removed += one.files_removed;
                    t.files_added += one.files_added;
                    t.bytes_removed += one.bytes_removed;
                    t.bytes_added += one.bytes_added;
                    t.rows_rewritten += one.rows_rewritten;
                    t.attempts += one.attempts;
                }
            }
        }
        let mut report = match total {
            Some(t) => t,
            None => self.run_once().await?,
        };
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// One compaction (or one month's migration): one `replace` snapshot.
    #[tracing::instrument(name = "compact", skip_all, fields(table = %self.table.name(), dry_run = self.dry_run, migrate = self.migrate))]
    async fn run_once(self) -> Result<CompactionReport> {
        let started = Instant::now();
        let table = &self.table;
        if let Some(reason) = table.swap().refuses("replace") {
            return Err(Error::Unsupported {
                operation: "compact".into(),
                reason,
            });
        }
        table.refresh().await?;
        let base = table.current();
        let target = match self.target {
            Some(t) => t,
            None => target_of(base.metadata())?,
        };
        if target == 0 {
            return Err(Error::config("target_file_size", "must be above 0 bytes"));
        }
        commit::refuse_delete_files(&base, "compact").await?;
        let live = commit::live(&base).await?;
        let spec_id = base.metadata().default_partition_spec_id();
        let mut bins = if self.migrate {
            plan_migration(spec_id, live, target)
        } else {
            plan_bins(spec_id, live, target, self.min_input_files, self.tiered)
        };
        if let Some(month) = self.month {
            bins.retain(|b| month_of(&b.partition) == Some(month));
        }
        let mut report = CompactionReport {
            dry_run: self.dry_run,
            snapshot_id: None,
            target_file_size: target,
            months: bins
                .iter()
                .map(|b| b.partition.clone())
                .collect::<HashSet<_>>()
                .len(),
            files_removed: bins.iter().map(|b| b.files.len()).sum(),
            files_added: 0,
            bytes_removed: bins
                .iter()
                .flat_map(|b| &b.files)
                .map(DataFile::file_size_in_bytes)
                .sum(),
            bytes_added: 0,
            rows_rewritten: bins
                .iter()
                .flat_map(|b| &b.files)
                .map(DataFile::record_count)
                .sum(),
            attempts: 0,
            elapsed: Duration::ZERO,
        };
        if self.dry_run || bins.is_empty() {
            report.files_added = if self.dry_run { bins.len() } else { 0 };
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        let commit_id = format!("compact-{}", uuid::Uuid::new_v4().simple());
        let mut change = Change::new(table, ChangeKind::Replace, commit_id.clone());
        change.written_spec_id = Some(base.metadata().default_partition_spec_id());
        let written = rewrite_bins(
            &base,
            &bins,
            (!self.migrate && !whole_bins_asked()).then_some(self.window_rows),
            self.parallel_bins,
            &commit_id,
            self.decoder,
            change.files.paths_mut(),
        )
        .await;
        match written {
            Ok(files) => change.added = files,
            Err(e) => {
                change.files.discard("a bin failed").await;
                return Err(e);
            }
        }
        change.removed = bins
            .iter()
            .flat_map(|b| &b.files)
            .map(|f| f.file_path().to_string())
            .collect();
        let operation = if self.migrate { "migrate" } else { "compact" };
        change.properties =
            HashMap::from([("sales-history.operation".to_string(), operation.to_string())]);
        report.files_added = change.added.len();
        report.bytes_added = change.added.iter().map(DataFile::file_size_in_bytes).sum();
        let landed = commit::commit(table, change).await?;
        report.snapshot_id = Some(landed.snapshot_id);
        report.attempts = landed.attempts;
        report.elapsed = started.elapsed();
        tracing::info!(?report, "compacted");
        Ok(report)
    }
}

impl std::future::IntoFuture for Compact {
    type Output = Result<CompactionReport>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Environment variable choosing how compaction reads a bin: `stream` (the default: windows
/// merged within a fixed budget) or `whole` (every file of the bin read at once, then sorted:
/// the earlier way, kept as the baseline `bench_compact` measures the stream against).
pub const COMPACT_READ_ENV: &str = "SALES_HISTORY_COMPACT_READ";

fn whole_bins_asked() -> bool {
    std::env::var(COMPACT_READ_ENV).is_ok_and(|v| v.trim().eq_ignore_ascii_case("whole"))
}

/// The target file size a table asks for.
pub(crate) fn target_of(metadata: &TableMetadata) -> Result<u64> {
    match metadata.properties().get(TARGET_FILE_SIZE_PROPERTY) {
        None => Ok(DEFAULT_TARGET_FILE_SIZE),
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            Error::config(
                TARGET_FILE_SIZE_PROPERTY,
                format!("`{v}` is not a number of bytes"),
            )
        }),
    }
}

/// Small files of one partition to write as one file.
#[derive(Debug, Clone)]
struct Bin {
    partition: Struct,
    files: Vec<DataFile>,
}

/// Bins of small files: per partition (of the current spec) with at least `min_files` small
/// files, first-fit-decreasing into bins of at most `target` bytes; a bin of one file is
/// dropped (rewriting it alone gains nothing).
fn plan_bins(
    spec_id: i32,
    live: Vec<commit::Live>,
    target: u64,
    min_files: usize,
    tiered: bool,
) -> Vec<Bin> {
    let small = target / 4 * 3;
    let mut by_partition: BTreeMap<(String, u32), (Struct, Vec<DataFile>)> = BTreeMap::new();
    for commit::Live {
        spec_id: file_spec,
        file: f,
    } in live
    {
        if file_spec != spec_id || f.file_size_in_bytes() >= small {
            continue;
        }
        let tier = if tiered {
            size_tier(f.file_size_in_bytes(), target)
        } else {
            0
        };
        let key = (partition_key(f.partition()), tier);
        by_partition
            .entry(key)
            .or_insert_with(|| (f.partition().clone(), Vec::new()))
            .1
            .push(f);
    }
    let mut bins = Vec::new();
    for (_, (partition, files)) in by_partition {
        if files.len() < min_files {
            continue;
        }
        let month_bins = first_fit_decreasing(files, target);
        bins.extend(
            month_bins
                .into_iter()
                .filter(|members| members.len() >= 2)
                .map(|files| Bin {
                    partition: partition.clone(),
                    files,
                }),
        );
    }
    bins
}

/// `files` packed first-fit-decreasing (largest first, ties by path) into bins of at most
/// `target` bytes (a file larger than the target gets a bin of its own).
fn first_fit_decreasing(mut files: Vec<DataFile>, target: u64) -> Vec<Vec<DataFile>> {
    files.sort_by(|a, b| {
        b.file_size_in_bytes()
            .cmp(&a.file_size_in_bytes())
            .then_with(|| a.file_path().cmp(b.file_path()))
    });
    let mut bins: Vec<(u64, Vec<DataFile>)> = Vec::new();
    for f in files {
        let size = f.file_size_in_bytes();
        match bins.iter_mut().find(|(used, _)| used + size <= target) {
            Some((used, members)) => {
                *used += size;
                members.push(f);
            }
            None => bins.push((size, vec![f])),
        }
    }
    bins.into_iter().map(|(_, members)| members).collect()
}

/// The size tier of a file of `size` bytes: 0 below 1/256 of `target`, then one tier per
/// factor of 4 (for 128 MiB: < 512 KiB, < 2 MiB, < 8 MiB, < 32 MiB, < 128 MiB).
fn size_tier(size: u64, target: u64) -> u32 {
    let base = (target / 256).max(1);
    let mut tier = 0;
    let mut bound = base;
    while size >= bound && tier < 16 {
        tier += 1;
        bound = bound.saturating_mul(4);
    }
    tier
}

use crate::layout::month_of;

/// A readable key of a partition value (`2024-03` for our month partition).
fn partition_key(partition: &Struct) -> String {
    match partition.fields() {
        [Some(iceberg::spec::Literal::Primitive(iceberg::spec::PrimitiveLiteral::Int(m)))] => {
            Month::from_ordinal(*m).to_string()
        }
        other => format!("{other:?}"),
    }
}

/// Bins of a layout migration: every live file of a spec other than `spec_id`, per month,
/// first-fit-decreasing into bins of at most `target` bytes (a bin of one file is kept: the
/// file must move). A bin's partition is the month alone (`[month]`): the writer regroups
/// its rows by the default spec.
fn plan_migration(spec_id: i32, live: Vec<commit::Live>, target: u64) -> Vec<Bin> {
    let mut by_month: BTreeMap<Month, Vec<DataFile>> = BTreeMap::new();
    for commit::Live {
        spec_id: file_spec,
        file,
    } in live
    {
        if file_spec == spec_id {
            continue;
        }
        if let Some(m) = month_of(file.partition()) {
            by_month.entry(m).or_default().push(file);
        }
    }
    let mut bins = Vec::new();
    for (month, files) in by_month {
        let month_bins = first_fit_decreasing(files, target);
        let partition = Struct::from_iter([Some(iceberg::spec::Literal::int(month.ordinal()))]);
        bins.extend(month_bins.into_iter().map(|files| Bin {
            partition: partition.clone(),
            files,
        }));
    }
    bins
}

/// Rewrites the bins, in parallel (one per core, each its own task; inside, the decode runs
/// on the blocking pool and the encode in the writer's own task). `merge` (with an optional window size): the bins are compaction bins (one
/// partition of the default spec each), merged as a stream within a fixed memory budget
/// ([`super::merge_bin`]); `None`: a
/// migration's bins, read whole and regrouped by the default spec (memory: the bin).
/// Every path created goes to `created`, also for bins that finished after another failed.
async fn rewrite_bins(
    base: &iceberg::table::Table,
    bins: &[Bin],
    merge: Option<Option<u64>>,
    parallel: Option<usize>,
    commit_id: &str,
    decoder: EmbeddingDecoder,
    created: &mut Vec<String>,
) -> Result<Vec<DataFile>> {
    let parallel = parallel
        .unwrap_or_else(crate::cores)
        .clamp(1, bins.len().max(1));
    // Each bin is its own task: the writer encodes inside its `write` calls, so bins polled
    // together in this task took turns on one thread (a compaction used about one core).
    // Dropping the compaction aborts them.
    let work: Vec<_> = bins
        .iter()
        .map(|bin| {
            let (base, bin, commit_id) = (base.clone(), bin.clone(), commit_id.to_string());
            let task = AbortOnDrop(tokio::spawn(async move {
                match merge {
                    Some(window) => {
                        super::merge_bin::merge_bin(
                            &base,
                            &bin.partition,
                            &bin.files,
                            window,
                            &commit_id,
                            decoder,
                        )
                        .await
                    }
                    None => rewrite_bin(&base, &bin, &commit_id, decoder).await,
                }
            }));
            async move {
                match task.await {
                    Ok(done) => done,
                    Err(e) => (
                        Vec::new(),
                        Err(Error::internal(format!(
                            "a compaction bin's task failed: {e}"
                        ))),
                    ),
                }
            }
        })
        .collect();
    let mut rewrites = futures::stream::iter(work).buffer_unordered(parallel);
    let mut added = Vec::new();
    let mut first_error = None;
    while let Some((paths, result)) = rewrites.next().await {
        created.extend(paths);
        match result {
            Ok(files) => added.extend(files),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(added),
    }
}

/// Reads one migration bin's files whole and writes their rows regrouped by the default spec;
/// the paths created go with the result (also on failure).
async fn rewrite_bin(
    base: &iceberg::table::Table,
    bin: &Bin,
    commit_id: &str,
    decoder: EmbeddingDecoder,
) -> (Vec<String>, Result<Vec<DataFile>>) {
    let mut created = Vec::new();
    // The writer puts the rows in the table's sort order.
    let result = match read_bin(base, &bin.files, decoder).await {
        Ok(batches) => crate::write::write_months(base, &batches, 1, commit_id, &mut created).await,
        Err(e) => Err(e),
    };
    (created, result)
}

/// Files of a bin read at once.
const READ_CONCURRENCY: usize = 8;

/// Every row of `files`, in our layout.
async fn read_bin(
    base: &iceberg::table::Table,
    files: &[DataFile],
    decoder: EmbeddingDecoder,
) -> Result<Vec<RecordBatch>> {
    let reads: Vec<futures::future::BoxFuture<'_, Result<Vec<RecordBatch>>>> = files
        .iter()
        .map(|f| {
            crate::scan::read_file_rows(
                base.file_io(),
                f.file_path(),
                f.file_size_in_bytes(),
                None,
                decoder,
            )
            .boxed()
        })
        .collect();
    let per_file: Vec<Vec<RecordBatch>> = futures::stream::iter(reads)
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(per_file.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{DataContentType, DataFileBuilder, DataFileFormat, Literal, Struct};

    use super::{plan_bins, size_tier};
    use crate::commit::Live;

    fn file(name: &str, month: i32, size: u64) -> Live {
        Live {
            spec_id: 0,
            file: DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(format!("/t/data/{name}.parquet"))
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::from_iter([Some(Literal::int(month))]))
                .record_count(10)
                .file_size_in_bytes(size)
                .build()
                .expect("data file"),
        }
    }

    /// A month under a streaming writer: one file compacted earlier (50 MiB) and eight new
    /// small ones. Untiered, the big file is rewritten with them; tiered, only the small ones
    /// are combined. Files of another spec are never planned.
    #[test]
    fn tiered_planning_leaves_a_compacted_file_alone() {
        let target = 128 << 20;
        let mut live: Vec<Live> = (0..8)
            .map(|i| file(&format!("small-{i}"), 600, 150 << 10))
            .collect();
        live.push(file("big", 600, 50 << 20));
        let mut other_spec = file("old-spec", 600, 150 << 10);
        other_spec.spec_id = 1;
        live.push(other_spec);

        let untiered = plan_bins(0, live.clone(), target, 4, false);
        assert_eq!(untiered.len(), 1);
        assert_eq!(untiered[0].files.len(), 9);
        assert!(
            untiered[0]
                .files
                .iter()
                .any(|f| f.file_path().contains("big"))
        );

        let tiered = plan_bins(0, live.clone(), target, 4, true);
        assert_eq!(tiered.len(), 1);
        assert_eq!(tiered[0].files.len(), 8);
        assert!(
            tiered[0]
                .files
                .iter()
                .all(|f| f.file_path().contains("small"))
        );

        // Below the minimum count in its tier, nothing is planned.
        let few: Vec<Live> = live.into_iter().skip(5).collect();
        assert!(plan_bins(0, few, target, 4, true).is_empty());
    }

    #[test]
    fn size_tiers_are_four_times_apart_from_a_256th_of_the_target() {
        let target = 128 << 20;
        assert_eq!(size_tier(0, target), 0);
        assert_eq!(size_tier((512 << 10) - 1, target), 0);
        assert_eq!(size_tier(512 << 10, target), 1);
        assert_eq!(size_tier((2 << 20) - 1, target), 1);
        assert_eq!(size_tier(2 << 20, target), 2);
        assert_eq!(size_tier(100 << 20, target), 4);
        // A zero target does not loop or divide by zero.
        assert_eq!(size_tier(10, 0), 2);
    }
}
