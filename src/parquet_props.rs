//! Parquet writer settings derived from the table's own `write.parquet.*` properties.
//!
//! iceberg 0.10.1's `ParquetWriterBuilder` ignores `write.parquet.compression-codec` (files
//! would come out uncompressed). This is the one place that maps the table's properties to
//! `WriterProperties`, as Java and pyiceberg do, so the codec recorded in the metadata is the
//! codec in the files.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use parquet::basic::{BrotliLevel, Compression, Encoding, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::schema::COMPRESSION_CODEC_PROPERTY;

/// Table property choosing the `embedding` element's Parquet encoding:
/// `byte-stream-split` (default) or `plain`.
pub const EMBEDDING_ENCODING_PROPERTY: &str = "sales-history.embedding-encoding";

/// How the `embedding` list's DOUBLE elements are encoded in new data files (the table
/// property [`EMBEDDING_ENCODING_PROPERTY`]; set at creation by
/// [`TableOptions::embedding_encoding`](crate::TableOptions::embedding_encoding), or later by
/// any engine that edits table properties).
///
/// Measured with `cargo run --release --example bench_scan -- --embedding-encoding …` (50k rows,
/// 1024-dim float32-valued embeddings, Snappy): see the README's scan table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EmbeddingEncoding {
    /// `BYTE_STREAM_SPLIT` (the default): each value's bytes grouped by position, so the
    /// all-zero low bytes of float32 values stored as DOUBLE compress away (~30% fewer bytes
    /// than PLAIN). pyarrow (so pyiceberg) reads it, as the interop tests check; DuckDB and
    /// Trino (so Athena engine 3) document support.
    #[default]
    ByteStreamSplit,
    /// `PLAIN`: values as they are; larger files, readable by every Parquet reader.
    Plain,
}

impl EmbeddingEncoding {
    /// The value of [`EMBEDDING_ENCODING_PROPERTY`] naming this encoding.
    pub fn as_property(self) -> &'static str {
        match self {
            EmbeddingEncoding::ByteStreamSplit => "byte-stream-split",
            EmbeddingEncoding::Plain => "plain",
        }
    }

    /// The encoding a table's properties choose (the default when the property is absent).
    ///
    /// # Errors
    /// [`Error::Config`] naming the property when its value is neither `byte-stream-split`
    /// nor `plain`.
    pub fn from_properties(props: &HashMap<String, String>) -> Result<Self> {
        match props.get(EMBEDDING_ENCODING_PROPERTY).map(String::as_str) {
            None => Ok(EmbeddingEncoding::default()),
            Some(v) => v.parse(),
        }
    }

    fn parquet(self) -> Encoding {
        match self {
            EmbeddingEncoding::ByteStreamSplit => Encoding::BYTE_STREAM_SPLIT,
            EmbeddingEncoding::Plain => Encoding::PLAIN,
        }
    }
}

/// Parses `byte-stream-split` or `plain`, ignoring case and surrounding blanks, and with `_`
/// for `-` (so Parquet's names `BYTE_STREAM_SPLIT` and `PLAIN` work too).
impl std::str::FromStr for EmbeddingEncoding {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "byte-stream-split" => Ok(EmbeddingEncoding::ByteStreamSplit),
            "plain" => Ok(EmbeddingEncoding::Plain),
            _ => Err(Error::config(
                EMBEDDING_ENCODING_PROPERTY,
                format!(
                    "`{}` is not an embedding encoding: expected byte-stream-split or plain",
                    s.trim()
                ),
            )),
        }
    }
}

impl std::fmt::Display for EmbeddingEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_property())
    }
}

/// Iceberg's table property with the codec's level (`write.parquet.compression-level`).
pub const COMPRESSION_LEVEL_PROPERTY: &str = "write.parquet.compression-level";

/// The compression codec of a new table's data files: the table properties
/// [`COMPRESSION_CODEC_PROPERTY`](crate::schema::COMPRESSION_CODEC_PROPERTY) (and
/// [`COMPRESSION_LEVEL_PROPERTY`] for Zstandard), set at creation by
/// [`TableOptions::codec`](crate::TableOptions::codec). A table another engine made with
/// another codec (gzip, lz4, …) is written with its own.
///
/// Measured with `bench_layout --codec …` (see the README's "Which layout"): Zstandard
/// stores the float32-valued `embedding` doubles in fewer bytes than Snappy and decodes them
/// more slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// Snappy, the seed's codec (the default).
    #[default]
    Snappy,
    /// Zstandard at `level` (1 to 22; see [`Codec::zstd`]).
    Zstd {
        /// Compression level, 1 (fastest) to 22 (smallest).
        level: i32,
    },
}

impl Codec {
    /// The Zstandard level of [`Codec::from_str`](std::str::FromStr)'s plain `zstd`
    /// (Iceberg's and parquet-rs's default).
    pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

    /// Zstandard at `level`.
    ///
    /// # Errors
    /// [`Error::Config`] naming [`COMPRESSION_LEVEL_PROPERTY`] when `level` is not within
    /// 1..=22.
    pub fn zstd(level: i32) -> Result<Self> {
        let codec = Codec::Zstd { level };
        codec.validate()?;
        Ok(codec)
    }

    /// Checks the codec's level (see [`Codec::zstd`]).
    ///
    /// # Errors
    /// [`Error::Config`] naming [`COMPRESSION_LEVEL_PROPERTY`] for a level out of range.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Codec::Zstd { level } if !(1..=22).contains(&level) => Err(Error::config(
                COMPRESSION_LEVEL_PROPERTY,
                format!("zstd level {level} is not within 1..=22"),
            )),
            _ => Ok(()),
        }
    }

    /// The value of [`COMPRESSION_CODEC_PROPERTY`](crate::schema::COMPRESSION_CODEC_PROPERTY).
    pub fn as_property(self) -> &'static str {
        match self {
            Codec::Snappy => "snappy",
            Codec::Zstd { .. } => "zstd",
        }
    }

    /// The value of [`COMPRESSION_LEVEL_PROPERTY`], for a codec that has levels.
    pub fn level(self) -> Option<i32> {
        match self {
            Codec::Snappy => None,
            Codec::Zstd { level } => Some(level),
        }
    }
}

/// Parses `snappy`, `zstd` (level [`Codec::DEFAULT_ZSTD_LEVEL`]) or `zstd-N` (level N),
/// ignoring case and surrounding blanks.
impl std::str::FromStr for Codec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "snappy" => return Ok(Codec::Snappy),
            "zstd" => return Codec::zstd(Codec::DEFAULT_ZSTD_LEVEL),
            _ => {}
        }
        if let Some(level) = lower.strip_prefix("zstd-")
            && let Ok(level) = level.parse::<i32>()
        {
            return Codec::zstd(level);
        }
        Err(Error::config(
            COMPRESSION_CODEC_PROPERTY,
            format!(
                "`{}` is not a codec this crate creates tables with: expected snappy, zstd or zstd-N (N in 1..=22)",
                s.trim()
            ),
        ))
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codec::Snappy => f.write_str("snappy"),
            Codec::Zstd { level } => write!(f, "zstd-{level}"),
        }
    }
}

/// Table property capping the (uncompressed) bytes of one `embedding` data page in new data
/// files; [`DEFAULT_EMBEDDING_PAGE_BYTES`] when absent.
pub const EMBEDDING_PAGE_SIZE_PROPERTY: &str = "sales-history.embedding-page-size-bytes";

/// Bytes of one `embedding` data page unless the table sets
/// [`EMBEDDING_PAGE_SIZE_PROPERTY`]: 64 KiB, eight 1024-dim rows (Snappy's own block size).
///
/// Reading one row (a similarity re-rank, a tenant's rows in a sorted month) decodes the
/// whole page holding it, so a page of [`DEFAULT_PAGE_ROW_LIMIT`] 1024-dim rows (512 KiB)
/// cost 64× the row. Measured with `bench_vector --embedding-page-bytes …` and `bench_scan`:
/// see the README's similarity section. The other columns keep their 64-row pages.
pub const DEFAULT_EMBEDDING_PAGE_BYTES: usize = 64 * 1024;

/// Row-group size in rows unless the table says otherwise (`write.parquet.row-group-limit`).
pub const DEFAULT_ROW_GROUP_ROWS: usize = 16_384;

/// Rows per data page unless the table sets `write.parquet.page-row-limit`: small enough that
/// the column index of `tenant_id` / `sold_date` in a tenant-sorted month selects a tenant's
/// rows to within a page or two. The `embedding` column's pages are smaller still (capped in
/// bytes by [`DEFAULT_EMBEDDING_PAGE_BYTES`]).
pub const DEFAULT_PAGE_ROW_LIMIT: usize = 64;

/// Row-group size in (estimated encoded) bytes unless the table says otherwise
/// (`write.parquet.row-group-size-bytes`; 128 MiB, Iceberg's default). A writer buffers one
/// row group in memory, so this bounds the memory of an append when rows are wide.
const DEFAULT_ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;

fn parse<T: std::str::FromStr>(props: &HashMap<String, String>, key: &str) -> Result<Option<T>> {
    props
        .get(key)
        .map(|v| {
            v.trim().parse::<T>().map_err(|_| {
                Error::config(
                    key,
                    format!("table property value `{v}` is not a valid number"),
                )
            })
        })
        .transpose()
}

/// Rows below which a data file is written without dictionary pages (four data pages of
/// [`DEFAULT_PAGE_ROW_LIMIT`] rows).
///
/// A tenant layout writes one file per tenant and month, often a few dozen rows: there a
/// column's dictionary is a second page beside its one data page, saves the codec almost
/// nothing, and every read pays for it (header, decompression, dictionary decode). Decoding
/// the 11 non-embedding columns of such a 60-row file took 51 µs with dictionaries and 32 µs
/// without (parquet-rs, single thread, 200 files of one month; see CHANGELOG).
///
/// In larger files a column keeps its dictionary unless at least half of the values in the
/// file's first rows are distinct (`product_id`, `image_s3_key`, `sold_date` and `sold_price`
/// of a month of sales): such a column is written plain, so a read of a few rows through the
/// page index does not fetch and decode a dictionary holding every value of the file.
pub const DICTIONARY_MIN_ROWS: usize = 256;

/// Values of a file's first rows at least half of which must be distinct (and non-null) for
/// a column to be written without a dictionary ([`without_dictionaries_for_distinct`]); fewer
/// decide nothing.
const DISTINCT_SAMPLE_MIN: usize = 64;

/// `props` with dictionaries turned off for every top-level column of `first` (a file's first
/// rows, as the writer receives them) whose non-null values are at least half distinct.
///
/// parquet-rs keeps a column's dictionary until it outgrows the dictionary page limit (1 MiB);
/// parquet-mr falls back to plain when the dictionary does not make the column smaller, after
/// its first page. A near-unique column (`product_id`, `image_s3_key`, `sold_date`,
/// `sold_price` in a month of sales) gains nothing from a dictionary, and a reader that wants
/// a few rows of it (a tenant's rows in a sorted month, selected by the page index) must read
/// and decode the whole dictionary: 286 KB of a month file's 11 non-embedding columns, 0.57 MB
/// of the 1.4 MB one tenant-month read in `bench_layout`. Deciding on the first rows, as
/// parquet-mr does, keeps the choice to one look at at most one batch (1,024 rows from this
/// crate's writers). Columns whose dictionary is already off, and types without a fixed or
/// byte-array value (lists, booleans), are left as they are.
pub(crate) fn without_dictionaries_for_distinct(
    props: &WriterProperties,
    first: &RecordBatch,
) -> WriterProperties {
    let plain: Vec<ColumnPath> = first
        .schema()
        .fields()
        .iter()
        .zip(first.columns())
        .map(|(field, column)| (ColumnPath::from(field.name().as_str()), column))
        .filter(|(path, column)| {
            props.dictionary_enabled(path) && mostly_distinct(column.as_ref()) == Some(true)
        })
        .map(|(path, _)| path)
        .collect();
    if plain.is_empty() {
        return props.clone();
    }
    plain
        .into_iter()
        .fold(props.clone().into_builder(), |b, path| {
            b.set_column_dictionary_enabled(path, false)
        })
        .build()
}

/// Whether at least half of `column`'s non-null values are distinct; `None` when it has fewer
/// than [`DISTINCT_SAMPLE_MIN`] of them or its values are neither byte arrays nor of a fixed
/// width.
fn mostly_distinct(column: &dyn Array) -> Option<bool> {
    let present = column.len() - column.null_count();
    if present < DISTINCT_SAMPLE_MIN {
        return None;
    }
    let data = column.to_data();
    let values: Box<dyn Iterator<Item = Option<&[u8]>> + '_> = match column.data_type() {
        DataType::Utf8 => Box::new(
            column
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::LargeUtf8 => Box::new(
            column
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::Utf8View => {
            Box::new(column.as_string_view().iter().map(|v| v.map(str::as_bytes)))
        }
        DataType::Binary => Box::new(column.as_binary::<i32>().iter()),
        DataType::LargeBinary => Box::new(column.as_binary::<i64>().iter()),
        DataType::FixedSizeBinary(_) => Box::new(column.as_fixed_size_binary().iter()),
        t => {
            let width = t.primitive_width()?;
            let start = data.offset().checked_mul(width)?;
            let end = start.checked_add(column.len().checked_mul(width)?)?;
            let bytes = data.buffers().first()?.as_slice().get(start..end)?;
            Box::new(
                bytes
                    .chunks_exact(width)
                    .enumerate()
                    .map(|(i, v)| column.is_valid(i).then_some(v)),
            )
        }
    };
    let seen: HashSet<&[u8]> = values.flatten().collect();
    Some(seen.len() * 2 >= present)
}

/// Builds the writer properties for a table with these properties.
pub(crate) fn writer_properties(props: &HashMap<String, String>) -> Result<WriterProperties> {
    file_properties(props, true)
}

/// Whether a file of `rows` rows is written with dictionary pages ([`DICTIONARY_MIN_ROWS`]).
pub(crate) fn dictionaries(rows: usize) -> bool {
    rows >= DICTIONARY_MIN_ROWS
}

/// [`writer_properties`], without any dictionary unless `dictionaries`.
pub(crate) fn file_properties(
    props: &HashMap<String, String>,
    dictionaries: bool,
) -> Result<WriterProperties> {
    let builder = properties_builder(props)?;
    Ok(if dictionaries {
        builder.build()
    } else {
        builder.set_dictionary_enabled(false).build()
    })
}

fn properties_builder(
    props: &HashMap<String, String>,
) -> Result<parquet::file::properties::WriterPropertiesBuilder> {
    let level: Option<i32> = parse(props, COMPRESSION_LEVEL_PROPERTY)?;
    let codec = props
        .get(COMPRESSION_CODEC_PROPERTY)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| "snappy".to_string());
    let bad_level =
        |e: parquet::errors::ParquetError| Error::config(COMPRESSION_LEVEL_PROPERTY, e.to_string());
    let compression = match codec.as_str() {
        "snappy" => Compression::SNAPPY,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        "lz4" => Compression::LZ4_RAW,
        "brotli" => Compression::BROTLI(match level {
            Some(l) => BrotliLevel::try_new(l.max(0) as u32).map_err(bad_level)?,
            None => BrotliLevel::default(),
        }),
        "zstd" => Compression::ZSTD(match level {
            Some(l) => ZstdLevel::try_new(l).map_err(bad_level)?,
            None => ZstdLevel::default(),
        }),
        "gzip" => Compression::GZIP(match level {
            Some(l) => GzipLevel::try_new(l.max(0) as u32).map_err(bad_level)?,
            None => GzipLevel::default(),
        }),
        other => {
            return Err(Error::config(
                COMPRESSION_CODEC_PROPERTY,
                format!(
                    "table property is `{other}`, a codec this crate cannot write (snappy, zstd, gzip, lz4, brotli, uncompressed)"
                ),
            ));
        }
    };
    let row_group_rows = parse::<usize>(props, "write.parquet.row-group-limit")?
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_ROW_GROUP_ROWS);
    let row_group_bytes = parse::<usize>(props, "write.parquet.row-group-size-bytes")?
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_ROW_GROUP_BYTES);
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_max_row_group_bytes(Some(row_group_bytes))
        .set_created_by(concat!("sales-history ", env!("CARGO_PKG_VERSION")).to_string());
    if let Some(n) = parse::<usize>(props, "write.parquet.page-size-bytes")? {
        builder = builder.set_data_page_size_limit(n);
    }
    let page_rows = parse::<usize>(props, "write.parquet.page-row-limit")?
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PAGE_ROW_LIMIT);
    // The writer checks page limits after each mini-batch: a mini-batch per page.
    builder = builder
        .set_data_page_row_count_limit(page_rows)
        .set_write_batch_size(page_rows);
    if let Some(n) = parse::<usize>(props, "write.parquet.dict-size-bytes")? {
        builder = builder.set_dictionary_page_size_limit(n);
    }
    // Embedding values are random doubles: a dictionary never pays off, and min/max bounds of
    // the element are useless for pruning while costing a pass over every value.
    let element = ColumnPath::from(vec![
        "embedding".to_string(),
        "list".to_string(),
        "element".to_string(),
    ]);
    // BYTE_STREAM_SPLIT groups the values' bytes by position: float32 values stored as DOUBLE
    // (what embedding models emit) have all-zero low bytes, which Snappy/Zstd then squeeze
    // (pyarrow measured 62.8 MB → 43.5 MB for 10k rows); read by pyarrow, DuckDB and Trino.
    // The table property `sales-history.embedding-encoding=plain` turns it off.
    let encoding = EmbeddingEncoding::from_properties(props)?.parquet();
    // Small embedding pages: a row read decodes its page whole. The writer checks the limit
    // after each mini-batch, which for a list column ends on a row boundary (one row of a
    // 1024-element list exceeds `write_batch_size` levels), so pages end within a row of it.
    let page_bytes = parse::<usize>(props, EMBEDDING_PAGE_SIZE_PROPERTY)?
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_EMBEDDING_PAGE_BYTES);
    builder = builder
        .set_column_data_page_size_limit(element.clone(), page_bytes)
        .set_column_dictionary_enabled(element.clone(), false)
        .set_column_encoding(element.clone(), encoding)
        .set_column_statistics_enabled(element, EnabledStatistics::None);
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns at least half distinct in a file's first rows lose their dictionary; repeated
    /// ones, lists, too few values and columns already without one keep their setting.
    #[test]
    fn near_unique_columns_are_written_without_dictionaries() {
        use arrow_array::{ArrayRef, Decimal128Array, Int32Array, StringArray};
        use arrow_schema::{Field, Schema};
        use std::sync::Arc;
        let n = 200;
        let unique = StringArray::from_iter_values((0..n).map(|i| format!("p-{i}")));
        // 100 distinct of 200: exactly half, so plain.
        let half = StringArray::from_iter_values((0..n).map(|i| format!("h-{}", i / 2)));
        // 67 distinct of 200: repeated, so a dictionary.
        let third = StringArray::from_iter_values((0..n).map(|i| format!("t-{}", i / 3)));
        // 101 distinct of 200: the first half unique, the second one price.
        let prices = Decimal128Array::from_iter_values((0..n).map(|i| 1000 + i.min(100) as i128))
            .with_precision_and_scale(10, 2)
            .unwrap();
        // Unique, but only 50 non-null values: too few to decide.
        let sparse = Int32Array::from_iter((0..n).map(|i| (i % 4 == 0).then_some(i)));
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("unique", Arc::new(unique)),
            ("half", Arc::new(half)),
            ("third", Arc::new(third)),
            ("price", Arc::new(prices)),
            ("sparse", Arc::new(sparse)),
        ];
        let schema = Schema::new(
            columns
                .iter()
                .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        let base = writer_properties(&HashMap::new()).unwrap();
        let props = without_dictionaries_for_distinct(&base, &batch);
        let dict = |name: &str| props.dictionary_enabled(&ColumnPath::from(name));
        assert!(!dict("unique"));
        assert!(!dict("half"));
        assert!(dict("third"));
        assert!(!dict("price"));
        assert!(dict("sparse"));
        // The rest of the properties are the table's.
        assert_eq!(
            props.compression(&ColumnPath::from("unique")),
            Compression::SNAPPY
        );
        assert_eq!(props.data_page_row_count_limit(), DEFAULT_PAGE_ROW_LIMIT);
        // A file already without dictionaries stays so; a small batch decides nothing.
        let none = file_properties(&HashMap::new(), false).unwrap();
        assert!(
            !without_dictionaries_for_distinct(&none, &batch)
                .dictionary_enabled(&ColumnPath::from("third"))
        );
        let few = without_dictionaries_for_distinct(&base, &batch.slice(0, 40));
        assert!(few.dictionary_enabled(&ColumnPath::from("unique")));
        // A slice reads its own values (the offset into a fixed-width buffer): the second
        // half's one price is repeated.
        let tail = without_dictionaries_for_distinct(&base, &batch.slice(100, 100));
        assert!(tail.dictionary_enabled(&ColumnPath::from("price")));
        assert!(!tail.dictionary_enabled(&ColumnPath::from("unique")));
    }

    #[test]
    fn codec_comes_from_the_table() {
        let p = writer_properties(&HashMap::new()).unwrap();
        assert_eq!(p.compression(&ColumnPath::from("x")), Compression::SNAPPY);
        let zstd = HashMap::from([(COMPRESSION_CODEC_PROPERTY.to_string(), "zstd".to_string())]);
        assert!(matches!(
            writer_properties(&zstd)
                .unwrap()
                .compression(&ColumnPath::from("x")),
            Compression::ZSTD(_)
        ));
        let bad = HashMap::from([(
            COMPRESSION_CODEC_PROPERTY.to_string(),
            "brotli9".to_string(),
        )]);
        assert!(writer_properties(&bad).is_err());
    }

    #[test]
    fn the_embedding_element_is_byte_stream_split_unless_the_table_says_plain() {
        let element = ColumnPath::from(vec![
            "embedding".to_string(),
            "list".to_string(),
            "element".to_string(),
        ]);
        let p = writer_properties(&HashMap::new()).unwrap();
        assert_eq!(p.encoding(&element), Some(Encoding::BYTE_STREAM_SPLIT));
        assert_eq!(p.encoding(&ColumnPath::from("tenant_id")), None);
        let plain = HashMap::from([(EMBEDDING_ENCODING_PROPERTY.to_string(), "plain".to_string())]);
        assert_eq!(
            writer_properties(&plain).unwrap().encoding(&element),
            Some(Encoding::PLAIN)
        );
        let bad = HashMap::from([(EMBEDDING_ENCODING_PROPERTY.to_string(), "rle".to_string())]);
        assert!(writer_properties(&bad).is_err());
    }

    #[test]
    fn embedding_encodings_round_trip_through_their_property_values() {
        for e in [EmbeddingEncoding::ByteStreamSplit, EmbeddingEncoding::Plain] {
            assert_eq!(e.as_property().parse::<EmbeddingEncoding>().unwrap(), e);
            let parquet_name = e.as_property().to_ascii_uppercase().replace('-', "_");
            assert_eq!(parquet_name.parse::<EmbeddingEncoding>().unwrap(), e);
            assert_eq!(e.to_string(), e.as_property());
            let props = HashMap::from([(
                EMBEDDING_ENCODING_PROPERTY.to_string(),
                e.as_property().to_string(),
            )]);
            assert_eq!(EmbeddingEncoding::from_properties(&props).unwrap(), e);
        }
        assert_eq!(
            EmbeddingEncoding::from_properties(&HashMap::new()).unwrap(),
            EmbeddingEncoding::ByteStreamSplit
        );
        match "delta".parse::<EmbeddingEncoding>() {
            Err(Error::Config { key, reason }) => {
                assert_eq!(key, EMBEDDING_ENCODING_PROPERTY);
                assert!(reason.contains("delta"), "{reason}");
            }
            other => panic!("expected a Config error, got {other:?}"),
        }
    }

    /// `Codec`'s names parse back to it; levels out of range and unknown names are typed
    /// errors naming their property; the writer settings of a table created with it use it.
    #[test]
    fn codecs_round_trip_and_set_the_writer_codec() {
        for (name, codec) in [
            ("snappy", Codec::Snappy),
            (" ZSTD ", Codec::Zstd { level: 3 }),
            ("zstd-1", Codec::Zstd { level: 1 }),
            ("zstd-22", Codec::Zstd { level: 22 }),
        ] {
            let parsed: Codec = name.parse().unwrap();
            assert_eq!(parsed, codec, "{name}");
            assert_eq!(codec.to_string().parse::<Codec>().unwrap(), codec);
            let options = crate::TableOptions::default().codec(codec);
            let props = crate::schema::table_properties(&options);
            assert_eq!(
                props.get(COMPRESSION_CODEC_PROPERTY).map(String::as_str),
                Some(codec.as_property())
            );
            assert_eq!(
                props.get(COMPRESSION_LEVEL_PROPERTY),
                codec.level().map(|l| l.to_string()).as_ref()
            );
            let want = match codec {
                Codec::Snappy => Compression::SNAPPY,
                Codec::Zstd { level } => Compression::ZSTD(ZstdLevel::try_new(level).unwrap()),
            };
            let writer = writer_properties(&props).unwrap();
            assert_eq!(writer.compression(&ColumnPath::from("tenant_id")), want);
        }
        for (name, key) in [
            ("zstd-0", COMPRESSION_LEVEL_PROPERTY),
            ("zstd-23", COMPRESSION_LEVEL_PROPERTY),
            ("zstd-x", COMPRESSION_CODEC_PROPERTY),
            ("lzo", COMPRESSION_CODEC_PROPERTY),
        ] {
            match name.parse::<Codec>() {
                Err(Error::Config { key: k, .. }) => assert_eq!(k, key, "{name}"),
                other => panic!("{name}: expected a Config error, got {other:?}"),
            }
        }
        assert!(Codec::zstd(-1).is_err());
        assert!(Codec::Zstd { level: 30 }.validate().is_err());
        assert_eq!(Codec::default(), Codec::Snappy);
    }

    /// Rows at which each data page of leaf column `leaf` starts, from the offset index of a
    /// file written with `props`.
    fn page_starts(props: &HashMap<String, String>, rows: usize, leaf: usize) -> Vec<i64> {
        let records = crate::record::test_rows(rows, 1024);
        let batch = crate::SaleRecord::to_record_batch(&records).unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            &mut buf,
            batch.schema(),
            Some(writer_properties(props).unwrap()),
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new_with_options(
            bytes::Bytes::from(buf),
            parquet::file::serialized_reader::ReadOptionsBuilder::new()
                .with_page_index()
                .build(),
        )
        .unwrap();
        use parquet::file::reader::FileReader;
        let index = reader.metadata().offset_index().unwrap();
        index[0][leaf]
            .page_locations()
            .iter()
            .map(|p| p.first_row_index)
            .collect()
    }

    #[test]
    fn embedding_pages_are_capped_in_bytes_other_columns_in_rows() {
        let element = ColumnPath::from(vec![
            "embedding".to_string(),
            "list".to_string(),
            "element".to_string(),
        ]);
        let p = writer_properties(&HashMap::new()).unwrap();
        assert_eq!(
            p.column_data_page_size_limit(&element),
            DEFAULT_EMBEDDING_PAGE_BYTES
        );
        assert_eq!(
            p.column_data_page_size_limit(&ColumnPath::from("tenant_id")),
            p.data_page_size_limit()
        );
        let bad = HashMap::from([(EMBEDDING_PAGE_SIZE_PROPERTY.to_string(), "64k".to_string())]);
        assert!(matches!(
            writer_properties(&bad),
            Err(Error::Config { key, .. }) if key == EMBEDDING_PAGE_SIZE_PROPERTY
        ));
        // Written: 8-row embedding pages (64 KiB of 1024 doubles), 64-row pages elsewhere.
        let leaf_of = |name: &str| {
            crate::schema::arrow_schema()
                .fields()
                .iter()
                .position(|f| f.name() == name)
                .unwrap()
        };
        let (tenant, embedding) = (leaf_of("tenant_id"), leaf_of("embedding"));
        let none = HashMap::new();
        assert_eq!(page_starts(&none, 200, tenant), vec![0, 64, 128, 192]);
        let starts = page_starts(&none, 200, embedding);
        assert_eq!(starts, (0..200).step_by(8).collect::<Vec<i64>>());
        // The table's own size: 32 KiB pages hold 4 rows.
        let small = HashMap::from([(
            EMBEDDING_PAGE_SIZE_PROPERTY.to_string(),
            "32768".to_string(),
        )]);
        let starts = page_starts(&small, 40, embedding);
        assert_eq!(starts, (0..40).step_by(4).collect::<Vec<i64>>());
    }

    #[test]
    fn row_groups_are_bounded_in_rows_and_bytes() {
        let p = writer_properties(&HashMap::new()).unwrap();
        assert_eq!(p.max_row_group_row_count(), Some(DEFAULT_ROW_GROUP_ROWS));
        assert_eq!(p.max_row_group_bytes(), Some(DEFAULT_ROW_GROUP_BYTES));
        let small = HashMap::from([(
            "write.parquet.row-group-size-bytes".to_string(),
            "8388608".to_string(),
        )]);
        assert_eq!(
            writer_properties(&small).unwrap().max_row_group_bytes(),
            Some(8 << 20)
        );
    }
}
