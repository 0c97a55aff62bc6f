//! The `embedding` column's own decode path: `list<double>` column chunks, BYTE_STREAM_SPLIT
//! or PLAIN, any codec, decoded from parquet-rs's decompressed pages straight into one
//! preallocated `Float64` buffer and one offsets buffer.
//!
//! **Why it exists.** In a full scan, parquet-rs 58 spends about a quarter of the CPU in its
//! BYTE_STREAM_SPLIT decoder (a byte-at-a-time loop), and more in growing the list reader's
//! value buffer (its capacity is one value per row) and in generic level decoding. Here the
//! transpose goes 16 values at a time through SSE2 unpacks on x86-64 (8 at a time through
//! eight `u64` words elsewhere), level runs are read in bulk (in the all-present case, one RLE
//! run of definition levels, neither level stream is materialised: rows start where the
//! repetition runs say), and the buffers are sized once from the column chunk's metadata.
//!
//! **What stays parquet-rs's.** Pages come from its public [`SerializedPageReader`]: file and
//! footer handling, codecs, page headers, checksums. Anything this decoder does not handle
//! (dictionary pages, BIT_PACKED levels, null elements, a column that is not a one-level list
//! of DOUBLE, reads with a row limit) is read by parquet-rs's Arrow reader instead;
//! [`ScanMetrics::embedding_fallbacks`](super::ScanMetrics::embedding_fallbacks) counts those
//! reads. Page-index row selections are decoded here (only the selected pages); a row filter
//! is applied to the assembled batches.
//!
//! **Held or streamed.** A turn's column is decoded whole ([`decode_chunks`]) into arrays of
//! a batch's rows; a row group too large for the read budget (a lazy turn) is decoded an
//! array at a time ([`ChunkStream`]), and should a page this decoder does not read come
//! after rows were handed out, parquet-rs's reader reads the rest.
//!
//! **When it goes.** This is a workaround for apache/arrow-rs#10006 (BYTE_STREAM_SPLIT decoded
//! byte by byte; the patch in `docs/upstream/` does the same transpose inside parquet-rs). When
//! parquet-rs decodes this column as fast, delete this module and its call in
//! `reader::read_file`: the output is the same, value for value, as the tests here and the
//! `verify` mode check.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{Array, ListArray};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, FieldRef};
use parquet::arrow::arrow_reader::RowSelection;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::ColumnDescriptor;

use crate::error::{Error, Result};

/// Environment variable choosing the embedding decoder of every scan in the process:
/// `ours` (the default), `parquet` (parquet-rs's Arrow reader, the baseline) or `verify`
/// (both, failing the scan with an internal error if they disagree; the test suite runs
/// with it).
pub const EMBEDDING_DECODE_ENV: &str = "SALES_HISTORY_EMBEDDING_DECODE";

/// Which decoder reads the `embedding` column in a scan ([`Scan::embedding_decoder`](
/// super::Scan::embedding_decoder)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EmbeddingDecoder {
    /// This crate's decoder where the column's shape allows it, parquet-rs's Arrow reader
    /// elsewhere (the default; [`EMBEDDING_DECODE_ENV`] can change it process-wide).
    #[default]
    Auto,
    /// parquet-rs's Arrow reader for every file (the baseline the benchmarks compare with).
    Parquet,
}

/// The decoder a scan actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Ours,
    Parquet,
    /// Ours, checked against parquet-rs's output.
    Verify,
}

impl Mode {
    pub(crate) fn of(choice: EmbeddingDecoder) -> Mode {
        if choice == EmbeddingDecoder::Parquet {
            return Mode::Parquet;
        }
        match std::env::var(EMBEDDING_DECODE_ENV)
            .as_deref()
            .map(str::trim)
        {
            Ok("parquet") => Mode::Parquet,
            Ok("verify") => Mode::Verify,
            _ => Mode::Ours,
        }
    }
}

/// The levels of a column this decoder reads: `[optional] list<[optional] double>` with one
/// repetition level.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Definition level of a present element.
    max_def: i16,
    /// Definition level of a present, empty list (0 when the list is required).
    list_def: i16,
    /// Whether the list may be null (definition level 0 then means a null row).
    list_optional: bool,
}

impl Shape {
    fn of(descr: &ColumnDescriptor) -> Option<Shape> {
        if descr.physical_type() != PhysicalType::DOUBLE || descr.max_rep_level() != 1 {
            return None;
        }
        let element_optional = descr.self_type().is_optional();
        let max_def = descr.max_def_level();
        // Levels above the list: the repeated group (1) and an optional element (1).
        let list_def = max_def - 1 - i16::from(element_optional);
        if !(0..=1).contains(&list_def) {
            return None;
        }
        Some(Shape {
            max_def,
            list_def,
            list_optional: list_def == 1,
        })
    }
}

/// Decodes the embedding column (leaf `leaf`) of `row_groups` into list arrays whose element
/// field is `field`'s; `Ok(None)` when the column's shape or a page is not one this decoder
/// reads (the caller reads it with parquet-rs).
///
/// The arrays hold `chunk_rows` rows each (the last one fewer): each its own allocation,
/// small enough for the allocator to reuse (a compacted file's one row group of 13,000
/// 1024-dim rows decoded into one 109 MB buffer was a fresh mapping, faulted in page by page,
/// on every scan).
///
/// With a `selection` (over the rows of `row_groups`, in order: a page-index selection, or a
/// row range of a large row group), only the selected rows are returned, as parquet-rs's
/// reader with that selection returns them: pages without a selected row are skipped unread
/// (through the offset index, which must be in `metadata`), pages with one are decoded whole
/// and the selected rows kept. A selection that keeps only some rows of a page gives one
/// array.
///
/// `data` must hold the row groups' column chunks of that leaf (with a selection: the pages
/// holding selected rows).
pub(crate) fn decode_chunks<R: ChunkReader + Clone + 'static>(
    data: &R,
    metadata: &ParquetMetaData,
    row_groups: &[usize],
    leaf: usize,
    field: &FieldRef,
    selection: Option<&RowSelection>,
    chunk_rows: usize,
) -> Result<Option<Vec<ListArray>>> {
    if let Some(selection) = selection {
        return decode_selected(
            data, metadata, row_groups, leaf, field, selection, chunk_rows,
        );
    }
    let Some(mut stream) = ChunkStream::new(data, metadata, row_groups, leaf, field, chunk_rows)?
    else {
        return Ok(None);
    };
    let mut arrays = Vec::new();
    loop {
        match stream.next_array()? {
            Next::Array(a) => arrays.push(a),
            Next::End => return Ok(Some(arrays)),
            Next::Unreadable => return Ok(None),
        }
    }
}

/// What [`ChunkStream::next_array`] gives.
pub(crate) enum Next {
    /// The next `chunk_rows` rows (fewer at the end).
    Array(ListArray),
    /// Every row was handed out.
    End,
    /// A page this decoder does not read (a dictionary page, a null element): the rows not
    /// yet handed out are for parquet-rs's reader.
    Unreadable,
}

/// [`decode_chunks`] without a selection, one array of `chunk_rows` rows at a time: pages
/// are read and decoded as the arrays are asked for, so what is held decoded is one array
/// (and the page that runs past it), whatever the row groups' size. A scan reads a row group
/// larger than its read budget this way (a lazy turn); `decode_chunks` collects it.
pub(crate) struct ChunkStream<R: ChunkReader> {
    reader: Arc<R>,
    shape: Shape,
    /// Row groups still to read: `(index, the column chunk, rows)`.
    groups:
        std::collections::VecDeque<(usize, parquet::file::metadata::ColumnChunkMetaData, usize)>,
    /// The row group being read: its page reader, index, rows, and the rows started before it.
    current: Option<(SerializedPageReader<R>, usize, usize, usize)>,
    out: Chunks,
    /// Whether an array was handed out (an empty read still gives one, empty).
    handed_out: bool,
    ended: bool,
}

impl<R: ChunkReader + 'static> ChunkStream<R> {
    /// The stream over leaf `leaf` of `row_groups`; `Ok(None)` when the column's shape is not
    /// one this decoder reads.
    pub(crate) fn new(
        data: &R,
        metadata: &ParquetMetaData,
        row_groups: &[usize],
        leaf: usize,
        field: &FieldRef,
        chunk_rows: usize,
    ) -> Result<Option<Self>>
    where
        R: Clone,
    {
        let Some((element, shape)) = readable(metadata, leaf, field) else {
            return Ok(None);
        };
        let mut rows = 0usize;
        let mut levels = 0usize;
        let mut groups = std::collections::VecDeque::with_capacity(row_groups.len());
        for &rg in row_groups {
            let group = metadata.row_group(rg);
            let group_rows = usize::try_from(group.num_rows()).unwrap_or(0);
            rows += group_rows;
            levels += usize::try_from(group.column(leaf).num_values()).unwrap_or(0);
            groups.push_back((rg, group.column(leaf).clone(), group_rows));
        }
        // ListArray offsets are i32.
        if i32::try_from(levels).is_err() {
            return Ok(None);
        }
        Ok(Some(ChunkStream {
            reader: Arc::new(data.clone()),
            shape,
            groups,
            current: None,
            out: Chunks::new(element, rows, levels, chunk_rows),
            handed_out: false,
            ended: false,
        }))
    }

    /// The next array, decoding pages until one is complete.
    pub(crate) fn next_array(&mut self) -> Result<Next> {
        loop {
            if let Some(done) = self.out.done.pop_front() {
                self.handed_out = true;
                return Ok(Next::Array(done));
            }
            if self.ended {
                return Ok(Next::End);
            }
            if self.current.is_none() {
                let Some((rg, chunk, rows)) = self.groups.pop_front() else {
                    // The last rows, or one empty array for a read of none.
                    self.ended = true;
                    if self.out.out.rows > 0 || !self.handed_out {
                        let last = self.out.take_last()?;
                        self.handed_out = true;
                        return Ok(Next::Array(last));
                    }
                    return Ok(Next::End);
                };
                let pages = SerializedPageReader::new(self.reader.clone(), &chunk, rows, None)?;
                self.current = Some((pages, rg, rows, self.out.rows()));
            }
            let Some((pages, rg, rows, before)) = self.current.as_mut() else {
                continue;
            };
            match pages.get_next_page()? {
                Some(page) => {
                    if !self.out.page(self.shape, page)? {
                        return Ok(Next::Unreadable);
                    }
                }
                None => {
                    let read = self.out.rows() - *before;
                    if read != *rows {
                        return Err(corrupt(format!(
                            "row group {rg} holds {rows} rows, its embedding pages {read}"
                        )));
                    }
                    self.current = None;
                }
            }
        }
    }
}

/// Decoded pages cut into arrays of `chunk_rows` rows as they come.
struct Chunks {
    out: Out,
    done: std::collections::VecDeque<ListArray>,
    element: FieldRef,
    chunk_rows: usize,
    /// Rows of the whole read, and values per row (exact for fixed-length embeddings), for
    /// each chunk's capacity.
    rows: usize,
    per_row: usize,
    /// Rows in `done`.
    rows_done: usize,
}

impl Chunks {
    /// For a read of `rows` rows and `levels` levels.
    fn new(element: FieldRef, rows: usize, levels: usize, chunk_rows: usize) -> Chunks {
        let (chunk_rows, per_row) = (chunk_rows.max(1), levels.div_ceil(rows.max(1)));
        let (room, values) = Self::room(chunk_rows, rows, per_row, chunk_rows.min(rows));
        Chunks {
            out: Out::with_capacity(room, values),
            done: Default::default(),
            element,
            chunk_rows,
            rows,
            per_row,
            rows_done: 0,
        }
    }

    /// Room for a chunk of `n` rows: an eighth more when the read is cut in chunks (a
    /// chunk's last page may run past its rows, which move to the next chunk); exact when it
    /// is one.
    fn room(chunk_rows: usize, rows: usize, per_row: usize, n: usize) -> (usize, usize) {
        let n = if chunk_rows < rows {
            n.saturating_add(n / 8)
        } else {
            n
        };
        (n, n.saturating_mul(per_row))
    }

    /// Rows started so far.
    fn rows(&self) -> usize {
        self.rows_done + self.out.rows
    }

    /// Decodes one page; `Ok(false)` when it is not one this decoder reads.
    fn page(&mut self, shape: Shape, page: Page) -> Result<bool> {
        if !self.out.page(shape, page)? {
            return Ok(false);
        }
        // Rows past the chunk's have started: the chunk's rows are complete.
        while self.out.rows > self.chunk_rows {
            let left = self.rows.saturating_sub(self.rows_done + self.chunk_rows);
            let (room, values) = Self::room(
                self.chunk_rows,
                self.rows,
                self.per_row,
                self.chunk_rows.min(left),
            );
            let rest = self.out.split_off(self.chunk_rows, room, values)?;
            self.rows_done += self.chunk_rows;
            let full = std::mem::replace(&mut self.out, rest);
            self.done.push_back(full.finish(self.element.clone())?);
        }
        Ok(true)
    }

    /// Every array: those cut off and the rest (one array, empty, for a read of no rows).
    fn finish(mut self) -> Result<Vec<ListArray>> {
        if self.out.rows > 0 || self.done.is_empty() {
            let last = self.take_last()?;
            self.done.push_back(last);
        }
        Ok(self.done.into())
    }

    /// The rows not yet cut off, as the last array (the decoder's buffers are left empty).
    fn take_last(&mut self) -> Result<ListArray> {
        let last = std::mem::replace(&mut self.out, Out::with_capacity(0, 0));
        last.finish(self.element.clone())
    }
}

/// The list's element field and the column's shape, when this decoder reads it.
fn readable(
    metadata: &ParquetMetaData,
    leaf: usize,
    field: &FieldRef,
) -> Option<(FieldRef, Shape)> {
    let DataType::List(element) = field.data_type() else {
        return None;
    };
    if element.data_type() != &DataType::Float64 {
        return None;
    }
    let descr = metadata.file_metadata().schema_descr();
    if leaf >= descr.num_columns() {
        return None;
    }
    Some((element.clone(), Shape::of(&descr.column(leaf))?))
}

/// A page of a selected read: which rows it holds (of the turn) and which of them are wanted.
struct PagePlan {
    rows: Range<usize>,
    wanted: Vec<Range<usize>>,
}

/// [`decode_chunks`] with a row selection.
fn decode_selected<R: ChunkReader + Clone + 'static>(
    data: &R,
    metadata: &ParquetMetaData,
    row_groups: &[usize],
    leaf: usize,
    field: &FieldRef,
    selection: &RowSelection,
    chunk_rows: usize,
) -> Result<Option<Vec<ListArray>>> {
    let Some((element, shape)) = readable(metadata, leaf, field) else {
        return Ok(None);
    };
    let Some(index) = metadata.offset_index() else {
        return Ok(None);
    };
    // Selected rows as ranges of the turn's rows.
    let mut selected: Vec<Range<usize>> = Vec::new();
    let mut at = 0usize;
    for s in selection.iter() {
        if !s.skip && s.row_count > 0 {
            selected.push(at..at + s.row_count);
        }
        at += s.row_count;
    }
    // Which pages to read, from the offset index alone.
    let mut plans: Vec<(
        usize,
        Vec<parquet::file::page_index::offset_index::PageLocation>,
        Vec<Option<PagePlan>>,
    )> = Vec::new();
    let (mut start, mut read_rows, mut read_levels) = (0usize, 0usize, 0usize);
    // The first range of `selected` that may reach the next page.
    let mut next = 0usize;
    for &rg in row_groups {
        let group = metadata.row_group(rg);
        let chunk = group.column(leaf);
        let group_rows = usize::try_from(group.num_rows()).unwrap_or(0);
        let Some(locations) = index
            .get(rg)
            .and_then(|columns| columns.get(leaf))
            .map(|o| o.page_locations().clone())
        else {
            return Ok(None);
        };
        // A dictionary page before the first data page: left to parquet-rs.
        match locations.first() {
            Some(first) if u64::try_from(first.offset).ok() == Some(chunk.byte_range().0) => {}
            Some(_) => return Ok(None),
            None if group_rows == 0 => {
                plans.push((rg, locations, Vec::new()));
                continue;
            }
            None => return Ok(None),
        }
        let levels_per_row = usize::try_from(chunk.num_values())
            .unwrap_or(0)
            .div_ceil(group_rows.max(1));
        let mut pages = Vec::with_capacity(locations.len());
        for (i, loc) in locations.iter().enumerate() {
            let first = usize::try_from(loc.first_row_index).unwrap_or(0);
            let end = locations.get(i + 1).map_or(group_rows, |n| {
                usize::try_from(n.first_row_index).unwrap_or(0)
            });
            if end < first || end > group_rows {
                return Err(corrupt(format!(
                    "row group {rg}: the offset index places a page at rows {first}..{end} of {group_rows}"
                )));
            }
            let rows = start + first..start + end;
            // `selected` is ascending and pages come in row order: ranges that end before
            // this page are behind every later page too (a row filter's scattered matches
            // make thousands; each is looked at about once, not once per page).
            while selected.get(next).is_some_and(|r| r.end <= rows.start) {
                next += 1;
            }
            let wanted: Vec<Range<usize>> = selected
                .iter()
                .skip(next)
                .take_while(|r| r.start < rows.end)
                .map(|r| r.start.max(rows.start)..r.end.min(rows.end))
                .collect();
            if wanted.is_empty() {
                pages.push(None);
            } else {
                read_rows += rows.len();
                read_levels += rows.len() * levels_per_row;
                pages.push(Some(PagePlan { rows, wanted }));
            }
        }
        plans.push((rg, locations, pages));
        start += group_rows;
    }
    if i32::try_from(read_levels).is_err() {
        return Ok(None);
    }
    // Whole pages selected (a row range of a large row group): in chunks, nothing to take.
    let whole = plans
        .iter()
        .flat_map(|(_, _, pages)| pages)
        .flatten()
        .all(|p| p.wanted.len() == 1 && p.wanted[0] == p.rows);
    let chunk_rows = if whole { chunk_rows } else { usize::MAX };
    let mut out = Chunks::new(element, read_rows, read_levels, chunk_rows);
    let mut keep: Vec<Range<usize>> = Vec::new();
    let reader = Arc::new(data.clone());
    for (rg, locations, pages) in plans {
        if pages.iter().all(Option::is_none) {
            continue;
        }
        let group = metadata.row_group(rg);
        let chunk = group.column(leaf);
        let group_rows = usize::try_from(group.num_rows()).unwrap_or(0);
        let mut reader =
            SerializedPageReader::new(reader.clone(), chunk, group_rows, Some(locations))?;
        for plan in pages {
            let Some(plan) = plan else {
                reader.skip_next_page()?;
                continue;
            };
            let Some(page) = reader.get_next_page()? else {
                return Err(corrupt(format!(
                    "row group {rg} ends before the page of rows {:?}",
                    plan.rows
                )));
            };
            let before = out.rows();
            if !out.page(shape, page)? {
                return Ok(None);
            }
            if out.rows() - before != plan.rows.len() {
                return Err(corrupt(format!(
                    "row group {rg}: a page of rows {:?} holds {} rows",
                    plan.rows,
                    out.rows() - before
                )));
            }
            keep.extend(
                plan.wanted
                    .iter()
                    .map(|w| before + w.start - plan.rows.start..before + w.end - plan.rows.start),
            );
        }
    }
    if whole {
        return out.finish().map(Some);
    }
    // One chunk: the selected rows taken from it.
    let Some(list) = out.finish()?.into_iter().next() else {
        return Err(Error::internal("a decode without chunks gave no array"));
    };
    let kept: usize = keep.iter().map(|r| r.len()).sum();
    if kept == list.len() {
        return Ok(Some(vec![list]));
    }
    let mut mask = BooleanBufferBuilder::new(list.len());
    let mut next = 0;
    for r in keep {
        mask.append_n(r.start - next, false);
        mask.append_n(r.len(), true);
        next = r.end;
    }
    mask.append_n(list.len() - next, false);
    let mask = arrow_array::BooleanArray::new(mask.finish(), None);
    let taken = arrow_select::filter::filter(&list, &mask)?;
    taken
        .as_any()
        .downcast_ref::<ListArray>()
        .cloned()
        .map(|list| Some(vec![list]))
        .ok_or_else(|| Error::internal("filtering a list array did not return a list array"))
}

fn corrupt(why: String) -> Error {
    Error::Parquet(parquet::errors::ParquetError::General(format!(
        "embedding column: {why}"
    )))
}

/// The arrays being filled.
struct Out {
    /// The values (capacity from the column chunks' metadata: no growth as pages come).
    values: Vec<f64>,
    offsets: Vec<i32>,
    /// Validity of the rows, once a null row was seen.
    nulls: Option<BooleanBufferBuilder>,
    rows: usize,
    /// Scratch for levels.
    rep: Vec<u8>,
    def: Vec<u8>,
}

impl Out {
    fn with_capacity(rows: usize, values: usize) -> Out {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Out {
            values: Vec::with_capacity(values),
            offsets,
            nulls: None,
            rows: 0,
            rep: Vec::new(),
            def: Vec::new(),
        }
    }

    /// Decodes one page; `Ok(false)` when it is not one this decoder reads.
    fn page(&mut self, shape: Shape, page: Page) -> Result<bool> {
        let (buf, entries, encoding, rep, def, values) = match &page {
            Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                ..
            } => {
                if *rep_level_encoding != Encoding::RLE
                    || (shape.max_def > 0 && *def_level_encoding != Encoding::RLE)
                {
                    return Ok(false);
                }
                let mut rest: &[u8] = buf;
                let rep = take_prefixed(&mut rest)?;
                let def = if shape.max_def > 0 {
                    take_prefixed(&mut rest)?
                } else {
                    &[][..]
                };
                let skip = buf.len() - rest.len();
                let (rep, def) = (range_in(buf, rep), range_in(buf, def));
                (
                    buf,
                    *num_values as usize,
                    *encoding,
                    rep,
                    def,
                    skip..buf.len(),
                )
            }
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let r = *rep_levels_byte_len as usize;
                let d = *def_levels_byte_len as usize;
                if r + d > buf.len() {
                    return Err(corrupt("level lengths exceed the page".into()));
                }
                (
                    buf,
                    *num_values as usize,
                    *encoding,
                    0..r,
                    r..r + d,
                    r + d..buf.len(),
                )
            }
            Page::DictionaryPage { .. } => return Ok(false),
        };
        if !matches!(encoding, Encoding::PLAIN | Encoding::BYTE_STREAM_SPLIT) {
            return Ok(false);
        }
        let present = match self.levels(shape, entries, &buf[rep], &buf[def])? {
            Some(n) => n,
            None => return Ok(false),
        };
        let values = &buf[values];
        match encoding {
            Encoding::PLAIN => {
                let bytes = present * 8;
                if values.len() < bytes {
                    return Err(corrupt(format!(
                        "a PLAIN page holds {} bytes for {present} values",
                        values.len()
                    )));
                }
                self.values.extend(values[..bytes].chunks_exact(8).map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                }));
            }
            _ => {
                if values.len() != present * 8 {
                    return Err(corrupt(format!(
                        "a BYTE_STREAM_SPLIT page holds {} bytes for {present} values",
                        values.len()
                    )));
                }
                join_streams(values, present, &mut self.values);
            }
        }
        Ok(true)
    }

    /// Reads a page's levels into offsets and validity; the number of present values, or
    /// `None` for a shape this decoder leaves to parquet-rs (null elements).
    fn levels(
        &mut self,
        shape: Shape,
        entries: usize,
        rep: &[u8],
        def: &[u8],
    ) -> Result<Option<usize>> {
        let base = self.values.len();
        let all_present = shape.max_def == 0
            || single_run(def, bit_width(shape.max_def), entries) == Some(shape.max_def as u32);
        if all_present {
            // Every entry is a value: a row starts at each repetition level 0, found run by
            // run without a level per entry.
            let (offsets, rows, nulls) = (&mut self.offsets, &mut self.rows, &mut self.nulls);
            row_starts(rep, entries, |i| {
                if *rows > 0 {
                    offsets.push(offset(base + i)?);
                }
                *rows += 1;
                if let Some(n) = nulls.as_mut() {
                    n.append(true);
                }
                Ok(())
            })?;
            return Ok(Some(entries));
        }
        decode_levels(rep, 1, entries, &mut self.rep)?;
        decode_levels(def, bit_width(shape.max_def), entries, &mut self.def)?;
        let mut present = 0usize;
        for i in 0..entries {
            let (r, d) = (self.rep[i], i16::from(self.def[i]));
            if r == 0 {
                if self.rows > 0 {
                    self.offsets.push(offset(base + present)?);
                }
                self.rows += 1;
                let valid = !(shape.list_optional && d == 0);
                if !valid && self.nulls.is_none() {
                    let mut n = BooleanBufferBuilder::new(self.offsets.capacity());
                    n.append_n(self.rows - 1, true);
                    self.nulls = Some(n);
                }
                if let Some(n) = self.nulls.as_mut() {
                    n.append(valid);
                }
            } else if self.rows == 0 {
                return Err(corrupt("the first level of a page continues a row".into()));
            }
            if d == shape.max_def {
                present += 1;
            } else if d > shape.list_def {
                // A null element: not in our layout, left to parquet-rs.
                return Ok(None);
            } else if r != 0 {
                return Err(corrupt("an empty or null list inside a row".into()));
            }
        }
        Ok(Some(present))
    }

    /// Moves the rows from `keep` on (started, the last maybe still open) into a new `Out`
    /// with room for `rows` rows and `values` values.
    fn split_off(&mut self, keep: usize, rows: usize, values: usize) -> Result<Out> {
        let cut = usize::try_from(self.offsets[keep]).map_err(|_| corrupt("offset".into()))?;
        let mut rest = Out::with_capacity(rows, values.max(self.values.len() - cut));
        rest.offsets.clear();
        rest.offsets
            .extend(self.offsets[keep..].iter().map(|o| o - self.offsets[keep]));
        rest.values.extend_from_slice(&self.values[cut..]);
        rest.rows = self.rows - keep;
        if let Some(nulls) = self.nulls.as_mut() {
            let mut tail = BooleanBufferBuilder::new(rows.max(rest.rows));
            for i in keep..self.rows {
                tail.append(nulls.get_bit(i));
            }
            nulls.truncate(keep);
            rest.nulls = Some(tail);
        }
        self.offsets.truncate(keep);
        self.values.truncate(cut);
        self.rows = keep;
        Ok(rest)
    }

    fn finish(mut self, element: FieldRef) -> Result<ListArray> {
        // `rows` rows have `rows` start offsets (the first one 0 even with no row); the end.
        if self.rows > 0 {
            self.offsets.push(offset(self.values.len())?);
        }
        let values = arrow_array::Float64Array::new(ScalarBuffer::from(self.values), None);
        let nulls = self.nulls.map(|mut n| NullBuffer::new(n.finish()));
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Ok(ListArray::try_new(
            element,
            offsets,
            Arc::new(values),
            nulls,
        )?)
    }
}

fn offset(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| corrupt("more than i32::MAX values in one read".into()))
}

/// The range `part` (a subslice of `buf`) covers in `buf`.
fn range_in(buf: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// A data page v1's RLE levels: a 4-byte little-endian length, then the runs.
pub(super) fn take_prefixed<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8]> {
    let Some((len, tail)) = rest.split_first_chunk::<4>() else {
        return Err(corrupt("a level block without its length".into()));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > tail.len() {
        return Err(corrupt("a level block longer than its page".into()));
    }
    let (levels, tail) = tail.split_at(len);
    *rest = tail;
    Ok(levels)
}

fn bit_width(max: i16) -> u32 {
    16 - (max as u16).leading_zeros()
}

fn uleb128(data: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = data.get(*pos) else {
            return Err(corrupt("a level run header runs past its block".into()));
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt("a level run header is too long".into()))
}

/// When the RLE/bit-packed hybrid block `data` starts with one RLE run covering `entries`
/// levels: its value.
pub(super) fn single_run(data: &[u8], width: u32, entries: usize) -> Option<u32> {
    let mut pos = 0;
    let header = uleb128(data, &mut pos).ok()?;
    if header & 1 == 1 || (header >> 1) < entries as u64 {
        return None;
    }
    let bytes = width.div_ceil(8) as usize;
    let v = data.get(pos..pos + bytes)?;
    Some(v.iter().rev().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
}

/// Decodes `entries` levels of bit width `width` (≤ 8) from an RLE/bit-packed hybrid block.
pub(super) fn decode_levels(
    data: &[u8],
    width: u32,
    entries: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    out.reserve(entries);
    let mut pos = 0;
    let mask = (1u64 << width) - 1;
    while out.len() < entries {
        let header = uleb128(data, &mut pos)?;
        let left = entries - out.len();
        if header & 1 == 0 {
            let count = usize::try_from(header >> 1).unwrap_or(usize::MAX).min(left);
            let bytes = width.div_ceil(8) as usize;
            let Some(v) = data.get(pos..pos + bytes) else {
                return Err(corrupt("an RLE level run past its block".into()));
            };
            pos += bytes;
            let v = v.iter().rev().fold(0u32, |a, b| (a << 8) | u32::from(*b));
            let Ok(v) = u8::try_from(v) else {
                return Err(corrupt("a level above its maximum".into()));
            };
            out.resize(out.len() + count, v);
        } else {
            let groups = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let w = width as usize;
            let Some(packed) = groups
                .checked_mul(w)
                .and_then(|n| data.get(pos..pos.checked_add(n)?))
            else {
                return Err(corrupt("bit-packed levels past their block".into()));
            };
            pos += groups * w;
            // Eight levels per `width` bytes, little-endian bit order.
            for group in packed.chunks_exact(w) {
                let mut word = [0u8; 8];
                word[..w].copy_from_slice(group);
                let bits = u64::from_le_bytes(word);
                for k in 0..8u32 {
                    if out.len() == entries {
                        break;
                    }
                    out.push(((bits >> (k * width)) & mask) as u8);
                }
            }
        }
    }
    Ok(())
}

/// Calls `start(i)` for each of the first `entries` repetition levels (bit width 1) that is 0,
/// in order: where the rows start. Reads the RLE/bit-packed hybrid block run by run (a run
/// of 1s is skipped whole, a bit-packed byte by its zero bits) instead of a level per entry:
/// a 1024-dim row is one 0 and 1,023 1s.
fn row_starts(
    data: &[u8],
    entries: usize,
    mut start: impl FnMut(usize) -> Result<()>,
) -> Result<()> {
    let mut pos = 0;
    let mut at = 0usize;
    while at < entries {
        let header = uleb128(data, &mut pos)?;
        let left = entries - at;
        if header & 1 == 0 {
            let count = usize::try_from(header >> 1).unwrap_or(usize::MAX).min(left);
            let Some(&v) = data.get(pos) else {
                return Err(corrupt("an RLE level run past its block".into()));
            };
            pos += 1;
            match v {
                0 => (at..at + count).try_for_each(&mut start)?,
                1 => {}
                _ => return Err(corrupt("a level above its maximum".into())),
            }
            at += count;
        } else {
            let groups = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let Some(packed) = pos.checked_add(groups).and_then(|end| data.get(pos..end)) else {
                return Err(corrupt("bit-packed levels past their block".into()));
            };
            pos += groups;
            // Eight levels per byte, the first in the lowest bit.
            for &byte in packed {
                if at >= entries {
                    break;
                }
                let valid = (entries - at).min(8);
                let mut zeros = !byte & (((1u16 << valid) - 1) as u8);
                while zeros != 0 {
                    start(at + zeros.trailing_zeros() as usize)?;
                    zeros &= zeros - 1;
                }
                at += valid;
            }
        }
    }
    Ok(())
}

/// Transposes an 8×8 byte matrix held as eight little-endian words (word `j` = the bytes of
/// stream `j` for 8 values; after: word `k` = the 8 bytes of value `k`).
#[inline(always)]
pub(crate) fn transpose8(w: &mut [u64; 8]) {
    for j in 0..4 {
        let (a, b) = (w[j], w[j + 4]);
        let t = ((a >> 32) ^ b) & 0x0000_0000_FFFF_FFFF;
        w[j] = a ^ (t << 32);
        w[j + 4] = b ^ t;
    }
    for j in [0, 1, 4, 5] {
        let (a, b) = (w[j], w[j + 2]);
        let t = ((a >> 16) ^ b) & 0x0000_FFFF_0000_FFFF;
        w[j] = a ^ (t << 16);
        w[j + 2] = b ^ t;
    }
    for j in [0, 2, 4, 6] {
        let (a, b) = (w[j], w[j + 1]);
        let t = ((a >> 8) ^ b) & 0x00FF_00FF_00FF_00FF;
        w[j] = a ^ (t << 8);
        w[j + 1] = b ^ t;
    }
}

/// Joins the 8 byte streams of `n` BYTE_STREAM_SPLIT doubles (`src.len() == 8 * n`) onto
/// the end of `out`: 16 values at a time with SSE2 on x86-64, then 8 at a time through
/// [`transpose8`], the tail byte by byte.
#[allow(clippy::needless_range_loop)] // `i` indexes eight streams at once
fn join_streams(src: &[u8], n: usize, out: &mut Vec<f64>) {
    let streams: [&[u8]; 8] = std::array::from_fn(|j| &src[j * n..(j + 1) * n]);
    // SAFETY: every x86-64 CPU has SSE2, all `join16_sse2` needs.
    #[cfg(target_arch = "x86_64")]
    let done = unsafe { join16_sse2(&streams, n, out) };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for b in done / 8..n / 8 {
        let at = b * 8;
        let mut w: [u64; 8] = std::array::from_fn(|j| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&streams[j][at..at + 8]);
            u64::from_le_bytes(bytes)
        });
        transpose8(&mut w);
        out.extend_from_slice(&w.map(f64::from_bits));
    }
    for i in n / 8 * 8..n {
        let value: [u8; 8] = std::array::from_fn(|j| streams[j][i]);
        out.push(f64::from_le_bytes(value));
    }
}

/// The first `n / 16 * 16` values of [`join_streams`], 16 at a time: three rounds of SSE2
/// unpacks (bytes, pairs, quads) turn the 16 bytes of each stream into 16 values. SSE2 is
/// part of every x86-64 CPU, so nothing is detected at run time. Returns the values done.
///
/// Measured on this crate's 2-core VM (1 MiB of values, output in cache): 31–35 GB/s against
/// 4.5–7.5 GB/s for the 8-value [`transpose8`] loop, and 2.3 GB/s for the same 16-value
/// transpose written as plain array indexing (the compiler vectorizes that only for AVX2,
/// 22 GB/s). The join was 19% of an exact similarity search's CPU, 13.5% after (its stores).
/// The same unpacks would serve parquet-rs's decoder (see `docs/upstream/`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn join16_sse2(streams: &[&[u8]; 8], n: usize, out: &mut Vec<f64>) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi8, _mm_unpackhi_epi16,
        _mm_unpackhi_epi32, _mm_unpacklo_epi8, _mm_unpacklo_epi16, _mm_unpacklo_epi32,
    };
    let blocks = n / 16;
    let mut values = [0u64; 16];
    for b in 0..blocks {
        let at = b * 16;
        let s: [__m128i; 8] = std::array::from_fn(|j| {
            let bytes: &[u8] = &streams[j][at..at + 16];
            // SAFETY: `bytes` is 16 bytes long; `loadu` has no alignment requirement.
            unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
        });
        // Bytes (0,1), (2,3), (4,5), (6,7) of values 0–7 (lo) and 8–15 (hi).
        let p = [
            _mm_unpacklo_epi8(s[0], s[1]),
            _mm_unpackhi_epi8(s[0], s[1]),
            _mm_unpacklo_epi8(s[2], s[3]),
            _mm_unpackhi_epi8(s[2], s[3]),
            _mm_unpacklo_epi8(s[4], s[5]),
            _mm_unpackhi_epi8(s[4], s[5]),
            _mm_unpacklo_epi8(s[6], s[7]),
            _mm_unpackhi_epi8(s[6], s[7]),
        ];
        // Bytes 0–3 (q[0..4]) and 4–7 (q[4..8]) of values 0–3, 4–7, 8–11, 12–15.
        let q = [
            _mm_unpacklo_epi16(p[0], p[2]),
            _mm_unpackhi_epi16(p[0], p[2]),
            _mm_unpacklo_epi16(p[1], p[3]),
            _mm_unpackhi_epi16(p[1], p[3]),
            _mm_unpacklo_epi16(p[4], p[6]),
            _mm_unpackhi_epi16(p[4], p[6]),
            _mm_unpacklo_epi16(p[5], p[7]),
            _mm_unpackhi_epi16(p[5], p[7]),
        ];
        // Two whole values each, in order.
        let v = [
            _mm_unpacklo_epi32(q[0], q[4]),
            _mm_unpackhi_epi32(q[0], q[4]),
            _mm_unpacklo_epi32(q[1], q[5]),
            _mm_unpackhi_epi32(q[1], q[5]),
            _mm_unpacklo_epi32(q[2], q[6]),
            _mm_unpackhi_epi32(q[2], q[6]),
            _mm_unpacklo_epi32(q[3], q[7]),
            _mm_unpackhi_epi32(q[3], q[7]),
        ];
        for (pair, v) in values.chunks_exact_mut(2).zip(v) {
            // SAFETY: `pair` is 16 bytes long; `storeu` has no alignment requirement.
            unsafe { _mm_storeu_si128(pair.as_mut_ptr().cast(), v) };
        }
        out.extend_from_slice(&values.map(f64::from_bits));
    }
    blocks * 16
}

/// Whether two list arrays hold the same rows: validity, offsets (relative to the first)
/// and every value's bits.
pub(crate) fn same_lists(a: &ListArray, b: &ListArray) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if (0..a.len()).any(|i| a.is_valid(i) != b.is_valid(i)) {
        return false;
    }
    let (oa, ob) = (a.value_offsets(), b.value_offsets());
    if oa.iter().zip(ob).any(|(x, y)| x - oa[0] != y - ob[0]) {
        return false;
    }
    let values = |l: &ListArray| -> Option<Vec<u64>> {
        let o = l.value_offsets();
        let v = l
            .values()
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()?;
        Some(
            v.values()[o[0] as usize..o[l.len()] as usize]
                .iter()
                .map(|x| x.to_bits())
                .collect(),
        )
    };
    match (values(a), values(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
#[path = "embedding_tests.rs"]
mod tests;
