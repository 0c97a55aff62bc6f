//! [`ScanMetrics`]: what a scan planned and read, for a caller to log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one scan: pruning (files, row groups), I/O and output.
///
/// Planning figures are final as soon as the scan starts; the reading figures grow while the
/// stream is consumed and are final once it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanMetrics {
    /// The snapshot read (`None`: the table has no data yet).
    pub snapshot_id: Option<i64>,
    /// Data files in that snapshot (before any pruning).
    pub data_files_in_snapshot: u64,
    /// Data files left after partition and column-statistics pruning.
    pub files_planned: u64,
    /// Data files opened so far (fewer than planned when a row limit stopped the scan early).
    pub files_read: u64,
    /// Row groups in the files opened.
    pub row_groups_total: u64,
    /// Row groups read (after statistics pruning, and page-index pruning where a filter uses
    /// it; fewer when a row limit stopped the file early).
    pub row_groups_read: u64,
    /// Bytes fetched from storage (footers, page indexes, column chunks).
    pub bytes_read: u64,
    /// Reads of data files issued to storage: footers, page indexes, (coalesced) byte ranges
    /// and whole files — on S3, the data-file GET requests (planning's manifest reads and
    /// tables with row-level deletes, read by iceberg's reader, are not counted).
    pub requests: u64,
    /// Rows delivered to the caller.
    pub rows_returned: u64,
    /// Pages of the read row groups not fetched: their column-index statistics (of the
    /// filter's tenant, string or time columns) ruled them out.
    pub pages_skipped: u64,
    /// Turns (up to [`Scan::read_buffer_bytes`](super::Scan::read_buffer_bytes) of row
    /// groups) whose `embedding` column this crate's decoder read.
    pub embedding_fast_reads: u64,
    /// Turns whose `embedding` column parquet-rs's Arrow reader read instead: a row filter
    /// or page selection in the turn, a row limit, or a column chunk this crate's decoder
    /// does not handle (dictionary pages, null elements, another shape). Zero with
    /// [`EmbeddingDecoder::Parquet`](super::EmbeddingDecoder::Parquet), which is not a fallback.
    pub embedding_fallbacks: u64,
    /// Turns whose columns other than `embedding` (unfiltered, whole row groups) this
    /// crate's small-file decoder read: files written without dictionaries, as a tenant
    /// layout's small files are. Other turns are read by parquet-rs's Arrow reader (the
    /// `embedding` column has its own decoder: [`embedding_fast_reads`](Self::embedding_fast_reads)).
    pub small_file_fast_reads: u64,
    /// Of those, turns whose `tenant_id` column was filled from the file's
    /// `identity(tenant_id)` partition value (every row of such a file holds it) instead of
    /// decoded from its pages, as Iceberg readers treat identity partition fields.
    pub tenant_from_partition: u64,
    /// Turns read lazily: a row group larger than the read budget in a file without an
    /// offset index (what pyarrow and pyiceberg write by default), whose pages are fetched as
    /// the decoder asks for them, in windows, instead of the whole group at once.
    pub lazy_reads: u64,
    /// Rows of the selected pages that a row filter ruled out on its own columns (decoded
    /// first) before this crate's decoder read the `embedding` column: embedding pages
    /// holding only such rows are neither decompressed nor decoded. The page index selects whole pages of the
    /// filter's columns (64 rows by default); a tenant's rows in a sorted month start and end
    /// inside them.
    pub rows_filtered_early: u64,
    /// Time spent resolving the snapshot and planning files.
    pub planning: Duration,
}

/// The live counters behind a running scan (shared with the file readers).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) files_read: AtomicU64,
    pub(crate) row_groups_total: AtomicU64,
    pub(crate) row_groups_read: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) rows_returned: AtomicU64,
    pub(crate) pages_skipped: AtomicU64,
    pub(crate) embedding_fast_reads: AtomicU64,
    pub(crate) embedding_fallbacks: AtomicU64,
    pub(crate) small_file_fast_reads: AtomicU64,
    pub(crate) tenant_from_partition: AtomicU64,
    pub(crate) lazy_reads: AtomicU64,
    pub(crate) rows_filtered_early: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The planning figures in `plan` completed with the current reading figures.
    pub(crate) fn snapshot(self: &Arc<Self>, plan: &ScanMetrics) -> ScanMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ScanMetrics {
            files_read: get(&self.files_read),
            row_groups_total: get(&self.row_groups_total),
            row_groups_read: get(&self.row_groups_read),
            bytes_read: get(&self.bytes_read),
            requests: get(&self.requests),
            rows_returned: get(&self.rows_returned),
            pages_skipped: get(&self.pages_skipped),
            embedding_fast_reads: get(&self.embedding_fast_reads),
            embedding_fallbacks: get(&self.embedding_fallbacks),
            small_file_fast_reads: get(&self.small_file_fast_reads),
            tenant_from_partition: get(&self.tenant_from_partition),
            lazy_reads: get(&self.lazy_reads),
            rows_filtered_early: get(&self.rows_filtered_early),
            ..plan.clone()
        }
    }
}
