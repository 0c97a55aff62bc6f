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

use super::embedding::{corrupt, decode_levels, single_run, take_prefixed};
use crate::error::Result;

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

/// The kind of a leaf this decoder reads into `field`, or `None` (parquet-rs reads it).
fn kind(descr: &ColumnDescriptor, field: &Field) -> Option<Kind> {
    if descr.max_rep_level() != 0 || descr.max_def_level() > 1 {
        return None;
    }
    // A null in a column the output declares required is parquet-rs's to report.
    if descr.max_def_level() == 1 && !field.is_nullable() {
        return None;
    }
    let logical = descr.logical_type_ref();
    match (field.data_type(), descr.physical_type()) {
        (DataType::Utf8, PhysicalType::BYTE_ARRAY)
            if matches!(logical, Some(LogicalType::String)) =>
        {
            Some(Kind::String)
        }
        (DataType::Decimal128(p, s), PhysicalType::INT64)
            if matches!(logical, Some(LogicalType::Decimal { scale, precision })
                if *scale == i32::from(*s) && *precision == i32::from(*p)) =>
        {
            Some(Kind::Decimal(*p, *s))
        }
        (DataType::Timestamp(TimeUnit::Microsecond, tz), PhysicalType::INT64)
            if matches!(logical, Some(LogicalType::Timestamp {
                is_adjusted_to_u_t_c,
                unit: parquet::basic::TimeUnit::MICROS,
            }) if *is_adjusted_to_u_t_c == tz.is_some()) =>
        {
            Some(Kind::Micros)
        }
        _ => None,
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
    fn new(kind: Kind, rows: usize) -> Values {
        let (offsets, longs) = match kind {
            Kind::String => (Vec::with_capacity(rows + 1), Vec::new()),
            _ => (Vec::new(), Vec::with_capacity(rows)),
        };
        let mut v = Values {
            kind,
            bytes: Vec::new(),
            offsets,
            longs,
            valid: None,
            rows: 0,
        };
        if kind == Kind::String {
            v.offsets.push(0);
        }
        v
    }

    /// Adds one data page: `entries` rows, their definition levels (empty for a required
    /// column, or when `all_present`) and PLAIN values. `false`: a page this decoder does
    /// not read.
    fn page(&mut self, entries: usize, levels: Option<&[u8]>, values: &[u8]) -> Result<bool> {
        let present = levels.map_or(entries, |l| l.iter().filter(|&&d| d == 1).count());
        match self.kind {
            Kind::String => {
                let mut rest = values;
                self.bytes.reserve(values.len().saturating_sub(4 * present));
                let mut next = |bytes: &mut Vec<u8>| -> Result<()> {
                    let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                        return Err(corrupt("a PLAIN string page ends early".into()));
                    };
                    let len = u32::from_le_bytes(*len) as usize;
                    let Some((value, tail)) = tail.split_at_checked(len) else {
                        return Err(corrupt("a PLAIN string runs past its page".into()));
                    };
                    bytes.extend_from_slice(value);
                    rest = tail;
                    Ok(())
                };
                match levels {
                    None => {
                        for _ in 0..entries {
                            next(&mut self.bytes)?;
                            self.offsets.push(offset(self.bytes.len())?);
                        }
                    }
                    Some(levels) => {
                        for &d in levels {
                            if d == 1 {
                                next(&mut self.bytes)?;
                            }
                            self.offsets.push(offset(self.bytes.len())?);
                        }
                    }
                }
            }
            Kind::Decimal(..) | Kind::Micros => {
                let Some(values) = values.get(..present * 8) else {
                    return Err(corrupt(format!(
                        "a PLAIN INT64 page holds {} bytes for {present} values",
                        values.len()
                    )));
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
        Ok(true)
    }

    fn finish(self, field: &Field) -> Result<ArrayRef> {
        let nulls = self
            .valid
            .map(NullBuffer::from)
            .filter(|n| n.null_count() > 0);
        Ok(match self.kind {
            Kind::String => Arc::new(StringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(self.offsets)),
                Buffer::from_vec(self.bytes),
                nulls,
            )?),
            Kind::Decimal(p, s) => Arc::new(
                Decimal128Array::try_new(self.longs.into_iter().map(i128::from).collect(), nulls)?
                    .with_precision_and_scale(p, s)?,
            ),
            Kind::Micros => {
                let tz = match field.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(
                    TimestampMicrosecondArray::try_new(ScalarBuffer::from(self.longs), nulls)?
                        .with_timezone_opt(tz),
                )
            }
        })
    }
}

fn offset(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| corrupt("a string column of 2 GiB or more in one turn".into()))
}

/// Decodes leaves `leaves` (one per field of `schema`, in order) of `row_groups` into one
/// batch of `schema`; `Ok(None)` when a column chunk is not one this decoder reads.
pub(crate) fn decode<R: ChunkReader + Clone + 'static>(
    data: &R,
    metadata: &ParquetMetaData,
    row_groups: &[usize],
    leaves: &[usize],
    schema: &SchemaRef,
) -> Result<Option<RecordBatch>> {
    let descr = metadata.file_metadata().schema_descr();
    if leaves.len() != schema.fields().len() {
        return Ok(None);
    }
    let mut kinds = Vec::with_capacity(leaves.len());
    for (&leaf, field) in leaves.iter().zip(schema.fields()) {
        if leaf >= descr.num_columns() {
            return Ok(None);
        }
        let Some(k) = kind(&descr.column(leaf), field) else {
            return Ok(None);
        };
        kinds.push(k);
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
    let reader = Arc::new(data.clone());
    let mut levels = Vec::new();
    let mut columns = Vec::with_capacity(leaves.len());
    for ((&leaf, field), k) in leaves.iter().zip(schema.fields()).zip(kinds) {
        let mut out = Values::new(k, rows);
        let max_def = descr.column(leaf).max_def_level();
        for &rg in row_groups {
            let group = metadata.row_group(rg);
            let group_rows = usize::try_from(group.num_rows()).unwrap_or(0);
            let chunk = group.column(leaf);
            let mut pages = SerializedPageReader::new(reader.clone(), chunk, group_rows, None)?;
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
                            take_prefixed(&mut rest)?
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
                        let (r, d) = (*rep_levels_byte_len as usize, *def_levels_byte_len as usize);
                        let (Some(def), Some(values)) = (buf.get(r..r + d), buf.get(r + d..))
                        else {
                            return Err(corrupt("level lengths exceed the page".into()));
                        };
                        (*num_values as usize, def, values)
                    }
                    _ => return Ok(None),
                };
                let levels = match max_def {
                    0 => None,
                    _ if single_run(def, 1, entries) == Some(1) => None,
                    _ => {
                        decode_levels(def, 1, entries, &mut levels)?;
                        Some(levels.as_slice())
                    }
                };
                if !out.page(entries, levels, values)? {
                    return Ok(None);
                }
            }
            if out.rows - before != group_rows {
                return Err(corrupt(format!(
                    "row group {rg} holds {group_rows} rows, column {} pages {}",
                    field.name(),
                    out.rows - before
                )));
            }
        }
        columns.push(out.finish(field)?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(Some(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?))
}
