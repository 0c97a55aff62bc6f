//! Reading one planned data file with parquet-rs: projection by field id, row-group pruning
//! from statistics, exact row filtering (late materialisation), byte counting.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow_schema::SchemaRef as ArrowSchemaRef;
use futures::future::try_join_all;
use iceberg::io::{FileIO, FileRead};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    RowFilter, RowSelection, RowSelectionPolicy,
};
use parquet::file::metadata::{
    FooterTail, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader,
};
use parquet::schema::types::SchemaDescriptor;
use tokio::sync::mpsc::Sender;

use super::embedding::{self, Mode};
use super::filter::Resolved;
use super::metrics::Counters;
use super::narrow;
use crate::error::{Error, IcebergResultExt, Result};
use crate::schema::Column;

/// Gaps up to this size between wanted byte ranges are read rather than skipped (object
/// stores: a request costs more than a megabyte of transfer).
const COALESCE_BYTES: u64 = 1 << 20;
/// The same for local files, where a positioned read costs little.
const COALESCE_LOCAL_BYTES: u64 = 16 << 10;
/// A turn of a reader on the blocking pool fetching at most this many bytes is decoded in
/// that reader (see [`read_file`]): a small file's turn, whose decoded batches are small too.
pub(super) const INLINE_TURN_BYTES: u64 = 4 << 20;
/// First read of a file: enough for the footer of our files in one request.
const FOOTER_PREFETCH: u64 = 16 * 1024;
/// Length of the Parquet footer tail (metadata length + magic).
const FOOTER_TAIL: usize = 8;

/// Everything the file readers of one scan share.
pub(crate) struct ReadPlan {
    pub(crate) file_io: FileIO,
    /// Output columns, table order.
    pub(crate) output: Vec<Column>,
    /// Output schema (the table's Arrow fields for `output`).
    pub(crate) schema: ArrowSchemaRef,
    pub(crate) filter: Option<Resolved>,
    pub(crate) batch_size: usize,
    pub(crate) limit: Option<usize>,
    /// Column-chunk bytes a file reader fetches and decodes at a time (whole row groups; at
    /// least one).
    pub(crate) read_buffer: u64,
    /// Which decoder reads the `embedding` column.
    pub(crate) decode: Mode,
    pub(crate) counters: Arc<Counters>,
    /// Where reads keep the footers they parse (with the page index once read): a handle's.
    pub(crate) footers: Option<Arc<FooterCache>>,
    /// Turns decoded at once across the scan's readers, when a file's turns may be decoded
    /// side by side (its batches then arrive in no fixed order): a scan of fewer files than
    /// readers (three compacted files) keeps every reader's share of the cores busy. `None`:
    /// one turn at a time, batches in file order (a rewrite's input, rows by position).
    pub(crate) turn_permits: Option<Arc<tokio::sync::Semaphore>>,
}

/// A data file's parsed footer, with its page index once a read needed it.
#[derive(Clone)]
pub(crate) struct Footer {
    pub(super) metadata: Arc<ParquetMetaData>,
    /// Bytes of the footer (metadata + length + magic).
    len: usize,
    /// The file's size (a kept footer serves only the file it was read from).
    size: u64,
    /// The reader metadata over `metadata` (its Arrow schema and field levels), made by the
    /// first read that needs it: converting the schema cost a small file's read ~4%.
    reader: Arc<std::sync::OnceLock<ArrowReaderMetadata>>,
    /// Where each column is in the file, made by the first read.
    columns: Arc<std::sync::OnceLock<FileColumns>>,
}

/// Bytes counted for a kept footer's reader metadata (its Arrow schema and field levels)
/// per column of the file.
const READER_METADATA_BYTES_PER_COLUMN: usize = 256;

/// Parsed footers of the data files a handle read (with the page index once a tenant or time
/// filter or a read of rows by position needed it), by path, least recently used evicted
/// beyond a byte cap.
///
/// A similarity search reads its `k × refine` candidates back from their data files, one or
/// two rows a file; a tenant's question reads a few pages of each of its files: without this,
/// each file cost its footer and page index, two reads (two round trips on S3) and their
/// parsing, before its pages. Data files never change (a new file gets a new name).
pub(crate) type FooterCache = crate::lru::ByteLru<String, Footer>;

/// Default byte cap of a handle's [`FooterCache`]: 96 MiB, about 4,000 footers of the
/// crate's month files (their page index and reader metadata included), or the 4,800 small
/// files of two years of 200 tenants under a tenant layout (at 64 MiB, once each footer also
/// kept its reader metadata, a full scan of those evicted every footer before its next use).
pub(crate) const DEFAULT_FOOTER_CACHE_BYTES: u64 = 96 << 20;

/// A data file to read.
#[derive(Debug, Clone)]
pub(crate) struct PlannedFile {
    pub(crate) path: String,
    pub(crate) size: u64,
    /// Only these rows (file positions, sorted, disjoint): the vector index's candidates.
    /// Used without a filter.
    pub(crate) rows: Option<Arc<Vec<Range<u64>>>>,
    /// Its `identity(tenant_id)` partition value (a tenant layout's file): every row's
    /// `tenant_id`, so the small-file decoder fills the column with it instead of reading it
    /// (as Iceberg's Java readers do for identity partition columns).
    pub(crate) tenant: Option<Arc<str>>,
}

/// Which root field of the file holds each column (by field id; by name when the file has
/// no field ids), and the first leaf of each root.
#[derive(Clone)]
struct FileColumns {
    root: Vec<Option<usize>>,
    leaf: Vec<Option<usize>>,
}

impl FileColumns {
    fn of(descr: &SchemaDescriptor) -> Self {
        let fields = descr.root_schema().get_fields();
        let with_ids = fields.iter().any(|f| f.get_basic_info().has_id());
        let mut root = vec![None; Column::ALL.len()];
        for (i, f) in fields.iter().enumerate() {
            let info = f.get_basic_info();
            let col = if with_ids {
                Column::ALL
                    .into_iter()
                    .find(|c| info.has_id() && c.field_id() == info.id())
            } else {
                f.name().parse::<Column>().ok()
            };
            if let Some(c) = col {
                root[c.index()].get_or_insert(i);
            }
        }
        let mut leaf = vec![None; Column::ALL.len()];
        for l in 0..descr.num_columns() {
            let r = descr.get_column_root_idx(l);
            if let Some(c) = Column::ALL.into_iter().find(|c| root[c.index()] == Some(r)) {
                leaf[c.index()].get_or_insert(l);
            }
        }
        FileColumns { root, leaf }
    }

    fn root(&self, c: Column) -> Option<usize> {
        self.root[c.index()]
    }
}

/// Position of each column among the (sorted, deduplicated) roots a batch carries.
fn positions(cols: &[Column], files: &FileColumns) -> (Vec<usize>, Vec<(Column, usize)>) {
    let mut roots: Vec<usize> = cols.iter().filter_map(|c| files.root(*c)).collect();
    roots.sort_unstable();
    roots.dedup();
    let pos = cols
        .iter()
        .filter_map(|c| {
            let r = files.root(*c)?;
            Some((*c, roots.binary_search(&r).ok()?))
        })
        .collect();
    (roots, pos)
}

/// Reads one file and sends its batches; `Ok(false)` when the receiver is gone.
///
/// The footer and then only the byte ranges of the needed column chunks (projection and
/// filter columns, row groups kept by the statistics) are fetched through the table's
/// `FileIO`; decoding runs on tokio's blocking pool.
///
/// `inline`: the caller runs on tokio's blocking pool (a reader of local files), so a small
/// turn is decoded right here, its batches sent after it (small ones gathered in `Pending`
/// with other files' first), instead of one hand-off to the pool and back per file (what a
/// month of small files of a tenant layout paid in thread wake-ups). A larger turn still
/// decodes on the pool, streaming its batches.
pub(crate) async fn read_file(
    plan: Arc<ReadPlan>,
    file: &PlannedFile,
    tx: Sender<Result<RecordBatch>>,
    mut inline: Option<&mut Pending>,
) -> Result<bool> {
    let counters = plan.counters.clone();
    Counters::add(&counters.files_read, 1);
    // The storage layer's reader, opened on the first read through it: a local file whose
    // footer is kept is read with positioned reads alone (opening one costs a stat and an
    // operator per file, which small files of a tenant layout paid on every scan).
    let reader = tokio::sync::OnceCell::new();
    let fetch = |range: Range<u64>| {
        Counters::add(&counters.bytes_read, range.end - range.start);
        Counters::add(&counters.requests, 1);
        let (reader, io, path) = (&reader, &plan.file_io, &file.path);
        async move {
            let reader = reader
                .get_or_try_init(|| async move { io.new_input(path)?.reader().await })
                .await?;
            reader.read(range).await
        }
    };
    let size = file.size;
    let bad = |why: &str| {
        Error::Parquet(parquet::errors::ParquetError::General(format!(
            "{}: {why}",
            file.path
        )))
    };
    // A kept footer (with its page index) saves the footer and page index reads.
    let footers = plan.footers.as_ref();
    let cached = footers
        .and_then(|c| c.get(file.path.as_str()))
        .filter(|f| f.size == size);
    let cached_with_index = cached
        .as_ref()
        .is_some_and(|f| f.metadata.column_index().is_some());
    // Keeps a footer when first parsed, and again once its page index is read.
    let keep = |metadata: &Arc<ParquetMetaData>, footer_len: usize| {
        if let Some(footers) = footers
            && (cached.is_none() || (!cached_with_index && metadata.column_index().is_some()))
        {
            let bytes = metadata.memory_size()
                + file.path.len()
                + metadata.file_metadata().schema_descr().num_columns()
                    * READER_METADATA_BYTES_PER_COLUMN;
            let footer = Footer {
                metadata: metadata.clone(),
                len: footer_len,
                size,
                reader: Arc::default(),
                columns: Arc::default(),
            };
            footers.put(file.path.clone(), footer, bytes);
        }
    };
    let (metadata, footer_len, mut tail): (Arc<ParquetMetaData>, usize, Option<bytes::Bytes>) =
        match &cached {
            Some(f) => (f.metadata.clone(), f.len, None),
            None => {
                let mut tail = fetch(size.saturating_sub(FOOTER_PREFETCH)..size)
                    .await
                    .or_ours()?;
                if tail.len() < FOOTER_TAIL {
                    return Err(bad("file is shorter than a Parquet footer"));
                }
                let footer_len = FooterTail::try_from(&tail[tail.len() - FOOTER_TAIL..])?
                    .metadata_length()
                    + FOOTER_TAIL;
                if footer_len as u64 > size {
                    return Err(bad("footer is longer than the file"));
                }
                if footer_len > tail.len() {
                    tail = fetch(size - footer_len as u64..size).await.or_ours()?;
                }
                let mut metadata = ParquetMetaDataReader::decode_metadata(
                    &tail[tail.len() - footer_len..tail.len() - FOOTER_TAIL],
                )?;
                // Page indexes inside the tail already fetched (a small file's): parsed now,
                // at no extra read, so its pages are found from the offset index. The column
                // index only for a filter that uses it: it would make a kept small file's
                // footer ~35% larger (4,800 of them no longer fit the default cap).
                let tail_start = size - tail.len() as u64;
                let column_index = plan.filter.as_ref().is_some_and(|f| f.uses_page_index());
                if let Some(start) =
                    page_index_start(&metadata).filter(|s| (tail_start..size).contains(s))
                    && let Some(with_index) = with_page_index(
                        &metadata,
                        &tail.slice((start - tail_start) as usize..),
                        size,
                        column_index,
                    )
                {
                    metadata = with_index;
                }
                (Arc::new(metadata), footer_len, Some(tail))
            }
        };
    if cached.is_none() {
        keep(&metadata, footer_len);
    }
    let descr = metadata.file_metadata().schema_descr_ptr();
    let files = match &cached {
        Some(f) => f.columns.get_or_init(|| FileColumns::of(&descr)).clone(),
        None => FileColumns::of(&descr),
    };
    let row_groups = metadata.row_groups();
    Counters::add(&counters.row_groups_total, row_groups.len() as u64);

    let filter_cols = plan
        .filter
        .as_ref()
        .map(|f| f.columns())
        .unwrap_or_default();
    if filter_cols.iter().any(|c| files.root(*c).is_none()) {
        // A column absent from the file is NULL in every row: no row can match.
        return Ok(true);
    }
    let kept: Vec<usize> = (0..row_groups.len())
        .filter(|&i| {
            plan.filter
                .as_ref()
                .is_none_or(|f| f.may_match(&row_groups[i], |c| files.leaf[c.index()]))
        })
        .collect();
    // Explicit rows: the row groups holding some, as group-relative ranges.
    let wanted: Option<Vec<(usize, Vec<Range<usize>>)>> = file.rows.as_ref().map(|rows| {
        let mut start = 0u64;
        let mut out = Vec::new();
        for (rg, group) in row_groups.iter().enumerate() {
            let n = group.num_rows().max(0) as u64;
            let rel: Vec<Range<usize>> = rows
                .iter()
                .filter(|r| r.start < start + n && start < r.end)
                .map(|r| {
                    (r.start.max(start) - start) as usize..(r.end.min(start + n) - start) as usize
                })
                .collect();
            if !rel.is_empty() && kept.contains(&rg) {
                out.push((rg, rel));
            }
            start += n;
        }
        out
    });
    let kept: Vec<usize> = match &wanted {
        Some(w) => w.iter().map(|(rg, _)| *rg).collect(),
        None => kept,
    };
    if kept.is_empty() {
        return Ok(true);
    }
    // A filter every row of the kept row groups matches, by their statistics (a month's file
    // read for that month, a row group of one tenant): read as unfiltered.
    let filter: Option<Resolved> = plan.filter.clone().filter(|f| {
        !kept
            .iter()
            .all(|&rg| f.must_match(&row_groups[rg], |c| files.leaf[c.index()]))
    });
    let filter_cols = filter.as_ref().map(|f| f.columns()).unwrap_or_default();

    let needed_roots: Vec<usize> = plan
        .output
        .iter()
        .chain(&filter_cols)
        .filter_map(|c| files.root(*c))
        .collect();

    // A tenant or time filter on a file with a page index: read the column index, select the
    // pages whose statistics may match, and fetch only those pages of the needed columns.
    let mut metadata = metadata;
    let mut selected = None;
    // The page index is read at most once (a kept footer has it, and so has a small file's
    // footer, parsed from the tail that held both). The reads below that need only the
    // offset index do not read it again for the column index.
    let mut index_read = metadata.column_index().is_some();
    if let Some(filter) = filter.as_ref().filter(|f| f.uses_page_index())
        && page_index_start(&metadata).is_some()
    {
        if !index_read {
            index_read = true;
            if load_page_index(&mut metadata, &fetch, size).await? {
                keep(&metadata, footer_len);
            }
        }
        if metadata.column_index().is_some()
            && metadata.offset_index().is_some()
            && let Some(pages) = select_pages(&metadata, &kept, filter, &files)
        {
            if pages.rows_selected == 0 {
                Counters::add(&counters.pages_skipped, pages.pages_total);
                return Ok(true);
            }
            selected = Some(pages);
        }
    }
    if let Some(wanted) = wanted {
        if !index_read && metadata.offset_index().is_none() {
            index_read = true;
            if load_page_index(&mut metadata, &fetch, size).await? {
                keep(&metadata, footer_len);
            }
        }
        let pages_total = metadata.offset_index().map_or(0, |o| {
            kept.iter()
                .filter_map(|rg| o.get(*rg))
                .flat_map(|cols| cols.iter().map(|c| c.page_locations().len() as u64))
                .sum()
        });
        let ranges: Vec<Vec<Range<usize>>> = wanted.into_iter().map(|(_, r)| r).collect();
        let rows_selected = ranges.iter().flatten().map(|r| r.len()).sum();
        selected = Some(PageSelection {
            ranges,
            rows_selected,
            pages_total,
        });
    }

    // Bytes of the needed column chunks of each kept row group.
    let group_bytes: Vec<u64> = kept
        .iter()
        .map(|&rg| span(&needed_ranges(&metadata, &[rg], &needed_roots, false)))
        .collect();
    // A row group whose needed chunks exceed the budget (a compacted file's one 65 MB group,
    // another engine's 512 MiB one) is read in row ranges through the offset index (below):
    // as a selection of all its rows, with the page index read for it if it was not.
    if selected.is_none() && group_bytes.iter().any(|&n| n > plan.read_buffer) {
        if !index_read && metadata.offset_index().is_none() {
            index_read = true;
            if load_page_index(&mut metadata, &fetch, size).await? {
                keep(&metadata, footer_len);
            }
        }
        if let Some(index) = metadata.offset_index() {
            let pages_total = kept
                .iter()
                .filter_map(|rg| index.get(*rg))
                .flat_map(|cols| cols.iter().map(|c| c.page_locations().len() as u64))
                .sum();
            let ranges: Vec<Vec<Range<usize>>> = kept
                .iter()
                .map(|&rg| std::iter::once(0..group_rows(&metadata, rg)).collect())
                .collect();
            selected = Some(PageSelection {
                rows_selected: ranges.iter().flatten().map(|r| r.len()).sum(),
                ranges,
                pages_total,
            });
        }
    }

    // What to fetch and decode, in turns of whole row groups, at most `read_buffer` bytes of
    // them per turn (a row group larger than that alone), so a large file (a compacted
    // 128 MiB one, another engine's 512 MiB one) never sits in memory whole: with a page
    // selection, the selected pages of the groups that have any, a group larger than the
    // budget in row ranges of about the budget; else the needed chunks.
    let filtered = filter.is_some();
    let turns: Vec<Turn> = match selected {
        Some(pages) => {
            let mut parts: Vec<Part> = Vec::new();
            let mut pages_read = 0u64;
            for (k, &rg) in kept.iter().enumerate() {
                let rows = &pages.ranges[k];
                if rows.is_empty() {
                    continue;
                }
                let (ranges, n) = page_byte_ranges(&metadata, rg, rows, &needed_roots);
                pages_read += n;
                let cuts = match span(&ranges) > plan.read_buffer {
                    true => row_cuts(&metadata, rg, &needed_roots, plan.read_buffer),
                    false => Vec::new(),
                };
                if cuts.len() < 2 {
                    // Rows by position (a similarity search's candidates, a compaction's
                    // window) of another engine's group over the budget: without an offset
                    // index its selected pages cannot be found, so the group is read as a
                    // lazy turn (in windows, as the decoder asks) rather than fetched whole.
                    let lazy =
                        metadata.offset_index().is_none() && span(&ranges) > plan.read_buffer;
                    parts.push(Part {
                        k,
                        rows: rows.clone(),
                        ranges,
                        alone: lazy,
                        lazy,
                    });
                    continue;
                }
                for cut in cuts {
                    let piece = intersect_ranges(rows, std::slice::from_ref(&cut));
                    if !piece.is_empty() {
                        let (ranges, _) = page_byte_ranges(&metadata, rg, &piece, &needed_roots);
                        parts.push(Part {
                            k,
                            rows: piece,
                            ranges,
                            alone: true,
                            lazy: false,
                        });
                    }
                }
            }
            Counters::add(
                &counters.pages_skipped,
                pages.pages_total.saturating_sub(pages_read),
            );
            let sizes: Vec<u64> = parts
                .iter()
                .map(|p| if p.alone { u64::MAX } else { span(&p.ranges) })
                .collect();
            let mut last_group = None;
            budget_runs(&sizes, plan.read_buffer)
                .into_iter()
                .map(|run| {
                    let run = &parts[run];
                    let row_groups: Vec<usize> = run.iter().map(|p| kept[p.k]).collect();
                    // A group's later row ranges are not counted again as row groups read.
                    let new_groups = row_groups.len()
                        - usize::from(
                            last_group.is_some() && last_group == row_groups.first().copied(),
                        );
                    last_group = row_groups.last().copied();
                    let mut rows = Vec::new();
                    let mut offset = 0;
                    for part in run {
                        rows.extend(part.rows.iter().map(|r| r.start + offset..r.end + offset));
                        offset += group_rows(&metadata, kept[part.k]);
                    }
                    Turn {
                        new_groups,
                        row_groups,
                        selection: Some(RowSelection::from_consecutive_ranges(
                            rows.into_iter(),
                            offset,
                        )),
                        ranges: run.iter().flat_map(|p| p.ranges.iter().cloned()).collect(),
                        lazy: run.len() == 1 && run[0].lazy,
                    }
                })
                .collect()
        }
        None => {
            let runs = budget_runs(&group_bytes, plan.read_buffer);
            // A filtered read in several turns: the offset index (page skipping for the row
            // filter) once per file, not parsed from each turn's bytes.
            if filtered && runs.len() > 1 && !index_read && metadata.offset_index().is_none() {
                load_page_index(&mut metadata, &fetch, size).await?;
            }
            let offset_index = filtered && metadata.offset_index().is_none();
            runs.into_iter()
                .map(|run| {
                    // Only a group without an offset index gets here larger than the budget.
                    let lazy = run.len() == 1 && group_bytes[run.start] > plan.read_buffer;
                    let row_groups = kept[run].to_vec();
                    Turn {
                        new_groups: row_groups.len(),
                        ranges: needed_ranges(&metadata, &row_groups, &needed_roots, offset_index),
                        row_groups,
                        selection: None,
                        lazy,
                    }
                })
                .collect()
        }
    };
    let whole_file_turn = turns.len() == 1;
    let local = local_path(&file.path);
    let mut rows_sent = 0usize;
    // Turns decoding on the blocking pool, each with its permit (with `turn_permits`).
    let permits = plan
        .turn_permits
        .clone()
        .filter(|_| inline.is_none() && plan.limit.is_none() && turns.len() > 1);
    let mut running = std::collections::VecDeque::new();
    for turn in turns {
        let limit = match plan.limit {
            Some(l) if rows_sent >= l => break,
            Some(l) => Some(l - rows_sent),
            None => None,
        };
        if tx.is_closed() {
            return Ok(false);
        }
        // Turns already decoded: an error (or the receiver gone) ends the file here, not
        // after its remaining turns.
        while running
            .front()
            .is_some_and(|t: &tokio::task::JoinHandle<_>| t.is_finished())
        {
            if let Some(task) = running.pop_front()
                && !joined(task).await?.0
            {
                return Ok(false);
            }
        }
        // Before the turn's bytes are fetched, so fetched bytes stay within the permits.
        let permit = match &permits {
            Some(permits) => Some(permits.clone().acquire_owned().await.map_err(|_| {
                Error::internal("the scan's turn permits were closed while it read")
            })?),
            None => None,
        };
        Counters::add(&counters.row_groups_read, turn.new_groups as u64);
        // Fetch what the decoder will touch: the file up to its last needed byte in one read
        // when that is most of it, else
        // the needed column chunks (and their offset indexes), or only the selected pages,
        // placed in a sparse buffer.
        let whole_file = whole_file_turn
            && turn.selection.is_none()
            && !turn.lazy
            && span(&turn.ranges) + footer_len as u64 >= size / 2;
        let ranges: Vec<Range<u64>> = if turn.lazy {
            Vec::new()
        } else if whole_file {
            // One read from the start through the last needed byte: the footer (parsed
            // already) and a page index after the data are not read again, unless this
            // turn's decoder parses them from its bytes (a filtered read without a parsed
            // offset index).
            let end = match filtered && metadata.offset_index().is_none() {
                true => size,
                false => turn.ranges.iter().map(|r| r.end).max().unwrap_or(size),
            };
            std::iter::once(0..end).collect()
        } else if local.is_some() {
            merge(turn.ranges, COALESCE_LOCAL_BYTES)
        } else {
            merge(turn.ranges, COALESCE_BYTES)
        };
        let decode_here = inline.is_some() && !turn.lazy && span(&ranges) <= INLINE_TURN_BYTES;
        // Rows the turn may add to what a reader gathers (at most: a filter keeps fewer).
        let turn_rows: usize = turn
            .row_groups
            .iter()
            .map(|&rg| group_rows(&metadata, rg))
            .sum();
        // A lazy turn's source, made here (a storage reader is opened asynchronously) and
        // driven from the blocking pool where the turn decodes.
        if turn.lazy {
            Counters::add(&counters.lazy_reads, 1);
        }
        let lazy = match (turn.lazy, &local) {
            (false, _) => None,
            (true, Some(path)) => Some(local_fetch(path.clone(), counters.clone())),
            (true, None) => {
                let input = plan.file_io.new_input(&file.path).or_ours()?;
                let reader = input.reader().await.or_ours()?;
                Some(storage_fetch(reader, counters.clone()))
            }
        };
        let read_buffer = plan.read_buffer;
        // Local files are read with positioned reads on the blocking pool (a whole file in one
        // read: several times faster than the storage layer's chunked reads), in the task
        // that decodes them (one hop to the pool per turn, not two); others through storage.
        let fetched = match &local {
            Some(_) => {
                Counters::add(&counters.bytes_read, span(&ranges));
                Counters::add(&counters.requests, ranges.len() as u64);
                None
            }
            None => Some(
                try_join_all(ranges.iter().map(|r| fetch(r.clone())))
                    .await
                    .or_ours()?,
            ),
        };
        // A filtered turn of a file without a parsed offset index has the decoder parse the
        // footer from the bytes: a kept footer's bytes are read once for it.
        if tail.is_none() && filtered && metadata.offset_index().is_none() {
            tail = Some(fetch(size - footer_len as u64..size).await.or_ours()?);
        }
        let tail_part = tail.clone();
        let path = file.path.clone();
        let local = local.clone();
        // The kept footer's reader metadata, when this turn reads with that footer.
        let memo = cached
            .as_ref()
            .filter(|f| Arc::ptr_eq(&f.metadata, &metadata))
            .map(|f| f.reader.clone());
        // The turn's bytes in a sparse buffer, and the reader metadata over them.
        let assemble =
            move |metadata: &Arc<ParquetMetaData>| -> Result<(SparseFile, ArrowReaderMetadata)> {
                let fetched = match (fetched, &local) {
                    (Some(f), _) => f,
                    (None, Some(local)) => {
                        read_ranges(local, &ranges).map_err(|source| Error::Io { path, source })?
                    }
                    (None, None) => Vec::new(),
                };
                let mut parts: Vec<(u64, bytes::Bytes)> =
                    ranges.iter().map(|r| r.start).zip(fetched).collect();
                // The footer's bytes (a kept footer is used parsed: nothing else reads its bytes).
                if let Some(tail) = tail_part {
                    let tail_start = size - tail.len() as u64;
                    if !parts
                        .iter()
                        .any(|(o, b)| *o <= tail_start && o + b.len() as u64 >= size)
                    {
                        parts.push((tail_start, tail));
                    }
                }
                let data = match lazy {
                    Some(fetch) => SparseFile::new(size, parts).lazy(Lazy::new(read_buffer, fetch)),
                    None => SparseFile::new(size, parts),
                };
                let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
                let reader_meta = if filtered && metadata.offset_index().is_none() {
                    // One turn of a filtered read: the offset index comes with the turn's bytes.
                    let indexed = options
                        .clone()
                        .with_offset_index_policy(PageIndexPolicy::Optional);
                    match ArrowReaderMetadata::load(&data.index_loader(), indexed)? {
                        loaded if offsets_fit(loaded.metadata()) => loaded,
                        _ => ArrowReaderMetadata::load(&data, options)?,
                    }
                } else if let Some(kept) = memo.as_ref().and_then(|m| m.get()) {
                    kept.clone()
                } else {
                    // The page index, when one was read, is already in `metadata`.
                    let made = ArrowReaderMetadata::try_new(metadata.clone(), options.clone())?;
                    match memo {
                        Some(memo) => {
                            // Kept, so made once per file: over the same schema without field
                            // metadata (the field ids, which batches get back from the output
                            // schema), which the reader builder clones per column and read.
                            let bare = Arc::new(without_field_metadata(made.schema()));
                            let made = ArrowReaderMetadata::try_new(
                                metadata.clone(),
                                options.with_schema(bare),
                            )
                            .unwrap_or(made);
                            let _ = memo.set(made.clone());
                            made
                        }
                        None => made,
                    }
                };
                Ok((data, reader_meta))
            };
        let (plan2, files, descr, filter_cols, filter, metadata) = (
            plan.clone(),
            files.clone(),
            descr.clone(),
            filter_cols.clone(),
            filter.clone(),
            metadata.clone(),
        );
        // The embedding column through this crate's decoder: any turn without a limit (a
        // page selection decodes only the selected pages; a row filter is applied to the
        // assembled batches).
        let embedding = plan
            .output
            .iter()
            .position(|c| *c == Column::Embedding)
            .zip(files.leaf[Column::Embedding.index()]);
        let ours = match embedding {
            Some(e) if plan.decode != Mode::Parquet => {
                // With a limit, parquet-rs's reader stops where the limit is reached.
                if limit.is_none() {
                    Some(e)
                } else {
                    Counters::add(&counters.embedding_fallbacks, 1);
                    None
                }
            }
            _ => None,
        };
        // The file's partition gives every row's `tenant_id`: the small-file decoder fills the
        // column with it (at its position among `columns`) instead of reading it.
        let tenant = file.tenant.clone();
        // Decodes the turn, handing each batch to `emit` (false: the receiver is gone).
        let decode = move |emit: &mut dyn FnMut(RecordBatch) -> bool,
                           gather: Option<&mut narrow::Gather>| {
            let plan = plan2;
            // The constant for a batch of `columns` (of `schema`), if the decoder fills one.
            let tenant_of = |columns: &[Column], schema: &ArrowSchemaRef| {
                let at = columns.iter().position(|c| *c == Column::TenantId);
                narrow::filled(schema, at.zip(tenant.as_deref()))
            };
            // A turn the small-file decoder read (with `constant` filled).
            let fast_read = |constant: Option<(usize, &str)>| {
                Counters::add(&plan.counters.small_file_fast_reads, 1);
                if constant.is_some() {
                    Counters::add(&plan.counters.tenant_from_partition, 1);
                }
            };
            let (data, reader_meta) = assemble(&metadata)?;
            if let Some((at, leaf)) = ours {
                let field = plan.schema.fields()[at].clone();
                // A row filter over a page selection (a tenant's pages of a sorted month):
                // the filter's columns decide first which rows match, so only the embedding
                // pages holding them are decompressed and decoded (the page index selects
                // whole 64-row pages of `tenant_id`; embedding pages hold 8 rows).
                let refined = match (&filter, &turn.selection) {
                    (Some(f), Some(selection)) if !turn.lazy => Some(refine_selection(
                        f,
                        selection,
                        (&data, &reader_meta),
                        &turn.row_groups,
                        (&filter_cols, &descr, &files),
                        plan.batch_size,
                    )?),
                    _ => None,
                };
                // Rows the filter ruled out before any embedding page was decoded: counted
                // when nothing is decoded, or when this crate's decoder reads the rest (a
                // fallback to parquet-rs's reader decodes the whole selection).
                let ruled_out = match (&refined, &turn.selection) {
                    (Some(refined), Some(selection)) => {
                        let out = selection.row_count().saturating_sub(refined.row_count());
                        if refined.row_count() == 0 {
                            Counters::add(&plan.counters.rows_filtered_early, out as u64);
                            return Ok((true, 0));
                        }
                        out
                    }
                    _ => 0,
                };
                let selection = refined.as_ref().or(turn.selection.as_ref());
                // A lazy turn never has a selection (it is a row group without an offset
                // index); with one, the held decode below applies it.
                let lists = if turn.lazy && selection.is_none() {
                    // A row group too large to hold decoded: its embedding column decoded an
                    // array at a time as the other columns' batches come.
                    let rows = turn
                        .row_groups
                        .iter()
                        .map(|&rg| group_rows(&metadata, rg))
                        .sum();
                    let parquet = parquet_lists_of(
                        &data,
                        &reader_meta,
                        &turn.row_groups,
                        (&descr, &files),
                        &field,
                        plan.batch_size,
                    );
                    let theirs = match plan.decode {
                        Mode::Verify => Some(parquet(0)?),
                        _ => None,
                    };
                    let stream = StreamedLists::new(
                        &data,
                        reader_meta.metadata(),
                        &turn.row_groups,
                        (leaf, &field),
                        (plan.batch_size, &plan.counters),
                        parquet,
                    )?;
                    let source: ListSource = match theirs {
                        Some(theirs) => Box::new(Verified {
                            ours: stream,
                            theirs: Lists::streamed(theirs, rows, &field),
                        }),
                        None => Box::new(stream),
                    };
                    Some(Lists::streamed(source, rows, &field))
                } else {
                    // In arrays of a batch's rows (each batch's own allocation, as
                    // parquet-rs's reader makes them).
                    let decoded = embedding::decode_chunks(
                        &data,
                        &metadata,
                        &turn.row_groups,
                        leaf,
                        &field,
                        selection,
                        plan.batch_size,
                    )?;
                    match decoded {
                        Some(list) => {
                            Counters::add(&plan.counters.rows_filtered_early, ruled_out as u64);
                            if plan.decode == Mode::Verify {
                                verify(
                                    &data,
                                    &reader_meta,
                                    &turn.row_groups,
                                    selection,
                                    &descr,
                                    &files,
                                    &list,
                                )?;
                            }
                            Counters::add(&plan.counters.embedding_fast_reads, 1);
                            Some(Lists::new(list, &field))
                        }
                        None => {
                            Counters::add(&plan.counters.embedding_fallbacks, 1);
                            None
                        }
                    }
                };
                if let Some(lists) = lists {
                    // A small file read whole and unfiltered: its other columns through
                    // the small-file decoder too.
                    if filter.is_none() && turn.selection.is_none() && !turn.lazy {
                        let (at, columns): (Vec<usize>, Vec<Column>) = plan
                            .output
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| **c != Column::Embedding)
                            .unzip();
                        if let Some(leaves) = leaves_of(&columns, &files).filter(|l| !l.is_empty())
                        {
                            let schema = Arc::new(plan.schema.project(&at)?);
                            let constant = tenant_of(&columns, &schema);
                            if let Some(narrow) = narrow_checked(
                                &plan,
                                (&data, &reader_meta),
                                &turn.row_groups,
                                (&columns, &leaves, &schema),
                                (&descr, &files),
                                constant,
                            )? {
                                fast_read(constant);
                                return send_narrow_with_embedding(&plan, &narrow, lists, emit);
                            }
                        }
                    }
                    return send_with_embedding(
                        &plan,
                        Turned {
                            data,
                            reader_meta,
                            row_groups: &turn.row_groups,
                            selection: selection.cloned(),
                            filter: filter.map(|f| (f, filter_cols)),
                        },
                        &descr,
                        &files,
                        lists,
                        emit,
                    );
                }
            }
            // Small files without dictionaries (a tenant layout's), read whole and unfiltered:
            // the narrow columns through this crate's decoder, into the reader's gather when
            // it has one (no batch per file, no copy to join them).
            let whole_unfiltered = filter.is_none()
                && turn.selection.is_none()
                && limit.is_none()
                && !turn.lazy
                && plan.decode != Mode::Parquet;
            let leaves = whole_unfiltered
                .then(|| leaves_of(&plan.output, &files))
                .flatten();
            if let Some(leaves) = leaves {
                // Verify mode checks each file on its own first (below), then gathers it too.
                let mut gather = gather.filter(|_| turn_rows <= plan.batch_size);
                let constant = tenant_of(&plan.output, &plan.schema);
                let groups = (&turn.row_groups[..], &leaves[..]);
                if let Some(gather) = gather.as_deref_mut().filter(|_| plan.decode == Mode::Ours) {
                    if gather.add(&data, reader_meta.metadata(), groups, constant)? {
                        fast_read(constant);
                        return Ok((true, turn_rows));
                    }
                } else if let Some(batch) = narrow_checked(
                    &plan,
                    (&data, &reader_meta),
                    &turn.row_groups,
                    (&plan.output, &leaves, &plan.schema),
                    (&descr, &files),
                    constant,
                )? {
                    fast_read(constant);
                    if let Some(gather) = gather
                        && gather.add(&data, reader_meta.metadata(), groups, constant)?
                    {
                        return Ok((true, turn_rows));
                    }
                    let (rows, step) = (batch.num_rows(), plan.batch_size.max(1));
                    for at in (0..rows).step_by(step) {
                        if !emit(batch.slice(at, step.min(rows - at))) {
                            return Ok((false, at));
                        }
                    }
                    return Ok((true, rows));
                }
            }
            let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(data, reader_meta)
                .with_batch_size(plan.batch_size)
                .with_row_groups(turn.row_groups);
            if let Some(filter) = filter {
                let (roots, pos) = positions(&filter_cols, &files);
                let predicate = ArrowPredicateFn::new(
                    ProjectionMask::roots(&descr, roots),
                    move |batch: RecordBatch| {
                        filter.evaluate(batch.num_rows(), |c| {
                            let p = pos.iter().find(|(col, _)| *col == c)?.1;
                            Some(batch.column(p).clone())
                        })
                    },
                );
                builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
            }
            if let Some(selection) = turn.selection {
                builder = in_runs(builder, selection);
            }
            if let Some(limit) = limit {
                builder = builder.with_limit(limit);
            }
            let (roots, pos) = positions(&plan.output, &files);
            let batches = builder
                .with_projection(ProjectionMask::roots(&descr, roots))
                .build()?;
            let mut rows = 0;
            for batch in batches {
                let batch = conform_batch(&plan, &pos, &batch?, None)?;
                rows += batch.num_rows();
                if !emit(batch) {
                    return Ok((false, rows));
                }
            }
            Ok::<_, Error>((true, rows))
        };
        let decoded = if let Some(pending) = inline.as_deref_mut().filter(|_| decode_here) {
            // What is gathered goes first when this turn's rows would take it past a batch.
            if !pending.room_for(turn_rows, &plan) && !pending.flush(&plan, &tx).await? {
                return Ok(false);
            }
            let mut out = Vec::new();
            let decoded = decode(
                &mut |batch| {
                    out.push(batch);
                    true
                },
                pending.gather(&plan),
            )?;
            for batch in out {
                if !pending.push(batch, &plan, &tx).await? {
                    return Ok(false);
                }
            }
            if pending.full(&plan) && !pending.flush(&plan, &tx).await? {
                return Ok(false);
            }
            decoded
        } else {
            let tx = tx.clone();
            let task = tokio::task::spawn_blocking(move || {
                let decoded = decode(&mut |batch| tx.blocking_send(Ok(batch)).is_ok(), None);
                drop(permit);
                decoded
            });
            if permits.is_some() {
                // Decodes beside this file's other turns; awaited below.
                running.push_back(task);
                continue;
            }
            joined(task).await?
        };
        rows_sent += decoded.1;
        if !decoded.0 {
            return Ok(false);
        }
    }
    let mut open = true;
    for task in running {
        open &= joined(task).await?.0;
    }
    drop(reader);
    Ok(open)
}

/// The outcome of a turn decoded on the blocking pool.
async fn joined(task: tokio::task::JoinHandle<Result<(bool, usize)>>) -> Result<(bool, usize)> {
    task.await.map_err(reader_failed)?
}

/// A reader or decode task that panicked (or was cancelled): the scan it served is
/// incomplete; not the caller's configuration, and not worth a retry.
pub(super) fn reader_failed(e: tokio::task::JoinError) -> Error {
    Error::internal(format!("a file reader failed: {e}; the scan is incomplete"))
}

/// A reader's small batches of several files, sent as one (fewer sends, fewer wake-ups of
/// the consumer): at most a batch's rows and [`PENDING_BYTES`].
#[derive(Default)]
pub(crate) struct Pending {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    /// Small files decoded by this crate's decoder, gathered column by column.
    gather: Option<narrow::Gather>,
}

/// Bytes of decoded batches a [`Pending`] gathers before it sends them; a batch this large
/// or larger is sent on its own, not copied.
const PENDING_BYTES: usize = 1 << 20;

impl Pending {
    /// The gather small files are decoded into (made for the plan's schema on first use;
    /// `None` when this crate's decoder does not build its columns).
    fn gather(&mut self, plan: &ReadPlan) -> Option<&mut narrow::Gather> {
        if self.gather.is_none() {
            self.gather = narrow::Gather::new(&plan.schema, plan.batch_size);
        }
        self.gather.as_mut()
    }

    /// Rows and bytes gathered (batches and the small-file gather).
    fn held(&self) -> (usize, usize) {
        let (rows, bytes) = self
            .gather
            .as_ref()
            .map_or((0, 0), |g| (g.rows(), g.bytes()));
        (self.rows + rows, self.bytes + bytes)
    }

    /// Whether what is gathered makes a batch.
    fn full(&self, plan: &ReadPlan) -> bool {
        let (rows, bytes) = self.held();
        rows >= plan.batch_size || bytes >= PENDING_BYTES
    }

    /// Whether `rows` more rows keep what is gathered within a batch (a batch sent never
    /// holds more than the scan's batch size).
    fn room_for(&self, rows: usize, plan: &ReadPlan) -> bool {
        let (held, _) = self.held();
        held == 0 || held + rows <= plan.batch_size
    }

    /// Gathers `batch` (sending what is gathered once full); `Ok(false)` when the receiver is
    /// gone.
    async fn push(
        &mut self,
        batch: RecordBatch,
        plan: &ReadPlan,
        tx: &Sender<Result<RecordBatch>>,
    ) -> Result<bool> {
        let bytes = batch.get_array_memory_size();
        let alone = bytes >= PENDING_BYTES / 4;
        // What is gathered goes first (batches keep their order) when this batch is sent on
        // its own or would take it past a batch's rows.
        if (alone || !self.room_for(batch.num_rows(), plan)) && !self.flush(plan, tx).await? {
            return Ok(false);
        }
        if alone {
            return Ok(tx.send(Ok(batch)).await.is_ok());
        }
        self.rows += batch.num_rows();
        self.bytes += bytes;
        self.batches.push(batch);
        if self.full(plan) {
            return self.flush(plan, tx).await;
        }
        Ok(true)
    }

    /// Sends what is gathered, as one batch; `Ok(false)` when the receiver is gone.
    pub(crate) async fn flush(
        &mut self,
        plan: &ReadPlan,
        tx: &Sender<Result<RecordBatch>>,
    ) -> Result<bool> {
        let mut batches = std::mem::take(&mut self.batches);
        (self.rows, self.bytes) = (0, 0);
        if let Some(gather) = self.gather.as_mut().filter(|g| g.rows() > 0) {
            batches.push(gather.finish()?);
        }
        let batch = match batches.len() {
            0 => return Ok(true),
            1 => batches.swap_remove(0),
            _ => arrow_select::concat::concat_batches(&plan.schema, &batches)?,
        };
        Ok(tx.send(Ok(batch)).await.is_ok())
    }
}

/// Selected rows of one row group to read in a turn (with others, unless `alone`).
struct Part {
    /// Index into the kept row groups.
    k: usize,
    /// Group-relative row ranges.
    rows: Vec<Range<usize>>,
    /// Byte ranges of their pages.
    ranges: Vec<Range<u64>>,
    /// A row range of a group cut by the read budget: a turn of its own.
    alone: bool,
    /// A group over the budget that cannot be cut (no offset index): a turn of its own,
    /// its bytes fetched as the decoder reads them.
    lazy: bool,
}

/// One fetch-and-decode turn of a file reader.
struct Turn {
    row_groups: Vec<usize>,
    /// Row groups this turn reads first (a row range of a group read before: none).
    new_groups: usize,
    selection: Option<RowSelection>,
    ranges: Vec<Range<u64>>,
    /// One row group larger than the budget in a file without an offset index (so not cut
    /// in row ranges): nothing fetched ahead, its pages fetched as parquet-rs's reader
    /// streams them ([`Lazy`]).
    lazy: bool,
}

/// Consecutive runs of items whose sizes add up to at most `budget` (an item larger than
/// that alone).
fn budget_runs(sizes: &[u64], budget: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && bytes.saturating_add(size) > budget {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(size);
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Bytes covered by `ranges`.
fn span(ranges: &[Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
}

/// Rows of row group `rg`.
fn group_rows(metadata: &ParquetMetaData, rg: usize) -> usize {
    usize::try_from(metadata.row_group(rg).num_rows()).unwrap_or(0)
}

/// `metadata` with the offset index (and the column index if `column_index`) parsed from
/// `index_bytes` (the file's bytes from the first index to its end); `None` when they do not
/// parse.
fn with_page_index(
    metadata: &ParquetMetaData,
    index_bytes: &bytes::Bytes,
    size: u64,
    column_index: bool,
) -> Option<ParquetMetaData> {
    let columns = match column_index {
        true => PageIndexPolicy::Optional,
        false => PageIndexPolicy::Skip,
    };
    let mut loader = ParquetMetaDataReader::new_with_metadata(metadata.clone())
        .with_column_index_policy(columns)
        .with_offset_index_policy(PageIndexPolicy::Optional);
    loader.read_page_indexes_sized(index_bytes, size).ok()?;
    loader.finish().ok().filter(offsets_fit)
}

/// Whether `metadata`'s offset index (if it has one) puts every page inside its column chunk:
/// an entry per row group and column, pages non-empty, rising, within the chunk's bytes. The
/// index is the file's own say: parquet-rs's page reader, given page locations, reads them
/// without checking them against the chunk, so an index that does not fit is not used.
fn offsets_fit(metadata: &ParquetMetaData) -> bool {
    let Some(index) = metadata.offset_index() else {
        return true;
    };
    index.len() == metadata.num_row_groups()
        && index
            .iter()
            .zip(metadata.row_groups())
            .all(|(columns, group)| {
                columns.len() == group.num_columns()
                    && columns.iter().zip(group.columns()).all(|(column, chunk)| {
                        let (start, len) = chunk.byte_range();
                        let Some(end) = start.checked_add(len) else {
                            return false;
                        };
                        let mut at = start;
                        let pages = column.page_locations();
                        !pages.is_empty()
                            && pages.iter().all(|page| {
                                let (Ok(offset), Ok(size)) = (
                                    u64::try_from(page.offset),
                                    u64::try_from(page.compressed_page_size),
                                ) else {
                                    return false;
                                };
                                let fits = size > 0
                                    && offset >= at
                                    && offset.checked_add(size).is_some_and(|e| e <= end);
                                at = offset.saturating_add(size);
                                fits
                            })
                    })
            })
}

/// Reads the file's page indexes (one read, from the first index to the end of the file)
/// into `metadata`; `false` when it has none or they do not parse.
async fn load_page_index<F, Fut>(
    metadata: &mut Arc<ParquetMetaData>,
    fetch: &F,
    size: u64,
) -> Result<bool>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: std::future::Future<Output = iceberg::Result<bytes::Bytes>>,
{
    let Some(start) = page_index_start(metadata) else {
        return Ok(false);
    };
    let bytes = fetch(start..size).await.or_ours()?;
    Ok(match with_page_index(metadata, &bytes, size, true) {
        Some(with_index) => {
            *metadata = Arc::new(with_index);
            true
        }
        None => false,
    })
}

/// Reads `ranges` of a local file.
fn read_ranges(
    path: &std::path::Path,
    ranges: &[Range<u64>],
) -> std::io::Result<Vec<bytes::Bytes>> {
    let mut file = std::fs::File::open(path)?;
    ranges.iter().map(|r| read_range(&mut file, r)).collect()
}

/// Bytes `r` of `file`: one positioned read (`pread`), where a small file's read of its two
/// or three ranges was one seek and two reads each (the second finding the end).
#[cfg(unix)]
fn read_range(file: &mut std::fs::File, r: &Range<u64>) -> std::io::Result<bytes::Bytes> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(r.end - r.start).map_err(|_| past_end(r))?;
    let mut buf = vec![0u8; len];
    match file.read_exact_at(&mut buf, r.start) {
        Ok(()) => Ok(bytes::Bytes::from(buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(past_end(r)),
        Err(e) => Err(e),
    }
}

/// Bytes `r` of `file` (seek + read into a buffer that is not zero-filled first).
#[cfg(not(unix))]
fn read_range(file: &mut std::fs::File, r: &Range<u64>) -> std::io::Result<bytes::Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let len = r.end - r.start;
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.seek(SeekFrom::Start(r.start))?;
    file.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(past_end(r));
    }
    Ok(bytes::Bytes::from(buf))
}

fn past_end(r: &Range<u64>) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("bytes {}..{} are past the end of the file", r.start, r.end),
    )
}

/// A file of which only some byte ranges were fetched: the decoder's view of a partial read.
/// Reads inside one fetched range are zero-copy slices; a read of bytes that were not
/// fetched is an error, except for the page index loader ([`SparseFile::index_loader`]),
/// whose one read over all indexes is assembled with zeros where nothing was fetched (bytes
/// no needed structure lies in): a page that was not fetched is never read as zeros.
///
/// A lazy one ([`SparseFile::lazy`]) fetches what it was not given as the decoder asks for
/// it: a row group larger than the read budget in a file without an offset index (what
/// pyarrow and pyiceberg write by default) is then read page by page, not fetched whole.
#[derive(Clone)]
struct SparseFile {
    len: u64,
    parts: Arc<Vec<(u64, bytes::Bytes)>>,
    lazy: Option<Arc<Lazy>>,
    /// A read across fetched parts fills the gaps with zeros (the page index loader's).
    zero_gaps: bool,
}

impl SparseFile {
    fn new(len: u64, mut parts: Vec<(u64, bytes::Bytes)>) -> Self {
        parts.sort_by_key(|(o, _)| *o);
        SparseFile {
            len,
            parts: Arc::new(parts),
            lazy: None,
            zero_gaps: false,
        }
    }

    /// This file for the page index loader, which reads one range over every column's
    /// indexes of which only the needed ones were fetched: zeros in the gaps between them.
    fn index_loader(&self) -> Self {
        SparseFile {
            zero_gaps: true,
            ..self.clone()
        }
    }

    /// This file, fetching the ranges it does not hold through `lazy`.
    fn lazy(mut self, lazy: Lazy) -> Self {
        self.lazy = Some(Arc::new(lazy));
        self
    }

    fn part_holding(&self, start: u64, length: u64) -> Option<(u64, &bytes::Bytes)> {
        self.parts
            .iter()
            .find(|(o, b)| *o <= start && start + length <= o + b.len() as u64)
            .map(|(o, b)| (*o, b))
    }
}

impl parquet::file::reader::Length for SparseFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for SparseFile {
    type T = PartRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        match (self.part_holding(start, 0), &self.lazy) {
            (Some((o, b)), _) => Ok(PartRead::Held(b.slice((start - o) as usize..).reader())),
            (None, Some(lazy)) => Ok(PartRead::Lazy(LazyRead {
                lazy: lazy.clone(),
                pos: start,
                buf: bytes::Bytes::new(),
                file_len: self.len,
            })),
            (None, None) => Err(parquet::errors::ParquetError::General(format!(
                "byte {start} of the file was not fetched"
            ))),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        if length == 0 {
            return Ok(bytes::Bytes::new());
        }
        if let Some((o, b)) = self.part_holding(start, length as u64) {
            let from = (start - o) as usize;
            return Ok(b.slice(from..from + length));
        }
        if let Some(lazy) = &self.lazy {
            return lazy.bytes(start, length, self.len);
        }
        // Across fetched parts (the page index loader's one range over all indexes), zeros in
        // the gaps between them; a range no part touches was never fetched.
        let end = start + length as u64;
        if !self.zero_gaps {
            return Err(parquet::errors::ParquetError::General(format!(
                "bytes {start}..{end} of the file were not fetched"
            )));
        }
        let mut buf = vec![0u8; length];
        let mut touched = false;
        for (o, b) in self.parts.iter() {
            let (po, pe) = (*o, o + b.len() as u64);
            let (s, e) = (po.max(start), pe.min(end));
            if s < e {
                touched = true;
                buf[(s - start) as usize..(e - start) as usize]
                    .copy_from_slice(&b[(s - po) as usize..(e - po) as usize]);
            }
        }
        if !touched {
            return Err(parquet::errors::ParquetError::General(format!(
                "bytes {start}..{end} of the file were not fetched"
            )));
        }
        Ok(bytes::Bytes::from(buf))
    }
}

/// What [`SparseFile::get_read`] hands out: a slice of a fetched part, or a lazy file's
/// reader, which fetches the next window when it runs out (a page header longer than what a
/// window has left).
enum PartRead {
    Held(bytes::buf::Reader<bytes::Bytes>),
    Lazy(LazyRead),
}

impl std::io::Read for PartRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            PartRead::Held(r) => r.read(out),
            PartRead::Lazy(r) => r.read(out),
        }
    }
}

/// Reads a lazy [`SparseFile`] from `pos` on, a window at a time.
struct LazyRead {
    lazy: Arc<Lazy>,
    pos: u64,
    buf: bytes::Bytes,
    file_len: u64,
}

impl std::io::Read for LazyRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use bytes::Buf;
        if self.buf.is_empty() {
            if out.is_empty() || self.pos >= self.file_len {
                return Ok(0);
            }
            self.buf = self
                .lazy
                .window_at(self.pos, self.file_len)
                .map_err(std::io::Error::other)?;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Fetches a byte range of a file (reads of a local file, or the storage layer's reader
/// driven from the blocking pool), counting the bytes and requests.
type FetchRange = Box<dyn Fn(Range<u64>) -> std::io::Result<bytes::Bytes> + Send + Sync>;

/// The bytes a lazy [`SparseFile`] fetches on demand. A page header is read from a window
/// fetched at its position; a page comes with its header's window, or is fetched (the rest
/// past that window) together with a quarter window after it, where the next header starts:
/// one read per page. Only windows are kept, the last [`LAZY_WINDOWS_KEPT`], so memory stays
/// near `LAZY_WINDOWS_KEPT × window` besides the pages handed out.
struct Lazy {
    fetch: FetchRange,
    window: u64,
    recent: std::sync::Mutex<std::collections::VecDeque<(u64, bytes::Bytes)>>,
}

/// Windows a lazy read keeps: two per column of our 12, and some.
const LAZY_WINDOWS_KEPT: usize = 32;

impl Lazy {
    /// Windows of `read_buffer / LAZY_WINDOWS_KEPT`, between 64 KiB and 1 MiB.
    fn new(read_buffer: u64, fetch: FetchRange) -> Self {
        Lazy {
            fetch,
            window: (read_buffer / LAZY_WINDOWS_KEPT as u64).clamp(64 << 10, 1 << 20),
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The bytes from `start` that a kept window holds (the newest holding any).
    fn held(&self, start: u64) -> Option<bytes::Bytes> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .rev()
            .find(|(o, b)| *o <= start && start < o + b.len() as u64)
            .map(|(o, b)| b.slice((start - o) as usize..))
    }

    fn keep(&self, start: u64, window: bytes::Bytes) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_back((start, window));
        while recent.len() > LAZY_WINDOWS_KEPT {
            recent.pop_front();
        }
    }

    /// `range` through the fetch, checked to be whole.
    fn fetch(&self, range: Range<u64>) -> parquet::errors::Result<bytes::Bytes> {
        let bytes = (self.fetch)(range.clone())
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        if (bytes.len() as u64) < range.end - range.start {
            return Err(parquet::errors::ParquetError::General(format!(
                "bytes {}..{} came back short ({} bytes)",
                range.start,
                range.end,
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// What a window holds from `start` on: a kept one's rest, or a fresh window (kept).
    fn window_at(&self, start: u64, file_len: u64) -> parquet::errors::Result<bytes::Bytes> {
        if let Some(held) = self.held(start) {
            return Ok(held);
        }
        if start >= file_len {
            return Err(parquet::errors::ParquetError::General(format!(
                "byte {start} is past the end of the file ({file_len} bytes)"
            )));
        }
        let window = self.fetch(start..start.saturating_add(self.window).min(file_len))?;
        self.keep(start, window.clone());
        Ok(window)
    }

    /// `length` (> 0) bytes from `start`: from a kept window, or with the part a window
    /// holds joined to the rest, fetched with a quarter window after it (kept, for the next
    /// page's header).
    fn bytes(
        &self,
        start: u64,
        length: usize,
        file_len: u64,
    ) -> parquet::errors::Result<bytes::Bytes> {
        let end = start.saturating_add(length as u64);
        if end > file_len {
            return Err(parquet::errors::ParquetError::General(format!(
                "bytes {start}..{end} are past the end of the file ({file_len} bytes)"
            )));
        }
        let head = self.held(start).unwrap_or_default();
        if head.len() >= length {
            return Ok(head.slice(..length));
        }
        let from = start + head.len() as u64;
        let ahead = end.saturating_add(self.window / 4).min(file_len);
        let rest = self.fetch(from..ahead)?;
        let cut = (end - from) as usize;
        if ahead > end {
            // Copied, so the window kept does not hold the page's buffer alive.
            self.keep(end, bytes::Bytes::copy_from_slice(&rest[cut..]));
        }
        if head.is_empty() {
            return Ok(rest.slice(..cut));
        }
        let mut joined = Vec::with_capacity(length);
        joined.extend_from_slice(&head);
        joined.extend_from_slice(&rest[..cut]);
        Ok(bytes::Bytes::from(joined))
    }
}

/// Reads of the local file at `path`, opened on the first read (on the blocking pool, where
/// lazy turns decode).
fn local_fetch(path: std::path::PathBuf, counters: Arc<Counters>) -> FetchRange {
    let file: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);
    Box::new(move |range: Range<u64>| {
        let mut guard = file.lock().unwrap_or_else(|e| e.into_inner());
        let file = match guard.as_mut() {
            Some(f) => f,
            None => guard.insert(std::fs::File::open(&path)?),
        };
        let bytes = read_range(file, &range)?;
        Counters::add(&counters.bytes_read, range.end - range.start);
        Counters::add(&counters.requests, 1);
        Ok(bytes)
    })
}

/// Reads through the storage layer's `reader`, each one awaited from the blocking pool on
/// the runtime that opened it.
fn storage_fetch(reader: Box<dyn iceberg::io::FileRead>, counters: Arc<Counters>) -> FetchRange {
    let handle = tokio::runtime::Handle::current();
    Box::new(move |range: Range<u64>| {
        let n = range.end - range.start;
        let bytes = handle
            .block_on(reader.read(range))
            .map_err(std::io::Error::other)?;
        Counters::add(&counters.bytes_read, n);
        Counters::add(&counters.requests, 1);
        Ok(bytes)
    })
}

/// `schema` with no field metadata at any depth.
fn without_field_metadata(schema: &arrow_schema::Schema) -> arrow_schema::Schema {
    use arrow_schema::{DataType, Field};
    fn bare(field: &Field) -> Field {
        let data_type = match field.data_type() {
            DataType::List(inner) => DataType::List(Arc::new(bare(inner))),
            DataType::LargeList(inner) => DataType::LargeList(Arc::new(bare(inner))),
            DataType::Struct(fields) => {
                DataType::Struct(fields.iter().map(|f| Arc::new(bare(f))).collect())
            }
            other => other.clone(),
        };
        Field::new(field.name(), data_type, field.is_nullable())
    }
    arrow_schema::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Arc::new(bare(f)))
            .collect::<Vec<_>>(),
    )
}

/// The local path of a `file:` URL (`None` for object stores).
fn local_path(location: &str) -> Option<std::path::PathBuf> {
    if !location.starts_with("file:") {
        return None;
    }
    // The common `file:///absolute/path` without escapes needs no URL parser (parsing cost a
    // small file's read ~3%).
    #[cfg(unix)]
    if let Some(path) = location.strip_prefix("file://")
        && path.starts_with('/')
        && !path.contains(['%', '?', '#'])
    {
        return Some(std::path::PathBuf::from(path));
    }
    url::Url::parse(location).ok()?.to_file_path().ok()
}

/// Byte ranges of the column chunks of `roots` in `row_groups` (and their offset indexes).
fn needed_ranges(
    metadata: &ParquetMetaData,
    row_groups: &[usize],
    roots: &[usize],
    offset_index: bool,
) -> Vec<Range<u64>> {
    let descr = metadata.file_metadata().schema_descr();
    let mut out = Vec::new();
    for &rg in row_groups {
        for (leaf, chunk) in metadata.row_group(rg).columns().iter().enumerate() {
            if !roots.contains(&descr.get_column_root_idx(leaf)) {
                continue;
            }
            let (start, len) = chunk.byte_range();
            out.push(start..start + len);
            if offset_index
                && let (Some(o), Some(l)) =
                    (chunk.offset_index_offset(), chunk.offset_index_length())
                && o >= 0
                && l > 0
            {
                out.push(o as u64..o as u64 + l as u64);
            }
        }
    }
    out
}

/// Where the file's page indexes (column and offset indexes) start, if it has them.
fn page_index_start(metadata: &ParquetMetaData) -> Option<u64> {
    let mut start: Option<u64> = None;
    let mut has_column_index = false;
    for rg in metadata.row_groups() {
        for chunk in rg.columns() {
            for (o, l) in [
                (chunk.column_index_offset(), chunk.column_index_length()),
                (chunk.offset_index_offset(), chunk.offset_index_length()),
            ] {
                if let (Some(o), Some(l)) = (o, l)
                    && o >= 0
                    && l > 0
                {
                    start = Some(start.map_or(o as u64, |s| s.min(o as u64)));
                }
            }
            has_column_index |= chunk.column_index_offset().is_some();
        }
    }
    start.filter(|_| has_column_index)
}

/// The rows of the kept row groups whose pages may match, from the column index.
struct PageSelection {
    /// Per kept row group: selected row ranges (row-group relative).
    ranges: Vec<Vec<Range<usize>>>,
    rows_selected: usize,
    /// Pages of all columns in the kept row groups.
    pages_total: u64,
}

/// Selects pages of the kept row groups from the column indexes of the filter's tenant /
/// string and time columns. `None` when a needed index is missing (read whole chunks).
fn select_pages(
    metadata: &ParquetMetaData,
    kept: &[usize],
    filter: &Resolved,
    files: &FileColumns,
) -> Option<PageSelection> {
    let column_index = metadata.column_index()?;
    let offset_index = metadata.offset_index()?;
    let mut per_group = Vec::with_capacity(kept.len());
    let mut pages_total = 0u64;
    for &rg in kept {
        let rows = usize::try_from(metadata.row_group(rg).num_rows()).ok()?;
        if let Some(columns) = offset_index.get(rg) {
            pages_total += columns
                .iter()
                .map(|o| o.page_locations().len() as u64)
                .sum::<u64>();
        }
        let mut selected: Vec<Range<usize>> = std::iter::once(0..rows).collect();
        for col in filter.page_index_columns() {
            let leaf = files.leaf[col.index()]?;
            let index = column_index.get(rg)?.get(leaf)?;
            let descr = metadata
                .file_metadata()
                .schema_descr()
                .columns()
                .get(leaf)?;
            let locations = offset_index.get(rg)?.get(leaf)?.page_locations();
            let mut matching = Vec::new();
            for (i, loc) in locations.iter().enumerate() {
                let start = usize::try_from(loc.first_row_index).ok()?;
                let end = match locations.get(i + 1) {
                    Some(next) => usize::try_from(next.first_row_index).ok()?,
                    None => rows,
                };
                if filter.page_may_match(col, descr, index, i) {
                    matching.push(start..end);
                }
            }
            selected = intersect_ranges(&selected, &matching);
        }
        per_group.push(selected);
    }
    let rows_selected = per_group.iter().flatten().map(|r| r.len()).sum();
    Some(PageSelection {
        ranges: per_group,
        rows_selected,
        pages_total,
    })
}

/// Byte ranges of the pages (and dictionary pages) of `roots`' columns in row group `rg`
/// that hold rows of `selected` (group-relative), with the number of pages they cover.
fn page_byte_ranges(
    metadata: &ParquetMetaData,
    rg: usize,
    selected: &[Range<usize>],
    roots: &[usize],
) -> (Vec<Range<u64>>, u64) {
    let descr = metadata.file_metadata().schema_descr();
    let offsets = metadata.offset_index();
    let mut out = Vec::new();
    let mut pages = 0u64;
    let group = metadata.row_group(rg);
    let rows = usize::try_from(group.num_rows()).unwrap_or(usize::MAX);
    for (leaf, chunk) in group.columns().iter().enumerate() {
        if !roots.contains(&descr.get_column_root_idx(leaf)) {
            continue;
        }
        let (chunk_start, chunk_len) = chunk.byte_range();
        let Some(locations) = offsets
            .and_then(|o| o.get(rg))
            .and_then(|o| o.get(leaf))
            .map(|o| o.page_locations())
            .filter(|l| !l.is_empty())
        else {
            out.push(chunk_start..chunk_start + chunk_len);
            continue;
        };
        // The dictionary page (if any) precedes the first data page.
        let first = locations[0].offset.max(0) as u64;
        if first > chunk_start {
            out.push(chunk_start..first);
        }
        // parquet-rs reads a repeated column (the embedding list) one page past a
        // selected one to find where the last selected record ends: that page is fetched
        // too, or it would parse bytes that were never read.
        let repeated = descr.column(leaf).max_rep_level() > 0;
        let mut after_selected = false;
        for (i, loc) in locations.iter().enumerate() {
            let start = loc.first_row_index.max(0) as usize;
            let end = locations
                .get(i + 1)
                .map_or(rows, |n| n.first_row_index.max(0) as usize);
            let hit = selected.iter().any(|r| r.start < end && start < r.end);
            if hit || (repeated && after_selected) {
                let o = loc.offset.max(0) as u64;
                out.push(o..o + loc.compressed_page_size.max(0) as u64);
                pages += 1;
            }
            after_selected = hit;
        }
    }
    (out, pages)
}

/// Row ranges covering row group `rg` whose pages of `roots`' columns come to about `budget`
/// bytes each (at least one page of the largest column), cut where that column's pages
/// start: how a group larger than the read budget is read. Empty without an offset index.
fn row_cuts(
    metadata: &ParquetMetaData,
    rg: usize,
    roots: &[usize],
    budget: u64,
) -> Vec<Range<usize>> {
    let descr = metadata.file_metadata().schema_descr();
    let group = metadata.row_group(rg);
    let rows = group_rows(metadata, rg);
    let needed: Vec<usize> = (0..group.num_columns())
        .filter(|&leaf| roots.contains(&descr.get_column_root_idx(leaf)))
        .collect();
    let bytes = |leaf: usize| group.column(leaf).byte_range().1;
    let Some(&largest) = needed.iter().max_by_key(|&&leaf| bytes(leaf)) else {
        return Vec::new();
    };
    let Some(locations) = metadata
        .offset_index()
        .and_then(|o| o.get(rg))
        .and_then(|o| o.get(largest))
        .map(|o| o.page_locations())
    else {
        return Vec::new();
    };
    // The other columns' bytes, spread evenly over the rows; dictionary pages, which every
    // range reads, leave the pages less of the budget (at least half).
    let others: u64 = needed
        .iter()
        .filter(|&&leaf| leaf != largest)
        .map(|&leaf| bytes(leaf))
        .sum();
    let per_row = others as f64 / rows.max(1) as f64;
    let dictionaries: u64 = needed
        .iter()
        .map(|&leaf| {
            let chunk = group.column(leaf);
            let first_data = chunk.data_page_offset().max(0) as u64;
            first_data.saturating_sub(chunk.byte_range().0)
        })
        .sum();
    let budget = budget.saturating_sub(dictionaries).max(budget / 2);
    let mut cuts = Vec::new();
    let (mut start, mut acc) = (0usize, 0f64);
    for (i, loc) in locations.iter().enumerate() {
        let first = usize::try_from(loc.first_row_index).unwrap_or(0).min(rows);
        let end = locations.get(i + 1).map_or(rows, |n| {
            usize::try_from(n.first_row_index).unwrap_or(rows).min(rows)
        });
        let page =
            loc.compressed_page_size.max(0) as f64 + per_row * end.saturating_sub(first) as f64;
        if first > start && acc + page > budget as f64 {
            cuts.push(start..first);
            (start, acc) = (first, 0.0);
        }
        acc += page;
    }
    if start < rows {
        cuts.push(start..rows);
    }
    cuts
}

/// The intersection of two sorted lists of disjoint ranges.
fn intersect_ranges(a: &[Range<usize>], b: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start < end {
            match out.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => out.push(start..end),
            }
        }
        if a[i].end <= b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Sorts ranges and merges those less than `gap` bytes apart.
fn merge(mut ranges: Vec<Range<u64>>, gap: u64) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(r.end);
            }
            _ => merged.push(r),
        }
    }
    merged
}

/// Rebuilds a file batch with the output schema: column order, field ids, exact types;
/// `embedding`, when given, is the batch's `embedding` column (decoded apart, already of the
/// output type).
fn conform_batch(
    plan: &ReadPlan,
    pos: &[(Column, usize)],
    batch: &RecordBatch,
    embedding: Option<ArrayRef>,
) -> Result<RecordBatch> {
    conform_to(&plan.output, &plan.schema, pos, batch, embedding)
}

/// [`conform_batch`] to `columns` and their `schema` (a part of the output's).
fn conform_to(
    columns: &[Column],
    schema: &ArrowSchemaRef,
    pos: &[(Column, usize)],
    batch: &RecordBatch,
    embedding: Option<ArrayRef>,
) -> Result<RecordBatch> {
    let rows = embedding.as_ref().map_or(batch.num_rows(), |e| e.len());
    let columns = columns
        .iter()
        .zip(schema.fields())
        .map(|(c, field)| match pos.iter().find(|(col, _)| col == c) {
            Some((_, p)) => crate::batch::relabel_array(batch.column(*p), field),
            None if *c == Column::Embedding && embedding.is_some() => Ok(embedding
                .clone()
                .unwrap_or_else(|| new_null_array(field.data_type(), rows))),
            None if field.is_nullable() => Ok(new_null_array(field.data_type(), rows)),
            None => Err(Error::invalid(
                *c,
                None,
                "required column is missing from a data file",
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

/// Sends one turn's batches: the other output columns from parquet-rs's reader, the
/// `embedding` column sliced from `list` (this crate's decode of the turn, held or streamed;
/// a streamed one may end in parquet-rs's arrays after a fallback). `Ok((false, _))` when
/// the receiver is gone.
fn send_with_embedding(
    plan: &ReadPlan,
    turn: Turned<'_>,
    descr: &SchemaDescriptor,
    files: &FileColumns,
    mut list: Lists,
    emit: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<(bool, usize)> {
    let total = list.len();
    let Turned {
        data,
        reader_meta,
        row_groups,
        selection,
        filter,
    } = turn;
    let mut read: Vec<Column> = plan
        .output
        .iter()
        .copied()
        .filter(|c| *c != Column::Embedding)
        .collect();
    if let Some((_, cols)) = &filter {
        for c in cols {
            if *c != Column::Embedding && !read.contains(c) {
                read.push(*c);
            }
        }
    }
    let (roots, pos) = positions(&read, files);
    let empty = RecordBatch::new_empty(Arc::new(arrow_schema::Schema::empty()));
    let mut sent = 0usize;
    let mut rows_out = 0usize;
    // One output batch: `batch`'s columns and the next `n` rows of `list`, less the rows
    // the row filter rejects.
    let mut send = |batch: &RecordBatch, n: usize, sent: &mut usize| -> Result<bool> {
        // Fails when the embedding column holds fewer rows than the other columns.
        let mut embedding = list.take(n)?;
        *sent += n;
        let mut batch = batch.clone();
        if let Some((f, _)) = &filter {
            let hits = f.evaluate(n, |c| {
                let p = pos.iter().find(|(col, _)| *col == c)?.1;
                Some(batch.column(p).clone())
            })?;
            let matched = hits.true_count();
            if matched == 0 {
                return Ok(true);
            }
            if matched < n {
                batch = arrow_select::filter::filter_record_batch(&batch, &hits)?;
                embedding = arrow_select::filter::filter(&embedding, &hits)?;
            }
        }
        let out = conform_batch(plan, &pos, &batch, Some(embedding))?;
        rows_out += out.num_rows();
        Ok(emit(out))
    };
    if roots.is_empty() {
        let step = plan.batch_size.max(1);
        while sent < total {
            let n = step.min(total - sent);
            if !send(&empty, n, &mut sent)? {
                return Ok((false, rows_out));
            }
        }
        return all_sent(&mut list, sent, total).map(|()| (true, rows_out));
    }
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(data, reader_meta)
        .with_batch_size(plan.batch_size)
        .with_row_groups(row_groups.to_vec())
        .with_projection(ProjectionMask::roots(descr, roots));
    if let Some(selection) = selection {
        builder = in_runs(builder, selection);
    }
    for batch in builder.build()? {
        let batch = batch?;
        if !send(&batch, batch.num_rows(), &mut sent)? {
            return Ok((false, rows_out));
        }
    }
    all_sent(&mut list, sent, total).map(|()| (true, rows_out))
}

/// `selection` narrowed to the rows `filter` matches: its columns decoded over the selection
/// (from the turn's bytes, already fetched), the filter evaluated on them, the matches mapped
/// back onto the row groups' rows.
fn refine_selection(
    filter: &Resolved,
    selection: &RowSelection,
    (data, reader_meta): (&SparseFile, &ArrowReaderMetadata),
    row_groups: &[usize],
    (filter_cols, descr, files): (&[Column], &SchemaDescriptor, &FileColumns),
    batch_size: usize,
) -> Result<RowSelection> {
    let (roots, pos) = positions(filter_cols, files);
    let builder =
        ParquetRecordBatchReaderBuilder::new_with_metadata(data.clone(), reader_meta.clone())
            .with_batch_size(batch_size)
            .with_row_groups(row_groups.to_vec())
            .with_projection(ProjectionMask::roots(descr, roots));
    let batches = in_runs(builder, selection.clone()).build()?;
    let mut hits = Vec::new();
    for batch in batches {
        let batch = batch?;
        hits.push(filter.evaluate(batch.num_rows(), |c| {
            let p = pos.iter().find(|(col, _)| *col == c)?.1;
            Some(batch.column(p).clone())
        })?);
    }
    let matched = RowSelection::from_filters(&hits);
    if matched.row_count() + matched.skipped_row_count() != selection.row_count() {
        return Err(Error::internal(
            "a row filter's columns decoded to fewer rows than their page selection",
        ));
    }
    Ok(selection.and_then(&matched))
}

/// `builder` reading `selection`'s rows as runs of rows, never as a boolean mask.
///
/// parquet-rs 58's synchronous reader turns a selection of short runs (under 32 rows on
/// average, as a row filter's scattered matches make them, inside the reader or from
/// [`refine_selection`]) into a mask, and a mask decodes every page between a batch's first
/// and last rows, the pages the selection skips too. A turn fetched only its selected pages,
/// so such a read failed ("bytes … were not fetched"). parquet-rs's async reader keeps a
/// mask off pages it did not load; its sync reader does not (apache/arrow-rs#10648, open).
fn in_runs(
    builder: ParquetRecordBatchReaderBuilder<SparseFile>,
    selection: RowSelection,
) -> ParquetRecordBatchReaderBuilder<SparseFile> {
    builder
        .with_row_selection(selection)
        .with_row_selection_policy(RowSelectionPolicy::Selectors)
}

/// Leaves of `columns` in the file, if it has them all.
fn leaves_of(columns: &[Column], files: &FileColumns) -> Option<Vec<usize>> {
    columns.iter().map(|c| files.leaf[c.index()]).collect()
}

/// `columns` (of `schema`, none of them `embedding`; file leaves `leaves`) of `row_groups` of
/// a small file through this crate's small-file decoder ([`narrow::decode`]; `constant` as
/// there); `Ok(None)` when a chunk is not one it reads. In verify mode checked against
/// parquet-rs's reader, which reads every column from the file (so a partition value that
/// is not the column's is caught).
fn narrow_checked(
    plan: &ReadPlan,
    (data, reader_meta): (&SparseFile, &ArrowReaderMetadata),
    row_groups: &[usize],
    (columns, leaves, schema): (&[Column], &[usize], &ArrowSchemaRef),
    (descr, files): (&SchemaDescriptor, &FileColumns),
    constant: Option<(usize, &str)>,
) -> Result<Option<RecordBatch>> {
    let Some(batch) = narrow::decode(
        data,
        reader_meta.metadata(),
        (row_groups, leaves),
        schema,
        constant,
    )?
    else {
        return Ok(None);
    };
    if plan.decode == Mode::Verify {
        let (roots, pos) = positions(columns, files);
        let theirs =
            ParquetRecordBatchReaderBuilder::new_with_metadata(data.clone(), reader_meta.clone())
                .with_batch_size(plan.batch_size)
                .with_row_groups(row_groups.to_vec())
                .with_projection(ProjectionMask::roots(descr, roots))
                .build()?
                .map(|b| conform_to(columns, schema, &pos, &b?, None))
                .collect::<Result<Vec<_>>>()?;
        let theirs = arrow_select::concat::concat_batches(schema, &theirs)?;
        if theirs != batch {
            return Err(Error::internal(
                "the small-file decoder disagrees with parquet-rs \
                 (SALES_HISTORY_EMBEDDING_DECODE=verify)",
            ));
        }
    }
    Ok(Some(batch))
}

/// Sends a turn of a small file read whole: `narrow`, its other output columns (decoded by
/// the small-file decoder), with the rows of `lists` as its `embedding` column, a batch's
/// rows at a time (the embedding arrays were decoded in arrays of a batch's rows, so each
/// take is a slice of one, not a copy of the turn into one buffer).
fn send_narrow_with_embedding(
    plan: &ReadPlan,
    narrow: &RecordBatch,
    mut lists: Lists,
    emit: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<(bool, usize)> {
    let rows = narrow.num_rows();
    if lists.len() != rows {
        return Err(Error::Parquet(parquet::errors::ParquetError::General(
            format!(
                "the embedding column holds {} rows, the other columns {rows}",
                lists.len()
            ),
        )));
    }
    let step = plan.batch_size.max(1);
    for at in (0..rows).step_by(step) {
        let n = step.min(rows - at);
        let part = narrow.slice(at, n);
        let mut others = part.columns().iter();
        let embedding = lists.take(n)?;
        let arrays = plan
            .output
            .iter()
            .map(|c| match c {
                Column::Embedding => Some(embedding.clone()),
                _ => others.next().cloned(),
            })
            .collect::<Option<Vec<ArrayRef>>>()
            .ok_or_else(|| Error::internal("the small-file decoder lost a column"))?;
        if !emit(RecordBatch::try_new(plan.schema.clone(), arrays)?) {
            return Ok((false, at));
        }
    }
    all_sent(&mut lists, rows, rows)?;
    Ok((true, rows))
}

/// Checks that the other columns' `sent` rows were all of `list`'s `total` (a streamed list
/// is read to its end: its decoder checks the row groups' row counts there).
fn all_sent(list: &mut Lists, sent: usize, total: usize) -> Result<()> {
    if sent != total || !list.finished()? {
        return Err(Error::Parquet(parquet::errors::ParquetError::General(
            "the embedding column holds more rows than the other columns".into(),
        )));
    }
    Ok(())
}

/// Arrays of the `embedding` column as they are decoded.
type ListSource = Box<dyn Iterator<Item = Result<arrow_array::ListArray>> + Send>;

/// A turn's decoded `embedding` column, as consecutive arrays, handed out in rows: decoded
/// already, or drawn from a [`ListSource`] as rows are asked for.
struct Lists {
    arrays: std::collections::VecDeque<arrow_array::ListArray>,
    source: Option<ListSource>,
    data_type: arrow_schema::DataType,
    /// Rows of the first array already handed out.
    at: usize,
    len: usize,
}

impl Lists {
    /// `arrays` of `field`'s type.
    fn new(arrays: Vec<arrow_array::ListArray>, field: &arrow_schema::Field) -> Self {
        let len = arrays.iter().map(|a| a.len()).sum();
        Lists {
            arrays: arrays.into(),
            source: None,
            data_type: field.data_type().clone(),
            at: 0,
            len,
        }
    }

    /// The `rows` rows `source` decodes, of `field`'s type.
    fn streamed(source: ListSource, rows: usize, field: &arrow_schema::Field) -> Self {
        Lists {
            arrays: Default::default(),
            source: Some(source),
            data_type: field.data_type().clone(),
            at: 0,
            len: rows,
        }
    }

    /// Whether every row was handed out (a source must then be at its end).
    fn finished(&mut self) -> Result<bool> {
        if self.at > 0 || self.arrays.iter().any(|a| !a.is_empty()) {
            return Ok(false);
        }
        self.arrays.clear();
        while let Some(next) = self.source.as_mut().and_then(Iterator::next) {
            if !next?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The next `n` rows: a slice when one array holds them (batches and arrays are cut
    /// alike), else the pieces concatenated.
    fn take(&mut self, n: usize) -> Result<ArrayRef> {
        let mut pieces: Vec<ArrayRef> = Vec::new();
        let mut want = n;
        while want > 0 {
            if self.arrays.is_empty()
                && let Some(next) = self.source.as_mut().and_then(Iterator::next)
            {
                self.arrays.push_back(next?);
                continue;
            }
            let Some(front) = self.arrays.front() else {
                return Err(Error::Parquet(parquet::errors::ParquetError::General(
                    "the embedding column holds fewer rows than the other columns".into(),
                )));
            };
            if front.is_empty() {
                self.arrays.pop_front();
                continue;
            }
            let take = want.min(front.len() - self.at);
            pieces.push(Arc::new(front.slice(self.at, take)));
            self.at += take;
            want -= take;
            if self.at == front.len() {
                self.arrays.pop_front();
                self.at = 0;
            }
        }
        match pieces.len() {
            0 => Ok(arrow_array::new_empty_array(&self.data_type)),
            1 => Ok(pieces.swap_remove(0)),
            _ => {
                let refs: Vec<&dyn Array> = pieces.iter().map(|p| p.as_ref()).collect();
                Ok(arrow_select::concat::concat(&refs)?)
            }
        }
    }
}

/// A lazy turn's `embedding` column, an array at a time: this crate's decoder
/// ([`embedding::ChunkStream`]) and, should it meet a page it does not read (or a shape it
/// does not), parquet-rs's reader for the rows not yet handed out. (Without an offset index
/// that reader cannot skip pages unread: it reads the column chunk again from its start and
/// decodes the rows before the switch to skip them. A switch after the first page happens
/// only with pages that change shape mid-column, such as a null element late in a chunk.)
///
/// Counted once: as a fallback when parquet-rs takes over, else as a fast read at the end
/// or, for a read stopped early (the receiver gone), when it is dropped.
struct StreamedLists {
    ours: Option<embedding::ChunkStream<SparseFile>>,
    /// parquet-rs's reader, once ours gave up.
    rest: Option<ListSource>,
    /// Makes parquet-rs's reader of the rows after the first `skip`.
    parquet: ParquetLists,
    counters: Arc<Counters>,
    /// Rows handed out.
    rows: usize,
    /// Whether the read was counted (a fast read, or a fallback).
    counted: bool,
}

/// parquet-rs's reader of a turn's `embedding` column after its first `skip` rows.
type ParquetLists = Box<dyn Fn(usize) -> Result<ListSource> + Send>;

impl Drop for StreamedLists {
    fn drop(&mut self) {
        // A read stopped before its end that never fell back was ours.
        if !self.counted && self.rows > 0 {
            Counters::add(&self.counters.embedding_fast_reads, 1);
        }
    }
}

impl StreamedLists {
    /// Our decoder over leaf `leaf` of `data`'s `row_groups` (arrays of `batch_size` rows),
    /// `parquet` for what it does not read.
    fn new(
        data: &SparseFile,
        metadata: &ParquetMetaData,
        row_groups: &[usize],
        (leaf, field): (usize, &arrow_schema::FieldRef),
        (batch_size, counters): (usize, &Arc<Counters>),
        parquet: ParquetLists,
    ) -> Result<Self> {
        let ours =
            embedding::ChunkStream::new(data, metadata, row_groups, leaf, field, batch_size)?;
        Ok(StreamedLists {
            ours,
            rest: None,
            parquet,
            counters: counters.clone(),
            rows: 0,
            counted: false,
        })
    }

    /// The next array, and whether this crate's decoder made it.
    fn next_array(&mut self) -> Result<Option<(arrow_array::ListArray, bool)>> {
        if let Some(ours) = self.ours.as_mut() {
            match ours.next_array()? {
                embedding::Next::Array(a) => {
                    self.rows += a.len();
                    return Ok(Some((a, true)));
                }
                embedding::Next::End => {
                    if !self.counted {
                        self.counted = true;
                        Counters::add(&self.counters.embedding_fast_reads, 1);
                    }
                    return Ok(None);
                }
                embedding::Next::Unreadable => self.ours = None,
            }
        }
        if self.rest.is_none() {
            // The rows after those handed out, through parquet-rs.
            if !self.counted {
                self.counted = true;
                Counters::add(&self.counters.embedding_fallbacks, 1);
            }
            self.rest = Some((self.parquet)(self.rows)?);
        }
        match self.rest.as_mut().and_then(Iterator::next) {
            Some(a) => {
                let a = a?;
                self.rows += a.len();
                Ok(Some((a, false)))
            }
            None => Ok(None),
        }
    }
}

impl Iterator for StreamedLists {
    type Item = Result<arrow_array::ListArray>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_array().map(|a| a.map(|(a, _)| a)).transpose()
    }
}

/// A [`ParquetLists`] over `data`'s `row_groups`, arrays of `field`'s type.
fn parquet_lists_of(
    data: &SparseFile,
    reader_meta: &ArrowReaderMetadata,
    row_groups: &[usize],
    (descr, files): (&Arc<SchemaDescriptor>, &FileColumns),
    field: &arrow_schema::FieldRef,
    batch_size: usize,
) -> ParquetLists {
    let (data, reader_meta, row_groups) = (data.clone(), reader_meta.clone(), row_groups.to_vec());
    let (descr, files, field) = (descr.clone(), files.clone(), field.clone());
    Box::new(move |skip| {
        let selection = (skip > 0).then(|| {
            let rows: usize = row_groups
                .iter()
                .map(|&rg| group_rows(reader_meta.metadata(), rg))
                .sum();
            RowSelection::from(vec![
                parquet::arrow::arrow_reader::RowSelector::skip(skip),
                parquet::arrow::arrow_reader::RowSelector::select(rows.saturating_sub(skip)),
            ])
        });
        let reader = embedding_reader(
            &data,
            &reader_meta,
            &row_groups,
            selection,
            (&descr, &files),
            batch_size,
        )?
        .ok_or_else(|| Error::internal("a file without an embedding column"))?;
        let field = field.clone();
        Ok(Box::new(reader.map(move |batch| {
            let column = batch?.column(0).clone();
            let column = crate::batch::relabel_array(&column, &field)?;
            column
                .as_any()
                .downcast_ref::<arrow_array::ListArray>()
                .cloned()
                .ok_or_else(|| Error::internal("parquet-rs read the embedding column as no list"))
        })) as ListSource)
    })
}

/// parquet-rs's reader of the `embedding` column alone of `row_groups` (with `selection`);
/// `None` when the file has no such column.
fn embedding_reader(
    data: &SparseFile,
    reader_meta: &ArrowReaderMetadata,
    row_groups: &[usize],
    selection: Option<RowSelection>,
    (descr, files): (&SchemaDescriptor, &FileColumns),
    batch_size: usize,
) -> Result<Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>> {
    let Some(root) = files.root(Column::Embedding) else {
        return Ok(None);
    };
    let mut builder =
        ParquetRecordBatchReaderBuilder::new_with_metadata(data.clone(), reader_meta.clone())
            .with_batch_size(batch_size)
            .with_row_groups(row_groups.to_vec())
            .with_projection(ProjectionMask::roots(descr, [root]));
    if let Some(selection) = selection {
        builder = in_runs(builder, selection);
    }
    Ok(Some(builder.build()?))
}

/// Our arrays checked against parquet-rs's as they come (`SALES_HISTORY_EMBEDDING_DECODE=
/// verify`): a disagreement is an internal error, as [`verify`] makes it.
struct Verified {
    ours: StreamedLists,
    theirs: Lists,
}

impl Verified {
    fn next_array(&mut self) -> Result<Option<arrow_array::ListArray>> {
        let Some((ours, decoded_here)) = self.ours.next_array()? else {
            return if self.theirs.finished()? {
                Ok(None)
            } else {
                Err(disagree())
            };
        };
        let theirs = self.theirs.take(ours.len())?;
        // After a fallback both sides are parquet-rs's: nothing to check.
        if !decoded_here {
            return Ok(Some(ours));
        }
        match theirs.as_any().downcast_ref::<arrow_array::ListArray>() {
            Some(theirs) if embedding::same_lists(&ours, theirs) => Ok(Some(ours)),
            _ => Err(disagree()),
        }
    }
}

impl Iterator for Verified {
    type Item = Result<arrow_array::ListArray>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_array().transpose()
    }
}

fn disagree() -> Error {
    Error::internal(
        "the embedding decoder disagrees with parquet-rs (SALES_HISTORY_EMBEDDING_DECODE=verify)",
    )
}

/// One turn's bytes and what to read of them, for [`send_with_embedding`].
struct Turned<'a> {
    data: SparseFile,
    reader_meta: ArrowReaderMetadata,
    row_groups: &'a [usize],
    /// The page-index selection (the embedding list holds only these rows).
    selection: Option<RowSelection>,
    /// The row filter and the columns it reads, applied to each assembled batch.
    filter: Option<(Resolved, Vec<Column>)>,
}

/// The `verify` mode: parquet-rs's decode of the turn's embedding column must equal ours.
fn verify(
    data: &SparseFile,
    reader_meta: &ArrowReaderMetadata,
    row_groups: &[usize],
    selection: Option<&RowSelection>,
    descr: &SchemaDescriptor,
    files: &FileColumns,
    ours: &[arrow_array::ListArray],
) -> Result<()> {
    let Some(reader) = embedding_reader(
        data,
        reader_meta,
        row_groups,
        selection.cloned(),
        (descr, files),
        super::DEFAULT_EMBEDDING_BATCH_SIZE,
    )?
    else {
        return Ok(());
    };
    let arrays = reader
        .map(|b| b.map(|b| b.column(0).clone()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let refs: Vec<&dyn arrow_array::Array> = arrays.iter().map(|a| a.as_ref()).collect();
    let ours_refs: Vec<&dyn arrow_array::Array> = ours.iter().map(|a| a as _).collect();
    let ours = arrow_select::concat::concat(&ours_refs)?;
    let Some(ours) = ours.as_any().downcast_ref::<arrow_array::ListArray>() else {
        return Err(Error::internal("the embedding decoder made no list"));
    };
    let same = if refs.is_empty() {
        ours.is_empty()
    } else {
        let all = arrow_select::concat::concat(&refs)?;
        all.as_any()
            .downcast_ref::<arrow_array::ListArray>()
            .is_some_and(|theirs| embedding::same_lists(ours, theirs))
    };
    if same { Ok(()) } else { Err(disagree()) }
}

#[cfg(test)]
mod path_tests {
    use super::local_path;

    #[test]
    fn local_paths_come_from_file_urls() {
        let p = |s: &str| local_path(s).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(
            p("file:///tmp/w/a.parquet").as_deref(),
            Some("/tmp/w/a.parquet")
        );
        assert_eq!(
            p("file:///tmp/a%20b.parquet").as_deref(),
            Some("/tmp/a b.parquet")
        );
        assert_eq!(
            p("file:/tmp/w/a.parquet").as_deref(),
            Some("/tmp/w/a.parquet")
        );
        assert_eq!(p("s3://bucket/w/a.parquet"), None);
        assert_eq!(p("file://host/a.parquet"), None);
    }
}

#[cfg(test)]
mod footer_tests {
    use super::*;
    use crate::scan::{EmbeddingDecoder, read_rows_at};

    /// Writes `rows` rows (16-dim embeddings) as one data file in `dir`, with the crate's
    /// writer settings: (its `file://` location, its size).
    fn data_file(dir: &std::path::Path, name: &str, rows: usize) -> (String, u64) {
        let props = crate::parquet_props::writer_properties(&Default::default()).unwrap();
        data_file_with(dir, name, (rows, 16), props)
    }

    /// [`data_file`] of `rows` rows with `dim`-long embeddings, written with `props`.
    fn data_file_with(
        dir: &std::path::Path,
        name: &str,
        (rows, dim): (usize, usize),
        props: parquet::file::properties::WriterProperties,
    ) -> (String, u64) {
        let records = crate::record::test_rows(rows, dim);
        let batch = crate::SaleRecord::to_record_batch(&records).unwrap();
        let path = dir.join(name);
        let file = std::fs::File::create(&path).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        (format!("file://{}", path.display()), size)
    }

    fn products(batches: &[RecordBatch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| crate::batch::batch_to_records(b).unwrap())
            .map(|r| r.product_id)
            .collect()
    }

    #[test]
    fn an_offset_index_that_does_not_fit_its_chunks_is_not_used() {
        use parquet::file::metadata::ParquetMetaDataBuilder;
        let dir = tempfile::tempdir().unwrap();
        let (_, size) = data_file(dir.path(), "a.parquet", 40);
        let data = bytes::Bytes::from(std::fs::read(dir.path().join("a.parquet")).unwrap());
        let plain = ParquetMetaDataReader::new()
            .parse_and_finish(&data)
            .unwrap();
        let start = page_index_start(&plain).unwrap();
        let indexed = with_page_index(&plain, &data.slice(start as usize..), size, false).unwrap();
        assert!(offsets_fit(&indexed));
        let index = indexed.offset_index().unwrap().clone();
        let spoiled =
            |change: &dyn Fn(&mut parquet::file::page_index::offset_index::OffsetIndexMetaData)| {
                let mut index = index.clone();
                change(&mut index[0][1]);
                ParquetMetaDataBuilder::new_from_metadata(indexed.clone())
                    .set_offset_index(Some(index))
                    .build()
            };
        for (what, bad) in [
            (
                "past the file",
                spoiled(&|c| c.page_locations[0].offset = i64::MAX - 1),
            ),
            ("negative", spoiled(&|c| c.page_locations[0].offset = -5)),
            (
                "before its chunk",
                spoiled(&|c| c.page_locations[0].offset = 0),
            ),
            ("no pages", spoiled(&|c| c.page_locations.clear())),
            (
                "2 GiB long",
                spoiled(&|c| c.page_locations[0].compressed_page_size = i32::MAX),
            ),
            (
                "empty page",
                spoiled(&|c| c.page_locations[0].compressed_page_size = 0),
            ),
        ] {
            assert!(!offsets_fit(&bad), "{what}");
        }
    }

    #[tokio::test]
    async fn a_kept_footer_replaces_the_footer_reads_and_the_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        let io = FileIO::new_with_fs();
        let (a, a_size) = data_file(dir.path(), "a.parquet", 300);
        let footers = Arc::new(FooterCache::new(DEFAULT_FOOTER_CACHE_BYTES));
        let auto = EmbeddingDecoder::Auto;
        let first = read_rows_at(&io, &a, a_size, &[3, 200], auto, &footers)
            .await
            .unwrap();
        assert_eq!(products(&first), ["p3", "p200"]);
        let (held, bytes) = (footers.len(), footers.bytes());
        assert_eq!(held, 1);
        // The footer's bytes spoiled on disk: a read with the kept footer never looks at
        // them and returns the same rows; a handle without it fails.
        let path = dir.path().join("a.parquet");
        let mut raw = std::fs::read(&path).unwrap();
        let n = raw.len();
        raw[n - 8..n - 4].copy_from_slice(&[0xff; 4]);
        std::fs::write(&path, &raw).unwrap();
        let again = read_rows_at(&io, &a, a_size, &[3, 200], auto, &footers)
            .await
            .unwrap();
        assert_eq!(products(&again), ["p3", "p200"]);
        assert_eq!(again, first);
        let fresh = Arc::new(FooterCache::new(DEFAULT_FOOTER_CACHE_BYTES));
        assert!(
            read_rows_at(&io, &a, a_size, &[3], auto, &fresh)
                .await
                .is_err()
        );
        // A cap of one footer: the next file's footer evicts the least recently used one.
        let one = Arc::new(FooterCache::new((bytes + bytes / 2) as u64));
        let (b, b_size) = data_file(dir.path(), "b.parquet", 300);
        let (c, c_size) = data_file(dir.path(), "c.parquet", 300);
        read_rows_at(&io, &b, b_size, &[1], auto, &one)
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        read_rows_at(&io, &c, c_size, &[1], auto, &one)
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert!(one.bytes() <= bytes + bytes / 2);
        assert!(one.get(c.as_str()).is_some_and(|f| f.size == c_size));
        assert!(one.get(b.as_str()).is_none());
    }

    /// Rows by position (a similarity search's candidates) of a file without an offset
    /// index whose group exceeds the read budget: read lazily, in windows, not fetched whole.
    #[tokio::test]
    async fn rows_by_position_of_a_large_group_without_an_offset_index_are_read_lazily() {
        use crate::scan::metrics::Counters;
        use crate::scan::read_ranges_of;
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let props = crate::parquet_props::writer_properties(&Default::default())
            .unwrap()
            .into_builder()
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .build();
        let (location, size) =
            data_file_with(dir.path(), "other-engine.parquet", (8_000, 32), props);
        let data =
            bytes::Bytes::from(std::fs::read(dir.path().join("other-engine.parquet")).unwrap());
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&data)
            .unwrap();
        assert!(meta.offset_index().is_none() && meta.num_row_groups() == 1);
        assert!(size > 256 << 10, "{size}");
        let io = FileIO::new_with_fs();
        let wanted = vec![5..6, 7_900..7_902];
        for (budget, lazy) in [(crate::DEFAULT_READ_BUFFER_BYTES, 0), (64 << 10, 1)] {
            let counters = Arc::new(Counters::default());
            let got = read_ranges_of(
                &io,
                &location,
                size,
                wanted.clone(),
                EmbeddingDecoder::Auto,
                None,
                (budget, counters.clone()),
            )
            .await
            .unwrap();
            assert_eq!(products(&got), ["p5", "p7900", "p7901"], "budget {budget}");
            assert_eq!(
                counters.lazy_reads.load(Ordering::Relaxed),
                lazy,
                "budget {budget}"
            );
            if lazy == 1 {
                // Many window-sized reads, not one of the group.
                let requests = counters.requests.load(Ordering::Relaxed);
                assert!(requests > 4, "{requests} requests");
            }
        }
    }
}

#[cfg(test)]
mod lazy_tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use arrow_array::{Float64Array, Int64Array, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// A fetch over `data` that records each range it is asked for.
    fn recording(data: bytes::Bytes, log: Arc<Mutex<Vec<Range<u64>>>>) -> FetchRange {
        Box::new(move |r: Range<u64>| {
            log.lock().unwrap().push(r.clone());
            Ok(data.slice(r.start as usize..r.end as usize))
        })
    }

    #[test]
    fn windows_serve_what_follows_and_are_capped() {
        use std::io::Read;
        let data = bytes::Bytes::from((0..8_000_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let log = Arc::new(Mutex::new(Vec::new()));
        let lazy = Arc::new(Lazy::new(0, recording(data.clone(), log.clone())));
        assert_eq!(lazy.window, 64 << 10);
        let quarter = 16 << 10;
        let len = data.len() as u64;
        let reader = |pos| LazyRead {
            lazy: lazy.clone(),
            pos,
            buf: bytes::Bytes::new(),
            file_len: len,
        };
        // A header read, then its page inside the same window: one fetch.
        let head = lazy.window_at(1000, len).unwrap();
        assert_eq!(head.len(), 64 << 10);
        assert_eq!(head[..], data[1000..1000 + (64 << 10)]);
        assert_eq!(lazy.bytes(1100, 5000, len).unwrap()[..], data[1100..6100]);
        assert_eq!(log.lock().unwrap().len(), 1);
        // A header near the window's end reads on into a fresh window.
        let late = 1000 + (64 << 10) - 100;
        let mut header = vec![0u8; 300];
        reader(late).read_exact(&mut header).unwrap();
        assert_eq!(header[..], data[late as usize..late as usize + 300]);
        assert_eq!(log.lock().unwrap().len(), 2);
        // A page larger than a window is fetched in one read with a quarter window after
        // it, which serves the next header; only that quarter window is kept.
        assert_eq!(
            lazy.bytes(200_000, 300_000, len).unwrap()[..],
            data[200_000..500_000]
        );
        assert_eq!(
            log.lock().unwrap().last(),
            Some(&(200_000..500_000 + quarter))
        );
        assert_eq!(
            lazy.window_at(500_000, len).unwrap().len(),
            quarter as usize
        );
        assert!(
            lazy.recent
                .lock()
                .unwrap()
                .iter()
                .all(|(_, b)| b.len() <= 64 << 10)
        );
        // A page that starts in its header's window: only its rest is fetched.
        lazy.window_at(600_000, len).unwrap();
        let page = lazy.bytes(600_100, 100_000, len).unwrap();
        assert_eq!(page[..], data[600_100..700_100]);
        let rest = 600_000 + (64 << 10)..700_100 + quarter;
        assert_eq!(log.lock().unwrap().last(), Some(&rest));
        // The last window is clipped at the end of the file; past it is an error (or the
        // end of a reader); a read of nothing fetches nothing.
        assert_eq!(lazy.window_at(len - 10, len).unwrap().len(), 10);
        assert!(lazy.bytes(len - 10, 11, len).is_err());
        assert!(lazy.window_at(len, len).is_err());
        assert_eq!(reader(len).read(&mut header).unwrap(), 0);
        let file = SparseFile::new(len, Vec::new())
            .lazy(Lazy::new(0, recording(data.clone(), log.clone())));
        let fetched = log.lock().unwrap().len();
        assert!(
            parquet::file::reader::ChunkReader::get_bytes(&file, 5, 0)
                .unwrap()
                .is_empty()
        );
        assert_eq!(log.lock().unwrap().len(), fetched);
        // Only the last LAZY_WINDOWS_KEPT windows stay.
        for i in 0..2 * LAZY_WINDOWS_KEPT as u64 {
            lazy.window_at(1_000_000 + i * 70_000, len).unwrap();
        }
        assert_eq!(lazy.recent.lock().unwrap().len(), LAZY_WINDOWS_KEPT);
        let fetched = log.lock().unwrap().len();
        lazy.bytes(1000, 10, len).unwrap();
        assert_eq!(
            log.lock().unwrap().len(),
            fetched + 1,
            "an evicted window is fetched again"
        );
        // A failed fetch is an error, not a panic.
        let failing = Lazy::new(0, Box::new(|_| Err(std::io::Error::other("gone"))));
        assert!(failing.bytes(0, 10, 100).is_err());
        assert!(failing.window_at(0, 100).is_err());
    }

    #[test]
    fn bytes_no_part_holds_are_an_error() {
        let file = SparseFile::new(100, vec![(10, bytes::Bytes::from_static(&[1; 10]))]);
        let get = |f: &SparseFile, s, n| parquet::file::reader::ChunkReader::get_bytes(f, s, n);
        assert_eq!(get(&file, 12, 3).unwrap()[..], [1, 1, 1]);
        // Across a part and a gap: an error (a page not fetched is never read as zeros)...
        assert!(get(&file, 15, 10).is_err());
        assert!(get(&file, 50, 10).is_err());
        // ...but zeros in the gap for the page index loader's read over all indexes.
        let loader = file.index_loader();
        assert_eq!(get(&loader, 12, 3).unwrap()[..], [1, 1, 1]);
        assert_eq!(
            get(&loader, 15, 10).unwrap()[..],
            [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
        );
        assert!(get(&loader, 50, 10).is_err());
    }

    #[test]
    fn a_lazy_file_reads_as_the_whole_file_does() {
        // One row group of many pages and no page index.
        let n = 20_000;
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 / 3.0),
                )) as _,
            ),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_data_page_row_count_limit(500)
            .set_write_batch_size(500)
            .set_offset_index_disabled(true)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
            .build();
        let data = parquet_bytes(&batch, props);
        let whole = parquet_rs_batches(&data);
        let meta = ArrowReaderMetadata::load(&data, ArrowReaderOptions::new()).unwrap();
        assert!(meta.metadata().offset_index().is_none());
        let log = Arc::new(Mutex::new(Vec::new()));
        let file = SparseFile::new(data.len() as u64, Vec::new())
            .lazy(Lazy::new(0, recording(data.clone(), log.clone())));
        let lazy: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .build()
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(lazy, whole);
        let log = log.lock().unwrap();
        let largest = log.iter().map(|r| r.end - r.start).max().unwrap();
        assert!(log.len() > 2, "fetched in pieces: {log:?}");
        assert!(largest <= 64 << 10, "at most a window at a time: {largest}");
        let counted = AtomicU64::new(0);
        for r in log.iter() {
            counted.fetch_add(r.end - r.start, Ordering::Relaxed);
        }
        assert!(
            counted.load(Ordering::Relaxed) < 2 * data.len() as u64,
            "windows overlap by at most a window per page"
        );
    }

    /// A file of `n` rows, `dim`-long embeddings (optional elements, one null element at
    /// row `null_at`), BYTE_STREAM_SPLIT without dictionary, pages of 50 rows, one row group
    /// and no page index: what a lazy turn reads.
    fn embedding_file(n: usize, dim: usize, null_at: Option<usize>) -> bytes::Bytes {
        use arrow_array::builder::{Float64Builder, ListBuilder};
        let element = Arc::new(arrow_schema::Field::new(
            "element",
            arrow_schema::DataType::Float64,
            true,
        ));
        let mut lists = ListBuilder::new(Float64Builder::new()).with_field(element);
        for r in 0..n {
            for j in 0..dim {
                if Some(r) == null_at && j == 1 {
                    lists.values().append_null();
                } else {
                    lists.values().append_value((r * dim + j) as f64 / 7.0);
                }
            }
            lists.append(r % 9 != 4);
        }
        let batch = RecordBatch::try_from_iter([
            (
                "product_id",
                Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
            ),
            ("embedding", Arc::new(lists.finish()) as _),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_data_page_row_count_limit(50)
            .set_write_batch_size(50)
            .set_offset_index_disabled(true)
            .set_dictionary_enabled(false)
            .set_column_encoding(
                parquet::schema::types::ColumnPath::from(vec![
                    "embedding".to_string(),
                    "list".to_string(),
                    "element".to_string(),
                ]),
                parquet::basic::Encoding::BYTE_STREAM_SPLIT,
            )
            .build();
        parquet_bytes(&batch, props)
    }

    /// The file's rows as parquet-rs reads them.
    fn parquet_rs_batches(data: &bytes::Bytes) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(data.clone())
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    /// `batch` as a Parquet file written with `props`, one row group.
    fn parquet_bytes(batch: &RecordBatch, props: WriterProperties) -> bytes::Bytes {
        let mut buf = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        bytes::Bytes::from(buf)
    }

    /// The ranges a recording fetch was asked for.
    type ReadLog = Arc<Mutex<Vec<Range<u64>>>>;

    /// The file's embedding column as parquet-rs reads it.
    fn parquet_rs_embeddings(data: &bytes::Bytes) -> arrow_array::ListArray {
        let batches = parquet_rs_batches(data);
        let columns: Vec<&dyn Array> = batches.iter().map(|b| b.column(1).as_ref()).collect();
        let all = arrow_select::concat::concat(&columns).unwrap();
        all.as_any()
            .downcast_ref::<arrow_array::ListArray>()
            .unwrap()
            .clone()
    }

    /// The embedding column of `data` streamed through a lazy file, as [`read_file`] streams a
    /// lazy turn's; the counters it leaves and the reads it made.
    fn streamed(data: &bytes::Bytes, batch_size: usize) -> (StreamedLists, Arc<Counters>, ReadLog) {
        let meta = ArrowReaderMetadata::load(data, ArrowReaderOptions::new()).unwrap();
        assert!(meta.metadata().offset_index().is_none());
        let log = Arc::new(Mutex::new(Vec::new()));
        let file = SparseFile::new(data.len() as u64, Vec::new())
            .lazy(Lazy::new(0, recording(data.clone(), log.clone())));
        let descr = meta.metadata().file_metadata().schema_descr_ptr();
        let files = FileColumns::of(&descr);
        let leaf = files.leaf[Column::Embedding.index()].unwrap();
        let field = meta.schema().field_with_name("embedding").unwrap().clone();
        let counters = Arc::new(Counters::default());
        let field = Arc::new(field);
        let parquet = parquet_lists_of(&file, &meta, &[0], (&descr, &files), &field, batch_size);
        let stream = StreamedLists::new(
            &file,
            meta.metadata(),
            &[0],
            (leaf, &field),
            (batch_size, &counters),
            parquet,
        )
        .unwrap();
        (stream, counters, log)
    }

    fn concat_lists(arrays: &[arrow_array::ListArray]) -> arrow_array::ListArray {
        let refs: Vec<&dyn Array> = arrays.iter().map(|a| a as _).collect();
        let all = arrow_select::concat::concat(&refs).unwrap();
        all.as_any()
            .downcast_ref::<arrow_array::ListArray>()
            .unwrap()
            .clone()
    }

    /// A lazy turn's embedding column goes through this crate's decoder an array at a time,
    /// reading the file in pieces as the arrays are asked for.
    #[test]
    fn a_lazy_turn_streams_the_embedding_through_our_decoder() {
        let data = embedding_file(1_000, 16, None);
        let (mut stream, counters, log) = streamed(&data, 128);
        let first = stream.next().unwrap().unwrap();
        assert_eq!(first.len(), 128);
        let reads_after_first = log.lock().unwrap().len();
        let mut arrays = vec![first];
        for a in stream.by_ref() {
            arrays.push(a.unwrap());
        }
        assert!(arrays[..arrays.len() - 1].iter().all(|a| a.len() == 128));
        assert!(embedding::same_lists(
            &concat_lists(&arrays),
            &parquet_rs_embeddings(&data)
        ));
        assert!(
            log.lock().unwrap().len() > reads_after_first,
            "pages were read as arrays were asked for"
        );
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(get(&counters.embedding_fast_reads), 1);
        assert_eq!(get(&counters.embedding_fallbacks), 0);
        // A read stopped early (its receiver gone) is counted once, when dropped.
        let (mut stream, counters, _) = streamed(&data, 128);
        stream.next().unwrap().unwrap();
        assert_eq!(get(&counters.embedding_fast_reads), 0);
        drop(stream);
        assert_eq!(get(&counters.embedding_fast_reads), 1);
    }

    /// A page this decoder does not read (a null element) after rows were handed out: the
    /// rest comes from parquet-rs's reader, the rows are the same, and the read is counted
    /// as a fallback.
    #[test]
    fn a_page_our_decoder_cannot_read_hands_the_rest_to_parquet_rs() {
        let data = embedding_file(1_000, 8, Some(700));
        let (mut stream, counters, _) = streamed(&data, 100);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut arrays = Vec::new();
        for _ in 0..3 {
            arrays.push(stream.next().unwrap().unwrap());
        }
        assert_eq!(
            get(&counters.embedding_fallbacks),
            0,
            "ours decoded the first rows"
        );
        for a in stream.by_ref() {
            arrays.push(a.unwrap());
        }
        assert_eq!(get(&counters.embedding_fallbacks), 1);
        assert_eq!(get(&counters.embedding_fast_reads), 0);
        let ours = concat_lists(&arrays);
        let theirs = parquet_rs_embeddings(&data);
        assert_eq!(ours.len(), 1_000);
        assert!(ours.value(700).is_null(1), "the null element is kept");
        // Row by row (logically: what is under a null element or list is not compared).
        assert_eq!(ours, theirs);
        // `verify` mode checks what ours decoded and passes what parquet-rs read after.
        let field = Arc::new(
            ArrowReaderMetadata::load(&data, ArrowReaderOptions::new())
                .unwrap()
                .schema()
                .field_with_name("embedding")
                .unwrap()
                .clone(),
        );
        let (ours, _, _) = streamed(&data, 100);
        let verified = Verified {
            ours,
            theirs: Lists::new(vec![theirs], &field),
        };
        let rows: usize = verified.map(|a| a.unwrap().len()).sum();
        assert_eq!(rows, 1_000);
    }

    /// `verify` mode: arrays that disagree with parquet-rs's are an error, as the same ones
    /// are not.
    #[test]
    fn verified_streams_fail_on_a_disagreement() {
        let data = embedding_file(300, 4, None);
        let field = {
            let meta = ArrowReaderMetadata::load(&data, ArrowReaderOptions::new()).unwrap();
            Arc::new(meta.schema().field_with_name("embedding").unwrap().clone())
        };
        let right = parquet_rs_embeddings(&data);
        let (ours, _, _) = streamed(&data, 64);
        let same = Verified {
            ours,
            theirs: Lists::new(vec![right.clone()], &field),
        };
        assert_eq!(same.map(|a| a.unwrap().len()).sum::<usize>(), 300);
        let mut values: Vec<f64> = right
            .values()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .values()
            .to_vec();
        values[500] += 1.0;
        let (element, offsets, _, nulls) = right.clone().into_parts();
        let wrong = arrow_array::ListArray::new(
            element,
            offsets,
            Arc::new(Float64Array::from(values)),
            nulls,
        );
        let (ours, _, _) = streamed(&data, 64);
        let mut different = Verified {
            ours,
            theirs: Lists::new(vec![wrong], &field),
        };
        let results: Vec<_> = different.by_ref().collect();
        assert!(
            results.iter().any(|r| r.is_err()),
            "a changed value is found"
        );
        // Fewer rows on their side: also a disagreement.
        let (ours, _, _) = streamed(&data, 64);
        let short = Verified {
            ours,
            theirs: Lists::new(vec![right.slice(0, 299)], &field),
        };
        assert!(short.collect::<Result<Vec<_>>>().is_err());
    }
}
