//! The Parquet file writer of every data file this crate writes (appends, the appender,
//! compaction, delete rewrites): iceberg's [`FileWriter`] trait over parquet-rs's low-level
//! [`SerializedFileWriter`], in place of iceberg 0.10.1's `ParquetWriter`.
//!
//! **Why it exists.** A compaction (and a large append) is bound by its writer, and the
//! writer's time went to parquet-rs's generic path for the one wide column: list levels
//! built value by value (`LevelInfoBuilder`), BYTE_STREAM_SPLIT done a byte at a time, and
//! the whole row group buffered in a `Vec` grown by doubling before one write
//! (`AsyncArrowWriter`). Here:
//! - the 11 narrow columns are encoded by parquet-rs's own `ArrowColumnWriter`s, as before;
//! - the `embedding` column (`list<double>`) is encoded by [`EmbeddingChunk`]: levels as runs
//!   straight from the list offsets, the byte-stream split eight values at a time through
//!   an 8×8 byte transpose, pages compressed by parquet-rs's own codec and written with its
//!   page writer (so page headers and the offset index are parquet-rs's);
//! - the file goes out in 1 MiB pieces as row groups close, not as one buffer per row group.
//!
//! The files are the same Parquet: same schema, encodings, codec, page sizes and row
//! groups; the tests compare them with parquet-rs's `ArrowWriter` output column by column and
//! read them back with parquet-rs, pyiceberg and our decoder.
//!
//! **What is rebuilt.** iceberg's `parquet_to_data_file_builder` (column sizes, value, null
//! and NaN counts, bounds from the column statistics, split offsets) is `pub(crate)`;
//! [`data_file_builder`] does the same from the footer, tested against iceberg's writer.
//!
//! **When it goes.** When parquet-rs encodes BYTE_STREAM_SPLIT and list levels as fast
//! (apache/arrow-rs#10006 is the decode side of the same loop), go back to iceberg's
//! `ParquetWriterBuilder` in `write.rs`. [`EMBEDDING_ENCODE_ENV`] chooses the writer for a
//! process: `parquet` turns the own embedding encoder off (parquet-rs's encoder inside this
//! writer), `iceberg` selects iceberg's `ParquetWriter` (the writer before this one): the
//! benchmarks' same-run baselines.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{Array, ArrayRef, Float64Array, ListArray, RecordBatch};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, SchemaRef as ArrowSchemaRef};
use bytes::Bytes;
use iceberg::io::{FileWrite, OutputFile};
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Datum, PrimitiveType, SchemaRef, Struct, Type,
};
use iceberg::writer::CurrentFileStatus;
use iceberg::writer::file_writer::{
    FileWriter, FileWriterBuilder, ParquetWriter, ParquetWriterBuilder,
};
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::compression::{Codec, CodecOptionsBuilder, create_codec};
use parquet::file::metadata::{
    ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats, ParquetMetaData,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};

/// Environment variable choosing how every data file of the process is written: `ours` (the
/// default: this crate's writer and embedding encoder), `parquet` (this crate's writer with
/// parquet-rs's `ArrowColumnWriter` for the embedding column) or `iceberg` (iceberg 0.10.1's
/// `ParquetWriter`, the writer before this crate had its own). The last two are the
/// benchmarks' baselines; the files are the same Parquet either way. Not for tables in use:
/// `iceberg` keeps iceberg 0.10.1's column bounds, which leave out a row group whose
/// statistic parquet-rs truncated (a string over 64 bytes), so a file's bounds can be
/// narrower than its values (this crate's writer keeps the truncated bound).
pub const EMBEDDING_ENCODE_ENV: &str = "SALES_HISTORY_EMBEDDING_ENCODE";

/// Bytes of one piece of a file handed to storage: written as row groups close, so a row
/// group is never copied into one buffer of its own size.
const PIECE_BYTES: usize = 1 << 20;

type IcebergResult<T> = iceberg::Result<T>;

fn parquet_err(what: &str) -> impl FnOnce(parquet::errors::ParquetError) -> iceberg::Error + '_ {
    move |e| iceberg::Error::new(iceberg::ErrorKind::Unexpected, what.to_string()).with_source(e)
}

fn unexpected(message: impl Into<String>) -> iceberg::Error {
    iceberg::Error::new(iceberg::ErrorKind::Unexpected, message.into())
}

/// Which writer writes data files ([`EMBEDDING_ENCODE_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoder {
    /// This writer with the own embedding encoder (the default).
    Ours,
    /// This writer with parquet-rs's encoder for the embedding column.
    Parquet,
    /// iceberg 0.10.1's `ParquetWriter` (parquet-rs's `AsyncArrowWriter`): the writer before
    /// this one, kept as the benchmarks' same-run baseline.
    Iceberg,
}

impl Encoder {
    fn from_env() -> Encoder {
        match std::env::var(EMBEDDING_ENCODE_ENV)
            .as_deref()
            .map(str::trim)
        {
            Ok("parquet") => Encoder::Parquet,
            Ok("iceberg") => Encoder::Iceberg,
            _ => Encoder::Ours,
        }
    }
}

/// Builds [`ParquetFile`]s with the table's writer properties and schema (each file's Arrow
/// schema carries the Iceberg field ids).
#[derive(Clone, Debug)]
pub(crate) enum ParquetFileBuilder {
    Ours(OwnFileBuilder),
    /// iceberg's writer, built at the file's first rows (which decide its dictionaries, as
    /// for this crate's writer).
    Iceberg {
        props: WriterProperties,
        schema: SchemaRef,
    },
}

impl ParquetFileBuilder {
    pub(crate) fn new(props: WriterProperties, schema: SchemaRef) -> Self {
        // Content-defined chunking is applied by parquet-rs's `ArrowWriter` only.
        let encoder = match props.content_defined_chunking() {
            Some(_) => Encoder::Iceberg,
            None => Encoder::from_env(),
        };
        match encoder {
            Encoder::Iceberg => ParquetFileBuilder::Iceberg { props, schema },
            e => ParquetFileBuilder::Ours(OwnFileBuilder {
                props,
                schema,
                own_embedding: e == Encoder::Ours,
            }),
        }
    }

    /// This crate's writer with the own embedding encoder on or off (tests compare both).
    #[cfg(test)]
    pub(crate) fn with_own_embedding(self, on: bool) -> Self {
        match self {
            ParquetFileBuilder::Ours(b) => ParquetFileBuilder::Ours(OwnFileBuilder {
                own_embedding: on,
                ..b
            }),
            other => other,
        }
    }
}

impl FileWriterBuilder for ParquetFileBuilder {
    type R = ParquetFile;

    async fn build(&self, output_file: OutputFile) -> IcebergResult<ParquetFile> {
        Ok(match self {
            ParquetFileBuilder::Ours(b) => ParquetFile::Ours(Box::new(OwnFile {
                schema: b.schema.clone(),
                props: b.props.clone(),
                own_embedding: b.own_embedding,
                output: output_file,
                open: None,
                rows: 0,
                nan_counts: HashMap::new(),
                failed: false,
            })),
            ParquetFileBuilder::Iceberg { props, schema } => {
                ParquetFile::IcebergPending(Box::new(PendingFile {
                    props: props.clone(),
                    schema: schema.clone(),
                    output: Some(output_file),
                }))
            }
        })
    }
}

/// What this crate's writer is built from.
#[derive(Clone, Debug)]
pub(crate) struct OwnFileBuilder {
    props: WriterProperties,
    schema: SchemaRef,
    /// `false` when [`EMBEDDING_ENCODE_ENV`] is `parquet`.
    own_embedding: bool,
}

/// One data file being written.
pub(crate) enum ParquetFile {
    Ours(Box<OwnFile>),
    IcebergPending(Box<PendingFile>),
    Iceberg(Box<ParquetWriter>),
}

/// iceberg's writer before the file's first rows (`output` taken when it is built).
pub(crate) struct PendingFile {
    props: WriterProperties,
    schema: SchemaRef,
    output: Option<OutputFile>,
}

impl FileWriter for ParquetFile {
    async fn write(&mut self, batch: &RecordBatch) -> IcebergResult<()> {
        if let ParquetFile::IcebergPending(pending) = self {
            let PendingFile {
                props,
                schema,
                output,
            } = pending.as_mut();
            if batch.num_rows() == 0 {
                return Ok(());
            }
            let output = output
                .take()
                .ok_or_else(|| unexpected("the data file writer failed on an earlier batch"))?;
            let props = crate::parquet_props::without_dictionaries_for_distinct(props, batch);
            let writer = ParquetWriterBuilder::new(props, schema.clone())
                .build(output)
                .await?;
            *self = ParquetFile::Iceberg(Box::new(writer));
        }
        match self {
            ParquetFile::Ours(f) => f.write(batch).await,
            ParquetFile::Iceberg(f) => f.write(batch).await,
            ParquetFile::IcebergPending(_) => Err(unexpected("the file is not open")),
        }
    }

    async fn close(self) -> IcebergResult<Vec<DataFileBuilder>> {
        match self {
            ParquetFile::Ours(f) => f.close().await,
            ParquetFile::Iceberg(f) => f.close().await,
            // No rows: no file, as iceberg's writer does.
            ParquetFile::IcebergPending(_) => Ok(Vec::new()),
        }
    }
}

impl CurrentFileStatus for ParquetFile {
    fn current_file_path(&self) -> String {
        match self {
            ParquetFile::Ours(f) => f.output.location().to_string(),
            ParquetFile::Iceberg(f) => f.current_file_path(),
            ParquetFile::IcebergPending(pending) => pending
                .output
                .as_ref()
                .map(|o| o.location().to_string())
                .unwrap_or_default(),
        }
    }

    fn current_row_num(&self) -> usize {
        match self {
            ParquetFile::Ours(f) => f.rows,
            ParquetFile::Iceberg(f) => f.current_row_num(),
            ParquetFile::IcebergPending(_) => 0,
        }
    }

    fn current_written_size(&self) -> usize {
        match self {
            ParquetFile::Ours(f) => f.open.as_ref().map_or(0, |o| {
                o.parquet.bytes_written() + o.group.as_ref().map_or(0, Group::estimated_bytes)
            }),
            ParquetFile::Iceberg(f) => f.current_written_size(),
            ParquetFile::IcebergPending(_) => 0,
        }
    }
}

/// One data file being written by this crate's writer (opened at its first rows).
pub(crate) struct OwnFile {
    schema: SchemaRef,
    props: WriterProperties,
    own_embedding: bool,
    output: OutputFile,
    open: Option<Open>,
    rows: usize,
    nan_counts: HashMap<i32, u64>,
    /// A write failed: the file is unusable.
    failed: bool,
}

/// What an open file holds: the storage writer, parquet-rs's file writer over the piece
/// sink, and the row group being filled.
struct Open {
    file: Box<dyn FileWrite>,
    parquet: SerializedFileWriter<Sink>,
    pieces: Pieces,
    factory: ArrowRowGroupWriterFactory,
    arrow_schema: ArrowSchemaRef,
    /// Leaves (parquet column indices) of each top-level field.
    field_leaves: Vec<std::ops::Range<usize>>,
    /// The embedding field's index and its chunk spec, when this writer encodes it.
    embedding: Option<(usize, Arc<EmbeddingSpec>)>,
    group: Option<Group>,
    max_rows: Option<usize>,
    max_bytes: Option<usize>,
}

/// The row group being filled: a writer per leaf.
struct Group {
    leaves: Vec<Leaf>,
    rows: usize,
}

enum Leaf {
    Arrow(Box<ArrowColumnWriter>),
    Embedding(Box<EmbeddingChunk>),
}

impl Group {
    fn estimated_bytes(&self) -> usize {
        self.leaves
            .iter()
            .map(|l| match l {
                Leaf::Arrow(w) => w.get_estimated_total_bytes(),
                Leaf::Embedding(c) => c.estimated_bytes(),
            })
            .sum()
    }
}

impl Open {
    fn new(
        file: Box<dyn FileWrite>,
        schema: &SchemaRef,
        props: &WriterProperties,
        own_embedding: bool,
    ) -> IcebergResult<Open> {
        let arrow_schema: ArrowSchemaRef =
            Arc::new(iceberg::arrow::schema_to_arrow_schema(schema)?);
        let parquet_schema = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&arrow_schema)
            .map_err(parquet_err("the table schema has no Parquet form"))?;
        let mut props = props.clone();
        add_encoded_arrow_schema_to_metadata(&arrow_schema, &mut props);
        let max_rows = props.max_row_group_row_count();
        let max_bytes = props.max_row_group_bytes();
        let props = Arc::new(props);
        let field_leaves = field_leaves(&parquet_schema, arrow_schema.fields().len());
        let embedding = if own_embedding {
            embedding_spec(&arrow_schema, &parquet_schema, &field_leaves, &props)
        } else {
            None
        };
        let pieces = Pieces::default();
        let parquet = SerializedFileWriter::new(
            Sink(pieces.clone()),
            parquet_schema.root_schema_ptr(),
            props,
        )
        .map_err(parquet_err("opening a Parquet writer failed"))?;
        let factory = ArrowRowGroupWriterFactory::new(&parquet, arrow_schema.clone());
        Ok(Open {
            file,
            parquet,
            pieces,
            factory,
            arrow_schema,
            field_leaves,
            embedding,
            group: None,
            max_rows,
            max_bytes,
        })
    }

    fn group(&mut self) -> IcebergResult<&mut Group> {
        if self.group.is_none() {
            let index = self.parquet.flushed_row_groups().len();
            let writers = self
                .factory
                .create_column_writers(index)
                .map_err(parquet_err("creating column writers failed"))?;
            let mut leaves: Vec<Leaf> = writers
                .into_iter()
                .map(|w| Leaf::Arrow(Box::new(w)))
                .collect();
            if let Some((field, spec)) = &self.embedding {
                let leaf = self.field_leaves[*field].start;
                leaves[leaf] = Leaf::Embedding(Box::new(EmbeddingChunk::new(spec.clone())?));
            }
            self.group = Some(Group { leaves, rows: 0 });
        }
        self.group
            .as_mut()
            .ok_or_else(|| unexpected("no row group is open"))
    }

    /// Encodes `batch` (within one row group's limits) into the open row group.
    fn encode(&mut self, batch: &RecordBatch) -> IcebergResult<()> {
        let field_leaves = self.field_leaves.clone();
        let arrow_schema = self.arrow_schema.clone();
        if batch.num_columns() != arrow_schema.fields().len() {
            return Err(unexpected(format!(
                "a batch of {} columns for a file of {}",
                batch.num_columns(),
                arrow_schema.fields().len()
            )));
        }
        let embedding_field = self.embedding.as_ref().map(|(f, _)| *f);
        let group = self.group()?;
        for (f, field) in arrow_schema.fields().iter().enumerate() {
            let column = batch.column(f);
            let range = field_leaves[f].clone();
            if embedding_field == Some(f)
                && let Some(Leaf::Embedding(chunk)) = group.leaves.get_mut(range.start)
            {
                chunk.write(column)?;
                continue;
            }
            let leaves = compute_leaves(field, column)
                .map_err(parquet_err("computing a column's levels failed"))?;
            if leaves.len() != range.len() {
                return Err(unexpected(format!(
                    "column `{}` has {} Parquet leaves, the schema {}",
                    field.name(),
                    leaves.len(),
                    range.len()
                )));
            }
            for (leaf, i) in leaves.iter().zip(range) {
                match &mut group.leaves[i] {
                    Leaf::Arrow(w) => w
                        .write(leaf)
                        .map_err(parquet_err("encoding a column failed"))?,
                    Leaf::Embedding(_) => return Err(unexpected("a leaf writer out of place")),
                }
            }
        }
        group.rows += batch.num_rows();
        Ok(())
    }

    /// Closes the open row group into the file (its bytes go to the piece sink).
    fn close_group(&mut self) -> IcebergResult<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let mut row_group = self
            .parquet
            .next_row_group()
            .map_err(parquet_err("starting a row group failed"))?;
        for leaf in group.leaves {
            match leaf {
                Leaf::Arrow(w) => w
                    .close()
                    .and_then(|chunk| chunk.append_to_row_group(&mut row_group))
                    .map_err(parquet_err("writing a column chunk failed"))?,
                Leaf::Embedding(chunk) => {
                    let (bytes, close) = chunk.close()?;
                    row_group
                        .append_column(&bytes, close)
                        .map_err(parquet_err("writing the embedding column chunk failed"))?;
                }
            }
        }
        row_group
            .close()
            .map_err(parquet_err("closing a row group failed"))?;
        self.parquet
            .flush()
            .map_err(|e| unexpected(format!("flushing a row group failed: {e}")))?;
        Ok(())
    }

    /// Hands the finished pieces (all, with `all`) to storage.
    async fn send(&mut self, all: bool) -> IcebergResult<()> {
        for piece in self.pieces.take(all) {
            self.file.write(piece).await?;
        }
        Ok(())
    }
}

/// The parquet column indices of each top-level field, in order.
fn field_leaves(parquet: &SchemaDescriptor, fields: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = vec![0..0; fields];
    let mut start = 0;
    for (f, range) in ranges.iter_mut().enumerate() {
        let mut end = start;
        while end < parquet.num_columns() && parquet.get_column_root_idx(end) == f {
            end += 1;
        }
        *range = start..end;
        start = end;
    }
    ranges
}

impl OwnFile {
    /// Writes `batch`; after a failed write the file refuses further writes and its close
    /// (a batch may be half encoded: some leaves hold it, others not).
    async fn write(&mut self, batch: &RecordBatch) -> IcebergResult<()> {
        if self.failed {
            return Err(unexpected(
                "the data file writer failed on an earlier batch",
            ));
        }
        let result = self.write_batch(batch).await;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    async fn write_batch(&mut self, batch: &RecordBatch) -> IcebergResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        count_nans(&self.schema, batch, &mut self.nan_counts);
        self.rows += batch.num_rows();
        if self.open.is_none() {
            // Near-unique columns lose their dictionaries, decided on the file's first rows.
            let props = crate::parquet_props::without_dictionaries_for_distinct(&self.props, batch);
            let file = self.output.writer().await?;
            self.open = Some(Open::new(file, &self.schema, &props, self.own_embedding)?);
        }
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| unexpected("the file is not open"))?;
        // Row groups split as parquet-rs's `ArrowWriter` splits them: at the row limit, and
        // where the measured bytes per row say the byte limit falls.
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            let (max_rows, max_bytes) = (open.max_rows, open.max_bytes);
            let group = open.group()?;
            let mut take = rest.num_rows();
            if let Some(max) = max_rows {
                take = take.min(max.saturating_sub(group.rows).max(1));
            }
            if let (Some(max), true) = (max_bytes, group.rows > 0) {
                let current = group.estimated_bytes();
                let per_row = current / group.rows;
                let fit = if current >= max {
                    0
                } else {
                    (max - current).checked_div(per_row).unwrap_or(take)
                };
                if fit == 0 {
                    open.close_group()?;
                    open.send(false).await?;
                    continue;
                }
                take = take.min(fit);
            }
            let part = rest.slice(0, take);
            rest = rest.slice(take, rest.num_rows() - take);
            open.encode(&part)?;
            let full = open.group.as_ref().is_some_and(|g| {
                max_rows.is_some_and(|m| g.rows >= m)
                    || max_bytes.is_some_and(|m| g.estimated_bytes() >= m)
            });
            if full {
                open.close_group()?;
                open.send(false).await?;
            }
        }
        Ok(())
    }

    async fn close(self) -> IcebergResult<Vec<DataFileBuilder>> {
        if self.failed {
            return Err(unexpected(
                "the data file writer failed on an earlier batch",
            ));
        }
        let Some(mut open) = self.open else {
            return Ok(Vec::new());
        };
        open.close_group()?;
        let metadata = open
            .parquet
            .finish()
            .map_err(parquet_err("finishing the Parquet file failed"))?;
        open.parquet
            .flush()
            .map_err(|e| unexpected(format!("flushing the Parquet footer failed: {e}")))?;
        let size = open.parquet.bytes_written();
        open.send(true).await?;
        open.file.close().await?;
        Ok(vec![data_file_builder(
            &self.schema,
            &metadata,
            size as u64,
            self.output.location().to_string(),
            self.nan_counts,
        )?])
    }
}

/// Finished pieces of the file and the one being filled, shared by the sink (inside
/// parquet-rs's writer) and the file that hands them to storage.
#[derive(Clone, Default)]
struct Pieces(Arc<Mutex<PiecesInner>>);

#[derive(Default)]
struct PiecesInner {
    full: Vec<Bytes>,
    current: Vec<u8>,
}

impl Pieces {
    fn take(&self, all: bool) -> Vec<Bytes> {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = std::mem::take(&mut inner.full);
        if all && !inner.current.is_empty() {
            out.push(Pooled::freeze(std::mem::take(&mut inner.current)));
        }
        out
    }
}

/// Piece buffers kept for reuse, at most this many ([`PIECE_BYTES`] each, so 16 MiB per
/// process): a piece the storage writer (or the row group writer) is done with comes back
/// here instead of being freed, so the next piece is written into memory already mapped.
/// Fresh 1 MiB buffers cost a page fault and a page clear per 4 KiB written.
const POOLED_PIECES: usize = 16;

static PIECE_POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A piece's buffer, handed back to [`PIECE_POOL`] when the last `Bytes` of it is dropped.
struct Pooled(Vec<u8>);

impl Pooled {
    /// An empty buffer of [`PIECE_BYTES`] capacity, from the pool when it has one.
    fn buffer() -> Vec<u8> {
        PIECE_POOL
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(PIECE_BYTES))
    }

    fn freeze(buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled(buffer))
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() != PIECE_BYTES {
            return;
        }
        let mut pool = PIECE_POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOLED_PIECES {
            buffer.clear();
            pool.push(buffer);
        }
    }
}

/// parquet-rs's output: bytes gathered into [`PIECE_BYTES`] pieces.
struct Sink(Pieces);

impl Write for Sink {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        let mut inner = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        while !buf.is_empty() {
            if inner.current.capacity() == 0 {
                inner.current = Pooled::buffer();
            }
            let room = PIECE_BYTES.saturating_sub(inner.current.len()).max(1);
            let (now, later) = buf.split_at(room.min(buf.len()));
            inner.current.extend_from_slice(now);
            buf = later;
            if inner.current.len() >= PIECE_BYTES {
                let piece = Pooled::freeze(std::mem::take(&mut inner.current));
                inner.full.push(piece);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Adds the NaN count of every float column (and float list element) of `batch` to `counts`,
/// keyed by field id, as iceberg's `NanValueCountVisitor` does (an entry, maybe 0, for every
/// float field); a sliced list counts only its own rows' values.
fn count_nans(schema: &iceberg::spec::Schema, batch: &RecordBatch, counts: &mut HashMap<i32, u64>) {
    fn nans(array: &dyn Array) -> Option<u64> {
        match array.data_type() {
            DataType::Float64 => {
                let a = array.as_any().downcast_ref::<Float64Array>()?;
                Some(match a.nulls() {
                    None => a.values().iter().filter(|v| v.is_nan()).count() as u64,
                    Some(_) => a.iter().filter(|v| v.is_some_and(f64::is_nan)).count() as u64,
                })
            }
            DataType::Float32 => {
                let a = array.as_any().downcast_ref::<arrow_array::Float32Array>()?;
                Some(a.iter().filter(|v| v.is_some_and(f32::is_nan)).count() as u64)
            }
            _ => None,
        }
    }
    for (field, column) in schema.as_struct().fields().iter().zip(batch.columns()) {
        match field.field_type.as_ref() {
            Type::Primitive(PrimitiveType::Float | PrimitiveType::Double) => {
                if let Some(n) = nans(column.as_ref()) {
                    *counts.entry(field.id).or_insert(0) += n;
                }
            }
            Type::List(list) => {
                let element = &list.element_field;
                if !matches!(
                    element.field_type.as_ref(),
                    Type::Primitive(PrimitiveType::Float | PrimitiveType::Double)
                ) {
                    continue;
                }
                if let Some(l) = column.as_any().downcast_ref::<ListArray>() {
                    let offsets = l.value_offsets();
                    let (start, end) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
                    let values = l.values().slice(start, end - start);
                    if let Some(n) = nans(values.as_ref()) {
                        *counts.entry(element.id).or_insert(0) += n;
                    }
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// The embedding column chunk.

/// How the embedding column is written (fixed per file).
#[derive(Debug)]
struct EmbeddingSpec {
    descr: ColumnDescPtr,
    encoding: Encoding,
    compression: Compression,
    page_bytes: usize,
    page_rows: usize,
    v2: bool,
    v2_threshold: f64,
    offset_index: bool,
    max_def: i16,
    /// Definition level of a present, empty list.
    list_def: i16,
    list_optional: bool,
    element_optional: bool,
}

/// The spec for the `embedding` field when this writer can encode it: a `List<Float64>` field
/// of one DOUBLE leaf with one repetition level, written without dictionary, statistics or
/// bloom filter, PLAIN or BYTE_STREAM_SPLIT (what [`crate::parquet_props`] sets). Anything
/// else goes to parquet-rs's writer.
fn embedding_spec(
    arrow: &ArrowSchemaRef,
    parquet: &SchemaDescriptor,
    field_leaves: &[std::ops::Range<usize>],
    props: &WriterProperties,
) -> Option<(usize, Arc<EmbeddingSpec>)> {
    let f = arrow
        .index_of(crate::schema::Column::Embedding.name())
        .ok()?;
    let DataType::List(element) = arrow.field(f).data_type() else {
        return None;
    };
    if element.data_type() != &DataType::Float64 || field_leaves.get(f)?.len() != 1 {
        return None;
    }
    let descr = parquet.column(field_leaves[f].start);
    if descr.physical_type() != parquet::basic::Type::DOUBLE || descr.max_rep_level() != 1 {
        return None;
    }
    let path = descr.path();
    let encoding = props.encoding(path).unwrap_or(Encoding::PLAIN);
    let supported = matches!(encoding, Encoding::PLAIN | Encoding::BYTE_STREAM_SPLIT)
        && !props.dictionary_enabled(path)
        && props.statistics_enabled(path) == EnabledStatistics::None
        && props.bloom_filter_properties(path).is_none()
        && props.content_defined_chunking().is_none();
    if !supported {
        return None;
    }
    let element_optional = descr.self_type().is_optional();
    let max_def = descr.max_def_level();
    let list_def = max_def - 1 - i16::from(element_optional);
    if !(0..=1).contains(&list_def) {
        return None;
    }
    // The codec must exist in this build (it does for every codec `parquet_props` picks).
    let compression = props.compression(path);
    create_codec(compression, &CodecOptionsBuilder::default().build()).ok()?;
    Some((
        f,
        Arc::new(EmbeddingSpec {
            encoding,
            compression,
            page_bytes: props.column_data_page_size_limit(path).max(1),
            page_rows: props.data_page_row_count_limit().max(1),
            v2: props.writer_version() == WriterVersion::PARQUET_2_0,
            v2_threshold: props.column_data_page_v2_compression_ratio_threshold(path),
            offset_index: !props.offset_index_disabled(),
            max_def,
            list_def,
            list_optional: list_def == 1,
            element_optional,
            descr,
        }),
    ))
}

/// Levels of a page as runs `(level, count)`.
#[derive(Default)]
struct Runs(Vec<(i16, u32)>);

impl Runs {
    #[inline]
    fn push(&mut self, level: i16, count: u32) {
        if count == 0 {
            return;
        }
        match self.0.last_mut() {
            Some((l, c)) if *l == level => *c += count,
            _ => self.0.push((level, count)),
        }
    }

    /// The RLE/bit-packed hybrid encoding of the runs (RLE runs only), for levels up to
    /// `max`.
    fn encode(&self, max: i16, out: &mut Vec<u8>) {
        let width = 16 - (max as u16).leading_zeros();
        let value_bytes = width.div_ceil(8) as usize;
        for &(level, count) in &self.0 {
            let mut header = u64::from(count) << 1;
            loop {
                let byte = (header & 0x7f) as u8;
                header >>= 7;
                if header == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend_from_slice(&(level as u16).to_le_bytes()[..value_bytes]);
        }
    }
}

/// The page being gathered: level runs and where its values are (slices of the batches'
/// value buffers, not copies).
#[derive(Default)]
struct PendingPage {
    rep: Runs,
    def: Runs,
    segments: Vec<(ScalarBuffer<f64>, std::ops::Range<usize>)>,
    values: usize,
    levels: u32,
    rows: u32,
    nulls: u32,
}

impl PendingPage {
    fn add_values(&mut self, buffer: &ScalarBuffer<f64>, range: std::ops::Range<usize>) {
        if range.is_empty() {
            return;
        }
        self.values += range.len();
        if let Some((b, r)) = self.segments.last_mut()
            && r.end == range.start
            && range.end <= b.len()
            && b.inner().as_ptr() == buffer.inner().as_ptr()
        {
            r.end = range.end;
            return;
        }
        self.segments.push((buffer.clone(), range));
    }
}

/// One row group's `embedding` column chunk, written page by page into memory (the chunk is
/// appended to the row group after the columns before it).
struct EmbeddingChunk {
    spec: Arc<EmbeddingSpec>,
    codec: Option<Box<dyn Codec>>,
    /// The chunk's pages, in [`PIECE_BYTES`] pieces (no buffer grown by doubling).
    out: TrackedWrite<Sink>,
    pieces: Pieces,
    offsets: OffsetIndexBuilder,
    page: PendingPage,
    /// The uncompressed page being assembled (levels, then values).
    scratch: Vec<u8>,
    rows: u64,
    levels: i64,
    uncompressed: i64,
    compressed: i64,
    pages: i32,
}

impl EmbeddingChunk {
    fn new(spec: Arc<EmbeddingSpec>) -> IcebergResult<Self> {
        let codec = create_codec(spec.compression, &CodecOptionsBuilder::default().build())
            .map_err(parquet_err("the embedding column's codec"))?;
        let pieces = Pieces::default();
        Ok(EmbeddingChunk {
            spec,
            codec,
            out: TrackedWrite::new(Sink(pieces.clone())),
            pieces,
            offsets: OffsetIndexBuilder::new(),
            page: PendingPage::default(),
            scratch: Vec::new(),
            rows: 0,
            levels: 0,
            uncompressed: 0,
            compressed: 0,
            pages: 0,
        })
    }

    fn estimated_bytes(&self) -> usize {
        self.out.bytes_written() + self.page.values * 8
    }

    /// Adds the rows of `column` (a `List<Float64>` array, maybe sliced).
    fn write(&mut self, column: &ArrayRef) -> IcebergResult<()> {
        let list = column
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or_else(|| unexpected("the embedding column is not a list array"))?;
        let values = list
            .values()
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| unexpected("the embedding column's elements are not doubles"))?;
        let buffer = values.values();
        let value_nulls = values.nulls().filter(|n| n.null_count() > 0);
        let offsets = list.value_offsets();
        let spec = self.spec.clone();
        for row in 0..list.len() {
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let page = &mut self.page;
            page.rep.push(0, 1);
            if list.is_null(row) {
                if !spec.list_optional {
                    return Err(unexpected(format!(
                        "row {row}: a null embedding in a required column"
                    )));
                }
                page.def.push(0, 1);
                page.levels += 1;
                page.nulls += 1;
            } else if start == end {
                page.def.push(spec.list_def, 1);
                page.levels += 1;
                page.nulls += 1;
            } else {
                let n = (end - start) as u32;
                page.rep.push(1, n - 1);
                page.levels += n;
                match value_nulls.filter(|nulls| nulls.slice(start, end - start).null_count() > 0) {
                    None => {
                        page.def.push(spec.max_def, n);
                        page.add_values(buffer, start..end);
                    }
                    Some(nulls) => {
                        if !spec.element_optional {
                            return Err(unexpected(format!(
                                "row {row}: a null embedding element in a required element"
                            )));
                        }
                        // Present values gathered (a rare row: Athena-made optional elements).
                        let mut present = Vec::with_capacity(end - start);
                        for i in start..end {
                            if nulls.is_valid(i) {
                                page.def.push(spec.max_def, 1);
                                present.push(buffer[i]);
                            } else {
                                page.def.push(spec.max_def - 1, 1);
                                page.nulls += 1;
                            }
                        }
                        let len = present.len();
                        page.add_values(&ScalarBuffer::from(present), 0..len);
                    }
                }
            }
            page.rows += 1;
            if page.rows as usize >= spec.page_rows || page.values * 8 >= spec.page_bytes {
                self.emit()?;
            }
        }
        Ok(())
    }

    /// Encodes, compresses and writes the pending page.
    fn emit(&mut self) -> IcebergResult<()> {
        if self.page.rows == 0 {
            return Ok(());
        }
        let page = std::mem::take(&mut self.page);
        let spec = self.spec.clone();
        let scratch = &mut self.scratch;
        scratch.clear();
        let (mut rep_len, mut def_len) = (0, 0);
        for (runs, max, len) in [
            (&page.rep, 1i16, &mut rep_len),
            (&page.def, spec.max_def, &mut def_len),
        ] {
            if max == 0 {
                continue;
            }
            let at = scratch.len();
            if !spec.v2 {
                scratch.extend_from_slice(&[0; 4]);
            }
            runs.encode(max, scratch);
            if !spec.v2 {
                let n = (scratch.len() - at - 4) as u32;
                scratch[at..at + 4].copy_from_slice(&n.to_le_bytes());
            }
            *len = scratch.len() - at;
        }
        let levels_end = scratch.len();
        scratch.resize(levels_end + page.values * 8, 0);
        let out = &mut scratch[levels_end..];
        let mut at = 0;
        for (buffer, range) in &page.segments {
            let values = &buffer[range.clone()];
            if spec.encoding == Encoding::BYTE_STREAM_SPLIT {
                split_into(values, out, page.values, at);
            } else {
                for (i, v) in values.iter().enumerate() {
                    let o = (at + i) * 8;
                    out[o..o + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            at += values.len();
        }
        let uncompressed = scratch.len();
        let compressed_page = if spec.v2 {
            let mut buf = Vec::with_capacity(uncompressed);
            buf.extend_from_slice(&scratch[..levels_end]);
            let is_compressed = match self.codec.as_mut() {
                Some(codec) => {
                    codec
                        .compress(&scratch[levels_end..], &mut buf)
                        .map_err(parquet_err("compressing an embedding page failed"))?;
                    if ((buf.len() - levels_end) as f64) >= uncompressed as f64 * spec.v2_threshold
                    {
                        buf.truncate(levels_end);
                        buf.extend_from_slice(&scratch[levels_end..]);
                        false
                    } else {
                        true
                    }
                }
                None => {
                    buf.extend_from_slice(&scratch[levels_end..]);
                    false
                }
            };
            CompressedPage::new(
                Page::DataPageV2 {
                    buf: Bytes::from(buf),
                    num_values: page.levels,
                    encoding: spec.encoding,
                    num_nulls: page.nulls,
                    num_rows: page.rows,
                    def_levels_byte_len: def_len as u32,
                    rep_levels_byte_len: rep_len as u32,
                    is_compressed,
                    statistics: None,
                },
                uncompressed,
            )
        } else {
            let buf = match self.codec.as_mut() {
                Some(codec) => {
                    let mut buf = Vec::with_capacity(uncompressed);
                    codec
                        .compress(scratch, &mut buf)
                        .map_err(parquet_err("compressing an embedding page failed"))?;
                    Bytes::from(buf)
                }
                None => Bytes::copy_from_slice(scratch),
            };
            CompressedPage::new(
                Page::DataPage {
                    buf,
                    num_values: page.levels,
                    encoding: spec.encoding,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                },
                uncompressed,
            )
        };
        let written = SerializedPageWriter::new(&mut self.out)
            .write_page(compressed_page)
            .map_err(parquet_err("writing an embedding page failed"))?;
        self.offsets
            .append_offset_and_size(written.offset as i64, written.compressed_size as i32);
        self.offsets.append_row_count(i64::from(page.rows));
        self.rows += u64::from(page.rows);
        self.levels += i64::from(page.levels);
        self.uncompressed += written.uncompressed_size as i64;
        self.compressed += written.compressed_size as i64;
        self.pages += 1;
        Ok(())
    }

    /// The chunk's bytes and what parquet-rs's row group writer needs to append them.
    fn close(mut self) -> IcebergResult<(PiecesReader, ColumnCloseResult)> {
        self.emit()?;
        let spec = self.spec.clone();
        self.out
            .flush()
            .map_err(|e| unexpected(format!("closing the embedding column chunk failed: {e}")))?;
        let bytes = PiecesReader::new(self.pieces.take(true));
        let page_type = if spec.v2 {
            PageType::DATA_PAGE_V2
        } else {
            PageType::DATA_PAGE
        };
        let metadata = ColumnChunkMetaData::builder(spec.descr.clone())
            .set_compression(spec.compression)
            .set_encodings(vec![spec.encoding, Encoding::RLE])
            .set_page_encoding_stats(vec![PageEncodingStats {
                page_type,
                encoding: spec.encoding,
                count: self.pages,
            }])
            .set_total_compressed_size(self.compressed)
            .set_total_uncompressed_size(self.uncompressed)
            .set_num_values(self.levels)
            .set_data_page_offset(0)
            .build()
            .map_err(parquet_err("the embedding column chunk's metadata"))?;
        Ok((
            bytes.clone(),
            ColumnCloseResult {
                bytes_written: bytes.len,
                rows_written: self.rows,
                metadata,
                bloom_filter: None,
                column_index: None,
                offset_index: spec.offset_index.then(|| self.offsets.build()),
            },
        ))
    }
}

/// A column chunk held in pieces, read back by parquet-rs's row group writer
/// (`append_column`).
#[derive(Clone)]
struct PiecesReader {
    pieces: Arc<Vec<Bytes>>,
    len: u64,
}

impl PiecesReader {
    fn new(pieces: Vec<Bytes>) -> Self {
        let len = pieces.iter().map(|p| p.len() as u64).sum();
        PiecesReader {
            pieces: Arc::new(pieces),
            len,
        }
    }

    /// The piece holding byte `at` and the offset in it (`None` past the end).
    fn find(&self, mut at: u64) -> Option<(usize, usize)> {
        for (i, p) in self.pieces.iter().enumerate() {
            if at < p.len() as u64 {
                return Some((i, at as usize));
            }
            at -= p.len() as u64;
        }
        None
    }
}

impl parquet::file::reader::Length for PiecesReader {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for PiecesReader {
    type T = PiecesRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<PiecesRead> {
        let (piece, offset) = self.find(start).unwrap_or((self.pieces.len(), 0));
        Ok(PiecesRead {
            pieces: self.pieces.clone(),
            piece,
            offset,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut out = Vec::with_capacity(length);
        let mut read = self.get_read(start)?;
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut read, length as u64), &mut out)?;
        if out.len() != length {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "{length} bytes at {start} of a {}-byte chunk",
                self.len
            )));
        }
        Ok(Bytes::from(out))
    }
}

/// A reader over a [`PiecesReader`]'s pieces.
struct PiecesRead {
    pieces: Arc<Vec<Bytes>>,
    piece: usize,
    offset: usize,
}

impl std::io::Read for PiecesRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(p) = self.pieces.get(self.piece) {
            if self.offset < p.len() {
                let n = buf.len().min(p.len() - self.offset);
                buf[..n].copy_from_slice(&p[self.offset..self.offset + n]);
                self.offset += n;
                return Ok(n);
            }
            self.piece += 1;
            self.offset = 0;
        }
        Ok(0)
    }
}

/// Writes `values` BYTE_STREAM_SPLIT into `out` (8 streams of `n` bytes each) from value
/// position `at`: 16 values at a time with SSE2 on x86-64, then 8 at a time through the
/// 8×8 byte transpose the decoder uses, the tail byte by byte.
fn split_into(values: &[f64], out: &mut [u8], n: usize, at: usize) {
    // SAFETY: every x86-64 CPU has SSE2, all `split16_sse2` needs.
    #[cfg(target_arch = "x86_64")]
    let done = unsafe { split16_sse2(values, out, n, at) };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let blocks = values.len() / 8;
    for b in done / 8..blocks {
        let mut w: [u64; 8] = std::array::from_fn(|k| values[b * 8 + k].to_bits());
        crate::scan::transpose8(&mut w);
        let pos = at + b * 8;
        for (j, word) in w.iter().enumerate() {
            out[j * n + pos..j * n + pos + 8].copy_from_slice(&word.to_le_bytes());
        }
    }
    for (i, v) in values.iter().enumerate().skip(blocks * 8) {
        for (j, byte) in v.to_le_bytes().iter().enumerate() {
            out[j * n + at + i] = *byte;
        }
    }
}

/// The first `values.len() / 16 * 16` values of [`split_into`], 16 at a time. Byte `b` of
/// value `v` sits at index `v·8 + b` of the 128 loaded bytes and belongs at `b·16 + v`: the
/// 7-bit index rotated left by 4. One round of byte unpacks (register `i` with `i + 4`,
/// low and high halves) rotates the index left by 1, so four rounds split the block.
/// Returns the values done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn split16_sse2(values: &[f64], out: &mut [u8], n: usize, at: usize) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi8, _mm_unpacklo_epi8,
    };
    let blocks = values.len() / 16;
    for b in 0..blocks {
        let block = &values[b * 16..b * 16 + 16];
        let mut r: [__m128i; 8] = std::array::from_fn(|k| {
            let pair = &block[2 * k..2 * k + 2];
            // SAFETY: `pair` is 16 bytes long; `loadu` has no alignment requirement.
            unsafe { _mm_loadu_si128(pair.as_ptr().cast()) }
        });
        for _ in 0..4 {
            r = [
                _mm_unpacklo_epi8(r[0], r[4]),
                _mm_unpackhi_epi8(r[0], r[4]),
                _mm_unpacklo_epi8(r[1], r[5]),
                _mm_unpackhi_epi8(r[1], r[5]),
                _mm_unpacklo_epi8(r[2], r[6]),
                _mm_unpackhi_epi8(r[2], r[6]),
                _mm_unpacklo_epi8(r[3], r[7]),
                _mm_unpackhi_epi8(r[3], r[7]),
            ];
        }
        let pos = at + b * 16;
        for (j, reg) in r.into_iter().enumerate() {
            let stream = &mut out[j * n + pos..j * n + pos + 16];
            // SAFETY: `stream` is 16 bytes long; `storeu` has no alignment requirement.
            unsafe { _mm_storeu_si128(stream.as_mut_ptr().cast(), reg) };
        }
    }
    blocks * 16
}

// ---------------------------------------------------------------------------------------
// DataFile metrics from the footer.

/// The data file's entry from its footer, as iceberg 0.10.1's `ParquetWriter` builds it
/// (`parquet_to_data_file_builder`, which is `pub(crate)`): column sizes and value counts per
/// leaf, null counts and bounds from the column statistics (a bound only where parquet-rs
/// says it is exact), the NaN counts gathered while writing, and the row groups' offsets.
/// Leaves are matched to fields by the field ids in the Parquet schema.
pub(crate) fn data_file_builder(
    schema: &iceberg::spec::Schema,
    metadata: &ParquetMetaData,
    size: u64,
    path: String,
    nan_counts: HashMap<i32, u64>,
) -> IcebergResult<DataFileBuilder> {
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    let mut values: HashMap<i32, u64> = HashMap::new();
    let mut nulls: HashMap<i32, u64> = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    // Columns some row group of which has values but no bound: the file gets none.
    let mut unbounded: std::collections::HashSet<i32> = std::collections::HashSet::new();
    for group in metadata.row_groups() {
        for column in group.columns() {
            let info = column.column_descr().self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let id = info.id();
            let Some(field) = schema.field_by_id(id) else {
                continue;
            };
            *sizes.entry(id).or_insert(0) += column.compressed_size() as u64;
            *values.entry(id).or_insert(0) += column.num_values() as u64;
            let Some(stats) = column.statistics() else {
                unbounded.insert(id);
                continue;
            };
            if let Some(n) = stats.null_count_opt() {
                *nulls.entry(id).or_insert(0) += n;
            }
            let Type::Primitive(ty) = field.field_type.as_ref() else {
                return Err(unexpected(format!(
                    "field {id} is not a primitive but has a Parquet leaf"
                )));
            };
            // A truncated statistic (parquet-rs cuts strings to 64 bytes) is still a bound:
            // the minimum's prefix is at most every value, the maximum's incremented prefix at
            // least every value, and Iceberg's bounds may be truncated the same way. Leaving
            // such a row group out, as iceberg 0.10.1's writer does, made the file's bounds
            // narrower than its values: a scan pruned the file for a value it held, and a
            // tenant erasure whose bounds then read lower == upper dropped the whole file,
            // other tenants' rows with it. A row group with values but no statistic leaves
            // the file without that bound.
            let has_values = stats
                .null_count_opt()
                .is_none_or(|n| n < column.num_values().max(0) as u64);
            for (min, bounds) in [(true, &mut lower), (false, &mut upper)] {
                match bound(ty, stats, min)? {
                    Some(b) => {
                        let kept = bounds.entry(id).or_insert_with(|| b.clone());
                        if (min && *kept > b) || (!min && *kept < b) {
                            *kept = b;
                        }
                    }
                    None if has_values => {
                        unbounded.insert(id);
                    }
                    None => {}
                }
            }
        }
    }
    for id in &unbounded {
        lower.remove(id);
        upper.remove(id);
    }
    let mut builder = DataFileBuilder::default();
    builder
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::empty())
        .record_count(metadata.file_metadata().num_rows() as u64)
        .file_size_in_bytes(size)
        .column_sizes(sizes)
        .value_counts(values)
        .null_value_counts(nulls)
        .nan_value_counts(nan_counts)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(
            metadata
                .row_groups()
                .iter()
                .filter_map(|g| g.file_offset())
                .collect(),
        ));
    Ok(builder)
}

/// A column statistic's min (`min`) or max as a Datum of the field's type, as iceberg's
/// `get_parquet_stat_{min,max}_as_datum` convert them; `None` for a pair they do not convert.
fn bound(ty: &PrimitiveType, stats: &Statistics, min: bool) -> IcebergResult<Option<Datum>> {
    fn pick<T: Clone>(s: &parquet::file::statistics::ValueStatistics<T>, min: bool) -> Option<T> {
        if min {
            s.min_opt().cloned()
        } else {
            s.max_opt().cloned()
        }
    }
    let bytes = |min: bool| -> Option<Vec<u8>> {
        match stats {
            Statistics::ByteArray(s) => pick(s, min).map(|b| b.data().to_vec()),
            Statistics::FixedLenByteArray(s) => pick(s, min).map(|b| b.data().to_vec()),
            _ => None,
        }
    };
    Ok(match (ty, stats) {
        (PrimitiveType::Boolean, Statistics::Boolean(s)) => pick(s, min).map(Datum::bool),
        (PrimitiveType::Int, Statistics::Int32(s)) => pick(s, min).map(Datum::int),
        (PrimitiveType::Date, Statistics::Int32(s)) => pick(s, min).map(Datum::date),
        (PrimitiveType::Long, Statistics::Int64(s)) => pick(s, min).map(Datum::long),
        (PrimitiveType::Time, Statistics::Int64(s)) => {
            pick(s, min).map(Datum::time_micros).transpose()?
        }
        (PrimitiveType::Timestamp, Statistics::Int64(s)) => {
            pick(s, min).map(Datum::timestamp_micros)
        }
        (PrimitiveType::Timestamptz, Statistics::Int64(s)) => {
            pick(s, min).map(Datum::timestamptz_micros)
        }
        (PrimitiveType::TimestampNs, Statistics::Int64(s)) => {
            pick(s, min).map(Datum::timestamp_nanos)
        }
        (PrimitiveType::TimestamptzNs, Statistics::Int64(s)) => {
            pick(s, min).map(Datum::timestamptz_nanos)
        }
        (PrimitiveType::Float, Statistics::Float(s)) => pick(s, min).map(Datum::float),
        (PrimitiveType::Double, Statistics::Double(s)) => pick(s, min).map(Datum::double),
        (PrimitiveType::String, Statistics::ByteArray(_)) => match bytes(min) {
            Some(b) => Some(Datum::string(String::from_utf8(b).map_err(|e| {
                iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    "a string column's statistic is not UTF-8",
                )
                .with_source(e)
            })?)),
            None => None,
        },
        (PrimitiveType::Decimal { .. }, Statistics::Int32(s)) => pick(s, min)
            .map(|v| Datum::try_from_bytes(&i128::from(v).to_be_bytes(), ty.clone()))
            .transpose()?,
        (PrimitiveType::Decimal { .. }, Statistics::Int64(s)) => pick(s, min)
            .map(|v| Datum::try_from_bytes(&i128::from(v).to_be_bytes(), ty.clone()))
            .transpose()?,
        (
            PrimitiveType::Decimal { .. },
            Statistics::ByteArray(_) | Statistics::FixedLenByteArray(_),
        ) => bytes(min)
            .map(|b| Datum::try_from_bytes(&b, ty.clone()))
            .transpose()?,
        (PrimitiveType::Uuid, Statistics::FixedLenByteArray(_)) => match bytes(min) {
            Some(b) => {
                let b: [u8; 16] = b.as_slice().try_into().map_err(|_| {
                    iceberg::Error::new(
                        iceberg::ErrorKind::DataInvalid,
                        "a uuid statistic that is not 16 bytes",
                    )
                })?;
                Some(Datum::uuid(uuid::Uuid::from_bytes(b)))
            }
            None => None,
        },
        (PrimitiveType::Fixed(len), Statistics::FixedLenByteArray(_)) => match bytes(min) {
            Some(b) if b.len() as u64 == *len => Some(Datum::fixed(b)),
            Some(_) => {
                return Err(iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    "a fixed statistic of the wrong length",
                ));
            }
            None => None,
        },
        (PrimitiveType::Binary, Statistics::ByteArray(_)) => bytes(min).map(Datum::binary),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow_array::{Decimal128Array, StringArray, TimestampMicrosecondArray};
    use arrow_buffer::{NullBuffer, OffsetBuffer};
    use iceberg::io::FileIO;
    use iceberg::spec::{DataFile, ListType, NestedField, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::ZstdLevel;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
    use parquet::schema::types::ColumnPath;

    use crate::schema::{Column, EMBEDDING_ELEMENT_FIELD_ID};

    use crate::test_rng::Rng;

    /// The table schema, with the embedding element optional (an adopted Athena table) or
    /// required (ours).
    fn schema(element_optional: bool) -> SchemaRef {
        let fields = Column::ALL.map(|c| {
            let ty = match c {
                Column::Embedding => {
                    Type::List(ListType::new(Arc::new(NestedField::list_element(
                        EMBEDDING_ELEMENT_FIELD_ID,
                        Type::Primitive(PrimitiveType::Double),
                        !element_optional,
                    ))))
                }
                c => c.iceberg_type(),
            };
            Arc::new(NestedField::new(
                c.field_id(),
                c.name(),
                ty,
                c.is_required(),
            ))
        });
        Arc::new(
            Schema::builder()
                .with_schema_id(0)
                .with_fields(fields)
                .build()
                .unwrap(),
        )
    }

    /// `n` rows in the table's Arrow schema: lists of 0..=dim values, some null lists, some
    /// empty, NaNs, and (with an optional element) null elements.
    fn batch(schema: &SchemaRef, n: usize, dim: usize, rng: &mut Rng) -> RecordBatch {
        let arrow: ArrowSchemaRef =
            Arc::new(iceberg::arrow::schema_to_arrow_schema(schema).unwrap());
        let element_optional = !schema
            .field_by_id(EMBEDDING_ELEMENT_FIELD_ID)
            .unwrap()
            .required;
        let text = |prefix: &str, rng: &mut Rng, nulls: bool| -> ArrayRef {
            Arc::new(StringArray::from_iter((0..n).map(|_| {
                let v = rng.below(50);
                (!nulls || !v.is_multiple_of(7)).then(|| format!("{prefix}-{v:03}"))
            })))
        };
        let mut columns: Vec<ArrayRef> = Vec::new();
        for c in Column::ALL {
            let required = c.is_required();
            columns.push(match c {
                Column::SoldPrice => Arc::new(
                    Decimal128Array::from_iter_values(
                        (0..n).map(|_| rng.below(1_000_000) as i128 - 1000),
                    )
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
                ),
                Column::SoldDate => Arc::new(TimestampMicrosecondArray::from_iter_values(
                    (0..n).map(|_| 1_700_000_000_000_000 + rng.below(1 << 40) as i64),
                )),
                Column::Embedding => {
                    let DataType::List(element) = arrow
                        .field_with_name("embedding")
                        .unwrap()
                        .data_type()
                        .clone()
                    else {
                        unreachable!()
                    };
                    let mut offsets = vec![0i32];
                    let mut values = Vec::new();
                    let mut valid = Vec::new();
                    let mut value_valid = Vec::new();
                    for _ in 0..n {
                        let kind = rng.below(20);
                        let len = match kind {
                            0 | 1 => 0,
                            _ => dim - rng.below(3).min(dim as u64) as usize,
                        };
                        valid.push(kind != 0);
                        for _ in 0..len {
                            let r = rng.below(1000);
                            values.push(if r < 20 {
                                f64::NAN
                            } else {
                                (rng.next() as f32 / 3.0) as f64 * 1e-9
                            });
                            value_valid.push(!(element_optional && (20..40).contains(&r)));
                        }
                        offsets.push(values.len() as i32);
                    }
                    let values = Float64Array::new(
                        values.into(),
                        Some(NullBuffer::from(value_valid)).filter(|n| n.null_count() > 0),
                    );
                    Arc::new(ListArray::new(
                        element,
                        OffsetBuffer::new(offsets.into()),
                        Arc::new(values),
                        Some(NullBuffer::from(valid)),
                    ))
                }
                c => text(c.name(), rng, !required),
            });
        }
        RecordBatch::try_new(arrow, columns).unwrap()
    }

    fn props(codec: Compression, encoding: Encoding, v2: bool) -> WriterProperties {
        let element = ColumnPath::from(vec![
            "embedding".to_string(),
            "list".to_string(),
            "element".to_string(),
        ]);
        WriterProperties::builder()
            .set_compression(codec)
            .set_writer_version(if v2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            })
            .set_max_row_group_row_count(Some(90))
            .set_data_page_row_count_limit(7)
            .set_write_batch_size(7)
            .set_column_data_page_size_limit(element.clone(), 300)
            .set_column_dictionary_enabled(element.clone(), false)
            .set_column_encoding(element.clone(), encoding)
            .set_column_statistics_enabled(element, EnabledStatistics::None)
            .build()
    }

    async fn write<B: FileWriterBuilder>(
        builder: B,
        io: &FileIO,
        path: &str,
        batches: &[RecordBatch],
    ) -> (DataFile, Bytes) {
        let mut w = builder.build(io.new_output(path).unwrap()).await.unwrap();
        for b in batches {
            w.write(b).await.unwrap();
        }
        let mut files = w.close().await.unwrap();
        assert_eq!(files.len(), 1);
        let file = files.pop().unwrap().partition_spec_id(0).build().unwrap();
        let bytes = io.new_input(path).unwrap().read().await.unwrap();
        (file, bytes)
    }

    fn read_back(bytes: &Bytes) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    fn embedding_chunks(bytes: &Bytes) -> Vec<(ColumnChunkMetaData, Vec<(i64, i64)>)> {
        let reader = SerializedFileReader::new_with_options(
            bytes.clone(),
            ReadOptionsBuilder::new().with_page_index().build(),
        )
        .unwrap();
        let meta = reader.metadata();
        let leaf = (0..meta.file_metadata().schema_descr().num_columns())
            .find(|&i| {
                meta.file_metadata()
                    .schema_descr()
                    .column(i)
                    .path()
                    .string()
                    == "embedding.list.element"
            })
            .unwrap();
        meta.row_groups()
            .iter()
            .enumerate()
            .map(|(g, rg)| {
                let pages = meta.offset_index().unwrap()[g][leaf]
                    .page_locations()
                    .iter()
                    .map(|p| {
                        (
                            p.first_row_index,
                            p.offset - rg.column(leaf).data_page_offset(),
                        )
                    })
                    .chain([(rg.num_rows(), -1)])
                    .collect();
                (rg.column(leaf).clone(), pages)
            })
            .collect()
    }

    /// Every case: what our writer writes reads back equal to iceberg's writer's file, its
    /// DataFile entry has the same metrics, and its embedding chunks have parquet-rs's page
    /// boundaries, value counts and encodings.
    #[tokio::test]
    async fn files_equal_iceberg_writers_in_rows_metrics_and_pages() {
        let io = FileIO::new_with_memory();
        let cases = [
            (
                Compression::SNAPPY,
                Encoding::BYTE_STREAM_SPLIT,
                false,
                false,
            ),
            (Compression::SNAPPY, Encoding::BYTE_STREAM_SPLIT, true, true),
            (
                Compression::ZSTD(ZstdLevel::default()),
                Encoding::PLAIN,
                false,
                true,
            ),
            (
                Compression::UNCOMPRESSED,
                Encoding::BYTE_STREAM_SPLIT,
                true,
                false,
            ),
            (Compression::UNCOMPRESSED, Encoding::PLAIN, false, false),
        ];
        let mut rng = Rng(0x5eed);
        for (case, (codec, encoding, v2, element_optional)) in cases.into_iter().enumerate() {
            let schema = schema(element_optional);
            let props = props(codec, encoding, v2);
            let dim = [1, 5, 33][case % 3];
            let whole = batch(&schema, 260, dim, &mut rng);
            // Batches as writers get them: whole ones, a slice, one row.
            let batches = vec![
                whole.slice(0, 100),
                whole.slice(100, 1),
                batch(&schema, 50, dim, &mut rng),
                whole.slice(101, 159),
            ];
            let ours =
                ParquetFileBuilder::new(props.clone(), schema.clone()).with_own_embedding(true);
            let theirs =
                ParquetFileBuilder::new(props.clone(), schema.clone()).with_own_embedding(false);
            let iceberg = ParquetFileBuilder::Iceberg {
                props: props.clone(),
                schema: schema.clone(),
            };
            let (a, a_bytes) = write(
                ours,
                &io,
                &format!("memory:///ours-{case}.parquet"),
                &batches,
            )
            .await;
            let (b, b_bytes) = write(
                theirs,
                &io,
                &format!("memory:///theirs-{case}.parquet"),
                &batches,
            )
            .await;
            // iceberg's NaN counter reads a sliced list's whole values: hand it copies.
            let copies: Vec<RecordBatch> = batches
                .iter()
                .map(|b| {
                    let idx = arrow_array::UInt32Array::from_iter_values(0..b.num_rows() as u32);
                    arrow_select::take::take_record_batch(b, &idx).unwrap()
                })
                .collect();
            let (c, c_bytes) = write(
                iceberg,
                &io,
                &format!("memory:///iceberg-{case}.parquet"),
                &copies,
            )
            .await;

            let expected = read_back(&c_bytes);
            for (name, got) in [
                ("ours", read_back(&a_bytes)),
                ("parquet-rs", read_back(&b_bytes)),
            ] {
                assert_eq!(got.num_rows(), 310, "case {case} {name}");
                for i in 0..expected.num_columns() {
                    assert_eq!(
                        got.column(i).to_data(),
                        expected.column(i).to_data(),
                        "case {case} {name}: column {i}"
                    );
                }
            }
            for f in [&a, &b] {
                assert_eq!(f.record_count(), c.record_count(), "case {case}");
                assert_eq!(f.value_counts(), c.value_counts(), "case {case}");
                assert_eq!(f.null_value_counts(), c.null_value_counts(), "case {case}");
                assert_eq!(f.nan_value_counts(), c.nan_value_counts(), "case {case}");
                assert_eq!(f.lower_bounds(), c.lower_bounds(), "case {case}");
                assert_eq!(f.upper_bounds(), c.upper_bounds(), "case {case}");
            }
            assert!(
                a.nan_value_counts()[&EMBEDDING_ELEMENT_FIELD_ID] > 0,
                "case {case}"
            );
            // One split per row group (the offsets differ by the embedding chunks' sizes).
            assert_eq!(
                a.split_offsets().map(<[i64]>::len),
                c.split_offsets().map(<[i64]>::len),
                "case {case}"
            );
            assert_eq!(a.file_size_in_bytes(), a_bytes.len() as u64, "case {case}");
            for (id, size) in c.column_sizes() {
                if *id != EMBEDDING_ELEMENT_FIELD_ID {
                    assert_eq!(a.column_sizes()[id], *size, "case {case}: field {id}");
                }
            }
            // Row groups of 90 rows, as parquet-rs cuts them.
            let (ours, theirs) = (embedding_chunks(&a_bytes), embedding_chunks(&b_bytes));
            assert_eq!(ours.len(), 4, "case {case}");
            assert_eq!(ours.len(), theirs.len(), "case {case}");
            for ((o, o_pages), (t, t_pages)) in ours.iter().zip(&theirs) {
                assert_eq!(o.num_values(), t.num_values(), "case {case}");
                assert_eq!(o.compression(), t.compression(), "case {case}");
                assert_eq!(
                    o.encodings().collect::<Vec<_>>(),
                    t.encodings().collect::<Vec<_>>(),
                    "case {case}"
                );
                assert_eq!(
                    o.page_encoding_stats(),
                    t.page_encoding_stats(),
                    "case {case}"
                );
                // Pages end at the row limit (7) or past the byte limit (300), at a row end
                // (parquet-rs checks after each mini-batch of levels, so its cuts differ).
                let starts: Vec<i64> = o_pages.iter().map(|x| x.0).collect();
                assert!(starts.windows(2).all(|w| (1..=7).contains(&(w[1] - w[0]))));
                assert!(t_pages.len() <= o_pages.len(), "case {case}");
                assert!(o.statistics().is_none());
            }
        }
    }

    /// Full-length rows (what this crate writes): pages end where parquet-rs ends them.
    #[tokio::test]
    async fn full_rows_are_paged_as_parquet_rs_pages_them() {
        let io = FileIO::new_with_memory();
        let schema = schema(false);
        let mut rng = Rng(7);
        let mut whole = batch(&schema, 200, 64, &mut rng);
        // Every row a full, non-null list of 64 values.
        let column = Column::ALL
            .iter()
            .position(|c| *c == Column::Embedding)
            .unwrap();
        let DataType::List(element) = whole.schema().field(column).data_type().clone() else {
            unreachable!()
        };
        let values = Float64Array::from_iter_values((0..200 * 64).map(|i| i as f64 / 3.0));
        let list = ListArray::new(
            element,
            OffsetBuffer::from_lengths(std::iter::repeat_n(64, 200)),
            Arc::new(values),
            None,
        );
        let mut columns = whole.columns().to_vec();
        columns[column] = Arc::new(list);
        whole = RecordBatch::try_new(whole.schema(), columns).unwrap();
        for (page_bytes, page_rows) in [(1024, 64), (1000, 3), (64 * 1024, 64)] {
            let element = ColumnPath::from(vec![
                "embedding".to_string(),
                "list".to_string(),
                "element".to_string(),
            ]);
            let props = WriterProperties::builder()
                .set_data_page_row_count_limit(page_rows)
                .set_write_batch_size(page_rows)
                .set_column_data_page_size_limit(element.clone(), page_bytes)
                .set_column_dictionary_enabled(element.clone(), false)
                .set_column_encoding(element.clone(), Encoding::BYTE_STREAM_SPLIT)
                .set_column_statistics_enabled(element, EnabledStatistics::None)
                .build();
            let batches = [whole.slice(0, 150), whole.slice(150, 50)];
            let (_, ours) = write(
                ParquetFileBuilder::new(props.clone(), schema.clone()).with_own_embedding(true),
                &io,
                "memory:///full-ours.parquet",
                &batches,
            )
            .await;
            let (_, theirs) = write(
                ParquetFileBuilder::new(props, schema.clone()).with_own_embedding(false),
                &io,
                "memory:///full-theirs.parquet",
                &batches,
            )
            .await;
            let rows = |b: &Bytes| -> Vec<Vec<i64>> {
                embedding_chunks(b)
                    .into_iter()
                    .map(|(_, p)| p.into_iter().map(|x| x.0).collect())
                    .collect()
            };
            assert_eq!(
                rows(&ours),
                rows(&theirs),
                "{page_bytes} bytes, {page_rows} rows"
            );
            assert_eq!(
                read_back(&ours).column(column).to_data(),
                whole.column(column).to_data()
            );
        }
    }

    /// A failed write leaves a half-encoded row group: later writes and the close refuse.
    #[tokio::test]
    async fn a_failed_write_fails_the_file() {
        let io = FileIO::new_with_memory();
        let schema = schema(false);
        let good = batch(&schema, 20, 4, &mut Rng(3));
        let short = good.project(&[0, 1, 2]).unwrap();
        let props = props(Compression::SNAPPY, Encoding::BYTE_STREAM_SPLIT, false);
        let builder = ParquetFileBuilder::new(props, schema.clone()).with_own_embedding(true);
        let mut w = builder
            .build(io.new_output("memory:///failed.parquet").unwrap())
            .await
            .unwrap();
        w.write(&good).await.unwrap();
        assert!(w.write(&short).await.is_err());
        assert!(w.write(&good).await.is_err());
        assert!(w.close().await.is_err());
    }

    #[test]
    fn the_split_puts_each_byte_in_its_stream() {
        let values: Vec<f64> = (0..37).map(|i| (i as f64 + 0.5) * -1.25e10).collect();
        for (at, len) in [(0, 37), (3, 20), (0, 8), (5, 0), (9, 28), (0, 16), (2, 33)] {
            let n = 40;
            let mut out = vec![0u8; 8 * n];
            split_into(&values[..len], &mut out, n, at);
            for (i, v) in values[..len].iter().enumerate() {
                for (j, byte) in v.to_le_bytes().iter().enumerate() {
                    assert_eq!(out[j * n + at + i], *byte, "value {i} byte {j}");
                }
            }
        }
    }

    #[test]
    fn a_chunk_in_pieces_reads_back_from_any_offset() {
        use parquet::file::reader::{ChunkReader, Length};
        use std::io::Read;
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pieces = Pieces::default();
        let mut sink = Sink(pieces.clone());
        for part in data.chunks(333) {
            sink.write_all(part).unwrap();
        }
        // Small pieces for the test: split what the sink gathered into 4 uneven parts.
        let whole = pieces.take(true);
        assert_eq!(whole.len(), 1);
        let w = &whole[0];
        let reader = PiecesReader::new(vec![
            w.slice(0..1000),
            w.slice(1000..1001),
            w.slice(1001..2500),
            w.slice(2500..3000),
        ]);
        assert_eq!(reader.len(), 3000);
        for start in [0u64, 999, 1000, 1001, 2499, 2999] {
            let mut out = Vec::new();
            reader
                .get_read(start)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data[start as usize..]);
            let len = (3000 - start as usize).min(700);
            assert_eq!(
                reader.get_bytes(start, len).unwrap(),
                data[start as usize..][..len]
            );
        }
        assert!(reader.get_bytes(2900, 200).is_err());
        let mut past = Vec::new();
        reader
            .get_read(3000)
            .unwrap()
            .read_to_end(&mut past)
            .unwrap();
        assert!(past.is_empty());
    }

    #[test]
    fn level_runs_merge_and_encode_as_rle_runs() {
        let mut runs = Runs::default();
        runs.push(0, 1);
        runs.push(1, 1023);
        runs.push(1, 0);
        runs.push(1, 1);
        runs.push(0, 1);
        assert_eq!(runs.0, vec![(0, 1), (1, 1024), (0, 1)]);
        let mut out = Vec::new();
        runs.encode(1, &mut out);
        // (1 << 1) = 2, value 0; (1024 << 1) = 2048 = 0x80 0x10, value 1; 2, value 0.
        assert_eq!(out, vec![2, 0, 0x80, 0x10, 1, 2, 0]);
    }
}
