//! This crate's decoder for the narrow columns (everything but `embedding`) of files written
//! without dictionaries: the small files of a tenant layout.
//!
//! A `tenant-month` table holds one file per tenant and month, tens to hundreds of rows each,
//! written without dictionary pages ([`crate::parquet_props::DICTIONARY_MIN_ROWS`]): every
//! column chunk is one or a few PLAIN pages. A question across tenants opens hundreds of such
//! files, and parquet-rs's Arrow reader spends most of each file's time setting up and tearing
//! down its per-column readers and record buffers, not decoding. Here each needed column chunk
//! is read page by page through parquet-rs's own page reader (headers, decompression) and its
//! PLAIN values land straight in the output arrays: strings as offsets plus one copy of their
//! bytes, decimals and timestamps from their `INT64`s, nulls from the definition levels.
//! `tenant_id` of a file under `identity(tenant_id)` is not decoded at all: its partition
//! value fills the column ([`filled`]), as Iceberg readers treat identity partition fields.
//!
//! Anything else (a dictionary page, another encoding, a physical or logical type other than
//! the ones this table's writer uses, repetition) is left to parquet-rs: [`decode`] answers
//! `None` and the caller reads the turn as before. In
//! [`Mode::Verify`](super::embedding::Mode::Verify) (the test suite) every batch decoded here is
//! compared with parquet-rs's.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Decimal128Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use parquet::basic::{Encoding, LogicalType, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::ColumnDescriptor;

use super::embedding::{decode_levels, single_run, take_prefixed};
use crate::error::{Error, Result};

/// A data file this decoder cannot read as its metadata describes it, naming the column.
fn corrupt(column: &str, why: impl std::fmt::Display) -> Error {
    Error::Parquet(parquet::errors::ParquetError::General(format!(
        "column {column}: {why}"
    )))
}

/// How a column's PLAIN values become its Arrow array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `BYTE_ARRAY` (UTF-8) → `Utf8`.
    String,
    /// `INT64` → `Decimal128` of the same precision and scale.
    Decimal(u8, i8),
    /// `INT64` microseconds → `Timestamp(Microsecond, _)`.
    Micros,
}

impl Kind {
    /// The kind an output field is built as, or `None` (parquet-rs reads it).
    fn of(field: &Field) -> Option<Kind> {
        match field.data_type() {
            DataType::Utf8 => Some(Kind::String),
            DataType::Decimal128(p, s) => Some(Kind::Decimal(*p, *s)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Some(Kind::Micros),
            _ => None,
        }
    }

    /// Whether leaf `descr` of a file holds PLAIN values this kind reads into `field`.
    fn reads(self, descr: &ColumnDescriptor, field: &Field) -> bool {
        // A top-level primitive column (not a leaf inside a group another engine wrote).
        if descr.path().parts().len() != 1
            || descr.max_rep_level() != 0
            || descr.max_def_level() > 1
        {
            return false;
        }
        // A null in a column the output declares required is parquet-rs's to report.
        if descr.max_def_level() == 1 && !field.is_nullable() {
            return false;
        }
        let logical = descr.logical_type_ref();
        match (self, descr.physical_type()) {
            (Kind::String, PhysicalType::BYTE_ARRAY) => {
                matches!(logical, Some(LogicalType::String))
            }
            (Kind::Decimal(p, s), PhysicalType::INT64) => {
                matches!(logical, Some(LogicalType::Decimal { scale, precision })
                    if *scale == i32::from(s) && *precision == i32::from(p))
            }
            (Kind::Micros, PhysicalType::INT64) => {
                let tz = matches!(field.data_type(), DataType::Timestamp(_, Some(_)));
                matches!(logical, Some(LogicalType::Timestamp {
                    is_adjusted_to_u_t_c,
                    unit: parquet::basic::TimeUnit::MICROS,
                }) if *is_adjusted_to_u_t_c == tz)
            }
            _ => false,
        }
    }
}

/// One column's decoded values.
struct Values {
    kind: Kind,
    /// `String`: the value bytes; others: unused.
    bytes: Vec<u8>,
    /// `String`: the offsets (`rows + 1`).
    offsets: Vec<i32>,
    /// `Decimal` / `Micros`: the values (0 under a null).
    longs: Vec<i64>,
    /// Validity, filled once a null is seen (all earlier rows valid).
    valid: Option<Vec<bool>>,
    rows: usize,
}

impl Values {
    fn new(kind: Kind) -> Values {
        Values {
            kind,
            bytes: Vec::new(),
            offsets: vec![0],
            longs: Vec::new(),
            valid: None,
            rows: 0,
        }
    }

    /// What it holds now, to [`truncate`](Self::truncate) back to.
    fn mark(&self) -> Mark {
        Mark {
            rows: self.rows,
            bytes: self.bytes.len(),
        }
    }

    /// Drops what was added after `mark`.
    fn truncate(&mut self, mark: Mark) {
        self.rows = mark.rows;
        self.bytes.truncate(mark.bytes);
        self.offsets.truncate(mark.rows + 1);
        self.longs.truncate(mark.rows);
        if let Some(valid) = self.valid.as_mut() {
            valid.truncate(mark.rows);
        }
    }

    /// Room for `rows` more rows of file column `leaf` in `row_groups` (its uncompressed
    /// bytes bound the string values'), so a file's pages do not grow the buffers page by page;
    /// whenever a buffer must grow, room for `ahead` rows like these (the rest of the batch
    /// being gathered, at most [`AHEAD_CAP`] bytes a buffer), so the next files do not grow it
    /// again.
    fn reserve(
        &mut self,
        metadata: &ParquetMetaData,
        row_groups: &[usize],
        leaf: usize,
        (rows, ahead): (usize, usize),
    ) {
        // The file's own figures, so capped (a bad one must not reserve gigabytes).
        let rows = rows.min(RESERVE_CAP / 8);
        // Items (of `size` bytes) for `ahead` rows like these: at least `needed`.
        let room = |needed: usize, size: usize| {
            let per_row = needed.div_ceil(rows.max(1));
            needed.max(ahead.saturating_mul(per_row).min(AHEAD_CAP / size))
        };
        match self.kind {
            Kind::String => {
                let bytes = row_groups.iter().fold(0i64, |sum, &rg| {
                    sum.saturating_add(metadata.row_group(rg).column(leaf).uncompressed_size())
                });
                let bytes = usize::try_from(bytes).unwrap_or(0).min(RESERVE_CAP) + SHORT;
                grow(&mut self.bytes, bytes, room(bytes, 1));
                grow(&mut self.offsets, rows, room(rows, 4));
            }
            Kind::Decimal(..) | Kind::Micros => {
                grow(&mut self.longs, rows, room(rows, 8));
            }
        }
        if let Some(valid) = self.valid.as_mut() {
            grow(valid, rows, room(rows, 1));
        }
    }

    /// Adds one data page of column `name`: `entries` rows, their definition levels (`None`:
    /// every row present) and PLAIN values.
    fn page(
        &mut self,
        name: &str,
        entries: usize,
        levels: Option<&[u8]>,
        values: &[u8],
    ) -> Result<()> {
        match self.kind {
            Kind::String => {
                // Values are copied into room made for all of them (the page's values, length
                // prefixes included, are more than enough) plus `SHORT` bytes: a value up to `SHORT` bytes long
                // (most here: ids, categories, brands) is copied as `SHORT` bytes, a copy the
                // compiler inlines, instead of a call per value; the next value overwrites
                // what it copied past its end.
                let start = self.bytes.len();
                offset(name, start + values.len())?;
                self.bytes.resize(start + values.len() + SHORT, 0);
                let (out, mut w, mut p) = (&mut self.bytes[..], start, 0usize);
                let mut next = || -> Result<i32> {
                    let Some(len) = values.get(p..p + 4) else {
                        return Err(corrupt(name, "a PLAIN string page ends early"));
                    };
                    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                    p += 4;
                    if len > values.len() - p {
                        return Err(corrupt(name, "a PLAIN string runs past its page"));
                    }
                    // `w - start <= p - 4`: the room holds `w + len + SHORT`.
                    if len <= SHORT && p + SHORT <= values.len() {
                        out[w..w + SHORT].copy_from_slice(&values[p..p + SHORT]);
                    } else {
                        out[w..w + len].copy_from_slice(&values[p..p + len]);
                    }
                    w += len;
                    p += len;
                    // Below `start + values.len()`, checked to fit an i32 above.
                    Ok(w as i32)
                };
                let pushed: Result<()> = match levels {
                    None => (0..entries).try_for_each(|_| {
                        self.offsets.push(next()?);
                        Ok(())
                    }),
                    Some(levels) => {
                        let mut last = offset(name, start)?;
                        levels.iter().try_for_each(|&d| {
                            if d == 1 {
                                last = next()?;
                            }
                            self.offsets.push(last);
                            Ok(())
                        })
                    }
                };
                self.bytes.truncate(w);
                pushed?;
            }
            Kind::Decimal(..) | Kind::Micros => {
                let present = levels.map_or(entries, |l| l.iter().filter(|&&d| d == 1).count());
                let Some(values) = values.get(..present * 8) else {
                    return Err(corrupt(
                        name,
                        format!(
                            "a PLAIN INT64 page holds {} bytes for {present} values",
                            values.len()
                        ),
                    ));
                };
                let mut it = values
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()));
                match levels {
                    None => self.longs.extend(it),
                    Some(levels) => self.longs.extend(
                        levels
                            .iter()
                            .map(|&d| if d == 1 { it.next().unwrap_or(0) } else { 0 }),
                    ),
                }
            }
        }
        if let Some(levels) = levels {
            let valid = self.valid.get_or_insert_with(|| vec![true; self.rows]);
            valid.extend(levels.iter().map(|&d| d == 1));
        } else if let Some(valid) = self.valid.as_mut() {
            valid.resize(valid.len() + entries, true);
        }
        self.rows += entries;
        Ok(())
    }

    /// Adds `rows` rows of the string `value` to a string column (one whose every value the
    /// file's partition gives).
    fn constant(&mut self, name: &str, value: &str, rows: usize) -> Result<()> {
        let total = value.len().saturating_mul(rows);
        offset(name, self.bytes.len().saturating_add(total))?;
        self.bytes.reserve(total);
        self.offsets.reserve(rows);
        for _ in 0..rows {
            self.bytes.extend_from_slice(value.as_bytes());
            // Checked to fit an i32 above.
            self.offsets.push(self.bytes.len() as i32);
        }
        if let Some(valid) = self.valid.as_mut() {
            valid.resize(valid.len() + rows, true);
        }
        self.rows += rows;
        Ok(())
    }

    /// The array of what it holds; it is left empty.
    fn finish(&mut self, field: &Field) -> Result<ArrayRef> {
        // The next batch starts with room for as much as this one held.
        let mut next = Values::new(self.kind);
        next.bytes.reserve(self.bytes.len());
        next.offsets.reserve(self.offsets.len());
        next.longs.reserve(self.longs.len());
        let taken = std::mem::replace(self, next);
        let nulls = taken
            .valid
            .map(NullBuffer::from)
            .filter(|n| n.null_count() > 0);
        Ok(match self.kind {
            Kind::String => Arc::new(StringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(taken.offsets)),
                Buffer::from_vec(taken.bytes),
                nulls,
            )?),
            Kind::Decimal(p, s) => Arc::new(
                Decimal128Array::try_new(taken.longs.into_iter().map(i128::from).collect(), nulls)?
                    .with_precision_and_scale(p, s)?,
            ),
            Kind::Micros => {
                let tz = match field.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(
                    TimestampMicrosecondArray::try_new(ScalarBuffer::from(taken.longs), nulls)?
                        .with_timezone_opt(tz),
                )
            }
        })
    }
}

fn offset(name: &str, n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| corrupt(name, "2 GiB or more of strings in one batch"))
}

/// Most bytes [`Values::reserve`] reserves ahead for a file's column.
const RESERVE_CAP: usize = 8 << 20;

/// Most bytes [`Values::reserve`] makes room for in one buffer of a column (its bytes, offsets,
/// values or validity), for the next files of a batch.
const AHEAD_CAP: usize = 1 << 20;

/// Room in `v` for `needed` more items; when it must grow, for `room` (≥ `needed`).
fn grow<T>(v: &mut Vec<T>, needed: usize, room: usize) {
    if v.capacity() - v.len() < needed {
        v.reserve_exact(room.max(needed));
    }
}

/// Longest string [`Values::page`] copies as a fixed `SHORT` bytes (room for it is kept past
/// the last value).
const SHORT: usize = 16;

/// Where [`Values::truncate`] goes back to.
#[derive(Clone, Copy)]
struct Mark {
    rows: usize,
    bytes: usize,
}

/// Decoded rows of several files (a reader's small files, gathered into one batch without
/// a copy per file), in the columns of `schema`.
pub(crate) struct Gather {
    schema: SchemaRef,
    columns: Vec<Values>,
    rows: usize,
    /// Rows of the batches it is made for (room for them is made once, not file by file).
    batch_rows: usize,
}

impl Gather {
    /// A gather for `schema`, for batches of about `batch_rows` rows; `None` when a field is
    /// of a type this decoder does not build.
    pub(crate) fn new(schema: &SchemaRef, batch_rows: usize) -> Option<Gather> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Kind::of(f).map(Values::new))
            .collect::<Option<Vec<_>>>()?;
        Some(Gather {
            schema: schema.clone(),
            columns,
            rows: 0,
            batch_rows,
        })
    }

    /// Rows gathered.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of values gathered (about the batch's size).
    pub(crate) fn bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|c| c.bytes.len() + c.offsets.len() * 4 + c.longs.len() * 16)
            .sum()
    }

    /// The gathered rows as one batch; the gather is left empty.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let columns = self
            .columns
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(c, f)| c.finish(f))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }

    /// Decodes leaves `leaves` (one per field, in order) of `row_groups` and adds their rows;
    /// `Ok(false)` (nothing added) when a column chunk is not one this decoder reads.
    /// `constant`: a string field (by position) every row of the file holds, from its
    /// partition: filled with that value, its leaf not decoded, when [`filled`] allows.
    pub(crate) fn add<R: ChunkReader + Clone + 'static>(
        &mut self,
        data: &R,
        metadata: &ParquetMetaData,
        (row_groups, leaves): (&[usize], &[usize]),
        constant: Option<(usize, &str)>,
    ) -> Result<bool> {
        let marks: Vec<Mark> = self.columns.iter().map(Values::mark).collect();
        match self.add_columns(data, metadata, (row_groups, leaves), constant) {
            Ok(Some(rows)) => {
                self.rows += rows;
                Ok(true)
            }
            outcome => {
                for (c, m) in self.columns.iter_mut().zip(marks) {
                    c.truncate(m);
                }
                outcome.map(|_| false)
            }
        }
    }

    fn add_columns<R: ChunkReader + Clone + 'static>(
        &mut self,
        data: &R,
        metadata: &ParquetMetaData,
        (row_groups, leaves): (&[usize], &[usize]),
        constant: Option<(usize, &str)>,
    ) -> Result<Option<usize>> {
        let descr = metadata.file_metadata().schema_descr();
        if leaves.len() != self.columns.len() {
            return Ok(None);
        }
        for ((&leaf, field), c) in leaves.iter().zip(self.schema.fields()).zip(&self.columns) {
            if leaf >= descr.num_columns() || !c.kind.reads(&descr.column(leaf), field) {
                return Ok(None);
            }
        }
        // No dictionary in any chunk (read from the chunk metadata, before any page).
        let mut rows = 0usize;
        for &rg in row_groups {
            let group = metadata.row_group(rg);
            for &leaf in leaves {
                if group.column(leaf).dictionary_page_offset().is_some() {
                    return Ok(None);
                }
            }
            rows += usize::try_from(group.num_rows()).unwrap_or(0);
        }
        let constant = filled(&self.schema, constant);
        let reader = Arc::new(data.clone());
        // Rows the rest of the batch may take (a gather sends a batch of `batch_rows`).
        let ahead = self.batch_rows.saturating_sub(self.rows);
        let mut levels = Vec::new();
        for (i, ((&leaf, field), out)) in leaves
            .iter()
            .zip(self.schema.fields())
            .zip(&mut self.columns)
            .enumerate()
        {
            if constant.is_some_and(|(at, _)| at == i) {
                continue;
            }
            let max_def = descr.column(leaf).max_def_level();
            out.reserve(metadata, row_groups, leaf, (rows, ahead));
            for &rg in row_groups {
                let group = metadata.row_group(rg);
                let group_rows = usize::try_from(group.num_rows()).unwrap_or(0);
                let chunk = group.column(leaf);
                // With the offset index, page headers parse from the page's bytes (not
                // through `Read`, a byte at a time).
                let locations = metadata
                    .offset_index()
                    .and_then(|o| o.get(rg))
                    .and_then(|cols| cols.get(leaf))
                    .map(|c| c.page_locations().clone());
                let mut pages =
                    SerializedPageReader::new(reader.clone(), chunk, group_rows, locations)?;
                let before = out.rows;
                while let Some(page) = pages.get_next_page()? {
                    let (entries, def, values) = match &page {
                        Page::DataPage {
                            buf,
                            num_values,
                            encoding: Encoding::PLAIN,
                            def_level_encoding,
                            ..
                        } => {
                            let mut rest: &[u8] = buf;
                            let def = if max_def > 0 {
                                if *def_level_encoding != Encoding::RLE {
                                    return Ok(None);
                                }
                                take_prefixed(&mut rest).map_err(|_| {
                                    corrupt(field.name(), "definition levels past their page")
                                })?
                            } else {
                                &[][..]
                            };
                            (*num_values as usize, def, rest)
                        }
                        Page::DataPageV2 {
                            buf,
                            num_values,
                            encoding: Encoding::PLAIN,
                            def_levels_byte_len,
                            rep_levels_byte_len,
                            ..
                        } => {
                            let (r, d) =
                                (*rep_levels_byte_len as usize, *def_levels_byte_len as usize);
                            let (Some(def), Some(values)) = (buf.get(r..r + d), buf.get(r + d..))
                            else {
                                return Err(corrupt(field.name(), "level lengths exceed the page"));
                            };
                            (*num_values as usize, def, values)
                        }
                        _ => return Ok(None),
                    };
                    let levels = match max_def {
                        0 => None,
                        _ if single_run(def, 1, entries) == Some(1) => None,
                        _ => {
                            decode_levels(def, 1, entries, &mut levels).map_err(|_| {
                                corrupt(field.name(), "definition levels cut short")
                            })?;
                            Some(levels.as_slice())
                        }
                    };
                    out.page(field.name(), entries, levels, values)?;
                }
                if out.rows - before != group_rows {
                    return Err(corrupt(
                        field.name(),
                        format!(
                            "row group {rg} holds {group_rows} rows, the column's pages {}",
                            out.rows - before
                        ),
                    ));
                }
            }
        }
        if let Some((at, value)) = constant
            && let (Some(field), Some(out)) =
                (self.schema.fields().get(at), self.columns.get_mut(at))
        {
            out.constant(field.name(), value, rows)?;
        }
        Ok(Some(rows))
    }
}

/// The `constant` [`Gather::add`] fills for a batch of `schema` (`None`: every column is
/// decoded from its pages): a string field beside at least one other. It is filled after the
/// others, whose pages confirm the file's row count first (a footer's figure alone never
/// sizes it); a column read alone is decoded.
pub(crate) fn filled<'a>(
    schema: &SchemaRef,
    constant: Option<(usize, &'a str)>,
) -> Option<(usize, &'a str)> {
    let fields = schema.fields();
    constant.filter(|(at, _)| {
        fields.len() > 1
            && fields
                .get(*at)
                .is_some_and(|f| Kind::of(f) == Some(Kind::String))
    })
}

/// Decodes leaves `leaves` (one per field of `schema`, in order) of `row_groups` into one
/// batch of `schema`; `Ok(None)` when a column chunk is not one this decoder reads.
/// `constant` as in [`Gather::add`].
pub(crate) fn decode<R: ChunkReader + Clone + 'static>(
    data: &R,
    metadata: &ParquetMetaData,
    (row_groups, leaves): (&[usize], &[usize]),
    schema: &SchemaRef,
    constant: Option<(usize, &str)>,
) -> Result<Option<RecordBatch>> {
    let Some(mut gather) = Gather::new(schema, 0) else {
        return Ok(None);
    };
    if !gather.add(data, metadata, (row_groups, leaves), constant)? {
        return Ok(None);
    }
    Ok(Some(gather.finish()?))
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Decimal128Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{WriterProperties, WriterVersion};

    use super::*;
    use crate::schema::Column;
    use crate::test_rng::Rng;

    /// The table's columns but `embedding`, `rows` random rows: strings of 0–30 characters
    /// (some multibyte), nulls in every optional column, decimals and timestamps over their
    /// ranges.
    fn narrow_batch(rows: usize, seed: u64) -> RecordBatch {
        let mut rng = Rng(seed);
        let cols: Vec<usize> = Column::ALL
            .into_iter()
            .filter(|c| *c != Column::Embedding)
            .map(|c| c.index())
            .collect();
        let schema = Arc::new(crate::schema::arrow_schema().project(&cols).unwrap());
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                let null = |rng: &mut Rng| f.is_nullable() && rng.below(5) == 0;
                match f.data_type() {
                    DataType::Utf8 => Arc::new(StringArray::from_iter((0..rows).map(|_| {
                        (!null(&mut rng)).then(|| {
                            (0..rng.below(31))
                                .map(|_| ['a', 'Z', '7', 'é', '€', '-'][rng.below(6) as usize])
                                .collect::<String>()
                        })
                    }))),
                    DataType::Decimal128(p, s) => Arc::new(
                        Decimal128Array::from_iter((0..rows).map(|_| {
                            (!null(&mut rng))
                                .then(|| rng.below(19_999_999_999) as i128 - 9_999_999_999)
                        }))
                        .with_precision_and_scale(*p, *s)
                        .unwrap(),
                    ),
                    _ => Arc::new(TimestampMicrosecondArray::from_iter(
                        (0..rows).map(|_| (!null(&mut rng)).then(|| rng.next() as i64 >> 12)),
                    )),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn write(batch: &RecordBatch, props: WriterProperties) -> bytes::Bytes {
        let mut buf = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        bytes::Bytes::from(buf)
    }

    /// PLAIN pages (v1 or v2), or with `dictionary` dictionary pages.
    fn props(codec: Compression, version: WriterVersion, dictionary: bool) -> WriterProperties {
        let builder = WriterProperties::builder();
        let builder = match dictionary {
            true => builder,
            false => builder.set_encoding(parquet::basic::Encoding::PLAIN),
        };
        builder
            .set_compression(codec)
            .set_writer_version(version)
            .set_dictionary_enabled(dictionary)
            .set_max_row_group_row_count(Some(50))
            .set_data_page_row_count_limit(7)
            .set_write_batch_size(7)
            .build()
    }

    /// What parquet-rs's Arrow reader reads of `row_groups`, as one batch of `schema`.
    fn parquet_rs(data: &bytes::Bytes, row_groups: &[usize], schema: &SchemaRef) -> RecordBatch {
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(data.clone())
            .unwrap()
            .with_row_groups(row_groups.to_vec())
            .build()
            .unwrap()
            .map(|b| {
                let b = b.unwrap();
                RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap()
            })
            .collect();
        arrow_select::concat::concat_batches(schema, &batches).unwrap()
    }

    fn metadata(data: &bytes::Bytes) -> Arc<ParquetMetaData> {
        ParquetRecordBatchReaderBuilder::try_new(data.clone())
            .unwrap()
            .metadata()
            .clone()
    }

    /// [`metadata`] with the page indexes: pages found from the offset index.
    fn indexed(data: &bytes::Bytes) -> Arc<ParquetMetaData> {
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let meta = ParquetRecordBatchReaderBuilder::try_new_with_options(data.clone(), options)
            .unwrap()
            .metadata()
            .clone();
        assert!(meta.offset_index().is_some());
        meta
    }

    /// [`narrow_batch`]`(rows, seed)` written with `codec` in PLAIN v1 pages, its leaves (one
    /// per column) and the file's metadata.
    fn plain_file(
        rows: usize,
        seed: u64,
        codec: Compression,
    ) -> (RecordBatch, Vec<usize>, bytes::Bytes, Arc<ParquetMetaData>) {
        let batch = narrow_batch(rows, seed);
        let leaves: Vec<usize> = (0..batch.num_columns()).collect();
        let data = write(&batch, props(codec, WriterVersion::PARQUET_1_0, false));
        let meta = metadata(&data);
        (batch, leaves, data, meta)
    }

    #[test]
    fn plain_files_decode_as_parquet_rs_reads_them() {
        let batch = narrow_batch(130, 7);
        let schema = batch.schema();
        let leaves: Vec<usize> = (0..schema.fields().len()).collect();
        let cases = [
            (Compression::SNAPPY, WriterVersion::PARQUET_1_0),
            (Compression::UNCOMPRESSED, WriterVersion::PARQUET_2_0),
            (
                Compression::ZSTD(ZstdLevel::default()),
                WriterVersion::PARQUET_2_0,
            ),
        ];
        for (codec, version) in cases {
            let data = write(&batch, props(codec, version, false));
            let meta = metadata(&data);
            assert_eq!(meta.num_row_groups(), 3);
            assert!(
                meta.row_group(0).column(0).num_values() > 7,
                "several pages"
            );
            for groups in [vec![0, 1, 2], vec![2], vec![0, 2]] {
                let ours = decode(&data, &meta, (&groups, &leaves), &schema, None)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{codec:?} {version:?}: not read"));
                let theirs = parquet_rs(&data, &groups, &schema);
                assert_eq!(ours, theirs, "{codec:?} {version:?} {groups:?}");
                // Pages found from the offset index, not by reading header after header.
                let located =
                    decode(&data, &indexed(&data), (&groups, &leaves), &schema, None).unwrap();
                assert_eq!(
                    located.as_ref(),
                    Some(&theirs),
                    "{codec:?} {version:?} {groups:?}"
                );
                assert!(ours.columns().iter().any(|c| c.null_count() > 0));
            }
            // The whole file equals what was written.
            let all = decode(&data, &meta, (&[0, 1, 2], &leaves), &schema, None).unwrap();
            assert_eq!(all.as_ref(), Some(&batch));
        }
    }

    #[test]
    fn what_it_does_not_read_is_left_to_parquet_rs() {
        let batch = narrow_batch(60, 11);
        let schema = batch.schema();
        let leaves: Vec<usize> = (0..schema.fields().len()).collect();
        // Dictionary pages.
        let data = write(
            &batch,
            props(Compression::SNAPPY, WriterVersion::PARQUET_1_0, true),
        );
        let meta = metadata(&data);
        assert!(
            decode(&data, &meta, (&[0, 1], &leaves), &schema, None)
                .unwrap()
                .is_none()
        );
        // A column read as another type than it was written (a string as a decimal).
        let plain = write(
            &batch,
            props(Compression::SNAPPY, WriterVersion::PARQUET_1_0, false),
        );
        let meta = metadata(&plain);
        // Another encoding (parquet-rs's v2 default without dictionaries: DELTA_*).
        let delta = write(
            &batch,
            WriterProperties::builder()
                .set_writer_version(WriterVersion::PARQUET_2_0)
                .set_dictionary_enabled(false)
                .build(),
        );
        assert!(
            decode(&delta, &metadata(&delta), (&[0], &leaves), &schema, None)
                .unwrap()
                .is_none()
        );
        let decimal_at = schema
            .fields()
            .iter()
            .position(|f| matches!(f.data_type(), DataType::Decimal128(..)))
            .unwrap();
        let mut wrong = leaves.clone();
        wrong[decimal_at] = 0;
        assert!(
            decode(&plain, &meta, (&[0], &wrong), &schema, None)
                .unwrap()
                .is_none()
        );
        // A type this decoder does not build: no gather at all.
        let other = Arc::new(arrow_schema::Schema::new(vec![Field::new(
            "x",
            DataType::Int32,
            false,
        )]));
        assert!(Gather::new(&other, 0).is_none());
    }

    #[test]
    fn a_gather_joins_files_and_a_refused_file_adds_nothing() {
        let (a, b) = (narrow_batch(130, 3), narrow_batch(60, 4));
        let schema = a.schema();
        let leaves: Vec<usize> = (0..schema.fields().len()).collect();
        let plain = props(Compression::SNAPPY, WriterVersion::PARQUET_1_0, false);
        let (da, db) = (write(&a, plain.clone()), write(&b, plain));
        let dict = write(
            &b,
            props(Compression::SNAPPY, WriterVersion::PARQUET_2_0, true),
        );
        let mut gather = Gather::new(&schema, 1024).unwrap();
        assert!(
            gather
                .add(&da, &metadata(&da), (&[0, 1, 2], &leaves), None)
                .unwrap()
        );
        // Refused after some columns could have been added: nothing stays.
        assert!(
            !gather
                .add(&dict, &metadata(&dict), (&[0], &leaves), None)
                .unwrap()
        );
        assert!(
            gather
                .add(&db, &metadata(&db), (&[1], &leaves), None)
                .unwrap()
        );
        assert_eq!(gather.rows(), 130 + 10);
        assert!(gather.bytes() > 0);
        let got = gather.finish().unwrap();
        let want = arrow_select::concat::concat_batches(
            &schema,
            &[
                parquet_rs(&da, &[0, 1, 2], &schema),
                parquet_rs(&db, &[1], &schema),
            ],
        )
        .unwrap();
        assert_eq!(got, want);
        // Emptied, and reusable.
        assert_eq!(gather.rows(), 0);
        assert!(
            gather
                .add(&db, &metadata(&db), (&[0], &leaves), None)
                .unwrap()
        );
        assert_eq!(gather.finish().unwrap(), parquet_rs(&db, &[0], &schema));
    }

    /// A column the file's partition gives (`tenant_id` under `identity(tenant_id)`) is filled
    /// with that value, its pages not read: here the file holds other values, so the output
    /// shows which was used. A constant for a column that is not a string is not used.
    #[test]
    fn a_partition_constant_fills_its_column_unread() {
        let (batch, leaves, data, meta) = plain_file(130, 11, Compression::SNAPPY);
        let schema = batch.schema();
        let tenant = schema.index_of(Column::TenantId.name()).unwrap();
        let theirs = parquet_rs(&data, &[0, 2], &schema);
        for value in ["acme-€", ""] {
            let ours = decode(
                &data,
                &meta,
                (&[0, 2], &leaves),
                &schema,
                Some((tenant, value)),
            )
            .unwrap()
            .unwrap();
            assert_eq!(ours.num_rows(), 80);
            let column = ours.column(tenant).as_any().downcast_ref::<StringArray>();
            let column = column.unwrap();
            assert_eq!(column.null_count(), 0);
            assert!(column.iter().all(|v| v == Some(value)), "{value:?}");
            for (i, (o, t)) in ours.columns().iter().zip(theirs.columns()).enumerate() {
                if i != tenant {
                    assert_eq!(o, t, "column {i}");
                }
            }
        }
        // Gathered after another file: the constant rows follow its rows.
        let mut gather = Gather::new(&schema, 1024).unwrap();
        assert!(gather.add(&data, &meta, (&[1], &leaves), None).unwrap());
        let added = gather.add(&data, &meta, (&[0], &leaves), Some((tenant, "t")));
        assert!(added.unwrap());
        let got = gather.finish().unwrap();
        let column = got.column(tenant).as_any().downcast_ref::<StringArray>();
        let column = column.unwrap();
        let (first, _) = column
            .values()
            .split_at(column.value_offsets()[50] as usize);
        let want = parquet_rs(&data, &[1], &schema);
        let want = want.column(tenant).as_any().downcast_ref::<StringArray>();
        assert_eq!(first, want.unwrap().values().as_slice());
        assert!((50..100).all(|i| column.value(i) == "t"));
        // Read alone: decoded from the file (no other column's pages confirm the row count).
        let alone = Arc::new(schema.project(&[tenant]).unwrap());
        let ours = decode(&data, &meta, (&[0], &[tenant]), &alone, Some((0, "t")));
        let alone_theirs = parquet_rs(&data, &[0], &schema).project(&[tenant]).unwrap();
        assert_eq!(ours.unwrap().unwrap(), alone_theirs);
        // A footer claiming more rows than the pages hold is an error before the constant is
        // sized by it; the gather keeps nothing of the file.
        let mut lying = (*meta).clone();
        let groups: Vec<_> = lying
            .row_groups()
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g = parquet::file::metadata::RowGroupMetaData::builder(g.schema_descr_ptr())
                    .set_num_rows(1 << 40)
                    .set_column_metadata(g.columns().to_vec())
                    .set_total_byte_size(g.total_byte_size())
                    .build()
                    .unwrap();
                g
            })
            .collect();
        lying = ParquetMetaData::new(lying.file_metadata().clone(), groups);
        let mut gather = Gather::new(&schema, 1024).unwrap();
        let err = gather.add(&data, &lying, (&[0], &leaves), Some((tenant, "t")));
        assert!(err.unwrap_err().to_string().contains("rows"));
        assert_eq!(gather.rows(), 0);
        // Not a string: decoded from the file.
        let decimal = schema
            .fields()
            .iter()
            .position(|f| matches!(f.data_type(), DataType::Decimal128(..)))
            .unwrap();
        let ours = decode(
            &data,
            &meta,
            (&[0, 2], &leaves),
            &schema,
            Some((decimal, "1")),
        );
        assert_eq!(ours.unwrap().unwrap(), theirs);
    }

    /// A gather makes room for a batch's rows when its buffers first grow (from the first
    /// file's rows per byte), not file by file; a lone decode makes room for its file alone.
    #[test]
    fn a_gather_makes_room_for_its_batch_once() {
        let (batch, leaves, data, meta) = plain_file(40, 12, Compression::SNAPPY);
        let schema = batch.schema();
        let capacities = |g: &Gather| -> Vec<usize> {
            g.columns
                .iter()
                .map(|c| c.bytes.capacity() + c.offsets.capacity() + c.longs.capacity())
                .collect()
        };
        let mut gather = Gather::new(&schema, 400).unwrap();
        assert!(gather.add(&data, &meta, (&[0], &leaves), None).unwrap());
        let first = capacities(&gather);
        // Nine more files of 40 rows: no value buffer grows (validity, made at the first
        // null, is not measured here).
        for _ in 0..9 {
            assert!(gather.add(&data, &meta, (&[0], &leaves), None).unwrap());
        }
        assert_eq!(gather.rows(), 400);
        assert_eq!(capacities(&gather), first);
        let lone = Gather::new(&schema, 0).map(|mut g| {
            assert!(g.add(&data, &meta, (&[0], &leaves), None).unwrap());
            capacities(&g)
        });
        let lone = lone.unwrap();
        for (i, (l, f)) in lone.iter().zip(&first).enumerate() {
            assert!(l * 5 < *f, "column {i}: {l} vs {f}");
        }
    }

    #[test]
    fn a_cut_page_is_an_error_not_a_panic() {
        let (batch, leaves, data, meta) = plain_file(40, 5, Compression::UNCOMPRESSED);
        let schema = batch.schema();
        // The first product id's length prefix made to run past its page.
        let first = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0)
            .as_bytes()
            .to_vec();
        let mut pattern = (first.len() as u32).to_le_bytes().to_vec();
        pattern.extend_from_slice(&first);
        let (start, len) = meta.row_group(0).column(0).byte_range();
        let mut bytes = data.to_vec();
        let chunk = &bytes[start as usize..(start + len) as usize];
        let at = start as usize
            + chunk
                .windows(pattern.len())
                .position(|w| w == pattern.as_slice())
                .unwrap();
        bytes[at..at + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
        let bad = bytes::Bytes::from(bytes);
        let mut gather = Gather::new(&schema, 1024).unwrap();
        let err = gather.add(&bad, &meta, (&[0], &leaves), None).unwrap_err();
        assert!(err.to_string().contains("column product_id"), "{err}");
        assert_eq!(gather.rows(), 0);
    }
}
