//! A compaction bin rewritten as a stream: its files are read in windows of rows and merged
//! in the table's sort order (every file this crate writes is sorted in it), and the merged
//! rows go to the writer as they come. What is resident is a window or two per file and the
//! writer's current row group — bounded by [`READ_BUDGET_BYTES`], not by the bin's bytes, so a
//! maintenance task compacting 128 MiB bins for months holds no more than one compacting
//! 1 MiB bins.
//!
//! A file that is not in the table's sort order (another engine's, or written before the
//! table had one) is read whole and sorted alone before it joins the merge; a table without a
//! sort order gets its files' rows one file after another.

use std::sync::Arc;

use arrow_array::RecordBatch;
use iceberg::io::FileIO;
use iceberg::spec::{DataFile, Struct};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::scan::{EmbeddingDecoder, FooterCache};
use crate::sort::SortKey;
use crate::write::PartitionStream;

/// Decoded bytes the windows of one bin may hold at once (current + prefetched window of
/// every file): the read side's bound.
pub(crate) const READ_BUDGET_BYTES: u64 = 64 << 20;
/// Rows handed to the writer at a time.
const CHUNK_ROWS: usize = 1024;
/// Windows are whole multiples of this many rows (the page row limit of the files we write),
/// so a page is rarely decoded for two windows.
const WINDOW_ALIGN: u64 = 64;
/// Largest window, in rows (small files are read whole).
const MAX_WINDOW_ROWS: u64 = 8192;
/// Windows read at once across the bin's files.
const READ_CONCURRENCY: usize = 8;
/// Bytes of parsed footers (with their page indexes) a bin's merge keeps, so that a file read
/// in many windows has its footer read and parsed once, not once per window. The bin's own
/// cache: its files are replaced by the compaction, so the handle's cache is not filled with
/// them. At ~10–30 KB a footer, a few hundred files' worth.
const FOOTER_CACHE_BYTES: u64 = 8 << 20;
/// Decoded bytes per stored byte assumed for a window's estimate (the embedding column's
/// BYTE_STREAM_SPLIT + Snappy stores f32-rounded doubles at about half their size).
const DECODED_PER_STORED: u64 = 3;

/// Rewrites `files` (live data files of one partition of the default spec) as the
/// partition's new file(s), reading `window` rows of a file at a time (default: what
/// [`READ_BUDGET_BYTES`] allows); the paths created go with the result, also on failure.
pub(crate) async fn merge_bin(
    table: &iceberg::table::Table,
    partition: &Struct,
    files: &[DataFile],
    window: Option<u64>,
    prefix: &str,
    decoder: EmbeddingDecoder,
) -> (Vec<String>, Result<Vec<DataFile>>) {
    let rows = files.iter().map(|f| f.record_count()).sum::<u64>();
    let rows = usize::try_from(rows).unwrap_or(usize::MAX);
    let mut out = match PartitionStream::open(table, partition, prefix, rows).await {
        Ok(w) => w,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let window = window.unwrap_or_else(|| window_rows(files));
    match feed(table.file_io(), files, window, decoder, &mut out).await {
        Ok(()) => out.close().await,
        Err(e) => (out.abandon().await, Err(e)),
    }
}

/// Rows per window for `files` read together within [`READ_BUDGET_BYTES`].
fn window_rows(files: &[DataFile]) -> u64 {
    let per_row = files
        .iter()
        .map(|f| f.file_size_in_bytes() / f.record_count().max(1))
        .max()
        .unwrap_or(1)
        .max(1)
        * DECODED_PER_STORED;
    let readers = 2 * files.len().max(1) as u64;
    let rows = READ_BUDGET_BYTES / readers / per_row;
    (rows / WINDOW_ALIGN * WINDOW_ALIGN).clamp(WINDOW_ALIGN, MAX_WINDOW_ROWS)
}

async fn feed(
    io: &FileIO,
    files: &[DataFile],
    window: u64,
    decoder: EmbeddingDecoder,
    out: &mut PartitionStream,
) -> Result<()> {
    let order = out.sort_keys();
    let permits = Arc::new(Semaphore::new(READ_CONCURRENCY));
    let footers = Arc::new(FooterCache::new(FOOTER_CACHE_BYTES));
    let mut cursors = Vec::with_capacity(files.len());
    for f in files {
        let sorted = match &order {
            None => true,
            Some((id, _)) => f.sort_order_id().map(i64::from) == Some(*id),
        };
        let mut c = Cursor::new(io, f, window, (permits.clone(), footers.clone()), decoder);
        if !sorted && let Some((_, keys)) = &order {
            c.load_sorted(keys).await?;
        }
        cursors.push(c);
    }
    // Every file's first window on its way.
    for c in &mut cursors {
        c.prefetch();
    }
    match order {
        None => {
            // No order to keep: each file's rows as they are, file after file.
            for c in &mut cursors {
                while let Some(batch) = c.next_batch().await? {
                    out.write(batch).await?;
                }
            }
            Ok(())
        }
        Some((_, keys)) => merge(&keys, &mut cursors, out).await,
    }
}

/// The k-way merge: a binary heap of the cursors by their current row; merged rows gathered
/// as `(batch, row)` pairs over an arena of the batches they point into, written every
/// [`CHUNK_ROWS`] rows with one `interleave_rows`.
async fn merge(keys: &[SortKey], cursors: &mut [Cursor], out: &mut PartitionStream) -> Result<()> {
    // Cursor i's current batch is arena[slot[i]].
    let mut arena: Vec<RecordBatch> = Vec::new();
    let mut slot = vec![usize::MAX; cursors.len()];
    let mut row = vec![0usize; cursors.len()];
    let mut heap: Vec<usize> = Vec::with_capacity(cursors.len());
    for (i, c) in cursors.iter_mut().enumerate() {
        if let Some(batch) = c.next_batch().await? {
            slot[i] = arena.len();
            arena.push(batch);
            heap.push(i);
        }
    }
    let less = |arena: &[RecordBatch], slot: &[usize], row: &[usize], a: usize, b: usize| {
        crate::sort::compare_rows(keys, &arena[slot[a]], row[a], &arena[slot[b]], row[b])
            .then(a.cmp(&b))
            .is_lt()
    };
    for start in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, start, |a, b| less(&arena, &slot, &row, a, b));
    }
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(CHUNK_ROWS);
    while let Some(&top) = heap.first() {
        pairs.push((slot[top], row[top]));
        row[top] += 1;
        if row[top] == arena[slot[top]].num_rows() {
            match cursors[top].next_batch().await? {
                Some(batch) => {
                    slot[top] = arena.len();
                    row[top] = 0;
                    arena.push(batch);
                }
                None => {
                    // The cursor is done: the last heap entry takes its place.
                    let last = heap.len() - 1;
                    heap.swap(0, last);
                    heap.pop();
                }
            }
        }
        if !heap.is_empty() {
            sift_down(&mut heap, 0, |a, b| less(&arena, &slot, &row, a, b));
        }
        if pairs.len() == CHUNK_ROWS || heap.is_empty() {
            if !pairs.is_empty() {
                let refs: Vec<&RecordBatch> = arena.iter().collect();
                let part = crate::sort::interleave_rows(&refs, &pairs)?;
                out.write(part).await?;
                pairs.clear();
            }
            // Keep only the batches a cursor still reads from.
            let mut kept = Vec::with_capacity(heap.len());
            for &i in &heap {
                kept.push(arena[slot[i]].clone());
                slot[i] = kept.len() - 1;
            }
            arena = kept;
        }
    }
    Ok(())
}

/// Restores the heap property below `at` (`less` orders the minimum first).
fn sift_down(heap: &mut [usize], mut at: usize, less: impl Fn(usize, usize) -> bool) {
    loop {
        let (l, r) = (2 * at + 1, 2 * at + 2);
        let mut min = at;
        if l < heap.len() && less(heap[l], heap[min]) {
            min = l;
        }
        if r < heap.len() && less(heap[r], heap[min]) {
            min = r;
        }
        if min == at {
            return;
        }
        heap.swap(at, min);
        at = min;
    }
}

/// One input file, read window by window (the next window in flight while the current one
/// is merged).
struct Cursor {
    io: FileIO,
    path: String,
    size: u64,
    rows: u64,
    window: u64,
    /// Next position to read.
    next: u64,
    /// Rows delivered so far (checked against the file's record count at its end).
    delivered: u64,
    ready: std::collections::VecDeque<RecordBatch>,
    pending: Option<JoinHandle<Result<Vec<RecordBatch>>>>,
    permits: Arc<Semaphore>,
    /// The bin's parsed footers.
    footers: Arc<FooterCache>,
    decoder: EmbeddingDecoder,
}

impl Cursor {
    fn new(
        io: &FileIO,
        file: &DataFile,
        window: u64,
        (permits, footers): (Arc<Semaphore>, Arc<FooterCache>),
        decoder: EmbeddingDecoder,
    ) -> Self {
        Cursor {
            io: io.clone(),
            path: file.file_path().to_string(),
            size: file.file_size_in_bytes(),
            rows: file.record_count(),
            window,
            next: 0,
            delivered: 0,
            ready: Default::default(),
            pending: None,
            permits,
            footers,
            decoder,
        }
    }

    /// A file not in the sort order: read whole now and sorted alone.
    async fn load_sorted(&mut self, keys: &[SortKey]) -> Result<()> {
        let batches =
            crate::scan::read_file_rows(&self.io, &self.path, self.size, None, self.decoder)
                .await?;
        let parts: Vec<(usize, Vec<u32>)> = batches
            .iter()
            .enumerate()
            .map(|(i, b)| (i, (0..b.num_rows() as u32).collect()))
            .collect();
        let pairs = crate::sort::sorted_pairs(&batches, &parts, keys);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        for chunk in pairs.chunks(CHUNK_ROWS) {
            let sorted = crate::sort::interleave_rows(&refs, chunk)?;
            self.ready.push_back(sorted);
        }
        self.next = self.rows;
        self.delivered = batches.iter().map(|b| b.num_rows() as u64).sum();
        Ok(())
    }

    /// Starts reading the next window, unless one is in flight or the file is done.
    fn prefetch(&mut self) {
        if self.pending.is_some() || self.next >= self.rows {
            return;
        }
        let range = self.next..(self.next + self.window).min(self.rows);
        self.next = range.end;
        let (io, path, size, permits, footers, decoder) = (
            self.io.clone(),
            self.path.clone(),
            self.size,
            self.permits.clone(),
            self.footers.clone(),
            self.decoder,
        );
        self.pending = Some(tokio::spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| Error::internal("the compaction's read permits were closed"))?;
            crate::scan::read_row_range(&io, &path, size, range, decoder, &footers).await
        }));
    }

    /// The next non-empty batch of the file in order; `None` at its end.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                if b.num_rows() > 0 {
                    return Ok(Some(b));
                }
                continue;
            }
            let Some(pending) = self.pending.take() else {
                if self.delivered != self.rows {
                    return Err(Error::internal(format!(
                        "{}: read {} rows of the {} its manifest entry records",
                        self.path, self.delivered, self.rows
                    )));
                }
                return Ok(None);
            };
            let batches = pending
                .await
                .map_err(|e| Error::internal(format!("a compaction read task failed: {e}")))??;
            self.delivered += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            self.ready.extend(batches);
            self.prefetch();
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local table `stage` of 8-dim embeddings in `dir`, and a generator of one month's rows.
    #[cfg(feature = "sample-data")]
    async fn small_table(
        dir: &std::path::Path,
        stage: &str,
        seed: u64,
    ) -> (crate::SalesHistory, crate::sample::SampleGenerator) {
        use crate::sample::{SampleConfig, SampleGenerator};
        use crate::{CatalogConfig, SalesHistory, TableOptions};

        let table = SalesHistory::ensure_with(
            &CatalogConfig::local(dir),
            stage,
            TableOptions::default().embedding_dimension(8),
        )
        .await
        .expect("table");
        let generator = SampleGenerator::new(
            SampleConfig::default()
                .seed(seed)
                .months(1)
                .embedding_dimension(8),
        );
        (table, generator)
    }

    /// Small files merged through windows of 64 rows (several per file): the output file is in
    /// the sort order, holds every row once, and carries the order id.
    #[cfg(feature = "sample-data")]
    #[tokio::test]
    async fn windows_merge_files_in_the_sort_order_and_keep_every_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (table, mut generator) = small_table(dir.path(), "merge", 11).await;
        let mut expected = Vec::new();
        for n in [300, 5, 170, 64, 129] {
            let rows = generator.take_records(n);
            expected.extend(
                rows.iter()
                    .map(|r| (r.tenant_id.clone(), r.product_id.clone())),
            );
            table.append(rows).await.expect("append");
        }
        let before = table.scan().plan().await.expect("plan").files.len();
        assert_eq!(before, 5, "one file per append");

        let report = table.compact().window_rows(64).await.expect("compact");
        assert_eq!((report.files_removed, report.files_added), (5, 1));

        let base = table.current();
        let live = crate::commit::live(&base).await.expect("live");
        let [file] = live.as_slice() else {
            panic!("one file after the compaction: {}", live.len());
        };
        let (order_id, keys) = crate::sort::keys(base.metadata()).expect("a sort order");
        assert_eq!(file.file.sort_order_id().map(i64::from), Some(order_id));
        let batches = crate::scan::read_file_rows(
            base.file_io(),
            file.file.file_path(),
            file.file.file_size_in_bytes(),
            None,
            EmbeddingDecoder::Auto,
        )
        .await
        .expect("read");
        let rows: Vec<(&RecordBatch, usize)> = batches
            .iter()
            .flat_map(|b| (0..b.num_rows()).map(move |r| (b, r)))
            .collect();
        assert_eq!(rows.len(), expected.len());
        for pair in rows.windows(2) {
            let ((x, a), (y, b)) = (pair[0], pair[1]);
            assert!(
                crate::sort::compare_rows(&keys, x, a, y, b).is_le(),
                "rows out of the sort order"
            );
        }
        let mut got: Vec<(String, String)> = table
            .scan()
            .to_records()
            .await
            .expect("scan")
            .into_iter()
            .map(|r| (r.tenant_id, r.product_id))
            .collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "every row once");
    }

    /// A file read in windows has its footer (and page index) parsed once: the bin's cache
    /// holds it after the first window, and a window read through it gives the rows a fresh
    /// read gives.
    #[cfg(feature = "sample-data")]
    #[tokio::test]
    async fn windows_of_a_file_share_its_parsed_footer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (table, mut generator) = small_table(dir.path(), "footers", 5).await;
        table
            .append(generator.take_records(300))
            .await
            .expect("append");
        let base = table.current();
        let live = crate::commit::live(&base).await.expect("live");
        let [file] = live.as_slice() else {
            panic!("one file: {}", live.len());
        };
        let (io, path, size) = (
            base.file_io(),
            file.file.file_path(),
            file.file.file_size_in_bytes(),
        );
        let read = |rows: std::ops::Range<u64>, cache: Arc<FooterCache>| async move {
            crate::scan::read_row_range(io, path, size, rows, EmbeddingDecoder::Auto, &cache)
                .await
                .expect("window")
        };
        let shared = Arc::new(FooterCache::new(FOOTER_CACHE_BYTES));
        let first = read(0..64, shared.clone()).await;
        assert_eq!(first.iter().map(|b| b.num_rows()).sum::<usize>(), 64);
        assert_eq!(shared.len(), 1, "the footer is kept after the first window");
        assert!(shared.get(path).is_some());
        let kept = shared.bytes();
        let second = read(64..200, shared.clone()).await;
        let fresh = read(64..200, Arc::new(FooterCache::new(FOOTER_CACHE_BYTES))).await;
        assert_eq!(second, fresh);
        assert_eq!(second.iter().map(|b| b.num_rows()).sum::<usize>(), 136);
        assert_eq!(
            (shared.len(), shared.bytes()),
            (1, kept),
            "nothing parsed again"
        );
    }

    #[test]
    fn sift_down_keeps_the_minimum_on_top() {
        let values = [5, 3, 9, 1, 7, 1, 4];
        let mut heap: Vec<usize> = (0..values.len()).collect();
        let less = |a: usize, b: usize| (values[a], a) < (values[b], b);
        for start in (0..heap.len() / 2).rev() {
            sift_down(&mut heap, start, less);
        }
        let mut out = Vec::new();
        while !heap.is_empty() {
            out.push(heap[0]);
            let last = heap.len() - 1;
            heap.swap(0, last);
            heap.pop();
            sift_down(&mut heap, 0, less);
        }
        // Ties in index order: the merge is stable across files.
        assert_eq!(out, vec![3, 5, 1, 6, 0, 4, 2]);
    }
}
